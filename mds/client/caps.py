"""What a mount caches and may do by itself (pure: mds/client/fuse_ops.py does the I/O).

- Inode attributes the MDS leased to this mount, until it says another mount changed them
  (an Invalidate): `getattr`, `getxattr` and `open` of a cached inode need no request.
- Directories held exclusively (mds/caps.py on the MDS): in one this mount made, or listed
  whole while holding it, it knows every name, so a lookup of a name it does not know is
  answered "no such file" at once, and creates, renames and unlinks are made here and sent to
  the MDS in the background, with inode numbers the MDS delegated to this mount.
- The kernel's lookup counts, so that what the kernel forgot is forgotten here and at the MDS.
"""

from __future__ import annotations

import stat
from collections import deque
from dataclasses import dataclass, field

from rados_py.proto.loligo import mds_pb2

Inode = mds_pb2.Inode
ABSENT = object()  # a lookup answer: the name does not exist


@dataclass
class DirState:
    excl: bool = False       # this mount may change the directory itself
    complete: bool = False   # `names` is every name in it
    names: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # -> (ino, S_IFMT)
    changes: int = 0         # local changes (a listing read across one is not complete)

    def drop(self) -> None:
        self.excl = self.complete = False
        self.names = {}


class MountCache:
    def __init__(self) -> None:
        self.inodes: dict[int, Inode] = {}
        self.dirs: dict[int, DirState] = {}
        self.lookups: dict[int, int] = {}
        self.delegated: deque[list[int]] = deque()  # [next, end)
        self.errors: dict[int, int] = {}  # directory -> errno of a failed background change

    # --- what the kernel holds --------------------------------------------------------------
    def counted(self, ino: int) -> None:
        """The kernel was given an entry for `ino` (its lookup count grows by one)."""
        if ino:
            self.lookups[ino] = self.lookups.get(ino, 0) + 1

    def forget(self, ino: int, n: int) -> bool:
        """The kernel dropped `n` references; True when it holds none any more (then this
        mount caches nothing of it either)."""
        left = self.lookups.get(ino, 0) - n
        if left > 0:
            self.lookups[ino] = left
            return False
        self.lookups.pop(ino, None)
        self.inodes.pop(ino, None)
        self.dirs.pop(ino, None)
        return True

    # --- attributes -------------------------------------------------------------------------
    def remember(self, inode: Inode) -> None:
        if inode.ino:
            self.inodes[inode.ino] = inode

    def invalidated(self, inv: mds_pb2.Invalidate) -> None:
        if inv.ino:
            self.inodes.pop(inv.ino, None)
        if inv.parent:
            d = self.dirs.get(inv.parent)
            if d is not None:  # another mount changed it: it is not ours alone any more
                d.drop()

    # --- directories ------------------------------------------------------------------------
    def dir(self, ino: int) -> DirState:
        d = self.dirs.get(ino)
        if d is None:
            d = self.dirs[ino] = DirState()
        return d

    def exclusive(self, ino: int) -> DirState | None:
        """The directory's state when this mount holds it whole and may change it."""
        d = self.dirs.get(ino)
        return d if d is not None and d.excl and d.complete else None

    def lookup(self, parent: int, name: bytes) -> object:
        """ABSENT, the cached inode, or None (ask the MDS)."""
        d = self.exclusive(parent)
        if d is None:
            return None
        entry = d.names.get(name)
        if entry is None:
            return ABSENT
        return self.inodes.get(entry[0])

    def granted(self, dirs: list[int]) -> None:
        for ino in dirs:
            self.dir(ino).excl = True

    def made_dir(self, ino: int) -> None:
        """A directory this mount just made (and holds): empty, and known to be."""
        d = self.dir(ino)
        d.excl = d.complete = True
        d.names = {}

    def recalled(self, ino: int) -> None:
        d = self.dirs.get(ino)
        if d is not None:
            d.drop()

    def session_lost(self) -> None:
        """The MDS forgot what it granted (a takeover) or may have: nothing is exclusive."""
        for d in self.dirs.values():
            d.drop()
        self.delegated.clear()

    def named(self, parent: int, name: bytes, inode: Inode | None) -> None:
        """What a reply said about `name` in `parent` (None: it is gone)."""
        d = self.dirs.get(parent)
        if d is None or not d.complete:
            return
        if inode is None:
            d.names.pop(name, None)
        else:
            d.names[name] = (inode.ino, stat.S_IFMT(inode.mode))

    def listed(self, ino: int, names: dict[bytes, tuple[int, int]], changes: int) -> None:
        """A whole listing read while holding the directory: complete, unless it changed
        here meanwhile."""
        d = self.dirs.get(ino)
        if d is not None and d.excl and d.changes == changes:
            d.names = names
            d.complete = True

    # --- inode numbers for background creates -----------------------------------------------
    def add_delegated(self, first: int, count: int) -> None:
        if count:
            self.delegated.append([first, first + count])

    def has_ino(self) -> bool:
        return bool(self.delegated)

    def take_ino(self) -> int:
        rng = self.delegated[0]
        ino = rng[0]
        rng[0] += 1
        if rng[0] >= rng[1]:
            self.delegated.popleft()
        return ino
