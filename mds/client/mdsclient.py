"""A mount's link to the active MDS: one ordered stream (the session) carries its requests
and brings their replies, "safe" notices, invalidations and recalls, everything that is ready
going as one message each way.

A reply may come before the change is durable ("unsafe", as CephFS's early replies): the
client keeps every request until the MDS says it is safe, and when the stream breaks (a
takeover) it replays them all, in order, to the MDS it finds next -- which answers what its
journal already holds and applies the rest -- so nothing the application was told is lost.
`fsync` and `syncfs` wait for "safe". Background requests (changes this mount made itself in
directories it holds exclusively) are kept and replayed the same way; nobody waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno as E
import itertools
import logging
import os
import socket
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import grpc
import grpc.aio

from rados_py import rpc
from rados_py.errors import LoligoError
from rados_py.mdsmap import FsInfo
from rados_py.proto.loligo import mds_pb2, mds_pb2_grpc
from rados_py.rados import Rados

log = logging.getLogger(__name__)
RENEW_INTERVAL = 1.0
MAX_BACKGROUND = 4096  # background requests not yet safe before new ones wait
BACKGROUND_DELAY = 0.005  # background requests wait this long for company (nobody waits)
BACKGROUND_BATCH = 256    # ... or until this many are queued


class MdsError(OSError):
    """A metadata request failed with this errno."""


class Hooks(Protocol):
    """What the mount does with what the MDS says (called in stream order)."""

    def on_reply(self, req: mds_pb2.MdsRequest, reply: mds_pb2.MdsReply) -> None: ...
    def on_background_error(self, req: mds_pb2.MdsRequest, reply: mds_pb2.MdsReply) -> None: ...
    def on_invalidate(self, invs: list[mds_pb2.Invalidate]) -> Awaitable[None]:
        """Drop the cached state now; the awaitable drops the kernel's (acknowledged after)."""
    def on_recall(self, ino: int) -> None: ...
    def on_session_lost(self) -> None: ...
    def cached_inos(self) -> list[int]: ...


@dataclass
class _Pending:
    req: mds_pb2.MdsRequest
    fut: asyncio.Future[mds_pb2.MdsReply] | None  # None: a background request
    replied: mds_pb2.MdsReply | None = None
    safe: bool = False  # said safe before its (delayed) reply came


class MdsClient:
    def __init__(self, rados: Rados, fs_name: str | None = None, mountpoint: str = "",
                 hooks: Hooks | None = None) -> None:
        self.rados = rados
        self.config = rados.config
        self.fs_name = fs_name
        self.mountpoint = mountpoint
        self.client_id = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.hooks = hooks
        self._tids = itertools.count(1)
        self._addr = ""
        self._channel: grpc.aio.Channel | None = None
        self._stub: mds_pb2_grpc.MdsStub | None = None
        self._session_task: asyncio.Task[None] | None = None
        self.session_up = asyncio.Event()
        self.unacked: OrderedDict[int, _Pending] = OrderedDict()  # until safe, in tid order
        self._safe_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._room = asyncio.Event()
        self._background = 0
        self._out = mds_pb2.ClientMsg()
        self._out_ready = asyncio.Event()
        self._delayed: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.open_inos: dict[int, int] = {}  # ino -> opens on this mount (for reconnects)
        self.held_locks: list[mds_pb2.LockInfo] = []  # reclaimed after a takeover
        self.evicted = ""
        self.fs: FsInfo | None = None
        self.reconnects = 0
        self.epoch = 0
        self._stopping = False
        self.sent = 0  # requests sent, and stream messages each way (for the bench)
        self.messages_out = 0
        self.messages_in = 0

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

    async def close(self, safe_within: float = 10.0) -> None:
        """Wait (a while) for what was answered to be durable, end the session cleanly (the
        MDS forgets it at once), then the connection."""
        if self.unacked and self.session_up.is_set() and not self.evicted:
            with contextlib.suppress(TimeoutError, MdsError):
                await asyncio.wait_for(self.wait_safe(), safe_within)
        self._stopping = True
        if self.session_up.is_set() and self._session_task is not None:
            self._out.close = True
            self._out_ready.set()
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(self._session_task), 2.0)
        if self._session_task is not None:
            self._session_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._session_task
        for task in list(self._tasks):
            task.cancel()
        if self._channel is not None:
            await self._channel.close()

    # --- finding the active MDS -------------------------------------------------------------
    async def _active_addr(self) -> str:
        pause = 0.1
        while True:
            with contextlib.suppress(LoligoError):
                maps = await self.rados.mon.get_maps(latest=True)
                active = maps.mdsmap.active
                if active is not None and active.addr:
                    return active.addr
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def _connect(self) -> mds_pb2_grpc.MdsStub:
        if self._stub is not None and self._addr:
            return self._stub
        addr = await self._active_addr()
        if addr != self._addr or self._stub is None:
            if self._channel is not None:
                await self._channel.close()
            self._channel = rpc.open_channel(addr, self.config, self.rados._creds)
            self._stub = mds_pb2_grpc.MdsStub(self._channel)
            self._addr = addr
        return self._stub

    # --- requests ---------------------------------------------------------------------------
    def _new(self, caller: mds_pb2.Caller | None, op: dict) -> mds_pb2.MdsRequest:
        if self.evicted:
            raise MdsError(E.EIO, f"this mount was evicted ({self.evicted}): mount again")
        req = mds_pb2.MdsRequest(client=self.client_id, tid=next(self._tids), **op)
        if caller is not None:
            req.caller.CopyFrom(caller)
        return req

    def _send(self, req: mds_pb2.MdsRequest) -> None:
        # while the stream is down this waits: the next stream resends all that is unacked
        self.sent += 1
        self._out.requests.append(req)
        if not req.background or len(self._out.requests) >= BACKGROUND_BATCH:
            self._out_ready.set()
        elif self._delayed is None:
            self._delayed = asyncio.get_running_loop().call_later(BACKGROUND_DELAY,
                                                                  self._out_ready.set)

    async def request(self, caller: mds_pb2.Caller | None = None, **op) -> mds_pb2.MdsReply:
        """Send one request and wait for its answer (an errno answer raises MdsError)."""
        req = self._new(caller, op)
        fut: asyncio.Future[mds_pb2.MdsReply] = asyncio.get_running_loop().create_future()
        self.unacked[req.tid] = _Pending(req, fut)
        self._send(req)
        try:
            reply = await asyncio.wait_for(asyncio.shield(fut), self.config.client_mds_timeout)
        except TimeoutError:
            raise MdsError(E.EIO, f"no answer from the MDS within "
                           f"{self.config.client_mds_timeout:g} s: see `loligo fs status`") \
                from None
        if reply.errno:
            raise MdsError(reply.errno, reply.message or os.strerror(reply.errno))
        return reply

    async def wait_room(self) -> None:
        """Wait while too many background requests are not yet safe (call before making a
        change in the cache, then `background` it without awaiting in between)."""
        while self._background >= MAX_BACKGROUND and not self.evicted:
            self._room.clear()
            await self._room.wait()
        if self.evicted:
            raise MdsError(E.EIO, f"this mount was evicted ({self.evicted}): mount again")

    def background(self, caller: mds_pb2.Caller | None = None, now_ns: int = 0, **op) -> None:
        """Send a change this mount already made in its cache (nobody waits for the
        answer); it is kept until safe, and replayed, like any other."""
        req = self._new(caller, op)
        req.background = True
        req.now_ns = now_ns
        self._background += 1
        self.unacked[req.tid] = _Pending(req, None)
        self._send(req)

    async def wait_safe(self) -> None:
        """Wait until every request sent so far is durable at the MDS (fsync, syncfs)."""
        if not self.unacked:
            return
        last = next(reversed(self.unacked))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._safe_waiters.append((last, fut))
        self._out.sync = True  # the MDS appends its journal at once
        self._out_ready.set()  # and what waits for company here goes now
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.config.client_mds_timeout)
        except TimeoutError:
            raise MdsError(E.EIO, "the MDS did not make the changes durable in time") from None
        if self.evicted:
            raise MdsError(E.EIO, f"this mount was evicted ({self.evicted})")

    def _done(self, tid: int) -> None:
        p = self.unacked.pop(tid, None)
        if p is not None and p.fut is None:
            self._background -= 1
            self._room.set()
        if self._safe_waiters:
            first = next(iter(self.unacked), None)
            keep = []
            for last, fut in self._safe_waiters:
                if first is None or first > last:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((last, fut))
            self._safe_waiters = keep

    def ack_recall(self, ino: int) -> None:
        self._out.recall_acks.append(ino)
        self._out_ready.set()

    def forget(self, inos: Iterable[int]) -> None:
        self._out.forget.extend(inos)  # goes with the next message

    # --- the session ------------------------------------------------------------------------
    async def _session_loop(self) -> None:
        reconnect = False
        pause = 0.05
        while not self.evicted and not self._stopping:
            try:
                stub = await self._connect()
                await self._run_session(stub, reconnect)
                pause = 0.05
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as err:
                log.info("MDS session: %s; reconnecting", err.code().name)
            except Exception as exc:
                log.info("MDS session: %s; reconnecting", exc)
            self.session_up.clear()
            if self.hooks is not None:
                self.hooks.on_session_lost()
            if self._stopping or self.evicted:
                break
            self._stub, self._addr = None, ""  # find the active MDS again
            reconnect = True
            self.reconnects += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
        if self.evicted:
            for p in list(self.unacked.values()):
                if p.fut is not None and not p.fut.done():
                    p.fut.set_result(mds_pb2.MdsReply(errno=E.EIO, message=self.evicted))
            for _, fut in self._safe_waiters:
                if not fut.done():
                    fut.set_result(None)
            self._room.set()

    def _open_message(self, reconnect: bool) -> mds_pb2.SessionOpen:
        replays = []
        for p in self.unacked.values():
            req = mds_pb2.MdsRequest()
            req.CopyFrom(p.req)
            if p.req.background or p.replied is not None:
                # the MDS applied it (or will, for a background change the mount already
                # counts): opens it made are in open_inos, a create keeps its inode number
                req.replay = True
                if p.replied is not None and req.HasField("create"):
                    req.create.ino = p.replied.inode.ino
            replays.append(req)
        return mds_pb2.SessionOpen(
            client=self.client_id, host=socket.gethostname(), mountpoint=self.mountpoint,
            pid=os.getpid(), reconnect=reconnect,
            open_inos=[i for i, n in self.open_inos.items() for _ in range(n)],
            locks=self.held_locks if reconnect else [], replays=replays,
            cached=self.hooks.cached_inos() if reconnect and self.hooks is not None else [])

    async def _run_session(self, stub: mds_pb2_grpc.MdsStub, reconnect: bool) -> None:
        del self._out.requests[:]  # all of them are among the replays
        del self._out.recall_acks[:]
        del self._out.acks[:]
        call = stub.Session()
        await call.write(mds_pb2.ClientMsg(open=self._open_message(reconnect)))
        writer = asyncio.create_task(self._writer(call), name="mds.session.writer")
        try:
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    return
                self.messages_in += 1
                if self._on_message(msg, reconnect):
                    return
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            call.cancel()

    async def _writer(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            try:
                await asyncio.wait_for(self._out_ready.wait(), RENEW_INTERVAL)
            except TimeoutError:
                await call.write(mds_pb2.ClientMsg(renew=True))
                continue
            self._out_ready.clear()
            if self._delayed is not None:
                self._delayed.cancel()
                self._delayed = None
            msg, self._out = self._out, mds_pb2.ClientMsg()
            if not msg.ByteSize():
                continue
            msg.oldest_unsafe = next(iter(self.unacked), 0)
            self.messages_out += 1
            await call.write(msg)
            if msg.close:
                await call.done_writing()
                return

    def _on_message(self, msg: mds_pb2.MdsMsg, reconnect: bool) -> bool:
        """Handle one message from the MDS, in order; True when the session ends."""
        if msg.opened:
            self.epoch = msg.opened
            log.info("MDS session open (%s)%s", self._addr,
                     " after reconnecting" if reconnect else "")
            self.session_up.set()
            if self._out.ByteSize():
                self._out_ready.set()
        for reply in msg.replies:
            self._on_reply(reply)
        for tid in msg.safe:
            p = self.unacked.get(tid)
            if p is None:
                continue
            if p.fut is None or p.replied is not None or p.fut.done():
                self._done(tid)
            else:
                p.safe = True
        if msg.invalidates and self.hooks is not None:
            invs = list(msg.invalidates)
            work = self.hooks.on_invalidate(invs)  # the mount's cache drops them now
            task = asyncio.get_running_loop().create_task(self._ack_after(work, invs))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        for ino in msg.recalls:
            if self.hooks is not None:
                self.hooks.on_recall(ino)
            self.ack_recall(ino)  # after every background change queued before
        if msg.evicted:
            self.evicted = msg.evicted
            log.error("this mount was evicted by the MDS: %s", msg.evicted)
            return True
        return False

    def _on_reply(self, reply: mds_pb2.MdsReply) -> None:
        p = self.unacked.get(reply.tid)
        if p is None:
            return
        if p.fut is None:  # a background change failed at the MDS
            if reply.errno and self.hooks is not None:
                self.hooks.on_background_error(p.req, reply)
            self._done(reply.tid)
            return
        if p.fut.done():  # resent after a takeover: answered already
            if reply.safe or reply.errno:
                self._done(reply.tid)
            return
        if not reply.errno and self.hooks is not None:
            self.hooks.on_reply(p.req, reply)
        p.fut.set_result(reply)
        if reply.errno or reply.safe or p.safe:
            self._done(reply.tid)
        else:
            p.replied = reply

    async def _ack_after(self, work: Awaitable[None], invs: list[mds_pb2.Invalidate]) -> None:
        try:
            await work
        finally:
            self._out.acks.extend(inv.seq for inv in invs)
            self._out_ready.set()


__all__ = ["Callable", "Hooks", "MdsClient", "MdsError"]
