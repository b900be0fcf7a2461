"""A tiny Chrome DevTools Protocol client over any message channel.

Just what the local Chromium backend needs: send a command and await its result, and
subscribe to events (optionally of one flattened target session). No CDP library: the
protocol is JSON messages with an ``id`` (replies) or a ``method`` (events). A channel
carries those messages: a websocket (`WebSocketChannel`, for a ``ws://`` DevTools URL) or
one session of a browser's DevTools pipe (``_devtools_pipe``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp

__all__ = ["CDPClient", "CDPError", "DevToolsChannel", "EventHandler", "WebSocketChannel"]

# Screencast frames and screenshots are large base64 strings; bounded, but generously.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

EventHandler = Callable[[dict[str, Any], "str | None"], None]
"""Called with an event's ``params`` and its ``sessionId`` (``None`` for the browser)."""


class DevToolsChannel(Protocol):
    """One DevTools connection's messages, both ways, as parsed JSON objects."""

    async def send(self, message: dict[str, Any]) -> None:
        """Send one message; raise `CDPError` once the channel is closed."""
        ...

    async def receive(self) -> dict[str, Any] | None:
        """The next message, or ``None`` once the channel has ended."""
        ...

    async def close(self) -> None:
        """End the channel (idempotent)."""
        ...


class CDPError(Exception):
    """A CDP command answered with an error, or the connection closed before it answered."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class WebSocketChannel:
    """A DevTools websocket (``ws://...``) as a `DevToolsChannel`; use `connect`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession):
        self._ws = ws
        self._session = session

    @classmethod
    async def connect(cls, url: str) -> WebSocketChannel:
        """Open a websocket to ``url``."""
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(url, max_msg_size=MAX_MESSAGE_BYTES, autoping=True)
        except BaseException:
            await session.close()
            raise
        return cls(ws, session)

    async def send(self, message: dict[str, Any]) -> None:
        """Send one message as a text frame."""
        if self._ws.closed:
            raise CDPError("the DevTools connection is closed")
        await self._ws.send_str(json.dumps(message))

    async def receive(self) -> dict[str, Any] | None:
        """The next JSON object received (other frames are skipped), ``None`` at the end."""
        async for msg in self._ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                with contextlib.suppress(ValueError):
                    data = json.loads(msg.data)
                    if isinstance(data, dict):
                        return data
        return None

    async def close(self) -> None:
        """Close the websocket and its session."""
        await self._ws.close()
        await self._session.close()


class CDPClient:
    """One DevTools connection over a `DevToolsChannel`; `connect` opens one to a URL."""

    def __init__(self, channel: DevToolsChannel) -> None:
        self._channel = channel
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._handlers: dict[str, list[EventHandler]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, url: str) -> CDPClient:
        """Open a websocket to ``url`` (a ``ws://`` DevTools or proxied URL)."""
        return cls(await WebSocketChannel.connect(url))

    @property
    def closed(self) -> bool:
        """Whether the connection has ended (either side closed it)."""
        return self._reader.done()

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Send one command and return its ``result``; raise `CDPError` on an error reply."""
        if self.closed:
            raise CDPError(f"{method}: the DevTools connection is closed")
        msg_id = next(self._ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        try:
            await self._channel.send(message)
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(msg_id, None)

    def on(self, method: str, handler: EventHandler) -> Callable[[], None]:
        """Call ``handler`` for every ``method`` event; returns the unsubscribe function."""
        self._handlers.setdefault(method, []).append(handler)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._handlers.get(method, []).remove(handler)

        return unsubscribe

    async def close(self) -> None:
        """Close the channel and the reader; pending commands fail with `CDPError`."""
        await self._channel.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def __aenter__(self) -> CDPClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self) -> None:
        try:
            while (message := await self._channel.receive()) is not None:
                self._dispatch(message)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(CDPError("the DevTools connection closed"))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            future = self._pending.get(message["id"])
            if future is None or future.done():
                return
            if "error" in message:
                error = message["error"]
                future.set_exception(CDPError(str(error.get("message")), error.get("code")))
            else:
                future.set_result(message.get("result", {}))
            return
        for handler in list(self._handlers.get(message.get("method", ""), ())):
            handler(message.get("params", {}), message.get("sessionId"))
