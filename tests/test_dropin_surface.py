"""Code written for the official SDK runs on ours: page walking (`iter_pages`,
`next_page_info`), a helpful error for `for` over an async page, the sync stream's
counters, the binary result's response methods, and ``python -m kernel_async``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from kernel_async import AsyncBinaryContent, AsyncKernel, BinaryContent
from kernel_async._gen_support import blocking, charset_of
from kernel_async._pagination import PageInfo
from kernel_async.testing import FakeKernel
from kernel_sync import Kernel


@pytest.fixture
def served() -> Iterator[FakeKernel]:
    with FakeKernel.in_thread(finalise_seconds=0.05) as server:
        yield server


def offsets(fake: FakeKernel, path: str) -> list[str | None]:
    """The offset each GET of `path` (a list) asked for, in order."""
    got = []
    for r in fake.requests:
        where = urlsplit(r.raw_path)
        if r.method == "GET" and where.path == path:
            got.append(dict(parse_qsl(where.query)).get("offset"))
    return got


@pytest.mark.anyio
async def test_async_page_iter_pages_and_next_page_info(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    for name in "abcde":
        await client.profiles.create(name=name)
    first = await client.profiles.list(limit=2)
    info = first.next_page_info()
    assert isinstance(info, PageInfo) and info.params == {"offset": 2}
    pages = [page async for page in first.iter_pages()]
    assert [[p.name for p in page.items] for page in pages] == [["a", "b"], ["c", "d"], ["e"]]
    assert pages[0] is first and pages[-1].next_page_info() is None
    assert offsets(fake, "/profiles") == [None, "2", "4"]  # each page fetched once


@pytest.mark.anyio
async def test_for_over_an_async_page_says_async_for(client: AsyncKernel) -> None:
    await client.profiles.create(name="a")
    page = await client.profiles.list()
    with pytest.raises(TypeError, match="async for"):
        for _ in page:  # type: ignore[attr-defined]
            pass
    with pytest.raises(TypeError, match="async for"):
        iter(client.profiles.list())  # type: ignore[call-overload]


def test_sync_page_iter_pages_and_next_page_info(served: FakeKernel) -> None:
    with Kernel(api_key=served.api_key, base_url=served.base_url) as k:
        for name in "abcde":
            k.profiles.create(name=name)
        first = k.profiles.list(limit=2)
        assert first.next_page_info() == PageInfo({"offset": 2})
        pages = list(first.iter_pages())
        assert [[p.name for p in page.items] for page in pages] == [["a", "b"], ["c", "d"], ["e"]]
        assert pages[0] is first and pages[-1].next_page_info() is None
    assert offsets(served, "/profiles") == [None, "2", "4"]


@pytest.mark.anyio
async def test_browser_page_iter_pages_and_next_page_info(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    made = [(await client.browsers.create()).session_id for _ in range(5)]
    first = await client.browsers.list(limit=2)
    assert first.next_page_info() == PageInfo({"offset": 2})
    seen = [b.session_id async for page in first.iter_pages() for b in page.items]
    assert sorted(seen) == sorted(made) and len(seen) == 5
    assert offsets(fake, "/browsers") == [None, "2", "4"]
    pager = client.browsers.list(limit=2)
    await pager
    assert pager.next_page_info() == PageInfo({"offset": 2})


@pytest.mark.anyio
async def test_async_browser_pager_iter_pages(fake: FakeKernel, client: AsyncKernel) -> None:
    made = [(await client.browsers.create()).session_id for _ in range(5)]
    pages = [page async for page in client.browsers.list(limit=2).iter_pages()]
    assert [len(page.items) for page in pages] == [2, 2, 1]
    assert sorted(b.session_id for page in pages for b in page.items) == sorted(made)
    assert offsets(fake, "/browsers") == [None, "2", "4"]  # each page fetched once


def test_sync_browser_pager_iter_pages(served: FakeKernel) -> None:
    with Kernel(api_key=served.api_key, base_url=served.base_url) as k:
        made = [k.browsers.create().session_id for _ in range(5)]
        pages = list(k.browsers.list(limit=2).iter_pages())
        assert [len(page.items) for page in pages] == [2, 2, 1]
        assert sorted(b.session_id for page in pages for b in page.items) == sorted(made)
        assert not pages[-1].has_next_page()
        for _page in k.browsers.list(limit=2).iter_pages():
            break  # leaving early fetches no further page
    assert offsets(served, "/browsers") == [None, "2", "4", None]


def test_sync_browser_pager_next_page_info(served: FakeKernel) -> None:
    with Kernel(api_key=served.api_key, base_url=served.base_url) as k:
        for _ in range(3):
            k.browsers.create()
        pager = k.browsers.list(limit=2)
        assert pager.next_page_info() == PageInfo({"offset": 2})
        assert pager.get_next_page().next_page_info() is None


def test_sync_stream_counters(served: FakeKernel) -> None:
    with Kernel(api_key=served.api_key, base_url=served.base_url) as k:
        b = k.browsers.create().session_id
        for n in range(3):
            served.log(b, f"line {n}")
        served.fail("browsers.logs.stream", status=None, drop_after=2, times=1)
        with k.browsers.logs.stream(b, source="supervisor") as stream:
            assert stream.operation == "browsers.logs.stream"
            got = [event.message for event in stream]
        assert got == [f"browser {b} created", "line 0", "line 1", "line 2"]
        assert stream.received == 4 and stream.reconnects == 1
        assert stream.last_event_id is not None
    resumed = [
        r.headers.get("Last-Event-ID")
        for r in served.requests
        if r.operation == "browsers.logs.stream"
    ]
    assert resumed == [None, "2"]


def test_charset_of() -> None:
    assert charset_of(None) == "utf-8"
    assert charset_of("image/png") == "utf-8"
    assert charset_of('text/plain; charset="ISO-8859-1"') == "iso8859-1"
    assert charset_of("text/plain;CHARSET=latin-1") == "iso8859-1"
    assert charset_of("text/plain; charset=nope") == "utf-8"


def test_binary_content_official_methods(tmp_path: Path) -> None:
    body = BinaryContent("é\n{}".encode("latin-1"), {"Content-Type": "text/plain; charset=latin-1"})
    assert body.read() == body and type(body.read()) is bytes and body.parse() == body
    assert body.text() == "é\n{}"
    assert list(body.iter_lines()) == ["é", "{}"]
    assert list(body.iter_text(2)) == ["é\n", "{}"]
    assert list(body.iter_bytes(3)) == [b"\xe9\n{", b"}"]
    assert list(body.iter_bytes()) == [bytes(body)]
    assert list(BinaryContent(b"").iter_bytes()) == []
    with pytest.raises(ValueError, match="chunk_size"):
        list(body.iter_bytes(0))
    assert BinaryContent(b'{"a": [1]}').json() == {"a": [1]}
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    assert body.write_to_file(str(target)) == target
    assert target.read_bytes() == bytes(body)
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temporary left
    body.close()


@pytest.mark.anyio
async def test_async_binary_content_official_methods(tmp_path: Path) -> None:
    body = AsyncBinaryContent(
        "é\n{}".encode("latin-1"), {"Content-Type": "text/plain; charset=latin-1"}
    )
    assert await body.read() == body and type(await body.read()) is bytes
    assert await body.parse() == body and await body.text() == "é\n{}"
    assert [line async for line in body.iter_lines()] == ["é", "{}"]
    assert [part async for part in body.iter_text(2)] == ["é\n", "{}"]
    assert [part async for part in body.iter_bytes(3)] == [b"\xe9\n{", b"}"]
    assert [part async for part in AsyncBinaryContent(b"").iter_bytes()] == []
    with pytest.raises(ValueError, match="chunk_size"):
        [part async for part in body.iter_bytes(0)]
    assert await AsyncBinaryContent(b'{"a": [1]}').json() == {"a": [1]}
    target = tmp_path / "out.bin"
    assert await body.write_to_file(target) == target
    assert target.read_bytes() == bytes(body)
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    await body.close()
    assert repr(body) == "<AsyncBinaryContent 4 bytes, text/plain; charset=latin-1>"


@pytest.mark.anyio
async def test_binary_result_over_the_emulator(client: AsyncKernel, tmp_path: Path) -> None:
    b = (await client.browsers.create()).session_id
    await client.browsers.fs.write_file(b, b'{"ok": true}', path="/tmp/a.json")
    # Written for the official async client, unchanged but for the import.
    resp = await client.browsers.fs.read_file(b, path="/tmp/a.json")
    assert await resp.json() == {"ok": True} and await resp.read() == b'{"ok": true}'
    await resp.write_to_file(tmp_path / "a.json")
    assert json.loads((tmp_path / "a.json").read_text()) == {"ok": True}
    assert isinstance(resp, AsyncBinaryContent) and resp == b'{"ok": true}'
    assert (resp.status_code, resp.method, resp.is_closed) == (200, "GET", True)
    assert resp.url.startswith(f"{client.base_url}/browsers/{b}/fs/")
    assert "path=%2Ftmp%2Fa.json" in resp.url
    with pytest.raises(AttributeError, match=r"'elapsed'.*time the call"):
        resp.elapsed  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(resp, "http_request") and not hasattr(resp, "http_version")


def test_the_blocking_client_gives_blocking_binary_results(
    served: FakeKernel, tmp_path: Path
) -> None:
    with Kernel(api_key=served.api_key, base_url=served.base_url) as k:
        b = k.browsers.create().session_id
        k.browsers.fs.write_file(b, b"hi", path="/tmp/t.txt")
        resp = k.browsers.fs.read_file(b, path="/tmp/t.txt")
        assert type(resp) is BinaryContent and resp.read() == b"hi" and resp.text() == "hi"
        assert (resp.status_code, resp.method) == (200, "GET")  # kept by blocking()
        assert resp.headers and resp.write_to_file(tmp_path / "t.txt") == tmp_path / "t.txt"


def test_blocking_keeps_the_bytes_and_headers_without_copying() -> None:
    data = AsyncBinaryContent(b"x" * 100, {"Content-Type": "image/png"})
    where = id(data)
    same = blocking(data)
    assert id(same) == where and type(same) is BinaryContent  # the object itself
    assert same.read() == b"x" * 100 and same.content_type == "image/png"


def test_python_m_kernel_async_runs_the_cli(served: FakeKernel) -> None:
    b = served.create_browser()
    env = {"KERNEL_BASE_URL": served.base_url, "KERNEL_API_KEY": served.api_key, "PATH": ""}
    runs = [
        subprocess.run(
            [sys.executable, "-m", module, "--json", "browsers", "list"],
            capture_output=True,
            text=True,
            env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
            timeout=60,
        )
        for module in ("kernel_async", "kernel_sync")
    ]
    assert runs[0].returncode == runs[1].returncode == 0, runs[0].stderr
    assert runs[0].stdout == runs[1].stdout and b in runs[0].stdout
    assert [r.operation for r in served.requests].count("list_browsers") == 2
