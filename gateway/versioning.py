"""Object versions in the bucket index, for buckets whose versioning is Enabled or Suspended.

Each version is an omap entry in the same shard as its key, in a block that plain listings skip
(0x80 never starts a UTF-8 key):

    <key>                          the current version (absent when the latest is a marker)
    0x80 "v" <key> 0x00 <suffix>   every version, delete markers included

`suffix` is the inverted creation time in nanoseconds (19 digits) plus a random tag, so a key's
versions sort newest first; it is also the version id, except for the "null" version (objects
written while versioning was off or suspended), whose suffix ends in "null".

A change reads the key's entry, its versions and its generation stamp (0x80 "g" <key>, a new
random value at every change of the key), then writes them back guarded by that stamp (and by
the shard's versioning mark), and has the OSD add the change to the shard's object and byte
counts (bucket_stats.py) in the same atomic op (the `counters.add` class method, osd/cls.py):
so writers of different keys never conflict - not even in one shard - while two writers of one
key still see each other, the later one reading again. Unversioned buckets go the same way: the
counts need the entry being replaced, so a blind swap could not keep them exact.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway import bucket_stats, errors
from gateway.buckets import DELETING, VERSIONING, Bucket, BucketStore
from gateway.gc import GarbageCollector
from gateway.listing import Listing, list_index
from rados_py.errors import NotFound
from rados_py.rados import CompareFailed, ObjectOp

BLOCK = bucket_stats.VERSION_BLOCK
GEN = bucket_stats.GEN  # a key's generation stamp (guards a change of the key, and only of it)
NULL = "null"
DELETING_GUARD = 0  # the index, in a change's op, of the guard against a bucket being deleted
MAX_VERSIONS_READ = 1000
ATTEMPTS = 50
Precondition = Callable[[dict[str, Any] | None], None]


def new_suffix(null: bool = False) -> str:
    rev = (1 << 63) - time.time_ns()
    return f"{rev:019d}" + (NULL if null else uuid.uuid4().hex[:8])


def version_key(key: bytes, suffix: str) -> bytes:
    return BLOCK + key + b"\0" + suffix.encode()


def split_version_key(raw: bytes) -> tuple[bytes, str]:
    key, _, suffix = raw[len(BLOCK):].rpartition(b"\0")
    return key, suffix.decode()


def vid_of(suffix: str) -> str:
    return NULL if suffix.endswith(NULL) else suffix


@dataclass
class Shard:
    """What a change reads: the shard's object version, the key's entry, its versions."""

    version: int
    current: dict[str, Any] | None
    versions: list[tuple[str, dict[str, Any]]]  # (suffix, entry), newest first
    mode: str = ""  # the shard's versioning mark ("", Enabled, Suspended)
    usage: bucket_stats.Usage | None = None  # the shard's counts (None: not kept yet)
    gen: bytes | None = None   # the key's generation stamp (None: never changed)
    mark: bytes = b""          # the shard's versioning xattr as read

    def find(self, vid: str) -> tuple[str, dict[str, Any]] | None:
        for suffix, entry in self.versions:
            if vid_of(suffix) == vid:
                return suffix, entry
        return None


@dataclass
class Change:
    sets: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    removes: list[bytes] = field(default_factory=list)
    garbage: list[dict[str, Any]] = field(default_factory=list)  # entries whose data goes
    result: Any = None


class VersionedIndex:
    def __init__(self, buckets: BucketStore, gc: GarbageCollector | None = None) -> None:
        self.buckets = buckets
        self.index = buckets.index
        self.gc = gc  # where objects given an end of life are scheduled (expiry.py)

    async def _read(self, bucket: Bucket, key: bytes) -> Shard:
        op = (ObjectOp().stat().omap_get([key, bucket_stats.STATS, GEN + key])
              .omap_list(prefix=BLOCK + key + b"\0", max_items=MAX_VERSIONS_READ).get_xattrs())
        try:
            results = await self.index.operate(bucket.shard_oid(bucket.shard_of(key)), op)
        except NotFound:
            raise errors.NoSuchBucket(BucketName=bucket.name) from None
        got = {p.key: p.value for p in results[1].pairs}
        current = json.loads(got[key]) if key in got else None
        counts = got.get(bucket_stats.STATS)
        versions = [(split_version_key(p.key)[1], json.loads(p.value))
                    for p in results[2].pairs]
        attrs = {p.key: p.value for p in results[3].pairs}
        # the shard's mark is the truth (set before the bucket entry changes); the entry
        # only for buckets made versioned before shards were marked
        mark = attrs.get(VERSIONING.encode(), b"")
        mode = mark.decode() or bucket.versioning
        return Shard(results[0].version, current, versions, mode,
                     bucket_stats.Usage.decode(counts) if counts is not None else None,
                     got.get(GEN + key), mark)

    async def change(self, bucket: Bucket, key: bytes,
                     decide: Callable[[Shard], Change]) -> Change:
        """Read, decide, write guarded by the key's generation; again on a conflict (another
        writer of the same key)."""
        scheduled: set[float] = set()
        for attempt in range(ATTEMPTS):
            shard = await self._read(bucket, key)
            change = decide(shard)
            new = change.sets.get(key, None if key in change.removes else shard.current)
            at = (new or {}).get("delete_at")
            if (at is not None and at != (shard.current or {}).get("delete_at")
                    and at not in scheduled and self.gc is not None):
                # before the entry is written: a crash in between leaves a GC entry that
                # finds nothing to remove, never an object nobody will remove
                await self.gc.defer_expiry(bucket.name, bucket.id, key, at)
                scheduled.add(at)
            gen = GEN + key
            op = ObjectOp().cmpxattr(DELETING, b"", "eq").cmpxattr(VERSIONING, shard.mark, "eq")
            if shard.gen is None:
                op.omap_assert_absent([gen])
            else:
                op.omap_cmp({gen: shard.gen}, "eq")
            if change.removes:
                op.omap_rm(change.removes)
            sets = {k: json.dumps(v, separators=(",", ":")).encode()
                    for k, v in change.sets.items()}
            if not shard.mode and new is None:  # gone for good: so is its stamp
                op.omap_rm([gen])
            else:
                sets[gen] = uuid.uuid4().bytes
            if sets:
                op.omap_set(sets)
            if new is not shard.current:  # the counts follow on the OSD (kept or not there)
                delta = bucket_stats.changed(bucket_stats.Usage(), shard.current, new)
                if delta.objects or delta.bytes:
                    op.counters_add(bucket_stats.STATS, objects=delta.objects,
                                    bytes=delta.bytes)
            try:
                await self.index.operate(bucket.shard_oid(bucket.shard_of(key)), op)
            except NotFound:
                raise errors.NoSuchBucket(BucketName=bucket.name) from None
            except CompareFailed as exc:
                # op 0 is the deleting mark's guard: the bucket is being deleted; the others
                # (versioning mark, the key's stamp) are another writer of the key: again
                if exc.failed_op == DELETING_GUARD:
                    raise errors.NoSuchBucket(BucketName=bucket.name) from None
                await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                continue
            return change
        raise errors.ServiceUnavailable("Too many concurrent changes to this key's index "
                                        "shard; retry")

    @staticmethod
    def _keep_unversioned(shard: Shard, key: bytes, change: Change) -> None:
        """A current object written before versioning was enabled becomes the null version."""
        cur = shard.current
        if cur is not None and "vid" not in cur and shard.find(NULL) is None:
            suffix = f"{(1 << 63) - int(cur['mtime'] * 1e9):019d}{NULL}"
            change.sets[version_key(key, suffix)] = {**cur, "vid": NULL}

    @staticmethod
    def _drop_null(shard: Shard, key: bytes, change: Change) -> None:
        """Suspended versioning replaces the null version: its data goes."""
        found = shard.find(NULL)
        if found is not None:
            change.removes.append(version_key(key, found[0]))
            if not found[1].get("dm"):
                change.garbage.append(found[1])
        elif shard.current is not None and "vid" not in shard.current:
            change.garbage.append(shard.current)

    async def put(self, bucket: Bucket, key: bytes, entry: dict[str, Any],
                  precondition: Precondition | None = None) -> Change:
        """Make `entry` the key's newest version (and its current object), if `precondition`
        (which sees the current object and raises to refuse) holds at that moment. In an
        unversioned bucket: just the current object."""
        def decide(shard: Shard) -> Change:
            change = Change()
            suspended = shard.mode != "Enabled"
            if precondition is not None:
                precondition(shard.current)
            if not shard.mode:
                change.sets[key] = change.result = entry
                if shard.current is not None and shard.current["segs"] != entry["segs"]:
                    change.garbage.append(shard.current)
                return change
            suffix = new_suffix(null=suspended)
            new = {**entry, "vid": vid_of(suffix)}
            if suspended:
                self._drop_null(shard, key, change)
            else:
                self._keep_unversioned(shard, key, change)
            change.sets[key] = new
            change.sets[version_key(key, suffix)] = new
            change.result = new
            return change
        change = await self.change(bucket, key, decide)
        return change

    async def delete(self, bucket: Bucket, key: bytes, owner: str) -> Change:
        """DELETE without a version: a delete marker becomes the newest version (the object
        goes for good if the bucket turns out not to be versioned)."""
        def decide(shard: Shard) -> Change:
            change = Change()
            if not shard.mode:
                if shard.current is not None:
                    change.removes.append(key)
                    change.garbage.append(shard.current)
                change.result = shard.current
                return change
            suspended = shard.mode != "Enabled"
            suffix = new_suffix(null=suspended)
            marker = {"dm": True, "vid": vid_of(suffix), "mtime": time.time(), "owner": owner,
                      "size": 0, "etag": "", "segs": []}
            if suspended:
                self._drop_null(shard, key, change)
            else:
                self._keep_unversioned(shard, key, change)
            if shard.current is not None:
                change.removes.append(key)
            change.sets[version_key(key, suffix)] = marker
            change.result = marker
            return change
        return await self.change(bucket, key, decide)

    async def delete_version(self, bucket: Bucket, key: bytes, vid: str) -> Change:
        """Remove one version for good; the newest remaining one becomes current."""
        def decide(shard: Shard) -> Change:
            change = Change()
            found = shard.find(vid)
            cur = shard.current
            is_current = cur is not None and (cur.get("vid") == vid or (
                vid == NULL and "vid" not in cur))
            if found is None and not (is_current and vid == NULL):
                return change  # no such version: nothing to do, as S3 answers
            target = found[1] if found is not None else cur
            assert target is not None
            if found is not None:
                change.removes.append(version_key(key, found[0]))
            if not target.get("dm"):
                change.garbage.append(target)
            rest = [e for s, e in shard.versions if found is None or s != found[0]]
            was_newest = found is not None and shard.versions[0][0] == found[0]
            if is_current or was_newest:  # the newest remaining version becomes current
                newest = rest[0] if rest else None
                if newest is not None and not newest.get("dm"):
                    change.sets[key] = newest
                elif cur is not None:
                    change.removes.append(key)
            change.result = target
            return change
        return await self.change(bucket, key, decide)

    async def update(self, bucket: Bucket, key: bytes, fields: dict[str, Any],
                     vid: str | None = None) -> dict[str, Any]:
        """Set `fields` (ACL, tags) of the current object or of version `vid`, in every
        entry that holds it, in one guarded write; the updated entry. Works for any bucket:
        an unversioned one just has no version block."""
        def decide(shard: Shard) -> Change:
            change = Change()
            cur = shard.current
            target_vid = vid if vid is not None else (cur or {}).get("vid", NULL)
            if vid is None and cur is None:
                raise errors.NoSuchKey()
            if cur is not None and cur.get("vid", NULL) == target_vid:
                change.sets[key] = change.result = {**cur, **fields}
            for suffix, entry in shard.versions:
                if vid_of(suffix) == target_vid:
                    if entry.get("dm"):
                        raise errors.MethodNotAllowed(Method="PUT", ResourceType="DeleteMarker")
                    change.sets[version_key(key, suffix)] = change.result = {**entry, **fields}
            if not change.sets:
                raise errors.NoSuchVersion(VersionId=target_vid)
            return change
        return (await self.change(bucket, key, decide)).result

    async def get(self, bucket: Bucket, key: bytes, vid: str) -> dict[str, Any] | None:
        if vid != NULL:
            try:
                found = await self.index.omap_get(bucket.shard_oid(bucket.shard_of(key)),
                                                  [version_key(key, vid)])
            except NotFound:
                raise errors.NoSuchBucket(BucketName=bucket.name) from None
            raw = found.get(version_key(key, vid))
            return json.loads(raw) if raw is not None else None
        shard = await self._read(bucket, key)
        hit = shard.find(NULL)
        if hit is not None:
            return hit[1]
        if shard.current is not None and "vid" not in shard.current:
            return shard.current
        return None

    async def latest_is_marker(self, bucket: Bucket, key: bytes) -> bool:
        shard = await self._read(bucket, key)
        return bool(shard.versions) and bool(shard.versions[0][1].get("dm"))

    async def list(self, bucket: Bucket, *, prefix: bytes, key_marker: bytes,
                   vid_marker: str, delimiter: bytes, max_keys: int) -> Listing:
        """Versions in key order, newest first per key (`ListObjectVersions`)."""
        marker = b""
        if key_marker:
            marker = (version_key(key_marker, vid_marker) if vid_marker and vid_marker != NULL
                      else BLOCK + key_marker + b"\0\xff")

        async def fetch(shard: int, after: bytes, pfx: bytes, count: int
                        ) -> tuple[list[tuple[bytes, bytes]], bool]:
            try:
                return await self.index.omap_list(bucket.shard_oid(shard), after=after,
                                                  prefix=pfx, max_items=count)
            except NotFound:
                raise errors.NoSuchBucket(BucketName=bucket.name) from None

        return await list_index(fetch, bucket.shards, prefix=BLOCK + prefix, marker=marker,
                                delimiter=delimiter, max_keys=max_keys)
