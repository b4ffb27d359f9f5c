"""RADOS benchmark: a local cluster (1 monitor, 3 OSDs, pool size 3) through the client library,
next to the raw disk of the same file system, in the same run, with the CPU each daemon spends.

    .venv/bin/python tests/bench/bench_rados.py [--seconds S] [--concurrency C] [--dir DIR]
        [--conf CONF]        # an already running cluster instead of a new one (pool "bench")
        [--ceph CEPH_CONF [--rounds N]]   # side by side with a running Ceph: every phase on
                             # both (Ceph, Loligo, Ceph, ...), then Loligo/Ceph ratios

Phases (each bounded by --seconds, a progress line when each starts):
1. raw disk in the cluster's directory: 4 MiB buffered writes each followed by fdatasync, and
   4 KiB O_DSYNC writes, at queue depth 1 and C (C threads, one file each);
2. the cluster from one client, at C ops in flight and at 1: 4 MiB write_full then sequential
   reads of those objects, 4 KiB write_full then random reads; ops/s, MB/s, latency p50/p99;
3. CPU: for each phase, CPU-ms per op and per MB (of client data) of every daemon (utime +
   stime from /proc) and of the client, and their sum;
4. the 4 KiB write path's layers: with `perf stat` (when present) over the OSDs during a
   4 KiB write phase, per client write: fdatasync/fsync, futex (thread hand-offs),
   sendmsg/write/pwrite64 calls; the session frames and messages (RPCs) come from the OSDs'
   own counters (`Osd/Perf`), and the payload copies from the code walk (PAYLOAD_COPIES).
Then the ratios cluster/raw. With pool size 3 on one disk every client byte is written three
times, so the "x3" column is the share of the disk's bandwidth the cluster actually uses.
MB here is 10^6 bytes; `rados bench` (Ceph's and `loligo rados bench`) prints MiB as "MB".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cluster import launcher  # noqa: E402
from rados_py.config import load  # noqa: E402
from rados_py.rados import IoCtx, Rados  # noqa: E402
from tests.integration import running_cluster  # noqa: E402

KIB4, MIB4 = 4096, 4 << 20
POOL = "bench"
HZ = os.sysconf("SC_CLK_TCK")
# the user-space copies of a write's data from the client's buffer to the stores (code walk;
# osd/service.py's docstring tells them one by one)
PAYLOAD_COPIES = ("client 3 (OpRequest, serialise, batch) + primary 5 (parse, getter, RepOp, "
                  "serialise, batch) + per replica 3 (parse, getter, store buffer)")
SYSCALLS = ("fdatasync", "fsync", "futex", "sendmsg", "write", "pwrite64", "io_submit")


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
    cpu: dict[str, float] = field(default_factory=dict)  # seconds per process over the phase

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

    def cpu_line(self) -> str:
        if not self.ops or not self.cpu:
            return ""
        mb = self.ops * self.size / (1 << 20)
        daemons = sum(v for k, v in self.cpu.items() if k != "client")
        parts = [f"{k} {v * 1e3 / self.ops:.2f}" for k, v in sorted(self.cpu.items())]
        return (f"      CPU-ms/op: {' '.join(parts)} | daemons {daemons * 1e3 / self.ops:.2f}"
                f" ({daemons * 1e3 / mb:.2f} per MiB)")


# --- CPU of processes -------------------------------------------------------------------------

def proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ
    except (OSError, ValueError, IndexError):
        return 0.0


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class CpuMeter:
    """CPU seconds of the cluster's daemons (by name) and of this client process."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {n: p for n, p in pids.items() if not n.startswith("gateway")}

    def snap(self) -> dict[str, float]:
        out = {name: proc_cpu(pid) for name, pid in self.pids.items()}
        out["client"] = self_cpu()
        return out

    @staticmethod
    def diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {k: b[k] - a[k] for k in b if k in a}


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
    """4 MiB buffered writes to a new file, then fdatasync (16 names per thread, recreated,
    so the disk allocates as it does for new files)."""
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


async def rados_read(io: IoCtx, names: list[str], size: int, depth: int, seconds: float,
                     sequential: bool) -> Result:
    rng = random.Random(1)
    order = iter(names * 1000)

    async def one(w: int, i: int) -> None:
        name = next(order) if sequential else rng.choice(names)
        got = await io.read(name, 0, size)
        if len(got) != size:
            raise AssertionError(f"read {len(got)} bytes, expected {size}")

    return await _workers(depth, seconds, size, one)


@contextlib.contextmanager
def perf_stat(pids: list[int]) -> Iterator[dict[str, int]]:
    """Syscall counts of `pids` while the block runs (empty when perf is missing or refused)."""
    counts: dict[str, int] = {}
    perf = shutil.which("perf")
    proc = None
    if perf and pids:
        events = ",".join(f"syscalls:sys_enter_{s}" for s in SYSCALLS)
        proc = subprocess.Popen([perf, "stat", "-x", ",", "-e", events, "-p",
                                 ",".join(map(str, pids))], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
    try:
        yield counts
    finally:
        if proc is not None:
            proc.send_signal(2)
            try:
                _, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                err = ""
            for line in err.splitlines():
                m = re.match(r"^(\d+),[^,]*,syscalls:sys_enter_(\w+)", line)
                if m:
                    counts[m.group(2)] = int(m.group(1))


async def osd_counters(r: Rados, osds: list[int]) -> dict[str, int]:
    """The OSDs' own counters, summed (session frames and messages, store commits...)."""
    total: dict[str, int] = {}
    for osd in osds:
        try:
            got = await r.osd_perf(osd)
        except Exception as exc:  # an older OSD without the call: leave the figures out
            progress(f"osd.{osd} counters unavailable: {exc}")
            return {}
        for key, value in got.items():
            total[key] = total.get(key, 0) + value
    return total


async def cluster_phases(config, pids: dict[str, int], args: argparse.Namespace
                         ) -> dict[str, Result]:
    async with Rados(config) as r:
        pool = next(p for p in r.osdmap.pools.values() if p.name == POOL)
        osds = sorted(r.osdmap.osds)
        print(f"cluster: {len(osds)} OSDs, pool {POOL!r} size {pool.size} "
              f"min_size {pool.min_size} pg_num {pool.pg_num}")
        io = await r.open_ioctx(POOL)
        return await phases(io, pids, args, lambda: osd_counters(r, osds), "rados")


async def ceph_phases(conf: str, args: argparse.Namespace) -> dict[str, Result]:
    """The same phases against a running Ceph (tests/bench/ceph_target.py)."""
    from tests.bench import ceph_target

    cluster, io, what = ceph_target.connect(conf, POOL)
    try:
        pids = ceph_target.daemon_pids(conf)
        print(f"{what}; daemons {', '.join(sorted(pids)) or 'not found (no CPU figures)'}")

        async def no_counters() -> dict[str, int]:
            return {}
        return await phases(io, pids, args, no_counters, "ceph ")
    finally:
        cluster.shutdown()


async def phases(io: Any, pids: dict[str, int], args: argparse.Namespace,
                 counters: Callable[[], Awaitable[dict[str, int]]], tag: str
                 ) -> dict[str, Result]:
    """Every cluster phase through `io` (write_full/read/remove coroutines); `pids`: the
    daemons whose CPU is counted; `counters()`: the OSDs' own counters, summed."""
    out: dict[str, Result] = {}
    meter = CpuMeter(pids)
    await io.write_full("warm-up", b"x")  # channels and maps before the clock starts
    for depth in (args.concurrency, 1):
        for label, size, read_kind in (("4 MiB", MIB4, "seq"), ("4 KiB", KIB4, "rand")):
            names: list[str] = []
            key = f"{label} write x{depth}"
            progress(f"{tag.strip()} {key} for {args.seconds:g} s")
            c0 = meter.snap()
            out[key] = await rados_write(io, f"b{size}d{depth}", size, depth, args.seconds,
                                         names)
            out[key].cpu = meter.diff(c0, meter.snap())
            print(f"{tag} {label} write    x{depth:<3}: {out[key].line()}\n"
                  f"{out[key].cpu_line()}", flush=True)
            key = f"{label} {read_kind} read x{depth}"
            progress(f"{tag.strip()} {key} for {args.seconds:g} s")
            c0 = meter.snap()
            out[key] = await rados_read(io, names, size, depth, args.seconds,
                                        sequential=read_kind == "seq")
            out[key].cpu = meter.diff(c0, meter.snap())
            print(f"{tag} {label} {read_kind} read {'' if read_kind == 'rand' else ' '}"
                  f"x{depth:<3}: {out[key].line()}\n{out[key].cpu_line()}", flush=True)
            for i in range(0, len(names), 64):
                await asyncio.gather(*(io.remove(n) for n in names[i:i + 64]))
    if args.skip_layers:
        return out
    progress(f"4 KiB write path under perf stat for {args.seconds:g} s")
    osd_pids = [p for n, p in pids.items() if n.startswith("osd.")]
    names = []
    before = await counters()
    with perf_stat(osd_pids) as calls:
        layer = await rados_write(io, "layers", KIB4, args.concurrency, args.seconds, names)
    after = await counters()
    print(f"4 KiB write path, per client write at x{args.concurrency} "
          f"({layer.ops} writes, summed over the {len(osd_pids)} OSDs):")
    if calls:
        print("  syscalls: " + " ".join(f"{k} {v / layer.ops:.2f}"
                                         for k, v in sorted(calls.items())))
    else:
        print("  syscalls: n/a (perf missing or not permitted)")
    if before and after:
        delta = {k: after[k] - before.get(k, 0) for k in after}
        print("  OSD counters: " + " ".join(f"{k} {v / layer.ops:.2f}"
                                             for k, v in sorted(delta.items()) if v))
        print(f"  payload copies: {PAYLOAD_COPIES}")
    for i in range(0, len(names), 64):
        await asyncio.gather(*(io.remove(n) for n in names[i:i + 64]))
    return out


def compare(loligo: list[dict[str, Result]], ceph: list[dict[str, Result]]) -> None:
    """Loligo / Ceph for every phase: medians over the rounds of throughput and of daemon
    CPU-ms per op (the steadiest figure on a shared machine)."""
    def med(values: list[float]) -> float:
        return sorted(values)[len(values) // 2] if values else 0.0

    def daemons_ms(res: Result, only: str = "") -> float:
        return sum(v for k, v in res.cpu.items()
                   if k != "client" and k.startswith(only)) * 1e3 / max(1, res.ops)

    print(f"Loligo / Ceph, medians of {len(loligo)} rounds (throughput: higher is better; "
          "CPU-ms per op of all daemons, and of the OSDs alone: lower is better)")
    print(f"  {'phase':<20} {'Loligo':>16} {'Ceph':>16} {'ratio':>7}   "
          f"{'CPU L':>7} {'CPU C':>7} {'ratio':>7}   {'OSDs L':>7} {'OSDs C':>7} {'ratio':>7}")
    for key in loligo[0]:
        unit = "MB/s" if "MiB" in key else "op/s"

        def speed(res: Result, unit: str = unit) -> float:
            return res.mbs if unit == "MB/s" else res.iops
        lo = med([speed(r[key]) for r in loligo])
        ce = med([speed(r[key]) for r in ceph])
        lc = med([daemons_ms(r[key]) for r in loligo])
        cc = med([daemons_ms(r[key]) for r in ceph])
        lo_osd = med([daemons_ms(r[key], "osd.") for r in loligo])
        ce_osd = med([daemons_ms(r[key], "osd.") for r in ceph])
        print(f"  {key:<20} {lo:>11.1f} {unit} {ce:>11.1f} {unit} {ratio(lo, ce)}   "
              f"{lc:>7.2f} {cc:>7.2f} {ratio(lc, cc)}   {lo_osd:>7.2f} {ce_osd:>7.2f} "
              f"{ratio(lo_osd, ce_osd)}")
    for key in loligo[0]:
        for side, runs in (("Loligo", loligo), ("Ceph", ceph)):
            per: dict[str, list[float]] = {}
            for r in runs:
                for name, v in r[key].cpu.items():
                    per.setdefault(name, []).append(v * 1e3 / max(1, r[key].ops))
            print(f"  CPU-ms/op {key:<20} {side:<6}: " + " ".join(
                f"{name} {med(v):.2f}" for name, v in sorted(per.items())))


def ratio(a: float, b: float) -> str:
    return f"{a / b:6.2f}x" if b else "   n/a"


def print_ratios(raw: dict[str, Result], res: dict[str, Result], depth: int) -> None:
    print("ratios (cluster / raw disk; x3: counting the 3 replicas' writes):")
    w4m, w4k = res[f"4 MiB write x{depth}"], res[f"4 KiB write x{depth}"]
    for qd in (1, depth):
        disk = raw[f"4m qd{qd}"].mbs
        print(f"  4 MiB write MB/s vs write+fdatasync qd{qd:<3}: {ratio(w4m.mbs, disk)}"
              f"   x3 {ratio(3 * w4m.mbs, disk)}")
    for qd in (1, depth):
        disk = raw[f"4k qd{qd}"].iops
        print(f"  4 KiB write IOPS vs O_DSYNC         qd{qd:<3}: {ratio(w4k.iops, disk)}"
              f"   x3 {ratio(3 * w4k.iops, disk)}")
    w1 = res["4 KiB write x1"]
    print(f"  4 KiB write x1 p50 latency vs O_DSYNC qd1 p50  : "
          f"{ratio(pct(w1.latencies, 50), pct(raw['4k qd1'].latencies, 50))}")


def raw_phases(directory: Path, args: argparse.Namespace) -> dict[str, Result]:
    raw: dict[str, Result] = {}
    for qd in (1, args.concurrency):
        progress(f"raw 4 MiB write+fdatasync qd{qd} for {args.seconds:g} s")
        raw[f"4m qd{qd}"] = raw_fdatasync_4m(directory, qd, args.seconds)
        print(f"raw   4 MiB write+fdatasync qd{qd:<3}: {raw[f'4m qd{qd}'].line()}", flush=True)
        progress(f"raw 4 KiB O_DSYNC qd{qd} for {args.seconds:g} s")
        raw[f"4k qd{qd}"] = raw_dsync_4k(directory, qd, args.seconds)
        print(f"raw   4 KiB O_DSYNC         qd{qd:<3}: {raw[f'4k qd{qd}'].line()}", flush=True)
    return raw


def side_by_side(loligo_round: Callable[[], dict[str, Result]],
                 args: argparse.Namespace) -> None:
    loligo: list[dict[str, Result]] = []
    ceph: list[dict[str, Result]] = []
    for n in range(args.rounds):
        progress(f"round {n + 1}/{args.rounds}: Ceph")
        ceph.append(asyncio.run(ceph_phases(args.ceph, args)))
        progress(f"round {n + 1}/{args.rounds}: Loligo")
        loligo.append(loligo_round())
    compare(loligo, ceph)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    ap.add_argument("--concurrency", type=int, default=16, help="ops in flight (and raw qd)")
    ap.add_argument("--dir", default=None,
                    help="where the cluster lives (default: a new temporary directory)")
    ap.add_argument("--conf", default=None,
                    help="use this running cluster (its pool 'bench', created if missing)")
    ap.add_argument("--skip-raw", action="store_true", help="only the cluster phases")
    ap.add_argument("--skip-layers", action="store_true",
                    help="no 4 KiB write-path phase (perf stat, OSD counters)")
    ap.add_argument("--ceph", default=None, metavar="CEPH_CONF",
                    help="also run every phase against this running Ceph (python3-rados), "
                    "alternating Ceph and Loligo, and print Loligo/Ceph ratios")
    ap.add_argument("--rounds", type=int, default=1,
                    help="with --ceph: alternations Ceph, Loligo (medians are compared)")
    args = ap.parse_args()
    if args.ceph:
        args.skip_raw = True
    if args.conf:
        cluster = launcher.LocalCluster(Path(args.conf), out=lambda *_: None)
        raw = {} if args.skip_raw else raw_phases(Path(args.conf).parent, args)
        config = load(Path(args.conf), "client.admin")

        async def ensure_pool() -> None:
            async with Rados(config) as r:
                if POOL not in await r.pool_list():
                    await r.pool_create(POOL, pg_num=32, size=3)
        asyncio.run(ensure_pool())
        if args.ceph:
            side_by_side(lambda: asyncio.run(cluster_phases(config, cluster.running(), args)),
                         args)
            return 0
        res = asyncio.run(cluster_phases(config, cluster.running(), args))
        if raw:
            print_ratios(raw, res, args.concurrency)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-rados-", dir=args.dir) as tmp:
        directory = Path(tmp)
        print(f"directory {directory}")
        raw = {} if args.skip_raw else raw_phases(directory, args)
        progress("starting the cluster (1 monitor, 3 OSDs)")
        t0 = time.monotonic()
        with running_cluster(directory / "cluster", mons=1, osds=3, pool=POOL) as c:
            progress(f"cluster up in {time.monotonic() - t0:.1f} s")
            if args.ceph:
                side_by_side(lambda: asyncio.run(cluster_phases(c.config, c.running(), args)),
                             args)
                return 0
            res = asyncio.run(cluster_phases(c.config, c.running(), args))
        if raw:
            print_ratios(raw, res, args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
