"""Deterministic simulation of OSDs running the PG state machine (osd/pg_machine.py).

One seed drives everything: message delays and loss, OSD kills and restarts (a store keeps
only what was durable), OSDs going out and in, clients writing, removing and reading through
the primary and resending. The checker (tests/sim/osd_harness.py) asserts after every step
that no member takes anything from an older peering round and no acknowledged write is rolled
back anywhere, and at the end that the PG is active+clean, its members identical and every
object consistent with its history.

    .venv/bin/python -m pytest tests/sim -k osd                                  # the regular run
    LOLIGO_SIM_SEEDS=20000 .venv/bin/python -m pytest tests/sim -k osd_random    # a long run
    LOLIGO_SIM_SEED=123 .venv/bin/python -m pytest tests/sim -k osd_random       # replay one seed
"""

from __future__ import annotations

import pytest

from tests.sim.osd_harness import REPLAY_SEED, SEEDS, Scenario, World


def seeds() -> list[int]:
    return [int(REPLAY_SEED)] if REPLAY_SEED else list(range(SEEDS))


@pytest.mark.parametrize("seed", seeds(), ids=lambda seed: f"seed{seed}")
def test_osd_random_cluster(seed: int) -> None:
    World(Scenario.generate(seed)).run(trace_length=3000 if REPLAY_SEED else 60)


def test_osd_a_seed_replays_identically() -> None:
    first = World(Scenario.generate(5)).run().fingerprint()
    assert World(Scenario.generate(5)).run().fingerprint() == first
    assert World(Scenario.generate(6)).run().fingerprint() != first
