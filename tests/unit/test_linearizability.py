"""The linearizability checker: it accepts what a correct register could have answered,
rejects known anomalies (stale reads, lost writes, double CAS, versions going back, failed
writes seen), and gives up within its budget instead of hanging."""

from __future__ import annotations

import random
import time

from tests.linearizability import MISMATCH, Op, check


def w(client: str, value: str, t0: float, t1: float | None, version: int | None = None,
      status: str = "ok", key: str = "x") -> Op:
    return Op(client, key, "write", value, t0, t1, status, version)  # type: ignore[arg-type]


def r(client: str, t0: float, t1: float, value: str | None, version: int,
      key: str = "x") -> Op:
    return Op(client, key, "read", None, t0, t1, "ok", (value, version))


def cas(client: str, expected: int, value: str, t0: float, t1: float | None,
        output: object = None, status: str = "ok") -> Op:
    return Op(client, "x", "cas", (expected, value), t0, t1, status, output)  # type: ignore


def test_sequential_history_is_linearizable() -> None:
    v = check([r("a", 0, 1, None, 0), w("a", "1", 2, 3, 10), r("b", 4, 5, "1", 10),
               cas("b", 10, "2", 6, 7, 11), cas("a", 10, "3", 8, 9, MISMATCH),
               r("a", 10, 11, "2", 11)])
    assert v.linearizable is True, v.reason


def test_concurrent_writes_may_be_read_in_either_order() -> None:
    for first, second in (("1", "2"), ("2", "1")):
        ops = [w("a", "1", 0, 10, 5), w("b", "2", 1, 9, 6 if second == "2" else 4)]
        ops += [r("c", 11, 12, second, 6 if second == "2" else 5)]
        assert check(ops).linearizable is True, (first, second)


def test_stale_read_after_an_acknowledged_write_is_rejected() -> None:
    v = check([w("a", "1", 0, 1, 1), w("a", "2", 2, 3, 2), r("b", 4, 5, "1", 1)])
    assert v.linearizable is False
    assert "read" in v.reason and "'1'" in v.reason


def test_a_read_may_see_a_write_still_in_flight_but_never_go_back() -> None:
    ops = [w("a", "1", 0, 1, 1), w("a", "2", 2, 10, 2), r("b", 3, 4, "2", 2),
           r("c", 5, 6, "1", 1)]
    assert check(ops[:3]).linearizable is True
    assert check(ops).linearizable is False  # once "2" was seen, "1" is gone for everyone


def test_value_never_written_is_rejected() -> None:
    assert check([w("a", "1", 0, 1, 1), r("b", 2, 3, "9", 1)]).linearizable is False


def test_two_cas_on_one_version_cannot_both_win() -> None:
    ops = [w("a", "0", 0, 1, 1), cas("a", 1, "A", 2, 5, 2), cas("b", 1, "B", 3, 6, 3)]
    assert check(ops).linearizable is False
    ok = [*ops[:2], cas("b", 1, "B", 3, 6, MISMATCH), r("c", 7, 8, "A", 2)]
    assert check(ok).linearizable is True


def test_a_cas_mismatch_on_the_current_version_is_rejected() -> None:
    ops = [w("a", "0", 0, 1, 1), cas("b", 1, "B", 2, 3, MISMATCH)]
    assert check(ops).linearizable is False


def test_versions_never_go_back() -> None:
    assert check([w("a", "1", 0, 1, 5), w("a", "2", 2, 3, 4)]).linearizable is False


def test_failed_writes_did_not_happen() -> None:
    ops = [w("a", "1", 0, 1, 1), w("b", "2", 2, 3, status="fail"), r("c", 4, 5, "2", 2)]
    assert check(ops).linearizable is False
    assert check([*ops[:2], r("c", 4, 5, "1", 1)]).linearizable is True


def test_unknown_writes_may_land_late_or_never_but_not_flicker() -> None:
    lost = w("b", "2", 2, None, status="unknown")
    assert check([w("a", "1", 0, 1, 1), lost, r("c", 4, 5, "1", 1)]).linearizable is True
    assert check([w("a", "1", 0, 1, 1), lost, r("c", 40, 41, "2", 7)]).linearizable is True
    flicker = [w("a", "1", 0, 1, 1), lost, r("c", 4, 5, "2", 7), r("c", 6, 7, "1", 1)]
    assert check(flicker).linearizable is False
    # an unknown write can never take effect before it was invoked
    early = [w("a", "1", 0, 1, 1), r("c", 1.5, 1.8, "2", 7), lost]
    assert check(early).linearizable is False


def test_unknown_cas_may_or_may_not_have_applied() -> None:
    base = [w("a", "0", 0, 1, 1), cas("b", 1, "B", 2, None, status="unknown")]
    assert check([*base, r("c", 5, 6, "B", 3)]).linearizable is True
    assert check([*base, r("c", 5, 6, "0", 1)]).linearizable is True
    assert check([*base, cas("c", 1, "C", 5, 6, 4), r("c", 7, 8, "B", 5)]).linearizable \
        is False  # B could only apply on version 1, which C already replaced


def test_objects_are_checked_independently() -> None:
    ops = [w("a", "1", 0, 1, 1, key="x"), w("a", "1", 0, 1, 1, key="y"),
           r("b", 2, 3, "1", 1, key="x"), r("b", 2, 3, None, 0, key="y")]
    v = check(ops)
    assert v.linearizable is False and v.keys == 2
    assert v.reason.startswith("y:")


def _simulated(seed: int, clients: int = 5, ops: int = 60) -> list[Op]:
    """A history from a correct register: each op takes effect at a random instant inside
    its [invoke, complete] window; some answers are lost (unknown)."""
    rng = random.Random(seed)
    windows = []
    for i in range(ops):
        t0 = rng.uniform(0, 100)
        windows.append((t0, t0 + rng.uniform(0.1, 8), rng.random(), i))
    value, version, out = None, 0, []
    for t0, t1, _, i in sorted(windows, key=lambda x: x[0] + (x[1] - x[0]) * x[2]):
        client = f"c{i % clients}"
        kind = rng.choice(("read", "write", "cas"))
        status = "unknown" if rng.random() < 0.1 else "ok"
        if kind == "read":
            op = Op(client, "x", "read", None, t0, t1, "ok", (value, version))
        elif kind == "write":
            value, version = f"v{i}", version + rng.randint(1, 3)
            op = Op(client, "x", "write", value, t0, t1, status, version)
        else:
            expected = version if rng.random() < 0.6 else version + 1
            if expected == version:
                value, version = f"v{i}", version + 1
                op = Op(client, "x", "cas", (expected, value), t0, t1, status, version)
            else:
                op = Op(client, "x", "cas", (expected, f"v{i}"), t0, t1, status, MISMATCH)
        if op.status == "unknown":
            op = Op(op.client, op.key, op.kind, op.arg, op.invoke, None, "unknown")
        out.append(op)
    return out


def test_histories_of_a_correct_register_are_accepted() -> None:
    for seed in range(40):
        v = check(_simulated(seed))
        assert v.linearizable is True, (seed, v.reason)


def test_a_corrupted_history_is_rejected() -> None:
    rejected = 0
    for seed in range(40):
        ops = _simulated(seed)
        reads = [i for i, op in enumerate(ops) if op.kind == "read" and op.output[0]]
        if not reads:
            continue
        i = reads[-1]
        version = ops[i].output[1]
        ops[i] = Op(ops[i].client, "x", "read", None, ops[i].invoke, ops[i].complete, "ok",
                    ("never-written", version))
        assert check(ops).linearizable is False, seed
        rejected += 1
    assert rejected > 30


def test_search_is_bounded_and_says_it_gave_up() -> None:
    # many concurrent writes none of which is ever read: a huge search space for a wrong
    # final read, explored within the budget
    ops = [w(f"c{i}", str(i), 0, 100, status="unknown") for i in range(40)]
    ops.append(r("z", 200, 201, "nothing", 99))
    start = time.monotonic()
    v = check(ops, max_steps=20_000, timeout=5)
    assert v.linearizable is None and "gave up" in v.reason
    assert time.monotonic() - start < 5
    v = check(ops, max_steps=10**9, timeout=0.3)
    assert v.linearizable is None and time.monotonic() - start < 6
