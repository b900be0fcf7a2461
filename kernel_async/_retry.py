"""Retry policy: backoff with full jitter, Retry-After, the deadline, the retry budget."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

__all__ = [
    "RetryBudget",
    "RetryEvent",
    "RetryPolicy",
    "Timeout",
    "is_testing",
    "parse_retry_after",
    "set_testing",
]


def _positive_or_none(name: str) -> Callable[[Any, Any, Any], None]:
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number of seconds or None, got {value!r}")
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")

    return check


def _non_negative(name: str, kind: type[Any] = float) -> Callable[[Any, Any, Any], None]:
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        ok = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok):
            raise TypeError(f"{name} must be a {kind.__name__}, got {value!r}")
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be >= 0 and finite, got {value!r}")

    return check


@attrs.frozen
class Timeout:
    """Time bounds for a call.

    Attributes:
        attempt: Bound on each attempt (connect, send, headers, body), in seconds;
            like the official SDK's float `timeout`. `None`: unbounded.
        connect: Bound on taking a pooled connection or opening a new one.
        total: Deadline across all attempts *and* the waits between them. No wait
            starts that cannot end before it.
    """

    attempt: float | None = attrs.field(default=60.0, validator=_positive_or_none("attempt"))
    connect: float | None = attrs.field(
        default=None, kw_only=True, validator=_positive_or_none("connect")
    )
    total: float | None = attrs.field(
        default=None, kw_only=True, validator=_positive_or_none("total")
    )

    @classmethod
    def coerce(cls, value: float | Timeout | None, name: str = "timeout") -> Timeout:
        """Accept a float (per-attempt bound), `None` (unbounded) or a `Timeout`."""
        if isinstance(value, Timeout):
            return value
        _positive_or_none(name)(None, None, value)
        return cls(attempt=value)


@attrs.frozen
class RetryEvent:
    """What the `on_retry` hook receives before each wait. Never carries the API key.

    Attributes:
        method: HTTP method.
        url: The URL called.
        attempt: The attempt that just failed (1-based).
        wait: Seconds to wait before the next attempt (0 under `testing()`: the
            planned wait is in `planned_wait`).
        planned_wait: The wait the policy chose.
        reason: Why it is retried, e.g. ``"status 503"`` or ``"connect failed"``.
        status: The HTTP status, when there was one.
        exception: The transport error, when there was one.
    """

    method: str
    url: str
    attempt: int
    wait: float
    planned_wait: float
    reason: str
    status: int | None = None
    exception: BaseException | None = None


@attrs.frozen
class RetryPolicy:
    """How retries are spaced and limited (the count is `max_retries` on the client).

    Attributes:
        initial_backoff: Upper bound of the first wait; each retry doubles it.
            Waits are drawn uniformly from ``[0, min(max_backoff, initial_backoff * 2**n))``.
        max_backoff: Cap on the backoff bound.
        max_retry_after: Longest server-requested wait (Retry-After) honoured; a longer
            one fails the call at once with the wait on the error's `retry_after`.
        budget: Tokens in the client-wide retry budget; each retry spends `retry_cost`
            (`timeout_retry_cost` after a timeout), each success refunds. `None`: unlimited.
        retry_cost: Tokens per retry.
        timeout_retry_cost: Tokens per retry after a timeout.
        on_retry: Called with a `RetryEvent` before each wait; its errors are logged, not raised.
    """

    initial_backoff: float = attrs.field(default=0.5, validator=_non_negative("initial_backoff"))
    max_backoff: float = attrs.field(default=8.0, validator=_non_negative("max_backoff"))
    max_retry_after: float = attrs.field(default=60.0, validator=_non_negative("max_retry_after"))
    budget: int | None = attrs.field(default=500)
    retry_cost: int = attrs.field(default=5, validator=_non_negative("retry_cost", int))
    timeout_retry_cost: int = attrs.field(
        default=10, validator=_non_negative("timeout_retry_cost", int)
    )
    on_retry: Callable[[RetryEvent], object] | None = None

    @budget.validator
    def _check_budget(self, _attr: Any, value: Any) -> None:
        if value is not None:
            _non_negative("budget", int)(None, None, value)

    def backoff(self, retry_number: int) -> float:
        """The wait before retry `retry_number` (0-based): full jitter."""
        bound = min(self.max_backoff, self.initial_backoff * (2.0 ** min(retry_number, 62)))
        return random.uniform(0.0, bound)


class RetryBudget:
    """Client-wide token bucket: first attempts are never throttled, retries are.

    Follows the AWS SDK "standard" scheme: a retry costs tokens, a success refunds
    one token, or the retry's cost when it was a retry that succeeded.
    """

    __slots__ = ("capacity", "tokens")

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.tokens = capacity if capacity is not None else 0

    def acquire(self, cost: int) -> bool:
        """Spend `cost` tokens for a retry; `False` (nothing spent) when too few remain."""
        if self.capacity is None:
            return True
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True

    def refund(self, amount: int) -> None:
        """Give back tokens after a success."""
        if self.capacity is not None and self.tokens < self.capacity:
            self.tokens = min(self.capacity, self.tokens + amount)


MAX_RETRY_AFTER = 365 * 24 * 3600.0
"""Upper clamp of a parsed Retry-After: any larger request is equally refused."""


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks to wait, from ``retry-after-ms`` or ``Retry-After``.

    Accepts milliseconds, (fractional) seconds and HTTP-dates; a date in the past is 0.
    Returns `None` when absent or unparseable. Never raises; always within
    ``[0, MAX_RETRY_AFTER]`` (absurd values are clamped to that year-long bound, which
    `max_retry_after` then refuses).
    """
    raw = headers.get("retry-after-ms")
    if raw is not None:
        value = _number(raw)
        if value is not None:
            return min(value / 1000.0, MAX_RETRY_AFTER)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    value = _number(raw)
    if value is not None:
        return min(value, MAX_RETRY_AFTER)
    from email.utils import parsedate_to_datetime  # rare: HTTP-date form only

    try:
        when = parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER)


def _number(raw: str) -> float | None:
    text = raw.strip()
    if not text or len(text) > 32:
        return float("inf") if text.isdigit() else None
    try:
        value = float(text)
    except ValueError:
        return None
    if math.isnan(value):
        return None
    return max(0.0, value)


_testing = False


class _TestingSwitch:
    """Returned by `set_testing`; as a context manager it restores the previous state."""

    __slots__ = ("_previous",)

    def __init__(self, previous: bool) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        global _testing
        _testing = self._previous


def set_testing(enabled: bool) -> _TestingSwitch:
    """Turn the testing switch on or off: retry waits become zero (hooks still see
    the planned wait) and 202 polling waits are capped at 10 ms. For users' tests.

    Also a context manager: ``with set_testing(True): ...`` restores the previous state.
    """
    global _testing
    previous = _testing
    _testing = bool(enabled)
    return _TestingSwitch(previous)


def is_testing() -> bool:
    """Whether the testing switch is on."""
    return _testing
