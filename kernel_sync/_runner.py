"""The runtime under the generated sync classes: one asyncio event loop on a daemon
thread, owned by this module and shared by every live client through leases.

One model: a plain loop thread, chosen by measurement over an anyio BlockingPortal
(a no-op round trip: ~13,000-21,000 calls/s against the portal's ~7,000-11,000 on
the 2-core reference machine); the core still uses anyio inside the loop.

- Nothing starts until a client's first call; the thread stops when the last lease goes.
- The aiohttp session lives on that loop, so it never hops loops.
- Safe from many threads; works when the calling thread runs its own loop (Jupyter).
- After ``os.fork()`` the child starts a fresh loop and its clients fresh sessions;
  every lock the runtime holds is re-made in the child, so a fork during another
  thread's first call cannot deadlock it.
- A daemon thread plus finalizers: interpreter exit never hangs, open sessions are
  closed (no "Unclosed client session"), also when the last reference to a client
  is dropped on the loop thread itself (in an ``on_retry`` hook, say).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from kernel_async import APIConnectionError, AsyncKernel, KernelBlockingWarning, KernelError
from kernel_async._hosted import check_blocking_client

if TYPE_CHECKING:
    import asyncio
    from types import FrameType

__all__ = ["Runner", "blocking_site"]

T = TypeVar("T")

# Bound on closing a client and on a call's own cleanup after Ctrl-C: never hang.
_CLOSE_TIMEOUT = 5.0
# A blocking wait wakes this often so that a Ctrl-C handled meanwhile is acted on.
_POLL = 0.1


class _LoopThread:
    """One asyncio event loop running forever on a daemon thread."""

    def __init__(self) -> None:
        import asyncio  # here: constructing a client (or importing kernel_sync) starts nothing

        self.leases = 0
        self.pid = os.getpid()
        # Once stopping, no new work is taken: it could land after the loop's last turn
        # and wait forever. The lock makes "accept" and "stop accepting" exclusive.
        self.accepting = True
        self.gate = threading.Lock()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(ready,), name="kernel-sync-loop", daemon=True
        )
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        import asyncio
        import signal

        # The kernel delivers a process signal to any thread that does not block it. Were
        # Ctrl-C to land here, the main thread's blocking wait would never be woken: keep
        # it for the main thread (threads started from here inherit the mask).
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        try:
            self.loop.run_forever()
        finally:
            self._drain()

    def _drain(self) -> None:
        """After the loop stops: let closing tasks finish, cancel stragglers, close."""
        import asyncio

        loop = self.loop
        with contextlib.suppress(Exception):
            # One turn first: a close submitted just before the stop becomes a task.
            loop.run_until_complete(asyncio.sleep(0))
            tasks = asyncio.all_tasks(loop)
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT))
            for task in (tasks := asyncio.all_tasks(loop)):
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for its outcome. An interruption of the wait
        (Ctrl-C) cancels the task and waits, at most `_CLOSE_TIMEOUT`, for its cleanup
        (a download's temporary file, say) before it is raised."""
        call = self._submit(coro)
        try:
            # Short waits, not one long one: a Ctrl-C handled while this thread sleeps
            # (delivered to another thread, or `_thread.interrupt_main()`) only runs its
            # handler when this thread next executes Python code.
            while not call.done.acquire(True, _POLL):
                pass
        except BaseException:
            # Landing just after the lock was taken, it finds the call over: nothing to undo.
            if not call.finished:
                self._cancel(call)
                call.done.acquire(True, _CLOSE_TIMEOUT)
            raise
        return call.outcome()

    def call_to_end(
        self,
        coro: Coroutine[Any, Any, T],
        undo: Callable[[BaseException], Coroutine[Any, Any, object]] | None = None,
    ) -> T:
        """Run `coro` on the loop to its end, whatever interrupts the wait.

        The first interruption (Ctrl-C) cancels the task (its own shields decide what
        still runs) and is raised once the task has settled; later ones are held or
        dropped. If the task succeeded although the caller was interrupted (a Ctrl-C
        just as it finished), the caller will never see its result: `undo` runs, to
        its end as well, with the interruption it is about to receive.
        """
        with _HeldInterrupts() as held:
            call = self._submit(coro)
            held.on_interrupt = functools.partial(self._cancel, call)
            if held.count:  # held before `on_interrupt` was set
                self._cancel(call)
            interrupt = _settle(call, held)
            if interrupt is None:
                return call.outcome()
            if undo is not None and call.succeeded:
                held.on_interrupt = None  # the undo is not to be cancelled: it is the cleanup
                _settle(self._submit(undo(interrupt)), held)
        raise interrupt

    def _submit(self, coro: Coroutine[Any, Any, T]) -> _Call[T]:
        if threading.current_thread() is self.thread:
            coro.close()
            raise KernelError(
                "a blocking kernel_sync call was made on kernel_sync's own event-loop thread "
                "(e.g. from an on_retry hook); use kernel_async.AsyncKernel in async code"
            )
        call = _Call(coro)
        with self.gate:
            if not self.accepting:
                coro.close()
                raise KernelError("this client is closed; create a new Kernel")
            self.loop.call_soon_threadsafe(call.start)
        return call

    def _cancel(self, call: _Call[Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self.loop.call_soon_threadsafe(call.cancel)

    def submit(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` on the loop without waiting (from any thread, the loop's included)."""
        self.loop.call_soon_threadsafe(self.loop.create_task, coro)

    def stop(self) -> None:
        with self.gate:
            self.accepting = False
        if threading.current_thread() is self.thread:
            self.loop.stop()  # run_forever returns after this turn; _drain then finishes
            return
        with contextlib.suppress(RuntimeError):  # already closed
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=_CLOSE_TIMEOUT * 2)


class _Call(Generic[T]):
    """One blocking call's hand-off to the loop thread. The caller waits on `done`, a
    lock released as the call's coroutine ends, with its outcome already stored: the
    cheapest wake-up CPython has, and no loop turn for a done-callback (a no-op round
    trip took ~75 µs this way against ~100 µs through a concurrent future and an event).
    """

    __slots__ = ("cancelled", "coro", "done", "error", "finished", "result", "task")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self.coro = coro
        self.task: asyncio.Task[None] | None = None
        self.result: T | None = None
        self.error: BaseException | None = None
        self.finished = False  # the outcome is stored (set before `done` is released)
        self.cancelled = False  # a cancel was sent (once: a handler and the waiter may both ask)
        self.done = threading.Lock()
        self.done.acquire()

    def start(self) -> None:
        """On the loop thread: run the coroutine as a task."""
        import asyncio

        self.task = asyncio.get_running_loop().create_task(self._run())
        # A task cancelled before its first step never runs `_run` (the loop's drain
        # may do that): then this settles the call.
        self.task.add_done_callback(self._never_ran)

    async def _run(self) -> None:
        try:
            self.result = await self.coro
        except BaseException as exc:  # handed to the caller, raised in its thread
            self.error = exc
        finally:
            self._finish()

    def _finish(self) -> None:
        self.finished = True
        self.done.release()

    def _never_ran(self, _task: object) -> None:
        if not self.finished:
            import asyncio

            self.coro.close()
            self.error = asyncio.CancelledError()
            self._finish()

    def cancel(self) -> None:
        """On the loop thread: the caller was interrupted; end the task (its cleanup
        runs). One turn later: `start` may have run in this very turn, and a task
        cancelled before its first step would never run its cleanup at all."""
        task = self.task
        if task is not None and not self.finished and not self.cancelled:
            self.cancelled = True
            task.get_loop().call_soon(task.cancel)

    @property
    def succeeded(self) -> bool:
        """Whether the coroutine returned (in the caller's thread, once finished)."""
        return self.finished and self.error is None

    def outcome(self) -> T:
        """In the caller's thread, once `done` was released: the result, or the error."""
        error, self.error = self.error, None
        if error is None:
            return self.result  # type: ignore[return-value]  # set when no error
        from asyncio import CancelledError  # imported by now: the loop runs

        if isinstance(error, CancelledError):
            # The loop was stopped under the call: its client was closed meanwhile.
            raise APIConnectionError(
                "the client was closed while this call was in flight; create a new client"
            ) from None
        try:
            raise error
        finally:
            del error  # its traceback holds this frame: no cycle left behind


def _settle(call: _Call[Any], held: _HeldInterrupts) -> BaseException | None:
    """Wait until `call` has settled, whatever interrupts the wait; return the first
    interruption (then the call was cancelled), or None.

    The loop ends on `call.finished`, never on the lock alone: an exception landing just
    after the lock was taken would lose that wake-up, and the wait would never end.
    """
    interrupt: BaseException | None = None
    while not call.finished:
        try:
            call.done.acquire(True, _POLL)
        except BaseException as exc:  # from a signal handler that could not be held
            if interrupt is None:
                interrupt = exc
                if held.on_interrupt is not None:
                    held.on_interrupt()
    if interrupt is None and held.count:
        interrupt = KeyboardInterrupt()
    return interrupt


class _HeldInterrupts:
    """While a step runs to its end: Ctrl-C is counted instead of raised.

    Only in the main thread with Python's own SIGINT handler in place (the one that
    raises KeyboardInterrupt), which is then swapped for a counting one; the first
    Ctrl-C calls `on_interrupt`. A KeyboardInterrupt raised anywhere in the wait could
    escape it (Python checks for signals between any two bytecodes, handlers included)
    and leave the step running unwatched; counted, none is lost. Elsewhere nothing is
    swapped and `_settle` catches what a handler raises.
    """

    def __init__(self) -> None:
        self.count = 0
        self.on_interrupt: Callable[[], None] | None = None
        self._previous: Any = None

    def __enter__(self) -> _HeldInterrupts:
        import signal

        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError):  # not the main interpreter
                if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                    self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.count == 1 and self.on_interrupt is not None:
            self.on_interrupt()

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            import signal

            signal.signal(signal.SIGINT, self._previous)


# CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR, as `inspect` names them
# (not imported for three numbers: it is slow to import).
_COROUTINE_CODE = 0x80 | 0x100 | 0x200


def blocking_site(frame: FrameType | None) -> tuple[int, bool]:
    """Where a blocking call entering kernel_sync at `frame` comes from.

    Returns how many frames outwards from `frame` the caller's code is (kernel_sync's
    own frames skipped; 1 is `frame` itself) and whether that code runs inside a
    coroutine: walking outwards from it, the body of an ``async def`` (or top-level code
    using ``await``) comes before any module's top-level code. A notebook cell is
    top-level code run by the notebook's own coroutine: it is reached first, so a cell
    calling the blocking client is not "inside a coroutine", while an ``async def``
    calling it, directly or through plain functions, is.
    """
    level = 1
    while frame is not None and _in_kernel_sync(frame):
        frame, level = frame.f_back, level + 1
    while frame is not None:
        code = frame.f_code
        if code.co_flags & _COROUTINE_CODE:
            return level, True
        if code.co_name == "<module>":
            break
        frame = frame.f_back
    return level, False


def _in_kernel_sync(frame: FrameType) -> bool:
    name = frame.f_globals.get("__name__", "")
    return isinstance(name, str) and (name == "kernel_sync" or name.startswith("kernel_sync."))


_lock = threading.Lock()
_current: _LoopThread | None = None
_runners: weakref.WeakSet[Runner] = weakref.WeakSet()


def _acquire() -> _LoopThread:
    global _current
    with _lock:
        if _current is None:
            _current = _LoopThread()
        _current.leases += 1
        return _current


def _release(host: _LoopThread) -> None:
    global _current
    with _lock:
        if host.pid != os.getpid():
            return
        host.leases -= 1
        if host.leases > 0:
            return
        if _current is host:
            _current = None
    host.stop()


def _after_fork_in_child() -> None:
    # The parent's loop thread does not exist here, and any lock another thread held at
    # the fork stays held forever in the child: re-make them all, start afresh on use.
    # Every client forgets the parent's session at once, used here or not.
    global _current, _lock
    _lock = threading.Lock()
    _current = None
    for runner in list(_runners):
        runner._lock = threading.Lock()
        runner._abandon_parents_session()


os.register_at_fork(after_in_child=_after_fork_in_child)

# Sessions of the parent that a child must neither use nor close (closing could send
# TLS close_notify on the parent's connections); kept referenced so no finalizer runs.
_abandoned: list[object] = []


class Runner:
    """The lease and lifecycle of one root sync client (shared by its `with_options` copies)."""

    def __init__(self, client: AsyncKernel) -> None:
        self._client = client
        self._host: _LoopThread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._warned = False  # KernelBlockingWarning was issued for this client
        # What the finalizer needs, without referencing self (which would keep it alive).
        self._state = _LeaseState()
        self._finalizer = weakref.finalize(self, _close, client, self._state)
        _runners.add(self)

    @property
    def closed(self) -> bool:
        """Whether the client was closed (by `close()`, a finalizer or interpreter exit)."""
        return self._closed or self._state.closed

    def _abandon_parents_session(self) -> None:
        # Forked: the session belongs to the parent; forget it without closing it.
        session = self._client._shared.session
        if session is not None:
            _abandoned.append(session)
        self._client._after_fork()

    def _lease(self, even_if_closed: bool = False) -> _LoopThread | None:
        """The client's loop; None if it is closed and `even_if_closed`."""
        host = self._host
        if host is not None and host.pid == os.getpid():
            return host
        with self._lock:
            if self.closed:
                if even_if_closed:
                    return None
                raise KernelError("this client is closed; create a new Kernel")
            host = self._host
            if host is not None and host.pid != os.getpid():
                host = None  # forked (the parent's session was dropped at the fork)
            if host is None:
                host = _acquire()
                self._host = host
                self._state.host = host
            return host

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], /, *args: Any, **kwargs: Any) -> T:
        """Run a coroutine function of the async core on the loop thread and wait for it."""
        check_blocking_client(self._client.base_url)  # a dict lookup unless emulators run
        host = self._lease()
        assert host is not None
        if not self._warned:
            self._warn_if_blocking(host)
        return host.call(fn(*args, **kwargs))

    def call_to_end(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        /,
        *args: Any,
        undo: Callable[[BaseException], Coroutine[Any, Any, object]] | None = None,
        even_if_closed: bool = False,
    ) -> T:
        """`call`, run to its end: a Ctrl-C cancels the task, waits until it has settled
        (further Ctrl-Cs held) and is raised then; `undo` runs if the task succeeded all
        the same (see `_LoopThread.call_to_end`). For ``__aenter__``/``__aexit__``, whose
        cleanup shields itself from cancellation: the interpreter must not exit (closing
        the pool) under it.

        `even_if_closed`: on a closed client, run on a lease of its own instead of
        raising (a context's exit: the async side decides what a closed client means
        for its cleanup, and the block's own exception is not replaced).
        """
        check_blocking_client(self._client.base_url)
        host = self._lease(even_if_closed)
        if host is None:
            host = _acquire()
            try:
                return host.call_to_end(fn(*args), undo)
            finally:
                _release(host)
        if not self._warned:
            self._warn_if_blocking(host)
        return host.call_to_end(fn(*args), undo)

    def _warn_if_blocking(self, host: _LoopThread) -> None:
        """Warn, once, if this call blocks the running event loop of a coroutine."""
        asyncio = sys.modules.get("asyncio")  # imported: the loop thread runs
        if asyncio is None or asyncio._get_running_loop() is None:
            return
        if threading.current_thread() is host.thread:
            return  # refused with advice by the call itself
        stacklevel, in_coroutine = blocking_site(sys._getframe(1))
        if not in_coroutine:
            return
        self._warned = True
        import warnings

        warnings.warn(
            "a blocking kernel_sync call was made from a coroutine (`async def`) running on "
            "this thread's event loop: every call blocks that loop, and all its other "
            "tasks, until it returns. In async code use kernel_async.AsyncKernel (the same "
            "API, awaited), or run the call in a thread (asyncio.to_thread). Warned once "
            "per client; silence it with warnings.filterwarnings('ignore', "
            "category=kernel_sync.KernelBlockingWarning)",
            KernelBlockingWarning,
            stacklevel=stacklevel + 1,
        )

    def close(self) -> None:
        """Close the client's session and release the loop lease. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._host = None
        self._finalizer()  # runs _close once, now


class _LeaseState:
    """A runner's lease as its finalizer sees it (without a reference to the runner)."""

    __slots__ = ("closed", "host")

    def __init__(self) -> None:
        self.host: _LoopThread | None = None
        self.closed = False


def _close(client: AsyncKernel, state: _LeaseState) -> None:
    """Close `client` on its loop and release the lease; bounded, never raises.

    Runs from `close()`, from a finalizer (on any thread, the loop's own included)
    and at interpreter exit; later calls then get "this client is closed".
    """
    host, state.host, state.closed = state.host, None, True
    if host is None or host.pid != os.getpid():
        client._shared.closed = True  # nothing was opened in this process
        return
    try:
        if threading.current_thread() is host.thread:
            host.submit(client.close())  # cannot wait on our own loop: the drain will
        else:
            with contextlib.suppress(Exception):
                import asyncio

                future = asyncio.run_coroutine_threadsafe(client.close(), host.loop)
                future.result(timeout=_CLOSE_TIMEOUT)
    finally:
        _release(host)
