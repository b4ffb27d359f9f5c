"""What CRUSH promises, checked on maps built in code: weights are honoured, failure domains
are separated, and data moves only as much as a change requires."""

from __future__ import annotations

from rados_py.crush.compiled import ITEM_NONE, CompiledMap
from rados_py.crush.model import (
    ALG_STRAW2,
    OP_CHOOSE_FIRSTN,
    OP_CHOOSELEAF_FIRSTN,
    OP_CHOOSELEAF_INDEP,
    OP_EMIT,
    OP_TAKE,
    WEIGHT_ONE,
    Bucket,
    BucketItem,
    CrushMap,
    Device,
    Rule,
    Step,
)

HOST_TYPE, ROOT_TYPE = 1, 11


def hosts_map(weights: list[list[int]]) -> CrushMap:
    """root -1 > host h (id -2-h) > its devices, numbered in order, with the given weights."""
    m = CrushMap(types={0: "osd", HOST_TYPE: "host", ROOT_TYPE: "root"})
    dev = 0
    host_items = []
    for h, host in enumerate(weights):
        items = []
        for w in host:
            m.devices[dev] = Device(dev, f"osd.{dev}")
            items.append(BucketItem(dev, w))
            dev += 1
        bucket = Bucket(-2 - h, f"host{h}", HOST_TYPE, ALG_STRAW2, items=tuple(items))
        m.buckets[bucket.id] = bucket
        host_items.append(BucketItem(bucket.id, bucket.weight))
    m.buckets[-1] = Bucket(-1, "default", ROOT_TYPE, ALG_STRAW2, items=tuple(host_items))
    m.rules[0] = Rule(0, "rep", steps=(Step(OP_TAKE, -1), Step(OP_CHOOSELEAF_FIRSTN, 0, HOST_TYPE),
                                      Step(OP_EMIT)))
    m.rules[1] = Rule(1, "ec", type=3, steps=(Step(OP_TAKE, -1),
                                              Step(OP_CHOOSELEAF_INDEP, 0, HOST_TYPE),
                                              Step(OP_EMIT)))
    return m


def host_of(m: CrushMap) -> dict[int, int]:
    return {it.id: b.id for b in m.buckets.values() if b.type_id == HOST_TYPE for it in b.items}


def test_zero_weight_device_is_never_chosen() -> None:
    m = hosts_map([[WEIGHT_ONE, 0, WEIGHT_ONE], [WEIGHT_ONE, WEIGHT_ONE], [0, 2 * WEIGHT_ONE]])
    cm = CompiledMap(m)
    for rule in (0, 1):
        for row in cm.map_range(rule, 0, 20000, 3):
            assert 1 not in row and 5 not in row


def test_reweight_zero_is_never_chosen_and_partial_is_honoured() -> None:
    cm = CompiledMap(hosts_map([[WEIGHT_ONE] * 3 for _ in range(4)]))
    weights = {0: 0, 4: WEIGHT_ONE // 2}
    counts = [0] * 12
    for row in cm.map_range(0, 0, 40000, 3, weights):
        for osd in row:
            counts[osd] += 1
    assert counts[0] == 0
    ratio = counts[4] / (sum(counts[i] for i in (3, 5)) / 2)
    assert 0.4 < ratio < 0.6, f"osd.4 at reweight 0.5 got {ratio:.2f} of its peers' share"


def test_replicas_never_share_a_host() -> None:
    m = hosts_map([[WEIGHT_ONE] * 3, [WEIGHT_ONE] * 2, [3 * WEIGHT_ONE], [WEIGHT_ONE] * 4])
    cm = CompiledMap(m)
    host = host_of(m)
    for rule in (0, 1):
        for row in cm.map_range(rule, 0, 20000, 4):
            chosen = [host[o] for o in row if o != ITEM_NONE]
            assert len(chosen) == len(set(chosen)), row


def test_weights_are_honoured() -> None:
    weights = [[WEIGHT_ONE, 2 * WEIGHT_ONE], [WEIGHT_ONE, WEIGHT_ONE], [4 * WEIGHT_ONE]]
    m = hosts_map(weights)
    cm = CompiledMap(m)
    counts = [0] * 5
    rows = cm.map_range(0, 0, 100000, 1)
    for row in rows:
        counts[row[0]] += 1
    flat = [w for host in weights for w in host]
    total = sum(flat)
    for osd, w in enumerate(flat):
        share = counts[osd] / len(rows)
        assert abs(share - w / total) < 0.01, f"osd.{osd}: {share:.3f} vs {w / total:.3f}"


def flat_map(weights: list[int]) -> CrushMap:
    """One straw2 bucket of devices and a rule choosing among them directly."""
    m = CrushMap(types={0: "osd", ROOT_TYPE: "root"})
    m.devices = {d: Device(d, f"osd.{d}") for d in range(len(weights))}
    m.buckets[-1] = Bucket(-1, "default", ROOT_TYPE, ALG_STRAW2,
                           items=tuple(BucketItem(d, w) for d, w in enumerate(weights)))
    m.rules[0] = Rule(0, "flat", steps=(Step(OP_TAKE, -1), Step(OP_CHOOSE_FIRSTN, 0, 0),
                                       Step(OP_EMIT)))
    return m


def test_straw2_weight_change_moves_data_only_to_or_from_that_device() -> None:
    equal = [WEIGHT_ONE] * 10
    grown = list(equal)
    grown[7] = 3 * WEIGHT_ONE
    shrunk = list(equal)
    shrunk[7] = WEIGHT_ONE // 4
    base = CompiledMap(flat_map(equal)).map_range(0, 0, 50000, 1)
    for weights, direction in ((grown, "to"), (shrunk, "from")):
        rows = CompiledMap(flat_map(weights)).map_range(0, 0, 50000, 1)
        moved = [(old[0], new[0]) for old, new in zip(base, rows, strict=True) if old != new]
        assert moved, f"changing osd.7's weight moved nothing {direction} it"
        if direction == "to":
            assert all(new == 7 for _, new in moved), moved[:5]
        else:
            assert all(old == 7 for old, _ in moved), moved[:5]


def test_adding_one_osd_moves_close_to_the_minimum(capsys) -> None:
    n = 12
    base = [[WEIGHT_ONE] for _ in range(n)]  # one OSD per host: a flat failure domain
    grown = [*base, [WEIGHT_ONE]]
    a = CompiledMap(hosts_map(base)).map_range(0, 0, 50000, 3)
    b = CompiledMap(hosts_map(grown)).map_range(0, 0, 50000, 3)
    changed = sum(len(set(new) - set(old)) for old, new in zip(a, b, strict=True))
    fraction = changed / (3 * len(a))
    minimum = 1 / (n + 1)
    with capsys.disabled():
        print(f"\n[placement] adding 1 OSD to {n}: moved {fraction:.4f} of replicas, "
              f"minimum {minimum:.4f}, ratio {fraction / minimum:.2f}")
    assert fraction < 1.5 * minimum
    # nearly every moved replica went to the new OSD (firstn retries shift a few others)
    to_new = sum(n in set(new) - set(old) for old, new in zip(a, b, strict=True))
    assert to_new / changed > 0.9, f"only {to_new} of {changed} moved replicas went to osd.{n}"
