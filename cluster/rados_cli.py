"""`loligo rados -p POOL ...`: objects from the command line, as Ceph's `rados` tool does it, and
`loligo rados bench` with rados bench's progress lines and summary (plus p50/p99 latency).

    loligo rados -p data put NAME FILE|-        loligo rados -p data get NAME FILE|-
    loligo rados -p data ls | stat NAME | rm NAME...
    loligo rados -p data setxattr NAME KEY VALUE | getxattr NAME KEY | listxattr NAME
    loligo rados -p data setomapval NAME KEY VALUE | listomapvals NAME
    loligo rados -p data bench 10 write|seq|rand [-b 4M] [-t 16] [--no-cleanup]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cluster.cli_common import add_command as command
from cluster.cli_common import common_options, subparsers
from rados_py import config as config_mod
from rados_py.errors import InvalidArgument, NotFound
from rados_py.rados import IoCtx, Rados

MIB = 1 << 20
BENCH_PREFIX = "benchmark_data"
LAST_RUN = "benchmark_last_metadata"  # Ceph's name: what seq/rand read


def _rados(args: argparse.Namespace) -> Rados:
    conf = config_mod.load(config_mod.find_conf(getattr(args, "conf", None)), "client.admin")
    if getattr(args, "timeout", None):
        conf = conf.replace(rpc_timeout=args.timeout)
    return Rados(conf)


def _run(args: argparse.Namespace, work: Callable[[IoCtx], Awaitable[int]]) -> int:
    async def go() -> int:
        async with _rados(args) as rados:
            await rados.connect()
            return await work(await rados.open_ioctx(args.pool, args.namespace or b""))
    return asyncio.run(go())


def _name(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _show(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


# --- objects ------------------------------------------------------------------------------------

def cmd_put(args: argparse.Namespace) -> int:
    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()

    async def work(io: IoCtx) -> int:
        chunk = io.rados.max_data
        # one atomic write when it fits a message; else the first part replaces the object
        # and the rest follows at offsets
        await io.write_full(_name(args.name), data[:chunk])
        for offset in range(chunk, len(data), chunk):
            await io.write(_name(args.name), data[offset:offset + chunk], offset)
        return 0
    return _run(args, work)


def cmd_get(args: argparse.Namespace) -> int:
    async def work(io: IoCtx) -> int:
        data = await io.read(_name(args.name))
        if args.file == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            Path(args.file).write_bytes(data)
        return 0
    return _run(args, work)


def cmd_rm(args: argparse.Namespace) -> int:
    async def work(io: IoCtx) -> int:
        for name in args.names:
            await io.remove(_name(name))
        return 0
    return _run(args, work)


def cmd_ls(args: argparse.Namespace) -> int:
    async def work(io: IoCtx) -> int:
        async for nspace, name in io.list_objects(all_namespaces=args.all):
            prefix = f"{_show(nspace)}\t" if args.all else ""
            print(prefix + _show(name))
        return 0
    return _run(args, work)


def cmd_stat(args: argparse.Namespace) -> int:
    async def work(io: IoCtx) -> int:
        size, _version, mtime = await io.stat(_name(args.name))
        when = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(mtime))
        print(f"{args.pool}/{args.name} mtime {when}, size {size}")
        return 0
    return _run(args, work)


def cmd_setxattr(args: argparse.Namespace) -> int:
    return _run(args, lambda io: _done(io.set_xattr(_name(args.name), _name(args.key),
                                                    _name(args.value))))


def cmd_getxattr(args: argparse.Namespace) -> int:
    async def work(io: IoCtx) -> int:
        print(_show(await io.get_xattr(_name(args.name), _name(args.key))))
        return 0
    return _run(args, work)


def cmd_listxattr(args: argparse.Namespace) -> int:
    async def work(io: IoCtx) -> int:
        for key in sorted(await io.get_xattrs(_name(args.name))):
            print(_show(key))
        return 0
    return _run(args, work)


def cmd_setomapval(args: argparse.Namespace) -> int:
    return _run(args, lambda io: _done(io.omap_set(_name(args.name),
                                                   {_name(args.key): _name(args.value)})))


def cmd_listomapvals(args: argparse.Namespace) -> int:
    async def work(io: IoCtx) -> int:
        after = b""
        while True:
            page, more = await io.omap_list(_name(args.name), after=after)
            for key, value in page:
                print(f"{_show(key)}\n{_show(value)}")
            if not more or not page:
                return 0
            after = page[-1][0]
    return _run(args, work)


async def _done(awaitable: Awaitable[Any]) -> int:
    await awaitable
    return 0


# --- bench --------------------------------------------------------------------------------------

def size(text: str) -> int:
    """A block size like rados bench takes: 4096, 64K, 4M, 4MiB."""
    try:
        value = config_mod.parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if value < 1:
        raise argparse.ArgumentTypeError("a block size is at least 1 byte")
    return value


class Bench:
    """rados bench: C operations in flight for S seconds, a progress line each second."""

    def __init__(self, io: IoCtx, mode: str, seconds: float, block: int, concurrency: int,
                 out=sys.stdout):
        self.io, self.mode, self.seconds = io, mode, seconds
        self.block, self.concurrency, self.out = block, concurrency, out
        self.prefix = f"{BENCH_PREFIX}_{socket.gethostname()}_{os.getpid()}"
        self.latencies: list[float] = []
        self.per_second: list[int] = []
        self.started = self.finished = 0

    def name(self, i: int) -> bytes:
        return f"{self.prefix}_object{i}".encode()

    async def run(self, existing: list[bytes] | None = None) -> dict[str, float]:
        data = random.Random(1).randbytes(self.block)
        counter = iter(range(1 << 62))
        start = time.monotonic()
        deadline = start + self.seconds
        if self.mode != "write" and not existing:
            raise NotFound("no benchmark objects to read: run `rados bench S write "
                           "--no-cleanup` first")

        async def one() -> None:
            while time.monotonic() < deadline:
                i = next(counter)
                self.started += 1
                t0 = time.monotonic()
                if self.mode == "write":
                    await self.io.write_full(self.name(i), data)
                elif self.mode == "seq":  # each object once, in the order written
                    if i >= len(existing):
                        self.started -= 1
                        return
                    await self.io.read(existing[i])
                else:
                    await self.io.read(random.choice(existing))
                self.latencies.append(time.monotonic() - t0)
                self.finished += 1

        self.out.write("  sec Cur ops   started  finished  avg MB/s  cur MB/s last lat(s)  "
                       "avg lat(s)\n")
        workers = [asyncio.create_task(one()) for _ in range(self.concurrency)]
        last = 0
        for sec in range(1, int(self.seconds) + 2):
            done, _ = await asyncio.wait(workers, timeout=max(0.0, start + sec - time.monotonic()))
            now = self.finished
            self.per_second.append(now - last)
            last = now
            elapsed = time.monotonic() - start
            lat = self.latencies
            self.out.write(f"{sec - 1:5d} {self.started - self.finished:7d} {self.started:9d} "
                           f"{now:9d} {now * self.block / MIB / elapsed:9.3f} "
                           f"{self.per_second[-1] * self.block / MIB:9.3f} "
                           f"{(lat[-1] if lat else 0):11.6f} "
                           f"{(statistics.fmean(lat) if lat else 0):11.6f}\n")
            self.out.flush()
            if len(done) == len(workers):
                break
        for w in workers:
            await w  # an error in any worker surfaces here
        total = time.monotonic() - start
        return self.summary(total)

    def summary(self, total: float) -> dict[str, float]:
        lat = sorted(self.latencies)
        iops = [float(n) for n in self.per_second] or [0.0]
        kind = "writes" if self.mode == "write" else "reads"
        what = "Write" if self.mode == "write" else "Read"
        bandwidth = [n * self.block / MIB for n in iops]
        stats: dict[str, Any] = {
            "Total time run": total, f"Total {kind} made": len(lat),
            f"{what} size": self.block, "Object size": self.block,
            "Bandwidth (MB/sec)": len(lat) * self.block / MIB / total if total else 0.0}
        if self.mode == "write":  # as Ceph prints them, for writes only
            stats.update({"Stddev Bandwidth": statistics.pstdev(bandwidth),
                          "Max bandwidth (MB/sec)": max(bandwidth),
                          "Min bandwidth (MB/sec)": min(bandwidth)})
        stats.update({
            "Average IOPS": len(lat) / total if total else 0.0,
            "Stddev IOPS": statistics.pstdev(iops), "Max IOPS": max(iops),
            "Min IOPS": min(iops),
            "Average Latency(s)": statistics.fmean(lat) if lat else 0.0,
            "Stddev Latency(s)": statistics.pstdev(lat) if lat else 0.0,
            "Max latency(s)": lat[-1] if lat else 0.0, "Min latency(s)": lat[0] if lat else 0.0,
            "p50 latency(s)": lat[len(lat) // 2] if lat else 0.0,
            "p99 latency(s)": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0,
        })
        for key, value in stats.items():
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
            self.out.write(f"{key + ':':<24}{shown}\n")
        return stats


async def _last_run(io: IoCtx) -> tuple[list[bytes], int]:
    """The objects and object size of the last `bench write --no-cleanup` (what seq and rand
    read, as Ceph's rados bench does), from its metadata object."""
    try:
        meta = json.loads(await io.read(LAST_RUN))
        prefix, count, block = meta["prefix"], int(meta["objects"]), int(meta["object_size"])
    except NotFound:
        raise NotFound("no benchmark objects to read: run `rados bench S write "
                       "--no-cleanup` first") from None
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument(f"object {LAST_RUN!r} is not rados bench metadata: remove it "
                              "and write again") from None
    return [f"{prefix}_object{i}".encode() for i in range(count)], block


def cmd_bench(args: argparse.Namespace) -> int:
    async def work(io: IoCtx) -> int:
        existing, block = None, args.block_size
        if args.mode != "write":
            existing, block = await _last_run(io)
        bench = Bench(io, args.mode, args.seconds, block, args.concurrent_ios)
        if args.mode == "write":
            print(f"Maintaining {args.concurrent_ios} concurrent writes of {args.block_size} "
                  f"bytes to objects of size {args.block_size} for up to {args.seconds:g} "
                  "seconds")
            print(f"Object prefix: {bench.prefix}")
        await bench.run(existing)
        if args.mode == "write" and args.no_cleanup:
            await io.write_full(LAST_RUN, json.dumps({
                "prefix": bench.prefix, "objects": bench.finished,
                "object_size": bench.block}).encode())
        elif args.mode == "write":
            for i in range(bench.finished):
                await io.remove(bench.name(i))
        return 0
    if args.block_size > 64 * MIB:
        raise InvalidArgument("-b: at most 64 MiB per object (rados bench's limit too)")
    return _run(args, work)


# --- argument parsing ---------------------------------------------------------------------------

def register(sub: Any) -> None:
    common = common_options()
    rados = sub.add_parser("rados", help="objects: put, get, ls, stat, rm, xattrs, omap, bench",
                           description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    rados.add_argument("-p", "--pool", required=True, help="the pool")
    rados.add_argument("-N", "--namespace", type=_name, help="the object namespace")
    rsub = subparsers(rados, "rados_command")
    p = command(rsub, "put", cmd_put, "store FILE (- for stdin) as object NAME", common)
    p.add_argument("name")
    p.add_argument("file")
    p = command(rsub, "get", cmd_get, "write object NAME to FILE (- for stdout)", common)
    p.add_argument("name")
    p.add_argument("file")
    p = command(rsub, "rm", cmd_rm, "remove objects", common)
    p.add_argument("names", nargs="+", metavar="NAME")
    p = command(rsub, "ls", cmd_ls, "list the objects of the pool", common)
    p.add_argument("--all", action="store_true", help="every namespace (namespace TAB name)")
    p = command(rsub, "stat", cmd_stat, "size and mtime of an object", common)
    p.add_argument("name")
    p = command(rsub, "setxattr", cmd_setxattr, "set an extended attribute", common)
    for arg in ("name", "key", "value"):
        p.add_argument(arg)
    p = command(rsub, "getxattr", cmd_getxattr, "print an extended attribute", common)
    for arg in ("name", "key"):
        p.add_argument(arg)
    p = command(rsub, "listxattr", cmd_listxattr, "list extended attribute names", common)
    p.add_argument("name")
    p = command(rsub, "setomapval", cmd_setomapval, "set one omap key", common)
    for arg in ("name", "key", "value"):
        p.add_argument(arg)
    p = command(rsub, "listomapvals", cmd_listomapvals, "print omap keys and values", common)
    p.add_argument("name")
    p = command(rsub, "bench", cmd_bench, "benchmark: bench SECONDS write|seq|rand", common)
    p.add_argument("seconds", type=float)
    p.add_argument("mode", choices=["write", "seq", "rand"])
    p.add_argument("-b", "--block-size", type=size, default=4 * MIB,
                   help="object size (default 4M)")
    p.add_argument("-t", "--concurrent-ios", type=int, default=16,
                   help="operations in flight (default 16)")
    p.add_argument("--no-cleanup", action="store_true",
                   help="keep the written objects (for seq/rand)")
