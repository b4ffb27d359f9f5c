"""A CRUSH map compiled for mapping: flat int32 buffers handed once to the C extension.

`CompiledMap(crush_map)` validates the map, adds the device-class shadow trees, lays buckets and
rules out as the flat arrays `rados_py._placement.CrushMap` reads, and offers the mapping calls
(one input, a range of inputs, or every PG of a pool) with optional per-device reweights.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence

from rados_py import _placement
from rados_py.crush.classes import resolve_take as shadow_of
from rados_py.crush.classes import shadow_buckets
from rados_py.crush.model import (
    DEFAULT_CHOOSE_ARGS,
    OP_TAKE,
    WEIGHT_ONE,
    Bucket,
    ChooseArg,
    CrushMap,
    Step,
)
from rados_py.errors import CrushMapError, NotFound

ITEM_NONE = _placement.ITEM_NONE
MAX_RESULT = _placement.MAX_RESULT

Weights = Mapping[int, int] | Sequence[int] | None


def _int32_array(values: Iterable[int]) -> array:
    return array("i", values)


def _bucket_words(buckets: Mapping[int, Bucket]) -> array:
    slots = max((-1 - bid for bid in buckets), default=-1) + 1
    words = _int32_array([slots])
    for slot in range(slots):
        bucket = buckets.get(-1 - slot)
        if bucket is None:
            words.append(0)
            continue
        words.extend((1, bucket.id, bucket.type_id, bucket.alg, bucket.hash, len(bucket.items)))
        words.extend(item.id for item in bucket.items)
        words.extend(item.weight for item in bucket.items)
    return words


def _arg_words(args: Mapping[int, ChooseArg]) -> array:
    """One choose_args set as the C extension reads it (see read_arg_set in module.c)."""
    used = {b: a for b, a in args.items() if a.weight_set or a.ids is not None}  # others: no-ops
    words = _int32_array([len(used)])
    for bucket_id in sorted(used, reverse=True):
        arg = used[bucket_id]
        size = len(arg.weight_set[0]) if arg.weight_set else len(arg.ids or ())
        words.extend((bucket_id, len(arg.weight_set), size))
        for row in arg.weight_set:
            words.extend(row)
        words.append(int(arg.ids is not None))
        words.extend(arg.ids or ())
    return words


def _rule_words(m: CrushMap, resolve_take) -> array:
    slots = max(m.rules, default=-1) + 1
    words = _int32_array([slots])
    for rule_id in range(slots):
        rule = m.rules.get(rule_id)
        if rule is None:
            words.append(0)
            continue
        words.extend((1, len(rule.steps)))
        for step in rule.steps:
            words.extend((step.op, resolve_take(step), step.arg2))
    return words


class CompiledMap:
    """An immutable, mappable CRUSH map."""

    def __init__(self, crush_map: CrushMap):
        crush_map.validate()
        self.crush_map = crush_map
        # the device-class shadow trees are real buckets to the mapper (crushtool builds them
        # even for a class that only appears in an `id -N class C` line)
        self.buckets: dict[int, Bucket] = {**crush_map.buckets, **shadow_buckets(crush_map)}

        def resolve_take(step: Step) -> int:
            if step.op != OP_TAKE or step.item_class is None:
                return step.arg1
            return shadow_of(crush_map, step.arg1, step.item_class)

        t = crush_map.tunables
        tunables = (t.choose_local_tries, t.choose_local_fallback_tries, t.choose_total_tries,
                    t.chooseleaf_descend_once, t.chooseleaf_vary_r, t.chooseleaf_stable,
                    t.straw_calc_version)
        # choose_args sets go to C in a list; mapping calls name them by position
        self._arg_sets = {index: n for n, index in enumerate(sorted(crush_map.choose_args))}
        arg_buffers = [_arg_words(crush_map.choose_args[i]).tobytes() for i in self._arg_sets]
        try:
            self._c = _placement.CrushMap(crush_map.max_devices, tunables,
                                          _bucket_words(self.buckets).tobytes(),
                                          _rule_words(crush_map, resolve_take).tobytes(),
                                          arg_buffers)
        except ValueError as e:
            raise CrushMapError(str(e)) from None

    @property
    def max_devices(self) -> int:
        return self._c.max_devices

    def weight_vector(self, weights: Weights) -> bytes | None:
        """16.16 reweights per device id as the C mapper wants them; None means all in."""
        if weights is None:
            return None
        if isinstance(weights, bytes):  # already a vector (an OSDMap caches its own)
            return weights
        if isinstance(weights, Mapping):
            vec = array("I", [WEIGHT_ONE]) * self.max_devices
            for osd, w in weights.items():
                if 0 <= osd < len(vec):
                    vec[osd] = max(0, min(int(w), 0xFFFFFFFF))
            return vec.tobytes()
        return array("I", (max(0, min(int(w), 0xFFFFFFFF)) for w in weights)).tobytes()

    def arg_set(self, index: int | None = None) -> int:
        """The choose_args set a mapping uses, as Ceph picks it: the set of `index` (a pool id),
        else the default set, else none (-1)."""
        if index is not None and index in self._arg_sets:
            return self._arg_sets[index]
        return self._arg_sets.get(DEFAULT_CHOOSE_ARGS, -1)

    def _check_rule(self, rule_id: int, num_rep: int) -> None:
        if rule_id not in self.crush_map.rules:
            raise NotFound(f"no crush rule {rule_id}")
        if not 1 <= num_rep <= MAX_RESULT:
            raise CrushMapError(f"num_rep {num_rep} out of range 1..{MAX_RESULT}")

    def do_rule(self, rule_id: int, x: int, num_rep: int, weights: Weights = None,
                choose_args: int | None = None) -> list[int]:
        """CRUSH's do_rule: the ordered OSDs for input x (ITEM_NONE marks an indep hole).
        `choose_args` is the choose_args index to map with (a pool id; default set otherwise)."""
        self._check_rule(rule_id, num_rep)
        return self._c.do_rule(rule_id, x, num_rep, self.weight_vector(weights),
                               self.arg_set(choose_args))

    def map_range(self, rule_id: int, first: int, count: int, num_rep: int,
                  weights: Weights = None, choose_args: int | None = None) -> list[list[int]]:
        """do_rule for x in first..first+count-1, in one C call."""
        self._check_rule(rule_id, num_rep)
        rows, lens = self._c.map_range(rule_id, first, count, num_rep,
                                       self.weight_vector(weights), 0,
                                       self.arg_set(choose_args))
        return _unpack(rows, lens, num_rep)

    def map_inputs(self, rule_id: int, xs: Iterable[int], num_rep: int,
                   weights: Weights = None, choose_args: int | None = None) -> list[list[int]]:
        """do_rule for arbitrary inputs (e.g. hashed ones), sharing one weight vector."""
        self._check_rule(rule_id, num_rep)
        vec = self.weight_vector(weights)
        arg_set = self.arg_set(choose_args)
        return [self._c.do_rule(rule_id, x, num_rep, vec, arg_set) for x in xs]

    def map_range_raw(self, rule_id: int, first: int, count: int, num_rep: int,
                      weights: Weights = None, threads: int = 0) -> tuple[memoryview, memoryview]:
        """Like map_range, as flat int32 views (rows padded with ITEM_NONE, and lengths).
        threads=0 spreads a large batch over every CPU."""
        self._check_rule(rule_id, num_rep)
        rows, lens = self._c.map_range(rule_id, first, count, num_rep,
                                       self.weight_vector(weights), threads, self.arg_set())
        return memoryview(rows).cast("i"), memoryview(lens).cast("i")

    def map_pgs(self, rule_id: int, pool_id: int, pg_num: int, pgp_num: int, size: int,
                hashpspool: bool = True, weights: Weights = None) -> list[list[int]]:
        """The raw CRUSH result of every PG seed 0..pg_num-1 of a pool, in one C call."""
        self._check_rule(rule_id, size)
        rows, lens = self._c.map_pgs(rule_id, pool_id, pg_num, pgp_num, size, hashpspool,
                                     self.weight_vector(weights), 0, self.arg_set(pool_id))
        return _unpack(rows, lens, size)


def _unpack(rows: bytes, lens: bytes, width: int) -> list[list[int]]:
    flat = memoryview(rows).cast("i")
    return [list(flat[i * width:i * width + n]) for i, n in enumerate(memoryview(lens).cast("i"))]
