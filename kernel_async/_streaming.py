"""Server-sent event streams: ``stream = await client.browsers.logs.stream(...)``,
then ``async for event in stream``; ``async with stream`` or ``await stream.close()``.

The body is read by the client's request loop in a task of the stream's own; each
chunk is parsed (`kernel_async._sse`) and every complete event waits in a small
bounded queue, so a slow consumer slows the reads. Errors before the first byte are
those of any call (retries, budget, deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._errors import APIConnectionError, APIResponseValidationError
from ._models import converter

if TYPE_CHECKING:
    from ._client import AsyncKernel
    from ._operation import Request
    from ._sse import SSEParser

__all__ = ["AsyncStream"]

T = TypeVar("T")
_END = object()
_QUEUE = 16  # events parsed ahead of the consumer


class _Sink:
    """Feeds each chunk of the body to the parser and queues the decoded events."""

    def __init__(self, stream: AsyncStream[Any]) -> None:
        self._stream = stream
        self.parser: SSEParser | None = None

    def restart(self, total: int | None, /) -> None:
        from ._sse import SSEParser

        if self._stream.received:
            # A retry after events were delivered would deliver them again.
            raise APIConnectionError(
                f"the {self._stream.operation} stream broke after "
                f"{self._stream.received} events and cannot be resumed",
                method="GET",
                url=self._stream.operation,
                attempts=1,
            )
        self.parser = SSEParser()

    async def write(self, data: bytes, /) -> None:
        assert self.parser is not None
        for event in self.parser.feed(data):
            if not event.data:
                continue
            await self._stream._queue.put(self._stream._decode(event.data))
            self._stream._opened.set()


class AsyncStream(Generic[T]):
    """A stream of typed events. Iterate it once; closing ends the connection."""

    def __init__(self, client: AsyncKernel, req: Request) -> None:
        self._client = client
        self._req = req
        self.operation = req.op.name
        self.received = 0
        self._queue: asyncio.Queue[Any] = asyncio.Queue(_QUEUE)
        self._opened = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._sink = _Sink(self)

    @classmethod
    async def open(cls, client: AsyncKernel, req: Request) -> AsyncStream[Any]:
        """Send the request; return once the response has begun (or raise its error)."""
        stream: AsyncStream[Any] = cls(client, req)
        stream._task = asyncio.ensure_future(stream._run())
        waiter = asyncio.ensure_future(stream._opened.wait())
        try:
            await asyncio.wait({stream._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            waiter.cancel()
            await stream.close()
            raise
        waiter.cancel()
        if stream._task.done() and stream._error is not None and stream._queue.empty():
            raise stream._error
        return stream

    async def _run(self) -> None:
        try:
            await self._client._request(
                self._req.op.method,
                _target(self._req),
                idempotent=self._req.op.replay,
                body=self._req.body,
                content_type=self._req.content_type,
                timeout=self._req.timeout,
                extra_headers=self._req.headers,
                read_limit=None,
                sink=self._sink,
            )
        except BaseException as exc:  # delivered to the consumer, in order
            self._error = exc
            self._opened.set()
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._opened.set()
            await self._queue.put(_END)

    def _decode(self, data: str) -> Any:
        try:
            return converter().structure(json.loads(data), result_type(self._req.op))
        except Exception as exc:
            raise APIResponseValidationError(
                f"an event of {self.operation} does not match its schema: {exc}",
                status_code=200,
                method=self._req.op.method,
                url=self.operation,
                attempts=1,
                body=data[:2000],
            ) from exc

    def __aiter__(self) -> AsyncIterator[T]:
        return self._events()

    async def _events(self) -> AsyncIterator[T]:
        try:
            while True:
                item = await self._queue.get()
                if item is _END:
                    if self._error is not None:
                        raise self._error
                    return
                self.received += 1
                yield item
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the connection (at once); idempotent."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncStream {self.operation}: {self.received} events received>"


def _target(req: Request) -> str:
    from ._operation import target

    return target(req)


def result_type(op: Any) -> Any:
    from ._operation import result_type as resolve

    return resolve(op)
