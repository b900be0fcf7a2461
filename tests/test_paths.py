"""Every ID reaches the server as exactly one percent-encoded path segment."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel_async import AsyncKernel, NotFoundError
from kernel_async._paths import segment
from kernel_async.testing import FakeKernel

pytestmark = pytest.mark.anyio

ids = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40).filter(
    lambda s: s not in (".", "..")
)


@pytest.mark.parametrize("bad", ["", ".", ".."])
@pytest.mark.parametrize("which", ["id", "replay_id"])
async def test_empty_and_dot_segments_rejected_before_io(
    fake: FakeKernel, client: AsyncKernel, bad: str, which: str
) -> None:
    kwargs = {"id": "b", "replay_id": "r", which: bad}
    with pytest.raises(ValueError, match=which):
        await client.browsers.replays.stop(kwargs["replay_id"], id=kwargs["id"])
    with pytest.raises(ValueError, match=which):
        await client.browsers.replays.download(kwargs["replay_id"], id=kwargs["id"])
    assert fake.count() == 0


async def test_non_str_ids_rejected(client: AsyncKernel) -> None:
    with pytest.raises(TypeError, match="replay_id must be a str"):
        await client.browsers.replays.stop(123, id="b")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="id must be a str"):
        await client.browsers.replays.list(None)


def test_lone_surrogate_is_value_error() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        segment("a\ud800", "id")


@pytest.mark.parametrize("value", ["a/b", "../x", "?q=1", "#frag", "%2F", "sp ace", "é", "..."])
def test_reserved_characters_are_encoded(value: str) -> None:
    enc = segment(value, "id")
    assert "/" not in enc and "?" not in enc and "#" not in enc and " " not in enc
    assert unquote(enc) == value


async def test_unicode_ids_round_trip_through_real_server() -> None:
    async with FakeKernel() as fake, fake.client(max_retries=0) as client:

        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        @given(browser=ids, replay=ids)
        def check(browser: str, replay: str) -> None:
            import asyncio

            asyncio.run_coroutine_threadsafe(_one(client, fake, browser, replay), loop).result()

        # hypothesis drives sync functions; run it on a worker thread against this loop.
        import asyncio

        loop = asyncio.get_running_loop()
        await asyncio.to_thread(check)


async def _one(client: AsyncKernel, fake: FakeKernel, browser: str, replay: str) -> None:
    fake.requests.clear()
    with pytest.raises(NotFoundError):
        await client.browsers.replays.stop(replay, id=browser)
    (req,) = fake.requests
    parts = req.raw_path.split("/")
    assert len(parts) == 6, req.raw_path  # '', browsers, ID, replays, ID, stop
    assert unquote(parts[2], errors="strict") == browser
    assert unquote(parts[4], errors="strict") == replay
    assert parts[5] == "stop"
