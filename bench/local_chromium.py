"""Measure the local Chromium backend on this machine: start-up, memory, encoding cost.

    python bench/local_chromium.py [--browsers 5] [--seconds 4]

Needs Chromium and the ``local`` extra. Prints one JSON object:
- ``create_s``: create_browser wall time (launch, attach, viewport pinned, page loaded),
  and ``devtools_port_s``, the part until Chromium's DevTools port is open;
- ``rss_mib`` / ``pss_mib``: memory of one idle browser showing a page, all its processes
  (RSS counts shared pages once per process; PSS shares them out, the fairer figure);
- ``recording``: a live recording of an animated 1280x720 page at 10 fps, per x264 preset:
  frames written and received, the recorder thread's own CPU per written frame, and
  ``finalise_s``, from stop to a complete MP4 (what a 202 Retry-After covers);
- ``offline_encode``: real 1280x720 screencast JPEGs (every one different) decoded, scaled
  and encoded in a loop: process CPU (x264's own threads included) and wall time per frame.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kernel_async.testing._backend import Viewport
from kernel_async.testing._chromium_backend import ChromiumBackend

# Every frame differs: a moving gradient and text, the worst case for a screen recording.
ANIMATED = (
    "data:text/html,<style>body{margin:0;font:40px sans-serif;"
    "background:linear-gradient(90deg,%23f80,%2308f);animation:a 1s linear infinite}"
    "@keyframes a{to{background-position:1280px 0}}</style>"
    "<body><p id=t></p><script>setInterval(()=>t.textContent=Date.now()+' '+Math.random(),16)"
    "</script>"
)

STATIC = "data:text/html,<h1>Hello</h1><p>A still page.</p>"


async def startup_and_memory(count: int, url: str) -> dict[str, Any]:
    backend = ChromiumBackend(max_browsers=1)
    created, devtools, rss, pss = [], [], [], []
    try:
        for i in range(count):
            started = time.monotonic()
            await backend.create_browser(f"b{i}", viewport=Viewport(1280, 720), start_url=url)
            created.append(time.monotonic() - started)
            process = backend.process(f"b{i}")
            devtools.append(process.started_seconds)
            await asyncio.sleep(2.0)  # let the page settle before reading memory
            rss.append(backend.memory_bytes(f"b{i}", "rss") / 2**20)
            pss.append(backend.memory_bytes(f"b{i}", "pss") / 2**20)
            await backend.delete_browser(f"b{i}")
    finally:
        await backend.aclose()
    return {
        "create_s": {
            "median": statistics.median(created),
            "min": min(created),
            "max": max(created),
        },
        "devtools_port_s": statistics.median(devtools),
        "rss_mib": statistics.median(rss),
        "pss_mib": statistics.median(pss),
    }


async def capture_jpegs(seconds: float) -> list[bytes]:
    """Real screencast frames of the animated page, straight from the DevTools protocol."""
    backend = ChromiumBackend(max_browsers=1)
    frames: list[bytes] = []
    acks: list[asyncio.Future[Any]] = []
    try:
        await backend.create_browser("c", viewport=Viewport(1280, 720), start_url=ANIMATED)
        browser = backend._browsers["c"]
        session = browser.pages.current

        def on_frame(params: dict[str, Any], sid: str | None) -> None:
            frames.append(base64.b64decode(params["data"]))
            ack = {"sessionId": params["sessionId"]}
            acks.append(
                asyncio.ensure_future(
                    browser.cdp.send("Page.screencastFrameAck", ack, session_id=sid)
                )
            )

        browser.cdp.on("Page.screencastFrame", on_frame)
        params = {"format": "jpeg", "quality": 80, "maxWidth": 1280, "maxHeight": 720}
        await browser.cdp.send("Page.startScreencast", params, session_id=session)
        await asyncio.sleep(seconds)
        await browser.cdp.send("Page.stopScreencast", session_id=session)
        await asyncio.gather(*acks, return_exceptions=True)
    finally:
        await backend.aclose()
    return frames


def offline_encode(jpegs: list[bytes], preset: str) -> dict[str, Any]:
    from kernel_async.testing._encoder import H264Writer

    with tempfile.TemporaryDirectory() as tmp:
        writer = H264Writer(Path(tmp) / "o.mp4", 1280, 720, 10, preset=preset)
        wall, cpu = time.perf_counter(), time.process_time()
        for data in jpegs:
            frame = writer.decode_jpeg(data)
            assert frame is not None
            writer.write(frame)
        writer.close()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "preset": preset,
        "frames": len(jpegs),
        "cpu_ms_per_frame": 1000 * cpu / len(jpegs),
        "wall_ms_per_frame": 1000 * wall / len(jpegs),
        "jpeg_kib": sum(map(len, jpegs)) / len(jpegs) / 1024,
    }


async def encoding(seconds: float, preset: str) -> dict[str, Any]:
    backend = ChromiumBackend(max_browsers=1, preset=preset)
    try:
        await backend.create_browser("e", viewport=Viewport(1280, 720), start_url=ANIMATED)
        await asyncio.sleep(1.0)
        await backend.start_recording("e", "r", framerate=10, max_duration=None)
        await asyncio.sleep(seconds)
        stopped = time.monotonic()
        path = await backend.stop_recording("e", "r")
        finalise = time.monotonic() - stopped
        stats = backend.recording_stats("e", "r")
        return {
            "preset": preset,
            "frames_written": stats.frames_written,
            "frames_received": stats.frames_received,
            "encode_ms_per_frame": 1000 * stats.encode_seconds / max(1, stats.frames_written),
            "finalise_s": finalise,
            "mp4_kib": path.stat().st_size / 1024,
        }
    finally:
        await backend.aclose()


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--browsers", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "static_page": await startup_and_memory(args.browsers, STATIC),
        "animated_page": await startup_and_memory(args.browsers, ANIMATED),
    }
    presets = ("veryfast", "superfast", "ultrafast")
    result["recording"] = [await encoding(args.seconds, preset) for preset in presets]
    jpegs = await capture_jpegs(args.seconds)
    result["offline_encode"] = [offline_encode(jpegs, preset) for preset in presets]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
