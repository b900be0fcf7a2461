"""A tiny Chrome DevTools Protocol client over an aiohttp websocket.

Just what the local Chromium backend needs: send a command and await its result, and
subscribe to events (optionally of one flattened target session). No CDP library: the
protocol is JSON messages with an ``id`` (replies) or a ``method`` (events).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable
from typing import Any

import aiohttp

__all__ = ["CDPClient", "CDPError", "EventHandler"]

# Screencast frames and screenshots are large base64 strings; bounded, but generously.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

EventHandler = Callable[[dict[str, Any], "str | None"], None]
"""Called with an event's ``params`` and its ``sessionId`` (``None`` for the browser)."""


class CDPError(Exception):
    """A CDP command answered with an error, or the connection closed before it answered."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class CDPClient:
    """One DevTools websocket connection; use `connect` (an async context manager too)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession):
        self._ws = ws
        self._session = session
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._handlers: dict[str, list[EventHandler]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, url: str) -> CDPClient:
        """Open a websocket to ``url`` (a ``ws://`` DevTools or proxied URL)."""
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(url, max_msg_size=MAX_MESSAGE_BYTES, autoping=True)
        except BaseException:
            await session.close()
            raise
        return cls(ws, session)

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
            await self._ws.send_str(json.dumps(message))
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
        """Close the websocket and the reader; pending commands fail with `CDPError`."""
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._session.close()

    async def __aenter__(self) -> CDPClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self._dispatch(json.loads(msg.data))
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
