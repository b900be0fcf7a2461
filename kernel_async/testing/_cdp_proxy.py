"""A DevTools websocket proxy the emulator mounts on its own port.

The browser's published ``cdp_ws_url`` points here, with a per-browser token in the query
(``?jwt=...``, as Kernel's URLs carry one). The proxy checks the token before upgrading, then
relays messages both ways unchanged, reporting activity so the emulator can apply the
browser's inactivity timeout. Chromium's own DevTools port stays private to the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import attrs
from aiohttp import web

__all__ = ["ProxyTarget", "cdp_proxy_handler", "new_token", "proxied_cdp_url"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # screenshots and screencast frames are large
TOKEN_PARAM = "jwt"  # the query parameter Kernel's cdp_ws_url carries its credential in


@attrs.frozen
class ProxyTarget:
    """Where one browser's DevTools websocket really is, and the token that opens it."""

    upstream_url: str
    token: str = attrs.field(repr=False)


def new_token() -> str:
    """A fresh unguessable token for one browser's ``cdp_ws_url``."""
    return secrets.token_urlsafe(24)


def proxied_cdp_url(base_url: str, path: str, token: str, param: str = TOKEN_PARAM) -> str:
    """The published ``ws://`` URL: the emulator's base URL, ``path``, and the token."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, path, f"{param}={quote(token)}", ""))


def cdp_proxy_handler(
    lookup: Callable[[web.Request], ProxyTarget | None],
    on_activity: Callable[[web.Request], None] = lambda request: None,
    param: str = TOKEN_PARAM,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp handler relaying a token-checked websocket to the browser ``lookup`` names.

    ``lookup`` maps the request (typically its ``match_info``) to the browser's target, or
    ``None`` (404). A wrong or missing token (query parameter ``param``) is a 403, a plain HTTP
    request a 400, an unreachable browser a 502. ``on_activity`` runs for every message.
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        target = lookup(request)
        if target is None:
            raise web.HTTPNotFound(text="no such browser")
        token = request.query.get(param, "")
        if not secrets.compare_digest(token.encode(), target.token.encode()):
            raise web.HTTPForbidden(text="a valid token is required")
        downstream = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES)
        if not downstream.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="a websocket upgrade is expected")
        async with aiohttp.ClientSession() as session:
            try:
                upstream = await session.ws_connect(
                    target.upstream_url, max_msg_size=MAX_MESSAGE_BYTES
                )
            except (aiohttp.ClientError, OSError) as exc:
                raise web.HTTPBadGateway(text=f"the browser is unreachable: {exc}") from None
            await downstream.prepare(request)
            await _relay(downstream, upstream, lambda: on_activity(request))
        return downstream

    return handler


async def _relay(
    downstream: web.WebSocketResponse,
    upstream: aiohttp.ClientWebSocketResponse,
    activity: Callable[[], None],
) -> None:
    pumps = [
        asyncio.ensure_future(_pump(downstream, upstream, activity)),
        asyncio.ensure_future(_pump(upstream, downstream, activity)),
    ]
    try:
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pump in pumps:
            pump.cancel()
        for pump in pumps:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
        await upstream.close()
        await downstream.close()


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    activity: Callable[[], None],
) -> None:
    async for msg in source:
        activity()
        if msg.type is aiohttp.WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type is aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
