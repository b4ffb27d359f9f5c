"""OSDMap, MonMap and MDSMap <-> protobuf (proto/loligo/maps.proto), exact in both directions."""

from __future__ import annotations

from rados_py.crush import wire as crush_wire
from rados_py.crush.compiled import CompiledMap
from rados_py.mdsmap import FsInfo, MdsInfo, MDSMap
from rados_py.monmap import MonMap
from rados_py.osdmap import OSDMap, OsdState, PgId, Pool
from rados_py.proto.loligo import maps_pb2


def osdmap_to_proto(m: OSDMap) -> maps_pb2.OSDMap:
    msg = maps_pb2.OSDMap(fsid=m.fsid, epoch=m.epoch, crush=crush_wire.to_proto(m.crush.crush_map),
                          flags=sorted(m.flags))
    for p in sorted(m.pools.values(), key=lambda p: p.id):
        msg.pools.add(id=p.id, name=p.name, type=p.type, size=p.size, min_size=p.min_size,
                      pg_num=p.pg_num, pgp_num=p.pgp_num, crush_rule=p.crush_rule,
                      flags=sorted(p.flags), created=p.created)
    for o in sorted(m.osds.values(), key=lambda o: o.id):
        msg.osds.add(id=o.id, addr=o.addr, up=o.up, weight=o.weight, up_from=o.up_from,
                     down_at=o.down_at, auto_out=o.auto_out, heartbeat_addr=o.heartbeat_addr)
    for pgid, osds in sorted(m.pg_temp.items()):
        msg.pg_temp.add(pool=pgid.pool, seed=pgid.seed, osds=list(osds))
    return msg


def osdmap_from_proto(msg: maps_pb2.OSDMap) -> OSDMap:
    return OSDMap(
        crush=CompiledMap(crush_wire.from_proto(msg.crush)),
        fsid=msg.fsid,
        epoch=msg.epoch,
        pools={p.id: Pool(p.id, p.name, size=p.size, min_size=p.min_size, pg_num=p.pg_num,
                          pgp_num=p.pgp_num, crush_rule=p.crush_rule, type=p.type,
                          flags=frozenset(p.flags), created=p.created) for p in msg.pools},
        osds={o.id: OsdState(o.id, up=o.up, weight=o.weight, addr=o.addr, up_from=o.up_from,
                             down_at=o.down_at, auto_out=o.auto_out,
                             heartbeat_addr=o.heartbeat_addr) for o in msg.osds},
        pg_temp={PgId(t.pool, t.seed): tuple(t.osds) for t in msg.pg_temp},
        flags=frozenset(msg.flags),
    )


def monmap_to_proto(m: MonMap) -> maps_pb2.MonMap:
    msg = maps_pb2.MonMap(fsid=m.fsid, epoch=m.epoch)
    for name, addr in m.mons:
        msg.mons.add(name=name, addr=addr)
    return msg


def monmap_from_proto(msg: maps_pb2.MonMap) -> MonMap:
    return MonMap(msg.fsid, msg.epoch, tuple((m.name, m.addr) for m in msg.mons))


def mdsmap_to_proto(m: MDSMap) -> maps_pb2.MDSMap:
    msg = maps_pb2.MDSMap(epoch=m.epoch)
    for d in m.daemons:
        msg.mds.add(name=d.name, addr=d.addr, rank=d.rank, state=d.state)
    for f in m.filesystems:
        msg.filesystems.add(name=f.name, metadata_pool=f.metadata_pool, data_pool=f.data_pool,
                            created=f.created, joinable=f.joinable)
    return msg


def mdsmap_from_proto(msg: maps_pb2.MDSMap) -> MDSMap:
    return MDSMap(msg.epoch or 1, tuple(MdsInfo(d.name, d.addr, d.rank, d.state)
                                        for d in msg.mds),
                  tuple(FsInfo(f.name, f.metadata_pool, f.data_pool, f.created, f.joinable)
                        for f in msg.filesystems))
