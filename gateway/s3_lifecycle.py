"""S3's Get/Put/DeleteBucketLifecycle(Configuration) handlers; the rules and the worker that
applies them are in lifecycle.py."""

from __future__ import annotations

from aiohttp import web

from gateway import errors, lifecycle, s3_xml
from gateway.context import S3Request
from gateway.s3_buckets import xml_response

NoSuchLifecycleConfiguration = type("NoSuchLifecycleConfiguration", (errors.S3Error,), {
    "code": "NoSuchLifecycleConfiguration", "status": 404,
    "default": "The lifecycle configuration does not exist"})


async def get_lifecycle(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:GetLifecycleConfiguration")
    rules = bucket.config.get("lifecycle")
    if not rules:
        raise NoSuchLifecycleConfiguration(BucketName=bucket.short_name)
    return xml_response(lifecycle.document_of(rules))


async def put_lifecycle(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutLifecycleConfiguration")
    rules = lifecycle.parse(await req.small_body(s3_xml.MAX_BODY))
    # registered before the rules are saved: a bucket with rules is always walked
    await req.svc.lifecycle.register(bucket)
    bucket.config["lifecycle"] = rules
    await req.svc.buckets.save(bucket)
    return web.Response(status=200)


async def delete_lifecycle(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutLifecycleConfiguration")
    bucket.config.pop("lifecycle", None)
    await req.svc.buckets.save(bucket)
    await req.svc.lifecycle.unregister(bucket)
    return web.Response(status=204)
