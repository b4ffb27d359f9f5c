"""A running cluster with a file system and its MDSs, and mounts of it (real processes:
monitors, OSDs, two MDSs, `loligo fs mount` through FUSE). Skips loudly where FUSE cannot
work (no /dev/fuse, no fusermount3, not root)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import launcher
from tests.integration import running_cluster
from tests.waiting import wait_for

FS_SETTINGS = {"mds_beacon_interval": 0.2, "mds_beacon_grace": 2.0,
               "mds_reconnect_timeout": 5.0, "mds_session_timeout": 4.0,
               "mds_flush_interval": 0.2, "osd_pool_default_size": 2}


def fuse_usable() -> str:
    """Why FUSE cannot be used here ("" when it can)."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    if shutil.which("fusermount3") is None and shutil.which("umount") is None:
        return "neither fusermount3 nor umount is installed"
    if os.geteuid() != 0:
        return "the mount calls mount(2), which needs root here"
    return ""


def require_fuse() -> None:
    why = fuse_usable()
    if why:
        pytest.skip(f"FUSE TESTS SKIPPED: {why}")


@contextlib.contextmanager
def fs_cluster(directory: Path, osds: int = 2, settings: dict | None = None
               ) -> Iterator[launcher.LocalCluster]:
    require_fuse()
    with running_cluster(directory, mons=1, osds=osds, mdss=2,
                         settings={**FS_SETTINGS, **(settings or {})}) as c:
        asyncio.run(c.create_fs())
        yield c


class Mount:
    """`loligo fs mount` of the cluster at `path`, its process and helpers."""

    def __init__(self, cluster: launcher.LocalCluster, path: Path) -> None:
        self.cluster = cluster
        self.path = path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mount:
        from mds.client.mount import is_mounted

        self.path.mkdir(parents=True, exist_ok=True)
        log = open(self.cluster.conf.parent / f"mount-{self.path.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cluster", "fs", "mount", str(self.path), "--foreground",
             "--conf", str(self.cluster.conf)], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        wait_for(lambda: is_mounted(self.path) or self.proc.poll() is not None, 60,
                 f"the mount on {self.path}")
        assert self.proc.poll() is None, self.log()
        return self

    def log(self) -> str:
        return (self.cluster.conf.parent / f"mount-{self.path.name}.log").read_text(
            errors="replace")[-3000:]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        from mds.client.mount import is_mounted, unmount

        with contextlib.suppress(OSError):
            if is_mounted(self.path):
                unmount(self.path)
        if self.proc is not None:
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def mounted(cluster: launcher.LocalCluster, path: Path) -> Iterator[Mount]:
    m = Mount(cluster, path)
    try:
        yield m.start()
    finally:
        m.stop()
