"""RADOS benchmark: a local cluster (1 monitor, 3 OSDs, pool size 3) through the client library,
next to the raw disk of the same file system, in the same run.

    .venv/bin/python tests/bench/bench_rados.py [--seconds S] [--concurrency C] [--dir DIR]

Phases (each bounded by --seconds, a progress line when each starts):
1. raw disk in the cluster's directory: 4 MiB buffered writes each followed by fdatasync, and
   4 KiB O_DSYNC writes, at queue depth 1 and C (C threads, one file each);
2. the cluster, C ops in flight from one client: 4 MiB write_full then reads of those objects
   (MB/s), 4 KiB write_full then reads (IOPS), with latency p50/p99.
Then the ratios cluster/raw. With pool size 3 on one disk every client byte is written three
times, so the "x3" column is the share of the disk's bandwidth the cluster actually uses.
MB here is 10^6 bytes; `rados bench` (Ceph's and `loligo rados bench`) prints MiB as "MB".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cluster import launcher  # noqa: E402
from rados_py.rados import IoCtx, Rados  # noqa: E402
from tests.integration import running_cluster  # noqa: E402

KIB4, MIB4 = 4096, 4 << 20
POOL = "bench"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


@dataclass
class Result:
    ops: int
    size: int
    seconds: float
    latencies: list[float]

    @property
    def iops(self) -> float:
        return self.ops / self.seconds

    @property
    def mbs(self) -> float:
        return self.ops * self.size / self.seconds / 1e6

    def line(self) -> str:
        lat = ""
        if self.latencies:
            lat = (f"  p50 {pct(self.latencies, 50) * 1e3:7.2f} ms"
                   f"  p99 {pct(self.latencies, 99) * 1e3:7.2f} ms")
        return f"{self.iops:8.0f} ops/s {self.mbs:8.1f} MB/s{lat}  ({self.ops} ops)"


# --- raw disk ---------------------------------------------------------------------------------

def _threads(depth: int, seconds: float, one: Callable[[int, int], None], size: int) -> Result:
    """Run `one(worker, i)` in `depth` threads until the deadline; latency of each call."""
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        mine: list[float] = []
        i = 0
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            one(w, i)
            mine.append(time.monotonic() - t0)
            i += 1
        with lock:
            latencies.extend(mine)

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(depth)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Result(len(latencies), size, time.monotonic() - start, latencies)


def raw_fdatasync_4m(directory: Path, depth: int, seconds: float) -> Result:
    """4 MiB buffered writes to a new file, then fdatasync: what the store does per block
    file (16 names per thread, recreated, so the disk allocates as it does for new files)."""
    buf = os.urandom(MIB4)

    def one(w: int, i: int) -> None:
        fd = os.open(directory / f"raw4m-{w}-{i % 16}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600)
        try:
            os.write(fd, buf)
            os.fdatasync(fd)
        finally:
            os.close(fd)

    try:
        return _threads(depth, seconds, one, MIB4)
    finally:
        for f in directory.glob("raw4m-*"):
            f.unlink()


def raw_dsync_4k(directory: Path, depth: int, seconds: float) -> Result:
    """4 KiB O_DSYNC writes, one file per thread, cycling over a 4 MiB region."""
    buf = os.urandom(KIB4)
    fds = [os.open(directory / f"raw4k-{w}", os.O_WRONLY | os.O_CREAT | os.O_DSYNC, 0o600)
           for w in range(depth)]

    def one(w: int, i: int) -> None:
        os.pwrite(fds[w], buf, (i % 1024) * KIB4)

    try:
        return _threads(depth, seconds, one, KIB4)
    finally:
        for w, fd in enumerate(fds):
            os.close(fd)
            (directory / f"raw4k-{w}").unlink()


# --- cluster ----------------------------------------------------------------------------------

async def _workers(depth: int, seconds: float, size: int,
                   one: Callable[[int, int], Awaitable[None]]) -> Result:
    deadline = time.monotonic() + seconds
    latencies: list[float] = []

    async def worker(w: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            await one(w, i)
            latencies.append(time.monotonic() - t0)
            i += 1

    start = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(depth)))
    return Result(len(latencies), size, time.monotonic() - start, latencies)


async def rados_write(io: IoCtx, prefix: str, size: int, depth: int, seconds: float,
                      written: list[str]) -> Result:
    data = os.urandom(size)

    async def one(w: int, i: int) -> None:
        name = f"{prefix}-{w}-{i}"
        await io.write_full(name, data)
        written.append(name)

    return await _workers(depth, seconds, size, one)


async def rados_read(io: IoCtx, names: list[str], size: int, depth: int,
                     seconds: float) -> Result:
    rng = random.Random(1)

    async def one(w: int, i: int) -> None:
        got = await io.read(rng.choice(names), 0, size)
        if len(got) != size:
            raise AssertionError(f"read {len(got)} bytes, expected {size}")

    return await _workers(depth, seconds, size, one)


async def cluster_phases(c: launcher.LocalCluster, args: argparse.Namespace
                         ) -> dict[str, Result]:
    out: dict[str, Result] = {}
    async with Rados(c.config) as r:
        pool = next(p for p in r.osdmap.pools.values() if p.name == POOL)
        print(f"cluster: {len(c.osds)} OSDs, pool {POOL!r} size {pool.size} "
              f"min_size {pool.min_size} pg_num {pool.pg_num}, {args.concurrency} ops in flight")
        io = await r.open_ioctx(POOL)
        await io.write_full("warm-up", b"x")  # channels and maps before the clock starts
        for label, size in (("4 MiB", MIB4), ("4 KiB", KIB4)):
            names: list[str] = []
            progress(f"cluster {label} write_full for {args.seconds:g} s")
            out[f"{label} write"] = await rados_write(io, f"b{size}", size, args.concurrency,
                                                      args.seconds, names)
            print(f"rados {label} write   x{args.concurrency:<3}: {out[f'{label} write'].line()}",
                  flush=True)
            progress(f"cluster {label} read for {args.seconds:g} s")
            out[f"{label} read"] = await rados_read(io, names, size, args.concurrency,
                                                    args.seconds)
            print(f"rados {label} read    x{args.concurrency:<3}: {out[f'{label} read'].line()}",
                  flush=True)
    return out


def ratio(a: float, b: float) -> str:
    return f"{a / b:6.2f}x" if b else "   n/a"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    ap.add_argument("--concurrency", type=int, default=16, help="ops in flight (and raw qd)")
    ap.add_argument("--dir", default=None,
                    help="where the cluster lives (default: a new temporary directory)")
    ap.add_argument("--skip-raw", action="store_true", help="only the cluster phases")
    args = ap.parse_args()
    depth = args.concurrency
    with tempfile.TemporaryDirectory(prefix="bench-rados-", dir=args.dir) as tmp:
        directory = Path(tmp)
        print(f"directory {directory}")
        raw: dict[str, Result] = {}
        if not args.skip_raw:
            for qd in (1, depth):
                progress(f"raw 4 MiB write+fdatasync qd{qd} for {args.seconds:g} s")
                raw[f"4m qd{qd}"] = raw_fdatasync_4m(directory, qd, args.seconds)
                print(f"raw   4 MiB write+fdatasync qd{qd:<3}: {raw[f'4m qd{qd}'].line()}",
                      flush=True)
                progress(f"raw 4 KiB O_DSYNC qd{qd} for {args.seconds:g} s")
                raw[f"4k qd{qd}"] = raw_dsync_4k(directory, qd, args.seconds)
                print(f"raw   4 KiB O_DSYNC         qd{qd:<3}: {raw[f'4k qd{qd}'].line()}",
                      flush=True)
        progress("starting the cluster (1 monitor, 3 OSDs)")
        t0 = time.monotonic()
        with running_cluster(directory / "cluster", mons=1, osds=3, pool=POOL) as c:
            progress(f"cluster up in {time.monotonic() - t0:.1f} s")
            res = asyncio.run(cluster_phases(c, args))
        if raw:
            print("ratios (cluster / raw disk; x3: counting the 3 replicas' writes):")
            w4m, w4k = res["4 MiB write"], res["4 KiB write"]
            for qd in (1, depth):
                disk = raw[f"4m qd{qd}"].mbs
                print(f"  4 MiB write MB/s vs write+fdatasync qd{qd:<3}: {ratio(w4m.mbs, disk)}"
                      f"   x3 {ratio(3 * w4m.mbs, disk)}")
            for qd in (1, depth):
                disk = raw[f"4k qd{qd}"].iops
                print(f"  4 KiB write IOPS vs O_DSYNC         qd{qd:<3}: {ratio(w4k.iops, disk)}"
                      f"   x3 {ratio(3 * w4k.iops, disk)}")
            print(f"  4 KiB write p50 latency vs O_DSYNC qd1 p50     : "
                  f"{ratio(pct(w4k.latencies, 50), pct(raw['4k qd1'].latencies, 50))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
