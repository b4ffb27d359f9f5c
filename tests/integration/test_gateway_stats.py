"""Bucket counts (objects, bytes) kept by the index shards, against a real cluster and gateway:
exact after concurrent PUTs, overwrites and deletes of the same and of different keys through
S3 and Swift, in versioned buckets, and for a bucket whose shards predate the counts."""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from swiftclient import client as sc
from swiftclient.exceptions import ClientException

from gateway.bucket_stats import STATS
from gateway.buckets import BucketStore
from gateway.pools import open_pools
from rados_py.rados import Rados
from tests.integration.gateway_fixture import GatewayProcess, running_gateway

pytestmark = pytest.mark.slow
WORKERS = 8


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path_factory.mktemp("stats") / "cluster") as g:
        yield g


def s3_client(gw: GatewayProcess) -> Any:
    key = gw.user["keys"][0]
    return boto3.client("s3", endpoint_url=gw.url, aws_access_key_id=key["access_key"],
                        aws_secret_access_key=key["secret_key"], region_name="us-east-1",
                        config=BotoConfig(retries={"max_attempts": 1},
                                          max_pool_connections=WORKERS))


def swift(gw: GatewayProcess) -> sc.Connection:
    key = gw.user["swift_keys"][0]
    return sc.Connection(f"{gw.url}/auth/v1.0", key["user"], key["secret_key"], retries=0)


def listed(s3: Any, bucket: str) -> tuple[int, int]:
    """(objects, bytes) as a full listing shows them: the truth the counts must match."""
    count = size = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            count += 1
            size += obj["Size"]
    return count, size


def counted(sw: sc.Connection, container: str) -> tuple[int, int]:
    head = sw.head_container(container)
    return int(head["x-container-object-count"]), int(head["x-container-bytes-used"])


def run_all(jobs: list[Callable[[], Any]]) -> None:
    with ThreadPoolExecutor(WORKERS) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()


def mixed_jobs(put: Callable[[str, bytes], Any], delete: Callable[[str], Any],
               seed: int) -> list[Callable[[], Any]]:
    """PUTs of one hot key and of 12 others (each written several times with other sizes),
    and deletes among them, shuffled so they race."""
    rnd = random.Random(seed)
    jobs: list[Callable[[], Any]] = []
    for i in range(40):
        key = "hot" if i % 3 == 0 else f"k{i % 12}"
        body = b"x" * rnd.randrange(0, 5000)
        jobs.append(lambda k=key, b=body: put(k, b))
    for i in range(12):
        key = "hot" if i % 4 == 0 else f"k{rnd.randrange(12)}"
        jobs.append(lambda k=key: delete(k))
    rnd.shuffle(jobs)
    return jobs


def test_counts_exact_after_concurrent_s3_writes(gw: GatewayProcess) -> None:
    s3, sw = s3_client(gw), swift(gw)
    bucket = f"stats-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    assert counted(sw, bucket) == (0, 0)
    run_all(mixed_jobs(lambda k, b: s3.put_object(Bucket=bucket, Key=k, Body=b),
                       lambda k: s3.delete_object(Bucket=bucket, Key=k), seed=1))
    truth = listed(s3, bucket)
    assert truth[0] > 0 and counted(sw, bucket) == truth
    account = sw.head_account()
    assert int(account["x-account-object-count"]) >= truth[0]
    row = next(c for c in sw.get_account()[1] if c["name"] == bucket)
    assert (row["count"], row["bytes"]) == truth
    run_all([lambda k=k: s3.delete_object(Bucket=bucket, Key=k)
             for k in ["hot"] + [f"k{i}" for i in range(12)]])
    assert counted(sw, bucket) == (0, 0) == listed(s3, bucket)
    s3.delete_bucket(Bucket=bucket)


def test_counts_exact_after_concurrent_swift_writes(gw: GatewayProcess) -> None:
    local = threading.local()  # a Connection is not thread-safe: one per worker

    def mine() -> sc.Connection:
        if not hasattr(local, "conn"):
            local.conn = swift(gw)
        return local.conn

    def delete(key: str) -> None:
        try:
            mine().delete_object(container, key)
        except ClientException as exc:
            assert exc.http_status == 404  # a race lost to another delete
    sw = swift(gw)
    container = f"stats-{uuid.uuid4().hex[:8]}"
    sw.put_container(container)
    run_all(mixed_jobs(lambda k, b: mine().put_object(container, k, b), delete, seed=2))
    rows = sw.get_container(container, full_listing=True)[1]
    truth = (len(rows), sum(r["bytes"] for r in rows))
    assert truth[0] > 0 and counted(sw, container) == truth


def test_counts_in_a_versioned_bucket_follow_current_objects(gw: GatewayProcess) -> None:
    s3, sw = s3_client(gw), swift(gw)
    bucket = f"stats-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="before", Body=b"12345")  # becomes the null version
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    run_all(mixed_jobs(lambda k, b: s3.put_object(Bucket=bucket, Key=k, Body=b),
                       lambda k: s3.delete_object(Bucket=bucket, Key=k), seed=3))
    assert counted(sw, bucket) == listed(s3, bucket)
    # removing the delete marker on top brings the version under it back
    versions = s3.list_object_versions(Bucket=bucket)
    marker = next((m for m in versions.get("DeleteMarkers", []) if m["IsLatest"]), None)
    if marker is not None:
        s3.delete_object(Bucket=bucket, Key=marker["Key"], VersionId=marker["VersionId"])
    s3.delete_object(Bucket=bucket, Key="before")
    assert counted(sw, bucket) == listed(s3, bucket)


def test_shards_without_counts_are_counted_once_then_kept(gw: GatewayProcess) -> None:
    s3, sw = s3_client(gw), swift(gw)
    bucket = f"stats-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    for i in range(30):
        s3.put_object(Bucket=bucket, Key=f"o{i}", Body=b"y" * i)

    async def drop_counts() -> int:  # as a bucket created before counts existed
        async with Rados(gw.cluster.config) as rados:
            store = BucketStore(await open_pools(rados, ".loligo.gw"))
            b = await store.get(bucket)
            for n in range(b.shards):
                await store.index.omap_rm(b.shard_oid(n), [STATS])
            s3.put_object(Bucket=bucket, Key="o0", Body=b"zz")  # writers leave them absent
            return sum([STATS in await store.index.omap_get(b.shard_oid(n), [STATS])
                        for n in range(b.shards)])
    assert asyncio.run(drop_counts()) == 0
    truth = listed(s3, bucket)
    assert truth == (30, sum(range(30)) + 2)
    assert counted(sw, bucket) == truth
    s3.put_object(Bucket=bucket, Key="new", Body=b"abc")
    s3.delete_object(Bucket=bucket, Key="o29")
    assert counted(sw, bucket) == (30, truth[1] + 3 - 29) == listed(s3, bucket)
