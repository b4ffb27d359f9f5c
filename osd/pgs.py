"""The member side of PGs on one OSD: in-memory state mirrored from the store, and every change
a member makes to a PG (a replicated write, an activation, a recovered object, a removal).

Whether this OSD is the PG's primary or a replica, the same code applies a change, so the
members of a PG stay byte-identical. Each change is one store transaction that updates the
objects together with the PG's log, info and missing set.

Writes are pipelined: `start_write` checks and queues a write's transaction at once (no await),
so the writes of a PG enter the store in the order they arrive - log order, since a primary
sends them in seq order over one ordered stream - and the next one is queued while earlier ones
are still being made durable. A write must extend the log by exactly one (`seq == last + 1`,
and the store checks the log head it follows), so a write that failed here can never leave a
hole that a later one covers: after a failure the PG refuses writes until it peers again.

Interval fencing (osd/pg.py `refusal`): every message from a PG's primary carries its peering
round; the member keeps the newest round it answered a query or took an activation for, and
refuses anything older - a write or push from an earlier round that was held up in the network
changes nothing. A query raises the fence first and then waits for the writes already queued,
so what it reports is everything this member will ever have of the earlier rounds.

A per-PG member lock orders the other changes (activation, pushes, removal) among themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import xxhash

from osd import ops as ops_mod
from osd import pgmeta
from osd.objectstore import ChecksumError, NotFound, ObjectStore, Transaction
from osd.pg import NO_ROUND, PgState, Token, refusal, token_of
from rados_py.errors import StaleEpoch
from rados_py.proto.loligo import osd_pb2

__all__ = ["PgRegistry"]

SCRUB_READ = 8 << 20  # deep scrub reads objects in parts of this size


class PgRegistry:
    """PG states of one OSD, loaded from the store on first use."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._pgs: dict[str, PgState] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._colls: set[str] | None = None
        self._fences: dict[str, Token] = {}  # newest peering round heard of, per PG

    # --- interval fencing -------------------------------------------------------------------
    def fence(self, coll: str) -> Token:
        """The newest peering round of the PG this member follows."""
        pg = self._pgs.get(coll)
        floor = (pg.les, 0) if pg is not None else NO_ROUND
        return max(self._fences.get(coll, NO_ROUND), floor)

    def check(self, coll: str, kind: str, interval: osd_pb2.Interval | None) -> Token:
        """The message's round, or StaleEpoch when the fence refuses it."""
        token = token_of(interval)
        why = refusal(kind, token, self.fence(coll))
        if why:
            raise StaleEpoch(f"{coll}: {why}")
        return token

    def _raise_fence(self, coll: str, token: Token) -> None:
        if token > self._fences.get(coll, NO_ROUND):
            self._fences[coll] = token

    async def drained(self, coll: str) -> None:
        """Once every write queued for the PG so far is durable (or failed)."""
        pg = self._pgs.get(coll)
        while pg is not None and pg.queued:
            await asyncio.wait(list(pg.queued))
    def lock(self, coll: str) -> asyncio.Lock:
        return self._locks.setdefault(coll, asyncio.Lock())

    async def collections(self) -> set[str]:
        if self._colls is None:
            self._colls = set(await self.store.list_collections())
        return self._colls

    async def exists(self, coll: str) -> bool:
        return coll in await self.collections()

    async def get(self, coll: str) -> PgState:
        """The PG's state (loaded from the store the first time: log, info, missing, dedup)."""
        state = self._pgs.get(coll)
        if state is not None:
            return state
        loaded = await pgmeta.load(self.store, coll)
        state = PgState(coll, log_tail=loaded.log_tail, les=loaded.les,
                        les_acting=loaded.les_acting, missing=loaded.missing,
                        scrubbed=loaded.scrubbed)
        state.last_seq = loaded.log_tail
        for seq, entry in loaded.log:
            state.applied(seq, entry.version)
            state.dedup.put(entry.client, entry.tid, osd_pb2.OpReply(
                status=osd_pb2.OpReply.OK, version=entry.version).SerializeToString())
        return self._pgs.setdefault(coll, state)

    async def _submit(self, coll: str, txn: Transaction) -> None:
        await self.store.submit(txn)
        (await self.collections()).add(coll)

    async def _new_txn(self, coll: str) -> Transaction:
        txn = Transaction()
        if not await self.exists(coll):
            txn.create_collection(coll)
        return txn

    # --- writes ----------------------------------------------------------------------------
    def state(self, coll: str) -> PgState:
        """The PG's state, loaded already (`loaded`)."""
        return self._pgs[coll]

    def loaded(self, coll: str) -> bool:
        """Whether `start_write` can run for the PG now (its state is in memory)."""
        return coll in self._pgs and self._colls is not None

    async def load(self, coll: str) -> None:
        await self.collections()
        await self.get(coll)

    def start_write(self, rep: osd_pb2.RepOpRequest) -> asyncio.Future[bool]:
        """Check a resolved write and queue it with its log entry, now (`loaded` first).
        The future is True once it is durable, False for a resend of a write it has."""
        coll = rep.pgid
        pg = self._pgs[coll]
        loop = asyncio.get_running_loop()
        key = (rep.entry.client, rep.entry.tid)
        if rep.entry.client:
            if pg.dedup.get(*key) is not None:
                done = loop.create_future()
                done.set_result(False)
                return done  # a resend of a write this member has
            inflight = pg.inflight.get(key)
            if inflight is not None:
                return asyncio.ensure_future(_resend_of(inflight))
        self.check(coll, "write", rep.interval if rep.HasField("interval") else None)
        if rep.epoch < pg.les:
            raise StaleEpoch(f"{coll}: a write of epoch {rep.epoch}, from before this "
                             f"member's activation at epoch {pg.les}: dropped")
        if pg.failed:
            raise StaleEpoch(f"{coll}: {pg.failed}; refusing writes until the PG peers again")
        if rep.seq != pg.last_seq + 1:
            taken = rep.seq <= pg.last_seq
            raise StaleEpoch(f"{coll}: log position {rep.seq} is "
                             f"{'taken here by another write' if taken else 'past the end'} "
                             f"(last {pg.last_seq}): the PG must peer again")
        txn = Transaction()
        if coll not in self._colls:  # type: ignore[operator]
            txn.create_collection(coll)
        version = None if rep.entry.removed else rep.entry.version
        ops_mod.to_transaction(txn, coll, rep.oid, list(rep.ops), version)
        pg.log_tail = pgmeta.add_log(txn, coll, rep.seq, rep.entry, pg.log_tail,
                                     after=pg.last_seq)
        queued = self.store.enqueue(txn)
        self._colls.add(coll)  # type: ignore[union-attr]
        pg.last_seq = rep.seq
        done = loop.create_future()
        pg.queued.add(done)
        if rep.entry.client:
            pg.inflight[key] = done

        def finished(f: asyncio.Future[None]) -> None:
            pg.queued.discard(done)
            pg.inflight.pop(key, None)
            exc = f.exception() if not f.cancelled() else asyncio.CancelledError()
            if exc is not None:
                pg.failed = f"write at log position {rep.seq} failed here ({exc})"
                if not done.done():
                    done.set_exception(exc)
                return
            pg.last_update = max(pg.last_update, rep.entry.version)
            pg.dedup.put(rep.entry.client, rep.entry.tid, osd_pb2.OpReply(
                status=osd_pb2.OpReply.OK, version=rep.entry.version).SerializeToString())
            if not done.done():
                done.set_result(True)
        asyncio.ensure_future(queued).add_done_callback(finished)
        return done

    async def apply_write(self, rep: osd_pb2.RepOpRequest) -> bool:
        """Apply a resolved write with its log entry, durably. False: it had it already."""
        await self.load(rep.pgid)
        return await self.start_write(rep)

    # --- peering -----------------------------------------------------------------------------
    async def query(self, coll: str, interval: osd_pb2.Interval | None = None
                    ) -> osd_pb2.PgQueryReply:
        """The member's info, log and missing set for a primary peering in round `interval`
        (None: an inspection, which changes nothing). The fence rises first, then the writes
        already queued are waited for: nothing of an older round can follow the answer."""
        if interval is not None and (interval.epoch or interval.round):
            token = self.check(coll, "query", interval)
            self._raise_fence(coll, token)
            await self.drained(coll)
        async with self.lock(coll):
            loaded = await pgmeta.load(self.store, coll)
        reply = osd_pb2.PgQueryReply(exists=loaded.exists)
        if not loaded.exists:
            return reply
        last = loaded.log[-1] if loaded.log else None
        reply.info.CopyFrom(osd_pb2.PgInfo(
            pgid=coll, last_update=last[1].version if last else 0,
            last_seq=last[0] if last else loaded.log_tail, log_tail=loaded.log_tail,
            les=loaded.les, les_acting=loaded.les_acting))
        reply.log.extend(osd_pb2.PgLogRecord(seq=s, entry=e) for s, e in loaded.log)
        reply.missing.extend(osd_pb2.MissingItem(oid=o, need=n)
                             for o, n in loaded.missing.items())
        return reply

    async def inventory(self, coll: str, after: bytes, max_items: int,
                        interval: osd_pb2.Interval | None = None) -> osd_pb2.InventoryReply:
        self.check(coll, "inventory", interval)
        reply = osd_pb2.InventoryReply()
        try:
            rows, more = await self.store.list_versions(coll, after, max_items)
        except NotFound:
            return reply
        # the PG's meta object sorts after every client object, so skipping it keeps paging
        reply.objects.extend(osd_pb2.MissingItem(oid=oid, need=version)
                             for oid, version, _ in rows if not pgmeta.is_pgmeta(oid))
        reply.more = more
        return reply

    async def activate(self, msg: osd_pb2.PgActivate) -> None:
        """Follow the authoritative history: drop divergent entries (or the whole log), append
        the auth's, record the activation and the missing set - one transaction."""
        coll = msg.pgid
        token = self.check(coll, "activate", msg.interval if msg.HasField("interval") else None)
        self._raise_fence(coll, token)
        await self.drained(coll)
        async with self.lock(coll):
            self.check(coll, "activate", msg.interval if msg.HasField("interval") else None)
            pg = await self.get(coll)
            txn = await self._new_txn(coll)
            if msg.replace_log:
                txn.log_trim(coll, 1 << 62)
                tail = msg.keep_through
            else:
                txn.log_rollback(coll, msg.keep_through)
                tail = pg.log_tail
            for record in msg.append:
                txn.log_append(coll, record.seq, record.entry.SerializeToString())
            pgmeta.set_info(txn, coll, msg.les, list(msg.acting), tail, pg.scrubbed)
            pgmeta.set_missing(txn, coll, {m.oid: m.need for m in msg.missing})
            await self._submit(coll, txn)
            self._pgs.pop(coll, None)  # reload: last_seq, dedup and missing follow the new log
            await self.get(coll)

    async def pull(self, req: osd_pb2.PullRequest) -> osd_pb2.PullReply:
        """An object's state in parts (a recovery source)."""
        coll, oid = req.pgid, req.oid
        self.check(coll, "pull", req.interval if req.HasField("interval") else None)
        try:
            st = await self.store.stat(coll, oid)
        except NotFound:
            return osd_pb2.PullReply(exists=False)
        reply = osd_pb2.PullReply(exists=True, version=st.version, size=st.size)
        if req.length:
            end = min(st.size, req.offset + req.length)
            if end > req.offset:
                reply.data = bytes(await self.store.read(coll, oid, req.offset,
                                                         end - req.offset))
        if req.meta:
            xattrs = await self.store.getxattrs(coll, oid)
            reply.xattrs.extend(osd_pb2.KeyValue(key=k, value=v) for k, v in xattrs.items())
            reply.omap_header = await self.store.omap_get_header(coll, oid)
        if req.omap_max:
            pairs, more = await self.store.omap_list(coll, oid, req.omap_after,
                                                     max_items=req.omap_max)
            reply.omap.extend(osd_pb2.KeyValue(key=k, value=v) for k, v in pairs)
            reply.omap_more = more
        return reply

    async def push(self, msg: osd_pb2.PushRequest) -> None:
        """Write (a part of) a recovered object; the last part clears it from missing."""
        coll, oid = msg.pgid, msg.oid
        async with self.lock(coll):
            pg = await self.get(coll)
            self.check(coll, "push", msg.interval if msg.HasField("interval") else None)
            txn = await self._new_txn(coll)
            exists = True
            if msg.first or msg.remove:
                try:
                    await self.store.stat(coll, oid)
                except NotFound:
                    exists = False
                if exists:
                    txn.remove(coll, oid)
            if not msg.remove:
                if msg.first:
                    txn.touch(coll, oid)
                    for kv in msg.xattrs:
                        txn.setxattr(coll, oid, kv.key, kv.value)
                    if msg.omap_header:
                        txn.omap_set_header(coll, oid, msg.omap_header)
                if msg.data:
                    txn.write(coll, oid, msg.offset, msg.data)
                if msg.omap:
                    txn.omap_set(coll, oid, [(kv.key, kv.value) for kv in msg.omap])
            if msg.last or msg.remove:
                if not msg.remove:
                    txn.set_version(coll, oid, msg.version)
                pgmeta.clear_missing(txn, coll, oid)
            await self._submit(coll, txn)
            if msg.last or msg.remove:
                pg.missing.pop(oid, None)

    async def scrub_map(self, req: osd_pb2.ScrubMapRequest) -> osd_pb2.ScrubMapReply:
        """Size, version and digests of this member's objects in (after, upto]."""
        coll = req.pgid
        self.check(coll, "scrub", req.interval if req.HasField("interval") else None)
        reply = osd_pb2.ScrubMapReply()
        after = req.after
        while True:
            try:
                rows, more = await self.store.list_versions(coll, after, 500)
            except NotFound:
                return reply
            for oid, version, size in rows:
                if req.upto and oid > req.upto:
                    return reply
                if pgmeta.is_pgmeta(oid):
                    continue
                reply.objects.append(await self._scrub_object(coll, oid, version, size,
                                                              req.deep))
            if not more or not rows:
                return reply
            after = rows[-1][0]

    async def _scrub_object(self, coll: str, oid: bytes, version: int, size: int,
                            deep: bool) -> osd_pb2.ScrubObject:
        out = osd_pb2.ScrubObject(oid=oid, size=size, version=version)
        meta = xxhash.xxh3_64()
        try:
            for key, value in sorted((await self.store.getxattrs(coll, oid)).items()):
                meta.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big")
                            + value)
            if deep:
                meta.update(b"header" + await self.store.omap_get_header(coll, oid))
                after = b""
                while True:
                    pairs, more = await self.store.omap_list(coll, oid, after, max_items=1000)
                    for key, value in pairs:
                        meta.update(len(key).to_bytes(4, "big") + key
                                    + len(value).to_bytes(4, "big") + value)
                    if not more or not pairs:
                        break
                    after = pairs[-1][0]
                data = xxhash.xxh3_64()
                for offset in range(0, size, SCRUB_READ):
                    data.update(await self.store.read(coll, oid, offset,
                                                      min(SCRUB_READ, size - offset)))
                out.data_digest = data.digest()
        except ChecksumError:
            out.read_error = True
        except NotFound:  # removed since it was listed
            out.size, out.version = 0, 0
        out.meta_digest = meta.digest()
        return out

    async def set_scrubbed(self, coll: str, scrubbed: tuple[float, float]) -> None:
        """Remember when the PG was last scrubbed and deep-scrubbed (the schedule survives
        restarts)."""
        async with self.lock(coll):
            pg = await self.get(coll)
            txn = await self._new_txn(coll)
            pgmeta.set_info(txn, coll, pg.les, pg.les_acting, pg.log_tail, scrubbed)
            await self._submit(coll, txn)
            pg.scrubbed = scrubbed

    async def remove(self, coll: str, interval: osd_pb2.Interval | None = None) -> None:
        self.check(coll, "remove", interval)
        await self.drained(coll)
        async with self.lock(coll):
            if await self.exists(coll):
                await self.store.submit(Transaction().remove_collection(coll))
                (await self.collections()).discard(coll)
            self._pgs.pop(coll, None)

    def cached(self) -> Iterable[PgState]:
        return self._pgs.values()


async def _resend_of(original: asyncio.Future[bool]) -> bool:
    """A resend of a write still being made durable here: answered when it is (not applied
    twice)."""
    await asyncio.shield(original)
    return False
