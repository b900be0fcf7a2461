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
from kernel_sync import Kernel


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
