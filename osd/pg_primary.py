"""What the acting primary of a PG knows about it during one interval: the acting and up sets,
each member's missing objects, strays, recovery and scrub progress, the per-object ordering of
its operations, its peering round (interval fencing), and the PG's state in Ceph's words.
Driven by osd/recovery.py (peering, recovery) and osd/scrub.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from osd.ordering import ObjectLocks
from osd.pg import Token
from rados_py.osdmap import PgId, Pool
from rados_py.proto.loligo import osd_pb2

__all__ = ["PgPrimary"]


class PgPrimary:
    """This OSD as the acting primary of one PG, for one interval."""

    def __init__(self, pgid: PgId, pool: Pool, epoch: int, acting: Iterable[int],
                 up: Iterable[int], prior: Iterable[int],
                 up_from: Iterable[int] = (), round_: int = 1) -> None:
        self.pgid = pgid
        self.pool = pool
        self.coll = str(pgid)
        self.epoch = epoch
        self.acting = tuple(acting)
        self.up = tuple(up)
        self.up_from = tuple(up_from)  # a member that restarted makes a new interval
        self.prior = set(prior)
        self.size, self.min_size = pool.size, pool.min_size
        self.phase = "peering"
        self.why = ""
        self.active = asyncio.Event()
        self.closed = asyncio.Event()
        self.closed_future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.missing: dict[int, dict[bytes, int]] = {}       # acting members
        self.stray_missing: dict[int, dict[bytes, int]] = {}  # strays usable as sources
        self.strays: set[int] = set()
        self.backfill: set[int] = set()
        self.unfound: set[bytes] = set()
        self.recovering = False
        self.recovered_objects = 0
        self.recovered_bytes = 0
        self.recovery_seconds = 0.0
        self.scrubbing = ""                          # "", "scrub" or "deep"
        self.inconsistent: dict[bytes, str] = {}     # oid -> what scrub found
        self.last_scrub_stamp = 0.0
        self.last_deep_scrub_stamp = 0.0
        self.task: asyncio.Task[None] | None = None
        self.round = round_                          # this OSD's peering round counter
        self.objects = ObjectLocks()                 # per-object ordering of ops

    @property
    def token(self) -> Token:
        return (self.epoch, self.round)

    def interval(self) -> osd_pb2.Interval:
        """The fencing token every message of this round carries."""
        return osd_pb2.Interval(epoch=self.epoch, round=self.round)

    @property
    def key(self) -> tuple[Any, ...]:
        return self.acting, self.up, self.up_from, self.size, self.min_size

    def close(self) -> None:
        self.closed.set()
        if not self.closed_future.done():
            self.closed_future.set_result(None)
        if self.task is not None:
            self.task.cancel()

    def missing_anywhere(self, oid: bytes) -> bool:
        return any(oid in m for m in self.missing.values())

    def missing_count(self) -> int:
        return sum(len(m) for m in self.missing.values())

    def state(self) -> str:
        """Ceph's words, in Ceph's order (pg_state_string)."""
        if self.phase != "active":
            return self.phase
        missing = self.missing_count()
        undersized = len(self.acting) < self.size
        words = ["active"]
        if not missing and not undersized:
            words.append("clean")
        if missing and not self.recovering and not self.unfound:
            words.append("recovery_wait")
        backfilling = any(self.missing.get(o) for o in self.backfill)
        if self.recovering and not backfilling:
            words.append("recovering")
        if self.unfound:
            words.append("recovery_unfound")
        if undersized:
            words.append("undersized")
        if missing or undersized:
            words.append("degraded")
        if self.scrubbing:
            words.append("scrubbing")
        if self.scrubbing == "deep":
            words.append("deep")
        if self.inconsistent:
            words.append("inconsistent")
        if self.recovering and backfilling:
            words.append("backfilling")
        return "+".join(words)
