"""What a host feeds a PG's state machine (events) and what the machine asks of it (effects).

The contract is in osd/pg_machine.py's docstring. Messages between members are osd.proto's
(PgQuery, PgActivate, RepOpRequest, PushRequest...), so the host only routes them; everything
here is plain data with no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rados_py.proto.loligo import osd_pb2

__all__ = [
    "ClientOp",
    "Effect",
    "Event",
    "Execute",
    "Executed",
    "Info",
    "MapChange",
    "MapView",
    "OsdLife",
    "Persist",
    "Persisted",
    "Receive",
    "Recover",
    "Recovered",
    "ReplyOp",
    "Respond",
    "Response",
    "ScrubDone",
    "ScrubRange",
    "ScrubRangeDone",
    "ScrubRequest",
    "Send",
    "ServeRead",
    "StartTimer",
    "TimerFired",
]


# --- the map, as one PG sees it --------------------------------------------------------------

@dataclass(frozen=True)
class OsdLife:
    """One OSD's liveness in a map (for "may a silent OSD hold newer writes?")."""

    up: bool
    up_from: int
    down_at: int


@dataclass(frozen=True)
class MapView:
    """What the machine needs of an OSD map for its PG (the host derives it from OSDMap)."""

    epoch: int
    acting: tuple[int, ...]
    up: tuple[int, ...]
    raw: tuple[int, ...]                 # CRUSH's choice before down OSDs are dropped
    size: int
    min_size: int
    pool_created: int
    osds: Mapping[int, OsdLife] = field(default_factory=dict)

    @property
    def primary(self) -> int:
        return self.acting[0] if self.acting else -1

    def key(self) -> tuple[Any, ...]:
        """Two maps with the same key are one interval for the PG."""
        return (self.acting, self.up, tuple(self.osds[o].up_from if o in self.osds else 0
                                            for o in self.acting), self.size, self.min_size)


# --- events (host -> machine) ------------------------------------------------------------------

@dataclass(frozen=True)
class MapChange:
    view: MapView


@dataclass(frozen=True)
class Receive:
    """A request from the PG's primary (`src`) to this member; answer with `Respond(rid)`."""

    src: int
    rid: int
    msg: Any


@dataclass(frozen=True)
class Response:
    """The answer to a `Send(rid)` of this machine: `msg`, or `error` (refused, unreachable,
    timed out)."""

    rid: int
    msg: Any = None
    error: str = ""


@dataclass(frozen=True)
class Persisted:
    """A `Persist(pid)` is durable (`error` empty) or failed, leaving nothing: its error
    family (rados_py's table) and errno (ENOSPC for a full store...)."""

    pid: int
    error: str = ""
    family: str = "LoligoError"
    errno: int = 0


@dataclass(frozen=True)
class ClientOp:
    """A client op on `oid` arrived at this primary (`op` names it in the host)."""

    op: int
    oid: bytes
    write: bool
    client: str = ""
    tid: int = 0


@dataclass(frozen=True)
class Executed:
    """The host ran op `op` against the object as it is now: its resolved store ops, results
    and existence afterwards, or the errno it failed with (`failed_op`: which op)."""

    op: int
    store_ops: tuple[osd_pb2.StoreOp, ...] = ()
    results: tuple[osd_pb2.OsdOpResult, ...] = ()
    exists_after: bool = True
    version_before: int = 0
    errno: int = 0
    failed_op: int = 0
    message: str = ""
    checksum_error: bool = False   # this copy is bad: recover it from a replica and retry


@dataclass(frozen=True)
class Recovered:
    """A `Recover(rid)` ended: `moved` bytes per target, or why not."""

    rid: int
    moved: int = 0
    error: str = ""
    unfound: bool = False          # no source had the version
    target_failed: bool = False    # a member refused the object (full disk...)


@dataclass(frozen=True)
class TimerFired:
    key: str


@dataclass(frozen=True)
class ScrubRequest:
    """Scrub the PG now (`sid` names the request in the host)."""

    sid: int
    deep: bool
    repair: bool
    now: float = 0.0       # wall time (the scrub stamps the PG keeps)


@dataclass(frozen=True)
class ScrubRangeDone:
    """One range of a scrub was compared: what differs (osd/scrub.py's Finding), the objects
    seen, where the next range starts ("" when this was the last), or why it failed."""

    sid: int
    findings: tuple[Any, ...] = ()
    objects: int = 0
    upto: bytes = b""
    error: str = ""


Event = (MapChange | Receive | Response | Persisted | ClientOp | Executed | Recovered
         | TimerFired | ScrubRequest | ScrubRangeDone)


# --- effects (machine -> host) ------------------------------------------------------------------

@dataclass(frozen=True)
class Send:
    """Send `msg` to member `dst` (this OSD too: the host loops it back); answer: Response."""

    dst: int
    rid: int
    msg: Any


@dataclass(frozen=True)
class Respond:
    """Answer request `rid` (a Receive) with `msg`, or refuse it with `error` (family name
    of rados_py's error table and message)."""

    rid: int
    msg: Any = None
    error: tuple[str, str] | None = None


@dataclass(frozen=True)
class Persist:
    """Make one change to this member's store, in the order asked: `what` is the message
    it comes from (RepOpRequest, PgActivate, PushRequest, PgRemove) or "scrubbed"; `trim_to`
    (writes) drops log entries up to there; answer: Persisted(pid)."""

    pid: int
    what: Any
    log_after: int = 0     # writes: the log must end here (no hole)
    trim_to: int = 0
    stamps: tuple[float, float] = (0.0, 0.0)
    # activation and stamps: the member's info to record (les, its acting set, log tail)
    info: tuple[int, tuple[int, ...], int] | None = None


@dataclass(frozen=True)
class ServeRead:
    """A read-only request of the primary (Pull, Inventory, ScrubMap): answer `rid` from the
    store (the fence admitted it)."""

    rid: int
    msg: Any


@dataclass(frozen=True)
class Execute:
    """Run client op `op` against the object now (it holds the object); answer: Executed."""

    op: int


@dataclass(frozen=True)
class ReplyOp:
    """Answer client op `op` (its object is released)."""

    op: int
    reply: osd_pb2.OpReply


@dataclass(frozen=True)
class Recover:
    """Copy `oid` at version `need` from the first of `sources` that has it to `targets`
    (PushRequests carrying `interval`); need 0: remove it there. Answer: Recovered(rid)."""

    rid: int
    oid: bytes
    need: int
    sources: tuple[int, ...]
    targets: tuple[int, ...]
    interval: osd_pb2.Interval
    background: bool = True   # recovery's own (throttled), not an op waiting for it


@dataclass(frozen=True)
class ScrubRange:
    """Compare the objects after `after` (a range of them) across `members`, writes to them
    held back meanwhile; answer: ScrubRangeDone."""

    sid: int
    after: bytes
    deep: bool
    members: tuple[int, ...]
    interval: osd_pb2.Interval


@dataclass(frozen=True)
class ScrubDone:
    """Scrub request `sid` ended: objects compared, what is still inconsistent, what was
    repaired, or why it could not run."""

    sid: int
    objects: int = 0
    findings: tuple[Any, ...] = ()
    repaired: int = 0
    error: str = ""


@dataclass(frozen=True)
class StartTimer:
    key: str
    delay: float


@dataclass(frozen=True)
class Info:
    """Something worth a log line (`warning`: at warning level)."""

    text: str
    warning: bool = False


Effect = (Send | Respond | Persist | ServeRead | Execute | ReplyOp | Recover | ScrubRange
          | ScrubDone | StartTimer | Info)
