"""Swift user metadata (X-Account-Meta-*, X-Container-Meta-*, X-Object-Meta-*): read from
request headers within Swift's limits, written back as response headers.

Names are kept lower-case, as the S3 side keeps x-amz-meta-* names, so an object's metadata is
the same set under both APIs (X-Object-Meta-Color is x-amz-meta-color).
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.swift_errors import SwiftError

MAX_NAME = 128
MAX_VALUE = 256
MAX_COUNT = 90
MAX_TOTAL = 4096


def check(meta: Mapping[str, str]) -> None:
    if len(meta) > MAX_COUNT:
        raise SwiftError(400, f"Too many metadata items; max {MAX_COUNT}")
    if sum(len(k) + len(v) for k, v in meta.items()) > MAX_TOTAL:
        raise SwiftError(400, f"Total metadata too large; max {MAX_TOTAL}")
    for name, value in meta.items():
        if not name:
            raise SwiftError(400, "Metadata name cannot be empty")
        if len(name) > MAX_NAME:
            raise SwiftError(400, f"Metadata name too long; max {MAX_NAME}")
        if len(value) > MAX_VALUE:
            raise SwiftError(400, f"Metadata value longer than {MAX_VALUE}")


def from_headers(headers: Mapping[str, str], kind: str) -> dict[str, str]:
    """The `x-<kind>-meta-*` of a request (`kind`: account, container, object), checked."""
    prefix = f"x-{kind}-meta-"
    meta = {k[len(prefix):]: v.strip() for k, v in headers.items() if k.startswith(prefix)}
    check(meta)
    return meta


def updated(current: Mapping[str, str], headers: Mapping[str, str], kind: str
            ) -> dict[str, str]:
    """A POST's change: set what is sent, drop what is sent empty or named by
    X-Remove-<Kind>-Meta-*."""
    out = dict(current)
    prefix, remove = f"x-{kind}-meta-", f"x-remove-{kind}-meta-"
    for name, value in headers.items():
        if name.startswith(prefix):
            if value.strip():
                out[name[len(prefix):]] = value.strip()
            else:
                out.pop(name[len(prefix):], None)
        elif name.startswith(remove):
            out.pop(name[len(remove):], None)
    check(out)
    return out


def to_headers(meta: Mapping[str, str], kind: str) -> dict[str, str]:
    prefix = f"X-{kind.title()}-Meta-"
    return {prefix + "-".join(p.capitalize() for p in name.split("-")): value
            for name, value in meta.items()}
