"""A full disk on one OSD of three (pool size 3, so that OSD holds a copy of every PG): osd.0's
data directory is a size-limited tmpfs mounted under the test's tmp directory (root only; the
fixture unmounts it even when the test fails).

What must hold while it is full: a write that does not fit reaches the client as an error
(StoreFull from a full primary; from a full replica StoreFull or, at worst, a Timeout whose
message says the disk is full) - never an acknowledgement that is missing from a replica; every
object written before reads back intact, identical on the three OSDs; osd.0 stays up; and once
objects are removed, writes succeed again and land on every replica."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

from cluster import launcher
from osd.pg import coll_for, store_oid
from rados_py import rpc
from rados_py.errors import LoligoError, StoreFull, Timeout
from rados_py.proto.loligo import mon_pb2, osd_pb2, osd_pb2_grpc
from rados_py.rados import IoCtx, Rados
from tests.integration import create_cluster, started
from tests.waiting import wait_for_async

POOL = "full"
TMPFS_SIZE = 24 << 20     # room for the store's SQLite (and its WAL) plus a dozen 1 MiB blocks
MiB = 1 << 20
OP_TIMEOUT = 4.0          # the client's deadline: bounds each write that cannot complete


def _why_not_root() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a size-limited tmpfs as an OSD's data directory"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "needs mount/umount to give an OSD a small data directory"
    return None


@contextlib.contextmanager
def small_tmpfs(path: Path, size: int) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                   check=True, capture_output=True)
    try:
        yield path
    finally:
        # the daemons are stopped first (below), so a busy mount means a leak: still detach
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True, capture_output=True)


@contextlib.contextmanager
def cluster_with_a_small_osd(directory: Path) -> Iterator[launcher.LocalCluster]:
    """Like tests.integration.running_cluster (1 monitor, 3 OSDs, a pool of size 3), with
    osd.0's data directory on a small tmpfs, mounted before the OSD first starts."""
    c = create_cluster(directory, osds=3)
    with small_tmpfs(Path(c.config.data_dir) / "osd.0", TMPFS_SIZE), started(c, POOL):
        yield c


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[launcher.LocalCluster]:
    why = _why_not_root()
    if why is not None:
        pytest.skip(f"SKIPPED LOUDLY: {why}")
    with cluster_with_a_small_osd(tmp_path / "cluster") as c:
        yield c


def payload(i: int, size: int) -> bytes:
    return (b"%08d" % i) * (size // 8)


async def replica_view(r: Rados, pool_id: int, names: list[bytes]
                       ) -> dict[bytes, dict[int, tuple[int, int, bytes] | None]]:
    """name -> osd -> (size, version, digest) as that OSD's store holds it (None: absent)."""
    osdmap = r.osdmap
    out: dict[bytes, dict[int, tuple[int, int, bytes] | None]] = {}
    channels = {o: rpc.open_channel(s.addr, r.config, r._creds) for o, s in osdmap.osds.items()}
    try:
        dumps: dict[tuple[str, int], dict[bytes, tuple[int, int, bytes]]] = {}
        for name in names:
            pgid = osdmap.object_to_pg(pool_id, name, b"")[1]
            coll = coll_for(pgid)
            out[name] = {}
            for o in osdmap.pg_to_up_acting(pgid).acting:
                if (coll, o) not in dumps:
                    reply = await osd_pb2_grpc.OsdStub(channels[o]).DumpPg(
                        osd_pb2.DumpPgRequest(pgid=coll), timeout=30)
                    dumps[coll, o] = {e.oid: (e.size, e.version, e.digest)
                                      for e in reply.objects}
                out[name][o] = dumps[coll, o].get(store_oid(b"", name))
    finally:
        for ch in channels.values():
            await ch.close()
    return out


def assert_on_every_replica(view: dict[bytes, dict[int, tuple[int, int, bytes] | None]],
                            expected: dict[bytes, bytes], what: str) -> None:
    for name, data in expected.items():
        copies = view[name]
        assert len(copies) == 3, f"{name!r}: acting set {sorted(copies)}"
        want = (len(data), xxhash.xxh3_64_digest(data))
        for osd, got in copies.items():
            assert got is not None, f"{what}: {name!r} acknowledged but missing on osd.{osd}"
            assert (got[0], got[2]) == want, f"{what}: {name!r} differs on osd.{osd}"
        versions = {got[1] for got in copies.values() if got is not None}
        assert len(versions) == 1, f"{what}: {name!r} has versions {versions} across replicas"


def names_led_by(r: Rados, pool_id: int, prefix: str, primary: bool) -> Iterator[bytes]:
    """Object names whose PG has osd.0 as its primary (primary=True) or as a replica."""
    i = 0
    while True:  # a third of all names qualify either way: ends after a few tries each
        name = f"{prefix}-{i}".encode()
        if (r.osdmap.map_object(pool_id, name)[2].acting_primary == 0) == primary:
            yield name
        i += 1


async def fill(io: IoCtx, names: Iterator[bytes], max_errors: int
               ) -> tuple[dict[bytes, bytes], dict[bytes, Exception]]:
    """Write 1 MiB objects one at a time (each outcome unambiguous) until `max_errors` writes
    failed; what was acknowledged and what failed."""
    acked: dict[bytes, bytes] = {}
    errors: dict[bytes, Exception] = {}
    for i in range(2 * TMPFS_SIZE // MiB):  # bounded: twice what could ever fit
        name = next(names)
        data = payload(1000 + i, MiB)
        try:
            await io.write_full(name, data)
        except LoligoError as exc:  # which errors are right is each test's to check
            errors[name] = exc
            if len(errors) >= max_errors:
                break
        else:
            acked[name] = data
    assert errors, f"{len(acked)} MiB written and osd.0 never reported a full disk"
    return acked, errors


async def write_before(io: IoCtx) -> dict[bytes, bytes]:
    before = {b"before-%d" % i: payload(i, 4096 if i % 2 else 2 * MiB) for i in range(6)}
    for name, data in before.items():
        await io.write_full(name, data)
    return before


def test_a_full_replica_gives_errors_not_loss_and_recovers(
        cluster: launcher.LocalCluster) -> None:
    """osd.0 full as a replica: the primary has applied the write, osd.0 refuses it."""
    async def go() -> None:
        async with Rados(cluster.config, op_timeout=OP_TIMEOUT) as r:
            io = await r.open_ioctx(POOL)
            assert r.osdmap.pool(io.pool_id).size == 3
            # the store keeps a reserve of several MiB, a large part of this small disk:
            # ratios below the point where it refuses writes (about 0.83 here)
            for which, ratio in (("nearfull", 0.5), ("backfillfull", 0.6), ("full", 0.75)):
                await r.mon.command(osd_set_full_ratio=mon_pb2.OsdSetFullRatio(which=which,
                                                                             ratio=ratio))
            before = await write_before(io)
            acked, errors = await fill(io, names_led_by(r, io.pool_id, "fill", False), 2)
            # the type of these errors: test_a_full_replica_is_reported_as_full
            print(f"\nfull after {len(acked)} x 1 MiB; first error: {next(iter(errors.values()))}")

            assert cluster.pid(cluster.daemon("osd.0")) is not None, "osd.0 died when full"
            full = await wait_for_async(lambda: _full_check(r, "osd.0"), 15,
                                        "health OSD_FULL naming osd.0")
            print(f"health: {full.code} {full.summary}")
            # the monitors flag the cluster full: a write that adds data fails at once, on any
            # PG, while reads and deletes go on
            await wait_for_async(lambda: _flagged_full(r), 10, "the full flag in the map")
            t0 = time.monotonic()
            with pytest.raises(StoreFull, match="the cluster is full"):
                await io.write_full(b"while-flagged-full", b"x")
            assert time.monotonic() - t0 < 0.5
            for which, ratio in (("full", 0.95), ("backfillfull", 0.9), ("nearfull", 0.85)):
                await r.mon.command(osd_set_full_ratio=mon_pb2.OsdSetFullRatio(which=which,
                                                                             ratio=ratio))
            await wait_for_async(lambda: _not(_flagged_full(r)), 10, "the full flag cleared")
            for name, data in before.items():
                assert await io.read(name) == data, f"{name!r} changed while the disk was full"
            view = await replica_view(r, io.pool_id, [*before, *acked])
            assert_on_every_replica(view, {**before, **acked}, "while full")

            # free space: remove what was acknowledged (present on every replica)
            for name in acked:
                await io.remove(name)
            after = {b"after-%d" % i: payload(2000 + i, MiB) for i in range(4)}
            for name, data in after.items():
                await io.write_full(name, data)
                assert await io.read(name) == data
            view = await replica_view(r, io.pool_id, [*before, *after])
            assert_on_every_replica(view, {**before, **after}, "after freeing space")
            assert cluster.pid(cluster.daemon("osd.0")) is not None
    asyncio.run(go())


async def _flagged_full(r: Rados) -> bool:
    return "full" in (await r.mon.get_maps(latest=True)).osdmap.flags


async def _not(flag) -> bool:
    return not await flag


async def _full_check(r: Rados, osd: str) -> mon_pb2.HealthCheck | None:
    checks = (await r.mon.status(timeout=5)).view.checks
    return next((c for c in checks if c.code == "OSD_FULL" and f"{osd} " in c.summary), None)


def test_a_full_primary_gives_errors_not_loss_and_recovers(
        cluster: launcher.LocalCluster) -> None:
    """osd.0 full as the primary: its own apply fails while its replicas may succeed."""
    async def go() -> None:
        async with Rados(cluster.config, op_timeout=OP_TIMEOUT) as r:
            io = await r.open_ioctx(POOL)
            before = await write_before(io)
            acked, errors = await fill(io, names_led_by(r, io.pool_id, "fill", True), 2)
            assert cluster.pid(cluster.daemon("osd.0")) is not None, "osd.0 died when full"
            for name, data in before.items():
                assert await io.read(name) == data
            view = await replica_view(r, io.pool_id, [*before, *acked, *errors])
            assert_on_every_replica(view, {**before, **acked}, "while full")
            for name, exc in errors.items():
                if isinstance(exc, StoreFull):  # "not applied": then applied nowhere
                    held = [o for o, got in view[name].items() if got is not None]
                    assert not held, f"{name!r}: StoreFull, yet applied on osd {held}"
            for name in acked:
                await io.remove(name)
            # room again: every PG takes writes, those of the failed writes too
            after: dict[bytes, bytes] = {}
            for failed in errors:
                pgid = r.osdmap.object_to_pg(io.pool_id, failed)[1]
                name = next(n for n in (b"again-%d" % i for i in range(10_000))
                            if n not in after and r.osdmap.object_to_pg(io.pool_id, n)[1] == pgid)
                after[name] = payload(3000 + len(after), MiB)
                await io.write_full(name, after[name])
            view = await replica_view(r, io.pool_id, [*before, *after])
            assert_on_every_replica(view, {**before, **after}, "after freeing space")
    asyncio.run(go())


def test_a_full_osd_is_reported_as_full(cluster: launcher.LocalCluster) -> None:
    """Whether osd.0 is the replica or the primary, a write that does not fit gets StoreFull,
    or at worst a Timeout (the client resending until its deadline) saying the disk is full."""
    async def go() -> None:
        async with Rados(cluster.config, op_timeout=OP_TIMEOUT) as r:
            io = await r.open_ioctx(POOL)
            _, as_replica = await fill(io, names_led_by(r, io.pool_id, "rfill", False), 1)
            _, as_primary = await fill(io, names_led_by(r, io.pool_id, "pfill", True), 1)
            wrong = {name: f"{type(exc).__name__}: {exc}"
                     for name, exc in {**as_replica, **as_primary}.items()
                     if not (isinstance(exc, StoreFull)
                             or (isinstance(exc, Timeout) and "space" in str(exc)))}
            assert not wrong, f"errors that hide the full disk: {wrong}"
    asyncio.run(go())
