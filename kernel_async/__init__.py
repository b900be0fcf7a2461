"""kernel_async: an async-first SDK for Kernel browsers and their replays.

async with AsyncKernel() as client:
    replay = await client.browsers.replays.start(browser_id)
    await client.browsers.replays.stop(replay.replay_id, id=browser_id)
"""

from ._client import AsyncKernel, KernelBlockingWarning, KernelSecurityWarning
from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    KernelError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    SSEEventTooLargeError,
    StreamInterruptedError,
    UnprocessableEntityError,
)
from ._gen_support import AsyncBinaryContent, BinaryContent
from ._models import Browser, BrowserPage, Error, ErrorDetail, Replay, Viewport
from ._retry import RetryEvent, RetryPolicy, Timeout, is_testing, set_testing
from ._types import NOT_GIVEN, BrowserStatus, NotGiven, Region
from ._version import __version__
from .resources import AsyncBrowserPager, AsyncBrowsers, AsyncRecording, AsyncReplays

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncBinaryContent",
    "AsyncBrowserPager",
    "AsyncBrowsers",
    "AsyncKernel",
    "AsyncRecording",
    "AsyncReplays",
    "AuthenticationError",
    "BadRequestError",
    "BinaryContent",
    "Browser",
    "BrowserPage",
    "BrowserStatus",
    "ConflictError",
    "Error",
    "ErrorDetail",
    "InternalServerError",
    "KernelBlockingWarning",
    "KernelError",
    "KernelSecurityWarning",
    "NotFoundError",
    "NotGiven",
    "PermissionDeniedError",
    "RateLimitError",
    "SSEEventTooLargeError",
    "StreamInterruptedError",
    "Region",
    "Replay",
    "RetryEvent",
    "RetryPolicy",
    "Timeout",
    "UnprocessableEntityError",
    "Viewport",
    "__version__",
    "is_testing",
    "set_testing",
]
