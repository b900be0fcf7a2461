"""The per-client caches of the request path (header combinations, URLs) never change
what goes on the wire: every call's own headers arrive, bad ones are still refused,
a `with_options` copy sends its own key and base URL, and the caches stay bounded."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from kernel_async import AsyncKernel, AuthenticationError
from kernel_async._client import _CACHED
from kernel_async.testing import FakeKernel

pytestmark = pytest.mark.anyio


class Live(Mapping[str, str]):
    """A mapping that is not a dict, whose items change between calls."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def __getitem__(self, key: str) -> str:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


async def test_each_call_sends_its_own_extra_headers(fake: FakeKernel, client: AsyncKernel) -> None:
    b = fake.create_browser()
    for value in ["1", "2", "1", "2"]:
        await client.browsers.replays.list(b, extra_headers={"X-Trace": value})
        assert fake.requests[-1].headers["X-Trace"] == value
    live = Live()
    for value in ["a", "b"]:
        live.data["X-Trace"] = value
        await client.browsers.replays.list(b, extra_headers=live)
        assert fake.requests[-1].headers["X-Trace"] == value
    await client.browsers.replays.list(b)  # none: the combination cached above is not reused
    assert "X-Trace" not in fake.requests[-1].headers
    # a generated operation: its Accept, then the caller's headers
    await client.browsers.computer.click_mouse(b, x=1, y=2, extra_headers={"X-Trace": "c"})
    got = fake.requests[-1].headers
    assert (got["Accept"], got["Content-Type"], got["X-Trace"]) == ("*/*", "application/json", "c")


async def test_bad_headers_are_refused_after_good_ones_were_cached(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    b = fake.create_browser()
    await client.browsers.replays.list(b, extra_headers={"X-Trace": "ok"})
    before = fake.count()
    with pytest.raises(ValueError, match="X-Trace"):
        await client.browsers.replays.list(b, extra_headers={"X-Trace": "ok\r\nX-Evil: 1"})
    with pytest.raises(TypeError, match="extra_headers"):
        await client.browsers.replays.list(b, extra_headers={"X-Trace": ["un", "hashable"]})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="extra_headers"):
        await client.browsers.replays.list(b, extra_headers={"X-Trace": 3})  # type: ignore[dict-item]
    assert fake.count() == before  # nothing was sent


async def test_with_options_copy_sends_its_own_key_and_base_url(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    b = fake.create_browser()
    await client.browsers.replays.list(b)
    other = client.with_options(api_key="not-the-key", max_retries=0)
    with pytest.raises(AuthenticationError):
        await other.browsers.replays.list(b)
    assert fake.requests[-1].headers["Authorization"] == "Bearer not-the-key"
    await client.browsers.replays.list(b)  # the original's cached headers are its own
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {fake.api_key}"
    async with FakeKernel() as second:
        moved = client.with_options(base_url=second.base_url, api_key=second.api_key)
        b2 = second.create_browser()
        await moved.browsers.replays.list(b2)
        assert second.count() == 1


async def test_caches_stay_bounded(fake: FakeKernel, client: AsyncKernel) -> None:
    browsers = [fake.create_browser() for _ in range(_CACHED + 20)]
    for i, b in enumerate(browsers):
        await client.browsers.replays.list(b, extra_headers={"X-Request": str(i)})
        assert fake.requests[-1].headers["X-Request"] == str(i)
        assert fake.requests[-1].raw_path == f"/browsers/{b}/replays"
    assert len(client._header_sets) == _CACHED
    assert len(client._urls) == _CACHED
