"""Integration tests: real daemon processes on 127.0.0.1, driven by real clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from cluster import launcher
from tests.unit.test_launcher import _procs_mentioning


def random_base_port() -> int:
    """A first port to try for a test cluster: spread out, so that two test runs on one machine
    (CI next to a developer's) rarely race for the same ports."""
    return 20000 + uuid.uuid4().int % 20000


def create_cluster(directory: Path, *, mons: int = 1, osds: int = 0,
                   settings: Mapping[str, object] | None = None, mdss: int = 0
                   ) -> launcher.LocalCluster:
    """A new local cluster in `directory` with `settings` added to its [global] section (tests
    shrink timers this way), not started."""
    conf = launcher.create(directory, mons=mons, base_port=random_base_port(), osds=osds,
                           mdss=mdss)
    extra = "".join(f"{key} = {value!r}\n" for key, value in (settings or {}).items())
    conf.write_text(conf.read_text().replace("[global]\n", "[global]\n" + extra, 1))
    return launcher.LocalCluster(conf, out=lambda *_: None)


@contextlib.contextmanager
def started(c: launcher.LocalCluster, pool: str | None = None
            ) -> Iterator[launcher.LocalCluster]:
    """`c` started (and `pool` created); stopped afterwards, and anything still running from
    its directory killed, even when the test (or the start itself) fails."""
    try:
        c.start(timeout=120)
        if pool is not None:
            asyncio.run(c.create_pool(pool))
        yield c
    finally:
        c.stop(grace=5)
        for pid in _procs_mentioning(str(c.conf.parent)):
            os.kill(pid, signal.SIGKILL)
            launcher._wait_dead(pid, 5)


@contextlib.contextmanager
def running_cluster(directory: Path, *, mons: int = 1, osds: int = 0,
                    settings: Mapping[str, object] | None = None,
                    pool: str | None = None, mdss: int = 0) -> Iterator[launcher.LocalCluster]:
    """A new local cluster (`create_cluster`), started for the duration (`started`)."""
    with started(create_cluster(directory, mons=mons, osds=osds, settings=settings,
                                mdss=mdss), pool) as c:
        yield c
