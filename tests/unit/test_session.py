"""Sessions (rados_py/session.py): many requests over one stream, batched, with typed errors.

A real grpc.aio server on 127.0.0.1 serves `Osd/Session` with a small dispatcher; the
requester's side is the `Session` the client library and the OSDs use.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
import pytest_asyncio

from rados_py import auth, rpc, session
from rados_py.config import Config
from rados_py.errors import NotFound, Timeout
from rados_py.proto.loligo import osd_pb2, osd_pb2_grpc
from tests.waiting import wait_for_async

FSID = "5a4e0b55-7b4e-4f43-9a52-b8a3b9ec3d1f"
SECRET = b"s" * 32
CONFIG = Config.defaults(fsid=FSID)


class Echo(osd_pb2_grpc.OsdServicer):
    """Answers an op frame with its name in the reply's message; names steer the test."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.order: list[bytes] = []
        self.entities: list[str] = []

    async def Session(self, requests: Any, context: Any) -> None:
        async def counted() -> AsyncIterator[osd_pb2.FrameBatch]:
            async for batch in requests:
                self.batches.append(len(batch.frames))
                yield batch
        await session.serve(counted(), context, self.dispatch, "echo")

    def dispatch(self, frame: osd_pb2.Frame, replier: session.Replier
                 ) -> Awaitable[None] | None:
        name = frame.op.name
        self.order.append(name)
        if replier.ticket is not None:
            self.entities.append(replier.ticket.entity)
        if name == b"missing":
            replier.fail(frame.tid, NotFound("no such object"))
        elif name == b"silent":
            pass
        elif name.startswith(b"slow"):
            async def later() -> None:
                await asyncio.sleep(0.2)
                replier.send(frame.tid, session.OP_REPLY,
                             osd_pb2.OpReply(message=name.decode()).SerializeToString())
            replier.spawn(later())
        else:
            replier.send(frame.tid, session.OP_REPLY,
                         osd_pb2.OpReply(message=name.decode()).SerializeToString())
        return None


@pytest_asyncio.fixture
async def served() -> AsyncIterator[Callable[..., Awaitable[tuple[Echo, str, grpc.aio.Server]]]]:
    servers: list[grpc.aio.Server] = []

    async def start(server_auth: rpc.ServerAuth | None = None) -> tuple[Echo, str,
                                                                       grpc.aio.Server]:
        echo = Echo()
        server = rpc.make_server("127.0.0.1:0", CONFIG, server_auth)
        osd_pb2_grpc.add_OsdServicer_to_server(echo, server)
        await server.start()
        servers.append(server)
        return echo, f"127.0.0.1:{rpc.server_port(server)}", server

    yield start
    for server in servers:
        await rpc.stop_server(server, 0)


def op(name: bytes) -> bytes:
    return osd_pb2.OpRequest(name=name).SerializeToString()


async def open_session(address: str, md: Callable[[], Awaitable[Any]] | None = None,
                       recheck: float = session.Session.RECHECK
                       ) -> tuple[grpc.aio.Channel, session.Session]:
    channel = rpc.open_channel(address, CONFIG, intercept=False)

    async def fsid_only() -> tuple[tuple[str, str], ...]:
        return ((rpc.FSID_KEY, FSID),)
    return channel, session.Session(channel, md or fsid_only, "test", recheck=recheck)


@pytest.mark.asyncio
async def test_requests_in_flight_share_messages_and_get_their_own_replies(served) -> None:
    echo, address, _ = await served()
    channel, s = await open_session(address)
    try:
        names = [b"o%d" % i for i in range(50)]
        # sent before the stream is even open, all in one go: they still leave in order
        replies = await asyncio.gather(*[s.send(session.OP, op(n), 5) for n in names])
        assert [r.op_reply.message.encode() for r in replies] == names
        assert echo.order == names                       # frames arrive in the order sent
        assert len(echo.batches) < len(names)            # ...several to a message
        assert sum(echo.batches) == len(names)
    finally:
        await s.close()
        await channel.close()


@pytest.mark.asyncio
async def test_errors_travel_typed_and_slow_replies_do_not_hold_others(served) -> None:
    _, address, _ = await served()
    channel, s = await open_session(address)
    try:
        with pytest.raises(NotFound, match="no such object"):
            await s.call(session.OP, op(b"missing"), 5)
        slow = asyncio.ensure_future(s.call(session.OP, op(b"slow1"), 5))
        start = time.monotonic()
        fast = await s.call(session.OP, op(b"fast"), 5)
        assert fast.op_reply.message == "fast" and time.monotonic() - start < 0.2
        assert (await slow).op_reply.message == "slow1"
        with pytest.raises(Timeout):
            await s.call(session.OP, op(b"silent"), 0.3)
        assert (await s.call(session.OP, op(b"after"), 5)).op_reply.message == "after"
    finally:
        await s.close()
        await channel.close()


@pytest.mark.asyncio
async def test_a_broken_stream_fails_what_is_in_flight_and_the_next_call_reconnects(
        served) -> None:
    echo, address, server = await served()
    channel, s = await open_session(address)
    try:
        assert (await s.call(session.OP, op(b"a"), 5)).op_reply.message == "a"
        pending = asyncio.ensure_future(s.call(session.OP, op(b"silent"), 30))
        await wait_for_async(lambda: b"silent" in echo.order, 5, "the request at the server")
        await rpc.stop_server(server, 0)
        with pytest.raises(rpc.Unavailable):
            await asyncio.wait_for(pending, 10)
        _, address2, _ = await served()
        assert address2 != address
        with pytest.raises(rpc.Unavailable):  # still nobody at the old address
            await s.call(session.OP, op(b"b"), 2)
    finally:
        await s.close()
        await channel.close()


@pytest.mark.asyncio
async def test_credentials_are_checked_when_the_stream_opens_and_renewed_ones_reopen_it(
        served) -> None:
    server_auth = rpc.ServerAuth(service="osd", service_secret=SECRET,
                                 method_ops={"/loligo.Osd/Session": "r"})
    echo, address, _ = await served(server_auth)

    def ticket(entity: str) -> str:
        return auth.issue_ticket(SECRET, entity, {"osd": "allow r"}, 60, time.time()).token

    current = {"token": ticket("client.one")}

    async def md() -> tuple[tuple[str, str], ...]:
        return ((rpc.FSID_KEY, FSID), (rpc.TICKET_KEY, current["token"]))

    channel, s = await open_session(address, md, recheck=0.0)  # asked before every request
    try:
        await s.call(session.OP, op(b"x"), 5)
        current["token"] = ticket("client.two")         # renewed: a new stream carries it
        await s.call(session.OP, op(b"y"), 5)
        assert echo.entities == ["client.one", "client.two"]
        current["token"] = "not-a-ticket"
        with pytest.raises(auth.AuthError):
            await s.call(session.OP, op(b"z"), 5)
    finally:
        await s.close()
        await channel.close()


def test_batches_are_protobufs_wire_format() -> None:
    frames = [(1, session.OP, op(b"a"), 2500), (300, session.ERROR, osd_pb2.ErrorReply(
        family="NotFound", message="m").SerializeToString(), 0)]
    parsed = osd_pb2.FrameBatch.FromString(session.encode_batch(frames))
    assert [f.tid for f in parsed.frames] == [1, 300]
    assert [f.timeout_ms for f in parsed.frames] == [2500, 0]
    assert parsed.frames[0].op.name == b"a"
    assert parsed.frames[1].error.family == "NotFound"
    assert isinstance(rpc.error_from_reply("NotFound", "m"), NotFound)
    assert isinstance(rpc.error_from_reply("NoSuchFamily", "m"), rpc.RemoteError)
