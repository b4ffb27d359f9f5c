"""Garbage collection of object data no index entry points to any more.

Data is never removed at the moment an object is overwritten or deleted: a GET that read the
old entry may still be streaming its stripes. Instead the old segments go on a GC list with a
due time (`gateway_gc_min_wait` later), and the gateway's GC worker removes them once due, as
RGW's GC does. An upload of more than one stripe also puts its own prefix on the list while it
runs (due far ahead) and takes it off when it commits, so stripes of an upload cut short by a
crash of the gateway are found again.

    meta pool   gc.<n>   omap "<due ms, 15 digits>.<id>" -> {"segs": [[prefix, size, stripe]]}

Keys sort by due time, so the worker reads each list from the start and stops at the first
entry not yet due. Removing a stripe that is already gone is fine: two gateways may collect
the same entry.

The same list carries objects' ends of life (X-Delete-At): an entry
{"expire": [bucket, bucket id, key hex]} due then is handed to `on_expiry` (expiry.py), which
removes the object if it is still expired then.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from rados_py.errors import NotFound
from rados_py.rados import IoCtx

log = logging.getLogger(__name__)
SHARDS = 4
UNKNOWN = -1  # a segment whose size is unknown (an upload in progress): remove until gaps
PENDING_WAIT = 24 * 3600.0
Expire = Callable[[str, str, bytes], Awaitable[None]]


def stripe_oid(prefix: str, n: int) -> str:
    return f"{prefix}.{n}"


def stripes_of(size: int, stripe: int) -> int:
    return -(-size // stripe) if size > 0 else 0


class GarbageCollector:
    def __init__(self, meta: IoCtx, data: IoCtx, min_wait: float) -> None:
        self.meta = meta
        self.data = data
        self.min_wait = min_wait
        self.on_expiry: Expire | None = None  # expiry.attach sets it

    async def defer(self, segs: list[list[Any]], wait: float | None = None) -> str:
        """Put segments on the list, due after `wait` (default gateway_gc_min_wait); its key."""
        if not segs:
            return ""
        return await self._put({"segs": segs},
                               time.time() + (self.min_wait if wait is None else wait))

    async def defer_expiry(self, bucket: str, bucket_id: str, key: bytes, at: float) -> str:
        """Have the object looked at when its end of life `at` comes."""
        return await self._put({"expire": [bucket, bucket_id, key.hex()]}, at)

    async def _put(self, item: dict[str, Any], due: float) -> str:
        ident = uuid.uuid4().hex
        key = f"{int(due * 1000):015d}.{ident}"
        await self.meta.omap_set(self._shard(ident), {key: json.dumps(item).encode()})
        return key

    async def _handle(self, item: dict[str, Any]) -> None:
        if "expire" not in item:
            await self.remove_segments(item["segs"])
        elif self.on_expiry is not None:
            bucket, bucket_id, key = item["expire"]
            await self.on_expiry(bucket, bucket_id, bytes.fromhex(key))
        else:
            raise RuntimeError("no handler for object expiry entries")

    async def cancel(self, key: str) -> None:
        if key:
            await self.meta.omap_rm(self._shard(key.partition(".")[2]), [key])

    @staticmethod
    def _shard(ident: str) -> str:
        return f"gc.{zlib.crc32(ident.encode()) % SHARDS}"

    async def remove_segments(self, segs: list[list[Any]]) -> None:
        for prefix, size, stripe in segs:
            if size == UNKNOWN:
                await self._remove_until_gap(prefix)
            else:
                await asyncio.gather(*(self._rm(stripe_oid(prefix, n))
                                       for n in range(stripes_of(size, stripe))))

    async def _rm(self, oid: str) -> bool:
        try:
            await self.data.remove(oid)
        except NotFound:
            return False
        return True

    async def _remove_until_gap(self, prefix: str) -> None:
        # stripes are written in order with at most one in flight: two misses in a row end it
        n, misses = 0, 0
        while misses < 2:
            misses = 0 if await self._rm(stripe_oid(prefix, n)) else misses + 1
            n += 1

    async def collect(self, now: float | None = None, limit: int = 1000) -> int:
        """Remove what is due, at most `limit` entries per list and round (the next round
        goes on); how many entries went."""
        now = time.time() if now is None else now
        done = 0
        for n in range(SHARDS):
            after = b""
            left = limit
            while left > 0:
                try:
                    page, more = await self.meta.omap_list(f"gc.{n}", after=after,
                                                           max_items=min(left, 100))
                except NotFound:
                    break
                due = [(k, v) for k, v in page if int(k[:15]) <= now * 1000]
                finished = []
                for key, value in due:
                    try:
                        await self._handle(json.loads(value))
                    except Exception:  # keep the entry: the next round tries again
                        log.exception("GC of %s failed", key)
                        continue
                    finished.append(key)
                if finished:
                    await self.meta.omap_rm(f"gc.{n}", finished)
                    done += len(finished)
                if len(due) < len(page) or not more or not page:
                    break  # the rest is not due yet (keys sort by due time), or none is left
                after = page[-1][0]
                left -= len(page)
        return done
