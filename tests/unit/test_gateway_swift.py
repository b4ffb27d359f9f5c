"""Swift's pure parts: tokens, TempURL signatures, listing formats and selection, ACLs,
metadata limits, large-object slicing and the S3/Swift routing decision."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import xml.etree.ElementTree as ET

import pytest

from gateway import swift_acl, swift_listing, swift_meta, swift_tempurl
from gateway.swift_auth import sign_token, verify_token
from gateway.swift_errors import SwiftError
from gateway.swift_expiry import delete_at
from gateway.swift_large import manifest_etag, parse_range, slice_pieces
from gateway.swift_server import classify

SECRET = b"s" * 32


# --- tokens ---------------------------------------------------------------------------------

def test_a_token_names_its_user_until_it_expires() -> None:
    token = sign_token(SECRET, "alice", "alice:swift", 2000)
    assert token.startswith("AUTH_tk")
    found = verify_token(SECRET, token, 1999.0)
    assert found is not None and (found.uid, found.swift_user) == ("alice", "alice:swift")
    assert verify_token(SECRET, token, 2001.0) is None


def test_a_token_signed_otherwise_or_altered_is_refused() -> None:
    token = sign_token(SECRET, "alice", "alice:swift", 2000)
    assert verify_token(b"t" * 32, token, 0) is None
    _, mac = token[len("AUTH_tk"):].split(".")
    forged = base64.urlsafe_b64encode(b"root\nroot:swift\n2000").decode().rstrip("=")
    assert verify_token(SECRET, f"AUTH_tk{forged}.{mac}", 0) is None
    assert verify_token(SECRET, token[:-1] + ("0" if token[-1] != "0" else "1"), 0) is None
    for junk in ("", "AUTH_tk", "AUTH_tk.", "nonsense", "AUTH_tk" + "x" * 2000):
        assert verify_token(SECRET, junk, 0) is None


# --- TempURL --------------------------------------------------------------------------------

PATH = "/swift/v1/AUTH_alice/c/o"


def test_tempurl_accepts_each_digest_and_both_path_forms() -> None:
    for digest in ("sha1", "sha256", "sha512"):
        for path in (PATH, PATH[len("/swift"):]):
            sig = swift_tempurl.sign("key", "GET", 2000, path, digest)
            swift_tempurl.check({"temp_url_sig": sig, "temp_url_expires": "2000"}, "GET",
                                PATH, "o", ["other", "key"], 1000.0)
    raw = hmac.new(b"key", f"GET\n2000\n{PATH}".encode(), hashlib.sha512).digest()
    b64 = "sha512:" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    swift_tempurl.check({"temp_url_sig": b64, "temp_url_expires": "2000"}, "GET", PATH, "o",
                        ["key"], 1000.0)


def test_tempurl_refusals_are_401() -> None:
    sig = swift_tempurl.sign("key", "GET", 2000, PATH)
    good = {"temp_url_sig": sig, "temp_url_expires": "2000"}
    cases = [(good, "PUT", PATH, ["key"], 1000.0),          # another method
             (good, "GET", PATH + "x", ["key"], 1000.0),    # another object
             (good, "GET", PATH, ["nope"], 1000.0),         # another key
             (good, "GET", PATH, ["key"], 3000.0),          # expired
             ({"temp_url_sig": "zz", "temp_url_expires": "2000"}, "GET", PATH, ["key"], 0.0),
             ({"temp_url_sig": sig, "temp_url_expires": "soon"}, "GET", PATH, ["key"], 0.0),
             ({"temp_url_expires": "2000"}, "GET", PATH, ["key"], 0.0)]
    for query, method, path, keys, now in cases:
        with pytest.raises(SwiftError) as info:
            swift_tempurl.check(query, method, path, "o", keys, now)
        assert info.value.status == 401


def test_tempurl_head_rides_on_a_get_signature_and_prefixes_cover_their_objects() -> None:
    sig = swift_tempurl.sign("key", "GET", 2000, PATH)
    swift_tempurl.check({"temp_url_sig": sig, "temp_url_expires": "2000"}, "HEAD", PATH, "o",
                        ["key"], 0.0)
    sig = swift_tempurl.sign("key", "GET", 2000, "prefix:/v1/AUTH_alice/c/di")
    query = {"temp_url_sig": sig, "temp_url_expires": "2000", "temp_url_prefix": "di"}
    swift_tempurl.check(query, "GET", "/swift/v1/AUTH_alice/c/dir/x", "dir/x", ["key"], 0.0)
    with pytest.raises(SwiftError):
        swift_tempurl.check(query, "GET", "/swift/v1/AUTH_alice/c/other", "other", ["key"], 0)


def test_tempurl_expiry_in_iso8601_and_download_names() -> None:
    assert swift_tempurl.parse_expires("1970-01-01T00:16:40Z") == 1000
    assert swift_tempurl.disposition({}, "a/b.txt") == 'attachment; filename="b.txt"'
    assert swift_tempurl.disposition({"inline": ""}, "a/b.txt") == "inline"
    assert swift_tempurl.disposition({"filename": 'x"y'}, "o") == 'attachment; filename="x\\"y"'


# --- listings -------------------------------------------------------------------------------

ENTRY = {"etag": "abc", "size": 3, "ctype": "text/plain", "mtime": 1.5}


def test_listing_formats() -> None:
    rows = [swift_listing.object_row("a b", ENTRY), {"subdir": "d/"}]
    plain, ctype = swift_listing.render("plain", "container", "c", rows)
    assert plain == b"a b\nd/\n" and ctype.startswith("text/plain")
    js, ctype = swift_listing.render("json", "container", "c", rows)
    assert json.loads(js) == [{"name": "a b", "hash": "abc", "bytes": 3,
                               "content_type": "text/plain",
                               "last_modified": "1970-01-01T00:00:01.500000"},
                              {"subdir": "d/"}]
    xml, ctype = swift_listing.render("xml", "container", "c&<", rows)
    root = ET.fromstring(xml)
    assert root.tag == "container" and root.get("name") == "c&<"
    assert root.find("object/name").text == "a b"  # type: ignore[union-attr]
    assert root.find("subdir").get("name") == "d/"  # type: ignore[union-attr]
    acct, _ = swift_listing.render("xml", "account", "AUTH_a",
                                   [swift_listing.container_row("c", 1, 3, 0.0)])
    assert ET.fromstring(acct).find("container/count").text == "1"  # type: ignore[union-attr]
    # Swift's clients read every field of an XML account listing
    assert ET.fromstring(acct).find("container/storage_policy").text == "default"  # type: ignore[union-attr]


def test_format_from_query_or_accept() -> None:
    choose = swift_listing.choose_format
    assert choose({"format": "json"}, "application/xml") == "json"
    assert choose({}, "application/json") == "json"
    assert choose({}, "text/xml") == "xml"
    assert choose({}, "application/json;q=0.5, application/xml;q=0.9") == "xml"
    assert choose({}, "") == "plain"
    with pytest.raises(SwiftError):
        choose({"format": "yaml"}, "")


def test_selection_markers_delimiter_reverse_and_limit() -> None:
    names = ["a", "b/1", "b/2", "c", "d"]

    def pick(**q: str) -> list[tuple[str, bool]]:
        return swift_listing.select(names, swift_listing.params(q, 10000))

    assert pick() == [(n, False) for n in names]
    assert pick(delimiter="/") == [("a", False), ("b/", True), ("c", False), ("d", False)]
    assert pick(marker="b/1", end_marker="d") == [("b/2", False), ("c", False)]
    assert pick(reverse="true", limit="2") == [("d", False), ("c", False)]
    assert pick(reverse="on", marker="c", end_marker="a") == [("b/2", False), ("b/1", False)]
    assert pick(prefix="b/") == [("b/1", False), ("b/2", False)]
    # as Swift: several characters may delimit; a limit that is no whole number is none
    names[1:3] = ["b-&1", "b-&2"]
    assert pick(delimiter="-&") == [("a", False), ("b-&", True), ("c", False), ("d", False)]
    assert len(pick(limit="5000.0")) == len(names)
    with pytest.raises(SwiftError) as info:
        swift_listing.params({"limit": "10001"}, 10000)
    assert info.value.status == 412


# --- ACLs, metadata, expiry ------------------------------------------------------------------

def test_acl_grants() -> None:
    acl = swift_acl.clean(" .r:* , .rlistings,team:bob ,ops:*")
    assert acl == ".r:*,.rlistings,team:bob,ops:*"
    assert swift_acl.anyone_reads(acl) and swift_acl.anyone_lists(acl)
    assert swift_acl.grants(acl, "team:bob") and swift_acl.grants(acl, "ops:eve")
    assert not swift_acl.grants(acl, "team:eve") and not swift_acl.grants(acl, "")
    assert swift_acl.grants("*:bob", "x:bob") and swift_acl.grants("team", "team:z")
    assert not swift_acl.anyone_lists(".rlistings")
    assert swift_acl.clean(".referrer:*") == ".r:*"
    for bad in (".x:y", ".r:", "a b"):
        with pytest.raises(SwiftError):
            swift_acl.clean(bad)


def test_metadata_updates_and_limits() -> None:
    meta = swift_meta.updated({"a": "1", "b": "2"}, {"x-container-meta-c": "3",
                                                    "x-container-meta-a": "",
                                                    "x-remove-container-meta-b": "x"},
                              "container")
    assert meta == {"c": "3"}
    assert swift_meta.to_headers({"temp-url-key": "k"}, "account") == {
        "X-Account-Meta-Temp-Url-Key": "k"}
    for headers in ({"x-object-meta-" + "n" * 129: "v"}, {"x-object-meta-n": "v" * 257},
                    {f"x-object-meta-{i}": "v" for i in range(91)}):
        with pytest.raises(SwiftError):
            swift_meta.from_headers(headers, "object")


def test_delete_at_and_after() -> None:
    assert delete_at({}, 100.0) is None
    assert delete_at({"x-delete-after": "5"}, 100.0) == 105
    assert delete_at({"x-delete-at": "200"}, 100.0) == 200
    for headers in ({"x-delete-at": "50"}, {"x-delete-at": "x"}, {"x-delete-after": "-1"}):
        with pytest.raises(SwiftError) as info:
            delete_at(headers, 100.0)
        assert info.value.status == 400


# --- large objects, routing -----------------------------------------------------------------

def test_slices_of_stitched_segments() -> None:
    a, b = {"n": "a"}, {"n": "b"}
    pieces = [(a, 0, 9), (b, 5, 9)]  # 10 bytes of a, then bytes 5..9 of b
    assert slice_pieces(pieces, 0, 14) == pieces
    assert slice_pieces(pieces, 8, 11) == [(a, 8, 9), (b, 5, 6)]
    assert slice_pieces(pieces, 12, 14) == [(b, 7, 9)]
    assert parse_range("2-", 10) == (2, 9) and parse_range("-3", 10) == (7, 9)
    with pytest.raises(SwiftError):
        parse_range("20-30", 10)
    rows = [{"hash": "aa"}, {"hash": "bb", "range": "0-1"}]
    assert manifest_etag(rows) == hashlib.md5(b"aabb:0-1;").hexdigest()


def test_s3_signed_requests_stay_s3s() -> None:
    assert classify("GET", "/auth/v1.0", [], {}) == "auth"
    assert classify("GET", "/swift/info", [], {}) == "info"
    assert classify("PUT", "/swift/v1/AUTH_a/c/o", [], {}) == "api"
    assert classify("GET", "/v1/AUTH_a", [], {}) == "api"
    assert classify("GET", "/swift/v1/x", [], {"authorization": "AWS4-HMAC-SHA256 ..."}) is None
    assert classify("GET", "/info", [("X-Amz-Algorithm", "x")], {}) is None
    assert classify("GET", "/swiftbucket/key", [], {}) is None
    assert classify("PUT", "/info", [], {}) is None
