"""ListObjectVersions over a bucket index: every version of every key, newest first per key.

Versions live in two places of a shard (versioning.py): the version block (0x80 "v" key 0x00
suffix) holds everything written while versioning was on, and a plain entry without a version
id is an object written while it never was. S3 lists the latter as the version "null", so a
listing merges both: a plain entry without a version id is shown as the virtual block key
`0x80 "v" key 0x00`, which sorts before every block entry of that key - where it belongs,
since such an entry is always its key's newest version (writing anything over it in a
versioned bucket first copies it into the block).
"""

from __future__ import annotations

import json

from gateway import errors
from gateway.bucket_stats import RESERVED
from gateway.buckets import Bucket, BucketStore
from gateway.listing import Listing, list_index
from gateway.versioning import BLOCK, NULL, split_version_key, version_key, vid_of
from rados_py.errors import NotFound

Page = tuple[list[tuple[bytes, bytes]], bool]


def virtual_key(key: bytes) -> bytes:
    """Where a plain (never versioned) entry sorts among the block's keys."""
    return BLOCK + key + b"\0"


def split_key(raw: bytes) -> tuple[bytes, str]:
    """(key, version id) of a listed version (a virtual key is the null version)."""
    key, suffix = split_version_key(raw)
    return key, vid_of(suffix) or NULL


def plain_after(after: bytes) -> bytes:
    """The plain-key cursor equivalent to the block cursor `after`: a plain key K is listed
    when BLOCK + K + 0x00 > after."""
    rest = after[len(BLOCK):] if after.startswith(BLOCK) else b""
    return rest.split(b"\0", 1)[0] if b"\0" in rest else rest


def merge(block: Page, plain: Page) -> Page:
    """Two sorted pages as one; cut where the shorter truncated stream stops, so nothing of
    the other stream after that point is listed before what the cut one still holds."""
    items = sorted(block[0] + plain[0])
    more = block[1] or plain[1]
    limits = [page[0][-1][0] for page in (block, plain) if page[1] and page[0]]
    if limits:
        items = [kv for kv in items if kv[0] <= min(limits)]
    return items, more


class VersionListing:
    def __init__(self, buckets: BucketStore) -> None:
        self.index = buckets.index

    async def _page(self, oid: str, after: bytes, prefix: bytes, count: int) -> Page:
        try:
            return await self.index.omap_list(oid, after=after, prefix=prefix,
                                              max_items=count)
        except NotFound:
            raise errors.NoSuchBucket() from None

    async def _plain(self, oid: str, after: bytes, prefix: bytes, count: int) -> Page:
        """Plain entries written without a version id, as virtual block keys."""
        while True:
            page, more = await self._page(oid, after, prefix, count)
            kept = [(virtual_key(k), v) for k, v in page
                    if not k.startswith(RESERVED) and "vid" not in json.loads(v)]
            if kept or not more or not page:
                return kept, more
            after = page[-1][0]
            if after.startswith(RESERVED):  # the version block and stats: jump over them
                after = max(after, RESERVED + b"\xff")

    async def list(self, bucket: Bucket, *, prefix: bytes, key_marker: bytes,
                   vid_marker: str, delimiter: bytes, max_keys: int) -> Listing:
        marker = b""
        if key_marker:
            if vid_marker and vid_marker != NULL:
                marker = version_key(key_marker, vid_marker)
            elif vid_marker == NULL:
                marker = await self._null_marker(bucket, key_marker)
            else:
                marker = BLOCK + key_marker + b"\0\xff"

        async def fetch(shard: int, after: bytes, pfx: bytes, count: int) -> Page:
            oid = bucket.shard_oid(shard)
            block = await self._page(oid, after, pfx, count)
            plain = await self._plain(oid, plain_after(after), pfx[len(BLOCK):], count)
            return merge(block, plain)

        try:
            return await list_index(fetch, bucket.shards, prefix=BLOCK + prefix,
                                    marker=marker, delimiter=delimiter, max_keys=max_keys)
        except errors.NoSuchBucket:
            raise errors.NoSuchBucket(BucketName=bucket.name) from None

    async def _null_marker(self, bucket: Bucket, key: bytes) -> bytes:
        """The cursor just after the key's null version (plain or in the block)."""
        oid = bucket.shard_oid(bucket.shard_of(key))
        page, _ = await self._page(oid, b"", BLOCK + key + b"\0", 1000)
        for k, v in page:
            if k.endswith(NULL.encode()) and json.loads(v).get("vid") == NULL:
                return k
        return virtual_key(key)
