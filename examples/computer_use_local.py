"""An offline computer-use loop on a real browser, recorded: look, find, click, type.

The agent sees the screen only through screenshots and acts only through the computer-use
API, as a vision agent on Kernel does: screenshot -> find the blue button by its colour ->
click it -> find the field -> type into it and press Enter -> the next screenshot shows the
typed text. The emulator runs the browser as a real headless Chromium on this machine and
records the session (``browsers.record``) to an MP4, in which the page changes step by
step. Needs Chromium (``apt-get install chromium``) and ``pip install 'kernel-async[local]'``
(PyAV, which also decodes the PNGs here):

    python examples/computer_use_local.py [out.mp4]

With KERNEL_API_KEY set, the same loop runs against that Kernel API (the page is loaded as
the new browser's ``start_url``). `computer_use_local_sync.py` is the blocking twin.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

import av

from kernel_async import AsyncKernel, Viewport

BLUE, GREEN, FIELD = (26, 115, 232), (30, 142, 62), (255, 243, 196)
PAGE = "data:text/html," + quote(
    """<html><body style="margin:0;background:#fff;font:24px sans-serif">
<h1 style="margin:24px">Offline computer use</h1>
<button style="position:absolute;left:40px;top:110px;width:220px;height:70px;border:0;
 background:#1a73e8;color:#fff;font-size:26px"
 onclick="this.style.background='#1e8e3e';this.textContent='Clicked!'">Click me</button>
<form onsubmit="event.preventDefault();
 document.getElementById('out').textContent='Hello, '+document.getElementById('name').value+'!'">
<input id="name" style="position:absolute;left:40px;top:220px;width:420px;height:56px;
 border:0;outline:none;background:#fff3c4;font-size:30px;padding:0 12px;
 caret-color:transparent">
</form>
<p id="out" style="position:absolute;left:40px;top:300px;font-size:30px"></p>
</body></html>"""
)
VIEWPORT = Viewport(800, 450)

Box = tuple[int, int, int, int]  # left, top, right, bottom


def rgb_rows(frame: av.VideoFrame) -> list[bytes]:
    """A decoded frame's pixels, one ``bytes`` of RGB triplets per row."""
    frame = frame.reformat(format="rgb24")
    plane, width = frame.planes[0], frame.width
    data = bytes(plane)
    return [
        data[y * plane.line_size : y * plane.line_size + 3 * width] for y in range(frame.height)
    ]


def screen_of(png: bytes) -> list[bytes]:
    """A screenshot's pixels (PyAV decodes PNG too)."""
    with av.open(io.BytesIO(png), mode="r", format="png_pipe") as container:
        return rgb_rows(next(container.decode(video=0)))


def near(pixel: bytes, colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def find(rows: list[bytes], colour: tuple[int, int, int]) -> Box | None:
    """Where ``colour`` is on the screen (its bounding box), or None."""
    xs, ys = [], []
    for y in range(0, len(rows), 2):  # every other pixel is plenty for a button
        row = rows[y]
        for x in range(0, len(row) // 3, 2):
            if near(row[3 * x : 3 * x + 3], colour, 8):
                xs.append(x)
                ys.append(y)
    return (min(xs), min(ys), max(xs), max(ys)) if xs else None


def centre(box: Box) -> tuple[int, int]:
    return (box[0] + box[2]) // 2, (box[1] + box[3]) // 2


def ink(rows: list[bytes], box: Box) -> int:
    """Dark pixels inside ``box``: text."""
    return sum(
        1
        for y in range(box[1], box[3] + 1)
        for x in range(box[0], box[2] + 1)
        if sum(rows[y][3 * x : 3 * x + 3]) < 250
    )


def video_story(path: Path, button: Box, field: Box) -> list[str]:
    """What the MP4 shows, frame by frame, collapsed: the button's colour and whether the
    field holds text."""
    story: list[str] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            rows = rgb_rows(frame)
            x, y = button[0] + 8, button[1] + 8  # inside the button, clear of its label
            colour = "blue" if near(rows[y][3 * x : 3 * x + 3], BLUE) else "green"
            typed = "typed" if ink(rows, field) > 100 else "empty"
            state = f"button {colour}, field {typed}"
            if not story or story[-1] != state:
                story.append(state)
    return story


async def agent(client: AsyncKernel, browser_id: str) -> tuple[Box, Box]:
    """The loop: every decision comes from a screenshot."""
    computer = client.browsers.computer
    rows = screen_of(await computer.capture_screenshot(browser_id))
    button, field = find(rows, BLUE), find(rows, FIELD)
    if button is None or field is None:
        raise RuntimeError("the page is not on the screen")
    print(f"  found the button at {button} and the field at {field}")
    await asyncio.sleep(0.5)  # let the recording see each state for a moment

    x, y = centre(button)
    await computer.click_mouse(browser_id, x=x, y=y)
    rows = screen_of(await computer.capture_screenshot(browser_id))
    if find(rows, BLUE) is not None or find(rows, GREEN) != button:
        raise RuntimeError("the click did not land")
    print("  clicked it: it turned green")
    await asyncio.sleep(0.5)

    x, y = centre(field)
    await computer.click_mouse(browser_id, x=x, y=y)
    await computer.type_text(browser_id, text="Ada Lovelace", delay=40)
    await computer.press_key(browser_id, keys=["Return"])
    rows = screen_of(await computer.capture_screenshot(browser_id))
    if ink(rows, field) <= 100:
        raise RuntimeError("the typed text is not on the screen")
    print(f"  typed into the field: {ink(rows, field)} dark pixels of text in it")
    await asyncio.sleep(0.5)
    return button, field


async def main(out: Path) -> list[str]:
    if os.environ.get("KERNEL_API_KEY"):  # the same loop against Kernel itself
        async with AsyncKernel() as client:
            return await run(client, out)
    from kernel_async.testing import FakeKernel

    async with FakeKernel(backend="chromium") as fake, fake.client() as client:
        return await run(client, out)


async def run(client: AsyncKernel, out: Path) -> list[str]:
    async with client.browsers.record(save_to=out, viewport=VIEWPORT, start_url=PAGE) as rec:
        print(f"browser {rec.browser.session_id}, recording {rec.replay.replay_id}")
        button, field = await agent(client, rec.browser.session_id)
    # On exit: the replay stopped, the video was finalised and saved, the browser deleted.
    story = await asyncio.to_thread(video_story, out, button, field)
    print("the video shows: " + " -> ".join(story))
    if story[0] != "button blue, field empty" or story[-1] != "button green, field typed":
        raise RuntimeError("the video does not show the page changing")
    return story


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    with tempfile.TemporaryDirectory() as tmp:
        saved = target or Path(tmp) / "computer_use.mp4"
        asyncio.run(main(saved))
        print(f"saved {saved} ({saved.stat().st_size} bytes)")
