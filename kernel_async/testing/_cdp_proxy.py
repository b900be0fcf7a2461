"""A DevTools websocket proxy the emulator mounts on its own port.

The browser's published ``cdp_ws_url`` points here, with a per-browser token in the query
(``?jwt=...``, as Kernel's URLs carry one). The proxy checks the token before upgrading, then
relays messages both ways over a DevTools channel the backend opens for this connection
(for local Chromium, a session of its own on the browser's DevTools pipe: Chromium has no
port anyone else could reach), reporting activity so the emulator can apply the browser's
inactivity timeout. Refusals are the API's Error bodies, and never echo the token.

A browser's commands may pass a rule first (`ProxyTarget.commands`): for local Chromium,
`downloads_in_sandbox`, so that a client following Kernel's docs (``Browser.setDownloadBehavior``
with ``downloadPath: "/tmp/downloads"``) gets its downloads in the browser's sandbox, where
``browsers.fs`` sees them, and never in the host's own ``/tmp/downloads``. A command the
rule refuses is answered with a DevTools error and never reaches the browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import attrs
from aiohttp import web

from ._cdp import MAX_MESSAGE_BYTES, CDPError, DevToolsChannel

__all__ = [
    "DOWNLOAD_COMMANDS",
    "ChannelOpener",
    "CommandRefused",
    "CommandRule",
    "ProxyTarget",
    "cdp_proxy_handler",
    "downloads_in_sandbox",
    "error_response",
    "new_token",
    "proxied_cdp_url",
]

TOKEN_PARAM = "jwt"  # the query parameter Kernel's cdp_ws_url carries its credential in

ChannelOpener = Callable[[], Awaitable[DevToolsChannel]]
"""Opens one connection's DevTools channel to the browser."""
CommandRule = Callable[[dict[str, Any]], dict[str, Any]]
"""A client's command as the browser is to get it; raises `CommandRefused` to answer it
with an error instead."""
DOWNLOAD_COMMANDS = frozenset({"Browser.setDownloadBehavior", "Page.setDownloadBehavior"})
REFUSED = -32000  # the code Chromium answers a command it will not do with


class CommandRefused(Exception):
    """A client's command the proxy answers with a DevTools error, never sending it on."""

    def reply(self, command: dict[str, Any]) -> dict[str, Any]:
        """The error answer to ``command`` (its ``id``, and its ``sessionId`` if any)."""
        answer: dict[str, Any] = {"error": {"code": REFUSED, "message": str(self)}}
        for key in ("id", "sessionId"):
            if key in command:
                answer[key] = command[key]
        return answer


def downloads_in_sandbox(message: dict[str, Any], resolve: Callable[[str], str]) -> dict[str, Any]:
    """``message`` with the ``downloadPath`` of a download command (`DOWNLOAD_COMMANDS`), a
    path of the browser's machine (as on Kernel, e.g. ``/tmp/downloads``), replaced by the
    host path ``resolve`` gives for it (its sandbox's directory); other messages unchanged.

    A path ``resolve`` refuses (not absolute, climbing out of the root, a link out...: it
    raises) makes the command a `CommandRefused`: it is never passed on as it was.
    """
    params = message.get("params")
    if message.get("method") not in DOWNLOAD_COMMANDS or not isinstance(params, dict):
        return message
    path = params.get("downloadPath")
    if path is None:
        return message  # e.g. "default" or "deny": nothing is written
    if not isinstance(path, str):
        raise CommandRefused("downloadPath must be a string")
    try:
        host = resolve(path)
    except Exception as exc:  # whatever the reason: an unresolved path never goes on
        raise CommandRefused(f"downloadPath {path!r} is refused: {exc}") from None
    return {**message, "params": {**params, "downloadPath": host}}


@attrs.frozen
class ProxyTarget:
    """How to reach one browser's DevTools, the token that opens it, and the rule its
    clients' commands pass first (``None``: sent as they come)."""

    open: ChannelOpener
    token: str = attrs.field(repr=False)
    commands: CommandRule | None = attrs.field(default=None, repr=False)


def new_token() -> str:
    """A fresh unguessable token for one browser's ``cdp_ws_url``."""
    return secrets.token_urlsafe(24)


def proxied_cdp_url(base_url: str, path: str, token: str, param: str = TOKEN_PARAM) -> str:
    """The published ``ws://`` URL: the emulator's base URL, ``path``, and the token."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, path, f"{param}={quote(token)}", ""))


def error_response(status: int, code: str, message: str) -> web.Response:
    """The API's documented Error body (``{"code", "message"}``) with ``status``."""
    return web.json_response({"code": code, "message": message}, status=status)


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
            return error_response(404, "not_found", "no such browser")
        token = request.query.get(param, "")
        if not secrets.compare_digest(token.encode(), target.token.encode()):
            return error_response(403, "forbidden", "a valid token (?jwt=) is required")
        downstream = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES)
        if not downstream.can_prepare(request).ok:
            return error_response(400, "bad_request", "a websocket upgrade is expected")
        try:
            upstream = await target.open()
        except (aiohttp.ClientError, OSError, CDPError, asyncio.TimeoutError) as exc:
            return error_response(502, "bad_gateway", f"the browser is unreachable: {exc}")
        try:
            await downstream.prepare(request)
            await _relay(downstream, upstream, lambda: on_activity(request), target.commands)
        finally:
            await upstream.close()
        return downstream

    return handler


async def _relay(
    downstream: web.WebSocketResponse,
    upstream: DevToolsChannel,
    activity: Callable[[], None],
    rule: CommandRule | None = None,
) -> None:
    pumps = [
        asyncio.ensure_future(_commands(downstream, upstream, activity, rule)),
        asyncio.ensure_future(_answers(upstream, downstream, activity)),
    ]
    try:
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pump in pumps:
            pump.cancel()
        for pump in pumps:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
        await downstream.close()


async def _commands(
    downstream: web.WebSocketResponse,
    upstream: DevToolsChannel,
    activity: Callable[[], None],
    rule: CommandRule | None,
) -> None:
    async for msg in downstream:
        activity()
        if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            continue
        message = _object(msg.data)
        if message is None:  # as Chromium answers a message it cannot parse
            error = {"code": -32700, "message": "Message must be a JSON object"}
            await downstream.send_str(json.dumps({"error": error}))
            continue
        if rule is not None:
            try:
                message = rule(message)
            except CommandRefused as refused:
                await downstream.send_str(json.dumps(refused.reply(message)))
                continue
        await upstream.send(message)


async def _answers(
    upstream: DevToolsChannel, downstream: web.WebSocketResponse, activity: Callable[[], None]
) -> None:
    while (message := await upstream.receive()) is not None:
        activity()
        await downstream.send_str(json.dumps(message))


def _object(data: str | bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(data)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None
