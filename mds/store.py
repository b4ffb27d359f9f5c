"""The MDS's RADOS side: loading metadata into the cache, applying journaled changes to the
directory and anchor objects (lazily, in the background), purging the data of removed files.

Every journaled change is kept in an overlay until it is applied, so a load never returns
something older than the journal: the cache may drop anything at any time. Application takes
the committed events in journal order, reduces them to the last value of each key, writes one
compound op per object, then the journal can be trimmed up to the last applied event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import deque
from dataclasses import dataclass

from mds import layout
from mds.journal import Position
from rados_py.errors import AlreadyExists, NotFound
from rados_py.proto.loligo import mds_pb2
from rados_py.rados import CompareFailed, IoCtx, ObjectOp

log = logging.getLogger(__name__)
PAGE = 1000
PARALLEL = 16
INO_BATCH = 16384  # inode numbers reserved per RADOS write


@dataclass
class _Event:
    seq: int
    mutations: list[mds_pb2.ObjMutation]
    purges: list[mds_pb2.Purge]
    pos: Position | None = None  # set once durable in the journal


class Store:
    def __init__(self, meta: IoCtx, data: IoCtx) -> None:
        self.meta = meta
        self.data = data
        self.overlay: dict[bytes, dict[bytes, tuple[bytes | None, int]]] = {}
        self.removed: dict[bytes, int] = {}
        self.events: deque[_Event] = deque()
        self._uncommitted: dict[int, _Event] = {}
        self.seq = 0
        self.generation = 0  # bumped when an application completes
        self._flush_lock = asyncio.Lock()
        self.purged_objects = 0

    # --- recording ------------------------------------------------------------------------
    def record(self, mutations: list[mds_pb2.ObjMutation], purges: list[mds_pb2.Purge]
               ) -> int:
        self.seq += 1
        for m in mutations:
            if m.remove:
                self.removed[m.object] = self.seq
                self.overlay.pop(m.object, None)
                continue
            keys = self.overlay.setdefault(m.object, {})
            for kv in m.set:
                keys[kv.key] = (kv.value, self.seq)
            for key in m.rm:
                keys[key] = (None, self.seq)
        event = _Event(self.seq, list(mutations), list(purges))
        self.events.append(event)
        self._uncommitted[self.seq] = event
        return self.seq

    def committed(self, seq: int, pos: Position) -> None:
        """Event `seq` is durable in the journal, ending at `pos`: it may be applied."""
        event = self._uncommitted.pop(seq, None)
        if event is not None:
            event.pos = pos

    @property
    def waiting(self) -> int:
        return len(self.events)

    # --- loading --------------------------------------------------------------------------
    def _overlaid(self, obj: bytes, key: bytes) -> tuple[bool, bytes | None]:
        if obj in self.removed:
            return True, None
        found = self.overlay.get(obj, {}).get(key)
        return (True, found[0]) if found is not None else (False, None)

    async def _get(self, obj: bytes, key: bytes) -> bytes | None:
        while True:
            gen = self.generation
            known, value = self._overlaid(obj, key)
            if known:
                return value
            try:
                got = await self.meta.omap_get(obj, [key])
            except NotFound:
                got = {}
            known, value = self._overlaid(obj, key)
            if known:
                return value
            if gen == self.generation:
                return got.get(key)

    async def load_dentry(self, parent: int, name: bytes) -> mds_pb2.Dentry | None:
        raw = await self._get(layout.dir_object(parent), name)
        return None if raw is None else mds_pb2.Dentry.FromString(raw)

    async def load_anchor(self, ino: int) -> mds_pb2.Anchor | None:
        raw = await self._get(layout.anchor_object(ino), layout.anchor_key(ino))
        return None if raw is None else mds_pb2.Anchor.FromString(raw)

    async def load_page(self, ino: int, after: bytes, limit: int
                        ) -> tuple[list[tuple[bytes, mds_pb2.Dentry]], bool]:
        """Up to `limit` entries of a directory after `after`, in name order, as RADOS and the
        journal not yet applied say; and whether more follow (a page is read, never the
        whole directory)."""
        obj = layout.dir_object(ino)
        while True:
            gen = self.generation
            if obj in self.removed:
                return [], False
            try:
                page, more = await self.meta.omap_list(obj, after, max_items=limit)
            except NotFound:
                page, more = [], False
            if gen != self.generation:
                continue  # an application completed meanwhile: the overlay moved
            if obj in self.removed:
                return [], False
            bound = page[-1][0] if more and page else None  # the page covers (after, bound]
            merged: dict[bytes, bytes | None] = dict(page)
            for key, (value, _) in self.overlay.get(obj, {}).items():
                if key > after and (bound is None or key <= bound):
                    merged[key] = value
            live = sorted((k, v) for k, v in merged.items() if v is not None)
            if len(live) > limit:
                live, more = live[:limit], True
            if not live and more:
                after = bound or after  # every entry of this page is gone: the next one
                continue
            return [(k, mds_pb2.Dentry.FromString(v)) for k, v in live], more

    async def is_empty(self, ino: int) -> bool:
        """Whether a directory has no entries (RADOS and the journal not yet applied)."""
        obj = layout.dir_object(ino)
        while True:
            gen = self.generation
            if obj in self.removed:
                return True
            keys = self.overlay.get(obj, {})
            if any(v is not None for v, _ in keys.values()):
                return False
            after, empty = b"", True
            while empty:
                try:
                    page, more = await self.meta.omap_list(obj, after, max_items=PAGE)
                except NotFound:
                    break
                if any(keys.get(k, (b"", 0))[0] is not None for k, _ in page):
                    empty = False
                if not more or not page:
                    break
                after = page[-1][0]
            if gen == self.generation:
                return empty

    async def list_strays(self) -> list[int]:
        out: list[int] = []
        after = b""
        while True:
            try:
                page, more = await self.meta.omap_list(layout.STRAY, after, max_items=PAGE)
            except NotFound:
                break
            out += [int(k, 16) for k, _ in page]
            if not more or not page:
                break
            after = page[-1][0]
        keys = self.overlay.get(layout.STRAY, {})
        live = {int(k, 16) for k, (v, _) in keys.items() if v is not None}
        dead = {int(k, 16) for k, (v, _) in keys.items() if v is None}
        return sorted((set(out) | live) - dead)

    # --- inode numbers --------------------------------------------------------------------
    async def reserve_inos(self, next_ino: int) -> tuple[int, int]:
        """Reserve a range of inode numbers in RADOS before handing any out: (first, high).
        Numbers are never reused, also after a crash (the reservation is durable first)."""
        while True:
            try:
                res = await self.meta.operate(layout.INOTABLE, ObjectOp().read().stat())
                stored = struct.unpack(">Q", res[0].data)[0] if len(res[0].data) == 8 else 0
                version = res[1].version
            except NotFound:
                stored, version = 0, None
            first = max(stored, next_ino, layout.FIRST_INO)
            high = first + INO_BATCH
            op = ObjectOp()
            if version is None:
                op.create(exclusive=True)
            else:
                op.assert_version(version)
            op.write_full(struct.pack(">Q", high))
            try:
                await self.meta.operate(layout.INOTABLE, op)
            except (CompareFailed, AlreadyExists):
                continue  # another writer came between: read again
            return first, high

    # --- applying -------------------------------------------------------------------------
    async def flush(self) -> Position | None:
        """Apply every committed event (in order) to RADOS; the journal position they end at
        (None when there was nothing)."""
        async with self._flush_lock:
            batch: list[_Event] = []
            for e in self.events:
                if e.pos is None:
                    break
                batch.append(e)
            if not batch:
                return None
            net: dict[bytes, dict[bytes, bytes | None]] = {}
            removed: set[bytes] = set()
            for e in batch:
                for m in e.mutations:
                    if m.remove:
                        removed.add(m.object)
                        net.pop(m.object, None)
                        continue
                    keys = net.setdefault(m.object, {})
                    for kv in m.set:
                        keys[kv.key] = kv.value
                    for key in m.rm:
                        keys[key] = None
            sem = asyncio.Semaphore(PARALLEL)

            async def apply(obj: bytes, keys: dict[bytes, bytes | None]) -> None:
                sets = {k: v for k, v in keys.items() if v is not None}
                rms = [k for k, v in keys.items() if v is None]
                async with sem:
                    if sets:
                        op = ObjectOp().omap_set(sets)
                        if rms:
                            op.omap_rm(rms)
                        await self.meta.operate(obj, op)
                    elif rms:
                        with contextlib.suppress(NotFound):
                            await self.meta.operate(obj, ObjectOp().omap_rm(rms))

            async def remove(obj: bytes) -> None:
                async with sem:
                    with contextlib.suppress(NotFound):
                        await self.meta.remove(obj)

            await asyncio.gather(*(apply(o, k) for o, k in net.items()),
                                 *(remove(o) for o in removed))
            purges = [p for e in batch for p in e.purges]
            await asyncio.gather(*(self.purge(p) for p in purges))
            last = batch[-1]
            for _ in batch:
                self.events.popleft()
            # drop overlay entries whose newest change is now in RADOS
            for obj in list(self.overlay):
                keys = self.overlay[obj]
                for key in [k for k, (_, s) in keys.items() if s <= last.seq]:
                    del keys[key]
                if not keys:
                    del self.overlay[obj]
            for obj in [o for o, s in self.removed.items() if s <= last.seq]:
                del self.removed[obj]
            self.generation += 1
            return last.pos

    async def purge(self, p: mds_pb2.Purge) -> None:
        """Remove a file's data objects (those that exist: sparse files have holes)."""
        size = p.object_size or layout.DEFAULT_OBJECT_SIZE
        count = max(1, -(-p.size // size))

        async def one(block: int) -> None:
            with contextlib.suppress(NotFound):
                await self.data.remove(layout.data_object(p.ino, block))
                self.purged_objects += 1

        for start in range(0, count, PARALLEL):  # bounded: a file may span many objects
            await asyncio.gather(*(one(b) for b in range(start, min(count, start + PARALLEL))))
