"""The interface between the emulator's state machine and what runs its browsers.

Two backends fit it: `InMemoryBackend` (the default: no processes, every recording is the
bundled sample video) and `ChromiumBackend` (``_chromium_backend``: real local Chromium,
real recordings). The state machine owns IDs, timestamps and HTTP; a backend owns
processes and files.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs

__all__ = [
    "Backend",
    "BackendError",
    "BrowserHandle",
    "BrowserLimitError",
    "InMemoryBackend",
    "RecordingFiles",
    "UnknownBrowserError",
    "Viewport",
]


@attrs.frozen
class Viewport:
    """A page size in CSS pixels."""

    width: int = 1280
    height: int = 720

    def __attrs_post_init__(self) -> None:
        if not (2 <= self.width <= 7680 and 2 <= self.height <= 4320):
            raise ValueError(f"viewport {self.width}x{self.height} is out of range")


@attrs.frozen
class BrowserHandle:
    """A browser a backend runs for the emulator.

    ``cdp_url`` is the backend's own DevTools websocket URL (``None`` when nothing can be
    driven); the emulator publishes a proxied, token-checked URL instead of this one.
    """

    browser_id: str
    viewport: Viewport
    cdp_url: str | None


class BackendError(Exception):
    """A backend could not do what was asked (the emulator answers 5xx or 4xx)."""


class BrowserLimitError(BackendError):
    """Too many browsers at once (the emulator answers 429)."""


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

    async def stop_recording(self, browser_id: str, replay_id: str) -> Path:
        """Stop (idempotent) and return the finalised MP4, once it is complete on disk."""
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


class InMemoryBackend:
    """No processes: browsers are names, and every recording is the bundled sample video."""

    def __init__(self, video: bytes | None = None) -> None:
        if video is None:
            from ._emulator import sample_video  # the emulator module owns the resource

            video = sample_video()
        self._video = video
        self._browsers: set[str] = set()
        self._recordings: dict[tuple[str, str], Path | None] = {}
        self._files = RecordingFiles()

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
        """Note the recording; the video is written when it stops."""
        if browser_id not in self._browsers:
            raise UnknownBrowserError(browser_id)
        self._recordings[(browser_id, replay_id)] = None

    async def stop_recording(self, browser_id: str, replay_id: str) -> Path:
        """Write the sample video as this recording's file."""
        if (browser_id, replay_id) not in self._recordings:
            raise UnknownBrowserError(f"{browser_id}/{replay_id}")
        path = self._recordings[(browser_id, replay_id)]
        if path is None:
            path = self._files.new_path()
            await asyncio.to_thread(path.write_bytes, self._video)
            self._recordings[(browser_id, replay_id)] = path
        return path

    async def aclose(self) -> None:
        """Remove the written files."""
        self._browsers.clear()
        await self._files.remove()
