"""How `DurableStore` applies one transaction's ops to SQLite and to its block files.

Object data is a map (object, block index) -> block, a block being at most `BLOCK_SIZE` bytes
with an xxh3-64 checksum, stored inline in SQLite when small (<= `INLINE_MAX`) and otherwise in
an immutable file. Writes copy-on-write only the blocks they touch; a block absent from the map
is a hole (zeros); a block's stored length never reaches past the object's size, so growing an
object (truncate up, write past the end) exposes zeros without writing them.

Trade-off, on purpose: a small write into a block bigger than `INLINE_MAX` rewrites that block
(up to 1 MiB) into a new file; in exchange no file is ever modified in place, which is what makes
crash consistency a matter of one SQLite commit.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING, Any

import xxhash

from osd.objectstore_api import (
    BLOCK_SIZE,
    CREATING_OPS,
    AlreadyExists,
    InvalidArgument,
    NotFound,
    Op,
    coll_name,
)
from rados_py.errors import show_name

if TYPE_CHECKING:
    from osd.objectstore_durable import DurableStore

INLINE_MAX = 64 * 1024      # blocks up to this size are stored in SQLite, not in files


def whole_blocks(op: Op) -> list[tuple[int, int, int]]:
    """(block index, start, end) of the data of `op` that replaces whole stored blocks whatever
    the object holds (every block of a write_full, full-size blocks of a write), and that is
    too big to be inline: these can be written to their files before the commit."""
    if op.kind == "write_full":
        offset = 0
    elif op.kind == "write":
        offset = op.offset
    else:
        return []
    out = []
    end = offset + op.length
    pos = offset
    while pos < end:
        idx = pos // BLOCK_SIZE
        bstart = idx * BLOCK_SIZE
        s, e = pos - bstart, min(end - bstart, BLOCK_SIZE)
        whole = op.kind == "write_full" or (s == 0 and e == BLOCK_SIZE)
        if whole and e - s > INLINE_MAX:
            out.append((idx, pos - offset, pos - offset + e - s))
        pos = bstart + e
    return out
Block = tuple[int, bytes, int | None, bytes | None]     # length, checksum, file, inline


def checksum(data: Any) -> bytes:
    """xxh3-64 of a block: fast enough (tens of GB/s) to verify on every read."""
    return xxhash.xxh3_64_digest(data)


def cid_of(conn: sqlite3.Connection, coll: str) -> int:
    row = conn.execute("SELECT cid FROM colls WHERE name=?", (coll_name(coll),)).fetchone()
    if row is None:
        raise NotFound(f"collection {coll} does not exist")
    return row[0]


class _Row:
    """An object's row as the transaction sees it; written back once, at the end."""

    __slots__ = ("dirty", "id", "size", "version")

    def __init__(self, obj_id: int, size: int, version: int) -> None:
        self.id, self.size, self.version, self.dirty = obj_id, size, version, False


class Applier:
    """Applies the ops of one transaction to the writer connection (inside its SAVEPOINT).

    `new_files` are the block files it wrote (deleted if it rolls back), `freed` the files its
    new block map no longer references (deleted after the COMMIT). To keep a small write to a
    handful of statements, each object's row (size, version) is read once and written once
    (`finish`), collection ids and PG-log heads come from the store's caches, and the changes
    it makes to those caches (`cids`, `log_heads`) are adopted by the store only once the
    batch commits.
    """

    def __init__(self, store: DurableStore, conn: sqlite3.Connection,
                 prepared: dict[tuple[int, int], int] | None = None):
        self.s, self.c = store, conn
        self.now = time.time()
        self.new_files: list[int] = []
        self.freed: list[int] = []
        self.prepared = prepared or {}  # (op index, block index) -> a file written already
        self.cids: dict[str, int | None] = {}          # collections created (id) / removed
        self.log_heads: dict[int, int | None] = {}     # cid -> last log seq (None: unknown)
        self._rows: dict[tuple[int, bytes], _Row] = {}
        self._op_index = 0
        self.count_deltas: dict[int, list[int]] = {}   # cid -> [objects, bytes] changed

    def _count(self, cid: int, objects: int, size: int) -> None:
        delta = self.count_deltas.setdefault(cid, [0, 0])
        delta[0] += objects
        delta[1] += size

    def cid(self, coll: str) -> int:
        if coll in self.cids:
            cid = self.cids[coll]
        else:
            cid = self.s.cid_cache.get(coll)
            if cid is None:
                cid = cid_of(self.c, coll)
                self.s.cid_cache[coll] = cid  # exists in committed state: safe to keep
        if cid is None:
            raise NotFound(f"collection {coll} does not exist")
        return cid

    def _log_head(self, cid: int) -> int | None:
        if cid in self.log_heads:
            return self.log_heads[cid]
        if cid in self.s.log_heads:
            return self.s.log_heads[cid]
        last = self.c.execute("SELECT max(seq) FROM pglog WHERE cid=?", (cid,)).fetchone()[0]
        self.s.log_heads[cid] = last
        return last

    def apply_all(self, ops: list[Op]) -> None:
        for i, op in enumerate(ops):
            self._op_index = i
            self.apply(op)
        self.finish()

    def finish(self) -> None:
        """Write back every object row the transaction changed (one UPDATE each)."""
        for row in self._rows.values():
            if row.dirty:
                self.c.execute("UPDATE objects SET size=?, version=?, mtime=? WHERE id=?",
                               (row.size, row.version, self.now, row.id))
        self._rows.clear()

    def apply(self, op: Op) -> None:
        k, c = op.kind, self.c
        if k == "create_collection":
            known = self.cids.get(op.coll, self.s.cid_cache.get(op.coll))
            if known is not None or (op.coll not in self.cids and c.execute(
                    "SELECT 1 FROM colls WHERE name=?", (op.coll,)).fetchone()):
                raise AlreadyExists(f"collection {op.coll} exists")
            cur = c.execute("INSERT INTO colls (name) VALUES (?)", (op.coll,))
            self.cids[op.coll] = cur.lastrowid
            self.log_heads[cur.lastrowid] = None
            return
        cid = self.cid(op.coll)
        if k == "remove_collection":
            self.finish()
            objs = " IN (SELECT id FROM objects WHERE cid=?)"
            self.freed += [r[0] for r in c.execute(
                "SELECT file FROM blocks WHERE file IS NOT NULL AND obj" + objs, (cid,))]
            for table in ("blocks", "xattrs", "omap"):
                c.execute(f"DELETE FROM {table} WHERE obj" + objs, (cid,))
            c.execute("DELETE FROM objects WHERE cid=?", (cid,))
            c.execute("DELETE FROM pglog WHERE cid=?", (cid,))
            c.execute("DELETE FROM colls WHERE cid=?", (cid,))
            self.cids[op.coll] = None
            self.log_heads[cid] = None
            return
        if k == "log_append":
            last = self._log_head(cid)
            if last is not None and op.offset <= last:
                raise InvalidArgument(f"log seq {op.offset} is not above {last}")
            if op.after is not None and last is not None and last != op.after:
                raise InvalidArgument(f"log seq {op.offset} follows {op.after}, the log ends "
                                      f"at {last}")
            c.execute("INSERT INTO pglog VALUES (?, ?, ?)", (cid, op.offset, op.data))
            self.log_heads[cid] = op.offset
            return
        if k == "log_trim":
            c.execute("DELETE FROM pglog WHERE cid=? AND seq <= ?", (cid, op.offset))
            head = self._log_head(cid)
            if head is not None and head <= op.offset:
                self.log_heads[cid] = None  # emptied: the next append may start anywhere
            return
        if k == "log_rollback":
            c.execute("DELETE FROM pglog WHERE cid=? AND seq > ?", (cid, op.offset))
            head = self._log_head(cid)
            if head is not None and head > op.offset:
                self.log_heads[cid] = c.execute("SELECT max(seq) FROM pglog WHERE cid=?",
                                                (cid,)).fetchone()[0]
            return
        key = (cid, op.oid)
        row = self._rows.get(key)
        if row is None:
            found = c.execute("SELECT id, size, version FROM objects WHERE cid=? AND oid=?",
                              key).fetchone()
            if found is None:
                if k not in CREATING_OPS:
                    raise NotFound(f"object {show_name(op.oid)} does not exist in {op.coll}")
                cur = c.execute("INSERT INTO objects (cid, oid, size, version, mtime, header) "
                                "VALUES (?, ?, 0, 0, ?, x'')", (cid, op.oid, self.now))
                row = _Row(cur.lastrowid, 0, 0)
                self._count(cid, 1, 0)
            else:
                row = _Row(*found)
            self._rows[key] = row
        obj, size = row.id, row.size
        if k == "remove":
            self._drop_blocks(obj, 0)
            for table in ("xattrs", "omap"):
                c.execute(f"DELETE FROM {table} WHERE obj=?", (obj,))
            c.execute("DELETE FROM objects WHERE id=?", (obj,))
            del self._rows[key]
            self._count(cid, -1, -size)
            return
        new_size = size
        if k == "write":
            new_size = self._write(op, obj, size, op.offset)
        elif k == "append":
            new_size = self._write(op, obj, size, size)
        elif k == "write_full":
            self._drop_blocks(obj, 0)
            new_size = self._write(op, obj, 0, 0, fresh=True)
        elif k == "truncate":
            new_size = self._truncate(op, obj, size, op.offset)
        elif k == "zero":
            self._zero(op, obj, size)
        elif k == "set_version":
            row.version = op.offset
        elif k == "setxattr":
            c.executemany("INSERT OR REPLACE INTO xattrs VALUES (?, ?, ?)",
                          [(obj, key, v) for key, v in op.items])
        elif k == "rmxattr":
            if c.execute("DELETE FROM xattrs WHERE obj=? AND key=?",
                         (obj, op.keys[0])).rowcount == 0:
                raise NotFound(f"xattr {show_name(op.keys[0])} of {show_name(op.oid)} is not set")
        elif k == "omap_set":
            c.executemany("INSERT OR REPLACE INTO omap VALUES (?, ?, ?)",
                          [(obj, key, v) for key, v in op.items])
        elif k == "omap_rm_keys":
            c.executemany("DELETE FROM omap WHERE obj=? AND key=?", [(obj, key) for key in op.keys])
        elif k == "omap_clear":
            c.execute("DELETE FROM omap WHERE obj=?", (obj,))
        elif k == "omap_set_header":
            c.execute("UPDATE objects SET header=? WHERE id=?", (op.data, obj))
        elif k != "touch":
            raise InvalidArgument(f"unknown op {k}")
        if new_size != size:
            self._count(cid, 0, new_size - size)
        row.size = new_size
        row.dirty = True

    def _block(self, obj: int, idx: int) -> Block | None:
        return self.c.execute("SELECT length, checksum, file, inline FROM blocks "
                              "WHERE obj=? AND idx=?", (obj, idx)).fetchone()

    def _put(self, obj: int, idx: int, content: Any, old: Block | None,
             fid: int | None = None) -> None:
        """Store a block's content; `fid`: a file already holding exactly it (prepared)."""
        if old is not None and old[2] is not None:
            self.freed.append(old[2])
        if len(content) == 0:
            if old is not None:
                self.c.execute("DELETE FROM blocks WHERE obj=? AND idx=?", (obj, idx))
            return
        csum = checksum(content)
        if len(content) <= INLINE_MAX:
            self.c.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, NULL, ?)",
                           (obj, idx, len(content), csum, bytes(content)))
        else:
            if fid is None:
                fid = self.s.new_file(content)
            self.new_files.append(fid)
            self.c.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?, NULL)",
                           (obj, idx, len(content), csum, fid))

    def _drop_blocks(self, obj: int, from_idx: int) -> None:
        self.freed += [r[0] for r in self.c.execute(
            "SELECT file FROM blocks WHERE obj=? AND idx>=? AND file IS NOT NULL",
            (obj, from_idx))]
        self.c.execute("DELETE FROM blocks WHERE obj=? AND idx>=?", (obj, from_idx))

    def _write(self, op: Op, obj: int, size: int, offset: int, fresh: bool = False) -> int:
        """Write op.data at offset; `fresh`: the object has no blocks (write_full)."""
        data: memoryview = op.data
        end = offset + len(data)
        pos = offset
        while pos < end:
            idx = pos // BLOCK_SIZE
            bstart = idx * BLOCK_SIZE
            s, e = pos - bstart, min(end - bstart, BLOCK_SIZE)
            piece = data[pos - offset:pos - offset + e - s]
            old = None if fresh else self._block(obj, idx)
            if s == 0 and (old is None or e >= old[0]):
                # replaces the whole stored block (maybe with a file written before the commit)
                self._put(obj, idx, piece, old, self.prepared.pop((self._op_index, idx), None))
            else:
                content = bytearray(self.s.load_block(old, op.coll, op.oid, idx)
                                    if old is not None else b"")
                if len(content) < s:
                    content.extend(bytes(s - len(content)))
                content[s:e] = piece
                self._put(obj, idx, content, old)
            pos = bstart + e
        return max(size, end)

    def _truncate(self, op: Op, obj: int, size: int, new_size: int) -> int:
        if new_size >= size:
            return new_size                 # the new tail is a hole: reads as zeros
        keep_whole = -(-new_size // BLOCK_SIZE)
        tail = new_size % BLOCK_SIZE
        if tail:
            keep_whole -= 1
            old = self._block(obj, keep_whole)
            if old is not None and old[0] > tail:
                data = self.s.load_block(old, op.coll, op.oid, keep_whole)
                self._put(obj, keep_whole, bytes(data[:tail]), old)
            keep_whole += 1
        self._drop_blocks(obj, keep_whole)
        return new_size

    def _zero(self, op: Op, obj: int, size: int) -> None:
        end = min(op.offset + op.length, size)
        pos = op.offset
        while pos < end:
            idx = pos // BLOCK_SIZE
            bstart = idx * BLOCK_SIZE
            s, e = pos - bstart, min(end - bstart, BLOCK_SIZE)
            old = self._block(obj, idx)
            if old is not None and s < old[0]:
                if s == 0 and e >= old[0]:
                    self._put(obj, idx, b"", old)           # all stored bytes zeroed: a hole
                else:
                    data = bytearray(self.s.load_block(old, op.coll, op.oid, idx))
                    hi = min(e, len(data))
                    data[s:hi] = bytes(hi - s)
                    self._put(obj, idx, data, old)
            pos = bstart + e
