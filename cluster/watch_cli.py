"""`loligo -w` / `loligo status --watch`: the status, then cluster events as they happen, as
`ceph -w` shows them: OSDs going down and booting, pools and flags changing, health checks
failing and clearing, PG states moving, recovery progress. Runs until Ctrl-C (or --watch-for).

    2025-01-01T10:00:03.512 [WRN] osd.1 marked down
    2025-01-01T10:00:03.512 [WRN] Health check failed: 1 osds down: osd.1 (OSD_DOWN)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

from cluster import mon_cli
from mgr.events import Event, HealthWatch, mdsmap_events, osdmap_events, pg_line
from rados_py import config as config_mod
from rados_py.auth import Keyring
from rados_py.errors import LoligoError
from rados_py.monclient import ClusterStatus, Maps, MonClient

__all__ = ["cmd_watch"]

POLL = 1.0  # seconds between two looks at the cluster
PG_EVERY = 2.0  # at most one pgmap line this often, as Ceph's manager reports


def stamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


def show(events: list[Event]) -> None:
    for e in events:
        print(f"{stamp()} [{e.severity}] {e.message}", flush=True)


async def watch(args: argparse.Namespace) -> int:
    conf = config_mod.load(config_mod.find_conf(getattr(args, "conf", None)), "client.admin")
    addrs = {m.name: m.addr for m in conf.mon_host}
    until = time.monotonic() + args.watch_for if getattr(args, "watch_for", None) else None
    maps: Maps | None = None
    health = HealthWatch()
    pg_states: Any = None
    last_pg = 0.0
    reachable = True
    async with MonClient(conf, Keyring.load(conf.keyring)) as client:
        first = True
        while until is None or time.monotonic() < until:
            try:
                st: ClusterStatus = await client.status(timeout=min(conf.rpc_timeout, 5.0))
                new_maps = maps
                if st.from_leader and (maps is None or st.view.osdmap_epoch >
                                       maps.osdmap.epoch):
                    new_maps = await client.get_maps(st.view.osdmap_epoch, timeout=5.0)
            except LoligoError as exc:
                if reachable:
                    show([Event("ERR", f"cannot reach the monitors: {exc}")])
                reachable = False
                await asyncio.sleep(POLL)
                continue
            if not reachable:
                show([Event("INF", "monitors answer again")])
                reachable = True
            data = mon_cli.status_json(st, new_maps, addrs)
            if first:
                print(mon_cli.format_status(data), flush=True)
                first = False
            events: list[Event] = []
            if new_maps is not None:
                events += osdmap_events(maps.osdmap if maps else None, new_maps.osdmap)
                events += mdsmap_events(maps.mdsmap if maps else None, new_maps.mdsmap)
            events += health.update(data["health"]["checks"], data["health"]["status"],
                                    time.monotonic())
            show(events)
            pgmap = data.get("pgmap")
            if pgmap is not None:
                key = (tuple((s["state_name"], s["count"]) for s in pgmap["pgs_by_state"]),
                       pgmap["degraded_objects"], pgmap["num_objects"])
                now = time.monotonic()
                if key != pg_states and now - last_pg >= PG_EVERY:
                    show([Event("INF", pg_line(pgmap, mon_cli.human_bytes))])
                    pg_states, last_pg = key, now
            maps = new_maps
            await asyncio.sleep(POLL)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(watch(args))
    return 0
