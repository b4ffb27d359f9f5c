"""What any S3 client runs into, with real clients: emptying a bucket through
ListObjectVersions (aws s3api, boto3), pre-compressed bodies, SigV2 on buckets, metadata in any
charset, conditional deletes, grants that must be kept or refused, and a client hanging up in
the middle of a download.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.integration.breadth_fixture import Breadth, error_of, new_name
from tests.waiting import wait_for

pytestmark = pytest.mark.slow


def aws_cli(b: Breadth, tmp_path: Path, *args: str) -> str:
    access, secret = b.keys["main"]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret,
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    done = subprocess.run([str(Path(sys.executable).with_name("aws")), "--endpoint-url", b.url,
                           *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_never_versioned_bucket_empties_through_list_object_versions(
        breadth: Breadth, tmp_path: Path) -> None:
    s3 = breadth.client()
    bucket = new_name()
    s3.create_bucket(Bucket=bucket)
    keys = ["a", "dir/b", "dir/c", "é/d"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    listed = json.loads(aws_cli(breadth, tmp_path, "s3api", "list-object-versions",
                                "--bucket", bucket))
    assert sorted(v["Key"] for v in listed["Versions"]) == sorted(keys)
    assert {(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]} == {("null", True)}
    page = s3.list_object_versions(Bucket=bucket, MaxKeys=2)
    assert page["IsTruncated"] and [v["Key"] for v in page["Versions"]] == ["a", "dir/b"]
    rest = s3.list_object_versions(Bucket=bucket, KeyMarker=page["NextKeyMarker"],
                                   VersionIdMarker=page["NextVersionIdMarker"])
    assert [v["Key"] for v in rest["Versions"]] == ["dir/c", "é/d"]
    # what backup tools and the suites do to empty a bucket
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": v["Key"], "VersionId": v["VersionId"]} for v in listed["Versions"]]})
    s3.delete_bucket(Bucket=bucket)


def test_precompressed_bodies_are_stored_byte_for_byte(breadth: Breadth, tmp_path: Path
                                                       ) -> None:
    s3 = breadth.client()
    bucket = new_name()
    s3.create_bucket(Bucket=bucket)
    page = gzip.compress(b"<html>" + b"hello " * 5000 + b"</html>")
    s3.put_object(Bucket=bucket, Key="index.html", Body=page, ContentEncoding="gzip",
                  ContentType="text/html")
    got = s3.get_object(Bucket=bucket, Key="index.html")
    assert got["ContentEncoding"] == "gzip" and got["Body"].read() == page
    (tmp_path / "app.js.gz").write_bytes(gzip.compress(b"console.log(1)" * 999))
    aws_cli(breadth, tmp_path, "s3", "cp", str(tmp_path / "app.js.gz"), f"s3://{bucket}/app.js",
            "--content-encoding", "gzip")
    raw = requests.get(s3.generate_presigned_url("get_object", Params={
        "Bucket": bucket, "Key": "app.js"}), headers={"Accept-Encoding": "identity"},
        stream=True, timeout=30)
    assert raw.headers["Content-Encoding"] == "gzip"
    assert raw.raw.read() == (tmp_path / "app.js.gz").read_bytes()  # not decompressed
    s3.put_object(Bucket=bucket, Key="e", Body=b"x", ContentEncoding="deflate, gzip")
    assert s3.head_object(Bucket=bucket, Key="e")["ContentEncoding"] == "deflate, gzip"


def test_sigv2_at_bucket_level(breadth: Breadth) -> None:
    s3 = breadth.client(signature_version="s3")
    bucket = new_name()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]] == ["k"]
    assert s3.get_bucket_acl(Bucket=bucket)["Owner"]["ID"] == breadth.uids["main"]
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)


def _raw(b: Breadth, request: bytes) -> bytes:
    port = int(b.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            piece = s.recv(65536)
            if not piece:
                break
            data += piece
    return data


@pytest.mark.parametrize("value", ["Hello World\xe9".encode("latin-1"),
                                   "héllo wörld ☃".encode()])
def test_metadata_comes_back_byte_for_byte(breadth: Breadth, value: bytes) -> None:
    s3 = breadth.client()
    bucket = new_name()
    s3.create_bucket(Bucket=bucket, ACL="public-read-write")
    put = _raw(breadth, b"PUT /%s/k HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
               b"x-amz-acl: public-read\r\nx-amz-meta-a: %s\r\nConnection: close\r\n\r\n"
               % (bucket.encode(), value))
    assert put.startswith(b"HTTP/1.1 200")
    head = _raw(breadth, b"HEAD /%s/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                % bucket.encode())
    assert b"\r\nx-amz-meta-a: " + value + b"\r\n" in head


def test_conditional_deletes(breadth: Breadth) -> None:
    s3 = breadth.client()
    bucket = new_name()
    s3.create_bucket(Bucket=bucket)
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"12345")["ETag"]
    for bad in ({"IfMatch": '"0000"'}, {"IfMatchSize": 9}):
        with pytest.raises(ClientError) as err:
            s3.delete_object(Bucket=bucket, Key="k", **bad)
        assert error_of(err.value) == (412, "PreconditionFailed")
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k",
                                                                   "ETag": '"0000"'}]})
    assert result["Errors"][0]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"12345"
    s3.delete_object(Bucket=bucket, Key="k", IfMatch=etag, IfMatchSize=5)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")
    s3.delete_object(Bucket=bucket, Key="k", IfMatch=etag)  # nothing there: 204
    # in a versioned bucket: no marker for a conditional delete of nothing
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.delete_object(Bucket=bucket, Key="none", IfMatch="*")
    assert "DeleteMarkers" not in s3.list_object_versions(Bucket=bucket, Prefix="none")


def test_grants_are_kept_or_refused_never_dropped(breadth: Breadth) -> None:
    s3, alt = breadth.client(), breadth.client("alt")
    bucket = new_name()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret")
    with pytest.raises(ClientError):
        alt.get_object(Bucket=bucket, Key="k")
    s3.put_object_acl(Bucket=bucket, Key="k", GrantRead='emailAddress="alt@example.com"')
    assert alt.get_object(Bucket=bucket, Key="k")["Body"].read() == b"secret"
    grants = s3.get_object_acl(Bucket=bucket, Key="k")["Grants"]
    assert {"ID": breadth.uids["alt"], "DisplayName": "Alt", "Type": "CanonicalUser"} in [
        g["Grantee"] for g in grants]
    for bad, code in ((dict(GrantRead='id="nobody-here"'), "InvalidArgument"),
                      (dict(GrantRead='emailAddress="who@nowhere.example"'),
                       "UnresolvableGrantByEmailAddress"),
                      (dict(GrantRead='uri="http://example.com/bogus"'), "InvalidArgument")):
        with pytest.raises(ClientError) as err:
            s3.put_bucket_acl(Bucket=bucket, **bad)
        assert error_of(err.value) == (400, code)
    with pytest.raises(ClientError) as err:  # a canned ACL and grants at once
        s3.put_object(Bucket=bucket, Key="k2", Body=b"", ACL="private",
                      GrantRead=f'id="{breadth.uids["alt"]}"')
    assert error_of(err.value)[0] == 400
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={
        "Owner": {"ID": breadth.uids["main"]},
        "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": breadth.uids["main"]},
                    "Permission": "FULL_CONTROL"},
                   {"Grantee": {"Type": "Group", "URI":
                                "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"},
                    "Permission": "READ"}]})
    assert [o["Key"] for o in alt.list_objects(Bucket=bucket)["Contents"]] == ["k"]
    anonymous = requests.get(f"{breadth.url}/{bucket}", timeout=30)
    assert anonymous.status_code == 403


def test_a_client_leaving_mid_download_is_one_info_line(breadth: Breadth) -> None:
    s3 = breadth.client()
    bucket = new_name()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="big", Body=os.urandom(24 << 20), ACL="public-read")
    port = int(breadth.url.rsplit(":", 1)[1])
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(f"GET /{bucket}/big HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            s.recv(4096)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")  # RST

    def logged() -> Any:
        lines = [line for line in breadth.log().splitlines() if f"/{bucket}/big" in line]
        return len([x for x in lines if "went away" in x]) >= 3 and lines
    lines = wait_for(logged, 30, "three 'went away' lines")
    assert all(" INFO " in line for line in lines if "went away" in line)
    text = breadth.log()
    assert "Traceback" not in text and " ERROR " not in text
    assert s3.head_object(Bucket=bucket, Key="big")["ContentLength"] == 24 << 20


def test_object_attributes(breadth: Breadth) -> None:
    s3 = breadth.client()
    bucket = new_name()
    s3.create_bucket(Bucket=bucket)
    wanted = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"foo", ChecksumAlgorithm="SHA256")
    got = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=wanted)
    assert (got["ETag"], got["ObjectSize"], got["StorageClass"]) == (
        put["ETag"].strip('"'), 3, "STANDARD")
    assert got["Checksum"]["ChecksumSHA256"] == put["ChecksumSHA256"]
    assert "ObjectParts" not in got and "VersionId" not in got
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    sizes = [5 << 20, 5 << 20, 1000]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(
        Bucket=bucket, Key="mp", UploadId=up, PartNumber=n, Body=b"p" * size)["ETag"]}
        for n, size in enumerate(sizes, 1)]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up,
                                 MultipartUpload={"Parts": parts})
    page = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=wanted,
                                    MaxParts=1, PartNumberMarker=1)["ObjectParts"]
    assert (page["TotalPartsCount"], page["IsTruncated"], page["NextPartNumberMarker"]) == (
        3, True, 2)
    assert [(p["PartNumber"], p["Size"]) for p in page["Parts"]] == [(2, 5 << 20)]
    with pytest.raises(ClientError) as err:
        s3.get_object_attributes(Bucket=bucket, Key="none", ObjectAttributes=wanted)
    assert error_of(err.value) == (404, "NoSuchKey")
