"""Per-object ordering of a PG's ops (osd/ordering.py): FIFO per object, reads shared, writes
exclusive, other objects never wait, scrub ranges keep writes out."""

from __future__ import annotations

import asyncio

import pytest

from osd.ordering import ObjectLocks


async def run(locks: ObjectLocks, log: list[str], name: str, oid: bytes, exclusive: bool,
              hold: asyncio.Event | None = None) -> None:
    async with locks.hold(oid, exclusive):
        log.append(f"+{name}")
        if hold is not None:
            await hold.wait()
        await asyncio.sleep(0)
        log.append(f"-{name}")


@pytest.mark.asyncio
async def test_ops_on_one_object_run_in_arrival_order_reads_shared() -> None:
    locks, log = ObjectLocks(), []
    gate = asyncio.Event()
    tasks = [asyncio.create_task(run(locks, log, "w1", b"x", True, gate)),
             asyncio.create_task(run(locks, log, "r1", b"x", False)),
             asyncio.create_task(run(locks, log, "r2", b"x", False)),
             asyncio.create_task(run(locks, log, "w2", b"x", True)),
             asyncio.create_task(run(locks, log, "r3", b"x", False)),
             asyncio.create_task(run(locks, log, "other", b"y", True))]
    await asyncio.sleep(0.01)
    assert log == ["+w1", "+other", "-other"]  # another object never waits
    gate.set()
    await asyncio.gather(*tasks)
    order = [e for e in log if e[1:] != "other"]
    assert order[:2] == ["+w1", "-w1"]
    assert set(order[2:4]) == {"+r1", "+r2"}       # the two reads run together...
    assert order.index("+w2") > max(order.index("-r1"), order.index("-r2"))
    assert order.index("+r3") > order.index("-w2")  # ...and a later read waits its turn
    assert len(locks) == 0


@pytest.mark.asyncio
async def test_a_cancelled_waiter_does_not_block_the_next() -> None:
    locks, log = ObjectLocks(), []
    gate = asyncio.Event()
    first = asyncio.create_task(run(locks, log, "w1", b"x", True, gate))
    second = asyncio.create_task(run(locks, log, "w2", b"x", True))
    third = asyncio.create_task(run(locks, log, "w3", b"x", True))
    await asyncio.sleep(0.01)
    second.cancel()
    gate.set()
    await asyncio.gather(first, third)
    assert log == ["+w1", "-w1", "+w3", "-w3"]
    assert len(locks) == 0


@pytest.mark.asyncio
async def test_a_block_waits_for_writes_in_its_range_and_holds_new_ones_out() -> None:
    locks, log = ObjectLocks(), []
    gate = asyncio.Event()
    inside = asyncio.create_task(run(locks, log, "w-b", b"b", True, gate))
    await asyncio.sleep(0.01)
    blocked = asyncio.Event()

    async def scrub() -> None:
        async with locks.block(b"a", b"c"):
            log.append("+scrub")
            blocked.set()
            await asyncio.sleep(0.02)
            log.append("-scrub")
    scrubbing = asyncio.create_task(scrub())
    await asyncio.sleep(0.01)
    assert "+scrub" not in log  # the write in flight in (a, c] finishes first
    gate.set()
    await blocked.wait()
    late = asyncio.create_task(run(locks, log, "w-c", b"c", True))
    outside = asyncio.create_task(run(locks, log, "w-d", b"d", True))
    read = asyncio.create_task(run(locks, log, "r-b", b"b", False))
    await asyncio.gather(inside, scrubbing, late, outside, read)
    assert log.index("+w-c") > log.index("-scrub")   # held out of the range
    assert log.index("+w-d") < log.index("-scrub")   # outside: not
    assert log.index("+r-b") < log.index("-scrub")   # reads: not
