"""An MDS's Prometheus metrics (on its port + metrics_port_offset).

Requests are measured at the gRPC boundary (rados_py.metrics' interceptor), so the request
path carries no metrics code: each `Mds.Request` is counted by operation (lookup, create,
setattr...) and result (ok, or the errno's name) and timed by operation. The journal's
appends come from a hook in the journal. The MDS's state, sessions, cache and the journal
events not yet applied are what the daemon last published (once per beacon), read when
Prometheus scrapes.
"""

from __future__ import annotations

import errno
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
        m = self.daemon
        self.requests = m.counter("loligo_mds_requests", "Metadata requests answered, by "
                                  "operation and result (ok or the errno's name)",
                                  ("op", "result"))
        self.latency = m.histogram("loligo_mds_request_latency_seconds", "Metadata request "
                                   "service time (journaled before the answer), by operation",
                                   ("op",))
        self._children: dict[Any, Any] = {}
        self._published = _Published()
        m.collect_with(self._published)

    def interceptor(self) -> Any:
        return self.daemon.rpc_interceptor(observe_op=self._observe)

    def _observe(self, method: str, request: Any, reply: Any, seconds: float) -> None:
        if method != "Mds.Request":
            return
        op = request.WhichOneof("op") or "none"
        if reply is None:
            result = "error"
        elif reply.errno:
            result = errno.errorcode.get(reply.errno, str(reply.errno)).lower()
        else:
            result = "ok"
        key = (op, result)
        counter = self._children.get(key)
        if counter is None:  # labels() costs more than the count itself: once per pair
            counter = self._children[key] = self.requests.labels(op, result)
        counter.inc()
        histogram = self._children.get(op)
        if histogram is None:
            histogram = self._children[op] = self.latency.labels(op)
        histogram.observe(seconds)

    def publish(self, server: Any) -> None:
        """What the MDS is now (`mds.server.MdsServer`), read on its event loop."""
        journal, store = server.journal, server.store
        self._published.update({
            "state": server.state,
            "sessions": len(server.sessions.sessions),
            "inodes": server.cache.dentry_count + len(server.cache.anchors),
            "dirs": len(server.cache.dirs),
            "unapplied": store.waiting if store is not None else 0,
            "purged": store.purged_objects if store is not None else 0,
            "appends": journal.appends if journal is not None else 0,
            "events": journal.events_written if journal is not None else 0,
            "locks": sum(len(v) for v in server.locks.locks.values()),
            "in_flight": len(server.inflight)})

    def serve_beside(self, addr: str, offset: int) -> int | None:
        return self.daemon.serve_beside(addr, offset)

    def close(self) -> None:
        self.daemon.close()


class _Published(Collector):
    """The latest published figures; the journal's and purge counts become counters that never
    go back (a new journal, after a takeover, counts from zero again)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now: dict[str, Any] = {}
        self._last = {"appends": 0, "events": 0, "purged": 0}
        self._totals = {"appends": 0, "events": 0, "purged": 0}

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
                ("in_flight", "loligo_mds_requests_in_flight", "Requests being served now")):
            yield GaugeMetricFamily(name, help_, value=now.get(key, 0))
        for key, name, help_ in (
                ("appends", "loligo_mds_journal_appends", "Journal appends (each one RADOS "
                 "write of a batch of events)"),
                ("events", "loligo_mds_journal_events", "Events written to the journal"),
                ("purged", "loligo_mds_purged_objects", "Data objects of deleted files "
                 "removed")):
            yield CounterMetricFamily(name, help_, value=totals[key])
