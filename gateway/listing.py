"""Listing a sharded bucket index in key order: a merge of the shards' sorted omap pages, with
S3's prefix, marker, delimiter (common prefixes) and max-keys. Pure logic over a `fetch`
function, so it is tested without a cluster.

Nothing is scanned whole: each shard is read in pages from the marker on, and a common prefix,
once reported, is skipped in every shard by restarting after `prefix + 0xFF` (a byte that
never occurs in UTF-8, so it sorts after every key under that prefix).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Fetch = Callable[[int, bytes, bytes, int], Awaitable[tuple[list[tuple[bytes, bytes]], bool]]]
"""fetch(shard, after, prefix, max) -> (sorted (key, value) with key > after, more)."""

SKIP = b"\xff"


@dataclass
class Listing:
    entries: list[tuple[bytes, bytes]] = field(default_factory=list)
    prefixes: list[bytes] = field(default_factory=list)
    truncated: bool = False
    next_marker: bytes = b""  # the last key or common prefix returned


class _Shard:
    def __init__(self, shard: int, after: bytes) -> None:
        self.shard = shard
        self.after = after  # everything <= after is consumed or skipped
        self.buf: list[tuple[bytes, bytes]] = []
        self.pos = 0
        self.more = True

    async def head(self, fetch: Fetch, prefix: bytes, page: int) -> tuple[bytes, bytes] | None:
        while self.pos >= len(self.buf):
            if not self.more:
                return None
            self.buf, self.more = await fetch(self.shard, self.after, prefix, page)
            self.pos = 0
            if not self.buf:
                self.more = False
        return self.buf[self.pos]

    def take(self) -> None:
        self.after = self.buf[self.pos][0]
        self.pos += 1

    def skip_past(self, key: bytes) -> None:
        """Drop everything <= key."""
        if key <= self.after:
            return
        self.after = key
        while self.pos < len(self.buf) and self.buf[self.pos][0] <= key:
            self.pos += 1
        if self.pos >= len(self.buf) and self.more:
            self.buf, self.pos = [], 0  # refetch from the new `after`


def common_prefix(key: bytes, prefix: bytes, delimiter: bytes) -> bytes | None:
    if not delimiter:
        return None
    i = key.find(delimiter, len(prefix))
    return key[:i + len(delimiter)] if i >= 0 else None


def start_after(marker: bytes, prefix: bytes, delimiter: bytes) -> bytes:
    """Where listing resumes: after the marker, or after its whole common prefix (a marker
    inside a rolled-up prefix must not bring that prefix back)."""
    cp = common_prefix(marker, prefix, delimiter) if marker.startswith(prefix) else None
    return cp + SKIP if cp is not None else marker


async def list_index(fetch: Fetch, shards: int, *, prefix: bytes = b"", marker: bytes = b"",
                     delimiter: bytes = b"", max_keys: int = 1000) -> Listing:
    result = Listing()
    if max_keys <= 0:
        return result  # S3 answers max-keys=0 with nothing and IsTruncated false
    after = start_after(marker, prefix, delimiter)
    if prefix and after < prefix:
        after = b""  # keys with the prefix all sort after it; the fetch filters by prefix
    cursors = [_Shard(s, after) for s in range(shards)]
    page = min(max(max_keys, 1) + 1, 1000)
    # the first page of every shard at once: one round trip of latency, not one per shard;
    # keys spread evenly over the shards, so each gives about max_keys/shards to a page and
    # twice that (plus a margin) rarely needs a second read, where a full page per shard
    # would read `shards` times what is returned
    first = min(page, 2 * max_keys // shards + 16)
    await asyncio.gather(*(c.head(fetch, prefix, first) for c in cursors))
    count = 0
    while True:
        best: _Shard | None = None
        best_item: tuple[bytes, bytes] | None = None
        for c in cursors:
            item = await c.head(fetch, prefix, page)
            if item is not None and (best_item is None or item[0] < best_item[0]):
                best, best_item = c, item
        if best is None or best_item is None:
            return result
        if count >= max_keys:
            result.truncated = True
            return result
        key = best_item[0]
        cp = common_prefix(key, prefix, delimiter)
        if cp is not None:
            result.prefixes.append(cp)
            result.next_marker = cp
            for c in cursors:
                c.skip_past(cp + SKIP)
        else:
            result.entries.append(best_item)
            result.next_marker = key
            best.take()
        count += 1
