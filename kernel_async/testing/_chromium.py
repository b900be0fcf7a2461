"""Launch and end local headless Chromium processes (the local backend's browsers).

Each browser gets its own temporary directory (profile, Chromium's own ``TMPDIR``, and its
``HOME`` and XDG directories, so nothing lands in the user's real home: all removed when it
ends), its output read line by line as it comes (`OutputLines`: a full pipe never blocks
it), a download directory set in its profile
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
from collections import deque
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
    "OutputLines",
    "chromium_args",
    "chromium_env",
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
    # Its log (warnings, errors, and the pages' console messages as INFO:CONSOLE lines) on
    # stderr, which the emulator reads into the browser's supervisor log.
    "--enable-logging=stderr",
    "--password-store=basic",  # never the desktop's keyring
)
MAX_LINE_BYTES = 8192
"""Longer output lines are cut there (the rest of the line is dropped, the cut is marked)."""
CUT_MARK = " [...]"
TAIL_LINES = 50  # kept for the error when Chromium fails to start


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


def chromium_env(environ: Mapping[str, str], workdir: Path) -> dict[str, str]:
    """Chromium's environment: ours, with its marker, and every directory it writes to by
    itself (``TMPDIR``; ``HOME`` and the XDG directories, where it keeps crash reports and
    dconf its cache) inside its workdir, so that nothing it makes outlives it."""
    home = workdir / "home"
    return {
        **environ,
        MARKER_ENV: str(workdir),
        "TMPDIR": str(workdir / "t"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_RUNTIME_DIR": str(workdir / "run"),
    }


class OutputLines:
    """Splits a process's output into lines: text (undecodable bytes replaced, no line
    ending), each at most ``max_bytes`` long (a longer one is cut and marked with
    `CUT_MARK`; the rest of it is dropped). Pure: bytes in, lines out."""

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self._max = max_bytes
        self._buffer = bytearray()
        self._cut = False  # inside a line already emitted cut: drop until its end

    def feed(self, data: bytes) -> list[str]:
        """The lines ``data`` completes."""
        self._buffer += data
        lines = []
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._cut:
                self._cut = False
            else:
                lines.append(self._text(line))
        if len(self._buffer) > self._max:
            if not self._cut:
                lines.append(self._text(bytes(self._buffer)))
            self._cut = True
            self._buffer.clear()
        return lines

    def end(self) -> list[str]:
        """The last line, if the output did not end with a line ending."""
        line, cut = bytes(self._buffer), self._cut
        self._buffer.clear()
        self._cut = False
        return [self._text(line)] if line and not cut else []

    def _text(self, line: bytes) -> str:
        if len(line) > self._max:
            return line[: self._max].decode(errors="replace") + CUT_MARK
        return line.decode(errors="replace").removesuffix("\r")


class _Output(asyncio.Protocol):
    """The read end of a browser's stdout and stderr, on the loop: each line goes to
    ``on_line`` as it comes, and the last `TAIL_LINES` are kept (why it failed to start)."""

    def __init__(self, on_line: Callable[[str], None] | None) -> None:
        self._lines = OutputLines()
        self._on_line = on_line
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.ended = asyncio.Event()
        self.transport: asyncio.ReadTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._emit(self._lines.feed(data))

    def eof_received(self) -> bool | None:
        return None  # close: every writer has exited

    def connection_lost(self, exc: Exception | None) -> None:
        self._emit(self._lines.end())
        self.ended.set()

    def _emit(self, lines: list[str]) -> None:
        for line in lines:
            self.tail.append(line)
            if self._on_line is not None:
                self._on_line(line)

    async def close(self, grace: float) -> None:
        """Wait (bounded) for what the last writers wrote, then stop reading."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.ended.wait(), grace)
        if self.transport is not None:
            self.transport.close()
        await self.ended.wait()


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
    """One running browser: its process, DevTools pipe, output and temporary directory."""

    process: subprocess.Popen[bytes]
    workdir: Path
    pipe: DevToolsPipe
    output: _Output
    started_seconds: float

    @property
    def pid(self) -> int:
        """The browser process ID (also its process group ID)."""
        return self.process.pid

    async def terminate(self, grace: float = 5.0) -> None:
        """Kill the browser's process group and every marked leftover; remove its files
        (its profile, its home and everything it made in its TMPDIR)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        await asyncio.to_thread(_reap, self.process, grace)
        await _kill_marked(str(self.workdir), grace)
        await self.output.close(1.0)  # its writers are gone: the last lines are in
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
    on_output: Callable[[str], None] | None = None,
) -> ChromiumProcess:
    """Start a browser and wait until it answers over its DevTools pipe. It saves downloads
    in ``downloads`` (default: a directory in its workdir, removed with it); each line it
    writes on stdout or stderr goes to ``on_output`` as it comes (on the loop).

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
    for private in ("t", "home", "run"):  # its TMPDIR, HOME, XDG_RUNTIME_DIR (see chromium_env)
        (workdir / private).mkdir(mode=0o700)
    args = chromium_args(binary, profile, width=width, height=height, headless=headless)
    output = _Output(on_output)
    out_read, out_write = os.pipe()
    try:
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: output, os.fdopen(out_read, "rb", buffering=0)
        )
    except BaseException:
        os.close(out_write)
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    ours_read, theirs_write = os.pipe()
    theirs_read, ours_write = os.pipe()
    try:
        # Forked here, on the loop thread, on purpose (see above): fork+exec does not block.
        process = _spawn(args, workdir, theirs_read, theirs_write, out_write)
    except BaseException:
        for fd in (ours_read, ours_write):
            os.close(fd)
        await output.close(0)
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        for fd in (theirs_read, theirs_write, out_write):
            os.close(fd)
    pipe = await DevToolsPipe.open(ours_read, ours_write)
    browser = ChromiumProcess(process, workdir, pipe, output, 0.0)
    try:
        await _answering(browser, startup_timeout)
    except BaseException:
        await browser.terminate()
        raise
    browser.started_seconds = time.monotonic() - started
    return browser


def _spawn(
    args: list[str], workdir: Path, reads: int, writes: int, output: int
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*_shim(reads, writes), *args],
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        env=chromium_env(os.environ, workdir),
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
        if status is not None:  # its output is complete once its last writer is gone
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(browser.output.ended.wait(), 1.0)
        log = _log_tail(list(browser.output.tail))
        if status is not None:
            raise ChromiumStartError(f"Chromium exited with status {status}: {log}") from None
        raise ChromiumStartError(f"no DevTools answer after {timeout:.0f} s: {log}") from None


def _log_tail(lines: Sequence[str], limit: int = 2000) -> str:
    """Why Chromium stopped: its FATAL line if it logged one, else the end of its output."""
    if not lines:
        return "(no output)"
    fatal = [line for line in lines if ":FATAL:" in line]
    return fatal[-1][-limit:] if fatal else "\n".join(lines)[-limit:]


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
