"""A running Ceph cluster as bench_rados.py's other target: the same phases through Ceph's own
client library (python3-rados, the system package), so both sides are measured by one loop.

Only `bench_rados.py --ceph CEPH_CONF` imports it; nothing of Ceph is needed otherwise. The
Ceph cluster is the user's (any single-host one, started with its `-c CEPH_CONF`): its daemons
are found by that argument in their command lines, for their CPU.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

SYSTEM_PACKAGES = "/usr/lib/python3/dist-packages"  # where Debian's python3-rados lives
DAEMONS = ("ceph-osd", "ceph-mon", "ceph-mgr")

__all__ = ["CephIo", "connect", "daemon_pids"]


def _rados_module() -> Any:
    try:
        import rados  # type: ignore[import-not-found]
    except ImportError:
        if SYSTEM_PACKAGES not in sys.path:
            sys.path.append(SYSTEM_PACKAGES)
        try:
            import rados  # type: ignore[import-not-found]
        except ImportError:
            raise SystemExit("--ceph needs Ceph's Python client: apt-get install python3-rados "
                             f"(looked in {SYSTEM_PACKAGES} too)") from None
    return rados


class CephIo:
    """write_full/read/remove as coroutines over librados' asynchronous calls (their
    callbacks come on librados' threads and are handed to the event loop)."""

    def __init__(self, ioctx: Any) -> None:
        self.ioctx = ioctx

    def _call(self, start: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def finish(result: Any, error: BaseException | None) -> None:
            if fut.done():
                return
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)

        def done(completion: Any, data: Any = None) -> None:
            rc = completion.get_return_value()
            error = OSError(-rc, os.strerror(-rc)) if rc < 0 else None
            loop.call_soon_threadsafe(finish, data, error)
        start(done)
        return fut

    async def write_full(self, name: str, data: bytes) -> None:
        await self._call(lambda done: self.ioctx.aio_write_full(name, data, oncomplete=done))

    async def read(self, name: str, offset: int = 0, length: int = 0) -> bytes:
        return await self._call(lambda done: self.ioctx.aio_read(name, length, offset, done))

    async def remove(self, name: str) -> None:
        await self._call(lambda done: self.ioctx.aio_remove(name, oncomplete=done))


def connect(conf: str, pool: str, pg_num: int = 32, size: int = 3) -> tuple[Any, CephIo, str]:
    """(the cluster handle, an I/O context on `pool` - created if missing - and a line saying
    what the pool is)."""
    rados = _rados_module()
    cluster = rados.Rados(conffile=conf)
    cluster.connect(timeout=30)
    if not cluster.pool_exists(pool):
        import json
        cluster.create_pool(pool)
        for var, val in (("pg_num", pg_num), ("pgp_num", pg_num), ("size", size)):
            cluster.mon_command(json.dumps({"prefix": "osd pool set", "pool": pool,
                                            "var": var, "val": str(val)}), b"")
    ioctx = cluster.open_ioctx(pool)
    stats = cluster.get_cluster_stats()
    return cluster, CephIo(ioctx), f"ceph: pool {pool!r}, {stats['num_objects']} objects"


def daemon_pids(conf: str) -> dict[str, int]:
    """{"osd.0": pid, "mon.a": pid, ...} of the daemons started with `-c conf`."""
    out: dict[str, int] = {}
    real = os.path.realpath(conf)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if not argv or os.path.basename(argv[0]) not in DAEMONS:
            continue
        confs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-c", "--conf")]
        if not any(os.path.realpath(c) == real for c in confs):
            continue
        ident = argv[argv.index("-i") + 1] if "-i" in argv[:-1] else entry
        out[f"{os.path.basename(argv[0]).removeprefix('ceph-')}.{ident}"] = int(entry)
    return out
