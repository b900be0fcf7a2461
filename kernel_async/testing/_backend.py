"""The interface between the emulator's state machine and what runs its browsers.

Two backends fit it: `InMemoryBackend` (the default: no processes, no files; every
recording is the bundled sample video, or the bytes it was given) and `ChromiumBackend`
(``_chromium_backend``: real local Chromium, real recordings). The state machine owns IDs,
timestamps and HTTP; a backend owns browsers and videos. Viewports are the SDK's own
`kernel_async.Viewport`.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs

from .._models import Viewport
from ._cdp import DevToolsChannel, WebSocketChannel
from ._cdp_proxy import ChannelOpener, CommandRule

__all__ = [
    "Backend",
    "BackendError",
    "BrowserHandle",
    "BrowserLimitError",
    "InMemoryBackend",
    "RecordingFiles",
    "UnknownBrowserError",
    "Viewport",  # the SDK's own, re-exported for backend authors
    "sample_video",
]


def sample_video() -> bytes:
    """The small, valid MP4 (H.264, 1 s) the in-memory backend serves as every recording."""
    return resources.files(__package__).joinpath("sample.mp4").read_bytes()


@attrs.frozen
class BrowserHandle:
    """A browser a backend runs for the emulator.

    How the emulator reaches its DevTools, if it can be driven: ``devtools`` opens a channel
    for one connection (the local Chromium backend: a session on the browser's DevTools
    pipe), or ``cdp_url`` is a DevTools websocket URL to relay to. Both ``None``: nothing can
    be driven (such a browser is never idle, and the emulator proxies nothing to it). The
    emulator publishes a proxied, token-checked URL instead of either; ``commands`` is the
    rule its clients' commands pass there first (see ``_cdp_proxy.ProxyTarget``).
    """

    browser_id: str
    viewport: Viewport
    cdp_url: str | None
    devtools: ChannelOpener | None = attrs.field(default=None, repr=False)
    commands: CommandRule | None = attrs.field(default=None, repr=False)

    def opener(self) -> ChannelOpener | None:
        """How to open one DevTools connection to this browser (``None``: it cannot be
        driven)."""
        if self.devtools is not None:
            return self.devtools
        url = self.cdp_url
        if url is None:
            return None

        async def connect() -> DevToolsChannel:
            return await WebSocketChannel.connect(url)

        return connect


class BackendError(Exception):
    """A backend could not do what was asked (the emulator answers 5xx or 4xx)."""


class BrowserLimitError(BackendError):
    """Too many browsers at once (the emulator answers 429)."""


class UnsupportedValueError(BackendError):
    """A value this backend cannot honour, e.g. a viewport too large (the emulator answers 400)."""


class UnknownBrowserError(BackendError):
    """No such browser or recording in this backend (the emulator answers 404)."""


@runtime_checkable
class Backend(Protocol):
    """What runs the emulator's browsers and records them. All methods run on its loop."""

    async def create_browser(
        self, browser_id: str, *, viewport: Viewport, start_url: str | None = None
    ) -> BrowserHandle:
        """Start a browser; raise `BrowserLimitError` past the backend's bound."""
        ...

    async def update_viewport(self, browser_id: str, viewport: Viewport) -> None:
        """Resize the browser's pages (a running recording keeps its video size)."""
        ...

    async def delete_browser(self, browser_id: str) -> None:
        """End a browser and everything it started; finalise its recordings. Idempotent."""
        ...

    async def start_recording(
        self, browser_id: str, replay_id: str, *, framerate: int, max_duration: float | None
    ) -> None:
        """Begin recording the browser's visible page (it stops itself at max_duration)."""
        ...

    async def stop_recording(self, browser_id: str, replay_id: str) -> Path | bytes:
        """Stop (idempotent) and return the finalised MP4 once it is complete: its file on
        disk, or its bytes. The emulator calls this as the replay stops and answers
        downloads 202 until it returns."""
        ...

    def ready_in(self, browser_id: str, replay_id: str) -> float | None:
        """Seconds until a stopping recording is expected to be final (the 202's
        Retry-After), or ``None`` when the backend cannot tell."""
        ...

    async def aclose(self) -> None:
        """End every browser, finalise every recording and remove the backend's files."""
        ...


class RecordingFiles:
    """Where a backend writes its videos: a temporary directory made on first use (a
    session that never records leaves nothing behind), named by counter (IDs may hold any
    character), removed by `remove`."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._names = itertools.count(1)

    def new_path(self) -> Path:
        """A fresh file name for one recording."""
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="kernel-replays-"))
        return self._dir / f"replay-{next(self._names)}.mp4"

    async def remove(self) -> None:
        """Delete every file (and the directory)."""
        folder, self._dir = self._dir, None
        if folder is not None:
            await asyncio.to_thread(shutil.rmtree, folder, True)


@attrs.define
class _Take:
    stopped: float | None = None  # monotonic time of the stop


class InMemoryBackend:
    """No processes and no files: browsers are names, and every recording is ``video`` (the
    bundled sample unless given), final ``finalise_seconds`` after it stops.

    Both attributes may be changed at any time; they apply to recordings stopped after.
    """

    def __init__(self, video: bytes | None = None, *, finalise_seconds: float = 0.0) -> None:
        self.video = video if video is not None else sample_video()
        self.finalise_seconds = finalise_seconds
        self._browsers: set[str] = set()
        self._takes: dict[tuple[str, str], _Take] = {}

    async def create_browser(
        self, browser_id: str, *, viewport: Viewport, start_url: str | None = None
    ) -> BrowserHandle:
        """Remember the browser; there is nothing to drive."""
        self._browsers.add(browser_id)
        return BrowserHandle(browser_id, viewport, None)

    async def update_viewport(self, browser_id: str, viewport: Viewport) -> None:
        """Nothing to resize."""
        if browser_id not in self._browsers:
            raise UnknownBrowserError(browser_id)

    async def delete_browser(self, browser_id: str) -> None:
        """Forget the browser (its recordings stay downloadable)."""
        self._browsers.discard(browser_id)

    async def start_recording(
        self, browser_id: str, replay_id: str, *, framerate: int, max_duration: float | None
    ) -> None:
        """Note the recording (the emulator stops it at ``max_duration``)."""
        if browser_id not in self._browsers:
            raise UnknownBrowserError(browser_id)
        self._takes[(browser_id, replay_id)] = _Take()

    async def stop_recording(self, browser_id: str, replay_id: str) -> bytes:
        """Stop, wait out what is left of the finalising period, and return the video.

        Returns without waiting once the period is over (a period of 0: at once).
        """
        take = self._take(browser_id, replay_id)
        if take.stopped is None:
            take.stopped = time.monotonic()
        left = self.ready_in(browser_id, replay_id)
        if left:
            await asyncio.sleep(left)
        return self.video

    def ready_in(self, browser_id: str, replay_id: str) -> float | None:
        """What is left of the finalising period (``None`` before the stop)."""
        stopped = self._take(browser_id, replay_id).stopped
        if stopped is None:
            return None
        return max(0.0, stopped + self.finalise_seconds - time.monotonic())

    async def aclose(self) -> None:
        """Forget everything."""
        self._browsers.clear()
        self._takes.clear()

    def _take(self, browser_id: str, replay_id: str) -> _Take:
        try:
            return self._takes[(browser_id, replay_id)]
        except KeyError:
            raise UnknownBrowserError(f"no recording {replay_id} of browser {browser_id}") from None
