"""The OSDMap and Ceph's placement chain: object name -> hash -> PG -> pps -> up/acting OSDs.

Every step is Ceph's (`OSDMap::object_locator_to_pg`, `pg_pool_t::raw_pg_to_pg`,
`raw_pg_to_pps`, `OSDMap::_pg_to_up_acting_osds`), so the same pool, CRUSH map and OSD states
put every object on the same OSDs as Ceph would. Maps are immutable values with an epoch.

Because a map never changes, what it computes is cached on it: the CRUSH weight vector (built
once, not per mapping: at 1,000 OSDs building it was 90 % of a mapping) and each PG's placement,
so an op maps its object in one hash plus one dict lookup per epoch (Ceph's OSDMapMapping).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from rados_py import _placement
from rados_py.crush.compiled import ITEM_NONE, CompiledMap
from rados_py.crush.model import WEIGHT_ONE
from rados_py.errors import InvalidArgument, NoSuchPool

POOL_REPLICATED = "replicated"
POOL_ERASURE = "erasure"
FLAG_HASHPSPOOL = "hashpspool"
NAMESPACE_SEPARATOR = b"\x1f"  # Ceph joins namespace and name with this byte before hashing
MAX_PG_NUM = 1 << 20


def pg_mask(n: int) -> int:
    """Ceph's pg_num_mask: the smallest 2^k - 1 that covers n - 1."""
    return (1 << (n - 1).bit_length()) - 1


@dataclass(frozen=True)
class Pool:
    id: int
    name: str
    size: int = 3
    min_size: int = 2
    pg_num: int = 32
    pgp_num: int = 0  # 0: same as pg_num
    crush_rule: int = 0
    type: str = POOL_REPLICATED
    flags: frozenset[str] = frozenset({FLAG_HASHPSPOOL})
    created: int = 0  # the epoch it was created at

    def __post_init__(self) -> None:
        if self.pgp_num == 0:
            object.__setattr__(self, "pgp_num", self.pg_num)
        if not 1 <= self.pg_num <= MAX_PG_NUM:
            raise InvalidArgument(f"pool {self.name}: pg_num {self.pg_num} not in 1..{MAX_PG_NUM}")
        if not 1 <= self.pgp_num <= self.pg_num:
            raise InvalidArgument(f"pool {self.name}: pgp_num {self.pgp_num} not in 1..pg_num")
        if not 1 <= self.size <= 32 or not 1 <= self.min_size <= self.size:
            raise InvalidArgument(f"pool {self.name}: need 1 <= min_size <= size <= 32")
        if self.type not in (POOL_REPLICATED, POOL_ERASURE):
            raise InvalidArgument(f"pool {self.name}: unknown type {self.type!r}")

    @property
    def hashpspool(self) -> bool:
        return FLAG_HASHPSPOOL in self.flags

    @property
    def can_shift_osds(self) -> bool:
        """Replicated pools close gaps in a PG's OSD list; erasure pools keep positions."""
        return self.type == POOL_REPLICATED

    def hash_key(self, name: bytes, nspace: bytes = b"") -> int:
        """The 32-bit object hash (raw placement seed) of a name in a namespace."""
        key = nspace + NAMESPACE_SEPARATOR + name if nspace else name
        return _placement.str_hash_rjenkins(key)

    def raw_pg_to_pg(self, ps: int) -> int:
        """Fold a raw hash into one of pg_num PG seeds."""
        return _placement.stable_mod(ps, self.pg_num, pg_mask(self.pg_num))

    def raw_pg_to_pps(self, ps: int) -> int:
        """The CRUSH input x for a PG: pgp-folded seed, mixed with the pool id (HASHPSPOOL)."""
        seed = _placement.stable_mod(ps, self.pgp_num, pg_mask(self.pgp_num))
        if self.hashpspool:
            return _placement.hash32(seed, self.id)
        return (seed + self.id) & 0xFFFFFFFF


class PgId(NamedTuple):
    pool: int
    seed: int

    def __str__(self) -> str:
        return f"{self.pool}.{self.seed:x}"

    @classmethod
    def parse(cls, text: str) -> PgId:
        try:
            pool, seed = text.split(".")
            return cls(int(pool), int(seed, 16))
        except ValueError:
            raise InvalidArgument(f"bad PG id {text!r}: expected POOL.SEED_HEX") from None


class Placement(NamedTuple):
    up: list[int]
    up_primary: int
    acting: list[int]
    acting_primary: int


@dataclass(frozen=True)
class OsdState:
    id: int
    up: bool = True
    weight: int = WEIGHT_ONE  # in/out reweight, 16.16; 0 is out
    addr: str = ""
    up_from: int = 0  # epoch it last came up
    down_at: int = 0  # epoch it last went down
    auto_out: bool = False  # out by the monitors' decision: in again when it boots
    heartbeat_addr: str = ""  # where its heartbeat thread answers (osd/heartbeat.py)

    @property
    def is_in(self) -> bool:
        return self.weight > 0


@dataclass(frozen=True)
class OSDMap:
    """Pools, OSD states and the CRUSH map at one epoch."""

    crush: CompiledMap
    fsid: str = ""
    epoch: int = 1
    pools: dict[int, Pool] = field(default_factory=dict)
    osds: dict[int, OsdState] = field(default_factory=dict)
    pg_temp: dict[PgId, tuple[int, ...]] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()  # cluster-wide OSD flags: noout, noin, nodown, pause

    @classmethod
    def all_up(cls, crush: CompiledMap, pools: list[Pool], **kw) -> OSDMap:
        """Every device of the CRUSH map exists, up and in (a healthy cluster)."""
        osds = {d: OsdState(d) for d in crush.crush_map.devices}
        return cls(crush=crush, pools={p.id: p for p in pools}, osds=osds, **kw)

    def replace(self, **changes) -> OSDMap:
        return dataclasses.replace(self, epoch=changes.pop("epoch", self.epoch + 1), **changes)

    @property
    def max_osd(self) -> int:
        return max(self.osds, default=-1) + 1

    def pool(self, pool_id: int) -> Pool:
        try:
            return self.pools[pool_id]
        except KeyError:
            raise NoSuchPool(pool_id) from None

    def crush_weights(self) -> list[int]:
        """Per-OSD reweights for CRUSH: out or nonexistent OSDs weigh 0."""
        weights = [0] * max(self.max_osd, self.crush.max_devices)
        for osd in self.osds.values():
            weights[osd.id] = osd.weight
        return weights

    @cached_property
    def _weight_vector(self) -> bytes:
        """`crush_weights` as the C mapper reads them, built once per map."""
        return self.crush.weight_vector(self.crush_weights())

    @cached_property
    def _placements(self) -> dict[PgId, Placement]:
        return {}

    def _exists_up(self, osd: int) -> bool:
        state = self.osds.get(osd)
        return state is not None and state.up

    # --- the chain ------------------------------------------------------------------------------
    def object_to_pg(self, pool_id: int, name: bytes, nspace: bytes = b"") -> tuple[int, PgId]:
        """(raw 32-bit hash, PG) of an object."""
        pool = self.pool(pool_id)
        ps = pool.hash_key(name, nspace)
        return ps, PgId(pool_id, pool.raw_pg_to_pg(ps))

    def _do_rule(self, pool: Pool, seed: int) -> list[int]:
        return self.crush.do_rule(pool.crush_rule, pool.raw_pg_to_pps(seed), pool.size,
                                  self._weight_vector, choose_args=pool.id)

    def pg_to_raw_osds(self, pgid: PgId) -> list[int]:
        pool = self.pool(pgid.pool)
        return self._remove_nonexistent(pool, self._do_rule(pool, pgid.seed))

    def _remove_nonexistent(self, pool: Pool, raw: list[int]) -> list[int]:
        if pool.can_shift_osds:
            return [o for o in raw if o in self.osds]
        return [o if o in self.osds else ITEM_NONE for o in raw]

    def _raw_to_up(self, pool: Pool, raw: list[int]) -> list[int]:
        if pool.can_shift_osds:
            return [o for o in raw if self._exists_up(o)]
        return [o if self._exists_up(o) else ITEM_NONE for o in raw]

    @staticmethod
    def _primary(osds: list[int]) -> int:
        return next((o for o in osds if o != ITEM_NONE), -1)

    def _placement(self, pgid: PgId, raw: list[int]) -> Placement:
        pool = self.pool(pgid.pool)
        up = self._raw_to_up(pool, self._remove_nonexistent(pool, raw))
        up_primary = self._primary(up)
        temp = self.pg_temp.get(pgid)
        acting = list(temp) if temp else list(up)
        return Placement(up, up_primary, acting, self._primary(acting) if temp else up_primary)

    def pg_to_up_acting(self, pgid: PgId) -> Placement:
        """The PG's up and acting sets (computed once per map; callers must not mutate)."""
        cached = self._placements.get(pgid)
        if cached is None:
            cached = self._placement(pgid, self._do_rule(self.pool(pgid.pool), pgid.seed))
            self._placements[pgid] = cached
        return cached

    def map_object(self, pool_id: int, name: bytes, nspace: bytes = b"") -> tuple[
            int, PgId, Placement]:
        ps, pgid = self.object_to_pg(pool_id, name, nspace)
        return ps, pgid, self.pg_to_up_acting(pgid)

    def map_pool(self, pool_id: int) -> list[Placement]:
        """The placement of every PG of a pool, computed in one batch C call."""
        pool = self.pool(pool_id)
        cache = self._placements
        if all(PgId(pool_id, seed) in cache for seed in range(pool.pg_num)):
            return [cache[PgId(pool_id, seed)] for seed in range(pool.pg_num)]
        raws = self.crush.map_pgs(pool.crush_rule, pool.id, pool.pg_num, pool.pgp_num, pool.size,
                                  pool.hashpspool, self._weight_vector)
        out = [self._placement(PgId(pool_id, seed), raw) for seed, raw in enumerate(raws)]
        for seed, placement in enumerate(out):
            cache[PgId(pool_id, seed)] = placement
        return out
