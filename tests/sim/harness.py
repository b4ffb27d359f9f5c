"""The simulated Raft cluster behind tests/sim/test_raft_sim.py: scenarios drawn from a seed, hosts
that persist before they act (or crash part-way), a checker of Raft's safety properties after
every step, clients, and the cluster that runs it all on a virtual clock and network."""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from mon.raft import (
    AppendEntries,
    AppendEntriesReply,
    Apply,
    ApplySnapshot,
    Effect,
    Entry,
    EntryKind,
    Event,
    InstallSnapshot,
    InstallSnapshotReply,
    LeaderChanged,
    PersistEntries,
    PersistentState,
    PersistSnapshot,
    PersistState,
    ProposalResult,
    Propose,
    RaftConfig,
    RaftNode,
    ReadIndex,
    ReadIndexResult,
    Receive,
    RequestVote,
    RequestVoteReply,
    Role,
    Send,
    Snapshot,
    SnapshotTaken,
    Tick,
)
from tests.sim.network import LinkFaults, Network, Simulator

SEEDS = int(os.environ.get("LOLIGO_SIM_SEEDS", "1000"))
REPLAY_SEED = os.environ.get("LOLIGO_SIM_SEED")
CONFIG = RaftConfig()  # the production defaults: virtual time makes long timeouts free
HEALTHY = LinkFaults()  # the network once healed: a local network, no loss
# Virtual seconds from healing until a new proposal commits, and then until every node has applied
# it, on top of the time the backlog takes to replicate (one message per round trip).
LIVENESS_BOUND = 10.0
CATCH_UP_BOUND = 5.0


class SimulationFailure(AssertionError):
    pass


# ---------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Scenario:
    """Everything random about a run except the run itself."""

    seed: int
    members: tuple[str, ...]
    chaos_time: float  # virtual seconds of faults before everything heals
    faults: LinkFaults
    partition_every: float  # mean seconds between partitions (inf: none)
    partition_for: float  # longest partition
    crash_every: float  # mean seconds between crashes (inf: none)
    down_for: float  # longest downtime
    crash_mid_step: float  # share of crashes that happen halfway through handling a step
    snapshot_chance: float  # chance, after applying, that the host compacts its log
    request_every: float  # mean seconds between one client's requests
    read_share: float  # share of requests that are reads
    tick_jitter: float  # a host ticks up to this late (the daemon ticks on a timer)
    config: RaftConfig = CONFIG

    @classmethod
    def generate(cls, seed: int) -> Scenario:
        rng = random.Random(f"scenario-{seed}")
        size = rng.choice((1, 3, 3, 3, 3, 3, 5, 5, 5, 5))
        return cls(
            seed=seed,
            members=tuple(f"m{i}" for i in range(size)),
            chaos_time=rng.uniform(10.0, 40.0),
            faults=LinkFaults(min_delay=0.0005, max_delay=rng.choice((0.005, 0.02, 0.1, 0.4)),
                              loss=rng.choice((0.0, 0.01, 0.05, 0.2)),
                              duplicate=rng.choice((0.0, 0.02, 0.1))),
            partition_every=rng.choice((math.inf, 1.0, 3.0)),
            partition_for=rng.choice((0.5, 2.0, 5.0)),
            crash_every=rng.choice((math.inf, 1.0, 3.0)),
            down_for=rng.choice((0.2, 1.0, 4.0)),
            crash_mid_step=rng.choice((0.0, 0.5, 1.0)),
            snapshot_chance=rng.choice((0.0, 0.05, 0.3)),
            request_every=rng.choice((0.05, 0.2)),
            read_share=rng.choice((0.0, 0.2)),
            tick_jitter=rng.choice((0.0, 0.02)),
            # Small batches make followers acknowledge part of what the leader holds, which is
            # what the commit rules are about (figure 8 of the Raft paper).
            config=replace(CONFIG, max_entries_per_message=rng.choice((1, 2, 64))),
        )

    @classmethod
    def quiet(cls, seed: int, size: int) -> Scenario:
        """A healthy network and no faults, for scenario tests that inject their own."""
        return cls(seed, tuple(f"m{i}" for i in range(size)), 0.0, LinkFaults(), math.inf, 0.0,
                   math.inf, 0.0, 0.0, 0.0, 0.2, 0.0, 0.0)


# ---------------------------------------------------------------------------------------------
# Hosts: what the monitor daemon does around its node


def chain(digest: bytes, entry: Entry) -> bytes:
    return hashlib.blake2b(digest + entry.kind.value.encode() + b"\0" + entry.payload,
                           digest_size=16).digest()


@dataclass
class PlannedCrash:
    """Crash during the next step for which ``when(effects)`` holds, after handling the first
    ``keep`` share of its effects (0: nothing of the step became durable or left the node)."""

    keep: float
    when: Callable[[list[Effect]], bool] = lambda effects: True


class Host:
    """One monitor minus gRPC and disk: it makes a step's persist effects durable before acting on
    the rest, applies committed entries to its state machine and compacts now and then.

    The state machine is a hash chain over the applied entries: two hosts agree on the state at an
    index exactly when they applied the same commands up to it, and the snapshot data is the chain
    value, so a wrong snapshot cannot go unnoticed.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.durable = PersistentState()
        self.before_last_write: PersistentState | None = None  # kept only for an unsafe host
        self.node: RaftNode | None = None
        self.incarnation = 0
        self.clock = -math.inf  # the node's time: the latest Tick
        self.wakeup_at = math.inf
        self.planned_crash: PlannedCrash | None = None
        self.snapshots_installed = 0
        self.load(None)

    def load(self, snapshot: Snapshot | None) -> None:
        """Reset the state machine to a snapshot (to nothing if None)."""
        self.base = snapshot.index if snapshot else 0
        self.digests = [snapshot.data if snapshot else b""]  # digests[i - base]: after index i

    @property
    def applied(self) -> int:
        return self.base + len(self.digests) - 1

    def apply(self, entry: Entry) -> None:
        self.digests.append(chain(self.digests[-1], entry))

    def digest_at(self, index: int) -> bytes:
        return self.digests[index - self.base]


# ---------------------------------------------------------------------------------------------
# The checker


@dataclass(frozen=True)
class Committed:
    term: int
    kind: EntryKind
    payload: bytes
    digest: bytes  # of the state machine right after applying it


class Checker:
    """Raft's safety properties, checked continuously; the first violation raises."""

    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}  # term -> the only node that ever led it
        self.committed: list[Committed] = []  # committed[i - 1] is what index i holds forever
        # For each committed index, a term at least as late as the one in which it was committed:
        # every leader of a later term must hold the entry (leader completeness).
        self.commit_term: list[int] = []
        self.first_index: dict[bytes, int] = {}  # payload -> the first index that committed it
        # (index, term) -> (payload, kind, previous entry's term), over every log entry ever
        # written: such an entry is unique, which is the log matching property.
        self.written: dict[tuple[int, int], tuple[bytes, EntryKind, int]] = {}
        self.max_applied = 0  # the latest entry any node has applied: a completed write

    def after_step(self, name: str, node: RaftNode) -> None:
        if node.role is not Role.LEADER:
            return
        leader = self.leaders.get(node.term)
        if leader is None:  # just elected
            self.leaders[node.term] = name
            self._check_leader_completeness(name, node)
        elif leader != name:
            raise SimulationFailure(f"election safety: {leader} and {name} both led term "
                                    f"{node.term}")

    def _check_leader_completeness(self, name: str, node: RaftNode) -> None:
        log = node.log
        for index in range(log.snapshot.index + 1, len(self.committed) + 1):
            if self.commit_term[index - 1] >= node.term:
                continue
            want, have = self.committed[index - 1], log.entry(index)
            if have is None or (have.term, have.payload) != (want.term, want.payload):
                raise SimulationFailure(
                    f"leader completeness: {name} leads term {node.term} without committed entry "
                    f"{index} (term {want.term}, {want.payload!r}); it has {have}")

    def on_written(self, name: str, node: RaftNode, effect: PersistEntries) -> None:
        for entry in effect.entries:
            written = (entry.payload, entry.kind, node.log.term(entry.index - 1))
            known = self.written.setdefault((entry.index, entry.term), written)
            if known != written:
                raise SimulationFailure(
                    f"log matching: {name} wrote ({entry.index}, term {entry.term}) as "
                    f"{written}, another log holds {known}")

    def check_durable(self, name: str, node: RaftNode, durable: PersistentState) -> None:
        """After a step's persist effects, the disk must say what the node believes: a change
        without its persist effect would only show after a crash, as a node that forgot."""
        snapshot, log = durable.snapshot, node.log
        base = (snapshot.index, snapshot.term) if snapshot else (0, 0)
        last = (durable.entries[-1].index, durable.entries[-1].term) if durable.entries else base
        if (durable.term != node.term or durable.voted_for != node.voted_for
                or base[0] != log.snapshot.index or last != (log.last_index, log.last_term)):
            raise SimulationFailure(f"{name} persisted term {durable.term}, vote "
                                    f"{durable.voted_for}, snapshot {base}, last entry {last}, "
                                    f"but believes {node!r} voted_for={node.voted_for}")

    def check_restart(self, name: str, durable: PersistentState) -> None:
        """What a node restarts from is a log some node really wrote, after a good snapshot."""
        if durable.snapshot:
            self.check_snapshot(name, durable.snapshot)
        prev_term = durable.snapshot.term if durable.snapshot else 0
        for entry in durable.entries:
            if self.written.get((entry.index, entry.term)) != (entry.payload, entry.kind,
                                                                prev_term):
                raise SimulationFailure(f"{name} restarts with {entry} after an entry of term "
                                        f"{prev_term}, which no leader wrote")
            prev_term = entry.term

    def on_apply(self, host: Host, node: RaftNode, entry: Entry) -> None:
        if entry.index != host.applied + 1:
            raise SimulationFailure(f"{host.name} applied {entry.index} after {host.applied}")
        host.apply(entry)
        digest = host.digests[-1]
        if entry.index > len(self.committed):
            self.committed.append(Committed(entry.term, entry.kind, entry.payload, digest))
            self.commit_term.append(node.term)
            self.first_index.setdefault(entry.payload, entry.index)
            self.max_applied = entry.index
            return
        want = self.committed[entry.index - 1]
        if (entry.term, entry.kind, entry.payload, digest) != (want.term, want.kind,
                                                               want.payload, want.digest):
            raise SimulationFailure(
                f"state machine safety: {host.name} applied {entry} at {entry.index}, "
                f"but {want} was committed there")
        self.commit_term[entry.index - 1] = min(self.commit_term[entry.index - 1], node.term)

    def check_snapshot(self, name: str, snapshot: Snapshot) -> None:
        if snapshot.index == 0:
            return
        if snapshot.index > len(self.committed):
            raise SimulationFailure(f"{name} has a snapshot at {snapshot.index}, past everything "
                                    f"committed ({len(self.committed)})")
        want = self.committed[snapshot.index - 1]
        if (snapshot.term, snapshot.data) != (want.term, want.digest):
            raise SimulationFailure(f"{name} has a snapshot at {snapshot.index} that differs "
                                    f"from the committed state")

    def check_read(self, index: int, floor: int) -> None:
        if index < floor:
            raise SimulationFailure(f"stale read: read index {index}, but {floor} was applied "
                                    f"somewhere before the read was asked")

    @staticmethod
    def check_logs_agree(nodes: Iterable[RaftNode]) -> None:
        """Log matching, checked in full: where two logs share an entry, they agree before it."""
        nodes = list(nodes)
        for i, a in enumerate(nodes):
            for b in nodes[i + 1:]:
                low = max(a.log.snapshot.index, b.log.snapshot.index) + 1
                high = min(a.log.last_index, b.log.last_index)
                shared = next((k for k in range(high, low - 1, -1)
                               if a.log.term(k) == b.log.term(k)), None)
                if shared is None:
                    continue
                for k in range(low, shared + 1):
                    if a.log.entry(k) != b.log.entry(k):
                        raise SimulationFailure(
                            f"log matching: {a.id} and {b.id} share entry {shared} but differ at "
                            f"{k}: {a.log.entry(k)} vs {b.log.entry(k)}")


# ---------------------------------------------------------------------------------------------
# Clients


class Clients:
    """Clients that send proposals and reads to whoever they believe leads, and believe the
    hints in refusals."""

    def __init__(self, cluster: Cluster, count: int) -> None:
        self.cluster = cluster
        self.believed: list[str | None] = [None] * count
        self.owner: dict[bytes, int] = {}  # outstanding request -> client
        self.read_floor: dict[bytes, int] = {}  # read -> the latest applied index when asked
        self.accepted: list[ProposalResult] = []
        self.reads_served = 0
        self.active = False
        self._sent = 0

    def start(self) -> None:
        self.active = True
        for client in range(len(self.believed)):
            self._schedule(client)

    def _schedule(self, client: int) -> None:
        every = self.cluster.scenario.request_every
        self.cluster.sim.after(self.cluster.rng.expovariate(1 / every), self._act, client)

    def _act(self, client: int) -> None:
        if not self.active:
            return
        cluster = self.cluster
        name = self.believed[client] or cluster.rng.choice(cluster.members)
        host = cluster.hosts[name]
        if host.node is None:
            self.believed[client] = None  # no answer: try someone else next time
        else:
            self._sent += 1
            request_id = f"c{client}.{self._sent}".encode()
            self.owner[request_id] = client
            if cluster.rng.random() < cluster.scenario.read_share:
                self.read_floor[request_id] = cluster.checker.max_applied
                cluster.request(host, ReadIndex(request_id))
            else:
                cluster.request(host, Propose(request_id, request_id))
        self._schedule(client)

    def on_result(self, result: ProposalResult | ReadIndexResult) -> None:
        client = self.owner.pop(result.request_id, None)
        if client is None:
            return  # not one of ours (the liveness probe), or the node answered twice
        if result.error is not None:
            self.believed[client] = result.error.leader_hint
        elif isinstance(result, ProposalResult):
            self.accepted.append(result)
        else:
            assert result.index is not None
            self.cluster.checker.check_read(result.index, self.read_floor.pop(result.request_id))
            self.reads_served += 1

    def check_accepted(self, committed: list[Committed]) -> None:
        """An accepted proposal is committed where it was accepted, or something of another term
        is: the index and term in ProposalResult identify the entry."""
        for result in self.accepted:
            assert result.index is not None
            there = committed[result.index - 1] if result.index <= len(committed) else None
            if there and there.term == result.term and there.payload != result.request_id:
                raise SimulationFailure(f"{result} but {there} was committed there")


# ---------------------------------------------------------------------------------------------
# The cluster


class Cluster:
    """A simulated monitor cluster: hosts, the network between them, clients and the checker."""

    def __init__(self, scenario: Scenario, *, trace_length: int = 60,
                 unsafe_host: bool = False) -> None:
        self.scenario = scenario
        self.members = scenario.members
        self.rng = random.Random(f"run-{scenario.seed}")
        self.sim = Simulator()
        self.net = Network(self.sim, self.rng, self.members, self._deliver, scenario.faults)
        self.hosts = {name: Host(name) for name in self.members}
        self.checker = Checker()
        self.clients = Clients(self, count=2)
        self.results: list[ProposalResult | ReadIndexResult] = []
        self.trace: deque[tuple[float, str, object, list[Effect]]] = deque(maxlen=trace_length)
        # A host that acts on a step before its writes are durable, to prove the checker notices.
        self.unsafe_host = unsafe_host
        self.chaos = False
        self.steps = self.crashes = 0
        for host in self.hosts.values():
            self.start(host)

    # -- driving nodes -----------------------------------------------------------------------------

    def start(self, host: Host) -> None:
        """(Re)start a node from exactly what its host made durable."""
        host.load(host.durable.snapshot)
        self.checker.check_restart(host.name, host.durable)
        host.node = RaftNode(host.name, self.members, host.durable.copy(),
                             random.Random(self.rng.getrandbits(64)), self.scenario.config,
                             now=self.sim.now)
        host.clock = self.sim.now
        self._note(host.name, "start")
        self._step(host, Tick(self.sim.now))

    def crash(self, host: Host) -> None:
        host.node = None
        host.incarnation += 1
        host.planned_crash = None
        host.wakeup_at = math.inf
        self.crashes += 1
        if self.unsafe_host and host.before_last_write is not None:
            host.durable = host.before_last_write  # the last step's writes were never durable
        self._note(host.name, "crash")
        if self.chaos:
            downtime = self.rng.uniform(0.01, self.scenario.down_for)
            self.sim.after(downtime, self._restart, host, host.incarnation)

    def _restart(self, host: Host, incarnation: int) -> None:
        if host.node is None and host.incarnation == incarnation:
            self.start(host)

    def request(self, host: Host, event: Propose | ReadIndex | SnapshotTaken) -> None:
        """Hand a node a local request, as the daemon does for its clients."""
        self._advance_clock(host)
        if host.node is not None:
            self._step(host, event)

    def _deliver(self, name: str, message: object) -> None:
        host = self.hosts[name]
        if host.node is None:
            return
        self._advance_clock(host)
        if host.node is not None:
            self._step(host, Receive(message))  # type: ignore[arg-type]

    def _advance_clock(self, host: Host) -> None:
        if host.clock < self.sim.now:
            host.clock = self.sim.now
            self._step(host, Tick(self.sim.now))

    def _wake(self, host: Host, incarnation: int, when: float) -> None:
        if host.incarnation != incarnation or host.wakeup_at != when:
            return  # the node restarted, or a sooner wake-up replaced this one
        host.wakeup_at = math.inf
        host.clock = self.sim.now
        self._step(host, Tick(self.sim.now))

    def _step(self, host: Host, event: Event) -> None:
        node = host.node
        assert node is not None
        effects = node.step(event)
        self.steps += 1
        if effects or not isinstance(event, Tick):
            self.trace.append((self.sim.now, host.name, event, effects))
        self.checker.after_step(host.name, node)
        crash = host.planned_crash
        if crash is not None and crash.when(effects):
            keep = min(len(effects), math.floor(crash.keep * (len(effects) + 1)))
            self._handle(host, node, effects[:keep])
            self._note(host.name, f"dies after {keep} of these {len(effects)} effects")
            self.crash(host)
            return
        self._handle(host, node, effects)
        self.checker.check_durable(host.name, node, host.durable)
        deadline = node.next_deadline
        if deadline < host.wakeup_at:
            host.wakeup_at = deadline
            late = self.rng.uniform(0.0, self.scenario.tick_jitter)
            self.sim.at(deadline + late, self._wake, host, host.incarnation, deadline)

    def _handle(self, host: Host, node: RaftNode, effects: list[Effect]) -> None:
        if self.unsafe_host and any(isinstance(e, PersistState | PersistEntries | PersistSnapshot)
                                    for e in effects):
            host.before_last_write = host.durable.copy()
        for effect in effects:
            match effect:
                case PersistState() | PersistSnapshot():
                    host.durable.apply(effect)
                case PersistEntries():
                    host.durable.apply(effect)
                    self.checker.on_written(host.name, node, effect)
                case Send(to=to, message=message):
                    self.net.send(host.name, to, message)
                case Apply(entries=entries):
                    for entry in entries:
                        self.checker.on_apply(host, node, entry)
                    self._maybe_compact(host)
                case ApplySnapshot(snapshot=snapshot):
                    self.checker.check_snapshot(host.name, snapshot)
                    host.load(snapshot)
                    host.snapshots_installed += 1
                case ProposalResult() | ReadIndexResult():
                    self.results.append(effect)
                    self.clients.on_result(effect)
                case LeaderChanged():
                    pass  # the clients learn leaders from refusals, as real ones do

    def _maybe_compact(self, host: Host) -> None:
        if self.rng.random() < self.scenario.snapshot_chance:
            self.sim.after(0.0, self._compact, host, host.incarnation)

    def _compact(self, host: Host, incarnation: int) -> None:
        if host.node is None or host.incarnation != incarnation:
            return
        first = host.node.log.snapshot.index + 1
        if first <= host.applied:
            index = self.rng.randint(first, host.applied)
            self.request(host, SnapshotTaken(index, host.digest_at(index)))

    def _note(self, who: str, what: str) -> None:
        self.trace.append((self.sim.now, who, what, []))

    # -- faults ----------------------------------------------------------------------------------

    def _partition(self) -> None:
        if not self.chaos:
            return
        self.net.partition(self.net.random_split())
        self._note("net", f"partition {self.net.describe()}")
        self.sim.after(self.rng.uniform(0.05, self.scenario.partition_for), self._end_partition)

    def _end_partition(self) -> None:
        if not self.chaos:
            return
        self.net.heal()
        self._note("net", "healed")
        self.sim.after(self.rng.expovariate(1 / self.scenario.partition_every), self._partition)

    def _crash_someone(self) -> None:
        if not self.chaos:
            return
        up = [h for h in self.hosts.values() if h.node is not None and h.planned_crash is None]
        if up:
            host = self.rng.choice(up)
            if self.rng.random() < self.scenario.crash_mid_step:
                host.planned_crash = PlannedCrash(keep=self.rng.random())
            else:
                self.crash(host)
        self.sim.after(self.rng.expovariate(1 / self.scenario.crash_every), self._crash_someone)

    # -- running -----------------------------------------------------------------------------------

    def run(self) -> float:
        """The whole scenario: faults for a while, then heal and demand progress. Returns the
        virtual time from healing until every node had applied a new proposal."""
        scenario = self.scenario
        self.chaos = True
        self.clients.start()
        if scenario.partition_every < math.inf:
            self.sim.after(self.rng.expovariate(1 / scenario.partition_every), self._partition)
        if scenario.crash_every < math.inf:
            self.sim.after(self.rng.expovariate(1 / scenario.crash_every), self._crash_someone)
        self.sim.run_until(scenario.chaos_time)
        self.heal()
        recovery = self.verify_liveness()
        self.check_final_state()
        return recovery

    def run_for(self, seconds: float) -> None:
        self.sim.run_until(self.sim.now + seconds)

    def run_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        end = self.sim.now + timeout
        while not done():
            if self.sim.now >= end:
                raise SimulationFailure(f"no {what} within {timeout:g} s of virtual time")
            self.sim.run_until(min(end, self.sim.now + 0.05))

    def heal(self) -> None:
        """End every fault: the network heals and stops losing messages, every node comes up."""
        self.chaos = False
        self.clients.active = False
        self.net.heal()
        self.net.faults = HEALTHY
        self._note("net", "all faults end")
        for host in self.hosts.values():
            host.planned_crash = None
            if host.node is None:
                self.start(host)

    def verify_liveness(self) -> float:
        """Once all is well, a proposal commits and reaches every node within bounds."""
        healed_at = self.sim.now
        probe = f"probe@{healed_at:.3f}".encode()
        self._propose_probe(probe)
        last = max(self.node(name).log.last_index for name in self.members)
        self.run_until(lambda: probe in self.checker.first_index,
                       LIVENESS_BOUND + self._replication_time(last - self._least_applied()),
                       "commit of a new proposal after healing")
        index = self.checker.first_index[probe]
        self.run_until(lambda: self._least_applied() >= index,
                       CATCH_UP_BOUND + self._replication_time(index - self._least_applied()),
                       f"node behind index {index} catching up")
        return self.sim.now - healed_at

    def _least_applied(self) -> int:
        return min(host.applied for host in self.hosts.values())

    def _replication_time(self, entries: int) -> float:
        """How long ``entries`` take to reach a follower on the healthy network: replication
        sends the next batch when the previous one is acknowledged."""
        batches = math.ceil(entries / self.scenario.config.max_entries_per_message)
        return batches * 2 * HEALTHY.max_delay

    def _propose_probe(self, probe: bytes) -> None:
        """Propose to every node that thinks it leads, until the probe commits."""
        if probe in self.checker.first_index:
            return
        for host in self.hosts.values():
            if host.node is not None and host.node.role is Role.LEADER:
                self.request(host, Propose(probe, probe))
        self.sim.after(0.25, self._propose_probe, probe)

    def check_final_state(self) -> None:
        self.checker.check_logs_agree(h.node for h in self.hosts.values() if h.node is not None)
        self.clients.check_accepted(self.checker.committed)

    def leader(self) -> Host | None:
        """The up host that leads the latest term, if any."""
        leaders = [h for h in self.hosts.values() if h.node and h.node.role is Role.LEADER]
        return max(leaders, key=lambda h: h.node.term if h.node else 0, default=None)

    def node(self, name: str) -> RaftNode:
        node = self.hosts[name].node
        assert node is not None, f"{name} is down"
        return node

    def fingerprint(self) -> tuple[object, ...]:
        """A summary that differs between two runs that did not do exactly the same thing."""
        last = self.checker.committed[-1].digest.hex() if self.checker.committed else ""
        nodes = tuple((h.name, h.node.term, h.node.commit_index, h.node.log.last_index)
                      for h in self.hosts.values() if h.node is not None)
        return (self.sim.events_run, self.steps, round(self.sim.now, 9), last, nodes)

    # -- reporting ---------------------------------------------------------------------------------

    def report(self, error: BaseException) -> str:
        seed = self.scenario.seed
        lines = [
            f"Raft simulation failed at virtual time {self.sim.now:.4f}: {error}",
            f"replay: LOLIGO_SIM_SEED={seed} .venv/bin/python -m pytest tests/sim -k random",
            f"scenario: {self.scenario}",
            f"network: {self.net.describe()}",
            *(f"  {h.name}: {h.node if h.node else 'down'} applied={h.applied}"
              for h in self.hosts.values()),
            f"last {len(self.trace)} events (time, node, event -> effects):",
            *(format_trace(item) for item in self.trace),
        ]
        return "\n".join(lines)


def describe(thing: object) -> str:
    """A compact, readable form of events, messages and effects for failure reports."""
    match thing:
        case Tick():
            return "tick"
        case Receive(message=message):
            return f"recv {describe(message)}"
        case Send(to=to, message=message):
            return f"send {to} {describe(message)}"
        case RequestVote(pre_vote=pre):
            return (f"{'Pre' if pre else ''}Vote t{thing.term} from {thing.sender} "
                    f"last=({thing.last_log_index},{thing.last_log_term})")
        case RequestVoteReply(pre_vote=pre):
            return (f"{'Pre' if pre else ''}VoteReply t{thing.term} from {thing.sender} "
                    f"granted={thing.granted}")
        case AppendEntries():
            return (f"AE t{thing.term} from {thing.sender} prev=({thing.prev_index},"
                    f"{thing.prev_term}) n={len(thing.entries)} commit={thing.leader_commit}")
        case AppendEntriesReply():
            hint = "" if thing.success else f" hint=({thing.conflict_index},{thing.conflict_term})"
            return (f"AEReply t{thing.term} from {thing.sender} ok={thing.success} "
                    f"index={thing.index}{hint}")
        case InstallSnapshot(snapshot=snapshot):
            return f"Snap t{thing.term} from {thing.sender} at ({snapshot.index},{snapshot.term})"
        case InstallSnapshotReply():
            return f"SnapReply t{thing.term} from {thing.sender} index={thing.index}"
        case PersistEntries(from_index=start, entries=entries):
            return f"persist entries from {start}: {[(e.index, e.term) for e in entries][:8]}"
        case PersistSnapshot(snapshot=snapshot, discard_log=discard):
            return f"persist snapshot ({snapshot.index},{snapshot.term}) discard_log={discard}"
        case Apply(entries=entries):
            return f"apply {entries[0].index}..{entries[-1].index}"
        case ApplySnapshot(snapshot=snapshot):
            return f"apply snapshot ({snapshot.index},{snapshot.term})"
        case _:
            return repr(thing)[:160]


def format_trace(item: tuple[float, str, object, list[Effect]]) -> str:
    when, who, what, effects = item
    text = what if isinstance(what, str) else describe(what)
    if effects:
        text += " -> " + "; ".join(describe(effect) for effect in effects)
    return f"  {when:9.4f} {who:>4} {text[:400]}"


def run_scenario(scenario: Scenario, **options: object) -> Cluster:
    cluster = Cluster(scenario, **options)  # type: ignore[arg-type]
    try:
        cluster.run()
    except Exception as error:
        raise SimulationFailure(cluster.report(error)) from error
    return cluster
