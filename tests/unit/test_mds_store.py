"""The MDS store's reads of directories merge what RADOS holds with journaled changes not yet
applied to it (an in-memory metadata pool stands in for RADOS here)."""

from __future__ import annotations

import asyncio

from mds import layout
from mds.store import Store
from rados_py.errors import NotFound
from rados_py.proto.loligo import mds_pb2, osd_pb2

DIR = 0x1000


class MemoryPool:
    """The omap calls the store makes, over dicts."""

    def __init__(self) -> None:
        self.omaps: dict[bytes, dict[bytes, bytes]] = {}

    async def omap_list(self, obj: bytes, after: bytes, max_items: int
                        ) -> tuple[list[tuple[bytes, bytes]], bool]:
        if obj not in self.omaps:
            raise NotFound(obj.decode())
        keys = sorted(k for k in self.omaps[obj] if k > after)
        return [(k, self.omaps[obj][k]) for k in keys[:max_items]], len(keys) > max_items


def _dentry(ino: int) -> bytes:
    return mds_pb2.Dentry(ino=ino, type=0o100000).SerializeToString()


def _mutation(sets: dict[bytes, int], rms: list[bytes]) -> mds_pb2.ObjMutation:
    return mds_pb2.ObjMutation(object=layout.dir_object(DIR), rm=rms, set=[
        osd_pb2.KeyValue(key=k, value=_dentry(v)) for k, v in sets.items()])


def test_pages_merge_unapplied_changes_and_skip_emptied_stretches() -> None:
    pool = MemoryPool()
    pool.omaps[layout.dir_object(DIR)] = {f"a{i:02}".encode(): _dentry(i) for i in range(10)}
    store = Store(pool, pool)  # type: ignore[arg-type]
    # journaled, not applied: a03..a07 removed, two names added
    store.record([_mutation({b"a035": 100, b"b": 101},
                            [f"a{i:02}".encode() for i in range(3, 8)])], [])

    async def listing(limit: int) -> list[bytes]:
        out, after, more = [], b"", True
        while more:
            page, more = await store.load_page(DIR, after, limit)
            assert len(page) <= limit and (page or not more)
            out += [name for name, _ in page]
            after = page[-1][0] if page else after
        return out

    expect = [b"a00", b"a01", b"a02", b"a035", b"a08", b"a09", b"b"]
    for limit in (1, 2, 3, 100):
        assert asyncio.run(listing(limit)) == expect
    assert not asyncio.run(store.is_empty(DIR))
    store.record([_mutation({}, expect)], [])
    assert asyncio.run(listing(2)) == [] and asyncio.run(store.is_empty(DIR))
