"""CrushMap <-> protobuf (proto/loligo/maps.proto): how maps travel and how `crush compile`
stores them. Exact: weights stay 16.16 integers, so a map survives the round trip bit for bit."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from rados_py.crush.model import (
    TUNABLE_NAMES,
    Bucket,
    BucketItem,
    ChooseArg,
    CrushMap,
    Device,
    Rule,
    Step,
    Tunables,
)
from rados_py.errors import CrushMapError
from rados_py.proto.loligo import maps_pb2

FORMAT_VERSION = 1


def to_proto(m: CrushMap) -> maps_pb2.CrushMap:
    msg = maps_pb2.CrushMap(format_version=FORMAT_VERSION)
    for name in TUNABLE_NAMES:
        setattr(msg.tunables, name, getattr(m.tunables, name))
    for dev in sorted(m.devices.values(), key=lambda d: d.id):
        msg.devices.add(id=dev.id, name=dev.name, device_class=dev.device_class or "")
    for tid in sorted(m.types):
        msg.types.add(id=tid, name=m.types[tid])
    for b in sorted(m.buckets.values(), key=lambda b: -b.id):
        pb = msg.buckets.add(id=b.id, name=b.name, type_id=b.type_id, alg=b.alg, hash=b.hash)
        for item in b.items:
            pb.items.add(id=item.id, weight=item.weight)
        for cls, cid in b.class_ids:
            pb.class_ids.add(device_class=cls, id=cid)
    for rid in sorted(m.rules):
        r = m.rules[rid]
        pr = msg.rules.add(id=r.id, name=r.name, type=r.type, min_size=r.min_size,
                           max_size=r.max_size)
        for s in r.steps:
            pr.steps.add(op=s.op, arg1=s.arg1, arg2=s.arg2, item_class=s.item_class or "")
    for index in sorted(m.choose_args):
        pa = msg.choose_args.add(index=index)
        for bucket_id in sorted(m.choose_args[index], reverse=True):
            arg = m.choose_args[index][bucket_id]
            entry = pa.args.add(bucket_id=bucket_id, has_ids=arg.ids is not None,
                                ids=list(arg.ids or ()))
            for row in arg.weight_set:
                entry.weight_set.add(weights=list(row))
    return msg


def from_proto(msg: maps_pb2.CrushMap) -> CrushMap:
    if msg.format_version != FORMAT_VERSION:
        raise CrushMapError(f"unsupported crush map format version {msg.format_version}")
    m = CrushMap(tunables=Tunables(**{n: getattr(msg.tunables, n) for n in TUNABLE_NAMES}))
    for d in msg.devices:
        m.devices[d.id] = Device(d.id, d.name, d.device_class or None)
    for t in msg.types:
        m.types[t.id] = t.name
    for b in msg.buckets:
        m.buckets[b.id] = Bucket(
            b.id, b.name, b.type_id, b.alg, b.hash,
            tuple(BucketItem(i.id, i.weight) for i in b.items),
            tuple((c.device_class, c.id) for c in b.class_ids))
    for r in msg.rules:
        m.rules[r.id] = Rule(r.id, r.name, r.type, r.min_size, r.max_size,
                             tuple(Step(s.op, s.arg1, s.arg2, s.item_class or None)
                                   for s in r.steps))
    for pa in msg.choose_args:
        m.choose_args[pa.index] = {
            a.bucket_id: ChooseArg(tuple(tuple(row.weights) for row in a.weight_set),
                                   tuple(a.ids) if a.has_ids else None)
            for a in pa.args}
    return m


def dumps(m: CrushMap) -> bytes:
    return to_proto(m).SerializeToString(deterministic=True)


def loads(data: bytes) -> CrushMap:
    msg = maps_pb2.CrushMap()
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise CrushMapError(f"not a compiled crush map: {e}") from None
    return from_proto(msg)
