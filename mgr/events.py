"""Cluster events as `ceph -w` shows them, derived from two successive views of the cluster:
OSDs marked up, down, in or out, pools and flags changed, health checks failed, updated and
cleared, PG states. Pure functions of the before and after, so `loligo -w` and the dashboard
tell the same story and every rule is unit tested.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rados_py.mdsmap import MDSMap
from rados_py.osdmap import OSDMap

__all__ = ["Event", "HealthWatch", "health_events", "mdsmap_events", "osdmap_events",
           "pg_line"]

INF, WRN, ERR = "INF", "WRN", "ERR"
SEVERITY = {"HEALTH_WARN": WRN, "HEALTH_ERR": ERR}


@dataclass(frozen=True)
class Event:
    severity: str  # INF, WRN or ERR, as Ceph's cluster log
    message: str
    check: str = ""  # the health check it is about, if any
    kind: str = ""  # for a health check: failed, update or cleared

    def to_json(self) -> dict[str, str]:
        return {"severity": self.severity, "message": self.message}


def osdmap_events(old: OSDMap | None, new: OSDMap) -> list[Event]:
    """What changed from `old` to `new` (nothing when there is no `old` to compare with)."""
    if old is None or new.epoch <= old.epoch:
        return []
    out: list[Event] = []
    for osd_id in sorted(set(old.osds) | set(new.osds)):
        a, b = old.osds.get(osd_id), new.osds.get(osd_id)
        name = f"osd.{osd_id}"
        if a is None and b is not None:
            out.append(Event(INF, f"{name} created"))
            a = type(b)(osd_id, up=False, weight=0)
        if b is None:
            out.append(Event(INF, f"{name} removed"))
            continue
        assert a is not None
        if b.up and (not a.up or b.up_from != a.up_from):
            out.append(Event(INF, f"{name} boot (up from epoch {b.up_from}) at {b.addr}"))
        elif a.up and not b.up:
            out.append(Event(WRN, f"{name} marked down"))
        if a.is_in and not b.is_in:
            why = " by the monitors (down too long)" if b.auto_out else ""
            out.append(Event(WRN if b.auto_out else INF, f"{name} marked out{why}"))
        elif b.is_in and not a.is_in:
            out.append(Event(INF, f"{name} marked in"))
        elif a.is_in and b.is_in and a.weight != b.weight:
            out.append(Event(INF, f"{name} reweighted to {b.weight / 0x10000:.3f}"))
    for pool_id in sorted(set(old.pools) | set(new.pools)):
        p, q = old.pools.get(pool_id), new.pools.get(pool_id)
        if p is None and q is not None:
            out.append(Event(INF, f"pool '{q.name}' created ({q.pg_num} pgs, size {q.size})"))
        elif q is None and p is not None:
            out.append(Event(INF, f"pool '{p.name}' removed"))
        elif p is not None and q is not None:
            for field in ("size", "min_size", "pg_num", "crush_rule"):
                if getattr(p, field) != getattr(q, field):
                    out.append(Event(INF, f"pool '{q.name}' {field} {getattr(p, field)} -> "
                                          f"{getattr(q, field)}"))
    for flag in sorted(new.flags - old.flags):
        out.append(Event(WRN, f"{flag} flag set"))
    for flag in sorted(old.flags - new.flags):
        out.append(Event(INF, f"{flag} flag unset"))
    return out


def mdsmap_events(old: MDSMap | None, new: MDSMap) -> list[Event]:
    if old is None or new.epoch <= old.epoch:
        return []
    out = []
    before = {d.name: d for d in old.daemons}
    after = {d.name: d for d in new.daemons}
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        if b is None:
            out.append(Event(WRN, f"mds.{name} removed (failed)"))
        elif a is None or a.state != b.state:
            out.append(Event(INF, f"mds.{name} is now up:{b.state}"
                                  + (f" (rank {b.rank})" if b.rank >= 0 else "")))
    return out


def health_events(old: Mapping[str, Mapping[str, Any]] | None, old_status: str,
                  new: Mapping[str, Mapping[str, Any]], new_status: str) -> list[Event]:
    """Checks as `loligo health --format json` gives them ({code: {severity, summary}})."""
    if old is None:
        return []
    out = []
    for code, check in new.items():
        summary = check["summary"]["message"]
        sev = SEVERITY.get(check["severity"], ERR)
        if code not in old:
            out.append(Event(sev, f"Health check failed: {summary} ({code})", code, "failed"))
        elif old[code]["summary"]["message"] != summary:
            out.append(Event(sev, f"Health check update: {summary} ({code})", code, "update"))
    for code, check in old.items():
        if code not in new:
            out.append(Event(INF, f"Health check cleared: {code} (was: "
                                  f"{check['summary']['message']})", code, "cleared"))
    if new_status == "HEALTH_OK" and old_status != "HEALTH_OK":
        out.append(Event(INF, "Cluster is now healthy"))
    return out


class HealthWatch:
    """Health events over time, as a watcher prints them: a check that fails or clears at
    once, a check whose summary keeps changing (a degraded count going down) at most every
    `update_every` seconds, as Ceph's cluster log does."""

    def __init__(self, update_every: float = 10.0) -> None:
        self.update_every = update_every
        self.checks: Mapping[str, Mapping[str, Any]] | None = None
        self.status = ""
        self._said: dict[str, float] = {}  # code -> when its last update was told

    def update(self, checks: Mapping[str, Mapping[str, Any]], status: str, now: float
               ) -> list[Event]:
        events = []
        for e in health_events(self.checks, self.status, checks, status):
            if e.kind == "update" and now - self._said.get(e.check, float("-inf")) < \
                    self.update_every:
                continue
            self._said[e.check] = now
            events.append(e)
        self.checks, self.status = checks, status
        return events


def pg_line(pgmap: Mapping[str, Any], human: Any) -> str:
    """One `pgmap` line: PG states, data and usage, degraded copies and recovery rate."""
    states = ", ".join(f"{s['count']} {s['state_name']}" for s in pgmap["pgs_by_state"])
    line = (f"pgmap: {pgmap['num_pgs']} pgs: {states or 'none reported'}; "
            f"{human(pgmap['data_bytes'])} data, {human(pgmap['bytes_used'])} used, "
            f"{human(pgmap['bytes_avail'])} / {human(pgmap['bytes_total'])} avail")
    if pgmap.get("degraded_objects"):
        line += (f"; {pgmap['degraded_objects']}/{pgmap['degraded_total']} objects degraded "
                 f"({100 * pgmap['degraded_ratio']:.3f}%)")
    if pgmap.get("recovering_bytes_per_sec"):
        line += (f"; recovering {human(pgmap['recovering_bytes_per_sec'])}/s, "
                 f"{pgmap['recovering_objects_per_sec']:g} objects/s")
    return line
