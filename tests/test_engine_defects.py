"""Regressions for the request-engine defects of issue 10, over real loopback sockets.

Each test here failed on the engine before the rebuild (5fa979c) and holds the fix.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
import resource
import stat
import struct
import threading
import time
import tracemalloc
import warnings
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import pytest

import kernel_async as ka
from kernel_async import AsyncKernel, RetryPolicy, Timeout, set_testing
from tests.scripted import ScriptedServer, hang, reset, respond

if TYPE_CHECKING:
    from kernel_async._retry import RetryBudget

pytestmark = pytest.mark.anyio

T = TypeVar("T")

KEY = "sk-live-0123456789abcdef"
OK = respond(200)
MIB = 1 << 20


def kernel(srv: ScriptedServer, **kw: Any) -> AsyncKernel:
    kw.setdefault("api_key", KEY)
    return AsyncKernel(base_url=srv.base_url, **kw)


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until `check()` holds (servers see closes a moment after clients make them)."""
    end = time.monotonic() + within
    while not check():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


def budget_of(c: AsyncKernel) -> RetryBudget:
    """The client's retry bucket (`_budget` now; it lived on `_pool` before)."""
    found: RetryBudget | None = getattr(c, "_budget", None)
    if found is None:
        found = getattr(c, "_pool").budget  # noqa: B009
    assert found is not None
    return found


def peak_rss() -> int:
    """The process's peak resident memory, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- 1. byte limits hold after decompression --------------------------------------------------


@functools.cache
def bomb(encoding: str, mib: int) -> bytes:
    """A gzip or zlib ("deflate") body of `mib` MiB of zeros, ~1 KiB per MiB.

    After a full flush the compressor starts afresh, so every further MiB of zeros
    compresses to the same bytes: the body is built by repetition, not by compressing
    hundreds of MiB, and ends with a correct trailer.
    """
    gzip = encoding == "gzip"
    c = zlib.compressobj(9, zlib.DEFLATED, 31 if gzip else 15)
    chunk = bytes(MIB)
    first = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH) == again
    end = c.flush()
    check = 0 if gzip else 1
    for _ in range(mib):
        check = zlib.crc32(chunk, check) if gzip else zlib.adler32(chunk, check)
    if gzip:
        trailer = struct.pack("<II", check, (mib * MIB) & 0xFFFFFFFF)
    else:
        trailer = struct.pack(">I", check)
    return first + again * (mib - 1) + end[: -len(trailer)] + trailer


def test_bomb_helper_inflates_to_what_it_says() -> None:
    for encoding in ("gzip", "deflate"):
        body = bomb(encoding, 3)
        d = zlib.decompressobj(31 if encoding == "gzip" else 15)
        assert d.decompress(body) == bytes(3 * MIB)
        assert d.eof and not d.unused_data


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_json_bomb_is_cut_at_the_json_limit(encoding: str) -> None:
    # ~1 MB on the wire (under the 8 MiB limit by Content-Length), 1000 MiB inflated.
    body = bomb(encoding, 1000)
    assert len(body) < 1_100_000
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    async with ScriptedServer([respond(200, body, headers)]) as srv:
        async with kernel(srv, max_retries=0) as c:
            before = peak_rss()
            t0 = time.monotonic()
            with pytest.raises(ka.APIResponseValidationError, match="exceeds"):
                await c.browsers.replays.list("b")
            elapsed = time.monotonic() - t0
            grown = peak_rss() - before
    assert elapsed < 10, elapsed  # ~0.1 s; reading it all took seconds
    assert grown < 300 * MIB, f"peak memory grew by {grown // MIB} MiB"  # it was > 2 GiB


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_error_body_is_cut_at_the_error_limit(encoding: str) -> None:
    message = json.dumps({"code": "boom", "message": "A" * 10_000_000}).encode()
    wbits = 31 if encoding == "gzip" else 15
    z = zlib.compressobj(9, zlib.DEFLATED, wbits)
    body = z.compress(message) + z.flush()
    assert len(body) < 20_000  # ~10 KB on the wire, 10 MB inflated
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    async with ScriptedServer([respond(500, body, headers)]) as srv:
        async with kernel(srv, max_retries=0) as c:
            with pytest.raises(ka.InternalServerError) as info:
                await c.browsers.replays.stop("r", id="b")
    assert len(str(info.value)) < 70_000
    assert len(repr(info.value.body)) < 70_000


@pytest.mark.parametrize("to_file", [False, True])
async def test_compressed_202_body_is_bounded_too(to_file: bool, tmp_path: Path) -> None:
    # 32 MiB inflated from ~33 KB; a 202 body is never used: at most the error limit.
    still = respond(202, bomb("gzip", 32), {"Content-Encoding": "gzip", "Retry-After": "0"})
    async with ScriptedServer([still, respond(200, b"video")]) as srv:
        async with kernel(srv) as c:
            tracemalloc.start()
            try:
                if to_file:
                    await c.browsers.replays.download_to(tmp_path / "v.mp4", "r", id="b")
                else:
                    assert await c.browsers.replays.download("r", id="b") == b"video"
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert peak < 16 * MIB, f"{peak // MIB} MiB allocated at once"


# -- 2. 202 polling cannot spin ----------------------------------------------------------------


async def test_202_polling_has_a_floor_whatever_the_server_says() -> None:
    cases: list[tuple[str, dict[str, str], RetryPolicy]] = [
        ("Retry-After: 0", {"Retry-After": "0"}, RetryPolicy()),
        ("Retry-After: -1", {"Retry-After": "-1"}, RetryPolicy()),
        ("retry-after-ms: 0", {"retry-after-ms": "0"}, RetryPolicy()),
        ("max_retry_after=0", {"Retry-After": "1"}, RetryPolicy(max_retry_after=0)),
    ]

    async def poll(headers: dict[str, str], policy: RetryPolicy) -> int:
        async with ScriptedServer([respond(202, headers=headers)]) as srv:
            async with kernel(srv, retry=policy, timeout=Timeout(total=2)) as c:
                with pytest.raises(ka.APIError):
                    await c.browsers.replays.download("r", id="b")
        return len(srv.received)

    with set_testing(False):  # real waits: the floor is what is under test
        counts = await asyncio.gather(*(poll(h, p) for _, h, p in cases))
    seen = {name: n for (name, _, _), n in zip(cases, counts, strict=True)}
    assert all(2 <= n <= 12 for n in counts), seen  # it was thousands


# -- 3. aiohttp's hidden replay is not a way around the budget ---------------------------------


async def test_empty_budget_puts_one_request_per_call_on_the_wire() -> None:
    async with ScriptedServer([reset()]) as srv:
        async with kernel(srv, retry=RetryPolicy(budget=0)) as c:
            for _ in range(10):
                with pytest.raises(ka.APIConnectionError) as info:
                    await c.browsers.replays.list("b")
                assert info.value.attempts == 1
    assert len(srv.received) == 10  # it was 20: aiohttp replayed each GET once


async def test_empty_budget_puts_one_request_per_call_on_the_wire_with_a_user_session() -> None:
    async with ScriptedServer([reset()]) as srv, aiohttp.ClientSession() as session:
        async with kernel(srv, session=session, retry=RetryPolicy(budget=0)) as c:
            for _ in range(10):
                with pytest.raises(ka.APIConnectionError):
                    await c.browsers.replays.list("b")
    assert len(srv.received) == 10


# -- 4. a timeout before the request left is not "sent" ----------------------------------------


async def test_start_waiting_for_a_pooled_connection_is_retried() -> None:
    async with ScriptedServer([hang()]) as srv:
        async with kernel(srv, connection_limit=1, max_retries=2) as c:
            busy = asyncio.create_task(c.browsers.replays.stop("r", id="b", timeout=30))
            await eventually(lambda: len(srv.received) == 1)  # it holds the one connection
            try:
                with pytest.raises(ka.APITimeoutError) as info:
                    await c.browsers.replays.start("b", timeout=0.3)
            finally:
                busy.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await busy
    assert info.value.attempts == 3  # never left: safe to retry (it was 1)
    assert [r.raw_path for r in srv.received] == ["/browsers/b/replays/r/stop"]


async def test_start_waiting_for_a_pooled_connection_is_retried_on_a_user_session() -> None:
    async with ScriptedServer([hang()]) as srv:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with kernel(srv, session=session, max_retries=2) as c:
                busy = asyncio.create_task(c.browsers.replays.stop("r", id="b", timeout=30))
                await eventually(lambda: len(srv.received) == 1)
                try:
                    with pytest.raises(ka.APITimeoutError) as info:
                        await c.browsers.replays.start("b", timeout=0.3)
                finally:
                    busy.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await busy
    assert len(srv.received) == 1
    assert info.value.attempts == 3


# -- 5. budget accounting ------------------------------------------------------------------------


async def test_success_after_a_timeout_retry_refunds_what_it_took() -> None:
    async with ScriptedServer([hang(), OK]) as srv:
        async with kernel(srv, timeout=0.5) as c:
            await c.browsers.replays.stop("r", id="b")
            assert budget_of(c).tokens == 500  # took 10, gave back 10 (it gave 5)
    assert len(srv.received) == 2


async def test_with_options_budget_is_shared_unless_its_size_changes() -> None:
    async with ScriptedServer([respond(503)]) as srv:
        async with kernel(srv, retry=RetryPolicy(budget=10)) as c:
            more = c.with_options(max_retries=5)
            unlimited = c.with_options(retry=RetryPolicy(budget=None))
            with pytest.raises(ka.InternalServerError):
                await more.browsers.replays.stop("r", id="b")
            assert len(srv.received) == 3  # two retries at 5 tokens empty the bucket
            with pytest.raises(ka.InternalServerError):
                await c.browsers.replays.stop("r", id="b")
            assert len(srv.received) == 4  # the original shares it: no retry left
            with pytest.raises(ka.InternalServerError):
                await unlimited.browsers.replays.stop("r", id="b")
            assert len(srv.received) == 7  # a bucket of its own, unlimited: 2 retries
            assert budget_of(unlimited) is not budget_of(c)
            assert budget_of(unlimited).capacity is None
            assert budget_of(more) is budget_of(c)


# -- 6. close() while calls are in flight; close from another loop -------------------------------


async def test_close_during_a_call_fails_it_with_a_kernel_error() -> None:
    async with ScriptedServer([hang()]) as srv:
        c = kernel(srv)
        call = asyncio.create_task(c.browsers.replays.stop("r", id="b"))
        await eventually(lambda: len(srv.received) == 1)
        await c.close()
        with pytest.raises(ka.APIConnectionError, match="closed") as info:
            await call
    assert "Session is closed" not in str(info.value)
    assert len(srv.received) == 1  # not retried into a closed pool


async def test_close_during_a_retry_wait_fails_the_call_with_a_kernel_error() -> None:
    busy = respond(503, headers={"Retry-After": "0.5"})
    async with ScriptedServer([busy]) as srv:
        c = kernel(srv)
        with set_testing(False):  # a real wait, during which the client is closed
            call = asyncio.create_task(c.browsers.replays.stop("r", id="b"))
            await eventually(lambda: len(srv.received) == 1)
            await c.close()
            with pytest.raises(ka.APIConnectionError, match="closed"):
                await call
    assert len(srv.received) == 1


class LoopThread:
    """An event loop running in a thread of its own; stopped and closed on exit."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> LoopThread:
        self._thread.start()
        return self

    def run(self, coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
        """Run `coro` there; await the result here without blocking this loop."""
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@contextmanager
def no_unclosed(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail on ResourceWarnings or "Unclosed ..." reports, garbage collecting at the end."""
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.ERROR):
        warnings.simplefilter("always")
        yield
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    leaks += [r.getMessage() for r in caplog.records if "nclosed" in r.getMessage()]
    assert not leaks, leaks


async def test_close_from_another_loop_while_the_owner_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with no_unclosed(caplog):
        async with ScriptedServer([OK]) as srv:
            with LoopThread() as owner:
                c = kernel(srv)
                await owner.run(c.browsers.replays.stop("r", id="b"))  # the pool lives there
                assert srv.open_connections == 1
                await asyncio.wait_for(c.close(), 10)  # from this loop
                await eventually(lambda: srv.open_connections == 0)
                del c


async def _use_then_close_from_here(srv: ScriptedServer) -> None:
    """Open the pool in a loop that `asyncio.run` then closes; close it from this loop."""
    c = kernel(srv)
    await asyncio.to_thread(asyncio.run, c.browsers.replays.stop("r", id="b"))
    assert srv.open_connections == 1
    await asyncio.wait_for(c.close(), 10)
    await eventually(lambda: srv.open_connections == 0)


async def test_close_after_the_owner_loop_closed_closes_its_sockets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with warnings.catch_warnings(record=True), caplog.at_level(logging.CRITICAL):
        warnings.simplefilter("always")  # the next test holds what is reported at GC
        async with ScriptedServer([OK]) as srv:
            await _use_then_close_from_here(srv)
        gc.collect()


async def test_close_after_the_owner_loop_closed_reports_nothing_unclosed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with no_unclosed(caplog):
        async with ScriptedServer([OK]) as srv:
            await _use_then_close_from_here(srv)


# -- 7. bad configuration is refused at construction ---------------------------------------------

BAD_PATHS = ["/a b", "/x\r\nX-Injected: 1", "/x\x0b", "/x\x7f", "/x\x1b", "/x\x08", "/caf\u00e9"]
BAD_VALUES = ["a\x0bb", "a\x7fb", "a\x1bb", "a\x08b", "a\udcffb"]


@pytest.mark.parametrize("path", BAD_PATHS)
async def test_bad_base_url_refused_at_construction(path: str) -> None:
    async with ScriptedServer([OK]) as srv:
        with pytest.raises(ValueError, match="base_url") as info:
            AsyncKernel(api_key=KEY, base_url=srv.base_url + path)
    assert KEY not in str(info.value)
    assert srv.connections == 0


@pytest.mark.parametrize("key", ["key\x0bx", "key\x7fx", "key\x1bx", "key\x08x", "key-\udcff-tail"])
async def test_bad_api_key_refused_without_echoing_it(key: str) -> None:
    async with ScriptedServer([OK]) as srv:
        with pytest.raises(ValueError, match="api_key") as info:
            AsyncKernel(api_key=key, base_url=srv.base_url)
    text = str(info.value) + repr(info.value)
    assert key not in text and key.encode("utf-8", "replace").decode() not in text
    assert "key-" not in text and "tail" not in text
    assert srv.connections == 0


@pytest.mark.parametrize("value", BAD_VALUES)
async def test_bad_header_values_refused_before_anything_is_sent(value: str) -> None:
    async with ScriptedServer([OK]) as srv:
        with pytest.raises(ValueError, match="default_headers") as info:
            kernel(srv, default_headers={"X-Tag": value})
        assert KEY not in str(info.value)
        async with kernel(srv) as c:
            with pytest.raises(ValueError, match="extra_headers") as info:
                await c.browsers.replays.stop("r", id="b", extra_headers={"X-Tag": value})
        assert KEY not in str(info.value)
    assert srv.connections == 0


# -- 8. proxies from the environment -------------------------------------------------------------

PROXY_VARS = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"]


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)  # CGI: urllib would skip HTTP_PROXY
    return monkeypatch


def through(proxy: ScriptedServer, target: ScriptedServer) -> list[str]:
    """The absolute-form request lines the proxy received for `target`."""
    return [r.raw_path for r in proxy.received if r.raw_path.startswith(target.base_url)]


async def test_http_proxy_from_env_honoured_and_no_proxy_bypasses(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    async with ScriptedServer([OK]) as proxy, ScriptedServer([OK]) as target:
        no_proxy_env.setenv("HTTP_PROXY", proxy.base_url)
        async with kernel(target) as c:
            await c.browsers.replays.stop("r", id="b")
        assert through(proxy, target) == [f"{target.base_url}/browsers/b/replays/r/stop"]
        assert target.received == []
        no_proxy_env.setenv("NO_PROXY", "127.0.0.1")
        async with kernel(target) as c:
            await c.browsers.replays.stop("r", id="b")
        assert len(proxy.received) == 1
        assert [r.raw_path for r in target.received] == ["/browsers/b/replays/r/stop"]


async def test_trust_env_false_ignores_proxy_env(no_proxy_env: pytest.MonkeyPatch) -> None:
    async with ScriptedServer([OK]) as proxy, ScriptedServer([OK]) as target:
        no_proxy_env.setenv("HTTP_PROXY", proxy.base_url)
        async with kernel(target, trust_env=False) as c:
            await c.browsers.replays.stop("r", id="b")
    assert proxy.received == []
    assert len(target.received) == 1


async def test_explicit_proxy_wins_over_env(no_proxy_env: pytest.MonkeyPatch) -> None:
    async with (
        ScriptedServer([OK]) as env_proxy,
        ScriptedServer([OK]) as proxy,
        ScriptedServer([OK]) as target,
    ):
        no_proxy_env.setenv("HTTP_PROXY", env_proxy.base_url)
        async with kernel(target, proxy=proxy.base_url) as c:
            await c.browsers.replays.stop("r", id="b")
        assert through(proxy, target) == [f"{target.base_url}/browsers/b/replays/r/stop"]
        assert env_proxy.received == [] and target.received == []


# -- 9. a user's session bound to a closed or another loop ---------------------------------------


async def _new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


def test_user_session_of_a_closed_loop_is_a_kernel_error() -> None:
    session = asyncio.run(_new_session())  # its loop is closed when asyncio.run returns

    async def use() -> ScriptedServer:
        async with ScriptedServer([OK]) as srv:
            async with kernel(srv, session=session) as c:
                with pytest.raises(ka.KernelError, match="closed") as info:
                    await asyncio.wait_for(c.browsers.replays.stop("r", id="b"), 5)
        assert "loop" in str(info.value)
        return srv

    try:
        srv = asyncio.run(use())
    finally:
        asyncio.run(session.close())  # it never opened a connection: nothing to tear down
    assert srv.connections == 0


async def test_user_session_of_another_loop_is_a_kernel_error() -> None:
    with LoopThread() as other:
        session = await other.run(_new_session())
        try:
            async with ScriptedServer([OK]) as srv:
                async with kernel(srv, session=session) as c:
                    with pytest.raises(ka.KernelError, match="another event loop"):
                        await asyncio.wait_for(c.browsers.replays.stop("r", id="b"), 5)
        finally:
            await other.run(session.close())
    assert srv.connections == 0


# -- 10. timestamps with 1-2 or 7-9 fractional digits (Python 3.10) -------------------------------


def test_timestamps_with_any_number_of_fractional_digits() -> None:
    from kernel_async._models import decode_replay

    replay = decode_replay(
        b'{"replay_id": "r", "started_at": "2025-01-02T03:04:05.12Z",'
        b' "finished_at": "2025-01-02T03:04:05.123456789Z"}'
    )
    assert replay.started_at is not None and replay.finished_at is not None
    assert replay.started_at.microsecond == 120_000
    assert replay.finished_at.microsecond == 123_456
    assert replay.started_at.utcoffset() is not None
    one = decode_replay(b'{"replay_id": "r", "started_at": "2025-01-02T03:04:05.1+02:00"}')
    assert one.started_at is not None and one.started_at.microsecond == 100_000


# -- 11. download_to creates what open() would --------------------------------------------------


async def test_download_to_honours_the_umask(tmp_path: Path) -> None:
    video = respond(200, b"\x00\x00\x00\x18ftypmp42", {"Content-Type": "video/mp4"})
    async with ScriptedServer([video]) as srv:
        async with kernel(srv) as c:
            modes: dict[str, str] = {}
            for mask in (0o077, 0o022):
                previous = os.umask(mask)
                try:
                    out = await c.browsers.replays.download_to(
                        tmp_path / f"{mask:o}.mp4", "r", id="b"
                    )
                finally:
                    os.umask(previous)
                modes[f"{mask:03o}"] = f"{stat.S_IMODE(out.stat().st_mode):03o}"
    assert modes == {"077": "600", "022": "644"}
