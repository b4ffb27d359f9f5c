"""The gateway process: `loligo gateway --conf FILE --id N`.

Start-up is ordered: connect to the cluster (retrying while the monitors elect a leader), open
or create the gateway's pools, build the stores, then serve HTTP; the pid file is written only
once requests can be answered. The GC and lifecycle workers run beside the server and stop
with it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import ctypes.util
import logging
import ssl
import sys
import time
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway import expiry, lifecycle
from gateway.buckets import BucketStore
from gateway.context import Services
from gateway.gc import GarbageCollector
from gateway.lifecycle import LifecycleWorker
from gateway.metrics import GatewayMetrics
from gateway.objects import ObjectStore
from gateway.pools import Pools, open_pools
from gateway.s3_auth import UserCache
from gateway.server import build_app
from gateway.users import UserStore
from rados_py import daemon_runner
from rados_py.config import Config, load
from rados_py.errors import LoligoError
from rados_py.rados import Rados

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 120.0


async def connect(conf: Config, rados_conf: Config, timeout: float = CONNECT_TIMEOUT
                  ) -> tuple[Rados, Pools]:
    """A connected client and the gateway's pools, retrying until the cluster answers."""
    deadline = time.monotonic() + timeout
    pause = 0.2
    while True:
        rados = Rados(rados_conf)
        try:
            await rados.connect()
            pools = await open_pools(rados, conf.gateway_pool_prefix, conf.gateway_pool_pg_num)
            return rados, pools
        except LoligoError as exc:
            await rados.close()
            if time.monotonic() > deadline:
                raise
            log.info("cluster not ready (%s); retrying", exc)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)


class _ClientFaults(logging.Filter):
    """A request that is not even HTTP, or a client that went away mid-request, is the
    client's doing: one line, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            what = "malformed HTTP request: " + " ".join(str(exc).split())
        elif isinstance(exc, ConnectionError):
            what = f"client connection lost: {exc}"
        else:
            return True
        record.msg, record.args, record.exc_info = what, (), None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def build_services(conf: Config, pools: Pools, name: str = "gateway") -> Services:
    users = UserStore(pools.users)
    buckets = BucketStore(pools, conf.gateway_bucket_index_shards)
    gc = GarbageCollector(pools.meta, pools.data, conf.gateway_gc_min_wait)
    objects = ObjectStore(pools.data, buckets, gc, conf.gateway_stripe_size)
    expiry.attach(objects)
    dns = tuple(n.strip().lower() for n in conf.gateway_dns_name.split(",") if n.strip())
    svc = Services(users, UserCache(users, conf.gateway_user_cache_ttl), buckets, objects, gc,
                   pools.meta, region=conf.gateway_region, dns_names=dns,
                   max_skew=conf.gateway_max_skew)
    svc.lifecycle = LifecycleWorker(svc, conf.gateway_lc_day_seconds, name)
    if conf.gateway_sse_master_key:
        svc.sse_key = base64.b64decode(conf.gateway_sse_master_key)
        if len(svc.sse_key) != 32:
            raise ValueError("gateway_sse_master_key must be the base64 of 32 bytes")
    return svc


class GatewayDaemon:
    def __init__(self, conf: Config, rados_conf: Config, name: str) -> None:
        self.conf = conf
        self.rados_conf = rados_conf
        self.name = name
        self.rados: Rados | None = None
        self.runner: web.AppRunner | None = None
        self.services: Services | None = None
        self.port = 0
        self._gc_task: asyncio.Task[None] | None = None
        self._lc_task: asyncio.Task[None] | None = None
        self.metrics = GatewayMetrics(name)

    async def start(self) -> None:
        logging.getLogger("aiohttp.server").addFilter(_ClientFaults())
        self.rados, pools = await connect(self.conf, self.rados_conf)
        self.services = build_services(self.conf, pools, self.name)
        app = build_app(self.services)
        self.metrics.install(app)
        self.runner = web.AppRunner(app, access_log=log,
                                    access_log_format='%a "%r" %s %b %Tfs',
                                    handler_cancellation=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.conf.gateway_host, self.conf.gateway_port,
                           reuse_address=True, ssl_context=self._ssl_context())
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.conf.gateway_port
        self.metrics.serve_beside(f"{self.conf.gateway_host}:{self.port}",
                                  self.conf.metrics_port_offset)
        self._gc_task = asyncio.create_task(self._gc_worker(), name=f"{self.name}.gc")
        lc_every = min(self.conf.gateway_lc_interval, self.conf.gateway_lc_day_seconds / 5)
        assert self.services.lifecycle is not None
        self._lc_task = asyncio.create_task(lifecycle.worker_loop(
            self.services.lifecycle, lc_every), name=f"{self.name}.lifecycle")
        scheme = "https" if self.conf.gateway_ssl_certificate else "http"
        log.info("%s serving S3 on %s://%s:%d", self.name, scheme, self.conf.gateway_host,
                 self.port)

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.conf.gateway_ssl_certificate:
            return None
        base = self.conf.base_dir
        cert = base / Path(self.conf.gateway_ssl_certificate).expanduser()
        key = (base / Path(self.conf.gateway_ssl_key).expanduser()
               if self.conf.gateway_ssl_key else None)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    async def tick(self) -> int:
        """One GC round (the worker's loop body; tests call it directly)."""
        assert self.services is not None
        return await self.services.gc.collect()

    async def _gc_worker(self) -> None:
        while True:
            await asyncio.sleep(self.conf.gateway_gc_interval)
            try:
                removed = await self.tick()
                if removed:
                    log.info("GC removed the data of %d entries", removed)
            except Exception:  # a failed round is retried at the next interval
                log.exception("GC round failed")

    async def stop(self) -> None:
        for task in (self._gc_task, self._lc_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.runner is not None:
            await self.runner.cleanup()
        if self.rados is not None:
            await self.rados.close()
        self.metrics.close()


def _return_big_buffers_to_the_system() -> None:
    """Stripes pass through as multi-MiB buffers. glibc raises its mmap threshold after such
    a buffer is freed, so later ones come from the heap and stay in the process when freed:
    a fixed threshold keeps every big buffer an mmap given back on free (RSS stays bounded)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc: its allocator decides
        pass


def main(conf_path: str | Path, ident: str) -> int:
    """`loligo gateway --conf FILE --id N`: serve until SIGTERM."""
    _return_big_buffers_to_the_system()
    name = f"gateway.{ident}"
    conf = load(Path(conf_path), name)
    rados_conf = load(Path(conf_path), conf.gateway_rados_user)
    return daemon_runner.run(lambda: GatewayDaemon(conf, rados_conf, name), conf, name)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
