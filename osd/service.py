"""The OSD's gRPC servicers: client ops (as primary), replica ops, listings, dumps (`Osd`); the
peer side of peering and recovery is osd/peer_service.py.

Primary-copy replication, pipelined per PG and ordered per object (Ceph's): an op on an object
holds it (osd/ordering.py) - a write exclusively, from its check against the object's state
until every acting member has it durable; a read shared, behind any write that came first - so
ops on one object run in arrival order and a read returns the old or the new content, never a
write that could still be rolled back. Ops on different objects of a PG run concurrently: a
write takes the next PG-log position and is queued in the local store and sent to every replica
at that moment, without awaiting anything in between, so every member receives the PG's writes
in log order (one ordered session stream per primary-replica pair) and queues them in that
order; the next write goes out while earlier ones are still being made durable. The client is
answered once every member has the write durable.

Ops are served only once the PG is active in the current interval (osd/recovery.py); until
then the client is told INACTIVE and retries. An op on an object that some acting member still
lacks recovers that object first.

When a replica does not confirm a write (or the local store refuses it while replicas may have
applied it), the members' logs may now differ: the primary answers REPLICA_FAILED and peers
the PG again, which brings every member to one history; the client's resend (same client id
and tid) is then answered from the dedup table if the write survived peering, or applied
afresh if it did not - never twice. A member whose write failed refuses the ones queued behind
it (no hole in its log) until then.

A 4 KiB write_full, end to end (what bench_rados prints as "layers"): the client's session
frame (1 message, often shared) -> primary: route (cached placement), object lock, stat on the
loop, RepOp queued in the local store and in both replicas' sessions (one encode) -> each
replica: queued in its store in stream order, one WAL commit per batch (group commit), reply
frame -> primary: reply frame to the client. 3 session messages per write at 1 in flight, fewer
under load (frames share messages), ~1 fdatasync per OSD per commit batch, one thread hop to the
commit thread and back per batch. Payload copies: client 3 (into the OpRequest, serialise, the
batch), primary 5 (parse, the op's data getter, into the RepOp, serialise, the batch), each
replica 3 (parse, getter, the store's buffer).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import xxhash

from osd import ops as ops_mod
from osd import pgmeta
from osd.objectstore import NotFound, ObjectStore
from osd.peers import PeerChannels
from osd.pg import (
    Route,
    RouteDecision,
    checked_coll,
    coll_for,
    route,
    split_oid,
    store_oid,
)
from osd.pg_primary import PgPrimary
from osd.pgs import PgRegistry
from osd.recovery import Recovery, Unfound
from osd.scrub import Scrubber
from rados_py import auth, rpc
from rados_py import session as session_mod
from rados_py.config import SCHEMA, Config
from rados_py.errors import InvalidArgument, LoligoError, StaleEpoch
from rados_py.osdmap import OSDMap, PgId
from rados_py.proto.loligo import osd_pb2, osd_pb2_grpc

__all__ = ["OsdService", "server_auth"]

log = logging.getLogger(__name__)
_OSD = "/loligo.Osd/"
_PEER = "/loligo.OsdPeer/"
ENVELOPE = 64 * 1024  # headroom under rpc_max_message_size for everything but data
_STATUS = {Route.STALE_EPOCH: osd_pb2.OpReply.STALE_EPOCH,
           Route.NOT_PRIMARY: osd_pb2.OpReply.NOT_PRIMARY,
           Route.UNDERSIZED: osd_pb2.OpReply.UNDERSIZED}
ACTIVE_WAIT = 2.0  # how long an op waits for its PG to become active before INACTIVE
# options an OSD applies while it runs (`loligo tell osd.N config set KEY VALUE`)
LIVE_OPTIONS = frozenset({"osd_recovery_max_active", "osd_recovery_max_bytes_per_sec",
                          "osd_recovery_chunk_size", "osd_scrub_interval",
                          "osd_deep_scrub_interval", "osd_scrub_auto_repair",
                          "osd_debug_replicate_delay"})


def _consume(fut: asyncio.Future[Any]) -> None:
    """Retrieve a result nobody waits for any more (no 'exception never retrieved')."""
    if not fut.cancelled():
        fut.exception()


def _outcome(fut: asyncio.Future[Any]) -> Any:
    """A settled future's result, or its exception."""
    if fut.cancelled():
        return asyncio.CancelledError()
    return fut.exception() or fut.result()


async def _settled(futs: list[asyncio.Future[Any]], closed: asyncio.Future[None]) -> bool:
    """Wait until every future is done (True), or `closed` is (False) - without a task each."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[bool] = loop.create_future()
    left = len(futs)

    def one_done(_: asyncio.Future[Any]) -> None:
        nonlocal left
        left -= 1
        if left == 0 and not waiter.done():
            waiter.set_result(True)

    def interval_ended(_: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_result(False)
    for fut in futs:
        fut.add_done_callback(one_done)
    closed.add_done_callback(interval_ended)
    try:
        return await waiter
    finally:
        closed.remove_done_callback(interval_ended)


def server_auth(secret: bytes) -> rpc.ServerAuth:
    """Clients need r for ops (w is checked per request), peers and admins `allow *`."""
    peer_methods = ("Query", "Inventory", "Activate", "Pull", "Push", "Remove", "Ping",
                    "ScrubMap")
    return rpc.ServerAuth(service="osd", service_secret=secret,
                          method_ops={_OSD + "Op": "r", _OSD + "List": "r",
                                      _OSD + "Session": "r",  # per frame: rep_op needs *
                                      _OSD + "RepOp": "*", _OSD + "DumpPg": "*",
                                      _OSD + "Scrub": "*", _OSD + "ConfigSet": "*",
                                      _OSD + "Perf": "*",
                                      **{_PEER + m: "*" for m in peer_methods}})


class OsdService(osd_pb2_grpc.OsdServicer):
    """Serves one OSD's store. `osdmap()` is the current map; `wait_epoch(e)` fetches maps
    until at least epoch e (raising Timeout); `own_ticket()` mints tickets for peers.
    `on_map(osdmap)` must be called for every new map (it starts peering)."""

    def __init__(self, osd_id: int, store: ObjectStore, config: Config,
                 osdmap: Callable[[], OSDMap], wait_epoch: Callable[[int], Awaitable[None]],
                 own_ticket: Callable[[], Awaitable[str]]) -> None:
        self.id = osd_id
        self.store = store
        self.config = config
        self._osdmap = osdmap
        self._wait_epoch = wait_epoch
        self.registry = PgRegistry(store)
        self.peers = PeerChannels(config, osdmap, own_ticket)
        self.recovery = Recovery(osd_id, self.registry, self.peers, config, osdmap)
        self.scrubber = Scrubber(self.recovery)
        self.peer_space: dict[int, tuple[int, int]] = {}  # from heartbeats: (free, reserve)
        self.max_read = max(4096, config.rpc_max_message_size - ENVELOPE)

    def on_map(self, osdmap: OSDMap) -> None:
        self.recovery.on_map(osdmap)

    async def close(self) -> None:
        await self.recovery.close()
        await self.peers.close()

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

    async def _active(self, coll: str, time_left: float | None) -> PgPrimary | str:
        """The PG's primary state once active, or why it is not (for an INACTIVE answer, given
        before the caller's deadline so that the caller learns why)."""
        prim = self.recovery.primary(coll)
        if prim is None:
            return f"osd.{self.id} has not started peering {coll}"
        if not prim.active.is_set():
            wait = ACTIVE_WAIT if time_left is None else min(ACTIVE_WAIT, time_left * 0.8)
            try:
                await asyncio.wait_for(prim.active.wait(), max(0.0, wait))
            except TimeoutError:
                return f"PG {coll} is {prim.state()}{': ' + prim.why if prim.why else ''}"
        return prim

    def _inactive(self, why: str) -> osd_pb2.OpReply:
        return osd_pb2.OpReply(status=osd_pb2.OpReply.INACTIVE, epoch=self._osdmap().epoch,
                               message=why)

    # --- sessions: Op and RepOp frames over one stream per peer (rados_py/session.py) -------
    async def Session(self, requests: Any, context: Any) -> None:
        await session_mod.serve(requests, context, self._dispatch, f"osd.{self.id}")

    def _dispatch(self, frame: osd_pb2.Frame, replier: session_mod.Replier
                  ) -> Awaitable[None] | None:
        kind = frame.WhichOneof("body")
        if kind == "op":
            replier.spawn(self._serve_op(frame.tid, frame.op, frame.timeout_ms / 1000 or None,
                                         replier))
        elif kind == "rep_op":
            if replier.ticket is not None:
                try:
                    auth.authorize(replier.ticket, "osd", "*")  # as the RepOp method needs
                except LoligoError as exc:
                    replier.fail(frame.tid, exc)
                    return None
            return self._rep_op_frame(frame.tid, frame.rep_op, replier)
        else:
            replier.fail(frame.tid, InvalidArgument(f"osd.{self.id}: a session carries op and "
                                                    f"rep_op requests, not {kind}"))
        return None

    async def _serve_op(self, tid: int, request: osd_pb2.OpRequest, time_left: float | None,
                        replier: session_mod.Replier) -> None:
        try:
            reply = await self.handle_op(request, time_left)
        except Exception as exc:
            replier.fail(tid, exc)
        else:
            replier.send(tid, session_mod.OP_REPLY, reply.SerializeToString())

    # --- client ops ----------------------------------------------------------------------
    async def Op(self, request: osd_pb2.OpRequest, context: Any) -> osd_pb2.OpReply:
        return await self.handle_op(request, context.time_remaining())

    async def handle_op(self, request: osd_pb2.OpRequest, time_left: float | None
                        ) -> osd_pb2.OpReply:
        """One client request (from a session, or a unary `Op` call); `time_left`: how long
        the client waits for the answer (None: unknown)."""
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
        prim = await self._active(coll, time_left)
        if isinstance(prim, str):
            return self._inactive(prim)
        async with prim.objects.hold(oid, exclusive=write):
            if prim.closed.is_set() or self.recovery.primary(coll) is not prim:
                return self._inactive(f"PG {coll} changed interval; peering again")
            try:
                await self.recovery.ensure(prim, oid, everywhere=write)
            except Unfound as exc:
                return osd_pb2.OpReply(status=osd_pb2.OpReply.FAILED, errno=errno.EIO,
                                       message=str(exc), epoch=epoch)
            except (LoligoError, grpc.aio.AioRpcError) as exc:
                return self._inactive(f"PG {coll}: recovering {request.name!r} first: {exc}")
            pg = await self.registry.get(coll)
            if write:
                seen = pg.dedup.get(request.client, request.tid)
                if seen is not None:
                    reply = osd_pb2.OpReply.FromString(seen)
                    reply.replayed, reply.epoch = True, epoch
                    return reply
            try:
                outcome = await self._execute(prim, coll, oid, request)
            except ops_mod.OpFailed as exc:
                reply = osd_pb2.OpReply(status=osd_pb2.OpReply.FAILED, errno=exc.errno,
                                        failed_op=exc.index, message=str(exc), epoch=epoch)
                if write:
                    pg.dedup.put(request.client, request.tid, reply.SerializeToString())
                return reply
            if not outcome.store_ops:
                return osd_pb2.OpReply(status=osd_pb2.OpReply.OK, epoch=epoch,
                                       version=outcome.version_before, results=outcome.results)
            full = await self._would_not_fit(outcome.store_ops, decision.placement.acting)
            if full:
                return osd_pb2.OpReply(status=osd_pb2.OpReply.FAILED, errno=errno.ENOSPC,
                                       message=full, epoch=epoch)
            if prim.closed.is_set() or not self.registry.loaded(coll):
                return self._inactive(f"PG {coll} changed interval; peering again")
            # from here to the sends, nothing awaits: the log position taken now is the order
            # in which the write enters this store and every replica's stream
            pg = self.registry.state(coll)
            seq, version = pg.next_version(epoch)
            entry = osd_pb2.PgLogEntry(version=version, oid=oid, client=request.client,
                                       tid=request.tid, removed=not outcome.exists_after)
            rep = osd_pb2.RepOpRequest(epoch=epoch, pgid=coll, seq=seq, entry=entry, oid=oid,
                                       ops=outcome.store_ops, from_osd=self.id,
                                       interval=prim.interval())
            return await self._replicate_write(prim, decision, rep, outcome, request, epoch)

    async def _would_not_fit(self, store_ops: list[osd_pb2.StoreOp], acting: list[int]) -> str:
        """Why a write cannot fit on some member (its free space less its reserve), or "":
        refused up front, the write is applied nowhere and the client gets ENOSPC. Peers'
        space comes from their heartbeat replies; one that looks full is asked again now, so
        space freed since its last heartbeat counts."""
        size = sum(len(op.data) + sum(len(p.key) + len(p.value) for p in op.pairs)
                   for op in store_ops)
        if not size:
            return ""
        for osd in acting:
            space = self.store.space() if osd == self.id else self.peer_space.get(osd)
            if space is not None and size > space[0] - space[1] and osd != self.id:
                space = await self._ask_space(osd)
            if space is not None and size > space[0] - space[1]:
                return (f"osd.{osd} is full: {max(space[0], 0)} bytes free, {space[1]} kept "
                        f"in reserve, the write needs {size}; remove objects or add capacity")
        return ""

    async def _ask_space(self, osd: int) -> tuple[int, int] | None:
        try:
            _, stub = self.peers.peer(osd)
            reply = await stub.Ping(osd_pb2.PingRequest(from_osd=self.id,
                                                        epoch=self._osdmap().epoch),
                                    timeout=self.config.rpc_timeout)
        except (LoligoError, grpc.aio.AioRpcError):
            return None  # unreachable: the write will tell
        if not reply.has_space:
            return None
        self.peer_space[osd] = (reply.free_bytes, reply.reserve_bytes)
        return self.peer_space[osd]

    async def _execute(self, prim: PgPrimary, coll: str, oid: bytes,
                       request: osd_pb2.OpRequest) -> ops_mod.Outcome:
        """Run the request; if this OSD's copy fails its checksum, take the object from a
        replica (it is then marked inconsistent for scrub to report) and run it again."""
        try:
            return await ops_mod.execute(self.store, coll, oid, list(request.ops),
                                         self.max_read)
        except ops_mod.OpFailed as exc:
            if exc.errno != errno.EIO or len(prim.acting) < 2:
                raise
            try:
                version = (await self.store.stat(coll, oid)).version
            except LoligoError:
                raise exc from None
            log.warning("osd.%d: %r in %s fails its checksum here: recovering it from a "
                        "replica", self.id, request.name, coll)
            prim.inconsistent[oid] = f"osd.{self.id} data failed its checksum on read"
            prim.missing.setdefault(self.id, {})[oid] = version
            try:
                await self.recovery.recover_object(prim, oid)
            except (LoligoError, grpc.aio.AioRpcError) as again:
                log.error("osd.%d: no good copy of %r in %s: %s", self.id, request.name, coll,
                          again)
                raise exc from None
            return await ops_mod.execute(self.store, coll, oid, list(request.ops),
                                         self.max_read)

    async def _replicate_write(self, prim: PgPrimary, decision: RouteDecision,
                               rep: osd_pb2.RepOpRequest, outcome: ops_mod.Outcome,
                               request: osd_pb2.OpRequest, epoch: int) -> osd_pb2.OpReply:
        """Queue `rep` here and send it to every replica, at once and in log order; answer
        the client when every member has it durable."""
        try:
            local = self.registry.start_write(rep)
        except InvalidArgument as exc:  # the write itself is bad (an offset past the limit)
            return osd_pb2.OpReply(status=osd_pb2.OpReply.FAILED, errno=errno.EINVAL,
                                   message=f"osd.{self.id}: {exc}", epoch=epoch)
        except LoligoError as exc:  # refused here, sent nowhere: nothing applied anywhere
            if not prim.closed.is_set():
                self.recovery.repeer(prim.coll)
            return self._inactive(f"PG {prim.coll}: {exc}; resend")
        encoded = rep.SerializeToString() if decision.replicas else b""
        sends = [self._send_rep_op(osd, encoded) for osd in decision.replicas]
        if not await _settled([local, *sends], prim.closed_future):
            # a new interval: peering decides what became of this write
            for fut in (local, *sends):
                fut.add_done_callback(_consume)
            return self._inactive(f"PG {prim.coll} changed interval during the write; resend")
        results: list[Any] = [_outcome(local)]
        for osd, fut in zip(decision.replicas, sends, strict=True):
            result = _outcome(fut)
            if isinstance(result, rpc.Unavailable):  # the stream broke: send it again
                try:
                    await self._replicate(osd, encoded)
                    result = None
                except (LoligoError, grpc.aio.AioRpcError) as exc:
                    result = exc
            results.append(result)
        failures = [r for r in results if isinstance(r, BaseException)]
        if not failures:
            reply = osd_pb2.OpReply(status=osd_pb2.OpReply.OK, epoch=epoch,
                                    version=rep.entry.version, results=outcome.results)
            (await self.registry.get(prim.coll)).dedup.put(request.client, request.tid,
                                                           reply.SerializeToString())
            return reply
        why = "; ".join(str(f) for f in failures)
        for failure in failures:
            if not isinstance(failure, LoligoError | grpc.aio.AioRpcError):
                log.error("write to %s failed", prim.coll, exc_info=failure)
        log.warning("write %s/%s to %s not applied on every member (%s): peering again",
                    request.client, request.tid, prim.coll, why)
        self.recovery.repeer(prim.coll)
        local_result = results[0]
        if isinstance(local_result, BaseException) and len(failures) == len(results):
            # applied nowhere: a plain failure the client may see (ENOSPC...)
            return osd_pb2.OpReply(status=osd_pb2.OpReply.FAILED,
                                   errno=ops_mod.errno_of(local_result),
                                   message=f"osd.{self.id}: {local_result}", epoch=epoch)
        return osd_pb2.OpReply(status=osd_pb2.OpReply.REPLICA_FAILED, epoch=epoch,
                               message=f"{prim.coll}: not every member applied the write "
                               f"({why}); resend it", version=rep.entry.version)

    def _send_rep_op(self, osd: int, encoded: bytes) -> asyncio.Future[Any]:
        """Queue a RepOp to a replica now (held back osd_debug_replicate_delay, in order)."""
        loop = asyncio.get_running_loop()
        delay = self.config.osd_debug_replicate_delay
        if not delay:
            return self._rep_op_now(osd, encoded)
        out: asyncio.Future[Any] = loop.create_future()

        def later() -> None:
            sent = self._rep_op_now(osd, encoded)
            sent.add_done_callback(lambda f: out.done() or (
                out.set_exception(f.exception()) if f.exception() else out.set_result(None)))
        loop.call_later(delay, later)
        return out

    def _rep_op_now(self, osd: int, encoded: bytes) -> asyncio.Future[Any]:
        try:
            _, session = self.peers.session(osd)
        except LoligoError as exc:
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed
        return session.send(session_mod.REP_OP, encoded, self.config.rpc_timeout)

    async def _replicate(self, osd: int, encoded: bytes) -> None:
        """Send a serialised RepOpRequest to one replica until it confirms (or time is up):
        a resend after a broken stream is safe, the replica knows the write by its client
        and tid."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.rpc_timeout
        pause = self.config.rpc_retry_initial
        while True:
            _, session = self.peers.session(osd)
            try:
                await session.call(session_mod.REP_OP, encoded,
                                   max(0.001, deadline - loop.time()))
                return
            except rpc.Unavailable:
                if loop.time() + pause >= deadline:
                    raise
            await asyncio.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * self.config.rpc_retry_backoff, self.config.rpc_retry_max)

    # --- replica side --------------------------------------------------------------------
    async def RepOp(self, request: osd_pb2.RepOpRequest, context: Any) -> osd_pb2.RepOpReply:
        """A replicated write as a unary call (sessions carry them as frames instead)."""
        waiting = self._start_rep_op(request)
        while not isinstance(waiting, asyncio.Future):
            await waiting
            waiting = self._start_rep_op(request)
        applied = await waiting
        return osd_pb2.RepOpReply(epoch=self._osdmap().epoch, applied=applied)

    def _start_rep_op(self, request: osd_pb2.RepOpRequest
                      ) -> asyncio.Future[bool] | Awaitable[None]:
        """Queue a replicated write now (its future: durable), or what must be awaited first
        (a newer map, the PG's state loaded) before trying again. Raises when refused."""
        osdmap = self._osdmap()
        if request.epoch > osdmap.epoch:
            return self._wait_epoch(request.epoch)
        if request.epoch < osdmap.epoch:
            placement = osdmap.pg_to_up_acting(PgId.parse(request.pgid))
            if placement.acting_primary != request.from_osd or self.id not in placement.acting:
                raise StaleEpoch(f"osd.{self.id} at epoch {osdmap.epoch}: osd."
                                 f"{request.from_osd} is no longer primary of {request.pgid}")
        if not self.registry.loaded(request.pgid):
            return self.registry.load(request.pgid)
        return self.registry.start_write(request)

    def _rep_op_frame(self, tid: int, request: osd_pb2.RepOpRequest,
                      replier: session_mod.Replier) -> Awaitable[None] | None:
        """A RepOp frame: queued before the next frame of the stream is looked at (frames of
        one primary arrive in log order and enter the store in that order)."""
        try:
            waiting = self._start_rep_op(request)
        except Exception as exc:
            replier.fail(tid, exc)
            return None
        if isinstance(waiting, asyncio.Future):
            replier.spawn(self._answer_rep_op(tid, waiting, replier))
            return None

        async def first() -> None:  # holds the stream's next frames until this one is queued
            try:
                await waiting
            except Exception as exc:
                replier.fail(tid, exc)
                return
            again = self._rep_op_frame(tid, request, replier)
            if again is not None:
                await again
        return first()

    async def _answer_rep_op(self, tid: int, durable: asyncio.Future[bool],
                             replier: session_mod.Replier) -> None:
        try:
            applied = await durable
        except Exception as exc:
            replier.fail(tid, exc)
        else:
            replier.send(tid, session_mod.REP_OP_REPLY, osd_pb2.RepOpReply(
                epoch=self._osdmap().epoch, applied=applied).SerializeToString())

    # --- listing and dumps ---------------------------------------------------------------
    async def List(self, request: osd_pb2.ListRequest, context: Any) -> osd_pb2.ListReply:
        """One page of a PG's objects as its history has them: this OSD's store, corrected by
        its own missing set (objects still to recover are listed, objects to delete are not)."""
        decision = await self._route(request, b"", b"", False)
        epoch = self._osdmap().epoch
        if decision.route is not Route.SERVE:
            return osd_pb2.ListReply(status=_STATUS[decision.route], epoch=epoch,
                                     message=decision.message)
        assert decision.pgid is not None
        coll = coll_for(decision.pgid)
        prim = await self._active(coll, context.time_remaining())
        if isinstance(prim, str):
            return osd_pb2.ListReply(status=osd_pb2.OpReply.INACTIVE, epoch=epoch, message=prim)
        reply = osd_pb2.ListReply(status=osd_pb2.OpReply.OK, epoch=epoch)
        after, limit = request.after or b"", min(request.max or 1000, 10000)
        missing = dict(prim.missing.get(self.id, {}))
        try:
            names, more = await self.store.list_objects(coll, after, limit)
        except NotFound:
            names, more = [], False
        present = {n for n in names if not pgmeta.is_pgmeta(n)}
        present |= {o for o, need in missing.items() if need != 0 and o > after}
        present -= {o for o, need in missing.items() if need == 0}
        ordered = sorted(present)
        if more and names:  # names past the store's page wait for the next one
            ordered = [o for o in ordered if o <= names[-1]]
        page = ordered[:limit]
        for oid in page:
            nspace, name = split_oid(oid)
            if request.all_namespaces or nspace == request.nspace:
                reply.entries.add(name=name, nspace=nspace)
        if page and (more or len(ordered) > limit):
            reply.next = page[-1]
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
                if pgmeta.is_pgmeta(oid):
                    continue
                st = await self.store.stat(coll, oid)
                digest = xxhash.xxh3_64_digest(await self.store.read(coll, oid))
                reply.objects.add(oid=oid, size=st.size, version=st.version, digest=digest)
            if not more or not names:
                break
            after = names[-1]
        reply.last_seq = (await self.registry.get(coll)).last_seq
        return reply


    async def Scrub(self, request: osd_pb2.ScrubRequest, context: Any) -> osd_pb2.ScrubReply:
        """Admin: scrub one PG this OSD leads, now; answered when done."""
        coll = checked_coll(request.pgid)
        prim = self.recovery.primary(coll)
        if prim is None:
            placement = self._osdmap().pg_to_up_acting(PgId.parse(coll))
            raise InvalidArgument(f"osd.{self.id} is not the primary of {coll}: ask osd."
                                  f"{placement.acting_primary}")
        result = await self.scrubber.scrub(prim, request.deep or request.repair,
                                           request.repair)
        reply = osd_pb2.ScrubReply(pgid=coll, primary=self.id, objects=result.objects,
                                   repaired=result.repaired, state=prim.state())
        for f in result.findings:
            reply.inconsistent.add(oid=f.oid, osds=f.bad, auth=f.auth, why=f.why)
        return reply


    async def Perf(self, request: osd_pb2.PerfRequest, context: Any) -> osd_pb2.PerfReply:
        """Admin: this OSD's counters (sessions, store), for benchmarks and debugging."""
        reply = osd_pb2.PerfReply()
        reply.counters.update(session_mod.COUNTERS)
        for key, value in getattr(self.store, "stats", {}).items():
            reply.counters[f"store_{key}"] = value
        return reply

    async def ConfigSet(self, request: osd_pb2.ConfigSetRequest, context: Any
                        ) -> osd_pb2.ConfigSetReply:
        """Admin: change an option that takes effect at once (`loligo tell osd.N config set`)."""
        if request.key not in LIVE_OPTIONS:
            live = ", ".join(sorted(LIVE_OPTIONS))
            raise InvalidArgument(f"{request.key} cannot change while the OSD runs (set it in "
                                  f"the config file and restart it); these can: {live}")
        try:
            value = SCHEMA[request.key].parse(request.value, from_env=True)
        except ValueError as exc:
            raise InvalidArgument(f"{request.key}: {exc}") from None
        old = getattr(self.config, request.key)
        self.config = self.config.replace(**{request.key: value})
        self.recovery.set_config(self.config)
        self.scrubber.config = self.config
        log.info("osd.%d: %s = %s (was %s)", self.id, request.key, value, old)
        return osd_pb2.ConfigSetReply(key=request.key, value=str(value), old=str(old))
