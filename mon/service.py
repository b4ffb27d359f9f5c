"""The monitors' gRPC services: decode, call the daemon, encode. No logic of their own.

`Mon` is what clients and daemons use (auth handshake, commands, maps, status); `MonRaft` carries
Raft messages between monitors. Who may call what is one table (`server_auth`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time

import grpc

from mon.raft_wire import from_proto
from rados_py import rpc
from rados_py.auth import SERVICE_ENTITY, AuthError, PermissionDenied
from rados_py.errors import InvalidArgument
from rados_py.maps_wire import mdsmap_to_proto, monmap_to_proto, osdmap_to_proto
from rados_py.proto.loligo import mon_pb2, mon_pb2_grpc, raft_pb2, raft_pb2_grpc

_MON = "/loligo.Mon/"
_RAFT = "/loligo.MonRaft/"


def server_auth(secret: bytes) -> rpc.ServerAuth:
    return rpc.ServerAuth(
        service="mon", service_secret=secret,
        method_ops={_MON + "Command": "rw", _MON + "GetMaps": "r", _MON + "Subscribe": "r",
                    _MON + "Status": "r", _MON + "Beacon": "rwx", _RAFT + "Deliver": "*"},
        open_methods=frozenset({_MON + "Auth"}))


def _maps(daemon) -> mon_pb2.Maps:
    return mon_pb2.Maps(monmap=monmap_to_proto(daemon.maps.monmap),
                        osdmap=osdmap_to_proto(daemon.maps.osdmap),
                        mdsmap=mdsmap_to_proto(daemon.maps.mdsmap))


def _remaining(context: grpc.aio.ServicerContext, default: float) -> float:
    left = context.time_remaining()
    return default if left is None else max(0.0, min(left - 0.05, default))


class MonService(mon_pb2_grpc.MonServicer):
    def __init__(self, daemon):
        self.d = daemon

    async def Auth(self, request: mon_pb2.AuthRequest, context) -> mon_pb2.AuthReply:
        try:
            ticket = self.d.authenticator.authenticate(request.proof, time.time())
        except AuthError as e:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(e))
        return mon_pb2.AuthReply(ticket=ticket.token,
                                 expires_in=max(0.0, ticket.expires_at - time.time()))

    async def Command(self, request: mon_pb2.MonCommand, context) -> mon_pb2.CommandReply:
        if not request.request_id:
            raise InvalidArgument("a command needs a request_id (client id and tid)")
        if request.request_id in self.d.maps.applied:
            return mon_pb2.CommandReply(result=self.d.maps.applied[request.request_id])
        if not self.d.is_leader:
            return self._redirect()
        result = await self.d.propose(request, _remaining(context, self.d.config.rpc_timeout))
        if result is None:
            return self._redirect()
        return mon_pb2.CommandReply(result=result)

    def _redirect(self) -> mon_pb2.CommandReply:
        leader = self.d.leader if self.d.leader != self.d.name else None
        return mon_pb2.CommandReply(leader=leader or "",
                                    leader_addr=self.d.mons.get(leader, "") if leader else "")

    async def GetMaps(self, request: mon_pb2.GetMapsRequest, context) -> mon_pb2.Maps:
        if request.min_osdmap_epoch > self.d.maps.osdmap.epoch:
            # wait until then, or answer with what there is: the caller sees the epoch
            async with self.d.maps_changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.d.maps_changed.wait_for(
                        lambda: self.d.maps.osdmap.epoch >= request.min_osdmap_epoch),
                        _remaining(context, self.d.config.rpc_timeout))
        return _maps(self.d)

    async def Subscribe(self, request: mon_pb2.SubscribeRequest, context):
        sent: tuple[int, int] | None = None
        while True:
            epochs = self.d.epochs()
            have = sent or (request.have_osdmap_epoch, request.have_mdsmap_epoch)
            if epochs != sent and (epochs[0] > have[0] or epochs[1] > have[1]):
                sent = epochs
                yield _maps(self.d)
            async with self.d.maps_changed:
                await self.d.maps_changed.wait_for(functools.partial(self._changed, epochs))

    def _changed(self, epochs: tuple[int, int]) -> bool:
        return self.d.epochs() != epochs

    async def Beacon(self, request: mon_pb2.BeaconRequest, context) -> mon_pb2.BeaconReply:
        if request.HasField("osd"):
            if request.osd.id < 0 or not request.osd.addr:
                raise InvalidArgument("an OSD beacon needs the OSD's id and address")
        elif request.HasField("failure"):
            f = request.failure
            if f.reporter < 0 or f.target < 0 or f.reporter == f.target:
                raise InvalidArgument("a failure report needs a reporter and another target")
        elif not request.mds.name or not request.mds.addr:
            raise InvalidArgument("a beacon needs the daemon's name and address")
        if not self.d.is_leader:
            redirect = self._redirect()
            return mon_pb2.BeaconReply(leader=redirect.leader, leader_addr=redirect.leader_addr)
        return await self.d.beacon(request, _remaining(context, self.d.config.rpc_timeout))

    async def Status(self, request: mon_pb2.MonStatusRequest, context) -> mon_pb2.MonStatus:
        return self.d.status()


class MonRaftService(raft_pb2_grpc.MonRaftServicer):
    def __init__(self, daemon):
        self.d = daemon

    async def Deliver(self, request: raft_pb2.RaftMessage, context) -> raft_pb2.RaftAck:
        ticket = rpc.current_ticket()
        if ticket is None or ticket.entity != SERVICE_ENTITY:
            # even client.admin ("allow *") must not speak Raft for a monitor
            raise PermissionDenied("only monitors (mon.) may deliver Raft messages")
        if request.fsid != self.d.fsid:
            raise InvalidArgument(f"raft message of cluster {request.fsid!r}")
        if request.sender not in self.d.mons or request.sender == self.d.name:
            raise InvalidArgument(f"{request.sender!r} is not a peer monitor")
        self.d.receive(from_proto(request))
        return raft_pb2.RaftAck()
