"""The monitors' replicated state machine: cluster maps changed only by commands.

Every monitor applies the same committed `MonCommand`s in the same order to a `ClusterMaps`
value, so every monitor holds the same maps at every epoch. `apply()` is pure: no I/O, no clock,
no randomness; an OSDMap change yields a new epoch, a refused command changes nothing. A command
carries a request id; one already applied (a client resent it after a lost reply) returns its
first result again instead of being applied twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rados_py.crush import edit, wire
from rados_py.crush.compiled import CompiledMap
from rados_py.crush.model import WEIGHT_ONE, CrushMap
from rados_py.errors import CrushMapError, InvalidArgument, LoligoError, NoSuchPool, NotFound
from rados_py.maps_wire import (
    mdsmap_from_proto,
    mdsmap_to_proto,
    monmap_from_proto,
    monmap_to_proto,
    osdmap_from_proto,
    osdmap_to_proto,
)
from rados_py.mdsmap import ACTIVE, STANDBY, FsInfo, MdsInfo, MDSMap
from rados_py.monmap import MonMap
from rados_py.osdmap import POOL_ERASURE, POOL_REPLICATED, OSDMap, OsdState, Pool
from rados_py.proto.loligo import mon_pb2

# Ceph's errno-style result codes (CommandResult.code)
OK, ENOENT, EEXIST, EBUSY, EINVAL = 0, -2, -17, -16, -22
APPLIED_REMEMBERED = 4096  # request ids kept for dedup (a client resends within seconds)
OSD_FLAGS = frozenset({"noout", "noin", "nodown", "noup", "pause", "norecover", "nobackfill",
                       "noscrub", "nodeep-scrub"})
TIB = 1 << 40
MIN_CRUSH_WEIGHT = WEIGHT_ONE // 1000  # 0.001, so an empty test disk still gets data


class CommandFailed(LoligoError):
    """A command the state machine refuses; `code` is its errno-style result."""

    def __init__(self, code: int, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class PoolDefaults:
    """Configured defaults for `pool create` (osd_pool_default_* in Ceph)."""

    pg_num: int = 32
    size: int = 3


@dataclass(frozen=True)
class ClusterMaps:
    monmap: MonMap
    osdmap: OSDMap
    osd_uuids: dict[int, str] = field(default_factory=dict)  # a rebooting disk keeps its id
    applied: dict[bytes, mon_pb2.CommandResult] = field(default_factory=dict)  # insertion order
    pool_defaults: PoolDefaults = PoolDefaults()
    mdsmap: MDSMap = field(default_factory=MDSMap)

    @classmethod
    def initial(cls, fsid: str, mons: list[tuple[str, str]], failure_domain: str = "host",
                pool_defaults: PoolDefaults | None = None) -> ClusterMaps:
        crush = CompiledMap(edit.initial_map(failure_domain))
        return cls(MonMap(fsid, 1, tuple(sorted(mons))), OSDMap(crush=crush, fsid=fsid, epoch=1),
                   pool_defaults=pool_defaults or PoolDefaults())

    # --- snapshots ----------------------------------------------------------------------------
    def to_proto(self) -> mon_pb2.ClusterState:
        msg = mon_pb2.ClusterState(monmap=monmap_to_proto(self.monmap),
                                   osdmap=osdmap_to_proto(self.osdmap),
                                   mdsmap=mdsmap_to_proto(self.mdsmap))
        for osd, uuid in sorted(self.osd_uuids.items()):
            msg.osd_identities.add(id=osd, uuid=uuid)
        for rid, result in self.applied.items():
            msg.applied.add(request_id=rid, result=result)
        return msg

    @classmethod
    def from_proto(cls, msg: mon_pb2.ClusterState, pool_defaults: PoolDefaults | None = None
                   ) -> ClusterMaps:
        return cls(monmap_from_proto(msg.monmap), osdmap_from_proto(msg.osdmap),
                   {i.id: i.uuid for i in msg.osd_identities},
                   {a.request_id: a.result for a in msg.applied},
                   pool_defaults or PoolDefaults(), mdsmap_from_proto(msg.mdsmap))


def apply(state: ClusterMaps, command: mon_pb2.MonCommand) -> tuple[ClusterMaps,
                                                                     mon_pb2.CommandResult]:
    """Apply one committed command: the new state and the result to return to its sender."""
    if command.request_id and command.request_id in state.applied:
        return state, state.applied[command.request_id]
    kind = command.WhichOneof("cmd")
    if kind in _MDS_HANDLERS:
        return _apply_mds(state, command, kind)
    handler = _HANDLERS.get(kind or "")
    try:
        if handler is None:
            raise CommandFailed(EINVAL, f"unknown command {kind!r}")
        osdmap, value, message = handler(state, getattr(command, kind))
        result = mon_pb2.CommandResult(code=OK, message=message, value=value)
    except CommandFailed as e:
        osdmap, result = state.osdmap, mon_pb2.CommandResult(code=e.code, message=str(e))
    except NotFound as e:
        osdmap, result = state.osdmap, mon_pb2.CommandResult(code=ENOENT, message=str(e))
    except (InvalidArgument, CrushMapError) as e:
        osdmap, result = state.osdmap, mon_pb2.CommandResult(code=EINVAL, message=str(e))
    if osdmap is not state.osdmap:
        osdmap = dataclasses.replace(osdmap, epoch=state.osdmap.epoch + 1)
    result.osdmap_epoch = osdmap.epoch
    uuids = state.osd_uuids
    if kind in ("osd_boot", "osd_create") and result.code == OK:
        uuid = getattr(command, kind).uuid
        if uuid:
            uuids = {**uuids, int(result.value): uuid}
    elif kind == "osd_remove" and result.code == OK:
        uuids = {k: v for k, v in uuids.items() if k not in command.osd_remove.ids}
    return dataclasses.replace(state, osdmap=osdmap, osd_uuids=uuids,
                               applied=_remember(state, command.request_id, result)), result


def _remember(state: ClusterMaps, request_id: bytes, result: mon_pb2.CommandResult
              ) -> dict[bytes, mon_pb2.CommandResult]:
    if not request_id:
        return state.applied
    applied = dict(state.applied)
    applied[request_id] = result
    while len(applied) > APPLIED_REMEMBERED:
        del applied[next(iter(applied))]
    return applied


def _apply_mds(state: ClusterMaps, command: mon_pb2.MonCommand, kind: str
               ) -> tuple[ClusterMaps, mon_pb2.CommandResult]:
    code = OK
    try:
        mdsmap, message = _MDS_HANDLERS[kind](state, getattr(command, kind))
    except CommandFailed as e:
        mdsmap, message, code = state.mdsmap, str(e), e.code
    except NotFound as e:
        mdsmap, message, code = state.mdsmap, str(e), ENOENT
    if mdsmap is not state.mdsmap:
        mdsmap = dataclasses.replace(mdsmap, epoch=state.mdsmap.epoch + 1)
    result = mon_pb2.CommandResult(code=code, message=message, osdmap_epoch=state.osdmap.epoch,
                                   value=mdsmap.epoch)
    return dataclasses.replace(state, mdsmap=mdsmap,
                               applied=_remember(state, command.request_id, result)), result


Outcome = tuple[OSDMap, int, str]  # new osdmap (the same object when unchanged), value, message


def _with_crush(osdmap: OSDMap, crush: CrushMap) -> OSDMap:
    return dataclasses.replace(osdmap, crush=CompiledMap(crush))


def _osd(osdmap: OSDMap, osd: int) -> OsdState:
    state = osdmap.osds.get(osd)
    if state is None:
        raise NotFound(f"osd.{osd} does not exist")
    return state


def _next_epoch(state: ClusterMaps) -> int:
    return state.osdmap.epoch + 1


# --- OSDs ---------------------------------------------------------------------------------------

def _choose_id(state: ClusterMaps, cmd: mon_pb2.OsdBoot | mon_pb2.OsdCreate) -> int:
    """The id of the disk `cmd.uuid`: the one it has, the one asked for, or the lowest free."""
    osdmap = state.osdmap
    known = {uuid: osd for osd, uuid in state.osd_uuids.items()}
    wanted = cmd.id if cmd.HasField("id") else None
    if wanted is not None and wanted < 0:
        raise InvalidArgument(f"osd id {wanted} is negative")
    if cmd.uuid and cmd.uuid in known:
        osd = known[cmd.uuid]
        if wanted is not None and wanted != osd:
            raise CommandFailed(EEXIST, f"disk {cmd.uuid} belongs to osd.{osd}, not osd.{wanted}")
    elif wanted is not None:
        osd = wanted
        if osd in state.osd_uuids and state.osd_uuids[osd] != cmd.uuid:
            raise CommandFailed(EEXIST, f"osd.{osd} exists with another disk")
    else:
        osd = next(i for i in range(len(osdmap.osds) + 1) if i not in osdmap.osds)
    return osd


def _osd_create(state: ClusterMaps, cmd: mon_pb2.OsdCreate) -> Outcome:
    osd = _choose_id(state, cmd)
    if osd in state.osdmap.osds:
        return state.osdmap, osd, f"osd.{osd} exists"
    osds = {**state.osdmap.osds, osd: OsdState(osd, up=False, weight=0)}
    return dataclasses.replace(state.osdmap, osds=osds), osd, f"created osd.{osd}"


def _osd_boot(state: ClusterMaps, cmd: mon_pb2.OsdBoot) -> Outcome:
    osdmap = state.osdmap
    if not cmd.addr or not cmd.host:
        raise InvalidArgument("osd boot needs an address and a host")
    osd = _choose_id(state, cmd)
    old = osdmap.osds.get(osd)
    if (old is not None and old.up and old.addr == cmd.addr
            and old.heartbeat_addr == cmd.heartbeat_addr):
        return osdmap, osd, f"osd.{osd} is already up at {cmd.addr}"
    crush = osdmap.crush.crush_map
    if osd not in crush.parents():
        weight = max(MIN_CRUSH_WEIGHT, cmd.capacity_bytes * WEIGHT_ONE // TIB)
        crush = edit.add_device(crush, osd, cmd.host, weight)
    # a new disk comes in (unless noin); one that was created or marked out keeps its weight,
    # except that a never-booted created OSD (down, out, never up) comes in on first boot
    # ... and one the monitors marked out for being down too long comes back in (Ceph's
    # mon_osd_auto_mark_auto_out_in); one an operator marked out stays out
    first_boot = old is None or (old.up_from == 0 and old.weight == 0)
    comes_in = first_boot or old.auto_out
    weight = (0 if "noin" in osdmap.flags else WEIGHT_ONE) if comes_in else old.weight
    osds = {**osdmap.osds, osd: OsdState(osd, up=True, weight=weight, addr=cmd.addr,
                                         heartbeat_addr=cmd.heartbeat_addr,
                                         up_from=_next_epoch(state),
                                         down_at=old.down_at if old else 0,
                                         auto_out=weight == 0 and bool(old and old.auto_out))}
    new = dataclasses.replace(osdmap, osds=osds)
    if crush is not osdmap.crush.crush_map:
        new = _with_crush(new, crush)
    return new, osd, f"osd.{osd} up at {cmd.addr}"


def _osd_mark(state: ClusterMaps, cmd: mon_pb2.OsdMark) -> Outcome:
    osdmap = state.osdmap
    if not cmd.ids:
        raise InvalidArgument("no OSD ids given")
    osds = dict(osdmap.osds)
    for osd in cmd.ids:
        old = _osd(osdmap, osd)
        if cmd.state == mon_pb2.OsdMark.DOWN:
            new = dataclasses.replace(old, up=False, down_at=_next_epoch(state)) if old.up else old
        elif cmd.state == mon_pb2.OsdMark.OUT:
            if cmd.automatic and (old.weight == 0 or old.up):
                continue  # the monitors' decision is stale: out already, or back up
            new = dataclasses.replace(old, weight=0, auto_out=cmd.automatic)
        elif cmd.state == mon_pb2.OsdMark.IN:
            new = dataclasses.replace(old, weight=WEIGHT_ONE, auto_out=False)
        else:
            raise InvalidArgument("osd mark needs a state: down, out or in")
        osds[osd] = new
    word = mon_pb2.OsdMark.State.Name(cmd.state).lower()
    if osds == osdmap.osds:
        return osdmap, 0, f"{', '.join(f'osd.{i}' for i in cmd.ids)} already {word}"
    return dataclasses.replace(osdmap, osds=osds), 0, \
        f"marked {word} {', '.join(f'osd.{i}' for i in cmd.ids)}"


def _osd_reweight(state: ClusterMaps, cmd: mon_pb2.OsdReweight) -> Outcome:
    old = _osd(state.osdmap, cmd.id)
    if cmd.weight > WEIGHT_ONE:
        raise InvalidArgument("reweight must be between 0 and 1")
    osds = {**state.osdmap.osds, cmd.id: dataclasses.replace(old, weight=cmd.weight)}
    return dataclasses.replace(state.osdmap, osds=osds), 0, \
        f"reweighted osd.{cmd.id} to {cmd.weight / WEIGHT_ONE:.4g}"


def _osd_remove(state: ClusterMaps, cmd: mon_pb2.OsdRemove) -> Outcome:
    osdmap = state.osdmap
    crush = osdmap.crush.crush_map
    osds = dict(osdmap.osds)
    for osd in cmd.ids:
        old = _osd(osdmap, osd)
        if old.up or old.weight:
            raise CommandFailed(EBUSY, f"osd.{osd} is still {'up' if old.up else 'in'}: "
                                "stop it and mark it out first")
        del osds[osd]
        crush = edit.remove_device(crush, osd)
    return _with_crush(dataclasses.replace(osdmap, osds=osds), crush), 0, \
        f"removed {', '.join(f'osd.{i}' for i in cmd.ids)}"


def _osd_set_flag(state: ClusterMaps, cmd: mon_pb2.OsdSetFlag) -> Outcome:
    if cmd.flag not in OSD_FLAGS:
        raise InvalidArgument(f"unknown flag {cmd.flag!r} (flags: {', '.join(sorted(OSD_FLAGS))})")
    flags = state.osdmap.flags | {cmd.flag} if cmd.set else state.osdmap.flags - {cmd.flag}
    if flags == state.osdmap.flags:
        return state.osdmap, 0, f"{cmd.flag} is already {'set' if cmd.set else 'unset'}"
    return dataclasses.replace(state.osdmap, flags=frozenset(flags)), 0, \
        f"{cmd.flag} is {'set' if cmd.set else 'unset'}"


# --- pools --------------------------------------------------------------------------------------

def _pool_by_name(osdmap: OSDMap, name: str) -> Pool:
    for pool in osdmap.pools.values():
        if pool.name == name:
            return pool
    raise NoSuchPool(name)


def _rule_id(osdmap: OSDMap, name: str) -> int:
    try:
        return osdmap.crush.crush_map.rule_by_name(name).id
    except KeyError:
        raise NotFound(f"crush rule {name!r} does not exist") from None


def _pool_create(state: ClusterMaps, cmd: mon_pb2.PoolCreate) -> Outcome:
    osdmap = state.osdmap
    if not cmd.name or len(cmd.name) > 255 or "\0" in cmd.name:
        raise InvalidArgument("a pool name is 1 to 255 characters, without NUL")
    if any(p.name == cmd.name for p in osdmap.pools.values()):
        raise CommandFailed(EEXIST, f"pool {cmd.name!r} already exists")
    ptype = cmd.type or POOL_REPLICATED
    if ptype not in (POOL_REPLICATED, POOL_ERASURE):
        raise InvalidArgument(f"pool type {ptype!r}: replicated or erasure")
    size = cmd.size or state.pool_defaults.size
    pool = Pool(max(osdmap.pools, default=0) + 1, cmd.name, size=size,
                min_size=cmd.min_size or size - size // 2,
                pg_num=cmd.pg_num or state.pool_defaults.pg_num,
                crush_rule=_rule_id(osdmap, cmd.rule or edit.DEFAULT_RULE), type=ptype,
                created=_next_epoch(state))
    return dataclasses.replace(osdmap, pools={**osdmap.pools, pool.id: pool}), pool.id, \
        f"pool '{pool.name}' created"


POOL_KEYS = ("size", "min_size", "pg_num", "pgp_num", "crush_rule")


def _pool_set(state: ClusterMaps, cmd: mon_pb2.PoolSet) -> Outcome:
    osdmap = state.osdmap
    pool = _pool_by_name(osdmap, cmd.name)
    if cmd.key not in POOL_KEYS:
        raise InvalidArgument(f"cannot set {cmd.key!r} (settable: {', '.join(POOL_KEYS)})")
    if cmd.key == "crush_rule":
        changes: dict[str, int] = {"crush_rule": _rule_id(osdmap, cmd.value)}
    else:
        try:
            changes = {cmd.key: int(cmd.value)}
        except ValueError:
            raise InvalidArgument(f"{cmd.key} must be an integer, not {cmd.value!r}") from None
        if cmd.key == "pg_num":
            # Placement follows pgp_num; growing both together keeps a pool balanced.
            changes["pgp_num"] = changes["pg_num"] if pool.pgp_num == pool.pg_num \
                else min(pool.pgp_num, changes["pg_num"])
        if cmd.key == "size" and pool.min_size > changes["size"]:
            changes["min_size"] = changes["size"] - changes["size"] // 2
    new_pool = dataclasses.replace(pool, **changes)  # Pool checks its own invariants
    return dataclasses.replace(osdmap, pools={**osdmap.pools, pool.id: new_pool}), 0, \
        f"set pool {pool.id} {cmd.key} to {cmd.value}"


def _pool_remove(state: ClusterMaps, cmd: mon_pb2.PoolRemove) -> Outcome:
    pool = _pool_by_name(state.osdmap, cmd.name)
    pools = {k: v for k, v in state.osdmap.pools.items() if k != pool.id}
    return dataclasses.replace(state.osdmap, pools=pools), 0, f"pool '{pool.name}' removed"


# --- CRUSH --------------------------------------------------------------------------------------

def _crush_rule_create(state: ClusterMaps, cmd: mon_pb2.CrushRuleCreateReplicated) -> Outcome:
    crush = edit.add_replicated_rule(state.osdmap.crush.crush_map, cmd.name, cmd.root,
                                     cmd.failure_domain, cmd.device_class or None)
    return _with_crush(state.osdmap, crush), crush.rule_by_name(cmd.name).id, \
        f"created crush rule {cmd.name!r}"


def _crush_set(state: ClusterMaps, cmd: mon_pb2.CrushSet) -> Outcome:
    crush = wire.from_proto(cmd.crush)
    used = {p.crush_rule for p in state.osdmap.pools.values()}
    missing = sorted(used - set(crush.rules))
    if missing:
        raise InvalidArgument(f"the new map lacks rules {missing} that pools use")
    return _with_crush(state.osdmap, crush), 0, "crush map set"


_HANDLERS: dict[str, Callable[[ClusterMaps, object], Outcome]] = {
    "osd_create": _osd_create,
    "osd_boot": _osd_boot,
    "osd_mark": _osd_mark,
    "osd_reweight": _osd_reweight,
    "osd_remove": _osd_remove,
    "osd_set_flag": _osd_set_flag,
    "pool_create": _pool_create,
    "pool_set": _pool_set,
    "pool_remove": _pool_remove,
    "crush_rule_create_replicated": _crush_rule_create,
    "crush_set": _crush_set,
}


# --- the MDSMap ---------------------------------------------------------------------------------

def _mds_beacon(state: ClusterMaps, cmd: mon_pb2.MdsBeacon) -> tuple[MDSMap, str]:
    mdsmap = state.mdsmap
    if not cmd.name or not cmd.addr:
        return mdsmap, "an MDS beacon needs a name and an address"
    known = mdsmap.get(cmd.name)
    if known is not None and known.addr == cmd.addr:
        return mdsmap, f"mds.{cmd.name} is {known.state}"
    if known is not None:  # restarted at a new address: same role
        info = dataclasses.replace(known, addr=cmd.addr)
    elif mdsmap.active is None and mdsmap.joinable:
        info = MdsInfo(cmd.name, cmd.addr, 0, ACTIVE)
    else:
        info = MdsInfo(cmd.name, cmd.addr, -1, STANDBY)
    others = [d for d in mdsmap.daemons if d.name != cmd.name]
    daemons = tuple(sorted([*others, info], key=lambda d: d.name))
    return dataclasses.replace(mdsmap, daemons=daemons), f"mds.{cmd.name} is {info.state}"


def _mds_fail(state: ClusterMaps, cmd: mon_pb2.MdsFail) -> tuple[MDSMap, str]:
    mdsmap = state.mdsmap
    failed = mdsmap.get(cmd.name)
    if failed is None or (cmd.mdsmap_epoch and cmd.mdsmap_epoch != mdsmap.epoch):
        return mdsmap, f"mds.{cmd.name}: nothing to fail (already handled)"
    daemons = [d for d in mdsmap.daemons if d.name != cmd.name]
    message = f"mds.{cmd.name} failed"
    if failed.state == ACTIVE and daemons and mdsmap.joinable:
        heir = daemons[0]  # the first standby by name takes rank 0
        daemons[0] = dataclasses.replace(heir, rank=0, state=ACTIVE)
        message += f"; mds.{heir.name} takes over rank 0"
    return dataclasses.replace(mdsmap, daemons=tuple(daemons)), message


def _fs_new(state: ClusterMaps, cmd: mon_pb2.FsNew) -> tuple[MDSMap, str]:
    mdsmap = state.mdsmap
    if not cmd.name or len(cmd.name) > 255 or "/" in cmd.name or "\0" in cmd.name:
        raise CommandFailed(EINVAL, "a file system name is 1 to 255 characters, without / "
                            "or NUL")
    meta = _pool_by_name(state.osdmap, cmd.metadata_pool)
    data = _pool_by_name(state.osdmap, cmd.data_pool)
    if meta.id == data.id:
        raise CommandFailed(EINVAL, "the metadata and data pools must be different pools")
    existing = mdsmap.fs(cmd.name)
    if existing is not None:
        if (existing.metadata_pool, existing.data_pool) == (meta.id, data.id):
            return mdsmap, f"file system {cmd.name!r} already exists"
        raise CommandFailed(EEXIST, f"file system {cmd.name!r} exists with other pools")
    if mdsmap.filesystems:
        raise CommandFailed(EINVAL, f"a file system exists already "
                            f"({mdsmap.filesystems[0].name!r}): one per cluster for now")
    fs = FsInfo(cmd.name, meta.id, data.id, mdsmap.epoch + 1, True)
    return dataclasses.replace(mdsmap, filesystems=(fs,)), \
        f"new fs {cmd.name!r} with metadata pool {meta.id} and data pool {data.id}"


def _fs_remove(state: ClusterMaps, cmd: mon_pb2.FsRemove) -> tuple[MDSMap, str]:
    mdsmap = state.mdsmap
    fs = mdsmap.fs(cmd.name)
    if fs is None:
        raise NotFound(f"no file system {cmd.name!r}")
    if fs.joinable and mdsmap.active is not None:
        raise CommandFailed(EBUSY, f"file system {cmd.name!r} is served by "
                            f"mds.{mdsmap.active.name}: `loligo fs fail {cmd.name}` first")
    rest = tuple(f for f in mdsmap.filesystems if f.name != cmd.name)
    daemons = tuple(dataclasses.replace(d, rank=-1, state=STANDBY) for d in mdsmap.daemons)
    return dataclasses.replace(mdsmap, filesystems=rest, daemons=daemons), \
        f"file system {cmd.name!r} removed (its pools are kept)"


def _fs_set_joinable(state: ClusterMaps, cmd: mon_pb2.FsSetJoinable) -> tuple[MDSMap, str]:
    mdsmap = state.mdsmap
    fs = mdsmap.fs(cmd.name)
    if fs is None:
        raise NotFound(f"no file system {cmd.name!r}")
    filesystems = tuple(dataclasses.replace(f, joinable=cmd.joinable) if f.name == cmd.name
                        else f for f in mdsmap.filesystems)
    daemons = list(mdsmap.daemons)
    if not cmd.joinable:  # every rank fails; the daemons stay, as standbys
        daemons = [dataclasses.replace(d, rank=-1, state=STANDBY) for d in daemons]
        message = f"{cmd.name} marked not joinable; MDS cannot join the cluster. All MDS " \
                  "ranks marked failed."
    else:
        message = f"{cmd.name} marked joinable; MDS may join as newly active."
        if mdsmap.active is None and daemons:
            daemons[0] = dataclasses.replace(daemons[0], rank=0, state=ACTIVE)
            message += f" mds.{daemons[0].name} takes over rank 0"
    return dataclasses.replace(mdsmap, filesystems=filesystems, daemons=tuple(daemons)), message


_MDS_HANDLERS: dict[str, Callable[[ClusterMaps, Any], tuple[MDSMap, str]]] = {
    "mds_beacon": _mds_beacon,
    "mds_fail": _mds_fail,
    "fs_new": _fs_new,
    "fs_remove": _fs_remove,
    "fs_set_joinable": _fs_set_joinable,
}
