"""S3 Object Lock: a bucket's lock configuration (Get/PutObjectLockConfiguration, default
retention), per-version retention (GOVERNANCE or COMPLIANCE until a date) and legal hold
(Get/PutObjectRetention, Get/PutObjectLegalHold, the x-amz-object-lock-* headers of a PUT, a
copy, a POST form or a multipart upload), and the rule every delete path obeys: a locked
version cannot be removed before its date or while on hold - only a GOVERNANCE retention
gives way, to a requester who asks with x-amz-bypass-governance-retention and may
s3:BypassGovernanceRetention.

A lock-enabled bucket is versioned for good (versioning cannot be suspended), so an
overwrite or a plain DELETE only adds a version or a delete marker: nothing locked goes.
A version's lock lives in its index entry as {"mode", "until" (epoch seconds), "hold"}
(lifecycle.py reads it too).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway import errors, s3_xml
from gateway.buckets import Bucket, key_bytes
from gateway.context import S3Request
from gateway.s3_buckets import xml_response
from gateway.s3_xml import Node, document, iso8601
from gateway.versioning import Precondition

MODES = ("GOVERNANCE", "COMPLIANCE")
DAY = 86400.0
YEAR = 365 * DAY


def enabled(bucket: Bucket) -> bool:
    return bool(bucket.config.get("lock", {}).get("enabled"))


def _parse_date(text: str | None) -> float:
    try:
        return datetime.fromisoformat((text or "").strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise errors.InvalidArgument("The retain until date is not an ISO 8601 date",
                                     ArgumentName="RetainUntilDate") from None


# --- what a new version gets --------------------------------------------------------------
def lock_of_upload(bucket: Bucket, headers: dict[str, str]) -> dict[str, Any] | None:
    """The lock a new version gets from the x-amz-object-lock-* headers of its PUT (or,
    without them, the bucket's default retention); None when it gets none."""
    mode = headers.get("x-amz-object-lock-mode")
    until = headers.get("x-amz-object-lock-retain-until-date")
    hold = headers.get("x-amz-object-lock-legal-hold")
    if (mode or until or hold) and not enabled(bucket):
        raise errors.InvalidRequest("Bucket is missing Object Lock Configuration")
    if (mode is None) != (until is None):
        raise errors.InvalidArgument("x-amz-object-lock-retain-until-date and "
                                     "x-amz-object-lock-mode must both be supplied")
    lock: dict[str, Any] = {}
    if mode is not None and until is not None:
        if mode not in MODES:
            raise errors.InvalidArgument("Unknown wormMode directive.",
                                         ArgumentName="x-amz-object-lock-mode")
        when = _parse_date(until)
        if when <= time.time():
            raise errors.InvalidArgument("The retain until date must be in the future!",
                                         ArgumentName="x-amz-object-lock-retain-until-date")
        lock.update(mode=mode, until=when)
    else:
        default = bucket.config.get("lock", {}).get("rule")
        if default:
            lock.update(mode=default["mode"], until=time.time() + default["days"] * DAY
                        if "days" in default else time.time() + default["years"] * YEAR)
    if hold is not None:
        if hold not in ("ON", "OFF"):
            raise errors.InvalidArgument("Legal Hold must be either of 'ON' or 'OFF'",
                                         ArgumentName="x-amz-object-lock-legal-hold")
        lock["hold"] = hold == "ON"
    return lock or None


def lock_headers(entry: dict[str, Any]) -> dict[str, str]:
    """The x-amz-object-lock-* headers of a GET or HEAD of a version."""
    lock = entry.get("lock") or {}
    out = {}
    if lock.get("mode"):
        out["x-amz-object-lock-mode"] = lock["mode"]
        out["x-amz-object-lock-retain-until-date"] = iso8601(lock["until"])
    if "hold" in lock:
        out["x-amz-object-lock-legal-hold"] = "ON" if lock["hold"] else "OFF"
    return out


# --- what deletes obey ---------------------------------------------------------------------
def _bypass(req: S3Request, bucket: Bucket, key: str) -> bool:
    return (req.headers.get("x-amz-bypass-governance-retention", "").lower() == "true"
            and req.allowed("s3:BypassGovernanceRetention", bucket, key))


def guard_delete(req: S3Request, bucket: Bucket, key: str,
                 condition: Precondition | None) -> Precondition | None:
    """`condition` and the lock of the version a delete would remove (checked with the
    delete, atomically): AccessDenied while it is locked."""
    if not enabled(bucket):
        return condition
    bypass = _bypass(req, bucket, key)

    def check(entry: dict[str, Any] | None) -> None:
        if condition is not None:
            condition(entry)
        lock = (entry or {}).get("lock") or {}
        if lock.get("hold"):
            raise errors.AccessDenied("The object is under a legal hold")
        if lock.get("until", 0) > time.time() and not (bypass and lock["mode"] == "GOVERNANCE"):
            raise errors.AccessDenied("The object is under retention until "
                                      f"{iso8601(lock['until'])}")
    return check


# --- the bucket's configuration -----------------------------------------------------------
async def put_lock_configuration(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:PutBucketObjectLockConfiguration")
    root = s3_xml.parse(await req.small_body(s3_xml.MAX_BODY))
    if root.tag != "ObjectLockConfiguration" or s3_xml.text(root, "ObjectLockEnabled") != (
            "Enabled"):
        raise errors.MalformedXML()
    rule: dict[str, Any] | None = None
    retention = root.find("Rule/DefaultRetention")
    if root.find("Rule") is not None:
        if retention is None:
            raise errors.MalformedXML()
        mode = s3_xml.text(retention, "Mode")
        days, years = s3_xml.text(retention, "Days"), s3_xml.text(retention, "Years")
        if mode not in MODES or (days is None) == (years is None):
            raise errors.MalformedXML()
        count = (days or years or "").strip()
        if not count.lstrip("-").isdigit() or int(count) <= 0:
            raise errors.InvalidRetentionPeriod()
        rule = {"mode": mode, ("days" if days is not None else "years"): int(count)}
    if not enabled(bucket) and bucket.versioning != "Enabled":
        raise errors.InvalidBucketState("Versioning must be 'Enabled' on the bucket to apply a "
                                 "Object Lock configuration")
    bucket.config["lock"] = {"enabled": True, "rule": rule}
    await req.svc.buckets.save(bucket)
    return web.Response(status=200)


async def get_lock_configuration(req: S3Request) -> web.Response:
    bucket = await req.bucket("s3:GetBucketObjectLockConfiguration")
    if not enabled(bucket):
        raise errors.ObjectLockConfigurationNotFoundError(BucketName=bucket.short_name)
    nodes: list[Node] = [("ObjectLockEnabled", "Enabled")]
    rule = bucket.config["lock"].get("rule")
    if rule:
        span = ("Days", rule["days"]) if "days" in rule else ("Years", rule["years"])
        nodes.append(("Rule", [("DefaultRetention", [("Mode", rule["mode"]), span])]))
    return xml_response(document("ObjectLockConfiguration", nodes))


# --- a version's retention and legal hold --------------------------------------------------
async def _locked_entry(req: S3Request, action: str) -> tuple[Bucket, dict[str, Any]]:
    from gateway.s3_objects import readable_entry  # (s3_objects imports this module)

    bucket, entry = await readable_entry(req, action, action)
    if not enabled(bucket):
        raise errors.InvalidRequest("Bucket is missing Object Lock Configuration")
    return bucket, entry


async def _set_lock(req: S3Request, bucket: Bucket, entry: dict[str, Any],
                    lock: dict[str, Any]) -> web.Response:
    vid = req.query.get("versionId")
    if vid is None:
        vid = entry.get("vid")
    new = await req.svc.objects.versions.update(bucket, key_bytes(req.key), {"lock": lock},
                                                vid)
    headers = {"x-amz-version-id": new["vid"]} if "vid" in new else {}
    return web.Response(status=200, headers=headers)


async def put_retention(req: S3Request) -> web.Response:
    bucket, entry = await _locked_entry(req, "s3:PutObjectRetention")
    root = s3_xml.parse(await req.small_body(s3_xml.MAX_BODY))
    mode = s3_xml.text(root, "Mode")
    if root.tag != "Retention" or mode not in MODES:
        raise errors.MalformedXML()
    until = _parse_date(s3_xml.text(root, "RetainUntilDate"))
    if until <= time.time():
        raise errors.InvalidArgument("The retain until date must be in the future!",
                                     ArgumentName="RetainUntilDate")
    old = entry.get("lock") or {}
    if old.get("until", 0) > time.time():
        # a retention in force may only be lengthened (same mode); a GOVERNANCE one may be
        # changed otherwise by who may bypass it, a COMPLIANCE one by nobody
        weaker = mode != old["mode"] or until < old["until"]
        if weaker and (old["mode"] == "COMPLIANCE" or not _bypass(req, bucket, req.key)):
            raise errors.AccessDenied("The object's retention can only be extended")
    return await _set_lock(req, bucket, entry, {**old, "mode": mode, "until": until})


async def get_retention(req: S3Request) -> web.Response:
    _, entry = await _locked_entry(req, "s3:GetObjectRetention")
    lock = entry.get("lock") or {}
    if not lock.get("mode"):
        raise errors.NoSuchObjectLockConfiguration()
    return xml_response(document("Retention", [("Mode", lock["mode"]),
                                               ("RetainUntilDate", iso8601(lock["until"]))]))


async def put_legal_hold(req: S3Request) -> web.Response:
    bucket, entry = await _locked_entry(req, "s3:PutObjectLegalHold")
    root = s3_xml.parse(await req.small_body(s3_xml.MAX_BODY))
    status = s3_xml.text(root, "Status")
    if root.tag != "LegalHold" or status not in ("ON", "OFF"):
        raise errors.MalformedXML()
    return await _set_lock(req, bucket, entry, {**(entry.get("lock") or {}),
                                                "hold": status == "ON"})


async def get_legal_hold(req: S3Request) -> web.Response:
    _, entry = await _locked_entry(req, "s3:GetObjectLegalHold")
    lock = entry.get("lock") or {}
    if "hold" not in lock:
        raise errors.NoSuchObjectLockConfiguration()
    return xml_response(document("LegalHold", [("Status", "ON" if lock["hold"] else "OFF")]))
