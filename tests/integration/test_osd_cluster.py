"""Real processes via the launcher (1 monitor, 3 OSDs, pool size 3) driven through the client
library: every op, object sizes, awkward names, resends, concurrent writers, replica
equality read from each OSD (DumpPg), and a kill -9 of a replica. The fixture stops every
process it started, and kills whatever `stop` missed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from cluster import launcher
from rados_py.errors import AlreadyExists, InvalidArgument, NotFound
from rados_py.proto.loligo import osd_pb2
from rados_py.rados import CompareFailed, ObjectOp, Rados
from rados_py.sync_rados import SyncRados
from tests.integration import running_cluster
from tests.integration.checks import replicas_identical

T = TypeVar("T")
MiB = 1 << 20


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launcher.LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("osd") / "cluster", osds=3,
                         pool=launcher.DEFAULT_POOL) as c:
        yield c


async def connect(c: launcher.LocalCluster, **kw: Any) -> Rados:
    return await Rados(c.config, **kw).connect()


def test_every_op_through_the_client(cluster: launcher.LocalCluster) -> None:
    async def go() -> None:
        async with await connect(cluster) as r:
            io = await r.open_ioctx("data")
            v1 = await io.write_full("o", b"hello world")
            assert await io.read("o") == b"hello world"
            v2 = await io.write("o", b"HELLO", 0)
            assert v2 > v1 and await io.read("o", 0, 5) == b"HELLO"
            await io.append("o", b"!")
            await io.truncate("o", 8)
            await io.zero("o", 1, 2)
            assert await io.read("o") == b"H\0\0LO wo"
            st = await io.stat("o")
            assert st.size == 8 and st.version > v2
            await io.set_xattr("o", "a", b"1")
            await io.set_xattr("o", b"b\xff", b"2")
            assert await io.get_xattr("o", "a") == b"1"
            assert await io.get_xattrs("o") == {b"a": b"1", b"b\xff": b"2"}
            await io.rm_xattr("o", "a")
            with pytest.raises(NotFound):
                await io.get_xattr("o", "a")
            await io.omap_set("o", {f"k{i:03}": str(i).encode() for i in range(25)})
            await io.omap_set("o", {"other": b"x"})
            assert await io.omap_get("o", ["k001", "nope"]) == {b"k001": b"1"}
            page, more = await io.omap_list("o", prefix="k", max_items=10)
            assert len(page) == 10 and more
            page2, more2 = await io.omap_list("o", after=page[-1][0], prefix="k", max_items=100)
            assert len(page2) == 15 and not more2
            await io.omap_rm("o", ["k000"])
            assert b"k000" not in dict((await io.omap_list("o"))[0])
            # compound with guards: all or nothing
            ver = (await io.stat("o")).version
            await io.operate("o", ObjectOp().assert_version(ver).cmpxattr(b"b\xff", b"2")
                             .write_full(b"new").set_xattr("c", b"3"))
            assert await io.read("o") == b"new"
            with pytest.raises(CompareFailed):
                await io.operate("o", ObjectOp().cmpxattr("c", b"9").write_full(b"lost"))
            with pytest.raises(CompareFailed):
                await io.operate("o", ObjectOp().assert_version(ver).append(b"lost"))
            assert await io.read("o") == b"new"
            with pytest.raises(AlreadyExists):
                await io.operate("o", ObjectOp().create())
            await io.operate("fresh", ObjectOp().create().omap_set({"a": b"b"}))
            # omap guards: a compare-and-set of one index entry, an insert only if absent
            await io.operate("fresh", ObjectOp().omap_cmp({"a": b"b"}).omap_set({"a": b"c"}))
            with pytest.raises(CompareFailed) as failed:
                await io.operate("fresh", ObjectOp().omap_assert_absent(["z"])
                                 .omap_cmp({"a": b"b"}).omap_set({"a": b"lost"}))
            assert failed.value.failed_op == 1  # which guard refused
            with pytest.raises(CompareFailed):
                await io.operate("fresh", ObjectOp().omap_assert_absent(["a"]).omap_set(
                    {"a": b"lost"}))
            await io.operate("fresh", ObjectOp().omap_assert_absent(["new"]).omap_set(
                {"new": b"1"}))
            got = await io.operate("fresh", ObjectOp().omap_get(["a", "new"]).get_xattrs()
                                   .omap_list(prefix="n"))
            assert [(p.key, p.value) for p in got[0].pairs] == [(b"a", b"c"), (b"new", b"1")]
            assert [(p.key, p.value) for p in got[2].pairs] == [(b"new", b"1")]
            with pytest.raises(NotFound):
                await io.operate("nothing", ObjectOp().omap_cmp({"a": b"b"}))
            await io.operate("nothing", ObjectOp().omap_assert_absent(["a"]).omap_set(
                {"a": b"1"}))  # a missing object has no keys: created with the first one
            with pytest.raises(NotFound):
                await io.operate("missing", ObjectOp().assert_exists().write_full(b"x"))
            with pytest.raises(NotFound):
                await io.stat("missing")
            await io.remove("o")
            with pytest.raises(NotFound):
                await io.read("o")
            with pytest.raises(NotFound):
                await io.remove("o")
            names = {n async for _, n in io.list_objects()}
            assert b"fresh" in names and b"o" not in names
            # namespaces are separate
            ns = await r.open_ioctx("data", "ns1")
            await ns.write_full("fresh", b"in ns1")
            assert await ns.read("fresh") == b"in ns1"
            assert {n async for _, n in ns.list_objects()} == {b"fresh"}
    run(go())


def test_sizes_0_4k_4m_and_64m(cluster: launcher.LocalCluster) -> None:
    async def go() -> None:
        async with await connect(cluster) as r:
            io = await r.open_ioctx("data")
            for size in (0, 4096, 4 * MiB, 64 * MiB):
                data = os.urandom(size)
                await io.write_full(f"size-{size}", data)  # each one atomic op
                assert await io.read(f"size-{size}") == data
                assert (await io.stat(f"size-{size}")).size == size
            big = os.urandom(100 * MiB)
            with pytest.raises(InvalidArgument, match="message"):
                await io.write_full("big", big)  # more than one message: refused up front
            for off in range(0, len(big), 32 * MiB):  # bigger objects are written in parts
                await io.write("big", big[off:off + 32 * MiB], off)
            assert await io.read("big") == big
    run(go())


def test_awkward_names(cluster: launcher.LocalCluster) -> None:
    names = [b"a/b/c", b"..", b"../../etc/passwd", b"\xff\xfe\x01binary\x7f", b"n" * 2048,
             "snowman \u2603".encode()]

    async def go() -> None:
        async with await connect(cluster) as r:
            io = await r.open_ioctx("data")
            for i, name in enumerate(names):
                await io.write_full(name, str(i).encode())
            for i, name in enumerate(names):
                assert await io.read(name) == str(i).encode()
            listed = {n async for _, n in io.list_objects()}
            assert set(names) <= listed
    run(go())


def test_sync_wrapper_mirrors_python_rados(cluster: launcher.LocalCluster) -> None:
    from rados_py import Rados as PyRados

    assert PyRados is SyncRados
    r = PyRados(conffile=str(cluster.conf))
    r.connect()
    try:
        assert "data" in r.list_pools()
        io = r.open_ioctx("data")
        io.write_full("sync", b"abc")
        io.append("sync", b"def")
        io.write("sync", b"X", 1)
        assert io.read("sync") == b"aXcdef" and io.read("sync", 2, 1) == b"Xc"
        assert io.stat("sync")[0] == 6
        io.set_xattr("sync", "k", b"v")
        assert io.get_xattr("sync", "k") == b"v"
        assert "sync" in list(io.list_objects())
        assert "sync" in [obj.key for obj in io.list_objects()]  # rados.Object's attribute
        stats = r.get_cluster_stats()
        assert stats["kb"] > stats["kb_used"] > 0 and stats["kb_avail"] > 0
        assert io.remove_object("sync")
    finally:
        r.shutdown()


async def _op(r: Rados, addr: str, req: osd_pb2.OpRequest) -> osd_pb2.OpReply:
    return await r._stub(addr).Op(req, timeout=10)


def test_resent_request_is_applied_once(cluster: launcher.LocalCluster) -> None:
    async def go() -> None:
        async with await connect(cluster) as r:
            io = await r.open_ioctx("data")
            await io.write_full("resend", b"")
            osdmap = r.osdmap
            _, pgid, placement = osdmap.map_object(io.pool_id, b"resend")
            addr = osdmap.osds[placement.acting_primary].addr
            req = osd_pb2.OpRequest(epoch=osdmap.epoch, pool=io.pool_id, pg_seed=pgid.seed,
                                    name=b"resend", client="resender", tid=1,
                                    ops=[osd_pb2.OsdOp(kind=osd_pb2.OsdOp.APPEND, data=b"x")])
            first = await _op(r, addr, req)
            second = await _op(r, addr, req)
            assert first.status == second.status == osd_pb2.OpReply.OK
            assert not first.replayed and second.replayed
            assert first.version == second.version
            assert await io.read("resend") == b"x"
            # a stale epoch is answered with the OSD's epoch, not served
            stale = osd_pb2.OpRequest()
            stale.CopyFrom(req)
            stale.epoch, stale.tid = 1, 2
            reply = await _op(r, addr, stale)
            assert reply.status == osd_pb2.OpReply.STALE_EPOCH and reply.epoch == osdmap.epoch
            # a replica says it is not the primary
            other = osdmap.osds[placement.acting[1]].addr
            reply = await _op(r, other, req)
            assert reply.status == osd_pb2.OpReply.NOT_PRIMARY
            assert await io.read("resend") == b"x"
    run(go())


def test_concurrent_writers_serialise(cluster: launcher.LocalCluster) -> None:
    async def go() -> None:
        clients = [await connect(cluster) for _ in range(3)]
        try:
            ios = [await c.open_ioctx("data") for c in clients]
            await ios[0].write_full("conc", b"")
            chunks = [bytes([65 + i]) * 7 for i in range(24)]
            await asyncio.gather(*(ios[i % 3].append("conc", ch) for i, ch in enumerate(chunks)))
            data = await ios[0].read("conc")
            parts = [data[i:i + 7] for i in range(0, len(data), 7)]
            assert sorted(parts) == sorted(chunks)  # each append once, none torn
            fulls = [bytes([97 + i]) * 1000 for i in range(12)]
            await asyncio.gather(*(ios[i % 3].write_full("conc2", f)
                                   for i, f in enumerate(fulls)))
            assert await ios[1].read("conc2") in fulls
        finally:
            for c in clients:
                await c.close()
    run(go())


def test_every_replica_holds_identical_data_and_versions(
        cluster: launcher.LocalCluster) -> None:
    async def go() -> None:
        async with await connect(cluster) as r:
            io = await r.open_ioctx("data")
            for i in range(40):
                await io.write_full(f"rep-{i}", os.urandom(i * 100))
                if i % 3 == 0:
                    await io.append(f"rep-{i}", b"tail")
            objects = await replicas_identical(r, io.pool_id, 3)
            assert {b"rep-%d" % i for i in range(40)} <= {oid[2:] for oid in objects}
    run(go())


def test_kill_replica_writes_continue_once_it_is_marked_down(
        cluster: launcher.LocalCluster) -> None:
    """Runs last: it leaves one OSD dead (the fixture then stops the rest). A write that needs
    the dead replica waits (the client retrying) until peer heartbeats get it marked down and
    the PG peers without it; it is then acknowledged by the two survivors."""
    async def go() -> None:
        async with await connect(cluster, op_timeout=30.0) as r:
            io = await r.open_ioctx("data")
            await io.write_full("victim", b"before")
            _, _, placement = r.osdmap.map_object(io.pool_id, b"victim")
            replica = placement.acting[-1]
            cluster.kill(f"osd.{replica}")
            await io.write_full("victim", b"during")
            maps = await r.mon.get_maps(latest=True)
            assert not maps.osdmap.osds[replica].up
            assert await io.read("victim") == b"during"
            await io.write_full("victim", b"after")  # 2 acting >= min_size 2
            assert await io.read("victim") == b"after"
    run(go())
