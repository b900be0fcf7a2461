from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from kernel_async import AsyncKernel, set_testing
from kernel_async.testing import FakeKernel


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _fast_retries() -> Iterator[None]:
    # The SDK's own testing switch: retry waits become zero. Tests of real waits turn it off.
    with set_testing(True):
        yield


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KERNEL_API_KEY", "KERNEL_BASE_URL", "KERNEL_LOG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def fake() -> AsyncIterator[FakeKernel]:
    async with FakeKernel(finalise_seconds=0.05) as server:
        yield server


@pytest.fixture
async def client(fake: FakeKernel) -> AsyncIterator[AsyncKernel]:
    async with fake.client() as c:
        yield c


@pytest.fixture
def threaded_fake() -> Iterator[FakeKernel]:
    """The emulator on its own thread, for sync clients and subprocesses."""
    with FakeKernel.in_thread(finalise_seconds=0.05) as server:
        yield server


@pytest.fixture
def browser(fake: FakeKernel) -> str:
    return fake.create_browser()
