"""The CLI against the emulator: in-process through `main(argv, out, err)` where that is
enough, through real subprocesses (and a pty) for signals, terminals and the script."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import AnyStr

import pytest

from kernel_async.testing import FakeKernel
from kernel_async.testing._chromium import marked_processes
from kernel_sync.__main__ import main
from kernel_sync._cli import Commands, Context, run
from kernel_sync._progress import size_text, watch_finalising
from tests.interrupt import sigint_default


@pytest.fixture
def fake() -> Iterator[FakeKernel]:
    with FakeKernel.in_thread(finalise_seconds=0.05) as server:
        yield server


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self) -> object:
        return json.loads(self.out)

    def error(self) -> dict[str, object]:
        assert self.out == "" and len(self.err.splitlines()) == 1, self.err
        error: dict[str, object] = json.loads(self.err)["error"]
        return error


def call(fake: FakeKernel | None, *args: str, key: str | None = None) -> Result:
    """Run the CLI in-process (the conftest removes KERNEL_* from the environment)."""
    flags = []
    if fake is not None:
        flags = ["--base-url", fake.base_url, "--api-key", key or fake.api_key]
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, *flags], out, err)
    return Result(code, out.getvalue(), err.getvalue())


def env_for(fake: FakeKernel | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERNEL_", "BROWSER_ID"))}
    if fake is not None:
        env |= {"KERNEL_BASE_URL": fake.base_url, "KERNEL_API_KEY": fake.api_key}
    return env | extra


def cli(fake: FakeKernel | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernel_sync", *args],
        capture_output=True,
        text=True,
        env=env_for(fake),
        timeout=60,
    )


def stopped_replay(fake: FakeKernel) -> tuple[str, str]:
    b = fake.create_browser()
    rid = call(fake, "start", b).out.strip()
    assert call(fake, "stop", b, rid).code == 0
    return b, rid


def test_full_flow_text_and_json(fake: FakeKernel, tmp_path: Path) -> None:
    b = fake.create_browser()
    started = call(fake, "start", b, "--framerate", "5", "--audio")
    assert started.code == 0, started.err
    rid = started.out.strip()
    assert fake.requests[-1].body == b'{"framerate": 5, "record_audio": true}'
    table = call(fake, "list", b)
    assert table.out.splitlines()[0].split()[:2] == ["REPLAY", "ID"]
    assert rid in table.out and "recording" in table.out
    assert call(fake, "--json", "stop", b, rid).json() == {"stopped": rid}
    listed = call(fake, "--json", "list", b).json()
    assert isinstance(listed, list) and listed[0]["replay_id"] == rid and listed[0]["finished_at"]
    out = tmp_path / "v.mp4"
    dl = call(fake, "--json", "download", b, rid, "-o", str(out))
    assert dl.code == 0, dl.err
    assert dl.json() == {"path": str(out), "bytes": len(fake.video)}
    assert out.read_bytes() == fake.video
    assert dl.err == ""  # no progress bar off a terminal
    text = call(fake, "download", b, rid, "-o", str(out))
    assert text.out == f"saved {out} ({size_text(len(fake.video))})\n"


def test_json_is_accepted_before_and_after_the_command(fake: FakeKernel) -> None:
    b, rid = stopped_replay(fake)
    before = call(fake, "--json", "list", b)
    after = call(fake, "list", b, "--json")
    assert before.json() == after.json()
    assert call(fake, "stop", "--json", b, rid).json() == {"stopped": rid}
    # The client options work on either side too.
    done = main(["--api-key", fake.api_key, "list", b, "--base-url", fake.base_url, "--json"])
    assert done == 0


def test_api_errors_exit_1_in_one_line_or_one_json_object(fake: FakeKernel) -> None:
    b = fake.create_browser()
    res = call(fake, "stop", b, "missing")
    assert res.code == 1
    assert res.err.splitlines() == ["error: 404 not_found: replay 'missing' not found (1 attempt)"]
    res = call(fake, "stop", b, "missing", "--json")
    assert res.code == 1
    assert res.error() == {
        "type": "NotFoundError",
        "message": "404 not_found: replay 'missing' not found (1 attempt)",
        "status": 404,
        "code": "not_found",
        "attempts": 1,
    }
    res = call(fake, "list", b, key="wrong-key")
    assert res.code == 1 and "401 unauthorized" in res.err
    assert "wrong-key" not in res.err + res.out


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["start", "b", "--framerate", "0"], "--framerate"),
        (["start", "b", "--max-duration", "0"], "--max-duration"),
        (["start", "b", "--max-duration", "ten"], "--max-duration"),
        (["start", ".."], "BROWSER"),
        (["stop", "b", ""], "REPLAY"),
        (["list", "b", "--api-key", ""], "--api-key"),
        (["list", "b", "--base-url", "ftp://x"], "--base-url"),
        (["list", "b", "--timeout", "-1"], "--timeout"),
        (["--max-retries", "-1", "list", "b"], "--max-retries"),
        (["emulator", "--port", "x"], "--port"),
        (["emulator", "--port", "99999"], "--port"),
        (["stop", "only-one-arg"], "REPLAY"),
        (["frobnicate"], "frobnicate"),
        ([], "COMMAND"),
    ],
)
def test_usage_errors_exit_2_and_name_the_flag(args: list[str], named: str) -> None:
    res = call(None, *args)
    assert res.code == 2
    assert res.err.startswith("usage: kernel-replays")
    assert named in res.err.splitlines()[-1]
    for sdk_name in ("max_duration_in_seconds", "api_key", "base_url", "max_retries", " id "):
        assert sdk_name not in res.err
    as_json = call(None, *args, "--json")
    assert as_json.code == 2
    error = as_json.error()
    assert error["type"] == "usage" and named in str(error["message"])


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["browsers", "list", "--page-size", "101"], "--page-size"),
        (["browsers", "create", "--timeout-seconds", "999999999"], "--timeout-seconds"),
        (["browsers", "create", "--name", ""], "--name"),
        (["browsers", "create", "--viewport", "0x0"], "--viewport"),
    ],
)
def test_values_the_sdk_refuses_are_usage_errors_of_their_flag(
    fake: FakeKernel, args: list[str], named: str
) -> None:
    # Checked by the SDK before anything is sent, yet still a usage error of the flag.
    res = call(fake, *args)
    assert res.code == 2, res.err
    assert named in res.err and res.out == ""
    as_json = call(fake, *args, "--json")
    assert as_json.code == 2 and named in str(as_json.error()["message"])
    assert fake.count("create") == 0


def test_emulator_on_a_port_in_use_says_what_to_do() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        res = call(None, "emulator", "--port", str(taken.getsockname()[1]))
    assert res.code == 1
    assert "is in use" in res.err and "--port 0" in res.err and "Traceback" not in res.err


def test_base_url_the_sdk_refuses_is_a_usage_error() -> None:
    res = call(None, "list", "b", "--api-key", "k", "--base-url", "http://user@127.0.0.1:9")
    assert res.code == 2 and "--base-url" in res.err, res.err


def test_missing_key_names_the_flag_and_the_variable() -> None:
    res = call(None, "list", "b")
    assert res.code == 1
    assert res.err == "error: no API key: pass --api-key or set KERNEL_API_KEY\n"
    assert call(None, "list", "b", "--json").error()["message"] == (
        "no API key: pass --api-key or set KERNEL_API_KEY"
    )


def test_clear_text_warning_is_one_clean_line(fake: FakeKernel) -> None:
    b = fake.create_browser()
    # 0.0.0.0 reaches this machine's loopback server but is not a loopback address,
    # so the SDK warns that a key would travel in clear text.
    url = f"http://0.0.0.0:{fake.port}"
    res = call(None, "list", b, "--base-url", url, "--api-key", fake.api_key)
    assert res.code == 0, res.err
    assert res.err.splitlines() == [
        f"warning: base_url {url!r} uses plain http to a non-loopback host: the API key "
        "would travel in clear text. Use https."
    ]
    res = call(None, "--json", "list", b, "--base-url", url, "--api-key", fake.api_key)
    assert "clear text" in json.loads(res.err)["warning"]


def test_missing_output_directory_names_the_users_path(fake: FakeKernel, tmp_path: Path) -> None:
    b, rid = stopped_replay(fake)
    target = tmp_path / "nope" / "v.mp4"
    res = call(fake, "download", b, rid, "-o", str(target))
    assert res.code == 1
    assert res.err == f"error: no such directory to save into: {tmp_path / 'nope'}\n"
    assert list(tmp_path.iterdir()) == []


def test_list_shows_times_with_their_zone(fake: FakeKernel) -> None:
    b, _ = stopped_replay(fake)
    # A POSIX TZ string needs no zone database: zone "XYZ", 3 hours east of UTC.
    env = env_for(fake, TZ="XYZ-3")
    done = subprocess.run(
        [sys.executable, "-m", "kernel_sync", "list", b],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    row = done.stdout.splitlines()[1].split()
    assert row[3] == "XYZ" and row[6] == "XYZ", done.stdout  # started and finished


def test_help_describes_arguments_with_units(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["start", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "BROWSER browser session ID" in text
    assert "--framerate FPS frames per second" in text
    assert "--max-duration SECONDS" in text and "after this many seconds" in text
    assert "before or after the command" in text
    top = cli(None, "--help").stdout
    assert "130 interrupted" in top and '{"error":' in top and "141 output closed" in top
    assert "--version" in top


def test_download_help_names_the_file_as_its_usage_shows_it() -> None:
    text = subprocess.run(
        [sys.executable, "-m", "kernel_sync", "download", "--help"],
        capture_output=True,
        text=True,
        env=env_for(None, COLUMNS="80"),
        timeout=60,
    ).stdout
    assert "-o FILE" in text and "beside FILE" in text
    assert "OUTPUT" not in text
    assert max(len(line) for line in text.splitlines()) <= 100  # no unwrapped paragraph


def test_other_modules_can_register_commands() -> None:
    def register(commands: Commands) -> None:
        p = commands.add("hello", help="say hello", run=hello, client=False)
        p.add_argument("name")

    def hello(ctx: Context) -> int:
        ctx.emit({"hello": ctx.args.name}, f"hello {ctx.args.name}")
        return 0

    out, err = io.StringIO(), io.StringIO()
    assert run([register], ["hello", "you", "--json"], out=out, err=err) == 0
    assert json.loads(out.getvalue()) == {"hello": "you"}
    assert run([register], ["hello"], out=out, err=err) == 2
    assert "name" in err.getvalue()


def test_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo.mp4"
    res = cli(None, "demo", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert "status 503" in res.stdout and "status 429" in res.stdout
    assert "stopped after 3 attempts" in res.stdout
    assert out.read_bytes()[4:8] == b"ftyp"
    # -o names every file the demo writes: the recorded session's video is named after it.
    session = tmp_path / "demo-session.mp4"
    assert sorted(tmp_path.iterdir()) == [session, out]
    assert session.read_bytes()[4:8] == b"ftyp"
    summary = json.loads(cli(None, "demo", "-o", str(out), "--json").stdout)
    flow1, flow2 = summary["call_by_call"], summary["recorded_session"]
    assert flow1["stop_attempts"] == 3 and len(flow1["retries"]) == 2
    assert (flow1["file"], flow1["bytes"]) == (str(out), out.stat().st_size)
    assert flow1["download_polls"] == flow1["requests"].count("download") >= 2
    assert flow1["requests"][:2] == ["create", "start"] and flow1["requests"][-1] == "delete"
    assert flow2["file"] == str(session) and flow2["browsers_left"] == 0
    assert flow2["steps"] == ["create", "start", "stop", "download", "delete"]
    assert flow2["requests"].count("create") == 1  # its own requests only
    # The text summary keeps the two flows apart too.
    text = res.stdout[res.stdout.index("\nsummary\n") :]
    first, second = text.split("  2. ")
    assert str(out) in first and str(session) not in first and "stop " in first
    assert str(session) in second and "stop " not in second


@contextlib.contextmanager
def ended(proc: subprocess.Popen[AnyStr]) -> Iterator[subprocess.Popen[AnyStr]]:
    """The process, killed on the way out if it is still running (a failed assertion)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _serve_emulator(*args: str, options: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kernel_sync", *args, "emulator", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
        env=env_for(None),
    )


def test_emulator_json_prints_only_json_and_stops_cleanly() -> None:
    with ended(_serve_emulator("--json")) as proc:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        env = env_for(None, KERNEL_BASE_URL=info["base_url"], KERNEL_API_KEY=info["api_key"])
        res = subprocess.run(
            [sys.executable, "-m", "kernel_sync", "start", info["browser"]],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("rp_")
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert rest == "" and err == ""


def test_emulator_text_prints_exports_and_stops_on_sigterm() -> None:
    with ended(_serve_emulator()) as proc:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(5)]
        proc.terminate()
        rest, err = proc.communicate(timeout=30)
    exports = [line.split()[1].split("=")[0] for line in lines if "export" in line]
    assert exports == ["KERNEL_BASE_URL", "KERNEL_API_KEY", "BROWSER_ID"]
    assert proc.returncode == 0 and rest == "stopped\n" and err == ""


def _browser_workdirs(parent: int) -> list[str]:
    """The workdirs of the local Chromium browsers whose parent is `parent`."""
    found = []
    for pid in marked_processes():
        with contextlib.suppress(OSError):
            if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) != parent:
                continue
            for arg in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0"):
                if arg.startswith("--user-data-dir="):
                    found.append(str(Path(arg.split("=", 1)[1]).parent))
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
@pytest.mark.once  # a real browser
def test_emulator_chromium_serves_a_real_browser_that_ends_with_it(sig: signal.Signals) -> None:
    with ended(_serve_emulator("--json", options=("--chromium",))) as proc:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        (workdir,) = _browser_workdirs(proc.pid)  # the browser the emulator created at start
        assert info["browser"] and marked_processes(workdir)
        proc.send_signal(sig)
        rest, err = proc.communicate(timeout=60)
    deadline = time.monotonic() + 20
    while marked_processes(workdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marked_processes(workdir) == []  # kill -9 too: the parent-death signal
    if sig == signal.SIGINT:  # a clean stop: exit 0, nothing more printed, files removed
        assert (proc.returncode, rest, err) == (0, "", "")
        assert not Path(workdir).exists()
    else:
        shutil.rmtree(workdir, ignore_errors=True)  # a killed emulator could not clean up


@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_exits_130(fake: FakeKernel, as_json: bool) -> None:
    b = fake.create_browser()
    fake.fail("list", status=None, delay=30)  # the call hangs until interrupted
    flags = ["--json"] if as_json else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel_sync", "list", b, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
        env=env_for(fake),
    )
    with ended(proc):
        deadline = time.monotonic() + 30
        while fake.count("list") < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert out == ""
    if as_json:
        assert json.loads(err) == {"error": {"type": "interrupted", "message": "interrupted"}}
    else:
        assert err == "interrupted\n"


@pytest.mark.parametrize(
    "args",
    [
        ["browsers", "list"],
        ["list", "BROWSER"],
        ["--json", "browsers", "list"],
        ["start", "BROWSER"],
        ["--help"],
        ["--version"],
    ],
)
def test_output_closed_before_the_first_line_ends_quietly(
    fake: FakeKernel, args: list[str]
) -> None:
    browser = fake.create_browser()
    argv = [browser if a == "BROWSER" else a for a in args]
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written: every write fails
    try:
        done = subprocess.run(
            [sys.executable, "-m", "kernel_sync", *argv],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=env_for(fake),
            timeout=60,
        )
    finally:
        os.close(write)
    # As a tool SIGPIPE ended shows in a shell; no "error:", no "Exception ignored".
    assert (done.returncode, done.stderr) == (141, "")


def test_head_reading_one_line_ends_the_listing_quietly(fake: FakeKernel) -> None:
    # `kernel-replays browsers list | head -1`, with more rows than a pipe holds (64 KiB):
    # the CLI is still writing when the reader leaves.
    for _ in range(1200):
        fake.create_browser()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel_sync", "browsers", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(fake),
    )
    with proc, ended(proc):  # ended first (a kill if need be), then the pipes closed
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=60)
    assert first.split()[:2] == [b"SESSION", b"ID"]
    assert (proc.returncode, err) == (141, b"")


def test_version() -> None:
    from kernel_async import __version__

    done = cli(None, "--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"kernel-replays {__version__}\n", "")
    assert __version__ == importlib.metadata.version("kernel-async")


def _download_on_a_pty(
    fake: FakeKernel, out: Path, *python_args: str, finalising: bool = True, **env: str
) -> tuple[int, str, str]:
    """Run a download whose stderr is a terminal; returns (exit code, stdout, terminal).
    With `finalising`, the API first answers two 202s (injected: however slowly the
    process starts, they come), else at once with the video."""
    import pty

    b = fake.create_browser()
    rid = call(fake, "start", b).out.strip()
    assert call(fake, "stop", b, rid).code == 0
    assert call(fake, "download", b, rid, "-o", str(out)).code == 0  # waits until it is ready
    if finalising:
        fake.fail("download", status=202, retry_after=0.2, times=2)
    polls = fake.count("download")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, *python_args, "download", b, rid, "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=follower,
        env=env_for(fake, TERM="xterm", COLUMNS="120", **env),
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.stdout is not None
    stdout = proc.stdout.read().decode()
    proc.stdout.close()
    proc.wait(timeout=60)
    os.close(leader)
    assert fake.count("download") - polls == (3 if finalising else 1)  # 202, 202, 200
    return proc.returncode, stdout, b"".join(chunks).decode()


BLOCK_RICH = (
    "import sys; sys.modules['rich'] = None; "
    "from kernel_sync.__main__ import main; raise SystemExit(main())"
)
RICH, PLAIN = ("-m", "kernel_sync"), ("-c", BLOCK_RICH)


def test_download_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    with FakeKernel.in_thread(finalise_seconds=0.05) as fake:
        out = tmp_path / "v.mp4"
        code, stdout, screen = _download_on_a_pty(fake, out, *RICH)
        size = size_text(len(fake.video))
    assert code == 0
    assert stdout == f"saved {out} ({size})\n"
    assert screen.index("requesting the video…") < screen.index("(finalising)…")  # after a 202
    # One unit system: the bar, like the result line, in binary units.
    assert "downloaded" in screen and "100%" in screen and f"{size} of {size}" in screen
    assert "kB" not in screen and "bytes" not in screen


def test_download_progress_plain_without_rich(tmp_path: Path) -> None:
    with FakeKernel.in_thread(finalise_seconds=0.05) as fake:
        out = tmp_path / "v.mp4"
        code, stdout, screen = _download_on_a_pty(fake, out, *PLAIN)
        size = size_text(len(fake.video))
    assert code == 0, screen
    assert size == "2.8 KiB" and stdout == f"saved {out} ({size})\n"
    assert screen.startswith("\rrequesting the video…")
    assert "\rwaiting for the video (finalising)…" in screen
    assert f"\rdownloaded {size} in " in screen and "\x1b" not in screen


@pytest.mark.parametrize("display", [RICH, PLAIN], ids=["rich", "plain"])
def test_download_of_a_ready_video_never_says_finalising(
    tmp_path: Path, display: tuple[str, str]
) -> None:
    with FakeKernel.in_thread(finalise_seconds=0.05) as fake:
        # KERNEL_LOG=info: the 202 watch must not let the SDK's debug lines through.
        code, _, screen = _download_on_a_pty(
            fake, tmp_path / "v.mp4", *display, finalising=False, KERNEL_LOG="info"
        )
    assert code == 0, screen
    assert "requesting the video…" in screen and "downloaded" in screen
    assert "finalis" not in screen and "DEBUG" not in screen


def test_finalising_watch_leaves_the_sdk_log_as_it_was() -> None:
    import logging

    logger = logging.getLogger("kernel_async")
    seen: list[str] = []
    shown: list[int] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            shown.append(record.levelno)

    keep = Keep()
    logger.addHandler(keep)
    try:
        with watch_finalising(lambda: seen.append("202")):
            logger.debug("%s %s: 202 still finalising; polling again in %.3fs", "GET", "/x", 1.0)
            logger.debug("other detail")
            logger.warning("a warning")
        assert (seen, shown) == (["202"], [logging.WARNING])  # debug was not shown before
        assert logger.level == logging.NOTSET and logger.filters == []
    finally:
        logger.removeHandler(keep)


def test_console_script_installed() -> None:
    script = Path(sys.executable).parent / "kernel-replays"
    if not script.exists():
        pytest.skip("package not installed with its console script in this environment")
    done = subprocess.run(
        [str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "start" in done.stdout and "download" in done.stdout
