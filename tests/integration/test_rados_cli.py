"""`loligo rados` against a real cluster (1 monitor, 3 OSDs), as an operator types it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import launcher
from tests.integration import running_cluster

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launcher.LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("rados") / "cluster", osds=3,
                         pool=launcher.DEFAULT_POOL) as c:
        yield c


def rados(c: launcher.LocalCluster, *args: str, data: bytes | None = None
          ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "cluster", "rados", "-p", "data", *args,
                           "--conf", str(c.conf)], input=data, capture_output=True, cwd=ROOT,
                          timeout=120)


def ok(c: launcher.LocalCluster, *args: str, data: bytes | None = None) -> bytes:
    done = rados(c, *args, data=data)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def test_objects_xattrs_and_omap(cluster: launcher.LocalCluster, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    src = tmp_path / "in.bin"
    src.write_bytes(payload)
    ok(cluster, "put", "photos/a b/../c.jpg", str(src))
    assert ok(cluster, "get", "photos/a b/../c.jpg", "-") == payload
    assert b"size 300000" in ok(cluster, "stat", "photos/a b/../c.jpg")
    ok(cluster, "put", "note", "-", data=b"hi\n")
    assert sorted(ok(cluster, "ls").split(b"\n")) == [b"", b"note", b"photos/a b/../c.jpg"]
    ok(cluster, "setxattr", "note", "owner", "me")
    assert ok(cluster, "getxattr", "note", "owner") == b"me\n"
    assert ok(cluster, "listxattr", "note") == b"owner\n"
    ok(cluster, "setomapval", "note", "k1", "v1")
    ok(cluster, "setomapval", "note", "k0", "v0")
    assert ok(cluster, "listomapvals", "note") == b"k0\nv0\nk1\nv1\n"
    ok(cluster, "rm", "note", "photos/a b/../c.jpg")
    assert ok(cluster, "ls") == b""
    missing = rados(cluster, "get", "note", "-")
    assert missing.returncode == 1 and missing.stderr.count(b"\n") == 1
    assert b"no such object" in missing.stderr


def test_bench_prints_rados_bench_lines(cluster: launcher.LocalCluster) -> None:
    out = ok(cluster, "bench", "1", "write", "-b", "64K", "-t", "4", "--no-cleanup").decode()
    for line in ("Total writes made:", "Bandwidth (MB/sec):", "Stddev Bandwidth:",
                 "Max bandwidth (MB/sec):", "Min bandwidth (MB/sec):", "Average IOPS:",
                 "Average Latency(s):", "Max latency(s):", "Min latency(s):",
                 "p50 latency(s):", "p99 latency(s):"):
        assert line in out, line
    written = int(out.split("Total writes made:")[1].split()[0])
    assert written > 0
    # seq reads the last run's objects once each, at the size they were written (not -b)
    seq = ok(cluster, "bench", "10", "seq", "-t", "4").decode()
    assert int(seq.split("Total reads made:")[1].split()[0]) == written
    assert "Read size:              65536" in seq
    rand = ok(cluster, "bench", "1", "rand", "-t", "4").decode()
    assert int(rand.split("Total reads made:")[1].split()[0]) > 0
    listed = [n for n in ok(cluster, "ls").split(b"\n") if n.startswith(b"benchmark_data")]
    assert len(listed) == written
