"""The MDS's service: metadata requests run against the cache, journaled before they are
answered; client sessions; the admin calls (`loligo tell mds.X client ls|evict`).

A request runs as a pure operation (mds/namespace.py); when it needs something not cached it
raises NeedLoad, the server loads it and runs the operation again. A changing operation's
event goes to the journal (group commit) and the reply waits until it is durable. Each event
carries the client's request id and the reply, so a request resent after a takeover is
answered again rather than applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno as E
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator

import grpc

from mds import layout
from mds import namespace as ns
from mds.cache import Anchor, Cache, FsError, NeedLoad, Tx
from mds.journal import Fenced, Journal
from mds.locks import Lock, LockTable
from mds.sessions import SESSIONS_OBJECT, Session, SessionTable
from mds.store import Store
from rados_py.config import Config
from rados_py.errors import NotFound
from rados_py.proto.loligo import mds_pb2, mds_pb2_grpc
from rados_py.rados import IoCtx
from rados_py.rpc import Unavailable

log = logging.getLogger(__name__)
COMPLETED_REMEMBERED = 100_000
MAX_READDIR = 1024
INVALIDATE_WAIT = 2.0  # seconds a change waits for other mounts to drop what they cached
STANDBY, REPLAY, RECONNECT, ACTIVE = "standby", "replay", "reconnect", "active"


class MdsServer(mds_pb2_grpc.MdsServicer):
    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self.config = config
        self.state = STANDBY
        self.epoch = 0
        self.fs_name = ""
        self.cache = Cache(config.mds_cache_size)
        self.sessions = SessionTable()
        self.store: Store | None = None
        self.journal: Journal | None = None
        self.meta: IoCtx | None = None
        self.completed: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self.inflight: dict[tuple[str, int], asyncio.Future[mds_pb2.MdsReply]] = {}
        self._active = asyncio.Event()
        self._ino_lock = asyncio.Lock()
        self._flush_wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self.requests = 0
        self._rate: deque[tuple[float, int]] = deque(maxlen=10)  # (when, requests) samples
        self.locks = LockTable()
        self._lock_changed: dict[int, asyncio.Event] = {}

    # --- becoming active --------------------------------------------------------------------
    async def activate(self, meta: IoCtx, data: IoCtx, epoch: int, fs_name: str) -> None:
        """Take the journal over, replay it, wait for clients to reconnect, then serve."""
        started = time.monotonic()
        self.state, self.epoch, self.fs_name, self.meta = REPLAY, epoch, fs_name, meta
        self.cache.clear()
        self.store = Store(meta, data)
        self.journal = Journal(meta, f"{self.name}@{epoch}", self.config.mds_journal_segment_size)
        events = await self.journal.open(epoch)
        for event in events:
            seq = self.store.record(list(event.mutations), list(event.purges))
            self.store.committed(seq, self.journal.write_pos)
            if event.client:
                self._remember(event.client, event.tid, event.reply)
        await self._flush()
        if await self.store.load_anchor(layout.ROOT_INO) is None:
            tx = Tx()
            self.cache.loaded_anchor(layout.ROOT_INO, None)
            self.cache.set_anchor(tx, layout.ROOT_INO,
                                  Anchor(inode=ns.root_inode(time.time_ns())))
            await self._journal(tx, "", 0, mds_pb2.MdsReply())
            log.info("%s: created the root of file system %r", self.name, fs_name)
        replayed = time.monotonic() - started
        log.info("%s: replayed %d journal events in %.2f s", self.name, len(events), replayed)
        await self._load_sessions()
        self.state = RECONNECT
        self._workers = [asyncio.create_task(self._flusher(), name="mds.flusher"),
                         asyncio.create_task(self._evictor(), name="mds.evictor")]
        waiting = self.sessions.waiting_reconnect()
        if waiting:
            log.info("%s: waiting up to %.0f s for %d clients to reconnect", self.name,
                     self.config.mds_reconnect_timeout, len(waiting))
            deadline = time.monotonic() + self.config.mds_reconnect_timeout
            while self.sessions.waiting_reconnect() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for s in self.sessions.waiting_reconnect():
                await self.evict(s.client, "did not reconnect after the MDS takeover")
        self.state = ACTIVE
        self._active.set()
        await self._purge_unopened_strays()
        log.info("%s: active for file system %r (epoch %d) %.2f s after taking over",
                 self.name, fs_name, epoch, time.monotonic() - started)

    async def deactivate(self, why: str) -> None:
        if self.state == STANDBY:
            return
        log.warning("%s: no longer active: %s", self.name, why)
        self.state = STANDBY
        self._active.clear()
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._workers = []
        if self.journal is not None:
            await self.journal.close()
        for s in self.sessions.sessions.values():
            s.outbox.put_nowait(mds_pb2.MdsMsg())  # ends the streams: clients find the new MDS
        self.sessions = SessionTable()
        self.locks = LockTable()
        self.cache.clear()
        self.completed.clear()
        self.store = self.journal = None

    async def _load_sessions(self) -> None:
        assert self.meta is not None
        after = b""
        while True:
            try:
                page, more = await self.meta.omap_list(SESSIONS_OBJECT, after, max_items=1000)
            except NotFound:
                return
            for key, value in page:
                if key.decode() in self.sessions.sessions:
                    continue  # reconnected already, during replay
                info = mds_pb2.SessionOpen.FromString(value)
                self.sessions.sessions[key.decode()] = Session(key.decode(), info,
                                                               reconnected=False)
            if not more or not page:
                return
            after = page[-1][0]

    async def _purge_unopened_strays(self) -> None:
        assert self.store is not None
        for ino in await self.store.list_strays():
            if not self.sessions.is_open(ino):
                await self._run_release_stray(ino)

    # --- background work --------------------------------------------------------------------
    async def _flush(self) -> None:
        assert self.store is not None and self.journal is not None
        pos = await self.store.flush()
        if pos is not None:
            await self.journal.trim(pos)
        self.cache.trim()

    async def _flusher(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._flush_wake.wait(), self.config.mds_flush_interval)
            self._flush_wake.clear()
            try:
                await self._flush()
            except Fenced as exc:
                await self.deactivate(str(exc))
                return
            except Exception:
                log.exception("%s: applying the journal failed; retrying", self.name)
                await asyncio.sleep(1.0)

    async def _evictor(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.config.mds_session_timeout / 4))
            self._rate.append((time.monotonic(), self.requests))  # for ops/s in `fs status`
            if self.state != ACTIVE:
                continue
            for s in self.sessions.expired(self.config.mds_session_timeout):
                await self.evict(s.client, f"not heard from for "
                                 f"{self.config.mds_session_timeout:g} s")

    async def close_session(self, client: str) -> None:
        """A mount ended cleanly: its session and opens go, it is not refused later."""
        session = self.sessions.sessions.pop(client, None)
        if session is None:
            return
        log.info("%s: session %s closed by the client", self.name, client)
        self._drop_locks(client)
        if self.meta is not None:
            with contextlib.suppress(Exception):
                await self.meta.omap_rm(SESSIONS_OBJECT, [client.encode()])
        for ino in list(session.opens):
            if not self.sessions.is_open(ino):
                with contextlib.suppress(Exception):
                    await self._run_release_stray(ino)

    async def evict(self, client: str, why: str) -> bool:
        session = self.sessions.sessions.pop(client, None)
        self.sessions.evicted.add(client)
        if session is None:
            return False
        log.warning("%s: evicting client %s (%s, %s): %s", self.name, client,
                    session.info.host, session.info.mountpoint, why)
        session.outbox.put_nowait(mds_pb2.MdsMsg(evicted=why))
        self._drop_locks(client)
        if self.meta is not None:
            with contextlib.suppress(Exception):
                await self.meta.omap_rm(SESSIONS_OBJECT, [client.encode()])
        for ino in list(session.opens):
            if not self.sessions.is_open(ino):
                with contextlib.suppress(Exception):
                    await self._run_release_stray(ino)
        return True

    # --- requests ---------------------------------------------------------------------------
    def _remember(self, client: str, tid: int, reply: bytes) -> None:
        self.completed[(client, tid)] = reply
        while len(self.completed) > COMPLETED_REMEMBERED:
            self.completed.popitem(last=False)

    async def _journal(self, tx: Tx, client: str, tid: int, reply: mds_pb2.MdsReply) -> None:
        assert self.store is not None and self.journal is not None
        mutations = tx.mutations(self.cache)
        if not mutations and not tx.purges:
            return
        raw = reply.SerializeToString()
        seq = self.store.record(mutations, tx.purges)
        event = mds_pb2.JournalEvent(mutations=mutations, client=client, tid=tid, reply=raw,
                                     purges=tx.purges)
        try:
            pos = await self.journal.submit(event)
        except Fenced as exc:
            asyncio.get_running_loop().create_task(self.deactivate(str(exc)))
            raise Unavailable(f"{self.name} is no longer active") from None
        self.store.committed(seq, pos)
        if client:
            self._remember(client, tid, raw)
        if self.store.waiting >= self.config.mds_flush_events:
            self._flush_wake.set()

    async def _load(self, need: NeedLoad) -> None:
        assert self.store is not None
        if need.kind == "dentry":
            self.cache.loaded_dentry(need.ino, need.name,
                                     await self.store.load_dentry(need.ino, need.name))
        elif need.kind == "anchor":
            self.cache.loaded_anchor(need.ino, await self.store.load_anchor(need.ino))
        elif need.kind == "dir":
            self.cache.loaded_dir(need.ino, await self.store.load_dir(need.ino))
        elif need.kind == "inos":
            async with self._ino_lock:
                if self.cache.next_ino >= self.cache.ino_high:
                    first, high = await self.store.reserve_inos(self.cache.next_ino)
                    self.cache.next_ino, self.cache.ino_high = first, high

    async def _wait_active(self) -> None:
        if self.state == ACTIVE:
            return
        if self.state == STANDBY:
            raise Unavailable(f"mds.{self.name} is not active")
        try:
            await asyncio.wait_for(self._active.wait(), self.config.mds_reconnect_timeout + 30)
        except TimeoutError:
            raise Unavailable(f"mds.{self.name} is still {self.state}") from None

    async def Request(self, request: mds_pb2.MdsRequest, context: grpc.aio.ServicerContext
                      ) -> mds_pb2.MdsReply:
        await self._wait_active()
        if request.client in self.sessions.evicted:
            return mds_pb2.MdsReply(errno=E.EIO, message="this client was evicted: mount "
                                    "the file system again", epoch=self.epoch)
        key = (request.client, request.tid)
        if key in self.completed:
            return mds_pb2.MdsReply.FromString(self.completed[key])
        running = self.inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        fut: asyncio.Future[mds_pb2.MdsReply] = asyncio.get_running_loop().create_future()
        self.inflight[key] = fut
        try:
            reply = await self._handle(request)
            fut.set_result(reply)
            return reply
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self.inflight.pop(key, None)

    async def _handle(self, request: mds_pb2.MdsRequest) -> mds_pb2.MdsReply:
        self.requests += 1
        session = self.sessions.get(request.client)
        if session is None:
            session = self._open_session(mds_pb2.SessionOpen(client=request.client), "")
        session.last_seen = time.monotonic()
        kind = request.WhichOneof("op")
        if kind in ("setlk", "getlk"):
            return await self._lock_request(session, kind, getattr(request, kind))
        loads = 0
        while True:
            tx = Tx()
            try:
                reply = self._run(kind, getattr(request, kind), request.caller, tx, session)
            except NeedLoad as need:
                loads += 1
                if loads > 10_000:
                    raise FsError(E.EIO, "metadata keeps changing under the request") from None
                await self._load(need)
                continue
            except FsError as err:
                if kind == "lookup" and err.errno == E.ENOENT:
                    session.dirs.add(request.lookup.parent)  # the client caches the absence
                return mds_pb2.MdsReply(errno=err.errno, message=err.message, epoch=self.epoch)
            reply.epoch = self.epoch
            self._lease(session, kind, getattr(request, kind), reply)
            waits = self.sessions.invalidate(session, tx.inos, tx.dentries) \
                if tx.dentries or tx.inos else []
            await self._journal(tx, request.client, request.tid, reply)
            if waits:  # a client that does not answer soon is not waited for longer
                await asyncio.wait(waits, timeout=INVALIDATE_WAIT)
            return reply

    @staticmethod
    def _lease(session: Session, kind: str | None, op, reply: mds_pb2.MdsReply) -> None:
        """What this reply lets the client cache (until another client changes it)."""
        if reply.HasField("inode"):
            session.inodes.add(reply.inode.ino)
        for entry in reply.entries:
            session.inodes.add(entry.inode.ino)
        if kind in ("lookup", "readdir", "create"):
            session.dirs.add(op.parent if kind != "readdir" else op.ino)

    def _run(self, kind: str | None, op, caller: mds_pb2.Caller, tx: Tx, session: Session
             ) -> mds_pb2.MdsReply:
        cache, now = self.cache, time.time_ns()
        reply = mds_pb2.MdsReply()
        if kind == "lookup":
            reply.inode.CopyFrom(ns.lookup(cache, op.parent, op.name))
        elif kind == "getattr":
            reply.inode.CopyFrom(ns.getattr_(cache, op.ino))
        elif kind == "setattr":
            inode, _ = ns.setattr_(cache, tx, op, caller, now)
            reply.inode.CopyFrom(inode)
        elif kind == "create":
            inode, _ = ns.create(cache, tx, op, caller, now)
            reply.inode.CopyFrom(inode)
            if op.open:
                session.opens[inode.ino] += 1
        elif kind == "unlink":
            reply.inode.CopyFrom(ns.unlink(cache, tx, op, now, self.sessions.is_open))
        elif kind == "rename":
            inode, changed = ns.rename(cache, tx, op, now, self.sessions.is_open)
            reply.inode.CopyFrom(inode)
            reply.changed.extend(changed)
        elif kind == "link":
            reply.inode.CopyFrom(ns.link(cache, tx, op, now))
        elif kind == "readdir":
            entries, more = ns.readdir(cache, op.ino, op.after,
                                       min(op.max or MAX_READDIR, MAX_READDIR))
            for name, inode in entries:
                reply.entries.add(name=name, inode=inode)
            reply.more = more
        elif kind == "setxattr":
            reply.inode.CopyFrom(ns.setxattr(cache, tx, op, now))
        elif kind == "removexattr":
            reply.inode.CopyFrom(ns.removexattr(cache, tx, op, now))
        elif kind == "open":
            inode = ns.getattr_(cache, op.ino)
            reply.inode.CopyFrom(inode)
            session.opens[op.ino] += 1
        elif kind == "release":
            mine = session.opens.get(op.ino, 0)
            last = mine <= 1 and not any(s.opens.get(op.ino, 0) > 0
                                         for s in self.sessions.sessions.values()
                                         if s is not session)
            anchor = cache.anchor(op.ino) if last else None  # read before changing anything
            if mine > 1:
                session.opens[op.ino] -= 1
            else:
                session.opens.pop(op.ino, None)
            if anchor is not None and anchor.stray:
                ns.release_stray(cache, tx, op.ino)
        else:
            raise FsError(E.ENOSYS, f"unknown request {kind!r}")
        return reply

    # --- file locks -------------------------------------------------------------------------
    @staticmethod
    def _lock(client: str, info: mds_pb2.LockInfo) -> Lock:
        return Lock(client, info.owner, info.pid, info.start, info.end, info.type == 1,
                    info.flock)

    def _locks_changed(self, ino: int) -> None:
        event = self._lock_changed.pop(ino, None)
        if event is not None:
            event.set()

    async def _lock_request(self, session: Session, kind: str, op) -> mds_pb2.MdsReply:
        info = op.lock
        want = self._lock(session.client, info)
        if kind == "getlk":
            held = self.locks.conflict(info.ino, want)
            out = mds_pb2.LockInfo(ino=info.ino, type=2)
            if held is not None:
                out = mds_pb2.LockInfo(ino=info.ino, owner=held.owner, pid=held.pid,
                                       start=held.start, end=held.end,
                                       type=1 if held.exclusive else 0, flock=held.flock)
            return mds_pb2.MdsReply(lock=out, epoch=self.epoch)
        if info.type == 2:  # F_UNLCK
            if self.locks.unlock(info.ino, session.client, info.owner, info.start, info.end,
                                 info.flock):
                self._locks_changed(info.ino)
            return mds_pb2.MdsReply(epoch=self.epoch)
        while True:
            if self.sessions.get(session.client) is not session:
                return mds_pb2.MdsReply(errno=E.EIO, message="the session ended",
                                        epoch=self.epoch)
            if self.locks.conflict(info.ino, want) is None:
                self.locks.grant(info.ino, want)
                self._locks_changed(info.ino)  # a downgrade or a merge may let others in
                return mds_pb2.MdsReply(epoch=self.epoch)
            if not op.wait:
                return mds_pb2.MdsReply(errno=E.EAGAIN, message="locked by another owner",
                                        epoch=self.epoch)
            event = self._lock_changed.setdefault(info.ino, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), 1.0)

    def _drop_locks(self, client: str) -> None:
        for ino in self.locks.drop_client(client):
            self._locks_changed(ino)

    async def _run_release_stray(self, ino: int) -> None:
        while True:
            tx = Tx()
            try:
                ns.release_stray(self.cache, tx, ino)
            except NeedLoad as need:
                await self._load(need)
                continue
            await self._journal(tx, "", 0, mds_pb2.MdsReply())
            return

    # --- sessions ---------------------------------------------------------------------------
    def _open_session(self, info: mds_pb2.SessionOpen, addr: str) -> Session:
        session = self.sessions.get(info.client)
        if session is None:
            session = Session(info.client, info, addr)
            self.sessions.sessions[info.client] = session
            if self.meta is not None:
                meta = self.meta

                async def persist() -> None:
                    with contextlib.suppress(Exception):
                        await meta.omap_set(SESSIONS_OBJECT,
                                            {info.client.encode(): info.SerializeToString()})
                asyncio.get_running_loop().create_task(persist())
        else:
            if info.host:
                session.info = info
            session.addr = addr or session.addr
        return session

    async def Session(self, request_iterator: AsyncIterator[mds_pb2.ClientMsg],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[mds_pb2.MdsMsg]:
        if self.state == STANDBY:
            raise Unavailable(f"mds.{self.name} is not active")
        it = request_iterator.__aiter__()
        first = await it.__anext__()
        if first.WhichOneof("msg") != "open":
            raise Unavailable("a session starts with an open message")
        info = first.open
        if info.client in self.sessions.evicted:
            yield mds_pb2.MdsMsg(evicted="this client was evicted: mount the file system again")
            return
        session = self._open_session(info, context.peer())
        if info.reconnect:
            session.opens.clear()
            for ino in info.open_inos:
                session.opens[ino] += 1
            for held in info.locks:  # reclaimed: they were granted by the MDS before
                want = self._lock(info.client, held)
                if self.locks.conflict(held.ino, want) is None:
                    self.locks.grant(held.ino, want)
                else:
                    log.warning("%s: client %s cannot reclaim its lock on %x", self.name,
                                info.client, held.ino)
        session.reconnected = True
        session.connected = True
        session.last_seen = time.monotonic()
        outbox = session.outbox = asyncio.Queue()
        log.info("%s: session %s from %s (%s)%s", self.name, info.client, info.host,
                 info.mountpoint, " reconnected" if info.reconnect else "")
        yield mds_pb2.MdsMsg(opened=self.epoch)

        async def reader() -> None:
            try:
                async for msg in it:
                    session.last_seen = time.monotonic()
                    if msg.ack:
                        session.acked(msg.ack)
                    if msg.close:
                        await self.close_session(info.client)
                        break
            except Exception:  # the client went away
                pass
            outbox.put_nowait(mds_pb2.MdsMsg())

        task = asyncio.create_task(reader())
        try:
            while True:
                msg = await outbox.get()
                if msg.WhichOneof("msg") is None:
                    return
                yield msg
                if msg.WhichOneof("msg") == "evicted":
                    return
        finally:
            task.cancel()
            if self.sessions.get(info.client) is session:
                session.connected = False
                session.last_seen = time.monotonic()

    # --- admin ------------------------------------------------------------------------------
    async def ClientList(self, request: mds_pb2.ClientListRequest,
                         context: grpc.aio.ServicerContext) -> mds_pb2.ClientListReply:
        return mds_pb2.ClientListReply(clients=[s.describe() for s in
                                                self.sessions.sessions.values()])

    async def ClientEvict(self, request: mds_pb2.ClientEvictRequest,
                          context: grpc.aio.ServicerContext) -> mds_pb2.ClientEvictReply:
        if self.state == STANDBY:
            raise Unavailable(f"mds.{self.name} is not active")
        done = await self.evict(request.client, "evicted by the operator")
        if not done:
            raise NotFound(f"no session of client {request.client!r}")
        return mds_pb2.ClientEvictReply(evicted=1)

    async def Status(self, request: mds_pb2.MdsStatusRequest,
                     context: grpc.aio.ServicerContext) -> mds_pb2.MdsStatusReply:
        now = time.monotonic()
        t0, n0 = self._rate[0] if self._rate else (now, self.requests)
        rate = (self.requests - n0) / (now - t0) if now - t0 > 0.5 else 0.0
        return mds_pb2.MdsStatusReply(
            name=self.name, state=self.state, epoch=self.epoch, fs=self.fs_name,
            inodes_cached=self.cache.dentry_count + len(self.cache.anchors),
            dirs_cached=len(self.cache.dirs), requests=self.requests,
            requests_per_sec=round(rate, 1),
            journal_events=self.store.waiting if self.store else 0,
            sessions=len(self.sessions.sessions))

