"""The benchmark server, run as its own process: ``python bench/server.py PORT_FILE [KIND]``.

KIND ``aiohttp`` (default): an aiohttp.web app answering ``POST .../stop`` and
``POST .../computer/click_mouse`` (its JSON body read) with 200 and an empty body, as Kernel
does; and the browsers endpoints: 1,000 browsers listed by offset
pages (``X-Has-More``, ``X-Next-Offset``), create (200 + a browser), delete (204).
KIND ``raw``: a minimal asyncio protocol answering every request the same way, cheaper,
to see the clients' ceiling (stop and click_mouse only). Writes its port to PORT_FILE.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from aiohttp import web

BROWSERS = 1000


def browser(i: int) -> bytes:
    """A browser as the API returns it (the fields of the official types, realistic sizes)."""
    sid = f"{i:020x}"
    return json.dumps(
        {
            "session_id": sid,
            "cdp_ws_url": f"wss://proxy.iad.onkernel.com:8443/browser/cdp?jwt={'x' * 180}",
            "webdriver_ws_url": f"wss://proxy.iad.onkernel.com:8443/browser/wd?jwt={'x' * 180}",
            "browser_live_view_url": f"https://proxy.iad.onkernel.com/live/{sid}?jwt=abc",
            "created_at": "2026-01-01T00:00:00.000000Z",
            "headless": False,
            "stealth": False,
            "gpu": False,
            "timeout_seconds": 60,
            "region": "us-east",
            "memory": "4GiB",
            "name": f"agent-{i}",
            "tags": {"team": "bench", "n": str(i)},
            "viewport": {"width": 1920, "height": 1080, "refresh_rate": 25},
            "kiosk_mode": False,
            "usage_status": "pending",
        }
    ).encode()


ITEMS = [browser(i) for i in range(BROWSERS)]
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Type: application/json\r\n\r\n"


class Http(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data
        out = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].lower()
            length = 0
            i = head.find(b"content-length:")
            if i >= 0:
                eol = head.find(b"\r\n", i)
                length = int(head[i + 15 : eol if eol > 0 else None])
            total = end + 4 + length
            if len(buf) < total:
                break
            buf = buf[total:]
            out.append(RESPONSE)
        self.buffer = buf
        if out:
            self.transport.write(b"".join(out))


async def list_browsers(request: web.Request) -> web.Response:
    offset = int(request.query.get("offset", "0"))
    limit = min(int(request.query.get("limit", "20")), 100)
    end = min(offset + limit, BROWSERS)
    more = end < BROWSERS
    return web.Response(
        body=b"[" + b",".join(ITEMS[offset:end]) + b"]",
        content_type="application/json",
        headers={
            "X-Has-More": "true" if more else "false",
            "X-Next-Offset": str(end if more else 0),
        },
    )


async def create_browser(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ITEMS[0], content_type="application/json")


async def delete_browser(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def main(port_file: str, kind: str) -> None:
    if kind == "raw":
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Http, "127.0.0.1", 0, backlog=4096)
        port = server.sockets[0].getsockname()[1]
    else:

        async def stop(request: web.Request) -> web.Response:
            return web.Response()

        async def click_mouse(request: web.Request) -> web.Response:
            await request.read()
            return web.Response()

        app = web.Application()
        app.router.add_post("/browsers/{id}/replays/{replay_id}/stop", stop)
        app.router.add_post("/browsers/{id}/computer/click_mouse", click_mouse)
        app.router.add_get("/browsers", list_browsers)
        app.router.add_post("/browsers", create_browser)
        app.router.add_delete("/browsers/{id}", delete_browser)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    Path(port_file).write_text(str(port))  # noqa: ASYNC240 - once, before serving
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "aiohttp"))
