"""MonClient against in-process fake monitors on 127.0.0.1 (port 0), served through
rados_py.rpc.make_server with real tickets and caps, applying commands with the real state
machine (mon.cluster_maps) -- only the consensus is faked: the test decides who leads.

`FakeCluster` and `ThreadedFakeCluster` are reused by the CLI tests (test_mon_cli.py)."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from mon import cluster_maps
from rados_py import auth, rpc
from rados_py.auth import Keyring
from rados_py.config import Config, format_toml
from rados_py.errors import InvalidArgument, NotFound, Timeout
from rados_py.maps_wire import monmap_to_proto, osdmap_to_proto
from rados_py.monclient import CommandRefused, MonClient, MonClientSync
from rados_py.proto.loligo import mon_pb2, mon_pb2_grpc

FSID = str(uuid.UUID(int=7))
ADMIN_CAPS = {"mon": "allow *", "osd": "allow *", "mds": "allow *"}
KEYRING = Keyring.generate({"client.admin": ADMIN_CAPS, "client.reader": {"mon": "allow r"}})
MON_OPS = {"/loligo.Mon/Command": "rw", "/loligo.Mon/GetMaps": "r",
           "/loligo.Mon/Subscribe": "r", "/loligo.Mon/Status": "r"}
SERVER_CONFIG = Config.defaults("mon", fsid=FSID)


class FakeMon(mon_pb2_grpc.MonServicer):
    """One monitor: answers like a real one, from the cluster's shared state."""

    def __init__(self, cluster: FakeCluster, name: str) -> None:
        self.cluster = cluster
        self.name = name

    async def Auth(self, request: mon_pb2.AuthRequest, context: Any) -> mon_pb2.AuthReply:
        self.cluster.auth_calls[self.name] += 1
        ticket = self.cluster.authenticator.authenticate(request.proof, time.time())
        return mon_pb2.AuthReply(ticket=ticket.token,
                                 expires_in=ticket.expires_at - ticket.issued_at)

    async def Command(self, request: mon_pb2.MonCommand, context: Any) -> mon_pb2.CommandReply:
        c = self.cluster
        c.commands.append((self.name, request.request_id))
        if self.name in c.hang:
            await asyncio.Event().wait()
        if c.broken:
            raise RuntimeError("a bug in the monitor")  # INTERNAL on the wire
        if c.leader != self.name:
            addr = c.addrs.get(c.leader or "", "")
            return mon_pb2.CommandReply(leader=c.leader or "", leader_addr=addr)
        before = c.state
        c.state, result = cluster_maps.apply(c.state, request)
        if c.state.osdmap is not before.osdmap:
            c.applied[request.request_id] += 1
            async with c.changed:
                c.changed.notify_all()
        if c.drop_replies:
            c.drop_replies -= 1
            raise rpc.Unavailable("connection lost before the reply")  # applied, reply lost
        return mon_pb2.CommandReply(result=result)

    def _maps(self) -> mon_pb2.Maps:
        state = self.cluster.state
        return mon_pb2.Maps(monmap=monmap_to_proto(state.monmap),
                            osdmap=osdmap_to_proto(state.osdmap))

    async def GetMaps(self, request: mon_pb2.GetMapsRequest, context: Any) -> mon_pb2.Maps:
        async with self.cluster.changed:
            await self.cluster.changed.wait_for(
                lambda: self.cluster.state.osdmap.epoch >= request.min_osdmap_epoch)
        return self._maps()

    async def Subscribe(self, request: mon_pb2.SubscribeRequest,
                        context: Any) -> AsyncIterator[mon_pb2.Maps]:
        have = request.have_osdmap_epoch
        while True:
            if self.cluster.state.osdmap.epoch > have or have == 0:
                maps = self._maps()
                have = maps.osdmap.epoch
                yield maps
            async with self.cluster.changed:
                await self.cluster.changed.wait_for(functools.partial(self._newer, have))

    def _newer(self, epoch: int) -> bool:
        return self.cluster.state.osdmap.epoch > epoch

    async def Status(self, request: mon_pb2.MonStatusRequest, context: Any) -> mon_pb2.MonStatus:
        c = self.cluster
        up = [n for n in c.addrs if n in c.servers]
        return mon_pb2.MonStatus(
            name=self.name, fsid=FSID, leader=c.leader or "", term=c.term,
            state="leader" if c.leader == self.name else "follower",
            quorum=up if c.leader else [], osdmap_epoch=c.state.osdmap.epoch,
            health="HEALTH_OK" if len(up) == len(c.addrs) else "HEALTH_WARN",
            peers=[mon_pb2.MonPeer(name=n, addr=a, reachable=n in c.servers)
                   for n, a in c.addrs.items()])


class FakeCluster:
    """Monitors `names` with one shared state; `leader`, `hang`, `drop_replies` are faults."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.addrs: dict[str, str] = {}
        self.servers: dict[str, grpc.aio.Server] = {}
        self.leader: str | None = names[0]
        self.term = 1
        self.hang: set[str] = set()
        self.drop_replies = 0
        self.broken = False
        self.commands: list[tuple[str, bytes]] = []
        self.applied: Counter[bytes] = Counter()
        self.auth_calls: Counter[str] = Counter()
        self.authenticator = auth.Authenticator(KEYRING, ticket_ttl=600, proof_window=30,
                                                audience=f"{FSID}/mon")
        self.changed = asyncio.Condition()
        self.state: cluster_maps.ClusterMaps

    async def start(self) -> FakeCluster:
        for name in self.names:
            await self.start_mon(name)
        self.state = cluster_maps.ClusterMaps.initial(FSID, sorted(self.addrs.items()))
        return self

    async def start_mon(self, name: str) -> None:
        port = self.addrs[name].rpartition(":")[2] if name in self.addrs else "0"
        server_auth = rpc.ServerAuth(service="mon", service_secret=KEYRING.service_secret,
                                     method_ops=MON_OPS,
                                     open_methods=frozenset({"/loligo.Mon/Auth"}))
        server = rpc.make_server(f"127.0.0.1:{port}", SERVER_CONFIG, server_auth)
        mon_pb2_grpc.add_MonServicer_to_server(FakeMon(self, name), server)
        await server.start()
        self.servers[name] = server
        self.addrs[name] = f"127.0.0.1:{rpc.server_port(server)}"

    async def stop_mon(self, name: str) -> None:
        await rpc.stop_server(self.servers.pop(name), grace=0)

    async def stop(self) -> None:
        for name in list(self.servers):
            await self.stop_mon(name)

    def config(self, entity: str = "client.admin", **overrides: Any) -> Config:
        settings: dict[str, Any] = dict(rpc_timeout=5, rpc_retry_initial=0.01,
                                        rpc_retry_max=0.1)
        settings.update(overrides)
        return Config.defaults(entity, fsid=FSID, mon_host=[f"{n}={a}" for n, a in
                                                            self.addrs.items()], **settings)

    def write_files(self, directory: Path, **overrides: Any) -> Path:
        """A config file and a 0600 keyring in `directory`, as `cluster up` would write."""
        KEYRING.write(directory / "keyring", overwrite=True)
        conf = directory / "loligo.toml"
        settings: dict[str, Any] = {"fsid": FSID, "keyring": "keyring",
                                    "mon_host": [f"{n}={a}" for n, a in self.addrs.items()],
                                    "rpc_timeout": 5, "rpc_retry_initial": 0.01,
                                    "rpc_retry_max": 0.1}
        settings.update(overrides)
        conf.write_text(format_toml({"global": settings}))
        return conf


class ThreadedFakeCluster:
    """A FakeCluster on its own event loop in a thread, for synchronous callers (the CLI)."""

    def __init__(self, names: list[str]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.cluster = self.run(FakeCluster(names).start())

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.run(self.cluster.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeCluster]:
    cluster = await FakeCluster(["a", "b", "c"]).start()
    yield cluster
    await cluster.stop()


@pytest_asyncio.fixture
async def client(fake: FakeCluster) -> AsyncIterator[MonClient]:
    c = MonClient(fake.config(), KEYRING)
    yield c
    await c.close()


def pool_create(name: str) -> dict[str, Any]:
    return {"pool_create": mon_pb2.PoolCreate(name=name, pg_num=8, size=1)}


def pools(fake: FakeCluster) -> list[str]:
    return sorted(p.name for p in fake.state.osdmap.pools.values())


# --- commands -----------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_command_follows_redirect_to_leader(fake: FakeCluster, client: MonClient) -> None:
    fake.leader = "c"
    client._next = 0  # start hunting at a follower
    result = await client.command(**pool_create("rbd"))
    assert result.code == 0 and result.value == 1 and result.osdmap_epoch == 2
    assert pools(fake) == ["rbd"]
    first_id = fake.commands[0][1]
    assert [n for n, _ in fake.commands] == ["a", "c"]
    assert all(rid == first_id for _, rid in fake.commands)
    fake.commands.clear()
    await client.command(**pool_create("data"))
    assert [n for n, _ in fake.commands] == ["c"], "the known leader is asked first"


@pytest.mark.asyncio
async def test_resend_after_lost_reply_keeps_request_id(fake: FakeCluster,
                                                        client: MonClient) -> None:
    fake.drop_replies = 1
    result = await client.command(**pool_create("rbd"))
    assert result.code == 0 and result.value == 1
    ids = {rid for _, rid in fake.commands}
    assert len(fake.commands) >= 2 and len(ids) == 1, "resent, always with the same id"
    (rid,) = ids
    assert fake.applied[rid] == 1, "a resent request is applied once"
    client_id, _, tid = rid.decode().partition(":")
    assert uuid.UUID(client_id) and tid == "1"
    await client.command(**pool_create("data"))
    assert fake.commands[-1][1] != rid, "each command gets its own id"
    assert pools(fake) == ["data", "rbd"]


@pytest.mark.asyncio
async def test_resend_after_timeout_goes_elsewhere_with_same_id(fake: FakeCluster) -> None:
    c = MonClient(fake.config(rpc_timeout=3), KEYRING, attempt_timeout=0.3)
    try:
        fake.hang.add("a")
        c._next = 0
        fake.leader = "b"
        await c.command(**pool_create("rbd"))
        assert [n for n, _ in fake.commands] == ["a", "b"]
        assert len({rid for _, rid in fake.commands}) == 1
    finally:
        await c.close()


@pytest.mark.asyncio
async def test_failover_when_leader_dies(fake: FakeCluster, client: MonClient) -> None:
    await client.command(**pool_create("rbd"))
    assert fake.commands[-1][0] == "a"
    await fake.stop_mon("a")
    fake.leader, fake.term = "b", 2
    result = await client.command(**pool_create("data"))
    assert result.code == 0 and pools(fake) == ["data", "rbd"]
    maps = await client.get_maps()
    assert [p.name for p in maps.osdmap.pools.values()] == ["rbd", "data"]


@pytest.mark.asyncio
async def test_no_quorum_gives_timeout_naming_each_monitor(fake: FakeCluster) -> None:
    await fake.stop_mon("b")
    fake.leader = None
    c = MonClient(fake.config(rpc_timeout=0.6), KEYRING)
    start = time.monotonic()
    try:
        with pytest.raises(Timeout) as info:
            await c.command(**pool_create("rbd"))
    finally:
        await c.close()
    assert time.monotonic() - start < 3
    msg = str(info.value)
    assert msg.startswith("no monitor quorum within 0.6s: ")
    assert f"b ({fake.addrs['b']}) unreachable" in msg
    assert f"a ({fake.addrs['a']}) knows no leader" in msg
    assert "check `loligo cluster info` and the monitor logs" in msg
    assert "\n" not in msg
    assert pools(fake) == []


@pytest.mark.asyncio
async def test_all_monitors_down_gives_timeout(fake: FakeCluster) -> None:
    config = fake.config(rpc_timeout=0.5)
    await fake.stop()
    c = MonClient(config, KEYRING)
    try:
        with pytest.raises(Timeout, match=r"a \(127\.0\.0\.1:\d+\) unreachable, b .*unreachable"):
            await c.status()
    finally:
        await c.close()


@pytest.mark.asyncio
async def test_refused_commands_raise_typed_errors(fake: FakeCluster, client: MonClient) -> None:
    await client.command(**pool_create("rbd"))
    with pytest.raises(CommandRefused, match="pool 'rbd' already exists") as refused:
        await client.command(**pool_create("rbd"))
    assert refused.value.code == -17
    with pytest.raises(NotFound, match="pool 'nope' does not exist"):
        await client.command(pool_remove=mon_pb2.PoolRemove(name="nope"))
    with pytest.raises(InvalidArgument, match="cannot set 'colour'"):
        await client.command(pool_set=mon_pb2.PoolSet(name="rbd", key="colour", value="red"))
    with pytest.raises(InvalidArgument, match="no monitor command"):
        await client.command()
    with pytest.raises(InvalidArgument, match="unknown monitor command"):
        await client.command(format_disk=mon_pb2.PoolRemove(name="x"))


@pytest.mark.asyncio
async def test_a_monitor_bug_is_raised_at_once_not_retried(fake: FakeCluster,
                                                            client: MonClient) -> None:
    fake.broken = True
    with pytest.raises(rpc.RemoteError, match=r"INTERNAL: internal error in /loligo\.Mon/Command"):
        await client.command(**pool_create("rbd"))
    assert len(fake.commands) == 1


@pytest.mark.asyncio
async def test_wrong_key_and_missing_caps(fake: FakeCluster) -> None:
    forged = Keyring.generate({"client.admin": ADMIN_CAPS})
    c = MonClient(fake.config(), forged)
    try:
        with pytest.raises(auth.AuthError, match="wrong key"):
            await c.connect()
    finally:
        await c.close()
    reader = MonClient(fake.config("client.reader"), KEYRING)
    try:
        assert (await reader.status()).leader == "a"
        with pytest.raises(auth.PermissionDenied, match=r"client\.reader may not 'rw' on mon"):
            await reader.command(**pool_create("rbd"))
    finally:
        await reader.close()


@pytest.mark.asyncio
async def test_ticket_is_renewed_before_expiry(fake: FakeCluster) -> None:
    now = [time.time()]
    c = MonClient(fake.config(), KEYRING, clock=lambda: now[0])
    try:
        await c.connect()
        await c.status()
        assert sum(fake.auth_calls.values()) == 1
        now[0] += 0.8 * 600  # past 3/4 of the ticket's life (600 s)
        fake.authenticator.proof_window = 10**6  # the fake clock is far from the real one
        await c.status()
        assert sum(fake.auth_calls.values()) == 2
    finally:
        await c.close()


# --- maps and status ----------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_get_maps_waits_for_min_epoch(fake: FakeCluster, client: MonClient) -> None:
    maps = await client.get_maps()
    assert maps.osdmap.epoch == 1 and maps.monmap.names == ("a", "b", "c")
    waiting = asyncio.create_task(client.get_maps(min_epoch=2))
    await client.command(**pool_create("rbd"))
    assert (await asyncio.wait_for(waiting, 5)).osdmap.epoch == 2
    assert client.maps is not None and client.maps.osdmap.epoch == 2


@pytest.mark.asyncio
async def test_subscribe_survives_monitor_death(fake: FakeCluster, client: MonClient) -> None:
    client._next = 0
    stream = client.subscribe()
    try:
        first = await asyncio.wait_for(anext(stream), 5)
        assert first.osdmap.epoch == 1 and first.monmap.fsid == FSID
        await client.command(**pool_create("rbd"))
        assert (await asyncio.wait_for(anext(stream), 5)).osdmap.epoch == 2
        await fake.stop_mon("a")  # the monitor we subscribed at
        fake.leader = "b"
        await client.command(**pool_create("data"))
        after = await asyncio.wait_for(anext(stream), 5)
        assert after.osdmap.epoch == 3 and len(after.osdmap.pools) == 2
        await client.command(**pool_create("more"))
        assert (await asyncio.wait_for(anext(stream), 5)).osdmap.epoch == 4
    finally:
        await stream.aclose()


@pytest.mark.asyncio
async def test_status_asks_every_monitor(fake: FakeCluster, client: MonClient) -> None:
    fake.leader = "b"
    await fake.stop_mon("c")
    status = await client.status()
    assert status.from_leader and status.leader == "b" and status.view.name == "b"
    assert sorted(status.answered) == ["a", "b"]
    assert list(status.unreachable) == ["c"] and status.unreachable["c"] == "unreachable"
    fake.leader = None
    status = await client.status()
    assert not status.from_leader and status.leader == ""


# --- the synchronous wrapper --------------------------------------------------------------------

@pytest.fixture
def threaded() -> Iterator[ThreadedFakeCluster]:
    cluster = ThreadedFakeCluster(["a", "b", "c"])
    yield cluster
    cluster.close()


def test_sync_client(threaded: ThreadedFakeCluster) -> None:
    fake = threaded.cluster
    fake.leader = "c"
    with MonClientSync(fake.config(), KEYRING) as c:
        c.connect()
        assert c.command(**pool_create("rbd")).value == 1
        with pytest.raises(CommandRefused):
            c.command(**pool_create("rbd"))
        assert c.status().leader == "c"
        assert list(c.get_maps().osdmap.pools) == [1]
    with MonClientSync(fake.config(), KEYRING) as again:  # a second loop in one process
        assert again.status().leader == "c"
