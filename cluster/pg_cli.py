"""`loligo pg ...`: placement groups from the command line.

    loligo pg stat                      one line: PGs by state, objects, usage
    loligo pg dump [--format json]      every PG its primary reported: state, objects, scrubs
    loligo pg scrub|deep-scrub|repair PGID   run it now on the PG's primary and show the result
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import grpc

from cluster.cli_common import add_command as command
from cluster.cli_common import common_options, emit, mon_client, subparsers
from cluster.mon_cli import human_bytes
from rados_py import config as config_mod
from rados_py import rpc
from rados_py.errors import InvalidArgument
from rados_py.osdmap import PgId
from rados_py.proto.loligo import osd_pb2, osd_pb2_grpc
from rados_py.rados import Rados

__all__ = ["register"]

SCRUB_TIMEOUT = 3600.0  # a deep scrub reads every byte of the PG


def _summary(args: argparse.Namespace) -> Any:
    with mon_client(args) as client:
        return client.status().view.pgs


def stat_json(pgs: Any) -> dict[str, Any]:
    return {"pgs_by_state": [{"state_name": s.state, "count": s.count} for s in pgs.by_state],
            "num_pgs": sum(s.count for s in pgs.by_state), "num_objects": pgs.num_objects,
            "data_bytes": pgs.data_bytes, "bytes_used": pgs.used_bytes,
            "bytes_avail": pgs.avail_bytes, "bytes_total": pgs.total_bytes}


def format_stat(data: dict[str, Any]) -> str:
    states = ", ".join(f"{s['count']} {s['state_name']}" for s in data["pgs_by_state"])
    return (f"{data['num_pgs']} pgs: {states or 'none reported'}; {data['num_objects']} "
            f"objects, {human_bytes(data['data_bytes'])} data, "
            f"{human_bytes(data['bytes_used'])} used, {human_bytes(data['bytes_avail'])} / "
            f"{human_bytes(data['bytes_total'])} avail")


def cmd_stat(args: argparse.Namespace) -> int:
    return emit(args, stat_json(_summary(args)), format_stat)


def dump_json(pgs: Any) -> dict[str, Any]:
    return {"pg_stats": [
        {"pgid": s.pgid, "state": s.state, "reported_epoch": s.epoch,
         "num_objects": s.num_objects, "num_bytes": s.num_bytes,
         "num_objects_degraded": s.missing_objects,
         "num_scrub_errors": s.inconsistent_objects, "inconsistent": list(s.inconsistent),
         "last_scrub_stamp": s.last_scrub_stamp,
         "last_deep_scrub_stamp": s.last_deep_scrub_stamp}
        for s in sorted(pgs.pgs, key=lambda s: PgId.parse(s.pgid))]}


def format_dump(data: dict[str, Any]) -> str:
    def stamp(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "never"
    lines = [f"{'PG':<8} {'OBJECTS':>8} {'BYTES':>10} {'DEGRADED':>8}  {'STATE':<32} "
             "LAST_SCRUB           LAST_DEEP_SCRUB"]
    for s in data["pg_stats"]:
        lines.append(f"{s['pgid']:<8} {s['num_objects']:>8} {human_bytes(s['num_bytes']):>10} "
                     f"{s['num_objects_degraded']:>8}  {s['state']:<32} "
                     f"{stamp(s['last_scrub_stamp']):<20} {stamp(s['last_deep_scrub_stamp'])}")
    return "\n".join(lines)


def cmd_dump(args: argparse.Namespace) -> int:
    return emit(args, dump_json(_summary(args)), format_dump)


def scrub_json(reply: osd_pb2.ScrubReply, what: str) -> dict[str, Any]:
    return {"pgid": reply.pgid, "primary": reply.primary, "what": what,
            "objects": reply.objects, "repaired": reply.repaired, "state": reply.state,
            "inconsistent": [{"object": i.oid[2 + int.from_bytes(i.oid[:2], "big"):]
                              .decode(errors="backslashreplace"),
                              "osds": list(i.osds), "auth_osd": i.auth, "why": i.why}
                             for i in reply.inconsistent]}


def format_scrub(data: dict[str, Any]) -> str:
    lines = [f"pg {data['pgid']} on osd.{data['primary']}: {data['what']} of "
             f"{data['objects']} objects: {len(data['inconsistent'])} inconsistent"
             + (f", {data['repaired']} repaired" if data["repaired"] else "")
             + f"; now {data['state']}"]
    lines += [f"  {i['object']}: {i['why']} (good copy on osd.{i['auth_osd']})"
              for i in data["inconsistent"]]
    if data["inconsistent"]:
        lines.append(f"  -> loligo pg repair {data['pgid']}")
    return "\n".join(lines)


def cmd_scrub(args: argparse.Namespace) -> int:
    try:
        pgid = PgId.parse(args.pgid)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{exc} (e.g. 1.1f)") from None
    what = args.pg_command

    async def go() -> osd_pb2.ScrubReply:
        conf = config_mod.load(config_mod.find_conf(getattr(args, "conf", None)),
                               "client.admin")
        async with Rados(conf) as r:
            await r.connect()
            osdmap = r.osdmap
            pool = osdmap.pools.get(pgid.pool)
            if pool is None or pgid.seed >= pool.pg_num:
                raise InvalidArgument(f"no PG {pgid} at osdmap epoch {osdmap.epoch}")
            primary = osdmap.pg_to_up_acting(pgid).acting_primary
            if primary < 0:
                raise InvalidArgument(f"PG {pgid} has no primary up: start its OSDs first")
            channel = rpc.open_channel(osdmap.osds[primary].addr, conf, r._creds)
            try:
                return await osd_pb2_grpc.OsdStub(channel).Scrub(
                    osd_pb2.ScrubRequest(pgid=str(pgid), deep=what != "scrub",
                                         repair=what == "repair"),
                    timeout=getattr(args, "timeout", None) or SCRUB_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                raise rpc.from_grpc_error(exc, f"osd.{primary}") from None
            finally:
                await channel.close()
    return emit(args, scrub_json(asyncio.run(go()), what), format_scrub)


def register(sub: Any) -> None:
    common = common_options()
    pg = sub.add_parser("pg", help="placement groups: stat, dump, scrub, deep-scrub, repair")
    psub = subparsers(pg, "pg_command")
    command(psub, "stat", cmd_stat, "PGs by state, objects and usage in one line", common,
            fmt=True)
    command(psub, "dump", cmd_dump, "every PG as its primary reported it", common, fmt=True)
    for name, what in (("scrub", "compare object lists, sizes, versions and attrs"),
                       ("deep-scrub", "also read and compare all data and omap"),
                       ("repair", "deep-scrub and rewrite bad copies from good ones")):
        p = command(psub, name, cmd_scrub, f"{what} across a PG's replicas, now", common,
                    fmt=True)
        p.add_argument("pgid", metavar="PGID", help="e.g. 1.1f")
