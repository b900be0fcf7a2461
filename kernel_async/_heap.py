"""Keep glibc's malloc from returning and re-faulting the heap on every large read.

asyncio reads a socket up to 256 KiB at a time, into a new buffer each read, and aiohttp
copies each read's body once more. In a process whose heap has never held a large block,
glibc gives such buffers back to the kernel as soon as they are freed (the free space at
the top of the heap passes its trim threshold) and the next read faults fresh zeroed pages
in again: measured, 5 to 18 page faults per 64 KiB event, and 60 µs of CPU per event
becoming 70 to 115 µs.

glibc raises both its mmap and its trim threshold when a block it had mapped is freed
(the dynamic threshold described in mallopt(3)). Freeing one 1 MiB block, once per
process before the first streamed body, does that: large reads then reuse heap memory,
and the process keeps at most about 2 MiB of freed heap it would otherwise have handed
back. It is the state any process reaches once it has freed a 1 MiB buffer. Elsewhere
(another C library, or glibc with the thresholds fixed by ``mallopt`` or
``MALLOC_MMAP_THRESHOLD_``) the block is only allocated and freed.
"""

from __future__ import annotations

import os
import sys
from typing import Final

__all__ = ["BLOCK", "settle"]

BLOCK: Final = 1024 * 1024
_settled = False


def uses_glibc() -> bool:
    """Whether this process's C library is glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return False
    return bool(version) and str(version).startswith("glibc")


def settle() -> bool:
    """Free one `BLOCK`-sized block, once per process, on glibc; return whether this call
    did it (later calls, and other C libraries, do nothing)."""
    global _settled
    if _settled:
        return False
    _settled = True
    if not uses_glibc():
        return False
    block = bytes(BLOCK)  # calloc: mapped, its pages never touched
    del block
    return True
