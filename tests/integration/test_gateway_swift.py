"""The Swift API against a real cluster and gateway process, driven by real clients: the
`swift` CLI of python-swiftclient (stat, post, upload with segments as DLO and SLO, download,
list, delete), swiftclient.client for the rest, boto3 for the one store under both APIs, and
urllib for TempURLs and raw requests."""

from __future__ import annotations

import hashlib
import http.client as http_client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from swiftclient import client as sc
from swiftclient.exceptions import ClientException

from gateway import swift_tempurl
from tests.integration.gateway_fixture import GatewayProcess, loligo, running_gateway
from tests.waiting import wait_for

pytestmark = pytest.mark.slow
SWIFT = str(Path(sys.executable).with_name("swift"))


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    settings = {"gateway_gc_min_wait": 0.5, "gateway_gc_interval": 0.1,
                "gateway_user_cache_ttl": 0.2}
    with running_gateway(tmp_path_factory.mktemp("swift") / "cluster",
                         settings=settings) as g:
        yield g


def creds(gw: GatewayProcess) -> tuple[str, str, str]:
    key = gw.user["swift_keys"][0]
    return f"{gw.url}/auth/v1.0", key["user"], key["secret_key"]


def conn(gw: GatewayProcess, user: str | None = None, key: str | None = None
         ) -> sc.Connection:
    auth, default_user, default_key = creds(gw)
    return sc.Connection(auth, user or default_user, key or default_key, retries=0)


def swift_cli(gw: GatewayProcess, *args: str, cwd: Path | None = None) -> str:
    auth, user, key = creds(gw)
    env = {**os.environ, "ST_AUTH": auth, "ST_USER": user, "ST_KEY": key}
    done = subprocess.run([SWIFT, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def status_of(call: Any, *args: Any, **kwargs: Any) -> int:
    with pytest.raises(ClientException) as info:
        call(*args, **kwargs)
    return int(info.value.http_status or 0)


def raw(method: str, url: str, headers: dict[str, str] | None = None,
        data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def name() -> str:
    return f"c{uuid.uuid4().hex[:10]}"


def test_cli_stat_post_upload_list_download_delete(gw: GatewayProcess, tmp_path: Path) -> None:
    c = name()
    assert "Account: AUTH_loligo" in swift_cli(gw, "stat")
    swift_cli(gw, "post", c, "-m", "color:blue", "-r", ".r:*")
    stat = swift_cli(gw, "stat", c)
    assert "Meta Color: blue" in stat and "Read ACL: .r:*" in stat
    (tmp_path / "d").mkdir()
    for i in range(3):
        (tmp_path / "d" / f"f{i}.txt").write_text(f"file {i}\n")
    swift_cli(gw, "upload", c, "d", cwd=tmp_path)
    assert swift_cli(gw, "list", c).split() == ["d/f0.txt", "d/f1.txt", "d/f2.txt"]
    assert swift_cli(gw, "list", c, "--prefix", "d/f1").split() == ["d/f1.txt"]
    assert swift_cli(gw, "list", c, "--delimiter", "/").split() == ["d/"]
    assert c in swift_cli(gw, "list").split()
    swift_cli(gw, "download", c, "d/f2.txt", "-o", str(tmp_path / "out"))
    assert (tmp_path / "out").read_text() == "file 2\n"
    swift_cli(gw, "delete", c)
    assert c not in swift_cli(gw, "list").split()


@pytest.mark.parametrize("slo", [False, True])
def test_segmented_uploads(gw: GatewayProcess, tmp_path: Path, slo: bool) -> None:
    c = name()
    data = os.urandom(2_500_000)
    (tmp_path / "big").write_bytes(data)
    args = ["upload", "--segment-size", "1000000", "--use-slo" if slo else "--use-dlo", c,
            "big"]
    swift_cli(gw, *args, cwd=tmp_path)
    segments = swift_cli(gw, "list", f"{c}_segments").split()
    assert len(segments) == 3
    swift_cli(gw, "download", c, "big", "-o", str(tmp_path / "got"))
    assert (tmp_path / "got").read_bytes() == data
    sw = conn(gw)
    headers = sw.head_object(c, "big")
    assert int(headers["content-length"]) == len(data)
    assert ("x-static-large-object" in headers) == slo
    assert ("x-object-manifest" in headers) == (not slo)
    _, part = sw.get_object(c, "big", headers={"Range": "bytes=999990-1000009"})
    assert part == data[999990:1000010]
    if slo:  # stitched, not copied: the manifest names the segments
        _, manifest = sw.get_object(c, "big", query_string="multipart-manifest=get")
        rows = json.loads(manifest)
        assert [r["bytes"] for r in rows] == [1_000_000, 1_000_000, 500_000]
    swift_cli(gw, "delete", c, "big")
    assert swift_cli(gw, "list", f"{c}_segments").split() == []


def test_listing_formats_and_options(gw: GatewayProcess) -> None:
    sw = conn(gw)
    c = name()
    sw.put_container(c)
    names = ["a", "b/1", "b/2", "c", "d", "é"]
    for n in names:
        sw.put_object(c, n, n.encode())
    _, rows = sw.get_container(c)
    assert [r["name"] for r in rows] == names
    assert rows[0]["bytes"] == 1 and rows[0]["hash"] == hashlib.md5(b"a").hexdigest()
    _, rows = sw.get_container(c, delimiter="/")
    assert [r.get("name", r.get("subdir")) for r in rows] == ["a", "b/", "c", "d", "é"]
    _, rows = sw.get_container(c, marker="b/1", end_marker="d")
    assert [r["name"] for r in rows] == ["b/2", "c"]
    _, rows = sw.get_container(c, limit=2, query_string="reverse=true")
    assert [r["name"] for r in rows] == ["é", "d"]
    _, rows = sw.get_container(c, full_listing=True, limit=2)
    assert [r["name"] for r in rows] == names
    token = sw.get_auth()[1]
    url = sw.url
    status, headers, body = raw("GET", f"{url}/{c}?prefix=b/", {"X-Auth-Token": token})
    assert status == 200 and body == b"b/1\nb/2\n"
    status, headers, body = raw("GET", f"{url}/{c}?limit=1", {"X-Auth-Token": token,
                                                               "Accept": "application/xml"})
    assert headers["content-type"].startswith("application/xml") and b"<name>a</name>" in body
    status, headers, _ = raw("GET", f"{url}/{c}?prefix=zzz", {"X-Auth-Token": token})
    assert status == 204
    account_headers, containers = sw.get_account(prefix=c)
    assert containers == [{"name": c, "count": len(names), "bytes": sum(
        len(n.encode()) for n in names), "last_modified": containers[0]["last_modified"],
        "storage_policy": "default"}]
    assert int(account_headers["x-account-container-count"]) >= 1


def test_metadata_copy_conditions_and_errors(gw: GatewayProcess) -> None:
    sw = conn(gw)
    c = name()
    sw.put_container(c, headers={"X-Container-Meta-Team": "squid"})
    assert sw.head_container(c)["x-container-meta-team"] == "squid"
    etag = sw.put_object(c, "o", b"0123456789", headers={"X-Object-Meta-Color": "red"},
                         content_type="text/x-test")
    assert etag == hashlib.md5(b"0123456789").hexdigest()
    head = sw.head_object(c, "o")
    assert head["x-object-meta-color"] == "red" and head["content-type"] == "text/x-test"
    sw.post_object(c, "o", headers={"X-Object-Meta-Size": "big"})
    head = sw.head_object(c, "o")
    assert head["x-object-meta-size"] == "big" and "x-object-meta-color" not in head
    _, part = sw.get_object(c, "o", headers={"Range": "bytes=-3"})
    assert part == b"789"
    assert status_of(sw.get_object, c, "o", headers={"Range": "bytes=50-60"}) == 416
    assert status_of(sw.get_object, c, "o", headers={"If-Match": "nope"}) == 412
    # swiftclient takes a 304 for a failure without a status worth checking: raw requests
    token = sw.get_auth()[1]
    status, hdrs, _ = raw("GET", f"{sw.url}/{c}/o", {"X-Auth-Token": token,
                                                     "If-None-Match": etag})
    assert status == 304 and hdrs["etag"] == etag and hdrs["accept-ranges"] == "bytes"
    # refusals still describe the object, as Swift's do
    for refused, want in (({"If-Match": "nope"}, 412), ({"Range": "bytes=50-60"}, 416)):
        status, hdrs, _ = raw("GET", f"{sw.url}/{c}/o", {"X-Auth-Token": token, **refused})
        assert (status, hdrs["etag"], hdrs["accept-ranges"]) == (want, etag, "bytes")
        assert "last-modified" in hdrs
    status, _, _ = raw("GET", f"{sw.url}/{c}/o", {
        "X-Auth-Token": token, "If-Modified-Since": "Sun, 01 Jan 2090 00:00:00 GMT"})
    assert status == 304
    status, _, _ = raw("GET", f"{sw.url}/{c}/o", {
        "X-Auth-Token": token, "If-Unmodified-Since": "Sun, 01 Jan 2000 00:00:00 GMT"})
    assert status == 412
    # copies: X-Copy-From on PUT, and the COPY verb with Destination
    sw.put_object(c, "copy1", b"", headers={"X-Copy-From": f"/{c}/o",
                                            "X-Object-Meta-Extra": "1"})
    head = sw.head_object(c, "copy1")
    assert head["etag"] == etag and head["x-object-meta-extra"] == "1"
    sw.copy_object(c, "o", f"/{c}/copy2")
    assert sw.get_object(c, "copy2")[1] == b"0123456789"
    # errors Swift's clients expect
    assert status_of(sw.put_object, c, "bad", b"abc", etag="0" * 32) == 422
    assert status_of(sw.head_object, c, "bad") == 404
    assert status_of(sw.delete_container, c) == 409
    assert status_of(sw.get_container, name()) == 404
    assert status_of(sw.put_object, name(), "x", b"x") == 404
    # http.client always sends a Content-Length with a PUT: a raw one without any
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
        s.sendall(f"PUT /swift/v1/AUTH_loligo/{c}/nolength HTTP/1.1\r\nHost: x\r\n"
                  f"X-Auth-Token: {token}\r\nConnection: close\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 411 ")
    status, _, _ = raw("GET", f"{sw.url}/{c}/o", {"X-Auth-Token": token + "x"})
    assert status == 401
    status, _, _ = raw("GET", f"{gw.url}/auth/v1.0", {"X-Auth-User": "loligo:swift",
                                                      "X-Auth-Key": "wrong"})
    assert status == 401
    assert status_of(sw.put_object, c, "x" * 1025, b"x") == 400
    assert status_of(sw.put_container, "x" * 257) == 400
    for odd in ("a//b", "//lead", "ünï/cødé", "sp ace?#%", "trailing/"):
        sw.put_object(c, odd, odd.encode())
        assert sw.get_object(c, odd)[1] == odd.encode()
    # requests drops dot segments before sending; http.client sends them as they are
    for odd in ("../x", "a/../../b", "./."):
        http = http_client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
        http.request("PUT", f"/swift/v1/AUTH_loligo/{c}/{odd}", body=odd.encode(),
                     headers={"X-Auth-Token": token})
        put = http.getresponse()
        assert (put.status, put.read()) == (201, b"")
        http.request("GET", f"/swift/v1/AUTH_loligo/{c}/{odd}", headers={"X-Auth-Token": token})
        assert http.getresponse().read() == odd.encode()
        http.close()
    names = {r["name"] for r in sw.get_container(c, full_listing=True)[1]}
    assert {"../x", "a/../../b", "./.", "//lead", "a//b"} <= names


def test_bulk_delete_and_expiring_objects(gw: GatewayProcess) -> None:
    sw = conn(gw)
    c = name()
    sw.put_container(c)
    for i in range(5):
        sw.put_object(c, f"o{i}", b"x")
    token = sw.get_auth()[1]
    body = "".join(f"/{c}/o{i}\n" for i in range(6)).encode()
    status, _, answer = raw("POST", f"{sw.url}?bulk-delete", {
        "X-Auth-Token": token, "Accept": "application/json", "Content-Type": "text/plain"},
        body)
    report = json.loads(answer)
    assert status == 200 and report["Number Deleted"] == 5
    assert report["Number Not Found"] == 1 and report["Errors"] == []
    sw.put_object(c, "soon", b"x", headers={"X-Delete-After": "1"})
    sw.put_object(c, "later", b"y", headers={"X-Delete-At": str(int(time.time()) + 3600)})
    assert "x-delete-at" in sw.head_object(c, "later")
    wait_for(lambda: _missing(sw, c, "soon"), 10, "the object expiring")
    assert [r["name"] for r in sw.get_container(c)[1]] == ["later"]
    assert status_of(sw.put_object, c, "past", b"x", headers={"X-Delete-At": "1"}) == 400


def test_expired_objects_go_without_a_request_meeting_them(gw: GatewayProcess) -> None:
    sw = conn(gw)
    c = name()
    sw.put_container(c)
    sw.put_object(c, "keep", b"kept")
    for i in range(3):
        sw.put_object(c, f"short{i}", b"x" * 10, headers={"X-Delete-After": "1"})
    sw.put_object(c, "short0", b"y" * 20, headers={"X-Delete-After": "1"})  # overwritten
    assert int(sw.head_container(c)["x-container-object-count"]) == 4
    # HEAD reads the counts and meets no object: only the GC worker can bring them down
    wait_for(lambda: sw.head_container(c)["x-container-object-count"] == "1", 20,
             "the GC worker removing the expired objects")
    assert int(sw.head_container(c)["x-container-bytes-used"]) == 4
    assert [r["name"] for r in sw.get_container(c)[1]] == ["keep"]

    # a container whose objects have all expired can be deleted, GC worker or not
    gone = name()
    sw.put_container(gone)
    until = int(time.time()) + 2
    for i in range(3):
        sw.put_object(gone, f"o{i}", b"z", headers={"X-Delete-At": str(until)})
    assert status_of(sw.delete_container, gone) == 409
    wait_for(lambda: time.time() >= until, 5, "the objects' end of life")
    sw.delete_container(gone)
    assert status_of(sw.head_container, gone) == 404


def test_multi_range_get_is_multipart_in_swift_and_whole_in_s3(gw: GatewayProcess) -> None:
    sw = conn(gw)
    c = name()
    sw.put_container(c)
    sw.put_object(c, "digits", b"0123456789", content_type="text/plain")
    headers, body = sw.get_object(c, "digits", headers={"Range": "bytes=0-1,5-9"})
    ctype = headers["content-type"]
    assert ctype.startswith("multipart/byteranges;boundary=")
    boundary = ctype.split("boundary=")[1].encode()
    assert int(headers["content-length"]) == len(body)
    parts = body.split(b"--" + boundary)
    assert parts[0] == b"" and parts[-1] == b"--"
    assert parts[1:-1] == [
        b"\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01\r\n",
        b"\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-9/10\r\n\r\n56789\r\n"]
    token = sw.get_auth()[1]
    status, hdrs, one = raw("GET", f"{sw.url}/{c}/digits",
                            {"X-Auth-Token": token, "Range": "bytes=3-4,40-50"})
    assert (status, one, hdrs["content-range"]) == (206, b"34", "bytes 3-4/10")
    status, hdrs, _ = raw("GET", f"{sw.url}/{c}/digits",
                          {"X-Auth-Token": token, "Range": "bytes=40-50,60-"})
    assert status == 416 and hdrs["content-range"] == "bytes */10"
    # AWS serves no multi-range: S3 ignores such a header and sends the whole object
    key = gw.user["keys"][0]
    s3 = boto3.client("s3", endpoint_url=gw.url, aws_access_key_id=key["access_key"],
                      aws_secret_access_key=key["secret_key"], region_name="us-east-1",
                      config=BotoConfig(retries={"max_attempts": 1}))
    got = s3.get_object(Bucket=c, Key="digits", Range="bytes=0-1,5-9")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["Body"].read() == b"0123456789" and "ContentRange" not in got


def test_tempurl_with_account_key(gw: GatewayProcess) -> None:
    sw = conn(gw)
    c = name()
    sw.put_container(c)
    sw.put_object(c, "file.txt", b"temp data")
    sw.post_account(headers={"X-Account-Meta-Temp-URL-Key": "sekrit"})
    path = f"/swift/v1/AUTH_loligo/{c}/file.txt"
    expires = int(time.time()) + 60
    for digest in ("sha1", "sha256"):
        sig = swift_tempurl.sign("sekrit", "GET", expires, path, digest)
        status, headers, body = raw(
            "GET", f"{gw.url}{path}?temp_url_sig={sig}&temp_url_expires={expires}")
        assert (status, body) == (200, b"temp data")
        assert headers["content-disposition"] == 'attachment; filename="file.txt"'
    sig = swift_tempurl.sign("sekrit", "PUT", expires, path)
    status, _, _ = raw("PUT", f"{gw.url}{path}?temp_url_sig={sig}&temp_url_expires={expires}",
                       data=b"replaced")
    assert status == 201 and sw.get_object(c, "file.txt")[1] == b"replaced"
    for query in (f"temp_url_sig={sig}&temp_url_expires={expires}",  # a PUT signature
                  f"temp_url_sig={'0' * 64}&temp_url_expires={expires}",
                  f"temp_url_sig={sig}&temp_url_expires={int(time.time()) - 1}"):
        assert raw("GET", f"{gw.url}{path}?{query}")[0] == 401
    assert raw("GET", f"{gw.url}{path}")[0] == 401


def _missing(sw: sc.Connection, container: str, obj: str) -> bool:
    try:
        sw.head_object(container, obj)
    except ClientException as exc:
        return exc.http_status == 404
    return False


def _add_member(gw: GatewayProcess, swift_user: str, key: str) -> None:
    done = loligo(gw.cluster, "key", "create", "--uid", "loligo", "--swift-user", swift_user,
                  "--swift-key", key, "--swift-access", "member")
    assert done.returncode == 0, done.stderr
    assert f"{swift_user}  secret {key}  (member)" in done.stdout


def test_cli_creates_swift_members_and_admins(gw: GatewayProcess) -> None:
    uid = f"u{uuid.uuid4().hex[:8]}"
    made = loligo(gw.cluster, "user", "create", "--uid", uid, "--swift-user", f"{uid}:boss",
                  "--swift-key", "boss-key", "--format", "json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["swift_keys"] == [{"user": f"{uid}:boss",
                                                       "secret_key": "boss-key"}]
    added = loligo(gw.cluster, "key", "create", "--uid", uid, "--swift-user", f"{uid}:guest",
                   "--swift-access", "member", "--format", "json")
    assert added.returncode == 0, added.stderr
    keys = json.loads(added.stdout)["swift_keys"]
    guest = next(k for k in keys if k["user"] == f"{uid}:guest")
    assert guest["access"] == "member" and len(guest["secret_key"]) >= 20
    boss = conn(gw, f"{uid}:boss", "boss-key")
    member = conn(gw, f"{uid}:guest", guest["secret_key"])
    wait_for(lambda: _member_works(member), 10, "the member key to be known")
    boss.put_container("shared")
    assert status_of(member.get_account) == 403
    assert status_of(member.get_container, "shared") == 403
    boss.post_container("shared", {"X-Container-Read": f"{uid}:guest"})
    assert member.get_container("shared")[1] == []
    for bad in (["user", "create", "--uid", uid + "x", "--swift-access", "member"],
                ["key", "create", "--uid", uid, "--swift-user", f"{uid}:x",
                 "--swift-access", "owner"]):
        refused = loligo(gw.cluster, *bad)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    boss.delete_container("shared")


def test_container_acls_for_members_and_anonymous_readers(gw: GatewayProcess) -> None:
    _add_member(gw, "loligo:member", "member-key")
    admin = conn(gw)
    member = conn(gw, "loligo:member", "member-key")
    c = name()
    admin.put_container(c)
    admin.put_object(c, "o", b"data")
    wait_for(lambda: _member_works(member), 10, "the member key to be known")
    assert status_of(member.get_account) == 403
    assert status_of(member.get_object, c, "o") == 403
    assert status_of(member.put_object, c, "m", b"m") == 403
    admin.post_container(c, headers={"X-Container-Read": "loligo:member",
                                     "X-Container-Write": "loligo:member"})
    assert member.get_object(c, "o")[1] == b"data"
    member.put_object(c, "m", b"m")
    assert [r["name"] for r in member.get_container(c)[1]] == ["m", "o"]
    assert status_of(member.delete_container, c) == 403
    url = f"{admin.url}/{c}/o"
    assert raw("GET", url)[0] == 401
    admin.post_container(c, headers={"X-Container-Read": ".r:*"})
    assert raw("GET", url)[:3:2] == (200, b"data")
    assert raw("GET", f"{admin.url}/{c}")[0] == 401  # reading is not listing
    admin.post_container(c, headers={"X-Container-Read": ".r:*,.rlistings"})
    assert raw("GET", f"{admin.url}/{c}")[2] == b"m\no\n"


def _member_works(member: sc.Connection) -> bool:
    try:
        member.get_auth()
    except ClientException:
        return False
    return True


def test_one_store_under_s3_and_swift(gw: GatewayProcess) -> None:
    key = gw.user["keys"][0]
    s3 = boto3.client("s3", endpoint_url=gw.url, aws_access_key_id=key["access_key"],
                      aws_secret_access_key=key["secret_key"], region_name="us-east-1",
                      config=BotoConfig(retries={"max_attempts": 1}))
    sw = conn(gw)
    bucket = f"both-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="from-s3", Body=b"s3 bytes", Metadata={"who": "s3"})
    assert bucket in [c["name"] for c in sw.get_account()[1]]
    assert [r["name"] for r in sw.get_container(bucket)[1]] == ["from-s3"]
    headers, body = sw.get_object(bucket, "from-s3")
    assert body == b"s3 bytes" and headers["x-object-meta-who"] == "s3"
    sw.put_object(bucket, "from-swift", b"swift bytes", headers={"X-Object-Meta-Who": "swift"})
    got = s3.get_object(Bucket=bucket, Key="from-swift")
    assert got["Body"].read() == b"swift bytes" and got["Metadata"] == {"who": "swift"}
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["from-s3", "from-swift"]
    sw.delete_object(bucket, "from-s3")
    s3.delete_object(Bucket=bucket, Key="from-swift")
    sw.delete_container(bucket)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_info_and_auth_endpoints(gw: GatewayProcess) -> None:
    status, _, body = raw("GET", f"{gw.url}/info")
    info = json.loads(body)
    assert status == 200 and {"swift", "slo", "bulk_delete", "tempurl"} <= set(info)
    assert raw("GET", f"{gw.url}/swift/info")[0] == 200
    _, user, key = creds(gw)
    status, headers, _ = raw("GET", f"{gw.url}/auth/v1", {"X-Storage-User": user,
                                                          "X-Storage-Pass": key})
    assert status == 200 and headers["x-storage-url"] == f"{gw.url}/v1/AUTH_loligo"
    assert headers["x-auth-token"].startswith("AUTH_tk")
    shown = subprocess.run([sys.executable, "-m", "cluster", "cluster", "info", "--conf",
                            str(gw.cluster.conf)], capture_output=True, text=True, timeout=60,
                           cwd=Path(__file__).resolve().parents[2])
    assert f"Swift:    {gw.url}/auth/v1.0  user {user}" in shown.stdout, shown.stderr
