"""Reading the daemons' /metrics (as Prometheus would) and turning counters into rates.

Ceph's manager gets perf counters from every daemon; ours reads the same figures from each
daemon's Prometheus endpoint, so the dashboard shows exactly what Prometheus would record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Rates", "Sample", "fetch", "parse"]

Labels = tuple[tuple[str, str], ...]


@dataclass
class Sample:
    """One scrape: sample name and labels -> value."""

    at: float
    values: dict[tuple[str, Labels], float] = field(default_factory=dict)

    def total(self, name: str, **labels: str) -> float:
        want = set(labels.items())
        return sum(v for (n, ls), v in self.values.items() if n == name and want <= set(ls))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for (n, ls), v in self.values.items():
            if n == name:
                key = dict(ls).get(label, "")
                out[key] = out.get(key, 0.0) + v
        return out


def parse(text: str, at: float) -> Sample:
    sample = Sample(at)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            sample.values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return sample


async def fetch(session: aiohttp.ClientSession, url: str, at: float,
                timeout: float = 2.0) -> Sample | None:
    """The endpoint's samples, or None when it does not answer (the daemon is down)."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            if resp.status != 200:
                return None
            return parse(await resp.text(), at)
    except (TimeoutError, aiohttp.ClientError, ValueError, OSError):
        return None


class Rates:
    """Per-second rates of counters between two scrapes of one daemon (a counter that went
    back -- the daemon restarted -- counts from zero)."""

    def __init__(self) -> None:
        self.previous: Sample | None = None
        self.current: Sample | None = None

    def update(self, sample: Sample | None) -> None:
        if sample is None:
            self.previous = self.current = None
            return
        self.previous, self.current = self.current, sample

    def rate(self, name: str, **labels: str) -> float:
        if self.previous is None or self.current is None:
            return 0.0
        dt = self.current.at - self.previous.at
        if dt <= 0:
            return 0.0
        now, before = self.current.total(name, **labels), self.previous.total(name, **labels)
        return (now - before if now >= before else now) / dt

    def mean(self, histogram: str, **labels: str) -> float | None:
        """Mean of a histogram's observations between the two scrapes (None: none made)."""
        if self.previous is None or self.current is None:
            return None
        count = (self.current.total(f"{histogram}_count", **labels)
                 - self.previous.total(f"{histogram}_count", **labels))
        total = (self.current.total(f"{histogram}_sum", **labels)
                 - self.previous.total(f"{histogram}_sum", **labels))
        return total / count if count > 0 else None
