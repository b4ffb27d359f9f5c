"""Channels from one OSD to the others, by OSD id, at the addresses the current map gives."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

from rados_py import rpc
from rados_py.config import Config
from rados_py.osdmap import OSDMap
from rados_py.proto.loligo import osd_pb2_grpc

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
                                        osd_pb2_grpc.OsdPeerStub]] = {}

    def _entry(self, osd: int) -> tuple[str, osd_pb2_grpc.OsdStub, osd_pb2_grpc.OsdPeerStub]:
        state = self._osdmap().osds.get(osd)
        if state is None or not state.addr:
            raise rpc.Unavailable(f"osd.{osd} has no address in the map")
        entry = self._channels.get(state.addr)
        if entry is None:
            channel = rpc.open_channel(state.addr, self.config, self._creds)
            entry = (channel, osd_pb2_grpc.OsdStub(channel), osd_pb2_grpc.OsdPeerStub(channel))
            self._channels[state.addr] = entry
        return state.addr, entry[1], entry[2]

    def osd(self, osd: int) -> tuple[str, osd_pb2_grpc.OsdStub]:
        addr, stub, _ = self._entry(osd)
        return addr, stub

    def peer(self, osd: int) -> tuple[str, osd_pb2_grpc.OsdPeerStub]:
        addr, _, stub = self._entry(osd)
        return addr, stub

    async def close(self) -> None:
        for channel, _, _ in self._channels.values():
            await channel.close()
        self._channels.clear()
