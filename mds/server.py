"""The MDS's service: becoming active (journal replay, clients reconnecting and replaying
their unsafe requests), the session streams that carry every client's requests and what the
MDS tells it (mds/engine.py runs the requests), background application of the journal, and
the admin calls (`loligo tell mds.X client ls|evict`, `fs status`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator

import grpc

from mds import layout
from mds import namespace as ns
from mds.cache import Anchor, Cache, Tx
from mds.engine import Engine
from mds.journal import Fenced, Journal
from mds.sessions import SESSIONS_OBJECT, Outbox, Session, SessionTable
from mds.store import Store
from rados_py.config import Config
from rados_py.errors import NotFound
from rados_py.proto.loligo import mds_pb2, mds_pb2_grpc
from rados_py.rados import IoCtx
from rados_py.rpc import Unavailable

log = logging.getLogger(__name__)
STANDBY, REPLAY, RECONNECT, CLIENTREPLAY, ACTIVE = ("standby", "replay", "reconnect",
                                                    "clientreplay", "active")


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
        self.engine: Engine | None = None
        self.meta: IoCtx | None = None
        self._replayed: dict[str, OrderedDict[int, bytes]] = {}  # completions from the journal
        self._active = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._rate: deque[tuple[float, int]] = deque(maxlen=10)  # (when, requests) samples
        self.takeover_seconds = 0.0
        self.replayed_events = 0

    # --- becoming active --------------------------------------------------------------------
    async def activate(self, meta: IoCtx, data: IoCtx, epoch: int, fs_name: str) -> None:
        """Take the journal over, replay it, let clients reconnect and replay what they were
        answered but is not durable, then serve."""
        started = time.monotonic()
        self.state, self.epoch, self.fs_name, self.meta = REPLAY, epoch, fs_name, meta
        self.cache.clear()
        self.store = Store(meta, data)
        self.journal = Journal(meta, f"{self.name}@{epoch}", self.config.mds_journal_segment_size,
                               self.config.mds_journal_batch_interval)
        self.engine = Engine(self.name, self.config, epoch, self.cache, self.store,
                             self.journal, self.sessions, self.deactivate, self.evict)
        events = await self.journal.open(epoch)
        self._replayed.clear()
        for event in events:
            seq = self.store.record(list(event.mutations), list(event.purges))
            self.store.committed(seq, self.journal.write_pos)
            if event.client:
                done = self._replayed.setdefault(event.client, OrderedDict())
                done[event.tid] = event.reply
        self.replayed_events = len(events)
        await self._flush()
        if await self.store.load_anchor(layout.ROOT_INO) is None:
            tx = Tx()
            self.cache.loaded_anchor(layout.ROOT_INO, None)
            self.cache.set_anchor(tx, layout.ROOT_INO,
                                  Anchor(inode=ns.root_inode(time.time_ns())))
            await self.engine.journal_internal(tx)
            log.info("%s: created the root of file system %r", self.name, fs_name)
        log.info("%s: replayed %d journal events in %.2f s", self.name, len(events),
                 time.monotonic() - started)
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
                await asyncio.sleep(0.02)
            for s in self.sessions.waiting_reconnect():
                await self.evict(s.client, "did not reconnect after the MDS takeover")
        self.state = CLIENTREPLAY
        replays = 0
        for session in list(self.sessions.sessions.values()):
            todo, session.replays = session.replays, []
            for req in todo:
                await self.engine.accept(session, req)
            replays += len(todo)
        self.state = ACTIVE
        self._active.set()
        self.takeover_seconds = time.monotonic() - started
        await self._purge_unopened_strays()
        log.info("%s: active for file system %r (epoch %d) %.2f s after taking over "
                 "(%d journal events, %d client requests replayed)", self.name, fs_name,
                 epoch, self.takeover_seconds, len(events), replays)

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
        if self.engine is not None:
            await self.engine.stop()
        if self.journal is not None:
            await self.journal.close()
        for s in self.sessions.sessions.values():
            s.outbox.close()  # ends the streams: clients find the new MDS
        self.sessions = SessionTable()
        self.cache.clear()
        self._replayed.clear()
        self.store = self.journal = self.engine = None

    async def _load_sessions(self) -> None:
        assert self.meta is not None
        after = b""
        while True:
            try:
                page, more = await self.meta.omap_list(SESSIONS_OBJECT, after, max_items=1000)
            except NotFound:
                return
            for key, value in page:
                client = key.decode()
                if client in self.sessions.sessions:
                    continue  # reconnected already, during replay
                info = mds_pb2.SessionOpen.FromString(value)
                session = Session(client, info, reconnected=False)
                session.completed = self._replayed.pop(client, OrderedDict())
                self.sessions.sessions[client] = session
            if not more or not page:
                return
            after = page[-1][0]

    async def _purge_unopened_strays(self) -> None:
        assert self.store is not None and self.engine is not None
        for ino in await self.store.list_strays():
            if not self.sessions.is_open(ino):
                await self.engine.release_stray(ino)

    # --- background work --------------------------------------------------------------------
    async def _flush(self) -> None:
        assert self.store is not None and self.journal is not None
        pos = await self.store.flush()
        if pos is not None:
            await self.journal.trim(pos)
        self.cache.trim()
        if self.engine is not None:
            self.engine.prune_unsafe()

    async def _flusher(self) -> None:
        assert self.engine is not None
        wake = self.engine.flush_wake
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), self.config.mds_flush_interval)
            wake.clear()
            try:
                await self._flush()
            except Fenced as exc:
                asyncio.get_running_loop().create_task(self.deactivate(str(exc)))
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

    @property
    def requests(self) -> int:
        return self.engine.requests if self.engine is not None else 0

    async def _end_session(self, session: Session) -> None:
        """A session went (closed or evicted): its capabilities, locks and opens go."""
        if self.engine is not None:
            self.engine.session_gone(session.client)
        if self.meta is not None:
            with contextlib.suppress(Exception):
                await self.meta.omap_rm(SESSIONS_OBJECT, [session.client.encode()])
        for ino in list(session.opens):
            if not self.sessions.is_open(ino) and self.engine is not None:
                with contextlib.suppress(Exception):
                    await self.engine.release_stray(ino)

    async def close_session(self, client: str) -> None:
        """A mount ended cleanly: its session and opens go, it is not refused later."""
        session = self.sessions.sessions.pop(client, None)
        if session is None:
            return
        log.info("%s: session %s closed by the client", self.name, client)
        session.outbox.close()
        await self._end_session(session)

    async def evict(self, client: str, why: str) -> bool:
        session = self.sessions.sessions.pop(client, None)
        self.sessions.evicted.add(client)
        if session is None:
            return False
        log.warning("%s: evicting client %s (%s, %s): %s", self.name, client,
                    session.info.host, session.info.mountpoint, why)
        session.outbox.put_evicted(why)
        await self._end_session(session)
        return True

    # --- sessions ---------------------------------------------------------------------------
    def _open_session(self, info: mds_pb2.SessionOpen, addr: str) -> Session:
        session = self.sessions.get(info.client)
        if session is None:
            session = Session(info.client, info, addr)
            session.completed = self._replayed.pop(info.client, OrderedDict())
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

    async def _wait_active(self) -> None:
        if self.state == ACTIVE:
            return
        if self.state == STANDBY:
            raise Unavailable(f"mds.{self.name} is not active")
        try:
            await asyncio.wait_for(self._active.wait(), self.config.mds_reconnect_timeout + 60)
        except TimeoutError:
            raise Unavailable(f"mds.{self.name} is still {self.state}") from None

    async def Session(self, request_iterator: AsyncIterator[mds_pb2.ClientMsg],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[mds_pb2.MdsMsg]:
        if self.state == STANDBY or self.engine is None:
            raise Unavailable(f"mds.{self.name} is not active")
        engine = self.engine
        it = request_iterator.__aiter__()
        first = await it.__anext__()
        if not first.HasField("open"):
            raise Unavailable("a session starts with an open message")
        info = first.open
        if info.client in self.sessions.evicted:
            yield mds_pb2.MdsMsg(evicted="this client was evicted: mount the file system again")
            return
        session = self._open_session(info, context.peer())
        if info.reconnect:
            session.opens = Counter(info.open_inos)
            for held in info.locks:  # reclaimed: they were granted by the MDS before
                if not engine.reclaim_lock(info.client, held):
                    log.warning("%s: client %s cannot reclaim its lock on %x", self.name,
                                info.client, held.ino)
            for ino in info.cached:
                engine.caps.lease_inode(info.client, ino)
                engine.caps.lease_dir(info.client, ino)
        replays = sorted(info.replays, key=lambda r: r.tid)
        old = session.outbox
        outbox = session.outbox = Outbox()
        outbox.msg.MergeFrom(old.msg)  # what the broken stream had not sent yet
        old.close()
        session.reconnected = True
        session.connected = True
        session.last_seen = time.monotonic()
        log.info("%s: session %s from %s (%s)%s%s", self.name, info.client, info.host,
                 info.mountpoint, " reconnected" if info.reconnect else "",
                 f", replaying {len(replays)} requests" if replays else "")
        yield mds_pb2.MdsMsg(opened=self.epoch)

        async def reader() -> None:
            try:
                if self.state == ACTIVE:
                    for req in replays:
                        await engine.accept(session, req)
                else:
                    session.replays = replays  # replayed once every client reconnected
                async for msg in it:
                    session.last_seen = time.monotonic()
                    if msg.close:
                        await self.close_session(info.client)
                        break
                    if self.state != ACTIVE:
                        await self._wait_active()
                    if self.sessions.get(info.client) is not session:
                        break
                    await engine.on_message(session, msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the client went away
                log.debug("%s: session %s reader ended: %s", self.name, info.client, exc)
            outbox.close()

        task = asyncio.create_task(reader())
        try:
            while True:
                msg = await outbox.take()
                if msg is None:
                    return
                yield msg
                if msg.evicted:
                    return
        finally:
            task.cancel()
            if self.sessions.get(info.client) is session and session.outbox is outbox:
                session.connected = False
                session.last_seen = time.monotonic()
                engine.stream_ended(session)

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
