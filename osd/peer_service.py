"""The member side of peering, recovery and scrub (`OsdPeer`): what a PG's primary asks the other
OSDs holding the PG. Every request goes to the PG's state machine (osd/pg_host.py), which fences
it (a request from a peering round older than the one the member follows is refused) and
decides; Ping answers for the space a write needs."""

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
        self.host = osd.host

    async def _catch_up(self, epoch: int) -> None:
        if epoch > self.osd._osdmap().epoch:
            await self.osd._wait_epoch(epoch)

    def _check_primary(self, pgid: str, from_osd: int) -> None:
        """A change to this member's PG comes only from the PG's current acting primary."""
        osdmap = self.osd._osdmap()
        placement = osdmap.pg_to_up_acting(PgId.parse(pgid))
        if placement.acting_primary != from_osd:
            raise StaleEpoch(f"osd.{self.osd.id} at epoch {osdmap.epoch}: osd.{from_osd} is "
                             f"not the primary of {pgid} (acting {placement.acting})")

    async def Query(self, request: osd_pb2.PgQuery, context: Any) -> osd_pb2.PgQueryReply:
        await self._catch_up(request.epoch)
        return await self.host.request(checked_coll(request.pgid), -1, request)

    async def Inventory(self, request: osd_pb2.InventoryRequest, context: Any
                        ) -> osd_pb2.InventoryReply:
        return await self.host.request(checked_coll(request.pgid), -1, request)

    async def Activate(self, request: osd_pb2.PgActivate, context: Any
                       ) -> osd_pb2.PgActivateReply:
        await self._catch_up(request.epoch)
        coll = checked_coll(request.pgid)
        self._check_primary(coll, request.from_osd)
        return await self.host.request(coll, request.from_osd, request)

    async def Pull(self, request: osd_pb2.PullRequest, context: Any) -> osd_pb2.PullReply:
        if request.length > self.osd.max_read:
            raise InvalidArgument(f"pull of {request.length} bytes is more than one message "
                                  f"holds ({self.osd.max_read})")
        return await self.host.request(checked_coll(request.pgid), -1, request)

    async def Push(self, request: osd_pb2.PushRequest, context: Any) -> osd_pb2.PushReply:
        await self._catch_up(request.epoch)
        coll = checked_coll(request.pgid)
        self._check_primary(coll, request.from_osd)
        return await self.host.request(coll, request.from_osd, request)

    async def Remove(self, request: osd_pb2.PgRemove, context: Any) -> osd_pb2.PgRemoveReply:
        await self._catch_up(request.epoch)
        coll = checked_coll(request.pgid)
        self._check_primary(coll, request.from_osd)
        placement = self.osd._osdmap().pg_to_up_acting(PgId.parse(coll))
        if self.osd.id in placement.acting or self.osd.id in placement.up:
            raise InvalidArgument(f"osd.{self.osd.id} is a member of {coll}: not removing it")
        reply = await self.host.request(coll, request.from_osd, request)
        log.info("osd.%d: dropped stray copy of PG %s", self.osd.id, coll)
        return reply

    async def ScrubMap(self, request: osd_pb2.ScrubMapRequest, context: Any
                       ) -> osd_pb2.ScrubMapReply:
        return await self.host.request(checked_coll(request.pgid), -1, request)

    async def Ping(self, request: osd_pb2.PingRequest, context: Any) -> osd_pb2.PingReply:
        reply = osd_pb2.PingReply(osd=self.osd.id, epoch=self.osd._osdmap().epoch)
        space = self.osd.store.space()
        if space is not None:
            reply.has_space = True
            reply.free_bytes, reply.reserve_bytes = space
        return reply
