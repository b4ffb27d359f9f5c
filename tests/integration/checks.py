"""What integration tests check on a running cluster: PG states, and that every replica of
every PG holds the same objects (read straight from each OSD's store with DumpPg)."""

from __future__ import annotations

import asyncio

from rados_py import rpc
from rados_py.osdmap import PgId
from rados_py.proto.loligo import osd_pb2, osd_pb2_grpc
from rados_py.rados import Rados
from tests.waiting import wait_for_async

__all__ = ["pg_states", "replica_dumps", "replicas_identical", "wait_clean"]


async def pg_states(r: Rados) -> dict[str, int]:
    """State -> number of PGs, as the leader monitor reports it."""
    status = await r.mon.status()
    return {s.state: s.count for s in status.view.pgs.by_state}


async def wait_clean(r: Rados, timeout: float) -> None:
    """Until every PG of every pool is active+clean (with a readable failure message)."""
    async def clean() -> bool:
        await r.mon.get_maps(latest=True)
        total = sum(p.pg_num for p in r.osdmap.pools.values())
        return await pg_states(r) == {"active+clean": total}
    try:
        await wait_for_async(clean, timeout, "all PGs active+clean")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; PG states now: {await pg_states(r)}") from None


async def replica_dumps(r: Rados, pool_id: int) -> dict[str, dict[int, osd_pb2.DumpPgReply]]:
    """PG -> acting OSD -> what that OSD's store holds for the PG."""
    await r.mon.get_maps(latest=True)
    osdmap = r.osdmap
    channels = {o: rpc.open_channel(s.addr, r.config, r._creds)
                for o, s in osdmap.osds.items() if s.up}
    try:
        stubs = {o: osd_pb2_grpc.OsdStub(c) for o, c in channels.items()}
        out: dict[str, dict[int, osd_pb2.DumpPgReply]] = {}
        for seed in range(osdmap.pool(pool_id).pg_num):
            pgid = PgId(pool_id, seed)
            acting = osdmap.pg_to_up_acting(pgid).acting
            replies = await asyncio.gather(*(
                stubs[o].DumpPg(osd_pb2.DumpPgRequest(pgid=str(pgid)), timeout=60)
                for o in acting))
            out[str(pgid)] = dict(zip(acting, replies, strict=True))
        return out
    finally:
        for channel in channels.values():
            await channel.close()


async def replicas_identical(r: Rados, pool_id: int, size: int) -> dict[bytes, tuple]:
    """Assert every PG has `size` acting OSDs holding identical objects (name, size, version,
    data digest); returns oid -> (size, version, digest) of the whole pool."""
    objects: dict[bytes, tuple] = {}
    for pgid, by_osd in (await replica_dumps(r, pool_id)).items():
        assert len(by_osd) == size, f"PG {pgid} has acting {list(by_osd)}"
        views = {o: [(x.oid, x.size, x.version, x.digest) for x in d.objects]
                 for o, d in by_osd.items()}
        first = next(iter(views.values()))
        for osd, view in views.items():
            assert view == first, (f"replicas of {pgid} differ: osd.{osd} holds "
                                   f"{sorted(set(view) ^ set(first))[:5]} unlike the others")
        objects.update((oid, (n, version, digest)) for oid, n, version, digest in first)
    return objects
