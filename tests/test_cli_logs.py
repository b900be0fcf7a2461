"""`kernel-replays browsers logs`: real subprocesses against a small threaded aiohttp server
that serves the logs' event stream (tests/sse_server.py: numbered events with ids, resumed
after Last-Event-ID, connections cut on request, a follow until the client leaves)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from kernel_async.testing import FakeKernel
from kernel_async.types import LogEvent
from kernel_sync import Kernel
from kernel_sync.__main__ import main
from kernel_sync._cli_browsers import log_json, log_line, log_source
from tests.interrupt import read_line, sigint_default
from tests.sse_server import LogFeed, serving, stamp

KEY = "sk-logs-test-key"


def line(n: int) -> str:
    """What the CLI prints for event `n` (the server's timestamp, in ISO 8601)."""
    return datetime.fromisoformat(stamp(n).replace("Z", "+00:00")).isoformat() + f" line {n}"


@pytest.fixture
def feed() -> Iterator[tuple[LogFeed, str]]:
    state = LogFeed()
    with serving(state) as url:
        yield state, url


def env_for(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL_")}
    return env | {"KERNEL_BASE_URL": url, "KERNEL_API_KEY": KEY}


def logs(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernel_sync", "browsers", "logs", *args],
        capture_output=True,
        text=True,
        env=env_for(url),
        timeout=60,
    )


def following(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kernel_sync", "browsers", "logs", "b1", "--follow", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_for(url),
        preexec_fn=sigint_default,  # Ctrl-C reaches it even when the tests run in background
    )


def ended(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


# -- pure parts ----------------------------------------------------------------------


def test_one_line_per_event_whatever_the_message_holds() -> None:
    at = datetime(2026, 1, 1, 12, 30, 5, 250000, tzinfo=timezone.utc)
    event = LogEvent(event="log", message="first\nsecond\r\n", timestamp=at)
    assert log_line(event) == "2026-01-01T12:30:05.250000+00:00 first\\nsecond"
    assert log_json(event) == {
        "event": "log",
        "message": "first\nsecond\r\n",  # JSON keeps the message exactly
        "timestamp": "2026-01-01T12:30:05.250000+00:00",
    }


def test_the_source_follows_from_the_flags() -> None:
    assert log_source(None, None) == "supervisor"
    assert log_source(None, "/var/log/x.log") == "path"
    assert log_source("supervisor", "/var/log/x.log") == "supervisor"
    with pytest.raises(ValueError, match="--path"):
        log_source("path", None)


def test_source_path_without_a_path_is_a_usage_error() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["browsers", "logs", "b1", "--source", "path"], out, err) == 2
    assert out.getvalue() == "" and "--source path needs --path" in err.getvalue()


# -- over a socket ---------------------------------------------------------------------


def test_logs_print_one_line_per_event(feed: tuple[LogFeed, str]) -> None:
    state, url = feed
    done = logs(url, "b1", "--supervisor-process", "chromium")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [line(n) for n in range(1, 11)]
    ((query, last, auth),) = state.requests
    assert query == {"source": "supervisor", "supervisor_process": "chromium"}
    assert last is None and auth == f"Bearer {KEY}"
    assert KEY not in done.stdout + done.stderr


def test_logs_json_prints_each_event_as_a_json_line(feed: tuple[LogFeed, str]) -> None:
    state, url = feed
    state.total = 3
    done = logs(url, "b1", "--path", "/var/log/app.log", "--json")
    assert (done.returncode, done.stderr) == (0, "")
    assert [json.loads(text) for text in done.stdout.splitlines()] == [
        {
            "event": "log",
            "message": f"line {n}",
            "timestamp": datetime.fromisoformat(stamp(n).replace("Z", "+00:00")).isoformat(),
        }
        for n in (1, 2, 3)
    ]
    assert state.requests[0][0] == {"source": "path", "path": "/var/log/app.log"}


def test_a_dropped_stream_is_resumed_and_every_line_printed_once(
    feed: tuple[LogFeed, str],
) -> None:
    state, url = feed
    state.drops = [3]  # the first connection is cut after 3 events, inside the 4th
    done = logs(url, "b1", "--follow")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [line(n) for n in range(1, 11)]
    assert [(q.get("follow"), last) for q, last, _ in state.requests] == [
        ("true", None),
        ("true", "3"),  # the same query, resumed after the last event printed
    ]


def test_an_unknown_browser_is_one_error_line(feed: tuple[LogFeed, str]) -> None:
    state, url = feed
    state.status = 404
    done = logs(url, "nope")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "error: 404 not_found: browser 'nope' not found (1 attempt)"
    ]


@pytest.mark.parametrize("as_json", [False, True])
def test_ctrl_c_while_following_exits_130_cleanly(feed: tuple[LogFeed, str], as_json: bool) -> None:
    state, url = feed
    state.total, state.quiet = 100_000, 0.05  # a follow that never ends by itself
    proc = following(url, *(["--json"] if as_json else []))
    try:
        first = read_line(proc)
        assert first == (json.dumps(log_json(_event(1))) if as_json else line(1)) + "\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        ended(proc)
    assert proc.returncode == 130, (out[-500:], err)  # on failure: what it said
    assert "Traceback" not in err
    if as_json:
        assert json.loads(err) == {"error": {"type": "interrupted", "message": "interrupted"}}
    else:
        assert err == "interrupted\n"
    assert all(text.strip() for text in out.splitlines())  # whole lines only
    assert state.ended.wait(5)  # the connection was closed, not left to the OS
    assert len(state.requests) == 1


def test_a_closed_output_ends_a_follow_quietly(feed: tuple[LogFeed, str]) -> None:
    # `kernel-replays browsers logs B --follow | head -1`.
    state, url = feed
    state.total, state.quiet = 100_000, 0.02
    proc = following(url)
    with proc:  # closes the pipes too
        assert proc.stdout is not None and proc.stderr is not None
        assert read_line(proc) == line(1) + "\n"
        proc.stdout.close()  # the reader leaves: the next line written fails
        try:
            err = proc.stderr.read()
            proc.wait(timeout=30)
        finally:
            ended(proc)
    assert (proc.returncode, err) == (141, "")
    assert state.ended.wait(5)


def _event(n: int) -> LogEvent:
    at = datetime.fromisoformat(stamp(n).replace("Z", "+00:00"))
    return LogEvent(event="log", message=f"line {n}", timestamp=at)


def test_the_follow_really_waits_for_new_lines(feed: tuple[LogFeed, str]) -> None:
    # Quiet longer than --timeout (per attempt) between lines: the follow is not cut.
    state, url = feed
    state.total, state.quiet = 3, 1.2
    started = time.monotonic()
    done = logs(url, "b1", "--follow", "--timeout", "0.5")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [line(n) for n in (1, 2, 3)]
    assert time.monotonic() - started >= 3.0


def test_a_follow_against_the_emulator_resumes_and_ends_with_the_browser() -> None:
    with FakeKernel.in_thread(finalise_seconds=0.05) as fake:
        b = fake.create_browser()
        for n in range(4):
            fake.log(b, f"step {n}")
        fake.fail("browsers.logs.stream", status=None, drop_after=3)  # cut after 3 events
        env = env_for(fake.base_url) | {"KERNEL_API_KEY": fake.api_key}
        proc = subprocess.Popen(
            [sys.executable, "-m", "kernel_sync", "browsers", "logs", b, "--follow", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            seen = [json.loads(read_line(proc))["message"] for _ in range(5)]
            fake.log(b, "late step")  # a follow prints what comes later too
            assert json.loads(read_line(proc))["message"] == "late step"
            with Kernel(api_key=fake.api_key, base_url=fake.base_url) as client:
                client.browsers.delete(b)  # the browser ends: so does the follow
            out, err = proc.communicate(timeout=30)
        finally:
            ended(proc)
        resumed = [
            r.headers.get("Last-Event-ID")
            for r in fake.requests
            if r.operation == "browsers.logs.stream"
        ]
    assert seen == [f"browser {b} created", *(f"step {n}" for n in range(4))]
    assert [json.loads(text)["message"] for text in out.splitlines()] == [f"browser {b} ended"]
    assert (proc.returncode, err) == (0, "")
    assert resumed == [None, "3"]  # every line printed once across the drop
