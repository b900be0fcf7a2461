"""A browser's machine in the emulator, over HTTP: browsers.fs and browsers.process, in
memory (deterministic stand-ins, scripted exec) and on the local Chromium backend (a real
sandbox directory, real processes; escapes refused)."""

from __future__ import annotations

import base64
import glob
import os
from collections.abc import AsyncIterator

import pytest

from kernel_async import AsyncKernel, BadRequestError, NotFoundError, PermissionDeniedError
from kernel_async.testing import FakeKernel

pytestmark = pytest.mark.anyio


async def test_files_round_trip_in_memory(fake: FakeKernel, client: AsyncKernel) -> None:
    b = (await client.browsers.create()).session_id
    await client.browsers.fs.write_file(b, b"hello", path="/tmp/downloads/a.txt")
    assert await client.browsers.fs.read_file(b, path="/tmp/downloads/a.txt") == b"hello"
    await client.browsers.fs.upload(b, files=[{"dest_path": "/data/b.bin", "file": b"xyz"}])
    info = await client.browsers.fs.file_info(b, path="/data/b.bin")
    assert (info.size_bytes, info.is_dir) == (3, False)
    await client.browsers.fs.move(b, src_path="/data/b.bin", dest_path="/data/c.bin")
    names = [f.name for f in await client.browsers.fs.list_files(b, path="/data")]
    assert names == ["c.bin"]
    zipped = await client.browsers.fs.download_dir_zip(b, path="/data")
    assert zipped[:2] == b"PK"
    await client.browsers.fs.delete_directory(b, path="/data")
    with pytest.raises(NotFoundError):
        await client.browsers.fs.file_info(b, path="/data/c.bin")
    other = (await client.browsers.create()).session_id  # browsers never share files
    with pytest.raises(NotFoundError):
        await client.browsers.fs.read_file(other, path="/tmp/downloads/a.txt")


async def test_exec_answers_what_the_test_scripted(fake: FakeKernel, client: AsyncKernel) -> None:
    b = (await client.browsers.create()).session_id
    fake.on_exec("git", stdout=b"v2\n", exit_code=0)
    fake.on_exec(lambda cmd, args: cmd == "false", exit_code=1, stderr=b"no")
    done = await client.browsers.process.exec(b, command="git", args=["--version"])
    assert base64.b64decode(done.stdout_b64 or "") == b"v2\n" and done.exit_code == 0
    failed = await client.browsers.process.exec(b, command="false")
    assert failed.exit_code == 1
    with pytest.raises(BadRequestError, match="rm"):
        await client.browsers.process.exec(b, command="rm", args=["-rf", "/"])


async def test_a_spawned_process_streams_and_resumes(fake: FakeKernel, client: AsyncKernel) -> None:
    b = (await client.browsers.create()).session_id
    fake.on_exec("tail", stdout=b"one\ntwo\n", exit_code=0)
    spawned = await client.browsers.process.spawn(b, command="tail")
    assert spawned.process_id is not None
    fake.fail("browsers.process.stdout_stream", status=None, drop_after=1)
    stream = await client.browsers.process.stdout_stream(spawned.process_id, id_or_name=b)
    events = [e async for e in stream]
    assert events[-1].event == "exit" and events[-1].exit_code == 0
    out = b"".join(base64.b64decode(e.data_b64) for e in events if e.data_b64)
    assert out == b"one\ntwo\n" and stream.reconnects == 1


async def test_fs_operations_need_an_active_browser(client: AsyncKernel) -> None:
    with pytest.raises(NotFoundError):
        await client.browsers.fs.read_file("br_nope", path="/x")
    b = (await client.browsers.create()).session_id
    with pytest.raises(BadRequestError):
        await client.browsers.fs.read_file(b, path="relative/path")


@pytest.fixture
async def local() -> AsyncIterator[tuple[FakeKernel, AsyncKernel, str]]:
    async with FakeKernel(backend="chromium", max_browsers=1) as server:
        async with server.client() as c:
            b = (await c.browsers.create()).session_id
            yield server, c, b


@pytest.mark.once
async def test_a_local_browsers_machine_is_real_and_sandboxed(
    local: tuple[FakeKernel, AsyncKernel, str],
) -> None:
    _, client, b = local
    await client.browsers.fs.write_file(b, b"secret-free", path="/tmp/x.txt")
    ran = await client.browsers.process.exec(b, command="cat", args=["tmp/x.txt"])
    assert base64.b64decode(ran.stdout_b64 or "") == b"secret-free"  # cwd: the sandbox root
    # The host is out of reach: its files are not there, and climbing out is refused.
    for path in ("/etc/passwd", "/proc/self/environ"):
        with pytest.raises(NotFoundError):
            await client.browsers.fs.read_file(b, path=path)
    with pytest.raises((PermissionDeniedError, BadRequestError)):
        await client.browsers.fs.read_file(b, path="/../../etc/passwd")
    # A link a process makes to the host is refused when read through the API.
    await client.browsers.process.exec(b, command="ln", args=["-s", "/etc", "tmp/host"])
    with pytest.raises((PermissionDeniedError, BadRequestError, NotFoundError)):
        await client.browsers.fs.read_file(b, path="/tmp/host/passwd")
    # A write trying to climb out lands nowhere outside.
    with pytest.raises((PermissionDeniedError, BadRequestError)):
        await client.browsers.fs.write_file(b, b"x", path="/../../../tmp/escaped-by-test")
    assert not os.path.exists("/tmp/escaped-by-test")


@pytest.mark.once
async def test_a_deleted_browser_takes_its_processes_and_files(
    local: tuple[FakeKernel, AsyncKernel, str],
) -> None:
    _, client, b = local
    before = set(glob.glob("/tmp/kernel-machine-*"))
    spawned = await client.browsers.process.spawn(b, command="sleep", args=["60"])
    roots = set(glob.glob("/tmp/kernel-machine-*")) - before
    assert spawned.process_id is not None
    status = await client.browsers.process.status(spawned.process_id, id_or_name=b)
    assert status.state == "running"
    await client.browsers.delete(b)
    assert spawned.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(spawned.pid, 0)  # gone (and reaped)
    assert not any(os.path.exists(r) for r in roots)


@pytest.mark.once
async def test_a_real_processs_output_resumes_exactly_once_after_drops(
    local: tuple[FakeKernel, AsyncKernel, str],
) -> None:
    server, client, b = local
    script = "for i in $(seq 1 300); do echo line-$i; [ $((i % 50)) -eq 0 ] && sleep 0.05; done"
    spawned = await client.browsers.process.spawn(b, command="sh", args=["-c", script])
    assert spawned.process_id is not None
    # Three cuts, each after a few events: the stream resumes with Last-Event-ID each time.
    server.fail("browsers.process.stdout_stream", status=None, drop_after=2, times=3)
    before = len(server.requests)
    stream = await client.browsers.process.stdout_stream(spawned.process_id, id_or_name=b)
    events = [e async for e in stream]
    assert events[-1].event == "exit" and events[-1].exit_code == 0
    out = b"".join(base64.b64decode(e.data_b64) for e in events if e.data_b64)
    assert out.decode().split() == [f"line-{i}" for i in range(1, 301)]
    assert stream.reconnects == 3
    resumed = [r.headers.get("Last-Event-ID") for r in server.requests[before:]]
    assert resumed == [None, "2", "4", "6"]
