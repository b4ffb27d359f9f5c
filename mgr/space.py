"""Space as `ceph df` reckons it, from the maps and the PG summary: raw space by device class
(each file system counted once however many OSDs share it), and each pool's stored bytes,
objects, use and MAX AVAIL -- what can still be written to it before the first OSD it maps to
fills: its replicas land on the OSDs in proportion to the PGs each holds, so the fullest OSD
for its share, or the fullest file system where OSDs share one, sets the limit.

Pure functions: `loligo df` and the dashboard show the same figures.
"""

from __future__ import annotations

from typing import Any

from mon.pg_stats import raw_space
from rados_py.osdmap import OSDMap, PgId
from rados_py.proto.loligo import mon_pb2

__all__ = ["df_json", "max_avail"]


def _class_of(osdmap: OSDMap, osd: int) -> str:
    dev = osdmap.crush.crush_map.devices.get(osd)
    return (dev.device_class if dev else "") or "-"


def _raw(usages: list[mon_pb2.OsdUsage]) -> dict[str, Any]:
    used, avail, total = raw_space(usages)
    return {"total_bytes": total, "total_avail_bytes": avail, "total_used_bytes": used,
            "total_used_raw_bytes": used,
            "total_used_raw_ratio": round(used / total, 6) if total else 0.0}


def max_avail(osdmap: OSDMap, pool_id: int, usage: dict[int, mon_pb2.OsdUsage]) -> int:
    """Bytes that can still be stored (one copy) in the pool before an OSD or disk fills."""
    pool = osdmap.pools[pool_id]
    copies: dict[int, int] = {}
    for placement in osdmap.map_pool(pool_id):
        for osd in placement.acting:
            if osd >= 0:
                copies[osd] = copies.get(osd, 0) + 1
    placed = sum(copies.values())
    if not placed:
        return 0
    limits = []
    per_fs: dict[str, list[float]] = {}  # fs id -> [share, fs avail]
    for osd, n in copies.items():
        u = usage.get(osd)
        if u is None:
            continue
        share = n / placed
        limits.append(u.avail_bytes / share)
        if u.fs_id:
            fs = per_fs.setdefault(u.fs_id, [0.0, u.fs_avail_bytes])
            fs[0] += share
    limits += [avail / share for share, avail in per_fs.values() if share]
    return int(min(limits) / pool.size) if limits else 0


def df_json(osdmap: OSDMap, pgs: mon_pb2.PgSummary, detail: bool = False) -> dict[str, Any]:
    """`ceph df --format json` keys: stats, stats_by_class, pools[] with stats."""
    usage = {osd: u for osd, u in pgs.osd_usage.items() if osd in osdmap.osds}
    classes: dict[str, list[mon_pb2.OsdUsage]] = {}
    for osd, u in usage.items():
        classes.setdefault(_class_of(osdmap, osd), []).append(u)
    stats = _raw(list(usage.values()))
    stats["num_osds"] = len(osdmap.osds)
    by_pool: dict[int, list[mon_pb2.PgStat]] = {}
    for stat in pgs.pgs:
        by_pool.setdefault(PgId.parse(stat.pgid).pool, []).append(stat)
    pools = []
    for pool_id, pool in sorted(osdmap.pools.items()):
        mine = by_pool.get(pool_id, [])
        stored = sum(s.num_bytes for s in mine)
        objects = sum(s.num_objects for s in mine)
        used = stored * pool.size
        room = max_avail(osdmap, pool_id, usage)
        entry: dict[str, Any] = {
            "name": pool.name, "id": pool_id, "pgs": pool.pg_num,
            "stats": {"stored": stored, "objects": objects, "kb_used": -(-used // 1024),
                      "bytes_used": used,
                      "percent_used": round(used / (used + room * pool.size), 6)
                      if used else 0.0,
                      "max_avail": room}}
        if detail:
            states: dict[str, int] = {}
            for s in mine:
                states[s.state] = states.get(s.state, 0) + 1
            entry["stats"].update(
                size=pool.size, min_size=pool.min_size, pgs_reported=len(mine),
                missing_objects=sum(s.missing_objects for s in mine),
                inconsistent_objects=sum(s.inconsistent_objects for s in mine),
                pg_states=dict(sorted(states.items())))
        pools.append(entry)
    out: dict[str, Any] = {"stats": stats,
                           "stats_by_class": {c: _raw(u) for c, u in sorted(classes.items())},
                           "pools": pools}
    if detail:
        disks: dict[str, dict[str, Any]] = {}
        for osd, u in sorted(usage.items()):
            d = disks.setdefault(u.fs_id or f"osd.{osd}", {
                "fs_id": u.fs_id, "size": u.fs_total_bytes, "avail": u.fs_avail_bytes,
                "osds": []})
            d["osds"].append({"osd": osd, "size": u.total_bytes, "used": u.used_bytes,
                              "avail": u.avail_bytes})
        out["file_systems"] = list(disks.values())
    return out


