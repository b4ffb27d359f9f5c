"""File data, straight between the client and the OSDs: a file's bytes are striped over data
objects `<ino hex>.<block 8 hex>` of `object_size` bytes (4 MiB by default). A hole (an
object never written, or shorter than the file) reads as zeros and costs nothing.

An open file buffers writes (write-behind, up to client_writebehind bytes, coalesced into
object-sized writes sent in parallel) and reads ahead of a sequential reader
(client_readahead); both are per file and dropped on close, so what one mount wrote and
closed is what the next open elsewhere reads (close-to-open).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib

from mds import layout
from rados_py.errors import NotFound
from rados_py.rados import IoCtx, ObjectOp

PARALLEL = 8


def extents(offset: int, length: int, object_size: int) -> list[tuple[int, int, int, int]]:
    """(block, offset in block, length, offset in the buffer) covering [offset, +length)."""
    out = []
    pos = offset
    end = offset + length
    while pos < end:
        block, within = divmod(pos, object_size)
        n = min(object_size - within, end - pos)
        out.append((block, within, n, pos - offset))
        pos += n
    return out


class DataIO:
    """Reads and writes of file data in the data pool."""

    def __init__(self, io: IoCtx) -> None:
        self.io = io
        self._sem = asyncio.Semaphore(PARALLEL * 4)

    async def read(self, ino: int, offset: int, length: int, object_size: int) -> bytes:
        """`length` bytes from `offset` (the caller clips to the file size); holes are zeros."""
        if length <= 0:
            return b""
        buf = bytearray(length)

        async def one(block: int, within: int, n: int, at: int) -> None:
            async with self._sem:
                try:
                    data = await self.io.read(layout.data_object(ino, block), within, n)
                except NotFound:
                    return
            buf[at:at + len(data)] = data

        await asyncio.gather(*(one(*e) for e in extents(offset, length, object_size)))
        return bytes(buf)

    async def write(self, ino: int, offset: int, data: bytes | memoryview, object_size: int
                    ) -> None:
        view = memoryview(data)

        async def one(block: int, within: int, n: int, at: int) -> None:
            async with self._sem:
                await self.io.write(layout.data_object(ino, block), bytes(view[at:at + n]),
                                    within)

        await asyncio.gather(*(one(*e) for e in extents(offset, len(view), object_size)))

    async def truncate(self, ino: int, data_end: int, new_size: int, object_size: int) -> None:
        """Cut the data to `new_size` (`data_end`: no data was ever written past it):
        objects past it go, the one it falls in is cut."""
        if new_size >= data_end:
            return
        first_gone = -(-new_size // object_size)
        last = -(-data_end // object_size)

        async def remove(block: int) -> None:
            with contextlib.suppress(NotFound):
                await self.io.remove(layout.data_object(ino, block))

        for start in range(first_gone, last, PARALLEL):
            await asyncio.gather(*(remove(b) for b in range(start, min(last, start + PARALLEL))))
        jobs = []
        if new_size % object_size:
            block = new_size // object_size

            async def cut() -> None:
                with contextlib.suppress(NotFound):
                    await self.io.operate(layout.data_object(ino, block), ObjectOp()
                                          .assert_exists().truncate(new_size % object_size))
            jobs.append(cut())
        await asyncio.gather(*jobs)

    async def zero(self, ino: int, offset: int, length: int, size: int, object_size: int
                   ) -> None:
        """Make [offset, +length) read as zeros (punch a hole): whole objects are removed."""
        jobs = []
        length = max(0, min(length, size - offset))
        for block, within, n, _ in extents(offset, length, object_size):
            name = layout.data_object(ino, block)
            if within == 0 and (n == object_size or block * object_size + n >= size):
                jobs.append(self._remove(name))
            else:
                jobs.append(self._zero(name, within, n))
        await asyncio.gather(*jobs)

    async def _remove(self, name: bytes) -> None:
        with contextlib.suppress(NotFound):
            await self.io.remove(name)

    async def _zero(self, name: bytes, within: int, n: int) -> None:
        with contextlib.suppress(NotFound):
            await self.io.operate(name, ObjectOp().assert_exists().zero(within, n))


class OpenFile:
    """One inode open on this mount: its write-behind buffer and read-ahead window."""

    def __init__(self, ino: int, size: int, object_size: int, data: DataIO,
                 writebehind: int, readahead: int) -> None:
        self.ino = ino
        self.size = size  # the size as this mount knows it (grows with buffered writes)
        self.object_size = object_size or layout.DEFAULT_OBJECT_SIZE
        self.data = data
        self.writebehind = writebehind
        self.readahead = readahead
        self.dirty: list[tuple[int, bytes]] = []
        self.dirty_bytes = 0
        self.written_end = 0  # the end of the data this mount wrote (the MDS keeps the max)
        self.attrs_dirty = False  # size/mtime to tell the MDS
        self.mtime_ns = 0
        self.handles = 0
        self._window: tuple[int, bytes] = (0, b"")
        self._last_end = -1
        self.lock = asyncio.Lock()

    def drop_cache(self) -> None:
        self._window = (0, b"")

    async def read(self, offset: int, length: int) -> bytes:
        await self.flush_data()
        length = max(0, min(length, self.size - offset))
        if length == 0:
            return b""
        start, window = self._window
        if start <= offset and offset + length <= start + len(window):
            return window[offset - start:offset - start + length]
        sequential = offset == self._last_end
        self._last_end = offset + length
        want = length
        if sequential and self.readahead:
            want = min(max(length, self.readahead), self.size - offset)
        data = await self.data.read(self.ino, offset, want, self.object_size)
        if want > length:
            self._window = (offset, data)
        return data[:length]

    async def write(self, offset: int, buf: bytes, now_ns: int) -> None:
        self.drop_cache()
        self.dirty.append((offset, bytes(buf)))
        self.dirty_bytes += len(buf)
        self.size = max(self.size, offset + len(buf))
        self.written_end = max(self.written_end, offset + len(buf))
        self.mtime_ns = now_ns
        self.attrs_dirty = True
        if self.dirty_bytes >= self.writebehind:
            await self.flush_data()

    async def flush_data(self) -> None:
        if not self.dirty:
            return
        async with self.lock:
            dirty, self.dirty, self.dirty_bytes = self.dirty, [], 0
            if not dirty:
                return
            runs = coalesce(dirty)
            await asyncio.gather(*(self.data.write(self.ino, off, bytes(run), self.object_size)
                                   for off, run in runs))


def coalesce(writes: list[tuple[int, bytes]]) -> list[tuple[int, bytearray]]:
    """Writes made in this order, merged into disjoint runs (touching ones joined), each
    byte holding what the last write to it wrote."""
    starts: list[int] = []
    runs: list[bytearray] = []
    for off, data in writes:
        end = off + len(data)
        i = bisect.bisect_left(starts, off)
        if i > 0 and starts[i - 1] + len(runs[i - 1]) >= off:
            i -= 1
        j = i
        new_start, new_end = off, end
        while j < len(starts) and starts[j] <= end:
            new_start = min(new_start, starts[j])
            new_end = max(new_end, starts[j] + len(runs[j]))
            j += 1
        merged = bytearray(new_end - new_start)
        for k in range(i, j):
            at = starts[k] - new_start
            merged[at:at + len(runs[k])] = runs[k]
        merged[off - new_start:end - new_start] = data
        starts[i:j] = [new_start]
        runs[i:j] = [merged]
    return list(zip(starts, runs, strict=True))
