"""Launch and end local headless Chromium processes (the local backend's browsers).

Each browser gets its own temporary directory (profile, log and Chromium's own ``TMPDIR``,
all removed when it ends), a download directory set in its profile
(`download_preferences`), DevTools over a pipe (``--remote-debugging-pipe``: no port is
opened, so no other local process can drive it; see ``_devtools_pipe``), its own process
group, and — on Linux — the parent-death signal, so that no Chromium outlives the process
that launched it, even after a ``kill -9``. Chromium's own children (zygotes, renderers,
GPU, crashpad handlers) exit by themselves when the browser process dies; every process is
marked (environment or command line) so that what is left can be found and killed
(`marked_processes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ._cdp import CDPError
from ._devtools_pipe import DevToolsPipe

__all__ = [
    "ChromiumNotFoundError",
    "ChromiumProcess",
    "ChromiumStartError",
    "LocalSetupError",
    "chromium_args",
    "download_preferences",
    "find_chromium",
    "launch_chromium",
    "marked_processes",
    "tree_memory_bytes",
    "workdir_root",
]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
MARKER_ENV = "KERNEL_ASYNC_CHROMIUM"
WORKDIR_PREFIX = "kernel-chromium-"
# Runs between fork and Chromium's exec, in a fresh interpreter: put the DevTools pipe's
# ends where Chromium looks for them (it reads fd 3, writes fd 4); on Linux, ask to be
# SIGKILLed when the thread that launched it dies; then become Chromium (exec keeps both).
# Not a preexec_fn: Python code after fork in a threaded process can deadlock.
LAUNCH_SHIM = (
    "import fcntl, os, signal, sys\n"
    "given = [int(fd) for fd in sys.argv[2:4]]\n"
    "high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in given]  # clear of 3 and 4\n"
    "for fd in given:\n"
    "    os.close(fd)\n"
    "os.dup2(high[0], 3)\n"
    "os.dup2(high[1], 4)\n"
    "for fd in high:\n"
    "    os.close(fd)\n"
    "if sys.platform.startswith('linux'):\n"
    "    import ctypes\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)\n"
    "    if os.getppid() != int(sys.argv[1]):\n"
    "        os._exit(70)  # the launcher died before prctl: nobody would end this browser\n"
    "os.execv(sys.argv[4], sys.argv[4:])\n"
)
# Chromium binds a Unix socket at $TMPDIR/org.chromium.Chromium.XXXXXX/SingletonSocket and
# aborts if that path is longer than a socket address holds (108 bytes on Linux, 104 on
# macOS): its TMPDIR (inside the workdir) must stay short.
SOCKET_PATH_MAX = 103
SOCKET_SUFFIX = len("/org.chromium.Chromium.XXXXXX/SingletonSocket")
WORKDIR_NAME = len(WORKDIR_PREFIX) + len("12345678") + len("/t")
SHORT_ROOTS = ("/tmp", "/var/tmp", "/dev/shm")

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
    "--remote-debugging-pipe",
)


class LocalSetupError(RuntimeError):
    """The local Chromium backend cannot run here (no Chromium, or the ``local`` extra is
    not installed); the message says what to do."""


class ChromiumNotFoundError(LocalSetupError):
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
    """The command line of one browser: isolated profile, DevTools on a pipe, blank page."""
    args = [binary, *BASE_FLAGS, f"--user-data-dir={profile_dir}"]
    args.append(f"--window-size={width},{height}")
    if headless:
        args.append("--headless")
    args.append("about:blank")
    return args


def download_preferences(directory: str) -> dict[str, Any]:
    """The profile preferences that make ``directory`` where the browser saves downloads.

    The browser's default download behaviour then holds, as on Kernel: a download the user
    starts (a click) is saved there under its suggested name (``report (1).pdf`` when the
    name is taken), written first as a ``.crdownload`` file (``Unconfirmed <n>.crdownload``)
    and renamed once complete; one a script starts is refused unless a DevTools client allows it
    (``Browser.setDownloadBehavior``). A client that sets another behaviour and leaves
    (Playwright does) puts the browser back to this one, never to ``~/Downloads``.
    """
    return {"download": {"default_directory": directory, "prompt_for_download": False}}


def workdir_root(
    tempdir: str,
    candidates: Sequence[str] = SHORT_ROOTS,
    usable: Callable[[str], bool] = lambda path: os.access(path, os.W_OK | os.X_OK),
) -> str:
    """Where browsers' workdirs go: the temporary directory, unless its path is too long
    for Chromium's socket (see `SOCKET_PATH_MAX`); then the first short, usable one of
    ``candidates`` (each workdir is private, 0700, and removed when its browser ends)."""
    longest = SOCKET_PATH_MAX - 1 - WORKDIR_NAME - SOCKET_SUFFIX
    for root in (tempdir, *candidates):
        root = root.rstrip(os.sep) or os.sep
        if len(root) <= longest and usable(root):
            return root
    raise LocalSetupError(
        f"the temporary directory {tempdir!r} is too long a path for Chromium (its sockets "
        f"need a directory of at most {longest} characters) and none of "
        f"{', '.join(candidates)} is writable: set TMPDIR to a short directory"
    )


@attrs.define(eq=False)
class ChromiumProcess:
    """One running browser: its process, DevTools pipe and temporary directory."""

    process: subprocess.Popen[bytes]
    workdir: Path
    pipe: DevToolsPipe
    started_seconds: float

    @property
    def pid(self) -> int:
        """The browser process ID (also its process group ID)."""
        return self.process.pid

    async def terminate(self, grace: float = 5.0) -> None:
        """Kill the browser's process group and every marked leftover; remove its files
        (its profile, its log and everything it made in its TMPDIR)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        await asyncio.to_thread(_reap, self.process, grace)
        await _kill_marked(str(self.workdir), grace)
        await self.pipe.close()
        await asyncio.to_thread(shutil.rmtree, self.workdir, True)


async def launch_chromium(
    binary: str,
    *,
    width: int,
    height: int,
    headless: bool = True,
    startup_timeout: float = 30.0,
    downloads: str | None = None,
) -> ChromiumProcess:
    """Start a browser and wait until it answers over its DevTools pipe. It saves downloads
    in ``downloads`` (default: a directory in its workdir, removed with it).

    Call from the event loop's own thread: the parent-death signal fires when the *thread*
    that forked exits, and the loop thread lives exactly as long as the emulator.
    """
    started = time.monotonic()
    root = workdir_root(tempfile.gettempdir())
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=root))
    profile = workdir / "profile"
    (profile / "Default").mkdir(parents=True)
    preferences = download_preferences(downloads or str(workdir / "downloads"))
    (profile / "Default" / "Preferences").write_text(json.dumps(preferences))
    (workdir / "t").mkdir()  # Chromium's TMPDIR: its temporary files go with the workdir
    args = chromium_args(binary, profile, width=width, height=height, headless=headless)
    ours_read, theirs_write = os.pipe()
    theirs_read, ours_write = os.pipe()
    try:
        # Forked here, on the loop thread, on purpose (see above): fork+exec does not block.
        process = _spawn(args, workdir, theirs_read, theirs_write)
    except BaseException:
        for fd in (ours_read, ours_write):
            os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        os.close(theirs_read)
        os.close(theirs_write)
    pipe = await DevToolsPipe.open(ours_read, ours_write)
    browser = ChromiumProcess(process, workdir, pipe, 0.0)
    try:
        await _answering(browser, startup_timeout)
    except BaseException:
        await browser.terminate()
        raise
    browser.started_seconds = time.monotonic() - started
    return browser


def _spawn(args: list[str], workdir: Path, reads: int, writes: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, MARKER_ENV: str(workdir), "TMPDIR": str(workdir / "t")}
    with open(workdir / "chromium.log", "wb") as log:
        return subprocess.Popen(
            [*_shim(reads, writes), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            pass_fds=(reads, writes),
            start_new_session=True,  # its own process group: one killpg ends the tree
        )


def _shim(reads: int, writes: int) -> list[str]:
    """The command that runs `LAUNCH_SHIM` before Chromium's own command line."""
    return [
        sys.executable,
        "-I",
        "-S",
        "-c",
        LAUNCH_SHIM,
        str(os.getpid()),
        str(reads),
        str(writes),
    ]


async def _answering(browser: ChromiumProcess, timeout: float) -> None:
    try:
        await browser.pipe.command("Browser.getVersion", timeout=timeout)
    except (CDPError, asyncio.TimeoutError):
        status = await asyncio.to_thread(_reap, browser.process, 2.0)
        log = _log_tail(browser.workdir)
        if status is not None:
            raise ChromiumStartError(f"Chromium exited with status {status}: {log}") from None
        raise ChromiumStartError(f"no DevTools answer after {timeout:.0f} s: {log}") from None


def _log_tail(workdir: Path, limit: int = 2000) -> str:
    """Why Chromium stopped: its FATAL line if it logged one, else the end of its log."""
    try:
        log = (workdir / "chromium.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    fatal = [line for line in log.splitlines() if ":FATAL:" in line]
    return fatal[-1][-limit:] if fatal else log[-limit:]


def _reap(process: subprocess.Popen[bytes], grace: float) -> int | None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        return process.wait(grace)
    return None


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
