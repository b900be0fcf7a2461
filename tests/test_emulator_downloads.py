"""Downloads on the emulator's local Chromium land in the browser's own file system: a file a
page downloads is listed by ``browsers.fs.list_files`` under ``/tmp/downloads`` (as on
Kernel) and read back by ``read_file``; while it downloads it shows as a ``.crdownload``
file, never under its own name; a second one of the same name is ``name (1)``; two
browsers never see each other's."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from kernel_async import AsyncKernel, Viewport
from kernel_async.testing import FakeKernel
from kernel_async.testing._chromium import download_preferences
from kernel_async.testing._machine import Machines

pytestmark = pytest.mark.anyio

DOWNLOADS = "/tmp/downloads"
# The link fills the page's top-left corner: a click there follows it.
PAGE = """<html><body style="margin:0">
<a href="/file/{who}" style="display:block;width:200px;height:100px;background:#00f">report</a>
</body></html>"""


def test_the_profile_names_the_download_directory() -> None:
    assert download_preferences("/x/tmp/downloads") == {
        "download": {"default_directory": "/x/tmp/downloads", "prompt_for_download": False}
    }


async def test_a_download_folder_made_again_after_its_browser_ended_goes_at_the_end() -> None:
    machines = Machines(lambda: True)
    folder = machines.downloads("br_1")
    assert os.path.isdir(folder) and folder.endswith(os.path.join("tmp", "downloads"))
    await machines.end("br_1")  # the emulator ends the sandbox, then the browser...
    assert not os.path.exists(folder)
    os.makedirs(folder)  # ...which may start a download meanwhile
    await machines.aclose()
    assert not os.path.exists(folder.removesuffix(os.path.join("tmp", "downloads")))


class Files:
    """A loopback site: a page per browser linking to an attachment of its own; browser
    ``a``'s attachment sends its first half, then waits for `release`."""

    def __init__(self) -> None:
        self.payload = {"a": os.urandom(48 * 1024), "b": os.urandom(20 * 1024)}
        self.release = asyncio.Event()
        self.served: list[str] = []

    async def page(self, request: web.Request) -> web.Response:
        html = PAGE.format(who=request.match_info["who"])
        return web.Response(text=html, content_type="text/html")

    async def file(self, request: web.Request) -> web.StreamResponse:
        who = request.match_info["who"]
        self.served.append(who)
        data = self.payload[who]
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": 'attachment; filename="report.bin"',
                "Content-Length": str(len(data)),
            }
        )
        await response.prepare(request)
        half = len(data) // 2
        await response.write(data[:half])
        if who == "a":
            await asyncio.wait_for(self.release.wait(), 60)
        await response.write(data[half:])
        await response.write_eof()
        return response


@pytest.fixture
async def site() -> AsyncIterator[tuple[Files, str]]:
    files = Files()
    app = web.Application()
    app.router.add_get("/page/{who}", files.page)
    app.router.add_get("/file/{who}", files.file)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield files, f"http://127.0.0.1:{port}"
    finally:
        files.release.set()
        await runner.cleanup()


async def listed(client: AsyncKernel, bid: str, *, until: str, bound: float = 30.0) -> list[str]:
    """The names in the browser's downloads directory, once one ends with ``until``."""
    deadline = time.monotonic() + bound
    t0 = time.monotonic()
    while True:
        names = [f.name for f in await client.browsers.fs.list_files(bid, path=DOWNLOADS)]
        if any(name.endswith(until) for name in names) or time.monotonic() > deadline:
            print("listed", until, round(time.monotonic() - t0, 2), names)
            return names
        await asyncio.sleep(0.05)


@pytest.mark.once
async def test_a_download_lands_in_its_own_browsers_downloads(site: tuple[Files, str]) -> None:
    files, origin = site
    async with FakeKernel(backend="chromium") as fake, fake.client(max_retries=0) as client:
        a, b = [
            (await client.browsers.create(viewport=Viewport(320, 180), start_url=url)).session_id
            for url in (f"{origin}/page/a", f"{origin}/page/b")
        ]
        assert await client.browsers.fs.list_files(a, path=DOWNLOADS) == []  # there, empty

        await client.browsers.computer.click_mouse(a, x=100, y=50)  # follow the link
        # Half of it is in: Chromium's partial file, never the name a reader would take.
        partial = await listed(client, a, until=".crdownload")
        assert len(partial) == 1 and partial[0].endswith(".crdownload"), partial
        assert await client.browsers.fs.list_files(b, path=DOWNLOADS) == []
        files.release.set()
        assert await listed(client, a, until="report.bin") == ["report.bin"]
        path = f"{DOWNLOADS}/report.bin"
        assert await client.browsers.fs.read_file(a, path=path) == files.payload["a"]
        assert (await client.browsers.fs.file_info(a, path=path)).size_bytes == 48 * 1024
        await client.browsers.computer.click_mouse(a, x=100, y=50)  # again: kept apart
        both = sorted(await listed(client, a, until="(1).bin"))
        assert both == ["report (1).bin", "report.bin"]
        again = await client.browsers.fs.read_file(a, path=f"{DOWNLOADS}/report (1).bin")
        assert again == files.payload["a"]

        await client.browsers.computer.click_mouse(b, x=100, y=50)
        assert await listed(client, b, until="report.bin") == ["report.bin"]
        assert await client.browsers.fs.read_file(b, path=path) == files.payload["b"]
        # Each sees its own files only.
        assert await client.browsers.fs.read_file(a, path=path) == files.payload["a"]
        assert len(await client.browsers.fs.list_files(a, path=DOWNLOADS)) == 2
        assert files.served == ["a", "a", "b"]
