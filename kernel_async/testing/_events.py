"""Event streams in the emulator: one log of events with ids, served as server-sent events.

Every SSE operation the emulator answers (a browser's logs, a process's output, file
watches, telemetry, follows) keeps its events in an `EventLog` (ids from 1, so a client
resumes with ``Last-Event-ID``) and serves them with `serve_sse`, which also carries out
the injected fault ``drop_after`` (cut the connection after N events, no final chunk)
and writes a comment line when the stream is quiet, as proxies need.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

from aiohttp import web

__all__ = ["KEEP_EVENTS", "Event", "EventLog", "IdOnly", "resume_after", "serve_sse"]

KEEP_EVENTS = 10_000  # events kept for late or resuming readers
KEEPALIVE_SECONDS = 15.0


class Event(NamedTuple):
    """One streamed event: ``id`` (increasing, from 1; the SSE ``id:``) and its JSON ``data``."""

    id: int
    data: dict[str, Any]


class IdOnly(NamedTuple):
    """A frame with only an ``id:``: it moves the client's last event id (its resume point)
    past events it was not sent, and dispatches nothing (WHATWG event stream rules)."""

    id: int


class EventLog:
    """Events with increasing ids, kept for readers that come and go (and resume after an
    id): the newest `keep` events, and at most `keep_bytes` of their weights.

    Used from the emulator's loop only; `closed` ends followers once they are caught up.
    """

    def __init__(self, keep: int = KEEP_EVENTS, keep_bytes: int | None = None) -> None:
        self._events: deque[tuple[Event, int]] = deque(maxlen=keep)
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._keep_bytes = keep_bytes
        self._held = 0
        self.closed = False

    def add(self, data: dict[str, Any], weight: int = 0) -> Event:
        """Append an event (its id is the next one) and wake the followers."""
        if self._events.maxlen is not None and len(self._events) == self._events.maxlen:
            self._held -= self._events[0][1]
        event = Event(next(self._ids), data)
        self._events.append((event, weight))
        self._held += weight
        while self._keep_bytes is not None and self._held > self._keep_bytes:
            self._held -= self._events.popleft()[1]
        self._poke()
        return event

    def close(self) -> None:
        """No more events: followers end once they have read the last one."""
        self.closed = True
        self._poke()

    def since(self, after: int = 0) -> list[Event]:
        """The kept events with ids above `after`."""
        return [e for e, _ in self._events if e.id > after]

    def _poke(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    async def follow(self, after: int = 0, *, wait: bool = True) -> AsyncIterator[Event]:
        """Events with ids above `after`; with `wait`, waiting for more until closed."""
        while True:
            wake = self._wake
            fresh = self.since(after)
            for event in fresh:
                yield event
                after = event.id
            if fresh:
                continue
            if self.closed or not wait:
                return
            await wake.wait()


def resume_after(request: web.Request) -> int:
    """The id of the last event the client saw (``Last-Event-ID``), or 0."""
    last = request.headers.get("Last-Event-ID", "")
    return int(last) if last.isascii() and last.isdigit() else 0


async def serve_sse(
    request: web.Request,
    events: AsyncIterator[Event | IdOnly],
    *,
    drop_after: int | None = None,
    keepalive: float = KEEPALIVE_SECONDS,
) -> web.StreamResponse:
    """Serve `events` as server-sent events with ids until they end.

    With `drop_after`, the connection is aborted after that many events (an abrupt end,
    so the client resumes; `IdOnly` frames do not count). A comment line is written
    whenever `keepalive` seconds pass without an event.
    """
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    sent = 0
    pending: asyncio.Future[Event | IdOnly] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=keepalive)
            if not done:
                await resp.write(b": keep-alive\n\n")
                continue
            finished, pending = pending, None
            try:
                event = finished.result()
            except StopAsyncIteration:
                break
            if isinstance(event, IdOnly):
                await resp.write(f"id: {event.id}\n\n".encode())
                continue
            if drop_after is not None and sent >= drop_after:
                assert request.transport is not None
                request.transport.abort()
                return resp
            await resp.write(f"id: {event.id}\ndata: {json.dumps(event.data)}\n\n".encode())
            sent += 1
        await resp.write_eof()
    except ConnectionResetError:
        return resp  # the client closed the stream: nothing to report
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        with contextlib.suppress(Exception):
            await events.aclose()  # type: ignore[attr-defined]
    return resp
