"""Placement-group logic with no I/O: routing, versions, object ids, the dedup table.

Everything here is a pure function of its arguments (an OSDMap, a request's fields, a PG's
in-memory state), so the rules that decide *whether* an OSD may serve a request are unit
tested without sockets or disks (tests/unit/test_osd_pg.py). The servicer (osd/service.py)
only decodes, asks these functions, and does the I/O they call for.

Rules:
- Versions are `(epoch, seq)` packed into one integer `epoch << 32 | seq`: `seq` is the PG's
  log sequence, strictly increasing across epochs, so packed versions order like the pairs
  and fit the store's 63-bit version.
- A request is served only by the acting primary of the PG *in the OSD's own map*, and only
  when the client's map is exactly as new: an older client map is answered STALE_EPOCH with
  our epoch (the client refetches and resends), a newer one makes the OSD fetch maps first
  (decided by the caller: `Route.WAIT`).
- A write needs at least min_size acting members; fewer: UNDERSIZED.
- Object ids in the store are `len(nspace) (2 bytes) + nspace + name`, so two objects of
  different namespaces never collide and a listing can give both parts back exactly.
"""

from __future__ import annotations

import asyncio
import enum
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from rados_py.errors import InvalidArgument
from rados_py.osdmap import OSDMap, PgId, Placement

__all__ = ["DEDUP_PER_PG", "MAX_NSPACE", "MAX_OBJECT_NAME", "NO_ROUND", "DedupTable", "PgState",
           "Route", "RouteDecision", "Token", "checked_coll", "coll_for", "pack_version",
           "refusal", "route", "split_oid", "store_oid", "token_of", "unpack_version"]

MAX_OBJECT_NAME = 4000  # bytes; with the namespace it stays under the store's 4096
MAX_NSPACE = 64
DEDUP_PER_PG = 4096  # remembered (client, tid) answers per PG; older ones fall off


def pack_version(epoch: int, seq: int) -> int:
    """(epoch, seq) -> one integer that orders like the pair."""
    if not 0 <= epoch < 1 << 31 or not 0 <= seq < 1 << 32:
        raise InvalidArgument(f"version out of range: epoch {epoch}, seq {seq}")
    return epoch << 32 | seq


def unpack_version(version: int) -> tuple[int, int]:
    return version >> 32, version & 0xFFFFFFFF


def store_oid(nspace: bytes, name: bytes) -> bytes:
    """The object id in the local store; names are data, never paths."""
    if not name:
        raise InvalidArgument("object name must not be empty")
    if len(name) > MAX_OBJECT_NAME:
        raise InvalidArgument(f"object name is {len(name)} bytes, more than {MAX_OBJECT_NAME}")
    if len(nspace) > MAX_NSPACE:
        raise InvalidArgument(f"namespace is {len(nspace)} bytes, more than {MAX_NSPACE}")
    return len(nspace).to_bytes(2, "big") + nspace + name


def split_oid(oid: bytes) -> tuple[bytes, bytes]:
    """(nspace, name) of a store object id."""
    n = int.from_bytes(oid[:2], "big")
    return oid[2:2 + n], oid[2 + n:]


def coll_for(pgid: PgId) -> str:
    """The store collection of a PG ("1.1f")."""
    return str(pgid)


def checked_coll(pgid: str) -> str:
    """The collection of a PG id given on the wire, or InvalidArgument."""
    return coll_for(PgId.parse(pgid))


class Route(enum.Enum):
    SERVE = "serve"
    STALE_EPOCH = "stale_epoch"   # the client must fetch a newer map
    WAIT = "wait"                 # we must fetch a newer map first
    NOT_PRIMARY = "not_primary"
    UNDERSIZED = "undersized"
    BAD_PG = "bad_pg"             # the client's PG does not match ours for this name
    NO_POOL = "no_pool"


@dataclass(frozen=True)
class RouteDecision:
    route: Route
    message: str = ""
    placement: Placement | None = None
    pgid: PgId | None = None

    @property
    def replicas(self) -> list[int]:
        """The acting members other than the primary (the ones a write is sent to)."""
        assert self.placement is not None
        return [o for o in self.placement.acting if o != self.placement.acting_primary]


def route(osdmap: OSDMap, me: int, client_epoch: int, pool_id: int, pg_seed: int,
          name: bytes, nspace: bytes, write: bool) -> RouteDecision:
    """Whether OSD `me`, holding `osdmap`, may serve this request, and the PG's placement."""
    if client_epoch > osdmap.epoch:
        return RouteDecision(Route.WAIT, f"client has epoch {client_epoch}, we {osdmap.epoch}")
    if client_epoch < osdmap.epoch:
        return RouteDecision(Route.STALE_EPOCH, f"osd.{me} has osdmap epoch {osdmap.epoch}, the "
                             f"request epoch {client_epoch}: fetch the newer map and resend")
    pool = osdmap.pools.get(pool_id)
    if pool is None:
        return RouteDecision(Route.NO_POOL, f"no pool {pool_id} at epoch {osdmap.epoch}")
    _, pgid = osdmap.object_to_pg(pool_id, name, nspace)
    if name and pgid.seed != pg_seed:
        return RouteDecision(Route.BAD_PG, f"object maps to PG {pgid}, not {pool_id}."
                             f"{pg_seed:x}: the client computed placement wrongly")
    if not name:  # a PG-wide request (listing)
        if pg_seed >= pool.pg_num:
            return RouteDecision(Route.BAD_PG, f"pool {pool_id} has no PG seed {pg_seed:x}")
        pgid = PgId(pool_id, pg_seed)
    placement = osdmap.pg_to_up_acting(pgid)
    if placement.acting_primary != me:
        return RouteDecision(Route.NOT_PRIMARY, f"osd.{me} is not the primary of {pgid} at "
                             f"epoch {osdmap.epoch} (acting {placement.acting})",
                             placement, pgid)
    if write and len(placement.acting) < pool.min_size:
        return RouteDecision(Route.UNDERSIZED, f"PG {pgid} has {len(placement.acting)} acting "
                             f"OSDs {placement.acting}, fewer than min_size {pool.min_size}: "
                             "writes are refused until enough OSDs are up", placement, pgid)
    return RouteDecision(Route.SERVE, "", placement, pgid)


# --- interval fencing ---------------------------------------------------------------------
Token = tuple[int, int]  # (epoch the interval started, peering round): larger is newer
NO_ROUND: Token = (0, 0)
# messages that change a member's PG in the round it is activated for, and only then
_SAME_ROUND = frozenset({"write", "push"})


def token_of(interval: Any) -> Token:
    """The (epoch, round) of an `Interval` message (NO_ROUND when absent)."""
    return (interval.epoch, interval.round) if interval is not None else NO_ROUND


def refusal(kind: str, token: Token, fence: Token) -> str:
    """Why a member whose fence is `fence` refuses a message of `kind` ("query", "activate",
    "write", "push", "pull", "scrub", "inventory", "remove") from peering round `token`, or "".

    Anything from a round older than the fence is refused: the member has answered a newer
    primary, whose view of the PG must not change behind its back. Writes and pushes must
    come from exactly the round the member was activated for (a newer round has not
    activated it yet)."""
    if token < fence:
        return (f"{kind} from peering round {token}, older than the round {fence} this member "
                "follows: dropped")
    if kind in _SAME_ROUND and token != fence:
        return (f"{kind} from peering round {token}, but this member is activated for "
                f"{fence}: the PG must peer first")
    return ""


class DedupTable:
    """(client, tid) -> the answer given (its bytes, or only the version it got), so a resent
    write is answered, not applied again.

    Bounded per PG (oldest forgotten first): a client resends within its deadline, long before
    thousands of newer requests of the PG push its entry out.
    """

    def __init__(self, capacity: int = DEDUP_PER_PG) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, int], bytes | int] = OrderedDict()

    def get(self, client: str, tid: int) -> bytes | int | None:
        return self._entries.get((client, tid))

    def put(self, client: str, tid: int, answer: bytes | int) -> None:
        if not client:
            return
        self._entries[(client, tid)] = answer
        self._entries.move_to_end((client, tid))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class PgState:
    """What a member keeps in memory for one PG: its log position, last activation, missing set
    (all mirrored from its store, see osd/pgmeta.py) and the dedup table."""

    pgid: str
    last_seq: int = 0
    last_update: int = 0
    log_tail: int = 0
    les: int = 0
    les_acting: tuple[int, ...] = ()
    missing: dict[bytes, int] = field(default_factory=dict)
    scrubbed: tuple[float, float] = (0.0, 0.0)  # last scrub and deep scrub (Unix time)
    dedup: DedupTable = field(default_factory=DedupTable)
    # pipelined writes: last_seq counts those queued; these are not durable yet
    queued: set[asyncio.Future[bool]] = field(default_factory=set)
    inflight: dict[tuple[str, int], asyncio.Future[bool]] = field(default_factory=dict)
    failed: str = ""  # a write failed here: refuse the next ones until the PG peers again

    def next_version(self, epoch: int) -> tuple[int, int]:
        """(seq, packed version) for the next write, ordered after every earlier one."""
        seq = self.last_seq + 1
        return seq, pack_version(epoch, seq)

    def applied(self, seq: int, version: int = 0) -> None:
        if seq > self.last_seq:
            self.last_seq, self.last_update = seq, max(version, self.last_update)
