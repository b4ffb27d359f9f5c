"""The MDS journal: metadata changes appended to RADOS objects before they are acknowledged.

Records are appended to segment objects `mds.journal.<seg>`; each record is one JournalBatch
(every event that arrived while the previous append was in flight: group commit, one RADOS
write per batch) framed as [length u32][xxh32 u32][bytes]. The header object `mds.journal`
says where replay starts (everything before is applied to the directory objects) and which
segment is written. A new active MDS fences the last segment (an `owner` xattr every append
compares) so a deposed MDS that still runs cannot append behind its back.

`frame`/`unframe` are pure; `Journal` does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from dataclasses import dataclass

import xxhash

from mds import layout
from rados_py import metrics
from rados_py.errors import LoligoError, NotFound
from rados_py.proto.loligo import mds_pb2
from rados_py.rados import CompareFailed, IoCtx, ObjectOp

log = logging.getLogger(__name__)
_HEAD = struct.Struct(">II")
OWNER_XATTR = "owner"
BATCH_EVENTS = 4096  # events per append at most (a record stays a few MiB)


class Fenced(LoligoError):
    """Another MDS took the journal over: this one must stop serving."""


def frame(payload: bytes) -> bytes:
    return _HEAD.pack(len(payload), xxhash.xxh32_intdigest(payload)) + payload


def unframe(data: bytes, start: int = 0) -> tuple[list[tuple[int, bytes]], int]:
    """The records in `data` from `start`: [(end offset, payload)], and where parsing stopped
    (a torn or corrupt tail is where the valid journal ends)."""
    out = []
    pos = start
    while pos + _HEAD.size <= len(data):
        length, digest = _HEAD.unpack_from(data, pos)
        end = pos + _HEAD.size + length
        if end > len(data):
            break
        payload = bytes(data[pos + _HEAD.size:end])
        if xxhash.xxh32_intdigest(payload) != digest:
            log.warning("journal record at %d fails its checksum: the journal ends there", pos)
            break
        out.append((end, payload))
        pos = end
    return out, pos


@dataclass(frozen=True, order=True)
class Position:
    seg: int
    off: int


class Journal:
    """Appends batches of events (group commit), replays them, trims what is applied."""

    def __init__(self, io: IoCtx, owner: str, segment_size: int,
                 batch_interval: float = 0.0) -> None:
        self.io = io
        self.batch_interval = batch_interval
        self._urgent = asyncio.Event()
        self.owner = owner.encode()
        self.segment_size = segment_size
        self.header = mds_pb2.JournalHeader()
        self.write_pos = Position(0, 0)
        self._queue: list[tuple[mds_pb2.JournalEvent, asyncio.Future[Position]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._header_lock = asyncio.Lock()
        self.fenced: Exception | None = None
        self.appends = 0
        self.events_written = 0
        self.backlog = 0  # events submitted and not yet durable
        self._room = asyncio.Event()

    # --- taking over and replaying ------------------------------------------------------------
    async def open(self, epoch: int) -> list[mds_pb2.JournalEvent]:
        """Take the journal over (fencing any previous writer) and return the events to
        replay, oldest first. Afterwards appends go to a fresh segment."""
        try:
            self.header.ParseFromString(await self.io.read(layout.JOURNAL_HEADER))
        except NotFound:
            self.header = mds_pb2.JournalHeader()
        seg, off = self.header.expire_seg, self.header.expire_off
        events: list[mds_pb2.JournalEvent] = []
        last = seg
        while True:
            # fence before reading, so nothing is appended after what we read
            try:
                await self.io.operate(layout.journal_segment(seg), ObjectOp().assert_exists()
                                      .set_xattr(OWNER_XATTR, self.owner))
            except NotFound:
                break
            data = await self.io.read(layout.journal_segment(seg))
            records, _ = unframe(data, off)
            for _, payload in records:
                batch = mds_pb2.JournalBatch()
                batch.ParseFromString(payload)
                events.extend(batch.events)
            last = seg
            seg, off = seg + 1, 0
        self.header.write_seg = last + 1
        self.header.owner_epoch = epoch
        self.header.owner = self.owner.decode()
        await self._write_header(take=True)
        self.write_pos = Position(self.header.write_seg, 0)
        self.fenced = None
        self._task = asyncio.create_task(self._writer(), name="mds.journal")
        log.info("journal: %d events to replay (segments %d..%d); writing segment %d",
                 len(events), self.header.expire_seg, last, self.header.write_seg)
        return events

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _, fut in self._queue:
            if not fut.done():
                fut.set_exception(Fenced("the MDS is stopping"))
        self._queue.clear()
        self.backlog = 0
        self._room.set()

    # --- appending ----------------------------------------------------------------------------
    def submit(self, event: mds_pb2.JournalEvent) -> asyncio.Future[Position]:
        """Queue an event; the future resolves to the journal position after it once durable."""
        fut: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        if self.fenced is not None:
            fut.set_exception(self.fenced)
            return fut
        self._queue.append((event, fut))
        self.backlog += 1
        self._wake.set()
        return fut

    async def wait_room(self, below: int) -> None:
        """Wait until fewer than `below` events wait to be durable (backpressure)."""
        while self.backlog >= below and self.fenced is None:
            self._room.clear()
            await self._room.wait()

    def flush_now(self) -> None:
        """Someone waits for what is queued to be durable: append it without waiting for
        company."""
        self._urgent.set()

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.batch_interval and len(self._queue) < BATCH_EVENTS:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), self.batch_interval)
            self._urgent.clear()
            while self._queue:
                batch, self._queue = self._queue[:BATCH_EVENTS], self._queue[BATCH_EVENTS:]
                try:
                    pos = await self._append([e for e, _ in batch])
                except Exception as exc:  # fenced, or RADOS gave up: nothing more is durable
                    log.error("journal append failed: %s", exc)
                    self.fenced = exc if isinstance(exc, Fenced) else Fenced(
                        f"journal append failed: {exc}")
                    for _, fut in batch + self._queue:
                        if not fut.done():
                            fut.set_exception(self.fenced)
                    self._queue.clear()
                    self.backlog = 0
                    self._room.set()
                    return
                self.backlog -= len(batch)
                self._room.set()
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(pos)

    async def _append(self, events: list[mds_pb2.JournalEvent]) -> Position:
        record = frame(mds_pb2.JournalBatch(events=events).SerializeToString())
        seg, off = self.write_pos.seg, self.write_pos.off
        if off and off + len(record) > self.segment_size:
            seg, off = seg + 1, 0
            self.header.write_seg = seg
            await self._write_header()
        op = ObjectOp()
        if off == 0:
            op.create(exclusive=True).set_xattr(OWNER_XATTR, self.owner)
        else:
            op.cmpxattr(OWNER_XATTR, self.owner, "eq")
        op.write(record, off)
        try:
            with metrics.timed("mds_journal_append"):
                await self.io.operate(layout.journal_segment(seg), op)
        except CompareFailed:
            raise Fenced(f"journal segment {seg} belongs to another MDS now") from None
        self.write_pos = Position(seg, off + len(record))
        self.appends += 1
        self.events_written += len(events)
        return self.write_pos

    # --- trimming -----------------------------------------------------------------------------
    async def trim(self, upto: Position) -> None:
        """Everything before `upto` is applied to the directory objects: replay starts there."""
        old = self.header.expire_seg
        if (upto.seg, upto.off) <= (self.header.expire_seg, self.header.expire_off):
            return
        self.header.expire_seg, self.header.expire_off = upto.seg, upto.off
        await self._write_header()
        for seg in range(old, upto.seg):
            with contextlib.suppress(NotFound):
                await self.io.remove(layout.journal_segment(seg))

    async def _write_header(self, take: bool = False) -> None:
        async with self._header_lock:
            op = ObjectOp()
            if take:
                op.set_xattr(OWNER_XATTR, self.owner)
            else:
                op.cmpxattr(OWNER_XATTR, self.owner, "eq")
            op.write_full(self.header.SerializeToString())
            try:
                await self.io.operate(layout.JOURNAL_HEADER, op)
            except CompareFailed:
                raise Fenced("the journal belongs to another MDS now") from None

