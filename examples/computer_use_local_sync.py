"""The offline computer-use loop of `computer_use_local.py`, with the blocking client.

Screenshot -> find the blue button by its colour -> click it -> type into the field ->
the next screenshot shows the typed text; recorded to an MP4 in which the page changes.
The emulator serves from a thread of its own (``FakeKernel.in_thread``), so plain blocking
code (a script, a notebook cell) drives a real local Chromium. Needs Chromium and
``pip install 'kernel-async[local]'``:

    python examples/computer_use_local_sync.py [out.mp4]

With KERNEL_API_KEY set, the same loop runs against that Kernel API.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from computer_use_local import (  # the page and the pixel helpers: one copy
    BLUE,
    FIELD,
    GREEN,
    PAGE,
    VIEWPORT,
    Box,
    centre,
    find,
    ink,
    screen_of,
    video_story,
)

from kernel_sync import Kernel


def agent(client: Kernel, browser_id: str) -> tuple[Box, Box]:
    """The loop: every decision comes from a screenshot."""
    computer = client.browsers.computer
    rows = screen_of(computer.capture_screenshot(browser_id))
    button, field = find(rows, BLUE), find(rows, FIELD)
    if button is None or field is None:
        raise RuntimeError("the page is not on the screen")
    print(f"  found the button at {button} and the field at {field}")
    time.sleep(0.5)  # let the recording see each state for a moment

    x, y = centre(button)
    computer.click_mouse(browser_id, x=x, y=y)
    rows = screen_of(computer.capture_screenshot(browser_id))
    if find(rows, BLUE) is not None or find(rows, GREEN) != button:
        raise RuntimeError("the click did not land")
    print("  clicked it: it turned green")
    time.sleep(0.5)

    x, y = centre(field)
    computer.click_mouse(browser_id, x=x, y=y)
    computer.type_text(browser_id, text="Ada Lovelace", delay=40)
    computer.press_key(browser_id, keys=["Return"])
    rows = screen_of(computer.capture_screenshot(browser_id))
    if ink(rows, field) <= 100:
        raise RuntimeError("the typed text is not on the screen")
    print(f"  typed into the field: {ink(rows, field)} dark pixels of text in it")
    time.sleep(0.5)
    return button, field


@contextlib.contextmanager
def kernel() -> Iterator[Kernel]:
    if os.environ.get("KERNEL_API_KEY"):  # the same loop against Kernel itself
        with Kernel() as client:
            yield client
        return
    from kernel_async.testing import FakeKernel

    with FakeKernel.in_thread(backend="chromium") as fake:
        with Kernel(api_key=fake.api_key, base_url=fake.base_url) as client:
            yield client


def main(out: Path) -> list[str]:
    with kernel() as client:
        with client.browsers.record(save_to=out, viewport=VIEWPORT, start_url=PAGE) as rec:
            print(f"browser {rec.browser.session_id}, recording {rec.replay.replay_id}")
            button, field = agent(client, rec.browser.session_id)
    # On exit: the replay stopped, the video was finalised and saved, the browser deleted.
    story = video_story(out, button, field)
    print("the video shows: " + " -> ".join(story))
    if story[0] != "button blue, field empty" or story[-1] != "button green, field typed":
        raise RuntimeError("the video does not show the page changing")
    return story


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    with tempfile.TemporaryDirectory() as tmp:
        saved = target or Path(tmp) / "computer_use.mp4"
        main(saved)
        print(f"saved {saved} ({saved.stat().st_size} bytes)")
