"""An aiohttp web service with an endpoint that stops a replay, sharing one AsyncKernel
(one connection pool) across all requests and closing it at shutdown.

    python examples/web_service.py          # serves, calls itself once, and exits
    python examples/web_service.py --serve  # keeps serving on 127.0.0.1:8080
Offline (embedded emulator) unless KERNEL_API_KEY is set; then BROWSER_ID names the browser
the self-test records.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from yarl import URL

from kernel_async import APIError, AsyncKernel, NotFoundError
from kernel_async.testing import FakeKernel

KERNEL = web.AppKey("kernel", AsyncKernel)
FAKE = web.AppKey("fake", FakeKernel)


async def stop_replay(request: web.Request) -> web.Response:
    client = request.app[KERNEL]
    browser_id = request.match_info["browser_id"]
    replay_id = request.match_info["replay_id"]
    try:
        await client.browsers.replays.stop(replay_id, id=browser_id)
    except ValueError as exc:  # an ID the SDK refuses before sending (empty, "." or "..")
        return web.json_response({"error": str(exc)}, status=400)
    except NotFoundError:
        raise web.HTTPNotFound(text=f"no replay {replay_id}") from None
    except APIError as exc:  # already retried by the SDK: report, do not retry again
        return web.json_response({"error": str(exc), "attempts": exc.attempts}, status=502)
    return web.json_response({"stopped": replay_id})


async def kernel_ctx(app: web.Application) -> AsyncIterator[None]:
    if os.environ.get("KERNEL_API_KEY"):
        async with AsyncKernel(connection_limit=200) as client:
            app[KERNEL] = client
            yield
        return
    async with FakeKernel() as fake, fake.client() as client:
        app[FAKE] = fake
        app[KERNEL] = client
        yield


def make_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(kernel_ctx)
    app.router.add_post("/browsers/{browser_id}/replays/{replay_id}/stop", stop_replay)
    return app


async def self_test() -> None:
    runner = web.AppRunner(make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    app = runner.app
    client, fake = app[KERNEL], app.get(FAKE)
    browser = fake.create_browser() if fake is not None else os.environ["BROWSER_ID"]
    replay = await client.browsers.replays.start(browser)
    if fake is not None:
        fake.fail("stop", status=503)  # the SDK retries it; the endpoint never sees it
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}/browsers/{browser}/replays/{replay.replay_id}/stop"
        async with http.post(url) as resp:
            print(resp.status, await resp.json())
            assert resp.status == 200
        async with http.post(f"http://127.0.0.1:{port}/browsers/{browser}/replays/nope/stop") as r:
            print(r.status, await r.text())
            assert r.status == 404
        dots = URL(f"http://127.0.0.1:{port}/browsers/{browser}/replays/%2E%2E/stop", encoded=True)
        async with http.post(dots) as r:  # ".." as an ID: refused by the SDK, so a 400
            print(r.status, await r.text())
            assert r.status == 400
    await runner.cleanup()


if __name__ == "__main__":
    if os.environ.get("KERNEL_API_KEY") and not os.environ.get("BROWSER_ID"):
        sys.exit("KERNEL_API_KEY is set: set BROWSER_ID too (a browser session to record)")
    if "--serve" in sys.argv:
        web.run_app(make_app(), host="127.0.0.1", port=8080)
    else:
        asyncio.run(self_test())
