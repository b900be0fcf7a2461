"""Retry semantics on the wire: which failures are retried, waits, deadline, budget."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

import kernel_async as ka
from kernel_async import AsyncKernel, RetryEvent, RetryPolicy, Timeout, set_testing
from kernel_async._retry import MAX_RETRY_AFTER, RetryBudget, parse_http_date, parse_retry_after
from kernel_async.testing import FakeKernel
from tests.scripted import (
    ScriptedServer,
    close,
    hang,
    json_error,
    raw,
    reset,
    respond,
    slow_body,
    truncated,
)

pytestmark = pytest.mark.anyio

OK = respond(200)
REPLAY = respond(200, b'{"replay_id": "r1"}', {"Content-Type": "application/json"})


def kernel(srv: ScriptedServer, **kw: object) -> AsyncKernel:
    kw.setdefault("api_key", "sekrit-key-123")
    kw.setdefault("connection_limit", 1)  # a leaked connection would hang the next call
    return AsyncKernel(base_url=srv.base_url, **kw)  # type: ignore[arg-type]


async def assert_pool_usable(c: AsyncKernel, srv: ScriptedServer) -> None:
    """With a pool of one connection, a follow-up call only succeeds if nothing leaked."""
    srv.script = [OK]
    await asyncio.wait_for(c.browsers.replays.stop("r", id="b"), 5)


# -- which statuses are retried ---------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retryable_statuses_then_success(status: int) -> None:
    async with ScriptedServer([json_error(status), json_error(status), OK]) as srv:
        async with kernel(srv) as c:
            await c.browsers.replays.stop("r", id="b")
    assert len(srv.received) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
async def test_non_retryable_statuses(status: int) -> None:
    async with ScriptedServer([json_error(status)]) as srv:
        async with kernel(srv) as c:
            with pytest.raises(ka.APIStatusError) as info:
                await c.browsers.replays.stop("r", id="b")
            await assert_pool_usable(c, srv)
    assert info.value.attempts == 1
    assert len(srv.received) == 2


async def test_retries_exhausted_reports_attempts() -> None:
    async with ScriptedServer([json_error(503)]) as srv:
        async with kernel(srv, max_retries=3) as c:
            with pytest.raises(ka.InternalServerError) as info:
                await c.browsers.replays.stop("r", id="b")
    assert info.value.attempts == 4
    assert "4 attempts" in str(info.value)
    assert len(srv.received) == 4


async def test_max_retries_zero() -> None:
    async with ScriptedServer([json_error(503)]) as srv:
        async with kernel(srv, max_retries=0) as c:
            with pytest.raises(ka.InternalServerError):
                await c.browsers.replays.stop("r", id="b")
    assert len(srv.received) == 1


async def test_x_should_retry_overrides_status() -> None:
    async with ScriptedServer([json_error(400, **{"x-should-retry": "true"}), OK]) as srv:
        async with kernel(srv) as c:
            await c.browsers.replays.stop("r", id="b")
    assert len(srv.received) == 2
    async with ScriptedServer([json_error(503, **{"x-should-retry": "false"})]) as srv:
        async with kernel(srv) as c:
            with pytest.raises(ka.InternalServerError):
                await c.browsers.replays.stop("r", id="b")
    assert len(srv.received) == 1


# -- transport failures and idempotency --------------------------------------------------


async def test_stop_retried_after_reset_after_send() -> None:
    async with ScriptedServer([reset(), OK]) as srv:
        async with kernel(srv) as c:
            await c.browsers.replays.stop("r", id="b")
    assert len(srv.received) == 2


async def test_start_never_replayed_after_ambiguous_failure() -> None:
    for action in (reset(), close(), truncated(b'{"replay_id": "r1"}')):
        async with ScriptedServer([action, REPLAY]) as srv:
            async with kernel(srv) as c:
                with pytest.raises(ka.APIConnectionError) as info:
                    await c.browsers.replays.start("b")
                await assert_pool_usable(c, srv)
        assert info.value.attempts == 1
        assert [r.method for r in srv.received] == ["POST", "POST"]  # start, then the probe


async def test_start_not_replayed_after_timeout() -> None:
    async with ScriptedServer([hang()]) as srv:
        async with kernel(srv, timeout=0.3) as c:
            with pytest.raises(ka.APITimeoutError):
                await c.browsers.replays.start("b")
    assert len(srv.received) == 1


async def test_start_retried_on_status_and_connect_failure() -> None:
    async with ScriptedServer([json_error(503), REPLAY]) as srv:
        async with kernel(srv) as c:
            assert (await c.browsers.replays.start("b")).replay_id == "r1"
    assert len(srv.received) == 2


async def test_connect_failure_retried_then_reported() -> None:
    # A port that was just closed: connection refused, nothing sent.
    srv = ScriptedServer([OK])
    async with srv:
        url = srv.base_url
    events: list[RetryEvent] = []
    async with AsyncKernel(
        api_key="k", base_url=url, retry=RetryPolicy(on_retry=events.append)
    ) as c:
        with pytest.raises(ka.APIConnectionError) as info:
            await c.browsers.replays.start("b")
    assert not isinstance(info.value, ka.APITimeoutError)
    assert info.value.attempts == 3
    assert [e.attempt for e in events] == [1, 2]
    assert all(e.reason.startswith("connect") for e in events)
    assert "could not connect" in str(info.value)


async def test_timeout_after_send_retried_for_stop() -> None:
    async with ScriptedServer([hang(), OK]) as srv:
        async with kernel(srv, timeout=0.3, connection_limit=4) as c:
            await c.browsers.replays.stop("r", id="b")
    assert len(srv.received) == 2


async def test_slow_headers_time_out() -> None:
    async with ScriptedServer([respond(200, delay=2.0)]) as srv:
        async with kernel(srv, timeout=0.2, max_retries=1, connection_limit=4) as c:
            t0 = time.monotonic()
            with pytest.raises(ka.APITimeoutError) as info:
                await c.browsers.replays.stop("r", id="b")
            assert time.monotonic() - t0 < 1.9
    assert info.value.attempts == 2
    assert "timed out" in str(info.value)


async def test_slow_body_times_out() -> None:
    async with ScriptedServer([slow_body(b'[{"replay_id": "r"}]', 2.0)]) as srv:
        async with kernel(srv, timeout=0.2, max_retries=0, connection_limit=4) as c:
            with pytest.raises(ka.APITimeoutError):
                await c.browsers.replays.list("b")


async def test_truncated_json_body_retried_for_list() -> None:
    body = b'[{"replay_id": "r1"}]'
    async with ScriptedServer([truncated(body), respond(200, body)]) as srv:
        async with kernel(srv) as c:
            (replay,) = await c.browsers.replays.list("b")
    assert replay.replay_id == "r1"
    assert len(srv.received) == 2


async def test_malformed_chunked_is_connection_error() -> None:
    bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n"
    async with ScriptedServer([raw(bad)]) as srv:
        async with kernel(srv, max_retries=1) as c:
            with pytest.raises(ka.APIConnectionError) as info:
                await c.browsers.replays.list("b")
    assert info.value.attempts == 2


async def test_aiohttp_hidden_replay_is_counted() -> None:
    # aiohttp replays a GET once by itself after a reset; it must count against max_retries.
    async with ScriptedServer([reset()]) as srv:
        async with kernel(srv, max_retries=2) as c:
            with pytest.raises(ka.APIConnectionError) as info:
                await c.browsers.replays.list("b")
    assert len(srv.received) == 3
    assert info.value.attempts == 3
    async with ScriptedServer([reset()]) as srv:
        async with kernel(srv, max_retries=0) as c:
            with pytest.raises(ka.APIConnectionError) as info:
                await c.browsers.replays.list("b")
    assert len(srv.received) == 1
    assert info.value.attempts == 1


async def test_hidden_replay_counted_with_user_session() -> None:
    async with ScriptedServer([reset()]) as srv, aiohttp.ClientSession() as session:
        async with kernel(srv, max_retries=1, session=session) as c:
            with pytest.raises(ka.APIConnectionError) as info:
                await c.browsers.replays.list("b")
    assert info.value.attempts == len(srv.received)


# -- redirects and bounded reads -------------------------------------------------------


async def test_redirect_not_followed_and_key_not_forwarded() -> None:
    async with ScriptedServer([OK]) as other:
        to = {"Location": other.base_url + "/steal"}
        async with ScriptedServer([respond(302, b"", to)]) as srv:
            async with kernel(srv) as c:
                with pytest.raises(ka.APIStatusError) as info:
                    await c.browsers.replays.stop("r", id="b")
                await assert_pool_usable(c, srv)
        assert other.received == []
    assert info.value.status_code == 302
    assert "not followed" in str(info.value)
    assert info.value.attempts == 1


async def test_oversized_error_body_is_bounded() -> None:
    huge = b"x" * (5 * 1024 * 1024)
    for headers in ({}, {"Transfer-Encoding": "chunked"}):
        act = respond(500, huge) if not headers else raw(_chunked(500, huge))
        async with ScriptedServer([act]) as srv:
            async with kernel(srv, max_retries=0, connection_limit=4) as c:
                with pytest.raises(ka.InternalServerError) as info:
                    await c.browsers.replays.stop("r", id="b")
        assert isinstance(info.value.body, str) and len(info.value.body) <= 2000


def _chunked(status: int, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    chunk = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    return head + chunk


async def test_oversized_json_success_is_validation_error() -> None:
    body = b"[" + b'{"replay_id": "r"},' * 500_000 + b'{"replay_id": "r"}]'
    async with ScriptedServer([respond(200, body)]) as srv:
        async with kernel(srv) as c:
            with pytest.raises(ka.APIResponseValidationError, match="exceeds"):
                await c.browsers.replays.list("b")


# -- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after": "-5"}, None),  # not delay-seconds: ignored, backoff applies
        ({"retry-after": "garbage"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "99999999999999999999999999999999999999999"}, MAX_RETRY_AFTER),
        ({"retry-after": "1e400"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "0_0_1"}, None),
        ({"retry-after-ms": "-5", "retry-after": "30"}, 30.0),  # a bad ms falls back
        ({"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}, MAX_RETRY_AFTER),
        ({"retry-after-ms": "x", "retry-after": "2"}, 2.0),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_dates() -> None:
    future = datetime.now(timezone.utc) + timedelta(seconds=30)
    got = parse_retry_after({"retry-after": format_datetime(future, usegmt=True)})
    assert got is not None and 25 < got <= 30
    past = datetime.now(timezone.utc) - timedelta(days=1)
    assert parse_retry_after({"retry-after": format_datetime(past, usegmt=True)}) == 0.0


RFC_EXAMPLE = 784111777.0
"""Sun, 06 Nov 1994 08:49:37 GMT: the instant of RFC 9110's HTTP-date examples."""


@pytest.mark.parametrize(
    "text",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850 (obsolete)
        "Sun Nov  6 08:49:37 1994",  # asctime (obsolete)
        "sun nov 6 08:49:37 1994",
        "  SUN,   06 NOV 1994   08:49:37   gmt ",
        "06 Nov 1994 08:49:37 GMT",  # the weekday is optional
        "Mon, 06 Nov 1994 08:49:37 GMT",  # and not checked
        "Sun, 06 Nov 1994 09:49:37 +0100",
        "Sun, 06 Nov 1994 08:49:37 -0000",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun Nov  6 08:49:37 1994 GMT",
    ],
)
def test_http_date_forms(text: str) -> None:
    assert parse_http_date(text, RFC_EXAMPLE) == RFC_EXAMPLE
    # 30 s before that instant, the header asks for a 30 s wait.
    assert parse_retry_after({"retry-after": text}, RFC_EXAMPLE - 30) == 30.0


@pytest.mark.parametrize(
    "text",
    [
        "Sun, 31 Nov 1994 08:49:37 GMT",  # no such day
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49 GMT",
        "Sun, 06 Nov 1994 08:49:37",  # IMF without a zone
        "Sun, 06 Nov 1994 08:49:37 CET",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 19945 08:49:37 GMT",
        "Sun, 06 Nov 0000 08:49:37 GMT",
        "Sun Nov  6 08:49:37",
        "Sunday, 06-Nov 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 +0160",
        "Sun, \uff10\uff16 Nov 1994 08:49:37 GMT",  # full-width digits
        "",
        "GMT",
    ],
)
def test_http_date_rejects(text: str) -> None:
    assert parse_http_date(text, RFC_EXAMPLE) is None


@pytest.mark.parametrize(
    ("yy", "wall_year", "year"),
    [
        (94, 2025, 1994),
        (75, 2025, 2075),
        (76, 2025, 1976),
        (0, 2025, 2000),
        (30, 1990, 2030),
        (40, 1990, 2040),
        (41, 1990, 1941),
        (99, 2049, 2099),
    ],
)
def test_http_date_two_digit_year_is_at_most_50_years_ahead(
    yy: int, wall_year: int, year: int
) -> None:
    wall = datetime(wall_year, 6, 1, tzinfo=timezone.utc).timestamp()
    want = datetime(year, 11, 6, 8, 49, 37, tzinfo=timezone.utc).timestamp()
    assert parse_http_date(f"Sunday, 06-Nov-{yy:02d} 08:49:37 GMT", wall) == want


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)).map(
        lambda d: d.replace(microsecond=0, tzinfo=timezone.utc)
    ),
    st.integers(-49, 49),
)
def test_http_date_three_forms_agree(when: datetime, years_from_wall: int) -> None:
    expected = when.timestamp()
    asctime = f"{when:%a %b} {when.day:2d} {when:%H:%M:%S} {when.year:04d}"
    imf = f"{when:%a, %d %b} {when.year:04d} {when:%H:%M:%S} GMT"  # %Y pads on no libc
    assert parse_http_date(imf, 0) == expected
    assert parse_http_date(imf.lower(), 0) == expected
    assert parse_http_date(asctime, 0) == expected
    # RFC 850 names the year by two digits: exact within 50 years of the wall clock.
    wall_year = when.year - years_from_wall
    if 1 <= wall_year <= 9999:
        wall = datetime(wall_year, 7, 1, tzinfo=timezone.utc).timestamp()
        rfc850 = f"{when:%A}, {when.day:02d}-{when:%b}-{when.year % 100:02d} {when:%H:%M:%S} GMT"
        assert parse_http_date(rfc850, wall) == expected


_DATE_CHARS = "0123456789 ,:-+ADEFGJMNOSTUWacdeghilmnoprstuvyz\t\xa0\u0663"


@given(st.text(alphabet=_DATE_CHARS, max_size=40), st.floats(0, 2e10))
def test_http_date_never_raises(text: str, wall: float) -> None:
    got = parse_http_date(text, wall)
    assert got is None or isinstance(got, float)


@given(st.dictionaries(st.sampled_from(["retry-after", "retry-after-ms"]), st.text(max_size=50)))
def test_parse_retry_after_never_raises_or_goes_negative(headers: dict[str, str]) -> None:
    got = parse_retry_after(headers)
    assert got is None or 0 <= got <= MAX_RETRY_AFTER


async def test_retry_after_is_honoured() -> None:
    waits: list[RetryEvent] = []
    script = [
        json_error(429, **{"Retry-After": "0.4"}),
        json_error(503, **{"retry-after-ms": "300"}),
        OK,
    ]
    async with ScriptedServer(script) as srv:
        async with kernel(srv, retry=RetryPolicy(on_retry=waits.append)) as c:
            with set_testing(False):
                t0 = time.monotonic()
                await c.browsers.replays.stop("r", id="b")
                elapsed = time.monotonic() - t0
    assert [e.wait for e in waits] == [0.4, 0.3]
    assert [e.status for e in waits] == [429, 503]
    assert 0.65 < elapsed < 5.0


async def test_retry_after_beyond_cap_fails_at_once() -> None:
    async with ScriptedServer([json_error(503, **{"Retry-After": "120"})]) as srv:
        async with kernel(srv) as c:
            with set_testing(False):
                t0 = time.monotonic()
                with pytest.raises(ka.InternalServerError) as info:
                    await c.browsers.replays.stop("r", id="b")
                assert time.monotonic() - t0 < 2
    assert info.value.retry_after == 120
    assert "wait 120s" in str(info.value)
    assert len(srv.received) == 1


async def test_retry_after_past_deadline_fails_at_once() -> None:
    async with ScriptedServer([json_error(503, **{"Retry-After": "5"})]) as srv:
        async with kernel(srv, timeout=Timeout(total=2.0)) as c:
            with set_testing(False):
                t0 = time.monotonic()
                with pytest.raises(ka.InternalServerError) as info:
                    await c.browsers.replays.stop("r", id="b")
                assert time.monotonic() - t0 < 1.5
    assert info.value.retry_after == 5
    assert len(srv.received) == 1


# -- backoff, deadline, budget -----------------------------------------------------------


def test_backoff_full_jitter_bounds() -> None:
    policy = RetryPolicy()
    for n, bound in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0), (200, 8.0)]:
        draws = [policy.backoff(n) for _ in range(300)]
        assert all(0 <= d <= bound for d in draws)
        assert max(draws) > bound * 0.5  # spread over the range, not pinned


async def test_real_backoff_waits_without_testing_switch() -> None:
    events: list[RetryEvent] = []
    policy = RetryPolicy(initial_backoff=0.2, max_backoff=0.2, on_retry=events.append)
    async with ScriptedServer([json_error(503), json_error(503), OK]) as srv:
        async with kernel(srv, retry=policy) as c:
            with set_testing(False):
                t0 = time.monotonic()
                await c.browsers.replays.stop("r", id="b")
                elapsed = time.monotonic() - t0
    assert all(0 <= e.wait <= 0.2 and e.wait == e.planned_wait for e in events)
    assert elapsed >= sum(e.wait for e in events) * 0.9


async def test_testing_switch_removes_waits_but_reports_plan() -> None:
    events: list[RetryEvent] = []
    policy = RetryPolicy(initial_backoff=30, max_backoff=30, on_retry=events.append)
    async with ScriptedServer([json_error(503), OK]) as srv:
        async with kernel(srv, retry=policy) as c:
            t0 = time.monotonic()
            await c.browsers.replays.stop("r", id="b")
            assert time.monotonic() - t0 < 5
    assert events[0].wait == 0 and 0 <= events[0].planned_wait <= 30


async def test_total_deadline_bounds_the_call() -> None:
    async with ScriptedServer([hang()]) as srv:
        async with kernel(
            srv, timeout=Timeout(1.0, total=1.5), max_retries=10, connection_limit=20
        ) as c:
            with set_testing(False):
                t0 = time.monotonic()
                with pytest.raises(ka.APITimeoutError) as info:
                    await c.browsers.replays.stop("r", id="b")
                elapsed = time.monotonic() - t0
    # ~1.5 s; ~1.0 s when the drawn backoff would cross the deadline (then no retry starts).
    assert 0.9 < elapsed < 3.5
    assert info.value.attempts >= 1


async def test_no_wait_starts_that_cannot_end_before_deadline() -> None:
    starts: list[tuple[float, float]] = []
    policy = RetryPolicy(
        initial_backoff=10,
        max_backoff=10,
        on_retry=lambda e: starts.append((time.monotonic(), e.wait)),
    )
    async with ScriptedServer([json_error(503)]) as srv:
        async with kernel(srv, retry=policy, timeout=Timeout(total=1.0), max_retries=50) as c:
            with set_testing(False):
                t0 = time.monotonic()
                with pytest.raises(ka.InternalServerError):
                    await c.browsers.replays.stop("r", id="b")
                elapsed = time.monotonic() - t0
    # Waits are drawn from U(0, 10) against a 1 s deadline: most are refused outright, and
    # every one that did start ended before the deadline.
    assert all(at + wait < t0 + 1.0 for at, wait in starts)
    assert elapsed < 1.0 + 0.5


def test_budget_bucket() -> None:
    b = RetryBudget(12)
    assert b.acquire(5) and b.acquire(5) and not b.acquire(5)
    assert b.tokens == 2
    b.refund(5)
    assert b.tokens == 7
    b.refund(100)
    assert b.tokens == 12
    unlimited = RetryBudget(None)
    assert all(unlimited.acquire(10) for _ in range(1000))


async def test_budget_limits_retries_in_an_outage() -> None:
    policy = RetryPolicy(budget=20, retry_cost=5)
    async with ScriptedServer([json_error(503)]) as srv:
        async with kernel(srv, retry=policy, connection_limit=10) as c:
            for _ in range(10):
                with pytest.raises(ka.InternalServerError):
                    await c.browsers.replays.stop("r", id="b")
            # 10 first attempts + 4 retries (20 tokens / 5), not 30 requests.
            assert len(srv.received) == 14
            assert c._budget.tokens == 0
            srv.script = [OK]
            for _ in range(10):
                await c.browsers.replays.stop("r", id="b")  # first attempts never throttled
            assert c._budget.tokens == 10
            # shared by with_options copies
            assert c.with_options(max_retries=5)._budget is c._budget


# -- cancellation ------------------------------------------------------------------------


async def test_cancellation_is_prompt_not_retried_and_leaks_nothing() -> None:
    async with ScriptedServer([hang()]) as srv:
        async with kernel(srv) as c:
            task = asyncio.ensure_future(c.browsers.replays.stop("r", id="b"))
            while not srv.received:
                await asyncio.sleep(0.01)
            t0 = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - t0 < 1
            assert len(srv.received) == 1
            await assert_pool_usable(c, srv)
    assert len(srv.received) == 2


async def test_cancellation_during_backoff() -> None:
    # The hook fires just before the wait; Retry-After makes that wait 30 s exactly, so
    # the cancel always lands inside it (no drawn wait can be shorter than the test's pause).
    waiting = asyncio.Event()
    policy = RetryPolicy(on_retry=lambda e: waiting.set())
    async with ScriptedServer([json_error(503, **{"Retry-After": "30"})]) as srv:
        async with kernel(srv, retry=policy) as c:
            with set_testing(False):
                task = asyncio.ensure_future(c.browsers.replays.stop("r", id="b"))
                await asyncio.wait_for(waiting.wait(), 10)
                await asyncio.sleep(0.05)
                t0 = time.monotonic()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert time.monotonic() - t0 < 1
            assert len(srv.received) == 1
            await assert_pool_usable(c, srv)


# -- observability -----------------------------------------------------------------------


async def test_retries_logged_with_reason_and_wait(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kernel_async")
    async with ScriptedServer([json_error(503), reset(), OK]) as srv:
        async with kernel(srv) as c:
            await c.browsers.replays.stop("r", id="b")
    messages = [r.getMessage() for r in caplog.records if r.name == "kernel_async"]
    assert any("status 503" in m and "waiting" in m for m in messages)
    assert any("reset" in m for m in messages)
    assert all("sekrit-key-123" not in m for m in caplog.text.splitlines())


async def test_on_retry_hook_errors_are_contained(caplog: pytest.LogCaptureFixture) -> None:
    def bad_hook(event: RetryEvent) -> None:
        raise RuntimeError("hook bug")

    async with ScriptedServer([json_error(503), OK]) as srv:
        async with kernel(srv, retry=RetryPolicy(on_retry=bad_hook)) as c:
            await c.browsers.replays.stop("r", id="b")
    assert "on_retry hook raised" in caplog.text


async def test_emulator_faults_drive_retries() -> None:
    async with FakeKernel() as fake, fake.client() as c:
        b = fake.create_browser()
        replay = await c.browsers.replays.start(b)
        fake.fail("stop", status=503)
        fake.fail("stop", status=429, retry_after=1)
        events: list[RetryEvent] = []
        c2 = c.with_options(retry=RetryPolicy(on_retry=events.append))
        await c2.browsers.replays.stop(replay.replay_id, id=b)
        assert [e.status for e in events] == [503, 429]
        assert events[1].planned_wait == 1
        assert fake.count("stop") == 3


async def test_connect_bound_covers_waiting_for_a_pooled_connection() -> None:
    async with ScriptedServer([hang()]) as srv:
        async with kernel(srv, timeout=Timeout(30.0, connect=0.3), max_retries=0) as c:
            busy = asyncio.ensure_future(c.browsers.replays.stop("r", id="b"))
            while not srv.received:
                await asyncio.sleep(0.01)
            t0 = time.monotonic()
            with pytest.raises(ka.APITimeoutError, match=r"connect timed out after 0\.3s"):
                await c.browsers.replays.start("b")  # never sent: safe even for start
            assert time.monotonic() - t0 < 2
            busy.cancel()
            with pytest.raises(asyncio.CancelledError):
                await busy
    assert len(srv.received) == 1
