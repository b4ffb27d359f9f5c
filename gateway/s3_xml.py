"""S3's XML: documents built from nested (tag, value) data, request bodies parsed safely.

Request bodies come from anyone, so they are parsed with defusedxml (no entity expansion, no
external entities) and size-limited by the caller; any parse failure is MalformedXML.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from gateway import errors

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_BODY = 1 << 20  # the largest XML request body read (DeleteObjects of 1,000 keys fits)

Node = tuple[str, Any]  # (tag, text | list of Node | None)


def iso8601(ts: float) -> str:
    """2026-01-02T03:04:05.000Z, as S3 writes times in XML."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def _fill(parent: ET.Element, children: Iterable[Node]) -> None:
    for tag, value in children:
        if value is None:
            continue
        el = ET.SubElement(parent, tag)
        if isinstance(value, list):
            _fill(el, value)
        elif isinstance(value, bool):
            el.text = "true" if value else "false"
        else:
            el.text = str(value)


def document(root: str, children: Iterable[Node], namespace: bool = True) -> bytes:
    el = ET.Element(root, {"xmlns": NS} if namespace else {})
    _fill(el, children)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(el, encoding="utf-8",
                                                                     xml_declaration=False)


def error_document(code: str, message: str, resource: str, request_id: str,
                   extra: dict[str, str]) -> bytes:
    children: list[Node] = [("Code", code), ("Message", message)]
    children += [(k.replace("_", "-"), v) for k, v in extra.items()]
    children += [("Resource", resource), ("RequestId", request_id), ("HostId", request_id)]
    return document("Error", children, namespace=False)


def parse(body: bytes) -> ET.Element:
    """A request body as elements with namespaces stripped from the tags."""
    if len(body) > MAX_BODY:
        raise errors.MalformedXML("The XML body is too large")
    try:
        root = SafeET.fromstring(body)
    except (ET.ParseError, DefusedXmlException, ValueError):
        raise errors.MalformedXML() from None
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def text(el: ET.Element, tag: str, default: str | None = None) -> str | None:
    child = el.find(tag)
    return child.text or "" if child is not None else default


def encode_key(key: str, url: bool) -> str:
    """A key as a listing writes it: as is, or URL-encoded for encoding-type=url (so keys
    with characters XML cannot carry survive)."""
    return quote(key, safe="/") if url else key
