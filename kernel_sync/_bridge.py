"""What the generated classes need beyond `Runner.call`: the blocking twins of ``await x``,
``async for`` and ``async with`` (kept apart from the runner so each can change alone)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

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
    """``for x in iterate(runner, source)``: ``async for`` on the portal, one item per
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
        if aclose is not None:
            runner.call(aclose)


def call_to_end(runner: Runner, fn: Callable[..., Awaitable[T]], /, *args: Any) -> T:
    """`Runner.call`, but a Ctrl-C does not abandon the call: for ``__aenter__`` and
    ``__aexit__``, whose cleanup shields itself from cancellation.

    The Ctrl-C cancels the task; the shielded cleanup inside goes on, and the
    interpreter must not exit (closing the pool) under it. So this waits until the
    task has settled, further Ctrl-Cs included, then raises KeyboardInterrupt.
    """
    settled = threading.Event()

    async def run() -> T:
        try:
            return await fn(*args)
        finally:
            settled.set()

    try:
        return runner.call(run)
    except KeyboardInterrupt:
        while True:
            try:
                if settled.wait(0.1):
                    break
            except KeyboardInterrupt:
                continue
        raise
