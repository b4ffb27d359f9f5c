"""python-rados' API over the async client: `from rados_py import Rados` as `import rados`.

    cluster = Rados(conffile="loligo.toml")      # or Rados(): $LOLIGO_CONF, else the local cluster
    cluster.connect()
    io = cluster.open_ioctx("data")
    io.write_full("hello", b"world")
    c = io.aio_write("big", data, oncomplete=lambda comp: ...)
    c.wait_for_complete(); c.get_return_value()   # 0, or -errno

Thread-safe as librados is: each handle owns one event loop running in its own thread, and every
call, from whichever thread, is handed to that loop (`run_coroutine_threadsafe`), so any number
of threads share one handle with their ops truly in flight together. The aio_* calls return at
once with a `Completion`; their callbacks run on the handle's finisher thread (as librados runs
them on its finisher), so a callback may itself call the sync API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno as E
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from rados_py.config import Config, find_conf, load
from rados_py.errors import (
    AlreadyExists,
    InvalidArgument,
    LoligoError,
    NotFound,
    StoreFull,
    Timeout,
)
from rados_py.proto.loligo import osd_pb2
from rados_py.rados import _ERRNO, IoCtx, ListedObject, ObjectOp, Rados, _b

__all__ = ["Completion", "Error", "ObjectExists", "ObjectNotFound", "SyncIoctx", "SyncRados",
           "TimedOut"]

T = TypeVar("T")

# python-rados' exception names, so `except rados.ObjectNotFound` ports unchanged
Error = LoligoError
ObjectNotFound = NotFound
ObjectExists = AlreadyExists
TimedOut = Timeout
NoSpace = StoreFull
InvalidArgumentError = InvalidArgument

_CLASS_ERRNO: dict[type[LoligoError], int] = {Timeout: E.ETIMEDOUT}
for _code, _cls in reversed(list(_ERRNO.items())):  # the first errno listed for each family
    _CLASS_ERRNO[_cls] = _code


def errno_of(exc: BaseException) -> int:
    """The errno an error stands for (python-rados' negative return values)."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        return code
    if isinstance(exc, asyncio.CancelledError | concurrent.futures.CancelledError):
        return E.ECANCELED
    return next((c for cls, c in _CLASS_ERRNO.items() if isinstance(exc, cls)), E.EIO)


class SyncRados:
    """python-rados' `Rados`: `Rados(conffile=...)`, `connect()`, `open_ioctx(pool)`,
    `create_pool`, `list_pools`, `delete_pool`, `get_cluster_stats`, `shutdown()`.

    `conffile` defaults to $LOLIGO_CONF, else the local cluster's config; `conf` is a dict of
    options overriding the file (as python-rados' `conf`), or a ready `Config`.
    """

    def __init__(self, conffile: str | Path | None = None,
                 conf: Config | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if isinstance(conf, Config):
            self._config = conf
        else:
            self._config = load(find_conf(conffile or None), "client.admin")
            if conf:
                self._config = self._config.replace(**dict(conf))
        self._kwargs = kwargs
        self.rados: Rados | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="loligo-rados-loop")
        self._thread.start()
        self._finisher = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="loligo-rados-finisher")
        self._pending: set[Completion] = set()
        self._pending_lock = threading.Lock()
        self.state = "configuring"  # python-rados: configuring, connected, shutdown

    # --- running a coroutine on the handle's loop ------------------------------------------
    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._loop.is_closed():
            coro.close()
            raise InvalidArgument("this Rados handle is shut down")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise InvalidArgument("a sync Rados call from inside its own event loop would wait "
                                  "for itself: use the async Rados there")
        future = self._submit(coro)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    # --- the cluster -----------------------------------------------------------------------
    def connect(self, timeout: float = 0) -> None:
        async def go() -> Rados:
            return await Rados(self._config, **self._kwargs).connect()
        if self.rados is None:
            self.rados = self._run(go())
            self.state = "connected"

    def _r(self) -> Rados:
        if self.state == "shutdown":
            raise InvalidArgument("this Rados handle is shut down")
        if self.rados is None:
            raise InvalidArgument("not connected: call connect() first")
        return self.rados

    def create_pool(self, pool_name: str) -> None:
        self._run(self._r().pool_create(pool_name))

    def delete_pool(self, pool_name: str) -> None:
        self._run(self._r().pool_delete(pool_name))

    def list_pools(self) -> list[str]:
        return self._run(self._r().pool_list())

    def pool_exists(self, pool_name: str) -> bool:
        return pool_name in self.list_pools()

    def get_cluster_stats(self) -> dict[str, int]:
        return self._run(self._r().cluster_stats())

    def get_fsid(self) -> str:
        return self._config.fsid

    def open_ioctx(self, ioctx_name: str) -> SyncIoctx:
        return SyncIoctx(self, self._run(self._r().open_ioctx(ioctx_name)))

    def shutdown(self) -> None:
        """Wait for pending aio, close the connections, stop the loop thread."""
        if self._loop.is_closed():
            return
        self.flush_aio()
        if self.rados is not None:
            self._run(self.rados.close())
            self.rados = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._finisher.shutdown(wait=True)
        self.state = "shutdown"

    close = shutdown

    def __enter__(self) -> SyncRados:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # --- aio bookkeeping -------------------------------------------------------------------
    def _aio(self, coro: Coroutine[Any, Any, Any], oncomplete: Callable[..., Any] | None,
             onsafe: Callable[..., Any] | None, result: Callable[[Any], tuple[int, tuple]]
             ) -> Completion:
        completion = Completion(self, oncomplete, onsafe, result)
        with self._pending_lock:
            self._pending.add(completion)
        completion._start(self._submit(coro))
        return completion

    def _done(self, completion: Completion) -> None:
        with self._pending_lock:
            self._pending.discard(completion)

    def flush_aio(self) -> None:
        """Until every aio op started so far has completed (and its callbacks ran)."""
        with self._pending_lock:
            pending = list(self._pending)
        for completion in pending:
            completion.wait_for_complete_and_cb()


class Completion:
    """An aio op in flight (python-rados' `Completion`): wait, ask, or get its result.

    `get_return_value()` is 0 for a write or remove, the number of bytes for a read, and
    -errno when the op failed (the exception itself: `exception()`).
    """

    def __init__(self, owner: SyncRados, oncomplete: Callable[..., Any] | None,
                 onsafe: Callable[..., Any] | None,
                 result: Callable[[Any], tuple[int, tuple]]) -> None:
        self._owner = owner
        self._oncomplete = oncomplete
        self._onsafe = onsafe
        self._result = result
        self._future: concurrent.futures.Future[Any] | None = None
        self._called = threading.Event()  # callbacks have run (or there were none)
        self._value = 0
        self._error: BaseException | None = None

    def _start(self, future: concurrent.futures.Future[Any]) -> None:
        self._future = future
        future.add_done_callback(self._finished)

    def _finished(self, future: concurrent.futures.Future[Any]) -> None:
        args: tuple = ()
        try:
            self._value, args = self._result(future.result())
        except BaseException as exc:  # the op's error, reported as -errno like librados
            self._error = exc
            self._value = -errno_of(exc)
            args = self._failed_args()
        callbacks = [cb for cb in (self._oncomplete, self._onsafe) if cb is not None]
        if not callbacks:
            self._called.set()
            self._owner._done(self)
            return

        def run() -> None:
            try:
                for cb in callbacks:
                    cb(self, *args)
            finally:
                self._called.set()
                self._owner._done(self)
        try:
            self._owner._finisher.submit(run)
        except RuntimeError:  # the handle is shutting down: run them here
            run()

    def _failed_args(self) -> tuple:
        """What a callback gets beside the completion when the op failed."""
        return {_read_result: (b"",), _stat_result: (0, 0.0)}.get(self._result, ())

    # python-rados' names
    def is_complete(self) -> bool:
        return self._future is not None and self._future.done()

    is_safe = is_complete  # one acknowledgement: every replica has it durable

    def wait_for_complete(self) -> None:
        assert self._future is not None
        concurrent.futures.wait([self._future])

    wait_for_safe = wait_for_complete

    def wait_for_complete_and_cb(self) -> None:
        self.wait_for_complete()
        self._called.wait()

    wait_for_safe_and_cb = wait_for_complete_and_cb

    def get_return_value(self) -> int:
        self.wait_for_complete()
        return self._value

    def exception(self) -> BaseException | None:
        self.wait_for_complete()
        return self._error

    def cancel(self) -> None:
        if self._future is not None:
            self._future.cancel()


def _no_result(_: Any) -> tuple[int, tuple]:
    return 0, ()


def _read_result(data: bytes) -> tuple[int, tuple]:
    return len(data), (data,)


def _stat_result(st: Any) -> tuple[int, tuple]:
    return 0, (st.size, st.mtime)


class SyncIoctx:
    """python-rados' `Ioctx` (the names and argument orders where they overlap)."""

    def __init__(self, owner: SyncRados, ioctx: IoCtx) -> None:
        self._owner = owner
        self.io = ioctx

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._owner._run(coro)

    def set_namespace(self, nspace: str) -> None:
        self.io.nspace = _b(nspace)

    def get_namespace(self) -> str:
        return self.io.nspace.decode(errors="surrogateescape")

    def write_full(self, key: str, data: bytes) -> None:
        self._run(self.io.write_full(key, data))

    def write(self, key: str, data: bytes, offset: int = 0) -> None:
        self._run(self.io.write(key, data, offset))

    def append(self, key: str, data: bytes) -> None:
        self._run(self.io.append(key, data))

    def read(self, key: str, length: int = 8192, offset: int = 0) -> bytes:
        return self._run(self.io.read(key, offset, length))

    def trunc(self, key: str, size: int) -> None:
        self._run(self.io.truncate(key, size))

    def stat(self, key: str) -> tuple[int, float]:
        """(size, mtime) as python-rados gives (mtime as seconds here, not a struct_time)."""
        st = self._run(self.io.stat(key))
        return st.size, st.mtime

    def remove_object(self, key: str) -> bool:
        self._run(self.io.remove(key))
        return True

    def get_xattr(self, key: str, xattr_name: str) -> bytes:
        return self._run(self.io.get_xattr(key, xattr_name))

    def set_xattr(self, key: str, xattr_name: str, xattr_value: bytes) -> bool:
        self._run(self.io.set_xattr(key, xattr_name, xattr_value))
        return True

    def rm_xattr(self, key: str, xattr_name: str) -> bool:
        self._run(self.io.rm_xattr(key, xattr_name))
        return True

    def get_xattrs(self, oid: str) -> Iterator[tuple[str, bytes]]:
        return iter([(k.decode(errors="surrogateescape"), v)
                     for k, v in self._run(self.io.get_xattrs(oid)).items()])

    def list_objects(self) -> Iterator[ListedObject]:
        async def names() -> list[tuple[bytes, bytes]]:
            return [(ns, name) async for ns, name in self.io.list_objects()]
        return iter([ListedObject(n.decode(errors="surrogateescape"),
                                  ns.decode(errors="surrogateescape"))
                     for ns, n in self._run(names())])

    def operate(self, key: str, op: ObjectOp) -> list[osd_pb2.OsdOpResult]:
        return self._run(self.io.operate(key, op))

    # --- aio: return at once; the Completion tells when and how it ended ---------------------
    def aio_write(self, object_name: str, to_write: bytes, offset: int = 0,
                  oncomplete: Callable[[Completion], Any] | None = None,
                  onsafe: Callable[[Completion], Any] | None = None) -> Completion:
        return self._owner._aio(self.io.write(object_name, to_write, offset), oncomplete,
                                onsafe, _no_result)

    def aio_write_full(self, object_name: str, to_write: bytes,
                       oncomplete: Callable[[Completion], Any] | None = None,
                       onsafe: Callable[[Completion], Any] | None = None) -> Completion:
        return self._owner._aio(self.io.write_full(object_name, to_write), oncomplete, onsafe,
                                _no_result)

    def aio_append(self, object_name: str, to_append: bytes,
                   oncomplete: Callable[[Completion], Any] | None = None,
                   onsafe: Callable[[Completion], Any] | None = None) -> Completion:
        return self._owner._aio(self.io.append(object_name, to_append), oncomplete, onsafe,
                                _no_result)

    def aio_read(self, object_name: str, length: int, offset: int,
                 oncomplete: Callable[[Completion, bytes], Any] | None = None) -> Completion:
        """`oncomplete(completion, data)`; `get_return_value()` is the bytes read."""
        return self._owner._aio(self.io.read(object_name, offset, length), oncomplete, None,
                                _read_result)

    def aio_stat(self, object_name: str,
                 oncomplete: Callable[[Completion, int, float], Any] | None = None
                 ) -> Completion:
        """`oncomplete(completion, size, mtime)`."""
        return self._owner._aio(self.io.stat(object_name), oncomplete, None, _stat_result)

    def aio_remove(self, object_name: str,
                   oncomplete: Callable[[Completion], Any] | None = None,
                   onsafe: Callable[[Completion], Any] | None = None) -> Completion:
        return self._owner._aio(self.io.remove(object_name), oncomplete, onsafe, _no_result)

    def aio_flush(self) -> None:
        """Until every aio op of the handle has completed."""
        self._owner.flush_aio()

    def close(self) -> None:
        """Nothing to release per ioctx (python-rados compatibility)."""
