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
import json
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aiohttp import web

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


def _start(last_event_id: str | None) -> int:
    """The line to start from: after the last one the client saw (ids are 1-based)."""
    if last_event_id and last_event_id.isascii() and last_event_id.isdigit():
        return int(last_event_id)
    return 0


async def _stream(fake: FakeKernel, call: FamilyCall) -> web.StreamResponse:
    query = call.query
    source = query.get("source", SUPERVISOR)
    name = query.get("path") if source == "path" else SUPERVISOR
    if source == "path" and not name:
        return web.json_response(
            {"code": "bad_request", "message": "source=path needs a path"}, status=400
        )
    follow = bool(query.get("follow", False))
    logs = fake.logs
    browser = call.browser_id
    position = _start(call.request.headers.get("Last-Event-ID"))
    drop_after = call.fault.drop_after if call.fault is not None else None
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(call.request)
    sent = 0
    changed = logs.waiter(browser)
    while True:
        changed.clear()
        for line in logs.lines(browser, str(name), position):
            if drop_after is not None and sent >= drop_after:
                assert call.request.transport is not None
                call.request.transport.abort()  # an abrupt end: the client resumes
                return resp
            position += 1
            await resp.write(f"id: {position}\ndata: {json.dumps(line)}\n\n".encode())
            sent += 1
        if not follow or logs.ended(browser):
            break
        try:
            await asyncio.wait_for(changed.wait(), 15)
        except asyncio.TimeoutError:
            await resp.write(b": keep-alive\n\n")  # a comment: proxies keep the line open
    await resp.write_eof()
    return resp
