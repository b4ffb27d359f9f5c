"""Swift's Range header: one or more byte ranges (`bytes=0-1,5-9,-3`), answered as Swift's
proxy does (swob.Range.ranges_for_length):

- a header that does not parse is ignored (200, the whole object);
- unsatisfiable ranges are dropped; if none is left, 416;
- one range: 206 with Content-Range; several: 206 `multipart/byteranges`, each part with its
  Content-Type and Content-Range;
- a request for many small or overlapping ranges (more than MAX_RANGES, more than
  MAX_OVERLAPS overlapping pairs, more than MAX_NONASCENDING out of order) is answered with the
  whole object: serving it would cost far more than the object.

S3 takes one range only (s3_objects.parse_range). Pure: no I/O.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

MAX_RANGES = 50
MAX_OVERLAPS = 2
MAX_NONASCENDING = 8


class Unsatisfiable(Exception):
    """No range of the header falls in the object (416)."""


def _parse(value: str) -> list[tuple[int | None, int | None]] | None:
    """(first, last) pairs as written (None: omitted); None if the header does not parse."""
    unit, eq, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or not eq:
        return None
    out: list[tuple[int | None, int | None]] = []
    for part in spec.split(","):
        first, dash, last = part.strip().partition("-")
        if not dash or not (first or last):
            return None
        try:
            lo = int(first) if first else None
            hi = int(last) if last else None
        except ValueError:
            return None
        if (lo is not None and lo < 0) or (hi is not None and hi < 0):
            return None
        if lo is not None and hi is not None and hi < lo:
            return None
        out.append((lo, hi))
    return out


def _too_costly(ranges: list[tuple[int, int]]) -> bool:
    if len(ranges) > MAX_RANGES:
        return True
    overlaps = sum(1 for i, a in enumerate(ranges) for b in ranges[i + 1:]
                   if a[0] <= b[1] and b[0] <= a[1])
    if overlaps > MAX_OVERLAPS:
        return True
    nonascending = sum(1 for a, b in itertools.pairwise(ranges) if b[0] < a[0])
    return nonascending > MAX_NONASCENDING


def ranges_for(value: str | None, size: int) -> list[tuple[int, int]] | None:
    """The (first, last) byte ranges to send, in the order asked; None: send the whole object
    (no header, one that does not parse, or one too costly); Unsatisfiable for a 416."""
    if not value:
        return None
    parsed = _parse(value)
    if parsed is None:
        return None
    out: list[tuple[int, int]] = []
    for lo, hi in parsed:
        if lo is None:
            assert hi is not None
            if hi == 0 or size == 0:
                continue
            out.append((max(0, size - hi), size - 1))
        elif lo < size:
            out.append((lo, size - 1 if hi is None else min(hi, size - 1)))
    if not out:
        raise Unsatisfiable()
    return None if _too_costly(out) else out


@dataclass
class Multipart:
    """The framing of a multipart/byteranges body: each part's head before its bytes, the
    tail after the last; the body's length known up front."""

    ctype: str
    size: int
    ranges: list[tuple[int, int]]
    boundary: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def content_type(self) -> str:
        return f"multipart/byteranges;boundary={self.boundary}"

    def head(self, index: int) -> bytes:
        first, last = self.ranges[index]
        sep = "\r\n" if index else ""
        return (f"{sep}--{self.boundary}\r\nContent-Type: {self.ctype}\r\n"
                f"Content-Range: bytes {first}-{last}/{self.size}\r\n\r\n").encode()

    def tail(self) -> bytes:
        return f"\r\n--{self.boundary}--".encode()

    def length(self) -> int:
        return (sum(len(self.head(i)) + last - first + 1
                    for i, (first, last) in enumerate(self.ranges)) + len(self.tail()))
