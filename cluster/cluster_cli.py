"""`loligo cluster up|down|info|kill|start|restart`: the local cluster from the command line.

    loligo cluster up [--dir DIR] [--mons 1|3|5] [--base-port P]   create (or restart) and start
    loligo cluster info [--format json]                            endpoints and credentials
    loligo cluster down                                            TERM, then KILL after a grace
    loligo cluster kill|start|restart mon.a                        fault drills

Every subcommand but `up` finds the cluster from `--dir DIR` (its loligo.toml), else
`--conf FILE`, else $LOLIGO_CONF, else the default local cluster.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from cluster import launcher
from rados_py import config as config_mod
from rados_py.errors import NotFound


def _cluster(args: argparse.Namespace) -> launcher.LocalCluster:
    conf = (Path(args.dir).expanduser() / launcher.CONF_NAME if getattr(args, "dir", None)
            else config_mod.find_conf(getattr(args, "conf", None)))
    if not conf.exists():
        raise NotFound(f"no cluster at {conf}: start one with `loligo cluster up`"
                       + ("" if getattr(args, "dir", None) else
                          " (or give --dir DIR, --conf FILE or set LOLIGO_CONF)"))
    return launcher.LocalCluster(conf)


def format_info(info: dict[str, Any], leader: str = "") -> str:
    """The endpoints and credentials, readable (`cluster up` and `cluster info`)."""
    lines = []
    daemons = [(f"mon.{m['name']}", m, m["name"] == leader) for m in info["mons"]]
    daemons += [(f"osd.{o['id']}", o, False) for o in info.get("osds", ())]
    daemons += [(f"mds.{m['name']}", m, False) for m in info.get("mdss", ())]
    width = max((len(label) for label, _, _ in daemons), default=5)
    for label, d, is_leader in daemons:
        state = f"pid {d['pid']}" if d["running"] else "not running"
        mark = "  (leader)" if is_leader else ""
        lines.append(f"  {label:<{width}}  {d['addr']:<21} {state}{mark}")
    conf = info["conf"]
    lines += ["", f"  config:   {conf}", f"  keyring:  {info['keyring']}  (as {info['entity']})",
              f"  logs:     {info['log_dir']}"]
    gw = info.get("gateway")
    if gw:
        state = f"pid {gw['pid']}" if gw["running"] else "not running"
        lines.append(f"  S3:       {gw['url']}  ({gw['name']}, {state}, log {gw['log']})")
        for key in (gw.get("user") or {}).get("keys", [])[:1]:
            lines.append(f"            user {key['user']}: access key {key['access_key']}  "
                         f"secret key {key['secret_key']}")
        for key in (gw.get("user") or {}).get("swift_keys", [])[:1]:
            lines.append(f"  Swift:    {gw['url']}/auth/v1.0  user {key['user']}  "
                         f"key {key['secret_key']}")
    dash = info.get("dashboard")
    if dash:
        state = f"pid {dash['pid']}" if dash["running"] else "not running"
        lines.append(f"  Dashboard: {dash['url']}  ({dash['name']}, {state}; read-only, sign "
                     "in with client.admin's key from the keyring to act)")
    default = config_mod.DEFAULT_CONF.expanduser().absolute()
    lines += ["", "Use it from this shell with:", f"  export LOLIGO_CONF={conf}"]
    if Path(conf) == default:
        lines.append("  (the default cluster: loligo finds it even without LOLIGO_CONF)")
    lines.append("then e.g. `loligo status`; stop it with `loligo cluster down`.")
    return "\n".join(lines)


def cmd_up(args: argparse.Namespace) -> int:
    directory = (Path(args.dir) if getattr(args, "dir", None)
                 else config_mod.DEFAULT_CONF.expanduser().parent)
    cluster = launcher.up(directory, args.mons, args.base_port, timeout=args.timeout,
                          osds=args.osds)
    info = cluster.info()
    print(f"\nLoligo cluster {info['fsid']} is up:")
    print(format_info(info, cluster.leader))
    env = os.environ.get(config_mod.ENV_CONF)
    if env and Path(env).expanduser().absolute() != cluster.conf:
        print(f"note: LOLIGO_CONF is set to {env} in this shell; loligo commands go there "
              "until you export the line above")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    info = _cluster(args).info()
    if args.format == "json":
        print(json.dumps(info, indent=2))
    else:
        running = sum(m["running"] for m in info["mons"])
        osds = info.get("osds", [])
        print(f"Loligo cluster {info['fsid']}: {running}/{len(info['mons'])} monitors, "
              f"{sum(o['running'] for o in osds)}/{len(osds)} OSDs running")
        print(format_info(info))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    if not cluster.stop(grace=args.grace):
        print(f"no daemon of the cluster in {cluster.conf.parent} is running")
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    _cluster(args).kill(args.name)
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    cluster.start([args.name], timeout=args.timeout)
    print(f"{args.name} is running")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    if cluster.pid(cluster.daemon(args.name)) is not None:
        cluster.stop([args.name], grace=args.grace)
    cluster.start([args.name], timeout=args.timeout)
    print(f"{args.name} is running")
    return 0


def cmd_add_osd(args: argparse.Namespace) -> int:
    daemon = _cluster(args).add_osd(timeout=args.timeout)
    print(f"{daemon.name} is running at {daemon.addr}; CRUSH moves its share of PGs to it "
          "(backfill progress: loligo status)")
    return 0


def register(sub: Any) -> None:
    cluster = sub.add_parser("cluster", help="the local cluster: up, down, info, fault drills",
                             description=__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = cluster.add_subparsers(dest="cluster_command", metavar="SUBCOMMAND",
                                  parser_class=type(cluster))
    csub.required = True

    # SUPPRESS: a subcommand's default never overwrites `loligo --conf F cluster info`
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--dir", default=argparse.SUPPRESS,
                       help="the cluster directory (its loligo.toml)")
    where.add_argument("-c", "--conf", metavar="FILE", default=argparse.SUPPRESS,
                       help="the cluster's config file")

    def add(name: str, func: Any, help_: str, *, parents: tuple = (where,)) -> Any:
        p = csub.add_parser(name, help=help_, description=help_, parents=list(parents))
        p.set_defaults(func=func)
        return p

    p = add("up", cmd_up, "create (or restart) the local cluster and start its daemons",
            parents=())
    p.add_argument("--dir", default=argparse.SUPPRESS, help="cluster directory (default "
                   f"{config_mod.DEFAULT_CONF.parent})")
    p.add_argument("--mons", type=int, choices=launcher.MON_COUNTS,
                   help="monitors (default 3; a restarted cluster keeps its count)")
    p.add_argument("--osds", type=int, metavar="N",
                   help=f"OSDs of a new cluster (default {launcher.DEFAULT_OSDS})")
    p.add_argument("--base-port", type=int, metavar="P",
                   help=f"first port to try for the monitors (default {launcher.MON_BASE_PORT})")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for a quorum (default 60)")
    p = add("info", cmd_info, "endpoints and credentials of the cluster")
    p.add_argument("-f", "--format", choices=["text", "json"], default="text")
    p = add("down", cmd_down, "stop every daemon: TERM, then KILL after --grace")
    p.add_argument("--grace", type=float, default=10.0, help="seconds (default 10)")
    p = add("add-osd", cmd_add_osd, "add one OSD to the running cluster and start it")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait until it answers (default 60)")
    p = add("kill", cmd_kill, "SIGKILL one daemon (a crash), e.g. mon.a")
    p.add_argument("name")
    for name, func, what in (("start", cmd_start, "start one stopped daemon, e.g. mon.a"),
                             ("restart", cmd_restart, "stop (TERM) and start one daemon")):
        p = add(name, func, what)
        p.add_argument("name")
        p.add_argument("--timeout", type=float, default=60.0,
                       help="seconds to wait until it answers (default 60)")
        p.add_argument("--grace", type=float, default=10.0,
                       help="seconds between TERM and KILL (default 10)")
