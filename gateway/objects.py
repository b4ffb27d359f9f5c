"""Object data in RADOS: a new upload's bytes go to fresh stripe objects named by a unique
instance id (the head is stripe 0, the tails follow), and only then the bucket index entry is
swapped to point at them, in one atomic op. So:

- a reader sees the old object or the new one, never a mix;
- of two concurrent PUTs of one key, the later swap wins and the loser's data goes to GC;
- an upload that fails (bad checksum, client gone) never touches the index: its stripes are
  removed at once, and if the gateway itself dies, the GC list finds them later.

An entry (JSON in the index) holds everything a GET or a listing needs: size, etag, mtime,
content type, user metadata, and the segments [prefix, size, stripe size] whose stripes hold
the data in order (one segment for a PUT, one per part for a multipart upload: parts are
stitched by this manifest, never copied). Memory per request stays at about two stripes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from gateway import errors
from gateway.buckets import Bucket, BucketStore
from gateway.gc import UNKNOWN, GarbageCollector, stripe_oid
from gateway.versioning import Precondition, VersionedIndex
from rados_py.errors import NotFound
from rados_py.rados import IoCtx

log = logging.getLogger(__name__)
READ_PIECE = 1 << 20
READ_AHEAD = 2  # memory per GET: about (READ_AHEAD + 1) x READ_PIECE


class ObjectStore:
    def __init__(self, data: IoCtx, buckets: BucketStore, gc: GarbageCollector,
                 stripe_size: int) -> None:
        self.data = data
        self.buckets = buckets
        self.gc = gc
        self.stripe = stripe_size
        self.versions = VersionedIndex(buckets, gc)

    def new_prefix(self, bucket: Bucket) -> str:
        return f"{bucket.id}.{uuid.uuid4().hex}"

    async def write_segment(self, prefix: str, pieces: AsyncIterator[bytes]
                            ) -> tuple[list[Any], str]:
        """Stream `pieces` into stripes under `prefix`; ([prefix, size, stripe], gc key).

        One stripe is written while the next is read. On any failure the stripes written so
        far are removed before the error goes on; the caller cancels the GC key once the
        segment is referenced (or deferred)."""
        buf = bytearray()
        n = 0
        size = 0
        pending: asyncio.Task[int] | None = None
        gc_key = ""
        try:
            async for piece in pieces:
                buf += piece
                size += len(piece)
                while len(buf) >= self.stripe:
                    with memoryview(buf) as view:  # one copy, not two
                        chunk = bytes(view[:self.stripe])
                    del buf[:self.stripe]
                    if pending is not None:
                        await pending
                    if n == 1 and not gc_key:
                        gc_key = await self.gc.defer([[prefix, UNKNOWN, self.stripe]],
                                                     wait=24 * 3600.0)
                    pending = asyncio.ensure_future(self.data.write_full(
                        stripe_oid(prefix, n), chunk))
                    n += 1
            if pending is not None:
                await pending
                pending = None
            if buf:
                await self.data.write_full(stripe_oid(prefix, n), bytes(buf))
                n += 1
        except BaseException:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            await asyncio.shield(self._discard(prefix, n + 1, gc_key))
            raise
        return [prefix, size, self.stripe], gc_key

    async def _discard(self, prefix: str, count: int, gc_key: str) -> None:
        try:
            await self.gc.remove_segments([[prefix, count * self.stripe, self.stripe]])
            await self.gc.cancel(gc_key)
        except Exception:  # the GC entry (if any) stays and finds them later
            log.exception("removing the stripes of an abandoned upload %s", prefix)

    async def commit(self, bucket: Bucket, key: bytes, entry: dict[str, Any],
                     gc_keys: list[str], precondition: Precondition | None = None) -> None:
        """Point the key at `entry` (as a new version in a versioned bucket), if
        `precondition` holds for the current object then; replaced data goes to GC."""
        try:
            garbage = await self._link(bucket, key, entry, precondition)
        except BaseException:
            await asyncio.shield(self._drop_entry_data(entry, gc_keys))
            raise
        for gc_key in gc_keys:
            await self.gc.cancel(gc_key)
        await self._collect(garbage)

    async def _link(self, bucket: Bucket, key: bytes, entry: dict[str, Any],
                    precondition: Precondition | None) -> list[dict[str, Any]]:
        """Make the key's entry `entry`; the entries whose data is now garbage. The bucket may
        be a cached one: the shard's versioning mark, read in the same guarded snapshot, is
        what counts, and an index that is gone (the bucket deleted and maybe created again)
        sends this back with the bucket as it is now."""
        for _ in range(3):
            try:
                change = await self.versions.put(bucket, key, entry, precondition)
            except errors.NoSuchBucket:
                bucket = await self._fresh(bucket)
                continue
            if "vid" in change.result:
                entry["vid"] = change.result["vid"]
            return change.garbage
        raise errors.ServiceUnavailable("The bucket kept changing; retry")

    async def _fresh(self, bucket: Bucket) -> Bucket:
        """The bucket as it is now, if it is not the one we had; NoSuchBucket otherwise."""
        self.buckets.forget(bucket.name)
        fresh = await self.buckets.get(bucket.name)
        if fresh.id == bucket.id:
            raise errors.NoSuchBucket(BucketName=bucket.name)
        return fresh

    async def _collect(self, entries: list[dict[str, Any]]) -> None:
        segs = [seg for e in entries for seg in e.get("segs", [])]
        if segs:
            await self.gc.defer(segs)

    async def _drop_entry_data(self, entry: dict[str, Any], gc_keys: list[str]) -> None:
        try:
            await self.gc.remove_segments(entry["segs"])
            for gc_key in gc_keys:
                await self.gc.cancel(gc_key)
        except Exception:
            log.exception("removing the data of an uncommitted object")

    async def put(self, bucket: Bucket, key: bytes, pieces: AsyncIterator[bytes],
                  describe: Callable[[], dict[str, Any]],
                  precondition: Precondition | None = None) -> dict[str, Any]:
        """Store a whole object; `describe()` (called once the data is in and verified) gives
        the entry's other fields (etag, content type, metadata...)."""
        prefix = self.new_prefix(bucket)
        seg, gc_key = await self.write_segment(prefix, pieces)
        entry = {"size": seg[1], "mtime": time.time(), "segs": [seg] if seg[1] else []}
        try:
            entry.update(describe())
        except BaseException:
            await asyncio.shield(self._drop_entry_data(entry, [gc_key]))
            raise
        await self.commit(bucket, key, entry, [gc_key], precondition)
        return entry

    async def delete(self, bucket: Bucket, key: bytes, owner: str = "",
                     precondition: Precondition | None = None) -> dict[str, Any] | None:
        """Delete the current object: the entry removed, or (versioned bucket) the delete
        marker now on top."""
        for _ in range(3):
            try:
                change = await self.versions.delete(bucket, key, owner or bucket.owner,
                                                    precondition)
            except errors.NoSuchBucket:
                bucket = await self._fresh(bucket)
                continue
            await self._collect(change.garbage)
            return change.result
        raise errors.ServiceUnavailable("The bucket kept changing; retry")

    async def delete_version(self, bucket: Bucket, key: bytes, vid: str,
                             precondition: Precondition | None = None
                             ) -> dict[str, Any] | None:
        """Remove one version for good; the version removed (None: there was none)."""
        change = await self.versions.delete_version(bucket, key, vid, precondition)
        await self._collect(change.garbage)
        return change.result

    # --- reading --------------------------------------------------------------------------
    def _reads(self, entry: dict[str, Any], start: int, end: int
               ) -> Iterator[tuple[str, int, int]]:
        """(stripe object, offset, length) covering bytes start..end (inclusive)."""
        pos = 0
        for prefix, size, stripe in entry["segs"]:
            seg_lo, seg_hi = pos, pos + size - 1
            pos += size
            if seg_hi < start or seg_lo > end:
                continue
            lo, hi = max(start, seg_lo) - seg_lo, min(end, seg_hi) - seg_lo
            while lo <= hi:
                n, off = divmod(lo, stripe)
                length = min(stripe - off, hi - lo + 1, READ_PIECE)
                yield stripe_oid(prefix, n), off, length
                lo += length

    async def read(self, entry: dict[str, Any], start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes start..end of the object, READ_AHEAD pieces read ahead of the one being
        sent (small pieces: the first bytes leave early, reading overlaps sending)."""
        reads = self._reads(entry, start, end)

        async def fetch(oid: str, off: int, length: int) -> bytes:
            try:
                data = await self.data.read(oid, off, length)
            except NotFound:
                raise errors.NoSuchKey("The object's data is gone (overwritten and "
                                       "collected while being read)") from None
            if len(data) != length:
                raise errors.InternalError(f"stripe {oid} is shorter than its entry says")
            return data

        ahead: collections.deque[asyncio.Future[bytes]] = collections.deque()

        def refill() -> None:
            while len(ahead) < READ_AHEAD and (nxt := next(reads, None)) is not None:
                ahead.append(asyncio.ensure_future(fetch(*nxt)))

        refill()
        try:
            while ahead:
                data = await ahead.popleft()
                refill()
                yield data
        finally:
            for task in ahead:
                task.cancel()
            for task in ahead:
                with contextlib.suppress(BaseException):
                    await task
