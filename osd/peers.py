"""Channels from one OSD to the others, by OSD id, at the addresses the current map gives: the
peering stubs (unary calls) and the session that carries RepOps (rados_py/session.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from rados_py import rpc
from rados_py.config import Config
from rados_py.osdmap import OSDMap
from rados_py.proto.loligo import osd_pb2, osd_pb2_grpc
from rados_py.session import Session

__all__ = ["PeerChannels"]


class PeerChannels:
    """One channel per peer address (reused), with both the client-op and the peer stubs."""

    def __init__(self, config: Config, osdmap: Callable[[], OSDMap],
                 own_ticket: Callable[[], Awaitable[str]]) -> None:
        self.config = config
        self._osdmap = osdmap
        self._creds = rpc.ClientCredentials(config.fsid, own_ticket,
                                            epoch=lambda: self._osdmap().epoch)
        self._channels: dict[str, tuple[grpc.aio.Channel, osd_pb2_grpc.OsdStub,
                                        osd_pb2_grpc.OsdPeerStub, Any]] = {}
        self._sessions: dict[str, tuple[grpc.aio.Channel, Session]] = {}

    def _entry(self, osd: int) -> tuple[str, osd_pb2_grpc.OsdStub, osd_pb2_grpc.OsdPeerStub,
                                        Any]:
        state = self._osdmap().osds.get(osd)
        if state is None or not state.addr:
            raise rpc.Unavailable(f"osd.{osd} has no address in the map")
        entry = self._channels.get(state.addr)
        if entry is None:
            channel = rpc.open_channel(state.addr, self.config, self._creds)
            # RepOp with the request already serialised: a write goes to every replica as
            # the same bytes, encoded once (a 4 MiB write was encoded once per replica)
            raw_rep_op = channel.unary_unary(
                "/loligo.Osd/RepOp", request_serializer=None,
                response_deserializer=osd_pb2.RepOpReply.FromString)
            entry = (channel, osd_pb2_grpc.OsdStub(channel), osd_pb2_grpc.OsdPeerStub(channel),
                     raw_rep_op)
            self._channels[state.addr] = entry
        return state.addr, entry[1], entry[2], entry[3]

    def osd(self, osd: int) -> tuple[str, osd_pb2_grpc.OsdStub]:
        addr, stub, _, _ = self._entry(osd)
        return addr, stub

    def peer(self, osd: int) -> tuple[str, osd_pb2_grpc.OsdPeerStub]:
        addr, _, stub, _ = self._entry(osd)
        return addr, stub

    def rep_op(self, osd: int) -> tuple[str, Any]:
        """RepOp taking the serialised RepOpRequest (bytes)."""
        addr, _, _, call = self._entry(osd)
        return addr, call

    def session(self, osd: int) -> tuple[str, Session]:
        """The session to an OSD (its own channel: no interceptor between it and the stream)."""
        state = self._osdmap().osds.get(osd)
        if state is None or not state.addr:
            raise rpc.Unavailable(f"osd.{osd} has no address in the map")
        entry = self._sessions.get(state.addr)
        if entry is None:
            channel = rpc.open_channel(state.addr, self.config, intercept=False)
            entry = (channel, Session(channel, self._creds.stream_metadata,
                                      f"osd.{osd} ({state.addr})"))
            self._sessions[state.addr] = entry
        return state.addr, entry[1]

    async def close(self) -> None:
        for channel, _, _, _ in self._channels.values():
            await channel.close()
        self._channels.clear()
        for channel, session in self._sessions.values():
            await session.close()
            await channel.close()
        self._sessions.clear()
