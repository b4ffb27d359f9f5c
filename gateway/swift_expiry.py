"""X-Delete-At / X-Delete-After as Swift's requests give them: the end of life an object gets
(`delete_at` in its index entry; expiry.py removes it then)."""

from __future__ import annotations

import time

from gateway.swift_errors import SwiftError


def delete_at(headers: dict[str, str], now: float | None = None) -> int | None:
    """The time a request's X-Delete-At / X-Delete-After asks for (None: none asked);
    400 for a malformed one or one in the past."""
    now = time.time() if now is None else now
    if "x-delete-after" in headers:
        try:
            after = int(headers["x-delete-after"])
        except ValueError:
            raise SwiftError(400, "Non-integer X-Delete-After") from None
        if after < 0:
            raise SwiftError(400, "X-Delete-After in past")
        return int(now) + after
    if "x-delete-at" in headers:
        try:
            at = int(float(headers["x-delete-at"]))
        except ValueError:
            raise SwiftError(400, "Non-integer X-Delete-At") from None
        if at < now:
            raise SwiftError(400, "X-Delete-At in past")
        return at
    return None
