"""`loligo status|health|mon|osd|pool` and the cluster half of `loligo crush`: the monitors'
commands from the command line, with Ceph's words, layouts and JSON keys so that an operator's
habits and scripts written for `ceph` carry over.

Every command finds its cluster from `--conf FILE`, else $LOLIGO_CONF, else the default local
cluster, reads the keyring the config names and acts as client.admin. Output is rendered from
the same dict that `--format json` prints, so the two never disagree. `loligo mon --id NAME`
runs a monitor daemon in the foreground.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cluster.crush_cli import load_map
from rados_py import config as config_mod
from rados_py.auth import Keyring
from rados_py.crush import text as crush_text
from rados_py.crush import wire as crush_wire
from rados_py.crush.compiled import CompiledMap
from rados_py.crush.model import (
    ALG_NAMES,
    CHOOSE_OPS,
    OP_EMIT,
    OP_TAKE,
    RULE_TYPE_NAMES,
    SET_OPS,
    CrushMap,
)
from rados_py.errors import LoligoError, NotFound
from rados_py.monclient import ClusterStatus, Maps, MonClientSync
from rados_py.osdmap import OSDMap, Pool
from rados_py.proto.loligo import mon_pb2

WEIGHT_ONE = 0x10000
POOL_GET_KEYS = ("size", "min_size", "pg_num", "pgp_num", "crush_rule")
CONFIRM = "--yes-i-really-really-mean-it"
SEVERITY = {"HEALTH_WARN": "WRN", "HEALTH_ERR": "ERR"}


# --- talking to the cluster ---------------------------------------------------------------------

@contextmanager
def mon_client(args: argparse.Namespace) -> Iterator[MonClientSync]:
    """A client of the cluster the command line names, acting as client.admin."""
    cfg = config_mod.load(config_mod.find_conf(getattr(args, "conf", None)), "client.admin")
    if getattr(args, "timeout", None):
        cfg = cfg.replace(rpc_timeout=args.timeout)
    with MonClientSync(cfg, Keyring.load(cfg.keyring)) as client:
        yield client


def _maps_or_none(client: MonClientSync, st: ClusterStatus) -> Maps | None:
    """The maps, at least as new as the status, if a monitor gives them quickly: status must
    describe a sick cluster too."""
    epoch = max(s.osdmap_epoch for s in st.answered.values())
    try:
        return client.get_maps(epoch, timeout=min(client.client.config.rpc_timeout, 3.0))
    except LoligoError:  # only means "maps unknown" here
        return None


def _emit(args: argparse.Namespace, data: Any, render: Callable[[Any], str]) -> int:
    fmt = getattr(args, "format", "text")
    if fmt == "json":
        print(json.dumps(data))
    elif fmt == "json-pretty":
        print(json.dumps(data, indent=4))
    else:
        print(render(data))
    return 0


def _run(args: argparse.Namespace, **command: Any) -> int:
    with mon_client(args) as client:
        result = client.command(**command)
    print(result.message)
    return 0


# --- status, health, mon stat -------------------------------------------------------------------

def _checks(st: ClusterStatus) -> dict[str, dict[str, Any]]:
    checks: dict[str, dict[str, Any]] = {}
    for c in st.view.checks:  # one entry per code, as in Ceph (OSDMAP_FLAGS may repeat)
        check = checks.setdefault(c.code, {"severity": c.severity, "summary": {"message": ""},
                                           "detail": [], "muted": False})
        summary = check["summary"]
        summary["message"] = "; ".join(filter(None, [summary["message"], c.summary]))
        check["detail"] += [{"message": c.detail}] if c.detail else []
        if c.severity == "HEALTH_ERR":
            check["severity"] = c.severity
    if not st.from_leader:  # no leader answered: say so, since no monitor can
        down = ", ".join(sorted(st.unreachable)) or "none"
        checks["MON_QUORUM"] = {
            "severity": "HEALTH_ERR", "muted": False,
            "summary": {"message": f"no monitor quorum: no leader among "
                                   f"{','.join(sorted(st.answered))} (unreachable: {down})"},
            "detail": [{"message": "start the stopped monitors (`loligo cluster start mon.X`) "
                                   "and read their logs; a majority must run to elect a leader"}]}
    return checks


def health_json(st: ClusterStatus) -> dict[str, Any]:
    checks = _checks(st)
    status = st.view.health or "HEALTH_ERR"
    if not st.from_leader:
        status = "HEALTH_ERR"
    return {"status": status, "checks": checks, "mutes": []}


def status_json(st: ClusterStatus, maps: Maps | None, mon_addrs: dict[str, str]
                ) -> dict[str, Any]:
    """`ceph status --format json` keys (plus leader/term and which monitors answered).

    Without maps (no quorum to read them from) `osdmap` and `pgmap` are null.
    """
    addrs = dict(maps.monmap.mons) if maps else mon_addrs
    names = sorted(addrs)
    quorum = [n for n in names if n in st.view.quorum] if st.from_leader else []
    out: dict[str, Any] = {
        "fsid": st.view.fsid, "health": health_json(st), "election_epoch": st.view.term,
        "term": st.view.term, "leader": st.view.leader if st.from_leader else "",
        "quorum": [names.index(n) for n in quorum], "quorum_names": quorum,
        "monmap": {"epoch": maps.monmap.epoch if maps else 0, "num_mons": len(names),
                   "mons": [{"rank": i, "name": n, "addr": addrs[n], "answered": n in st.answered}
                            for i, n in enumerate(names)]},
        "mons_unreachable": dict(sorted(st.unreachable.items())),
    }
    if maps is None:
        out.update(osdmap=None, pgmap=None)
        return out
    osdmap = maps.osdmap
    out["osdmap"] = {"epoch": osdmap.epoch, "num_osds": len(osdmap.osds),
                     "num_up_osds": sum(o.up for o in osdmap.osds.values()),
                     "num_in_osds": sum(o.is_in for o in osdmap.osds.values()),
                     "num_remapped_pgs": 0, "flags": sorted(osdmap.flags)}
    out["pgmap"] = {"pgs_by_state": [], "num_pools": len(osdmap.pools),
                    "num_pgs": sum(p.pg_num for p in osdmap.pools.values())}
    mdsmap = maps.mdsmap
    out["fsmap"] = {"epoch": mdsmap.epoch,
                    "up": [{"name": d.name, "rank": d.rank, "status": f"up:{d.state}"}
                           for d in mdsmap.daemons if d.state == "active"],
                    "up:standby": len(mdsmap.standbys)}
    return out


def _check_lines(checks: dict[str, Any], indent: str) -> list[str]:
    lines = []
    for check in checks.values():
        lines.append(f"{indent}{check['summary']['message']}")
        lines += [f"{indent}  -> {d['message']}" for d in check["detail"]]
    return lines


def format_status(data: dict[str, Any]) -> str:
    """`ceph -s`: cluster, services and data sections, with each check and what to do."""
    health = data["health"]
    lines = ["  cluster:", f"    id:     {data['fsid']}", f"    health: {health['status']}"]
    lines += _check_lines(health["checks"], " " * 12)
    mons = data["monmap"]["num_mons"]
    quorum = ",".join(data["quorum_names"]) or "none"
    leader = f", leader {data['leader']} (term {data['term']})" if data["leader"] else ""
    lines += ["", "  services:", f"    mon: {mons} daemons, quorum {quorum}{leader}"]
    if data["mons_unreachable"]:
        lines.append(f"         unreachable: {', '.join(data['mons_unreachable'])}")
    osd, pgs = data["osdmap"], data["pgmap"]
    if osd is None:
        lines += ["    osd: unknown (no quorum to read the maps from)", ""]
        return "\n".join(lines)
    fs = data.get("fsmap")
    if fs and (fs["up"] or fs["up:standby"]):
        active = ", ".join(f"{d['name']}={d['status']}" for d in fs["up"]) or "none active"
        lines.append(f"    mds: {active}, {fs['up:standby']} up:standby")
    flags = f"; flags {','.join(osd['flags'])}" if osd["flags"] else ""
    lines += [f"    osd: {osd['num_osds']} osds: {osd['num_up_osds']} up, "
              f"{osd['num_in_osds']} in{flags}", "", "  data:",
              f"    pools:   {pgs['num_pools']} pools, {pgs['num_pgs']} pgs"]
    if pgs["pgs_by_state"]:
        states = ", ".join(f"{s['count']} {s['state_name']}" for s in pgs["pgs_by_state"])
        lines.append(f"    pgs:     {states}")
    elif pgs["num_pgs"]:
        lines.append(f"    pgs:     {pgs['num_pgs']} unknown (no OSD has reported PG states yet)")
    return "\n".join(lines) + "\n"


def format_health(data: dict[str, Any], detail: bool = False) -> str:
    """`ceph health [detail]`: the status and the summaries; with detail, what to do."""
    checks = data["checks"]
    head = data["status"]
    if checks:
        head += " " + "; ".join(c["summary"]["message"] for c in checks.values())
    if not detail:
        return head
    lines = [head]
    for code, check in checks.items():
        lines.append(f"[{SEVERITY.get(check['severity'], 'ERR')}] {code}: "
                     f"{check['summary']['message']}")
        lines += [f"    {d['message']}" for d in check["detail"]]
    return "\n".join(lines)


def mon_stat_json(st: ClusterStatus, maps: Maps | None, mon_addrs: dict[str, str]
                  ) -> dict[str, Any]:
    """`ceph mon stat --format json` keys: epoch, num_mons, leader, quorum [{rank, name}]."""
    mons = dict(maps.monmap.mons) if maps else mon_addrs
    names = sorted(mons)
    quorum = [n for n in names if n in st.view.quorum] if st.from_leader else []
    return {"epoch": maps.monmap.epoch if maps else 0, "num_mons": len(names),
            "leader": st.view.leader if st.from_leader else "", "term": st.view.term,
            "election_epoch": st.view.term,
            "quorum": [{"rank": names.index(n), "name": n} for n in quorum],
            "quorum_names": quorum,
            "mons": [{"rank": i, "name": n, "addr": mons[n], "answered": n in st.answered}
                     for i, n in enumerate(names)]}


def format_mon_stat(data: dict[str, Any]) -> str:
    at = ",".join(f"{m['name']}={m['addr']}" for m in data["mons"])
    leader = data["leader"]
    rank = next((m["rank"] for m in data["mons"] if m["name"] == leader), None)
    quorum = data["quorum"]
    return (f"e{data['epoch']}: {data['num_mons']} mons at {{{at}}}, term {data['term']}, "
            f"leader {f'{rank} {leader}' if leader else 'none'}, quorum "
            f"{','.join(str(q['rank']) for q in quorum)} "
            f"{','.join(q['name'] for q in quorum) or 'none'}")


def cmd_status(args: argparse.Namespace) -> int:
    with mon_client(args) as client:
        st = client.status()
        # without a leader a monitor's maps may be stale: show none rather than old ones
        maps = _maps_or_none(client, st) if st.from_leader else None
        addrs = {m.name: m.addr for m in client.client.config.mon_host}
    return _emit(args, status_json(st, maps, addrs), format_status)


def cmd_health(args: argparse.Namespace) -> int:
    with mon_client(args) as client:
        st = client.status()
    data = health_json(st)
    return _emit(args, data, lambda d: format_health(d, args.detail == "detail"))


def cmd_mon_stat(args: argparse.Namespace) -> int:
    with mon_client(args) as client:
        st = client.status()
        maps = _maps_or_none(client, st)
        addrs = {m.name: m.addr for m in client.client.config.mon_host}
    return _emit(args, mon_stat_json(st, maps, addrs), format_mon_stat)


def cmd_mon(args: argparse.Namespace) -> int:
    """`loligo mon --id NAME`: the monitor daemon, in the foreground."""
    if args.mon_command == "stat":
        return cmd_mon_stat(args)
    if not getattr(args, "id", None):
        args.parser.error("give `stat`, or `--id NAME` to run a monitor")
    from mon import daemon  # the daemon and its dependencies only when running one

    return int(daemon.main(str(config_mod.find_conf(getattr(args, "conf", None))), args.id))


# --- osd tree and dump --------------------------------------------------------------------------

def _w(weight: int) -> float:
    return round(weight / WEIGHT_ONE, 5)


def tree_json(osdmap: OSDMap) -> dict[str, Any]:
    """`ceph osd tree --format json`: nodes depth-first from each root, then strays."""
    crush = osdmap.crush.crush_map
    parents = crush.parents()
    item_weight = {it.id: it.weight for b in crush.buckets.values() for it in b.items}
    nodes: list[dict[str, Any]] = []

    def osd_node(osd: int, depth: int) -> dict[str, Any]:
        state = osdmap.osds.get(osd)
        dev = crush.devices.get(osd)
        return {"id": osd, "device_class": (dev.device_class if dev else None) or "",
                "name": f"osd.{osd}", "type": "osd", "type_id": 0,
                "crush_weight": _w(item_weight.get(osd, 0)), "depth": depth,
                "exists": int(state is not None),
                "status": "dne" if state is None else ("up" if state.up else "down"),
                "reweight": _w(state.weight) if state else 0.0, "primary_affinity": 1.0}

    def walk(item: int, depth: int) -> None:
        if item >= 0:
            nodes.append(osd_node(item, depth))
            return
        b = crush.buckets[item]
        nodes.append({"id": b.id, "name": b.name, "type": crush.types.get(b.type_id, "?"),
                      "type_id": b.type_id, "crush_weight": _w(b.weight), "depth": depth,
                      "children": [it.id for it in reversed(b.items)]})
        for it in b.items:
            walk(it.id, depth + 1)

    for root in sorted((b for b in crush.buckets if b not in parents), reverse=True):
        walk(root, 0)
    stray = [osd_node(o, 0) for o in sorted(osdmap.osds) if o not in parents]
    return {"nodes": nodes, "stray": stray}


def _table(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if i in right else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                     for r in rows)


def format_tree(data: dict[str, Any]) -> str:
    rows = [["ID", "CLASS", "WEIGHT", "TYPE NAME", "STATUS", "REWEIGHT", "PRI-AFF"]]
    for n in data["nodes"] + data["stray"]:
        name = " " * 4 * n["depth"] + (n["name"] if n["type"] == "osd"
                                       else f"{n['type']} {n['name']}")
        if n["type"] == "osd":
            rows.append([str(n["id"]), n["device_class"], f"{n['crush_weight']:.5f}", name,
                         n["status"], f"{n['reweight']:.5f}", f"{n['primary_affinity']:.5f}"])
        else:
            rows.append([str(n["id"]), "", f"{n['crush_weight']:.5f}", name, "", "", ""])
    return _table(rows, right={0, 1, 2, 4, 5, 6})


def _pool_json(osdmap: OSDMap, p: Pool) -> dict[str, Any]:
    rules = osdmap.crush.crush_map.rules
    return {"pool": p.id, "pool_name": p.name, "type": 1 if p.type == "replicated" else 3,
            "type_name": p.type, "size": p.size, "min_size": p.min_size,
            "crush_rule": p.crush_rule,
            "crush_rule_name": rules[p.crush_rule].name if p.crush_rule in rules else "",
            "pg_num": p.pg_num, "pg_placement_num": p.pgp_num, "pgp_num": p.pgp_num,
            "flags_names": ",".join(sorted(p.flags))}


def dump_json(osdmap: OSDMap) -> dict[str, Any]:
    """`ceph osd dump --format json` keys for what this OSDMap holds."""
    return {"epoch": osdmap.epoch, "fsid": osdmap.fsid, "flags": ",".join(sorted(osdmap.flags)),
            "max_osd": osdmap.max_osd,
            "pools": [_pool_json(osdmap, p) for _, p in sorted(osdmap.pools.items())],
            "osds": [{"osd": o.id, "up": int(o.up), "in": int(o.is_in), "weight": _w(o.weight),
                      "up_from": o.up_from, "down_at": o.down_at, "public_addr": o.addr}
                     for _, o in sorted(osdmap.osds.items())]}


def _pool_line(p: dict[str, Any]) -> str:
    return (f"pool {p['pool']} '{p['pool_name']}' {p['type_name']} size {p['size']} "
            f"min_size {p['min_size']} crush_rule {p['crush_rule']} pg_num {p['pg_num']} "
            f"pgp_num {p['pgp_num']} flags {p['flags_names'] or '(none)'}")


def format_dump(data: dict[str, Any]) -> str:
    lines = [f"epoch {data['epoch']}", f"fsid {data['fsid']}", f"flags {data['flags']}".rstrip(),
             "", *(_pool_line(p) for p in data["pools"]), "", f"max_osd {data['max_osd']}"]
    lines += [f"osd.{o['osd']} {'up' if o['up'] else 'down':<4} {'in' if o['in'] else 'out':<3} "
              f"weight {o['weight']:g} up_from {o['up_from']} down_at {o['down_at']} "
              f"{o['public_addr'] or '-'}" for o in data["osds"]]
    return "\n".join(lines)


def cmd_osd_show(args: argparse.Namespace) -> int:
    with mon_client(args) as client:
        osdmap = client.get_maps(latest=True).osdmap
    if args.osd_command == "tree":
        return _emit(args, tree_json(osdmap), format_tree)
    return _emit(args, dump_json(osdmap), format_dump)


# --- osd commands -------------------------------------------------------------------------------

def osd_id(text: str) -> int:
    """`3` or `osd.3`."""
    raw = text[4:] if text.startswith("osd.") else text
    if not raw.isdigit():
        raise argparse.ArgumentTypeError(f"bad OSD id {text!r}: expected N or osd.N")
    return int(raw)


def reweight(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad weight {text!r}: expected 0..1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"weight {text} is not within 0..1")
    return round(value * WEIGHT_ONE)


def disk_uuid(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad uuid {text!r}") from None


def size(text: str) -> int:
    try:
        return config_mod.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _boot(args: argparse.Namespace) -> mon_pb2.OsdBoot:
    boot = mon_pb2.OsdBoot(uuid=args.uuid or str(uuid.uuid4()), addr=args.addr, host=args.host,
                           capacity_bytes=args.capacity)
    if args.id is not None:
        boot.id = args.id
    return boot


def cmd_osd_boot(args: argparse.Namespace) -> int:
    return _run(args, osd_boot=_boot(args))


def cmd_osd_create(args: argparse.Namespace) -> int:
    """Allocate an OSD id for a disk (its uuid); the OSD is down and out until it boots."""
    create = mon_pb2.OsdCreate(uuid=args.uuid or str(uuid.uuid4()))
    if args.id is not None:
        create.id = args.id
    with mon_client(args) as client:
        osd = int(client.command(osd_create=create).value)
    print(osd)
    return 0


def cmd_osd_mark(args: argparse.Namespace) -> int:
    state = {"down": mon_pb2.OsdMark.DOWN, "out": mon_pb2.OsdMark.OUT,
             "in": mon_pb2.OsdMark.IN}[args.osd_command]
    return _run(args, osd_mark=mon_pb2.OsdMark(ids=args.ids, state=state))


def cmd_osd_reweight(args: argparse.Namespace) -> int:
    return _run(args, osd_reweight=mon_pb2.OsdReweight(id=args.osd, weight=args.weight))


def cmd_osd_rm(args: argparse.Namespace) -> int:
    return _run(args, osd_remove=mon_pb2.OsdRemove(ids=args.ids))


def cmd_osd_flag(args: argparse.Namespace) -> int:
    return _run(args, osd_set_flag=mon_pb2.OsdSetFlag(flag=args.flag,
                                                      set=args.osd_command == "set"))


# --- pools --------------------------------------------------------------------------------------

def _pool(osdmap: OSDMap, name: str) -> Pool:
    for p in osdmap.pools.values():
        if p.name == name:
            return p
    raise NotFound(f"pool {name!r} does not exist")


def pool_get_json(osdmap: OSDMap, name: str, key: str | None) -> dict[str, Any]:
    p = _pool(osdmap, name)
    rules = osdmap.crush.crush_map.rules
    values = {"size": p.size, "min_size": p.min_size, "pg_num": p.pg_num, "pgp_num": p.pgp_num,
              "crush_rule": rules[p.crush_rule].name if p.crush_rule in rules
              else str(p.crush_rule)}
    chosen = {key: values[key]} if key else values
    return {"pool": p.name, "pool_id": p.id, **chosen}


def cmd_pool_create(args: argparse.Namespace) -> int:
    return _run(args, pool_create=mon_pb2.PoolCreate(
        name=args.name, pg_num=args.pg_num or 0, size=args.size or 0,
        min_size=args.min_size or 0, rule=args.rule or ""))


def cmd_pool_ls(args: argparse.Namespace) -> int:
    with mon_client(args) as client:
        osdmap = client.get_maps(latest=True).osdmap
    pools = [_pool_json(osdmap, p) for _, p in sorted(osdmap.pools.items())]
    if args.detail:
        return _emit(args, pools, lambda ps: "\n".join(_pool_line(p) for p in ps))
    return _emit(args, [p["pool_name"] for p in pools], "\n".join)


def cmd_pool_get(args: argparse.Namespace) -> int:
    with mon_client(args) as client:
        data = pool_get_json(client.get_maps(latest=True).osdmap, args.name, args.key)
    return _emit(args, data, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()
                                                 if k not in ("pool", "pool_id")))


def cmd_pool_set(args: argparse.Namespace) -> int:
    return _run(args, pool_set=mon_pb2.PoolSet(name=args.name, key=args.key, value=args.value))


def cmd_pool_rm(args: argparse.Namespace) -> int:
    if args.again is not None and args.again != args.name:
        args.parser.error(f"the two names differ ({args.name!r}, {args.again!r})")
    if not args.yes_i_really_really_mean_it:
        args.parser.error(f"this destroys pool {args.name!r} and all its data forever; add "
                          f"{CONFIRM} to do it")
    return _run(args, pool_remove=mon_pb2.PoolRemove(name=args.name))


# --- crush (the cluster's map) ------------------------------------------------------------------

def _step_json(m: CrushMap, s: Any) -> dict[str, Any]:
    if s.op == OP_TAKE:
        out: dict[str, Any] = {"op": "take", "item": s.arg1, "item_name": m.item_name(s.arg1)}
        return {**out, "class": s.item_class} if s.item_class else out
    if s.op in CHOOSE_OPS:
        return {"op": CHOOSE_OPS[s.op].replace(" ", "_"), "num": s.arg1,
                "type": m.types.get(s.arg2, str(s.arg2))}
    if s.op in SET_OPS:
        return {"op": SET_OPS[s.op], "num": s.arg1}
    return {"op": "emit" if s.op == OP_EMIT else "noop"}


def crush_json(m: CrushMap) -> dict[str, Any]:
    """`ceph osd crush dump` keys: devices, types, buckets, rules, tunables."""
    return {
        "devices": [{"id": d.id, "name": d.name, "class": d.device_class or ""}
                    for _, d in sorted(m.devices.items())],
        "types": [{"type_id": t, "name": n} for t, n in sorted(m.types.items())],
        "buckets": [{"id": b.id, "name": b.name, "type_id": b.type_id,
                     "type_name": m.types.get(b.type_id, ""), "weight": b.weight,
                     "alg": ALG_NAMES.get(b.alg, str(b.alg)),
                     "hash": "rjenkins1" if b.hash == 0 else str(b.hash),
                     "items": [{"id": it.id, "weight": it.weight, "pos": i}
                               for i, it in enumerate(b.items)]}
                    for _, b in sorted(m.buckets.items(), reverse=True)],
        "rules": [{"rule_id": r.id, "rule_name": r.name, "type": r.type,
                   "type_name": RULE_TYPE_NAMES.get(r.type, str(r.type)),
                   "steps": [_step_json(m, s) for s in r.steps]}
                  for _, r in sorted(m.rules.items())],
        "tunables": dataclasses.asdict(m.tunables),
    }


def cmd_crush_dump(args: argparse.Namespace) -> int:
    with mon_client(args) as client:
        crush = client.get_maps(latest=True).osdmap.crush.crush_map
    if args.format == "text":
        sys.stdout.write(crush_text.format(crush))
        return 0
    return _emit(args, crush_json(crush), str)


def cmd_crush_rule_ls(args: argparse.Namespace) -> int:
    with mon_client(args) as client:
        rules = client.get_maps(latest=True).osdmap.crush.crush_map.rules
    return _emit(args, [r.name for _, r in sorted(rules.items())], "\n".join)


def cmd_crush_rule_create(args: argparse.Namespace) -> int:
    return _run(args, crush_rule_create_replicated=mon_pb2.CrushRuleCreateReplicated(
        name=args.name, root=args.root, failure_domain=args.failure_domain,
        device_class=args.device_class or ""))


def cmd_crush_set(args: argparse.Namespace) -> int:
    crush = load_map(args.input)
    CompiledMap(crush)  # refuse an unmappable map here, with its line number
    return _run(args, crush_set=mon_pb2.CrushSet(crush=crush_wire.to_proto(crush)))


# --- argument parsing ---------------------------------------------------------------------------

def common_options() -> argparse.ArgumentParser:
    """--conf and --timeout, accepted before or after any subcommand (SUPPRESS: a subparser's
    default never overwrites a value given earlier on the line)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-c", "--conf", default=argparse.SUPPRESS, metavar="FILE",
                   help="cluster config (default: $LOLIGO_CONF, else "
                   f"{config_mod.DEFAULT_CONF})")
    p.add_argument("--timeout", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
                   help="give up after this long (default: rpc_timeout from the config)")
    return p


def _format(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", choices=["text", "json", "json-pretty"],
                   default="text", help="output format (default text)")


def _add(sub: Any, name: str, func: Callable[[argparse.Namespace], int], help_: str,
         common: argparse.ArgumentParser, fmt: bool = False) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=help_, parents=[common])
    # the parser's own error(): a usage error (exit 2) whichever module runs as __main__
    p.set_defaults(func=func, parser=p)
    if fmt:
        _format(p)
    return p


def _subparsers(p: argparse.ArgumentParser, dest: str, required: bool = True) -> Any:
    sub = p.add_subparsers(dest=dest, metavar="SUBCOMMAND", parser_class=type(p))
    sub.required = required
    return sub


def register(sub: Any, crush_sub: Any | None = None) -> None:
    """Add status, health, mon, osd and pool to `loligo`, and the cluster-map subcommands to
    `loligo crush` (its subparsers, as returned by crush_cli.register)."""
    common = common_options()
    _add(sub, "status", cmd_status, "cluster health, monitors, OSDs and pools (ceph -s)",
         common, fmt=True)
    p = _add(sub, "health", cmd_health, "HEALTH_OK/WARN/ERR and the checks behind it", common,
             fmt=True)
    p.add_argument("detail", nargs="?", choices=["detail"], help="also say what to do")

    p = _add(sub, "mon", cmd_mon, "`mon stat`; or run a monitor: mon --conf FILE --id NAME",
             common)
    p.add_argument("--id", default=argparse.SUPPRESS, help="run monitor NAME (foreground)")
    msub = _subparsers(p, "mon_command", required=False)
    _add(msub, "stat", cmd_mon_stat, "leader, quorum, term and epoch", common, fmt=True)

    osd = sub.add_parser("osd", help="OSD states, weights and flags; osd tree and dump")
    osub = _subparsers(osd, "osd_command")
    boot = _add(osub, "boot", cmd_osd_boot, "register an OSD at its address (tests, tools)",
                common)
    boot.add_argument("--addr", required=True, help="host:port of the OSD's gRPC endpoint")
    create = _add(osub, "create", cmd_osd_create, "allocate an OSD id for a disk", common)
    for p in (boot, create):
        p.add_argument("--id", type=osd_id, help="wanted id (default: the lowest free one)")
        p.add_argument("--uuid", type=disk_uuid, help="the disk's uuid (default: a new one)")
    boot.add_argument("--host", default=socket.gethostname().split(".")[0],
                      help="CRUSH host bucket (default: this host's name)")
    boot.add_argument("--capacity", type=size, default=0, help="bytes, e.g. 100GiB: the "
                      "CRUSH weight in TiB (default: the minimum, 0.001)")
    for name in ("down", "out", "in"):
        p = _add(osub, name, cmd_osd_mark, f"mark OSDs {name}", common)
        p.add_argument("ids", nargs="+", type=osd_id, metavar="OSD")
    p = _add(osub, "reweight", cmd_osd_reweight, "set an OSD's in/out weight (0..1)", common)
    p.add_argument("osd", type=osd_id, metavar="OSD")
    p.add_argument("weight", type=reweight, metavar="WEIGHT")
    p = _add(osub, "rm", cmd_osd_rm, "remove OSDs that are down and out", common)
    p.add_argument("ids", nargs="+", type=osd_id, metavar="OSD")
    _add(osub, "tree", cmd_osd_show, "the CRUSH hierarchy with states", common, fmt=True)
    _add(osub, "dump", cmd_osd_show, "the OSD map: pools and OSDs", common, fmt=True)
    for name in ("set", "unset"):
        p = _add(osub, name, cmd_osd_flag, f"{name} a cluster flag (noout, noin...)", common)
        p.add_argument("flag")

    pool = sub.add_parser("pool", help="create, list, inspect, change and remove pools")
    psub = _subparsers(pool, "pool_command")
    p = _add(psub, "create", cmd_pool_create, "create a replicated pool", common)
    p.add_argument("name")
    p.add_argument("--pg-num", type=int, help="placement groups (default: the monitors')")
    p.add_argument("--size", type=int, help="replicas (default: the monitors')")
    p.add_argument("--min-size", type=int, help="replicas needed to write (default size-size/2)")
    p.add_argument("--rule", help="CRUSH rule name (default replicated_rule)")
    p = _add(psub, "ls", cmd_pool_ls, "list pools", common, fmt=True)
    p.add_argument("detail", nargs="?", choices=["detail"], help="one line of settings each")
    p = _add(psub, "get", cmd_pool_get, "show a pool's settings", common, fmt=True)
    p.add_argument("name")
    p.add_argument("key", nargs="?", choices=POOL_GET_KEYS)
    p = _add(psub, "set", cmd_pool_set, "change a pool setting", common)
    for arg in ("name", "key", "value"):
        p.add_argument(arg)
    p = _add(psub, "rm", cmd_pool_rm, f"remove a pool and its data (needs {CONFIRM})", common)
    p.add_argument("name")
    p.add_argument("again", nargs="?", metavar="NAME", help="the name again, as in Ceph")
    p.add_argument(CONFIRM, action="store_true")

    if crush_sub is not None:
        register_crush(crush_sub, common)


def register_crush(csub: Any, common: argparse.ArgumentParser) -> None:
    """`loligo crush rule|dump|set`: the cluster's CRUSH map (the offline tools stay as they
    are in crush_cli)."""
    rule = csub.add_parser("rule", help="the cluster's CRUSH rules")
    rsub = _subparsers(rule, "rule_command")
    p = _add(rsub, "create-replicated", cmd_crush_rule_create,
             "add a replicated rule: NAME ROOT FAILURE_DOMAIN [CLASS]", common)
    for arg in ("name", "root", "failure_domain", "device_class"):
        p.add_argument(arg, **({"nargs": "?"} if arg == "device_class" else {}))
    _add(rsub, "ls", cmd_crush_rule_ls, "list rule names", common, fmt=True)
    _add(csub, "dump", cmd_crush_dump, "the cluster's CRUSH map (text: crushtool -d)", common,
         fmt=True)
    p = _add(csub, "set", cmd_crush_set, "replace the cluster's CRUSH map", common)
    p.add_argument("-i", "--input", required=True, type=str, help="map file, text or compiled")


__all__ = ["format_dump", "format_health", "format_mon_stat", "format_status",
           "format_tree", "register"]
