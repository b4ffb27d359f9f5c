"""`loligo df [detail]`: raw space by device class and each pool's stored bytes, objects, use
and what it can still take, laid out as `ceph df` (and its JSON keys with --format json); the
figures come from mgr/space.py, as the dashboard's do."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.cli_common import add_command, common_options, emit, mon_client
from cluster.mon_cli import human_bytes
from mgr.space import df_json

__all__ = ["df_json", "format_df", "register"]


def _table(rows: list[list[str]], left: int = 1) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i < left else c.rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
            for r in rows]


def format_df(data: dict[str, Any]) -> str:
    h = human_bytes
    raw = [["CLASS", "SIZE", "AVAIL", "USED", "RAW USED", "%RAW USED"]]
    for name, s in [*data["stats_by_class"].items(), ("TOTAL", data["stats"])]:
        raw.append([name, h(s["total_bytes"]), h(s["total_avail_bytes"]),
                    h(s["total_used_bytes"]), h(s["total_used_raw_bytes"]),
                    f"{100 * s['total_used_raw_ratio']:.2f}"])
    detail = any("size" in p["stats"] for p in data["pools"])
    head = ["POOL", "ID", "PGS", "STORED", "OBJECTS", "USED", "%USED", "MAX AVAIL"]
    if detail:
        head += ["SIZE", "MISSING", "INCONSISTENT", "PG STATES"]
    pools = [head]
    for p in data["pools"]:
        s = p["stats"]
        row = [p["name"], str(p["id"]), str(p["pgs"]),
               h(s["stored"]), str(s["objects"]), h(s["bytes_used"]),
               f"{100 * s['percent_used']:.2f}", h(s["max_avail"])]
        if detail:
            states = ", ".join(f"{n} {st}" for st, n in s["pg_states"].items())
            row += [f"{s['size']}/{s['min_size']}", str(s["missing_objects"]),
                    str(s["inconsistent_objects"]), states or "-"]
        pools.append(row)
    lines = ["--- RAW STORAGE ---", *_table(raw), "", "--- POOLS ---", *_table(pools)]
    if detail and data.get("file_systems"):
        lines += ["", "--- FILE SYSTEMS (OSDs sharing one count it once) ---"]
        rows = [["FILE SYSTEM", "SIZE", "AVAIL", "OSDS"]]
        for fs in data["file_systems"]:
            osds = ", ".join(f"osd.{o['osd']} ({h(o['used'])} used)" for o in fs["osds"])
            rows.append([fs["fs_id"] or "-", h(fs["size"]), h(fs["avail"]), osds])
        lines += _table(rows, left=1)
    return "\n".join(lines)


def cmd_df(args: argparse.Namespace) -> int:
    with mon_client(args) as client:
        osdmap = client.get_maps(latest=True).osdmap
        pgs = client.status().view.pgs
    data = df_json(osdmap, pgs, detail=args.detail == "detail")
    return emit(args, data, format_df)


def register(sub: Any) -> None:
    p = add_command(sub, "df", cmd_df, "raw space by device class, and each pool's use (ceph df)",
                    common_options(), fmt=True)
    p.add_argument("detail", nargs="?", choices=["detail"],
                   help="also pool replicas and PG states, and the file systems under the OSDs")
