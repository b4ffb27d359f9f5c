"""Bucket lifecycle: rules (S3's LifecycleConfiguration) and the worker that applies them.

A rule selects objects by prefix, tags and size (Filter, or the older rule-level Prefix) and
says what happens to them: the current version expires some days after it was written or on a
date (in a versioned bucket it gets a delete marker, as S3 does), a delete marker left with no
versions behind it goes, noncurrent versions go some days after they became noncurrent
(keeping the newest N if asked), and multipart uploads left unfinished are aborted.

The worker (`LifecycleWorker.run_once`, called by the gateway's lifecycle task) walks every
bucket registered in `lc.buckets` (meta pool: bucket name -> id) under a lease, so of several
gateways one does each bucket. Every deletion is conditional on the version being exactly the
one that was judged (its etag and time), applied atomically with the delete: an object
overwritten meanwhile, or re-tagged out of the rule, is never removed for its predecessor.

A "day" is `gateway_lc_day_seconds` (86,400; tests shrink it, like RGW's
rgw_lc_debug_interval). With real days, times round up to the next midnight UTC as S3's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

from gateway import errors, s3_xml
from gateway.buckets import Bucket
from gateway.s3_xml import Node, document, iso8601
from rados_py.errors import AlreadyExists, NotFound
from rados_py.rados import CompareFailed, IoCtx, ObjectOp

log = logging.getLogger(__name__)
REGISTRY = "lc.buckets"
LEASE = "lc.lease."
MAX_RULES = 1000
MAX_ID = 255
DAY = 86400.0


# --- rules ---------------------------------------------------------------------------------
def _int(text: str | None, what: str, minimum: int) -> int | None:
    if text is None:
        return None
    if not text.strip().isdigit() or int(text) < minimum:
        raise errors.InvalidArgument(f"{what} must be an integer of at least {minimum}")
    return int(text)


def _date(text: str | None, what: str) -> float | None:
    """An ISO 8601 date at midnight UTC (S3 refuses other times)."""
    if text is None:
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}(T00:00:00(\.0+)?(Z|[+-]00:00)?)?", text.strip()):
        raise errors.InvalidArgument(f"{what} must be an ISO 8601 date at midnight UTC")
    try:
        day = datetime.fromisoformat(text.strip()[:10]).replace(tzinfo=UTC)
    except ValueError:
        raise errors.InvalidArgument(f"{what} is not a date") from None
    return day.timestamp()


def _filter(rule_el: Any) -> dict[str, Any]:
    """prefix, tags, size bounds of a rule (Filter, or the rule-level Prefix)."""
    out: dict[str, Any] = {"prefix": "", "tags": {}, "gt": None, "lt": None}
    filt = rule_el.find("Filter")
    if filt is None:
        out["prefix"] = s3_xml.text(rule_el, "Prefix", "") or ""
        return out
    if rule_el.find("Prefix") is not None:
        raise errors.MalformedXML("A rule has a Filter or a Prefix, not both")
    node = filt.find("And")
    if node is not None and len(list(filt)) > 1:
        raise errors.MalformedXML("A Filter with And has nothing else")
    scope = node if node is not None else filt
    if node is None and len(list(filt)) > 1:
        raise errors.MalformedXML("A Filter holds one condition (or And)")
    out["prefix"] = s3_xml.text(scope, "Prefix", "") or ""
    for tag in scope.findall("Tag"):
        key, value = s3_xml.text(tag, "Key"), s3_xml.text(tag, "Value", "")
        if not key:
            raise errors.MalformedXML("A Tag has a Key")
        out["tags"][key] = value or ""
    out["gt"] = _int(s3_xml.text(scope, "ObjectSizeGreaterThan"), "ObjectSizeGreaterThan", 0)
    out["lt"] = _int(s3_xml.text(scope, "ObjectSizeLessThan"), "ObjectSizeLessThan", 1)
    return out


def parse(body: bytes) -> list[dict[str, Any]]:
    """The rules of a LifecycleConfiguration document, checked as S3 checks them."""
    root = s3_xml.parse(body)
    if root.tag != "LifecycleConfiguration":
        raise errors.MalformedXML()
    rules = []
    ids: set[str] = set()
    for el in root.findall("Rule"):
        rule_id = s3_xml.text(el, "ID") or uuid.uuid4().hex
        if len(rule_id) > MAX_ID:
            raise errors.InvalidArgument("The ID of a rule has at most 255 characters")
        if rule_id in ids:
            raise errors.InvalidArgument("Rule IDs must be unique")
        ids.add(rule_id)
        status = s3_xml.text(el, "Status")
        if status not in ("Enabled", "Disabled"):
            raise errors.MalformedXML("Status is Enabled or Disabled")
        if el.find("Transition") is not None or el.find("NoncurrentVersionTransition") is not None:
            for t in el.iter():
                if t.tag == "Date":
                    _date(t.text, "Transition Date")
            raise errors.InvalidStorageClass("Transitions need a storage class other than "
                                             "STANDARD, which this gateway does not have")
        rule: dict[str, Any] = {"id": rule_id, "enabled": status == "Enabled", **_filter(el)}
        exp = el.find("Expiration")
        if exp is not None:
            rule["days"] = _int(s3_xml.text(exp, "Days"), "Expiration Days", 1)
            rule["date"] = _date(s3_xml.text(exp, "Date"), "Expiration Date")
            marker = (s3_xml.text(exp, "ExpiredObjectDeleteMarker") or "").lower()
            rule["marker"] = marker == "true"
            if sum(x is not None and x is not False for x in (
                    rule["days"], rule["date"], rule["marker"] or None)) != 1:
                raise errors.MalformedXML("Expiration has one of Days, Date and "
                                          "ExpiredObjectDeleteMarker")
            if rule["marker"] and rule["tags"]:
                raise errors.InvalidArgument("ExpiredObjectDeleteMarker cannot be used with "
                                             "tags")
        nve = el.find("NoncurrentVersionExpiration")
        if nve is not None:
            rule["noncurrent_days"] = _int(s3_xml.text(nve, "NoncurrentDays"), "NoncurrentDays",
                                           1)
            rule["keep_newer"] = _int(s3_xml.text(nve, "NewerNoncurrentVersions"),
                                      "NewerNoncurrentVersions", 1)
            if rule["noncurrent_days"] is None:
                raise errors.MalformedXML("NoncurrentVersionExpiration has NoncurrentDays")
        abort = el.find("AbortIncompleteMultipartUpload")
        if abort is not None:
            rule["abort_days"] = _int(s3_xml.text(abort, "DaysAfterInitiation"),
                                      "DaysAfterInitiation", 1)
            if rule["abort_days"] is None or rule["tags"]:
                raise errors.InvalidArgument("AbortIncompleteMultipartUpload has "
                                             "DaysAfterInitiation and no tag filter")
        if not any(k in rule for k in ("days", "noncurrent_days", "abort_days")):
            raise errors.MalformedXML("A rule has an action: Expiration, "
                                      "NoncurrentVersionExpiration or "
                                      "AbortIncompleteMultipartUpload")
        rules.append(rule)
    if not rules or len(rules) > MAX_RULES:
        raise errors.MalformedXML(f"A lifecycle configuration has 1 to {MAX_RULES} rules")
    return rules


def document_of(rules: list[dict[str, Any]]) -> bytes:
    out: list[Node] = []
    for r in rules:
        conditions: list[Node] = []
        if r["prefix"] or not (r["tags"] or r["gt"] or r["lt"]):
            conditions.append(("Prefix", r["prefix"]))
        conditions += [("Tag", [("Key", k), ("Value", v)]) for k, v in r["tags"].items()]
        conditions += [("ObjectSizeGreaterThan", r["gt"]), ("ObjectSizeLessThan", r["lt"])]
        real = [c for c in conditions if c[1] is not None]
        filt: list[Node] = real if len(real) <= 1 else [("And", real)]
        node: list[Node] = [("ID", r["id"]), ("Filter", filt),
                            ("Status", "Enabled" if r["enabled"] else "Disabled")]
        if "days" in r:
            node.append(("Expiration", [
                ("Days", r["days"]),
                ("Date", iso8601(r["date"]) if r.get("date") is not None else None),
                ("ExpiredObjectDeleteMarker", True if r.get("marker") else None)]))
        if "noncurrent_days" in r:
            node.append(("NoncurrentVersionExpiration", [
                ("NoncurrentDays", r["noncurrent_days"]),
                ("NewerNoncurrentVersions", r.get("keep_newer"))]))
        if "abort_days" in r:
            node.append(("AbortIncompleteMultipartUpload", [
                ("DaysAfterInitiation", r["abort_days"])]))
        out.append(("Rule", node))
    return document("LifecycleConfiguration", out)


def selects(rule: dict[str, Any], key: str, entry: dict[str, Any]) -> bool:
    """Whether the rule's filter selects this object version."""
    if not rule["enabled"] or not key.startswith(rule["prefix"]):
        return False
    tags = entry.get("tags") or {}
    if any(tags.get(k) != v for k, v in rule["tags"].items()):
        return False
    size = entry.get("size", 0)
    if rule.get("gt") is not None and not size > rule["gt"]:
        return False
    return not (rule.get("lt") is not None and not size < rule["lt"])


def due(start: float, days: int, day: float) -> float:
    """When something `days` days after `start` is due: S3 rounds up to midnight UTC; a
    shortened test day does not."""
    if day != DAY:
        return start + days * day
    return math.ceil((start + days * DAY) / DAY) * DAY


def expiration_header(rules: list[dict[str, Any]], key: str, entry: dict[str, Any]
                      ) -> str | None:
    """x-amz-expiration of a current object: the earliest rule that will expire it (S3's
    real days, whatever the worker's day length)."""
    best: tuple[float, str] | None = None
    for r in rules:
        if r.get("days") is None and r.get("date") is None:
            continue
        if not selects(r, key, entry):
            continue
        when = r["date"] if r.get("date") is not None else due(entry["mtime"], r["days"], DAY)
        if best is None or when < best[0]:
            best = (when, r["id"])
    if best is None:
        return None
    return f'expiry-date="{formatdate(best[0], usegmt=True)}", rule-id="{best[1]}"'


# --- the worker ----------------------------------------------------------------------------
@dataclass
class Counts:
    expired: int = 0  # current versions removed or hidden by a delete marker
    noncurrent: int = 0  # noncurrent versions removed
    markers: int = 0  # expired delete markers removed
    aborted: int = 0  # multipart uploads aborted

    @property
    def total(self) -> int:
        return self.expired + self.noncurrent + self.markers + self.aborted


def _same(judged: dict[str, Any]) -> Any:
    """A precondition that holds only for the very version that was judged."""
    def check(entry: dict[str, Any] | None) -> None:
        if entry is None or entry.get("mtime") != judged.get("mtime") or entry.get(
                "etag") != judged.get("etag") or bool(entry.get("dm")) != bool(judged.get("dm")):
            raise errors.PreconditionFailed("changed since judged")
    return check


class LifecycleWorker:
    def __init__(self, svc: Any, day: float, name: str, lease: float = 300.0) -> None:
        self.svc = svc
        self.day = day
        self.name = name  # who holds a bucket's lease (the gateway's name)
        self.lease = lease

    @property
    def meta(self) -> IoCtx:
        return self.svc.meta

    async def register(self, bucket: Bucket) -> None:
        await self.meta.omap_set(REGISTRY, {bucket.name: bucket.id.encode()})

    async def unregister(self, bucket: Bucket) -> None:
        with contextlib.suppress(NotFound):
            await self.meta.omap_rm(REGISTRY, [bucket.name])

    async def _registered(self) -> AsyncIterator[tuple[str, str]]:
        after = b""
        while True:
            try:
                page, more = await self.meta.omap_list(REGISTRY, after=after, max_items=1000)
            except NotFound:
                return
            for k, v in page:
                yield k.decode(), v.decode()
            if not more or not page:
                return
            after = page[-1][0]

    async def _take_lease(self, bucket: Bucket, now: float) -> bool:
        """Hold the bucket's lease (one gateway works on a bucket at a time)."""
        oid = LEASE + bucket.id
        try:
            results = await self.meta.operate(oid, ObjectOp().stat().read(0, 1024))
            version = results[0].version
            holder = json.loads(results[1].data or b"{}")
        except NotFound:
            version, holder = 0, {}
        if holder.get("until", 0) > now and holder.get("by") != self.name:
            return False
        op = ObjectOp().assert_version(version) if version else ObjectOp().create(True)
        op.write_full(json.dumps({"by": self.name, "until": now + self.lease}).encode())
        try:
            await self.meta.operate(oid, op)
        except (CompareFailed, AlreadyExists):  # another gateway took it meanwhile
            return False
        return True

    async def run_once(self, now: float | None = None) -> Counts:
        """One pass over every bucket with rules."""
        counts = Counts()
        async for name, bucket_id in self._registered():
            try:
                bucket = await self.svc.buckets.get(name)
            except errors.NoSuchBucket:
                await self.meta.omap_rm(REGISTRY, [name])
                continue
            rules = bucket.config.get("lifecycle")
            if bucket.id != bucket_id or not rules:
                continue
            t = time.time() if now is None else now
            if not await self._take_lease(bucket, t):
                continue
            try:
                await self._bucket(bucket, rules, t, counts)
            except errors.NoSuchBucket:
                continue
            except Exception:  # one bucket's trouble does not stop the others
                log.exception("lifecycle of bucket %s failed; retried next pass", name)
        return counts

    async def _bucket(self, bucket: Bucket, rules: list[dict[str, Any]], now: float,
                      counts: Counts) -> None:
        if any("abort_days" in r for r in rules):
            await self._uploads(bucket, rules, now, counts)
        if bucket.versioning:
            await self._versions(bucket, rules, now, counts)
        else:
            await self._current(bucket, rules, now, counts)

    def _expires(self, rules: list[dict[str, Any]], key: str, entry: dict[str, Any],
                 now: float) -> bool:
        for r in rules:
            if not selects(r, key, entry):
                continue
            if r.get("days") is not None and due(entry["mtime"], r["days"], self.day) <= now:
                return True
            if r.get("date") is not None and r["date"] <= now:
                return True
        return False

    async def _current(self, bucket: Bucket, rules: list[dict[str, Any]], now: float,
                       counts: Counts) -> None:
        objects = self.svc.objects
        marker = b""
        while True:
            listing = await self.svc.buckets.list(bucket, marker=marker, max_keys=1000)
            for raw, value in listing.entries:
                entry = json.loads(value)
                key = raw.decode("utf-8", "surrogateescape")
                if self._expires(rules, key, entry, now) and not _locked(entry, now):
                    with contextlib.suppress(errors.PreconditionFailed):
                        if await objects.delete(bucket, raw, bucket.owner, _same(entry)):
                            counts.expired += 1
            if not listing.truncated:
                return
            marker = listing.next_marker

    async def _versions(self, bucket: Bucket, rules: list[dict[str, Any]], now: float,
                        counts: Counts) -> None:
        from gateway.version_listing import VersionListing, split_key

        listing_of = VersionListing(self.svc.buckets)
        key_marker, vid_marker = b"", ""
        group: list[dict[str, Any]] = []
        group_key: bytes | None = None
        while True:
            page = await listing_of.list(bucket, prefix=b"", key_marker=key_marker,
                                         vid_marker=vid_marker, delimiter=b"", max_keys=1000)
            for raw, value in page.entries:
                key, _ = split_key(raw)
                if key != group_key and group_key is not None:
                    await self._key(bucket, group_key, group, rules, now, counts)
                    group = []
                group_key = key
                group.append(json.loads(value))
            if not page.truncated:
                break
            key_marker, vid_marker = split_key(page.next_marker)
            vid_marker = vid_marker or "null"
        if group_key is not None:
            await self._key(bucket, group_key, group, rules, now, counts)

    async def _key(self, bucket: Bucket, raw: bytes, versions: list[dict[str, Any]],
                   rules: list[dict[str, Any]], now: float, counts: Counts) -> None:
        """One key's versions, newest first."""
        objects = self.svc.objects
        key = raw.decode("utf-8", "surrogateescape")
        newest = versions[0]
        if not newest.get("dm") and self._expires(rules, key, newest, now) and not _locked(
                newest, now):
            with contextlib.suppress(errors.PreconditionFailed):
                await objects.delete(bucket, raw, bucket.owner, _same(newest))
                counts.expired += 1
                return  # the next pass sees the marker and what it left noncurrent
        for r in rules:
            if r.get("noncurrent_days") is None or not r["enabled"]:
                continue
            kept = 0
            for i in range(1, len(versions)):
                entry = versions[i]
                if entry.get("dm") or not selects(r, key, entry):
                    continue
                kept += 1
                if r.get("keep_newer") and kept <= r["keep_newer"]:
                    continue
                since = versions[i - 1]["mtime"]  # noncurrent from its successor on
                if due(since, r["noncurrent_days"], self.day) > now or _locked(entry, now):
                    continue
                with contextlib.suppress(errors.PreconditionFailed):
                    if await objects.delete_version(bucket, raw, entry.get("vid", "null"),
                                                    _same(entry)):
                        counts.noncurrent += 1
        if len(versions) == 1 and newest.get("dm") and any(
                (r.get("marker") or r.get("days") is not None) and r["enabled"]
                and key.startswith(r["prefix"]) and not r["tags"] for r in rules):
            with contextlib.suppress(errors.PreconditionFailed):
                if await objects.delete_version(bucket, raw, newest.get("vid", "null"),
                                                _same(newest)):
                    counts.markers += 1

    async def _uploads(self, bucket: Bucket, rules: list[dict[str, Any]], now: float,
                       counts: Counts) -> None:
        from gateway.s3_multipart import abort, uploads_of

        async for upload in uploads_of(self.svc, bucket):
            for r in rules:
                if (r.get("abort_days") is not None and r["enabled"]
                        and upload["key"].startswith(r["prefix"])
                        and due(upload["initiated"], r["abort_days"], self.day) <= now):
                    with contextlib.suppress(errors.NoSuchUpload):
                        await abort(self.svc, bucket, upload)
                        counts.aborted += 1
                    break


def _locked(entry: dict[str, Any], now: float) -> bool:
    """An object-locked version (retention not yet over, or a legal hold) is not removed."""
    lock = entry.get("lock") or {}
    return bool(lock.get("hold")) or lock.get("until", 0) > now


async def worker_loop(worker: LifecycleWorker, interval: float) -> None:
    """The gateway's lifecycle task: a pass every `interval` seconds, for ever."""
    while True:
        await asyncio.sleep(interval)
        try:
            counts = await worker.run_once()
            if counts.total:
                log.info("lifecycle: %d expired, %d noncurrent versions and %d delete markers "
                         "removed, %d uploads aborted", counts.expired, counts.noncurrent,
                         counts.markers, counts.aborted)
        except Exception:  # a failed pass is retried at the next interval
            log.exception("lifecycle pass failed")
