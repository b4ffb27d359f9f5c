"""PG states and usage as the OSDs report them, and OSD failure reports: the leader's soft state.

Neither goes through the replicated log: both are re-sent every beacon or heartbeat, so a new
leader has them again within a beacon interval (until then PGs show as "unknown", as in Ceph
after a manager failover). Everything here is a pure function of the reports and the OSDMap.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from rados_py.osdmap import OSDMap, PgId
from rados_py.proto.loligo import mon_pb2

__all__ = ["FailureReports", "PgStats", "raw_space"]

RATE_WINDOW = 10.0  # seconds over which recovery rates are averaged


@dataclass
class _Report:
    osd: int
    stamp: float
    stat: mon_pb2.PgStat


class PgStats:
    """The latest PG stats from each acting primary and the latest usage from each OSD."""

    def __init__(self) -> None:
        self.pgs: dict[str, _Report] = {}
        self.usage: dict[int, mon_pb2.OsdUsage] = {}
        self._recovered: dict[str, tuple[int, int]] = {}
        self._progress: deque[tuple[float, int, int]] = deque()
        self._total = (0, 0)

    def report(self, osd: int, beacon: mon_pb2.OsdBeacon, now: float) -> None:
        for stat in beacon.pgs:
            self.pgs[stat.pgid] = _Report(osd, now, stat)
            objects, size = stat.recovered_objects, stat.recovered_bytes
            before = self._recovered.get(stat.pgid, (0, 0))
            if objects >= before[0]:  # counters restart when a PG peers again
                self._total = (self._total[0] + objects - before[0],
                               self._total[1] + size - before[1])
            self._recovered[stat.pgid] = (objects, size)
        if beacon.HasField("usage"):
            self.usage[osd] = beacon.usage
        self._progress.append((now, *self._total))
        while self._progress and now - self._progress[0][0] > RATE_WINDOW:
            self._progress.popleft()

    def summary(self, osdmap: OSDMap, stale_after: float, now: float) -> mon_pb2.PgSummary:
        """Every PG of the map counted once, by the state its current primary reported."""
        out = mon_pb2.PgSummary()
        counts: dict[str, int] = {}
        for pool in osdmap.pools.values():
            for seed, placement in enumerate(osdmap.map_pool(pool.id)):
                pgid = str(PgId(pool.id, seed))
                report = self.pgs.get(pgid)
                if placement.acting_primary < 0:
                    state = "down"
                elif report is None or report.osd != placement.acting_primary:
                    state = "unknown"
                elif now - report.stamp > stale_after:
                    state = "stale+" + report.stat.state
                else:
                    state = report.stat.state
                if report is not None and report.osd == placement.acting_primary:
                    stat = report.stat
                    out.pgs.append(stat)
                    out.num_objects += stat.num_objects
                    out.data_bytes += stat.num_bytes
                    out.missing_objects += stat.missing_objects
                    out.missing_bytes += stat.missing_bytes
                    # every object of a PG with fewer members than the pool's size lacks
                    # those copies (written, or not yet recovered, while a replica was down)
                    members = sum(1 for o in placement.acting if o >= 0)
                    absent = max(0, pool.size - members) * stat.num_objects
                    out.degraded_objects += stat.missing_objects + absent
                    out.total_copies += stat.num_objects * pool.size
                counts[state] = counts.get(state, 0) + 1
        for state, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            out.by_state.add(state=state, count=count)
        usages = {osd: u for osd, u in self.usage.items() if osd in osdmap.osds}
        for osd, usage in usages.items():
            out.osd_usage[osd].CopyFrom(usage)
        out.used_bytes, out.avail_bytes, out.total_bytes = raw_space(usages.values())
        if len(self._progress) >= 2:
            (t0, o0, b0), (t1, o1, b1) = self._progress[0], self._progress[-1]
            if t1 > t0:
                out.recovery_objects_per_sec = (o1 - o0) / (t1 - t0)
                out.recovery_bytes_per_sec = (b1 - b0) / (t1 - t0)
        return out


def raw_space(usages: Iterable[mon_pb2.OsdUsage]) -> tuple[int, int, int]:
    """(used, avail, total) of the cluster: each OSD's own use, but each file system counted
    once -- OSDs sharing a disk (a one-host cluster) add their sizes only up to the disk's."""
    used = 0
    per_fs: dict[str, list[int]] = {}  # fs id -> [avail, total, fs avail, fs total]
    for u in usages:
        used += u.used_bytes
        fs = per_fs.setdefault(u.fs_id or f"own:{id(u)}",  # an OSD without fs_id: its own
                               [0, 0, u.fs_avail_bytes, u.fs_total_bytes])
        fs[0] += u.avail_bytes
        fs[1] += u.total_bytes
    avail = total = 0
    for own_avail, own_total, fs_avail, fs_total in per_fs.values():
        avail += min(own_avail, fs_avail) if fs_total else own_avail
        total += min(own_total, fs_total) if fs_total else own_total
    return used, avail, total


class FailureReports:
    """Which OSDs say which peer stopped answering heartbeats, when, and at which map epoch."""

    def __init__(self) -> None:
        self._reports: dict[int, dict[int, tuple[float, int, bool]]] = {}

    def report(self, reporter: int, target: int, alive: bool, now: float, epoch: int,
               immediate: bool = False) -> None:
        if alive:
            self._reports.get(target, {}).pop(reporter, None)
        else:
            self._reports.setdefault(target, {})[reporter] = (now, epoch, immediate)

    def reporters(self, target: int, osdmap: OSDMap, now: float, window: float) -> set[int]:
        """Up OSDs that reported `target` within `window` seconds, about its current life: a
        report sent with a map from before the target last booted is about a process that
        is gone (it would mark a restarted OSD down again)."""
        state = osdmap.osds.get(target)
        up_from = state.up_from if state is not None else 0
        fresh = {r for r, (t, epoch, _) in self._reports.get(target, {}).items()
                 if now - t <= window and epoch >= up_from}
        return {r for r in fresh if (s := osdmap.osds.get(r)) is not None and s.up}

    def refused(self, target: int, reporters: set[int]) -> bool:
        """Whether one of these reporters found `target`'s heartbeat port refusing
        connections: its process is gone, no need to wait for more reporters."""
        reports = self._reports.get(target, {})
        return any(reports[r][2] for r in reporters if r in reports)

    def forget(self, target: int) -> None:
        self._reports.pop(target, None)
