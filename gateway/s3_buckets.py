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
    user = req.user
    if user is None:  # anonymous: nobody's buckets (as RGW answers; S3 says AccessDenied)
        return xml_response(document("ListAllMyBucketsResult", [
            ("Owner", [("ID", "anonymous"), ("DisplayName", "")]), ("Buckets", [])]))
    buckets = await req.svc.buckets.list_for(user.user_id)
    return xml_response(document("ListAllMyBucketsResult", [
        ("Owner", [("ID", user.user_id), ("DisplayName", user.display_name)]),
        ("Buckets", [("Bucket", [("Name", name), ("CreationDate", iso8601(created))])
                     for name, created in buckets])]))


async def create_bucket(req: S3Request) -> web.Response:
    user = req.need_user()
    acl = req.canned_acl()
    body = await req.small_body(s3_xml.MAX_BODY)
    if body.strip():
        root = s3_xml.parse(body)
        if root.tag != "CreateBucketConfiguration":
            raise errors.MalformedXML()
        location = s3_xml.text(root, "LocationConstraint", "") or ""
        if location and location != req.svc.region:
            raise errors.InvalidRequest(
                f"The location constraint {location!r} is not this gateway's region "
                f"{req.svc.region!r}")
    await req.svc.buckets.create(req.bucket_name, user.user_id, acl)
    return web.Response(status=200, headers={"Location": f"/{req.bucket_name}"})


async def head_bucket(req: S3Request) -> web.Response:
    await req.bucket("read")
    return web.Response(status=200, headers={"x-amz-bucket-region": req.svc.region})


async def delete_bucket(req: S3Request) -> web.Response:
    bucket = await req.bucket("owner")
    await req.svc.buckets.delete(bucket)
    from gateway.s3_multipart import abort_all  # (multipart imports this module)

    await abort_all(req, bucket)  # unfinished uploads die with their bucket
    return web.Response(status=204)


async def get_location(req: S3Request) -> web.Response:
    await req.bucket("owner")
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
    bucket = await req.bucket("read")
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
    head: list[Node] = [("Name", bucket.name), ("Prefix", encode_key(prefix, url))]
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
    bucket = await req.bucket("write")
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


def acl_document(owner: str, acl: str, name: str | None = None) -> bytes:
    grants: list[Node] = [("Grant", [
        ("Grantee", [("ID", owner), ("DisplayName", name or owner)]),
        ("Permission", "FULL_CONTROL")])]
    if acl in ("public-read", "public-read-write"):
        grants.append(("Grant", [("Grantee", [
            ("URI", "http://acs.amazonaws.com/groups/global/AllUsers")]), ("Permission", "READ")]))
    if acl == "public-read-write":
        grants.append(("Grant", [("Grantee", [
            ("URI", "http://acs.amazonaws.com/groups/global/AllUsers")]),
            ("Permission", "WRITE")]))
    body = document("AccessControlPolicy", [owner_node(owner, {owner: name or owner}),
                                            ("AccessControlList", grants)])
    # grantees carry their xsi:type, which clients read to tell users from groups
    return body.replace(b"<Grantee>", b'<Grantee xmlns:xsi="http://www.w3.org/2001/'
                        b'XMLSchema-instance" xsi:type="CanonicalUser">', 1).replace(
        b"<Grantee><URI>", b'<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        b'xsi:type="Group"><URI>')


async def get_bucket_acl(req: S3Request) -> web.Response:
    bucket = await req.bucket("owner")
    name = await req.svc.user_cache.display_name(bucket.owner)
    return xml_response(acl_document(bucket.owner, bucket.acl, name))


async def put_bucket_acl(req: S3Request) -> web.Response:
    bucket = await req.bucket("owner")
    bucket.acl = await requested_acl(req)
    await req.svc.buckets.save(bucket)
    return web.Response(status=200)


async def requested_acl(req: S3Request) -> str:
    """The canned ACL of x-amz-acl, or the one an AccessControlPolicy body amounts to (only
    "everyone may read/write" grants are understood: Loligo has canned ACLs only)."""
    body = await req.small_body(s3_xml.MAX_BODY)
    if "x-amz-acl" in req.headers or not body.strip():
        return req.canned_acl()
    root = s3_xml.parse(body)
    perms = set()
    for grant in root.iter("Grant"):
        uri = grant.find("Grantee/URI")
        if uri is not None and (uri.text or "").endswith("/AllUsers"):
            perms.add(s3_xml.text(grant, "Permission", ""))
    if "WRITE" in perms or "FULL_CONTROL" in perms:
        return "public-read-write"
    return "public-read" if "READ" in perms else "private"
