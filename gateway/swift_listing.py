"""Swift listings of an account (containers) and of a container (objects and `subdir`s), as
plain text, JSON or XML, chosen by `format=` or else the Accept header. Pure formatting: the
handlers fetch the rows.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.swift_errors import SwiftError

TYPES = {"json": "application/json", "xml": "application/xml", "plain": "text/plain"}


def choose_format(query: dict[str, str], accept: str) -> str:
    """json, xml or plain."""
    fmt = query.get("format", "").lower()
    if fmt in TYPES:
        return fmt
    if fmt:
        raise SwiftError(400, f"Invalid format {fmt[:20]!r}")
    best, best_q = "plain", -1.0
    for item in accept.split(","):
        kind, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        found = {"application/json": "json", "application/xml": "xml", "text/xml": "xml",
                 "text/plain": "plain", "*/*": "plain", "text/*": "plain",
                 "application/*": "json"}.get(kind.lower())
        if found is not None and q > best_q:
            best, best_q = found, q
    return best


def timestamp(ts: float) -> str:
    """Swift's last_modified: ISO 8601 with microseconds, no zone (UTC)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def object_row(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "hash": entry.get("etag", ""), "bytes": entry.get("size", 0),
            "content_type": entry.get("ctype") or "application/octet-stream",
            "last_modified": timestamp(entry.get("mtime", 0.0))}


POLICY = "default"  # the one storage policy /info lists


def container_row(name: str, count: int, size: int, created: float) -> dict[str, Any]:
    return {"name": name, "count": count, "bytes": size, "last_modified": timestamp(created),
            "storage_policy": POLICY}


def render(fmt: str, kind: str, name: str, rows: list[dict[str, Any]]) -> tuple[bytes, str]:
    """(body, content type) of a listing; `kind` is "account" or "container". A row is an
    object/container row or {"subdir": prefix}."""
    ctype = TYPES[fmt] + "; charset=utf-8"
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False).encode(), ctype
    if fmt == "xml":
        root = ET.Element(kind, {"name": name})
        item = "container" if kind == "account" else "object"
        for row in rows:
            if "subdir" in row:
                sub = ET.SubElement(root, "subdir", {"name": row["subdir"]})
                ET.SubElement(sub, "name").text = row["subdir"]
                continue
            el = ET.SubElement(root, item)
            for field, value in row.items():
                ET.SubElement(el, field).text = str(value)
        body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "utf-8",
                                                                         xml_declaration=False)
        return body, ctype
    text = "".join((row.get("subdir") or row["name"]) + "\n" for row in rows)
    return text.encode(), ctype


@dataclass
class Params:
    limit: int
    marker: str = ""
    end_marker: str = ""
    prefix: str = ""
    delimiter: str = ""
    reverse: bool = False


def params(query: dict[str, str], max_limit: int) -> Params:
    raw = query.get("limit", "")
    # as Swift: a limit that is not a whole number is no limit (its listing maximum)
    limit = int(raw) if raw.isdigit() else max_limit
    if limit > max_limit:
        raise SwiftError(412, f"Maximum limit is {max_limit}")
    delimiter = query.get("delimiter", "")
    reverse = query.get("reverse", "").lower() in ("1", "true", "yes", "on", "t", "y")
    return Params(limit, query.get("marker", ""), query.get("end_marker", ""),
                  query.get("prefix", ""), delimiter, reverse)


def select(names: list[str], p: Params) -> list[tuple[str, bool]]:
    """(name, is a subdir) of sorted `names` that `p` asks for, in listing order. For
    listings held in memory (an account's containers, a reversed container listing)."""
    def key(name: str) -> bytes:
        return name.encode("utf-8", "surrogateescape")

    lo, hi = (p.end_marker, p.marker) if p.reverse else (p.marker, p.end_marker)
    seq = reversed(names) if p.reverse else iter(names)
    out: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for name in seq:
        if len(out) >= p.limit:
            break
        if not name.startswith(p.prefix):
            continue
        if (lo and key(name) <= key(lo)) or (hi and key(name) >= key(hi)):
            continue
        if p.delimiter:
            i = name.find(p.delimiter, len(p.prefix))
            if i >= 0:
                sub = name[:i + len(p.delimiter)]
                if sub not in seen and not (p.marker and not p.reverse
                                            and key(sub) <= key(p.marker)):
                    seen.add(sub)
                    out.append((sub, True))
                continue
        out.append((name, False))
    return out
