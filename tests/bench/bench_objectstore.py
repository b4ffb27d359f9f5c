"""Object store benchmark: DurableStore writes next to the raw disk, in the same run.

    .venv/bin/python tests/bench/bench_objectstore.py [--seconds S] [--dir DIR]

Prints, for 4 KiB and 4 MiB write_full transactions with 1 and 32 concurrent submitters:
transactions/s, MB/s, latency p50/p99, and fsyncs per transaction (WAL commits + block-file
fdatasyncs + directory fsyncs, counted by the store). The raw-disk reference is measured on the
same directory first: 4 KiB O_DSYNC writes at queue depth 1, and 4 MiB buffered writes each
followed by fdatasync - the costs group commit is meant to amortise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from osd.objectstore import DurableStore, Transaction  # noqa: E402

KIB4, MIB4 = 4096, 4 << 20


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def raw_dsync_4k(directory: Path, seconds: float) -> float:
    """4 KiB O_DSYNC writes/s at queue depth 1 (cycling over a 4 MiB region)."""
    path = directory / "raw-dsync"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DSYNC, 0o600)
    buf = os.urandom(KIB4)
    n, deadline = 0, time.monotonic() + seconds
    start = time.monotonic()
    try:
        while time.monotonic() < deadline:
            os.pwrite(fd, buf, (n % 1024) * KIB4)
            n += 1
    finally:
        os.close(fd)
        path.unlink()
    return n / (time.monotonic() - start)


def raw_fdatasync_4m(directory: Path, seconds: float) -> float:
    """MB/s of 4 MiB buffered writes, each followed by fdatasync (new file each time)."""
    buf = os.urandom(MIB4)
    n, deadline = 0, time.monotonic() + seconds
    start = time.monotonic()
    while time.monotonic() < deadline:
        path = directory / f"raw-{n % 16}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, buf)
        os.fdatasync(fd)
        os.close(fd)
        n += 1
    elapsed = time.monotonic() - start
    for i in range(16):
        (directory / f"raw-{i}").unlink(missing_ok=True)
    return n * MIB4 / elapsed / 1e6


async def store_bench(store: DurableStore, size: int, writers: int, seconds: float) -> str:
    data = os.urandom(size)
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    base = dict(store.stats)

    async def writer(w: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            name = b"w%d-%d" % (w, i % 64)          # overwrite a bounded set of objects
            t0 = time.monotonic()
            await store.submit(Transaction().write_full("1.0", name, data)
                               .set_version("1.0", name, i + 1))
            latencies.append(time.monotonic() - t0)
            i += 1

    start = time.monotonic()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.monotonic() - start
    txns = store.stats["txns"] - base["txns"]
    fsyncs = sum(store.stats[k] - base[k] for k in ("commits", "file_fsyncs", "dir_fsyncs"))
    mbs = len(latencies) * size / elapsed / 1e6
    return (f"{len(latencies) / elapsed:9.0f} txn/s {mbs:8.1f} MB/s"
            f"  p50 {pct(latencies, 50) * 1e3:6.1f} ms  p99 {pct(latencies, 99) * 1e3:6.1f} ms"
            f"  {fsyncs / max(txns, 1):.3f} fsyncs/txn")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--dir", default=None, help="directory on the disk to measure (default: tmp)")
    args = ap.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="bench-objectstore-", dir=args.dir))
    try:
        dsync = raw_dsync_4k(directory, args.seconds)
        sync4m = raw_fdatasync_4m(directory, args.seconds)
        print(f"directory {directory}")
        print(f"raw disk  4 KiB O_DSYNC qd1       : {dsync:9.0f} writes/s "
              f"{dsync * KIB4 / 1e6:8.1f} MB/s")
        print(f"raw disk  4 MiB write+fdatasync   : {sync4m / (MIB4 / 1e6):9.0f} writes/s "
              f"{sync4m:8.1f} MB/s")
        store = await DurableStore.open(directory / "store")
        await store.submit(Transaction().create_collection("1.0"))
        try:
            for size, label in ((KIB4, "4 KiB"), (MIB4, "4 MiB")):
                for writers in (1, 32):
                    line = await store_bench(store, size, writers, args.seconds)
                    print(f"store     {label} write_full x{writers:<2}      : {line}")
        finally:
            await store.close()
        print("(raw 4 KiB O_DSYNC writes/s is the fsync-per-op ceiling; group commit should beat "
              "it with 32 submitters)")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
