"""Corruption on disk, found and fixed (real processes, 3 OSDs): flip bytes in the block file of
one replica's copy of an object, then: reads still return the right data; `loligo pg
deep-scrub` reports exactly that object and that OSD; health says which object is damaged;
`loligo pg repair` rewrites the bad copy; the next deep scrub is clean and every replica is
identical again. A corrupted copy on the primary itself is replaced on read."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import launcher
from rados_py.config import load
from rados_py.rados import Rados
from tests.integration import running_cluster
from tests.integration.checks import replicas_identical, wait_clean
from tests.waiting import wait_for, wait_for_async

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launcher.LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("scrub") / "cluster", osds=3,
                         pool=launcher.DEFAULT_POOL,
                         settings={"osd_pool_default_pg_num": 8}) as c:
        yield c


def loligo(cluster: launcher.LocalCluster, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "cluster", *args, "--conf", str(cluster.conf),
                          "--format", "json"], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def corrupt(cluster: launcher.LocalCluster, osd: int, pgid: str, name: bytes) -> None:
    """Flip bytes in the middle of the object's first data block, in that OSD's block file."""
    store = Path(cluster.config.data_dir) / f"osd.{osd}" / "store"
    db = sqlite3.connect(f"file:{store / 'meta.db'}?mode=ro", uri=True)
    try:
        (fid,) = db.execute(
            "SELECT b.file FROM blocks b JOIN objects o ON b.obj = o.id JOIN colls c ON "
            "o.cid = c.cid WHERE c.name = ? AND o.oid = ? AND b.idx = 0",
            (pgid, b"\0\0" + name)).fetchone()
    finally:
        db.close()
    path = store / "data" / f"{fid >> 12:x}" / f"{fid:x}"
    with open(path, "r+b") as f:
        f.seek(1000)
        good = f.read(16)
        f.seek(1000)
        f.write(bytes(b ^ 0xFF for b in good))
        f.flush()
        os.fsync(f.fileno())


def test_deep_scrub_finds_a_flipped_replica_and_repair_fixes_it(
        cluster: launcher.LocalCluster) -> None:
    async def go() -> None:
        async with Rados(load(cluster.conf)) as r:
            io = await r.open_ioctx("data")
            data = os.urandom(2 * MiB)
            await io.write_full("victim", data)
            for i in range(10):
                await io.write_full(f"bystander-{i}", os.urandom(3000))
            _, pgid, placement = r.osdmap.map_object(io.pool_id, b"victim")
            replica = placement.acting[-1]
            await wait_clean(r, 60)
            corrupt(cluster, replica, str(pgid), b"victim")
            assert await io.read("victim") == data  # the primary's copy is good

            found = await asyncio.to_thread(loligo, cluster, "pg", "deep-scrub", str(pgid))
            assert [(i["object"], i["osds"]) for i in found["inconsistent"]] == [
                ("victim", [replica])]
            assert "checksum" in found["inconsistent"][0]["why"]
            assert "inconsistent" in found["state"]

            async def damaged() -> bool:
                checks = {c.code: c for c in (await r.mon.status()).view.checks}
                return "PG_DAMAGED" in checks and "victim" in checks["PG_DAMAGED"].summary
            await wait_for_async(damaged, 20, "health reporting the damaged object")

            fixed = await asyncio.to_thread(loligo, cluster, "pg", "repair", str(pgid))
            assert fixed["repaired"] == 1 and fixed["inconsistent"] == []
            again = await asyncio.to_thread(loligo, cluster, "pg", "deep-scrub", str(pgid))
            assert again["inconsistent"] == [] and again["objects"] >= 1
            await wait_clean(r, 30)
            assert (await r.mon.status()).view.health == "HEALTH_OK"
            await replicas_identical(r, io.pool_id, 3)
    asyncio.run(go())


def test_a_corrupted_primary_copy_is_replaced_on_read(cluster: launcher.LocalCluster) -> None:
    async def go() -> None:
        async with Rados(load(cluster.conf)) as r:
            io = await r.open_ioctx("data")
            data = os.urandom(MiB + 5)
            await io.write_full("primary-victim", data)
            _, pgid, placement = r.osdmap.map_object(io.pool_id, b"primary-victim")
            corrupt(cluster, placement.acting_primary, str(pgid), b"primary-victim")
            assert await io.read("primary-victim") == data
            assert await io.read("primary-victim") == data  # and the copy was rewritten
            report = await asyncio.to_thread(loligo, cluster, "pg", "deep-scrub", str(pgid))
            assert report["inconsistent"] == []
            await replicas_identical(r, io.pool_id, 3)
    asyncio.run(go())


def test_recovery_throttles_change_at_run_time(cluster: launcher.LocalCluster) -> None:
    def tell(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cluster", "tell", *args, "--conf",
                               str(cluster.conf)], capture_output=True, text=True, cwd=ROOT,
                              timeout=60)
    out = tell("osd.*", "config", "set", "osd_recovery_max_bytes_per_sec", "20MiB")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"osd.{i}: osd_recovery_max_bytes_per_sec = {20 << 20} (was 0)" for i in range(3)]
    out = tell("osd.1", "config", "set", "osd_recovery_max_active", "8")
    assert out.stdout.strip() == "osd.1: osd_recovery_max_active = 8 (was 4)"
    refused = tell("osd.1", "config", "set", "osd_heartbeat_grace", "9")
    assert refused.returncode == 1 and "restart" in refused.stderr
    assert "Traceback" not in refused.stderr
    bad = tell("osd.1", "config", "set", "osd_recovery_max_active", "lots")
    assert bad.returncode == 1 and "osd_recovery_max_active" in bad.stderr
    wrong = tell("mon.a", "config", "set", "x", "1")
    assert wrong.returncode == 1 and "name OSDs as osd.N or osd.*" in wrong.stderr


def test_pg_states_and_usage_are_prometheus_metrics(cluster: launcher.LocalCluster) -> None:
    import urllib.request

    async def clean() -> None:
        async with Rados(load(cluster.conf)) as r:
            await wait_clean(r, 60)
    asyncio.run(clean())
    mon = cluster.config.mon_host[0]
    url = f"http://{mon.host}:{mon.port + cluster.config.metrics_port_offset}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines()
                 if line and not line.startswith("#"))
    assert float(lines['loligo_pgs{state="active+clean"}']) == 8
    assert float(lines["loligo_objects"]) >= 11  # victim, bystanders...
    assert float(lines["loligo_bytes_total"]) > float(lines["loligo_bytes_used"]) > 0
    assert float(lines["loligo_objects_degraded"]) == 0


def test_osd_df_shows_space_and_pgs(cluster: launcher.LocalCluster) -> None:
    data = loligo(cluster, "osd", "df")
    nodes = {n["id"]: n for n in data["nodes"]}
    assert sorted(nodes) == [0, 1, 2]
    assert sum(n["pgs"] for n in nodes.values()) == 8 * 3  # 8 PGs, 3 copies each
    for n in nodes.values():
        assert n["status"] == "up" and n["kb"] > n["kb_used"] > 0 and n["kb_avail"] > 0
    text = subprocess.run([sys.executable, "-m", "cluster", "osd", "df", "--conf",
                           str(cluster.conf)], capture_output=True, text=True, cwd=ROOT,
                          timeout=60).stdout
    assert text.splitlines()[0].split() == ["ID", "WEIGHT", "REWEIGHT", "SIZE", "USE", "AVAIL",
                                            "%USE", "PGS", "STATUS"]


def test_scheduled_scrubs_run_and_their_stamps_survive_a_restart(
        cluster: launcher.LocalCluster) -> None:
    """Runs last: it restarts osd.0."""
    def tell(key: str, value: str) -> None:
        out = subprocess.run([sys.executable, "-m", "cluster", "tell", "osd.*", "config", "set",
                              key, value, "--conf", str(cluster.conf)], capture_output=True,
                             text=True, cwd=ROOT, timeout=60)
        assert out.returncode == 0, out.stderr

    def stamps() -> dict[str, float]:
        return {s["pgid"]: s["last_scrub_stamp"] for s in loligo(cluster, "pg", "dump")[
            "pg_stats"]}

    tell("osd_scrub_interval", "2")
    try:
        scrubbed = wait_for(lambda: (s := stamps()) and len(s) == 8 and all(s.values()) and s,
                            30, "every PG scrubbed by the schedule")
    finally:
        tell("osd_scrub_interval", "24h")
    cluster.kill("osd.0")
    cluster.start(["osd.0"], timeout=60)

    def after_restart() -> dict[str, float] | None:
        s = stamps()
        return s if len(s) == 8 and all(s.values()) else None
    again = wait_for(after_restart, 30, "stamps reported again after osd.0 restarted")
    assert all(again[pg] >= scrubbed[pg] for pg in scrubbed)  # remembered, not reset to never
