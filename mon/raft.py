"""Raft consensus for the monitors, as a pure and deterministic state machine.

The monitors keep the cluster maps in a replicated log: a map changes only through a committed log
entry, so no two monitors ever publish different maps for one epoch. This module decides what is
committed. It does no I/O, reads no clock and draws randomness only from the ``random.Random`` it is
given, so the same inputs always give the same outputs; that is what lets ``tests/sim`` replay any
failure from its seed. The monitor daemon wraps it with gRPC, a disk and a clock.

Raft in one page
----------------
Time is cut into *terms*, each with at most one leader. A follower that hears nothing from a leader
for a randomized election timeout campaigns: it first runs a *pre-vote* ("would you vote for me?"),
and only if a majority says yes does it increment its term and ask for real votes. A node grants one
vote per term, and only to a candidate whose log is at least as up to date as its own (§5.4.1);
a candidate with a majority becomes leader. The leader appends a no-op entry, then every proposal,
to its log and replicates them with AppendEntries, which doubles as heartbeat. A follower accepts
entries only right after an entry it holds with the same index and term, so logs that agree on one
entry agree on everything before it (log matching). An entry is *committed* once a majority holds
it; the leader counts replicas only for entries of its own term, committing earlier ones along with
them (§5.4.2, figure 8), and followers learn the commit index from AppendEntries. Because every
majority overlaps every other, any future leader holds every committed entry, so committed entries
are never lost or changed. Committed entries are applied in order by every node's state machine.

Two additions keep a cluster stable under partitions: with *pre-vote* a node cut off from the
majority cannot win even a pre-vote, so its term stays put and it does not depose the leader when it
returns; with *check quorum* a leader that has not heard from a majority for an election timeout
steps down, and a follower that heard from its leader that recently ignores vote requests, so a
minority partition never keeps a leader accepting proposals. Log compaction replaces a prefix by the
application's snapshot; a follower that needs compacted entries receives the snapshot instead.

The host contract
-----------------
``node = RaftNode(node_id, members, storage, rng, config, now=clock(), applied_index=0)`` and then,
for every event, ``effects = node.step(event)``. Events:

- ``Tick(now)``: the only way time moves (monotonic seconds). Call it often (every ~10-50 ms, or
  at ``node.next_deadline``); other events happen at the time of the latest tick, so a host that
  wants exact timers ticks right before delivering a message.
- ``Receive(message)``: a message from a peer (see ``mon/raft_messages.py``). Messages may be
  lost, duplicated, delayed or reordered; deliver them as they come.
- ``Propose(payload, request_id)``: append a command (leader only).
- ``ReadIndex(request_id)``: ask for a linearizable read point (leader only).
- ``SnapshotTaken(index, data)``: the application saved its state up to ``index`` (at most its
  applied index) as ``data``; the node compacts its log up to there. Compacting a little behind the
  applied index saves slightly lagging followers a snapshot transfer.

Effects come in this order, and **the host must make every persist effect durable (one fsync for
all of them) before acting on any other effect of the same list, and handle lists in the order they
were returned**. A vote, or an acknowledgement of entries, that leaves before the state behind it
is on disk can be forgotten by a crash: the node may then vote twice in one term (two leaders) or a
leader may count a replica that no longer exists (a committed entry lost).

1. Persist effects (``mon/raft_log.py``), at most one of each, in this order: ``PersistState``
   (term and vote), ``PersistSnapshot``, ``PersistEntries`` (truncate then append).
   ``PersistentState.apply`` is their reference meaning.
2. In the order they arose: ``Send(to, message)``; ``Apply(entries)`` and
   ``ApplySnapshot(snapshot)``: committed state, in index order, exactly once per node lifetime
   (``Apply`` includes NOOP entries so applied indexes stay contiguous; skip them);
   ``ProposalResult``; ``ReadIndexResult``.
3. ``LeaderChanged(leader_id, term)`` when the node learns of a new leader or loses track of it
   (``leader_id`` None).

After a crash, rebuild the node from exactly what was made durable. The state machine restarts
from the durable snapshot (``storage.snapshot``), or from its own durable state at
``applied_index``; the node re-delivers committed entries after that point.

Proposals: ``ProposalResult(request_id, index, term)`` says where the leader appended the entry,
not that it committed. It committed if an ``Apply`` later delivers an entry at that index with that
term; if a different entry arrives there, or ``LeaderChanged`` reports a new leader first, the
outcome is unknown and the client retries. A retried proposal may thus commit twice: the state
machine must ignore a ``request_id`` it has already applied. A follower answers ``error=NotLeader``
with the leader it knows of, if any.

Reads: ``ReadIndexResult(request_id, index)`` means that at some moment after the request arrived
this node was still the leader and everything committed before the request is at or below
``index``; once the state machine has applied ``index``, a read served from it is linearizable. The
leader first waits until it has committed an entry of its own term (so its commit index is up to
date), then confirms its leadership with one heartbeat round acknowledged by a majority.

Membership is fixed for the life of a cluster (1, 3 or 5 members; a single member commits alone).
"""

from __future__ import annotations

import enum
import math
import random
from collections import deque
from dataclasses import dataclass

from mon.raft_events import (
    Apply,
    ApplySnapshot,
    Effect,
    Event,
    LeaderChanged,
    NotLeader,
    ProposalResult,
    Propose,
    ReadIndex,
    ReadIndexResult,
    Receive,
    Send,
    SnapshotTaken,
    Tick,
)
from mon.raft_log import (
    Entry,
    EntryKind,
    PersistEffect,
    PersistEntries,
    PersistentState,
    PersistSnapshot,
    PersistState,
    RaftLog,
    Snapshot,
)
from mon.raft_messages import (
    AppendEntries,
    AppendEntriesReply,
    InstallSnapshot,
    InstallSnapshotReply,
    Message,
    RequestVote,
    RequestVoteReply,
)

__all__ = [
    "AppendEntries", "AppendEntriesReply", "Apply", "ApplySnapshot", "Effect", "Entry",
    "EntryKind", "Event", "InstallSnapshot", "InstallSnapshotReply", "LeaderChanged", "Message",
    "NotLeader", "PersistEffect", "PersistEntries", "PersistSnapshot", "PersistState",
    "PersistentState", "ProposalResult", "Propose", "RaftConfig", "RaftLog", "RaftNode",
    "ReadIndex", "ReadIndexResult", "Receive", "RequestVote", "RequestVoteReply", "Role", "Send",
    "Snapshot", "SnapshotTaken", "Tick",
]


@dataclass(frozen=True)
class RaftConfig:
    """Timers (seconds) and limits. The defaults suit monitors on one local network."""

    heartbeat_interval: float = 0.1
    # The election timeout is drawn anew from [min, max) each time, so that after a leader dies one
    # follower usually times out well before the others and wins before they compete.
    election_timeout_min: float = 1.0
    election_timeout_max: float = 2.0
    max_entries_per_message: int = 64
    # An unacknowledged InstallSnapshot is resent after this long (snapshots may be large).
    snapshot_retry_interval: float = 1.0
    # Off only to show, in tests, what pre-vote prevents.
    pre_vote: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_interval < self.election_timeout_min <= self.election_timeout_max:
            raise ValueError("need 0 < heartbeat_interval < election_timeout_min "
                             "<= election_timeout_max")
        if self.max_entries_per_message < 1 or self.snapshot_retry_interval <= 0:
            raise ValueError("max_entries_per_message and snapshot_retry_interval must be positive")


# ---------------------------------------------------------------------------------------------
# The node


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"  # asking whether it could win, without changing its term
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(slots=True)
class _Progress:
    """What a leader knows about one follower."""

    next_index: int  # the next entry to send it
    match_index: int = 0  # the highest entry known to match the leader's log there
    snapshot_sent_at: float | None = None  # an InstallSnapshot has been in flight since then
    recently_active: bool = False  # heard from it in the current check-quorum period
    read_seq_acked: int = 0  # the latest read round it has acknowledged


@dataclass(frozen=True, slots=True)
class _PendingRead:
    """A read waiting for a majority to acknowledge its heartbeat round."""

    request_id: bytes
    index: int  # the commit index when the read arrived
    seq: int  # the read round that must reach a majority


class RaftNode:
    """One Raft participant. Drive it with :meth:`step`; see the module docstring for the contract.

    The properties are for the host's status pages and for tests; they never change except inside
    :meth:`step`.
    """

    def __init__(self, node_id: str, members: tuple[str, ...], storage: PersistentState,
                 rng: random.Random, config: RaftConfig, *, now: float = 0.0,
                 applied_index: int = 0) -> None:
        if node_id not in members or len(set(members)) != len(members):
            raise ValueError(f"{node_id!r} must be one of distinct members {members!r}")
        self._id = node_id
        self._members = tuple(members)
        self._peers = tuple(m for m in self._members if m != node_id)
        self._quorum = len(self._members) // 2 + 1
        self._rng = rng
        self._config = config

        # Durable state, rebuilt from storage.
        self._term = storage.term
        self._voted_for = storage.voted_for
        self._log = RaftLog(storage.snapshot or Snapshot(0, 0, self._members, b""), storage.entries)

        # Volatile state. Everything up to the snapshot or the host's applied index is committed.
        start = max(self._log.snapshot.index, applied_index)
        if start > self._log.last_index:
            raise ValueError(f"applied index {applied_index} is past the log's end "
                             f"({self._log.last_index})")
        self._commit_index = self._last_applied = start
        self._role = Role.FOLLOWER
        self._leader_id: str | None = None
        self._now = now
        self._leader_contact = -math.inf  # when we last heard from the leader we follow
        self._election_deadline: float
        self._reset_election_timer()
        self._votes: set[str] = set()

        # Leader state.
        self._progress: dict[str, _Progress] = {}
        self._heartbeat_deadline = math.inf
        self._quorum_deadline = math.inf
        self._read_seq = 0
        self._pending_reads: deque[_PendingRead] = deque()
        self._queued_reads: list[bytes] = []  # wait for the first commit of this term

        # What the current step has produced: effects, and which durable state changed.
        self._out: list[Effect] = []
        self._state_dirty = False
        self._snapshot_to_persist: PersistSnapshot | None = None
        self._unstable_from: int | None = None
        self._announced: tuple[str | None, int] = (None, self._term)

    def __repr__(self) -> str:
        return (f"RaftNode({self._id} {self._role.value} term={self._term} "
                f"commit={self._commit_index} last={self._log.last_index})")

    @property
    def id(self) -> str:
        return self._id

    @property
    def members(self) -> tuple[str, ...]:
        return self._members

    @property
    def role(self) -> Role:
        return self._role

    @property
    def term(self) -> int:
        return self._term

    @property
    def voted_for(self) -> str | None:
        return self._voted_for

    @property
    def leader_id(self) -> str | None:
        return self._leader_id

    @property
    def commit_index(self) -> int:
        return self._commit_index

    @property
    def last_applied(self) -> int:
        return self._last_applied

    @property
    def log(self) -> RaftLog:
        """The in-memory log (read it, never modify it)."""
        return self._log

    @property
    def next_deadline(self) -> float:
        """The earliest time at which a Tick has something to do."""
        if self._role is Role.LEADER:
            return min(self._heartbeat_deadline, self._quorum_deadline)
        return self._election_deadline

    def step(self, event: Event) -> list[Effect]:
        """Handle one event and return what the host must do, in order (see module docstring)."""
        match event:
            case Tick(now=now):
                self._on_tick(now)
            case Receive(message=message):
                self._on_message(message)
            case Propose(payload=payload, request_id=request_id):
                self._on_propose(payload, request_id)
            case ReadIndex(request_id=request_id):
                self._on_read_index(request_id)
            case SnapshotTaken(index=index, data=data):
                self._on_snapshot_taken(index, data)
            case _:
                raise TypeError(f"not a Raft event: {event!r}")
        return self._flush()

    # -- time ------------------------------------------------------------------------------------

    def _on_tick(self, now: float) -> None:
        self._now = max(self._now, now)
        if self._role is Role.LEADER:
            if self._now >= self._quorum_deadline:
                self._check_quorum()
            if self._role is Role.LEADER and self._now >= self._heartbeat_deadline:
                self._broadcast_append()
        elif self._now >= self._election_deadline:
            self._campaign(pre_vote=self._config.pre_vote)

    def _reset_election_timer(self) -> None:
        # A single member needs nobody's vote, so it need not wait for anyone either.
        timeout = (self._rng.uniform(self._config.election_timeout_min,
                                     self._config.election_timeout_max) if self._peers else 0.0)
        self._election_deadline = self._now + timeout

    def _in_lease(self) -> bool:
        """Whether we believe a leader is alive: then we refuse to help anyone replace it.

        A follower trusts its leader for election_timeout_min after hearing from it; no follower
        times out sooner, so when the leader really is gone every follower has stopped refusing by
        the time the first candidate asks. A leader trusts itself: check quorum deposes it if a
        majority stops answering.
        """
        if self._role is Role.LEADER:
            return True
        return (self._role is Role.FOLLOWER and self._leader_id is not None
                and self._now - self._leader_contact < self._config.election_timeout_min)

    # -- terms and roles ---------------------------------------------------------------------------

    def _set_term(self, term: int, voted_for: str | None) -> None:
        if (term, voted_for) != (self._term, self._voted_for):
            self._term, self._voted_for = term, voted_for
            self._state_dirty = True

    def _become_follower(self, term: int) -> None:
        """Follow, in ``term``, whoever turns out to lead it (nobody known yet)."""
        was_leader = self._role is Role.LEADER
        if term > self._term:
            self._set_term(term, voted_for=None)
        self._role = Role.FOLLOWER
        self._leader_id = None
        self._reset_election_timer()
        if was_leader:
            self._progress = {}
            self._heartbeat_deadline = self._quorum_deadline = math.inf
            self._fail_reads()

    def _accept_leader(self, leader_id: str) -> None:
        """A message from the leader of our term: follow it and postpone our own campaign."""
        if self._role is Role.LEADER:
            raise AssertionError(f"{self._id}: {leader_id} also leads term {self._term}")
        self._role = Role.FOLLOWER
        self._leader_id = leader_id
        self._leader_contact = self._now
        self._reset_election_timer()

    def _campaign(self, pre_vote: bool) -> None:
        """Ask every peer for its vote in the next term (only hypothetically, with ``pre_vote``)."""
        self._leader_id = None
        self._votes = {self._id}
        self._reset_election_timer()
        if pre_vote:
            self._role = Role.PRE_CANDIDATE
            term = self._term + 1
        else:
            self._role = Role.CANDIDATE
            self._set_term(self._term + 1, voted_for=self._id)
            term = self._term
        if len(self._votes) >= self._quorum:
            self._won_election()
            return
        for peer in self._peers:
            self._send(peer, RequestVote(term, self._id, self._log.last_index,
                                         self._log.last_term, pre_vote))

    def _won_election(self) -> None:
        if self._role is Role.PRE_CANDIDATE:
            self._campaign(pre_vote=False)
        else:
            self._become_leader()

    def _become_leader(self) -> None:
        self._role = Role.LEADER
        self._leader_id = self._id
        self._progress = {peer: _Progress(self._log.last_index + 1) for peer in self._peers}
        self._quorum_deadline = self._now + self._config.election_timeout_min
        # Only entries of its own term tell a leader what is committed: append one at once.
        self._replicate(Entry(self._log.last_index + 1, self._term, b"", b"", EntryKind.NOOP))

    def _check_quorum(self) -> None:
        """Step down unless a majority (counting ourselves) answered during the last period."""
        active = 1 + sum(p.recently_active for p in self._progress.values())
        if active < self._quorum:
            self._become_follower(self._term)
            return
        for progress in self._progress.values():
            progress.recently_active = False
        self._quorum_deadline = self._now + self._config.election_timeout_min

    # -- messages ----------------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        if msg.sender not in self._peers:
            return
        if msg.term > self._term:
            if isinstance(msg, RequestVote):
                if self._in_lease():
                    return  # a live leader exists: do not let a stray candidate depose it
                if not msg.pre_vote:
                    self._become_follower(msg.term)
            elif not (isinstance(msg, RequestVoteReply) and msg.pre_vote and msg.granted):
                # A granted pre-vote carries the term asked about, which nobody has entered yet.
                self._become_follower(msg.term)
        elif msg.term < self._term:
            self._answer_stale(msg)
            return
        match msg:
            case RequestVote():
                self._on_request_vote(msg)
            case RequestVoteReply():
                self._on_vote_reply(msg)
            case AppendEntries():
                self._accept_leader(msg.sender)
                self._send(msg.sender, self._append(msg))
            case AppendEntriesReply():
                self._on_append_reply(msg)
            case InstallSnapshot():
                self._on_install_snapshot(msg)
            case InstallSnapshotReply():
                self._on_install_snapshot_reply(msg)

    def _answer_stale(self, msg: Message) -> None:
        """Tell a sender from an older term about ours: a deposed leader then steps down and a
        lagging candidate catches up. Replies from an older term answer nothing still asked."""
        match msg:
            case AppendEntries():
                self._send(msg.sender, AppendEntriesReply(self._term, self._id, False,
                                                          msg.prev_index, msg.read_seq))
            case InstallSnapshot():
                self._send(msg.sender, InstallSnapshotReply(self._term, self._id,
                                                            self._commit_index))
            case RequestVote():
                self._send(msg.sender, RequestVoteReply(self._term, self._id, False,
                                                        msg.pre_vote))

    def _on_request_vote(self, msg: RequestVote) -> None:
        # A request from a newer term that we refuse to consider was dropped in _on_message.
        log_ok = self._log.is_up_to_date(msg.last_log_index, msg.last_log_term)
        if msg.pre_vote:
            granted = msg.term > self._term and log_ok
            reply_term = msg.term if granted else self._term
        else:
            granted = log_ok and self._voted_for in (None, msg.sender)
            if granted:
                self._set_term(self._term, voted_for=msg.sender)
                self._reset_election_timer()
            reply_term = self._term
        self._send(msg.sender, RequestVoteReply(reply_term, self._id, granted, msg.pre_vote))

    def _on_vote_reply(self, msg: RequestVoteReply) -> None:
        if msg.pre_vote:
            if self._role is not Role.PRE_CANDIDATE or msg.term != self._term + 1:
                return
        elif self._role is not Role.CANDIDATE or msg.term != self._term:
            return
        if msg.granted:
            self._votes.add(msg.sender)
            if len(self._votes) >= self._quorum:
                self._won_election()

    # -- follower side of replication --------------------------------------------------------------

    def _append(self, msg: AppendEntries) -> AppendEntriesReply:
        """Merge the leader's entries into our log if it agrees at ``prev_index``."""
        if msg.prev_index < self._commit_index:
            # Our committed prefix is in every later leader's log, so we match it up to there.
            # (Entries in this message are ignored; the leader resends from commit_index + 1.)
            return AppendEntriesReply(self._term, self._id, True, self._commit_index, msg.read_seq)
        if not self._log.matches(msg.prev_index, msg.prev_term):
            return self._reject(msg)
        for entry in msg.entries:
            if self._log.matches(entry.index, entry.term):
                continue  # already have it (a duplicated or reordered message)
            if entry.index <= self._log.last_index:
                # Conflict: ours came from a leader whose entries never committed (they come
                # after commit_index); the current leader's win.
                self._log.truncate_from(entry.index)
            self._log.append(entry)
            self._mark_unstable(entry.index)
        match_index = msg.prev_index + len(msg.entries)
        # Beyond match_index our log may still hold a dead leader's entries: commit no further.
        self._commit_to(min(msg.leader_commit, match_index))
        return AppendEntriesReply(self._term, self._id, True, match_index, msg.read_seq)

    def _reject(self, msg: AppendEntries) -> AppendEntriesReply:
        if msg.prev_index > self._log.last_index:
            conflict_term, conflict_index = 0, self._log.last_index + 1
        else:
            conflict_term = self._log.term(msg.prev_index)
            conflict_index = self._log.first_index_of_term_run(msg.prev_index)
        return AppendEntriesReply(self._term, self._id, False, msg.prev_index, msg.read_seq,
                                  conflict_index, conflict_term)

    def _on_install_snapshot(self, msg: InstallSnapshot) -> None:
        self._accept_leader(msg.sender)
        snapshot = msg.snapshot
        if snapshot.index > self._commit_index:  # else: a duplicate, or we caught up meanwhile
            discard = self._log.install(snapshot)
            self._snapshot_to_persist = PersistSnapshot(snapshot, discard_log=discard)
            self._commit_index = self._last_applied = snapshot.index
            self._out.append(ApplySnapshot(snapshot))
        self._send(msg.sender, InstallSnapshotReply(self._term, self._id, self._commit_index))

    def _commit_to(self, index: int) -> None:
        if index <= self._commit_index:
            return
        self._commit_index = index
        self._out.append(Apply(self._log.entries(self._last_applied + 1, index + 1)))
        self._last_applied = index

    # -- leader side of replication ----------------------------------------------------------------

    def _replicate(self, entry: Entry) -> None:
        self._log.append(entry)
        self._mark_unstable(entry.index)
        self._broadcast_append()
        self._maybe_commit()

    def _broadcast_append(self) -> None:
        """Send every follower what it is missing; with nothing missing this is the heartbeat."""
        self._heartbeat_deadline = self._now + self._config.heartbeat_interval
        for peer in self._peers:
            self._send_append(peer)

    def _send_append(self, peer: str) -> None:
        progress = self._progress[peer]
        if progress.next_index <= self._log.snapshot.index:
            self._send_snapshot(peer, progress)
            return
        prev_index = progress.next_index - 1
        stop = min(self._log.last_index + 1,
                   progress.next_index + self._config.max_entries_per_message)
        self._send(peer, AppendEntries(self._term, self._id, prev_index, self._log.term(prev_index),
                                       self._log.entries(progress.next_index, stop),
                                       self._commit_index, self._read_seq))

    def _send_snapshot(self, peer: str, progress: _Progress) -> None:
        sent_at = progress.snapshot_sent_at
        if sent_at is not None and self._now - sent_at < self._config.snapshot_retry_interval:
            return
        progress.snapshot_sent_at = self._now
        self._send(peer, InstallSnapshot(self._term, self._id, self._log.snapshot))

    def _on_append_reply(self, msg: AppendEntriesReply) -> None:
        if self._role is not Role.LEADER:
            return
        progress = self._progress[msg.sender]
        progress.recently_active = True
        progress.read_seq_acked = max(progress.read_seq_acked, msg.read_seq)
        if msg.success:
            self._on_replicated(msg.sender, progress, msg.index)
        elif progress.match_index < msg.index == progress.next_index - 1:
            # A rejection of our latest attempt (older ones, and duplicates, are ignored), so
            # next_index strictly decreases: retrying at once cannot turn into a message storm.
            hint = self._retry_index(msg)
            progress.next_index = max(progress.match_index + 1, min(hint, msg.index))
            self._send_append(msg.sender)
        self._confirm_reads()

    def _retry_index(self, msg: AppendEntriesReply) -> int:
        """Where to retry after a rejection (Raft thesis §5.3): past our last entry of the
        follower's conflicting term if we have that term, else the start of the follower's run."""
        if msg.conflict_term:
            last = self._log.last_index_of_term(msg.conflict_term, at_most=msg.index)
            if last is not None:
                return last + 1
        return msg.conflict_index

    def _on_install_snapshot_reply(self, msg: InstallSnapshotReply) -> None:
        if self._role is not Role.LEADER:
            return
        progress = self._progress[msg.sender]
        progress.recently_active = True
        self._on_replicated(msg.sender, progress, msg.index)

    def _on_replicated(self, peer: str, progress: _Progress, index: int) -> None:
        if index <= progress.match_index:
            return  # old news (duplicated or reordered reply)
        progress.match_index = index
        progress.next_index = max(progress.next_index, index + 1)
        if progress.next_index > self._log.snapshot.index:
            progress.snapshot_sent_at = None
        self._maybe_commit()
        if progress.next_index <= self._log.last_index:
            self._send_append(peer)

    def _maybe_commit(self) -> None:
        """Commit the highest index a majority holds, if it is from our own term (§5.4.2)."""
        held = sorted([self._log.last_index, *(p.match_index for p in self._progress.values())],
                      reverse=True)
        index = held[self._quorum - 1]
        if index > self._commit_index and self._log.term(index) == self._term:
            self._commit_to(index)
            if self._queued_reads:
                queued, self._queued_reads = self._queued_reads, []
                self._start_reads(queued)

    # -- client requests ---------------------------------------------------------------------------

    def _on_propose(self, payload: bytes, request_id: bytes) -> None:
        if self._role is not Role.LEADER:
            self._out.append(ProposalResult(request_id, None, None, NotLeader(self._leader_id)))
            return
        entry = Entry(self._log.last_index + 1, self._term, payload, request_id)
        self._out.append(ProposalResult(request_id, entry.index, entry.term))
        self._replicate(entry)

    def _on_read_index(self, request_id: bytes) -> None:
        if self._role is not Role.LEADER:
            self._out.append(ReadIndexResult(request_id, None, NotLeader(self._leader_id)))
        elif self._log.term(self._commit_index) != self._term:
            # A new leader's commit index may lag what its predecessor committed.
            self._queued_reads.append(request_id)
        else:
            self._start_reads([request_id])

    def _start_reads(self, request_ids: list[bytes]) -> None:
        """Note the commit index and start a heartbeat round: a majority answering it proves no
        newer leader existed when the reads arrived, so nothing committed is missing below it."""
        self._read_seq += 1
        self._pending_reads.extend(_PendingRead(r, self._commit_index, self._read_seq)
                                   for r in request_ids)
        self._broadcast_append()
        self._confirm_reads()

    def _confirm_reads(self) -> None:
        while self._pending_reads:
            read = self._pending_reads[0]
            acks = 1 + sum(p.read_seq_acked >= read.seq for p in self._progress.values())
            if acks < self._quorum:
                return
            self._pending_reads.popleft()
            self._out.append(ReadIndexResult(read.request_id, read.index))

    def _fail_reads(self) -> None:
        """We stopped leading: reads we could not confirm must be retried at the new leader."""
        for request_id in [*(r.request_id for r in self._pending_reads), *self._queued_reads]:
            self._out.append(ReadIndexResult(request_id, None, NotLeader(None)))
        self._pending_reads.clear()
        self._queued_reads = []

    # -- compaction --------------------------------------------------------------------------------

    def _on_snapshot_taken(self, index: int, data: bytes) -> None:
        if index <= self._log.snapshot.index:
            return  # already compacted further, e.g. by an InstallSnapshot meanwhile
        if index > self._last_applied:
            raise ValueError(f"snapshot at {index} is past the applied index {self._last_applied}")
        snapshot = Snapshot(index, self._log.term(index), self._members, data)
        self._log.install(snapshot)
        self._snapshot_to_persist = PersistSnapshot(snapshot, discard_log=False)

    # -- output ------------------------------------------------------------------------------------

    def _send(self, to: str, message: Message) -> None:
        self._out.append(Send(to, message))

    def _mark_unstable(self, index: int) -> None:
        if self._unstable_from is None or index < self._unstable_from:
            self._unstable_from = index

    def _flush(self) -> list[Effect]:
        """The step's effects: persist effects first, then the rest in the order they arose."""
        effects: list[Effect] = []
        if self._state_dirty:
            effects.append(PersistState(self._term, self._voted_for))
            self._state_dirty = False
        if self._snapshot_to_persist is not None:
            effects.append(self._snapshot_to_persist)
            self._snapshot_to_persist = None
        if self._unstable_from is not None:
            start = max(self._unstable_from, self._log.snapshot.index + 1)
            effects.append(PersistEntries(start, self._log.entries(start,
                                                                   self._log.last_index + 1)))
            self._unstable_from = None
        effects.extend(self._out)
        self._out = []
        known = (self._leader_id, self._term)
        if known[0] != self._announced[0] or (known[0] is not None and known != self._announced):
            effects.append(LeaderChanged(*known))
        self._announced = known
        return effects
