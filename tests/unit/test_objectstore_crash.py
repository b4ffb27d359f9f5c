"""SIGKILL a process that is submitting transactions to a DurableStore; reopen; check the state.

The child (this file run as a script) drives STREAMS concurrent, independent streams (one
collection each, so group commits mix them) of seeded transactions and prints "stream seq" after
each acknowledged submit. The test kills it either after a random number of acknowledgements or
at the Nth hit of a named fault point inside the store, reopens the store and compares every
collection with an in-memory replay of its stream: it must equal the replay of exactly the
acknowledged prefix, or of that prefix plus the one transaction that was in flight (wholly
present), and no block file may be left that the metadata does not reference.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from osd.objectstore import BLOCK_SIZE, DurableStore, MemoryStore, Transaction  # noqa: E402

STREAMS = 4
NAMES = [b"a", b"b/../..", b"\x00c", "d\u00e9", b"\xff" * 300]


def make_txn(seed: int, stream: int, seq: int) -> Transaction:
    """Transaction `seq` of `stream`: 1-4 ops that cannot fail on any state."""
    rng = random.Random(f"{seed}-{stream}-{seq}")
    coll = f"s.{stream}"
    txn = Transaction()
    for _ in range(rng.randint(1, 4)):
        name = rng.choice(NAMES)
        size = rng.choice([0, 10, 4096, 70_000, BLOCK_SIZE + 1000])
        data = rng.randbytes(size)
        kind = rng.randrange(12)
        if kind == 0:
            txn.write(coll, name, rng.randrange(0, 3 * BLOCK_SIZE), data)
        elif kind == 1:
            txn.write_full(coll, name, data)
        elif kind == 2:
            txn.append(coll, name, data)
        elif kind == 3:
            txn.truncate(coll, name, rng.randrange(0, 3 * BLOCK_SIZE))
        elif kind == 4:
            txn.touch(coll, name).zero(coll, name, rng.randrange(0, 2 * BLOCK_SIZE), size)
        elif kind == 5:
            txn.touch(coll, name).remove(coll, name)
        elif kind == 6:
            txn.setxattr(coll, name, rng.choice([b"x", b"y"]), data[:100])
        elif kind == 7:
            txn.setxattr(coll, name, b"z", b"").rmxattr(coll, name, b"z")
        elif kind == 8:
            txn.omap_set(coll, name, {b"k%d" % rng.randrange(20): data[:50] for _ in range(3)})
        elif kind == 9:
            txn.touch(coll, name).omap_rm_keys(coll, name, [b"k%d" % rng.randrange(20)
                                                            for _ in range(5)])
        elif kind == 10:
            txn.omap_set_header(coll, name, data[:64]).set_version(coll, name, seq)
        else:
            txn.touch(coll, name).omap_clear(coll, name)
    txn.log_append(coll, seq + 1, b"entry %d" % seq)
    if seq % 10 == 9:
        txn.log_trim(coll, seq - 5)
    return txn


async def child(path: str, seed: int, kill_point: str, kill_at: int) -> None:
    hits = 0

    def faults(point: str) -> None:
        nonlocal hits
        if point == kill_point:
            hits += 1
            if hits == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    store = await DurableStore.open(path, faults=faults)
    init = Transaction()
    for s in range(STREAMS):
        init.create_collection(f"s.{s}")
    await store.submit(init)
    print("init", flush=True)

    async def stream(s: int) -> None:
        for seq in range(400):
            await store.submit(make_txn(seed, s, seq))
            print(s, seq, flush=True)

    await asyncio.gather(*(stream(s) for s in range(STREAMS)))


async def replay(seed: int, stream: int, count: int) -> tuple:
    from tests.unit.test_objectstore import dump
    mem = MemoryStore()
    await mem.submit(Transaction().create_collection(f"s.{stream}"))
    for seq in range(count):
        await mem.submit(make_txn(seed, stream, seq))
    return (await dump(mem))[f"s.{stream}"]


CASES = [("time", 3), ("time", 15), ("time", 40), ("time", 80),
         ("store.write_block", 9), ("store.after_data_fsync", 6), ("store.before_commit", 5),
         ("store.after_commit", 7), ("store.before_unlink", 4)]


@pytest.mark.parametrize(("point", "when"), CASES)
def test_sigkill_then_reopen(tmp_path: Path, request: pytest.FixtureRequest, point: str,
                             when: int) -> None:
    seed = sum(map(ord, point)) * 31 + when          # stable across runs
    path = tmp_path / "osd"
    proc = subprocess.Popen(
        [sys.executable, __file__, str(path), str(seed), point, str(when)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    request.addfinalizer(lambda: (proc.kill(), proc.wait()))
    acked = [0] * STREAMS
    initialised = False
    lines = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "init":
            initialised = True
            continue
        fields = line.split()
        if not line.endswith("\n") or len(fields) != 2 or not all(f.isdigit() for f in fields):
            # not a whole acknowledgement (the kill cut it short): it counts as in flight
            # (acked + 1 is allowed below), never as seen
            continue
        s, seq = map(int, fields)
        assert seq == acked[s]
        acked[s] = seq + 1
        lines += 1
        if point == "time" and lines >= when:
            proc.send_signal(signal.SIGKILL)
    # lines still in the pipe after the kill are acknowledgements too (read by the loop above)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    if not initialised:
        return

    async def check() -> None:
        from tests.unit.test_objectstore import dump
        store = await DurableStore.open(path)
        try:
            got = await dump(store)
        finally:
            await store.close()
        assert sorted(got) == [f"s.{s}" for s in range(STREAMS)]
        for s in range(STREAMS):
            ok = [await replay(seed, s, acked[s]), await replay(seed, s, acked[s] + 1)]
            assert got[f"s.{s}"] in ok, f"stream {s}: state is not {acked[s]} or +1 txns"
        db = sqlite3.connect(path / "meta.db")
        referenced = {r[0] for r in db.execute("SELECT file FROM blocks WHERE file IS NOT NULL")}
        db.close()
        on_disk = {int(p.name, 16) for p in (path / "data").rglob("*") if p.is_file()}
        assert on_disk == referenced

    asyncio.run(check())
    print(f"killed at {point}#{when}: acked {acked}")


if __name__ == "__main__":
    asyncio.run(child(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
