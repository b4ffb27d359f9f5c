"""A cluster across three hosts (network namespaces, 1 monitor + 2 OSDs each) survives a host
cut off from the others: the cut-off monitor cannot commit and says so while the majority goes
on; the cut-off OSDs are marked down by their peers' reports within the heartbeat grace + 2 s;
after healing the monitor catches up and the OSDs rejoin; a verifying workload of register
operations (write_full, read, compare-and-swap on versions) loses no acknowledged write and its
history is linearizable. Each scenario prints a report (stall, detection, heal, counts)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from cluster import launcher
from rados_py.auth import Keyring
from rados_py.config import load
from rados_py.errors import LoligoError, NotFound
from rados_py.monclient import MonClient
from rados_py.osdmap import OSDMap, PgId
from rados_py.proto.loligo import mon_pb2, osd_pb2
from rados_py.rados import CompareFailed, IoCtx, Rados
from tests.integration import started
from tests.integration.hosts import HostNet, hosts_cluster, skip_reason
from tests.linearizability import MISMATCH, Op, check
from tests.waiting import wait_for, wait_for_async

REASON = skip_reason()
pytestmark = pytest.mark.skipif(bool(REASON), reason=f"NETWORK NAMESPACE TESTS SKIPPED: {REASON}")

LAYOUT = {"h1": ["mon.a", "osd.0", "osd.1"], "h2": ["mon.b", "osd.2", "osd.3"],
          "h3": ["mon.c", "osd.4", "osd.5"]}
HEARTBEAT_GRACE = 3.0
SETTINGS = {"osd_heartbeat_grace": HEARTBEAT_GRACE, "osd_beacon_interval": 0.5,
            # only the peers' reports may mark the cut-off OSDs down within the test: their
            # silence towards the monitors would take this long
            "mon_osd_report_grace": 60.0, "rpc_timeout": 2.0}
K = osd_pb2.OsdOp


@pytest.fixture(scope="module")
def three_hosts(tmp_path_factory: pytest.TempPathFactory):
    with HostNet(3) as net, hosts_cluster(tmp_path_factory.mktemp("hosts") / "c", net, LAYOUT,
                                          SETTINGS) as c, started(c) as c:
        yield net, c


def _reaches(net: HostNet, src: str | None, dst: str) -> bool:
    """Whether a TCP connection from host `src` (None: the test) to `dst`:8000 succeeds."""
    code = (f"import socket; socket.create_connection(({net.addr[dst]!r}, 8000), 1)")
    argv = [sys.executable, "-c", code]
    return subprocess.run(net.argv(src, argv) if src else argv, capture_output=True,
                          timeout=30).returncode == 0


def test_cuts_heal_and_everything_is_removed_even_on_failure() -> None:
    with pytest.raises(RuntimeError, match="on purpose"), HostNet(2) as net:
        made = [net.ns(h) for h in net.names]
        server = subprocess.Popen(net.argv("h1", [sys.executable, "-m", "http.server", "8000",
                                                  "--bind", net.addr["h1"]]),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _reaches(net, "h2", "h1"), 20, "h1's server from h2")
        net.cut("h1", ["h2"])
        assert not _reaches(net, "h2", "h1") and _reaches(net, None, "h1")
        net.heal()
        assert _reaches(net, "h2", "h1")
        raise RuntimeError("the test fails on purpose")
    assert server.wait(5) == -signal.SIGKILL  # killed by the fixture, by its pid
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in left for ns in made)
    links = subprocess.run(["ip", "link", "show", net.bridge], capture_output=True)
    assert links.returncode != 0


async def _maps(r: Rados) -> OSDMap:
    return (await r.mon.get_maps(latest=True)).osdmap


def test_daemons_bind_their_hosts_and_replicas_spread_over_hosts(three_hosts) -> None:
    net, c = three_hosts

    async def scenario() -> None:
        async with Rados(load(c.conf)) as r:
            await r.connect()
            await r.mon.command(pool_create=mon_pb2.PoolCreate(name="spread", pg_num=16,
                                                               size=3))
            osdmap = await wait_for_async(lambda: _all_up(r), 60, "6 OSDs up")
            for osd, state in osdmap.osds.items():
                host = next(h for h, ds in LAYOUT.items() if f"osd.{osd}" in ds)
                assert state.addr.rsplit(":", 1)[0] == net.addr[host], (osd, state.addr)
            info = {o["id"]: o["addr"] for o in c.info()["osds"]}  # `loligo cluster info`
            assert info == {o: s.addr for o, s in osdmap.osds.items()}
            crush = osdmap.crush.crush_map
            parents = crush.parents()
            host_of = {osd: crush.buckets[parents[osd]].name for osd in osdmap.osds}
            assert host_of == {0: "h1", 1: "h1", 2: "h2", 3: "h2", 4: "h3", 5: "h3"}
            pool = next(p for p in osdmap.pools.values() if p.name == "spread")
            for ps in range(pool.pg_num):
                acting = osdmap.pg_to_up_acting(PgId(pool.id, ps)).acting
                assert len({host_of[o] for o in acting}) == 3, (ps, acting)
            tree = subprocess.run([sys.executable, "-m", "cluster", "osd", "tree", "--conf",
                                   str(c.conf)], capture_output=True, text=True, timeout=60)
            assert tree.returncode == 0, tree.stderr
            hosts = [line.split()[-1] for line in tree.stdout.splitlines() if "host " in line]
            assert sorted(hosts) == ["h1", "h2", "h3"], tree.stdout  # in boot order
            io = await r.open_ioctx("spread")
            await io.write_full("hello", b"from the test's own namespace")
            assert await io.read("hello") == b"from the test's own namespace"

    asyncio.run(scenario())


async def _all_up(r: Rados):
    osdmap = await _maps(r)
    return osdmap if len(osdmap.osds) == 6 and all(o.up for o in osdmap.osds.values()) \
        else None


# --- the verifying workload ---------------------------------------------------------------------

@dataclasses.dataclass
class Workload:
    """Clients doing register operations on a few objects, recording what they saw."""

    io: IoCtx
    keys: tuple[str, ...] = ("r0", "r1", "r2", "r3")
    history: list[Op] = dataclasses.field(default_factory=list)
    acked_at: list[float] = dataclasses.field(default_factory=list)
    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    op_timeout: float = 8.0

    async def _op(self, client: str, n: int) -> None:
        key = self.keys[n % len(self.keys)]
        kind = ("write", "read", "cas")[n % 3]
        last = {o.key: o for o in self.history if o.status == "ok" and o.kind == "read"}
        seen = last.get(key)
        value = f"{client}-{n}"
        arg: object = value
        if kind == "cas" and seen is not None and seen.output[1]:
            arg = (seen.output[1], value)  # a guard on the version last read (often stale)
        elif kind == "cas":
            kind = "write"  # nothing read yet: no version to guard on
        start = time.monotonic()
        try:
            output = await asyncio.wait_for(self._do(key, kind, arg), self.op_timeout)
            status = "ok"
        except NotFound:  # a read of an object not written yet; a guard on a missing one
            output, status = ((None, 0) if kind == "read" else MISMATCH), "ok"
        except CompareFailed:
            output, status = MISMATCH, "ok"
        except (LoligoError, TimeoutError):
            output, status = None, "unknown"  # it may still happen: never count it as failed
        end = time.monotonic()
        if status == "ok" and kind != "read":
            self.acked_at.append(end)
        self.history.append(Op(client, key, kind, arg if kind != "read" else None, start,
                               end if status == "ok" else None, status,  # type: ignore[arg-type]
                               output))

    async def _do(self, key: str, kind: str, arg: object) -> object:
        rados = self.io.rados
        if kind == "read":
            reply = await rados.execute(self.io.pool_id, self.io.nspace, key.encode(),
                                        [K(kind=K.READ), K(kind=K.STAT)])
            return (reply.results[0].data.decode(), reply.results[1].version)
        if kind == "write":
            reply = await rados.execute(self.io.pool_id, self.io.nspace, key.encode(),
                                        [K(kind=K.WRITE_FULL, data=str(arg).encode())])
            return reply.version
        expected, value = arg  # type: ignore[misc]
        reply = await rados.execute(self.io.pool_id, self.io.nspace, key.encode(),
                                    [K(kind=K.ASSERT_VERSION, version=expected),
                                     K(kind=K.WRITE_FULL, data=value.encode())])
        return reply.version

    async def client(self, name: str) -> None:
        n = 0
        while not self.stop.is_set():
            await self._op(name, n)
            n += 1

    def counts(self) -> Counter[str]:
        return Counter(o.status if o.output != MISMATCH else "mismatch" for o in self.history)

    def stall(self, since: float, until: float) -> float:
        """The longest time without an acknowledged write in [since, until]."""
        times = sorted(t for t in self.acked_at if since <= t <= until)
        edges = [since, *times, until]
        return max(b - a for a, b in itertools.pairwise(edges))


async def _mon_only(c: launcher.LocalCluster, name: str) -> MonClient:
    """A monitor client that knows only monitor `name`."""
    config = c.config.replace(mon_host=[str(m) for m in c.config.mon_host if m.name == name])
    return MonClient(config, Keyring.load(c.config.keyring))


def test_a_host_cut_off_loses_its_monitor_and_osds_and_rejoins(three_hosts) -> None:
    net, c = three_hosts

    async def scenario() -> dict[str, object]:
        report: dict[str, object] = {}
        async with Rados(load(c.conf), op_timeout=6.0) as r:
            await r.connect()
            await r.mon.command(pool_create=mon_pb2.PoolCreate(name="reg", pg_num=16, size=3))
            await wait_for_async(lambda: _all_up(r), 60, "6 OSDs up")
            io = await r.open_ioctx("reg")
            load_ = Workload(io)
            clients = [asyncio.create_task(load_.client(f"c{i}")) for i in range(3)]
            try:
                try:
                    await wait_for_async(lambda: len(load_.acked_at) >= 20, 30,
                                         "the workload going")
                    cut = time.monotonic()
                    net.cut("h3", ["h1", "h2"])
                    # the OSDs of h3 are reported down by their peers on h1 and h2
                    await wait_for_async(lambda: _down(r, {4, 5}), HEARTBEAT_GRACE + 10,
                                         "osd.4 and osd.5 marked down")
                    detected = time.monotonic() - cut
                    report["detected_s"] = round(detected, 1)
                    # the majority goes on: a monitor command commits
                    await r.mon.command(pool_create=mon_pb2.PoolCreate(name="during", pg_num=4,
                                                                       size=3), timeout=10)
                    # the minority monitor knows it has no quorum, and a command sent only to
                    # it is refused in time, saying why
                    status = await r.mon.status(timeout=5)
                    mon_c = status.answered["c"]
                    assert mon_c.state != "leader" and not mon_c.quorum, mon_c
                    lonely = await _mon_only(c, "c")
                    t0 = time.monotonic()
                    with pytest.raises(LoligoError) as refused:
                        await lonely.command(pool_create=mon_pb2.PoolCreate(name="minority",
                                                                            pg_num=4, size=3),
                                             timeout=4)
                    await lonely.close()
                    assert time.monotonic() - t0 < 10
                    report["minority_mon_says"] = str(refused.value).splitlines()[0][:160]
                    await wait_for_async(lambda: any(t > cut + detected for t in load_.acked_at),
                                         20, "acknowledged writes again after the cut")
                    healed = time.monotonic()
                    report["stall_s"] = round(load_.stall(cut, healed), 1)
                finally:
                    net.heal()
                await wait_for_async(lambda: _all_up(r), 60, "osd.4 and osd.5 up again")
                report["rejoined_s"] = round(time.monotonic() - healed, 1)
                leader = (await r.mon.status(timeout=5)).view

                async def caught_up() -> bool:
                    st = (await r.mon.status(timeout=5)).answered.get("c")
                    return st is not None and st.applied_index >= leader.applied_index
                await wait_for_async(caught_up, 30, "mon.c caught up with the leader's log")
                report["mon_caught_up_s"] = round(time.monotonic() - healed, 1)
                await wait_for_async(lambda: len([t for t in load_.acked_at if t > healed]) >= 20,
                                     30, "writes after the heal")
            finally:
                load_.stop.set()
                await asyncio.gather(*clients)
            # every object read back once more, after everything settled
            for key in load_.keys:
                t = time.monotonic()
                value = await load_._do(key, "read", None)
                load_.history.append(Op("final", key, "read", None, t, time.monotonic(), "ok",
                                        value))
            verdict = check(load_.history, timeout=60)
            report.update(load_.counts(), operations=len(load_.history),
                          linearizable=verdict.linearizable, check_s=round(verdict.seconds, 2))
            assert verdict.linearizable is True, verdict.reason
        return report

    report = asyncio.run(scenario())
    print(f"\n[hosts] h3 cut off from h1,h2 (heartbeat grace {HEARTBEAT_GRACE} s): {report}")
    assert report["detected_s"] <= HEARTBEAT_GRACE + 2 + 1  # grace + 2 s, and our polling


def test_a_slow_lossy_host_is_not_marked_down_and_writes_go_on(three_hosts) -> None:
    net, c = three_hosts
    seconds = 10.0

    async def scenario() -> dict[str, object]:
        report: dict[str, object] = {}
        async with Rados(load(c.conf), op_timeout=6.0) as r:
            await r.connect()
            await r.mon.command(pool_create=mon_pb2.PoolCreate(name="lossy", pg_num=16, size=3))
            await wait_for_async(lambda: _all_up(r), 60, "6 OSDs up")
            epoch = (await _maps(r)).epoch
            load_ = Workload(await r.open_ioctx("lossy"))
            clients = [asyncio.create_task(load_.client(f"c{i}")) for i in range(3)]
            try:
                await wait_for_async(lambda: len(load_.acked_at) >= 20, 30,
                                     "the workload going")
                t0 = time.monotonic()
                before = len(load_.acked_at)
                await asyncio.sleep(2)  # a measured interval, not a wait for a condition
                report["acked_per_s_before"] = round((len(load_.acked_at) - before) / 2, 1)
                net.slow("h2", "1mbit")
                net.lossy("h2", 5)
                slowed, downs = time.monotonic(), set()
                while time.monotonic() - slowed < seconds:  # bounded: the scenario's length
                    osdmap = await _maps(r)
                    downs |= {o for o, s in osdmap.osds.items() if not s.up}
                    await asyncio.sleep(0.2)
                during = [t for t in load_.acked_at if t >= slowed]
                report["acked_per_s_slow_lossy"] = round(len(during) / seconds, 1)
                report["stall_s"] = round(load_.stall(slowed, time.monotonic()), 1)
                report["marked_down"] = sorted(downs)
                report["map_epochs"] = (await _maps(r)).epoch - epoch
            finally:
                net.heal()
                load_.stop.set()
                await asyncio.gather(*clients)
            verdict = check(load_.history, timeout=60)
            report.update(load_.counts(), linearizable=verdict.linearizable,
                          seconds=round(time.monotonic() - t0, 1))
            assert verdict.linearizable is True, verdict.reason
            assert not downs, f"marked down falsely on a slow, lossy link: {sorted(downs)}"
            assert during, "no write acknowledged while h2's link was slow and lossy"
        return report

    report = asyncio.run(scenario())
    print(f"\n[hosts] h2 at 1 Mbit/s with 5 % loss for {seconds:g} s: {report}")


def test_osds_cut_from_their_peers_but_not_the_monitors(three_hosts) -> None:
    net, c = three_hosts
    mon_ports = [m.port for m in c.config.mon_host]

    async def scenario() -> dict[str, object]:
        report: dict[str, object] = {}
        async with Rados(load(c.conf), op_timeout=6.0) as r:
            await r.connect()
            await r.mon.command(pool_create=mon_pb2.PoolCreate(name="peers", pg_num=16, size=3))
            await wait_for_async(lambda: _all_up(r), 60, "6 OSDs up")
            epoch = (await _maps(r)).epoch
            load_ = Workload(await r.open_ioctx("peers"))
            clients = [asyncio.create_task(load_.client(f"c{i}")) for i in range(3)]
            downs: set[int] = set()
            try:
                await wait_for_async(lambda: len(load_.acked_at) >= 20, 30,
                                     "the workload going")
                cut = time.monotonic()
                net.cut_except_ports("h3", ["h1", "h2"], mon_ports)
                try:
                    async def h3_down() -> bool:
                        osdmap = await _maps(r)
                        downs.update(o for o, s in osdmap.osds.items() if not s.up)
                        return {4, 5} <= downs
                    # (they reach the monitors, so each boots again when marked down: they
                    # flap until the heal; the OSDs stop that, not yet the monitors' job)
                    await wait_for_async(h3_down, HEARTBEAT_GRACE + 10,
                                         "osd.4 and osd.5 marked down")
                    report["detected_s"] = round(time.monotonic() - cut, 1)
                    end = time.monotonic() + 2 * HEARTBEAT_GRACE
                    while time.monotonic() < end:  # bounded: watch for false downs a while
                        await h3_down()
                        await asyncio.sleep(0.2)
                    report["stall_s"] = round(load_.stall(cut, time.monotonic()), 1)
                finally:
                    net.heal()
                healed = time.monotonic()
                await wait_for_async(lambda: _all_up(r), 60, "every OSD up again")
                report["rejoined_s"] = round(time.monotonic() - healed, 1)
            finally:
                load_.stop.set()
                await asyncio.gather(*clients)
            verdict = check(load_.history, timeout=60)
            report.update(load_.counts(), marked_down=sorted(downs),
                          linearizable=verdict.linearizable)
            flaps = (await _maps(r)).epoch - epoch
            report["map_epochs"] = flaps
            print(f"\n[hosts] h3's OSDs cut from their peers, not the monitors: {report}")
            assert verdict.linearizable is True, verdict.reason
            # two OSDs of one host count as one reporter: the connected hosts' OSDs stay up
            assert downs == {4, 5}, f"OSDs of the connected majority marked down: {downs}"
        return report

    asyncio.run(scenario())


async def _down(r: Rados, osds: set[int]) -> bool:
    osdmap = await _maps(r)
    return all(not osdmap.osds[o].up for o in osds)
