"""The active MDS's requests: each client's requests run in the order its stream brought
them, against the cache, and are answered as soon as they are applied in memory ("unsafe",
as CephFS's early replies); the journal makes them durable in the background (group commit:
everything that came in while an append was in flight goes in the next) and each client is
told which of its requests are "safe". A client keeps its unsafe requests and replays them to
a new active MDS after a takeover, so nothing it was answered is lost.

No client sees another's unsafe change: a request naming an inode or directory another
client changed waits until that change is durable (one journal append at most), and one
naming a directory another client holds exclusively waits until that client gave it back
(mds/caps.py) -- after the changes it made there itself (background requests), which need
no answer: the client did them already, under the exclusive capability.

A request runs as a pure operation (mds/namespace.py); when it needs something not cached it
raises NeedLoad, the engine loads it and runs the operation again. A request waiting for
another client is parked (it runs when that is done) so the client's later requests go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno as E
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from mds import layout
from mds import namespace as ns
from mds.cache import Cache, FsError, NeedLoad, Tx
from mds.caps import CapTable
from mds.journal import Fenced, Journal, Position
from mds.locks import Lock, LockTable
from mds.sessions import Session, SessionTable
from mds.store import Store
from rados_py import metrics
from rados_py.config import Config
from rados_py.proto.loligo import mds_pb2

log = logging.getLogger(__name__)
MAX_READDIR = 1024
INVALIDATE_WAIT = 2.0  # seconds a change waits for other mounts to drop what they cached
DELEGATE = 4096        # inode numbers handed to a client at a time
DELEGATE_LOW = 1024    # ... once it has fewer left than this
JOURNAL_BACKLOG = 20_000  # unsafe events: past this, new requests wait for the journal
_NAMING: dict[str, Callable[[object], list[int]]] = {  # the inodes a request names
    "lookup": lambda op: [op.parent], "getattr": lambda op: [op.ino],
    "setattr": lambda op: [op.ino], "create": lambda op: [op.parent],
    "unlink": lambda op: [op.parent], "rename": lambda op: [op.parent, op.new_parent],
    "link": lambda op: [op.ino, op.new_parent], "readdir": lambda op: [op.ino],
    "setxattr": lambda op: [op.ino], "removexattr": lambda op: [op.ino],
    "open": lambda op: [op.ino], "release": lambda op: [],
}
_DIRS_OF: dict[str, Callable[[object], list[int]]] = {  # directories a request looks into
    "lookup": lambda op: [op.parent], "create": lambda op: [op.parent],
    "readdir": lambda op: [op.ino], "unlink": lambda op: [op.parent],
    "rename": lambda op: [op.parent, op.new_parent], "link": lambda op: [op.new_parent],
}


class Engine:
    def __init__(self, name: str, config: Config, epoch: int, cache: Cache, store: Store,
                 journal: Journal, sessions: SessionTable,
                 on_fenced: Callable[[str], Awaitable[None]],
                 evict: Callable[[str, str], Awaitable[bool]]) -> None:
        self.name = name
        self.config = config
        self.epoch = epoch
        self.cache = cache
        self.store = store
        self.journal = journal
        self.sessions = sessions
        self.caps = CapTable()
        self.locks = LockTable()
        self._on_fenced = on_fenced
        self._evict = evict
        self.flush_wake = asyncio.Event()
        self.inflight: set[tuple[str, int]] = set()
        self.unsafe_by: dict[int, tuple[str, int]] = {}  # ino -> (client, seq) not durable
        self.durable_seq = 0
        self._durable_waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._waiter_ids = itertools.count()
        self._recalls: dict[int, asyncio.Future[None]] = {}
        self._lock_changed: dict[int, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ino_lock = asyncio.Lock()
        # figures for `fs status` and the metrics
        self.requests = 0
        self.latencies: deque[float] = deque(maxlen=2000)  # seconds, answered requests
        self.by_kind: dict[str, int] = {}
        self.recalls_sent = 0
        self.background = 0

    # --- the stream's messages, in order -----------------------------------------------------
    async def on_message(self, session: Session, msg: mds_pb2.ClientMsg) -> None:
        if msg.oldest_unsafe:
            session.forget_completed(msg.oldest_unsafe)
        if msg.sync:
            self.journal.flush_now()  # the client waits for "safe" (fsync, syncfs, unmount)
        for req in msg.requests:
            await self.accept(session, req)
        for seq in msg.acks:
            session.acked(seq)
        for ino in msg.recall_acks:
            self.released(session.client, ino)
        if msg.forget:
            gone = [ino for ino in msg.forget if self.caps.excl.get(ino) == session.client]
            self.caps.forget(session.client, msg.forget)
            for ino in gone:
                self._resolve_recall(ino)

    def spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def accept(self, session: Session, req: mds_pb2.MdsRequest) -> None:
        """One request, in stream order: answered again if it was done before, else run now
        (its loads awaited here) or parked until what it waits for is done."""
        self.requests += 1
        session.requests += 1
        done = session.completed.get(req.tid)
        if done is not None:
            if not req.background:
                reply = mds_pb2.MdsReply.FromString(done)
                reply.tid, reply.epoch = req.tid, self.epoch
                reply.safe = req.tid not in session.unsafe_tids
                session.outbox.put_reply(reply)
            elif req.tid not in session.unsafe_tids:
                session.outbox.put_safe(req.tid)
            return
        if (session.client, req.tid) in self.inflight:
            return  # a resend of a parked request: it answers when it runs
        kind = req.WhichOneof("op")
        if kind in ("setlk", "getlk"):
            self.spawn(self._lock_request(session, req, kind))
            return
        if kind is None or kind not in _NAMING:
            self._answer(session, req, kind, None, mds_pb2.MdsReply(
                errno=E.ENOSYS, message=f"unknown request {kind!r}"), True)
            return
        if self.journal.backlog > JOURNAL_BACKLOG:
            await self.journal.wait_room(JOURNAL_BACKLOG // 2)
        waits = [] if req.background or req.replay else self._waits(session, req, kind)
        if waits:
            self.inflight.add((session.client, req.tid))
            self.spawn(self._parked(session, req, kind, waits))
            return
        await self._execute(session, req, kind)

    async def _parked(self, session: Session, req: mds_pb2.MdsRequest, kind: str,
                      waits: list[asyncio.Future[None]]) -> None:
        try:
            while waits:
                await asyncio.wait(waits)
                waits = self._waits(session, req, kind)
            await self._execute(session, req, kind)
        finally:
            self.inflight.discard((session.client, req.tid))

    def _waits(self, session: Session, req: mds_pb2.MdsRequest, kind: str
               ) -> list[asyncio.Future[None]]:
        """What must happen before this client may see what the request names: other
        clients' exclusive directories given back, their unsafe changes made durable."""
        op = getattr(req, kind)
        named = _NAMING[kind](op)
        out = [self._recall(holder, ino)
               for holder, ino in self.caps.conflicts(session.client, named)]
        for ino in named:
            dirty = self.unsafe_by.get(ino)
            if dirty is None:
                continue
            client, seq = dirty
            if seq <= self.durable_seq:
                del self.unsafe_by[ino]
            elif client != session.client:
                out.append(self._until_durable(seq))
        return out

    # --- running a request --------------------------------------------------------------------
    async def _execute(self, session: Session, req: mds_pb2.MdsRequest, kind: str) -> None:
        started = time.monotonic()
        op = getattr(req, kind)
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        if req.background:
            self.background += 1
        loads = 0
        while True:
            tx = Tx()
            try:
                reply = self._run(kind, op, req, tx, session)
            except NeedLoad as need:
                loads += 1
                if loads > 10_000:
                    reply = mds_pb2.MdsReply(errno=E.EIO, message="metadata keeps changing "
                                             "under the request")
                    break
                await self.load(need)
                continue
            except FsError as err:
                if req.background:
                    log.error("%s: background %s of client %s failed: %s (errno %d)",
                              self.name, kind, session.client, err.message, err.errno)
                reply = mds_pb2.MdsReply(errno=err.errno, message=err.message)
            break
        if reply.errno:
            if kind == "lookup" and reply.errno == E.ENOENT:
                self.caps.lease_dir(session.client, op.parent)  # it caches the absence
            self._answer(session, req, kind, op, reply, True)
            return
        self._after_change(session, kind, reply, tx)
        seq = self.journal_tx(tx, session, req, reply)
        invs = self.caps.changed(session.client, tx.inos, tx.dentries) \
            if tx.inos or tx.dentries else []
        waits = []
        for client, inv in invs:
            other = self.sessions.get(client)
            if other is not None and other.connected:
                waits.append(other.send_invalidate(inv))
        if waits and not req.background:  # a client that does not answer soon is not waited
            self.spawn(self._answer_after(waits, session, req, kind, op, reply, seq == 0,
                                          started))
            return
        self._answer(session, req, kind, op, reply, seq == 0)
        self._took(kind, started)

    async def _answer_after(self, waits: list[asyncio.Future[None]], session: Session,
                            req: mds_pb2.MdsRequest, kind: str, op: object,
                            reply: mds_pb2.MdsReply, safe: bool, started: float) -> None:
        await asyncio.wait(waits, timeout=INVALIDATE_WAIT)
        self._answer(session, req, kind, op, reply, safe and req.tid not in
                     session.unsafe_tids)
        self._took(kind, started)

    def _took(self, kind: str, started: float) -> None:
        seconds = time.monotonic() - started
        self.latencies.append(seconds)
        metrics.observe("mds_request", seconds, op=kind)

    def _answer(self, session: Session, req: mds_pb2.MdsRequest, kind: str | None, op: object,
                reply: mds_pb2.MdsReply, safe: bool) -> None:
        metrics.inc("mds_requests", op=kind or "unknown",
                    result=E.errorcode.get(reply.errno, str(reply.errno)).lower()
                    if reply.errno else "ok")
        if self.sessions.get(session.client) is not session:
            return  # evicted or closed meanwhile
        if req.background:
            if reply.errno:
                reply.tid, reply.epoch, reply.safe = req.tid, self.epoch, True
                session.outbox.put_reply(reply)
            elif safe:
                session.outbox.put_safe(req.tid)
            return
        reply.tid, reply.epoch, reply.safe = req.tid, self.epoch, safe
        if not reply.errno and kind is not None:
            self._grant(session, kind, op, reply)
        session.outbox.put_reply(reply)

    def _grant(self, session: Session, kind: str, op: object, reply: mds_pb2.MdsReply) -> None:
        """What this reply lets the client cache, decided as it is sent (so a later recall
        reaches the client after the grant)."""
        client = session.client
        caps = self.caps
        if reply.HasField("inode"):
            caps.lease_inode(client, reply.inode.ino)
        for entry in reply.entries:
            caps.lease_inode(client, entry.inode.ino)
        for inode in reply.dirs:
            caps.lease_inode(client, inode.ino)
        dirs = _DIRS_OF.get(kind)
        if dirs is None:
            return
        for ino in dirs(op):
            caps.lease_dir(client, ino)
            if caps.try_grant(client, ino) and ino not in reply.excl_dirs:
                reply.excl_dirs.append(ino)
        made = reply.inode.ino
        if kind == "create" and layout.is_dir(reply.inode.mode) and \
                caps.excl.get(made) == client and made not in reply.excl_dirs:
            reply.excl_dirs.append(made)
        if caps.held.get(client) and session.delegated_left() < DELEGATE_LOW \
                and self.cache.ino_high - self.cache.next_ino >= DELEGATE:
            first, count = self.cache.alloc_range(DELEGATE)
            session.delegated.append([first, first + count])
            reply.delegated.first, reply.delegated.count = first, count
        elif caps.held.get(client) and session.delegated_left() < DELEGATE_LOW:
            self.spawn(self._reserve_inos())  # the next reply delegates

    def _after_change(self, session: Session, kind: str, reply: mds_pb2.MdsReply, tx: Tx
                      ) -> None:
        if kind == "create" and layout.is_dir(reply.inode.mode):
            self.caps.grant_new(session.client, reply.inode.ino)
        for ino in tx.removed_dirs:
            self.caps.removed(ino)
            self._resolve_recall(ino)

    def journal_tx(self, tx: Tx, session: Session | None, req: mds_pb2.MdsRequest | None,
                   reply: mds_pb2.MdsReply) -> int:
        """Journal what `tx` changed (not waiting for it): the event's sequence number, 0
        when nothing changed."""
        mutations = tx.mutations(self.cache)
        if not mutations and not tx.purges:
            return 0
        client = session.client if session is not None else ""
        tid = req.tid if req is not None else 0
        raw = b"" if req is None or req.background else reply.SerializeToString()
        seq = self.store.record(mutations, tx.purges)
        fut = self.journal.submit(mds_pb2.JournalEvent(mutations=mutations, client=client,
                                                       tid=tid, reply=raw, purges=tx.purges))
        fut.add_done_callback(lambda f: self._durable(f, seq, client, tid))
        if session is not None and req is not None:
            session.remember(tid, raw)
            session.unsafe_tids.add(tid)
        for ino in tx.inos:
            self.unsafe_by[ino] = (client, seq)
        for parent, _ in tx.dentries:
            self.unsafe_by[parent] = (client, seq)
        if self.store.waiting >= self.config.mds_flush_events:
            self.flush_wake.set()
        return seq

    async def journal_internal(self, tx: Tx) -> None:
        """Journal a change of the MDS's own (no client) and wait until it is durable."""
        seq = self.journal_tx(tx, None, None, mds_pb2.MdsReply())
        if seq:
            await self._until_durable(seq)

    def _durable(self, fut: asyncio.Future[Position], seq: int, client: str, tid: int) -> None:
        if fut.cancelled() or fut.exception() is not None:
            why = "the journal stopped" if fut.cancelled() else str(fut.exception())
            self.spawn(self._on_fenced(why))
            return
        self.store.committed(seq, fut.result())
        if seq > self.durable_seq:
            self.durable_seq = seq
        waiters = self._durable_waiters
        while waiters and waiters[0][0] <= self.durable_seq:
            _, _, waiter = heapq.heappop(waiters)
            if not waiter.done():
                waiter.set_result(None)
        if client:
            session = self.sessions.get(client)
            if session is not None and tid in session.unsafe_tids:
                session.unsafe_tids.discard(tid)
                session.outbox.put_safe(tid)

    def _until_durable(self, seq: int) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if seq <= self.durable_seq:
            fut.set_result(None)
        else:
            heapq.heappush(self._durable_waiters, (seq, next(self._waiter_ids), fut))
            self.journal.flush_now()
        return fut

    def prune_unsafe(self) -> None:
        """Forget changes that are durable now (run now and then)."""
        if len(self.unsafe_by) > 10_000:
            durable = self.durable_seq
            self.unsafe_by = {k: v for k, v in self.unsafe_by.items() if v[1] > durable}

    async def load(self, need: NeedLoad) -> None:
        store = self.store
        if need.kind == "dentry":
            self.cache.loaded_dentry(need.ino, need.name,
                                     await store.load_dentry(need.ino, need.name))
        elif need.kind == "anchor":
            self.cache.loaded_anchor(need.ino, await store.load_anchor(need.ino))
        elif need.kind == "page":
            entries, more = await store.load_page(need.ino, need.name, MAX_READDIR)
            self.cache.loaded_page(need.ino, need.name, entries, more)
        elif need.kind == "empty":
            self.cache.loaded_emptiness(need.ino, await store.is_empty(need.ino))
        elif need.kind == "inos":
            await self._reserve_inos()

    async def _reserve_inos(self) -> None:
        async with self._ino_lock:
            if self.cache.ino_high - self.cache.next_ino < DELEGATE:
                first, high = await self.store.reserve_inos(max(self.cache.next_ino,
                                                                self.cache.ino_high))
                self.cache.next_ino, self.cache.ino_high = first, high

    def _run(self, kind: str, op, req: mds_pb2.MdsRequest, tx: Tx, session: Session
             ) -> mds_pb2.MdsReply:
        """The request as a pure operation on the cache (NeedLoad, FsError escape)."""
        cache = self.cache
        now = req.now_ns if (req.background or req.replay) and req.now_ns else time.time_ns()
        reply = mds_pb2.MdsReply()
        if kind == "lookup":
            reply.inode.CopyFrom(ns.lookup(cache, op.parent, op.name))
        elif kind == "getattr":
            reply.inode.CopyFrom(ns.getattr_(cache, op.ino))
        elif kind == "setattr":
            inode, _ = ns.setattr_(cache, tx, op, req.caller, now)
            reply.inode.CopyFrom(inode)
        elif kind == "create":
            ino = 0
            if op.ino:
                ino = self._given_ino(session, req, op)
            inode, created = ns.create(cache, tx, op, req.caller, now, ino)
            if op.ino and not created:
                raise FsError(E.EEXIST, f"{op.name[:80]!r} exists")
            reply.inode.CopyFrom(inode)
            reply.dirs.append(cache.inode(op.parent))
            if op.open and not req.replay:
                session.opens[inode.ino] += 1
        elif kind == "unlink":
            reply.inode.CopyFrom(ns.unlink(cache, tx, op, now, self.sessions.is_open))
            reply.dirs.append(cache.inode(op.parent))
        elif kind == "rename":
            inode, changed = ns.rename(cache, tx, op, now, self.sessions.is_open)
            reply.inode.CopyFrom(inode)
            reply.changed.extend(changed)
            reply.dirs.append(cache.inode(op.parent))
            if op.new_parent != op.parent:
                reply.dirs.append(cache.inode(op.new_parent))
        elif kind == "link":
            reply.inode.CopyFrom(ns.link(cache, tx, op, now))
            reply.dirs.append(cache.inode(op.new_parent))
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
            if not req.replay:
                session.opens[op.ino] += 1
        elif kind == "release" and not req.replay:  # else the reconnect said what is open
            self._release(session, op.ino, tx)
        return reply

    def _given_ino(self, session: Session, req: mds_pb2.MdsRequest, op) -> int:
        """The inode number a client chose for a create: one delegated to it, or (a replay
        after a takeover) one an earlier MDS handed out and nothing uses."""
        if req.replay:
            if self.cache.ino_high == 0:
                raise NeedLoad("inos")
            if not layout.FIRST_INO <= op.ino < self.cache.ino_high or \
                    self.cache.anchor(op.ino) is not None:
                raise FsError(E.EINVAL, f"inode {op.ino:x} was not handed out or is in use")
            return op.ino
        if not session.use_delegated(op.ino):
            raise FsError(E.EINVAL, f"inode {op.ino:x} was not delegated to this client")
        return op.ino

    def _release(self, session: Session, ino: int, tx: Tx) -> None:
        cache = self.cache
        mine = session.opens.get(ino, 0)
        last = mine <= 1 and not any(s.opens.get(ino, 0) > 0
                                     for s in self.sessions.sessions.values()
                                     if s is not session)
        anchor = cache.anchor(ino) if last else None  # read before changing anything
        if mine > 1:
            session.opens[ino] -= 1
        else:
            session.opens.pop(ino, None)
        if anchor is not None and anchor.stray:
            ns.release_stray(cache, tx, ino)

    async def release_stray(self, ino: int) -> None:
        while True:
            tx = Tx()
            try:
                ns.release_stray(self.cache, tx, ino)
            except NeedLoad as need:
                await self.load(need)
                continue
            await self.journal_internal(tx)
            return

    # --- exclusive directories ----------------------------------------------------------------
    def _recall(self, holder: str, ino: int) -> asyncio.Future[None]:
        fut = self._recalls.get(ino)
        if fut is not None and not fut.done():
            return fut
        fut = asyncio.get_running_loop().create_future()
        self._recalls[ino] = fut
        session = self.sessions.get(holder)
        if session is None or not session.connected:
            self.caps.release(holder, ino)
            fut.set_result(None)
            return fut
        self.recalls_sent += 1
        session.outbox.put_recall(ino)
        timeout = self.config.mds_session_timeout

        def overdue() -> None:
            if not fut.done() and self.caps.excl.get(ino) == holder:
                self.spawn(self._evict(holder, f"did not give directory {ino:x} back within "
                                       f"{timeout:g} s"))
        asyncio.get_running_loop().call_later(timeout, overdue)
        return fut

    def released(self, client: str, ino: int) -> None:
        self.caps.release(client, ino)
        self._resolve_recall(ino)

    def _resolve_recall(self, ino: int) -> None:
        fut = self._recalls.pop(ino, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def stream_ended(self, session: Session) -> None:
        """A client's stream broke: it stops using its exclusive directories."""
        for ino in self.caps.drop_exclusive(session.client):
            self._resolve_recall(ino)

    def session_gone(self, client: str) -> None:
        for ino in self.caps.drop_client(client):
            self._resolve_recall(ino)
        for ino in self.locks.drop_client(client):
            self._locks_changed(ino)

    # --- file locks -------------------------------------------------------------------------
    @staticmethod
    def _lock(client: str, info: mds_pb2.LockInfo) -> Lock:
        return Lock(client, info.owner, info.pid, info.start, info.end, info.type == 1,
                    info.flock)

    def reclaim_lock(self, client: str, held: mds_pb2.LockInfo) -> bool:
        want = self._lock(client, held)
        if self.locks.conflict(held.ino, want) is not None:
            return False
        self.locks.grant(held.ino, want)
        return True

    def _locks_changed(self, ino: int) -> None:
        event = self._lock_changed.pop(ino, None)
        if event is not None:
            event.set()

    async def _lock_request(self, session: Session, req: mds_pb2.MdsRequest, kind: str
                            ) -> None:
        self._answer(session, req, kind, None, await self._lock_reply(session, kind,
                                                                       getattr(req, kind)),
                     True)

    async def _lock_reply(self, session: Session, kind: str, op) -> mds_pb2.MdsReply:
        info = op.lock
        want = self._lock(session.client, info)
        if kind == "getlk":
            held = self.locks.conflict(info.ino, want)
            out = mds_pb2.LockInfo(ino=info.ino, type=2)
            if held is not None:
                out = mds_pb2.LockInfo(ino=info.ino, owner=held.owner, pid=held.pid,
                                       start=held.start, end=held.end,
                                       type=1 if held.exclusive else 0, flock=held.flock)
            return mds_pb2.MdsReply(lock=out)
        if info.type == 2:  # F_UNLCK
            if self.locks.unlock(info.ino, session.client, info.owner, info.start, info.end,
                                 info.flock):
                self._locks_changed(info.ino)
            return mds_pb2.MdsReply()
        while True:
            if self.sessions.get(session.client) is not session:
                return mds_pb2.MdsReply(errno=E.EIO, message="the session ended")
            if self.locks.conflict(info.ino, want) is None:
                self.locks.grant(info.ino, want)
                self._locks_changed(info.ino)  # a downgrade or a merge may let others in
                return mds_pb2.MdsReply()
            if not op.wait:
                return mds_pb2.MdsReply(errno=E.EAGAIN, message="locked by another owner")
            event = self._lock_changed.setdefault(info.ino, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), 1.0)


__all__ = ["Engine", "Fenced"]
