"""An OSD restarted after a long outage boots once and its PGs peer once: the leader must not
judge the new process by the last beacon of the dead one (it used to mark the OSD down again
83 ms after it booted, "sent no beacon for 16.0 s", costing a second peering round)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from cluster import launcher
from rados_py.proto.loligo import mon_pb2
from rados_py.rados import Rados
from tests.integration import running_cluster
from tests.waiting import wait_for_async

GRACE = 1.5  # mon_osd_report_grace
ACTIVE = re.compile(r"PG (\S+) active at epoch (\d+)")


@pytest.fixture
def cluster(tmp_path: Path):
    with running_cluster(tmp_path / "cluster", osds=3,
                         settings={"osd_beacon_interval": 0.2, "mon_osd_report_grace": GRACE,
                                   "mon_osd_down_out_interval": 600.0}) as c:
        yield c


def _log_sizes(cluster: launcher.LocalCluster) -> dict[str, int]:
    return {d.name: cluster.log_file(d).stat().st_size for d in cluster.daemons}


def _log_since(cluster: launcher.LocalCluster, name: str, sizes: dict[str, int]) -> str:
    with open(cluster.log_file(cluster.daemon(name)), errors="replace") as f:
        f.seek(sizes.get(name, 0))
        return f.read()


def test_a_restart_after_a_long_outage_is_one_boot_and_one_peering(
        cluster: launcher.LocalCluster) -> None:
    async def scenario() -> None:
        async with Rados(cluster.config) as r:
            await r.mon.command(pool_create=mon_pb2.PoolCreate(name="p", pg_num=8, size=3))
            io = await r.open_ioctx("p")
            await io.write_full("before", b"1")

            async def osd1() -> tuple[bool, int]:
                state = (await r.mon.get_maps(latest=True)).osdmap.osds[1]
                return state.up, state.up_from

            cluster.kill("osd.1")
            killed = time.monotonic()
            await wait_for_async(lambda: _down(osd1()), GRACE + 10, "osd.1 marked down")
            # down for well over the report grace, as after a real outage
            await wait_for_async(lambda: time.monotonic() - killed > 4 * GRACE, 10 * GRACE,
                                 "an outage longer than mon_osd_report_grace")
            await io.write_full("during", b"2")
            sizes = _log_sizes(cluster)
            await asyncio.to_thread(cluster.start, ["osd.1"], timeout=60)
            up, boot_epoch = await osd1()
            assert up, "osd.1 is up once it serves"

            # watch it for three report graces: it must stay up in the same life
            watch_until = time.monotonic() + 3 * GRACE
            while time.monotonic() < watch_until:
                up, up_from = await osd1()
                assert up and up_from == boot_epoch, (
                    f"osd.1 was marked down again after booting at epoch {boot_epoch} "
                    f"(now up={up}, up_from={up_from}); monitor log: "
                    + _log_since(cluster, "mon.a", sizes)[-600:])
                await asyncio.sleep(0.1)
            assert await io.read("during") == b"2"

        mon_log = _log_since(cluster, "mon.a", sizes)
        assert "osd.1 sent no beacon" not in mon_log, mon_log[-600:]
        osd_log = _log_since(cluster, "osd.1", sizes)
        assert osd_log.count(" booted at ") == 1, osd_log[-600:]
        assert "booting again" not in osd_log
        # one peering round: every PG that activated since the restart did so at the epoch
        # osd.1 booted in, never again at a later one
        epochs: dict[str, set[int]] = {}
        for d in cluster.osds:
            for pgid, epoch in ACTIVE.findall(_log_since(cluster, d.name, sizes)):
                epochs.setdefault(pgid, set()).add(int(epoch))
        assert epochs, "the PGs peered when osd.1 came back"
        assert all(e == {boot_epoch} for e in epochs.values()), epochs

    asyncio.run(scenario())


async def _down(coro) -> bool:
    up, _ = await coro
    return not up
