"""Construction, options, session ownership and the replay lifecycle on the emulator."""

from __future__ import annotations

import warnings
from datetime import timezone

import aiohttp
import pytest

from kernel_async import (
    AsyncKernel,
    ConflictError,
    KernelError,
    KernelSecurityWarning,
    NotFoundError,
    Replay,
    Timeout,
)
from kernel_async.testing import FakeKernel

pytestmark = pytest.mark.anyio


def test_missing_key_names_env_var() -> None:
    with pytest.raises(KernelError, match="KERNEL_API_KEY"):
        AsyncKernel()


def test_env_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERNEL_API_KEY", "env-key")
    assert AsyncKernel().base_url == "https://api.onkernel.com"
    monkeypatch.setenv("KERNEL_BASE_URL", "http://127.0.0.1:9/v1/")
    assert AsyncKernel().base_url == "http://127.0.0.1:9/v1"
    assert AsyncKernel(base_url="https://example.test").base_url == "https://example.test"


def test_the_official_environment_names_pick_the_api_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KERNEL_BASE_URL", "https://from-env.test")
    # As the official client resolves it: base_url first, then environment (over
    # KERNEL_BASE_URL), then KERNEL_BASE_URL, then production.
    assert AsyncKernel(api_key="k", environment="development").base_url == (
        "https://localhost:3001"
    )
    assert AsyncKernel(api_key="k", environment="production", base_url=None).base_url == (
        "https://api.onkernel.com"
    )
    both = AsyncKernel(api_key="k", base_url="https://x.test", environment="development")
    assert both.base_url == "https://x.test"
    assert AsyncKernel(api_key="k").base_url == "https://from-env.test"
    with pytest.raises(ValueError, match="environment must be 'production' or 'development'"):
        AsyncKernel(api_key="k", environment="staging")  # type: ignore[arg-type]


def test_api_key_and_copy_as_the_official_client_has_them() -> None:
    client = AsyncKernel(api_key="sk-secret", base_url="https://x.test")
    assert client.api_key == "sk-secret" and "sk-secret" not in repr(client)
    copied = client.copy(max_retries=7)
    assert copied.max_retries == 7 and copied.api_key == "sk-secret"
    scoped = client.copy(project_id="p2", environment="development")
    assert (scoped.project_id, scoped.project, scoped.base_url) == (
        "p2",
        None,
        "https://localhost:3001",
    )
    assert scoped.with_options(project="named").project_id == "p2"  # kept unless given


async def test_project_scope_is_sent_as_headers(fake: FakeKernel) -> None:
    b = fake.create_browser()
    async with fake.client(project_id="proj_1", project="agents") as c:
        await c.browsers.replays.list(b)
    sent = fake.requests[-1].headers
    assert (sent["X-Kernel-Project-Id"], sent["X-Kernel-Project"]) == ("proj_1", "agents")
    async with fake.client(project="agents", default_headers={"X-Kernel-Project": "x"}) as c:
        await c.browsers.replays.list(b)
    assert fake.requests[-1].headers["X-Kernel-Project"] == "x"  # explicit headers win
    async with fake.client() as c:
        await c.browsers.replays.list(b)
    assert "X-Kernel-Project-Id" not in fake.requests[-1].headers


def test_plain_http_to_remote_host_warns() -> None:
    with pytest.warns(KernelSecurityWarning, match="clear text"):
        AsyncKernel(api_key="k", base_url="http://api.example.test")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for url in ("http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1", "https://x.test"):
            AsyncKernel(api_key="k", base_url=url)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"max_retries": 1.5}, TypeError, "max_retries"),
        ({"max_retries": True}, TypeError, "max_retries"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"timeout": "5"}, TypeError, "timeout"),
        ({"timeout": float("nan")}, ValueError, "timeout"),
        ({"base_url": "ftp://x"}, ValueError, "base_url"),
        ({"base_url": "https://u:p@x.test"}, ValueError, "credentials"),
        ({"default_headers": {"X-A": "a\r\nInjected: 1"}}, ValueError, "X-A"),
        ({"connection_limit": 0}, ValueError, "connection_limit"),
        ({"session": object()}, TypeError, "session"),
    ],
)
def test_bad_options_fail_clearly(kwargs: dict[str, object], exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        AsyncKernel(api_key="k", **kwargs)  # type: ignore[arg-type]


def test_timeout_validation() -> None:
    with pytest.raises(ValueError, match="total"):
        Timeout(total=0)
    assert Timeout.coerce(5).attempt == 5
    assert Timeout.coerce(None).attempt is None


async def test_lifecycle(fake: FakeKernel, client: AsyncKernel, browser: str) -> None:
    replays = client.browsers.replays
    replay = await replays.start(browser, framerate=10, max_duration_in_seconds=60)
    assert isinstance(replay, Replay)
    assert replay.started_at is not None and replay.started_at.tzinfo is not None
    assert replay.finished_at is None
    with pytest.raises(ConflictError) as info:
        await replays.start(browser)
    assert info.value.status_code == 409 and info.value.error is not None
    assert [r.replay_id for r in await replays.list(browser)] == [replay.replay_id]
    await replays.stop(replay.replay_id, id=browser)
    await replays.stop(replay.replay_id, id=browser)  # idempotent
    listed = await replays.list(browser)
    assert listed[0].finished_at is not None
    assert listed[0].finished_at.tzinfo == timezone.utc
    video = await replays.download(replay.replay_id, id=browser)
    assert video == fake.video
    assert await video.read() == fake.video and video.status_code == 200  # official methods
    assert video.url.endswith(f"/browsers/{browser}/replays/{replay.replay_id}")
    stop_requests = [r for r in fake.requests if r.operation == "stop"]
    assert stop_requests[0].method == "POST"
    assert stop_requests[0].body == b""
    assert stop_requests[0].authorization == f"Bearer {fake.api_key}"
    assert stop_requests[0].raw_path == f"/browsers/{browser}/replays/{replay.replay_id}/stop"


async def test_start_sends_only_given_params(fake: FakeKernel, client: AsyncKernel) -> None:
    b1, b2 = fake.create_browser(), fake.create_browser()
    await client.browsers.replays.start(b1)
    await client.browsers.replays.start(b2, framerate=5, record_audio=True)
    bodies = [r.body for r in fake.requests if r.operation == "start"]
    assert bodies == [b"{}", b'{"framerate": 5, "record_audio": true}']
    starts = [r for r in fake.requests if r.operation == "start"]
    assert starts[0].headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"framerate": 0}, ValueError),
        ({"framerate": "5"}, TypeError),
        ({"framerate": True}, TypeError),
        ({"max_duration_in_seconds": -3}, ValueError),
        ({"record_audio": 1}, TypeError),
    ],
)
async def test_start_rejects_bad_params_before_io(
    fake: FakeKernel, client: AsyncKernel, browser: str, kwargs: dict[str, object], exc: type
) -> None:
    with pytest.raises(exc, match=next(iter(kwargs))):
        await client.browsers.replays.start(browser, **kwargs)  # type: ignore[arg-type]
    assert fake.count() == 0


async def test_emulator_validates_start_params(fake: FakeKernel, browser: str) -> None:
    # The emulator's own 400 (bypassing client-side checks) carries details.
    from kernel_async import BadRequestError

    async with fake.client() as c:
        with pytest.raises(BadRequestError) as info:
            await c._request_json(
                "POST",
                f"/browsers/{browser}/replays",
                lambda b: b,
                idempotent=False,
                body=b'{"framerate": 0}',
            )
    err = info.value.error
    assert err is not None and err.details and err.details[0].code == "invalid_input"


async def test_unknown_ids_are_404(client: AsyncKernel, browser: str) -> None:
    with pytest.raises(NotFoundError):
        await client.browsers.replays.list("no-such-browser")
    with pytest.raises(NotFoundError) as info:
        await client.browsers.replays.stop("no-such-replay", id=browser)
    assert info.value.error is not None and info.value.error.code == "not_found"


async def test_wrong_key_is_401(fake: FakeKernel, browser: str) -> None:
    from kernel_async import AuthenticationError

    async with fake.client(api_key="wrong") as c:
        with pytest.raises(AuthenticationError) as info:
            await c.browsers.replays.list(browser)
    assert info.value.attempts == 1


async def test_with_options_shares_pool_and_budget(fake: FakeKernel, browser: str) -> None:
    async with fake.client() as c:
        fast = c.with_options(max_retries=0, timeout=5.0)
        assert fast.max_retries == 0 and fast.timeout.attempt == 5.0
        assert c.max_retries == 2
        await c.browsers.replays.list(browser)
        await fast.browsers.replays.list(browser)
        assert fast._shared is c._shared
        await fast.close()  # a copy does not close the shared pool
        await c.browsers.replays.list(browser)
    assert fast.is_closed
    with pytest.raises(KernelError, match="closed"):
        await fast.browsers.replays.list(browser)


async def test_user_session_is_used_and_not_closed(fake: FakeKernel, browser: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with fake.client(session=session) as c:
            await c.browsers.replays.list(browser)
        assert not session.closed
        async with session.get(fake.base_url + "/nowhere") as resp:
            assert resp.status == 404


async def test_per_call_headers_and_timeout(fake: FakeKernel, client: AsyncKernel) -> None:
    b = fake.create_browser()
    await client.browsers.replays.list(b, extra_headers={"X-Trace": "abc"}, timeout=3.0)
    assert fake.requests[-1].headers["X-Trace"] == "abc"
    with pytest.raises(ValueError, match="X-Bad"):
        await client.browsers.replays.list(b, extra_headers={"X-Bad": "a\nb"})
    assert fake.count() == 1


async def test_default_headers_sent(fake: FakeKernel) -> None:
    b = fake.create_browser()
    async with fake.client(default_headers={"X-Team": "agents"}) as c:
        await c.browsers.replays.list(b)
    assert fake.requests[-1].headers["X-Team"] == "agents"
    assert fake.requests[-1].headers["User-Agent"].startswith("kernel-async/")


async def test_client_used_from_another_loop_fails_clearly(fake: FakeKernel) -> None:
    import asyncio
    import threading

    b = fake.create_browser()
    c = fake.client()
    await c.browsers.replays.list(b)
    errors: list[BaseException] = []

    def other() -> None:
        try:
            asyncio.run(c.browsers.replays.list(b))
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert isinstance(errors[0], KernelError) and "event loop" in str(errors[0])
    await c.close()


async def test_is_closed_reads_as_a_flag_and_as_the_official_method(fake: FakeKernel) -> None:
    client = AsyncKernel(api_key=fake.api_key, base_url=fake.base_url)
    assert not client.is_closed and client.is_closed() is False
    assert client.is_closed == False  # noqa: E712 - compared as the official bool is
    await client.close()
    assert client.is_closed and client.is_closed() is True and client.is_closed == True  # noqa: E712
    assert repr(client.is_closed) == "True"
