"""A real 3-monitor cluster against bad input, and the paths that only long-lived clusters take:
log compaction into snapshots, a restarted monitor catching up through one, and metrics."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import grpc
import pytest

from cluster import launcher
from rados_py import auth, rpc
from rados_py.auth import Keyring
from rados_py.config import load
from rados_py.monclient import MonClient
from rados_py.proto.loligo import mon_pb2, mon_pb2_grpc, raft_pb2, raft_pb2_grpc
from tests.integration import running_cluster
from tests.waiting import wait_for_async


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    # compact often, so the snapshot paths run within a short test
    with running_cluster(tmp_path_factory.mktemp("robust") / "cluster", mons=3,
                         settings={"mon_snapshot_interval": 20}) as c:
        yield c


def _admin_ticket(config) -> str:
    ring = Keyring.load(config.keyring)
    return auth.issue_ticket(ring.service_secret, "client.admin", ring.get("client.admin").caps,
                             60, time.time()).token


async def _call(config, addr: str, call, *, fsid: str | None = None, ticket: str | None = ""):
    metadata = []
    if fsid is not None:
        metadata.append(("x-loligo-fsid", fsid))
    if ticket:
        metadata.append(("x-loligo-ticket", ticket))
    async with rpc.open_channel(addr, config) as channel:
        return await call(channel, tuple(metadata))


def _code(coro) -> grpc.StatusCode | None:
    try:
        asyncio.run(coro)
    except grpc.aio.AioRpcError as e:
        return e.code()
    return None


def test_bad_requests_are_refused_without_harm(cluster: launcher.LocalCluster) -> None:
    config = load(cluster.conf)
    addr = config.mon_host[0].addr
    ticket = _admin_ticket(config)

    def status(channel, md):
        return mon_pb2_grpc.MonStub(channel).Status(mon_pb2.MonStatusRequest(), metadata=md,
                                                    timeout=5)

    def command(cmd):
        return lambda channel, md: mon_pb2_grpc.MonStub(channel).Command(cmd, metadata=md,
                                                                         timeout=5)

    def deliver(msg):
        return lambda channel, md: raft_pb2_grpc.MonRaftStub(channel).Deliver(
            msg, metadata=md, timeout=5)

    ok = config.fsid
    assert _code(_call(config, addr, status, fsid=ok, ticket=ticket)) is None
    assert _code(_call(config, addr, status, fsid="wrong-cluster", ticket=ticket)) == \
        grpc.StatusCode.FAILED_PRECONDITION
    assert _code(_call(config, addr, status, fsid=ok, ticket=None)) == \
        grpc.StatusCode.UNAUTHENTICATED
    forged = auth.issue_ticket(b"x" * 32, "client.admin", {"mon": "allow *"}, 60, time.time())
    assert _code(_call(config, addr, status, fsid=ok, ticket=forged.token)) == \
        grpc.StatusCode.UNAUTHENTICATED
    expired = auth.issue_ticket(Keyring.load(config.keyring).service_secret, "client.admin",
                                {"mon": "allow *"}, 1, time.time() - 3600)
    assert _code(_call(config, addr, status, fsid=ok, ticket=expired.token)) == \
        grpc.StatusCode.UNAUTHENTICATED
    # a client may not speak Raft
    assert _code(_call(config, addr, deliver(raft_pb2.RaftMessage(fsid=ok, term=99, sender="a")),
                       fsid=ok, ticket=ticket)) == grpc.StatusCode.PERMISSION_DENIED
    # a command without a request id, or with nothing in it
    assert _code(_call(config, addr, command(mon_pb2.MonCommand()), fsid=ok,
                       ticket=ticket)) == grpc.StatusCode.INVALID_ARGUMENT
    # garbage bytes where a message should be
    async def garbage(channel, md):
        raw = channel.unary_unary("/loligo.Mon/Status")
        return await raw(b"\xff\xff\xff\xff", metadata=md, timeout=5)
    assert _code(_call(config, addr, garbage, fsid=ok, ticket=ticket)) is not None

    async def still_fine() -> tuple[str, int]:
        async with MonClient(config, Keyring.load(config.keyring)) as client:
            await client.connect(timeout=20)
            result = await client.command(osd_set_flag=mon_pb2.OsdSetFlag(flag="noup", set=True))
            status = await client.status(timeout=5)
            return status.view.health, result.code
    assert asyncio.run(still_fine())[1] == 0
    for name in "abc":
        assert cluster.pid(cluster.daemon(f"mon.{name}")) is not None, f"mon.{name} died"


def test_a_restarted_monitor_catches_up_through_a_snapshot(cluster: launcher.LocalCluster) -> None:
    config = load(cluster.conf)

    async def run() -> None:
        async with MonClient(config, Keyring.load(config.keyring)) as client:
            await client.connect(timeout=20)
            status = await client.status(timeout=5)
            victim = next(n for n in "abc" if n != status.leader)
            cluster.kill(f"mon.{victim}")
            for i in range(70):  # several snapshots' worth while it is down
                await client.command(pool_create=mon_pb2.PoolCreate(name=f"snap-{i}", pg_num=8))
            epoch = (await client.get_maps(latest=True)).osdmap.epoch
            await asyncio.to_thread(cluster.start, [f"mon.{victim}"], timeout=30)
            async def caught_up() -> bool:
                mine = (await client.status(timeout=5)).answered.get(victim)
                return mine is not None and mine.applied_index > 0 and \
                    mine.osdmap_epoch >= epoch
            await wait_for_async(caught_up, 20, f"mon.{victim} to catch up to epoch {epoch}")
            return victim
    victim = asyncio.run(run())
    log = cluster.log_file(cluster.daemon(f"mon.{victim}")).read_text()
    assert "installing the leader's snapshot" in log, "caught up without a snapshot transfer"


def test_metrics_endpoint(cluster: launcher.LocalCluster) -> None:
    config = load(cluster.conf)
    port = config.mon_host[0].port + config.metrics_port_offset
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for name in ("loligo_osdmap_epoch", "loligo_mon_term", "loligo_mon_is_leader",
                 "loligo_mon_commit_latency_seconds_bucket", "loligo_mon_quorum_size"):
        assert name in body, name
