"""Conformance suite of the OSD object store: every test runs against MemoryStore and DurableStore.

A few tests are durable-only (64 MiB objects, corrupting files on disk, fault points, reopen);
`test_random_ops_match_memory` drives both backends with the same seeded stream of ops across
block boundaries and compares everything they hold.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from osd.objectstore import (
    BLOCK_SIZE,
    MAX_NAME,
    AlreadyExists,
    ChecksumError,
    DurableStore,
    InvalidArgument,
    MemoryStore,
    NotFound,
    ObjectStore,
    StoreFull,
    Transaction,
)

C = "1.1f"
ODD_NAMES = [b"/", b"..", b"../../etc/passwd", b"a\x00b", b"\xff\xfe\x00", "ünï/cødé",
             b"x" * MAX_NAME, b"\n", b" "]


class Faults:
    """A fault hook: raise `exc` the next `times` times point `point` is hit."""

    def __init__(self) -> None:
        self.armed: dict[str, tuple[BaseException, int]] = {}
        self.hits: dict[str, int] = {}

    def arm(self, point: str, exc: BaseException, times: int = 1) -> None:
        self.armed[point] = (exc, times)

    def __call__(self, point: str) -> None:
        self.hits[point] = self.hits.get(point, 0) + 1
        if point in self.armed:
            exc, times = self.armed[point]
            if times <= 1:
                del self.armed[point]
            else:
                self.armed[point] = (exc, times - 1)
            raise exc


@pytest_asyncio.fixture(params=["memory", "durable"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    s: ObjectStore
    if request.param == "memory":
        s = MemoryStore()
    else:
        s = await DurableStore.open(tmp_path / "osd", faults=Faults())
    await s.submit(Transaction().create_collection(C))
    yield s
    await s.close()


@pytest_asyncio.fixture
async def durable(tmp_path: Path) -> AsyncIterator[DurableStore]:
    s = await DurableStore.open(tmp_path / "osd", faults=Faults())
    await s.submit(Transaction().create_collection(C))
    yield s
    await s.close()


async def dump(store: ObjectStore) -> dict:
    """Everything a store holds except mtimes, through the public API (paged reads)."""
    out: dict = {}
    for coll in await store.list_collections():
        objs: dict = {}
        after: bytes = b""
        while True:
            names, more = await store.list_objects(coll, after=after, max_items=3)
            for n in names:
                st = await store.stat(coll, n)
                omap, oafter = [], b""
                while True:
                    page, omore = await store.omap_list(coll, n, after=oafter, max_items=2)
                    omap += page
                    if not omore:
                        break
                    oafter = page[-1][0]
                objs[n] = (st.size, st.version, bytes(await store.read(coll, n)),
                           await store.getxattrs(coll, n), omap,
                           await store.omap_get_header(coll, n))
            if not more:
                break
            after = names[-1]
        out[coll] = (objs, await store.log_read(coll))
    return out


def payload(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


# -- collections and basics --------------------------------------------------------------------

@pytest.mark.asyncio
async def test_collections(store: ObjectStore) -> None:
    await store.submit(Transaction().create_collection("2.0").create_collection("1.0"))
    assert await store.list_collections() == ["1.0", "1.1f", "2.0"]
    with pytest.raises(AlreadyExists):
        await store.submit(Transaction().create_collection("2.0"))
    await store.submit(Transaction().write_full("2.0", "o", b"data").log_append("2.0", 1, b"e"))
    await store.submit(Transaction().remove_collection("2.0"))
    assert await store.list_collections() == ["1.0", "1.1f"]
    for call in (store.list_objects("2.0"), store.stat("2.0", "o"), store.log_read("2.0")):
        with pytest.raises(NotFound):
            await call
    with pytest.raises(NotFound):
        await store.submit(Transaction().touch("nope", "o"))
    with pytest.raises(NotFound):
        await store.submit(Transaction().remove_collection("nope"))


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [0, 4096, 4 << 20])
async def test_write_full_read_stat(store: ObjectStore, size: int) -> None:
    data = payload(size)
    await store.submit(Transaction().write_full(C, "obj", data).set_version(C, "obj", 7))
    assert await store.read(C, "obj") == data
    st = await store.stat(C, "obj")
    assert (st.size, st.version) == (size, 7) and st.mtime > 0
    assert await store.read(C, "obj", size // 3, 5000) == data[size // 3:size // 3 + 5000]
    assert await store.read(C, "obj", size + 10, 10) == b""
    # write_full replaces data but keeps xattrs
    await store.submit(Transaction().setxattr(C, "obj", "a", b"1").write_full(C, "obj", b"xy"))
    assert await store.read(C, "obj") == b"xy"
    assert await store.getxattr(C, "obj", "a") == b"1"


@pytest.mark.asyncio
async def test_offsets_holes_append_truncate_zero(store: ObjectStore) -> None:
    model = bytearray()
    await store.submit(Transaction().write(C, "o", 5000, b"abc"))
    model[:] = bytes(5000) + b"abc"
    assert await store.read(C, "o") == model                      # hole reads as zeros
    off = BLOCK_SIZE * 2 + 10                                      # a hole spanning blocks
    await store.submit(Transaction().write(C, "o", off, b"far").append(C, "o", b"tail"))
    model += bytes(off - len(model)) + b"far" + b"tail"
    assert await store.read(C, "o") == model
    big = payload(BLOCK_SIZE + 777)
    await store.submit(Transaction().write(C, "o", BLOCK_SIZE - 100, big))
    model[BLOCK_SIZE - 100:BLOCK_SIZE - 100 + len(big)] = big
    assert await store.read(C, "o") == model
    await store.submit(Transaction().zero(C, "o", 4000, BLOCK_SIZE + 50)
                       .zero(C, "o", len(model) - 2, 1000))
    model[4000:4000 + BLOCK_SIZE + 50] = bytes(BLOCK_SIZE + 50)
    model[-2:] = b"\0\0"
    assert (await store.stat(C, "o")).size == len(model)           # zero never grows
    assert await store.read(C, "o") == model
    await store.submit(Transaction().truncate(C, "o", BLOCK_SIZE + 3))
    del model[BLOCK_SIZE + 3:]
    assert await store.read(C, "o") == model
    await store.submit(Transaction().truncate(C, "o", BLOCK_SIZE * 3))
    model += bytes(BLOCK_SIZE * 3 - len(model))                    # growth reads as zeros
    assert await store.read(C, "o") == model
    await store.submit(Transaction().truncate(C, "o", 0).append(C, "o", b"new"))
    assert await store.read(C, "o") == b"new"
    with pytest.raises(NotFound):
        await store.submit(Transaction().zero(C, "missing", 0, 10))


@pytest.mark.asyncio
async def test_random_ops_match_memory(store: ObjectStore) -> None:
    """A seeded stream of data ops across block boundaries gives the model's bytes."""
    rng = random.Random(42)
    model: dict[bytes, bytearray] = {}
    names = [b"a", b"b", b"c"]
    for _ in range(120):
        name = rng.choice(names)
        buf = model.setdefault(name, bytearray())
        kind = rng.choice(["write", "write", "append", "truncate", "zero", "write_full"])
        off = rng.randrange(0, 3 * BLOCK_SIZE)
        n = rng.choice([1, 100, 4096, 70_000, BLOCK_SIZE, BLOCK_SIZE + 5])
        data = rng.randbytes(n)
        txn = Transaction().touch(C, name)
        if kind == "write":
            txn.write(C, name, off, data)
            buf.extend(bytes(max(0, off - len(buf))))
            buf[off:off + n] = data
        elif kind == "append":
            txn.append(C, name, data)
            buf += data
        elif kind == "truncate":
            txn.truncate(C, name, off)
            del buf[off:]
            buf.extend(bytes(off - len(buf)))
        elif kind == "zero":
            txn.zero(C, name, off, n)
            end = min(off + n, len(buf))
            if off < end:
                buf[off:end] = bytes(end - off)
        else:
            txn.write_full(C, name, data[: rng.randrange(n + 1)])
            buf[:] = data[: len(txn.ops[-1].data)]
        await store.submit(txn)
        got = await store.read(C, name)
        assert got == buf, f"{kind} at {off} len {n}"


# -- names and validation ----------------------------------------------------------------------

@pytest.mark.asyncio
async def test_odd_names_are_data(store: ObjectStore, tmp_path: Path) -> None:
    for i, name in enumerate(ODD_NAMES):
        key = name.encode() if isinstance(name, str) else name
        await store.submit(Transaction().write_full(C, name, b"v%d" % i)
                           .setxattr(C, name, name, b"x").omap_set(C, name, {name: key}))
    for i, name in enumerate(ODD_NAMES):
        key = name.encode() if isinstance(name, str) else name
        assert await store.read(C, name) == b"v%d" % i
        assert await store.getxattrs(C, name) == {key: b"x"}
        assert await store.omap_get(C, name, [name]) == {key: key}
    listed, more = await store.list_objects(C)
    assert not more
    assert listed == sorted(n.encode() if isinstance(n, str) else n for n in ODD_NAMES)
    for path in tmp_path.rglob("*"):          # nothing named after an object on disk
        assert path.name in ("osd", "data", "LOCK", "meta.db", "meta.db-wal", "meta.db-shm") or all(
            ch in "0123456789abcdef" for ch in path.name), path


@pytest.mark.asyncio
async def test_invalid_arguments(store: ObjectStore) -> None:
    bad = [
        lambda: Transaction().touch(C, b"x" * (MAX_NAME + 1)),
        lambda: Transaction().touch(C, b""),
        lambda: Transaction().touch(C, 5),
        lambda: Transaction().write(C, "o", -1, b"x"),
        lambda: Transaction().write(C, "o", 0, "not bytes"),
        lambda: Transaction().write(C, "o", 1 << 40, b"x"),
        lambda: Transaction().truncate(C, "o", -5),
        lambda: Transaction().touch("", "o"),
        lambda: Transaction().touch("a\nb", "o"),
        lambda: Transaction().touch("c" * 200, "o"),
        lambda: Transaction().setxattr(C, "o", "k", bytes(70_000)),
        lambda: Transaction().set_version(C, "o", -1),
        lambda: Transaction().log_append(C, 0, b""),
    ]
    for make in bad:
        with pytest.raises(InvalidArgument):
            make()
    with pytest.raises(InvalidArgument):
        await store.submit("not a transaction")  # type: ignore[arg-type]
    await store.submit(Transaction().touch(C, "o"))
    with pytest.raises(InvalidArgument):
        await store.read(C, "o", -1)
    with pytest.raises(InvalidArgument):
        await store.list_objects(C, max_items=0)
    with pytest.raises(NotFound):
        await store.read(C, "missing")


# -- metadata ----------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_xattrs(store: ObjectStore) -> None:
    await store.submit(Transaction().setxattr(C, "o", "b", b"2").setxattr(C, "o", b"a\0", b"1"))
    assert await store.getxattrs(C, "o") == {b"a\0": b"1", b"b": b"2"}
    assert await store.getxattr(C, "o", "b") == b"2"
    assert (await store.stat(C, "o")).size == 0                    # setxattr created it
    await store.submit(Transaction().rmxattr(C, "o", "b"))
    with pytest.raises(NotFound):
        await store.getxattr(C, "o", "b")
    with pytest.raises(NotFound):
        await store.submit(Transaction().rmxattr(C, "o", "b"))


@pytest.mark.asyncio
async def test_omap(store: ObjectStore) -> None:
    items = {b"k%03d" % i: b"v%d" % i for i in range(50)}
    items[b"other"] = b"o"
    await store.submit(Transaction().omap_set(C, "o", items).omap_set_header(C, "o", b"hdr"))
    assert await store.omap_get_header(C, "o") == b"hdr"
    assert await store.omap_get(C, "o", ["k001", "zzz", b"other"]) == {
        b"k001": b"v1", b"other": b"o"}
    got, after = [], b""
    while True:
        page, more = await store.omap_list(C, "o", after=after, prefix=b"k0", max_items=7)
        got += page
        if not more:
            break
        after = page[-1][0]
    assert got == sorted((k, v) for k, v in items.items() if k.startswith(b"k0"))
    assert (await store.omap_list(C, "o", after=b"k048"))[0] == [
        (b"k049", b"v49"), (b"other", b"o")]
    await store.submit(Transaction().omap_rm_keys(C, "o", [b"k000", b"absent"]))
    assert b"k000" not in dict((await store.omap_list(C, "o"))[0])
    await store.submit(Transaction().omap_clear(C, "o"))
    assert await store.omap_list(C, "o") == ([], False)
    assert await store.omap_get_header(C, "o") == b"hdr"


@pytest.mark.asyncio
async def test_list_objects_paged_stable(store: ObjectStore) -> None:
    names = [b"obj-%d" % i for i in range(103)] + [b"\x00", b"\xff"]
    txn = Transaction()
    for n in names:
        txn.touch(C, n)
    await store.submit(txn)
    got, after = [], b""
    while True:
        page, more = await store.list_objects(C, after=after, max_items=10)
        got += page
        if not more:
            break
        after = page[-1]
    assert got == sorted(names)
    await store.submit(Transaction().remove(C, b"obj-5"))
    assert b"obj-5" not in (await store.list_objects(C, max_items=1000))[0]
    with pytest.raises(NotFound):
        await store.submit(Transaction().remove(C, b"obj-5"))


@pytest.mark.asyncio
async def test_inventory_and_collection_stats(store: ObjectStore) -> None:
    await store.submit(Transaction().write_full(C, "a", b"12345").set_version(C, "a", 7)
                       .touch(C, "b").write(C, "c", 10, b"xy"))
    assert await store.list_versions(C, max_items=2) == ([(b"a", 7, 5), (b"b", 0, 0)], True)
    assert await store.list_versions(C, after=b"b") == ([(b"c", 0, 12)], False)
    assert await store.coll_stats(C) == (3, 17)


@pytest.mark.asyncio
async def test_pg_log(store: ObjectStore) -> None:
    txn = Transaction()
    for seq in range(1, 11):
        txn.log_append(C, seq, b"entry%d" % seq)
    await store.submit(txn)
    assert await store.log_read(C, after=3, max_items=2) == [(4, b"entry4"), (5, b"entry5")]
    await store.submit(Transaction().log_trim(C, 6).log_append(C, 11, b"e11"))
    assert [s for s, _ in await store.log_read(C)] == [7, 8, 9, 10, 11]
    with pytest.raises(InvalidArgument):
        await store.submit(Transaction().log_append(C, 11, b"dup"))
    # a divergent tail is rolled back, then the log continues from the common point
    await store.submit(Transaction().log_rollback(C, 8).log_append(C, 9, b"new9"))
    assert await store.log_read(C) == [(7, b"entry7"), (8, b"entry8"), (9, b"new9")]


# -- atomicity, checksums, faults --------------------------------------------------------------

@pytest.mark.asyncio
async def test_failed_transaction_leaves_nothing(store: ObjectStore) -> None:
    await store.submit(Transaction().write_full(C, "keep", b"old").omap_set(C, "keep", {"k": b"1"}))
    before = await dump(store)
    txn = (Transaction().write_full(C, "keep", payload(3 * BLOCK_SIZE))
           .write(C, "new", 0, payload(2 * BLOCK_SIZE)).setxattr(C, "new", "x", b"y")
           .omap_clear(C, "keep").log_append(C, 1, b"e").create_collection("9.9")
           .remove(C, "does-not-exist"))
    with pytest.raises(NotFound):
        await store.submit(txn)
    assert await dump(store) == before
    # concurrent submits sharing one group commit: the failing one alone is rolled back
    bad = Transaction().write_full(C, "keep", b"zzz").rmxattr(C, "keep", "none")
    oks = [Transaction().write_full(C, f"c{i}", b"%d" % i) for i in range(8)]
    results = await asyncio.gather(*(store.submit(t) for t in [*oks[:4], bad, *oks[4:]]),
                                   return_exceptions=True)
    assert [type(r) for r in results] == [type(None)] * 4 + [NotFound] + [type(None)] * 4
    assert await store.read(C, "keep") == b"old"
    assert await store.read(C, "c7") == b"7"


@pytest.mark.asyncio
async def test_checksum_mismatch_is_an_error(store: ObjectStore) -> None:
    data = payload(4 << 20)
    await store.submit(Transaction().write_full(C, "big", data).write_full(C, "small", b"s" * 99))
    if isinstance(store, MemoryStore):
        store.corrupt_for_test(C, b"big")
        with pytest.raises(ChecksumError):
            await store.read(C, "big")
        return
    assert isinstance(store, DurableStore)
    files = sorted(p for p in store.data_dir.rglob("*") if p.is_file())
    assert len(files) == 4                                         # 4 blocks of 1 MiB
    with open(files[1], "r+b") as f:
        f.seek(1234)
        byte = f.read(1)
        f.seek(1234)
        f.write(bytes([byte[0] ^ 0x55]))
    with pytest.raises(ChecksumError) as err:
        await store.read(C, "big")
    assert err.value.where is not None and err.value.where[1:] == (b"big", 1)
    assert await store.read(C, "big", 0, BLOCK_SIZE) == data[:BLOCK_SIZE]  # other blocks fine
    os.truncate(files[2], 10)
    with pytest.raises(ChecksumError):
        await store.read(C, "big", 2 * BLOCK_SIZE + 5, 10)
    files[3].unlink()                                               # a lost block file
    with pytest.raises(ChecksumError):
        await store.read(C, "big", 3 * BLOCK_SIZE, 10)
    db = sqlite3.connect(store.path / "meta.db")                   # an inline block
    db.execute("UPDATE blocks SET inline = x'00' || substr(inline, 2)")
    db.commit()
    db.close()
    with pytest.raises(ChecksumError):
        await store.read(C, "small")


@pytest.mark.asyncio
@pytest.mark.parametrize("point", ["store.write_block", "store.before_commit"])
async def test_enospc_keeps_store_consistent(durable: DurableStore, point: str) -> None:
    await durable.submit(Transaction().write_full(C, "o", payload(2 * BLOCK_SIZE, 1)))
    before = await dump(durable)
    faults = durable._faults
    assert isinstance(faults, Faults)
    faults.arm(point, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(StoreFull):
        await durable.submit(Transaction().write(C, "o", 100, payload(2 * BLOCK_SIZE, 2))
                             .write_full(C, "p", payload(BLOCK_SIZE * 2, 3)))
    assert await dump(durable) == before
    files = [p for p in durable.data_dir.rglob("*") if p.is_file()]
    assert len(files) == 2                                          # no leftover new blocks
    await durable.submit(Transaction().write_full(C, "p", b"after"))  # still usable
    assert await durable.read(C, "p") == b"after"


@pytest.mark.asyncio
async def test_a_nearly_full_disk_refuses_growth_but_not_removal(tmp_path: Path) -> None:
    """Below the reserve, writes get StoreFull before anything is written, while removals
    (with their small PG-log entry) still commit: a full store can always be emptied."""
    MiB = 1 << 20
    free = [100 * MiB]
    s = await DurableStore.open(tmp_path / "osd", reserve_bytes=8 * MiB,
                                free_bytes=lambda: free[0])
    try:
        await s.submit(Transaction().create_collection(C)
                       .write_full(C, "keep", payload(2 * MiB, 1))
                       .write_full(C, "big", payload(3 * MiB, 2)))
        before, files = await dump(s), set(s.data_dir.rglob("*"))
        free[0] = 9 * MiB                       # 1 MiB above the reserve
        with pytest.raises(StoreFull, match="remove objects"):
            await s.submit(Transaction().write_full(C, "new", payload(2 * MiB, 3)))
        assert await dump(s) == before
        assert set(s.data_dir.rglob("*")) == files  # refused before any block was written
        await s.submit(Transaction().write_full(C, "small", b"x" * 1000))    # still fits
        # one batch: each write fits alone, together they would eat into the reserve
        free[0] = 8 * MiB + 2 * MiB
        outcomes = await asyncio.gather(
            *(s.submit(Transaction().write_full(C, f"b{i}", payload(MiB, i))) for i in range(3)),
            return_exceptions=True)
        assert sum(isinstance(o, StoreFull) for o in outcomes) == 1, outcomes
        free[0] = 4 * MiB                       # inside the reserve: even tiny growth waits
        with pytest.raises(StoreFull):
            await s.submit(Transaction().setxattr(C, "keep", "a", b"1"))
        await s.submit(Transaction().remove(C, "big").log_append(C, 1, b"entry"))
        await s.submit(Transaction().truncate(C, "keep", 10))
        with pytest.raises(StoreFull):  # a "removal" carrying a lot of new data is a write
            await s.submit(Transaction().remove(C, "small").write_full(C, "n", payload(MiB)))
        free[0] = 100 * MiB                     # space again
        await s.submit(Transaction().write_full(C, "new", payload(2 * MiB, 3)))
        assert await s.read(C, "keep") == payload(2 * MiB, 1)[:10]
        assert await s.read(C, "new") == payload(2 * MiB, 3)
        with pytest.raises(NotFound):
            await s.stat(C, "big")
    finally:
        await s.close()


@pytest.mark.asyncio
async def test_64mib_object_and_reopen(tmp_path: Path) -> None:
    data = payload(64 << 20, 7)
    s = await DurableStore.open(tmp_path / "osd")
    await s.submit(Transaction().create_collection(C).write_full(C, "huge", data))
    before = {p.name for p in s.data_dir.rglob("*") if p.is_file()}
    await s.submit(Transaction().write(C, "huge", 40 << 20, b"patch"))
    after = {p.name for p in s.data_dir.rglob("*") if p.is_file()}
    assert len(before) == 64 and len(before - after) == 1 and len(after - before) == 1
    await s.close()
    stray = s.data_dir / "0" / "fffff0"                             # an orphan: collected
    stray.write_bytes(b"junk")
    s = await DurableStore.open(tmp_path / "osd")
    with pytest.raises(InvalidArgument, match="open in another"):   # one opener at a time
        await DurableStore.open(tmp_path / "osd")
    try:
        assert not stray.exists()
        got = await s.read(C, "huge")
        assert len(got) == len(data)
        assert got[:40 << 20] == data[:40 << 20] and got[40 << 20:(40 << 20) + 5] == b"patch"
        assert got[(40 << 20) + 5:] == data[(40 << 20) + 5:]
        assert len([p for p in s.data_dir.rglob("*") if p.is_file()]) == 64
    finally:
        await s.close()


@pytest.mark.asyncio
async def test_group_commit_shares_fsyncs(durable: DurableStore) -> None:
    n, writers = 20, 32

    async def writer(w: int) -> None:
        for i in range(n):
            name = b"w%d-%d" % (w, i)
            await durable.submit(Transaction().write_full(C, name, bytes(4096))
                                 .set_version(C, name, i + 1))

    base = dict(durable.stats)
    await asyncio.gather(*(writer(w) for w in range(writers)))
    txns = durable.stats["txns"] - base["txns"]
    fsyncs = sum(durable.stats[k] - base[k] for k in ("commits", "file_fsyncs", "dir_fsyncs"))
    print(f"\n32 concurrent submitters: {txns} txns, {fsyncs} fsyncs, "
          f"{fsyncs / txns:.3f} fsyncs/txn, {txns / durable.stats['batches']:.1f} txns/batch")
    assert txns == n * writers
    assert fsyncs / txns < 0.25


@pytest.mark.asyncio
async def test_reads_race_with_overwrites(durable: DurableStore) -> None:
    """A read never sees a mix of versions or a missing file while blocks are replaced."""
    versions = [bytes([v]) * (2 * BLOCK_SIZE) for v in range(1, 6)]
    await durable.submit(Transaction().write_full(C, "o", versions[0]))

    async def reader() -> None:
        for _ in range(15):
            got = await durable.read(C, "o")
            assert bytes(got) in versions

    async def writer() -> None:
        for v in versions[1:]:
            await durable.submit(Transaction().write_full(C, "o", v))

    await asyncio.gather(reader(), reader(), writer())


@pytest.mark.asyncio
async def test_collection_counts_follow_every_change(store: ObjectStore) -> None:
    """coll_stats is kept by the commits once counted: it must agree with a fresh count."""
    await store.submit(Transaction().create_collection("9.1").write_full("9.1", "a", b"x" * 10))
    assert await store.coll_stats("9.1") == (1, 10)
    await store.submit(Transaction().write("9.1", "a", 5, b"y" * 20).write_full("9.1", "b", b"z"))
    assert await store.coll_stats("9.1") == (2, 26)
    await store.submit(Transaction().truncate("9.1", "a", 3).remove("9.1", "b"))
    assert await store.coll_stats("9.1") == (1, 3)
    with pytest.raises(NotFound):
        await store.submit(Transaction().write_full("9.1", "c", b"cc").remove("9.1", "nope"))
    assert await store.coll_stats("9.1") == (1, 3)       # a failed transaction counts nothing
    await store.submit(Transaction().remove_collection("9.1"))
    await store.submit(Transaction().create_collection("9.1").touch("9.1", "d"))
    assert await store.coll_stats("9.1") == (1, 0)
