"""Chromium's DevTools over ``--remote-debugging-pipe``, shared by several clients.

With the pipe, Chromium opens no DevTools port at all: it reads commands from its fd 3 and
writes replies and events to its fd 4, each a JSON message ended by a NUL byte, and only the
process holding the other ends (the emulator) can talk to it. Several clients share that one
pipe: the backend on the pipe's root session, and each websocket the emulator's proxy
relays on a browser session of its own (``Target.attachToBrowserTarget``), so that each
sees the browser as if it had connected alone — its own auto-attach, its own page sessions.

`PipeRouter` holds the routing rules (pure, no I/O); `DevToolsPipe` only reads, writes and
hands messages to the clients' queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from typing import Any

import attrs

from ._cdp import MAX_MESSAGE_BYTES, CDPError

__all__ = ["DevToolsPipe", "PipeChannel", "PipeRouter"]

ROOT = 0  # the client on the pipe's own session (the backend)
INTERNAL = -1  # the pipe's own commands (opening and closing sessions)


@attrs.define
class _Pending:
    client: int
    their_id: Any
    method: str


class PipeRouter:
    """Which client each message belongs to, and how it reads on the wire.

    A client's command gets a wire ID of the pipe's (the reply is matched back to the
    client and its own ID) and, unless it names a session, the client's browser session.
    An event goes to the client owning its session: the root client for session-less
    events, a client for its browser session (given back without ``sessionId``, as a
    separate connection would see it) and for every session attached under one it owns.
    """

    def __init__(self) -> None:
        self._wire_ids = itertools.count(1)
        self._clients = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._browser_session: dict[int, str] = {}  # client -> its browser session
        self._owner: dict[str, int] = {}  # any session -> the client it belongs to

    def add_client(self, browser_session: str) -> int:
        """A new client whose session-less commands go to ``browser_session``."""
        client = next(self._clients)
        self._browser_session[client] = browser_session
        self._owner[browser_session] = client
        return client

    def remove_client(self, client: int) -> str | None:
        """Forget the client, its sessions and its unanswered commands; its browser
        session (to detach), if it had one."""
        self._owner = {s: c for s, c in self._owner.items() if c != client}
        self._pending = {i: p for i, p in self._pending.items() if p.client != client}
        return self._browser_session.pop(client, None)

    def outgoing(self, client: int, message: dict[str, Any]) -> dict[str, Any]:
        """The message as sent on the pipe (its reply will come back to ``client``)."""
        wire_id = next(self._wire_ids)
        method = message.get("method")
        self._pending[wire_id] = _Pending(client, message.get("id"), str(method))
        out = {**message, "id": wire_id}
        browser_session = self._browser_session.get(client)
        if browser_session is not None and "sessionId" not in message:
            out["sessionId"] = browser_session
        return out

    def incoming(self, message: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """(client, message as that client sees it), or ``None`` when nobody wants it."""
        session = message.get("sessionId")
        if "id" in message:
            pending = self._pending.pop(message["id"], None) if _is_id(message["id"]) else None
            if pending is None:
                return None
            client = pending.client
            result = message.get("result")
            if pending.method.startswith("Target.attachTo") and isinstance(result, dict):
                self._own(result.get("sessionId"), client)
            out = {**message, "id": pending.their_id}
        else:
            found = ROOT if session is None else self._owner.get(session)
            if found is None:
                return None
            client = found
            params = message.get("params")
            if isinstance(params, dict):
                if message.get("method") == "Target.attachedToTarget":
                    self._own(params.get("sessionId"), client)
                elif message.get("method") == "Target.detachedFromTarget":
                    detached = params.get("sessionId")
                    if isinstance(detached, str) and detached not in self._browser_session.values():
                        self._owner.pop(detached, None)
            out = dict(message)
        if session is not None and session == self._browser_session.get(client):
            del out["sessionId"]  # the client's own root, as on a connection of its own
        return client, out

    def _own(self, session: object, client: int) -> None:
        if isinstance(session, str):  # the latest word wins (the reply follows the event)
            self._owner[session] = client


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Writing(asyncio.Protocol):
    """The write end's flow control: `drain` waits while the pipe's buffer is full."""

    def __init__(self) -> None:
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed = asyncio.Event()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        self._writable.set()  # a writer waiting for room finds the pipe gone instead

    async def drain(self) -> None:
        await self._writable.wait()
        if self.closed.is_set():
            raise CDPError("the DevTools pipe is closed (the browser has exited)")


class PipeChannel:
    """One client's side of a `DevToolsPipe` (a `DevToolsChannel`)."""

    def __init__(self, pipe: DevToolsPipe, client: int) -> None:
        self._pipe = pipe
        self._client = client
        self.inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.closed = False

    async def send(self, message: dict[str, Any]) -> None:
        """Send one command of this client's."""
        if self.closed:
            raise CDPError("the DevTools connection is closed")
        await self._pipe.write(self._pipe.router.outgoing(self._client, message))

    async def receive(self) -> dict[str, Any] | None:
        """The next message for this client, ``None`` once it or the pipe has ended."""
        if self.closed and self.inbox.empty():
            return None
        return await self.inbox.get()

    async def close(self) -> None:
        """Detach this client's session (and every session under it) from the browser."""
        if self.closed:
            return
        self.closed = True
        self.inbox.put_nowait(None)
        await self._pipe.release(self._client)


class DevToolsPipe:
    """The emulator's ends of one browser's DevTools pipe: ``reads`` (Chromium's fd 4) and
    ``writes`` (Chromium's fd 3). Use `open`; `root` is the backend's channel, `session`
    opens one per proxied connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        read_transport: asyncio.BaseTransport,
        write_transport: asyncio.WriteTransport,
        writing: _Writing,
    ) -> None:
        self.router = PipeRouter()
        self._reader = reader
        self._read_transport = read_transport
        self._write_transport = write_transport
        self._writing = writing
        self._channels: dict[int, PipeChannel] = {}
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._internal_ids = itertools.count(1)
        self._write_lock = asyncio.Lock()
        self.root = PipeChannel(self, ROOT)
        self._channels[ROOT] = self.root
        self._task = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, reads: int, writes: int) -> DevToolsPipe:
        """Take over the two file descriptors (closed with the pipe)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_MESSAGE_BYTES)
        protocol = asyncio.StreamReaderProtocol(reader)
        read_transport, _ = await loop.connect_read_pipe(
            lambda: protocol, os.fdopen(reads, "rb", buffering=0)
        )
        write_transport, writing = await loop.connect_write_pipe(
            _Writing, os.fdopen(writes, "wb", buffering=0)
        )
        return cls(reader, read_transport, write_transport, writing)

    @property
    def ended(self) -> bool:
        """Whether the browser's side has closed (it exited)."""
        return self._task.done()

    async def command(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Send a command of the pipe's own on the root session; its ``result``."""
        internal_id = next(self._internal_ids)
        future = asyncio.get_running_loop().create_future()
        self._replies[internal_id] = future
        message = {"id": internal_id, "method": method, "params": params or {}}
        try:
            await self.write(self.router.outgoing(INTERNAL, message))
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._replies.pop(internal_id, None)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error'].get('message')}")
        result = reply.get("result", {})
        return result if isinstance(result, dict) else {}

    async def session(self) -> PipeChannel:
        """A new client with a browser session of its own."""
        result = await self.command("Target.attachToBrowserTarget")
        client = self.router.add_client(result["sessionId"])
        channel = PipeChannel(self, client)
        self._channels[client] = channel
        return channel

    async def release(self, client: int) -> None:
        """Detach a client's browser session and forget the client."""
        self._channels.pop(client, None)
        session = self.router.remove_client(client)
        if session is not None and not self.ended:
            with contextlib.suppress(CDPError, OSError, asyncio.TimeoutError):
                await self.command("Target.detachFromTarget", {"sessionId": session}, 5.0)

    async def write(self, message: dict[str, Any]) -> None:
        """Send one message on the pipe."""
        if self.ended:
            raise CDPError("the DevTools pipe is closed (the browser has exited)")
        async with self._write_lock:
            self._write_transport.write(json.dumps(message).encode() + b"\0")
            await self._writing.drain()

    async def close(self) -> None:
        """Close both ends; every client's channel ends."""
        self._write_transport.close()
        self._read_transport.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._writing.closed.wait()

    async def _read(self) -> None:
        try:
            while True:
                try:
                    data = await self._reader.readuntil(b"\0")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                    return  # the browser exited (or broke the protocol): the pipe is over
                with contextlib.suppress(ValueError):
                    message = json.loads(data[:-1])
                    if isinstance(message, dict):
                        self._deliver(message)
        finally:
            for channel in self._channels.values():
                channel.closed = True
                channel.inbox.put_nowait(None)
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(CDPError("the DevTools pipe closed"))

    def _deliver(self, message: dict[str, Any]) -> None:
        routed = self.router.incoming(message)
        if routed is None:
            return
        client, out = routed
        if client == INTERNAL:
            future = self._replies.get(out["id"])
            if future is not None and not future.done():
                future.set_result(out)
            return
        channel = self._channels.get(client)
        if channel is not None and not channel.closed:
            channel.inbox.put_nowait(out)
