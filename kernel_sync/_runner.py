"""The runtime under the generated sync classes: one anyio blocking portal on a daemon
event-loop thread, shared by every live client through leases.

- Nothing starts until a client's first call; the thread stops when the last lease goes.
- The aiohttp session lives on the portal's loop, so it never hops loops.
- Safe from many threads; works when the calling thread runs its own loop (Jupyter).
- After ``os.fork()`` the child starts a fresh portal and its clients fresh sessions.
- A daemon thread plus an atexit-time finalizer: interpreter exit never hangs, and
  open sessions are closed (no "Unclosed client session").
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from kernel_async import AsyncKernel, KernelError

if TYPE_CHECKING:
    import asyncio

    from anyio.from_thread import BlockingPortal

__all__ = ["Runner"]

T = TypeVar("T")

# Bound on closing a client at exit or from a finalizer: never hang the interpreter.
_CLOSE_TIMEOUT = 5.0


class _Host:
    """One event-loop thread with a blocking portal."""

    def __init__(self) -> None:
        # Imported here: constructing a client (or importing kernel_sync) starts nothing.
        import concurrent.futures

        import anyio
        from anyio.from_thread import BlockingPortal

        ready: concurrent.futures.Future[BlockingPortal] = concurrent.futures.Future()
        self.leases = 0
        self.pid = os.getpid()

        async def main() -> None:
            async with BlockingPortal() as portal:
                ready.set_result(portal)
                await portal.sleep_until_stopped()

        def run() -> None:
            try:
                anyio.run(main)
            except BaseException as exc:  # pragma: no cover - surfaced to the starter
                if not ready.done():
                    ready.set_exception(exc)

        self.thread = threading.Thread(target=run, name="kernel-sync-portal", daemon=True)
        self.thread.start()
        self.portal = ready.result()
        # Calls go straight onto the portal's loop (one wake-up each way); the portal
        # owns the loop's life. anyio's own task spawning costs a second round trip.
        self.loop: asyncio.AbstractEventLoop = self.portal.call(_get_running_loop)

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], /, *args: Any, **kwargs: Any) -> T:
        if threading.current_thread() is self.thread:
            raise KernelError(
                "a blocking kernel_sync call was made on kernel_sync's own event-loop thread "
                "(e.g. from an on_retry hook); use kernel_async.AsyncKernel in async code"
            )
        from asyncio import run_coroutine_threadsafe

        future = run_coroutine_threadsafe(fn(*args, **kwargs), self.loop)
        try:
            return future.result()
        except BaseException:
            # KeyboardInterrupt (or any other interruption of the wait): cancel the task
            # so no request is left running, then let the interruption propagate.
            future.cancel()
            raise

    def stop(self) -> None:
        if threading.current_thread() is self.thread:
            # A finalizer running on the loop thread itself: ask, do not wait.
            self.portal.start_task_soon(self.portal.stop)
            return
        with contextlib.suppress(RuntimeError):  # already stopped
            self.portal.call(self.portal.stop)
        self.thread.join(timeout=_CLOSE_TIMEOUT)


async def _get_running_loop() -> asyncio.AbstractEventLoop:
    from asyncio import get_running_loop

    return get_running_loop()


_lock = threading.Lock()
_host: _Host | None = None


def _acquire() -> _Host:
    global _host
    with _lock:
        if _host is None:
            _host = _Host()
        _host.leases += 1
        return _host


def _release(host: _Host) -> None:
    global _host
    with _lock:
        if host.pid != os.getpid():
            return
        host.leases -= 1
        if host.leases > 0:
            return
        if _host is host:
            _host = None
    host.stop()


def _after_fork_in_child() -> None:
    # The parent's loop thread does not exist here; start afresh on first use.
    global _host, _lock
    _lock = threading.Lock()
    _host = None


os.register_at_fork(after_in_child=_after_fork_in_child)

# Sessions of the parent that a child must neither use nor close (closing could send
# TLS close_notify on the parent's connections); kept referenced so no finalizer runs.
_abandoned: list[object] = []


class Runner:
    """The lease and lifecycle of one root sync client (shared by its `with_options` copies)."""

    def __init__(self, client: AsyncKernel) -> None:
        self._client = client
        self._host: _Host | None = None
        self._lock = threading.Lock()
        self._closed = False
        # What the finalizer needs, without referencing self (which would keep it alive).
        self._state: list[_Host | None] = [None]
        self._finalizer = weakref.finalize(self, _finalize, client, self._state)

    def _lease(self) -> _Host:
        host = self._host
        if host is not None and host.pid == os.getpid():
            return host
        with self._lock:
            if self._closed:
                raise KernelError("this client is closed; create a new Kernel")
            host = self._host
            if host is not None and host.pid != os.getpid():
                # Forked: the session belongs to the parent. Forget it (without closing).
                session = self._client._shared.session
                if session is not None:
                    _abandoned.append(session)
                self._client._after_fork()
                host = None
            if host is None:
                host = _acquire()
                self._host = host
                self._state[0] = host
            return host

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], /, *args: Any, **kwargs: Any) -> T:
        """Run a coroutine function of the async core on the portal and wait for it."""
        return self._lease().call(fn, *args, **kwargs)

    def close(self) -> None:
        """Close the client's session and release the portal lease. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            host, self._host = self._host, None
            self._state[0] = None
        self._finalizer.detach()
        _close(self._client, host)


def _close(client: AsyncKernel, host: _Host | None) -> None:
    if host is None or host.pid != os.getpid():
        client._shared.closed = True  # nothing was opened in this process
        return
    try:
        # Best effort, bounded: this also runs from finalizers and at interpreter exit.
        with contextlib.suppress(Exception):
            future = host.portal.start_task_soon(client.close)
            if threading.current_thread() is not host.thread:
                future.result(timeout=_CLOSE_TIMEOUT)
    finally:
        _release(host)


def _finalize(client: AsyncKernel, state: list[_Host | None]) -> None:
    _close(client, state[0])
