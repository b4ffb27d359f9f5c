"""The client side of the monitors: authenticate, send commands, fetch and follow the maps.

Every daemon and client talks to the monitors through `MonClient`, so the rules that keep the
cluster's memory correct live in one place:

- A command gets a request id (`<client uuid>:<tid>`) once, and every resend -- to the leader a
  follower names, to the next monitor after one went down, after a timeout -- carries that same
  id: the monitors apply a request id at most once, so retrying is always safe.
- Any monitor can authenticate us (they all hold the keys); the ticket is renewed before it
  expires by `rpc.ClientCredentials`, and once more if a monitor says it is no longer valid.
- Every operation has one deadline (`rpc_timeout` unless given). When it passes without a
  quorum the error says, per monitor, what was seen, and where to look next.
- `subscribe()` follows the maps across monitor failures: it reconnects to another monitor and
  resumes from the epoch it has, never yielding an epoch older than one it yielded.

`MonClientSync` wraps it for the command line, which has no event loop of its own.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import grpc
import grpc.aio

from rados_py import auth, rpc
from rados_py.auth import Keyring
from rados_py.config import Config
from rados_py.errors import InvalidArgument, LoligoError, NotFound, Timeout
from rados_py.maps_wire import mdsmap_from_proto, monmap_from_proto, osdmap_from_proto
from rados_py.mdsmap import MDSMap
from rados_py.monmap import MonMap
from rados_py.osdmap import OSDMap
from rados_py.proto.loligo import mon_pb2, mon_pb2_grpc

__all__ = ["ClusterStatus", "CommandRefused", "Maps", "MonClient", "MonClientSync", "check_result"]

log = logging.getLogger(__name__)

Code = grpc.StatusCode
ENOENT, EBUSY, EEXIST, EINVAL = 2, 16, 17, 22
HINT = "check `loligo cluster info` and the monitor logs"
# A leader may hold the command in its log and commit it once a majority is back.
UNKNOWN_OUTCOME = "the command may still take effect once a quorum forms; "
# Answers that say "this monitor cannot serve now, another may": hunt on. Any other error is
# the monitors' considered answer (or a bug there) and is raised at once.
_HUNT = frozenset({Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.CANCELLED})
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("mon_deadline",
                                                                         default=None)
T = TypeVar("T")
_COMMANDS = frozenset(f.name for f in mon_pb2.MonCommand.DESCRIPTOR.oneofs_by_name["cmd"].fields)


class CommandRefused(LoligoError):
    """The monitors refused a command on the cluster's state (EEXIST, EBUSY...): `code` is
    the negative errno, the message is the monitors' own."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


class Maps(NamedTuple):
    """The maps at one moment."""

    monmap: MonMap
    osdmap: OSDMap
    mdsmap: MDSMap = MDSMap()


@dataclass(frozen=True)
class ClusterStatus:
    """What the monitors say about themselves, asked of every one of them.

    `view` is the leader's answer when the leader answered (`from_leader`), else the answer of
    the monitor with the newest term, so a cluster without quorum can still be described.
    """

    view: mon_pb2.MonStatus
    from_leader: bool
    answered: dict[str, mon_pb2.MonStatus]
    unreachable: dict[str, str] = field(default_factory=dict)  # name -> what went wrong

    @property
    def leader(self) -> str:
        return self.view.leader


def check_result(result: mon_pb2.CommandResult) -> mon_pb2.CommandResult:
    """The result if it succeeded, else the typed error its errno stands for."""
    code = result.code
    if code == 0:
        return result
    message = result.message or f"command failed with errno {-code}"
    exc: LoligoError
    if code == -ENOENT:
        exc = NotFound(message)
    elif code == -EINVAL:
        exc = InvalidArgument(message)
    else:
        exc = CommandRefused(code, message)
    exc.code = code  # type: ignore[attr-defined]  # the errno, whichever family
    raise exc


class _Mon(NamedTuple):
    name: str
    addr: str


class MonClient:
    """Talks to the monitors of `config.mon_host` as `config.entity`, with its key from
    `keyring`. Use from one event loop; `close()` releases the connections."""

    def __init__(self, config: Config, keyring: Keyring, *,
                 attempt_timeout: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if not config.mon_host:
            raise InvalidArgument(f"no monitors configured (mon_host is empty in "
                                  f"{config.source or 'the configuration'})")
        if not config.fsid:
            raise InvalidArgument(f"no fsid configured in {config.source or 'the configuration'}")
        self.config = config
        self.entity = config.entity
        self._key = keyring.key(self.entity)
        self._clock = clock
        self._mons = [_Mon(m.name, m.addr) for m in config.mon_host]
        # A hung monitor must not eat the whole budget: try another after this long.
        self._attempt_timeout = attempt_timeout or max(0.5, config.rpc_timeout / 3)
        self._creds = rpc.ClientCredentials(config.fsid, self._fetch_ticket, clock=clock,
                                            epoch=self._epoch)
        self._anon = rpc.ClientCredentials(config.fsid)  # the Auth handshake needs no ticket
        self._stubs: dict[tuple[str, bool], tuple[grpc.aio.Channel, mon_pb2_grpc.MonStub]] = {}
        self._client_id = uuid.uuid4().hex
        self._tids = itertools.count(1)
        self._leader: str | None = None  # address of the last monitor that led for us
        # where hunting starts: random to spread clients, then sticky while it answers
        self._next = random.randrange(len(self._mons))
        self._maps: Maps | None = None
        self._acked_epoch = 0  # newest epoch a command of ours was answered with

    # --- connections --------------------------------------------------------------------------
    def _stub(self, addr: str, *, anonymous: bool = False) -> mon_pb2_grpc.MonStub:
        key = (addr, anonymous)
        if key not in self._stubs:
            creds = self._anon if anonymous else self._creds
            channel = rpc.open_channel(addr, self.config, creds)
            self._stubs[key] = (channel, mon_pb2_grpc.MonStub(channel))
        return self._stubs[key][1]

    def _name(self, addr: str) -> str:
        known = {m.addr: m.name for m in self._mons}
        if self._maps is not None:
            known.update({a: n for n, a in self._maps.monmap.mons})
        return known.get(addr, addr)

    def _label(self, addr: str) -> str:
        name = self._name(addr)
        return addr if name == addr else f"{name} ({addr})"

    def _hunt_order(self) -> list[str]:
        """Every monitor once: the last leader first, then from the one that last answered."""
        start = self._next
        addrs = [m.addr for m in self._mons[start:] + self._mons[:start]]
        if self._leader in addrs:
            addrs.remove(self._leader)
            addrs.insert(0, self._leader)
        return addrs

    def _failed(self, addr: str) -> None:
        """Start the next hunt after `addr`, so a dead monitor is not everyone's first try."""
        if self._leader == addr:
            self._leader = None
        index = next((i for i, m in enumerate(self._mons) if m.addr == addr), None)
        if index is not None and index == self._next:
            self._next = (index + 1) % len(self._mons)

    async def close(self) -> None:
        stubs, self._stubs = self._stubs, {}
        await asyncio.gather(*(channel.close() for channel, _ in stubs.values()))

    async def __aenter__(self) -> MonClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- authentication -----------------------------------------------------------------------
    def _budget(self, timeout: float | None) -> tuple[float, float]:
        budget = self.config.rpc_timeout if timeout is None else timeout
        return budget, asyncio.get_running_loop().time() + budget

    async def connect(self, timeout: float | None = None) -> None:
        """Authenticate to any reachable monitor; later calls reuse and renew the ticket."""
        _, deadline = self._budget(timeout)
        await self._ensure_ticket(deadline)

    async def _ensure_ticket(self, deadline: float) -> None:
        token = _DEADLINE.set(deadline)
        try:
            await self._creds.ticket()
        finally:
            _DEADLINE.reset(token)

    async def _fetch_ticket(self) -> str:
        """Trade a fresh proof of our key for a ticket, with any monitor that answers."""
        loop = asyncio.get_running_loop()
        deadline = _DEADLINE.get() or loop.time() + self.config.rpc_timeout
        budget = max(0.0, deadline - loop.time())
        seen: dict[str, str] = {}
        pause = self.config.rpc_retry_initial
        audience = f"{self.config.fsid}/mon"
        while True:
            for addr in self._hunt_order():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise self._no_quorum("no monitor answered authentication", budget, seen)
                proof = auth.prove_identity(self._key, self.entity, self._clock(),
                                            audience=audience)
                try:
                    reply = await self._stub(addr, anonymous=True).Auth(
                        mon_pb2.AuthRequest(proof=proof),
                        timeout=min(remaining, self._attempt_timeout))
                except grpc.aio.AioRpcError as err:
                    if err.code() not in _HUNT:
                        raise rpc.from_grpc_error(err, self._label(addr)) from None
                    seen[addr] = _why(err, min(remaining, self._attempt_timeout))
                    self._failed(addr)
                    continue
                log.debug("%s authenticated with mon %s", self.entity, self._label(addr))
                return reply.ticket
            pause = await self._pause(pause, deadline)

    async def _pause(self, pause: float, deadline: float) -> float:
        """Sleep before the next round of hunting (never past the deadline); the next pause."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, min(pause * random.uniform(0.5, 1.0),
                                         deadline - loop.time())))
        return min(pause * self.config.rpc_retry_backoff, self.config.rpc_retry_max)

    def _no_quorum(self, what: str, budget: float, seen: dict[str, str],
                   note: str = "") -> Timeout:
        parts = [f"{self._label(m.addr)} {seen.get(m.addr, 'not tried')}" for m in self._mons]
        parts += [f"{self._label(a)} {why}" for a, why in seen.items()
                  if a not in {m.addr for m in self._mons}]
        return Timeout(f"{what} within {budget:g}s: {', '.join(parts)}; {note}{HINT}")

    # --- commands -----------------------------------------------------------------------------
    def _request_id(self) -> bytes:
        return f"{self._client_id}:{next(self._tids)}".encode()

    async def command(self, cmd: mon_pb2.MonCommand | None = None, /, *,
                      timeout: float | None = None, **fields: Any) -> mon_pb2.CommandResult:
        """Run one command on the leader and return its result, or raise its typed error.

        Give a MonCommand, or its one command as a keyword: `command(pool_create=PoolCreate(
        name="rbd"))`. Any request id in `cmd` is replaced by a fresh one, kept for every resend.
        """
        msg = mon_pb2.MonCommand()
        if cmd is not None:
            msg.CopyFrom(cmd)
        for name, value in fields.items():
            if name not in _COMMANDS:
                raise InvalidArgument(f"unknown monitor command {name!r}")
            getattr(msg, name).CopyFrom(value)
        if msg.WhichOneof("cmd") is None:
            raise InvalidArgument("no monitor command given")
        msg.request_id = self._request_id()
        result = await self._send(msg, timeout)
        # read-your-writes: later get_maps() of this client wait for this epoch at least
        self._acked_epoch = max(self._acked_epoch, result.osdmap_epoch)
        return check_result(result)

    async def _send(self, msg: mon_pb2.MonCommand, timeout: float | None
                    ) -> mon_pb2.CommandResult:
        return (await self._to_leader("Command", msg, timeout)).result

    async def beacon(self, request: mon_pb2.BeaconRequest, timeout: float | None = None
                     ) -> mon_pb2.BeaconReply:
        """Tell the leader a daemon is alive (MDS and OSD beacons); its view of the daemon."""
        return await self._to_leader("Beacon", request, timeout)

    async def _to_leader(self, method: str, msg: Any, timeout: float | None) -> Any:
        """Hunt for the leader (following redirects, backing off) until it answers `method`
        or the deadline passes."""
        budget, deadline = self._budget(timeout)
        await self._ensure_ticket(deadline)
        seen: dict[str, str] = {}
        pause = self.config.rpc_retry_initial
        while True:
            for addr in self._hunt_order():
                reply = await self._leader_call(addr, method, msg, deadline, budget, seen)
                if reply is not None:
                    return reply
            pause = await self._pause(pause, deadline)

    async def _leader_call(self, addr: str, method: str, msg: Any, deadline: float,
                           budget: float, seen: dict[str, str]) -> Any:
        """Call `method` at `addr`, following a follower's pointer to the leader; the leader's
        reply, or None when this path led to no leader (what happened is noted in `seen`)."""
        loop = asyncio.get_running_loop()
        renewed = False
        for _ in range(4):  # a redirect or two, one ticket renewal
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._no_quorum("no monitor quorum", budget, seen, UNKNOWN_OUTCOME)
            attempt = min(remaining, self._attempt_timeout)
            try:
                await self._ensure_ticket(deadline)
                reply = await getattr(self._stub(addr), method)(msg, timeout=attempt)
            except grpc.aio.AioRpcError as err:
                if err.code() == Code.UNAUTHENTICATED and not renewed:
                    renewed = True  # e.g. the ticket expired while we were away
                    self._creds.invalidate()
                    continue
                if err.code() not in _HUNT:
                    raise rpc.from_grpc_error(err, self._label(addr)) from None
                # A timed-out command may have been applied: the resend's same request id
                # makes the monitors answer with that first result instead of applying it again.
                seen[addr] = _why(err, attempt)
                self._failed(addr)
                return None
            # the leader's answer: a command result, or a beacon's verdict on the daemon
            if reply.HasField("result") if method == "Command" else bool(reply.state):
                self._leader = addr
                return reply
            if reply.leader_addr and reply.leader_addr != addr:
                seen[addr] = f"follower of {reply.leader or reply.leader_addr}"
                addr = reply.leader_addr
                continue
            seen[addr] = "knows no leader (election in progress?)"
            return None
        return None

    # --- maps ---------------------------------------------------------------------------------
    def _epoch(self) -> int:
        return self._maps.osdmap.epoch if self._maps is not None else 0

    @property
    def maps(self) -> Maps | None:
        """The newest maps this client has seen (None before the first fetch)."""
        return self._maps

    def _accept(self, msg: mon_pb2.Maps) -> Maps | None:
        """Decode maps from a monitor; None if not newer than what we have."""
        have = self._maps.osdmap.epoch if self._maps is not None else 0
        if self._maps is not None and msg.osdmap.epoch < have:
            return None
        maps = Maps(monmap_from_proto(msg.monmap), osdmap_from_proto(msg.osdmap),
                    mdsmap_from_proto(msg.mdsmap))
        if self._maps is None or maps.osdmap.epoch > have \
                or maps.monmap.epoch > self._maps.monmap.epoch \
                or maps.mdsmap.epoch > self._maps.mdsmap.epoch:
            self._maps = maps
        return self._maps

    async def get_maps(self, min_epoch: int = 0, timeout: float | None = None, *,
                       latest: bool = False) -> Maps:
        """The maps from any monitor (committed state): at least OSDMap `min_epoch`, and at
        least the epoch of every command this client had answered.

        A follower may lag the leader by an epoch or two. `latest` first asks every monitor
        which epoch it has applied and waits for the newest, so a fresh client (the next CLI
        command) sees what a previous one just changed.
        """
        loop = asyncio.get_running_loop()
        budget, deadline = self._budget(timeout)
        await self._ensure_ticket(deadline)
        if latest:
            st = await self.status(timeout=max(0.0, deadline - loop.time()))
            min_epoch = max(min_epoch, *(s.osdmap_epoch for s in st.answered.values()))
        min_epoch = max(min_epoch, self._acked_epoch)
        seen: dict[str, str] = {}
        pause = self.config.rpc_retry_initial
        while True:
            for addr in self._hunt_order():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise self._no_quorum(f"no monitor gave maps (epoch >= {min_epoch})",
                                          budget, seen)
                # a monitor waits for min_epoch up to the attempt's deadline; a follower cut
                # off from the leader never gets there, so then another monitor is asked
                attempt = min(remaining, self._attempt_timeout)
                try:
                    msg = await self._stub(addr).GetMaps(
                        mon_pb2.GetMapsRequest(min_osdmap_epoch=min_epoch), timeout=attempt)
                except grpc.aio.AioRpcError as err:
                    if err.code() not in _HUNT:
                        raise rpc.from_grpc_error(err, self._label(addr)) from None
                    seen[addr] = _why(err, attempt)
                    self._failed(addr)
                    continue
                if msg.osdmap.epoch < min_epoch:
                    seen[addr] = f"has only epoch {msg.osdmap.epoch}"
                    self._failed(addr)
                    continue
                self._accept(msg)
                assert self._maps is not None
                if self._maps.osdmap.epoch >= min_epoch:
                    return self._maps
            pause = await self._pause(pause, deadline)

    async def subscribe(self) -> AsyncIterator[Maps]:
        """The current maps, then every newer epoch, for as long as the caller iterates.

        Survives monitors dying: it resubscribes at another monitor from the epoch it has, and
        never yields an epoch older than one it yielded. It gives up only on errors that no
        other monitor would answer differently (wrong key, wrong cluster).
        """
        loop = asyncio.get_running_loop()
        pause = self.config.rpc_retry_initial
        last = (0, 0)  # (osdmap, mdsmap) epochs yielded
        while True:
            for addr in self._hunt_order():
                try:
                    await self._ensure_ticket(loop.time() + self.config.rpc_timeout)
                except Timeout as exc:
                    log.warning("map subscription: %s", exc)
                    break
                call = self._stub(addr).Subscribe(mon_pb2.SubscribeRequest(
                    have_osdmap_epoch=last[0], have_mdsmap_epoch=last[1]))
                try:
                    async for msg in call:
                        maps = self._accept(msg)
                        if maps is None:
                            continue
                        epochs = (maps.osdmap.epoch, maps.mdsmap.epoch)
                        if epochs[0] >= last[0] and epochs[1] >= last[1] and epochs != last:
                            last = epochs
                            pause = self.config.rpc_retry_initial
                            yield maps
                    log.info("map subscription at mon %s ended; resubscribing",
                             self._label(addr))
                except grpc.aio.AioRpcError as err:
                    if err.code() == Code.UNAUTHENTICATED:
                        self._creds.invalidate()
                    elif err.code() not in _HUNT:
                        raise rpc.from_grpc_error(err, self._label(addr)) from None
                    log.info("map subscription at mon %s lost (%s); trying another monitor",
                             self._label(addr), err.code().name)
                finally:
                    call.cancel()
                self._failed(addr)
            pause = await self._pause(pause, loop.time() + pause)

    # --- status -------------------------------------------------------------------------------
    async def status(self, timeout: float | None = None) -> ClusterStatus:
        """Ask every monitor for its status; the leader's view plus who answered."""
        budget, deadline = self._budget(timeout)
        await self._ensure_ticket(deadline)
        attempt = min(budget, self._attempt_timeout)

        async def ask(mon: _Mon) -> mon_pb2.MonStatus | str:
            try:
                return await self._stub(mon.addr).Status(mon_pb2.MonStatusRequest(),
                                                         timeout=attempt)
            except grpc.aio.AioRpcError as err:
                if err.code() not in _HUNT:
                    raise rpc.from_grpc_error(err, self._label(mon.addr)) from None
                return _why(err, attempt)

        answers = await asyncio.gather(*(ask(m) for m in self._mons))
        answered = {m.name: a for m, a in zip(self._mons, answers, strict=True)
                    if isinstance(a, mon_pb2.MonStatus)}
        unreachable = {m.name: a for m, a in zip(self._mons, answers, strict=True)
                       if isinstance(a, str)}
        if not answered:
            raise self._no_quorum("no monitor answered", budget,
                                  {m.addr: unreachable[m.name] for m in self._mons})
        newest = max(answered.values(), key=lambda s: (s.term, s.leader == s.name))
        leader = answered.get(newest.leader) if newest.leader else None
        if leader is not None and leader.leader == leader.name:
            return ClusterStatus(leader, True, answered, unreachable)
        return ClusterStatus(newest, False, answered, unreachable)


def _why(err: grpc.aio.AioRpcError, attempt: float) -> str:
    if err.code() == Code.UNAVAILABLE:
        return "unreachable"
    if err.code() == Code.DEADLINE_EXCEEDED:
        return f"no answer within {attempt:.3g}s"
    return f"failed ({err.code().name}: {' '.join((err.details() or '').split())[:120]})"


class MonClientSync:
    """`MonClient` for synchronous callers (the CLI): runs its own event loop.

    Not for use inside a running event loop: await `MonClient` there instead.
    """

    def __init__(self, config: Config, keyring: Keyring, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self.client = MonClient(config, keyring, **kwargs)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coro.close()
            raise LoligoError("MonClientSync is closed")
        return self._loop.run_until_complete(coro)

    def connect(self, timeout: float | None = None) -> None:
        self._run(self.client.connect(timeout))

    def command(self, cmd: mon_pb2.MonCommand | None = None, /, *,
                timeout: float | None = None, **fields: Any) -> mon_pb2.CommandResult:
        return self._run(self.client.command(cmd, timeout=timeout, **fields))

    def get_maps(self, min_epoch: int = 0, timeout: float | None = None, *,
                 latest: bool = False) -> Maps:
        return self._run(self.client.get_maps(min_epoch, timeout, latest=latest))

    def status(self, timeout: float | None = None) -> ClusterStatus:
        return self._run(self.client.status(timeout))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._loop.run_until_complete(self.client.close())
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        finally:
            self._loop.close()

    def __enter__(self) -> MonClientSync:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

