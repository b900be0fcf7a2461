"""``browsers.computer`` in the emulator: mouse, keyboard, screenshots and the clipboard.

On a browser that can be driven (the local Chromium backend), every action is real: the
emulator keeps one DevTools connection of its own per browser (opened at the first call,
ended with the browser: it is a session on the browser's own DevTools pipe) and sends CDP
input events to the browser's newest page, the one replays record; screenshots are
``Page.captureScreenshot`` PNGs of the viewport. On the in-memory backend the same
operations are deterministic stand-ins: screenshots are a PNG of the viewport's size in
one colour, and nothing waits (delays and ``sleep`` actions are recorded, not slept).

Either way the emulator keeps, per browser, a `ComputerState` (``fake.computer(id)``):
every action received (`ComputerEvent`, a batch's actions one by one), the mouse position
it was last sent to (``(0, 0)`` at first), the cursor's visibility and the clipboard.

The clipboard is the emulator's own, per browser, not the browser's: headless Chromium has
no system clipboard a page and the API could share. ``write_clipboard`` sets it,
``read_clipboard`` reads it; pressing ``ctrl+v`` types it into the page (as
``Input.insertText``: the key itself is not sent, so the page sees the text arrive but no
ctrl+v keystroke), and ``ctrl+c`` / ``ctrl+x`` copy the page's selection into it (the keys
are sent too, so cut also deletes the selection).

``drag_mouse`` performs HTML drag and drop too (a ``draggable`` element, a selection):
while it runs, the browser's drags are intercepted (``Input.setInterceptDrags``), and once
the page has started one (``Input.dragIntercepted``), the moves and the release after it
are sent as drag events (``Input.dispatchDragEvent``: enter, over, drop), each answered
only once the page has handled it, so the drop never races the release. A drag the page
does not start (a canvas, a slider) stays plain mouse events: down, moves, up.

The rules (keys, combinations, which CDP events an action is, what a drag's events become)
are pure functions (`key_for`, `parse_combo`, `plan`, `DragEvents`), tested without a
browser; `ComputerFamily` only sends, waits and records.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import attrs
from aiohttp import web

from ._bridge import viewport_of
from ._cdp import CDPClient, CDPError, DevToolsChannel
from ._sessions import Refused

if TYPE_CHECKING:
    from ._cdp_proxy import ChannelOpener
    from ._emulator import BrowserOp, FakeKernel, FamilyCall

__all__ = [
    "LOG_LIMIT",
    "WHEEL_PIXELS",
    "ComputerEvent",
    "ComputerFamily",
    "ComputerState",
    "DragEvents",
    "Key",
    "key_for",
    "parse_combo",
    "plan",
    "register",
    "solid_png",
    "state_of",
]

PREFIX = "browsers.computer."
LOG_LIMIT = 10_000
"""At most this many events are kept per browser (the oldest go first)."""
WHEEL_PIXELS = 100
"""CSS pixels scrolled per wheel unit of ``scroll``'s ``delta_x`` / ``delta_y``."""
DEFAULT_COLOUR = (255, 255, 255)

# CDP's modifier bits.
ALT, CTRL, META, SHIFT = 1, 2, 4, 8
# CDP's mouse buttons and their bits in ``buttons``.
BUTTONS = {"left": 1, "right": 2, "middle": 4, "back": 8, "forward": 16}


# -- keys (pure) --------------------------------------------------------------------------


@attrs.frozen
class Key:
    """One key as CDP's ``Input.dispatchKeyEvent`` names it.

    Attributes:
        key: The DOM ``key`` value (``"Enter"``, ``"a"``, ``"Control"``).
        code: The DOM ``code`` (``"Enter"``, ``"KeyA"``, ``"ControlLeft"``).
        key_code: Windows' virtual key code (``windowsVirtualKeyCode``).
        text: What the key types ('' for none).
        modifier: The CDP modifier bit it holds while down (0 for none).
        location: 1 left, 2 right (modifiers), 0 otherwise.
    """

    key: str
    code: str
    key_code: int
    text: str = ""
    modifier: int = 0
    location: int = 0


def _keys() -> tuple[dict[str, Key], dict[str, Key]]:
    """(named keys by lower-cased X11 keysym or DOM name, keys of single characters)."""
    named: dict[str, Key] = {}

    def add(names: str, key: Key) -> None:
        for name in names.split():
            named[name.lower()] = key

    add("Return Enter KP_Enter", Key("Enter", "Enter", 13, "\r"))
    add("Tab ISO_Left_Tab", Key("Tab", "Tab", 9))
    add("BackSpace", Key("Backspace", "Backspace", 8))
    add("Escape Esc", Key("Escape", "Escape", 27))
    add("Delete Del KP_Delete", Key("Delete", "Delete", 46))
    add("Insert KP_Insert", Key("Insert", "Insert", 45))
    add("Home KP_Home", Key("Home", "Home", 36))
    add("End KP_End", Key("End", "End", 35))
    add("Page_Up Prior PageUp KP_Prior", Key("PageUp", "PageUp", 33))
    add("Page_Down Next PageDown KP_Next", Key("PageDown", "PageDown", 34))
    add("Left ArrowLeft KP_Left", Key("ArrowLeft", "ArrowLeft", 37))
    add("Up ArrowUp KP_Up", Key("ArrowUp", "ArrowUp", 38))
    add("Right ArrowRight KP_Right", Key("ArrowRight", "ArrowRight", 39))
    add("Down ArrowDown KP_Down", Key("ArrowDown", "ArrowDown", 40))
    add("space", Key(" ", "Space", 32, " "))
    add("Caps_Lock CapsLock", Key("CapsLock", "CapsLock", 20))
    for n in range(1, 13):
        add(f"F{n}", Key(f"F{n}", f"F{n}", 111 + n))
    add("Shift Shift_L", Key("Shift", "ShiftLeft", 16, modifier=SHIFT, location=1))
    add("Shift_R", Key("Shift", "ShiftRight", 16, modifier=SHIFT, location=2))
    add("Control Ctrl Control_L", Key("Control", "ControlLeft", 17, modifier=CTRL, location=1))
    add("Control_R", Key("Control", "ControlRight", 17, modifier=CTRL, location=2))
    add("Alt Alt_L Option", Key("Alt", "AltLeft", 18, modifier=ALT, location=1))
    add("Alt_R AltGr", Key("Alt", "AltRight", 18, modifier=ALT, location=2))
    add(
        "Meta Meta_L Super Super_L Cmd Command Win",
        Key("Meta", "MetaLeft", 91, modifier=META, location=1),
    )
    add("Meta_R Super_R", Key("Meta", "MetaRight", 92, modifier=META, location=2))

    chars: dict[str, Key] = {}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        code = f"Key{letter.upper()}"
        chars[letter] = Key(letter, code, ord(letter.upper()), letter)
        chars[letter.upper()] = Key(letter.upper(), code, ord(letter.upper()), letter.upper())
    # The US layout: (plain, shifted, code, virtual key code).
    rows = [(str(d), s, f"Digit{d}", 48 + d) for d, s in enumerate(")!@#$%^&*(")]
    rows += [
        ("`", "~", "Backquote", 192),
        ("-", "_", "Minus", 189),
        ("=", "+", "Equal", 187),
        ("[", "{", "BracketLeft", 219),
        ("]", "}", "BracketRight", 221),
        ("\\", "|", "Backslash", 220),
        (";", ":", "Semicolon", 186),
        ("'", '"', "Quote", 222),
        (",", "<", "Comma", 188),
        (".", ">", "Period", 190),
        ("/", "?", "Slash", 191),
    ]
    for plain, shifted, code, key_code in rows:
        chars[plain] = Key(plain, code, key_code, plain)
        chars[shifted] = Key(shifted, code, key_code, shifted)
    chars[" "] = named["space"]
    chars["\n"] = chars["\r"] = named["return"]
    chars["\t"] = named["tab"]
    # X11 keysym names of the punctuation (xdotool's spelling).
    keysyms = {
        "exclam": "!", "at": "@", "numbersign": "#", "dollar": "$", "percent": "%",
        "asciicircum": "^", "ampersand": "&", "asterisk": "*", "parenleft": "(",
        "parenright": ")", "minus": "-", "underscore": "_", "equal": "=", "plus": "+",
        "bracketleft": "[", "braceleft": "{", "bracketright": "]", "braceright": "}",
        "backslash": "\\", "bar": "|", "semicolon": ";", "colon": ":", "apostrophe": "'",
        "quotedbl": '"', "comma": ",", "less": "<", "period": ".", "greater": ">",
        "slash": "/", "question": "?", "grave": "`", "asciitilde": "~",
    }  # fmt: skip
    for name, char in keysyms.items():
        named[name] = chars[char]
    return named, chars


_NAMED, _CHARS = _keys()


def key_for(name: str) -> Key:
    """The key an X11 keysym (``Return``, ``Control_L``, ``Page_Down``), a DOM key name
    (``Enter``, ``ArrowUp``) or a single character names; names are case-insensitive,
    characters are not (``A`` types a capital). `ValueError` for anything else."""
    if len(name) == 1 and name in _CHARS:
        return _CHARS[name]
    found = _NAMED.get(name.lower())
    if found is None:
        raise ValueError(f"unknown key {name!r}")
    return found


def parse_combo(combo: str) -> list[Key]:
    """The keys of one combination, pressed in order and released in reverse:
    ``"ctrl+shift+Tab"``, ``"Return"``, ``"ctrl++"`` (a ``+`` itself is the last part)."""
    if not combo:
        raise ValueError("an empty key")
    if combo == "+":
        parts = ["+"]
    elif combo.endswith("++"):
        parts = [*combo[:-2].split("+"), "+"]
    else:
        parts = combo.split("+")
    if any(not part for part in parts):
        raise ValueError(f"malformed key combination {combo!r}")
    return [key_for(part) for part in parts]


# -- plans: what each action sends (pure) --------------------------------------------------


@attrs.frozen
class Send:
    """One CDP command to the page (``Input.dispatchMouseEvent``, ``Input.insertText``...)."""

    method: str
    params: Mapping[str, Any]


@attrs.frozen
class Wait:
    """A pause (milliseconds) between two steps; skipped by the in-memory stand-ins."""

    ms: int


@attrs.frozen
class Copy:
    """Copy the page's selection into the emulator's clipboard (ctrl+c, ctrl+x)."""


@attrs.frozen
class Paste:
    """Type the emulator's clipboard into the page (ctrl+v)."""


@attrs.frozen
class Settle:
    """Wait until the page has drawn what the steps before did (two animation frames):
    a wheel scrolls asynchronously, and a screenshot right after must show it."""


@attrs.frozen
class DragStart:
    """From here to `DragEnd`, an HTML drag the page starts is the emulator's to drive: the
    mouse events between become drag events once it has started (`DragEvents`)."""


@attrs.frozen
class DragEnd:
    """Stop intercepting the page's drags (one started but never dropped is cancelled)."""


Step = Send | Wait | Copy | Paste | Settle | DragStart | DragEnd


@attrs.frozen
class ComputerEvent:
    """One computer action the emulator received: the operation's short name
    (``click_mouse``, ``type_text``, ``press_key``, ``capture_screenshot``, ``sleep``...)
    and its parameters as sent (a batch's actions are recorded one by one)."""

    operation: str
    params: Mapping[str, Any]


@attrs.define
class ComputerState:
    """What the emulator keeps of one browser's computer use (``fake.computer(id)``).

    Attributes:
        log: Every action received, oldest first (at most `LOG_LIMIT`).
        mouse: Where the mouse was last sent, ``(x, y)``; ``(0, 0)`` before any move.
        clipboard: The emulator's clipboard of this browser.
        cursor_hidden: As ``set_cursor_visibility`` last set it.
        screen_colour: The in-memory backend's screenshot colour, ``(r, g, b)``;
            change it to give code under test another screen.
    """

    log: collections.deque[ComputerEvent] = attrs.field(
        factory=lambda: collections.deque(maxlen=LOG_LIMIT)
    )
    mouse: tuple[int, int] = (0, 0)
    clipboard: str = ""
    cursor_hidden: bool = False
    screen_colour: tuple[int, int, int] = DEFAULT_COLOUR
    buttons: int = 0  # the CDP bits of the mouse buttons held down
    lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, repr=False, eq=False)

    def events(self, operation: str | None = None) -> list[ComputerEvent]:
        """The logged events (of one operation, e.g. ``"click_mouse"``)."""
        logged = list(self.log)  # one copy: the emulator's thread may be appending
        return [e for e in logged if operation is None or e.operation == operation]


def _modifiers(hold: Sequence[Key]) -> int:
    bits = 0
    for key in hold:
        bits |= key.modifier
    return bits


def _key_event(kind: str, key: Key, modifiers: int) -> Send:
    params: dict[str, Any] = {
        "type": kind,
        "key": key.key,
        "code": key.code,
        "windowsVirtualKeyCode": key.key_code,
        "nativeVirtualKeyCode": key.key_code,
        "modifiers": modifiers,
        "location": key.location,
    }
    # As a keyboard does: a key types only without a modifier other than Shift.
    if kind != "keyUp" and key.text and not modifiers & ~SHIFT:
        params["text"] = params["unmodifiedText"] = key.text
    elif kind == "keyDown":
        params["type"] = "rawKeyDown"
    return Send("Input.dispatchKeyEvent", params)


def _press(keys: Sequence[Key], base: int, hold_ms: int = 0) -> list[Step]:
    """Keys down in order (each adding its modifier), a hold, then up in reverse."""
    steps: list[Step] = []
    modifiers = base
    for key in keys:
        modifiers |= key.modifier
        steps.append(_key_event("keyDown", key, modifiers))
    if hold_ms:
        steps.append(Wait(hold_ms))
    for key in reversed(keys):  # a key's own modifier is off as it goes up (as in DOM)
        modifiers &= ~key.modifier | base
        steps.append(_key_event("keyUp", key, modifiers))
    return steps


def _hold(names: Sequence[str] | None, inner: Callable[[int], list[Step]]) -> list[Step]:
    """``hold_keys`` down around the steps ``inner`` makes with their modifier bits."""
    hold = [key_for(name) for name in names or ()]
    bits = _modifiers(hold)
    down: list[Step] = []
    held = 0
    for key in hold:
        held |= key.modifier
        down.append(_key_event("keyDown", key, held))
    up: list[Step] = []
    for key in reversed(hold):
        held &= ~key.modifier
        up.append(_key_event("keyUp", key, held))
    return [*down, *inner(bits), *up]


def _mouse(kind: str, x: float, y: float, state: ComputerState, **more: Any) -> Send:
    params: dict[str, Any] = {"type": kind, "x": x, "y": y, "buttons": state.buttons, **more}
    params.setdefault("button", "none")
    return Send("Input.dispatchMouseEvent", params)


def _move(state: ComputerState, x: int, y: int, modifiers: int) -> Send:
    state.mouse = (x, y)
    button = next((b for b, bit in BUTTONS.items() if state.buttons & bit), "none")
    return _mouse("mouseMoved", x, y, state, modifiers=modifiers, button=button)


def _glide(state: ComputerState, x: int, y: int, steps: int, ms: int, mods: int) -> list[Step]:
    """``steps`` moves along a straight line to (x, y), ``ms`` apart."""
    x0, y0 = state.mouse
    out: list[Step] = []
    for i in range(1, steps + 1):
        if i > 1 and ms:
            out.append(Wait(ms))
        out.append(
            _move(state, round(x0 + (x - x0) * i / steps), round(y0 + (y - y0) * i / steps), mods)
        )
    return out


def _int(body: Mapping[str, Any], name: str, default: int, low: int = 0) -> int:
    value = body.get(name)
    if value is None:
        return default
    if value < low:
        raise ValueError(f"{name} must be >= {low}")
    return int(value)


def _click(body: Mapping[str, Any], state: ComputerState) -> list[Step]:
    button = body.get("button") or "left"
    kind = body.get("click_type") or "click"
    clicks = _int(body, "num_clicks", 1, low=1)
    x, y = body["x"], body["y"]

    def inner(mods: int) -> list[Step]:
        steps: list[Step] = [_move(state, x, y, mods)]
        bit = BUTTONS[button]
        for count in range(1, (clicks if kind == "click" else 1) + 1):
            if kind in ("down", "click"):
                state.buttons |= bit
                steps.append(_press_button("mousePressed", x, y, state, button, count, mods))
            if kind in ("up", "click"):
                state.buttons &= ~bit
                steps.append(_press_button("mouseReleased", x, y, state, button, count, mods))
        return steps

    return _hold(body.get("hold_keys"), inner)


def _press_button(
    kind: str, x: int, y: int, state: ComputerState, button: str, count: int, mods: int
) -> Send:
    return _mouse(kind, x, y, state, button=button, clickCount=count, modifiers=mods)


def _move_mouse(body: Mapping[str, Any], state: ComputerState) -> list[Step]:
    x, y = body["x"], body["y"]
    duration = _int(body, "duration_ms", 0)

    def inner(mods: int) -> list[Step]:
        if not body.get("smooth") and not duration:
            return [_move(state, x, y, mods)]
        # A straight glide (Kernel's smooth path is a curve): one move per ~16 ms.
        steps = max(2, min(60, duration // 16 or 10))
        return _glide(state, x, y, steps, duration // steps, mods)

    return _hold(body.get("hold_keys"), inner)


def _drag(body: Mapping[str, Any], state: ComputerState) -> list[Step]:
    path = body["path"]
    if len(path) < 2 or any(len(p) != 2 for p in path):
        raise ValueError("path must hold at least two [x, y] points")
    button = body.get("button") or "left"
    per_segment = _int(body, "steps_per_segment", 10, low=1)
    step_ms = _int(body, "step_delay_ms", 50)
    delay = _int(body, "delay", 0)

    def inner(mods: int) -> list[Step]:
        (x, y), bit = path[0], BUTTONS[button]
        steps: list[Step] = [DragStart(), _move(state, x, y, mods)]
        state.buttons |= bit
        steps.append(_press_button("mousePressed", x, y, state, button, 1, mods))
        if delay:
            steps.append(Wait(delay))
        for px, py in path[1:]:
            steps += [Wait(step_ms), *_glide(state, px, py, per_segment, step_ms, mods)]
        state.buttons &= ~bit
        x, y = state.mouse
        steps.append(_press_button("mouseReleased", x, y, state, button, 1, mods))
        return [*steps, DragEnd()]

    return _hold(body.get("hold_keys"), inner)


def _scroll(body: Mapping[str, Any], state: ComputerState) -> list[Step]:
    x, y = body["x"], body["y"]
    dx = (body.get("delta_x") or 0) * WHEEL_PIXELS
    dy = (body.get("delta_y") or 0) * WHEEL_PIXELS

    def inner(mods: int) -> list[Step]:
        wheel = _mouse("mouseWheel", x, y, state, deltaX=dx, deltaY=dy, modifiers=mods)
        return [_move(state, x, y, mods), wheel, Settle()]

    return _hold(body.get("hold_keys"), inner)


def _type(body: Mapping[str, Any]) -> list[Step]:
    delay = _int(body, "delay", 0)
    steps: list[Step] = []
    for i, char in enumerate(body["text"]):
        if i and delay:
            steps.append(Wait(delay))
        key = _CHARS.get(char)
        if key is None:  # no key of the US layout types it: insert it as an IME would
            steps.append(Send("Input.insertText", {"text": char}))
        else:
            steps += _press([key], 0)
    return steps


def _press_keys(body: Mapping[str, Any]) -> list[Step]:
    combos = [parse_combo(k) for k in body["keys"]]
    hold_ms = _int(body, "duration", 0)

    def inner(mods: int) -> list[Step]:
        steps: list[Step] = []
        for keys in combos:
            bits = mods | _modifiers(keys)
            last = keys[-1].key.lower()
            if bits & (CTRL | META) and not bits & ALT and last in ("c", "x", "v"):
                if last == "v":  # paste the emulator's clipboard; the key is not sent
                    steps.append(Paste())
                    continue
                steps.append(Copy())  # before the keys: cut then deletes the selection
            steps += _press(keys, mods, hold_ms)
        return steps

    return _hold(body.get("hold_keys"), inner)


PLANNERS: Mapping[str, Callable[[Mapping[str, Any], ComputerState], list[Step]]] = {
    "click_mouse": _click,
    "move_mouse": _move_mouse,
    "drag_mouse": _drag,
    "scroll": _scroll,
    "type_text": lambda body, state: _type(body),
    "press_key": lambda body, state: _press_keys(body),
}


def plan(operation: str, body: Mapping[str, Any], state: ComputerState) -> list[Step]:
    """The steps of one input action (``click_mouse``, ``move_mouse``, ``drag_mouse``,
    ``scroll``, ``type_text``, ``press_key``), updating the mouse position and buttons
    held in ``state``. `ValueError` naming what is wrong (unknown key, short path...)."""
    return PLANNERS[operation](body, state)


MOUSE_EVENT = "Input.dispatchMouseEvent"
DRAG_EVENT = "Input.dispatchDragEvent"


class DragEvents:
    """What a drag's mouse events become once the page has started an HTML drag.

    Until `started` (with the ``DragData`` the browser reported), events pass as they are.
    After it, a move is a ``dragEnter`` (the first) or a ``dragOver`` at its point, and the
    release a ``dragOver`` and a ``drop`` there, with no ``mouseup`` (a page sees none
    after a real drag and drop either). `leftover` cancels a drag started but not dropped
    (the page would otherwise wait for its end and take no other drag).
    """

    def __init__(self) -> None:
        self.data: Mapping[str, Any] | None = None
        self._entered = False
        self._done = False
        self._at: Mapping[str, Any] = {"x": 0, "y": 0}

    def started(self, data: Mapping[str, Any]) -> None:
        """The page started a drag carrying ``data`` (the first report counts)."""
        if self.data is None:
            self.data = data

    def awaits_release(self, send: Send) -> bool:
        """Whether ``send`` releases the button before any drag has been reported: the
        moves may have started one the browser has yet to report, so let them settle."""
        return self.data is None and _is_mouse(send, "mouseReleased")

    def translate(self, send: Send) -> list[Send]:
        """The events to send for ``send``."""
        if self.data is None or self._done or send.method != MOUSE_EVENT:
            return [send]
        self._at = send.params
        if _is_mouse(send, "mouseMoved"):
            kind = "dragOver" if self._entered else "dragEnter"
            self._entered = True
            return [self._event(kind)]
        if _is_mouse(send, "mouseReleased"):
            self._done = True
            enter = [] if self._entered else [self._event("dragEnter")]
            return [*enter, self._event("dragOver"), self._event("drop")]
        return [send]

    def leftover(self) -> list[Send]:
        """A ``dragCancel`` for a drag started and not dropped, else nothing."""
        if self.data is None or self._done:
            return []
        self._done = True
        return [self._event("dragCancel")]

    def _event(self, kind: str) -> Send:
        at = self._at
        params = {"type": kind, "x": at["x"], "y": at["y"], "data": self.data}
        return Send(DRAG_EVENT, {**params, "modifiers": at.get("modifiers", 0)})


def _is_mouse(send: Send, kind: str) -> bool:
    return send.method == MOUSE_EVENT and send.params.get("type") == kind


# -- PNG (pure) ----------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@lru_cache(maxsize=16)
def solid_png(width: int, height: int, colour: tuple[int, int, int] = DEFAULT_COLOUR) -> bytes:
    """A ``width`` x ``height`` 8-bit RGB PNG in one colour (no filter)."""
    row = b"\0" + bytes(colour) * width
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(row * height, 6)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", pixels)
        + _chunk(b"IEND", b"")
    )


# -- the family: HTTP handlers over the rules ---------------------------------------------

COPY_SELECTION = """(() => {
  const e = document.activeElement;
  if (e && typeof e.selectionStart === "number" && typeof e.value === "string")
    return e.value.substring(e.selectionStart, e.selectionEnd);
  return String(document.getSelection() || "");
})()"""


TWO_FRAMES = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


class _Closing:
    """A DevTools channel that closes itself once the browser's side has ended."""

    def __init__(self, channel: DevToolsChannel) -> None:
        self._channel = channel

    async def send(self, message: dict[str, Any]) -> None:
        await self._channel.send(message)

    async def receive(self) -> dict[str, Any] | None:
        message = await self._channel.receive()
        if message is None:
            await self._channel.close()
        return message

    async def close(self) -> None:
        await self._channel.close()


class _Screen:
    """The emulator's own DevTools connection to one browser: its pages, newest last."""

    def __init__(self, cdp: CDPClient) -> None:
        self.cdp = cdp
        self._pages: dict[str, str] = {}  # targetId -> session, in attach order
        self._some = asyncio.Event()

    @classmethod
    async def open(cls, opener: ChannelOpener) -> _Screen:
        cdp = CDPClient(_Closing(await opener()))
        screen = cls(cdp)
        cdp.on("Target.attachedToTarget", screen._attached)
        cdp.on("Target.detachedFromTarget", screen._detached)
        try:
            params = {"autoAttach": True, "waitForDebuggerOnStart": False, "flatten": True}
            await cdp.send("Target.setAutoAttach", params)
        except BaseException:
            await cdp.close()
            raise
        return screen

    async def page(self) -> str:
        """The session of the newest open page (as recordings follow)."""
        if not self._pages:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._some.wait(), 5.0)
        if not self._pages:
            raise Refused(409, "conflict", "the browser has no open page")
        return next(reversed(self._pages.values()))

    def _attached(self, params: dict[str, Any], _: str | None) -> None:
        info = params.get("targetInfo", {})
        if info.get("type") == "page":
            self._pages[info["targetId"]] = params["sessionId"]
            self._some.set()

    def _detached(self, params: dict[str, Any], _: str | None) -> None:
        target = params.get("targetId")
        if target is not None:
            self._pages.pop(target, None)
        if not self._pages:
            self._some.clear()


_FAMILIES: WeakKeyDictionary[FakeKernel, ComputerFamily] = WeakKeyDictionary()


def state_of(fake: FakeKernel, browser_id: str) -> ComputerState:
    """The `ComputerState` of a browser (by ID, or by name while it is active)."""
    return _FAMILIES[fake].state(browser_id)


class ComputerFamily:
    """The ``browsers.computer`` operations of one emulator."""

    def __init__(self, fake: FakeKernel) -> None:
        self._fake = fake
        self._states: dict[str, ComputerState] = {}
        self._screens: dict[str, _Screen] = {}

    def handlers(self) -> dict[str, BrowserOp]:
        """Each operation's handler by its official name."""
        ops: dict[str, BrowserOp] = {
            "capture_screenshot": self._screenshot,
            "get_mouse_position": self._mouse_position,
            "set_cursor_visibility": self._cursor,
            "read_clipboard": self._read_clipboard,
            "write_clipboard": self._write_clipboard,
            "batch": self._batch,
        }
        for name in PLANNERS:
            ops[name] = self._input(name)
        return {PREFIX + name: op for name, op in ops.items()}

    def state(self, browser_id: str) -> ComputerState:
        """A browser's state (made empty for a browser with no call yet)."""
        session_id = self._fake._browser_id(browser_id) or browser_id
        with self._fake._lock:
            if session_id not in self._fake._sessions.sessions:
                raise KeyError(f"no browser session {browser_id!r}")
        return self._states.setdefault(session_id, ComputerState())

    # -- handlers --

    def _input(self, name: str) -> BrowserOp:
        async def handler(call: FamilyCall) -> web.StreamResponse:
            await self._perform(call.browser_id, [(name, call.body)])
            return web.Response(status=204)

        return handler

    async def _batch(self, call: FamilyCall) -> web.StreamResponse:
        actions: list[tuple[str, Mapping[str, Any]]] = []
        for action in call.body["actions"]:
            kind = action["type"]
            actions.append((kind, action.get(kind)))
        await self._perform(call.browser_id, actions, batch=True)
        return web.Response(status=204)

    async def _screenshot(self, call: FamilyCall) -> web.StreamResponse:
        state = self._state(call)
        region = (call.body or {}).get("region")
        viewport = self._viewport(call.browser_id)
        if region is not None:
            _check_region(region, viewport)
        async with state.lock:
            state.log.append(ComputerEvent("capture_screenshot", dict(call.body or {})))
            screen = await self._screen(call.browser_id)
            if screen is None:
                width, height = viewport
                if region is not None:
                    width, height = region["width"], region["height"]
                png = solid_png(width, height, state.screen_colour)
            else:
                png = await _capture(screen, region)
        return web.Response(body=png, content_type="image/png")

    async def _mouse_position(self, call: FamilyCall) -> web.StreamResponse:
        state = self._state(call)
        state.log.append(ComputerEvent("get_mouse_position", {}))
        x, y = state.mouse
        return web.json_response({"x": x, "y": y})

    async def _cursor(self, call: FamilyCall) -> web.StreamResponse:
        await self._perform(call.browser_id, [("set_cursor", call.body)])
        return web.json_response({"ok": True})

    async def _read_clipboard(self, call: FamilyCall) -> web.StreamResponse:
        state = self._state(call)
        state.log.append(ComputerEvent("read_clipboard", {}))
        return web.json_response({"text": state.clipboard})

    async def _write_clipboard(self, call: FamilyCall) -> web.StreamResponse:
        state = self._state(call)
        state.log.append(ComputerEvent("write_clipboard", dict(call.body)))
        state.clipboard = call.body["text"]
        return web.Response(status=204)

    # -- doing --

    def _state(self, call: FamilyCall) -> ComputerState:
        return self._states.setdefault(call.browser_id, ComputerState())

    def _viewport(self, browser_id: str) -> tuple[int, int]:
        with self._fake._lock:
            viewport = viewport_of(self._fake._sessions.sessions[browser_id])
        return viewport.width, viewport.height

    async def _perform(
        self, browser_id: str, actions: Sequence[tuple[str, Any]], *, batch: bool = False
    ) -> None:
        """Run actions in order, stopping at the first that fails (a 400 naming it)."""
        state = self._states.setdefault(browser_id, ComputerState())
        async with state.lock:
            screen = await self._screen(browser_id)
            for index, (name, params) in enumerate(actions):
                where = f"actions[{index}]: " if batch else ""
                if params is None:
                    raise Refused(400, "bad_request", f"{where}{name} needs its parameters")
                state.log.append(ComputerEvent(_logged(name), dict(params)))
                if name == "sleep":
                    steps: list[Step] = [Wait(params["duration_ms"])]
                elif name == "set_cursor":
                    state.cursor_hidden = params["hidden"]
                    continue  # a headless screen shows no cursor: nothing to draw
                else:
                    try:
                        steps = plan(name, params, state)
                    except ValueError as exc:
                        raise Refused(400, "bad_request", f"{where}{name}: {exc}") from None
                if screen is not None:
                    await _run(screen, steps, state)

    async def _screen(self, browser_id: str) -> _Screen | None:
        """The browser's DevTools connection for computer use (opened at first use;
        ``None`` when it cannot be driven: the in-memory stand-ins). Each call counts as
        activity for the browser's inactivity timeout."""
        opener = self._fake._bridge.devtools_for(browser_id)
        if opener is None:
            return None
        screen = self._screens.get(browser_id)
        if screen is not None and not screen.cdp.closed:
            return screen
        for bid, other in list(self._screens.items()):  # forget those of ended browsers
            if other.cdp.closed:
                del self._screens[bid]
        try:
            screen = await _Screen.open(opener)
        except (CDPError, OSError) as exc:
            raise Refused(500, "internal_error", f"the local browser failed: {exc}") from None
        self._screens[browser_id] = screen
        return screen


def _logged(name: str) -> str:
    return "set_cursor_visibility" if name == "set_cursor" else name


def _check_region(region: Mapping[str, int], viewport: tuple[int, int]) -> None:
    x, y, w, h = region["x"], region["y"], region["width"], region["height"]
    width, height = viewport
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise Refused(
            400,
            "bad_request",
            f"region {w}x{h} at ({x}, {y}) is not within the {width}x{height} screen",
        )


class _Dragging:
    """One ``drag_mouse`` on a page: intercepts the page's drags while it runs and sends
    what `DragEvents` makes of each mouse event."""

    def __init__(self, cdp: CDPClient, page: str) -> None:
        self.events = DragEvents()
        self._cdp = cdp
        self._page = page
        self._unsubscribe = cdp.on("Input.dragIntercepted", self._intercepted)

    def _intercepted(self, params: dict[str, Any], session: str | None) -> None:
        if session == self._page and isinstance(params.get("data"), dict):
            self.events.started(params["data"])

    async def begin(self) -> None:
        with contextlib.suppress(CDPError):  # a Chromium without it: plain mouse events
            await self._send(Send("Input.setInterceptDrags", {"enabled": True}))

    async def send(self, step: Send) -> None:
        if self.events.awaits_release(step):
            await self._settle()
        for out in self.events.translate(step):
            await self._send(out)

    async def end(self) -> None:
        try:
            if self.events.data is None:
                await self._settle()  # a drag the release itself let through
            for out in self.events.leftover():
                await self._send(out)
        finally:
            self._unsubscribe()
            with contextlib.suppress(CDPError, asyncio.TimeoutError):
                await self._send(Send("Input.setInterceptDrags", {"enabled": False}))

    async def _settle(self) -> None:
        # A round trip to the page: a drag its last mouse event started has been reported
        # by then (the page asks the browser to drag before it answers; measured, without
        # it a report came a few ms after the move's answer in 2 of 15 drags).
        with contextlib.suppress(asyncio.TimeoutError):  # a page stuck in a dialog
            params = {"expression": "0"}
            await self._cdp.send("Runtime.evaluate", params, session_id=self._page, timeout=2)

    async def _send(self, step: Send) -> None:
        await self._cdp.send(step.method, dict(step.params), session_id=self._page)


async def _run(screen: _Screen, steps: Sequence[Step], state: ComputerState) -> None:
    page = await screen.page()
    dragging: _Dragging | None = None
    try:
        for step in steps:
            if isinstance(step, Send):
                if dragging is not None:
                    await dragging.send(step)
                else:
                    await screen.cdp.send(step.method, dict(step.params), session_id=page)
            elif isinstance(step, DragStart):
                dragging = _Dragging(screen.cdp, page)
                await dragging.begin()
            elif isinstance(step, DragEnd):
                if dragging is not None:
                    ending, dragging = dragging, None
                    await ending.end()
            elif isinstance(step, Wait):
                await asyncio.sleep(step.ms / 1000)
            elif isinstance(step, Settle):
                params = {"expression": TWO_FRAMES, "awaitPromise": True}
                # A page that draws no frames (hidden, frozen) must not hold the call up.
                with contextlib.suppress(asyncio.TimeoutError):
                    await screen.cdp.send("Runtime.evaluate", params, session_id=page, timeout=2)
            elif isinstance(step, Paste):
                if state.clipboard:
                    await screen.cdp.send(
                        "Input.insertText", {"text": state.clipboard}, session_id=page
                    )
            else:
                params = {"expression": COPY_SELECTION, "returnByValue": True}
                result = await screen.cdp.send("Runtime.evaluate", params, session_id=page)
                value = result.get("result", {}).get("value")
                if isinstance(value, str) and value:
                    state.clipboard = value
    except CDPError as exc:
        raise Refused(500, "internal_error", f"the local browser failed: {exc}") from None
    finally:
        if dragging is not None:  # failed mid-drag: leave the page able to drag again
            with contextlib.suppress(CDPError, asyncio.TimeoutError):
                await dragging.end()


async def _capture(screen: _Screen, region: Mapping[str, int] | None) -> bytes:
    import base64

    page = await screen.page()
    params: dict[str, Any] = {"format": "png"}
    try:
        if region is not None:
            # The clip is in page coordinates: add the scroll offset to the screen's.
            metrics = await screen.cdp.send("Page.getLayoutMetrics", session_id=page)
            view = metrics.get("cssVisualViewport", {})
            params["clip"] = {
                "x": region["x"] + view.get("pageX", 0),
                "y": region["y"] + view.get("pageY", 0),
                "width": region["width"],
                "height": region["height"],
                "scale": 1,
            }
        result = await screen.cdp.send("Page.captureScreenshot", params, session_id=page)
    except CDPError as exc:
        raise Refused(500, "internal_error", f"the local browser failed: {exc}") from None
    return base64.b64decode(result["data"])


def register(fake: FakeKernel) -> Mapping[str, BrowserOp]:
    """The ``browsers.computer`` handlers of ``fake`` (its state: ``fake.computer(id)``)."""
    family = ComputerFamily(fake)
    _FAMILIES[fake] = family
    return family.handlers()
