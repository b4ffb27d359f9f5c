"""The S3 HTTP front: route a request (path-style or virtual-host style) to its handler after
authenticating it, and turn every failure into an S3 error document with the right status.

Every response carries `x-amz-request-id` (also written in the log line of a failure). An error
that escapes a handler unexpectedly is logged with its traceback and answered InternalError
(500) without one. A failure after a streamed GET has begun cannot become an error document any
more: the connection is closed, so the client sees a short body rather than wrong data.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import http_writer, web

from gateway import (
    errors,
    s3_access,
    s3_buckets,
    s3_cors,
    s3_lifecycle,
    s3_lock,
    s3_multipart,
    s3_objects,
    s3_post,
    s3_sse,
    s3_tagging,
    s3_versions,
    s3_xml,
    swift_server,
)
from gateway.context import S3Request, Services, qualify
from gateway.disconnect import client_went_away, cut_short
from gateway.s3_auth import Target, authenticate
from gateway.sigv4 import split_query

log = logging.getLogger(__name__)
Handler = Callable[[S3Request], Awaitable[web.StreamResponse]]
SERVICES_KEY = web.AppKey("services", Services)

# sub-resources of S3 that Loligo does not implement: answered NotImplemented, not misread
# as a plain GET or PUT of the bucket or object
UNSUPPORTED = frozenset({
    "website", "logging", "notification",
    "replication", "requestPayment",
    "accelerate", "analytics", "inventory", "metrics", "intelligent-tiering",
    "restore", "select", "torrent"})

# (method, sub-resource) -> handler; "" is the resource itself. The first sub-resource of
# the request found in the table wins.
BUCKET_ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "location"): s3_buckets.get_location,
    ("GET", "lifecycle"): s3_lifecycle.get_lifecycle,
    ("PUT", "lifecycle"): s3_lifecycle.put_lifecycle,
    ("DELETE", "lifecycle"): s3_lifecycle.delete_lifecycle,
    ("GET", "cors"): s3_cors.get_bucket_cors,
    ("PUT", "cors"): s3_cors.put_bucket_cors,
    ("DELETE", "cors"): s3_cors.delete_bucket_cors,
    ("GET", "tagging"): s3_tagging.get_bucket_tagging,
    ("PUT", "tagging"): s3_tagging.put_bucket_tagging,
    ("DELETE", "tagging"): s3_tagging.delete_bucket_tagging,
    ("GET", "acl"): s3_access.get_bucket_acl,
    ("PUT", "acl"): s3_access.put_bucket_acl,
    ("GET", "policy"): s3_access.get_bucket_policy,
    ("PUT", "policy"): s3_access.put_bucket_policy,
    ("DELETE", "policy"): s3_access.delete_bucket_policy,
    ("GET", "policyStatus"): s3_access.get_policy_status,
    ("GET", "publicAccessBlock"): s3_access.get_public_access_block,
    ("PUT", "publicAccessBlock"): s3_access.put_public_access_block,
    ("DELETE", "publicAccessBlock"): s3_access.delete_public_access_block,
    ("GET", "ownershipControls"): s3_access.get_ownership_controls,
    ("PUT", "ownershipControls"): s3_access.put_ownership_controls,
    ("DELETE", "ownershipControls"): s3_access.delete_ownership_controls,
    ("GET", "uploads"): s3_multipart.list_uploads,
    ("GET", "encryption"): s3_sse.get_bucket_encryption,
    ("PUT", "encryption"): s3_sse.put_bucket_encryption,
    ("DELETE", "encryption"): s3_sse.delete_bucket_encryption,
    ("GET", "object-lock"): s3_lock.get_lock_configuration,
    ("PUT", "object-lock"): s3_lock.put_lock_configuration,
    ("GET", "versioning"): s3_versions.get_versioning,
    ("PUT", "versioning"): s3_versions.put_versioning,
    ("GET", "versions"): s3_versions.list_versions,
    ("POST", "delete"): s3_buckets.delete_objects,
    ("GET", ""): s3_buckets.list_objects,
    ("PUT", ""): s3_buckets.create_bucket,
    ("HEAD", ""): s3_buckets.head_bucket,
    ("DELETE", ""): s3_buckets.delete_bucket,
    ("POST", ""): s3_post.post_object,
}
OBJECT_ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "uploadId"): s3_multipart.list_parts,
    ("PUT", "uploadId"): s3_multipart.upload_part,
    ("DELETE", "uploadId"): s3_multipart.abort_upload,
    ("POST", "uploadId"): s3_multipart.complete_upload,
    ("POST", "uploads"): s3_multipart.create_upload,
    ("GET", "tagging"): s3_tagging.get_object_tagging,
    ("PUT", "tagging"): s3_tagging.put_object_tagging,
    ("DELETE", "tagging"): s3_tagging.delete_object_tagging,
    ("GET", "acl"): s3_access.get_object_acl,
    ("PUT", "acl"): s3_access.put_object_acl,
    ("GET", "attributes"): s3_objects.get_object_attributes,
    ("GET", "retention"): s3_lock.get_retention,
    ("PUT", "retention"): s3_lock.put_retention,
    ("GET", "legal-hold"): s3_lock.get_legal_hold,
    ("PUT", "legal-hold"): s3_lock.put_legal_hold,
}
SUBRESOURCES = ("uploadId", "uploads", "tagging", "acl", "cors", "lifecycle", "policy",
                "policyStatus", "publicAccessBlock", "ownershipControls", "location",
                "versioning", "versions", "delete", "object-lock", "retention", "legal-hold",
                "attributes", "encryption")


def _route(method: str, has_key: bool, query: dict[str, str]) -> Handler:
    table = OBJECT_ROUTES if has_key else BUCKET_ROUTES
    for sub in SUBRESOURCES:
        if sub in query and (method, sub) in table:
            return table[(method, sub)]
    if has_key:
        plain = {"GET": s3_objects.get_object, "HEAD": _head_object,
                 "PUT": s3_objects.put_object, "DELETE": s3_objects.delete_object}
        return plain.get(method, _not_allowed)
    return table.get((method, ""), _not_allowed)


async def _head_object(req: S3Request) -> web.StreamResponse:
    return await s3_objects.get_object(req, head=True)


async def _not_allowed(req: S3Request) -> web.StreamResponse:
    raise errors.MethodNotAllowed(Method=req.http.method, ResourceType="OBJECT" if req.key
                                  else "BUCKET")


def split_target(raw_path: str, host: str, dns_names: tuple[str, ...]
                 ) -> tuple[str, str, bool]:
    """(bucket, key) of a request: virtual-host style when the Host is <bucket>.<dns name>,
    else path-style. The key is kept literally: '//' runs, '..' and unicode included."""
    try:
        path = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise errors.InvalidURI() from None
    hostname = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else host
    for name in dns_names:
        if name and hostname.endswith("." + name):
            return hostname[:-len(name) - 1], path[1:], True
    bucket, _, key = path[1:].partition("/")
    return bucket, key, False


def _headers(request: web.Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in request.headers:
        low = name.lower()
        if low not in out:
            out[low] = ",".join(request.headers.getall(name))
    return out


async def handle(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES_KEY]
    raw_path, _, raw_query = request.raw_path.partition("?")
    request["resource"] = raw_path
    query_pairs = split_query(raw_query)
    query: dict[str, str] = {}
    for k, v in query_pairs:
        query.setdefault(k, v)
    headers = _headers(request)
    bucket, key, vhost = split_target(raw_path, headers.get("host", ""), svc.dns_names)
    request["resource"] = f"/{bucket}/{key}" if key else f"/{bucket}"
    unsupported = UNSUPPORTED & query.keys()
    has_body = (request.content_length or 0) > 0 or "transfer-encoding" in headers
    if request.method == "OPTIONS" and bucket:  # a CORS preflight: never authenticated
        return await s3_cors.preflight(svc, qualify(bucket, None), headers)
    identity = await authenticate(svc.user_cache, Target(
        request.method, raw_path, query_pairs, headers, bucket, vhost, has_body), svc.max_skew)
    if unsupported:
        raise errors.NotImplementedError_(f"The {sorted(unsupported)[0]!r} sub-resource is not "
                                          "implemented")
    bucket = qualify(bucket, identity.user.user_id if identity.user else None)
    request["bucket"] = bucket
    req = S3Request(request, svc, bucket, key, query, headers, identity,
                    request["request_id"])
    if not bucket:
        if request.method != "GET":
            raise errors.MethodNotAllowed(Method=request.method, ResourceType="SERVICE")
        return await s3_buckets.list_buckets(req)
    handler = _route(request.method, bool(key), query)
    try:
        return await handler(req)
    except errors.NoSuchBucket:
        # a cached bucket entry of a bucket deleted (and maybe created again) since: a read
        # has no body to replay, so it simply runs again on a fresh entry
        if not (req.used_cache and request.method in ("GET", "HEAD")
                and not request.get("streaming")):
            raise
    svc.buckets.forget(bucket)
    return await handler(S3Request(request, svc, bucket, key, query, headers, identity,
                                   request["request_id"]))


def error_response(exc: errors.S3Error, request: web.Request) -> web.Response:
    body = s3_xml.error_document(exc.code, exc.message, request.get("resource", request.path),
                                 request["request_id"], exc.extra)
    if exc.status == 304 or request.method == "HEAD":
        return web.Response(status=exc.status, headers=exc.headers)
    return web.Response(body=body, status=exc.status, content_type="application/xml",
                        headers=exc.headers)


@web.middleware
async def s3_errors(request: web.Request, handler: Callable[[web.Request],
                                                           Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
    request["request_id"] = f"tx{uuid.uuid4().hex[:24]}"
    try:
        return await handler(request)
    except errors.S3Error as exc:
        if exc.status >= 500:
            log.warning("%s %s %s: %s (%s)", request["request_id"], request.method,
                        request.path, exc.code, exc.message)
        failure = exc
    except web.HTTPException:
        raise
    except ConnectionError as exc:  # the client went away mid-request: its loss, not a bug
        if request.get("streaming"):
            client_went_away(request, exc)
            return cut_short(request)
        log.info("%s %s %s: client connection lost (%s)", request["request_id"],
                 request.method, request.path, exc)
        raise
    except Exception:
        log.exception("%s %s %s failed", request["request_id"], request.method, request.path)
        failure = errors.InternalError()
    if request.get("streaming"):
        return cut_short(request)
    return error_response(failure, request)


async def _stamp(request: web.Request, response: web.StreamResponse) -> None:
    rid = request.get("request_id")
    if rid:
        response.headers["x-amz-request-id"] = rid
        response.headers["x-amz-id-2"] = rid
    response.headers["Server"] = "Loligo"
    if (request.headers.get("Expect", "").lower() == "100-continue"
            and not request.get("continued")):
        # answered without asking for the body: the client will not send it, so the
        # connection cannot carry another request (RFC 9110 10.1.1)
        response.force_close()
    if request.get("bucket") and "Origin" in request.headers and request.method != "OPTIONS":
        # a cross-origin request: the bucket's CORS rules say what its page may see, on
        # errors too
        try:
            bucket = await request.app[SERVICES_KEY].buckets.get(request["bucket"],
                                                                 cached=True)
        except errors.S3Error:
            return
        headers = {k.lower(): v for k, v in request.headers.items()}
        response.headers.update(s3_cors.actual_headers(bucket, headers, request.method))


def _serialize_headers(status_line: str, headers: Any) -> bytes:
    """aiohttp's header serializer, byte-transparent: a request header's bytes that are not
    UTF-8 arrive as surrogate escapes (aiohttp decodes with surrogateescape) and leave as the
    same bytes, where aiohttp's own writer would drop them. So user metadata comes back byte
    for byte, whatever the client's charset. Control characters are refused as aiohttp does
    (no header injection)."""
    lines = [status_line, *(f"{name}: {value}" for name, value in headers.items())]
    if any(_FORBIDDEN.search(line) for line in lines):
        raise ValueError("Forbidden control character in response headers")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


async def _no_expectations(request: web.Request) -> None:
    return None


def build_app(services: Services) -> web.Application:
    http_writer._serialize_headers = _serialize_headers
    app = web.Application(middlewares=[s3_errors], client_max_size=1 << 20,
                          # bodies are stored byte for byte: Content-Encoding (gzip...) is
                          # the object's metadata, never undone on the way in
                          handler_args={"max_field_size": 16384, "max_line_size": 16384,
                                        "auto_decompress": False})
    app[SERVICES_KEY] = services
    app.on_response_prepare.append(_stamp)
    # `100 Continue` goes out when a handler starts reading the body (body.expect_continue),
    # not before the request is checked; unknown Expect values are ignored
    app.router.add_route("*", "/{tail:.*}", handle, expect_handler=_no_expectations)
    swift_server.install(app, services)  # Swift's paths are answered before S3 routing
    return app
