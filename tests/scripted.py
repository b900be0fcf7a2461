"""A scripted raw-asyncio HTTP/1.1 server for wire faults the emulator cannot express.

Each request received is answered by the next action of the script (the last one
repeats). Actions get the stream writer and the parsed request; helpers below build
the usual ones. Everything received is recorded for assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType


@dataclass
class Received:
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes


Action = Callable[[asyncio.StreamWriter, Received], Awaitable[bool]]
"""Returns whether the connection may serve another request."""


@dataclass
class ScriptedServer:
    script: Sequence[Action]
    host: str = "127.0.0.1"
    refuse_first: bool = False  # not listening until open(): connections are refused
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    open_connections: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> ScriptedServer:
        if self.refuse_first:
            sock = socket.socket()
            sock.bind((self.host, 0))
            self._server = await asyncio.start_server(self._serve, sock=sock, start_serving=False)
        else:
            self._server = await asyncio.start_server(self._serve, self.host, 0)
        return self

    def open(self) -> None:
        """Start listening (after `refuse_first`), synchronously: no connect can race it."""
        assert self._server is not None
        if not self._server.is_serving():
            self._server._start_serving()  # type: ignore[attr-defined]

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self._server.wait_closed()

    def _next(self) -> Action:
        index = min(len(self.received) - 1, len(self.script) - 1)
        return self.script[index]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        self.open_connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, raw_path, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = b""
                if int(headers.get("content-length", "0")):
                    body = await reader.readexactly(int(headers["content-length"]))
                req = Received(method, raw_path, headers, body)
                self.received.append(req)
                try:
                    if not await self._next()(writer, req):
                        return
                except ConnectionError:  # the client went away mid-answer (by design here)
                    return
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()
            self._tasks.discard(task)


def _head(status: int, headers: dict[str, str] | None, length: int | None) -> bytes:
    out = [f"HTTP/1.1 {status} X"]
    for k, v in (headers or {}).items():
        out.append(f"{k}: {v}")
    if length is not None:
        out.append(f"Content-Length: {length}")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


def respond(
    status: int = 200,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    delay: float = 0.0,
) -> Action:
    """A complete response (after `delay`: slow headers)."""

    async def act(w: asyncio.StreamWriter, r: Received) -> bool:
        if delay:
            await asyncio.sleep(delay)
        w.write(_head(status, headers, len(body)) + body)
        await w.drain()
        return True

    return act


def json_error(status: int, code: str = "boom", message: str = "it broke", **kw: str) -> Action:
    import json

    headers = {"Content-Type": "application/json", **kw}
    return respond(status, json.dumps({"code": code, "message": message}).encode(), headers)


def reset() -> Action:
    """Close with RST, without any response (after the request was sent)."""

    async def act(w: asyncio.StreamWriter, r: Received) -> bool:
        sock = w.get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.transport.abort()
        return False

    return act


def close() -> Action:
    """Close cleanly without any response."""

    async def act(w: asyncio.StreamWriter, r: Received) -> bool:
        w.close()
        return False

    return act


def truncated(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Action:
    """Promise the whole body, send half of it, close."""

    async def act(w: asyncio.StreamWriter, r: Received) -> bool:
        w.write(_head(status, headers, len(body)) + body[: len(body) // 2])
        await w.drain()
        w.transport.abort()
        return False

    return act


def slow_body(body: bytes, pause: float, status: int = 200) -> Action:
    """Headers at once, then the body after `pause` seconds (if the client still waits)."""

    async def act(w: asyncio.StreamWriter, r: Received) -> bool:
        w.write(_head(status, None, len(body)) + body[:1])
        await w.drain()
        await asyncio.sleep(pause)
        w.write(body[1:])
        await w.drain()
        return True

    return act


def hang() -> Action:
    """Never answer (until the server closes)."""

    async def act(w: asyncio.StreamWriter, r: Received) -> bool:
        await asyncio.sleep(3600)
        return False

    return act


def raw(data: bytes, keep_open: bool = False) -> Action:
    """Send raw bytes (e.g. malformed chunked encoding), then close."""

    async def act(w: asyncio.StreamWriter, r: Received) -> bool:
        w.write(data)
        await w.drain()
        if not keep_open:
            w.transport.abort()
        return keep_open

    return act
