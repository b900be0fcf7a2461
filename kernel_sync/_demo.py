"""``nox -s demo`` / ``python -m kernel_sync demo``: the main job against the embedded
emulator, with transient faults injected on stop so the retries are visible; then a whole
recorded session in one ``with`` (create, record, stop, finalise, save, delete)."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from kernel_async import RetryEvent, RetryPolicy, Viewport
from kernel_async.testing import FakeKernel

from ._generated import Kernel

__all__ = ["run_demo"]


def run_demo(*, output: str | None, out: TextIO, as_json: bool = False) -> int:
    """Run the demo; returns the exit code."""
    target = Path(output) if output else Path(tempfile.gettempdir()) / "kernel-demo" / "replay.mp4"
    target.parent.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        if not as_json:
            out.write(text + "\n")
            out.flush()

    retries: list[RetryEvent] = []

    def on_retry(event: RetryEvent) -> None:
        retries.append(event)
        say(f"    retry after attempt {event.attempt}: {event.reason}, waiting {event.wait:.2f}s")

    t0 = time.monotonic()
    with FakeKernel.in_thread(finalise_seconds=1.0) as fake:
        say(f"Kernel API emulator running on {fake.base_url} (no configuration needed)")
        policy = RetryPolicy(on_retry=on_retry)
        with Kernel(api_key=fake.api_key, base_url=fake.base_url, retry=policy) as kernel:
            browser = kernel.browsers.create(name="demo", tags={"run": "demo"}).session_id
            say(f"created browser session {browser}")
            replays = kernel.browsers.replays
            replay = replays.start(browser, framerate=10)
            say(f"started recording {replay.replay_id}")
            time.sleep(0.2)
            fake.fail("stop", status=503)
            fake.fail("stop", status=429, retry_after=0.5)
            say("stopping (the emulator will answer 503, then 429 with Retry-After: 0.5)")
            t_stop = time.monotonic()
            replays.stop(replay.replay_id, id=browser)
            stop_seconds = time.monotonic() - t_stop
            stop_attempts = fake.count("stop")
            say(f"  stopped after {stop_attempts} attempts in {stop_seconds:.2f}s")
            say("waiting for the video to be finalised (202 + Retry-After), then saving it")
            path = replays.download_to(target, replay.replay_id, id=browser)
            size = path.stat().st_size
            listed = replays.list(browser)
            kernel.browsers.delete(browser)
            say(f"deleted browser session {browser}")
            session = _recorded_session(kernel, fake, target.with_name("session.mp4"), say)
        calls = [f"{r.method} {r.raw_path} -> {r.operation}" for r in fake.requests]
    total = time.monotonic() - t0
    summary = {
        "replay_id": replay.replay_id,
        "stop_attempts": stop_attempts,
        "retries": [{"reason": e.reason, "wait": round(e.wait, 3)} for e in retries],
        "download_polls": sum(1 for c in calls if c.endswith("download")),
        "file": str(path),
        "bytes": size,
        "finished_at": listed[0].finished_at.isoformat() if listed[0].finished_at else None,
        "recorded_session": session,
        "seconds": round(total, 2),
    }
    if as_json:
        out.write(json.dumps(summary) + "\n")
        return 0
    say("")
    say("summary")
    say(f"  requests sent   {len(calls)}: " + ", ".join(c.split(" -> ")[1] for c in calls))
    say(f"  stop            {stop_attempts} attempts ({len(retries)} retries), {stop_seconds:.2f}s")
    say(f"  download polls  {summary['download_polls']} (202 while finalising, then 200)")
    say(f"  saved           {path} ({size} bytes, video/mp4)")
    say(f"  recorded session {session['path']}, browsers left: {session['browsers_left']}")
    say(f"  total time      {total:.2f}s")
    return 0


def _recorded_session(
    kernel: Kernel, fake: FakeKernel, target: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """The common case in one ``with``: every step the helper takes, and what is left."""
    say("")
    say("a recorded session: with kernel.browsers.record(save_to=...) as rec:")
    before = len(fake.requests)
    with kernel.browsers.record(save_to=target, viewport=Viewport(1280, 800)) as rec:
        say(f"  browser {rec.browser.session_id} recording replay {rec.replay.replay_id}")
        cdp = rec.browser.cdp_ws_url.split("?")[0]  # the query carries a token
        say(f"  drive it over CDP (Playwright's connect_over_cdp): {cdp}?…")
        time.sleep(0.2)  # the agent's work
    steps = [r.operation for r in fake.requests[before:]]
    collapsed = [op for i, op in enumerate(steps) if i == 0 or op != steps[i - 1]]
    say(f"  on exit: {' -> '.join(str(op) for op in collapsed)}")
    say(f"  saved {rec.path}; browsers left on the server: {len(fake.sessions())}")
    return {
        "browser": rec.browser.session_id,
        "steps": collapsed,
        "path": str(rec.path),
        "browsers_left": len(fake.sessions()),
    }
