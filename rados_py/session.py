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

Outgoing = tuple[int, int, bytes]  # (tid, kind, serialised body)
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
    for tid, kind, body in frames:
        tid_part = b"\x08" + _varint(tid)
        body_head = bytes(((kind << 3) | 2,)) + _varint(len(body))
        parts += (b"\x0a", _varint(len(tid_part) + len(body_head) + len(body)), tid_part,
                  body_head, body)
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
            for _, _, body in self._queue:
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
    """The requesting end of one stream to one server; `call` from any task of one loop.

    `metadata()` gives the call metadata (fsid, ticket...) and is asked before each request;
    when it changes (a renewed ticket) a new stream opens for the following requests.
    """

    def __init__(self, channel: grpc.aio.Channel,
                 metadata: Callable[[], Awaitable[Sequence[tuple[str, str]]]], name: str) -> None:
        self.name = name
        self._open = channel.stream_stream(METHOD, request_serializer=None,
                                           response_deserializer=osd_pb2.FrameBatch.FromString)
        self._metadata = metadata
        self._tids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[osd_pb2.Frame], _Stream]] = {}
        self._stream: _Stream | None = None
        self._closed = False

    async def call(self, kind: int, body: bytes, timeout: float) -> osd_pb2.Frame:
        """Send one request; its reply frame (an `error` frame is raised as its typed error)."""
        if self._closed:
            raise rpc.Unavailable(f"{self.name}: session closed")
        md = await self._metadata()
        stream = self._stream
        if stream is None or stream.token != md:
            stream = self._start(md)
        loop = asyncio.get_running_loop()
        tid = next(self._tids)
        fut: asyncio.Future[osd_pb2.Frame] = loop.create_future()
        self._pending[tid] = (fut, stream)
        stream.inflight.add(tid)
        timer = loop.call_later(timeout, self._expire, tid, timeout)
        stream.writer.put((tid, kind, body))
        try:
            frame = await fut
        finally:
            timer.cancel()
            self._forget(tid)
        if frame.WhichOneof("body") == "error":
            raise rpc.error_from_reply(frame.error.family, frame.error.message)
        return frame

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
        if entry is not None:
            stream = entry[1]
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
                    if entry is not None and not entry[0].done():
                        entry[0].set_result(frame)
        except asyncio.CancelledError:
            stream.call.cancel()
            why = rpc.Unavailable(f"{self.name}: session closed")
        except grpc.aio.AioRpcError as err:
            why = (rpc.from_grpc_error(err, self.name)
                   if err.code() not in (grpc.StatusCode.UNAVAILABLE,
                                         grpc.StatusCode.CANCELLED)
                   else rpc.Unavailable(f"{self.name}: {err.code().name}: "
                                        f"{err.details() or ''}"))
        if self._stream is stream:
            self._stream = None
        stream.writer.close()
        stream.writer.task.cancel()
        for tid in list(stream.inflight):
            entry = self._pending.get(tid)
            if entry is not None and not entry[0].done():
                entry[0].set_exception(why)

    async def close(self) -> None:
        self._closed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.reader.cancel()
            stream.writer.task.cancel()
            for task in (stream.reader, stream.writer.task):
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
        self.writer.put((tid, kind, body))

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
