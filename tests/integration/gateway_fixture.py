"""A real cluster with one gateway process, for the gateway's API tests that need no more
(the S3 suite runs its own, with a second HTTPS gateway)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster import launcher
from rados_py.rados import Rados
from tests.integration import random_base_port, running_cluster
from tests.waiting import wait_for


@dataclass
class GatewayProcess:
    cluster: launcher.LocalCluster
    url: str
    user: dict[str, Any]  # the ready user, as `loligo cluster info --format json` shows it

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


ROOT = Path(__file__).resolve().parents[2]


def loligo(cluster: launcher.LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    """The `loligo` CLI against the cluster, as a process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "cluster", *args, "--conf", str(cluster.conf)],
                          capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)


def osds_up(cluster: launcher.LocalCluster, count: int) -> bool:
    async def go() -> bool:
        async with Rados(cluster.config) as rados:
            return sum(o.up for o in rados.osdmap.osds.values()) >= count
    return asyncio.run(go())


@contextlib.contextmanager
def running_gateway(directory: Path, *, osds: int = 2,
                    settings: dict[str, object] | None = None) -> Iterator[GatewayProcess]:
    """A cluster (1 monitor, `osds` OSDs) and gateway.1 on a free port; all stopped after."""
    with running_cluster(directory, mons=1, osds=osds, settings=settings) as cluster:
        wait_for(lambda: osds_up(cluster, osds), 60, f"{osds} OSDs up")
        port = launcher.pick_ports(1, random_base_port() + 500)[0]
        with open(cluster.conf, "a") as f:
            f.write(f"\n[gateway.1]\ngateway_port = {port}\n")
        cluster.start_gateways(timeout=60)
        info = cluster.gateway_info()
        assert info is not None and info["user"] is not None
        yield GatewayProcess(cluster, f"http://127.0.0.1:{port}", info["user"])
