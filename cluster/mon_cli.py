"""`loligo status|health|mon`: what the monitors say about the cluster, with Ceph's words,
layouts and JSON keys so that an operator's habits and scripts written for `ceph` carry over.
Output is rendered from the same dict that `--format json` prints, so the two never disagree.
`loligo mon --conf FILE --id NAME` runs a monitor daemon in the foreground.
"""

from __future__ import annotations

import argparse
from typing import Any

from cluster.cli_common import add_command as command
from cluster.cli_common import common_options, emit, mon_client, subparsers
from mgr.state import checks_json
from rados_py import config as config_mod
from rados_py.errors import LoligoError
from rados_py.monclient import ClusterStatus, Maps, MonClientSync

SEVERITY = {"HEALTH_WARN": "WRN", "HEALTH_ERR": "ERR"}


def _maps_or_none(client: MonClientSync, st: ClusterStatus) -> Maps | None:
    """The maps, at least as new as the status, if a monitor gives them quickly: status must
    describe a sick cluster too."""
    epoch = max(s.osdmap_epoch for s in st.answered.values())
    try:
        return client.get_maps(epoch, timeout=min(client.client.config.rpc_timeout, 3.0))
    except LoligoError:  # only means "maps unknown" here
        return None


# --- status, health, mon stat -------------------------------------------------------------------

def health_json(st: ClusterStatus) -> dict[str, Any]:
    checks = checks_json(st)
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
    pgs = st.view.pgs
    out["pgmap"] = {
        "pgs_by_state": [{"state_name": s.state, "count": s.count} for s in pgs.by_state],
        "num_pools": len(osdmap.pools), "num_pgs": sum(p.pg_num for p in osdmap.pools.values()),
        "num_objects": pgs.num_objects, "data_bytes": pgs.data_bytes,
        "bytes_used": pgs.used_bytes, "bytes_avail": pgs.avail_bytes,
        "bytes_total": pgs.total_bytes,
        "degraded_objects": max(pgs.degraded_objects, pgs.missing_objects),
        "degraded_total": max(pgs.total_copies, pgs.degraded_objects, pgs.missing_objects),
        "degraded_ratio": (round(max(pgs.degraded_objects, pgs.missing_objects)
                                 / max(pgs.total_copies, pgs.degraded_objects,
                                       pgs.missing_objects), 6)
                           if pgs.degraded_objects or pgs.missing_objects else 0.0),
        "missing_objects": pgs.missing_objects, "missing_bytes": pgs.missing_bytes,
        "recovering_objects_per_sec": round(pgs.recovery_objects_per_sec, 1),
        "recovering_bytes_per_sec": round(pgs.recovery_bytes_per_sec)}
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
    if pgs["bytes_total"]:
        lines += [f"    objects: {pgs['num_objects']} objects, {human_bytes(pgs['data_bytes'])}",
                  f"    usage:   {human_bytes(pgs['bytes_used'])} used, "
                  f"{human_bytes(pgs['bytes_avail'])} / {human_bytes(pgs['bytes_total'])} avail"]
    if pgs["pgs_by_state"]:
        rows = [f"{s['count']} {s['state_name']}" for s in pgs["pgs_by_state"]]
        if pgs["degraded_objects"]:  # first, as `ceph -s` shows it
            rows.insert(0, f"{pgs['degraded_objects']}/{pgs['degraded_total']} objects "
                           f"degraded ({100 * pgs['degraded_ratio']:.3f}%)")
        lines.append("    pgs:     " + "\n             ".join(rows))
    elif pgs["num_pgs"]:
        lines.append(f"    pgs:     {pgs['num_pgs']} unknown (no OSD has reported PG states yet)")
    if pgs["missing_objects"]:
        left = f" (~{human_bytes(pgs['missing_bytes'])})" if pgs["missing_bytes"] else ""
        lines += ["", "  progress:", f"    recovery: {pgs['missing_objects']} object copies"
                  f"{left} left" + _rate(pgs)]
    return "\n".join(lines) + "\n"


def _rate(pgs: dict[str, Any]) -> str:
    per_sec = pgs["recovering_objects_per_sec"]
    if per_sec <= 0:
        return ""
    eta = pgs["missing_objects"] / per_sec
    if pgs["missing_bytes"] and pgs["recovering_bytes_per_sec"] > 0:
        eta = max(eta, pgs["missing_bytes"] / pgs["recovering_bytes_per_sec"])
    return (f", {human_bytes(pgs['recovering_bytes_per_sec'])}/s, {per_sec:g} objects/s, "
            f"ETA {eta:.0f}s")


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB', as `ceph -s` prints sizes."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


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
    if getattr(args, "watch", False):
        from cluster import watch_cli

        return watch_cli.cmd_watch(args)
    with mon_client(args) as client:
        st = client.status()
        # without a leader a monitor's maps may be stale: show none rather than old ones
        maps = _maps_or_none(client, st) if st.from_leader else None
        addrs = {m.name: m.addr for m in client.client.config.mon_host}
    return emit(args, status_json(st, maps, addrs), format_status)


def cmd_health(args: argparse.Namespace) -> int:
    with mon_client(args) as client:
        st = client.status()
    data = health_json(st)
    return emit(args, data, lambda d: format_health(d, args.detail == "detail"))


def cmd_mon_stat(args: argparse.Namespace) -> int:
    with mon_client(args) as client:
        st = client.status()
        maps = _maps_or_none(client, st)
        addrs = {m.name: m.addr for m in client.client.config.mon_host}
    return emit(args, mon_stat_json(st, maps, addrs), format_mon_stat)


def cmd_mon(args: argparse.Namespace) -> int:
    """`loligo mon --id NAME`: the monitor daemon, in the foreground."""
    if args.mon_command == "stat":
        return cmd_mon_stat(args)
    if not getattr(args, "id", None):
        args.parser.error("give `stat`, or `--id NAME` to run a monitor")
    from mon import daemon  # the daemon and its dependencies only when running one

    return int(daemon.main(str(config_mod.find_conf(getattr(args, "conf", None))), args.id))


def register(sub: Any) -> None:
    """Add status, health and mon to `loligo`."""
    common = common_options()
    p = command(sub, "status", cmd_status, "cluster health, monitors, OSDs and pools (ceph -s)",
                common, fmt=True)
    p.add_argument("-w", "--watch", action="store_true", default=argparse.SUPPRESS,
                   help="then print cluster events as they happen until Ctrl-C (ceph -w)")
    p.add_argument("--watch-for", type=float, metavar="SECONDS", default=argparse.SUPPRESS,
                   help="with --watch: stop after this long")
    p = command(sub, "health", cmd_health, "HEALTH_OK/WARN/ERR and the checks behind it", common,
             fmt=True)
    p.add_argument("detail", nargs="?", choices=["detail"], help="also say what to do")

    p = command(sub, "mon", cmd_mon, "`mon stat`; or run a monitor: mon --conf FILE --id NAME",
             common)
    p.add_argument("--id", default=argparse.SUPPRESS, help="run monitor NAME (foreground)")
    msub = subparsers(p, "mon_command", required=False)
    command(msub, "stat", cmd_mon_stat, "leader, quorum, term and epoch", common, fmt=True)


__all__ = ["format_health", "format_mon_stat", "format_status", "register"]
