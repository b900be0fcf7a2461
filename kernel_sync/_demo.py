"""``nox -s demo`` / ``python -m kernel_sync demo``: two flows against the embedded emulator.

1. Replays, call by call: create a browser, start a recording, stop it while the emulator
   injects a 503 and a 429 (the retries are visible), wait through finalising, save the MP4,
   delete the browser.
2. A recorded session in one ``with``: ``browsers.record(save_to=...)`` does all of that.

The demo writes two files: `output` (flow 1) and `session_path(output)` beside it (flow 2).
"""

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
from ._progress import size_text

__all__ = ["run_demo", "session_path"]

Say = Callable[[str], None]


def session_path(output: Path) -> Path:
    """Where the recorded session's video goes: named after `output`, beside it
    (``run.mp4`` -> ``run-session.mp4``)."""
    return output.with_name(f"{output.stem}-session{output.suffix or '.mp4'}")


def run_demo(*, output: str | None, out: TextIO, as_json: bool = False) -> int:
    """Run the demo; returns the exit code."""
    target = (
        Path(output).expanduser()
        if output
        else Path(tempfile.gettempdir()) / "kernel-demo" / "replay.mp4"
    )
    target.parent.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        if not as_json:
            out.write(text + "\n")
            out.flush()

    t0 = time.monotonic()
    with FakeKernel.in_thread(finalise_seconds=1.0) as fake:
        say(f"Kernel API emulator running on {fake.base_url} (no configuration needed)")
        say(f"the videos go to {target} and {session_path(target).name} beside it")
        retries: list[RetryEvent] = []

        def on_retry(event: RetryEvent) -> None:
            retries.append(event)
            wait = f"waiting {event.wait:.2f}s"
            say(f"    retry after attempt {event.attempt}: {event.reason}, {wait}")

        policy = RetryPolicy(on_retry=on_retry)
        with Kernel(api_key=fake.api_key, base_url=fake.base_url, retry=policy) as kernel:
            calls = _call_by_call(kernel, fake, target, retries, say)
            session = _recorded_session(kernel, fake, session_path(target), say)
    total = time.monotonic() - t0
    if as_json:
        summary = {"call_by_call": calls, "recorded_session": session, "seconds": round(total, 2)}
        out.write(json.dumps(summary) + "\n")
        return 0
    say("")
    say("summary")
    say("  1. replays, call by call")
    say(f"     requests      {len(calls['requests'])}: {', '.join(calls['requests'])}")
    retried = len(calls["retries"])
    stop = f"{calls['stop_attempts']} attempts ({retried} retries) in {calls['stop_seconds']:.2f}s"
    say(f"     stop          {stop}")
    polls = calls["download_polls"]
    say(f"     download      {polls} requests ({polls - 1} x 202 while finalising, then 200)")
    say(f"     saved         {calls['file']} ({size_text(calls['bytes'])}, video/mp4)")
    say("  2. a recorded session in one `with`")
    say(f"     requests      {len(session['requests'])}: {', '.join(session['requests'])}")
    say(f"     saved         {session['file']} ({size_text(session['bytes'])}, video/mp4)")
    say(f"  browsers left on the server: {session['browsers_left']}")
    say(f"  total time      {total:.2f}s")
    return 0


def _operations(fake: FakeKernel, since: int) -> list[str]:
    return [str(r.operation) for r in fake.requests[since:]]


def _call_by_call(
    kernel: Kernel, fake: FakeKernel, target: Path, retries: list[RetryEvent], say: Say
) -> dict[str, Any]:
    """Flow 1: each call of the replay lifecycle, with faults injected on stop."""
    say("")
    say("1. replays, call by call")
    before = len(fake.requests)
    browser = kernel.browsers.create(name="demo", tags={"run": "demo"}).session_id
    say(f"  created browser session {browser}")
    replays = kernel.browsers.replays
    replay = replays.start(browser, framerate=10)
    say(f"  started recording {replay.replay_id}")
    time.sleep(0.2)  # the agent's work
    fake.fail("stop", status=503)
    fake.fail("stop", status=429, retry_after=0.5)
    say("  stopping (the emulator will answer 503, then 429 with Retry-After: 0.5)")
    t_stop = time.monotonic()
    replays.stop(replay.replay_id, id=browser)
    stop_seconds = time.monotonic() - t_stop
    stop_attempts = fake.count("stop")
    say(f"  stopped after {stop_attempts} attempts in {stop_seconds:.2f}s")
    say("  waiting for the video to be finalised (202 + Retry-After), then saving it")
    path = replays.download_to(target, replay.replay_id, id=browser)
    size = path.stat().st_size
    say(f"  saved {path} ({size_text(size)})")
    listed = replays.list(browser)
    kernel.browsers.delete(browser)
    say(f"  deleted browser session {browser}")
    requests = _operations(fake, before)
    return {
        "replay_id": replay.replay_id,
        "requests": requests,
        "stop_attempts": stop_attempts,
        "stop_seconds": round(stop_seconds, 3),
        "retries": [{"reason": e.reason, "wait": round(e.wait, 3)} for e in retries],
        "download_polls": requests.count("download"),
        "file": str(path),
        "bytes": size,
        "finished_at": listed[0].finished_at.isoformat() if listed[0].finished_at else None,
    }


def _recorded_session(kernel: Kernel, fake: FakeKernel, target: Path, say: Say) -> dict[str, Any]:
    """Flow 2: the common case in one ``with``; every step the helper takes, and what is
    left on the server."""
    say("")
    say("2. a recorded session: with kernel.browsers.record(save_to=...) as rec:")
    before = len(fake.requests)
    with kernel.browsers.record(save_to=target, viewport=Viewport(1280, 800)) as rec:
        say(f"  browser {rec.browser.session_id} recording replay {rec.replay.replay_id}")
        cdp = rec.browser.cdp_ws_url.split("?")[0]  # the query carries a token
        say(f"  drive it over CDP (Playwright's connect_over_cdp): {cdp}?…")
        time.sleep(0.2)  # the agent's work
    requests = _operations(fake, before)
    collapsed = [op for i, op in enumerate(requests) if i == 0 or op != requests[i - 1]]
    assert rec.path is not None  # saved: the block ended without an error
    size = rec.path.stat().st_size
    say(f"  on exit: {' -> '.join(collapsed)}")
    say(f"  saved {rec.path} ({size_text(size)})")
    return {
        "browser": rec.browser.session_id,
        "requests": requests,
        "steps": collapsed,
        "file": str(rec.path),
        "bytes": size,
        "browsers_left": len(fake.sessions()),
    }
