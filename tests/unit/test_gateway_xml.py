"""S3 XML documents and request parsing, request routing (path-style, virtual-host style,
literal keys) and the range/condition rules of GET."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from gateway import errors, s3_xml
from gateway.s3_objects import check_conditions, parse_range
from gateway.server import split_target


def test_error_document_has_code_message_resource_request_id() -> None:
    body = s3_xml.error_document("NoSuchKey", "The specified key does not exist.",
                                 "/b/k", "tx1", {"Key": "k"})
    root = ET.fromstring(body)
    assert root.tag == "Error"
    assert {c.tag: c.text for c in root} == {
        "Code": "NoSuchKey", "Message": "The specified key does not exist.", "Key": "k",
        "Resource": "/b/k", "RequestId": "tx1", "HostId": "tx1"}


def test_documents_escape_keys() -> None:
    body = s3_xml.document("ListBucketResult", [("Contents", [("Key", "a<&>'\"b")])])
    root = ET.fromstring(body)
    assert root.find(f"{{{s3_xml.NS}}}Contents/{{{s3_xml.NS}}}Key").text == "a<&>'\"b"


@pytest.mark.parametrize("body", [
    b"<Delete><Object><Key>a</Key></Object>",  # not closed
    b"not xml at all",
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
    b"<Delete><Object><Key>&b;</Key></Object></Delete>",  # entity expansion
    b"<a>" * 10 + b"x" * (2 << 20),  # too big
])
def test_bad_request_xml_is_malformed_xml(body: bytes) -> None:
    with pytest.raises(errors.MalformedXML):
        s3_xml.parse(body)


def test_namespaces_are_stripped() -> None:
    root = s3_xml.parse(f'<Delete xmlns="{s3_xml.NS}"><Object><Key>k</Key></Object>'
                        "</Delete>".encode())
    assert root.tag == "Delete" and s3_xml.text(root.find("Object"), "Key") == "k"


@pytest.mark.parametrize("path,host,want", [
    ("/bucket/key", "127.0.0.1:7480", ("bucket", "key", False)),
    ("/bucket/a//b/../c", "localhost:7480", ("bucket", "a//b/../c", False)),
    ("/bucket/%E2%82%AC%20x", "localhost", ("bucket", "€ x", False)),
    ("/bucket/", "localhost", ("bucket", "", False)),
    ("/", "localhost", ("", "", False)),
    ("/key/with/slash", "mybucket.localhost:7480", ("mybucket", "key/with/slash", True)),
    ("/", "mybucket.localhost", ("mybucket", "", True)),
])
def test_split_target(path: str, host: str, want: tuple[str, str, bool]) -> None:
    assert split_target(path, host, ("localhost",)) == want


def test_non_utf8_path_is_invalid_uri() -> None:
    with pytest.raises(errors.InvalidURI):
        split_target("/b/%ff", "localhost", ())


@pytest.mark.parametrize("header,size,want", [
    ("bytes=0-9", 100, (0, 9)), ("bytes=90-200", 100, (90, 99)), ("bytes=-10", 100, (90, 99)),
    ("bytes=-200", 100, (0, 99)), ("bytes=5-", 100, (5, 99)), ("bytes=9-5", 100, None),
    ("items=0-1", 100, None), ("bytes=0-1,5-6", 100, None), (None, 100, None)])
def test_parse_range(header: str | None, size: int, want: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == want


def test_unsatisfiable_range() -> None:
    with pytest.raises(errors.InvalidRange):
        parse_range("bytes=100-", 100)
    with pytest.raises(errors.InvalidRange):
        parse_range("bytes=0-1", 0)


def test_conditions() -> None:
    entry = {"etag": "abc", "mtime": 1_000_000_000.5}
    check_conditions({"if-match": '"abc"'}, entry)
    check_conditions({"if-none-match": '"zzz"'}, entry)
    check_conditions({"if-modified-since": "Sat, 08 Sep 2001 00:00:00 GMT"}, entry)
    with pytest.raises(errors.PreconditionFailed):
        check_conditions({"if-match": '"zzz"'}, entry)
    with pytest.raises(errors.NotModified):
        check_conditions({"if-none-match": '"abc"'}, entry)
    with pytest.raises(errors.NotModified):
        check_conditions({"if-modified-since": "Sun, 09 Sep 2001 02:00:00 GMT"}, entry)
    with pytest.raises(errors.PreconditionFailed):
        check_conditions({"if-unmodified-since": "Sat, 08 Sep 2001 00:00:00 GMT"}, entry)
    with pytest.raises(errors.PreconditionFailed):  # copy-source conditions fail with 412
        check_conditions({"x-amz-copy-source-if-none-match": '"abc"'}, entry,
                         prefix="x-amz-copy-source-if-", copy=True)
