"""Throttles of one OSD: a byte rate shared by concurrent copies (recovery and backfill), and
the admission of client ops by count and by bytes in flight (Ceph's osd_client_message_cap and
osd_client_message_size_cap)."""

from __future__ import annotations

import asyncio
import time

__all__ = ["Admission", "TokenBucket"]


class TokenBucket:
    """Bytes per second, shared by every recovery of one OSD (rate 0: unlimited)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._level = float(rate)
        self._stamp = time.monotonic()

    async def take(self, n: int) -> None:
        if self.rate <= 0 or n <= 0:
            return
        now = time.monotonic()
        self._level = min(float(self.rate), self._level + (now - self._stamp) * self.rate)
        self._stamp = now
        self._level -= n
        if self._level < 0:
            await asyncio.sleep(-self._level / self.rate)


class Admission:
    """At most `max_ops` client ops and `max_bytes` of them in flight; `take` waits (FIFO)
    until an op fits. One op bigger than `max_bytes` is let in when it is alone."""

    def __init__(self, max_ops: int, max_bytes: int) -> None:
        self.max_ops, self.max_bytes = max_ops, max_bytes
        self.ops = self.bytes = 0
        self.waited = 0           # ops that had to wait (a counter for the benchmark)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def _fits(self, cost: int) -> bool:
        return self.ops < self.max_ops and (self.bytes + cost <= self.max_bytes
                                            or self.ops == 0)

    def try_take(self, cost: int) -> bool:
        """Take room for an op at once if it fits and nobody waits before it."""
        if self._waiters or not self._fits(cost):
            return False
        self.ops += 1
        self.bytes += cost
        return True

    async def take(self, cost: int) -> None:
        if self.try_take(cost):
            return
        self.waited += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((cost, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.give(cost)
            else:
                self._waiters.remove((cost, fut))
            raise

    def give(self, cost: int) -> None:
        self.ops -= 1
        self.bytes -= cost
        while self._waiters and self._fits(self._waiters[0][0]):
            cost, fut = self._waiters.pop(0)
            self.ops += 1
            self.bytes += cost
            fut.set_result(None)
