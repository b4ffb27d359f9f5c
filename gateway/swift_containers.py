"""Swift containers (= the account's buckets): PUT, POST (metadata, ACLs), HEAD, DELETE
(409 while not empty) and GET, the listing with prefix, delimiter, marker, end_marker, limit and
reverse in plain text, JSON or XML.

Container names follow Swift's rules (1-256 bytes of UTF-8 without '/'), looser than S3's:
python-swiftclient's `<container>_segments` must work. Such a bucket is still reachable from
S3 path-style requests.

Forward listings page through the sharded index from the marker on. The index cannot be read
backwards, so a reversed listing reads the range it covers (at most REVERSE_SCAN entries) and
turns it around. Object counts and bytes used come from the counts each index shard keeps
(bucket_stats.py): one read per shard, not a scan.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway import errors, swift_acl, swift_listing, swift_meta
from gateway.buckets import Bucket
from gateway.context import Services
from gateway.expiry import expired, remove_expired, remove_if_all_expired
from gateway.s3_xml import http_date
from gateway.swift_context import SwiftRequest
from gateway.swift_errors import SwiftError

MAX_LIMIT = 10000
PAGE = 1000
REVERSE_SCAN = 100_000


def check_name(name: str) -> str:
    if not name or name in (".", ".."):
        raise SwiftError(400, "Bad container name")
    return name


async def usage(svc: Services, name: str) -> tuple[int, int]:
    """(objects, bytes) of a container, from its index shards' counts."""
    counts = await svc.buckets.usage(await svc.buckets.get(name, cached=True))
    return counts.objects, counts.bytes


async def _headers(req: SwiftRequest, bucket: Bucket) -> dict[str, str]:
    counts = await req.svc.buckets.usage(bucket)
    headers = {"X-Container-Object-Count": str(counts.objects),
               "X-Container-Bytes-Used": str(counts.bytes),
               "X-Timestamp": f"{bucket.created:.5f}", "X-PUT-Timestamp":
               f"{bucket.created:.5f}", "Last-Modified": http_date(bucket.created),
               "X-Storage-Policy": "default", "Accept-Ranges": "bytes"}
    headers.update(swift_meta.to_headers(bucket.swift.get("meta", {}), "container"))
    if req.is_admin:
        for acl, header in (("read", "X-Container-Read"), ("write", "X-Container-Write")):
            if bucket.swift.get(acl):
                headers[header] = bucket.swift[acl]
    return headers


def _changed(current: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """The container's Swift settings after a PUT/POST's headers."""
    out = dict(current)
    out["meta"] = swift_meta.updated(current.get("meta", {}), headers, "container")
    for acl in ("read", "write"):
        if f"x-remove-container-{acl}" in headers:
            out.pop(acl, None)
        if f"x-container-{acl}" in headers:
            out[acl] = swift_acl.clean(headers[f"x-container-{acl}"])
    if not out["meta"]:
        del out["meta"]
    return out


async def put_container(req: SwiftRequest) -> web.Response:
    req.need_admin()
    name = check_name(req.container)
    settings = _changed({}, req.headers)
    status = 201
    try:
        bucket = await req.svc.buckets.claim(req.qualified(name), req.account)
    except errors.BucketAlreadyOwnedByYou:
        status = 202
        bucket = await req.svc.buckets.get(req.qualified(name))
        settings = _changed(bucket.swift, req.headers)
    if settings != bucket.swift:
        bucket.swift = settings
        await req.svc.buckets.save(bucket)
    return web.Response(status=status)


async def post_container(req: SwiftRequest) -> web.Response:
    req.need_admin()
    bucket = await req.bucket("admin")
    settings = _changed(bucket.swift, req.headers)
    if settings != bucket.swift:
        bucket.swift = settings
        await req.svc.buckets.save(bucket)
    return web.Response(status=204)


async def head_container(req: SwiftRequest) -> web.Response:
    bucket = await req.bucket("list")
    return web.Response(status=204, headers=await _headers(req, bucket))


async def delete_container(req: SwiftRequest) -> web.Response:
    req.need_admin()
    bucket = await req.bucket("admin")
    try:
        await req.svc.buckets.delete(bucket)
    except errors.BucketNotEmpty:
        # what is left may all have expired, not yet reached by the GC worker
        if not await remove_if_all_expired(req.svc.objects, bucket):
            raise
        await req.svc.buckets.delete(bucket)
    return web.Response(status=204)


async def get_container(req: SwiftRequest) -> web.Response:
    bucket = await req.bucket("list")
    fmt = swift_listing.choose_format(req.query, req.headers.get("accept", ""))
    p = swift_listing.params(req.query, MAX_LIMIT)
    rows = await (_reversed_rows(req, bucket, p) if p.reverse else _rows(req, bucket, p))
    headers = await _headers(req, bucket)
    if not rows and fmt == "plain":
        return web.Response(status=204, headers=headers)
    body, ctype = swift_listing.render(fmt, "container", bucket.short_name, rows)
    headers["Content-Type"] = ctype
    return web.Response(status=200, body=body, headers=headers)


async def _live(req: SwiftRequest, bucket: Bucket, raw_key: bytes, raw: bytes
                ) -> dict[str, Any] | None:
    """The listed entry, or None for an object past its X-Delete-At (removed now)."""
    entry: dict[str, Any] = json.loads(raw)
    if expired(entry):
        await remove_expired(req.svc.objects, bucket, raw_key, entry)
        return None
    return entry


async def _rows(req: SwiftRequest, bucket: Bucket, p: swift_listing.Params
                ) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    marker = p.marker.encode()
    end = p.end_marker.encode()
    while len(rows) < p.limit:
        listing = await req.svc.buckets.list(
            bucket, prefix=p.prefix.encode(), marker=marker, delimiter=p.delimiter.encode(),
            max_keys=min(p.limit - len(rows), PAGE))
        items = sorted([(k, v) for k, v in listing.entries]
                       + [(sub, b"") for sub in listing.prefixes])
        for key, raw in items:
            if end and key >= end:
                return rows
            name = key.decode("utf-8", "surrogateescape")
            if not raw:
                rows.append({"subdir": name})
            elif (entry := await _live(req, bucket, key, raw)) is not None:
                rows.append(swift_listing.object_row(name, entry))
        if not listing.truncated:
            return rows
        marker = listing.next_marker
    return rows


async def _reversed_rows(req: SwiftRequest, bucket: Bucket, p: swift_listing.Params
                         ) -> list[dict[str, Any]]:
    entries: dict[str, bytes] = {}
    marker = p.end_marker.encode()
    upper = p.marker.encode()
    while len(entries) < REVERSE_SCAN:
        listing = await req.svc.buckets.list(bucket, prefix=p.prefix.encode(), marker=marker,
                                             max_keys=PAGE)
        for key, raw in listing.entries:
            if upper and key >= upper:
                listing.truncated = False
                break
            entries[key.decode("utf-8", "surrogateescape")] = raw
        if not listing.truncated:
            break
        marker = listing.next_marker
    rows: list[dict[str, Any]] = []
    for name, is_sub in swift_listing.select(list(entries), p):
        if is_sub:
            rows.append({"subdir": name})
        elif (entry := await _live(req, bucket, name.encode("utf-8", "surrogateescape"),
                                   entries[name])) is not None:
            rows.append(swift_listing.object_row(name, entry))
    return rows
