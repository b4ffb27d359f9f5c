"""Server-side encryption with boto3 and swiftclient: SSE-C (the client's key, needed for
every read, never stored), SSE-S3 and SSE-KMS, a bucket's default encryption - and what RADOS
really holds is never the plaintext (read back around the gateway). Ranges, multipart uploads
(ranges across parts) and copies between keys work.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest
import requests
import swiftclient
from botocore.exceptions import ClientError

from tests.integration.breadth_fixture import Breadth, error_of, new_name

pytestmark = pytest.mark.slow


def customer(key: bytes, copy: bool = False) -> dict[str, Any]:
    """SSE-C parameters (boto3 sends the key in base64 with its MD5)."""
    prefix = "CopySourceSSECustomer" if copy else "SSECustomer"
    return {prefix + "Algorithm": "AES256", prefix + "Key": key}


def stored(b: Breadth, bucket: str) -> bytes:
    """Everything RADOS holds of the bucket's data, concatenated."""
    return b"".join(b.rados_objects("data", b.bucket_id(bucket).encode()).values())


def test_sse_c_reads_need_the_key_and_rados_never_sees_the_data(breadth: Breadth) -> None:
    s3 = breadth.client()
    bucket = new_name()
    s3.create_bucket(Bucket=bucket)
    key, other = os.urandom(32), os.urandom(32)
    secret = b"attack at dawn; " * 4096
    put = s3.put_object(Bucket=bucket, Key="k", Body=secret, **customer(key))
    assert put["SSECustomerAlgorithm"] == "AES256"
    got = s3.get_object(Bucket=bucket, Key="k", **customer(key))
    assert got["Body"].read() == secret
    assert got["SSECustomerKeyMD5"] == base64.b64encode(hashlib.md5(key).digest()).decode()
    part = s3.get_object(Bucket=bucket, Key="k", Range="bytes=17-40000", **customer(key))
    assert part["Body"].read() == secret[17:40001]
    for call in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as err:
            call(Bucket=bucket, Key="k")
        assert error_of(err.value)[0] == 400
        with pytest.raises(ClientError) as err:
            call(Bucket=bucket, Key="k", **customer(other))
        assert error_of(err.value)[0] == 400
    with pytest.raises(ClientError) as err:  # not a 256-bit key
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x", **customer(key[:16]))
    assert error_of(err.value) == (400, "InvalidArgument")
    # a copy needs the source's key, and may encrypt with another one
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "k"},
                   **customer(key, copy=True), **customer(other))
    assert s3.get_object(Bucket=bucket, Key="copy", **customer(other))["Body"].read() == secret
    with pytest.raises(ClientError):
        s3.copy_object(Bucket=bucket, Key="copy2", CopySource={"Bucket": bucket, "Key": "k"})
    # nothing of the plaintext, nor the key, reaches RADOS
    raw = stored(breadth, bucket)
    assert len(raw) >= 2 * len(secret)
    assert b"attack at dawn" not in raw and key not in raw
    # Swift cannot read it without the key
    swift = breadth.gw.user["swift_keys"][0]
    conn = swiftclient.Connection(authurl=f"{breadth.url}/auth/v1.0", user=swift["user"],
                                  key=swift["secret_key"], retries=0)
    with pytest.raises(swiftclient.ClientException) as refused:
        conn.get_object(bucket, "k")
    assert refused.value.http_status == 403


def test_multipart_sse_c_ranges_across_parts(breadth: Breadth) -> None:
    s3 = breadth.client()
    bucket = new_name()
    s3.create_bucket(Bucket=bucket)
    key = os.urandom(32)
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", **customer(key))["UploadId"]
    bodies = [os.urandom(5 << 20), os.urandom(5 << 20), os.urandom(12345)]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(
        Bucket=bucket, Key="mp", UploadId=up, PartNumber=n, Body=body,
        **customer(key))["ETag"]} for n, body in zip((1, 3, 4), bodies, strict=True)]
    with pytest.raises(ClientError):  # every part needs the upload's key
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=9, Body=b"x")
    with pytest.raises(ClientError) as err:  # and so does completing it
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up,
                                     MultipartUpload={"Parts": parts})
    assert error_of(err.value)[0] == 400
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up,
                                 MultipartUpload={"Parts": parts}, **customer(key))
    whole = b"".join(bodies)
    assert s3.get_object(Bucket=bucket, Key="mp", **customer(key))["Body"].read() == whole
    edges = ((0, 0), ((5 << 20) - 3, (5 << 20) + 2), ((10 << 20) - 1, len(whole) - 1),
             (100, (10 << 20) + 5))
    for first, last in edges:
        got = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={first}-{last}",
                            **customer(key))["Body"].read()
        assert got == whole[first:last + 1], (first, last)
    assert bodies[2][:64] not in stored(breadth, bucket)


def test_sse_s3_kms_and_bucket_default(breadth: Breadth) -> None:
    s3 = breadth.client()
    bucket = new_name()
    s3.create_bucket(Bucket=bucket, ACL="public-read")
    secret = b"the recipe: " + os.urandom(2000).hex().encode()
    put = s3.put_object(Bucket=bucket, Key="s3", Body=secret, ServerSideEncryption="AES256",
                        ACL="public-read")
    assert put["ServerSideEncryption"] == "AES256"
    s3.put_object(Bucket=bucket, Key="kms", Body=secret, ServerSideEncryption="aws:kms",
                  SSEKMSKeyId="key-1")
    head = s3.head_object(Bucket=bucket, Key="kms")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", "key-1")
    assert s3.get_object(Bucket=bucket, Key="s3", Range="bytes=5-99")["Body"].read() == (
        secret[5:100])
    for wrong in ({"ServerSideEncryption": "aws:kms"},  # KMS needs a key id
                  {"ServerSideEncryption": "AES256", "SSEKMSKeyId": "key-1"}):
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket=bucket, Key="bad", Body=b"x", **wrong)
        assert error_of(err.value) == (400, "InvalidArgument")
    status = requests.get(f"{breadth.url}/{bucket}/s3", timeout=30, headers={
        "x-amz-server-side-encryption": "AES256"}).status_code
    assert status == 400  # encryption headers belong to writes
    assert requests.get(f"{breadth.url}/{bucket}/s3", timeout=30).content == secret
    with pytest.raises(ClientError) as err:
        s3.get_bucket_encryption(Bucket=bucket)
    assert error_of(err.value)[1] == "ServerSideEncryptionConfigurationNotFoundError"
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
        "Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    s3.put_object(Bucket=bucket, Key="default", Body=secret)
    assert s3.head_object(Bucket=bucket, Key="default")["ServerSideEncryption"] == "AES256"
    s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "kms"})
    assert s3.get_object(Bucket=bucket, Key="copied")["Body"].read() == secret
    assert b"the recipe" not in stored(breadth, bucket)
    swift = breadth.gw.user["swift_keys"][0]  # Swift reads SSE-S3/KMS objects too
    conn = swiftclient.Connection(authurl=f"{breadth.url}/auth/v1.0", user=swift["user"],
                                  key=swift["secret_key"], retries=0)
    assert conn.get_object(bucket, "kms")[1] == secret
    s3.delete_bucket_encryption(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="plain", Body=b"the recipe, in the clear")
    assert b"the recipe, in the clear" in stored(breadth, bucket)
