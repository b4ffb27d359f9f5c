"""The GC list: only what is due goes, page after page; stripes of a known size are removed
exactly, those of an upload cut short until two gaps in a row."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterable, Mapping

from gateway.gc import UNKNOWN, GarbageCollector
from rados_py.errors import NotFound


class FakeIoCtx:
    """The IoCtx calls the GC makes, in memory."""

    def __init__(self) -> None:
        self.objects: set[str] = set()
        self.omaps: dict[str, dict[bytes, bytes]] = {}
        self.removed: list[str] = []

    async def omap_set(self, name: str, items: Mapping[bytes | str, bytes]) -> int:
        omap = self.omaps.setdefault(name, {})
        for k, v in items.items():
            omap[k.encode() if isinstance(k, str) else k] = v
        return 1

    async def omap_rm(self, name: str, keys: Iterable[bytes | str]) -> int:
        for k in keys:
            self.omaps.get(name, {}).pop(k.encode() if isinstance(k, str) else k, None)
        return 1

    async def omap_list(self, name: str, after: bytes = b"", prefix: bytes = b"",
                        max_items: int = 1000) -> tuple[list[tuple[bytes, bytes]], bool]:
        if name not in self.omaps:
            raise NotFound(name)
        keys = sorted(self.omaps[name])
        i = bisect.bisect_right(keys, after)
        page = [(k, self.omaps[name][k]) for k in keys[i:i + max_items]]
        return page, i + max_items < len(keys)

    async def remove(self, name: str) -> None:
        if name not in self.objects:
            raise NotFound(name)
        self.objects.remove(name)
        self.removed.append(name)


def test_only_due_entries_go_and_in_pages() -> None:
    meta, data = FakeIoCtx(), FakeIoCtx()
    gc = GarbageCollector(meta, data, min_wait=10)  # type: ignore[arg-type]

    async def go() -> None:
        for i in range(250):
            data.objects |= {f"p{i}.0", f"p{i}.1"}
            await gc.defer([[f"p{i}", 5, 4]], wait=0)
        data.objects |= {"late.0"}
        await gc.defer([["late", 1, 4]])  # due in 10 s
        assert await gc.collect(limit=100) > 0
        while await gc.collect(limit=100):
            pass
        assert data.objects == {"late.0"}
        import time

        assert await gc.collect(now=time.time() + 11) == 1
        assert data.objects == set()
        assert all(not omap for omap in meta.omaps.values())
    asyncio.run(go())


def test_an_upload_cut_short_is_removed_until_two_gaps() -> None:
    meta, data = FakeIoCtx(), FakeIoCtx()
    gc = GarbageCollector(meta, data, min_wait=0)  # type: ignore[arg-type]
    data.objects |= {"u.0", "u.1", "u.3", "u.6"}  # u.2 failed while u.3 was in flight

    async def go() -> None:
        key = await gc.defer([["u", UNKNOWN, 4]], wait=0)
        assert key
        await gc.collect()
    asyncio.run(go())
    assert data.objects == {"u.6"}  # beyond two gaps: never written by one upload
    assert data.removed == ["u.0", "u.1", "u.3"]


def test_cancel_keeps_the_data() -> None:
    meta, data = FakeIoCtx(), FakeIoCtx()
    gc = GarbageCollector(meta, data, min_wait=0)  # type: ignore[arg-type]
    data.objects |= {"c.0"}

    async def go() -> None:
        key = await gc.defer([["c", 1, 4]], wait=0)
        await gc.cancel(key)
        assert await gc.collect() == 0
    asyncio.run(go())
    assert data.objects == {"c.0"}
