"""``browsers.computer`` in the emulator: the pure rules (keys, combinations, the CDP events
of each action, the generated PNG), the in-memory stand-ins through kernel_async and
kernel_sync, and real computer use on local Chromium (marked ``once``): find a button by
colour in a screenshot, click it, type, press Enter, and see it all in the next screenshot;
the official SDK drives the same operations."""

from __future__ import annotations

import asyncio
import io
import struct
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import quote

import pytest

from kernel_async import AsyncKernel, BadRequestError, NotFoundError, Viewport
from kernel_async.testing import FakeKernel
from kernel_async.testing._computer import (
    _FAMILIES,
    ALT,
    CTRL,
    SHIFT,
    ComputerEvent,
    ComputerState,
    Copy,
    DragEnd,
    DragStart,
    Paste,
    Send,
    Settle,
    Wait,
    key_for,
    parse_combo,
    plan,
    solid_png,
)
from kernel_sync import Kernel

pytestmark = pytest.mark.anyio


# -- PNG decoding (for the tests: any filter, 8-bit RGB or RGBA) ---------------------------


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk (which must come first, with a valid CRC)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16:29]
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(kind + body)
    width, height = struct.unpack(">II", body[:8])
    return width, height


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB bytes), undoing every PNG row filter."""
    width, height = png_size(data)
    depth, colour = data[24], data[25]
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(
            kind + chunk
        )
        if kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 255
        prev = line
        rgb = bytes(line) if bpp == 3 else bytes(v for j, v in enumerate(line) if j % 4 != 3)
        rows.append(rgb)
    return width, height, rows


# -- pure rules ---------------------------------------------------------------------------


def test_keys_by_x11_and_dom_names_and_characters() -> None:
    enter = key_for("Return")
    assert enter == key_for("Enter") == key_for("enter") == key_for("KP_Enter")
    assert (enter.key, enter.code, enter.key_code, enter.text) == ("Enter", "Enter", 13, "\r")
    assert key_for("ctrl") == key_for("Control_L") and key_for("ctrl").modifier == CTRL
    assert key_for("a").code == "KeyA" and key_for("A").text == "A"
    assert key_for("exclam") == key_for("!") and key_for("!").code == "Digit1"
    assert key_for("Page_Down").key == "PageDown" and key_for("F5").key_code == 116
    with pytest.raises(ValueError, match="unknown key 'Hyper_Q'"):
        key_for("Hyper_Q")


def test_combinations_split_on_plus() -> None:
    assert [k.key for k in parse_combo("ctrl+shift+Tab")] == ["Control", "Shift", "Tab"]
    assert [k.key for k in parse_combo("ctrl++")] == ["Control", "+"]
    assert [k.key for k in parse_combo("+")] == ["+"]
    for bad in ("", "ctrl+", "a++b"):
        with pytest.raises(ValueError, match="key"):
            parse_combo(bad)


def sent(steps: Sequence[object]) -> list[tuple[str, dict[str, Any]]]:
    assert all(isinstance(s, Send) for s in steps), steps
    return [(s.method, dict(s.params)) for s in steps if isinstance(s, Send)]


def test_a_modified_key_types_nothing_and_modifiers_come_and_go() -> None:
    events = sent(plan("press_key", {"keys": ["ctrl+a"]}, ComputerState()))
    kinds = [(p["type"], p["key"], p["modifiers"], p.get("text")) for _, p in events]
    assert kinds == [
        ("rawKeyDown", "Control", CTRL, None),
        ("rawKeyDown", "a", CTRL, None),  # no text: ctrl+a selects, it does not type
        ("keyUp", "a", CTRL, None),
        ("keyUp", "Control", 0, None),
    ]
    events = sent(plan("press_key", {"keys": ["Tab"], "hold_keys": ["shift"]}, ComputerState()))
    assert [(p["type"], p["key"], p["modifiers"]) for _, p in events] == [
        ("rawKeyDown", "Shift", SHIFT),
        ("rawKeyDown", "Tab", SHIFT),
        ("keyUp", "Tab", SHIFT),
        ("keyUp", "Shift", 0),
    ]
    (down, _) = sent(plan("press_key", {"keys": ["Return"]}, ComputerState()))
    assert down[1]["type"] == "keyDown" and down[1]["text"] == "\r"
    steps = plan("press_key", {"keys": ["alt+x"], "duration": 30}, ComputerState())
    assert Wait(30) in steps and sent([s for s in steps if s != Wait(30)])[0][1]["modifiers"] == ALT


def test_clipboard_keys_copy_and_paste_through_the_emulator() -> None:
    state = ComputerState()
    assert plan("press_key", {"keys": ["ctrl+v"]}, state) == [Paste()]
    copy = plan("press_key", {"keys": ["ctrl+c"]}, state)
    assert copy[0] == Copy() and len(copy) == 5  # copied first, then the keys themselves
    cut = plan("press_key", {"keys": ["x"], "hold_keys": ["ctrl"]}, state)
    assert Copy() in cut
    assert Paste() not in plan("press_key", {"keys": ["v"]}, state)


def test_clicks_carry_counts_buttons_and_held_modifiers() -> None:
    state = ComputerState()
    body = {"x": 5, "y": 6, "num_clicks": 2, "button": "right", "hold_keys": ["shift"]}
    events = [p for _, p in sent(plan("click_mouse", body, state)) if "clickCount" in p]
    assert [(p["type"], p["clickCount"], p["button"], p["modifiers"]) for p in events] == [
        ("mousePressed", 1, "right", SHIFT),
        ("mouseReleased", 1, "right", SHIFT),
        ("mousePressed", 2, "right", SHIFT),
        ("mouseReleased", 2, "right", SHIFT),
    ]
    assert state.mouse == (5, 6) and state.buttons == 0
    plan("click_mouse", {"x": 1, "y": 1, "click_type": "down"}, state)
    assert state.buttons == 1  # held: a move now drags
    (move,) = sent(plan("move_mouse", {"x": 9, "y": 9}, state))
    assert move[1]["buttons"] == 1 and move[1]["button"] == "left"
    plan("click_mouse", {"x": 9, "y": 9, "click_type": "up"}, state)
    assert state.buttons == 0


def test_drags_and_scrolls() -> None:
    state = ComputerState()
    body = {"path": [[0, 0], [10, 0], [10, 10]], "steps_per_segment": 2, "step_delay_ms": 0}
    steps = plan("drag_mouse", body, state)
    assert (steps[0], steps[-1]) == (DragStart(), DragEnd())  # an HTML drag may happen between
    steps = [s for s in steps[1:-1] if s != Wait(0)]
    moves = [(p["x"], p["y"], p["buttons"]) for _, p in sent(steps) if p["type"] == "mouseMoved"]
    assert moves == [(0, 0, 0), (5, 0, 1), (10, 0, 1), (10, 5, 1), (10, 10, 1)]
    assert sent(steps)[-1][1]["type"] == "mouseReleased" and state.mouse == (10, 10)
    with pytest.raises(ValueError, match="at least two"):
        plan("drag_mouse", {"path": [[1, 1]]}, state)
    steps = plan("scroll", {"x": 3, "y": 4, "delta_y": 2, "delta_x": -1}, state)
    assert steps[-1] == Settle()  # a wheel scrolls asynchronously: wait until drawn
    wheel = sent(steps[:-1])[-1][1]
    assert (wheel["type"], wheel["deltaX"], wheel["deltaY"]) == ("mouseWheel", -100, 200)
    assert state.mouse == (3, 4)


def test_typing_presses_keys_and_inserts_what_no_key_types() -> None:
    steps = plan("type_text", {"text": "Hé\n", "delay": 5}, ComputerState())
    downs = [s.params for s in steps if isinstance(s, Send) and s.params.get("type") != "keyUp"]
    assert downs[0]["key"] == "H" and downs[0]["text"] == "H"
    assert downs[1] == {"text": "é"}  # Input.insertText
    assert downs[2]["key"] == "Enter"
    assert steps.count(Wait(5)) == 2  # between characters, not before the first


def test_generated_png_is_valid_with_the_size_and_colour() -> None:
    data = solid_png(7, 3, (10, 20, 30))
    width, height, rows = decode_png(data)
    assert (width, height) == (7, 3)
    assert rows == [bytes((10, 20, 30)) * 7] * 3


# -- in memory, through the SDKs -------------------------------------------------------


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeKernel, AsyncKernel]]:
    async with FakeKernel() as fake, fake.client(max_retries=0) as client:
        yield fake, client


async def test_in_memory_every_operation(served: tuple[FakeKernel, AsyncKernel]) -> None:
    fake, client = served
    computer = client.browsers.computer
    browser = await client.browsers.create(viewport=Viewport(320, 200), name="agent")
    bid = browser.session_id

    shot = await computer.capture_screenshot(bid)
    assert shot.content_type == "image/png"
    width, height, rows = decode_png(shot)
    assert (width, height) == (320, 200) and set(rows) == {b"\xff" * 960}  # white
    fake.computer(bid).screen_colour = (0, 0, 255)
    part = await computer.capture_screenshot(
        "agent", region={"x": 10, "y": 20, "width": 30, "height": 40}
    )
    assert decode_png(part)[:2] == (30, 40) and decode_png(part)[2][0][:3] == b"\x00\x00\xff"

    assert (await computer.get_mouse_position(bid)).x == 0
    await computer.click_mouse(bid, x=11, y=12, button="right", num_clicks=2, hold_keys=["shift"])
    await computer.move_mouse(bid, x=50, y=60, smooth=True, duration_ms=5000)
    pos = await computer.get_mouse_position(bid)
    assert (pos.x, pos.y) == (50, 60)
    started = time.monotonic()
    await computer.drag_mouse(bid, path=[[1, 2], [30, 40]])  # 50 ms steps: not waited here
    await computer.scroll(bid, x=5, y=6, delta_y=3)
    await computer.type_text(bid, text="hello", delay=200)
    await computer.press_key(bid, keys=["ctrl+a", "Return"])
    assert (await computer.set_cursor_visibility(bid, hidden=True)).ok is True
    await computer.write_clipboard(bid, text="copied")
    assert (await computer.read_clipboard(bid)).text == "copied"
    await computer.batch(
        bid,
        actions=[
            {"type": "move_mouse", "move_mouse": {"x": 7, "y": 8}},
            {"type": "sleep", "sleep": {"duration_ms": 5000}},
            {"type": "set_cursor", "set_cursor": {"hidden": False}},
            {"type": "click_mouse", "click_mouse": {"x": 70, "y": 80}},
        ],
    )
    assert time.monotonic() - started < 4  # the stand-ins take no time
    state = fake.computer("agent")
    assert state.mouse == (70, 80) and state.cursor_hidden is False
    assert state.clipboard == "copied"
    assert [e.operation for e in state.log] == [
        "capture_screenshot",
        "capture_screenshot",
        "get_mouse_position",
        "click_mouse",
        "move_mouse",
        "get_mouse_position",
        "drag_mouse",
        "scroll",
        "type_text",
        "press_key",
        "set_cursor_visibility",
        "write_clipboard",
        "read_clipboard",
        "move_mouse",
        "sleep",
        "set_cursor_visibility",
        "click_mouse",
    ]
    assert state.events("click_mouse")[0] == ComputerEvent(
        "click_mouse",
        {"x": 11, "y": 12, "button": "right", "num_clicks": 2, "hold_keys": ["shift"]},
    )
    assert state.events("type_text") == [
        ComputerEvent("type_text", {"text": "hello", "delay": 200})
    ]

    await client.browsers.delete(bid)
    assert fake.computer(bid).mouse == (70, 80)  # kept after the browser ends
    with pytest.raises(NotFoundError, match="was deleted"):
        await computer.click_mouse(bid, x=1, y=1)
    with pytest.raises(KeyError):
        fake.computer("br_never")


async def test_in_memory_refusals_name_what_is_wrong(
    served: tuple[FakeKernel, AsyncKernel],
) -> None:
    fake, client = served
    computer = client.browsers.computer
    bid = (await client.browsers.create(viewport=Viewport(320, 200))).session_id
    with pytest.raises(
        BadRequestError, match=r"region 30x40 at \(300, 0\) is not within the 320x200"
    ):
        await computer.capture_screenshot(bid, region={"x": 300, "y": 0, "width": 30, "height": 40})
    with pytest.raises(BadRequestError, match="press_key: unknown key 'Hyper_Q'"):
        await computer.press_key(bid, keys=["Hyper_Q"])
    with pytest.raises(BadRequestError, match="at least two"):
        await computer.drag_mouse(bid, path=[[1, 1]])
    with pytest.raises(BadRequestError, match="x"):  # the spec's validation names the field
        await computer.click_mouse(bid, x=1, y=2, extra_body={"x": "one"})
    with pytest.raises(NotFoundError, match="browser session 'nope' not found"):
        await computer.capture_screenshot("nope")
    # A batch halts at its first failing action: those before it ran, those after did not.
    with pytest.raises(BadRequestError, match=r"actions\[1\]: press_key: unknown key"):
        await computer.batch(
            bid,
            actions=[
                {"type": "click_mouse", "click_mouse": {"x": 3, "y": 4}},
                {"type": "press_key", "press_key": {"keys": ["Hyper_Q"]}},
                {"type": "click_mouse", "click_mouse": {"x": 9, "y": 9}},
            ],
        )
    with pytest.raises(BadRequestError, match=r"actions\[0\]: scroll needs its parameters"):
        await computer.batch(bid, actions=[{"type": "scroll"}])
    assert fake.computer(bid).mouse == (3, 4)


def test_in_memory_through_the_sync_client(threaded_fake: FakeKernel) -> None:
    with Kernel(api_key=threaded_fake.api_key, base_url=threaded_fake.base_url) as client:
        bid = client.browsers.create(viewport=Viewport(64, 48)).session_id
        assert png_size(client.browsers.computer.capture_screenshot(bid)) == (64, 48)
        client.browsers.computer.click_mouse(bid, x=3, y=4)
        client.browsers.computer.type_text(bid, text="hi")
        assert client.browsers.computer.get_mouse_position(bid).x == 3
    assert [e.operation for e in threaded_fake.computer(bid).log][1:] == [
        "click_mouse",
        "type_text",
        "get_mouse_position",
    ]


# -- local Chromium (real browsers: once) -------------------------------------------------

BLUE, GREEN, MAGENTA, YELLOW = (0, 0, 255), (0, 255, 0), (255, 0, 255), (255, 255, 0)

PAGE = """<html><body style="margin:0;background:#fff;height:3000px">
<button id=b style="position:absolute;left:60px;top:40px;width:120px;height:60px;
 background:#0000ff;border:0" onclick="this.style.background='#00ff00'">Go</button>
<form onsubmit="event.preventDefault();document.body.style.background='#ffff00'">
<input id=f style="position:absolute;left:60px;top:160px;width:300px;height:40px;
 font-size:28px;background:#ff00ff;border:0;outline:none;color:#000;padding:0;
 caret-color:transparent">
</form>
<script>
window.seen = [];
for (const t of ["mousedown", "mouseup", "click", "dblclick", "contextmenu", "keydown", "wheel"])
  addEventListener(t, e => seen.push([t, e.button ?? null, e.detail ?? null, e.shiftKey,
                                      e.ctrlKey, e.key ?? null, e.clientX, e.clientY]), true);
addEventListener("contextmenu", e => e.preventDefault());
</script></body></html>"""


def data_url(html: str) -> str:
    return "data:text/html," + quote(html)


def pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, RGB rows), decoded by PyAV (Chromium's PNGs are large)."""
    import av

    with av.open(io.BytesIO(png), mode="r", format="png_pipe") as container:
        frame = next(container.decode(video=0)).reformat(format="rgb24")
        plane = bytes(frame.planes[0])
        stride = frame.planes[0].line_size
        rows = [plane[y * stride : y * stride + frame.width * 3] for y in range(frame.height)]
        return frame.width, frame.height, rows


def pixel(rows: list[bytes], x: int, y: int) -> tuple[int, int, int]:
    r, g, b = rows[y][x * 3 : x * 3 + 3]
    return r, g, b


def find(rows: list[bytes], colour: tuple[int, int, int]) -> tuple[int, int, int, int] | None:
    """The bounding box (left, top, right, bottom) of the pixels of ``colour``."""
    target = bytes(colour)
    xs: list[int] = []
    ys: list[int] = []
    for y, row in enumerate(rows):
        for x in range(0, len(row), 3):
            if row[x : x + 3] == target:
                xs.append(x // 3)
                ys.append(y)
    return (min(xs), min(ys), max(xs), max(ys)) if xs else None


def centre(box: tuple[int, int, int, int] | None) -> tuple[int, int]:
    assert box is not None
    return (box[0] + box[2]) // 2, (box[1] + box[3]) // 2


def ink(rows: list[bytes], box: tuple[int, int, int, int]) -> int:
    """How many dark pixels (text) are inside ``box``."""
    return sum(
        1
        for y in range(box[1], box[3] + 1)
        for x in range(box[0], box[2] + 1)
        if sum(pixel(rows, x, y)) < 200
    )


@pytest.fixture
async def chromium() -> AsyncIterator[tuple[FakeKernel, AsyncKernel]]:
    async with FakeKernel(backend="chromium") as fake, fake.client(max_retries=0) as client:
        yield fake, client


@pytest.mark.once
async def test_chromium_find_click_type_enter(chromium: tuple[FakeKernel, AsyncKernel]) -> None:
    fake, client = chromium
    computer = client.browsers.computer
    browser = await client.browsers.create(viewport=Viewport(480, 270), start_url=data_url(PAGE))
    bid = browser.session_id

    width, height, rows = pixels(await computer.capture_screenshot(bid))
    assert (width, height) == (480, 270)
    button, field = find(rows, BLUE), find(rows, MAGENTA)
    assert button == (60, 40, 179, 99) and field is not None
    assert ink(rows, field) == 0
    await computer.click_mouse(bid, x=centre(button)[0], y=centre(button)[1])
    rows = pixels(await computer.capture_screenshot(bid))[2]
    assert find(rows, BLUE) is None and find(rows, GREEN) == button  # it turned green

    await computer.click_mouse(bid, x=centre(field)[0], y=centre(field)[1])
    await computer.type_text(bid, text="Hello, Kernel!")
    rows = pixels(await computer.capture_screenshot(bid))[2]
    assert ink(rows, field) > 50  # the typed text shows
    await computer.press_key(bid, keys=["ctrl+a", "ctrl+c"])  # select all and copy it
    assert (await computer.read_clipboard(bid)).text == "Hello, Kernel!"
    await computer.press_key(bid, keys=["End"])
    await computer.write_clipboard(bid, text=" pasted")
    await computer.press_key(bid, keys=["ctrl+v"])
    await computer.press_key(bid, keys=["ctrl+a", "ctrl+x"])  # cut: copied, and gone
    assert (await computer.read_clipboard(bid)).text == "Hello, Kernel! pasted"
    assert ink(pixels(await computer.capture_screenshot(bid))[2], field) == 0
    await computer.press_key(bid, keys=["Return"])  # submits the form
    rows = pixels(await computer.capture_screenshot(bid))[2]
    assert pixel(rows, 5, 5) == YELLOW
    assert fake.computer(bid).mouse == centre(field)


@pytest.mark.once
async def test_chromium_the_page_sees_real_input_events(
    chromium: tuple[FakeKernel, AsyncKernel],
) -> None:
    from playwright.async_api import async_playwright

    _, client = chromium
    computer = client.browsers.computer
    browser = await client.browsers.create(viewport=Viewport(480, 270), start_url=data_url(PAGE))
    bid = browser.session_id
    # The drag first: after the double click has selected something, dragging from there
    # would be an HTML drag and drop of the selection (no mouseup).
    await computer.drag_mouse(
        bid, path=[[400, 200], [420, 210], [440, 250]], steps_per_segment=3, step_delay_ms=1
    )
    await computer.click_mouse(bid, x=300, y=20, num_clicks=2, hold_keys=["shift"])
    await computer.click_mouse(bid, x=301, y=21, button="right")
    await computer.batch(
        bid,
        actions=[
            {"type": "click_mouse", "click_mouse": {"x": 100, "y": 180}},
            {"type": "type_text", "type_text": {"text": "ab", "delay": 1}},
            {"type": "press_key", "press_key": {"keys": ["Tab"], "hold_keys": ["shift"]}},
            {"type": "scroll", "scroll": {"x": 200, "y": 100, "delta_y": 2}},
        ],
    )
    assert browser.cdp_ws_url is not None
    async with async_playwright() as pw:
        remote = await pw.chromium.connect_over_cdp(browser.cdp_ws_url)
        page = remote.contexts[0].pages[0]
        seen = await page.evaluate("seen")
        value, scrolled = await page.evaluate("[f.value, scrollY]")
        await remote.close()
    # [type, button, detail, shift, ctrl, key, x, y]
    mouse = [s[:5] for s in seen if s[0] in ("mousedown", "dblclick", "contextmenu")][:6]
    assert mouse == [
        ["mousedown", 0, 1, False, False],  # the drag's
        ["mousedown", 0, 1, True, False],
        ["mousedown", 0, 2, True, False],
        ["dblclick", 0, 2, True, False],
        ["mousedown", 2, 1, False, False],
        ["contextmenu", 2, 0, False, False],
    ]
    first_up = next(s for s in seen if s[0] == "mouseup")
    assert first_up[6:] == [440, 250]  # the drag ended at the path's end
    keys = [(s[5], s[3]) for s in seen if s[0] == "keydown"]  # (key, shiftKey)
    assert keys == [("Shift", True), ("a", False), ("b", False), ("Shift", True), ("Tab", True)]
    assert value == "ab" and scrolled == 200
    assert [s[0] for s in seen if s[0] == "wheel"] == ["wheel"]


@pytest.mark.once
async def test_chromium_regions_scrolling_and_one_connection(
    chromium: tuple[FakeKernel, AsyncKernel],
) -> None:
    fake, client = chromium
    computer = client.browsers.computer
    browser = await client.browsers.create(viewport=Viewport(480, 270), start_url=data_url(PAGE))
    bid = browser.session_id
    region = {"x": 60, "y": 40, "width": 120, "height": 60}
    width, height, rows = pixels(await computer.capture_screenshot(bid, region=region))
    assert (width, height) == (120, 60) and find(rows, BLUE) == (0, 0, 119, 59)
    lower = {"x": 60, "y": 60, "width": 300, "height": 40}
    rows = pixels(await computer.capture_screenshot(bid, region=lower))[2]
    assert find(rows, MAGENTA) is None and find(rows, BLUE) == (0, 0, 119, 39)
    await computer.scroll(bid, x=240, y=135, delta_y=1)  # 100 px down: the field moves up
    rows = pixels(await computer.capture_screenshot(bid, region=lower))[2]
    assert find(rows, MAGENTA) == (0, 0, 299, 39) and find(rows, BLUE) is None
    screen = _FAMILIES[fake]._screens[bid]
    await computer.move_mouse(bid, x=1, y=1)
    assert _FAMILIES[fake]._screens[bid] is screen  # one connection per browser
    await client.browsers.delete(bid)
    deadline = time.monotonic() + 10
    while not screen.cdp.closed and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert screen.cdp.closed  # it ended with the browser


@pytest.mark.once
def test_official_sdk_drives_computer_use() -> None:
    kernel = pytest.importorskip("kernel")
    with FakeKernel.in_thread(backend="chromium") as fake:
        with kernel.Kernel(api_key=fake.api_key, base_url=fake.base_url, max_retries=0) as k:
            created = k.browsers.create(
                viewport={"width": 320, "height": 180}, start_url=data_url(PAGE)
            )
            bid = created.session_id
            shot = k.browsers.computer.capture_screenshot(bid).read()
            rows = pixels(shot)[2]
            x, y = centre(find(rows, BLUE))
            assert k.browsers.computer.click_mouse(bid, x=x, y=y) is None
            assert (
                pixel(pixels(k.browsers.computer.capture_screenshot(bid).read())[2], x, y) == GREEN
            )
            region = {"x": 0, "y": 0, "width": 10, "height": 20}
            assert png_size(k.browsers.computer.capture_screenshot(bid, region=region).read()) == (
                10,
                20,
            )
            position = k.browsers.computer.get_mouse_position(bid)
            assert (position.x, position.y) == (x, y)
            k.browsers.computer.write_clipboard(bid, text="from the official SDK")
            assert k.browsers.computer.read_clipboard(bid).text == "from the official SDK"
            assert k.browsers.computer.set_cursor_visibility(bid, hidden=True).ok is True
            k.browsers.computer.batch(bid, actions=[{"type": "sleep", "sleep": {"duration_ms": 1}}])
            k.browsers.computer.press_key(bid, keys=["Tab"])
            k.browsers.computer.type_text(bid, text="x")
        assert [e.operation for e in fake.computer(bid).log][-3:] == [
            "sleep",
            "press_key",
            "type_text",
        ]
