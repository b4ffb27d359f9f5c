"""Health: named checks, each saying what is wrong and what to do (Ceph's codes where they exist).

Pure functions of the maps and of which monitors the leader hears from, so every check is unit
tested without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from rados_py.monmap import MonMap
from rados_py.osdmap import OSDMap
from rados_py.proto.loligo import mon_pb2

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


_INACTIVE = ("unknown", "peering", "down", "incomplete", "stale")


def pg_checks(pgs: mon_pb2.PgSummary) -> list[Check]:
    """PG_AVAILABILITY (PGs not active), PG_DEGRADED, OBJECT_UNFOUND, from the PG summary."""
    checks = []
    inactive = {s.state: s.count for s in pgs.by_state
                if any(word in _INACTIVE for word in s.state.split("+"))
                or "active" not in s.state.split("+")}
    if inactive:
        n = sum(inactive.values())
        states = ", ".join(f"{c} {s}" for s, c in inactive.items())
        checks.append(Check(
            "PG_AVAILABILITY", HEALTH_WARN, f"Reduced data availability: {n} pgs inactive "
            f"({states})", "wait for peering to finish; if it does not, start the OSDs that "
            "hold these PGs (loligo osd tree, loligo cluster start osd.N)"))
    degraded = sum(s.count for s in pgs.by_state if "degraded" in s.state.split("+"))
    undersized = sum(s.count for s in pgs.by_state if "undersized" in s.state.split("+"))
    copies = max(pgs.degraded_objects, pgs.missing_objects)
    if degraded or undersized or copies:
        parts = []
        if copies:
            total = max(pgs.total_copies, copies)
            parts.append(f"{copies}/{total} object copies degraded "
                         f"({100.0 * copies / total:.3f}%)")
        if pgs.missing_objects:
            parts.append(f"{pgs.missing_objects} object copies to recover")
        parts += [f"{degraded} pgs degraded"] if degraded else []
        parts += [f"{undersized} pgs undersized"] if undersized else []
        checks.append(Check(
            "PG_DEGRADED", HEALTH_WARN, "Degraded data redundancy: " + ", ".join(parts),
            "recovery runs on its own; objects written while a replica was down are copied "
            "to it when it returns. If PGs stay undersized, start the down OSDs (loligo "
            "cluster start osd.N) or add OSDs so every PG has pool size members"))
    damaged = [s for s in pgs.pgs if s.inconsistent_objects]
    if damaged:
        errors = sum(s.inconsistent_objects for s in damaged)
        where = "; ".join(f"pg {s.pgid}: {_names(list(s.inconsistent), 5)}" for s in damaged[:5])
        checks.append(Check(
            "OSD_SCRUB_ERRORS", HEALTH_ERR, f"{errors} scrub errors", where))
        checks.append(Check(
            "PG_DAMAGED", HEALTH_ERR, f"Possible data damage: {len(damaged)} pgs inconsistent "
            f"({where})", f"loligo pg repair {damaged[0].pgid} rewrites the bad copies from the "
            "good ones (each inconsistent PG)"))
    unfound = [s.pgid for s in pgs.pgs if "recovery_unfound" in s.state]
    if unfound:
        checks.append(Check(
            "OBJECT_UNFOUND", HEALTH_WARN, f"{len(unfound)} pgs have unfound objects: "
            f"{_names(unfound)}", "start the OSDs that were down when these objects were "
            "last written; until then reads of them fail with EIO"))
    return checks


def overall(checks: list[Check]) -> str:
    if any(c.severity == HEALTH_ERR for c in checks):
        return HEALTH_ERR
    return HEALTH_WARN if checks else HEALTH_OK
