"""Bucket policies, ACLs, the public access block and object ownership, decided in one place,
checked with boto3, presigned URLs, browser POST forms and raw requests: a policy that denies
denies on every path (the owner's too), one that allows lets exactly its principals in, and
conditions see the request (IP address, transport, prefix).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.integration.breadth_fixture import Breadth, error_of, new_name

pytestmark = pytest.mark.slow


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def statement(effect: str, actions: Any, resources: Any, principal: Any = "*",
              **extra: Any) -> dict[str, Any]:
    return {"Effect": effect, "Principal": principal, "Action": actions,
            "Resource": resources, **extra}


def denied(call: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(ClientError) as err:
        call(*args, **kwargs)
    assert error_of(err.value)[0] == 403, err.value


def test_a_deny_denies_on_every_path(breadth: Breadth) -> None:
    """Deny s3:GetObject and s3:PutObject under secret/ for everyone: the owner's GET, a
    presigned URL, a copy with it as source, a browser POST, a multipart upload, a copy into
    it - all refused, while the rest of the bucket works."""
    s3 = breadth.client()
    bucket = new_name()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="secret/a", Body=b"classified")
    s3.put_object(Bucket=bucket, Key="open/a", Body=b"public")
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(statement(
        "Deny", ["s3:GetObject", "s3:PutObject"], f"arn:aws:s3:::{bucket}/secret/*")))
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"][0][
        "Effect"] == "Deny"
    denied(s3.get_object, Bucket=bucket, Key="secret/a")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "secret/a"})
    assert requests.get(url, timeout=30).status_code == 403
    denied(s3.copy_object, Bucket=bucket, Key="open/copy",
           CopySource={"Bucket": bucket, "Key": "secret/a"})
    denied(s3.put_object, Bucket=bucket, Key="secret/b", Body=b"x")
    denied(s3.copy_object, Bucket=bucket, Key="secret/c",
           CopySource={"Bucket": bucket, "Key": "open/a"})
    denied(s3.create_multipart_upload, Bucket=bucket, Key="secret/mp")
    post = s3.generate_presigned_post(bucket, "secret/form")
    form = requests.post(post["url"], data=post["fields"], files={"file": b"x"}, timeout=30)
    assert form.status_code == 403
    up = s3.create_multipart_upload(Bucket=bucket, Key="open/mp")["UploadId"]
    denied(s3.upload_part_copy, Bucket=bucket, Key="open/mp", UploadId=up, PartNumber=1,
           CopySource={"Bucket": bucket, "Key": "secret/a"})
    assert s3.get_object(Bucket=bucket, Key="open/a")["Body"].read() == b"public"
    post_ok = s3.generate_presigned_post(bucket, "open/form")
    assert requests.post(post_ok["url"], data=post_ok["fields"], files={"file": b"f"},
                         timeout=30).status_code == 204
    s3.delete_bucket_policy(Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="secret/a")["Body"].read() == b"classified"


def test_explicit_deny_beats_acls_and_allows(breadth: Breadth) -> None:
    s3, alt = breadth.client(), breadth.client("alt")
    bucket = new_name()
    s3.create_bucket(Bucket=bucket, ACL="public-read")
    s3.put_object(Bucket=bucket, Key="k", Body=b"v", ACL="public-read")
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        statement("Allow", "s3:*", [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                  {"AWS": breadth.uids["alt"]}),
        statement("Deny", "s3:GetObject", f"arn:aws:s3:::{bucket}/*",
                  {"AWS": f"arn:aws:iam:::user/{breadth.uids['alt']}"})))
    denied(alt.get_object, Bucket=bucket, Key="k")
    assert alt.list_objects(Bucket=bucket)["Contents"][0]["Key"] == "k"
    alt.put_object(Bucket=bucket, Key="from-alt", Body=b"w")  # the policy allows it
    anonymous = requests.get(f"{breadth.url}/{bucket}/k", timeout=30)
    assert anonymous.status_code == 200 and anonymous.content == b"v"  # public-read ACL


def test_conditions_on_ip_transport_and_prefix(breadth: Breadth) -> None:
    s3, alt = breadth.client(), breadth.client("alt")
    bucket = new_name()
    s3.create_bucket(Bucket=bucket)
    for key in ("public/a", "private/b"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        statement("Allow", "s3:ListBucket", f"arn:aws:s3:::{bucket}",
                  Condition={"StringLike": {"s3:prefix": "public/*"}}),
        statement("Allow", "s3:GetObject", f"arn:aws:s3:::{bucket}/public/*",
                  Condition={"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}),
        statement("Allow", "s3:GetObject", f"arn:aws:s3:::{bucket}/private/*",
                  Condition={"Bool": {"aws:SecureTransport": "true"}})))
    assert [o["Key"] for o in alt.list_objects(Bucket=bucket, Prefix="public/")[
        "Contents"]] == ["public/a"]
    denied(alt.list_objects, Bucket=bucket, Prefix="private/")
    denied(alt.list_objects, Bucket=bucket)
    assert alt.get_object(Bucket=bucket, Key="public/a")["Body"].read() == b"x"
    denied(alt.get_object, Bucket=bucket, Key="private/b")  # plain HTTP
    # a missing key is NoSuchKey only where the requester may list
    with pytest.raises(ClientError) as err:
        alt.head_object(Bucket=bucket, Key="public/none")
    assert error_of(err.value)[0] == 404
    denied(alt.head_object, Bucket=bucket, Key="private/none")
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(statement(
        "Deny", "s3:*", [f"arn:aws:s3:::{bucket}/*"],
        Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}})))
    denied(s3.get_object, Bucket=bucket, Key="public/a")  # the owner comes from 127.0.0.1


def test_malformed_and_public_policies(breadth: Breadth) -> None:
    s3 = breadth.client()
    bucket = new_name()
    s3.create_bucket(Bucket=bucket)
    for bad in ("{not json", policy({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}),
                policy(statement("Allow", "s3:GetObject", "arn:aws:s3:::x/*",
                                 Condition={"NoSuchOperator": {"a": "b"}}))):
        with pytest.raises(ClientError) as err:
            s3.put_bucket_policy(Bucket=bucket, Policy=bad)
        assert error_of(err.value) == (400, "MalformedPolicy")
    assert not s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"]
    public = policy(statement("Allow", "s3:GetObject", f"arn:aws:s3:::{bucket}/*"))
    s3.put_bucket_policy(Bucket=bucket, Policy=public)
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert requests.get(f"{breadth.url}/{bucket}/k", timeout=30).status_code == 200
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True})
    assert requests.get(f"{breadth.url}/{bucket}/k", timeout=30).status_code == 403
    denied(s3.put_bucket_policy, Bucket=bucket, Policy=public)
    denied(s3.put_bucket_acl, Bucket=bucket, ACL="public-read")
    denied(s3.put_object, Bucket=bucket, Key="p", Body=b"", ACL="public-read")
    s3.delete_public_access_block(Bucket=bucket)
    with pytest.raises(ClientError) as err:
        s3.get_public_access_block(Bucket=bucket)
    assert error_of(err.value) == (404, "NoSuchPublicAccessBlockConfiguration")


def test_object_ownership(breadth: Breadth) -> None:
    s3, alt = breadth.client(), breadth.client("alt")
    bucket = new_name()
    s3.create_bucket(Bucket=bucket, ACL="public-read-write")
    alt.put_object(Bucket=bucket, Key="by-alt", Body=b"a")
    # ObjectWriter: the writer owns it; the bucket's owner may delete, not read it
    assert alt.get_object_acl(Bucket=bucket, Key="by-alt")["Owner"]["ID"] == breadth.uids[
        "alt"]
    denied(s3.get_object, Bucket=bucket, Key="by-alt")
    denied(s3.get_object_acl, Bucket=bucket, Key="by-alt")
    alt.put_object(Bucket=bucket, Key="granted", Body=b"g", ACL="bucket-owner-full-control")
    assert s3.get_object(Bucket=bucket, Key="granted")["Body"].read() == b"g"
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(statement(
        "Allow", "s3:PutObject", f"arn:aws:s3:::{bucket}/*", {"AWS": breadth.uids["alt"]})))
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    alt.put_object(Bucket=bucket, Key="enforced", Body=b"e")
    assert s3.get_object_acl(Bucket=bucket, Key="enforced")["Owner"]["ID"] == breadth.uids[
        "main"]
    assert s3.get_object(Bucket=bucket, Key="by-alt")["Body"].read() == b"a"
    with pytest.raises(ClientError) as err:
        alt.put_object(Bucket=bucket, Key="acl", Body=b"", ACL="public-read")
    assert error_of(err.value) == (400, "AccessControlListNotSupported")
    with pytest.raises(ClientError) as err:
        s3.put_bucket_acl(Bucket=bucket, ACL="private")
    assert error_of(err.value) == (400, "AccessControlListNotSupported")
