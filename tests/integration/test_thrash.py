"""Thrash test (like Ceph's thrashosds): a verifying workload against a thrasher that kills -9,
restarts, stops cleanly, marks out and in random OSDs, never more than size - min_size (one)
disturbed at a time, for THRASH_SECONDS (env LOLIGO_THRASH_SECONDS; 180+ for the long run);
LOLIGO_THRASH_OSDS sets the OSD count, LOLIGO_THRASH_MONS=3 also kills the monitor leader.

Every op's outcome is recorded: an acknowledged op fixes the object's state; an op that ended
in an error leaves it "either the old state or the new one" (the client cannot know) until the
next acknowledged write_full or remove. SHARED objects are written by every worker at once
(write_full and remove, many in flight on one object and on one PG): each op is timed, and the
final state must be the value of an op that no acknowledged op started after the end of (the
PG orders ops on one object; an op that failed took effect before any op started after it
ended, or never). After the thrasher stops and every OSD is up and in,
the cluster must reach all PGs active+clean within a bounded time, every object must read back
a state its history allows, and every replica must be identical in each OSD's store. Any
failure prints the seed and the history of the offending object."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from cluster import launcher
from rados_py.config import load
from rados_py.errors import LoligoError, NotFound
from rados_py.proto.loligo import mon_pb2
from rados_py.rados import IoCtx, Rados
from tests.integration import running_cluster
from tests.integration.checks import replicas_identical, wait_clean
from tests.waiting import wait_for_async

SECONDS = float(os.environ.get("LOLIGO_THRASH_SECONDS", "40"))
SEED = int(os.environ.get("LOLIGO_THRASH_SEED", str(random.randrange(1 << 30))))
OSDS = int(os.environ.get("LOLIGO_THRASH_OSDS", "4"))
MONS = int(os.environ.get("LOLIGO_THRASH_MONS", "1"))  # 3: the monitor leader is killed too
OBJECTS = 60
SHARED = 6   # objects every worker writes concurrently
WORKERS = 4
CLEAN_WITHIN = 120.0


@pytest.fixture
def cluster(tmp_path) -> Iterator[launcher.LocalCluster]:
    settings = {"osd_pool_default_pg_num": 16, "mon_osd_down_out_interval": 0}
    with running_cluster(tmp_path / "cluster", mons=MONS, osds=OSDS,
                         pool=launcher.DEFAULT_POOL, settings=settings) as c:
        yield c


@dataclass
class History:
    """What one object may hold: the set of states its acknowledged and failed ops allow."""

    possible: set[bytes | None] = field(default_factory=lambda: {None})
    log: list[str] = field(default_factory=list)

    @property
    def certain(self) -> bool:
        return len(self.possible) == 1


@dataclass
class Timed:
    """One op on a shared object: when it ran, what it would leave, whether acknowledged."""

    start: float
    end: float
    after: bytes | None
    acked: bool


def final_candidates(ops: list[Timed]) -> set[bytes | None]:
    """What a shared object may hold once every op on it has ended: the value of an op that
    may be the last applied - one no acknowledged op started after the end of (that op is
    ordered after it) - or absent when no op was acknowledged (all may have failed)."""
    out = {op.after for op in ops
           if not any(o.acked and o.start > op.end for o in ops)}
    if not any(op.acked for op in ops):
        out.add(None)
    return out


class Workload:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.objects = {f"t-{i}": History() for i in range(OBJECTS)}
        self.shared: dict[str, list[Timed]] = {f"s-{i}": [] for i in range(SHARED)}
        self.acked = 0
        self.failed = 0

    async def shared_step(self, io: IoCtx, name: str) -> None:
        """A write_full or remove of a shared object, timed (others run on it meanwhile)."""
        data = self._data() if self.rng.random() < 0.8 else None
        start = time.monotonic()
        try:
            if data is None:
                await io.remove(name)
            else:
                await io.write_full(name, data)
            acked = True
        except NotFound:  # a remove of an absent object: it is absent now
            acked = True
        except LoligoError:
            acked = False
        self.shared[name].append(Timed(start, time.monotonic(), data, acked))
        if acked:
            self.acked += 1
        else:
            self.failed += 1

    def _data(self) -> bytes:
        size = self.rng.choice([0, 17, 4096, 9000, 65536, 300_000])
        return self.rng.randbytes(size)

    async def step(self, io: IoCtx, name: str) -> None:
        h = self.objects[name]
        current = next(iter(h.possible)) if h.certain else None
        choices = ["write_full", "remove"]
        if h.certain and current is not None:
            choices += ["append", "write", "truncate"]
        kind = self.rng.choice(choices)
        if kind == "write_full":
            data = self._data()
            after: bytes | None = data
            op = io.write_full(name, data)
        elif kind == "remove":
            after = None
            op = io.remove(name)
        elif kind == "append":
            data = self.rng.randbytes(self.rng.choice([1, 100, 5000]))
            assert current is not None
            after = current + data
            op = io.append(name, data)
        elif kind == "write":
            assert current is not None
            offset = self.rng.randrange(len(current) + 100)
            data = self.rng.randbytes(self.rng.choice([1, 700, 20000]))
            grown = current.ljust(offset, b"\0")
            after = grown[:offset] + data + grown[offset + len(data):]
            op = io.write(name, data, offset)
        else:
            assert current is not None
            size = self.rng.randrange(len(current) + 1)
            after = current[:size]
            op = io.truncate(name, size)
        try:
            await op
        except NotFound:
            if kind == "remove" and None in h.possible:
                h.possible = {None}
                h.log.append(f"{time.monotonic():.2f} remove -> already absent")
                self.acked += 1
                return
            h.log.append(f"{time.monotonic():.2f} {kind} -> NotFound, possible "
                         f"{_show(h.possible)}")
            raise AssertionError(f"seed {SEED}: {name}: {kind} said NotFound, history:\n"
                                 + "\n".join(h.log)) from None
        except LoligoError as exc:
            self.failed += 1
            h.possible = h.possible | {after}
            h.log.append(f"{time.monotonic():.2f} {kind} -> error {type(exc).__name__}: "
                         f"{str(exc)[:120]}; now {_show(h.possible)}")
            return
        self.acked += 1
        h.possible = {after}
        h.log.append(f"{time.monotonic():.2f} {kind} -> ok {_show(h.possible)}")

    async def worker(self, io: IoCtx, names: list[str], stop: asyncio.Event) -> None:
        shared = list(self.shared)
        while not stop.is_set():
            if self.rng.random() < 0.3:
                await self.shared_step(io, self.rng.choice(shared))
            else:
                await self.step(io, self.rng.choice(names))

    async def verify(self, io: IoCtx) -> None:
        for name, ops in self.shared.items():
            try:
                got: bytes | None = await io.read(name)
            except NotFound:
                got = None
            allowed = final_candidates(ops)
            assert got in allowed, (
                f"seed {SEED}: shared {name} reads {_show({got})}, its {len(ops)} concurrent "
                f"ops allow {_show(allowed)}; last ops:\n" + "\n".join(
                    f"{o.start:.3f}-{o.end:.3f} {_show({o.after})} "
                    f"{'ok' if o.acked else 'error'}" for o in ops[-12:]))
        for name, h in self.objects.items():
            try:
                got: bytes | None = await io.read(name)
            except NotFound:
                got = None
            assert got in h.possible, (
                f"seed {SEED}: {name} reads {_show({got})}, its history allows "
                f"{_show(h.possible)}; history:\n" + "\n".join(h.log[-30:]))


def _show(states: set[bytes | None]) -> str:
    return "{" + ", ".join("absent" if s is None else f"{len(s)} B {hash(s) & 0xffff:04x}"
                           for s in states) + "}"


class Thrasher:
    def __init__(self, cluster: launcher.LocalCluster, r: Rados, rng: random.Random) -> None:
        self.cluster = cluster
        self.r = r
        self.rng = rng
        self.actions: list[str] = []

    async def _state(self, osd: int) -> tuple[bool, bool]:
        s = (await self.r.mon.get_maps(latest=True)).osdmap.osds[osd]
        return s.up, s.is_in

    async def _until(self, osd: int, want: tuple[bool, bool], timeout: float) -> None:
        async def ok() -> bool:
            return await self._state(osd) == want
        await wait_for_async(ok, timeout, f"osd.{osd} up/in = {want}")

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            osd = self.rng.randrange(OSDS)
            action = self.rng.choice(["kill", "kill", "restart", "out"]
                                     + (["kill-mon-leader"] if MONS > 1 else []))
            if action == "kill-mon-leader":  # a majority stays: the maps go on changing
                leader = (await self.r.mon.status()).view.leader
                self.actions.append(f"{time.monotonic():.2f} kill-mon mon.{leader}")
                self.cluster.kill(f"mon.{leader}")
                await asyncio.sleep(self.rng.uniform(0.5, 4))
                await asyncio.to_thread(self.cluster.start, [f"mon.{leader}"], timeout=60)
                continue
            self.actions.append(f"{time.monotonic():.2f} {action} osd.{osd}")
            if action == "kill":
                self.cluster.kill(f"osd.{osd}")
                await asyncio.sleep(self.rng.uniform(0.5, 6))
                await asyncio.to_thread(self.cluster.start, [f"osd.{osd}"], timeout=60)
            elif action == "restart":
                pid = self.cluster.pid(self.cluster.daemon(f"osd.{osd}"))
                if pid is not None:
                    os.kill(pid, signal.SIGTERM)
                    await asyncio.to_thread(launcher._wait_dead, pid, 30)
                await asyncio.to_thread(self.cluster.start, [f"osd.{osd}"], timeout=60)
            else:
                await self.r.mon.command(osd_mark=mon_pb2.OsdMark(ids=[osd],
                                                                  state=mon_pb2.OsdMark.OUT))
                await asyncio.sleep(self.rng.uniform(1, 6))
                await self.r.mon.command(osd_mark=mon_pb2.OsdMark(ids=[osd],
                                                                  state=mon_pb2.OsdMark.IN))
            await self._until(osd, (True, True), 60)
            await asyncio.sleep(self.rng.uniform(0.5, 4))


def test_thrash_osds_lose_no_acknowledged_write(cluster: launcher.LocalCluster) -> None:
    rng = random.Random(SEED)
    print(f"\n[thrash] seed {SEED} (LOLIGO_THRASH_SEED), {SECONDS:.0f}s")

    async def go() -> None:
        async with Rados(load(cluster.conf), op_timeout=30) as r:
            io = await r.open_ioctx("data")
            await wait_clean(r, CLEAN_WITHIN)
            workload = Workload(random.Random(rng.random()))
            thrasher = Thrasher(cluster, r, random.Random(rng.random()))
            stop = asyncio.Event()
            names = list(workload.objects)
            workers = [asyncio.create_task(workload.worker(io, names[i::WORKERS], stop))
                       for i in range(WORKERS)]
            thrash = asyncio.create_task(thrasher.run(stop))
            try:  # the run lasts SECONDS, unless a failed check or the thrasher ends it first
                await asyncio.wait([*workers, thrash], timeout=SECONDS,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.set()
                results = await asyncio.gather(*workers, thrash, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            kinds = collections.Counter(a.split()[1] for a in thrasher.actions)
            print(f"[thrash] {workload.acked} ops acknowledged, {workload.failed} ended in "
                  f"an error; thrasher: {len(thrasher.actions)} actions {dict(kinds)}")
            clean_from = time.monotonic()
            await wait_clean(r, CLEAN_WITHIN)
            print(f"[thrash] all PGs active+clean {time.monotonic() - clean_from:.1f}s after "
                  "the thrasher stopped")
            await workload.verify(io)
            objects = await replicas_identical(r, io.pool_id, 3)
            present = sum(1 for h in workload.objects.values() if None not in h.possible)
            present += sum(1 for ops in workload.shared.values()
                           if None not in final_candidates(ops))
            assert len(objects) >= present
            assert workload.acked > 0

    asyncio.run(go())


def test_final_candidates_follow_real_time_order() -> None:
    """The check itself: what a shared object may hold after overlapping and ordered ops."""
    a, b, c = b"a", b"b", b"c"
    assert final_candidates([Timed(0, 1, a, True), Timed(2, 3, b, True)]) == {b}
    assert final_candidates([Timed(0, 2, a, True), Timed(1, 3, b, True)]) == {a, b}
    assert final_candidates([Timed(0, 1, a, True), Timed(2, 3, b, False)]) == {a, b}
    assert final_candidates([Timed(0, 1, a, False), Timed(2, 3, b, True)]) == {b}
    assert final_candidates([Timed(0, 1, a, False)]) == {a, None}
    assert final_candidates([Timed(0, 5, a, True), Timed(1, 2, None, True),
                             Timed(3, 4, c, True)]) == {a, c}
