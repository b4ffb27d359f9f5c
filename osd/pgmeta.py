"""What a member keeps about a PG in its object store, besides the objects: log and meta.

Each PG collection holds one hidden object, `PGMETA_OID`, whose xattr `info` is the last
activation (`les`, its acting set) and whose omap is the member's missing set (oid -> the
version it needs, 8 bytes big-endian; 0: must not exist). Its id can never be a client object's
(a store oid starts with a 2-byte namespace length of at most MAX_NSPACE), and listings skip it.
Log entries live in the store's PG log (seq -> PgLogEntry). Everything here is written inside
the same transactions as the objects it describes, so it is exactly as durable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from osd.objectstore import NotFound, ObjectStore, Transaction
from osd.peering import Entry, Peer
from rados_py.proto.loligo import osd_pb2

__all__ = ["LOG_MAX", "PGMETA_OID", "LoadedPg", "add_log", "clear_missing", "is_pgmeta",
           "load", "set_info", "set_missing", "to_entry"]

PGMETA_OID = b"\xff\xff"
LOG_MAX = 2000       # entries kept per PG log; older ones are trimmed (backfill beyond that)
LOG_TRIM_SLACK = 200  # trim in batches of this many, not at every write
_INFO = b"info"


def is_pgmeta(oid: bytes) -> bool:
    return oid == PGMETA_OID


def to_entry(seq: int, entry: osd_pb2.PgLogEntry) -> Entry:
    return Entry(seq=seq, version=entry.version, oid=entry.oid, removed=entry.removed)


@dataclass
class LoadedPg:
    """A member's persisted view of one PG."""

    exists: bool = False
    les: int = 0
    les_acting: tuple[int, ...] = ()
    log_tail: int = 0
    scrubbed: tuple[float, float] = (0.0, 0.0)  # last scrub and deep scrub (Unix time)
    log: list[tuple[int, osd_pb2.PgLogEntry]] = field(default_factory=list)
    missing: dict[bytes, int] = field(default_factory=dict)

    def peer(self, osd: int) -> Peer:
        return Peer(osd=osd, exists=self.exists, les=self.les, les_acting=self.les_acting,
                    log_tail=self.log_tail, log=[to_entry(s, e) for s, e in self.log],
                    missing=dict(self.missing))


async def load(store: ObjectStore, coll: str) -> LoadedPg:
    """The PG's persisted state on this store (exists=False when it has no such collection)."""
    if coll not in await store.list_collections():
        return LoadedPg()
    out = LoadedPg(exists=True)
    try:
        raw = await store.getxattr(coll, PGMETA_OID, _INFO)
    except NotFound:
        raw = b""
    if raw:
        info = osd_pb2.PgInfo.FromString(raw)
        out.les, out.les_acting = info.les, tuple(info.les_acting)
        out.scrubbed = (info.last_scrub_stamp, info.last_deep_scrub_stamp)
    after = b""
    while True:
        try:
            page, more = await store.omap_list(coll, PGMETA_OID, after, max_items=1000)
        except NotFound:
            break
        for key, value in page:
            out.missing[key] = int.from_bytes(value, "big")
        if not more or not page:
            break
        after = page[-1][0]
    first = True
    seq_after = 0
    while page_log := await store.log_read(coll, seq_after, 1000):  # at most ~LOG_MAX
        if first:
            out.log_tail = page_log[0][0] - 1
            first = False
        out.log.extend((seq, osd_pb2.PgLogEntry.FromString(raw)) for seq, raw in page_log)
        seq_after = page_log[-1][0]
    if first:  # an empty log keeps its tail in the info (it was replaced or fully trimmed)
        out.log_tail = osd_pb2.PgInfo.FromString(raw).log_tail if raw else 0
    return out


def set_info(txn: Transaction, coll: str, les: int, acting: list[int] | tuple[int, ...],
             log_tail: int, scrubbed: tuple[float, float] = (0.0, 0.0)) -> None:
    """The member's info: its last activation, log tail and scrub stamps."""
    txn.touch(coll, PGMETA_OID)
    info = osd_pb2.PgInfo(pgid=coll, les=les, les_acting=acting, log_tail=log_tail,
                          last_scrub_stamp=scrubbed[0], last_deep_scrub_stamp=scrubbed[1])
    txn.setxattr(coll, PGMETA_OID, _INFO, info.SerializeToString())


def set_missing(txn: Transaction, coll: str, missing: dict[bytes, int]) -> None:
    """Replace the member's missing set."""
    txn.touch(coll, PGMETA_OID)
    txn.omap_clear(coll, PGMETA_OID)
    if missing:
        txn.omap_set(coll, PGMETA_OID, [(oid, need.to_bytes(8, "big"))
                                        for oid, need in missing.items()])


def clear_missing(txn: Transaction, coll: str, oid: bytes) -> None:
    txn.touch(coll, PGMETA_OID)
    txn.omap_rm_keys(coll, PGMETA_OID, [oid])


def add_log(txn: Transaction, coll: str, seq: int, entry: osd_pb2.PgLogEntry,
            log_tail: int, after: int | None = None) -> int:
    """Append one entry (behind `after`, see Transaction.log_append); trim the oldest when the
    log is long. Returns the new tail."""
    txn.log_append(coll, seq, entry.SerializeToString(),
                   after=after if after is not None and after > log_tail else None)
    if seq - log_tail > LOG_MAX + LOG_TRIM_SLACK:
        log_tail = seq - LOG_MAX
        txn.log_trim(coll, log_tail)
    return log_tail
