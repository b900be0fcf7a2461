"""The benchmark server, run as its own process: ``python bench/server.py PORT_FILE [KIND]``.

KIND ``aiohttp`` (default): an aiohttp.web app answering ``POST .../stop`` with 200 and an
empty body, as Kernel does. KIND ``raw``: a minimal asyncio protocol answering every
request the same way, cheaper, to see the clients' ceiling. Writes its port to PORT_FILE.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

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


async def main(port_file: str, kind: str) -> None:
    if kind == "raw":
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Http, "127.0.0.1", 0, backlog=4096)
        port = server.sockets[0].getsockname()[1]
    else:
        from aiohttp import web

        async def stop(request: web.Request) -> web.Response:
            return web.Response()

        app = web.Application()
        app.router.add_post("/browsers/{id}/replays/{replay_id}/stop", stop)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    Path(port_file).write_text(str(port))  # noqa: ASYNC240 - once, before serving
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "aiohttp"))
