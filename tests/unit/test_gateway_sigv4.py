"""SigV4 and SigV2 against AWS's published examples (S3 API reference, "Examples: Signature
Calculations"), and the refusals: wrong key, tampered request, expired presigned URL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway import errors, sigv2, sigv4

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ACCESS = "AKIAIOSFODNN7EXAMPLE"
WHEN = datetime(2013, 5, 24, tzinfo=UTC)
EMPTY = sigv4.EMPTY_SHA256


def header_auth(signed: str, signature: str) -> str:
    return (f"AWS4-HMAC-SHA256 Credential={ACCESS}/20130524/us-east-1/s3/aws4_request,"
            f"SignedHeaders={signed},Signature={signature}")


def check(method: str, path: str, query: str, headers: dict[str, str], signature: str,
          signed: str) -> None:
    creds = sigv4.from_header(header_auth(signed, signature), headers["x-amz-date"])
    canonical = sigv4.canonical_request(method, path, sigv4.split_query(query), headers,
                                        creds.signed_headers, headers["x-amz-content-sha256"],
                                        False)
    sigv4.verify(creds, SECRET, canonical)
    sigv4.check_time(creds, WHEN, 900)


def test_get_object_with_range() -> None:
    check("GET", "/test.txt", "", {"host": "examplebucket.s3.amazonaws.com",
                                   "range": "bytes=0-9", "x-amz-content-sha256": EMPTY,
                                   "x-amz-date": "20130524T000000Z"},
          "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
          "host;range;x-amz-content-sha256;x-amz-date")


def test_put_object_with_an_escaped_path() -> None:
    check("PUT", "/test%24file.text", "", {
        "host": "examplebucket.s3.amazonaws.com", "date": "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256":
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"},
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class")


def test_the_same_path_escaped_differently_still_matches() -> None:
    """A client that leaves '$' unescaped signs the same canonical path."""
    check("PUT", "/test$file.text", "", {
        "host": "examplebucket.s3.amazonaws.com", "date": "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-content-sha256":
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"},
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class")


def test_sub_resource_and_sorted_query() -> None:
    headers = {"host": "examplebucket.s3.amazonaws.com", "x-amz-content-sha256": EMPTY,
               "x-amz-date": "20130524T000000Z"}
    check("GET", "/", "lifecycle", headers,
          "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
          "host;x-amz-content-sha256;x-amz-date")
    check("GET", "/", "prefix=J&max-keys=2", headers,
          "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
          "host;x-amz-content-sha256;x-amz-date")


def test_a_tampered_request_or_wrong_secret_is_refused() -> None:
    headers = {"host": "examplebucket.s3.amazonaws.com", "range": "bytes=0-10",
               "x-amz-content-sha256": EMPTY, "x-amz-date": "20130524T000000Z"}
    with pytest.raises(errors.SignatureDoesNotMatch):
        check("GET", "/test.txt", "", headers,
              "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
              "host;range;x-amz-content-sha256;x-amz-date")


def test_a_signed_header_missing_from_the_request_is_refused() -> None:
    with pytest.raises(errors.SignatureDoesNotMatch):
        check("GET", "/test.txt", "", {"host": "h", "x-amz-content-sha256": EMPTY,
                                       "x-amz-date": "20130524T000000Z"}, "0" * 64,
              "host;range;x-amz-content-sha256;x-amz-date")


def test_clock_skew_is_refused() -> None:
    creds = sigv4.from_header(header_auth("host", "0" * 64), "20130524T000000Z")
    with pytest.raises(errors.RequestTimeTooSkewed):
        sigv4.check_time(creds, datetime(2013, 5, 24, 1, tzinfo=UTC), 900)


def presigned_query(expires: str = "86400") -> list[tuple[str, str]]:
    return [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", f"{ACCESS}/20130524/us-east-1/s3/aws4_request"),
            ("X-Amz-Date", "20130524T000000Z"), ("X-Amz-Expires", expires),
            ("X-Amz-SignedHeaders", "host"),
            ("X-Amz-Signature",
             "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")]


def test_presigned_url_and_its_expiry() -> None:
    query = presigned_query()
    creds = sigv4.from_query(dict(query))
    canonical = sigv4.canonical_request("GET", "/test.txt", query,
                                        {"host": "examplebucket.s3.amazonaws.com"},
                                        creds.signed_headers, sigv4.UNSIGNED, True)
    sigv4.verify(creds, SECRET, canonical)
    sigv4.check_time(creds, datetime(2013, 5, 24, 23, tzinfo=UTC), 900)
    with pytest.raises(errors.AccessDenied, match="expired"):
        sigv4.check_time(creds, datetime(2013, 5, 25, 0, 0, 1, tzinfo=UTC), 900)


@pytest.mark.parametrize(("expires", "error"), [
    ("-1", errors.AccessDenied), ("604801", errors.AccessDenied),
    ("soon", errors.AuthorizationQueryParametersError)])
def test_presigned_expiry_out_of_bounds(expires: str, error: type[Exception]) -> None:
    """Out of range answers 403 (as S3 does), not a number 400."""
    with pytest.raises(error):
        sigv4.from_query(dict(presigned_query(expires)))


@pytest.mark.parametrize("header", [
    "AWS4-HMAC-SHA256 Credential=AKIA/20130524/us-east-1/s3/aws4_request",  # no signature
    "AWS4-HMAC-SHA256 Credential=AKIA/2013/us-east-1/s3/aws4_request,SignedHeaders=host,"
    "Signature=00",  # bad date in the scope
    "AWS4-HMAC-SHA512 Credential=x"])
def test_malformed_authorization_headers(header: str) -> None:
    with pytest.raises((errors.AuthorizationHeaderMalformed,)):
        sigv4.from_header(header, "20130524T000000Z")


def test_sigv2_header_example() -> None:
    """AWS's SigV2 GET example (RESTAuthentication: "Object GET")."""
    headers = {"host": "awsexamplebucket1.s3.us-west-1.amazonaws.com",
               "date": "Tue, 27 Mar 2007 19:36:42 +0000"}
    [resource] = sigv2.canonical_resources("awsexamplebucket1", "/photos/puppy.jpg", [], True)
    text = sigv2.string_to_sign("GET", headers, headers["date"], resource)
    assert text == "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg"
    sigv2.verify(SECRET, [text], "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=")
    with pytest.raises(errors.SignatureDoesNotMatch):
        sigv2.verify(SECRET, [text + "x"], "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=")


def test_sigv2_bucket_resource_with_and_without_slash() -> None:
    """A request to the bucket itself is signed as /bucket/ by botocore, /bucket by others."""
    assert sigv2.canonical_resources("b1", "/b1", [("acl", "")], False) == ["/b1/?acl", "/b1?acl"]
    assert sigv2.canonical_resources("b1", "/", [], True) == ["/b1/", "/b1"]
    assert sigv2.canonical_resources("b1", "/b1/k", [], False) == ["/b1/k"]
