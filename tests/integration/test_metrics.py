"""Every daemon serves Prometheus /metrics on its port + metrics_port_offset, in a format
Prometheus parses, named by its conventions, counting what was actually done: RADOS ops by
kind with their bytes and latency, store commits, PG states, scrubs, monitor commands, and
gateway requests by API, method and status."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator

import boto3
import pytest
from prometheus_client.parser import text_string_to_metric_families
from swiftclient import client as swift_client

from rados_py.rados import Rados
from tests.integration.gateway_fixture import ROOT, GatewayProcess, running_gateway
from tests.waiting import wait_for

NAME = re.compile(r"(loligo|process|python)_[a-z0-9_]+")
WRITES, SIZE = 20, 64 * 1024


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path_factory.mktemp("metrics") / "cluster") as g:
        yield g


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint: (name, sorted labels) -> value; and the families' names
    and types checked against Prometheus' conventions."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    samples = {}
    for family in text_string_to_metric_families(text.decode()):
        assert NAME.fullmatch(family.name), family.name
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
        if "latency" in family.name or "duration" in family.name:
            assert family.name.endswith("_seconds"), family.name
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(samples: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def port_of(addr: str, offset: int) -> int:
    return int(addr.rsplit(":", 1)[1]) + offset


def test_every_daemon_counts_what_it_did(gw: GatewayProcess) -> None:
    cluster = gw.cluster
    offset = cluster.config.metrics_port_offset

    async def rados_work() -> None:
        async with Rados(cluster.config) as r:
            if "data" not in await r.pool_list():
                await r.pool_create("data")
            io = await r.open_ioctx("data")
            for i in range(WRITES):
                await io.write_full(f"m{i}", b"x" * SIZE)
            for i in range(WRITES):
                assert len(await io.read(f"m{i}")) == SIZE
            await io.omap_set("m0", {"k": b"v"})
    asyncio.run(rados_work())

    key = gw.user["keys"][0]
    s3 = boto3.client("s3", endpoint_url=gw.url, aws_access_key_id=key["access_key"],
                      aws_secret_access_key=key["secret_key"], region_name="us-east-1")
    bucket = f"metrics-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="obj", Body=b"y" * 100_000)
    assert len(s3.get_object(Bucket=bucket, Key="obj")["Body"].read()) == 100_000
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="missing")
    swift_key = gw.user["swift_keys"][0]
    conn = swift_client.Connection(f"{gw.url}/auth/v1.0", swift_key["user"],
                                   swift_key["secret_key"], retries=0)
    conn.head_account()

    osds = {d.name: scrape(port_of(d.addr, offset)) for d in cluster.osds}
    writes = sum(total(s, "loligo_osd_ops_total", op="write_full", result="ok")
                 for s in osds.values())
    reads = sum(total(s, "loligo_osd_ops_total", op="read", result="ok") for s in osds.values())
    assert writes >= WRITES and reads >= WRITES, (writes, reads)
    assert sum(total(s, "loligo_osd_ops_total", op="omap_set") for s in osds.values()) >= 1
    assert sum(total(s, "loligo_osd_op_latency_seconds_count", op="write_full")
               for s in osds.values()) >= WRITES
    assert sum(total(s, "loligo_osd_op_in_bytes_total") for s in osds.values()) >= \
        WRITES * SIZE
    assert sum(total(s, "loligo_osd_op_out_bytes_total") for s in osds.values()) >= \
        WRITES * SIZE
    for name, s in osds.items():
        assert total(s, "loligo_osd_store_commit_latency_seconds_count") > 0, name
        assert total(s, "loligo_osd_rpc_requests_total") > 0, name
        assert total(s, "process_cpu_seconds_total") > 0, name
        # clients' and peers' ops come over session streams (heartbeats are plain TCP)
        assert ("loligo_osd_rpc_in_flight", (("method", "Osd.Session"),)) in s, name
    wait_for(lambda: sum(total(scrape(port_of(d.addr, offset)), "loligo_osd_pgs",
                               state="active+clean") for d in cluster.osds) > 0,
             30, "PG states in the OSDs' metrics")
    wait_for(lambda: all(total(scrape(port_of(d.addr, offset)), "loligo_osd_size_bytes") > 0
                         for d in cluster.osds), 30, "each OSD's size")

    mon = scrape(port_of(cluster.mons[0].addr, offset))
    assert total(mon, "loligo_mon_commands_total", command="pool_create", result="ok") >= 1
    assert total(mon, "loligo_mon_commands_total", command="osd_boot") >= 2
    assert total(mon, "loligo_mon_rpc_requests_total", method="Mon.Status", code="OK") >= 1
    assert total(mon, "loligo_mon_beacons_total", kind="osd") > 0
    assert total(mon, "loligo_pgs") > 0 and total(mon, "loligo_bytes_total") > 0

    gw_port = port_of(gw.url.removeprefix("http://"), offset)
    g = scrape(gw_port)
    assert total(g, "loligo_gateway_requests_total", api="s3", method="PUT",
                 status="200") >= 2
    assert total(g, "loligo_gateway_requests_total", api="s3", method="GET",
                 status="404") >= 1
    assert total(g, "loligo_gateway_requests_total", api="swift_auth") >= 1
    assert total(g, "loligo_gateway_requests_total", api="swift", method="HEAD") >= 1
    assert total(g, "loligo_gateway_sent_bytes_total", api="s3") >= 100_000
    assert total(g, "loligo_gateway_received_bytes_total", api="s3") >= 100_000
    assert total(g, "loligo_gateway_request_latency_seconds_count", api="s3") >= 4

    # a deep scrub shows up as finished in the primary's counters
    pgid = "1.0"
    before = sum(total(scrape(port_of(d.addr, offset)), "loligo_osd_scrubs_total",
                       type="deep") for d in cluster.osds)
    subprocess.run([sys.executable, "-m", "cluster", "--conf", str(cluster.conf), "pg",
                    "deep-scrub", pgid], check=True, cwd=ROOT, capture_output=True, timeout=60)
    wait_for(lambda: sum(total(scrape(port_of(d.addr, offset)), "loligo_osd_scrubs_total",
                               type="deep") for d in cluster.osds) > before,
             60, f"a finished deep scrub of {pgid} counted")


def test_the_mds_counts_requests_by_operation_and_result(gw: GatewayProcess) -> None:
    """An MDS added to the running cluster: metadata requests by op and result (errno name),
    their latency, its state, sessions, cache and journal -- as a mount's requests make them."""
    from mds import layout
    from mds.client.mdsclient import MdsClient, MdsError
    from rados_py.proto.loligo import mds_pb2

    cluster = gw.cluster
    offset = cluster.config.metrics_port_offset
    [mds] = cluster.add_mds_sections(count=1)
    cluster.start([mds.name], timeout=60)
    asyncio.run(cluster.create_fs())
    port = port_of(mds.addr, offset)
    wait_for(lambda: total(scrape(port), "loligo_mds_state", state="active") == 1, 60,
             "mds.a active in its metrics")

    async def mount_work() -> None:
        async with Rados(cluster.config) as r:
            client = MdsClient(r)
            await client.start()
            try:
                for i in range(5):
                    await client.request(create=mds_pb2.CreateOp(
                        parent=layout.ROOT_INO, name=f"f{i}".encode(), mode=0o100644))
                with pytest.raises(MdsError):
                    await client.request(lookup=mds_pb2.LookupOp(parent=layout.ROOT_INO,
                                                                 name=b"missing"))
                await asyncio.to_thread(  # the session's stream goes on meanwhile
                    wait_for, lambda: total(scrape(port), "loligo_mds_sessions") == 1, 30,
                    "the mount's session counted")
            finally:
                await client.close()
    asyncio.run(mount_work())

    m = scrape(port)
    assert total(m, "loligo_mds_requests_total", op="create", result="ok") == 5
    assert total(m, "loligo_mds_requests_total", op="lookup", result="enoent") == 1
    assert total(m, "loligo_mds_request_latency_seconds_count", op="create") == 5
    assert total(m, "loligo_mds_rpc_requests_total", method="Mds.Session") >= 1
    assert total(m, "loligo_mds_journal_append_latency_seconds_count") >= 1
    wait_for(lambda: total(scrape(port), "loligo_mds_journal_events_total") >= 5, 30,
             "the creates' journal events counted")
    assert total(m, "loligo_mds_inodes_cached") >= 5
    assert total(m, "loligo_mds_state", state="standby") == 0
