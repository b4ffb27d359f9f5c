"""A bucket of 100,000 objects listed through boto3 on a real cluster and gateway: every key
comes back once, in order, with prefixes and delimiters too, and a page late in the bucket
costs what an early one does (listing pages through the sharded index, it never scans).

The index is filled in-process through the store layer (one object PUT over HTTP gives the
entry every other key copies, batches of entries then go straight into the index shards with
their counts), since 100,000 HTTP PUTs would take many minutes on a small machine."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from swiftclient import client as sc

from gateway.bucket_stats import STATS, Usage
from gateway.buckets import BucketStore
from gateway.pools import open_pools
from rados_py.rados import ObjectOp, Rados
from tests.integration.gateway_fixture import GatewayProcess, running_gateway

pytestmark = pytest.mark.slow
DIRS = 100
PER_DIR = 1000
TOTAL = DIRS * PER_DIR
BATCH = 2000
WINDOW = 10  # pages compared at each end of the listing


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path_factory.mktemp("large") / "cluster") as g:
        yield g


def key_of(i: int) -> str:
    return f"dir{i % DIRS:03d}/obj{i // DIRS:06d}"


def fill(gw: GatewayProcess, bucket: str, template: bytes) -> None:
    """Index entries for every key (copies of `template`), and each shard's counts."""
    async def go() -> None:
        async with Rados(gw.cluster.config) as rados:
            store = BucketStore(await open_pools(rados, ".loligo.gw"))
            b = await store.get(bucket)
            shards: list[dict[bytes, bytes]] = [{} for _ in range(b.shards)]
            for i in range(TOTAL):
                raw = key_of(i).encode()
                shards[b.shard_of(raw)][raw] = template
            size = json.loads(template)["size"]
            writes = []
            for n, entries in enumerate(shards):
                items = list(entries.items())
                for lo in range(0, len(items), BATCH):
                    writes.append((b.shard_oid(n), ObjectOp().omap_set(dict(items[lo:lo + BATCH]))))
                counts = Usage(len(items), len(items) * size)
                writes.append((b.shard_oid(n), ObjectOp().omap_set({STATS: counts.encode()})))
            sem = asyncio.Semaphore(4)

            async def write(oid: str, op: ObjectOp) -> None:
                async with sem:
                    await store.index.operate(oid, op)
            await asyncio.gather(*(write(oid, op) for oid, op in writes))
    asyncio.run(go())


def template_entry(gw: GatewayProcess, bucket: str, key: str) -> bytes:
    async def go() -> bytes:
        async with Rados(gw.cluster.config) as rados:
            store = BucketStore(await open_pools(rados, ".loligo.gw"))
            b = await store.get(bucket)
            entry = await store.entry(b, key.encode())
            assert entry is not None
            return json.dumps(entry).encode()
    return asyncio.run(go())


def timed_pages(s3: Any, **kwargs: Any) -> tuple[list[str], list[str], list[float]]:
    """(keys, common prefixes, seconds per page) of a whole listing."""
    keys: list[str] = []
    prefixes: list[str] = []
    times: list[float] = []
    token: dict[str, str] = {}
    for _ in range(TOTAL // 1000 + 10):  # bounded: a listing that never ends fails
        start = time.perf_counter()
        page = s3.list_objects_v2(MaxKeys=1000, **kwargs, **token)
        times.append(time.perf_counter() - start)
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            return keys, prefixes, times
        token = {"ContinuationToken": page["NextContinuationToken"]}
    raise AssertionError(f"listing did not end after {len(times)} pages")


def test_list_100k_objects_pages_in_constant_time(gw: GatewayProcess) -> None:
    key = gw.user["keys"][0]
    s3 = boto3.client("s3", endpoint_url=gw.url, aws_access_key_id=key["access_key"],
                      aws_secret_access_key=key["secret_key"], region_name="us-east-1",
                      config=BotoConfig(retries={"max_attempts": 1}))
    bucket = f"large-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key_of(0), Body=b"0123456789")
    start = time.perf_counter()
    fill(gw, bucket, template_entry(gw, bucket, key_of(0)))
    filled = time.perf_counter() - start

    keys, _, times = timed_pages(s3, Bucket=bucket)
    assert keys == sorted(key_of(i) for i in range(TOTAL))
    first, last = statistics.mean(times[:WINDOW]), statistics.mean(times[-WINDOW:])
    print(f"\nfilled {TOTAL} index entries in {filled:.1f} s; listed {len(times)} pages in "
          f"{sum(times):.1f} s: first {WINDOW} pages {first * 1000:.0f} ms/page, last {WINDOW} "
          f"{last * 1000:.0f} ms/page, slowest {max(times) * 1000:.0f} ms")
    assert last <= 3 * first, (first, last)

    one_dir, prefixes, dir_times = timed_pages(s3, Bucket=bucket, Prefix="dir042/",
                                               Delimiter="/")
    assert one_dir == [f"dir042/obj{i:06d}" for i in range(PER_DIR)] and not prefixes
    _, top, top_times = timed_pages(s3, Bucket=bucket, Delimiter="/")
    assert top == [f"dir{d:03d}/" for d in range(DIRS)]
    print(f"prefix dir042/ + delimiter: {len(one_dir)} keys in {sum(dir_times) * 1000:.0f} ms; "
          f"delimiter only: {len(top)} common prefixes in {sum(top_times) * 1000:.0f} ms")

    swift_key = gw.user["swift_keys"][0]

    head = sc.Connection(f"{gw.url}/auth/v1.0", swift_key["user"], swift_key["secret_key"],
                         retries=0).head_container(bucket)
    assert int(head["x-container-object-count"]) == TOTAL
    assert int(head["x-container-bytes-used"]) == TOTAL * 10
