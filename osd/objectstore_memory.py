"""`MemoryStore`: the in-memory object store for unit and simulation tests.

Same semantics as `DurableStore` (the conformance suite runs against both), nothing on disk.
Atomicity comes from staging: a transaction works on copies of the collections and objects it
touches and swaps them in only if every op succeeded. Each object keeps an xxhash of its data,
checked on read, so tests can corrupt a buffer and see the `ChecksumError` path.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import xxhash

from osd.objectstore_api import (
    CREATING_OPS,
    AlreadyExists,
    InvalidArgument,
    NotFound,
    ObjectStat,
    ObjectStore,
    Op,
    Transaction,
    check_page,
    checksum_error,
    coll_name,
    name_bytes,
)
from rados_py.errors import show_name


@dataclass
class _Obj:
    data: bytearray = field(default_factory=bytearray)
    checksum: bytes = xxhash.xxh3_64_digest(b"")
    version: int = 0
    mtime: float = 0.0
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    omap: dict[bytes, bytes] = field(default_factory=dict)
    header: bytes = b""

    def copy(self) -> _Obj:
        return _Obj(bytearray(self.data), self.checksum, self.version, self.mtime,
                    dict(self.xattrs), dict(self.omap), self.header)


@dataclass
class _Coll:
    objects: dict[bytes, _Obj] = field(default_factory=dict)
    log: dict[int, bytes] = field(default_factory=dict)


class MemoryStore(ObjectStore):
    """An `ObjectStore` held in dicts; `submit` applies synchronously on the event loop."""

    def __init__(self) -> None:
        self._colls: dict[str, _Coll] = {}

    # -- writes --------------------------------------------------------------------------------

    async def submit(self, txn: Transaction) -> None:
        if not isinstance(txn, Transaction):
            raise InvalidArgument("submit takes a Transaction")
        staged: dict[str, _Coll | None] = {}
        copied: set[tuple[str, bytes]] = set()
        now = time.time()

        def coll(name: str) -> _Coll:
            if name in staged:
                c = staged[name]
            else:
                c = self._colls.get(name)
                if c is not None:
                    c = staged[name] = _Coll(dict(c.objects), dict(c.log))
            if c is None:
                raise NotFound(f"collection {name} does not exist")
            return c

        def obj(op: Op) -> _Obj:
            c = coll(op.coll)
            o = c.objects.get(op.oid)
            if o is None:
                if op.kind not in CREATING_OPS:
                    raise NotFound(f"object {show_name(op.oid)} does not exist in {op.coll}")
                o = c.objects[op.oid] = _Obj()
            elif (op.coll, op.oid) not in copied:
                o = c.objects[op.oid] = o.copy()
            copied.add((op.coll, op.oid))
            o.mtime = now
            return o

        for op in txn.ops:
            self._apply(op, coll, obj, staged)
        for (cname, oid) in copied:
            c = staged.get(cname)
            if c is not None and oid in c.objects:
                o = c.objects[oid]
                o.checksum = xxhash.xxh3_64_digest(o.data)
        for name, c in staged.items():
            if c is None:
                self._colls.pop(name, None)
            else:
                self._colls[name] = c
        await asyncio.sleep(0)

    @staticmethod
    def _apply(op: Op, coll, obj, staged: dict[str, _Coll | None]) -> None:
        k = op.kind
        if k == "create_collection":
            try:
                coll(op.coll)
            except NotFound:
                staged[op.coll] = _Coll()
                return
            raise AlreadyExists(f"collection {op.coll} exists")
        if k == "remove_collection":
            coll(op.coll)
            staged[op.coll] = None
            return
        if k == "log_append":
            log = coll(op.coll).log
            if log and op.offset <= max(log):
                raise InvalidArgument(f"log seq {op.offset} is not above {max(log)}")
            if op.after is not None and log and max(log) != op.after:
                raise InvalidArgument(f"log seq {op.offset} follows {op.after}, the log ends "
                                      f"at {max(log)}")
            log[op.offset] = op.data
            return
        if k == "log_trim":
            log = coll(op.coll).log
            for seq in [s for s in log if s <= op.offset]:
                del log[seq]
            return
        if k == "log_rollback":
            log = coll(op.coll).log
            for seq in [s for s in log if s > op.offset]:
                del log[seq]
            return
        if k == "remove":
            obj(op)
            del coll(op.coll).objects[op.oid]
            return
        o = obj(op)
        if k == "write":
            _write(o.data, op.offset, op.data)
        elif k == "write_full":
            o.data = bytearray(op.data)
        elif k == "append":
            o.data += op.data
        elif k == "truncate":
            if op.offset < len(o.data):
                del o.data[op.offset:]
            else:
                o.data.extend(bytes(op.offset - len(o.data)))
        elif k == "zero":
            end = min(op.offset + op.length, len(o.data))
            if op.offset < end:
                o.data[op.offset:end] = bytes(end - op.offset)
        elif k == "set_version":
            o.version = op.offset
        elif k == "setxattr":
            o.xattrs.update(op.items)
        elif k == "rmxattr":
            if op.keys[0] not in o.xattrs:
                raise NotFound(f"xattr {show_name(op.keys[0])} of {show_name(op.oid)} is not set")
            del o.xattrs[op.keys[0]]
        elif k == "omap_set":
            o.omap.update(op.items)
        elif k == "omap_rm_keys":
            for key in op.keys:
                o.omap.pop(key, None)
        elif k == "omap_clear":
            o.omap.clear()
        elif k == "omap_set_header":
            o.header = op.data
        elif k != "touch":
            raise InvalidArgument(f"unknown op {k}")

    # -- reads ---------------------------------------------------------------------------------

    def _obj(self, coll: str, oid: bytes | str) -> tuple[bytes, _Obj]:
        c = self._colls.get(coll_name(coll))
        if c is None:
            raise NotFound(f"collection {coll} does not exist")
        name = name_bytes(oid, "object name")
        o = c.objects.get(name)
        if o is None:
            raise NotFound(f"object {show_name(name)} does not exist in {coll}")
        return name, o

    async def read(self, coll: str, oid: bytes | str, offset: int = 0,
                   length: int | None = None) -> bytearray:
        name, o = self._obj(coll, oid)
        if not isinstance(offset, int) or offset < 0 or (length is not None and (
                not isinstance(length, int) or length < 0)):
            raise InvalidArgument(f"bad offset/length {offset!r}/{length!r}")
        if xxhash.xxh3_64_digest(o.data) != o.checksum:
            raise checksum_error(coll, name, 0)
        end = len(o.data) if length is None else offset + length
        return bytearray(o.data[offset:end])

    async def stat(self, coll: str, oid: bytes | str) -> ObjectStat:
        _, o = self._obj(coll, oid)
        return ObjectStat(len(o.data), o.version, o.mtime)

    async def getxattr(self, coll: str, oid: bytes | str, name: bytes | str) -> bytes:
        oname, o = self._obj(coll, oid)
        key = name_bytes(name, "xattr name")
        if key not in o.xattrs:
            raise NotFound(f"xattr {show_name(key)} of {show_name(oname)} is not set")
        return o.xattrs[key]

    async def getxattrs(self, coll: str, oid: bytes | str) -> dict[bytes, bytes]:
        return dict(sorted(self._obj(coll, oid)[1].xattrs.items()))

    async def omap_get(self, coll: str, oid: bytes | str,
                       keys: Iterable[bytes | str]) -> dict[bytes, bytes]:
        o = self._obj(coll, oid)[1]
        wanted = [name_bytes(k, "omap key") for k in keys]
        return {k: o.omap[k] for k in wanted if k in o.omap}

    async def omap_list(self, coll: str, oid: bytes | str, after: bytes | str = b"",
                        prefix: bytes | str = b"", max_items: int = 1000
                        ) -> tuple[list[tuple[bytes, bytes]], bool]:
        o = self._obj(coll, oid)[1]
        check_page(max_items)
        after_b = name_bytes(after, "after") if after else b""
        prefix_b = name_bytes(prefix, "prefix") if prefix else b""
        keys = sorted(k for k in o.omap if k > after_b and k.startswith(prefix_b))
        return [(k, o.omap[k]) for k in keys[:max_items]], len(keys) > max_items

    async def omap_get_header(self, coll: str, oid: bytes | str) -> bytes:
        return self._obj(coll, oid)[1].header

    async def list_objects(self, coll: str, after: bytes | str = b"",
                           max_items: int = 1000) -> tuple[list[bytes], bool]:
        c = self._colls.get(coll_name(coll))
        if c is None:
            raise NotFound(f"collection {coll} does not exist")
        check_page(max_items)
        after_b = name_bytes(after, "after") if after else b""
        names = sorted(c.objects)
        start = bisect.bisect_right(names, after_b)
        page = names[start:start + max_items]
        return page, start + max_items < len(names)

    async def list_versions(self, coll: str, after: bytes | str = b"", max_items: int = 1000
                            ) -> tuple[list[tuple[bytes, int, int]], bool]:
        names, more = await self.list_objects(coll, after, max_items)
        objects = self._colls[coll_name(coll)].objects
        return [(n, objects[n].version, len(objects[n].data)) for n in names], more

    async def coll_stats(self, coll: str) -> tuple[int, int]:
        c = self._colls.get(coll_name(coll))
        if c is None:
            raise NotFound(f"collection {coll} does not exist")
        return len(c.objects), sum(len(o.data) for o in c.objects.values())

    async def list_collections(self) -> list[str]:
        return sorted(self._colls)

    async def log_read(self, coll: str, after: int = 0,
                       max_items: int = 1000) -> list[tuple[int, bytes]]:
        c = self._colls.get(coll_name(coll))
        if c is None:
            raise NotFound(f"collection {coll} does not exist")
        check_page(max_items)
        return [(s, c.log[s]) for s in sorted(c.log) if s > after][:max_items]

    async def close(self) -> None:
        """Nothing to release."""

    def corrupt_for_test(self, coll: str, oid: bytes) -> None:
        """Flip a byte of an object's data without updating its checksum (tests only)."""
        self._colls[coll].objects[oid].data[0] ^= 0xFF


def _write(buf: bytearray, offset: int, data: memoryview) -> None:
    if offset > len(buf):
        buf.extend(bytes(offset - len(buf)))
    buf[offset:offset + len(data)] = data
