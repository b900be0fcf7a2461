"""Test your agent offline with a real browser: the emulator's local Chromium backend.

The emulator runs each browser as a real headless Chromium on this machine and records
each replay to a real MP4. The agent drives the browser with Playwright over the
browser's ``cdp_ws_url``, exactly as it would drive a Kernel browser; the recording is
saved when the block ends. Needs Chromium (``apt-get install chromium``), and
``pip install 'kernel-async[local]' playwright``:

    python examples/agent_loop_local.py [out.mp4]

With KERNEL_API_KEY and BROWSER_ID set, the same agent runs against that Kernel browser.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from playwright.async_api import Page, async_playwright

from kernel_async import AsyncKernel, Viewport
from kernel_async.testing import FakeKernel

PAGES = [
    "<h1>Step 1: search</h1><input value='kernel browsers'>",
    "<h1>Step 2: results</h1><ol><li>A result</li><li>Another</li></ol>",
    "<h1 style='color:green'>Step 3: done</h1>",
]


async def agent(page: Page) -> None:
    """Stands in for an agent: look at the page, act, move on."""
    for step, html in enumerate(PAGES, 1):
        await page.set_content(html)
        print(f"  step {step}: {await page.inner_text('h1')}")
        await asyncio.sleep(0.5)


async def record_agent(client: AsyncKernel, out: Path, browser_id: str | None) -> None:
    # A browser made here gets a viewport; an existing one keeps its own.
    viewport = Viewport(1280, 720) if browser_id is None else None
    async with client.browsers.record(
        browser_id, save_to=out, framerate=10, viewport=viewport
    ) as rec:
        print(f"browser {rec.browser.session_id}, recording {rec.replay.replay_id}")
        assert rec.browser.cdp_ws_url is not None
        async with async_playwright() as pw:
            browser = await pw.chromium.connect_over_cdp(rec.browser.cdp_ws_url)
            await agent(browser.contexts[0].pages[0])
            await browser.close()
    # On exit: replay stopped, video finalised and saved, browser deleted (if created here).


async def main(out: Path) -> Path:
    if os.environ.get("KERNEL_API_KEY") and os.environ.get("BROWSER_ID"):
        async with AsyncKernel() as client:  # the same agent against Kernel itself
            await record_agent(client, out, os.environ["BROWSER_ID"])
        return out
    async with FakeKernel(backend="chromium") as fake, fake.client() as client:
        await record_agent(client, out, None)
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    with tempfile.TemporaryDirectory() as tmp:
        saved = asyncio.run(main(target or Path(tmp) / "agent.mp4"))
        print(f"saved {saved} ({saved.stat().st_size} bytes)")
