"""Loligo's shared core and client library; `from rados_py import Rados` is python-rados-like.

The client classes are imported lazily (PEP 562) so that importing any `rados_py.*` module
(as every daemon does) does not pull in the client library and its gRPC stubs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Completion", "Error", "ObjectExists", "ObjectNotFound", "ObjectOp", "Rados",
           "SyncIoctx", "TimedOut"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from rados_py import rados, sync_rados

        if name == "Rados":
            return sync_rados.SyncRados
        if name == "ObjectOp":
            return rados.ObjectOp
        return getattr(sync_rados, name)
    raise AttributeError(f"module 'rados_py' has no attribute {name!r}")
