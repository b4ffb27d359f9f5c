"""A bucket's object count and bytes used, kept per index shard so that reading them costs one
read per shard, whatever the number of objects:

    index pool  idx.<bucket id>.<n>   omap 0x80 "stats" -> {"objects": N, "bytes": B}

They count the current objects (what a plain listing shows; versions behind them and delete
markers are not counted). Every index change writes the shard's new counts in the same atomic
op as the entry it changes, guarded by the shard's object version (versioning.py), so
concurrent writers can never lose an update.

Shards written before counts existed have no stats key; writers leave it absent (they cannot
know the base), and the first reader counts the shard once and stores the result, guarded by
the version it counted at, so a write meanwhile makes it count again instead of storing a stale
figure.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from gateway import errors
from rados_py.rados import CompareFailed, IoCtx, ObjectOp

RESERVED = b"\x80"  # first byte of index entries that are not objects (never starts UTF-8)
STATS = RESERVED + b"stats"
VERSION_BLOCK = RESERVED + b"v"  # object versions (versioning.py)
GEN = RESERVED + b"g"            # keys' generation stamps (versioning.py)
MIGRATE_ATTEMPTS = 5
SCAN_PAGE = 1000


@dataclass
class Usage:
    objects: int = 0
    bytes: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.objects + other.objects, self.bytes + other.bytes)

    def encode(self) -> bytes:
        return json.dumps({"objects": self.objects, "bytes": self.bytes}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Usage:
        data = json.loads(raw)
        return cls(int(data["objects"]), int(data["bytes"]))


def of(entry: dict[str, Any] | None) -> Usage:
    """What one current object adds to the counts."""
    return Usage(0, 0) if entry is None else Usage(1, int(entry.get("size", 0)))


def changed(before: Usage, old: dict[str, Any] | None, new: dict[str, Any] | None) -> Usage:
    """The counts after the current object `old` became `new` (None: no object)."""
    return Usage(before.objects - of(old).objects + of(new).objects,
                 before.bytes - of(old).bytes + of(new).bytes)


async def shard_usage(index: IoCtx, oid: str) -> Usage:
    """The shard's counts; counted and stored once if the shard has none yet."""
    op = ObjectOp().stat().omap_get([STATS])
    results = await index.operate(oid, op)
    if results[1].pairs:
        return Usage.decode(results[1].pairs[0].value)
    version = results[0].version
    for _ in range(MIGRATE_ATTEMPTS):
        try:
            counted = await _count(index, oid, version)
            await index.operate(oid, ObjectOp().assert_version(version)
                                .omap_assert_absent([STATS]).omap_set({STATS: counted.encode()}))
            return counted
        except CompareFailed:  # written meanwhile: count again at the new version
            results = await index.operate(oid, ObjectOp().stat().omap_get([STATS]))
            if results[1].pairs:  # another reader stored it first
                return Usage.decode(results[1].pairs[0].value)
            version = results[0].version
    raise errors.ServiceUnavailable("The bucket index changes too fast to count it; retry")


async def _count(index: IoCtx, oid: str, version: int) -> Usage:
    """The counts from a scan of the shard, all at `version` (else CompareFailed)."""
    total = Usage()
    after = b""
    while True:
        op = ObjectOp().assert_version(version).omap_list(after=after, max_items=SCAN_PAGE)
        page = (await index.operate(oid, op))[1]
        for pair in page.pairs:
            if not pair.key.startswith(RESERVED):
                total = total + of(json.loads(pair.value))
        if not page.more or not page.pairs:
            return total
        after = page.pairs[-1].key


async def usage(index: IoCtx, oids: list[str]) -> Usage:
    """The counts of a bucket whose index shards are `oids`; NotFound if one is gone."""
    total = Usage()
    for one in await asyncio.gather(*(shard_usage(index, oid) for oid in oids)):
        total = total + one
    return total

