"""Swift accounts: GET (the containers, i.e. the user's buckets), HEAD (counts and usage) and
POST (X-Account-Meta-*, among them the TempURL keys).

An account's metadata is one small JSON object in the meta pool, `swift.account.<uid>`; the
account itself needs no record: it is the user.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from gateway import swift_listing, swift_meta
from gateway.context import Services
from gateway.swift_containers import MAX_LIMIT, usage
from gateway.swift_context import SwiftRequest
from rados_py.errors import NotFound


def _oid(uid: str) -> str:
    return f"swift.account.{uid}"


async def load_meta(svc: Services, uid: str) -> dict[str, str]:
    try:
        return dict(json.loads(await svc.meta.read(_oid(uid))).get("meta", {}))
    except NotFound:
        return {}


async def _headers(req: SwiftRequest) -> dict[str, str]:
    buckets = await req.svc.buckets.list_for(req.account)
    sizes = await asyncio.gather(*(usage(req.svc, name) for name, _ in buckets))
    headers = {"X-Account-Container-Count": str(len(buckets)),
               "X-Account-Object-Count": str(sum(c for c, _ in sizes)),
               "X-Account-Bytes-Used": str(sum(b for _, b in sizes)),
               "X-Account-Storage-Policy-Default-Container-Count": str(len(buckets))}
    headers.update(swift_meta.to_headers(await load_meta(req.svc, req.account), "account"))
    return headers


async def head_account(req: SwiftRequest) -> web.Response:
    req.need_admin()
    return web.Response(status=204, headers=await _headers(req))


async def get_account(req: SwiftRequest) -> web.Response:
    req.need_admin()
    fmt = swift_listing.choose_format(req.query, req.headers.get("accept", ""))
    p = swift_listing.params(req.query, MAX_LIMIT)
    # the account's containers by their names within its tenant
    buckets = {name.rpartition("/")[2]: created
               for name, created in await req.svc.buckets.list_for(req.account)}
    chosen = swift_listing.select(sorted(buckets), p)
    rows: list[dict[str, object]] = []
    if fmt == "plain":
        rows = [{"subdir": n} if sub else {"name": n} for n, sub in chosen]
    else:
        sizes = await asyncio.gather(*(usage(req.svc, req.qualified(n))
                                       for n, sub in chosen if not sub))
        counted = iter(sizes)
        for name, sub in chosen:
            if sub:
                rows.append({"subdir": name})
            else:
                count, size = next(counted)
                rows.append(swift_listing.container_row(name, count, size, buckets[name]))
    headers = await _headers(req)
    if not rows and fmt == "plain":
        return web.Response(status=204, headers=headers)
    body, ctype = swift_listing.render(fmt, "account", f"AUTH_{req.account}", rows)
    headers["Content-Type"] = ctype
    return web.Response(status=200, body=body, headers=headers)


async def post_account(req: SwiftRequest) -> web.Response:
    req.need_admin()
    current = await load_meta(req.svc, req.account)
    meta = swift_meta.updated(current, req.headers, "account")
    if meta != current:
        await req.svc.meta.write_full(_oid(req.account), json.dumps({"meta": meta}).encode())
    return web.Response(status=204)

