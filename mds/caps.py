"""What each client may cache, and which directories a client holds exclusively. Pure: the
server sends what this decides (mds/dispatch.py) and tests drive it directly.

Leases (shared): a client told about an inode may cache its attributes; one that looked into
a directory may cache its names, present and absent. When another client changes them, the
holders are told to drop them (an Invalidate each) and read again; a client whose kernel
forgot an inode gives its leases up.

Exclusive directories (CephFS's Fx capability on a directory): a directory that only one
client caches is that client's to change. It answers lookups in it from what it knows (all of
it, for a directory it made or listed whole), and creates, renames and unlinks in it at once,
sending the changes in the background. When another client needs the directory, the MDS
recalls it: the holder stops changing it and acknowledges on its ordered stream after the
changes it sent, so the other client's request runs on the directory as the holder left it.
A directory made by a client is that client's from the start (nobody else knows it yet).
"""

from __future__ import annotations

from collections.abc import Iterable

from rados_py.proto.loligo import mds_pb2


class CapTable:
    def __init__(self) -> None:
        self.dir_leases: dict[int, set[str]] = {}    # directory -> clients caching its names
        self.inode_leases: dict[int, set[str]] = {}  # inode -> clients caching its attributes
        self.excl: dict[int, str] = {}               # directory -> its exclusive holder
        self.held: dict[str, set[int]] = {}          # client -> directories it holds

    # --- leases ---------------------------------------------------------------------------
    def lease_inode(self, client: str, ino: int) -> None:
        self.inode_leases.setdefault(ino, set()).add(client)

    def lease_dir(self, client: str, ino: int) -> None:
        self.dir_leases.setdefault(ino, set()).add(client)

    def changed(self, changer: str, inos: Iterable[int], entries: Iterable[tuple[int, bytes]]
                ) -> list[tuple[str, mds_pb2.Invalidate]]:
        """Whom to tell to drop what `changer` just changed: (client, Invalidate) pairs. An
        inode lease goes with its invalidation (a later read grants it again); a directory
        lease stays (the holder dropped one name, it still caches the others)."""
        out: list[tuple[str, mds_pb2.Invalidate]] = []
        for ino in dict.fromkeys(inos):
            holders = self.inode_leases.get(ino)
            if not holders:
                continue
            for client in holders - {changer}:
                out.append((client, mds_pb2.Invalidate(ino=ino)))
            self.inode_leases[ino] = holders & {changer}
        for parent, name in dict.fromkeys(entries):
            for client in self.dir_leases.get(parent, ()):
                if client != changer:
                    out.append((client, mds_pb2.Invalidate(parent=parent, name=name)))
        return out

    def forget(self, client: str, inos: Iterable[int]) -> None:
        """The client's kernel forgot these inodes: it caches nothing of them any more (an
        exclusive directory among them is given up too)."""
        for ino in inos:
            for table in (self.inode_leases, self.dir_leases):
                holders = table.get(ino)
                if holders is not None:
                    holders.discard(client)
                    if not holders:
                        del table[ino]
            if self.excl.get(ino) == client:
                self.release(client, ino)

    # --- exclusive directories --------------------------------------------------------------
    def conflicts(self, client: str, dirs: Iterable[int]) -> list[tuple[str, int]]:
        """(holder, directory) of the exclusive directories among `dirs` that another client
        holds: to recall before `client`'s request may run."""
        out = []
        for ino in dict.fromkeys(dirs):
            holder = self.excl.get(ino)
            if holder is not None and holder != client:
                out.append((holder, ino))
        return out

    def try_grant(self, client: str, ino: int) -> bool:
        """Make `ino` exclusive to `client` if no other client caches it; whether it is."""
        holder = self.excl.get(ino)
        if holder is not None:
            return holder == client
        if self.dir_leases.get(ino, set()) - {client}:
            return False
        self.excl[ino] = client
        self.held.setdefault(client, set()).add(ino)
        self.lease_dir(client, ino)
        return True

    def grant_new(self, client: str, ino: int) -> None:
        """A directory `client` just made: nobody else can know it yet."""
        self.excl[ino] = client
        self.held.setdefault(client, set()).add(ino)
        self.lease_dir(client, ino)

    def release(self, client: str, ino: int) -> bool:
        """The holder gave the directory back (recalled, or it let it go)."""
        if self.excl.get(ino) != client:
            return False
        del self.excl[ino]
        held = self.held.get(client)
        if held is not None:
            held.discard(ino)
        return True

    def removed(self, ino: int) -> None:
        """A directory or inode that no longer exists."""
        holder = self.excl.pop(ino, None)
        if holder is not None:
            self.held.get(holder, set()).discard(ino)
        self.dir_leases.pop(ino, None)
        self.inode_leases.pop(ino, None)

    def drop_client(self, client: str) -> list[int]:
        """Every capability of a client whose stream ended or that was evicted; the
        exclusive directories it held."""
        gone = sorted(self.held.pop(client, set()))
        for ino in gone:
            if self.excl.get(ino) == client:
                del self.excl[ino]
        for table in (self.inode_leases, self.dir_leases):
            for ino in [i for i, holders in table.items() if client in holders]:
                table[ino].discard(client)
                if not table[ino]:
                    del table[ino]
        return gone

    def drop_exclusive(self, client: str) -> list[int]:
        """A client's exclusive directories only (its stream broke: it stops using them and
        keeps its leases)."""
        gone = sorted(self.held.pop(client, set()))
        for ino in gone:
            if self.excl.get(ino) == client:
                del self.excl[ino]
        return gone
