"""The namespace operations, sans I/O: each takes the cache, a Tx and the request, reads what
it needs (a `NeedLoad` escapes when something is not cached: the server loads it and calls
again), then changes the cache and records the keys it changed in the Tx.

Access checks on paths (search, write, sticky directories) are the kernel's
(`default_permissions` on the mount); the rules that depend on the file system are here:
ownership of new files (set-group-ID directories), set-ID bits cleared on chown and by writers,
link counts, times.
"""

from __future__ import annotations

import errno as E
import stat
from collections.abc import Callable

from mds import layout
from mds.cache import Anchor, Cache, Dentry, FsError, Inode, Tx
from rados_py.proto.loligo import mds_pb2, osd_pb2

RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
XATTR_CREATE, XATTR_REPLACE = 1, 2
XATTR_SIZE_MAX = 65536
XATTR_TOTAL_MAX = 256 * 1024
IsOpen = Callable[[int], bool]


def _check_name(name: bytes) -> None:
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise FsError(E.EINVAL, f"bad name {name[:80]!r}")
    if len(name) > layout.NAME_MAX:
        raise FsError(E.ENAMETOOLONG, f"name of {len(name)} bytes (at most "
                      f"{layout.NAME_MAX})")


def _dir_inode(cache: Cache, ino: int) -> Inode:
    inode = cache.inode(ino)
    if not stat.S_ISDIR(inode.mode):
        raise FsError(E.ENOTDIR, f"{ino:x} is not a directory")
    if inode.nlink == 0:
        raise FsError(E.ENOENT, f"directory {ino:x} was removed")
    return inode


def _touch(inode: Inode, now: int, *, mtime: bool = True) -> None:
    inode.ctime_ns = now
    if mtime:
        inode.mtime_ns = now


def lookup(cache: Cache, parent: int, name: bytes) -> Inode:
    _dir_inode(cache, parent)
    if name == b".":
        return cache.inode(parent)
    if len(name) > layout.NAME_MAX:
        raise FsError(E.ENAMETOOLONG, "name too long")
    dentry = cache.dentry(parent, name)
    if dentry is None:
        raise FsError(E.ENOENT)
    return cache.resolve(dentry)


def getattr_(cache: Cache, ino: int) -> Inode:
    return cache.inode(ino)


def check_create(op: mds_pb2.CreateOp) -> int:
    """The file type a create makes (FsError when the request is malformed)."""
    _check_name(op.name)
    ftype = stat.S_IFMT(op.mode) or stat.S_IFREG
    if ftype not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFIFO, stat.S_IFSOCK,
                     stat.S_IFCHR, stat.S_IFBLK):
        raise FsError(E.EINVAL, f"unknown file type {ftype:o}")
    if ftype == stat.S_IFLNK and not op.symlink:
        raise FsError(E.ENOENT, "empty symlink target")
    if len(op.symlink) > 4095:
        raise FsError(E.ENAMETOOLONG, "symlink target too long")
    return ftype


def new_inode(parent: Inode, op: mds_pb2.CreateOp, caller: mds_pb2.Caller, ino: int,
              now: int) -> Inode:
    """The inode a create in `parent` makes (pure: a client creating in a directory it holds
    exclusively builds the same inode the MDS will)."""
    ftype = check_create(op)
    perm = stat.S_IMODE(op.mode)
    if ftype == stat.S_IFLNK:
        perm = 0o777
    gid = caller.gid
    if parent.mode & stat.S_ISGID:  # BSD group semantics in set-group-ID directories
        gid = parent.gid
        if ftype == stat.S_IFDIR:
            perm |= stat.S_ISGID
    elif ftype != stat.S_IFDIR and perm & stat.S_ISGID and caller.uid != 0 \
            and caller.gid != gid and gid not in caller.groups:
        perm &= ~stat.S_ISGID
    return Inode(ino=ino, mode=ftype | perm, uid=caller.uid, gid=gid,
                 nlink=2 if ftype == stat.S_IFDIR else 1, atime_ns=now, mtime_ns=now,
                 ctime_ns=now, btime_ns=now, rdev=op.rdev, symlink=op.symlink, version=1,
                 size=len(op.symlink) if ftype == stat.S_IFLNK else 0)


def touch_parent(parent: Inode, ftype: int, now: int, delta: int) -> None:
    """A name was added (delta 1) or removed (-1) in `parent`: its times, and its link count
    when the name is a directory (pure, shared with clients, as `new_inode`)."""
    if stat.S_ISDIR(ftype):
        parent.nlink += delta
    _touch(parent, now)


def create(cache: Cache, tx: Tx, op: mds_pb2.CreateOp, caller: mds_pb2.Caller,
           now: int, ino: int = 0) -> tuple[Inode, bool]:
    """A new file, directory, symlink or device node; (inode, created). A non-exclusive
    create of an existing regular file opens it instead. `ino`: the number to use (one
    delegated to the client, or replayed); else one is allocated."""
    check_create(op)
    parent = _dir_inode(cache, op.parent)
    existing = cache.dentry(op.parent, op.name)
    if existing is not None:
        inode = cache.resolve(existing)
        if op.exclusive or not op.open or not stat.S_ISREG(inode.mode):
            raise FsError(E.EEXIST, f"{op.name[:80]!r} exists")
        return inode, False
    inode = new_inode(parent, op, caller, ino or cache.alloc_ino(), now)
    ftype = stat.S_IFMT(inode.mode)
    cache.set_dentry(tx, op.parent, op.name, Dentry(ino=inode.ino, type=ftype, inode=inode))
    cache.set_anchor(tx, inode.ino, Anchor(parent=op.parent, name=op.name))
    if ftype == stat.S_IFDIR:
        cache.dir(inode.ino).complete = True  # a new directory is empty, and known to be
    touch_parent(parent, ftype, now, 1)
    cache.save_inode(tx, parent)
    return cache.resolve(cache.dentry(op.parent, op.name)), True  # type: ignore[arg-type]


def _drop_link(cache: Cache, tx: Tx, inode: Inode, now: int, is_open: IsOpen,
               dentry: Dentry) -> Inode:
    """One link of `inode` went (its dentry is already gone): fix the link count; the last
    link of a file not open anywhere purges its data, one still open makes it a stray."""
    inode.nlink = max(0, inode.nlink - (2 if stat.S_ISDIR(inode.mode) else 1))
    inode.ctime_ns = now
    inode.version += 1
    if inode.nlink > 0:
        # still linked elsewhere: the inode lives on in the anchor table
        anchor = cache.anchor(inode.ino)
        assert anchor is not None and anchor.HasField("inode")
        anchor.inode.CopyFrom(inode)
        cache.set_anchor(tx, inode.ino, anchor)
        return inode
    if stat.S_ISDIR(inode.mode):
        tx.removed_dirs.append(inode.ino)
        cache.dirs.pop(inode.ino, None)
        cache.set_anchor(tx, inode.ino, None)
    elif stat.S_ISREG(inode.mode) and is_open(inode.ino):
        cache.set_anchor(tx, inode.ino, Anchor(inode=inode, stray=True))
    else:
        cache.set_anchor(tx, inode.ino, None)
        if stat.S_ISREG(inode.mode):
            tx.purges.append(mds_pb2.Purge(ino=inode.ino, size=inode.max_size,
                                           object_size=inode.object_size))
    return inode


def _is_empty(cache: Cache, ino: int) -> bool:
    return cache.is_empty(ino)


def unlink(cache: Cache, tx: Tx, op: mds_pb2.UnlinkOp, now: int, is_open: IsOpen) -> Inode:
    parent = _dir_inode(cache, op.parent)
    if op.name in (b".", b".."):
        raise FsError(E.EINVAL if op.name == b"." else E.ENOTEMPTY)
    dentry = cache.dentry(op.parent, op.name)
    if dentry is None:
        raise FsError(E.ENOENT)
    inode = Inode()
    inode.CopyFrom(cache.resolve(dentry))
    if op.rmdir:
        if not stat.S_ISDIR(inode.mode):
            raise FsError(E.ENOTDIR)
        if not _is_empty(cache, inode.ino):
            raise FsError(E.ENOTEMPTY)
    elif stat.S_ISDIR(inode.mode):
        raise FsError(E.EISDIR)
    cache.set_dentry(tx, op.parent, op.name, None)
    if stat.S_ISDIR(inode.mode):
        parent.nlink -= 1
    _touch(parent, now)
    cache.save_inode(tx, parent)
    return _drop_link(cache, tx, inode, now, is_open, dentry)


def _is_ancestor(cache: Cache, ancestor: int, ino: int) -> bool:
    """Whether directory `ancestor` is `ino` or above it."""
    seen = 0
    while True:
        if ino == ancestor:
            return True
        if ino == layout.ROOT_INO or seen > 4096:
            return False
        loc = cache.location(ino)
        if loc is None:
            return False
        ino = loc[0]
        seen += 1


def rename(cache: Cache, tx: Tx, op: mds_pb2.RenameOp, now: int, is_open: IsOpen
           ) -> tuple[Inode, list[Inode]]:
    """Move a name (atomically replacing or exchanging with the target); (moved inode,
    other inodes changed)."""
    _check_name(op.new_name)
    if op.name in (b".", b".."):
        raise FsError(E.EINVAL)
    src_dir = _dir_inode(cache, op.parent)
    dst_dir = _dir_inode(cache, op.new_parent)
    src = cache.dentry(op.parent, op.name)
    if src is None:
        raise FsError(E.ENOENT)
    dst = cache.dentry(op.new_parent, op.new_name)
    moved = cache.resolve(src)
    target = cache.resolve(dst) if dst is not None else None
    moving_dir = stat.S_ISDIR(moved.mode)
    if op.flags & RENAME_NOREPLACE and dst is not None:
        raise FsError(E.EEXIST)
    if op.flags & RENAME_EXCHANGE:
        if dst is None:
            raise FsError(E.ENOENT)
        return _exchange(cache, tx, op, src, dst, src_dir, dst_dir, now)
    if target is not None and target.ino == moved.ino:
        return moved, []  # two links of one inode: nothing to do (POSIX)
    if moving_dir and op.new_parent != op.parent and _is_ancestor(cache, moved.ino,
                                                                  op.new_parent):
        raise FsError(E.EINVAL, "cannot move a directory into itself")
    if target is not None:
        if stat.S_ISDIR(target.mode):
            if not moving_dir:
                raise FsError(E.EISDIR)
            if not _is_empty(cache, target.ino):
                raise FsError(E.ENOTEMPTY)
        elif moving_dir:
            raise FsError(E.ENOTDIR)
    changed = []
    if target is not None:
        gone = Inode()
        gone.CopyFrom(target)
        cache.set_dentry(tx, op.new_parent, op.new_name, None)
        if stat.S_ISDIR(gone.mode):
            dst_dir.nlink -= 1
        changed.append(_drop_link(cache, tx, gone, now, is_open, dst))  # type: ignore[arg-type]
    entry = Dentry()
    entry.CopyFrom(src)
    cache.set_dentry(tx, op.parent, op.name, None)
    cache.set_dentry(tx, op.new_parent, op.new_name, entry)
    if not entry.remote:
        cache.set_anchor(tx, moved.ino, Anchor(parent=op.new_parent, name=op.new_name))
    if moving_dir and op.new_parent != op.parent:
        src_dir.nlink -= 1
        dst_dir.nlink += 1
    _touch(src_dir, now)
    cache.save_inode(tx, src_dir)
    if op.new_parent != op.parent:
        _touch(dst_dir, now)
        cache.save_inode(tx, dst_dir)
    inode = cache.resolve(entry) if entry.remote else cache.dentry(op.new_parent,
                                                                  op.new_name).inode
    inode.ctime_ns = now
    cache.save_inode(tx, inode)
    return inode, changed


def _exchange(cache: Cache, tx: Tx, op: mds_pb2.RenameOp, src: Dentry, dst: Dentry,
              src_dir: Inode, dst_dir: Inode, now: int) -> tuple[Inode, list[Inode]]:
    a, b = Dentry(), Dentry()
    a.CopyFrom(src)
    b.CopyFrom(dst)
    a_dir, b_dir = stat.S_ISDIR(cache.resolve(a).mode), stat.S_ISDIR(cache.resolve(b).mode)
    if op.parent != op.new_parent:
        if a_dir and _is_ancestor(cache, a.ino, op.new_parent):
            raise FsError(E.EINVAL)
        if b_dir and _is_ancestor(cache, b.ino, op.parent):
            raise FsError(E.EINVAL)
    cache.set_dentry(tx, op.parent, op.name, b)
    cache.set_dentry(tx, op.new_parent, op.new_name, a)
    for d, parent, name in ((a, op.new_parent, op.new_name), (b, op.parent, op.name)):
        if not d.remote:
            cache.set_anchor(tx, d.ino, Anchor(parent=parent, name=name))
    if op.parent != op.new_parent and a_dir != b_dir:
        delta = 1 if a_dir else -1
        src_dir.nlink -= delta
        dst_dir.nlink += delta
    _touch(src_dir, now)
    cache.save_inode(tx, src_dir)
    if op.parent != op.new_parent:
        _touch(dst_dir, now)
        cache.save_inode(tx, dst_dir)
    out = []
    for d in (a, b):  # the Dentry objects the cache now holds
        inode = cache.resolve(d)
        inode.ctime_ns = now
        cache.save_inode(tx, inode)
        out.append(inode)
    return out[0], out[1:]


def link(cache: Cache, tx: Tx, op: mds_pb2.LinkOp, now: int) -> Inode:
    _check_name(op.new_name)
    new_parent = _dir_inode(cache, op.new_parent)
    inode = cache.inode(op.ino)
    if stat.S_ISDIR(inode.mode):
        raise FsError(E.EPERM, "hard links to directories are not allowed")
    if inode.nlink == 0:
        raise FsError(E.ENOENT, "the file was removed")
    if cache.dentry(op.new_parent, op.new_name) is not None:
        raise FsError(E.EEXIST)
    if inode.nlink >= 65000:
        raise FsError(E.EMLINK)
    loc = cache.location(op.ino)
    updated = Inode()
    updated.CopyFrom(inode)
    updated.nlink += 1
    updated.ctime_ns = now
    updated.version += 1
    if loc is not None:
        # the first extra link: the inode moves to the anchor table, its dentry becomes remote
        cache.set_dentry(tx, loc[0], loc[1], Dentry(ino=op.ino, type=stat.S_IFMT(inode.mode),
                                                    remote=True))
    cache.set_anchor(tx, op.ino, Anchor(inode=updated))
    cache.set_dentry(tx, op.new_parent, op.new_name,
                     Dentry(ino=op.ino, type=stat.S_IFMT(inode.mode), remote=True))
    _touch(new_parent, now)
    cache.save_inode(tx, new_parent)
    return updated


def setattr_(cache: Cache, tx: Tx, op: mds_pb2.SetAttrOp, caller: mds_pb2.Caller, now: int
             ) -> tuple[Inode, int]:
    """Change attributes; (inode, old size)."""
    current = cache.inode(op.ino)
    inode = Inode()
    inode.CopyFrom(current)
    old_size = inode.size
    changed = False
    if op.HasField("uid") or op.HasField("gid"):
        uid = op.uid if op.HasField("uid") else inode.uid
        gid = op.gid if op.HasField("gid") else inode.gid
        if ((uid, gid) != (inode.uid, inode.gid) or not op.HasField("mode")) \
                and not stat.S_ISDIR(inode.mode):
            # chown clears set-user-ID, and set-group-ID of group-executable files
            inode.mode &= ~stat.S_ISUID
            if inode.mode & stat.S_IXGRP:
                inode.mode &= ~stat.S_ISGID
        inode.uid, inode.gid = uid, gid
        changed = True
    if op.HasField("mode"):
        inode.mode = stat.S_IFMT(inode.mode) | stat.S_IMODE(op.mode)
        changed = True
    if op.HasField("size"):
        if stat.S_ISDIR(inode.mode):
            raise FsError(E.EISDIR)
        if not stat.S_ISREG(inode.mode):
            raise FsError(E.EINVAL)
        if op.size != inode.size or not op.from_write:
            inode.size = op.size
            inode.mtime_ns = now
            changed = True
    if op.from_write and op.HasField("max_size"):
        inode.max_size = max(inode.max_size, op.max_size)
    if op.HasField("atime_ns"):
        inode.atime_ns = now if op.atime_ns < 0 else op.atime_ns
        changed = True
    if op.HasField("mtime_ns"):
        inode.mtime_ns = now if op.mtime_ns < 0 else op.mtime_ns
        changed = True
    if changed and not op.from_write:
        inode.ctime_ns = now
    elif op.from_write:
        inode.ctime_ns = max(inode.ctime_ns, inode.mtime_ns)
        if inode.mode & (stat.S_ISUID | stat.S_ISGID) and caller.uid != 0:
            inode.mode &= ~stat.S_ISUID
            if inode.mode & stat.S_IXGRP:
                inode.mode &= ~stat.S_ISGID
    cache.save_inode(tx, inode)
    return cache.inode(op.ino), old_size


def readdir(cache: Cache, ino: int, after: bytes, limit: int
            ) -> tuple[list[tuple[bytes, Inode]], bool]:
    _dir_inode(cache, ino)
    page, more = cache.page(ino, after, limit)
    out = [(name, cache.resolve(dentry)) for name, dentry in page]
    cache.page_used(ino, after)
    return out, more


def setxattr(cache: Cache, tx: Tx, op: mds_pb2.SetXattrOp, now: int) -> Inode:
    if not op.name or len(op.name) > 255:
        raise FsError(E.ERANGE if op.name else E.EINVAL)
    if len(op.value) > XATTR_SIZE_MAX:
        raise FsError(E.E2BIG)
    inode = Inode()
    inode.CopyFrom(cache.inode(op.ino))
    pairs = {kv.key: kv.value for kv in inode.xattrs}
    if op.flags & XATTR_CREATE and op.name in pairs:
        raise FsError(E.EEXIST)
    if op.flags & XATTR_REPLACE and op.name not in pairs:
        raise FsError(E.ENODATA)
    pairs[op.name] = op.value
    if sum(len(k) + len(v) for k, v in pairs.items()) > XATTR_TOTAL_MAX:
        raise FsError(E.ENOSPC, "no room for more extended attributes on this inode")
    del inode.xattrs[:]
    inode.xattrs.extend(osd_pb2.KeyValue(key=k, value=v) for k, v in sorted(pairs.items()))
    inode.ctime_ns = now
    cache.save_inode(tx, inode)
    return cache.inode(op.ino)


def removexattr(cache: Cache, tx: Tx, op: mds_pb2.RemoveXattrOp, now: int) -> Inode:
    inode = Inode()
    inode.CopyFrom(cache.inode(op.ino))
    kept = [kv for kv in inode.xattrs if kv.key != op.name]
    if len(kept) == len(inode.xattrs):
        raise FsError(E.ENODATA)
    del inode.xattrs[:]
    inode.xattrs.extend(kept)
    inode.ctime_ns = now
    cache.save_inode(tx, inode)
    return cache.inode(op.ino)


def release_stray(cache: Cache, tx: Tx, ino: int) -> None:
    """The last client closed an unlinked file: its inode goes and its data is purged."""
    anchor = cache.anchor(ino)
    if anchor is None or not anchor.stray:
        return
    cache.set_anchor(tx, ino, None)
    tx.purges.append(mds_pb2.Purge(ino=ino, size=anchor.inode.max_size,
                                   object_size=anchor.inode.object_size))


def root_inode(now: int) -> Inode:
    return Inode(ino=layout.ROOT_INO, mode=stat.S_IFDIR | 0o755, nlink=2, atime_ns=now,
                 mtime_ns=now, ctime_ns=now, btime_ns=now, version=1)
