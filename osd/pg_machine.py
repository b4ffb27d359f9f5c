"""One PG on one OSD as a pure, deterministic state machine: peering, recovery, scrub and the
ordering of client ops, in one place (as mon/raft.py is for the monitors).

It does no I/O and reads no clock: the host (osd/pg_host.py in the OSD, tests/sim/osd_* in the
simulation) feeds it events and carries out the effects it returns, in order (osd/pg_events.py).
Every OSD holding the PG runs one; its `member` half (osd/pg_member.py) is the copy this OSD
keeps, and while this OSD is the PG's acting primary the machine also leads the PG:

Intervals and rounds. A map that changes the PG's acting or up set (or restarts a member)
starts an interval; the primary leads it in peering rounds (a failed write starts another round
in the same interval). Every message of a round carries its token (interval epoch, round), and
members refuse anything older than the newest round they answered (interval fencing).

Peering. The primary queries the OSDs that may hold the PG (acting, up, the previous acting
set, CRUSH's raw choice, and the acting sets of the activations they report); if one that
did not answer may hold newer writes the PG is `down` until it answers or is removed. Otherwise
osd/peering.py picks the authoritative history and each member's plan; objects whose state only
the authoritative member's store knows are asked for (pulls), backfill targets are compared by
inventory, and every acting member is activated. The PG is then active.

Ops. A client op holds its object (a write exclusively, from its check against the object's
state until every member has it durable; a read shared, behind earlier writes), so ops on one
object run in arrival order and a read never sees a write that could still be rolled back.
An op on an object some member lacks recovers it first. A write takes the next log position
and is persisted here and sent to every replica in the same step, so members receive and queue
a PG's writes in log order while earlier ones are still becoming durable (pipelining); it is
acknowledged once every member has it durable. A member that refuses or fails a write makes the
primary answer REPLICA_FAILED (the client resends, deduplicated) and peer again.

Recovery copies missing objects (at most recovery_max_active at a time), each held like a
write; when nothing is missing and the PG is not undersized, OSDs outside the acting set are
told to drop their copies. Scrub compares ranges of objects across members with writes to the
range held back, and repairs from the authoritative copy when asked.
"""

from __future__ import annotations

import errno as E
import itertools
from collections import deque
from dataclasses import dataclass, field

from osd import peering
from osd.peering import ABSENT, Peer
from osd.pg import Token, pack_version
from osd.pg_events import (
    ClientOp,
    Effect,
    Event,
    Execute,
    Executed,
    Info,
    MapChange,
    MapView,
    Persisted,
    Receive,
    Recover,
    Recovered,
    ReplyOp,
    Response,
    ScrubDone,
    ScrubRange,
    ScrubRangeDone,
    ScrubRequest,
    Send,
    StartTimer,
    TimerFired,
)
from osd.pg_member import Member, MemberState, _Refused
from rados_py.proto.loligo import osd_pb2

__all__ = ["MachineConfig", "PgMachine", "Primary"]

R = osd_pb2.OpReply
INVENTORY_PAGE = 5000


@dataclass(frozen=True)
class MachineConfig:
    recovery_max_active: int = 3
    peering_retry: float = 0.5       # first pause before peering again (doubles up to 5 s)
    recovery_retry: float = 0.5


# --- per-object ordering ------------------------------------------------------------------

@dataclass
class _Object:
    readers: int = 0
    writer: bool = False
    queue: deque[tuple[object, bool]] = field(default_factory=deque)  # (holder, exclusive)


@dataclass
class _Op:
    op: int
    oid: bytes
    write: bool
    client: str
    tid: int
    state: str = "queued"        # queued, recovering, executing, replicating
    rep: osd_pb2.RepOpRequest | None = None
    results: tuple[osd_pb2.OsdOpResult, ...] = ()
    waiting: set[object] = field(default_factory=set)   # pids and rids still to come
    failures: list[str] = field(default_factory=list)
    local_failed: str = ""
    local_errno: int = 0


@dataclass
class _Recovery:
    oid: bytes
    need: int
    targets: tuple[int, ...]
    background: bool          # scheduled by recovery (holds the object) or by an op (it does)
    repair: bool = False      # scrub's repair


@dataclass
class _Scrub:
    sid: int
    deep: bool
    repair: bool
    now: float = 0.0          # when it was asked for (the stamps)
    after: bytes = b""
    objects: int = 0
    findings: list[object] = field(default_factory=list)
    repaired: int = 0
    block: tuple[bytes, bytes | None] | None = None
    waiting_block: bool = False
    repairs: set[int] = field(default_factory=set)


class Primary:
    """This OSD leading the PG in one peering round of one interval."""

    def __init__(self, view: MapView, prior: set[int], round_: int) -> None:
        self.view = view
        self.epoch = view.epoch
        self.round = round_
        self.acting = view.acting
        self.up = view.up
        self.prior = set(prior)
        self.size, self.min_size = view.size, view.min_size
        self.phase = "peering"       # peering, down, active
        self.why = ""
        self.closed = False
        # peering
        self.probe: set[int] = set()
        self.replies: dict[int, osd_pb2.PgQueryReply | None] = {}
        self.asked: dict[int, tuple[str, int, bytes]] = {}   # rid -> (what, osd, oid)
        self.acks: dict[object, int] = {}             # rid or ("pid", pid) -> write op
        self.plan: peering.Plan | None = None
        self.auth_reply: osd_pb2.PgQueryReply | None = None
        self.versions: dict[bytes, int] = {}
        self.inventories: dict[int, dict[bytes, int]] = {}
        self.retry_pause = 0.0
        # active
        self.missing: dict[int, dict[bytes, int]] = {}
        self.stray_missing: dict[int, dict[bytes, int]] = {}
        self.strays: set[int] = set()
        self.backfill: set[int] = set()
        self.unfound: set[bytes] = set()
        self.recoveries: dict[int, _Recovery] = {}     # rid -> copy in flight
        self.recovering_oids: dict[bytes, int] = {}    # oid -> its rid
        self.recovered_objects = 0
        self.recovered_bytes = 0
        self.recovery_retry_due = False
        self.inconsistent: dict[bytes, str] = {}
        self.scrub: _Scrub | None = None
        self.last_scrub_stamp = 0.0
        self.last_deep_scrub_stamp = 0.0
        self.objects: dict[bytes, _Object] = {}
        self.ops: dict[int, _Op] = {}

    @property
    def token(self) -> Token:
        return (self.epoch, self.round)

    def interval(self) -> osd_pb2.Interval:
        return osd_pb2.Interval(epoch=self.epoch, round=self.round)

    @property
    def active(self) -> bool:
        return self.phase == "active" and not self.closed

    def missing_anywhere(self, oid: bytes) -> bool:
        return any(oid in m for m in self.missing.values())

    def missing_count(self) -> int:
        return sum(len(m) for m in self.missing.values())

    @property
    def recovering(self) -> bool:
        return bool(self.recoveries)

    def state(self) -> str:
        """Ceph's words, in Ceph's order (pg_state_string)."""
        if self.phase != "active":
            return self.phase
        missing = self.missing_count()
        undersized = len(self.acting) < self.size
        words = ["active"]
        if not missing and not undersized:
            words.append("clean")
        if missing and not self.recovering and not self.unfound:
            words.append("recovery_wait")
        backfilling = any(self.missing.get(o) for o in self.backfill)
        if self.recovering and not backfilling:
            words.append("recovering")
        if self.unfound:
            words.append("recovery_unfound")
        if undersized:
            words.append("undersized")
        if missing or undersized:
            words.append("degraded")
        if self.scrub is not None:
            words.append("scrubbing")
            if self.scrub.deep:
                words.append("deep")
        if self.inconsistent:
            words.append("inconsistent")
        if self.recovering and backfilling:
            words.append("backfilling")
        return "+".join(words)


class PgMachine:
    """One PG on OSD `osd`. `step(event)` returns the effects to carry out, in order."""

    def __init__(self, osd: int, pgid: str, state: MemberState,
                 config: MachineConfig | None = None) -> None:
        self.osd = osd
        self.pgid = pgid
        self.config = config or MachineConfig()
        self._ids = itertools.count(1)
        self.member = Member(osd, pgid, state, lambda: next(self._ids))
        self.primary: Primary | None = None
        self.view: MapView | None = None
        self._rounds = itertools.count(1)
        self._local_writes: dict[int, int] = {}     # pid -> op (this primary's own writes)
        self._prior: tuple[int, ...] = ()

    def next_id(self) -> int:
        return next(self._ids)

    # --- the one entry point -------------------------------------------------------------------
    def step(self, event: Event) -> list[Effect]:
        if isinstance(event, Receive):
            return self.member.handle(event.rid, event.msg)
        if isinstance(event, Persisted):
            return self._persisted(event)
        if isinstance(event, MapChange):
            return self._map(event.view)
        prim = self.primary
        if isinstance(event, ClientOp):
            return self._client_op(event)
        if prim is None:
            return []
        if isinstance(event, Response):
            return self._response(prim, event)
        if isinstance(event, Executed):
            return self._executed(prim, event)
        if isinstance(event, Recovered):
            return self._recovered(prim, event)
        if isinstance(event, TimerFired):
            return self._timer(prim, event.key)
        if isinstance(event, ScrubRequest):
            return self._scrub_request(prim, event)
        if isinstance(event, ScrubRangeDone):
            return self._scrub_range_done(prim, event)
        raise TypeError(f"unknown event {event!r}")

    # --- maps, intervals, rounds -----------------------------------------------------------------
    def _map(self, view: MapView) -> list[Effect]:
        old = self.view
        self.view = view
        prim = self.primary
        if old is not None and old.key() == view.key():
            return []            # same interval (the view still follows the map's liveness)
        prior = set(old.acting) if old is not None else set()
        out: list[Effect] = []
        if prim is not None:
            prior |= set(prim.acting)
            out += self._close(prim, "the PG changed interval")
        if view.primary != self.osd:
            self.primary = None
            return out
        self.primary = Primary(view, prior, next(self._rounds))
        return out + self._start_peering(self.primary)

    def repeer(self, why: str) -> list[Effect]:
        """Peer again in the same interval (a write did not reach every member)."""
        prim = self.primary
        if prim is None or prim.closed:
            return []
        out = self._close(prim, why)
        self.primary = Primary(prim.view, prim.prior | set(prim.acting), next(self._rounds))
        return out + self._start_peering(self.primary)

    def _close(self, prim: Primary, why: str) -> list[Effect]:
        prim.closed = True
        out: list[Effect] = []
        for op in list(prim.ops.values()):
            out.append(ReplyOp(op.op, R(status=R.INACTIVE, message=f"PG {self.pgid}: {why}; "
                                        "resend")))
        prim.ops.clear()
        prim.objects.clear()
        if prim.scrub is not None:
            out.append(ScrubDone(prim.scrub.sid, error=f"PG {self.pgid} changed interval "
                                 "during scrub"))
            prim.scrub = None
        self._local_writes.clear()
        return out

    # --- peering -------------------------------------------------------------------------------
    def _start_peering(self, prim: Primary) -> list[Effect]:
        prim.phase, prim.why = "peering", ""
        prim.replies, prim.asked, prim.plan = {}, {}, None
        prim.versions, prim.inventories = {}, {}
        view = self.view or prim.view
        prim.probe = set(prim.acting) | set(prim.up) | prim.prior | set(view.raw)
        return self._query_more(prim)

    def _ask(self, prim: Primary, what: str, osd: int, msg: object, oid: bytes = b"") -> Send:
        rid = self.next_id()
        prim.asked[rid] = (what, osd, oid)
        return Send(osd, rid, msg)

    def _query_more(self, prim: Primary) -> list[Effect]:
        view = self.view or prim.view
        out: list[Effect] = []
        asked = {osd for what, osd, _ in prim.asked.values() if what == "query"}
        for osd in sorted(prim.probe):
            life = view.osds.get(osd)
            if osd in prim.replies or osd in asked or life is None or not life.up:
                continue
            out.append(self._ask(prim, "query", osd, osd_pb2.PgQuery(
                epoch=prim.epoch, pgid=self.pgid, interval=prim.interval())))
        if not out and not any(w == "query" for w, _, _ in prim.asked.values()):
            return self._queried(prim)
        return out

    def _peering_failed(self, prim: Primary, why: str, down: bool = False) -> list[Effect]:
        prim.why = why
        prim.phase = "down" if down else "peering"
        prim.asked.clear()
        prim.retry_pause = min(max(prim.retry_pause * 2, self.config.peering_retry), 5.0)
        return [Info(f"osd.{self.osd}: peering {self.pgid}: {why}; again in "
                     f"{prim.retry_pause:.1f}s"),
                StartTimer(f"peer:{prim.round}", prim.retry_pause)]

    def _queried(self, prim: Primary) -> list[Effect]:
        answered = {o: r for o, r in prim.replies.items() if r is not None}
        blockers = _may_hold_newer(self.view or prim.view, prim, prim.probe, answered)
        if blockers:
            return self._peering_failed(prim, (
                f"waiting for {', '.join(blockers)}, which may hold writes newer than any "
                "reachable copy: start it; if its disk is gone for good, remove it (loligo osd "
                "out N; loligo osd rm N) to go on without what only it had"), down=True)
        peers = [_peer_of(o, r) for o, r in answered.items()]
        plan = peering.plan(peers, self.osd)
        prim.plan = plan
        prim.auth_reply = answered[plan.auth] if plan.auth is not None else None
        out: list[Effect] = []
        for oid in sorted(plan.unresolved):
            out.append(self._ask(prim, "version", plan.auth, osd_pb2.PullRequest(
                pgid=self.pgid, oid=oid, interval=prim.interval()), oid))
        if out:
            return out
        return self._resolved(prim)

    def _resolved(self, prim: Primary) -> list[Effect]:
        plan = prim.plan
        assert plan is not None
        if plan.unresolved:
            plan.resolve(prim.versions)
        out: list[Effect] = []
        wanted = [o for o, m in plan.members.items() if m.backfill and o in prim.acting
                  and plan.auth is not None]
        if wanted:
            assert plan.auth is not None
            for osd in {plan.auth, *wanted}:
                reply = prim.replies.get(osd)
                if osd != plan.auth and (reply is None or not reply.exists):
                    prim.inventories[osd] = {}
                    continue
                if osd not in prim.inventories:
                    prim.inventories[osd] = {}
                    out.append(self._ask(prim, "inventory", osd, osd_pb2.InventoryRequest(
                        pgid=self.pgid, after=b"", max=INVENTORY_PAGE,
                        interval=prim.interval())))
        if out:
            return out
        return self._activate(prim)

    def _activate(self, prim: Primary) -> list[Effect]:
        plan = prim.plan
        assert plan is not None
        auth_reply = prim.auth_reply
        for osd, member in plan.members.items():
            if member.backfill and osd in prim.acting and plan.auth is not None:
                assert auth_reply is not None
                member.missing = peering.backfill_missing(
                    prim.inventories[plan.auth], {m.oid: m.need for m in auth_reply.missing},
                    prim.inventories.get(osd, {}))
        records = {r.seq: r.entry for r in auth_reply.log} if auth_reply is not None else {}
        out: list[Effect] = []
        for osd in prim.acting:
            member = plan.members[osd]
            out.append(self._ask(prim, "activate", osd, osd_pb2.PgActivate(
                epoch=prim.epoch, pgid=self.pgid, from_osd=self.osd, les=prim.epoch,
                interval=prim.interval(), acting=list(prim.acting),
                replace_log=member.backfill,
                keep_through=plan.auth_tail if member.backfill else member.keep_through,
                append=[osd_pb2.PgLogRecord(seq=e.seq, entry=records[e.seq])
                        for e in member.append],
                missing=[osd_pb2.MissingItem(oid=o, need=n) for o, n in member.missing.items()])))
        return out

    def _activated(self, prim: Primary) -> list[Effect]:
        plan = prim.plan
        assert plan is not None
        answered = {o: r for o, r in prim.replies.items() if r is not None}
        prim.missing = {o: dict(plan.members[o].missing) for o in prim.acting}
        prim.backfill = {o for o in prim.acting if plan.members[o].backfill}
        prim.strays = {o for o, r in answered.items() if r.exists and o not in prim.acting}
        prim.stray_missing = {o: plan.members[o].missing for o in prim.strays
                              if not plan.members[o].backfill}
        prim.last_scrub_stamp, prim.last_deep_scrub_stamp = self.member.state.scrubbed
        prim.phase, prim.why, prim.retry_pause = "active", "", 0.0
        backfill = f", backfill {sorted(prim.backfill)}" if prim.backfill else ""
        active = Info(f"osd.{self.osd}: PG {self.pgid} active at epoch {prim.epoch}, acting "
                      f"{list(prim.acting)}, auth osd.{plan.auth}, {prim.missing_count()} "
                      f"missing{backfill}")
        return [active, *self._schedule_recovery(prim)]

    def _response(self, prim: Primary, event: Response) -> list[Effect]:
        asked = prim.asked.pop(event.rid, None)
        if asked is not None:
            return self._peering_response(prim, asked, event)
        op = prim.ops.get(prim.acks.pop(event.rid, -1))
        if op is not None and op.state == "replicating":
            return self._write_ack(prim, op, event.rid, event.error)
        return []

    def _peering_response(self, prim: Primary, asked: tuple[str, int, bytes],
                          event: Response) -> list[Effect]:
        what, osd, oid = asked
        if what == "remove":
            if not event.error:
                prim.strays.discard(osd)
                prim.stray_missing.pop(osd, None)
            return []
        if prim.phase == "active" or prim.closed:
            return []
        if what == "query":
            if event.error:
                if osd in prim.acting:
                    return self._peering_failed(prim, f"acting member osd.{osd} did not "
                                                f"answer: {event.error}")
                prim.replies[osd] = None
            else:
                reply: osd_pb2.PgQueryReply = event.msg
                prim.replies[osd] = reply
                if reply.exists:
                    prim.probe |= set(reply.info.les_acting)
            return self._query_more(prim)
        if event.error:
            return self._peering_failed(prim, f"osd.{osd}: {what}: {event.error}")
        if what == "version":
            pulled: osd_pb2.PullReply = event.msg
            prim.versions[oid] = pulled.version if pulled.exists else ABSENT
            if any(w == "version" for w, _, _ in prim.asked.values()):
                return []
            return self._resolved(prim)
        if what == "inventory":
            inv: osd_pb2.InventoryReply = event.msg
            prim.inventories.setdefault(osd, {}).update((i.oid, i.need) for i in inv.objects)
            if inv.more and inv.objects:
                return [self._ask(prim, "inventory", osd, osd_pb2.InventoryRequest(
                    pgid=self.pgid, after=inv.objects[-1].oid, max=INVENTORY_PAGE,
                    interval=prim.interval()))]
            if any(w == "inventory" for w, _, _ in prim.asked.values()):
                return []
            return self._activate(prim)
        if what == "activate":
            if any(w == "activate" for w, _, _ in prim.asked.values()):
                return []
            return self._activated(prim)
        return []

    def _timer(self, prim: Primary, key: str) -> list[Effect]:
        if key == f"peer:{prim.round}" and prim.phase != "active" and not prim.closed:
            return self._start_peering(prim)
        if key == f"recover:{prim.round}" and prim.active:
            prim.recovery_retry_due = False
            return self._schedule_recovery(prim)
        return []

    # --- ops ----------------------------------------------------------------------------------
    def _client_op(self, event: ClientOp) -> list[Effect]:
        prim = self.primary
        if prim is None or not prim.active:
            state = "not led here" if prim is None else prim.state()
            why = f": {prim.why}" if prim is not None and prim.why else ""
            return [ReplyOp(event.op, R(status=R.INACTIVE,
                                        message=f"PG {self.pgid} is {state}{why}"))]
        if event.op in prim.ops:
            raise ValueError(f"op {event.op} is already running: the host names each op once")
        op = _Op(event.op, event.oid, event.write, event.client, event.tid)
        prim.ops[op.op] = op
        return self._acquire(prim, event.oid, op, event.write)

    def _blocked(self, prim: Primary, oid: bytes) -> bool:
        block = prim.scrub.block if prim.scrub is not None else None
        return block is not None and oid > block[0] and (block[1] is None or oid <= block[1])

    def _acquire(self, prim: Primary, oid: bytes, holder: object, exclusive: bool
                 ) -> list[Effect]:
        obj = prim.objects.setdefault(oid, _Object())
        if (not obj.queue and not obj.writer and (not exclusive or not obj.readers)
                and not (exclusive and isinstance(holder, _Op) and self._blocked(prim, oid))):
            obj.writer = obj.writer or exclusive
            obj.readers += 0 if exclusive else 1
            return self._granted(prim, holder)
        obj.queue.append((holder, exclusive))
        return []

    def _release(self, prim: Primary, oid: bytes, exclusive: bool) -> list[Effect]:
        obj = prim.objects.get(oid)
        if obj is None:
            return []
        if exclusive:
            obj.writer = False
        else:
            obj.readers -= 1
        return self._wake(prim, oid, obj)

    def _wake(self, prim: Primary, oid: bytes, obj: _Object) -> list[Effect]:
        out: list[Effect] = []
        while obj.queue and not obj.writer:
            holder, exclusive = obj.queue[0]
            if exclusive and obj.readers:
                break
            if exclusive and isinstance(holder, _Op) and self._blocked(prim, oid):
                break
            obj.queue.popleft()
            obj.writer = exclusive
            obj.readers += 0 if exclusive else 1
            out += self._granted(prim, holder)
            if exclusive:
                break
        if not obj.writer and not obj.readers and not obj.queue:
            prim.objects.pop(oid, None)
        if prim.scrub is not None and prim.scrub.waiting_block:
            out += self._scrub_maybe_compare(prim)
        return out

    def _granted(self, prim: Primary, holder: object) -> list[Effect]:
        if isinstance(holder, _Op):
            return self._turn(prim, holder)
        assert isinstance(holder, int)  # a background recovery's rid
        return self._start_recovery(prim, holder)

    def _turn(self, prim: Primary, op: _Op) -> list[Effect]:
        """The op holds its object: recover it first if needed (a write: wherever it is
        missing, so that a resend is never answered while a member lacks what it wrote),
        answer a resend, or run it."""
        if op.oid in prim.unfound:
            return self._finish(prim, op, R(status=R.FAILED, errno=E.EIO,
                                            message=self._unfound_message(prim, op.oid)))
        needs = prim.missing_anywhere(op.oid) if op.write else op.oid in prim.missing.get(
            self.osd, {})
        if needs:
            op.state = "recovering"
            if op.oid in prim.recovering_oids:
                return []
            return self._recover(prim, op.oid, background=False)
        if op.write and op.client:
            seen = self.member.dedup.get(op.client, op.tid)
            if seen is not None:
                reply = (R(status=R.OK, version=seen) if isinstance(seen, int)
                         else R.FromString(seen))
                reply.replayed = True
                return self._finish(prim, op, reply)
        op.state = "executing"
        return [Execute(op.op)]

    def _finish(self, prim: Primary, op: _Op, reply: osd_pb2.OpReply) -> list[Effect]:
        prim.ops.pop(op.op, None)
        for key in op.waiting:
            prim.acks.pop(key, None)
        return [ReplyOp(op.op, reply), *self._release(prim, op.oid, op.write)]

    def _executed(self, prim: Primary, event: Executed) -> list[Effect]:
        op = prim.ops.get(event.op)
        if op is None or op.state != "executing":
            return []
        epoch = prim.view.epoch if self.view is None else self.view.epoch
        if event.checksum_error and len(prim.acting) > 1:
            prim.inconsistent[op.oid] = f"osd.{self.osd} data failed its checksum on read"
            prim.missing.setdefault(self.osd, {})[op.oid] = event.version_before
            op.state = "recovering"
            bad = Info(f"osd.{self.osd}: {op.oid!r} in {self.pgid} fails its checksum here: "
                       "recovering it from a replica", warning=True)
            return [bad, *self._recover(prim, op.oid, background=False)]
        if event.errno:
            reply = R(status=R.FAILED, errno=event.errno, failed_op=event.failed_op,
                      message=event.message, epoch=epoch)
            if op.write:
                self.member.dedup.put(op.client, op.tid, reply.SerializeToString())
            return self._finish(prim, op, reply)
        if not event.store_ops:
            return self._finish(prim, op, R(status=R.OK, epoch=epoch,
                                            version=event.version_before,
                                            results=list(event.results)))
        # from here no event comes between the log position and the sends: members get the
        # PG's writes in log order
        seq = self.member.last_seq + 1
        entry = osd_pb2.PgLogEntry(version=pack_version(epoch, seq), oid=op.oid,
                                   client=op.client, tid=op.tid,
                                   removed=not event.exists_after)
        rep = osd_pb2.RepOpRequest(epoch=epoch, pgid=self.pgid, seq=seq, entry=entry,
                                   oid=op.oid, ops=list(event.store_ops), from_osd=self.osd,
                                   interval=prim.interval())
        try:
            local = self.member.start_write(rep)
        except _Refused as exc:
            if exc.family == "InvalidArgument":
                return self._finish(prim, op, R(status=R.FAILED, errno=E.EINVAL,
                                                message=str(exc), epoch=epoch))
            out = self._finish(prim, op, R(status=R.INACTIVE, epoch=epoch,
                                           message=f"PG {self.pgid}: {exc}; resend"))
            return out + self.repeer(str(exc))
        op.state, op.rep, op.results = "replicating", rep, event.results
        out: list[Effect] = list(local)
        for effect in local:
            pid = getattr(effect, "pid", None)
            if pid is not None:
                self._local_writes[pid] = op.op
                op.waiting.add(("pid", pid))
        for osd in prim.acting:
            if osd == self.osd:
                continue
            rid = self.next_id()
            op.waiting.add(rid)
            prim.acks[rid] = op.op
            out.append(Send(osd, rid, rep))
        if not op.waiting:  # a resend the local member had already: nothing to wait for
            return out + self._write_done(prim, op)
        return out

    def _persisted(self, event: Persisted) -> list[Effect]:
        out, _pending = self.member.persisted(event.pid, event.error, event.family)
        op_id = self._local_writes.pop(event.pid, None)
        prim = self.primary
        if op_id is None or prim is None:
            return out
        op = prim.ops.get(op_id)
        if op is None:
            return out
        if event.error:
            op.local_failed = event.error
            op.local_errno = event.errno
        return out + self._write_ack(prim, op, ("pid", event.pid),
                                     f"osd.{self.osd}: {event.error}" if event.error else "")

    def _write_ack(self, prim: Primary, op: _Op, key: object, error: str) -> list[Effect]:
        op.waiting.discard(key)
        if error:
            op.failures.append(error)
        if op.waiting:
            return []
        return self._write_done(prim, op)

    def _write_done(self, prim: Primary, op: _Op) -> list[Effect]:
        assert op.rep is not None
        epoch = op.rep.epoch
        if not op.failures:
            reply = R(status=R.OK, epoch=epoch, version=op.rep.entry.version,
                      results=list(op.results))
            self.member.dedup.put(op.client, op.tid, reply.SerializeToString())
            return self._finish(prim, op, reply)
        why = "; ".join(op.failures)
        everywhere = op.local_failed and len(op.failures) == len(prim.acting)
        if everywhere:  # applied nowhere: a plain failure the client may see (ENOSPC...)
            reply = R(status=R.FAILED, errno=op.local_errno or E.EIO, epoch=epoch,
                      message=f"osd.{self.osd}: {op.local_failed}")
        else:
            reply = R(status=R.REPLICA_FAILED, epoch=epoch, version=op.rep.entry.version,
                      message=f"{self.pgid}: not every member applied the write ({why}); "
                      "resend it")
        out = [Info(f"write {op.client}/{op.tid} to {self.pgid} not applied on every member "
                    f"({why}): peering again", warning=True)]
        return out + self._finish(prim, op, reply) + self.repeer(why)

    # --- recovery ------------------------------------------------------------------------------
    def _schedule_recovery(self, prim: Primary) -> list[Effect]:
        """Start background copies up to recovery_max_active; strays go once all is clean."""
        if not prim.active:
            return []
        out: list[Effect] = []
        running = sum(1 for r in prim.recoveries.values() if r.background)
        for oid in self._todo(prim):
            if running >= self.config.recovery_max_active:
                break
            if oid in prim.recovering_oids:
                continue
            rid = self.next_id()
            prim.recoveries[rid] = _Recovery(oid, 0, (), background=True)
            prim.recovering_oids[oid] = rid
            running += 1
            out += self._acquire(prim, oid, rid, True)
        if (not prim.recoveries and not prim.missing_count() and not prim.unfound
                and len(prim.acting) >= prim.size):
            out += self._drop_strays(prim)
        return out

    def _todo(self, prim: Primary) -> list[bytes]:
        todo = list(prim.missing.get(self.osd, {}))  # own objects first
        seen = set(todo)
        for osd in prim.acting:
            for oid in prim.missing.get(osd, {}):
                if oid not in seen:
                    todo.append(oid)
                    seen.add(oid)
        return [o for o in todo if o not in prim.unfound]

    def _start_recovery(self, prim: Primary, rid: int) -> list[Effect]:
        rec = prim.recoveries.get(rid)
        if rec is None:
            return []
        targets = tuple(o for o in prim.acting if rec.oid in prim.missing.get(o, {}))
        if not targets:  # recovered meanwhile (by an op)
            del prim.recoveries[rid]
            prim.recovering_oids.pop(rec.oid, None)
            return self._release(prim, rec.oid, True) + self._schedule_recovery(prim)
        rec.targets = targets
        rec.need = prim.missing[targets[0]][rec.oid]
        return [self._recover_effect(prim, rid, rec)]

    def _recover(self, prim: Primary, oid: bytes, background: bool) -> list[Effect]:
        """Recover `oid` now for an op that holds it."""
        targets = tuple(o for o in prim.acting if oid in prim.missing.get(o, {}))
        rid = self.next_id()
        rec = _Recovery(oid, prim.missing[targets[0]][oid], targets, background)
        prim.recoveries[rid] = rec
        prim.recovering_oids[oid] = rid
        return [self._recover_effect(prim, rid, rec)]

    def _recover_effect(self, prim: Primary, rid: int, rec: _Recovery) -> Recover:
        sources: list[int] = []
        if rec.need != ABSENT:
            sources = [o for o in prim.acting if o not in rec.targets]
            sources.sort(key=lambda o: o != self.osd)  # ourselves first: no network
            sources += [o for o, m in sorted(prim.stray_missing.items()) if rec.oid not in m]
        return Recover(rid, rec.oid, rec.need, tuple(sources), rec.targets, prim.interval(),
                       rec.background)

    def _recovered(self, prim: Primary, event: Recovered) -> list[Effect]:
        rec = prim.recoveries.pop(event.rid, None)
        if rec is None:
            return []
        if prim.recovering_oids.get(rec.oid) == event.rid:
            del prim.recovering_oids[rec.oid]
        out: list[Effect] = []
        ok = not event.error and not event.unfound
        if ok:
            for osd in rec.targets:
                prim.missing.get(osd, {}).pop(rec.oid, None)
            prim.unfound.discard(rec.oid)
            prim.recovered_objects += len(rec.targets)
            prim.recovered_bytes += event.moved * len(rec.targets)
            if rec.repair:
                prim.inconsistent.pop(rec.oid, None)
        elif event.unfound:
            prim.unfound.add(rec.oid)
            out.append(Info(f"osd.{self.osd}: {self._unfound_message(prim, rec.oid)}",
                            warning=True))
        else:
            out.append(Info(f"osd.{self.osd}: recovery of {rec.oid!r} in {self.pgid}: "
                            f"{event.error}; will retry"))
        if rec.repair and prim.scrub is not None:
            prim.scrub.repairs.discard(event.rid)
            if ok:
                prim.scrub.repaired += 1
            if not prim.scrub.repairs:
                out += self._scrub_next(prim)
            return out
        if rec.background:
            out += self._release(prim, rec.oid, True)
        else:
            out += self._after_op_recovery(prim, rec.oid, ok, event)
        if not ok and not event.unfound and not prim.recovery_retry_due and prim.active:
            prim.recovery_retry_due = True
            out.append(StartTimer(f"recover:{prim.round}", self.config.recovery_retry))
        if ok or event.unfound:
            out += self._schedule_recovery(prim)
        return out

    def _after_op_recovery(self, prim: Primary, oid: bytes, ok: bool, event: Recovered
                           ) -> list[Effect]:
        out: list[Effect] = []
        for op in [o for o in prim.ops.values() if o.oid == oid and o.state == "recovering"]:
            if ok:
                out += self._turn(prim, op)
            elif event.unfound:
                out += self._finish(prim, op, R(status=R.FAILED, errno=E.EIO,
                                                message=self._unfound_message(prim, oid)))
            else:
                out += self._finish(prim, op, R(status=R.INACTIVE, message=(
                    f"PG {self.pgid}: recovering {oid!r} first: {event.error}")))
        return out

    def _unfound_message(self, prim: Primary, oid: bytes) -> str:
        return (f"PG {self.pgid}: no reachable OSD holds object {oid!r} at the version its "
                "history needs")

    def _drop_strays(self, prim: Primary) -> list[Effect]:
        asked = {osd for what, osd, _ in prim.asked.values() if what == "remove"}
        return [self._ask(prim, "remove", osd, osd_pb2.PgRemove(
            epoch=prim.epoch, pgid=self.pgid, from_osd=self.osd, interval=prim.interval()))
            for osd in sorted(prim.strays) if osd not in asked]

    # --- scrub ----------------------------------------------------------------------------------
    def _scrub_request(self, prim: Primary, event: ScrubRequest) -> list[Effect]:
        if prim.phase != "active" or prim.missing_count() or prim.recovering:
            return [ScrubDone(event.sid, error=f"PG {self.pgid} is {prim.state()}: it can be "
                              "scrubbed once it is active+clean")]
        if prim.scrub is not None:
            return [ScrubDone(event.sid, error=f"PG {self.pgid} is being scrubbed already")]
        prim.scrub = _Scrub(event.sid, event.deep, event.repair, now=event.now)
        return self._scrub_range(prim)

    def _scrub_range(self, prim: Primary) -> list[Effect]:
        """Hold writes out of everything after `after` (the host compares a range of it),
        once writes in flight there are done."""
        scrub = prim.scrub
        assert scrub is not None
        scrub.block = (scrub.after, None)
        scrub.waiting_block = True
        return self._scrub_maybe_compare(prim)

    def _scrub_maybe_compare(self, prim: Primary) -> list[Effect]:
        scrub = prim.scrub
        assert scrub is not None and scrub.block is not None
        after, upto = scrub.block
        busy = any(obj.writer for oid, obj in prim.objects.items()
                   if oid > after and (upto is None or oid <= upto))
        if busy:
            return []
        scrub.waiting_block = False
        return [ScrubRange(scrub.sid, scrub.after, scrub.deep, prim.acting, prim.interval())]

    def _scrub_range_done(self, prim: Primary, event: ScrubRangeDone) -> list[Effect]:
        scrub = prim.scrub
        if scrub is None or scrub.sid != event.sid:
            return []
        if event.error:
            prim.scrub = None
            return [ScrubDone(event.sid, error=event.error), *self._unblock(prim)]
        scrub.block = None
        scrub.objects += event.objects
        out: list[Effect] = []
        for finding in event.findings:
            if scrub.repair and finding.auth >= 0:  # type: ignore[attr-defined]
                rid = self.next_id()
                rec = _Recovery(finding.oid, finding.version,  # type: ignore[attr-defined]
                                tuple(finding.bad), False, repair=True)  # type: ignore[attr-defined]
                prim.recoveries[rid] = rec
                scrub.repairs.add(rid)
                out.append(Recover(rid, rec.oid, rec.need, (finding.auth,),  # type: ignore
                                   rec.targets, prim.interval()))
            else:
                scrub.findings.append(finding)
        scrub.after = event.upto
        if scrub.repairs:
            return out
        return out + self._scrub_next(prim)

    def _scrub_next(self, prim: Primary) -> list[Effect]:
        scrub = prim.scrub
        assert scrub is not None
        scrub.block = None
        out = self._unblock(prim)      # writes held back by this range go on
        if scrub.after:
            return out + self._scrub_range(prim)
        prim.scrub = None
        prim.inconsistent = {f.oid: f.why for f in scrub.findings}  # type: ignore[attr-defined]
        prim.last_scrub_stamp = scrub.now
        if scrub.deep:
            prim.last_deep_scrub_stamp = scrub.now
        stamps = (prim.last_scrub_stamp, prim.last_deep_scrub_stamp)
        done = ScrubDone(scrub.sid, scrub.objects, tuple(scrub.findings), scrub.repaired)
        return [*out, self.member.set_scrubbed(stamps), done]

    def _unblock(self, prim: Primary) -> list[Effect]:
        out: list[Effect] = []
        for oid, obj in list(prim.objects.items()):
            out += self._wake(prim, oid, obj)
        return out



def _may_hold_newer(view: MapView, prim: Primary, candidates: set[int],
                    answered: dict[int, osd_pb2.PgQueryReply]) -> list[str]:
    """OSDs that did not answer and may have taken part in an activation newer than any an
    answering OSD took part in: Ceph's "past intervals" check, approximated from the map.

    Every write was acknowledged by all members of its interval, and each activation copies
    the history to all its members, so the answering OSDs with the newest activation (epoch
    `newest`) hold every write up to the next activation they missed. One of them that has
    been up since then and is acting now missed none (a later interval would have had it as a
    member, barring a CRUSH change that moved the PG away and back). Otherwise only an OSD
    that was up after `newest` (and after the pool was created) can have been in a later
    activation, and while one of those is silent, going active could roll its writes back.
    """
    holders = {o: r for o, r in answered.items() if r.exists}
    newest = max((r.info.les for r in holders.values()), default=0)
    for osd, reply in holders.items():
        life = view.osds.get(osd)
        if (reply.info.les == newest and life is not None and life.up
                and life.up_from <= newest and osd in prim.acting):
            return []
    since = max(newest, view.pool_created)
    out = []
    for osd in sorted(candidates - set(answered)):
        life = view.osds.get(osd)
        if life is None:
            continue  # removed from the cluster: its copies are given up
        if life.up:
            out.append(f"osd.{osd} (up, not answering)")
        elif life.down_at > since:
            out.append(f"osd.{osd} (down since epoch {life.down_at})")
    return out


def _peer_of(osd: int, reply: osd_pb2.PgQueryReply) -> Peer:
    if not reply.exists:
        return Peer(osd=osd)
    return Peer(osd=osd, exists=True, les=reply.info.les,
                les_acting=tuple(reply.info.les_acting), log_tail=reply.info.log_tail,
                log=[peering.Entry(r.seq, r.entry.version, r.entry.oid, r.entry.removed)
                     for r in reply.log],
                missing={m.oid: m.need for m in reply.missing})

