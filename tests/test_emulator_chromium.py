"""The emulator with ``backend="chromium"``: the SDK, Playwright and the recorded MP4, end to
end (async and sync), the bound on browsers, the token, and the inactivity reaper."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import av
import pytest
from playwright.async_api import async_playwright
from playwright.sync_api import sync_playwright

from kernel_async import BadRequestError, RateLimitError, Viewport
from kernel_async.testing import Backend, FakeKernel, InMemoryBackend
from kernel_async.testing._bridge import BackendBridge
from kernel_async.testing._chromium import marked_processes
from kernel_async.testing._chromium_backend import ChromiumBackend
from kernel_async.testing._sessions import Session
from kernel_sync import Kernel

from .test_local_chromium import classify, colour_page, runs

# Real browsers: interpreter-independent and heavy, so nox runs these on one Python.
pytestmark = [pytest.mark.anyio, pytest.mark.once]


def workdir(fake: FakeKernel, browser_id: str) -> str:
    return workdir_of(fake.backend, browser_id)


def workdir_of(backend: Backend, browser_id: str) -> str:
    assert isinstance(backend, ChromiumBackend)
    return str(backend.process(browser_id).workdir)


def colours_of(path: Path) -> tuple[list[str], tuple[int, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [classify(f) for f in container.decode(stream)]
        return frames, (stream.codec_context.width, stream.codec_context.height)


async def test_record_drive_with_playwright_download_and_delete(tmp_path: Path) -> None:
    save_to = tmp_path / "run.mp4"
    async with FakeKernel(backend="chromium") as fake, fake.client() as client:
        started = time.monotonic()
        async with client.browsers.record(
            save_to=save_to, framerate=10, viewport=Viewport(640, 360)
        ) as rec:
            marker = workdir(fake, rec.browser.session_id)
            assert rec.browser.cdp_ws_url is not None
            async with async_playwright() as pw:
                browser = await pw.chromium.connect_over_cdp(rec.browser.cdp_ws_url)
                page = browser.contexts[0].pages[0]
                for colour in ("red", "green", "blue"):
                    await page.goto(colour_page(colour))
                    await asyncio.sleep(0.8)
                await browser.close()
        duration = time.monotonic() - started
        assert marked_processes(marker) == []  # record() deleted the browser it created
    colours, size = await asyncio.to_thread(colours_of, save_to)
    assert size == (640, 360)
    assert 0 < len(colours) <= 10 * duration * 1.2
    assert [c for c in runs(colours) if c != "other"] == ["red", "green", "blue"]


def test_sync_facade_records_a_local_browser(tmp_path: Path) -> None:
    save_to = tmp_path / "sync.mp4"
    with FakeKernel.in_thread(backend="chromium") as fake:
        with Kernel(api_key=fake.api_key, base_url=fake.base_url) as client:
            with client.browsers.record(save_to=save_to, viewport=Viewport(320, 240)) as rec:
                marker = workdir(fake, rec.browser.session_id)
                assert rec.browser.cdp_ws_url is not None
                with sync_playwright() as pw:
                    browser = pw.chromium.connect_over_cdp(rec.browser.cdp_ws_url)
                    browser.contexts[0].pages[0].goto(colour_page("green"))
                    time.sleep(0.5)
                    browser.close()
        assert marked_processes(marker) == []
    colours, size = colours_of(save_to)
    assert size == (320, 240)
    assert "green" in colours


async def test_bound_on_browsers_is_a_429_and_the_token_is_checked() -> None:
    async with FakeKernel(backend="chromium", max_browsers=1) as fake:
        async with fake.client(max_retries=0) as client:
            first = await client.browsers.create(viewport=Viewport(320, 240))
            marker = workdir(fake, first.session_id)
            with pytest.raises(RateLimitError):
                await client.browsers.create()
            assert first.cdp_ws_url is not None
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                    await session.ws_connect(first.cdp_ws_url.replace("jwt=", "jwt=x"))
                assert caught.value.status == 403
            await client.browsers.delete(first.session_id)
            assert marked_processes(marker) == []
            with pytest.raises(BadRequestError, match="out of range"):  # 400: not retried
                await client.browsers.create(viewport=Viewport(9000, 9000))
            assert fake.sessions() == []  # the refused browser was not kept
            again = await client.browsers.create(viewport=Viewport(320, 240))
            marker = workdir(fake, again.session_id)
    assert marked_processes(marker) == []  # the emulator's shutdown ended the browser


async def test_idle_sessions_end_after_their_timeout() -> None:
    expired: list[str] = []
    kept = Session("kept", datetime.now(timezone.utc), timeout_seconds=0)
    idle = Session("idle", datetime.now(timezone.utc), timeout_seconds=0)
    sessions = {"idle": idle}

    async def expire(session_id: str, why: str) -> None:
        assert why.startswith("after 0 s of inactivity")
        sessions.pop(session_id)
        await bridge.deleted(session_id)
        expired.append(session_id)

    # A browser that can be driven ends when idle; one that cannot (in memory) never does.
    memory = BackendBridge(InMemoryBackend(), {"kept": kept}.get, expire, reap_every=0.02)
    bridge = BackendBridge(ChromiumBackend(max_browsers=1), sessions.get, expire, reap_every=0.02)
    try:
        await memory.created(kept)
        await bridge.created(idle)
        marker = workdir_of(bridge.backend, "idle")
        deadline = time.monotonic() + 10
        while not expired and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert expired == ["idle"]
        assert marked_processes(marker) == []
        await asyncio.sleep(0.1)
        assert expired == ["idle"] and memory.drives("kept") is False
    finally:
        await bridge.aclose()
        await memory.aclose()


def test_plugin_fixture_runs_real_browsers(kernel_fake_chromium: FakeKernel) -> None:
    browser_id = kernel_fake_chromium.create_browser(viewport={"width": 320, "height": 240})
    marker = workdir(kernel_fake_chromium, browser_id)
    assert marked_processes(marker)
    (session,) = kernel_fake_chromium.sessions()
    assert f"/cdp/{browser_id}?jwt=" in session["cdp_ws_url"]
