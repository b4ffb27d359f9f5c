"""The capability state machines, without I/O: the MDS's table of leases and exclusive
directories (mds/caps.py) and a mount's cache of what it may answer and do itself
(mds/client/caps.py)."""

from __future__ import annotations

import stat

from mds.caps import CapTable
from mds.client.caps import ABSENT, MountCache
from rados_py.proto.loligo import mds_pb2

A, B = "client.a", "client.b"
DIR, OTHER = 0x100, 0x200


def test_a_directory_only_one_client_caches_is_that_clients() -> None:
    caps = CapTable()
    caps.lease_dir(A, DIR)
    assert caps.try_grant(A, DIR)
    assert caps.try_grant(A, DIR)  # asking again changes nothing
    caps.lease_dir(B, OTHER)
    caps.lease_dir(A, OTHER)
    assert not caps.try_grant(A, OTHER)  # B caches it too: shared, no exclusive holder
    assert caps.conflicts(B, [DIR, OTHER]) == [(A, DIR)]  # B must wait for a recall
    assert caps.conflicts(A, [DIR]) == []
    assert caps.release(A, DIR) and not caps.release(A, DIR)
    assert caps.conflicts(B, [DIR]) == []
    caps.lease_dir(B, DIR)  # B looked into it: A cannot have it back alone
    assert not caps.try_grant(A, DIR)


def test_a_new_directory_is_its_makers_and_goes_with_its_session() -> None:
    caps = CapTable()
    caps.grant_new(A, DIR)
    assert caps.excl[DIR] == A and A in caps.dir_leases[DIR]
    caps.grant_new(A, OTHER)
    assert caps.drop_exclusive(A) == [DIR, OTHER]  # a broken stream: leases stay
    assert A in caps.dir_leases[DIR] and not caps.excl
    caps.grant_new(A, DIR)
    caps.lease_inode(A, 7)
    assert caps.drop_client(A) == [DIR]  # evicted or closed: everything goes
    assert not caps.dir_leases and not caps.inode_leases and not caps.excl


def test_changes_invalidate_the_other_holders_once() -> None:
    caps = CapTable()
    for client in (A, B):
        caps.lease_inode(client, 7)
        caps.lease_dir(client, DIR)
    told = caps.changed(A, [7, 7], [(DIR, b"x")])
    assert [(c, inv.ino, inv.parent, inv.name) for c, inv in told] == [
        (B, 7, 0, b""), (B, 0, DIR, b"x")]
    # the inode lease went with its invalidation; the directory lease stays
    assert [c for c, _ in caps.changed(A, [7], [(DIR, b"y")])] == [B]
    caps.forget(B, [DIR])
    assert caps.changed(A, [7], [(DIR, b"z")]) == []


def test_forgetting_an_exclusive_directory_gives_it_back() -> None:
    caps = CapTable()
    caps.grant_new(A, DIR)
    caps.forget(A, [DIR])
    assert DIR not in caps.excl and caps.try_grant(B, DIR) is True


def _inode(ino: int, mode: int = stat.S_IFREG | 0o644) -> mds_pb2.Inode:
    return mds_pb2.Inode(ino=ino, mode=mode, nlink=1)


def test_a_mount_answers_lookups_only_in_directories_it_holds_whole() -> None:
    m = MountCache()
    assert m.lookup(DIR, b"x") is None  # unknown: ask the MDS
    m.granted([DIR])
    assert m.lookup(DIR, b"x") is None  # held, but its names are not all known
    m.made_dir(DIR)
    assert m.lookup(DIR, b"x") is ABSENT
    m.named(DIR, b"x", _inode(5))
    assert m.lookup(DIR, b"x") is None  # known, attributes not cached
    m.remember(_inode(5))
    assert m.lookup(DIR, b"x").ino == 5
    m.named(DIR, b"x", None)
    assert m.lookup(DIR, b"x") is ABSENT


def test_recalls_invalidations_and_a_lost_session_end_exclusivity() -> None:
    m = MountCache()
    m.made_dir(DIR)
    m.recalled(DIR)
    assert m.exclusive(DIR) is None
    m.made_dir(DIR)
    m.remember(_inode(5))
    m.invalidated(mds_pb2.Invalidate(parent=DIR, name=b"y"))  # another mount changed it
    assert m.exclusive(DIR) is None and 5 in m.inodes
    m.invalidated(mds_pb2.Invalidate(ino=5))
    assert 5 not in m.inodes
    m.made_dir(DIR)
    m.add_delegated(1000, 2)
    m.session_lost()
    assert m.exclusive(DIR) is None and not m.has_ino()


def test_a_listing_read_across_a_local_change_is_not_complete() -> None:
    m = MountCache()
    m.granted([DIR])
    d = m.dir(DIR)
    start = d.changes
    d.changes += 1  # a create here while the pages came
    m.listed(DIR, {b"a": (5, stat.S_IFREG)}, start)
    assert m.exclusive(DIR) is None
    m.listed(DIR, {b"a": (5, stat.S_IFREG)}, d.changes)
    assert m.exclusive(DIR) is not None and m.lookup(DIR, b"b") is ABSENT


def test_delegated_numbers_are_used_in_order_once() -> None:
    m = MountCache()
    m.add_delegated(100, 2)
    m.add_delegated(500, 1)
    assert [m.take_ino() for _ in range(3)] == [100, 101, 500]
    assert not m.has_ino()


def test_kernel_lookup_counts_decide_what_is_forgotten() -> None:
    m = MountCache()
    m.counted(5)
    m.counted(5)
    m.remember(_inode(5))
    assert not m.forget(5, 1) and 5 in m.inodes
    assert m.forget(5, 1) and 5 not in m.inodes
