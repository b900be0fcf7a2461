"""The fault matrix: one table of (fault, operation) -> expected outcome, on the wire.

Every row runs against a scripted raw-asyncio server with a pool of ONE connection and
then makes a follow-up call on the same client: if the fault leaked a connection (left
one acquired), that call would hang, and the row fails on its time bound. Retry waits
are real here (the testing switch is off), with small policy values, so the time bounds
are meaningful.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import attrs
import pytest

import kernel_async as ka
from kernel_async import AsyncKernel, RetryPolicy, Timeout, set_testing
from tests.scripted import (
    Action,
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
REPLAY = b'{"replay_id": "r1"}'
LIST = b'[{"replay_id": "r1"}]'
CHUNKED_BAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n"
HUGE = b"x" * (3 * 1024 * 1024)
ACCEPTED = respond(202, headers={"Retry-After": "1"})
REDIRECT = respond(307, headers={"Location": "http://127.0.0.2:9/x"})
POLICY = RetryPolicy(initial_backoff=0.05, max_backoff=0.05, max_retry_after=2.0)
BROWSER = (
    b'{"session_id": "b", "cdp_ws_url": "ws://h/c", "webdriver_ws_url": "ws://h/w",'
    b' "created_at": "2025-01-01T00:00:00Z", "headless": false, "stealth": false,'
    b' "timeout_seconds": 60, "region": "us-east"}'
)
BROWSER_OPS = ("create", "retrieve", "update", "delete", "list_browsers")


def http_date(delta: float) -> str:
    return format_datetime(datetime.now(timezone.utc) + timedelta(seconds=delta), usegmt=True)


def retry_after_date(delta: float) -> Action:
    """A 503 whose Retry-After HTTP-date is computed when it is sent."""

    async def act(w: asyncio.StreamWriter, r: Any) -> bool:
        return await json_error(503, **{"Retry-After": http_date(delta)})(w, r)

    return act


def ok_for(op: str) -> Action:
    return {
        "stop": OK,
        "start": respond(200, REPLAY),
        "list": respond(200, LIST),
        "download": respond(200, b"\x00\x00\x00\x18ftypmp42"),
        "create": respond(200, BROWSER),
        "retrieve": respond(200, BROWSER),
        "update": respond(200, BROWSER),
        "delete": respond(204),
        "list_browsers": respond(200, b"[" + BROWSER + b"]", headers={"X-Has-More": "false"}),
    }[op]


@dataclass
class Case:
    name: str
    op: str
    script: list[Action]
    exc: type[BaseException] | None  # None: the call succeeds
    attempts: int  # requests the server receives for the call
    max_seconds: float = 5.0
    min_seconds: float = 0.0
    timeout: float | Timeout = 1.0
    extra: dict[str, Any] = field(default_factory=dict)
    refuse_first: bool = False  # the first connect is refused (nothing sent)


def status_cases() -> list[Case]:
    cases = []
    for status in (408, 429, 500, 502, 503, 504):
        cases.append(Case(f"{status} then ok", "stop", [json_error(status), OK], None, 2))
        cases.append(Case(f"{status} always", "stop", [json_error(status)], ka.APIStatusError, 3))
    for status, exc in (
        (400, ka.BadRequestError),
        (401, ka.AuthenticationError),
        (403, ka.PermissionDeniedError),
        (404, ka.NotFoundError),
        (409, ka.ConflictError),
        (422, ka.UnprocessableEntityError),
    ):
        cases.append(Case(f"{status} not retried", "stop", [json_error(status), OK], exc, 1))
    cases.append(Case("503 on start retried", "start", [json_error(503), ok_for("start")], None, 2))
    return cases


def retry_after_cases() -> list[Case]:
    def ra(value: str, **kw: Any) -> list[Action]:
        return [json_error(503, **{"Retry-After": value}), OK]

    return [
        Case("Retry-After seconds", "stop", ra("1"), None, 2, min_seconds=0.9),
        Case("Retry-After fractional", "stop", ra("0.3"), None, 2, min_seconds=0.25),
        Case(
            "Retry-After HTTP-date", "stop", [retry_after_date(1.5), OK], None, 2, min_seconds=0.3
        ),
        Case("Retry-After past date", "stop", ra(http_date(-3600)), None, 2, max_seconds=1),
        Case("Retry-After negative", "stop", ra("-10"), None, 2, max_seconds=1),
        Case("Retry-After garbage", "stop", ra("soon, maybe"), None, 2, max_seconds=1),
        Case("Retry-After huge", "stop", ra("86400"), ka.InternalServerError, 1, max_seconds=1),
        Case(
            "retry-after-ms",
            "stop",
            [json_error(429, **{"retry-after-ms": "200"}), OK],
            None,
            2,
            min_seconds=0.15,
        ),
    ]


def wire_cases() -> list[Case]:
    return [
        Case("reset after send: stop retried", "stop", [reset(), OK], None, 2),
        Case("reset after send: start not", "start", [reset(), OK], ka.APIConnectionError, 1),
        Case("close without answer: list", "list", [close(), respond(200, LIST)], None, 2),
        Case("reset mid-body: list", "list", [truncated(LIST), respond(200, LIST)], None, 2),
        Case("truncated Content-Length", "start", [truncated(REPLAY)], ka.APIConnectionError, 1),
        Case("slow headers: stop", "stop", [hang(), OK], None, 2, max_seconds=3, timeout=0.5),
        Case("slow headers: start", "start", [hang()], ka.APITimeoutError, 1, timeout=0.5),
        Case(
            "slow body: list",
            "list",
            [slow_body(LIST, 5)],
            ka.APITimeoutError,
            3,
            max_seconds=4,
            timeout=0.4,
        ),
        Case("malformed chunked", "list", [raw(CHUNKED_BAD)], ka.APIConnectionError, 3),
        Case("empty body on JSON", "start", [respond(200, b"")], ka.APIResponseValidationError, 1),
        Case("invalid JSON", "list", [respond(200, b"[{")], ka.APIResponseValidationError, 1),
        Case("oversized error body", "stop", [respond(500, HUGE)], ka.InternalServerError, 3),
        Case(
            "202 then video", "download", [ACCEPTED, ok_for("download")], None, 2, min_seconds=0.9
        ),
        Case("redirect not followed", "stop", [REDIRECT], ka.APIStatusError, 1),
    ]


def browser_cases() -> list[Case]:
    """Each browsers operation: a status, refused before sending, reset after sending,
    slow headers. Only create is never re-sent once it may have reached the server."""
    cases = []
    for op in BROWSER_OPS:
        ok = ok_for(op)
        once = op == "create"
        cases += [
            Case(f"503 then ok: {op}", op, [json_error(503), ok], None, 2),
            Case(f"refused before send: {op}", op, [ok], None, 1, refuse_first=True),
            Case(
                f"reset after send: {op}",
                op,
                [reset(), ok],
                ka.APIConnectionError if once else None,
                1 if once else 2,
            ),
            Case(
                f"slow headers: {op}",
                op,
                [hang(), ok],
                ka.APITimeoutError if once else None,
                1 if once else 2,
                max_seconds=3,
                timeout=0.5,
            ),
        ]
    cases.append(
        Case("delete: reset, then 404 on the retry", "delete", [reset(), json_error(404)], None, 2)
    )
    cases.append(
        Case("delete: 404 at once is an error", "delete", [json_error(404)], ka.NotFoundError, 1)
    )
    return cases


CASES = status_cases() + retry_after_cases() + wire_cases() + browser_cases()


def invoke(c: AsyncKernel, op: str) -> Callable[[], Coroutine[Any, Any, object]]:
    r = c.browsers.replays
    return {
        "stop": lambda: r.stop("r", id="b"),
        "start": lambda: r.start("b"),
        "list": lambda: r.list("b"),
        "download": lambda: r.download("r", id="b"),
        "create": lambda: c.browsers.create(name="n"),
        "retrieve": lambda: c.browsers.retrieve("b"),
        "update": lambda: c.browsers.update("b", name="n"),
        "delete": lambda: c.browsers.delete("b"),
        "list_browsers": lambda: c.browsers.list(limit=10).first_page(),
    }[op]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_fault(case: Case) -> None:
    async with ScriptedServer(case.script, refuse_first=case.refuse_first) as srv:
        policy = attrs.evolve(POLICY, on_retry=lambda _: srv.open())
        async with AsyncKernel(
            api_key="matrix-key",
            base_url=srv.base_url,
            retry=policy,
            timeout=case.timeout,
            connection_limit=1,
        ) as c:
            call = invoke(c, case.op)
            with set_testing(False):
                t0 = time.monotonic()
                if case.exc is None:
                    await asyncio.wait_for(call(), case.max_seconds + 5)
                else:
                    with pytest.raises(case.exc) as info:
                        await asyncio.wait_for(call(), case.max_seconds + 5)
                    assert info.value.attempts == case.attempts  # type: ignore[attr-defined]
                elapsed = time.monotonic() - t0
            assert len(srv.received) == case.attempts, [r.method for r in srv.received]
            assert case.min_seconds <= elapsed <= case.max_seconds, elapsed
            # No leaked connection: with a pool of one, this would wait forever.
            srv.script = [ok_for(case.op)]
            await asyncio.wait_for(call(), 5)
            assert "matrix-key" in srv.received[0].headers["authorization"]


async def test_redirect_to_other_origin_never_gets_the_key() -> None:
    async with ScriptedServer([OK]) as other:
        loc = {"Location": f"{other.base_url}/browsers/b/replays/r/stop"}
        for status in (301, 302, 303, 307, 308):
            async with ScriptedServer([respond(status, headers=loc)]) as srv:
                async with AsyncKernel(api_key="matrix-key", base_url=srv.base_url) as c:
                    with pytest.raises(ka.APIStatusError) as info:
                        await c.browsers.replays.stop("r", id="b")
            assert info.value.status_code == status
        assert other.received == []
