"""S3 tags as values: parsed from x-amz-tagging headers and Tagging XML, checked against S3's
limits, written back as XML (pure: used by the tagging handlers, PUT, copy and POST forms)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from gateway import errors, s3_xml
from gateway.s3_xml import Node, document

MAX_OBJECT_TAGS = 10
MAX_BUCKET_TAGS = 50


def check_tags(pairs: list[tuple[str, str]], limit: int) -> dict[str, str]:
    """Tags as S3 allows them: at most `limit`, keys of 1-128 and values of 0-256 characters,
    no key twice."""
    if len(pairs) > limit:
        raise errors.InvalidTag(f"Object tags cannot be greater than {limit}")
    tags: dict[str, str] = {}
    for key, value in pairs:
        if not 1 <= len(key) <= 128:
            raise errors.InvalidTag("The TagKey you have provided is invalid")
        if len(value) > 256:
            raise errors.InvalidTag("The TagValue you have provided is invalid")
        if key in tags:
            raise errors.InvalidTag("Cannot provide multiple Tags with the same key")
        tags[key] = value
    return tags


def tags_from_header(value: str) -> dict[str, str]:
    """x-amz-tagging: a URL query string, `k1=v1&k2=v2`."""
    return check_tags(parse_qsl(value, keep_blank_values=True), MAX_OBJECT_TAGS)


def tags_from_xml(body: bytes, limit: int = MAX_OBJECT_TAGS) -> dict[str, str]:
    root = s3_xml.parse(body)
    if root.tag != "Tagging" or root.find("TagSet") is None:
        raise errors.MalformedXML()
    pairs = []
    for tag in root.iterfind("TagSet/Tag"):
        key, value = s3_xml.text(tag, "Key"), s3_xml.text(tag, "Value", "")
        if key is None:
            raise errors.MalformedXML()
        pairs.append((key, value or ""))
    return check_tags(pairs, limit)


def tagging_document(tags: dict[str, str]) -> bytes:
    tag_nodes: list[Node] = [("Tag", [("Key", k), ("Value", v)]) for k, v in tags.items()]
    return document("Tagging", [("TagSet", tag_nodes)])
