"""Real OSDs (1 monitor, 3 OSDs, pool size 3) against garbage and oversized requests: raw bytes
on the port, undecodable protobuf, a message over rpc_max_message_size, names over the limit,
huge offsets and lengths, unknown op kinds, a far-future epoch. Each is refused with a clear,
typed error; afterwards every OSD still serves a normal op and has logged no traceback.

The cluster runs with a 4 MiB message limit so that "over the limit" costs little."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import grpc
import grpc.aio
import pytest

from cluster import launcher
from osd.pg import MAX_NSPACE, MAX_OBJECT_NAME
from rados_py import auth, rpc
from rados_py.auth import Keyring
from rados_py.config import Config
from rados_py.errors import InvalidArgument, LoligoError
from rados_py.proto.loligo import osd_pb2, osd_pb2_grpc
from rados_py.rados import Rados
from tests.integration import running_cluster

T = TypeVar("T")
POOL = "robust"
LIMIT = 4 << 20
K = osd_pb2.OsdOp


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launcher.LocalCluster]:
    # a short rpc_timeout bounds how long a far-future epoch can hold a request
    with running_cluster(tmp_path_factory.mktemp("osd-robust") / "cluster", osds=3, pool=POOL,
                         settings={"rpc_max_message_size": LIMIT, "rpc_timeout": 3.0}) as c:
        yield c


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def osd_addrs(c: launcher.LocalCluster) -> list[str]:
    return [d.addr for d in c.osds]


def admin_creds(config: Config) -> rpc.ClientCredentials:
    ring = Keyring.load(config.keyring)

    async def ticket() -> str:
        return auth.issue_ticket(ring.service_secret, "client.admin",
                                 ring.get("client.admin").caps, 60, time.time()).token

    return rpc.ClientCredentials(config.fsid, ticket)


# a field header with a length far past the end of the message: never valid protobuf
GARBAGE = b"\x0a\xff\xff\xff\xff\x0f garbage"


async def raw_call(config: Config, addr: str, method: str, payload: bytes,
                   unlimited: bool = False) -> tuple[grpc.StatusCode, str]:
    """Send `payload` as the request bytes of `method`; the status it is refused with."""
    creds = admin_creds(config)
    if unlimited:  # a sender that ignores the cluster's limit, to test the OSD's own
        channel = grpc.aio.insecure_channel(
            addr, options=[("grpc.max_send_message_length", -1),
                           ("grpc.max_receive_message_length", -1)],
            interceptors=creds.interceptors())
    else:
        channel = rpc.open_channel(addr, config, creds)
    async with channel:
        call = channel.unary_unary(method)  # no serializer: the bytes go out as they are
        try:
            await call(payload, timeout=10)
        except grpc.aio.AioRpcError as err:
            detail = err.details() or ""
            assert detail, f"{method}: refused with {err.code().name} but no detail"
            return err.code(), detail
    raise AssertionError(f"{method} accepted {len(payload)} bytes of garbage")


def assert_serving(c: launcher.LocalCluster, tag: str) -> None:
    """Every OSD process is alive, a normal write and read work, and no OSD logged a traceback
    (an unmapped exception is a bug even when the client got an error)."""
    for d in c.osds:
        assert c.pid(d) is not None, f"{d.name} died after {tag}"

    async def go() -> None:
        async with Rados(c.config) as r:
            io = await r.open_ioctx(POOL)
            for i in range(8):  # several names, so each OSD serves as a primary
                await io.write_full(f"canary-{i}", tag.encode())
                assert await io.read(f"canary-{i}") == tag.encode()
    run(go())
    for d in c.osds:
        text = c.log_file(d).read_text(errors="replace")
        bad = unexpected_tracebacks(text)
        assert not bad, f"{d.name} logged a traceback after {tag}:\n{bad[0]}"


# grpc itself logs this one (with a traceback) when a request does not decode: see
# test_undecodable_protobuf_is_invalid_argument
GRPC_DECODE_ERROR = "grpc._cython.cygrpc: Unexpected [DecodeError] raised by servicer method"


def unexpected_tracebacks(log_text: str) -> list[str]:
    """Tracebacks in a daemon log other than grpc's own for undecodable requests."""
    lines = log_text.splitlines()
    return ["\n".join(lines[max(0, i - 1):i + 12]) for i, line in enumerate(lines)
            if line.startswith("Traceback") and not (i and GRPC_DECODE_ERROR in lines[i - 1])]


def test_raw_bytes_on_the_port(cluster: launcher.LocalCluster) -> None:
    for addr in osd_addrs(cluster):
        host, port = addr.rsplit(":", 1)
        for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00" * 70000,
                     # a valid HTTP/2 preface followed by a frame header claiming 16 MiB
                     b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01"
                     + b"\xab" * 1000):
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.settimeout(5)
                try:
                    s.sendall(junk)
                    # the server must answer (GOAWAY) or hang up, not wait for more forever
                    deadline = time.monotonic() + 5
                    while time.monotonic() < deadline and s.recv(65536):
                        pass
                except (ConnectionResetError, BrokenPipeError):
                    pass  # hanging up on garbage is a fine answer
                except TimeoutError:
                    pytest.fail(f"{addr}: neither answered nor closed after {junk[:20]!r}...")
    assert_serving(cluster, "raw bytes")


def test_undecodable_protobuf(cluster: launcher.LocalCluster) -> None:
    config = cluster.config
    addr = osd_addrs(cluster)[0]
    for method in ("/loligo.Osd/Op", "/loligo.Osd/List", "/loligo.Osd/RepOp",
                   "/loligo.Osd/DumpPg", "/loligo.OsdPeer/Query", "/loligo.OsdPeer/Push"):
        code, detail = run(raw_call(config, addr, method, GARBAGE))
        # refused as bad input, saying why, by our code (not grpc's own UNKNOWN + traceback)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, code, detail)
        assert "not a valid message" in detail and "Error parsing message" in detail, detail
    assert_serving(cluster, "undecodable protobuf")


def test_message_over_the_limit(cluster: launcher.LocalCluster) -> None:
    config = cluster.config
    addr = osd_addrs(cluster)[1]
    big = osd_pb2.OpRequest(name=b"big", ops=[K(kind=K.WRITE_FULL, data=b"x" * (LIMIT + 1024))])
    code, detail = run(raw_call(config, addr, "/loligo.Osd/Op", big.SerializeToString(),
                                unlimited=True))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, detail)

    async def through_the_client() -> None:
        async with Rados(config) as r:
            io = await r.open_ioctx(POOL)
            # the client refuses before sending: it knows the limit from the same config
            with pytest.raises(InvalidArgument, match="rpc_max_message_size"):
                await io.write_full("too-big", b"y" * LIMIT)
            # just under the client's own bound goes through
            await io.write_full("fits", b"z" * r.max_data)
            assert len(await io.read("fits")) == r.max_data
    run(through_the_client())
    assert_serving(cluster, "oversized message")


def test_names_over_the_limit(cluster: launcher.LocalCluster) -> None:
    async def go() -> None:
        async with Rados(cluster.config) as r:
            io = await r.open_ioctx(POOL)
            longest = b"n" * MAX_OBJECT_NAME
            await io.write_full(longest, b"ok")
            assert await io.read(longest) == b"ok"
            with pytest.raises(InvalidArgument, match=f"more than {MAX_OBJECT_NAME}"):
                await io.write_full(longest + b"n", b"no")
            with pytest.raises(InvalidArgument, match=f"more than {MAX_OBJECT_NAME}"):
                await io.read(b"r" * 100_000)
            wide = await r.open_ioctx(POOL, b"s" * (MAX_NSPACE + 1))
            with pytest.raises(InvalidArgument, match=f"more than {MAX_NSPACE}"):
                await wide.write_full("o", b"no")
            with pytest.raises(InvalidArgument, match="must not be empty"):
                await io.write_full(b"", b"no")
    run(go())
    assert_serving(cluster, "long names")


def test_huge_offsets_lengths_and_unknown_ops(cluster: launcher.LocalCluster) -> None:
    async def go() -> None:
        async with Rados(cluster.config) as r:
            io = await r.open_ioctx(POOL)
            await io.write_full("target", b"0123456789")
            for bad in (lambda: io.write("target", b"x", 1 << 40),
                        lambda: io.write("target", b"x", (1 << 64) - 1),
                        lambda: io.truncate("target", 1 << 62),
                        lambda: io.zero("target", 5, (1 << 64) - 6)):
                with pytest.raises(InvalidArgument, match="exceeds"):
                    await bad()
            assert await io.read("target") == b"0123456789"   # nothing of them applied
            # reads past the end are empty, and a huge length is capped, never allocated
            assert await io.read("target", 1 << 62, 10) == b""
            assert await io.read("target", 4, (1 << 64) - 1) == b"456789"
            # an op kind this OSD does not know: EOPNOTSUPP, nothing applied
            with pytest.raises(LoligoError) as info:
                await r.execute(io.pool_id, b"", b"target", [K(kind=999)])
            assert getattr(info.value, "errno", None) == errno.EOPNOTSUPP
            with pytest.raises(InvalidArgument, match="at least one op"):
                await r.execute(io.pool_id, b"", b"target", [])
            assert await io.read("target") == b"0123456789"
    run(go())
    assert_serving(cluster, "huge offsets")


def test_requests_that_do_not_match_the_map(cluster: launcher.LocalCluster) -> None:
    """A pool or PG that does not exist, a far-future epoch: refused, not guessed at."""
    config = cluster.config

    async def go() -> None:
        async with Rados(config) as r:
            epoch = r.osdmap.epoch
            pool = r.pool_id(POOL)
            channel = rpc.open_channel(osd_addrs(cluster)[2], config, admin_creds(config))
            async with channel:
                stub = osd_pb2_grpc.OsdStub(channel)
                cases = {
                    "no pool": osd_pb2.OpRequest(epoch=epoch, pool=12345, name=b"o", client="t",
                                                 tid=1, ops=[K(kind=K.STAT)]),
                    "wrong PG": osd_pb2.OpRequest(epoch=epoch, pool=pool, pg_seed=(1 << 32) - 1,
                                                  name=b"o", client="t", tid=2,
                                                  ops=[K(kind=K.STAT)]),
                    "no PG to list": osd_pb2.ListRequest(epoch=epoch, pool=pool, pg_seed=9999),
                }
                for what, req in cases.items():
                    call = stub.List if isinstance(req, osd_pb2.ListRequest) else stub.Op
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await call(req, timeout=10)
                    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
                # an epoch no monitor has: the OSD asks for it, then gives up within its
                # rpc_timeout instead of holding the request forever
                t0 = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Op(osd_pb2.OpRequest(epoch=1 << 62, pool=pool, name=b"o",
                                                    client="t", tid=3, ops=[K(kind=K.STAT)]),
                                  timeout=30)
                assert info.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                             grpc.StatusCode.INVALID_ARGUMENT), info.value
                assert time.monotonic() - t0 < 20
    run(go())
    assert_serving(cluster, "requests off the map")
