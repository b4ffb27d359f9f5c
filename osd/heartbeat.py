"""Heartbeats: an OSD pings the OSDs it shares PGs with (and a couple of others) and reports to
the monitors any that stay silent past their grace; the monitors mark a peer down once enough
distinct OSDs agree (mon_osd_min_down_reporters). A hung OSD (SIGSTOP) is caught this way as
surely as a dead one, and sooner than by its missing beacons.

Heartbeats run in their own thread with their own event loop, over plain TCP (osd.proto's
HeartbeatPing/Pong, length-prefixed), not through the OSD's gRPC server and busy event loop:
an OSD working flat out still answers its peers within milliseconds, so load alone never gets a
live OSD marked down. The grace adapts to what each peer has shown (`Peer.grace`, after Ceph's
laggy estimate): a peer that has been silent for a while and then answered again gets a longer
grace, in proportion to how often and how long it lagged; and time this thread itself could not
run (its own loop woke up late: the machine is starved) does not count as a peer's silence.

A dead process is still reported at once: when a peer's heartbeat port refuses a connection,
nothing listens there any more, and the report says so (`immediate`): the monitors mark it down
without waiting for a grace or a second reporter, as Ceph does with
osd_fast_fail_on_connection_refused (a kill -9 is down in about a second).

A report is repeated every interval while the peer stays silent (a new leader learns it too)
and withdrawn when the peer answers again. Peers' free space rides on the answers (a primary
refuses a write that would not fit on a member).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from rados_py.config import Config
from rados_py.errors import LoligoError
from rados_py.osdmap import OSDMap
from rados_py.proto.loligo import mon_pb2, osd_pb2

__all__ = ["HeartbeatThread", "Peer"]

log = logging.getLogger(__name__)
EXTRA_PEERS = 2        # random others pinged too, so a small failure domain is still watched
MAX_FRAME = 4096       # heartbeat messages are tiny: anything bigger is garbage
LAG_MEMORY = 0.8       # weight of the past in a peer's laggy estimates (per lag seen)
MAX_GRACE_FACTOR = 4.0  # a laggy peer's grace is at most this many base graces
_LEN = struct.Struct(">I")


@dataclass
class Peer:
    """What this OSD has seen of one peer's heartbeats; pure, driven by `HeartbeatThread`."""

    since: float                      # when watching started (or last answer)
    last_reply: float = 0.0
    laggy_probability: float = 0.0    # how often a silence longer than 2 intervals ended well
    laggy_interval: float = 0.0       # ...and how long such silences lasted
    reported: bool = False
    space: tuple[int, int] | None = None
    history: list[float] = field(default_factory=list)  # silences that ended (for tests/logs)

    def silent_for(self, now: float) -> float:
        return now - max(self.since, self.last_reply)

    def answered(self, now: float, interval: float) -> None:
        """A pong arrived: a long silence that ends in an answer was lag, not death."""
        silence = self.silent_for(now)
        lagged = silence > 2 * interval
        self.laggy_probability = (LAG_MEMORY * self.laggy_probability
                                  + (1 - LAG_MEMORY) * (1.0 if lagged else 0.0))
        if lagged:
            self.laggy_interval = (silence if not self.laggy_interval else
                                   LAG_MEMORY * self.laggy_interval + (1 - LAG_MEMORY) * silence)
            self.history.append(silence)
        self.last_reply = now

    def grace(self, base: float) -> float:
        """Ceph's laggy-adjusted grace: base + probability x interval of past lags, bounded."""
        return min(base * MAX_GRACE_FACTOR,
                   base + self.laggy_probability * self.laggy_interval)

    def shift(self, lag: float) -> None:
        """This OSD could not watch for `lag` seconds (its own thread ran late): that time is
        nobody's silence."""
        self.since += lag
        if self.last_reply:
            self.last_reply += lag


class HeartbeatThread:
    """The heartbeat responder and pinger of one OSD, in a thread of its own.

    `start()` binds the responder (its address is `addr`, for the boot message) and starts the
    thread; `set_targets` (from the OSD's loop, on every map) says whom to ping; failures are
    handed to `report` on the OSD's loop. `stop()` ends the thread."""

    def __init__(self, osd_id: int, config: Config, host: str,
                 report: Callable[[mon_pb2.OsdFailure], Awaitable[None]],
                 space: Callable[[], tuple[int, int] | None],
                 peer_space: dict[int, tuple[int, int]] | None = None) -> None:
        self.id = osd_id
        self.config = config
        self.host = host
        self.addr = ""
        self._report = report
        self._space = space
        self.peer_space = {} if peer_space is None else peer_space
        self.peers: dict[int, Peer] = {}
        self._targets: dict[int, str] = {}
        self._epoch = 0
        self._targets_lock = threading.Lock()
        self._main_loop: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._links: dict[int, _Link] = {}

    # --- from the OSD's loop ------------------------------------------------------------------
    async def start(self) -> str:
        self._main_loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-osd.{self.id}",
                                        daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._ready.wait, 30)
        if self._error is not None:
            raise self._error
        return self.addr

    def set_targets(self, osdmap: OSDMap, pg_peers: set[int]) -> None:
        """The peers to ping under this map: those sharing a PG, and EXTRA_PEERS others."""
        up = {o: s.heartbeat_addr for o, s in osdmap.osds.items()
              if s.up and s.heartbeat_addr and o != self.id}
        with self._targets_lock:
            extra = {o for o in self._targets if o in up and o not in pg_peers}
            others = sorted(set(up) - pg_peers - extra)
            while len(extra) < EXTRA_PEERS and others:
                extra.add(others.pop(random.randrange(len(others))))
            self._targets = {o: up[o] for o in (pg_peers & set(up)) | extra}
            self._epoch = osdmap.epoch

    async def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)

    # --- the thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # the OSD learns it at start, or logs it later
            self._error = exc
            self._ready.set()
            log.exception("osd.%d: heartbeat thread failed", self.id)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._serve, self.host, 0)
        port = server.sockets[0].getsockname()[1]
        self.addr = f"{self.host}:{port}"
        self._ready.set()
        interval = self.config.osd_heartbeat_interval
        expected = self._loop.time()
        try:
            while not self._stop.is_set():
                now = self._loop.time()
                lag = now - expected
                if lag > interval:  # we could not run: nobody's silence
                    for peer in self.peers.values():
                        peer.shift(lag)
                expected = now + interval
                self._tick(now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), interval)
        finally:
            server.close()
            for link in self._links.values():
                link.close()
            await server.wait_closed()

    def _tick(self, now: float) -> None:
        with self._targets_lock:
            targets, epoch = dict(self._targets), self._epoch
        for osd in [o for o in self.peers if o not in targets]:
            del self.peers[osd]      # down in the map, or no longer a peer: start afresh
            link = self._links.pop(osd, None)
            if link is not None:
                link.close()
        grace = self.config.osd_heartbeat_grace
        for osd, addr in targets.items():
            peer = self.peers.get(osd)
            if peer is None:
                peer = self.peers[osd] = Peer(since=now)
            link = self._links.get(osd)
            if link is None or link.addr != addr:
                if link is not None:
                    link.close()
                link = self._links[osd] = _Link(self, osd, addr)
            link.ping(epoch)
            silent = peer.silent_for(now)
            if silent > peer.grace(grace):
                if not peer.reported:
                    log.warning("osd.%d: osd.%d silent for %.1fs (grace %.1fs): reporting it "
                                "failed", self.id, osd, silent, peer.grace(grace))
                peer.reported = True
                self._send(mon_pb2.OsdFailure(reporter=self.id, target=osd, silent_for=silent,
                                              epoch=epoch))

    def pong(self, osd: int, msg: osd_pb2.HeartbeatPong) -> None:
        peer = self.peers.get(osd)
        if peer is None or self._loop is None:
            return
        peer.answered(self._loop.time(), self.config.osd_heartbeat_interval)
        if msg.has_space:
            self.peer_space[osd] = (msg.free_bytes, msg.reserve_bytes)
        if peer.reported:
            peer.reported = False
            log.info("osd.%d: osd.%d answers again: withdrawing the report", self.id, osd)
            self._send(mon_pb2.OsdFailure(reporter=self.id, target=osd, still_alive=True,
                                          epoch=self._epoch))

    def refused(self, osd: int) -> None:
        """Nothing listens at the peer's heartbeat port: its process is gone."""
        peer = self.peers.get(osd)
        if peer is None or self._loop is None:
            return
        if not peer.reported:
            log.warning("osd.%d: osd.%d refuses connections: reporting it dead", self.id, osd)
        peer.reported = True
        self._send(mon_pb2.OsdFailure(reporter=self.id, target=osd, epoch=self._epoch,
                                      silent_for=peer.silent_for(self._loop.time()),
                                      immediate=True))

    def _send(self, failure: mon_pb2.OsdFailure) -> None:
        """Hand a report to the OSD's loop (which holds the monitor client)."""
        loop = self._main_loop
        if loop is None or loop.is_closed():
            return

        async def deliver() -> None:
            try:
                await self._report(failure)
            except LoligoError as exc:
                log.info("osd.%d: failure report not delivered: %s", self.id, exc)
        with contextlib.suppress(RuntimeError):  # the OSD's loop is closing
            loop.call_soon_threadsafe(lambda: loop.create_task(deliver()))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one peer's pings until it hangs up (or sends garbage)."""
        try:
            while True:
                ping = osd_pb2.HeartbeatPing.FromString(await _read_frame(reader))
                if ping.fsid != self.config.fsid:
                    log.info("osd.%d: heartbeat from another cluster (fsid %s): hanging up",
                             self.id, ping.fsid)
                    return
                pong = osd_pb2.HeartbeatPong(osd=self.id, seq=ping.seq, epoch=self._epoch)
                space = self._space()
                if space is not None:
                    pong.has_space = True
                    pong.free_bytes, pong.reserve_bytes = max(0, space[0]), space[1]
                writer.write(_frame(pong.SerializeToString()))
        except (OSError, asyncio.IncompleteReadError, ValueError, EOFError,
                asyncio.CancelledError):  # gone, or this thread stopping: end quietly
            return
        except Exception as exc:  # a garbled message (DecodeError...): hang up
            log.info("osd.%d: bad heartbeat message: %s", self.id, exc)
        finally:
            writer.close()


class _Link:
    """The connection to one peer's heartbeat responder (reconnected as needed)."""

    def __init__(self, owner: HeartbeatThread, osd: int, addr: str) -> None:
        self.owner = owner
        self.osd = osd
        self.addr = addr
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._seq = 0

    def ping(self, epoch: int) -> None:
        if self._writer is None:
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._connect())
            return
        self._seq += 1
        msg = osd_pb2.HeartbeatPing(fsid=self.owner.config.fsid, from_osd=self.owner.id,
                                    epoch=epoch, seq=self._seq)
        try:
            self._writer.write(_frame(msg.SerializeToString()))
        except (OSError, RuntimeError):
            self._drop()

    async def _connect(self) -> None:
        host, _, port = self.addr.rpartition(":")
        timeout = max(self.owner.config.osd_heartbeat_interval * 2, 0.1)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)),
                                                    timeout)
        except ConnectionRefusedError:
            self.owner.refused(self.osd)
            return
        except (OSError, TimeoutError, ValueError) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
                self.owner.refused(self.osd)
            return
        self._writer = writer
        try:
            while True:
                pong = osd_pb2.HeartbeatPong.FromString(await _read_frame(reader))
                self.owner.pong(self.osd, pong)
        except (OSError, asyncio.IncompleteReadError, ValueError, EOFError):
            pass
        except Exception as exc:  # garbled answer
            log.info("osd.%d: bad heartbeat answer from osd.%d: %s", self.owner.id, self.osd,
                     exc)
        self._drop()

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> None:
        self._drop()
        if self._task is not None:
            self._task.cancel()


def _frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (n,) = _LEN.unpack(await reader.readexactly(_LEN.size))
    if n > MAX_FRAME:
        raise ValueError(f"a heartbeat message of {n} bytes")
    return await reader.readexactly(n)
