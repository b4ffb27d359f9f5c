"""File locks held by clients, kept by the MDS so they hold across mounts: POSIX record locks
(fcntl: byte ranges per lock owner, split and merged as POSIX says) and BSD locks (flock:
whole file per open file). Pure: the server waits and wakes; this only decides.

A lock is (client, owner, pid, start, end, exclusive); `end` is inclusive, 2**64-1 for "to
the end of the file". Two locks conflict when they overlap, belong to different (client,
owner) pairs and one is exclusive. Locks are not journaled: after a takeover the clients
reclaim theirs when they reconnect (as CephFS clients do).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

EOF_END = (1 << 64) - 1


@dataclass(frozen=True)
class Lock:
    client: str
    owner: int
    pid: int
    start: int
    end: int
    exclusive: bool
    flock: bool = False

    def holder(self) -> tuple[str, int, bool]:
        return self.client, self.owner, self.flock

    def overlaps(self, start: int, end: int) -> bool:
        return self.start <= end and start <= self.end


class LockTable:
    def __init__(self) -> None:
        self.locks: dict[int, list[Lock]] = {}

    def conflict(self, ino: int, want: Lock) -> Lock | None:
        """The first lock that keeps `want` from being granted (None: it can be)."""
        for held in self.locks.get(ino, ()):
            if held.flock != want.flock:
                continue  # flock and fcntl locks do not interact on Linux
            if held.holder() == want.holder():
                continue
            if held.overlaps(want.start, want.end) and (held.exclusive or want.exclusive):
                return held
        return None

    def grant(self, ino: int, want: Lock) -> None:
        """Take `want` (the caller checked there is no conflict): the holder's own locks in
        the range are replaced; POSIX ranges are split around it and merged with
        neighbours of the same kind."""
        self.unlock(ino, want.client, want.owner, want.start, want.end, want.flock)
        mine = [lk for lk in self.locks.get(ino, []) if lk.holder() == want.holder()]
        others = [lk for lk in self.locks.get(ino, []) if lk.holder() != want.holder()]
        new = want
        if not want.flock:
            keep = []
            for lk in mine:
                touching = lk.start <= new.end + 1 and new.start <= lk.end + 1
                if touching and lk.exclusive == new.exclusive:
                    new = replace(new, start=min(lk.start, new.start), end=max(lk.end, new.end))
                else:
                    keep.append(lk)
            mine = keep
        self.locks[ino] = [*others, *mine, new]

    def unlock(self, ino: int, client: str, owner: int, start: int = 0, end: int = EOF_END,
               flock: bool = False) -> bool:
        """Release the holder's locks in [start, end]; whether anything was released."""
        out: list[Lock] = []
        changed = False
        for lk in self.locks.get(ino, []):
            if lk.holder() != (client, owner, flock) or not lk.overlaps(start, end):
                out.append(lk)
                continue
            changed = True
            if lk.start < start:
                out.append(replace(lk, end=start - 1))
            if lk.end > end:
                out.append(replace(lk, start=end + 1))
        if out:
            self.locks[ino] = out
        else:
            self.locks.pop(ino, None)
        return changed

    def drop_client(self, client: str) -> list[int]:
        """Every lock of an evicted or closed session goes; the inodes affected."""
        touched = []
        for ino in list(self.locks):
            kept = [lk for lk in self.locks[ino] if lk.client != client]
            if len(kept) != len(self.locks[ino]):
                touched.append(ino)
                if kept:
                    self.locks[ino] = kept
                else:
                    del self.locks[ino]
        return touched

    def held_by(self, client: str) -> list[tuple[int, Lock]]:
        return [(ino, lk) for ino, locks in self.locks.items() for lk in locks
                if lk.client == client]
