"""Changes to a CRUSH map as the monitors make them: add an OSD under its host, reweight or remove
it, add a replicated rule. Each function returns a new map and leaves its argument untouched, and
keeps every ancestor's item weight equal to the sum below it, as `ceph osd crush` does.
"""

from __future__ import annotations

from rados_py.crush.model import (
    ALG_STRAW2,
    OP_CHOOSE_FIRSTN,
    OP_CHOOSELEAF_FIRSTN,
    OP_EMIT,
    OP_TAKE,
    RULE_TYPE_REPLICATED,
    Bucket,
    BucketItem,
    CrushMap,
    Device,
    Rule,
    Step,
    Tunables,
)
from rados_py.errors import InvalidArgument, NotFound

# Ceph's default hierarchy types, so maps and commands read as a Ceph operator expects.
DEFAULT_TYPES = ("osd", "host", "chassis", "rack", "row", "pdu", "pod", "room", "datacenter",
                 "zone", "region", "root")
DEFAULT_ROOT = "default"
DEFAULT_RULE = "replicated_rule"


def initial_map(failure_domain: str = "host") -> CrushMap:
    """An empty cluster's map: the default types, an empty root and one replicated rule."""
    m = CrushMap(types=dict(enumerate(DEFAULT_TYPES)), tunables=Tunables.optimal())
    m.buckets[-1] = Bucket(-1, DEFAULT_ROOT, m.type_id("root"), ALG_STRAW2)
    return add_replicated_rule(m, DEFAULT_RULE, DEFAULT_ROOT, failure_domain)


def _copy(m: CrushMap) -> CrushMap:
    """A copy whose dicts can change without touching `m` (the values are immutable)."""
    return CrushMap(dict(m.devices), dict(m.types), dict(m.buckets), dict(m.rules), m.tunables,
                    {index: dict(args) for index, args in m.choose_args.items()})


def _items_changed(m: CrushMap, bucket_id: int) -> None:
    """A bucket gained or lost an item: its choose_args (one weight per item) no longer fit and
    are dropped, so it maps by its own weights until the balancer computes new ones."""
    for args in m.choose_args.values():
        args.pop(bucket_id, None)


def _replace_items(b: Bucket, items: list[BucketItem]) -> Bucket:
    return Bucket(b.id, b.name, b.type_id, b.alg, b.hash, tuple(items), b.class_ids)


def _propagate(m: CrushMap, item: int) -> None:
    """Set every ancestor's item weight to the sum of what is below it (in place on a copy)."""
    parents = m.parents()
    while item in parents:
        parent = m.buckets[parents[item]]
        weight = m.buckets[item].weight if item < 0 else None
        if weight is not None:
            m.buckets[parent.id] = _replace_items(
                parent, [BucketItem(i.id, weight) if i.id == item else i for i in parent.items])
        item = parent.id


def _new_bucket_id(m: CrushMap) -> int:
    used = set(m.buckets)
    for b in m.buckets.values():
        used |= {cid for _, cid in b.class_ids}
    bid = -1
    while bid in used:
        bid -= 1
    return bid


def ensure_host(m: CrushMap, host: str, root: str = DEFAULT_ROOT) -> tuple[CrushMap, int]:
    """The id of host bucket `host`, creating it under `root` when missing."""
    for b in m.buckets.values():
        if b.name == host:
            return m, b.id
    try:
        root_id = m.item_by_name(root)
    except KeyError:
        raise NotFound(f"crush root {root!r} does not exist") from None
    out = _copy(m)
    bid = _new_bucket_id(out)
    out.buckets[bid] = Bucket(bid, host, out.type_id("host"), ALG_STRAW2)
    r = out.buckets[root_id]
    out.buckets[root_id] = _replace_items(r, [*r.items, BucketItem(bid, 0)])
    _items_changed(out, root_id)
    return out, bid


def add_device(m: CrushMap, osd: int, host: str, weight: int,
               device_class: str | None = None) -> CrushMap:
    """Put osd.N (weight 16.16) under `host`; an OSD already in the map stays where it is."""
    if osd in m.devices and osd in m.parents():
        return m
    out, host_id = ensure_host(m, host)
    out = _copy(out)
    out.devices[osd] = Device(osd, f"osd.{osd}", device_class)
    h = out.buckets[host_id]
    out.buckets[host_id] = _replace_items(h, [*h.items, BucketItem(osd, weight)])
    _items_changed(out, host_id)
    _propagate(out, host_id)
    return out


def reweight_device(m: CrushMap, osd: int, weight: int) -> CrushMap:
    parents = m.parents()
    if osd not in parents:
        raise NotFound(f"osd.{osd} is not in the crush map")
    out = _copy(m)
    p = out.buckets[parents[osd]]
    out.buckets[p.id] = _replace_items(
        p, [BucketItem(i.id, weight) if i.id == osd else i for i in p.items])
    _propagate(out, p.id)
    return out


def remove_device(m: CrushMap, osd: int) -> CrushMap:
    out = _copy(m)
    out.devices.pop(osd, None)
    parent = m.parents().get(osd)
    if parent is not None:
        p = out.buckets[parent]
        out.buckets[parent] = _replace_items(p, [i for i in p.items if i.id != osd])
        _items_changed(out, parent)
        _propagate(out, parent)
    return out


def add_replicated_rule(m: CrushMap, name: str, root: str, failure_domain: str,
                        device_class: str | None = None) -> CrushMap:
    """`ceph osd crush rule create-replicated NAME ROOT FAILURE_DOMAIN [CLASS]`."""
    if any(r.name == name for r in m.rules.values()):
        raise InvalidArgument(f"crush rule {name!r} already exists")
    try:
        root_id = m.item_by_name(root)
    except KeyError:
        raise NotFound(f"crush root {root!r} does not exist") from None
    try:
        domain = m.type_id(failure_domain)
    except KeyError:
        raise NotFound(f"crush type {failure_domain!r} does not exist "
                       f"(types: {', '.join(m.types.values())})") from None
    rule_id = next(i for i in range(len(m.rules) + 1) if i not in m.rules)
    choose = (Step(OP_CHOOSE_FIRSTN, 0, 0) if domain == 0
              else Step(OP_CHOOSELEAF_FIRSTN, 0, domain))
    out = _copy(m)
    out.rules[rule_id] = Rule(rule_id, name, RULE_TYPE_REPLICATED, 1, 10,
                              (Step(OP_TAKE, root_id, 0, device_class), choose, Step(OP_EMIT)))
    return out
