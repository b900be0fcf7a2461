"""pytest plugin (entry point ``pytest11``): fixtures for testing code that uses the SDK.

- ``kernel_fake``: a fresh `FakeKernel` on its own thread, usable from sync and async
  tests alike (any event loop can reach it); the testing switch is on meanwhile.
- ``kernel_browser``: a browser ID created on ``kernel_fake``.
- ``kernel_sync_client``: a `kernel_sync.Kernel` pointed at ``kernel_fake``, closed after.
- ``kernel_fake_chromium``: like ``kernel_fake``, but every browser is a real local headless
  Chromium and every replay a real MP4 (needs Chromium and ``kernel-async[local]``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from .._retry import set_testing
from ._emulator import FakeKernel

if TYPE_CHECKING:
    from kernel_sync import Kernel


@pytest.fixture
def kernel_fake() -> Iterator[FakeKernel]:
    """A running `FakeKernel` (own thread) with retry waits switched off."""
    with FakeKernel.in_thread(finalise_seconds=0.05) as fake, set_testing(True):
        yield fake


@pytest.fixture
def kernel_fake_chromium() -> Iterator[FakeKernel]:
    """A running `FakeKernel` (own thread) whose browsers are real local Chromium."""
    with FakeKernel.in_thread(backend="chromium") as fake, set_testing(True):
        yield fake


@pytest.fixture
def kernel_browser(kernel_fake: FakeKernel) -> str:
    """A browser session ID on ``kernel_fake``."""
    return kernel_fake.create_browser()


@pytest.fixture
def kernel_sync_client(kernel_fake: FakeKernel) -> Iterator[Kernel]:
    """A blocking `kernel_sync.Kernel` talking to ``kernel_fake``."""
    from kernel_sync import Kernel

    with Kernel(api_key=kernel_fake.api_key, base_url=kernel_fake.base_url) as client:
        yield client
