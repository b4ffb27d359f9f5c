"""Class methods: small operations an OSD runs inside a client's compound op (Ceph's object
classes, `rados exec`). A method reads what it needs of the object as the request found it and
returns the store ops of its change, so the change is atomic with the request's other ops and
clients need no read-modify-write loop (and no retries against other writers) for it.

    counters.add   add deltas to a JSON object of integers kept at one omap key (a bucket
                   index shard's object and byte counts: concurrent PUTs of different keys in
                   one shard never conflict over the counts)
"""

from __future__ import annotations

import errno
import json
from collections.abc import Awaitable, Callable

from osd.objectstore import ObjectStore
from rados_py.proto.loligo import osd_pb2

__all__ = ["MethodFailed", "call"]

S = osd_pb2.StoreOp


class MethodFailed(Exception):
    def __init__(self, err: int, message: str) -> None:
        super().__init__(message)
        self.errno = err


Method = Callable[[ObjectStore, str, bytes, bool, bytes],
                  Awaitable[tuple[list[osd_pb2.StoreOp], bytes]]]


async def _counters_add(store: ObjectStore, coll: str, oid: bytes, exists: bool,
                        data: bytes) -> tuple[list[osd_pb2.StoreOp], bytes]:
    try:
        req = osd_pb2.CounterAdd.FromString(data)
    except Exception as exc:
        raise MethodFailed(errno.EINVAL, f"counters.add: bad input ({exc})") from None
    if not req.key:
        raise MethodFailed(errno.EINVAL, "counters.add: no key")
    raw = (await store.omap_get(coll, oid, [req.key])).get(req.key) if exists else None
    if raw is None and not req.create:
        return [], b""  # not kept here (yet): nothing to add to
    try:
        values = json.loads(raw) if raw is not None else {}
        if not isinstance(values, dict) or not all(isinstance(v, int)
                                                   for v in values.values()):
            raise ValueError("not an object of integers")
    except ValueError as exc:
        raise MethodFailed(errno.EINVAL, f"counters.add: {req.key!r} holds {exc}") from None
    for name, delta in req.deltas.items():
        values[name] = values.get(name, 0) + delta
    out = json.dumps(values, separators=(",", ":"), sort_keys=True).encode()
    return [S(kind=S.OMAP_SET, pairs=[osd_pb2.KeyValue(key=req.key, value=out)])], out


METHODS: dict[bytes, Method] = {b"counters.add": _counters_add}


async def call(store: ObjectStore, coll: str, oid: bytes, exists: bool, method: bytes,
               data: bytes) -> tuple[list[osd_pb2.StoreOp], bytes]:
    """Run `method` on the object as the request found it: its store ops and its output."""
    fn = METHODS.get(method)
    if fn is None:
        known = ", ".join(m.decode() for m in sorted(METHODS))
        raise MethodFailed(errno.EOPNOTSUPP, f"no class method {method!r} (known: {known})")
    return await fn(store, coll, oid, exists, data)
