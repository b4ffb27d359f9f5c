"""The sharded index listing against a plain sorted list: every combination of prefix,
delimiter, marker and page size gives what one big sorted index would, page after page, and no
shard is read whole."""

from __future__ import annotations

import asyncio
import bisect
import random
import zlib

import pytest

from gateway.listing import list_index


class Shards:
    def __init__(self, keys: list[bytes], n: int) -> None:
        self.n = n
        self.shards: list[list[bytes]] = [[] for _ in range(n)]
        for k in keys:
            self.shards[zlib.crc32(k) % n].append(k)
        for s in self.shards:
            s.sort()
        self.fetched = 0

    async def fetch(self, shard: int, after: bytes, prefix: bytes, count: int
                    ) -> tuple[list[tuple[bytes, bytes]], bool]:
        keys = self.shards[shard]
        i = bisect.bisect_right(keys, after)
        out = []
        while i < len(keys) and len(out) < count:
            if keys[i].startswith(prefix):
                out.append((keys[i], b"v"))
            elif keys[i] > prefix:
                break
            i += 1
        more = i < len(keys) and keys[i].startswith(prefix)
        self.fetched += len(out)
        return out, more


def reference(keys: list[bytes], prefix: bytes, marker: bytes, delimiter: bytes,
              max_keys: int) -> tuple[list[bytes], list[bytes], bool]:
    items: list[tuple[bytes, bool]] = []  # (key or common prefix, is a prefix)
    for k in sorted(keys):
        if not k.startswith(prefix) or k <= marker:
            continue
        i = k.find(delimiter, len(prefix)) if delimiter else -1
        if i >= 0:
            cp = k[:i + len(delimiter)]
            if not marker.startswith(cp) and (not items or items[-1] != (cp, True)):
                items.append((cp, True))
        else:
            items.append((k, False))
    page = items[:max_keys]
    return ([v for v, p in page if not p], [v for v, p in page if p], len(items) > max_keys)


def names(rng: random.Random, count: int) -> list[bytes]:
    parts = ["a", "b", "photos", "2024", "x y", "é", "..", ""]
    out = set()
    while len(out) < count:
        out.add("/".join(rng.choice(parts) for _ in range(rng.randint(1, 4))).encode() or b"z")
    return sorted(out)


@pytest.mark.parametrize("seed", range(30))
def test_matches_one_sorted_index(seed: int) -> None:
    rng = random.Random(seed)
    keys = names(rng, rng.randint(0, 300))
    shards = Shards(keys, rng.choice([1, 3, 11]))
    prefix = rng.choice([b"", b"a", b"a/", b"photos/", b"zz"])
    delimiter = rng.choice([b"", b"/", b"/"])
    max_keys = rng.choice([1, 2, 7, 1000])
    marker = b""
    for _ in range(400):  # pages until the end (bounded)
        got = asyncio.run(list_index(shards.fetch, shards.n, prefix=prefix, marker=marker,
                                     delimiter=delimiter, max_keys=max_keys))
        want = reference(keys, prefix, marker, delimiter, max_keys)
        assert ([k for k, _ in got.entries], got.prefixes, got.truncated) == want, (
            seed, marker)
        if not got.truncated:
            break
        marker = got.next_marker
    else:
        raise AssertionError("listing did not end")


def test_a_page_reads_about_a_page_not_the_bucket() -> None:
    keys = [f"k{i:06d}".encode() for i in range(20000)]
    shards = Shards(keys, 11)
    got = asyncio.run(list_index(shards.fetch, 11, marker=b"k010000", max_keys=100))
    assert [k for k, _ in got.entries] == keys[10001:10101] and got.truncated
    assert shards.fetched <= 11 * 101


def test_common_prefixes_are_skipped_not_scanned() -> None:
    keys = [f"dir{d}/{i:05d}".encode() for d in range(3) for i in range(5000)]
    shards = Shards(keys, 4)
    got = asyncio.run(list_index(shards.fetch, 4, delimiter=b"/", max_keys=1000))
    assert got.prefixes == [b"dir0/", b"dir1/", b"dir2/"] and not got.truncated
    assert shards.fetched < 4 * 1001 * 3 + 10


def test_max_keys_zero() -> None:
    shards = Shards([b"a"], 2)
    got = asyncio.run(list_index(shards.fetch, 2, max_keys=0))
    assert not got.entries and not got.truncated
