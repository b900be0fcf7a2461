"""browsers.curl in the emulator: a request made for the browser, answered in the API's
shape (a small aiohttp.web server on loopback is the site it fetches)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from kernel_async import APIStatusError, AsyncKernel
from kernel_async.testing import FakeKernel

pytestmark = pytest.mark.anyio


@pytest.fixture
async def site() -> AsyncIterator[str]:
    async def page(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(
            body=b"echo:" + body,
            headers={"X-Seen": request.headers.get("X-Ask", "")},
            status=201 if request.method == "POST" else 200,
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    server = web.TCPSite(runner, "127.0.0.1", 0)
    await server.start()
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_curl_fetches_for_the_browser(
    fake: FakeKernel, client: AsyncKernel, site: str
) -> None:
    b = (await client.browsers.create()).session_id
    got = await client.browsers.curl(
        b, url=f"{site}/x", method="POST", body="hi", headers={"X-Ask": "yes"}
    )
    assert (got.status, got.body) == (201, "echo:hi")
    assert got.headers["X-Seen"] == ["yes"] and got.duration_ms >= 0
    raw = await client.browsers.curl(b, url=f"{site}/y", response_encoding="base64")
    assert base64.b64decode(raw.body) == b"echo:"


async def test_curl_failures_are_clear(fake: FakeKernel, client: AsyncKernel) -> None:
    b = (await client.browsers.create()).session_id
    with pytest.raises(APIStatusError, match="could not reach") as info:
        await client.browsers.curl(b, url="http://127.0.0.1:9/")
    assert info.value.status_code == 502
    with pytest.raises(APIStatusError, match="http"):
        await client.browsers.curl(b, url="file:///etc/passwd")
