"""The S3 gateway against a real cluster (1 monitor, 3 OSDs) with real clients: boto3 with its
default settings (checksums included), over HTTP and over HTTPS (where boto3 sends aws-chunked
bodies with a CRC32 trailer), the aws CLI, curl on presigned URLs, and raw signed requests
for what clients refuse to send (bad XML, odd hosts).

Two gateways run as real processes (`loligo gateway --conf F --id N`) on one cluster: gateway.1
on HTTP, gateway.2 on HTTPS with a self-signed certificate; both serve the same buckets.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import botocore
import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from cluster import launcher
from gateway import chunked, sigv4
from rados_py.rados import Rados
from tests.integration import random_base_port, running_cluster
from tests.integration.gateway_fixture import loligo as loligo_cli
from tests.waiting import wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20
STRIPE = 4 * MiB  # the default gateway_stripe_size


@dataclass
class Gateway:
    cluster: launcher.LocalCluster
    url: str
    tls_url: str
    access: str
    secret: str
    ca: Path  # the HTTPS gateway's self-signed certificate, trusted by the clients

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def client(self, tls: bool = False, **config: Any) -> Any:
        return boto3.client("s3", endpoint_url=self.tls_url if tls else self.url,
                            aws_access_key_id=self.access, aws_secret_access_key=self.secret,
                            region_name="us-east-1", verify=str(self.ca),
                            config=BotoConfig(retries={"max_attempts": 1}, **config))

    def data_objects(self, bucket: str) -> list[bytes]:
        """Names of the RADOS data objects of `bucket` (its stripes)."""
        async def go() -> list[bytes]:
            async with Rados(self.cluster.config) as rados:
                meta = await rados.open_ioctx(".loligo.gw.meta")
                bucket_id = json.loads(await meta.read(f"bucket.{bucket}"))["id"]
                data = await rados.open_ioctx(".loligo.gw.data")
                return sorted([name async for _, name in data.list_objects()
                               if name.startswith(bucket_id.encode() + b".")])
        return asyncio.run(go())


def _self_signed(directory: Path) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(directory / "gw.key"),
                    "-out", str(directory / "gw.crt")], check=True, capture_output=True)


def _all_osds_up(cluster: launcher.LocalCluster, count: int) -> bool:
    async def go() -> bool:
        async with Rados(cluster.config) as rados:
            return sum(o.up for o in rados.osdmap.osds.values()) >= count
    return asyncio.run(go())


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    directory = tmp_path_factory.mktemp("gateway") / "cluster"
    settings = {"gateway_gc_min_wait": 0.5, "gateway_gc_interval": 0.1,
                "gateway_user_cache_ttl": 0.2}
    with running_cluster(directory, mons=1, osds=3, settings=settings) as cluster:
        wait_for(lambda: _all_osds_up(cluster, 3), 60, "3 OSDs up")
        _self_signed(directory)
        ports = launcher.pick_ports(2, random_base_port() + 500)
        with open(cluster.conf, "a") as f:
            f.write(f"\n[gateway.1]\ngateway_port = {ports[0]}\n"
                    f"\n[gateway.2]\ngateway_port = {ports[1]}\n"
                    'gateway_ssl_certificate = "gw.crt"\ngateway_ssl_key = "gw.key"\n')
        cluster.start_gateways(timeout=60)
        user = cluster.gateway_info()["user"]
        key = user["keys"][0]
        yield Gateway(cluster, f"http://127.0.0.1:{ports[0]}",
                      f"https://127.0.0.1:{ports[1]}", key["access_key"], key["secret_key"],
                      directory / "gw.crt")


def _stripes_exist(gw: Gateway, names: list[bytes]) -> bool:
    async def go() -> bool:
        async with Rados(gw.cluster.config) as rados:
            data = await rados.open_ioctx(".loligo.gw.data")
            found = {name async for _, name in data.list_objects()}
        return any(n in found for n in names)
    return asyncio.run(go())


def new_bucket(s3: Any) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def error_of(exc: ClientError) -> tuple[int, str]:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]


def signed(gw: Gateway, method: str, path: str, body: bytes = b"",
           headers: dict[str, str] | None = None, host: str | None = None,
           secret: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """A raw request signed by botocore's SigV4 signer (for what boto3 will not send)."""
    host = host or f"127.0.0.1:{gw.port}"
    request = AWSRequest(method=method, url=f"http://{host}{path}", data=body,
                         headers=dict(headers or {}))
    request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    request.headers["Host"] = host
    S3SigV4Auth(Credentials(gw.access, secret or gw.secret), "s3", "us-east-1").add_auth(request)
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in request.headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# --- the basics ---------------------------------------------------------------------------------

def _peak_rss(gw: Gateway, name: str = "gateway.1") -> int:
    pid = gw.cluster.pid(gw.cluster.daemon(name))
    assert pid is not None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_memory_stays_bounded_whatever_the_object_size(gw: Gateway, tmp_path: Path) -> None:
    """96 MiB PUT and GET through one gateway: its peak memory grows by well under the object
    size, and a second round adds next to nothing (data streams through in stripes; what the
    first round adds is buffers and connections kept for reuse). First test of the module, so
    the peak is not already high from others."""
    s3 = gw.client()
    bucket = new_bucket(s3)
    big = tmp_path / "big.bin"
    chunk = os.urandom(MiB)
    with open(big, "wb") as f:
        for _ in range(96):
            f.write(chunk)

    def round_trip() -> None:
        with open(big, "rb") as f:
            s3.put_object(Bucket=bucket, Key="big", Body=f)
        size, digest = 0, hashlib.md5()
        for piece in s3.get_object(Bucket=bucket, Key="big")["Body"].iter_chunks(MiB):
            size += len(piece)
            digest.update(piece)
        assert size == 96 * MiB and digest.hexdigest() == hashlib.md5(chunk * 96).hexdigest()

    before = _peak_rss(gw)
    round_trip()
    first = _peak_rss(gw)
    round_trip()
    second = _peak_rss(gw)
    assert first - before < 64 * MiB, f"first round: +{(first - before) / MiB:.0f} MiB"
    assert second - first < 24 * MiB, f"second round: +{(second - first) / MiB:.0f} MiB"


def test_buckets_objects_metadata_and_errors(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket=bucket)
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] is None
    put = s3.put_object(Bucket=bucket, Key="hello.txt", Body=b"world",
                        ContentType="text/plain", Metadata={"color": "blue"})
    md5 = hashlib.md5(b"world").hexdigest()
    assert put["ETag"] == f'"{md5}"'
    got = s3.get_object(Bucket=bucket, Key="hello.txt")
    assert got["Body"].read() == b"world"
    assert got["ContentType"] == "text/plain" and got["Metadata"] == {"color": "blue"}
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"].startswith("tx")
    head = s3.head_object(Bucket=bucket, Key="hello.txt")
    assert head["ContentLength"] == 5 and head["ETag"] == f'"{md5}"'
    # us-east-1 lets the owner create its bucket again (nothing changes), unless the request
    # asks for something new
    s3.create_bucket(Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="hello.txt")["Body"].read() == b"world"
    with pytest.raises(ClientError) as err:
        s3.create_bucket(Bucket=bucket, ACL="public-read")
    assert error_of(err.value) == (409, "BucketAlreadyExists")
    with pytest.raises(ClientError) as err:
        s3.delete_bucket(Bucket=bucket)
    assert error_of(err.value) == (409, "BucketNotEmpty")
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="missing")
    assert error_of(err.value) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="no-such-bucket-here", Key="x")
    assert error_of(err.value) == (404, "NoSuchBucket")
    s3.delete_object(Bucket=bucket, Key="hello.txt")
    s3.delete_object(Bucket=bucket, Key="hello.txt")  # deleting a missing key is fine (204)
    s3.delete_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as err:
        s3.head_bucket(Bucket=bucket)
    assert error_of(err.value)[0] == 404
    # the same name again is a new, empty bucket (nothing of the old one shows through)
    s3.put_object(Bucket=(again := new_bucket(s3)), Key="x", Body=b"old")
    assert s3.get_object(Bucket=again, Key="x")["Body"].read() == b"old"
    s3.delete_object(Bucket=again, Key="x")
    s3.delete_bucket(Bucket=again)
    s3.create_bucket(Bucket=again)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=again, Key="x")
    assert error_of(err.value) == (404, "NoSuchKey")
    s3.put_object(Bucket=again, Key="x", Body=b"new")
    assert s3.get_object(Bucket=again, Key="x")["Body"].read() == b"new"


def test_large_object_ranges_conditions_and_checksums(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    data = os.urandom(2 * STRIPE + 12345)
    put = s3.put_object(Bucket=bucket, Key="big", Body=data)  # boto3 adds x-amz-checksum-crc32
    assert "ChecksumCRC32" in put
    got = s3.get_object(Bucket=bucket, Key="big", ChecksumMode="ENABLED")
    assert got["Body"].read() == data  # botocore validates the returned CRC32 on read
    assert got["ChecksumCRC32"] == put["ChecksumCRC32"]
    for first, last in ((0, 0), (STRIPE - 5, STRIPE + 5), (2 * STRIPE, len(data) - 1)):
        part = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={first}-{last}")
        assert part["Body"].read() == data[first:last + 1]
        assert part["ContentRange"] == f"bytes {first}-{last}/{len(data)}"
    tail = s3.get_object(Bucket=bucket, Key="big", Range="bytes=-100")["Body"].read()
    assert tail == data[-100:]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={len(data)}-")
    assert error_of(err.value) == (416, "InvalidRange")
    etag = put["ETag"]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="big", IfNoneMatch=etag)
    assert error_of(err.value)[0] == 304
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="big", IfMatch='"nope"')
    assert error_of(err.value) == (412, "PreconditionFailed")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="big", IfModifiedSince=later)
    assert error_of(err.value)[0] == 304
    over = s3.get_object(Bucket=bucket, Key="big", Range="bytes=0-1",
                         ResponseContentType="image/png", ResponseCacheControl="no-cache")
    assert over["ContentType"] == "image/png" and over["CacheControl"] == "no-cache"
    # a wrong Content-MD5 or checksum is refused and stores nothing
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"abc", ChecksumCRC32="AAAAAA==")
    assert error_of(err.value)[0] == 400
    status, _, body = signed(gw, "PUT", f"/{bucket}/bad", b"abc",
                             {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="})
    assert status == 400 and b"<Code>BadDigest</Code>" in body
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="bad")


def test_listing_v1_v2_prefixes_paging_and_url_encoding(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    keys = sorted([f"photos/2024/{i:02d}.jpg" for i in range(12)]
                  + [f"docs/{n}" for n in ("a", "b", "ü ber", "x+y")] + ["top", "zz/z"])
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    v2 = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [c["Key"] for c in v2["Contents"]] == ["top"]
    assert [p["Prefix"] for p in v2["CommonPrefixes"]] == ["docs/", "photos/", "zz/"]
    assert v2["KeyCount"] == 4
    docs = s3.list_objects_v2(Bucket=bucket, Prefix="docs/")
    assert [c["Key"] for c in docs["Contents"]] == ["docs/a", "docs/b", "docs/x+y",
                                                      "docs/ü ber"]
    assert docs["Contents"][0]["Size"] == len("docs/a")
    for listing in (s3.list_objects, s3.list_objects_v2):  # clients decode v1's differently
        assert listing(Bucket=bucket, Prefix="dö\n")["Prefix"] == "dö\n"
    for version in ("list_objects", "list_objects_v2"):
        pages = s3.get_paginator(version).paginate(Bucket=bucket,
                                                   PaginationConfig={"PageSize": 5})
        listed = [c["Key"] for page in pages for c in page.get("Contents", [])]
        assert listed == keys, version
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="photos/2024/10.jpg")
    assert [c["Key"] for c in after["Contents"]] == ["photos/2024/11.jpg", "top", "zz/z"]
    v1 = s3.list_objects(Bucket=bucket, Delimiter="/", Prefix="photos/", MaxKeys=1)
    assert v1["IsTruncated"] is False and v1["CommonPrefixes"] == [{"Prefix": "photos/2024/"}]
    v1 = s3.list_objects(Bucket=bucket, Marker="docs/x+y", MaxKeys=2)
    assert [c["Key"] for c in v1["Contents"]] == ["docs/ü ber", "photos/2024/00.jpg"]
    assert v1["IsTruncated"] is True
    status, _, body = signed(gw, "GET", f"/{bucket}?prefix=docs%2F&encoding-type=url")
    assert status == 200 and b"<Key>docs/%C3%BC%20ber</Key>" in body
    assert b"<EncodingType>url</EncodingType>" in body
    with pytest.raises(ClientError) as err:
        s3.list_objects_v2(Bucket=bucket, MaxKeys=-1)
    assert error_of(err.value)[0] == 400


def test_odd_keys_are_stored_literally(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    keys = ["a//b", "../../etc/passwd", "./x", "ünïcödé/😀", "with space+plus&amp",
            "trailing/", "k" * 1024, "%2F encoded", "é" * 512]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    for key in keys:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode(), key
    listed = [c["Key"] for c in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(listed, key=lambda k: k.encode()) == sorted(keys, key=lambda k: k.encode())
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert error_of(err.value) == (400, "KeyTooLongError")


def test_auth_failures_and_bad_requests(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    wrong = boto3.client("s3", endpoint_url=gw.url, aws_access_key_id=gw.access,
                         aws_secret_access_key="x" * 40, region_name="us-east-1")
    with pytest.raises(ClientError) as err:
        wrong.list_buckets()
    assert error_of(err.value) == (403, "SignatureDoesNotMatch")
    unknown = boto3.client("s3", endpoint_url=gw.url, aws_access_key_id="NOSUCHKEY0000000",
                           aws_secret_access_key="x" * 40, region_name="us-east-1")
    with pytest.raises(ClientError) as err:
        unknown.list_buckets()
    assert error_of(err.value) == (403, "InvalidAccessKeyId")
    status, _, body = signed(gw, "PUT", "/Bad_Bucket..name")
    assert status == 400 and b"<Code>InvalidBucketName</Code>" in body
    status, _, body = signed(gw, "POST", f"/{bucket}?delete", b"<Delete><Object>")
    assert status == 400 and b"<Code>MalformedXML</Code>" in body
    assert b"<RequestId>tx" in body and f"<Resource>/{bucket}</Resource>".encode() in body
    status, _, body = signed(gw, "PUT", f"/{bucket}", b"<CreateBucketConfiguration>")
    assert status in (400, 409)
    status, _, body = signed(gw, "GET", f"/{bucket}?inventory")
    assert status == 501 and b"<Code>NotImplemented</Code>" in body
    # anonymous requests: private data is refused
    with pytest.raises(urllib.error.HTTPError) as http_err:
        urllib.request.urlopen(f"{gw.url}/{bucket}")
    assert http_err.value.code == 403
    assert b"<Code>AccessDenied</Code>" in http_err.value.read()


def raw_request(gw: Gateway, data: bytes) -> bytes:
    """Send raw bytes as one HTTP request; the status line (or b"" if the server hung up)."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out.split(b"\r\n", 1)[0]


def test_bad_input_never_gets_a_500(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="obj", Body=b"0123456789")
    host = f"Host: 127.0.0.1:{gw.port}\r\n"
    auth = "Authorization: AWS4-HMAC-SHA256 "
    cases = [
        f"GET / HTTP/1.1\r\n{host}{auth}Credential=x\r\n\r\n",
        f"GET / HTTP/1.1\r\n{host}{auth}Credential=a/b/c/d/e, SignedHeaders=host, "
        "Signature=zz\r\nx-amz-date: 20130524T000000Z\r\n\r\n",
        f"GET / HTTP/1.1\r\n{host}{auth}Credential=AKIA/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=00\r\nx-amz-date: yesterday\r\n\r\n",
        f"GET / HTTP/1.1\r\n{host}Authorization: AWS nokey\r\n\r\n",
        f"GET / HTTP/1.1\r\n{host}Authorization: \r\n\r\n",
        f"GET /?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=abc HTTP/1.1\r\n{host}\r\n",
        f"GET /{bucket}/obj?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%ZZ&X-Amz-Date=1"
        f"&X-Amz-Expires=1&X-Amz-SignedHeaders=host&X-Amz-Signature=0 HTTP/1.1\r\n{host}\r\n",
        f"GET /{bucket}/obj?AWSAccessKeyId=x&Expires=never&Signature=%%% HTTP/1.1\r\n{host}\r\n",
        f"GET /{bucket}/%ff%fe HTTP/1.1\r\n{host}\r\n",
        f"GET /{bucket}/obj HTTP/1.1\r\n{host}Range: bytes=9999999999999999999999-\r\n\r\n",
        f"PUT /{bucket}/new HTTP/1.1\r\n{host}Content-Length: -5\r\n\r\n",
        f"PUT /{bucket}/new HTTP/1.1\r\n{host}Content-Length: 10\r\n\r\nshort",
        f"PUT /{bucket}/new HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n"
        "Content-Encoding: aws-chunked\r\nx-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-"
        "TRAILER\r\n\r\n5\r\nzz\r\n\r\n0\r\n\r\n",
        f"BREW /{bucket} HTTP/1.1\r\n{host}\r\n",
        f"GET /{bucket}?max-keys=lots&list-type=2 HTTP/1.1\r\n{host}\r\n",
        f"GET /{bucket} HTTP/1.1\r\n{host}X-Big: {'x' * 40000}\r\n\r\n",
        f"GET /{'b' * 70000} HTTP/1.1\r\n{host}\r\n",
        "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
        "garbage\r\n\r\n",
    ]
    for case in cases:
        status = raw_request(gw, case.encode())
        assert not status.startswith(b"HTTP/1.1 5"), (case[:120], status)
    # signed, so they reach the handlers: bad bodies, parameters and copy sources
    signed_cases = [
        ("POST", f"/{bucket}?delete", b"<Delete></Delete>"),
        ("POST", f"/{bucket}?delete", b"<Delete><Object></Object></Delete>"),
        ("POST", f"/{bucket}/obj?uploadId=nosuch", b"<CompleteMultipartUpload/>"),
        ("POST", f"/{bucket}/obj?uploads", b""),
        ("PUT", f"/{bucket}/obj?partNumber=0&uploadId=x", b"data"),
        ("PUT", f"/{bucket}/obj?partNumber=abc&uploadId=x", b"data"),
        ("GET", f"/{bucket}/obj?uploadId=x&max-parts=-1", b""),
        ("PUT", f"/{bucket}?versioning", b"<VersioningConfiguration><Status>On</Status>"
                                         b"</VersioningConfiguration>"),
        ("PUT", f"/{bucket}?acl", b"<AccessControlPolicy><AccessControlList><Grant>"),
        ("GET", f"/{bucket}?list-type=2&continuation-token=%%%%", b""),
        ("GET", f"/{bucket}?encoding-type=base64", b""),
        ("GET", f"/{bucket}?versions&version-id-marker=x&key-marker=obj", b""),
        ("GET", f"/{bucket}/obj?versionId=", b""),
        ("DELETE", f"/{bucket}/obj?versionId=nosuch", b""),
        ("GET", f"/{bucket}/obj?partNumber=1", b""),
        ("GET", f"/{bucket}/obj?response-content-type=a%0D%0ASet-Cookie:%20x", b""),
        ("DELETE", f"/{bucket}/obj?versionId=a%0D%0Ab", b""),
        ("GET", f"/{bucket}/obj?versionId=%00", b""),
    ]
    for method, path, body in signed_cases:
        status, _, answer = signed(gw, method, path, body)
        assert status < 500 or status == 501, (method, path, status, answer[:300])
    for source in ("", "/", "nobucket", f"{bucket}/missing", f"/{bucket}/obj?versionId=zz",
                   "%ff/x"):
        status, _, answer = signed(gw, "PUT", f"/{bucket}/copy", b"",
                                   {"x-amz-copy-source": source})
        assert 400 <= status < 500, (source, status, answer[:300])
    assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"0123456789"


def test_presigned_urls_with_curl(gw: Gateway, tmp_path: Path) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="doc", Body=b"presigned body")
    v4 = gw.client(signature_version="s3v4")
    for client in (s3, v4):  # boto3's default presigned URLs are SigV2; s3v4 asks for SigV4
        url = client.generate_presigned_url("get_object", Params={"Bucket": bucket,
                                                                  "Key": "doc"}, ExpiresIn=60)
        out = subprocess.run(["curl", "-sS", "-f", url], capture_output=True, check=True)
        assert out.stdout == b"presigned body"
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(100_000))
    url = v4.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up"},
                                    ExpiresIn=60)
    subprocess.run(["curl", "-sS", "-f", "-T", str(src), url], check=True, capture_output=True)
    assert s3.get_object(Bucket=bucket, Key="up")["Body"].read() == src.read_bytes()
    an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with mock.patch("botocore.auth.get_current_datetime", return_value=an_hour_ago):
        expired = v4.generate_presigned_url("get_object", Params={"Bucket": bucket,
                                                                  "Key": "doc"}, ExpiresIn=60)
    out = subprocess.run(["curl", "-sS", "-w", "%{http_code}", expired], capture_output=True)
    assert out.stdout.endswith(b"403") and b"Request has expired" in out.stdout
    tampered = url.replace("Key=", "Key=x").replace(f"/{bucket}/up", f"/{bucket}/up2")
    out = subprocess.run(["curl", "-sS", "-w", "%{http_code}", tampered], capture_output=True)
    assert out.stdout.endswith(b"403")


def post_form(gw: Gateway, path: str, fields: dict[str, str], data: bytes,
              filename: str = "upload.bin") -> tuple[int, dict[str, str], bytes]:
    """A browser-style multipart/form-data POST (the file last, as S3 requires)."""
    boundary = uuid.uuid4().hex
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'
                    f"{v}\r\n".encode() for k, v in fields.items())
    body += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
             f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
             ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_browser_post_uploads_with_presigned_policies(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    for client in (gw.client(signature_version="s3v4"), s3):
        post = client.generate_presigned_post(
            bucket, "uploads/${filename}", ExpiresIn=300,
            Fields={"Content-Type": "text/plain", "x-amz-meta-who": "form"},
            Conditions=[["starts-with", "$key", "uploads/"], {"Content-Type": "text/plain"},
                        {"x-amz-meta-who": "form"}, ["content-length-range", 1, 1000]])
        status, headers, body = post_form(gw, f"/{bucket}", post["fields"], b"from a form",
                                          "note.txt")
        assert status == 204, body
        got = s3.get_object(Bucket=bucket, Key="uploads/note.txt")
        assert got["Body"].read() == b"from a form" and got["ContentType"] == "text/plain"
        assert got["Metadata"] == {"who": "form"} and headers["etag"] == got["ETag"]
        s3.delete_object(Bucket=bucket, Key="uploads/note.txt")
    post = gw.client(signature_version="s3v4").generate_presigned_post(
        bucket, "k", ExpiresIn=300, Fields={"success_action_status": "201"},
        Conditions=[{"success_action_status": "201"}, ["content-length-range", 1, 10]])
    status, _, body = post_form(gw, f"/{bucket}", post["fields"], b"small")
    assert status == 201 and b"<Key>k</Key>" in body
    status, _, body = post_form(gw, f"/{bucket}", post["fields"], b"far too large")
    assert status == 400 and b"<Code>EntityTooLarge</Code>" in body
    status, _, body = post_form(gw, f"/{bucket}", dict(post["fields"], extra="x"), b"small")
    assert status == 403 and b"Extra input fields: extra" in body
    status, _, body = post_form(gw, f"/{bucket}", dict(post["fields"], key="other"), b"small")
    assert status == 403 and b"Policy Condition failed" in body
    forged = dict(post["fields"], **{"x-amz-signature": "0" * 64})
    status, _, body = post_form(gw, f"/{bucket}", forged, b"small")
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    an_hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(tzinfo=None)
    with mock.patch("botocore.signers.get_current_datetime", return_value=an_hour_ago), \
            mock.patch("botocore.auth.get_current_datetime", return_value=an_hour_ago):
        old = gw.client(signature_version="s3v4").generate_presigned_post(bucket, "late",
                                                                          ExpiresIn=60)
    status, _, body = post_form(gw, f"/{bucket}", old["fields"], b"late")
    assert status == 403 and b"Policy expired" in body
    # no policy: anonymous, only into a bucket anyone may write
    status, _, _ = post_form(gw, f"/{bucket}", {"key": "anon"}, b"x")
    assert status == 403
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    status, _, _ = post_form(gw, f"/{bucket}", {"key": "anon", "acl": "public-read"}, b"x")
    assert status == 204
    assert urllib.request.urlopen(f"{gw.url}/{bucket}/anon").read() == b"x"
    status, _, body = post_form(gw, f"/{bucket}", {"acl": "private"}, b"x")
    assert status == 400 and b"key" in body


def test_virtual_host_style(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="v/h", Body=b"vhost")
    host = f"{bucket}.localhost:{gw.port}"
    status, _, body = signed(gw, "GET", "/v/h", host=host)
    assert (status, body) == (200, b"vhost")
    status, _, body = signed(gw, "GET", "/?list-type=2", host=host)
    assert status == 200 and b"<Key>v/h</Key>" in body


def test_delete_objects_and_copy(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    other = new_bucket(s3)
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x" * i, Metadata={"i": str(i)})
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "k0"}, {"Key": "k1"}, {"Key": "missing"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["k0", "k1", "missing"]
    left = [c["Key"] for c in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert left == ["k2", "k3", "k4"]
    copy = s3.copy_object(Bucket=other, Key="copy", CopySource={"Bucket": bucket, "Key": "k3"})
    assert copy["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"xxx").hexdigest()}"'
    got = s3.get_object(Bucket=other, Key="copy")
    assert got["Body"].read() == b"xxx" and got["Metadata"] == {"i": "3"}
    s3.copy_object(Bucket=bucket, Key="k3", CopySource={"Bucket": bucket, "Key": "k3"},
                   MetadataDirective="REPLACE", Metadata={"new": "yes"})
    assert s3.head_object(Bucket=bucket, Key="k3")["Metadata"] == {"new": "yes"}
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="k3", CopySource={"Bucket": bucket, "Key": "k3"})
    assert error_of(err.value) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="k9", CopySource={"Bucket": bucket, "Key": "k4"},
                       CopySourceIfMatch='"nope"')
    assert error_of(err.value) == (412, "PreconditionFailed")


def test_conditional_puts_are_atomic(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    first = s3.put_object(Bucket=bucket, Key="c", Body=b"one", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="c", Body=b"two", IfNoneMatch="*")
    assert error_of(err.value) == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="c", Body=b"two", IfMatch='"0000"')
    assert error_of(err.value) == (412, "PreconditionFailed")
    s3.put_object(Bucket=bucket, Key="c", Body=b"two", IfMatch=first["ETag"])
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"two"
    # of many racing "create only if absent", exactly one wins
    results: list[str] = []

    def create(i: int) -> None:
        try:
            gw.client().put_object(Bucket=bucket, Key="once", Body=str(i).encode(),
                                   IfNoneMatch="*")
            results.append(f"won {i}")
        except ClientError as exc:
            results.append(error_of(exc)[1])
    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [r for r in results if r.startswith("won")]
    assert len(winners) == 1 and results.count("PreconditionFailed") == 5, results
    body = s3.get_object(Bucket=bucket, Key="once")["Body"].read().decode()
    assert winners == [f"won {body}"]


def test_anonymous_list_and_display_names(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="o", Body=b"")
    anonymous = boto3.client("s3", endpoint_url=gw.url, region_name="us-east-1",
                             config=BotoConfig(signature_version=botocore.UNSIGNED))
    assert anonymous.list_buckets()["Buckets"] == []
    owner = s3.list_objects(Bucket=bucket)["Contents"][0]["Owner"]
    assert owner == {"ID": "loligo", "DisplayName": "Loligo user"}
    assert s3.get_bucket_acl(Bucket=bucket)["Owner"] == owner


def test_multipart_upload(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    parts_data = [os.urandom(5 * MiB), os.urandom(5 * MiB + 7), os.urandom(1000)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", ContentType="video/mp4",
                                        Metadata={"m": "1"})["UploadId"]
    etags = []
    for n, data in enumerate(parts_data, start=1):
        etags.append(s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=n,
                                    Body=data)["ETag"])
    listed = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, 5 * MiB), (2, 5 * MiB + 7),
                                                             (3, 1000)]
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("mp", upload)]
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": '"0000"'}]})
    assert error_of(err.value) == (400, "InvalidPart")
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload,
                                        MultipartUpload={"Parts": [
                                            {"PartNumber": n, "ETag": e}
                                            for n, e in enumerate(etags, start=1)]})
    whole = b"".join(parts_data)
    digest = hashlib.md5(b"".join(hashlib.md5(d).digest() for d in parts_data)).hexdigest()
    assert done["ETag"] == f'"{digest}-3"'
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert got["Body"].read() == whole and got["ContentType"] == "video/mp4"
    assert got["Metadata"] == {"m": "1"}
    span = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={5 * MiB - 3}-{5 * MiB + 3}")
    assert span["Body"].read() == whole[5 * MiB - 3:5 * MiB + 4]
    second = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert second["Body"].read() == parts_data[1] and second["PartsCount"] == 3
    assert s3.head_object(Bucket=bucket, Key="mp", PartNumber=3)["ContentLength"] == 1000
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=4)
    assert error_of(err.value) == (400, "InvalidPart")
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload,
                                     MultipartUpload={"Parts": [{"PartNumber": 1,
                                                                 "ETag": etags[0]}]})
    assert error_of(err.value) == (404, "NoSuchUpload")
    # a small middle part, a copied part, and an abort
    small = s3.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="small", UploadId=small, PartNumber=1,
                        Body=b"a")["ETag"]
    e2 = s3.upload_part_copy(Bucket=bucket, Key="small", UploadId=small, PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "mp"},
                             CopySourceRange="bytes=0-99")["CopyPartResult"]["ETag"]
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=small,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1},
                                                                {"PartNumber": 2, "ETag": e2}]})
    assert error_of(err.value) == (400, "EntityTooSmall")
    s3.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=small)
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    # a bucket deleted with an unfinished upload takes the upload's parts with it
    other = new_bucket(s3)
    left = s3.create_multipart_upload(Bucket=other, Key="left")["UploadId"]
    s3.upload_part(Bucket=other, Key="left", UploadId=left, PartNumber=1, Body=b"x" * 1000)
    assert len(gw.data_objects(other)) == 1
    objects_before = gw.data_objects(other)
    s3.delete_bucket(Bucket=other)
    wait_for(lambda: not _stripes_exist(gw, objects_before), 30, "the parts collected")
    # with a checksum algorithm: parts are checked, the object gets S3's composite checksum
    algo = s3.create_multipart_upload(Bucket=bucket, Key="ck",
                                      ChecksumAlgorithm="SHA256")["UploadId"]
    sums = []
    for n, data in enumerate(parts_data[:2], start=1):
        sent = s3.upload_part(Bucket=bucket, Key="ck", UploadId=algo, PartNumber=n, Body=data,
                              ChecksumAlgorithm="SHA256")
        assert sent["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
        sums.append((sent["ETag"], sent["ChecksumSHA256"]))
    done = s3.complete_multipart_upload(Bucket=bucket, Key="ck", UploadId=algo, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e, "ChecksumSHA256": c}
                  for n, (e, c) in enumerate(sums, start=1)]})
    composite = hashlib.sha256(b"".join(base64.b64decode(c) for _, c in sums)).digest()
    assert done["ChecksumSHA256"] == base64.b64encode(composite).decode() + "-2"
    # boto3's managed transfer (multipart above its threshold) round-trips too
    s3.upload_fileobj(io.BytesIO(whole * 2), bucket, "managed")
    out = io.BytesIO()
    s3.download_fileobj(bucket, "managed", out)
    assert out.getvalue() == whole * 2


def test_https_default_boto3_sends_aws_chunked_with_crc32_trailer(gw: Gateway) -> None:
    s3 = gw.client(tls=True)
    bucket = new_bucket(s3)
    seen: list[dict[str, str]] = []
    s3.meta.events.register("before-send.s3.PutObject",
                            lambda request, **_: seen.append(dict(request.headers)))
    data = os.urandom(STRIPE + 1000)
    put = s3.put_object(Bucket=bucket, Key="chunked", Body=data)
    headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v)
               for k, v in seen[0].items()}
    assert headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert "aws-chunked" in headers["content-encoding"]
    assert headers["x-amz-trailer"] == "x-amz-checksum-crc32"
    got = gw.client().get_object(Bucket=bucket, Key="chunked", ChecksumMode="ENABLED")
    assert got["Body"].read() == data and got["ChecksumCRC32"] == put["ChecksumCRC32"]
    assert "ContentEncoding" not in got  # aws-chunked is a transfer detail, not stored
    s3.upload_fileobj(io.BytesIO(data * 3), bucket, "managed")
    assert s3.get_object(Bucket=bucket, Key="managed")["Body"].read() == data * 3


def _streaming_put(gw: Gateway, path: str, data: bytes, variant: str,
                   trailers: dict[str, str] | None, tamper: bool = False) -> tuple[int, bytes]:
    """A PUT with per-chunk signatures, as the AWS SDKs for Java/Go send it: the seed signature
    is botocore's; the chunks are signed with the (AWS-vector-checked) chunk signer."""
    headers = {"Host": f"127.0.0.1:{gw.port}", "x-amz-content-sha256": variant,
               "content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(len(data))}
    if trailers:
        headers["x-amz-trailer"] = next(iter(trailers))
    request = AWSRequest(method="PUT", url=f"{gw.url}{path}", headers=headers)
    SigV4Auth(Credentials(gw.access, gw.secret), "s3", "us-east-1").add_auth(request)
    seed = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    amz_date = request.headers["X-Amz-Date"]
    key = sigv4.signing_key(gw.secret, amz_date[:8], "us-east-1", "s3")
    signer = sigv4.ChunkSigner(key, amz_date, f"{amz_date[:8]}/us-east-1/s3/aws4_request",
                               seed)
    body = bytearray(chunked.encode(data, 64 * 1024, signer, trailers))
    if tamper:
        body[100] ^= 1
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        for name, value in request.headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(bytes(body))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_signed_streaming_uploads(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    data = os.urandom(300_000)
    status, body = _streaming_put(gw, f"/{bucket}/signed", data, sigv4.STREAMING_SIGNED, None)
    assert status == 200, body
    assert s3.get_object(Bucket=bucket, Key="signed")["Body"].read() == data
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    status, body = _streaming_put(gw, f"/{bucket}/trailer", data,
                                  sigv4.STREAMING_SIGNED_TRAILER,
                                  {"x-amz-checksum-crc32": crc})
    assert status == 200, body
    got = s3.get_object(Bucket=bucket, Key="trailer", ChecksumMode="ENABLED")
    assert got["Body"].read() == data and got["ChecksumCRC32"] == crc
    status, body = _streaming_put(gw, f"/{bucket}/tampered", data, sigv4.STREAMING_SIGNED,
                                  None, tamper=True)
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="tampered")


def test_aws_cli_cp_ls_sync_rm(gw: Gateway, tmp_path: Path) -> None:
    bucket = new_bucket(gw.client())
    env = dict(os.environ, AWS_ACCESS_KEY_ID=gw.access, AWS_SECRET_ACCESS_KEY=gw.secret,
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    aws = [str(Path(sys.executable).with_name("aws")), "--endpoint-url", gw.url]

    def run(*args: str) -> str:
        done = subprocess.run(aws + list(args), env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    files = {"a.txt": b"alpha", "sub/b.bin": os.urandom(9 * MiB), "sub/c": b""}
    for name, data in files.items():
        (src / name).write_bytes(data)
    run("s3", "cp", str(src / "a.txt"), f"s3://{bucket}/single/a.txt")
    run("s3", "sync", str(src), f"s3://{bucket}/tree")
    listing = run("s3", "ls", "--recursive", f"s3://{bucket}")
    for key in ("single/a.txt", "tree/a.txt", "tree/sub/b.bin", "tree/sub/c"):
        assert key in listing
    dest = tmp_path / "dest"
    run("s3", "sync", f"s3://{bucket}/tree", str(dest))
    for name, data in files.items():
        assert (dest / name).read_bytes() == data
    run("s3", "rm", "--recursive", f"s3://{bucket}/tree")
    assert "tree/" not in run("s3", "ls", "--recursive", f"s3://{bucket}")
    head = json.loads(run("s3api", "head-object", "--bucket", bucket, "--key", "single/a.txt"))
    assert head["ContentLength"] == 5


def test_tagging(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="a=1&b=two%20words")
    assert s3.head_object(Bucket=bucket, Key="t")["ResponseMetadata"]["HTTPHeaders"][
        "x-amz-tagging-count"] == "2"
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [
        {"Key": "a", "Value": "1"}, {"Key": "b", "Value": "two words"}]
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [
        {"Key": f"k{i}", "Value": "v" * 256} for i in range(10)]})
    assert len(s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]) == 10
    with pytest.raises(ClientError) as err:
        s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [
            {"Key": f"k{i}", "Value": "v"} for i in range(11)]})
    assert error_of(err.value) == (400, "InvalidTag")
    with pytest.raises(ClientError) as err:
        s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [
            {"Key": "k" * 129, "Value": "v"}]})
    assert error_of(err.value) == (400, "InvalidTag")
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "t"})
    assert len(s3.get_object_tagging(Bucket=bucket, Key="copy")["TagSet"]) == 10
    s3.copy_object(Bucket=bucket, Key="copy2", CopySource={"Bucket": bucket, "Key": "t"},
                   TaggingDirective="REPLACE", Tagging="only=this")
    assert s3.get_object_tagging(Bucket=bucket, Key="copy2")["TagSet"] == [
        {"Key": "only", "Value": "this"}]
    s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    assert s3.get_object(Bucket=bucket, Key="t")["Body"].read() == b"x"  # data untouched
    with pytest.raises(ClientError) as err:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_of(err.value) == (404, "NoSuchTagSet")
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "x"}]})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "team", "Value": "x"}]
    s3.delete_bucket_tagging(Bucket=bucket)
    with pytest.raises(ClientError):
        s3.get_bucket_tagging(Bucket=bucket)
    # a version's own tags
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="v", Body=b"1", Tagging="gen=1")["VersionId"]
    s3.put_object(Bucket=bucket, Key="v", Body=b"2", Tagging="gen=2")
    s3.put_object_tagging(Bucket=bucket, Key="v", VersionId=v1,
                          Tagging={"TagSet": [{"Key": "gen", "Value": "one"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="v", VersionId=v1)["TagSet"] == [
        {"Key": "gen", "Value": "one"}]
    assert s3.get_object_tagging(Bucket=bucket, Key="v")["TagSet"] == [
        {"Key": "gen", "Value": "2"}]


def test_public_read_objects_and_buckets(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="open", Body=b"everyone", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="closed", Body=b"me")
    assert urllib.request.urlopen(f"{gw.url}/{bucket}/open").read() == b"everyone"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{gw.url}/{bucket}/closed")
    assert err.value.code == 403
    grants = s3.get_object_acl(Bucket=bucket, Key="open")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("AllUsers") for g in grants)
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{gw.url}/{bucket}")
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert b"<Key>closed</Key>" in urllib.request.urlopen(f"{gw.url}/{bucket}").read()


def test_versioning(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v0")  # before versioning: the null version
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"v2")["VersionId"]
    s3.put_object(Bucket=bucket, Key="other", Body=b"o")

    def body(**kw: str) -> bytes:
        return s3.get_object(Bucket=bucket, Key="k", **kw)["Body"].read()
    assert body() == b"v2" and body(VersionId=v1) == b"v1" and body(VersionId="null") == b"v0"
    assert s3.head_object(Bucket=bucket, Key="k")["VersionId"] == v2
    listed = s3.list_object_versions(Bucket=bucket, Prefix="k")["Versions"]
    assert [(v["VersionId"], v["IsLatest"], v["Size"]) for v in listed] == [
        (v2, True, 2), (v1, False, 2), ("null", False, 2)]
    gone = s3.delete_object(Bucket=bucket, Key="k")
    assert gone["DeleteMarker"] is True
    marker = gone["VersionId"]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="k")
    assert error_of(err.value) == (404, "NoSuchKey")
    assert err.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="k", VersionId=marker)
    assert error_of(err.value)[0] == 405
    assert [c["Key"] for c in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["other"]
    listing = s3.list_object_versions(Bucket=bucket)
    assert [(m["VersionId"], m["IsLatest"]) for m in listing["DeleteMarkers"]] == [(marker, True)]
    assert len(listing["Versions"]) == 4
    paged = s3.get_paginator("list_object_versions").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 1})
    seen = [(v["Key"], v["VersionId"]) for page in paged
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
    assert sorted(seen) == sorted([("k", marker), ("k", v2), ("k", v1), ("k", "null"),
                                   ("other", listing["Versions"][-1]["VersionId"])])
    s3.delete_object(Bucket=bucket, Key="k", VersionId=marker)  # undelete
    assert body() == b"v2"
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v2)  # the previous version is back
    assert body() == b"v1"
    copied = s3.copy_object(Bucket=bucket, Key="k2",
                            CopySource={"Bucket": bucket, "Key": "k", "VersionId": "null"})
    assert copied["CopySourceVersionId"] == "null"
    assert s3.get_object(Bucket=bucket, Key="k2")["Body"].read() == b"v0"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="k", VersionId="0" * 19 + "deadbeef")
    assert error_of(err.value) == (404, "NoSuchVersion")
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="k", VersionId="not-a-version")
    assert error_of(err.value) == (400, "InvalidArgument")
    # suspended: a PUT replaces the null version (whose data goes to GC), keeps the others
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert "VersionId" not in s3.put_object(Bucket=bucket, Key="k", Body=b"v3")  # null
    listed = s3.list_object_versions(Bucket=bucket, Prefix="k")["Versions"]
    assert [(v["Key"], v["VersionId"]) for v in listed if v["Key"] == "k"] == [
        ("k", "null"), ("k", v1)]
    assert body() == b"v3" and body(VersionId="null") == b"v3"
    with pytest.raises(ClientError) as err:
        s3.delete_bucket(Bucket=bucket)
    assert error_of(err.value) == (409, "BucketNotEmpty")
    # concurrent writers of one key in a versioned bucket: every write is a version
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    made: list[str] = []

    def put(i: int) -> None:
        made.append(gw.client().put_object(Bucket=bucket, Key="busy",
                                           Body=str(i).encode())["VersionId"])
    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    busy = s3.list_object_versions(Bucket=bucket, Prefix="busy")["Versions"]
    assert sorted(v["VersionId"] for v in busy) == sorted(made) and len(made) == 8
    latest = next(v for v in busy if v["IsLatest"])
    assert s3.head_object(Bucket=bucket, Key="busy")["VersionId"] == latest["VersionId"]
    everything = s3.list_object_versions(Bucket=bucket)
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": v["Key"], "VersionId": v["VersionId"]}
        for v in everything.get("Versions", []) + everything.get("DeleteMarkers", [])]})
    assert "Versions" not in s3.list_object_versions(Bucket=bucket)
    wait_for(lambda: gw.data_objects(bucket) == [], 30, "every version's stripes collected")
    s3.delete_bucket(Bucket=bucket)


# --- storage behaviour: atomic swaps, GC, disconnects -------------------------------------------

def test_concurrent_puts_leave_one_complete_object_and_gc_the_rest(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    bodies = [bytes([i]) * (STRIPE + 1000 * (i + 1)) for i in range(6)]
    errors: list[BaseException] = []

    def put(body: bytes) -> None:
        try:
            gw.client().put_object(Bucket=bucket, Key="race", Body=body)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    final = s3.get_object(Bucket=bucket, Key="race")["Body"].read()
    assert final in bodies  # one whole body, never a mix
    # every loser's stripes are collected: what stays is the winner's two stripes
    wait_for(lambda: len(gw.data_objects(bucket)) == 2, 30, "losers' stripes collected")
    assert s3.get_object(Bucket=bucket, Key="race")["Body"].read() == final
    s3.delete_object(Bucket=bucket, Key="race")
    wait_for(lambda: gw.data_objects(bucket) == [], 30, "deleted object's stripes collected")


def test_a_client_that_disconnects_mid_upload_leaves_nothing(gw: Gateway) -> None:
    s3 = gw.client()
    bucket = new_bucket(s3)
    size = 3 * STRIPE
    request = AWSRequest(method="PUT", url=f"{gw.url}/{bucket}/cut",
                         headers={"Content-Length": str(size),
                                  "Host": f"127.0.0.1:{gw.port}",
                                  "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(Credentials(gw.access, gw.secret), "s3", "us-east-1").add_auth(request)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        head = f"PUT /{bucket}/cut HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n"
        sock.sendall(head.encode())
        sent = 0
        while sent < 2 * STRIPE + 100:  # more than two stripes written, then gone
            sock.sendall(b"z" * MiB)
            sent += MiB
    wait_for(lambda: gw.data_objects(bucket) == [], 30, "the cut upload's stripes removed")
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="cut")
    assert error_of(err.value)[0] == 404
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_a_gateway_with_a_stale_bucket_entry_still_writes_correctly(gw: Gateway) -> None:
    """gateway.2 has the bucket entry cached when gateway.1 turns versioning on, or deletes
    and re-creates the bucket: its next writes still do the right thing."""
    one, two = gw.client(), gw.client(tls=True)
    bucket = new_bucket(one)
    two.put_object(Bucket=bucket, Key="k", Body=b"first")  # gateway.2 caches the bucket
    one.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    made = two.put_object(Bucket=bucket, Key="k", Body=b"second")
    assert made.get("VersionId") not in (None, "null")
    versions = one.list_object_versions(Bucket=bucket)["Versions"]
    assert [(v["VersionId"] == "null", v["Size"]) for v in versions] == [(False, 6), (True, 5)]
    gone = two.delete_object(Bucket=bucket, Key="k")
    assert gone["DeleteMarker"] is True
    # deleted and created again behind gateway.2's back: its next write, and its next read
    for first_use in ("write", "read"):
        other = new_bucket(one)
        two.put_object(Bucket=other, Key="a", Body=b"old")
        one.delete_object(Bucket=other, Key="a")
        one.delete_bucket(Bucket=other)
        one.create_bucket(Bucket=other)
        if first_use == "read":
            assert two.list_objects_v2(Bucket=other)["KeyCount"] == 0
        two.put_object(Bucket=other, Key="b", Body=b"new")
        assert [c["Key"] for c in one.list_objects_v2(Bucket=other)["Contents"]] == ["b"]
        assert one.get_object(Bucket=other, Key="b")["Body"].read() == b"new"


def test_both_gateways_serve_the_same_buckets(gw: Gateway) -> None:
    bucket = new_bucket(gw.client())
    gw.client(tls=True).put_object(Bucket=bucket, Key="shared", Body=b"one store")
    assert gw.client().get_object(Bucket=bucket, Key="shared")["Body"].read() == b"one store"


# --- users from the command line ----------------------------------------------------------------

def loligo(gw: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    return loligo_cli(gw.cluster, *args)


def test_user_commands(gw: Gateway) -> None:
    uid = f"u{uuid.uuid4().hex[:8]}"
    made = loligo(gw, "user", "create", "--uid", uid, "--display-name", "Test User",
                  "--access-key", f"AK{uid.upper()}", "--secret-key", "s" * 40,
                  "--swift-user", f"{uid}:swift", "--format", "json")
    assert made.returncode == 0, made.stderr
    user = json.loads(made.stdout)
    assert user["user_id"] == uid and user["display_name"] == "Test User"
    assert user["keys"] == [{"user": uid, "access_key": f"AK{uid.upper()}",
                             "secret_key": "s" * 40}]
    assert user["swift_keys"][0]["user"] == f"{uid}:swift"
    assert uid in loligo(gw, "user", "ls", "--format", "json").stdout
    again = loligo(gw, "user", "create", "--uid", uid)
    assert again.returncode == 1 and "exists" in again.stderr and "Traceback" not in again.stderr
    s3 = boto3.client("s3", endpoint_url=gw.url, aws_access_key_id=f"AK{uid.upper()}",
                      aws_secret_access_key="s" * 40, region_name="us-east-1")
    assert s3.list_buckets()["Buckets"] == []
    assert loligo(gw, "user", "suspend", "--uid", uid).returncode == 0

    def refused() -> bool:
        try:
            s3.list_buckets()
        except ClientError as exc:
            return error_of(exc) == (403, "AccessDenied")
        return False
    wait_for(refused, 10, "the suspended user refused")
    assert loligo(gw, "user", "enable", "--uid", uid).returncode == 0
    added = json.loads(loligo(gw, "key", "create", "--uid", uid, "--format", "json").stdout)
    assert len(added["keys"]) == 2
    new_key = next(k for k in added["keys"] if k["access_key"] != f"AK{uid.upper()}")
    assert loligo(gw, "key", "rm", "--access-key", f"AK{uid.upper()}").returncode == 0
    wait_for(lambda: not _works(gw, f"AK{uid.upper()}", "s" * 40), 10, "removed key refused")
    assert _works(gw, new_key["access_key"], new_key["secret_key"])
    assert loligo(gw, "user", "rm", "--uid", uid).returncode == 0
    gone = loligo(gw, "user", "info", "--uid", uid)
    assert gone.returncode == 1 and "no user" in gone.stderr


def _works(gw: Gateway, access: str, secret: str) -> bool:
    s3 = boto3.client("s3", endpoint_url=gw.url, aws_access_key_id=access,
                      aws_secret_access_key=secret, region_name="us-east-1",
                      config=BotoConfig(retries={"max_attempts": 1}))
    try:
        s3.list_buckets()
    except ClientError:
        return False
    return True


def test_cluster_info_names_the_gateway_and_user(gw: Gateway) -> None:
    info = loligo(gw, "cluster", "info", "--format", "json")
    assert info.returncode == 0, info.stderr
    gateway = json.loads(info.stdout)["gateway"]
    assert gateway["url"] == gw.url and gateway["running"]
    assert gateway["user"]["keys"][0]["access_key"] == gw.access
    assert set(gateway["user"]) >= {"user_id", "display_name", "keys", "swift_keys"}


def test_versions_of_the_clients() -> None:
    """The checksum behaviour tested above is that of boto3 >= 1.36 (FACTS.md)."""
    major, minor = (int(x) for x in botocore.__version__.split(".")[:2])
    assert (major, minor) >= (1, 36)
