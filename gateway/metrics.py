"""The gateway's Prometheus metrics (on its port + metrics_port_offset): every HTTP request
counted by API (s3, swift), method and status, timed by API and method, with the bytes it
brought and took away and how many are being served -- one aiohttp middleware, outermost, so
it sees every answer, errors included."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway import swift_server
from rados_py.metrics import DaemonMetrics

__all__ = ["GatewayMetrics"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: request service time: up to minutes for a large object over a slow link
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
           60.0, 300.0)


def api_of(request: web.Request) -> str:
    kind = swift_server.classify(request.method, request.raw_path.split("?")[0],
                                 list(request.query.items()),
                                 {k.lower(): v for k, v in request.headers.items()})
    return "s3" if kind is None else ("swift" if kind == "api" else f"swift_{kind}")


class GatewayMetrics:
    def __init__(self, name: str) -> None:
        self.daemon = DaemonMetrics(name).install()
        m = self.daemon
        self.requests = m.counter("loligo_gateway_requests", "HTTP requests answered, by API, "
                                  "method and status", ("api", "method", "status"))
        self.latency = m.histogram("loligo_gateway_request_latency_seconds", "Time from a "
                                   "request's arrival to its last byte sent, by API and "
                                   "method", ("api", "method"), buckets=BUCKETS)
        self.received = m.counter("loligo_gateway_received_bytes", "Request bodies received, "
                                  "by API", ("api",))
        self.sent = m.counter("loligo_gateway_sent_bytes", "Response bodies sent, by API",
                              ("api",))
        self.in_flight = m.gauge("loligo_gateway_requests_in_flight", "Requests being served "
                                 "now")

    def install(self, app: web.Application) -> None:
        """Measure every request of `app` (before it starts serving)."""
        app.middlewares.insert(0, self.middleware)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        api = api_of(request)
        method = request.method if request.method in _METHODS else "OTHER"
        self.in_flight.inc()
        status = "500"
        try:
            response = await handler(request)
            status = str(response.status)
            self.sent.labels(api).inc(_body_size(response))
            return response
        except web.HTTPException as exc:
            status = str(exc.status)
            raise
        except ConnectionError:
            status = "499"  # nginx's word: the client went away before the answer
            raise
        finally:
            self.in_flight.dec()
            self.received.labels(api).inc(request.content_length or 0)
            self.requests.labels(api, method, status).inc()
            self.latency.labels(api, method).observe(time.perf_counter() - start)

    def serve_beside(self, addr: str, offset: int) -> int | None:
        return self.daemon.serve_beside(addr, offset)

    def close(self) -> None:
        self.daemon.close()


def _body_size(response: web.StreamResponse) -> int:
    """Bytes of the body: streamed already, or about to be written (a plain Response)."""
    if response.body_length:
        return response.body_length
    body = getattr(response, "body", None)
    return len(body) if isinstance(body, bytes | bytearray) else 0


_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "COPY", "PATCH"})
