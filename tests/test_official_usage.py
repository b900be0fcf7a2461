"""Code written for the official ``kernel`` 0.131 SDK, run with only the import changed.

Each test is a snippet from the official README, its examples, Kernel's docs or the
official SDK's own tests, with ``from kernel import ...`` turned into ``from kernel_async
import ...`` (async) or ``from kernel_sync import ...`` (sync), run over loopback against
the emulator. The snippet is kept as written (its ``print`` calls included); the lines after
it check what the emulator received. Where the official call has no counterpart here
(documented in docs/migrating.md), the test holds that the error names what to do instead.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from kernel_async.testing import FakeKernel, sample_video

pytestmark = pytest.mark.anyio


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKernel]:
    """The emulator on its own thread, found by official code through the environment
    (``KERNEL_API_KEY``, ``KERNEL_BASE_URL``), as a user's shell would set them."""
    with FakeKernel.in_thread(finalise_seconds=0) as server:
        monkeypatch.setenv("KERNEL_API_KEY", server.api_key)
        monkeypatch.setenv("KERNEL_BASE_URL", server.base_url)
        yield server


def sent(fake: FakeKernel, method: str, path: str) -> list[dict[str, str]]:
    """The query of each `method` request to `path` the emulator received, in order."""
    got = []
    for r in fake.requests:
        where = urlsplit(r.raw_path)
        if r.method == method and where.path == path:
            got.append(dict(parse_qsl(where.query)))
    return got


# -- README: usage, async usage ------------------------------------------------------------


def test_readme_usage_sync(served: FakeKernel) -> None:
    from kernel_sync import Kernel

    client = Kernel(
        api_key=os.environ.get("KERNEL_API_KEY"),  # This is the default and can be omitted
    )

    browser = client.browsers.create(
        stealth=True,
    )
    print(browser.session_id)

    assert served.count("create") == 1 and browser.stealth is True
    client.close()


def test_readme_environment_keyword(served: FakeKernel) -> None:
    from kernel_sync import Kernel

    client = Kernel(
        api_key=os.environ.get("KERNEL_API_KEY"),  # This is the default and can be omitted
        # defaults to "production".
        environment="development",
    )
    assert client.base_url == "https://localhost:3001"  # over KERNEL_BASE_URL, as officially
    client.close()


def test_readme_async_usage(served: FakeKernel) -> None:
    from kernel_async import AsyncKernel

    async def run() -> str:  # the README's module-level client, made inside its loop
        client = AsyncKernel(
            api_key=os.environ.get("KERNEL_API_KEY"),  # This is the default and can be omitted
        )

        async def main() -> str:
            browser = await client.browsers.create(
                stealth=True,
            )
            print(browser.session_id)
            return browser.session_id

        try:
            return await main()
        finally:
            await client.close()  # see docs/migrating.md: close the async client

    session_id = asyncio.run(run())
    (created,) = served.sessions()
    assert created["session_id"] == session_id and created["stealth"] is True


# -- README: pagination --------------------------------------------------------------------


def test_readme_pagination_sync(served: FakeKernel) -> None:
    from kernel_sync import Kernel

    with Kernel() as setup:
        for name in "abcde":
            setup.profiles.create(name=name)

    client = Kernel()

    all_profiles = []
    # Automatically fetches more pages as needed.
    for profile in client.profiles.list(
        limit=2,
    ):
        # Do something with profile here
        all_profiles.append(profile)
    print(all_profiles)

    assert [p.name for p in all_profiles] == list("abcde")
    assert [q.get("offset") for q in sent(served, "GET", "/profiles")] == [None, "2", "4"]
    client.close()


def test_readme_pagination_async(served: FakeKernel) -> None:
    from kernel_async import AsyncKernel

    async def main() -> list[Any]:
        async with AsyncKernel() as client:
            for name in "abcde":
                await client.profiles.create(name=name)

            all_profiles = []
            # Iterate through items across all pages, issuing requests as needed.
            async for profile in client.profiles.list(
                limit=2,
            ):
                all_profiles.append(profile)
            print(all_profiles)

            first_page = await client.profiles.list(
                limit=2,
            )
            if first_page.has_next_page():
                print(f"will fetch next page using these details: {first_page.next_page_info()}")
                next_page = await first_page.get_next_page()
                print(f"number of items we just fetched: {len(next_page.items)}")

            first_page = await client.profiles.list(
                limit=2,
            )

            print(
                f"the offset where the next page starts: {first_page.next_offset}"
            )  # => "the offset where the next page starts: 2"
            for profile in first_page.items:
                print(profile.id)
            return [all_profiles, next_page.items, first_page.next_offset]

    every, second, offset = asyncio.run(main())
    assert [p.name for p in every] == list("abcde")
    assert [p.name for p in second] == ["c", "d"] and offset == 2


def test_readme_browsers_list_page_by_page_sync(served: FakeKernel) -> None:
    from kernel_sync import Kernel

    for _ in range(5):
        served.create_browser()
    client = Kernel()
    first_page = client.browsers.list(limit=2)
    seen = [b.session_id for b in first_page.items]
    page = first_page
    while page.has_next_page():
        page = page.get_next_page()
        seen += [b.session_id for b in page.items]
    assert seen == [s["session_id"] for s in served.sessions()]
    assert [b.session_id for b in client.browsers.list(limit=2)] == seen
    client.close()


# -- README: nested params, file uploads ---------------------------------------------------


def test_readme_nested_params(served: FakeKernel) -> None:
    from kernel_sync import Kernel

    client = Kernel()

    browser = client.browsers.create(
        location={},
    )
    print(browser.location)

    assert json.loads(served.requests[-1].body) == {"location": {}}
    client.close()


def test_readme_file_uploads(served: FakeKernel, tmp_path: Path) -> None:
    from kernel_sync import Kernel

    upload = tmp_path / "file"
    upload.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip

    client = Kernel()

    client.deployments.create(
        file=Path(upload),
    )

    (received,) = [r for r in served.requests if r.operation == "deployments.create"]
    assert b'filename="file"' in received.body and b"PK\x05\x06" in received.body
    client.close()


def test_readme_file_uploads_async(served: FakeKernel, tmp_path: Path) -> None:
    from kernel_async import AsyncKernel

    upload = tmp_path / "file"
    upload.write_bytes(b"PK\x05\x06" + bytes(18))

    async def main() -> None:
        async with AsyncKernel() as client:
            await client.deployments.create(
                file=Path(upload),
            )

    asyncio.run(main())
    assert served.count("deployments.create") == 1


# -- README: errors, retries, timeouts -----------------------------------------------------


def test_readme_handling_errors(served: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    import kernel_sync
    from kernel_sync import Kernel

    client = Kernel(max_retries=0)

    def attempt() -> None:
        try:
            client.browsers.create(
                stealth=True,
            )
        except kernel_sync.APIConnectionError as e:
            print("The server could not be reached")
            print(e.__cause__)  # an underlying Exception, likely raised within httpx.
        except kernel_sync.RateLimitError:
            print("A 429 status code was received; we should back off a bit.")
        except kernel_sync.APIStatusError as e:
            print("Another non-200-range status code was received")
            print(e.status_code)
            print(e.response)  # type: ignore[attr-defined]

    served.fail("browsers.create", status=429)
    attempt()
    assert "A 429 status code" in capsys.readouterr().out
    served.fail("browsers.create", reset=True, status=None)
    attempt()
    assert "could not be reached" in capsys.readouterr().out
    served.fail("browsers.create", status=503)
    # The one line that does not run here: `e.response` (httpx's) names what to read instead.
    with pytest.raises(AttributeError, match=r"\.status_code, \.headers and \.body") as caught:
        attempt()
    assert caught.value.name == "response"
    out = capsys.readouterr().out
    assert "Another non-200-range" in out and "503" in out
    client.close()


def test_official_error_attributes(served: FakeKernel) -> None:
    import kernel_sync
    from kernel_sync import Kernel

    client = Kernel(max_retries=0)
    caught: list[kernel_sync.NotFoundError] = []
    try:
        client.browsers.retrieve("nope")
    except kernel_sync.NotFoundError as e:
        print(e.status_code, e.message, e.body)
        caught.append(e)
    client.close()

    (err,) = caught
    assert err.status_code == 404 and isinstance(err.body, dict)
    assert err.body["code"] == "not_found"
    assert err.headers["content-type"].startswith("application/json")
    assert (err.method, err.url) == ("GET", served.base_url + "/browsers/nope")
    with pytest.raises(AttributeError, match=r"\.method and \.url"):
        print(err.request)  # type: ignore[attr-defined]


def test_readme_error_codes() -> None:
    import kernel_sync

    table = {
        400: kernel_sync.BadRequestError,
        401: kernel_sync.AuthenticationError,
        403: kernel_sync.PermissionDeniedError,
        404: kernel_sync.NotFoundError,
        422: kernel_sync.UnprocessableEntityError,
        429: kernel_sync.RateLimitError,
        500: kernel_sync.InternalServerError,
    }
    assert all(issubclass(cls, kernel_sync.APIStatusError) for cls in table.values())
    assert issubclass(kernel_sync.APIStatusError, kernel_sync.APIError)
    assert issubclass(kernel_sync.APITimeoutError, kernel_sync.APIConnectionError)


def test_readme_retries(served: FakeKernel) -> None:
    from kernel_sync import Kernel

    # Configure the default for all requests:
    client = Kernel(
        # default is 2
        max_retries=0,
    )

    served.fail("browsers.create", status=503, times=4)
    # Or, configure per-request:
    client.with_options(max_retries=5).browsers.create(
        stealth=True,
    )
    assert served.count("browsers.create") == 5
    client.close()


def test_readme_timeouts(served: FakeKernel) -> None:
    import kernel_sync
    from kernel_sync import Kernel

    # Configure the default for all requests:
    client = Kernel(
        # 20 seconds (default is 1 minute)
        timeout=20.0,
    )
    assert client.timeout.attempt == 20.0

    served.fail("browsers.create", status=None, delay=2.0, times=None)
    # Override per-request:
    with pytest.raises(kernel_sync.APITimeoutError):
        client.with_options(timeout=0.2, max_retries=0).browsers.create(
            stealth=True,
        )
    served.clear_faults()
    client.close()


def test_readme_httpx_timeout_names_the_replacement() -> None:
    import httpx

    from kernel_sync import Kernel

    # More granular control:
    with pytest.raises(TypeError, match=r"not an httpx.Timeout.*Timeout\(60.0, connect=2.0\)"):
        Kernel(
            api_key="k",
            timeout=httpx.Timeout(60.0, read=5.0, write=10.0, connect=2.0),  # type: ignore[arg-type]
        )
    client = Kernel(api_key="k")
    with pytest.raises(TypeError, match=r"not an httpx\.Timeout"):
        client.with_options(timeout=httpx.Timeout(5.0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"not an httpx\.Timeout"):
        client.browsers.retrieve("b", timeout=httpx.Timeout(5.0))  # type: ignore[arg-type]
    client.close()


# -- README: raw and streaming responses, custom requests ----------------------------------


def test_readme_with_raw_response_names_what_to_do(served: FakeKernel) -> None:
    from kernel_sync import Kernel

    client = Kernel()
    with pytest.raises(AttributeError, match=r"with_raw_response.*migrating"):
        client.browsers.with_raw_response.create(  # type: ignore[attr-defined]
            stealth=True,
        )
    with pytest.raises(AttributeError, match=r"with_streaming_response.*migrating"):
        with client.browsers.with_streaming_response.create(  # type: ignore[attr-defined]
            stealth=True,
        ) as response:
            print(response.headers.get("X-My-Header"))
    assert served.count() == 0
    client.close()


def test_official_tests_with_raw_response_everywhere(served: FakeKernel) -> None:
    from kernel_async import AsyncKernel
    from kernel_sync import Kernel

    sync = Kernel()
    async_ = AsyncKernel()
    for client in (sync, async_):
        for resource in (
            client,
            client.browsers,
            client.browsers.computer,
            client.browsers.replays,
            client.browsers.fs.watch,
            client.profiles,
            client.deployments,
        ):
            for name in ("with_raw_response", "with_streaming_response"):
                with pytest.raises(AttributeError, match=rf"{name}.*migrating") as caught:
                    getattr(resource, name)
                assert caught.value.name == name
                assert not hasattr(resource, name)
    sync.close()
    asyncio.run(async_.close())


def test_readme_managing_http_resources(served: FakeKernel) -> None:
    from kernel_sync import Kernel

    with Kernel() as client:
        # make requests here
        client.browsers.list()

    # HTTP client is now closed
    assert client.is_closed()


def test_readme_version() -> None:
    import kernel_async
    import kernel_sync

    print(kernel_async.__version__, kernel_sync.__version__)


# -- the official examples -----------------------------------------------------------------


def api_call(handler: str) -> dict[str, Any]:
    """A telemetry ``api_call`` event as Kernel's VM reports a call it handled."""
    data = {"duration_ms": 1.0, "operation_id": handler, "request_id": "r1", "status": 200}
    return {"type": "api_call", "data": data}


def test_example_browser_telemetry(served: FakeKernel) -> None:
    """examples/browser_telemetry.py, with the page it curls served on loopback."""
    from kernel_sync import Kernel

    url = served.base_url + "/"  # stands in for https://example.com (no network in tests)

    def main() -> list[tuple[int, str]]:
        client = Kernel()
        seen = []

        # Enable telemetry capture when creating the browser.
        browser = client.browsers.create(telemetry={"enabled": True})

        try:
            stream = client.browsers.telemetry.stream(browser.session_id)

            for _ in range(3):
                client.browsers.curl(browser.session_id, url=url, method="GET")
                # Not in the example: the emulator reports no telemetry event for a curl
                # (it knows no VM handler name for it), so the test plays the VM's part.
                served.telemetry(browser.session_id, api_call("Curl"))

            # Print a few events, then stop so we don't wait on the 15s keepalive.
            for count, message in enumerate(stream, start=1):
                print(message.seq, message.event.type)
                seen.append((message.seq, message.event.type))
                if count >= 3:
                    break
        finally:
            client.browsers.delete_by_id(browser.session_id)
        client.close()
        return seen

    seen = main()
    assert len(seen) == 3 and [seq for seq, _ in seen] == sorted(seq for seq, _ in seen)
    assert served.count("browsers.curl") == 3 and served.sessions() == []


def test_example_browser_routing(served: FakeKernel) -> None:
    """examples/browser_routing.py: the buffered curl runs; the official-only raw
    ``browsers.request`` helper is an AttributeError naming browsers.curl."""
    from kernel_sync import Kernel

    client = Kernel()
    browser = client.browsers.create()
    with pytest.raises(AttributeError, match=r"browsers\.curl"):
        client.browsers.request(browser.session_id, "GET", served.base_url + "/")  # type: ignore[attr-defined]
    buffered = client.browsers.curl(browser.session_id, url=served.base_url + "/", method="GET")
    print("body", buffered.body)
    client.browsers.delete_by_id(browser.session_id)
    assert buffered.status == 404 and served.sessions() == []
    client.close()


# -- Kernel's docs: computer controls, replays, files, processes, logs ---------------------


async def test_docs_computer_controls(fake: FakeKernel, tmp_path: Path) -> None:
    from kernel_async import AsyncKernel

    kernel = AsyncKernel(api_key=fake.api_key, base_url=fake.base_url)
    kernel_browser = await kernel.browsers.create()

    # Basic left click at (100, 200)
    await kernel.browsers.computer.click_mouse(
        kernel_browser.session_id,
        x=100,
        y=200,
    )
    # Double right-click while holding Shift
    await kernel.browsers.computer.click_mouse(
        kernel_browser.session_id,
        x=100,
        y=200,
        button="right",
        click_type="click",
        num_clicks=2,
        hold_keys=["Shift"],
    )
    await kernel.browsers.computer.move_mouse(kernel_browser.session_id, x=500, y=300)
    await kernel.browsers.computer.type_text(kernel_browser.session_id, text="Hello, World!")
    await kernel.browsers.computer.press_key(kernel_browser.session_id, keys=["Ctrl+a"])
    await kernel.browsers.computer.scroll(kernel_browser.session_id, x=300, y=400, delta_y=120)
    await kernel.browsers.computer.drag_mouse(
        kernel_browser.session_id, path=[[100, 200], [150, 220], [200, 260]], button="left"
    )
    response = await kernel.browsers.computer.capture_screenshot(kernel_browser.session_id)
    image_data = await response.read()
    with open(tmp_path / "screenshot.png", "wb") as f:  # noqa: ASYNC230 (the docs' code)
        f.write(image_data)
    region = await kernel.browsers.computer.capture_screenshot(
        kernel_browser.session_id, region={"x": 0, "y": 0, "width": 400, "height": 300}
    )
    await region.write_to_file(tmp_path / "region.png")
    await kernel.close()

    assert image_data.startswith(b"\x89PNG") and response.headers["content-type"] == "image/png"
    assert (tmp_path / "region.png").read_bytes() == region
    log = fake.computer(kernel_browser.session_id).log
    assert [e.operation for e in log][:2] == ["click_mouse", "click_mouse"]
    assert fake.computer(kernel_browser.session_id).mouse == (200, 260)


async def test_docs_replays(fake: FakeKernel, tmp_path: Path) -> None:
    from kernel_async import AsyncKernel

    async with AsyncKernel(api_key=fake.api_key, base_url=fake.base_url) as client:
        browser = await client.browsers.create()
        replay = await client.browsers.replays.start(browser.session_id)
        print(replay.replay_id, replay.replay_view_url)
        await client.browsers.replays.stop(replay.replay_id, id_or_name=browser.session_id)
        replays = await client.browsers.replays.list(browser.session_id)
        for r in replays:
            print(r.replay_id, r.started_at, r.finished_at)
        video = await client.browsers.replays.download(
            replay.replay_id, id_or_name=browser.session_id
        )
        await video.write_to_file(tmp_path / "replay.mp4")
        await client.browsers.delete_by_id(browser.session_id)

    assert (tmp_path / "replay.mp4").read_bytes() == sample_video()
    assert [r.replay_id for r in replays] == [replay.replay_id]


async def test_docs_files(fake: FakeKernel) -> None:
    from kernel_async import AsyncKernel

    async with AsyncKernel(api_key=fake.api_key, base_url=fake.base_url) as client:
        browser = await client.browsers.create()
        sid = browser.session_id
        await client.browsers.fs.create_directory(sid, path="/tmp/reports")
        await client.browsers.fs.write_file(sid, b"hello", path="/tmp/reports/a.txt")
        listing = await client.browsers.fs.list_files(sid, path="/tmp/reports")
        for entry in listing:
            print(entry.name, entry.size_bytes, entry.is_dir)
        resp = await client.browsers.fs.read_file(sid, path="/tmp/reports/a.txt")
        text = await resp.text()
        info = await client.browsers.fs.file_info(sid, path="/tmp/reports/a.txt")
        await client.browsers.fs.delete_file(sid, path="/tmp/reports/a.txt")

    assert [e.name for e in listing] == ["a.txt"] and text == "hello" and info.size_bytes == 5


async def test_docs_process_exec(fake: FakeKernel) -> None:
    from kernel_async import AsyncKernel

    fake.on_exec("echo", stdout=b"hello\n")  # the emulator runs nothing in memory
    async with AsyncKernel(api_key=fake.api_key, base_url=fake.base_url) as client:
        browser = await client.browsers.create()
        result = await client.browsers.process.exec(
            browser.session_id, command="echo", args=["hello"]
        )
        print(result.exit_code, base64.b64decode(result.stdout_b64 or "").decode())

    assert result.exit_code == 0 and base64.b64decode(result.stdout_b64 or "") == b"hello\n"


async def test_docs_logs_stream(fake: FakeKernel) -> None:
    from kernel_async import AsyncKernel

    async with AsyncKernel(api_key=fake.api_key, base_url=fake.base_url) as client:
        browser = await client.browsers.create()
        fake.log(browser.session_id, "chromium started")
        stream = await client.browsers.logs.stream(
            browser.session_id, source="supervisor", supervisor_process="chromium"
        )
        messages = []
        async with stream:
            async for log in stream:
                print(log.timestamp, log.message)
                messages.append(log.message)
                if log.message == "chromium started":
                    break

    assert messages[-1] == "chromium started"


# -- Kernel's docs: profiles, pools, apps ---------------------------------------------------


async def test_docs_profiles(fake: FakeKernel) -> None:
    from kernel_async import AsyncKernel

    async with AsyncKernel(api_key=fake.api_key, base_url=fake.base_url) as kernel:
        profile = await kernel.profiles.create(name="my-profile")
        browser = await kernel.browsers.create(
            profile={"name": "my-profile", "save_changes": True},
        )
        await kernel.browsers.delete_by_id(browser.session_id)
        found = await kernel.profiles.retrieve("my-profile")
        names = [p.name async for p in kernel.profiles.list()]
        await kernel.profiles.delete("my-profile")

    assert found.id == profile.id and names == ["my-profile"]
    # The emulator does not echo the profile in browser answers (browser.profile is None).
    created = [r for r in fake.requests if r.operation == "create"]
    assert json.loads(created[0].body)["profile"] == {"name": "my-profile", "save_changes": True}


async def test_docs_browser_pools(fake: FakeKernel) -> None:
    from kernel_async import AsyncKernel

    async with AsyncKernel(api_key=fake.api_key, base_url=fake.base_url) as kernel:
        pool = await kernel.browser_pools.create(name="my-pool", size=2, headless=True)
        browser = await kernel.browser_pools.acquire("my-pool", acquire_timeout_seconds=10)
        assert browser is not None
        print(browser.session_id, browser.cdp_ws_url)
        await kernel.browser_pools.release("my-pool", session_id=browser.session_id)
        pools = [p.name async for p in kernel.browser_pools.list()]
        await kernel.browser_pools.delete(pool.id, force=True)

    assert pools == ["my-pool"]


async def test_docs_deploy_and_invoke(fake: FakeKernel) -> None:
    from kernel_async import AsyncKernel

    async with AsyncKernel(api_key=fake.api_key, base_url=fake.base_url) as kernel:
        deployment = await kernel.deployments.create(
            entrypoint_rel_path="main.py",
            file=("app.zip", b"PK\x05\x06" + bytes(18)),
            env_vars={"OPENAI_API_KEY": "sk-test"},
            version="1.0.0",
        )
        # The emulator builds nothing: the test plays Kernel's side.
        fake.publish(
            "deployments.follow",
            deployment.id,
            {"event": "deployment_state", "deployment": {"status": "running"}},
        )
        statuses = []
        async for event in await kernel.deployments.follow(deployment.id):
            if event.event == "deployment_state":
                # mypy cannot narrow by `event` here (the models type it `str`, not Literal)
                statuses.append(event.deployment.status)  # type: ignore[union-attr]

        invocation = await kernel.invocations.create(
            action_name="analyze",
            app_name="my-app",
            version="1.0.0",
            async_=True,
            payload='{"url": "https://example.com"}',
        )
        print(invocation.id, invocation.status)
        await kernel.invocations.update(invocation.id, status="succeeded", output='"done"')
        async for state in await kernel.invocations.follow(invocation.id):
            if state.event == "invocation_state" and state.invocation.status == "succeeded":  # type: ignore[union-attr]
                print(state.invocation.output)  # type: ignore[union-attr]
                break
        done = await kernel.invocations.retrieve(invocation.id)

    assert statuses[-1] == "running" and done.status == "succeeded" and done.output == '"done"'
    (sent_invocation,) = [r for r in fake.requests if r.operation == "invocations.create"]
    assert json.loads(sent_invocation.body)["async"] is True


# -- the client: construction, options, closing ---------------------------------------------


def test_client_options_and_headers(served: FakeKernel) -> None:
    from kernel_sync import Kernel

    client = Kernel(
        base_url=served.base_url,
        max_retries=3,
        timeout=30.0,
        default_headers={"X-Team": "qa"},
    )
    client.browsers.list()
    tagged = client.with_options(default_headers={"X-Run": "42"}, max_retries=0)
    tagged.profiles.create(name="p", extra_headers={"X-Call": "1"}, extra_query={"dry": "1"})
    assert (client.max_retries, tagged.max_retries) == (3, 0)
    assert client.base_url == served.base_url
    first, second = served.requests[-2:]
    assert first.headers["X-Team"] == "qa"
    assert (second.headers["X-Team"], second.headers["X-Run"], second.headers["X-Call"]) == (
        "qa",
        "42",
        "1",
    )
    assert second.raw_path == "/profiles?dry=1"
    client.close()


def test_missing_api_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    import kernel_sync
    from kernel_sync import Kernel

    monkeypatch.delenv("KERNEL_API_KEY", raising=False)
    with pytest.raises(kernel_sync.KernelError, match="KERNEL_API_KEY"):
        Kernel()


async def test_async_client_context_manager_and_close(fake: FakeKernel) -> None:
    from kernel_async import AsyncKernel

    async with AsyncKernel(api_key=fake.api_key, base_url=fake.base_url) as client:
        await client.browsers.list()
    assert client.is_closed()
    other = AsyncKernel(api_key=fake.api_key, base_url=fake.base_url)
    await other.profiles.list()
    await other.close()
    assert other.is_closed()


# -- Kernel's docs on local Chromium: connect over CDP --------------------------------------


@pytest.mark.once
async def test_docs_create_and_connect_over_cdp() -> None:
    from playwright.async_api import async_playwright

    from kernel_async import AsyncKernel

    async with FakeKernel(backend="chromium") as fake:
        kernel = AsyncKernel(api_key=fake.api_key, base_url=fake.base_url)
        kernel_browser = await kernel.browsers.create()
        print(kernel_browser.session_id)

        async with async_playwright() as playwright:
            browser = await playwright.chromium.connect_over_cdp(kernel_browser.cdp_ws_url)
            context = browser.contexts[0] if browser.contexts else await browser.new_context()
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto("data:text/html,<title>Example Domain</title>")
            title = await page.title()
            await browser.close()

        await kernel.browsers.delete_by_id(kernel_browser.session_id)
        await kernel.close()
        assert title == "Example Domain" and fake.sessions() == []


def test_httpx_timeout_named_after_the_official_sdk_is_imported() -> None:
    """Importing the official SDK renames httpx.Timeout's module to "kernel"."""
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("kernel")

    from kernel_sync import Kernel

    assert httpx.Timeout.__module__ == "kernel"
    with pytest.raises(TypeError, match=r"not an httpx\.Timeout"):
        Kernel(api_key="k", timeout=httpx.Timeout(5.0))
