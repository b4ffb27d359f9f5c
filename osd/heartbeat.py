"""Heartbeats: an OSD pings the OSDs it shares PGs with (and a couple of others) and reports to
the monitors any that stay silent past osd_heartbeat_grace; the monitors mark a peer down once
enough distinct OSDs agree (mon_osd_min_down_reporters). A hung OSD (SIGSTOP) is caught this
way as surely as a dead one, and sooner than by its missing beacons.

Each ping runs in its own task with its own deadline, so one silent peer never delays the
pings of the others. A report is repeated every interval while the peer stays silent (a new
leader learns it too) and withdrawn when the peer answers again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from osd.peers import PeerChannels
from rados_py.config import Config
from rados_py.errors import LoligoError
from rados_py.osdmap import OSDMap
from rados_py.proto.loligo import mon_pb2, osd_pb2

__all__ = ["Heartbeats"]

log = logging.getLogger(__name__)
EXTRA_PEERS = 2  # random others pinged too, so a small failure domain is still watched


class Heartbeats:
    def __init__(self, osd_id: int, config: Config, osdmap: Callable[[], OSDMap],
                 peers: PeerChannels, pg_peers: Callable[[], set[int]],
                 report: Callable[[mon_pb2.OsdFailure], Awaitable[None]],
                 space: dict[int, tuple[int, int]] | None = None) -> None:
        self.id = osd_id
        self.config = config
        self._osdmap = osdmap
        self._peers = peers
        self._pg_peers = pg_peers
        self._report = report
        self.last_reply: dict[int, float] = {}
        self.reported: set[int] = set()
        self.space = {} if space is None else space  # peers' (free, reserve), as they said
        self._extra: set[int] = set()
        self._pings: set[asyncio.Task[None]] = set()

    def _targets(self, osdmap: OSDMap) -> set[int]:
        up = {o for o, s in osdmap.osds.items() if s.up and s.addr and o != self.id}
        self._extra &= up
        others = sorted(up - self._pg_peers() - self._extra)
        while len(self._extra) < EXTRA_PEERS and others:
            self._extra.add(others.pop(random.randrange(len(others))))
        return (self._pg_peers() & up) | self._extra

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        interval, grace = self.config.osd_heartbeat_interval, self.config.osd_heartbeat_grace
        while True:
            osdmap = self._osdmap()
            targets = self._targets(osdmap)
            now = loop.time()
            for osd in list(self.last_reply):
                if osd not in targets:  # down in the map, or no longer a peer: start afresh
                    del self.last_reply[osd]
                    self.reported.discard(osd)
            for osd in targets:
                self.last_reply.setdefault(osd, now)
                task = asyncio.create_task(self._ping(osd, osdmap.epoch,
                                                      min(grace, interval * 2)))
                self._pings.add(task)
                task.add_done_callback(self._pings.discard)
            for osd in targets:
                silent = now - self.last_reply[osd]
                if silent > grace:
                    if osd not in self.reported:
                        log.warning("osd.%d: osd.%d silent for %.1fs: reporting it failed",
                                    self.id, osd, silent)
                    self.reported.add(osd)
                    await self._send(mon_pb2.OsdFailure(reporter=self.id, target=osd,
                                                        silent_for=silent, epoch=osdmap.epoch))
            await asyncio.sleep(interval)

    async def _ping(self, osd: int, epoch: int, timeout: float) -> None:
        try:
            _, stub = self._peers.peer(osd)
            reply = await stub.Ping(osd_pb2.PingRequest(from_osd=self.id, epoch=epoch),
                                    timeout=timeout)
        except Exception:  # any failure is simply "no answer"
            return
        self.last_reply[osd] = asyncio.get_running_loop().time()
        if reply.has_space:
            self.space[osd] = (reply.free_bytes, reply.reserve_bytes)
        if osd in self.reported:
            self.reported.discard(osd)
            log.info("osd.%d: osd.%d answers again: withdrawing the report", self.id, osd)
            await self._send(mon_pb2.OsdFailure(reporter=self.id, target=osd, still_alive=True,
                                                epoch=epoch))

    async def _send(self, failure: mon_pb2.OsdFailure) -> None:
        try:
            await self._report(failure)
        except LoligoError as exc:
            log.info("osd.%d: failure report not delivered: %s", self.id, exc)
