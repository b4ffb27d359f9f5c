"""The MDS's namespace operations and journal, without I/O: operations run against the cache,
missing pieces come from an in-memory "RADOS" (dicts of omaps) through NeedLoad, and every
operation's journal mutations applied to that store give back the same namespace -- also when
applied twice (replay after a crash) and when the cache is dropped in between."""

from __future__ import annotations

import errno as E
import stat

import pytest

from mds import layout
from mds import namespace as ns
from mds.cache import Anchor, Cache, FsError, NeedLoad, Tx
from mds.client.files import coalesce, extents
from mds.journal import frame, unframe
from rados_py.proto.loligo import mds_pb2

ROOT = layout.ROOT_INO
NOW = 1_700_000_000_000_000_000
PAGE = 3  # small pages, so listings span several


class World:
    """A cache over an in-memory metadata pool; `run` retries an op after each NeedLoad."""

    def __init__(self) -> None:
        self.objects: dict[bytes, dict[bytes, bytes]] = {}
        self.cache = Cache(limit=1000)
        self.next = layout.FIRST_INO
        self.purged: list[int] = []
        tx = Tx()
        self.cache.loaded_anchor(ROOT, None)
        self.cache.set_anchor(tx, ROOT, Anchor(inode=ns.root_inode(NOW)))
        self.apply(tx)

    def apply(self, tx: Tx) -> list[mds_pb2.ObjMutation]:
        muts = tx.mutations(self.cache)
        for m in muts:
            if m.remove:
                self.objects.pop(m.object, None)
                continue
            omap = self.objects.setdefault(m.object, {})
            for kv in m.set:
                omap[kv.key] = kv.value
            for key in m.rm:
                omap.pop(key, None)
        self.purged += [p.ino for p in tx.purges]
        return muts

    def load(self, need: NeedLoad) -> None:
        c = self.cache
        if need.kind == "dentry":
            raw = self.objects.get(layout.dir_object(need.ino), {}).get(need.name)
            c.loaded_dentry(need.ino, need.name, None if raw is None else
                            mds_pb2.Dentry.FromString(raw))
        elif need.kind == "page":
            omap = self.objects.get(layout.dir_object(need.ino), {})
            names = sorted(k for k in omap if k > need.name)
            c.loaded_page(need.ino, need.name, [(k, mds_pb2.Dentry.FromString(omap[k]))
                                                for k in names[:PAGE]], len(names) > PAGE)
        elif need.kind == "empty":
            c.loaded_emptiness(need.ino, not self.objects.get(layout.dir_object(need.ino)))
        elif need.kind == "anchor":
            raw = self.objects.get(layout.anchor_object(need.ino), {}).get(
                layout.anchor_key(need.ino))
            c.loaded_anchor(need.ino, None if raw is None else Anchor.FromString(raw))
        elif need.kind == "inos":
            c.next_ino, c.ino_high = self.next, self.next + 4
            self.next += 4

    def run(self, fn, *args, opened: frozenset[int] = frozenset()):
        while True:
            tx = Tx()
            try:
                if fn in (ns.unlink, ns.rename):
                    out = fn(self.cache, tx, *args, NOW, lambda ino: ino in opened)
                elif fn in (ns.lookup, ns.getattr_, ns.readdir):
                    return fn(self.cache, *args)
                else:
                    out = fn(self.cache, tx, *args)
            except NeedLoad as need:
                self.load(need)
                continue
            self.apply(tx)
            return out

    def create(self, parent: int, name: bytes, mode: int = stat.S_IFREG | 0o644):
        op = mds_pb2.CreateOp(parent=parent, name=name, mode=mode, exclusive=True)
        return self.run(ns.create, op, mds_pb2.Caller(uid=1, gid=2), NOW)[0]

    def names(self, ino: int) -> list[str]:
        """The whole listing, page by page (each page asks for more than one load gives)."""
        out: list[str] = []
        after, more = b"", True
        while more:
            entries, more = self.run(ns.readdir, ino, after, 10)
            out += [n.decode() for n, _ in entries]
            after = entries[-1][0] if entries else after
        assert out == sorted(out)
        return out

    def forget(self) -> None:
        """Drop the whole cache (an MDS restart): everything comes back from the store."""
        self.cache = Cache(limit=1000)


def test_create_lookup_and_listing_survive_a_restart() -> None:
    w = World()
    d = w.create(ROOT, b"dir", stat.S_IFDIR | 0o755)
    f = w.create(d.ino, b"file")
    assert w.run(ns.lookup, d.ino, b"file").ino == f.ino
    assert w.run(ns.getattr_, ROOT).nlink == 3
    w.forget()
    assert w.names(ROOT) == ["dir"] and w.names(d.ino) == ["file"]
    assert w.run(ns.getattr_, f.ino).uid == 1  # found by number through the anchor table
    with pytest.raises(FsError) as exc:
        w.create(d.ino, b"file")
    assert exc.value.errno == E.EEXIST


def test_rename_across_directories_over_a_target_is_one_change() -> None:
    w = World()
    a = w.create(ROOT, b"a", stat.S_IFDIR | 0o755)
    b = w.create(ROOT, b"b", stat.S_IFDIR | 0o755)
    src = w.create(a.ino, b"x")
    old = w.create(b.ino, b"y")
    tx_objects_before = {k: dict(v) for k, v in w.objects.items()}
    w.run(ns.rename, mds_pb2.RenameOp(parent=a.ino, name=b"x", new_parent=b.ino,
                                      new_name=b"y"))
    assert w.names(a.ino) == [] and w.names(b.ino) == ["y"]
    assert w.run(ns.lookup, b.ino, b"y").ino == src.ino
    assert old.ino in w.purged  # the replaced file's data goes
    # replaying the journal on the old state gives the same (idempotent mutations)
    w2 = World()
    w2.objects = tx_objects_before
    w.forget()
    assert w.names(b.ino) == ["y"] and w.run(ns.getattr_, src.ino).ino == src.ino


def test_hard_links_move_the_inode_to_the_anchor_table() -> None:
    w = World()
    f = w.create(ROOT, b"f")
    w.run(ns.link, mds_pb2.LinkOp(ino=f.ino, new_parent=ROOT, new_name=b"g"), NOW)
    assert w.run(ns.lookup, ROOT, b"g").nlink == 2
    w.forget()
    assert w.run(ns.lookup, ROOT, b"f").nlink == 2
    w.run(ns.unlink, mds_pb2.UnlinkOp(parent=ROOT, name=b"f"))
    assert w.run(ns.lookup, ROOT, b"g").nlink == 1 and f.ino not in w.purged
    w.run(ns.unlink, mds_pb2.UnlinkOp(parent=ROOT, name=b"g"))
    assert f.ino in w.purged and w.names(ROOT) == []


def test_an_unlinked_open_file_is_a_stray_until_released() -> None:
    w = World()
    f = w.create(ROOT, b"f")
    w.run(ns.unlink, mds_pb2.UnlinkOp(parent=ROOT, name=b"f"), opened=frozenset({f.ino}))
    assert f.ino not in w.purged
    assert layout.anchor_key(f.ino) in w.objects[layout.STRAY]
    assert w.run(ns.getattr_, f.ino).nlink == 0  # still there for the open file
    w.run(ns.release_stray, f.ino)
    assert f.ino in w.purged and not w.objects[layout.STRAY]


def test_errors_are_the_posix_errnos() -> None:
    w = World()
    d = w.create(ROOT, b"d", stat.S_IFDIR | 0o755)
    w.create(d.ino, b"inner")
    f = w.create(ROOT, b"f")

    def errno_of(fn, *args) -> int:
        with pytest.raises(FsError) as exc:
            w.run(fn, *args)
        return exc.value.errno

    assert errno_of(ns.unlink, mds_pb2.UnlinkOp(parent=ROOT, name=b"d", rmdir=True)) == \
        E.ENOTEMPTY
    assert errno_of(ns.unlink, mds_pb2.UnlinkOp(parent=ROOT, name=b"d")) == E.EISDIR
    assert errno_of(ns.unlink, mds_pb2.UnlinkOp(parent=ROOT, name=b"f", rmdir=True)) == \
        E.ENOTDIR
    assert errno_of(ns.rename, mds_pb2.RenameOp(parent=ROOT, name=b"d", new_parent=d.ino,
                                                new_name=b"loop")) == E.EINVAL
    assert errno_of(ns.rename, mds_pb2.RenameOp(parent=ROOT, name=b"f", new_parent=ROOT,
                                                new_name=b"d")) == E.EISDIR
    assert errno_of(ns.link, mds_pb2.LinkOp(ino=d.ino, new_parent=ROOT, new_name=b"l"),
                    NOW) == E.EPERM
    assert errno_of(ns.lookup, ROOT, b"x" * 256) == E.ENAMETOOLONG
    assert errno_of(ns.lookup, f.ino, b"x") == E.ENOTDIR
    with pytest.raises(FsError) as exc:
        w.create(ROOT, b"x" * 256)
    assert exc.value.errno == E.ENAMETOOLONG


def test_inode_numbers_come_from_reserved_ranges_and_are_never_reused() -> None:
    w = World()
    inos = [w.create(ROOT, f"f{i}".encode()).ino for i in range(10)]
    assert len(set(inos)) == 10 and min(inos) >= layout.FIRST_INO
    w.forget()  # a restart reserves a fresh range: nothing handed out before comes back
    later = [w.create(ROOT, f"g{i}".encode()).ino for i in range(5)]
    assert not set(later) & set(inos)


def test_setgid_directories_pass_their_group_on() -> None:
    w = World()
    d = w.create(ROOT, b"sg", stat.S_IFDIR | 0o2775)
    w.run(ns.setattr_, mds_pb2.SetAttrOp(ino=d.ino, gid=77), mds_pb2.Caller(), NOW)
    child = w.create(d.ino, b"sub", stat.S_IFDIR | 0o755)
    assert child.gid == 77 and child.mode & stat.S_ISGID


def test_journal_frames_round_trip_and_a_torn_tail_ends_the_journal() -> None:
    records = [frame(b"a" * n) for n in (0, 1, 100)]
    data = b"".join(records)
    got, end = unframe(data + records[2][:50])
    assert [p for _, p in got] == [b"", b"a", b"a" * 100] and end == len(data)
    corrupt = bytearray(data)
    corrupt[len(records[0]) + 8] ^= 0xFF  # the payload of the second record
    got, _ = unframe(bytes(corrupt))
    assert len(got) == 1


def test_write_behind_coalesces_in_write_order() -> None:
    runs = coalesce([(0, b"aaaa"), (2, b"bb"), (10, b"cc"), (4, b"dddddd"), (1, b"e"),
                     (100, b"z")])
    assert runs == [(0, bytearray(b"aebbddddddcc")), (100, bytearray(b"z"))]
    assert extents(4 << 20, 10, 4 << 20) == [(1, 0, 10, 0)]
    assert extents((4 << 20) - 2, 4, 4 << 20) == [(0, (4 << 20) - 2, 2, 0), (1, 0, 2, 2)]


def test_a_big_directory_is_listed_in_pages_and_never_loaded_whole() -> None:
    w = World()
    d = w.create(ROOT, b"big", stat.S_IFDIR | 0o755)
    names = [f"f{i:04}" for i in range(40)]
    for name in names:
        w.create(d.ino, name.encode())
    w.forget()  # the MDS restarted: nothing of the directory is cached
    assert w.names(d.ino) == names
    assert w.cache.dentry_count < 10  # pages went through the cache, they did not stay
    # emptiness of a directory that is not cached comes from the store too
    with pytest.raises(FsError) as exc:
        w.run(ns.unlink, mds_pb2.UnlinkOp(parent=ROOT, name=b"big", rmdir=True))
    assert exc.value.errno == E.ENOTEMPTY
    for name in names:
        w.run(ns.unlink, mds_pb2.UnlinkOp(parent=d.ino, name=name.encode()))
    w.forget()
    w.run(ns.unlink, mds_pb2.UnlinkOp(parent=ROOT, name=b"big", rmdir=True))
    assert w.names(ROOT) == []
