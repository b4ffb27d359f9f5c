"""Daemons never die of a peer's behaviour. Clients that reset the connection in the middle of a
large GET or PUT, half-close it, trickle their bytes, hold a thousand idle connections, send
garbage, or are killed mid-request, against the gateway, an OSD, a monitor, an MDS and the
manager's dashboard: after each, the same daemon process (same pid) answers a normal request.

(Found by Ceph's s3-tests: `loligo` set SIGPIPE to SIG_DFL for every command, daemons
included, so the first write to a socket whose client had reset it killed the gateway.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config as BotoConfig

from cluster import launcher
from rados_py.rados import Rados
from tests.integration import random_base_port
from tests.integration.gateway_fixture import ROOT, GatewayProcess, running_gateway
from tests.waiting import wait_for

MiB = 1 << 20
IDLE = 1000  # idle connections held open at once
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path_factory.mktemp("rude") / "cluster") as g:
        yield g


def s3_client(gw: GatewayProcess) -> Any:
    key = gw.user["keys"][0]
    return boto3.client("s3", endpoint_url=gw.url, aws_access_key_id=key["access_key"],
                        aws_secret_access_key=key["secret_key"], region_name="us-east-1",
                        config=BotoConfig(retries={"max_attempts": 1}))


def connect(addr: tuple[str, int]) -> socket.socket:
    s = socket.create_connection(addr, timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def reset(s: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a crashed or impatient client does."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def raw_request(method: str, url: str, headers: dict[str, str] | None = None) -> bytes:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@contextlib.contextmanager
def idle_connections(addr: tuple[str, int], count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that say nothing; the test process may need a higher fd limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1000), hard))
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            held.append(socket.create_connection(addr, timeout=10))
        yield held
    finally:
        for s in held:
            s.close()


def alive(pid: int) -> bool:
    return launcher._alive(pid)


def sigpipe_ignored(pid: int) -> bool:
    """Whether the process ignores SIGPIPE (its SigIgn mask in /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(status.split("SigIgn:")[1].split()[0], 16)
    return bool(mask & (1 << (signal.SIGPIPE - 1)))


def test_every_daemon_ignores_sigpipe(gw: GatewayProcess) -> None:
    """The root cause: a write to a socket the peer closed must be an error (EPIPE) the
    daemon handles, never a signal that kills it."""
    cluster = gw.cluster
    for d in cluster.daemons + cluster.gateways:
        pid = cluster.pid(d)
        assert pid is not None and sigpipe_ignored(pid), f"{d.name} would die of SIGPIPE"


# --- the gateway --------------------------------------------------------------------------------

def test_gateway_survives_clients_that_vanish_mid_request(gw: GatewayProcess) -> None:
    s3 = s3_client(gw)
    bucket = f"rude-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    body = os.urandom(16 * MiB)
    s3.put_object(Bucket=bucket, Key="big", Body=body)
    pid = gw.cluster.pid(gw.cluster.daemon("gateway.1"))
    assert pid is not None
    addr = ("127.0.0.1", gw.port)

    def still_serving(what: str) -> None:
        log = gw.cluster.log_file(gw.cluster.daemon("gateway.1"))
        assert alive(pid), f"the gateway died after {what} (log: {log})"
        got = s3.get_object(Bucket=bucket, Key="big", Range="bytes=0-99")["Body"].read()
        assert got == body[:100], what
        assert gw.cluster.pid(gw.cluster.daemon("gateway.1")) == pid, what

    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "big"})
    for how in ("rst", "shutdown", "rst", "shutdown"):
        # while the gateway streams a large object to us: an RST, or a shutdown of both
        # directions (the gateway's next writes then meet EPIPE: SIGPIPE, were it not ignored)
        s = connect(addr)
        s.sendall(raw_request("GET", get_url))
        got = 0
        while got < 256 * 1024:
            chunk = s.recv(65536)
            assert chunk, "the gateway closed before sending the object"
            got += len(chunk)
        if how == "rst":
            reset(s)
        else:
            s.shutdown(socket.SHUT_RDWR)
            time.sleep(0.5)
            s.close()
    still_serving("clients reset their connections during large GETs")

    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "cut"})
    for _ in range(3):  # RST in the middle of a large PUT body
        s = connect(addr)
        s.sendall(raw_request("PUT", put_url, {"Content-Length": str(32 * MiB)}))
        s.sendall(os.urandom(3 * MiB))
        reset(s)
    still_serving("clients reset their connections during large PUTs")
    names = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert names == ["big"], "a cut-off upload leaves no object"

    # half-closed: a request cut off in its headers, then FIN; the gateway must close too
    s = connect(addr)
    s.sendall(raw_request("GET", get_url)[:40])
    s.shutdown(socket.SHUT_WR)
    s.settimeout(30)
    while s.recv(65536):
        pass
    s.close()
    # a complete GET, then FIN before reading the answer
    s = connect(addr)
    s.sendall(raw_request("GET", get_url))
    s.shutdown(socket.SHUT_WR)
    time.sleep(0.2)  # let the gateway start writing into a half-closed connection
    reset(s)
    still_serving("half-closed connections")

    # a slow client: headers and a small body trickled a few bytes at a time
    small = os.urandom(2000)
    put_small = s3.generate_presigned_url("put_object",
                                          Params={"Bucket": bucket, "Key": "slow"})
    request = raw_request("PUT", put_small, {"Content-Length": str(len(small))}) + small
    s = connect(addr)
    for i in range(0, len(request), 97):
        s.sendall(request[i:i + 97])
        time.sleep(0.01)
    s.settimeout(30)
    answer = s.recv(65536)
    s.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert s3.get_object(Bucket=bucket, Key="slow")["Body"].read() == small

    # garbage instead of HTTP, then RST
    s = connect(addr)
    s.sendall(os.urandom(4096))
    reset(s)
    still_serving("garbage and slow clients")

    with idle_connections(addr, IDLE):
        started = time.monotonic()
        still_serving(f"{IDLE} idle connections")
        assert time.monotonic() - started < 10
    still_serving(f"{IDLE} idle connections went away")
    log = gw.cluster.log_file(gw.cluster.daemon("gateway.1")).read_text(errors="replace")
    assert "Traceback" not in log, "a client's disconnection is one log line, not a traceback"


# --- OSDs and monitors (gRPC over HTTP/2) ---------------------------------------------------------

KILLED_CLIENT = r"""
import asyncio, sys
from rados_py.config import load
from rados_py.rados import Rados
conf, mode = sys.argv[1:3]
async def main():
    async with Rados(load(conf)) as r:
        if mode == "write":
            io = await r.open_ioctx("data")
            data = b"x" * (40 << 20)
            print("go", flush=True)
            while True:
                await io.write_full("killed-mid-write", data)
        else:  # a monitor subscription, and commands, in flight when killed
            print("go", flush=True)
            async for _ in r.mon.subscribe():
                await r.mon.status()
asyncio.run(main())
"""


def kill_mid_request(cluster: launcher.LocalCluster, mode: str, delay: float,
                     script: str = KILLED_CLIENT) -> None:
    """A client process that is SIGKILLed while its request is in flight."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", script, str(cluster.conf), mode],
                            stdout=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"go"
        time.sleep(delay)
    finally:
        proc.kill()
        proc.wait()


def abuse_grpc_port(addr: tuple[str, int]) -> None:
    """What a broken or hostile peer does to an HTTP/2 server, short of a flood."""
    s = connect(addr)  # half an HTTP/2 preface, then RST
    s.sendall(HTTP2_PREFACE[:10])
    reset(s)
    s = connect(addr)  # garbage, then half-close and wait for the server to close
    s.sendall(os.urandom(2048))
    s.shutdown(socket.SHUT_WR)
    s.settimeout(30)
    with contextlib.suppress(ConnectionResetError):
        while s.recv(65536):
            pass
    s.close()
    s = connect(addr)  # a preface trickled a byte at a time, then RST
    for byte in HTTP2_PREFACE:
        s.send(bytes([byte]))
        time.sleep(0.01)
    reset(s)


def rados_works(cluster: launcher.LocalCluster) -> bool:
    async def go() -> bool:
        async with Rados(cluster.config) as r:
            io = await r.open_ioctx("data")
            name = f"after-{uuid.uuid4().hex[:6]}"
            await io.write_full(name, b"fine")
            ok = await io.read(name) == b"fine"
            st = await r.mon.status()
            return ok and st.from_leader
    return asyncio.run(go())


def test_osds_and_monitors_survive_clients_that_vanish_mid_request(gw: GatewayProcess) -> None:
    cluster = gw.cluster
    asyncio.run(_ensure_pool(cluster))
    pids = {d.name: cluster.pid(d) for d in cluster.daemons}
    assert all(pids.values()), pids

    def same_daemons(what: str) -> None:
        now = {d.name: cluster.pid(d) for d in cluster.daemons}
        assert now == pids, f"a daemon died after {what}: {pids} -> {now}"
        assert rados_works(cluster), what

    for delay in (0.05, 0.3, 1.0):  # at different points of sending 40 MiB
        kill_mid_request(cluster, "write", delay)
    same_daemons("a client was killed in the middle of large writes")
    for delay in (0.05, 0.5):
        kill_mid_request(cluster, "subscribe", delay)
    same_daemons("a client was killed during a map subscription")

    addrs = [("127.0.0.1", int(d.addr.rsplit(":", 1)[1])) for d in cluster.daemons]
    for addr in addrs:
        abuse_grpc_port(addr)
    same_daemons("broken HTTP/2 peers")

    osd0 = next(a for d, a in zip(cluster.daemons, addrs, strict=True) if d.name == "osd.0")
    mon = addrs[0]
    with idle_connections(osd0, IDLE // 2), idle_connections(mon, IDLE // 2):
        started = time.monotonic()
        wait_for(lambda: rados_works(cluster), 30, "a normal request among idle connections")
        assert time.monotonic() - started < 15
    same_daemons(f"{IDLE} idle connections to an OSD and a monitor")


async def _ensure_pool(cluster: launcher.LocalCluster) -> None:
    async with Rados(cluster.config) as r:
        if "data" not in await r.pool_list():
            await r.pool_create("data")


# --- an MDS and the manager (added to the same cluster) ---------------------------------------

KILLED_MOUNT = r"""
import asyncio, sys
from rados_py.config import load
from rados_py.rados import Rados
from mds.client.mdsclient import MdsClient
from rados_py.proto.loligo import mds_pb2
async def main():
    async with Rados(load(sys.argv[1])) as r:
        client = MdsClient(r)
        await client.start()
        print("go", flush=True)
        i = 0
        while True:  # creates in flight, and a session, when killed
            i += 1
            await client.request(create=mds_pb2.CreateOp(parent=1, name=b"k%d" % i,
                                                          mode=0o100644))
asyncio.run(main())
"""


def mds_works(cluster: launcher.LocalCluster) -> bool:
    from mds import layout
    from mds.client.mdsclient import MdsClient
    from rados_py.proto.loligo import mds_pb2

    async def go() -> bool:
        async with Rados(cluster.config) as r:
            client = MdsClient(r)
            await client.start()
            try:
                name = f"after-{uuid.uuid4().hex[:6]}".encode()
                await client.request(create=mds_pb2.CreateOp(parent=layout.ROOT_INO,
                                                              name=name, mode=0o100644))
                reply = await client.request(lookup=mds_pb2.LookupOp(parent=layout.ROOT_INO,
                                                                     name=name))
                return reply.inode.ino > 0
            finally:
                await client.close()
    return asyncio.run(go())


def test_an_mds_and_the_manager_survive_rude_clients(gw: GatewayProcess) -> None:
    """The same treatment for the later daemons: a mount killed mid-request and broken HTTP/2
    peers against an MDS; dashboard pages that vanish, never read their event stream, or just
    hold connections against the manager; resets in the middle of /metrics scrapes."""
    cluster = gw.cluster
    [mds] = cluster.add_mds_sections(count=1)
    cluster.start([mds.name], timeout=60)
    asyncio.run(cluster.create_fs())
    port = launcher.pick_ports(1, random_base_port() + 300,
                               cluster.config.metrics_port_offset)[0]
    with open(cluster.conf, "a") as f:
        f.write(f"\n[mgr.a]\nmgr_dashboard_port = {port}\n")
    cluster.start_mgrs(timeout=60)
    mgr = cluster.daemon("mgr.a")
    pids = {d.name: cluster.pid(d) for d in (mds, mgr)}
    assert all(pids.values()) and all(sigpipe_ignored(p) for p in pids.values()), pids
    url = f"http://127.0.0.1:{port}/"

    def page_works() -> bool:
        with urllib.request.urlopen(url + "api/state", timeout=10) as resp:
            return "health" in json.loads(resp.read())

    def same_daemons(what: str) -> None:
        now = {d.name: cluster.pid(d) for d in (mds, mgr)}
        assert now == pids, f"a daemon died after {what}: {pids} -> {now}"
        assert mds_works(cluster), what
        assert page_works(), what

    wait_for(page_works, 30, "the dashboard answering")
    same_daemons("nothing")
    for delay in (0.05, 0.5):
        kill_mid_request(cluster, "", delay, script=KILLED_MOUNT)
    mds_addr = ("127.0.0.1", int(mds.addr.rsplit(":", 1)[1]))
    abuse_grpc_port(mds_addr)
    with idle_connections(mds_addr, IDLE // 2):
        wait_for(lambda: mds_works(cluster), 30, "a metadata request among idle connections")
    same_daemons("killed mounts, broken HTTP/2 peers and idle connections to the MDS")

    mgr_addr = ("127.0.0.1", port)
    for _ in range(3):  # a page that goes away in the middle of its event stream
        s = connect(mgr_addr)
        s.sendall(raw_request("GET", url + "api/events"))
        s.settimeout(10)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        reset(s)
    # pages that never read what the manager pushes them: its writes must not hold up the rest
    stuck = [connect(mgr_addr) for _ in range(100)]
    try:
        for s in stuck:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(raw_request("GET", url + "api/events"))
        started = time.monotonic()
        wait_for(page_works, 30, "the dashboard answering beside 100 stuck event streams")
        assert time.monotonic() - started < 10
    finally:
        for s in stuck:
            reset(s)
    s = connect(mgr_addr)  # garbage, then half-close
    s.sendall(os.urandom(4096))
    s.shutdown(socket.SHUT_WR)
    s.settimeout(30)
    with contextlib.suppress(ConnectionResetError):
        while s.recv(65536):
            pass
    s.close()
    s = connect(mgr_addr)  # a request trickled, then RST
    for byte in raw_request("GET", url + "api/state")[:30]:
        s.send(bytes([byte]))
        time.sleep(0.01)
    reset(s)
    with idle_connections(mgr_addr, IDLE):
        started = time.monotonic()
        wait_for(page_works, 30, f"the dashboard answering beside {IDLE} idle connections")
        assert time.monotonic() - started < 10
    offset = cluster.config.metrics_port_offset
    for addr in (mds_addr, mgr_addr):  # a scrape cut off by an RST
        s = connect((addr[0], addr[1] + offset))
        s.sendall(raw_request("GET", f"http://{addr[0]}:{addr[1] + offset}/metrics"))
        reset(s)
    same_daemons("vanishing, stuck, garbled and idle dashboard clients and cut-off scrapes")
    for d in (mds, mgr):
        log = cluster.log_file(d).read_text(errors="replace")
        assert "Traceback" not in log, f"{d.name}: a client's behaviour made a traceback"
