"""The operator's commands on a real cluster (1 monitor, 3 OSDs on one disk, a gateway), typed
as a Ceph operator types them: `loligo -w` telling an OSD's fall and return, health counting
the copies written while it was down, `df` counting the one disk once, `bucket list|stats|rm`,
`--cluster-dir` before the subcommand, one wording for a missing pool, names as text."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from cluster import launcher
from rados_py.rados import Rados
from tests.integration.gateway_fixture import ROOT, GatewayProcess, running_gateway
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path_factory.mktemp("ops") / "cluster", osds=3,
                         settings={"osd_beacon_interval": 0.3, "osd_heartbeat_grace": 1.5,
                                   "osd_heartbeat_interval": 0.3,
                                   "mon_osd_report_grace": 3.0}) as g:
        asyncio.run(_pool(g.cluster))
        yield g


async def _pool(cluster: launcher.LocalCluster) -> None:
    async with Rados(cluster.config) as r:
        if "data" not in await r.pool_list():
            await r.pool_create("data")


def loligo(cluster: launcher.LocalCluster, *args: str, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
    """`loligo --cluster-dir DIR ARGS` as a process (the global option before the command)."""
    done = subprocess.run([sys.executable, "-m", "cluster", "--cluster-dir",
                           str(cluster.conf.parent), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if check:
        assert done.returncode == 0, done.stderr
    return done


def status(cluster: launcher.LocalCluster) -> dict[str, Any]:
    return json.loads(loligo(cluster, "status", "--format", "json").stdout)


class Watch:
    """`loligo -w` running in the background, its lines collected."""

    def __init__(self, cluster: launcher.LocalCluster) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cluster", "--conf", str(cluster.conf), "-w"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_watch_and_health_follow_an_osd_down_and_back(gw: GatewayProcess) -> None:
    cluster = gw.cluster
    watch = Watch(cluster)
    try:
        wait_for(lambda: watch.saw("health:"), 30, "`loligo -w` to print the status first")
        cluster.kill("osd.1")
        wait_for(lambda: watch.saw("[WRN] osd.1 marked down"), 30, "osd.1 marked down in -w")
        wait_for(lambda: watch.saw("Health check failed") and watch.saw("(OSD_DOWN)"), 30,
                 "the OSD_DOWN health check in -w")

        async def write_while_down() -> None:
            async with Rados(cluster.config) as r:
                io = await r.open_ioctx("data")
                for i in range(30):
                    await io.write_full(f"while-down-{i}", b"z" * 1000)
        asyncio.run(write_while_down())

        def degraded() -> Any:
            st = status(cluster)
            checks = st["health"]["checks"]
            return st["pgmap"]["degraded_objects"] >= 30 and "PG_DEGRADED" in checks and st
        st = wait_for(degraded, 30, "the copies written while osd.1 was down counted degraded")
        summary = st["health"]["checks"]["PG_DEGRADED"]["summary"]["message"]
        assert "object copies degraded" in summary, summary
        assert st["pgmap"]["degraded_total"] >= st["pgmap"]["degraded_objects"]
        text = loligo(cluster, "status").stdout
        assert "objects degraded (" in text, text

        cluster.start(["osd.1"], timeout=60)
        wait_for(lambda: watch.saw("osd.1 boot"), 30, "osd.1's boot in -w")
        wait_for(lambda: watch.saw("Health check cleared: OSD_DOWN"), 30, "OSD_DOWN cleared")
        wait_for(lambda: status(cluster)["health"]["status"] == "HEALTH_OK", 90,
                 "HEALTH_OK once osd.1 recovered what it missed")
        wait_for(lambda: watch.saw("Cluster is now healthy"), 30, "-w saying so")
        assert status(cluster)["pgmap"]["degraded_objects"] == 0
    finally:
        watch.stop()
    assert watch.proc.returncode in (0, -signal.SIGINT, 130), watch.lines[-5:]
    assert not any("Traceback" in line for line in watch.lines)


def test_df_counts_the_one_disk_once(gw: GatewayProcess) -> None:
    cluster = gw.cluster
    fs = os.statvfs(cluster.config.data_dir)
    disk = fs.f_blocks * fs.f_frsize

    def data() -> Any:
        d = json.loads(loligo(cluster, "df", "--format", "json").stdout)
        return d if d["stats"]["total_bytes"] else None
    df = wait_for(data, 30, "every OSD's usage reported")
    assert df["stats"]["total_bytes"] == disk, "three OSDs on one disk count it once"
    assert abs(df["stats"]["total_avail_bytes"] - fs.f_bavail * fs.f_frsize) < disk // 50
    pools = {p["name"]: p for p in df["pools"]}
    assert pools["data"]["stats"]["objects"] >= 0 and pools["data"]["stats"]["max_avail"] > 0
    # the pool keeps 3 copies (or 2) of everything on this one disk: at most a third (half)
    pool_ls = json.loads(loligo(cluster, "pool", "ls", "detail", "--format", "json").stdout)
    size = next(p for p in pool_ls if p["pool_name"] == "data")["size"]
    assert pools["data"]["stats"]["max_avail"] <= fs.f_bavail * fs.f_frsize // size + 1
    text = loligo(cluster, "df").stdout
    assert text.startswith("--- RAW STORAGE ---") and "--- POOLS ---" in text
    detail = loligo(cluster, "df", "detail").stdout
    assert "FILE SYSTEMS" in detail and "osd.0" in detail and "osd.2" in detail
    st = status(cluster)
    assert st["pgmap"]["bytes_total"] == disk


def test_bucket_list_stats_and_rm(gw: GatewayProcess) -> None:
    cluster = gw.cluster
    key = gw.user["keys"][0]
    s3 = boto3.client("s3", endpoint_url=gw.url, aws_access_key_id=key["access_key"],
                      aws_secret_access_key=key["secret_key"], region_name="us-east-1")
    name = f"ops-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    for i in range(5):
        s3.put_object(Bucket=name, Key=f"k{i}", Body=b"q" * 1000)
    assert name in loligo(cluster, "bucket", "list").stdout.split()
    mine = json.loads(loligo(cluster, "bucket", "list", "--uid", key["user"], "--format",
                             "json").stdout)
    assert name in mine
    objects = json.loads(loligo(cluster, "bucket", "list", "--bucket", name, "--format",
                                "json").stdout)
    assert [o["name"] for o in objects] == [f"k{i}" for i in range(5)]
    stats = json.loads(loligo(cluster, "bucket", "stats", "--bucket", name, "--format",
                              "json").stdout)
    assert stats["bucket"] == name and stats["owner"] == key["user"]
    assert stats["usage"]["rgw.main"] == {**stats["usage"]["rgw.main"], "num_objects": 5,
                                          "size": 5000}
    table = loligo(cluster, "bucket", "stats").stdout
    assert name in table and "OBJECTS" in table
    refused = loligo(cluster, "bucket", "rm", "--bucket", name, check=False)
    assert refused.returncode == 1 and "not empty" in refused.stderr
    done = loligo(cluster, "bucket", "rm", "--bucket", name, "--purge-objects")
    assert "removed bucket" in done.stdout and "5 objects" in done.stdout
    assert name not in loligo(cluster, "bucket", "list").stdout.split()
    gone = loligo(cluster, "bucket", "stats", "--bucket", name, check=False)
    assert gone.returncode == 1 and f"bucket '{name}' does not exist" in gone.stderr


def test_one_wording_for_a_missing_pool_and_names_as_text(gw: GatewayProcess) -> None:
    cluster = gw.cluster
    said = set()
    for args in (("pool", "get", "nosuchpool", "size"), ("rados", "-p", "nosuchpool", "ls"),
                 ("pool", "rm", "nosuchpool", "--yes-i-really-really-mean-it")):
        done = loligo(cluster, *args, check=False)
        assert done.returncode == 1, args
        said.add(done.stderr.strip())
    assert said == {"loligo: error: pool 'nosuchpool' does not exist"}, said
    missing = loligo(cluster, "rados", "-p", "data", "stat", "no-such-object", check=False)
    assert missing.returncode == 1
    assert "b'" not in missing.stderr and "no-such-object" in missing.stderr, missing.stderr
    started = time.monotonic()
    assert loligo(cluster, "config", "help", "osd_capacity").stdout.startswith("osd_capacity")
    assert time.monotonic() - started < 30
