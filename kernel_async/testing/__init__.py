"""Test your code offline: `FakeKernel`, a local Kernel replays API with fault injection,
the testing switch that removes retry waits, and pytest fixtures (auto-registered)."""

from .._retry import is_testing, set_testing
from ._emulator import FakeKernel, Fault, RecordedRequest, sample_video

__all__ = [
    "FakeKernel",
    "Fault",
    "RecordedRequest",
    "is_testing",
    "sample_video",
    "set_testing",
]
