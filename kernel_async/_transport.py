"""One attempt over aiohttp: send, read (bounded) or stream, and classify failures.

Knows nothing of the Kernel API and decides no retries: it returns a `Response`
or raises `TransportError` saying whether the request may have reached the server.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator, Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import aiohttp
from aiohttp import (
    ClientConnectorCertificateError,
    ClientConnectorDNSError,
    ClientConnectorError,
    ClientHandlerType,
    ClientOSError,
    ClientPayloadError,
    ClientProxyConnectionError,
    ClientRequest,
    ClientResponse,
    ClientSSLError,
    ConnectionTimeoutError,
    ServerDisconnectedError,
    hdrs,
)
from multidict import CIMultiDictProxy
from yarl import URL

from ._heap import settle as settle_heap

if TYPE_CHECKING:
    from aiohttp.connector import Connection
    from aiohttp.tracing import Trace

__all__ = [
    "Bound",
    "ConnectFailure",
    "Deadlines",
    "Response",
    "Sink",
    "Transport",
    "TransportError",
    "bound",
    "build_url",
    "call_on",
    "close_session",
    "is_session",
    "new_session",
    "send",
]

# aiohttp replays these once by itself after a reset (RFC 9112 9.3.1).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

_CHUNK = 256 * 1024
# Error bodies are only ever parsed for a message: never read more than this of them.
ERROR_LIMIT = 64 * 1024

# The connector's `connect`: an exception raised inside it (pool wait, DNS, TCP or TLS
# connect) ended the attempt before the request could leave, whatever its type.
_CONNECT_CODE = aiohttp.BaseConnector.connect.__code__


def new_session(limit: int) -> aiohttp.ClientSession:
    """A session owned by the SDK.

    trust_env=False: proxies are resolved by the client (so that `~/.netrc` never adds
    credentials beside the API key). aiohttp's own one-shot replay of idempotent
    requests is switched off (its test client does the same): the retry rules decide
    every request, and the budget counts every one.
    """
    session = aiohttp.ClientSession(
        connector=_Connector(limit=limit),
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None),
    )
    session._retry_connection = False
    return session


class _Connector(aiohttp.TCPConnector):
    """aiohttp's TCP pool, minus one hazard: a pooled keep-alive connection on which
    bytes arrived while it sat idle (a late or unsolicited response) would have them
    read as the next request's response. aiohttp takes a connection from the pool when
    its socket is open, whatever it holds; here one holding unread bytes (its protocol's
    `should_close`, which aiohttp itself reads on release) is closed and the next one
    taken. The usual request pays one coroutine frame and two property reads (~0.3 µs)."""

    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        conn = await _TCP_CONNECT(self, req, traces, timeout)  # super()'s, without super()
        protocol = conn.protocol
        if protocol is not None and protocol.should_close:  # rare: bytes came while idle
            return await self._replace(conn, req, traces, timeout)
        return conn

    async def _replace(
        self,
        conn: Connection,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,
    ) -> Connection:
        # The pool holds at most `limit` idle connections per host: after closing that
        # many, the next one is new.
        for _ in range(self.limit):
            conn.close()  # released as "should close": closed, never pooled again
            conn = await super().connect(req, traces, timeout)
            protocol = conn.protocol
            if protocol is None or not protocol.should_close:
                break
        return conn


_TCP_CONNECT = aiohttp.TCPConnector.connect


def is_session(value: object) -> bool:
    """Whether `value` is an aiohttp session."""
    return isinstance(value, aiohttp.ClientSession)


def session_loop(session: aiohttp.ClientSession) -> asyncio.AbstractEventLoop | None:
    """The event loop a session was made on (`None` when aiohttp does not say)."""
    loop = getattr(session, "_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


async def close_session(
    session: aiohttp.ClientSession, home: asyncio.AbstractEventLoop | None
) -> None:
    """Close an SDK-owned session, also when called from another loop than its `home`.

    A session's sockets belong to the loop that opened them: closed there when it runs
    (in another thread), else torn down here without that loop's help.
    """
    here = asyncio.get_running_loop()
    if home is None or home is here:
        await session.close()
    elif home.is_running() and not home.is_closed():
        future = asyncio.run_coroutine_threadsafe(session.close(), home)
        await asyncio.wait_for(asyncio.wrap_future(future), 5.0)
    else:
        _abort_sockets(session)


def _abort_sockets(session: aiohttp.ClientSession) -> None:
    # The home loop is stopped or closed: it can run no callbacks, so transports cannot
    # close themselves. Close their sockets directly so no descriptor leaks.
    connector = session.connector
    conns = getattr(connector, "_conns", {}) if connector is not None else {}
    for entries in list(conns.values()):
        for entry in entries:
            transport = getattr(entry[0], "transport", None)
            sock = getattr(transport, "_sock", None)
            if sock is not None:
                sock.close()
                transport._sock = None  # type: ignore[union-attr]
    if connector is not None:
        connector._close()  # on a closed loop this only marks it closed and forgets its conns
    session._connector = None  # nothing left to close; no "Unclosed" warning later


def new_event() -> asyncio.Event:
    """An event for the running loop."""
    return asyncio.Event()


def call_on(fn: Callable[[], object], home: asyncio.AbstractEventLoop | None) -> None:
    """Call `fn` from any thread on its `home` loop: here when that is this one, through
    the loop when it runs elsewhere; not at all when it no longer runs (nothing on it
    can wait any more)."""
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if home is None or home is here:
        fn()
    elif home.is_running() and not home.is_closed():
        home.call_soon_threadsafe(fn)


def build_url(base: str, path: str) -> URL:
    """A URL from a base and an already percent-encoded path.

    encoded=True: yarl must not normalise or re-encode the path. Parsing one string is
    also measurably cheaper downstream in aiohttp than ``URL.build(authority=...)``.
    """
    return URL(base + path, encoded=True)


class Bound:
    """An attempt's time limits: `total` is kept by `Deadlines`, `connect` and `sock_read`
    (bounds on taking a connection and on each read) by aiohttp. `deadline`: `total` is
    what is left of the call's total deadline (shorter than an attempt's own bound); never
    said of a stream, whose timeouts mostly come from its per-read bound."""

    __slots__ = ("aiohttp", "body", "connect", "deadline", "sock_read", "total")

    def __init__(
        self,
        total: float | None,
        connect: float | None,
        sock_read: float | None,
        deadline: bool = False,
        body: float | bool | None = False,
    ) -> None:
        self.total = total
        self.connect = connect
        self.sock_read = sock_read
        self.deadline = deadline
        # An event stream's `total` bounds the wait for the response head only; once it
        # has begun, `body` (what is left of the call's deadline, or None) bounds the rest.
        # False: `total` bounds the whole attempt.
        self.body = body
        self.aiohttp = aiohttp.ClientTimeout(total=None, connect=connect, sock_read=sock_read)


@lru_cache(maxsize=64)
def bound(
    total: float | None,
    connect: float | None,
    sock_read: float | None,
    deadline: bool = False,
    body: float | bool | None = False,
) -> Bound:
    """An attempt's limits (cached: calls reuse a few fixed combinations)."""
    return Bound(total, connect, sock_read, deadline, body)


class Deadlines:
    """The attempts' total time limits on one loop, kept by a single loop timer.

    aiohttp arms a timer per request for `ClientTimeout(total=...)`: a heap entry with
    Python-level comparisons, pushed and cancelled on every request (about 8% of a
    small request's CPU). Here an attempt is an entry in a dict (keyed by its task: a
    task makes one attempt at a time); one timer fires at the earliest limit, cancels
    the attempts past theirs and is set again for the next. The attempt then turns
    its cancellation into a timeout, as `asyncio.timeout` does (`timed_out`).
    """

    __slots__ = ("_at", "_expired", "_handle", "_live", "_time", "closed", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.closed = False  # close() ended the attempts: they fail as "closed"
        self._time = loop.time
        # task -> (its limit, its pending cancellations when armed)
        self._live: dict[asyncio.Task[Any], tuple[float, int]] = {}
        # task -> its pending cancellations when armed, once its limit cancelled it
        self._expired: dict[asyncio.Task[Any], int] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._at = _NEVER

    def arm(self, seconds: float | None) -> asyncio.Task[Any]:
        """Start the current task's attempt clock: it is cancelled after `seconds`
        (`None`: only by `close()`)."""
        task = asyncio.current_task(self.loop)  # with the loop: no lookup of the running one
        assert task is not None  # attempts run in tasks
        when = _NEVER if seconds is None else self._time() + seconds
        self._live[task] = (when, task.cancelling() if _COUNTS_CANCELS else 0)
        if when < self._at:
            self._schedule(when)
        return task

    def disarm(self, task: asyncio.Task[Any]) -> None:
        """The task's attempt is over (whatever its end)."""
        self._live.pop(task, None)
        if self._expired:
            self._expired.pop(task, None)

    def timed_out(self, task: asyncio.Task[Any]) -> bool:
        """After a failure of the task's attempt: whether its limit (or `close()`)
        cancelled it. The cancellation is then taken back; `False` if someone else
        cancelled it too."""
        count = self._expired.pop(task, None)
        if count is None:
            return False
        if not _COUNTS_CANCELS:  # 3.10: nothing counts cancellations
            return True
        return task.uncancel() <= count

    def close(self) -> None:
        """The client is closing: end every attempt in flight now (each fails as
        "closed", also on a session of the user's, which is not closed) and stop."""
        self.closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._at = _NEVER
        self._end(lambda _when: True)

    def _schedule(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._at = when
        self._handle = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._at = _NEVER
        now = self._time()
        later = min((when for when, _ in self._live.values() if when > now), default=_NEVER)
        self._end(lambda when: when <= now)
        if later != _NEVER:
            self._schedule(later)

    def _end(self, due: Callable[[float], bool]) -> None:
        for task, (when, count) in list(self._live.items()):
            if due(when):
                del self._live[task]
                self._expired[task] = count
                task.cancel()


_NEVER = float("inf")
# Task.cancelling()/uncancel() exist from 3.11; on 3.10 there is no count to keep.
_COUNTS_CANCELS = hasattr(asyncio.Task, "uncancel")


Body = bytes | Callable[[], AsyncIterator[bytes]] | None
"""A request body: bytes, or (uploads streamed from files) a factory of a fresh stream
for each attempt."""


class Sink(Protocol):
    """Where a streamed body goes; restarted (emptied) before each attempt's body."""

    def restart(self, total: int | None, /) -> object:
        """Empty the sink; `total` is the body's announced size, if known."""

    def write(self, data: bytes, /) -> object: ...


class Response:
    """A response whose body has been read (or streamed into a sink)."""

    __slots__ = ("body", "headers", "status", "truncated")

    def __init__(
        self,
        status: int,
        headers: CIMultiDictProxy[str],
        body: bytes,
        truncated: bool,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.truncated = truncated  # the (decompressed) body was longer than the read limit


class TransportError(Exception):
    """No usable response.

    Attributes:
        kind: ``connect``, ``connect_timeout``, ``timeout``, ``reset``, ``truncated``,
            ``tls``, ``closed`` or ``other``.
        sent: Whether the request may have reached the server (an ambiguous failure).
        hidden: Requests aiohttp replayed by itself within this attempt.
    """

    def __init__(
        self,
        kind: str,
        sent: bool,
        cause: BaseException,
        hidden: int = 0,
        connect: ConnectFailure | None = None,
    ) -> None:
        super().__init__(f"{kind}: {type(cause).__name__}: {cause}")
        self.kind = kind
        self.sent = sent
        self.cause = cause
        self.hidden = hidden
        self.connect = connect  # a connect or TLS failure: where and why, in plain words


class ConnectFailure(NamedTuple):
    """A failure to connect, as data for the error message (never aiohttp's wording,
    which reads ``Cannot connect to host h:443 ssl:default [...]``).

    Attributes:
        stage: ``dns``, ``tcp``, ``proxy`` (connecting to the proxy), ``certificate``
            (TLS verification) or ``tls`` (the TLS handshake).
        host: The host (of the proxy, for ``proxy``).
        port: Its port, when known.
        reason: Why, in plain words: ``connection refused``, ``self-signed certificate``.
    """

    stage: str
    host: str
    port: int | None
    reason: str


def describe_connect(exc: ClientConnectorError) -> ConnectFailure:
    """Where and why a connection failed, read from aiohttp's documented attributes."""
    if isinstance(exc, ClientConnectorCertificateError):
        stage, error = "certificate", exc.certificate_error
    elif isinstance(exc, ClientSSLError):
        stage, error = "tls", exc.os_error
    elif isinstance(exc, ClientConnectorDNSError):
        stage, error = "dns", exc.os_error
    elif isinstance(exc, ClientProxyConnectionError):
        stage, error = "proxy", exc.os_error
    else:
        stage, error = "tcp", exc.os_error
    return ConnectFailure(stage, exc.host, exc.port, _reason(error))


def _reason(error: BaseException) -> str:
    """An OS or TLS error in plain words: ``connection refused``, not ``[Errno 111]
    Connect call failed ('127.0.0.1', 9)``; ``wrong version number``, not
    ``[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1000)``."""
    import ssl

    text = ""
    if isinstance(error, ssl.SSLCertVerificationError):
        text = error.verify_message or ""
    elif isinstance(error, ssl.SSLError):
        text = (error.strerror or str(error)).split(" (_ssl.c:")[0]
        if text.startswith("[") and "] " in text:
            text = text.split("] ", 1)[1]
    elif isinstance(error, OSError) and isinstance(error.errno, int) and error.errno > 0:
        text = os.strerror(error.errno)  # gaierror's are negative: its strerror says it
    text = text or getattr(error, "strerror", None) or str(error) or type(error).__name__
    return text[:1].lower() + text[1:]


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    headers: Mapping[str, str],
    body: Body,
    limits: Bound,
    deadlines: Deadlines,
    *,
    read_limit: int | None,
    sink: Sink | None = None,
    proxy: str | None = None,
    own: bool = True,
    replay_allowed: bool = True,
) -> Response:
    """Make one attempt. With `sink`, a 2xx body (not 202) is streamed into it (after
    truncating it, so an attempt always starts from scratch) instead of being returned;
    what the sink raises is raised as it is (never a transport failure).

    Whether a failed request may have left is read from where the failure was raised:
    inside the connector's `connect`, it had not (see `_left`).

    `own`: the session came from `new_session` (aiohttp's hidden replay is off there).
    On a session of the user's, an idempotent request that failed by a reset was
    replayed once by aiohttp (its code path is deterministic) — unless `replay_allowed`
    is false: then a middleware beside the session's own refuses that replay.
    """
    middlewares = None  # None: the session's own
    if not own and not replay_allowed and method in IDEMPOTENT_METHODS:
        middlewares = (*getattr(session, "_middlewares", ()), _OneShot())
    armed = deadlines.arm(limits.total)
    try:
        async with session.request(
            method,
            url,
            headers=headers,
            data=body() if callable(body) else body,  # a streamed upload starts afresh
            timeout=limits.aiohttp,
            allow_redirects=False,
            raise_for_status=False,  # a user's session may say True: statuses are ours
            proxy=proxy,
            middlewares=middlewares,
        ) as resp:
            status = resp.status
            if sink is not None and 200 <= status < 300 and status != 202:
                if limits.body is not False:  # a stream: the head came; the rest may be long
                    deadlines.disarm(armed)
                    armed = deadlines.arm(limits.body)
                await _stream_into(resp, sink)
                return Response(status, resp.headers, b"", False)
            if status >= 300 or status == 202:  # errors and "not ready yet": for a message only
                read_limit = ERROR_LIMIT if read_limit is None else min(read_limit, ERROR_LIMIT)
            headers = resp.headers
            # The usual small body is read in one go: no limit, or an unencoded body of
            # known length within it (Content-Length is the size on the wire: with a
            # Content-Encoding the body can be far larger once decompressed).
            if read_limit is None or (
                (length := headers.get(hdrs.CONTENT_LENGTH)) is not None
                and int(length) <= read_limit
                and hdrs.CONTENT_ENCODING not in headers
            ):
                return Response(status, headers, await resp.read(), False)
            data, truncated = await _read_bounded(resp, read_limit)
            return Response(status, resp.headers, data, truncated)
    except _SinkError as carrier:
        own_error = carrier.error  # raised below, as itself, outside this handler
    except _FAILURES as exc:
        closed = session.closed or deadlines.closed
        if deadlines.timed_out(armed) and isinstance(exc, asyncio.CancelledError):
            # Ended by its limit (or by close()): a timeout (or "closed").
            limit = f"{limits.total:g}s" if limits.total is not None else "its limit"
            timeout = asyncio.TimeoutError(f"attempt took longer than {limit}")
            error = classify(timeout, closed=closed, sent=_left(exc), replayed=False)
        elif isinstance(exc, asyncio.CancelledError):
            raise
        else:  # what aiohttp made of it (a connect timeout, say) says more
            replayed = _replayed(own, method, middlewares is not None)
            error = classify(exc, closed=closed, sent=_left(exc), replayed=replayed)
        if error is None:
            raise  # a RuntimeError or ValueError that is not ours to classify
        raise error from exc
    finally:
        deadlines.disarm(armed)
    raise own_error


async def _stream_into(resp: ClientResponse, sink: Sink) -> None:
    """A 2xx body into `sink`, restarted first; what the sink raises comes out as a
    `_SinkError`."""
    # The announced size; not with a Content-Encoding (that is the wire size).
    encoded = hdrs.CONTENT_ENCODING in resp.headers
    try:
        sink.restart(None if encoded else resp.content_length)
    except Exception as exc:
        raise _SinkError(exc) from None
    settle_heap()  # once per process: large reads reuse heap (see _heap)
    # Whatever arrived, as it arrived (bounded by aiohttp's flow control): fixed-size
    # reads join pieces into new 256 KiB blocks, costing large events ~12 page faults.
    async for chunk in resp.content.iter_any():
        try:
            pending = sink.write(chunk)
            if inspect.isawaitable(pending):
                await pending  # an event stream's sink waits for room
        except Exception as exc:
            raise _SinkError(exc) from None


class _SinkError(Exception):
    """Carries what a sink raised (the caller's file or callbacks: a `TimeoutError` of
    theirs, say) past the classification of failures, which must never take it for a
    timeout or a reset of the attempt: `send` raises it as itself, never retried."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


# What an attempt may end with besides a response: cancellation (by its limit, or from
# outside), aiohttp's errors, and the RuntimeError/ValueError classify() knows of.
_FAILURES = (
    asyncio.CancelledError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    RuntimeError,
    ValueError,
)


def classify(
    exc: BaseException, *, closed: bool, sent: bool, replayed: bool
) -> TransportError | None:
    """The `TransportError` for an exception aiohttp raised during an attempt, or `None`
    for one that is not a transport failure (a bug to surface as it is).

    Args:
        closed: The session was closed (by `close()` while the call was in flight).
        sent: Whether the request may have left (see `_left`).
        replayed: aiohttp replays this request once by itself after a reset.
    """
    if closed:
        return TransportError("closed", sent, exc)
    # Order matters: these subclass the broader classes below.
    if isinstance(exc, ConnectionTimeoutError):
        return TransportError("connect_timeout", False, exc)
    if isinstance(exc, (ClientConnectorCertificateError, ClientSSLError)):
        return TransportError("tls", False, exc, connect=describe_connect(exc))
    if isinstance(exc, ClientConnectorError):
        return TransportError("connect", False, exc, connect=describe_connect(exc))
    if isinstance(exc, ClientPayloadError):
        return TransportError("truncated", True, exc)
    if isinstance(exc, (ServerDisconnectedError, ClientOSError)):
        return TransportError("reset", sent, exc, 1 if replayed else 0)
    if isinstance(exc, asyncio.TimeoutError):
        return TransportError("timeout" if sent else "connect_timeout", sent, exc)
    if isinstance(exc, aiohttp.ClientError):
        return TransportError("other", sent, exc)
    if isinstance(exc, ValueError) and "AUTH" in str(exc):
        # aiohttp refuses a session's own credentials (auth=, or ~/.netrc with
        # trust_env=True) beside the API key's Authorization header.
        return TransportError("credentials", False, exc)
    return None


def _replayed(own: bool, method: str, refused: bool = False) -> bool:
    return not own and not refused and method in IDEMPOTENT_METHODS


class _OneShot:
    """A per-request client middleware that lets one request through and refuses
    aiohttp's hidden replay (re-raising the first failure) when no retry is left."""

    __slots__ = ("failure", "sent")

    def __init__(self) -> None:
        self.sent = False
        self.failure: BaseException | None = None

    async def __call__(self, req: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        if self.sent and self.failure is not None:
            raise self.failure
        self.sent = True
        try:
            return await handler(req)
        except Exception as exc:
            self.failure = exc
            raise


def _left(exc: BaseException) -> bool:
    """Whether the request may have reached the server: not when `exc` was raised
    inside the connector's `connect` (waiting for a pooled connection, or opening one),
    on any session's connector. Read from the traceback, on failures only: the
    successful path pays nothing for it. Explicit causes count too: aiohttp raises its
    connect timeout outside `connect`, from the error raised inside it."""
    seen: BaseException | None = exc
    for _ in range(8):  # a short chain; never loop on a cycle
        if seen is None:
            return True
        tb = seen.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code is _CONNECT_CODE:
                return False
            tb = tb.tb_next
        seen = seen.__cause__
    return True


async def _read_bounded(resp: ClientResponse, limit: int | None) -> tuple[bytes, bool]:
    """The body, decompressed, cut at `limit` bytes (with a flag when it was longer)."""
    assert limit is not None  # read whole otherwise
    # Read at most `limit` + 1 decompressed bytes. The unread rest makes aiohttp close
    # the connection on release instead of reusing it.
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await resp.content.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(parts), False
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)[:limit], True


class Transport:
    """This module's entry points as one typed object: the client imports the module on
    its first request and then reaches everything through one global, with no import
    statement on the hot path."""

    Deadlines = Deadlines
    TransportError = TransportError
    bound = staticmethod(bound)
    build_url = staticmethod(build_url)
    close_session = staticmethod(close_session)
    get_running_loop = staticmethod(asyncio.get_running_loop)
    is_session = staticmethod(is_session)
    new_event = staticmethod(new_event)
    new_session = staticmethod(new_session)
    send = staticmethod(send)
    session_loop = staticmethod(session_loop)
    call_on = staticmethod(call_on)
