"""The leader's soft state (mon/pg_stats.py): PG summaries and OSD failure reports."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mon import health
from mon.pg_stats import FailureReports, PgStats, raw_space
from rados_py.crush import text
from rados_py.crush.compiled import CompiledMap
from rados_py.osdmap import OSDMap, Pool
from rados_py.proto.loligo import mon_pb2

SAMPLE = Path(__file__).resolve().parents[2] / "cluster" / "samples" / "crushmap.txt"


def osdmap() -> OSDMap:
    cm = CompiledMap(text.parse(SAMPLE.read_text()))
    return OSDMap.all_up(cm, [Pool(1, "data", size=3, min_size=2, pg_num=8)], epoch=7)


def test_each_pg_counts_once_by_its_current_primarys_report() -> None:
    m = osdmap()
    placements = m.map_pool(1)
    stats = PgStats()
    for seed, placement in enumerate(placements[:6]):
        beacon = mon_pb2.OsdBeacon(id=placement.acting_primary)
        beacon.pgs.add(pgid=f"1.{seed:x}", state="active+clean", num_objects=2, num_bytes=10,
                       recovered_objects=seed, recovered_bytes=seed * 100)
        stats.report(placement.acting_primary, beacon, now=100.0 + seed)
    wrong = (placements[6].acting_primary + 1) % 6  # a report from an OSD no longer primary
    beacon = mon_pb2.OsdBeacon(id=wrong, usage=mon_pb2.OsdUsage(used_bytes=5, avail_bytes=95,
                                                                 total_bytes=100))
    beacon.pgs.add(pgid="1.6", state="active+clean")
    stats.report(wrong, beacon, now=107.0)
    summary = stats.summary(m, stale_after=7.5, now=108.0)
    states = {s.state: s.count for s in summary.by_state}
    # 1.0 was reported at t=100, 8 s ago: stale; 1.6 by a non-primary and 1.7 never: unknown
    assert states == {"active+clean": 5, "stale+active+clean": 1, "unknown": 2}
    assert summary.num_objects == 12 and summary.data_bytes == 60
    assert (summary.used_bytes, summary.avail_bytes, summary.total_bytes) == (5, 95, 100)
    assert summary.recovery_objects_per_sec > 0


def test_failure_reports_need_fresh_reporters_about_the_current_life() -> None:
    m = osdmap()
    reports = FailureReports()
    reports.report(1, 0, alive=False, now=10.0, epoch=7)
    reports.report(2, 0, alive=False, now=10.0, epoch=7)
    assert reports.reporters(0, m, now=11.0, window=6.0) == {1, 2}
    assert reports.reporters(0, m, now=20.0, window=6.0) == set()  # too old
    reports.report(2, 0, alive=True, now=12.0, epoch=7)  # it answered osd.2 again
    assert reports.reporters(0, m, now=12.0, window=6.0) == {1}
    # osd.0 restarted and came up at epoch 9: reports sent at epoch 7 are about the old process
    m = m.replace(osds={**m.osds, 0: dataclasses.replace(m.osds[0], up_from=9)})
    assert reports.reporters(0, m, now=12.0, window=6.0) == set()
    reports.report(1, 0, alive=False, now=13.0, epoch=9)
    assert reports.reporters(0, m, now=13.0, window=6.0) == {1}


def test_osds_sharing_a_disk_count_it_once() -> None:
    """Three OSDs on one 252 GiB file system: 252 GiB in total, not 756 (issue 14)."""
    gib = 1 << 30
    disk = {"fs_id": "h1:2049", "fs_total_bytes": 252 * gib, "fs_avail_bytes": 200 * gib}
    shared = [mon_pb2.OsdUsage(used_bytes=u * gib, total_bytes=252 * gib,
                               avail_bytes=200 * gib, **disk) for u in (1, 2, 3)]
    assert raw_space(shared) == (6 * gib, 200 * gib, 252 * gib)
    # with a size each (osd_capacity 10 GiB), they add up while the disk has room
    sized = [mon_pb2.OsdUsage(used_bytes=gib, total_bytes=10 * gib, avail_bytes=9 * gib,
                              **disk) for _ in range(3)]
    assert raw_space(sized) == (3 * gib, 27 * gib, 30 * gib)
    # another host's disk adds its own
    other = mon_pb2.OsdUsage(used_bytes=gib, total_bytes=100 * gib, avail_bytes=99 * gib,
                             fs_id="h2:2049", fs_total_bytes=100 * gib,
                             fs_avail_bytes=99 * gib)
    assert raw_space([*shared, other]) == (7 * gib, 299 * gib, 352 * gib)


def test_objects_of_an_undersized_pg_count_as_degraded() -> None:
    """Objects written while a replica is down lack that copy, though none is queued for
    recovery yet: health must count them."""
    m = osdmap()
    down = m.map_pool(1)[0].acting[1]
    m = m.replace(osds={**m.osds, down: dataclasses.replace(m.osds[down], up=False)})
    stats = PgStats()
    for seed, placement in enumerate(m.map_pool(1)):
        beacon = mon_pb2.OsdBeacon(id=placement.acting_primary)
        beacon.pgs.add(pgid=f"1.{seed:x}", num_objects=10,
                       state="active+clean" if len(placement.acting) == 3
                       else "active+undersized+degraded")
        stats.report(placement.acting_primary, beacon, now=1.0)
    summary = stats.summary(m, stale_after=10, now=2.0)
    undersized = sum(1 for p in m.map_pool(1) if len(p.acting) < 3)
    assert undersized >= 1
    assert summary.degraded_objects == 10 * undersized
    assert summary.total_copies == 8 * 10 * 3
    checks = {c.code: c for c in health.pg_checks(summary)}
    assert (f"{10 * undersized}/240 object copies degraded"
            in checks["PG_DEGRADED"].summary)
