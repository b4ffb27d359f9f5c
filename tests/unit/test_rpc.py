"""rpc.py against a real grpc.aio server on 127.0.0.1 (port 0) with a tiny bytes-in/bytes-out
service: cluster check, tickets, caps, limits, retries, deadlines and the error table."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import pytest
import pytest_asyncio

from rados_py import auth, rpc
from rados_py.config import Config
from rados_py.errors import (
    CrushMapError,
    InvalidArgument,
    LoligoError,
    NotFound,
    NotPrimary,
    StaleEpoch,
    Timeout,
)
from tests.waiting import wait_for_async

FSID = str(uuid.UUID(int=1))
SECRET = bytes(range(32))
SERVICE = "loligo.test.Echo"
OPS = {f"/{SERVICE}/{m}": op for m, op in [("Echo", "r"), ("Who", "r"), ("Write", "w"),
                                           ("Fail", "r"), ("Flaky", "r"), ("Hang", "r"),
                                           ("Count", "r"), ("Blocking", "r"), ("Concat", "r"),
                                           ("Upper", "r")]}
CONFIG = Config.defaults("osd.0", fsid=FSID, rpc_timeout=5, rpc_retry_initial=0.01,
                         rpc_retry_max=0.1, rpc_retry_attempts=50)
SERVER_AUTH = rpc.ServerAuth(service="osd", service_secret=SECRET, method_ops=OPS,
                             open_methods=frozenset({f"/{SERVICE}/Hello"}))
FAILURES: dict[bytes, Exception] = {
    b"NotFound": NotFound("no object 'x' in pool 'rbd'"),
    b"StaleEpoch": StaleEpoch("your osdmap epoch 3 is older than 7"),
    b"NotPrimary": NotPrimary("osd.0 is not primary of 1.a in epoch 7"),
    b"InvalidArgument": InvalidArgument("pool name must not be empty"),
    b"CrushMapError": CrushMapError("no such bucket", line=3),
    b"Timeout": Timeout("replica osd.2 did not answer"),
    b"Unavailable": rpc.Unavailable("shutting down"),
    b"ResourceExhausted": rpc.ResourceExhausted("too many requests"),
    b"PermissionDenied": auth.PermissionDenied("client.x may not 'w' on osd"),
    b"AuthError": auth.AuthError("ticket revoked"),
    b"LoligoError": LoligoError("something of no family"),
    b"ValueError": ValueError("secret internals"),
}


@dataclass
class Service:
    flaky_failures: int = 0
    calls: Counter[str] = field(default_factory=Counter)

    def handler(self) -> grpc.GenericRpcHandler:
        async def echo(req: bytes, ctx: Any) -> bytes:
            self.calls["Echo"] += 1
            return req

        async def who(req: bytes, ctx: Any) -> bytes:
            ticket = rpc.current_ticket()
            return ticket.entity.encode() if ticket else b"anonymous"

        async def fail(req: bytes, ctx: Any) -> bytes:
            raise FAILURES[req]

        async def flaky(req: bytes, ctx: Any) -> bytes:
            self.calls["Flaky"] += 1
            if self.calls["Flaky"] <= self.flaky_failures:
                raise rpc.Unavailable("warming up")
            return b"ok"

        async def hang(req: bytes, ctx: Any) -> bytes:
            await asyncio.Event().wait()
            return b""

        async def count(req: bytes, ctx: Any) -> AsyncIterator[bytes]:
            for i in range(int(req)):
                yield str(i).encode()

        async def concat(requests: AsyncIterator[bytes], ctx: Any) -> bytes:
            return b"".join([req async for req in requests])

        async def upper(requests: AsyncIterator[bytes], ctx: Any) -> AsyncIterator[bytes]:
            async for req in requests:
                yield req.upper()

        def blocking(req: bytes, ctx: Any) -> bytes:
            return b"thread" if threading.current_thread() is not threading.main_thread() else b""

        unary = {"Echo": echo, "Who": who, "Write": echo, "Hello": echo, "Admin": echo,
                 "Fail": fail, "Flaky": flaky, "Hang": hang, "Blocking": blocking}
        handlers = {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in unary.items()}
        handlers["Count"] = grpc.unary_stream_rpc_method_handler(count)
        handlers["Concat"] = grpc.stream_unary_rpc_method_handler(concat)
        handlers["Upper"] = grpc.stream_stream_rpc_method_handler(upper)
        return grpc.method_handlers_generic_handler(SERVICE, handlers)


@dataclass
class Running:
    server: grpc.aio.Server
    address: str
    service: Service


Start = Callable[..., Awaitable[Running]]


@pytest_asyncio.fixture
async def start_server() -> AsyncIterator[Start]:
    """Starts servers for a test; all are stopped afterwards, whether the test passed or not."""
    started: list[grpc.aio.Server] = []

    async def start(config: Config = CONFIG, server_auth: rpc.ServerAuth | None = SERVER_AUTH,
                    port: int = 0, service: Service | None = None) -> Running:
        service = service or Service()
        server = rpc.make_server(f"127.0.0.1:{port}", config, server_auth,
                                 handlers=[service.handler()])
        started.append(server)
        await server.start()
        return Running(server, f"127.0.0.1:{rpc.server_port(server)}", service)

    yield start
    for server in started:
        await rpc.stop_server(server, grace=0)


@pytest_asyncio.fixture
async def channels() -> AsyncIterator[Callable[..., grpc.aio.Channel]]:
    opened: list[grpc.aio.Channel] = []

    def open_(address: str, config: Config = CONFIG, *, fsid: str = FSID,
              token: str | None = None, raw: bool = False) -> grpc.aio.Channel:
        if raw:
            channel = grpc.aio.insecure_channel(address)
        else:
            fetch = None if token is None else _returning(token)
            creds = rpc.ClientCredentials(fsid, fetch)
            channel = rpc.open_channel(address, config, creds)
        opened.append(channel)
        return channel

    yield open_
    for channel in opened:
        await channel.close()


def _returning(token: str) -> Callable[[], Awaitable[str]]:
    async def fetch() -> str:
        return token
    return fetch


def ticket(caps: dict[str, str] | None = None, *, secret: bytes = SECRET, ttl: float = 60,
           now: float | None = None, entity: str = "client.test") -> str:
    caps = {"osd": "allow r"} if caps is None else caps
    return auth.issue_ticket(secret, entity, caps, ttl, time.time() if now is None else now).token


def method(channel: grpc.aio.Channel, name: str) -> grpc.aio.UnaryUnaryMultiCallable:
    return channel.unary_unary(f"/{SERVICE}/{name}")


async def call_fails(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call, 10)
    return info.value


@pytest.mark.asyncio
async def test_valid_ticket_passes_and_servicer_sees_who(start_server: Start, channels) -> None:
    srv = await start_server()
    ch = channels(srv.address, token=ticket())
    assert await method(ch, "Echo")(b"ping", timeout=5) == b"ping"
    assert await method(ch, "Who")(b"", timeout=5) == b"client.test"
    items = [item async for item in ch.unary_stream(f"/{SERVICE}/Count")(b"3", timeout=5)]
    assert items == [b"0", b"1", b"2"]


@pytest.mark.asyncio
@pytest.mark.parametrize(("token", "detail"), [
    (None, "no ticket"),
    (ticket(secret=b"x" * 32), "bad signature"),
    (ticket(now=time.time() - 3600, ttl=60), "expired"),
    ("not!a!ticket", "malformed"),
])
async def test_bad_ticket_is_unauthenticated(start_server: Start, channels, token: str | None,
                                             detail: str) -> None:
    srv = await start_server()
    ch = channels(srv.address, raw=True)
    md = [(rpc.FSID_KEY, FSID)] + ([] if token is None else [(rpc.TICKET_KEY, token)])
    err = await call_fails(method(ch, "Echo")(b"ping", timeout=5, metadata=md))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert detail in err.details()
    assert isinstance(rpc.from_grpc_error(err), auth.AuthError)
    assert srv.service.calls["Echo"] == 0
    stream = ch.unary_stream(f"/{SERVICE}/Count")(b"3", timeout=5, metadata=md)
    err = await call_fails(stream.read())
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.asyncio
async def test_open_method_needs_no_ticket_but_the_right_cluster(start_server: Start,
                                                                 channels) -> None:
    srv = await start_server()
    assert await method(channels(srv.address), "Hello")(b"hi", timeout=5) == b"hi"
    other = str(uuid.UUID(int=2))
    err = await call_fails(method(channels(srv.address, fsid=other), "Hello")(b"hi", timeout=5))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.asyncio
async def test_wrong_or_missing_fsid_is_failed_precondition(start_server: Start,
                                                            channels) -> None:
    srv = await start_server()
    other = str(uuid.UUID(int=2))
    err = await call_fails(method(channels(srv.address, fsid=other, token=ticket()),
                                  "Echo")(b"x", timeout=5))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == f"wrong cluster: fsid {other}, this cluster is {FSID}"
    typed = rpc.from_grpc_error(err)
    assert isinstance(typed, rpc.WrongCluster)
    assert isinstance(typed, InvalidArgument)
    raw = channels(srv.address, raw=True)
    err = await call_fails(method(raw, "Echo")(b"x", timeout=5))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no fsid" in err.details()


@pytest.mark.asyncio
async def test_missing_cap_is_permission_denied(start_server: Start, channels) -> None:
    srv = await start_server()
    reader = channels(srv.address, token=ticket({"osd": "allow r"}))
    err = await call_fails(method(reader, "Write")(b"x", timeout=5))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "client.test may not 'w' on osd" in err.details()
    err = await call_fails(method(reader, "Admin")(b"x", timeout=5))  # unlisted: needs '*'
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    no_osd = channels(srv.address, token=ticket({"mon": "allow *"}))
    err = await call_fails(method(no_osd, "Echo")(b"x", timeout=5))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert isinstance(rpc.from_grpc_error(err), auth.PermissionDenied)
    admin = channels(srv.address, token=ticket({"osd": "allow *"}))
    assert await method(admin, "Admin")(b"x", timeout=5) == b"x"
    assert await method(admin, "Write")(b"y", timeout=5) == b"y"


@pytest.mark.asyncio
async def test_oversized_message_is_refused_cleanly(start_server: Start, channels) -> None:
    small = CONFIG.replace(rpc_max_message_size="1KiB")
    srv = await start_server(config=small)
    raw = channels(srv.address, raw=True)  # a client with no limit of its own
    md = ((rpc.FSID_KEY, FSID), (rpc.TICKET_KEY, ticket()))
    err = await call_fails(method(raw, "Echo")(b"x" * 4096, timeout=5, metadata=md))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert isinstance(rpc.from_grpc_error(err), rpc.ResourceExhausted)
    assert await method(raw, "Echo")(b"x" * 100, timeout=5, metadata=md) == b"x" * 100
    ours = channels(srv.address, small, token=ticket())  # our channel refuses before sending
    with pytest.raises(rpc.ResourceExhausted, match=srv.address):
        await rpc.call_with_retry(method(ours, "Echo"), b"x" * 4096, idempotent=True,
                                  config=small, address=srv.address)
    assert srv.service.calls["Echo"] == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.asyncio
async def test_idempotent_call_is_retried_until_a_late_server_starts(start_server: Start,
                                                                     channels) -> None:
    port = _free_port()
    address = f"127.0.0.1:{port}"
    retries: list[grpc.StatusCode] = []
    ch = channels(address, token=ticket())
    call = asyncio.ensure_future(rpc.call_with_retry(
        method(ch, "Echo"), b"ping", idempotent=True, config=CONFIG, timeout=15,
        address=address, on_retry=lambda n, code, pause: retries.append(code)))
    try:
        await wait_for_async(lambda: len(retries) >= 1, 10, "a first attempt to fail")
        assert not call.done()
        await start_server(port=port)
        assert await asyncio.wait_for(call, 15) == b"ping"
    finally:
        call.cancel()
    assert set(retries) == {grpc.StatusCode.UNAVAILABLE}


@pytest.mark.asyncio
async def test_unavailable_is_retried_only_when_idempotent(start_server: Start,
                                                           channels) -> None:
    srv = await start_server(service=Service(flaky_failures=2))
    ch = channels(srv.address, token=ticket())
    retries: list[int] = []
    answer = await rpc.call_with_retry(method(ch, "Flaky"), b"", idempotent=True, config=CONFIG,
                                       on_retry=lambda n, code, pause: retries.append(n))
    assert (answer, retries, srv.service.calls["Flaky"]) == (b"ok", [1, 2], 3)

    srv.service.calls.clear()
    with pytest.raises(rpc.Unavailable, match=f"{srv.address} unavailable after 1 attempt"):
        await rpc.call_with_retry(method(ch, "Flaky"), b"", idempotent=False, config=CONFIG,
                                  address=srv.address, on_retry=lambda *a: retries.append(0))
    assert srv.service.calls["Flaky"] == 1
    assert retries == [1, 2]


@pytest.mark.asyncio
async def test_nobody_listening_gives_unavailable_naming_the_address(channels) -> None:
    address = f"127.0.0.1:{_free_port()}"
    ch = channels(address, token=ticket())
    config = CONFIG.replace(rpc_retry_attempts=3)
    with pytest.raises(rpc.Unavailable, match=rf"{address} unavailable after 3 attempts.*check"):
        await rpc.call_with_retry(method(ch, "Echo"), b"", idempotent=True, config=config,
                                  address=address)


@pytest.mark.asyncio
async def test_deadline_is_honoured(start_server: Start, channels) -> None:
    srv = await start_server()
    ch = channels(srv.address, token=ticket())
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Timeout, match=f"no answer from {srv.address} within 0.3s"):
        await asyncio.wait_for(rpc.call_with_retry(
            method(ch, "Hang"), b"", idempotent=True, config=CONFIG, timeout=0.3,
            address=srv.address), 10)
    assert loop.time() - started < 3
    # per-attempt deadlines within the budget are retried, still ending at the budget
    retries: list[grpc.StatusCode] = []
    with pytest.raises(Timeout):
        await asyncio.wait_for(rpc.call_with_retry(
            method(ch, "Hang"), b"", idempotent=True, config=CONFIG, timeout=0.5,
            attempt_timeout=0.1, on_retry=lambda n, code, p: retries.append(code)), 10)
    assert retries and set(retries) == {grpc.StatusCode.DEADLINE_EXCEEDED}


@pytest.mark.asyncio
@pytest.mark.parametrize("name", sorted(FAILURES))
async def test_typed_errors_round_trip_through_status_codes(start_server: Start, channels,
                                                            name: bytes) -> None:
    srv = await start_server()
    ch = channels(srv.address, token=ticket())
    sent = FAILURES[name]
    with pytest.raises(LoligoError) as info:
        await rpc.call_with_retry(method(ch, "Fail"), name, idempotent=False, config=CONFIG)
    got = info.value
    if isinstance(sent, LoligoError):
        family = next(cls for cls, _ in rpc._ERRORS if isinstance(sent, cls))
        assert type(got) is family
        assert got.grpc_code == rpc.to_grpc_status(sent)  # type: ignore[attr-defined]
        if family not in (Timeout, rpc.Unavailable):  # those get the caller's context instead
            assert str(got) == str(sent)
    else:  # a bug on the server: no internals leak, the client sees a RemoteError
        assert type(got) is rpc.RemoteError
        assert "secret internals" not in str(got)
        assert "internal error in /loligo.test.Echo/Fail" in str(got)


@pytest.mark.asyncio
async def test_request_streams_are_guarded_too(start_server: Start, channels) -> None:
    srv = await start_server()

    async def parts() -> AsyncIterator[bytes]:
        for part in (b"a", b"b", b"c"):
            yield part

    ch = channels(srv.address, token=ticket())
    assert await ch.stream_unary(f"/{SERVICE}/Concat")(parts(), timeout=5) == b"abc"
    upper = ch.stream_stream(f"/{SERVICE}/Upper")(parts(), timeout=5)
    assert [item async for item in upper] == [b"A", b"B", b"C"]

    async def nothing_yet() -> AsyncIterator[bytes]:
        # The guard refuses before reading a request. The client sends nothing before that
        # refusal, because grpc.aio lets a write that fails after the server's status
        # overwrite that status with INTERNAL (grpc/grpc#36066).
        await asyncio.Event().wait()
        yield b""

    anonymous = channels(srv.address)
    call = anonymous.stream_unary(f"/{SERVICE}/Concat")(nothing_yet(), timeout=5)
    assert (await call_fails(call)).code() == grpc.StatusCode.UNAUTHENTICATED
    call = anonymous.stream_stream(f"/{SERVICE}/Upper")(nothing_yet(), timeout=5)
    assert (await call_fails(call.read())).code() == grpc.StatusCode.UNAUTHENTICATED


def test_server_auth_is_checked_when_built() -> None:
    with pytest.raises(InvalidArgument, match="unknown service"):
        rpc.ServerAuth(service="rgw", service_secret=SECRET)
    with pytest.raises(InvalidArgument, match="bad op kind 'rq'"):
        rpc.ServerAuth(service="osd", service_secret=SECRET, method_ops={"/x/Y": "rq"})
    with pytest.raises(InvalidArgument, match="at least 16"):
        rpc.ServerAuth(service="osd", service_secret=b"short")


@pytest.mark.asyncio
async def test_blocking_servicer_runs_off_the_event_loop(start_server: Start, channels) -> None:
    srv = await start_server()
    ch = channels(srv.address, token=ticket())
    assert await method(ch, "Blocking")(b"", timeout=5) == b"thread"


@pytest.mark.asyncio
async def test_port_in_use_is_a_clear_error(start_server: Start) -> None:
    srv = await start_server()
    with pytest.raises(rpc.Unavailable, match=r"cannot listen on 127\.0\.0\.1"):
        await start_server(port=rpc.server_port(srv.server))


@pytest.mark.asyncio
async def test_credentials_renew_the_ticket_before_expiry() -> None:
    now = [1000.0]
    fetched: list[str] = []

    async def fetch() -> str:
        token = auth.issue_ticket(SECRET, "client.test", {}, 100, now[0]).token
        fetched.append(token)
        return token

    creds = rpc.ClientCredentials(FSID, fetch, clock=lambda: now[0])
    first = await creds.metadata()
    assert first == [(rpc.FSID_KEY, FSID), (rpc.TICKET_KEY, fetched[0])]
    now[0] += 70
    assert await creds.metadata() == first and len(fetched) == 1
    now[0] += 10  # 80% of the lifetime
    await asyncio.gather(creds.metadata(), creds.metadata())
    assert len(fetched) == 2
    creds.invalidate()
    await creds.metadata()
    assert len(fetched) == 3


@pytest.mark.asyncio
async def test_credentials_keep_a_valid_ticket_when_renewal_fails() -> None:
    now = [0.0]
    outcome: list[Any] = []

    async def fetch() -> str:
        if outcome:
            raise rpc.Unavailable("monitors down")
        outcome.append(1)
        return auth.issue_ticket(SECRET, "client.test", {}, 100, now[0]).token

    creds = rpc.ClientCredentials(FSID, fetch, clock=lambda: now[0])
    token = await creds.ticket()
    now[0] = 90
    assert await creds.ticket() == token  # renewal failed, ticket still valid
    now[0] = 101
    with pytest.raises(rpc.Unavailable):
        await creds.ticket()


class _FakeError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str, trailers: tuple = ()) -> None:
        self._code, self._details, self._trailers = code, details, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return self._trailers


def test_error_table_without_family_names() -> None:
    """Statuses made by gRPC itself or a foreign server still come back typed."""
    code = grpc.StatusCode
    assert isinstance(rpc.from_grpc_error(_FakeError(code.NOT_FOUND, "gone")), NotFound)
    assert isinstance(rpc.from_grpc_error(_FakeError(code.UNAVAILABLE, "x")), rpc.Unavailable)
    unknown = rpc.from_grpc_error(_FakeError(code.UNIMPLEMENTED, "Method not found!"), "h:1")
    assert type(unknown) is rpc.RemoteError
    assert str(unknown) == "h:1: UNIMPLEMENTED: Method not found!"
    # a family name that does not match the code is not trusted
    odd = rpc.from_grpc_error(_FakeError(code.NOT_FOUND, "x", ((rpc.ERROR_KEY, "AuthError"),)))
    assert type(odd) is NotFound
    multi = rpc.from_grpc_error(_FakeError(code.FAILED_PRECONDITION, "a\nb"))
    assert "\n" not in str(multi)
    assert rpc.to_grpc_status(ValueError()) == code.INTERNAL
    assert rpc.to_grpc_status(CrushMapError("x")) == code.INVALID_ARGUMENT


def test_credentials_send_fsid_and_the_senders_map_epoch() -> None:
    epoch = {"now": 7}
    creds = rpc.ClientCredentials("the-fsid", epoch=lambda: epoch["now"])
    assert asyncio.run(creds.metadata()) == [(rpc.FSID_KEY, "the-fsid"), (rpc.EPOCH_KEY, "7")]
    epoch["now"] = 9
    assert (rpc.EPOCH_KEY, "9") in asyncio.run(creds.metadata())
