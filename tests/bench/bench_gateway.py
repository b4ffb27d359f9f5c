"""S3 gateway benchmark: boto3 clients against a local cluster (1 monitor, 3 OSDs, 1 gateway),
beside `loligo rados bench` of the same cluster in the same run.

    .venv/bin/python tests/bench/bench_gateway.py [--big 64] [--small 1000] [--dir DIR]

For 4 MiB objects (64) and 4 KiB objects (1,000), with 1 and 8 concurrent boto3 clients (one
thread and one client each): PUT then GET, printing MB/s, ops/s and latency p50/p99. boto3 runs
with its defaults (CRC32 checksums on PUT). The cluster and its processes are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from botocore.config import Config as BotoConfig  # noqa: E402

from cluster import launcher  # noqa: E402
from rados_py.rados import Rados  # noqa: E402
from tests.integration import random_base_port, running_cluster  # noqa: E402
from tests.waiting import wait_for  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def client(url: str, access: str, secret: str) -> Any:
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=access,
                        aws_secret_access_key=secret, region_name="us-east-1",
                        config=BotoConfig(max_pool_connections=16))


def run(clients: list[Any], op: str, bucket: str, count: int, size: int) -> tuple[float, list]:
    """`count` ops spread over the clients' threads; (seconds, latencies)."""
    body = os.urandom(size)
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(s3: Any, keys: list[int]) -> None:
        for i in keys:
            start = time.perf_counter()
            try:
                if op == "PUT":
                    s3.put_object(Bucket=bucket, Key=f"obj{i}", Body=body)
                else:
                    got = s3.get_object(Bucket=bucket, Key=f"obj{i}")["Body"].read()
                    assert len(got) == size
            except BaseException as exc:
                errors.append(exc)
                return
            with lock:
                latencies.append(time.perf_counter() - start)

    n = len(clients)
    threads = [threading.Thread(target=work, args=(s3, list(range(t, count, n))))
               for t, s3 in enumerate(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start, latencies


def line(op: str, size: int, count: int, conc: int, secs: float, lat: list[float]) -> str:
    label = "4MiB" if size >= 1 << 20 else "4KiB"
    return (f"{op:<4} {label} x{count:<5} c={conc}  {count * size / secs / 1e6:8.1f} MB/s "
            f"{count / secs:8.1f} ops/s  p50 {pct(lat, 50) * 1000:7.1f} ms  "
            f"p99 {pct(lat, 99) * 1000:7.1f} ms")


def rados_bench(conf: Path, block: str, conc: int, seconds: int = 5) -> str:
    out = []
    for mode in ("write", "seq"):
        extra = ["--no-cleanup"] if mode == "write" else []
        done = subprocess.run([sys.executable, "-m", "cluster", "rados", "-p", "data", "bench",
                               str(seconds), mode, "-b", block, "-t", str(conc), *extra,
                               "--conf", str(conf)], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)
        picked = [" ".join(ln.split()) for ln in done.stdout.splitlines()
                  if ln.startswith(("Bandwidth (MB/sec)", "Average IOPS", "p50 latency",
                                    "p99 latency"))] or [done.stderr.strip()[-200:]]
        out.append(f"rados bench {mode:<5} -b {block} -t {conc}: " + " | ".join(picked))
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=64, help="4 MiB objects (default 64)")
    parser.add_argument("--small", type=int, default=1000, help="4 KiB objects (default 1000)")
    parser.add_argument("--dir", help="where the cluster goes (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp) / "cluster"
        with running_cluster(directory, mons=1, osds=3, pool="data") as cluster:
            async def up() -> bool:
                async with Rados(cluster.config) as rados:
                    return sum(o.up for o in rados.osdmap.osds.values()) >= 3
            wait_for(lambda: asyncio.run(up()), 60, "3 OSDs up")
            port = launcher.pick_ports(1, random_base_port() + 500)[0]
            with open(cluster.conf, "a") as f:
                f.write(f"\n[gateway.1]\ngateway_port = {port}\n")
            cluster.start_gateways(timeout=60)
            key = cluster.gateway_info()["user"]["keys"][0]
            url = f"http://127.0.0.1:{port}"
            print(f"gateway {url}, boto3 {boto3.__version__}, "
                  f"{os.cpu_count()} CPUs (shared with the cluster)")
            for size, count in ((4 << 20, args.big), (4096, args.small)):
                for conc in (1, 8):
                    clients = [client(url, key["access_key"], key["secret_key"])
                               for _ in range(conc)]
                    bucket = f"bench-{uuid.uuid4().hex[:10]}"
                    clients[0].create_bucket(Bucket=bucket)
                    for op in ("PUT", "GET"):
                        secs, lat = run(clients, op, bucket, count, size)
                        print(line(op, size, count, conc, secs, lat), flush=True)
            for block, conc in (("4M", 1), ("4M", 8), ("4K", 1), ("4K", 8)):
                print(rados_bench(cluster.conf, block, conc), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
