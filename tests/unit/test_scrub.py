"""Scrub's comparison (osd/scrub.py) and the health checks built from PG reports."""

from __future__ import annotations

from mon import health
from osd.scrub import compare
from rados_py.proto.loligo import mon_pb2, osd_pb2


def obj(oid: bytes, size: int = 10, version: int = 5, data: bytes = b"d", meta: bytes = b"m",
        error: bool = False) -> osd_pb2.ScrubObject:
    return osd_pb2.ScrubObject(oid=oid, size=size, version=version, data_digest=data,
                               meta_digest=meta, read_error=error)


def maps(*per_osd: list[osd_pb2.ScrubObject]) -> dict[int, dict[bytes, osd_pb2.ScrubObject]]:
    return {osd: {o.oid: o for o in objects} for osd, objects in enumerate(per_osd)}


def test_identical_copies_are_consistent() -> None:
    same = [obj(b"a"), obj(b"b")]
    assert compare(maps(same, same, same), primary=0, deep=True) == []


def test_the_odd_copy_out_is_reported_with_why() -> None:
    found = compare(maps([obj(b"a")], [obj(b"a", data=b"X")], [obj(b"a")]), 0, deep=True)
    assert [(f.oid, f.auth, f.bad) for f in found] == [(b"a", 0, [1])]
    assert found[0].why == "osd.1 data differs"
    # a light scrub does not read data: the same copies look fine
    assert compare(maps([obj(b"a")], [obj(b"a", data=b"X")], [obj(b"a")]), 0, False) == []


def test_missing_and_unreadable_copies_and_the_newest_version_wins() -> None:
    found = compare(maps([obj(b"a", error=True), obj(b"b", version=4)],
                         [obj(b"a"), obj(b"b", version=6)],
                         [obj(b"b", version=4)]), primary=0, deep=True)
    by_oid = {f.oid: f for f in found}
    assert by_oid[b"a"].bad == [0, 2] and by_oid[b"a"].auth == 1
    assert "checksum" in by_oid[b"a"].why and "osd.2 lacks it" in by_oid[b"a"].why
    assert by_oid[b"b"].auth == 1 and by_oid[b"b"].bad == [0, 2] and by_oid[b"b"].version == 6


def test_no_readable_copy_has_no_authority() -> None:
    found = compare(maps([obj(b"a", error=True)], [obj(b"a", error=True)]), 0, deep=True)
    assert found[0].auth == -1 and found[0].bad == [0, 1]


def test_health_names_damaged_objects_and_degraded_pgs() -> None:
    pgs = mon_pb2.PgSummary(missing_objects=7)
    pgs.by_state.add(state="active+clean+inconsistent", count=1)
    pgs.by_state.add(state="active+recovering+degraded", count=2)
    pgs.by_state.add(state="peering", count=1)
    pgs.pgs.add(pgid="1.3", state="active+clean+inconsistent", inconsistent_objects=1,
                inconsistent=["victim"])
    checks = {c.code: c for c in health.pg_checks(pgs)}
    assert set(checks) == {"PG_AVAILABILITY", "PG_DEGRADED", "OSD_SCRUB_ERRORS", "PG_DAMAGED"}
    assert "1 pgs inactive (1 peering)" in checks["PG_AVAILABILITY"].summary
    assert "7 object copies to recover, 2 pgs degraded" in checks["PG_DEGRADED"].summary
    assert "pg 1.3: victim" in checks["PG_DAMAGED"].summary
    assert "loligo pg repair 1.3" in checks["PG_DAMAGED"].detail
    assert health.overall(list(checks.values())) == health.HEALTH_ERR
    clean = mon_pb2.PgSummary()
    clean.by_state.add(state="active+clean", count=32)
    assert health.pg_checks(clean) == []
