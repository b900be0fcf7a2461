"""Generated operations through the one request engine, over real loopback sockets
(issue 18, point 6): replay rules, retried statuses, typed errors, per-call options,
paged lists; and the blocking twin for one operation of each kind.

Retry waits are zero under the SDK's testing switch (see conftest); hooks still see
the planned wait.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import attrs
import pytest
from aiohttp import web

import kernel_sync
from kernel_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncKernel,
    NotFoundError,
    RateLimitError,
    RetryEvent,
    RetryPolicy,
)
from kernel_async._gen.models._shared import LogEvent, Profile
from kernel_async._pagination import AsyncPage, AsyncPager
from kernel_async._streaming import AsyncStream
from kernel_sync._paging import Page, Stream
from tests.loopback import serving
from tests.scripted import Action, Received, ScriptedServer, hang, json_error, reset, respond

pytestmark = pytest.mark.anyio

KEY = "sk-test-engine-0123456789abcdef"
NOW = "2024-01-02T03:04:05Z"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
PROFILE = {"id": "p1", "created_at": NOW, "name": "n"}
EXEC = {"exit_code": 0, "duration_ms": 5, "stdout_b64": "aGk="}


def ok_json(body: Any, headers: dict[str, str] | None = None) -> Action:
    return respond(
        200, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
    )


def query_of(req: Received) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(req.raw_path).query, keep_blank_values=True)


def path_of(req: Received) -> str:
    return urlsplit(req.raw_path).path


@attrs.frozen
class Op:
    """One generated call, what its successful answer is and how to check the result."""

    name: str
    run: Callable[[AsyncKernel], Awaitable[Any]]
    answer: Action
    method: str
    path: str
    check: Callable[[Any], bool]


CREATE = Op(
    "profiles.create",
    lambda c: c.profiles.create(name="n"),
    ok_json(PROFILE),
    "POST",
    "/profiles",
    lambda r: isinstance(r, Profile) and r.id == "p1",
)
EXEC_OP = Op(
    "browsers.process.exec",
    lambda c: c.browsers.process.exec("b 1", command="echo", args=["hi"]),
    ok_json(EXEC),
    "POST",
    "/browsers/b%201/process/exec",
    lambda r: r.exit_code == 0 and r.stdout_b64 == "aGk=",
)
RETRIEVE = Op(
    "profiles.retrieve",
    lambda c: c.profiles.retrieve("p1"),
    ok_json(PROFILE),
    "GET",
    "/profiles/p1",
    lambda r: isinstance(r, Profile) and r.name == "n",
)
SCREENSHOT = Op(
    "browsers.computer.capture_screenshot",
    lambda c: c.browsers.computer.capture_screenshot(
        "b1", region={"x": 0, "y": 0, "width": 2, "height": 2}
    ),
    respond(200, PNG, {"Content-Type": "image/png"}),
    "POST",
    "/browsers/b1/computer/screenshot",
    lambda r: r == PNG,
)


def kernel(srv: ScriptedServer | str, **kw: Any) -> AsyncKernel:
    url = srv if isinstance(srv, str) else srv.base_url
    return AsyncKernel(api_key=KEY, base_url=url, **kw)


# -- replay rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", [CREATE, EXEC_OP], ids=lambda o: o.name)
async def test_x_replay_false_is_not_resent_after_a_reset(op: Op) -> None:
    async with ScriptedServer([reset(), op.answer]) as srv, kernel(srv) as client:
        with pytest.raises(APIConnectionError) as info:
            await op.run(client)
        assert len(srv.received) == 1 and info.value.attempts == 1
        assert (srv.received[0].method, path_of(srv.received[0])) == (op.method, op.path)
        assert KEY not in str(info.value)


@pytest.mark.parametrize("op", [RETRIEVE, SCREENSHOT], ids=lambda o: o.name)
async def test_x_replay_true_is_resent_after_a_reset(op: Op) -> None:
    async with ScriptedServer([reset(), op.answer]) as srv, kernel(srv) as client:
        assert op.check(await op.run(client))
    first, second = srv.received
    assert (first.method, path_of(first)) == (op.method, op.path)
    assert (second.method, second.raw_path, second.body) == (
        first.method,
        first.raw_path,
        first.body,
    )


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("op", [CREATE, EXEC_OP, RETRIEVE, SCREENSHOT], ids=lambda o: o.name)
async def test_429_and_503_with_retry_after_are_retried_for_every_op(op: Op, status: int) -> None:
    events: list[RetryEvent] = []
    policy = RetryPolicy(on_retry=events.append)
    script = [json_error(status, **{"Retry-After": "2"}), op.answer]
    async with ScriptedServer(script) as srv, kernel(srv, retry=policy) as client:
        assert op.check(await op.run(client))
    assert len(srv.received) == 2
    assert [(e.status, e.planned_wait) for e in events] == [(status, 2.0)]


async def test_429_is_not_retried_past_max_retries() -> None:
    script = [json_error(429, "slow_down", "too many", **{"Retry-After": "0"})]
    async with ScriptedServer(script) as srv, kernel(srv, max_retries=1) as client:
        with pytest.raises(RateLimitError) as info:
            await client.profiles.create(name="n")
    assert len(srv.received) == 2 and info.value.attempts == 2


# -- errors and per-call options ------------------------------------------------------------


async def test_404_raises_not_found_with_the_parsed_error_body() -> None:
    script = [json_error(404, "not_found", "profile p9 does not exist")]
    async with ScriptedServer(script) as srv, kernel(srv) as client:
        with pytest.raises(NotFoundError) as info:
            await client.profiles.retrieve("p9")
    err = info.value
    assert err.status_code == 404 and err.attempts == 1 and len(srv.received) == 1
    assert err.error is not None
    assert (err.error.code, err.error.message) == ("not_found", "profile p9 does not exist")
    assert err.method == "GET" and err.url.endswith("/profiles/p9")


async def test_extra_headers_query_and_body_reach_the_server() -> None:
    async with ScriptedServer([ok_json(PROFILE), ok_json([])]) as srv, kernel(srv) as client:
        await client.profiles.create(
            name="n",
            extra_headers={"X-Trace": "t-1", "Idempotency-Key": "k 1"},
            extra_query={"dry_run": True, "q": "a b&c=d/é", "ids": ["x", "y"]},
            extra_body={"name": "override", "more": {"nested": [1, None]}},
        )
        await client.profiles.list(limit=5, extra_query={"offset": 10, "tag": "z"})
    create, listing = srv.received
    assert create.headers["x-trace"] == "t-1" and create.headers["idempotency-key"] == "k 1"
    assert create.headers["authorization"] == f"Bearer {KEY}"
    assert query_of(create) == [("dry_run", "true"), ("q", "a b&c=d/é"), ("ids", "x,y")]
    assert json.loads(create.body) == {"name": "override", "more": {"nested": [1, None]}}
    assert create.headers["content-type"] == "application/json"
    assert sorted(query_of(listing)) == [("limit", "5"), ("offset", "10"), ("tag", "z")]
    assert listing.body == b""


async def test_timeout_per_call_bounds_each_attempt() -> None:
    async with ScriptedServer([hang()]) as srv, kernel(srv, timeout=60.0) as client:
        start = time.monotonic()
        with pytest.raises(APITimeoutError) as info:
            await client.profiles.create(name="n", timeout=0.3)  # not replayed after sending
        assert info.value.attempts == 1 and len(srv.received) == 1
        with pytest.raises(APITimeoutError) as info:
            await client.with_options(max_retries=1).profiles.retrieve("p", timeout=0.3)
        assert info.value.attempts == 2 and len(srv.received) == 3
        assert time.monotonic() - start < 20  # far below the client's 60 s per attempt


# -- paged lists ----------------------------------------------------------------------------

PROFILES = [{"id": f"p{i}", "created_at": NOW} for i in range(5)]


@pytest.fixture
async def paged() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """Offset-paged /profiles and token-paged /audit-logs; records each query."""
    seen: list[dict[str, str]] = []

    async def profiles(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        offset, limit = int(request.query.get("offset", 0)), int(request.query["limit"])
        page = PROFILES[offset : offset + limit]
        more = offset + limit < len(PROFILES)
        headers = {"X-Has-More": "true" if more else "false"}
        if more:
            headers["X-Next-Offset"] = str(offset + limit)
        return web.json_response(page, headers=headers)

    entry = {
        k: "x" for k in ("auth_strategy", "client_ip", "domain", "email", "method", "path", "route")
    } | {"duration_ms": 1, "status": 200, "timestamp": NOW, "user_agent": "u", "user_id": "u"}

    async def audit(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        token = request.query.get("page_token", "")
        following = {"": "t2", "t2": "t3", "t3": ""}[token]
        headers = {"X-Has-More": "true" if following else "false"}
        if following:
            headers["X-Next-Page-Token"] = following
        return web.json_response([entry | {"path": f"/{token or 't1'}"}], headers=headers)

    app = web.Application()
    app.router.add_get("/profiles", profiles)
    app.router.add_get("/audit-logs", audit)
    async with serving(app) as url:
        yield url, seen


async def test_a_paged_list_walks_three_pages_and_stops(
    paged: tuple[str, list[dict[str, str]]],
) -> None:
    url, seen = paged
    async with kernel(url) as client:
        pager = client.profiles.list(limit=2)
        assert isinstance(pager, AsyncPager)
        ids = [p.id async for p in pager]
        assert ids == [p["id"] for p in PROFILES]
        assert seen == [
            {"limit": "2"},
            {"limit": "2", "offset": "2"},
            {"limit": "2", "offset": "4"},
        ]

        first = await client.profiles.list(limit=2)
        assert isinstance(first, AsyncPage) and first.has_more and first.next_offset == 2
        last = await (await first.get_next_page()).get_next_page()
        assert [p.id for p in last.items] == ["p4"] and not last.has_next_page()
        with pytest.raises(RuntimeError):
            await last.get_next_page()

        seen.clear()
        paths = [e.path async for e in client.audit_logs.list(start=NOW, end=NOW)]
        assert paths == ["/t1", "/t2", "/t3"]
        assert [q.get("page_token") for q in seen] == [None, "t2", "t3"]


# -- the blocking twin ----------------------------------------------------------------------

EVENTS = [{"event": "log", "message": f"line {i}", "timestamp": NOW} for i in range(3)]


@pytest.fixture
async def api() -> AsyncIterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """One operation of each kind; records (method, path?query, body) of each request."""
    seen: list[tuple[str, str, bytes]] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append((request.method, request.raw_path, await request.read()))
        response: web.StreamResponse = await handler(request)
        return response

    async def retrieve(request: web.Request) -> web.Response:
        return web.json_response(PROFILE | {"id": request.match_info["id"]})

    async def delete(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def screenshot(request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def logs(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in EVENTS:
            await response.write(f"event: log\ndata: {json.dumps(event)}\n\n".encode())
        await response.write_eof()
        return response

    async def profiles(request: web.Request) -> web.Response:
        offset = int(request.query.get("offset", 0))
        more = offset + 2 < len(PROFILES)
        headers = {"X-Has-More": str(more).lower(), "X-Next-Offset": str(offset + 2)}
        return web.json_response(PROFILES[offset : offset + 2], headers=headers)

    app = web.Application(middlewares=[record])
    app.router.add_get("/profiles/{id}", retrieve)
    app.router.add_delete("/profiles/{id}", delete)
    app.router.add_post("/browsers/{id}/computer/screenshot", screenshot)
    app.router.add_get("/browsers/{id}/logs/stream", logs)
    app.router.add_get("/profiles", profiles)
    async with serving(app) as url:
        yield url, seen


async def test_the_sync_twin_runs_one_operation_of_each_kind(
    api: tuple[str, list[tuple[str, str, bytes]]],
) -> None:
    url, seen = api

    def blocking() -> dict[str, Any]:
        with kernel_sync.Kernel(api_key=KEY, base_url=url) as client:
            page = client.profiles.list(limit=2)
            stream = client.browsers.logs.stream("b1", source="path", path="/var/log/x.log")
            with stream:
                events = list(stream)
            deleted: Any = client.profiles.delete  # returns None; the twin must too
            return {
                "json": client.profiles.retrieve("p 7"),
                "none": deleted("p7"),
                "binary": client.browsers.computer.capture_screenshot("b1"),
                "page": page,
                "items": [p.id for p in page],
                "stream": stream,
                "events": events,
            }

    got = await asyncio.to_thread(blocking)
    assert isinstance(got["json"], Profile) and got["json"].id == "p 7"
    assert got["none"] is None
    assert got["binary"] == PNG
    assert isinstance(got["page"], Page) and got["page"].has_more and got["page"].next_offset == 2
    assert got["items"] == [p["id"] for p in PROFILES]
    assert isinstance(got["stream"], Stream)
    assert all(isinstance(e, LogEvent) for e in got["events"])
    assert [e.message for e in got["events"]] == ["line 0", "line 1", "line 2"]
    assert [(m, p) for m, p, _ in seen] == [
        ("GET", "/profiles?limit=2"),
        ("GET", "/browsers/b1/logs/stream?source=path&path=%2Fvar%2Flog%2Fx.log"),
        ("GET", "/profiles/p%207"),
        ("DELETE", "/profiles/p7"),
        ("POST", "/browsers/b1/computer/screenshot"),
        ("GET", "/profiles?limit=2&offset=2"),
        ("GET", "/profiles?limit=2&offset=4"),
    ]


async def test_the_sync_twin_keeps_the_replay_rules() -> None:
    script = [reset(), ok_json(PROFILE), reset(), ok_json(PROFILE)]
    async with ScriptedServer(script) as srv:

        def blocking() -> tuple[Any, BaseException | None]:
            with kernel_sync.Kernel(api_key=KEY, base_url=srv.base_url) as client:
                fetched = client.profiles.retrieve("p1")  # reset, then answered: 2 requests
                try:
                    client.profiles.create(name="n")  # reset: not re-sent
                except APIConnectionError as exc:
                    return fetched, exc
                return fetched, None

        fetched, error = await asyncio.to_thread(blocking)
    assert isinstance(fetched, Profile)
    assert isinstance(error, APIConnectionError) and error.attempts == 1
    assert [r.method for r in srv.received] == ["GET", "GET", "POST"]


async def test_the_async_stream_kind_for_reference(
    api: tuple[str, list[tuple[str, str, bytes]]],
) -> None:
    url, _ = api
    async with kernel(url) as client:
        stream = await client.browsers.logs.stream("b1", source="supervisor", follow=False)
        assert isinstance(stream, AsyncStream)
        async with stream:
            assert [e.message async for e in stream] == ["line 0", "line 1", "line 2"]
