"""One root exception for Loligo, with families that every interface maps in one table.

The gRPC status, S3/Swift error and errno that each family becomes are decided where the
interface lives (one table each); code below only raises these.
"""

from __future__ import annotations


class LoligoError(Exception):
    """Root of every error Loligo raises on purpose."""


class InvalidArgument(LoligoError):
    """The caller gave input that can never succeed (bad name, malformed map, wrong type)."""


class CrushMapError(InvalidArgument):
    """A CRUSH map that cannot be parsed or is not safe to map with.

    `line` is the 1-based line of the text map the error is about, when there is one.
    """

    def __init__(self, message: str, line: int | None = None):
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


class NotFound(LoligoError):
    """The named pool, object, rule, bucket or device does not exist."""


class NoSuchPool(NotFound):
    """A pool that does not exist, in the one wording every command and the client use."""

    def __init__(self, pool: str | int) -> None:
        super().__init__(f"pool {pool_label(pool)} does not exist")


def pool_label(pool: str | int) -> str:
    """'data' for a name, id 3 for a number."""
    return f"id {pool}" if isinstance(pool, int) else f"'{pool}'"


def show_name(name: bytes | str, limit: int = 200) -> str:
    """An object name for a message: as text in quotes ('a/b'), never a bytes repr
    (b'a/b'); bytes that are not UTF-8 appear as \\x escapes, a long name is cut."""
    text = name.decode("utf-8", "backslashreplace") if isinstance(name, bytes) else name
    return f"'{text[:limit]}'" + ("..." if len(text) > limit else "")


class AlreadyExists(LoligoError):
    """What was to be created exists already (a collection, an exclusive create)."""


class ChecksumError(LoligoError):
    """Stored data does not match its checksum: that copy is corrupt and must be repaired from
    another. Never accompanied by data. `where` names the object and block when known."""

    def __init__(self, message: str, where: tuple[str, bytes, int] | None = None):
        self.where = where
        super().__init__(message)


class StoreFull(LoligoError):
    """The disk is full (ENOSPC): the write was not applied; what is stored stays usable."""


class StaleEpoch(LoligoError):
    """The sender's map is older than ours; fetch the newer map and resend."""


class NotPrimary(LoligoError):
    """This OSD is not the primary of the PG for the sender's map epoch."""


class Timeout(LoligoError):
    """An operation did not complete before its deadline."""
