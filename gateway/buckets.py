"""Buckets and their sharded index, API-neutral: S3 buckets and Swift containers are the same
thing here (an S3 user's buckets are the containers of its Swift account).

    meta pool   bucket.<name>          the bucket as JSON: id, owner, shard count, versioning, acl
                buckets.<uid>          omap name -> creation time: the user's buckets, in order
    index pool  idx.<bucket id>.<n>    omap key -> object entry (JSON), n = crc32(key) % shards

A bucket name is claimed by an exclusive create of `bucket.<name>`, so one of two concurrent
creators wins. The index shards are named by the bucket's id (new at each creation), so a
bucket deleted and created again never sees the old index.

Deleting a bucket marks each shard `deleting` in the same atomic op that reads whether the shard
is empty; every index update is guarded by that mark, so an object written concurrently either
lands before (and the delete is refused: BucketNotEmpty) or fails with NoSuchBucket.

Every change of an index entry goes through versioning.py's guarded read-decide-write, which
also keeps the shard's object and byte counts (bucket_stats.py) in the same op.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import re
import time
import uuid
import zlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from gateway import errors
from gateway.bucket_stats import RESERVED, STATS, VERSION_BLOCK, Usage, usage
from gateway.listing import Listing, list_index
from gateway.pools import Pools
from rados_py.errors import AlreadyExists, NotFound
from rados_py.rados import ObjectOp

_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
DELETING = "loligo.deleting"
VERSIONING = "loligo.versioning"  # on every shard once versioning is on: Enabled/Suspended
MAX_KEY_BYTES = 1024
CACHE_TTL = 10.0  # seconds a bucket entry read for an owner's GET may be reused


@dataclass
class Bucket:
    name: str
    id: str
    owner: str
    created: float
    shards: int
    versioning: str = ""  # "", "Enabled" or "Suspended"
    acl: str = "private"  # canned ACL: private, public-read, public-read-write
    tags: dict[str, str] = field(default_factory=dict)
    swift: dict[str, Any] = field(default_factory=dict)  # Swift's container metadata and ACLs

    def shard_oid(self, n: int) -> str:
        return f"idx.{self.id}.{n}"

    def shard_of(self, key: bytes) -> int:
        return zlib.crc32(key) % self.shards


def check_bucket_name(name: str) -> str:
    """S3's rules for new buckets: 3-63 of a-z 0-9 . -, no '..', not an IP address."""
    if (not _NAME.fullmatch(name) or ".." in name or ".-" in name or "-." in name
            or _is_ip(name)):
        raise errors.InvalidBucketName(BucketName=name)
    return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def key_bytes(key: str) -> bytes:
    raw = key.encode("utf-8", "surrogateescape")
    if not raw:
        raise errors.InvalidArgument("An object key must not be empty")
    if len(raw) > MAX_KEY_BYTES:
        raise errors.KeyTooLongError()
    return raw


class BucketStore:
    def __init__(self, pools: Pools, index_shards: int = 11) -> None:
        self.meta = pools.meta
        self.index = pools.index
        self.index_shards = index_shards
        self._cache: dict[str, tuple[float, Bucket]] = {}

    # --- buckets --------------------------------------------------------------------------
    async def get(self, name: str, *, cached: bool = False) -> Bucket:
        """The bucket entry. `cached` may answer from a recent read: only for an owner's reads,
        where what can change (ACL, versioning) does not matter; a bucket deleted meanwhile
        shows as NoSuchBucket from its index (its shards are gone), and `forget` then."""
        now = time.monotonic()
        hit = self._cache.get(name) if cached else None
        if hit is not None and now - hit[0] < CACHE_TTL:
            return replace(hit[1])
        try:
            raw = await self.meta.read(f"bucket.{name}")
        except NotFound:
            self._cache.pop(name, None)
            raise errors.NoSuchBucket(BucketName=name) from None
        bucket = Bucket(**json.loads(raw))
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[name] = (now, replace(bucket))
        return bucket

    def forget(self, name: str) -> None:
        self._cache.pop(name, None)

    async def save(self, bucket: Bucket) -> None:
        await self.meta.operate(f"bucket.{bucket.name}", ObjectOp().assert_exists().write_full(
            json.dumps(asdict(bucket)).encode()))
        self.forget(bucket.name)

    async def create(self, name: str, owner: str, acl: str = "private") -> Bucket:
        check_bucket_name(name)
        return await self.claim(name, owner, acl)

    async def claim(self, name: str, owner: str, acl: str = "private") -> Bucket:
        """Create a bucket whose name the caller checked (Swift's container names are
        looser than S3's)."""
        bucket = Bucket(name, uuid.uuid4().hex[:16], owner, time.time(), self.index_shards,
                        acl=acl)
        # the shards first: a bucket entry never points at a missing index
        await asyncio.gather(*(self.index.operate(bucket.shard_oid(n), ObjectOp().create(False)
                                                  .omap_set({STATS: Usage().encode()}))
                               for n in range(bucket.shards)))
        try:
            await self.meta.operate(f"bucket.{name}", ObjectOp().create(True).write_full(
                json.dumps(asdict(bucket)).encode()))
        except AlreadyExists:
            await self._remove_shards(bucket)
            existing = await self.get(name)
            if existing.owner == owner:
                raise errors.BucketAlreadyOwnedByYou(BucketName=name) from None
            raise errors.BucketAlreadyExists(BucketName=name) from None
        await self.meta.omap_set(f"buckets.{owner}", {name: repr(bucket.created).encode()})
        return bucket

    async def _remove_shards(self, bucket: Bucket) -> None:
        async def rm(n: int) -> None:
            with contextlib.suppress(NotFound):
                await self.index.remove(bucket.shard_oid(n))
        await asyncio.gather(*(rm(n) for n in range(bucket.shards)))

    async def delete(self, bucket: Bucket) -> None:
        """Remove an empty bucket; BucketNotEmpty otherwise."""
        marked = []
        try:
            for n in range(bucket.shards):
                # an object (keys below RESERVED) or a version (the version block) makes it
                # not empty; the counts and the keys' generation stamps do not
                op = (ObjectOp().set_xattr(DELETING, b"1").omap_list(max_items=1)
                      .omap_list(prefix=VERSION_BLOCK, max_items=1))
                try:
                    results = await self.index.operate(bucket.shard_oid(n), op)
                except NotFound:
                    continue  # a shard already gone: an earlier delete got this far
                marked.append(n)
                if (any(not p.key.startswith(RESERVED) for p in results[1].pairs)
                        or results[2].pairs):
                    raise errors.BucketNotEmpty(BucketName=bucket.name)
        except BaseException:
            await asyncio.gather(*(self.index.set_xattr(bucket.shard_oid(n), DELETING, b"")
                                   for n in marked), return_exceptions=True)
            raise
        self.forget(bucket.name)
        with contextlib.suppress(NotFound):
            await self.meta.remove(f"bucket.{bucket.name}")
        await self.meta.omap_rm(f"buckets.{bucket.owner}", [bucket.name])
        await self._remove_shards(bucket)

    async def list_for(self, owner: str) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        after = b""
        while True:
            try:
                page, more = await self.meta.omap_list(f"buckets.{owner}", after=after)
            except NotFound:
                return out
            out += [(k.decode(), float(v.decode() or 0)) for k, v in page]
            if not more or not page:
                return out
            after = page[-1][0]

    # --- the index ------------------------------------------------------------------------
    async def entry(self, bucket: Bucket, key: bytes) -> dict[str, Any] | None:
        try:
            found = await self.index.omap_get(bucket.shard_oid(bucket.shard_of(key)), [key])
        except NotFound:
            raise errors.NoSuchBucket(BucketName=bucket.name) from None
        raw = found.get(key)
        return json.loads(raw) if raw is not None else None

    async def mark_versioning(self, bucket: Bucket, status: str) -> None:
        """Put the versioning status on every shard, before the bucket entry says so: every
        index change reads the mark in its guarded snapshot, whatever bucket entry its
        gateway holds."""
        async def mark(n: int) -> None:
            try:
                await self.index.operate(bucket.shard_oid(n), ObjectOp().assert_exists()
                                         .set_xattr(VERSIONING, status.encode()))
            except NotFound:
                raise errors.NoSuchBucket(BucketName=bucket.name) from None
        await asyncio.gather(*(mark(n) for n in range(bucket.shards)))

    async def list(self, bucket: Bucket, *, prefix: bytes = b"", marker: bytes = b"",
                   delimiter: bytes = b"", max_keys: int = 1000) -> Listing:
        async def fetch(shard: int, after: bytes, pfx: bytes, count: int
                        ) -> tuple[list[tuple[bytes, bytes]], bool]:
            while True:
                try:
                    page, more = await self.index.omap_list(bucket.shard_oid(shard),
                                                            after=after, prefix=pfx,
                                                            max_items=count)
                except NotFound:
                    raise errors.NoSuchBucket(BucketName=bucket.name) from None
                # the version block (versioning.py) is not part of a plain listing
                kept = [kv for kv in page if not kv[0].startswith(RESERVED)]
                if kept or not more:
                    return kept, more
                after = max(after, page[-1][0], RESERVED + b"\xff")

        return await list_index(fetch, bucket.shards, prefix=prefix, marker=marker,
                                delimiter=delimiter, max_keys=max_keys)

    async def usage(self, bucket: Bucket) -> Usage:
        """(objects, bytes) of the bucket's current objects: one read per index shard."""
        try:
            return await usage(self.index, [bucket.shard_oid(n) for n in range(bucket.shards)])
        except NotFound:
            raise errors.NoSuchBucket(BucketName=bucket.name) from None

    async def is_empty(self, bucket: Bucket) -> bool:
        listing = await self.list(bucket, max_keys=1)
        return not listing.entries
