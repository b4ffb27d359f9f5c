"""Scrub: the primary compares, a range of objects at a time, what every acting member holds.

Light scrub compares object lists, sizes, versions and xattrs; deep scrub also reads every byte
(each block's checksum is verified on the way) and compares data and omap digests. While a
range is compared, writes to it wait and those in flight finish first (the PG state machine
holds them back), so no write changes it mid-comparison; reads go on.

The authoritative copy of an object is the newest version among the readable copies, then the
one most members agree with, then the primary's. Every other copy is inconsistent: reported in
the PG's state and in health with the object names, and rewritten from the authoritative copy
by repair (or at once, with osd_scrub_auto_repair).

Scrubs run on demand (`loligo pg scrub|deep-scrub|repair PGID`) and on a schedule: each PG this
OSD leads while active+clean, every osd_scrub_interval (deep: osd_deep_scrub_interval), one PG
at a time per OSD.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import grpc

from osd.pg import split_oid
from osd.pg_host import PgHost, ScrubResult
from rados_py.config import Config
from rados_py.errors import InvalidArgument, LoligoError
from rados_py.proto.loligo import osd_pb2

__all__ = ["Finding", "ScrubResult", "Scrubber", "compare"]

log = logging.getLogger(__name__)
CHUNK = 100  # objects compared per range
RETRY_AFTER = 60.0  # seconds before a scheduled scrub that failed is tried again


@dataclass
class Finding:
    oid: bytes
    auth: int          # -1: no readable copy anywhere
    bad: list[int]
    why: str
    version: int = 0


def _key(c: osd_pb2.ScrubObject, deep: bool) -> tuple[int, int, bytes, bytes]:
    return c.size, c.version, c.meta_digest, c.data_digest if deep else b""


def compare(maps: Mapping[int, Mapping[bytes, osd_pb2.ScrubObject]], primary: int,
            deep: bool) -> list[Finding]:
    """Objects whose copies differ across members, with the authoritative member of each."""
    findings = []
    for oid in sorted(set().union(*(m.keys() for m in maps.values()))):
        copies = {osd: m.get(oid) for osd, m in maps.items()}
        good = {osd: _key(c, deep) for osd, c in copies.items()
                if c is not None and not c.read_error}
        if len(good) == len(copies) and len(set(good.values())) == 1:
            continue
        if not good:
            findings.append(Finding(oid, -1, sorted(copies), "no copy is readable"))
            continue
        votes = Counter(good.values())
        best = max(votes, key=lambda k: (k[1], votes[k], good.get(primary) == k))
        auth = primary if good.get(primary) == best else min(o for o, k in good.items()
                                                             if k == best)
        bad, why = [], []
        for osd, c in sorted(copies.items()):
            if c is None:
                bad.append(osd)
                why.append(f"osd.{osd} lacks it")
            elif c.read_error:
                bad.append(osd)
                why.append(f"osd.{osd} data fails its checksum")
            elif _key(c, deep) != best:
                bad.append(osd)
                what = ("size" if c.size != best[0] else "version" if c.version != best[1]
                        else "attrs/omap" if c.meta_digest != best[2] else "data")
                why.append(f"osd.{osd} {what} differs")
        findings.append(Finding(oid, auth, bad, "; ".join(why), version=best[1]))
    return findings


class Scrubber:
    """Scrubs the PGs this OSD leads, on demand and on a schedule (the comparing itself is the
    PG state machine's, osd/pg_machine.py, with `compare` run by its host)."""

    def __init__(self, host: PgHost, config: Config) -> None:
        self.host = host
        self.config = config
        self._one_at_a_time = asyncio.Lock()
        # a never-scrubbed PG: when the schedule first saw it, and the share of an interval
        # to wait from then
        self._first: dict[tuple[str, bool], tuple[float, float]] = {}
        self._retry: dict[tuple[str, bool], float] = {}  # after a failed scheduled scrub

    async def scrub(self, coll: str, deep: bool, repair: bool) -> ScrubResult:
        prim = self.host.primary(coll)
        if prim is None or prim.phase != "active" or prim.missing_count() or prim.recovering:
            state = "not led here" if prim is None else prim.state()
            raise InvalidArgument(f"PG {coll} is {state}: it can be scrubbed once it is "
                                  "active+clean")
        async with self._one_at_a_time:
            result = await self.host.scrub(coll, deep, repair, time.time())
        log.info("osd.%d: %s of PG %s: %d objects, %d inconsistent, %d repaired", self.host.id,
                 "deep-scrub" if deep else "scrub", coll, result.objects,
                 len(result.findings), result.repaired)
        for f in result.findings:
            log.warning("osd.%d: PG %s object %r inconsistent: %s", self.host.id, coll,
                        split_oid(f.oid)[1], f.why)
        return result

    async def run_schedule(self) -> None:
        """Scrub each clean PG this OSD leads an interval after its last scrub (a PG never
        scrubbed: at a random point of its first interval, so they do not all start at once)."""
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for coll, prim in list(self.host.primaries.items()):
                if prim.state() != "active+clean":
                    continue
                for deep, every, last in (
                        (True, self.config.osd_deep_scrub_interval, prim.last_deep_scrub_stamp),
                        (False, self.config.osd_scrub_interval, prim.last_scrub_stamp)):
                    if not every:
                        continue
                    seen, share = self._first.setdefault((coll, deep),
                                                         (now, random.uniform(0.1, 1)))
                    first = seen + share * every  # follows a changed interval
                    if now < max(last + every if last else first,
                                 self._retry.get((coll, deep), 0.0)):
                        continue
                    try:
                        await self.scrub(coll, deep, repair=False)
                    except (LoligoError, grpc.aio.AioRpcError) as exc:
                        log.info("osd.%d: scheduled scrub of %s: %s", self.host.id, coll, exc)
                        self._retry[(coll, deep)] = now + RETRY_AFTER
                    break
