"""Event streams (server-sent events): throughput, backpressure and the cost of idle streams.

``python bench/streams.py`` (``--quick`` for a smoke run, ``--json PATH`` to save the
figures, ``--only throughput,backpressure,idle`` to pick). The official SDK
(``kernel==0.131.0``) is the peer; without it only kernel_async is measured.

- throughput: events/s through ``async for`` over ``browsers.logs.stream``, kernel_async
  vs the official ``AsyncStream``, on the same local server; small (~100 B) and 64 KiB
  events. Rounds interleaved, medians reported.
- backpressure: 50 MiB of 64 KiB events to a consumer taking 10 ms per event, in a
  subprocess whose RSS is sampled every second (with what the server has sent by then).
- idle: 1,000 concurrent streams (one client; one consuming task each) that got their
  first event and stay quiet: RSS delta and tracemalloc delta per stream.

The server is its own process on 127.0.0.1 (bare asyncio): ``/browsers/{spec}/logs/stream``
where spec is ``SIZE-COUNT`` (COUNT events of about SIZE bytes on the wire, with ids) or
``idle`` (one event, then silence until the client leaves); ``/stats`` tells how many
bytes the last stream has sent.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

KEY = "bench-key"
MiB = 1024 * 1024
SMALL, BIG = 100, 64 * 1024


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


def serve(port_file: str) -> None:
    """A bare asyncio HTTP/1.1 server (chunked bodies; keep-alive): cheaper than a framework,
    so the clients, not the server, set the pace on a small machine."""
    stats = {"sent": 0}

    async def write(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(b"%x\r\n" % len(data) + data + b"\r\n")
        await writer.drain()  # waits while the client's socket is full: backpressure

    async def logs(spec: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        if spec == "idle":
            await write(writer, event_bytes(1, SMALL))
            await reader.read()  # quiet until the client leaves
            raise ConnectionResetError
        size, count = (int(x) for x in spec.split("-"))
        body = event_bytes(0, size)
        tail = body[body.index(b"\n") :]  # all but the id, the same for every event
        per_write = max(1, 256 * 1024 // len(body))
        stats["sent"] = 0
        for start in range(1, count + 1, per_write):
            chunk = b"".join(
                b"id: %d" % n + tail for n in range(start, min(start + per_write, count + 1))
            )
            await write(writer, chunk)
            stats["sent"] += len(chunk)
        writer.write(b"0\r\n\r\n")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")  # GETs only: no body
                target = head.split(b" ", 2)[1].decode()
                path = target.split("?", 1)[0]
                if path == "/stats":
                    body = json.dumps(stats).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(body) + body
                    )
                else:  # /browsers/{spec}/logs/stream
                    await logs(path.split("/")[2], reader, writer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=2048)
        port = server.sockets[0].getsockname()[1]
        await asyncio.to_thread(Path(port_file).write_text, str(port))
        await asyncio.Event().wait()

    asyncio.run(main())


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    proc = subprocess.Popen([sys.executable, __file__, "_server", str(port_file)])
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("the stream server did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


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


async def throughput(url: str, quick: bool) -> dict[str, Any]:
    sdks = ["kernel_async", *(["official kernel"] if has_official() else [])]
    clients = {
        s: make_client("kernel_async" if s == "kernel_async" else "official", url) for s in sdks
    }
    workloads = {
        "small (~100 B)": (SMALL, 5_000 if quick else 50_000),
        "64 KiB": (BIG, 100 if quick else 3_000),
    }
    rounds = 1 if quick else 7
    results: dict[str, Any] = {}
    try:
        for name, (size, count) in workloads.items():
            spec = f"{size}-{count}"
            for client in clients.values():  # warm: imports, connections, converters
                await drain(client, f"{size}-{min(count, 50)}")
            rates: dict[str, list[float]] = {s: [] for s in sdks}
            cpu: dict[str, list[float]] = {s: [] for s in sdks}  # the client's CPU per event
            for r in range(rounds):
                for sdk, client in clients.items():
                    gc.collect()
                    t0, c0 = time.perf_counter(), time.process_time()
                    got = await drain(client, spec)
                    elapsed, used = time.perf_counter() - t0, time.process_time() - c0
                    assert got == count, (sdk, got, count)
                    rates[sdk].append(count / elapsed)
                    cpu[sdk].append(used / count * 1e6)
                note(
                    f"{name} round {r + 1}/{rounds}: "
                    + ", ".join(f"{s} {v[-1]:,.0f}/s" for s, v in rates.items())
                )
            entry: dict[str, Any] = {
                "event_bytes": len(event_bytes(count, size)),
                "events": count,
                "events_per_s": {s: round(statistics.median(v)) for s, v in rates.items()},
                "MiB_per_s": {
                    s: round(statistics.median(v) * len(event_bytes(count, size)) / MiB, 1)
                    for s, v in rates.items()
                },
            }
            entry["cpu_us_per_event"] = {s: round(statistics.median(v), 1) for s, v in cpu.items()}
            if "official kernel" in rates:
                # Per round (both ran back to back, under the same load), then the median.
                ours, theirs = rates["kernel_async"], rates["official kernel"]
                entry["ratio"] = round(
                    statistics.median(a / b for a, b in zip(ours, theirs, strict=True)), 2
                )
                ours, theirs = cpu["kernel_async"], cpu["official kernel"]
                entry["cpu_ratio"] = round(
                    statistics.median(b / a for a, b in zip(ours, theirs, strict=True)), 2
                )
            results[name] = entry
    finally:
        for client in clients.values():
            await close_client(client)
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
            with urllib.request.urlopen(f"{url}/stats", timeout=10) as r:
                sent = json.loads(r.read())["sent"]
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
    args = parser.parse_args()
    parts = set(args.only.split(","))
    sdks = ["kernel_async", *(["official"] if has_official() else [])]
    server, url = start_server()
    figures: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    try:
        if "throughput" in parts:
            note("throughput")
            figures["throughput"] = asyncio.run(throughput(url, args.quick))
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
            f"{entry['cpu_us_per_event'][s]} us CPU/event)"
            for s, v in entry["events_per_s"].items()
        )
        ratio = f"  -> {entry['ratio']}x (CPU: {entry['cpu_ratio']}x)" if "ratio" in entry else ""
        print(f"throughput {name}: {rates}{ratio}")
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
        serve(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "_consume":
        asyncio.run(consume_slowly(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])))
    elif len(sys.argv) > 1 and sys.argv[1] == "_idle":
        asyncio.run(hold_idle(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"))
    else:
        main()
