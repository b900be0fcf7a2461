"""The emulator's side of a process-running backend (local Chromium).

`BackendBridge` turns the state machine's events (session created, updated, deleted; replay
started, stopped) into backend calls; serves each session's ``cdp_ws_url`` through the
token-checked DevTools proxy; keeps each stopped replay's finalising task (download answers
202 until it is done); and ends sessions idle for their ``timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from ._backend import Backend, BackendError, BrowserHandle, BrowserLimitError, Viewport
from ._cdp_proxy import ProxyTarget, cdp_proxy_handler
from ._sessions import Refused, Session

__all__ = ["DEFAULT_VIEWPORT", "BackendBridge", "viewport_of"]

DEFAULT_VIEWPORT = Viewport(1280, 720)


def viewport_of(session: Session) -> Viewport:
    """The session's requested viewport, or the local default (1280x720)."""
    if not session.viewport:
        return DEFAULT_VIEWPORT
    return Viewport(session.viewport["width"], session.viewport["height"])


class BackendBridge:
    """Backend calls, the DevTools proxy, finalising tasks and the inactivity reaper."""

    def __init__(
        self,
        backend: Backend,
        find: Callable[[str], Session | None],
        expire: Callable[[str], Awaitable[None]],
        *,
        reap_every: float = 1.0,
    ) -> None:
        self.backend = backend
        self._find = find  # an active session by ID, or None
        self._expire = expire  # deletes a session as the API's delete would
        self._handles: dict[str, BrowserHandle] = {}
        self._finalising: dict[tuple[str, str], asyncio.Task[Path]] = {}
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
        except (BackendError, RuntimeError, OSError) as exc:
            raise Refused(500, "internal_error", f"the local browser failed: {exc}") from None
        self._handles[session.session_id] = handle
        self._last_activity[session.session_id] = time.monotonic()
        if self._reaper is None:
            self._reaper = asyncio.ensure_future(self._reap())

    async def updated(self, session: Session) -> None:
        """Apply a changed viewport to the running browser."""
        if session.session_id in self._handles and session.viewport:
            await self.backend.update_viewport(session.session_id, viewport_of(session))

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

    def finished(self, session_id: str, replay_id: str) -> Path | None:
        """The replay's finalised file, or None while it is being finalised (answer 202).

        Call once the state machine considers the replay stopped (by stop, by delete, or
        past its max duration); the first call starts finalising. A failed finalise raises.
        """
        key = (session_id, replay_id)
        task = self._finalising.get(key)
        if task is None:
            task = asyncio.ensure_future(self.backend.stop_recording(session_id, replay_id))
            self._finalising[key] = task
        return task.result() if task.done() else None

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
        session = self._find(session_id)
        if handle is None or handle.cdp_url is None or session is None:
            return None
        return ProxyTarget(handle.cdp_url, session.token)

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
                    with contextlib.suppress(Exception):  # one failure must not stop reaping
                        await self._expire(session_id)
