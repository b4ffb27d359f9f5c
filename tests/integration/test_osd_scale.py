"""10,000 small objects through the client library into a real cluster (1 monitor, 3 OSDs, pool
size 3), 64 requests in flight: every object is listed exactly once (paged listing, several
pages per PG) and every one reads back with its own content. The figures (objects/s for each
phase) are printed; run with -s to see them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator

import pytest

from cluster import launcher
from rados_py.rados import Rados
from tests.integration import running_cluster

COUNT = 10_000
IN_FLIGHT = 64
POOL = "scale"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launcher.LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("scale") / "cluster", osds=3,
                         pool=POOL) as c:
        yield c


def name_of(i: int) -> bytes:
    # mixed shapes so placement spreads them and byte order differs from numeric order
    return b"obj/%d/%x" % (i % 97, i)


def content_of(i: int) -> bytes:
    return b"content of object %d|" % i * (1 + i % 5)


async def in_flight(items: Iterable[int], depth: int,
                    one: Callable[[int], Awaitable[None]]) -> None:
    """Run `one(i)` for every item with at most `depth` running at a time."""
    it = iter(items)

    async def worker() -> None:
        for i in it:  # one shared iterator: each item is taken by exactly one worker
            await one(i)

    await asyncio.gather(*(worker() for _ in range(depth)))


def test_ten_thousand_small_objects(cluster: launcher.LocalCluster) -> None:
    async def go() -> dict[str, float]:
        figures: dict[str, float] = {}
        async with Rados(cluster.config) as r:
            io = await r.open_ioctx(POOL)
            pool = r.osdmap.pool(io.pool_id)
            assert pool.size == 3

            async def write(i: int) -> None:
                await io.write_full(name_of(i), content_of(i))

            t0 = time.monotonic()
            await in_flight(range(COUNT), IN_FLIGHT, write)
            figures["write"] = time.monotonic() - t0

            t0 = time.monotonic()
            # a page far smaller than a PG's share (~COUNT / pg_num), so paging is exercised
            listed = Counter([name async for _, name in io.list_objects(page=97)])
            figures["list"] = time.monotonic() - t0
            twice = [n for n, k in listed.items() if k > 1]
            assert not twice, f"listed more than once: {twice[:10]}"
            expected = {name_of(i) for i in range(COUNT)}
            assert set(listed) == expected, (
                f"missing {sorted(expected - set(listed))[:10]}, "
                f"unexpected {sorted(set(listed) - expected)[:10]}")

            wrong: list[bytes] = []

            async def read(i: int) -> None:
                if await io.read(name_of(i)) != content_of(i):
                    wrong.append(name_of(i))

            t0 = time.monotonic()
            await in_flight(range(COUNT), IN_FLIGHT, read)
            figures["read"] = time.monotonic() - t0
            assert not wrong, f"{len(wrong)} objects read back wrong, e.g. {wrong[:5]}"
        return figures

    figures = asyncio.run(go())
    print(f"\n{COUNT} objects, {IN_FLIGHT} in flight: "
          + ", ".join(f"{phase} {secs:.1f} s ({COUNT / secs:.0f}/s)"
                      for phase, secs in figures.items()))
