"""Swift large objects, stitched at read time by a manifest, never copied:

- DLO: an object PUT with `X-Object-Manifest: <container>/<prefix>` is every object of that
  container under that prefix, in name order, as they are when read.
- SLO: `PUT ?multipart-manifest=put` with a JSON list of segments ({path, etag, size_bytes,
  range}) checked at once; the manifest entry records each segment's name, etag and size and a
  GET streams the segments (409 if one has changed or gone since). `?multipart-manifest=get`
  answers the manifest, `?multipart-manifest=delete` removes the segments and the manifest.

A manifest is an index entry with no data of its own (`dlo` or `slo` beside the usual fields),
so it is listed, copied, expired and deleted like any object.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from gateway import errors, s3_sse
from gateway.buckets import key_bytes
from gateway.expiry import expired
from gateway.swift_bulk import Report, delete_path, respond
from gateway.swift_context import SwiftRequest
from gateway.swift_errors import SwiftError

MAX_SEGMENTS = 1000
MAX_MANIFEST = 8 * (1 << 20)
MAX_DEPTH = 10
Piece = tuple[dict[str, Any], int, int]  # (plain object entry, first byte, last byte)


def split_path(path: str) -> tuple[str, str]:
    container, _, obj = path.lstrip("/").partition("/")
    if not container or not obj:
        raise SwiftError(400, f"Segment path {path[:200]!r} is not /container/object")
    return container, obj


def parse_range(value: str, size: int) -> tuple[int, int]:
    """(first, last) of a segment's `range` ("a-b", "a-", "-n") within `size` bytes."""
    first, dash, last = value.partition("-")
    try:
        if not dash:
            raise ValueError
        if not first:
            n = int(last)
            lo, hi = max(0, size - n), size - 1
        else:
            lo, hi = int(first), min(int(last), size - 1) if last else size - 1
    except ValueError:
        raise SwiftError(400, f"Invalid range {value[:40]!r}") from None
    if lo < 0 or lo > hi or lo >= size:
        raise SwiftError(400, f"Unsatisfiable range {value[:40]!r}")
    return lo, hi


def slice_pieces(pieces: list[Piece], start: int, end: int) -> list[Piece]:
    """The parts of `pieces` (concatenated) covering bytes start..end."""
    out: list[Piece] = []
    pos = 0
    for entry, first, last in pieces:
        length = last - first + 1
        lo, hi = max(start, pos), min(end, pos + length - 1)
        if lo <= hi:
            out.append((entry, first + lo - pos, first + hi - pos))
        pos += length
    return out


def manifest_etag(rows: list[dict[str, Any]]) -> str:
    md5 = hashlib.md5()
    for row in rows:
        md5.update(row["hash"].encode())
        if row.get("range"):
            md5.update(f":{row['range']};".encode())
    return md5.hexdigest()


def is_manifest(entry: dict[str, Any]) -> bool:
    return "dlo" in entry or "slo" in entry


async def _segment(req: SwiftRequest, path: str) -> dict[str, Any] | None:
    container, obj = split_path(path)
    bucket = await req.bucket("read", container)
    entry = await req.svc.buckets.entry(bucket, key_bytes(obj))
    return None if entry is None or expired(entry) else entry


async def resolve(req: SwiftRequest, entry: dict[str, Any], depth: int = 0) -> list[Piece]:
    """The plain objects (and byte ranges of them) an entry's content is made of."""
    if depth > MAX_DEPTH:
        raise SwiftError(409, "Too many levels of nested manifests")
    if "slo" in entry:
        pieces: list[Piece] = []
        for row in entry["slo"]:
            seg = await _segment(req, row["name"])
            if seg is None or seg.get("etag") != row["hash"]:
                raise SwiftError(409, f"Segment {row['name'][:200]!r} changed or is gone")
            inner = await resolve(req, seg, depth + 1)
            if row.get("range"):
                lo, hi = parse_range(row["range"], seg["size"])
                inner = slice_pieces(inner, lo, hi)
            pieces += inner
        return pieces
    if "dlo" in entry:
        return [p for seg in await dlo_segments(req, entry["dlo"])
                for p in await resolve(req, seg, depth + 1) if "dlo" not in seg]
    return [(entry, 0, entry["size"] - 1)] if entry.get("size") else []


async def dlo_segments(req: SwiftRequest, manifest: str) -> list[dict[str, Any]]:
    container, _, prefix = manifest.partition("/")
    bucket = await req.bucket("read", container)
    out: list[dict[str, Any]] = []
    marker = b""
    while len(out) < MAX_SEGMENTS:
        listing = await req.svc.buckets.list(bucket, prefix=prefix.encode(), marker=marker,
                                             max_keys=MAX_SEGMENTS - len(out))
        out += [e for e in (json.loads(v) for _, v in listing.entries) if not expired(e)]
        if not listing.truncated:
            break
        marker = listing.next_marker
    return out


async def dlo_view(req: SwiftRequest, entry: dict[str, Any]) -> dict[str, Any]:
    """The entry of a DLO as a GET sees it now: size and etag of its segments."""
    segs = await dlo_segments(req, entry["dlo"])
    md5 = hashlib.md5("".join(s.get("etag", "") for s in segs).encode())
    return {**entry, "size": sum(s.get("size", 0) for s in segs), "etag": md5.hexdigest()}


async def stream(req: SwiftRequest, pieces: list[Piece]) -> AsyncIterator[bytes]:
    for entry, first, last in pieces:
        data = req.svc.objects.read(entry, first, last)
        if entry.get("sse"):  # written through S3 with SSE-S3/KMS (SSE-C: refused before)
            data = s3_sse.decrypt(data, entry, await s3_sse.data_key(req, entry["sse"]),
                                  first)
        async for piece in data:
            yield piece


# --- SLO manifests ---------------------------------------------------------------------------

def _parse_manifest(body: bytes) -> list[dict[str, Any]]:
    try:
        items = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SwiftError(400, "Manifest must be valid JSON") from None
    if not isinstance(items, list) or not items:
        raise SwiftError(400, "Manifest must be a non-empty list of segments")
    if len(items) > MAX_SEGMENTS:
        raise SwiftError(400, f"Too many segments; max {MAX_SEGMENTS}")
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise SwiftError(400, "Each segment needs a path (inline data is not supported)")
        if set(item) - {"path", "etag", "size_bytes", "range"}:
            raise SwiftError(400, f"Unknown segment keys {sorted(set(item))}")
        if item.get("etag") is not None and not isinstance(item["etag"], str):
            raise SwiftError(400, "A segment's etag must be a string")
        size = item.get("size_bytes")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise SwiftError(400, "A segment's size_bytes must be an integer")
    return items


async def _check_segment(req: SwiftRequest, item: dict[str, Any], problems: list[list[str]]
                         ) -> dict[str, Any] | None:
    path = item["path"]
    try:
        seg = await _segment(req, path)
    except errors.S3Error:
        seg = None
    if seg is None:
        problems.append([path, "404 Not Found"])
        return None
    etag = seg["etag"]
    if item.get("etag") is not None and item["etag"].strip('"').lower() != etag:
        problems.append([path, "Etag Mismatch"])
    if item.get("size_bytes") is not None and item["size_bytes"] != seg["size"]:
        problems.append([path, "Size Mismatch"])
    if seg["size"] == 0:
        problems.append([path, "Too small; each segment must be at least 1 byte."])
    row = {"name": "/" + path.lstrip("/"), "hash": etag, "bytes": seg["size"],
           "content_type": seg.get("ctype", ""), "last_modified": seg.get("mtime", 0.0)}
    if "slo" in seg:
        row["sub_slo"] = True
    if item.get("range"):
        try:
            lo, hi = parse_range(item["range"], seg["size"])
        except SwiftError:
            problems.append([path, "Invalid Range"])
            return None
        row["range"], row["bytes"] = f"{lo}-{hi}", hi - lo + 1
    return row


async def put_slo(req: SwiftRequest) -> web.Response:
    from gateway.swift_objects import describe_put  # (objects import this module)

    bucket = await req.bucket("write")
    key = key_bytes(req.obj)
    items = _parse_manifest(await req.small_body(MAX_MANIFEST))
    problems: list[list[str]] = []
    rows = [row for item in items
            if (row := await _check_segment(req, item, problems)) is not None]
    if problems:
        text = "Errors:\n" + "".join(f"{p}, {s}\n" for p, s in problems)
        raise SwiftError(400, text)
    etag = manifest_etag(rows)
    wanted = req.headers.get("etag", "").strip('"').lower()
    if wanted and wanted != etag:
        raise SwiftError(422, "The manifest's ETag does not match its segments")
    fields = describe_put(req)

    def describe() -> dict[str, Any]:
        return {**fields, "etag": etag, "slo": rows, "cksum": None, "owner": req.owner,
                "size": sum(r["bytes"] for r in rows)}

    await req.svc.objects.put(bucket, key, no_data(), describe)
    return web.Response(status=201, headers={"ETag": f'"{etag}"'})


async def no_data() -> AsyncIterator[bytes]:
    return
    yield b""


def manifest_response(entry: dict[str, Any], raw: bool) -> web.Response:
    """`?multipart-manifest=get`: the manifest itself (`format=raw`: as it was PUT)."""
    from gateway.swift_listing import timestamp

    if raw:
        rows: list[dict[str, Any]] = [
            {"path": r["name"], "etag": r["hash"], "size_bytes": r["bytes"]}
            | ({"range": r["range"]} if r.get("range") else {}) for r in entry["slo"]]
    else:
        rows = [{**r, "last_modified": timestamp(r.get("last_modified", 0.0))}
                for r in entry["slo"]]
    body = json.dumps(rows).encode()
    return web.Response(status=200, body=body, headers={
        "Content-Type": "application/json; charset=utf-8",
        "X-Static-Large-Object": "True", "ETag": hashlib.md5(body).hexdigest()})


async def delete_slo(req: SwiftRequest) -> web.Response:
    """`DELETE ?multipart-manifest=delete`: the segments, then the manifest (a plain object
    is simply deleted)."""
    bucket = await req.bucket("write")
    entry = await req.svc.buckets.entry(bucket, key_bytes(req.obj))
    if entry is None:
        raise SwiftError(404)
    report = Report()
    for row in entry.get("slo", []):
        await delete_path(req, row["name"], report)
    await delete_path(req, f"/{req.container}/{req.obj}", report)
    return respond(report, req.headers.get("accept", ""))
