"""The dashboard's HTTP side: the page and its assets (shipped in the package, nothing from the
internet, no build step), the cluster's state as JSON and as a stream of server-sent events,
and sign-in for the few actions an operator may take from the page.

    GET  /                 the page             GET /static/NAME    its script, style, icon
    GET  /api/state        the state (JSON)     GET /api/events     the state, pushed (SSE)
    POST /api/login        {"entity", "key"}: a key the monitors accept; sets a session cookie
    POST /api/logout
    POST /api/action       {"action": "osd_out"|"osd_in"|"set_flag"|"unset_flag", ...}

Read-only unless signed in: the key is checked by the monitors themselves (an authentication
with it, as any client's), and actions run as that entity, so its caps apply. Actions need
the session cookie (HttpOnly, SameSite=Strict) and a JSON body with a custom header, which a
page of another site cannot send without the browser asking us first (CORS), so it cannot
act through a signed-in operator's browser.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from mgr.state import ClusterView
from rados_py import config as config_mod
from rados_py.auth import KeyEntry, Keyring, validate_entity
from rados_py.config import Config
from rados_py.errors import InvalidArgument, LoligoError
from rados_py.monclient import MonClient
from rados_py.proto.loligo import mon_pb2

__all__ = ["build_app"]

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"dashboard.js": "application/javascript", "dashboard.css": "text/css",
          "favicon.svg": "image/svg+xml"}
COOKIE = "loligo_dashboard"
ACTION_HEADER = "X-Loligo-Dashboard"
VIEW_KEY: web.AppKey[ClusterView] = web.AppKey("view", ClusterView)
HEARTBEAT = 15.0  # seconds between SSE comments on an idle stream (keeps proxies from closing)
SECURITY = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                       "style-src 'self'; script-src 'self'; "
                                       "connect-src 'self'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY"}


@dataclass
class Session:
    entity: str
    client: MonClient
    expires: float


class Dashboard:
    def __init__(self, config: Config, view: ClusterView) -> None:
        self.config = config
        self.view = view
        self.sessions: dict[str, Session] = {}
        self.changed = asyncio.Condition()
        self.streams = 0
        # one snapshot per refresh (and per kind: with the plots' whole window or without),
        # shared by every open page: a thousand pages cost one snapshot, not a thousand
        self._snapshots: dict[bool, tuple[float, dict[str, Any]]] = {}

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def close(self) -> None:
        for session in self.sessions.values():
            await session.client.close()
        self.sessions.clear()

    # --- sessions ---------------------------------------------------------------------------
    def session(self, request: web.Request) -> Session | None:
        session = self.sessions.get(request.cookies.get(COOKIE, ""))
        return session if session is not None and session.expires > time.time() else None

    async def prune(self) -> None:
        """Forget expired sign-ins (and close their connections to the monitors)."""
        now = time.time()
        for token, session in list(self.sessions.items()):
            if session.expires <= now:
                del self.sessions[token]
                await session.client.close()

    async def login(self, request: web.Request) -> web.Response:
        body = await _json(request)
        entity = str(body.get("entity") or "client.admin").strip()
        key_text = str(body.get("key") or "").strip()
        try:
            validate_entity(entity)
            key = base64.b64decode(key_text, validate=True)
        except (InvalidArgument, binascii.Error, ValueError):
            raise _error(400, "give an entity (client.admin) and its key, as the keyring "
                              "holds it (base64)") from None
        if self.config.source is None:
            raise _error(500, "the manager has no config file to authenticate with")
        conf = config_mod.load(self.config.source, entity)
        client = MonClient(conf, Keyring({entity: KeyEntry(entity, key, {})}))
        try:
            await client.connect(timeout=min(10.0, self.config.rpc_timeout))
        except LoligoError as exc:
            await client.close()
            log.info("dashboard sign-in as %s refused: %s", entity, exc)
            raise _error(401, f"the monitors refused {entity} with this key") from None
        token = secrets.token_urlsafe(32)
        ttl = self.config.mgr_session_ttl
        self.sessions[token] = Session(entity, client, time.time() + ttl)
        log.info("dashboard: %s signed in from %s", entity, request.remote)
        response = web.json_response({"entity": entity})
        response.set_cookie(COOKIE, token, max_age=int(ttl), httponly=True, samesite="Strict",
                            path="/")
        return response

    async def logout(self, request: web.Request) -> web.Response:
        session = self.sessions.pop(request.cookies.get(COOKIE, ""), None)
        if session is not None:
            await session.client.close()
        response = web.json_response({})
        response.del_cookie(COOKIE, path="/")
        return response

    async def action(self, request: web.Request) -> web.Response:
        session = self.session(request)
        if session is None or request.headers.get(ACTION_HEADER) != "1":
            raise _error(403, "the dashboard is read-only until you sign in with a key")
        body = await _json(request)
        what = body.get("action")
        try:
            if what in ("osd_out", "osd_in"):
                osd = int(body["osd"])
                state = mon_pb2.OsdMark.OUT if what == "osd_out" else mon_pb2.OsdMark.IN
                result = await session.client.command(osd_mark=mon_pb2.OsdMark(
                    ids=[osd], state=state))
            elif what in ("set_flag", "unset_flag"):
                result = await session.client.command(osd_set_flag=mon_pb2.OsdSetFlag(
                    flag=str(body["flag"]), set=what == "set_flag"))
            else:
                raise _error(400, f"unknown action {what!r}")
        except (KeyError, ValueError, TypeError):
            raise _error(400, f"incomplete action {body!r}") from None
        except LoligoError as exc:
            raise _error(409, str(exc)) from None
        log.info("dashboard: %s did %s", session.entity, body)
        return web.json_response({"message": result.message})

    # --- reading ----------------------------------------------------------------------------
    def state(self, request: web.Request, history: bool = True) -> dict[str, Any]:
        cached = self._snapshots.get(history)
        if cached is None or cached[0] != self.view.updated:
            cached = self._snapshots[history] = (self.view.updated,
                                                 self.view.snapshot(history))
        session = self.session(request)
        return {**cached[1], "session": {"entity": session.entity} if session else None}

    async def get_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state(request))

    async def events(self, request: web.Request) -> web.StreamResponse:
        """The state now, then again each time the manager refreshes it (SSE)."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        self.streams += 1
        try:  # the plots' whole window first, then only each new point
            await response.write(_sse("state", self.state(request)))
            while True:
                async with self.changed:
                    try:
                        await asyncio.wait_for(self.changed.wait(), HEARTBEAT)
                    except TimeoutError:
                        await response.write(b": still here\n\n")
                        continue
                await response.write(_sse("state", self.state(request, history=False)))
        except (ConnectionError, asyncio.CancelledError):  # the page went away
            pass
        finally:
            self.streams -= 1
        return response

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html",
                                headers={"Content-Type": "text/html; charset=utf-8",
                                         "Cache-Control": "no-cache"})

    async def asset(self, request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound()
        return web.FileResponse(STATIC / name, headers={"Content-Type": ASSETS[name],
                                                        "Cache-Control": "no-cache"})


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _json(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise _error(415, "send JSON (Content-Type: application/json)")
    with contextlib.suppress(ValueError):
        body = await request.json()
        if isinstance(body, dict):
            return body
    raise _error(400, "the body is not a JSON object")


def _error(status: int, message: str) -> web.HTTPException:
    """An error answer with a JSON body the page shows as it is."""
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
           409: web.HTTPConflict, 415: web.HTTPUnsupportedMediaType,
           500: web.HTTPInternalServerError}[status]
    return cls(text=json.dumps({"error": message}), content_type="application/json")


@web.middleware
async def _headers(request: web.Request,
                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY)
        raise
    response.headers.update(SECURITY)
    return response


def build_app(dashboard: Dashboard) -> web.Application:
    app = web.Application(middlewares=[_headers], client_max_size=64 * 1024)
    app[VIEW_KEY] = dashboard.view
    app.router.add_get("/", dashboard.page)
    app.router.add_get("/static/{name}", dashboard.asset)
    app.router.add_get("/api/state", dashboard.get_state)
    app.router.add_get("/api/events", dashboard.events)
    app.router.add_post("/api/login", dashboard.login)
    app.router.add_post("/api/logout", dashboard.logout)
    app.router.add_post("/api/action", dashboard.action)
    return app
