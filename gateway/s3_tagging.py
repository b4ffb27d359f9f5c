"""S3 tagging handlers: Get/Put/DeleteObjectTagging (also of a version) and
Get/Put/DeleteBucketTagging. Object tags live in the object's index entry, bucket tags in the
bucket entry."""

from __future__ import annotations

from aiohttp import web

from gateway import errors, s3_xml
from gateway.buckets import key_bytes
from gateway.context import S3Request
from gateway.s3_buckets import xml_response
from gateway.s3_objects import check_version_id, readable_entry
from gateway.tags import MAX_BUCKET_TAGS, tagging_document, tags_from_xml


async def get_object_tagging(req: S3Request) -> web.Response:
    _, entry = await readable_entry(req, "s3:GetObjectTagging", "s3:GetObjectVersionTagging")
    resp = xml_response(tagging_document(entry.get("tags", {})))
    if "vid" in entry:
        resp.headers["x-amz-version-id"] = entry["vid"]
    return resp


async def _set_object_tags(req: S3Request, tags: dict[str, str], status: int,
                           action: str) -> web.Response:
    vid = req.query.get("versionId")
    versioned = action.replace("Object", "ObjectVersion", 1)
    bucket, _ = await readable_entry(req, action, versioned)
    entry = await req.svc.objects.versions.update(bucket, key_bytes(req.key), {"tags": tags},
                                                  check_version_id(vid) if vid else None)
    headers = {"x-amz-version-id": entry["vid"]} if "vid" in entry else {}
    return web.Response(status=status, headers=headers)


async def put_object_tagging(req: S3Request) -> web.Response:
    return await _set_object_tags(req, tags_from_xml(await req.small_body(s3_xml.MAX_BODY)),
                                  200, "s3:PutObjectTagging")


async def delete_object_tagging(req: S3Request) -> web.Response:
    return await _set_object_tags(req, {}, 204, "s3:DeleteObjectTagging")


async def get_bucket_tagging(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:GetBucketTagging")
    if not bucket.tags:
        raise errors.NoSuchTagSet(BucketName=bucket.short_name)
    return xml_response(tagging_document(bucket.tags))


async def put_bucket_tagging(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutBucketTagging")
    bucket.tags = tags_from_xml(await req.small_body(s3_xml.MAX_BODY), MAX_BUCKET_TAGS)
    await req.svc.buckets.save(bucket)
    return web.Response(status=204)


async def delete_bucket_tagging(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutBucketTagging")
    bucket.tags = {}
    await req.svc.buckets.save(bucket)
    return web.Response(status=204)
