"""A monitor's durable Raft state in SQLite: term, vote, log entries and the last snapshot.

`persist(effects)` makes a whole batch of Raft persist effects durable in ONE transaction (WAL
mode, synchronous=FULL: one fsync), which is both the group commit that keeps fsyncs rare under
load and what makes "truncate then append" and "install snapshot and drop the entries it covers"
atomic. `load()` rebuilds exactly the `PersistentState` that was last made durable, so a monitor
killed at any point restarts from a consistent log. Calls block: run them off the event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from mon.raft_log import (
    Entry,
    EntryKind,
    PersistEffect,
    PersistEntries,
    PersistentState,
    PersistSnapshot,
    PersistState,
    Snapshot,
)

FORMAT_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL,
                                noop INTEGER NOT NULL, request_id BLOB, payload BLOB);
CREATE TABLE IF NOT EXISTS snapshot (one INTEGER PRIMARY KEY CHECK (one = 0), idx INTEGER,
                                     term INTEGER, members TEXT, data BLOB);
"""


class StoreError(Exception):
    """The store on disk is unusable (another format, or written by another cluster)."""


class MonStore:
    def __init__(self, path: Path, fsid: str):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread off: the daemon calls from one worker thread at a time
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._check_identity(fsid)

    def _meta(self, key: str) -> bytes | str | int | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _check_identity(self, fsid: str) -> None:
        version, stored = self._meta("format_version"), self._meta("fsid")
        if version is None:
            with self._transaction():
                self._db.executemany("INSERT INTO meta VALUES (?, ?)",
                                     [("format_version", FORMAT_VERSION), ("fsid", fsid)])
            return
        if version != FORMAT_VERSION:
            raise StoreError(f"{self.path}: store format {version}, this monitor reads "
                             f"{FORMAT_VERSION}")
        if stored != fsid:
            raise StoreError(f"{self.path} belongs to cluster {stored}, not {fsid}: "
                             "point data_dir elsewhere")

    def _transaction(self):
        return _Transaction(self._db)

    def close(self) -> None:
        self._db.close()

    # --- reading ------------------------------------------------------------------------------
    def load(self) -> PersistentState:
        term = self._meta("term") or 0
        voted_for = self._meta("voted_for")
        row = self._db.execute("SELECT idx, term, members, data FROM snapshot").fetchone()
        snapshot = None
        if row is not None:
            members = tuple(m for m in row[2].split(",") if m)
            snapshot = Snapshot(row[0], row[1], members, row[3])
        entries = [Entry(idx, t, payload or b"", rid or b"",
                         EntryKind.NOOP if noop else EntryKind.COMMAND)
                   for idx, t, noop, rid, payload in self._db.execute(
                       "SELECT idx, term, noop, request_id, payload FROM log ORDER BY idx")]
        return PersistentState(int(term), voted_for or None, entries, snapshot)

    # --- writing ------------------------------------------------------------------------------
    def persist(self, effects: Iterable[PersistEffect]) -> None:
        """Make every effect durable, in order, atomically (one fsync)."""
        effects = list(effects)
        if not effects:
            return
        with self._transaction():
            for effect in effects:
                match effect:
                    case PersistState(term=term, voted_for=voted_for):
                        self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                             [("term", term), ("voted_for", voted_for or "")])
                    case PersistEntries(from_index=from_index, entries=entries):
                        self._db.execute("DELETE FROM log WHERE idx >= ?", (from_index,))
                        self._db.executemany(
                            "INSERT INTO log VALUES (?, ?, ?, ?, ?)",
                            [(e.index, e.term, int(e.kind is EntryKind.NOOP), e.request_id,
                              e.payload) for e in entries])
                    case PersistSnapshot(snapshot=s, discard_log=discard):
                        self._db.execute("INSERT OR REPLACE INTO snapshot VALUES (0, ?, ?, ?, ?)",
                                         (s.index, s.term, ",".join(s.members), s.data))
                        if discard:
                            self._db.execute("DELETE FROM log")
                        else:
                            self._db.execute("DELETE FROM log WHERE idx <= ?", (s.index,))
                    case _:
                        raise TypeError(f"not a persist effect: {effect!r}")


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error: all of a batch or none of it."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
