"""What every daemon process does around its own work: one log file named after the daemon,
a pid file while it serves, SIGTERM/SIGINT for a clean stop (Swift's daemon base; each daemon
keeps a tiny `main`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from rados_py import memory
from rados_py.config import Config

log = logging.getLogger(__name__)


class Daemon(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def setup_logging(config: Config, name: str) -> None:
    """Every line of this process to <log_dir>/<name>.log, each carrying the daemon's name."""
    log_dir = Path(config.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_dir / f"{name}.log")
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log_level)


async def serve(daemon: Daemon, config: Config, name: str) -> int:
    """Start `daemon`, write its pid file once it serves, stop it on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pid_file = Path(config.run_dir) / f"{name}.pid"
    try:
        await daemon.start()
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{os.getpid()}\n")
        await stop.wait()
    finally:
        await daemon.stop()
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
    return 0


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (a cheaper loop for everything that is not
    grpc's own machinery), else asyncio's."""
    if os.environ.get("LOLIGO_EVENT_LOOP") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _raise_fd_limit() -> None:
    """As many open files as the system lets us (Ceph raises its own limit too): every client
    connection is one, and running out would refuse new clients, not only the idle ones."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, want, exc)


def run(daemon_factory, config: Config, name: str) -> int:
    """The whole life of a daemon process: logging, serve until told to stop, a logged crash.

    SIGPIPE stays ignored (Python's default): a peer that closes its end must cost that one
    connection an EPIPE, never the daemon its life."""
    setup_logging(config, name)
    memory.tune()
    if signal.getsignal(signal.SIGPIPE) == signal.SIG_DFL:
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    _raise_fd_limit()
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(serve(daemon_factory(), config, name))
    except Exception:
        log.exception("%s failed", name)
        raise
