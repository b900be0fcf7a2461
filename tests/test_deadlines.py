"""Attempt time limits kept by one timer per loop (`_transport.Deadlines`), not one
aiohttp timer per request: timeouts still end attempts on time, a cancel from outside
stays a cancel, and nothing is left behind."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

import kernel_async as ka
from kernel_async import AsyncKernel, Timeout
from kernel_async._transport import Deadlines
from tests.scripted import ScriptedServer, hang, respond

pytestmark = pytest.mark.anyio

KEY = "sk-test-deadlines"
HAS_CANCEL_COUNT = sys.version_info >= (3, 11)


def deadlines_of(c: AsyncKernel) -> Deadlines:
    found = c._shared.deadlines
    assert found is not None
    return found


async def test_an_attempt_past_its_limit_is_a_timeout_and_leaves_the_task_uncancelled() -> None:
    async with ScriptedServer([hang(), respond(200)]) as srv:
        async with AsyncKernel(api_key=KEY, base_url=srv.base_url, max_retries=0) as c:
            started = time.monotonic()
            with pytest.raises(ka.APITimeoutError, match=r"request timed out after 0\.3s"):
                await c.browsers.replays.stop("r", id="b", timeout=0.3)
            took = time.monotonic() - started
            task = asyncio.current_task()
            assert task is not None
            if HAS_CANCEL_COUNT:
                assert task.cancelling() == 0  # the timeout's cancel was taken back
            await asyncio.sleep(0.01)  # no cancellation is pending on this task
            await c.browsers.replays.stop("r", id="b")  # the next call runs normally
            assert not deadlines_of(c)._live
    assert 0.25 <= took < 5.0
    assert len(srv.received) == 2


async def test_a_short_limit_set_after_a_long_one_fires_on_time() -> None:
    async with ScriptedServer([hang()]) as srv:
        async with AsyncKernel(api_key=KEY, base_url=srv.base_url, max_retries=0) as c:
            long = asyncio.create_task(c.browsers.replays.stop("r", id="b", timeout=60))
            while not srv.received:
                await asyncio.sleep(0.01)
            started = time.monotonic()
            with pytest.raises(ka.APITimeoutError):
                await c.browsers.replays.stop("r", id="b", timeout=0.3)
            took = time.monotonic() - started
            assert not long.done()  # its own limit is a minute away
            long.cancel()
            with pytest.raises(asyncio.CancelledError):
                await long
            assert not deadlines_of(c)._live
    assert took < 5.0  # the timer was moved forward to the shorter limit


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    async with ScriptedServer([hang()]) as srv:
        async with AsyncKernel(api_key=KEY, base_url=srv.base_url) as c:
            call = asyncio.create_task(c.browsers.replays.stop("r", id="b", timeout=30))
            while not srv.received:
                await asyncio.sleep(0.01)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert not deadlines_of(c)._live


async def test_the_total_deadline_is_kept_too() -> None:
    async with ScriptedServer([hang()]) as srv:
        limits = Timeout(30.0, total=0.4)
        async with AsyncKernel(api_key=KEY, base_url=srv.base_url, timeout=limits) as c:
            started = time.monotonic()
            with pytest.raises(ka.APITimeoutError):
                await c.browsers.replays.stop("r", id="b")
            assert time.monotonic() - started < 5.0


async def test_many_concurrent_calls_leave_no_entry_and_share_one_timer() -> None:
    async with ScriptedServer([respond(200)]) as srv:
        async with AsyncKernel(api_key=KEY, base_url=srv.base_url) as c:
            await asyncio.gather(*(c.browsers.replays.stop("r", id="b") for _ in range(200)))
            deadlines = deadlines_of(c)
            assert not deadlines._live
            assert not deadlines._expired
            # One timer for all of them, set once (every later limit was further away).
            assert deadlines._handle is not None
    assert len(srv.received) == 200


@pytest.mark.skipif(not HAS_CANCEL_COUNT, reason="3.10 tasks do not count cancellations")
async def test_a_cancel_at_the_moment_of_the_deadline_stays_a_cancel() -> None:
    deadlines = Deadlines(asyncio.get_running_loop())
    seen: list[bool] = []

    async def attempt() -> None:
        armed = deadlines.arm(0.0)  # due at once: the timer fires on the next loop turn
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append(deadlines.timed_out(armed))
            if not seen[-1]:
                raise
        finally:
            deadlines.disarm(armed)

    task = asyncio.create_task(attempt())
    await asyncio.sleep(0)  # it arms and waits
    task.cancel()  # someone else cancels it in the same turn as the deadline
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [False]


async def test_a_deadline_alone_is_a_timeout() -> None:
    deadlines = Deadlines(asyncio.get_running_loop())

    async def attempt() -> bool:
        armed = deadlines.arm(0.05)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return deadlines.timed_out(armed)
        finally:
            deadlines.disarm(armed)
        return False

    assert await asyncio.wait_for(attempt(), 5.0) is True
    assert not deadlines._live
    assert not deadlines._expired
