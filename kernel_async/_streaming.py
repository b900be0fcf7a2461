"""Server-sent event streams that survive dropped connections.

``stream = await client.browsers.logs.stream(...)``, then ``async for event in stream``;
``async with stream`` or ``await stream.close()`` ends it at once.

The body is read by the client's one request loop, in a task of the stream's own: each
chunk goes through the SSE parser (`kernel_async._sse`) and each complete event waits
in a small queue, bounded in events and in bytes, so a slow consumer slows the reads.
Before the first event, errors and retries are those of any call. Once events were
delivered, a connection that breaks (reset, a body cut short, a read failure: not a clean
end) is resumed with ``Last-Event-ID`` when the stream has carried an event id, after at
least the server's ``retry:`` wait (`_retry.resume` decides: budget, deadline, a bounded
number of reconnects); without an id it raises `StreamInterruptedError`. A half-received
event is never delivered, and none twice.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._errors import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    StreamInterruptedError,
)
from ._models import converter
from ._retry import Fail, Timeout, resume
from ._types import NotGiven

if TYPE_CHECKING:
    import asyncio

    from ._client import AsyncKernel
    from ._operation import Request
    from ._sse import SSEParser

__all__ = ["AsyncStream"]

T = TypeVar("T")
_END = object()
# Events parsed ahead of the consumer: at most this many, and (but always one) at most
# this many bytes of their data, so large events do not pile up (16 of 1 MiB would be
# 16 MiB held). Not lower: handing 64 KiB events over one by one costs more copies (the
# reads pile up in aiohttp's buffer and are joined) than it saves.
_AHEAD = 16
_AHEAD_BYTES = 1024 * 1024


class _Sink:
    """One connection's body: chunks into the parser, events into the stream's queue."""

    def __init__(self, stream: AsyncStream[Any]) -> None:
        self._stream = stream
        self.parser: SSEParser | None = None
        self.started = False  # the head came: a failure now is the stream's to resume
        self.delivered = 0  # events queued from this connection

    def restart(self, total: int | None, /) -> None:
        from ._sse import SSEParser

        self.parser = SSEParser(self._stream.max_event_bytes)
        self.started = True
        self.delivered = 0
        self._stream._opened.set()

    async def write(self, data: bytes, /) -> None:
        parser = self.parser
        assert parser is not None
        stream = self._stream
        seen = parser.last_event_id
        for event in parser.feed(data):
            if event.id is not None:
                stream.last_event_id = event.id or None  # an empty id resets it
            if event.retry is not None:
                stream.server_retry_ms = event.retry
            text = event.data
            if not text:
                continue  # an id- or retry-only block: nothing to deliver
            self.delivered += 1
            if stream._push(stream._decode(text), len(text)):
                await stream._room()  # the consumer is behind: wait for room
        if parser.last_event_id != seen:  # an id-only block moves it too (WHATWG): the
            stream.last_event_id = parser.last_event_id  # server skipped events up to it
        if parser.retry is not None:  # a retry: line counts when read, dispatched or not
            stream.server_retry_ms = parser.retry


class AsyncStream(Generic[T]):
    """A stream of typed events; iterate it once. Closing ends the connection at once.

    Attributes:
        operation: The operation's official name (``browsers.logs.stream``).
        received: Events delivered to the consumer so far.
        last_event_id: The last event id the server sent (resumes start after it).
        reconnects: How many times the stream was resumed.
    """

    def __init__(
        self,
        client: AsyncKernel,
        req: Request,
        *,
        max_event_bytes: int | None = None,
    ) -> None:
        import asyncio

        from ._sse import MAX_EVENT_BYTES

        self._client = client
        self._req = req
        self.operation = req.op.name
        self.received = 0
        self.reconnects = 0
        self._failing = 0  # reconnects in a row that delivered nothing (bounded; backoff)
        self.last_event_id: str | None = None
        self.server_retry_ms: int | None = None
        self.max_event_bytes = max_event_bytes or MAX_EVENT_BYTES
        # Events parsed ahead of the consumer, each with its data's size; the consumer
        # waits on `_ready` when there are none, the reader on `_free` when full.
        self._ahead: deque[tuple[Any, int]] = deque()
        self._ahead_bytes = 0
        self._ready: asyncio.Future[None] | None = None
        self._free: asyncio.Future[None] | None = None
        self._opened = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._started_at = time.monotonic()
        self._structure: Any = None  # the converter's hook for the event type (first event)
        self._type: Any = None

    @classmethod
    async def open(cls, client: AsyncKernel, req: Request, **options: Any) -> AsyncStream[Any]:
        """Send the request; return once the response has begun (or raise its error)."""
        import asyncio

        stream: AsyncStream[Any] = cls(client, req, **options)
        stream._task = asyncio.ensure_future(stream._run())
        waiter = asyncio.ensure_future(stream._opened.wait())
        try:
            await asyncio.wait({stream._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            await stream.close()
            raise
        finally:
            waiter.cancel()
        if not stream._opened.is_set() and stream._error is not None:
            raise stream._error  # the call failed before the stream began: as any call
        return stream

    # -- the reading task -------------------------------------------------------------

    async def _run(self) -> None:
        import asyncio

        try:
            while True:
                sink = _Sink(self)
                try:
                    await self._connect(sink)
                except APIConnectionError as exc:
                    if not sink.started:
                        raise  # no stream yet (or the client closed): the call's error
                    if isinstance(exc, APITimeoutError):
                        raise self._silent(exc) from exc  # the caller's bound: not resumed
                    await self._before_resuming(exc, sink)
                    continue
                if sink.parser is not None:
                    sink.parser.end()  # an event refused for its size raises here at the latest
                break  # a clean end of the body ends the stream
        except asyncio.CancelledError:
            raise  # closed: nobody is reading any more
        except BaseException as exc:
            self._error = exc
        self._push(_END, 0)  # after every event already queued (and never waits)

    async def _connect(self, sink: _Sink) -> None:
        req = self._req
        headers = req.headers
        if self.last_event_id is not None:
            headers = {**headers, "Last-Event-ID": self.last_event_id}
        from ._operation import target

        await self._client._request(
            req.op.method,
            target(req),
            idempotent=req.op.replay,
            body=req.body,
            content_type=req.content_type,
            timeout=req.timeout,
            extra_headers=headers,
            read_limit=None,
            sink=sink,
            event_stream=True,
        )

    async def _before_resuming(self, exc: APIConnectionError, sink: _Sink) -> None:
        """After a break: raise if the stream cannot resume, else wait and count."""
        delivered = self.received + len(self._ahead) + sink.delivered > 0
        if delivered and self.last_event_id is None:
            raise StreamInterruptedError(
                f"the {self.operation} stream broke after {self._events_so_far()} events "
                "and carried no event id to resume from",
                events=self._events_so_far(),
                method=exc.method,
                url=exc.url,
                attempts=exc.attempts,
            ) from exc
        if sink.delivered:
            self._failing = 0  # the connection worked for a while: a fresh run of tries
        client = self._client
        remaining = self._remaining()
        decision = resume(
            self._failing,
            client._policy,
            server_retry_ms=self.server_retry_ms,
            free=client._budget.free,
            remaining=remaining,
            jitter=random.random(),
        )
        if isinstance(decision, Fail):
            why = {"exhausted": "reconnected too often", "budget": "retry budget spent"}
            raise StreamInterruptedError(
                f"the {self.operation} stream broke after {self._events_so_far()} events "
                f"and was not resumed: {why.get(decision.why, 'the deadline would pass')} "
                f"(last break: {exc.message})",
                events=self._events_so_far(),
                last_event_id=self.last_event_id,
                method=exc.method,
                url=exc.url,
                attempts=exc.attempts,
            ) from exc
        if decision.take:
            client._budget.acquire(decision.take)
        self.reconnects += 1
        self._failing += 1
        if decision.wait > 0:
            import asyncio

            await asyncio.sleep(decision.wait)

    def _silent(self, exc: APITimeoutError) -> APITimeoutError:
        """The timeout of a stream that had begun: its idle bound, or the call's deadline."""
        timeout = self._req.timeout
        limits = self._client._timeout if isinstance(timeout, NotGiven) else Timeout.coerce(timeout)
        remaining = self._remaining()
        if limits.idle is not None and (remaining is None or remaining > 0):
            why = f"no event for {limits.idle:g}s (its idle bound, Timeout(idle=...))"
        else:
            why = "the call's total deadline passed"
        return APITimeoutError(
            f"the {self.operation} stream timed out after {self._events_so_far()} events: {why}",
            method=exc.method,
            url=exc.url,
            attempts=exc.attempts,
        )

    def _events_so_far(self) -> int:
        return self.received + len(self._ahead)

    def _remaining(self) -> float | None:
        """What is left of the call's total deadline (`None`: no deadline)."""
        timeout = self._req.timeout
        limits = self._client._timeout if isinstance(timeout, NotGiven) else Timeout.coerce(timeout)
        if limits.total is None:
            return None
        return limits.total - (time.monotonic() - self._started_at)

    # -- the queue between the reader and the consumer --------------------------------

    def _push(self, item: Any, size: int) -> bool:
        """Queue an event (or `_END`) for the consumer; return whether the queue is now
        full, for the reader to wait for room (`_room`)."""
        self._ahead.append((item, size))
        self._ahead_bytes += size
        ready = self._ready
        if ready is not None:
            self._ready = None
            if not ready.done():
                ready.set_result(None)
        return len(self._ahead) >= _AHEAD or self._ahead_bytes >= _AHEAD_BYTES

    async def _room(self) -> None:
        """Wait until the consumer has taken enough: half the queue is free."""
        import asyncio

        self._free = free = asyncio.get_running_loop().create_future()
        try:
            await free
        finally:
            self._free = None

    async def _next(self) -> tuple[Any, int]:
        """The next queued item, waiting for one; wakes a waiting reader."""
        ahead = self._ahead
        while not ahead:
            import asyncio

            self._ready = ready = asyncio.get_running_loop().create_future()
            try:
                await ready
            finally:
                self._ready = None
        return self._take()

    def _take(self) -> tuple[Any, int]:
        entry = self._ahead.popleft()
        self._ahead_bytes -= entry[1]
        free = self._free
        if (
            free is not None
            and len(self._ahead) <= _AHEAD // 2
            and self._ahead_bytes <= _AHEAD_BYTES // 2
            and not free.done()
        ):
            free.set_result(None)
        return entry

    def _decode(self, data: str) -> Any:
        structure = self._structure
        if structure is None:
            structure = self._structure = self._structure_hook()
        try:
            return structure(json.loads(data), self._type)
        except Exception as exc:
            raise APIResponseValidationError(
                f"an event of {self.operation} does not match its schema: {exc}",
                status_code=200,
                method=self._req.op.method,
                url=self.operation,
                attempts=1,
                body=data[:2000],
            ) from exc

    def _structure_hook(self) -> Any:
        """The converter's function for this stream's event type, looked up once (not per
        event); cattrs before 24.1 has no `get_structure_hook`: its `structure` then."""
        from ._operation import result_type

        self._type = result_type(self._req.op)
        conv = converter()
        get = getattr(conv, "get_structure_hook", None)
        return get(self._type) if get is not None else conv.structure

    # -- the consumer's side -----------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[T]:
        return self._events()

    async def _events(self) -> AsyncIterator[T]:
        try:
            ahead = self._ahead
            while True:
                # (No coroutine per event when one is queued.)
                item = self._take()[0] if ahead else (await self._next())[0]
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
        return (
            f"<AsyncStream {self.operation}: {self.received} events received, "
            f"last id {self.last_event_id!r}, {self.reconnects} reconnects>"
        )
