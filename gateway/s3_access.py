"""S3's access configuration handlers: bucket and object ACLs, bucket policies and their
status, the public access block and object ownership controls. What they set is enforced in
access.py."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import acl, errors, policy, s3_xml
from gateway.buckets import key_bytes
from gateway.context import S3Request
from gateway.s3_buckets import xml_response
from gateway.s3_objects import check_version_id, readable_entry
from gateway.s3_xml import document

NoSuchBucketPolicy = type("NoSuchBucketPolicy", (errors.S3Error,), {
    "code": "NoSuchBucketPolicy", "status": 404, "default": "The bucket policy does not exist"})
NoSuchPublicAccessBlockConfiguration = type(
    "NoSuchPublicAccessBlockConfiguration", (errors.S3Error,), {
        "code": "NoSuchPublicAccessBlockConfiguration", "status": 404,
        "default": "The public access block configuration was not found"})
OwnershipControlsNotFoundError = type("OwnershipControlsNotFoundError", (errors.S3Error,), {
    "code": "OwnershipControlsNotFoundError", "status": 404,
    "default": "The bucket ownership controls were not found"})
BLOCK_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
               "RestrictPublicBuckets")
OWNERSHIPS = ("BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter")


# --- ACLs ----------------------------------------------------------------------------------
async def _acl_answer(req: S3Request, owner: str, grants: list[acl.Grant]) -> web.Response:
    names = await req.display_names({owner} | acl.users_in(grants))
    return xml_response(acl.document_of(owner, grants, names))


async def get_bucket_acl(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:GetBucketAcl")
    return await _acl_answer(req, bucket.owner, acl.grants_of(bucket.acl, bucket.owner))


async def put_bucket_acl(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutBucketAcl")
    body = await req.small_body(s3_xml.MAX_BODY)
    if bucket.ownership == "BucketOwnerEnforced":
        raise acl.AccessControlListNotSupported()
    wanted = await req.new_acl(None, body=body)
    if wanted is None:
        raise errors.MalformedXML("An ACL, as x-amz-acl, x-amz-grant-* or a body")
    if bucket.public_block.get("BlockPublicAcls") and acl.is_public(
            acl.grants_of(wanted, bucket.owner)):
        raise errors.AccessDenied("Public ACLs are blocked for this bucket")
    bucket.acl = wanted
    await req.svc.buckets.save(bucket)
    return web.Response(status=200)


async def get_object_acl(req: S3Request) -> web.Response:
    bucket, entry = await readable_entry(req, "s3:GetObjectAcl", "s3:GetObjectVersionAcl")
    owner = entry.get("owner", bucket.owner)
    resp = await _acl_answer(req, owner, acl.grants_of(entry.get("acl"), owner, bucket.owner))
    if "vid" in entry:
        resp.headers["x-amz-version-id"] = entry["vid"]
    return resp


async def put_object_acl(req: S3Request) -> web.Response:
    vid = req.query.get("versionId")
    bucket, entry = await readable_entry(
        req, "s3:PutObjectAcl", "s3:PutObjectVersionAcl")
    wanted = await req.new_acl(bucket, body=await req.small_body(s3_xml.MAX_BODY))
    if wanted is None:
        raise errors.MalformedXML("An ACL, as x-amz-acl, x-amz-grant-* or a body")
    entry = await req.svc.objects.versions.update(
        bucket, key_bytes(req.key), {"acl": wanted}, check_version_id(vid) if vid else None)
    headers = {"x-amz-version-id": entry["vid"]} if "vid" in entry else {}
    return web.Response(status=200, headers=headers)


# --- bucket policy -------------------------------------------------------------------------
async def get_bucket_policy(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:GetBucketPolicy")
    if not bucket.policy:
        raise NoSuchBucketPolicy(BucketName=bucket.short_name)
    return web.Response(body=bucket.policy.encode(), content_type="application/json")


async def put_bucket_policy(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutBucketPolicy")
    raw = await req.small_body(policy.MAX_POLICY + 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise policy.MalformedPolicy("The policy is not UTF-8") from None
    policy.parse(text)  # MalformedPolicy with the reason
    if bucket.public_block.get("BlockPublicPolicy") and policy.is_public(text):
        raise errors.AccessDenied("Public bucket policies are blocked for this bucket")
    bucket.policy = text
    await req.svc.buckets.save(bucket)
    return web.Response(status=204)


async def delete_bucket_policy(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:DeleteBucketPolicy")
    bucket.policy = ""
    await req.svc.buckets.save(bucket)
    return web.Response(status=204)


async def get_policy_status(req: S3Request) -> web.Response:
    """Whether the bucket is public: by its policy or its ACL (AWS counts only the policy;
    RGW, and the suites, count a public ACL too)."""
    bucket = await req.bucket("s3:GetBucketPolicyStatus")
    public = (bool(bucket.policy) and policy.is_public(bucket.policy)) or acl.is_public(
        acl.grants_of(bucket.acl, bucket.owner))
    return xml_response(document("PolicyStatus", [("IsPublic", public)]))


# --- public access block -------------------------------------------------------------------
async def get_public_access_block(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:GetBucketPublicAccessBlock")
    if not bucket.public_block:
        raise NoSuchPublicAccessBlockConfiguration(BucketName=bucket.short_name)
    return xml_response(document("PublicAccessBlockConfiguration", [
        (flag, bool(bucket.public_block.get(flag))) for flag in BLOCK_FLAGS]))


def _flag(root: Any, name: str) -> bool:
    value = (s3_xml.text(root, name, "false") or "").strip().lower()
    if value not in ("true", "false"):
        raise errors.MalformedXML(f"{name} must be true or false")
    return value == "true"


async def put_public_access_block(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutBucketPublicAccessBlock")
    root = s3_xml.parse(await req.small_body(s3_xml.MAX_BODY))
    if root.tag != "PublicAccessBlockConfiguration":
        raise errors.MalformedXML()
    bucket.public_block = {flag: _flag(root, flag) for flag in BLOCK_FLAGS}
    await req.svc.buckets.save(bucket)
    return web.Response(status=200)


async def delete_public_access_block(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutBucketPublicAccessBlock")
    bucket.public_block = {}
    await req.svc.buckets.save(bucket)
    return web.Response(status=204)


# --- object ownership ----------------------------------------------------------------------
async def get_ownership_controls(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:GetBucketOwnershipControls")
    if not bucket.ownership:
        raise OwnershipControlsNotFoundError(BucketName=bucket.short_name)
    return xml_response(document("OwnershipControls", [
        ("Rule", [("ObjectOwnership", bucket.ownership)])]))


def parse_ownership(body: bytes) -> str:
    root = s3_xml.parse(body)
    rules = root.findall("Rule")
    value = s3_xml.text(rules[0], "ObjectOwnership") if len(rules) == 1 else None
    if root.tag != "OwnershipControls" or value not in OWNERSHIPS:
        raise errors.MalformedXML("OwnershipControls has one Rule with an ObjectOwnership of "
                                  + ", ".join(OWNERSHIPS))
    return value


async def put_ownership_controls(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutBucketOwnershipControls")
    value = parse_ownership(await req.small_body(s3_xml.MAX_BODY))
    if value == "BucketOwnerEnforced" and bucket.acl not in ("private", None):
        raise errors.InvalidBucketAclWithObjectOwnership()
    bucket.ownership = value
    await req.svc.buckets.save(bucket)
    return web.Response(status=200)


async def delete_ownership_controls(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutBucketOwnershipControls")
    bucket.ownership = ""
    await req.svc.buckets.save(bucket)
    return web.Response(status=204)
