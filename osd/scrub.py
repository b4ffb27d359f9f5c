"""Scrub: the primary compares, a range of objects at a time, what every acting member holds.

Light scrub compares object lists, sizes, versions and xattrs; deep scrub also reads every byte
(each block's checksum is verified on the way) and compares data and omap digests. While a
range is compared, writes to its objects wait and those in flight finish first
(`ObjectLocks.block`), so no write changes it mid-comparison; reads and writes elsewhere go on.

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
from dataclasses import dataclass, field

import grpc

from osd.pg import split_oid
from osd.pg_primary import PgPrimary
from osd.recovery import Recovery
from rados_py import rpc
from rados_py.errors import InvalidArgument, LoligoError
from rados_py.proto.loligo import osd_pb2

__all__ = ["Finding", "Scrubber", "compare"]

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


@dataclass
class ScrubResult:
    objects: int = 0
    findings: list[Finding] = field(default_factory=list)
    repaired: int = 0


class Scrubber:
    """Scrubs the PGs `recovery` leads, on demand and on a schedule."""

    def __init__(self, recovery: Recovery) -> None:
        self.recovery = recovery
        self.config = recovery.config
        self._one_at_a_time = asyncio.Lock()
        # a never-scrubbed PG: when the schedule first saw it, and the share of an interval
        # to wait from then
        self._first: dict[tuple[str, bool], tuple[float, float]] = {}
        self._retry: dict[tuple[str, bool], float] = {}  # after a failed scheduled scrub

    async def _map(self, osd: int, req: osd_pb2.ScrubMapRequest) -> dict[bytes,
                                                                         osd_pb2.ScrubObject]:
        if osd == self.recovery.id:
            reply = await self.recovery.registry.scrub_map(req)
        else:
            addr, stub = self.recovery.peers.peer(osd)
            reply = await rpc.call_with_retry(stub.ScrubMap, req, idempotent=True,
                                              config=self.config, address=f"osd.{osd} ({addr})")
        return {o.oid: o for o in reply.objects}

    async def scrub(self, prim: PgPrimary, deep: bool, repair: bool) -> ScrubResult:
        if prim.phase != "active" or prim.missing_count() or prim.recovering:
            raise InvalidArgument(f"PG {prim.coll} is {prim.state()}: it can be scrubbed once "
                                  "it is active+clean")
        async with self._one_at_a_time:
            return await self._scrub(prim, deep, repair)

    async def _scrub(self, prim: PgPrimary, deep: bool, repair: bool) -> ScrubResult:
        result = ScrubResult()
        store = self.recovery.registry.store
        prim.scrubbing = "deep" if deep else "scrub"
        after = b""
        try:
            while True:
                try:
                    rows, more = await store.list_versions(prim.coll, after, CHUNK)
                except LoligoError:
                    rows, more = [], False
                upto = rows[-1][0] if more and rows else b""
                async with prim.objects.block(after, upto or None):
                    if prim.closed.is_set():
                        raise InvalidArgument(f"PG {prim.coll} changed interval during scrub")
                    req = osd_pb2.ScrubMapRequest(pgid=prim.coll, after=after, upto=upto,
                                                  deep=deep, interval=prim.interval())
                    maps = await asyncio.gather(*(self._map(o, req) for o in prim.acting))
                    found = compare(dict(zip(prim.acting, maps, strict=True)),
                                    self.recovery.id, deep)
                    result.objects += len(set().union(*(m.keys() for m in maps)))
                    for finding in found:
                        if (repair or self.config.osd_scrub_auto_repair) and finding.auth >= 0:
                            await self.recovery._copy(prim, finding.auth, finding.oid,
                                                      finding.version, finding.bad)
                            result.repaired += 1
                            prim.inconsistent.pop(finding.oid, None)
                        else:
                            result.findings.append(finding)
                if not upto:
                    break
                after = upto
        finally:
            prim.scrubbing = ""
        prim.inconsistent = {f.oid: f.why for f in result.findings}
        now = time.time()
        prim.last_scrub_stamp = now
        if deep:
            prim.last_deep_scrub_stamp = now
        await self.recovery.registry.set_scrubbed(
            prim.coll, (prim.last_scrub_stamp, prim.last_deep_scrub_stamp))
        log.info("osd.%d: %s of PG %s: %d objects, %d inconsistent, %d repaired", self.recovery.id,
                 "deep-scrub" if deep else "scrub", prim.coll, result.objects,
                 len(result.findings), result.repaired)
        for f in result.findings:
            log.warning("osd.%d: PG %s object %r inconsistent: %s", self.recovery.id, prim.coll,
                        split_oid(f.oid)[1], f.why)
        return result

    async def run_schedule(self) -> None:
        """Scrub each clean PG this OSD leads an interval after its last scrub (a PG never
        scrubbed: at a random point of its first interval, so they do not all start at once)."""
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for coll, prim in list(self.recovery.primaries.items()):
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
                        await self.scrub(prim, deep, repair=False)
                    except (LoligoError, grpc.aio.AioRpcError) as exc:
                        log.info("osd.%d: scheduled scrub of %s: %s", self.recovery.id, coll,
                                 exc)
                        self._retry[(coll, deep)] = now + RETRY_AFTER
                    break
