"""Sessions: many requests over one long-lived gRPC stream, sent in batches (the data path).

A unary gRPC call costs ~400 µs of CPU on each side in Python whatever it carries, and a stream
message ~250 µs; both are fixed costs. So the data path (client -> primary `Op`, primary ->
replica `RepOp`) does not make a call per op: each pair of processes keeps one bidirectional
stream (`Osd/Session`), and each stream message is a `FrameBatch` holding every frame that was
ready when the sender's writer woke up. At 16 ops in flight a message carries several ops and
the per-message cost is shared; at one op in flight nothing waits for company (no Nagle delay).

- `Session` is the requester's end: `call(kind, body)` sends one request frame and returns
  the reply frame with its tid. Credentials (fsid, ticket) travel once, when the stream opens;
  a renewed ticket opens a new stream (the old one finishes what it carries). A broken stream
  fails every request in flight with `Unavailable` (the caller decides whether to resend:
  clients resend with the same client id and tid, which the OSD deduplicates).
- `serve` is the server's end: it reads batches, hands each frame to a dispatcher in arrival
  order, and writes the replies the dispatcher sends, batched the same way.

Frames of one stream arrive in the order they were sent. Encoding is by hand where it saves a
copy: a frame is its tid, its kind (the field number of the body) and the body's serialised
bytes, and a batch is those laid out as protobuf's wire format for `repeated Frame` in one join.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import grpc.aio

from rados_py import rpc
from rados_py.auth import AuthError
from rados_py.errors import InvalidArgument, LoligoError, Timeout
from rados_py.proto.loligo import osd_pb2

__all__ = ["COUNTERS", "ERROR", "OP", "OP_REPLY", "REP_OP", "REP_OP_REPLY", "Replier", "Session",
           "encode_batch", "serve"]

log = logging.getLogger(__name__)

# frame kinds: the field number of the body in `Frame`
OP, OP_REPLY, REP_OP, REP_OP_REPLY, ERROR = 2, 3, 4, 5, 6
METHOD = "/loligo.Osd/Session"
BATCH_BYTES = 4 << 20  # a writer stops adding frames to a batch past this (one frame may exceed)

Outgoing = tuple[int, int, bytes, int]  # (tid, kind, serialised body, timeout in ms)
_REFUSED = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                      grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT,
                      grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNIMPLEMENTED})
# this process's session traffic: stream messages (each one costs a gRPC message) and frames
COUNTERS: Counter[str] = Counter()


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_batch(frames: Sequence[Outgoing]) -> bytes:
    """The `FrameBatch` wire bytes of these frames, the bodies copied once."""
    parts: list[bytes] = []
    for tid, kind, body, timeout_ms in frames:
        head = b"\x08" + _varint(tid)
        if timeout_ms:
            head += b"\x38" + _varint(timeout_ms)
        body_head = bytes(((kind << 3) | 2,)) + _varint(len(body))
        parts += (b"\x0a", _varint(len(head) + len(body_head) + len(body)), head, body_head,
                  body)
    return b"".join(parts)


class _Writer:
    """Frames queued for one stream, written by one task as batches."""

    def __init__(self, write: Callable[[bytes], Awaitable[Any]], name: str) -> None:
        self._write = write
        self._queue: list[Outgoing] = []
        self._wake: asyncio.Future[None] | None = None
        self._closed = False
        self.task = asyncio.get_running_loop().create_task(self._run(), name=name)

    def put(self, frame: Outgoing) -> None:
        self._queue.append(frame)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def close(self) -> None:
        """Write what is queued, then stop."""
        self._closed = True
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
                continue
            take, size = 0, 0
            for _, _, body, _ in self._queue:
                if take and size + len(body) > BATCH_BYTES:
                    break
                take += 1
                size += len(body)
            batch, self._queue = self._queue[:take], self._queue[take:]
            COUNTERS["session_messages_sent"] += 1
            COUNTERS["session_frames_sent"] += take
            await self._write(encode_batch(batch))


class _Stream:
    """One open stream of a session, with its reader and writer."""

    def __init__(self, call: Any, token: Any, session: Session) -> None:
        self.call = call
        self.token = token
        self.inflight: set[int] = set()
        self.retired = False
        self.writer = _Writer(call.write, f"session-write {session.name}")
        self.reader = asyncio.get_running_loop().create_task(session._read(self),
                                                             name=f"session-read {session.name}")


class Session:
    """The requesting end of one stream to one server, used from one event loop.

    `send` queues a request at once and returns the future of its reply: requests leave in the
    order they were sent (a primary's RepOps reach a replica in log order). `metadata()` gives
    the stream's credentials (fsid, ticket); it is asked again every RECHECK seconds, and when it
    changes (a renewed ticket) a new stream opens for the requests after that (the old one
    finishes what it carries).
    """

    RECHECK = 5.0

    def __init__(self, channel: grpc.aio.Channel,
                 metadata: Callable[[], Awaitable[Sequence[tuple[str, str]]]], name: str, *,
                 recheck: float = RECHECK) -> None:
        self.name = name
        self.recheck = recheck
        self._open = channel.stream_stream(METHOD, request_serializer=None,
                                           response_deserializer=osd_pb2.FrameBatch.FromString)
        self._metadata = metadata
        self._tids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[osd_pb2.Frame], asyncio.TimerHandle,
                                       _Stream | None]] = {}
        self._queue: list[Outgoing] = []      # sent while the stream is (re)opening
        self._stream: _Stream | None = None
        self._fresh_until = 0.0               # credentials checked until then
        self._opening: asyncio.Task[None] | None = None
        self._closed = False

    async def call(self, kind: int, body: bytes, timeout: float) -> osd_pb2.Frame:
        """Send one request and wait for its reply frame (an `error` frame is raised as its
        typed error; a broken stream as Unavailable; no reply in time as Timeout)."""
        return await self.send(kind, body, timeout)

    def send(self, kind: int, body: bytes, timeout: float) -> asyncio.Future[osd_pb2.Frame]:
        """Queue one request now; the future of its reply frame (see `call`)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[osd_pb2.Frame] = loop.create_future()
        if self._closed:
            fut.set_exception(rpc.Unavailable(f"{self.name}: session closed"))
            return fut
        tid = next(self._tids)
        timer = loop.call_later(timeout, self._expire, tid, timeout)
        self._pending[tid] = (fut, timer, None)
        fut.add_done_callback(lambda _: self._forget(tid))
        self._queue.append((tid, kind, body, max(1, int(timeout * 1000))))
        self._flush()
        return fut

    def _flush(self) -> None:
        stream = self._stream
        if (stream is None or self._opening is not None
                or asyncio.get_running_loop().time() >= self._fresh_until):
            if self._opening is None:
                self._opening = asyncio.get_running_loop().create_task(self._refresh())
            return
        self._put_queued(stream)

    def _put_queued(self, stream: _Stream) -> None:
        queue, self._queue = self._queue, []
        for frame in queue:
            entry = self._pending.get(frame[0])
            if entry is None:  # timed out while the stream was opening
                continue
            self._pending[frame[0]] = (entry[0], entry[1], stream)
            stream.inflight.add(frame[0])
            stream.writer.put(frame)

    async def _refresh(self) -> None:
        """Check the credentials, (re)open the stream if needed, then send what waited."""
        try:
            md = await self._metadata()
        except LoligoError as exc:
            self._opening = None
            queue, self._queue = self._queue, []
            for tid, _, _, _ in queue:
                entry = self._pending.get(tid)
                if entry is not None and not entry[0].done():
                    entry[0].set_exception(exc)
            return
        if self._closed:
            return
        if self._stream is None or self._stream.token != md:
            self._start(md)
        self._fresh_until = asyncio.get_running_loop().time() + self.recheck
        self._opening = None
        assert self._stream is not None
        self._put_queued(self._stream)

    def _start(self, md: Sequence[tuple[str, str]]) -> _Stream:
        old = self._stream
        self._stream = _Stream(self._open(metadata=md), md, self)
        if old is not None:  # a renewed ticket: the old stream ends once it has answered
            old.retired = True
            old.writer.close()
            if not old.inflight:
                old.reader.cancel()
        return self._stream

    def _expire(self, tid: int, timeout: float) -> None:
        entry = self._pending.get(tid)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(Timeout(f"no answer from {self.name} within {timeout:.3g}s"))

    def _forget(self, tid: int) -> None:
        entry = self._pending.pop(tid, None)
        if entry is None:
            return
        entry[1].cancel()
        stream = entry[2]
        if stream is not None:
            stream.inflight.discard(tid)
            if stream.retired and not stream.inflight:
                stream.reader.cancel()

    async def _read(self, stream: _Stream) -> None:
        why: LoligoError
        try:
            while True:
                batch = await stream.call.read()
                if batch is grpc.aio.EOF:
                    why = rpc.Unavailable(f"{self.name}: the stream ended")
                    break
                COUNTERS["session_messages_received"] += 1
                COUNTERS["session_frames_received"] += len(batch.frames)
                for frame in batch.frames:
                    entry = self._pending.get(frame.tid)
                    if entry is None or entry[0].done():
                        continue
                    if frame.WhichOneof("body") == "error":
                        entry[0].set_exception(rpc.error_from_reply(frame.error.family,
                                                                    frame.error.message))
                    else:
                        entry[0].set_result(frame)
        except asyncio.CancelledError:
            stream.call.cancel()
            why = rpc.Unavailable(f"{self.name}: session closed")
        except grpc.aio.AioRpcError as err:
            # the stream's own status says why the server refused it (credentials, cluster,
            # a bad message); anything else (reset, killed peer, INTERNAL from the core) is a
            # broken stream, which the caller may resend over a new one
            why = (rpc.from_grpc_error(err, self.name) if err.code() in _REFUSED
                   else rpc.Unavailable(f"{self.name}: the stream broke: {err.code().name}: "
                                        f"{err.details() or ''}"))
        if self._stream is stream:
            self._stream = None
        stream.writer.close()
        stream.writer.task.cancel()
        for tid in list(stream.inflight):
            entry = self._pending.get(tid)
            if entry is not None and not entry[0].done():
                entry[0].set_exception(why)

    async def close(self, grace: float = 1.0) -> None:
        """End the session: half-close the stream and let the server end it (a stream cut
        while grpc still writes to it can cost the process a SIGPIPE where SIGPIPE kills)."""
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
        stream, self._stream = self._stream, None
        for fut, _, _ in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(rpc.Unavailable(f"{self.name}: session closed"))
        if stream is None:
            return
        stream.writer.close()
        try:
            await asyncio.wait_for(asyncio.shield(stream.writer.task), grace)
            await asyncio.wait_for(stream.call.done_writing(), grace)
            await asyncio.wait_for(asyncio.shield(stream.reader), grace)
        except (TimeoutError, asyncio.CancelledError, grpc.aio.AioRpcError, LoligoError):
            pass
        for task in (stream.reader, stream.writer.task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class Replier:
    """The server's end of one stream: `send` queues a reply frame; `spawn` runs a request
    concurrently with the next ones (a stream closed by its requester waits for them; one
    that broke does not cancel them: a write in flight completes, its answer is dropped)."""

    def __init__(self, context: grpc.aio.ServicerContext, name: str) -> None:
        self.writer = _Writer(context.write, f"session-reply {name}")
        self.ticket = rpc.current_ticket()
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def send(self, tid: int, kind: int, body: bytes) -> None:
        self.writer.put((tid, kind, body, 0))

    def fail(self, tid: int, exc: BaseException) -> None:
        family, message = rpc.error_reply(exc)
        self.send(tid, ERROR, osd_pb2.ErrorReply(family=family,
                                                 message=message).SerializeToString())


Dispatch = Callable[[osd_pb2.Frame, Replier], Awaitable[None] | None]


async def serve(requests: Any, context: grpc.aio.ServicerContext, dispatch: Dispatch,
                name: str) -> None:
    """Serve one stream: each frame goes to `dispatch(frame, replier)` in arrival order (a
    dispatcher returning an awaitable holds back the frames after it until it is done); the
    replies it sends are batched back. Ends when the requester closes its side."""
    replier = Replier(context, name)
    serving = asyncio.current_task()

    def writer_done(task: asyncio.Task[None]) -> None:
        if serving is not None and not task.cancelled() and task.exception() is not None:
            serving.cancel()  # replies cannot be written: end the stream (the requester sees it)
    replier.writer.task.add_done_callback(writer_done)
    try:
        async for batch in requests:
            if not isinstance(batch, osd_pb2.FrameBatch):
                raise InvalidArgument(f"{METHOD}: a message is not a FrameBatch")
            ticket = replier.ticket
            if ticket is not None and ticket.expires_at <= time.time():
                raise AuthError("the session's ticket expired: open a new session")
            COUNTERS["session_messages_received"] += 1
            COUNTERS["session_frames_received"] += len(batch.frames)
            for frame in batch.frames:
                pending = dispatch(frame, replier)
                if pending is not None:
                    await pending
        if replier.tasks:  # closed by the requester: answer what it is still waiting for
            await asyncio.wait(list(replier.tasks))
    except asyncio.CancelledError:
        task = replier.writer.task
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception() from None  # type: ignore[misc]
        raise
    finally:
        replier.writer.close()
        try:
            await replier.writer.task
        except Exception as exc:  # the requester went away: nothing to answer
            log.debug("%s: session ended: %s", name, exc)
