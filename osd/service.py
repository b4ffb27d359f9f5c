"""The OSD's gRPC servicer: client ops (as primary), replica ops, listings, PG dumps.

Primary-copy replication, per PG in strict order: a PG lock is held from the dedup check
through guard evaluation, the local transaction and the replicas' acknowledgements, so writes
of a PG are applied in version order on every member and a read never sees a write that is not
yet durable on every acting member. A write is acknowledged only when the local store and
every replica have committed it (each member's `submit` returns only once durable).

Resends: every applied write's (client, tid) is in the PG log entry of every member and in each
member's in-memory dedup table (rebuilt from the log when a PG is first touched after a
restart). A write whose replication failed is remembered with its resolved RepOp, and a resend
of it re-sends that same RepOp (replicas that have it answer "had it") instead of executing the
request again: an append is never applied twice.

Not in scope here (issue 5): peering and recovery. An OSD that restarts serves the objects it
has; writes it missed while down are not copied to it, so until recovery exists its copy of a
PG may lag the others (reads go to the primary only).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import xxhash

from osd import ops as ops_mod
from osd.objectstore import NotFound, ObjectStore, Transaction
from osd.pg import PgState, Route, RouteDecision, coll_for, route, store_oid, unpack_version
from rados_py import auth, rpc
from rados_py.config import Config
from rados_py.errors import InvalidArgument, LoligoError, StaleEpoch
from rados_py.osdmap import OSDMap, PgId
from rados_py.proto.loligo import osd_pb2, osd_pb2_grpc

__all__ = ["OsdService", "server_auth"]

log = logging.getLogger(__name__)
_OSD = "/loligo.Osd/"
ENVELOPE = 64 * 1024  # headroom under rpc_max_message_size for everything but data
_STATUS = {Route.STALE_EPOCH: osd_pb2.OpReply.STALE_EPOCH,
           Route.NOT_PRIMARY: osd_pb2.OpReply.NOT_PRIMARY,
           Route.UNDERSIZED: osd_pb2.OpReply.UNDERSIZED}


def server_auth(secret: bytes) -> rpc.ServerAuth:
    """Clients need r for ops (w is checked per request), peers and admins `allow *`."""
    return rpc.ServerAuth(service="osd", service_secret=secret,
                          method_ops={_OSD + "Op": "r", _OSD + "List": "r",
                                      _OSD + "RepOp": "*", _OSD + "DumpPg": "*"})


class OsdService(osd_pb2_grpc.OsdServicer):
    """Serves one OSD's store. `osdmap()` is the current map; `wait_epoch(e)` fetches maps
    until at least epoch e (raising Timeout); `own_ticket()` mints tickets for peers."""

    def __init__(self, osd_id: int, store: ObjectStore, config: Config,
                 osdmap: Callable[[], OSDMap], wait_epoch: Callable[[int], Awaitable[None]],
                 own_ticket: Callable[[], Awaitable[str]]) -> None:
        self.id = osd_id
        self.store = store
        self.config = config
        self._osdmap = osdmap
        self._wait_epoch = wait_epoch
        self._creds = rpc.ClientCredentials(config.fsid, own_ticket,
                                            epoch=lambda: self._osdmap().epoch)
        self.pgs: dict[str, PgState] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._unacked: dict[str, dict[tuple[str, int], osd_pb2.RepOpRequest]] = {}
        self._colls: set[str] | None = None
        self._channels: dict[str, tuple[grpc.aio.Channel, osd_pb2_grpc.OsdStub]] = {}
        self.max_read = max(4096, config.rpc_max_message_size - ENVELOPE)

    async def close(self) -> None:
        for channel, _ in self._channels.values():
            await channel.close()
        self._channels.clear()

    # --- PG state ------------------------------------------------------------------------
    async def _pg(self, coll: str) -> PgState:
        """The PG's state, loaded from its log the first time (last seq, dedup table)."""
        state = self.pgs.get(coll)
        if state is not None:
            return state
        if self._colls is None:
            self._colls = set(await self.store.list_collections())
        state = PgState(coll)
        if coll in self._colls:
            after = 0
            while page := await self.store.log_read(coll, after, 1000):
                for seq, raw in page:
                    entry = osd_pb2.PgLogEntry.FromString(raw)
                    state.applied(seq)
                    state.dedup.put(entry.client, entry.tid, osd_pb2.OpReply(
                        status=osd_pb2.OpReply.OK, version=entry.version).SerializeToString())
                after = page[-1][0]
        return self.pgs.setdefault(coll, state)

    def _lock(self, coll: str) -> asyncio.Lock:
        return self._locks.setdefault(coll, asyncio.Lock())

    async def _route(self, req: Any, name: bytes, nspace: bytes, write: bool) -> RouteDecision:
        osdmap = self._osdmap()
        decision = route(osdmap, self.id, req.epoch, req.pool, req.pg_seed, name, nspace, write)
        if decision.route is Route.WAIT:
            await self._wait_epoch(req.epoch)
            decision = route(self._osdmap(), self.id, req.epoch, req.pool, req.pg_seed, name,
                             nspace, write)
        if decision.route in (Route.BAD_PG, Route.NO_POOL, Route.WAIT):
            raise InvalidArgument(decision.message)
        return decision

    # --- client ops ----------------------------------------------------------------------
    async def Op(self, request: osd_pb2.OpRequest, context: Any) -> osd_pb2.OpReply:
        if not request.ops:
            raise InvalidArgument("a request needs at least one op")
        write = ops_mod.is_write(list(request.ops))
        if write:
            ticket = rpc.current_ticket()
            if ticket is not None:
                auth.authorize(ticket, "osd", "w")
        oid = store_oid(request.nspace, request.name)
        decision = await self._route(request, request.name, request.nspace, write)
        epoch = self._osdmap().epoch
        if decision.route is not Route.SERVE:
            return osd_pb2.OpReply(status=_STATUS[decision.route], epoch=epoch,
                                   message=decision.message)
        assert decision.pgid is not None
        coll = coll_for(decision.pgid)
        async with self._lock(coll):
            pg = await self._pg(coll)
            if write:
                # a write applied here but not confirmed everywhere: finish that one
                pending = self._unacked.get(coll, {}).get((request.client, request.tid))
                if pending is not None:
                    return await self._finish(pg, decision, pending, None, request, epoch)
                seen = pg.dedup.get(request.client, request.tid)
                if seen is not None:
                    reply = osd_pb2.OpReply.FromString(seen)
                    reply.replayed, reply.epoch = True, epoch
                    return reply
            try:
                outcome = await ops_mod.execute(self.store, coll, oid, list(request.ops),
                                                self.max_read)
            except ops_mod.OpFailed as exc:
                reply = osd_pb2.OpReply(status=osd_pb2.OpReply.FAILED, errno=exc.errno,
                                        failed_op=exc.index, message=str(exc), epoch=epoch)
                if write:
                    pg.dedup.put(request.client, request.tid, reply.SerializeToString())
                return reply
            if not outcome.store_ops:
                return osd_pb2.OpReply(status=osd_pb2.OpReply.OK, epoch=epoch,
                                       version=outcome.version_before, results=outcome.results)
            seq, version = pg.next_version(epoch)
            entry = osd_pb2.PgLogEntry(version=version, oid=oid, client=request.client,
                                       tid=request.tid, removed=not outcome.exists_after)
            rep = osd_pb2.RepOpRequest(epoch=epoch, pgid=coll, seq=seq, entry=entry, oid=oid,
                                       ops=outcome.store_ops, from_osd=self.id)
            return await self._finish(pg, decision, rep, outcome, request, epoch)

    async def _finish(self, pg: PgState, decision: RouteDecision, rep: osd_pb2.RepOpRequest,
                      outcome: ops_mod.Outcome | None, request: osd_pb2.OpRequest,
                      epoch: int) -> osd_pb2.OpReply:
        """Apply `rep` locally (unless a resend) and on every replica; answer the client."""
        key = (request.client, request.tid)
        unacked = self._unacked.setdefault(pg.pgid, {})
        jobs: list[Awaitable[Any]] = [self._replicate(o, rep) for o in decision.replicas]
        if outcome is not None:
            jobs.insert(0, self._apply(rep))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        local_failed = outcome is not None and isinstance(results[0], BaseException)
        failures = [r for r in results if isinstance(r, BaseException)]
        if local_failed:
            exc = results[0]
            assert isinstance(exc, BaseException)
            if not isinstance(exc, LoligoError):
                log.error("local apply of %s failed", pg.pgid, exc_info=exc)
            # not applied here: a resend executes afresh (replicas that applied it dedup)
            return osd_pb2.OpReply(status=osd_pb2.OpReply.FAILED,
                                   errno=ops_mod.errno_of(exc), message=f"osd.{self.id}: {exc}",
                                   epoch=epoch)
        if failures:
            unacked[key] = rep
            why = "; ".join(str(f) for f in failures)
            log.warning("write %s/%s to %s not confirmed by every replica: %s", request.client,
                        request.tid, pg.pgid, why)
            return osd_pb2.OpReply(status=osd_pb2.OpReply.REPLICA_FAILED, epoch=epoch,
                                   message=f"{pg.pgid}: not every replica confirmed the write "
                                   f"({why}); resend it", version=rep.entry.version)
        unacked.pop(key, None)
        reply = osd_pb2.OpReply(status=osd_pb2.OpReply.OK, epoch=epoch,
                                version=rep.entry.version,
                                results=outcome.results if outcome is not None else [])
        pg.dedup.put(request.client, request.tid, reply.SerializeToString())
        return reply

    async def _apply(self, rep: osd_pb2.RepOpRequest) -> None:
        """Apply a resolved write to the local store with its PG-log entry, durably."""
        coll = rep.pgid
        txn = Transaction()
        if self._colls is None:
            self._colls = set(await self.store.list_collections())
        new_coll = coll not in self._colls
        if new_coll:
            txn.create_collection(coll)
        version = None if rep.entry.removed else rep.entry.version
        ops_mod.to_transaction(txn, coll, rep.oid, list(rep.ops), version)
        txn.log_append(coll, rep.seq, rep.entry.SerializeToString())
        await self.store.submit(txn)
        self._colls.add(coll)
        pg = await self._pg(coll)
        pg.applied(rep.seq)
        pg.dedup.put(rep.entry.client, rep.entry.tid, osd_pb2.OpReply(
            status=osd_pb2.OpReply.OK, version=rep.entry.version).SerializeToString())

    def _stub(self, osd: int) -> tuple[str, osd_pb2_grpc.OsdStub]:
        state = self._osdmap().osds.get(osd)
        if state is None or not state.addr:
            raise rpc.Unavailable(f"osd.{osd} has no address in the map")
        entry = self._channels.get(state.addr)
        if entry is None:
            channel = rpc.open_channel(state.addr, self.config, self._creds)
            entry = (channel, osd_pb2_grpc.OsdStub(channel))
            self._channels[state.addr] = entry
        return state.addr, entry[1]

    async def _replicate(self, osd: int, rep: osd_pb2.RepOpRequest) -> None:
        addr, stub = self._stub(osd)
        await rpc.call_with_retry(stub.RepOp, rep, idempotent=True, config=self.config,
                                  address=f"osd.{osd} ({addr})")

    # --- replica side --------------------------------------------------------------------
    async def RepOp(self, request: osd_pb2.RepOpRequest, context: Any) -> osd_pb2.RepOpReply:
        if request.epoch > self._osdmap().epoch:
            await self._wait_epoch(request.epoch)
        osdmap = self._osdmap()
        if request.epoch < osdmap.epoch:
            placement = osdmap.pg_to_up_acting(PgId.parse(request.pgid))
            if placement.acting_primary != request.from_osd or self.id not in placement.acting:
                raise StaleEpoch(f"osd.{self.id} at epoch {osdmap.epoch}: osd."
                                 f"{request.from_osd} is no longer primary of {request.pgid}")
        async with self._lock(request.pgid + "/rep"):
            pg = await self._pg(request.pgid)
            if pg.dedup.get(request.entry.client, request.entry.tid) is not None:
                return osd_pb2.RepOpReply(epoch=osdmap.epoch, applied=False)
            await self._apply(request)
        return osd_pb2.RepOpReply(epoch=osdmap.epoch, applied=True)

    # --- listing and dumps ---------------------------------------------------------------
    async def List(self, request: osd_pb2.ListRequest, context: Any) -> osd_pb2.ListReply:
        decision = await self._route(request, b"", b"", False)
        epoch = self._osdmap().epoch
        if decision.route is not Route.SERVE:
            return osd_pb2.ListReply(status=_STATUS[decision.route], epoch=epoch,
                                     message=decision.message)
        assert decision.pgid is not None
        coll = coll_for(decision.pgid)
        reply = osd_pb2.ListReply(status=osd_pb2.OpReply.OK, epoch=epoch)
        async with self._lock(coll):
            try:
                names, more = await self.store.list_objects(coll, request.after or b"",
                                                            min(request.max or 1000, 10000))
            except NotFound:
                return reply
        for oid in names:
            n = int.from_bytes(oid[:2], "big")
            nspace, name = oid[2:2 + n], oid[2 + n:]
            if request.all_namespaces or nspace == request.nspace:
                reply.entries.add(name=name, nspace=nspace)
        if more and names:
            reply.next = names[-1]
        return reply

    async def DumpPg(self, request: osd_pb2.DumpPgRequest, context: Any
                     ) -> osd_pb2.DumpPgReply:
        """Every object of a PG with size, version and data digest (replica comparison)."""
        coll = request.pgid
        reply = osd_pb2.DumpPgReply()
        after = b""
        while True:
            try:
                names, more = await self.store.list_objects(coll, after, 1000)
            except NotFound:
                return reply
            for oid in names:
                st = await self.store.stat(coll, oid)
                digest = xxhash.xxh3_64_digest(await self.store.read(coll, oid))
                reply.objects.add(oid=oid, size=st.size, version=st.version, digest=digest)
            if not more or not names:
                break
            after = names[-1]
        reply.last_seq = (await self._pg(coll)).last_seq
        return reply


def describe_version(version: int) -> str:
    epoch, seq = unpack_version(version)
    return f"{epoch}'{seq}"
