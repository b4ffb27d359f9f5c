"""The Swift HTTP front, beside S3 on the same server: `/auth/v1.0` (and `/auth/v1`), `/info`
(and `/swift/info`), and the API under `/v1/AUTH_<account>/<container>/<object>` (Swift's own
layout, the storage URL handed out, which can never be an S3 bucket: bucket names have at
least 3 characters; RGW's `/swift/v1/...` too).

A request that carries an S3 signature (an Authorization header or a presigned query) is always
S3's, so an S3 bucket named `swift`, `auth` or `info` keeps working. Every failure becomes a
Swift status with a short body, never a traceback; after a streamed GET began, the connection
is cut instead (the client sees a short body, never wrong data).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import unquote_to_bytes

from aiohttp import web

from gateway import (
    errors,
    swift_account,
    swift_bulk,
    swift_containers,
    swift_large,
    swift_objects,
    swift_tempurl,
)
from gateway.context import Services
from gateway.disconnect import client_went_away, cut_short
from gateway.sigv4 import split_query
from gateway.swift_auth import ACCOUNT_PREFIX, Authenticator, Identity, auth_response
from gateway.swift_context import SwiftRequest, SwiftState
from gateway.swift_errors import SwiftError, body_of, from_s3

log = logging.getLogger(__name__)
Handler = Callable[[SwiftRequest], Awaitable[web.StreamResponse]]
STATE_KEY = web.AppKey("swift", SwiftState)
API_PREFIXES = ("/swift/v1", "/v1")
MAX_CONTAINER_NAME = 256


def install(app: web.Application, services: Services) -> None:
    """Serve Swift on `app` (the S3 application): called once while it is built."""
    app[STATE_KEY] = SwiftState(services, Authenticator(services.users,
                                                        services.user_cache.ttl))
    app.middlewares.append(swift_middleware)
    app.on_response_prepare.append(_stamp)


def classify(method: str, raw_path: str, query: list[tuple[str, str]],
             headers: dict[str, str]) -> str | None:
    """"auth", "info", "api", or None for S3."""
    names = {k for k, _ in query}
    if "authorization" in headers or names & {"X-Amz-Algorithm", "X-Amz-Credential",
                                              "AWSAccessKeyId"}:
        return None
    if raw_path in ("/auth/v1.0", "/auth/v1", "/auth/v1.0/", "/auth/v1/"):
        return "auth"
    if raw_path in ("/info", "/swift/info") and method in ("GET", "HEAD", "OPTIONS"):
        return "info"
    for prefix in API_PREFIXES:
        if raw_path == prefix or raw_path.startswith(prefix + "/"):
            return "api"
    return None


@web.middleware
async def swift_middleware(request: web.Request, handler: Callable[
        [web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    raw_path, _, raw_query = request.raw_path.partition("?")
    query = split_query(raw_query)
    headers = {k.lower(): ",".join(request.headers.getall(k)) for k in request.headers}
    kind = classify(request.method, raw_path, query, headers)
    if kind is None:
        return await handler(request)
    request["swift"] = True
    state = request.app[STATE_KEY]
    try:
        if kind == "auth":
            return await auth_response(request, state.auth)
        if kind == "info":
            return info_response(state)
        req = await _request(request, state, raw_path, dict(query), headers)
        return await route(req)(req)
    except SwiftError as exc:
        failure = exc
    except errors.S3Error as exc:
        failure = from_s3(exc)
    except ConnectionError as exc:
        if not request.get("streaming"):
            raise
        client_went_away(request, exc)
        return cut_short(request)
    except Exception:
        log.exception("%s %s %s failed", request.get("request_id"), request.method,
                      request.path)
        failure = SwiftError(500, "Internal error")
    if request.get("streaming"):
        return cut_short(request)
    return error_response(failure, request.method)


def error_response(exc: SwiftError, method: str) -> web.Response:
    if method == "HEAD" or exc.status in (204, 304):
        return web.Response(status=exc.status, headers=exc.headers)
    return web.Response(status=exc.status, body=body_of(exc), headers=exc.headers,
                        content_type="text/html", charset="utf-8")


def _decode(raw: str) -> str:
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise SwiftError(412, "Invalid UTF8 or contains NULL") from None
    if "\0" in text:
        raise SwiftError(412, "Invalid UTF8 or contains NULL")
    return text


async def _request(request: web.Request, state: SwiftState, raw_path: str,
                   query: dict[str, str], headers: dict[str, str]) -> SwiftRequest:
    path = _decode(raw_path)
    prefix = next(p for p in API_PREFIXES if path == p or path.startswith(p + "/"))
    rest = path[len(prefix) + 1:]
    account = ""
    first, _, after = rest.partition("/")
    if first.startswith(ACCOUNT_PREFIX):
        account, rest = first[len(ACCOUNT_PREFIX):], after
    container, _, obj = rest.partition("/")
    if len(container.encode()) > MAX_CONTAINER_NAME:
        raise SwiftError(400, f"Container name length of {len(container.encode())} longer "
                         f"than {MAX_CONTAINER_NAME}")
    token = headers.get("x-auth-token") or headers.get("x-storage-token")
    identity = await state.auth.identify(token)
    if not account:
        if identity.user is None:
            raise SwiftError(401, "No account in the URL and no token")
        account = identity.account
    req = SwiftRequest(request, state, path, account, container, obj, query, headers, identity)
    if identity.user is None and obj and "temp_url_sig" in query:
        await _check_tempurl(req)
    return req


async def _check_tempurl(req: SwiftRequest) -> None:
    method = req.http.method
    if method not in swift_tempurl.METHODS:
        raise SwiftError(401, "Method not allowed by a Temp URL")
    keys = [v for k, v in (await swift_account.load_meta(req.svc, req.account)).items()
            if k in ("temp-url-key", "temp-url-key-2")]
    try:
        bucket = await req.svc.buckets.get(req.qualified(req.container))
    except errors.NoSuchBucket:
        bucket = None
    if bucket is not None and bucket.owner == req.account:
        meta = bucket.swift.get("meta", {})
        keys += [meta[k] for k in ("temp-url-key", "temp-url-key-2") if k in meta]
    swift_tempurl.check(req.query, method, req.path, req.obj, keys, time.time())
    req.identity = Identity(None, tempurl=True)


def route(req: SwiftRequest) -> Handler:
    method = req.http.method
    q = req.query
    if not req.container:
        if "bulk-delete" in q and method in ("POST", "DELETE"):
            return swift_bulk.bulk_delete
        table: dict[str, Handler] = {"GET": swift_account.get_account,
                                     "HEAD": swift_account.head_account,
                                     "POST": swift_account.post_account}
    elif not req.obj:
        table = {"GET": swift_containers.get_container,
                 "HEAD": swift_containers.head_container,
                 "PUT": swift_containers.put_container,
                 "POST": swift_containers.post_container,
                 "DELETE": swift_containers.delete_container}
    else:
        manifest = q.get("multipart-manifest")
        table = {"GET": swift_objects.get_object, "HEAD": swift_objects.head_object,
                 "PUT": (swift_large.put_slo if manifest == "put" else
                         swift_objects.put_object),
                 "POST": swift_objects.post_object,
                 "DELETE": (swift_large.delete_slo if manifest == "delete" else
                            swift_objects.delete_object),
                 "COPY": swift_objects.copy_verb}
    return table.get(method, _not_allowed)


async def _not_allowed(req: SwiftRequest) -> web.StreamResponse:
    raise SwiftError(405, f"{req.http.method} is not allowed here")


def info_response(state: SwiftState) -> web.Response:
    """What this gateway supports, in the shape python-swiftclient and Swift's tests read."""
    info = {
        "swift": {"version": "2.30.0-loligo", "max_file_size": 5 * (1 << 30),
                  "max_object_name_length": 1024, "max_container_name_length":
                  MAX_CONTAINER_NAME, "container_listing_limit": swift_containers.MAX_LIMIT,
                  "account_listing_limit": swift_containers.MAX_LIMIT,
                  "max_meta_name_length": 128, "max_meta_value_length": 256,
                  "max_meta_count": 90, "max_meta_overall_size": 4096,
                  "max_header_size": 16384, "extra_header_count": 0,
                  "strict_cors_mode": True, "allow_account_management": False,
                  "account_autocreate": True, "valid_api_versions": ["v1"],
                  "policies": [{"name": "default", "default": True}]},
        "tempauth": {"account_acls": False},
        "slo": {"max_manifest_segments": swift_large.MAX_SEGMENTS,
                "max_manifest_size": swift_large.MAX_MANIFEST, "min_segment_size": 1,
                "yield_frequency": 10},
        "dlo": {"max_segments": swift_large.MAX_SEGMENTS},
        "bulk_delete": {"max_deletes_per_request": swift_bulk.MAX_DELETES,
                        "max_failed_deletes": swift_bulk.MAX_DELETES},
        "tempurl": {"methods": list(swift_tempurl.METHODS),
                    "incoming_allow_headers": [], "outgoing_allow_headers": [],
                    "allowed_digests": sorted(swift_tempurl.DIGESTS)},
        "container_quotas": {}, "account_quotas": {},
    }
    return web.json_response(info)


async def _stamp(request: web.Request, response: web.StreamResponse) -> None:
    if not request.get("swift"):
        return
    rid = request.get("request_id") or ""
    for name in ("x-amz-request-id", "x-amz-id-2"):
        response.headers.pop(name, None)
    response.headers["X-Trans-Id"] = rid
    response.headers["X-Openstack-Request-Id"] = rid
