"""The member side of peering, recovery, scrub and heartbeats (`OsdPeer`): what a PG's primary
asks the other OSDs holding the PG. Changes come only from the PG's current acting primary."""

from __future__ import annotations

import logging
from typing import Any

from osd.pg import checked_coll
from osd.service import OsdService
from rados_py.errors import InvalidArgument, StaleEpoch
from rados_py.osdmap import PgId
from rados_py.proto.loligo import osd_pb2, osd_pb2_grpc

__all__ = ["OsdPeerService"]

log = logging.getLogger(__name__)


class OsdPeerService(osd_pb2_grpc.OsdPeerServicer):
    """The member side of peering and recovery, asked by a PG's primary."""

    def __init__(self, osd: OsdService) -> None:
        self.osd = osd
        self.registry = osd.registry

    async def _catch_up(self, epoch: int) -> None:
        if epoch > self.osd._osdmap().epoch:
            await self.osd._wait_epoch(epoch)

    def _check_primary(self, pgid: str, epoch: int, from_osd: int) -> None:
        """A change to this member's PG comes only from the PG's current acting primary."""
        osdmap = self.osd._osdmap()
        placement = osdmap.pg_to_up_acting(PgId.parse(pgid))
        if placement.acting_primary != from_osd:
            raise StaleEpoch(f"osd.{self.osd.id} at epoch {osdmap.epoch}: osd.{from_osd} is "
                             f"not the primary of {pgid} (acting {placement.acting})")

    async def Query(self, request: osd_pb2.PgQuery, context: Any) -> osd_pb2.PgQueryReply:
        await self._catch_up(request.epoch)
        return await self.registry.query(checked_coll(request.pgid), request.interval
                                         if request.HasField("interval") else None)

    async def Inventory(self, request: osd_pb2.InventoryRequest, context: Any
                        ) -> osd_pb2.InventoryReply:
        return await self.registry.inventory(checked_coll(request.pgid), request.after,
                                             min(request.max or 1000, 10000),
                                             request.interval)

    async def Activate(self, request: osd_pb2.PgActivate, context: Any
                       ) -> osd_pb2.PgActivateReply:
        await self._catch_up(request.epoch)
        self._check_primary(checked_coll(request.pgid), request.epoch, request.from_osd)
        await self.registry.activate(request)
        return osd_pb2.PgActivateReply()

    async def Pull(self, request: osd_pb2.PullRequest, context: Any) -> osd_pb2.PullReply:
        if request.length > self.osd.max_read:
            raise InvalidArgument(f"pull of {request.length} bytes is more than one message "
                                  f"holds ({self.osd.max_read})")
        return await self.registry.pull(request)

    async def Push(self, request: osd_pb2.PushRequest, context: Any) -> osd_pb2.PushReply:
        await self._catch_up(request.epoch)
        self._check_primary(checked_coll(request.pgid), request.epoch, request.from_osd)
        await self.registry.push(request)
        return osd_pb2.PushReply()

    async def Remove(self, request: osd_pb2.PgRemove, context: Any) -> osd_pb2.PgRemoveReply:
        await self._catch_up(request.epoch)
        coll = checked_coll(request.pgid)
        self._check_primary(coll, request.epoch, request.from_osd)
        placement = self.osd._osdmap().pg_to_up_acting(PgId.parse(coll))
        if self.osd.id in placement.acting or self.osd.id in placement.up:
            raise InvalidArgument(f"osd.{self.osd.id} is a member of {coll}: not removing it")
        await self.registry.remove(coll, request.interval)
        log.info("osd.%d: dropped stray copy of PG %s", self.osd.id, coll)
        return osd_pb2.PgRemoveReply()

    async def ScrubMap(self, request: osd_pb2.ScrubMapRequest, context: Any
                       ) -> osd_pb2.ScrubMapReply:
        checked_coll(request.pgid)
        return await self.registry.scrub_map(request)

    async def Ping(self, request: osd_pb2.PingRequest, context: Any) -> osd_pb2.PingReply:
        reply = osd_pb2.PingReply(osd=self.osd.id, epoch=self.osd._osdmap().epoch)
        space = self.osd.store.space()
        if space is not None:
            reply.has_space = True
            reply.free_bytes, reply.reserve_bytes = space
        return reply
