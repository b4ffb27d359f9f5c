"""Where the file system keeps what, in RADOS (CephFS's layout, simplified):

    metadata pool
      <dir ino hex>.00000000   a directory: omap name -> Dentry (the inode inline when it has
                               one link, else a remote link to the anchor table)
      mds.anchor.<shard>       omap ino (16 hex) -> Anchor: where an inode's primary dentry
                               is, or the inode itself (hard-linked, or unlinked but open)
      mds.inotable             the inode allocator: the next number never handed out
      mds.journal              the journal header; segments mds.journal.<seg 16 hex>
    data pool
      <ino hex>.<block 8 hex>  file data, object_size bytes per object (4 MiB by default)
"""

from __future__ import annotations

import stat

ROOT_INO = 1
FIRST_INO = 0x10000000000  # as CephFS: user inodes start at 2^40
ANCHOR_SHARDS = 16
DEFAULT_OBJECT_SIZE = 4 << 20
INOTABLE = b"mds.inotable"
JOURNAL_HEADER = b"mds.journal"
STRAY = b"mds.stray"  # omap ino -> Anchor of unlinked inodes still open somewhere
NAME_MAX = 255


def dir_object(ino: int) -> bytes:
    return f"{ino:x}.00000000".encode()


def anchor_object(ino: int) -> bytes:
    return f"mds.anchor.{ino % ANCHOR_SHARDS:x}".encode()


def anchor_key(ino: int) -> bytes:
    return f"{ino:016x}".encode()


def journal_segment(seg: int) -> bytes:
    return f"mds.journal.{seg:016x}".encode()


def data_object(ino: int, block: int) -> bytes:
    return f"{ino:x}.{block:08x}".encode()


def is_dir(mode: int) -> bool:
    return stat.S_ISDIR(mode)
