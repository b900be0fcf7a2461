"""A browser's machine in the emulator: ``browsers.fs`` and ``browsers.process``.

On the local Chromium backend each browser gets a sandbox directory of its own on the
host (`_sandbox.SandboxFS`: the API's absolute paths resolve inside it, nothing outside
is reachable) and its commands run there for real (`_processes.LocalProcesses`).

**The emulator then runs commands on your machine, as you**: only on loopback and only
for holders of the emulator's key, but with your user's rights. Use it for your own
tests. In memory (the default backend) nothing runs: files live in a `MemoryFS` and
``exec``/``spawn`` answer what a test scripted with ``fake.on_exec(...)``.

Files a local browser downloads land in its sandbox's `DOWNLOADS` (``/tmp/downloads``, as
on Kernel), under their suggested names once complete (a ``.crdownload`` file meanwhile).

Everything a browser's machine holds (files, processes: their whole process groups) ends
with the browser, and with the emulator.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from ._events import Event, resume_after, serve_sse
from ._processes import LocalProcesses, ProcessRunner, ScriptedProcesses, _Script
from ._sandbox import FileSystem, MemoryFS, SandboxFS

if TYPE_CHECKING:
    from ._emulator import BrowserOp, FakeKernel, FamilyCall

__all__ = ["DOWNLOADS", "Machines", "register"]

DOWNLOADS = "/tmp/downloads"
"""Where a browser's downloads land in its file system (as on Kernel)."""


@attrs.define
class Machine:
    """One browser's files and processes."""

    fs: FileSystem
    processes: ProcessRunner
    root: str | None  # the sandbox directory (local backend), removed at the end

    async def aclose(self) -> None:
        await self.processes.aclose()
        await self.fs.aclose()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


class Machines:
    """The machines of one emulator's browsers, made on first use."""

    def __init__(self, real: Callable[[], bool]) -> None:
        self._real = real
        self._machines: dict[str, Machine] = {}
        self._roots: list[str] = []  # every sandbox made, swept again at the end
        self.scripts: list[_Script] = []  # fake.on_exec(...), shared by every browser

    def of(self, browser_id: str) -> Machine:
        machine = self._machines.get(browser_id)
        if machine is None:
            machine = self._machines[browser_id] = self._make()
        return machine

    def _make(self) -> Machine:
        if self._real():
            root = tempfile.mkdtemp(prefix="kernel-machine-")
            self._roots.append(root)
            sandbox = SandboxFS(root)
            return Machine(sandbox, LocalProcesses(sandbox), root)
        memory = MemoryFS()
        return Machine(memory, ScriptedProcesses(memory, self.scripts), None)

    def downloads(self, browser_id: str) -> str:
        """The host directory of the browser's `DOWNLOADS` (made now, with its machine)."""
        return self.directory(browser_id, DOWNLOADS)

    def directory(self, browser_id: str, path: str) -> str:
        """The host directory a directory of the browser's machine is (made if missing;
        a path leading out of its sandbox is refused, as by ``browsers.fs``)."""
        fs = self.of(browser_id).fs
        if not isinstance(fs, SandboxFS):
            raise TypeError("downloads land in a sandbox: only browsers of a local backend")
        fs.create_directory(path)
        return fs.host_dir(path)

    async def end(self, browser_id: str) -> None:
        machine = self._machines.pop(browser_id, None)
        if machine is not None:
            await machine.aclose()

    async def aclose(self) -> None:
        for browser_id in list(self._machines):
            await self.end(browser_id)
        # A browser ends after its sandbox: a download it began meanwhile made its
        # directory again (Chromium makes the download folder when it is missing).
        for root in self._roots:
            shutil.rmtree(root, ignore_errors=True)
        self._roots.clear()


def register(fake: FakeKernel) -> Mapping[str, BrowserOp]:
    """The fs and process families for one emulator (a local Chromium saves its browsers'
    downloads into their sandboxes)."""
    from ._chromium_backend import ChromiumBackend

    if isinstance(fake.backend, ChromiumBackend):
        fake.backend.machine_dir = fake.machines.directory
    return {**_file_ops(fake.machines), **_process_ops(fake.machines)}


def _body(call: FamilyCall) -> dict[str, Any]:
    return call.body if isinstance(call.body, dict) else {}


def _file_ops(machines: Machines) -> dict[str, BrowserOp]:
    """``browsers.fs`` (and ``fs.watch``) on each browser's file system."""

    def fs(call: FamilyCall) -> FileSystem:
        return machines.of(call.browser_id).fs

    body = _body

    async def read_file(call: FamilyCall) -> web.StreamResponse:
        data = fs(call).read_file(call.query["path"])
        return web.Response(body=data, content_type="application/octet-stream")

    async def write_file(call: FamilyCall) -> web.StreamResponse:
        fs(call).write_file(call.query["path"], call.raw, call.query.get("mode"))
        return _done()

    async def upload(call: FamilyCall) -> web.StreamResponse:
        files: dict[str, dict[str, Any]] = {}
        for part in _parts(call):
            index, _, field = part.name.removeprefix("files[").partition("][")
            entry = files.setdefault(index, {})
            entry[field.rstrip("]")] = part
        pairs = [(e["dest_path"].data.decode(), e["file"].data) for e in files.values()]
        fs(call).upload(pairs)
        return _done()

    async def upload_zip(call: FamilyCall) -> web.StreamResponse:
        parts = {p.name: p for p in _parts(call)}
        fs(call).upload_zip(parts["dest_path"].data.decode(), parts["zip_file"].data)
        return _done()

    async def download_dir_zip(call: FamilyCall) -> web.StreamResponse:
        data = fs(call).download_dir_zip(call.query["path"])
        return web.Response(body=data, content_type="application/zip")

    async def list_files(call: FamilyCall) -> web.StreamResponse:
        return web.json_response(fs(call).list_files(call.query["path"]))

    async def file_info(call: FamilyCall) -> web.StreamResponse:
        return web.json_response(fs(call).file_info(call.query["path"]))

    async def move(call: FamilyCall) -> web.StreamResponse:
        b = body(call)
        fs(call).move(b["src_path"], b["dest_path"])
        return _done()

    async def create_directory(call: FamilyCall) -> web.StreamResponse:
        b = body(call)
        fs(call).create_directory(b["path"], b.get("mode"))
        return _done()

    async def delete_file(call: FamilyCall) -> web.StreamResponse:
        fs(call).delete_file(body(call)["path"])
        return _done()

    async def delete_directory(call: FamilyCall) -> web.StreamResponse:
        fs(call).delete_directory(body(call)["path"])
        return _done()

    async def set_file_permissions(call: FamilyCall) -> web.StreamResponse:
        b = body(call)
        fs(call).set_file_permissions(b["path"], b["mode"], b.get("owner"), b.get("group"))
        return _done()

    async def watch_start(call: FamilyCall) -> web.StreamResponse:
        b = body(call)
        return web.json_response(await fs(call).watch_start(b["path"], bool(b.get("recursive"))))

    async def watch_stop(call: FamilyCall) -> web.StreamResponse:
        await fs(call).watch_stop(call.params["watch_id"])
        return _done()

    async def watch_events(call: FamilyCall) -> web.StreamResponse:
        after = _after(call)
        return await _sse(call, fs(call).watch_events(call.params["watch_id"], after=after))

    return {
        "browsers.fs.read_file": read_file,
        "browsers.fs.write_file": write_file,
        "browsers.fs.upload": upload,
        "browsers.fs.upload_zip": upload_zip,
        "browsers.fs.download_dir_zip": download_dir_zip,
        "browsers.fs.list_files": list_files,
        "browsers.fs.file_info": file_info,
        "browsers.fs.move": move,
        "browsers.fs.create_directory": create_directory,
        "browsers.fs.delete_file": delete_file,
        "browsers.fs.delete_directory": delete_directory,
        "browsers.fs.set_file_permissions": set_file_permissions,
        "browsers.fs.watch.start": watch_start,
        "browsers.fs.watch.stop": watch_stop,
        "browsers.fs.watch.events": watch_events,
    }


def _process_ops(machines: Machines) -> dict[str, BrowserOp]:
    """``browsers.process`` on each browser's processes."""

    def procs(call: FamilyCall) -> ProcessRunner:
        return machines.of(call.browser_id).processes

    body = _body

    async def exec_(call: FamilyCall) -> web.StreamResponse:
        return web.json_response(await procs(call).exec(**_command(body(call))))

    async def spawn(call: FamilyCall) -> web.StreamResponse:
        return web.json_response(await procs(call).spawn(**_command(body(call), spawn=True)))

    async def status(call: FamilyCall) -> web.StreamResponse:
        return web.json_response(procs(call).status(call.params["process_id"]))

    async def stdin(call: FamilyCall) -> web.StreamResponse:
        written = await procs(call).stdin(call.params["process_id"], body(call)["data_b64"])
        return web.json_response(written)

    async def kill(call: FamilyCall) -> web.StreamResponse:
        return web.json_response(procs(call).kill(call.params["process_id"], body(call)["signal"]))

    async def resize(call: FamilyCall) -> web.StreamResponse:
        b = body(call)
        return web.json_response(
            procs(call).resize(call.params["process_id"], b["cols"], b["rows"])
        )

    async def stdout_stream(call: FamilyCall) -> web.StreamResponse:
        events = procs(call).stdout_stream(call.params["process_id"], after=_after(call))
        return await _sse(call, events)

    return {
        "browsers.process.exec": exec_,
        "browsers.process.spawn": spawn,
        "browsers.process.status": status,
        "browsers.process.stdin": stdin,
        "browsers.process.kill": kill,
        "browsers.process.resize": resize,
        "browsers.process.stdout_stream": stdout_stream,
    }


def _done() -> web.Response:
    return web.Response(status=204)


def _parts(call: FamilyCall) -> Sequence[Any]:
    from ._validate import parse_form

    return parse_form(call.request.headers.get("Content-Type", ""), call.raw) or []


_COMMAND_FIELDS = ("command", "args", "env", "cwd", "timeout_sec", "as_root", "as_user")
_SPAWN_FIELDS = ("allocate_tty", "cols", "rows")


def _command(body: Mapping[str, Any], *, spawn: bool = False) -> dict[str, Any]:
    """The runner's keyword arguments from an exec or spawn body."""
    fields = _COMMAND_FIELDS + (_SPAWN_FIELDS if spawn else ())
    return {k: body[k] for k in fields if k in body}


def _after(call: FamilyCall) -> int:
    """Resume after the last event the client saw (``Last-Event-ID``)."""
    return resume_after(call.request)


async def _sse(call: FamilyCall, events: AsyncIterator[Event]) -> web.StreamResponse:
    """Serve events with ids; a fault's ``drop_after`` cuts the stream."""
    drop_after = call.fault.drop_after if call.fault is not None else None
    return await serve_sse(call.request, events, drop_after=drop_after)
