"""Notebook-style, blocking usage: works in a plain script and in a Jupyter cell alike.

Runs offline against the embedded emulator unless KERNEL_API_KEY (and a BROWSER_ID) are set:
    python examples/notebook_sync.py
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kernel_sync import Kernel, NotFoundError


@contextlib.contextmanager
def kernel() -> Iterator[tuple[Kernel, str]]:
    if os.environ.get("KERNEL_API_KEY") and os.environ.get("BROWSER_ID"):
        with Kernel() as client:
            yield client, os.environ["BROWSER_ID"]
        return
    from kernel_async.testing import FakeKernel

    with FakeKernel.in_thread(finalise_seconds=0.2) as fake:
        with Kernel(api_key=fake.api_key, base_url=fake.base_url) as client:
            yield client, fake.create_browser()


with kernel() as (client, browser):
    # In [1]: start recording
    replay = client.browsers.replays.start(browser)
    print("started", replay.replay_id, replay.started_at)

    # In [2]: ... drive the browser ..., then stop
    client.browsers.replays.stop(replay.replay_id, id=browser)

    # In [3]: what do we have?
    for r in client.browsers.replays.list(browser):
        print(r.replay_id, r.started_at, "->", r.finished_at)

    # In [4]: save it (waits while the video is finalised)
    path = client.browsers.replays.download_to(
        Path(tempfile.gettempdir()) / "notebook.mp4", replay.replay_id, id=browser
    )
    print("saved", path, path.stat().st_size, "bytes")

    # In [5]: errors are typed
    try:
        client.browsers.replays.stop("no-such-replay", id=browser)
    except NotFoundError as exc:
        print("as expected:", exc)
