"""S3 object operations: Put, Get (ranges, conditions, response-* overrides), Head, Delete,
Copy, and the object's canned ACL."""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from gateway import errors, lifecycle, s3_lock, s3_sse, s3_xml
from gateway.buckets import Bucket, key_bytes
from gateway.context import S3Request
from gateway.s3_buckets import xml_response
from gateway.s3_xml import Node, document, http_date, iso8601
from gateway.tags import tags_from_header
from gateway.versioning import Precondition

META_PREFIX = "x-amz-meta-"
MAX_META = 2048  # S3's limit on user metadata (names and values)
STORED_HEADERS = ("content-disposition", "cache-control", "expires", "content-language")
OVERRIDES = {"response-content-type": "Content-Type",
             "response-content-language": "Content-Language",
             "response-expires": "Expires", "response-cache-control": "Cache-Control",
             "response-content-disposition": "Content-Disposition",
             "response-content-encoding": "Content-Encoding"}


def _metadata(headers: dict[str, str]) -> dict[str, str]:
    meta = {k[len(META_PREFIX):]: v for k, v in headers.items() if k.startswith(META_PREFIX)}
    if sum(len(k) + len(v) for k, v in meta.items()) > MAX_META:
        raise errors.MetadataTooLarge()
    return meta


async def describe_upload(req: S3Request, bucket: Bucket, headers: dict[str, str]
                          ) -> dict[str, Any]:
    """The entry fields a PUT (or a copy that replaces metadata) takes from its headers:
    content headers, metadata, tags, the ACL and who owns the object."""
    encoding = headers.get("content-encoding", "")
    tokens = [x.strip() for x in encoding.split(",")]
    if any(t.lower() == "aws-chunked" for t in tokens):  # the transfer's, not the object's
        encoding = ", ".join(t for t in tokens if t and t.lower() != "aws-chunked")
    stored = {h: headers[h] for h in STORED_HEADERS if h in headers}
    if encoding:
        stored["content-encoding"] = encoding
    wanted = await req.new_acl(bucket, headers)
    fields = {"ctype": headers.get("content-type") or "binary/octet-stream",
              "meta": _metadata(headers), "headers": stored, "acl": wanted or "private",
              "owner": req.new_owner(bucket, wanted)}
    if "x-amz-tagging" in headers:
        fields["tags"] = tags_from_header(headers["x-amz-tagging"])
    sse = await s3_sse.new_sse(req, bucket, headers)
    if sse is not None:
        fields["sse"] = sse
    lock = s3_lock.lock_of_upload(bucket, headers)
    if lock is not None:
        fields["lock"] = lock
    return fields


def entry_headers(entry: dict[str, Any]) -> dict[str, str]:
    headers = {"ETag": f'"{entry["etag"]}"', "Last-Modified": http_date(entry["mtime"]),
               "Content-Type": entry.get("ctype", "binary/octet-stream"),
               "Accept-Ranges": "bytes"}
    for name, value in entry.get("headers", {}).items():
        headers[name.title()] = value
    for name, value in entry.get("meta", {}).items():
        headers[META_PREFIX + name] = value
    if entry.get("parts"):
        headers["x-amz-mp-parts-count"] = str(entry["parts"])
    if "vid" in entry:
        headers["x-amz-version-id"] = entry["vid"]
    if entry.get("tags"):
        headers["x-amz-tagging-count"] = str(len(entry["tags"]))
    headers.update(s3_lock.lock_headers(entry))
    headers.update(s3_sse.response_headers(entry.get("sse")))
    return headers


async def put_object(req: S3Request) -> web.Response:
    if "x-amz-copy-source" in req.headers:
        return await copy_object(req)
    bucket = await req.bucket("s3:PutObject", req.key)
    key = key_bytes(req.key)
    if "content-length" not in req.headers and "transfer-encoding" not in req.headers:
        raise errors.MissingContentLength()
    fields = await describe_upload(req, bucket, req.headers)
    precondition = put_precondition(req.headers)
    if precondition is not None:  # fail before the upload if it fails now (checked again)
        precondition(await req.svc.buckets.entry(bucket, key))
    body = req.body()
    pieces = body.pieces()
    if "sse" in fields:
        pieces = s3_sse.encrypt(pieces, await s3_sse.data_key(req, fields["sse"]),
                                fields["sse"]["iv"])

    def describe() -> dict[str, Any]:
        return {**fields, "etag": body.md5, "cksum": body.checksum}

    entry = await req.svc.objects.put(bucket, key, pieces, describe, precondition)
    headers = {"ETag": f'"{body.md5}"', **s3_sse.response_headers(fields.get("sse"))}
    if entry.get("vid", "null") != "null":  # a suspended bucket's null version: no header
        headers["x-amz-version-id"] = entry["vid"]
    if body.checksum is not None:
        headers[f"x-amz-checksum-{body.checksum[0]}"] = body.checksum[1]
    headers.update(expiration(bucket, req.key, entry))
    return web.Response(status=200, headers=headers)


def put_precondition(headers: dict[str, str]) -> Precondition | None:
    """If-Match / If-None-Match of a PUT, as a check of the current object (None: no
    condition). Applied atomically with the write (versioning.py)."""
    match, none_match = headers.get("if-match"), headers.get("if-none-match")
    if match is None and none_match is None:
        return None

    def check(current: dict[str, Any] | None) -> None:
        if match is not None and (current is None or not _etag_matches(match, current["etag"])):
            raise errors.PreconditionFailed(Condition="If-Match")
        if none_match is not None and current is not None and _etag_matches(none_match,
                                                                             current["etag"]):
            raise errors.PreconditionFailed(Condition="If-None-Match")
    return check


def _parse_time(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip().strip('"') for t in header.split(",")]
    return "*" in tags or etag in tags


def check_conditions(headers: dict[str, str], entry: dict[str, Any], prefix: str = "if-",
                     copy: bool = False) -> None:
    """If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since as S3 applies them."""
    etag, mtime = entry["etag"], int(entry["mtime"])
    match = headers.get(prefix + "match")
    none_match = headers.get(prefix + "none-match")
    since = headers.get(prefix + "modified-since")
    unmodified = headers.get(prefix + "unmodified-since")
    if match is not None and not _etag_matches(match, etag):
        raise errors.PreconditionFailed(Condition=prefix.title() + "Match")
    if match is None and unmodified is not None:
        when = _parse_time(unmodified)
        if when is not None and mtime > when:
            raise errors.PreconditionFailed(Condition=prefix.title() + "Unmodified-Since")
    not_modified = errors.PreconditionFailed if copy else errors.NotModified
    if none_match is not None and _etag_matches(none_match, etag):
        raise not_modified(Condition=prefix.title() + "None-Match")
    if none_match is None and since is not None:
        when = _parse_time(since)
        if when is not None and mtime <= when:
            raise not_modified(Condition=prefix.title() + "Modified-Since")


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of a single `bytes=` range; None for no (or an ignorable) range."""
    if not value or not value.startswith("bytes=") or "," in value:
        return None
    first, dash, last = value[6:].strip().partition("-")
    if not dash:
        return None
    try:
        if not first:
            n = int(last)
            if n <= 0:
                raise errors.InvalidRange(ActualObjectSize=str(size))
            return max(0, size - n), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start < 0 or (end < start and last):
        return None
    if start >= size:
        raise errors.InvalidRange(ActualObjectSize=str(size))
    return start, min(end, size - 1)


async def find_entry(req: S3Request, bucket: Bucket, key: str, vid: str | None
                     ) -> dict[str, Any]:
    """The object (or the version `vid` of it); NoSuchKey/NoSuchVersion, or MethodNotAllowed
    for a delete marker, as S3 answers."""
    raw = key_bytes(key)
    if vid is not None:
        check_version_id(vid)
        entry = await req.svc.objects.versions.get(bucket, raw, vid)
        if entry is None and vid == "null" and not bucket.versioning:
            entry = await req.svc.buckets.entry(bucket, raw)
        if entry is None:
            raise errors.NoSuchVersion(Key=key, VersionId=vid)
        if entry.get("dm"):
            exc = errors.MethodNotAllowed(Method=req.http.method, ResourceType="DeleteMarker")
            exc.headers = {"x-amz-delete-marker": "true", "x-amz-version-id": vid}
            raise exc
        return entry
    entry = await req.svc.buckets.entry(bucket, raw)
    if entry is None:
        # only who may list the bucket (here) learns which keys do not exist
        if not req.allowed("s3:ListBucket", bucket, extra={"s3:prefix": [key]}):
            raise errors.AccessDenied()
        missing = errors.NoSuchKey(Key=key)
        if bucket.versioning and await req.svc.objects.versions.latest_is_marker(bucket, raw):
            missing.headers = {"x-amz-delete-marker": "true"}
        raise missing
    return entry


def part_range(entry: dict[str, Any], raw: str) -> tuple[int, int]:
    """The bytes of part N of a multipart object (a whole object is its only part)."""
    sizes = entry.get("psizes") or [entry["size"]]
    if not raw.isdigit() or not 1 <= int(raw) <= 10000:
        raise errors.InvalidArgument("Part number must be an integer between 1 and 10000",
                                     ArgumentName="partNumber", ArgumentValue=raw[:20])
    n = int(raw)
    if n > len(sizes) or sizes[n - 1] == 0:
        exc = errors.InvalidPartNumber()
        exc.headers = {"x-amz-mp-parts-count": str(len(sizes))}
        raise exc
    first = sum(sizes[:n - 1])
    return first, first + sizes[n - 1] - 1


async def readable_entry(req: S3Request, action: str = "s3:GetObject",
                         version_action: str = "s3:GetObjectVersion"
                         ) -> tuple[Bucket, dict[str, Any]]:
    """The bucket and the object (or the version) the request names, if the requester may
    do `action` (`version_action` when a version is named) to it."""
    buckets = req.svc.buckets
    # the owner's reads (the common case) reuse a recent bucket entry: one RADOS read less
    bucket = await buckets.get(req.bucket_name, cached=True)
    if not req.is_owner(bucket) or bucket.policy:
        bucket = await buckets.get(req.bucket_name)  # others' access depends on it now
    vid = req.query.get("versionId")
    try:
        entry = await find_entry(req, bucket, req.key, vid)
    except errors.NoSuchBucket:
        buckets.forget(req.bucket_name)  # deleted (maybe created again) since it was cached
        bucket = await buckets.get(req.bucket_name)
        if not req.allowed("s3:ListBucket", bucket):
            raise errors.AccessDenied() from None
        entry = await find_entry(req, bucket, req.key, vid)
    req.check(version_action if vid is not None else action, bucket, req.key, entry)
    return bucket, entry


def expiration(bucket: Bucket, key: str, entry: dict[str, Any]) -> dict[str, str]:
    """x-amz-expiration, when a lifecycle rule will expire the object."""
    rules = bucket.config.get("lifecycle")
    value = lifecycle.expiration_header(rules, key, entry) if rules else None
    return {"x-amz-expiration": value} if value else {}


async def get_object(req: S3Request, head: bool = False) -> web.StreamResponse:
    s3_sse.refuse_on_read(req.headers)
    bucket, entry = await readable_entry(req)
    key = await s3_sse.data_key(req, entry["sse"]) if entry.get("sse") else None
    headers = entry_headers(entry)
    if "versionId" not in req.query:
        headers.update(expiration(bucket, req.key, entry))
    try:
        check_conditions(req.headers, entry)
    except errors.NotModified:
        return web.Response(status=304, headers={k: v for k, v in headers.items()
                                                 if k in ("ETag", "Last-Modified")})
    size = entry["size"]
    rng = (part_range(entry, req.query["partNumber"]) if "partNumber" in req.query
           else parse_range(req.headers.get("range"), size))
    for param, header in OVERRIDES.items():
        if param in req.query:
            value = req.query[param]
            if any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise errors.InvalidArgument(f"{param} must not contain control characters",
                                             ArgumentName=param)
            headers[header] = value
    if rng is None:
        first, last, status = 0, size - 1, 200
        cksum = entry.get("cksum")
        if cksum and req.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
            headers[f"x-amz-checksum-{cksum[0]}"] = cksum[1]
    else:
        first, last, status = rng[0], rng[1], 206
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = last - first + 1 if size else 0
    req.http["streaming"] = resp
    await resp.prepare(req.http)
    if not head and size:
        pieces = req.svc.objects.read(entry, first, last)
        if key is not None:
            pieces = s3_sse.decrypt(pieces, entry, key, first)
        async for piece in pieces:
            await resp.write(piece)
    await resp.write_eof()
    return resp


async def delete_object(req: S3Request) -> web.Response:
    vid = req.query.get("versionId")
    bucket = await req.bucket("s3:DeleteObjectVersion" if vid is not None else
                              "s3:DeleteObject", req.key)
    h = req.headers
    condition = delete_precondition(h.get("if-match"),
                                    h.get("x-amz-if-match-last-modified-time"),
                                    h.get("x-amz-if-match-size"))
    headers = await delete_one(req, bucket, req.key, vid, condition)
    return web.Response(status=204, headers=headers)


def delete_precondition(match: str | None, mtime: str | None, size: str | None
                        ) -> Precondition | None:
    """The conditions of a delete (If-Match, x-amz-if-match-last-modified-time and -size, or
    a DeleteObjects entry's ETag, LastModifiedTime, Size) as a check of the version it would
    delete, applied atomically with the delete. Nothing to delete is no failure, as S3 says."""
    if match is None and mtime is None and size is None:
        return None
    when = None
    if mtime is not None:
        when = _parse_time(mtime)
        if when is None:
            with contextlib.suppress(ValueError):
                when = datetime.fromisoformat(mtime.replace("Z", "+00:00")).timestamp()
        if when is None:
            raise errors.InvalidArgument("Invalid last-modified time",
                                         ArgumentName="x-amz-if-match-last-modified-time")
    if size is not None and not size.strip().isdigit():
        raise errors.InvalidArgument("Invalid size", ArgumentName="x-amz-if-match-size")

    def check(entry: dict[str, Any] | None) -> None:
        if entry is None:
            return
        if match is not None and not _etag_matches(match, entry.get("etag", "")):
            raise errors.PreconditionFailed(Condition="If-Match")
        if when is not None and int(entry["mtime"]) != int(when):
            raise errors.PreconditionFailed(Condition="x-amz-if-match-last-modified-time")
        if size is not None and int(size) != entry.get("size", 0):
            raise errors.PreconditionFailed(Condition="x-amz-if-match-size")
    return check


async def delete_one(req: S3Request, bucket: Bucket, key: str, vid: str | None,
                     condition: Precondition | None = None) -> dict[str, str]:
    """Delete the object or one version of it; the x-amz-* headers that say what happened."""
    objects = req.svc.objects
    if vid is not None:
        check_version_id(vid)
        condition = s3_lock.guard_delete(req, bucket, key, condition)
        removed = await objects.delete_version(bucket, key_bytes(key), vid, condition)
        headers = {"x-amz-version-id": vid}
        if removed is not None and removed.get("dm"):
            headers["x-amz-delete-marker"] = "true"
        return headers
    owner = req.user.user_id if req.user else bucket.owner
    result = await objects.delete(bucket, key_bytes(key), owner, condition)
    if result is not None and result.get("dm"):
        return {"x-amz-delete-marker": "true", "x-amz-version-id": result["vid"]}
    return {}


def check_version_id(vid: str) -> str:
    """Version ids are "null" or ours (digits and hex): anything else never names a version
    (and is never echoed into a header)."""
    if not re.fullmatch(r"null|[0-9a-f]{1,64}", vid):
        raise errors.InvalidArgument("Invalid version id specified", ArgumentName="versionId",
                                     ArgumentValue=vid[:64])
    return vid


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    """(bucket, key, version id or None) of x-amz-copy-source."""
    path, _, query = value.partition("?")
    source = unquote(path).lstrip("/")
    bucket, _, key = source.partition("/")
    if not bucket or not key:
        raise errors.InvalidArgument("Copy Source must mention the source bucket and key: "
                                     "sourcebucket/sourcekey",
                                     ArgumentName="x-amz-copy-source", ArgumentValue=value)
    vid = None
    for item in query.split("&") if query else ():
        name, _, val = item.partition("=")
        if name == "versionId":
            vid = unquote(val)
    return bucket, key, vid


async def _hashing(pieces: AsyncIterator[bytes], md5: Any) -> AsyncIterator[bytes]:
    async for piece in pieces:
        md5.update(piece)
        yield piece


async def copy_object(req: S3Request) -> web.Response:
    dest = await req.bucket("s3:PutObject", req.key)
    entry, src_bucket, src_key, src_vid = await copy_source(req)
    directive = req.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise errors.InvalidArgument("Unknown metadata directive.",
                                     ArgumentName="x-amz-metadata-directive")
    same = src_bucket.name == dest.name and src_key == req.key and src_vid is None
    if same and directive == "COPY":
        raise errors.InvalidRequest("This copy request is illegal because it is trying to copy "
                                    "an object to itself without changing the object's "
                                    "metadata, storage class, website redirect location or "
                                    "encryption attributes.")
    fields = await describe_upload(req, dest, req.headers)
    if directive == "COPY":
        fields.update({k: entry[k] for k in ("ctype", "meta", "headers") if k in entry})
    tagging = req.headers.get("x-amz-tagging-directive", "COPY").upper()
    if tagging not in ("COPY", "REPLACE"):
        raise errors.InvalidArgument("Unknown tagging directive.",
                                     ArgumentName="x-amz-tagging-directive")
    fields["tags"] = (tags_from_header(req.headers.get("x-amz-tagging", ""))
                      if tagging == "REPLACE" else entry.get("tags", {}))
    md5 = hashlib.md5()
    pieces = await read_source(req, entry, 0, entry["size"] - 1)
    pieces = _hashing(pieces, md5)
    if "sse" in fields:
        pieces = s3_sse.encrypt(pieces, await s3_sse.data_key(req, fields["sse"]),
                                fields["sse"]["iv"])

    def describe() -> dict[str, Any]:
        return {**fields, "etag": md5.hexdigest(), "cksum": None}

    await req.small_body(s3_xml.MAX_BODY)  # a copy has no body; a stray one is drained
    new = await req.svc.objects.put(dest, key_bytes(req.key), pieces, describe)
    headers = ({"x-amz-version-id": new["vid"]} if new.get("vid", "null") != "null"
               else {})
    headers.update(s3_sse.response_headers(new.get("sse")))
    if src_vid is not None:
        headers["x-amz-copy-source-version-id"] = src_vid
    resp = xml_response(document("CopyObjectResult", [
        ("LastModified", iso8601(new["mtime"])), ("ETag", f'"{new["etag"]}"')]))
    resp.headers.update(headers)
    return resp


async def copy_source(req: S3Request) -> tuple[dict[str, Any], Bucket, str, str | None]:
    """The entry x-amz-copy-source names, if readable and its conditions hold."""
    src_bucket_name, src_key, src_vid = parse_copy_source(req.headers["x-amz-copy-source"])
    src_bucket = await req.svc.buckets.get(req.qualify(src_bucket_name))
    entry = await find_entry(req, src_bucket, src_key, src_vid)
    req.check("s3:GetObjectVersion" if src_vid is not None else "s3:GetObject", src_bucket,
              src_key, entry)
    check_conditions(req.headers, entry, prefix="x-amz-copy-source-if-", copy=True)
    return entry, src_bucket, src_key, src_vid


async def read_source(req: S3Request, entry: dict[str, Any], first: int, last: int
                      ) -> AsyncIterator[bytes]:
    """The plaintext of a copy source's bytes first..last (decrypted with the key of the
    x-amz-copy-source-server-side-encryption-customer-* headers, for SSE-C)."""
    if last < first:
        return _empty()
    pieces = req.svc.objects.read(entry, first, last)
    if entry.get("sse"):
        key = await s3_sse.data_key(req, entry["sse"], prefix=s3_sse.COPY_CUSTOMER)
        pieces = s3_sse.decrypt(pieces, entry, key, first)
    return pieces


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""


ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")


async def get_object_attributes(req: S3Request) -> web.Response:
    """GetObjectAttributes: what x-amz-object-attributes asks for, of the object or a
    version, without its data (the parts of a multipart object page by part number)."""
    _, entry = await readable_entry(req, "s3:GetObjectAttributes",
                                    "s3:GetObjectVersionAttributes")
    if entry.get("sse"):
        await s3_sse.data_key(req, entry["sse"])  # SSE-C: only who has the key
    wanted = {a.strip() for a in req.headers.get("x-amz-object-attributes", "").split(",")}
    if not wanted & set(ATTRIBUTES):
        raise errors.InvalidArgument("Invalid attribute name specified.",
                                     ArgumentName="x-amz-object-attributes")
    nodes: list[Node] = []
    if "ETag" in wanted:
        nodes.append(("ETag", entry["etag"]))
    cksum = entry.get("cksum")
    if "Checksum" in wanted and cksum:
        nodes.append(("Checksum", [(f"Checksum{cksum[0].upper()}", cksum[1])]))
    sizes = entry.get("psizes")
    if "ObjectParts" in wanted and sizes:
        nodes.append(("ObjectParts", _parts_page(req, sizes)))
    if "StorageClass" in wanted:
        nodes.append(("StorageClass", "STANDARD"))
    if "ObjectSize" in wanted:
        nodes.append(("ObjectSize", entry["size"]))
    resp = xml_response(document("GetObjectAttributesResponse", nodes))
    resp.headers["Last-Modified"] = http_date(entry["mtime"])
    if "vid" in entry:
        resp.headers["x-amz-version-id"] = entry["vid"]
    return resp


def _parts_page(req: S3Request, sizes: list[int]) -> list[Node]:
    def number(header: str, default: int) -> int:
        raw = req.headers.get(header, str(default)).strip()
        if not raw.isdigit():
            raise errors.InvalidArgument(f"{header} must be a whole number",
                                         ArgumentName=header)
        return int(raw)
    max_parts = min(number("x-amz-max-parts", 1000), 1000)
    marker = number("x-amz-part-number-marker", 0)
    page = list(enumerate(sizes, 1))[marker:marker + max_parts]
    truncated = marker + len(page) < len(sizes)
    nodes: list[Node] = [("PartsCount", len(sizes)), ("PartNumberMarker", marker),
                         ("NextPartNumberMarker", page[-1][0] if page else marker),
                         ("MaxParts", max_parts), ("IsTruncated", truncated)]
    return nodes + [("Part", [("PartNumber", n), ("Size", size)]) for n, size in page]
