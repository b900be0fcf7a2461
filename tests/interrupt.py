"""Python code in a subprocess: run it and read what it printed, or press Ctrl-C once it
has printed a given line."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

# A background shell starts its children with SIGINT ignored (and exec keeps it so):
# a child that is to be interrupted must start with the default disposition.
PRELUDE = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"


def sigint_default() -> None:
    """`preexec_fn` for a child that will get Ctrl-C: SIGINT back to its default, so
    Python installs its KeyboardInterrupt handler even when the tests run in background."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(code: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `code` in a fresh interpreter that takes Ctrl-C as KeyboardInterrupt, its
    stdout and stderr piped (unbuffered). The caller ends it."""
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
    )


def read_line(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """The next line `proc` prints on stdout, or "" if none comes within `timeout`.

    Read from the pipe byte by byte, past Python's buffer: a buffered `readline` may take
    several lines from one write, after which `select` on the pipe waits for a line that
    is already in the buffer. What is not read here stays in the pipe for `communicate`.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    end = time.monotonic() + timeout
    got = bytearray()
    while not got.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            return ""
        byte = os.read(fd, 1)
        if not byte:
            break  # the end of its output
        got += byte
    return got.decode()


def sigint_storm(proc: subprocess.Popen[str], seconds: float, pause: float = 0.0002) -> int:
    """Send SIGINT to `proc` again and again (every `pause` seconds) until it exits or
    `seconds` have passed; return how many were sent."""
    sent = 0
    end = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < end:
        try:
            os.kill(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            break
        sent += 1
        time.sleep(pause)
    return sent


def ctrl_c_after(
    code: str,
    first_line: str,
    env: dict[str, str] | None = None,
    until: Callable[[], bool] | None = None,
    on: str = "stdout",
) -> tuple[int, str, str]:
    """Start `code`, wait (bounded) for a line starting with `first_line` on `on`
    (``stdout`` or ``stderr``) and then for `until()` to hold, send SIGINT; return
    (exit code, the rest of stdout, the rest of stderr). The process never outlives
    the call, and a line that never comes fails the test instead of hanging it."""
    proc = spawn(code, env)
    try:
        stream = proc.stdout if on == "stdout" else proc.stderr
        assert stream is not None
        ready, _, _ = select.select([stream], [], [], 30)
        line = stream.readline() if ready else ""
        if not line.startswith(first_line):
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"expected {first_line!r} on {on}, got {line!r}: {err}")
        deadline = time.monotonic() + 20
        while until is not None and not until() and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def run_script(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `code` (dedented) in a fresh interpreter that shows every ResourceWarning (the
    fork warning of 3.12+ aside), so a test can assert that nothing was printed."""
    return subprocess.run(
        [
            sys.executable,
            "-W",
            "default",
            "-W",
            "ignore:This process:DeprecationWarning",
            "-c",
            textwrap.dedent(code),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
