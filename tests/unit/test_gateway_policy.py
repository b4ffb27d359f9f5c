"""Bucket policies and ACL grants as the gateway decides with them (policy.py, acl.py,
access.py): pure logic, no cluster."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway import access, acl, policy
from gateway.policy import Context, MalformedPolicy, Principal


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: Any, resource: Any, principal: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": principal, "Action": action,
            "Resource": resource, **extra}


ALICE = Principal("alice")
BOB = Principal("bob")
ANON = Principal(None)
OBJ = "arn:aws:s3:::b1/dir/k"


def ctx(who: Principal = ALICE, action: str = "s3:GetObject", resource: str = OBJ,
        **keys: str) -> Context:
    """keys: condition keys with ":" and "-" written "__" and "_" (s3__max_keys)."""
    return Context(who, action, resource, {
        k.replace("__", ":").replace("_", "-").lower(): [v] for k, v in keys.items()})


@pytest.mark.parametrize("text", [
    "not json", "[]", json.dumps({"Statement": []}),
    doc({"Effect": "Maybe", "Principal": "*", "Action": "s3:*", "Resource": "*"}),
    doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}),  # no principal
    doc({"Effect": "Allow", "NotPrincipal": {"AWS": "x"}, "Action": "s3:*",
         "Resource": "*"}),  # NotPrincipal only with Deny
    doc(allow("s3:GetObject", "arn:aws:ec2:::x")),
    doc(allow("s3:GetObject", OBJ, Condition={"StringFoo": {"a": "b"}})),
    doc(allow("s3:GetObject", OBJ, Bogus=1)),
    json.dumps({"Version": "2000-01-01", "Statement": [allow("s3:*", "*")]}),
])
def test_malformed_policies_are_refused(text: str) -> None:
    with pytest.raises(MalformedPolicy):
        policy.parse(text)


def test_explicit_deny_wins_over_allow() -> None:
    text = doc(allow("s3:*", "arn:aws:s3:::b1/*"),
               {"Effect": "Deny", "Principal": {"AWS": ["bob"]}, "Action": "s3:Get*",
                "Resource": "arn:aws:s3:::b1/dir/*"})
    assert policy.evaluate(text, ctx(ALICE)) == "Allow"
    assert policy.evaluate(text, ctx(BOB)) == "Deny"
    assert policy.evaluate(text, ctx(BOB, "s3:PutObject")) == "Allow"
    assert policy.evaluate(text, ctx(BOB, resource="arn:aws:s3:::b2/k")) is None


def test_principal_forms() -> None:
    tenant_user = Principal("t1$carol", "t1")
    for who, ok in [("alice", ALICE), ("arn:aws:iam:::user/alice", ALICE),
                    ("arn:aws:iam::alice:root", ALICE), ("arn:aws:iam::t1:user/carol",
                                                         tenant_user),
                    ("arn:aws:iam::t1:root", tenant_user)]:
        text = doc(allow("s3:GetObject", OBJ, {"AWS": who}))
        assert policy.evaluate(text, ctx(ok)) == "Allow", who
        assert policy.evaluate(text, ctx(BOB)) is None, who
    star = doc(allow("s3:GetObject", OBJ, {"AWS": "*"}))
    assert policy.evaluate(star, ctx(ANON)) == "Allow"
    named = doc(allow("s3:GetObject", OBJ, {"AWS": "alice"}))
    assert policy.evaluate(named, ctx(ANON)) is None


def test_not_principal_not_action_not_resource() -> None:
    text = doc({"Effect": "Deny", "NotPrincipal": {"AWS": "alice"}, "NotAction": "s3:List*",
                "NotResource": "arn:aws:s3:::b1/public/*"})
    assert policy.evaluate(text, ctx(BOB)) == "Deny"
    assert policy.evaluate(text, ctx(ALICE)) is None
    assert policy.evaluate(text, ctx(BOB, "s3:ListBucket")) is None
    assert policy.evaluate(text, ctx(BOB, resource="arn:aws:s3:::b1/public/x")) is None


def test_conditions() -> None:
    def verdict(cond: dict[str, Any], **keys: str) -> str | None:
        return policy.evaluate(doc(allow("s3:GetObject", OBJ, Condition=cond)),
                               ctx(**keys))
    assert verdict({"Bool": {"aws:SecureTransport": "true"}},
                   aws__SecureTransport="true") == "Allow"
    assert verdict({"Bool": {"aws:SecureTransport": True}},
                   aws__SecureTransport="false") is None
    assert verdict({"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}},
                   aws__SourceIp="127.0.0.1") == "Allow"
    assert verdict({"NotIpAddress": {"aws:SourceIp": "127.0.0.0/8"}},
                   aws__SourceIp="127.0.0.1") is None
    assert verdict({"StringLike": {"s3:prefix": ["public/*", "shared/*"]}},
                   s3__prefix="shared/x") == "Allow"
    assert verdict({"StringLike": {"s3:prefix": "public/*"}}, s3__prefix="secret/x") is None
    assert verdict({"StringLike": {"s3:prefix": "public/*"}}) is None  # key absent
    assert verdict({"StringLikeIfExists": {"s3:prefix": "public/*"}}) == "Allow"
    assert verdict({"StringNotEquals": {"s3:x-amz-acl": "public-read"}}) == "Allow"
    assert verdict({"NumericLessThanEquals": {"s3:max-keys": "10"}},
                   s3__max_keys="5") == "Allow"
    assert verdict({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}},
                   aws__CurrentTime="2030-01-01T00:00:00Z") == "Allow"
    assert verdict({"Null": {"s3:x-amz-server-side-encryption": "true"}}) == "Allow"
    assert verdict({"Null": {"s3:x-amz-server-side-encryption": "true"}},
                   s3__x_amz_server_side_encryption="AES256") is None


def test_policy_variables_and_wildcards() -> None:
    text = doc(allow("s3:*", "arn:aws:s3:::b1/home/${aws:username}/*"))
    assert policy.evaluate(text, ctx(resource="arn:aws:s3:::b1/home/alice/f",
                                     aws__username="alice")) == "Allow"
    assert policy.evaluate(text, ctx(resource="arn:aws:s3:::b1/home/bob/f",
                                     aws__username="alice")) is None
    literal = doc(allow("s3:GetObject", "arn:aws:s3:::b1/${*}"))
    assert policy.evaluate(literal, ctx(resource="arn:aws:s3:::b1/*")) == "Allow"
    assert policy.evaluate(literal, ctx(resource="arn:aws:s3:::b1/x")) is None


def test_public_policies() -> None:
    assert policy.is_public(doc(allow("s3:GetObject", OBJ)))
    assert not policy.is_public(doc(allow("s3:GetObject", OBJ, {"AWS": "alice"})))
    assert not policy.is_public(doc(allow("s3:GetObject", OBJ, Condition={
        "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})))


def test_canned_acls_and_grants() -> None:
    grants = acl.canned("public-read-write", "alice")
    assert grants[-1] == ("user", "alice", "FULL_CONTROL")
    assert acl.allows(grants, None, "WRITE") and acl.allows(grants, "bob", "READ")
    assert not acl.allows(grants, "bob", "WRITE_ACP")
    assert not acl.allows(grants, None, "READ", ignore_public=True)
    auth = acl.canned("authenticated-read", "alice")
    assert acl.allows(auth, "bob", "READ") and not acl.allows(auth, None, "READ")
    owner_read = acl.canned("bucket-owner-read", "bob", bucket_owner="alice")
    assert acl.allows(owner_read, "alice", "READ")
    assert not acl.allows(owner_read, "alice", "WRITE_ACP")


@dataclass
class FakeBucket:
    owner: str = "alice"
    name: str = "b1"
    acl: Any = "private"
    policy: str = ""
    ownership: str = ""
    public_block: dict[str, bool] = field(default_factory=dict)
    tenant: str = ""
    short_name: str = "b1"


def decide(who: Principal, action: str, bucket: FakeBucket, key: str | None = None,
           entry: dict[str, Any] | None = None) -> bool:
    return access.decide(access.Subject(who), action, bucket, key, entry)


def test_owner_acl_and_policy_decide_in_one_place() -> None:
    b = FakeBucket()
    mine = {"owner": "alice", "acl": "private"}
    theirs = {"owner": "bob", "acl": "private"}
    assert decide(ALICE, "s3:ListBucket", b) and not decide(BOB, "s3:ListBucket", b)
    assert decide(ALICE, "s3:GetObject", b, "k", mine)
    # the bucket owner may delete, not read, what another user owns (ObjectWriter)
    assert not decide(ALICE, "s3:GetObject", b, "k", theirs)
    assert decide(ALICE, "s3:DeleteObject", b, "k", theirs)
    assert decide(BOB, "s3:GetObjectAcl", b, "k", theirs)
    b.ownership = "BucketOwnerEnforced"
    assert decide(ALICE, "s3:GetObject", b, "k", theirs)
    b.ownership = ""
    # a deny in the policy stops the owner too, on every action it names
    b.policy = doc({"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                    "Resource": "arn:aws:s3:::b1/secret/*"})
    assert not decide(ALICE, "s3:GetObject", b, "secret/x", mine)
    assert not decide(ALICE, "s3:PutObject", b, "secret/x")
    assert decide(ALICE, "s3:PutObject", b, "open/x")
    # a policy that allows lets others in; IgnorePublicAcls does not touch it
    b.policy = doc(allow("s3:GetObject", "arn:aws:s3:::b1/*"))
    assert decide(ANON, "s3:GetObject", b, "k", mine)
    b.public_block = {"RestrictPublicBuckets": True}
    assert not decide(ANON, "s3:GetObject", b, "k", mine)
    # public ACLs are ignored under IgnorePublicAcls
    b.policy, b.acl = "", "public-read"
    b.public_block = {}
    assert decide(ANON, "s3:ListBucket", b)
    b.public_block = {"IgnorePublicAcls": True}
    assert not decide(ANON, "s3:ListBucket", b)
