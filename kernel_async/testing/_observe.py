"""``browsers.logs.stream`` in the emulator: a browser's log as server-sent events.

Each browser has a log the emulator writes as it works on it (created, recording
started and stopped, deleted...) and that tests may add to (``fake.log(browser_id,
"line")``); on the local Chromium backend, every line the browser's Chromium writes
(stdout and stderr: its warnings, errors and the pages' console messages) is added to it
as it comes, as ``chromium: <line>`` (on Kernel, the supervisor log carries the output of
the VM's services, Chromium's among them). A ``supervisor`` stream serves it; a ``path``
stream serves the lines logged under that path (``fake.log(browser_id, "line",
path="/var/log/app.log")``). Every event carries an ``id:`` (its line number), so a
client can resume with ``Last-Event-ID``; ``follow=true`` keeps the stream open for new
lines until the browser ends. A log keeps (at least) its last `MAX_LINES` lines (a chatty
page must not fill the memory): ids stay line numbers, and a resume from a line no longer
kept goes on from the oldest kept.

Fault injection: ``fake.fail("browsers.logs.stream", status=None, drop_after=3)`` cuts
the next stream's connection after 3 events (no final chunk: an abrupt end).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._events import Event, resume_after, serve_sse

if TYPE_CHECKING:
    from ._emulator import BrowserOp, FakeKernel, FamilyCall

__all__ = ["CHROMIUM", "MAX_LINES", "BrowserLogs", "register"]

SUPERVISOR = "supervisor"
CHROMIUM = "chromium: "
"""What starts the lines of the browser's own Chromium in its supervisor log."""
MAX_LINES = 100_000
"""Lines kept per log (the oldest go first)."""


class _Log:
    """One log's kept lines (at least the last ``limit``), after ``dropped`` older ones."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.dropped = 0

    def add(self, line: dict[str, Any], limit: int) -> None:
        self.lines.append(line)
        if len(self.lines) > limit + limit // 10:  # dropped in steps: amortised O(1)
            extra = len(self.lines) - limit
            del self.lines[:extra]
            self.dropped += extra


class BrowserLogs:
    """Every browser's log lines, by source (the supervisor's, or a file path)."""

    def __init__(self, max_lines: int = MAX_LINES) -> None:
        self.max_lines = max_lines
        self._logs: dict[tuple[str, str], _Log] = {}
        # One event per browser for the next change, replaced once set (touched on the
        # loop only): a follower that takes it before reading misses no wake-up, whatever
        # other followers do meanwhile.
        self._changed: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ended: set[str] = set()
        self._lock = threading.Lock()

    def add(self, browser_id: str, message: str, *, source: str = SUPERVISOR) -> None:
        """Append a line (any thread); followers are woken."""
        stamp = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        line = {"event": "log", "message": message, "timestamp": stamp}
        with self._lock:
            self._logs.setdefault((browser_id, source), _Log()).add(line, self.max_lines)
        self._wake(browser_id)

    def end(self, browser_id: str) -> None:
        """The browser ended: following streams finish."""
        self._ended.add(browser_id)
        self._wake(browser_id)

    def lines(self, browser_id: str, source: str, start: int) -> tuple[int, list[dict[str, Any]]]:
        """The kept lines after the first ``start``, and how many lines come before them."""
        with self._lock:
            log = self._logs.get((browser_id, source))
            if log is None:
                return start, []
            first = max(start, log.dropped)
            return first, log.lines[first - log.dropped :]

    def ended(self, browser_id: str) -> bool:
        return browser_id in self._ended

    def waiter(self, browser_id: str) -> asyncio.Event:
        """Set at the browser's next change (a line, or its end); take it before reading
        (on the emulator's loop)."""
        self._loop = asyncio.get_running_loop()
        event = self._changed.get(browser_id)
        if event is None:
            event = self._changed[browser_id] = asyncio.Event()
        return event

    def _wake(self, browser_id: str) -> None:
        loop = self._loop
        if loop is None:
            return  # nobody has followed yet
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._poke(browser_id)
        elif not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._poke, browser_id)

    def _poke(self, browser_id: str) -> None:
        event = self._changed.pop(browser_id, None)
        if event is not None:
            event.set()


def register(fake: FakeKernel) -> Mapping[str, BrowserOp]:
    """The logs family for one emulator."""

    async def stream(call: FamilyCall) -> web.StreamResponse:
        return await _stream(fake, call)

    from ._chromium_backend import ChromiumBackend

    if isinstance(fake.backend, ChromiumBackend):  # Chromium's own lines, into the log

        def chromium_said(browser_id: str, line: str) -> None:
            fake.logs.add(browser_id, CHROMIUM + line)

        fake.backend.on_output = chromium_said
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
        while True:
            changed = logs.waiter(browser)
            ended = logs.ended(browser)  # before reading: the lines logged until the end
            position, lines = logs.lines(browser, name, position)
            for line in lines:
                position += 1
                yield Event(position, line)
            if not follow or ended:
                return
            await changed.wait()

    return after
