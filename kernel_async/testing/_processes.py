"""Each emulated browser's processes: real local ones in its sandbox, or scripted answers.

.. warning::

   With the local Chromium backend, ``browsers.process.exec`` and ``spawn`` run **real
   commands on your machine, as your user** — the user the emulator runs as. ``as_root``
   and ``as_user`` are accepted (the API has them) but change nothing: the command runs as
   the emulator's own user, never with more rights. The sandbox directory is only the
   working directory: a command is not confined to it and can read or change anything your
   user can. This is why the emulator listens on loopback only and answers only callers
   holding its API key (``FakeKernel.api_key``); treat that key like a shell on your
   machine. The in-memory default backend runs nothing: `ScriptedProcesses` answers from
   a script your test sets.

`LocalProcesses` (one per browser) runs ``command`` with ``args`` directly (no shell: use
``command="sh", args=["-c", "..."]`` for one), in its own session and process group, with
the working directory ``cwd`` resolved through the browser's sandbox (default: the sandbox
root; a path outside it cannot be named). The environment is small and predictable, not
the emulator's own (which may hold secrets): ``PATH``, ``HOME`` (the sandbox root),
``LANG``, ``TERM`` for a terminal, then the request's ``env``.

Answers are plain dicts shaped as the spec's responses (``ProcessExecResponse``,
``ProcessSpawnResponse``, ``ProcessStatusResponse``, ``ProcessStdinResponse``,
``ProcessKillResponse``, ``ProcessResizeResponse``); `stdout_stream` yields `Event`\\ s
(increasing ids, usable as SSE ``id:``) of ``ProcessStdoutStreamResponse`` data: output
chunks ``{"stream": "stdout"|"stderr", "data_b64": ...}`` (a terminal's output is all
``stdout``), then ``{"event": "exit", "exit_code": n}`` last. Output is kept (the newest
16 MiB) so a stream opened late, or resumed after an id, misses nothing recent.

Rules chosen where the API leaves room: a process killed by a signal exits with
``128 + signal`` (as shells report it), also when ``timeout_sec`` ran out (the whole group
gets ``SIGKILL``); ``timeout_sec`` of ``None`` or ``0`` means no limit. ``kill`` signals the
whole process group; signalling an ended process answers ``ok: true`` and changes nothing.
``resize`` of a process without a terminal is 400; of an ended one ``ok: false``. ``stdin``
to an ended process is 409. An unknown process id is 404; a command that cannot be started
is 400. `aclose` (the browser is deleted) kills every process group the browser started
with ``SIGKILL`` and waits for the leaders; a program that leaves its group on purpose
(``setsid``, a daemon) is beyond that reach, as it would be for any process supervisor.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fcntl
import os
import signal as signals
import struct
import sys
import termios
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

import attrs

from ._events import Event, EventLog
from ._sandbox import FileSystem, SandboxError, SandboxFS, api_parts

__all__ = [
    "SIGNALS",
    "ExecCall",
    "LocalProcesses",
    "ProcessRunner",
    "ScriptedProcesses",
    "exit_code_of",
]

SIGNALS = {"TERM": signals.SIGTERM, "KILL": signals.SIGKILL, "INT": signals.SIGINT}
SIGNALS["HUP"] = signals.SIGHUP
KEEP_OUTPUT = 16 << 20  # bytes of output kept per process for streams
EXEC_OUTPUT = 64 << 20  # bytes of stdout (and of stderr) an exec answers at most
EOF_GRACE = 2.0  # seconds to wait for output to end after the process exited
READ_CHUNK = 1 << 16
DEFAULT_COLS, DEFAULT_ROWS = 80, 24


def _bad(message: str) -> SandboxError:
    return SandboxError(400, "bad_request", message)


def _unknown(process_id: str) -> SandboxError:
    return SandboxError(404, "not_found", f"process {process_id!r} not found")


def exit_code_of(returncode: int) -> int:
    """The API's exit code: the process's own, or ``128 + signal`` when a signal ended it."""
    return 128 - returncode if returncode < 0 else returncode


def _stamp(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _signal(name: str) -> int:
    sig = SIGNALS.get(name)
    if sig is None:
        raise _bad(f"signal must be one of TERM, KILL, INT, HUP: {name!r}")
    return sig


def _decode_stdin(data_b64: str) -> bytes:
    try:
        return base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise _bad("data_b64 is not valid base64") from None


def _check_size(cols: int | None, rows: int | None) -> tuple[int, int]:
    cols = DEFAULT_COLS if cols is None else cols
    rows = DEFAULT_ROWS if rows is None else rows
    for name, value in (("cols", cols), ("rows", rows)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 0xFFFF:
            raise _bad(f"{name} must be an integer from 1 to 65535")
    return cols, rows


def _check_timeout(timeout_sec: int | None) -> float | None:
    if timeout_sec is None or timeout_sec == 0:
        return None
    if isinstance(timeout_sec, bool) or not isinstance(timeout_sec, int) or timeout_sec < 0:
        raise _bad("timeout_sec must be a non-negative integer")
    return float(timeout_sec)


def _check_command(command: str, args: Sequence[str] | None) -> list[str]:
    argv = [command, *(args or ())]
    if not command:
        raise _bad("command must not be empty")
    if any(not isinstance(a, str) or "\x00" in a for a in argv):
        raise _bad("command and args must be strings without NUL bytes")
    return argv


class ProcessRunner(Protocol):
    """What the emulator's ``browsers.process`` handlers call; `LocalProcesses` and
    `ScriptedProcesses`."""

    async def exec(
        self,
        command: str,
        *,
        args: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_sec: int | None = None,
        as_root: bool = False,
        as_user: str | None = None,
    ) -> dict[str, Any]: ...

    async def spawn(
        self,
        command: str,
        *,
        args: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_sec: int | None = None,
        allocate_tty: bool = False,
        cols: int | None = None,
        rows: int | None = None,
        as_root: bool = False,
        as_user: str | None = None,
    ) -> dict[str, Any]: ...

    def status(self, process_id: str) -> dict[str, Any]: ...

    async def stdin(self, process_id: str, data_b64: str) -> dict[str, Any]: ...

    def kill(self, process_id: str, signal: str) -> dict[str, Any]: ...

    def resize(self, process_id: str, cols: int, rows: int) -> dict[str, Any]: ...

    def stdout_stream(self, process_id: str, *, after: int = 0) -> AsyncIterator[Event]: ...

    async def aclose(self) -> None: ...


class _Output:
    """A process's output as events: chunks (the newest `keep` bytes), then the exit."""

    def __init__(self, keep: int) -> None:
        self.log = EventLog(keep=1 << 20, keep_bytes=keep)

    def add(self, stream: str, data: bytes) -> None:
        self.log.add({"stream": stream, "data_b64": _b64(data)}, len(data))

    def exit(self, exit_code: int) -> None:
        self.log.add({"event": "exit", "exit_code": exit_code})
        self.log.close()


# -- real local processes ----------------------------------------------------------------


@attrs.define(eq=False)
class _Local:
    process_id: str
    proc: asyncio.subprocess.Process
    started_at: datetime
    started: float  # time.monotonic()
    output: _Output
    stdin_fd: int  # ours: the pipe's write end, or the terminal's master
    master_fd: int | None  # the terminal, when allocate_tty
    sources: list[int]  # fds we read output from
    exec_out: dict[str, bytearray] | None = None  # exec collects its whole output here
    exit_code: int | None = None
    eof: asyncio.Event = attrs.field(factory=asyncio.Event)
    open_sources: int = 0
    watcher: asyncio.Task[None] | None = None
    deadline: asyncio.TimerHandle | None = None

    @property
    def pgid(self) -> int:
        return self.proc.pid  # the leader of its own session and group


def _controlling_tty() -> None:  # pragma: no cover - runs in the child
    # After setsid (start_new_session), make the terminal on fd 0 the session's own, so the
    # shell gets job control and SIGWINCH on resize.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class LocalProcesses:
    """Real processes for one browser, run with its sandbox (`SandboxFS`) as working
    directory. See the module docstring — these run on your machine, as you."""

    def __init__(self, sandbox: SandboxFS) -> None:
        self._sandbox = sandbox
        self._procs: dict[str, _Local] = {}
        self._execs: set[_Local] = set()
        self._closed = False

    def _environ(self, env: Mapping[str, str] | None, tty: bool) -> dict[str, str]:
        base = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": self._sandbox.root,
            "LANG": "C.UTF-8",
        }
        if tty:
            base["TERM"] = "xterm-256color"
        for key, value in (env or {}).items():
            if (
                not isinstance(key, str)
                or not isinstance(value, str)
                or not key
                or "=" in key
                or "\x00" in key + value
            ):
                raise _bad(f"env entries must be NAME=value strings: {key!r}")
            base[key] = value
        return base

    def _cwd(self, cwd: str | None) -> str:
        return self._sandbox.host_dir("/" if cwd is None else cwd)

    async def _start(
        self,
        command: str,
        args: Sequence[str] | None,
        env: Mapping[str, str] | None,
        cwd: str | None,
        timeout_sec: int | None,
        tty: tuple[int, int] | None,
        exec_mode: bool,
    ) -> _Local:
        if self._closed:
            raise SandboxError(409, "conflict", "the browser is being deleted")
        argv = _check_command(command, args)
        limit = _check_timeout(timeout_sec)
        environ = self._environ(env, tty is not None)
        workdir = self._cwd(cwd)
        mine: list[int] = []  # our ends, closed if the start fails
        theirs: list[int] = []  # the child's ends, closed once it has them
        try:
            if tty is not None:
                master, slave = os.openpty()
                mine.append(master)
                theirs.append(slave)
                _set_size(master, *tty)
                child_in = child_out = child_err = slave
                sources = [master]
                stdin_fd = master
                master_fd: int | None = master
                preexec: Callable[[], None] | None = _controlling_tty
            else:
                out_r, out_w = os.pipe()
                err_r, err_w = os.pipe()
                mine += [out_r, err_r]
                theirs += [out_w, err_w]
                if exec_mode:
                    in_r, in_w = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1
                    theirs.append(in_r)
                else:
                    in_r, in_w = os.pipe()
                    mine.append(in_w)
                    theirs.append(in_r)
                child_in, child_out, child_err = in_r, out_w, err_w
                sources = [out_r, err_r]
                stdin_fd = in_w
                master_fd = None
                preexec = None
            for fd in mine:
                os.set_blocking(fd, False)
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=child_in,
                    stdout=child_out,
                    stderr=child_err,
                    cwd=workdir,
                    env=environ,
                    start_new_session=True,
                    preexec_fn=preexec,
                )
            except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
                reason = "not found" if isinstance(exc, FileNotFoundError) else "not executable"
                raise _bad(f"cannot start {command!r}: {reason}") from None
            except OSError as exc:
                raise _bad(f"cannot start {command!r}: {os.strerror(exc.errno or 0)}") from None
        except BaseException:
            for fd in mine:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        record = _Local(
            process_id=uuid.uuid4().hex,
            proc=proc,
            started_at=datetime.now(timezone.utc),
            started=time.monotonic(),
            output=_Output(KEEP_OUTPUT),
            stdin_fd=stdin_fd,
            master_fd=master_fd,
            sources=sources,
        )
        if exec_mode:
            record.exec_out = {"stdout": bytearray(), "stderr": bytearray()}
        loop = asyncio.get_running_loop()
        names = ["stdout"] if tty is not None else ["stdout", "stderr"]
        record.open_sources = len(sources)
        for fd, name in zip(sources, names, strict=True):
            loop.add_reader(fd, self._readable, record, fd, name)
        if limit is not None:
            record.deadline = loop.call_later(limit, _signal_group, record, signals.SIGKILL)
        record.watcher = loop.create_task(self._watch(record))
        return record

    def _readable(self, record: _Local, fd: int, name: str) -> None:
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: a terminal whose every holder closed it
            data = b""
        if not data:
            self._stop_reading(record, fd)
            return
        if record.exec_out is not None:
            buf = record.exec_out[name]
            buf += data[: max(0, EXEC_OUTPUT - len(buf))]
        else:
            record.output.add(name, data)

    def _stop_reading(self, record: _Local, fd: int) -> None:
        if fd in record.sources:
            asyncio.get_running_loop().remove_reader(fd)
            record.sources.remove(fd)
            if fd != record.master_fd:
                os.close(fd)
            record.open_sources -= 1
            if record.open_sources == 0:
                record.eof.set()

    async def _watch(self, record: _Local) -> None:
        """Wait for the exit, then for the output's end (bounded), then add the exit event."""
        returncode = await record.proc.wait()
        if record.deadline is not None:
            record.deadline.cancel()
        # A grandchild may hold the output open: stop waiting for it after a grace period.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(record.eof.wait(), EOF_GRACE)
        for fd in list(record.sources):
            self._stop_reading(record, fd)
        record.exit_code = exit_code_of(returncode)
        record.output.exit(record.exit_code)
        _close_stdin(record)

    async def exec(
        self,
        command: str,
        *,
        args: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_sec: int | None = None,
        as_root: bool = False,
        as_user: str | None = None,
    ) -> dict[str, Any]:
        """Run to the end; a ``ProcessExecResponse`` dict. `as_root`/`as_user` are ignored."""
        record = await self._start(command, args, env, cwd, timeout_sec, None, exec_mode=True)
        self._execs.add(record)
        watcher = record.watcher
        assert watcher is not None
        watcher.add_done_callback(lambda _: self._execs.discard(record))
        try:
            await asyncio.shield(watcher)
        finally:
            if not watcher.done():  # the caller went away (a cancelled request): end it too
                _signal_group(record, signals.SIGKILL)
        assert record.exec_out is not None
        return {
            "exit_code": record.exit_code,
            "stdout_b64": _b64(bytes(record.exec_out["stdout"])),
            "stderr_b64": _b64(bytes(record.exec_out["stderr"])),
            "duration_ms": int((time.monotonic() - record.started) * 1000),
        }

    async def spawn(
        self,
        command: str,
        *,
        args: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_sec: int | None = None,
        allocate_tty: bool = False,
        cols: int | None = None,
        rows: int | None = None,
        as_root: bool = False,
        as_user: str | None = None,
    ) -> dict[str, Any]:
        """Start in the background; a ``ProcessSpawnResponse`` dict. `as_root`/`as_user`
        are ignored; `cols`/`rows` size the terminal when `allocate_tty` (80x24)."""
        size = _check_size(cols, rows) if allocate_tty else None
        record = await self._start(command, args, env, cwd, timeout_sec, size, exec_mode=False)
        self._procs[record.process_id] = record
        return {
            "process_id": record.process_id,
            "pid": record.proc.pid,
            "started_at": _stamp(record.started_at),
        }

    def _get(self, process_id: str) -> _Local:
        record = self._procs.get(process_id)
        if record is None:
            raise _unknown(process_id)
        return record

    def status(self, process_id: str) -> dict[str, Any]:
        """A ``ProcessStatusResponse`` dict (CPU and memory where ``/proc`` tells them)."""
        record = self._get(process_id)
        if record.exit_code is not None:
            return {
                "state": "exited",
                "exit_code": record.exit_code,
                "cpu_pct": None,
                "mem_bytes": None,
            }
        cpu, mem = _usage(record.proc.pid, time.monotonic() - record.started)
        return {"state": "running", "exit_code": None, "cpu_pct": cpu, "mem_bytes": mem}

    async def stdin(self, process_id: str, data_b64: str) -> dict[str, Any]:
        """Write to its standard input (or terminal); a ``ProcessStdinResponse`` dict."""
        record = self._get(process_id)
        data = _decode_stdin(data_b64)
        if record.exit_code is not None or record.stdin_fd < 0:
            raise SandboxError(409, "conflict", f"process {process_id!r} has exited")
        view = memoryview(data)
        loop = asyncio.get_running_loop()
        while view:
            try:
                view = view[os.write(record.stdin_fd, view) :]
            except BlockingIOError:
                ready: asyncio.Future[None] = loop.create_future()
                fd = record.stdin_fd
                loop.add_writer(fd, _settle, ready)
                try:
                    await ready  # the reader is slow: wait, as a pipe would make a writer
                finally:
                    loop.remove_writer(fd)
            except OSError:  # EPIPE: it closed its input or is ending
                raise SandboxError(409, "conflict", f"process {process_id!r} has exited") from None
        return {"written_bytes": len(data)}

    def kill(self, process_id: str, signal: str) -> dict[str, Any]:
        """Signal its process group; a ``ProcessKillResponse`` dict."""
        record = self._get(process_id)
        sig = _signal(signal)
        if record.exit_code is None:
            _signal_group(record, sig)
        return {"ok": True}

    def resize(self, process_id: str, cols: int, rows: int) -> dict[str, Any]:
        """Resize its terminal (``TIOCSWINSZ``); a ``ProcessResizeResponse`` dict."""
        record = self._get(process_id)
        size = _check_size(cols, rows)
        if record.master_fd is None:
            raise _bad(f"process {process_id!r} has no terminal (spawn it with allocate_tty)")
        if record.exit_code is not None:
            return {"ok": False}
        _set_size(record.master_fd, *size)
        return {"ok": True}

    def stdout_stream(self, process_id: str, *, after: int = 0) -> AsyncIterator[Event]:
        """Its output events after id `after`, ending with the exit event."""
        return self._get(process_id).output.log.follow(after)

    async def aclose(self) -> None:
        """End every process this browser started (their whole groups) and wait for them."""
        self._closed = True
        records = [*self._procs.values(), *self._execs]
        for record in records:
            _signal_group(record, signals.SIGKILL)
        for record in records:
            if record.watcher is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await record.watcher


def _signal_group(record: _Local, sig: int) -> None:
    # The group outlives its leader while a member lives, so its id is not reused then.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(record.pgid, sig)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _close_stdin(record: _Local) -> None:
    if record.stdin_fd >= 0:
        os.close(record.stdin_fd)  # also the terminal's master when there is one
        record.stdin_fd = -1


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _usage(pid: int, elapsed: float) -> tuple[float | None, int | None]:
    """Average CPU % over its life and resident bytes, from ``/proc`` (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None, None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open(f"/proc/{pid}/statm", "rb") as f:
            pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None, None
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return round(100.0 * cpu / max(elapsed, 1e-3), 1), pages * os.sysconf("SC_PAGE_SIZE")


# -- the scripted stand-in ---------------------------------------------------------------


@attrs.frozen
class ExecCall:
    """One ``exec`` or ``spawn`` a `ScriptedProcesses` received (for tests to assert on)."""

    command: str
    args: tuple[str, ...]
    env: dict[str, str]
    cwd: str | None
    spawned: bool


@attrs.frozen
class _Script:
    match: str | Callable[[str, Sequence[str]], bool]
    stdout: bytes
    stderr: bytes
    exit_code: int
    hold: bool

    def matches(self, command: str, args: Sequence[str]) -> bool:
        if callable(self.match):
            return bool(self.match(command, args))
        return self.match in (command, command.rsplit("/", 1)[-1])


@attrs.define(eq=False)
class _Scripted:
    process_id: str
    output: _Output
    hold: bool
    tty: bool
    size: tuple[int, int] | None
    exit_code: int | None = None
    stdin: bytearray = attrs.field(factory=bytearray)


def check_script(command: object, stdout: object, stderr: object, exit_code: object) -> None:
    """`TypeError` for an ``on_exec`` script that exec could not answer with."""
    if not (isinstance(command, str) or callable(command)):
        raise TypeError(f"command is a str or a callable, not {type(command).__name__}")
    for name, value in (("stdout", stdout), ("stderr", stderr)):
        if not isinstance(value, bytes):
            raise TypeError(f'{name} is bytes, not {type(value).__name__} (e.g. {name}=b"hi\\n")')
    if not isinstance(exit_code, int) or isinstance(exit_code, bool):
        raise TypeError(f"exit_code is an int, not {type(exit_code).__name__}")


def script(
    command: str | Callable[[str, Sequence[str]], bool],
    stdout: bytes = b"",
    stderr: bytes = b"",
    exit_code: int = 0,
    hold: bool = False,
) -> _Script:
    """A checked ``on_exec`` script (see `ScriptedProcesses.on_exec`)."""
    check_script(command, stdout, stderr, exit_code)
    return _Script(command, stdout, stderr, exit_code, hold)


class ScriptedProcesses:
    """The in-memory stand-in for `LocalProcesses`: nothing runs; each ``exec`` or
    ``spawn`` answers from the newest matching `on_exec` script (400 when none matches,
    naming the command). `calls` records what was asked.

    `fs`, when given (the browser's `MemoryFS`), is where ``cwd`` must be a directory.
    """

    def __init__(self, fs: FileSystem | None = None, scripts: list[_Script] | None = None) -> None:
        self._fs = fs
        self._scripts = [] if scripts is None else scripts  # shared: one list for every browser
        self._procs: dict[str, _Scripted] = {}
        self.calls: list[ExecCall] = []

    def on_exec(
        self,
        command: str | Callable[[str, Sequence[str]], bool],
        *,
        stdout: bytes = b"",
        stderr: bytes = b"",
        exit_code: int = 0,
        hold: bool = False,
    ) -> None:
        """Answer commands named `command` (the name or its basename; or any for which the
        callable ``(command, args) -> bool`` is true) with this output and exit code.

        A spawned process prints its output and exits at once, unless `hold`: then it runs
        until killed (exit code ``128 + signal``), recording what it gets on stdin.
        """
        self._scripts.append(script(command, stdout, stderr, exit_code, hold))

    def _answer(
        self,
        command: str,
        args: Sequence[str] | None,
        env: Mapping[str, str] | None,
        cwd: str | None,
        timeout_sec: int | None,
        spawned: bool,
    ) -> _Script:
        argv = _check_command(command, args)
        _check_timeout(timeout_sec)
        if cwd is not None:
            api_parts(cwd)
            if self._fs is not None and not self._fs.file_info(cwd)["is_dir"]:
                raise _bad(f"not a directory: {cwd}")
        self.calls.append(ExecCall(command, tuple(argv[1:]), dict(env or {}), cwd, spawned))
        for script in reversed(self._scripts):
            if script.matches(command, argv[1:]):
                return script
        raise _bad(
            f"no on_exec script answers {command!r} (the emulator runs nothing in memory): "
            f"script it with fake.on_exec({command!r}, stdout=...) or use "
            'FakeKernel(backend="chromium") / `kernel-replays emulator --chromium` '
            "to run real commands"
        )

    def stdin_of(self, process_id: str) -> bytes:
        """What a spawned process received on stdin so far."""
        return bytes(self._get(process_id).stdin)

    async def exec(
        self,
        command: str,
        *,
        args: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_sec: int | None = None,
        as_root: bool = False,
        as_user: str | None = None,
    ) -> dict[str, Any]:
        script = self._answer(command, args, env, cwd, timeout_sec, spawned=False)
        return {
            "exit_code": script.exit_code,
            "stdout_b64": _b64(script.stdout),
            "stderr_b64": _b64(script.stderr),
            "duration_ms": 0,
        }

    async def spawn(
        self,
        command: str,
        *,
        args: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_sec: int | None = None,
        allocate_tty: bool = False,
        cols: int | None = None,
        rows: int | None = None,
        as_root: bool = False,
        as_user: str | None = None,
    ) -> dict[str, Any]:
        size = _check_size(cols, rows) if allocate_tty else None
        script = self._answer(command, args, env, cwd, timeout_sec, spawned=True)
        record = _Scripted(uuid.uuid4().hex, _Output(KEEP_OUTPUT), script.hold, allocate_tty, size)
        if script.stdout:
            record.output.add("stdout", script.stdout)
        if script.stderr:
            record.output.add("stdout" if allocate_tty else "stderr", script.stderr)
        if not script.hold:
            self._end(record, script.exit_code)
        self._procs[record.process_id] = record
        return {
            "process_id": record.process_id,
            "pid": 100_000 + len(self._procs),
            "started_at": _stamp(datetime.now(timezone.utc)),
        }

    @staticmethod
    def _end(record: _Scripted, exit_code: int) -> None:
        record.exit_code = exit_code
        record.output.exit(exit_code)

    def _get(self, process_id: str) -> _Scripted:
        record = self._procs.get(process_id)
        if record is None:
            raise _unknown(process_id)
        return record

    def status(self, process_id: str) -> dict[str, Any]:
        record = self._get(process_id)
        running = record.exit_code is None
        return {
            "state": "running" if running else "exited",
            "exit_code": record.exit_code,
            "cpu_pct": 0.0 if running else None,
            "mem_bytes": 0 if running else None,
        }

    async def stdin(self, process_id: str, data_b64: str) -> dict[str, Any]:
        record = self._get(process_id)
        data = _decode_stdin(data_b64)
        if record.exit_code is not None:
            raise SandboxError(409, "conflict", f"process {process_id!r} has exited")
        record.stdin += data
        return {"written_bytes": len(data)}

    def kill(self, process_id: str, signal: str) -> dict[str, Any]:
        record = self._get(process_id)
        sig = _signal(signal)
        if record.exit_code is None:
            self._end(record, 128 + sig)
        return {"ok": True}

    def resize(self, process_id: str, cols: int, rows: int) -> dict[str, Any]:
        record = self._get(process_id)
        size = _check_size(cols, rows)
        if not record.tty:
            raise _bad(f"process {process_id!r} has no terminal (spawn it with allocate_tty)")
        if record.exit_code is not None:
            return {"ok": False}
        record.size = size
        return {"ok": True}

    def stdout_stream(self, process_id: str, *, after: int = 0) -> AsyncIterator[Event]:
        return self._get(process_id).output.log.follow(after)

    async def aclose(self) -> None:
        for record in self._procs.values():
            if record.exit_code is None:
                self._end(record, 128 + signals.SIGKILL)
