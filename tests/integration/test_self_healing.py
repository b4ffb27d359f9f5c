"""Self-healing with real processes (1 monitor, 4 OSDs, pool size 3, default failure timers):
failure detection by peer heartbeats (SIGKILL and SIGSTOP), log-based recovery of an OSD that
missed writes, backfill when an OSD is marked out (its copies move, then it holds nothing),
and after each: every PG active+clean, every object with its last acknowledged content, and
every replica identical in each OSD's own store."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator

import pytest

from cluster import launcher
from rados_py.config import load
from rados_py.errors import NotFound
from rados_py.proto.loligo import mon_pb2
from rados_py.rados import IoCtx, Rados
from tests.integration import running_cluster
from tests.integration.checks import replicas_identical, wait_clean
from tests.waiting import wait_for_async

GRACE = 3.0  # osd_heartbeat_grace, the default
CLEAN_WITHIN = 90.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launcher.LocalCluster]:
    settings = {"osd_pool_default_pg_num": 16, "mon_osd_down_out_interval": 0}
    with running_cluster(tmp_path_factory.mktemp("heal") / "cluster", osds=4,
                         pool=launcher.DEFAULT_POOL, settings=settings) as c:
        yield c


class Model:
    """The last acknowledged content of every object (None: removed)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes | None] = {}

    async def write(self, io: IoCtx, name: str, data: bytes) -> None:
        await io.write_full(name, data)
        self.objects[name] = data

    async def append(self, io: IoCtx, name: str, data: bytes) -> None:
        await io.append(name, data)
        self.objects[name] = (self.objects.get(name) or b"") + data

    async def remove(self, io: IoCtx, name: str) -> None:
        await io.remove(name)
        self.objects[name] = None

    async def verify(self, io: IoCtx) -> None:
        for name, data in self.objects.items():
            if data is None:
                with pytest.raises(NotFound):
                    await io.read(name)
            else:
                assert await io.read(name) == data, f"{name} lost its acknowledged content"


async def _osd(r: Rados, osd: int) -> tuple[bool, bool]:
    state = (await r.mon.get_maps(latest=True)).osdmap.osds[osd]
    return state.up, state.is_in


async def _marked_down_within(r: Rados, osd: int, since: float) -> float:
    async def down() -> bool:
        return not (await _osd(r, osd))[0]
    await wait_for_async(down, GRACE + 10, f"osd.{osd} marked down")
    return time.monotonic() - since


def test_killed_osd_detected_then_recovered_from_the_log(cluster: launcher.LocalCluster) -> None:
    async def go() -> None:
        async with Rados(load(cluster.conf)) as r:
            io = await r.open_ioctx("data")
            model = Model()
            for i in range(40):
                await model.write(io, f"k-{i}", os.urandom(100 + i))
            await wait_clean(r, CLEAN_WITHIN)
            cluster.kill("osd.1")
            took = await _marked_down_within(r, 1, time.monotonic())
            print(f"\n[heal] SIGKILLed osd.1 marked down after {took:.1f}s (grace {GRACE}s)")
            assert took < GRACE + 2 + 1  # grace + 2 s, plus the poll and beacon slack
            # writes go on with two of three replicas; osd.1 misses all of them
            for i in range(0, 40, 2):
                await model.write(io, f"k-{i}", b"new %d" % i)
            for i in range(1, 40, 5):
                await model.append(io, f"k-{i}", b"+tail")
            for i in range(3, 40, 7):
                await model.remove(io, f"k-{i}")
            for i in range(40, 60):
                await model.write(io, f"k-{i}", b"born while osd.1 was down")
            await asyncio.to_thread(cluster.start, ["osd.1"], timeout=60)
            await wait_for_async(lambda: _is(_osd(r, 1), (True, True)), 30, "osd.1 back up")
            await wait_clean(r, CLEAN_WITHIN)
            await model.verify(io)
            objects = await replicas_identical(r, io.pool_id, 3)
            assert len(objects) == sum(v is not None for v in model.objects.values())
    asyncio.run(go())


def test_a_hung_osd_is_marked_down_and_boots_again(cluster: launcher.LocalCluster) -> None:
    async def go() -> None:
        async with Rados(load(cluster.conf)) as r:
            io = await r.open_ioctx("data")
            model = Model()
            await wait_clean(r, CLEAN_WITHIN)
            pid = cluster.pid(cluster.daemon("osd.2"))
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            try:
                took = await _marked_down_within(r, 2, time.monotonic())
                print(f"\n[heal] SIGSTOPped osd.2 marked down after {took:.1f}s")
                assert took < GRACE + 2 + 1
                for i in range(20):
                    await model.write(io, f"h-{i}", b"while osd.2 hung %d" % i)
            finally:
                os.kill(pid, signal.SIGCONT)
            # alive again: it learns it was marked down, boots, and is recovered
            await wait_for_async(lambda: _is(_osd(r, 2), (True, True)), 30, "osd.2 up again")
            await wait_clean(r, CLEAN_WITHIN)
            await model.verify(io)
            await replicas_identical(r, io.pool_id, 3)
    asyncio.run(go())


def test_a_restart_faster_than_detection_still_starts_a_new_interval(
        cluster: launcher.LocalCluster) -> None:
    async def go() -> None:
        async with Rados(load(cluster.conf)) as r:
            io = await r.open_ioctx("data")
            model = Model()
            await wait_clean(r, CLEAN_WITHIN)
            before = (await r.mon.get_maps(latest=True)).osdmap.osds[0].up_from
            stop = asyncio.Event()
            writer = asyncio.create_task(_keep_writing(io, model, "q", stop))
            try:
                cluster.kill("osd.0")
                await asyncio.to_thread(cluster.start, ["osd.0"], timeout=60)
            finally:
                stop.set()
                await writer  # the op in flight finishes: its outcome is recorded
            state = (await r.mon.get_maps(latest=True)).osdmap.osds[0]
            assert state.up and state.up_from > before
            await wait_clean(r, CLEAN_WITHIN)
            await model.verify(io)
            await replicas_identical(r, io.pool_id, 3)
    asyncio.run(go())


async def _keep_writing(io: IoCtx, model: Model, prefix: str, stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set():
        await model.write(io, f"{prefix}-{i % 25}", b"%d" % i)
        i += 1
    assert i > 0


def test_killing_the_primary_mid_stream_loses_no_acknowledged_write(
        cluster: launcher.LocalCluster) -> None:
    """One writer appends numbered records to one object while its PG's primary is killed;
    afterwards the object holds every acknowledged record, in order, each exactly once."""
    async def go() -> None:
        async with Rados(load(cluster.conf), op_timeout=60) as r:
            io = await r.open_ioctx("data")
            await wait_clean(r, CLEAN_WITHIN)
            _, _, placement = r.osdmap.map_object(io.pool_id, b"stream")
            primary = placement.acting_primary
            acked: list[int] = []
            for i in range(300):
                if i == 100:
                    cluster.kill(f"osd.{primary}")
                await io.append("stream", b"%08d\n" % i)  # retried through the failover
                acked.append(i)
            records = [int(x) for x in (await io.read("stream")).split()]
            assert records == acked, "records lost, duplicated or reordered"
            await asyncio.to_thread(cluster.start, [f"osd.{primary}"], timeout=60)
            await wait_clean(r, CLEAN_WITHIN)
            assert [int(x) for x in (await io.read("stream")).split()] == acked
            await replicas_identical(r, io.pool_id, 3)
    asyncio.run(go())


def test_marking_out_backfills_elsewhere_and_drains(cluster: launcher.LocalCluster) -> None:
    async def go() -> None:
        async with Rados(load(cluster.conf)) as r:
            io = await r.open_ioctx("data")
            model = Model()
            for i in range(30):
                await model.write(io, f"b-{i}", os.urandom(2000))
            await wait_clean(r, CLEAN_WITHIN)
            await r.mon.command(osd_mark=mon_pb2.OsdMark(ids=[3], state=mon_pb2.OsdMark.OUT))
            try:
                for i in range(30, 40):  # the data stays available while it moves
                    await model.write(io, f"b-{i}", b"during backfill")
                await wait_clean(r, CLEAN_WITHIN)
                await model.verify(io)
                await replicas_identical(r, io.pool_id, 3)
                osdmap = (await r.mon.get_maps(latest=True)).osdmap
                assert all(3 not in p.acting for p in osdmap.map_pool(io.pool_id))
                await wait_for_async(lambda: _holds_nothing(cluster, r, 3, io.pool_id), 30,
                                     "osd.3 dropped its copies")
            finally:
                await r.mon.command(osd_mark=mon_pb2.OsdMark(ids=[3], state=mon_pb2.OsdMark.IN))
            await wait_clean(r, CLEAN_WITHIN)
            await model.verify(io)
            await replicas_identical(r, io.pool_id, 3)
    asyncio.run(go())


def test_an_added_osd_takes_only_the_pgs_crush_gives_it(cluster: launcher.LocalCluster) -> None:
    """Runs last: the cluster then has 5 OSDs."""
    async def go() -> None:
        async with Rados(load(cluster.conf)) as r:
            io = await r.open_ioctx("data")
            model = Model()
            for i in range(30):
                await model.write(io, f"a-{i}", os.urandom(5000))
            await wait_clean(r, CLEAN_WITHIN)
            before = [p.acting for p in (await r.mon.get_maps(latest=True)).osdmap.map_pool(
                io.pool_id)]
            daemon = await asyncio.to_thread(cluster.add_osd)
            new = int(daemon.id)
            await wait_for_async(lambda: _is(_osd(r, new), (True, True)), 30,
                                 f"osd.{new} up and in")
            after = [p.acting for p in (await r.mon.get_maps(latest=True)).osdmap.map_pool(
                io.pool_id)]
            moved = [i for i, (b, a) in enumerate(zip(before, after, strict=True)) if b != a]
            assert moved, "the new OSD got no PG"
            for i in moved:  # a PG changes only to take the new OSD in
                assert new in after[i] and set(before[i]) - set(after[i]) <= set(before[i])
                assert len(set(after[i]) - set(before[i])) == 1, (before[i], after[i])
            print(f"\n[heal] osd.{new} added: {len(moved)} of {len(after)} PGs moved to it")
            await wait_clean(r, CLEAN_WITHIN)
            await model.verify(io)
            await replicas_identical(r, io.pool_id, 3)
            # an OSD a PG moved away from drops its copy once the PG is clean again
            for i in moved:
                (gone,) = set(before[i]) - set(after[i])
                await wait_for_async(lambda g=gone, s=i: _lacks_pg(r, g, f"{io.pool_id}.{s:x}"),
                                     30, f"osd.{gone} dropped {io.pool_id}.{i:x}")
    asyncio.run(go())


async def _lacks_pg(r: Rados, osd: int, pgid: str) -> bool:
    from rados_py import rpc
    from rados_py.proto.loligo import osd_pb2, osd_pb2_grpc

    channel = rpc.open_channel(r.osdmap.osds[osd].addr, r.config, r._creds)
    try:
        reply = await osd_pb2_grpc.OsdPeerStub(channel).Query(osd_pb2.PgQuery(pgid=pgid),
                                                              timeout=10)
        return not reply.exists
    finally:
        await channel.close()


async def _holds_nothing(cluster: launcher.LocalCluster, r: Rados, osd: int,
                         pool_id: int) -> bool:
    """No PG of the pool left in the OSD's store (its stray copies were removed)."""
    from rados_py import rpc
    from rados_py.proto.loligo import osd_pb2, osd_pb2_grpc

    addr = r.osdmap.osds[osd].addr
    channel = rpc.open_channel(addr, r.config, r._creds)
    try:
        stub = osd_pb2_grpc.OsdPeerStub(channel)
        for seed in range(r.osdmap.pool(pool_id).pg_num):
            reply = await stub.Query(osd_pb2.PgQuery(pgid=f"{pool_id}.{seed:x}"), timeout=10)
            if reply.exists:
                return False
        return True
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def _is(coro, expected: tuple[bool, bool]) -> bool:
    return await coro == expected
