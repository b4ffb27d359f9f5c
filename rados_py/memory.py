"""Keep big buffers in the heap: glibc's malloc would map every buffer of 32 MiB and more
afresh (and unmap it when freed), and trim freed heap memory back to the kernel, so each big
payload - a 64 MiB write goes through half a dozen buffers between the wire and the disk -
page-faulted its way into fresh memory: on this machine kind that made a 64 MiB message cost
seconds, and 4 MiB ones several ms of CPU each. `tune()` (daemons and the CLI call it first
thing) makes malloc serve big buffers from the heap and keep what was freed for the next one.
The price is a resident size that stays at its peak, which admission control bounds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["tune"]

log = logging.getLogger(__name__)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30


def tune() -> bool:
    """Tune glibc's malloc for big buffers; False where there is no glibc (nothing done)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not ok:
        log.info("malloc tuning refused (not glibc?): big buffers stay mmapped")
    return ok
