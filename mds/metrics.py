"""An MDS's Prometheus metrics (on its port + metrics_port_offset).

Requests arrive on the clients' session streams, so the engine counts each answered request by
operation (lookup, create, setattr...) and result (ok, or the errno's name) and times it,
through rados_py.metrics' hooks, as the journal times its appends. The MDS's state, sessions,
cache, locks and the journal events not yet applied are what the daemon last published (once
per beacon), read when Prometheus scrapes. Every gRPC call (the session streams, status,
client list) is counted by the interceptor every daemon has.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from rados_py.metrics import DaemonMetrics

__all__ = ["STATES", "MdsMetrics"]

#: every state an MDS can be in, each a series (1 for the current one), as Ceph's mds states
STATES = ("standby", "replay", "reconnect", "active")


class MdsMetrics:
    def __init__(self, name: str) -> None:
        self.daemon = DaemonMetrics(name).install()
        self._published = _Published()
        self.daemon.collect_with(self._published)

    def interceptor(self) -> Any:
        return self.daemon.rpc_interceptor()

    def publish(self, server: Any) -> None:
        """What the MDS is now (`mds.server.MdsServer`), read on its event loop."""
        journal, store, engine = server.journal, server.store, server.engine
        self._published.update({
            "state": server.state,
            "sessions": len(server.sessions.sessions),
            "inodes": server.cache.dentry_count + len(server.cache.anchors),
            "dirs": len(server.cache.dirs),
            "unapplied": store.waiting if store is not None else 0,
            "purged": store.purged_objects if store is not None else 0,
            "appends": journal.appends if journal is not None else 0,
            "events": journal.events_written if journal is not None else 0,
            "locks": sum(len(v) for v in engine.locks.locks.values()) if engine else 0,
            "waiting": len(engine.inflight) if engine else 0,
            "recalls": engine.recalls_sent if engine else 0})

    def serve_beside(self, addr: str, offset: int) -> int | None:
        return self.daemon.serve_beside(addr, offset)

    def close(self) -> None:
        self.daemon.close()


class _Published(Collector):
    """The latest published figures; the journal's, purge and recall counts become counters
    that never go back (after a takeover, a new journal and engine count from zero again)."""

    COUNTED = ("appends", "events", "purged", "recalls")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now: dict[str, Any] = {}
        self._last = dict.fromkeys(self.COUNTED, 0)
        self._totals = dict.fromkeys(self.COUNTED, 0)

    def update(self, now: dict[str, Any]) -> None:
        with self._lock:
            for key, before in self._last.items():
                value = now[key]
                self._totals[key] += value - before if value >= before else value
                self._last[key] = value
            self._now = now

    def collect(self) -> Iterator[Any]:
        with self._lock:
            now = dict(self._now)
            totals = dict(self._totals)
        state = GaugeMetricFamily("loligo_mds_state", "1 for the state the MDS is in",
                                  labels=["state"])
        for name in STATES:
            state.add_metric([name], 1.0 if now.get("state") == name else 0.0)
        yield state
        for key, name, help_ in (
                ("sessions", "loligo_mds_sessions", "Client sessions (mounts) open"),
                ("inodes", "loligo_mds_inodes_cached", "Dentries and inodes in the cache"),
                ("dirs", "loligo_mds_dirs_cached", "Directories in the cache"),
                ("unapplied", "loligo_mds_journal_unapplied_events", "Journaled changes not "
                 "yet applied to the directory objects"),
                ("locks", "loligo_mds_file_locks", "File locks (fcntl ranges, flock) held"),
                ("waiting", "loligo_mds_requests_waiting", "Requests parked until another "
                 "client gives back what they name")):
            yield GaugeMetricFamily(name, help_, value=now.get(key, 0))
        for key, name, help_ in (
                ("appends", "loligo_mds_journal_appends", "Journal appends (each one RADOS "
                 "write of a batch of events)"),
                ("events", "loligo_mds_journal_events", "Events written to the journal"),
                ("purged", "loligo_mds_purged_objects", "Data objects of deleted files "
                 "removed"),
                ("recalls", "loligo_mds_recalls", "Capabilities recalled from clients (another "
                 "client needed what they held)")):
            yield CounterMetricFamily(name, help_, value=totals[key])
