"""Objects with an end of life (Swift's X-Delete-At / X-Delete-After), kept as `delete_at`
(seconds since the epoch) in the object's index entry.

Past that time the object is gone for every reader (404, absent from listings). It is removed
by whichever comes first: a request that meets it, or the gateway's GC worker, since every
index change that gives the current object an end of life also puts it on the GC list due then
(versioning.py). Removal is guarded: it only takes the very entry that expired, never a newer
object written under the same name meanwhile. A versioned bucket keeps its versions: there an
expired object is only hidden.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from gateway import errors
from gateway.buckets import Bucket
from gateway.versioning import Change, Shard

if TYPE_CHECKING:
    from gateway.objects import ObjectStore

SWEEP_LIMIT = 1000


def expired(entry: dict[str, Any], now: float | None = None) -> bool:
    at = entry.get("delete_at")
    return at is not None and at <= (time.time() if now is None else now)


async def remove_expired(objects: ObjectStore, bucket: Bucket, key: bytes,
                         entry: dict[str, Any]) -> None:
    """Remove `entry` if it is still the key's current object."""
    def decide(shard: Shard) -> Change:
        change = Change()
        cur = shard.current
        if (not shard.mode and cur is not None and cur.get("mtime") == entry.get("mtime")
                and cur.get("etag") == entry.get("etag")):
            change.removes.append(key)
            change.garbage.append(cur)
        return change

    change = await objects.versions.change(bucket, key, decide)
    segs = [seg for e in change.garbage for seg in e.get("segs", [])]
    if segs:
        await objects.gc.defer(segs)


async def reap(objects: ObjectStore, name: str, bucket_id: str, key: bytes) -> None:
    """The GC list's entry for an object whose end of life came: remove it if it is still
    there and expired (it may have been overwritten, or its bucket deleted, since)."""
    try:
        bucket = await objects.buckets.get(name)
        if bucket.id != bucket_id:
            return
        entry = await objects.buckets.entry(bucket, key)
        if entry is not None and expired(entry):
            await remove_expired(objects, bucket, key, entry)
    except errors.NoSuchBucket:
        return


def attach(objects: ObjectStore) -> None:
    """Let the GC worker remove expired objects of this store."""
    async def on_expiry(name: str, bucket_id: str, key: bytes) -> None:
        await reap(objects, name, bucket_id, key)
    objects.gc.on_expiry = on_expiry


async def remove_if_all_expired(objects: ObjectStore, bucket: Bucket) -> bool:
    """Remove the bucket's objects if every one has expired (at most SWEEP_LIMIT of them), so
    that the bucket can be deleted before the GC worker gets to them; whether it did."""
    listing = await objects.buckets.list(bucket, max_keys=SWEEP_LIMIT)
    entries = [(k, json.loads(v)) for k, v in listing.entries]
    if listing.truncated or not all(expired(e) for _, e in entries):
        return False
    await asyncio.gather(*(remove_expired(objects, bucket, k, e) for k, e in entries))
    return True
