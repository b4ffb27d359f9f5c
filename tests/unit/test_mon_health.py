"""Health checks say what is wrong and what to do, with Ceph's codes."""

from __future__ import annotations

import dataclasses

from mon import health
from mon.cluster_maps import ClusterMaps
from rados_py.osdmap import OsdState, Pool

MONS = [("a", "127.0.0.1:6789"), ("b", "127.0.0.1:6790"), ("c", "127.0.0.1:6791")]


def maps() -> ClusterMaps:
    return ClusterMaps.initial("fsid", MONS, failure_domain="osd")


def test_all_monitors_in_quorum_is_healthy() -> None:
    m = maps()
    checks = health.mon_checks(m.monmap, ["a", "b", "c"], {})
    assert checks == [] and health.overall(checks) == health.HEALTH_OK


def test_one_monitor_down_warns_and_names_it() -> None:
    m = maps()
    (check,) = health.mon_checks(m.monmap, ["a", "c"], {"b": 40.2}, "/var/log/loligo")
    assert check.code == "MON_DOWN" and check.severity == health.HEALTH_WARN
    assert "mon.b (127.0.0.1:6790) since 40 s" in check.summary
    assert "quorum a,c still holds" in check.summary
    assert "loligo cluster start mon.b" in check.detail and "/var/log/loligo" in check.detail


def test_losing_the_majority_is_an_error() -> None:
    (check,) = health.mon_checks(maps().monmap, ["a"], {})
    assert check.severity == health.HEALTH_ERR and "NO QUORUM" in check.summary
    assert health.overall([check]) == health.HEALTH_ERR


def test_osd_down_too_few_osds_and_flags() -> None:
    osdmap = maps().osdmap
    osdmap = dataclasses.replace(
        osdmap, osds={0: OsdState(0), 1: OsdState(1, up=False), 2: OsdState(2, weight=0)},
        pools={1: Pool(1, "rbd")}, flags=frozenset({"noout"}))
    codes = {c.code: c for c in health.osd_checks(osdmap)}
    assert set(codes) == {"OSD_DOWN", "TOO_FEW_OSDS", "OSDMAP_FLAGS"}
    assert "osd.1" in codes["OSD_DOWN"].summary
    assert "1 up and in < pool size 3" in codes["TOO_FEW_OSDS"].summary
    assert "loligo osd unset noout" in codes["OSDMAP_FLAGS"].detail


def test_space_checks_name_each_osd_under_the_highest_ratio_passed() -> None:
    from rados_py.proto.loligo import mon_pb2

    osdmap = dataclasses.replace(maps().osdmap, osds={i: OsdState(i) for i in range(5)})

    def usage(used: int, avail: int) -> mon_pb2.OsdUsage:
        return mon_pb2.OsdUsage(used_bytes=used, avail_bytes=avail, total_bytes=1000)

    reported = {0: usage(10, 990), 1: usage(86, 14), 2: usage(91, 9), 3: usage(96, 4),
                4: usage(1, 0), 9: usage(99, 1)}  # osd.4: nothing left; osd.9 not in the map
    checks = {c.code: c for c in health.space_checks(osdmap, reported)}
    assert list(checks) == ["OSD_FULL", "OSD_BACKFILLFULL", "OSD_NEARFULL"]
    assert checks["OSD_FULL"].severity == health.HEALTH_ERR
    assert checks["OSD_FULL"].summary == "2 full osd(s): osd.3 96%, osd.4 100% (full_ratio 0.95)"
    assert "loligo osd set-full-ratio" in checks["OSD_FULL"].detail
    assert checks["OSD_BACKFILLFULL"].summary.startswith("1 backfillfull osd(s): osd.2 91%")
    assert checks["OSD_NEARFULL"].summary.startswith("1 nearfull osd(s): osd.1 86%")
    raised = dataclasses.replace(osdmap, full_ratio=0.97)
    assert "osd.3" not in {c.code: c for c in health.space_checks(raised, reported)}[
        "OSD_FULL"].summary
    assert health.space_checks(osdmap, {0: usage(10, 990)}) == []
    assert health.fullness(mon_pb2.OsdUsage()) is None  # nothing reported yet


def test_the_full_flag_is_explained_by_osd_full_not_as_maintenance() -> None:
    osdmap = dataclasses.replace(maps().osdmap, flags=frozenset({"full", "noout"}))
    flags = [c.summary for c in health.osd_checks(osdmap) if c.code == "OSDMAP_FLAGS"]
    assert flags == ["noout flag(s) set"]
