"""Bucket lifecycle with a real gateway whose "day" is 2 seconds: expiration by prefix, tags
and size, noncurrent versions, expired delete markers and unfinished uploads go when due - and
nothing that a rule does not select is ever touched, also when it changes while the worker
looks at it.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.breadth_fixture import LC_DAY, Breadth, error_of, new_name
from tests.waiting import wait_for

pytestmark = pytest.mark.slow


def keys(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects(Bucket=bucket).get("Contents", []))


def test_rules_round_trip_and_are_checked(breadth: Breadth) -> None:
    s3 = breadth.client()
    bucket = new_name()
    s3.create_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as err:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_of(err.value) == (404, "NoSuchLifecycleConfiguration")
    rules = [{"ID": "logs", "Filter": {"And": {"Prefix": "logs/", "Tags": [
        {"Key": "keep", "Value": "no"}]}}, "Status": "Enabled", "Expiration": {"Days": 30}},
             {"ID": "old", "Filter": {"Prefix": ""}, "Status": "Disabled",
              "NoncurrentVersionExpiration": {"NoncurrentDays": 7}},
             {"ID": "mp", "Filter": {"Prefix": "up/"}, "Status": "Enabled",
              "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}}]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={
        "Rules": rules})
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [r["ID"] for r in got] == ["logs", "old", "mp"]
    assert got[0]["Filter"]["And"]["Tags"] == [{"Key": "keep", "Value": "no"}]
    assert got[1]["Status"] == "Disabled"
    for bad, code in (({"ID": "x" * 256, "Filter": {}, "Status": "Enabled",
                        "Expiration": {"Days": 1}}, "InvalidArgument"),
                      ({"ID": "d", "Filter": {}, "Status": "Enabled",
                        "Expiration": {"Days": 0}}, "InvalidArgument"),
                      ({"ID": "d", "Filter": {}, "Status": "enabled",
                        "Expiration": {"Days": 1}}, "MalformedXML")):
        with pytest.raises(ClientError) as err:
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={
                "Rules": [bad]})
        assert error_of(err.value) == (400, code)
    s3.delete_bucket_lifecycle(Bucket=bucket)
    with pytest.raises(ClientError):
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)


def test_expiration_takes_what_matches_and_nothing_else(breadth: Breadth) -> None:
    s3 = breadth.client()
    bucket = new_name()
    s3.create_bucket(Bucket=bucket)
    objects = {"tmp/a": b"1", "tmp/big": b"x" * 5000, "tmp/tagged": b"2", "keep/a": b"3",
               "tmpx": b"4"}
    for k, v in objects.items():
        s3.put_object(Bucket=bucket, Key=k, Body=v)
    s3.put_object_tagging(Bucket=bucket, Key="tmp/tagged", Tagging={"TagSet": [
        {"Key": "hold", "Value": "yes"}]})
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "tmp", "Filter": {"And": {"Prefix": "tmp/", "ObjectSizeLessThan": 1000}},
         "Status": "Enabled", "Expiration": {"Days": 1}},
        {"ID": "off", "Filter": {"Prefix": "keep/"}, "Status": "Disabled",
         "Expiration": {"Days": 1}}]})
    head = s3.head_object(Bucket=bucket, Key="tmp/a")
    assert 'rule-id="tmp"' in head["ResponseMetadata"]["HTTPHeaders"]["x-amz-expiration"]
    # tmp/tagged leaves the rule's reach by being rewritten bigger before it is due
    s3.put_object(Bucket=bucket, Key="tmp/tagged", Body=b"y" * 2000)
    wait_for(lambda: "tmp/a" not in keys(s3, bucket), 10 * LC_DAY, "tmp/a expired")
    start = time.monotonic()
    wait_for(lambda: time.monotonic() - start > 3 * LC_DAY, 10 * LC_DAY, "three more days")
    assert keys(s3, bucket) == ["keep/a", "tmp/big", "tmp/tagged", "tmpx"]
    assert s3.get_object(Bucket=bucket, Key="tmp/tagged")["Body"].read() == b"y" * 2000


def test_versioned_bucket_markers_noncurrent_and_uploads(breadth: Breadth) -> None:
    s3 = breadth.client()
    bucket = new_name()
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"v1", b"v2", b"v3"):
        s3.put_object(Bucket=bucket, Key="doc", Body=body)
    s3.put_object(Bucket=bucket, Key="gone", Body=b"g")
    s3.delete_object(Bucket=bucket, Key="gone")  # a marker on top of one version
    upload = s3.create_multipart_upload(Bucket=bucket, Key="up/file")["UploadId"]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "noncurrent", "Filter": {"Prefix": "doc"}, "Status": "Enabled",
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 1}},
        {"ID": "markers", "Filter": {"Prefix": "gone"}, "Status": "Enabled",
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
        {"ID": "uploads", "Filter": {"Prefix": "up/"}, "Status": "Enabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]})

    etags = {f'"{hashlib.md5(body).hexdigest()}"': body for body in (b"v1", b"v2", b"v3")}

    def state() -> tuple[list[bytes], int, int]:
        v = s3.list_object_versions(Bucket=bucket)
        docs = [etags[x["ETag"]] for x in v.get("Versions", []) if x["Key"] == "doc"]
        gone = len([x for x in v.get("Versions", []) + v.get("DeleteMarkers", [])
                    if x["Key"] == "gone"])
        return docs, gone, len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))
    # v1 goes (v2 is kept as the newest noncurrent one), gone's old version and then its
    # lone marker go, the upload is aborted
    wait_for(lambda: state() == ([b"v3", b"v2"], 0, 0), 20 * LC_DAY, "lifecycle done")
    with pytest.raises(ClientError) as err:
        s3.list_parts(Bucket=bucket, Key="up/file", UploadId=upload)
    assert error_of(err.value)[1] == "NoSuchUpload"
    assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"v3"
