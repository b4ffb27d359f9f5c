"""S3 Object Lock with boto3: a locked version survives every delete path (DELETE of the
version, DeleteObjects, lifecycle, a plain DELETE that only adds a marker), even by its owner,
until its date; governance gives way only to who asks to bypass it; legal hold to nobody.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from tests.integration.breadth_fixture import LC_DAY, Breadth, error_of, new_name
from tests.waiting import wait_for

pytestmark = pytest.mark.slow


def test_configuration_needs_a_versioned_bucket_and_stays_versioned(breadth: Breadth) -> None:
    s3 = breadth.client()
    plain, locked = new_name(), new_name()
    s3.create_bucket(Bucket=plain)
    conf = {"ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}
    with pytest.raises(ClientError) as err:
        s3.put_object_lock_configuration(Bucket=plain, ObjectLockConfiguration=conf)
    assert error_of(err.value) == (409, "InvalidBucketState")
    with pytest.raises(ClientError) as err:
        s3.get_object_lock_configuration(Bucket=plain)
    assert error_of(err.value) == (404, "ObjectLockConfigurationNotFoundError")
    s3.put_object(Bucket=plain, Key="k", Body=b"v")
    for call in (lambda: s3.get_object_retention(Bucket=plain, Key="k"),
                 lambda: s3.put_object_legal_hold(Bucket=plain, Key="k",
                                                  LegalHold={"Status": "ON"}),
                 lambda: s3.put_object(Bucket=plain, Key="k2", Body=b"",
                                       ObjectLockLegalHoldStatus="ON")):
        with pytest.raises(ClientError) as err:
            call()
        assert error_of(err.value) == (400, "InvalidRequest")

    s3.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"
    s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration=conf)
    assert s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"] == conf
    with pytest.raises(ClientError) as err:
        s3.put_bucket_versioning(Bucket=locked, VersioningConfiguration={"Status": "Suspended"})
    assert error_of(err.value) == (409, "InvalidBucketState")
    for bad, code in (({"Mode": "governance", "Days": 1}, "MalformedXML"),
                      ({"Mode": "GOVERNANCE", "Days": 1, "Years": 1}, "MalformedXML"),
                      ({"Mode": "GOVERNANCE", "Days": 0}, "InvalidRetentionPeriod")):
        with pytest.raises(ClientError) as err:
            s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": bad}})
        assert error_of(err.value) == (400, code)
    # the default retention applies to new versions
    vid = s3.put_object(Bucket=locked, Key="d", Body=b"x")["VersionId"]
    head = s3.head_object(Bucket=locked, Key="d")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    left = head["ObjectLockRetainUntilDate"] - datetime.now(UTC)
    assert timedelta(hours=23) < left <= timedelta(days=1)
    with pytest.raises(ClientError) as err:
        s3.delete_object(Bucket=locked, Key="d", VersionId=vid)
    assert error_of(err.value) == (403, "AccessDenied")
    s3.delete_object(Bucket=locked, Key="d", VersionId=vid, BypassGovernanceRetention=True)


def test_a_locked_version_survives_every_delete_path(breadth: Breadth) -> None:
    s3, alt = breadth.client(), breadth.client("alt")
    bucket = new_name()
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    until = datetime.now(UTC) + timedelta(days=30)
    kept = s3.put_object(Bucket=bucket, Key="compliance", Body=b"kept", ObjectLockMode=
                         "COMPLIANCE", ObjectLockRetainUntilDate=until)["VersionId"]
    gov = s3.put_object(Bucket=bucket, Key="governance", Body=b"gov")["VersionId"]
    s3.put_object_retention(Bucket=bucket, Key="governance", Retention={
        "Mode": "GOVERNANCE", "RetainUntilDate": until})
    held = s3.put_object(Bucket=bucket, Key="held", Body=b"held",
                         ObjectLockLegalHoldStatus="ON")["VersionId"]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ObjectLockMode="GOVERNANCE",
                                    ObjectLockRetainUntilDate=until)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1,
                          Body=b"m" * 100)["ETag"]
    mp = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag}]})["VersionId"]
    versions = {"compliance": kept, "governance": gov, "held": held, "mp": mp}
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "all", "Filter": {"Prefix": ""}, "Status": "Enabled", "Expiration": {"Days": 1},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]})
    for key, vid in versions.items():
        with pytest.raises(ClientError) as err:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=vid)
        assert error_of(err.value) == (403, "AccessDenied"), key
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": k, "VersionId": v} for k, v in versions.items()]})
    assert sorted(e["Key"] for e in result["Errors"]) == sorted(versions)
    assert {e["Code"] for e in result["Errors"]} == {"AccessDenied"}
    # bypass works for governance only, and only for who may bypass
    for key in ("compliance", "held"):
        with pytest.raises(ClientError) as err:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=versions[key],
                             BypassGovernanceRetention=True)
        assert error_of(err.value)[0] == 403
    # retention can be lengthened, not shortened; compliance cannot be weakened at all
    with pytest.raises(ClientError) as err:
        s3.put_object_retention(Bucket=bucket, Key="compliance", Retention={
            "Mode": "GOVERNANCE", "RetainUntilDate": until}, BypassGovernanceRetention=True)
    assert error_of(err.value) == (403, "AccessDenied")
    with pytest.raises(ClientError) as err:
        s3.put_object_retention(Bucket=bucket, Key="governance", Retention={
            "Mode": "GOVERNANCE", "RetainUntilDate": until - timedelta(days=1)})
    assert error_of(err.value) == (403, "AccessDenied")
    later = until + timedelta(days=1)
    s3.put_object_retention(Bucket=bucket, Key="compliance", Retention={
        "Mode": "COMPLIANCE", "RetainUntilDate": later})
    got = s3.get_object_retention(Bucket=bucket, Key="compliance")["Retention"]
    assert got["Mode"] == "COMPLIANCE" and abs(
        (got["RetainUntilDate"] - later).total_seconds()) < 1
    with pytest.raises(ClientError) as err:
        alt.delete_object(Bucket=bucket, Key="governance", VersionId=gov,
                          BypassGovernanceRetention=True)
    assert error_of(err.value)[0] == 403
    # lifecycle passes by: plain deletes only put markers on top, the versions stay
    start = time.monotonic()
    wait_for(lambda: time.monotonic() - start > 4 * LC_DAY, 10 * LC_DAY, "four days")
    for key, vid in versions.items():
        assert s3.head_object(Bucket=bucket, Key=key, VersionId=vid)["ContentLength"] > 0
    assert s3.get_object_legal_hold(Bucket=bucket, Key="held", VersionId=held)[
        "LegalHold"] == {"Status": "ON"}
    # governance gives way to a bypass; a lifted hold lets the version go
    s3.delete_object(Bucket=bucket, Key="governance", VersionId=gov,
                     BypassGovernanceRetention=True)
    s3.put_object_legal_hold(Bucket=bucket, Key="held", VersionId=held,
                             LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket=bucket, Key="held", VersionId=held)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="held", VersionId=held)
