"""A byte-rate limit shared by concurrent copies (recovery and backfill of one OSD)."""

from __future__ import annotations

import asyncio
import time

__all__ = ["TokenBucket"]


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
