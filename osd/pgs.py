"""The member side of PGs on one OSD: in-memory state mirrored from the store, and every change
a member makes to a PG (a replicated write, an activation, a recovered object, a removal).

Whether this OSD is the PG's primary or a replica, the same code applies a change, so the
members of a PG stay byte-identical. Each change is one store transaction, durable before the
call returns, that updates the objects together with the PG's log, info and missing set.

A per-PG member lock orders these changes on this OSD. It is separate from the primary's op
lock (osd/service.py), which is held across a whole client op while this one is taken only
for the local transaction, so an OSD that is primary and replica of the same PG during a map
change cannot deadlock with itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import xxhash

from osd import ops as ops_mod
from osd import pgmeta
from osd.objectstore import ChecksumError, NotFound, ObjectStore, Transaction
from osd.pg import PgState
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
    async def apply_write(self, rep: osd_pb2.RepOpRequest) -> bool:
        """Apply a resolved write with its log entry, durably. False: it had it already."""
        coll = rep.pgid
        async with self.lock(coll):
            pg = await self.get(coll)
            if rep.entry.client and pg.dedup.get(rep.entry.client, rep.entry.tid) is not None:
                return False  # a resend of a write this member has
            if rep.epoch < pg.les:
                raise StaleEpoch(f"{coll}: a write of epoch {rep.epoch}, from before this "
                                 f"member's activation at epoch {pg.les}: dropped")
            if rep.seq <= pg.last_seq:
                raise StaleEpoch(f"{coll}: log position {rep.seq} is taken here (last "
                                 f"{pg.last_seq}) by another write: the PG must peer again")
            txn = await self._new_txn(coll)
            version = None if rep.entry.removed else rep.entry.version
            ops_mod.to_transaction(txn, coll, rep.oid, list(rep.ops), version)
            tail = pgmeta.add_log(txn, coll, rep.seq, rep.entry, pg.log_tail)
            await self._submit(coll, txn)
            pg.log_tail = tail
            pg.applied(rep.seq, rep.entry.version)
            pg.dedup.put(rep.entry.client, rep.entry.tid, osd_pb2.OpReply(
                status=osd_pb2.OpReply.OK, version=rep.entry.version).SerializeToString())
            return True

    # --- peering -----------------------------------------------------------------------------
    async def query(self, coll: str) -> osd_pb2.PgQueryReply:
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

    async def inventory(self, coll: str, after: bytes, max_items: int
                        ) -> osd_pb2.InventoryReply:
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
        async with self.lock(coll):
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

    async def remove(self, coll: str) -> None:
        async with self.lock(coll):
            if await self.exists(coll):
                await self.store.submit(Transaction().remove_collection(coll))
                (await self.collections()).discard(coll)
            self._pgs.pop(coll, None)

    def cached(self) -> Iterable[PgState]:
        return self._pgs.values()
