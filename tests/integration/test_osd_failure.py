"""The monitors notice a dead OSD on their own: no beacon for mon_osd_report_grace marks it
down, down for mon_osd_down_out_interval marks it out, writes go on with the survivors, and the
OSD boots back up when restarted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from cluster import launcher
from rados_py.config import load
from rados_py.proto.loligo import mon_pb2
from rados_py.rados import Rados
from tests.integration import running_cluster
from tests.waiting import wait_for_async

GRACE, OUT_AFTER = 1.5, 3.0


@pytest.fixture
def cluster(tmp_path: Path):
    with running_cluster(tmp_path / "cluster", osds=3,
                         settings={"osd_beacon_interval": 0.2, "mon_osd_report_grace": GRACE,
                                   "mon_osd_down_out_interval": OUT_AFTER}) as c:
        yield c


def test_a_killed_osd_is_marked_down_then_out_and_boots_back(
        cluster: launcher.LocalCluster) -> None:
    async def scenario() -> None:
        async with Rados(load(cluster.conf)) as r:
            await r.connect()
            await r.mon.command(pool_create=mon_pb2.PoolCreate(name="p", pg_num=8, size=3))
            io = await r.open_ioctx("p")
            await io.write_full("before", b"1")

            async def osd_state(osd: int) -> tuple[bool, bool]:
                state = (await r.mon.get_maps(latest=True)).osdmap.osds[osd]
                return state.up, state.is_in

            cluster.kill("osd.1")
            killed = time.monotonic()
            await wait_for_async(lambda: _is(osd_state(1), (False, True)), GRACE + 5,
                                 "osd.1 marked down")
            down_after = time.monotonic() - killed
            print(f"\n[osd] killed osd.1 marked down after {down_after:.1f} s (grace {GRACE})")
            assert down_after < GRACE + 2 + 1  # grace + 2 s, and the poll
            await io.write_full("during", b"2")  # two of three replicas >= min_size
            await wait_for_async(lambda: _is(osd_state(1), (False, False)), OUT_AFTER + 5,
                                 "osd.1 marked out")
            await asyncio.to_thread(cluster.start, ["osd.1"], timeout=60)
            # marked out by the monitors, not an operator: in again as it boots (like Ceph)
            await wait_for_async(lambda: _is(osd_state(1), (True, True)), 20,
                                 "osd.1 up and in again")
            assert await io.read("during") == b"2"

    asyncio.run(scenario())


async def _is(coro, expected: tuple[bool, bool]) -> bool:
    return await coro == expected



def test_an_osd_wrongly_marked_down_boots_again(cluster: launcher.LocalCluster) -> None:
    async def scenario() -> None:
        async with Rados(load(cluster.conf)) as r:
            await r.connect()
            await r.mon.command(osd_mark=mon_pb2.OsdMark(ids=[2], state=mon_pb2.OsdMark.DOWN))

            async def up() -> bool:
                return (await r.mon.get_maps(latest=True)).osdmap.osds[2].up
            await wait_for_async(up, 10, "osd.2 up again after its next beacons")

    asyncio.run(scenario())
