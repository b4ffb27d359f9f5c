"""A linearizability checker for histories of register operations (Porcupine/Knossos style).

A history is what clients saw: each operation was invoked at one time and either returned
(`ok`, with its output), failed for certain (`fail`: it did not happen, so it is dropped), or
its outcome is unknown (`unknown`: a timeout, a lost connection -- it may take effect at any
time after its invocation, or never). The history is linearizable when every operation can be
placed at one instant between its invocation and its return so that, in that order, a
sequential register would have answered exactly what the clients saw.

The search is Wing & Gong's with Lowe's memoisation (as Porcupine does): operations are tried
in invocation order, a (linearized set, state) pair already explored is never explored again,
and the history is split by object first (linearizability is local), which keeps each search
small. The search is bounded by a step budget and a deadline: an answer of `None` means "gave
up", never a hang.

The register model is RADOS's: each object has a value and a version; `write` (write_full)
returns the new version, which grows; `read` returns value and version; `cas` is an
assert_version guard plus write_full, which either succeeds (new version) or answers
`mismatch` (ERANGE). An operation of unknown outcome leaves the version unknown but larger
than before, which the next read pins down.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = ["MISMATCH", "Op", "RegisterModel", "Verdict", "check", "check_history"]

Status = Literal["ok", "fail", "unknown"]
MISMATCH = "mismatch"  # a cas whose version guard failed (ERANGE): it changed nothing


@dataclass(frozen=True)
class Op:
    """One client operation. `kind` is write|read|cas; `arg` is the value written (write), or
    (expected_version, value) (cas); `output` is the new version (write, successful cas),
    (value, version) (read; (None, 0) for a missing object), or MISMATCH (cas)."""

    client: str
    key: str
    kind: str
    arg: Any
    invoke: float
    complete: float | None = None  # None while unknown
    status: Status = "ok"
    output: Any = None

    def describe(self) -> str:
        shown = {"ok": repr(self.output), "fail": "failed", "unknown": "unknown"}[self.status]
        end = "?" if self.complete is None else f"{self.complete:.3f}"
        return (f"{self.client} {self.kind}({self.key}, {self.arg!r}) -> {shown} "
                f"[{self.invoke:.3f}, {end}]")


class Model(Protocol):
    def init(self) -> Hashable: ...

    def step(self, state: Hashable, op: Op) -> Iterable[Hashable]:
        """The states `op` may leave from `state` given what it answered; none if it could
        not have answered that."""
        ...


class RegisterModel:
    """A versioned register. State: (value, version, exact); exact=False means only that the
    version is larger than `version` (an unknown-outcome write happened)."""

    def init(self) -> Hashable:
        return (None, 0, True)

    def step(self, state: Hashable, op: Op) -> Iterable[Hashable]:
        value, version, exact = state  # type: ignore[misc]

        def could_be(v: int) -> bool:
            return v == version if exact else v > version

        if op.kind == "read":
            if op.status == "unknown":
                return [state]
            seen_value, seen_version = op.output
            return [(value, seen_version, True)] if (seen_value == value and
                                                     could_be(seen_version)) else []
        if op.kind == "write":
            if op.status == "unknown":
                return [(op.arg, version, False)]
            return [(op.arg, op.output, True)] if op.output > version else []
        if op.kind == "cas":
            expected, new = op.arg
            if op.status == "unknown":
                applied = [(new, expected, False)] if could_be(expected) else []
                return [state, *applied]
            if op.output == MISMATCH:
                return [] if exact and version == expected else [state]
            return [(new, op.output, True)] if could_be(expected) and op.output > expected \
                else []
        raise ValueError(f"unknown register operation {op.kind!r}")


@dataclass
class Verdict:
    """linearizable: True, False, or None when the search gave up (budget or deadline)."""

    linearizable: bool | None
    reason: str = ""
    keys: int = 0
    steps: int = 0
    seconds: float = 0.0
    anomalies: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.linearizable is True


@dataclass(eq=False)
class _Entry:
    op_id: int
    op: Op | None
    time: float
    is_call: bool
    match: _Entry | None = None
    prev: _Entry | None = None
    next: _Entry | None = None


def _entries(ops: Sequence[Op]) -> _Entry:
    """The doubly linked list of call and return events in time order (calls first on a tie:
    the more lenient reading of "at the same instant"); its head is a sentinel."""
    events: list[_Entry] = []
    for i, op in enumerate(ops):
        call = _Entry(i, op, op.invoke, True)
        end = math.inf if op.status == "unknown" or op.complete is None else op.complete
        ret = _Entry(i, None, end, False)
        call.match = ret
        events += [call, ret]
    events.sort(key=lambda e: (e.time, not e.is_call, e.op_id))
    head = _Entry(-1, None, -math.inf, False)
    prev = head
    for e in events:
        prev.next, e.prev = e, prev
        prev = e
    return head


def _lift(call: _Entry) -> None:
    for e in (call, call.match):
        assert e is not None and e.prev is not None
        e.prev.next = e.next
        if e.next is not None:
            e.next.prev = e.prev


def _unlift(call: _Entry) -> None:
    for e in (call.match, call):
        assert e is not None and e.prev is not None
        e.prev.next = e
        if e.next is not None:
            e.next.prev = e


class _GaveUp(Exception):
    pass


def _check_one(ops: Sequence[Op], model: Model, budget: list[int], deadline: float
               ) -> tuple[bool, str]:
    """Search one object's history; (linearizable, why not)."""
    head = _entries(ops)
    state: frozenset[Hashable] = frozenset([model.init()])
    linearized = 0
    seen: set[tuple[int, frozenset[Hashable]]] = set()
    stack: list[tuple[_Entry, frozenset[Hashable]]] = []
    stuck_at: tuple[int, int] = (-1, -1)  # (depth, op) of the deepest dead end
    entry = head.next
    while head.next is not None:
        budget[0] -= 1
        if budget[0] < 0 or (budget[0] % 1024 == 0 and time.monotonic() > deadline):
            raise _GaveUp
        assert entry is not None
        if entry.is_call:
            assert entry.op is not None
            new = frozenset(s for old in state for s in model.step(old, entry.op))
            if new:
                key = (linearized | 1 << entry.op_id, new)
                if key not in seen:
                    seen.add(key)
                    stack.append((entry, state))
                    state, linearized = new, key[0]
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:  # an operation returned before anything we could place: undo the last choice
            if len(stack) >= stuck_at[0]:
                stuck_at = (len(stack), entry.op_id)
            if not stack:
                return False, _explain(ops, stuck_at[1], state)
            entry, state = stack.pop()
            linearized &= ~(1 << entry.op_id)
            _unlift(entry)
            entry = entry.next
    return True, ""


def _explain(ops: Sequence[Op], op_id: int, state: frozenset[Hashable]) -> str:
    return (f"no order explains {ops[op_id].describe()} (deepest dead end; "
            f"{len(ops)} operations on this object)")


def check(ops: Iterable[Op], model: Model | None = None, *, max_steps: int = 2_000_000,
          timeout: float = 30.0) -> Verdict:
    """Check a history (ops of any objects, any order); failed operations are dropped."""
    model = model or RegisterModel()
    start = time.monotonic()
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.status != "fail":
            by_key[op.key].append(op)
    budget = [max_steps]
    verdict = Verdict(True, keys=len(by_key))
    try:
        for key in sorted(by_key):
            ok, why = _check_one(by_key[key], model, budget, start + timeout)
            if not ok:
                verdict.linearizable = False
                verdict.anomalies.append(f"{key}: {why}")
    except _GaveUp:
        verdict.linearizable = None
        verdict.reason = (f"gave up after {max_steps - budget[0]} steps / "
                          f"{time.monotonic() - start:.1f} s (budget {max_steps} steps, "
                          f"{timeout} s): the history is too concurrent to decide")
    verdict.steps = max_steps - max(budget[0], 0)
    verdict.seconds = time.monotonic() - start
    if verdict.linearizable is False:
        verdict.reason = "; ".join(verdict.anomalies)
    return verdict


def check_history(ops: Iterable[Op], **kwargs: Any) -> Verdict:
    """`check`, failing the test on an anomaly or when the search gives up."""
    verdict = check(ops, **kwargs)
    assert verdict.linearizable is True, f"linearizability: {verdict.reason}"
    return verdict
