"""S3 service and bucket operations: ListBuckets, Create/Head/DeleteBucket, GetBucketLocation,
ListObjects (v1 and v2), DeleteObjects, and the bucket's canned ACL."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway import errors, s3_xml
from gateway.context import S3Request
from gateway.s3_xml import Node, document, encode_key, iso8601

XML = "application/xml"


def xml_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=XML)


def owner_node(uid: str, names: Mapping[str, str] | None = None) -> Node:
    return ("Owner", [("ID", uid), ("DisplayName", (names or {}).get(uid, uid))])


async def list_buckets(req: S3Request) -> web.Response:
    """ListBuckets, paginated as S3 does (max-buckets, continuation-token, prefix)."""
    user = req.user
    if user is None:  # anonymous: nobody's buckets (as RGW answers; S3 says AccessDenied)
        return xml_response(document("ListAllMyBucketsResult", [
            ("Owner", [("ID", "anonymous"), ("DisplayName", "")]), ("Buckets", [])]))
    raw_max = req.query.get("max-buckets")
    limit = 10000
    if raw_max is not None:
        if not raw_max.isdigit() or not 1 <= int(raw_max) <= 10000:
            raise errors.InvalidArgument("max-buckets must be an integer from 1 to 10000",
                                         ArgumentName="max-buckets", ArgumentValue=raw_max)
        limit = int(raw_max)
    prefix = req.query.get("prefix", "")
    after = req.query.get("continuation-token", "")
    names = [(name.rpartition("/")[2], created)
             for name, created in await req.svc.buckets.list_for(user.user_id)]
    names = [(n, c) for n, c in sorted(names) if n.startswith(prefix) and n > after]
    page, more = names[:limit], len(names) > limit
    return xml_response(document("ListAllMyBucketsResult", [
        ("Owner", [("ID", user.user_id), ("DisplayName", user.display_name)]),
        ("Buckets", [("Bucket", [("Name", name), ("CreationDate", iso8601(created))])
                     for name, created in page]),
        ("ContinuationToken", page[-1][0] if more else None),
        ("Prefix", prefix or None)]))


async def create_bucket(req: S3Request) -> web.Response:
    user = req.need_user()
    body = await req.small_body(s3_xml.MAX_BODY)
    acl = await req.new_acl(None) or "private"
    ownership = req.headers.get("x-amz-object-ownership", "")
    if ownership and ownership not in ("BucketOwnerEnforced", "BucketOwnerPreferred",
                                       "ObjectWriter"):
        raise errors.InvalidArgument("Invalid x-amz-object-ownership",
                                     ArgumentName="x-amz-object-ownership")
    if ownership == "BucketOwnerEnforced" and acl != "private":
        raise errors.InvalidBucketAclWithObjectOwnership()
    if body.strip():
        root = s3_xml.parse(body)
        if root.tag != "CreateBucketConfiguration":
            raise errors.MalformedXML()
        location = s3_xml.text(root, "LocationConstraint", "") or ""
        if location and location != req.svc.region:
            raise errors.InvalidRequest(
                f"The location constraint {location!r} is not this gateway's region "
                f"{req.svc.region!r}")
    locked = req.headers.get("x-amz-bucket-object-lock-enabled", "").lower() == "true"
    try:
        # object lock needs versioning, for good (s3_lock.py)
        lock = {"versioning": "Enabled", "config": {"lock": {"enabled": True, "rule": None}}}
        bucket = await req.svc.buckets.create(req.bucket_name, user.user_id, acl,
                                              ownership=ownership, **(lock if locked else {}))
        if locked:
            await req.svc.buckets.mark_versioning(bucket, "Enabled")
    except errors.BucketAlreadyOwnedByYou:
        # us-east-1 answers the owner's re-creation with success (and changes nothing), as
        # long as it asks for nothing new; other regions refuse it
        if req.svc.region != "us-east-1":
            raise
        existing = await req.svc.buckets.get(req.bucket_name)
        if existing.acl != acl:
            raise errors.BucketAlreadyExists(BucketName=existing.short_name) from None
        bucket = existing
    return web.Response(status=200, headers={"Location": f"/{bucket.short_name}"})


async def head_bucket(req: S3Request) -> web.Response:
    await req.bucket("s3:ListBucket")
    return web.Response(status=200, headers={"x-amz-bucket-region": req.svc.region})


async def delete_bucket(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:DeleteBucket")
    await req.svc.buckets.delete(bucket)
    from gateway.s3_multipart import abort_all  # (multipart imports this module)

    await abort_all(req, bucket)  # unfinished uploads die with their bucket
    return web.Response(status=204)


async def get_location(req: S3Request) -> web.Response:
    await req.bucket("s3:GetBucketLocation")
    # us-east-1 is written as an empty constraint, as S3 does
    region = "" if req.svc.region == "us-east-1" else req.svc.region
    return xml_response(f'<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint '
                        f'xmlns="{s3_xml.NS}">{region}</LocationConstraint>'.encode())


def _max_keys(req: S3Request) -> int:
    raw = req.query.get("max-keys", "1000")
    try:
        value = int(raw)
    except ValueError:
        raise errors.InvalidArgument("max-keys must be an integer", ArgumentName="max-keys",
                                     ArgumentValue=raw) from None
    if value < 0:
        raise errors.InvalidArgument("max-keys must not be negative", ArgumentName="max-keys",
                                     ArgumentValue=raw)
    return min(value, 1000)


def _encoding(req: S3Request) -> bool:
    enc = req.query.get("encoding-type")
    if enc is None:
        return False
    if enc.lower() != "url":
        raise errors.InvalidArgument("Invalid Encoding Method specified in Request",
                                     ArgumentName="encoding-type", ArgumentValue=enc)
    return True


def _contents(entries: list[tuple[bytes, bytes]], url: bool, owner: str | None,
              names: Mapping[str, str]) -> list[Node]:
    out: list[Node] = []
    for raw_key, raw_entry in entries:
        entry: dict[str, Any] = json.loads(raw_entry)
        key = raw_key.decode("utf-8", "surrogateescape")
        node: list[Node] = [("Key", encode_key(key, url)),
                            ("LastModified", iso8601(entry["mtime"])),
                            ("ETag", f'"{entry["etag"]}"'), ("Size", entry["size"]),
                            ("StorageClass", "STANDARD")]
        if owner is not None:
            node.append(owner_node(entry.get("owner", owner), names))
        out.append(("Contents", node))
    return out


async def list_objects(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:ListBucket")
    v2 = req.query.get("list-type") == "2"
    url = _encoding(req)
    max_keys = _max_keys(req)
    prefix = req.query.get("prefix", "")
    delimiter = req.query.get("delimiter", "")
    if v2:
        token = req.query.get("continuation-token")
        if token is not None:
            try:
                marker = base64.urlsafe_b64decode(token.encode() + b"==")
            except (binascii.Error, ValueError):
                raise errors.InvalidArgument("The continuation token provided is incorrect",
                                             ArgumentName="continuation-token") from None
        else:
            marker = req.query.get("start-after", "").encode()
    else:
        marker = req.query.get("marker", "").encode()
    listing = await req.svc.buckets.list(bucket, prefix=prefix.encode(), marker=marker,
                                         delimiter=delimiter.encode(), max_keys=max_keys)
    show_owner = not v2 or req.query.get("fetch-owner") == "true"
    owners = {json.loads(v).get("owner", bucket.owner) for _, v in listing.entries}
    names = await req.display_names(owners) if show_owner else {}
    contents = _contents(listing.entries, url, bucket.owner if show_owner else None, names)
    prefixes: list[Node] = [("CommonPrefixes", [("Prefix", encode_key(
        p.decode("utf-8", "surrogateescape"), url))]) for p in listing.prefixes]
    enc = "url" if url else None
    # ListObjects (v1) answers the prefix as given even for encoding-type=url (clients
    # decode only v2's); one XML cannot carry is still encoded
    raw_prefix = not v2 and all(c in "\t\n" or c >= " " for c in prefix)
    head: list[Node] = [("Name", bucket.short_name),
                        ("Prefix", prefix if raw_prefix else encode_key(prefix, url))]
    if v2:
        next_token = (base64.urlsafe_b64encode(listing.next_marker).decode().rstrip("=")
                      if listing.truncated else None)
        head += [("MaxKeys", max_keys), ("KeyCount", len(contents) + len(prefixes)),
                 ("Delimiter", encode_key(delimiter, url) if delimiter else None),
                 ("IsTruncated", listing.truncated), ("EncodingType", enc),
                 ("ContinuationToken", req.query.get("continuation-token")),
                 ("NextContinuationToken", next_token),
                 ("StartAfter", encode_key(req.query["start-after"], url)
                  if "start-after" in req.query else None)]
    else:
        next_marker = listing.next_marker.decode("utf-8", "surrogateescape")
        head += [("Marker", encode_key(marker.decode("utf-8", "surrogateescape"), url)),
                 ("MaxKeys", max_keys),
                 ("Delimiter", encode_key(delimiter, url) if delimiter else None),
                 ("IsTruncated", listing.truncated), ("EncodingType", enc),
                 ("NextMarker", encode_key(next_marker, url)
                  if listing.truncated and delimiter else None)]
    return xml_response(document("ListBucketResult", head + contents + prefixes))


async def delete_objects(req: S3Request) -> web.Response:
    bucket = await req.svc.buckets.get(req.bucket_name)
    root = s3_xml.parse(await req.small_body(s3_xml.MAX_BODY))
    if root.tag != "Delete":
        raise errors.MalformedXML()
    quiet = (s3_xml.text(root, "Quiet", "false") or "").strip().lower() == "true"
    objects = root.findall("Object")
    if len(objects) > 1000 or not objects:
        raise errors.MalformedXML("A DeleteObjects request names 1 to 1,000 keys")
    from gateway.s3_objects import delete_one, delete_precondition

    results: list[Node] = []
    for obj in objects:
        key = s3_xml.text(obj, "Key")
        vid = s3_xml.text(obj, "VersionId")
        if key is None:
            raise errors.MalformedXML()
        try:
            req.check("s3:DeleteObjectVersion" if vid else "s3:DeleteObject", bucket, key)
            condition = delete_precondition(s3_xml.text(obj, "ETag"),
                                            s3_xml.text(obj, "LastModifiedTime"),
                                            s3_xml.text(obj, "Size"))
            done = await delete_one(req, bucket, key, vid or None, condition)
        except errors.S3Error as exc:
            results.append(("Error", [("Key", key), ("VersionId", vid), ("Code", exc.code),
                                      ("Message", exc.message)]))
            continue
        if not quiet:
            marker = done.get("x-amz-delete-marker") == "true"
            results.append(("Deleted", [
                ("Key", key), ("VersionId", vid),
                ("DeleteMarker", True if marker else None),
                ("DeleteMarkerVersionId", done.get("x-amz-version-id")
                 if marker and not vid else None)]))
    return xml_response(document("DeleteResult", results))
