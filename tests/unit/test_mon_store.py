"""MonStore keeps exactly what Raft asked to persist: the same as the reference in-memory
PersistentState after any batch, across reopen, and after a SIGKILL in the middle of writing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mon.raft_log import (
    Entry,
    EntryKind,
    PersistEntries,
    PersistentState,
    PersistSnapshot,
    PersistState,
    Snapshot,
)
from mon.store import MonStore, StoreError

ROOT = Path(__file__).resolve().parents[2]
FSID = "00000000-0000-4000-8000-00000000abcd"


def random_batches(seed: int, count: int) -> list[list]:
    """Valid effect batches (as a Raft node would emit them) from a seed."""
    rng = random.Random(seed)
    ref = PersistentState()
    batches = []
    for _ in range(count):
        batch = []
        if rng.random() < 0.3:
            batch.append(PersistState(ref.term + rng.randint(0, 2),
                                      rng.choice([None, "a", "b", "c"])))
        base = ref.snapshot.index if ref.snapshot else 0
        last = base + len(ref.entries)
        if rng.random() < 0.2 and last > base:
            idx = rng.randint(base + 1, last)
            snap = Snapshot(idx, rng.randint(1, 9), ("a", "b", "c"), rng.randbytes(20))
            batch.append(PersistSnapshot(snap, rng.random() < 0.3))
        for effect in batch:
            ref.apply(effect)
        base = ref.snapshot.index if ref.snapshot else 0
        last = base + len(ref.entries)
        start = rng.randint(base + 1, last + 1)
        n = rng.randint(0, 5)
        entries = tuple(Entry(start + i, rng.randint(1, 9), rng.randbytes(rng.randint(0, 50)),
                              rng.randbytes(8), rng.choice(list(EntryKind))) for i in range(n))
        effect = PersistEntries(start, entries)
        ref.apply(effect)
        batch.append(effect)
        batches.append(batch)
    return batches


@pytest.mark.parametrize("seed", range(5))
def test_store_matches_the_reference_after_every_batch_and_reopen(tmp_path: Path,
                                                                   seed: int) -> None:
    ref = PersistentState()
    store = MonStore(tmp_path / "mon.db", FSID)
    try:
        for i, batch in enumerate(random_batches(seed, 60)):
            store.persist(batch)
            for effect in batch:
                ref.apply(effect)
            if i % 10 == 0:
                store.close()
                store = MonStore(tmp_path / "mon.db", FSID)
            assert store.load() == ref, f"seed {seed} batch {i}"
    finally:
        store.close()


def test_a_store_of_another_cluster_is_refused(tmp_path: Path) -> None:
    MonStore(tmp_path / "mon.db", FSID).close()
    with pytest.raises(StoreError, match="belongs to cluster"):
        MonStore(tmp_path / "mon.db", "another-fsid")


def test_a_failed_batch_leaves_nothing_behind(tmp_path: Path) -> None:
    store = MonStore(tmp_path / "mon.db", FSID)
    store.persist([PersistEntries(1, (Entry(1, 1, b"x"),))])
    with pytest.raises(TypeError):
        store.persist([PersistState(5, "a"), "not an effect"])
    assert store.load() == PersistentState(0, None, [Entry(1, 1, b"x")], None)
    store.close()


WRITER = """
import sys
sys.path.insert(0, {root!r})
from tests.unit.test_mon_store import FSID, random_batches
from mon.store import MonStore
from pathlib import Path
store = MonStore(Path({path!r}), FSID)
for i, batch in enumerate(random_batches({seed}, 400)):
    store.persist(batch)
    print(i, flush=True)
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_while_writing_leaves_a_consistent_prefix(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "mon.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=str(ROOT), path=str(path),
                                                                 seed=seed)],
                            stdout=subprocess.PIPE, text=True)
    try:
        kill_after = random.Random(seed).randint(20, 120)
        acknowledged = -1
        for line in proc.stdout:
            acknowledged = int(line)
            if acknowledged >= kill_after:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert acknowledged >= kill_after, "writer ended before it could be killed"
    batches = random_batches(seed, 400)
    states = []
    ref = PersistentState()
    for batch in batches:
        for effect in batch:
            ref.apply(effect)
        states.append(ref.copy())
    store = MonStore(path, FSID)
    try:
        loaded = store.load()
    finally:
        store.close()
    # every acknowledged batch is there; the one in flight is wholly there or wholly absent
    assert loaded in (states[acknowledged], states[acknowledged + 1])
