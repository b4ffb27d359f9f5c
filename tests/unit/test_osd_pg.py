"""The pure PG logic (osd/pg.py): versions, object ids, routing decisions, the dedup table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from osd.pg import (
    DedupTable,
    PgState,
    Route,
    pack_version,
    route,
    split_oid,
    store_oid,
    unpack_version,
)
from rados_py.crush import text
from rados_py.crush.compiled import CompiledMap
from rados_py.errors import InvalidArgument
from rados_py.osdmap import OSDMap, OsdState, Pool

SAMPLE = Path(__file__).resolve().parents[2] / "cluster" / "samples" / "crushmap.txt"


@pytest.fixture(scope="module")
def osdmap() -> OSDMap:
    cm = CompiledMap(text.parse(SAMPLE.read_text()))
    return OSDMap.all_up(cm, [Pool(1, "data", size=3, min_size=2, pg_num=16)], epoch=7)


def where(osdmap: OSDMap, name: bytes) -> tuple[int, list[int]]:
    _, pgid, placement = osdmap.map_object(1, name)
    return pgid.seed, placement.acting


def test_versions_order_like_pairs() -> None:
    pairs = [(1, 5), (2, 1), (2, 7), (3, 0), (10, 2**32 - 1)]
    packed = [pack_version(e, s) for e, s in pairs]
    assert packed == sorted(packed)
    assert [unpack_version(v) for v in packed] == pairs
    with pytest.raises(InvalidArgument):
        pack_version(1, 2**32)


def test_store_oid_keeps_namespace_and_name_apart() -> None:
    for ns, name in [(b"", b"a/../b"), (b"ns", b"x"), (b"n", b"sx"), (b"", b"\xff\x00" * 1024)]:
        assert split_oid(store_oid(ns, name)) == (ns, name)
    assert store_oid(b"n", b"sx") != store_oid(b"ns", b"x")
    with pytest.raises(InvalidArgument):
        store_oid(b"", b"")
    with pytest.raises(InvalidArgument):
        store_oid(b"", b"x" * 5000)


def test_primary_serves_and_others_say_not_primary(osdmap: OSDMap) -> None:
    seed, acting = where(osdmap, b"obj")
    ok = route(osdmap, acting[0], 7, 1, seed, b"obj", b"", write=True)
    assert ok.route is Route.SERVE and ok.replicas == acting[1:]
    other = route(osdmap, acting[1], 7, 1, seed, b"obj", b"", write=False)
    assert other.route is Route.NOT_PRIMARY


def test_epochs_older_is_stale_newer_waits(osdmap: OSDMap) -> None:
    seed, acting = where(osdmap, b"obj")
    assert route(osdmap, acting[0], 6, 1, seed, b"obj", b"", True).route is Route.STALE_EPOCH
    assert route(osdmap, acting[0], 8, 1, seed, b"obj", b"", True).route is Route.WAIT


def test_wrong_pg_and_missing_pool_are_refused(osdmap: OSDMap) -> None:
    seed, acting = where(osdmap, b"obj")
    bad = route(osdmap, acting[0], 7, 1, (seed + 1) % 16, b"obj", b"", True)
    assert bad.route is Route.BAD_PG
    assert route(osdmap, acting[0], 7, 9, seed, b"obj", b"", True).route is Route.NO_POOL


def test_writes_below_min_size_are_refused_reads_served(osdmap: OSDMap) -> None:
    seed, acting = where(osdmap, b"obj")
    down = {o: dataclasses.replace(osdmap.osds[o], up=False) for o in acting[1:]}
    degraded = osdmap.replace(osds={**osdmap.osds, **down})
    _, _, placement = degraded.map_object(1, b"obj")
    if len(placement.acting) < 2:  # CRUSH found no other OSD in time: truly undersized
        me = placement.acting_primary
        assert route(degraded, me, 8, 1, seed, b"obj", b"", True).route is Route.UNDERSIZED
        assert route(degraded, me, 8, 1, seed, b"obj", b"", False).route is Route.SERVE
    small = osdmap.replace(pools={1: Pool(1, "data", size=3, min_size=3, pg_num=16)},
                           osds={**osdmap.osds, acting[2]: OsdState(acting[2], up=False)})
    _, _, p = small.map_object(1, b"obj")
    decision = route(small, p.acting_primary, 8, 1, seed, b"obj", b"", True)
    assert decision.route is (Route.UNDERSIZED if len(p.acting) < 3 else Route.SERVE)


def test_dedup_table_answers_resends_and_forgets_oldest() -> None:
    table = DedupTable(capacity=3)
    for tid in range(1, 5):
        table.put("c", tid, f"r{tid}".encode())
    assert table.get("c", 1) is None and table.get("c", 4) == b"r4" and len(table) == 3
    table.put("", 9, b"x")  # requests without a client id are not remembered
    assert table.get("", 9) is None


def test_pg_state_versions_strictly_increase_across_epochs() -> None:
    pg = PgState("1.0")
    seq, v1 = pg.next_version(5)
    pg.applied(seq)
    seq2, v2 = pg.next_version(6)
    assert seq2 == seq + 1 and v2 > v1 and unpack_version(v2) == (6, 2)
