"""Per-object ordering of a PG's operations on its primary (Ceph's ObjectContext locks).

Operations on one object run one after the other, in arrival order: a write holds its object
exclusively from the moment it is checked against the object's state until every acting
member has it durable; reads share the object with other reads but queue behind a write that
came first (so a read returns the old content or the new one, never a write that could still be
rolled back, and never part of one). Operations on different objects do not wait for each
other: the PG pipelines them (osd/service.py), its log giving them their order.

A lock is granted at once, without yielding to the event loop, when nothing is ahead of it:
the order in which callers ask is the order in which they run.

`block(lo, hi)` keeps new writes out of the objects in (lo, hi] and waits for those in flight
there: scrub compares a range of objects across members with nothing changing under it.
Recovery of an object takes it exclusively, like a write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

__all__ = ["ObjectLocks"]


class _Object:
    __slots__ = ("readers", "waiters", "writer")

    def __init__(self) -> None:
        self.readers = 0
        self.writer = False
        self.waiters: deque[tuple[bool, asyncio.Future[None]]] = deque()


class ObjectLocks:
    """The per-object locks of one PG (on its primary, for one interval)."""

    def __init__(self) -> None:
        self._objects: dict[bytes, _Object] = {}
        self._blocked: tuple[bytes, bytes | None] | None = None  # (after, upto or None: end)
        self._unblocked: asyncio.Event = asyncio.Event()
        self._unblocked.set()

    def __len__(self) -> int:
        """Objects with an operation running or waiting."""
        return len(self._objects)

    def _in_block(self, oid: bytes) -> bool:
        if self._blocked is None:
            return False
        after, upto = self._blocked
        return oid > after and (upto is None or oid <= upto)

    @contextlib.asynccontextmanager
    async def hold(self, oid: bytes, exclusive: bool, *, through_block: bool = False
                   ) -> AsyncIterator[None]:
        """Hold `oid`: exclusively (a write, a recovery) or shared (a read)."""
        while exclusive and not through_block and self._in_block(oid):
            await self._unblocked.wait()
        obj = self._objects.get(oid)
        if obj is None:
            obj = self._objects[oid] = _Object()
        if not obj.waiters and (not obj.writer and (not exclusive or not obj.readers)):
            self._grant(obj, exclusive)
        else:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            obj.waiters.append((exclusive, fut))
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():  # granted as we were cancelled
                    self._release(oid, obj, exclusive)
                else:
                    obj.waiters.remove((exclusive, fut))
                    self._wake(oid, obj)
                raise
        try:
            yield
        finally:
            self._release(oid, obj, exclusive)

    @staticmethod
    def _grant(obj: _Object, exclusive: bool) -> None:
        if exclusive:
            obj.writer = True
        else:
            obj.readers += 1

    def _release(self, oid: bytes, obj: _Object, exclusive: bool) -> None:
        if exclusive:
            obj.writer = False
        else:
            obj.readers -= 1
        self._wake(oid, obj)

    def _wake(self, oid: bytes, obj: _Object) -> None:
        while obj.waiters and not obj.writer:
            exclusive, fut = obj.waiters[0]
            if fut.done():  # cancelled while waiting
                obj.waiters.popleft()
                continue
            if exclusive and obj.readers:
                break
            obj.waiters.popleft()
            self._grant(obj, exclusive)
            fut.set_result(None)
            if exclusive:
                break
        if not obj.writer and not obj.readers and not obj.waiters:
            self._objects.pop(oid, None)

    def writing(self, after: bytes, upto: bytes | None) -> list[bytes]:
        """Objects in (after, upto] held or awaited exclusively right now."""
        return [oid for oid, obj in self._objects.items()
                if oid > after and (upto is None or oid <= upto)
                and (obj.writer or any(e for e, _ in obj.waiters))]

    @contextlib.asynccontextmanager
    async def block(self, after: bytes, upto: bytes | None) -> AsyncIterator[None]:
        """No write enters (after, upto] while held; writes there finish first."""
        while self._blocked is not None:  # one block at a time (one scrub per PG)
            await self._unblocked.wait()
        self._blocked = (after, upto)
        self._unblocked.clear()
        try:
            for oid in self.writing(after, upto):
                async with self.hold(oid, exclusive=True, through_block=True):  # after those
                    pass
            yield
        finally:
            self._blocked = None
            self._unblocked.set()
