"""The retry budget under an outage, and bad input refused at the call."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import kernel_async as ka
from kernel_async import AsyncKernel, RetryPolicy, Timeout
from tests.scripted import ScriptedServer, json_error, respond

pytestmark = pytest.mark.anyio

# Untyped aliases: these calls are wrong on purpose.
_RP: Any = RetryPolicy
_T: Any = Timeout
_AK: Any = AsyncKernel


async def test_outage_load_stays_within_first_attempts_plus_budget() -> None:
    calls = 1000
    policy = RetryPolicy()  # defaults: 500 tokens, 5 per retry
    async with ScriptedServer([json_error(503)]) as srv:
        async with AsyncKernel(api_key="k", base_url=srv.base_url, retry=policy) as c:
            results = await asyncio.gather(
                *(c.browsers.replays.stop("r", id="b") for _ in range(calls)),
                return_exceptions=True,
            )
            assert all(isinstance(r, ka.InternalServerError) for r in results)
            during = len(srv.received)
            # Without a budget: 3 x 1000 = 3000 requests. With it: 1000 + 500 / 5.
            assert calls <= during <= calls + 500 // 5, during
            assert c._budget.tokens < 5

            # Recovery: first attempts always go out, each success refunds a token.
            srv.script = [respond(200)]
            await asyncio.gather(*(c.browsers.replays.stop("r", id="b") for _ in range(200)))
            assert len(srv.received) == during + 200
            assert c._budget.tokens >= 200

            # ...so that retries work again after the outage.
            srv.script = [json_error(503), respond(200)]
            base = len(srv.received)
            srv.received.clear()
            await c.browsers.replays.stop("r", id="b")
            assert len(srv.received) == 2, base


async def test_budget_none_means_unlimited() -> None:
    async with ScriptedServer([json_error(503)]) as srv:
        async with AsyncKernel(
            api_key="k", base_url=srv.base_url, retry=RetryPolicy(budget=None)
        ) as c:
            results = await asyncio.gather(
                *(c.browsers.replays.stop("r", id="b") for _ in range(100)),
                return_exceptions=True,
            )
    assert all(isinstance(r, ka.InternalServerError) for r in results)
    assert len(srv.received) == 300


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda: _RP(initial_backoff=-1), ValueError, "initial_backoff"),
        (lambda: _RP(max_backoff="1"), TypeError, "max_backoff"),
        (lambda: _RP(max_retry_after=float("inf")), ValueError, "max_retry_after"),
        (lambda: _RP(budget=-5), ValueError, "budget"),
        (lambda: _RP(retry_cost=1.5), TypeError, "retry_cost"),
        (lambda: _T(attempt=0), ValueError, "attempt"),
        (lambda: _T(connect=-1), ValueError, "connect"),
        (lambda: _T(total=True), TypeError, "total"),
        (lambda: _AK(api_key=5), TypeError, "api_key"),
        (lambda: _AK(api_key="a\nb"), ValueError, "api_key"),
        (lambda: _AK(api_key="k", retry="fast"), TypeError, "retry"),
        (
            lambda: _AK(api_key="k", default_headers=[("a", "b")]),
            TypeError,
            "default_headers",
        ),
        (lambda: _AK(api_key="k", default_headers={"X": 1}), TypeError, "default_headers"),
        (
            lambda: _AK(api_key="k", default_headers={"Bad Name": "v"}),
            ValueError,
            "Bad Name",
        ),
        (lambda: _AK(api_key="k", base_url="http://x.test:99999"), ValueError, "port"),
        (lambda: _AK(api_key="k").with_options(max_retries=-2), ValueError, "max_retries"),
        (lambda: _AK(api_key="k").with_options(timeout=-2), ValueError, "timeout"),
    ],
)
def test_bad_options_name_the_parameter(make: object, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        make()  # type: ignore[operator]


async def test_bad_call_arguments_fail_before_io() -> None:
    async with ScriptedServer([respond(200)]) as srv:
        async with AsyncKernel(api_key="k", base_url=srv.base_url) as c:
            r = c.browsers.replays
            with pytest.raises(ValueError, match="timeout"):
                await r.stop("r", id="b", timeout=-1)
            with pytest.raises(TypeError, match="extra_headers"):
                await r.stop("r", id="b", extra_headers={"X": None})  # type: ignore[dict-item]
            with pytest.raises(ValueError, match="extra_headers"):
                await r.stop("r", id="b", extra_headers={"X": "a\r\nb"})
            with pytest.raises(TypeError, match="id must be a str"):
                await r.stop("r", id=b"b")  # type: ignore[arg-type]
    assert srv.received == []
