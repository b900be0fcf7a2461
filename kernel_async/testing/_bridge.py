"""The emulator's side of its backend (in-memory or local Chromium): the one path.

`BackendBridge` turns the state machine's events (session created, updated, deleted; replay
started, stopped) into backend calls; keeps each stopped replay's finalising task (download
answers 202 until it is done); serves the ``cdp_ws_url`` of each browser that can be driven
through the token-checked DevTools proxy; and ends those idle for their ``timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from .._models import Viewport
from ._backend import (
    Backend,
    BackendError,
    BrowserHandle,
    BrowserLimitError,
    UnsupportedValueError,
)
from ._cdp_proxy import ChannelOpener, ProxyTarget, cdp_proxy_handler
from ._chromium import LocalSetupError
from ._sessions import Refused, Session

__all__ = ["DEFAULT_VIEWPORT", "BackendBridge", "inactivity", "viewport_of"]

DEFAULT_VIEWPORT = Viewport(1280, 720)


def inactivity(timeout_seconds: int) -> str:
    """Why the reaper ended a browser, as its 404s then say."""
    return (
        f"after {timeout_seconds} s of inactivity (no DevTools connection or message for "
        "its timeout_seconds)"
    )


def viewport_of(session: Session) -> Viewport:
    """The session's requested viewport, or the local default (1280x720)."""
    if not session.viewport:
        return DEFAULT_VIEWPORT
    size = session.viewport
    return Viewport(size["width"], size["height"], size.get("refresh_rate"))


class BackendBridge:
    """Backend calls, the DevTools proxy, finalising tasks and the inactivity reaper."""

    def __init__(
        self,
        backend: Backend,
        find: Callable[[str], Session | None],
        expire: Callable[[str, str], Awaitable[None]],
        *,
        reap_every: float = 1.0,
    ) -> None:
        self.backend = backend
        self._find = find  # an active session by ID, or None
        self._expire = expire  # deletes a session as the API's delete would, saying why
        self._handles: dict[str, BrowserHandle] = {}
        self._finalising: dict[tuple[str, str], asyncio.Task[Path | bytes]] = {}
        self._last_activity: dict[str, float] = {}
        self._connections: dict[str, int] = {}
        self._reap_every = reap_every
        self._reaper: asyncio.Task[None] | None = None
        self._proxy = cdp_proxy_handler(self._target, self._touch)

    async def created(self, session: Session) -> None:
        """Launch the session's browser; a refusal (429 past the bound, 500) if it fails."""
        try:
            handle = await self.backend.create_browser(
                session.session_id, viewport=viewport_of(session), start_url=session.start_url
            )
        except BrowserLimitError as exc:
            raise Refused(429, "rate_limited", str(exc)) from None
        except UnsupportedValueError as exc:
            raise Refused(400, "bad_request", str(exc)) from None
        except LocalSetupError as exc:  # this machine lacks something: retrying cannot help
            message = f"the local browser cannot start: {exc}"
            raise Refused(500, "internal_error", message, retry=False) from None
        except (BackendError, RuntimeError, OSError) as exc:
            raise Refused(500, "internal_error", f"the local browser failed: {exc}") from None
        self._handles[session.session_id] = handle
        if handle.opener() is not None:  # idle means no DevTools traffic: only these can be
            self._last_activity[session.session_id] = time.monotonic()
            if self._reaper is None:
                self._reaper = asyncio.ensure_future(self._reap())

    def drives(self, session_id: str) -> bool:
        """Whether the session's browser can be driven over DevTools (the proxy serves it)."""
        handle = self._handles.get(session_id)
        return handle is not None and handle.opener() is not None

    def devtools_for(self, session_id: str) -> ChannelOpener | None:
        """How the emulator itself opens a DevTools connection to the session's browser
        (computer use), or ``None`` when it cannot be driven. Asking counts as activity
        (the browser is in use through the API), like a proxied message."""
        if session_id in self._last_activity:
            self._last_activity[session_id] = time.monotonic()
        handle = self._handles.get(session_id)
        return handle.opener() if handle is not None else None

    async def updated(self, session: Session) -> None:
        """Apply a changed viewport to the running browser."""
        if session.session_id in self._handles and session.viewport:
            try:
                await self.backend.update_viewport(session.session_id, viewport_of(session))
            except UnsupportedValueError as exc:
                raise Refused(400, "bad_request", str(exc)) from None
            except BackendError as exc:
                raise Refused(500, "internal_error", f"the local browser failed: {exc}") from None

    async def deleted(self, session_id: str) -> None:
        """End the browser; its recordings are finalised and stay downloadable."""
        if self._handles.pop(session_id, None) is not None:
            await self.backend.delete_browser(session_id)
        self._last_activity.pop(session_id, None)

    async def started(self, session_id: str, replay_id: str, params: dict[str, Any]) -> None:
        """Begin recording (framerate defaults to 10 fps, as the replays spec does)."""
        await self.backend.start_recording(
            session_id,
            replay_id,
            framerate=params.get("framerate") or 10,
            max_duration=params.get("max_duration_in_seconds"),
        )

    def stopped(self, session_id: str, replay_id: str) -> None:
        """The state machine stopped the replay (by stop, by delete, or past its max
        duration): begin finalising it. Idempotent."""
        key = (session_id, replay_id)
        if key not in self._finalising:
            work = self.backend.stop_recording(session_id, replay_id)
            self._finalising[key] = asyncio.ensure_future(work)

    async def finished(self, session_id: str, replay_id: str) -> Path | bytes | int:
        """The stopped replay's video (a file or bytes), or while it is being finalised, the
        seconds to wait before asking again (answer 202). A failed finalise raises."""
        self.stopped(session_id, replay_id)
        task = self._finalising[(session_id, replay_id)]
        if not task.done():
            await asyncio.sleep(0)  # one step: a backend with nothing left to do finishes
        if task.done():
            return task.result()
        left = self.backend.ready_in(session_id, replay_id)
        return max(1, math.ceil(left)) if left is not None else 1

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        """Serve ``/cdp/{session_id}?jwt=...``: the token-checked DevTools websocket."""
        session_id = request.match_info["session_id"]
        self._connections[session_id] = self._connections.get(session_id, 0) + 1
        try:
            return await self._proxy(request)
        finally:
            self._connections[session_id] -= 1
            self._touch(request)

    async def aclose(self) -> None:
        """Stop the reaper and the backend (every browser ends, files are removed)."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for task in self._finalising.values():
            task.cancel()
        await asyncio.gather(*self._finalising.values(), return_exceptions=True)
        await self.backend.aclose()

    def _target(self, request: web.Request) -> ProxyTarget | None:
        session_id = request.match_info["session_id"]
        handle = self._handles.get(session_id)
        opener = handle.opener() if handle is not None else None
        session = self._find(session_id)
        if opener is None or session is None:
            return None
        return ProxyTarget(opener, session.token, handle.commands if handle else None)

    def _touch(self, request: web.Request) -> None:
        session_id = request.match_info["session_id"]
        if session_id in self._last_activity:
            self._last_activity[session_id] = time.monotonic()

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(self._reap_every)
            now = time.monotonic()
            for session_id, last in list(self._last_activity.items()):
                session = self._find(session_id)
                idle = now - last
                if session is None or self._connections.get(session_id, 0) > 0:
                    continue
                if idle >= session.timeout_seconds:
                    reason = inactivity(session.timeout_seconds)
                    with contextlib.suppress(Exception):  # one failure must not stop reaping
                        await self._expire(session_id, reason)
