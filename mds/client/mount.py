"""`loligo fs mount MOUNTPOINT`: the mount process (FUSE over /dev/fuse, on asyncio).

It connects to the cluster, opens a session with the active MDS, mounts, and serves the
kernel until unmounted (`loligo fs umount`, `fusermount3 -u`, `umount`) or told to stop
(SIGTERM/SIGINT: buffered writes are written out, then it unmounts). A mount whose process
was killed is still unmounted cleanly with `loligo fs umount` (or `fusermount3 -u`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
from pathlib import Path

from mds.client import fuse_kernel
from mds.client.files import DataIO
from mds.client.fuse_kernel import FuseSession
from mds.client.fuse_ops import LoligoFs
from mds.client.mdsclient import MdsClient
from rados_py.config import Config
from rados_py.rados import IoCtx, Rados

log = logging.getLogger(__name__)


def is_mounted(mountpoint: str | Path) -> bool:
    target = os.path.realpath(mountpoint)
    with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
        return any(line.split()[1] == target and line.split()[0] == "loligo" for line in f)


def unmount(mountpoint: str | Path) -> None:
    """Unmount (also a mount whose process died: the kernel then answers ENOTCONN)."""
    for argv in (["fusermount3", "-u", str(mountpoint)], ["umount", str(mountpoint)],
                 ["fusermount3", "-u", "-z", str(mountpoint)]):
        with contextlib.suppress(FileNotFoundError):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode == 0 or not is_mounted(mountpoint):
                return
    if is_mounted(mountpoint):
        raise OSError(f"could not unmount {mountpoint}: is it busy (lsof {mountpoint})?")


def stats(ops: LoligoFs) -> dict[str, object]:
    """What this mount did: kernel requests by kind, MDS requests and stream messages,
    requests answered here (`loligo fs mount` logs it at exit and on SIGUSR1)."""
    names = {v: k for k, v in vars(fuse_kernel).items()
             if (k.isupper() and isinstance(v, int) and 0 < v < 64 and "_" not in k)
             or (k in ("BATCH_FORGET",) and isinstance(v, int))}
    session = ops.session
    return {"fuse": {names.get(op, str(op)): n for op, n in sorted(session.counts.items())}
            if session is not None else {},
            "mds_requests": ops.mds.sent, "mds_messages_out": ops.mds.messages_out,
            "mds_messages_in": ops.mds.messages_in, "answered_here": ops.local_ops,
            "reconnects": ops.mds.reconnects}


async def serve(config: Config, mountpoint: str, fs_name: str | None,
                ready: asyncio.Event | None = None) -> None:
    rados = Rados(config)
    await rados.connect()
    mds = MdsClient(rados, fs_name, os.path.realpath(mountpoint))
    try:
        fs = await mds.start()
        data = DataIO(IoCtx(rados, fs.data_pool))
        ops = LoligoFs(mds, data, config)
        session = ops.session = FuseSession(ops, mountpoint)
        session.mount()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, session.stop)
        loop.add_signal_handler(signal.SIGUSR1, lambda: log.info("stats %s",
                                                                 json.dumps(stats(ops))))
        log.info("mounted file system %r on %s (client %s)", fs.name, mountpoint,
                 mds.client_id)
        if ready is not None:
            ready.set()
        try:
            await session.serve()
        finally:
            with contextlib.suppress(Exception):
                await ops.flush_all()
            log.info("stats %s", json.dumps(stats(ops)))
            if is_mounted(mountpoint):
                with contextlib.suppress(OSError):
                    unmount(mountpoint)
    finally:
        await mds.close()
        await rados.close()
