"""The monitor commands of `loligo`: text and JSON rendering from fixed statuses and maps (built
with the real state machine), usage errors (exit 2, one line, before any connection), and the
commands end to end against fake monitors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster import cli, mon_cli, osdmap_cli
from mon import cluster_maps
from rados_py.monclient import ClusterStatus, Maps
from rados_py.proto.loligo import mon_pb2
from tests.unit.test_monclient import ThreadedFakeCluster

FSID = "6f1c1f43-3d59-4a43-9cf3-4a1b2a6c3a01"
MONS = [("a", "127.0.0.1:6789"), ("b", "127.0.0.1:6790"), ("c", "127.0.0.1:6791")]
ADDRS = dict(MONS)


def build_maps() -> Maps:
    """3 OSDs on 2 hosts (osd.2 down), one pool of 16 PGs, one extra rule."""
    state = cluster_maps.ClusterMaps.initial(FSID, MONS)
    commands = [
        mon_pb2.MonCommand(osd_boot=mon_pb2.OsdBoot(uuid="u0", addr="127.0.0.1:6800",
                                                    host="h1", capacity_bytes=1 << 40)),
        mon_pb2.MonCommand(osd_boot=mon_pb2.OsdBoot(uuid="u1", addr="127.0.0.1:6801",
                                                    host="h1", capacity_bytes=1 << 39)),
        mon_pb2.MonCommand(osd_boot=mon_pb2.OsdBoot(uuid="u2", addr="127.0.0.1:6802",
                                                    host="h2", capacity_bytes=1 << 40)),
        mon_pb2.MonCommand(osd_mark=mon_pb2.OsdMark(ids=[2], state=mon_pb2.OsdMark.DOWN)),
        mon_pb2.MonCommand(osd_reweight=mon_pb2.OsdReweight(id=1, weight=0x8000)),
        mon_pb2.MonCommand(pool_create=mon_pb2.PoolCreate(name="rbd", pg_num=16, size=2)),
        mon_pb2.MonCommand(crush_rule_create_replicated=mon_pb2.CrushRuleCreateReplicated(
            name="by-osd", root="default", failure_domain="osd")),
        mon_pb2.MonCommand(osd_set_flag=mon_pb2.OsdSetFlag(flag="noout", set=True)),
    ]
    for cmd in commands:
        state, result = cluster_maps.apply(state, cmd)
        assert result.code == 0, result.message
    return Maps(state.monmap, state.osdmap)


MAPS = build_maps()


def mon_status(name: str, *, leader: str = "a", quorum: tuple[str, ...] = ("a", "b"),
               checks: bool = True) -> mon_pb2.MonStatus:
    status = mon_pb2.MonStatus(name=name, fsid=FSID, leader=leader, term=4,
                               state="leader" if leader == name else "follower",
                               quorum=list(quorum) if leader == name else [],
                               health="HEALTH_WARN" if checks else "HEALTH_OK")
    if checks:
        status.checks.add(code="MON_DOWN", severity="HEALTH_WARN",
                          summary="1/3 mons down: mon.c (127.0.0.1:6791) since 40 s; quorum "
                                  "a,b still holds",
                          detail="start the monitor again (loligo cluster start mon.c)")
        status.checks.add(code="OSDMAP_FLAGS", severity="HEALTH_WARN",
                          summary="noout flag(s) set", detail="loligo osd unset noout")
        status.checks.add(code="OSDMAP_FLAGS", severity="HEALTH_WARN",
                          summary="pause flag(s) set", detail="loligo osd unset pause")
    return status


HEALTHY = ClusterStatus(mon_status("a"), True, {"a": mon_status("a"), "b": mon_status("b")},
                        {"c": "unreachable"})
NO_LEADER = ClusterStatus(mon_status("b", leader="", checks=False), False,
                          {"b": mon_status("b", leader="", checks=False)},
                          {"a": "unreachable", "c": "unreachable"})


# --- status and health --------------------------------------------------------------------------

def test_status_json_has_cephs_keys() -> None:
    data = mon_cli.status_json(HEALTHY, MAPS, ADDRS)
    assert data["fsid"] == FSID
    assert data["health"]["status"] == "HEALTH_WARN"
    mon_down = data["health"]["checks"]["MON_DOWN"]
    assert mon_down["summary"]["message"].startswith("1/3 mons down: mon.c")
    assert mon_down["detail"] == [{"message": "start the monitor again (loligo cluster start "
                                              "mon.c)"}]
    flags = data["health"]["checks"]["OSDMAP_FLAGS"]
    assert flags["summary"]["message"] == "noout flag(s) set; pause flag(s) set"
    assert data["monmap"]["num_mons"] == 3 and data["monmap"]["epoch"] == 1
    assert data["quorum_names"] == ["a", "b"] and data["quorum"] == [0, 1]
    assert data["leader"] == "a" and data["election_epoch"] == 4
    assert data["osdmap"] == {"epoch": MAPS.osdmap.epoch, "num_osds": 3, "num_up_osds": 2,
                              "num_in_osds": 3, "num_remapped_pgs": 0, "flags": ["noout"]}
    assert data["pgmap"]["pgs_by_state"] == [] and data["pgmap"]["num_pgs"] == 16
    assert data["pgmap"]["num_pools"] == 1 and data["pgmap"]["bytes_total"] == 0
    assert data["mons_unreachable"] == {"c": "unreachable"}
    json.dumps(data)  # all plain data


def test_status_text_says_what_is_wrong_and_what_to_do() -> None:
    text = mon_cli.format_status(mon_cli.status_json(HEALTHY, MAPS, ADDRS))
    assert text.splitlines() == [
        "  cluster:",
        f"    id:     {FSID}",
        "    health: HEALTH_WARN",
        "            1/3 mons down: mon.c (127.0.0.1:6791) since 40 s; quorum a,b still holds",
        "              -> start the monitor again (loligo cluster start mon.c)",
        "            noout flag(s) set; pause flag(s) set",
        "              -> loligo osd unset noout",
        "              -> loligo osd unset pause",
        "",
        "  services:",
        "    mon: 3 daemons, quorum a,b, leader a (term 4)",
        "         unreachable: c",
        "    osd: 3 osds: 2 up, 3 in; flags noout",
        "",
        "  data:",
        "    pools:   1 pools, 16 pgs",
        "    pgs:     16 unknown (no OSD has reported PG states yet)",
    ]


def test_status_shows_pg_states_usage_and_recovery_progress() -> None:
    status = mon_status("a", checks=False)
    pgs = status.pgs
    pgs.by_state.add(state="active+clean", count=12)
    pgs.by_state.add(state="active+recovering+degraded", count=4)
    pgs.num_objects, pgs.data_bytes = 300, 3 << 20
    pgs.used_bytes, pgs.avail_bytes, pgs.total_bytes = 10 << 20, 90 << 30, 100 << 30
    pgs.missing_objects, pgs.recovery_objects_per_sec = 40, 8.0
    pgs.missing_bytes = 20 << 20  # at 2 MiB/s: 10 s, longer than 40 objects at 8/s
    pgs.recovery_bytes_per_sec = 2 << 20
    st = ClusterStatus(status, True, {"a": status})
    data = mon_cli.status_json(st, MAPS, ADDRS)
    assert data["pgmap"]["pgs_by_state"] == [
        {"state_name": "active+clean", "count": 12},
        {"state_name": "active+recovering+degraded", "count": 4}]
    pgs.degraded_objects, pgs.total_copies = 60, 900  # 20 more: written while a copy was down
    st = ClusterStatus(status, True, {"a": status})
    data = mon_cli.status_json(st, MAPS, ADDRS)
    assert data["pgmap"]["degraded_objects"] == 60 and data["pgmap"]["degraded_total"] == 900
    assert data["pgmap"]["missing_objects"] == 40
    assert data["pgmap"]["recovering_bytes_per_sec"] == 2 << 20
    text = mon_cli.format_status(data)
    assert text.splitlines()[-9:] == [
        "    pools:   1 pools, 16 pgs",
        "    objects: 300 objects, 3.0 MiB",
        "    usage:   10.0 MiB used, 90.0 GiB / 100.0 GiB avail",
        "    pgs:     60/900 objects degraded (6.667%)",
        "             12 active+clean",
        "             4 active+recovering+degraded",
        "",
        "  progress:",
        "    recovery: 40 object copies (~20.0 MiB) left, 2.0 MiB/s, 8 objects/s, ETA 10s",
    ]


def test_status_without_quorum() -> None:
    data = mon_cli.status_json(NO_LEADER, None, ADDRS)
    assert data["health"]["status"] == "HEALTH_ERR"
    assert list(data["health"]["checks"]) == ["MON_QUORUM"]
    assert data["quorum_names"] == [] and data["leader"] == ""
    assert data["osdmap"] is None and data["pgmap"] is None
    assert [m["addr"] for m in data["monmap"]["mons"]] == [a for _, a in MONS]
    text = mon_cli.format_status(data)
    assert "no monitor quorum: no leader among b (unreachable: a, c)" in text
    assert "    mon: 3 daemons, quorum none\n" in text
    assert "osd: unknown (no quorum to read the maps from)" in text


def test_health_summary_and_detail() -> None:
    data = mon_cli.health_json(HEALTHY)
    assert mon_cli.format_health(data) == (
        "HEALTH_WARN 1/3 mons down: mon.c (127.0.0.1:6791) since 40 s; quorum a,b still "
        "holds; noout flag(s) set; pause flag(s) set")
    detail = mon_cli.format_health(data, detail=True).splitlines()
    assert detail[1].startswith("[WRN] MON_DOWN: 1/3 mons down")
    assert detail[2] == "    start the monitor again (loligo cluster start mon.c)"
    ok = ClusterStatus(mon_status("a", checks=False), True, {"a": mon_status("a", checks=False)})
    assert mon_cli.format_health(mon_cli.health_json(ok), detail=True) == "HEALTH_OK"


def test_mon_stat() -> None:
    data = mon_cli.mon_stat_json(HEALTHY, MAPS, ADDRS)
    assert data["leader"] == "a" and data["term"] == 4 and data["epoch"] == 1
    assert data["quorum"] == [{"rank": 0, "name": "a"}, {"rank": 1, "name": "b"}]
    assert mon_cli.format_mon_stat(data) == (
        "e1: 3 mons at {a=127.0.0.1:6789,b=127.0.0.1:6790,c=127.0.0.1:6791}, term 4, "
        "leader 0 a, quorum 0,1 a,b")
    none = mon_cli.format_mon_stat(mon_cli.mon_stat_json(NO_LEADER, None, ADDRS))
    assert none.endswith("term 4, leader none, quorum  none")


# --- osd tree, osd dump, pools, crush -----------------------------------------------------------

def test_osd_tree_text_and_json() -> None:
    data = osdmap_cli.tree_json(MAPS.osdmap)
    assert [n["name"] for n in data["nodes"]] == ["default", "h1", "osd.0", "osd.1", "h2",
                                                  "osd.2"]
    osd1 = data["nodes"][3]
    assert osd1["status"] == "up" and osd1["reweight"] == 0.5 and osd1["crush_weight"] == 0.5
    assert data["stray"] == []
    assert osdmap_cli.format_tree(data).splitlines() == [
        "ID  CLASS   WEIGHT  TYPE NAME      STATUS  REWEIGHT  PRI-AFF",
        "-1         2.50000  root default",
        "-2         1.50000      host h1",
        " 0         1.00000          osd.0      up   1.00000  1.00000",
        " 1         0.50000          osd.1      up   0.50000  1.00000",
        "-3         1.00000      host h2",
        " 2         1.00000          osd.2    down   1.00000  1.00000",
    ]


def test_osd_dump_text_and_json() -> None:
    data = osdmap_cli.dump_json(MAPS.osdmap)
    assert data["flags"] == "noout" and data["max_osd"] == 3
    assert data["pools"][0] | {"pool": 1} == {
        "pool": 1, "pool_name": "rbd", "type": 1, "type_name": "replicated", "size": 2,
        "min_size": 1, "crush_rule": 0, "crush_rule_name": "replicated_rule", "pg_num": 16,
        "pg_placement_num": 16, "pgp_num": 16, "flags_names": "hashpspool"}
    assert data["osds"][2] == {"osd": 2, "up": 0, "in": 1, "weight": 1.0, "up_from": 4,
                               "down_at": 5, "public_addr": "127.0.0.1:6802"}
    lines = osdmap_cli.format_dump(data).splitlines()
    assert lines[:3] == [f"epoch {MAPS.osdmap.epoch}", f"fsid {FSID}", "flags noout"]
    assert ("pool 1 'rbd' replicated size 2 min_size 1 crush_rule 0 pg_num 16 pgp_num 16 "
            "flags hashpspool") in lines
    assert lines[-1] == "osd.2 down in  weight 1 up_from 4 down_at 5 127.0.0.1:6802"
    assert lines[-2] == "osd.1 up   in  weight 0.5 up_from 3 down_at 0 127.0.0.1:6801"


def test_pool_get_and_crush_json() -> None:
    assert osdmap_cli.pool_get_json(MAPS.osdmap, "rbd", "crush_rule") == {
        "pool": "rbd", "pool_id": 1, "crush_rule": "replicated_rule"}
    assert osdmap_cli.pool_get_json(MAPS.osdmap, "rbd", None)["pg_num"] == 16
    crush = osdmap_cli.crush_json(MAPS.osdmap.crush.crush_map)
    rule = next(r for r in crush["rules"] if r["rule_name"] == "by-osd")
    assert rule["steps"] == [{"op": "take", "item": -1, "item_name": "default"},
                             {"op": "choose_firstn", "num": 0, "type": "osd"}, {"op": "emit"}]
    assert crush["tunables"]["chooseleaf_stable"] == 1
    assert crush["buckets"][0]["name"] == "default"


# --- the command line ---------------------------------------------------------------------------

@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point the CLI at a config that does not exist: a command that connects fails with 1."""
    missing = tmp_path / "none.toml"
    monkeypatch.setenv("LOLIGO_CONF", str(missing))
    return missing


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", [
    ["pool", "rm", "rbd"],
    ["pool", "rm", "rbd", "data", "--yes-i-really-really-mean-it"],
    ["pool", "get", "rbd", "colour"],
    ["pool", "create"],
    ["osd", "down", "osd.x"],
    ["osd", "reweight", "1", "2"],
    ["osd", "boot", "--host", "h"],
    ["osd", "create", "--uuid", "not-a-uuid"],
    ["osd"],
    ["mon"],
    ["status", "--format", "yaml"],
    ["health", "everything"],
    ["crush", "rule", "create-replicated", "fast"],
    ["crush", "set"],
    ["cluster", "up", "--mons", "2"],
])
def test_usage_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], no_cluster: Path,
                                           argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2, err
    assert out == "" and err.count("\n") == 1 and err.startswith("loligo")


def test_pool_rm_refusal_explains(capsys: pytest.CaptureFixture[str], no_cluster: Path) -> None:
    _, _, err = run(capsys, "pool", "rm", "rbd")
    assert "destroys pool 'rbd' and all its data forever" in err
    assert "--yes-i-really-really-mean-it" in err


def test_missing_config_is_one_line_exit_1(capsys: pytest.CaptureFixture[str],
                                           no_cluster: Path) -> None:
    code, _, err = run(capsys, "status")
    assert code == 1 and err.count("\n") == 1
    assert f"{no_cluster}: no such config file" in err


@pytest.fixture
def fake_conf(tmp_path: Path) -> Iterator[tuple[ThreadedFakeCluster, Path]]:
    threaded = ThreadedFakeCluster(["a", "b", "c"])
    try:
        yield threaded, threaded.cluster.write_files(tmp_path)
    finally:
        threaded.close()


def test_commands_against_fake_monitors(capsys: pytest.CaptureFixture[str],
                                        fake_conf: tuple[ThreadedFakeCluster, Path]) -> None:
    threaded, conf = fake_conf
    c = ("--conf", str(conf))

    def ok(*argv: str) -> str:
        code, out, err = run(capsys, *argv, *c)
        assert code == 0, err
        return out

    def fails(*argv: str) -> str:
        code, _, err = run(capsys, *argv, *c)
        assert code == 1 and err.count("\n") == 1, (code, err)
        return err

    assert ok("pool", "create", "rbd", "--pg-num", "8", "--size", "2") == "pool 'rbd' created\n"
    assert "pool 'rbd' already exists" in fails("pool", "create", "rbd")
    assert json.loads(ok("pool", "ls", "--format", "json")) == ["rbd"]
    assert ok("pool", "get", "rbd", "size") == "size: 2\n"
    assert ok("osd", "boot", "--id", "0", "--addr", "127.0.0.1:6800", "--host", "h1") \
        == "osd.0 up at 127.0.0.1:6800\n"
    assert ok("osd", "create") == "1\n"
    tree = json.loads(ok("osd", "tree", "-f", "json"))
    assert [(n["name"], n.get("status")) for n in tree["nodes"]] == [
        ("default", None), ("h1", None), ("osd.0", "up")]
    # created but never booted: not in CRUSH yet, listed as a stray like `ceph osd tree`
    assert [(n["name"], n["status"], n["reweight"]) for n in tree["stray"]] == [
        ("osd.1", "down", 0.0)]
    assert ok("osd", "out", "osd.1") == "osd.1 already out\n"
    assert ok("osd", "in", "osd.1") == "marked in osd.1\n"
    assert "osd.7 does not exist" in fails("osd", "in", "7")
    status = json.loads(ok("status", "--format", "json"))
    assert status["quorum_names"] == ["a", "b", "c"] and status["osdmap"]["num_osds"] == 2
    assert json.loads(ok("mon", "stat", "-f", "json"))["leader"] == "a"
    assert ok("crush", "rule", "ls") == "replicated_rule\n"
    assert ok("pool", "rm", "rbd", "--yes-i-really-really-mean-it") == "pool 'rbd' removed\n"
    threaded.cluster.leader = None  # no quorum: a clear error within the timeout
    err = fails("pool", "create", "late", "--timeout", "0.5")
    assert "no monitor quorum within 0.5s" in err and "knows no leader" in err


def test_crush_set_from_dump(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                             fake_conf: tuple[ThreadedFakeCluster, Path]) -> None:
    threaded, conf = fake_conf
    code, text, err = run(capsys, "crush", "dump", "--conf", str(conf))
    assert code == 0, err
    assert text.startswith("# begin crush map") and "rule replicated_rule {" in text
    edited = tmp_path / "map.txt"
    edited.write_text(text.replace("step chooseleaf firstn 0 type host",
                                   "step chooseleaf firstn 0 type rack"))
    code, out, err = run(capsys, "crush", "set", "-i", str(edited), "--conf", str(conf))
    assert (code, out) == (0, "crush map set\n"), err
    rules: Any = threaded.cluster.state.osdmap.crush.crush_map.rules
    assert rules[0].steps[1].arg2 == 3  # rack
    edited.write_text("rule broken {\n")
    code, _, err = run(capsys, "crush", "set", "-i", str(edited), "--conf", str(conf))
    assert code == 1 and err.count("\n") == 1


def test_status_shows_the_mds_map() -> None:
    from rados_py.mdsmap import MdsInfo, MDSMap

    mdsmap = MDSMap(3, (MdsInfo("a", "h:1", 0, "active"), MdsInfo("b", "h:2")))
    data = mon_cli.status_json(HEALTHY, Maps(MAPS.monmap, MAPS.osdmap, mdsmap), ADDRS)
    assert data["fsmap"] == {"epoch": 3, "up": [{"name": "a", "rank": 0, "status": "up:active"}],
                             "up:standby": 1}
    assert "    mds: a=up:active, 1 up:standby" in mon_cli.format_status(data).splitlines()
    assert "mds:" not in mon_cli.format_status(mon_cli.status_json(HEALTHY, MAPS, ADDRS))
