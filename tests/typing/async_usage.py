"""Type-checked (mypy --strict) usage of the async browsers API; never executed by pytest."""

from __future__ import annotations

from pathlib import Path

from kernel_async import AsyncBinaryContent, AsyncKernel, Browser, BrowserPage, Replay, Viewport
from kernel_async.resources import AsyncBrowserPager, AsyncRecording
from kernel_async.types import BrowserCreateParams


async def browsers_usage() -> tuple[Browser, list[Browser], Path | None]:
    async with AsyncKernel(api_key="k") as client:
        b: Browser = await client.browsers.create(
            stealth=True, viewport=Viewport(1024, 768), timeout_seconds=600, region="us-east"
        )
        b = await client.browsers.retrieve(b.session_id)
        b = await client.browsers.update(b.session_id, viewport=Viewport(800, 600))
        page: BrowserPage = await client.browsers.list(limit=10)
        print(page.items, page.has_more, page.next_offset)
        pager: AsyncBrowserPager = client.browsers.list(query="agent")
        every: list[Browser] = [x async for x in pager]
        rec: AsyncRecording
        async with client.browsers.record(save_to="run.mp4", record_audio=True) as rec:
            replay: Replay = rec.replay
            print(rec.browser.cdp_ws_url, replay.replay_id)
        errors: tuple[BaseException, ...] = rec.cleanup_errors
        print(errors)
        await client.browsers.delete(b.session_id)
        return b, every, rec.path


async def official_shapes_usage(params: BrowserCreateParams) -> tuple[Browser, bytes, int]:
    """Official-style code: a params TypedDict spread into the call, awaited binary
    methods, pages walked page by page, the official client keywords and copy()."""
    async with AsyncKernel(api_key="k", environment="production", project_id="p") as client:
        b: Browser = await client.browsers.create(**params)
        shot: AsyncBinaryContent = await client.browsers.computer.capture_screenshot(b.session_id)
        data: bytes = await shot.read()
        pages = 0
        async for page in client.browsers.list(limit=10).iter_pages():
            pages += len(page.items)
        copied: AsyncKernel = client.copy(project="named")
        print(copied.project, client.project_id)
        return b, data, pages
