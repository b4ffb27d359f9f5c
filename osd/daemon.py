"""The OSD daemon: a DurableStore, a gRPC server, and the monitors' maps.

    loligo osd run --conf FILE --id N

Start-up, in order: open the store under <data_dir>/osd.N (its uuid persisted there, so a
restart boots with the same id), listen (port from `[osd.N] osd_port`, or 0 = any free port),
boot with the monitors (OsdBoot: id, uuid, address, host), fetch maps until the map shows us up
at our address, then follow the maps by subscription. The pid file is written last, so "pid
file present" means "serving". SIGTERM stops the server (running ops get rpc_stop_grace),
then the subscription, then closes the store.

Every new map goes to the servicer (`on_map`), which peers the PGs whose interval changed
(osd/pg_machine.py, hosted by osd/pg_host.py). Beacons carry the states of the PGs this OSD
leads and its usage; heartbeats (osd/heartbeat.py) watch the peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
import uuid
from pathlib import Path

from osd.heartbeat import HeartbeatThread
from osd.metrics import OsdMetrics
from osd.objectstore import DurableStore
from osd.peer_service import OsdPeerService
from osd.service import OsdService, server_auth
from osd.usage import DEFAULT_WEIGHT, osd_usage
from rados_py import auth, daemon_runner, rpc
from rados_py.atomic_file import write_atomic
from rados_py.auth import Keyring
from rados_py.config import Config, load
from rados_py.errors import LoligoError, Timeout
from rados_py.monclient import MonClient
from rados_py.osdmap import OSDMap
from rados_py.proto.loligo import mon_pb2, osd_pb2_grpc
from rados_py.rpc import Unavailable

__all__ = ["OsdDaemon", "main"]

log = logging.getLogger(__name__)


class OsdDaemon:
    """One OSD: `start()`, `stop()`; the servicer does the work."""

    def __init__(self, config: Config, osd_id: int) -> None:
        self.config = config
        self.id = osd_id
        self.name = f"osd.{osd_id}"
        self.keyring = Keyring.load(config.keyring)
        self.secret = self.keyring.service_secret
        self.data_dir = Path(config.data_dir) / self.name
        self.store: DurableStore | None = None
        self.mon: MonClient | None = None
        self.server = None
        self.service: OsdService | None = None
        self.heartbeats: HeartbeatThread | None = None
        self.osdmap: OSDMap | None = None
        self.addr = ""
        self._map_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._boot = mon_pb2.OsdBoot()
        self._booted = False
        self.metrics: OsdMetrics | None = None

    def _disk_uuid(self) -> str:
        """The uuid of this OSD's disk, created once: the monitors recognise a restart by it."""
        path = self.data_dir / "uuid"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            value = str(uuid.uuid4())
            write_atomic(path, value + "\n")  # durable: a restart must boot with the same id
            return value

    async def _own_ticket(self) -> str:
        """Tickets for talking to peer OSDs, signed with the service secret (as monitors do)."""
        ticket = auth.issue_ticket(self.secret, self.name, auth.default_caps(self.name),
                                   self.config.ticket_ttl, time.time())
        return ticket.token

    def current_map(self) -> OSDMap:
        if self.osdmap is None:  # serving starts just before the boot completes
            raise Unavailable(f"{self.name} is starting: it has no osdmap yet")
        return self.osdmap

    def _set_map(self, osdmap: OSDMap) -> None:
        if self.osdmap is None or osdmap.epoch > self.osdmap.epoch:
            self.osdmap = osdmap
            if self.service is not None and self._booted:
                self.service.on_map(osdmap)
                if self.heartbeats is not None:
                    self.heartbeats.set_targets(osdmap, self.service.host.pg_peers())
            self._map_changed.set()
            self._map_changed = asyncio.Event()

    async def wait_epoch(self, epoch: int) -> None:
        """Fetch maps until we have `epoch` (a client or the primary saw a newer one)."""
        if self.osdmap is not None and self.osdmap.epoch >= epoch:
            return
        assert self.mon is not None
        try:
            maps = await self.mon.get_maps(min_epoch=epoch, timeout=self.config.rpc_timeout)
        except Timeout:
            raise Timeout(f"{self.name}: could not get osdmap epoch {epoch} from the "
                          "monitors") from None
        self._set_map(maps.osdmap)

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        disk = self._disk_uuid()
        self.store = await DurableStore.open(self.data_dir / "store")
        port = self.config.osd_port
        self.service = OsdService(self.id, self.store, self.config, self.current_map,
                                  self.wait_epoch, self._own_ticket)
        await self.service.start()
        self.metrics = OsdMetrics(self.id)
        self.service.observe_op = self.metrics.observe_op
        self.server = rpc.make_server(f"127.0.0.1:{port}", self.config,
                                      server_auth(self.secret),
                                      interceptors=[self.metrics.interceptor()])
        osd_pb2_grpc.add_OsdServicer_to_server(self.service, self.server)
        osd_pb2_grpc.add_OsdPeerServicer_to_server(OsdPeerService(self.service), self.server)
        await self.server.start()
        self.addr = f"127.0.0.1:{rpc.server_port(self.server)}"
        self.metrics.serve_beside(self.addr, self.config.metrics_port_offset)
        self.mon = MonClient(self.config, self.keyring)
        store = self.store
        self.heartbeats = HeartbeatThread(self.id, self.config, "127.0.0.1",
                                          self._report_failure, store.space,
                                          self.service.peer_space)
        heartbeat_addr = await self.heartbeats.start()
        self._boot = mon_pb2.OsdBoot(id=self.id, uuid=disk, addr=self.addr,
                                     host=socket.gethostname().split(".")[0],
                                     capacity_bytes=self.config.osd_capacity or DEFAULT_WEIGHT,
                                     heartbeat_addr=heartbeat_addr)
        await self._end_previous_life()
        await self.mon.command(osd_boot=self._boot, timeout=60.0)
        maps = await self.mon.get_maps(timeout=60.0)
        self._booted = True
        self._set_map(maps.osdmap)
        self.service.on_map(self.current_map())
        self.heartbeats.set_targets(self.current_map(), self.service.host.pg_peers())
        log.info("%s booted at %s, osdmap epoch %d, disk %s", self.name, self.addr,
                 maps.osdmap.epoch, disk)
        self._tasks.append(asyncio.create_task(self._follow_maps(), name="follow-maps"))
        self._tasks.append(asyncio.create_task(self._beacons(), name="beacons"))
        self._tasks.append(asyncio.create_task(self.service.scrubber.run_schedule(),
                                               name="scrub-schedule"))

    async def _end_previous_life(self) -> None:
        """A restart quicker than failure detection finds the map still showing this OSD up
        at the same address: mark that previous instance down first, so the boot is a new
        epoch with a new up_from and every PG peers again (the old process's in-flight
        writes died with it)."""
        assert self.mon is not None
        maps = await self.mon.get_maps(latest=True, timeout=60.0)
        state = maps.osdmap.osds.get(self.id)
        if state is not None and state.up:
            log.info("%s: the map still shows my previous instance up (epoch %d): marking it "
                     "down before booting", self.name, maps.osdmap.epoch)
            await self.mon.command(osd_mark=mon_pb2.OsdMark(ids=[self.id],
                                                            state=mon_pb2.OsdMark.DOWN),
                                   timeout=60.0)

    async def _report_failure(self, failure: mon_pb2.OsdFailure) -> None:
        assert self.mon is not None
        await self.mon.beacon(mon_pb2.BeaconRequest(failure=failure),
                              timeout=self.config.osd_heartbeat_interval * 2)

    async def _usage(self) -> mon_pb2.OsdUsage:
        assert self.store is not None
        return await osd_usage(self.store, self.data_dir, self.config.osd_capacity)

    async def _beacons(self) -> None:
        """Tell the leader monitor we are alive every osd_beacon_interval; silence past
        mon_osd_report_grace gets us marked down. Held down while alive: boot again."""
        assert self.mon is not None
        interval = self.config.osd_beacon_interval
        while True:
            epoch = self.osdmap.epoch if self.osdmap is not None else 0
            try:
                assert self.service is not None
                pgs = await self.service.host.stats(epoch, time.monotonic())
                beacon = mon_pb2.OsdBeacon(id=self.id, addr=self.addr, osdmap_epoch=epoch,
                                           pgs=pgs, usage=await self._usage())
                self.metrics.publish(beacon)
                reply = await self.mon.beacon(mon_pb2.BeaconRequest(osd=beacon),
                                              timeout=interval * 3)
                if reply.state == "down":
                    log.warning("%s: the monitors hold me down, but I am alive: booting again",
                                self.name)
                    await self.mon.command(osd_boot=self._boot, timeout=interval * 5)
            except LoligoError as e:  # no quorum for now: the next beacon tries again
                log.info("%s: beacon not delivered: %s", self.name, e)
            await asyncio.sleep(interval)

    async def _follow_maps(self) -> None:
        assert self.mon is not None
        async for maps in self.mon.subscribe():
            if self.osdmap is None or maps.osdmap.epoch > self.osdmap.epoch:
                log.info("%s: osdmap epoch %d", self.name, maps.osdmap.epoch)
            self._set_map(maps.osdmap)

    async def stop(self) -> None:
        if self.heartbeats is not None:
            await self.heartbeats.stop()
        if self.server is not None:
            await rpc.stop_server(self.server, self.config.rpc_stop_grace)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.service is not None:
            await self.service.close()
        if self.mon is not None:
            await self.mon.close()
        if self.store is not None:
            await self.store.close()
        if self.metrics is not None:
            self.metrics.close()
        log.info("%s stopped", self.name)


def main(conf: str | Path, osd_id: int) -> int:
    """`loligo osd run --conf FILE --id N`: run one OSD until SIGTERM."""
    config = load(Path(conf), entity=f"osd.{osd_id}")
    return daemon_runner.run(lambda: OsdDaemon(config, osd_id), config, f"osd.{osd_id}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
