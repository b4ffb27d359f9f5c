"""The last OSD standing of an old interval must not go active alone: size 3, one OSD killed,
a write acknowledged by the two others, then those two killed and the first restarted alone.
Its PGs stay down (it may be missing acknowledged writes) instead of serving - or later
rolling back to - the old content; once the others return, the newer write is everywhere."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from cluster import launcher
from rados_py.config import load
from rados_py.errors import Timeout
from rados_py.rados import Rados
from tests.integration import running_cluster
from tests.integration.checks import pg_states, replicas_identical, wait_clean
from tests.waiting import wait_for_async


@pytest.fixture
def cluster(tmp_path) -> Iterator[launcher.LocalCluster]:
    settings = {"osd_pool_default_pg_num": 8, "mon_osd_down_out_interval": 0}
    with running_cluster(tmp_path / "cluster", osds=3, pool=launcher.DEFAULT_POOL,
                         settings=settings) as c:
        yield c


def test_a_stale_survivor_waits_for_the_newer_copies(cluster: launcher.LocalCluster) -> None:
    async def go() -> None:
        async with Rados(load(cluster.conf)) as r:
            io = await r.open_ioctx("data")
            await io.write_full("x", b"old")
            await wait_clean(r, 60)

            async def down(*osds: int) -> bool:
                maps = await r.mon.get_maps(latest=True)
                return all(not maps.osdmap.osds[o].up for o in osds)
            cluster.kill("osd.0")
            await wait_for_async(lambda: down(0), 20, "osd.0 marked down")
            await io.write_full("x", b"new")  # acknowledged by osd.1 and osd.2
            cluster.kill("osd.1")
            cluster.kill("osd.2")
            await r.mon.command(osd_mark=_mark_down(1, 2))
            await wait_for_async(lambda: down(1, 2), 20, "osd.1 and osd.2 marked down")
            await asyncio.to_thread(cluster.start, ["osd.0"], timeout=60)

            async def pgs_down() -> bool:
                states = await pg_states(r)
                return states.get("down", 0) == 8
            await wait_for_async(pgs_down, 30, "every PG down, waiting for osd.1/osd.2")
            async with Rados(load(cluster.conf), op_timeout=5) as impatient:
                with pytest.raises(Timeout, match=r"INACTIVE: PG .* is down: waiting for osd"):
                    await (await impatient.open_ioctx("data")).read("x")  # never b"old"
            await asyncio.to_thread(cluster.start, ["osd.1", "osd.2"], timeout=60)
            await wait_clean(r, 90)
            assert await io.read("x") == b"new"
            objects = await replicas_identical(r, io.pool_id, 3)
            assert objects[b"\0\0x"][0] == len(b"new")
    asyncio.run(go())


def _mark_down(*osds: int):
    from rados_py.proto.loligo import mon_pb2
    return mon_pb2.OsdMark(ids=list(osds), state=mon_pb2.OsdMark.DOWN)
