"""A PG member's state and rules, pure (no I/O): the half of osd/pg_machine.py that every OSD
holding a copy of the PG runs, primary or not.

It mirrors what the member's store holds for the PG (log, log tail, last activation, missing
set, scrub stamps) plus what only lives in memory (the fence, the writes queued but not yet
durable, the dedup table rebuilt from the log), and decides what each request of the PG's
primary does:

- a write (RepOpRequest) must come from the round the member was activated for, extend the log
  by exactly one and follow no failed write; it is persisted at once (pipelined: the next can
  be queued before this one is durable) and answered when durable. A resend of a write the
  member has is answered without applying it again; one still in flight is answered with it.
- a query raises the fence to its round (older rounds are refused from then on), waits until
  every queued write is durable, and answers with info, log and missing set;
- an activation (its round not older than the fence) replaces or rolls back the log, appends
  the authoritative entries, records the activation and the missing set; a push (the exact
  round) writes part of a recovered object and takes it off the missing set when complete;
- reads (pull, inventory, scrub map) are served by the host once the fence admits them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from osd.pg import NO_ROUND, DedupTable, Token, refusal, token_of
from osd.pg_events import Effect, Persist, Respond, ServeRead
from rados_py.proto.loligo import osd_pb2

__all__ = ["LOG_MAX", "LOG_TRIM_SLACK", "Member", "MemberState"]

LOG_MAX = 2000        # entries kept per PG log; older ones are trimmed (backfill beyond that)
LOG_TRIM_SLACK = 200  # trim in batches of this many, not at every write


@dataclass
class MemberState:
    """What a member's store holds for a PG (exists=False: nothing)."""

    exists: bool = False
    les: int = 0
    les_acting: tuple[int, ...] = ()
    log_tail: int = 0
    log: list[tuple[int, osd_pb2.PgLogEntry]] = field(default_factory=list)
    missing: dict[bytes, int] = field(default_factory=dict)
    scrubbed: tuple[float, float] = (0.0, 0.0)

    @property
    def last_seq(self) -> int:
        return self.log[-1][0] if self.log else self.log_tail

    @property
    def last_update(self) -> int:
        return self.log[-1][1].version if self.log else 0


class _Refused(Exception):
    """A request this member will not take: (family, message) for the answer."""

    def __init__(self, family: str, message: str) -> None:
        super().__init__(message)
        self.family = family


def _stale(message: str) -> _Refused:
    return _Refused("StaleEpoch", message)


@dataclass
class _Pending:
    """A persist in flight: what to answer, and how the state changes once it is durable."""

    kind: str                      # "write", "activate", "push", "remove", "scrubbed"
    msg: object
    rids: list[int]                # requests answered when it is durable
    local: bool = False            # the primary's own write (the machine answers it)
    trim_to: int = 0               # a write's log trim


class Member:
    """One OSD's copy of one PG. `handle(src, rid, msg)` for a request of the PG's primary,
    `persisted(pid, error)` when a Persist it asked for ended; both return effects."""

    def __init__(self, osd: int, pgid: str, state: MemberState, next_pid) -> None:
        self.osd = osd
        self.pgid = pgid
        self.state = state
        self._next_pid = next_pid      # shared with the machine: persist ids are unique
        self.fence: Token = (state.les, 0)
        self.last_seq = state.last_seq           # counts writes queued, not only durable ones
        self.dedup = DedupTable()
        for _, entry in state.log:
            self._remember(entry)
        self.failed = ""                # a write failed here: refuse writes until re-peered
        self.pending: dict[int, _Pending] = {}
        self.inflight: dict[tuple[str, int], int] = {}   # (client, tid) -> pid of its write
        self.waiting: list[tuple[int, object]] = []      # queries/activations/removes: drain

    # --- helpers ----------------------------------------------------------------------------
    def _remember(self, entry: osd_pb2.PgLogEntry) -> None:
        # the version only: the reply a resend gets is built from it when needed
        self.dedup.put(entry.client, entry.tid, entry.version)

    def changes_queued(self) -> bool:
        """A write, activation or removal is on its way to the store: the state in memory is
        not yet what a query must report (a removal answered as the old log lets the primary
        count on a copy that is about to vanish)."""
        return any(p.kind in _CHANGES for p in self.pending.values())

    def check(self, kind: str, interval: osd_pb2.Interval | None) -> Token:
        token = token_of(interval)
        why = refusal(kind, token, self.fence)
        if why:
            raise _stale(f"{self.pgid}: {why}")
        return token

    def _persist(self, kind: str, msg: object, rids: list[int], local: bool = False,
                 **extra: object) -> Persist:
        pid = self._next_pid()
        self.pending[pid] = _Pending(kind, msg, rids, local,
                                     int(extra.get("trim_to", 0)))  # type: ignore[call-overload]
        return Persist(pid, msg if kind != "scrubbed" else "scrubbed", **extra)  # type: ignore[arg-type]

    # --- requests of the primary --------------------------------------------------------------
    def handle(self, rid: int, msg: object) -> list[Effect]:
        try:
            return self._handle(rid, msg)
        except _Refused as exc:
            return [Respond(rid, error=(exc.family, str(exc)))]

    def _handle(self, rid: int, msg: object) -> list[Effect]:
        if isinstance(msg, osd_pb2.RepOpRequest):
            return self.start_write(msg, rid)
        if isinstance(msg, osd_pb2.PgQuery):
            if not (msg.interval.epoch or msg.interval.round):  # an inspection: no fence
                return [Respond(rid, self.query_reply())]
            self.fence = max(self.fence, self.check("query", msg.interval))
            return self._after_drain(rid, msg)
        if isinstance(msg, osd_pb2.PgActivate):
            self.fence = max(self.fence, self.check("activate", msg.interval))
            return self._after_drain(rid, msg)
        if isinstance(msg, osd_pb2.PgRemove):
            self.check("remove", msg.interval)
            return self._after_drain(rid, msg)
        if isinstance(msg, osd_pb2.PushRequest):
            self.check("push", msg.interval)
            return [self._persist("push", msg, [rid])]
        if isinstance(msg, osd_pb2.PullRequest | osd_pb2.InventoryRequest):
            self.check("pull" if isinstance(msg, osd_pb2.PullRequest) else "inventory",
                       msg.interval)
            return [ServeRead(rid, msg)]
        if isinstance(msg, osd_pb2.ScrubMapRequest):
            self.check("scrub", msg.interval)
            return [ServeRead(rid, msg)]
        raise _Refused("InvalidArgument", f"{self.pgid}: no such request {type(msg).__name__}")

    def _after_drain(self, rid: int, msg: object) -> list[Effect]:
        """Queries, activations and removals see every write, activation and removal queued
        before them durable."""
        self.waiting.append((rid, msg))
        return self._drain() if not self.changes_queued() else []

    def _drain(self) -> list[Effect]:
        out: list[Effect] = []
        while self.waiting and not self.changes_queued():
            rid, msg = self.waiting.pop(0)
            try:
                out += self._now(rid, msg)
            except _Refused as exc:
                out.append(Respond(rid, error=(exc.family, str(exc))))
        return out

    def _now(self, rid: int, msg: object) -> list[Effect]:
        if isinstance(msg, osd_pb2.PgQuery):
            return [Respond(rid, self.query_reply())]
        if isinstance(msg, osd_pb2.PgActivate):
            self.check("activate", msg.interval)  # a newer round may have come meanwhile
            tail = msg.keep_through if msg.replace_log else self.state.log_tail
            return [self._persist("activate", msg, [rid], stamps=self.state.scrubbed,
                                  info=(msg.les, tuple(msg.acting), tail))]
        assert isinstance(msg, osd_pb2.PgRemove)
        self.check("remove", msg.interval)
        return [self._persist("remove", msg, [rid])]

    def query_reply(self) -> osd_pb2.PgQueryReply:
        st = self.state
        reply = osd_pb2.PgQueryReply(exists=st.exists)
        if not st.exists:
            return reply
        reply.info.CopyFrom(osd_pb2.PgInfo(
            pgid=self.pgid, last_update=st.last_update, last_seq=st.last_seq,
            log_tail=st.log_tail, les=st.les, les_acting=st.les_acting))
        reply.log.extend(osd_pb2.PgLogRecord(seq=s, entry=e) for s, e in st.log)
        reply.missing.extend(osd_pb2.MissingItem(oid=o, need=n) for o, n in st.missing.items())
        return reply

    # --- writes ------------------------------------------------------------------------------
    def start_write(self, rep: osd_pb2.RepOpRequest, rid: int | None = None) -> list[Effect]:
        """Check a write and persist it at once (rid None: the primary's own, which the
        machine answers; a refusal raises for it and is answered for a peer's)."""
        key = (rep.entry.client, rep.entry.tid)
        if rep.entry.client:
            if self.dedup.get(*key) is not None:
                return [] if rid is None else [Respond(rid, osd_pb2.RepOpReply(applied=False))]
            pid = self.inflight.get(key)
            if pid is not None:
                if rid is not None:
                    self.pending[pid].rids.append(-rid)  # negative: answered "not applied"
                return []
        self.check("write", rep.interval if rep.HasField("interval") else None)
        if rep.epoch < self.state.les:
            raise _stale(f"{self.pgid}: a write of epoch {rep.epoch}, from before this "
                         f"member's activation at epoch {self.state.les}: dropped")
        if self.failed:
            raise _stale(f"{self.pgid}: {self.failed}; refusing writes until the PG peers "
                         "again")
        if rep.seq != self.last_seq + 1:
            taken = rep.seq <= self.last_seq
            raise _stale(f"{self.pgid}: log position {rep.seq} is "
                         f"{'taken here by another write' if taken else 'past the end'} "
                         f"(last {self.last_seq}): the PG must peer again")
        trim_to = 0
        if rep.seq - self.state.log_tail > LOG_MAX + LOG_TRIM_SLACK:
            trim_to = rep.seq - LOG_MAX
        effect = self._persist("write", rep, [] if rid is None else [rid], local=rid is None,
                               log_after=self.last_seq if self.last_seq > self.state.log_tail
                               else 0, trim_to=trim_to)
        self.last_seq = rep.seq
        if rep.entry.client:
            self.inflight[key] = effect.pid
        return [effect]

    # --- persistence results -------------------------------------------------------------------
    def persisted(self, pid: int, error: str, family: str = "LoligoError"
                  ) -> tuple[list[Effect], _Pending | None]:
        """A Persist ended; the effects, and what it was (for the machine's own writes)."""
        pending = self.pending.pop(pid, None)
        if pending is None:
            return [], None
        out: list[Effect] = []
        msg = pending.msg
        if pending.kind == "write":
            assert isinstance(msg, osd_pb2.RepOpRequest)
            self.inflight.pop((msg.entry.client, msg.entry.tid), None)
            if error:
                self.failed = f"write at log position {msg.seq} failed here ({error})"
            else:  # the state in memory follows what is durable (persists end in order)
                st = self.state
                st.log.append((msg.seq, msg.entry))
                st.exists = True
                if pending.trim_to:
                    st.log = [(s, e) for s, e in st.log if s > pending.trim_to]
                    st.log_tail = pending.trim_to
                self._remember(msg.entry)
        elif not error:
            self._apply(pending.kind, msg)
        for rid in pending.rids:
            if error:
                out.append(Respond(abs(rid), error=(family, f"osd.{self.osd}: {error}")))
            elif pending.kind == "write":
                out.append(Respond(abs(rid), osd_pb2.RepOpReply(applied=rid > 0)))
            else:
                out.append(Respond(rid, _ACK[pending.kind]()))
        out += self._drain()
        return out, pending

    def _apply(self, kind: str, msg: object) -> None:
        st = self.state
        if kind == "activate":
            assert isinstance(msg, osd_pb2.PgActivate)
            if msg.replace_log:
                st.log, st.log_tail = [], msg.keep_through
            else:
                st.log = [(s, e) for s, e in st.log if s <= msg.keep_through]
            st.log += [(r.seq, r.entry) for r in msg.append]
            st.les, st.les_acting = msg.les, tuple(msg.acting)
            st.missing = {m.oid: m.need for m in msg.missing}
            st.exists = True
            self.fence = max(self.fence, token_of(msg.interval))
            self.last_seq = st.last_seq
            self.failed = ""
            self.dedup = DedupTable()
            for _, entry in st.log:
                self._remember(entry)
        elif kind == "push":
            assert isinstance(msg, osd_pb2.PushRequest)
            st.exists = True
            if msg.last or msg.remove:
                st.missing.pop(msg.oid, None)
        elif kind == "remove":
            self.state = MemberState()
            self.last_seq = 0
            self.dedup = DedupTable()
        elif kind == "scrubbed":
            pass

    def set_scrubbed(self, stamps: tuple[float, float]) -> Persist:
        st = self.state
        st.scrubbed = stamps
        return self._persist("scrubbed", "scrubbed", [], stamps=stamps,
                             info=(st.les, st.les_acting, st.log_tail))


_CHANGES = frozenset({"write", "activate", "remove"})
_ACK = {"activate": osd_pb2.PgActivateReply, "push": osd_pb2.PushReply,
        "remove": osd_pb2.PgRemoveReply, "scrubbed": osd_pb2.PgActivateReply}
NO_FENCE = NO_ROUND
