"""client.browsers.record(): the recorded session, and its ugly paths. Every test ends by
asking the emulator which browsers are left: none that the helper created."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import kernel_async as ka
from kernel_async import AsyncKernel
from kernel_async.testing import FakeKernel, sample_video
from tests.interrupt import ctrl_c_after

pytestmark = pytest.mark.anyio


def ops(fake: FakeKernel) -> list[str | None]:
    """The operations received, with repeated download polls collapsed."""
    out: list[str | None] = []
    for r in fake.requests:
        if not (out and out[-1] == r.operation == "download"):
            out.append(r.operation)
    return out


async def test_recorded_session_end_to_end(
    client: AsyncKernel, fake: FakeKernel, tmp_path: Path
) -> None:
    target = tmp_path / "run.mp4"
    async with client.browsers.record(save_to=target, name="rec", tags={"k": "v"}) as rec:
        assert rec.created and rec.path is None
        assert rec.browser.name == "rec" and not rec.browser.headless
        assert fake.sessions()[0]["session_id"] == rec.browser.session_id
        assert fake.replays(rec.browser.session_id)[0]["replay_id"] == rec.replay.replay_id
    assert rec.path == target and target.read_bytes() == sample_video()
    assert rec.cleanup_errors == ()
    assert ops(fake) == ["create", "start", "stop", "download", "delete"]
    assert fake.sessions() == []
    assert list(tmp_path.iterdir()) == [target]  # no debris


async def test_body_exception_wins_and_cleanup_still_runs(
    client: AsyncKernel, fake: FakeKernel, tmp_path: Path
) -> None:
    with pytest.raises(LookupError, match="agent failed") as info:
        async with client.browsers.record(save_to=tmp_path / "v.mp4"):
            raise LookupError("agent failed")
    assert getattr(info.value, "__notes__", []) == []
    assert (tmp_path / "v.mp4").read_bytes() == sample_video()
    assert fake.sessions() == []


@pytest.mark.parametrize("how", ["task.cancel", "wait_for", "anyio scope"])
async def test_body_cancelled_cleanup_is_shielded(
    client: AsyncKernel, fake: FakeKernel, tmp_path: Path, how: str
) -> None:
    entered = asyncio.Event()
    recs = []

    async def agent() -> None:
        async with client.browsers.record(save_to=tmp_path / "v.mp4") as rec:
            recs.append(rec)
            entered.set()
            await asyncio.sleep(60)

    if how == "anyio scope":
        with anyio.move_on_after(0.2):
            await agent()
    elif how == "wait_for":
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(agent(), 0.2)
    else:
        task = asyncio.ensure_future(agent())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert recs[0].path == tmp_path / "v.mp4"
    assert ops(fake) == ["create", "start", "stop", "download", "delete"]
    assert fake.sessions() == []


async def test_cancelled_while_creating_still_deletes(
    client: AsyncKernel, fake: FakeKernel
) -> None:
    fake.fail("create", status=None, delay=0.3)  # the create is in flight when cancelled
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(client.browsers.record(save_to=None).__aenter__(), 0.1)
    assert "delete" in ops(fake)
    assert fake.sessions() == []


async def test_stop_fails(client: AsyncKernel, fake: FakeKernel, tmp_path: Path) -> None:
    fake.fail("stop", status=500, times=None)
    target = tmp_path / "v.mp4"
    with pytest.raises(ka.InternalServerError) as info:
        async with client.browsers.record(save_to=target) as rec:
            pass
    assert rec.cleanup_errors == (info.value,)
    assert not target.exists() and rec.path is None
    assert ops(fake)[-2:] == ["stop", "delete"]  # no download of a video never stopped
    assert fake.sessions() == []


async def test_stop_fails_under_a_body_exception_becomes_a_note(
    client: AsyncKernel, fake: FakeKernel, tmp_path: Path
) -> None:
    fake.fail("stop", status=500, times=None)
    with pytest.raises(KeyError) as info:
        async with client.browsers.record(save_to=tmp_path / "v.mp4"):
            raise KeyError("body")
    (note,) = info.value.__notes__
    assert "cleaning up the recorded session" in note and "InternalServerError" in note
    assert fake.sessions() == []


async def test_download_fails_browser_still_deleted(
    client: AsyncKernel, fake: FakeKernel, tmp_path: Path
) -> None:
    fake.fail("download", status=500, times=None)
    with pytest.raises(ka.InternalServerError):
        async with client.browsers.record(save_to=tmp_path / "v.mp4"):
            pass
    assert list(tmp_path.iterdir()) == []
    assert ops(fake)[-1] == "delete"
    assert fake.sessions() == []


async def test_delete_fails(client: AsyncKernel, fake: FakeKernel, tmp_path: Path) -> None:
    fake.fail("delete", status=503, times=2)  # transient: the retries get it deleted
    async with client.browsers.record(save_to=tmp_path / "a.mp4"):
        pass
    assert fake.count("delete") == 3 and fake.sessions() == []

    fake.fail("delete", status=500, times=None)
    with pytest.raises(ka.InternalServerError) as info:
        async with client.browsers.record(save_to=tmp_path / "b.mp4") as rec:
            pass
    assert rec.path == tmp_path / "b.mp4"  # the video was saved before the delete failed
    assert rec.cleanup_errors == (info.value,)
    fake.clear_faults()
    await client.browsers.delete(rec.browser.session_id)
    assert fake.sessions() == []


async def test_every_cleanup_step_failing_reports_all(
    client: AsyncKernel, fake: FakeKernel, tmp_path: Path
) -> None:
    fake.fail("stop", status=500, times=None)
    fake.fail("delete", status=500, times=None)
    with pytest.raises(ka.InternalServerError) as info:
        async with client.browsers.record(save_to=tmp_path / "v.mp4") as rec:
            pass
    assert len(rec.cleanup_errors) == 2 and rec.cleanup_errors[0] is info.value
    assert any("cleaning up" in n for n in info.value.__notes__)
    fake.clear_faults()
    await client.browsers.delete(rec.browser.session_id)


async def test_cleanup_is_bounded_in_time(
    client: AsyncKernel, fake: FakeKernel, tmp_path: Path
) -> None:
    fake.fail("download", status=None, delay=30)  # a download that would take 30 s
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"over 0\.5s"):
        async with client.browsers.record(save_to=tmp_path / "v.mp4", cleanup_timeout=0.5):
            pass
    assert time.monotonic() - t0 < 5
    assert fake.sessions() == []  # the delete has its own bound
    assert list(tmp_path.iterdir()) == []


async def test_given_browser_is_never_deleted(
    client: AsyncKernel, fake: FakeKernel, tmp_path: Path
) -> None:
    bid = fake.create_browser(name="mine")
    async with client.browsers.record("mine", save_to=tmp_path / "v.mp4") as rec:
        assert not rec.created and rec.browser.session_id == bid
    assert "delete" not in ops(fake) and rec.path is not None
    assert [s["session_id"] for s in fake.sessions()] == [bid]
    with pytest.raises(ValueError, match="name"):
        client.browsers.record("mine", name="other")


async def test_start_refused_deletes_the_created_browser(
    client: AsyncKernel, fake: FakeKernel
) -> None:
    with pytest.raises(ka.BadRequestError, match="GPU"):
        async with client.browsers.record(save_to=None, framerate=30):
            pytest.fail("the body must not run")
    assert ops(fake) == ["create", "start", "delete"]
    assert fake.sessions() == []


async def test_bad_arguments_refused_before_anything_is_sent(
    client: AsyncKernel, fake: FakeKernel
) -> None:
    for name, value in (("framerate", 0), ("timeout_seconds", 1), ("cleanup_timeout", 0)):
        with pytest.raises(ValueError, match=name):
            client.browsers.record(**{name: value})  # type: ignore[arg-type]
    rec = client.browsers.record()
    with pytest.raises(RuntimeError, match="enter"):
        _ = rec.browser
    assert fake.requests == []


# -- the sync twin ----------------------------------------------------------------------


@pytest.fixture
def sync_fake() -> Iterator[FakeKernel]:
    with FakeKernel.in_thread(finalise_seconds=0.05) as server:
        yield server


def test_sync_twin(sync_fake: FakeKernel, tmp_path: Path) -> None:
    from kernel_sync import Kernel

    with Kernel(api_key=sync_fake.api_key, base_url=sync_fake.base_url) as k:
        with k.browsers.record(save_to=tmp_path / "v.mp4") as rec:
            assert rec.browser.session_id == sync_fake.sessions()[0]["session_id"]
        assert rec.path is not None and rec.path.read_bytes() == sample_video()
        with pytest.raises(ZeroDivisionError):
            with k.browsers.record(save_to=tmp_path / "w.mp4"):
                _ = 1 / 0
        assert (tmp_path / "w.mp4").exists()
    assert sync_fake.sessions() == []


def test_sync_ctrl_c_cleans_up(sync_fake: FakeKernel, tmp_path: Path) -> None:
    target = tmp_path / "ctrl-c.mp4"
    code = textwrap.dedent(
        f"""
        import sys, time
        from kernel_sync import Kernel
        k = Kernel(api_key={sync_fake.api_key!r}, base_url={sync_fake.base_url!r})
        try:
            with k.browsers.record(save_to={str(target)!r}) as rec:
                print("recording", rec.browser.session_id, flush=True)
                time.sleep(60)
        except KeyboardInterrupt:
            print("interrupted", rec.path, flush=True)
            sys.exit(130)
        """
    )
    code_, out, err = ctrl_c_after(code, "recording")
    assert code_ == 130, err
    assert f"interrupted {target}" in out
    assert target.read_bytes() == sample_video()
    assert sync_fake.sessions() == []
