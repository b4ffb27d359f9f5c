"""The primary side of peering and recovery: one `PgPrimary` per PG this OSD leads, per interval.

An *interval* is a stretch of map epochs in which a PG's acting and up sets stay the same. When
a map starts a new interval for a PG whose acting primary is this OSD, `Recovery.on_map` starts
its driver, which:

1. peers: queries the OSDs that may hold the PG (acting, up, the previous acting set, and the
   acting sets of the activations they remember) for info, log and missing set; plans with
   osd/peering.py; asks the authoritative OSD for the versions of divergent objects and, for
   backfill targets, compares object inventories;
2. activates: every acting member (this OSD included) rolls back divergent entries or replaces
   its log, appends the authoritative entries and records its missing set and the activation,
   one transaction each; the PG is then *active* and serves ops (service.py waits for this);
3. recovers: every object some acting member lacks is copied from an OSD that has it (this
   one when it can, else another acting member or a stray) in parts, holding that object
   (osd/ordering.py) so that no op on it interleaves; an op on such an object recovers it
   first (`ensure`);
4. when nothing is missing anywhere, tells OSDs outside the acting set to drop their copy.

Throttles: at most osd_recovery_max_active objects in flight per OSD, and
osd_recovery_max_bytes_per_sec across them (0: none). A map that changes the interval closes
the old `PgPrimary`: its driver stops at the next object, and ops waiting on it are answered
with a retryable status.

Every message to a member carries the round's fencing token (`PgPrimary.interval()`); a member
that has answered a newer round refuses it (osd/pgs.py), so nothing a closed round still had in
flight changes what the new one found when it queried. Peering therefore does not wait for the
old round's operations: they either reached the members before the query (and are in what it
sees) or are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable

import grpc

from osd import peering, pgmeta
from osd.peering import ABSENT, Peer
from osd.peers import PeerChannels
from osd.pg import split_oid
from osd.pg_primary import PgPrimary
from osd.pgs import PgRegistry
from osd.throttle import TokenBucket
from rados_py import rpc
from rados_py.config import Config
from rados_py.errors import LoligoError
from rados_py.osdmap import OSDMap, PgId
from rados_py.proto.loligo import mon_pb2, osd_pb2

__all__ = ["PeeringBlocked", "Recovery", "Unfound"]

log = logging.getLogger(__name__)
MAX_NAMED = 20  # inconsistent object names a PG reports to the monitors
STATS_EVERY = 5.0  # seconds between re-reads of a PG's object count and bytes for stats


class Unfound(LoligoError):
    """No reachable OSD holds the version of an object the PG's history says exists."""


class PeeringBlocked(LoligoError):
    """The PG cannot go active yet: an unreachable OSD may hold newer writes (state "down")."""


class _WrongSource(Exception):
    pass


class _TargetFailed(Exception):
    """Writing a recovered object to a member failed (a full disk...): not the source's fault."""

    def __init__(self, error: LoligoError) -> None:
        super().__init__(str(error))
        self.error = error


class Recovery:
    """Every PG this OSD is acting primary of: peering, activation, recovery, PG stats."""

    def __init__(self, osd_id: int, registry: PgRegistry, peers: PeerChannels, config: Config,
                 osdmap: Callable[[], OSDMap]) -> None:
        self.id = osd_id
        self.registry = registry
        self.peers = peers
        self.config = config
        self._osdmap = osdmap
        self._rounds = itertools.count(1)  # peering rounds of this process (fencing tokens)
        self.primaries: dict[str, PgPrimary] = {}
        self._acting: dict[str, tuple[int, ...]] = {}  # every PG's acting set in the last map
        self._slots = asyncio.Semaphore(config.osd_recovery_max_active)
        self.bucket = TokenBucket(config.osd_recovery_max_bytes_per_sec)
        self._stats_cache: dict[str, tuple[float, int, int]] = {}

    # --- intervals ---------------------------------------------------------------------------
    def on_map(self, osdmap: OSDMap) -> None:
        """Start peering every PG whose interval changed and that this OSD is primary of."""
        mine: set[str] = set()
        acting_now: dict[str, tuple[int, ...]] = {}
        for pool in osdmap.pools.values():
            for seed, placement in enumerate(osdmap.map_pool(pool.id)):
                pgid = PgId(pool.id, seed)
                coll = str(pgid)
                acting_now[coll] = tuple(placement.acting)
                if placement.acting_primary != self.id:
                    continue
                mine.add(coll)
                prim = PgPrimary(pgid, pool, osdmap.epoch, placement.acting, placement.up,
                                 self._acting.get(coll, ()),
                                 [osdmap.osds[o].up_from for o in placement.acting],
                                 next(self._rounds))
                current = self.primaries.get(coll)
                if current is not None and current.key == prim.key:
                    continue
                if current is not None:
                    prim.prior |= set(current.acting)
                    current.close()
                self.primaries[coll] = prim
                prim.task = asyncio.create_task(self._drive(prim), name=f"pg-{coll}")
        for coll in [c for c in self.primaries if c not in mine]:
            self.primaries.pop(coll).close()
        self._acting = acting_now

    def set_config(self, config: Config) -> None:
        """New throttles at run time (recoveries in flight finish under the old ones)."""
        if config.osd_recovery_max_active != self.config.osd_recovery_max_active:
            self._slots = asyncio.Semaphore(config.osd_recovery_max_active)
        self.bucket.rate = config.osd_recovery_max_bytes_per_sec
        self.config = config

    def repeer(self, coll: str) -> None:
        """Peer a PG again in the same interval (its members' logs may have diverged)."""
        old = self.primaries.get(coll)
        if old is None:
            return
        old.close()
        prim = PgPrimary(old.pgid, old.pool, old.epoch, old.acting, old.up,
                         old.prior | set(old.acting), old.up_from, next(self._rounds))
        self.primaries[coll] = prim
        prim.task = asyncio.create_task(self._drive(prim), name=f"pg-{coll}")

    def pg_peers(self) -> set[int]:
        """OSDs sharing at least one PG with this one (heartbeat peers)."""
        out: set[int] = set()
        for acting in self._acting.values():
            if self.id in acting:
                out.update(acting)
        out.discard(self.id)
        return out

    def primary(self, coll: str) -> PgPrimary | None:
        return self.primaries.get(coll)

    async def close(self) -> None:
        tasks = [p.task for p in self.primaries.values() if p.task is not None]
        for prim in self.primaries.values():
            prim.close()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.primaries.clear()

    # --- the driver --------------------------------------------------------------------------
    async def _drive(self, prim: PgPrimary) -> None:
        pause = self.config.osd_peering_retry
        try:
            while True:
                try:
                    await self._peer(prim)
                    break
                except (LoligoError, grpc.aio.AioRpcError, _WrongSource) as exc:
                    prim.why = str(exc)
                    if not isinstance(exc, PeeringBlocked):
                        prim.phase = "peering"
                    log.info("osd.%d: peering %s: %s; again in %.1fs", self.id, prim.coll,
                             exc, pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 5.0)
            await self._recover_all(prim)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("osd.%d: PG %s driver failed", self.id, prim.coll)

    async def _query(self, osd: int, prim: PgPrimary) -> osd_pb2.PgQueryReply:
        if osd == self.id:
            return await self.registry.query(prim.coll, prim.interval())
        addr, stub = self.peers.peer(osd)
        return await rpc.call_with_retry(
            stub.Query, osd_pb2.PgQuery(epoch=prim.epoch, pgid=prim.coll,
                                        interval=prim.interval()), idempotent=True,
            config=self.config, address=f"osd.{osd} ({addr})")

    async def _peer(self, prim: PgPrimary) -> None:
        prim.phase, prim.why = "peering", ""
        osdmap = self._osdmap()
        probe = (set(prim.acting) | set(prim.up) | prim.prior
                 | set(osdmap.pg_to_raw_osds(prim.pgid)))
        replies: dict[int, osd_pb2.PgQueryReply | None] = {}
        while True:
            todo = sorted(o for o in probe if o not in replies and osdmap.osds.get(o) is not None
                          and osdmap.osds[o].up)
            if not todo:
                break
            got = await asyncio.gather(*(self._query(o, prim) for o in todo),
                                       return_exceptions=True)
            for osd, reply in zip(todo, got, strict=True):
                if isinstance(reply, BaseException):
                    if osd in prim.acting:
                        raise LoligoError(f"acting member osd.{osd} did not answer: {reply}")
                    replies[osd] = None
                    continue
                replies[osd] = reply
                if reply.exists:
                    probe |= set(reply.info.les_acting)
        answered = {o: r for o, r in replies.items() if r is not None}
        blockers = _may_hold_newer(osdmap, prim, probe, answered)
        if blockers:
            prim.phase = "down"
            raise PeeringBlocked(
                f"waiting for {', '.join(blockers)}, which may hold writes newer than any "
                "reachable copy: start it; if its disk is gone for good, remove it (loligo osd "
                "out N; loligo osd rm N) to go on without what only it had")
        peers = [_peer_of(o, r) for o, r in answered.items()]
        plan = peering.plan(peers, self.id)
        auth_reply = answered[plan.auth] if plan.auth is not None else None
        if plan.unresolved:
            assert plan.auth is not None
            plan.resolve(await self._versions(plan.auth, prim, plan.unresolved))
        inventories: dict[int, dict[bytes, int]] = {}
        for osd, member in plan.members.items():
            if member.backfill and osd in prim.acting and plan.auth is not None:
                assert auth_reply is not None
                if plan.auth not in inventories:
                    inventories[plan.auth] = await self._inventory(plan.auth, prim)
                target = await self._inventory(osd, prim) if answered[osd].exists else {}
                member.missing = peering.backfill_missing(
                    inventories[plan.auth], {m.oid: m.need for m in auth_reply.missing}, target)
        records = {r.seq: r.entry for r in auth_reply.log} if auth_reply is not None else {}
        activations = []
        for osd in prim.acting:
            member = plan.members[osd]
            msg = osd_pb2.PgActivate(
                epoch=prim.epoch, pgid=prim.coll, from_osd=self.id, les=prim.epoch,
                interval=prim.interval(),
                acting=list(prim.acting), replace_log=member.backfill,
                keep_through=plan.auth_tail if member.backfill else member.keep_through,
                append=[osd_pb2.PgLogRecord(seq=e.seq, entry=records[e.seq])
                        for e in member.append],
                missing=[osd_pb2.MissingItem(oid=o, need=n) for o, n in member.missing.items()])
            activations.append(self._activate(osd, msg))
        await asyncio.gather(*activations)
        prim.missing = {o: dict(plan.members[o].missing) for o in prim.acting}
        prim.backfill = {o for o in prim.acting if plan.members[o].backfill}
        prim.strays = {o for o, r in answered.items() if r.exists and o not in prim.acting}
        prim.stray_missing = {o: plan.members[o].missing for o in prim.strays
                              if not plan.members[o].backfill}
        prim.last_scrub_stamp, prim.last_deep_scrub_stamp = (
            await self.registry.get(prim.coll)).scrubbed
        prim.phase = "active"
        prim.active.set()
        log.info("osd.%d: PG %s active at epoch %d, acting %s, auth osd.%s, %d missing%s",
                 self.id, prim.coll, prim.epoch, list(prim.acting), plan.auth,
                 prim.missing_count(), f", backfill {sorted(prim.backfill)}"
                 if prim.backfill else "")

    async def _versions(self, osd: int, prim: PgPrimary, oids: set[bytes]) -> dict[bytes, int]:
        out = {}
        for oid in oids:
            reply = await self._pull(osd, osd_pb2.PullRequest(pgid=prim.coll, oid=oid,
                                                              interval=prim.interval()))
            out[oid] = reply.version if reply.exists else ABSENT
        return out

    async def _inventory(self, osd: int, prim: PgPrimary) -> dict[bytes, int]:
        out: dict[bytes, int] = {}
        after = b""
        while True:
            req = osd_pb2.InventoryRequest(pgid=prim.coll, after=after, max=5000,
                                           interval=prim.interval())
            if osd == self.id:
                reply = await self.registry.inventory(prim.coll, after, 5000, prim.interval())
            else:
                addr, stub = self.peers.peer(osd)
                reply = await rpc.call_with_retry(stub.Inventory, req, idempotent=True,
                                                  config=self.config,
                                                  address=f"osd.{osd} ({addr})")
            out.update((item.oid, item.need) for item in reply.objects)
            if not reply.more or not reply.objects:
                return out
            after = reply.objects[-1].oid

    async def _activate(self, osd: int, msg: osd_pb2.PgActivate) -> None:
        if osd == self.id:
            await self.registry.activate(msg)
            return
        addr, stub = self.peers.peer(osd)
        await rpc.call_with_retry(stub.Activate, msg, idempotent=True, config=self.config,
                                  address=f"osd.{osd} ({addr})")

    # --- recovery ----------------------------------------------------------------------------
    async def _recover_all(self, prim: PgPrimary) -> None:
        started = time.monotonic()
        while not prim.closed.is_set():
            todo = [oid for oid in prim.missing.get(self.id, {})]  # own objects first
            seen = set(todo)
            for osd in prim.acting:
                todo += [oid for oid in prim.missing.get(osd, {}) if oid not in seen]
                seen |= set(prim.missing.get(osd, {}))
            todo = [oid for oid in todo if oid not in prim.unfound]
            if not todo:
                break
            prim.recovering = True
            # a few objects at a time, each held while it is copied (ops on it wait, ops on
            # the others go on); the copies of a batch overlap, each in one of the OSD's slots
            batch = max(1, self.config.osd_recovery_max_active)
            for start in range(0, len(todo), batch):
                if prim.closed.is_set():
                    return
                failed = await asyncio.gather(*(self._recover_one(prim, oid)
                                                for oid in todo[start:start + batch]))
                if any(failed):
                    await asyncio.sleep(self.config.osd_peering_retry)
                prim.recovery_seconds = time.monotonic() - started
        prim.recovering = False
        if not prim.missing_count() and not prim.unfound and len(prim.acting) >= prim.size:
            await self._drop_strays(prim)
        log.info("osd.%d: PG %s %s (%d objects, %d bytes recovered in %.1fs)", self.id,
                 prim.coll, prim.state(), prim.recovered_objects, prim.recovered_bytes,
                 prim.recovery_seconds)

    async def _recover_one(self, prim: PgPrimary, oid: bytes) -> bool:
        """Recover one object in the background (holding it); whether it failed."""
        async with self._slots, prim.objects.hold(oid, exclusive=True):
            if prim.closed.is_set():
                return False
            try:
                await self.recover_object(prim, oid)
            except Unfound as exc:
                log.warning("osd.%d: %s", self.id, exc)
            except (LoligoError, grpc.aio.AioRpcError) as exc:
                log.info("osd.%d: recovery of %r in %s: %s; will retry", self.id, oid,
                         prim.coll, exc)
                return True
        return False

    async def ensure(self, prim: PgPrimary, oid: bytes, everywhere: bool = True) -> None:
        """Before an op on `oid` (which it holds): recover it wherever it is missing (a
        write), or at least here (a read)."""
        if prim.missing_anywhere(oid) if everywhere else oid in prim.missing.get(self.id, {}):
            await self.recover_object(prim, oid)

    async def recover_object(self, prim: PgPrimary, oid: bytes) -> None:
        """Copy one object to every acting member lacking it (the caller holds it)."""
        targets = [o for o in prim.acting if oid in prim.missing.get(o, {})]
        if not targets:
            return
        need = prim.missing[targets[0]][oid]
        if need == ABSENT:
            for osd in targets:
                await self._push(osd, osd_pb2.PushRequest(
                    epoch=prim.epoch, pgid=prim.coll, from_osd=self.id, oid=oid, remove=True,
                    interval=prim.interval()))
                prim.missing[osd].pop(oid, None)
            prim.recovered_objects += len(targets)
            return
        sources = [o for o in prim.acting if o not in targets]
        sources.sort(key=lambda o: o != self.id)  # ourselves first: no network for the reads
        sources += [o for o, m in prim.stray_missing.items() if oid not in m]
        for source in sources:
            try:
                moved = await self._copy(prim, source, oid, need, targets)
            except _TargetFailed as exc:  # the source was fine: no other source helps
                raise exc.error from None
            except (_WrongSource, LoligoError, grpc.aio.AioRpcError) as exc:
                log.info("osd.%d: %r of %s not taken from osd.%d: %s", self.id, oid,
                         prim.coll, source, exc)
                continue
            for osd in targets:
                prim.missing[osd].pop(oid, None)
            prim.unfound.discard(oid)
            prim.recovered_objects += len(targets)
            prim.recovered_bytes += moved * len(targets)
            return
        prim.unfound.add(oid)
        raise Unfound(f"PG {prim.coll}: no reachable OSD holds object {oid!r} at version "
                      f"{need} (tried {sources or 'no source'})")

    async def _copy(self, prim: PgPrimary, source: int, oid: bytes, need: int,
                    targets: list[int]) -> int:
        chunk = self.config.osd_recovery_chunk_size
        offset, first, omap_after, omap_more, moved = 0, True, b"", True, 0
        while True:
            reply = await self._pull(source, osd_pb2.PullRequest(
                pgid=prim.coll, oid=oid, offset=offset, length=chunk, meta=first,
                omap_after=omap_after, omap_max=1000 if omap_more else 0,
                interval=prim.interval()))
            if not reply.exists or reply.version != need:
                raise _WrongSource(f"it has version {reply.version if reply.exists else 'none'}"
                                   f", the PG needs {need}")
            if not omap_more:
                reply.ClearField("omap")
            omap_more = reply.omap_more
            if reply.omap:
                omap_after = reply.omap[-1].key
            last = offset + len(reply.data) >= reply.size and not omap_more
            await self.bucket.take(len(reply.data))
            push = osd_pb2.PushRequest(
                epoch=prim.epoch, pgid=prim.coll, from_osd=self.id, oid=oid, version=need,
                first=first, last=last, offset=offset, data=reply.data, xattrs=reply.xattrs,
                omap_header=reply.omap_header, omap=reply.omap, interval=prim.interval())
            pushed = await asyncio.gather(*(self._push(osd, push) for osd in targets),
                                          return_exceptions=True)
            for osd, result in zip(targets, pushed, strict=True):
                if isinstance(result, BaseException):
                    error = (result if isinstance(result, LoligoError)
                             else rpc.from_grpc_error(result, f"osd.{osd}")
                             if isinstance(result, grpc.aio.AioRpcError) else None)
                    if error is None:
                        raise result
                    raise _TargetFailed(error)
            moved += len(reply.data)
            offset += len(reply.data)
            first = False
            if last:
                return moved

    async def _pull(self, osd: int, req: osd_pb2.PullRequest) -> osd_pb2.PullReply:
        if osd == self.id:
            return await self.registry.pull(req)
        addr, stub = self.peers.peer(osd)
        return await rpc.call_with_retry(stub.Pull, req, idempotent=True, config=self.config,
                                         address=f"osd.{osd} ({addr})")

    async def _push(self, osd: int, req: osd_pb2.PushRequest) -> None:
        if osd == self.id:
            await self.registry.push(req)
            return
        addr, stub = self.peers.peer(osd)
        await rpc.call_with_retry(stub.Push, req, idempotent=True, config=self.config,
                                  address=f"osd.{osd} ({addr})")

    async def _drop_strays(self, prim: PgPrimary) -> None:
        for osd in sorted(prim.strays):
            try:
                addr, stub = self.peers.peer(osd)
                await rpc.call_with_retry(stub.Remove, osd_pb2.PgRemove(
                    epoch=prim.epoch, pgid=prim.coll, from_osd=self.id,
                    interval=prim.interval()), idempotent=True,
                    config=self.config, address=f"osd.{osd} ({addr})")
            except (LoligoError, grpc.aio.AioRpcError) as exc:
                log.info("osd.%d: osd.%d keeps its stray copy of %s: %s", self.id, osd,
                         prim.coll, exc)
            else:
                prim.strays.discard(osd)
                prim.stray_missing.pop(osd, None)

    # --- stats -------------------------------------------------------------------------------
    async def stats(self) -> list[mon_pb2.PgStat]:
        """The state of every PG this OSD leads, for the beacon (object counts and sizes are
        re-read from the store at most every STATS_EVERY seconds)."""
        out = []
        epoch = self._osdmap().epoch
        now = time.monotonic()
        for coll, prim in list(self.primaries.items()):
            stamp, objects, size = self._stats_cache.get(coll, (0.0, 0, 0))
            if now - stamp > STATS_EVERY:
                objects, size = await self._count(coll)
                self._stats_cache[coll] = (now, objects, size)
            missing = prim.missing_count()
            out.append(mon_pb2.PgStat(
                pgid=coll, state=prim.state(), epoch=epoch, num_objects=objects,
                num_bytes=size, missing_objects=missing,
                missing_bytes=missing * size // objects if objects else 0,
                recovered_objects=prim.recovered_objects,
                recovered_bytes=prim.recovered_bytes,
                recovery_seconds=prim.recovery_seconds,
                inconsistent_objects=len(prim.inconsistent),
                inconsistent=[split_oid(o)[1].decode(errors="backslashreplace")
                              for o in sorted(prim.inconsistent)[:MAX_NAMED]],
                last_scrub_stamp=prim.last_scrub_stamp,
                last_deep_scrub_stamp=prim.last_deep_scrub_stamp))
        for coll in [c for c in self._stats_cache if c not in self.primaries]:
            del self._stats_cache[coll]
        return out

    async def _count(self, coll: str) -> tuple[int, int]:
        """(objects, bytes) of a PG in this store, its meta object not counted."""
        if not await self.registry.exists(coll):
            return 0, 0
        try:
            objects, size = await self.registry.store.coll_stats(coll)
        except LoligoError:
            return 0, 0
        try:
            await self.registry.store.stat(coll, pgmeta.PGMETA_OID)
        except LoligoError:
            return objects, size
        return max(0, objects - 1), size


def _may_hold_newer(osdmap: OSDMap, prim: PgPrimary, candidates: set[int],
                    answered: dict[int, osd_pb2.PgQueryReply]) -> list[str]:
    """OSDs that did not answer and may have taken part in an activation newer than any an
    answering OSD took part in: Ceph's "past intervals" check, approximated from the map.

    Every write was acknowledged by all members of its interval, and each activation copies
    the history to all its members, so the answering OSDs with the newest activation (epoch
    `newest`) hold every write up to the next activation they missed. One of them that has
    been up since then and is acting now missed none (a later interval would have had it as a
    member, barring a CRUSH change that moved the PG away and back). Otherwise only an OSD
    that was up after `newest` (and after the pool was created) can have been in a later
    activation, and while one of those is silent, going active could roll its writes back.
    """
    holders = {o: r for o, r in answered.items() if r.exists}
    newest = max((r.info.les for r in holders.values()), default=0)
    for osd, reply in holders.items():
        state = osdmap.osds.get(osd)
        if (reply.info.les == newest and state is not None and state.up
                and state.up_from <= newest and osd in prim.acting):
            return []
    pool = osdmap.pools.get(prim.pgid.pool)
    since = max(newest, pool.created if pool is not None else 0)
    out = []
    for osd in sorted(candidates - set(answered)):
        state = osdmap.osds.get(osd)
        if state is None:
            continue  # removed from the cluster: its copies are given up
        if state.up:
            out.append(f"osd.{osd} (up, not answering)")
        elif state.down_at > since:
            out.append(f"osd.{osd} (down since epoch {state.down_at})")
    return out


def _peer_of(osd: int, reply: osd_pb2.PgQueryReply) -> Peer:
    if not reply.exists:
        return Peer(osd=osd)
    return Peer(osd=osd, exists=True, les=reply.info.les,
                les_acting=tuple(reply.info.les_acting), log_tail=reply.info.log_tail,
                log=[pgmeta.to_entry(r.seq, r.entry) for r in reply.log],
                missing={m.oid: m.need for m in reply.missing})
