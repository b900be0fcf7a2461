"""AsyncKernel: options, session ownership, `with_options()`, the request loop."""

from __future__ import annotations

import ipaddress
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final, TypeVar
from urllib.parse import urlsplit

from . import _retry
from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    KernelError,
    status_error,
)
from ._retry import RetryBudget, RetryEvent, RetryPolicy, Timeout, parse_retry_after
from ._types import NOT_GIVEN, NotGiven, check_int
from ._version import __version__
from .resources.browsers import AsyncBrowsers

if TYPE_CHECKING:
    import asyncio

    import aiohttp

    from ._transport import IO, Response, Sink, TransportError

# aiohttp, yarl, anyio and asyncio are imported on the first request, not at import time:
# `import kernel_sync` stays cheap for CLIs, notebooks and short scripts.

__all__ = ["NOT_GIVEN", "AsyncKernel", "KernelSecurityWarning", "NotGiven"]

T = TypeVar("T")

DEFAULT_BASE_URL: Final = "https://api.onkernel.com"
JSON_LIMIT: Final = 8 * 1024 * 1024
# Longest a download waits through 202 "still finalising" when no total deadline is set.
MAX_FINALISE_WAIT: Final = 600.0
DEFAULT_FINALISE_WAIT: Final = 1.0

logger = logging.getLogger("kernel_async")

_io: type[IO] | None = None


def _load_io() -> type[IO]:
    """Import the transport (aiohttp, yarl) on first use, then keep it in `_io`."""
    global _io
    from ._transport import IO

    _io = IO
    return IO


class KernelSecurityWarning(UserWarning):
    """Issued when a configuration would expose the API key (e.g. plain http to a remote host)."""


_log_configured = False


def _configure_logging() -> None:
    # KERNEL_LOG=info|debug attaches a stderr handler once; otherwise stdlib logging rules.
    global _log_configured
    if _log_configured:
        return
    _log_configured = True
    level = os.environ.get("KERNEL_LOG", "").strip().lower()
    if level in ("info", "debug"):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if level == "debug" else logging.INFO)


def _check_headers(headers: Mapping[str, str] | None, name: str) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError(f"{name} must be a mapping of str to str, got {type(headers).__name__}")
    out: dict[str, str] = {}
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"{name} must map str to str; got {key!r}: {type(value).__name__}")
        if not key or any(c in key for c in "\r\n\0:\t ") or not key.isascii():
            raise ValueError(f"{name}: invalid header name {key!r}")
        if any(c in value for c in "\r\n\0"):
            # Header injection: a CR/LF would let the value start a new header or request.
            raise ValueError(f"{name}: the value of header {key!r} contains CR, LF or NUL")
        out[key] = value
    return out


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Pool:
    """What `with_options()` copies share: the session, its owner flag, the retry budget."""

    __slots__ = ("budget", "closed", "limit", "loop", "owned", "pid", "session")

    def __init__(
        self, session: aiohttp.ClientSession | None, budget: RetryBudget, limit: int
    ) -> None:
        self.session = session
        self.limit = limit
        self.owned = session is None
        self.budget = budget
        self.closed = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pid = os.getpid()

    def get(self) -> aiohttp.ClientSession:
        io = _io or _load_io()
        if self.closed:
            raise KernelError("this client is closed; create a new AsyncKernel")
        session = self.session
        if session is not None:
            if self.owned and self.loop is not io.get_running_loop():
                raise KernelError(
                    "this AsyncKernel's connection pool belongs to another event loop; "
                    "create one client per event loop (or use kernel_sync.Kernel)"
                )
            return session
        self.loop = io.get_running_loop()
        self.session = io.new_session(self.limit)
        return self.session

    def forget(self) -> None:
        """Drop the session without closing it (after fork the sockets are the parent's)."""
        if self.owned:
            self.session = None
            self.loop = None
        self.pid = os.getpid()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        session, self.session = self.session, None
        if self.owned and session is not None and self.pid == os.getpid():
            await session.close()


class AsyncKernel:
    """Async client for Kernel browser replays.

    Args:
        api_key: Bearer key; defaults to the ``KERNEL_API_KEY`` environment variable.
        base_url: API root; defaults to ``KERNEL_BASE_URL``, then ``https://api.onkernel.com``.
        timeout: Seconds per attempt (float), `None` for no bound, or a `Timeout`
            adding a connect bound and a total deadline across attempts and waits.
        max_retries: Retries after the first attempt (see `RetryPolicy` for which).
        retry: Backoff shape, Retry-After cap, the retry budget and the `on_retry` hook.
        session: An `aiohttp.ClientSession` of yours to send through; it is used,
            never closed, and must belong to the event loop you call from.
        default_headers: Headers sent with every request.
        connection_limit: Most connections the pool opens at once (extra calls queue;
            the wait counts against the connect timeout). Ignored with `session`.

    Use it as ``async with AsyncKernel() as client:`` or call `close()`. Calls are safe
    to run concurrently from many tasks; they share one connection pool.
    """

    browsers: AsyncBrowsers

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | Timeout | None = 60.0,
        max_retries: int = 2,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        default_headers: Mapping[str, str] | None = None,
        connection_limit: int = 100,
    ) -> None:
        _configure_logging()
        if session is not None and not (_io or _load_io()).is_session(session):
            raise TypeError(f"session must be an aiohttp.ClientSession, got {type(session)!r}")
        policy = retry if retry is not None else RetryPolicy()
        if not isinstance(policy, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {type(policy).__name__}")
        self._configure(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry=policy,
            default_headers=default_headers,
        )
        check_int(connection_limit, "connection_limit", 1)
        self._pool = _Pool(session, RetryBudget(policy.budget), connection_limit)
        self._derived = False

    def _configure(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout: float | Timeout | None,
        max_retries: int,
        retry: RetryPolicy,
        default_headers: Mapping[str, str] | None,
    ) -> None:
        if api_key is None:
            api_key = os.environ.get("KERNEL_API_KEY")
        if api_key is None or api_key == "":
            raise KernelError(
                "no API key: pass api_key=... or set the KERNEL_API_KEY environment variable"
            )
        if not isinstance(api_key, str):
            raise TypeError(f"api_key must be a str, got {type(api_key).__name__}")
        if any(c in api_key for c in "\r\n\0"):
            raise ValueError("api_key contains CR, LF or NUL")
        if base_url is None:
            base_url = os.environ.get("KERNEL_BASE_URL") or DEFAULT_BASE_URL
        if not isinstance(base_url, str):
            raise TypeError(f"base_url must be a str, got {type(base_url).__name__}")
        url = urlsplit(base_url)
        try:
            url.port  # noqa: B018 - validates the port
        except ValueError:
            raise ValueError(f"base_url has an invalid port: {base_url!r}") from None
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
        if "@" in url.netloc:
            raise ValueError("base_url must not carry credentials; pass api_key instead")
        if url.scheme == "http" and not _is_loopback(url.hostname):
            warnings.warn(
                f"base_url {base_url!r} uses plain http to a non-loopback host: the API key "
                "would travel in clear text. Use https.",
                KernelSecurityWarning,
                stacklevel=4,
            )
        self._timeout = Timeout.coerce(timeout)
        self._max_retries = check_int(max_retries, "max_retries")
        self._policy = retry
        self._api_key = api_key
        self._base_url = f"{url.scheme}://{url.netloc}{url.path.rstrip('/')}"
        self._default_headers = _check_headers(default_headers, "default_headers")
        headers = {
            "Accept": "application/json",
            "User-Agent": f"kernel-async/{__version__}",
            **self._default_headers,
            "Authorization": f"Bearer {api_key}",
        }
        self._headers = headers
        self.browsers = AsyncBrowsers(self)

    # -- lifecycle -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API root this client calls."""
        return self._base_url

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt."""
        return self._max_retries

    @property
    def timeout(self) -> Timeout:
        """The time bounds of each call."""
        return self._timeout

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy."""
        return self._policy

    @property
    def is_closed(self) -> bool:
        """Whether the connection pool this client uses has been closed."""
        return self._pool.closed

    def with_options(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> AsyncKernel:
        """A copy with some options changed, sharing this client's connection pool and
        retry budget. Options not passed are kept. Closing the copy does not close the
        pool; closing the original does (for both)."""
        clone = object.__new__(type(self))
        clone._configure(
            api_key=api_key if api_key is not None else self._api_key,
            base_url=base_url if base_url is not None else self._base_url,
            timeout=self._timeout if isinstance(timeout, NotGiven) else timeout,
            max_retries=max_retries if max_retries is not None else self._max_retries,
            retry=retry if retry is not None else self._policy,
            default_headers=(
                default_headers if default_headers is not None else self._default_headers
            ),
        )
        clone._pool = self._pool
        clone._derived = True
        return clone

    async def close(self) -> None:
        """Close the connection pool (unless it is a session you passed in, or this
        client came from `with_options()`). Idempotent."""
        if not self._derived:
            await self._pool.close()

    async def __aenter__(self) -> AsyncKernel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self._base_url!r}, api_key=<redacted>, "
            f"timeout={self._timeout!r}, max_retries={self._max_retries})"
        )

    def _after_fork(self) -> None:
        self._pool.forget()

    # -- the request loop ------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        read_limit: int | None = JSON_LIMIT,
        sink: Sink | None = None,
        poll_accepted: bool = False,
        missing_ok_after_retry: bool = False,
    ) -> tuple[Response, str, int]:
        """Run one call: attempts, retries, waits. Returns the 2xx response, the URL
        string and the number of wire attempts; raises the typed error otherwise.

        `missing_ok_after_retry`: a 404 on a retry counts as success (an idempotent
        delete whose earlier, ambiguous attempt already took effect)."""
        if extra_headers is None and content_type is None:
            headers = self._headers
        else:
            headers = dict(self._headers)
            if content_type is not None:
                headers["Content-Type"] = content_type
            if extra_headers is not None:
                headers.update(_check_headers(extra_headers, "extra_headers"))
        io = _io or _load_io()
        client_timeout = io.client_timeout
        limits = self._timeout if isinstance(timeout, NotGiven) else Timeout.coerce(timeout)
        url = io.build_url(self._base_url, path)
        url_text = str(url)
        session = self._pool.get()
        policy = self._policy
        budget = self._pool.budget
        if sink is not None:
            # Streams are bounded per read, not in total: a long video must not time out.
            base_timeout = client_timeout(None, limits.connect or limits.attempt, limits.attempt)
        else:
            base_timeout = client_timeout(limits.attempt, limits.connect, None)
        started = time.monotonic()
        deadline = started + limits.total if limits.total is not None else None
        attempts = 0
        retries_left = self._max_retries
        retried = False
        count_hidden = self._pool.owned

        while True:
            attempt_timeout = base_timeout
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise APITimeoutError(
                        f"total deadline of {limits.total:g}s exceeded",
                        method=method,
                        url=url_text,
                        attempts=attempts,
                    )
                bound = (
                    remaining if base_timeout.total is None else min(base_timeout.total, remaining)
                )
                attempt_timeout = client_timeout(
                    bound, base_timeout.connect, base_timeout.sock_read, cache=False
                )
            try:
                resp = await io.send(
                    session,
                    method,
                    url,
                    headers,
                    body,
                    attempt_timeout,
                    read_limit=read_limit,
                    sink=sink,
                    count_hidden=count_hidden,
                    allow_hidden_retry=retries_left > 0,
                )
            except io.TransportError as exc:
                attempts += exc.wire_attempts
                retries_left -= exc.wire_attempts - 1
                error = _transport_error(exc, method, url_text, attempts, attempt_timeout)
                if not exc.retryable:
                    raise error from exc.cause
                if exc.sent and not idempotent:
                    logger.debug("not retrying %s %s: %s after sending", method, url_text, exc.kind)
                    raise error from exc.cause
                reason = f"{exc.kind} ({type(exc.cause).__name__})"
                timed_out = exc.kind in ("timeout", "connect_timeout")
                cost = policy.timeout_retry_cost if timed_out else policy.retry_cost
                wait = policy.backoff(self._max_retries - retries_left)
                await self._before_retry(
                    error, exc.cause, reason, None, wait, cost, retries_left, deadline
                )
                retries_left -= 1
                retried = True
                continue

            attempts += resp.wire_attempts
            retries_left -= resp.wire_attempts - 1
            status = resp.status
            if 200 <= status < 300:
                if status == 202 and poll_accepted:
                    await self._wait_finalising(resp, method, url_text, attempts, started, deadline)
                    continue
                budget.refund(policy.retry_cost if retried else 1)
                return resp, url_text, attempts

            if status == 404 and missing_ok_after_retry and retried:
                budget.refund(policy.retry_cost)
                return resp, url_text, attempts

            if 300 <= status < 400:
                # Redirects are not followed: the Authorization header must not travel on.
                redirect = APIStatusError(
                    f"{status} unexpected redirect (not followed) to "
                    f"{resp.headers.get('Location', '?')!r}",
                    status_code=status,
                    error=None,
                    headers=resp.headers,
                    method=method,
                    url=url_text,
                    attempts=attempts,
                )
                raise redirect
            status_err = status_error(
                status, resp.headers, resp.body, method=method, url=url_text, attempts=attempts
            )
            should = resp.headers.get("x-should-retry")
            if should == "true":
                retryable = True
            elif should == "false":
                retryable = False
            else:
                retryable = status in (408, 429) or status >= 500
            if not retryable:
                raise status_err
            retry_after = parse_retry_after(resp.headers)
            if retry_after is not None and retry_after > policy.max_retry_after:
                status_err.retry_after = retry_after
                logger.info(
                    "not retrying %s %s: server asked to wait %.3gs (max_retry_after=%gs)",
                    method,
                    url_text,
                    retry_after,
                    policy.max_retry_after,
                )
                raise status_err
            wait = (
                retry_after
                if retry_after is not None
                else policy.backoff(self._max_retries - retries_left)
            )
            await self._before_retry(
                status_err,
                None,
                f"status {status}",
                status,
                wait,
                policy.retry_cost,
                retries_left,
                deadline,
                retry_after=retry_after,
            )
            retries_left -= 1
            retried = True

    async def _before_retry(
        self,
        error: APIError,
        cause: BaseException | None,
        reason: str,
        status: int | None,
        wait: float,
        cost: int,
        retries_left: int,
        deadline: float | None,
        retry_after: float | None = None,
    ) -> None:
        """Raise `error` unless a retry is allowed (count, deadline, budget); else wait."""
        if retries_left <= 0:
            raise error from cause
        testing = _retry.is_testing()
        actual = 0.0 if testing else wait
        if deadline is not None and time.monotonic() + actual >= deadline:
            logger.info(
                "not retrying %s %s after %s: a %.3gs wait would pass the deadline",
                error.method,
                error.url,
                reason,
                wait,
            )
            if retry_after is not None:
                error.retry_after = retry_after
            raise error from cause
        if not self._pool.budget.acquire(cost):
            # INFO, not WARNING: in an outage this fires per call, and WARNING reaches
            # stderr even where the application never configured logging.
            logger.info(
                "not retrying %s %s after %s: client retry budget exhausted",
                error.method,
                error.url,
                reason,
            )
            raise error from cause
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "retrying %s %s after attempt %d: %s; waiting %.3fs",
                error.method,
                error.url,
                error.attempts,
                reason,
                wait,
            )
        hook = self._policy.on_retry
        if hook is not None:
            event = RetryEvent(
                method=error.method,
                url=error.url,
                attempt=error.attempts,
                wait=actual,
                planned_wait=wait,
                reason=reason,
                status=status,
                exception=cause,
            )
            try:
                hook(event)
            except Exception:
                logger.exception("on_retry hook raised; ignored")
        if actual > 0:
            from anyio import sleep

            await sleep(actual)

    async def _wait_finalising(
        self,
        resp: Response,
        method: str,
        url: str,
        attempts: int,
        started: float,
        deadline: float | None,
    ) -> None:
        retry_after = parse_retry_after(resp.headers)
        wait = DEFAULT_FINALISE_WAIT if retry_after is None else retry_after
        wait = min(wait, self._policy.max_retry_after)
        if _retry.is_testing():
            wait = min(wait, 0.01)
        now = time.monotonic()
        limit = deadline if deadline is not None else started + MAX_FINALISE_WAIT
        if now + wait >= limit:
            raise APITimeoutError(
                f"the replay was still being finalised (202) after {now - started:.3g}s",
                method=method,
                url=url,
                attempts=attempts,
                retry_after=retry_after,
            )
        logger.debug("%s %s: 202 still finalising; polling again in %.3fs", method, url, wait)
        from anyio import sleep

        await sleep(wait)

    async def _request_json(
        self,
        method: str,
        path: str,
        decode: Callable[[bytes], T],
        *,
        idempotent: bool,
        body: bytes | None = None,
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> T:
        resp, url, attempts = await self._request(
            method,
            path,
            idempotent=idempotent,
            body=body,
            content_type="application/json" if body is not None else None,
            timeout=timeout,
            extra_headers=extra_headers,
        )
        if resp.truncated:
            raise APIResponseValidationError(
                f"response body exceeds {JSON_LIMIT} bytes",
                status_code=resp.status,
                method=method,
                url=url,
                attempts=attempts,
            )
        try:
            return decode(resp.body)
        except Exception as exc:
            raise APIResponseValidationError(
                f"response does not match the schema: {_describe(exc)}",
                status_code=resp.status,
                method=method,
                url=url,
                attempts=attempts,
                body=resp.body[:2000].decode("utf-8", "replace"),
            ) from exc


def _describe(exc: BaseException) -> str:
    from cattrs import transform_error
    from cattrs.errors import ClassValidationError, IterableValidationError

    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        return "; ".join(transform_error(exc))
    return f"{type(exc).__name__}: {exc}"


def _transport_error(
    exc: TransportError, method: str, url: str, attempts: int, timeout: aiohttp.ClientTimeout
) -> APIConnectionError:
    cause = exc.cause
    if exc.kind in ("timeout", "connect_timeout"):
        bound = timeout.total if timeout.total is not None else timeout.sock_read
        if exc.kind == "connect_timeout" and timeout.connect is not None:
            bound = timeout.connect
        what = "connect timed out" if exc.kind == "connect_timeout" else "request timed out"
        text = f"{what} after {bound:g}s" if bound is not None else what
        return APITimeoutError(text, method=method, url=url, attempts=attempts)
    detail = str(cause) or type(cause).__name__
    labels = {
        "connect": "could not connect",
        "reset": "connection reset or closed by the server",
        "truncated": "response body was cut short",
        "tls": "TLS verification failed",
        "other": "connection error",
    }
    return APIConnectionError(
        f"{labels.get(exc.kind, exc.kind)}: {detail}", method=method, url=url, attempts=attempts
    )
