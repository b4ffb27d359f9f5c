"""The OSD's gRPC servicers: client ops (as primary), replica ops, listings, dumps (`Osd`); the
peer side of peering and recovery is osd/peer_service.py.

Primary-copy replication, pipelined per PG and ordered per object (Ceph's), as the PG's state
machine (osd/pg_machine.py, hosted by osd/pg_host.py) decides it: an op on an object holds it
- a write exclusively, from its check against the object's state until every acting member has
it durable; a read shared, behind any write that came first - so ops on one object run in
arrival order and a read returns the old or the new content, never a
write that could still be rolled back. Ops on different objects of a PG run concurrently: a
write takes the next PG-log position and is queued in the local store and sent to every replica
at that moment, without awaiting anything in between, so every member receives the PG's writes
in log order (one ordered session stream per primary-replica pair) and queues them in that
order; the next write goes out while earlier ones are still being made durable. The client is
answered once every member has the write durable.

Ops are served only once the PG is active in the current interval; until then the client is
told INACTIVE and retries. An op on an object that some acting member still lacks recovers that
object first.

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
import contextlib
import errno
import logging
import time
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
from osd.pg_events import Executed
from osd.pg_host import PgHost
from osd.pgs import PgStore
from osd.scrub import Scrubber
from osd.throttle import Admission
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
# options an OSD applies while it runs (`loligo tell osd.N config set KEY VALUE`)
LIVE_OPTIONS = frozenset({"osd_recovery_max_active", "osd_recovery_max_bytes_per_sec",
                          "osd_recovery_chunk_size", "osd_scrub_interval",
                          "osd_deep_scrub_interval", "osd_scrub_auto_repair",
                          "osd_client_message_cap", "osd_client_message_size_cap",
                          "osd_debug_replicate_delay"})


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
        self.pgs = PgStore(store)
        self.peers = PeerChannels(config, osdmap, own_ticket)
        self.host = PgHost(osd_id, self.pgs, self.peers, config, osdmap, self._execute)
        self.scrubber = Scrubber(self.host, config)
        self.peer_space: dict[int, tuple[int, int]] = {}  # from heartbeats: (free, reserve)
        self.max_read = max(4096, config.rpc_max_message_size - ENVELOPE)
        # client ops in flight, by count and bytes: past either, sessions are not read on
        self.admission = Admission(config.osd_client_message_cap,
                                   config.osd_client_message_size_cap)
        # (method, request, reply or None, seconds) of each session op: the daemon's metrics
        # (a unary Op is seen by the server's interceptor)
        self.observe_op: Callable[[str, Any, Any, float], None] | None = None

    async def start(self) -> None:
        """Load the PGs the store holds (before the first map)."""
        await self.host.start()

    def on_map(self, osdmap: OSDMap) -> None:
        self.host.on_map(osdmap)

    async def close(self) -> None:
        await self.host.close()
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
            cost = frame.op.ByteSize()
            serve = self._serve_op(frame.tid, frame.op, frame.timeout_ms / 1000 or None, cost,
                                   replier)
            if self.admission.try_take(cost):
                replier.spawn(serve)
                return None

            async def admitted() -> None:  # the stream is not read further meanwhile
                await self.admission.take(cost)
                replier.spawn(serve)
            return admitted()
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
                        cost: int, replier: session_mod.Replier) -> None:
        start = time.perf_counter()
        reply = None
        try:
            reply = await self.handle_op(request, time_left)
        except Exception as exc:
            replier.fail(tid, exc)
        else:
            replier.send(tid, session_mod.OP_REPLY, reply.SerializeToString())
        finally:
            self.admission.give(cost)
            if self.observe_op is not None:
                with contextlib.suppress(Exception):  # metrics never fail a request
                    self.observe_op("Osd.Op", request, reply, time.perf_counter() - start)

    # --- client ops ----------------------------------------------------------------------
    async def Op(self, request: osd_pb2.OpRequest, context: Any) -> osd_pb2.OpReply:
        cost = request.ByteSize()
        await self.admission.take(cost)
        try:
            return await self.handle_op(request, context.time_remaining())
        finally:
            self.admission.give(cost)

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
        reply = await self.host.client_op(coll, oid, request, write, time_left)
        if not reply.epoch:
            reply.epoch = epoch
        return reply

    async def _would_not_fit(self, store_ops: list[osd_pb2.StoreOp], acting: list[int]) -> str:
        """Why a write cannot fit on some member (its free space less its reserve), or "":
        refused up front, the write is applied nowhere and the client gets ENOSPC. Peers'
        space comes from their heartbeat replies; one that looks full is asked again now, so
        space freed since its last heartbeat counts."""
        size = sum(op.ByteSize() for op in store_ops)  # the data's size, without copying it
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

    async def _execute(self, coll: str, oid: bytes, request: osd_pb2.OpRequest) -> Executed:
        """Run a client request against the object as it is now (the PG holds it): its
        resolved store ops, or the errno it fails with. A copy here that fails its checksum is
        reported as such (the PG recovers it from a replica and runs the request again)."""
        try:
            outcome = await ops_mod.execute(self.store, coll, oid, list(request.ops),
                                            self.max_read)
        except ops_mod.OpFailed as exc:
            bad_copy, version = False, 0
            if exc.errno == errno.EIO:
                try:
                    version = (await self.store.stat(coll, oid)).version
                    bad_copy = True
                except LoligoError:
                    pass
            return Executed(0, errno=exc.errno, failed_op=exc.index, message=str(exc),
                            checksum_error=bad_copy, version_before=version)
        if outcome.store_ops:
            prim = self.host.primary(coll)
            full = await self._would_not_fit(outcome.store_ops,
                                             list(prim.acting) if prim else [self.id])
            if full:
                return Executed(0, errno=errno.ENOSPC, message=full)
        return Executed(0, tuple(outcome.store_ops), tuple(outcome.results),
                        outcome.exists_after, outcome.version_before)

    # --- replica side --------------------------------------------------------------------
    async def RepOp(self, request: osd_pb2.RepOpRequest, context: Any) -> osd_pb2.RepOpReply:
        """A replicated write as a unary call (sessions carry them as frames instead)."""
        waiting = self._start_rep_op(request)
        while not isinstance(waiting, asyncio.Future):
            await waiting
            waiting = self._start_rep_op(request)
        reply = await waiting
        return osd_pb2.RepOpReply(epoch=self._osdmap().epoch, applied=reply.applied)

    def _start_rep_op(self, request: osd_pb2.RepOpRequest
                      ) -> asyncio.Future[Any] | Awaitable[None]:
        """Hand a replicated write to the PG now (its future: the answer once durable), or
        what must be awaited first (a newer map) before trying again. Raises when refused."""
        osdmap = self._osdmap()
        if request.epoch > osdmap.epoch:
            return self._wait_epoch(request.epoch)
        if request.epoch < osdmap.epoch:
            placement = osdmap.pg_to_up_acting(PgId.parse(request.pgid))
            if placement.acting_primary != request.from_osd or self.id not in placement.acting:
                raise StaleEpoch(f"osd.{self.id} at epoch {osdmap.epoch}: osd."
                                 f"{request.from_osd} is no longer primary of {request.pgid}")
        return self.host.request_now(checked_coll(request.pgid), request.from_osd, request)

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

    async def _answer_rep_op(self, tid: int, durable: asyncio.Future[Any],
                             replier: session_mod.Replier) -> None:
        try:
            reply = await durable
        except Exception as exc:
            replier.fail(tid, exc)
        else:
            replier.send(tid, session_mod.REP_OP_REPLY, osd_pb2.RepOpReply(
                epoch=self._osdmap().epoch, applied=reply.applied).SerializeToString())

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
        prim = self.host.primary(coll)
        if prim is None or not prim.active:
            state = "not led here" if prim is None else prim.state()
            return osd_pb2.ListReply(status=osd_pb2.OpReply.INACTIVE, epoch=epoch,
                                     message=f"PG {coll} is {state}")
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
        machine = self.host.machines.get(coll)
        reply.last_seq = machine.member.last_seq if machine is not None else 0
        return reply


    async def Scrub(self, request: osd_pb2.ScrubRequest, context: Any) -> osd_pb2.ScrubReply:
        """Admin: scrub one PG this OSD leads, now; answered when done."""
        coll = checked_coll(request.pgid)
        if self.host.primary(coll) is None:
            placement = self._osdmap().pg_to_up_acting(PgId.parse(coll))
            raise InvalidArgument(f"osd.{self.id} is not the primary of {coll}: ask osd."
                                  f"{placement.acting_primary}")
        result = await self.scrubber.scrub(coll, request.deep or request.repair,
                                           request.repair)
        prim = self.host.primary(coll)
        reply = osd_pb2.ScrubReply(pgid=coll, primary=self.id, objects=result.objects,
                                   repaired=result.repaired,
                                   state=prim.state() if prim is not None else "")
        for f in result.findings:
            reply.inconsistent.add(oid=f.oid, osds=f.bad, auth=f.auth, why=f.why)
        return reply


    async def Perf(self, request: osd_pb2.PerfRequest, context: Any) -> osd_pb2.PerfReply:
        """Admin: this OSD's counters (sessions, store), for benchmarks and debugging."""
        reply = osd_pb2.PerfReply()
        reply.counters.update(session_mod.COUNTERS)
        reply.counters["ops_waited_for_admission"] = self.admission.waited
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
        self.host.set_config(self.config)
        self.scrubber.config = self.config
        self.admission.max_ops = self.config.osd_client_message_cap
        self.admission.max_bytes = self.config.osd_client_message_size_cap
        log.info("osd.%d: %s = %s (was %s)", self.id, request.key, value, old)
        return osd_pb2.ConfigSetReply(key=request.key, value=str(value), old=str(old))
