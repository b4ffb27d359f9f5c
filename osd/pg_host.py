"""The host of one OSD's PG state machines (osd/pg_machine.py): it feeds each machine its events
(maps, peers' requests and answers, client ops, store results, timers) and carries out the
effects it returns, in order, with the store (osd/pgs.py), the peers (sessions for RepOps,
unary calls for the rest) and the client's op executor.

Order matters in two places and nothing here awaits between the effects of one step: a
replicated write is queued in this store and in each replica's session in the order the
machine asked (log order), and a replica queues the writes of one session in arrival order.
Everything else may run as a task (reads, copies, pushes), since the machine holds the object
or the range concerned until it is told the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from osd import ops as ops_mod
from osd.peers import PeerChannels
from osd.pg import coll_for, split_oid
from osd.pg_events import (
    ClientOp,
    Effect,
    Event,
    Execute,
    Executed,
    Info,
    MapChange,
    MapView,
    OsdLife,
    Persist,
    Persisted,
    Receive,
    Recover,
    Recovered,
    ReplyOp,
    Respond,
    Response,
    ScrubDone,
    ScrubRange,
    ScrubRangeDone,
    ScrubRequest,
    Send,
    ServeRead,
    StartTimer,
    TimerFired,
)
from osd.pg_machine import MachineConfig, PgMachine, Primary
from osd.pg_member import MemberState
from osd.pgs import PgStore
from osd.throttle import TokenBucket
from rados_py import rpc
from rados_py import session as session_mod
from rados_py.config import Config
from rados_py.errors import InvalidArgument, LoligoError, NotFound
from rados_py.osdmap import OSDMap, PgId
from rados_py.proto.loligo import mon_pb2, osd_pb2

__all__ = ["PgHost", "ScrubResult"]

log = logging.getLogger(__name__)
ACTIVE_WAIT = 2.0   # how long an op waits for its PG to become active before INACTIVE
SCRUB_CHUNK = 100   # objects compared per scrub range
MAX_NAMED = 20      # inconsistent object names a PG reports to the monitors
STATS_EVERY = 5.0   # seconds between re-reads of a PG's object count and bytes for stats
R = osd_pb2.OpReply

Executor = Callable[[str, bytes, osd_pb2.OpRequest], Awaitable[Executed]]


@dataclass
class ScrubResult:
    objects: int = 0
    findings: list[Any] = field(default_factory=list)
    repaired: int = 0


class PgHost:
    """Every PG machine of one OSD."""

    def __init__(self, osd_id: int, pgs: PgStore, peers: PeerChannels, config: Config,
                 osdmap: Callable[[], OSDMap], execute: Executor) -> None:
        self.id = osd_id
        self.pgs = pgs
        self.store = pgs.store
        self.peers = peers
        self.config = config
        self._osdmap = osdmap
        self._execute = execute
        self.machines: dict[str, PgMachine] = {}
        self._ids = itertools.count(1)
        self._inbound: dict[int, asyncio.Future[Any]] = {}
        self._ops: dict[int, tuple[asyncio.Future[osd_pb2.OpReply], str, bytes,
                                   osd_pb2.OpRequest]] = {}
        self._scrubs: dict[int, asyncio.Future[ScrubResult]] = {}
        self._active: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._acting: dict[str, tuple[int, ...]] = {}
        self._slots = asyncio.Semaphore(config.osd_recovery_max_active)
        self.bucket = TokenBucket(config.osd_recovery_max_bytes_per_sec)
        self._stats_cache: dict[str, tuple[float, int, int]] = {}
        self._closed = False

    def _machine_config(self) -> MachineConfig:
        c = self.config
        return MachineConfig(recovery_max_active=c.osd_recovery_max_active,
                             peering_retry=c.osd_peering_retry, recovery_retry=c.osd_peering_retry)

    async def start(self) -> None:
        """Load the state of every PG this store holds."""
        for coll in sorted(await self.pgs.collections()):
            self.machines[coll] = PgMachine(self.id, coll, await self.pgs.load(coll),
                                            self._machine_config())

    def machine(self, coll: str) -> PgMachine:
        m = self.machines.get(coll)
        if m is None:  # a PG this store holds nothing of yet
            m = self.machines[coll] = PgMachine(self.id, coll, MemberState(),
                                                self._machine_config())
        return m

    def primary(self, coll: str) -> Primary | None:
        m = self.machines.get(coll)
        return m.primary if m is not None else None

    @property
    def primaries(self) -> dict[str, Primary]:
        return {c: m.primary for c, m in self.machines.items() if m.primary is not None}

    def set_config(self, config: Config) -> None:
        """New throttles at run time (recoveries in flight finish under the old ones)."""
        if config.osd_recovery_max_active != self.config.osd_recovery_max_active:
            self._slots = asyncio.Semaphore(config.osd_recovery_max_active)
        self.bucket.rate = config.osd_recovery_max_bytes_per_sec
        self.config = config
        for m in self.machines.values():
            m.config = self._machine_config()

    async def close(self) -> None:
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for fut, *_ in self._ops.values():
            if not fut.done():
                fut.set_result(R(status=R.INACTIVE, message=f"osd.{self.id} is stopping"))
        for waiting in [*self._inbound.values(), *self._scrubs.values()]:
            if not waiting.done():
                waiting.set_exception(rpc.Unavailable(f"osd.{self.id} is stopping"))

    # --- stepping ------------------------------------------------------------------------------
    def step(self, coll: str, event: Event) -> None:
        if self._closed:
            return
        m = self.machine(coll)
        for effect in m.step(event):
            self._carry_out(coll, effect)
        prim = m.primary
        if prim is not None and prim.active:
            active = self._active.get(coll)
            if active is not None:
                active.set()

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _carry_out(self, coll: str, e: Effect) -> None:
        if isinstance(e, Persist):
            self._persist(coll, e)
        elif isinstance(e, Send):
            self._send(coll, e)
        elif isinstance(e, Respond):
            fut = self._inbound.pop(e.rid, None)
            if fut is not None and not fut.done():
                if e.error is None:
                    fut.set_result(e.msg)
                else:
                    fut.set_exception(rpc.error_from_reply(*e.error))
        elif isinstance(e, ReplyOp):
            entry = self._ops.pop(e.op, None)
            if entry is not None and not entry[0].done():
                entry[0].set_result(e.reply)
        elif isinstance(e, Execute):
            self._spawn(self._run_op(coll, e.op))
        elif isinstance(e, ServeRead):
            self._spawn(self._serve_read(e))
        elif isinstance(e, Recover):
            self._spawn(self._recover(coll, e))
        elif isinstance(e, ScrubRange):
            self._spawn(self._scrub_range(coll, e))
        elif isinstance(e, ScrubDone):
            fut = self._scrubs.pop(e.sid, None)
            if fut is not None and not fut.done():
                if e.error:
                    fut.set_exception(InvalidArgument(e.error))
                else:
                    fut.set_result(ScrubResult(e.objects, list(e.findings), e.repaired))
        elif isinstance(e, StartTimer):
            handle = asyncio.get_running_loop().call_later(
                e.delay, lambda: self._timers.discard(handle) or self.step(
                    coll, TimerFired(e.key)))
            self._timers.add(handle)
        elif isinstance(e, Info):
            (log.warning if e.warning else log.info)("%s", e.text)

    # --- maps ------------------------------------------------------------------------------
    def on_map(self, osdmap: OSDMap) -> None:
        """Tell every PG this OSD takes part in (or holds a copy of) about the map."""
        lives = {o: OsdLife(s.up, s.up_from, s.down_at) for o, s in osdmap.osds.items()}
        acting_now: dict[str, tuple[int, ...]] = {}
        for pool in osdmap.pools.values():
            for seed, placement in enumerate(osdmap.map_pool(pool.id)):
                pgid = PgId(pool.id, seed)
                coll = coll_for(pgid)
                acting_now[coll] = tuple(placement.acting)
                if (self.id not in placement.acting and self.id not in placement.up
                        and coll not in self.machines):
                    continue
                view = MapView(osdmap.epoch, tuple(placement.acting), tuple(placement.up),
                               tuple(osdmap.pg_to_raw_osds(pgid)), pool.size, pool.min_size,
                               pool.created, lives)
                self.step(coll, MapChange(view))
        self._acting = acting_now
        for coll in [c for c in self._active if self.primary(c) is None]:
            del self._active[coll]

    def pg_peers(self) -> set[int]:
        """OSDs sharing at least one PG with this one (heartbeat peers)."""
        out: set[int] = set()
        for acting in self._acting.values():
            if self.id in acting:
                out.update(acting)
        out.discard(self.id)
        return out

    # --- client ops ------------------------------------------------------------------------------
    async def client_op(self, coll: str, oid: bytes, request: osd_pb2.OpRequest, write: bool,
                        time_left: float | None) -> osd_pb2.OpReply:
        m = self.machines.get(coll)
        if m is None or m.primary is None:
            return R(status=R.INACTIVE, message=f"osd.{self.id} has not started peering {coll}")
        if not m.primary.active:
            wait = ACTIVE_WAIT if time_left is None else min(ACTIVE_WAIT, time_left * 0.8)
            event = self._active.setdefault(coll, asyncio.Event())
            if m.primary.active:
                event.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), max(0.0, wait))
            self._active.pop(coll, None)
            prim = m.primary
            if prim is None or not prim.active:
                state = "not led here" if prim is None else prim.state()
                why = f": {prim.why}" if prim is not None and prim.why else ""
                return R(status=R.INACTIVE, message=f"PG {coll} is {state}{why}")
        op = next(self._ids)
        fut: asyncio.Future[osd_pb2.OpReply] = asyncio.get_running_loop().create_future()
        self._ops[op] = (fut, coll, oid, request)
        self.step(coll, ClientOp(op, oid, write, request.client, request.tid))
        return await fut

    async def _run_op(self, coll: str, op: int) -> None:
        entry = self._ops.get(op)
        if entry is None:
            return
        _, _, oid, request = entry
        try:
            executed = await self._execute(coll, oid, request)
        except Exception as exc:  # a bug or a store failure: the client hears of it
            log.exception("osd.%d: op on %r in %s failed", self.id, oid, coll)
            executed = Executed(op, errno=ops_mod.errno_of(exc), message=str(exc))
        if op in self._ops:
            self.step(coll, Executed(op, executed.store_ops, executed.results,
                                     executed.exists_after, executed.version_before,
                                     executed.errno, executed.failed_op, executed.message,
                                     executed.checksum_error))

    # --- members' requests -------------------------------------------------------------------
    def request_now(self, coll: str, src: int, msg: Any) -> asyncio.Future[Any]:
        """A request of the PG's primary to this member, handled at once (a RepOp frame keeps
        its place in the stream's order); its answer, or the typed error of a refusal."""
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inbound[rid] = fut
        self.step(coll, Receive(src, rid, msg))
        return fut

    async def request(self, coll: str, src: int, msg: Any) -> Any:
        return await self.request_now(coll, src, msg)

    async def _serve_read(self, e: ServeRead) -> None:
        fut = self._inbound.pop(e.rid, None)
        if fut is None:
            return
        msg = e.msg
        try:
            if isinstance(msg, osd_pb2.PullRequest):
                reply: Any = await self.pgs.pull(msg)
            elif isinstance(msg, osd_pb2.InventoryRequest):
                reply = await self.pgs.inventory(msg.pgid, msg.after,
                                                 min(msg.max or 1000, 10000))
            else:
                reply = await self.pgs.scrub_map(msg)
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
            return
        if not fut.done():
            fut.set_result(reply)

    # --- store ------------------------------------------------------------------------------
    def _persist(self, coll: str, e: Persist) -> None:
        if isinstance(e.what, osd_pb2.PushRequest):
            self._spawn(self._persist_push(coll, e))
            return
        try:
            txn = self.pgs.transaction(coll, e)
            queued = self.store.enqueue(txn)
        except Exception as exc:  # a write the store cannot take (bad range...)
            self._persisted(coll, e, exc)
            return

        def done(f: Any) -> None:
            exc = f.exception() if not f.cancelled() else asyncio.CancelledError()
            self._persisted(coll, e, exc)
        asyncio.ensure_future(queued).add_done_callback(done)

    async def _persist_push(self, coll: str, e: Persist) -> None:
        try:
            await self.store.enqueue(await self.pgs.push_transaction(coll, e.what))
        except Exception as exc:
            self._persisted(coll, e, exc)
        else:
            self._persisted(coll, e, None)

    def _persisted(self, coll: str, e: Persist, exc: BaseException | None) -> None:
        if exc is None:
            self.pgs.committed(coll, e.what)
            self.step(coll, Persisted(e.pid))
            return
        family, message = rpc.error_reply(exc) if isinstance(exc, Exception) else (
            "LoligoError", "cancelled")
        self.step(coll, Persisted(e.pid, message, family, ops_mod.errno_of(exc)))

    # --- peers ------------------------------------------------------------------------------
    def _send(self, coll: str, e: Send) -> None:
        loop = asyncio.get_running_loop()
        if e.dst == self.id:  # to this OSD's own member: straight in, on the next turn
            def local() -> None:
                fut = self.request_now(coll, self.id, e.msg)
                fut.add_done_callback(lambda f: self._answered(coll, e.rid, f))
            loop.call_soon(local)
            return
        if isinstance(e.msg, osd_pb2.RepOpRequest):  # queued now, in log order
            delay = self.config.osd_debug_replicate_delay
            if delay:  # fault tests: held back (equal delays keep the order)
                loop.call_later(delay, self._send_rep_op, coll, e)
            else:
                self._send_rep_op(coll, e)
            return
        self._spawn(self._call(coll, e))

    def _send_rep_op(self, coll: str, e: Send) -> None:
        try:
            _, session = self.peers.session(e.dst)
        except LoligoError as exc:
            asyncio.get_running_loop().call_soon(self.step, coll,
                                                 Response(e.rid, error=str(exc)))
            return
        fut = session.send(session_mod.REP_OP, e.msg.SerializeToString(),
                           self.config.rpc_timeout)
        fut.add_done_callback(lambda f: self._answered(coll, e.rid, f))

    def _answered(self, coll: str, rid: int, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            self.step(coll, Response(rid, error="cancelled"))
        elif fut.exception() is not None:
            exc = fut.exception()
            self.step(coll, Response(rid, error=str(exc) or type(exc).__name__))
        else:
            reply = fut.result()
            if isinstance(reply, osd_pb2.Frame):
                reply = reply.rep_op_reply
            self.step(coll, Response(rid, reply))

    async def _call(self, coll: str, e: Send) -> None:
        try:
            reply = await self._rpc(e.dst, e.msg)
        except (LoligoError, grpc.aio.AioRpcError) as exc:
            self.step(coll, Response(e.rid, error=str(exc) or type(exc).__name__))
            return
        self.step(coll, Response(e.rid, reply))

    async def _rpc(self, osd: int, msg: Any) -> Any:
        addr, stub = self.peers.peer(osd)
        call = {osd_pb2.PgQuery: stub.Query, osd_pb2.PgActivate: stub.Activate,
                osd_pb2.PullRequest: stub.Pull, osd_pb2.PushRequest: stub.Push,
                osd_pb2.PgRemove: stub.Remove, osd_pb2.InventoryRequest: stub.Inventory,
                osd_pb2.ScrubMapRequest: stub.ScrubMap}[type(msg)]
        return await rpc.call_with_retry(call, msg, idempotent=True, config=self.config,
                                         address=f"osd.{osd} ({addr})")

    async def _ask(self, coll: str, osd: int, msg: Any) -> Any:
        """A request to a member for a copy or a scrub (this OSD: through its own member)."""
        if osd == self.id:
            return await self.request(coll, self.id, msg)
        return await self._rpc(osd, msg)

    # --- recovery -------------------------------------------------------------------------------
    async def _recover(self, coll: str, e: Recover) -> None:
        if e.background:  # recovery's own pace: osd_recovery_max_active copies per OSD
            async with self._slots:
                event = await self._copy(coll, e)
        else:             # an op waits for this object: now
            event = await self._copy(coll, e)
        self.step(coll, event)

    async def _copy(self, coll: str, e: Recover) -> Recovered:
        if e.need == 0:  # must not exist: remove it at the targets
            push = osd_pb2.PushRequest(epoch=e.interval.epoch, pgid=coll, from_osd=self.id,
                                       oid=e.oid, remove=True, interval=e.interval)
            return await self._push_all(coll, e, push, 0)
        chunk = self.config.osd_recovery_chunk_size
        why: list[str] = []
        for source in e.sources:
            offset, first, omap_after, omap_more, moved = 0, True, b"", True, 0
            try:
                while True:
                    reply = await self._ask(coll, source, osd_pb2.PullRequest(
                        pgid=coll, oid=e.oid, offset=offset, length=chunk, meta=first,
                        omap_after=omap_after, omap_max=1000 if omap_more else 0,
                        interval=e.interval))
                    if not reply.exists or reply.version != e.need:
                        raise _WrongSource(f"osd.{source} has version "
                                           f"{reply.version if reply.exists else 'none'}")
                    if not omap_more:
                        reply.ClearField("omap")
                    omap_more = reply.omap_more
                    if reply.omap:
                        omap_after = reply.omap[-1].key
                    last = offset + len(reply.data) >= reply.size and not omap_more
                    await self.bucket.take(len(reply.data))
                    push = osd_pb2.PushRequest(
                        epoch=e.interval.epoch, pgid=coll, from_osd=self.id, oid=e.oid,
                        version=e.need, first=first, last=last, offset=offset,
                        data=reply.data, xattrs=reply.xattrs, omap_header=reply.omap_header,
                        omap=reply.omap, interval=e.interval)
                    result = await self._push_all(coll, e, push, 0)
                    if result.error:
                        return result
                    moved += len(reply.data)
                    offset += len(reply.data)
                    first = False
                    if last:
                        return Recovered(e.rid, moved)
            except (_WrongSource, LoligoError, grpc.aio.AioRpcError) as exc:
                why.append(str(exc))
                log.info("osd.%d: %r of %s not taken from osd.%d: %s", self.id, e.oid, coll,
                         source, exc)
        return Recovered(e.rid, unfound=True, error="; ".join(why) or "no source")

    async def _push_all(self, coll: str, e: Recover, push: osd_pb2.PushRequest,
                        moved: int) -> Recovered:
        results = await asyncio.gather(*(self._ask(coll, osd, push) for osd in e.targets),
                                       return_exceptions=True)
        errors = [f"osd.{o}: {r}" for o, r in zip(e.targets, results, strict=True)
                  if isinstance(r, BaseException)]
        if errors:
            return Recovered(e.rid, error="; ".join(errors), target_failed=True)
        return Recovered(e.rid, moved)

    # --- scrub ----------------------------------------------------------------------------------
    async def scrub(self, coll: str, deep: bool, repair: bool, now: float) -> ScrubResult:
        sid = next(self._ids)
        fut: asyncio.Future[ScrubResult] = asyncio.get_running_loop().create_future()
        self._scrubs[sid] = fut
        self.step(coll, ScrubRequest(sid, deep, repair, now))
        if not fut.done() and self.primary(coll) is None:
            self._scrubs.pop(sid, None)
            raise InvalidArgument(f"osd.{self.id} does not lead {coll}")
        return await fut

    async def _scrub_range(self, coll: str, e: ScrubRange) -> None:
        from osd.scrub import compare
        try:
            try:
                rows, more = await self.store.list_versions(coll, e.after, SCRUB_CHUNK)
            except NotFound:
                rows, more = [], False
            upto = rows[-1][0] if more and rows else b""
            req = osd_pb2.ScrubMapRequest(pgid=coll, after=e.after, upto=upto, deep=e.deep,
                                          interval=e.interval)
            maps = await asyncio.gather(*(self._ask(coll, o, req) for o in e.members))
            objects = {o: {x.oid: x for x in m.objects} for o, m in zip(e.members, maps,
                                                                        strict=True)}
            findings = compare(objects, self.id, e.deep)
            seen = len(set().union(*(m.keys() for m in objects.values())))
            event = ScrubRangeDone(e.sid, tuple(findings), seen, upto)
        except (LoligoError, grpc.aio.AioRpcError) as exc:
            event = ScrubRangeDone(e.sid, error=f"scrub of {coll}: {exc}")
        self.step(coll, event)

    # --- stats ---------------------------------------------------------------------------------
    async def stats(self, epoch: int, now: float) -> list[mon_pb2.PgStat]:
        """The state of every PG this OSD leads, for the beacon."""
        out = []
        primaries = self.primaries
        for coll, prim in primaries.items():
            stamp, objects, size = self._stats_cache.get(coll, (0.0, 0, 0))
            if now - stamp > STATS_EVERY:
                objects, size = await self._count(coll)
                self._stats_cache[coll] = (now, objects, size)
            missing = prim.missing_count()
            out.append(mon_pb2.PgStat(
                pgid=coll, state=prim.state(), epoch=epoch, num_objects=objects,
                num_bytes=size, missing_objects=missing,
                missing_bytes=missing * size // objects if objects else 0,
                recovered_objects=prim.recovered_objects,
                recovered_bytes=prim.recovered_bytes,
                recovery_seconds=0.0,
                inconsistent_objects=len(prim.inconsistent),
                inconsistent=[split_oid(o)[1].decode(errors="backslashreplace")
                              for o in sorted(prim.inconsistent)[:MAX_NAMED]],
                last_scrub_stamp=prim.last_scrub_stamp,
                last_deep_scrub_stamp=prim.last_deep_scrub_stamp))
        for coll in [c for c in self._stats_cache if c not in primaries]:
            del self._stats_cache[coll]
        return out

    async def _count(self, coll: str) -> tuple[int, int]:
        """(objects, bytes) of a PG in this store, its meta object not counted."""
        from osd import pgmeta
        if coll not in await self.pgs.collections():
            return 0, 0
        try:
            objects, size = await self.store.coll_stats(coll)
        except LoligoError:
            return 0, 0
        try:
            await self.store.stat(coll, pgmeta.PGMETA_OID)
        except LoligoError:
            return objects, size
        return max(0, objects - 1), size


class _WrongSource(Exception):
    pass


def errno_of_exception(exc: BaseException) -> int:
    return ops_mod.errno_of(exc) if not isinstance(exc, rpc.Unavailable) else errno.EIO
