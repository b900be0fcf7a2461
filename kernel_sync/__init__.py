"""kernel_sync: the blocking twin of kernel_async, generated from it.

    with Kernel() as client:
        replay = client.browsers.replays.start(browser_id)
        client.browsers.replays.stop(replay.replay_id, id=browser_id)

Errors and models are the very same classes as in kernel_async.
"""

from kernel_async import (
    NOT_GIVEN,
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    Browser,
    BrowserPage,
    BrowserStatus,
    ConflictError,
    Error,
    ErrorDetail,
    InternalServerError,
    KernelError,
    KernelSecurityWarning,
    NotFoundError,
    NotGiven,
    PermissionDeniedError,
    RateLimitError,
    Region,
    Replay,
    RetryEvent,
    RetryPolicy,
    Timeout,
    UnprocessableEntityError,
    Viewport,
    __version__,
    is_testing,
    set_testing,
)

from ._generated import BrowserPager, Browsers, Kernel, Recording, Replays

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "Browser",
    "BrowserPage",
    "BrowserPager",
    "BrowserStatus",
    "Browsers",
    "ConflictError",
    "Error",
    "ErrorDetail",
    "InternalServerError",
    "Kernel",
    "KernelError",
    "KernelSecurityWarning",
    "NotFoundError",
    "NotGiven",
    "PermissionDeniedError",
    "RateLimitError",
    "Recording",
    "Region",
    "Replay",
    "Replays",
    "RetryEvent",
    "RetryPolicy",
    "Timeout",
    "UnprocessableEntityError",
    "Viewport",
    "__version__",
    "is_testing",
    "set_testing",
]
