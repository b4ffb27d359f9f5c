"""The MDS process: `loligo mds --conf FILE --id a`.

It serves gRPC from the start and beacons to the monitors, which make it active (rank 0) or a
standby. Made active, it takes the journal over, replays it and waits for the clients to
reconnect (in the background, beacons go on); told otherwise -- or cut off from the monitors
for `mds_beacon_grace` -- it stops serving at once, so two MDSs never serve one file system.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from pathlib import Path

from mds.metrics import MdsMetrics
from mds.server import ACTIVE, STANDBY, MdsServer
from rados_py import daemon_runner, rpc
from rados_py.auth import Keyring
from rados_py.config import Config, host_port, load
from rados_py.errors import LoligoError
from rados_py.proto.loligo import mds_pb2_grpc, mon_pb2
from rados_py.rados import IoCtx, Rados

__all__ = ["MdsDaemon", "main"]

log = logging.getLogger(__name__)
_MDS = "/loligo.Mds/"
CONNECT_TIMEOUT = 120.0


def server_auth(secret: bytes) -> rpc.ServerAuth:
    return rpc.ServerAuth(service="mds", service_secret=secret,
                          method_ops={_MDS + "Session": "rw",
                                      _MDS + "Status": "r", _MDS + "ClientList": "*",
                                      _MDS + "ClientEvict": "*"})


class MdsDaemon:
    def __init__(self, config: Config, ident: str) -> None:
        self.config = config
        self.ident = ident
        self.name = f"mds.{ident}"
        self.keyring = Keyring.load(config.keyring)
        self.server = MdsServer(ident, config)
        self.grpc = None
        self.rados: Rados | None = None
        self.addr = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._activation: asyncio.Task[None] | None = None
        self.role = "unknown"
        self.metrics = MdsMetrics(self.name)

    async def start(self) -> None:
        bind = host_port(self.config.public_addr, self.config.mds_port)
        self.grpc = rpc.make_server(bind, self.config,
                                    server_auth(self.keyring.service_secret),
                                    interceptors=[self.metrics.interceptor()])
        mds_pb2_grpc.add_MdsServicer_to_server(self.server, self.grpc)
        await self.grpc.start()
        self.addr = host_port(self.config.public_addr, rpc.server_port(self.grpc))
        self.metrics.serve_beside(self.addr, self.config.metrics_port_offset)
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while True:
            self.rados = Rados(self.config, keyring=self.keyring)
            try:
                await self.rados.connect()
                break
            except LoligoError as exc:
                await self.rados.close()
                if time.monotonic() > deadline:
                    raise
                log.info("%s: cluster not ready (%s); retrying", self.name, exc)
                await asyncio.sleep(1.0)
        log.info("%s serving at %s", self.name, self.addr)
        self._tasks.append(asyncio.create_task(self._beacons(), name="mds.beacons"))

    async def stop(self) -> None:
        for task in [*self._tasks, *([self._activation] if self._activation else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.server.deactivate("stopping")
        if self.grpc is not None:
            await rpc.stop_server(self.grpc, 1.0)
        if self.rados is not None:
            await self.rados.close()
        self.metrics.close()

    async def _beacons(self) -> None:
        assert self.rados is not None
        mon = self.rados.mon
        last_ok = time.monotonic()
        beacon = mon_pb2.BeaconRequest(mds=mon_pb2.MdsBeacon(name=self.ident, addr=self.addr))
        while True:
            try:
                reply = await mon.beacon(beacon, timeout=self.config.mds_beacon_grace / 2)
                last_ok = time.monotonic()
                await self._on_role(reply.state, reply.mdsmap_epoch)
            except LoligoError as exc:
                silent = time.monotonic() - last_ok
                log.warning("%s: beacon failed (%s), %.1f s without the monitors", self.name,
                            exc, silent)
                if silent > self.config.mds_beacon_grace and self.server.state != STANDBY:
                    await self._stand_down("cut off from the monitors longer than "
                                           "mds_beacon_grace: a standby takes over")
            self.metrics.publish(self.server)
            await asyncio.sleep(self.config.mds_beacon_interval)

    async def _stand_down(self, why: str) -> None:
        if self._activation is not None:
            self._activation.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._activation
            self._activation = None
        await self.server.deactivate(why)

    async def _on_role(self, state: str, epoch: int) -> None:
        if state != self.role:
            log.info("%s: the monitors hold it %s (mdsmap epoch %d)", self.name, state, epoch)
            self.role = state
        if state == ACTIVE:
            if self.server.state == STANDBY and self._activation is None:
                self._activation = asyncio.create_task(self._activate(epoch),
                                                       name="mds.activate")
        elif self.server.state != STANDBY or self._activation is not None:
            await self._stand_down(f"the monitors hold {self.name} {state}")

    async def _activate(self, epoch: int) -> None:
        assert self.rados is not None
        try:
            while True:
                maps = await self.rados.mon.get_maps(latest=True)
                fs = maps.mdsmap.fs()
                if fs is not None and fs.joinable:
                    break
                await asyncio.sleep(self.config.mds_beacon_interval)
            meta = IoCtx(self.rados, fs.metadata_pool)
            data = IoCtx(self.rados, fs.data_pool)
            await self.server.activate(meta, data, max(epoch, maps.mdsmap.epoch), fs.name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: taking over failed; standing down to retry", self.name)
            await self.server.deactivate("takeover failed")
            await asyncio.sleep(1.0)
        finally:
            self._activation = None


def main(conf: str | Path, ident: str) -> int:
    """`loligo mds --conf FILE --id a`: run one MDS until SIGTERM."""
    config = load(Path(conf), entity=f"mds.{ident}")
    return daemon_runner.run(lambda: MdsDaemon(config, ident), config, f"mds.{ident}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
