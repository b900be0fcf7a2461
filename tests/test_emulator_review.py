"""Issue 21, the emulator and its local Chromium: no DevTools port, nothing left in TMPDIR,
unreadable numbers are 400s, a first contact that explains itself, one ID shape and one
404 wording on every path."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import async_playwright

from kernel_async import InternalServerError, NotFoundError, Viewport
from kernel_async.testing import FakeKernel, InMemoryBackend
from kernel_async.testing._bridge import inactivity
from kernel_async.testing._cdp import CDPClient
from kernel_async.testing._chromium import (
    WORKDIR_PREFIX,
    LocalSetupError,
    marked_processes,
    workdir_root,
)
from kernel_async.testing._chromium_backend import ChromiumBackend
from kernel_async.testing._devtools_pipe import ROOT, PipeRouter
from kernel_async.testing._sessions import Refused, SessionTable, parse_whole_number

from .interrupt import sigint_default

pytestmark = pytest.mark.anyio

ROOT_DIR = Path(__file__).resolve().parent.parent


# -- 1. No DevTools endpoint without the token -----------------------------------------


def listening_tcp() -> dict[int, tuple[str, int]]:
    """Every listening TCP socket of this network namespace: inode -> (host, port)."""
    found = {}
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] != "0A":  # TCP_LISTEN
                    continue
                address, port = fields[1].split(":")
                host = "127.0.0.1" if family == 4 else "::1"
                if family == 4 and address != "0100007F":
                    host = "0.0.0.0"  # any other address: reach it on loopback anyway
                found[int(fields[9])] = (host, int(port, 16))
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[len("socket:[") : -1]))
    return inodes


async def devtools_answers(host: str, port: int) -> str:
    """What ``/json/version`` answers on a port (DevTools' HTTP endpoint), if anything."""
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://{'[::1]' if ':' in host else host}:{port}/json/version"
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                return f"{response.status} {(await response.text())[:200]}"
    except (aiohttp.ClientError, OSError) as exc:
        return f"no answer ({type(exc).__name__})"


def workdir(fake: FakeKernel, browser_id: str) -> str:
    backend = fake.backend
    assert isinstance(backend, ChromiumBackend)
    return str(backend.process(browser_id).workdir)


@pytest.mark.once
async def test_no_process_of_the_browser_listens_on_any_tcp_port() -> None:
    async with FakeKernel(backend="chromium") as fake, fake.client() as client:
        browser = await client.browsers.create(viewport=Viewport(320, 240))
        marker = workdir(fake, browser.session_id)
        assert browser.cdp_ws_url is not None
        async with async_playwright() as pw:  # a connection through the proxy, meanwhile
            connected = await pw.chromium.connect_over_cdp(browser.cdp_ws_url)
            assert await connected.contexts[0].pages[0].evaluate("1 + 1") == 2
            pids = marked_processes(marker)
            assert len(pids) > 1  # the browser and its helpers
            listening = listening_tcp()
            open_ports = {
                listening[inode]
                for pid in pids
                for inode in socket_inodes(pid)
                if inode in listening
            }
            answers = {p: await devtools_answers(*p) for p in open_ports}
            await connected.close()
    assert answers == {}, f"the browser listens, DevTools without the token: {answers}"


@pytest.mark.once
async def test_several_connections_share_the_pipe_each_with_its_own_session() -> None:
    red = "data:text/html,<body style='background:%23ff0000'>red</body>"
    async with FakeKernel(backend="chromium") as fake, fake.client() as client:
        browser = await client.browsers.create(viewport=Viewport(320, 240))
        url = browser.cdp_ws_url
        assert url is not None
        replay = await client.browsers.replays.start(browser.session_id)  # the backend's own
        async with async_playwright() as pw:
            first = await pw.chromium.connect_over_cdp(url)
            async with await CDPClient.connect(url) as raw:
                await first.contexts[0].pages[0].goto(red)
                targets = (await raw.send("Target.getTargets"))["targetInfos"]
                page = next(t for t in targets if t["type"] == "page")
                attach = {"targetId": page["targetId"], "flatten": True}
                session = (await raw.send("Target.attachToTarget", attach))["sessionId"]
                expr = {"expression": "document.body.textContent", "returnByValue": True}
                seen = await raw.send("Runtime.evaluate", expr, session_id=session)
                assert seen["result"]["value"] == "red"
                await first.close()  # one client leaving ends only its own sessions
                again = await raw.send("Runtime.evaluate", expr, session_id=session)
                assert again["result"]["value"] == "red"
            second = await pw.chromium.connect_over_cdp(url)
            assert await second.contexts[0].pages[0].evaluate("innerWidth") == 320
            await second.close()
        await client.browsers.replays.stop(replay.replay_id, id=browser.session_id)
        video = await client.browsers.replays.download(replay.replay_id, id=browser.session_id)
    assert video[4:8] == b"ftyp"


def test_router_gives_each_client_its_replies_and_its_sessions_events() -> None:
    router = PipeRouter()
    alice = router.add_client("B-alice")
    bob = router.add_client("B-bob")
    # Both clients use the same IDs: the wire IDs differ, the replies go back to each.
    to_alice = router.outgoing(alice, {"id": 1, "method": "Target.setAutoAttach"})
    to_bob = router.outgoing(bob, {"id": 1, "method": "Target.setAutoAttach"})
    ours = router.outgoing(ROOT, {"id": 1, "method": "Browser.getVersion"})
    assert to_alice["sessionId"] == "B-alice" and to_bob["sessionId"] == "B-bob"
    assert "sessionId" not in ours
    assert len({to_alice["id"], to_bob["id"], ours["id"]}) == 3
    reply = {"id": to_bob["id"], "result": {}, "sessionId": "B-bob"}
    assert router.incoming(reply) == (bob, {"id": 1, "result": {}})  # as on its own socket
    assert router.incoming({"id": ours["id"], "result": {"v": 1}}) == (
        ROOT,
        {"id": 1, "result": {"v": 1}},
    )
    assert router.incoming({"id": 999, "result": {}}) is None  # nobody asked
    # An auto-attached page: the event on Alice's browser session makes the page hers.
    attached = {
        "method": "Target.attachedToTarget",
        "params": {"sessionId": "P1", "targetInfo": {"type": "page"}},
        "sessionId": "B-alice",
    }
    assert router.incoming(attached) == (
        alice,
        {k: v for k, v in attached.items() if k != "sessionId"},
    )
    event = {"method": "Page.loadEventFired", "params": {}, "sessionId": "P1"}
    assert router.incoming(event) == (alice, event)
    created = {"method": "Target.targetCreated", "params": {}}
    assert router.incoming(created) == (ROOT, created)
    # A session attached by command is the asker's too (the reply names it).
    ask = router.outgoing(bob, {"id": 7, "method": "Target.attachToTarget", "params": {}})
    router.incoming({"id": ask["id"], "result": {"sessionId": "P2"}, "sessionId": "B-bob"})
    assert router.incoming({"method": "X.y", "sessionId": "P2"}) == (
        bob,
        {"method": "X.y", "sessionId": "P2"},
    )
    # A client that leaves takes its sessions and unanswered commands with it.
    pending = router.outgoing(alice, {"id": 8, "method": "Runtime.evaluate", "sessionId": "P1"})
    assert router.remove_client(alice) == "B-alice"
    assert router.incoming(event) is None
    assert router.incoming({"id": pending["id"], "result": {}, "sessionId": "P1"}) is None
    assert router.incoming({"method": "X.y", "sessionId": "P2"}) is not None  # Bob's stays


# -- 2. Nothing left in TMPDIR, and a long TMPDIR does not matter -----------------------


@pytest.fixture
def short_tmpdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A TMPDIR of this test's own, short enough to be used as it is."""
    path = Path(tempfile.mkdtemp(prefix="k", dir="/tmp"))
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            for leftover in path.iterdir():  # a failed test: leave no debris either
                subprocess.run(["rm", "-rf", str(leftover)], check=False)
            path.rmdir()


@pytest.mark.once
async def test_an_ended_browser_leaves_nothing_in_tmpdir(short_tmpdir: Path) -> None:
    async with FakeKernel(backend="chromium") as fake, fake.client() as client:
        browser = await client.browsers.create(viewport=Viewport(320, 240))
        marker = workdir(fake, browser.session_id)
        assert Path(marker).parent == short_tmpdir
        async with async_playwright() as pw:  # a page that uses the profile and the disk
            connected = await pw.chromium.connect_over_cdp(browser.cdp_ws_url or "")
            await connected.contexts[0].pages[0].set_content("<p>hello</p>")
            await connected.close()
        await client.browsers.delete(browser.session_id)  # a SIGKILL of the whole tree
        assert marked_processes(marker) == []
    assert sorted(p.name for p in short_tmpdir.iterdir()) == []


@pytest.mark.once
async def test_a_long_tmpdir_does_not_matter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    long = tmp_path / ("x" * 80)
    long.mkdir()
    monkeypatch.setenv("TMPDIR", str(long))
    monkeypatch.setattr(tempfile, "tempdir", str(long))
    async with FakeKernel(backend="chromium") as fake, fake.client(max_retries=0) as client:
        browser = await client.browsers.create(viewport=Viewport(320, 240))
        marker = workdir(fake, browser.session_id)
        assert len(marker) < 40  # a short private directory instead (0700)
        assert os.stat(marker).st_mode & 0o077 == 0
        await client.browsers.delete(browser.session_id)
    assert not Path(marker).exists()
    assert list(long.iterdir()) == []


def test_workdir_root_is_tmpdir_unless_too_long_for_chromiums_socket() -> None:
    anywhere = lambda path: True  # noqa: E731
    assert workdir_root("/tmp/k", ("/tmp",), anywhere) == "/tmp/k"
    assert workdir_root("/home/me/" + "t" * 60, ("/tmp", "/var/tmp"), anywhere) == "/tmp"
    only_var = lambda path: path == "/var/tmp"  # noqa: E731
    assert workdir_root("/" + "t" * 60, ("/tmp", "/var/tmp"), only_var) == "/var/tmp"
    with pytest.raises(LocalSetupError, match="set TMPDIR to a short directory"):
        workdir_root("/" + "t" * 60, ("/tmp",), lambda path: False)
    # The longest accepted root leaves room for the socket Chromium binds (103 bytes).
    fits = [n for n in range(1, 100) if workdir_root("/" + "a" * n, ("/",), anywhere) != "/"]
    longest = max(fits)
    socket = (
        "/"
        + "a" * longest
        + f"/{WORKDIR_PREFIX}12345678/t/org.chromium.Chromium.XXXXXX/SingletonSocket"
    )
    assert len(socket) == 103


# -- 3. Every numeric query parameter: an unreadable number is a 400 --------------------


@pytest.mark.parametrize(
    "text", ["²", "\u0661", "+1", " 1", "1_0", "1.0", "-1", "", "0x10", "9" * 30]
)
@pytest.mark.parametrize("name", ["limit", "offset"])
async def test_unreadable_numbers_in_queries_are_the_documented_400(
    fake: FakeKernel, name: str, text: str
) -> None:
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    async with aiohttp.ClientSession() as session:
        url = f"{fake.base_url}/browsers"
        async with session.get(url, params={name: text}, headers=headers) as response:
            body = await response.json()
    assert response.status == 400, body
    assert body["code"] == "bad_request"
    assert body["details"][0]["message"].startswith(f"{name} must be an integer")


def test_whole_numbers_are_ascii_digits_only() -> None:
    assert parse_whole_number("0") == 0
    assert parse_whole_number("0042") == 42
    for text in ("²", "\u0661\u0662", "\u0663", "+1", "1 ", "1_000", "", "9" * 19):
        assert parse_whole_number(text) is None, text


# -- 4. First contact ------------------------------------------------------------------


async def test_in_memory_cdp_says_it_needs_chromium_and_never_echoes_the_token(
    fake: FakeKernel,
) -> None:
    async with fake.client() as client:
        browser = await client.browsers.create()
    url = browser.cdp_ws_url
    assert url is not None
    token = url.split("jwt=", 1)[1]
    async with async_playwright() as pw:
        with pytest.raises(PlaywrightError) as caught:
            await pw.chromium.connect_over_cdp(url)
    message = str(caught.value)
    assert "501" in message and "--chromium" in message
    assert token not in message
    async with aiohttp.ClientSession() as session:
        http = url.replace("ws://", "http://")
        async with session.get(http, headers={"Upgrade": "websocket"}) as response:
            body = await response.json()
        assert response.status == 501 and body["code"] == "not_implemented"
        assert 'FakeKernel(backend="chromium")' in body["message"]
        # Any path: the 404 names the path, never its query.
        async with session.get(f"{fake.base_url}/live/x?jwt={token}") as response:
            text = await response.text()
        assert response.status == 404 and token not in text and "/live/x" in text


def test_the_emulator_banners_say_which_backend() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel_sync", "emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
        env=cli_env(),
    )
    try:
        assert proc.stdout is not None
        first, *lines = read_lines(proc.stdout, 5, timeout=60)
        browser_id = lines[-1].split("=", 1)[1].strip()
        base_url = lines[1].split("=", 1)[1].strip()
        key = lines[2].split("=", 1)[1].strip()
        got = subprocess.run(
            [sys.executable, "-m", "kernel_sync", "browsers", "get", browser_id, "--json"],
            capture_output=True,
            text=True,
            env=cli_env(KERNEL_BASE_URL=base_url, KERNEL_API_KEY=key),
            timeout=60,
        )
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert "in-memory backend" in first and "no CDP" in first
    assert "--chromium" in lines[0]
    assert json.loads(got.stdout)["timeout_seconds"] == 259_200  # kept until tried


@pytest.mark.once
def test_the_chromium_banner_says_so_and_its_browser_is_kept_and_drivable() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel_sync", "emulator", "--port", "0", "--chromium"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
        env=cli_env(),
    )
    try:
        assert proc.stdout is not None
        banner = read_lines(proc.stdout, 7, timeout=60)
        exports = dict(
            line.split()[1].split("=", 1) for line in banner if line.startswith("  export")
        )
        code = (
            "import os\n"
            "from playwright.sync_api import sync_playwright\n"
            "with sync_playwright() as pw:\n"
            "    b = pw.chromium.connect_over_cdp(os.environ['CDP_WS_URL'])\n"
            "    print(b.contexts[0].pages[0].evaluate('navigator.userAgent'))\n"
            "    b.close()\n"
        )
        driven = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=cli_env(CDP_WS_URL=exports["CDP_WS_URL"].strip("'")),
            timeout=60,
        )
    finally:
        proc.send_signal(2)
        rest, err = proc.communicate(timeout=60)
    assert "local Chromium backend" in banner[0]
    assert set(exports) == {"KERNEL_BASE_URL", "KERNEL_API_KEY", "BROWSER_ID", "CDP_WS_URL"}
    assert "kept 72 h" in banner[-1]
    assert "HeadlessChrome" in driven.stdout, driven.stderr
    assert (proc.returncode, rest, err) == (0, "stopped\n", "")


def read_lines(stream: IO[str], count: int, timeout: float) -> list[str]:
    """The first ``count`` lines, or as many as came within ``timeout`` (never hangs)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:  # no more than asked: the rest is for communicate()
        for _ in range(count):
            lines.put(stream.readline())

    threading.Thread(target=pump, daemon=True).start()
    out: list[str] = []
    deadline = time.monotonic() + timeout
    with contextlib.suppress(queue.Empty):
        while len(out) < count:
            out.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
    return out + [""] * (count - len(out))


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERNEL_", "BROWSER_ID"))}
    return env | extra


def run_emulator(
    *args: str, env: dict[str, str], prelude: str = ""
) -> subprocess.CompletedProcess[str]:
    code = (
        f"{prelude}\n"
        "from kernel_sync.__main__ import main\n"
        f"raise SystemExit(main({['emulator', '--port', '0', *args]!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"KERNEL_CHROMIUM": "/nonexistent/chrome"}, "KERNEL_CHROMIUM='/nonexistent/chrome'"),
        ({"PATH": "/nonexistent"}, "no Chromium found"),
    ],
)
def test_a_missing_chromium_is_one_error_line(env: dict[str, str], expected: str) -> None:
    done = run_emulator("--chromium", env=cli_env(**env))
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and expected in line


def test_without_the_local_extra_chromium_mode_refuses_to_start() -> None:
    block_pyav = "import sys; sys.modules['av'] = None  # as if PyAV were not installed"
    done = run_emulator("--chromium", env=cli_env(), prelude=block_pyav)
    assert done.returncode == 1, done.stdout
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and 'pip install "kernel-async[local]"' in line
    code = (
        f"{block_pyav}\nfrom kernel_async.testing import FakeKernel\nFakeKernel(backend='chromium')"
    )
    direct = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert "LocalSetupError" in direct.stderr and "kernel-async[local]" in direct.stderr


class FailingRecorder(InMemoryBackend):
    async def start_recording(
        self, browser_id: str, replay_id: str, *, framerate: int, max_duration: float | None
    ) -> None:
        raise RuntimeError("the encoder is broken")


async def test_a_recording_that_cannot_start_is_not_retried() -> None:
    async with FakeKernel(backend=FailingRecorder()) as fake, fake.client() as client:
        browser = fake.create_browser()
        with pytest.raises(InternalServerError, match="the encoder is broken") as caught:
            await client.browsers.replays.start(browser)
        assert caught.value.attempts == 1
        assert fake.count("start") == 1
        assert caught.value.headers.get("x-should-retry") == "false"
        assert fake.replays(browser) == []


def test_a_browser_ended_for_inactivity_says_so_in_its_404() -> None:
    table = SessionTable()
    session = table.add({})
    table.delete(session.session_id, inactivity(60))
    uses: list[Callable[[], object]] = [
        lambda: table.find(session.session_id),
        lambda: table.update(session.session_id, {}),
        lambda: table.delete(session.session_id),
    ]
    for use in uses:
        with pytest.raises(Refused, match="after 60 s of inactivity") as caught:
            use()
        assert caught.value.status == 404
        assert "was deleted at 20" in str(caught.value)


# -- 5. One ID shape and one 404 wording on every path ---------------------------------


async def test_ids_have_one_shape_whichever_path_made_them(fake: FakeKernel) -> None:
    async with fake.client() as client:
        by_api = (await client.browsers.create()).session_id
        by_fake = fake.create_browser()
        replay = await client.browsers.replays.start(by_fake)
        listed = await client.browsers.replays.list(by_fake)
    for browser_id in (by_api, by_fake):
        assert re.fullmatch(r"br_[0-9a-f]{16}", browser_id), browser_id
    assert re.fullmatch(r"rp_[0-9a-f]{16}", replay.replay_id)
    (ours,) = fake.replays(by_fake)
    assert ours["replay_view_url"] == listed[0].replay_view_url  # the same URL either way


async def status_and_message(
    session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str]
) -> tuple[int, str]:
    async with session.request(method, url, headers=headers, json={}) as response:
        body: Any = await response.json()
        return response.status, body["message"]


async def test_every_path_words_its_404_the_same_way(fake: FakeKernel) -> None:
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    b = f"{fake.base_url}/browsers"
    unknown = [
        ("GET", f"{b}/nope"),
        ("PATCH", f"{b}/nope"),
        ("DELETE", f"{b}/nope"),
        ("GET", f"{b}/nope/replays"),
        ("POST", f"{b}/nope/replays"),
        ("POST", f"{b}/nope/replays/rp_1/stop"),
        ("GET", f"{b}/nope/replays/rp_1"),
        ("GET", f"{fake.base_url}/cdp/nope?jwt=secret"),
    ]
    deleted = fake.create_browser()
    async with fake.client() as client:
        await client.browsers.delete(deleted)
        with pytest.raises(NotFoundError):
            await client.browsers.retrieve(deleted)
    gone = [
        ("GET", f"{b}/{deleted}"),
        ("PATCH", f"{b}/{deleted}"),
        ("POST", f"{b}/{deleted}/replays"),
        ("GET", f"{fake.base_url}/cdp/{deleted}?jwt=secret"),
    ]
    alive = fake.create_browser()
    missing_replay = [
        ("POST", f"{b}/{alive}/replays/rp_1/stop"),
        ("GET", f"{b}/{alive}/replays/rp_1"),
    ]
    async with aiohttp.ClientSession() as session:
        for method, url in unknown:
            assert await status_and_message(session, method, url, headers) == (
                404,
                "browser session 'nope' not found",
            ), (method, url)
        today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        for method, url in gone:
            status, message = await status_and_message(session, method, url, headers)
            assert status == 404, (method, url)
            assert message.startswith(f"browser session '{deleted}' was deleted at {today}")
        for method, url in missing_replay:
            assert await status_and_message(session, method, url, headers) == (
                404,
                "replay 'rp_1' not found",
            )
