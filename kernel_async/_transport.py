"""One attempt over aiohttp: send, read (bounded) or stream, and classify failures.

Knows nothing of the Kernel API and decides no retries: it returns a `Response`
or raises `TransportError` saying whether the request may have reached the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from functools import lru_cache
from typing import Protocol

import aiohttp
from aiohttp import (
    ClientConnectorCertificateError,
    ClientConnectorError,
    ClientHandlerType,
    ClientOSError,
    ClientPayloadError,
    ClientRequest,
    ClientResponse,
    ClientSSLError,
    ConnectionTimeoutError,
    ServerDisconnectedError,
)
from multidict import CIMultiDictProxy
from yarl import URL

__all__ = [
    "IO",
    "AttemptCounter",
    "Response",
    "Sink",
    "TransportError",
    "build_url",
    "client_timeout",
    "is_session",
    "new_session",
    "send",
]

# aiohttp replays GET/PUT/DELETE/... once by itself after a reset (RFC 9112 9.3.1).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

_CHUNK = 256 * 1024
# Error bodies are only ever parsed for a message: never read more than this of them.
ERROR_LIMIT = 64 * 1024


def new_session(limit: int) -> aiohttp.ClientSession:
    """A session owned by the SDK. trust_env=False: no proxy settings or netrc
    credentials are picked up from the environment."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None),
    )


def is_session(value: object) -> bool:
    """Whether `value` is an aiohttp session."""
    return isinstance(value, aiohttp.ClientSession)


def build_url(base: str, path: str) -> URL:
    """A URL from a base and an already percent-encoded path.

    encoded=True: yarl must not normalise or re-encode the path. Parsing one string is
    also measurably cheaper downstream in aiohttp than ``URL.build(authority=...)``.
    """
    return URL(base + path, encoded=True)


@lru_cache(maxsize=64)
def _cached_timeout(
    total: float | None, connect: float | None, sock_read: float | None
) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=total, connect=connect, sock_read=sock_read)


def client_timeout(
    total: float | None, connect: float | None, sock_read: float | None, *, cache: bool = True
) -> aiohttp.ClientTimeout:
    """aiohttp's timeout object; the few fixed combinations are built once."""
    if cache:
        return _cached_timeout(total, connect, sock_read)
    return aiohttp.ClientTimeout(total=total, connect=connect, sock_read=sock_read)


class Sink(Protocol):
    """Where a streamed body goes; rewound and truncated before each attempt."""

    def seek(self, offset: int, /) -> object: ...
    def truncate(self) -> object: ...
    def write(self, data: bytes, /) -> object: ...


class Response:
    """A response whose body has been read (or streamed into a sink)."""

    __slots__ = ("body", "headers", "status", "truncated", "wire_attempts")

    def __init__(
        self,
        status: int,
        headers: CIMultiDictProxy[str],
        body: bytes,
        truncated: bool,
        wire_attempts: int,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.truncated = truncated  # the body was longer than the read limit
        self.wire_attempts = wire_attempts


class TransportError(Exception):
    """No usable response.

    Attributes:
        kind: ``connect``, ``connect_timeout``, ``timeout``, ``reset``, ``truncated``,
            ``tls`` or ``other``.
        sent: Whether the request may have reached the server (an ambiguous failure).
        wire_attempts: Requests put on the wire by this attempt (aiohttp may add one).
    """

    def __init__(self, kind: str, sent: bool, cause: BaseException, wire_attempts: int) -> None:
        super().__init__(f"{kind}: {type(cause).__name__}: {cause}")
        self.kind = kind
        self.sent = sent
        self.cause = cause
        self.wire_attempts = wire_attempts

    @property
    def retryable(self) -> bool:
        """TLS failures are configuration errors: retrying cannot help."""
        return self.kind != "tls"


class AttemptCounter:
    """A per-request client middleware that counts the requests aiohttp really sends
    and lets its hidden replay through only when the caller has a retry to spend."""

    __slots__ = ("allowed", "count", "last_error")

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.count = 0
        self.last_error: BaseException | None = None

    async def __call__(self, req: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        if self.count >= self.allowed and self.last_error is not None:
            raise self.last_error  # refuse aiohttp's replay: no retries left
        self.count += 1
        try:
            return await handler(req)
        except Exception as exc:
            self.last_error = exc
            raise


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    headers: Mapping[str, str],
    body: bytes | None,
    timeout: aiohttp.ClientTimeout,
    *,
    read_limit: int | None,
    sink: Sink | None = None,
    count_hidden: bool = True,
    allow_hidden_retry: bool = True,
) -> Response:
    """Make one attempt. With `sink`, a 200 body is streamed into it (after truncating
    it, so an attempt always starts from scratch) instead of being returned.

    aiohttp replays idempotent methods once by itself after a reset. `count_hidden`
    counts (and, without `allow_hidden_retry`, refuses) that replay with a per-request
    middleware; pass `False` for sessions with middlewares of their own (a per-request
    middleware would replace them): the replay is then inferred from the error type.
    """
    counter: AttemptCounter | None = None
    if method in IDEMPOTENT_METHODS and count_hidden:
        counter = AttemptCounter(2 if allow_hidden_retry else 1)
        middlewares: tuple[AttemptCounter, ...] | None = (counter,)
    else:
        middlewares = None  # None: the session's own (a per-request tuple replaces them)
    try:
        async with session.request(
            method,
            url,
            headers=headers,
            data=body,
            timeout=timeout,
            allow_redirects=False,
            middlewares=middlewares,
        ) as resp:
            status = resp.status
            if sink is not None and 200 <= status < 300 and status != 202:
                sink.seek(0)
                sink.truncate()
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    sink.write(chunk)
                return Response(status, resp.headers, b"", False, _wire(counter, 1))
            if status >= 300:
                read_limit = ERROR_LIMIT if read_limit is None else min(read_limit, ERROR_LIMIT)
            data, truncated = await _read(resp, read_limit)
            return Response(status, resp.headers, data, truncated, _wire(counter, 1))
    except (ConnectionTimeoutError, ClientConnectorCertificateError, ClientSSLError) as exc:
        # Order matters: these subclass the broader classes handled below.
        kind = "connect_timeout" if isinstance(exc, ConnectionTimeoutError) else "tls"
        raise TransportError(kind, False, exc, _wire(counter, 1)) from exc
    except ClientConnectorError as exc:
        raise TransportError("connect", False, exc, _wire(counter, 1)) from exc
    except ClientPayloadError as exc:
        raise TransportError("truncated", True, exc, _wire(counter, 1)) from exc
    except (ServerDisconnectedError, ClientOSError) as exc:
        # Without a counter, aiohttp's code path is deterministic: an idempotent
        # request that fails this way has already been replayed once.
        fallback = 2 if method in IDEMPOTENT_METHODS else 1
        raise TransportError("reset", True, exc, _wire(counter, fallback)) from exc
    except asyncio.TimeoutError as exc:
        raise TransportError("timeout", True, exc, _wire(counter, 1)) from exc
    except aiohttp.ClientError as exc:
        raise TransportError("other", True, exc, _wire(counter, 1)) from exc


def _wire(counter: AttemptCounter | None, fallback: int) -> int:
    if counter is None:
        return fallback
    return max(counter.count, 1)


async def _read(resp: ClientResponse, limit: int | None) -> tuple[bytes, bool]:
    length = resp.content_length
    if limit is None or (length is not None and length <= limit):
        return await resp.read(), False
    # Unknown or oversized length: read at most `limit` bytes. The unread rest makes
    # aiohttp close the connection on release instead of reusing it.
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await resp.content.read(limit + 1 - size)
        if not chunk:
            return b"".join(parts), False
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)[:limit], True


class IO:
    """The transport's entry points as one object: the client imports this module on
    its first request and then reaches everything through one global (no per-call import)."""

    TransportError = TransportError
    build_url = staticmethod(build_url)
    client_timeout = staticmethod(client_timeout)
    get_running_loop = staticmethod(asyncio.get_running_loop)
    is_session = staticmethod(is_session)
    new_session = staticmethod(new_session)
    send = staticmethod(send)
