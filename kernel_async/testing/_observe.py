"""``browsers.logs.stream`` in the emulator: a browser's log as server-sent events.

Each browser has a log the emulator writes as it works on it (created, recording
started and stopped, deleted...) and that tests may add to (``fake.log(browser_id,
"line")``). A ``supervisor`` stream serves it; a ``path`` stream serves the lines logged
under that path (``fake.log(browser_id, "line", path="/var/log/app.log")``). Every event
carries an ``id:`` (its line number), so a client can resume with ``Last-Event-ID``;
``follow=true`` keeps the stream open for new lines until the browser ends.

Fault injection: ``fake.fail("browsers.logs.stream", status=None, drop_after=3)`` cuts
the next stream's connection after 3 events (no final chunk: an abrupt end).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._events import Event, resume_after, serve_sse

if TYPE_CHECKING:
    from ._emulator import BrowserOp, FakeKernel, FamilyCall

__all__ = ["BrowserLogs", "register"]

SUPERVISOR = "supervisor"


class BrowserLogs:
    """Every browser's log lines, by source (the supervisor's, or a file path)."""

    def __init__(self) -> None:
        self._lines: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._ended: set[str] = set()
        self._lock = threading.Lock()

    def add(self, browser_id: str, message: str, *, source: str = SUPERVISOR) -> None:
        """Append a line (any thread); followers are woken."""
        stamp = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        with self._lock:
            self._lines.setdefault((browser_id, source), []).append(
                {"event": "log", "message": message, "timestamp": stamp}
            )
        self._wake(browser_id)

    def end(self, browser_id: str) -> None:
        """The browser ended: following streams finish."""
        self._ended.add(browser_id)
        self._wake(browser_id)

    def lines(self, browser_id: str, source: str, start: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._lines.get((browser_id, source), [])[start:])

    def ended(self, browser_id: str) -> bool:
        return browser_id in self._ended

    def waiter(self, browser_id: str) -> asyncio.Event:
        event = self._changed.get(browser_id)
        if event is None:
            event = self._changed[browser_id] = asyncio.Event()
        return event

    def _wake(self, browser_id: str) -> None:
        event = self._changed.get(browser_id)
        if event is None:
            return
        loop = getattr(event, "_loop", None)
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(event.set)
        else:
            event.set()


def register(fake: FakeKernel) -> Mapping[str, BrowserOp]:
    """The logs family for one emulator."""

    async def stream(call: FamilyCall) -> web.StreamResponse:
        return await _stream(fake, call)

    return {"browsers.logs.stream": stream}


async def _stream(fake: FakeKernel, call: FamilyCall) -> web.StreamResponse:
    query = call.query
    source = query.get("source", SUPERVISOR)
    name = query.get("path") if source == "path" else SUPERVISOR
    if source == "path" and not name:
        return web.json_response(
            {"code": "bad_request", "message": "source=path needs a path"}, status=400
        )
    lines = _lines(fake.logs, call.browser_id, str(name), bool(query.get("follow", False)))
    drop_after = call.fault.drop_after if call.fault is not None else None
    return await serve_sse(call.request, lines(resume_after(call.request)), drop_after=drop_after)


def _lines(
    logs: BrowserLogs, browser: str, name: str, follow: bool
) -> Callable[[int], AsyncIterator[Event]]:
    """The log's lines after a line number (ids are 1-based line numbers)."""

    async def after(position: int) -> AsyncIterator[Event]:
        changed = logs.waiter(browser)
        while True:
            changed.clear()
            for line in logs.lines(browser, name, position):
                position += 1
                yield Event(position, line)
            if not follow or logs.ended(browser):
                return
            await changed.wait()

    return after
