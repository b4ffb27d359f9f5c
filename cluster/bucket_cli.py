"""`loligo bucket list|stats|rm`: gateway buckets from the command line, as `radosgw-admin
bucket ...` shows them (its JSON shape with `--format json`).

    loligo bucket list [--uid U]                 bucket names, every user's or one user's
    loligo bucket list --bucket B [--max-entries N]   the objects of B
    loligo bucket stats [--bucket B | --uid U]   owner, shards, versioning, objects and bytes
    loligo bucket rm --bucket B [--purge-objects]  remove it (with its objects, when asked)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar

from cluster.cli_common import add_command, common_options, emit, subparsers
from cluster.mon_cli import human_bytes
from gateway import errors as s3_errors
from gateway.buckets import Bucket
from gateway.context import Services
from gateway.daemon import build_services
from gateway.pools import open_pools
from gateway.version_listing import VersionListing
from gateway.versioning import NULL, split_version_key, vid_of
from rados_py import config as config_mod
from rados_py.errors import LoligoError, NotFound
from rados_py.rados import Rados

__all__ = ["register"]

T = TypeVar("T")
PAGE = 1000


class NoSuchBucket(NotFound):
    """One wording for a bucket that does not exist, whatever the command."""


def _run(args: argparse.Namespace, work: Callable[[Services], Awaitable[T]]) -> T:
    cfg = config_mod.load(config_mod.find_conf(getattr(args, "conf", None)), "client.admin")
    if getattr(args, "timeout", None):
        cfg = cfg.replace(rpc_timeout=args.timeout)

    async def go() -> T:
        async with Rados(cfg) as rados:
            pools = await open_pools(rados, cfg.gateway_pool_prefix, cfg.gateway_pool_pg_num)
            return await work(build_services(cfg, pools))
    return asyncio.run(go())


async def _bucket(svc: Services, name: str) -> Bucket:
    try:
        return await svc.buckets.get(name)
    except s3_errors.NoSuchBucket:
        raise NoSuchBucket(f"bucket '{name}' does not exist") from None


async def _names(svc: Services, uid: str | None) -> list[str]:
    owners = [uid] if uid else await svc.users.ids()
    if uid:
        await svc.users.get(uid)  # a clear error for an unknown user
    names: list[str] = []
    for owner in owners:
        names += [name for name, _ in await svc.buckets.list_for(owner)]
    return sorted(names)


def _iso(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + \
        f".{int(stamp % 1 * 1e6):06d}Z"


async def _stats(svc: Services, bucket: Bucket) -> dict[str, Any]:
    """radosgw-admin's `bucket stats` keys for one bucket."""
    usage = await svc.buckets.usage(bucket)
    main = {"size": usage.bytes, "size_actual": usage.bytes, "size_utilized": usage.bytes,
            "size_kb": -(-usage.bytes // 1024), "size_kb_actual": -(-usage.bytes // 1024),
            "size_kb_utilized": -(-usage.bytes // 1024), "num_objects": usage.objects}
    return {"bucket": bucket.name, "num_shards": bucket.shards, "tenant": "",
            "id": bucket.id, "marker": bucket.id, "owner": bucket.owner,
            "creation_time": _iso(bucket.created), "mtime": _iso(bucket.created),
            "versioning": bucket.versioning.lower() or "off", "acl": bucket.acl,
            "usage": {"rgw.main": main} if usage.objects else {}}


def _stats_table(data: list[dict[str, Any]]) -> str:
    rows = [["BUCKET", "OWNER", "OBJECTS", "SIZE", "SHARDS", "VERSIONING", "CREATED"]]
    for b in data:
        main = b["usage"].get("rgw.main", {})
        rows.append([b["bucket"], b["owner"], str(main.get("num_objects", 0)),
                     human_bytes(main.get("size", 0)), str(b["num_shards"]), b["versioning"],
                     b["creation_time"][:19].replace("T", " ")])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {2, 3, 4}
    return "\n".join("  ".join(c.rjust(w) if i in right else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                     for r in rows)


def cmd_list(args: argparse.Namespace) -> int:
    if args.bucket:
        async def objects(svc: Services) -> list[dict[str, Any]]:
            bucket = await _bucket(svc, args.bucket)
            out: list[dict[str, Any]] = []
            marker = b""
            while len(out) < args.max_entries:
                listing = await svc.buckets.list(bucket, marker=marker,
                                                 max_keys=min(PAGE, args.max_entries - len(out)))
                for key, raw in listing.entries:
                    entry = json.loads(raw)
                    out.append({"name": key.decode("utf-8", "backslashreplace"),
                                "size": entry.get("size", 0), "mtime": _iso(entry["mtime"]),
                                "etag": entry.get("etag", "")})
                if not listing.truncated:
                    break
                marker = listing.next_marker
            return out
        found = _run(args, objects)
        return emit(args, found, lambda rows: "\n".join(
            f"{r['name']}  {r['size']}  {r['mtime'][:19].replace('T', ' ')}" for r in rows))
    names = _run(args, lambda svc: _names(svc, args.uid))
    return emit(args, names, lambda d: "\n".join(d))


def cmd_stats(args: argparse.Namespace) -> int:
    async def work(svc: Services) -> Any:
        if args.bucket:
            return await _stats(svc, await _bucket(svc, args.bucket))
        return [await _stats(svc, await svc.buckets.get(name))
                for name in await _names(svc, args.uid)]
    data = _run(args, work)
    return emit(args, data, lambda d: _stats_table(d if isinstance(d, list) else [d]))


@dataclass
class _Purge:
    objects: int = 0
    versions: int = 0
    uploads: int = 0
    shown: float = 0.0

    def progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.shown > 2.0:
            print(f"  purging: {self.objects} objects, {self.versions} versions removed",
                  file=sys.stderr, flush=True)
            self.shown = now


async def _purge(svc: Services, bucket: Bucket, purge: _Purge) -> None:
    from gateway.s3_multipart import abort_all

    versions = VersionListing(svc.buckets)
    while True:  # every version and delete marker (a plain bucket's objects are version null)
        listing = await versions.list(bucket, prefix=b"", key_marker=b"", vid_marker="",
                                      delimiter=b"", max_keys=PAGE)
        for raw, value in listing.entries:
            key, suffix = split_version_key(raw)
            vid = json.loads(value).get("vid") or vid_of(suffix)
            await svc.objects.delete_version(bucket, key, vid or NULL)
            if not vid:  # an object written while versioning never was on
                purge.objects += 1
            else:
                purge.versions += 1
            purge.progress()
        if not listing.entries:
            break
    while True:
        listing = await svc.buckets.list(bucket, max_keys=PAGE)
        for key, _ in listing.entries:
            await svc.objects.delete(bucket, key)
            purge.objects += 1
            purge.progress()
        if not listing.truncated:
            break
    # the multipart uploads in progress die with the bucket (abort_all only reads .svc)
    purge.uploads = await abort_all(SimpleNamespace(svc=svc), bucket)  # type: ignore[arg-type]


def cmd_rm(args: argparse.Namespace) -> int:
    purge = _Purge()

    async def work(svc: Services) -> None:
        bucket = await _bucket(svc, args.bucket)
        if args.purge_objects:
            await _purge(svc, bucket, purge)
            purge.progress(force=True)
        try:
            await svc.buckets.delete(bucket)
        except s3_errors.BucketNotEmpty:
            raise LoligoError(f"bucket '{args.bucket}' is not empty: remove its objects "
                              "first, or give --purge-objects") from None
    _run(args, work)
    extra = (f" and {purge.objects} objects, {purge.versions} versions, {purge.uploads} "
             "unfinished uploads (their data goes to the gateway's GC)"
             if args.purge_objects else "")
    print(f"removed bucket {args.bucket}{extra}")
    return 0


def register(sub: Any) -> None:
    common = common_options()
    bucket = sub.add_parser("bucket", help="gateway buckets: list, stats, rm (radosgw-admin)",
                            description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    bsub = subparsers(bucket, "bucket_command")
    p = add_command(bsub, "list", cmd_list, "bucket names, or with --bucket its objects",
                    common, fmt=True)
    p.add_argument("--uid", help="only this user's buckets")
    p.add_argument("--bucket", help="list this bucket's objects")
    p.add_argument("--max-entries", type=int, default=1000,
                   help="with --bucket: at most this many objects (default 1000)")
    p = add_command(bsub, "stats", cmd_stats, "owner, objects and bytes of buckets", common,
                    fmt=True)
    who = p.add_mutually_exclusive_group()
    who.add_argument("--bucket", help="one bucket (default: every bucket)")
    who.add_argument("--uid", help="the buckets of one user")
    p = add_command(bsub, "rm", cmd_rm, "remove a bucket", common)
    p.add_argument("--bucket", required=True)
    p.add_argument("--purge-objects", action="store_true",
                   help="remove its objects and versions first (their data is freed by the "
                   "gateway's GC)")
