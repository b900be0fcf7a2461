"""Testing your own code with the emulator's pytest fixtures (installed with the package).

pytest examples/test_with_emulator.py
"""

from __future__ import annotations

from pathlib import Path

from kernel_async.testing import FakeKernel
from kernel_sync import Kernel


def record_and_save(client: Kernel, browser_id: str, path: str) -> int:
    """The code under test: a tiny 'agent' that records, stops and saves."""
    replay = client.browsers.replays.start(browser_id)
    client.browsers.replays.stop(replay.replay_id, id=browser_id)
    return client.browsers.replays.download_to(path, replay.replay_id, id=browser_id).stat().st_size


def test_records_and_saves(kernel_sync_client: Kernel, kernel_browser: str, tmp_path: Path) -> None:
    size = record_and_save(kernel_sync_client, kernel_browser, str(tmp_path / "v.mp4"))
    assert size > 0


def test_survives_a_flaky_stop(
    kernel_fake: FakeKernel, kernel_browser: str, kernel_sync_client: Kernel, tmp_path: Path
) -> None:
    kernel_fake.fail("stop", status=503, times=2)  # two transient failures
    record_and_save(kernel_sync_client, kernel_browser, str(tmp_path / "v.mp4"))
    assert kernel_fake.count("stop") == 3  # retried, and no real waiting: testing switch is on
    assert kernel_fake.replays(kernel_browser)[0]["finished_at"] is not None
