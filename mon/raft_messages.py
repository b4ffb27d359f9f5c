"""Messages Raft nodes exchange. Every one carries the sender's term and name.

The host carries them between nodes (gRPC for the monitor daemon, a simulated network in tests) and
may lose, duplicate, delay or reorder them: Raft's safety does not depend on delivery. Terms make
stale messages harmless: a node drops replies from an older term, answers requests from an older
term with its own term (which deposes a stale leader), and adopts any newer term it hears of.
"""

from __future__ import annotations

from dataclasses import dataclass

from mon.raft_log import Entry, Snapshot


@dataclass(frozen=True, slots=True)
class RequestVote:
    """A candidate asks for a vote. With ``pre_vote`` it only asks "would you vote for me in
    ``term``?" (``term`` is then the candidate's term + 1 and nobody changes term or vote): a
    node cut off from the cluster keeps failing pre-votes instead of inflating its term, so it
    cannot depose a healthy leader when it comes back (Raft thesis §9.6)."""

    term: int
    sender: str
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class RequestVoteReply:
    """``term`` is the voter's term, or the asked-for term when a pre-vote is granted."""

    term: int
    sender: str
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """The leader's replication message and heartbeat (``entries`` may be empty).

    The follower accepts ``entries`` only if its log holds an entry at ``prev_index`` with
    ``prev_term`` (by induction the logs then agree up to there). ``read_seq`` numbers the
    leader's read-confirmation rounds (see ReadIndex in mon/raft.py); the reply echoes it.
    """

    term: int
    sender: str
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    leader_commit: int
    read_seq: int


@dataclass(frozen=True, slots=True)
class AppendEntriesReply:
    """On success ``index`` is the highest index known to match the leader's log. On failure
    ``index`` is the rejected ``prev_index``, and the conflict hint tells the leader where to
    retry: ``conflict_term`` is the follower's term at ``prev_index`` (0 if its log is shorter),
    ``conflict_index`` the first index of that term's run (or the follower's last index + 1)."""

    term: int
    sender: str
    success: bool
    index: int
    read_seq: int
    conflict_index: int = 0
    conflict_term: int = 0


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """Sent instead of entries the leader has compacted away."""

    term: int
    sender: str
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class InstallSnapshotReply:
    """``index`` is the follower's commit index after handling the snapshot: its log matches the
    leader's up to there."""

    term: int
    sender: str
    index: int


Message = (RequestVote | RequestVoteReply | AppendEntries | AppendEntriesReply | InstallSnapshot
           | InstallSnapshotReply)
