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
Block = tuple[int, bytes, int | None, bytes | None]     # length, checksum, file, inline


def checksum(data: Any) -> bytes:
    """xxh3-64 of a block: fast enough (tens of GB/s) to verify on every read."""
    return xxhash.xxh3_64_digest(data)


def cid_of(conn: sqlite3.Connection, coll: str) -> int:
    row = conn.execute("SELECT cid FROM colls WHERE name=?", (coll_name(coll),)).fetchone()
    if row is None:
        raise NotFound(f"collection {coll} does not exist")
    return row[0]


class Applier:
    """Applies the ops of one transaction to the writer connection (inside its SAVEPOINT).

    `new_files` are the block files it wrote (deleted if it rolls back), `freed` the files its
    new block map no longer references (deleted after the COMMIT).
    """

    def __init__(self, store: DurableStore, conn: sqlite3.Connection):
        self.s, self.c = store, conn
        self.now = time.time()
        self.new_files: list[int] = []
        self.freed: list[int] = []

    def apply(self, op: Op) -> None:
        k, c = op.kind, self.c
        if k == "create_collection":
            if c.execute("SELECT 1 FROM colls WHERE name=?", (op.coll,)).fetchone():
                raise AlreadyExists(f"collection {op.coll} exists")
            c.execute("INSERT INTO colls (name) VALUES (?)", (op.coll,))
            return
        cid = cid_of(c, op.coll)
        if k == "remove_collection":
            objs = " IN (SELECT id FROM objects WHERE cid=?)"
            self.freed += [r[0] for r in c.execute(
                "SELECT file FROM blocks WHERE file IS NOT NULL AND obj" + objs, (cid,))]
            for table in ("blocks", "xattrs", "omap"):
                c.execute(f"DELETE FROM {table} WHERE obj" + objs, (cid,))
            c.execute("DELETE FROM objects WHERE cid=?", (cid,))
            c.execute("DELETE FROM pglog WHERE cid=?", (cid,))
            c.execute("DELETE FROM colls WHERE cid=?", (cid,))
            return
        if k == "log_append":
            last = c.execute("SELECT max(seq) FROM pglog WHERE cid=?", (cid,)).fetchone()[0]
            if last is not None and op.offset <= last:
                raise InvalidArgument(f"log seq {op.offset} is not above {last}")
            c.execute("INSERT INTO pglog VALUES (?, ?, ?)", (cid, op.offset, op.data))
            return
        if k == "log_trim":
            c.execute("DELETE FROM pglog WHERE cid=? AND seq <= ?", (cid, op.offset))
            return
        if k == "log_rollback":
            c.execute("DELETE FROM pglog WHERE cid=? AND seq > ?", (cid, op.offset))
            return
        row = c.execute("SELECT id, size FROM objects WHERE cid=? AND oid=?",
                        (cid, op.oid)).fetchone()
        if row is None:
            if k not in CREATING_OPS:
                raise NotFound(f"object {show_name(op.oid)} does not exist in {op.coll}")
            cur = c.execute("INSERT INTO objects (cid, oid, size, version, mtime, header) "
                            "VALUES (?, ?, 0, 0, ?, x'')", (cid, op.oid, self.now))
            row = (cur.lastrowid, 0)
        obj, size = row
        if k == "remove":
            self._drop_blocks(obj, 0)
            for table in ("xattrs", "omap"):
                c.execute(f"DELETE FROM {table} WHERE obj=?", (obj,))
            c.execute("DELETE FROM objects WHERE id=?", (obj,))
            return
        new_size = size
        if k == "write":
            new_size = self._write(op, obj, size, op.offset)
        elif k == "append":
            new_size = self._write(op, obj, size, size)
        elif k == "write_full":
            self._drop_blocks(obj, 0)
            new_size = self._write(op, obj, 0, 0)
        elif k == "truncate":
            new_size = self._truncate(op, obj, size, op.offset)
        elif k == "zero":
            self._zero(op, obj, size)
        elif k == "set_version":
            c.execute("UPDATE objects SET version=? WHERE id=?", (op.offset, obj))
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
        c.execute("UPDATE objects SET size=?, mtime=? WHERE id=?", (new_size, self.now, obj))

    def _block(self, obj: int, idx: int) -> Block | None:
        return self.c.execute("SELECT length, checksum, file, inline FROM blocks "
                              "WHERE obj=? AND idx=?", (obj, idx)).fetchone()

    def _put(self, obj: int, idx: int, content: Any, old: Block | None) -> None:
        if old is not None and old[2] is not None:
            self.freed.append(old[2])
        if len(content) == 0:
            self.c.execute("DELETE FROM blocks WHERE obj=? AND idx=?", (obj, idx))
            return
        csum = checksum(content)
        if len(content) <= INLINE_MAX:
            self.c.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, NULL, ?)",
                           (obj, idx, len(content), csum, bytes(content)))
        else:
            fid = self.s.new_file(content)
            self.new_files.append(fid)
            self.c.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?, NULL)",
                           (obj, idx, len(content), csum, fid))

    def _drop_blocks(self, obj: int, from_idx: int) -> None:
        self.freed += [r[0] for r in self.c.execute(
            "SELECT file FROM blocks WHERE obj=? AND idx>=? AND file IS NOT NULL",
            (obj, from_idx))]
        self.c.execute("DELETE FROM blocks WHERE obj=? AND idx>=?", (obj, from_idx))

    def _write(self, op: Op, obj: int, size: int, offset: int) -> int:
        data: memoryview = op.data
        end = offset + len(data)
        pos = offset
        while pos < end:
            idx = pos // BLOCK_SIZE
            bstart = idx * BLOCK_SIZE
            s, e = pos - bstart, min(end - bstart, BLOCK_SIZE)
            piece = data[pos - offset:pos - offset + e - s]
            old = self._block(obj, idx)
            if s == 0 and (old is None or e >= old[0]):
                content: Any = piece                       # replaces the whole stored block
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
