"""The CRUSH map as plain values, in Ceph's vocabulary.

A `CrushMap` holds what Ceph's text crushmap holds: devices, types, buckets, rules and tunables.
Weights are integers in 16.16 fixed point (0x10000 == 1.0), exactly as Ceph stores them, so no
float ever reaches the placement code. `rados_py.crush.compiled` turns a map into the flat arrays
the C extension maps with; `rados_py.crush.text` reads and writes Ceph's text syntax.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

WEIGHT_ONE = 0x10000

# Bucket algorithms, numbered as in Ceph's crush.h.
ALG_UNIFORM = 1
ALG_LIST = 2
ALG_TREE = 3
ALG_STRAW = 4
ALG_STRAW2 = 5
ALG_NAMES = {ALG_UNIFORM: "uniform", ALG_LIST: "list", ALG_TREE: "tree", ALG_STRAW: "straw",
             ALG_STRAW2: "straw2"}
ALG_BY_NAME = {name: alg for alg, name in ALG_NAMES.items()}

HASH_RJENKINS1 = 0

# Rule step opcodes, numbered as in Ceph's crush.h.
OP_NOOP = 0
OP_TAKE = 1
OP_CHOOSE_FIRSTN = 2
OP_CHOOSE_INDEP = 3
OP_EMIT = 4
OP_CHOOSELEAF_FIRSTN = 6
OP_CHOOSELEAF_INDEP = 7
OP_SET_CHOOSE_TRIES = 8
OP_SET_CHOOSELEAF_TRIES = 9
OP_SET_CHOOSE_LOCAL_TRIES = 10
OP_SET_CHOOSE_LOCAL_FALLBACK_TRIES = 11
OP_SET_CHOOSELEAF_VARY_R = 12
OP_SET_CHOOSELEAF_STABLE = 13

CHOOSE_OPS = {OP_CHOOSE_FIRSTN: "choose firstn", OP_CHOOSE_INDEP: "choose indep",
              OP_CHOOSELEAF_FIRSTN: "chooseleaf firstn", OP_CHOOSELEAF_INDEP: "chooseleaf indep"}
SET_OPS = {OP_SET_CHOOSE_TRIES: "set_choose_tries", OP_SET_CHOOSELEAF_TRIES: "set_chooseleaf_tries",
           OP_SET_CHOOSE_LOCAL_TRIES: "set_choose_local_tries",
           OP_SET_CHOOSE_LOCAL_FALLBACK_TRIES: "set_choose_local_fallback_tries",
           OP_SET_CHOOSELEAF_VARY_R: "set_chooseleaf_vary_r",
           OP_SET_CHOOSELEAF_STABLE: "set_chooseleaf_stable"}

RULE_TYPE_REPLICATED = 1
RULE_TYPE_ERASURE = 3
RULE_TYPE_NAMES = {RULE_TYPE_REPLICATED: "replicated", RULE_TYPE_ERASURE: "erasure"}

ITEM_NONE = 0x7FFFFFFF  # CRUSH_ITEM_NONE: an empty position in an indep result
# The choose_args set used when there is none for the pool at hand (Ceph's index -1 as u64).
DEFAULT_CHOOSE_ARGS = (1 << 64) - 1

MAX_DEVICES = 1 << 20
MAX_BUCKETS = 1 << 16
MAX_BUCKET_SIZE = 1 << 16
MAX_RULES = 256
MAX_RULE_STEPS = 1024
MAX_WEIGHT_SET_POSITIONS = 256  # result positions a choose_args weight_set may cover
MAX_WEIGHT = 0x7FFFFFFF  # weights are signed 32-bit in Ceph's tools


@dataclass(frozen=True)
class Tunables:
    """CRUSH tunables; the defaults are Ceph's optimal (jewel..pacific) profile."""

    choose_local_tries: int = 0
    choose_local_fallback_tries: int = 0
    choose_total_tries: int = 50
    chooseleaf_descend_once: int = 1
    chooseleaf_vary_r: int = 1
    chooseleaf_stable: int = 1
    straw_calc_version: int = 1
    allowed_bucket_algs: int = 54

    @classmethod
    def legacy(cls) -> Tunables:
        """Argonaut values: what crushtool assumes for a text map without `tunable` lines."""
        return cls(2, 5, 19, 0, 0, 0, 0, 22)

    @classmethod
    def optimal(cls) -> Tunables:
        return cls()

    def replace(self, **changes: int) -> Tunables:
        return dataclasses.replace(self, **changes)


TUNABLE_NAMES = tuple(f.name for f in dataclasses.fields(Tunables))


@dataclass(frozen=True)
class Device:
    id: int
    name: str
    device_class: str | None = None


@dataclass(frozen=True)
class BucketItem:
    id: int  # >= 0 a device, < 0 a bucket
    weight: int  # 16.16 fixed point


@dataclass(frozen=True)
class Bucket:
    id: int  # negative
    name: str
    type_id: int
    alg: int = ALG_STRAW2
    hash: int = HASH_RJENKINS1
    items: tuple[BucketItem, ...] = ()
    # Shadow ("per device class") bucket ids declared as `id -N class C`.
    class_ids: tuple[tuple[str, int], ...] = ()

    @property
    def weight(self) -> int:
        """Bucket weight as Ceph computes it: the sum of its item weights."""
        return sum(item.weight for item in self.items)


@dataclass(frozen=True)
class ChooseArg:
    """A bucket's alternative straw2 inputs (Ceph's choose_args, as the balancer's weight-sets
    use them): weights per result position (the last row serves positions beyond it), and ids
    to hash instead of the items' own."""

    weight_set: tuple[tuple[int, ...], ...] = ()  # positions x items, 16.16
    ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Step:
    op: int
    arg1: int = 0
    arg2: int = 0
    # For OP_TAKE with a device class (`step take default class ssd`): the class name; `arg1` is
    # the id of the base bucket and the compiled map substitutes the shadow bucket.
    item_class: str | None = None


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    type: int = RULE_TYPE_REPLICATED
    min_size: int = 1
    max_size: int = 10
    steps: tuple[Step, ...] = ()


@dataclass
class CrushMap:
    """A whole CRUSH map. Mutable while being built; `validate()` checks it is mappable."""

    devices: dict[int, Device] = field(default_factory=dict)
    types: dict[int, str] = field(default_factory=dict)
    buckets: dict[int, Bucket] = field(default_factory=dict)
    rules: dict[int, Rule] = field(default_factory=dict)
    tunables: Tunables = field(default_factory=Tunables)
    # choose_args sets by index (a pool id, or DEFAULT_CHOOSE_ARGS): bucket id -> ChooseArg
    choose_args: dict[int, dict[int, ChooseArg]] = field(default_factory=dict)

    # --- lookups -------------------------------------------------------------------------------
    def item_name(self, item: int) -> str:
        if item >= 0:
            dev = self.devices.get(item)
            return dev.name if dev else f"device{item}"
        bucket = self.buckets.get(item)
        return bucket.name if bucket else f"bucket{-1 - item}"

    def type_id(self, name: str) -> int:
        for tid, tname in self.types.items():
            if tname == name:
                return tid
        raise KeyError(name)

    def item_by_name(self, name: str) -> int:
        for dev in self.devices.values():
            if dev.name == name:
                return dev.id
        for bucket in self.buckets.values():
            if bucket.name == name:
                return bucket.id
        raise KeyError(name)

    @property
    def max_devices(self) -> int:
        """One past the highest device id that appears (as a device or as a bucket item)."""
        ids = list(self.devices)
        ids += [it.id for b in self.buckets.values() for it in b.items if it.id >= 0]
        return max(ids) + 1 if ids else 0

    def device_classes(self) -> list[str]:
        return sorted({d.device_class for d in self.devices.values() if d.device_class})

    def parents(self) -> dict[int, int]:
        """item id -> id of the bucket that holds it."""
        return {it.id: b.id for b in self.buckets.values() for it in b.items}

    def rule_by_name(self, name: str) -> Rule:
        for rule in self.rules.values():
            if rule.name == name:
                return rule
        raise KeyError(name)

    def validate(self) -> None:
        """Refuse maps CRUSH cannot map safely; see `rados_py.crush.validate`."""
        from rados_py.crush.validate import validate_map

        validate_map(self)
