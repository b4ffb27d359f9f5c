"""Swift objects: PUT (ETag check: 422 on a mismatch), GET/HEAD (Range, If-Match,
If-None-Match, If-Modified-Since, If-Unmodified-Since, large objects stitched at read time),
POST (metadata), DELETE, and copies (PUT with X-Copy-From, or the COPY verb with Destination).

Objects are the same index entries S3 writes, so either API reads what the other wrote; Swift's
extras (X-Delete-At, manifests) are fields S3 ignores. The conditional and range rules are
S3's (s3_objects), which are also Swift's; only the error statuses differ, mapped in one table.
"""

from __future__ import annotations

import hashlib
import mimetypes
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

from gateway import errors, swift_meta, swift_ranges, swift_tempurl
from gateway.body import Body
from gateway.buckets import Bucket, key_bytes
from gateway.context import MAX_OBJECT
from gateway.expiry import expired, remove_expired
from gateway.s3_objects import (
    STORED_HEADERS,
    _hashing,
    check_conditions,
    put_precondition,
)
from gateway.s3_xml import http_date
from gateway.sigv4 import UNSIGNED
from gateway.swift_context import SwiftRequest
from gateway.swift_errors import SwiftError
from gateway.swift_expiry import delete_at
from gateway.swift_large import (
    dlo_view,
    is_manifest,
    manifest_response,
    no_data,
    resolve,
    slice_pieces,
    stream,
)

SWIFT_STORED = (*STORED_HEADERS, "content-encoding")


def describe_put(req: SwiftRequest) -> dict[str, Any]:
    """The entry fields a PUT takes from its headers."""
    h = req.headers
    ctype = h.get("content-type", "")
    if not ctype or h.get("x-detect-content-type", "").lower() == "true":
        ctype = mimetypes.guess_type(req.obj)[0] or "application/octet-stream"
    fields: dict[str, Any] = {"ctype": ctype, "meta": swift_meta.from_headers(h, "object"),
                              "headers": {k: h[k] for k in SWIFT_STORED if k in h}}
    when = delete_at(h)
    if when is not None:
        fields["delete_at"] = when
    if "x-object-manifest" in h:
        manifest = unquote(h["x-object-manifest"]).lstrip("/")
        if "/" not in manifest:
            raise SwiftError(400, "X-Object-Manifest must be <container>/<prefix>")
        fields["dlo"] = manifest
    return fields


def object_headers(entry: dict[str, Any]) -> dict[str, str]:
    etag = entry.get("etag", "")
    headers = {"Content-Type": entry.get("ctype") or "application/octet-stream",
               "ETag": f'"{etag}"' if is_manifest(entry) else etag,
               "Last-Modified": http_date(entry["mtime"]),
               "X-Timestamp": f"{entry['mtime']:.5f}", "Accept-Ranges": "bytes"}
    for name, value in entry.get("headers", {}).items():
        headers[name.title()] = value
    headers.update(swift_meta.to_headers(entry.get("meta", {}), "object"))
    if entry.get("delete_at"):
        headers["X-Delete-At"] = str(entry["delete_at"])
    if "dlo" in entry:
        headers["X-Object-Manifest"] = quote(entry["dlo"])
    if "slo" in entry:
        headers["X-Static-Large-Object"] = "True"
    return headers


async def live_entry(req: SwiftRequest, bucket: Bucket, obj: str) -> dict[str, Any]:
    """The object's entry; 404 if there is none or it expired (then it is removed)."""
    key = key_bytes(obj)
    entry = await req.svc.buckets.entry(bucket, key)
    if entry is not None and expired(entry):
        await remove_expired(req.svc.objects, bucket, key, entry)
        entry = None
    if entry is None:
        raise SwiftError(404, "The object does not exist")
    return entry


def _need_length(req: SwiftRequest) -> None:
    if ("content-length" not in req.headers
            and "chunked" not in req.headers.get("transfer-encoding", "").lower()):
        raise SwiftError(411, "Missing Content-Length or Transfer-Encoding: chunked")


async def put_object(req: SwiftRequest) -> web.Response:
    if "x-copy-from" in req.headers:
        container, obj = _split(req.headers["x-copy-from"], "X-Copy-From")
        return await _copy(req, container, obj, req.container, req.obj)
    bucket = await req.bucket("write")
    key = key_bytes(req.obj)
    _need_length(req)
    fields = describe_put(req)
    precondition = put_precondition(req.headers)
    if precondition is not None:  # fail before the upload if it fails now (checked again)
        precondition(await req.svc.buckets.entry(bucket, key))
    body = Body(req.http.content, req.headers, UNSIGNED, None, MAX_OBJECT, req.http)
    wanted = req.headers.get("etag", "").strip('"').lower()

    def describe() -> dict[str, Any]:
        if wanted and wanted != body.md5:
            raise SwiftError(422, "The data's MD5 does not match the ETag sent")
        return {**fields, "etag": body.md5, "cksum": None, "owner": req.owner}

    entry = await req.svc.objects.put(bucket, key, body.pieces(), describe, precondition)
    return web.Response(status=201, headers={"ETag": entry["etag"],
                                             "Last-Modified": http_date(entry["mtime"])})


async def head_object(req: SwiftRequest) -> web.StreamResponse:
    return await get_object(req, head=True)


async def get_object(req: SwiftRequest, head: bool = False) -> web.StreamResponse:
    bucket = await req.bucket("read")
    entry = await live_entry(req, bucket, req.obj)
    if entry.get("sse", {}).get("alg") == "C":
        raise SwiftError(403, "The object is encrypted with a customer's key: read it through "
                         "S3 with that key")
    if req.query.get("multipart-manifest") == "get" and "slo" in entry:
        return manifest_response(entry, req.query.get("format") == "raw")
    view = await dlo_view(req, entry) if "dlo" in entry else entry
    headers = object_headers(view)
    if req.identity.tempurl and req.http.method == "GET":
        headers["Content-Disposition"] = swift_tempurl.disposition(req.query, req.obj)
    # a refusal still describes the object (ETag, Last-Modified, Accept-Ranges...), as Swift's
    described = {k: v for k, v in headers.items() if k != "Content-Type"}
    try:
        check_conditions(req.headers, view)
    except errors.NotModified:
        return web.Response(status=304, headers=described)
    except errors.PreconditionFailed:
        raise SwiftError(412, "Precondition Failed", described) from None
    size = view["size"]
    try:
        ranges = swift_ranges.ranges_for(req.headers.get("range"), size)
    except swift_ranges.Unsatisfiable:
        raise SwiftError(416, "Requested Range Not Satisfiable",
                         {**described, "Content-Range": f"bytes */{size}"}) from None
    if ranges is not None and len(ranges) > 1:
        return await _multirange(req, view, headers, ranges, head)
    first, last, status = (0, size - 1, 200) if ranges is None else (*ranges[0], 206)
    if ranges is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    pieces = []
    if not head and size:
        pieces = slice_pieces(await resolve(req, view), first, last)
    resp = await _start(req, status, headers, last - first + 1 if size else 0)
    async for data in stream(req, pieces):
        await resp.write(data)
    await resp.write_eof()
    return resp


async def _start(req: SwiftRequest, status: int, headers: dict[str, str], length: int
                 ) -> web.StreamResponse:
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = length
    req.http["streaming"] = resp
    await resp.prepare(req.http)
    return resp


async def _multirange(req: SwiftRequest, view: dict[str, Any], headers: dict[str, str],
                      ranges: list[tuple[int, int]], head: bool) -> web.StreamResponse:
    """206 multipart/byteranges: each range as a part with its own Content-Range."""
    body = swift_ranges.Multipart(headers.get("Content-Type", "application/octet-stream"),
                                  view["size"], ranges)
    headers["Content-Type"] = body.content_type
    resp = await _start(req, 206, headers, body.length())
    if not head:
        pieces = await resolve(req, view)
        for i, (first, last) in enumerate(ranges):
            await resp.write(body.head(i))
            async for data in stream(req, slice_pieces(pieces, first, last)):
                await resp.write(data)
        await resp.write(body.tail())
    await resp.write_eof()
    return resp


async def post_object(req: SwiftRequest) -> web.Response:
    """Replace the object's metadata (X-Object-Meta-*, Content-Type, X-Delete-At...)."""
    bucket = await req.bucket("write")
    entry = await live_entry(req, bucket, req.obj)
    h = req.headers
    fields: dict[str, Any] = {"meta": swift_meta.from_headers(h, "object"),
                              "headers": {k: h[k] for k in SWIFT_STORED if k in h}}
    if h.get("content-type"):
        fields["ctype"] = h["content-type"]
    when = delete_at(h)
    if when is not None:
        fields["delete_at"] = when
    elif "x-remove-delete-at" in h:
        fields["delete_at"] = None
    if "x-object-manifest" in h and "dlo" in entry:
        fields["dlo"] = unquote(h["x-object-manifest"]).lstrip("/")
    await req.svc.objects.versions.update(bucket, key_bytes(req.obj), fields)
    return web.Response(status=202)


async def delete_object(req: SwiftRequest) -> web.Response:
    bucket = await req.bucket("write")
    await live_entry(req, bucket, req.obj)
    removed = await req.svc.objects.delete(bucket, key_bytes(req.obj), req.owner)
    if removed is None:
        raise SwiftError(404, "The object does not exist")
    return web.Response(status=204)


def _split(value: str, header: str) -> tuple[str, str]:
    container, _, obj = unquote(value).lstrip("/").partition("/")
    if not container or not obj:
        raise SwiftError(412, f"{header} header must be of the form <container name>/<object "
                         "name>")
    return container, obj


async def copy_verb(req: SwiftRequest) -> web.Response:
    if "destination" not in req.headers:
        raise SwiftError(412, "Destination header required")
    account = req.headers.get("destination-account", "")
    if account and account.removeprefix("AUTH_") != req.account:
        raise SwiftError(403, "Copies across accounts are not supported")
    container, obj = _split(req.headers["destination"], "Destination")
    return await _copy(req, req.container, req.obj, container, obj)


async def _copy(req: SwiftRequest, src_container: str, src_obj: str, container: str,
                obj: str) -> web.Response:
    if (req.http.content_length or 0) > 0:
        raise SwiftError(400, "A copy has no body")
    src_bucket = await req.bucket("read", src_container)
    entry = await live_entry(req, src_bucket, src_obj)
    check_conditions(req.headers, entry, copy=True)
    bucket = await req.bucket("write", container)
    h = req.headers
    fresh = h.get("x-fresh-metadata", "").lower() in ("true", "1", "yes")
    fields: dict[str, Any] = {
        "ctype": h.get("content-type") or entry.get("ctype", "application/octet-stream"),
        "meta": ({} if fresh else dict(entry.get("meta", {})))
        | swift_meta.from_headers(h, "object"),
        "headers": ({} if fresh else dict(entry.get("headers", {})))
        | {k: h[k] for k in SWIFT_STORED if k in h}}
    when = delete_at(h)
    if when is not None:
        fields["delete_at"] = when
    if req.query.get("multipart-manifest") == "get" and is_manifest(entry):
        # the manifest itself is copied: both then stitch the same segments
        keep: dict[str, Any] = {k: entry[k] for k in ("slo", "dlo", "etag", "size")
                                if k in entry}
        new = await req.svc.objects.put(bucket, key_bytes(obj), no_data(),
                                        lambda: {**fields, **keep, "owner": req.owner})
    else:
        view = await dlo_view(req, entry) if "dlo" in entry else entry
        pieces = await resolve(req, view)
        md5 = hashlib.md5()
        new = await req.svc.objects.put(
            bucket, key_bytes(obj), _hashing(stream(req, pieces), md5),
            lambda: {**fields, "etag": md5.hexdigest(), "cksum": None, "owner": req.owner})
    return web.Response(status=201, headers={
        "ETag": new["etag"], "Last-Modified": http_date(new["mtime"]),
        "X-Copied-From": quote(f"{src_container}/{src_obj}"),
        "X-Copied-From-Last-Modified": http_date(entry["mtime"])})
