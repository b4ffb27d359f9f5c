"""Recovery benchmark: how fast a local cluster re-replicates the data of a lost OSD, and what
that costs the clients, next to the raw disk of the same file system in the same run.

    .venv/bin/python tests/bench/bench_recovery.py [--mib 512] [--osds 4] [--dir DIR]

1. raw disk: 4 MiB buffered writes each followed by fdatasync, for a few seconds (MB/s);
2. a cluster of --osds OSDs (pool size 3) gets --mib MiB of 4 MiB objects (16 in flight);
3. baseline: client 4 MiB write throughput for --seconds with no recovery;
4. kill -9 the last OSD and mark it out: its PGs backfill onto the others; the clock runs
   until every PG is active+clean, while the same client writer keeps writing; progress is
   printed each second from `loligo status`'s PG summary;
5. prints time to active+clean, bytes recovered (sum of the primaries' counters) and the
   recovery rate in MB/s beside the raw disk's, and client MB/s during recovery as a share
   of the baseline. MB is 10^6 bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cluster import launcher  # noqa: E402
from rados_py.config import load  # noqa: E402
from rados_py.proto.loligo import mon_pb2  # noqa: E402
from rados_py.rados import IoCtx, Rados  # noqa: E402
from tests.integration import running_cluster  # noqa: E402

MIB4 = 4 << 20
POOL = "recovery"


def raw_disk(directory: Path, seconds: float) -> float:
    """MB/s of 4 MiB writes, each followed by fdatasync (what a store commit costs)."""
    data = os.urandom(MIB4)
    path = directory / "raw-disk-probe"
    written, start = 0, time.monotonic()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while time.monotonic() - start < seconds:
            os.write(fd, data)
            os.fdatasync(fd)
            written += len(data)
    finally:
        os.close(fd)
        path.unlink()
    return written / (time.monotonic() - start) / 1e6


async def write_for(io: IoCtx, seconds: float, prefix: str, stop: asyncio.Event | None = None,
                    depth: int = 16) -> tuple[int, float]:
    """(bytes, seconds) of 4 MiB write_full with `depth` in flight, for `seconds` or until
    `stop` is set."""
    data = os.urandom(MIB4)
    done = 0
    start = time.monotonic()

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.monotonic() - start < seconds and not (stop and stop.is_set()):
            await io.write_full(f"{prefix}-{w}-{i % 8}", data)
            done += len(data)
            i += 1
    await asyncio.gather(*(worker(w) for w in range(depth)))
    return done, time.monotonic() - start


async def fill(io: IoCtx, mib: int) -> None:
    data = os.urandom(MIB4)
    names = [f"obj-{i}" for i in range(max(1, mib // 4))]
    queue = list(names)
    start = time.monotonic()

    async def worker() -> None:
        while queue:
            await io.write_full(queue.pop(), data)
    await asyncio.gather(*(worker() for _ in range(16)))
    took = time.monotonic() - start
    print(f"  wrote {len(names)} x 4 MiB in {took:.1f}s ({len(names) * MIB4 / took / 1e6:.0f}"
          " MB/s client, x3 on disk)")


async def run(cluster: launcher.LocalCluster, args: argparse.Namespace, raw: float) -> None:
    async with Rados(load(cluster.conf), op_timeout=120) as r:
        await r.pool_create(POOL, pg_num=32, size=3)
        io = await r.open_ioctx(POOL)
        await fill(io, args.mib)
        base_bytes, base_s = await write_for(io, args.seconds, "baseline")
        baseline = base_bytes / base_s / 1e6
        print(f"  baseline client writes: {baseline:.1f} MB/s")

        victim = len(cluster.osds) - 1
        cluster.kill(f"osd.{victim}")
        await r.mon.command(osd_mark=mon_pb2.OsdMark(ids=[victim], state=mon_pb2.OsdMark.DOWN))
        await r.mon.command(osd_mark=mon_pb2.OsdMark(ids=[victim], state=mon_pb2.OsdMark.OUT))
        started = time.monotonic()
        print(f"  killed osd.{victim} and marked it out: recovering...")
        stop = asyncio.Event()
        writer = asyncio.create_task(write_for(io, 3600, "during", stop))
        total = sum(p.pg_num for p in r.osdmap.pools.values())
        while True:
            pgs = (await r.mon.status()).view.pgs
            states = {s.state: s.count for s in pgs.by_state}
            elapsed = time.monotonic() - started
            print(f"  {elapsed:6.1f}s  {pgs.missing_objects:6d} copies left  "
                  f"{pgs.recovery_bytes_per_sec / 1e6:7.1f} MB/s  "
                  + ", ".join(f"{c} {s}" for s, c in states.items()), flush=True)
            if states == {"active+clean": total} and elapsed > 2:
                break
            if elapsed > args.timeout:
                print("  gave up waiting for active+clean")
                break
            await asyncio.sleep(1)
        took = time.monotonic() - started
        stop.set()
        during_bytes, during_s = await writer
        pgs = (await r.mon.status()).view.pgs
        recovered = sum(p.recovered_bytes for p in pgs.pgs)
        objects = sum(p.recovered_objects for p in pgs.pgs)
        rate = recovered / took / 1e6
        during = during_bytes / during_s / 1e6
        print()
        print(f"time to active+clean:     {took:8.1f} s")
        print(f"recovered:                {objects:8d} object copies, {recovered / 1e6:.0f} MB")
        print(f"recovery rate:            {rate:8.1f} MB/s   (raw disk 4 MiB+fdatasync "
              f"{raw:.0f} MB/s: {rate / raw:.2f}x)")
        print(f"client writes meanwhile:  {during:8.1f} MB/s   ({during / baseline:.2f} of "
              f"{baseline:.1f} MB/s without recovery)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=512, help="data written first (MiB)")
    parser.add_argument("--osds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0, help="baseline write phase")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--dir", type=Path, help="where the cluster lives (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        print(f"raw disk in {directory} ...", flush=True)
        raw = raw_disk(directory, 3.0)
        print(f"  raw disk: {raw:.0f} MB/s (4 MiB writes + fdatasync)")
        settings = {"mon_osd_down_out_interval": 0}
        with running_cluster(directory / "cluster", osds=args.osds, settings=settings) as c:
            asyncio.run(run(c, args, raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
