"""Client sessions: one per mount, renewed over its stream, evicted when silent too long.

A session's record is kept in the omap of `mds.sessions` so that an MDS taking over knows
which clients to wait for: they reconnect (saying which files they hold open) within
`mds_reconnect_timeout`, or are evicted. An evicted client is refused from then on (its
mount must be mounted again), as Ceph blocklists one.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from rados_py.proto.loligo import mds_pb2

SESSIONS_OBJECT = b"mds.sessions"


@dataclass
class Session:
    client: str
    info: mds_pb2.SessionOpen
    addr: str = ""
    last_seen: float = field(default_factory=time.monotonic)
    connected: bool = False
    reconnected: bool = True
    opens: Counter[int] = field(default_factory=Counter)
    outbox: asyncio.Queue[mds_pb2.MdsMsg] = field(default_factory=asyncio.Queue)
    # leases: inodes whose attributes, and directories whose entries, the client may cache
    # until told otherwise (one Invalidate per lease; a later read grants it again)
    inodes: set[int] = field(default_factory=set)
    dirs: set[int] = field(default_factory=set)
    pending_acks: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    next_seq: int = 1

    def send_invalidate(self, inv: mds_pb2.Invalidate) -> asyncio.Future[None]:
        inv.seq = self.next_seq
        self.next_seq += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending_acks[inv.seq] = fut
        self.outbox.put_nowait(mds_pb2.MdsMsg(invalidate=inv))
        return fut

    def acked(self, seq: int) -> None:
        fut = self.pending_acks.pop(seq, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

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

    def invalidate(self, changer: Session | None, inos: list[int],
                   entries: list[tuple[int, bytes]]) -> list[asyncio.Future[None]]:
        """Tell every other client holding a lease on what changed to drop it; the futures
        resolve as they acknowledge (the change is answered after that, so no other mount
        still shows the old state once the changer sees the new one)."""
        waits = []
        for s in self.sessions.values():
            if s is changer or not s.connected:
                continue
            for ino in dict.fromkeys(inos):
                if ino in s.inodes:
                    s.inodes.discard(ino)
                    waits.append(s.send_invalidate(mds_pb2.Invalidate(ino=ino)))
            for parent, name in dict.fromkeys(entries):
                if parent in s.dirs:
                    waits.append(s.send_invalidate(mds_pb2.Invalidate(parent=parent,
                                                                      name=name)))
        return waits

    def waiting_reconnect(self) -> list[Session]:
        return [s for s in self.sessions.values() if not s.reconnected]
