"""AsyncKernel: options, session ownership, `with_options()`, and the request loop.

The loop only sends, asks `_retry.decide` what to do, sleeps and counts: every rule
of a call (retry or not, how long to wait, what it costs) lives in `_retry`.
"""

from __future__ import annotations

import logging
import os
import random
import time
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final, Literal, NoReturn, TypeVar

from . import _retry
from ._config import (
    check_api_key,
    check_base_url,
    check_headers,
    choose_base_url,
    env_proxy,
    redact_url,
    scope_headers,
)
from ._errors import (
    JSON_LIMIT,
    APIError,
    APITimeoutError,
    KernelError,
    decode_json,
    redirect_error,
    status_error,
    transport_error,
)
from ._gen._root import AsyncResources
from ._retry import (
    FIRST_TRY_REFUND,
    CallRules,
    CallState,
    Decision,
    Done,
    Fail,
    Outcome,
    Retry,
    RetryBudget,
    RetryEvent,
    RetryPolicy,
    Timeout,
    decide,
    may_replay,
    settles,
)
from ._types import NOT_GIVEN, NotGiven, check_int
from ._version import __version__
from .resources.browsers import AsyncBrowsers

if TYPE_CHECKING:
    import asyncio

    import aiohttp
    from yarl import URL

    from ._transport import Body, Bound, Deadlines, Response, Sink, Transport, TransportError

# aiohttp, yarl, anyio and asyncio are imported on the first request, not at import time:
# `import kernel_sync` stays cheap for CLIs, notebooks and short scripts.

__all__ = ["NOT_GIVEN", "AsyncKernel", "KernelBlockingWarning", "KernelSecurityWarning", "NotGiven"]

T = TypeVar("T")


logger = logging.getLogger("kernel_async")

_CACHED: Final = 256
"""Most header combinations and URLs a client keeps ready (see `_call_headers`)."""

_transport: type[Transport] | None = None


def _load_transport() -> type[Transport]:
    """Import the transport (aiohttp, yarl) on first use; keep it in `_transport`."""
    global _transport
    from ._transport import Transport

    _transport = Transport
    return Transport


class KernelSecurityWarning(UserWarning):
    """Issued when a configuration would expose the API key (e.g. plain http to a remote host)."""


class KernelBlockingWarning(UserWarning):
    """Issued (once per client) when the blocking `kernel_sync.Kernel` is called from a
    coroutine, where each call stalls the event loop; use `AsyncKernel` there."""


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


class _SharedState:
    """What a client and its `with_options()` copies share: the aiohttp session, whether
    the SDK owns it, the loop it lives on, and whether it was closed."""

    __slots__ = ("closed", "closing", "deadlines", "limit", "loop", "owned", "pid", "session")

    def __init__(self, session: aiohttp.ClientSession | None, limit: int) -> None:
        self.session = session
        self.limit = limit
        self.owned = session is None
        self.closed = False
        # Set by close(): wakes calls waiting to retry or poll, so they end at once.
        self.closing: asyncio.Event | None = None
        self.deadlines: Deadlines | None = None  # the attempts' time limits, on that loop
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pid = os.getpid()

    def get(self) -> aiohttp.ClientSession:
        """The session to send through, made on first use on the running loop."""
        tp = _transport or _load_transport()
        session = self.session
        running = tp.get_running_loop()
        if self.loop is running and self.owned and session is not None and not self.closed:
            return session  # the usual call: our session, on its loop (its timer is there)
        if self.closed:
            raise KernelError("this client is closed; create a new AsyncKernel")
        if session is None:
            self.session = session = tp.new_session(self.limit)
            self.loop = running
        elif self.owned and self.loop is not running:
            raise KernelError(
                "this AsyncKernel's connection pool belongs to another event loop; "
                "create one client per event loop (or use kernel_sync.Kernel)"
            )
        elif not self.owned:
            _check_user_session(tp, session, running)
        deadlines = self.deadlines
        if deadlines is None or deadlines.loop is not running:
            # First use, or first use on this loop (after a fork, or on a user's session
            # once a call from a wrong loop was refused): the timer and the close event
            # belong to the loop the calls run on.
            self.loop = running
            self.closing = tp.new_event()
            self.deadlines = tp.Deadlines(running)
        return session

    def forget(self) -> None:
        """Drop the session without closing it (after fork the sockets are the parent's),
        and the loop-bound timer and event with it."""
        if self.owned:
            self.session = None
        self.loop = None
        self.closing = None
        self.deadlines = None
        self.pid = os.getpid()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        session, self.session = self.session, None
        if self.pid != os.getpid():
            return  # forked: the session and its loop are the parent's
        tp = _transport or _load_transport()
        if self.closing is not None:
            tp.call_on(self.closing.set, self.loop)
        if self.deadlines is not None:
            tp.call_on(self.deadlines.close, self.loop)
        if self.owned and session is not None:
            await tp.close_session(session, self.loop)


def _check_user_session(
    tp: type[Transport], session: aiohttp.ClientSession, running: asyncio.AbstractEventLoop
) -> None:
    loop = tp.session_loop(session)
    if loop is not None and loop.is_closed():
        raise KernelError(
            "the aiohttp session passed as session= belongs to an event loop that is closed; "
            "create the session inside the loop you call from"
        )
    if loop is not None and loop is not running:
        raise KernelError(
            "the aiohttp session passed as session= belongs to another event loop; "
            "create the session inside the loop you call from"
        )
    if session.closed:
        raise KernelError("the aiohttp session passed as session= is closed")


class ClosedFlag:
    """A client's closed state: a truth value that can also be called (the official SDK
    spells it ``client.is_closed()``, this one ``client.is_closed``; both work)."""

    __slots__ = ("_closed",)

    def __init__(self, closed: bool) -> None:
        self._closed = closed

    def __bool__(self) -> bool:
        return self._closed

    def __call__(self) -> bool:
        return self._closed

    def __eq__(self, other: object) -> bool:
        return bool(self) == other if isinstance(other, (bool, ClosedFlag)) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._closed)

    def __repr__(self) -> str:
        return repr(self._closed)


class AsyncKernel(AsyncResources):
    """Async client for Kernel browsers and their replays.

    Args:
        api_key: Bearer key; defaults to the ``KERNEL_API_KEY`` environment variable.
        base_url: API root; defaults to ``KERNEL_BASE_URL``, then ``https://api.onkernel.com``.
        timeout: Seconds per attempt (float), `None` for no bound, or a `Timeout`
            adding a connect bound and a total deadline across attempts and waits.
        max_retries: Retries after the first attempt (see `RetryPolicy` for which).
        retry: Backoff shape, Retry-After cap, the retry budget and the `on_retry` hook.
        session: An `aiohttp.ClientSession` of yours to send through; it is used,
            never closed, and must belong to the event loop you call from;
            `connection_limit` does not apply to it.
        default_headers: Headers sent with every request.
        connection_limit: Most connections the pool opens at once (extra calls queue;
            the wait counts against the connect timeout).
        proxy: An HTTP proxy URL for every request (overrides the environment).
        trust_env: Read ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY``
            from the environment, as the official SDK does (default `True`).
        environment: The official client's name for an API root instead of `base_url`:
            ``"production"`` (the default root) or ``"development"``.
        project_id: Scope every request to this project (sent as ``X-Kernel-Project-Id``).
        project: Scope every request to the project of this name (``X-Kernel-Project``).

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
        proxy: str | None = None,
        trust_env: bool = True,
        environment: Literal["production", "development"] | None = None,
        project_id: str | None = None,
        project: str | None = None,
    ) -> None:
        _configure_logging()
        base_url = choose_base_url(base_url, environment)
        if session is not None and not (_transport or _load_transport()).is_session(session):
            raise TypeError(f"session must be an aiohttp.ClientSession, got {type(session)!r}")
        policy = retry if retry is not None else RetryPolicy()
        if not isinstance(policy, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {type(policy).__name__}")
        if not isinstance(trust_env, bool):
            raise TypeError(f"trust_env must be a bool, got {type(trust_env).__name__}")
        self._proxy_option = proxy
        self._trust_env = trust_env
        self._configure(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry=policy,
            default_headers=default_headers,
            project_id=project_id,
            project=project,
        )
        check_int(connection_limit, "connection_limit", 1)
        self._shared = _SharedState(session, connection_limit)
        self._budget = RetryBudget(policy.budget)
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
        project_id: str | None,
        project: str | None,
    ) -> None:
        api_key = check_api_key(api_key)
        self._base_url, clear = check_base_url(base_url)
        if clear:
            warnings.warn(
                f"base_url {self._base_url!r} uses plain http to a non-loopback host: the API "
                "key would travel in clear text. Use https.",
                KernelSecurityWarning,
                stacklevel=4,
            )
        self._proxy = _choose_proxy(self._proxy_option, self._trust_env, self._base_url)
        self._timeout = Timeout.coerce(timeout)
        self._max_retries = check_int(max_retries, "max_retries")
        self._policy = retry
        self._rules_cache: dict[tuple[bool, bool, bool, bool], CallRules] = {}
        # Per client, as the headers and the base URL are: see _call_headers and _url.
        self._header_sets: dict[tuple[object, ...], Mapping[str, str]] = {}
        self._urls: dict[str, URL] = {}
        self._api_key = api_key
        self._default_headers = check_headers(default_headers, "default_headers")
        self._project_id, self._project = project_id, project
        self._headers = {
            "Accept": "application/json",
            "User-Agent": f"kernel-async/{__version__}",
            **check_headers(scope_headers(project_id, project), "project"),
            **self._default_headers,  # a project header given here wins, as officially
            "Authorization": f"Bearer {api_key}",
        }
        self.browsers = AsyncBrowsers(self)

    # -- lifecycle -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API root this client calls."""
        return self._base_url

    @property
    def project_id(self) -> str | None:
        """The project every request is scoped to (``X-Kernel-Project-Id``), if any."""
        return self._project_id

    @property
    def project(self) -> str | None:
        """The project name every request is scoped to (``X-Kernel-Project``), if any."""
        return self._project

    @property
    def api_key(self) -> str:
        """The key this client sends (as the official ``client.api_key``; never shown in
        a repr, a log line or an error)."""
        return self._api_key

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
    def is_closed(self) -> ClosedFlag:
        """Whether the connection pool this client uses has been closed: true or false as
        it is (``if client.is_closed:``), and callable as the official SDK's method
        (``client.is_closed()``)."""
        return ClosedFlag(self._shared.closed)

    def with_options(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        default_headers: Mapping[str, str] | None = None,
        environment: Literal["production", "development"] | None = None,
        project_id: str | None = None,
        project: str | None = None,
    ) -> AsyncKernel:
        """A copy with some options changed, sharing this client's connection pool.
        Options not passed are kept; `default_headers` are added to this client's (a
        name given again takes the new value), as in the official SDK. The retry budget
        is shared too, unless `retry` sets a different budget size (then the copy has a
        bucket of its own). Closing the copy does not close the pool; closing the
        original does (for both)."""
        clone = object.__new__(type(self))
        clone._proxy_option = self._proxy_option
        clone._trust_env = self._trust_env
        clone._configure(
            api_key=api_key if api_key is not None else self._api_key,
            base_url=choose_base_url(base_url, environment) or self._base_url,
            timeout=self._timeout if isinstance(timeout, NotGiven) else timeout,
            max_retries=max_retries if max_retries is not None else self._max_retries,
            retry=retry if retry is not None else self._policy,
            default_headers=(
                {**self._default_headers, **default_headers}
                if default_headers is not None
                else self._default_headers
            ),
            project_id=project_id if project_id is not None else self._project_id,
            project=project if project is not None else self._project,
        )
        clone._shared = self._shared
        same = clone._policy.budget == self._policy.budget
        clone._budget = self._budget if same else RetryBudget(clone._policy.budget)
        clone._derived = True
        return clone

    copy = with_options  # the official client's other name for it

    async def close(self) -> None:
        """Close the connection pool (unless it is a session you passed in, or this
        client came from `with_options()`). Calls still in flight fail with an
        `APIConnectionError` saying the client was closed. Idempotent."""
        if not self._derived:
            await self._shared.close()

    async def __aenter__(self) -> AsyncKernel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    if not TYPE_CHECKING:  # at run time only: type checkers still flag a plain `with`

        def __enter__(self) -> NoReturn:
            raise TypeError(
                f"{type(self).__name__} is the async client: use `async with "
                f"{type(self).__name__}() as client:` (kernel_sync.Kernel is the blocking "
                "one, for a plain `with`)"
            )

        def __exit__(self, *exc_info: object) -> None:
            """Never reached: `__enter__` refuses."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self._base_url!r}, api_key=<redacted>, "
            f"timeout={self._timeout!r}, max_retries={self._max_retries})"
        )

    def _after_fork(self) -> None:
        self._shared.forget()

    # -- the request loop ------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        body: Body = None,
        content_type: str | None = None,
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        read_limit: int | None = JSON_LIMIT,
        sink: Sink | None = None,
        poll_accepted: bool = False,
        missing_ok_after_retry: bool = False,
        event_stream: bool = False,
    ) -> tuple[Response, URL, int]:
        """Run one call: attempts, retries, waits. Returns the 2xx response, the URL
        and the number of wire attempts; raises the typed error otherwise.

        `poll_accepted`: a 202 means "not ready yet": poll again (downloads).
        `missing_ok_after_retry`: a 404 on a retry counts as success (an idempotent
        delete whose earlier, ambiguous attempt already took effect).
        `event_stream` (with `sink`): the attempt bound covers the wait for the response
        head only; the body may then be silent up to `Timeout.idle` between reads
        (`None`: for ever), within the call's total deadline.
        """
        tp = _transport or _load_transport()
        shared = self._shared
        session = shared.get()
        limits = self._timeout if timeout is NOT_GIVEN else Timeout.coerce(timeout)  # type: ignore[arg-type]
        # URLs and rules are made once and looked up here, without a call per request.
        url = self._urls.get(path)
        if url is None:
            url = self._url(tp, path)
        headers = self._call_headers(content_type, extra_headers)
        key = (idempotent, poll_accepted, missing_ok_after_retry, _retry._testing)
        rules = self._rules_cache.get(key) or self._rules(key)
        budget = self._budget
        own = shared.owned
        deadlines = shared.deadlines
        assert deadlines is not None  # made by get(), with the session
        started = time.monotonic()
        deadline = started + limits.total if limits.total is not None else None
        # Made once an attempt does not settle the call: the usual call, done at its first
        # attempt, builds none.
        state: CallState | None = None
        while True:
            bound = _attempt_bound(limits, deadline, sink is not None, event_stream)
            if bound is None:
                raise APITimeoutError(
                    f"total deadline of {limits.total:g}s exceeded",
                    method=method,
                    url=str(url),
                    attempts=state.attempts if state is not None else 0,
                )
            resp: Response | None = None
            try:
                if shared.closed:  # closed while this call waited to retry: it ends now
                    raise tp.TransportError("closed", False, KernelError("the client was closed"))
                resp = await tp.send(
                    session, method, url, headers, body, bound, deadlines,
                    read_limit=read_limit, sink=sink, proxy=self._proxy, own=own,
                    replay_allowed=own or may_replay(state, rules, budget.free),
                )  # fmt: skip
            except tp.TransportError as exc:
                failure: TransportError | None = exc
                outcome = Outcome(failure=exc.kind, sent=exc.sent, hidden=exc.hidden)
            else:
                if state is None and settles(resp.status, rules):  # decide() says Done
                    budget.refund(FIRST_TRY_REFUND)
                    return resp, url, 1
                failure = None
                outcome = Outcome(resp.status, resp.headers)
            if state is None:
                state = CallState(started, deadline)
            if failure is not None and getattr(sink, "started", False):
                # An event stream broke after its head came: not re-sent as it was; the
                # stream resumes it (Last-Event-ID) or says it cannot.
                broke = Fail("interrupted")
                state = state.after(outcome, broke)
                error = _error_for(broke, resp, failure, bound, method, str(url), state)
                raise error from failure.cause
            decision, state = self._decide(outcome, state, rules)
            if isinstance(decision, Done):
                assert resp is not None
                return resp, url, state.attempts
            error = _error_for(decision, resp, failure, bound, method, str(url), state)
            if isinstance(decision, Fail):
                _log_failure(decision, error)
                raise error from failure.cause if failure is not None else None
            await self._wait(decision, error, failure)

    def _decide(
        self, outcome: Outcome, state: CallState, rules: CallRules
    ) -> tuple[Decision, CallState]:
        """Ask the rules what an attempt's outcome means (with the clocks and a jitter
        draw), settle the budget accordingly, and count the attempt."""
        budget = self._budget
        decision = decide(
            outcome,
            state,
            rules,
            free=budget.free,
            now=time.monotonic(),
            wall=time.time(),
            jitter=random.random(),
        )
        if decision.take:
            budget.acquire(decision.take)
        if isinstance(decision, Done):
            budget.refund(decision.give)
        return decision, state.after(outcome, decision)

    def _rules(self, key: tuple[bool, bool, bool, bool]) -> CallRules:
        """The rules of a call (idempotent, polls 202s, 404 ok after a retry, testing
        switch); a handful of combinations, each built once per client."""
        rules = self._rules_cache[key] = CallRules(self._policy, self._max_retries, *key)
        return rules

    def _call_headers(
        self, content_type: str | None, extra: Mapping[str, str] | None
    ) -> Mapping[str, str]:
        """The client's headers, then the content type, then `extra` (checked).

        Calls repeat a handful of combinations (an operation's Accept and content type):
        each is checked and merged once, then reused, keyed by its pairs. Never more than
        `_CACHED`: values that change per call (a multipart boundary, a Last-Event-ID)
        are checked and merged afresh each time. Nothing mutates a merged dict."""
        if extra is None:
            if content_type is None:
                return self._headers
            key: tuple[object, ...] | None = (content_type,)
        else:
            # Only a plain dict's pairs make a key (a mapping of another kind may change
            # under the same items); an unhashable value is refused by check_headers.
            key = (content_type, *extra.items()) if type(extra) is dict else None
        sets = self._header_sets
        if key is not None:
            try:
                return sets[key]
            except (KeyError, TypeError):
                pass
        headers = dict(self._headers)
        if content_type is not None:
            headers["Content-Type"] = content_type
        if extra is not None:
            headers.update(check_headers(extra, "extra_headers"))
        if key is not None and len(sets) < _CACHED:
            sets[key] = headers  # hashable: check_headers let only str pairs through
        return headers

    def _url(self, tp: type[Transport], path: str) -> URL:
        """The URL of `path`, parsed once per path: most calls address a few resources
        again and again (never more than `_CACHED` are kept)."""
        url = tp.build_url(self._base_url, path)
        if len(self._urls) < _CACHED:
            self._urls[path] = url
        return url

    async def _wait(self, retry: Retry, error: APIError, failure: TransportError | None) -> None:
        """Log the retry, call the hook, sleep."""
        if retry.poll:
            logger.debug(
                "%s %s: 202 still finalising; polling again in %.3fs",
                error.method,
                error.url,
                retry.wait,
            )
        else:
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "retrying %s %s after attempt %d: %s; waiting %.3fs",
                    error.method,
                    error.url,
                    error.attempts,
                    retry.reason,
                    retry.planned,
                )
            self._call_hook(retry, error, failure)
        if retry.wait > 0:
            closing = self._shared.closing
            assert closing is not None  # made with the session, before any attempt
            from anyio import move_on_after

            with move_on_after(retry.wait):
                await closing.wait()  # close() ends the wait; the loop then ends the call

    def _call_hook(self, retry: Retry, error: APIError, failure: TransportError | None) -> None:
        hook = self._policy.on_retry
        if hook is None:
            return
        event = RetryEvent(
            method=error.method,
            url=error.url,
            attempt=error.attempts,
            wait=retry.wait,
            planned_wait=retry.planned,
            reason=retry.reason,
            status=getattr(error, "status_code", None),
            exception=failure.cause if failure is not None else None,
        )
        try:
            hook(event)
        except Exception:
            logger.exception("on_retry hook raised; ignored")

    async def _request_json(
        self,
        method: str,
        path: str,
        decode: Callable[[bytes], T],
        *,
        idempotent: bool,
        body: Body = None,
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
        return decode_json(resp, decode, method=method, url=url, attempts=attempts)


def _choose_proxy(option: str | None, trust_env: bool, base_url: str) -> str | None:
    if option is not None:
        if not isinstance(option, str) or not option.startswith(("http://", "https://")):
            shown = redact_url(option) if isinstance(option, str) else type(option).__name__
            raise ValueError(f"proxy must be an http(s):// URL, got {shown!r}")
        return option
    return env_proxy(base_url) if trust_env else None


def _attempt_bound(
    limits: Timeout,
    deadline: float | None,
    streaming: bool,
    event_stream: bool = False,
) -> Bound | None:
    """The limits of the next attempt; `None` when the call's `deadline` (monotonic) has
    passed.

    The attempt's total is kept by the loop's `Deadlines`, which also ends a stalled
    connect (a pooled connection, or a new one); a failure raised while connecting is
    known as "not sent" whatever ended it, so safe to retry. A separate connect bound
    is armed only when `Timeout(connect=...)` asks for one (each costs a timer).
    Streams are bounded per read, not in total: a long video must not time out.
    """
    tp = _transport or _load_transport()
    remaining = None if deadline is None else deadline - time.monotonic()
    if remaining is not None and remaining <= 0:
        return None
    if streaming and event_stream:
        head = limits.attempt
        if remaining is not None and (head is None or remaining < head):
            head = remaining
        return tp.bound(head, limits.connect, limits.idle, False, remaining)
    if streaming:
        return tp.bound(remaining, limits.connect or limits.attempt, limits.attempt)
    total = limits.attempt
    by_deadline = remaining is not None and (total is None or remaining < total)
    if by_deadline:
        total = remaining
    connect = limits.connect
    if connect is not None and total is not None:
        connect = min(connect, total)
    return tp.bound(total, connect, None, by_deadline)


def _error_for(
    decision: Retry | Fail,
    resp: Response | None,
    failure: TransportError | None,
    bound: Bound,
    method: str,
    url: str,
    state: CallState,
) -> APIError:
    """The error this attempt amounts to (raised on `Fail`, reported on `Retry`)."""
    attempts = state.attempts
    retry_after = decision.retry_after if isinstance(decision, Fail) else None
    if failure is not None:
        limit = bound.connect if failure.kind == "connect_timeout" else bound.total
        limit = limit if limit is not None else bound.sock_read
        return transport_error(
            failure.kind,
            failure.cause,
            limit,
            method=method,
            url=url,
            attempts=attempts,
            deadline=bound.deadline and limit == bound.total,
            why=decision.why if isinstance(decision, Fail) else None,
            connect=failure.connect,
        )
    assert resp is not None
    if isinstance(decision, Fail) and decision.why == "finalising":
        waited = time.monotonic() - state.started
        return APITimeoutError(
            f"the replay was still being finalised (202) after {waited:.1f}s; waiting for "
            "the next poll would pass the call's deadline",
            method=method,
            url=url,
            attempts=attempts,
            retry_after=retry_after,
        )
    if 300 <= resp.status < 400:
        return redirect_error(resp.status, resp.headers, method=method, url=url, attempts=attempts)
    return status_error(
        resp.status,
        resp.headers,
        resp.body,
        method=method,
        url=url,
        attempts=attempts,
        retry_after=retry_after,
    )


_FAIL_LOGS: Final = {
    "ambiguous": "the request may have been sent and is not idempotent",
    "exhausted": "no retries left",
    "deadline": "the wait would pass the deadline",
    "budget": "client retry budget exhausted",
    "retry_after": "the server asked for a longer wait than max_retry_after",
}


def _log_failure(fail: Fail, error: APIError) -> None:
    # INFO, not WARNING: in an outage this fires per call, and WARNING reaches stderr
    # even where the application never configured logging.
    text = _FAIL_LOGS.get(fail.why)
    if text is not None and logger.isEnabledFor(logging.INFO):
        logger.info("not retrying %s %s: %s (%s)", error.method, error.url, text, error.message)
