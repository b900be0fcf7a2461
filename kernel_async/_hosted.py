"""In-process API servers (the emulator) and the event loops serving them.

A blocking `kernel_sync.Kernel` used on the thread whose running loop serves its API
would block that loop and wait for an answer that can never come. Knowing which loop
serves which address lets the sync client refuse at once, with advice, instead.
"""

from __future__ import annotations

import sys
import threading
from urllib.parse import urlsplit

from ._errors import KernelError

__all__ = ["check_blocking_client", "served", "unserved"]

_loops: dict[str, object] = {}  # "host:port" -> the event loop serving it
_lock = threading.Lock()


def served(base_url: str, loop: object) -> None:
    """Record that `loop` serves `base_url` (called by the emulator when it starts)."""
    with _lock:
        _loops[_key(base_url)] = loop


def unserved(base_url: str) -> None:
    """Forget `base_url` (called by the emulator when it stops)."""
    with _lock:
        _loops.pop(_key(base_url), None)


def check_blocking_client(base_url: str) -> None:
    """Raise `KernelError` if the running loop of this thread serves `base_url`."""
    if not _loops:
        return
    asyncio = sys.modules.get("asyncio")  # not imported: no loop can be running
    loop = asyncio._get_running_loop() if asyncio is not None else None
    if loop is not None and _loops.get(_key(base_url)) is loop:
        raise KernelError(
            f"the Kernel API emulator at {base_url} runs on this thread's event loop, which "
            "a blocking kernel_sync call would block: the call could never be answered. "
            "Start the emulator with `FakeKernel.in_thread()` (its own thread), or use the "
            "async client: `async with fake.client() as client: await ...`"
        )


def _key(base_url: str) -> str:
    return urlsplit(base_url).netloc.lower()
