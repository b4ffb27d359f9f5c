"""The client library (librados-like): `Rados` (cluster handle) and `IoCtx` (object ops).

The client computes placement itself from the OSDMap its MonClient caches and sends each
request straight to the PG's acting primary. A request keeps its (client id, tid) across every
resend, so an OSD that applied it already answers from its dedup table instead of applying it
twice. Until the request's deadline (`op_timeout`, default rpc_timeout x 3) it is resent when:
the OSD has a newer map (STALE_EPOCH: fetch it), the OSD is not the primary (NOT_PRIMARY:
fetch maps), the PG is below min_size (UNDERSIZED), a replica did not confirm
(REPLICA_FAILED), or the OSD cannot be reached (fetch maps: it may be marked down). The final
error says what was last seen.

Size limit: one request's data must fit in one message (rpc_max_message_size - 64 KiB, so just
under 96 MiB by default): a bigger write is refused with InvalidArgument before anything is
sent; reads of any size are split into ranges by the client (a read bigger than one message is
therefore not atomic against concurrent writers).

`Rados`/`IoCtx` are async; `rados_py.sync_rados` mirrors python-rados' names and signatures
over them (exported as `rados_py.Rados`), thread-safe, with aio completions.
"""

from __future__ import annotations

import asyncio
import errno as E
import itertools
import logging
import random
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from rados_py import rpc
from rados_py.auth import Keyring
from rados_py.config import Config, load
from rados_py.errors import (
    AlreadyExists,
    ChecksumError,
    InvalidArgument,
    LoligoError,
    NoSuchPool,
    NotFound,
    StoreFull,
    Timeout,
    show_name,
)
from rados_py.monclient import MonClient
from rados_py.osdmap import OSDMap, PgId
from rados_py.proto.loligo import mon_pb2, osd_pb2, osd_pb2_grpc
from rados_py.session import OP as OP_FRAME
from rados_py.session import Session

__all__ = ["CompareFailed", "IoCtx", "ListedObject", "ObjectOp", "Rados", "Stat"]

log = logging.getLogger(__name__)
K = osd_pb2.OsdOp
R = osd_pb2.OpReply
ENVELOPE = 64 * 1024


class CompareFailed(LoligoError):
    """A guard of a compound op failed (cmpxattr, omap_cmp, omap_assert_absent: ECANCELED;
    assert_version: ERANGE). `failed_op` is the index of the op that failed, as for every
    error of `IoCtx.operate`."""

    failed_op: int = -1


_ERRNO: dict[int, type[LoligoError]] = {E.ENOENT: NotFound, E.ENODATA: NotFound,
                                        E.EEXIST: AlreadyExists, E.EIO: ChecksumError,
                                        E.ENOSPC: StoreFull, E.EINVAL: InvalidArgument,
                                        E.ECANCELED: CompareFailed, E.ERANGE: CompareFailed}


def _b(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _cmp(name: str) -> int:
    if name.upper() not in ("EQ", "NE", "GT", "GTE", "LT", "LTE"):
        raise InvalidArgument(f"bad comparison {name!r}: eq, ne, gt, gte, lt or lte")
    return getattr(K, name.upper())


class Stat(tuple):
    """(size, version, mtime) of an object."""

    size = property(lambda self: self[0])
    version = property(lambda self: self[1])
    mtime = property(lambda self: self[2])


class ObjectOp:
    """A compound op on one object: guards and reads see the object before the op; the
    mutations are applied in order, all or nothing. Build, then `IoCtx.operate`."""

    def __init__(self) -> None:
        self.ops: list[osd_pb2.OsdOp] = []

    def _add(self, **fields: Any) -> ObjectOp:
        self.ops.append(K(**fields))
        return self

    def write_full(self, data: bytes) -> ObjectOp:
        return self._add(kind=K.WRITE_FULL, data=bytes(data))

    def write(self, data: bytes, offset: int = 0) -> ObjectOp:
        return self._add(kind=K.WRITE, data=bytes(data), offset=offset)

    def append(self, data: bytes) -> ObjectOp:
        return self._add(kind=K.APPEND, data=bytes(data))

    def truncate(self, size: int) -> ObjectOp:
        return self._add(kind=K.TRUNCATE, offset=size)

    def zero(self, offset: int, length: int) -> ObjectOp:
        return self._add(kind=K.ZERO, offset=offset, length=length)

    def remove(self) -> ObjectOp:
        return self._add(kind=K.REMOVE)

    def create(self, exclusive: bool = True) -> ObjectOp:
        return self._add(kind=K.CREATE if exclusive else K.TOUCH)

    def set_xattr(self, name: bytes | str, value: bytes) -> ObjectOp:
        return self._add(kind=K.SETXATTR, name=_b(name), data=bytes(value))

    def rm_xattr(self, name: bytes | str) -> ObjectOp:
        return self._add(kind=K.RMXATTR, name=_b(name))

    def omap_set(self, items: Mapping[bytes | str, bytes]) -> ObjectOp:
        return self._add(kind=K.OMAP_SET, pairs=[osd_pb2.KeyValue(key=_b(k), value=bytes(v))
                                                 for k, v in items.items()])

    def omap_rm(self, keys: Iterable[bytes | str]) -> ObjectOp:
        return self._add(kind=K.OMAP_RM, keys=[_b(k) for k in keys])

    def omap_clear(self) -> ObjectOp:
        return self._add(kind=K.OMAP_CLEAR)

    def read(self, offset: int = 0, length: int = 0) -> ObjectOp:
        return self._add(kind=K.READ, offset=offset, length=length)

    def stat(self) -> ObjectOp:
        return self._add(kind=K.STAT)

    def get_xattr(self, name: bytes | str) -> ObjectOp:
        return self._add(kind=K.GETXATTR, name=_b(name))

    def get_xattrs(self) -> ObjectOp:
        return self._add(kind=K.GETXATTRS)

    def omap_get(self, keys: Iterable[bytes | str]) -> ObjectOp:
        return self._add(kind=K.OMAP_GET, keys=[_b(k) for k in keys])

    def omap_list(self, after: bytes | str = b"", prefix: bytes | str = b"",
                  max_items: int = 1000) -> ObjectOp:
        """A page of omap pairs (result: pairs, and `more` when the page is full)."""
        return self._add(kind=K.OMAP_LIST, name=_b(after), prefix=_b(prefix), max=max_items)

    def omap_cmp(self, items: Mapping[bytes | str, bytes], cmp: str = "eq") -> ObjectOp:
        """Guard: each key is set and its value <cmp> the given one (bytewise)."""
        return self._add(kind=K.OMAP_CMP, cmp=_cmp(cmp),
                         pairs=[osd_pb2.KeyValue(key=_b(k), value=bytes(v))
                                for k, v in items.items()])

    def omap_assert_absent(self, keys: Iterable[bytes | str]) -> ObjectOp:
        """Guard: none of these keys is set (a missing object passes)."""
        return self._add(kind=K.OMAP_ABSENT, keys=[_b(k) for k in keys])

    def assert_exists(self) -> ObjectOp:
        return self._add(kind=K.ASSERT_EXISTS)

    def assert_version(self, version: int) -> ObjectOp:
        return self._add(kind=K.ASSERT_VERSION, version=version)

    def call(self, method: bytes | str, data: bytes = b"") -> ObjectOp:
        """Run an OSD class method ("counters.add"...) atomically with the other ops; its
        output is the op's result data."""
        return self._add(kind=K.CALL, name=_b(method), data=bytes(data))

    def counters_add(self, key: bytes | str, create: bool = False, **deltas: int) -> ObjectOp:
        """Add to the integers of the JSON object at omap key `key`, on the OSD (no
        read-modify-write: concurrent adders never conflict)."""
        return self.call("counters.add", osd_pb2.CounterAdd(
            key=_b(key), deltas=deltas, create=create).SerializeToString())

    def cmpxattr(self, name: bytes | str, value: bytes, cmp: str = "eq") -> ObjectOp:
        return self._add(kind=K.CMPXATTR, name=_b(name), data=bytes(value), cmp=_cmp(cmp))


class Rados:
    """A connection to the cluster: maps from the monitors, channels to the OSDs."""

    def __init__(self, conf: Config | str | Path | None = None, *, keyring: Keyring | None = None,
                 op_timeout: float | None = None) -> None:
        if conf is None or isinstance(conf, str | Path):
            from rados_py.config import find_conf

            conf = load(find_conf(conf), "client.admin")
        self.config = conf
        self.keyring = keyring or Keyring.load(conf.keyring)
        self.op_timeout = op_timeout or conf.rpc_timeout * 3
        self.mon = MonClient(conf, self.keyring)
        self.client_id = uuid.uuid4().hex
        self._tids = itertools.count(1)
        self._creds = rpc.ClientCredentials(conf.fsid, self.mon._creds.ticket,
                                            epoch=self.mon._epoch)
        self._channels: dict[str, tuple[grpc.aio.Channel, osd_pb2_grpc.OsdStub]] = {}
        self._sessions: dict[str, tuple[grpc.aio.Channel, Session]] = {}
        self.max_data = conf.rpc_max_message_size - ENVELOPE

    async def connect(self) -> Rados:
        await self.mon.connect()
        await self.mon.get_maps(latest=True)
        return self

    async def close(self) -> None:
        for channel, _ in self._channels.values():
            await channel.close()
        self._channels.clear()
        for channel, session in self._sessions.values():
            await session.close()
            await channel.close()
        self._sessions.clear()
        await self.mon.close()

    async def __aenter__(self) -> Rados:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def osdmap(self) -> OSDMap:
        maps = self.mon.maps
        if maps is None:
            raise InvalidArgument("not connected: call connect() first")
        return maps.osdmap

    # --- pools ---------------------------------------------------------------------------
    async def pool_create(self, name: str, pg_num: int = 0, size: int = 0,
                          min_size: int = 0) -> None:
        await self.mon.command(pool_create=mon_pb2.PoolCreate(name=name, pg_num=pg_num,
                                                              size=size, min_size=min_size))
        await self.mon.get_maps()

    async def pool_delete(self, name: str) -> None:
        await self.mon.command(pool_remove=mon_pb2.PoolRemove(name=name))
        await self.mon.get_maps()

    async def pool_list(self) -> list[str]:
        await self.mon.get_maps(latest=True)
        return [p.name for p in self.osdmap.pools.values()]

    async def cluster_stats(self) -> dict[str, int]:
        """Space and objects of the whole cluster (python-rados' get_cluster_stats keys), as
        the OSDs last reported them to the leader monitor."""
        pgs = (await self.mon.status()).view.pgs
        return {"kb": pgs.total_bytes // 1024, "kb_used": pgs.used_bytes // 1024,
                "kb_avail": pgs.avail_bytes // 1024, "num_objects": pgs.num_objects}

    def pool_id(self, name: str) -> int:
        for p in self.osdmap.pools.values():
            if p.name == name:
                return p.id
        raise NoSuchPool(name)

    async def open_ioctx(self, pool: str, nspace: bytes | str = b"") -> IoCtx:
        try:
            pool_id = self.pool_id(pool)
        except NotFound:
            await self.mon.get_maps(latest=True)
            pool_id = self.pool_id(pool)
        return IoCtx(self, pool_id, _b(nspace))

    # --- sending -------------------------------------------------------------------------
    def _stub(self, addr: str) -> osd_pb2_grpc.OsdStub:
        entry = self._channels.get(addr)
        if entry is None:
            channel = rpc.open_channel(addr, self.config, self._creds)
            entry = (channel, osd_pb2_grpc.OsdStub(channel))
            self._channels[addr] = entry
        return entry[1]

    def _session(self, addr: str, osd: int) -> Session:
        """The session to the OSD at `addr` (ops travel there; listings use `_stub`)."""
        entry = self._sessions.get(addr)
        if entry is None:
            channel = rpc.open_channel(addr, self.config, intercept=False)
            entry = (channel, Session(channel, self._creds.stream_metadata,
                                      f"osd.{osd} ({addr})"))
            self._sessions[addr] = entry
        return entry[1]

    async def _call(self, call: str, addr: str, osd: int, request: Any, remaining: float
                    ) -> Any:
        if call == "Op":  # the data path: a frame in the OSD's session
            frame = await self._session(addr, osd).call(OP_FRAME, request.SerializeToString(),
                                                         remaining)
            return frame.op_reply
        return await getattr(self._stub(addr), call)(request, timeout=remaining)

    async def _refresh(self, min_epoch: int, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        remaining = max(0.1, min(deadline - loop.time(), 5.0))
        try:
            await self.mon.get_maps(min_epoch=min_epoch, timeout=remaining)
        except LoligoError as exc:
            log.debug("map refresh: %s", exc)

    async def _send(self, what: str, build: Any, call: str, pool_id: int,
                    pgid_of: Any) -> Any:
        """Send a request to the PG's primary until it is answered for good or time runs out.

        `build(epoch, seed)` makes the request for the current map; `pgid_of(osdmap)` says
        which PG it is for. Returns the reply (status OK or FAILED).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.op_timeout
        pause = self.config.rpc_retry_initial
        last = "no attempt"
        while True:
            osdmap = self.osdmap
            pgid: PgId = pgid_of(osdmap)
            primary = osdmap.pg_to_up_acting(pgid).acting_primary
            state = osdmap.osds.get(primary)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Timeout(f"{what}: no answer within {self.op_timeout:g}s; last: {last}")
            if primary < 0 or state is None or not state.addr:
                last = f"PG {pgid} has no primary at epoch {osdmap.epoch}"
            else:
                try:
                    reply = await self._call(call, state.addr, primary,
                                             build(osdmap.epoch, pgid.seed), remaining)
                except grpc.aio.AioRpcError as err:
                    if err.code() not in (grpc.StatusCode.UNAVAILABLE,
                                          grpc.StatusCode.DEADLINE_EXCEEDED):
                        raise rpc.from_grpc_error(err, f"osd.{primary}") from None
                    last = f"osd.{primary} ({state.addr}): {err.code().name}"
                except (rpc.Unavailable, Timeout) as exc:
                    last = f"osd.{primary} ({state.addr}): {exc}"
                else:
                    if reply.status in (R.OK, R.FAILED):
                        return reply
                    last = f"osd.{primary}: {R.Status.Name(reply.status)}: {reply.message}"
                    if reply.status in (R.STALE_EPOCH, R.NOT_PRIMARY):
                        await self._refresh(reply.epoch if reply.status == R.STALE_EPOCH
                                            else osdmap.epoch + 1, deadline)
                        if self.osdmap.epoch > osdmap.epoch:
                            continue
            await asyncio.sleep(min(pause * random.uniform(0.5, 1.0),
                                    max(0.0, deadline - loop.time())))
            pause = min(pause * 2, self.config.rpc_retry_max)
            await self._refresh(0, deadline)

    async def execute(self, pool_id: int, nspace: bytes, name: bytes,
                      ops: list[osd_pb2.OsdOp]) -> osd_pb2.OpReply:
        """Run a compound op; the reply (OK), or the typed error of the op that failed."""
        # the encoded size (len(op.data) would copy the data out); each op's own few bytes of
        # framing come out of the envelope's headroom
        size = sum(op.ByteSize() for op in ops)
        if size > self.max_data + ENVELOPE // 2:
            raise InvalidArgument(f"request carries {size} bytes, more than one message holds "
                                  f"({self.max_data}; rpc_max_message_size): write it in parts "
                                  "at offsets")
        tid = next(self._tids)  # kept across every resend of this request
        request = osd_pb2.OpRequest(pool=pool_id, name=name, nspace=nspace,
                                    client=self.client_id, tid=tid, ops=ops)

        def build(epoch: int, seed: int) -> osd_pb2.OpRequest:
            request.epoch, request.pg_seed = epoch, seed  # built once: the data copied once
            return request

        reply = await self._send(f"op on {show_name(name, 80)}", build, "Op", pool_id,
                                 lambda m: m.object_to_pg(pool_id, name, nspace)[1])
        if reply.status == R.FAILED:
            cls = _ERRNO.get(reply.errno, LoligoError)
            exc = cls(f"{show_name(name)}: {reply.message or E.errorcode.get(reply.errno, '')}")
            exc.errno = reply.errno  # type: ignore[attr-defined]
            exc.failed_op = reply.failed_op  # type: ignore[attr-defined]  # which op, in order
            raise exc
        return reply

    async def osd_perf(self, osd: int) -> dict[str, int]:
        """An OSD's counters (`Osd/Perf`: session traffic, store commits and fsyncs)."""
        state = self.osdmap.osds.get(osd)
        if state is None or not state.addr:
            raise NotFound(f"osd.{osd} has no address in the map")
        reply = await self._stub(state.addr).Perf(osd_pb2.PerfRequest(),
                                                  timeout=self.config.rpc_timeout)
        return dict(reply.counters)

    async def list_pg(self, pool_id: int, seed: int, nspace: bytes, all_ns: bool,
                      after: bytes, max_items: int) -> osd_pb2.ListReply:
        def build(epoch: int, _seed: int) -> osd_pb2.ListRequest:
            return osd_pb2.ListRequest(epoch=epoch, pool=pool_id, pg_seed=seed, after=after,
                                       max=max_items, nspace=nspace, all_namespaces=all_ns)

        return await self._send(f"list of PG {pool_id}.{seed:x}", build, "List", pool_id,
                                lambda m: PgId(pool_id, seed))


class IoCtx:
    """Object ops in one pool and namespace."""

    def __init__(self, rados: Rados, pool_id: int, nspace: bytes = b"") -> None:
        self.rados = rados
        self.pool_id = pool_id
        self.nspace = nspace

    async def operate(self, name: bytes | str, op: ObjectOp) -> list[osd_pb2.OsdOpResult]:
        reply = await self.rados.execute(self.pool_id, self.nspace, _b(name), op.ops)
        return list(reply.results)

    async def _run(self, oid: bytes | str, /, **fields: Any) -> osd_pb2.OpReply:
        return await self.rados.execute(self.pool_id, self.nspace, _b(oid), [K(**fields)])

    async def write_full(self, name: bytes | str, data: bytes) -> int:
        """Replace the object's data; returns the new version."""
        return (await self._run(name, kind=K.WRITE_FULL, data=bytes(data))).version

    async def write(self, name: bytes | str, data: bytes, offset: int = 0) -> int:
        return (await self._run(name, kind=K.WRITE, data=bytes(data), offset=offset)).version

    async def append(self, name: bytes | str, data: bytes) -> int:
        return (await self._run(name, kind=K.APPEND, data=bytes(data))).version

    async def truncate(self, name: bytes | str, size: int) -> int:
        return (await self._run(name, kind=K.TRUNCATE, offset=size)).version

    async def zero(self, name: bytes | str, offset: int, length: int) -> int:
        return (await self._run(name, kind=K.ZERO, offset=offset, length=length)).version

    async def remove(self, name: bytes | str) -> None:
        await self._run(name, kind=K.REMOVE)

    async def read(self, name: bytes | str, offset: int = 0, length: int | None = None
                   ) -> bytes:
        """Up to `length` bytes from `offset` (None: to the end), in ranges of one message."""
        chunk = self.rados.max_data
        parts: list[bytes] = []
        while length is None or length > 0:
            want = chunk if length is None else min(length, chunk)
            data = (await self._run(name, kind=K.READ, offset=offset, length=want)).results[0]
            parts.append(data.data)
            offset += len(data.data)
            if length is not None:
                length -= len(data.data)
            if len(data.data) < want:
                break
        return b"".join(parts)

    async def stat(self, name: bytes | str) -> Stat:
        res = (await self._run(name, kind=K.STAT)).results[0]
        return Stat((res.size, res.version, res.mtime))

    async def get_xattr(self, name: bytes | str, key: bytes | str) -> bytes:
        return (await self._run(name, kind=K.GETXATTR, name=_b(key))).results[0].data

    async def set_xattr(self, name: bytes | str, key: bytes | str, value: bytes) -> int:
        return (await self._run(name, kind=K.SETXATTR, name=_b(key), data=bytes(value))).version

    async def rm_xattr(self, name: bytes | str, key: bytes | str) -> int:
        return (await self._run(name, kind=K.RMXATTR, name=_b(key))).version

    async def get_xattrs(self, name: bytes | str) -> dict[bytes, bytes]:
        res = (await self._run(name, kind=K.GETXATTRS)).results[0]
        return {p.key: p.value for p in res.pairs}

    async def omap_set(self, name: bytes | str, items: Mapping[bytes | str, bytes]) -> int:
        return (await self.rados.execute(self.pool_id, self.nspace, _b(name),
                                         ObjectOp().omap_set(items).ops)).version

    async def omap_get(self, name: bytes | str, keys: Iterable[bytes | str]
                       ) -> dict[bytes, bytes]:
        res = (await self._run(name, kind=K.OMAP_GET, keys=[_b(k) for k in keys])).results[0]
        return {p.key: p.value for p in res.pairs}

    async def omap_rm(self, name: bytes | str, keys: Iterable[bytes | str]) -> int:
        return (await self._run(name, kind=K.OMAP_RM, keys=[_b(k) for k in keys])).version

    async def omap_list(self, name: bytes | str, after: bytes | str = b"",
                        prefix: bytes | str = b"", max_items: int = 1000
                        ) -> tuple[list[tuple[bytes, bytes]], bool]:
        """One page of (key, value) with key > after and the prefix; and whether more follow."""
        res = (await self._run(name, kind=K.OMAP_LIST, name=_b(after), prefix=_b(prefix),
                               max=max_items)).results[0]
        return [(p.key, p.value) for p in res.pairs], res.more

    async def list_objects(self, all_namespaces: bool = False, page: int = 1000
                           ) -> AsyncIterator[tuple[bytes, bytes]]:
        """(nspace, name) of every object of the pool (this namespace unless all), PG by PG."""
        pool = self.rados.osdmap.pool(self.pool_id)
        for seed in range(pool.pg_num):
            after = b""
            while True:
                reply = await self.rados.list_pg(self.pool_id, seed, self.nspace,
                                                 all_namespaces, after, page)
                for entry in reply.entries:
                    yield entry.nspace, entry.name
                if not reply.next:
                    break
                after = reply.next


class ListedObject(str):
    """An object name from `list_objects`: a str, with python-rados' `.key` and `.nspace`
    (code written for `rados.Object` reads `obj.key`)."""

    nspace: str

    def __new__(cls, key: str, nspace: str = "") -> ListedObject:
        obj = super().__new__(cls, key)
        obj.nspace = nspace
        return obj

    @property
    def key(self) -> str:
        return str(self)
