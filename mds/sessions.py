"""Client sessions: one per mount, over one ordered stream that carries its requests, their
replies, "safe" notices and what the MDS tells the client to drop or give back.

A session's record is kept in the omap of `mds.sessions` so that an MDS taking over knows
which clients to wait for: they reconnect (saying which files they hold open and replaying
the requests not yet safe) within `mds_reconnect_timeout`, or are evicted. An evicted client
is refused from then on (its mount must be mounted again), as Ceph blocklists one.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from rados_py.proto.loligo import mds_pb2

SESSIONS_OBJECT = b"mds.sessions"
COMPLETED_PER_CLIENT = 100_000  # replies kept for resends, per client (also bounded by acks)


class Outbox:
    """What the MDS has to tell one client; the stream writer sends it all as one message
    whenever it is ready (a busy session gets many replies per message)."""

    def __init__(self) -> None:
        self.msg = mds_pb2.MdsMsg()
        self.closed = False
        self._ready = asyncio.Event()

    def put_reply(self, reply: mds_pb2.MdsReply) -> None:
        self.msg.replies.append(reply)
        self._ready.set()

    def put_safe(self, tid: int) -> None:
        self.msg.safe.append(tid)
        self._ready.set()

    def put_invalidate(self, inv: mds_pb2.Invalidate) -> None:
        self.msg.invalidates.append(inv)
        self._ready.set()

    def put_recall(self, ino: int) -> None:
        self.msg.recalls.append(ino)
        self._ready.set()

    def put_evicted(self, why: str) -> None:
        self.msg.evicted = why
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def take(self) -> mds_pb2.MdsMsg | None:
        """The next message (None: the stream is to end)."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            if self.msg.ByteSize():
                msg, self.msg = self.msg, mds_pb2.MdsMsg()
                return msg
            if self.closed:
                return None


@dataclass
class Session:
    client: str
    info: mds_pb2.SessionOpen
    addr: str = ""
    last_seen: float = field(default_factory=time.monotonic)
    connected: bool = False
    reconnected: bool = True
    opens: Counter[int] = field(default_factory=Counter)
    outbox: Outbox = field(default_factory=Outbox)
    pending_acks: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    next_seq: int = 1
    # requests answered, for a resend: tid -> the serialised reply (pruned as the client says
    # which requests it no longer needs answered again)
    completed: OrderedDict[int, bytes] = field(default_factory=OrderedDict)
    unsafe_tids: set[int] = field(default_factory=set)  # answered, not yet durable
    replays: list[mds_pb2.MdsRequest] = field(default_factory=list)  # after a takeover
    delegated: list[list[int]] = field(default_factory=list)  # [next, end) inode ranges
    requests: int = 0

    def send_invalidate(self, inv: mds_pb2.Invalidate) -> asyncio.Future[None]:
        inv.seq = self.next_seq
        self.next_seq += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending_acks[inv.seq] = fut
        self.outbox.put_invalidate(inv)
        return fut

    def acked(self, seq: int) -> None:
        fut = self.pending_acks.pop(seq, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def remember(self, tid: int, reply: bytes) -> None:
        self.completed[tid] = reply
        while len(self.completed) > COMPLETED_PER_CLIENT:
            self.completed.popitem(last=False)

    def forget_completed(self, below: int) -> None:
        """The client no longer needs answers to requests below `below` again."""
        while self.completed:
            tid = next(iter(self.completed))
            if tid >= below:
                return
            del self.completed[tid]

    def delegated_left(self) -> int:
        return sum(end - nxt for nxt, end in self.delegated)

    def use_delegated(self, ino: int) -> bool:
        """A background create names `ino`: whether it was delegated to this client (and not
        used yet). The client uses its ranges in order."""
        for i, (nxt, end) in enumerate(self.delegated):
            if nxt <= ino < end:
                self.delegated[i][0] = ino + 1
                del self.delegated[:i]  # ranges before were given up
                if self.delegated and self.delegated[0][0] >= self.delegated[0][1]:
                    self.delegated.pop(0)
                return True
        return False

    def describe(self) -> mds_pb2.ClientInfo:
        state = "open" if self.connected else ("reconnecting" if not self.reconnected
                                               else "stale")
        return mds_pb2.ClientInfo(client=self.client, host=self.info.host,
                                  mountpoint=self.info.mountpoint, pid=self.info.pid,
                                  state=state, idle=round(time.monotonic() - self.last_seen, 1),
                                  open_files=sum(1 for c in self.opens.values() if c > 0),
                                  addr=self.addr)


class SessionTable:
    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.evicted: set[str] = set()

    def get(self, client: str) -> Session | None:
        return self.sessions.get(client)

    def is_open(self, ino: int) -> bool:
        return any(s.opens.get(ino, 0) > 0 for s in self.sessions.values())

    def expired(self, timeout: float, now: float | None = None) -> list[Session]:
        now = time.monotonic() if now is None else now
        return [s for s in self.sessions.values()
                if not s.connected and now - s.last_seen > timeout]

    def waiting_reconnect(self) -> list[Session]:
        return [s for s in self.sessions.values() if not s.reconnected]
