"""The exception hierarchy (names as in the official SDK), built from a response."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._gen_support import OfficialOnly
from ._models import Error, decode_error

if TYPE_CHECKING:
    from yarl import URL

    from ._transport import ConnectFailure, Response

T = TypeVar("T")

JSON_LIMIT: Final = 8 * 1024 * 1024
"""Most bytes of a JSON body read (decompressed): a larger one is a validation error."""

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "KernelError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "StreamInterruptedError",
    "UnprocessableEntityError",
]


class KernelError(Exception):
    """Base class of every error this SDK raises on purpose."""


class APIError(KernelError):
    """A call to the API failed.

    Attributes:
        message: What went wrong, in one line.
        method: HTTP method of the call.
        url: The URL called (never carries the API key).
        attempts: How many requests went on the wire for this call.
        retry_after: A wait the server asked for that was not honoured
            (too long, or past the deadline), in seconds; else `None`.
        body: The decoded JSON body, or the raw text, where there was one.
    """

    message: str
    method: str
    url: str
    attempts: int
    retry_after: float | None
    body: object | None

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        attempts: int = 1,
        retry_after: float | None = None,
        body: object | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.url = url
        self.attempts = attempts
        self.retry_after = retry_after
        self.body = body

    if not TYPE_CHECKING:  # the official errors' httpx objects: reading one says what to use
        request = OfficialOnly()
        response = OfficialOnly()

    def __str__(self) -> str:
        tail = f"{self.attempts} attempt" + ("" if self.attempts == 1 else "s")
        if self.retry_after is not None:
            tail += f"; server asked to wait {self.retry_after:g}s"
        return f"{self.message} ({tail})"


class APIStatusError(APIError):
    """The API answered with an error status (4xx/5xx).

    Attributes:
        status_code: The HTTP status.
        error: The documented error body, parsed; `None` if the body had another shape.
        headers: The response headers.
    """

    status_code: int
    error: Error | None
    headers: Mapping[str, str]

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        error: Error | None,
        headers: Mapping[str, str],
        **kwargs: object,
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.status_code = status_code
        self.error = error
        self.headers = headers


class BadRequestError(APIStatusError):
    """400: the request was invalid."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or invalid."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this (permissions or plan)."""


class NotFoundError(APIStatusError):
    """404: the browser or replay does not exist."""


class ConflictError(APIStatusError):
    """409: conflicts with the current state (e.g. a recording is already running)."""


class UnprocessableEntityError(APIStatusError):
    """422: well-formed but semantically invalid."""


class RateLimitError(APIStatusError):
    """429: too many requests."""


class InternalServerError(APIStatusError):
    """5xx: the server failed."""


class APIConnectionError(APIError):
    """No usable response: the connection failed or broke."""


class StreamInterruptedError(APIConnectionError):
    """An event stream broke after delivering events, and could not be resumed: it had
    carried no event ``id:`` to resume from (or resuming was refused).

    Attributes:
        events: How many events were delivered before it broke.
        last_event_id: The last event id seen, if any.
    """

    events: int
    last_event_id: str | None

    def __init__(
        self, message: str, *, events: int, last_event_id: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.events = events
        self.last_event_id = last_event_id


class APITimeoutError(APIConnectionError):
    """An attempt or the call's total deadline timed out."""


class APIResponseValidationError(APIError):
    """A successful response did not match the documented schema.

    Attributes:
        status_code: The HTTP status of the response.
    """

    status_code: int

    def __init__(self, message: str, *, status_code: int, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.status_code = status_code


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def _body_for_error(raw: bytes, error: Error | None) -> object | None:
    if not raw:
        return None
    if error is not None:
        try:
            value: object = json.loads(raw)
            return value
        except ValueError:  # pragma: no cover - decode_error already parsed it
            return None
    text = raw.decode("utf-8", "replace")
    return text[:2000]


def status_error(
    status: int,
    headers: Mapping[str, str],
    raw: bytes,
    *,
    method: str,
    url: str,
    attempts: int,
    retry_after: float | None = None,
) -> APIStatusError:
    """Build the typed error for an error response; never raises on odd bodies."""
    error = decode_error(raw) if raw else None
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    if error is not None:
        message = f"{status} {error.code}: {error.message}"
    else:
        message = f"{status} {_reason(status)}"
    if status == 401:
        message += " (check the API key: api_key=... or KERNEL_API_KEY)"
    return cls(
        message,
        status_code=status,
        error=error,
        headers=headers,
        method=method,
        url=url,
        attempts=attempts,
        retry_after=retry_after,
        body=_body_for_error(raw, error),
    )


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error status"


_FAILURE_LABELS = {
    "connect": "could not connect",
    "reset": "connection reset or closed by the server",
    "truncated": "response body was cut short",
    "tls": "TLS failed",
    "closed": "the client was closed while this call was in flight; create a new client",
    "credentials": (
        "the aiohttp session passed as session= adds credentials of its own (auth=, or "
        "~/.netrc with trust_env=True) beside the API key; make it without them"
    ),
    "other": "connection error",
}

_CHECK_BASE_URL: Final = "check base_url (or KERNEL_BASE_URL)"
# A connect failure by stage (see `ConnectFailure`): what happened, and what to check.
_CONNECT_WORDS: Final = {
    "dns": ("could not resolve the host name {host}", _CHECK_BASE_URL),
    "tcp": ("could not connect to {where}", _CHECK_BASE_URL),
    "proxy": ("could not connect to the proxy at {where}", "check proxy= (or HTTPS_PROXY)"),
    "certificate": ("TLS verification failed for {where}", ""),
    "tls": ("TLS handshake with {where} failed", ""),
}
# Why a failure that got no response was not retried (a `Fail` reason), when the
# attempts count alone does not say it.
_NOT_RETRIED: Final = {
    "ambiguous": "not retried: the server may have acted on it (the call is not idempotent)",
    "budget": "not retried: the client's retry budget is spent (many calls failed lately)",
    "deadline": "not retried: another attempt would pass the call's total deadline",
    "fatal": "not retried: retrying would not change it",
}


def transport_error(
    kind: str,
    cause: BaseException,
    bound: float | None,
    *,
    method: str,
    url: str,
    attempts: int,
    deadline: bool = False,
    why: str | None = None,
    connect: ConnectFailure | None = None,
) -> APIConnectionError:
    """The typed error for an attempt that got no response.

    Args:
        bound: The attempt's time limit.
        deadline: That limit was the rest of the call's total deadline.
        why: Why the call ended here (a `Fail` reason), when it ended here.
        connect: Where and why a connection could not be made (a connect or TLS
            failure), said in plain words instead of aiohttp's message.
    """
    if kind in ("timeout", "connect_timeout"):
        what = "connect timed out" if kind == "connect_timeout" else "request timed out"
        text = f"{what} after {bound:.3g}s" if bound is not None else what
        if deadline:
            text += ", the rest of the call's total deadline"
    elif kind in ("closed", "credentials"):
        text = _FAILURE_LABELS[kind]
    elif connect is not None:
        host = f"[{connect.host}]" if ":" in connect.host else connect.host  # IPv6
        where = host if connect.port is None else f"{host}:{connect.port}"
        what, check = _CONNECT_WORDS.get(connect.stage, _CONNECT_WORDS["tcp"])
        text = f"{what.format(host=connect.host, where=where)}: {connect.reason}"
        if check:
            text += f"; {check}"
    else:
        detail = str(cause) or type(cause).__name__
        text = f"{_FAILURE_LABELS.get(kind, kind)}: {detail}"
        if kind == "connect":
            text += f"; {_CHECK_BASE_URL}"
    if why in _NOT_RETRIED and kind not in ("closed", "credentials") and not deadline:
        text += f"; {_NOT_RETRIED[why]}"
    error_type = APITimeoutError if kind in ("timeout", "connect_timeout") else APIConnectionError
    return error_type(text, method=method, url=url, attempts=attempts)


def redirect_error(
    status: int, headers: Mapping[str, str], *, method: str, url: str, attempts: int
) -> APIStatusError:
    """A 3xx: redirects are not followed (the Authorization header must not travel on)."""
    return APIStatusError(
        f"{status} unexpected redirect (not followed) to {headers.get('Location', '?')!r}",
        status_code=status,
        error=None,
        headers=headers,
        method=method,
        url=url,
        attempts=attempts,
    )


def decode_json(
    resp: Response,
    decode: Callable[[bytes], T],
    *,
    method: str,
    url: URL,
    attempts: int,
    operation: str = "",
) -> T:
    """Decode a read body, or raise `APIResponseValidationError` saying why not (and
    naming `operation`, the official SDK's name of the call, when given)."""
    named = f"{operation}: " if operation else ""
    if resp.truncated:
        raise APIResponseValidationError(
            f"{named}response body exceeds {JSON_LIMIT} bytes",
            status_code=resp.status,
            method=method,
            url=str(url),
            attempts=attempts,
        )
    try:
        return decode(resp.body)
    except Exception as exc:
        raise APIResponseValidationError(
            f"{named}response does not match the schema: {_describe(exc)}",
            status_code=resp.status,
            method=method,
            url=str(url),
            attempts=attempts,
            body=resp.body[:2000].decode("utf-8", "replace"),
        ) from exc


def _describe(exc: BaseException) -> str:
    from cattrs import transform_error
    from cattrs.errors import ClassValidationError, IterableValidationError

    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        return "; ".join(transform_error(exc))
    return f"{type(exc).__name__}: {exc}"


class SSEEventTooLargeError(KernelError):
    """One server-sent event grew past the stream's bound (`max_event_bytes`); raised
    before the event is buffered whole.

    Attributes:
        limit: The bound, in bytes.
    """

    limit: int

    def __init__(self, limit: int) -> None:
        super().__init__(f"a server-sent event exceeds {limit} bytes (max_event_bytes)")
        self.limit = limit


__all__ += ["SSEEventTooLargeError"]
