"""The MDSMap: which metadata servers exist, which one is active (rank 0) and which stand by,
and the file system they serve (`loligo fs new`)."""

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
class FsInfo:
    name: str
    metadata_pool: int
    data_pool: int
    created: int = 0
    joinable: bool = True


@dataclass(frozen=True)
class MDSMap:
    epoch: int = 1
    daemons: tuple[MdsInfo, ...] = ()  # sorted by name
    filesystems: tuple[FsInfo, ...] = ()

    @property
    def active(self) -> MdsInfo | None:
        return next((d for d in self.daemons if d.state == ACTIVE), None)

    @property
    def standbys(self) -> list[MdsInfo]:
        return [d for d in self.daemons if d.state == STANDBY]

    def get(self, name: str) -> MdsInfo | None:
        return next((d for d in self.daemons if d.name == name), None)

    def fs(self, name: str | None = None) -> FsInfo | None:
        """The file system called `name` (None: the first one)."""
        return next((f for f in self.filesystems if name is None or f.name == name), None)

    @property
    def joinable(self) -> bool:
        """Whether an MDS may be active: no file system yet, or one not failed."""
        return all(f.joinable for f in self.filesystems)
