"""Run Python code in a subprocess and press Ctrl-C once it has printed a given line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

# A background shell starts its children with SIGINT ignored (and exec keeps it so):
# a child that is to be interrupted must start with the default disposition.
PRELUDE = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"


def sigint_default() -> None:
    """`preexec_fn` for a child that will get Ctrl-C: SIGINT back to its default, so
    Python installs its KeyboardInterrupt handler even when the tests run in background."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c_after(
    code: str, first_line: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Start `code`, wait for a stdout line starting with `first_line`, send SIGINT;
    return (exit code, the rest of stdout, stderr). The process never outlives the call."""
    proc = subprocess.Popen(
        [sys.executable, "-c", PRELUDE + code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        if not line.startswith(first_line):
            proc.kill()
            raise AssertionError(f"expected {first_line!r}, got {line!r}: {proc.stderr.read()}")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err
