"""Regressions for the engine findings of issue 21, over real loopback sockets.

Each test here failed before its fix: Retry-After in the asctime form was ignored; a
caller's callback raising `TimeoutError` was taken for a network timeout and retried;
bytes that arrived on an idle pooled connection were read as the next call's response;
connect failures spoke aiohttp's ``ssl:default``; ``with AsyncKernel()`` said nothing useful.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

import kernel_async as ka
from kernel_async import AsyncKernel, RetryEvent, RetryPolicy
from kernel_async._errors import transport_error
from kernel_async._transport import ConnectFailure, describe_connect
from kernel_async.testing import FakeKernel, sample_video
from kernel_sync import Kernel
from tests.scripted import Action, Received, ScriptedServer, json_error, respond

pytestmark = pytest.mark.anyio

KEY = "sk-review-0123456789"
VIDEO = sample_video()
REPLAYS = b'[{"replay_id": "r1", "started_at": "2025-01-01T00:00:00Z"}]'


def kernel(srv: ScriptedServer, **kw: Any) -> AsyncKernel:
    return AsyncKernel(api_key=KEY, base_url=srv.base_url, **kw)


async def eventually(check: Any, within: float = 5.0) -> None:
    end = time.monotonic() + within
    while not check():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


# -- Retry-After in each HTTP-date form ------------------------------------------------------


def _forms(when: datetime) -> dict[str, str]:
    return {
        "imf-fixdate": when.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "rfc850": f"{when:%A}, {when:%d-%b}-{when.year % 100:02d} {when:%H:%M:%S} GMT",
        "asctime": f"{when:%a %b} {when.day:2d} {when:%H:%M:%S %Y}",
    }


@pytest.mark.parametrize("form", ["imf-fixdate", "rfc850", "asctime"])
async def test_retry_after_http_date_in_every_form_is_honoured(form: str) -> None:
    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=30)
    header = _forms(when)[form]
    events: list[RetryEvent] = []
    async with ScriptedServer([json_error(503, **{"Retry-After": header}), respond(200)]) as srv:
        async with kernel(srv, retry=RetryPolicy(on_retry=events.append)) as c:
            await c.browsers.replays.stop("r", id="b")  # the testing switch skips the wait
    assert len(srv.received) == 2
    # The planned wait is the server's (~30 s, whole seconds), not a backoff below 0.5 s.
    assert len(events) == 1 and 20 < events[0].planned_wait <= 30, (header, events)


async def test_retry_after_asctime_beyond_the_cap_fails_at_once() -> None:
    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=120)
    header = _forms(when)["asctime"]
    async with ScriptedServer([json_error(429, **{"Retry-After": header})]) as srv:
        async with kernel(srv) as c:
            with pytest.raises(ka.RateLimitError) as info:
                await c.browsers.replays.stop("r", id="b")
    assert len(srv.received) == 1  # not retried after a backoff as if no date were given
    assert info.value.retry_after is not None and 100 < info.value.retry_after <= 120


# -- a callback's exception is the caller's ----------------------------------------------


def debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "keep.mp4")


ERRORS = [
    TimeoutError("the caller's own timeout"),
    asyncio.TimeoutError("an asyncio timeout of the caller's"),
    aiohttp.ClientPayloadError("the caller's own aiohttp failure"),
    ValueError("AUTH of the caller's"),  # the wording aiohttp uses for session credentials
    OSError(28, "No space left on device"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("callback", ["progress", "on_start"])
async def test_callback_exception_propagates_as_itself_never_retried(
    tmp_path: Path, callback: str, error: Exception
) -> None:
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"old")
    calls: list[object] = []

    def raising(value: object) -> None:
        calls.append(value)
        raise error

    callbacks: dict[str, Any] = {callback: raising}
    video = respond(200, VIDEO, {"Content-Type": "video/mp4"})
    async with ScriptedServer([video]) as srv:
        async with kernel(srv, max_retries=2) as c:
            with pytest.raises(type(error)) as info:
                await c.browsers.replays.download_to(target, "r", id="b", **callbacks)
    assert info.value is error  # itself: not wrapped, not an APITimeoutError
    assert not isinstance(info.value, ka.KernelError)
    assert len(srv.received) == 1 and len(calls) == 1  # never retried
    assert target.read_bytes() == b"old" and debris(tmp_path) == []


def test_callback_exception_propagates_from_the_sync_twin(tmp_path: Path) -> None:
    with FakeKernel.in_thread(finalise_seconds=0.01) as fake:
        browser = fake.create_browser()
        with Kernel(api_key=fake.api_key, base_url=fake.base_url) as k:
            replay = k.browsers.replays.start(browser)
            k.browsers.replays.stop(replay.replay_id, id=browser)
            assert k.browsers.replays.download(replay.replay_id, id=browser)  # now ready
            before = fake.count("download")
            mine = TimeoutError("the caller's own timeout")

            def progress(_n: int) -> None:
                raise mine

            with pytest.raises(TimeoutError) as info:
                k.browsers.replays.download_to(
                    tmp_path / "v.mp4", replay.replay_id, id=browser, progress=progress
                )
            assert info.value is mine
            assert fake.count("download") == before + 1  # never retried
    assert list(tmp_path.iterdir()) == []


# -- unsolicited bytes on an idle pooled connection --------------------------------------


def _head(status: int, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


STALE = json.dumps({"code": "not_found", "message": "a stale answer nobody asked for"}).encode()


def answer_then_stale(written: asyncio.Event, go: asyncio.Event) -> Action:
    """Answer the request; once the client holds the connection idle (`go`), write one
    more complete response on it, unasked, and say so (`written`)."""

    async def act(w: asyncio.StreamWriter, r: Received) -> bool:
        w.write(_head(200, REPLAYS))
        await w.drain()
        await go.wait()
        w.write(_head(404, STALE))
        await w.drain()
        written.set()
        return True

    return act


async def _settle() -> None:
    # The stale bytes are in the client's socket buffer once written (loopback); a few
    # loop turns let the client's protocol read them, as it would while idle.
    await asyncio.sleep(0.1)


async def test_unsolicited_response_on_idle_connection_is_not_read_as_the_next_answer() -> None:
    written, go = asyncio.Event(), asyncio.Event()
    script = [answer_then_stale(written, go), respond(200, REPLAYS)]
    async with ScriptedServer(script) as srv:
        async with kernel(srv, connection_limit=1) as c:
            assert [r.replay_id for r in await c.browsers.replays.list("b")] == ["r1"]
            go.set()
            await asyncio.wait_for(written.wait(), 5)
            await _settle()
            second = await c.browsers.replays.list("b")  # the 404 would raise NotFoundError
            assert [r.replay_id for r in second] == ["r1"]
            assert len(srv.received) == 2  # the second call's own request was answered
            assert srv.connections == 2  # on a new connection: the dirty one was closed
            await eventually(lambda: srv.open_connections == 1)


async def test_every_dirty_pooled_connection_is_skipped() -> None:
    # Three idle connections, each with an unsolicited response on it: the next call
    # passes over all three (the pool holds at most `connection_limit` of them).
    written = [asyncio.Event() for _ in range(3)]
    go = asyncio.Event()
    gate = asyncio.Event()  # holds the first three answers until all three are in flight
    served: list[int] = []

    def first_three(w: asyncio.StreamWriter, r: Received) -> Any:
        async def act() -> bool:
            index = len(served)
            served.append(index)
            if len(served) == 3:
                gate.set()
            await gate.wait()
            return await answer_then_stale(written[index], go)(w, r)

        return act()

    script: list[Action] = [first_three, first_three, first_three, respond(200, REPLAYS)]
    async with ScriptedServer(script) as srv:
        async with kernel(srv, connection_limit=3) as c:
            firsts = await asyncio.gather(*(c.browsers.replays.list("b") for _ in range(3)))
            assert all([r.replay_id for r in page] == ["r1"] for page in firsts)
            assert srv.connections == 3
            go.set()
            for event in written:
                await asyncio.wait_for(event.wait(), 5)
            await _settle()
            fourth = await c.browsers.replays.list("b")
            assert [r.replay_id for r in fourth] == ["r1"]
            assert len(srv.received) == 4 and srv.connections == 4


async def test_clean_pooled_connection_is_still_reused() -> None:
    async with ScriptedServer([respond(200, REPLAYS)]) as srv:
        async with kernel(srv, connection_limit=1) as c:
            for _ in range(3):
                await c.browsers.replays.list("b")
    assert len(srv.received) == 3 and srv.connections == 1


# -- connect failures in plain words ------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connect_refused_says_where_why_and_how_often() -> None:
    port = _closed_port()
    async with AsyncKernel(api_key=KEY, base_url=f"http://127.0.0.1:{port}") as c:
        with pytest.raises(ka.APIConnectionError) as info:
            await c.browsers.replays.list("b")
    text = str(info.value)
    assert text == (
        f"could not connect to 127.0.0.1:{port}: connection refused; "
        "check base_url (or KERNEL_BASE_URL) (3 attempts)"
    )
    assert "ssl:" not in text and "Cannot connect" not in text and "Errno" not in text


async def test_connect_refused_with_the_budget_spent_says_it_was_not_retried() -> None:
    port = _closed_port()
    base = f"http://127.0.0.1:{port}"
    async with AsyncKernel(api_key=KEY, base_url=base, retry=RetryPolicy(budget=0)) as c:
        with pytest.raises(ka.APIConnectionError) as info:
            await c.browsers.replays.list("b")
    assert info.value.attempts == 1
    assert str(info.value).startswith(f"could not connect to 127.0.0.1:{port}: connection refused")
    assert "not retried: the client's retry budget is spent" in str(info.value)


@pytest.fixture(scope="module")
def untrusted_tls() -> ssl.SSLContext:
    trustme = pytest.importorskip("trustme")
    cert = trustme.CA().issue_cert("127.0.0.1")  # signed by a CA the client does not trust
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


async def test_tls_failures_in_plain_words(untrusted_tls: ssl.SSLContext) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=untrusted_tls)
    plain = await asyncio.start_server(answer, "127.0.0.1", 0)  # no TLS at all
    try:
        tls_port = server.sockets[0].getsockname()[1]
        plain_port = plain.sockets[0].getsockname()[1]
        async with AsyncKernel(api_key=KEY, base_url=f"https://127.0.0.1:{tls_port}") as c:
            with pytest.raises(ka.APIConnectionError) as info:
                await c.browsers.replays.list("b")
        assert str(info.value).startswith(
            f"TLS verification failed for 127.0.0.1:{tls_port}: unable to get local issuer"
        )
        assert "not retried" in str(info.value) and info.value.attempts == 1
        assert "ssl:" not in str(info.value)
        async with AsyncKernel(api_key=KEY, base_url=f"https://127.0.0.1:{plain_port}") as c:
            with pytest.raises(ka.APIConnectionError) as info:
                await c.browsers.replays.list("b")
        assert "ssl:" not in str(info.value) and "_ssl.c" not in str(info.value)
    finally:
        server.close()
        plain.close()
        await server.wait_closed()
        await plain.wait_closed()


def _key(host: str, port: int | None) -> SimpleNamespace:
    return SimpleNamespace(host=host, port=port, ssl=True, is_ssl=True)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            aiohttp.ClientConnectorError(
                _key("127.0.0.1", 9),  # type: ignore[arg-type]
                ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)"),
            ),
            ConnectFailure("tcp", "127.0.0.1", 9, "connection refused"),
        ),
        (
            aiohttp.ClientConnectorDNSError(
                _key("nosuch.invalid", 443),  # type: ignore[arg-type]
                socket.gaierror(-2, "Name or service not known"),
            ),
            ConnectFailure("dns", "nosuch.invalid", 443, "name or service not known"),
        ),
        (
            aiohttp.ClientProxyConnectionError(
                _key("proxy.local", 3128),  # type: ignore[arg-type]
                ConnectionRefusedError(111, "Connect call failed"),
            ),
            ConnectFailure("proxy", "proxy.local", 3128, "connection refused"),
        ),
        (
            aiohttp.ClientConnectorSSLError(
                _key("::1", 443),
                ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1000)"),
            ),
            ConnectFailure("tls", "::1", 443, "wrong version number"),
        ),
    ],
    ids=["tcp", "dns", "proxy", "tls"],
)
def test_describe_connect(error: aiohttp.ClientConnectorError, expected: ConnectFailure) -> None:
    assert describe_connect(error) == expected


@pytest.mark.parametrize(
    ("failure", "why", "expected"),
    [
        (
            ConnectFailure("dns", "nosuch.invalid", 443, "name or service not known"),
            "exhausted",
            "could not resolve the host name nosuch.invalid: name or service not known; "
            "check base_url (or KERNEL_BASE_URL)",
        ),
        (
            ConnectFailure("proxy", "proxy.local", 3128, "connection refused"),
            "exhausted",
            "could not connect to the proxy at proxy.local:3128: connection refused; "
            "check proxy= (or HTTPS_PROXY)",
        ),
        (
            ConnectFailure("tls", "::1", 443, "wrong version number"),
            "fatal",
            "TLS handshake with [::1]:443 failed: wrong version number; "
            "not retried: retrying would not change it",
        ),
        (
            ConnectFailure("tcp", "10.0.0.1", 443, "connection refused"),
            "deadline",
            "could not connect to 10.0.0.1:443: connection refused; check base_url (or "
            "KERNEL_BASE_URL); not retried: another attempt would pass the call's total deadline",
        ),
    ],
)
def test_connect_failure_wording(failure: ConnectFailure, why: str, expected: str) -> None:
    kind = "tls" if failure.stage == "tls" else "connect"
    error = transport_error(
        kind, OSError(), None, method="GET", url="u", attempts=1, why=why, connect=failure
    )
    assert error.message == expected


# -- the wrong `with` ---------------------------------------------------------------------


def test_plain_with_on_the_async_client_says_async_with() -> None:
    client = AsyncKernel(api_key=KEY)
    with pytest.raises(TypeError, match=r"use `async with AsyncKernel\(\) as client:`"):
        with client:  # type: ignore[attr-defined]  # as type checkers say too
            pass


async def test_async_with_on_the_sync_client_says_with() -> None:
    async with ScriptedServer([respond(200)]) as srv:
        k = Kernel(api_key=KEY, base_url=srv.base_url)
        try:
            with pytest.raises(TypeError, match=r"use `with Kernel\(\) as client:`"):
                async with k:  # type: ignore[attr-defined]  # as type checkers say too
                    pass
        finally:
            k.close()
    assert srv.received == []
