"""S3 POST Object: browser-form uploads (`multipart/form-data`), authorised by a signed policy
document (SigV2 or SigV4, as boto3's generate_presigned_post writes them) or anonymous into a
public-read-write bucket.

The policy is a base64 JSON document with an expiration and conditions; every form field
(except the signature fields, `file` and `x-ignore-*`) must be allowed by a condition, and the
file streams into the store like any PUT, its size held to `content-length-range`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from gateway import errors, s3_sse, sigv2, sigv4
from gateway.body import expect_continue
from gateway.buckets import key_bytes
from gateway.context import S3Request, qualify
from gateway.s3_auth import Identity
from gateway.s3_objects import describe_upload
from gateway.s3_xml import document
from gateway.tags import tags_from_xml
from gateway.users import User

MAX_FIELD = 64 * 1024  # a form field other than the file
MAX_FIELDS = 100
PIECE = 1 << 20
UNCHECKED = frozenset({"policy", "signature", "awsaccesskeyid", "x-amz-signature", "file"})
# (tagging must be allowed by a condition like any other field)
InvalidPolicyDocument = type("InvalidPolicyDocument", (errors.S3Error,), {
    "code": "InvalidPolicyDocument", "status": 400, "default": "Invalid Policy"})


def _denied(why: str) -> errors.S3Error:
    return errors.AccessDenied(f"Invalid according to Policy: {why}")


async def _fields(req: S3Request) -> tuple[dict[str, str], BodyPartReader]:
    """The form fields before the file (names lower-cased), and the file's part."""
    ctype = req.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise errors.InvalidRequest("POST requires a multipart/form-data body")
    try:
        await expect_continue(req.http)
        reader = await req.http.multipart()
        fields: dict[str, str] = {}
        while True:
            part = await reader.next()
            if part is None:
                raise errors.InvalidArgument("POST requires exactly one file upload per request",
                                             ArgumentName="file", ArgumentValue="0")
            if not isinstance(part, BodyPartReader) or len(fields) >= MAX_FIELDS:
                raise errors.InvalidArgument("Malformed POST form")
            name = (part.name or "").lower()
            if name == "file":
                return fields, part
            value = bytearray()
            while chunk := await part.read_chunk(8192):
                value += chunk
                if len(value) > MAX_FIELD:
                    raise errors.InvalidArgument(f"The form field {name!r} is too long")
            fields[name] = value.decode("utf-8", "replace")
    except (ValueError, AssertionError) as exc:  # aiohttp's complaints about the form
        raise errors.InvalidArgument(f"Malformed POST form: {exc}") from None


async def _signer(req: S3Request, fields: dict[str, str]) -> User | None:
    """The user whose key signed the policy (None: no policy, an anonymous upload)."""
    policy = fields.get("policy")
    if policy is None:
        return None
    cache = req.svc.user_cache
    if "x-amz-signature" in fields or "x-amz-algorithm" in fields:
        if fields.get("x-amz-algorithm") != sigv4.ALGORITHM:
            raise errors.InvalidArgument("POST form x-amz-algorithm must be AWS4-HMAC-SHA256")
        parts = fields.get("x-amz-credential", "").split("/")
        if len(parts) != 5 or "x-amz-signature" not in fields:
            raise errors.InvalidArgument("POST form x-amz-credential or x-amz-signature is "
                                         "missing or malformed")
        user = await cache.by_access_key(parts[0])
        secret = user.secret_for(parts[0]) if user is not None else None
        if user is None or secret is None:
            raise errors.InvalidAccessKeyId(AWSAccessKeyId=parts[0])
        key = sigv4.signing_key(secret, parts[1], parts[2], parts[3])
        expected = sigv4.signature(key, policy)
        if not hmac.compare_digest(expected, fields["x-amz-signature"].lower()):
            raise errors.SignatureDoesNotMatch()
    else:
        access = fields.get("awsaccesskeyid")
        if access is None or "signature" not in fields:
            raise errors.InvalidArgument("POST with a policy needs AWSAccessKeyId and "
                                         "signature")
        user = await cache.by_access_key(access)
        secret = user.secret_for(access) if user is not None else None
        if user is None or secret is None:
            raise errors.InvalidAccessKeyId(AWSAccessKeyId=access)
        sigv2.verify(secret, [policy], fields["signature"])
    if user.suspended:
        raise errors.AccessDenied("The user is suspended")
    return user


def check_policy(policy_b64: str, fields: dict[str, str], bucket: str,
                 now: datetime) -> tuple[int, int]:
    """Check the form against the policy; the allowed (min, max) file size."""
    try:
        policy = json.loads(base64.b64decode(policy_b64, validate=True))
    except (binascii.Error, ValueError):
        raise InvalidPolicyDocument("Invalid Policy: Invalid JSON.") from None
    if not isinstance(policy, dict) or "expiration" not in policy:
        raise InvalidPolicyDocument("Invalid Policy: Policy missing expiration.")
    if not isinstance(policy.get("conditions"), list):
        raise InvalidPolicyDocument("Invalid Policy: Policy missing conditions.")
    text = str(policy["expiration"])
    # ISO 8601 as S3 takes it: 2007-12-01T12:00:00.000Z
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", text):
        raise InvalidPolicyDocument("Invalid Policy: Invalid 'expiration' value.")
    try:
        expires = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidPolicyDocument("Invalid Policy: Invalid 'expiration' value.") from None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    if expires < now:
        raise _denied("Policy expired.")
    values = dict(fields, bucket=bucket)
    allowed: set[str] = set()
    size = (0, 5 * (1 << 30))
    for cond in policy["conditions"]:
        if isinstance(cond, dict):
            if len(cond) != 1:
                raise InvalidPolicyDocument("Invalid Policy: Invalid Simple-Condition: "
                                            "Simple-Conditions must have exactly one property "
                                            "specified.")
            (name, want), = cond.items()
            _match(values, allowed, "eq", f"${name}", want)
        elif isinstance(cond, list) and cond:
            op = str(cond[0]).lower()
            if op == "content-length-range":
                size = _size_range(cond)
            elif op in ("eq", "starts-with") and len(cond) == 3:
                _match(values, allowed, op, cond[1], cond[2])
            else:
                raise InvalidPolicyDocument(f"Invalid Policy: Invalid condition {cond!r}.")
        else:
            raise InvalidPolicyDocument(f"Invalid Policy: Invalid condition {cond!r}.")
    extra = [n for n in fields if n not in UNCHECKED and n not in allowed
             and not n.startswith("x-ignore-")]
    if extra:
        raise _denied(f"Extra input fields: {', '.join(sorted(extra))}")
    return size


def _size_range(cond: list[Any]) -> tuple[int, int]:
    if len(cond) != 3:
        raise InvalidPolicyDocument("Invalid Policy: content-length-range needs a minimum and "
                                    "a maximum.")
    try:
        low, high = int(cond[1]), int(cond[2])
    except (TypeError, ValueError):
        raise InvalidPolicyDocument("Invalid Policy: content-length-range bounds must be "
                                    "numbers.") from None
    if low < 0 or high < low:
        raise InvalidPolicyDocument("Invalid Policy: Invalid content-length-range.")
    return low, high


def _match(values: dict[str, str], allowed: set[str], op: str, ref: Any, want: Any) -> None:
    if not isinstance(ref, str) or not ref.startswith("$") or not isinstance(want, str):
        raise InvalidPolicyDocument(f"Invalid Policy: Invalid condition on {ref!r}.")
    name = ref[1:].lower()
    allowed.add(name)
    have = values.get(name)
    if have is None:
        raise _denied(f"Policy Condition failed: [\"{op}\", \"{ref}\", \"{want}\"]")
    if op == "eq":
        ok = have == want
    elif name == "content-type":  # each of a comma-separated list must match
        ok = all(v.strip().startswith(want) for v in have.split(","))
    else:
        ok = have.startswith(want)
    if not ok:
        raise _denied(f"Policy Condition failed: [\"{op}\", \"{ref}\", \"{want}\"]")


async def _file_pieces(part: BodyPartReader, low: int, high: int, md5: Any
                       ) -> AsyncIterator[bytes]:
    size = 0
    while chunk := await part.read_chunk(PIECE):
        size += len(chunk)
        if size > high:
            raise errors.EntityTooLarge("Your proposed upload exceeds the maximum allowed size",
                                        MaxSizeAllowed=str(high))
        md5.update(chunk)
        yield chunk
    if size < low:
        raise errors.EntityTooSmall("Your proposed upload is smaller than the minimum allowed "
                                    "size", MinSizeAllowed=str(low))


async def post_object(req: S3Request) -> web.StreamResponse:
    fields, part = await _fields(req)
    if "key" not in fields or not fields["key"]:
        raise errors.InvalidArgument("Bucket POST must contain a field named 'key'.",
                                     ArgumentName="key")
    # ${filename} in the key is the file's name, before the policy judges the key
    fields["key"] = fields["key"].replace("${filename}", part.filename or "")
    user = await _signer(req, fields)
    # the form's signer is the requester (the request itself carries no signature)
    req.identity = Identity(user, signature=("AWS4-HMAC-SHA256" if "x-amz-signature" in fields
                                             else "AWS") if user else "", auth_type="POST")
    req.bucket_name = qualify(req.bucket_name, user.user_id if user else None)
    bucket = await req.svc.buckets.get(req.bucket_name)
    if user is not None:
        low, high = check_policy(fields["policy"], fields, bucket.short_name,
                                 datetime.now(UTC))
    else:
        low, high = 0, 5 * (1 << 30)
    key = fields["key"]
    req.check("s3:PutObject", bucket, key)
    headers = {k: v for k, v in fields.items() if k.startswith(("x-amz-meta-",
                                                                "x-amz-server-side-encryption",
                                                                "x-amz-object-lock-"))
               or k in ("content-type", "cache-control", "content-disposition",
                        "content-encoding", "expires", "x-amz-acl")}
    if "acl" in fields:
        headers["x-amz-acl"] = fields["acl"]
    entry_fields = await describe_upload(req, bucket, headers)
    if "tagging" in fields:
        entry_fields["tags"] = tags_from_xml(fields["tagging"].encode())
    if part.headers.get("Content-Type") and "content-type" not in fields:
        entry_fields["ctype"] = part.headers["Content-Type"]
    md5 = hashlib.md5()

    def describe() -> dict[str, Any]:
        return {**entry_fields, "etag": md5.hexdigest(), "cksum": None}

    pieces = _file_pieces(part, low, high, md5)
    sse = entry_fields.get("sse")
    if sse is not None:  # the form's SSE fields, as a PUT's headers
        pieces = s3_sse.encrypt(pieces, await s3_sse.data_key(req, sse, headers), sse["iv"])
    entry = await req.svc.objects.put(bucket, key_bytes(key), pieces, describe)
    etag = f'"{entry["etag"]}"'
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect:
        sep = "&" if "?" in redirect else "?"
        location = (f"{redirect}{sep}bucket={quote(bucket.short_name)}&key={quote(key)}"
                    f"&etag={quote(etag)}")
        return web.Response(status=303, headers={"Location": location, "ETag": etag})
    status = fields.get("success_action_status", "204")
    if status == "201":
        body = document("PostResponse", [
            ("Location", f"/{bucket.short_name}/{quote(key)}"), ("Bucket", bucket.short_name),
            ("Key", key), ("ETag", etag)], namespace=False)
        return web.Response(status=201, body=body, content_type="application/xml",
                            headers={"ETag": etag})
    return web.Response(status=200 if status == "200" else 204, headers={"ETag": etag})
