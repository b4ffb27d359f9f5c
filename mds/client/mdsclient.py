"""A mount's link to the metadata servers: requests to the active MDS, resent with the same
request id across a takeover (the new MDS answers a request it replayed from the journal
instead of applying it twice), and the session stream that renews the session, reconnects it
after a takeover (with the files this mount holds open) and brings lease invalidations.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno as E
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import grpc.aio

from rados_py import rpc
from rados_py.errors import LoligoError
from rados_py.mdsmap import FsInfo
from rados_py.proto.loligo import mds_pb2, mds_pb2_grpc
from rados_py.rados import Rados

log = logging.getLogger(__name__)
RENEW_INTERVAL = 1.0
_RETRY = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.CANCELLED})


class MdsError(OSError):
    """A metadata request failed with this errno."""


class MdsClient:
    def __init__(self, rados: Rados, fs_name: str | None = None, mountpoint: str = "",
                 on_invalidate: Callable[[mds_pb2.Invalidate], Awaitable[None]] | None = None
                 ) -> None:
        self.rados = rados
        self.config = rados.config
        self.fs_name = fs_name
        self.mountpoint = mountpoint
        self.client_id = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._tids = itertools.count(1)
        self._addr = ""
        self._channel: grpc.aio.Channel | None = None
        self._stub: mds_pb2_grpc.MdsStub | None = None
        self._session_task: asyncio.Task[None] | None = None
        self._session_up = asyncio.Event()
        self.open_inos: dict[int, int] = {}  # ino -> opens on this mount (for reconnects)
        self.held_locks: list[mds_pb2.LockInfo] = []  # reclaimed after a takeover
        self.on_invalidate = on_invalidate
        self.evicted = ""
        self.fs: FsInfo | None = None
        self.reconnects = 0
        self._closing: asyncio.Queue[bool | int] = asyncio.Queue()  # close, or an ack's seq
        self._stopping = False

    async def start(self) -> FsInfo:
        maps = await self.rados.mon.get_maps(latest=True)
        fs = maps.mdsmap.fs(self.fs_name)
        if fs is None:
            raise LoligoError(f"no file system {self.fs_name!r}" if self.fs_name else
                              "no file system: create one with `loligo fs new NAME "
                              "META_POOL DATA_POOL`")
        self.fs = fs
        self._session_task = asyncio.create_task(self._session_loop(), name="mds.session")
        return fs

    async def close(self) -> None:
        """End the session cleanly (the MDS forgets it at once), then the connections."""
        self._stopping = True
        if self._session_up.is_set() and self._session_task is not None:
            self._closing.put_nowait(True)
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(self._session_task), 2.0)
        if self._session_task is not None:
            self._session_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._session_task
        if self._channel is not None:
            await self._channel.close()

    # --- finding the active MDS -------------------------------------------------------------
    async def _active_addr(self, deadline: float) -> str:
        pause = 0.1
        while True:
            maps = await self.rados.mon.get_maps(latest=True)
            active = maps.mdsmap.active
            if active is not None and active.addr:
                return active.addr
            if time.monotonic() > deadline:
                raise MdsError(E.EIO, "no active MDS: see `loligo fs status`")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def _connect(self, deadline: float) -> mds_pb2_grpc.MdsStub:
        addr = await self._active_addr(deadline)
        if addr != self._addr or self._stub is None:
            if self._channel is not None:
                await self._channel.close()
            self._channel = rpc.open_channel(addr, self.config, self.rados._creds)
            self._stub = mds_pb2_grpc.MdsStub(self._channel)
            self._addr = addr
        return self._stub

    def _forget(self) -> None:
        self._addr = ""

    # --- requests ---------------------------------------------------------------------------
    async def request(self, caller: mds_pb2.Caller | None = None, **op) -> mds_pb2.MdsReply:
        """Send one request until the active MDS answers it; an errno answer raises MdsError."""
        if self.evicted:
            raise MdsError(E.EIO, f"this mount was evicted ({self.evicted}): mount again")
        req = mds_pb2.MdsRequest(client=self.client_id, tid=next(self._tids), **op)
        if caller is not None:
            req.caller.CopyFrom(caller)
        deadline = time.monotonic() + self.config.client_mds_timeout
        pause = 0.05
        while True:
            try:
                stub = await self._connect(deadline)
                reply = await stub.Request(req, timeout=max(1.0, min(
                    self.config.rpc_timeout * 4, deadline - time.monotonic())))
            except grpc.aio.AioRpcError as err:
                if err.code() not in _RETRY or time.monotonic() > deadline:
                    raise MdsError(E.EIO, f"metadata request failed: "
                                   f"{rpc.from_grpc_error(err, 'mds')}") from None
                log.info("MDS request %d: %s; finding the active MDS", req.tid,
                         err.code().name)
                self._forget()
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            except LoligoError as exc:  # the monitors did not answer in time
                if time.monotonic() > deadline:
                    raise MdsError(E.EIO, f"metadata request failed: {exc}") from None
                await asyncio.sleep(pause)
                continue
            if reply.errno:
                raise MdsError(reply.errno, reply.message or os.strerror(reply.errno))
            return reply

    # --- the session ------------------------------------------------------------------------
    async def _session_loop(self) -> None:
        reconnect = False
        while not self.evicted and not self._stopping:
            try:
                stub = await self._connect(time.monotonic() + 3600)
                await self._run_session(stub, reconnect)
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as err:
                log.info("MDS session: %s; reconnecting", err.code().name)
            except Exception as exc:
                log.info("MDS session: %s; reconnecting", exc)
            self._session_up.clear()
            if self._stopping:
                return
            self._forget()
            reconnect = True
            self.reconnects += 1
            await asyncio.sleep(0.2)

    async def _run_session(self, stub: mds_pb2_grpc.MdsStub, reconnect: bool) -> None:
        open_msg = mds_pb2.SessionOpen(client=self.client_id, host=socket.gethostname(),
                                       mountpoint=self.mountpoint, pid=os.getpid(),
                                       reconnect=reconnect,
                                       open_inos=[i for i, n in self.open_inos.items()
                                                  for _ in range(n)],
                                       locks=self.held_locks if reconnect else [])

        async def outgoing() -> AsyncIterator[mds_pb2.ClientMsg]:
            yield mds_pb2.ClientMsg(open=open_msg)
            while True:
                try:
                    item = await asyncio.wait_for(self._closing.get(), RENEW_INTERVAL)
                except TimeoutError:
                    yield mds_pb2.ClientMsg(renew=True)
                    continue
                if item is True:
                    yield mds_pb2.ClientMsg(close=True)
                    return
                yield mds_pb2.ClientMsg(ack=item)

        call = stub.Session(outgoing())
        try:
            async for msg in call:
                kind = msg.WhichOneof("msg")
                if kind == "opened":
                    log.info("MDS session open (%s)%s", self._addr,
                             " after reconnecting" if reconnect else "")
                    self._session_up.set()
                elif kind == "invalidate":
                    inv = msg.invalidate
                    if self.on_invalidate is not None:
                        await self.on_invalidate(inv)
                    self._closing.put_nowait(inv.seq)  # the ack rides the outgoing stream
                elif kind == "evicted":
                    self.evicted = msg.evicted
                    log.error("this mount was evicted by the MDS: %s", msg.evicted)
                    return
        finally:
            call.cancel()
