"""An async agent loop that records its browser session and always stops the recording,
even when the agent is cancelled.

Runs offline against the embedded emulator unless KERNEL_API_KEY (and a BROWSER_ID) are set:
    python examples/agent_loop.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from kernel_async import AsyncKernel
from kernel_async.testing import FakeKernel


async def agent_step(step: int) -> None:
    await asyncio.sleep(0.05)  # stands in for "look at the page, click something"
    print(f"  agent step {step}")


async def run_agent(client: AsyncKernel, browser_id: str, out: Path) -> None:
    replay = await client.browsers.replays.start(browser_id, framerate=10)
    print(f"recording {replay.replay_id}")
    try:
        for step in range(1000):  # the agent would run until its goal is met
            await agent_step(step)
    finally:
        # On success, error or cancellation alike. Shielded so the stop itself is not
        # cancelled by the same cancellation that ended the loop.
        await asyncio.shield(client.browsers.replays.stop(replay.replay_id, id=browser_id))
        print(f"stopped {replay.replay_id}")
        path = await asyncio.shield(
            client.browsers.replays.download_to(out, replay.replay_id, id=browser_id)
        )
        print(f"saved {path} ({path.stat().st_size} bytes)")


@contextlib.asynccontextmanager
async def kernel() -> AsyncIterator[tuple[AsyncKernel, str]]:
    if os.environ.get("KERNEL_API_KEY") and os.environ.get("BROWSER_ID"):
        async with AsyncKernel() as client:
            yield client, os.environ["BROWSER_ID"]
        return
    async with FakeKernel(finalise_seconds=0.2) as fake, fake.client() as client:
        yield client, fake.create_browser()


async def main() -> None:
    out = Path(tempfile.gettempdir()) / "agent-loop.mp4"
    async with kernel() as (client, browser_id):
        task = asyncio.create_task(run_agent(client, browser_id, out))
        await asyncio.sleep(0.3)
        task.cancel()  # e.g. the user pressed stop, or a supervisor timed the agent out
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert out.stat().st_size > 0


if __name__ == "__main__":
    asyncio.run(main())
