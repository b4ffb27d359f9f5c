"""The monitors' state machine: commands change the maps as a Ceph operator expects, refused
commands change nothing, resent commands apply once, and replicas stay identical."""

from __future__ import annotations

import random

import pytest

from mon.cluster_maps import EBUSY, EEXIST, EINVAL, ENOENT, OK, ClusterMaps, apply
from rados_py.crush.compiled import ITEM_NONE
from rados_py.proto.loligo import mon_pb2

FSID = "5f7c1c2e-0000-4000-8000-000000000001"
MONS = [("a", "127.0.0.1:6789"), ("b", "127.0.0.1:6790"), ("c", "127.0.0.1:6791")]


def cmd(request_id: bytes = b"", **kw) -> mon_pb2.MonCommand:
    return mon_pb2.MonCommand(request_id=request_id, **kw)


def boot(i: int, host: str = "localhost", uuid: str | None = None, **kw) -> mon_pb2.MonCommand:
    return cmd(osd_boot=mon_pb2.OsdBoot(uuid=uuid or f"disk-{i}", addr=f"127.0.0.1:{7000 + i}",
                                        host=host, capacity_bytes=1 << 40, **kw))


def run(state: ClusterMaps, *commands: mon_pb2.MonCommand) -> tuple[ClusterMaps, list]:
    results = []
    for c in commands:
        state, result = apply(state, c)
        results.append(result)
    return state, results


@pytest.fixture
def cluster() -> ClusterMaps:
    state = ClusterMaps.initial(FSID, MONS, failure_domain="osd")
    state, results = run(state, *(boot(i) for i in range(3)))
    assert [r.code for r in results] == [OK] * 3
    return state


def test_booted_osds_are_up_in_and_placed_under_their_host(cluster: ClusterMaps) -> None:
    osdmap = cluster.osdmap
    assert sorted(osdmap.osds) == [0, 1, 2]
    assert all(o.up and o.is_in for o in osdmap.osds.values())
    crush = osdmap.crush.crush_map
    host = crush.buckets[crush.item_by_name("localhost")]
    assert [i.id for i in host.items] == [0, 1, 2]
    assert all(i.weight == 0x10000 for i in host.items)  # 1 TiB = weight 1.0, like Ceph
    root = crush.buckets[crush.item_by_name("default")]
    assert root.items[0].weight == 3 * 0x10000


def test_pool_create_places_every_pg_on_three_distinct_osds(cluster: ClusterMaps) -> None:
    state, (result,) = run(cluster, cmd(pool_create=mon_pb2.PoolCreate(name="rbd", pg_num=16)))
    assert result.code == OK and result.value == 1
    assert result.osdmap_epoch == cluster.osdmap.epoch + 1
    pool = state.osdmap.pools[1]
    assert (pool.name, pool.size, pool.min_size, pool.pg_num) == ("rbd", 3, 2, 16)
    for placement in state.osdmap.map_pool(1):
        assert sorted(placement.up) == [0, 1, 2]


def test_a_resent_command_is_applied_once(cluster: ClusterMaps) -> None:
    create = cmd(b"client.4:17", pool_create=mon_pb2.PoolCreate(name="data"))
    state, (first, again) = run(cluster, create, create)
    assert first == again
    assert [p.name for p in state.osdmap.pools.values()] == ["data"]
    assert state.osdmap.epoch == cluster.osdmap.epoch + 1


@pytest.mark.parametrize("command, code", [
    (cmd(pool_create=mon_pb2.PoolCreate(name="x", rule="nope")), ENOENT),
    (cmd(pool_create=mon_pb2.PoolCreate(name="x", size=2, min_size=3)), EINVAL),
    (cmd(pool_create=mon_pb2.PoolCreate(name="")), EINVAL),
    (cmd(pool_set=mon_pb2.PoolSet(name="nope", key="size", value="2")), ENOENT),
    (cmd(osd_mark=mon_pb2.OsdMark(ids=[9], state=mon_pb2.OsdMark.DOWN)), ENOENT),
    (cmd(osd_remove=mon_pb2.OsdRemove(ids=[0])), EBUSY),
    (cmd(osd_set_flag=mon_pb2.OsdSetFlag(flag="nonsense", set=True)), EINVAL),
    (cmd(osd_reweight=mon_pb2.OsdReweight(id=0, weight=0x20000)), EINVAL),
    (cmd(crush_rule_create_replicated=mon_pb2.CrushRuleCreateReplicated(
        name="r", root="default", failure_domain="galaxy")), ENOENT),
    (cmd(), EINVAL),
])
def test_refused_commands_change_nothing(cluster: ClusterMaps, command, code: int) -> None:
    state, (result,) = run(cluster, command)
    assert result.code == code, result.message
    assert result.message
    assert state.osdmap is cluster.osdmap


def test_existing_pool_name_is_refused(cluster: ClusterMaps) -> None:
    create = cmd(pool_create=mon_pb2.PoolCreate(name="rbd"))
    state, (_, dup) = run(cluster, create, create)
    assert dup.code == EEXIST and len(state.osdmap.pools) == 1


def test_down_out_in_and_remove(cluster: ClusterMaps) -> None:
    state, results = run(
        cluster,
        cmd(pool_create=mon_pb2.PoolCreate(name="rbd", size=2, pg_num=8)),
        cmd(osd_mark=mon_pb2.OsdMark(ids=[1], state=mon_pb2.OsdMark.DOWN)))
    assert all(r.code == OK for r in results)
    assert not state.osdmap.osds[1].up and state.osdmap.osds[1].down_at == state.osdmap.epoch
    for placement in state.osdmap.map_pool(1):
        assert 1 not in placement.up
    state, (out,) = run(state, cmd(osd_mark=mon_pb2.OsdMark(ids=[1], state=mon_pb2.OsdMark.OUT)))
    assert out.code == OK and state.osdmap.osds[1].weight == 0
    state, (rm,) = run(state, cmd(osd_remove=mon_pb2.OsdRemove(ids=[1])))
    assert rm.code == OK and 1 not in state.osdmap.osds
    assert 1 not in state.osdmap.crush.crush_map.devices
    for placement in state.osdmap.map_pool(1):
        assert sorted(placement.up) == [0, 2]


def test_a_rebooting_disk_keeps_its_id_and_a_new_one_gets_the_lowest_free(
        cluster: ClusterMaps) -> None:
    state, (down,) = run(cluster, cmd(osd_mark=mon_pb2.OsdMark(ids=[1],
                                                               state=mon_pb2.OsdMark.DOWN)))
    assert down.code == OK
    state, (again, fresh) = run(state, boot(1), boot(7, uuid="new-disk"))
    assert again.value == 1 and fresh.value == 3
    assert state.osdmap.osds[1].up and state.osdmap.osds[1].up_from == again.osdmap_epoch
    state, (clash,) = run(state, boot(5, uuid="disk-0", id=2))
    assert clash.code == EEXIST


def test_pool_set_keeps_pgp_num_with_pg_num_and_checks_values(cluster: ClusterMaps) -> None:
    state, results = run(cluster, cmd(pool_create=mon_pb2.PoolCreate(name="p", pg_num=8)),
                         cmd(pool_set=mon_pb2.PoolSet(name="p", key="pg_num", value="32")),
                         cmd(pool_set=mon_pb2.PoolSet(name="p", key="size", value="abc")),
                         cmd(pool_set=mon_pb2.PoolSet(name="p", key="min_size", value="9")))
    assert [r.code for r in results] == [OK, OK, EINVAL, EINVAL]
    assert (state.osdmap.pools[1].pg_num, state.osdmap.pools[1].pgp_num) == (32, 32)


def test_replicated_rule_with_host_failure_domain(cluster: ClusterMaps) -> None:
    state, results = run(
        cluster, boot(3, host="other"),
        cmd(crush_rule_create_replicated=mon_pb2.CrushRuleCreateReplicated(
            name="by_host", root="default", failure_domain="host")),
        cmd(pool_create=mon_pb2.PoolCreate(name="p", size=2, pg_num=8, rule="by_host")))
    assert [r.code for r in results] == [OK, OK, OK]
    for placement in state.osdmap.map_pool(1):
        assert len(placement.up) == 2 and (3 in placement.up) and ITEM_NONE not in placement.up


def test_flags(cluster: ClusterMaps) -> None:
    state, (r,) = run(cluster, cmd(osd_set_flag=mon_pb2.OsdSetFlag(flag="noout", set=True)))
    assert r.code == OK and "noout" in state.osdmap.flags
    state, (r,) = run(state, cmd(osd_set_flag=mon_pb2.OsdSetFlag(flag="noout", set=False)))
    assert "noout" not in state.osdmap.flags


def ratio(which: str, value: float) -> mon_pb2.MonCommand:
    return cmd(osd_set_full_ratio=mon_pb2.OsdSetFullRatio(which=which, ratio=value))


def test_full_ratios_are_set_in_order_and_travel_in_the_map(cluster: ClusterMaps) -> None:
    from rados_py.maps_wire import osdmap_from_proto, osdmap_to_proto

    m = cluster.osdmap
    assert (m.nearfull_ratio, m.backfillfull_ratio, m.full_ratio) == (0.85, 0.90, 0.95)
    state, results = run(cluster, ratio("full", 0.97), ratio("nearfull", 0.8),
                         ratio("backfillfull", 0.98), ratio("nearfull", 0.99),
                         ratio("full", 0), ratio("full", 1.5), ratio("empty", 0.5),
                         ratio("nearfull", 0.8))
    assert [r.code for r in results] == [OK, OK, EINVAL, EINVAL, EINVAL, EINVAL, EINVAL, OK]
    assert "nearfull <= backfillfull <= full, got nearfull 0.8, backfillfull 0.98, full " \
        "0.97" in results[2].message
    assert "already" in results[-1].message and results[-1].osdmap_epoch == m.epoch + 2
    m = state.osdmap
    assert (m.nearfull_ratio, m.backfillfull_ratio, m.full_ratio) == (0.8, 0.90, 0.97)
    back = osdmap_from_proto(osdmap_to_proto(m))
    assert (back.nearfull_ratio, back.backfillfull_ratio, back.full_ratio) == (0.8, 0.90, 0.97)
    old = osdmap_to_proto(m)
    old.ClearField("full_ratio")  # a map written before the ratios existed: the default
    assert osdmap_from_proto(old).full_ratio == 0.95


def random_commands(seed: int, n: int) -> list[mon_pb2.MonCommand]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.choice(["boot", "mark", "pool", "set", "rm", "flag"])
        if kind == "boot":
            out.append(boot(rng.randint(0, 8), host=rng.choice(["h1", "h2"])))
        elif kind == "mark":
            out.append(cmd(osd_mark=mon_pb2.OsdMark(ids=[rng.randint(0, 8)],
                                                    state=rng.randint(1, 3))))
        elif kind == "pool":
            out.append(cmd(f"r{i}".encode(), pool_create=mon_pb2.PoolCreate(
                name=f"p{rng.randint(0, 4)}", pg_num=rng.choice([8, 16]))))
        elif kind == "set":
            out.append(cmd(pool_set=mon_pb2.PoolSet(name=f"p{rng.randint(0, 4)}",
                                                    key=rng.choice(["size", "pg_num"]),
                                                    value=str(rng.randint(1, 40)))))
        elif kind == "rm":
            out.append(cmd(osd_remove=mon_pb2.OsdRemove(ids=[rng.randint(0, 8)])))
        else:
            out.append(cmd(osd_set_flag=mon_pb2.OsdSetFlag(flag="noout", set=rng.random() < .5)))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_replicas_applying_the_same_log_stay_identical(seed: int) -> None:
    commands = random_commands(seed, 60)
    a = ClusterMaps.initial(FSID, MONS, failure_domain="osd")
    b = ClusterMaps.from_proto(a.to_proto())
    for i, c in enumerate(commands):
        a, ra = apply(a, c)
        b, rb = apply(b, c)
        assert ra == rb
        if i % 7 == 0:  # a replica restored from a snapshot continues identically
            b = ClusterMaps.from_proto(b.to_proto())
        assert a.to_proto().SerializeToString(deterministic=True) == \
            b.to_proto().SerializeToString(deterministic=True)


def test_osd_create_allocates_a_down_out_id_that_boot_brings_up_and_in(
        cluster: ClusterMaps) -> None:
    create = cmd(osd_create=mon_pb2.OsdCreate(uuid="fresh-disk"))
    state, (made, again) = run(cluster, create, create)
    assert made.code == OK and made.value == 3 and again.value == 3
    assert not state.osdmap.osds[3].up and not state.osdmap.osds[3].is_in
    state, (booted,) = run(state, boot(3, uuid="fresh-disk"))
    assert booted.value == 3
    assert state.osdmap.osds[3].up and state.osdmap.osds[3].is_in
    assert 3 in state.osdmap.crush.crush_map.devices


def test_mds_beacons_make_one_active_and_a_failure_promotes_a_standby(
        cluster: ClusterMaps) -> None:
    state, (a, b, again) = run(
        cluster, cmd(mds_beacon=mon_pb2.MdsBeacon(name="a", addr="127.0.0.1:6800")),
        cmd(mds_beacon=mon_pb2.MdsBeacon(name="b", addr="127.0.0.1:6801")),
        cmd(mds_beacon=mon_pb2.MdsBeacon(name="a", addr="127.0.0.1:6800")))
    assert (a.message, b.message, again.message) == ("mds.a is active", "mds.b is standby",
                                                     "mds.a is active")
    assert state.mdsmap.epoch == 3 and state.mdsmap.active.name == "a"
    epoch = state.mdsmap.epoch
    state, (failed, stale) = run(state, cmd(mds_fail=mon_pb2.MdsFail(name="a", mdsmap_epoch=epoch)),
                                 cmd(mds_fail=mon_pb2.MdsFail(name="b", mdsmap_epoch=epoch)))
    assert "mds.b takes over rank 0" in failed.message
    assert state.mdsmap.active.name == "b" and state.mdsmap.active.rank == 0
    assert "already handled" in stale.message and state.mdsmap.get("b") is not None
    # the restarted MDS comes back as a standby at its new address
    state, (back,) = run(state, cmd(mds_beacon=mon_pb2.MdsBeacon(name="a", addr="h:7000")))
    assert back.message == "mds.a is standby"
    assert ClusterMaps.from_proto(state.to_proto()).mdsmap == state.mdsmap


def test_an_osd_the_monitors_marked_out_comes_back_in_on_boot(cluster: ClusterMaps) -> None:
    down = cmd(osd_mark=mon_pb2.OsdMark(ids=[1, 2], state=mon_pb2.OsdMark.DOWN))
    auto_out = cmd(osd_mark=mon_pb2.OsdMark(ids=[1], state=mon_pb2.OsdMark.OUT, automatic=True))
    admin_out = cmd(osd_mark=mon_pb2.OsdMark(ids=[2], state=mon_pb2.OsdMark.OUT))
    state, results = run(cluster, down, auto_out, admin_out, boot(1), boot(2))
    assert all(r.code == OK for r in results)
    assert state.osdmap.osds[1].is_in and not state.osdmap.osds[1].auto_out  # auto-out: back in
    assert not state.osdmap.osds[2].is_in  # an operator's out stays out
    # a late automatic out for an OSD that is up again changes nothing
    state2, (_late,) = run(state, cmd(osd_mark=mon_pb2.OsdMark(ids=[1], state=mon_pb2.OsdMark.OUT,
                                                              automatic=True)))
    assert state2.osdmap is state.osdmap
