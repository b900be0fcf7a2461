"""What the generated classes need beyond `Runner.call`: the blocking twins of ``await x``,
``async for`` and ``async with`` (kept apart from the runner so each can change alone)."""

from __future__ import annotations

import contextlib
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
)
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from kernel_async import KernelError

from ._runner import Runner

__all__ = ["await_", "enter", "iterate", "leave"]

T = TypeVar("T")


async def await_(awaitable: Awaitable[T]) -> T:
    """``await awaitable`` as a coroutine function, for `Runner.call`."""
    return await awaitable


_DONE = object()


async def _next(iterator: AsyncIterator[T]) -> T | object:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return _DONE  # a coroutine must not leak StopAsyncIteration through a future


def iterate(runner: Runner, source: AsyncIterable[T]) -> Iterator[T]:
    """``for x in iterate(runner, source)``: ``async for`` on the loop thread, one item per
    step; leaving the loop early closes the async iterator there too."""
    iterator = source.__aiter__()
    try:
        while True:
            item = runner.call(_next, iterator)
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None and not runner.closed:
            # Left early (or collected at exit): end the async iterator where it lives.
            # A client closed meanwhile has nothing left to clean up there.
            with contextlib.suppress(KernelError):
                runner.call(aclose)


def enter(runner: Runner, context: AbstractAsyncContextManager[object], entered: T) -> T:
    """``async with``'s entry, blocking (then `entered` is returned), run to its end
    whatever interrupts it (`Runner.call_to_end`). Interrupted although the entry took
    effect (a Ctrl-C just as it finished), the context is exited at once with that
    interruption: nothing it opened (a browser, a recording) outlives a ``with`` whose
    ``__exit__`` will never run."""

    def undo(interrupt: BaseException) -> Coroutine[Any, Any, object]:
        return await_(context.__aexit__(type(interrupt), interrupt, interrupt.__traceback__))

    runner.call_to_end(_enter, context, undo=undo)
    return entered


async def _enter(context: AbstractAsyncContextManager[object]) -> None:
    await context.__aenter__()


def leave(runner: Runner, fn: Callable[..., Coroutine[Any, Any, object]], /, *args: Any) -> None:
    """``async with``'s exit, blocking, run to its end (`Runner.call_to_end`); also on a
    client closed inside the block: the async exit reports what that meant for its
    cleanup, and the block's own exception is kept."""
    runner.call_to_end(fn, *args, even_if_closed=True)
