"""The object store interface shared by both backends: limits, errors, `Transaction`, `ObjectStore`.

An OSD changes its local store only through a `Transaction`: an ordered list of ops on objects of
one or more collections (one collection per PG, named like "1.1f"). A backend applies a
transaction all or nothing and returns from `submit` only once it is durable, so the replication
layer can acknowledge a write as soon as `submit` returns. Arguments are validated when an op is
added (`InvalidArgument` right away, in the caller's frame); errors that depend on the store's
state (`NotFound`, `AlreadyExists`, `StoreFull`) come from `submit` and leave nothing of the
transaction behind.

Names are data: object names, xattr names and omap keys are arbitrary bytes (str is accepted and
encoded as UTF-8) and are only ever compared and stored, never used as paths. Everything returned
is bytes, so a name read back is exactly the name written.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rados_py.errors import (
    AlreadyExists,
    ChecksumError,
    InvalidArgument,
    NotFound,
    StoreFull,
)

__all__ = [
    "BLOCK_SIZE", "MAX_COLL_NAME", "MAX_NAME", "MAX_OBJECT_SIZE", "MAX_XATTR_VALUE",
    "AlreadyExists", "ChecksumError", "InvalidArgument", "NotFound", "ObjectStat", "ObjectStore",
    "Op", "StoreFull", "Transaction", "checksum_error",
]

MAX_NAME = 4096                 # bytes of an object name, xattr name or omap key
MAX_COLL_NAME = 128             # characters of a collection (PG) name
MAX_XATTR_VALUE = 64 * 1024     # xattrs are small metadata; big values belong in omap or data
MAX_OBJECT_SIZE = 4 << 30       # a write past 4 GiB is refused (holes below it are free)
BLOCK_SIZE = 1 << 20            # data is checksummed (and, on disk, copied on write) per 1 MiB


def checksum_error(coll: str, oid: bytes, block: int) -> ChecksumError:
    """The error for a block whose data does not match its checksum."""
    return ChecksumError(f"checksum mismatch in {coll}/{oid!r} block {block}: this copy is "
                         "corrupt and must be repaired from a replica", (coll, oid, block))


@dataclass(frozen=True)
class ObjectStat:
    """What `stat` returns: data size in bytes, the version last set, mtime (epoch seconds)."""

    size: int
    version: int
    mtime: float


@dataclass(frozen=True)
class Op:
    """One op of a transaction: `kind` names it, the other fields are its arguments."""

    kind: str
    coll: str
    oid: bytes = b""
    offset: int = 0
    length: int = 0
    data: Any = b""                     # bytes-like; kept as given, never copied
    keys: tuple[bytes, ...] = ()
    items: tuple[tuple[bytes, bytes], ...] = ()
    after: int | None = None            # log_append: the seq the log must end at (if known)


def name_bytes(name: bytes | str, what: str = "name") -> bytes:
    """Normalise an object name / xattr name / omap key to bytes and check its length."""
    if isinstance(name, str):
        name = name.encode()
    elif isinstance(name, bytearray | memoryview):
        name = bytes(name)
    elif not isinstance(name, bytes):
        raise InvalidArgument(f"{what} must be bytes or str, not {type(name).__name__}")
    if not name:
        raise InvalidArgument(f"{what} must not be empty")
    if len(name) > MAX_NAME:
        raise InvalidArgument(f"{what} is {len(name)} bytes, more than the limit {MAX_NAME}")
    return name


def coll_name(coll: str) -> str:
    """Check a collection name: a short printable string (it is a PG id like "1.1f")."""
    if not isinstance(coll, str) or not coll or len(coll) > MAX_COLL_NAME:
        raise InvalidArgument(f"bad collection name {coll!r} (1..{MAX_COLL_NAME} characters)")
    if not coll.isprintable():
        raise InvalidArgument(f"collection name {coll!r} is not printable")
    return coll


def check_range(offset: int, length: int) -> None:
    """Offsets and lengths are non-negative and stay below `MAX_OBJECT_SIZE`."""
    if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length < 0:
        raise InvalidArgument(f"bad offset/length {offset!r}/{length!r}")
    if offset + length > MAX_OBJECT_SIZE:
        raise InvalidArgument(f"offset+length {offset + length} exceeds {MAX_OBJECT_SIZE}")


def _data(data: Any) -> memoryview:
    try:
        view = memoryview(data)
    except TypeError:
        raise InvalidArgument(f"data must be bytes-like, not {type(data).__name__}") from None
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


@dataclass
class Transaction:
    """An ordered list of ops applied all or nothing by `ObjectStore.submit`.

    Builders return self so ops chain. Data buffers are referenced, not copied: do not mutate
    a buffer after adding it (that is how a 64 MiB write stays one copy in memory).
    """

    ops: list[Op] = field(default_factory=list)

    def _add(self, op: Op) -> Transaction:
        self.ops.append(op)
        return self

    def create_collection(self, coll: str) -> Transaction:
        return self._add(Op("create_collection", coll_name(coll)))

    def remove_collection(self, coll: str) -> Transaction:
        """Remove a collection with all its objects and its PG log."""
        return self._add(Op("remove_collection", coll_name(coll)))

    def touch(self, coll: str, oid: bytes | str) -> Transaction:
        return self._add(Op("touch", coll_name(coll), name_bytes(oid, "object name")))

    def write(self, coll: str, oid: bytes | str, offset: int, data: Any) -> Transaction:
        """Write at offset (creating the object); a gap past the old end reads as zeros."""
        view = _data(data)
        check_range(offset, len(view))
        return self._add(Op("write", coll_name(coll), name_bytes(oid, "object name"), offset,
                            len(view), view))

    def write_full(self, coll: str, oid: bytes | str, data: Any) -> Transaction:
        """Replace the object's data (xattrs and omap are kept)."""
        view = _data(data)
        check_range(0, len(view))
        return self._add(Op("write_full", coll_name(coll), name_bytes(oid, "object name"), 0,
                            len(view), view))

    def append(self, coll: str, oid: bytes | str, data: Any) -> Transaction:
        view = _data(data)
        check_range(0, len(view))
        return self._add(Op("append", coll_name(coll), name_bytes(oid, "object name"), 0,
                            len(view), view))

    def truncate(self, coll: str, oid: bytes | str, size: int) -> Transaction:
        check_range(size, 0)
        return self._add(Op("truncate", coll_name(coll), name_bytes(oid, "object name"), size))

    def zero(self, coll: str, oid: bytes | str, offset: int, length: int) -> Transaction:
        """Zero a range of an existing object; the part past its end is ignored (no growth)."""
        check_range(offset, length)
        return self._add(Op("zero", coll_name(coll), name_bytes(oid, "object name"), offset,
                            length))

    def remove(self, coll: str, oid: bytes | str) -> Transaction:
        return self._add(Op("remove", coll_name(coll), name_bytes(oid, "object name")))

    def set_version(self, coll: str, oid: bytes | str, version: int) -> Transaction:
        if not isinstance(version, int) or version < 0 or version >= 1 << 63:
            raise InvalidArgument(f"bad version {version!r}")
        return self._add(Op("set_version", coll_name(coll), name_bytes(oid, "object name"),
                            version))

    def setxattr(self, coll: str, oid: bytes | str, name: bytes | str, value: Any) -> Transaction:
        view = _data(value)
        if len(view) > MAX_XATTR_VALUE:
            raise InvalidArgument(f"xattr value of {len(view)} bytes > {MAX_XATTR_VALUE}")
        return self._add(Op("setxattr", coll_name(coll), name_bytes(oid, "object name"),
                            items=((name_bytes(name, "xattr name"), bytes(view)),)))

    def rmxattr(self, coll: str, oid: bytes | str, name: bytes | str) -> Transaction:
        """Remove an xattr; `NotFound` at submit if it is not set."""
        return self._add(Op("rmxattr", coll_name(coll), name_bytes(oid, "object name"),
                            keys=(name_bytes(name, "xattr name"),)))

    def omap_set(self, coll: str, oid: bytes | str,
                 items: Mapping[bytes | str, Any] | Iterable[tuple[bytes | str, Any]]
                 ) -> Transaction:
        pairs = items.items() if isinstance(items, Mapping) else items
        norm = tuple((name_bytes(k, "omap key"), bytes(_data(v))) for k, v in pairs)
        return self._add(Op("omap_set", coll_name(coll), name_bytes(oid, "object name"),
                            items=norm))

    def omap_rm_keys(self, coll: str, oid: bytes | str,
                     keys: Iterable[bytes | str]) -> Transaction:
        """Remove omap keys; keys that are not there are ignored."""
        norm = tuple(name_bytes(k, "omap key") for k in keys)
        return self._add(Op("omap_rm_keys", coll_name(coll), name_bytes(oid, "object name"),
                            keys=norm))

    def omap_clear(self, coll: str, oid: bytes | str) -> Transaction:
        return self._add(Op("omap_clear", coll_name(coll), name_bytes(oid, "object name")))

    def omap_set_header(self, coll: str, oid: bytes | str, header: Any) -> Transaction:
        return self._add(Op("omap_set_header", coll_name(coll), name_bytes(oid, "object name"),
                            data=bytes(_data(header))))

    def log_append(self, coll: str, seq: int, entry: Any, after: int | None = None
                   ) -> Transaction:
        """Append PG-log entry `seq` (strictly above the last one) to the collection's log.
        With `after`, the log must end at that seq (a non-empty log's last entry): so a
        pipelined entry never lands behind a hole left by one that failed before it."""
        if not isinstance(seq, int) or seq <= 0 or seq >= 1 << 63:
            raise InvalidArgument(f"bad log sequence {seq!r}")
        return self._add(Op("log_append", coll_name(coll), offset=seq, data=bytes(_data(entry)),
                            after=after))

    def log_rollback(self, coll: str, after: int) -> Transaction:
        """Drop the collection's PG-log entries with seq > after (divergent history)."""
        if not isinstance(after, int) or not 0 <= after < 1 << 63:
            raise InvalidArgument(f"bad log rollback point {after!r}")
        return self._add(Op("log_rollback", coll_name(coll), offset=after))

    def log_trim(self, coll: str, upto: int) -> Transaction:
        """Drop the collection's PG-log entries with seq <= upto."""
        if not isinstance(upto, int) or upto < 0:
            raise InvalidArgument(f"bad log trim point {upto!r}")
        return self._add(Op("log_trim", coll_name(coll), offset=upto))


# ops that create the object they name when it is missing (as in Ceph); the others need it
CREATING_OPS = frozenset({"touch", "write", "write_full", "append", "truncate", "set_version",
                          "setxattr", "omap_set", "omap_set_header"})


def check_page(max_items: int) -> None:
    if not isinstance(max_items, int) or max_items <= 0:
        raise InvalidArgument(f"max_items must be a positive int, not {max_items!r}")


class ObjectStore(abc.ABC):
    """What an OSD needs from its local store; `MemoryStore` and `DurableStore` implement it.

    Every method is a coroutine so that a backend may move blocking work (fsync, big reads) to a
    thread; none of them blocks the event loop.
    """

    @abc.abstractmethod
    async def submit(self, txn: Transaction) -> None:
        """Apply `txn` all or nothing; durable when this returns."""

    @abc.abstractmethod
    async def read(self, coll: str, oid: bytes | str, offset: int = 0,
                   length: int | None = None) -> bytearray:
        """Read up to `length` bytes (None: to the end); checksums are verified first.

        Returns a bytearray so that a 64 MiB read is one buffer in memory, not two.
        """

    @abc.abstractmethod
    async def stat(self, coll: str, oid: bytes | str) -> ObjectStat: ...

    async def read_with_stat(self, coll: str, oid: bytes | str, offset: int = 0,
                             length: int | None = None) -> tuple[ObjectStat, bytearray]:
        """`stat` and `read` seen at one instant (a backend may do both in one lookup)."""
        st = await self.stat(coll, oid)
        return st, await self.read(coll, oid, offset, length)

    def enqueue(self, txn: Transaction) -> Awaitable[None]:
        """Queue `txn` now and return what to await for its durability: transactions queued
        one after the other are applied in that order (a PG's log entries are)."""
        return asyncio.ensure_future(self.submit(txn))

    @abc.abstractmethod
    async def getxattr(self, coll: str, oid: bytes | str, name: bytes | str) -> bytes: ...

    @abc.abstractmethod
    async def getxattrs(self, coll: str, oid: bytes | str) -> dict[bytes, bytes]: ...

    @abc.abstractmethod
    async def omap_get(self, coll: str, oid: bytes | str,
                       keys: Iterable[bytes | str]) -> dict[bytes, bytes]:
        """The values of those of `keys` that are set."""

    @abc.abstractmethod
    async def omap_list(self, coll: str, oid: bytes | str, after: bytes | str = b"",
                        prefix: bytes | str = b"", max_items: int = 1000
                        ) -> tuple[list[tuple[bytes, bytes]], bool]:
        """Up to `max_items` (key, value) pairs with key > after and starting with prefix, in
        byte order, and whether more follow (page on with after=last key)."""

    @abc.abstractmethod
    async def omap_get_header(self, coll: str, oid: bytes | str) -> bytes: ...

    @abc.abstractmethod
    async def list_objects(self, coll: str, after: bytes | str = b"",
                           max_items: int = 1000) -> tuple[list[bytes], bool]:
        """Up to `max_items` object names > after in byte order, and whether more follow."""

    @abc.abstractmethod
    async def list_versions(self, coll: str, after: bytes | str = b"", max_items: int = 1000
                            ) -> tuple[list[tuple[bytes, int, int]], bool]:
        """Like list_objects, with each object's (name, version, size): one query for the
        inventory that recovery compares, instead of a stat per object."""

    @abc.abstractmethod
    async def coll_stats(self, coll: str) -> tuple[int, int]:
        """(objects, bytes of data) in a collection."""

    @abc.abstractmethod
    async def list_collections(self) -> list[str]: ...

    @abc.abstractmethod
    async def log_read(self, coll: str, after: int = 0,
                       max_items: int = 1000) -> list[tuple[int, bytes]]:
        """PG-log entries (seq, entry) with seq > after, in order."""

    def space(self) -> tuple[int, int] | None:
        """(bytes free for this store, bytes it keeps in reserve), or None when it has no
        such limit (in memory). A write bigger than free - reserve would be refused."""
        return None

    @abc.abstractmethod
    async def close(self) -> None:
        """Release resources; pending submits finish first."""
