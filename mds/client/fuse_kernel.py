"""The FUSE kernel protocol spoken directly over /dev/fuse, on asyncio: no libfuse.

Why not pyfuse3: it has no handlers for fallocate (punch hole), fcntl record locks or flock,
and a file system shared by several mounts needs those answered by the file system, not by
each kernel alone. The protocol is small and stable (linux/fuse.h): every request is a header
(length, opcode, unique id, node id, caller uid/gid/pid) and an opcode's struct; every reply
is a header (length, error, unique id) and the opcode's answer. Notifications (unique 0) tell
the kernel to drop cached attributes, pages or names.

`FuseSession` mounts (mount(2), as root), reads requests as the device becomes readable, runs
each as an asyncio task calling the `ops` object (mds/client/fuse_ops.py) and writes replies.
An interrupted request's task is cancelled and answered EINTR.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno as E
import logging
import os
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAX_WRITE = 1 << 20
MAX_PAGES = MAX_WRITE // 4096
BUFFER = MAX_WRITE + 4096
OUR_MINOR = 31

# opcodes
(LOOKUP, FORGET, GETATTR, SETATTR, READLINK, SYMLINK, MKNOD, MKDIR, UNLINK, RMDIR, RENAME,
 LINK, OPEN, READ, WRITE, STATFS, RELEASE, FSYNC, SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR,
 FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR, FSYNCDIR, GETLK, SETLK, SETLKW, ACCESS, CREATE,
 INTERRUPT, BMAP, DESTROY) = (1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20,
                              21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36,
                              37, 38)
BATCH_FORGET, FALLOCATE, READDIRPLUS, RENAME2, LSEEK = 42, 43, 44, 45, 46
# INIT flags
ASYNC_READ, POSIX_LOCKS, ATOMIC_O_TRUNC, BIG_WRITES = 1, 2, 8, 32
FLOCK_LOCKS, AUTO_INVAL_DATA, DO_READDIRPLUS = 1 << 10, 1 << 12, 1 << 13
PARALLEL_DIROPS, MAX_PAGES_FLAG = 1 << 18, 1 << 22
# setattr valid bits
FATTR_MODE, FATTR_UID, FATTR_GID, FATTR_SIZE, FATTR_ATIME, FATTR_MTIME = 1, 2, 4, 8, 16, 32
FATTR_FH, FATTR_ATIME_NOW, FATTR_MTIME_NOW = 64, 128, 256
FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE = 1, 2
RELEASE_FLOCK_UNLOCK = 2
LK_FLOCK = 1
NOTIFY_INVAL_INODE, NOTIFY_INVAL_ENTRY = 2, 3

IN_HEADER = struct.Struct("<IIQQIIIHH")
OUT_HEADER = struct.Struct("<IiQ")
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")
ENTRY_OUT = struct.Struct("<QQQQII")  # + attr
ATTR_OUT = struct.Struct("<QII")  # + attr
INIT_IN = struct.Struct("<IIII")
INIT_OUT = struct.Struct("<IIIIHHIIHHI28x")
SETATTR_IN = struct.Struct("<IIQQQQQQIIIIIIII")
OPEN_IN = struct.Struct("<II")
OPEN_OUT = struct.Struct("<QII")
READ_IN = struct.Struct("<QQIIQII")
WRITE_IN = struct.Struct("<QQIIQII")
WRITE_OUT = struct.Struct("<II")
RELEASE_IN = struct.Struct("<QIIQ")
FLUSH_IN = struct.Struct("<QIIQ")
FSYNC_IN = struct.Struct("<QII")
MKNOD_IN = struct.Struct("<IIII")
MKDIR_IN = struct.Struct("<II")
RENAME_IN = struct.Struct("<Q")
RENAME2_IN = struct.Struct("<QII")
LINK_IN = struct.Struct("<Q")
CREATE_IN = struct.Struct("<IIII")
SETXATTR_IN = struct.Struct("<II")
GETXATTR_IN = struct.Struct("<II")
GETXATTR_OUT = struct.Struct("<II")
LK_IN = struct.Struct("<QQQQIIII")
LK_OUT = struct.Struct("<QQII")
FALLOCATE_IN = struct.Struct("<QQQII")
STATFS_OUT = struct.Struct("<QQQQQIIII24x")
DIRENT = struct.Struct("<QQII")
FORGET_ONE = struct.Struct("<QQ")
FORGET_IN = struct.Struct("<Q")
BATCH_FORGET_IN = struct.Struct("<II")
INTERRUPT_IN = struct.Struct("<Q")
INVAL_INODE = struct.Struct("<Qqq")
INVAL_ENTRY = struct.Struct("<QII")
ACCESS_IN = struct.Struct("<II")


class FuseError(Exception):
    """Answer the request with this errno."""

    def __init__(self, errno: int) -> None:
        super().__init__(errno)
        self.errno = errno


@dataclass
class Ctx:
    uid: int
    gid: int
    pid: int
    umask: int = 0


@dataclass
class Attr:
    """What the kernel is told about an inode, and how long it may believe it."""

    st_ino: int = 0
    st_mode: int = 0
    st_nlink: int = 0
    st_uid: int = 0
    st_gid: int = 0
    st_rdev: int = 0
    st_size: int = 0
    st_blocks: int = 0
    st_blksize: int = 4096
    st_atime_ns: int = 0
    st_mtime_ns: int = 0
    st_ctime_ns: int = 0
    entry_timeout: float = 0.0
    attr_timeout: float = 0.0
    generation: int = 0


@dataclass
class SetattrFields:
    update_mode: bool = False
    update_uid: bool = False
    update_gid: bool = False
    update_size: bool = False
    update_atime: bool = False
    update_mtime: bool = False


@dataclass
class Opened:
    fh: int
    keep_cache: bool = False
    direct_io: bool = False


@dataclass
class LockSpec:
    owner: int
    start: int
    end: int
    type: int  # F_RDLCK 0, F_WRLCK 1, F_UNLCK 2
    pid: int
    flock: bool


def _split(t: float) -> tuple[int, int]:
    whole = int(t)
    return whole, int((t - whole) * 1e9)


def pack_attr(a: Attr) -> bytes:
    at, mt, ct = (divmod(a.st_atime_ns, 10**9), divmod(a.st_mtime_ns, 10**9),
                  divmod(a.st_ctime_ns, 10**9))
    return ATTR.pack(a.st_ino, a.st_size, a.st_blocks, at[0] & (2**64 - 1),
                     mt[0] & (2**64 - 1), ct[0] & (2**64 - 1), at[1], mt[1], ct[1], a.st_mode,
                     a.st_nlink, a.st_uid, a.st_gid, a.st_rdev & 0xFFFFFFFF, a.st_blksize, 0)


def pack_entry(a: Attr) -> bytes:
    ev, evn = _split(a.entry_timeout)
    av, avn = _split(a.attr_timeout)
    return ENTRY_OUT.pack(a.st_ino, a.generation, ev, av, evn, avn) + pack_attr(a)


def pack_attr_out(a: Attr) -> bytes:
    av, avn = _split(a.attr_timeout)
    return ATTR_OUT.pack(av, avn, 0) + pack_attr(a)


def _cstr(data: bytes, start: int = 0) -> tuple[bytes, int]:
    end = data.index(b"\0", start)
    return bytes(data[start:end]), end + 1


def _dirent(ino: int, off: int, name: bytes, mode: int) -> bytes:
    body = DIRENT.pack(ino, off, len(name), (mode >> 12) & 0xF) + name
    return body + b"\0" * (-len(body) % 8)


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
MS_NOSUID, MS_NODEV = 2, 4


def kernel_mount(fd: int, mountpoint: str, fsname: str = "loligo") -> None:
    data = (f"fd={fd},rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other,"
            f"max_read={MAX_WRITE}").encode()
    if _libc.mount(fsname.encode(), os.fsencode(mountpoint), b"fuse.loligo",
                   MS_NOSUID | MS_NODEV, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {mountpoint}: {os.strerror(err)} (mounting needs root)")


class FuseSession:
    """One mount: the device, the request loop and the replies."""

    def __init__(self, ops: Any, mountpoint: str) -> None:
        self.ops = ops
        self.mountpoint = mountpoint
        self.fd = -1
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.done = asyncio.Event()
        self.proto_minor = OUR_MINOR
        self.counts: Counter[int] = Counter()  # requests by opcode
        self._handlers: dict[int, Callable[[int, int, Ctx, bytes], Awaitable[bytes]]] = {
            LOOKUP: self._lookup, GETATTR: self._getattr, SETATTR: self._setattr,
            READLINK: self._readlink, SYMLINK: self._symlink, MKNOD: self._mknod,
            MKDIR: self._mkdir, UNLINK: self._unlink, RMDIR: self._rmdir,
            RENAME: self._rename, RENAME2: self._rename2, LINK: self._link, OPEN: self._open,
            READ: self._read, WRITE: self._write, STATFS: self._statfs,
            RELEASE: self._release, FSYNC: self._fsync, SETXATTR: self._setxattr,
            GETXATTR: self._getxattr, LISTXATTR: self._listxattr,
            REMOVEXATTR: self._removexattr, FLUSH: self._flush, OPENDIR: self._opendir,
            READDIR: self._readdir, READDIRPLUS: self._readdirplus,
            RELEASEDIR: self._releasedir, FSYNCDIR: self._fsyncdir, GETLK: self._getlk,
            SETLK: self._setlk, SETLKW: self._setlkw, ACCESS: self._access,
            CREATE: self._create, FALLOCATE: self._fallocate}

    # --- the device -------------------------------------------------------------------------
    def mount(self) -> None:
        self.fd = os.open("/dev/fuse", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            kernel_mount(self.fd, self.mountpoint)
        except BaseException:
            os.close(self.fd)
            self.fd = -1
            raise

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.fd, self._readable)
        try:
            await self.done.wait()
        finally:
            loop.remove_reader(self.fd)
            for task in list(self.tasks.values()):
                task.cancel()
            os.close(self.fd)
            self.fd = -1

    def stop(self) -> None:
        self.done.set()

    def _readable(self) -> None:
        while not self.done.is_set():
            try:
                data = os.read(self.fd, BUFFER)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == E.EINTR:
                    continue
                if exc.errno == E.ENOENT:  # the request was interrupted before we read it
                    continue
                log.info("FUSE device closed (%s): unmounted", exc.strerror)
                self.done.set()
                return
            self._dispatch(data)

    def _send(self, data: bytes) -> None:
        try:
            os.write(self.fd, data)
        except OSError as exc:
            # ENOENT: the request was interrupted and is gone; nothing to answer
            if exc.errno not in (E.ENOENT, E.EBADF):
                log.warning("FUSE reply failed: %s", exc)

    def reply(self, unique: int, body: bytes = b"", error: int = 0) -> None:
        if error:
            self._send(OUT_HEADER.pack(OUT_HEADER.size, -error, unique))
        else:
            self._send(OUT_HEADER.pack(OUT_HEADER.size + len(body), 0, unique) + body)

    async def invalidate(self, ino: int = 0, parent: int = 0, name: bytes = b"") -> None:
        """Make the kernel drop an inode's attributes and pages, or a name in a directory.
        A notification may wait for locks a process holds while it waits for one of our
        replies: it is written from a worker thread, never from the loop."""
        if self.fd < 0:
            return
        datas = []
        if name:
            body = INVAL_ENTRY.pack(parent, len(name), 0) + name + b"\0"
            datas.append(OUT_HEADER.pack(OUT_HEADER.size + len(body), NOTIFY_INVAL_ENTRY, 0)
                         + body)
        if ino:
            body = INVAL_INODE.pack(ino, 0, 0)
            datas.append(OUT_HEADER.pack(OUT_HEADER.size + len(body), NOTIFY_INVAL_INODE, 0)
                         + body)
        loop = asyncio.get_running_loop()
        for data in datas:
            await loop.run_in_executor(None, self._send, data)

    # --- dispatch ---------------------------------------------------------------------------
    def _dispatch(self, data: bytes) -> None:
        _, opcode, unique, nodeid, uid, gid, pid, _, _ = IN_HEADER.unpack_from(data)
        body = data[IN_HEADER.size:]
        if opcode == INIT:
            self._init(unique, body)
            return
        self.counts[opcode] += 1
        if opcode == FORGET:  # no reply
            self.ops.forget([(nodeid, FORGET_IN.unpack_from(body)[0])])
            return
        if opcode == BATCH_FORGET:
            count = BATCH_FORGET_IN.unpack_from(body)[0]
            at = BATCH_FORGET_IN.size
            self.ops.forget([FORGET_ONE.unpack_from(body, at + i * FORGET_ONE.size)
                             for i in range(count)])
            return
        if opcode == INTERRUPT:
            task = self.tasks.get(INTERRUPT_IN.unpack_from(body)[0])
            if task is not None:
                task.cancel()
            return
        if opcode == DESTROY:
            self.reply(unique)
            self.done.set()
            return
        handler = self._handlers.get(opcode)
        if handler is None:
            self.reply(unique, error=E.ENOSYS)
            return
        ctx = Ctx(uid, gid, pid)
        task = asyncio.get_running_loop().create_task(self._run(handler, unique, nodeid, ctx,
                                                                body))
        self.tasks[unique] = task

    async def _run(self, handler, unique: int, nodeid: int, ctx: Ctx, body: bytes
                   ) -> None:
        try:
            out = await handler(unique, nodeid, ctx, body)
        except FuseError as exc:
            self.reply(unique, error=exc.errno)
        except asyncio.CancelledError:
            self.reply(unique, error=E.EINTR)
        except Exception:
            log.exception("FUSE request %d failed", unique)
            self.reply(unique, error=E.EIO)
        else:
            if out is not None:
                self.reply(unique, out)
        finally:
            self.tasks.pop(unique, None)

    def _init(self, unique: int, body: bytes) -> None:
        major, minor, max_readahead, flags = INIT_IN.unpack_from(body)
        if major != 7:
            self.reply(unique, INIT_OUT.pack(7, OUR_MINOR, 0, 0, 0, 0, 0, 0, 0, 0, 0))
            return
        self.proto_minor = min(minor, OUR_MINOR)
        want = (ASYNC_READ | POSIX_LOCKS | FLOCK_LOCKS | ATOMIC_O_TRUNC | BIG_WRITES
                | AUTO_INVAL_DATA | DO_READDIRPLUS | PARALLEL_DIROPS | MAX_PAGES_FLAG)
        out = INIT_OUT.pack(7, OUR_MINOR, max_readahead, flags & want, 64, 48, MAX_WRITE, 1,
                            MAX_PAGES, 0, 0)
        self.reply(unique, out)
        log.info("FUSE protocol 7.%d, kernel flags %#x, ours %#x", minor, flags, flags & want)

    # --- handlers: decode, call ops, encode ---------------------------------------------------
    def _entry(self, attr: Attr) -> bytes:
        """An entry reply: the kernel's lookup count of the inode grows by one."""
        self.ops.counted(attr.st_ino)
        return pack_entry(attr)

    async def _lookup(self, unique, nodeid, ctx, body):
        name, _ = _cstr(body)
        return self._entry(await self.ops.lookup(nodeid, name, ctx))

    async def _getattr(self, unique, nodeid, ctx, body):
        return pack_attr_out(await self.ops.getattr(nodeid, ctx))

    async def _setattr(self, unique, nodeid, ctx, body):
        (valid, _, fh, size, _, atime, mtime, _, atimensec, mtimensec, _, mode, _, uid, gid,
         _) = SETATTR_IN.unpack_from(body)
        fields = SetattrFields(update_mode=bool(valid & FATTR_MODE),
                               update_uid=bool(valid & FATTR_UID),
                               update_gid=bool(valid & FATTR_GID),
                               update_size=bool(valid & FATTR_SIZE),
                               update_atime=bool(valid & (FATTR_ATIME | FATTR_ATIME_NOW)),
                               update_mtime=bool(valid & (FATTR_MTIME | FATTR_MTIME_NOW)))
        attr = Attr(st_mode=mode, st_uid=uid, st_gid=gid, st_size=size,
                    st_atime_ns=-1 if valid & FATTR_ATIME_NOW else atime * 10**9 + atimensec,
                    st_mtime_ns=-1 if valid & FATTR_MTIME_NOW else mtime * 10**9 + mtimensec)
        return pack_attr_out(await self.ops.setattr(nodeid, attr, fields,
                                                    fh if valid & FATTR_FH else None, ctx))

    async def _readlink(self, unique, nodeid, ctx, body):
        return await self.ops.readlink(nodeid, ctx)

    async def _symlink(self, unique, nodeid, ctx, body):
        name, at = _cstr(body)
        target, _ = _cstr(body, at)
        return self._entry(await self.ops.symlink(nodeid, name, target, ctx))

    async def _mknod(self, unique, nodeid, ctx, body):
        mode, rdev, umask, _ = MKNOD_IN.unpack_from(body)
        name, _ = _cstr(body, MKNOD_IN.size)
        ctx.umask = umask
        return self._entry(await self.ops.mknod(nodeid, name, mode, rdev, ctx))

    async def _mkdir(self, unique, nodeid, ctx, body):
        mode, umask = MKDIR_IN.unpack_from(body)
        name, _ = _cstr(body, MKDIR_IN.size)
        ctx.umask = umask
        return self._entry(await self.ops.mkdir(nodeid, name, mode, ctx))

    async def _unlink(self, unique, nodeid, ctx, body):
        await self.ops.unlink(nodeid, _cstr(body)[0], ctx)
        return b""

    async def _rmdir(self, unique, nodeid, ctx, body):
        await self.ops.rmdir(nodeid, _cstr(body)[0], ctx)
        return b""

    async def _rename(self, unique, nodeid, ctx, body):
        (newdir,) = RENAME_IN.unpack_from(body)
        old, at = _cstr(body, RENAME_IN.size)
        new, _ = _cstr(body, at)
        await self.ops.rename(nodeid, old, newdir, new, 0, ctx)
        return b""

    async def _rename2(self, unique, nodeid, ctx, body):
        newdir, flags, _ = RENAME2_IN.unpack_from(body)
        old, at = _cstr(body, RENAME2_IN.size)
        new, _ = _cstr(body, at)
        await self.ops.rename(nodeid, old, newdir, new, flags, ctx)
        return b""

    async def _link(self, unique, nodeid, ctx, body):
        (oldnode,) = LINK_IN.unpack_from(body)
        name, _ = _cstr(body, LINK_IN.size)
        return self._entry(await self.ops.link(oldnode, nodeid, name, ctx))

    @staticmethod
    def _open_out(opened: Opened) -> bytes:
        flags = (FOPEN_KEEP_CACHE if opened.keep_cache else 0) | \
            (FOPEN_DIRECT_IO if opened.direct_io else 0)
        return OPEN_OUT.pack(opened.fh, flags, 0)

    async def _open(self, unique, nodeid, ctx, body):
        flags, _ = OPEN_IN.unpack_from(body)
        return self._open_out(await self.ops.open(nodeid, flags, ctx))

    async def _create(self, unique, nodeid, ctx, body):
        flags, mode, umask, _ = CREATE_IN.unpack_from(body)
        name, _ = _cstr(body, CREATE_IN.size)
        ctx.umask = umask
        opened, attr = await self.ops.create(nodeid, name, mode, flags, ctx)
        return self._entry(attr) + self._open_out(opened)

    async def _read(self, unique, nodeid, ctx, body):
        fh, offset, size, _, _, _, _ = READ_IN.unpack_from(body)
        return await self.ops.read(fh, offset, size)

    async def _write(self, unique, nodeid, ctx, body):
        fh, offset, size, _, _, _, _ = WRITE_IN.unpack_from(body)
        data = body[WRITE_IN.size:WRITE_IN.size + size]
        written = await self.ops.write(fh, offset, data)
        return WRITE_OUT.pack(written, 0)

    async def _statfs(self, unique, nodeid, ctx, body):
        s = await self.ops.statfs(ctx)
        return STATFS_OUT.pack(s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree,
                               s.f_bsize, s.f_namemax, s.f_frsize, 0)

    async def _release(self, unique, nodeid, ctx, body):
        fh, _flags, release_flags, lock_owner = RELEASE_IN.unpack_from(body)
        await self.ops.release(fh, lock_owner if release_flags & RELEASE_FLOCK_UNLOCK
                               else None)
        return b""

    async def _flush(self, unique, nodeid, ctx, body):
        fh, _, _, lock_owner = FLUSH_IN.unpack_from(body)
        await self.ops.flush(fh, lock_owner)
        return b""

    async def _fsync(self, unique, nodeid, ctx, body):
        fh, flags, _ = FSYNC_IN.unpack_from(body)
        await self.ops.fsync(fh, bool(flags & 1))
        return b""

    async def _setxattr(self, unique, nodeid, ctx, body):
        size, flags = SETXATTR_IN.unpack_from(body)
        name, at = _cstr(body, SETXATTR_IN.size)
        await self.ops.setxattr(nodeid, name, bytes(body[at:at + size]), flags, ctx)
        return b""

    async def _getxattr(self, unique, nodeid, ctx, body):
        size, _ = GETXATTR_IN.unpack_from(body)
        name, _ = _cstr(body, GETXATTR_IN.size)
        value = await self.ops.getxattr(nodeid, name, ctx)
        if size == 0:
            return GETXATTR_OUT.pack(len(value), 0)
        if len(value) > size:
            raise FuseError(E.ERANGE)
        return value

    async def _listxattr(self, unique, nodeid, ctx, body):
        size, _ = GETXATTR_IN.unpack_from(body)
        names = b"".join(n + b"\0" for n in await self.ops.listxattr(nodeid, ctx))
        if size == 0:
            return GETXATTR_OUT.pack(len(names), 0)
        if len(names) > size:
            raise FuseError(E.ERANGE)
        return names

    async def _removexattr(self, unique, nodeid, ctx, body):
        await self.ops.removexattr(nodeid, _cstr(body)[0], ctx)
        return b""

    async def _opendir(self, unique, nodeid, ctx, body):
        return OPEN_OUT.pack(await self.ops.opendir(nodeid, ctx), 0, 0)

    async def _readdir(self, unique, nodeid, ctx, body, plus: bool = False):
        fh, offset, size, _, _, _, _ = READ_IN.unpack_from(body)
        out = bytearray()
        index = offset
        for name, attr in await self.ops.readdir(fh, offset):
            index += 1
            if plus:
                dot = name in (b".", b"..")
                entry = ENTRY_OUT.pack(0, 0, 0, 0, 0, 0) + pack_attr(attr) if dot \
                    else pack_entry(attr)
                item = entry + _dirent(attr.st_ino, index, name, attr.st_mode)
            else:
                item = _dirent(attr.st_ino, index, name, attr.st_mode)
            if len(out) + len(item) > size:
                break
            out += item
            if plus and not dot:
                self.ops.counted(attr.st_ino)
        return bytes(out)

    async def _readdirplus(self, unique, nodeid, ctx, body):
        return await self._readdir(unique, nodeid, ctx, body, plus=True)

    async def _releasedir(self, unique, nodeid, ctx, body):
        await self.ops.releasedir(RELEASE_IN.unpack_from(body)[0])
        return b""

    async def _fsyncdir(self, unique, nodeid, ctx, body):
        return b""

    def _lock_spec(self, body: bytes) -> tuple[int, LockSpec, bool]:
        fh, owner, start, end, typ, pid, lk_flags, _ = LK_IN.unpack_from(body)
        return fh, LockSpec(owner, start, end, typ, pid, bool(lk_flags & LK_FLOCK)), True

    async def _getlk(self, unique, nodeid, ctx, body):
        fh, spec, _ = self._lock_spec(body)
        got = await self.ops.getlk(nodeid, fh, spec)
        return LK_OUT.pack(got.start, got.end, got.type, got.pid)

    async def _setlk(self, unique, nodeid, ctx, body, wait: bool = False):
        fh, spec, _ = self._lock_spec(body)
        await self.ops.setlk(nodeid, fh, spec, wait)
        return b""

    async def _setlkw(self, unique, nodeid, ctx, body):
        return await self._setlk(unique, nodeid, ctx, body, wait=True)

    async def _access(self, unique, nodeid, ctx, body):
        return b""  # default_permissions: the kernel checks

    async def _fallocate(self, unique, nodeid, ctx, body):
        fh, offset, length, mode, _ = FALLOCATE_IN.unpack_from(body)
        await self.ops.fallocate(fh, offset, length, mode)
        return b""

