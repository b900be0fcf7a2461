"""A small aiohttp.web server on its own thread that plays the API's event streams, for
tests driving subprocesses (the CLI, the docs' samples): numbered log events with ids,
resumed after Last-Event-ID, connections cut on request, a spawned process's output."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
from aiohttp import web


def stamp(n: int) -> str:
    """The timestamp of log event `n`, as the API writes it."""
    return f"2026-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}Z"


class LogFeed:
    """The logs stream: events 1..`total` (ids 1..`total`), after Last-Event-ID on a
    reconnect; the connections listed in `drops` are cut after that many events (an
    incomplete chunked body, half an event left behind); `quiet` seconds before each
    event. Read from the test's thread: `requests`, `ended` (the client left)."""

    def __init__(self) -> None:
        self.total = 10
        self.drops: list[int] = []
        self.quiet = 0.0
        self.status = 200
        self.requests: list[tuple[dict[str, str], str | None, str | None]] = []
        self.ended = threading.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        last = request.headers.get("Last-Event-ID")
        self.requests.append((dict(request.query), last, request.headers.get("Authorization")))
        if self.status != 200:
            body = {"code": "not_found", "message": "browser 'nope' not found"}
            return web.json_response(body, status=self.status)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        cut = self.drops.pop(0) if self.drops else None
        sent = 0
        try:
            for n in range(int(last) + 1 if last else 1, self.total + 1):
                if sent == cut:
                    await resp.write(b'id: 999\ndata: {"event": "log", "mess')
                    assert request.transport is not None
                    request.transport.abort()
                    return resp
                if self.quiet:
                    await asyncio.sleep(self.quiet)
                data = {"event": "log", "message": f"line {n}", "timestamp": stamp(n)}
                await resp.write(f": ka\nid: {n}\ndata: {json.dumps(data)}\n\n".encode())
                sent += 1
            await resp.write_eof()
        except (OSError, aiohttp.ClientError, asyncio.CancelledError):
            self.ended.set()  # the client closed the connection
            raise
        return resp


class ProcessFeed:
    """``process.spawn`` (answers a process ID) and its ``stdout_stream``: the `output`
    chunks as stdout events, then an exit event with `exit_code`."""

    def __init__(self) -> None:
        self.output = [b"hello from the browser machine\n"]
        self.exit_code = 0
        self.spawned: list[dict[str, Any]] = []

    async def spawn(self, request: web.Request) -> web.Response:
        self.spawned.append(await request.json())
        return web.json_response(
            {"process_id": "proc_1", "pid": 4242, "started_at": "2026-01-01T00:00:00Z"}
        )

    async def stdout(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for n, chunk in enumerate(self.output, 1):
            data = {"stream": "stdout", "data_b64": base64.b64encode(chunk).decode()}
            await resp.write(f"id: {n}\ndata: {json.dumps(data)}\n\n".encode())
        done = {"event": "exit", "exit_code": self.exit_code}
        await resp.write(f"id: {len(self.output) + 1}\ndata: {json.dumps(done)}\n\n".encode())
        await resp.write_eof()
        return resp


@contextlib.contextmanager
def serving(logs: LogFeed, process: ProcessFeed | None = None) -> Iterator[str]:
    """Serve the feeds on 127.0.0.1 from a thread of their own; yields the base URL."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/browsers/{id}/logs/stream", logs.handle)
        if process is not None:
            app.router.add_post("/browsers/{id}/process/spawn", process.spawn)
            app.router.add_get("/browsers/{id}/process/{pid}/stdout/stream", process.stdout)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        box.update(url=f"http://127.0.0.1:{port}", loop=loop)
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield box["url"]
    finally:
        box["loop"].call_soon_threadsafe(box["loop"].stop)
        thread.join(10)
