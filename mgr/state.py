"""The manager's picture of the cluster, refreshed every `mgr_poll_interval`: what the monitors
say (health, quorum, maps, PGs, space), what the OSDs, MDSs and gateways count (read from their
/metrics: throughput, latency, sessions), the file system, the gateway's users and buckets,
the cluster's events, and the last minutes of throughput for the plots. `snapshot()` is what
the dashboard shows, as JSON.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from mgr import space
from mgr.events import Event, HealthWatch, mdsmap_events, osdmap_events
from mgr.scrape import Rates, Sample, fetch
from rados_py import config as config_mod
from rados_py.config import Config
from rados_py.errors import LoligoError
from rados_py.monclient import ClusterStatus, Maps
from rados_py.rados import Rados

__all__ = ["ClusterView", "checks_json"]

log = logging.getLogger(__name__)

READ_OPS = frozenset({"read", "stat", "getxattr", "getxattrs", "omap_get", "omap_list",
                      "guard"})
GATEWAY_EVERY = 10.0  # seconds between two looks at the gateway's users and buckets
MAX_BUCKETS = 200  # shown; the counts cover all
EVENTS = 200  # kept for the page


@dataclass
class _Gateway:
    name: str
    url: str
    metrics_url: str
    rates: Rates = field(default_factory=Rates)
    up: bool = False


@dataclass
class _Recovery:
    peak: int = 0  # most copies missing since recovery last started


class ClusterView:
    def __init__(self, config: Config, rados: Rados) -> None:
        self.config = config
        self.rados = rados
        self.mon = rados.mon
        self.status: ClusterStatus | None = None
        self.maps: Maps | None = None
        self.error = ""  # why the monitors could not be asked, when they could not
        self.osd_rates: dict[int, Rates] = {}
        self.mds_rates: dict[str, Rates] = {}
        self.gateways = _gateways(config)
        self.history: collections.deque[dict[str, float]] = collections.deque()
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENTS)
        self.recovery = _Recovery()
        self.gateway_data: dict[str, Any] = {"users": [], "buckets": [], "totals": {}}
        self._gateway_at = 0.0
        self._gateway_task: asyncio.Task[None] | None = None
        self._checks: dict[str, Any] | None = None
        self._health = ""
        self.health = HealthWatch()
        self._session: aiohttp.ClientSession | None = None
        self.updated = 0.0
        self.updated_ok = 0.0  # when the monitors last answered

    async def close(self) -> None:
        if self._gateway_task is not None:
            self._gateway_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._gateway_task
        if self._session is not None:
            await self._session.close()

    # --- refreshing -------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Ask the monitors, read the daemons' metrics, note what changed."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        now = time.time()
        try:
            st = await self.mon.status(timeout=min(self.config.rpc_timeout, 5.0))
            maps = self.maps
            if st.from_leader and (maps is None or st.view.osdmap_epoch > maps.osdmap.epoch):
                maps = await self.mon.get_maps(st.view.osdmap_epoch, timeout=5.0)
            self.error = ""
        except LoligoError as exc:
            if not self.error:
                self._event("ERR", f"cannot reach the monitors: {exc}", now)
            self.error = str(exc)
            self.updated = now
            return
        if maps is not None and self.maps is not None:
            for e in (osdmap_events(self.maps.osdmap, maps.osdmap)
                      + mdsmap_events(self.maps.mdsmap, maps.mdsmap)):
                self._event(e.severity, e.message, now)
        checks = checks_json(st)
        status = _health_status(st)
        for e in self.health.update(checks, status, now):
            self._event(e.severity, e.message, now)
        self._checks, self._health = checks, status
        self.status, self.maps = st, maps
        self.updated_ok = now
        await self._scrape(now)
        self._sample(now)
        if now - self._gateway_at > GATEWAY_EVERY and (self._gateway_task is None
                                                       or self._gateway_task.done()):
            self._gateway_at = now
            self._gateway_task = asyncio.create_task(self._read_gateway(),
                                                     name="mgr-gateway-users")
        self.updated = now

    def _event(self, severity: str, message: str, at: float) -> None:
        self.events.append({"time": at, **Event(severity, message).to_json()})

    async def _scrape(self, now: float) -> None:
        assert self._session is not None
        offset = self.config.metrics_port_offset
        jobs: dict[Any, Any] = {}
        if self.maps is not None and offset:
            for osd_id, state in self.maps.osdmap.osds.items():
                if state.up and state.addr:
                    host, _, port = state.addr.rpartition(":")
                    url = f"http://{host}:{int(port) + offset}/metrics"
                    jobs[osd_id] = fetch(self._session, url, now)
            for mds in self.maps.mdsmap.daemons:
                if mds.addr:
                    host, _, port = mds.addr.rpartition(":")
                    url = f"http://{host}:{int(port) + offset}/metrics"
                    jobs["mds", mds.name] = fetch(self._session, url, now)
        for gw in self.gateways:
            jobs[gw.name] = fetch(self._session, gw.metrics_url, now)
        results = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))
        for key, sample in results.items():
            if isinstance(key, int):
                self.osd_rates.setdefault(key, Rates()).update(sample)
        for osd_id in list(self.osd_rates):
            if osd_id not in results:
                self.osd_rates[osd_id].update(None)
        for key, sample in results.items():
            if isinstance(key, tuple):
                self.mds_rates.setdefault(key[1], Rates()).update(sample)
        for name in list(self.mds_rates):
            if ("mds", name) not in results:
                del self.mds_rates[name]  # gone from the MDSMap
        for gw in self.gateways:
            sample = results.get(gw.name)
            gw.rates.update(sample)
            gw.up = sample is not None

    def _io(self) -> dict[str, float]:
        read_b = write_b = read_ops = write_ops = 0.0
        for rates in self.osd_rates.values():
            read_b += rates.rate("loligo_osd_op_out_bytes_total")
            write_b += rates.rate("loligo_osd_op_in_bytes_total")
            if rates.current is None:
                continue
            for op in rates.current.by_label("loligo_osd_ops_total", "op"):
                n = rates.rate("loligo_osd_ops_total", op=op)
                if op in READ_OPS:
                    read_ops += n
                else:
                    write_ops += n
        pgs = self.status.view.pgs if self.status is not None else None
        return {"read_bytes_sec": read_b, "write_bytes_sec": write_b,
                "read_ops_sec": read_ops, "write_ops_sec": write_ops,
                "recovery_bytes_sec": pgs.recovery_bytes_per_sec if pgs else 0.0,
                "recovery_objects_sec": pgs.recovery_objects_per_sec if pgs else 0.0}

    def _sample(self, now: float) -> None:
        io = self._io()
        self.history.append({"t": round(now, 3), **{k: round(v, 2) for k, v in io.items()}})
        while self.history and now - self.history[0]["t"] > self.config.mgr_history:
            self.history.popleft()

    async def _read_gateway(self) -> None:
        """The gateway's users and buckets with their counts (when the cluster has one)."""
        prefix = self.config.gateway_pool_prefix
        try:
            from gateway.buckets import BucketStore
            from gateway.pools import KINDS, open_pools
            from gateway.users import UserStore

            pools = set(await self.rados.pool_list())
            if not all(f"{prefix}.{kind}" in pools for kind in KINDS):
                return  # no gateway has run here: the manager creates no pools of its own

            opened = await open_pools(self.rados, prefix)
            users, buckets = UserStore(opened.users), BucketStore(opened)
            out_users, out_buckets = [], []
            total_objects = total_bytes = 0
            for uid in await users.ids():
                user = await users.get(uid)
                owned = await buckets.list_for(uid)
                u_objects = u_bytes = 0
                for name, created in owned:
                    with contextlib.suppress(Exception):  # deleted meanwhile
                        bucket = await buckets.get(name)
                        usage = await buckets.usage(bucket)
                        u_objects += usage.objects
                        u_bytes += usage.bytes
                        out_buckets.append({"name": name, "owner": uid, "created": created,
                                            "objects": usage.objects, "bytes": usage.bytes,
                                            "versioning": bucket.versioning or "off"})
                total_objects += u_objects
                total_bytes += u_bytes
                out_users.append({"uid": uid, "display_name": user.display_name,
                                  "suspended": user.suspended, "buckets": len(owned),
                                  "objects": u_objects, "bytes": u_bytes,
                                  "s3_keys": len(user.keys),
                                  "swift_keys": len(user.swift_keys)})
            out_buckets.sort(key=lambda b: (-b["bytes"], b["name"]))
            self.gateway_data = {
                "users": out_users, "buckets": out_buckets[:MAX_BUCKETS],
                "totals": {"users": len(out_users), "buckets": len(out_buckets),
                           "objects": total_objects, "bytes": total_bytes}}
        except Exception as exc:  # an aid for the page, never a reason to stop
            log.info("reading the gateway's users and buckets: %s", exc)

    # --- the picture ------------------------------------------------------------------------
    def snapshot(self, history: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"updated": self.updated, "fsid": self.config.fsid,
                               "error": self.error,
                               "events": list(self.events)[-50:][::-1],
                               "poll_interval": self.config.mgr_poll_interval}
        out["history_seconds"] = self.config.mgr_history
        out["point"] = self.history[-1] if self.history else None
        if history:  # the whole window: for a page that just opened
            out["history"] = list(self.history)
        st, maps = self.status, self.maps
        if st is None:
            why = f": {self.error}" if self.error else ""
            out["health"] = {"status": "HEALTH_ERR", "checks": [{
                "code": "MGR_NO_DATA", "severity": "HEALTH_ERR",
                "summary": f"no answer from the monitors yet{why}",
                "detail": "start the monitors (loligo cluster start mon.X)"}]}
            return out
        out["health"] = {"status": self._health, "checks": [
            {"code": code, "severity": c["severity"], "summary": c["summary"]["message"],
             "detail": " ".join(d["message"] for d in c["detail"])}
            for code, c in (self._checks or {}).items()]}
        if self.error:  # what follows is the last answer, which may be out of date
            out["health"]["status"] = "HEALTH_ERR"
            out["health"]["checks"].insert(0, {
                "code": "MGR_STALE", "severity": "HEALTH_ERR",
                "summary": f"the monitors do not answer ({self.error}); showing their last "
                           f"answer, {time.time() - self.updated_ok:.0f} s old",
                "detail": "check that a majority of monitors runs (loligo cluster info)"})
        view = st.view
        out["mons"] = {"leader": view.leader if st.from_leader else "", "term": view.term,
                       "quorum": list(view.quorum) if st.from_leader else [],
                       "mons": [{"name": p.name, "addr": p.addr,
                                 "in_quorum": p.name in view.quorum,
                                 "leader": st.from_leader and p.name == view.leader,
                                 "last_seen_ago": round(p.last_seen_ago, 1)}
                                for p in view.peers]}
        pgs = view.pgs
        out["pgs"] = {"total": sum(s.count for s in pgs.by_state),
                      "by_state": [{"state": s.state, "count": s.count}
                                   for s in pgs.by_state]}
        out["usage"] = {"total": pgs.total_bytes, "used": pgs.used_bytes,
                        "avail": pgs.avail_bytes, "objects": pgs.num_objects,
                        "data": pgs.data_bytes}
        out["io"] = {k: round(v, 2) for k, v in self._io().items()}
        out["recovery"] = self._recovery(pgs)
        out["gateways"] = [self._gateway(gw) for gw in self.gateways]
        out["gateway"] = self.gateway_data
        if maps is None:
            return out
        osdmap = maps.osdmap
        df = space.df_json(osdmap, pgs, detail=True)
        out["pools"] = [{"id": p["id"], "name": p["name"], "pg_num": p["pgs"],
                         "size": p["stats"]["size"], "min_size": p["stats"]["min_size"],
                         "stored": p["stats"]["stored"], "objects": p["stats"]["objects"],
                         "used": p["stats"]["bytes_used"],
                         "max_avail": p["stats"]["max_avail"],
                         "pg_states": p["stats"]["pg_states"]} for p in df["pools"]]
        out["hosts"], out["osds"] = self._osds(osdmap, pgs)
        out["flags"] = sorted(osdmap.flags)
        out["osdmap_epoch"] = osdmap.epoch
        out["fs"] = self._fs(maps)
        return out

    def _fs(self, maps: Maps) -> dict[str, Any]:
        """The file systems and their MDSs, with what each MDS counts (its /metrics)."""
        pools = {p.id: p.name for p in maps.osdmap.pools.values()}
        filesystems = [{"name": f.name, "joinable": f.joinable,
                        "metadata_pool": pools.get(f.metadata_pool, str(f.metadata_pool)),
                        "data_pool": pools.get(f.data_pool, str(f.data_pool))}
                       for f in maps.mdsmap.filesystems]
        mdss = []
        for d in maps.mdsmap.daemons:
            rates = self.mds_rates.get(d.name, Rates())
            now = rates.current
            latency = rates.mean("loligo_mds_request_latency_seconds")
            mdss.append({
                "name": d.name, "state": d.state, "rank": d.rank, "addr": d.addr,
                "answering": now is not None,
                "requests_per_sec": round(rates.rate("loligo_mds_requests_total"), 1),
                "latency_ms": round(latency * 1000, 2) if latency is not None else None,
                "sessions": _figure(now, "loligo_mds_sessions"),
                "inodes": _figure(now, "loligo_mds_inodes_cached"),
                "unapplied": _figure(now, "loligo_mds_journal_unapplied_events")})
        clients = sum(m["sessions"] or 0 for m in mdss if m["state"] == "active")
        return {"filesystems": filesystems, "mdss": mdss, "clients": clients}

    def _recovery(self, pgs: Any) -> dict[str, Any]:
        missing = pgs.missing_objects
        if missing == 0:
            self.recovery.peak = 0
        self.recovery.peak = max(self.recovery.peak, missing)
        eta = None
        if missing and pgs.recovery_objects_per_sec > 0:
            eta = missing / pgs.recovery_objects_per_sec
            if pgs.missing_bytes and pgs.recovery_bytes_per_sec > 0:
                eta = max(eta, pgs.missing_bytes / pgs.recovery_bytes_per_sec)
        degraded = max(pgs.degraded_objects, missing)
        return {"degraded": degraded,
                "degraded_total": max(pgs.total_copies, degraded),
                "missing": missing, "missing_bytes": pgs.missing_bytes,
                "objects_per_sec": round(pgs.recovery_objects_per_sec, 2),
                "bytes_per_sec": round(pgs.recovery_bytes_per_sec, 2),
                "eta_seconds": round(eta, 1) if eta is not None else None,
                "progress": round(1 - missing / self.recovery.peak, 4)
                if self.recovery.peak else 1.0}

    def _gateway(self, gw: _Gateway) -> dict[str, Any]:
        r = gw.rates
        return {"name": gw.name, "url": gw.url, "up": gw.up,
                "requests_per_sec": round(r.rate("loligo_gateway_requests_total"), 2),
                "errors_per_sec": round(sum(
                    r.rate("loligo_gateway_requests_total", status=code)
                    for code in _server_errors(r)), 2),
                "received_bytes_sec": round(r.rate("loligo_gateway_received_bytes_total"), 1),
                "sent_bytes_sec": round(r.rate("loligo_gateway_sent_bytes_total"), 1)}

    def _osds(self, osdmap: Any, pgs: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        crush = osdmap.crush.crush_map
        parents = crush.parents()
        host_of: dict[int, str] = {}
        for osd_id in osdmap.osds:
            parent = parents.get(osd_id)
            host_of[osd_id] = crush.buckets[parent].name if parent in crush.buckets else "-"
        acting: dict[int, int] = {}
        primary: dict[int, int] = {}
        for pool in osdmap.pools.values():
            for placement in osdmap.map_pool(pool.id):
                for o in placement.acting:
                    acting[o] = acting.get(o, 0) + 1
                if placement.acting_primary >= 0:
                    primary[placement.acting_primary] = primary.get(
                        placement.acting_primary, 0) + 1
        osds = []
        for osd_id, state in sorted(osdmap.osds.items()):
            u = pgs.osd_usage.get(osd_id)
            rates = self.osd_rates.get(osd_id, Rates())
            latency = rates.mean("loligo_osd_op_latency_seconds")
            commit = rates.mean("loligo_osd_store_commit_latency_seconds")
            osds.append({
                "id": osd_id, "host": host_of[osd_id], "up": state.up, "in": state.is_in,
                "weight": round(state.weight / 0x10000, 3), "addr": state.addr,
                "size": u.total_bytes if u else 0, "used": u.used_bytes if u else 0,
                "avail": u.avail_bytes if u else 0, "pgs": acting.get(osd_id, 0),
                "primary_pgs": primary.get(osd_id, 0),
                "ops_per_sec": round(rates.rate("loligo_osd_ops_total"), 1),
                "op_latency_ms": round(latency * 1000, 2) if latency is not None else None,
                "commit_latency_ms": round(commit * 1000, 2) if commit is not None else None})
        hosts: dict[str, list[int]] = {}
        for o in osds:
            hosts.setdefault(o["host"], []).append(o["id"])
        return [{"name": h, "osds": ids} for h, ids in sorted(hosts.items())], osds


def _figure(sample: Sample | None, name: str) -> int | None:
    return int(sample.total(name)) if sample is not None else None


def _server_errors(rates: Rates) -> list[str]:
    if rates.current is None:
        return []
    return [s for s in rates.current.by_label("loligo_gateway_requests_total", "status")
            if s.startswith("5")]


def checks_json(st: ClusterStatus) -> dict[str, Any]:
    """The checks as `ceph health --format json` has them: {code: {severity, summary,
    detail, muted}}, one entry per code; without a leader, a MON_QUORUM error saying so
    (no monitor can)."""
    checks: dict[str, dict[str, Any]] = {}
    for c in st.view.checks:  # one entry per code, as in Ceph (OSDMAP_FLAGS may repeat)
        check = checks.setdefault(c.code, {"severity": c.severity, "summary": {"message": ""},
                                           "detail": [], "muted": False})
        summary = check["summary"]
        summary["message"] = "; ".join(filter(None, [summary["message"], c.summary]))
        check["detail"] += [{"message": c.detail}] if c.detail else []
        if c.severity == "HEALTH_ERR":
            check["severity"] = c.severity
    if not st.from_leader:
        down = ", ".join(sorted(st.unreachable)) or "none"
        checks["MON_QUORUM"] = {
            "severity": "HEALTH_ERR", "muted": False,
            "summary": {"message": f"no monitor quorum: no leader among "
                                   f"{','.join(sorted(st.answered))} (unreachable: {down})"},
            "detail": [{"message": "start the stopped monitors (`loligo cluster start mon.X`) "
                                   "and read their logs; a majority must run to elect a leader"}]}
    return checks


def _health_status(st: ClusterStatus) -> str:
    return (st.view.health or "HEALTH_ERR") if st.from_leader else "HEALTH_ERR"


def _gateways(config: Config) -> list[_Gateway]:
    """The gateways of the config file ([gateway.N] sections), as the launcher writes them."""
    if config.source is None:
        return []
    try:
        with open(config.source, "rb") as f:
            sections = tomllib.load(f).get("gateway", {})
    except OSError:
        return []
    out = []
    for ident in sorted(sections) if isinstance(sections, dict) else ():
        if not isinstance(sections[ident], dict):
            continue
        try:
            conf = config_mod.load(Path(config.source), f"gateway.{ident}")
        except LoligoError:
            continue
        host, port = conf.gateway_host, conf.gateway_port
        scheme = "https" if conf.gateway_ssl_certificate else "http"
        metrics = (f"http://{host}:{port + conf.metrics_port_offset}/metrics"
                   if conf.metrics_port_offset else "")
        out.append(_Gateway(f"gateway.{ident}", f"{scheme}://{host}:{port}", metrics))
    return out
