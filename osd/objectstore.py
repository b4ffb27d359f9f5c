"""The OSD's local object store: one interface (`ObjectStore`), two backends.

- `MemoryStore` for unit and simulation tests;
- `DurableStore(path)` for everything else: metadata in SQLite (WAL, synchronous=FULL), data in
  immutable, checksummed 1 MiB block files named by a counter, group commit.

The code is split by idea: `objectstore_api` (limits, errors, `Transaction`, the interface),
`objectstore_memory` and `objectstore_durable` (the backends, whose docstrings give the design).
Import everything from here.
"""

from __future__ import annotations

from osd.objectstore_api import (
    BLOCK_SIZE,
    MAX_COLL_NAME,
    MAX_NAME,
    MAX_OBJECT_SIZE,
    MAX_XATTR_VALUE,
    AlreadyExists,
    ChecksumError,
    InvalidArgument,
    NotFound,
    ObjectStat,
    ObjectStore,
    Op,
    StoreFull,
    Transaction,
)
from osd.objectstore_durable import INLINE_MAX, DurableStore
from osd.objectstore_memory import MemoryStore

__all__ = [
    "BLOCK_SIZE", "INLINE_MAX", "MAX_COLL_NAME", "MAX_NAME", "MAX_OBJECT_SIZE", "MAX_XATTR_VALUE",
    "AlreadyExists", "ChecksumError", "DurableStore", "InvalidArgument", "MemoryStore",
    "NotFound", "ObjectStat", "ObjectStore", "Op", "StoreFull", "Transaction",
]
