"""The MonMap: which monitors form the cluster and where they listen."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MonMap:
    fsid: str
    epoch: int = 1
    mons: tuple[tuple[str, str], ...] = ()  # (name, host:port), sorted by name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.mons)

    def addr(self, name: str) -> str:
        return dict(self.mons)[name]
