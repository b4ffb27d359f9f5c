"""The Raft log and the durable state a Raft node is rebuilt from.

A node's log is a snapshot (everything up to ``snapshot.index``, compacted into the application's
own state) followed by the entries after it. :class:`RaftLog` is the node's in-memory copy;
:class:`PersistentState` is what the host keeps on disk. The node never writes to disk itself: it
describes every change of its durable state as a *persist effect* (:class:`PersistState`,
:class:`PersistEntries`, :class:`PersistSnapshot`), and :meth:`PersistentState.apply` is the
reference meaning of each, which a disk-backed host must reproduce.

Indexes start at 1; index 0 with term 0 is the empty prefix every log shares, so "the entry before
the first one" always exists and needs no special case.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field


class EntryKind(enum.Enum):
    """What an entry is for. The state machine applies COMMAND entries and skips NOOP entries."""

    COMMAND = "command"
    # Appended by every new leader: a leader may only count replicas of entries from its own term
    # (see RaftNode._maybe_commit), so it needs one of those to learn what is committed.
    NOOP = "noop"


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. ``request_id`` lets the state machine drop a retried proposal that was
    committed twice; the log itself does not deduplicate."""

    index: int
    term: int
    payload: bytes
    request_id: bytes = b""
    kind: EntryKind = EntryKind.COMMAND


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The application's state after applying every entry up to ``index`` (whose term is
    ``term``). ``members`` is the membership at that point; ``data`` is opaque to Raft."""

    index: int
    term: int
    members: tuple[str, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class PersistState:
    """Make ``term`` and ``voted_for`` durable (both together: a vote is only valid in its term)."""

    term: int
    voted_for: str | None


@dataclass(frozen=True, slots=True)
class PersistEntries:
    """Drop every durable entry with index >= ``from_index``, then append ``entries`` (which, when
    present, start at ``from_index``). An empty ``entries`` is a pure truncation. If the host cannot
    do both atomically it must truncate first: losing an unacknowledged suffix is harmless."""

    from_index: int
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class PersistSnapshot:
    """Make ``snapshot`` the durable snapshot and drop the entries it covers (index <=
    ``snapshot.index``). With ``discard_log`` the entries after it go too: the log disagreed with
    the snapshot, so they are from a dead leader. Must be atomic: a snapshot next to a stale
    suffix would be a log whose terms go backwards."""

    snapshot: Snapshot
    discard_log: bool


PersistEffect = PersistState | PersistEntries | PersistSnapshot


@dataclass
class PersistentState:
    """Exactly what a node needs after a crash: term, vote, log entries and last snapshot.

    The host owns it. It is mutable so a simple host can keep one and :meth:`apply` each persist
    effect to it; :class:`~mon.raft.RaftNode` copies what it needs and never touches it again.
    ``entries`` are contiguous and start right after the snapshot (at 1 without one).
    """

    term: int = 0
    voted_for: str | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None

    def apply(self, effect: PersistEffect) -> None:
        """Apply one persist effect: the reference semantics a durable host must match."""
        match effect:
            case PersistState(term=term, voted_for=voted_for):
                self.term, self.voted_for = term, voted_for
            case PersistEntries(from_index=from_index, entries=entries):
                base = self.snapshot.index if self.snapshot else 0
                if not base < from_index <= base + len(self.entries) + 1:
                    raise ValueError(f"cannot write entries from {from_index}: log has "
                                     f"{base + 1}..{base + len(self.entries)}")
                del self.entries[from_index - base - 1:]
                self.entries.extend(entries)
            case PersistSnapshot(snapshot=snapshot, discard_log=discard_log):
                if discard_log:
                    self.entries = []
                else:
                    self.entries = [e for e in self.entries if e.index > snapshot.index]
                self.snapshot = snapshot
            case _:
                raise TypeError(f"not a persist effect: {effect!r}")

    def copy(self) -> PersistentState:
        return PersistentState(self.term, self.voted_for, list(self.entries), self.snapshot)


class RaftLog:
    """A node's in-memory log: ``snapshot`` followed by contiguous ``entries``.

    ``entry`` and ``matches`` treat an index the log does not hold as an ordinary answer (a
    follower is behind, a prefix was compacted away); ``term`` raises, for callers that know the
    entry is there.
    """

    def __init__(self, snapshot: Snapshot, entries: Iterable[Entry] = ()) -> None:
        self._snapshot = snapshot
        self._entries = list(entries)
        for offset, entry in enumerate(self._entries):
            if entry.index != snapshot.index + 1 + offset:
                raise ValueError(f"log entries are not contiguous after index {snapshot.index}")

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def last_index(self) -> int:
        return self._snapshot.index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self._snapshot.term

    def term(self, index: int) -> int:
        """The term of the entry at ``index`` (the snapshot's term at its own index)."""
        if index == self._snapshot.index:
            return self._snapshot.term
        entry = self.entry(index)
        if entry is None:
            raise IndexError(f"no entry {index}: log holds "
                             f"{self._snapshot.index}..{self.last_index}")
        return entry.term

    def matches(self, index: int, term: int) -> bool:
        """Whether this log holds an entry at ``index`` with ``term`` (the snapshot's last entry
        counts). By the log matching property, it then agrees with any log that does up to there."""
        if index == self._snapshot.index:
            return term == self._snapshot.term
        entry = self.entry(index)
        return entry is not None and entry.term == term

    def entry(self, index: int) -> Entry | None:
        """The entry at ``index``, or None if it is inside the snapshot or past the end."""
        offset = index - self._snapshot.index - 1
        return self._entries[offset] if 0 <= offset < len(self._entries) else None

    def entries(self, start: int, stop: int) -> tuple[Entry, ...]:
        """Entries with ``start <= index < stop``; ``start`` must be after the snapshot."""
        if start <= self._snapshot.index:
            raise ValueError(f"entry {start} is compacted into the snapshot")
        base = self._snapshot.index + 1
        return tuple(self._entries[start - base:stop - base])

    def append(self, entry: Entry) -> None:
        if entry.index != self.last_index + 1:
            raise ValueError(f"appending entry {entry.index} after {self.last_index}")
        self._entries.append(entry)

    def truncate_from(self, index: int) -> None:
        """Drop the entry at ``index`` and everything after it."""
        if index <= self._snapshot.index:
            raise ValueError(f"cannot truncate at {index}: compacted up to {self._snapshot.index}")
        del self._entries[index - self._snapshot.index - 1:]

    def install(self, snapshot: Snapshot) -> bool:
        """Replace the prefix up to ``snapshot.index`` by ``snapshot``.

        Entries after it survive only if the log holds the snapshot's last entry (same index and
        term): by the log matching property everything before agrees, so the suffix is still a
        valid continuation. Otherwise the suffix is dropped. Returns True if it was dropped.
        """
        keep = self.matches(snapshot.index, snapshot.term)
        if keep:
            del self._entries[:snapshot.index - self._snapshot.index]
        else:
            self._entries = []
        self._snapshot = snapshot
        return not keep

    def first_index_of_term_run(self, index: int) -> int:
        """The first index of the run of same-term entries that contains ``index``.

        A follower reports it when it rejects an append, so the leader can skip the whole run of a
        dead leader's entries in one round trip instead of one entry per round trip.
        """
        term = self.term(index)
        while index - 1 > self._snapshot.index and self.term(index - 1) == term:
            index -= 1
        return index

    def last_index_of_term(self, term: int, at_most: int) -> int | None:
        """The highest index <= ``at_most`` holding an entry of ``term``, if any (leader side of
        the same fast backtracking)."""
        index = min(at_most, self.last_index)
        while index > self._snapshot.index:
            entry_term = self.term(index)
            if entry_term == term:
                return index
            if entry_term < term:
                return None  # terms only grow along a log: no earlier entry can match
            index -= 1
        return None

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a log ending at (last_index, last_term) is at least as up to date as this one:
        a later last term wins, and with equal last terms the longer log wins (Raft §5.4.1)."""
        return (last_term, last_index) >= (self.last_term, self.last_index)
