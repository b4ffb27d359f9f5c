"""A PG member's store I/O: what the PG state machine (osd/pg_machine.py) decides, made into
store transactions, and the reads a primary asks a member for.

- `load` reads a member's state of a PG (log, info, missing set) into a `MemberState`;
- `transaction` turns a `Persist` effect into one store transaction (a replicated write with
  its log entry, an activation, a removal, the scrub stamps) - built at once, so the host
  queues it in the order the machine asked; `push_transaction` (a recovered object's part)
  looks at the object first, so it is async;
- `pull`, `inventory`, `scrub_map` answer the primary's reads.

Everything a change writes goes in the same transaction as the objects it describes (the log,
info and missing set live in the PG's meta object and log, see osd/pgmeta.py), so it is
exactly as durable.
"""

from __future__ import annotations

import xxhash

from osd import ops as ops_mod
from osd import pgmeta
from osd.objectstore import ChecksumError, NotFound, ObjectStore, Transaction
from osd.pg_events import Persist
from osd.pg_member import MemberState
from rados_py.proto.loligo import osd_pb2

__all__ = ["PgStore"]

SCRUB_READ = 8 << 20  # deep scrub reads objects in parts of this size


class PgStore:
    """The PG-level I/O of one OSD's store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._colls: set[str] | None = None

    async def collections(self) -> set[str]:
        if self._colls is None:
            self._colls = set(await self.store.list_collections())
        return self._colls

    async def load(self, coll: str) -> MemberState:
        loaded = await pgmeta.load(self.store, coll)
        return MemberState(exists=loaded.exists, les=loaded.les, les_acting=loaded.les_acting,
                           log_tail=loaded.log_tail, log=list(loaded.log),
                           missing=dict(loaded.missing), scrubbed=loaded.scrubbed)

    def _txn(self, coll: str) -> Transaction:
        assert self._colls is not None, "collections() first"
        txn = Transaction()
        if coll not in self._colls:
            txn.create_collection(coll)
        return txn

    def committed(self, coll: str, what: object) -> None:
        """A transaction of `coll` is durable (the collection exists, or is gone)."""
        assert self._colls is not None
        if isinstance(what, osd_pb2.PgRemove):
            self._colls.discard(coll)
        else:
            self._colls.add(coll)

    def transaction(self, coll: str, effect: Persist) -> Transaction:
        """The transaction of a write, activation, removal or stamps (not of a push)."""
        what = effect.what
        if isinstance(what, osd_pb2.RepOpRequest):
            txn = self._txn(coll)
            version = None if what.entry.removed else what.entry.version
            ops_mod.to_transaction(txn, coll, what.oid, list(what.ops), version)
            txn.log_append(coll, what.seq, what.entry.SerializeToString(),
                           after=effect.log_after or None)
            if effect.trim_to:
                txn.log_trim(coll, effect.trim_to)
            return txn
        if isinstance(what, osd_pb2.PgActivate):
            txn = self._txn(coll)
            if what.replace_log:
                txn.log_trim(coll, 1 << 62)
            else:
                txn.log_rollback(coll, what.keep_through)
            for record in what.append:
                txn.log_append(coll, record.seq, record.entry.SerializeToString())
            assert effect.info is not None
            les, acting, tail = effect.info
            pgmeta.set_info(txn, coll, les, acting, tail, effect.stamps)
            pgmeta.set_missing(txn, coll, {m.oid: m.need for m in what.missing})
            return txn
        if isinstance(what, osd_pb2.PgRemove):
            assert self._colls is not None
            txn = Transaction()
            if coll in self._colls:
                txn.remove_collection(coll)
            return txn
        assert what == "scrubbed" and effect.info is not None
        txn = self._txn(coll)
        les, acting, tail = effect.info
        pgmeta.set_info(txn, coll, les, acting, tail, effect.stamps)
        return txn

    async def push_transaction(self, coll: str, msg: osd_pb2.PushRequest) -> Transaction:
        """Write (a part of) a recovered object; the last part clears it from missing."""
        oid = msg.oid
        txn = self._txn(coll)
        if msg.first or msg.remove:
            try:
                await self.store.stat(coll, oid)
                txn.remove(coll, oid)
            except NotFound:
                pass
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
        return txn

    # --- reads of the primary ----------------------------------------------------------------
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
