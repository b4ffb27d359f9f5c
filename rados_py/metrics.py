"""Prometheus metrics of every daemon (mon, osd, gateway, mgr, mds), in one place.

Each daemon owns one `DaemonMetrics`: its own registry (so tests may run several daemons in one
process), served at http://HOST:PORT/metrics where PORT is the daemon's own port plus
`metrics_port_offset`, with the process's CPU, memory and open files, and

- `rpc_interceptor()`: every gRPC method the daemon serves, counted by method and status code,
  timed in a histogram, with requests in flight (the queue depth) -- one line where the daemon
  makes its server; a `classify` function adds per-type counts for one method (the OSD's ops
  by kind, the monitor's commands by kind);
- a tiny hook API for code deep inside a daemon, which must not know about metrics objects:

      from rados_py import metrics
      metrics.observe("store_commit", seconds)          # a histogram sample
      metrics.inc("store_fsyncs")                       # a counter
      with metrics.timed("mds_journal_append"): ...      # time a block

  Every hook name is declared once in `HOOKS` (metric name, help, kind, buckets); a hook of a
  process without metrics (a tool, a unit test) costs one dict lookup and does nothing. An MDS
  (or any new daemon) adds its hooks to `HOOKS` and calls `DaemonMetrics(name).install()`.

Names follow Prometheus' conventions: `loligo_<daemon>_<what>_<unit>`, counters end in
`_total`, times are seconds and sizes bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from rados_py.rpc import response_items

__all__ = ["HOOKS", "LATENCY", "DaemonMetrics", "Hook", "inc", "observe", "timed"]

log = logging.getLogger(__name__)
# no `*_created` series beside every counter and histogram: clutter that Prometheus ignores
disable_created_metrics()

#: seconds: from a cached read (100 us) to a stalled op (10 s)
LATENCY = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
           1.0, 2.5, 5.0, 10.0)
VERSION = "0.1.0"


@dataclass(frozen=True)
class Hook:
    metric: str
    help: str
    kind: str = "histogram"  # or "counter"
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = LATENCY


#: every hook any daemon fires, by the short name the code uses
HOOKS: dict[str, Hook] = {
    "store_commit": Hook("loligo_osd_store_commit_latency_seconds", "One group commit of the "
                         "OSD's store: a batch of transactions made durable (one fsync)"),
    "store_transactions": Hook("loligo_osd_store_transactions_total", "Transactions the OSD's "
                               "store made durable", "counter"),
    "mds_request": Hook("loligo_mds_request_latency_seconds", "Metadata request service "
                        "time (loads and waits for other clients included), by operation",
                        labels=("op",)),
    "mds_requests": Hook("loligo_mds_requests_total", "Metadata requests answered, by "
                         "operation and result (ok or the errno's name)", "counter",
                         labels=("op", "result")),
    "mds_journal_append": Hook("loligo_mds_journal_append_latency_seconds", "One append to "
                              "the MDS journal: a batch of events made durable in RADOS"),
}

_installed: DaemonMetrics | None = None


def observe(hook: str, value: float, **labels: str) -> None:
    """A histogram sample for `hook` (a HOOKS name), in this process's daemon."""
    daemon = _installed
    if daemon is not None:
        daemon.hook(hook, labels).observe(value)


def inc(hook: str, amount: float = 1, **labels: str) -> None:
    daemon = _installed
    if daemon is not None:
        daemon.hook(hook, labels).inc(amount)


@contextlib.contextmanager
def timed(hook: str, **labels: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        observe(hook, time.perf_counter() - start, **labels)


class DaemonMetrics:
    """One daemon's metrics and its /metrics endpoint."""

    def __init__(self, daemon: str) -> None:
        self.daemon = daemon
        self.kind = daemon.partition(".")[0]
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, resident memory, open fds
        info = Gauge("loligo_daemon_info", "Constant 1, labelled with the daemon and version",
                     ["daemon", "version"], registry=r)
        info.labels(daemon, VERSION).set(1)
        self.started = Gauge("loligo_daemon_start_time_seconds", "When the daemon started "
                             "(Unix time)", registry=r)
        self.started.set_to_current_time()
        self._hooks: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._server: Any = None
        self._rpc: tuple[Counter, Histogram, Gauge] | None = None

    # --- families ---------------------------------------------------------------------------
    def counter(self, name: str, help_: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, help_, list(labels), registry=self.registry)

    def gauge(self, name: str, help_: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, help_, list(labels), registry=self.registry)

    def histogram(self, name: str, help_: str, labels: tuple[str, ...] = (),
                  buckets: tuple[float, ...] = LATENCY) -> Histogram:
        return Histogram(name, help_, list(labels), buckets=buckets, registry=self.registry)

    def collect_with(self, collector: Collector) -> None:
        """Families computed when scraped (from the daemon's own state; runs in the HTTP
        server's thread, so it must only read what the daemon publishes for it)."""
        self.registry.register(collector)

    def hook(self, name: str, labels: dict[str, str]) -> Any:
        """The metric behind hook `name` (created on first use)."""
        metric = self._hooks.get(name)
        if metric is None:
            spec = HOOKS[name]  # KeyError: declare the hook in HOOKS first
            with self._lock:
                metric = self._hooks.get(name)
                if metric is None:
                    metric = (self.histogram(spec.metric, spec.help, spec.labels, spec.buckets)
                              if spec.kind == "histogram"
                              else self.counter(spec.metric.removesuffix("_total"), spec.help,
                                                spec.labels))
                    self._hooks[name] = metric
        return metric.labels(**labels) if labels else metric

    def install(self) -> DaemonMetrics:
        """Make this the daemon the process's hooks go to (one daemon per process)."""
        global _installed
        _installed = self
        return self

    # --- serving ----------------------------------------------------------------------------
    def serve(self, host: str, port: int) -> None:
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)

    def serve_beside(self, addr: str, offset: int) -> int | None:
        """Serve on the port of `addr` ("host:port") + `offset` (0: not at all); the port, or
        None when there is none. A taken port costs only the endpoint, never the daemon."""
        if not offset:
            return None
        host, _, port = addr.rpartition(":")
        metrics_port = int(port) + offset
        try:
            self.serve(host.strip("[]") or "127.0.0.1", metrics_port)
        except OSError as exc:
            log.warning("%s: no metrics endpoint on port %d: %s", self.daemon, metrics_port,
                        exc)
            return None
        log.info("%s: metrics on http://%s:%d/metrics", self.daemon, host, metrics_port)
        return metrics_port

    def close(self) -> None:
        global _installed
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if _installed is self:
            _installed = None

    # --- gRPC ---------------------------------------------------------------------------------
    def rpc_interceptor(self, classify: dict[str, Callable[[Any], str]] | None = None,
                        observe_op: Callable[[str, Any, Any, float], None] | None = None
                        ) -> grpc.aio.ServerInterceptor:
        """Counts, times and tracks in flight every method this daemon serves.

        `observe_op(method, request, reply_or_None, seconds)` sees each finished unary call
        (a daemon's per-type figures: the OSD's ops by kind and their bytes)."""
        if self._rpc is None:
            prefix = f"loligo_{self.kind}_rpc"
            self._rpc = (
                self.counter(f"{prefix}_requests", "RPCs served, by method and status code",
                             ("method", "code")),
                self.histogram(f"{prefix}_latency_seconds", "RPC service time, by method",
                               ("method",)),
                self.gauge(f"{prefix}_in_flight", "RPCs being served now, by method",
                           ("method",)))
        return _Interceptor(*self._rpc, observe_op)


def _method_name(full: str) -> str:
    """/loligo.Osd/Op -> Osd.Op"""
    service, _, method = full.rpartition("/")
    return f"{service.rpartition('.')[2]}.{method}"


class _Interceptor(grpc.aio.ServerInterceptor):
    def __init__(self, requests: Counter, latency: Histogram, in_flight: Gauge,
                 observe_op: Callable[[str, Any, Any, float], None] | None) -> None:
        self.requests = requests
        self.latency = latency
        self.in_flight = in_flight
        self.observe_op = observe_op
        self._per_method: dict[str, tuple[Any, Any, dict[str, Any]]] = {}

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails],
                                                             Awaitable[grpc.RpcMethodHandler]],
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        method = _method_name(details.method)
        per_method = self._per_method.get(method)
        if per_method is None:  # labels() once per method, not per call
            per_method = self._per_method[method] = (self.latency.labels(method),
                                                     self.in_flight.labels(method), {})
        latency, gauge, by_code = per_method
        observe_op = self.observe_op

        def done(start: float, code: str) -> float:
            seconds = time.perf_counter() - start
            gauge.dec()
            latency.observe(seconds)
            counter = by_code.get(code)
            if counter is None:
                counter = by_code[code] = self.requests.labels(method, code)
            counter.inc()
            return seconds

        def unary(inner: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
            threaded = not inspect.iscoroutinefunction(inner)

            async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
                start = time.perf_counter()
                gauge.inc()
                reply, code = None, "OK"
                try:
                    if threaded:  # a blocking servicer runs in a thread, as rpc.py runs it
                        reply = await asyncio.to_thread(inner, request, context)
                        if inspect.isawaitable(reply):
                            reply = await reply
                    else:
                        reply = await inner(request, context)
                    return reply
                except BaseException as exc:
                    code = _code_of(exc, context)
                    raise
                finally:
                    seconds = done(start, code)
                    if observe_op is not None:
                        with contextlib.suppress(Exception):  # metrics never fail a request
                            observe_op(method, request, reply, seconds)
            return behavior

        def streaming(inner: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
            async def behavior(request: Any, context: grpc.aio.ServicerContext
                               ) -> AsyncIterator[Any]:
                start = time.perf_counter()
                gauge.inc()
                code = "OK"
                try:
                    async for item in response_items(inner(request, context)):
                        yield item
                except BaseException as exc:
                    code = _code_of(exc, context)
                    raise
                finally:
                    done(start, code)
            return behavior

        codec = {"request_deserializer": handler.request_deserializer,
                 "response_serializer": handler.response_serializer}
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **codec)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **codec)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream),
                                                        **codec)
        return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **codec)


def _code_of(exc: BaseException, context: grpc.aio.ServicerContext) -> str:
    """The status code the call ends with: a typed Loligo error's (as rpc.py maps it), one a
    servicer aborted with, or CANCELLED."""
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED"
    if isinstance(exc, grpc.aio.AbortError):
        with contextlib.suppress(Exception):
            code = context.code()
            if code is not None:
                return getattr(code, "name", str(code))
        return "UNKNOWN"
    from rados_py.rpc import to_grpc_status

    return to_grpc_status(exc).name
