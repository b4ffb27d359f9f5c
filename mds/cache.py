"""The MDS's metadata cache, without I/O: directories (their dentries), anchors (where an
inode is, or the inode itself) and the inode allocator.

A lookup of something not cached raises `NeedLoad`; the server loads it (mds/store.py) and
runs the operation again, so operations stay pure (sans-I/O) and are all-or-nothing: every
operation reads everything it needs before it changes anything.

A change is recorded in a `Tx` as the keys it touched; `Tx.mutations()` turns them into the
journal event's object changes, with the values the cache holds right then.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field

from mds import layout
from rados_py.proto.loligo import mds_pb2, osd_pb2

Inode = mds_pb2.Inode
Dentry = mds_pb2.Dentry
Anchor = mds_pb2.Anchor


class NeedLoad(Exception):
    """What the operation needs from RADOS: ("dentry", parent, name), ("page", dir, after: a
    page of its listing), ("empty", dir, b""), ("anchor", ino, b"") or ("inos", 0, b"")."""

    def __init__(self, kind: str, ino: int = 0, name: bytes = b"") -> None:
        super().__init__(kind, ino, name)
        self.kind, self.ino, self.name = kind, ino, name


class FsError(Exception):
    """An operation's failure as the errno the application gets."""

    def __init__(self, errno: int, message: str = "") -> None:
        super().__init__(errno, message)
        self.errno, self.message = errno, message


@dataclass
class CDir:
    entries: dict[bytes, Dentry] = field(default_factory=dict)
    absent: set[bytes] = field(default_factory=set)  # names known not to exist
    complete: bool = False
    nonempty: bool | None = None  # known of an incomplete directory (None: ask RADOS)
    # pages of the listing of an incomplete directory, loaded for a readdir (by `after`)
    pages: dict[bytes, tuple[list[tuple[bytes, Dentry]], bool]] = field(default_factory=dict)
    _sorted: list[bytes] | None = None

    def names_after(self, after: bytes, limit: int) -> tuple[list[bytes], bool]:
        if self._sorted is None:
            self._sorted = sorted(self.entries)
        start = bisect.bisect_right(self._sorted, after)
        names = self._sorted[start:start + limit]
        return names, start + limit < len(self._sorted)

    def put(self, name: bytes, dentry: Dentry) -> None:
        if name not in self.entries:
            self._sorted = None
        self.entries[name] = dentry
        self.absent.discard(name)

    def drop(self, name: bytes) -> None:
        if self.entries.pop(name, None) is not None:
            self._sorted = None
        if not self.complete:
            self.absent.add(name)
            self.nonempty = None

    def changed(self) -> None:
        self.pages.clear()


class Tx:
    """The keys one operation changed, and the data it asks to be purged."""

    def __init__(self) -> None:
        self.dentries: list[tuple[int, bytes]] = []
        self.anchors: list[int] = []
        self.removed_dirs: list[int] = []
        self.purges: list[mds_pb2.Purge] = []
        self.inos: list[int] = []  # inodes whose attributes changed (for other clients' leases)

    def dentry(self, parent: int, name: bytes) -> None:
        self.dentries.append((parent, name))

    def anchor(self, ino: int) -> None:
        self.anchors.append(ino)

    def mutations(self, cache: Cache) -> list[mds_pb2.ObjMutation]:
        by_obj: dict[bytes, mds_pb2.ObjMutation] = {}

        def mut(obj: bytes) -> mds_pb2.ObjMutation:
            if obj not in by_obj:
                by_obj[obj] = mds_pb2.ObjMutation(object=obj)
            return by_obj[obj]

        for parent, name in dict.fromkeys(self.dentries):
            d = cache.dirs.get(parent)
            value = d.entries.get(name) if d is not None else None
            m = mut(layout.dir_object(parent))
            if value is None:
                m.rm.append(name)
            else:
                m.set.append(osd_pb2.KeyValue(key=name, value=value.SerializeToString()))
        for ino in dict.fromkeys(self.anchors):
            anchor = cache.anchors.get(ino)
            key = layout.anchor_key(ino)
            m = mut(layout.anchor_object(ino))
            stray = mut(layout.STRAY)
            if anchor is None:
                m.rm.append(key)
                stray.rm.append(key)
            else:
                m.set.append(osd_pb2.KeyValue(key=key, value=anchor.SerializeToString()))
                if anchor.stray:
                    stray.set.append(osd_pb2.KeyValue(key=key, value=b""))
                else:
                    stray.rm.append(key)
        for ino in self.removed_dirs:
            mut(layout.dir_object(ino)).remove = True
        return [m for m in by_obj.values() if m.set or m.rm or m.remove]


class Cache:
    """Cached metadata, bounded by `limit` dentries (least recently used directories go)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self.dirs: OrderedDict[int, CDir] = OrderedDict()
        self.anchors: dict[int, Anchor | None] = {}  # None: known to have no anchor
        self.where: dict[int, tuple[int, bytes]] = {}  # primary dentry of cached inodes
        self.next_ino = 0
        self.ino_high = 0  # numbers below this are reserved in RADOS
        self.dentry_count = 0

    # --- reading --------------------------------------------------------------------------
    def dir(self, ino: int) -> CDir:
        d = self.dirs.get(ino)
        if d is None:
            d = self.dirs[ino] = CDir()
        else:
            self.dirs.move_to_end(ino)
        return d

    def dentry(self, parent: int, name: bytes) -> Dentry | None:
        d = self.dirs.get(parent)
        if d is not None:
            self.dirs.move_to_end(parent)
            found = d.entries.get(name)
            if found is not None:
                return found
            if d.complete or name in d.absent:
                return None
        raise NeedLoad("dentry", parent, name)

    def page(self, ino: int, after: bytes, limit: int
             ) -> tuple[list[tuple[bytes, Dentry]], bool]:
        """Up to `limit` entries of directory `ino` after the name `after`, in name order, and
        whether more follow: from the cache when it holds the whole directory, else a page
        loaded from RADOS (a big directory is never loaded whole)."""
        d = self.dirs.get(ino)
        if d is not None and d.complete:
            self.dirs.move_to_end(ino)
            names, more = d.names_after(after, limit)
            return [(name, d.entries[name]) for name in names], more
        if d is not None and after in d.pages:
            return d.pages[after]
        raise NeedLoad("page", ino, after)

    def page_used(self, ino: int, after: bytes) -> None:
        d = self.dirs.get(ino)
        if d is not None:
            d.pages.pop(after, None)

    def is_empty(self, ino: int) -> bool:
        d = self.dirs.get(ino)
        if d is not None:
            if d.entries:
                return False
            if d.complete:
                return True
            if d.nonempty is not None:
                return not d.nonempty
        raise NeedLoad("empty", ino)

    def anchor(self, ino: int) -> Anchor | None:
        if ino not in self.anchors:
            raise NeedLoad("anchor", ino)
        return self.anchors[ino]

    def location(self, ino: int) -> tuple[int, bytes] | None:
        """The primary dentry of `ino`, or None when the inode lives in the anchor table."""
        if ino in self.where:
            return self.where[ino]
        anchor = self.anchor(ino)
        if anchor is None:
            raise FsError(2, f"inode {ino:x} does not exist")
        if anchor.HasField("inode"):
            return None
        return anchor.parent, anchor.name

    def inode(self, ino: int) -> Inode:
        """The inode `ino` (raises FsError ESTALE when it no longer exists)."""
        anchor = self.anchors.get(ino)
        if anchor is not None and anchor.HasField("inode"):
            return anchor.inode
        try:
            loc = self.location(ino)
        except FsError:
            raise FsError(116, f"inode {ino:x} no longer exists") from None
        if loc is None:
            return self.anchors[ino].inode  # type: ignore[union-attr]
        dentry = self.dentry(*loc)
        if dentry is None or dentry.ino != ino or dentry.remote:
            # the index was stale (a rename we did not see): ask the anchor table
            self.where.pop(ino, None)
            anchor = self.anchor(ino)
            if anchor is None:
                raise FsError(116, f"inode {ino:x} no longer exists")
            if anchor.HasField("inode"):
                return anchor.inode
            dentry = self.dentry(anchor.parent, anchor.name)
            if dentry is None or dentry.ino != ino:
                raise FsError(116, f"inode {ino:x} no longer exists")
        return dentry.inode

    def resolve(self, dentry: Dentry) -> Inode:
        """The inode a dentry names (a remote link's inode comes from the anchor table)."""
        if not dentry.remote:
            return dentry.inode
        anchor = self.anchor(dentry.ino)
        if anchor is None or not anchor.HasField("inode"):
            raise FsError(116, f"hard-linked inode {dentry.ino:x} is missing")
        return anchor.inode

    # --- changing -------------------------------------------------------------------------
    def alloc_ino(self) -> int:
        if self.next_ino >= self.ino_high:
            raise NeedLoad("inos")
        ino = self.next_ino
        self.next_ino += 1
        return ino

    def alloc_range(self, count: int) -> tuple[int, int]:
        """Up to `count` consecutive inode numbers: (first, how many)."""
        if self.next_ino >= self.ino_high:
            raise NeedLoad("inos")
        first = self.next_ino
        n = min(count, self.ino_high - first)
        self.next_ino += n
        return first, n

    def set_dentry(self, tx: Tx, parent: int, name: bytes, dentry: Dentry | None) -> None:
        d = self.dir(parent)
        d.changed()
        old = d.entries.get(name)
        if old is not None:
            tx.inos.append(old.ino)
        if dentry is None:
            if old is not None and not old.remote:
                self.where.pop(old.ino, None)
            if old is not None:
                self.dentry_count -= 1
            d.drop(name)
        else:
            if name not in d.entries:
                self.dentry_count += 1
            d.put(name, dentry)
            if not dentry.remote:
                self.where[dentry.ino] = (parent, name)
        tx.dentry(parent, name)

    def set_anchor(self, tx: Tx, ino: int, anchor: Anchor | None) -> None:
        self.anchors[ino] = anchor
        tx.anchor(ino)
        tx.inos.append(ino)

    def save_inode(self, tx: Tx, inode: Inode) -> None:
        """Record a changed inode where it lives (its primary dentry or its anchor)."""
        inode.version += 1
        tx.inos.append(inode.ino)
        anchor = self.anchors.get(inode.ino)
        if anchor is None or not anchor.HasField("inode"):
            loc = self.location(inode.ino)
            if loc is not None:
                dentry = self.dentry(*loc)
                assert dentry is not None
                if dentry.inode is not inode:
                    dentry.inode.CopyFrom(inode)
                tx.dentry(*loc)
                return
            anchor = self.anchors[inode.ino]
        assert anchor is not None
        if anchor.inode is not inode:
            anchor.inode.CopyFrom(inode)
        tx.anchor(inode.ino)

    # --- loading (from mds/store.py) ------------------------------------------------------
    def loaded_dentry(self, parent: int, name: bytes, dentry: Dentry | None) -> None:
        d = self.dir(parent)
        if name in d.entries or name in d.absent or d.complete:
            return  # the cache knows newer
        if dentry is None:
            d.absent.add(name)
            return
        self.dentry_count += 1
        d.put(name, dentry)
        if not dentry.remote:
            self.where.setdefault(dentry.ino, (parent, name))

    def loaded_page(self, ino: int, after: bytes, entries: list[tuple[bytes, Dentry]],
                    more: bool) -> None:
        d = self.dir(ino)
        if not d.complete:
            d.pages[after] = (entries, more)
            if entries:
                d.nonempty = True

    def loaded_emptiness(self, ino: int, empty: bool) -> None:
        d = self.dir(ino)
        if not d.complete and not d.entries:
            d.nonempty = not empty

    def loaded_anchor(self, ino: int, anchor: Anchor | None) -> None:
        self.anchors.setdefault(ino, anchor)

    def trim(self, pinned: set[int] = frozenset()) -> int:  # type: ignore[assignment]
        """Drop least recently used directories until within the limit; how many went.
        (Nothing is lost: what is not yet in RADOS is found in the store's overlay.)"""
        dropped = 0
        for ino in list(self.dirs):
            if self.dentry_count <= self.limit:
                break
            if ino == layout.ROOT_INO or ino in pinned:
                continue
            d = self.dirs.pop(ino)
            self.dentry_count -= len(d.entries)
            for dentry in d.entries.values():
                if not dentry.remote and self.where.get(dentry.ino, (0,))[0] == ino:
                    del self.where[dentry.ino]
            dropped += 1
        if len(self.anchors) > self.limit:
            for ino in list(self.anchors)[: len(self.anchors) - self.limit // 2]:
                if ino != layout.ROOT_INO and ino not in pinned:
                    del self.anchors[ino]
        return dropped

    def clear(self) -> None:
        self.dirs.clear()
        self.anchors.clear()
        self.where.clear()
        self.dentry_count = 0
