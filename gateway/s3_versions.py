"""S3 bucket versioning: Get/PutBucketVersioning and ListObjectVersions (the per-object side,
versionId on GET/HEAD/DELETE, is in s3_objects.py; the index logic in versioning.py)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway import errors, s3_xml
from gateway.context import S3Request
from gateway.s3_buckets import _encoding, _max_keys, owner_node, xml_response
from gateway.s3_xml import Node, document, encode_key, iso8601
from gateway.version_listing import VersionListing
from gateway.versioning import BLOCK, NULL, split_version_key, vid_of


async def get_versioning(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:GetBucketVersioning")
    return xml_response(document("VersioningConfiguration",
                                 [("Status", bucket.versioning or None)]))


async def put_versioning(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutBucketVersioning")
    root = s3_xml.parse(await req.small_body(s3_xml.MAX_BODY))
    status = s3_xml.text(root, "Status")
    if root.tag != "VersioningConfiguration" or status not in ("Enabled", "Suspended"):
        raise errors.IllegalVersioningConfigurationException()
    if status != "Enabled" and bucket.config.get("lock", {}).get("enabled"):
        raise errors.InvalidBucketState("An Object Lock configuration is present on this "
                                        "bucket, so the versioning state cannot be changed.")
    await req.svc.buckets.mark_versioning(bucket, status)
    bucket.versioning = status
    await req.svc.buckets.save(bucket)
    return web.Response(status=200)


async def list_versions(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:ListBucketVersions")
    url = _encoding(req)
    max_keys = _max_keys(req)
    prefix = req.query.get("prefix", "")
    delimiter = req.query.get("delimiter", "")
    key_marker = req.query.get("key-marker", "")
    vid_marker = req.query.get("version-id-marker", "")
    listing = await VersionListing(req.svc.buckets).list(
        bucket, prefix=prefix.encode(), key_marker=key_marker.encode(), vid_marker=vid_marker,
        delimiter=delimiter.encode(), max_keys=max_keys)
    items: list[Node] = []
    names = await req.display_names(json.loads(v).get("owner", bucket.owner)
                                    for _, v in listing.entries)
    previous = key_marker.encode() if key_marker else None
    for raw, value in listing.entries:
        key_b, suffix = split_version_key(raw)
        entry: dict[str, Any] = json.loads(value)
        key = key_b.decode("utf-8", "surrogateescape")
        latest = key_b != previous
        previous = key_b
        node: list[Node] = [("Key", encode_key(key, url)),
                            ("VersionId", entry.get("vid") or vid_of(suffix) or NULL),
                            ("IsLatest", latest), ("LastModified", iso8601(entry["mtime"]))]
        owner = owner_node(entry.get("owner", bucket.owner), names)
        if entry.get("dm"):
            items.append(("DeleteMarker", [*node, owner]))
        else:
            items.append(("Version", [*node, ("ETag", f'"{entry["etag"]}"'),
                                      ("Size", entry["size"]), ("StorageClass", "STANDARD"),
                                      owner]))
    prefixes: list[Node] = [("CommonPrefixes", [("Prefix", encode_key(
        p[len(BLOCK):].decode("utf-8", "surrogateescape"), url))]) for p in listing.prefixes]
    head: list[Node] = [("Name", bucket.short_name), ("Prefix", encode_key(prefix, url)),
                        ("KeyMarker", encode_key(key_marker, url)),
                        ("VersionIdMarker", vid_marker), ("MaxKeys", max_keys),
                        ("Delimiter", encode_key(delimiter, url) if delimiter else None),
                        ("EncodingType", "url" if url else None),
                        ("IsTruncated", listing.truncated)]
    if listing.truncated:
        nxt = listing.next_marker
        if nxt.endswith(delimiter.encode()) and delimiter and nxt in listing.prefixes:
            head += [("NextKeyMarker", encode_key(nxt[len(BLOCK):].decode(), url))]
        else:
            key_b, suffix = split_version_key(nxt)
            head += [("NextKeyMarker", encode_key(key_b.decode("utf-8", "surrogateescape"),
                                                  url)),
                     ("NextVersionIdMarker", vid_of(suffix) or NULL)]
    return xml_response(document("ListVersionsResult", head + items + prefixes))
