"""FakeKernel against the OpenAPI contract, its fault injection, and the pytest plugin."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml

import kernel_async as ka
from kernel_async.testing import FakeKernel, InMemoryBackend

pytestmark = pytest.mark.anyio

SPEC = yaml.safe_load((Path(__file__).parent.parent / "spec" / "replays.openapi.yaml").read_text())


def resolve(node: Any) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = SPEC
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return resolve(target)
        return {k: resolve(v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v) for v in node]
    return node


def check(path: str, method: str, status: int, resp_headers: Any, body: bytes) -> None:
    """Assert the response is one the spec documents, with a body of the right schema."""
    op = SPEC["paths"][path][method.lower()]
    documented = resolve(op["responses"]).get(str(status))
    assert documented is not None, f"{method} {path}: status {status} is not documented"
    content = documented.get("content")
    if not content:
        return
    ctype = resp_headers.get("Content-Type", "").split(";")[0]
    assert ctype in content, (ctype, list(content))
    schema = content[ctype]["schema"]
    if ctype == "application/json":
        jsonschema.validate(json.loads(body), schema)
    else:
        assert body[4:8] == b"ftyp"


async def call(
    s: aiohttp.ClientSession, fake: FakeKernel, method: str, path: str, **kw: Any
) -> tuple[int, Any, bytes]:
    headers = {"Authorization": f"Bearer {fake.api_key}", **kw.pop("headers", {})}
    async with s.request(method, fake.base_url + path, headers=headers, **kw) as r:
        return r.status, r.headers, await r.read()


async def test_every_operation_answers_per_the_spec() -> None:
    async with FakeKernel(finalise_seconds=1.0) as fake:  # 202 seen however slow the machine
        await check_every_operation(fake)


async def check_every_operation(fake: FakeKernel) -> None:
    b = fake.create_browser()
    tmpl_list = "/browsers/{id}/replays"
    tmpl_one = "/browsers/{id}/replays/{replay_id}"
    tmpl_stop = "/browsers/{id}/replays/{replay_id}/stop"
    async with aiohttp.ClientSession() as s:
        st, h, body = await call(s, fake, "POST", f"/browsers/{b}/replays", json={"framerate": 5})
        check(tmpl_list, "POST", st, h, body)
        assert st == 200
        rid = json.loads(body)["replay_id"]
        cases: list[tuple[str, str, str, dict[str, Any], int]] = [
            ("POST", f"/browsers/{b}/replays", tmpl_list, {}, 409),
            ("POST", f"/browsers/{b}/replays", tmpl_list, {"json": {"framerate": 0}}, 400),
            ("POST", f"/browsers/{b}/replays", tmpl_list, {"data": b"{nope"}, 400),
            ("POST", "/browsers/nope/replays", tmpl_list, {}, 404),
            ("GET", f"/browsers/{b}/replays", tmpl_list, {}, 200),
            ("GET", "/browsers/nope/replays", tmpl_list, {}, 404),
            ("GET", f"/browsers/{b}/replays/{rid}", tmpl_one, {}, 400),  # still recording
            ("POST", f"/browsers/{b}/replays/{rid}/stop", tmpl_stop, {}, 200),
            ("POST", f"/browsers/{b}/replays/{rid}/stop", tmpl_stop, {}, 200),
            ("POST", f"/browsers/{b}/replays/zzz/stop", tmpl_stop, {}, 404),
            ("GET", f"/browsers/{b}/replays/{rid}", tmpl_one, {}, 202),
            ("GET", f"/browsers/{b}/replays/zzz", tmpl_one, {}, 404),
        ]
        for method, path, tmpl, kw, want in cases:
            st, h, body = await call(s, fake, method, path, **kw)
            assert st == want, (method, path, st, body)
            check(tmpl, method, st, h, body)
            if st == 202:
                assert int(h["Retry-After"]) >= 1
        for _ in range(100):  # bounded: finalising takes 1 s
            await asyncio.sleep(0.05)
            st, h, body = await call(s, fake, "GET", f"/browsers/{b}/replays/{rid}")
            if st != 202:
                break
        check(tmpl_one, "GET", st, h, body)
        assert st == 200 and h["Content-Type"] == "video/mp4"
        st, h, body = await call(s, fake, "GET", f"/browsers/{b}/replays")
        check(tmpl_list, "GET", st, h, body)
        (item,) = json.loads(body)
        assert item["finished_at"] is not None


async def test_auth_and_unknown_routes(fake: FakeKernel) -> None:
    b = fake.create_browser()
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{fake.base_url}/browsers/{b}/replays") as r:
            assert r.status == 401
            assert (await r.json())["code"] == "unauthorized"
        st, _, _ = await call(
            s, fake, "GET", f"/browsers/{b}/replays", headers={"Authorization": "Bearer x"}
        )
        assert st == 401
        st, _, _ = await call(s, fake, "DELETE", f"/browsers/{b}/replays")
        assert st == 405
        st, _, body = await call(s, fake, "GET", "/elsewhere")
        assert st == 404 and json.loads(body)["code"] == "not_found"


async def test_concurrent_stops_all_succeed(fake: FakeKernel) -> None:
    b = fake.create_browser()
    async with fake.client() as c:
        r = await c.browsers.replays.start(b)
        await asyncio.gather(*(c.browsers.replays.stop(r.replay_id, id=b) for _ in range(50)))
        (listed,) = await c.browsers.replays.list(b)
    assert listed.finished_at is not None
    assert fake.count("stop") == 50


async def test_max_duration_stops_by_itself() -> None:
    async with FakeKernel(finalise_seconds=0) as fake, fake.client() as c:
        b = fake.create_browser()
        r = await c.browsers.replays.start(b, max_duration_in_seconds=1)
        await asyncio.sleep(1.05)
        (listed,) = await c.browsers.replays.list(b)
        assert listed.finished_at is not None
        await c.browsers.replays.start(b)  # the recorder is free again
        assert await c.browsers.replays.download(r.replay_id, id=b) == fake.video


async def test_fault_injection_options(fake: FakeKernel) -> None:
    b = fake.create_browser()
    async with fake.client(max_retries=0) as c:
        fake.fail("list", status=418, body=b"teapot", headers={"X-Why": "tea"})
        with pytest.raises(ka.APIStatusError) as info:
            await c.browsers.replays.list(b)
        assert info.value.status_code == 418 and info.value.headers["X-Why"] == "tea"
        assert info.value.error is None and info.value.body == "teapot"

        fake.fail("listBrowserReplays", status=503, retry_after=7, should_retry=False)
        with pytest.raises(ka.InternalServerError) as info2:
            await c.browsers.replays.list(b)
        assert info2.value.headers["Retry-After"] == "7"
        assert info2.value.headers["x-should-retry"] == "false"

        fake.fail("*", status=None, reset=True)
        with pytest.raises(ka.APIConnectionError):
            await c.browsers.replays.list(b)

        fake.fail("list", status=None, truncate=True)
        with pytest.raises(ka.APIConnectionError, match="cut short"):
            await c.browsers.replays.list(b)

        forever = fake.fail("stop", status=500, times=None)
        for _ in range(3):
            with pytest.raises(ka.InternalServerError):
                await c.browsers.replays.stop("r", id=b)
        assert forever.hits == 3
        fake.clear_faults()
        await c.browsers.replays.list(b)
        assert [r.fault for r in fake.requests[-2:]] == [True, False]

    async with fake.client(timeout=0.2, max_retries=0) as slow:
        fake.fail("list", status=None, delay=1.0)
        with pytest.raises(ka.APITimeoutError):
            await slow.browsers.replays.list(b)
    with pytest.raises(ValueError, match="unknown operation"):
        fake.fail("destroy")


def test_recorded_request_repr_hides_the_key(kernel_fake: FakeKernel) -> None:
    import kernel_sync

    fake = kernel_fake
    b = fake.create_browser()
    with kernel_sync.Kernel(api_key=fake.api_key, base_url=fake.base_url) as k:
        k.browsers.replays.list(b)
    rec = fake.requests[-1]
    assert rec.authorization == f"Bearer {fake.api_key}"
    assert fake.api_key not in repr(rec)


# The plugin's fixtures, as a user would use them (registered through the pytest11 entry point).


def test_plugin_fixtures(
    kernel_fake: FakeKernel, kernel_browser: str, kernel_sync_client: Any
) -> None:
    assert ka.is_testing()
    r = kernel_sync_client.browsers.replays.start(kernel_browser)
    kernel_fake.fail("stop", status=503, retry_after=30)  # the testing switch: no real wait
    kernel_sync_client.browsers.replays.stop(r.replay_id, id=kernel_browser)
    assert kernel_fake.count("stop") == 2


async def test_plugin_fake_from_async_code(kernel_fake: FakeKernel, kernel_browser: str) -> None:
    async with kernel_fake.client() as c:
        r = await c.browsers.replays.start(kernel_browser)
        await c.browsers.replays.stop(r.replay_id, id=kernel_browser)
        assert (
            await c.browsers.replays.download(r.replay_id, id=kernel_browser) == kernel_fake.video
        )


async def test_every_browser_operation_answers_per_the_spec(fake: FakeKernel) -> None:
    one, many = "/browsers/{id_or_name}", "/browsers"
    async with aiohttp.ClientSession() as s:
        st, h, body = await call(s, fake, "POST", many, json={"name": "a", "tags": {"t": "1"}})
        check(many, "POST", st, h, body)
        bid = json.loads(body)["session_id"]
        headless = fake.create_browser(headless=True)
        cases: list[tuple[str, str, str, dict[str, Any], int]] = [
            ("POST", many, many, {"json": {"name": "a"}}, 409),  # names unique among active
            ("POST", many, many, {"json": {"timeout_seconds": 5}}, 400),
            ("POST", many, many, {"json": {"region": "mars"}}, 400),
            ("POST", many, many, {"json": {"tags": {str(i): "x" for i in range(51)}}}, 400),
            ("POST", many, many, {"data": b"[1]"}, 400),
            ("GET", f"/browsers/{bid}", one, {}, 200),
            ("GET", "/browsers/a", one, {}, 200),  # by name
            ("GET", "/browsers/nope", one, {}, 404),
            ("PATCH", f"/browsers/{bid}", one, {"json": {"name": "b", "tags": {}}}, 200),
            ("PATCH", f"/browsers/{bid}", one, {"json": {"viewport": {"width": 0}}}, 400),
            ("GET", many + "?limit=1", many, {}, 200),
            ("GET", many + "?limit=101", many, {}, 400),
            ("GET", many + "?status=gone", many, {}, 400),
            ("POST", f"/browsers/{headless}/replays", "/browsers/{id}/replays", {}, 400),
            (
                "POST",
                f"/browsers/{bid}/replays",
                "/browsers/{id}/replays",
                {"json": {"framerate": 30}},
                400,
            ),
            ("DELETE", f"/browsers/{bid}", one, {}, 204),
            ("DELETE", f"/browsers/{bid}", one, {}, 404),
            ("GET", f"/browsers/{bid}", one, {}, 404),
            ("GET", f"/browsers/{bid}?include_deleted=true", one, {}, 200),
            ("PATCH", f"/browsers/{bid}", one, {"json": {"name": "c"}}, 404),
            ("POST", f"/browsers/{bid}/replays", "/browsers/{id}/replays", {}, 404),
            ("GET", many + "?status=deleted", many, {}, 200),
        ]
        for method, path, tmpl, kw, want in cases:
            st, h, body = await call(s, fake, method, path, **kw)
            assert st == want, (method, path, st, body)
            check(tmpl, method, st, h, body)
        st, h, body = await call(s, fake, "GET", many + "?status=all&limit=1")
        assert (h["X-Has-More"], h["X-Next-Offset"]) == ("true", "1")
        st, h, body = await call(s, fake, "GET", many + "?status=all&limit=1&offset=1")
        assert (h["X-Has-More"], h["X-Next-Offset"]) == ("false", "0")
        st, h, body = await call(s, fake, "GET", many + "?status=deleted")
        assert [b["session_id"] for b in json.loads(body)] == [bid]


async def test_deleted_browser_keeps_its_replays(fake: FakeKernel) -> None:
    async with fake.client() as c:
        b = await c.browsers.create()
        r = await c.browsers.replays.start(b.session_id)
        await c.browsers.delete(b.session_id)  # deleting stops the recording
        (listed,) = await c.browsers.replays.list(b.session_id)
        assert listed.finished_at is not None
        await c.browsers.replays.stop(r.replay_id, id=b.session_id)  # still idempotent
        assert await c.browsers.replays.download(r.replay_id, id=b.session_id) == fake.video


async def test_browser_operations_take_faults(fake: FakeKernel) -> None:
    async with fake.client(max_retries=0) as c:
        b = await c.browsers.create()
        calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("createBrowser", lambda: c.browsers.create()),
            ("get", lambda: c.browsers.retrieve(b.session_id)),
            ("update", lambda: c.browsers.update(b.session_id, name="x")),
            ("list_browsers", lambda: c.browsers.list().first_page()),
            ("deleteBrowser", lambda: c.browsers.delete(b.session_id)),
        ]
        for op, call_it in calls:
            fake.fail(op, status=500)
            with pytest.raises(ka.InternalServerError):
                await call_it()
    assert [r.operation for r in fake.requests if r.fault] == [
        "create",
        "retrieve",
        "update",
        "list_browsers",
        "delete",
    ]


async def test_undecodable_path_segment_answers_a_json_404(fake: FakeKernel) -> None:
    from yarl import URL

    async with aiohttp.ClientSession() as s:
        url = URL(f"{fake.base_url}/browsers/%FF/replays", encoded=True)
        async with s.get(url, headers={"Authorization": f"Bearer {fake.api_key}"}) as r:
            assert r.status == 404
            assert (await r.json())["code"] == "not_found"


async def test_ipv6_loopback_base_url_is_usable() -> None:
    async with FakeKernel(host="::1") as fake:
        assert fake.base_url == f"http://[::1]:{fake.port}"
        b = fake.create_browser()
        async with fake.client() as client:
            assert await client.browsers.replays.list(b) == []


async def test_sync_client_on_the_emulators_own_loop_is_refused() -> None:
    from kernel_sync import Kernel

    async with FakeKernel() as fake:
        url = fake.base_url
        # Its calls would block the very loop that has to answer them: refused at once.
        with pytest.raises(ka.KernelError, match=r"FakeKernel\.in_thread\(\)"):
            Kernel(api_key=fake.api_key, base_url=fake.base_url)
        with FakeKernel.in_thread() as other:  # served by its own thread: it works...
            with Kernel(api_key=other.api_key, base_url=other.base_url) as k:
                with pytest.warns(ka.KernelBlockingWarning):  # ...but blocks this loop meanwhile
                    assert k.browsers.replays.list(other.create_browser()) == []
    Kernel(api_key=fake.api_key, base_url=url).close()  # stopped: nothing to refuse


async def test_the_default_backend_is_in_memory_and_finalises_through_it() -> None:
    video = b"\0\0\0\x18ftypisom-not-really-a-video"
    async with FakeKernel(video=video, finalise_seconds=1.2) as fake:
        assert isinstance(fake.backend, InMemoryBackend) and fake.video == video
        b = fake.create_browser()  # on the emulator's own loop: the backend needs no waiting
        async with aiohttp.ClientSession() as s:
            st, _, body = await call(s, fake, "POST", f"/browsers/{b}/replays")
            rid = json.loads(body)["replay_id"]
            st, _, _ = await call(s, fake, "POST", f"/browsers/{b}/replays/{rid}/stop")
            stopped = asyncio.get_running_loop().time()
            st, h, _ = await call(s, fake, "GET", f"/browsers/{b}/replays/{rid}")
            assert (st, h["Retry-After"]) == (202, "2")  # ceil of what is left of 1.2 s
            while st == 202:
                await asyncio.sleep(0.05)
                st, h, body = await call(s, fake, "GET", f"/browsers/{b}/replays/{rid}")
            assert asyncio.get_running_loop().time() - stopped >= 1.1
            assert (st, h["Content-Type"], body) == (200, "video/mp4", video)
            # Nothing to drive in memory: its DevTools URL is a 501 saying why, recorded.
            st, _, body = await call(s, fake, "GET", f"/cdp/{b}?jwt=x")
            assert st == 501 and json.loads(body)["code"] == "not_implemented"
            assert "--chromium" in json.loads(body)["message"]
            assert fake.requests[-1].raw_path == f"/cdp/{b}?jwt=x"
            # Any positive viewport is accepted (a local Chromium bounds its own).
            st, _, _ = await call(
                s, fake, "POST", "/browsers", json={"viewport": {"width": 9000, "height": 1}}
            )
            assert st == 200


async def test_a_backend_instance_may_be_passed() -> None:
    memory = InMemoryBackend(b"v")
    async with FakeKernel(backend=memory, finalise_seconds=9) as fake, fake.client() as c:
        assert fake.backend is memory and fake.finalise_seconds == 0  # the instance's own
        b = fake.create_browser()
        r = await c.browsers.replays.start(b, max_duration_in_seconds=1)
        await asyncio.sleep(1.05)  # stopped by its max duration, noticed by the download
        assert await c.browsers.replays.download(r.replay_id, id=b) == b"v"
        assert fake.count("download") == 1  # finalising 0 s: no 202 first
