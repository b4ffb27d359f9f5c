"""Tenants (each its own namespace of buckets and Swift containers, as Swift accounts have)
and CORS, with boto3, python-swiftclient and plain HTTP as a browser sends it.
"""

from __future__ import annotations

import pytest
import requests
import swiftclient
from botocore.exceptions import ClientError

from tests.integration.breadth_fixture import Breadth, error_of, new_name

pytestmark = pytest.mark.slow


def swift(b: Breadth, who: str) -> swiftclient.Connection:
    user, key = b.swift_keys[who]
    return swiftclient.Connection(authurl=f"{b.url}/auth/v1.0", user=user, key=key,
                                  retries=0)


def test_two_tenants_each_own_a_bucket_of_the_same_name(breadth: Breadth) -> None:
    carl, dora, main = breadth.client("carl"), breadth.client("dora"), breadth.client()
    name = new_name("photos")
    carl.create_bucket(Bucket=name)
    dora.create_bucket(Bucket=name)  # another tenant: no conflict
    main.create_bucket(Bucket=name)  # the global namespace: no conflict either
    carl.put_object(Bucket=name, Key="k", Body=b"carl's")
    dora.put_object(Bucket=name, Key="k", Body=b"dora's")
    assert carl.get_object(Bucket=name, Key="k")["Body"].read() == b"carl's"
    assert dora.get_object(Bucket=name, Key="k")["Body"].read() == b"dora's"
    assert name in [b["Name"] for b in carl.list_buckets()["Buckets"]]
    with pytest.raises(ClientError):
        main.get_object(Bucket=name, Key="k")  # the global one is empty
    # another tenant's bucket by its qualified name, if its policy lets one in
    carl.put_bucket_policy(Bucket=name, Policy=(
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",'
        f'"Action":"s3:GetObject","Resource":"arn:aws:s3:::{name}/*"}}]}}'))
    got = requests.get(f"{breadth.url}/t1:{name}/k", timeout=30)
    assert got.status_code == 200 and got.content == b"carl's"
    assert requests.get(f"{breadth.url}/t2:{name}/k", timeout=30).status_code == 403


def test_swift_accounts_own_their_containers(breadth: Breadth) -> None:
    carl, dora = swift(breadth, "carl"), swift(breadth, "dora")
    url, _ = carl.get_auth()
    assert url == f"{breadth.url}/v1/AUTH_t1$carl"
    name = new_name("c")
    carl.put_container(name)
    dora.put_container(name)  # 201, not 409: containers belong to their account
    carl.put_object(name, "o", b"from carl")
    dora.put_object(name, "o", b"from dora")
    assert carl.get_object(name, "o")[1] == b"from carl"
    assert dora.get_object(name, "o")[1] == b"from dora"
    assert name in [c["name"] for c in carl.get_account()[1]]
    # the same container seen through S3 by the same user
    s3 = breadth.client("carl")
    assert s3.get_object(Bucket=name, Key="o")["Body"].read() == b"from carl"
    with pytest.raises(swiftclient.ClientException) as err:
        dora.get_object(name, "missing")
    assert err.value.http_status == 404


def test_cors_configuration_preflight_and_answers(breadth: Breadth) -> None:
    s3 = breadth.client()
    bucket = new_name()
    s3.create_bucket(Bucket=bucket, ACL="public-read")
    s3.put_object(Bucket=bucket, Key="k", Body=b"v", ACL="public-read")
    with pytest.raises(ClientError) as err:
        s3.get_bucket_cors(Bucket=bucket)
    assert error_of(err.value) == (404, "NoSuchCORSConfiguration")
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedMethods": ["GET", "HEAD"], "AllowedOrigins": ["https://*.example.com"],
         "AllowedHeaders": ["x-amz-*", "content-type"], "ExposeHeaders": ["ETag"],
         "MaxAgeSeconds": 600},
        {"AllowedMethods": ["PUT"], "AllowedOrigins": ["https://upload.example.org"]}]})
    rules = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert rules[0]["AllowedOrigins"] == ["https://*.example.com"]
    obj = f"{breadth.url}/{bucket}/k"
    pre = requests.options(obj, headers={
        "Origin": "https://www.example.com", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "X-Amz-Date, Content-Type"}, timeout=30)
    assert pre.status_code == 200
    assert pre.headers["Access-Control-Allow-Origin"] == "https://www.example.com"
    assert pre.headers["Access-Control-Max-Age"] == "600"
    assert "x-amz-date" in pre.headers["Access-Control-Allow-Headers"]
    for headers, status in (({"Origin": "https://evil.test",
                              "Access-Control-Request-Method": "GET"}, 403),
                            ({"Origin": "https://www.example.com",
                              "Access-Control-Request-Method": "DELETE"}, 403),
                            ({"Origin": "https://www.example.com",
                              "Access-Control-Request-Method": "GET",
                              "Access-Control-Request-Headers": "authorization"}, 403),
                            ({"Access-Control-Request-Method": "GET"}, 400)):
        got = requests.options(obj, headers=headers, timeout=30)
        assert got.status_code == status, headers
        assert "Access-Control-Allow-Origin" not in got.headers
    actual = requests.get(obj, headers={"Origin": "https://a.example.com"}, timeout=30)
    assert actual.headers["Access-Control-Allow-Origin"] == "https://a.example.com"
    assert actual.headers["Access-Control-Expose-Headers"] == "ETag"
    missing = requests.get(obj + "-none", headers={"Origin": "https://a.example.com"},
                           timeout=30)
    assert missing.status_code in (403, 404)
    assert missing.headers["Access-Control-Allow-Origin"] == "https://a.example.com"
    assert "Access-Control-Allow-Origin" not in requests.get(
        obj, headers={"Origin": "https://evil.test"}, timeout=30).headers
    s3.delete_bucket_cors(Bucket=bucket)
    assert requests.options(obj, headers={"Origin": "https://www.example.com",
                                          "Access-Control-Request-Method": "GET"},
                            timeout=30).status_code == 403
