"""The file system a mount serves (mds/client/fuse_kernel.py speaks FUSE to the kernel): each
kernel request is answered from this mount's cache, made here and sent to the MDS in the
background, or sent to the MDS and answered when the MDS answers; file data goes straight to
and from the OSDs.

The kernel caches names and attributes for `entry_timeout`/`attr_timeout`, and this mount
keeps the inodes the MDS leased to it (mds/client/caps.py); when another mount changes them,
the MDS tells this one to drop them (FUSE notifications), so mounts see each other's changes
at once while a lone mount works from its caches. In a directory this mount holds
exclusively, lookups of unknown names, creates, renames and unlinks need no round trip.
Permission checks on paths are the kernel's (`default_permissions`). File locks (fcntl and
flock) are the MDS's, so they hold across mounts.
"""

from __future__ import annotations

import errno as E
import logging
import os
import stat
import time
from collections.abc import Awaitable
from typing import Any

from mds import layout
from mds import namespace as ns
from mds.cache import FsError
from mds.client.caps import ABSENT, DirState, MountCache
from mds.client.files import DataIO, OpenFile
from mds.client.fuse_kernel import Attr, Ctx, FuseError, LockSpec, Opened
from mds.client.mdsclient import MdsClient, MdsError
from rados_py.errors import LoligoError, StoreFull
from rados_py.proto.loligo import mds_pb2

log = logging.getLogger(__name__)
LEASE = 30.0  # seconds the kernel may cache what the MDS leased to this mount
STATFS_TTL = 2.0
READDIR_PAGE = 1024
LISTING_MAX = 200_000  # names kept of a directory this mount listed whole


def _errno(fn):
    """Map our errors to what the application gets (an errno, never a traceback)."""
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except FuseError:
            raise
        except MdsError as exc:
            raise FuseError(exc.errno or E.EIO) from None
        except FsError as exc:
            raise FuseError(exc.errno) from None
        except StoreFull:
            raise FuseError(E.ENOSPC) from None
        except LoligoError as exc:
            log.warning("%s: %s", fn.__name__, exc)
            raise FuseError(E.EIO) from None
        except OSError as exc:
            raise FuseError(exc.errno or E.EIO) from None
    wrapper.__name__ = fn.__name__
    return wrapper


class DirHandle:
    def __init__(self, ino: int, changes: int) -> None:
        self.ino = ino
        self.entries: list[tuple[bytes, mds_pb2.Inode]] = []
        self.more = True
        self.changes = changes  # the directory's local changes when the listing began


class LoligoFs:
    def __init__(self, mds: MdsClient, data: DataIO, config: Any) -> None:
        self.mds = mds
        self.data = data
        self.config = config
        self.cache = MountCache()
        self.files: dict[int, OpenFile] = {}
        self.handles: dict[int, tuple[OpenFile, int]] = {}  # fh -> (file, open flags)
        self.dirs: dict[int, DirHandle] = {}
        self._next_fh = 1
        self._statfs: tuple[float, Any] | None = None
        self.session: Any = None  # the FuseSession, for notifications
        self.locks: list[mds_pb2.LockInfo] = []  # granted to this mount (reclaimed after a
        mds.held_locks = self.locks               # takeover)
        mds.hooks = self
        self.local_ops = 0  # answered without a round trip to the MDS (for the bench)

    # --- helpers ----------------------------------------------------------------------------
    def _attrs(self, inode: mds_pb2.Inode) -> Attr:
        a = Attr()
        a.st_ino = inode.ino
        a.generation = 0
        a.entry_timeout = LEASE
        a.attr_timeout = LEASE
        a.st_mode = inode.mode
        a.st_nlink = inode.nlink
        a.st_uid = inode.uid
        a.st_gid = inode.gid
        a.st_rdev = inode.rdev
        size, mtime = inode.size, inode.mtime_ns
        f = self.files.get(inode.ino)
        if f is not None and stat.S_ISREG(inode.mode):
            if f.attrs_dirty:  # written here and not yet told the MDS: this mount knows best
                size, mtime = f.size, max(mtime, f.mtime_ns)
            else:
                f.size = size
        a.st_size = size
        a.st_blksize = inode.object_size or layout.DEFAULT_OBJECT_SIZE
        a.st_blocks = -(-size // 512)
        a.st_atime_ns = inode.atime_ns
        a.st_mtime_ns = mtime
        a.st_ctime_ns = max(inode.ctime_ns, mtime if f is not None and f.attrs_dirty else 0)
        return a

    @staticmethod
    def _caller(ctx: Ctx | None, groups: bool = False) -> mds_pb2.Caller:
        if ctx is None:
            return mds_pb2.Caller()
        caller = mds_pb2.Caller(uid=ctx.uid, gid=ctx.gid, umask=ctx.umask)
        if groups:
            caller.groups.extend(_sup_groups(ctx.pid))
        return caller

    async def _inode(self, ino: int) -> mds_pb2.Inode:
        """The inode's attributes: cached (leased), or from the MDS."""
        cached = self.cache.inodes.get(ino)
        if cached is not None:
            self.local_ops += 1
            return cached
        return (await self.mds.request(getattr=mds_pb2.GetAttrOp(ino=ino))).inode

    async def _flush_attrs(self, f: OpenFile) -> None:
        await f.flush_data()
        if f.attrs_dirty:
            f.attrs_dirty = False
            try:
                await self.mds.request(setattr=mds_pb2.SetAttrOp(
                    ino=f.ino, size=f.size, mtime_ns=f.mtime_ns, from_write=True,
                    max_size=f.written_end))
            except BaseException:
                f.attrs_dirty = True
                raise

    # --- what the MDS says (mds/client/mdsclient.py Hooks), in stream order -----------------
    def on_reply(self, req: mds_pb2.MdsRequest, reply: mds_pb2.MdsReply) -> None:
        cache = self.cache
        kind = req.WhichOneof("op")
        if reply.HasField("inode") and reply.inode.ino:
            if kind == "unlink" and reply.inode.nlink == 0 and reply.inode.ino not in self.files:
                cache.inodes.pop(reply.inode.ino, None)
            else:
                cache.remember(reply.inode)
        for inode in reply.dirs:
            if cache.exclusive(inode.ino) is None:
                cache.remember(inode)
            else:  # this mount may have changed it since: read it again when needed
                cache.inodes.pop(inode.ino, None)
        for inode in reply.changed:
            cache.remember(inode)
        for entry in reply.entries:
            cache.remember(entry.inode)
        if kind == "create":
            cache.named(req.create.parent, req.create.name, reply.inode)
        elif kind == "lookup":
            cache.named(req.lookup.parent, req.lookup.name, reply.inode)
        elif kind == "unlink":
            cache.named(req.unlink.parent, req.unlink.name, None)
            if req.unlink.rmdir:
                cache.dirs.pop(reply.inode.ino, None)
        elif kind == "rename":
            op = req.rename
            if op.flags & ns.RENAME_EXCHANGE:
                cache.recalled(op.parent)
                cache.recalled(op.new_parent)
            else:
                cache.named(op.parent, op.name, None)
                cache.named(op.new_parent, op.new_name, reply.inode)
        elif kind == "link":
            cache.named(req.link.new_parent, req.link.new_name, reply.inode)
        if reply.excl_dirs:
            cache.granted(list(reply.excl_dirs))
            if kind == "create" and stat.S_ISDIR(reply.inode.mode) and \
                    reply.inode.ino in reply.excl_dirs:
                cache.made_dir(reply.inode.ino)
        if reply.HasField("delegated"):
            cache.add_delegated(reply.delegated.first, reply.delegated.count)

    def on_background_error(self, req: mds_pb2.MdsRequest, reply: mds_pb2.MdsReply) -> None:
        kind = req.WhichOneof("op")
        op = getattr(req, kind)
        log.error("the MDS refused a change this mount had made already: %s %s: %s "
                  "(errno %d); the directory is read again", kind, op, reply.message,
                  reply.errno)
        for parent in (getattr(op, "parent", 0), getattr(op, "new_parent", 0)):
            if parent:
                self.cache.errors[parent] = reply.errno or E.EIO
                self.cache.recalled(parent)
                self.cache.inodes.pop(parent, None)

    def on_invalidate(self, invs: list[mds_pb2.Invalidate]) -> Awaitable[None]:
        for inv in invs:
            self.cache.invalidated(inv)
            if inv.ino:
                f = self.files.get(inv.ino)
                if f is not None:
                    f.drop_cache()
        return self._kernel_invalidate(invs)

    async def _kernel_invalidate(self, invs: list[mds_pb2.Invalidate]) -> None:
        if self.session is None:
            return
        for inv in invs:
            await self.session.invalidate(inv.ino, inv.parent, inv.name)

    def on_recall(self, ino: int) -> None:
        self.cache.recalled(ino)

    def on_session_lost(self) -> None:
        self.cache.session_lost()

    def cached_inos(self) -> list[int]:
        return list(self.cache.lookups)

    def counted(self, ino: int) -> None:
        """The kernel got an entry for `ino` (fuse_kernel.py calls this)."""
        self.cache.counted(ino)

    def forget(self, items: list[tuple[int, int]]) -> None:
        """The kernel forgot inodes (FORGET, BATCH_FORGET): so do we, and the MDS."""
        gone = [ino for ino, n in items if self.cache.forget(ino, n)]
        if gone:
            self.mds.forget(gone)

    # --- names and attributes ---------------------------------------------------------------
    @_errno
    async def lookup(self, parent_inode: int, name: bytes, ctx=None) -> Attr:
        if name == b"..":
            raise FuseError(E.ENOENT)  # the kernel keeps parents itself
        if len(name) > layout.NAME_MAX:
            raise FuseError(E.ENAMETOOLONG)
        known = self.cache.lookup(parent_inode, name)
        if known is ABSENT:
            self.local_ops += 1
            return Attr(st_ino=0, entry_timeout=LEASE)
        if known is not None:
            self.local_ops += 1
            return self._attrs(known)  # type: ignore[arg-type]
        try:
            reply = await self.mds.request(lookup=mds_pb2.LookupOp(parent=parent_inode,
                                                                   name=name))
        except MdsError as exc:
            if exc.errno != E.ENOENT:
                raise
            # a negative entry the kernel may keep: the MDS leased the directory to us and
            # tells us when another mount creates the name
            return Attr(st_ino=0, entry_timeout=LEASE)
        return self._attrs(reply.inode)

    @_errno
    async def getattr(self, inode: int, ctx=None) -> Attr:
        return self._attrs(await self._inode(inode))

    @_errno
    async def setattr(self, inode: int, attr, fields, fh, ctx) -> Attr:
        op = mds_pb2.SetAttrOp(ino=inode)
        if fields.update_mode:
            op.mode = attr.st_mode
        if fields.update_uid:
            op.uid = attr.st_uid
        if fields.update_gid:
            op.gid = attr.st_gid
        if fields.update_atime:
            op.atime_ns = attr.st_atime_ns  # -1: now
        if fields.update_mtime:
            op.mtime_ns = attr.st_mtime_ns
        f = self.files.get(inode)
        if fields.update_size:
            if f is not None:
                await self._flush_attrs(f)  # written data first, with its size
                f.drop_cache()
            old = await self.mds.request(getattr=mds_pb2.GetAttrOp(ino=inode))
            op.size = attr.st_size
            reply = await self.mds.request(caller=self._caller(ctx), setattr=op)
            await self.data.truncate(inode, old.inode.max_size, attr.st_size,
                                     old.inode.object_size or layout.DEFAULT_OBJECT_SIZE)
            if f is not None:
                f.size = attr.st_size
        else:
            if f is not None and f.attrs_dirty and fields.update_mtime:
                await self._flush_attrs(f)
            reply = await self.mds.request(caller=self._caller(ctx), setattr=op)
        return self._attrs(reply.inode)

    @_errno
    async def readlink(self, inode: int, ctx) -> bytes:
        found = await self._inode(inode)
        if not stat.S_ISLNK(found.mode):
            raise FuseError(E.EINVAL)
        return found.symlink

    async def _create(self, parent: int, name: bytes, mode: int, ctx, *, rdev: int = 0,
                      target: bytes = b"", exclusive: bool = True, open_: bool = False
                      ) -> mds_pb2.Inode:
        op = mds_pb2.CreateOp(parent=parent, name=name, mode=mode, rdev=rdev, symlink=target,
                              exclusive=exclusive, open=open_)
        caller = self._caller(ctx, groups=bool(mode & stat.S_ISGID))
        made = await self._create_here(op, caller)
        if made is not None:
            return made
        reply = await self.mds.request(caller=caller, create=op)
        return reply.inode

    async def _own_dir(self, ino: int) -> tuple[DirState, mds_pb2.Inode] | None:
        """The directory's state and inode when this mount holds it and may change it here
        (None: ask the MDS). Nothing may await between this and the change it allows."""
        if self.cache.exclusive(ino) is None:
            return None
        if ino not in self.cache.inodes:
            await self._inode(ino)
        await self.mds.wait_room()
        d, inode = self.cache.exclusive(ino), self.cache.inodes.get(ino)
        return (d, inode) if d is not None and inode is not None else None

    async def _create_here(self, op: mds_pb2.CreateOp, caller: mds_pb2.Caller
                           ) -> mds_pb2.Inode | None:
        """Make the inode in this mount's cache and send the create in the background, when
        the parent is this mount's (None: ask the MDS)."""
        cache = self.cache
        if not cache.has_ino():
            return None
        own = await self._own_dir(op.parent)
        if own is None or not cache.has_ino():
            return None
        d, parent = own
        if op.name in d.names:
            raise FuseError(E.EEXIST)
        now = time.time_ns()
        ino = cache.take_ino()
        inode = ns.new_inode(parent, op, caller, ino, now)
        op.ino = ino
        ftype = stat.S_IFMT(inode.mode)
        ns.touch_parent(parent, ftype, now, 1)
        d.names[op.name] = (ino, ftype)
        d.changes += 1
        cache.remember(inode)
        if ftype == stat.S_IFDIR:
            cache.made_dir(ino)
        self.mds.background(caller, now, create=op)
        self.local_ops += 1
        return inode

    @_errno
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx
                    ) -> Attr:
        return self._attrs(await self._create(parent_inode, name, mode, ctx, rdev=rdev))

    @_errno
    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx
                    ) -> Attr:
        return self._attrs(await self._create(parent_inode, name, stat.S_IFDIR |
                                              stat.S_IMODE(mode), ctx))

    @_errno
    async def symlink(self, parent_inode: int, name: bytes, target: bytes, ctx
                      ) -> Attr:
        return self._attrs(await self._create(parent_inode, name, stat.S_IFLNK | 0o777, ctx,
                                              target=target))

    def _drop_link_here(self, ino: int, now: int) -> None:
        inode = self.cache.inodes.get(ino)
        if inode is None:
            return
        inode.nlink = max(0, inode.nlink - 1)
        inode.ctime_ns = now
        if inode.nlink == 0 and ino not in self.files:
            self.cache.inodes.pop(ino, None)

    @_errno
    async def unlink(self, parent_inode: int, name: bytes, ctx) -> None:
        d = self.cache.exclusive(parent_inode)
        entry = d.names.get(name) if d is not None else None
        if entry is not None and entry[1] != stat.S_IFDIR:
            own = await self._own_dir(parent_inode)
            if own is not None and own[0].names.get(name) == entry:
                d, parent = own
                now = time.time_ns()
                del d.names[name]
                d.changes += 1
                ns.touch_parent(parent, entry[1], now, -1)
                self._drop_link_here(entry[0], now)
                self.mds.background(now_ns=now, unlink=mds_pb2.UnlinkOp(parent=parent_inode,
                                                                        name=name))
                self.local_ops += 1
                return
        await self.mds.request(unlink=mds_pb2.UnlinkOp(parent=parent_inode, name=name))

    @_errno
    async def rmdir(self, parent_inode: int, name: bytes, ctx) -> None:
        await self.mds.request(unlink=mds_pb2.UnlinkOp(parent=parent_inode, name=name,
                                                       rmdir=True))

    async def _rename_here(self, p1: int, n1: bytes, p2: int, n2: bytes, flags: int
                           ) -> bool:
        """Rename in directories this mount holds, sent in the background (False: ask)."""
        if flags & ~ns.RENAME_NOREPLACE or await self._own_dir(p1) is None or \
                await self._own_dir(p2) is None:
            return False
        cache = self.cache
        d1, d2 = cache.exclusive(p1), cache.exclusive(p2)
        parents = [cache.inodes.get(p1), cache.inodes.get(p2)]
        if d1 is None or d2 is None or None in parents:
            return False
        src, dst = d1.names.get(n1), d2.names.get(n2)
        if src is None or (src[1] == stat.S_IFDIR and p1 != p2):
            return False
        if dst is not None:
            if flags & ns.RENAME_NOREPLACE:
                raise FuseError(E.EEXIST)
            if stat.S_IFDIR in (src[1], dst[1]) or dst[0] == src[0]:
                return False
        now = time.time_ns()
        del d1.names[n1]
        d2.names[n2] = src
        d1.changes += 1
        d2.changes += 1
        ns.touch_parent(parents[0], src[1], now, -1)  # type: ignore[arg-type]
        ns.touch_parent(parents[1], src[1], now, 1)  # type: ignore[arg-type]
        moved = cache.inodes.get(src[0])
        if moved is not None:
            moved.ctime_ns = now
        if dst is not None:
            self._drop_link_here(dst[0], now)
        self.mds.background(now_ns=now, rename=mds_pb2.RenameOp(
            parent=p1, name=n1, new_parent=p2, new_name=n2, flags=flags))
        self.local_ops += 1
        return True

    @_errno
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx) -> None:
        if len(name_new) > layout.NAME_MAX:
            raise FuseError(E.ENAMETOOLONG)
        if await self._rename_here(parent_inode_old, name_old, parent_inode_new, name_new,
                                   flags):
            return
        await self.mds.request(rename=mds_pb2.RenameOp(
            parent=parent_inode_old, name=name_old, new_parent=parent_inode_new,
            new_name=name_new, flags=flags))

    @_errno
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes, ctx
                   ) -> Attr:
        reply = await self.mds.request(link=mds_pb2.LinkOp(ino=inode,
                                                           new_parent=new_parent_inode,
                                                           new_name=new_name))
        return self._attrs(reply.inode)

    # --- files ------------------------------------------------------------------------------
    def _file(self, inode: mds_pb2.Inode) -> OpenFile:
        f = self.files.get(inode.ino)
        if f is None:
            f = self.files[inode.ino] = OpenFile(
                inode.ino, inode.size, inode.object_size or self.config.client_object_size,
                self.data, self.config.client_writebehind, self.config.client_readahead)
        elif not f.attrs_dirty:
            f.size = inode.size
        return f

    def _handle(self, f: OpenFile, flags: int) -> int:
        fh = self._next_fh
        self._next_fh += 1
        f.handles += 1
        self.handles[fh] = (f, flags)
        self.mds.open_inos[f.ino] = self.mds.open_inos.get(f.ino, 0) + 1
        return fh

    @_errno
    async def open(self, inode: int, flags: int, ctx) -> Opened:
        cached = self.cache.inodes.get(inode)
        if cached is not None:
            # leased: nobody changed it since, so this is what the MDS would say; the open
            # is counted there in the background (an unlinked file stays while open)
            await self.mds.wait_room()
            self.mds.background(open=mds_pb2.OpenOp(ino=inode, flags=flags))
            found = cached
            self.local_ops += 1
        else:
            found = (await self.mds.request(open=mds_pb2.OpenOp(ino=inode, flags=flags))).inode
        f = self._file(found)
        if f.handles == 0:
            f.drop_cache()
        fh = self._handle(f, flags)
        if flags & os.O_TRUNC and (flags & os.O_ACCMODE) != os.O_RDONLY and f.size:
            await self._truncate(f, 0, ctx)
        # the kernel keeps its page cache only while this mount has the file open
        return Opened(fh=fh, keep_cache=f.handles > 1)

    async def _truncate(self, f: OpenFile, size: int, ctx) -> None:
        await self._flush_attrs(f)
        reply = await self.mds.request(caller=self._caller(ctx), setattr=mds_pb2.SetAttrOp(
            ino=f.ino, size=size))
        await self.data.truncate(f.ino, max(reply.inode.max_size, f.written_end), size,
                                 f.object_size)
        f.size = size
        f.drop_cache()

    @_errno
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int, ctx
                     ) -> tuple[Opened, Attr]:
        inode = await self._create(parent_inode, name, stat.S_IFREG | stat.S_IMODE(mode), ctx,
                                   exclusive=bool(flags & os.O_EXCL), open_=True)
        f = self._file(inode)
        fh = self._handle(f, flags)
        return Opened(fh=fh), self._attrs(inode)

    @_errno
    async def read(self, fh: int, off: int, size: int) -> bytes:
        f, _ = self.handles[fh]
        return await f.read(off, size)

    @_errno
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        f, flags = self.handles[fh]
        if flags & os.O_APPEND:
            off = f.size
        await f.write(off, buf, time.time_ns())
        return len(buf)

    @_errno
    async def flush(self, fh: int, lock_owner: int = 0) -> None:
        f, _ = self.handles[fh]
        await self._flush_attrs(f)
        # a close drops the closer's POSIX locks on the file (the kernel leaves it to us)
        if any(lk.ino == f.ino and lk.owner == lock_owner and not lk.flock
               for lk in self.locks):
            await self._unlock(f.ino, lock_owner, False)

    async def _sync_metadata(self, dir_ino: int = 0) -> None:
        await self.mds.wait_safe()
        failed = self.cache.errors.pop(dir_ino, 0) if dir_ino else 0
        if failed:
            raise FuseError(E.EIO)

    @_errno
    async def fsync(self, fh: int, datasync: bool) -> None:
        f, _ = self.handles[fh]
        await self._flush_attrs(f)
        await self._sync_metadata()

    @_errno
    async def release(self, fh: int, flock_owner: int | None = None) -> None:
        f, _ = self.handles.pop(fh)
        f.handles -= 1
        if flock_owner is not None:
            await self._unlock(f.ino, flock_owner, True)
        try:
            await self._flush_attrs(f)
        finally:
            if f.handles == 0:
                self.files.pop(f.ino, None)
            left = self.mds.open_inos.get(f.ino, 1) - 1
            if left > 0:
                self.mds.open_inos[f.ino] = left
            else:
                self.mds.open_inos.pop(f.ino, None)
            self.mds.background(release=mds_pb2.ReleaseOp(ino=f.ino))

    # --- directories ------------------------------------------------------------------------
    @_errno
    async def opendir(self, inode: int, ctx) -> int:
        fh = self._next_fh
        self._next_fh += 1
        d = self.cache.dirs.get(inode)
        self.dirs[fh] = DirHandle(inode, d.changes if d is not None else -1)
        return fh

    @_errno
    async def readdir(self, fh: int, offset: int) -> list[tuple[bytes, Attr]]:
        """Entries from `offset` on ("." and ".." first), fetched from the MDS in pages."""
        h = self.dirs[fh]
        if not h.entries:
            me = await self._inode(h.ino)
            h.entries = [(b".", me), (b"..", me)]
        while h.more and len(h.entries) < offset + READDIR_PAGE:
            after = h.entries[-1][0] if len(h.entries) > 2 else b""
            reply = await self.mds.request(readdir=mds_pb2.ReaddirOp(ino=h.ino, after=after,
                                                                     max=READDIR_PAGE))
            h.entries.extend((e.name, e.inode) for e in reply.entries)
            h.more = reply.more and bool(reply.entries)
            if not h.more and len(h.entries) <= LISTING_MAX:
                self.cache.listed(h.ino, {n: (i.ino, stat.S_IFMT(i.mode))
                                          for n, i in h.entries[2:]}, h.changes)
        return [(name, self._attrs(inode))
                for name, inode in h.entries[offset:offset + READDIR_PAGE]]

    async def releasedir(self, fh: int) -> None:
        self.dirs.pop(fh, None)

    @_errno
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        h = self.dirs.get(fh)
        await self._sync_metadata(h.ino if h is not None else 0)

    # --- the rest ---------------------------------------------------------------------------
    @_errno
    async def statfs(self, ctx) -> Any:
        now = time.monotonic()
        if self._statfs is None or now - self._statfs[0] > STATFS_TTL:
            stats = await self.mds.rados.cluster_stats()
            s = StatVfs()
            s.f_bsize = s.f_frsize = 4096
            total = stats["kb"] * 1024
            avail = stats["kb_avail"] * 1024
            s.f_blocks = total // s.f_frsize
            s.f_bfree = s.f_bavail = avail // s.f_frsize
            s.f_files = max(stats["num_objects"], 1) + 1_000_000
            s.f_ffree = s.f_favail = 1_000_000
            s.f_namemax = layout.NAME_MAX
            self._statfs = (now, s)
        return self._statfs[1]

    @_errno
    async def setxattr(self, inode: int, name: bytes, value: bytes, flags: int, ctx) -> None:
        await self.mds.request(setxattr=mds_pb2.SetXattrOp(ino=inode, name=name, value=value,
                                                           flags=flags))

    @_errno
    async def getxattr(self, inode: int, name: bytes, ctx) -> bytes:
        for kv in (await self._inode(inode)).xattrs:
            if kv.key == name:
                return kv.value
        raise FuseError(E.ENODATA)

    @_errno
    async def listxattr(self, inode: int, ctx) -> list[bytes]:
        return [kv.key for kv in (await self._inode(inode)).xattrs]

    @_errno
    async def removexattr(self, inode: int, name: bytes, ctx) -> None:
        await self.mds.request(removexattr=mds_pb2.RemoveXattrOp(ino=inode, name=name))

    async def flush_all(self) -> None:
        for f in list(self.files.values()):
            await self._flush_attrs(f)

    # --- locks and fallocate -----------------------------------------------------------------
    def _lock_info(self, ino: int, spec: LockSpec) -> mds_pb2.LockInfo:
        return mds_pb2.LockInfo(ino=ino, owner=spec.owner, pid=spec.pid, start=spec.start,
                                end=min(spec.end, (1 << 64) - 1), type=spec.type,
                                flock=spec.flock)

    @_errno
    async def getlk(self, ino: int, fh: int, spec: LockSpec) -> LockSpec:
        reply = await self.mds.request(getlk=mds_pb2.GetLockOp(lock=self._lock_info(ino,
                                                                                    spec)))
        lk = reply.lock
        return LockSpec(lk.owner, lk.start, lk.end, lk.type, lk.pid, lk.flock)

    @_errno
    async def setlk(self, ino: int, fh: int, spec: LockSpec, wait: bool) -> None:
        info = self._lock_info(ino, spec)
        if spec.type == 2:
            await self._unlock(ino, spec.owner, spec.flock, spec.start, info.end)
            return
        await self.mds.request(setlk=mds_pb2.SetLockOp(lock=info, wait=wait))
        self.locks.append(info)

    async def _unlock(self, ino: int, owner: int, flock: bool, start: int = 0,
                      end: int = (1 << 64) - 1) -> None:
        await self.mds.request(setlk=mds_pb2.SetLockOp(lock=mds_pb2.LockInfo(
            ino=ino, owner=owner, start=start, end=end, type=2, flock=flock)))
        self.locks[:] = [lk for lk in self.locks if not (
            lk.ino == ino and lk.owner == owner and lk.flock == flock
            and start <= lk.start and lk.end <= end)]

    @_errno
    async def fallocate(self, fh: int, offset: int, length: int, mode: int) -> None:
        f, _ = self.handles[fh]
        if mode & ~(FALLOC_KEEP_SIZE | FALLOC_PUNCH_HOLE | FALLOC_ZERO_RANGE):
            raise FuseError(E.EOPNOTSUPP)  # collapse/insert range, unshare
        if mode & FALLOC_PUNCH_HOLE and not mode & FALLOC_KEEP_SIZE:
            raise FuseError(E.EINVAL)
        await f.flush_data()
        f.drop_cache()
        if mode & (FALLOC_PUNCH_HOLE | FALLOC_ZERO_RANGE):
            # holes read as zeros: punching removes or zeroes the objects' bytes
            await self.data.zero(f.ino, offset, length, max(f.size, offset + length),
                                 f.object_size)
        end = offset + length
        if not mode & FALLOC_KEEP_SIZE and end > f.size:
            f.size = end  # space is not reserved ahead (thin, as RADOS is), the size grows
            f.mtime_ns = time.time_ns()
            f.attrs_dirty = True
            await self._flush_attrs(f)
        elif mode & (FALLOC_PUNCH_HOLE | FALLOC_ZERO_RANGE):
            f.mtime_ns = time.time_ns()
            f.attrs_dirty = True
            await self._flush_attrs(f)


FALLOC_KEEP_SIZE, FALLOC_PUNCH_HOLE, FALLOC_ZERO_RANGE = 1, 2, 16


class StatVfs:
    f_bsize = f_frsize = f_blocks = f_bfree = f_bavail = 0
    f_files = f_ffree = f_favail = 0
    f_namemax = 255


def _sup_groups(pid: int) -> list[int]:
    """The caller's supplementary groups (for set-group-ID rules on new files)."""
    try:
        for line in open(f"/proc/{pid}/status", encoding="ascii"):  # noqa: SIM115
            if line.startswith("Groups:"):
                return [int(g) for g in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return []
