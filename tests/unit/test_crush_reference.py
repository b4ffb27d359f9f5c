"""The C CRUSH port (rados_py._placement) against the pure-Python reference (tests/crush_reference).

Two independent implementations of Ceph's algorithms must agree bit for bit: the hashes and
crush_ln on their whole input spaces or random inputs, and do_rule on seeded random maps that use
every bucket algorithm, both tunable profiles and random mixes, every rule step and random
reweights. Corner cases (straw lengths beyond 32 bits, straw v0 wraparound, reweight boundaries)
are also pinned to the output of Ceph's own crushtool. A fuzz test then feeds odd maps (empty
buckets, deep chains, huge counts, missing buckets, out-of-range reweights, one defect at a time)
to validation and to the extension in this very process: they must refuse them with
CrushMapError/NotFound or map them sanely, never crash or hang.

The mapping comparisons build the C map without `CrushMap.validate()` (see `unchecked`): they
test the mapper, and the extension checks its input itself. On a mismatch the message gives the
seed, the map in Ceph's text syntax (ready for crushtool), the rule, x and both results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import random
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rados_py import _placement
from rados_py.crush import model as m
from rados_py.crush.compiled import CompiledMap
from rados_py.errors import CrushMapError, NotFound
from tests import crush_reference as ref

ITEM_NONE = _placement.ITEM_NONE
TYPES = {0: "osd", 1: "host", 2: "rack", 3: "root", 7: "zone"}  # nothing is of type zone
Weights = Mapping[int, int] | Sequence[int] | None


class _Unchecked(m.CrushMap):
    """A CrushMap whose validate() accepts anything: the extension's own checks stand alone."""

    def validate(self) -> None:
        return None


def unchecked(cm: m.CrushMap) -> m.CrushMap:
    return _Unchecked(**{f.name: getattr(cm, f.name) for f in dataclasses.fields(cm)})


# ---- hashes and crush_ln -----------------------------------------------------------------------

u32s = st.integers(-(2**31), 2**32 - 1)  # negative values hash as their two's complement


@settings(max_examples=300, derandomize=True, database=None)
@given(st.lists(u32s, min_size=1, max_size=5))
def test_hash32_matches(args: list[int]) -> None:
    assert ref.hash32(*args) == _placement.hash32(*args), args


def test_hash32_fixed_arity_names() -> None:
    for f, n in ((ref.hash32_1, 1), (ref.hash32_2, 2), (ref.hash32_3, 3), (ref.hash32_4, 4),
                 (ref.hash32_5, 5)):
        args = list(range(1, n + 1))
        assert f(*args) == _placement.hash32(*args)


@settings(max_examples=300, derandomize=True, database=None)
@given(st.binary(max_size=100))
def test_str_hash_matches(name: bytes) -> None:
    assert ref.str_hash_rjenkins(name) == _placement.str_hash_rjenkins(name), name


def test_str_hash_edge_names() -> None:
    rng = random.Random(7)
    names = [b"", b"\0", b"\xff" * 11, b"\xff" * 12, b"\xff" * 13, "ä𝄞".encode(),
             rng.randbytes(4096), rng.randbytes(100_003), b"x" * (1 << 20)]
    names += [rng.randbytes(n) for n in range(40)]
    for name in names:
        assert ref.str_hash_rjenkins(name) == _placement.str_hash_rjenkins(name), name[:40]
    # Ceph's own answer (crush-vectors objects.jsonl: "foo" -> raw pgid 1.7fc1f406)
    assert ref.str_hash_rjenkins(b"foo") == 0x7FC1F406


@settings(max_examples=200, derandomize=True, database=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 2**32 - 1))
def test_stable_mod_matches(x: int, b: int) -> None:
    bmask = (1 << (b - 1).bit_length()) - 1
    assert ref.stable_mod(x, b, bmask) == _placement.stable_mod(x, b, bmask)


def test_crush_ln_all_inputs() -> None:
    ours = [ref.crush_ln(u) for u in range(0x10000)]
    assert ours == [_placement.crush_ln(u) for u in range(0x10000)]
    assert ours[0] == 0 and ours[0x7FFF] == 15 << 44  # 2^44 * log2(x + 1)


def test_trunc_div_is_c_division() -> None:
    assert ref.trunc_div(-7, 2) == -3 and ref.trunc_div(7, 2) == 3 and ref.trunc_div(-7, -2) == 3
    assert ref.trunc_div(-(1 << 48), 0x10000) == -(1 << 32)


# ---- random maps -------------------------------------------------------------------------------

ALGS = (m.ALG_UNIFORM, m.ALG_LIST, m.ALG_TREE, m.ALG_STRAW, m.ALG_STRAW2)


def _weight(rng: random.Random) -> int:
    p = rng.random()
    if p < 0.1:
        return 0
    if p < 0.4:
        return m.WEIGHT_ONE
    if p < 0.55:
        return rng.choice((0x4000, 0x8000, 0x18000, 0x20000))
    if p < 0.6:
        return rng.randint(1, 4)  # tiny: ties in tree and list buckets
    if p < 0.62:
        return rng.randint(0x10000000, 0x7FFFFFFF)  # huge: straw lengths beyond 32 bits
    return rng.randint(1, 0x80000 if p < 0.95 else 0x400000)


def _tunables(rng: random.Random) -> m.Tunables:
    profile = rng.choice(("optimal", "legacy", "mixed", "mixed"))
    if profile == "optimal":
        return m.Tunables()
    if profile == "legacy":
        return m.Tunables.legacy()
    return m.Tunables(
        choose_local_tries=rng.choice((0, 0, 1, 2, 3)),
        choose_local_fallback_tries=rng.choice((0, 0, 1, 5)),
        choose_total_tries=rng.choice((1, 2, 5, 19, 50)),
        chooseleaf_descend_once=rng.randint(0, 1), chooseleaf_vary_r=rng.choice((0, 1, 1, 2, 4)),
        chooseleaf_stable=rng.randint(0, 1), straw_calc_version=rng.randint(0, 1))


def _set_step(rng: random.Random) -> m.Step:
    op, values = rng.choice((
        (m.OP_SET_CHOOSE_TRIES, (-1, 0, 1, 2, 5, 50, 100)),
        (m.OP_SET_CHOOSELEAF_TRIES, (-1, 0, 1, 2, 5, 10)),
        (m.OP_SET_CHOOSE_LOCAL_TRIES, (-1, 0, 1, 2, 3)),
        (m.OP_SET_CHOOSE_LOCAL_FALLBACK_TRIES, (-1, 0, 1, 3, 5)),
        (m.OP_SET_CHOOSELEAF_VARY_R, (-1, 0, 1, 2, 3, 4)),
        (m.OP_SET_CHOOSELEAF_STABLE, (-1, 0, 1))))
    return m.Step(op, rng.choice(values))


def random_map(rng: random.Random) -> m.CrushMap:
    """root > [racks >] [hosts >] osds with random fan-out, algorithms and weights, plus rules."""
    cm = m.CrushMap(types=dict(TYPES), tunables=_tunables(rng))
    levels = rng.choice((1, 2, 2, 3, 3))
    free_ids = list(range(-1, -80, -1))
    rng.shuffle(free_ids)  # bucket ids with gaps, in no particular order
    next_dev = 0

    def make(level: int, type_id: int) -> tuple[int, int]:
        """Create an item at `level` (0: a device); return its id and its weight in a parent."""
        nonlocal next_dev
        if level == 0:
            next_dev += 1 + (rng.random() < 0.1)  # a few unused device ids
            dev = next_dev - 1
            cm.devices[dev] = m.Device(dev, f"osd.{dev}")
            return dev, _weight(rng)
        bid = free_ids.pop()
        fan = 0 if rng.random() < 0.03 else rng.randint(1, 5)
        children = []
        for _ in range(fan):
            skip = level > 1 and rng.random() < 0.1  # an irregular tree: skip a level
            children.append(make(level - 1 - skip, level - 1 - skip))
        alg = rng.choice(ALGS)
        if alg == m.ALG_UNIFORM:  # uniform buckets hold items of one weight
            common = _weight(rng)
            children = [(cid, common) for cid, _ in children]
        elif rng.random() < 0.2:  # a parent's item weight need not be the child's sum
            children = [(cid, _weight(rng)) for cid, _ in children]
        while sum(w for _, w in children) > 0xFFFFFFFF:  # Ceph refuses weights beyond 32 bits
            children = [(cid, w // 2) for cid, w in children]
        items = tuple(m.BucketItem(cid, w) for cid, w in children)
        name = f"{TYPES[type_id]}{-bid}"
        cm.buckets[bid] = m.Bucket(bid, name, type_id, alg, items=items)
        return bid, min(sum(w for _, w in children), 0x7FFFFFFF)

    root, _ = make(levels, 3)
    if rng.random() < 0.3:  # a device in no bucket, for `take osd.N`
        cm.devices[next_dev] = m.Device(next_dev, f"osd.{next_dev}")
    for rid in range(rng.randint(2, 5)):
        cm.rules[rid] = _random_rule(rng, rid, cm, root, levels)
    return cm


def _random_rule(rng: random.Random, rid: int, cm: m.CrushMap, root: int,
                 levels: int) -> m.Rule:
    rtype = m.RULE_TYPE_ERASURE if rng.random() < 0.4 else m.RULE_TYPE_REPLICATED
    if rng.random() < 0.5:  # the usual shapes: take root, choose or chooseleaf, emit
        steps = [_set_step(rng) for _ in range(rng.choice((0, 0, 0, 1, 2)))]
        firstn = rng.random() < 0.6
        domain = rng.randint(1, levels - 1) if levels > 1 and rng.random() < 0.9 else 0
        count = rng.choice((0, 0, 0, 2, 3, -1))
        steps.append(m.Step(m.OP_TAKE, root))
        if rng.random() < 0.6:
            op = m.OP_CHOOSELEAF_FIRSTN if firstn else m.OP_CHOOSELEAF_INDEP
            steps.append(m.Step(op, count, domain))
        else:
            op = m.OP_CHOOSE_FIRSTN if firstn else m.OP_CHOOSE_INDEP
            steps.append(m.Step(op, count, domain))
            if domain:
                steps.append(m.Step(op, rng.choice((1, 1, 2)), 0))
        steps.append(m.Step(m.OP_EMIT))
        return m.Rule(rid, f"rule{rid}", rtype, steps=tuple(steps))
    steps = [_set_step(rng) for _ in range(rng.choice((0, 0, 0, 1, 2)))]
    for _block in range(rng.choice((1, 1, 1, 2, 3))):
        p = rng.random()
        if p < 0.7:
            take = root
        elif p < 0.85:
            take = rng.choice(list(cm.buckets))
        elif p < 0.92 and cm.devices:
            take = rng.choice(list(cm.devices))
        else:
            take = -99  # no such bucket: the take is ignored
        if rng.random() < 0.97:
            steps.append(m.Step(m.OP_TAKE, take))
        if rng.random() < 0.2:
            steps.append(_set_step(rng))
        for _ in range(rng.choice((1, 1, 1, 2, 0))):
            op = rng.choice(list(m.CHOOSE_OPS))
            count = rng.choice((0, 0, 0, 1, 1, 2, 3, 4, 6, -1, -2))
            type_id = rng.choice((0, 0, 1, 1, 2, 3, 7) if levels > 1 else (0, 0, 0, 3, 7))
            steps.append(m.Step(op, count, type_id))
        if rng.random() < 0.9:  # without emit, the next take replaces the working set
            steps.append(m.Step(m.OP_EMIT))
    return m.Rule(rid, f"rule{rid}", rtype, steps=tuple(steps))


def random_reweights(rng: random.Random, max_devices: int) -> Weights:
    def value() -> int:
        return rng.choice((0x10000, 0x10000, 0x10000, 0, 0x8000, 0x4000, 0xC000, 0x20000,
                           0xFFFFFFFF, rng.randint(0, 0x10000)))

    kind = rng.choice(("none", "none", "list", "list", "short", "long", "dict"))
    if kind == "none":
        return None
    if kind == "dict":  # includes ids that are not devices; those are ignored
        keys = [rng.randint(-3, max_devices + 3) for _ in range(rng.randint(0, 6))]
        return {k: value() for k in keys}
    n = max_devices + {"list": 0, "short": -rng.randint(1, 3), "long": rng.randint(1, 3)}[kind]
    return [value() for _ in range(max(n, 0))]


# ---- reporting ---------------------------------------------------------------------------------

STEP_NAMES = {m.OP_CHOOSE_FIRSTN: "choose firstn", m.OP_CHOOSE_INDEP: "choose indep",
              m.OP_CHOOSELEAF_FIRSTN: "chooseleaf firstn",
              m.OP_CHOOSELEAF_INDEP: "chooseleaf indep", **m.SET_OPS}


def crush_text(cm: m.CrushMap) -> str:
    """The map in Ceph's text syntax (what `crushtool -c` reads), for a failure message."""
    lines = [f"tunable {f} {getattr(cm.tunables, f)}" for f in m.TUNABLE_NAMES]
    lines += [f"device {d} {cm.item_name(d)}" for d in sorted(cm.devices)]
    lines += [f"type {t} {name}" for t, name in sorted(cm.types.items())]
    done: set[int] = set()

    def emit_bucket(b: m.Bucket) -> None:
        if b.id in done:
            return
        done.add(b.id)
        for it in b.items:
            if it.id < 0 and it.id in cm.buckets:
                emit_bucket(cm.buckets[it.id])
        lines.append(f"{cm.types.get(b.type_id, f'type{b.type_id}')} {b.name} {{")
        lines.append(f"\tid {b.id}\n\talg {m.ALG_NAMES.get(b.alg, b.alg)}\n\thash {b.hash}")
        lines.extend(f"\titem {cm.item_name(it.id)} weight {it.weight / 0x10000!r}"
                     for it in b.items)
        lines.append("}")

    for b in sorted(cm.buckets.values(), key=lambda b: -b.id):
        emit_bucket(b)
    for rule in cm.rules.values():
        lines.append(f"rule {rule.name} {{\n\tid {rule.id}\n\ttype "
                     f"{m.RULE_TYPE_NAMES.get(rule.type, rule.type)}\n\tmin_size 1\n\tmax_size 10")
        for s in rule.steps:
            if s.op == m.OP_TAKE:
                lines.append(f"\tstep take {cm.item_name(s.arg1)}")
            elif s.op == m.OP_EMIT:
                lines.append("\tstep emit")
            elif s.op in m.CHOOSE_OPS:
                tname = cm.types.get(s.arg2, f"type{s.arg2}")
                lines.append(f"\tstep {STEP_NAMES[s.op]} {s.arg1} type {tname}")
            else:
                lines.append(f"\tstep {STEP_NAMES.get(s.op, f'op{s.op}')} {s.arg1}")
        lines.append("}")
    return "\n".join(lines)


def mismatch(seed: object, cm: m.CrushMap, rule: int, x: int, num_rep: int, weights: Weights,
             c_result: list[int], ref_result: list[int]) -> str:
    return (f"C and reference disagree: seed={seed!r} rule={rule} x={x} num_rep={num_rep}\n"
            f"  C:         {c_result}\n  reference: {ref_result}\n  reweights: {weights}\n"
            f"--- map ---\n{crush_text(cm)}")


# ---- C vs reference on random maps -------------------------------------------------------------


def compare_random_map(seed: int, runs: int) -> int:
    """Map `runs` consecutive x (from a random start) per rule and num_rep 1..6; return count."""
    rng = random.Random(seed)
    cm = random_map(rng)
    refmap = ref.build(cm)
    cmap = CompiledMap(unchecked(cm))
    checked = 0
    for rule in cm.rules:
        weights = random_reweights(rng, cm.max_devices)
        for num_rep in range(1, 7):
            first = rng.choice((0, rng.randrange(-(2**31), 2**31 - runs)))
            rows = cmap.map_range(rule, first, runs, num_rep, weights)
            for x, row in zip(range(first, first + runs), rows, strict=True):
                expect = ref.do_rule(refmap, rule, x, num_rep, weights)
                assert row == expect, mismatch(seed, cm, rule, x, num_rep, weights, row, expect)
            x = rng.randrange(2**32)  # do_rule: the full unsigned range
            row = cmap.do_rule(rule, x, num_rep, weights)
            expect = ref.do_rule(refmap, rule, x, num_rep, weights)
            assert row == expect, mismatch(seed, cm, rule, x, num_rep, weights, row, expect)
            checked += runs + 1
    return checked


@pytest.mark.parametrize("seed", range(30))
def test_random_maps_sweep(seed: int) -> None:
    assert compare_random_map(seed, runs=20) > 0


@settings(max_examples=25, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**64 - 1))
def test_random_maps_hypothesis(seed: int) -> None:
    compare_random_map(seed, runs=6)


# ---- corner cases, several with Ceph's own answers (crushtool 16.2.15) -------------------------

Items = list[tuple[int, int]]


def make_map(buckets: dict[int, tuple[int, int, Items]], rules: dict[int, list[tuple[int, ...]]],
             tunables: m.Tunables | None = None, bucket_hash: int = 0) -> m.CrushMap:
    """buckets: id -> (type, alg, [(item, weight)]); rules: id -> [(op, arg1, arg2)]."""
    cm = m.CrushMap(types={0: "osd", 1: "host", 3: "root"}, tunables=tunables or m.Tunables())
    for bid, (type_id, alg, items) in buckets.items():
        for item, _ in items:
            if item >= 0:
                cm.devices[item] = m.Device(item, f"osd.{item}")
        cm.buckets[bid] = m.Bucket(bid, f"b{-bid}", type_id, alg, bucket_hash,
                                   tuple(m.BucketItem(i, w) for i, w in items))
    cm.rules = {rid: m.Rule(rid, f"r{rid}", steps=tuple(m.Step(*s) for s in steps))
                for rid, steps in rules.items()}
    return cm


def both(cm: m.CrushMap, rule: int, xs: Sequence[int], num_rep: int,
         weights: Weights = None) -> list[list[int]]:
    """Map xs with the extension and the reference; they must agree. Returns the mappings."""
    cmap, refmap = CompiledMap(unchecked(cm)), ref.build(cm)
    got = [cmap.do_rule(rule, x, num_rep, weights) for x in xs]
    for x, row in zip(xs, got, strict=True):
        expect = ref.do_rule(refmap, rule, x, num_rep, weights)
        assert row == expect, mismatch("corner", cm, rule, x, num_rep, weights, row, expect)
    return got


TAKE, EMIT = m.OP_TAKE, m.OP_EMIT
FIRSTN, LEAF_FIRSTN = m.OP_CHOOSE_FIRSTN, m.OP_CHOOSELEAF_FIRSTN


def test_reference_reproduces_ceph_vectors() -> None:
    """The reference alone against crushtool's output for the b_hosts map (crush-vectors)."""
    hosts = [[0x10000, 0x20000, 0x8000], [0x10000, 0x10000, 78643],
             [0x20000, 0x8000, 0x18000], [0xC000, 0x30000, 0x4000]]
    buckets = {-2 - h: (1, m.ALG_STRAW2, [(3 * h + i, w) for i, w in enumerate(ws)])
               for h, ws in enumerate(hosts)}
    buckets[-1] = (3, m.ALG_STRAW2, [(-2, 229376), (-3, 209715), (-4, 262144), (-5, 262144)])
    cm = make_map(buckets, {0: [(TAKE, -1), (LEAF_FIRSTN, 0, 1), (EMIT,)]})
    expected = [[10, 6, 2], [10, 5, 1], [8, 9, 4], [8, 10, 4]]
    assert both(cm, 0, range(4), 3) == expected


def crushtool_digest(rule: int, rows: list[list[int]]) -> str:
    """md5 of what `crushtool --test --show-mappings --rule R --min-x 0` prints for these rows."""
    text = "".join(f"CRUSH rule {rule} x {x} [{','.join(map(str, row))}]\n"
                   for x, row in enumerate(rows))
    return hashlib.md5(text.encode()).hexdigest()


def one_osd_hosts(devices: range, first_id: int) -> dict[int, tuple[int, int, Items]]:
    return {first_id - d: (1, m.ALG_STRAW2, [(d, 0x10000)]) for d in devices}


# md5 of crushtool's output for x 0..999 (Ceph 16.2.15 on x86-64), per straw_calc_version
STRAW_DIGESTS = {0: ("bd8079d09b2f6e70e863a4e798817020", "3dfadf16e5b489a12be59afcebba34c3"),
                 1: ("bd8079d09b2f6e70e863a4e798817020", "dae487bfcca1fc2e088df36ad95dfd5d")}


@pytest.mark.parametrize("version", [0, 1])
def test_straw_lengths_beyond_32_bits(version: int) -> None:
    """Straw lengths are doubles stored as uint32: a straw of weight 2^30 next to one of weight 1
    overflows, and Ceph keeps the low 32 bits (x86-64), so the light item wins 767 of 1000."""
    cm = make_map({**one_osd_hosts(range(6), -10),
                   -1: (3, m.ALG_STRAW, [(-10, 1), (-11, 1 << 30)]),
                   -2: (3, m.ALG_STRAW, [(-12, 1), (-13, 1), (-14, 1 << 29), (-15, 3 << 28)])},
                  {0: [(TAKE, -1), (LEAF_FIRSTN, 1, 1), (EMIT,)],
                   1: [(TAKE, -2), (LEAF_FIRSTN, 1, 1), (EMIT,)]},
                  m.Tunables(straw_calc_version=version))
    rows = [both(cm, rule, range(1000), 1) for rule in (0, 1)]
    assert sum(row == [0] for row in rows[0]) == 767
    assert tuple(crushtool_digest(r, rows[r]) for r in (0, 1)) == STRAW_DIGESTS[version]


def test_straw_v0_wrapping_weights() -> None:
    """straw_calc_version 0 computes numleft * (weight step) in 32 bits, and it wraps here."""
    small = [(-100 - d, 1) for d in range(10)]
    cm = make_map({**one_osd_hosts(range(15), -100),
                   -1: (3, m.ALG_STRAW, [*small, (-110, 0x20000000), (-111, 0x30000000)]),
                   -2: (3, m.ALG_STRAW, [*small[:4], (-112, 3), (-113, 3), (-114, 0x10000)])},
                  {0: [(TAKE, -1), (LEAF_FIRSTN, 2, 1), (EMIT,)],
                   1: [(TAKE, -2), (LEAF_FIRSTN, 3, 1), (EMIT,)]},
                  m.Tunables(straw_calc_version=0))
    assert crushtool_digest(0, both(cm, 0, range(1000), 2)) == "5f4f945b7995301d5ea4a68352e0056f"
    assert crushtool_digest(1, both(cm, 1, range(200), 3)) == "ed2ae825909fe10de5bfd90229b5f166"


def test_tiny_weights_in_list_and_tree_buckets() -> None:
    """Ties between the scaled hash and a weight decide list and tree draws."""
    cm = make_map({-1: (3, m.ALG_LIST, [(0, 1), (1, 2), (2, 1), (3, 3), (4, 0)]),
                   -2: (3, m.ALG_TREE, [(5, 1), (6, 1), (7, 1), (8, 2), (9, 0)])},
                  {0: [(TAKE, -1), (FIRSTN, 0, 0), (EMIT,)],
                   1: [(TAKE, -2), (FIRSTN, 0, 0), (EMIT,)]})
    for rule in (0, 1):
        both(cm, rule, range(1500), 3)


def test_partial_reweight_boundary() -> None:
    """is_out: a device with reweight w < 1.0 is in for x when (hash32_2(x, osd) & 0xffff) < w."""
    cm = make_map({-1: (3, m.ALG_STRAW2, [(0, 0x10000)])},
                  {0: [(TAKE, -1), (FIRSTN, 1, 0), (EMIT,)]})
    for x in range(50):
        h = ref.hash32_2(x, 0) & 0xFFFF
        assert both(cm, 0, [x], 1, [h]) == [[]]  # hash == weight: out
        assert both(cm, 0, [x], 1, [h + 1]) == [[0]]


def test_take_without_emit_and_bad_take() -> None:
    """A take of a missing bucket changes nothing: the working set of the last choose stays."""
    hosts: dict[int, tuple[int, int, Items]] = {
        -2 - h: (1, m.ALG_STRAW2, [(3 * h + i, 0x10000) for i in range(3)]) for h in range(4)}
    cm = make_map({**hosts, -1: (3, m.ALG_STRAW2, [(-2 - h, 0x30000) for h in range(4)])},
                  {0: [(TAKE, -1), (FIRSTN, 2, 1), (TAKE, -99), (LEAF_FIRSTN, 1, 0), (EMIT,)],
                   1: [(TAKE, -1), (FIRSTN, 2, 1), (TAKE, 5), (EMIT,), (TAKE, 99), (EMIT,)],
                   2: [(TAKE, -99), (LEAF_FIRSTN, 0, 1), (EMIT,)]})
    assert all(len(r) == 2 for r in both(cm, 0, range(200), 3))
    assert both(cm, 1, range(20), 3) == [[5]] * 20
    assert both(cm, 2, range(20), 3) == [[]] * 20


def test_set_local_tries_steps_override_legacy_tunables() -> None:
    hosts: dict[int, tuple[int, int, Items]] = {
        -2 - h: (1, m.ALG_STRAW, [(2 * h + i, 0x10000) for i in range(2)]) for h in range(3)}
    steps = [(TAKE, -1), (FIRSTN, 0, 0), (EMIT,)]  # collisions happen inside a host
    cm = make_map({**hosts, -1: (3, m.ALG_STRAW, [(-2 - h, 0x20000) for h in range(3)])},
                  {0: steps, 1: [(m.OP_SET_CHOOSE_LOCAL_TRIES, 0),
                                 (m.OP_SET_CHOOSE_LOCAL_FALLBACK_TRIES, 0), *steps]},
                  m.Tunables.legacy())
    weights = [0x10000, 0, 0x8000, 0x10000, 0, 0x4000]
    legacy, overridden = (both(cm, rule, range(500), 3, weights) for rule in (0, 1))
    assert legacy != overridden


def test_unknown_bucket_hash_refused_or_mapped_like_ceph() -> None:
    """Ceph's hash functions return 0 for an unknown hash type, so straw2 picks the heaviest
    item every time (crushtool: [1] for every x). The C port returns items[0] instead and
    relies on validation to refuse such maps."""
    cm = make_map({-2: (1, m.ALG_STRAW2, [(0, 0x10000), (1, 0x20000), (2, 0x10000)])},
                  {0: [(TAKE, -2), (FIRSTN, 0, 0), (EMIT,)]}, bucket_hash=1)
    assert [ref.do_rule(cm, 0, x, 3) for x in range(6)] == [[1]] * 6
    try:
        cmap = CompiledMap(cm)
    except CrushMapError:
        return
    assert [cmap.do_rule(0, x, 3) for x in range(6)] == [[1]] * 6


def test_bucket_of_device_type_is_refused() -> None:
    """A bucket whose type is 0 ("osd") reached by `choose ... type 0` is treated as a device:
    mapper.c then reads weight[bucket id], before the weight array."""
    cm = make_map({-2: (0, m.ALG_STRAW2, [(0, 0x10000), (1, 0x10000)]),
                   -3: (1, m.ALG_STRAW2, [(2, 0x10000), (3, 0x10000)]),
                   -1: (3, m.ALG_STRAW2, [(-2, 0x20000), (-3, 0x20000)])},
                  {0: [(TAKE, -1), (FIRSTN, 0, 0), (EMIT,)]})
    with pytest.raises(ref.UndefinedBehavior):
        ref.do_rule(cm, 0, 0, 3)
    with pytest.raises(CrushMapError, match="for devices, not buckets"):
        CompiledMap(cm)


# ---- fuzz: odd maps must be refused or mapped sanely, in this process --------------------------

DEFECTS = ("cycle", "missing item", "item INT32_MIN", "bad alg", "bucket of type 0",
           "negative weight", "weight overflow", "bad tunables", "bad step")


def odd_map(rng: random.Random, chain: int, defect: str | None) -> m.CrushMap:
    """A small map of odd shape (empty buckets, buckets shared by two parents, a chain of `chain`
    one-item buckets, devices up to MAX_DEVICES - 1, takes of missing items, counts up to 256)
    with at most one defect from DEFECTS, which must be refused."""
    def weight() -> int:
        if rng.random() < 0.6:
            return rng.choice((0x10000, 0x10000, 0, 1, 0x8000, 0x20000, 0x7FFFFFFF))
        return rng.randint(0x100, 0x100000)

    cm = m.CrushMap(types={t: f"t{t}" for t in range(5)})
    dev_ids = rng.sample(range(41), rng.randint(0, 10))
    if rng.random() < 0.05:
        dev_ids.append(m.MAX_DEVICES - 1)
    cm.devices = {d: m.Device(d, f"osd.{d}") for d in dev_ids}
    bucket_ids = rng.sample(range(-30, 0), rng.randint(0, 8))
    chain_ids = list(range(-100, -100 - chain, -1))
    for pos, bid in enumerate(bucket_ids):
        choices = bucket_ids[pos + 1:] + chain_ids[:1] + dev_ids  # later buckets: no cycles
        ids = rng.sample(choices, min(len(choices), rng.randint(0, 6)))
        alg = rng.choice(ALGS)
        common = weight()
        ws = [common if alg == m.ALG_UNIFORM else weight() for _ in ids]
        cm.buckets[bid] = m.Bucket(bid, f"b{-bid}", rng.randint(1, 4), alg,
                                   items=tuple(map(m.BucketItem, ids, ws)))
    for pos, bid in enumerate(chain_ids):
        nxt = chain_ids[pos + 1] if pos + 1 < len(chain_ids) else (dev_ids or [None])[0]
        items = () if nxt is None else (m.BucketItem(nxt, 0x10000),)
        cm.buckets[bid] = m.Bucket(bid, f"c{-bid}", 1 + pos % 3, rng.choice(ALGS), items=items)

    takes = [*cm.buckets] * 4 + dev_ids + [-55, 9999, ITEM_NONE]
    tries = (-1, 0, 1, 2, 3, 10, 100, 1000)

    def choose() -> m.Step:
        count = rng.choice((*range(-3, 9), -256, 256, 100))
        return m.Step(rng.choice(list(m.CHOOSE_OPS)), count, rng.randint(-1, 6))

    def other() -> m.Step:
        if rng.random() < 0.8:
            op = rng.choice(list(m.SET_OPS))
            return m.Step(op, rng.choice(tries if op in ref_tries_ops else (-1, 0, 1, 2, 3, 31)))
        return m.Step(rng.choice((m.OP_NOOP, 5, 14, 99)), rng.randint(-5, 5))

    for rid in rng.sample(range(5), rng.randint(1, 3)):
        steps: list[m.Step] = []
        for _ in range(rng.randint(1, 3)):
            p = rng.random()
            if p < 0.6:  # take, choose, [choose,] emit
                steps += [m.Step(m.OP_TAKE, rng.choice(takes)), choose(),
                          *[choose() for _ in range(rng.randint(0, 1))], m.Step(m.OP_EMIT)]
            elif p < 0.8:
                steps += [other() for _ in range(rng.randint(0, 2))]
            else:  # anything in any order
                steps += [rng.choice((m.Step(m.OP_TAKE, rng.choice(takes)), choose(),
                                      m.Step(m.OP_EMIT), other())) for _ in range(4)]
        cm.rules[rid] = m.Rule(rid, f"r{rid}", steps=tuple(steps))
    cm.tunables = m.Tunables(rng.randint(0, 3), rng.randint(0, 6), rng.choice((0, 1, 5, 50)),
                             rng.randint(0, 1), rng.randint(0, 3), rng.randint(0, 1),
                             rng.randint(0, 1))
    if defect:
        _break(rng, cm, defect)
    return cm


ref_tries_ops = (m.OP_SET_CHOOSE_TRIES, m.OP_SET_CHOOSELEAF_TRIES, m.OP_SET_CHOOSE_LOCAL_TRIES,
                 m.OP_SET_CHOOSE_LOCAL_FALLBACK_TRIES)


def _break(rng: random.Random, cm: m.CrushMap, defect: str) -> None:
    """Give the map one defect that both validation and the extension must refuse."""
    bid = rng.choice(list(cm.buckets) or [-1])
    b = cm.buckets.get(bid, m.Bucket(bid, "added", 1))
    items = list(b.items)
    if defect == "cycle":
        items.append(m.BucketItem(bid, 0x10000))
    elif defect == "missing item":
        items.append(m.BucketItem(-77, 0x10000))
    elif defect == "item INT32_MIN":
        items.append(m.BucketItem(-(2**31), 0x10000))
    elif defect == "bad alg":
        b = dataclasses.replace(b, alg=rng.choice((0, 6)))
    elif defect == "bucket of type 0":  # mapper.c would take it for a device (is_out)
        b = dataclasses.replace(b, type_id=0)
    elif defect == "negative weight":
        items.append(m.BucketItem(0, -1))
    elif defect == "weight overflow":
        items += [m.BucketItem(d, 0x7FFFFFFF) for d in (1000, 1001, 1002)]
        b = dataclasses.replace(b, alg=rng.choice(ALGS[1:]))  # uniform ignores its weights
    elif defect == "bad tunables":
        cm.tunables = cm.tunables.replace(**rng.choice(({"choose_total_tries": 1001},
                                                        {"chooseleaf_descend_once": 2})))
    elif defect == "bad step":
        step = rng.choice((m.Step(m.OP_SET_CHOOSE_TRIES, 1001),
                           m.Step(m.OP_SET_CHOOSELEAF_VARY_R, 33),
                           m.Step(m.OP_CHOOSE_FIRSTN, 257, 0)))
        rule = rng.choice(list(cm.rules.values()))
        cm.rules[rule.id] = dataclasses.replace(rule, steps=(*rule.steps, step))
    cm.buckets[bid] = dataclasses.replace(b, items=tuple(items))


def fuzz_weights(rng: random.Random, max_devices: int) -> Weights:
    def value() -> int:
        return rng.choice((0, 0x8000, 0x10000, 0x10000, 0xFFFFFFFF, rng.randint(0, 0x20000)))

    kind = rng.randint(0, 2)
    if kind == 0:
        return None
    if kind == 1:
        return [value() for _ in range(rng.randint(0, max_devices + 4))]
    return {rng.randint(-5, max_devices + 5): value() for _ in range(rng.randint(0, 5))}


def _cheap(cm: m.CrushMap, num_rep: int) -> bool:
    """Small enough for the slow reference."""
    big_tries = any(s.op in m.SET_OPS and s.arg1 > 100 for r in cm.rules.values() for s in r.steps)
    return num_rep <= 6 and not big_tries


@settings(max_examples=500, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**64 - 1), st.sampled_from((0, 0, 0, 2, 40)),
       st.sampled_from((None,) * 8 + DEFECTS))
def test_fuzz_maps_refused_or_mapped_sanely(seed: int, chain: int, defect: str | None) -> None:
    rng = random.Random(seed)
    cm = odd_map(rng, chain, defect)
    with contextlib.suppress(CrushMapError):  # validation raises nothing else
        CompiledMap(cm)
    try:  # the extension's own checks, without validation
        cmap = CompiledMap(unchecked(cm))
    except CrushMapError:
        return
    assert defect is None, f"the extension accepted a map with a {defect}:\n{crush_text(cm)}"
    refmap = ref.build(cm)  # no OverflowError: Ceph refuses what the extension refuses
    for _ in range(4):
        rule = rng.choice([*sorted(cm.rules) * 4, -1, 7])
        num_rep = rng.choice([*range(1, 9)] * 3 + [0, 256, 257])
        x = rng.randrange(2**32)
        weights = fuzz_weights(rng, min(cmap.max_devices, 64))
        try:
            got = cmap.do_rule(rule, x, num_rep, weights)
        except (CrushMapError, NotFound):
            assert rule not in cm.rules or not 1 <= num_rep <= _placement.MAX_RESULT
            continue
        assert isinstance(got, list) and len(got) <= num_rep
        assert all(it == ITEM_NONE or 0 <= it < cmap.max_devices or it in cm.buckets
                   for it in got), (got, crush_text(cm))
        if _cheap(cm, num_rep):
            try:
                expect = ref.do_rule(refmap, rule, x, num_rep, weights)
            except ref.UndefinedBehavior:  # a bucket of type 0 taken for a device
                continue
            assert got == expect, mismatch(seed, cm, rule, x, num_rep, weights, got, expect)
