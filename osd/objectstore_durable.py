"""`DurableStore`: the on-disk object store (metadata in SQLite, data in immutable block files).

Layout of a store directory:

    meta.db (+ -wal)   SQLite, WAL mode, synchronous=FULL: collections, objects (name, size,
                       version, mtime, omap header), xattrs, omap, PG logs, and the block map
    data/<id>>12>/<id> block files, named by a counter (hex) - never by anything a client chose

Object data is cut into fixed `BLOCK_SIZE` (1 MiB) blocks, each with its own xxh3-64 checksum,
kept in the `blocks` table as (object, index) -> (length, checksum, file id | inline bytes).
Blocks of at most `INLINE_MAX` bytes live inline in SQLite: a 4 KiB write then costs no file
fsync at all, only its share of the group's WAL commit. Bigger blocks live in files that are
never modified after they are written: a write at an offset copies-on-write only the blocks it
touches (at most 1 MiB of read-modify-write at each end), a block missing from the map is a
hole that reads as zeros, and a 64 MiB object is streamed block by block (the buffer the caller
passed in is sliced, not copied).

Why it is crash-safe: a transaction first writes its new blocks to NEW files, the batch
fdatasyncs them (in parallel) and fsyncs their directories, then commits all its metadata -
including the block map pointing at those files - in one SQLite transaction. Before that
commit the new files are unreferenced orphans; after it, the old files it replaced are. Files
are unlinked only after the commit, and orphans of either kind are deleted when the store is
opened. So after SIGKILL or power loss at
any point, what SQLite recovered is exactly the set of committed transactions, and every file
it references was durable before the commit that references it.

Group commit: `submit` queues the transaction; one committer drains the queue in batches on a
single writer thread, applies each transaction inside its own SAVEPOINT (a failing transaction
is rolled back alone), and ends the batch with ONE COMMIT, i.e. one WAL fsync for all of them.
How ops become rows and blocks is in `objectstore_apply`. One process opens a store at a time
(an flock on `LOCK`), since opening collects orphans that would be another process's new files.

A full disk: when the file system is nearly full even a removal cannot commit (SQLite needs WAL
space to delete rows), so a full store could never be emptied again. As Ceph does with its full
ratio, the store keeps a reserve (`reserve_bytes`: 1% of the file system, 4 MiB..1 GiB): a
transaction that would leave less than the reserve free is refused with `StoreFull` before
anything of it is written, unless it is a small one that frees space (remove, truncate, zero,
omap/xattr removal, log trim, with at most `FREEING_MAX_PAYLOAD` bytes of new data such as its
PG-log entry). Those may use the reserve, so removing objects always brings a full store back.
A real ENOSPC from the OS or SQLite still maps to `StoreFull` with the transaction rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import mmap
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from osd.objectstore_api import (
    BLOCK_SIZE,
    InvalidArgument,
    NotFound,
    ObjectStat,
    ObjectStore,
    StoreFull,
    Transaction,
    check_page,
    checksum_error,
    coll_name,
    name_bytes,
)
from osd.objectstore_apply import INLINE_MAX, Applier, Block, checksum, cid_of, whole_blocks
from rados_py import metrics
from rados_py.errors import show_name

log = logging.getLogger(__name__)
MAX_BATCH = 512             # transactions per group commit
SPACE_EVERY = 0.5           # seconds a free-space figure is reused by `space()`
DIRECT_MIN = 256 << 10      # block files at least this big are written with O_DIRECT
DIRECT_ALIGN = 4096
MAX_BATCH_BYTES = 32 << 20  # ...and data: bounds the latency a big batch adds to its members
FORMAT_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS colls (cid INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS objects (id INTEGER PRIMARY KEY, cid INTEGER NOT NULL,
    oid BLOB NOT NULL, size INTEGER NOT NULL, version INTEGER NOT NULL, mtime REAL NOT NULL,
    header BLOB NOT NULL, UNIQUE (cid, oid));
CREATE TABLE IF NOT EXISTS blocks (obj INTEGER, idx INTEGER, length INTEGER NOT NULL,
    checksum BLOB NOT NULL, file INTEGER, inline BLOB, PRIMARY KEY (obj, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS xattrs (obj INTEGER, key BLOB, value BLOB NOT NULL,
    PRIMARY KEY (obj, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS omap (obj INTEGER, key BLOB, value BLOB NOT NULL,
    PRIMARY KEY (obj, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pglog (cid INTEGER, seq INTEGER, entry BLOB NOT NULL,
    PRIMARY KEY (cid, seq)) WITHOUT ROWID;
"""

RESERVE_FRACTION = 0.01
RESERVE_MIN, RESERVE_MAX = 4 << 20, 1 << 30
FREEING_OPS = frozenset({"remove", "truncate", "zero", "rmxattr", "omap_rm_keys", "omap_clear",
                         "remove_collection", "log_trim"})
FREEING_MAX_PAYLOAD = 64 * 1024
_DATA_OPS = frozenset({"write", "write_full", "append"})  # op.length is their data's size

Faults = Callable[[str], None]


def payload_bytes(txn: Transaction) -> int:
    """The bytes of new data, keys and values a transaction carries (an estimate of the space
    it takes; copy-on-write of partial blocks and SQLite pages come out of the reserve)."""
    total = 0
    for op in txn.ops:
        total += op.length if op.kind in _DATA_OPS else len(op.data)
        total += sum(len(k) + len(v) for k, v in op.items)
    return total


def frees_space(txn: Transaction, payload: int) -> bool:
    """Whether `txn` may use the reserve: it removes something and adds next to nothing."""
    return payload <= FREEING_MAX_PAYLOAD and any(op.kind in FREEING_OPS for op in txn.ops)


def disk_free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def default_reserve(path: Path) -> int:
    st = os.statvfs(path)
    size = st.f_blocks * st.f_frsize
    return max(RESERVE_MIN, min(RESERVE_MAX, int(size * RESERVE_FRACTION)))


def map_error(exc: BaseException) -> BaseException:
    """Turn disk-full conditions (from the OS or from SQLite) into `StoreFull`."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFull(f"no space left on device: {exc}")
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", 0) == 13:
        return StoreFull(f"no space left for metadata: {exc}")
    return exc


class DurableStore(ObjectStore):
    """The durable `ObjectStore` in directory `path` (see the module docstring for the design).

    `faults`, when given, is called with a point name at each named fault point
    ("store.write_block", "store.after_data_fsync", "store.before_commit", "store.after_commit",
    "store.before_unlink"); tests make it raise or SIGKILL the process. Construction opens the
    store and collects orphan block files, which blocks: from async code use `await open(...)`.

    `reserve_bytes` (default: `default_reserve`) is the free space kept for removals;
    `free_bytes()` says how much the file system has free (statvfs; tests may substitute it).
    """

    def __init__(self, path: str | os.PathLike[str], faults: Faults | None = None, *,
                 reserve_bytes: int | None = None,
                 free_bytes: Callable[[], int] | None = None):
        self.path = Path(path)
        self.data_dir = self.path / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.reserve_bytes = (default_reserve(self.path) if reserve_bytes is None
                              else reserve_bytes)
        self._free_bytes = free_bytes or (lambda: disk_free(self.path))
        self._lock_fd = os.open(self.path / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise InvalidArgument(f"{path}: the store is open in another process") from None
        self._faults = faults
        self.stats = {"txns": 0, "batches": 0, "commits": 0, "file_fsyncs": 0, "dir_fsyncs": 0}
        self._db = str(self.path / "meta.db")
        self._w = self._connect()
        self._w.executescript(_SCHEMA)
        with self._w:
            row = self._w.execute("SELECT value FROM meta WHERE key='format'").fetchone()
            if row is None:
                self._w.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT_VERSION,))
            elif row[0] != FORMAT_VERSION:
                raise InvalidArgument(f"{path}: store format {row[0]}, expected {FORMAT_VERSION}")
        self._next_file = self._collect_orphans() + 1
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="objectstore-commit")
        self._syncers = ThreadPoolExecutor(8, thread_name_prefix="objectstore-sync")
        self._unsynced: dict[int, int] = {}       # block files written, not yet fdatasynced
        self._new_dirs: set[Path] = set()         # directories whose entries need an fsync
        self._files_lock = threading.Lock()       # the sync pool prepares files too
        self._direct = hasattr(os, "O_DIRECT")
        # queued transactions, in submit order: (txn, its prepared block files, its waiter)
        self._pending: list[tuple[Transaction, asyncio.Future[dict[tuple[int, int], int]] | None,
                                  asyncio.Future[None]]] = []
        # committed-state caches of the writer (adopted from each transaction that commits;
        # dropped whole if a batch fails): collection ids, and each PG log's last seq
        self.cid_cache: dict[str, int] = {}
        self.log_heads: dict[int, int | None] = {}
        self.counts: dict[int, list[int]] = {}  # cid -> [objects, bytes], once counted
        self._space = (-SPACE_EVERY, 0)          # (when, free bytes) for space()
        self._committer: asyncio.Task[None] | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike[str], faults: Faults | None = None,
                   **kwargs: Any) -> DurableStore:
        return await asyncio.to_thread(lambda: cls(path, faults, **kwargs))

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._db, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: each COMMIT fsyncs the WAL, so a returned submit survives power loss; group
        # commit makes that one fsync per batch rather than per transaction
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _fault(self, point: str) -> None:
        if self._faults is not None:
            self._faults(point)

    def _file_path(self, fid: int) -> Path:
        return self.data_dir / f"{fid >> 12:x}" / f"{fid:x}"

    def _collect_orphans(self) -> int:
        """Delete block files no committed metadata references; return the highest id seen."""
        referenced = {r[0] for r in self._w.execute(
            "SELECT file FROM blocks WHERE file IS NOT NULL")}
        highest = max(referenced, default=0)
        for d in self.data_dir.iterdir():
            for f in d.iterdir():
                try:
                    fid = int(f.name, 16)
                except ValueError:
                    continue
                highest = max(highest, fid)
                if fid not in referenced:
                    f.unlink()
        return highest

    # -- submit / group commit -----------------------------------------------------------------

    def enqueue(self, txn: Transaction) -> asyncio.Future[None]:
        """Queue `txn` now (transactions commit in the order they are queued); the future is
        done once it is durable (or failed, leaving nothing)."""
        if not isinstance(txn, Transaction):
            raise InvalidArgument("submit takes a Transaction")
        if self._closed:
            raise InvalidArgument("the store is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        blocks = [(i, idx, lo, hi) for i, op in enumerate(txn.ops)
                  for idx, lo, hi in whole_blocks(op)]
        prepared = self._prepare(txn, blocks) if blocks else None
        self._pending.append((txn, prepared, fut))
        if self._committer is None or self._committer.done():
            self._committer = loop.create_task(self._drain(), name="objectstore-commit")
        return fut

    async def submit(self, txn: Transaction) -> None:
        await self.enqueue(txn)

    def _prepare(self, txn: Transaction, blocks: list[tuple[int, int, int, int]]
                 ) -> asyncio.Future[dict[tuple[int, int], int]]:
        """Write (sync pool, one block file per thread) the data that replaces whole blocks,
        as soon as the transaction is queued: big writes then overlap each other and the
        commits, and the writer thread only runs SQLite. Done when every file is durable."""
        loop = asyncio.get_running_loop()
        files = [asyncio.wrap_future(self._syncers.submit(
            self._write_file, txn.ops[i].data[lo:hi], True)) for i, _, lo, hi in blocks]

        async def gather() -> dict[tuple[int, int], int]:
            done = await asyncio.gather(*files, return_exceptions=True)
            failed = [r for r in done if isinstance(r, BaseException)]
            if failed:
                self._discard(r for r in done if isinstance(r, int))
                raise failed[0]
            return {(i, idx): fid for (i, idx, _, _), fid in zip(blocks, done, strict=True)}
        return loop.create_task(gather())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            n, nbytes = 0, 0
            while n < min(MAX_BATCH, len(self._pending)) and (n == 0 or nbytes < MAX_BATCH_BYTES):
                nbytes += sum(op.length for op in self._pending[n][0].ops)
                n += 1
            batch, self._pending = self._pending[:n], self._pending[n:]
            prepared: list[dict[tuple[int, int], int] | BaseException] = []
            for _, prep, _ in batch:
                try:
                    prepared.append(await prep if prep is not None else {})
                except Exception as exc:
                    prepared.append(map_error(exc))
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(
                    self._writer, self._commit_batch, [t for t, _, _ in batch], prepared)
            except BaseException as exc:  # every waiter must hear of it
                results = [exc] * len(batch)
            metrics.observe("store_commit", time.perf_counter() - started)
            metrics.inc("store_transactions", len(batch))
            for (_, _, fut), res in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if res is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(res)

    def _commit_batch(self, txns: list[Transaction],
                      prepared: list[dict[tuple[int, int], int] | BaseException]
                      ) -> list[BaseException | None]:
        """Apply a batch on the writer thread, each in a SAVEPOINT, and COMMIT once."""
        results: list[BaseException | None] = [None] * len(txns)
        new_files: list[int] = []
        freed: list[int] = []
        conn = self._w
        free = self._free_bytes()   # once per batch; the batch's own payload is counted below
        try:
            conn.execute("BEGIN IMMEDIATE")
            for i, txn in enumerate(txns):
                files = prepared[i]
                if isinstance(files, BaseException):
                    results[i] = files
                    continue
                need = payload_bytes(txn)
                if not frees_space(txn, need) and free - need < self.reserve_bytes:
                    results[i] = StoreFull(
                        f"no space left: {max(free, 0)} bytes free under {self.path}, the write "
                        f"needs {need} and {self.reserve_bytes} are kept so that objects can "
                        "still be removed; remove objects or add capacity")
                    self._discard(files.values())
                    continue
                free -= need
                ap = Applier(self, conn, dict(files))
                conn.execute("SAVEPOINT txn")
                try:
                    ap.apply_all(txn.ops)
                    conn.execute("RELEASE txn")
                except Exception as exc:
                    conn.execute("ROLLBACK TO txn")
                    conn.execute("RELEASE txn")
                    self._discard(ap.new_files)
                    self._discard(ap.prepared.values())
                    results[i] = map_error(exc)
                    continue
                self._discard(ap.prepared.values())  # none should be left over
                self._adopt(ap)
                new_files += ap.new_files
                freed += ap.freed
            self._sync_files(new_files)
            self._fault("store.before_commit")
            conn.execute("COMMIT")
            self.stats["commits"] += 1
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self.cid_cache.clear()   # they may hold what this batch did: learn them again
            self.log_heads.clear()
            self.counts.clear()
            self._discard(new_files)
            return [map_error(exc)] * len(txns)
        self.stats["batches"] += 1
        self.stats["txns"] += len(txns)
        self._fault("store.after_commit")
        self._fault("store.before_unlink")
        self._discard(freed)
        if freed:
            self._space = (-SPACE_EVERY, 0)  # space was given back: measure it again
        return results

    def _adopt(self, ap: Applier) -> None:
        for coll, cid in ap.cids.items():
            if cid is None:
                self.cid_cache.pop(coll, None)
            else:
                self.cid_cache[coll] = cid
        for cid, head in ap.log_heads.items():
            if head is None:
                self.log_heads.pop(cid, None)
            else:
                self.log_heads[cid] = head
        for cid in ap.cids.values():
            if cid is not None:
                self.counts[cid] = [0, 0]  # a new collection: nothing in it yet
        if None in ap.cids.values():  # removed ones: forget their counts
            live = set(self.cid_cache.values())
            self.counts = {c: v for c, v in self.counts.items() if c in live}
        for cid, (objects, size) in ap.count_deltas.items():
            counts = self.counts.get(cid)
            if counts is not None:
                counts[0] += objects
                counts[1] += size

    def _discard(self, files: Iterable[int]) -> None:
        files = list(files)
        self._close_files(files)
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                self._file_path(f).unlink()

    def new_file(self, data: Any) -> int:
        """Write `data` to a new block file and return its id (writer thread).

        The file is left open, unsynced: `_sync_files` fdatasyncs all files of a batch together
        (in parallel) before the COMMIT that references them.
        """
        return self._write_file(data, sync=False)

    def _write_file(self, data: Any, sync: bool) -> int:
        """A new block file holding `data`: its id. Unsynced (left in `_unsynced`) or, with
        `sync`, durable and closed (its directory entry is fsynced by the batch's commit)."""
        self._fault("store.write_block")
        with self._files_lock:
            fid = self._next_file
            self._next_file += 1
        path = self._file_path(fid)
        if not path.parent.exists():
            with contextlib.suppress(FileExistsError):
                path.parent.mkdir()
            with self._files_lock:
                self._new_dirs.add(self.data_dir)
        direct = sync and self._direct and len(data) >= DIRECT_MIN
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | (os.O_DIRECT if direct else 0), 0o600)
        except OSError as exc:
            if not direct or exc.errno != errno.EINVAL:
                raise
            self._refuse_direct()
            direct = False
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with self._files_lock:
                self._unsynced[fid] = fd
            if direct and not self._write_direct(fd, data):
                direct = False
                os.close(fd)
                fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
                with self._files_lock:
                    self._unsynced[fid] = fd
            if not direct:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            if sync:
                os.fdatasync(fd)
                self.stats["file_fsyncs"] += 1
                self._fault("store.after_data_fsync")
                with self._files_lock:
                    self._unsynced.pop(fid, None)
                os.close(fd)
        except BaseException:
            self._discard([fid])
            raise
        return fid

    def _refuse_direct(self) -> None:
        if self._direct:
            self._direct = False
            log.info("%s: the file system refuses O_DIRECT: block files go through the page "
                     "cache", self.path)

    def _write_direct(self, fd: int, data: Any) -> bool:
        """Write a whole block file with O_DIRECT from an aligned buffer (padded to the page
        size; the block map keeps the true length): the page cache copy of a buffered write
        costs this machine 1-3 ms of CPU per MiB, the copy into the buffer ~0.3. False when the
        file system refuses O_DIRECT (tmpfs): the caller writes it the ordinary way."""
        buf = getattr(self._local, "direct_buf", None)
        if buf is None:
            buf = self._local.direct_buf = mmap.mmap(-1, BLOCK_SIZE)
        n = len(data)
        padded = -(-n // DIRECT_ALIGN) * DIRECT_ALIGN
        view = memoryview(buf)
        done = 0
        try:
            view[:n] = data
            view[n:padded] = bytes(padded - n)
            done = 0
            while done < padded:
                done += os.write(fd, view[done:padded])
        except OSError as exc:
            if exc.errno != errno.EINVAL or done:
                raise
            self._refuse_direct()
            return False
        finally:
            view.release()
        return True

    def _sync_files(self, files: list[int]) -> None:
        """fdatasync the batch's new block files in parallel, then fsync their directories."""
        fds = [self._unsynced[f] for f in files if f in self._unsynced]
        if fds:
            list(self._syncers.map(os.fdatasync, fds))
            self.stats["file_fsyncs"] += len(fds)
            self._fault("store.after_data_fsync")
        self._close_files(files)
        with self._files_lock:
            dirs = {self._file_path(f).parent for f in files} | self._new_dirs
            self._new_dirs.clear()
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self.stats["dir_fsyncs"] += 1

    def _close_files(self, files: Iterable[int]) -> None:
        for f in files:
            with self._files_lock:
                fd = self._unsynced.pop(f, None)
            if fd is not None:
                os.close(fd)

    def load_block(self, blk: Block, coll: str, oid: bytes, idx: int,
                   into: memoryview | None = None) -> Any:
        """The verified content of a block (into `into` when given); ChecksumError if bad."""
        length, csum, fid, inline = blk
        if fid is None:
            data: Any = inline if inline is not None else b""
            if not isinstance(data, bytes):         # the metadata itself was damaged
                raise checksum_error(coll, oid, idx)
        else:
            data = into if into is not None else bytearray(length)
            with open(self._file_path(fid), "rb", buffering=0) as f:
                got = f.readinto(data)
            if got != length:
                raise checksum_error(coll, oid, idx)
        if len(data) != length or checksum(data) != csum:
            raise checksum_error(coll, oid, idx)
        if into is not None and fid is None:
            into[:] = data
        return data

    # -- reads ---------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            conn.execute("PRAGMA query_only=1")
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _lookup(self, conn: sqlite3.Connection, coll: str, oid: bytes | str
                ) -> tuple[bytes, tuple[Any, ...]]:
        name = name_bytes(oid, "object name")
        row = conn.execute("SELECT o.id, o.size, o.version, o.mtime, o.header FROM objects o "
                           "JOIN colls c ON o.cid = c.cid WHERE c.name = ? AND o.oid = ?",
                           (coll_name(coll), name)).fetchone()
        if row is None:
            if conn.execute("SELECT 1 FROM colls WHERE name=?", (coll,)).fetchone() is None:
                raise NotFound(f"collection {coll} does not exist")
            raise NotFound(f"object {show_name(name)} does not exist in {coll}")
        return name, row

    async def _q(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._closed:
            raise InvalidArgument("the store is closed")
        return await asyncio.to_thread(fn, *args)

    def _read(self, coll: str, oid: bytes | str, offset: int, length: int | None,
              inline_only: bool = False) -> tuple[ObjectStat, bytearray] | None:
        """The object's stat and data in [offset, offset+length), read in one read
        transaction. `inline_only`: None when some block of the range lives in a file (the
        caller then reads on a thread: file I/O never runs on the event loop)."""
        if not isinstance(offset, int) or offset < 0 or (length is not None and (
                not isinstance(length, int) or length < 0)):
            raise InvalidArgument(f"bad offset/length {offset!r}/{length!r}")
        conn = self._reader()
        for _ in range(5):
            conn.execute("BEGIN")
            try:
                name, row = self._lookup(conn, coll, oid)
                size = row[1]
                end = size if length is None else min(size, offset + length)
                blocks = [] if offset >= end else conn.execute(
                    "SELECT idx, length, checksum, file, inline FROM blocks WHERE obj=? "
                    "AND idx BETWEEN ? AND ? ORDER BY idx",
                    (row[0], offset // BLOCK_SIZE, (end - 1) // BLOCK_SIZE)).fetchall()
            finally:
                conn.execute("COMMIT")
            st = ObjectStat(row[1], row[2], row[3])
            if offset >= end:
                return st, bytearray()
            if inline_only and any(b[3] is not None for b in blocks):
                return None
            out = bytearray(end - offset)
            view = memoryview(out)
            try:
                for idx, blen, csum, fid, inline in blocks:
                    bstart = idx * BLOCK_SIZE
                    lo, hi = max(offset, bstart), min(end, bstart + blen)
                    if lo >= hi:
                        continue
                    blk = (blen, csum, fid, inline)
                    if lo == bstart and hi == bstart + blen:      # whole block: read in place
                        self.load_block(blk, coll, name, idx, view[lo - offset:hi - offset])
                    else:
                        data = self.load_block(blk, coll, name, idx)
                        out[lo - offset:hi - offset] = data[lo - bstart:hi - bstart]
            except FileNotFoundError:
                continue            # a concurrent commit replaced a block: read the new map
            return st, out
        raise checksum_error(coll, name_bytes(oid), -1)

    async def read_with_stat(self, coll: str, oid: bytes | str, offset: int = 0,
                             length: int | None = None) -> tuple[ObjectStat, bytearray]:
        # small objects (inline blocks) are answered on the caller's thread in one read
        # transaction, as stat is: no hop through the thread pool for a 4 KiB read
        if self._closed:
            raise InvalidArgument("the store is closed")
        got = self._read(coll, oid, offset, length, inline_only=True)
        if got is None:
            got = await self._q(self._read, coll, oid, offset, length)
        assert got is not None
        return got

    async def read(self, coll: str, oid: bytes | str, offset: int = 0,
                   length: int | None = None) -> bytearray:
        return (await self.read_with_stat(coll, oid, offset, length))[1]

    async def stat(self, coll: str, oid: bytes | str) -> ObjectStat:
        # one indexed row: answered on the caller's thread (a WAL reader never waits for the
        # writer), sparing every op a round trip through the thread pool
        if self._closed:
            raise InvalidArgument("the store is closed")
        row = self._lookup(self._reader(), coll, oid)[1]
        return ObjectStat(row[1], row[2], row[3])

    async def getxattr(self, coll: str, oid: bytes | str, name: bytes | str) -> bytes:
        def go() -> bytes:
            conn = self._reader()
            oname, row = self._lookup(conn, coll, oid)
            key = name_bytes(name, "xattr name")
            got = conn.execute("SELECT value FROM xattrs WHERE obj=? AND key=?",
                               (row[0], key)).fetchone()
            if got is None:
                raise NotFound(f"xattr {show_name(key)} of {show_name(oname)} is not set")
            return got[0]
        return await self._q(go)

    async def getxattrs(self, coll: str, oid: bytes | str) -> dict[bytes, bytes]:
        def go() -> dict[bytes, bytes]:
            conn = self._reader()
            obj = self._lookup(conn, coll, oid)[1][0]
            return dict(conn.execute("SELECT key, value FROM xattrs WHERE obj=? ORDER BY key",
                                     (obj,)))
        return await self._q(go)

    async def omap_get(self, coll: str, oid: bytes | str,
                       keys: Iterable[bytes | str]) -> dict[bytes, bytes]:
        wanted = [name_bytes(k, "omap key") for k in keys]

        def go() -> dict[bytes, bytes]:
            conn = self._reader()
            obj = self._lookup(conn, coll, oid)[1][0]
            out = {}
            for k in wanted:
                got = conn.execute("SELECT value FROM omap WHERE obj=? AND key=?",
                                   (obj, k)).fetchone()
                if got is not None:
                    out[k] = got[0]
            return out
        return await self._q(go)

    async def omap_list(self, coll: str, oid: bytes | str, after: bytes | str = b"",
                        prefix: bytes | str = b"", max_items: int = 1000
                        ) -> tuple[list[tuple[bytes, bytes]], bool]:
        check_page(max_items)
        after_b = name_bytes(after, "after") if after else b""
        prefix_b = name_bytes(prefix, "prefix") if prefix else b""

        def go() -> tuple[list[tuple[bytes, bytes]], bool]:
            conn = self._reader()
            obj = self._lookup(conn, coll, oid)[1][0]
            start = max(after_b, prefix_b)
            op = ">" if start == after_b else ">="
            rows = []
            for k, v in conn.execute(f"SELECT key, value FROM omap WHERE obj=? AND key {op} ? "
                                     "ORDER BY key", (obj, start)):
                if not k.startswith(prefix_b) or len(rows) > max_items:
                    break
                rows.append((k, v))
            return rows[:max_items], len(rows) > max_items
        return await self._q(go)

    async def omap_get_header(self, coll: str, oid: bytes | str) -> bytes:
        return await self._q(lambda: self._lookup(self._reader(), coll, oid)[1][4])

    async def list_objects(self, coll: str, after: bytes | str = b"",
                           max_items: int = 1000) -> tuple[list[bytes], bool]:
        check_page(max_items)
        after_b = name_bytes(after, "after") if after else b""

        def go() -> tuple[list[bytes], bool]:
            conn = self._reader()
            cid = cid_of(conn, coll)
            rows = [r[0] for r in conn.execute(
                "SELECT oid FROM objects WHERE cid=? AND oid > ? ORDER BY oid LIMIT ?",
                (cid, after_b, max_items + 1))]
            return rows[:max_items], len(rows) > max_items
        return await self._q(go)

    async def list_versions(self, coll: str, after: bytes | str = b"", max_items: int = 1000
                            ) -> tuple[list[tuple[bytes, int, int]], bool]:
        check_page(max_items)
        after_b = name_bytes(after, "after") if after else b""

        def go() -> tuple[list[tuple[bytes, int, int]], bool]:
            conn = self._reader()
            cid = cid_of(conn, coll)
            rows = [tuple(r) for r in conn.execute(
                "SELECT oid, version, size FROM objects WHERE cid=? AND oid > ? ORDER BY oid "
                "LIMIT ?", (cid, after_b, max_items + 1))]
            return rows[:max_items], len(rows) > max_items
        return await self._q(go)

    async def coll_stats(self, coll: str) -> tuple[int, int]:
        # counted once (on the writer thread, between commits), then kept by every commit:
        # the beacon asks for every PG every few seconds
        if self._closed:
            raise InvalidArgument("the store is closed")
        cid = self.cid_cache.get(coll)
        if cid is not None and cid in self.counts:
            objects, size = self.counts[cid]
            return objects, size

        def go() -> tuple[int, int]:
            cid = cid_of(self._w, coll)
            n, size = self._w.execute("SELECT count(*), coalesce(sum(size), 0) FROM objects "
                                      "WHERE cid=?", (cid,)).fetchone()
            self.counts[cid] = [n, size]
            self.cid_cache.setdefault(coll, cid)
            return n, size
        return await asyncio.get_running_loop().run_in_executor(self._writer, go)

    async def list_collections(self) -> list[str]:
        return await self._q(lambda: [r[0] for r in self._reader().execute(
            "SELECT name FROM colls ORDER BY name")])

    async def log_read(self, coll: str, after: int = 0,
                       max_items: int = 1000) -> list[tuple[int, bytes]]:
        check_page(max_items)

        def go() -> list[tuple[int, bytes]]:
            conn = self._reader()
            cid = cid_of(conn, coll)
            return [tuple(r) for r in conn.execute(
                "SELECT seq, entry FROM pglog WHERE cid=? AND seq > ? ORDER BY seq LIMIT ?",
                (cid, after, max_items))]
        return await self._q(go)

    def space(self) -> tuple[int, int] | None:
        # asked for every write (will it fit everywhere?): statvfs at most every SPACE_EVERY
        now = time.monotonic()
        if now - self._space[0] > SPACE_EVERY:
            self._space = (now, disk_free(self.path))
        return self._space[1], self.reserve_bytes

    async def close(self) -> None:
        if self._closed:
            return
        while self._committer is not None and not self._committer.done():
            await self._committer
        self._closed = True
        self._writer.shutdown(wait=True)
        self._syncers.shutdown(wait=True)
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self._w.close()
        os.close(self._lock_fd)


__all__ = ["INLINE_MAX", "DurableStore", "default_reserve", "frees_space", "map_error",
           "payload_bytes"]
