"""gRPC (grpc.aio) in one place: servers, channels, retries, credentials and the error table.

Daemons and clients never build a grpc server or channel themselves, so every connection gets
the same message limits, keepalive, cluster check and authentication:

- `make_server` returns a server that refuses, before any servicer runs, a request from another
  cluster (FAILED_PRECONDITION), without a valid ticket (UNAUTHENTICATED) or without the caps
  the method needs (PERMISSION_DENIED); servicers raise typed Loligo errors and the guard turns
  them into status codes with `_ERRORS`, the one table of the wire mapping (requests carried in
  a session, rados_py/session.py, travel as `error_reply` family names through the same table).
- `open_channel` + `ClientCredentials` attach fsid and ticket to every call, renewing the ticket
  before it expires; `call_with_retry` retries what is safe to retry and raises typed errors
  (`from_grpc_error`) whose one-line message says what to check.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from rados_py.auth import (
    SERVICES,
    AuthError,
    PermissionDenied,
    Ticket,
    authorize,
    check_key,
    check_op_kind,
    peek_ticket,
)
from rados_py.auth import verify_ticket as _verify_ticket
from rados_py.config import Config
from rados_py.errors import (
    AlreadyExists,
    ChecksumError,
    InvalidArgument,
    LoligoError,
    NotFound,
    NotPrimary,
    StaleEpoch,
    StoreFull,
    Timeout,
)

__all__ = ["FSID_KEY", "TICKET_KEY", "ClientCredentials", "RemoteError", "ResourceExhausted",
           "ServerAuth", "Unavailable", "WrongCluster", "call_with_retry", "current_ticket",
           "error_from_reply", "error_reply", "from_grpc_error", "make_server", "open_channel",
           "server_port", "stop_server",
           "to_grpc_status"]

log = logging.getLogger(__name__)

TICKET_KEY = "x-loligo-ticket"
FSID_KEY = "x-loligo-fsid"
EPOCH_KEY = "x-loligo-epoch"  # the sender's OSDMap epoch
VERIFIED_TICKETS = 4096  # verified tickets remembered by a server (then forgotten at once)
ERROR_KEY = "x-loligo-error"  # trailing metadata: the error family, for exact round trips
Code = grpc.StatusCode


class Unavailable(LoligoError):
    """The peer cannot be reached or is not serving (down, restarting, wrong address)."""


class ResourceExhausted(LoligoError):
    """A limit was hit: a message larger than rpc_max_message_size, too many requests."""


class WrongCluster(InvalidArgument):
    """The request carries another cluster's fsid (or none): the caller's config is wrong."""


class RemoteError(LoligoError):
    """An error of no Loligo family from the other side: a bug there, or a version mismatch."""


# The one table between error families and gRPC codes; first match wins, so subclasses come
# before their bases. Families sharing a code travel by name in ERROR_KEY to come back exact.
_ERRORS: tuple[tuple[type[LoligoError], Code], ...] = (
    (AuthError, Code.UNAUTHENTICATED),
    (PermissionDenied, Code.PERMISSION_DENIED),
    (WrongCluster, Code.FAILED_PRECONDITION),
    (NotPrimary, Code.FAILED_PRECONDITION),
    (StaleEpoch, Code.ABORTED),
    (NotFound, Code.NOT_FOUND),
    (AlreadyExists, Code.ALREADY_EXISTS),
    (ChecksumError, Code.DATA_LOSS),
    (StoreFull, Code.RESOURCE_EXHAUSTED),
    (InvalidArgument, Code.INVALID_ARGUMENT),
    (Timeout, Code.DEADLINE_EXCEEDED),
    (Unavailable, Code.UNAVAILABLE),
    (ResourceExhausted, Code.RESOURCE_EXHAUSTED),
    (RemoteError, Code.INTERNAL),
    (LoligoError, Code.UNKNOWN),
)
_BY_NAME = {cls.__name__: (cls, code) for cls, code in _ERRORS}
# Codes that arrive without a family name (made by gRPC itself, or by a foreign server).
_BY_CODE = {Code.UNAUTHENTICATED: AuthError, Code.PERMISSION_DENIED: PermissionDenied,
            Code.ABORTED: StaleEpoch, Code.NOT_FOUND: NotFound,
            Code.ALREADY_EXISTS: AlreadyExists, Code.DATA_LOSS: ChecksumError,
            Code.INVALID_ARGUMENT: InvalidArgument, Code.OUT_OF_RANGE: InvalidArgument,
            Code.DEADLINE_EXCEEDED: Timeout, Code.UNAVAILABLE: Unavailable,
            Code.RESOURCE_EXHAUSTED: ResourceExhausted}


def _family(exc: BaseException) -> tuple[type[LoligoError], Code] | None:
    return next(((cls, code) for cls, code in _ERRORS if isinstance(exc, cls)), None)


def to_grpc_status(exc: BaseException) -> grpc.StatusCode:
    """The status code a servicer's exception becomes (INTERNAL for a non-Loligo bug)."""
    found = _family(exc)
    return found[1] if found else Code.INTERNAL


def from_grpc_error(err: grpc.RpcError, address: str | None = None) -> LoligoError:
    """The typed Loligo error a failed call stands for, carrying the server's one-line message."""
    code = err.code() if callable(getattr(err, "code", None)) else Code.UNKNOWN
    details = (err.details() if callable(getattr(err, "details", None)) else None) or code.name
    trailers = err.trailing_metadata() if callable(getattr(err, "trailing_metadata", None)) else ()
    name = dict(trailers or ()).get(ERROR_KEY)
    known = _BY_NAME.get(name) if isinstance(name, str) else None
    cls = known[0] if known and known[1] == code else _BY_CODE.get(code, RemoteError)
    message = _one_line(details)
    if cls is RemoteError or (address and not known):
        message = f"{address or 'peer'}: {code.name}: {message}"
    exc = cls(message)
    exc.grpc_code = code  # type: ignore[attr-defined]
    return exc


def error_reply(exc: BaseException) -> tuple[str, str]:
    """(family, one-line message) of an error answered inside a session instead of a status."""
    found = _family(exc)
    if found is None:
        log.error("request failed", exc_info=exc)
        return RemoteError.__name__, f"internal error: {type(exc).__name__} (see the daemon's log)"
    return found[0].__name__, _one_line(str(exc)) or found[0].__name__


def error_from_reply(family: str, message: str) -> LoligoError:
    """The typed error an `error_reply` stands for (RemoteError for a family unknown here)."""
    known = _BY_NAME.get(family)
    return known[0](message) if known else RemoteError(f"{family}: {message}")


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


@dataclass(frozen=True)
class ServerAuth:
    """How a server checks callers: tickets signed with `service_secret`, caps for `service`.

    `method_ops` maps full method names ("/loligo.Osd/Read") to the permissions they need
    ("r", "w", "x", "rw", "*"); a method not listed needs `default_op`, so forgetting one fails
    closed. `open_methods` need no ticket (the auth handshake itself).
    """

    service: str
    service_secret: bytes = field(repr=False)
    method_ops: Mapping[str, str] = field(default_factory=dict)
    open_methods: frozenset[str] = frozenset()
    default_op: str = "*"
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        """Refuse a bad table when the daemon starts, not on its first request."""
        check_key(self.service_secret, "the service secret")
        if self.service not in SERVICES:
            raise InvalidArgument(f"unknown service {self.service!r}: services are "
                                  f"{', '.join(SERVICES)}")
        for op in (self.default_op, *self.method_ops.values()):
            check_op_kind(op)


_TICKET: contextvars.ContextVar[Ticket | None] = contextvars.ContextVar("loligo_ticket",
                                                                        default=None)


def current_ticket() -> Ticket | None:
    """The verified ticket of the request being served (None for open methods or no auth)."""
    return _TICKET.get()


class _Guard:
    """Cluster check, authentication, authorization and error mapping for every method.

    Each method's handler is wrapped once, when it is registered (`wrap`), not per call as a
    grpc.aio interceptor would: per call there is only `admit`, a scan of the metadata and a
    dict lookup of the ticket (its signature is verified once per token)."""

    def __init__(self, fsid: str, auth: ServerAuth | None) -> None:
        self.fsid = fsid
        self.auth = auth
        self._verified: dict[str, Ticket] = {}  # token -> its verified ticket

    def admit(self, method: str, metadata: Sequence[tuple[str, Any]] | None) -> Ticket | None:
        fsid = token = None
        for key, value in metadata or ():
            if key == FSID_KEY:
                fsid = value
            elif key == TICKET_KEY:
                token = value
        try:
            return self._admit(method, fsid, token)
        except LoligoError as exc:
            log.info("refused %s: %s", method, exc)
            raise

    def _admit(self, method: str, got: Any, token: Any) -> Ticket | None:
        if self.fsid and got != self.fsid:
            raise WrongCluster(f"wrong cluster: fsid {got}, this cluster is {self.fsid}" if got
                               else f"request has no fsid ({FSID_KEY}); this cluster is "
                               f"{self.fsid}")
        auth = self.auth
        if auth is None or method in auth.open_methods:
            return None
        if not token:
            raise AuthError(f"no ticket ({TICKET_KEY}) for {method}: authenticate with the "
                            "monitors first")
        now = auth.clock()
        ticket = self._verified.get(token)
        if ticket is None or ticket.expires_at <= now:
            # a client sends the same ticket on every call: verify its signature once
            ticket = _verify_ticket(auth.service_secret, str(token), now)
            if len(self._verified) >= VERIFIED_TICKETS:
                self._verified.clear()
            self._verified[token] = ticket
        authorize(ticket, auth.service, auth.method_ops.get(method, auth.default_op))
        return ticket

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        return _wrap(handler, method, self)


class _GuardedHandlers(grpc.GenericRpcHandler):
    """A generic handler whose methods are wrapped by the guard, once per method."""

    def __init__(self, inner: grpc.GenericRpcHandler, guard: _Guard) -> None:
        self._inner = inner
        self._guard = guard
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = self._inner.service(details)
            if handler is None:
                return None
            wrapped = self._wrapped[method] = self._guard.wrap(method, handler)
        return wrapped


async def _abort(context: grpc.aio.ServicerContext, method: str, exc: Exception) -> None:
    found = _family(exc)
    if found is None:
        log.exception("%s failed", method, exc_info=exc)
        found = (RemoteError, Code.INTERNAL)
        detail = f"internal error in {method}: {type(exc).__name__} (see the daemon's log)"
    else:
        detail = _one_line(str(exc)) or found[0].__name__
    await context.abort(found[1], detail, ((ERROR_KEY, found[0].__name__),))


class _Undecodable:
    """A request whose bytes are not its method's message (answered INVALID_ARGUMENT)."""

    def __init__(self, why: str) -> None:
        self.why = why


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """grpc answers a deserializer's exception itself (UNKNOWN, and a logged traceback):
    hand the servicer wrapper a marker instead, so bad bytes get a typed error."""
    if deserializer is None:
        return None

    def decode(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:  # DecodeError, or anything a custom codec raises
            return _Undecodable(str(exc) or type(exc).__name__)
    return decode


def _passthrough(serializer: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """A response may also be given already serialised (bytes: sent as they are)."""
    if serializer is None:
        return None

    def serialize(message: Any) -> bytes:
        return message if isinstance(message, bytes) else serializer(message)
    return serialize


async def response_items(result: Any) -> AsyncIterator[Any]:
    """What a streaming servicer method answers, whatever its kind: an async generator, a
    coroutine writing with context.write (nothing to yield), or a plain iterator (drawn in a
    thread: it may block)."""
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    elif inspect.isawaitable(result):
        await result
    else:
        end = object()
        it = iter(result)
        while (item := await asyncio.to_thread(next, it, end)) is not end:
            yield item


def _wrap(handler: grpc.RpcMethodHandler, method: str, guard: _Guard) -> grpc.RpcMethodHandler:
    """The same handler, run after the guard admitted the call, with typed errors mapped to
    statuses."""

    def begin(request: Any, context: grpc.aio.ServicerContext) -> None:
        _TICKET.set(guard.admit(method, context.invocation_metadata()))
        if isinstance(request, _Undecodable):
            raise InvalidArgument(f"{method}: the request is not a valid message "
                                  f"({request.why})")

    def unary(inner: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        if inspect.iscoroutinefunction(inner):
            async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    begin(request, context)
                    return await inner(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    await _abort(context, method, exc)
            return behavior

        async def blocking(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                begin(request, context)
                result = await asyncio.to_thread(inner, request, context)  # may block
                return await result if inspect.isawaitable(result) else result
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, method, exc)
        return blocking

    def streaming(inner: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                begin(request, context)
                async for item in response_items(inner(request, context)):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, method, exc)
        return behavior

    codec = {"request_deserializer": _tolerant(handler.request_deserializer),
             "response_serializer": _passthrough(handler.response_serializer)}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **codec)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **codec)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **codec)
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **codec)


def _common_options(config: Config) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", config.rpc_max_message_size),
            ("grpc.max_send_message_length", config.rpc_max_message_size),
            ("grpc.keepalive_time_ms", int(config.rpc_keepalive_interval * 1000)),
            ("grpc.keepalive_timeout_ms", int(config.rpc_keepalive_timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0)]


_PORTS: weakref.WeakKeyDictionary[grpc.aio.Server, int] = weakref.WeakKeyDictionary()


def make_server(bind: str, config: Config, auth: ServerAuth | None = None, *,
                handlers: Sequence[grpc.GenericRpcHandler] = (),
                interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> grpc.aio.Server:
    """A grpc.aio server listening on `bind` ("127.0.0.1:0" picks a port: see `server_port`).

    Call it from the running event loop; add servicers, then `await server.start()`. Requests
    are checked against `config.fsid` (when set) and, with `auth`, against tickets and caps;
    `interceptors` (metrics) see every request, those checks' refusals included.
    """
    interval_ms = int(config.rpc_keepalive_interval * 1000)
    # so_reuseport off: a second daemon on a taken port must fail, not share it silently.
    # Pings at our own keepalive interval must not count as abuse (GOAWAY too_many_pings).
    options = [*_common_options(config), ("grpc.so_reuseport", 0),
               ("grpc.http2.min_ping_interval_without_data_ms", interval_ms // 2)]
    guard = _Guard(config.fsid, auth)
    # interceptors cost an await per call: the guard wraps each method's handler instead
    server = grpc.aio.server(options=options, interceptors=list(interceptors) or None,
                             handlers=[_GuardedHandlers(h, guard) for h in handlers])
    # every servicer added later is guarded too, its methods wrapped once here (the generated
    # add_*Servicer_to_server functions register both ways)
    add_generic, add_registered = (server.add_generic_rpc_handlers,
                                   server.add_registered_method_handlers)
    server.add_generic_rpc_handlers = lambda hs: add_generic(  # type: ignore[method-assign]
        [_GuardedHandlers(h, guard) for h in hs])
    server.add_registered_method_handlers = (  # type: ignore[method-assign]
        lambda service, hs: add_registered(service, {
            name: guard.wrap(f"/{service}/{name}", h) for name, h in hs.items()}))
    try:
        port = server.add_insecure_port(bind)
    except RuntimeError as exc:
        raise Unavailable(f"cannot listen on {bind}: {_one_line(str(exc))}; is the port in use "
                          "or the address not on this host?") from None
    _PORTS[server] = port
    return server


def server_port(server: grpc.aio.Server) -> int:
    """The TCP port `make_server` bound (the real one when asked for port 0)."""
    return _PORTS[server]


async def stop_server(server: grpc.aio.Server, grace: float | None = None) -> None:
    """Stop accepting calls, let running ones finish for `grace` seconds, cancel the rest."""
    await server.stop(grace)


class ClientCredentials:
    """Adds fsid and ticket metadata to every call, renewing the ticket before it expires.

    `fetch_ticket` gets a fresh ticket token (normally: a proof to the monitors); it runs
    once `renew_fraction` of the ticket's lifetime has passed, one renewal at a time. Without
    it only the fsid is sent (for the auth handshake itself).
    """

    def __init__(self, fsid: str, fetch_ticket: Callable[[], Awaitable[str]] | None = None, *,
                 renew_fraction: float = 0.75, clock: Callable[[], float] = time.time,
                 epoch: Callable[[], int] | None = None) -> None:
        self.fsid = fsid
        # the sender's OSDMap epoch, sent with every call so a peer with a newer map can say so
        self._epoch = epoch
        self._fetch = fetch_ticket
        self._fraction = renew_fraction
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Renew before the next call (e.g. after an UNAUTHENTICATED answer)."""
        self._renew_at = 0.0

    async def ticket(self) -> str | None:
        """The current ticket token, renewed first when due."""
        if self._fetch is None:
            return None
        if self._token is None or self._clock() >= self._renew_at:
            async with self._lock:
                if self._token is None or self._clock() >= self._renew_at:
                    await self._renew(self._fetch)
        return self._token

    async def _renew(self, fetch: Callable[[], Awaitable[str]]) -> None:
        fetched_at = self._clock()
        try:
            token = await fetch()
        except LoligoError as exc:
            if self._token is None or fetched_at >= self._expires_at:
                raise
            log.warning("could not renew ticket, using the current one: %s", exc)
            return
        ticket = peek_ticket(token)
        lifetime = max(ticket.expires_at - ticket.issued_at, 0.0)
        # measured on our clock, not the monitor's, so clock skew does not matter
        self._token = token
        self._expires_at = fetched_at + lifetime
        self._renew_at = fetched_at + self._fraction * lifetime

    async def metadata(self) -> list[tuple[str, str]]:
        md = [(FSID_KEY, self.fsid)]
        if self._epoch is not None:
            md.append((EPOCH_KEY, str(self._epoch())))
        token = await self.ticket()
        return md if token is None else [*md, (TICKET_KEY, token)]

    async def stream_metadata(self) -> tuple[tuple[str, str], ...]:
        """What a session sends when its stream opens: fsid and ticket, no epoch (it changes
        often and the messages carry it); equal tuples mean the same credentials."""
        token = await self.ticket()
        fsid = (FSID_KEY, self.fsid)
        return (fsid,) if token is None else (fsid, (TICKET_KEY, token))

    def interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        return [kind(self) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]


class _WithMetadata:
    def __init__(self, creds: ClientCredentials) -> None:
        self.creds = creds

    async def _details(self, d: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        md = grpc.aio.Metadata(*(d.metadata or ()), *await self.creds.metadata())
        return grpc.aio.ClientCallDetails(d.method, d.timeout, md, d.credentials,
                                          d.wait_for_ready)


# grpc.aio files an interceptor under the first call kind it implements, hence one class each.
class _UnaryUnary(_WithMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):  # type: ignore[override]
        return await continuation(await self._details(details), request)


class _UnaryStream(_WithMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, details, request):  # type: ignore[override]
        return await continuation(await self._details(details), request)


class _StreamUnary(_WithMetadata, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, details, requests):  # type: ignore[override]
        return await continuation(await self._details(details), requests)


class _StreamStream(_WithMetadata, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, details, requests):  # type: ignore[override]
        return await continuation(await self._details(details), requests)


def open_channel(addr: str, config: Config, credentials: ClientCredentials | None = None, *,
                 intercept: bool = True) -> grpc.aio.Channel:
    """A channel to `addr` with the configured limits, keepalive and reconnect backoff.

    With `credentials`, every call carries them (through interceptors); `intercept=False`
    leaves that to the caller (sessions send them once, at the opening of their stream: an
    interceptor would put a queue between the caller and every message of a stream)."""
    options = [*_common_options(config),
               ("grpc.initial_reconnect_backoff_ms", max(1, int(config.rpc_retry_initial * 1000))),
               ("grpc.max_reconnect_backoff_ms", max(1, int(config.rpc_retry_max * 1000)))]
    interceptors = credentials.interceptors() if credentials and intercept else None
    return grpc.aio.insecure_channel(addr, options=options, interceptors=interceptors)


_RETRYABLE = frozenset({Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED})


async def call_with_retry(fn: Callable[..., Awaitable[Any]], request: Any, *, idempotent: bool,
                          config: Config, timeout: float | None = None,
                          attempt_timeout: float | None = None, address: str | None = None,
                          metadata: Sequence[tuple[str, str]] | None = None,
                          on_retry: Callable[[int, grpc.StatusCode, float], None] | None = None,
                          ) -> Any:
    """Call `fn(request, timeout=...)` (a stub method) and return its answer or a typed error.

    `timeout` (default rpc_timeout) bounds the whole call, retries included. An idempotent call
    that finds the peer UNAVAILABLE, or whose attempt ran into `attempt_timeout`, is retried up to
    rpc_retry_attempts times with exponential backoff and jitter; a non-idempotent one never is,
    since the first attempt may have been applied. `on_retry(attempt, code, pause)` observes.
    """
    loop = asyncio.get_running_loop()
    budget = config.rpc_timeout if timeout is None else timeout
    start = loop.time()
    deadline = start + budget
    pause = config.rpc_retry_initial
    where = address or "the peer"
    kwargs = {} if metadata is None else {"metadata": metadata}
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - loop.time()
        per_attempt = remaining if attempt_timeout is None else min(remaining, attempt_timeout)
        try:
            if remaining <= 0:
                raise Timeout(f"no answer from {where} within {budget:g}s")
            return await fn(request, timeout=per_attempt, **kwargs)
        except grpc.aio.AioRpcError as err:
            code = err.code()
            wait = pause * random.uniform(0.5, 1.0)
            if (idempotent and code in _RETRYABLE and attempt < config.rpc_retry_attempts
                    and loop.time() + wait < deadline):
                log.debug("%s: %s, retry %d in %.3fs", where, code.name, attempt, wait)
                if on_retry is not None:
                    on_retry(attempt, code, wait)
                await asyncio.sleep(wait)
                pause = min(pause * config.rpc_retry_backoff, config.rpc_retry_max)
                continue
            raise _final(err, where, attempt, loop.time() - start, budget) from None


def _final(err: grpc.aio.AioRpcError, where: str, attempts: int, elapsed: float,
           budget: float) -> LoligoError:
    code = err.code()
    tries = f"{attempts} attempt{'s' if attempts > 1 else ''} in {elapsed:.1f}s"
    exc: LoligoError
    if code == Code.UNAVAILABLE:
        exc = Unavailable(f"{where} unavailable after {tries}: {_one_line(err.details() or '')}"
                          "; check that the daemon there is running and that its address "
                          "(mon_host, OSD map) is right")
    elif code == Code.DEADLINE_EXCEEDED:
        exc = Timeout(f"no answer from {where} within {budget:g}s ({tries}); check that it is "
                      "up and not overloaded, or raise rpc_timeout")
    else:
        return from_grpc_error(err, where if where != "the peer" else None)
    exc.grpc_code = code  # type: ignore[attr-defined]
    return exc
