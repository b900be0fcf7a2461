"""The local Chromium backend: real browsers, the DevTools proxy, real MP4 recordings.

These tests need Chromium (``.ci/run`` installs it) and the ``local`` extra (PyAV) plus
Playwright (both in the test dependencies). A missing Chromium fails them; nothing skips.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import attrs
import av
import pytest
from aiohttp import web
from av.video.frame import VideoFrame
from playwright.async_api import async_playwright

from kernel_async import Viewport
from kernel_async.testing import Backend, BrowserLimitError, InMemoryBackend, UnknownBrowserError
from kernel_async.testing._cdp import CDPClient
from kernel_async.testing._cdp_proxy import (
    ProxyTarget,
    cdp_proxy_handler,
    new_token,
    proxied_cdp_url,
)
from kernel_async.testing._chromium import (
    ChromiumProcess,
    ChromiumStartError,
    find_chromium,
    launch_chromium,
    marked_processes,
)
from kernel_async.testing._chromium_backend import ChromiumBackend

from .loopback import serving

# Real browsers: interpreter-independent and heavy, so nox runs these on one Python.
pytestmark = [pytest.mark.anyio, pytest.mark.once]

ROOT = Path(__file__).resolve().parent.parent


@attrs.define
class Local:
    """A Chromium backend behind a loopback proxy, as the emulator will mount it."""

    backend: ChromiumBackend
    base_url: str
    targets: dict[str, ProxyTarget]
    activity: list[str]
    markers: list[str] = attrs.Factory(list)

    async def create(
        self, browser_id: str, viewport: Viewport, start_url: str | None = None
    ) -> str:
        handle = await self.backend.create_browser(
            browser_id, viewport=viewport, start_url=start_url
        )
        opener = handle.opener()
        assert opener is not None and handle.cdp_url is None  # a pipe: no URL to reach
        self.markers.append(str(self.backend.process(browser_id).workdir))
        token = new_token()
        self.targets[browser_id] = ProxyTarget(opener, token)
        return proxied_cdp_url(self.base_url, f"/browsers/{browser_id}/cdp", token)


@pytest.fixture
async def local() -> AsyncIterator[Local]:
    targets: dict[str, ProxyTarget] = {}
    activity: list[str] = []
    app = web.Application()
    handler = cdp_proxy_handler(
        lambda request: targets.get(request.match_info["browser_id"]),
        lambda request: activity.append(request.match_info["browser_id"]),
    )
    app.router.add_get("/browsers/{browser_id}/cdp", handler)
    async with serving(app) as base_url:
        local = Local(ChromiumBackend(max_browsers=2), base_url, targets, activity)
        try:
            yield local
        finally:
            await local.backend.aclose()
    for marker in local.markers:
        assert marked_processes(marker) == [], "a Chromium process outlived the test"


HEX = {"red": "ff0000", "green": "00ff00", "blue": "0000ff"}


def colour_page(colour: str) -> str:
    style = f"margin:0;background:%23{HEX[colour]}"  # %23: a literal '#' in a data: URL
    return f"data:text/html,<html><body style='{style}'></body></html>"


def classify(frame: VideoFrame) -> str:
    """The colour name of a (solid) frame, from its average over the top-left quadrant."""
    tiny = frame.reformat(width=2, height=2, format="rgb24")
    r, g, b = bytes(tiny.planes[0])[:3]
    for name, (rr, gg, bb) in {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1)}.items():
        if all((v > 150) if on else (v < 100) for v, on in ((r, rr), (g, gg), (b, bb))):
            return name
    return "other"


def decode(path: Path) -> tuple[list[str], tuple[int, int], float]:
    """Colour per frame, the frame size and the stream's average rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        colours = [classify(f) for f in container.decode(stream)]
        rate = float(stream.average_rate or 0)
        return colours, (stream.codec_context.width, stream.codec_context.height), rate


def runs(items: list[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if not out or out[-1] != item:
            out.append(item)
    return out


async def test_playwright_drives_red_green_blue_and_the_mp4_shows_them(local: Local) -> None:
    viewport = Viewport(640, 360)
    url = await local.create("b1", viewport)
    async with async_playwright() as pw:
        browser = await pw.chromium.connect_over_cdp(url)
        page = browser.contexts[0].pages[0]
        framerate = 10
        started = time.monotonic()
        await local.backend.start_recording("b1", "r1", framerate=framerate, max_duration=None)
        for colour in ("red", "green", "blue"):
            await page.goto(colour_page(colour))
            await asyncio.sleep(1.0)
        path = await local.backend.stop_recording("b1", "r1")
        duration = time.monotonic() - started
        png = await page.screenshot()  # a large message through the proxy
        await browser.close()
    assert png.startswith(b"\x89PNG")
    colours, size, rate = await asyncio.to_thread(decode, path)
    assert size == (viewport.width, viewport.height)
    assert rate == framerate
    assert abs(len(colours) - framerate * duration) <= 0.2 * framerate * duration
    seen = [c for c in runs(colours) if c != "other"]
    assert seen == ["red", "green", "blue"], runs(colours)
    assert local.activity.count("b1") > 10  # every relayed message counts as activity


async def test_raw_cdp_client_through_the_proxy_sees_the_pinned_and_updated_viewport(
    local: Local,
) -> None:
    url = await local.create("b2", Viewport(800, 600), start_url=colour_page("red"))
    async with await CDPClient.connect(url) as cdp:
        targets = (await cdp.send("Target.getTargets"))["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        attached = await cdp.send(
            "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}
        )
        expr = {"expression": "[innerWidth, innerHeight, document.body.style.background]"}
        result = await cdp.send(
            "Runtime.evaluate", {**expr, "returnByValue": True}, session_id=attached["sessionId"]
        )
        assert result["result"]["value"] == [800, 600, "rgb(255, 0, 0)"]
        await local.backend.update_viewport("b2", Viewport(400, 300))
        size = {"expression": "[innerWidth, innerHeight]", "returnByValue": True}
        resized = await cdp.send("Runtime.evaluate", size, session_id=attached["sessionId"])
    assert resized["result"]["value"] == [400, 300]


async def test_proxy_checks_the_token_and_the_browser(local: Local) -> None:
    url = await local.create("b3", Viewport(1280, 720))
    assert "?jwt=" in url
    wrong = url.replace("jwt=", "jwt=x")
    async with aiohttp.ClientSession() as session:
        for bad, status in ((wrong, 403), (url.replace("/b3/", "/nope/"), 404)):
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                await session.ws_connect(bad)
            assert caught.value.status == status
        plain = url.replace("ws://", "http://")
        async with session.get(plain) as response:
            assert response.status == 400


async def test_max_duration_cuts_the_recording(local: Local) -> None:
    await local.create("b4", Viewport(320, 240), start_url=colour_page("green"))
    await local.backend.start_recording("b4", "r", framerate=10, max_duration=0.5)
    await asyncio.sleep(1.5)
    path = await local.backend.stop_recording("b4", "r")
    colours, size, _ = await asyncio.to_thread(decode, path)
    assert size == (320, 240)
    assert len(colours) == 5
    assert set(colours) == {"green"}


ANIMATED = (
    "data:text/html,<style>body{margin:0;font:40px sans-serif}</style><body><p id=t></p>"
    "<script>setInterval(()=>t.textContent=Date.now()+' '+Math.random(),16)</script>"
)


async def test_recording_keeps_up_at_720p_10fps(local: Local) -> None:
    # Every screencast frame differs; encoding must not fall behind (no backlog at stop).
    await local.create("k", Viewport(1280, 720), start_url=ANIMATED)
    started = time.monotonic()
    await local.backend.start_recording("k", "r", framerate=10, max_duration=None)
    await asyncio.sleep(2.0)
    stopped = time.monotonic()
    path = await local.backend.stop_recording("k", "r")
    finalise = time.monotonic() - stopped
    stats = local.backend.recording_stats("k", "r")
    expected = 10 * (stopped - started)
    assert abs(stats.frames_written - expected) <= 0.2 * expected
    assert stats.frames_received > stats.frames_written / 2  # the page really changed
    assert stats.encode_seconds / stats.frames_written < 0.1  # well within a tick's budget
    assert finalise < 5.0, f"finalising took {finalise:.1f} s: the encoder fell behind"
    _, size, _ = await asyncio.to_thread(decode, path)
    assert size == (1280, 720)


async def test_bound_on_concurrent_browsers_and_delete_frees_a_place(local: Local) -> None:
    await local.create("c1", Viewport(320, 240))
    await local.create("c2", Viewport(320, 240))
    with pytest.raises(BrowserLimitError):
        await local.backend.create_browser("c3", viewport=Viewport(320, 240))
    marker = str(local.backend.process("c1").workdir)
    assert marked_processes(marker)
    await local.backend.delete_browser("c1")
    await local.backend.delete_browser("c1")  # idempotent
    assert marked_processes(marker) == []
    assert not Path(marker).exists()
    await local.create("c3", Viewport(320, 240))


async def test_deleting_a_recording_browser_finalises_its_video(local: Local) -> None:
    await local.create("d1", Viewport(320, 240), start_url=colour_page("blue"))
    await local.backend.start_recording("d1", "r", framerate=5, max_duration=None)
    await asyncio.sleep(0.5)
    await local.backend.delete_browser("d1")
    path = await local.backend.stop_recording("d1", "r")
    colours, _, _ = await asyncio.to_thread(decode, path)
    assert colours
    assert set(colours) == {"blue"}
    with pytest.raises(UnknownBrowserError):
        await local.backend.start_recording("d1", "r2", framerate=5, max_duration=None)


async def test_both_backends_fit_the_interface() -> None:
    memory = InMemoryBackend(video=b"mp4")
    chromium = ChromiumBackend()
    try:
        assert isinstance(memory, Backend)
        assert isinstance(chromium, Backend)
        handle = await memory.create_browser("m", viewport=Viewport(1280, 720))
        assert handle.cdp_url is None
        await memory.update_viewport("m", Viewport(400, 300))
        await memory.start_recording("m", "r", framerate=10, max_duration=None)
        assert memory.ready_in("m", "r") is None  # still recording
        assert await memory.stop_recording("m", "r") == b"mp4"
        assert memory.ready_in("m", "r") == 0
    finally:
        await memory.aclose()
        await chromium.aclose()


ORPHAN_SCRIPT = """
import asyncio, sys
from kernel_async.testing._chromium import find_chromium, launch_chromium

async def main():
    process = await launch_chromium(find_chromium(), width=320, height=240)
    print(process.workdir, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def wait_until_gone(marker: str, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := marked_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture
def orphan_parent() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_no_chromium_survives_kill_9_of_its_parent(orphan_parent: subprocess.Popen[str]) -> None:
    assert orphan_parent.stdout is not None
    marker = orphan_parent.stdout.readline().strip()
    assert marker, "the launcher printed no marker"
    assert marked_processes(marker), "the browser is not running"
    os.kill(orphan_parent.pid, 9)
    orphan_parent.wait()
    assert wait_until_gone(marker, timeout=20.0) == []
    shutil.rmtree(marker, ignore_errors=True)  # the killed parent could not clean up


def test_browsers_die_with_the_thread_that_launched_them() -> None:
    # The parent-death signal follows the launching thread: FakeKernel.in_thread's loop
    # thread ending (even without a clean shutdown) takes its browsers with it.
    launched: list[ChromiumProcess] = []

    def run() -> None:
        async def launch() -> None:
            launched.append(await launch_chromium(find_chromium(), width=320, height=240))

        asyncio.run(launch())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    (process,) = launched
    workdir = process.workdir
    try:
        assert wait_until_gone(str(workdir), timeout=20.0) == []
        assert process.process.wait(timeout=5) == -9
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        # The dead thread's loop could not close the pipe's transports: let them go here
        # rather than warn during whichever test the collector runs in next.
        launched.clear()
        del process
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


async def test_a_browser_that_exits_at_once_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A temporary directory of this test's own: other workers launch browsers meanwhile.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ChromiumStartError, match="exited with status 1"):
        await launch_chromium("/bin/false", width=320, height=240)
    assert list(tmp_path.glob("kernel-chromium-*")) == []
