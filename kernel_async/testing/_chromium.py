"""Launch and end local headless Chromium processes (the local backend's browsers).

Each browser gets its own temporary directory (profile + log), a DevTools port chosen by
Chromium itself (``--remote-debugging-port=0``, read back from ``DevToolsActivePort``), its
own process group, and — on Linux — the parent-death signal, so that no Chromium outlives
the process that launched it, even after a ``kill -9``. Chromium's own children (zygotes,
renderers, GPU, crashpad handlers) exit by themselves when the browser process dies;
every process is marked (environment or command line) so that what is left can be found and
killed (`marked_processes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import attrs

__all__ = [
    "ChromiumNotFoundError",
    "ChromiumProcess",
    "ChromiumStartError",
    "chromium_args",
    "find_chromium",
    "launch_chromium",
    "marked_processes",
    "tree_memory_bytes",
]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
MARKER_ENV = "KERNEL_ASYNC_CHROMIUM"
WORKDIR_PREFIX = "kernel-chromium-"
# Runs between fork and Chromium's exec, in a fresh interpreter: ask Linux to SIGKILL this
# process when the thread that launched it dies, then become Chromium (exec keeps the
# setting). Not a preexec_fn: Python code after fork in a threaded process can deadlock.
PDEATHSIG_SHIM = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os._exit(70)  # the launcher died before prctl: nobody would end this browser\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)

# Flags that work on a closed network and as root (see the design's emulator section).
BASE_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
)


class ChromiumNotFoundError(RuntimeError):
    """No Chromium binary was found; the message says how to get one."""


class ChromiumStartError(RuntimeError):
    """Chromium exited or did not open its DevTools port in time (the log tail is included)."""


def find_chromium(
    env: Mapping[str, str] = os.environ, which: Callable[[str], str | None] = shutil.which
) -> str:
    """The Chromium to run: ``KERNEL_CHROMIUM``, else the first of `CANDIDATES` on PATH."""
    explicit = env.get("KERNEL_CHROMIUM")
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        found = which(explicit)
        if found:
            return found
        raise ChromiumNotFoundError(f"KERNEL_CHROMIUM={explicit!r} is not an executable file")
    for name in CANDIDATES:
        found = which(name)
        if found:
            return found
    raise ChromiumNotFoundError(
        "no Chromium found: set KERNEL_CHROMIUM to a Chromium or Chrome binary, or put one of "
        f"{', '.join(CANDIDATES)} on PATH (Debian/Ubuntu: `apt-get install chromium`)"
    )


def chromium_args(
    binary: str, profile_dir: Path, *, width: int, height: int, headless: bool = True
) -> list[str]:
    """The command line of one browser: isolated profile, loopback DevTools, blank page."""
    args = [binary, *BASE_FLAGS, f"--user-data-dir={profile_dir}"]
    args.append(f"--window-size={width},{height}")
    if headless:
        args.append("--headless")
    args.append("about:blank")
    return args


@attrs.define(eq=False)
class ChromiumProcess:
    """One running browser: its process, DevTools endpoint and temporary directory."""

    process: subprocess.Popen[bytes]
    workdir: Path
    devtools_port: int
    browser_ws_url: str
    started_seconds: float

    @property
    def pid(self) -> int:
        """The browser process ID (also its process group ID)."""
        return self.process.pid

    async def terminate(self, grace: float = 5.0) -> None:
        """Kill the browser's process group and every marked leftover; remove its files."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        await asyncio.to_thread(_reap, self.process, grace)
        await _kill_marked(str(self.workdir), grace)
        await asyncio.to_thread(shutil.rmtree, self.workdir, True)


async def launch_chromium(
    binary: str,
    *,
    width: int,
    height: int,
    headless: bool = True,
    startup_timeout: float = 30.0,
) -> ChromiumProcess:
    """Start a browser and wait until its DevTools endpoint is known.

    Call from the event loop's own thread: the parent-death signal fires when the *thread*
    that forked exits, and the loop thread lives exactly as long as the emulator.
    """
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    profile = workdir / "profile"
    profile.mkdir()
    args = chromium_args(binary, profile, width=width, height=height, headless=headless)
    # Forked here, on the loop thread, on purpose (see above): fork+exec does not block.
    process = _spawn(args, workdir)
    try:
        port, path = await _devtools_endpoint(process, profile, startup_timeout)
    except BaseException:
        await ChromiumProcess(process, workdir, 0, "", 0.0).terminate()
        raise
    url = f"ws://127.0.0.1:{port}{path}"
    return ChromiumProcess(process, workdir, port, url, time.monotonic() - started)


def _spawn(args: list[str], workdir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, MARKER_ENV: str(workdir)}
    with open(workdir / "chromium.log", "wb") as log:
        return subprocess.Popen(
            with_parent_death_signal(args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,  # its own process group: one killpg ends the tree
        )


async def _devtools_endpoint(
    process: subprocess.Popen[bytes], profile: Path, timeout: float
) -> tuple[int, str]:
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ChromiumStartError(
                f"Chromium exited with status {process.returncode}: {_log_tail(profile)}"
            )
        with contextlib.suppress(FileNotFoundError, ValueError):
            lines = active.read_text().split()
            if len(lines) >= 2:  # Chromium writes port then path; both or nothing yet
                return int(lines[0]), lines[1]
        await asyncio.sleep(0.02)
    raise ChromiumStartError(f"no DevTools port after {timeout:.0f} s: {_log_tail(profile)}")


def _log_tail(profile: Path, limit: int = 2000) -> str:
    try:
        return (profile.parent / "chromium.log").read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


def with_parent_death_signal(args: list[str]) -> list[str]:
    """``args`` run through `PDEATHSIG_SHIM` on Linux (unchanged elsewhere)."""
    if not sys.platform.startswith("linux") or not sys.executable:
        return args
    return [sys.executable, "-I", "-S", "-c", PDEATHSIG_SHIM, str(os.getpid()), *args]


def _reap(process: subprocess.Popen[bytes], grace: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)


def marked_processes(marker: str | None = None) -> list[int]:
    """Live PIDs of one browser (``marker`` = its workdir), or of any browser launched here.

    A process is marked by its environment (the browser, crashpad handlers) or by its
    command line (zygote children rewrite their title over the environment, but keep
    ``--user-data-dir`` inside the workdir). Linux only (reads ``/proc``); else empty.
    """
    env_entry = f"{MARKER_ENV}={marker}" if marker else f"{MARKER_ENV}="
    in_cmdline = (marker + os.sep if marker else os.sep + WORKDIR_PREFIX).encode()
    found = []
    for pid in _all_pids():
        with contextlib.suppress(OSError):
            proc = Path(f"/proc/{pid}")
            if in_cmdline in (proc / "cmdline").read_bytes():
                found.append(pid)
                continue
            entries = (proc / "environ").read_bytes().decode(errors="replace").split("\0")
            if any(e == env_entry if marker else e.startswith(env_entry) for e in entries):
                found.append(pid)
    return found


def _all_pids() -> Sequence[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


async def _kill_marked(marker: str, grace: float) -> None:
    # Crashpad handlers run in their own session: the group kill does not reach them.
    deadline = time.monotonic() + grace
    while pids := marked_processes(marker):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


def tree_memory_bytes(marker: str, kind: str = "rss") -> int:
    """Memory of every process of one browser: ``rss`` sums resident sets (shared pages
    count once per process), ``pss`` shares them out (the fairer per-browser figure)."""
    file, field = {"rss": ("status", "VmRSS:"), "pss": ("smaps_rollup", "Pss:")}[kind]
    total = 0
    for pid in marked_processes(marker):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1]) * 1024
    return total
