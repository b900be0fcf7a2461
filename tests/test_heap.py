"""Large streamed reads reuse heap memory from the first stream of a process on
(`kernel_async._heap`): counted in page faults, not timed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from kernel_async import _heap

pytestmark = pytest.mark.skipif(not _heap.uses_glibc(), reason="glibc's malloc only")

EVENTS = 1500
SIZE = 64 * 1024


def test_settling_happens_once_per_process() -> None:
    # A fresh interpreter: this test process may have settled already.
    code = (
        "from kernel_async import _heap; print(_heap.settle(), _heap.settle(), _heap.uses_glibc())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["True", "False", "True"]


def _body() -> bytes:
    """`EVENTS` log events of about `SIZE` bytes, framed as HTTP/1.1 chunks of 1 MiB."""
    frame = {"event": "log", "message": "x" * (SIZE - 120), "timestamp": "2026-01-01T00:00:00Z"}
    tail = json.dumps(frame).encode() + b"\n\n"
    events = b"".join(b"id: %d\ndata: " % n + tail for n in range(1, EVENTS + 1))
    step = 1024 * 1024
    chunks = [events[i : i + step] for i in range(0, len(events), step)]
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


@pytest.fixture
def big_stream() -> Iterator[str]:
    """A raw HTTP server that answers one event stream of large events per connection."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    body = _body()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(60)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                got = conn.recv(65536)
                if not got:
                    return
                request += got
            try:
                conn.sendall(head + body)
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):
                    pass
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(30)


CLIENT = """
import asyncio, resource, sys
from kernel_async import AsyncKernel

async def main(url):
    async with AsyncKernel(api_key="k", base_url=url, max_retries=0) as client:
        stream = await client.browsers.logs.stream("b", source="supervisor")
        n, before = 0, None
        async for _ in stream:
            n += 1
            if n == 100:  # past the first reads: allocation state settled
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        print(n, faults / (n - 100))

asyncio.run(main(sys.argv[1]))
"""


def test_a_fresh_process_reads_large_events_without_refaulting_its_heap(big_stream: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, big_stream],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert out.returncode == 0, out.stderr
    events, faults = out.stdout.split()
    assert int(events) == EVENTS
    # Settled: ~0.1 per event. Unsettled, glibc trims and re-faults 5-18 per event.
    assert float(faults) < 2.0, out.stdout
