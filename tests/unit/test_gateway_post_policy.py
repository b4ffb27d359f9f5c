"""POST Object policies: conditions, case rules, expiry and malformed documents."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway import errors
from gateway.s3_post import InvalidPolicyDocument, check_policy

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def b64(policy: Any) -> str:
    return base64.b64encode(json.dumps(policy).encode()).decode()


def policy(*conditions: Any, expiration: str = "2030-01-01T00:00:00Z") -> str:
    return b64({"expiration": expiration, "conditions": list(conditions)})


FIELDS = {"key": "foo/bar.txt", "acl": "private", "content-type": "text/plain",
          "policy": "...", "awsaccesskeyid": "AK", "signature": "s", "x-ignore-me": "1"}


def test_conditions_hold_and_names_are_case_insensitive() -> None:
    size = check_policy(policy({"bUcKeT": "bkt"}, ["StArTs-WiTh", "$KeY", "foo/"],
                               {"AcL": "private"}, ["starts-with", "$Content-Type", "text/"],
                               ["content-length-range", 0, 1024]), FIELDS, "bkt", NOW)
    assert size == (0, 1024)


@pytest.mark.parametrize("conditions,why", [
    (({"bucket": "other"}, ["starts-with", "$key", ""], {"acl": "private"},
      ["starts-with", "$content-type", ""]), "Condition failed"),
    (({"bucket": "bkt"}, ["starts-with", "$key", "bar/"], {"acl": "private"},
      ["starts-with", "$content-type", ""]), "Condition failed"),
    (({"bucket": "bkt"}, ["starts-with", "$key", ""], ["starts-with", "$content-type", ""]),
     "Extra input fields: acl"),
    (({"bucket": "bkt"}, ["starts-with", "$key", ""], {"acl": "private"},
      ["starts-with", "$content-type", ""], {"x-amz-meta-foo": "x"}), "Condition failed"),
])
def test_failed_conditions_are_access_denied(conditions: tuple[Any, ...], why: str) -> None:
    with pytest.raises(errors.AccessDenied, match=why):
        check_policy(policy(*conditions), FIELDS, "bkt", NOW)


def test_an_expired_policy_is_access_denied() -> None:
    with pytest.raises(errors.AccessDenied, match="expired"):
        check_policy(policy({"bucket": "bkt"}, expiration="2025-01-01T00:00:00Z"),
                     {"key": "k"}, "bkt", NOW)


@pytest.mark.parametrize("doc", [
    "not base64!", base64.b64encode(b"{not json").decode(),
    b64({"conditions": []}),  # no expiration
    b64({"EXPIRATION": "2030-01-01T00:00:00Z", "conditions": []}),
    b64({"expiration": "2030-01-01T00:00:00Z"}),  # no conditions
    b64({"expiration": "2030-01-01T00:00:00Z", "CONDITIONS": []}),
    b64({"expiration": "tomorrow", "conditions": []}),
    policy({}), policy({"a": "1", "b": "2"}), policy(["content-length-range", 0]),
    policy(["content-length-range", -1, 0]), policy(["content-length-range", "x", 9]),
    policy(["between", "$key", "a"]),
])
def test_malformed_policies_are_invalid_policy_documents(doc: str) -> None:
    with pytest.raises(InvalidPolicyDocument):
        check_policy(doc, {"key": "k"}, "bkt", NOW)
