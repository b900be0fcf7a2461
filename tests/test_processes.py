"""The emulator's per-browser processes: real local ones run in the sandbox
(`LocalProcesses`), and the scripted stand-in (`ScriptedProcesses`). Every process a test
starts is ended by it (each runner is closed, which kills its process groups). No HTTP."""

from __future__ import annotations

import base64
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from kernel_async.testing._processes import (
    LocalProcesses,
    ProcessRunner,
    ScriptedProcesses,
    exit_code_of,
)
from kernel_async.testing._sandbox import Event, MemoryFS, SandboxError, SandboxFS
from tests.spec_shapes import conforms

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxFS]:
    fs = SandboxFS(tmp_path / "root")
    yield fs
    await fs.aclose()


@pytest.fixture
async def local(sandbox: SandboxFS) -> AsyncIterator[LocalProcesses]:
    runner = LocalProcesses(sandbox)
    yield runner
    await runner.aclose()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text or "")


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie waiting for its reaper counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, even while being read
        return False


async def wait_dead(pid: int) -> None:
    with anyio.fail_after(10):
        while alive(pid):
            await anyio.sleep(0.02)


async def read_pid(path: Path) -> int:
    with anyio.fail_after(10):
        while not path.exists() or not path.read_text().strip():
            await anyio.sleep(0.02)
    return int(path.read_text())


async def collect(stream: AsyncIterator[Event]) -> list[Event]:
    with anyio.fail_after(20):
        return [event async for event in stream]


async def until(stream: AsyncIterator[Event], text: bytes) -> bytes:
    """Output read from `stream` until it contains `text`."""
    seen = b""
    with anyio.fail_after(10):
        async for event in stream:
            seen += unb64(event.data.get("data_b64"))
            if text in seen:
                return seen
    raise AssertionError(f"{text!r} never came; got {seen!r}")


def raised(status: int, call: object, *args: object, **kwargs: object) -> SandboxError:
    assert callable(call)
    with pytest.raises(SandboxError) as info:
        call(*args, **kwargs)
    assert info.value.status == status, info.value.message
    conforms("ErrorModel", info.value.body())
    return info.value


async def araised(status: int, call: object, *args: object, **kwargs: object) -> SandboxError:
    assert callable(call)
    with pytest.raises(SandboxError) as info:
        await call(*args, **kwargs)
    assert info.value.status == status, info.value.message
    conforms("ErrorModel", info.value.body())
    return info.value


async def test_both_runners_have_one_interface(sandbox: SandboxFS) -> None:
    runners: list[ProcessRunner] = [LocalProcesses(sandbox), ScriptedProcesses()]
    assert len(runners) == 2  # mypy checks the protocol; nothing was started


def test_exit_codes() -> None:
    assert exit_code_of(0) == 0
    assert exit_code_of(3) == 3
    assert exit_code_of(-signal.SIGKILL) == 137
    assert exit_code_of(-signal.SIGTERM) == 143


# -- local processes -------------------------------------------------------------------


async def test_exec_output_exit_code_and_sandbox_cwd(
    local: LocalProcesses, sandbox: SandboxFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KERNEL_EMULATOR_TEST_SECRET", "must-not-leak")
    result = await local.exec(
        "sh",
        args=["-c", 'pwd; echo "$GREETING"; env; echo oops >&2; exit 3'],
        env={"GREETING": "hello"},
    )
    conforms("ProcessExecResponse", result)
    out = unb64(result["stdout_b64"]).decode()
    assert result["exit_code"] == 3
    assert out.splitlines()[:2] == [sandbox.root, "hello"]
    assert "must-not-leak" not in out  # the emulator's own environment is not passed on
    assert f"HOME={sandbox.root}" in out
    assert unb64(result["stderr_b64"]) == b"oops\n"
    assert isinstance(result["duration_ms"], int)


async def test_exec_cwd_resolves_inside_the_sandbox(
    local: LocalProcesses, sandbox: SandboxFS, tmp_path: Path
) -> None:
    sandbox.create_directory("/work/dir")
    (Path(sandbox.root) / "link").symlink_to("work")
    (Path(sandbox.root) / "out").symlink_to(str(tmp_path))
    for cwd, expected in (("/work/dir", "work/dir"), ("/link", "work"), ("/", "")):
        result = await local.exec("pwd", cwd=cwd)
        assert unb64(result["stdout_b64"]).decode().strip() == os.path.join(
            sandbox.root, expected
        ).rstrip("/")
    sandbox.write_file("/file", b"")
    for cwd, status in (("/..", 403), ("/out", 403), ("/none", 404), ("/file", 400), ("rel", 400)):
        await araised(status, local.exec, "pwd", cwd=cwd)


async def test_exec_refusals(local: LocalProcesses) -> None:
    error = await araised(400, local.exec, "no-such-command-anywhere")
    assert "no-such-command-anywhere" in error.message
    await araised(400, local.exec, "")
    await araised(400, local.exec, "echo", args=["a\x00b"])
    await araised(400, local.exec, "echo", env={"A=B": "x"})
    await araised(400, local.exec, "echo", timeout_sec=-1)


async def test_exec_as_root_runs_as_the_emulator_user(local: LocalProcesses) -> None:
    result = await local.exec("id", args=["-u"], as_root=True, as_user="somebody-else")
    assert unb64(result["stdout_b64"]).decode().strip() == str(os.getuid())


async def test_exec_timeout_kills_the_whole_group(
    local: LocalProcesses, sandbox: SandboxFS
) -> None:
    script = "sleep 60 & echo $! > child.pid; wait"
    with anyio.fail_after(20):
        result = await local.exec("sh", args=["-c", script], timeout_sec=1)
    assert result["exit_code"] == 128 + signal.SIGKILL
    assert 900 <= result["duration_ms"] < 15_000
    await wait_dead(int(sandbox.read_file("/child.pid")))


async def test_a_cancelled_exec_ends_its_command(local: LocalProcesses, sandbox: SandboxFS) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: local.exec("sh", args=["-c", "echo $$ > me.pid; sleep 60"]))
        pid = await read_pid(Path(sandbox.root) / "me.pid")
        tg.cancel_scope.cancel()
    await wait_dead(pid)


async def test_spawn_stdin_stream_and_status(local: LocalProcesses) -> None:
    script = 'read line; echo "got $line"; echo oops >&2; read wait_for_close; exit 7'
    spawned = await local.spawn("sh", args=["-c", script])
    conforms("ProcessSpawnResponse", spawned)
    pid, process_id = spawned["pid"], spawned["process_id"]
    running = local.status(process_id)
    conforms("ProcessStatusResponse", running)
    assert running["state"] == "running"
    assert running["exit_code"] is None
    written = await local.stdin(process_id, b64(b"hi\n"))
    conforms("ProcessStdinResponse", written)
    assert written == {"written_bytes": 3}
    stream = local.stdout_stream(process_id)
    assert b"got hi\n" in await until(stream, b"got hi")
    await local.stdin(process_id, b64(b"done\n"))
    events = await collect(local.stdout_stream(process_id))  # a second reader: from the start
    for event in events:
        conforms("ProcessStdoutStreamResponse", event.data)
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    outputs = {(e.data["stream"], unb64(e.data["data_b64"])) for e in events[:-1]}
    assert outputs == {("stdout", b"got hi\n"), ("stderr", b"oops\n")}
    assert events[-1].data == {"event": "exit", "exit_code": 7}
    resumed = await collect(local.stdout_stream(process_id, after=events[0].id))
    assert resumed == events[1:]
    assert local.status(process_id) == {
        "state": "exited",
        "exit_code": 7,
        "cpu_pct": None,
        "mem_bytes": None,
    }
    await araised(409, local.stdin, process_id, b64(b"late"))
    assert not alive(pid)


async def test_stdin_refusals(local: LocalProcesses) -> None:
    spawned = await local.spawn("cat")
    await araised(400, local.stdin, spawned["process_id"], "not base64!")
    await araised(404, local.stdin, "no-such-process", b64(b"x"))
    big = b"x" * (1 << 20)  # more than a pipe holds: written as cat reads it
    stream = local.stdout_stream(spawned["process_id"])
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(local.stdin, spawned["process_id"], b64(big))
            seen = 0
            async for event in stream:
                seen += len(unb64(event.data.get("data_b64")))
                if seen == len(big):
                    break
    local.kill(spawned["process_id"], "KILL")


async def test_kill_signals_and_refusals(local: LocalProcesses) -> None:
    for name, number in (("TERM", signal.SIGTERM), ("INT", signal.SIGINT), ("HUP", signal.SIGHUP)):
        if signal.getsignal(number) is signal.SIG_IGN:
            # Ignored here (a background job ignores INT, nohup HUP): the command inherits
            # that, as it would from a shell, and lives on. Nothing to test with it.
            continue
        spawned = await local.spawn("sleep", args=["60"])
        answer = local.kill(spawned["process_id"], name)
        conforms("ProcessKillResponse", answer)
        assert answer == {"ok": True}
        events = await collect(local.stdout_stream(spawned["process_id"]))
        assert events[-1].data == {"event": "exit", "exit_code": 128 + number}
        assert local.kill(spawned["process_id"], "KILL") == {"ok": True}  # ended: no change
    raised(400, local.kill, spawned["process_id"], "STOP")
    raised(404, local.kill, "no-such-process", "TERM")
    raised(404, local.status, "no-such-process")
    raised(404, local.stdout_stream, "no-such-process")


async def test_kill_reaches_the_whole_group(local: LocalProcesses, sandbox: SandboxFS) -> None:
    spawned = await local.spawn("sh", args=["-c", "sleep 60 & echo $! > child.pid; wait"])
    child = await read_pid(Path(sandbox.root) / "child.pid")
    local.kill(spawned["process_id"], "TERM")
    await collect(local.stdout_stream(spawned["process_id"]))
    await wait_dead(child)


async def test_tty_size_resize_and_input(local: LocalProcesses) -> None:
    script = "stty size; read x; stty size; echo got $x"
    spawned = await local.spawn("sh", args=["-c", script], allocate_tty=True, cols=100, rows=30)
    process_id = spawned["process_id"]
    stream = local.stdout_stream(process_id)
    assert b"30 100" in await until(stream, b"30 100")
    answer = local.resize(process_id, 120, 40)
    conforms("ProcessResizeResponse", answer)
    assert answer == {"ok": True}
    await local.stdin(process_id, b64(b"yo\n"))
    rest = b""
    events = await collect(stream)
    for event in events[:-1]:
        assert event.data["stream"] == "stdout"  # a terminal has one stream
        rest += unb64(event.data["data_b64"])
    assert b"40 120" in rest
    assert b"got yo" in rest
    assert events[-1].data == {"event": "exit", "exit_code": 0}
    assert local.resize(process_id, 80, 24) == {"ok": False}  # ended: nothing to size
    raised(400, local.resize, process_id, 0, 24)
    piped = await local.spawn("sleep", args=["60"])
    raised(400, local.resize, piped["process_id"], 80, 24)
    await araised(400, local.spawn, "sh", allocate_tty=True, cols=-1)


async def test_tty_gets_sigwinch(local: LocalProcesses, sandbox: SandboxFS) -> None:
    script = "trap 'stty size > resized' WINCH; echo ready; while :; do sleep 0.05; done"
    spawned = await local.spawn("sh", args=["-c", script], allocate_tty=True)
    await until(local.stdout_stream(spawned["process_id"]), b"ready")
    local.resize(spawned["process_id"], 132, 50)
    resized = Path(sandbox.root) / "resized"
    with anyio.fail_after(10):
        while not resized.exists() or b"50 132" not in resized.read_bytes():
            await anyio.sleep(0.05)
    local.kill(spawned["process_id"], "KILL")


async def test_spawn_timeout(local: LocalProcesses) -> None:
    spawned = await local.spawn("sleep", args=["60"], timeout_sec=1)
    events = await collect(local.stdout_stream(spawned["process_id"]))
    assert events[-1].data == {"event": "exit", "exit_code": 137}


async def test_status_reports_usage_while_running(local: LocalProcesses) -> None:
    spawned = await local.spawn("sleep", args=["60"])
    status = local.status(spawned["process_id"])
    conforms("ProcessStatusResponse", status)
    if os.path.exists("/proc/self/stat"):
        assert isinstance(status["mem_bytes"], int)
        assert status["mem_bytes"] > 0
        assert isinstance(status["cpu_pct"], float)
    local.kill(spawned["process_id"], "KILL")


async def test_output_of_a_late_reader_is_kept(local: LocalProcesses) -> None:
    spawned = await local.spawn("sh", args=["-c", "printf one; printf two >&2"])
    with anyio.fail_after(10):
        while local.status(spawned["process_id"])["state"] != "exited":
            await anyio.sleep(0.02)
    events = await collect(local.stdout_stream(spawned["process_id"]))
    assert b"".join(unb64(e.data.get("data_b64")) for e in events[:-1]) in (b"onetwo", b"twoone")


async def test_closing_ends_every_process(sandbox: SandboxFS) -> None:
    runner = LocalProcesses(sandbox)
    root = Path(sandbox.root)
    spawned = [
        await runner.spawn("sh", args=["-c", "sleep 60 & echo $! > a.pid; wait"]),
        await runner.spawn("sh", args=["-c", "trap '' TERM HUP; sleep 60 & echo $! > b.pid; wait"]),
        await runner.spawn(
            "sh", args=["-c", "sleep 60 & echo $! > c.pid; wait"], allocate_tty=True
        ),
    ]
    children = [await read_pid(root / f"{n}.pid") for n in "abc"]
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runner.exec("sh", args=["-c", "echo $$ > d.pid; exec sleep 60"]))
        children.append(await read_pid(root / "d.pid"))
        with anyio.fail_after(20):
            await runner.aclose()
    for process in spawned:
        assert runner.status(process["process_id"])["state"] == "exited"
    for pid in [p["pid"] for p in spawned] + children:
        await wait_dead(pid)
    await araised(409, runner.spawn, "true")  # a deleted browser starts nothing


# -- the scripted stand-in -------------------------------------------------------------


async def test_scripted_exec_answers_from_the_script() -> None:
    runner = ScriptedProcesses()
    runner.on_exec("ls", stdout=b"a.txt\n")
    runner.on_exec(
        lambda command, args: command == "sh" and "-c" in args, stderr=b"no", exit_code=2
    )
    runner.on_exec("ls", stdout=b"newest wins\n")
    result = await runner.exec("/bin/ls", args=["-l"], env={"A": "1"}, cwd="/tmp")
    conforms("ProcessExecResponse", result)
    assert unb64(result["stdout_b64"]) == b"newest wins\n"
    assert result["exit_code"] == 0
    result = await runner.exec("sh", args=["-c", "true"])
    assert (result["exit_code"], unb64(result["stderr_b64"])) == (2, b"no")
    error = await araised(400, runner.exec, "curl")
    assert "curl" in error.message
    assert [(c.command, c.args, c.env, c.cwd, c.spawned) for c in runner.calls] == [
        ("/bin/ls", ("-l",), {"A": "1"}, "/tmp", False),
        ("sh", ("-c", "true"), {}, None, False),
        ("curl", (), {}, None, False),
    ]


async def test_scripted_cwd_is_checked_against_the_memory_fs() -> None:
    fs = MemoryFS()
    fs.write_file("/file", b"")
    fs.create_directory("/work")
    runner = ScriptedProcesses(fs)
    runner.on_exec("pwd")
    await runner.exec("pwd", cwd="/work")
    await araised(404, runner.exec, "pwd", cwd="/none")
    await araised(400, runner.exec, "pwd", cwd="/file")
    await araised(403, runner.exec, "pwd", cwd="/..")


async def test_scripted_spawn_streams_and_holds() -> None:
    runner = ScriptedProcesses()
    runner.on_exec("build", stdout=b"built\n", stderr=b"warn\n", exit_code=1)
    runner.on_exec("server", stdout=b"listening\n", hold=True)
    done = await runner.spawn("build")
    conforms("ProcessSpawnResponse", done)
    events = await collect(runner.stdout_stream(done["process_id"]))
    assert [e.data for e in events] == [
        {"stream": "stdout", "data_b64": b64(b"built\n")},
        {"stream": "stderr", "data_b64": b64(b"warn\n")},
        {"event": "exit", "exit_code": 1},
    ]
    assert runner.status(done["process_id"])["state"] == "exited"
    served = await runner.spawn("server", allocate_tty=True, cols=100, rows=40)
    process_id = served["process_id"]
    assert runner.status(process_id)["state"] == "running"
    assert await runner.stdin(process_id, b64(b"GET /\n")) == {"written_bytes": 6}
    assert runner.stdin_of(process_id) == b"GET /\n"
    assert runner.resize(process_id, 120, 50) == {"ok": True}
    assert runner.kill(process_id, "TERM") == {"ok": True}
    events = await collect(runner.stdout_stream(process_id))
    assert events[-1].data == {"event": "exit", "exit_code": 143}
    await araised(409, runner.stdin, process_id, b64(b"late"))
    raised(400, runner.resize, done["process_id"], 80, 24)  # no terminal
    raised(404, runner.status, "nope")
    raised(400, runner.kill, process_id, "USR1")


async def test_scripted_close_ends_held_processes() -> None:
    runner = ScriptedProcesses()
    runner.on_exec("server", hold=True)
    process_id = (await runner.spawn("server"))["process_id"]
    await runner.aclose()
    assert runner.status(process_id) == {
        "state": "exited",
        "exit_code": 137,
        "cpu_pct": None,
        "mem_bytes": None,
    }
