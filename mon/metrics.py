"""Prometheus metrics of a monitor, served on its RPC port + metrics_port_offset.

Each daemon has its own registry (not the process-global one), so tests can run several
monitors in one process and nothing leaks between them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rados_py.proto.loligo import mon_pb2


class MonMetrics:
    def __init__(self, name: str):
        self.registry = CollectorRegistry()
        labels = {"ceph_daemon": f"mon.{name}"}
        r = self.registry
        self.osdmap_epoch = Gauge("loligo_osdmap_epoch", "Current OSDMap epoch", registry=r)
        self.monmap_epoch = Gauge("loligo_monmap_epoch", "Current MonMap epoch", registry=r)
        self.term = Gauge("loligo_mon_term", "Raft term", registry=r)
        self.is_leader = Gauge("loligo_mon_is_leader", "1 on the leader", registry=r)
        self.quorum_size = Gauge("loligo_mon_quorum_size", "Monitors in quorum (leader's view)",
                                 registry=r)
        self.commit_index = Gauge("loligo_mon_commit_index", "Raft commit index", registry=r)
        self.applied_index = Gauge("loligo_mon_applied_index", "Last applied index", registry=r)
        self.commands = Counter("loligo_mon_commands", "Commands applied, by result",
                                ["result"], registry=r)
        self.commit_latency = Histogram(
            "loligo_mon_commit_latency_seconds", "Proposal to applied, on the leader",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5), registry=r)
        self.fsync_latency = Histogram(
            "loligo_mon_persist_latency_seconds", "One durable batch (one fsync)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5), registry=r)
        self.info = Gauge("loligo_mon_info", "Constant 1, labelled with the daemon",
                          list(labels), registry=r)
        self.info.labels(**labels).set(1)
        self._server = None

    def watch_pgs(self, summary: Callable[[], mon_pb2.PgSummary | None]) -> None:
        """PG states, usage and recovery, computed when scraped (the leader's view; other
        monitors export none)."""
        self.registry.register(_PgCollector(summary))

    def serve(self, host: str, port: int) -> None:
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    @contextmanager
    def timed(self, histogram: Histogram):
        start = time.monotonic()
        yield
        histogram.observe(time.monotonic() - start)


class _PgCollector(Collector):
    def __init__(self, summary: Callable[[], mon_pb2.PgSummary | None]) -> None:
        self._summary = summary

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pgs = self._summary()
        if pgs is None:
            return
        states = GaugeMetricFamily("loligo_pgs", "PGs by state", labels=["state"])
        for s in pgs.by_state:
            states.add_metric([s.state], s.count)
        yield states
        for name, help_, value in (
                ("loligo_objects", "Objects (one copy each)", pgs.num_objects),
                ("loligo_data_bytes", "Logical bytes stored (one copy)", pgs.data_bytes),
                ("loligo_bytes_used", "Raw bytes used by all OSD stores", pgs.used_bytes),
                ("loligo_bytes_avail", "Bytes the OSDs' file systems have left",
                 pgs.avail_bytes),
                ("loligo_bytes_total", "Size of the OSDs' file systems", pgs.total_bytes),
                ("loligo_objects_degraded", "Object copies left to recover",
                 pgs.missing_objects),
                ("loligo_recovery_bytes_per_second", "Recovery rate",
                 pgs.recovery_bytes_per_sec)):
            yield GaugeMetricFamily(name, help_, value=value)
