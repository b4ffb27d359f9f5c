"""The FUSE file system (pyfuse3, inode-based, on asyncio): each kernel request becomes a
metadata request to the MDS or data I/O straight to the OSDs.

The kernel caches names and attributes for `entry_timeout`/`attr_timeout`; the MDS grants
that as a lease and, when another client changes the inode or the directory, tells this mount
to drop it (pyfuse3.invalidate_*), so mounts see each other's changes at once while a lone
mount is served from the kernel's cache. Permission checks on paths are the kernel's
(`default_permissions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno as E
import logging
import os
import stat
import time
from typing import Any

import pyfuse3

from mds import layout
from mds.client.files import DataIO, OpenFile
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
        except pyfuse3.FUSEError:
            raise
        except MdsError as exc:
            raise pyfuse3.FUSEError(exc.errno or E.EIO) from None
        except StoreFull:
            raise pyfuse3.FUSEError(E.ENOSPC) from None
        except LoligoError as exc:
            log.warning("%s: %s", fn.__name__, exc)
            raise pyfuse3.FUSEError(E.EIO) from None
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or E.EIO) from None
        except Exception:
            log.exception("%s failed", fn.__name__)
            raise pyfuse3.FUSEError(E.EIO) from None
    wrapper.__name__ = fn.__name__
    return wrapper


class DirHandle:
    def __init__(self, ino: int) -> None:
        self.ino = ino
        self.entries: list[tuple[bytes, mds_pb2.Inode]] = []
        self.more = True


class LoligoFs(pyfuse3.Operations):
    supports_dot_lookup = True
    enable_writeback_cache = False

    def __init__(self, mds: MdsClient, data: DataIO, config: Any) -> None:
        super().__init__()
        self.mds = mds
        self.data = data
        self.config = config
        self.files: dict[int, OpenFile] = {}
        self.handles: dict[int, tuple[OpenFile, int]] = {}  # fh -> (file, open flags)
        self.dirs: dict[int, DirHandle] = {}
        self._next_fh = 1
        self._statfs: tuple[float, pyfuse3.StatvfsData] | None = None
        mds.on_invalidate = self._invalidate

    # --- helpers ----------------------------------------------------------------------------
    def _attrs(self, inode: mds_pb2.Inode) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
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
            if f.attrs_dirty:
                size, mtime = f.size, max(mtime, f.mtime_ns)
            else:
                f.size = size
            a.attr_timeout = 0  # being written here: sizes come from this mount
        a.st_size = size
        a.st_blksize = inode.object_size or layout.DEFAULT_OBJECT_SIZE
        a.st_blocks = -(-size // 512)
        a.st_atime_ns = inode.atime_ns
        a.st_mtime_ns = mtime
        a.st_ctime_ns = max(inode.ctime_ns, mtime if f is not None and f.attrs_dirty else 0)
        a.st_birthtime_ns = inode.btime_ns
        return a

    @staticmethod
    def _caller(ctx: pyfuse3.RequestContext | None, groups: bool = False) -> mds_pb2.Caller:
        if ctx is None:
            return mds_pb2.Caller()
        caller = mds_pb2.Caller(uid=ctx.uid, gid=ctx.gid, umask=ctx.umask)
        if groups:
            with contextlib.suppress(OSError, ValueError):
                caller.groups.extend(pyfuse3.get_sup_groups(ctx.pid))
        return caller

    def _invalidate(self, inv: mds_pb2.Invalidate) -> None:
        """Another mount changed something this one may have cached (called from the
        session stream, never from a request handler: the kernel may hold locks)."""
        if inv.name:
            with contextlib.suppress(Exception):
                pyfuse3.invalidate_entry_async(inv.parent, inv.name, ignore_enoent=True)
        if inv.ino:
            f = self.files.get(inv.ino)
            if f is not None:
                f.drop_cache()
            asyncio.get_running_loop().run_in_executor(None, _invalidate_inode, inv.ino)

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
    async def lookup(self, parent_inode: int, name: bytes, ctx=None) -> pyfuse3.EntryAttributes:
        if name == b"..":
            raise pyfuse3.FUSEError(E.ENOENT)  # the kernel keeps parents itself
        reply = await self.mds.request(lookup=mds_pb2.LookupOp(parent=parent_inode, name=name))
        return self._attrs(reply.inode)

    async def forget(self, inode_list) -> None:
        return None

    @_errno
    async def getattr(self, inode: int, ctx=None) -> pyfuse3.EntryAttributes:
        reply = await self.mds.request(getattr=mds_pb2.GetAttrOp(ino=inode))
        return self._attrs(reply.inode)

    @_errno
    async def setattr(self, inode: int, attr, fields, fh, ctx) -> pyfuse3.EntryAttributes:
        op = mds_pb2.SetAttrOp(ino=inode)
        if fields.update_mode:
            op.mode = attr.st_mode
        if fields.update_uid:
            op.uid = attr.st_uid
        if fields.update_gid:
            op.gid = attr.st_gid
        if fields.update_atime:
            op.atime_ns = attr.st_atime_ns
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
            raise pyfuse3.FUSEError(E.EINVAL)
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
                    ) -> pyfuse3.EntryAttributes:
        return self._attrs(await self._create(parent_inode, name, mode, ctx, rdev=rdev))

    @_errno
    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx
                    ) -> pyfuse3.EntryAttributes:
        return self._attrs(await self._create(parent_inode, name, stat.S_IFDIR |
                                              stat.S_IMODE(mode), ctx))

    @_errno
    async def symlink(self, parent_inode: int, name: bytes, target: bytes, ctx
                      ) -> pyfuse3.EntryAttributes:
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
                   ) -> pyfuse3.EntryAttributes:
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
    async def open(self, inode: int, flags: int, ctx) -> pyfuse3.FileInfo:
        reply = await self.mds.request(open=mds_pb2.OpenOp(ino=inode, flags=flags))
        f = self._file(reply.inode)
        if f.handles == 0:
            f.drop_cache()
        fh = self._handle(f, flags)
        if flags & os.O_TRUNC and (flags & os.O_ACCMODE) != os.O_RDONLY and f.size:
            await self._truncate(f, 0, ctx)
        # the kernel keeps its page cache only while this mount has the file open
        return pyfuse3.FileInfo(fh=fh, keep_cache=f.handles > 1)

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
                     ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        inode = await self._create(parent_inode, name, stat.S_IFREG | stat.S_IMODE(mode), ctx,
                                   exclusive=bool(flags & os.O_EXCL), open_=True)
        f = self._file(inode)
        fh = self._handle(f, flags)
        return pyfuse3.FileInfo(fh=fh), self._attrs(inode)

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
    async def flush(self, fh: int) -> None:
        f, _ = self.handles[fh]
        await self._flush_attrs(f)

    @_errno
    async def fsync(self, fh: int, datasync: bool) -> None:
        f, _ = self.handles[fh]
        await self._flush_attrs(f)

    @_errno
    async def release(self, fh: int) -> None:
        f, _ = self.handles.pop(fh)
        f.handles -= 1
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
    async def readdir(self, fh: int, start_id: int, token) -> None:
        d = self.dirs[fh]
        i = start_id
        while True:
            while i >= len(d.entries):
                if not d.more:
                    return
                after = d.entries[-1][0] if d.entries else b""
                reply = await self.mds.request(readdir=mds_pb2.ReaddirOp(ino=d.ino, after=after,
                                                                         max=512))
                d.entries.extend((e.name, e.inode) for e in reply.entries)
                d.more = reply.more and bool(reply.entries)
            name, inode = d.entries[i]
            if not pyfuse3.readdir_reply(token, name, self._attrs(inode), i + 1):
                return
            i += 1

    async def releasedir(self, fh: int) -> None:
        self.dirs.pop(fh, None)

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        return None  # metadata is durable in the journal when a call returns

    # --- the rest ---------------------------------------------------------------------------
    @_errno
    async def statfs(self, ctx) -> pyfuse3.StatvfsData:
        now = time.monotonic()
        if self._statfs is None or now - self._statfs[0] > STATFS_TTL:
            stats = await self.mds.rados.cluster_stats()
            s = pyfuse3.StatvfsData()
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
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx) -> None:
        await self.mds.request(setxattr=mds_pb2.SetXattrOp(ino=inode, name=name, value=value))

    @_errno
    async def getxattr(self, inode: int, name: bytes, ctx) -> bytes:
        reply = await self.mds.request(getattr=mds_pb2.GetAttrOp(ino=inode))
        for kv in reply.inode.xattrs:
            if kv.key == name:
                return kv.value
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

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


def _invalidate_inode(ino: int) -> None:
    with contextlib.suppress(OSError, KeyError):  # the kernel holds nothing of it any more
        pyfuse3.invalidate_inode(ino, attr_only=False)
