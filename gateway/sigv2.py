"""AWS Signature Version 2 (header `AWS key:sig` and presigned `AWSAccessKeyId/Signature/
Expires`): older clients, and boto3's default presigned URLs for S3, still use it.

    StringToSign = Method \\n Content-MD5 \\n Content-Type \\n Date-or-Expires \\n
                   CanonicalizedAmzHeaders CanonicalizedResource

Pure functions; the caller supplies the secret and the clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from email.utils import parsedate_to_datetime

from gateway import errors

# the query parameters that are part of the signed resource
SUBRESOURCES = frozenset({
    "acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "object-lock",
    "partNumber",
    "policy", "requestPayment", "restore", "tagging", "torrent", "uploadId", "uploads",
    "versionId", "versioning", "versions", "website", "response-cache-control",
    "response-content-disposition", "response-content-encoding", "response-content-language",
    "response-content-type", "response-expires"})


def canonical_resources(bucket: str, raw_path: str, query: list[tuple[str, str]],
                        virtual_host: bool) -> list[str]:
    """The raw (still encoded) path, prefixed by the bucket for a virtual-host request, with
    the signed sub-resources in name order. A request to a bucket itself may be signed as
    `/bucket` or `/bucket/` (botocore and boto2 sign the latter while sending the former, and
    S3 takes both), so both forms are returned."""
    path = f"/{bucket}{raw_path}" if virtual_host else raw_path
    paths = [path]
    if bucket and path.rstrip("/") == f"/{bucket}":
        paths = [f"/{bucket}/", f"/{bucket}"]
    subs = sorted((k, v) for k, v in query if k in SUBRESOURCES)
    if subs:
        suffix = "?" + "&".join(f"{k}={v}" if v else k for k, v in subs)
        paths = [p + suffix for p in paths]
    return paths


def string_to_sign(method: str, headers: dict[str, str], date_or_expires: str,
                   resource: str) -> str:
    amz = sorted((k, v.strip()) for k, v in headers.items() if k.startswith("x-amz-"))
    lines = "".join(f"{k}:{v}\n" for k, v in amz)
    return "\n".join([method, headers.get("content-md5", ""), headers.get("content-type", ""),
                      date_or_expires]) + "\n" + lines + resource


def sign(secret: str, text: str) -> str:
    mac = hmac.new(secret.encode(), text.encode("utf-8", "surrogateescape"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def verify(secret: str, texts: list[str], claimed: str) -> None:
    """Accept the signature if it signs one of the equivalent `texts`."""
    if not any(hmac.compare_digest(sign(secret, text), claimed) for text in texts):
        raise errors.SignatureDoesNotMatch()


def parse_header(authorization: str) -> tuple[str, str]:
    """(access key, signature) of `AWS key:signature`."""
    _, _, rest = authorization.partition(" ")
    key, colon, sig = rest.strip().rpartition(":")
    if not colon or not key or not sig:
        raise errors.InvalidArgument("Authorization header is invalid -- one and only one ' ' "
                                     "(space) required")
    return key, sig


def header_date(headers: dict[str, str]) -> tuple[str, float]:
    """(the Date slot of the string to sign, the request time as a Unix time)."""
    value = headers.get("x-amz-date") or headers.get("date")
    if not value:
        raise errors.AccessDenied("AWS authentication requires a valid Date or x-amz-date "
                                  "header")
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        raise errors.AccessDenied("AWS authentication requires a valid Date or x-amz-date "
                                  "header") from None
    return ("" if "x-amz-date" in headers else headers["date"]), when
