"""The simulated world: a virtual clock with an event queue, and a network that misbehaves.

Everything is driven by one ``random.Random``, and events at the same virtual time run in the order
they were scheduled, so a run is a pure function of its seed (TigerBeetle's VOPR, FoundationDB's
simulation). Nothing here knows about Raft; callers schedule plain callables.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


class Simulator:
    """A virtual clock and the queue of what happens next."""

    def __init__(self) -> None:
        self.now = 0.0
        self.events_run = 0
        self._queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()  # breaks ties between events at the same time

    def at(self, when: float, action: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._queue, (max(when, self.now), next(self._order), action, args))

    def after(self, delay: float, action: Callable[..., None], *args: Any) -> None:
        self.at(self.now + delay, action, *args)

    def run_until(self, end: float) -> None:
        """Run every event due up to ``end``, then leave the clock at ``end``."""
        queue = self._queue
        while queue and queue[0][0] <= end:
            when, _, action, args = heapq.heappop(queue)
            self.now = when
            self.events_run += 1
            action(*args)
        self.now = max(self.now, end)


@dataclass(frozen=True)
class LinkFaults:
    """How every link misbehaves: a delay drawn uniformly from [min_delay, max_delay] per message
    (so messages overtake each other), and probabilities of losing or duplicating one."""

    min_delay: float = 0.001
    max_delay: float = 0.01
    loss: float = 0.0
    duplicate: float = 0.0


class Network:
    """Carries messages between named nodes with delay, loss, duplication and reordering, and can
    be split into partitions that only talk within themselves.

    A message crosses only if its ends are in the same partition both when it is sent and when it
    arrives; ``deliver(destination, message)`` decides what arriving means (the destination may be
    down, for instance).
    """

    def __init__(self, sim: Simulator, rng: random.Random, nodes: Sequence[str],
                 deliver: Callable[[str, Any], None], faults: LinkFaults) -> None:
        self.sim = sim
        self.rng = rng
        self.nodes = tuple(nodes)
        self.faults = faults
        self._deliver = deliver
        self._side = dict.fromkeys(self.nodes, 0)
        self.sent = self.lost = 0

    def connected(self, a: str, b: str) -> bool:
        return self._side[a] == self._side[b]

    def send(self, source: str, destination: str, message: Any) -> None:
        self.sent += 1
        faults, rng = self.faults, self.rng
        if not self.connected(source, destination) or rng.random() < faults.loss:
            self.lost += 1
            return
        copies = 2 if faults.duplicate and rng.random() < faults.duplicate else 1
        for _ in range(copies):
            delay = rng.uniform(faults.min_delay, faults.max_delay)
            self.sim.after(delay, self._arrive, source, destination, message)

    def _arrive(self, source: str, destination: str, message: Any) -> None:
        if self.connected(source, destination):
            self._deliver(destination, message)
        else:
            self.lost += 1

    def partition(self, groups: Sequence[Sequence[str]]) -> None:
        """Split the network: nodes talk only within their group (unlisted nodes: alone)."""
        self._side = {node: -1 - i for i, node in enumerate(self.nodes)}
        for side, group in enumerate(groups):
            for node in group:
                self._side[node] = side

    def heal(self) -> None:
        self._side = dict.fromkeys(self.nodes, 0)

    def random_split(self) -> list[list[str]]:
        """A random partition: one node cut off, or the nodes scattered over two or three sides."""
        nodes = list(self.nodes)
        if len(nodes) < 2:
            return [nodes]
        if self.rng.random() < 0.3:
            alone = self.rng.choice(nodes)
            return [[alone], [n for n in nodes if n != alone]]
        sides: list[list[str]] = [[] for _ in range(self.rng.choice((2, 2, 3)))]
        for node in nodes:
            self.rng.choice(sides).append(node)
        return [side for side in sides if side]

    def describe(self) -> str:
        groups: dict[int, list[str]] = {}
        for node, side in self._side.items():
            groups.setdefault(side, []).append(node)
        return "healed" if len(groups) == 1 else " | ".join(",".join(g) for g in groups.values())

