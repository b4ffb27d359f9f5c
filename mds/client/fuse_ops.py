"""The file system a mount serves (mds/client/fuse_kernel.py speaks FUSE to the kernel): each
kernel request becomes a metadata request to the MDS or data I/O straight to the OSDs.

The kernel caches names and attributes for `entry_timeout`/`attr_timeout`; the MDS grants
that as a lease and, when another client changes the inode or the directory, tells this mount
to drop it (FUSE notifications), so mounts see each other's changes at once while a lone
mount is served from the kernel's cache. Permission checks on paths are the kernel's
(`default_permissions`). File locks (fcntl and flock) are the MDS's, so they hold across
mounts.
"""

from __future__ import annotations

import errno as E
import logging
import os
import stat
import time
from typing import Any

from mds import layout
from mds.client.files import DataIO, OpenFile
from mds.client.fuse_kernel import Attr, Ctx, FuseError, LockSpec, Opened
from mds.client.mdsclient import MdsClient, MdsError
from rados_py.errors import LoligoError, StoreFull
from rados_py.proto.loligo import mds_pb2

log = logging.getLogger(__name__)
LEASE = 30.0  # seconds the kernel may cache what the MDS leased to this mount
STATFS_TTL = 2.0


def _errno(fn):
    """Map our errors to what the application gets (an errno, never a traceback)."""
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except FuseError:
            raise
        except MdsError as exc:
            raise FuseError(exc.errno or E.EIO) from None
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
    def __init__(self, ino: int) -> None:
        self.ino = ino
        self.entries: list[tuple[bytes, mds_pb2.Inode]] = []
        self.more = True


class LoligoFs:
    def __init__(self, mds: MdsClient, data: DataIO, config: Any) -> None:
        self.mds = mds
        self.data = data
        self.config = config
        self.files: dict[int, OpenFile] = {}
        self.handles: dict[int, tuple[OpenFile, int]] = {}  # fh -> (file, open flags)
        self.dirs: dict[int, DirHandle] = {}
        self._next_fh = 1
        self._statfs: tuple[float, Any] | None = None
        self.session: Any = None  # the FuseSession, for notifications
        self.locks: list[mds_pb2.LockInfo] = []  # granted to this mount (reclaimed after a
        mds.held_locks = self.locks               # takeover)
        mds.on_invalidate = self._invalidate

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

    async def _invalidate(self, inv: mds_pb2.Invalidate) -> None:
        """Another mount changed something this one may have cached: drop it (returns once
        the kernel has)."""
        if self.session is None:
            return
        if inv.ino:
            f = self.files.get(inv.ino)
            if f is not None:
                f.drop_cache()
        await self.session.invalidate(inv.ino, inv.parent, inv.name)

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

    # --- names and attributes ---------------------------------------------------------------
    @_errno
    async def lookup(self, parent_inode: int, name: bytes, ctx=None) -> Attr:
        if name == b"..":
            raise FuseError(E.ENOENT)  # the kernel keeps parents itself
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
        reply = await self.mds.request(getattr=mds_pb2.GetAttrOp(ino=inode))
        return self._attrs(reply.inode)

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
        reply = await self.mds.request(getattr=mds_pb2.GetAttrOp(ino=inode))
        if not stat.S_ISLNK(reply.inode.mode):
            raise FuseError(E.EINVAL)
        return reply.inode.symlink

    async def _create(self, parent: int, name: bytes, mode: int, ctx, *, rdev: int = 0,
                      target: bytes = b"", exclusive: bool = True, open_: bool = False
                      ) -> mds_pb2.Inode:
        op = mds_pb2.CreateOp(parent=parent, name=name, mode=mode, rdev=rdev, symlink=target,
                              exclusive=exclusive, open=open_)
        reply = await self.mds.request(caller=self._caller(ctx, groups=True), create=op)
        return reply.inode

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

    @_errno
    async def unlink(self, parent_inode: int, name: bytes, ctx) -> None:
        await self.mds.request(unlink=mds_pb2.UnlinkOp(parent=parent_inode, name=name))

    @_errno
    async def rmdir(self, parent_inode: int, name: bytes, ctx) -> None:
        await self.mds.request(unlink=mds_pb2.UnlinkOp(parent=parent_inode, name=name,
                                                       rmdir=True))

    @_errno
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx) -> None:
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
        reply = await self.mds.request(open=mds_pb2.OpenOp(ino=inode, flags=flags))
        f = self._file(reply.inode)
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

    @_errno
    async def fsync(self, fh: int, datasync: bool) -> None:
        f, _ = self.handles[fh]
        await self._flush_attrs(f)

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
            await self.mds.request(release=mds_pb2.ReleaseOp(ino=f.ino))

    # --- directories ------------------------------------------------------------------------
    @_errno
    async def opendir(self, inode: int, ctx) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self.dirs[fh] = DirHandle(inode)
        return fh

    @_errno
    async def readdir(self, fh: int, offset: int) -> list[tuple[bytes, Attr]]:
        """Entries from `offset` on ("." and ".." first), fetched from the MDS in pages."""
        d = self.dirs[fh]
        if not d.entries:
            me = await self.mds.request(getattr=mds_pb2.GetAttrOp(ino=d.ino))
            d.entries = [(b".", me.inode), (b"..", me.inode)]
        while d.more and len(d.entries) < offset + 512:
            after = d.entries[-1][0] if len(d.entries) > 2 else b""
            reply = await self.mds.request(readdir=mds_pb2.ReaddirOp(ino=d.ino, after=after,
                                                                     max=512))
            d.entries.extend((e.name, e.inode) for e in reply.entries)
            d.more = reply.more and bool(reply.entries)
        return [(name, self._attrs(inode)) for name, inode in d.entries[offset:offset + 512]]

    async def releasedir(self, fh: int) -> None:
        self.dirs.pop(fh, None)

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        return None  # metadata is durable in the journal when a call returns

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
        reply = await self.mds.request(getattr=mds_pb2.GetAttrOp(ino=inode))
        for kv in reply.inode.xattrs:
            if kv.key == name:
                return kv.value
        raise FuseError(E.ENODATA)

    @_errno
    async def listxattr(self, inode: int, ctx) -> list[bytes]:
        reply = await self.mds.request(getattr=mds_pb2.GetAttrOp(ino=inode))
        return [kv.key for kv in reply.inode.xattrs]

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
