"""Deterministic simulation of monitor Raft clusters (mon/raft.py).

One seed drives everything: the virtual clock, message delays, loss, duplication and reordering,
partitions that come and heal, crashes (some in the middle of a step, before its writes are
durable) and restarts from exactly what was persisted, clients proposing and reading through
whoever they believe leads, and log compaction. A checker asserts Raft's safety properties after
every step; at the end the network heals, every node comes back, and a proposal must commit and
reach every node within a bound.

    .venv/bin/python -m pytest tests/sim                                   # the regular run
    LOLIGO_SIM_SEEDS=20000 .venv/bin/python -m pytest tests/sim -k random   # a long run
    LOLIGO_SIM_SEED=123 .venv/bin/python -m pytest tests/sim -k random      # replay one seed

A failure prints its seed, its scenario and the events that led to it, and replays identically.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from mon.raft import (
    Effect,
    NotLeader,
    PersistEntries,
    PersistState,
    Propose,
    ReadIndex,
    ReadIndexResult,
    Role,
    SnapshotTaken,
)
from tests.sim.harness import (
    CONFIG,
    REPLAY_SEED,
    SEEDS,
    Cluster,
    Host,
    PlannedCrash,
    Scenario,
    SimulationFailure,
    run_scenario,
)

# ---------------------------------------------------------------------------------------------
# Random runs


def seeds() -> list[int]:
    return [int(REPLAY_SEED)] if REPLAY_SEED else list(range(SEEDS))


@pytest.mark.parametrize("seed", seeds(), ids=lambda seed: f"seed{seed}")
def test_random_cluster(seed: int) -> None:
    run_scenario(Scenario.generate(seed), trace_length=3000 if REPLAY_SEED else 60)


def test_a_seed_replays_identically() -> None:
    first = run_scenario(Scenario.generate(7)).fingerprint()
    assert run_scenario(Scenario.generate(7)).fingerprint() == first
    assert run_scenario(Scenario.generate(8)).fingerprint() != first


def test_a_seed_replays_identically_in_another_process() -> None:
    """String hashing differs between processes; nothing may depend on it (set order...)."""
    code = ("from tests.sim.test_raft_sim import Scenario, run_scenario\n"
            "print(run_scenario(Scenario.generate(11)).fingerprint())")
    root = Path(__file__).resolve().parents[2]
    outputs = {
        subprocess.run([sys.executable, "-c", code], cwd=root, check=True, capture_output=True,
                       text=True, env={**os.environ, "PYTHONHASHSEED": hash_seed}).stdout
        for hash_seed in ("1", "2")
    }
    assert len(outputs) == 1, outputs


def test_the_checker_catches_a_host_that_acts_before_its_writes_are_durable() -> None:
    """The checker has teeth: break the persistence contract and some seed must fail."""
    for seed in range(200):
        scenario = replace(Scenario.generate(seed), crash_every=0.3, down_for=0.2,
                           crash_mid_step=0.0)
        if len(scenario.members) == 1:
            continue
        try:
            run_scenario(scenario, unsafe_host=True)
        except SimulationFailure:
            return
    pytest.fail("200 seeds of a host that loses acknowledged writes went unnoticed")


# ---------------------------------------------------------------------------------------------
# Targeted scenarios


def quiet_cluster(size: int, **changes: object) -> Cluster:
    return Cluster(replace(Scenario.quiet(seed=1, size=size), **changes))  # type: ignore[arg-type]


def elected(cluster: Cluster) -> Host:
    """Wait for a leader and for its no-op to commit."""
    cluster.run_until(lambda: cluster.leader() is not None, 5.0, "leader")
    cluster.run_for(0.5)
    leader = cluster.leader()
    assert leader is not None and leader.node is not None
    return leader


def writes(kind: type) -> Callable[[list[Effect]], bool]:
    return lambda effects: any(isinstance(effect, kind) for effect in effects)


def test_a_leader_cut_off_in_a_minority_cannot_commit_and_steps_down() -> None:
    cluster = quiet_cluster(5)
    old = elected(cluster)
    term = cluster.node(old.name).term
    others = [name for name in cluster.members if name != old.name]
    cluster.net.partition([[old.name, others[0]], others[1:]])
    cut_at = cluster.sim.now
    cluster.request(old, Propose(b"lost", b"lost"))
    cluster.request(old, ReadIndex(b"read"))
    assert cluster.results[0].index is not None  # appended, never to commit

    cluster.run_until(lambda: cluster.node(old.name).role is not Role.LEADER,
                      2 * CONFIG.election_timeout_min, "step-down of the cut-off leader")
    assert cluster.sim.now - cut_at <= 2 * CONFIG.election_timeout_min
    assert ReadIndexResult(b"read", None, NotLeader(None)) in cluster.results
    cluster.run_until(lambda: cluster.leader() not in (None, old), 5.0, "leader in the majority")
    new = cluster.leader()
    assert new is not None and cluster.node(new.name).term > term
    cluster.request(new, Propose(b"kept", b"kept"))
    cluster.run_until(lambda: b"kept" in cluster.checker.first_index, 1.0, "commit")

    cluster.net.heal()
    cluster.run_for(3.0)
    assert b"lost" not in cluster.checker.first_index
    assert all(h.applied >= cluster.checker.first_index[b"kept"] for h in cluster.hosts.values())
    cluster.check_final_state()


@pytest.mark.parametrize("pre_vote", [True, False], ids=["pre-vote", "without-pre-vote"])
def test_pre_vote_keeps_a_rejoining_node_from_deposing_the_leader(pre_vote: bool) -> None:
    cluster = quiet_cluster(3, config=replace(CONFIG, pre_vote=pre_vote))
    leader = elected(cluster)
    term = cluster.node(leader.name).term
    loner = next(h for h in cluster.hosts.values() if h is not leader)
    cluster.net.partition([[loner.name], [n for n in cluster.members if n != loner.name]])
    cluster.run_for(20.0)
    cluster.net.heal()
    cluster.run_for(5.0)
    if pre_vote:
        assert cluster.node(loner.name).term == term  # every pre-vote failed, nothing changed
        assert cluster.leader() is leader and list(cluster.checker.leaders) == [term]
    else:  # the control: the loner's campaigns inflate its term, and its return deposes
        assert cluster.node(loner.name).term > term + 5
        assert cluster.node(leader.name).term > term + 5
    cluster.check_final_state()


def test_a_restarted_follower_catches_up_through_a_snapshot() -> None:
    cluster = quiet_cluster(3)
    leader = elected(cluster)
    follower = next(h for h in cluster.hosts.values() if h is not leader)
    cluster.crash(follower)
    for i in range(30):
        cluster.request(leader, Propose(b"p%d" % i, b"p%d" % i))
        cluster.run_for(0.01)
    cluster.run_for(0.5)
    index = leader.applied
    assert index > 30
    for host in cluster.hosts.values():
        if host.node is not None:
            cluster.request(host, SnapshotTaken(host.applied, host.digest_at(host.applied)))
    assert cluster.node(leader.name).log.snapshot.index == index

    cluster.start(follower)
    cluster.run_until(lambda: follower.applied >= index, 3.0, "catch-up")
    assert follower.snapshots_installed == 1
    cluster.check_final_state()


def test_a_node_that_dies_before_its_writes_are_durable_forgets_them_safely() -> None:
    cluster = quiet_cluster(3)
    leader = elected(cluster)
    follower = next(h for h in cluster.hosts.values() if h is not leader)
    had = cluster.node(follower.name).log.last_index

    # It dies while receiving a new entry: nothing of that step is durable, no ack left.
    follower.planned_crash = PlannedCrash(keep=0.0, when=writes(PersistEntries))
    cluster.request(leader, Propose(b"x", b"x"))
    cluster.run_for(0.1)
    assert follower.node is None and follower.durable.entries[-1].index == had
    cluster.start(follower)
    assert cluster.node(follower.name).log.last_index == had  # the entry is forgotten
    cluster.run_until(lambda: b"x" in cluster.checker.first_index, 1.0, "commit without it")
    cluster.run_until(lambda: follower.applied >= cluster.checker.first_index[b"x"], 1.0,
                      "catch-up")

    # It dies while changing term or vote: back in its old term, having promised nothing.
    durable_term = follower.durable.term
    follower.planned_crash = PlannedCrash(keep=0.0, when=writes(PersistState))
    cluster.crash(leader)
    cluster.run_until(lambda: follower.node is None, 5.0, "crash on the term change")
    cluster.start(follower)
    assert (cluster.node(follower.name).term, follower.durable.term) == (durable_term,
                                                                         durable_term)
    cluster.start(leader)
    assert cluster.verify_liveness() < 10.0
    cluster.check_final_state()
