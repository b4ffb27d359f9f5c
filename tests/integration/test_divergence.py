"""A primary killed between its own commit of a write and its replicas' (the write was never
acknowledged): the surviving members go on without it, and when the old primary comes back its
divergent entry is rolled back - the write ends absent everywhere, never on some replicas only.
(`osd_debug_replicate_delay` holds each write back from the replicas for the kill.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from cluster import launcher
from rados_py.config import load
from rados_py.rados import Rados
from tests.integration import running_cluster
from tests.integration.checks import replicas_identical, wait_clean
from tests.waiting import wait_for_async

DELAY = 4.0


@pytest.fixture
def cluster(tmp_path) -> Iterator[launcher.LocalCluster]:
    settings = {"osd_pool_default_pg_num": 8, "osd_debug_replicate_delay": DELAY,
                "mon_osd_down_out_interval": 0}
    with running_cluster(tmp_path / "cluster", osds=3, pool=launcher.DEFAULT_POOL,
                         settings=settings) as c:
        yield c


def test_unacknowledged_write_of_a_killed_primary_is_rolled_back(
        cluster: launcher.LocalCluster) -> None:
    async def go() -> None:
        async with Rados(load(cluster.conf)) as r:
            io = await r.open_ioctx("data")
            await io.write_full("div", b"old")  # acknowledged (after the delay)
            await wait_clean(r, 60)
            _, pgid, placement = r.osdmap.map_object(io.pool_id, b"div")
            primary = placement.acting_primary
            async with Rados(load(cluster.conf), op_timeout=DELAY / 2) as impatient:
                io2 = await impatient.open_ioctx("data")
                write = asyncio.create_task(io2.write_full("div", b"new, never acknowledged"))

                async def committed_locally() -> bool:  # the primary's log has the entry
                    dumps = await _primary_dump(r, primary, str(pgid))
                    return any(o.size == len(b"new, never acknowledged") for o in dumps.objects)
                await wait_for_async(committed_locally, DELAY, "the primary's own commit")
                cluster.kill(f"osd.{primary}")
                assert not write.done(), "acknowledged before the replicas had it"
                # the client gives up now: a resend would reach the next primary (a dead
                # primary is down within a second) and be applied there, in the open
                write.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await write

            async def down() -> bool:
                return not (await r.mon.get_maps(latest=True)).osdmap.osds[primary].up
            await wait_for_async(down, 20, f"osd.{primary} marked down")
            assert await io.read("div") == b"old"
            await replicas_identical(r, io.pool_id, 2)
            await asyncio.to_thread(cluster.start, [f"osd.{primary}"], timeout=60)
            await wait_clean(r, 90)
            assert await io.read("div") == b"old"
            objects = await replicas_identical(r, io.pool_id, 3)  # its copy rolled back too
            assert objects[b"\0\0div"][0] == len(b"old")
    asyncio.run(go())


async def _primary_dump(r: Rados, osd: int, pgid: str):
    from rados_py import rpc
    from rados_py.proto.loligo import osd_pb2, osd_pb2_grpc

    channel = rpc.open_channel(r.osdmap.osds[osd].addr, r.config, r._creds)
    try:
        return await osd_pb2_grpc.OsdStub(channel).DumpPg(osd_pb2.DumpPgRequest(pgid=pgid),
                                                         timeout=10)
    finally:
        await channel.close()
