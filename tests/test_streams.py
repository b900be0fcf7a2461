"""Event streams that survive: every event exactly once and in order across dropped
connections (resumed with Last-Event-ID), clear errors when a stream cannot resume,
prompt closing, quiet streams not cut by the attempt timeout. A small aiohttp.web server
on loopback plays the API: it numbers its events and drops connections on a schedule."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel_async import (
    APITimeoutError,
    AsyncKernel,
    NotFoundError,
    RetryPolicy,
    StreamInterruptedError,
    Timeout,
)
from kernel_async._retry import Fail, Retry, resume

pytestmark = pytest.mark.anyio


def log(n: int, pad: int = 0) -> str:
    message = f"line {n}" + "x" * pad
    return json.dumps({"event": "log", "message": message, "timestamp": "2026-01-01T00:00:00Z"})


class LogServer:
    """Serves `total` log events with ids 1..total, resuming after Last-Event-ID; the
    connections listed in `drops` are cut after that many events (an incomplete chunked
    body), optionally in the middle of the next event."""

    def __init__(self, total: int = 10, *, ids: bool = True) -> None:
        self.total = total
        self.ids = ids
        self.drops: list[int] = []  # per connection: events sent before cutting it
        self.half = False  # cut inside the next event's bytes
        self.retry_ms: int | None = None
        self.quiet: float = 0.0  # seconds of silence before each event
        self.pad = 0  # characters added to each message
        self.connections: list[str | None] = []  # Last-Event-ID of each connection
        self.closed = asyncio.Event()
        self.status = 200

    async def handle(self, request: web.Request) -> web.StreamResponse:
        last = request.headers.get("Last-Event-ID")
        self.connections.append(last)
        if self.status != 200:
            return web.json_response(
                {"code": "not_found", "message": "no such browser"}, status=self.status
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        start = int(last) + 1 if last else 1
        cut = self.drops.pop(0) if self.drops else None
        sent = 0
        try:
            if self.retry_ms is not None:
                await resp.write(f"retry: {self.retry_ms}\n\n".encode())
            for n in range(start, self.total + 1):
                if cut is not None and sent == cut:
                    if self.half:
                        await resp.write(b'id: 999\ndata: {"event": "lo')
                    assert request.transport is not None
                    request.transport.abort()  # no final chunk: the body breaks
                    return resp
                if self.quiet:
                    await asyncio.sleep(self.quiet)
                head = f"id: {n}\n" if self.ids else ""
                await resp.write(f": keep-alive\n{head}data: {log(n, self.pad)}\n\n".encode())
                sent += 1
            await resp.write_eof()
        except (OSError, aiohttp.ClientError, asyncio.CancelledError):
            self.closed.set()
            raise
        return resp


@pytest.fixture
async def served() -> AsyncIterator[tuple[LogServer, str]]:
    state = LogServer()
    app = web.Application()
    app.router.add_get("/browsers/{id}/logs/stream", state.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield state, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def messages(url: str, **options: Any) -> list[str]:
    async with AsyncKernel(api_key="k", base_url=url, **options) as client:
        stream = await client.browsers.logs.stream("b1", source="supervisor", follow=True)
        return [event.message async for event in stream]


async def test_a_clean_stream_delivers_every_event(served: tuple[LogServer, str]) -> None:
    state, url = served
    assert await messages(url) == [f"line {n}" for n in range(1, 11)]
    assert state.connections == [None]


async def test_dropped_connections_are_resumed_after_the_last_id(
    served: tuple[LogServer, str],
) -> None:
    state, url = served
    state.drops = [3, 0, 4]
    state.half = True  # each cut leaves half an event behind: never delivered
    assert await messages(url) == [f"line {n}" for n in range(1, 11)]
    assert state.connections == [None, "3", "3", "7"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drops=st.lists(st.integers(0, 4), max_size=6), half=st.booleans())
async def test_any_drop_schedule_gives_every_event_once_in_order(
    served: tuple[LogServer, str], drops: list[int], half: bool
) -> None:
    state, url = served
    state.drops, state.half, state.connections = list(drops), half, []
    assert await messages(url) == [f"line {n}" for n in range(1, 11)]


async def test_without_ids_a_break_is_an_error_saying_how_many_arrived(
    served: tuple[LogServer, str],
) -> None:
    state, url = served
    state.ids = False
    state.drops = [4]
    got: list[str] = []
    async with AsyncKernel(api_key="k", base_url=url) as client:
        stream = await client.browsers.logs.stream("b1", source="supervisor")
        with pytest.raises(StreamInterruptedError) as info:  # noqa: PT012
            async for event in stream:
                got.append(event.message)
    assert got == ["line 1", "line 2", "line 3", "line 4"]
    assert info.value.events == 4 and "4 events" in str(info.value)
    assert state.connections == [None]  # no blind reconnect: it would repeat events


async def test_a_server_that_keeps_dropping_ends_in_an_error(
    served: tuple[LogServer, str],
) -> None:
    state, url = served
    state.drops = [2] + [0] * 100  # two events, then cuts that deliver nothing, for ever
    state.total = 1000
    with pytest.raises(StreamInterruptedError, match="reconnected too often"):
        await messages(url)
    assert len(state.connections) == 11  # the first, then 10 reconnects in a row that fail


async def test_a_long_stream_cut_now_and_then_is_never_given_up(
    served: tuple[LogServer, str],
) -> None:
    state, url = served
    state.total = 30
    state.drops = [1] * 40  # a cut after every event: each reconnect still makes progress
    assert await messages(url) == [f"line {n}" for n in range(1, 31)]


async def test_the_servers_retry_field_is_the_least_wait(
    served: tuple[LogServer, str],
) -> None:
    state, url = served
    state.retry_ms = 2000
    state.drops = [2]
    decision = resume(0, RetryPolicy(), server_retry_ms=2000, free=None, remaining=None, jitter=0.0)
    assert isinstance(decision, Retry) and decision.planned >= 2.0
    assert await messages(url) == [f"line {n}" for n in range(1, 11)]  # (fast under testing)


async def test_a_retry_only_block_sets_the_wait_too() -> None:
    from tests.scripted import ScriptedServer, respond

    line = json.dumps({"event": "log", "message": "hi", "timestamp": "2026-01-01T00:00:00Z"})
    body = f"retry: 1500\n\nid: 1\ndata: {line}\n\n".encode()
    sse = {"Content-Type": "text/event-stream"}
    async with ScriptedServer([respond(200, body, headers=sse)]) as srv:
        async with AsyncKernel(api_key="k", base_url=srv.base_url) as client:
            stream = await client.browsers.logs.stream("b1", source="supervisor")
            assert [e.message async for e in stream] == ["hi"]
    assert stream.server_retry_ms == 1500  # WHATWG: set when read, though nothing dispatched


async def test_before_the_first_event_errors_are_those_of_any_call(
    served: tuple[LogServer, str],
) -> None:
    state, url = served
    state.status = 404
    async with AsyncKernel(api_key="k", base_url=url) as client:
        with pytest.raises(NotFoundError):
            await client.browsers.logs.stream("b1", source="supervisor")


async def test_a_quiet_stream_outlives_the_attempt_timeout(
    served: tuple[LogServer, str],
) -> None:
    state, url = served
    state.total, state.quiet = 3, 0.6
    assert await messages(url, timeout=0.3) == ["line 1", "line 2", "line 3"]


async def test_an_explicit_idle_bound_cuts_a_quiet_stream(served: tuple[LogServer, str]) -> None:
    state, url = served
    state.total, state.quiet, state.ids = 3, 1.0, False
    with pytest.raises(APITimeoutError, match=r"no event for 0\.3s \(its idle bound"):
        await messages(url, timeout=Timeout(5.0, idle=0.3))


async def test_leaving_the_loop_closes_the_connection_at_once(
    served: tuple[LogServer, str],
) -> None:
    state, url = served
    state.total, state.quiet = 1000, 0.01
    async with AsyncKernel(api_key="k", base_url=url) as client:
        stream = await client.browsers.logs.stream("b1", source="supervisor")
        async for _ in stream:
            break
        started = time.monotonic()
        await asyncio.wait_for(state.closed.wait(), 2)
        assert time.monotonic() - started < 1.5
        # The client stays usable.
        again = await client.browsers.logs.stream("b1", source="supervisor")
        async with again:
            assert (await again.__aiter__().__anext__()).message == "line 1"


async def test_cancelling_the_consumer_closes_the_stream(served: tuple[LogServer, str]) -> None:
    state, url = served
    state.total, state.quiet = 1000, 0.01
    async with AsyncKernel(api_key="k", base_url=url) as client:
        stream = await client.browsers.logs.stream("b1", source="supervisor")

        async def consume() -> None:
            async for _ in stream:
                pass

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(state.closed.wait(), 2)
        assert stream._task is not None and stream._task.done()


async def test_large_events_are_not_parsed_far_ahead_of_the_consumer(
    served: tuple[LogServer, str],
) -> None:
    # Ahead of a consumer that stopped, the stream holds at most 16 parsed events and (but
    # always one) 1 MiB of their data: 16 events of 256 KiB would be 4 MiB.
    state, url = served
    state.total, state.pad = 40, 256 * 1024
    async with AsyncKernel(api_key="k", base_url=url) as client:
        stream = await client.browsers.logs.stream("b1", source="supervisor")
        async with stream:
            events = stream.__aiter__()
            assert (await events.__anext__()).message.startswith("line 1x")
            await asyncio.sleep(0.5)  # the reader runs ahead as far as it may
            assert stream.last_event_id is not None
            assert int(stream.last_event_id) - stream.received <= 5
            assert [(await events.__anext__()).message[:7] for _ in range(3)] == [
                "line 2x",
                "line 3x",
                "line 4x",
            ]


async def test_small_events_are_still_parsed_ahead_in_batches(
    served: tuple[LogServer, str],
) -> None:
    state, url = served
    state.total = 100
    async with AsyncKernel(api_key="k", base_url=url) as client:
        stream = await client.browsers.logs.stream("b1", source="supervisor")
        async with stream:
            events = stream.__aiter__()
            await events.__anext__()
            await asyncio.sleep(0.5)
            assert stream.last_event_id is not None
            assert 8 <= int(stream.last_event_id) - stream.received <= 17


def test_resume_rules() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=8.0)
    assert isinstance(
        resume(10, policy, server_retry_ms=None, free=None, remaining=None, jitter=0.5), Fail
    )
    assert resume(0, policy, server_retry_ms=None, free=1, remaining=None, jitter=0.5) == Fail(
        "budget"
    )
    assert resume(0, policy, server_retry_ms=5000, free=None, remaining=4.0, jitter=0.0) == Fail(
        "deadline"
    )


def test_the_sync_twin_resumes_too(threaded_log_server: tuple[LogServer, str]) -> None:
    from kernel_sync import Kernel

    state, url = threaded_log_server
    state.drops = [2, 5]
    with Kernel(api_key="k", base_url=url) as client:
        with client.browsers.logs.stream("b1", source="supervisor") as stream:
            got = [event.message for event in stream]
    assert got == [f"line {n}" for n in range(1, 11)]
    assert state.connections == [None, "2", "7"]


@pytest.fixture
def threaded_log_server() -> Iterator[tuple[LogServer, str]]:
    import threading

    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        state = LogServer()
        app = web.Application()
        app.router.add_get("/browsers/{id}/logs/stream", state.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        box.update(state=state, url=f"http://127.0.0.1:{port}", loop=loop)
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield box["state"], box["url"]
    finally:
        box["loop"].call_soon_threadsafe(box["loop"].stop)
        thread.join(10)
