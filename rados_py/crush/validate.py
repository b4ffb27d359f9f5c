"""The guard in front of the C mapper: refuse every map a faithful port of Ceph's mapper.c could
crash, loop forever or read out of bounds on.

Ceph's C code trusts its map (crushtool and the monitors check it first), so this module checks
what that code relies on: ids inside the arrays, items that exist, a forest (no cycles, no item
in two buckets: descending a cycle never ends), weights whose sums fit 32 bits, uniform buckets
with one item weight, rule steps that are known with types that exist, and retry counts small
enough that a mapping that cannot succeed still ends quickly.
"""

from __future__ import annotations

from rados_py.crush import classes
from rados_py.crush import model as cm
from rados_py.crush.model import Bucket, CrushMap, Rule, Step
from rados_py.errors import CrushMapError

# Retry counts bound the work of one mapping that keeps failing (tries x recursion tries x
# replicas): with nearly every device out, 250 costs ~0.1 s per input, 1000 over a second. Ceph's
# own profiles use 19..100. vary_r is a shift amount (r >> (vary_r - 1)) on a 32-bit int.
MAX_TRIES = 250
MAX_VARY_R = 32
MAX_CHOOSE_NUM = 1024  # |N| in `choose firstn N`; results are at most a few dozen items
_TUNABLE_LIMITS = {"choose_local_tries": MAX_TRIES, "choose_local_fallback_tries": MAX_TRIES,
                   "choose_total_tries": MAX_TRIES, "chooseleaf_descend_once": 1,
                   "chooseleaf_vary_r": MAX_VARY_R, "chooseleaf_stable": 1,
                   "straw_calc_version": 0xFF, "allowed_bucket_algs": 0xFFFFFFFF}
_SET_LIMITS = {cm.OP_SET_CHOOSE_TRIES: MAX_TRIES, cm.OP_SET_CHOOSELEAF_TRIES: MAX_TRIES,
               cm.OP_SET_CHOOSE_LOCAL_TRIES: MAX_TRIES,
               cm.OP_SET_CHOOSE_LOCAL_FALLBACK_TRIES: MAX_TRIES,
               cm.OP_SET_CHOOSELEAF_VARY_R: MAX_VARY_R, cm.OP_SET_CHOOSELEAF_STABLE: 1}


def _is_int(value: object, lo: int, hi: int) -> bool:
    """A plain int (not a bool, float or str) within lo..hi: what the C arrays can hold."""
    return type(value) is int and lo <= value <= hi


def validate_map(m: CrushMap) -> None:
    """Raise `CrushMapError` (one line saying what is wrong) unless `m` is safe to map with."""
    _check_tunables(m)
    _check_devices(m)
    _check_types(m)
    for bucket_id, bucket in m.buckets.items():
        _check_bucket(m, bucket_id, bucket)
    _check_forest(m)
    _check_class_ids(m)
    for rule_id, rule in m.rules.items():
        _check_rule(m, rule_id, rule)
    _check_choose_args(m)


def _check_choose_args(m: CrushMap) -> None:
    """Every weight set row and id list must match its bucket item for item."""
    for index, args in m.choose_args.items():
        if not _is_int(index, 0, (1 << 64) - 1):
            raise CrushMapError(f"choose_args index {index!r} is not a 64-bit unsigned integer")
        for bucket_id, arg in args.items():
            where = f"choose_args {index} bucket {bucket_id}"
            bucket = m.buckets.get(bucket_id)
            if bucket is None:
                raise CrushMapError(f"{where}: no such bucket")
            size = len(bucket.items)
            if len(arg.weight_set) > cm.MAX_WEIGHT_SET_POSITIONS:
                raise CrushMapError(f"{where}: too many weight_set positions")
            for row in arg.weight_set:
                if len(row) != size or not all(_is_int(w, 0, cm.MAX_WEIGHT) for w in row):
                    raise CrushMapError(f"{where}: a weight_set row needs {size} weights in "
                                        f"0..{cm.MAX_WEIGHT}")
            if arg.ids is not None and (len(arg.ids) != size or not all(
                    _is_int(i, -(1 << 31), (1 << 31) - 1) for i in arg.ids)):
                raise CrushMapError(f"{where}: ids need {size} 32-bit integers")


def _check_tunables(m: CrushMap) -> None:
    for name, limit in _TUNABLE_LIMITS.items():
        value = getattr(m.tunables, name)
        if not _is_int(value, 0, limit):
            raise CrushMapError(f"tunable {name} is {value}, must be within 0..{limit}")


def _check_devices(m: CrushMap) -> None:
    for dev_id, dev in m.devices.items():
        if dev.id != dev_id or not _is_int(dev_id, 0, cm.MAX_DEVICES - 1):
            raise CrushMapError(f"device id {dev_id} must be within 0..{cm.MAX_DEVICES - 1}")
        if not dev.name:
            raise CrushMapError(f"device {dev_id} has no name")


def _check_types(m: CrushMap) -> None:
    for type_id, name in m.types.items():
        if not _is_int(type_id, 0, 0x7FFFFFFF) or not name:
            raise CrushMapError(f"type {type_id!r} {name!r} is not a valid type")


def _check_bucket(m: CrushMap, bucket_id: int, b: Bucket) -> None:
    where = f"bucket {b.name!r} ({bucket_id})"
    if b.id != bucket_id or not _is_int(bucket_id, -cm.MAX_BUCKETS, -1):
        raise CrushMapError(f"{where}: id must be within -1..-{cm.MAX_BUCKETS}")
    if b.type_id not in m.types:
        raise CrushMapError(f"{where}: type {b.type_id} is not defined")
    if b.type_id == 0:
        # type 0 is the device type: a rule choosing it would treat the bucket as a device
        raise CrushMapError(f"{where}: type 0 ({m.types[0]}) is for devices, not buckets")
    if b.alg not in cm.ALG_NAMES:
        raise CrushMapError(f"{where}: unknown bucket alg {b.alg}")
    if b.hash != cm.HASH_RJENKINS1:
        raise CrushMapError(f"{where}: unknown hash {b.hash} (only 0, rjenkins1)")
    if len(b.items) > cm.MAX_BUCKET_SIZE:
        raise CrushMapError(f"{where}: more than {cm.MAX_BUCKET_SIZE} items")
    for item in b.items:
        if not _is_int(item.id, -cm.MAX_BUCKETS, cm.MAX_DEVICES - 1):
            raise CrushMapError(f"{where}: item id {item.id!r} is out of range")
        if item.id >= 0 and item.id not in m.devices:
            raise CrushMapError(f"{where}: item {item.id} is not a defined device")
        if item.id < 0 and item.id not in m.buckets:
            raise CrushMapError(f"{where}: item {item.id} is not a defined bucket")
        if not _is_int(item.weight, 0, cm.MAX_WEIGHT):
            raise CrushMapError(f"{where}: item {m.item_name(item.id)} has weight {item.weight}, "
                                f"must be within 0..{cm.MAX_WEIGHT}")
    if b.weight > cm.MAX_WEIGHT:
        raise CrushMapError(f"{where}: the sum of its item weights overflows 32 bits")
    if b.alg == cm.ALG_UNIFORM and len({item.weight for item in b.items}) > 1:
        raise CrushMapError(f"{where}: items of a uniform bucket must all weigh the same")
    if b.alg == cm.ALG_UNIFORM and any(item.weight == 0 for item in b.items):
        raise CrushMapError(f"{where}: items of a uniform bucket cannot weigh 0 (Ceph refuses "
                            "such a bucket)")


def _check_forest(m: CrushMap) -> None:
    """No item in two places, and no bucket below itself: following parents always ends."""
    parent: dict[int, int] = {}
    for b in m.buckets.values():
        for item in b.items:
            if item.id in parent:
                raise CrushMapError(f"item {m.item_name(item.id)} is in bucket "
                                    f"{m.item_name(parent[item.id])} and in {b.name!r}")
            parent[item.id] = b.id
    checked: set[int] = set()
    for start in m.buckets:
        path: list[int] = []
        node: int | None = start
        while node is not None and node not in checked:
            if node in path:
                raise CrushMapError(f"bucket {m.item_name(node)!r} contains itself (a cycle)")
            path.append(node)
            node = parent.get(node)
        checked.update(path)


def _check_class_ids(m: CrushMap) -> None:
    """Declared shadow ids must fit beside the buckets; then build the shadows once, which also
    proves there are enough free ids for the ones crushtool would allocate."""
    seen: set[int] = set()
    for b in m.buckets.values():
        for cls, shadow_id in b.class_ids:
            if not _is_int(shadow_id, -cm.MAX_BUCKETS, -1) or shadow_id in m.buckets:
                raise CrushMapError(f"bucket {b.name!r}: id {shadow_id} class {cls} is not a "
                                    "free bucket id")
            if shadow_id in seen:
                raise CrushMapError(f"bucket {b.name!r}: id {shadow_id} class {cls} is used twice")
            seen.add(shadow_id)
    for shadow in classes.shadow_buckets(m).values():  # sums recomputed: they can grow
        if shadow.weight > cm.MAX_WEIGHT:
            raise CrushMapError(f"shadow bucket {shadow.name!r}: the sum of its item weights "
                                "overflows 32 bits")


def _check_rule(m: CrushMap, rule_id: int, r: Rule) -> None:
    where = f"rule {r.name!r} ({rule_id})"
    if r.id != rule_id or not _is_int(rule_id, 0, cm.MAX_RULES - 1):
        raise CrushMapError(f"{where}: id must be within 0..{cm.MAX_RULES - 1}")
    if not all(_is_int(v, 0, 255) for v in (r.type, r.min_size, r.max_size)):
        raise CrushMapError(f"{where}: type, min_size and max_size must be within 0..255")
    if len(r.steps) > cm.MAX_RULE_STEPS:
        raise CrushMapError(f"{where}: more than {cm.MAX_RULE_STEPS} steps")
    for n, step in enumerate(r.steps, 1):
        _check_step(m, f"{where} step {n}", step)


def _check_step(m: CrushMap, where: str, s: Step) -> None:
    if not all(_is_int(v, -0x80000000, 0x7FFFFFFF) for v in (s.op, s.arg1, s.arg2)):
        raise CrushMapError(f"{where}: op and arguments must be 32-bit integers")
    if s.op == cm.OP_TAKE:
        if s.arg1 not in m.devices and s.arg1 not in m.buckets:
            raise CrushMapError(f"{where}: take of unknown item {s.arg1}")
        if s.item_class is not None:
            classes.resolve_take(m, s.arg1, s.item_class)
    elif s.op in cm.CHOOSE_OPS:
        if s.arg2 not in m.types:
            raise CrushMapError(f"{where}: type {s.arg2} is not defined")
        if not -MAX_CHOOSE_NUM <= s.arg1 <= MAX_CHOOSE_NUM:
            raise CrushMapError(f"{where}: count {s.arg1} must be within "
                                f"-{MAX_CHOOSE_NUM}..{MAX_CHOOSE_NUM}")
    elif s.op in cm.SET_OPS:
        if not 0 <= s.arg1 <= _SET_LIMITS[s.op]:
            raise CrushMapError(f"{where}: {cm.SET_OPS[s.op]} {s.arg1} must be within "
                                f"0..{_SET_LIMITS[s.op]}")
    elif s.op not in (cm.OP_EMIT, cm.OP_NOOP):
        raise CrushMapError(f"{where}: unknown step op {s.op}")
    if s.op != cm.OP_TAKE and s.item_class is not None:
        raise CrushMapError(f"{where}: only a take step can name a device class")
