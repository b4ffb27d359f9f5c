"""Heartbeats (osd/heartbeat.py): the grace a peer gets, and the thread's responder and pinger
over real sockets - a live peer is never reported, a dead one (refused) at once, a silent one
(SIGSTOP-like) after its grace."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from osd.heartbeat import HeartbeatThread, Peer
from rados_py.config import Config
from rados_py.crush import edit
from rados_py.crush.compiled import CompiledMap
from rados_py.osdmap import OSDMap, OsdState
from rados_py.proto.loligo import mon_pb2
from tests.waiting import wait_for_async

FSID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def test_a_peer_that_lagged_gets_a_longer_grace_within_bounds() -> None:
    peer = Peer(since=0.0)
    assert peer.grace(3.0) == 3.0
    t = 0.0
    for _ in range(10):             # answers every 0.5 s: no lag
        t += 0.5
        peer.answered(t, 0.5)
    assert peer.grace(3.0) == 3.0
    for _ in range(5):              # then silent 2.5 s at a time, and back each time
        t += 2.5
        peer.answered(t, 0.5)
    assert 3.0 < peer.grace(3.0) < 3.0 + 2.5
    assert peer.history == [2.5] * 5
    for _ in range(40):             # steady again: the estimate decays
        t += 0.5
        peer.answered(t, 0.5)
    assert peer.grace(3.0) < 3.05
    peer.laggy_probability, peer.laggy_interval = 1.0, 100.0
    assert peer.grace(3.0) == 12.0  # bounded


def test_time_the_watcher_could_not_run_is_nobodys_silence() -> None:
    peer = Peer(since=0.0, last_reply=10.0)
    peer.shift(5.0)
    assert peer.silent_for(16.0) == 1.0


def osdmap(addrs: dict[int, str]) -> OSDMap:
    crush = CompiledMap(edit.initial_map("osd"))
    for osd in addrs:
        crush = CompiledMap(edit.add_device(crush.crush_map, osd, "h", 0x10000))
    return OSDMap(crush=crush, fsid=FSID, epoch=5,
                  osds={o: OsdState(o, heartbeat_addr=a) for o, a in addrs.items()})


@pytest.mark.asyncio
async def test_live_peers_answer_a_refused_port_is_reported_at_once() -> None:
    config = Config.defaults(fsid=FSID, osd_heartbeat_interval=0.05, osd_heartbeat_grace=0.5)
    reports: list[mon_pb2.OsdFailure] = []

    async def report(failure: mon_pb2.OsdFailure) -> None:
        reports.append(failure)

    a = HeartbeatThread(0, config, "127.0.0.1", report, lambda: (1000, 10))
    b = HeartbeatThread(1, config, "127.0.0.1", report, lambda: (5000, 50))
    dead = socket.socket()           # a port nobody listens on any more
    dead.bind(("127.0.0.1", 0))
    dead_addr = f"127.0.0.1:{dead.getsockname()[1]}"
    dead.close()
    try:
        addrs = {0: await a.start(), 1: await b.start(), 2: dead_addr}
        a.set_targets(osdmap(addrs), {1, 2})
        b.set_targets(osdmap(addrs), {0})
        # b may report osd.2 too: it pings a few peers beyond its PG peers (EXTRA_PEERS)
        await wait_for_async(
            lambda: a.peer_space.get(1) and any(r.target == 2 and r.reporter == 0
                                                 for r in reports),
            5, "b's free space and osd.0's report of the refused port")
        assert a.peer_space[1] == (5000, 50)            # b answers, with its free space
        refused = [r for r in reports if r.target == 2 and r.reporter == 0]
        assert refused and refused[0].immediate
        await asyncio.sleep(1.0)  # a measured interval (twice the grace): b must stay fine
        assert not [r for r in reports if r.target in (0, 1) and not r.still_alive]
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.asyncio
async def test_a_silent_peer_is_reported_after_its_grace_and_withdrawn_when_back() -> None:
    config = Config.defaults(fsid=FSID, osd_heartbeat_interval=0.05, osd_heartbeat_grace=0.4)
    reports: list[mon_pb2.OsdFailure] = []

    async def report(failure: mon_pb2.OsdFailure) -> None:
        reports.append(failure)

    # a listener that accepts and never answers: a hung process (SIGSTOP)
    hung = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    hung_addr = f"127.0.0.1:{hung.sockets[0].getsockname()[1]}"
    a = HeartbeatThread(0, config, "127.0.0.1", report, lambda: None)
    try:
        addrs = {0: await a.start(), 3: hung_addr}
        a.set_targets(osdmap(addrs), {3})
        start = time.monotonic()
        await wait_for_async(lambda: reports, 5, "a report of the hung peer")
        assert reports and reports[0].target == 3 and not reports[0].immediate
        assert time.monotonic() - start >= 0.35         # not before the grace
        # it comes back (a responder at its address again): the report is withdrawn
        hung.close()
        back = HeartbeatThread(3, config, "127.0.0.1", report, lambda: None)
        addrs[3] = await back.start()
        a.set_targets(osdmap(addrs), {3})
        await wait_for_async(lambda: any(r.still_alive for r in reports), 10,
                             "the report withdrawn")
        assert any(r.still_alive and r.target == 3 for r in reports)
        await back.stop()
    finally:
        await a.stop()
