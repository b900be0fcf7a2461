"""``computer.drag_mouse`` performs HTML drag and drop on the emulator's local Chromium: the
rule for what a drag's mouse events become once the page has started a drag (pure), and
real drops seen in screenshots, beside a canvas-style drag that stays mouse events."""

from __future__ import annotations

import pytest

from kernel_async import Viewport
from kernel_async.testing import FakeKernel
from kernel_async.testing._computer import DragEvents, Send
from tests.test_emulator_computer import GREEN, data_url, find, pixel, pixels

pytestmark = pytest.mark.anyio

DATA = {"items": [{"mimeType": "text/plain", "data": "x"}], "dragOperationsMask": -1}


def mouse(kind: str, x: int, y: int, modifiers: int = 0) -> Send:
    params = {"type": kind, "x": x, "y": y, "buttons": 1, "button": "left"}
    return Send("Input.dispatchMouseEvent", {**params, "modifiers": modifiers})


def drag(kind: str, x: int, y: int, modifiers: int = 0) -> Send:
    params = {"type": kind, "x": x, "y": y, "data": DATA, "modifiers": modifiers}
    return Send("Input.dispatchDragEvent", params)


def test_mouse_events_pass_until_the_page_starts_a_drag() -> None:
    events = DragEvents()
    for send in (mouse("mousePressed", 1, 1), mouse("mouseMoved", 5, 5)):
        assert not events.awaits_release(send)
        assert events.translate(send) == [send]
    release = mouse("mouseReleased", 9, 9)
    assert events.awaits_release(release)  # a drag may be on its way: settle first
    assert events.translate(release) == [release]  # none came: a canvas drag, as before
    assert events.leftover() == []


def test_once_started_moves_enter_then_go_over_and_the_release_drops() -> None:
    events = DragEvents()
    events.translate(mouse("mouseMoved", 5, 5))
    events.started(DATA)
    events.started({"items": []})  # the first report counts
    assert events.translate(mouse("mouseMoved", 6, 7, modifiers=8)) == [drag("dragEnter", 6, 7, 8)]
    assert events.translate(mouse("mouseMoved", 8, 9)) == [drag("dragOver", 8, 9)]
    release = mouse("mouseReleased", 8, 9)
    assert not events.awaits_release(release)
    # No mouseup after a drop, as in a real drag and drop.
    assert events.translate(release) == [drag("dragOver", 8, 9), drag("drop", 8, 9)]
    assert events.leftover() == []
    assert events.translate(mouse("mouseMoved", 1, 1)) == [mouse("mouseMoved", 1, 1)]


def test_a_drag_started_by_the_last_move_enters_at_the_release() -> None:
    events = DragEvents()
    events.started(DATA)
    assert events.translate(mouse("mouseReleased", 3, 4)) == [
        drag("dragEnter", 3, 4),
        drag("dragOver", 3, 4),
        drag("drop", 3, 4),
    ]


def test_a_drag_not_dropped_is_cancelled_where_it_was() -> None:
    events = DragEvents()
    events.translate(mouse("mousePressed", 1, 1))
    events.started(DATA)
    events.translate(mouse("mouseMoved", 4, 2))
    assert events.leftover() == [drag("dragCancel", 4, 2)]
    assert events.leftover() == []


RED, GREY = (255, 0, 0), (128, 128, 128)
# Two drop targets (grey) that turn the colour dropped on them; a box to drag (blue); a pad
# (grey) that turns red after a mouse down, move and up (a canvas-style drag).
PAGE = """<html><body style="margin:0;background:#fff">
<div id=src draggable=true style="position:absolute;left:20px;top:20px;width:60px;height:60px;
 background:#0000ff"></div>
<div class=dst style="position:absolute;left:140px;top:20px;width:60px;height:60px;
 background:#808080"></div>
<div class=dst style="position:absolute;left:240px;top:20px;width:60px;height:60px;
 background:#808080"></div>
<div id=pad style="position:absolute;left:20px;top:120px;width:280px;height:40px;
 background:#808080"></div>
<script>
src.addEventListener("dragstart", e => e.dataTransfer.setData("text/plain", "#00ff00"));
for (const d of document.querySelectorAll(".dst")) {
  d.addEventListener("dragover", e => e.preventDefault());
  d.addEventListener("drop", e => {
    e.preventDefault();
    d.style.background = e.dataTransfer.getData("text/plain");
  });
}
let moved = 0;
pad.addEventListener("mousedown", () => { moved = 1; });
pad.addEventListener("mousemove", e => { if (moved && e.buttons === 1) moved++; });
pad.addEventListener("mouseup", () => { if (moved > 2) pad.style.background = "#ff0000"; });
</script></body></html>"""


@pytest.mark.once
async def test_chromium_drags_and_drops_and_canvas_drags_stay_mouse_events() -> None:
    async with FakeKernel(backend="chromium") as fake, fake.client(max_retries=0) as client:
        computer = client.browsers.computer
        browser = await client.browsers.create(
            viewport=Viewport(320, 180), start_url=data_url(PAGE)
        )
        bid = browser.session_id
        # Quick moves: without driving the drop, the release beats the page's answer to
        # the last dragover and nothing drops.
        await computer.drag_mouse(bid, path=[[50, 50], [170, 50]], steps_per_segment=3)
        await computer.drag_mouse(
            bid, path=[[50, 50], [150, 60], [270, 50]], steps_per_segment=2, step_delay_ms=1
        )
        await computer.drag_mouse(bid, path=[[30, 140], [290, 140]], step_delay_ms=1)
        rows = pixels(await computer.capture_screenshot(bid))[2]
        assert pixel(rows, 170, 50) == GREEN  # dropped on the first target
        assert pixel(rows, 270, 50) == GREEN  # and again: the page could drag again
        assert pixel(rows, 160, 140) == RED  # the pad saw down, moves and up
        assert find(rows, (0, 0, 255)) == (20, 20, 79, 79)  # the box stayed
        await client.browsers.delete(bid)
