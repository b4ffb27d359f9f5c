"""Peering, the pure part: choose a PG's authoritative history and what each member lacks.

The primary of a PG gathers, from every OSD it can reach that may hold the PG (the acting set,
the up set, and the acting sets of the activations those OSDs remember), a `Peer`: its info
(last activation epoch `les` with that activation's acting set, last_update, log bounds), its
log (seq -> entry) and its persisted missing set. From those, with no I/O:

1. The authoritative peer is the one with the newest `les`, then the newest `last_update`
   (ties: the primary, then the lowest id). A write is acknowledged only when every member of
   the acting set of its interval has it in its log, and every member of an activation copies
   the authoritative log at activation; so the newest activation any reachable peer took part
   in holds every acknowledged write in its log.
2. For every other peer, the common point `c` is the highest seq at which both logs hold the
   same version. Its entries after `c` are *divergent* (written by a primary that died before
   the write was acknowledged): they are dropped, and each object they touched is missing on
   that peer (it needs the authoritative state of the object, which may be "absent"). The
   authoritative entries after `c` are appended to its log, and each object they touch is
   missing at the version of its last such entry (0: the object must not exist).
3. A peer whose log does not reach the authoritative log (it has nothing, or its newest entry
   is older than the authoritative log's tail) is *backfilled*: its log is replaced, and what
   it lacks is found by comparing object inventories (`backfill_missing`).

Divergent objects not touched by the authoritative log keep the authoritative peer's current
version, which only its store knows: `Plan.unresolved` lists them so the caller can ask, then
`Plan.resolve` fills them in.

Known approximation (Ceph keeps "past intervals" from its map history for this): if every OSD
of the latest activation is unreachable while an older member is up, the older member's
history is chosen; the thrash test keeps at most size - min_size OSDs down, so one member of
every activation survives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["ABSENT", "Entry", "MemberPlan", "Peer", "Plan", "backfill_missing", "plan"]

ABSENT = 0  # a missing item's need: the object must not exist


@dataclass(frozen=True)
class Entry:
    """One PG log entry as peering sees it."""

    seq: int
    version: int
    oid: bytes
    removed: bool = False

    @property
    def need(self) -> int:
        """The version an object must have after this entry (ABSENT when it removed it)."""
        return ABSENT if self.removed else self.version


@dataclass
class Peer:
    """What one OSD reported about the PG (exists=False: it holds nothing of it)."""

    osd: int
    exists: bool = False
    les: int = 0
    les_acting: tuple[int, ...] = ()
    log_tail: int = 0
    log: list[Entry] = field(default_factory=list)  # oldest first, seqs log_tail+1..last
    missing: dict[bytes, int] = field(default_factory=dict)

    @property
    def last_seq(self) -> int:
        return self.log[-1].seq if self.log else self.log_tail

    @property
    def last_update(self) -> int:
        return self.log[-1].version if self.log else 0


@dataclass
class MemberPlan:
    """What one peer must do to follow the authoritative history."""

    osd: int
    backfill: bool = False         # log replaced; missing comes from an inventory comparison
    keep_through: int = 0          # drop own entries with seq > keep_through (divergent)
    append: list[Entry] = field(default_factory=list)
    missing: dict[bytes, int] = field(default_factory=dict)
    divergent: set[bytes] = field(default_factory=set)  # objects needing the auth's state


@dataclass
class Plan:
    auth: int | None               # None: nobody holds anything of this PG (a new PG)
    auth_log: list[Entry]
    auth_tail: int
    members: dict[int, MemberPlan]

    @property
    def unresolved(self) -> set[bytes]:
        """Divergent objects whose authoritative version only the auth's store knows."""
        out: set[bytes] = set()
        for member in self.members.values():
            out |= member.divergent
        return out

    def resolve(self, versions: Mapping[bytes, int]) -> None:
        """Fill in the auth's versions (ABSENT if it has no such object) of divergent objects."""
        for member in self.members.values():
            for oid in member.divergent:
                member.missing[oid] = versions[oid]
            member.divergent = set()

    @property
    def last_update(self) -> int:
        return self.auth_log[-1].version if self.auth_log else 0

    @property
    def last_seq(self) -> int:
        return self.auth_log[-1].seq if self.auth_log else self.auth_tail


def _rank(peer: Peer, primary: int) -> tuple[int, int, bool, int]:
    return (peer.les, peer.last_update, peer.osd == primary, -peer.osd)


def plan(peers: Iterable[Peer], primary: int) -> Plan:
    """The authoritative history and each peer's plan (see the module docstring)."""
    peers = list(peers)
    holders = [p for p in peers if p.exists]
    if not holders:
        return Plan(None, [], 0, {p.osd: MemberPlan(p.osd) for p in peers})
    auth = max(holders, key=lambda p: _rank(p, primary))
    members: dict[int, MemberPlan] = {}
    for peer in peers:
        if peer.osd == auth.osd:
            members[peer.osd] = MemberPlan(peer.osd, keep_through=peer.last_seq,
                                           missing=dict(peer.missing))
        else:
            members[peer.osd] = _follow(peer, auth)
    return Plan(auth.osd, list(auth.log), auth.log_tail, members)


def _common_point(peer: Peer, auth: Peer) -> int | None:
    """Highest seq at which both logs agree; None when that cannot be known from the logs."""
    mine = {e.seq: e.version for e in peer.log}
    theirs = {e.seq: e.version for e in auth.log}
    c = min(peer.last_seq, auth.last_seq)
    floor = max(peer.log_tail, auth.log_tail)
    while c > floor:
        if c in mine and mine[c] == theirs.get(c):
            return c
        c -= 1
    # below the floor one of the logs was trimmed: agreement there cannot be checked, except
    # at 0 (neither log was ever trimmed: having nothing in common is fine)
    return 0 if c == 0 else None


def _follow(peer: Peer, auth: Peer) -> MemberPlan:
    if not peer.exists:
        return MemberPlan(peer.osd, backfill=True, append=list(auth.log))
    if peer.last_seq < auth.log_tail:  # it missed entries the auth no longer has
        return MemberPlan(peer.osd, backfill=True, append=list(auth.log))
    c = _common_point(peer, auth)
    if c is None:
        return MemberPlan(peer.osd, backfill=True, append=list(auth.log))
    missing = dict(peer.missing)
    divergent = {e.oid for e in peer.log if e.seq > c}
    append = [e for e in auth.log if e.seq > c]
    touched_by_auth = {}
    for e in auth.log:  # the auth's latest entry per object, anywhere in its log
        touched_by_auth[e.oid] = e.need
    for oid in divergent:
        if oid in touched_by_auth:
            missing[oid] = touched_by_auth[oid]
        elif oid in auth.missing:
            missing[oid] = auth.missing[oid]
    unresolved = {oid for oid in divergent if oid not in touched_by_auth
                  and oid not in auth.missing}
    for e in append:  # later entries override earlier ones
        missing[e.oid] = e.need
    return MemberPlan(peer.osd, keep_through=c, append=append, missing=missing,
                      divergent=unresolved)


def backfill_missing(auth_objects: Mapping[bytes, int], auth_missing: Mapping[bytes, int],
                     target_objects: Mapping[bytes, int]) -> dict[bytes, int]:
    """What a backfill target lacks: every object whose version differs from the auth's state
    (its store corrected by its own missing set), and every object the auth's state lacks."""
    state = dict(auth_objects)
    for oid, need in auth_missing.items():
        if need == ABSENT:
            state.pop(oid, None)
        else:
            state[oid] = need
    missing = {oid: v for oid, v in state.items() if target_objects.get(oid) != v}
    missing.update({oid: ABSENT for oid in target_objects if oid not in state})
    return missing
