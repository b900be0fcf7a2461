"""Event streams (server-sent events): throughput, backpressure and the cost of idle streams.

``python bench/streams.py`` (``--quick`` for a smoke run, ``--json PATH`` to save the
figures, ``--only throughput,backpressure,idle`` to pick, ``--pin`` to put the server on a
core of its own). The official SDK (``kernel==0.131.0``) is the peer; without it only
kernel_async is measured.

- throughput: events/s through ``async for`` over ``browsers.logs.stream``, kernel_async
  vs the official ``AsyncStream``, on the same local server and the same bytes; small
  (~100 B) and 64 KiB events. Each reader is a process of its own (as for a user: no
  imports, garbage or allocator state of the other); rounds interleaved, medians
  reported, with each client's CPU time and minor page faults per event. A third reader,
  a no-op socket reader (``recv_into`` one buffer, nothing parsed), shows what the server
  can emit: the "server headroom" is that over the faster client's rate.
- backpressure: 50 MiB of 64 KiB events to a consumer taking 10 ms per event, in a
  subprocess whose RSS is sampled every second (with what the server has sent by then).
- idle: 1,000 concurrent streams (one client; one consuming task each) that got their
  first event and stay quiet: RSS delta and tracemalloc delta per stream.

The server is its own process on 127.0.0.1: a bare asyncio protocol, bodies written with
``transport.write`` in writes of about 1 MiB (many events each, framed from one pre-encoded
tail), paced only by the client's socket. ``/browsers/{spec}/logs/stream`` where spec is
``SIZE-COUNT`` (COUNT events of about SIZE bytes on the wire, with ids) or ``idle`` (one
event, then silence until the client leaves); ``/stats`` tells how many bytes and events
the last stream has written.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

KEY = "bench-key"
MiB = 1024 * 1024
SMALL, BIG = 100, 64 * 1024
WRITE = 1024 * 1024  # the server's bytes per write (many events each)


def note(text: str) -> None:
    print(f"[streams {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- the server (its own process) ------------------------------------------------------


def event_bytes(n: int, size: int) -> bytes:
    """Event `n` of about `size` bytes on the wire: ``id:`` and one ``data:`` line."""
    head = f"id: {n}\ndata: ".encode()
    frame = {"event": "log", "message": "", "timestamp": "2026-01-01T00:00:00.123456Z"}
    pad = max(size - len(head) - len(json.dumps(frame)) - 2, 1)
    frame["message"] = "x" * pad
    return head + json.dumps(frame).encode() + b"\n\n"


def stream_blocks(size: int, count: int) -> Iterator[tuple[bytes, int]]:
    """The body of a ``SIZE-COUNT`` stream as HTTP/1.1 chunks of about `WRITE` bytes, each
    with the number of events it carries: frames are built from one pre-encoded tail (all
    but the id) and framed with one join, so the server spends ~1 µs per 64 KiB event."""
    body = event_bytes(0, size)
    tail = body[body.index(b"\n") :]  # all but the id, the same for every event
    per_write = max(1, WRITE // len(body))
    for start in range(1, count + 1, per_write):
        parts: list[bytes] = [b""]
        for n in range(start, min(start + per_write, count + 1)):
            parts += (b"id: %d" % n, tail)
        parts[0] = b"%x\r\n" % sum(map(len, parts))
        parts.append(b"\r\n")
        yield b"".join(parts), (len(parts) - 2) // 2


class _Connection(asyncio.Protocol):
    """One client connection of the bench server: HTTP/1.1 GETs, keep-alive, answered in
    order; bodies written with `transport.write` (no stream layer), paced only by the
    transport's flow control (`pause_writing`): the client's socket being full."""

    def __init__(self, stats: dict[str, int]) -> None:
        self.stats = stats
        self.heads: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.buffer = b""
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE)  # at most one write waiting in memory
        self.task = asyncio.ensure_future(self.serve())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:  # GETs only: no request bodies
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.heads.put_nowait(head)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable.set()
        self.heads.put_nowait(None)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    async def serve(self) -> None:
        transport = self.transport
        assert transport is not None
        while (head := await self.heads.get()) is not None:
            target = head.split(b" ", 2)[1].decode()
            path = target.split("?", 1)[0]
            close = b"\r\nconnection: close" in head.lower()
            if path == "/stats":
                body = json.dumps(self.stats).encode()
                transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body) + body
                )
            else:  # /browsers/{spec}/logs/stream
                await self.stream(path.split("/")[2])
            if close or self.closed:
                break
        transport.close()

    async def stream(self, spec: str) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        if spec == "idle":
            frame = event_bytes(1, SMALL)
            transport.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            await self.heads.get()  # quiet until the client leaves
            self.closed = True
            return
        size, count = (int(x) for x in spec.split("-"))
        stats = self.stats
        stats["sent"] = stats["events"] = 0
        for block, events in stream_blocks(size, count):
            if not self.writable.is_set():
                await self.writable.wait()  # the client's socket is full: backpressure
            if self.closed:
                return
            transport.write(block)
            stats["sent"] += len(block)
            stats["events"] += events
        transport.write(b"0\r\n\r\n")


def serve(port_file: str, cpu: int | None) -> None:
    """The bench server: a bare asyncio protocol (no framework, no stream layer), so the
    clients, not the server, set the pace; see `server_capacity`."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    stats = {"sent": 0, "events": 0}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(stats), "127.0.0.1", 0, backlog=2048)
        port = server.sockets[0].getsockname()[1]
        await asyncio.to_thread(Path(port_file).write_text, str(port))
        await asyncio.Event().wait()

    asyncio.run(main())


def start_server(cpu: int | None) -> tuple[subprocess.Popen[bytes], str]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    args = [sys.executable, __file__, "_server", str(port_file), "" if cpu is None else str(cpu)]
    proc = subprocess.Popen(args)
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("the stream server did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


def server_capacity(url: str, spec: str) -> int:
    """Read one stream with a no-op reader (a blocking socket, `recv_into` one buffer,
    nothing parsed) and return the body's bytes: what the server can emit, to set beside
    what the clients consume."""
    host, port = url.removeprefix("http://").split(":")
    buffer = bytearray(WRITE)
    got = 0
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"GET /browsers/%s/logs/stream HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
            % (spec.encode(), host.encode())
        )
        while n := sock.recv_into(buffer):
            got += n
    return got


# -- clients ---------------------------------------------------------------------------


def has_official() -> bool:
    try:
        import kernel  # noqa: F401
    except ImportError:
        return False
    return True


def make_client(sdk: str, url: str, connections: int = 100) -> Any:
    if sdk == "kernel_async":
        from kernel_async import AsyncKernel

        return AsyncKernel(api_key=KEY, base_url=url, max_retries=0, connection_limit=connections)
    import httpx
    import kernel

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=100)
    http = kernel.DefaultAsyncHttpxClient(limits=limits, timeout=60)
    return kernel.AsyncKernel(api_key=KEY, base_url=url, max_retries=0, http_client=http)


async def drain(client: Any, spec: str) -> int:
    stream = await client.browsers.logs.stream(spec, source="supervisor")
    n = 0
    async for _ in stream:
        n += 1
    return n


async def close_client(client: Any) -> None:
    await client.close()


# -- throughput ------------------------------------------------------------------------


SERVER = "server (no-op reader)"


def stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


async def read_commands(url: str, sdk: str) -> None:
    """A reader process: for each stream spec on stdin, read that stream (`sdk`: a client,
    or the no-op socket reader) and print what it took as JSON. Each client runs in a
    process of its own, as it would for a user: nothing of the other's (its imports, its
    garbage, the C allocator's state) weighs on it."""
    client = None if sdk == SERVER else make_client(sdk, url)
    try:
        for line in sys.stdin:
            spec = line.strip()
            gc.collect()
            before = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            if client is None:
                server_capacity(url, spec)
                got = int(spec.split("-")[1])
            else:
                got = await drain(client, spec)
            elapsed = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_SELF)
            cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            faults = after.ru_minflt - before.ru_minflt
            print(json.dumps({"events": got, "seconds": elapsed, "cpu": cpu, "faults": faults}))
            sys.stdout.flush()
    finally:
        if client is not None:
            await close_client(client)


class Reader:
    """A reader process (`read_commands`), kept warm across rounds."""

    def __init__(self, url: str, sdk: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "_reader", url, sdk],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def read(self, spec: str) -> dict[str, float]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(spec + "\n")
        self.proc.stdin.flush()
        row = self.proc.stdout.readline()
        if not row:
            raise SystemExit(f"a reader process failed (exit {self.proc.wait()})")
        return json.loads(row)  # type: ignore[no-any-return]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def throughput(url: str, quick: bool) -> dict[str, Any]:
    sdks = ["kernel_async", *(["official kernel"] if has_official() else [])]
    readers = {s: Reader(url, {"official kernel": "official"}.get(s, s)) for s in (SERVER, *sdks)}
    workloads = {
        "small (~100 B)": (SMALL, 5_000 if quick else 50_000),
        "64 KiB": (BIG, 100 if quick else 3_000),
    }
    rounds = 1 if quick else 7
    results: dict[str, Any] = {}
    try:
        for name, (size, count) in workloads.items():
            spec = f"{size}-{count}"
            for reader in readers.values():  # warm: imports, connections, converters
                reader.read(f"{size}-{min(count, 50)}")
            rates: dict[str, list[float]] = {s: [] for s in readers}
            cpu: dict[str, list[float]] = {s: [] for s in readers}  # µs per event
            faults: dict[str, list[float]] = {s: [] for s in readers}  # minor, per event
            sent: set[int] = set()  # the body's bytes: the same for every reader
            for r in range(rounds):
                for sdk, reader in readers.items():
                    got = reader.read(spec)
                    assert got["events"] == count, (sdk, got, count)
                    rates[sdk].append(count / got["seconds"])
                    cpu[sdk].append(got["cpu"] / count * 1e6)
                    faults[sdk].append(got["faults"] / count)
                    sent.add(stats(url)["sent"])
                note(
                    f"{name} round {r + 1}/{rounds}: "
                    + ", ".join(f"{s} {v[-1]:,.0f}/s" for s, v in rates.items())
                )
            assert len(sent) == 1, f"the readers got different bodies: {sent}"
            wire = len(event_bytes(count, size))

            def median(values: dict[str, list[float]], digits: int) -> dict[str, float]:
                return {s: round(statistics.median(v), digits) for s, v in values.items()}

            entry: dict[str, Any] = {
                "event_bytes": wire,
                "events": count,
                "body_bytes": sent.pop(),
                "events_per_s": {s: round(statistics.median(v)) for s, v in rates.items()},
                "MiB_per_s": {
                    s: round(statistics.median(v) * wire / MiB, 1) for s, v in rates.items()
                },
                "cpu_us_per_event": median(cpu, 1),
                "minor_faults_per_event": median(faults, 1),
                "rounds": {s: [round(x) for x in v] for s, v in rates.items()},
            }
            if "official kernel" in rates:
                # Per round (both ran back to back, under the same load), then the median.
                pairs = list(zip(rates["kernel_async"], rates["official kernel"], strict=True))
                entry["ratio"] = round(statistics.median(a / b for a, b in pairs), 2)
                entry["ratio_min"] = round(min(a / b for a, b in pairs), 2)
                pairs = list(zip(cpu["kernel_async"], cpu["official kernel"], strict=True))
                entry["cpu_ratio"] = round(statistics.median(b / a for a, b in pairs), 2)
            # The server's headroom: how much faster it emits than the faster client reads.
            fastest = max(statistics.median(v) for s, v in rates.items() if s != SERVER)
            entry["server_headroom"] = round(statistics.median(rates[SERVER]) / fastest, 1)
            results[name] = entry
    finally:
        for reader in readers.values():
            reader.close()
    return results


# -- backpressure ----------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def consume_slowly(url: str, sdk: str, spec: str, pause: float) -> None:
    """The backpressure subprocess: print the count every 0.25 s, sleep `pause` per event."""
    client = make_client(sdk, url)
    count = 0

    async def report() -> None:
        while True:
            print(count, flush=True)
            await asyncio.sleep(0.25)

    reporter = asyncio.ensure_future(report())
    try:
        stream = await client.browsers.logs.stream(spec, source="supervisor")
        async for _ in stream:
            count += 1
            await asyncio.sleep(pause)
    finally:
        reporter.cancel()
        await close_client(client)
    print(f"done {count}", flush=True)


def backpressure(url: str, sdk: str, quick: bool) -> dict[str, Any]:
    total = (8 if quick else 50) * MiB
    count = total // BIG
    spec = f"{BIG}-{count}"
    proc = subprocess.Popen(
        [sys.executable, __file__, "_consume", url, sdk, spec, "0.010"],
        stdout=subprocess.PIPE,
        text=True,
    )
    latest = {"events": 0, "done": False}

    def read() -> None:
        assert proc.stdout is not None
        for row in proc.stdout:
            if row.startswith("done"):
                latest["done"] = True
            else:
                latest["events"] = int(row)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    try:
        while proc.poll() is None:
            time.sleep(1.0)
            if not latest["events"]:
                continue  # starting (imports, connecting): sampled from the first event on
            try:
                rss = rss_mib(proc.pid)
            except (OSError, RuntimeError):
                break  # it just ended
            written = stats(url)["events"]  # events the server has handed to its socket
            sent = written * len(event_bytes(count, BIG))
            consumed = latest["events"] * len(event_bytes(count, BIG))
            samples.append(
                {
                    "t": round(time.monotonic() - started, 1),
                    "rss_MiB": round(rss, 1),
                    "sent_MiB": round(sent / MiB, 1),
                    "ahead_MiB": round(max(sent - consumed, 0) / MiB, 2),
                }
            )
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    assert latest["done"], "the consumer did not finish"
    series = [s["rss_MiB"] for s in samples]
    # Growth is counted from the first sample (the stream had begun: imports done).
    return {
        "sent_MiB": round(total / MiB),
        "event_bytes": BIG,
        "consumer_ms_per_event": 10,
        "seconds": round(time.monotonic() - started, 1),
        "rss_last_MiB": series[-1] if series else None,
        "rss_first_MiB": series[0] if series else None,
        "rss_max_MiB": max(series) if series else None,
        "rss_growth_MiB": round(max(series) - series[0], 1) if series else None,
        "server_ahead_max_MiB": max(s["ahead_MiB"] for s in samples) if samples else None,
        "samples": samples,
    }


# -- idle streams ----------------------------------------------------------------------


def vm_rss() -> int:
    return int(rss_mib(os.getpid()) * 1024 * 1024)


async def hold_idle(url: str, sdk: str, n: int, traced: bool) -> None:
    """The idle-streams subprocess: open `n` streams, one consuming task each; print the
    memory per stream as JSON."""
    import tracemalloc

    client = make_client(sdk, url, connections=n + 10)
    try:
        first = asyncio.Event()
        got = 0

        async def follow(stream: Any) -> None:
            nonlocal got
            async for _ in stream:
                got += 1
                if got == n:
                    first.set()

        # Warm up: imports, the converter, one connection.
        warm = await client.browsers.logs.stream("idle", source="supervisor")
        async for _ in warm:
            break
        await warm.close()
        gc.collect()
        if traced:
            tracemalloc.start()
        rss0, t0 = vm_rss(), time.perf_counter()
        streams = await asyncio.gather(
            *(client.browsers.logs.stream("idle", source="supervisor") for _ in range(n))
        )
        tasks = [asyncio.ensure_future(follow(s)) for s in streams]
        await asyncio.wait_for(first.wait(), 120)
        opened = time.perf_counter() - t0
        await asyncio.sleep(0.5)
        gc.collect()
        rss1 = vm_rss()
        traced_bytes = tracemalloc.get_traced_memory()[0] if traced else None
        out = {
            "streams": n,
            "open_seconds": round(opened, 2),
            "rss_delta_MiB": round((rss1 - rss0) / MiB, 1),
            "rss_per_stream_KiB": round((rss1 - rss0) / n / 1024, 1),
        }
        if traced_bytes is not None:
            out["traced_per_stream_KiB"] = round(traced_bytes / n / 1024, 1)
        print(json.dumps(out), flush=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in streams:
            await s.close()
    finally:
        await close_client(client)


def idle(url: str, sdk: str, n: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for traced in (False, True):
        done = subprocess.run(
            [sys.executable, __file__, "_idle", url, sdk, str(n), "1" if traced else "0"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise SystemExit(f"idle streams ({sdk}) failed:\n{done.stderr}")
        result.update(json.loads(done.stdout.splitlines()[-1]))
    return result


# -- main ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (smaller, one round)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    parser.add_argument("--only", default="throughput,backpressure,idle")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the server on the last core, the clients on the others (off: the OS places them)",
    )
    args = parser.parse_args()
    parts = set(args.only.split(","))
    sdks = ["kernel_async", *(["official"] if has_official() else [])]
    server_cpu = None
    if args.pin:
        cores = sorted(os.sched_getaffinity(0))
        server_cpu = cores[-1]
        os.sched_setaffinity(0, cores[:-1] or cores)  # the clients (and their subprocesses)
    server, url = start_server(server_cpu)
    figures: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "pinned": args.pin,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        if "throughput" in parts:
            note("throughput")
            figures["throughput"] = throughput(url, args.quick)
        if "backpressure" in parts:
            figures["backpressure"] = {}
            for sdk in sdks:
                note(f"backpressure: {sdk}")
                figures["backpressure"][sdk] = backpressure(url, sdk, args.quick)
        if "idle" in parts:
            n = 100 if args.quick else 1000
            figures["idle"] = {}
            for sdk in sdks:
                note(f"{n} idle streams: {sdk}")
                figures["idle"][sdk] = idle(url, sdk, n)
    finally:
        server.kill()
        server.wait()
    report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


def report(figures: dict[str, Any]) -> None:
    for name, entry in figures.get("throughput", {}).items():
        rates = ", ".join(
            f"{s} {v:,}/s ({entry['MiB_per_s'][s]} MiB/s, "
            f"{entry['cpu_us_per_event'][s]} us CPU and "
            f"{entry['minor_faults_per_event'][s]} page faults per event)"
            for s, v in entry["events_per_s"].items()
        )
        ratio = ""
        if "ratio" in entry:
            ratio = (
                f"  -> {entry['ratio']}x (lowest round {entry['ratio_min']}x; "
                f"CPU: {entry['cpu_ratio']}x)"
            )
        print(
            f"throughput {name}: {rates}{ratio}; the server emits "
            f"{entry['server_headroom']}x what the faster client reads"
        )
    for sdk, entry in figures.get("backpressure", {}).items():
        print(
            f"backpressure {sdk}: {entry['sent_MiB']} MiB in {entry['seconds']}s, RSS "
            f"{entry['rss_first_MiB']} -> max {entry['rss_max_MiB']} MiB "
            f"(+{entry['rss_growth_MiB']}), server ahead at most "
            f"{entry['server_ahead_max_MiB']} MiB"
        )
    for sdk, entry in figures.get("idle", {}).items():
        print(
            f"idle {sdk}: {entry['streams']} streams, RSS +{entry['rss_delta_MiB']} MiB "
            f"({entry['rss_per_stream_KiB']} KiB/stream), traced "
            f"{entry.get('traced_per_stream_KiB')} KiB/stream, opened in {entry['open_seconds']}s"
        )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_server":
        serve(sys.argv[2], int(sys.argv[3]) if sys.argv[3] else None)
    elif len(sys.argv) > 1 and sys.argv[1] == "_reader":
        asyncio.run(read_commands(sys.argv[2], sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_consume":
        asyncio.run(consume_slowly(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])))
    elif len(sys.argv) > 1 and sys.argv[1] == "_idle":
        asyncio.run(hold_idle(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"))
    else:
        main()
