"""The local Chromium backend's loose ends: Chromium's own output in the browser's supervisor
log (read as it comes, lines bounded, resumable), Chromium kept out of the user's home, and
download paths a DevTools client sends taken as paths of the browser's machine (its
sandbox), never of the host. Pure rules without sockets; real browsers marked ``once``."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import anyio
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from kernel_async import Viewport
from kernel_async.testing import FakeKernel
from kernel_async.testing._cdp_proxy import (
    REFUSED,
    CommandRefused,
    downloads_in_sandbox,
)
from kernel_async.testing._chromium import (
    CUT_MARK,
    MAX_LINE_BYTES,
    ChromiumStartError,
    OutputLines,
    chromium_env,
    launch_chromium,
)
from kernel_async.testing._machine import Machines
from kernel_async.testing._observe import SUPERVISOR, BrowserLogs
from kernel_async.testing._sandbox import resolve

pytestmark = pytest.mark.anyio

# -- pure rules --------------------------------------------------------------------------


def test_output_lines_split_at_line_ends_however_the_bytes_come() -> None:
    lines = OutputLines()
    assert lines.feed(b"one\r\ntw") == ["one"]
    assert lines.feed(b"o\n\nthr\xffee") == ["two", ""]
    assert lines.end() == ["thr\ufffdee"]  # the last line, undecodable bytes replaced
    assert lines.end() == []


def test_a_long_output_line_is_cut_and_its_rest_dropped() -> None:
    lines = OutputLines(max_bytes=8)
    assert lines.feed(b"0123456789abc") == ["01234567" + CUT_MARK]  # held back no further
    assert lines.feed(b"more of the same line") == []
    assert lines.feed(b" end\nnext\n") == ["next"]
    assert lines.feed(b"0123456789\nok\n") == ["01234567" + CUT_MARK, "ok"]
    assert lines.feed(b"x" * 20) == ["x" * 8 + CUT_MARK]
    assert lines.end() == []  # the cut line's rest never comes out as a line


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=8))
def test_output_lines_do_not_depend_on_how_the_output_is_split(
    data: bytes, cuts: list[int]
) -> None:
    whole = OutputLines(max_bytes=16)
    expected = whole.feed(data) + whole.end()
    pieces = OutputLines(max_bytes=16)
    got: list[str] = []
    points = sorted({min(c, len(data)) for c in cuts})
    for start, stop in zip([0, *points], [*points, len(data)], strict=True):
        got += pieces.feed(data[start:stop])
    assert got + pieces.end() == expected
    assert all(len(line.encode()) <= 16 * 3 + len(CUT_MARK) for line in expected)


def test_chromium_writes_its_home_and_xdg_directories_in_its_workdir(tmp_path: Path) -> None:
    user = {"HOME": "/home/someone", "XDG_CONFIG_HOME": "/home/someone/.config", "LANG": "C"}
    env = chromium_env(user, tmp_path)
    assert env["LANG"] == "C"  # the rest of the environment is kept
    for name in ("HOME", "TMPDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME",
                 "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):  # fmt: skip
        assert Path(env[name]).is_relative_to(tmp_path), name


def test_a_log_keeps_its_last_lines_and_ids_stay_line_numbers() -> None:
    logs = BrowserLogs(max_lines=10)
    for n in range(1, 26):
        logs.add("br_1", f"line {n}")
    first, kept = logs.lines("br_1", SUPERVISOR, 0)
    assert 10 <= len(kept) <= 11 and first + len(kept) == 25  # the oldest went, in steps
    assert [line["message"] for line in kept] == [f"line {n}" for n in range(first + 1, 26)]
    assert logs.lines("br_1", SUPERVISOR, 22)[0] == 22  # a resume from a kept line: as before
    assert [line["message"] for line in logs.lines("br_1", SUPERVISOR, 22)[1]] == [
        "line 23",
        "line 24",
        "line 25",
    ]
    assert logs.lines("br_1", SUPERVISOR, 2)[0] == first  # from one no longer kept: the oldest
    assert logs.lines("br_2", SUPERVISOR, 0) == (0, [])


def behaviour(path: Any, method: str = "Browser.setDownloadBehavior") -> dict[str, Any]:
    return {"id": 7, "method": method, "params": {"behavior": "allow", "downloadPath": path}}


def test_a_download_path_is_a_path_of_the_browsers_machine(tmp_path: Path) -> None:
    root = str(tmp_path / "sandbox")
    rule = functools.partial(downloads_in_sandbox, resolve=functools.partial(resolve, root))
    sent = rule(behaviour("/tmp/downloads"))
    assert sent == {
        "id": 7,
        "method": "Browser.setDownloadBehavior",
        "params": {"behavior": "allow", "downloadPath": f"{root}/tmp/downloads"},
    }
    page = {**behaviour("/home/kernel/./dl/../Downloads/", "Page.setDownloadBehavior")}
    page["sessionId"] = "S1"
    assert rule(page)["params"]["downloadPath"] == f"{root}/home/kernel/Downloads"
    assert rule(page)["sessionId"] == "S1"
    # Nothing else changes: other commands, or a behaviour that writes nowhere.
    other = {"id": 8, "method": "Page.navigate", "params": {"url": "file:///tmp/downloads"}}
    assert rule(other) is other
    deny = {"id": 9, "method": "Browser.setDownloadBehavior", "params": {"behavior": "deny"}}
    assert rule(deny) is deny
    assert rule({"id": 10, "method": "Browser.setDownloadBehavior"}) == {
        "id": 10,
        "method": "Browser.setDownloadBehavior",
    }


@pytest.mark.parametrize(
    "path", ["/../etc", "/tmp/../../home", "downloads", "", "~/Downloads", "/a\x00b", 3]
)
def test_a_download_path_leading_out_is_refused_with_a_devtools_error(
    tmp_path: Path, path: Any
) -> None:
    rule = functools.partial(downloads_in_sandbox, resolve=functools.partial(resolve, tmp_path))
    command = {**behaviour(path), "sessionId": "S1"}
    with pytest.raises(CommandRefused) as refused:
        rule(command)
    reply = refused.value.reply(command)
    assert reply["id"] == 7 and reply["sessionId"] == "S1"
    assert reply["error"]["code"] == REFUSED and "downloadPath" in reply["error"]["message"]


@given(st.text(max_size=40))
def test_every_download_path_lands_inside_the_sandbox_or_is_refused(path: str) -> None:
    root = "/sandbox/br_1"
    try:
        sent = downloads_in_sandbox(behaviour(path), functools.partial(resolve, root))
    except CommandRefused:
        return
    host = os.path.normpath(sent["params"]["downloadPath"])
    assert host == root or host.startswith(root + "/")


async def test_a_link_leading_out_of_the_sandbox_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    machines = Machines(lambda: True)
    try:
        rule = functools.partial(
            downloads_in_sandbox, resolve=functools.partial(machines.directory, "br_1")
        )
        made = rule(behaviour("/tmp/downloads/new"))["params"]["downloadPath"]
        assert os.path.isdir(made) and made.endswith("/tmp/downloads/new")
        os.symlink(outside, os.path.join(made, "out"))
        with pytest.raises(CommandRefused):
            rule(behaviour("/tmp/downloads/new/out/x"))
        assert list(outside.iterdir()) == []
    finally:
        await machines.aclose()


CHATTY = """#!/bin/sh
head -c 1048576 /dev/zero | tr '\\0' x >&2
echo >&2
i=0
while [ $i -lt 3000 ]; do echo "line $i"; i=$((i + 1)); done
echo "[1:1:FATAL:thing.cc(1)] it broke" >&2
exit 1
"""


async def test_a_launched_browsers_output_is_read_as_it_comes_and_explains_its_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Far more than a pipe holds before its first answer: unread, it would block forever.
    chatty = tmp_path / "chatty"
    chatty.write_text(CHATTY)
    chatty.chmod(0o755)
    workdirs = tmp_path / "w"
    workdirs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(workdirs))
    said: list[str] = []
    with anyio.fail_after(30), pytest.raises(ChromiumStartError, match="it broke"):
        await launch_chromium(str(chatty), width=320, height=240, on_output=said.append)
    assert said[0] == "x" * MAX_LINE_BYTES + CUT_MARK
    assert said[1:-1] == [f"line {i}" for i in range(3000)]
    assert said[-1] == "[1:1:FATAL:thing.cc(1)] it broke"
    assert list(workdirs.iterdir()) == []


# -- real browsers -------------------------------------------------------------------------


def data_url(html: str) -> str:
    return "data:text/html," + quote(html)


@pytest.mark.once
async def test_chromiums_output_follows_in_the_supervisor_log_and_resumes_exactly_once() -> None:
    marker = "kernel-line-" + secrets.token_hex(4)
    page = data_url(f"<script>for (let i = 1; i <= 30; i++) console.log('{marker}-' + i)</script>")
    async with FakeKernel(backend="chromium") as fake, fake.client(max_retries=0) as client:
        b = (await client.browsers.create(viewport=Viewport(320, 180), start_url=page)).session_id
        # Three cuts after 2 events each: the stream resumes with Last-Event-ID each time.
        fake.fail("browsers.logs.stream", status=None, drop_after=2, times=3)
        before = len(fake.requests)
        stream = await client.browsers.logs.stream(b, source="supervisor", follow=True)
        messages: list[str] = []
        async with stream:
            with anyio.fail_after(60):
                async for event in stream:
                    assert event.message is not None
                    messages.append(event.message)
                    if event.message.startswith("chromium: ") and f'"{marker}-30"' in event.message:
                        break
        assert stream.reconnects == 3
        resumed = [r.headers.get("Last-Event-ID") for r in fake.requests[before:]]
        assert resumed == [None, "2", "4", "6"]
        # Every line of the log, once, in order; Chromium's own are tagged as its.
        _, log = fake.logs.lines(b, SUPERVISOR, 0)
        assert messages == [line["message"] for line in log[: len(messages)]]
        said = re.compile(rf'^chromium: \[.*CONSOLE.*\] "{marker}-(\d+)"')
        console = [int(m[1]) for m in map(said.match, messages) if m is not None]
        assert console == list(range(1, 31))
        # A follower ends when the browser does.
        stream = await client.browsers.logs.stream(b, source="supervisor", follow=True)
        async with stream:
            await client.browsers.delete(b)
            with anyio.fail_after(30):
                tail = [e.message async for e in stream]
        assert f"browser {b} ended" in tail, tail[-6:]


@pytest.mark.once
async def test_chromium_leaves_the_users_home_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, runtime = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))  # the emulator passes its environment on
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    page = data_url("<h1>hello</h1><script>console.log('hi')</script>")
    async with FakeKernel(backend="chromium") as fake, fake.client(max_retries=0) as client:
        b = (await client.browsers.create(viewport=Viewport(320, 180), start_url=page)).session_id
        png = await client.browsers.computer.capture_screenshot(b)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        await client.browsers.delete(b)
    assert list(home.iterdir()) == []
    assert list(runtime.iterdir()) == []


class Attachment:
    """A loopback site serving one attachment, under a name no other run uses, and a page
    whose top-left corner links to it."""

    def __init__(self) -> None:
        self.name = f"kernel-async-{secrets.token_hex(6)}.bin"
        self.data = os.urandom(20 * 1024)

    async def page(self, request: web.Request) -> web.Response:
        html = (
            '<body style="margin:0"><a href="/file" style="display:block;width:200px;'
            'height:100px;background:#00f">get</a></body>'
        )
        return web.Response(text=html, content_type="text/html")

    async def file(self, request: web.Request) -> web.Response:
        disposition = f'attachment; filename="{self.name}"'
        return web.Response(
            body=self.data,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": disposition,
            },
        )


@pytest.fixture
async def attachment() -> AsyncIterator[tuple[Attachment, str]]:
    site = Attachment()
    app = web.Application()
    app.router.add_get("/page", site.page)
    app.router.add_get("/file", site.file)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    try:
        yield site, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def command(ws: aiohttp.ClientWebSocketResponse, id_: int, method: str, **params: Any) -> Any:
    """Send a DevTools command; its answer (events before it are skipped)."""
    await ws.send_str(json.dumps({"id": id_, "method": method, "params": params}))
    while True:
        message = json.loads((await ws.receive(timeout=30)).data)
        if message.get("id") == id_:
            return message


@pytest.mark.once
async def test_a_devtools_clients_download_path_is_in_the_browsers_sandbox(
    attachment: tuple[Attachment, str],
) -> None:
    site, origin = attachment
    host_copy = Path("/tmp/downloads") / site.name  # where it went before: the host's own
    try:
        async with FakeKernel(backend="chromium") as fake, fake.client(max_retries=0) as client:
            browser = await client.browsers.create(
                viewport=Viewport(320, 180), start_url=f"{origin}/page"
            )
            b = browser.session_id
            assert browser.cdp_ws_url is not None
            async with aiohttp.ClientSession() as http, http.ws_connect(browser.cdp_ws_url) as ws:
                # As Kernel's docs tell users to: the VM's /tmp/downloads.
                answer = await command(
                    ws, 1, "Browser.setDownloadBehavior", behavior="allow",
                    downloadPath="/tmp/downloads",
                )  # fmt: skip
                assert answer.get("result") == {}, answer
                await client.browsers.computer.click_mouse(b, x=100, y=50)  # follow the link
                deadline = time.monotonic() + 30
                names: list[str] = []
                while site.name not in names and time.monotonic() < deadline:
                    assert not host_copy.exists()
                    await asyncio.sleep(0.05)
                    listed = await client.browsers.fs.list_files(b, path="/tmp/downloads")
                    names = [f.name for f in listed]
                assert names == [site.name]
                path = f"/tmp/downloads/{site.name}"
                assert await client.browsers.fs.read_file(b, path=path) == site.data
                # A path out of the machine is answered with an error, never passed on.
                refused = await command(
                    ws, 2, "Browser.setDownloadBehavior", behavior="allow",
                    downloadPath="/../../tmp",
                )  # fmt: skip
                assert refused["error"]["code"] == REFUSED
            await client.browsers.delete(b)
        assert not host_copy.exists()
    finally:
        host_copy.unlink(missing_ok=True)  # only if this test failed: the name is its own


async def test_a_follower_gets_every_line_until_the_end_beside_a_lingering_one(
    fake: FakeKernel,
) -> None:
    async with fake.client(max_retries=0) as client:
        b = (await client.browsers.create()).session_id
        for n in range(300):
            fake.log(b, f"line {n}")
        # A follower that left: the server notices only at its next write, and waits meanwhile.
        gone = await client.browsers.logs.stream(b, source="supervisor", follow=True)
        async with gone:
            async for _ in gone:
                break
        stream = await client.browsers.logs.stream(b, source="supervisor", follow=True)
        async with stream:
            await client.browsers.delete(b)  # while the server is still sending the backlog
            with anyio.fail_after(30):
                got = [e.message async for e in stream]
    assert got == [f"browser {b} created", *(f"line {n}" for n in range(300)), f"browser {b} ended"]
