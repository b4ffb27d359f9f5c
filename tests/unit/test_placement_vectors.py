"""Ceph's own placement vectors (tests/data/crush-vectors): every line must match.

Two paths are checked: the maps as crushtool dumped them (exact integers, straight into the C
mapper) and the text maps through Loligo's parser, so a parser slip cannot hide behind the C code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rados_py.crush import text
from rados_py.crush.compiled import CompiledMap
from rados_py.crush.model import (
    ALG_BY_NAME,
    OP_CHOOSE_FIRSTN,
    OP_CHOOSE_INDEP,
    OP_CHOOSELEAF_FIRSTN,
    OP_CHOOSELEAF_INDEP,
    OP_EMIT,
    OP_TAKE,
    TUNABLE_NAMES,
    Bucket,
    BucketItem,
    CrushMap,
    Device,
    Rule,
    Step,
    Tunables,
)
from rados_py.osdmap import OSDMap, Pool
from tests.vectors import vectors_dir

VECTORS = vectors_dir()
OPS = {"take": OP_TAKE, "emit": OP_EMIT, "choose_firstn": OP_CHOOSE_FIRSTN,
       "choose_indep": OP_CHOOSE_INDEP, "chooseleaf_firstn": OP_CHOOSELEAF_FIRSTN,
       "chooseleaf_indep": OP_CHOOSELEAF_INDEP}


def map_from_dump(name: str) -> CrushMap:
    """Build the map from crushtool's JSON dump (no text parsing involved)."""
    d = json.loads((VECTORS / f"{name}.dump.json").read_text())
    m = CrushMap(tunables=Tunables(**{k: d["tunables"][k] for k in TUNABLE_NAMES}))
    m.devices = {dev["id"]: Device(dev["id"], dev["name"]) for dev in d["devices"]}
    m.types = {t["type_id"]: t["name"] for t in d["types"]}
    for b in d["buckets"]:
        m.buckets[b["id"]] = Bucket(b["id"], b["name"], b["type_id"], ALG_BY_NAME[b["alg"]], 0,
                                    tuple(BucketItem(i["id"], i["weight"]) for i in b["items"]))
    for r in d["rules"]:
        steps = []
        for s in r["steps"]:
            op = OPS[s["op"]]
            if op == OP_TAKE:
                steps.append(Step(op, s["item"]))
            elif op == OP_EMIT:
                steps.append(Step(op))
            else:
                steps.append(Step(op, s["num"], m.type_id(s["type"])))
        m.rules[r["rule_id"]] = Rule(r["rule_id"], r["rule_name"], r["type"], r["min_size"],
                                     r["max_size"], tuple(steps))
    return m


def expected_lines(name: str) -> list[str]:
    return (VECTORS / f"{name}.rule0.rep3.x0-1999.txt").read_text().splitlines()


def mapping_lines(cm: CompiledMap) -> list[str]:
    rows = cm.map_range(0, 0, 2000, 3)
    return [f"CRUSH rule 0 x {x} [{','.join(map(str, row))}]" for x, row in enumerate(rows)]


@pytest.mark.parametrize("name", ["a_flat", "b_hosts"])
@pytest.mark.parametrize("source", ["dump", "text"])
def test_crushtool_mappings(name: str, source: str) -> None:
    m = map_from_dump(name) if source == "dump" else text.parse(
        (VECTORS / f"{name}.txt").read_text())
    assert mapping_lines(CompiledMap(m)) == expected_lines(name)


def test_text_and_dump_agree_on_weights() -> None:
    for name in ["a_flat", "b_hosts"]:
        parsed = text.parse((VECTORS / f"{name}.txt").read_text())
        dumped = map_from_dump(name)
        assert {b.id: b.items for b in parsed.buckets.values()} == \
            {b.id: b.items for b in dumped.buckets.values()}
        assert parsed.tunables == dumped.tunables


def object_vectors() -> list[dict]:
    return [json.loads(line) for line in (VECTORS / "objects.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def osdmap() -> OSDMap:
    pools = json.loads((VECTORS / "pools.json").read_text())["pools"]
    cm = CompiledMap(text.parse((VECTORS / "b_hosts.txt").read_text()))
    return OSDMap.all_up(cm, [Pool(p["pool"], p["name"], size=p["size"], min_size=p["min_size"],
                                   pg_num=p["pg_num"], pgp_num=p["pgp_num"],
                                   crush_rule=p["crush_rule"], flags=frozenset(p["flags"]))
                              for p in pools])


def test_object_vectors(osdmap: OSDMap) -> None:
    vectors = object_vectors()
    assert len(vectors) == 500
    for v in vectors:
        ps, pgid, placement = osdmap.map_object(v["pool"], bytes.fromhex(v["name_hex"]),
                                                v["nspace"].encode())
        got = {"pgid": str(pgid), "up": placement.up, "up_primary": placement.up_primary,
               "acting": placement.acting, "acting_primary": placement.acting_primary}
        want = {k: v[k] for k in got}
        if v["raw_pgid"] is not None:
            got["raw_pgid"], want["raw_pgid"] = f"{v['pool']}.{ps:x}", v["raw_pgid"]
        assert got == want, f"object {v['name_hex']!r} nspace {v['nspace']!r}"


def test_batch_pool_mapping_equals_per_pg(osdmap: OSDMap) -> None:
    from rados_py.osdmap import PgId

    for pool_id in osdmap.pools:
        batch = osdmap.map_pool(pool_id)
        single = [osdmap.pg_to_up_acting(PgId(pool_id, s))
                  for s in range(osdmap.pools[pool_id].pg_num)]
        assert batch == single


def test_vectors_dir_is_in_the_repository() -> None:
    assert (VECTORS / "README.md").exists(), f"crush vectors not found at {VECTORS}"
    assert isinstance(VECTORS, Path)
