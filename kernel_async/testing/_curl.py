"""``browsers.curl`` in the emulator: an HTTP request made on the browser's behalf.

The emulator makes it with plain HTTP from its own process (aiohttp), not through the
browser's network stack: cookies and the page's state play no part. The answer has the
API's shape: status, headers (each name with its list of values), the body as text or
base64 (``response_encoding``), and the time it took. A failure to connect is a 502
naming the URL; a timeout (``timeout_ms``, default 30 s) a 504.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

if TYPE_CHECKING:
    from ._emulator import BrowserOp, FakeKernel, FamilyCall

__all__ = ["register"]

_MAX_BODY = 16 * 1024 * 1024  # what one curl answer may carry back


def register(fake: FakeKernel) -> Mapping[str, BrowserOp]:
    """The curl operation for one emulator."""

    async def curl(call: FamilyCall) -> web.StreamResponse:
        return await _curl(call.body if isinstance(call.body, dict) else {})

    return {"browsers.curl": curl}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


async def _curl(body: Mapping[str, Any]) -> web.StreamResponse:
    url = str(body["url"])
    if not url.startswith(("http://", "https://")):
        return _error(400, "bad_request", f"url must be an http(s) URL, got {url!r}")
    timeout = float(body.get("timeout_ms") or 30_000) / 1000
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
            async with s.request(
                str(body.get("method") or "GET"),
                url,
                headers=dict(body.get("headers") or {}),
                data=(body.get("body") or "").encode() or None,
                allow_redirects=True,
            ) as resp:
                data = await resp.content.read(_MAX_BODY)
                headers: dict[str, list[str]] = {}
                for name, value in resp.headers.items():
                    headers.setdefault(name, []).append(value)
                status = resp.status
    except asyncio.TimeoutError:
        return _error(504, "gateway_timeout", f"{url} did not answer within {timeout:g}s")
    except aiohttp.ClientError as exc:
        return _error(502, "bad_gateway", f"could not reach {url}: {type(exc).__name__}")
    if body.get("response_encoding") == "base64":
        text = base64.b64encode(data).decode()
    else:
        text = data.decode("utf-8", "replace")
    return web.json_response(
        {
            "status": status,
            "headers": headers,
            "body": text,
            "duration_ms": int((time.monotonic() - started) * 1000),
        }
    )
