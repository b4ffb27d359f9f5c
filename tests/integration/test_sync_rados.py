"""The python-rados-style API (`from rados_py import Rados`) on a real cluster, used the way
python-rados code uses librados: many threads sharing one handle, and aio completions."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import rados_py
from cluster import launcher
from rados_py import Rados
from tests.integration import running_cluster
from tests.waiting import wait_for

THREADS = 8
OPS = 40  # per thread


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launcher.LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("sync") / "cluster", osds=2,
                         pool=launcher.DEFAULT_POOL) as c:
        yield c


@pytest.fixture
def handle(cluster: launcher.LocalCluster) -> Iterator[Rados]:
    r = Rados(conffile=str(cluster.conf))
    r.connect()
    yield r
    r.shutdown()


def test_rados_honours_loligo_conf(cluster: launcher.LocalCluster,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's example: `Rados()` with no argument finds the cluster of $LOLIGO_CONF."""
    monkeypatch.setenv("LOLIGO_CONF", str(cluster.conf))
    with Rados() as r:
        assert r.get_fsid() == cluster.config.fsid and "data" in r.list_pools()


def test_many_threads_share_one_handle(handle: Rados) -> None:
    io = handle.open_ioctx("data")
    errors: list[BaseException] = []
    # a watcher on the handle's own loop counts ops in flight at once
    in_flight: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        import asyncio

        async def sample() -> None:
            while not stop.is_set():
                in_flight.append(len(asyncio.all_tasks()) - 1)
                await asyncio.sleep(0.002)
        handle._run(sample())

    def worker(n: int) -> None:
        try:
            for i in range(OPS):
                name = f"t{n}-{i}"
                io.write_full(name, f"{n}:{i}".encode() * 10)
                assert io.read(name) == f"{n}:{i}".encode() * 10
                if i % 3 == 0:
                    io.set_xattr(name, "who", str(n).encode())
                    assert io.get_xattr(name, "who") == str(n).encode()
                if i % 4 == 0:
                    io.remove_object(name)
        except BaseException as exc:
            errors.append(exc)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)  # a hang fails the test instead of hanging it
    stop.set()
    watcher.join(timeout=10)
    elapsed = time.monotonic() - started
    assert not any(t.is_alive() for t in threads), "a thread hangs in the sync API"
    assert not errors, errors[:3]
    names = set(io.list_objects())
    expected = {f"t{n}-{i}" for n in range(THREADS) for i in range(OPS) if i % 4}
    assert expected <= names and not {f"t{n}-0" for n in range(THREADS)} & names
    peak = max(in_flight, default=0)
    print(f"\n[sync] {THREADS} threads x {OPS} iterations through one handle in "
          f"{elapsed:.1f} s, up to {peak} ops in flight at once")
    assert peak >= THREADS // 2, f"ops of different threads ran one at a time (peak {peak})"


def test_aio_completions(handle: Rados) -> None:
    io = handle.open_ioctx("data")
    done: list[str] = []
    lock = threading.Lock()

    def written(completion: rados_py.Completion) -> None:
        with lock:
            done.append("w")

    writes = [io.aio_write_full(f"aio-{i}", f"value {i}".encode(), oncomplete=written)
              for i in range(50)]
    for c in writes:
        c.wait_for_complete_and_cb()
        assert c.is_complete() and c.get_return_value() == 0
    assert len(done) == 50

    c = io.aio_write("aio-0", b"V", offset=0)
    c.wait_for_complete()
    assert c.get_return_value() == 0 and io.read("aio-0") == b"Value 0"

    reads: dict[str, bytes] = {}

    def read_back(completion: rados_py.Completion, data: bytes) -> None:
        # a callback may use the sync API (it runs on the finisher, not the event loop)
        size, _ = io.stat("aio-1")
        with lock:
            reads["aio-1"] = data
            reads["size"] = str(size).encode()

    c = io.aio_read("aio-1", 100, 0, oncomplete=read_back)
    c.wait_for_complete_and_cb()
    assert c.get_return_value() == len(b"value 1")
    assert reads == {"aio-1": b"value 1", "size": b"7"}

    missing = io.aio_read("no-such-object", 10, 0)
    assert missing.get_return_value() == -errno.ENOENT
    assert isinstance(missing.exception(), rados_py.ObjectNotFound)

    removed = [io.aio_remove(f"aio-{i}") for i in range(50)]
    io.aio_flush()
    assert all(c.is_complete() and c.get_return_value() == 0 for c in removed)
    assert not [n for n in io.list_objects() if n.startswith("aio-")]
    assert io.aio_remove("aio-0").get_return_value() == -errno.ENOENT


def test_shutdown_waits_for_aio_and_is_final(cluster: launcher.LocalCluster) -> None:
    r = Rados(conffile=str(cluster.conf))
    r.connect()
    io = r.open_ioctx("data")
    pending = [io.aio_write_full(f"late-{i}", b"x" * 1000) for i in range(20)]
    r.shutdown()
    assert all(c.is_complete() and c.get_return_value() == 0 for c in pending)
    with pytest.raises(rados_py.Error, match="shut down"):
        r.list_pools()
    threads = [t.name for t in threading.enumerate()]
    wait_for(lambda: "loligo-rados-loop" not in [t.name for t in threading.enumerate()], 5,
             f"the handle's loop thread to end ({threads})")


def test_conf_dict_overrides_the_file(cluster: launcher.LocalCluster) -> None:
    r = Rados(conffile=Path(cluster.conf), conf={"rpc_timeout": 7})
    assert r._config.rpc_timeout == 7
    r.shutdown()
