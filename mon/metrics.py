"""Prometheus metrics of a monitor, served on its RPC port + metrics_port_offset: Raft (term,
leadership, commit and persist latency), the maps' epochs, commands by kind and result, every
RPC it serves (rados_py.metrics), and -- on the leader -- the cluster's PGs, objects, space and
recovery as the OSDs report them.

Each daemon has its own registry (not the process-global one), so tests can run several
monitors in one process and nothing leaks between them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rados_py.metrics import DaemonMetrics
from rados_py.proto.loligo import mon_pb2


class MonMetrics:
    def __init__(self, name: str):
        self.daemon = DaemonMetrics(f"mon.{name}")
        m = self.daemon
        self.registry = m.registry
        self.osdmap_epoch = m.gauge("loligo_osdmap_epoch", "Current OSDMap epoch")
        self.monmap_epoch = m.gauge("loligo_monmap_epoch", "Current MonMap epoch")
        self.term = m.gauge("loligo_mon_term", "Raft term")
        self.is_leader = m.gauge("loligo_mon_is_leader", "1 on the leader")
        self.quorum_size = m.gauge("loligo_mon_quorum_size",
                                   "Monitors in quorum (leader's view)")
        self.commit_index = m.gauge("loligo_mon_commit_index", "Raft commit index")
        self.applied_index = m.gauge("loligo_mon_applied_index", "Last applied index")
        self.commands = m.counter("loligo_mon_commands", "Commands applied, by kind and result",
                                  ("command", "result"))
        self.commit_latency = m.histogram(
            "loligo_mon_commit_latency_seconds", "Proposal to applied, on the leader",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5))
        self.fsync_latency = m.histogram(
            "loligo_mon_persist_latency_seconds", "One durable batch (one fsync)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5))
        self.beacons = m.counter("loligo_mon_beacons", "Beacons received: from OSDs, MDSs, "
                                 "and OSDs' failure reports", ("kind",))

    def interceptor(self) -> Any:
        return self.daemon.rpc_interceptor()

    def command_applied(self, command: mon_pb2.MonCommand, ok: bool) -> None:
        self.commands.labels(command.WhichOneof("cmd") or "none",
                             "ok" if ok else "refused").inc()

    def watch_pgs(self, summary: Callable[[], mon_pb2.PgSummary | None]) -> None:
        """PG states, usage and recovery, computed when scraped (the leader's view; other
        monitors export none)."""
        self.daemon.collect_with(_PgCollector(summary))

    def serve(self, host: str, port: int) -> None:
        self.daemon.serve(host, port)

    def close(self) -> None:
        self.daemon.close()

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
                ("loligo_bytes_total", "Size of the OSDs (a file system shared by several "
                 "counts once)", pgs.total_bytes),
                ("loligo_objects_degraded", "Object copies lacking: to recover, or not "
                 "made while a replica was down", max(pgs.degraded_objects,
                                                      pgs.missing_objects)),
                ("loligo_objects_misplaced_or_missing", "Object copies queued for recovery "
                 "or backfill", pgs.missing_objects),
                ("loligo_object_copies", "Object copies the pools' sizes call for",
                 pgs.total_copies),
                ("loligo_recovery_objects_per_second", "Recovery rate (object copies)",
                 pgs.recovery_objects_per_sec),
                ("loligo_recovery_bytes_per_second", "Recovery rate",
                 pgs.recovery_bytes_per_sec)):
            yield GaugeMetricFamily(name, help_, value=value)
