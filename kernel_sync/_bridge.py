"""What the generated classes need beyond `Runner.call`: the blocking twins of ``await x``,
``async for`` and ``async with`` (kept apart from the runner so each can change alone)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from kernel_async import KernelError

from ._runner import Runner

__all__ = ["await_", "call_to_end", "iterate"]

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


def call_to_end(runner: Runner, fn: Callable[..., Awaitable[T]], /, *args: Any) -> T:
    """`Runner.call_to_end`: a Ctrl-C does not abandon the call (for ``__aenter__`` and
    ``__aexit__``, whose cleanup shields itself from cancellation)."""
    result: T = runner.call_to_end(await_, fn(*args))
    return result
