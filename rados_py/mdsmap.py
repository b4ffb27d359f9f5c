"""The MDSMap: which metadata servers exist, which one is active (rank 0) and which stand by."""

from __future__ import annotations

from dataclasses import dataclass

ACTIVE, STANDBY = "active", "standby"


@dataclass(frozen=True)
class MdsInfo:
    name: str
    addr: str
    rank: int = -1  # 0 for the active MDS, -1 for a standby
    state: str = STANDBY


@dataclass(frozen=True)
class MDSMap:
    epoch: int = 1
    daemons: tuple[MdsInfo, ...] = ()  # sorted by name

    @property
    def active(self) -> MdsInfo | None:
        return next((d for d in self.daemons if d.state == ACTIVE), None)

    @property
    def standbys(self) -> list[MdsInfo]:
        return [d for d in self.daemons if d.state == STANDBY]

    def get(self, name: str) -> MdsInfo | None:
        return next((d for d in self.daemons if d.name == name), None)
