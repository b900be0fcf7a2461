"""Type-checked (mypy --strict) usage of the public API; never executed by pytest.

If the generated sync API drifts from the async one in a way users would see, this
file stops type-checking.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import kernel_async
import kernel_sync
from kernel_async import AsyncKernel, Replay, RetryEvent, RetryPolicy, Timeout
from kernel_sync import Browser, BrowserPage, BrowserPager, Kernel, Recording, Viewport


def sync_usage(browser_id: str) -> tuple[Replay, list[Replay], bytes, Path]:
    def hook(event: RetryEvent) -> None:
        print(event.reason, event.wait)

    with Kernel(
        api_key="k", timeout=Timeout(10.0, total=60.0), retry=RetryPolicy(on_retry=hook)
    ) as k:
        replay: Replay = k.browsers.replays.start(browser_id, framerate=10, record_audio=False)
        started: datetime | None = replay.started_at
        print(started)
        replays: list[Replay] = k.browsers.replays.list(browser_id)
        k.browsers.replays.stop(replay.replay_id, id=browser_id, timeout=5.0)
        data: bytes = k.browsers.replays.download(replay.replay_id, id=browser_id)
        path: Path = k.browsers.replays.download_to("out.mp4", replay.replay_id, id=browser_id)
        fast: Kernel = k.with_options(max_retries=0, timeout=5.0)
        fast.close()
        return replay, replays, data, path


def sync_browsers() -> tuple[Browser, list[Browser], Path | None]:
    with Kernel(api_key="k") as k:
        b: Browser = k.browsers.create(
            headless=False,
            viewport=Viewport(1280, 800, refresh_rate=60),
            tags={"team": "qa"},
            region="eu-west",
            extra_body={"future": True},
        )
        b = k.browsers.retrieve(b.session_id, include_deleted=True)
        b = k.browsers.update(b.session_id, name="n", tags={})
        pager: BrowserPager = k.browsers.list(status="all", limit=100)
        first: list[Browser] = pager.items
        more: bool = pager.has_more
        page: BrowserPage = pager.first_page()
        print(more, page.next_offset, first)
        every: list[Browser] = [x for x in k.browsers.list(tags={"team": "qa"})]
        rec: Recording
        with k.browsers.record(save_to="run.mp4", framerate=10) as rec:
            url: str = rec.browser.cdp_ws_url
            replay: Replay = rec.replay
            print(url, replay)
        k.browsers.delete(b.session_id)
        return b, every, rec.path


async def async_usage(browser_id: str) -> None:
    async with AsyncKernel(api_key="k") as client:
        replay = await client.browsers.replays.start(browser_id)
        await client.browsers.replays.stop(replay.replay_id, id=browser_id)
        try:
            await client.browsers.replays.download(replay.replay_id, id=browser_id)
        except kernel_async.NotFoundError as exc:
            code: int = exc.status_code
            attempts: int = exc.attempts
            print(code, attempts, exc.error.code if exc.error else None)
        copy: AsyncKernel = client.with_options(timeout=None)
        await copy.close()


same_error: type[kernel_sync.APIError] = kernel_async.APIError
