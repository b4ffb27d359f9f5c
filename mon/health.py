"""Health: named checks, each saying what is wrong and what to do (Ceph's codes where they exist).

Pure functions of the maps and of which monitors the leader hears from, so every check is unit
tested without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from rados_py.monmap import MonMap
from rados_py.osdmap import OSDMap

HEALTH_OK, HEALTH_WARN, HEALTH_ERR = "HEALTH_OK", "HEALTH_WARN", "HEALTH_ERR"


@dataclass(frozen=True)
class Check:
    code: str
    severity: str
    summary: str
    detail: str


def _names(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def mon_checks(monmap: MonMap, quorum: list[str], last_seen_ago: dict[str, float],
               log_dir: str = "") -> list[Check]:
    down = [n for n in monmap.names if n not in quorum]
    if not down:
        return []
    described = []
    for name in down:
        ago = last_seen_ago.get(name, -1)
        since = f"since {ago:.0f} s" if ago >= 0 else "never seen"
        described.append(f"mon.{name} ({monmap.addr(name)}) {since}")
    holds = len(quorum) * 2 > len(monmap.names)
    summary = (f"{len(down)}/{len(monmap.names)} mons down: {_names(described)}; "
               + (f"quorum {','.join(quorum)} still holds" if holds else "NO QUORUM"))
    where = f"its log in {log_dir}" if log_dir else "its log"
    return [Check("MON_DOWN", HEALTH_WARN if holds else HEALTH_ERR, summary,
                  f"start the monitor again (loligo cluster start mon.{down[0]}) and check "
                  f"{where}; the cluster accepts changes only while a majority is up")]


def osd_checks(osdmap: OSDMap) -> list[Check]:
    checks = []
    down = sorted(o.id for o in osdmap.osds.values() if not o.up and o.is_in)
    if down:
        checks.append(Check(
            "OSD_DOWN", HEALTH_WARN,
            f"{len(down)} osds down: {_names([f'osd.{i}' for i in down])}",
            "restart them (loligo cluster start osd.N) or mark them out so their data is "
            "re-replicated (loligo osd out N)"))
    usable = sum(1 for o in osdmap.osds.values() if o.up and o.is_in)
    needed = max((p.size for p in osdmap.pools.values()), default=0)
    if needed and usable < needed:
        checks.append(Check(
            "TOO_FEW_OSDS", HEALTH_WARN,
            f"OSD count {usable} up and in < pool size {needed}",
            "start more OSDs or lower the pool size (loligo pool set NAME size N)"))
    for flag in sorted(osdmap.flags):
        checks.append(Check("OSDMAP_FLAGS", HEALTH_WARN, f"{flag} flag(s) set",
                            f"unset it when maintenance is over (loligo osd unset {flag})"))
    return checks


def overall(checks: list[Check]) -> str:
    if any(c.severity == HEALTH_ERR for c in checks):
        return HEALTH_ERR
    return HEALTH_WARN if checks else HEALTH_OK
