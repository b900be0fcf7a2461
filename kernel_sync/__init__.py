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
    Replay,
    RetryEvent,
    RetryPolicy,
    Timeout,
    UnprocessableEntityError,
    __version__,
    is_testing,
    set_testing,
)

from ._generated import Browsers, Kernel, Replays

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
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
    "Replay",
    "Replays",
    "RetryEvent",
    "RetryPolicy",
    "Timeout",
    "UnprocessableEntityError",
    "__version__",
    "is_testing",
    "set_testing",
]
