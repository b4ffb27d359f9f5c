"""`loligo fs ...`, `loligo mds ...` and `loligo tell mds.X client ls|evict`: the file system
from the command line, laid out as `ceph fs ...` shows it.

    loligo fs new NAME META_POOL DATA_POOL | ls | status [NAME] | rm NAME --yes-i-really-mean-it
    loligo fs fail NAME | set NAME joinable true|false
    loligo fs mount MOUNTPOINT [--fs NAME] [--foreground] | umount MOUNTPOINT
    loligo mds --conf FILE --id a        run an MDS (foreground)
    loligo mds fail a                    fail an MDS: a standby takes over (a drill)
    loligo tell mds.a client ls | client evict CLIENT_ID
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from cluster.cli_common import add_command as command
from cluster.cli_common import common_options, emit, mon_client, run_command, subparsers
from rados_py import config as config_mod
from rados_py import rpc
from rados_py.errors import InvalidArgument, LoligoError, NotFound
from rados_py.proto.loligo import mds_pb2, mds_pb2_grpc, mon_pb2

__all__ = ["register"]


def _conf(args: argparse.Namespace) -> config_mod.Config:
    return config_mod.load(config_mod.find_conf(getattr(args, "conf", None)), "client.admin")


# --- fs new|ls|rm|fail|set ------------------------------------------------------------------------

def cmd_fs_new(args: argparse.Namespace) -> int:
    return run_command(args, fs_new=mon_pb2.FsNew(name=args.name, metadata_pool=args.meta,
                                                  data_pool=args.data))


def cmd_fs_rm(args: argparse.Namespace) -> int:
    if not args.yes_i_really_mean_it:
        raise InvalidArgument(f"this removes file system {args.name!r} from the map (its pools "
                              "stay): add --yes-i-really-mean-it")
    return run_command(args, fs_remove=mon_pb2.FsRemove(name=args.name))


def cmd_fs_fail(args: argparse.Namespace) -> int:
    return run_command(args, fs_set_joinable=mon_pb2.FsSetJoinable(name=args.name,
                                                                   joinable=False))


def cmd_fs_set(args: argparse.Namespace) -> int:
    if args.key != "joinable":
        raise InvalidArgument(f"cannot set {args.key!r} (settable: joinable)")
    value = args.value.lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise InvalidArgument(f"joinable is true or false, not {args.value!r}")
    return run_command(args, fs_set_joinable=mon_pb2.FsSetJoinable(
        name=args.name, joinable=value in ("true", "1", "yes")))


def cmd_mds_fail(args: argparse.Namespace) -> int:
    return run_command(args, mds_fail=mon_pb2.MdsFail(name=args.name.removeprefix("mds.")))


def cmd_fs_ls(args: argparse.Namespace) -> int:
    with mon_client(args) as client:
        maps = client.get_maps(latest=True)
    pools = {p.id: p.name for p in maps.osdmap.pools.values()}
    data = [{"name": f.name, "metadata_pool": pools.get(f.metadata_pool, f.metadata_pool),
             "metadata_pool_id": f.metadata_pool,
             "data_pools": [pools.get(f.data_pool, f.data_pool)],
             "data_pool_ids": [f.data_pool]} for f in maps.mdsmap.filesystems]
    return emit(args, data, lambda d: "\n".join(
        f"name: {f['name']}, metadata pool: {f['metadata_pool']}, data pools: "
        f"[{' '.join(f['data_pools'])} ]" for f in d) or "No filesystems enabled")


async def _mds_call(conf: config_mod.Config, addr: str, method: str, request: Any,
                    name: str) -> Any:
    from rados_py.rados import Rados

    async with Rados(conf) as rados:
        channel = rpc.open_channel(addr, conf, rados._creds)
        try:
            return await getattr(mds_pb2_grpc.MdsStub(channel), method)(
                request, timeout=conf.rpc_timeout)
        except grpc.aio.AioRpcError as err:
            raise rpc.from_grpc_error(err, name) from None
        finally:
            await channel.close()


def cmd_fs_status(args: argparse.Namespace) -> int:
    conf = _conf(args)
    with mon_client(args) as client:
        maps = client.get_maps(latest=True)
        stats = client.status().view.pgs
    fs = maps.mdsmap.fs(args.name)
    if fs is None:
        raise NotFound(f"no file system {args.name!r}" if args.name else "no file system")
    active = maps.mdsmap.active
    mds: dict[str, Any] = {}
    if active is not None:
        try:
            st = asyncio.run(_mds_call(conf, active.addr, "Status", mds_pb2.MdsStatusRequest(),
                                       f"mds.{active.name}"))
            mds = {"state": st.state, "requests": st.requests, "rate": st.requests_per_sec,
                   "inodes": st.inodes_cached, "dirs": st.dirs_cached,
                   "clients": st.sessions, "journal_events": st.journal_events}
        except LoligoError as exc:
            mds = {"state": f"unreachable ({exc})"}
    pools = {p.id: p.name for p in maps.osdmap.pools.values()}
    per_pool = {}
    for pg in stats.pgs:
        pool = int(pg.pgid.split(".")[0])
        per_pool[pool] = per_pool.get(pool, 0) + pg.num_bytes
    data = {"name": fs.name, "joinable": fs.joinable, "clients": mds.get("clients", 0),
            "mdsmap": [{"rank": 0, "name": active.name, "state": mds.get("state", "active"),
                        "addr": active.addr, "rate": mds.get("rate", 0.0),
                        "inodes": mds.get("inodes", 0), "dirs": mds.get("dirs", 0),
                        "journal_events": mds.get("journal_events", 0)}] if active else [],
            "standbys": [d.name for d in maps.mdsmap.standbys],
            "pools": [{"name": pools.get(p, str(p)), "type": t, "used": per_pool.get(p, 0),
                       "avail": stats.avail_bytes}
                      for p, t in ((fs.metadata_pool, "metadata"), (fs.data_pool, "data"))]}

    def render(d: dict[str, Any]) -> str:
        from cluster.mon_cli import human_bytes

        state = "" if d["joinable"] else " (failed: not joinable; `fs set NAME joinable true`)"
        lines = [f"{d['name']} - {d['clients']} clients{state}", "=" * 8,
                 "RANK  STATE      MDS        ACTIVITY         DNS     INOS   DIRS  JOURNAL"]
        for r in d["mdsmap"]:
            lines.append(f" {r['rank']:<4} {r['state']:<10} {r['name']:<10} "
                         f"Reqs: {r['rate']:>6.1f} /s  {r['inodes']:>7} {r['inodes']:>6} "
                         f"{r['dirs']:>6} {r['journal_events']:>8}")
        if not d["mdsmap"]:
            lines.append(" -    failed     -")
        lines += ["", "      POOL          TYPE      USED    AVAIL"]
        for p in d["pools"]:
            lines.append(f"{p['name']:>14}  {p['type']:<8} {human_bytes(p['used']):>7} "
                         f"{human_bytes(p['avail']):>8}")
        lines += ["", "STANDBY MDS", *(f"    {s}" for s in d["standbys"])]
        return "\n".join(lines)

    return emit(args, data, render)


# --- mds (daemon) ------------------------------------------------------------------------------

def cmd_mds(args: argparse.Namespace) -> int:
    if args.mds_action == "fail":
        if not args.name:
            args.parser.error("mds fail NAME")
        return cmd_mds_fail(args)
    if not getattr(args, "id", None):
        args.parser.error("give `fail NAME`, or `--id NAME` to run an MDS")
    from mds import daemon

    return int(daemon.main(str(config_mod.find_conf(getattr(args, "conf", None))), args.id))


# --- tell mds.X client ls|evict -------------------------------------------------------------------

def _mds_addr(args: argparse.Namespace) -> tuple[str, str]:
    kind, _, ident = args.target.partition(".")
    if kind != "mds" or not ident:
        raise InvalidArgument(f"tell {args.target!r}: name the MDS as mds.NAME")
    with mon_client(args) as client:
        maps = client.get_maps(latest=True)
    info = maps.mdsmap.get(ident)
    if info is None:
        raise NotFound(f"no {args.target} in the MDSMap")
    return info.addr, args.target


def cmd_client_ls(args: argparse.Namespace) -> int:
    addr, name = _mds_addr(args)
    reply = asyncio.run(_mds_call(_conf(args), addr, "ClientList",
                                  mds_pb2.ClientListRequest(), name))
    data = [{"id": c.client, "state": c.state, "inst": c.addr, "num_caps": c.open_files,
             "idle": c.idle, "client_metadata": {"hostname": c.host, "mount_point":
                                                 c.mountpoint, "pid": c.pid}}
            for c in reply.clients]
    return emit(args, data, lambda d: "\n".join(
        f"{c['id']}  {c['state']:<12} {c['client_metadata']['hostname']}:"
        f"{c['client_metadata']['mount_point']}  open files {c['num_caps']}  idle "
        f"{c['idle']:g}s" for c in d) or "no clients")


def cmd_client_evict(args: argparse.Namespace) -> int:
    addr, name = _mds_addr(args)
    asyncio.run(_mds_call(_conf(args), addr, "ClientEvict",
                          mds_pb2.ClientEvictRequest(client=args.client), name))
    print(f"evicted client {args.client}")
    return 0


# --- mount / umount -----------------------------------------------------------------------------

def cmd_mount(args: argparse.Namespace) -> int:
    from mds.client import mount

    mountpoint = Path(args.mountpoint)
    if not mountpoint.is_dir():
        raise InvalidArgument(f"{mountpoint} is not a directory: create it first")
    if mount.is_mounted(mountpoint):
        raise InvalidArgument(f"{mountpoint} is mounted already (loligo fs umount "
                              f"{mountpoint})")
    conf_path = config_mod.find_conf(getattr(args, "conf", None))
    if args.foreground:
        import logging

        conf = config_mod.load(conf_path, "client.admin")
        logging.basicConfig(level=conf.log_level,
                            format="%(asctime)s client %(levelname)s %(name)s: %(message)s")
        asyncio.run(mount.serve(conf, str(mountpoint), args.fs))
        return 0
    conf = config_mod.load(conf_path, "client.admin")
    log_dir = Path(conf.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    where = os.path.realpath(mountpoint).strip("/").replace("/", "_")
    log_file = log_dir / f"client.fuse.{where}.log"
    argv = [sys.executable, "-m", "cluster", "fs", "mount", str(mountpoint), "--foreground",
            "--conf", str(conf_path)] + (["--fs", args.fs] if args.fs else [])
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline = time.monotonic() + args.timeout
    while not mount.is_mounted(mountpoint):
        if proc.poll() is not None:
            tail = log_file.read_text(errors="replace").strip().splitlines()[-3:]
            raise LoligoError(f"the mount process exited ({proc.returncode}): "
                              f"{' | '.join(tail)} (log {log_file})")
        if time.monotonic() > deadline:
            proc.terminate()
            raise LoligoError(f"not mounted within {args.timeout:g} s (log {log_file})")
        time.sleep(0.05)
    print(f"mounted on {mountpoint} (pid {proc.pid}, log {log_file})")
    return 0


def cmd_umount(args: argparse.Namespace) -> int:
    from mds.client import mount

    if not mount.is_mounted(args.mountpoint):
        raise NotFound(f"{args.mountpoint} is not a Loligo mount")
    mount.unmount(args.mountpoint)
    print(f"unmounted {args.mountpoint}")
    return 0


def register(sub: Any, tell_sub: Any) -> None:
    common = common_options()
    fs = sub.add_parser("fs", help="the file system: new, ls, status, rm, fail, mount")
    fsub = subparsers(fs, "fs_command")
    p = command(fsub, "new", cmd_fs_new, "make a file system on two pools", common)
    p.add_argument("name")
    p.add_argument("meta", metavar="META_POOL")
    p.add_argument("data", metavar="DATA_POOL")
    command(fsub, "ls", cmd_fs_ls, "the file systems and their pools", common, fmt=True)
    p = command(fsub, "status", cmd_fs_status, "ranks, standbys, clients, metadata ops/s and "
                "pools (ceph fs status)", common, fmt=True)
    p.add_argument("name", nargs="?")
    p = command(fsub, "rm", cmd_fs_rm, "remove a failed file system from the map", common)
    p.add_argument("name")
    p.add_argument("--yes-i-really-mean-it", action="store_true")
    p = command(fsub, "fail", cmd_fs_fail, "take the file system down: its MDS stands by, "
                "none takes over (a drill; `fs set NAME joinable true` brings it back)", common)
    p.add_argument("name")
    p = command(fsub, "set", cmd_fs_set, "set joinable true|false", common)
    p.add_argument("name")
    p.add_argument("key")
    p.add_argument("value")
    p = command(fsub, "mount", cmd_mount, "mount the file system through FUSE", common)
    p.add_argument("mountpoint")
    p.add_argument("--fs", help="file system name (default: the only one)")
    p.add_argument("--foreground", action="store_true", help="serve in this process")
    p.set_defaults(timeout=30.0)
    p = command(fsub, "umount", cmd_umount, "unmount (also after the client was killed)",
                common)
    p.add_argument("mountpoint")

    p = command(sub, "mds", cmd_mds, "`mds fail NAME`; or run an MDS: mds --conf FILE --id NAME",
                common)
    p.add_argument("mds_action", nargs="?", choices=["fail"], metavar="fail")
    p.add_argument("name", nargs="?")
    p.add_argument("--id", default=argparse.SUPPRESS, help="run MDS NAME (foreground)")

    client = tell_sub.add_parser("client", help="MDS client sessions: ls, evict")
    csub = subparsers(client, "client_command")
    command(csub, "ls", cmd_client_ls, "the client sessions of the MDS", common, fmt=True)
    p = command(csub, "evict", cmd_client_evict, "end a client's session: its open files and "
                "locks are released and it is refused from then on", common)
    p.add_argument("client")
