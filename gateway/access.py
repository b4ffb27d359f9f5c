"""Who may do what: every S3 permission check is decided here, in one place, from the bucket
policy (policy.py), the public access block, object ownership and the ACLs (acl.py).

The order is AWS's:
1. a bucket policy statement that denies the request denies it, whoever asks (the owner too);
2. the bucket's owner may do anything to the bucket and write or delete anything in it; an
   object's owner may read it and its ACL;
3. a policy statement that allows it allows it (unless RestrictPublicBuckets turns a public
   policy into one that only serves the owner);
4. otherwise the ACL of the bucket (for listings and writes) or of the object (for reads and
   its ACL) decides; public grants count for nothing under IgnorePublicAcls, and ACLs none at
   all when the bucket's owner owns every object (BucketOwnerEnforced).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway import acl, errors, policy
from gateway.tags import tags_from_header

# action -> (whose ACL, the permission it needs); actions not listed are the owner's (or a
# policy's) alone
ACL_RULES: dict[str, tuple[str, str]] = {
    "s3:ListBucket": ("bucket", "READ"),
    "s3:ListBucketVersions": ("bucket", "READ"),
    "s3:ListBucketMultipartUploads": ("bucket", "READ"),
    "s3:PutObject": ("bucket", "WRITE"),
    "s3:DeleteObject": ("bucket", "WRITE"),
    "s3:DeleteObjectVersion": ("bucket", "WRITE"),
    "s3:AbortMultipartUpload": ("bucket", "WRITE"),
    "s3:ListMultipartUploadParts": ("bucket", "WRITE"),
    "s3:GetBucketAcl": ("bucket", "READ_ACP"),
    "s3:PutBucketAcl": ("bucket", "WRITE_ACP"),
    "s3:GetObject": ("object", "READ"),
    "s3:GetObjectVersion": ("object", "READ"),
    "s3:GetObjectAttributes": ("object", "READ"),
    "s3:GetObjectVersionAttributes": ("object", "READ"),
    "s3:GetObjectTagging": ("object", "READ"),
    "s3:GetObjectVersionTagging": ("object", "READ"),
    "s3:GetObjectAcl": ("object", "READ_ACP"),
    "s3:GetObjectVersionAcl": ("object", "READ_ACP"),
    "s3:PutObjectAcl": ("object", "WRITE_ACP"),
    "s3:PutObjectVersionAcl": ("object", "WRITE_ACP"),
}
# what an object's owner may do to it whatever its ACL says
OBJECT_OWNER = frozenset({
    "s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAcl", "s3:GetObjectVersionAcl",
    "s3:PutObjectAcl", "s3:PutObjectVersionAcl", "s3:GetObjectTagging",
    "s3:GetObjectVersionTagging", "s3:PutObjectTagging", "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging", "s3:GetObjectAttributes",
    "s3:GetObjectVersionAttributes", "s3:GetObjectRetention", "s3:GetObjectLegalHold"})
# object actions the bucket's owner may do to objects others own (it owns the bucket)
BUCKET_OWNER_ON_OBJECTS = frozenset({
    "s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts", "s3:PutObjectRetention", "s3:PutObjectLegalHold",
    "s3:GetObjectRetention", "s3:GetObjectLegalHold", "s3:BypassGovernanceRetention",
    "s3:PutObjectTagging", "s3:PutObjectVersionTagging", "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging"})


@dataclass
class Subject:
    """The request as the rules see it."""

    principal: policy.Principal
    keys: Mapping[str, list[str]] = field(default_factory=dict)  # condition keys, lower-case

    @property
    def uid(self) -> str | None:
        return self.principal.uid


def arn(bucket_name: str, tenant: str, key: str | None = None) -> str:
    base = f"arn:aws:s3::{tenant}:{bucket_name}"
    return base if key is None else f"{base}/{key}"


def _tenant(uid: str) -> str:
    return uid.partition("$")[0] if "$" in uid else ""


def _object_owner(entry: Mapping[str, Any] | None, bucket: Any) -> str:
    return (entry or {}).get("owner") or bucket.owner


def decide(subject: Subject, action: str, bucket: Any, key: str | None = None,
           entry: Mapping[str, Any] | None = None,
           extra: Mapping[str, list[str]] | None = None) -> bool:
    """Whether `subject` may do `action` on the bucket (key None) or on one of its objects
    (`entry`: the object when it exists)."""
    uid = subject.uid
    verdict = None
    if bucket.policy:
        keys = dict(subject.keys)
        keys.update(extra or {})
        if entry is not None and entry.get("tags"):
            for k, v in entry["tags"].items():
                keys[f"s3:existingobjecttag/{k.lower()}"] = [v]
        ctx = policy.Context(subject.principal, action,
                             arn(bucket.short_name, bucket.tenant, key), keys)
        verdict = policy.evaluate(bucket.policy, ctx)
        if verdict == "Deny":
            return False
    is_bucket_owner = uid is not None and uid == bucket.owner
    rule = ACL_RULES.get(action)
    on_object = key is not None and (rule is None or rule[0] == "object")
    if is_bucket_owner:
        if not on_object or action in BUCKET_OWNER_ON_OBJECTS or entry is None:
            return True
        if bucket.ownership == "BucketOwnerEnforced":
            return True
    if (on_object and uid is not None and entry is not None and action in OBJECT_OWNER
            and _object_owner(entry, bucket) == uid):
        return True
    block = bucket.public_block or {}
    if verdict == "Allow":
        restricted = block.get("RestrictPublicBuckets") and policy.is_public(bucket.policy)
        if not restricted or (uid is not None and _tenant(uid) == _tenant(bucket.owner)
                              and is_bucket_owner):
            return True
    if rule is None or bucket.ownership == "BucketOwnerEnforced":
        return False
    target, permission = rule
    if target == "object":
        if entry is None:
            return False
        grants = acl.grants_of(entry.get("acl"), _object_owner(entry, bucket), bucket.owner)
    else:
        grants = acl.grants_of(bucket.acl, bucket.owner)
    return acl.allows(grants, uid, permission, bool(block.get("IgnorePublicAcls")))


def request_keys(*, secure: bool, source_ip: str, user_agent: str, referer: str,
                 uid: str | None, signature: str, auth_type: str,
                 headers: Mapping[str, str], query: Mapping[str, str]) -> dict[str, list[str]]:
    """The global and S3 condition keys of a request (names lower-case)."""
    now = time.time()
    keys: dict[str, list[str]] = {
        "aws:securetransport": ["true" if secure else "false"],
        "aws:sourceip": [source_ip],
        "aws:currenttime": [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))],
        "aws:epochtime": [str(int(now))],
        "aws:principaltype": ["Anonymous" if uid is None else "Account"],
        "s3:signatureversion": [signature] if signature else [],
        "s3:authtype": [auth_type] if auth_type else [],
    }
    if user_agent:
        keys["aws:useragent"] = [user_agent]
    if referer:
        keys["aws:referer"] = [referer]
    if uid is not None:
        keys["aws:username"] = [uid.partition("$")[2] or uid]
        keys["aws:userid"] = [uid]
    for name in ("x-amz-acl", "x-amz-copy-source", "x-amz-metadata-directive",
                 "x-amz-server-side-encryption", "x-amz-storage-class",
                 "x-amz-server-side-encryption-aws-kms-key-id", "x-amz-content-sha256",
                 "x-amz-server-side-encryption-customer-algorithm",
                 "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date",
                 "x-amz-object-lock-legal-hold", *acl.GRANT_HEADERS):
        if name in headers:
            keys["s3:" + name.replace("x-amz-object-lock-", "object-lock-")] = [headers[name]]
    for name in ("prefix", "delimiter", "max-keys", "versionId"):
        if name in query:
            keys["s3:" + name.lower()] = [query[name]]
    if "x-amz-tagging" in headers:
        try:
            tags = tags_from_header(headers["x-amz-tagging"])
        except errors.S3Error:  # a bad header fails later with its own error
            tags = {}
        for k, v in tags.items():
            keys[f"s3:requestobjecttag/{k.lower()}"] = [v]
        keys["s3:requestobjecttagkeys"] = list(tags)
    return keys
