"""An OSD's Prometheus metrics (on its port + metrics_port_offset).

Client ops are measured at the gRPC boundary (rados_py.metrics' interceptor; a session's op
frames where the session hands them over, osd/service.py), so the op path carries no metrics
code: each `Osd.Op` is counted and timed by its kind -- the first
mutation of the compound op, else its first read (`write_full`, `read`, `omap_set`...) -- with
the bytes it brought and took away. The store's group commits come from a hook in the store.
PG states, recovery and scrub progress and space are read from what the OSD last reported in
its beacon, when Prometheus scrapes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from rados_py.metrics import DaemonMetrics
from rados_py.proto.loligo import mon_pb2, osd_pb2

__all__ = ["OsdMetrics", "op_kind"]

K = osd_pb2.OsdOp
_KIND = {v: k.lower() for k, v in K.Kind.items()}
_READS = frozenset({K.READ, K.STAT, K.GETXATTR, K.GETXATTRS, K.OMAP_GET, K.OMAP_LIST})
_GUARDS = frozenset({K.ASSERT_EXISTS, K.ASSERT_VERSION, K.CMPXATTR, K.OMAP_CMP, K.OMAP_ABSENT})
_STATUS = {v: k.lower() for k, v in osd_pb2.OpReply.Status.items()}


def op_kind(ops: Any) -> str:
    """What a compound op is, for counting: its first mutation, else its first read."""
    first_read = ""
    for op in ops:
        if op.kind not in _READS and op.kind not in _GUARDS:
            return _KIND.get(op.kind, "unknown")
        if not first_read and op.kind in _READS:
            first_read = _KIND[op.kind]
    return first_read or "guard"


def _payload(items: Any) -> int:
    return sum(len(x.data) + sum(len(p.key) + len(p.value) for p in x.pairs) for x in items)


class OsdMetrics:
    def __init__(self, osd_id: int) -> None:
        self.daemon = DaemonMetrics(f"osd.{osd_id}").install()
        m = self.daemon
        self.ops = m.counter("loligo_osd_ops", "Client ops, by kind and result",
                             ("op", "result"))
        self.latency = m.histogram("loligo_osd_op_latency_seconds", "Client op service time "
                                   "(replication to every member included), by kind", ("op",))
        self.bytes_in = m.counter("loligo_osd_op_in_bytes", "Data clients sent in ops")
        self.bytes_out = m.counter("loligo_osd_op_out_bytes", "Data ops returned to clients")
        self._children: dict[Any, Any] = {}
        self._report = _Reported()
        m.collect_with(self._report)

    def interceptor(self) -> Any:
        return self.daemon.rpc_interceptor(observe_op=self.observe_op)

    def observe_op(self, method: str, request: Any, reply: Any, seconds: float) -> None:
        """One finished call: an `Osd.Op` (unary, or a session's op frame) is counted."""
        if method != "Osd.Op":
            return
        kind = op_kind(request.ops)
        result = _STATUS.get(reply.status, "unknown") if reply is not None else "error"
        key = (kind, result)
        counter = self._children.get(key)
        if counter is None:  # labels() costs more than the count itself: once per kind
            counter = self._children[key] = self.ops.labels(kind, result)
        counter.inc()
        if reply is not None and reply.status in (osd_pb2.OpReply.OK, osd_pb2.OpReply.FAILED):
            histogram = self._children.get(kind)
            if histogram is None:
                histogram = self._children[kind] = self.latency.labels(kind)
            histogram.observe(seconds)
            self.bytes_in.inc(_payload(request.ops))
            self.bytes_out.inc(_payload(reply.results))

    def publish(self, beacon: mon_pb2.OsdBeacon) -> None:
        """What the OSD just told the monitors (its PGs as primary, its space)."""
        self._report.update(beacon)

    def serve_beside(self, addr: str, offset: int) -> int | None:
        return self.daemon.serve_beside(addr, offset)

    def close(self) -> None:
        self.daemon.close()


class _Reported(Collector):
    """PG states, recovery and scrub progress and space, from the latest beacon; recovered
    objects and finished scrubs become counters that never go back (a PG's own counts start
    again each time it peers)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._beacon: mon_pb2.OsdBeacon | None = None
        self._recovered: dict[str, tuple[int, int]] = {}
        self._recovered_total = [0, 0]
        self._scrubbed: dict[str, tuple[float, float]] = {}
        self._scrubs = {"shallow": 0, "deep": 0}

    def update(self, beacon: mon_pb2.OsdBeacon) -> None:
        with self._lock:
            for stat in beacon.pgs:
                objects, size = stat.recovered_objects, stat.recovered_bytes
                before = self._recovered.get(stat.pgid, (0, 0))
                if objects >= before[0] and size >= before[1]:
                    self._recovered_total[0] += objects - before[0]
                    self._recovered_total[1] += size - before[1]
                else:  # peered again: its counts restarted from zero
                    self._recovered_total[0] += objects
                    self._recovered_total[1] += size
                self._recovered[stat.pgid] = (objects, size)
                shallow, deep = stat.last_scrub_stamp, stat.last_deep_scrub_stamp
                seen = self._scrubbed.get(stat.pgid)
                if seen is not None:
                    if deep > seen[1]:
                        self._scrubs["deep"] += 1
                    elif shallow > seen[0]:
                        self._scrubs["shallow"] += 1
                self._scrubbed[stat.pgid] = (shallow, deep)
            self._beacon = beacon

    def collect(self) -> Iterator[Any]:
        with self._lock:
            beacon = self._beacon
            recovered = list(self._recovered_total)
            scrubs = dict(self._scrubs)
        states = GaugeMetricFamily("loligo_osd_pgs", "PGs this OSD is primary of, by state",
                                   labels=["state"])
        counts: dict[str, int] = {}
        pgs = list(beacon.pgs) if beacon is not None else []
        for stat in pgs:
            counts[stat.state] = counts.get(stat.state, 0) + 1
        for state, n in sorted(counts.items()):
            states.add_metric([state], n)
        yield states
        now = time.time()
        stamps = [s.last_scrub_stamp for s in pgs if s.last_scrub_stamp]
        for name, help_, value in (
                ("loligo_osd_objects", "Objects of the PGs this OSD is primary of",
                 sum(s.num_objects for s in pgs)),
                ("loligo_osd_stored_bytes", "Logical bytes of the PGs this OSD is primary of",
                 sum(s.num_bytes for s in pgs)),
                ("loligo_osd_recovery_objects_left", "Object copies its PGs still have to "
                 "recover or backfill", sum(s.missing_objects for s in pgs)),
                ("loligo_osd_recovery_bytes_left", "Estimated bytes of those copies",
                 sum(s.missing_bytes for s in pgs)),
                ("loligo_osd_pgs_recovering", "Its PGs recovering or backfilling now",
                 sum(1 for s in pgs if "recover" in s.state or "backfill" in s.state)),
                ("loligo_osd_pgs_scrubbing", "Its PGs being scrubbed now",
                 sum(1 for s in pgs if "scrubbing" in s.state)),
                ("loligo_osd_scrub_errors", "Inconsistent objects its scrubs found",
                 sum(s.inconsistent_objects for s in pgs)),
                ("loligo_osd_oldest_scrub_age_seconds", "Time since its least recently "
                 "scrubbed PG was scrubbed", now - min(stamps) if stamps else 0.0)):
            yield GaugeMetricFamily(name, help_, value=value)
        yield CounterMetricFamily("loligo_osd_recovered_objects", "Object copies recovered "
                                  "or backfilled by its PGs", value=recovered[0])
        yield CounterMetricFamily("loligo_osd_recovered_bytes", "Bytes recovered or "
                                  "backfilled by its PGs", value=recovered[1])
        done = CounterMetricFamily("loligo_osd_scrubs", "Scrubs its PGs finished, by type",
                                   labels=["type"])
        for kind, n in scrubs.items():
            done.add_metric([kind], n)
        yield done
        if beacon is not None and beacon.HasField("usage"):
            u = beacon.usage
            for name, help_, value in (
                    ("loligo_osd_used_bytes", "What the OSD's store occupies", u.used_bytes),
                    ("loligo_osd_avail_bytes", "What the OSD can still use", u.avail_bytes),
                    ("loligo_osd_size_bytes", "The OSD's size (osd_capacity, or its file "
                     "system's)", u.total_bytes)):
                yield GaugeMetricFamily(name, help_, value=value)
