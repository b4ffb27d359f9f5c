"""The manager process: `loligo mgr --conf FILE --id X` (Ceph's ceph-mgr, hosting its dashboard).

It is a client of the cluster (as `mgr_rados_user`): every `mgr_poll_interval` it asks the
monitors for the cluster's state, reads the OSDs', MDSs' and gateways' /metrics, and pushes the
new picture to every open dashboard page. It serves the dashboard at
http://mgr_dashboard_host:mgr_dashboard_port/ and its own metrics on that port +
metrics_port_offset. The pid file is written once the page can be served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from pathlib import Path

from aiohttp import web

from mgr.server import Dashboard, build_app
from mgr.state import ClusterView
from rados_py import daemon_runner
from rados_py.config import Config, load
from rados_py.errors import LoligoError
from rados_py.metrics import DaemonMetrics
from rados_py.rados import Rados

__all__ = ["MgrDaemon", "main"]

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 120.0


class MgrDaemon:
    def __init__(self, conf: Config, rados_conf: Config, name: str) -> None:
        self.conf = conf
        self.rados_conf = rados_conf
        self.name = name
        self.rados: Rados | None = None
        self.view: ClusterView | None = None
        self.dashboard: Dashboard | None = None
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.metrics = DaemonMetrics(name).install()
        self.poll_latency = self.metrics.histogram(
            "loligo_mgr_poll_latency_seconds", "One look at the cluster: monitors and metrics")
        self.pages = self.metrics.gauge("loligo_mgr_dashboard_streams",
                                        "Dashboard pages open (event streams)")
        self._poller: asyncio.Task[None] | None = None

    async def _connect(self) -> Rados:
        """A connected client, retrying while the monitors elect a leader."""
        deadline = time.monotonic() + CONNECT_TIMEOUT
        pause = 0.2
        while True:
            rados = Rados(self.rados_conf)
            try:
                return await rados.connect()
            except LoligoError as exc:
                await rados.close()
                if time.monotonic() > deadline:
                    raise
                log.info("cluster not ready (%s); retrying", exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    async def start(self) -> None:
        self.rados = await self._connect()
        self.view = ClusterView(self.conf, self.rados)
        self.dashboard = Dashboard(self.conf, self.view)
        await self.view.refresh()
        self.runner = web.AppRunner(build_app(self.dashboard), access_log=None,
                                    handler_cancellation=True)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.conf.mgr_dashboard_host,
                           self.conf.mgr_dashboard_port, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.conf.mgr_dashboard_port
        self.metrics.serve_beside(f"{self.conf.mgr_dashboard_host}:{self.port}",
                                  self.conf.metrics_port_offset)
        self._poller = asyncio.create_task(self._poll(), name=f"{self.name}.poll")
        log.info("%s: dashboard on http://%s:%d/", self.name, self.conf.mgr_dashboard_host,
                 self.port)

    async def tick(self) -> None:
        """One look at the cluster, then every open page hears of it."""
        assert self.view is not None and self.dashboard is not None
        started = time.perf_counter()
        await self.view.refresh()
        self.poll_latency.observe(time.perf_counter() - started)
        self.pages.set(self.dashboard.streams)
        await self.dashboard.prune()
        await self.dashboard.notify()

    async def _poll(self) -> None:
        interval = self.conf.mgr_poll_interval
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:  # one failed look is retried at the next interval
                log.exception("%s: refreshing the cluster's state failed", self.name)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self.runner is not None:
            await self.runner.cleanup()
        if self.dashboard is not None:
            await self.dashboard.close()
        if self.view is not None:
            await self.view.close()
        if self.rados is not None:
            await self.rados.close()
        self.metrics.close()


def main(conf_path: str | Path, ident: str) -> int:
    """`loligo mgr --conf FILE --id X`: serve the dashboard until SIGTERM."""
    name = f"mgr.{ident}"
    conf = load(Path(conf_path), name)
    rados_conf = load(Path(conf_path), conf.mgr_rados_user)
    return daemon_runner.run(lambda: MgrDaemon(conf, rados_conf, name), conf, name)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
