"""download waits through 202; download_to is atomic and leaves no debris."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import kernel_async as ka
from kernel_async import AsyncKernel, Timeout, set_testing
from kernel_async.testing import FakeKernel, sample_video
from tests.scripted import ScriptedServer, hang, json_error, reset, respond, slow_body, truncated

pytestmark = pytest.mark.anyio

VIDEO = sample_video()


def kernel(srv: ScriptedServer, **kw: object) -> AsyncKernel:
    return AsyncKernel(api_key="k", base_url=srv.base_url, **kw)  # type: ignore[arg-type]


def debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_sample_video_is_a_real_mp4() -> None:
    assert VIDEO[4:8] == b"ftyp"
    assert b"moov" in VIDEO and b"avc1" in VIDEO
    if shutil.which("ffprobe"):
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", "-"],
            input=VIDEO,
            capture_output=True,
            check=True,
        )
        assert out.stdout.strip() == b"h264"


async def test_download_waits_through_202_with_retry_after() -> None:
    script = [
        respond(202, headers={"Retry-After": "1"}),
        respond(202, headers={"Retry-After": "1"}),
        respond(200, VIDEO, {"Content-Type": "video/mp4"}),
    ]
    async with ScriptedServer(script) as srv:
        async with kernel(srv, max_retries=0) as c:
            with set_testing(False):
                t0 = time.monotonic()
                data = await c.browsers.replays.download("r", id="b")
                elapsed = time.monotonic() - t0
    assert data == VIDEO
    assert len(srv.received) == 3  # polls are not retries: max_retries=0 still waits
    assert 1.9 < elapsed < 6
    assert srv.received[0].headers["accept"] == "video/mp4"


async def test_download_202_bounded_by_deadline() -> None:
    async with ScriptedServer([respond(202, headers={"Retry-After": "1"})]) as srv:
        async with kernel(srv, timeout=Timeout(total=1.5)) as c:
            with set_testing(False):
                t0 = time.monotonic()
                with pytest.raises(ka.APITimeoutError, match="finalised"):
                    await c.browsers.replays.download("r", id="b")
                assert time.monotonic() - t0 < 3
    assert len(srv.received) == 2  # at 0 s and 1 s; a third poll at 2 s would pass 1.5 s


async def test_download_on_emulator_through_finalising(tmp_path: Path) -> None:
    async with FakeKernel(finalise_seconds=0.3) as fake, fake.client() as c:
        b = fake.create_browser()
        r = await c.browsers.replays.start(b)
        await c.browsers.replays.stop(r.replay_id, id=b)
        out = await c.browsers.replays.download_to(tmp_path / "v.mp4", r.replay_id, id=b)
    assert out == tmp_path / "v.mp4"
    assert out.read_bytes() == VIDEO
    assert fake.count("download") >= 2  # at least one 202 first
    assert debris(tmp_path) == []


async def test_download_to_writes_exact_bytes_and_mode(tmp_path: Path) -> None:
    async with ScriptedServer([respond(200, VIDEO)]) as srv:
        async with kernel(srv) as c:
            out = await c.browsers.replays.download_to(str(tmp_path / "a.mp4"), "r", id="b")
    assert out.read_bytes() == VIDEO
    assert out.stat().st_mode & 0o777 == 0o644
    assert debris(tmp_path) == []


async def test_truncated_body_retried_from_scratch(tmp_path: Path) -> None:
    async with ScriptedServer([truncated(VIDEO), reset(), respond(200, VIDEO)]) as srv:
        async with kernel(srv, max_retries=3) as c:
            out = await c.browsers.replays.download_to(tmp_path / "v.mp4", "r", id="b")
    assert out.read_bytes() == VIDEO  # not the half body followed by the whole one
    assert debris(tmp_path) == []


async def test_on_start_reports_the_size_after_finalising_and_on_each_restart(
    tmp_path: Path,
) -> None:
    script = [
        respond(202, headers={"Retry-After": "0"}),
        truncated(VIDEO),
        respond(200, VIDEO, {"Content-Type": "video/mp4"}),
    ]
    events: list[tuple[str, int | None]] = []
    async with ScriptedServer(script) as srv:
        async with kernel(srv, max_retries=2) as c:
            await c.browsers.replays.download_to(
                tmp_path / "v.mp4",
                "r",
                id="b",
                progress=lambda n: events.append(("progress", n)),
                on_start=lambda total: events.append(("start", total)),
            )
    starts = [e for e in events if e[0] == "start"]
    assert starts == [("start", len(VIDEO)), ("start", len(VIDEO))]  # after the 202; on retry
    assert events[0] == ("start", len(VIDEO))  # nothing before the video starts to arrive
    assert events[-1] == ("progress", len(VIDEO))


@pytest.mark.parametrize(
    "action",
    [truncated(VIDEO), json_error(404), json_error(503), reset()],
    ids=["truncated", "404", "503", "reset"],
)
async def test_failure_leaves_target_untouched(tmp_path: Path, action: object) -> None:
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"old video")
    async with ScriptedServer([action]) as srv:  # type: ignore[list-item]
        async with kernel(srv, max_retries=1) as c:
            with pytest.raises(ka.APIError):
                await c.browsers.replays.download_to(target, "r", id="b")
    assert target.read_bytes() == b"old video"
    assert debris(tmp_path) == []


async def test_cancel_mid_body_leaves_no_debris(tmp_path: Path) -> None:
    async with ScriptedServer([slow_body(VIDEO, 30)]) as srv:
        async with kernel(srv) as c:
            task = asyncio.ensure_future(
                c.browsers.replays.download_to(tmp_path / "v.mp4", "r", id="b")
            )
            while not srv.received:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            assert len(debris(tmp_path)) == 1  # streaming into the temporary file
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert list(tmp_path.iterdir()) == []


async def test_download_to_bad_target_fails_before_io(tmp_path: Path) -> None:
    async with ScriptedServer([hang()]) as srv:
        async with kernel(srv) as c:
            with pytest.raises(FileNotFoundError) as missing:
                await c.browsers.replays.download_to(tmp_path / "no" / "v.mp4", "r", id="b")
            assert missing.value.filename == str(tmp_path / "no")  # not the .part name
            with pytest.raises(IsADirectoryError):
                await c.browsers.replays.download_to(tmp_path, "r", id="b")
            with pytest.raises(TypeError, match="path"):
                await c.browsers.replays.download_to(5, "r", id="b")  # type: ignore[arg-type]
    assert srv.received == []


async def test_existing_target_mode_kept(tmp_path: Path) -> None:
    target = tmp_path / "v.mp4"
    target.write_bytes(b"old")
    target.chmod(0o600)
    async with ScriptedServer([respond(200, VIDEO)]) as srv:
        async with kernel(srv) as c:
            await c.browsers.replays.download_to(target, "r", id="b")
    assert target.read_bytes() == VIDEO and target.stat().st_mode & 0o777 == 0o600


async def test_download_recording_replay_is_400_not_a_hang(fake: FakeKernel) -> None:
    b = fake.create_browser()
    async with fake.client() as c:
        r = await c.browsers.replays.start(b)
        with pytest.raises(ka.BadRequestError):
            await c.browsers.replays.download(r.replay_id, id=b)


async def test_error_body_of_a_download_is_bounded() -> None:
    # Promise 4 MiB, send 100 KiB, then stall: only a bounded read returns (an unbounded
    # one would wait for the rest until the timeout).
    async def stalled_error(w: asyncio.StreamWriter, r: object) -> bool:
        w.write(b"HTTP/1.1 500 X\r\nContent-Length: 4194304\r\n\r\n" + b"x" * 100_000)
        await w.drain()
        await asyncio.sleep(30)
        return False

    async with ScriptedServer([stalled_error]) as srv:
        async with kernel(srv, max_retries=0, timeout=10) as c:
            t0 = time.monotonic()
            with pytest.raises(ka.InternalServerError) as info:
                await c.browsers.replays.download("r", id="b")
            assert time.monotonic() - t0 < 5
    assert isinstance(info.value.body, str) and len(info.value.body) <= 2000


async def test_special_files_are_refused_and_symlinks_written_through(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    real = tmp_path / "real.mp4"
    real.write_bytes(b"old")
    link = tmp_path / "link.mp4"
    link.symlink_to(real)
    async with ScriptedServer([respond(200, VIDEO)]) as srv:
        async with kernel(srv) as c:
            with pytest.raises(ValueError, match="not a regular file"):
                await c.browsers.replays.download_to(fifo, "r", id="b")
            assert srv.received == []  # refused before any request
            await c.browsers.replays.download_to(link, "r", id="b")
    assert fifo.is_fifo()  # untouched
    assert link.is_symlink() and real.read_bytes() == VIDEO
    assert debris(tmp_path) == []
