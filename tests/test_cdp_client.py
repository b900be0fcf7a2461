"""The tiny CDP client against a scripted DevTools websocket on loopback (no browser)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from kernel_async.testing._cdp import CDPClient, CDPError

from .loopback import serving

pytestmark = pytest.mark.anyio


async def devtools(request: web.Request) -> web.WebSocketResponse:
    """Answers by method: Echo -> result, Fail -> error, Emit -> an event then the result,
    Hang -> nothing, Close -> closes the connection."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        command = json.loads(msg.data)
        method, msg_id = command["method"], command["id"]
        if method == "Echo":
            await ws.send_json({"id": msg_id, "result": command["params"]})
        elif method == "Fail":
            await ws.send_json({"id": msg_id, "error": {"code": -32000, "message": "nope"}})
        elif method == "Emit":
            event = {"method": "Page.thing", "params": {"n": 1}, "sessionId": "s1"}
            await ws.send_json(event)
            await ws.send_json({"id": msg_id, "result": {}})
        elif method == "Close":
            await ws.close()
    return ws


@pytest.fixture
async def url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/devtools", devtools)
    async with serving(app) as base_url:
        yield base_url.replace("http://", "ws://") + "/devtools"


async def test_results_errors_and_events(url: str) -> None:
    async with await CDPClient.connect(url) as cdp:
        assert await cdp.send("Echo", {"a": [1, 2]}) == {"a": [1, 2]}
        with pytest.raises(CDPError, match="nope") as caught:
            await cdp.send("Fail")
        assert caught.value.code == -32000
        seen: list[tuple[dict[str, Any], str | None]] = []
        unsubscribe = cdp.on("Page.thing", lambda params, sid: seen.append((params, sid)))
        await cdp.send("Emit")
        unsubscribe()
        unsubscribe()  # twice is harmless
        await cdp.send("Emit")
        assert seen == [({"n": 1}, "s1")]


async def test_pending_commands_fail_when_the_connection_closes(url: str) -> None:
    async with await CDPClient.connect(url) as cdp:
        hanging = asyncio.ensure_future(cdp.send("Hang"))
        await asyncio.sleep(0)
        with pytest.raises(CDPError, match="closed"):
            await cdp.send("Close")
        with pytest.raises(CDPError, match="closed"):
            await hanging
        assert cdp.closed
        with pytest.raises(CDPError, match="closed"):
            await cdp.send("Echo")


async def test_a_command_times_out(url: str) -> None:
    async with await CDPClient.connect(url) as cdp:
        with pytest.raises(asyncio.TimeoutError):
            await cdp.send("Hang", timeout=0.05)
        assert await cdp.send("Echo", {"still": "usable"}) == {"still": "usable"}
