"""The simulated OSD cluster behind tests/sim/test_osd_sim.py: OSDs each running the PG state
machine (osd/pg_machine.py) for one PG over a store model, a monitor that changes the map as
OSDs die, come back, go out and in, clients writing and removing objects through the PG's
primary, and a checker - all on the virtual clock and misbehaving network of tests/sim.

Links between two OSDs deliver in order (the OSDs talk over one stream each way) but lose
messages; a lost request or answer leaves the sender waiting until its timeout, as a broken
stream would. Stores make a change durable after a delay; a crash loses what was not durable.

The checker asserts, after every step: a member never takes anything from a peering round
older than the newest it answered (interval fencing: no persist comes of it); an acknowledged
write is never rolled back on any member that has it; and at the end, with every OSD back and
the network healed, that the PG is active+clean within a bound, every acting member holds the
same objects, and each object holds what its history of acknowledged and failed ops allows.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import random
from dataclasses import dataclass, field
from typing import Any

from osd.pg import token_of
from osd.pg_events import (
    ClientOp,
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
    Send,
    ServeRead,
    StartTimer,
    TimerFired,
)
from osd.pg_machine import MachineConfig, PgMachine
from osd.pg_member import MemberState
from rados_py.proto.loligo import osd_pb2
from tests.sim.network import Simulator

SEEDS = int(os.environ.get("LOLIGO_SIM_SEEDS", "1000"))
REPLAY_SEED = os.environ.get("LOLIGO_SIM_SEED")
PG = "1.0"
S = osd_pb2.StoreOp
R = osd_pb2.OpReply
TIMEOUT = 2.0          # a request unanswered this long fails (the host's RPC timeout)
CLEAN_BOUND = 60.0     # virtual seconds from healing to active+clean and every op answered


class SimulationFailure(AssertionError):
    pass


@dataclass(frozen=True)
class Scenario:
    seed: int
    osds: int
    size: int
    min_size: int
    chaos_time: float
    delay: tuple[float, float]
    loss: float
    kill_every: float
    down_for: float
    out_every: float
    persist_delay: float
    clients: int
    objects: int
    op_every: float
    full_chance: float = 0.0   # a replicated write fails in the store (a full disk)

    @classmethod
    def generate(cls, seed: int) -> Scenario:
        rng = random.Random(f"osd-scenario-{seed}")
        osds = rng.choice((3, 3, 4, 5))
        return cls(seed=seed, osds=osds, size=3, min_size=2,
                   chaos_time=rng.uniform(3.0, 12.0),
                   delay=(0.0005, rng.choice((0.002, 0.01, 0.05))),
                   loss=rng.choice((0.0, 0.0, 0.01, 0.05)),
                   kill_every=rng.choice((math.inf, 2.0, 5.0)),
                   down_for=rng.choice((0.5, 2.0, 6.0)),
                   out_every=rng.choice((math.inf, math.inf, 4.0)),
                   persist_delay=rng.choice((0.0005, 0.005, 0.03)),
                   clients=rng.choice((1, 2, 4)),
                   objects=rng.choice((2, 5, 20)),
                   op_every=rng.choice((0.005, 0.05, 0.2)),
                   full_chance=rng.choice((0.0, 0.0, 0.02)))


# --- the store model --------------------------------------------------------------------------

@dataclass
class Store:
    """What one OSD keeps durably for the PG."""

    exists: bool = False
    objects: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)  # oid -> version, data
    log: dict[int, osd_pb2.PgLogEntry] = field(default_factory=dict)
    log_tail: int = 0
    les: int = 0
    les_acting: tuple[int, ...] = ()
    missing: dict[bytes, int] = field(default_factory=dict)

    def member_state(self) -> MemberState:
        return MemberState(exists=self.exists, les=self.les, les_acting=self.les_acting,
                           log_tail=self.log_tail,
                           log=sorted(self.log.items()), missing=dict(self.missing))

    def apply(self, effect: Persist) -> str:
        """Apply one persist all or nothing; the error, if it fails."""
        what = effect.what
        if isinstance(what, osd_pb2.RepOpRequest):
            last = max(self.log) if self.log else None
            if last is not None and what.seq <= last:
                return f"log seq {what.seq} is not above {last}"
            if effect.log_after and last is not None and last != effect.log_after:
                return f"log seq {what.seq} follows {effect.log_after}, the log ends at {last}"
            for op in what.ops:
                if op.kind == S.WRITE_FULL:
                    self.objects[what.oid] = (what.entry.version, op.data)
                elif op.kind == S.REMOVE:
                    self.objects.pop(what.oid, None)
            self.log[what.seq] = what.entry
            if effect.trim_to:
                self.log = {s: e for s, e in self.log.items() if s > effect.trim_to}
                self.log_tail = effect.trim_to
            self.exists = True
        elif isinstance(what, osd_pb2.PgActivate):
            if what.replace_log:
                self.log, self.log_tail = {}, what.keep_through
            else:
                self.log = {s: e for s, e in self.log.items() if s <= what.keep_through}
            for rec in what.append:
                self.log[rec.seq] = rec.entry
            self.les, self.les_acting = what.les, tuple(what.acting)
            self.missing = {m.oid: m.need for m in what.missing}
            self.exists = True
        elif isinstance(what, osd_pb2.PushRequest):
            if what.remove:
                self.objects.pop(what.oid, None)
            else:
                self.objects[what.oid] = (what.version, what.data)
            if what.last or what.remove:
                self.missing.pop(what.oid, None)
            self.exists = True
        elif isinstance(what, osd_pb2.PgRemove):
            self.__init__()  # type: ignore[misc]
        return ""


# --- one OSD ----------------------------------------------------------------------------------

class Osd:
    def __init__(self, world: World, osd: int) -> None:
        self.world = world
        self.id = osd
        self.store = Store()
        self.alive = False
        self.life = 0                      # bumped at each crash: stale callbacks are ignored
        self.machine: PgMachine | None = None
        self.inbound: dict[int, tuple[int, int]] = {}   # local rid -> (src osd, its rid)
        self._rids = itertools.count(1 << 20)
        self.waiting: dict[int, Any] = {}  # rid -> what waits for the answer (timeouts)
        self.recoveries: dict[int, _Copy] = {}
        self.durable_at = 0.0

    def start(self) -> None:
        self.alive = True
        self.life += 1
        self.machine = PgMachine(self.id, PG, self.store.member_state(),
                                 MachineConfig(recovery_max_active=2, peering_retry=0.2,
                                               recovery_retry=0.2))
        self.inbound.clear()
        self.waiting.clear()
        self.recoveries.clear()

    def crash(self) -> None:
        self.alive = False
        self.life += 1
        self.machine = None

    def step(self, event: Any) -> None:
        if not self.alive or self.machine is None:
            return
        fence_before = self.machine.member.fence
        effects = self.machine.step(event)
        self.world.checker.after_step(self, event, effects, fence_before)
        for effect in effects:
            self.carry_out(effect)

    def carry_out(self, effect: Any) -> None:
        w = self.world
        if isinstance(effect, Send):
            w.request(self, effect.dst, effect.rid, effect.msg,
                      lambda reply, error, rid=effect.rid: self.step(Response(rid, reply, error)))
        elif isinstance(effect, Respond):
            src = self.inbound.pop(effect.rid, None)
            if src is not None:
                w.answer(self.id, src, effect.msg,
                         f"{effect.error[0]}: {effect.error[1]}" if effect.error else "")
        elif isinstance(effect, Persist):  # a store applies in the order it was asked
            life = self.life
            self.durable_at = max(self.durable_at,
                                  w.sim.now + w.rng.uniform(0, w.scenario.persist_delay))
            w.sim.at(self.durable_at, self._durable, effect, life)
        elif isinstance(effect, ServeRead):
            src = self.inbound.pop(effect.rid, None)
            if src is not None:
                w.answer(self.id, src, self.read(effect.msg), "")
        elif isinstance(effect, Execute):  # the host reads the store: later, as a task would
            life = self.life
            w.sim.after(0, lambda: self.life == life and self.step(
                w.clients.execute(self, effect.op)))
        elif isinstance(effect, ReplyOp):
            w.clients.replied(self, effect.op, effect.reply)
        elif isinstance(effect, Recover):
            _Copy(self, effect).start()
        elif isinstance(effect, StartTimer):
            life = self.life
            w.sim.after(effect.delay, lambda: self.life == life and self.step(
                TimerFired(effect.key)))
        elif isinstance(effect, Info):
            w.trace(f"osd.{self.id}: {effect.text}")

    def _durable(self, effect: Persist, life: int) -> None:
        if life != self.life:
            return  # crashed before it was durable: never happened
        before = dict(self.store.log)
        w = self.world
        if (isinstance(effect.what, osd_pb2.RepOpRequest) and w.chaos
                and w.rng.random() < w.scenario.full_chance):
            error = "no space left (simulated)"
        else:
            error = self.store.apply(effect)
        self.world.checker.after_persist(self, effect, before, error)
        self.step(Persisted(effect.pid, error, "InvalidArgument" if error else ""))

    def read(self, msg: Any) -> Any:
        st = self.store
        if isinstance(msg, osd_pb2.PullRequest):
            held = st.objects.get(msg.oid)
            if held is None:
                return osd_pb2.PullReply(exists=False)
            return osd_pb2.PullReply(exists=True, version=held[0], size=len(held[1]),
                                     data=held[1])
        if isinstance(msg, osd_pb2.InventoryRequest):
            return osd_pb2.InventoryReply(objects=[
                osd_pb2.MissingItem(oid=o, need=v) for o, (v, _) in sorted(st.objects.items())])
        raise SimulationFailure(f"unexpected read {msg}")


class _Copy:
    """The host's side of a Recover effect: pull from the first source holding the version,
    push to every target (members check the round), then Recovered."""

    def __init__(self, osd: Osd, effect: Recover) -> None:
        self.osd = osd
        self.effect = effect
        self.sources = list(effect.sources)
        self.life = osd.life

    def start(self) -> None:
        if self.effect.need == 0:
            return self._push(osd_pb2.PushRequest(pgid=PG, oid=self.effect.oid, remove=True,
                                                  interval=self.effect.interval), 0)
        self._next_source()

    def _next_source(self) -> None:
        if not self.sources:
            return self._done(Recovered(self.effect.rid, unfound=True))
        source = self.sources.pop(0)
        self.osd.world.request(self.osd, source, None, osd_pb2.PullRequest(
            pgid=PG, oid=self.effect.oid, interval=self.effect.interval), self._pulled)

    def _pulled(self, reply: Any, error: str) -> None:
        if error or not reply.exists or reply.version != self.effect.need:
            return self._next_source()
        self._push(osd_pb2.PushRequest(pgid=PG, oid=self.effect.oid, version=reply.version,
                                       first=True, last=True, data=reply.data,
                                       interval=self.effect.interval), len(reply.data))

    def _push(self, push: osd_pb2.PushRequest, moved: int) -> None:
        left = set(self.effect.targets)
        errors: list[str] = []

        def pushed(target: int, reply: Any, error: str) -> None:
            left.discard(target)
            if error:
                errors.append(error)
            if not left:
                self._done(Recovered(self.effect.rid, moved, error="; ".join(errors),
                                     target_failed=bool(errors)))
        for target in self.effect.targets:
            self.osd.world.request(self.osd, target, None, push,
                                   lambda r, e, t=target: pushed(t, r, e))

    def _done(self, event: Recovered) -> None:
        if self.osd.life == self.life:
            self.osd.step(event)


# --- clients ----------------------------------------------------------------------------------

@dataclass
class Timed:
    start: float
    end: float
    after: bytes | None
    acked: bool


@dataclass
class _ClientOp:
    op: int
    client: int
    tid: int
    oid: bytes
    kind: str
    data: bytes | None
    start: float
    deadline: float
    attempt: int = 0
    done: bool = False


class Clients:
    """Writes (write_full, remove) and reads through whoever is primary, resending (same
    client and tid) after INACTIVE, REPLICA_FAILED or a timeout, until a deadline."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.ops: dict[int, _ClientOp] = {}
        self.history: dict[bytes, list[Timed]] = {}
        self.acked = self.failed = 0
        self._ids = itertools.count(1)
        self._tids = itertools.count(1)
        self.stopped = False
        self.reads: list[tuple[bytes, bytes | None, float, float]] = []
        self.arrivals: dict[int, int] = {}   # the machine's op id -> the client's op

    def start(self) -> None:
        for c in range(self.world.scenario.clients):
            self.world.sim.after(self.world.rng.uniform(0, 0.1), self._next, c)

    def _next(self, client: int) -> None:
        if self.stopped:
            return
        w = self.world
        oid = b"o%d" % w.rng.randrange(w.scenario.objects)
        roll = w.rng.random()
        kind = "read" if roll < 0.2 else "remove" if roll < 0.3 else "write"
        data = w.rng.randbytes(w.rng.choice((1, 10, 100))) if kind == "write" else None
        op = _ClientOp(next(self._ids), client, next(self._tids), oid, kind, data,
                       w.sim.now, w.sim.now + 10.0)
        self.ops[op.op] = op
        self._send(op)

    def _send(self, op: _ClientOp) -> None:
        w = self.world
        if op.done:
            return
        if w.sim.now > op.deadline:
            return self._end(op, acked=False)
        op.attempt += 1
        attempt = op.attempt
        primary = w.acting()[0] if w.acting() else None
        target = w.osds.get(primary) if primary is not None else None
        if target is None or not target.alive:
            w.sim.after(0.1, self._retry, op, attempt)
            return
        w.sim.after(TIMEOUT, self._retry, op, attempt)
        w.sim.after(w.rng.uniform(*w.scenario.delay), self._arrive, target, op, attempt)

    def _arrive(self, target: Osd, op: _ClientOp, attempt: int) -> None:
        if target.alive and not op.done and attempt == op.attempt:
            local = next(self._ids)  # the host names each arrival (a resend is another op)
            self.arrivals[local] = op.op
            target.step(ClientOp(local, op.oid, op.kind != "read", f"c{op.client}", op.tid))

    def _retry(self, op: _ClientOp, attempt: int) -> None:
        if not op.done and attempt == op.attempt:
            self._send(op)

    def execute(self, osd: Osd, op_id: int) -> Executed:
        """What ops.execute would resolve, against this OSD's store."""
        op = self.ops.get(self.arrivals.get(op_id, -1))
        if op is None:  # answered already (its round closed): the machine ignores this
            return Executed(op_id, errno=5, message="gone")
        held = osd.store.objects.get(op.oid)
        if op.kind == "read":
            if held is None:
                return Executed(op_id, errno=2, message="no such object")
            return Executed(op_id, results=(osd_pb2.OsdOpResult(data=held[1]),),
                            version_before=held[0])
        if op.kind == "remove":
            if held is None:
                return Executed(op_id, errno=2, message="no such object")
            return Executed(op_id, store_ops=(S(kind=S.REMOVE),), exists_after=False,
                            version_before=held[0])
        return Executed(op_id, store_ops=(S(kind=S.WRITE_FULL, data=op.data),),
                        version_before=held[0] if held else 0)

    def replied(self, osd: Osd, op_id: int, reply: osd_pb2.OpReply) -> None:
        op = self.ops.get(self.arrivals.pop(op_id, -1))
        if op is None or op.done:
            return
        w = self.world
        if reply.status == R.OK:
            if op.kind != "read":
                w.checker.acked(reply.version, op.oid)
            if op.kind == "read":
                self.reads.append((op.oid, reply.results[0].data if reply.results else None,
                                   op.start, w.sim.now))
            return self._end(op, acked=True)
        if reply.status == R.FAILED:
            if reply.errno == 2:  # ENOENT: a remove of an absent object leaves it absent
                return self._end(op, acked=op.kind == "remove")
            return self._end(op, acked=False)
        op.attempt += 1  # INACTIVE, REPLICA_FAILED: resend after a pause
        w.sim.after(0.05, self._retry, op, op.attempt)

    def _end(self, op: _ClientOp, acked: bool) -> None:
        op.done = True
        w = self.world
        if op.kind != "read":
            self.history.setdefault(op.oid, []).append(
                Timed(op.start, w.sim.now, op.data, acked))
            if acked:
                self.acked += 1
            else:
                self.failed += 1
        w.sim.after(w.rng.expovariate(1 / w.scenario.op_every), self._next, op.client)

    def pending(self) -> int:
        return sum(1 for op in self.ops.values() if not op.done)


def final_candidates(ops: list[Timed]) -> set[bytes | None]:
    """As the thrash test's: the value of an op no acknowledged op started after the end of,
    or absent when none was acknowledged."""
    out = {op.after for op in ops if not any(o.acked and o.start > op.end for o in ops)}
    if not any(op.acked for op in ops):
        out.add(None)
    return out


# --- the checker ------------------------------------------------------------------------------

class Checker:
    def __init__(self, world: World) -> None:
        self.world = world
        self.acked_versions: dict[int, bytes] = {}   # version -> oid, of acknowledged writes

    def after_step(self, osd: Osd, event: Any, effects: list[Any], fence_before: Any) -> None:
        if isinstance(event, Receive):
            interval = getattr(event.msg, "interval", None)
            token = token_of(interval) if interval is not None else None
            if token is not None and token != (0, 0) and token < fence_before:
                persisted = [e for e in effects if isinstance(e, Persist)]
                if persisted:
                    raise SimulationFailure(
                        f"osd.{osd.id} took {type(event.msg).__name__} of round {token} after "
                        f"answering round {fence_before}: {persisted}")

    def after_persist(self, osd: Osd, effect: Persist, before: dict[int, Any],
                      error: str) -> None:
        if error or not isinstance(effect.what, osd_pb2.PgActivate):
            return
        store = osd.store
        for seq, entry in before.items():
            if entry.version in self.acked_versions and seq not in store.log \
                    and seq > store.log_tail:
                raise SimulationFailure(
                    f"osd.{osd.id}: activation {effect.what.interval} rolled back the "
                    f"acknowledged entry {seq} ({entry.oid!r}, version {entry.version})")

    def acked(self, version: int, oid: bytes) -> None:
        self.acked_versions[version] = oid


# --- the world --------------------------------------------------------------------------------

class World:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.sim = Simulator()
        self.osds = {i: Osd(self, i) for i in range(scenario.osds)}
        self.epoch = 1
        self.life = {i: OsdLife(False, 0, 0) for i in range(scenario.osds)}
        self.out: set[int] = set()
        self.order = list(range(scenario.osds))
        self.rng.shuffle(self.order)           # CRUSH's fixed preference for this PG
        self.links: dict[tuple[int, int], float] = {}   # last delivery time per link (FIFO)
        self.checker = Checker(self)
        self.clients = Clients(self)
        self.events: list[str] = []
        self.chaos = True

    def trace(self, text: str) -> None:
        self.events.append(f"{self.sim.now:9.4f} {text}")

    # the map
    def raw(self) -> tuple[int, ...]:
        return tuple([o for o in self.order if o not in self.out][:self.scenario.size])

    def acting(self) -> tuple[int, ...]:
        return tuple(o for o in self.raw() if self.life[o].up)

    def view(self) -> MapView:
        return MapView(self.epoch, self.acting(), self.acting(), self.raw(), self.scenario.size,
                       self.scenario.min_size, 1, dict(self.life))

    def publish(self) -> None:
        """A new epoch; each live OSD learns it after its own delay."""
        self.epoch += 1
        view = self.view()
        self.trace(f"epoch {self.epoch}: acting {list(view.acting)} raw {list(view.raw)}")
        for osd in self.osds.values():
            if osd.alive:
                life = osd.life
                self.sim.after(self.rng.uniform(0, 0.05), self._learn, osd, life, view)

    def _learn(self, osd: Osd, life: int, view: MapView) -> None:
        if osd.life == life and osd.machine is not None and (
                osd.machine.view is None or view.epoch > osd.machine.view.epoch):
            osd.step(MapChange(view))

    def boot(self, i: int) -> None:
        osd = self.osds[i]
        osd.start()
        self.life[i] = OsdLife(True, self.epoch + 1, self.life[i].down_at)
        self.trace(f"osd.{i} boots")
        self.publish()

    def kill(self, i: int) -> None:
        self.osds[i].crash()
        self.trace(f"osd.{i} killed")
        self.sim.after(self.rng.uniform(0.1, 1.0), self._mark_down, i)

    def _mark_down(self, i: int) -> None:
        if not self.osds[i].alive and self.life[i].up:
            self.life[i] = OsdLife(False, self.life[i].up_from, self.epoch + 1)
            self.publish()

    # messages between OSDs
    def request(self, src: Osd, dst: int, rid: int | None, msg: Any,
                on_answer: Any) -> None:
        """Send a request; `on_answer(reply, error)` once, with an error after TIMEOUT."""
        answered = [False]
        life = src.life

        def answer(reply: Any, error: str) -> None:
            if answered[0] or src.life != life:
                return
            answered[0] = True
            on_answer(reply, error)
        self.sim.after(TIMEOUT, answer, None, "timed out")
        target = self.osds[dst]
        if dst == src.id:  # to itself: no network
            self.sim.after(0, self._deliver, src.id, target, msg, answer)
            return
        self._link(src.id, dst, lambda: self._deliver(src.id, target, msg, answer))

    def _link(self, a: int, b: int, action: Any) -> None:
        if self.chaos and self.rng.random() < self.scenario.loss:
            return
        when = max(self.sim.now + self.rng.uniform(*self.scenario.delay),
                   self.links.get((a, b), 0.0))
        self.links[(a, b)] = when
        self.sim.at(when, action)

    def _deliver(self, src: int, target: Osd, msg: Any, answer: Any) -> None:
        if not target.alive:
            return  # the caller times out
        rid = next(target._rids)
        target.inbound[rid] = (src, id(answer))
        target.waiting[id(answer)] = answer
        target.step(Receive(src, rid, msg))

    def answer(self, dst: int, src: tuple[int, int], reply: Any, error: str) -> None:
        """`dst` answers request `src` = (requesting osd, its answer callback id)."""
        requester, key = src
        callback = self.osds[dst].waiting.pop(key, None)
        if callback is None:
            return
        if requester == dst:
            self.sim.after(0, callback, reply, error)
        else:
            self._link(dst, requester, lambda: callback(reply, error))

    # the run
    def run(self, trace_length: int = 60) -> World:
        try:
            self._run()
        except SimulationFailure as exc:
            tail = "\n".join(self.events[-trace_length:])
            raise SimulationFailure(f"seed {self.scenario.seed} ({self.scenario}): {exc}\n"
                                    f"last events:\n{tail}") from None
        return self

    def _run(self) -> None:
        sc = self.scenario
        for i in self.osds:
            self.boot(i)
        self.sim.run_until(1.0)
        self.clients.start()
        t = 1.0
        while t < 1.0 + sc.chaos_time:
            t += 0.1
            self.sim.run_until(t)
            self._chaos()
        self.chaos = False
        for i, osd in self.osds.items():
            if not osd.alive:
                self.boot(i)
        if self.out:
            self.out.clear()
            self.publish()
        self.clients.stopped = True
        end = t + CLEAN_BOUND
        while t < end:
            t += 0.5
            self.sim.run_until(t)
            if self._settled():
                break
        else:
            raise SimulationFailure(self._why_not_settled())
        self._check_final()

    def _chaos(self) -> None:
        sc, rng = self.scenario, self.rng
        alive = [i for i, o in self.osds.items() if o.alive]
        if rng.random() < 0.1 / sc.kill_every:
            down = [i for i, o in self.osds.items() if not o.alive]
            if len(down) < sc.size - sc.min_size and len(alive) > sc.min_size:
                victim = rng.choice(alive)
                self.kill(victim)
                self.sim.after(rng.uniform(0.1, sc.down_for), self._revive, victim)
        if rng.random() < 0.1 / sc.out_every and sc.osds > sc.size:
            candidates = [i for i in self.osds if i not in self.out]
            if len(candidates) > sc.size:
                osd = rng.choice(candidates)
                self.out.add(osd)
                self.trace(f"osd.{osd} out")
                self.publish()
                self.sim.after(rng.uniform(0.5, 3.0), self._back_in, osd)

    def _revive(self, i: int) -> None:
        if not self.osds[i].alive and self.chaos:
            self.boot(i)

    def _back_in(self, i: int) -> None:
        if i in self.out and self.chaos:
            self.out.discard(i)
            self.trace(f"osd.{i} in")
            self.publish()

    def _primary_machine(self) -> PgMachine | None:
        acting = self.acting()
        if not acting:
            return None
        osd = self.osds[acting[0]]
        return osd.machine if osd.alive else None

    def _settled(self) -> bool:
        m = self._primary_machine()
        return (m is not None and m.primary is not None
                and m.primary.state() == "active+clean" and self.clients.pending() == 0)

    def _why_not_settled(self) -> str:
        m = self._primary_machine()
        state = "no primary" if m is None or m.primary is None else (
            f"{m.primary.state()} ({m.primary.why})")
        return (f"not active+clean with every op answered {CLEAN_BOUND:.0f}s after healing: "
                f"PG {state}, {self.clients.pending()} ops pending")

    def _check_final(self) -> None:
        acting = self.acting()
        stores = {o: self.osds[o].store.objects for o in acting}
        first = stores[acting[0]]
        for osd, objects in stores.items():
            if objects != first:
                diff = sorted(set(objects.items()) ^ set(first.items()))[:4]
                raise SimulationFailure(f"osd.{osd} and osd.{acting[0]} differ: {diff}")
        for oid, ops in self.clients.history.items():
            held = first.get(oid)
            got = held[1] if held is not None else None
            allowed = final_candidates(ops)
            if got not in allowed:
                raise SimulationFailure(
                    f"{oid!r} holds {got!r}; its ops allow {allowed}: " + "; ".join(
                        f"{o.start:.3f}-{o.end:.3f} {o.after!r} {'ok' if o.acked else 'error'}"
                        for o in ops[-8:]))

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for line in self.events:
            h.update(line.encode())
        for osd in sorted(self.osds):
            for oid, (v, d) in sorted(self.osds[osd].store.objects.items()):
                h.update(b"%d %s %d %s" % (osd, oid, v, d))
        return h.hexdigest()
