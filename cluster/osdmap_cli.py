"""`loligo osd|pool` and the cluster half of `loligo crush` (rule, dump, set): the OSDMap and
its CRUSH map from the command line, laid out as `ceph osd tree|dump`, `ceph osd pool` and
`ceph osd crush` show them.
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import sys
import uuid
from typing import Any

from cluster.cli_common import (
    add_command as command,
)
from cluster.cli_common import (
    common_options,
    emit,
    mon_client,
    run_command,
    subparsers,
)
from cluster.crush_cli import load_map
from rados_py import config as config_mod
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
from rados_py.errors import NoSuchPool
from rados_py.osdmap import OSDMap, Pool
from rados_py.proto.loligo import mon_pb2

WEIGHT_ONE = 0x10000
POOL_GET_KEYS = ("size", "min_size", "pg_num", "pgp_num", "crush_rule")
CONFIRM = "--yes-i-really-really-mean-it"


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
        if args.osd_command == "df":
            usage = client.status().view.pgs.osd_usage
            return emit(args, df_json(osdmap, usage), format_df)
    if args.osd_command == "tree":
        return emit(args, tree_json(osdmap), format_tree)
    return emit(args, dump_json(osdmap), format_dump)


def df_json(osdmap: OSDMap, usage: Any) -> dict[str, Any]:
    """`ceph osd df --format json` keys: each OSD's weights, space (as it last reported) and
    how many PGs it is acting for."""
    pgs: dict[int, int] = {}
    for pool in osdmap.pools.values():
        for placement in osdmap.map_pool(pool.id):
            for osd in placement.acting:
                pgs[osd] = pgs.get(osd, 0) + 1
    weights = {it.id: it.weight for b in osdmap.crush.crush_map.buckets.values()
               for it in b.items}
    nodes = []
    for osd, state in sorted(osdmap.osds.items()):
        u = usage.get(osd)
        total = u.total_bytes if u else 0
        nodes.append({"id": osd, "name": f"osd.{osd}", "crush_weight": _w(weights.get(osd, 0)),
                      "reweight": _w(state.weight), "kb": total // 1024,
                      "kb_used": (u.used_bytes if u else 0) // 1024,
                      "kb_avail": (u.avail_bytes if u else 0) // 1024,
                      "utilization": 100.0 * u.used_bytes / total if u and total else 0.0,
                      "pgs": pgs.get(osd, 0), "status": "up" if state.up else "down"})
    return {"nodes": nodes}


def format_df(data: dict[str, Any]) -> str:
    from cluster.mon_cli import human_bytes

    rows = [["ID", "WEIGHT", "REWEIGHT", "SIZE", "USE", "AVAIL", "%USE", "PGS", "STATUS"]]
    for n in data["nodes"]:
        rows.append([str(n["id"]), f"{n['crush_weight']:.5f}", f"{n['reweight']:.5f}",
                     human_bytes(n["kb"] * 1024), human_bytes(n["kb_used"] * 1024),
                     human_bytes(n["kb_avail"] * 1024), f"{n['utilization']:.2f}",
                     str(n["pgs"]), n["status"]])
    return _table(rows, right={0, 1, 2, 3, 4, 5, 6, 7})


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
    return run_command(args, osd_boot=_boot(args))


def cmd_osd_run(args: argparse.Namespace) -> int:
    """`loligo osd run --id N`: the OSD daemon, in the foreground."""
    from osd import daemon  # the daemon and its dependencies only when running one

    return int(daemon.main(str(config_mod.find_conf(getattr(args, "conf", None))), args.id))


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
    return run_command(args, osd_mark=mon_pb2.OsdMark(ids=args.ids, state=state))


def cmd_osd_reweight(args: argparse.Namespace) -> int:
    return run_command(args, osd_reweight=mon_pb2.OsdReweight(id=args.osd, weight=args.weight))


def cmd_osd_rm(args: argparse.Namespace) -> int:
    return run_command(args, osd_remove=mon_pb2.OsdRemove(ids=args.ids))


def cmd_osd_flag(args: argparse.Namespace) -> int:
    return run_command(args, osd_set_flag=mon_pb2.OsdSetFlag(flag=args.flag,
                                                      set=args.osd_command == "set"))


# --- pools --------------------------------------------------------------------------------------

def _pool(osdmap: OSDMap, name: str) -> Pool:
    for p in osdmap.pools.values():
        if p.name == name:
            return p
    raise NoSuchPool(name)


def pool_get_json(osdmap: OSDMap, name: str, key: str | None) -> dict[str, Any]:
    p = _pool(osdmap, name)
    rules = osdmap.crush.crush_map.rules
    values = {"size": p.size, "min_size": p.min_size, "pg_num": p.pg_num, "pgp_num": p.pgp_num,
              "crush_rule": rules[p.crush_rule].name if p.crush_rule in rules
              else str(p.crush_rule)}
    chosen = {key: values[key]} if key else values
    return {"pool": p.name, "pool_id": p.id, **chosen}


def cmd_pool_create(args: argparse.Namespace) -> int:
    return run_command(args, pool_create=mon_pb2.PoolCreate(
        name=args.name, pg_num=args.pg_num or 0, size=args.size or 0,
        min_size=args.min_size or 0, rule=args.rule or ""))


def cmd_pool_ls(args: argparse.Namespace) -> int:
    with mon_client(args) as client:
        osdmap = client.get_maps(latest=True).osdmap
    pools = [_pool_json(osdmap, p) for _, p in sorted(osdmap.pools.items())]
    if args.detail:
        return emit(args, pools, lambda ps: "\n".join(_pool_line(p) for p in ps))
    return emit(args, [p["pool_name"] for p in pools], "\n".join)


def cmd_pool_get(args: argparse.Namespace) -> int:
    with mon_client(args) as client:
        data = pool_get_json(client.get_maps(latest=True).osdmap, args.name, args.key)
    return emit(args, data, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()
                                                 if k not in ("pool", "pool_id")))


def cmd_pool_set(args: argparse.Namespace) -> int:
    return run_command(args, pool_set=mon_pb2.PoolSet(name=args.name, key=args.key,
                                                      value=args.value))


def cmd_pool_rm(args: argparse.Namespace) -> int:
    if args.again is not None and args.again != args.name:
        args.parser.error(f"the two names differ ({args.name!r}, {args.again!r})")
    if not args.yes_i_really_really_mean_it:
        args.parser.error(f"this destroys pool {args.name!r} and all its data forever; add "
                          f"{CONFIRM} to do it")
    return run_command(args, pool_remove=mon_pb2.PoolRemove(name=args.name))


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
    return emit(args, crush_json(crush), str)


def cmd_crush_rule_ls(args: argparse.Namespace) -> int:
    with mon_client(args) as client:
        rules = client.get_maps(latest=True).osdmap.crush.crush_map.rules
    return emit(args, [r.name for _, r in sorted(rules.items())], "\n".join)


def cmd_crush_rule_create(args: argparse.Namespace) -> int:
    return run_command(args, crush_rule_create_replicated=mon_pb2.CrushRuleCreateReplicated(
        name=args.name, root=args.root, failure_domain=args.failure_domain,
        device_class=args.device_class or ""))


def cmd_crush_set(args: argparse.Namespace) -> int:
    crush = load_map(args.input)
    CompiledMap(crush)  # refuse an unmappable map here, with its line number
    return run_command(args, crush_set=mon_pb2.CrushSet(crush=crush_wire.to_proto(crush)))


# --- argument parsing ---------------------------------------------------------------------------

def register(sub: Any, crush_sub: Any | None = None) -> None:
    """Add osd and pool to `loligo`, and rule/dump/set to `loligo crush` (its subparsers, as
    returned by crush_cli.register)."""
    common = common_options()
    osd = sub.add_parser("osd", help="OSD states, weights and flags; osd tree and dump")
    osub = subparsers(osd, "osd_command")
    boot = command(osub, "boot", cmd_osd_boot, "register an OSD at its address (tests, tools)",
                common)
    boot.add_argument("--addr", required=True, help="host:port of the OSD's gRPC endpoint")
    create = command(osub, "create", cmd_osd_create, "allocate an OSD id for a disk", common)
    for p in (boot, create):
        p.add_argument("--id", type=osd_id, help="wanted id (default: the lowest free one)")
        p.add_argument("--uuid", type=disk_uuid, help="the disk's uuid (default: a new one)")
    boot.add_argument("--host", default=socket.gethostname().split(".")[0],
                      help="CRUSH host bucket (default: this host's name)")
    boot.add_argument("--capacity", type=size, default=0, help="bytes, e.g. 100GiB: the "
                      "CRUSH weight in TiB (default: the minimum, 0.001)")
    for name in ("down", "out", "in"):
        p = command(osub, name, cmd_osd_mark, f"mark OSDs {name}", common)
        p.add_argument("ids", nargs="+", type=osd_id, metavar="OSD")
    p = command(osub, "reweight", cmd_osd_reweight, "set an OSD's in/out weight (0..1)", common)
    p.add_argument("osd", type=osd_id, metavar="OSD")
    p.add_argument("weight", type=reweight, metavar="WEIGHT")
    p = command(osub, "rm", cmd_osd_rm, "remove OSDs that are down and out", common)
    p.add_argument("ids", nargs="+", type=osd_id, metavar="OSD")
    p = command(osub, "run", cmd_osd_run, "run an OSD daemon: osd run --conf FILE --id N",
                common)
    p.add_argument("--id", type=osd_id, required=True, help="the OSD's id")
    command(osub, "tree", cmd_osd_show, "the CRUSH hierarchy with states", common, fmt=True)
    command(osub, "dump", cmd_osd_show, "the OSD map: pools and OSDs", common, fmt=True)
    command(osub, "df", cmd_osd_show, "each OSD's space and PG count", common, fmt=True)
    for name in ("set", "unset"):
        p = command(osub, name, cmd_osd_flag, f"{name} a cluster flag (noout, noin...)", common)
        p.add_argument("flag")

    pool = sub.add_parser("pool", help="create, list, inspect, change and remove pools")
    psub = subparsers(pool, "pool_command")
    p = command(psub, "create", cmd_pool_create, "create a replicated pool", common)
    p.add_argument("name")
    p.add_argument("--pg-num", type=int, help="placement groups (default: the monitors')")
    p.add_argument("--size", type=int, help="replicas (default: the monitors')")
    p.add_argument("--min-size", type=int, help="replicas needed to write (default size-size/2)")
    p.add_argument("--rule", help="CRUSH rule name (default replicated_rule)")
    p = command(psub, "ls", cmd_pool_ls, "list pools", common, fmt=True)
    p.add_argument("detail", nargs="?", choices=["detail"], help="one line of settings each")
    p = command(psub, "get", cmd_pool_get, "show a pool's settings", common, fmt=True)
    p.add_argument("name")
    p.add_argument("key", nargs="?", choices=POOL_GET_KEYS)
    p = command(psub, "set", cmd_pool_set, "change a pool setting", common)
    for arg in ("name", "key", "value"):
        p.add_argument(arg)
    p = command(psub, "rm", cmd_pool_rm, f"remove a pool and its data (needs {CONFIRM})", common)
    p.add_argument("name")
    p.add_argument("again", nargs="?", metavar="NAME", help="the name again, as in Ceph")
    p.add_argument(CONFIRM, action="store_true")

    if crush_sub is not None:
        register_crush(crush_sub, common)


def register_crush(csub: Any, common: argparse.ArgumentParser) -> None:
    """`loligo crush rule|dump|set`: the cluster's CRUSH map (the offline tools stay as they
    are in crush_cli)."""
    rule = csub.add_parser("rule", help="the cluster's CRUSH rules")
    rsub = subparsers(rule, "rule_command")
    p = command(rsub, "create-replicated", cmd_crush_rule_create,
             "add a replicated rule: NAME ROOT FAILURE_DOMAIN [CLASS]", common)
    for arg in ("name", "root", "failure_domain", "device_class"):
        p.add_argument(arg, **({"nargs": "?"} if arg == "device_class" else {}))
    command(rsub, "ls", cmd_crush_rule_ls, "list rule names", common, fmt=True)
    command(csub, "dump", cmd_crush_dump, "the cluster's CRUSH map (text: crushtool -d)", common,
         fmt=True)
    p = command(csub, "set", cmd_crush_set, "replace the cluster's CRUSH map", common)
    p.add_argument("-i", "--input", required=True, type=str, help="map file, text or compiled")


__all__ = ["df_json", "dump_json", "format_df", "format_dump", "format_tree", "pool_get_json",
           "register", "tree_json"]
