"""Attempt time limits kept by one timer per loop (`_transport.Deadlines`), not one
aiohttp timer per request: timeouts still end attempts on time, a cancel from outside
stays a cancel, and nothing is left behind."""

from __future__ import annotations

import asyncio
import re
import sys
import time

import aiohttp
import pytest

import kernel_async as ka
from kernel_async import AsyncKernel, Timeout
from kernel_async._transport import Deadlines
from tests.interrupt import run_script
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


# -- found in review: close(), a second loop, a fork, and 3.10's connect timeouts ------------


@pytest.mark.parametrize("limit", [30.0, None])
async def test_close_ends_calls_in_flight_on_a_user_session(limit: float | None) -> None:
    # The user's session is not closed by close(): the call must still end, as "closed".
    async with ScriptedServer([hang()]) as srv, aiohttp.ClientSession() as session:
        c = AsyncKernel(api_key=KEY, base_url=srv.base_url, session=session, max_retries=0)
        call = asyncio.create_task(c.browsers.replays.stop("r", id="b", timeout=limit))
        while not srv.received:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await c.close()
        with pytest.raises(ka.APIConnectionError, match="closed"):
            await asyncio.wait_for(call, 5.0)
        assert time.monotonic() - started < 5.0


async def test_close_fails_a_call_waiting_for_a_pooled_connection_with_a_kernel_error() -> None:
    async with ScriptedServer([hang()]) as srv:
        c = AsyncKernel(api_key=KEY, base_url=srv.base_url, connection_limit=1, max_retries=0)
        holder = asyncio.create_task(c.browsers.replays.stop("r", id="a", timeout=30))
        while not srv.received:
            await asyncio.sleep(0.01)
        waiter = asyncio.create_task(c.browsers.replays.stop("r", id="b", timeout=30))
        await asyncio.sleep(0.1)  # it waits for the one connection
        await c.close()
        for call in (holder, waiter):
            with pytest.raises(ka.APIConnectionError, match="closed"):
                await asyncio.wait_for(call, 5.0)  # not a bare CancelledError
    assert len(srv.received) == 1


@pytest.mark.parametrize("spec", ["equal", "shorter"])
async def test_a_connect_limit_hit_while_waiting_for_the_pool_is_not_sent(spec: str) -> None:
    # With connect == attempt both limits fall due in one turn; on 3.10 aiohttp then turns
    # the cancellation into its connect timeout outside `connect`: still "not sent".
    async with ScriptedServer([hang()]) as srv:
        limits = Timeout(0.3, connect=0.3 if spec == "equal" else 0.2)
        c = AsyncKernel(api_key=KEY, base_url=srv.base_url, connection_limit=1, max_retries=1)
        async with c:
            holder = asyncio.create_task(c.browsers.replays.stop("r", id="a", timeout=30))
            while not srv.received:
                await asyncio.sleep(0.01)
            try:
                with pytest.raises(ka.APITimeoutError, match="connect timed out") as info:
                    await c.browsers.create(timeout=limits)
            finally:
                holder.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await holder
    assert info.value.attempts == 2  # never left: a create is retried
    assert len(srv.received) == 1


async def test_a_user_session_keeps_its_limits_after_a_call_from_a_wrong_loop() -> None:
    # A first call from another loop is refused; calls from the session's own loop must
    # still end at their limit (the timer must live on the loop the calls run on).
    async with ScriptedServer([hang()]) as srv, aiohttp.ClientSession() as session:
        c = AsyncKernel(api_key=KEY, base_url=srv.base_url, session=session, max_retries=0)

        def from_another_loop() -> None:
            with pytest.raises(ka.KernelError, match="another event loop"):
                asyncio.run(c.browsers.replays.stop("r", id="b"))

        await asyncio.to_thread(from_another_loop)
        started = time.monotonic()
        with pytest.raises(ka.APITimeoutError):
            await asyncio.wait_for(c.browsers.replays.stop("r", id="b", timeout=0.4), 10.0)
        assert time.monotonic() - started < 5.0
        await c.close()


def test_a_forked_child_keeps_its_attempt_limits() -> None:
    out = run_script(
        """
        import os, signal, socket, sys, time
        import kernel_async as ka, kernel_sync
        lsn = socket.socket(); lsn.bind(("127.0.0.1", 0)); lsn.listen(100)  # never answers
        base = "http://127.0.0.1:%d" % lsn.getsockname()[1]
        k = kernel_sync.Kernel(api_key="k", base_url=base, max_retries=0)
        def call():
            started = time.monotonic()
            try:
                k.browsers.replays.stop("r", id="b", timeout=0.4)
            except ka.APITimeoutError:
                return time.monotonic() - started
        call()  # the parent's first call: its loop, its session, its timer
        pid = os.fork()
        if pid == 0:
            signal.alarm(15)  # a limit that never fires becomes a failure, not a hang
            took = call()
            k.close()
            os._exit(0 if took is not None and took < 5 else 1)
        _, status = os.waitpid(pid, 0)
        k.close()
        lsn.close()
        print("child", os.waitstatus_to_exitcode(status))
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "child 0", out.stderr


# -- what the errors say (found trying it as a new user) ---------------------------------------


async def test_a_timeout_cut_short_by_the_total_deadline_says_so() -> None:
    async with ScriptedServer([hang()]) as srv:
        limits = Timeout(5.0, total=0.4)
        async with AsyncKernel(api_key=KEY, base_url=srv.base_url, timeout=limits) as c:
            with pytest.raises(ka.APITimeoutError) as info:
                await c.browsers.replays.stop("r", id="b")
    text = str(info.value)
    assert "the rest of the call's total deadline" in text, text
    assert re.search(r"request timed out after 0\.(4|399)s,", text), text  # not 0.399993s


async def test_an_ambiguous_failure_says_why_it_was_not_retried() -> None:
    async with ScriptedServer([hang()]) as srv:
        async with AsyncKernel(api_key=KEY, base_url=srv.base_url) as c:
            with pytest.raises(ka.APITimeoutError) as info:
                await c.browsers.create(timeout=0.3)
    assert "not retried: the server may have acted on it" in str(info.value)
    assert info.value.attempts == 1
    assert len(srv.received) == 1
