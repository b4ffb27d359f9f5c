"""What a host feeds a Raft node (events) and what the node asks of it in return (effects).

The contract between them (persistence first, ordering, restarts) is in the docstring of
mon/raft.py; the persist effects are defined with the durable state they change, in
mon/raft_log.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from mon.raft_log import Entry, PersistEffect, Snapshot
from mon.raft_messages import Message

# ---------------------------------------------------------------------------------------------
# Events (host -> node)


@dataclass(frozen=True, slots=True)
class Tick:
    """Time is now ``now`` (monotonic seconds): fire the timers that are due."""

    now: float


@dataclass(frozen=True, slots=True)
class Receive:
    """A message from a peer."""

    message: Message


@dataclass(frozen=True, slots=True)
class Propose:
    """Append a command to the log (leader only)."""

    payload: bytes
    request_id: bytes


@dataclass(frozen=True, slots=True)
class ReadIndex:
    """Ask for an index from which a linearizable read may be served (leader only)."""

    request_id: bytes


@dataclass(frozen=True, slots=True)
class SnapshotTaken:
    """The application saved its state after applying ``index`` as ``data``: compact up to it."""

    index: int
    data: bytes


Event = Tick | Receive | Propose | ReadIndex | SnapshotTaken


# ---------------------------------------------------------------------------------------------
# Effects (node -> host); the persist effects live in mon/raft_log.py


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver ``message`` to the peer ``to`` (best effort: Raft retries what matters)."""

    to: str
    message: Message


@dataclass(frozen=True, slots=True)
class Apply:
    """Committed entries to apply to the state machine, in index order."""

    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class ApplySnapshot:
    """Replace the state machine by ``snapshot`` (a leader sent it: we were too far behind)."""

    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class LeaderChanged:
    """The leader this node knows of changed (None: it does not know of one right now)."""

    leader_id: str | None
    term: int


@dataclass(frozen=True, slots=True)
class NotLeader:
    """The request must go to the leader; ``leader_hint`` is the leader this node knows of."""

    leader_hint: str | None


@dataclass(frozen=True, slots=True)
class ProposalResult:
    """Where the proposal was appended (not yet committed), or why it was refused."""

    request_id: bytes
    index: int | None
    term: int | None
    error: NotLeader | None = None


@dataclass(frozen=True, slots=True)
class ReadIndexResult:
    """A read may be served once the state machine has applied ``index``."""

    request_id: bytes
    index: int | None
    error: NotLeader | None = None


Effect = (PersistEffect | Send | Apply | ApplySnapshot | LeaderChanged | ProposalResult
          | ReadIndexResult)
