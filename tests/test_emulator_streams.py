"""The emulator serves browsers.logs.stream with event ids, and can drop a stream after N
events, so resuming is tested end to end (async and sync)."""

from __future__ import annotations

import asyncio

import pytest

from kernel_async import AsyncKernel, NotFoundError
from kernel_async.testing import FakeKernel
from kernel_sync import Kernel

pytestmark = pytest.mark.anyio


async def lines(client: AsyncKernel, browser: str, **query: object) -> list[str]:
    stream = await client.browsers.logs.stream(browser, source="supervisor", **query)  # type: ignore[arg-type]
    return [event.message async for event in stream]


async def test_a_browsers_log_streams_with_ids(fake: FakeKernel, client: AsyncKernel) -> None:
    b = (await client.browsers.create()).session_id
    for n in range(3):
        fake.log(b, f"line {n}")
    assert await lines(client, b) == [f"browser {b} created", "line 0", "line 1", "line 2"]
    raw = fake.requests[-1]
    assert raw.operation == "browsers.logs.stream"


@pytest.mark.parametrize("drop_after", [0, 1, 3, 5])
async def test_a_dropped_stream_resumes_without_loss_or_repeats(
    fake: FakeKernel, client: AsyncKernel, drop_after: int
) -> None:
    b = (await client.browsers.create()).session_id
    for n in range(6):
        fake.log(b, f"line {n}")
    fake.fail("browsers.logs.stream", status=None, drop_after=drop_after, times=2)
    got = await lines(client, b)
    assert got == [f"browser {b} created", *(f"line {n}" for n in range(6))]
    calls = [r for r in fake.requests if r.operation == "browsers.logs.stream"]
    resumed = [r.headers.get("Last-Event-ID") for r in calls]
    # A drop before any event is re-asked from the start; later ones after the last id.
    cut = drop_after if drop_after else None
    assert resumed[0] is None and len(resumed) >= 2
    assert resumed[1] == (str(cut) if cut else None)


async def test_follow_waits_for_new_lines_until_the_browser_ends(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    b = (await client.browsers.create()).session_id

    async def later() -> None:
        await asyncio.sleep(0.2)
        fake.log(b, "late line")
        await client.browsers.delete(b)

    task = asyncio.ensure_future(later())
    got = await lines(client, b, follow=True)
    await task
    assert got == [f"browser {b} created", "late line", f"browser {b} ended"]


async def test_a_path_log_and_unknown_browsers(fake: FakeKernel, client: AsyncKernel) -> None:
    b = (await client.browsers.create()).session_id
    fake.log(b, "from the app", path="/var/log/app.log")
    stream = await client.browsers.logs.stream(b, source="path", path="/var/log/app.log")
    assert [e.message async for e in stream] == ["from the app"]
    with pytest.raises(NotFoundError):
        await client.browsers.logs.stream("br_nope", source="supervisor")


def test_the_sync_twin_resumes_against_the_emulator(threaded_fake: FakeKernel) -> None:
    b = threaded_fake.create_browser()
    for n in range(4):
        threaded_fake.log(b, f"line {n}")
    threaded_fake.fail("browsers.logs.stream", status=None, drop_after=2)
    with Kernel(api_key=threaded_fake.api_key, base_url=threaded_fake.base_url) as client:
        with client.browsers.logs.stream(b, source="supervisor") as stream:
            got = [event.message for event in stream]
    assert got[-4:] == [f"line {n}" for n in range(4)]
    assert len(got) == len(set(got))


async def test_a_follower_that_leaves_is_not_a_server_error(
    fake: FakeKernel, client: AsyncKernel, caplog: pytest.LogCaptureFixture
) -> None:
    b = (await client.browsers.create()).session_id
    stream = await client.browsers.logs.stream(b, source="supervisor", follow=True)
    async with stream:
        async for _ in stream:
            break  # closes the connection
    for n in range(20):  # the emulator writes to the closed connection
        fake.log(b, f"after {n}")
        await asyncio.sleep(0.02)
    await client.browsers.delete(b)  # the handler ends either way
    await asyncio.sleep(0.1)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [], [r.getMessage() for r in errors]
