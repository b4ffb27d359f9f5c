"""X-Delete-At / X-Delete-After: an object's end of life, kept in its index entry
(`delete_at`, seconds since the epoch).

Past that time the object is gone for every reader (404, absent from listings); the request
that meets it first removes it, with its data handed to the GC. The removal is guarded: it only
takes the very entry that expired, never a newer object written under the same name meanwhile.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.buckets import Bucket
from gateway.context import Services
from gateway.swift_errors import SwiftError
from gateway.versioning import Change, Shard


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


async def remove_expired(svc: Services, bucket: Bucket, key: bytes,
                         entry: dict[str, Any]) -> None:
    """Remove `entry` if it is still the key's current object (a versioned bucket keeps its
    versions: there it is only hidden)."""
    def decide(shard: Shard) -> Change:
        change = Change()
        cur = shard.current
        if (not shard.mode and cur is not None and cur.get("mtime") == entry.get("mtime")
                and cur.get("etag") == entry.get("etag")):
            change.removes.append(key)
            change.garbage.append(cur)
        return change

    change = await svc.objects.versions.change(bucket, key, decide)
    segs = [seg for e in change.garbage for seg in e.get("segs", [])]
    if segs:
        await svc.gc.defer(segs)
