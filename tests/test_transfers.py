"""Files to and from the API: uploads streamed from paths and file objects (never read
whole, re-sent from the start on a retry) and binary results saved atomically with the
generated ``*_to`` methods. Real sockets on loopback, a small aiohttp.web server."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

import kernel_async
from kernel_async import AsyncKernel
from kernel_sync import Kernel

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024


class Server:
    """Records what each request carried (sizes and digests: bodies are not kept)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, object]] = []
        self.fail_first: int = 0  # answer 503 to this many requests first
        self.payload = b""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            digest.update(chunk)
            size += len(chunk)
        self.seen.append(
            {
                "path": request.raw_path,
                "size": size,
                "sha256": digest.hexdigest(),
                "length": request.headers.get("Content-Length"),
                "chunked": request.headers.get("Transfer-Encoding"),
                "type": request.headers.get("Content-Type", ""),
            }
        )
        if self.fail_first:
            self.fail_first -= 1
            return web.Response(status=503, headers={"Retry-After": "0"})
        if request.method == "GET" or request.path.endswith("/screenshot"):
            return web.Response(body=self.payload, content_type="application/octet-stream")
        return web.Response(status=200)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    state = Server()
    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield state, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def big_file(tmp_path: Path, size: int) -> tuple[Path, str]:
    path = tmp_path / "big.bin"
    block = os.urandom(MIB)
    with open(path, "wb") as f:
        for _ in range(size // MIB):
            f.write(block)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_raw_upload_from_a_path_streams_in_bounded_memory(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    state, url = server
    path, digest = big_file(tmp_path, 48 * MIB)
    async with AsyncKernel(api_key="k", base_url=url) as client:
        tracemalloc.start()
        try:
            await client.browsers.fs.write_file("b1", path, path="/tmp/big.bin")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    (seen,) = state.seen
    assert seen["size"] == 48 * MIB and seen["sha256"] == digest
    assert seen["length"] == str(48 * MIB) and seen["chunked"] is None  # not chunked
    assert seen["type"] == "application/octet-stream"
    # The client and the server share this process: both stay far below the file's size.
    assert peak < 16 * MIB, f"peak {peak / MIB:.1f} MiB for a 48 MiB upload"


async def test_a_streamed_upload_is_sent_whole_again_on_a_retry(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    state, url = server
    path, digest = big_file(tmp_path, 3 * MIB)
    state.fail_first = 1
    async with AsyncKernel(api_key="k", base_url=url, max_retries=2) as client:
        with open(path, "rb") as f:  # noqa: ASYNC230
            f.read(MIB)  # a file object is sent from where it stands
            await client.browsers.fs.write_file("b1", f, path="/x")
    assert [s["size"] for s in state.seen] == [2 * MIB, 2 * MIB]
    assert state.seen[0]["sha256"] == state.seen[1]["sha256"]
    assert state.seen[1]["sha256"] == hashlib.sha256(path.read_bytes()[MIB:]).hexdigest()
    assert digest  # the whole file's digest differs: the first MiB was not sent


async def test_a_multipart_upload_streams_files_and_names_them(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    state, url = server
    path, _ = big_file(tmp_path, 8 * MIB)
    async with AsyncKernel(api_key="k", base_url=url) as client:
        await client.browsers.fs.upload(
            "b1",
            files=[
                {"dest_path": "/a/big.bin", "file": path},
                {"dest_path": "/a/small.txt", "file": io.BytesIO(b"hello")},
                {"dest_path": "/a/raw", "file": b"raw bytes"},
            ],
        )
    (seen,) = state.seen
    assert str(seen["type"]).startswith("multipart/form-data; boundary=")
    assert seen["length"] == str(seen["size"]) and seen["chunked"] is None
    assert 8 * MIB < int(str(seen["size"])) < 8 * MIB + 4096


async def test_a_missing_upload_file_fails_before_anything_is_sent(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    state, url = server
    async with AsyncKernel(api_key="k", base_url=url) as client:
        with pytest.raises(FileNotFoundError):
            await client.browsers.fs.write_file("b1", tmp_path / "nope.bin", path="/x")
    assert state.seen == []


async def test_a_binary_result_is_saved_atomically(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    state, url = server
    state.payload = os.urandom(3 * MIB)
    target = tmp_path / "out" / "file.bin"
    target.parent.mkdir()
    seen: list[int] = []
    async with AsyncKernel(api_key="k", base_url=url) as client:
        saved = await client.browsers.fs.read_file_to(
            target, "b1", path="/tmp/file.bin", progress=seen.append
        )
        assert saved == target and target.read_bytes() == state.payload
        assert seen and seen[-1] == 3 * MIB
        shot = await client.browsers.computer.capture_screenshot("b1")
        assert shot == state.payload  # the in-memory twin still returns bytes
        assert isinstance(shot, bytes) and isinstance(shot, kernel_async.AsyncBinaryContent)
        assert shot.content_type == "application/octet-stream"
        assert shot.headers["Content-Length"] == str(3 * MIB)
    assert sorted(os.listdir(target.parent)) == ["file.bin"]  # no temporary file left


async def test_a_failed_save_leaves_the_target_untouched(
    server: tuple[Server, str], tmp_path: Path
) -> None:
    state, url = server
    state.fail_first = 10
    target = tmp_path / "keep.bin"
    target.write_bytes(b"old")
    async with AsyncKernel(api_key="k", base_url=url, max_retries=0) as client:
        with pytest.raises(kernel_async.InternalServerError):
            await client.profiles.download_to(target, "p1")
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["keep.bin"]


def test_the_sync_twin_uploads_and_saves(server_thread: str, tmp_path: Path) -> None:
    path = tmp_path / "up.bin"
    path.write_bytes(b"x" * 1000)
    with Kernel(api_key="k", base_url=server_thread) as client:
        client.browsers.fs.write_file("b1", path, path="/x")
        out = client.browsers.fs.read_file_to(tmp_path / "down.bin", "b1", path="/x")
    assert out.read_bytes() == b"payload"


@pytest.fixture
def server_thread() -> Iterator[str]:
    """The same server on a thread of its own, for the blocking client."""
    import asyncio
    import threading

    ready = threading.Event()
    holder: dict[str, object] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        state = Server()
        state.payload = b"payload"
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", state.handle)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        holder["url"] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        holder["loop"] = loop
        holder["runner"] = runner
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield str(holder["url"])
    finally:
        loop = holder["loop"]
        loop.call_soon_threadsafe(loop.stop)  # type: ignore[attr-defined]
        thread.join(10)
