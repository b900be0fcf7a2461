"""Test your code offline: `FakeKernel`, a local Kernel replays API with fault injection,
the testing switch that removes retry waits, and pytest fixtures (auto-registered).

`Backend` is what runs the emulator's browsers and makes its videos: `InMemoryBackend` (the
default) or the local Chromium one (``FakeKernel(backend="chromium")``; `LocalSetupError`
when Chromium or PyAV is missing). Viewports are the SDK's own `kernel_async.Viewport`."""

from .._retry import is_testing, set_testing
from ._backend import (
    Backend,
    BackendError,
    BrowserHandle,
    BrowserLimitError,
    InMemoryBackend,
    UnknownBrowserError,
    UnsupportedValueError,
    sample_video,
)
from ._chromium import LocalSetupError
from ._emulator import FakeKernel, Fault, RecordedRequest

__all__ = [
    "Backend",
    "BackendError",
    "BrowserHandle",
    "BrowserLimitError",
    "FakeKernel",
    "Fault",
    "InMemoryBackend",
    "LocalSetupError",
    "RecordedRequest",
    "UnknownBrowserError",
    "UnsupportedValueError",
    "is_testing",
    "sample_video",
    "set_testing",
]
