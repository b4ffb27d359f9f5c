"""An OSD's space, as it reports it in beacons: its own store's bytes, its size, and the file
system under it, so that several OSDs on one disk (every local cluster) count that disk once.

An OSD's size is `osd_capacity` when set (Ceph's device size), else its file system's size;
what it can still use is the smaller of its size less its own use and what the file system has
free (other OSDs and files share it).
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from osd.objectstore_api import ObjectStore
from rados_py.errors import LoligoError
from rados_py.proto.loligo import mon_pb2

__all__ = ["DEFAULT_WEIGHT", "filesystem", "osd_usage"]

#: what an OSD without osd_capacity tells the monitors at its first boot: CRUSH weight 1.0, the
#: same for every such OSD (OSDs sharing a disk must not get the disk's size each, and a small
#: test disk must not starve its OSD of PGs)
DEFAULT_WEIGHT = 1 << 40
STORE_FILES = ("meta.db", "meta.db-wal")  # the store's metadata, beside the object data


def filesystem(path: Path) -> tuple[str, int, int]:
    """(id, total bytes, bytes free to unprivileged users) of the file system holding `path`;
    the id names host and device, so OSDs of different hosts never share one."""
    fs = os.statvfs(path)
    device = os.stat(path).st_dev
    return (f"{socket.gethostname()}:{device}", fs.f_blocks * fs.f_frsize,
            fs.f_bavail * fs.f_frsize)


async def osd_usage(store: ObjectStore, data_dir: Path, capacity: int) -> mon_pb2.OsdUsage:
    """What the OSD whose store is `store` (in `data_dir`) uses and may still use."""
    used = 0
    for coll in await store.list_collections():
        with contextlib.suppress(LoligoError):  # removed while we count
            used += (await store.coll_stats(coll))[1]
    for name in STORE_FILES:
        with contextlib.suppress(OSError):
            used += (data_dir / "store" / name).stat().st_size
    fs_id, fs_total, fs_avail = filesystem(data_dir)
    total = min(capacity, fs_total) if capacity else fs_total
    avail = max(0, min(total - used, fs_avail))
    return mon_pb2.OsdUsage(used_bytes=used, avail_bytes=avail, total_bytes=total, fs_id=fs_id,
                            fs_total_bytes=fs_total, fs_avail_bytes=fs_avail)
