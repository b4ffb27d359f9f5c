"""Executing one compound request on one object: guards, reads, and mutations resolved to
primitive store ops.

The primary runs `execute` under its PG's lock: guards and reads see the object as it was
before the request; mutations are resolved against that same state into `StoreOp`s (an APPEND
becomes a WRITE at the size seen, an exclusive CREATE a TOUCH after checking absence). The
resolved list, not the client's ops, is what every member applies (`to_transaction`), so all
replicas end byte-identical whatever their timing. Failures are errno values (`OpFailed`),
the way a compound op reports which op failed and why; nothing of a failed request is applied.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from osd import cls as classes
from osd.objectstore import (
    AlreadyExists,
    ChecksumError,
    InvalidArgument,
    NotFound,
    ObjectStore,
    StoreFull,
    Transaction,
)
from osd.objectstore_api import check_range
from rados_py.errors import show_name
from rados_py.proto.loligo import osd_pb2

__all__ = ["MUTATIONS", "OpFailed", "Outcome", "errno_of", "execute", "is_write",
           "to_transaction"]

K = osd_pb2.OsdOp
S = osd_pb2.StoreOp
OMAP_PAGE_MAX = 10000  # omap pairs one op returns at most (server-side page cap)
MUTATIONS = frozenset({K.WRITE_FULL, K.WRITE, K.APPEND, K.TRUNCATE, K.ZERO, K.REMOVE, K.CREATE,
                       K.SETXATTR, K.RMXATTR, K.OMAP_SET, K.OMAP_RM, K.OMAP_CLEAR, K.TOUCH,
                       K.CALL})
_CMP = {K.EQ: lambda a, b: a == b, K.NE: lambda a, b: a != b, K.GT: lambda a, b: a > b,
        K.GTE: lambda a, b: a >= b, K.LT: lambda a, b: a < b, K.LTE: lambda a, b: a <= b}


class OpFailed(Exception):
    """Op `index` of a request failed with `err` (a positive errno)."""

    def __init__(self, index: int, err: int, message: str) -> None:
        self.index = index
        self.errno = err
        super().__init__(message)


def errno_of(exc: BaseException) -> int:
    """The errno a store error stands for on the wire."""
    for cls, code in ((NotFound, errno.ENOENT), (AlreadyExists, errno.EEXIST),
                      (ChecksumError, errno.EIO), (StoreFull, errno.ENOSPC),
                      (InvalidArgument, errno.EINVAL)):
        if isinstance(exc, cls):
            return code
    return errno.EIO


def is_write(ops: list[osd_pb2.OsdOp]) -> bool:
    return any(op.kind in MUTATIONS for op in ops)


@dataclass
class Outcome:
    results: list[osd_pb2.OsdOpResult]
    store_ops: list[osd_pb2.StoreOp]
    exists_after: bool
    version_before: int


async def _stat(store: ObjectStore, coll: str, oid: bytes) -> tuple[bool, int, int, float]:
    try:
        st = await store.stat(coll, oid)
    except NotFound:
        return False, 0, 0, 0.0
    return True, st.size, st.version, st.mtime


async def execute(store: ObjectStore, coll: str, oid: bytes, ops: list[osd_pb2.OsdOp],
                  max_read: int) -> Outcome:
    """Evaluate `ops` on the object's current state; raise OpFailed for the first that fails."""
    first_read: bytes | None = None
    if ops and ops[0].kind == K.READ:  # the common read: stat and data in one lookup
        try:
            st, data = await store.read_with_stat(coll, oid, ops[0].offset,
                                                  min(ops[0].length or max_read, max_read))
            exists, size, version, mtime = True, st.size, st.version, st.mtime
            first_read = bytes(data)
        except NotFound:
            exists, size, version, mtime = False, 0, 0, 0.0
        except ChecksumError as exc:
            raise OpFailed(0, errno.EIO, str(exc)) from None
    else:
        exists, size, version, mtime = await _stat(store, coll, oid)
    results: list[osd_pb2.OsdOpResult] = []
    out: list[osd_pb2.StoreOp] = []
    now_exists, now_size = exists, size
    for i, op in enumerate(ops):
        res = osd_pb2.OsdOpResult()
        if i == 0 and first_read is not None:
            res.data = first_read
            results.append(res)
            continue
        try:
            await _one(store, coll, oid, op, res, out, exists, size, version, mtime, max_read,
                       i, now_exists, now_size)
        except OpFailed:
            raise
        except (NotFound, AlreadyExists, ChecksumError, StoreFull, InvalidArgument) as exc:
            raise OpFailed(i, errno_of(exc), str(exc)) from None
        if op.kind in MUTATIONS:
            now_exists, now_size = _after(op, now_exists, now_size)
        results.append(res)
    return Outcome(results, out, now_exists, version)


def _after(op: osd_pb2.OsdOp, exists: bool, size: int) -> tuple[bool, int]:
    """Existence and size after one mutation (to resolve a later APPEND in the same request)."""
    k = op.kind
    if k == K.REMOVE:
        return False, 0
    if k == K.WRITE_FULL:
        return True, len(op.data)
    if k == K.WRITE:
        return True, max(size, op.offset + len(op.data))
    if k == K.APPEND:
        return True, size + len(op.data)
    if k == K.TRUNCATE:
        return True, op.offset
    if k == K.ZERO:
        return exists, size
    return True, size


async def _one(store: ObjectStore, coll: str, oid: bytes, op: osd_pb2.OsdOp,
               res: osd_pb2.OsdOpResult, out: list[osd_pb2.StoreOp], exists: bool, size: int,
               version: int, mtime: float, max_read: int, i: int, now_exists: bool,
               now_size: int) -> None:
    k = op.kind

    def need_object() -> None:
        if not exists:
            raise OpFailed(i, errno.ENOENT, "no such object")

    # --- guards --------------------------------------------------------------------------
    if k == K.ASSERT_EXISTS:
        need_object()
    elif k == K.ASSERT_VERSION:
        need_object()
        if version != op.version:
            raise OpFailed(i, errno.ERANGE, f"object version is {version}, not {op.version}")
    elif k == K.CMPXATTR:
        need_object()
        try:
            value = await store.getxattr(coll, oid, op.name)
        except NotFound:
            value = b""
        if not _CMP[op.cmp](value, op.data):
            raise OpFailed(i, errno.ECANCELED, f"xattr {show_name(op.name)} comparison failed")
    elif k == K.OMAP_CMP:
        need_object()
        stored = await store.omap_get(coll, oid, [p.key for p in op.pairs])
        for pair in op.pairs:
            if pair.key not in stored:
                raise OpFailed(i, errno.ECANCELED, f"omap key {show_name(pair.key)} is not set")
            if not _CMP[op.cmp](stored[pair.key], pair.value):
                raise OpFailed(i, errno.ECANCELED,
                               f"omap key {show_name(pair.key)} comparison failed")
    elif k == K.OMAP_ABSENT:
        if exists:
            present = await store.omap_get(coll, oid, list(op.keys))
            if present:
                raise OpFailed(i, errno.ECANCELED,
                               f"omap key {show_name(sorted(present)[0])} is set")
    # --- reads ---------------------------------------------------------------------------
    elif k == K.READ:
        need_object()
        length = op.length or max_read
        res.data = bytes(await store.read(coll, oid, op.offset, min(length, max_read)))
    elif k == K.STAT:
        need_object()
        res.size, res.version, res.mtime = size, version, mtime
    elif k == K.GETXATTR:
        need_object()
        try:
            res.data = await store.getxattr(coll, oid, op.name)
        except NotFound:
            raise OpFailed(i, errno.ENODATA, f"no xattr {show_name(op.name)}") from None
    elif k == K.GETXATTRS:
        need_object()
        for key, value in sorted((await store.getxattrs(coll, oid)).items()):
            res.pairs.add(key=key, value=value)
    elif k == K.OMAP_GET:
        need_object()
        if len(op.keys) > OMAP_PAGE_MAX:
            raise OpFailed(i, errno.E2BIG, f"{len(op.keys)} omap keys asked for at once; at "
                           f"most {OMAP_PAGE_MAX}")
        for key, value in sorted((await store.omap_get(coll, oid, list(op.keys))).items()):
            res.pairs.add(key=key, value=value)
    elif k == K.OMAP_LIST:
        need_object()
        page, more = await store.omap_list(coll, oid, op.name, op.prefix,
                                           min(op.max or 1000, OMAP_PAGE_MAX))
        for key, value in page:
            res.pairs.add(key=key, value=value)
        res.more = more
    # --- mutations -----------------------------------------------------------------------
    elif k in (K.WRITE_FULL, K.WRITE, K.APPEND):
        data = op.data  # taken out of the message once, checked, put in the store op
        offset = 0 if k == K.WRITE_FULL else op.offset if k == K.WRITE else now_size
        check_range(offset, len(data))  # a range no store could take: refused here
        out.append(S(kind=S.WRITE_FULL, data=data) if k == K.WRITE_FULL
                   else S(kind=S.WRITE, offset=offset, data=data))
    elif k == K.TRUNCATE:
        check_range(op.offset, 0)
        out.append(S(kind=S.TRUNCATE, offset=op.offset))
    elif k == K.ZERO:
        check_range(op.offset, op.length)
        if now_exists:  # as in Ceph, zeroing a missing object is a no-op, not a creation
            out.append(S(kind=S.ZERO, offset=op.offset, length=op.length))
    elif k == K.REMOVE:
        if not now_exists:
            raise OpFailed(i, errno.ENOENT, "no such object")
        out.append(S(kind=S.REMOVE))
    elif k == K.CREATE:
        if now_exists:
            raise OpFailed(i, errno.EEXIST, "object exists (exclusive create)")
        out.append(S(kind=S.TOUCH))
    elif k == K.TOUCH:
        out.append(S(kind=S.TOUCH))
    elif k == K.CALL:
        try:
            changes, res.data = await classes.call(store, coll, oid, now_exists, op.name,
                                                   op.data)
        except classes.MethodFailed as exc:
            raise OpFailed(i, exc.errno, str(exc)) from None
        out.extend(changes)
    elif k == K.SETXATTR:
        out.append(S(kind=S.SETXATTR, name=op.name, data=op.data))
    elif k == K.RMXATTR:
        if not now_exists:
            raise OpFailed(i, errno.ENOENT, "no such object")
        try:
            await store.getxattr(coll, oid, op.name)
        except NotFound:
            raise OpFailed(i, errno.ENODATA, f"no xattr {show_name(op.name)}") from None
        out.append(S(kind=S.RMXATTR, name=op.name))
    elif k == K.OMAP_SET:
        out.append(S(kind=S.OMAP_SET, pairs=list(op.pairs)))
    elif k == K.OMAP_RM:
        if now_exists:
            out.append(S(kind=S.OMAP_RM, keys=list(op.keys)))
    elif k == K.OMAP_CLEAR:
        if now_exists:
            out.append(S(kind=S.OMAP_CLEAR))
    else:
        raise OpFailed(i, errno.EOPNOTSUPP, f"unknown op kind {k}")


def to_transaction(txn: Transaction, coll: str, oid: bytes, ops: list[osd_pb2.StoreOp],
                   version: int | None) -> Transaction:
    """Add the resolved ops to `txn`; `version` is set on the object unless it ends removed."""
    for op in ops:
        k = op.kind
        if k == S.WRITE:
            txn.write(coll, oid, op.offset, op.data)
        elif k == S.WRITE_FULL:
            txn.write_full(coll, oid, op.data)
        elif k == S.TRUNCATE:
            txn.truncate(coll, oid, op.offset)
        elif k == S.ZERO:
            txn.zero(coll, oid, op.offset, op.length)
        elif k == S.REMOVE:
            txn.remove(coll, oid)
        elif k == S.TOUCH:
            txn.touch(coll, oid)
        elif k == S.SETXATTR:
            txn.setxattr(coll, oid, op.name, op.data)
        elif k == S.RMXATTR:
            txn.rmxattr(coll, oid, op.name)
        elif k == S.OMAP_SET:
            txn.omap_set(coll, oid, [(p.key, p.value) for p in op.pairs])
        elif k == S.OMAP_RM:
            txn.omap_rm_keys(coll, oid, list(op.keys))
        elif k == S.OMAP_CLEAR:
            txn.omap_clear(coll, oid)
        else:
            raise InvalidArgument(f"unknown store op kind {k}")
    if version is not None:
        txn.set_version(coll, oid, version)
    return txn
