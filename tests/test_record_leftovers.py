"""record() leaves nothing behind and swallows nothing: what a create or start whose
answer was lost made anyway is found and ended, a cancellation wins over a failing
entry, a browser already gone is no cleanup error, an unwritable save path is refused
before a browser is paid for, a client closed inside the block still cleans up; and the
async pager's plain `for` and repr. Over real sockets to the emulator."""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote

import anyio
import pytest

import kernel_async as ka
from kernel_async import AsyncKernel
from kernel_async._files import check_target
from kernel_async._models import BrowserPage, Replay
from kernel_async.resources import _params
from kernel_async.resources.browsers import pager_repr
from kernel_async.resources.recording import (
    LOOKUP_WAITS,
    lookup_waits,
    may_have_acted,
    new_recordings,
)
from kernel_async.testing import FakeKernel, sample_video

pytestmark = pytest.mark.anyio

TAG = _params.RECORD_TAG


def ops(fake: FakeKernel) -> list[str | None]:
    return [r.operation for r in fake.requests]


def created_tag(fake: FakeKernel) -> str:
    """The marking tag's value in the (first) create request's body."""
    (create,) = [r for r in fake.requests if r.operation == "create"][:1]
    value: str = json.loads(create.body)["tags"][TAG]
    return value


# -- 1. a create or start whose answer was lost ------------------------------------------


async def test_create_answer_lost_the_browser_made_anyway_is_deleted(
    client: AsyncKernel, fake: FakeKernel
) -> None:
    fake.fail("create", status=None, truncate=True)  # created; the answer is cut short
    with pytest.raises(ka.APIConnectionError) as info:
        async with client.browsers.record(save_to=None, tags={"team": "qa"}):
            pytest.fail("the body must not run")
    (made,) = fake.sessions("all")
    assert made["tags"] == {"team": "qa", TAG: created_tag(fake)}
    assert fake.sessions() == []  # deleted
    assert f"deleted the browser made anyway ({made['session_id']})" in str(info.value)
    assert ops(fake) == ["create", "list_browsers", "delete"]
    lookup = unquote(fake.requests[1].raw_path)
    assert f"tags[{TAG}]={created_tag(fake)}" in lookup


async def test_create_timed_out_the_browser_made_later_is_found_and_deleted(
    fake: FakeKernel,
) -> None:
    # The server creates the browser 1 s after the request, long after the client gave
    # up at 0.3 s: the first lookups find nothing, a later one finds it.
    fake.fail("create", status=None, delay=1.0)
    async with fake.client(timeout=0.3) as client:
        with pytest.raises(ka.APITimeoutError) as info:
            async with client.browsers.record(save_to=None):
                pytest.fail("the body must not run")
    (made,) = fake.sessions("all")
    assert fake.sessions() == []
    assert f"deleted the browser made anyway ({made['session_id']})" in str(info.value)
    assert fake.count("list_browsers") >= 2 and fake.count("create") == 1


async def test_create_answer_lost_nothing_made_says_so(
    client: AsyncKernel, fake: FakeKernel
) -> None:
    fake.fail("create", status=None, reset=True)  # dropped before the server acted
    with pytest.raises(ka.APIConnectionError, match="found no browser made by it"):
        async with client.browsers.record(save_to=None):
            pass
    assert fake.sessions("all") == []
    assert ops(fake) == ["create", "list_browsers"]


async def test_create_answer_lost_and_lookup_fails_names_what_to_end_by_hand(
    client: AsyncKernel, fake: FakeKernel
) -> None:
    fake.fail("create", status=None, truncate=True)
    fake.fail("list_browsers", status=500, times=None)
    with pytest.raises(ka.APIConnectionError) as info:
        async with client.browsers.record(save_to=None):
            pass
    text = str(info.value)
    assert "could not check" in text and f"tagged {TAG}={created_tag(fake)}" in text
    (left,) = fake.sessions()
    await client.browsers.delete(left["session_id"])


async def test_the_search_is_bounded_by_cleanup_timeout(
    client: AsyncKernel, fake: FakeKernel
) -> None:
    fake.fail("create", status=None, truncate=True)
    fake.fail("list_browsers", status=None, delay=30)  # a search that would take 30 s
    with pytest.raises(ka.APIConnectionError) as info:
        async with client.browsers.record(save_to=None, cleanup_timeout=0.3):
            pass
    text = str(info.value)
    assert "could not finish looking within 0.3s" in text
    assert f"look for a browser tagged {TAG}={created_tag(fake)}" in text
    (left,) = fake.sessions()
    await client.browsers.delete(left["session_id"])


async def test_given_browser_whose_replays_cannot_be_listed_is_still_recorded(
    client: AsyncKernel, fake: FakeKernel, tmp_path: Path
) -> None:
    bid = fake.create_browser()
    fake.fail("list", status=500, times=None)  # the precaution fails: the entry does not
    async with client.browsers.record(bid, save_to=tmp_path / "v.mp4") as rec:
        pass
    assert rec.path is not None
    fake.fail("start", status=None, truncate=True)
    with pytest.raises(ka.APIConnectionError, match=f"stop any recording of browser {bid}"):
        async with client.browsers.record(bid, save_to=None):
            pass


async def test_create_refused_looks_for_nothing(client: AsyncKernel, fake: FakeKernel) -> None:
    fake.fail("create", status=409)  # a refusal: nothing was made
    with pytest.raises(ka.ConflictError):
        async with client.browsers.record(save_to=None):
            pass
    assert ops(fake) == ["create"]


async def test_start_answer_lost_on_a_given_browser_stops_the_recording(
    client: AsyncKernel, fake: FakeKernel
) -> None:
    bid = fake.create_browser()
    earlier = await client.browsers.replays.start(bid)  # a finished recording of the caller's
    await client.browsers.replays.stop(earlier.replay_id, id=bid)
    fake.fail("start", status=None, truncate=True)  # started; the answer is cut short
    with pytest.raises(ka.APIConnectionError) as info:
        async with client.browsers.record(bid, save_to=None):
            pytest.fail("the body must not run")
    _, begun = fake.replays(bid)
    assert begun["finished_at"] is not None  # stopped
    assert f"stopped the recording begun anyway ({begun['replay_id']})" in str(info.value)
    assert bid in str(info.value)
    assert [s["session_id"] for s in fake.sessions()] == [bid]  # never deleted


async def test_start_answer_lost_leaves_the_callers_own_recording_running(
    client: AsyncKernel, fake: FakeKernel
) -> None:
    bid = fake.create_browser()
    theirs = await client.browsers.replays.start(bid)  # running before record() starts
    fake.fail("start", status=None, truncate=True)  # the 409 it answers is lost
    with pytest.raises(ka.APIConnectionError, match="found no recording begun by it"):
        async with client.browsers.record(bid, save_to=None):
            pass
    (replay,) = fake.replays(bid)
    assert replay["replay_id"] == theirs.replay_id and replay["finished_at"] is None
    assert "stop" not in ops(fake)


async def test_start_answer_lost_on_a_created_browser_deletes_it(
    client: AsyncKernel, fake: FakeKernel
) -> None:
    fake.fail("start", status=None, truncate=True)
    with pytest.raises(ka.APIConnectionError) as info:
        async with client.browsers.record(save_to=None):
            pass
    (made,) = fake.sessions("all")
    assert fake.sessions() == []
    assert fake.replays(made["session_id"])[0]["finished_at"] is not None
    assert f"deleted the browser it had created ({made['session_id']})" in str(info.value)


# -- 2. cancellation wins ----------------------------------------------------------------


async def test_cancelled_while_the_create_is_failing_ends_cancelled(
    client: AsyncKernel, fake: FakeKernel
) -> None:
    fake.fail("create", status=503, delay=0.3, times=None)  # in flight when cancelled
    task = asyncio.ensure_future(client.browsers.record(save_to=None).__aenter__())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert fake.sessions("all") == []


async def test_anyio_scope_cancelled_while_the_create_is_failing_moves_on(
    client: AsyncKernel, fake: FakeKernel
) -> None:
    fake.fail("create", status=503, delay=0.3, times=None)
    with anyio.move_on_after(0.1) as scope:
        async with client.browsers.record(save_to=None):
            pytest.fail("the body must not run")
    assert scope.cancelled_caught


# -- 3. a browser already gone -----------------------------------------------------------


async def test_browser_deleted_during_the_block_is_no_cleanup_error(
    client: AsyncKernel, fake: FakeKernel, tmp_path: Path
) -> None:
    async with client.browsers.record(save_to=tmp_path / "v.mp4") as rec:
        await client.browsers.delete(rec.browser.session_id)  # ended elsewhere
    assert rec.cleanup_errors == ()
    assert rec.path is not None and rec.path.read_bytes() == sample_video()


async def test_stop_finding_the_browser_gone_still_saves_the_video(
    client: AsyncKernel, fake: FakeKernel, tmp_path: Path
) -> None:
    # Kernel ended the browser (its recording stopped with it) and answers 404 for it,
    # while its replays stay downloadable.
    async with client.browsers.record(save_to=tmp_path / "v.mp4") as rec:
        await client.browsers.delete(rec.browser.session_id)
        fake.fail("stop", status=404)
        fake.fail("delete", status=404)
    assert rec.cleanup_errors == ()
    assert rec.path is not None and rec.path.read_bytes() == sample_video()
    tail = ops(fake)[ops(fake).index("stop") :]
    assert tail[0] == "stop" and "download" in tail and tail[-1] == "delete"


async def test_video_gone_is_an_error(
    client: AsyncKernel, fake: FakeKernel, tmp_path: Path
) -> None:
    target = tmp_path / "v.mp4"
    with pytest.raises(ka.NotFoundError, match=f"was not saved to {target}"):
        async with client.browsers.record(save_to=target) as rec:
            fake.fail("download", status=404, times=None)
    assert rec.path is None and not target.exists()
    assert fake.sessions() == []


# -- 4. a save path that cannot be written -------------------------------------------------


@pytest.fixture
def unwritable() -> Iterator[Path]:
    """A directory that exists and where no file can be created (root included)."""
    if os.geteuid() != 0:
        with tempfile.TemporaryDirectory() as name:
            os.chmod(name, 0o555)
            try:
                yield Path(name)
            finally:
                os.chmod(name, 0o755)
        return
    where = Path("/sys/kernel")  # sysfs: not even root creates files there
    try:
        fd, tmp = tempfile.mkstemp(dir=where)
    except OSError:
        yield where
    else:  # pragma: no cover - an unusual system
        os.close(fd)
        os.unlink(tmp)
        pytest.skip("no directory here refuses new files")


async def test_unwritable_save_to_is_refused_before_a_browser_is_created(
    client: AsyncKernel, fake: FakeKernel, unwritable: Path
) -> None:
    target = unwritable / "run.mp4"
    with pytest.raises(OSError, match=re.escape(f"no file can be created in {unwritable}")) as info:
        client.browsers.record(save_to=target)
    assert info.value.filename == str(target) and ".part" not in str(info.value)
    assert str(unwritable) in str(info.value)
    assert fake.requests == []


async def test_unwritable_download_to_target_is_refused_before_the_request(
    client: AsyncKernel, fake: FakeKernel, browser: str, unwritable: Path
) -> None:
    target = unwritable / "v.mp4"
    with pytest.raises(OSError, match=re.escape(f"no file can be created in {unwritable}")) as info:
        await client.browsers.replays.download_to(target, "r1", id=browser)
    assert info.value.filename == str(target) and ".part" not in str(info.value)
    assert fake.requests == []


async def test_the_probe_leaves_nothing_and_long_names_still_save(
    client: AsyncKernel, fake: FakeKernel, tmp_path: Path
) -> None:
    client.browsers.record(save_to=tmp_path / "v.mp4")
    assert list(tmp_path.iterdir()) == []
    long = tmp_path / ("n" * 250 + ".mp4")  # fits the file system; ".<it>.XXXX.part" would not
    async with client.browsers.record(save_to=long) as rec:
        pass
    assert rec.path == long and long.read_bytes() == sample_video()
    assert list(tmp_path.iterdir()) == [long]


def test_a_failed_commit_names_the_callers_path(tmp_path: Path) -> None:
    from kernel_async._files import AtomicFile

    target = tmp_path / "v.mp4"
    out = AtomicFile(target)
    target.mkdir()  # a directory appears where the video goes: the rename fails
    with pytest.raises(OSError, match="the video could not be saved") as info:
        out.commit()
    out.discard()
    assert info.value.filename == str(target) and ".part" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


# -- 5. the client closed inside the block -------------------------------------------------


async def test_client_closed_inside_the_block_still_cleans_up(
    fake: FakeKernel, tmp_path: Path
) -> None:
    client = fake.client()
    async with client.browsers.record(save_to=tmp_path / "v.mp4") as rec:
        await client.close()
    assert client.is_closed and rec.cleanup_errors == ()
    assert rec.path is not None and rec.path.read_bytes() == sample_video()
    assert fake.sessions() == []


async def test_closed_client_whose_cleanup_fails_names_the_browser_left_running(
    fake: FakeKernel, tmp_path: Path
) -> None:
    client = fake.client(max_retries=0)
    fake.fail("delete", status=500)  # the fresh connection's delete fails too
    with pytest.raises(ka.InternalServerError) as info:
        async with client.browsers.record(save_to=None) as rec:
            await client.close()
    bid = rec.browser.session_id
    assert f"browser {bid} may still be running: delete it by hand" in str(info.value)
    async with fake.client() as other:
        await other.browsers.delete(bid)


# -- 6. ~ in a save path ---------------------------------------------------------------


async def test_tilde_is_expanded(
    client: AsyncKernel,
    fake: FakeKernel,
    browser: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    async with client.browsers.record(save_to="~/rec.mp4") as rec:
        pass
    assert rec.path == tmp_path / "rec.mp4" and rec.path.read_bytes() == sample_video()
    replay = await client.browsers.replays.start(browser)
    await client.browsers.replays.stop(replay.replay_id, id=browser)
    got = await client.browsers.replays.download_to("~/dl.mp4", replay.replay_id, id=browser)
    assert got == tmp_path / "dl.mp4" and got.read_bytes() == sample_video()
    assert not Path("~").exists()


# -- 7. the async pager -------------------------------------------------------------------


async def test_async_pager_refuses_plain_for_and_has_a_repr(
    client: AsyncKernel, fake: FakeKernel
) -> None:
    for _ in range(3):
        fake.create_browser(tags={"team": "qa"})
    pager = client.browsers.list(tags={"team": "qa"}, limit=2)
    with pytest.raises(TypeError, match="async for"):
        for _ in pager:  # type: ignore[attr-defined]
            pass
    with pytest.raises(TypeError, match="async for"):
        list(pager)  # type: ignore[call-overload]
    assert repr(pager) == (
        "<AsyncBrowserPager of browsers (tags[team]='qa' limit='2'): first page not fetched yet>"
    )
    await pager
    assert repr(pager) == (
        "<AsyncBrowserPager of browsers (tags[team]='qa' limit='2'): "
        "first page: 2 browsers, more from offset 2>"
    )
    assert fake.api_key not in repr(pager)
    assert len([b async for b in pager]) == 3


def test_sync_pager_repr(threaded_fake: FakeKernel) -> None:
    from kernel_sync import Kernel

    threaded_fake.create_browser()
    with Kernel(api_key=threaded_fake.api_key, base_url=threaded_fake.base_url) as k:
        pager = k.browsers.list(status="all", offset=0)
        assert repr(pager) == (
            "<BrowserPager of browsers (status='all'): first page: 1 browser, no more>"
        )
        assert len(list(pager)) == 1


# -- the sync twin ------------------------------------------------------------------------


def test_sync_twin_cleans_up_after_a_lost_create_answer(threaded_fake: FakeKernel) -> None:
    from kernel_sync import Kernel

    threaded_fake.fail("create", status=None, truncate=True)
    with Kernel(api_key=threaded_fake.api_key, base_url=threaded_fake.base_url) as k:
        with pytest.raises(ka.APIConnectionError, match="deleted the browser made anyway"):
            with k.browsers.record(save_to=None):
                pass
    assert len(threaded_fake.sessions("all")) == 1 and threaded_fake.sessions() == []


# -- the pure rules -----------------------------------------------------------------------


def _status(code: int) -> ka.APIStatusError:
    return ka.APIStatusError("x", status_code=code, error=None, headers={})


@pytest.mark.parametrize(
    ("exc", "acted"),
    [
        (ka.APIConnectionError("reset"), True),
        (ka.APITimeoutError("slow"), True),
        (ka.APIResponseValidationError("bad", status_code=200), True),
        (_status(502), True),
        (_status(400), False),
        (_status(409), False),
        (ka.KernelError("this client is closed"), False),
        (ValueError("framerate"), False),
    ],
)
def test_may_have_acted(exc: Exception, acted: bool) -> None:
    assert may_have_acted(exc) is acted


def test_lookup_waits_and_new_recordings() -> None:
    assert lookup_waits(ka.APIConnectionError("reset")) == (0.0,)
    assert lookup_waits(ka.APITimeoutError("slow")) == (0.0, *LOOKUP_WAITS)
    now = datetime.now(timezone.utc)
    old, done, new = Replay("old"), Replay("done", now, now), Replay("new")
    assert new_recordings([old, done, new], {"old", "done"}) == [new]
    assert new_recordings([done], ()) == []


def test_with_tag() -> None:
    body = _params.with_tag({"tags": {"a": "1"}}, "m", "v")
    assert body == {"tags": {"a": "1", "m": "v"}}
    assert _params.with_tag({}, "m", "v") == {"tags": {"m": "v"}}
    assert _params.with_tag({"tags": None}, "m", "v") == {"tags": {"m": "v"}}
    full = {"tags": {str(i): "" for i in range(_params.MAX_TAGS)}}
    with pytest.raises(ValueError, match="at most 49 tags"):
        _params.with_tag(full, "m", "v")
    with pytest.raises(TypeError, match="tags"):
        _params.with_tag({"tags": ["x"]}, "m", "v")


def test_full_tags_refused_by_record_before_anything_is_sent() -> None:
    client = AsyncKernel(api_key="k", base_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="at most 49 tags"):
        client.browsers.record(tags={str(i): "" for i in range(50)}, save_to=None)
    # extra_body's tags win over the keyword, and the marking tag is added after them
    rec = client.browsers.record(extra_body={"tags": {"x": "y"}}, tags={"a": "b"}, save_to=None)
    assert rec._create is not None and rec._create["tags"] == {"x": "y", TAG: rec._mark}


def test_pager_repr() -> None:
    unfetched = "<P of browsers (no filters): first page not fetched yet>"
    assert pager_repr("P", [], 0, None) == unfetched
    page = BrowserPage([], False, None)
    assert pager_repr("P", [("query", "a b")], 40, page) == (
        "<P of browsers (query='a b', from offset 40): first page: 0 browsers, no more>"
    )


def test_check_target_expands_and_probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_target("~/x.mp4") == tmp_path / "x.mp4"
    assert list(tmp_path.iterdir()) == []
