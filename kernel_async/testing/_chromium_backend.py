"""`ChromiumBackend`: each browser a real local headless Chromium, each replay a real MP4.

The backend keeps one DevTools connection per browser. Through it every page is
auto-attached and pinned to the requested viewport (``--window-size`` alone gives a
shorter page: the window frame takes space), and the visible page is screencast into the
recorder. Users drive the browser over their own connection (the emulator's proxy).
Each browser saves downloads in its machine's ``/tmp/downloads`` (`ChromiumBackend.machine_dir`
says where a machine's directory is: the emulator's browser sandbox, where ``browsers.fs``
sees them), including those a DevTools client directs to a path of the machine, and each line
Chromium writes (stdout and stderr) goes to `ChromiumBackend.on_output` (the emulator: the
browser's supervisor log).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs

from .._models import Viewport
from ._backend import (
    BrowserHandle,
    BrowserLimitError,
    RecordingFiles,
    UnknownBrowserError,
    UnsupportedValueError,
)
from ._cdp import CDPClient, CDPError
from ._cdp_proxy import ChannelOpener, CommandRule, downloads_in_sandbox
from ._chromium import (
    ChromiumProcess,
    LocalSetupError,
    find_chromium,
    launch_chromium,
    tree_memory_bytes,
)
from ._machine import DOWNLOADS
from ._screencast import ScreencastRecorder

__all__ = [
    "ChromiumBackend",
    "LaunchHook",
    "PageTracker",
    "RecordingStats",
    "require_local_extra",
]

LaunchHook = Callable[[str, ChannelOpener], Awaitable[None]]
"""Called with a new browser's ID and how to open a DevTools session of one's own on it,
once its first page exists and before its start URL opens."""

INSTALL_LOCAL = 'pip install "kernel-async[local]"'


def require_local_extra() -> None:
    """Raise `LocalSetupError` unless the ``local`` extra (PyAV, the video encoder) imports."""
    try:
        importlib.import_module("av")
    except ImportError as exc:
        raise LocalSetupError(
            f"recording local Chromium needs PyAV, the `local` extra: {INSTALL_LOCAL} ({exc})"
        ) from None


class PageTracker:
    """The pages of one browser, each pinned to the viewport; the newest is the visible one."""

    def __init__(self, cdp: CDPClient, viewport: Viewport) -> None:
        self._cdp = cdp
        self._viewport = viewport
        self._sessions: dict[str, str] = {}  # targetId -> flattened sessionId, in attach order
        self._first = asyncio.Event()
        self._pinning: set[asyncio.Task[Any]] = set()

    async def start(self, timeout: float = 10.0) -> str:
        """Auto-attach to every page; return the session of the first, already pinned."""
        self._cdp.on("Target.attachedToTarget", self._attached)
        self._cdp.on("Target.detachedFromTarget", self._detached)
        params = {"autoAttach": True, "waitForDebuggerOnStart": False, "flatten": True}
        await self._cdp.send("Target.setAutoAttach", params)
        await asyncio.wait_for(self._first.wait(), timeout)
        session = self.current
        assert session is not None
        await self._pin(session)
        return session

    async def resize(self, viewport: Viewport) -> None:
        """Pin every open page, and every later one, to ``viewport``."""
        self._viewport = viewport
        await asyncio.gather(*(self._pin(s) for s in list(self._sessions.values())))

    @property
    def current(self) -> str | None:
        """The session of the most recently opened page still open."""
        return next(reversed(self._sessions.values()), None)

    def _attached(self, params: dict[str, Any], _: str | None) -> None:
        if params["targetInfo"].get("type") != "page":
            return
        session = params["sessionId"]
        self._sessions[params["targetInfo"]["targetId"]] = session
        if self._first.is_set():  # later pages: pin in the background
            task = asyncio.ensure_future(self._pin(session))
            self._pinning.add(task)
            task.add_done_callback(self._pinning.discard)
        self._first.set()

    def _detached(self, params: dict[str, Any], _: str | None) -> None:
        target = params.get("targetId")
        if target is not None:
            self._sessions.pop(target, None)

    async def _pin(self, session: str) -> None:
        metrics = {
            "width": self._viewport.width,
            "height": self._viewport.height,
            "deviceScaleFactor": 1,
            "mobile": False,
        }
        with contextlib.suppress(CDPError):  # the page may close meanwhile
            await self._cdp.send("Emulation.setDeviceMetricsOverride", metrics, session_id=session)


async def _open(cdp: CDPClient, session: str, url: str, timeout: float = 10.0) -> None:
    """Navigate and wait (bounded) for the load event, so the page is settled when
    ``create`` returns; a page that never loads is not an error (users see it as it is)."""
    loaded = asyncio.Event()

    def on_load(_: dict[str, Any], sid: str | None) -> None:
        if sid == session:
            loaded.set()

    unsubscribe = cdp.on("Page.loadEventFired", on_load)
    try:
        await cdp.send("Page.enable", session_id=session)
        try:
            await cdp.send("Page.navigate", {"url": url}, session_id=session)
        except CDPError as exc:
            if exc.code is None:  # the connection closed: a failure here, not the URL
                raise
            # Chromium refused the URL itself (e.g. no scheme): the caller's value (400).
            raise UnsupportedValueError(f"start_url {url!r} cannot be opened: {exc}") from None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(loaded.wait(), timeout)
    finally:
        unsubscribe()


def _checked(viewport: Viewport) -> Viewport:
    """The viewport, if a local Chromium can show it (`BackendError` otherwise)."""
    if not (2 <= viewport.width <= 7680 and 2 <= viewport.height <= 4320):
        raise UnsupportedValueError(
            f"viewport {viewport.width}x{viewport.height} is out of range for a local Chromium "
            "(2x2 to 7680x4320)"
        )
    return viewport


@attrs.frozen
class RecordingStats:
    """What a recording's encoder did: frames in the video, frames received, CPU seconds."""

    frames_written: int
    frames_received: int
    encode_seconds: float


@attrs.define(eq=False)
class _Browser:
    process: ChromiumProcess
    cdp: CDPClient
    pages: PageTracker
    viewport: Viewport
    recordings: dict[str, ScreencastRecorder] = attrs.Factory(dict)


class ChromiumBackend:
    """Real headless Chromium browsers, recorded to H.264 MP4 (needs the ``local`` extra).

    ``max_browsers`` bounds how many run at once (each takes a few hundred MiB).
    ``binary`` overrides the search (``KERNEL_CHROMIUM``, then PATH). ``preset`` is the
    x264 speed preset: faster presets cost less CPU per frame and make larger files.
    What it needs is checked here, not at the first browser or recording: no Chromium, or
    no PyAV, raises `LocalSetupError` saying what to install.

    ``machine_dir`` (the emulator sets it) gives, by browser ID and a path of the browser's
    machine, the host directory it is (made if missing; raises for a path leading out):
    the browser saves downloads in its ``/tmp/downloads``, and a ``downloadPath`` a DevTools
    client sends through the proxy is taken as such a path (`downloads_in_sandbox`).
    ``None``: downloads go to a directory of the browser's own, removed with it, and
    DevTools clients' paths are the host's.
    ``on_output`` (the emulator sets it) is called on the loop with a browser's ID and each
    line Chromium writes, as it comes.
    """

    def __init__(
        self, *, max_browsers: int = 4, binary: str | None = None, preset: str = "veryfast"
    ) -> None:
        require_local_extra()
        self.max_browsers = max_browsers
        self._binary = binary or find_chromium()
        self._preset = preset
        self._browsers: dict[str, _Browser] = {}
        self._launching = 0
        self._files = RecordingFiles()
        self._finished: dict[tuple[str, str], ScreencastRecorder] = {}
        self.machine_dir: Callable[[str, str], str] | None = None
        self.on_output: Callable[[str, str], None] | None = None
        # E.g. telemetry, which watches a browser's pages from before its start URL.
        self.on_launch: list[LaunchHook] = []

    async def create_browser(
        self, browser_id: str, *, viewport: Viewport, start_url: str | None = None
    ) -> BrowserHandle:
        """Launch Chromium at ``viewport`` and open ``start_url`` (or a blank page)."""
        _checked(viewport)
        if len(self._browsers) + self._launching >= self.max_browsers:
            raise BrowserLimitError(f"at most {self.max_browsers} local browsers at once")
        self._launching += 1
        try:
            folder = self.machine_dir
            downloads = folder(browser_id, DOWNLOADS) if folder is not None else None
            process = await launch_chromium(
                self._binary,
                width=viewport.width,
                height=viewport.height,
                downloads=downloads,
                on_output=self._output_of(browser_id),
            )
            try:
                browser = await self._connect(browser_id, process, viewport, start_url)
            except BaseException:
                await process.terminate()
                raise
        finally:
            self._launching -= 1
        self._browsers[browser_id] = browser
        # No URL: Chromium has no DevTools port; each proxied connection gets a session
        # of its own on the browser's pipe.
        return BrowserHandle(
            browser_id,
            viewport,
            None,
            devtools=process.pipe.session,
            commands=self._commands_of(browser_id),
        )

    def _commands_of(self, browser_id: str) -> CommandRule | None:
        """Clients' download paths are paths of the browser's machine (see the class)."""
        folder = self.machine_dir
        if folder is None:
            return None
        return functools.partial(
            downloads_in_sandbox, resolve=functools.partial(folder, browser_id)
        )

    def _output_of(self, browser_id: str) -> Callable[[str], None]:
        def on_line(line: str) -> None:
            if self.on_output is not None:
                self.on_output(browser_id, line)

        return on_line

    async def _connect(
        self, browser_id: str, process: ChromiumProcess, viewport: Viewport, start_url: str | None
    ) -> _Browser:
        cdp = CDPClient(process.pipe.root)
        try:
            pages = PageTracker(cdp, viewport)
            session = await pages.start()
            for hook in self.on_launch:
                await hook(browser_id, process.pipe.session)
            if start_url:
                await _open(cdp, session, start_url)
        except BaseException:
            await cdp.close()
            raise
        return _Browser(process, cdp, pages, viewport)

    async def update_viewport(self, browser_id: str, viewport: Viewport) -> None:
        """Resize the browser's pages; running recordings keep their video size (scaled)."""
        browser = self._browser(browser_id)
        browser.viewport = _checked(viewport)
        await browser.pages.resize(viewport)

    async def delete_browser(self, browser_id: str) -> None:
        """Finalise the browser's recordings, then kill its processes. Idempotent."""
        browser = self._browsers.pop(browser_id, None)
        if browser is None:
            return
        try:
            for replay_id, recorder in browser.recordings.items():
                self._finished[(browser_id, replay_id)] = recorder
            await asyncio.gather(
                *(r.stop() for r in browser.recordings.values()), return_exceptions=True
            )
        finally:
            await browser.cdp.close()
            await browser.process.terminate()

    async def start_recording(
        self, browser_id: str, replay_id: str, *, framerate: int, max_duration: float | None
    ) -> None:
        """Screencast the browser's visible page into a new MP4."""
        browser = self._browser(browser_id)
        session = browser.pages.current
        if session is None:
            raise UnknownBrowserError(f"browser {browser_id} has no open page")
        path = self._files.new_path()
        width, height = browser.viewport.width, browser.viewport.height
        recorder = ScreencastRecorder(
            browser.cdp, session, path, width=width, height=height,
            framerate=framerate, max_duration=max_duration, preset=self._preset,
        )  # fmt: skip
        try:
            await recorder.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await recorder.stop()  # ends the encoder thread if it started
            raise
        browser.recordings[replay_id] = recorder

    async def stop_recording(self, browser_id: str, replay_id: str) -> Path:
        """Stop the screencast and wait until the MP4 is finalised (encoded off the loop)."""
        return await self._recorder(browser_id, replay_id).stop()

    def ready_in(self, browser_id: str, replay_id: str) -> float | None:
        """Unknown: encoding takes as long as it takes."""
        return None

    def recording_stats(self, browser_id: str, replay_id: str) -> RecordingStats:
        """Counters of one recording's encoder (for tests and measurements)."""
        sink = self._recorder(browser_id, replay_id).sink
        assert sink is not None  # registered only once started
        return RecordingStats(sink.frames_written, sink.frames_received, sink.encode_seconds)

    def memory_bytes(self, browser_id: str, kind: str = "pss") -> int:
        """Memory of the browser's processes, ``pss`` (shared pages shared out) or ``rss``."""
        return tree_memory_bytes(str(self._browser(browser_id).process.workdir), kind)

    def process(self, browser_id: str) -> ChromiumProcess:
        """The browser's process (for tests and measurements)."""
        return self._browser(browser_id).process

    async def aclose(self) -> None:
        """Delete every browser and remove every recording file."""
        deleted = await asyncio.gather(
            *(self.delete_browser(b) for b in list(self._browsers)), return_exceptions=True
        )
        self._finished.clear()
        await self._files.remove()
        for outcome in deleted:
            if isinstance(outcome, BaseException):
                raise outcome

    def _recorder(self, browser_id: str, replay_id: str) -> ScreencastRecorder:
        browser = self._browsers.get(browser_id)
        recorder = browser.recordings.get(replay_id) if browser else None
        recorder = recorder or self._finished.get((browser_id, replay_id))
        if recorder is None:
            raise UnknownBrowserError(f"no recording {replay_id} of browser {browser_id}")
        return recorder

    def _browser(self, browser_id: str) -> _Browser:
        try:
            return self._browsers[browser_id]
        except KeyError:
            raise UnknownBrowserError(f"no browser {browser_id}") from None
