"""The official `kernel` SDK (a test-only dependency) pointed at the emulator: browsers
and replays work through it as through the real API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kernel_async.testing import FakeKernel, sample_video

kernel = pytest.importorskip("kernel")


@pytest.fixture
def fake() -> Iterator[FakeKernel]:
    with FakeKernel.in_thread(finalise_seconds=0) as server:
        yield server


def test_official_sdk_browsers_and_replays(fake: FakeKernel) -> None:
    with kernel.Kernel(api_key=fake.api_key, base_url=fake.base_url, max_retries=0) as k:
        b = k.browsers.create(
            name="official",
            tags={"team": "qa"},
            viewport={"width": 1024, "height": 768},
            timeout_seconds=300,
        )
        assert (b.name, b.tags, b.timeout_seconds) == ("official", {"team": "qa"}, 300)
        assert b.viewport is not None and b.viewport.width == 1024
        assert k.browsers.retrieve("official").session_id == b.session_id
        updated = k.browsers.update(b.session_id, name="renamed", tags={})
        assert updated.name == "renamed" and not updated.tags

        extra = [fake.create_browser() for _ in range(24)]
        listed = [x.session_id for x in k.browsers.list(limit=10)]  # auto-pagination
        assert listed == [b.session_id, *extra]
        assert [x.session_id for x in k.browsers.list(tags={"team": "qa"})] == []

        r = k.browsers.replays.start(b.session_id, framerate=10)
        k.browsers.replays.stop(r.replay_id, id_or_name=b.session_id)
        (replay,) = k.browsers.replays.list(b.session_id)
        assert replay.replay_id == r.replay_id and replay.finished_at is not None
        assert k.browsers.replays.download(r.replay_id, id_or_name=b.session_id).read() == (
            sample_video()
        )

        k.browsers.delete_by_id(b.session_id)
        with pytest.raises(kernel.NotFoundError):
            k.browsers.retrieve(b.session_id)
        gone = k.browsers.retrieve(b.session_id, include_deleted=True)
        assert gone.deleted_at is not None
        assert [x.session_id for x in k.browsers.list(status="deleted")] == [b.session_id]
        with pytest.raises(kernel.BadRequestError):
            k.browsers.create(timeout_seconds=5)
    assert fake.count("create") == 2 and fake.count("delete") == 1
