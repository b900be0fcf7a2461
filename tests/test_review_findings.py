"""Defects an adversarial review found after the engine rebuild, each held here over
real sockets: user sessions with settings of their own, close() during waits, and
what the sync runtime does after its client or loop is gone."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

import kernel_async as ka
from kernel_async import AsyncKernel, Timeout
from kernel_async.testing import FakeKernel
from tests.interrupt import run_script
from tests.scripted import Action, ScriptedServer, json_error, respond

pytestmark = pytest.mark.anyio


async def test_user_session_raising_for_status_still_gives_typed_errors() -> None:
    script = [json_error(404), json_error(503), respond(200)]
    async with ScriptedServer(script) as srv, aiohttp.ClientSession(raise_for_status=True) as s:
        async with AsyncKernel(api_key="k", base_url=srv.base_url, session=s) as c:
            with pytest.raises(ka.NotFoundError):
                await c.browsers.replays.stop("r", id="b")
            await c.browsers.replays.stop("r", id="b")  # the 503 is retried
    assert len(srv.received) == 3


async def test_user_session_with_its_own_credentials_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("default login bob password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    async with ScriptedServer([respond(200)]) as srv:
        async with aiohttp.ClientSession(trust_env=True) as s:
            async with AsyncKernel(api_key="k", base_url=srv.base_url, session=s) as c:
                with pytest.raises(ka.APIConnectionError, match="credentials of its own") as info:
                    await c.browsers.replays.stop("r", id="b")
    assert "hunter2" not in str(info.value)
    assert srv.received == []


@pytest.mark.parametrize(
    ("answer", "operation"),
    [
        (json_error(503, **{"Retry-After": "20"}), "stop"),
        (respond(202, headers={"Retry-After": "20"}), "download"),
    ],
    ids=["waiting-to-retry", "polling-for-the-video"],
)
async def test_close_wakes_a_waiting_call(answer: Action, operation: str) -> None:
    async with ScriptedServer([answer]) as srv:
        c = AsyncKernel(api_key="k", base_url=srv.base_url)
        call = getattr(c.browsers.replays, operation)
        with ka.set_testing(False):
            task = asyncio.ensure_future(call("r", id="b"))
            while not srv.received:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            t0 = time.monotonic()
            await c.close()
            with pytest.raises(ka.APIConnectionError, match="closed"):
                await task
            assert time.monotonic() - t0 < 2  # not the 20 s the server asked for


def test_sync_close_from_another_thread_is_prompt_during_a_retry_wait(
    threaded_fake: FakeKernel,
) -> None:
    import threading

    from kernel_sync import Kernel

    b = threaded_fake.create_browser()
    threaded_fake.fail("list", status=503, times=None, retry_after=20)
    k = Kernel(api_key=threaded_fake.api_key, base_url=threaded_fake.base_url)
    errors: list[BaseException] = []

    def call() -> None:
        with ka.set_testing(False):
            try:
                k.browsers.replays.list(b)
            except BaseException as exc:
                errors.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    while threaded_fake.count("list") < 1:
        time.sleep(0.01)
    time.sleep(0.05)
    t0 = time.monotonic()
    k.close()
    worker.join(10)
    assert time.monotonic() - t0 < 2
    assert len(errors) == 1 and isinstance(errors[0], ka.APIConnectionError)


async def test_record_into_a_missing_directory_is_refused_before_anything_is_created(
    tmp_path: Path,
) -> None:
    async with FakeKernel() as fake, fake.client() as c:
        with pytest.raises(FileNotFoundError, match="no such directory"):
            async with c.browsers.record(save_to=tmp_path / "missing" / "run.mp4"):
                raise AssertionError("the body must not run")
        with pytest.raises(IsADirectoryError):
            async with c.browsers.record(save_to=tmp_path):
                raise AssertionError("the body must not run")
        assert fake.count("create") == 0 and fake.sessions() == []


async def test_record_cleanup_is_bounded_by_its_own_timeout_not_the_clients_deadline(
    tmp_path: Path,
) -> None:
    async with FakeKernel(finalise_seconds=1.5) as fake:
        async with fake.client(timeout=Timeout(10.0, total=1.0)) as c:
            async with c.browsers.record(save_to=tmp_path / "v.mp4", cleanup_timeout=30) as rec:
                pass
            assert rec.path is not None and rec.path.stat().st_size > 0
        assert fake.sessions() == []


def test_sync_call_after_the_exit_finalizer_is_a_clear_error(threaded_fake: FakeKernel) -> None:
    # A user's atexit handler registered before the client runs after its finalizer.
    b = threaded_fake.create_browser()
    out = run_script(
        f"""
        import atexit
        from kernel_sync import Kernel, KernelError
        box = {{}}
        def late():
            try:
                box["k"].browsers.replays.list({b!r})
            except KernelError as exc:
                print("KernelError", "closed" in str(exc))
        atexit.register(late)
        box["k"] = Kernel(api_key={threaded_fake.api_key!r}, base_url={threaded_fake.base_url!r})
        box["k"].browsers.replays.list({b!r})
        """
    )
    assert out.stdout.strip() == "KernelError True", (out.stdout, out.stderr)
    assert "never awaited" not in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_forked_child_that_never_calls_prints_nothing(threaded_fake: FakeKernel) -> None:
    b = threaded_fake.create_browser()
    out = run_script(
        f"""
        import os, sys
        from kernel_sync import Kernel
        k = Kernel(api_key={threaded_fake.api_key!r}, base_url={threaded_fake.base_url!r})
        k.browsers.replays.list({b!r})
        pid = os.fork()
        if pid == 0:
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        k.close()
        print("child", os.waitstatus_to_exitcode(status))
        """
    )
    assert out.stdout.strip() == "child 0", out.stderr
    assert out.stderr == "", out.stderr


def test_leaving_a_sync_listing_after_close_prints_nothing(threaded_fake: FakeKernel) -> None:
    for _ in range(3):
        threaded_fake.create_browser()
    out = run_script(
        f"""
        from kernel_sync import Kernel
        k = Kernel(api_key={threaded_fake.api_key!r}, base_url={threaded_fake.base_url!r})
        for b in k.browsers.list(limit=1):
            k.close()
            break
        k2 = Kernel(api_key={threaded_fake.api_key!r}, base_url={threaded_fake.base_url!r})
        left_open = iter(k2.browsers.list(limit=1))
        next(left_open)
        print("done")
        """
    )
    assert out.stdout.strip() == "done", out.stderr
    assert out.stderr == "", out.stderr


async def test_emulator_stopped_under_a_delayed_request_logs_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with FakeKernel() as fake:
        b = fake.create_browser()
        fake.fail("list", status=None, delay=0.5)
        async with fake.client(timeout=0.1, max_retries=0) as c:
            with pytest.raises(ka.APITimeoutError):
                await c.browsers.replays.list(b)
    await asyncio.sleep(0.6)
    assert "Error handling request" not in caplog.text


def test_proxy_and_base_url_secrets_stay_out_of_errors() -> None:
    with pytest.raises(ValueError, match="proxy") as info:
        AsyncKernel(api_key="k", proxy="socks5://bob:hunter2@proxy:1080")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ValueError, match="base_url") as info:
        AsyncKernel(api_key="k", base_url="https://api.example.com/?token=s3cret")
    assert "s3cret" not in str(info.value)


def test_socks_proxy_in_the_environment_is_not_spoken_http_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kernel_async._config import env_proxy

    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    assert env_proxy("https://api.example.com") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert env_proxy("https://api.example.com") == "http://127.0.0.1:3128"
