"""The MDSMap on real monitors: beacons make one MDS active and the others standbys; when the
active one goes silent the leader fails it and a standby takes rank 0; subscribers see it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from cluster import launcher
from rados_py.auth import Keyring
from rados_py.config import load
from rados_py.monclient import MonClient
from rados_py.proto.loligo import mon_pb2
from tests.integration import running_cluster


@pytest.fixture
def cluster(tmp_path: Path):
    with running_cluster(tmp_path / "cluster", mons=3,
                         settings={"mds_beacon_interval": 0.2, "mds_beacon_grace": 1.5}) as c:
        yield c


def test_active_mds_failure_promotes_the_standby(cluster: launcher.LocalCluster) -> None:
    config = load(cluster.conf)

    async def scenario() -> None:
        async with MonClient(config, Keyring.load(config.keyring)) as client:
            await client.connect(timeout=20)

            async def beat(name: str, port: int, stop: asyncio.Event) -> None:
                while not stop.is_set():
                    with contextlib.suppress(Exception):  # an election: beacon again soon
                        await client.beacon(mon_pb2.BeaconRequest(
                            mds=mon_pb2.MdsBeacon(name=name, addr=f"127.0.0.1:{port}")),
                            timeout=2)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.2)

            stop_a, stop_b = asyncio.Event(), asyncio.Event()
            tasks = [asyncio.create_task(beat("a", 7001, stop_a))]
            first = await client.beacon(mon_pb2.BeaconRequest(
                mds=mon_pb2.MdsBeacon(name="a", addr="127.0.0.1:7001")), timeout=10)
            assert first.state == "active"
            tasks.append(asyncio.create_task(beat("b", 7002, stop_b)))
            second = await client.beacon(mon_pb2.BeaconRequest(
                mds=mon_pb2.MdsBeacon(name="b", addr="127.0.0.1:7002")), timeout=10)
            assert second.state == "standby"

            updates = client.subscribe()
            stop_a.set()  # mds.a goes silent
            silent_at = time.monotonic()
            async with asyncio.timeout(15):
                async for maps in updates:
                    active = maps.mdsmap.active
                    if active is not None and active.name == "b":
                        break
            took = time.monotonic() - silent_at
            assert maps.mdsmap.get("a") is None and maps.mdsmap.active.rank == 0
            assert took < 1.5 + 3, f"standby took over after {took:.1f} s"
            stop_b.set()
            await asyncio.gather(*tasks)

    asyncio.run(scenario())
