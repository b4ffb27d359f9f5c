"""S3 multipart uploads: parts are written as their own striped segments, and completing the
upload writes one index entry whose manifest lists the parts' segments in order: no data is
copied.

    meta pool   mp.<bucket id>                  omap "<key>\\0<upload id>" -> upload (JSON)
                mp.<bucket id>.<upload id>      the upload; omap "<part, 5 digits>" -> part

Complete and abort first *claim* the upload (remove its object, guarded by the version read
with its parts), so of two concurrent completions exactly one links the parts; the other gets
NoSuchUpload. A part uploaded again replaces the earlier one, whose data goes to GC.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from gateway import checksums, errors, s3_sse, s3_xml
from gateway.buckets import Bucket, key_bytes
from gateway.context import S3Request, Services
from gateway.s3_buckets import owner_node, xml_response
from gateway.s3_objects import copy_source, describe_upload, read_source
from gateway.s3_xml import Node, document, iso8601
from rados_py.errors import NotFound
from rados_py.proto.loligo import osd_pb2
from rados_py.rados import CompareFailed, ObjectOp

K = osd_pb2.OsdOp
MIN_PART = 5 << 20
MAX_PARTS = 10000


def _index_oid(bucket: Bucket) -> str:
    return f"mp.{bucket.id}"


def _upload_oid(bucket: Bucket, upload_id: str) -> str:
    return f"mp.{bucket.id}.{upload_id}"


def _upload_key(key: str, upload_id: str) -> bytes:
    return key.encode("utf-8", "surrogateescape") + b"\0" + upload_id.encode()


async def create_upload(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutObject", req.key)
    key_bytes(req.key)
    upload_id = uuid.uuid4().hex
    algorithm = req.headers.get("x-amz-checksum-algorithm", "").lower() or None
    if algorithm is not None and algorithm not in checksums.ALGORITHMS:
        raise errors.InvalidRequest(f"Unsupported checksum algorithm {algorithm!r}")
    fields = await describe_upload(req, bucket, req.headers)
    upload = {"key": req.key, "upload_id": upload_id, "initiated": time.time(),
              "owner": fields["owner"],
              "initiator": req.user.user_id if req.user else "anonymous",
              "fields": fields, "cksum_alg": algorithm}
    raw = json.dumps(upload).encode()
    meta = req.svc.meta
    await meta.operate(_upload_oid(bucket, upload_id), ObjectOp().create(True).write_full(raw))
    await meta.omap_set(_index_oid(bucket), {_upload_key(req.key, upload_id): raw})
    resp = xml_response(document("InitiateMultipartUploadResult", [
        ("Bucket", bucket.short_name), ("Key", req.key), ("UploadId", upload_id)]))
    resp.headers.update(s3_sse.response_headers(fields.get("sse")))
    return resp


async def _upload(req: S3Request, bucket: Bucket) -> dict[str, Any]:
    upload_id = req.query.get("uploadId", "")
    try:
        raw = await req.svc.meta.read(_upload_oid(bucket, upload_id))
    except NotFound:
        raise errors.NoSuchUpload(UploadId=upload_id) from None
    upload = json.loads(raw)
    if upload["key"] != req.key:
        raise errors.NoSuchUpload(UploadId=upload_id)
    return upload


def _part_number(req: S3Request) -> int:
    raw = req.query.get("partNumber", "")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PARTS:
        raise errors.InvalidArgument("Part number must be an integer between 1 and 10000, "
                                     "inclusive", ArgumentName="partNumber", ArgumentValue=raw)
    return int(raw)


async def upload_part(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutObject", req.key)
    number = _part_number(req)
    upload = await _upload(req, bucket)
    objects = req.svc.objects
    prefix = f"{bucket.id}.{upload['upload_id']}.{number}.{uuid.uuid4().hex[:8]}"
    copy = "x-amz-copy-source" in req.headers
    sse = upload["fields"].get("sse")
    key = await s3_sse.data_key(req, sse) if sse else None

    def sealed(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        if key is None or sse is None:
            return pieces
        return s3_sse.encrypt(pieces, key, s3_sse.part_iv(sse, number))
    if copy:
        md5 = hashlib.md5()
        pieces = _copy_source(req, md5)
        seg, gc_key = await objects.write_segment(prefix, sealed(await pieces))
        etag = md5.hexdigest()
        checksum = None
    else:
        body = req.body()
        seg, gc_key = await objects.write_segment(prefix, sealed(body.pieces()))
        etag = body.md5
        checksum = body.checksum
    part = {"etag": etag, "size": seg[1], "seg": seg, "mtime": time.time(),
            "cksum": checksum}
    op = ObjectOp().assert_exists()
    op._add(kind=K.OMAP_GET, keys=[f"{number:05d}".encode()])
    op.omap_set({f"{number:05d}": json.dumps(part).encode()})
    try:
        results = await req.svc.meta.operate(_upload_oid(bucket, upload["upload_id"]), op)
    except NotFound:
        await req.svc.gc.remove_segments([seg])
        await req.svc.gc.cancel(gc_key)
        raise errors.NoSuchUpload(UploadId=upload["upload_id"]) from None
    await req.svc.gc.cancel(gc_key)
    if results[1].pairs:
        await req.svc.gc.defer([json.loads(results[1].pairs[0].value)["seg"]])
    if copy:
        resp = xml_response(document("CopyPartResult", [
            ("LastModified", iso8601(part["mtime"])), ("ETag", f'"{etag}"')]))
        resp.headers.update(s3_sse.response_headers(sse))
        return resp
    headers = {"ETag": f'"{etag}"', **s3_sse.response_headers(sse)}
    if checksum is not None:
        headers[f"x-amz-checksum-{checksum[0]}"] = checksum[1]
    return web.Response(status=200, headers=headers)


async def _copy_source(req: S3Request, md5: Any) -> AsyncIterator[bytes]:
    entry = (await copy_source(req))[0]
    size = entry["size"]
    rng = req.headers.get("x-amz-copy-source-range")
    first, last = 0, size - 1
    if rng is not None:
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", rng.strip())
        if m is None:
            raise errors.InvalidArgument("The x-amz-copy-source-range value must be of the form "
                                         "bytes=first-last where first and last are the "
                                         "zero-based offsets of the first and last bytes to "
                                         "copy", ArgumentName="x-amz-copy-source-range",
                                         ArgumentValue=rng[:64])
        first, last = int(m.group(1)), int(m.group(2))
        if first > last or last >= size:
            raise errors.InvalidRange("The x-amz-copy-source-range is outside the source "
                                      f"object (of {size} bytes)",
                                      ActualObjectSize=str(size))

    source = await read_source(req, entry, first, last) if size else None

    async def pieces() -> AsyncIterator[bytes]:
        if source is None:
            return
        async for piece in source:
            md5.update(piece)
            yield piece
    return pieces()


async def _claim(svc: Services, bucket: Bucket, upload_id: str
                 ) -> tuple[int, dict[int, dict[str, Any]]]:
    """(version, parts) of the upload, read in one op."""
    op = ObjectOp().stat()
    op._add(kind=K.OMAP_LIST, max=MAX_PARTS)
    try:
        results = await svc.meta.operate(_upload_oid(bucket, upload_id), op)
    except NotFound:
        raise errors.NoSuchUpload(UploadId=upload_id) from None
    parts = {int(p.key): json.loads(p.value) for p in results[1].pairs}
    return results[0].version, parts


async def _take(svc: Services, bucket: Bucket, upload: dict[str, Any], version: int) -> None:
    """Remove the upload if it is still as read at `version`; NoSuchUpload otherwise."""
    upload_id = upload["upload_id"]
    try:
        await svc.meta.operate(_upload_oid(bucket, upload_id),
                                   ObjectOp().assert_version(version).remove())
    except (NotFound, CompareFailed):
        raise errors.NoSuchUpload(UploadId=upload_id) from None
    await svc.meta.omap_rm(_index_oid(bucket), [_upload_key(upload["key"], upload_id)])


async def complete_upload(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutObject", req.key)
    body = await req.small_body(s3_xml.MAX_BODY)
    try:
        upload = await _upload(req, bucket)
    except errors.NoSuchUpload:
        # completed already: a client resending the same request (its answer was lost) gets
        # the same answer again
        done = await req.svc.buckets.entry(bucket, key_bytes(req.key))
        if done is None or done.get("upload_id") != req.query.get("uploadId"):
            raise
        wanted = list({n: e for n, e in _parts_listed(body)}.items())
        with contextlib.suppress(ValueError):
            digest = hashlib.md5(b"".join(bytes.fromhex(e) for _, e in wanted)).hexdigest()
            if done["etag"] == f"{digest}-{len(wanted)}":
                return _completed(bucket, req.key, done)
        raise
    wanted, claimed = _parts_listed(body), _checksums_listed(body)
    sse = upload["fields"].get("sse")
    if sse:  # SSE-C: only who holds the upload's key completes it
        await s3_sse.data_key(req, sse)
    if not wanted:
        raise errors.MalformedXML("You must specify at least one part")
    numbers = [n for n, _ in wanted]
    if numbers != sorted(numbers):
        raise errors.InvalidPartOrder()
    # a part listed twice (a client that resent it) counts once, as its last listing
    wanted = list({n: (n, etag) for n, etag in wanted}.values())
    version, parts = await _claim(req.svc, bucket, upload["upload_id"])
    chosen = []
    for i, (part_number, part_etag) in enumerate(wanted):
        part = parts.get(part_number)
        ours = (part or {}).get("cksum")
        if part is None or part["etag"] != part_etag or (
                part_number in claimed and (not ours or ours[1] != claimed[part_number])):
            raise errors.InvalidPart(PartNumber=str(part_number), ETag=part_etag)
        if i < len(wanted) - 1 and part["size"] < MIN_PART:
            raise errors.EntityTooSmall(PartNumber=str(part_number),
                                        ProposedSize=str(part["size"]),
                                        MinSizeAllowed=str(MIN_PART))
        chosen.append(part)
    await _take(req.svc, bucket, upload, version)
    digest = hashlib.md5(b"".join(bytes.fromhex(p["etag"]) for p in chosen)).hexdigest()
    composite = _composite_checksum(upload.get("cksum_alg"), chosen)
    entry = {**upload["fields"], "size": sum(p["size"] for p in chosen),
             "mtime": time.time(), "etag": f"{digest}-{len(chosen)}", "cksum": composite,
             "owner": upload["owner"], "parts": len(chosen), "upload_id": upload["upload_id"],
             "psizes": [p["size"] for p in chosen],
             "segs": [p["seg"] for p in chosen if p["size"]]}
    if entry.get("sse"):  # each part was encrypted with its own IV (s3_sse.py)
        entry["sse"] = {**entry["sse"], "parts": [n for n, _ in wanted]}
    await req.svc.objects.commit(bucket, key_bytes(req.key), entry, [])
    unused = [p["seg"] for n, p in parts.items() if n not in {w for w, _ in wanted}]
    await req.svc.gc.defer(unused, wait=0)
    return _completed(bucket, req.key, entry)


def _parts_listed(body: bytes) -> list[tuple[int, str]]:
    """(part number, etag) of a CompleteMultipartUpload body, in its order."""
    root = s3_xml.parse(body)
    if root.tag != "CompleteMultipartUpload":
        raise errors.MalformedXML()
    wanted: list[tuple[int, str]] = []
    for el in root.findall("Part"):
        number, etag = s3_xml.text(el, "PartNumber"), s3_xml.text(el, "ETag")
        if number is None or not number.strip().isdigit() or etag is None:
            raise errors.MalformedXML()
        wanted.append((int(number), etag.strip().strip('"')))
    return wanted


def _checksums_listed(body: bytes) -> dict[int, str]:
    """The part checksums a CompleteMultipartUpload body lists (checked against ours)."""
    claimed: dict[int, str] = {}
    for el in s3_xml.parse(body).findall("Part"):
        number = s3_xml.text(el, "PartNumber") or "0"
        for child in el:
            if child.tag.startswith("Checksum") and child.text:
                claimed[int(number)] = child.text.strip()
    return claimed


def _completed(bucket: Bucket, key: str, entry: dict[str, Any]) -> web.Response:
    composite = entry.get("cksum")
    resp = xml_response(document("CompleteMultipartUploadResult", [
        ("Location", f"/{bucket.short_name}/{key}"), ("Bucket", bucket.short_name),
        ("Key", key), ("ETag", f'"{entry["etag"]}"'),
        (f"Checksum{composite[0].upper()}", composite[1]) if composite else ("Checksum", None)]))
    if entry.get("vid", "null") != "null":
        resp.headers["x-amz-version-id"] = entry["vid"]
    resp.headers.update(s3_sse.response_headers(entry.get("sse")))
    return resp


def _composite_checksum(algorithm: str | None, parts: list[dict[str, Any]]
                        ) -> tuple[str, str] | None:
    """S3's checksum of a multipart object: the checksum of the parts' checksums, "-N"."""
    if algorithm is None or not all((p.get("cksum") or [None])[0] == algorithm
                                    for p in parts):
        return None
    digest = checksums.new(algorithm)
    for p in parts:
        digest.update(base64.b64decode(p["cksum"][1]))
    return algorithm, f"{checksums.b64(digest.digest())}-{len(parts)}"


async def abort(svc: Services, bucket: Bucket, upload: dict[str, Any]) -> None:
    """Abort an upload (its parts go to GC); NoSuchUpload if it is gone meanwhile."""
    version, parts = await _claim(svc, bucket, upload["upload_id"])
    await _take(svc, bucket, upload, version)
    await svc.gc.defer([p["seg"] for p in parts.values()], wait=0)


async def uploads_of(svc: Services, bucket: Bucket) -> AsyncIterator[dict[str, Any]]:
    """Every unfinished upload of the bucket, in key order."""
    after = b""
    while True:
        try:
            page, more = await svc.meta.omap_list(_index_oid(bucket), after=after,
                                                  max_items=1000)
        except NotFound:
            return
        for _, value in page:
            yield json.loads(value)
        if not more or not page:
            return
        after = page[-1][0]


async def abort_upload(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:AbortMultipartUpload", req.key)
    upload = await _upload(req, bucket)
    await abort(req.svc, bucket, upload)
    return web.Response(status=204)


def _int_param(req: S3Request, name: str, default: int, top: int) -> int:
    raw = req.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise errors.InvalidArgument(f"{name} must be a non-negative integer", ArgumentName=name,
                                     ArgumentValue=raw)
    return min(int(raw), top)


async def list_parts(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:ListMultipartUploadParts", req.key)
    upload = await _upload(req, bucket)
    max_parts = _int_param(req, "max-parts", 1000, 1000)
    marker = _int_param(req, "part-number-marker", 0, MAX_PARTS)
    try:
        page, more = await req.svc.meta.omap_list(_upload_oid(bucket, upload["upload_id"]),
                                                  after=f"{marker:05d}" if marker else b"",
                                                  max_items=max(max_parts, 1))
    except NotFound:
        raise errors.NoSuchUpload(UploadId=upload["upload_id"]) from None
    page = page[:max_parts]
    parts: list[Node] = []
    for key, value in page:
        p = json.loads(value)
        parts.append(("Part", [("PartNumber", int(key)), ("LastModified", iso8601(p["mtime"])),
                               ("ETag", f'"{p["etag"]}"'), ("Size", p["size"])]))
    truncated = bool(more) or (max_parts == 0 and bool(page))
    initiator = upload.get("initiator", upload["owner"])
    names = await req.display_names([upload["owner"], initiator])
    head: list[Node] = [
        ("Bucket", bucket.short_name), ("Key", req.key), ("UploadId", upload["upload_id"]),
        ("Initiator", [("ID", initiator), ("DisplayName", names.get(initiator, initiator))]),
        owner_node(upload["owner"], names), ("StorageClass", "STANDARD"),
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", int(page[-1][0]) if page else marker),
        ("MaxParts", max_parts), ("IsTruncated", truncated)]
    return xml_response(document("ListPartsResult", head + parts))


async def list_uploads(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:ListBucketMultipartUploads")
    max_uploads = _int_param(req, "max-uploads", 1000, 1000)
    prefix = req.query.get("prefix", "")
    key_marker = req.query.get("key-marker", "")
    id_marker = req.query.get("upload-id-marker", "")
    after = b""
    if key_marker:
        after = _upload_key(key_marker, id_marker) if id_marker else (
            key_marker.encode() + b"\0\xff")
    try:
        page, more = await req.svc.meta.omap_list(_index_oid(bucket), after=after,
                                                  prefix=prefix.encode(),
                                                  max_items=max(max_uploads, 1))
    except NotFound:
        page, more = [], False
    page = page[:max_uploads]
    found = [json.loads(value) for _, value in page]
    names = await req.display_names({u["owner"] for u in found}
                                    | {u.get("initiator", u["owner"]) for u in found})
    uploads: list[Node] = []
    for u in found:
        initiator = u.get("initiator", u["owner"])
        uploads.append(("Upload", [
            ("Key", u["key"]), ("UploadId", u["upload_id"]),
            ("Initiator", [("ID", initiator), ("DisplayName", names.get(initiator, initiator))]),
            owner_node(u["owner"], names), ("StorageClass", "STANDARD"),
            ("Initiated", iso8601(u["initiated"]))]))
    last = json.loads(page[-1][1]) if page else None
    head: list[Node] = [
        ("Bucket", bucket.short_name), ("KeyMarker", key_marker), ("UploadIdMarker", id_marker),
        ("NextKeyMarker", last["key"] if last else None),
        ("NextUploadIdMarker", last["upload_id"] if last else None),
        ("Prefix", prefix or None), ("MaxUploads", max_uploads),
        ("IsTruncated", bool(more))]
    return xml_response(document("ListMultipartUploadsResult", head + uploads))


async def abort_all(req: S3Request, bucket: Bucket) -> int:
    """Abort every upload of a deleted bucket (its parts go to GC); how many there were."""
    meta, count = req.svc.meta, 0
    while True:
        try:
            page, more = await meta.omap_list(_index_oid(bucket), max_items=100)
        except NotFound:
            return count
        for _, value in page:
            upload = json.loads(value)
            try:
                version, parts = await _claim(req.svc, bucket, upload["upload_id"])
                await _take(req.svc, bucket, upload, version)
            except errors.NoSuchUpload:
                await meta.omap_rm(_index_oid(bucket), [_upload_key(upload["key"],
                                                                    upload["upload_id"])])
                continue
            await req.svc.gc.defer([p["seg"] for p in parts.values()], wait=0)
            count += 1
        if not more or not page:
            with contextlib.suppress(NotFound):
                await meta.remove(_index_oid(bucket))
            return count
