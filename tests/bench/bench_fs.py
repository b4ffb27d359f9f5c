"""File system benchmark: a Loligo mount (`loligo fs mount`) beside a local directory, the
same workload in the same run.

    .venv/bin/python tests/bench/bench_fs.py [--files 10000] [--mb 256] [--iops-seconds 10]
                                              [--mount DIR] [--local DIR]

Metadata: create, stat, rename and unlink per second of --files files in one directory
(one process, one file at a time, as `touch`/`stat`/`mv`/`rm` would). Data: 1 MiB sequential
write (with fsync at the end) and read in MB/s over --mb MiB; 4 KiB random writes and reads
(IOPS) for --iops-seconds each on a 64 MiB file. Without --mount a cluster (1 monitor, 3 OSDs,
2 MDSs) is started in a temporary directory and removed at the end; CPU seconds of each
daemon per op are printed for the metadata phases (with --mount, of the processes named by
--cpu-of NAME=PID, e.g. a ceph-fuse mount's and its cluster's daemons). Reads after writes
drop the kernel's page cache first (echo 3 > drop_caches) so they measure the file system,
not memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.integration import running_cluster  # noqa: E402
from tests.integration.fs_fixture import FS_SETTINGS, mounted  # noqa: E402


def drop_caches() -> None:
    with contextlib.suppress(OSError):
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return out


def timed(count: int, fn: Callable[[int], None]) -> float:
    start = time.perf_counter()
    for i in range(count):
        fn(i)
    return count / (time.perf_counter() - start)


def metadata(root: Path, files: int, pids: dict[str, int]) -> dict[str, float]:
    d = root / "meta"
    d.mkdir()
    out = {}
    phases = [("create", lambda i: os.close(os.open(d / f"f{i}", os.O_CREAT | os.O_WRONLY,
                                                    0o644))),
              ("stat", lambda i: os.stat(d / f"f{i}")),
              ("rename", lambda i: os.rename(d / f"f{i}", d / f"g{i}")),
              ("unlink", lambda i: os.unlink(d / f"g{i}"))]
    for name, fn in phases:
        before = cpu_of(pids)
        out[name] = timed(files, fn)
        after = cpu_of(pids)
        if pids:
            ms = {k: (after[k] - before.get(k, 0)) * 1000 / files for k in after}
            out[name + "_cpu"] = ms  # type: ignore[assignment]
    d.rmdir()
    return out


def data(root: Path, mb: int, iops_seconds: float) -> dict[str, float]:
    out = {}
    block = os.urandom(1 << 20)
    path = root / "seq"
    start = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    out["seq_write_MBps"] = mb / (time.perf_counter() - start)
    drop_caches()
    start = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass
    out["seq_read_MBps"] = mb / (time.perf_counter() - start)
    path.unlink()
    rpath = root / "rand"
    size = 64 << 20
    with open(rpath, "wb") as f:
        f.truncate(size)
    small = os.urandom(4096)
    rng = random.Random(1)
    fd = os.open(rpath, os.O_RDWR)
    try:
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < iops_seconds:
            os.pwrite(fd, small, rng.randrange(size // 4096) * 4096)
            n += 1
        os.fsync(fd)
        out["rand_write_IOPS"] = n / (time.perf_counter() - start)
    finally:
        os.close(fd)
    drop_caches()
    fd = os.open(rpath, os.O_RDONLY)
    try:
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < iops_seconds:
            os.pread(fd, 4096, rng.randrange(size // 4096) * 4096)
            n += 1
        out["rand_read_IOPS"] = n / (time.perf_counter() - start)
    finally:
        os.close(fd)
    rpath.unlink()
    return out


@contextlib.contextmanager
def loligo_mount(args: argparse.Namespace) -> Iterator[tuple[Path, dict[str, int]]]:
    if args.mount:
        yield Path(args.mount), dict(_named_pid(x) for x in args.cpu_of)
        return
    with tempfile.TemporaryDirectory(prefix="bench-fs-") as tmp, \
            running_cluster(Path(tmp) / "cluster", mons=1, osds=3, mdss=2,
                            settings={**FS_SETTINGS, "osd_pool_default_size": 3}) as c:
        asyncio.run(c.create_fs())
        with mounted(c, Path(tmp) / "mnt") as m:
            pids = {name: pid for name, pid in c.running().items()
                    if name.startswith(("mds", "osd", "mon"))}
            pids["client"] = m.proc.pid  # type: ignore[union-attr]
            yield m.path, pids


def _named_pid(spec: str) -> tuple[str, int]:
    name, _, pid = spec.partition("=")
    return name, int(pid)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--mb", type=int, default=256)
    p.add_argument("--iops-seconds", type=float, default=10.0)
    p.add_argument("--mount", help="an existing mount to measure (default: start a cluster)")
    p.add_argument("--cpu-of", action="append", default=[], metavar="NAME=PID",
                   help="with --mount: a process whose CPU per op to report (repeatable), "
                        "e.g. the daemons of another file system measured side by side")
    p.add_argument("--local", help="the local directory to compare with (default: a temp dir)")
    args = p.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-fs-local-", dir=args.local) as local:
        print(f"local directory {local}: {args.files} files, {args.mb} MiB", flush=True)
        results["local"] = {**metadata(Path(local), args.files, {}),
                            **data(Path(local), args.mb, args.iops_seconds)}
    with loligo_mount(args) as (mnt, pids):
        work = mnt / f"bench-{os.getpid()}"
        work.mkdir()
        print(f"loligo mount {mnt}", flush=True)
        results["loligo"] = {**metadata(work, args.files, pids),
                             **data(work, args.mb, args.iops_seconds)}
        work.rmdir()
    keys = ["create", "stat", "rename", "unlink", "seq_write_MBps", "seq_read_MBps",
            "rand_write_IOPS", "rand_read_IOPS"]
    print(f"\n{'':18}{'loligo':>12}{'local':>12}{'ratio':>8}")
    for k in keys:
        lo, lc = results["loligo"][k], results["local"][k]
        unit = "" if "_" in k else "/s"
        print(f"{k + unit:18}{lo:>12,.1f}{lc:>12,.1f}{lo / lc:>8.3f}")
    print("\nCPU ms per op (metadata phases, per daemon):")
    for phase in ("create", "stat", "rename", "unlink"):
        cpu = results["loligo"].get(phase + "_cpu")
        if isinstance(cpu, dict):
            print(f"  {phase:7} " + "  ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items())
                                             if v >= 0.005))
    return 0


if __name__ == "__main__":
    sys.exit(main())
