"""Monitor benchmark: committed map changes per second with 3 monitors, and leader failover time.

    .venv/bin/python tests/bench/bench_mon.py [--seconds S] [--concurrency C] [--kills K]

Starts a local 3-monitor cluster in a temporary directory (stopped at the end), then
1. creates pools as fast as one client can, sequentially and with C commands in flight,
   printing commits/s and latency percentiles;
2. kills -9 the leader K times (restarting it each time) and reports, per kill, the time from
   the kill until a command is committed again; the median is the failover time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cluster import launcher  # noqa: E402
from rados_py.auth import Keyring  # noqa: E402
from rados_py.config import load  # noqa: E402
from rados_py.monclient import MonClient  # noqa: E402
from rados_py.proto.loligo import mon_pb2  # noqa: E402
from tests.waiting import wait_for_async  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def throughput(client: MonClient, seconds: float, concurrency: int, tag: str) -> None:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    counter = 0

    async def worker() -> None:
        nonlocal counter
        while time.monotonic() < deadline:
            counter += 1
            start = time.monotonic()
            await client.command(osd_set_flag=mon_pb2.OsdSetFlag(flag="noout",
                                                                 set=counter % 2 == 0))
            latencies.append(time.monotonic() - start)

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - start
    print(f"{tag:<22}: {len(latencies) / elapsed:8.0f} commits/s  latency ms "
          f"p50 {pct(latencies, 50) * 1e3:.1f}  p99 {pct(latencies, 99) * 1e3:.1f}  "
          f"max {max(latencies) * 1e3:.1f}  ({len(latencies)} commands, {elapsed:.1f} s)")


async def leader_of(client: MonClient) -> str:
    async def leader() -> str:
        with contextlib.suppress(Exception):  # an election is in progress: ask again
            return (await client.status(timeout=1)).leader
        return ""
    return await wait_for_async(leader, 30, "a monitor leader")


async def failovers(cluster: launcher.LocalCluster, client: MonClient, kills: int) -> None:
    times = []
    for i in range(kills):
        leader = await leader_of(client)
        cluster.kill(f"mon.{leader}")
        killed = time.monotonic()
        await client.command(pool_create=mon_pb2.PoolCreate(name=f"failover-{i}", pg_num=8),
                             timeout=30)
        times.append(time.monotonic() - killed)
        print(f"kill {i + 1}: mon.{leader} killed, next command committed after "
              f"{times[-1]:.2f} s")
        await asyncio.to_thread(cluster.start, [f"mon.{leader}"], timeout=30)
    print(f"{'failover (median)':<22}: {statistics.median(times):.2f} s over {kills} kills "
          f"(min {min(times):.2f}, max {max(times):.2f})")


async def main_async(args: argparse.Namespace, cluster: launcher.LocalCluster) -> None:
    config = load(cluster.conf)
    async with MonClient(config, Keyring.load(config.keyring)) as client:
        await client.connect(timeout=30)
        await throughput(client, args.seconds, 1, "sequential (1 client)")
        await throughput(client, args.seconds, args.concurrency,
                         f"{args.concurrency} in flight")
        await failovers(cluster, client, args.kills)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = launcher.up(Path(tmp) / "cluster", mons=3, osds=0, timeout=60,
                              out=lambda *_: None)
        try:
            asyncio.run(main_async(args, cluster))
        finally:
            cluster.stop(grace=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
