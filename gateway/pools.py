"""The RADOS pools the gateway keeps its state in, created on first use (as RGW does):

    <prefix>.users   users, their S3 and Swift keys (and the key -> user indexes)
    <prefix>.meta    bucket entries, each user's bucket list, multipart uploads, the GC list
    <prefix>.index   bucket index shards: one omap entry per object
    <prefix>.data    object data: heads and striped tails
"""

from __future__ import annotations

from dataclasses import dataclass

from rados_py.monclient import EEXIST, CommandRefused
from rados_py.rados import IoCtx, Rados

KINDS = ("users", "meta", "index", "data")


@dataclass(frozen=True)
class Pools:
    users: IoCtx
    meta: IoCtx
    index: IoCtx
    data: IoCtx


def pool_size(rados: Rados, wanted: int = 0) -> int:
    """`wanted`, else the cluster default bounded by the OSDs there are (a 1-OSD test
    cluster gets 1 replica instead of writes that can never be acknowledged)."""
    if wanted:
        return wanted
    osds = len(rados.osdmap.osds)
    return max(1, min(rados.config.osd_pool_default_size, osds or 1))


async def open_pools(rados: Rados, prefix: str, pg_num: int = 16, size: int = 0) -> Pools:
    """Open (creating the missing ones) the gateway's pools."""
    existing = set(await rados.pool_list())
    for kind in KINDS:
        name = f"{prefix}.{kind}"
        if name not in existing:
            try:
                await rados.pool_create(name, pg_num=pg_num, size=pool_size(rados, size))
            except CommandRefused as exc:
                if exc.code != -EEXIST:  # another gateway (or admin command) won the race
                    raise
    return Pools(*[await rados.open_ioctx(f"{prefix}.{kind}") for kind in KINDS])
