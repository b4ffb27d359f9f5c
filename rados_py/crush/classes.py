"""Device-class shadow trees, built exactly as `crushtool -c` builds them.

`step take default class ssd` maps through a copy of the tree under `default` that holds only the
`ssd` devices: the shadow buckets `NAME~ssd`. Their ids are part of the placement (the hash
input), so they must be those Ceph gives: the `id -N class C` ids declared in the map, and for the
others the ids crushtool allocates. crushtool (pacific) builds them at the first rule of the map,
so a map without rules has none; for every root bucket (ascending id) and every class (in the
order classes first appear: devices, then `id ... class` declarations) it copies the subtree
children first, and gives each copy the first id from -1 down that is neither a bucket nor
declared anywhere as a class id. Copying stops for good at the first weighted item that would go
into the copy of a uniform bucket (crushtool fails there and keeps what it built); takes through
the missing copies are refused.
"""

from __future__ import annotations

from rados_py.crush.model import ALG_UNIFORM, MAX_BUCKETS, Bucket, BucketItem, CrushMap
from rados_py.errors import CrushMapError


def shadow_name(name: str, device_class: str) -> str:
    """`host0~ssd`: the name Ceph gives the shadow of `host0` for class `ssd`."""
    return f"{name}~{device_class}"


def class_order(m: CrushMap) -> list[str]:
    """Device classes in the order crushtool numbers them (first appearance), which is the order
    it builds and prints their shadow trees in."""
    seen: dict[str, None] = {}
    for dev in m.devices.values():
        if dev.device_class:
            seen.setdefault(dev.device_class)
    for bucket in m.buckets.values():
        for cls, _ in bucket.class_ids:
            seen.setdefault(cls)
    return list(seen)


def shadow_buckets(m: CrushMap) -> dict[int, Bucket]:
    """Every shadow bucket crushtool would add to `m`, by id (empty when `m` has no rules)."""
    return {b.id: b for b in _build(m, bool(m.rules)).values()}


def class_ids(m: CrushMap, has_rules: bool | None = None) -> dict[int, tuple[tuple[str, int], ...]]:
    """For each bucket, its complete `Bucket.class_ids` (declared or allocated, in class order):
    what `crushtool -d` prints as `id -N class C` lines after compiling `m`. `has_rules` lets
    the parser ask before it has added the rules (only their presence matters)."""
    built = _build(m, bool(m.rules) if has_rules is None else has_rules)
    order = {cls: k for k, cls in enumerate(class_order(m))}
    out: dict[int, list[tuple[str, int]]] = {}
    for (bucket_id, cls), shadow in built.items():
        out.setdefault(bucket_id, []).append((cls, shadow.id))
    return {bid: tuple(sorted(pairs, key=lambda p: order[p[0]])) for bid, pairs in out.items()}


def resolve_take(m: CrushMap, bucket_id: int, cls: str) -> int:
    """The id `step take BUCKET class CLS` really takes: the shadow of that bucket."""
    if bucket_id not in m.buckets:
        raise CrushMapError(f"step take {m.item_name(bucket_id)} class {cls}: not a bucket")
    shadow = _build(m, True).get((bucket_id, cls))
    if shadow is None:
        raise CrushMapError(f"step take {m.item_name(bucket_id)} class {cls}: no shadow tree "
                            f"(unknown class, or behind a uniform bucket)")
    return shadow.id


# --- building --------------------------------------------------------------------------------
class _Stop(Exception):
    """crushtool gave up copying (a uniform bucket copy got a weighted item): keep the rest."""


class _Ids:
    """crushtool's allocator: the first id from -1 down not used by a bucket nor declared."""

    def __init__(self, m: CrushMap):
        self.declared = {(b.id, cls): sid for b in m.buckets.values() for cls, sid in b.class_ids}
        self.taken = set(m.buckets) | set(self.declared.values())
        self.next = -1

    def get(self, bucket_id: int, cls: str) -> int:
        if (bucket_id, cls) in self.declared:
            return self.declared[(bucket_id, cls)]
        while self.next in self.taken:
            self.next -= 1
        if self.next < -MAX_BUCKETS:
            raise CrushMapError(f"no bucket id left for shadow bucket of class {cls}")
        self.taken.add(self.next)
        return self.next


def _build(m: CrushMap, has_rules: bool) -> dict[tuple[int, str], Bucket]:
    """(original bucket id, class) -> shadow bucket, in crushtool's creation order."""
    order = class_order(m)
    if not has_rules or not order:
        return {}
    children = {it.id for b in m.buckets.values() for it in b.items}
    roots = sorted(bid for bid in m.buckets if bid not in children)
    ids = _Ids(m)
    built: dict[tuple[int, str], Bucket] = {}
    try:
        for root in roots:
            for cls in order:
                _copy_tree(m, root, cls, ids, built)
    except _Stop:
        pass
    return built


def _copy_tree(m: CrushMap, root: int, cls: str, ids: _Ids,
               built: dict[tuple[int, str], Bucket]) -> None:
    """Copy the tree under `root` for `cls` as crushtool does: depth first, each child subtree
    complete before the next item; a copy gets its id once all its items are in. Iterative, so
    deep trees are fine."""
    items: dict[int, list[BucketItem]] = {root: []}
    stack = [(root, 0)]
    while stack:
        bucket_id, k = stack.pop()
        b = m.buckets[bucket_id]
        while k < len(b.items):
            item = b.items[k]
            if item.id < 0 and (item.id, cls) not in built:
                if item.id in m.buckets and item.id not in items:
                    stack += [(bucket_id, k), (item.id, 0)]
                    items[item.id] = []
                    break
                k += 1  # not a bucket of this map: nothing to copy
                continue
            copy = built.get((item.id, cls))
            dev = m.devices.get(item.id)
            added = BucketItem(copy.id, copy.weight) if copy else item
            if copy or (dev is not None and dev.device_class == cls):
                if b.alg == ALG_UNIFORM and added.weight:
                    raise _Stop  # crushtool cannot add a weighted item to a uniform copy
                items[bucket_id].append(added)
            k += 1
        else:
            built[(bucket_id, cls)] = Bucket(ids.get(bucket_id, cls), shadow_name(b.name, cls),
                                             b.type_id, b.alg, b.hash, tuple(items[bucket_id]))
