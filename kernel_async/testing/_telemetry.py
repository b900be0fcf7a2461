"""``browsers.telemetry.events`` and ``browsers.telemetry.stream`` in the emulator.

A browser session captures telemetry only when it was created (or updated) with a
``telemetry`` setting that turns capture on, as on Kernel: ``enabled: true`` captures the
default, operational categories (control, connection, system, captcha); the CDP categories
(console, network, page, interaction), screenshot and platform are opt-in
(``browser: {"console": {"enabled": true}}``). Without capture, ``events`` answers an empty
list and ``stream`` opens and delivers nothing until the session ends.

What is captured, per backend:

- local Chromium: real CDP events of the browser's pages, watched from before the start URL
  opens on a DevTools session of the emulator's own — console calls and uncaught
  exceptions, navigations, DOMContentLoaded and load, tabs opened, network requests,
  responses and failures;
- in memory: a ``page_navigation`` to the start URL when the session is created with one
  (and the page category on); tests add events with ``fake.telemetry(browser_id, {...})``;
- both: an ``api_call`` (control) for each computer-use or curl call the emulator answers
  on the browser, and a ``platform_api_call`` (platform) for each files, processes, logs or
  replays call, as Kernel's in-VM API reports the calls it handles (`api_call_event`).

Each captured event gets the next ``seq`` of its session (also its SSE ``id:``), and is
kept in a bounded `EventLog`; ``events`` pages through it with an opaque cursor,
``stream`` follows it (resuming after ``Last-Event-ID``), and a ``drop_after`` fault cuts
a stream. The rules (configuration, time windows, pages, the CDP mapping) are pure
functions and classes here; the I/O is the watcher and the two handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import timezone
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from ._cdp import CDPClient, CDPError
from ._events import Event, EventLog, IdOnly, serve_sse
from ._sessions import Refused, new_id
from ._spec import spec
from ._validate import check, parse_datetime

if TYPE_CHECKING:
    from ._cdp_proxy import ChannelOpener
    from ._emulator import BrowserOp, FakeKernel, FamilyCall

__all__ = [
    "CATEGORIES",
    "CDP_CATEGORIES",
    "DEFAULT_CATEGORIES",
    "EVENT_TYPES",
    "CdpTelemetry",
    "Capture",
    "Telemetry",
    "api_call_category",
    "api_call_event",
    "complete_event",
    "frame_of",
    "page_of",
    "parse_when",
    "register",
    "resolve_capture",
]

CATEGORIES: tuple[str, ...] = tuple(
    spec()["components"]["schemas"]["BrowserTelemetryCategoriesConfig"]["properties"]
)
"""The categories a session's ``telemetry.browser`` setting names (``monitor`` is not one:
it flows whenever a CDP category is captured)."""
DEFAULT_CATEGORIES = frozenset({"control", "connection", "system", "captcha"})
"""Captured whenever telemetry is on, unless turned off one by one."""
CDP_CATEGORIES = frozenset({"console", "network", "page", "interaction"})

KEEP_EVENTS = 10_000  # per session, the newest
KEEP_BYTES = 16 << 20  # and at most this much of their JSON
DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
DEFAULT_SINCE_US = 5 * 60 * 1_000_000  # the window starts 5 minutes ago by default
MAX_TEXT = 4096  # a console argument or text longer than this is cut (``truncated``)


def _event_schemas() -> dict[str, tuple[str, dict[str, Any]]]:
    """Each event type of the API -> (its category, a reference to its schema)."""
    schemas = spec()["components"]["schemas"]
    members = schemas["TelemetryEventsResponse"]["properties"]["event"]["anyOf"]
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for member in members:
        shape = schemas[member["$ref"].rpartition("/")[2]]["properties"]
        found[shape["type"]["enum"][0]] = (shape["category"]["enum"][0], dict(member))
    return found


EVENT_TYPES: Mapping[str, tuple[str, dict[str, Any]]] = _event_schemas()
"""Event type (``console_log``...) -> (category, ``$ref`` of its schema), from the spec."""


def now_us() -> int:
    """Now, in Unix microseconds (the events' ``ts``)."""
    return time.time_ns() // 1000


# -- which categories a session captures ------------------------------------------------


@attrs.frozen
class Capture:
    """What a session captures: ``categories`` (empty: capture is off), whether events
    are ``stored`` for ``events`` queries (``telemetry.storage.enabled``), and the
    ``control.cdp.excluded_methods`` list once one was sent (``excluded``; kept, not acted
    on: the emulator reports no ``cdp_command`` events)."""

    categories: frozenset[str] = frozenset()
    stored: bool = True
    excluded: tuple[str, ...] | None = None

    @property
    def on(self) -> bool:
        return bool(self.categories)

    def captures(self, category: str) -> bool:
        """Whether events of ``category`` are captured (``monitor`` with any CDP one)."""
        if category == "monitor":
            return bool(self.categories & CDP_CATEGORIES)
        return category in self.categories

    def as_json(self) -> dict[str, Any] | None:
        """The active configuration as a Browser answer shows it (``telemetry``, a
        ``BrowserTelemetryConfig``): every category with its flag, and storage; None
        while capture is off (the API then has no active configuration). ``export`` is
        left out, as the API leaves it out when the export state is unknown: the emulator
        exports nothing."""
        if not self.on:
            return None
        browser: dict[str, Any] = {c: {"enabled": c in self.categories} for c in CATEGORIES}
        if self.excluded is not None:
            browser["control"]["cdp"] = {"excluded_methods": list(self.excluded)}
        return {"browser": browser, "storage": {"enabled": self.stored}}


OFF = Capture()


def resolve_capture(
    current: Capture | None, requested: Any, where: str = "body.telemetry"
) -> Capture:
    """The capture after a create (``current`` None) or an update asks for ``requested``
    (the ``telemetry`` body field); `Refused` (400) naming the field for a setting the API
    refuses.

    As the API documents it: omitted, null or ``{}`` starts nothing on create and leaves an
    update unchanged; ``enabled: true`` is the default set plus any ``browser`` settings
    (on update: replacing the current selection); ``browser`` alone layers onto the
    default set on create and merges onto the current selection on update (the default
    set when none is active); ``enabled: false`` stops (it cannot be combined with
    ``browser``); a selection left empty captures nothing.
    """
    base = current if current is not None else OFF
    schema = {"$ref": "#/components/schemas/BrowserCreateParamsTelemetry"}
    if requested is not None:
        problems = check(schema, requested, where)
        if problems:
            raise Refused(400, "bad_request", "invalid parameters", [str(p) for p in problems])
    if not requested:
        return base
    enabled = requested.get("enabled")
    browser: Mapping[str, Any] = requested.get("browser") or {}
    storage = requested.get("storage") or {}
    stored = storage.get("enabled", base.stored)
    # The exclusion list merges on its own: a setting without one keeps the current one.
    cdp = (browser.get("control") or {}).get("cdp") or {}
    listed = cdp.get("excluded_methods")
    excluded = tuple(listed) if listed is not None else base.excluded
    if enabled is False:
        if browser:
            raise Refused(
                400,
                "bad_request",
                f"{where}: enabled=false cannot be combined with browser category settings",
            )
        return Capture(frozenset(), stored, excluded)
    if enabled is None and not browser:  # only storage or export: capture as it was
        return Capture(base.categories, stored, excluded)
    # Afresh from the default set, or merged onto the current selection.
    chosen = set(DEFAULT_CATEGORIES if enabled is True or not base.on else base.categories)
    for name in CATEGORIES:
        flag = (browser.get(name) or {}).get("enabled")
        if flag is True:
            chosen.add(name)
        elif flag is False:
            chosen.discard(name)
    return Capture(frozenset(chosen), stored, excluded)


# -- events offered by tests ----------------------------------------------------------


def complete_event(event: Mapping[str, Any], ts: int | None = None) -> dict[str, Any]:
    """A test's event made whole and checked against the API's schema for its ``type``:
    ``category``, ``ts`` (now) and ``source`` (``cdp`` for the CDP categories, else
    ``kernel_api``) are filled in when missing. `ValueError` names the first field that
    does not fit."""
    if not isinstance(event, Mapping):
        raise ValueError(f"a telemetry event is a dict, got {type(event).__name__}")
    kind = event.get("type")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        raise ValueError(
            f"event.type: {kind!r} is not a telemetry event type of the API "
            "(e.g. 'console_log', 'page_navigation', 'network_request')"
        )
    category, schema = EVENT_TYPES[kind]
    full = dict(event)
    full.setdefault("category", category)
    full.setdefault("ts", now_us() if ts is None else ts)
    full.setdefault("source", {"kind": "cdp" if category in CDP_CATEGORIES else "kernel_api"})
    problems = check(schema, full, "event")
    if problems:
        raise ValueError(f"telemetry event {kind!r}: " + "; ".join(map(str, problems)))
    return full


# -- the calls the emulator answers on a browser -----------------------------------------

# Each browser operation the emulator answers that Kernel hands to the browser VM's own
# API, with the name that API gives its handler (its operationId, capitalised) and the
# category its calls are reported in there: computer use drives the browser (control);
# files, processes, logs and recordings manage the VM (platform). curl is a call the
# browser itself makes (the official SDK routes it straight to the VM, and its
# browser_telemetry example waits for its events with only the default set on, so it is
# control: an ``api_call``); the VM's own name for its handler is not published, so it
# is named from its route (``/curl``) as the others are: ``Curl``.
_VM_HANDLERS: dict[str, tuple[str, str]] = {
    "browsers.curl": ("control", "Curl"),
    "browsers.computer.batch": ("control", "BatchComputerAction"),
    "browsers.computer.capture_screenshot": ("control", "TakeScreenshot"),
    "browsers.computer.click_mouse": ("control", "ClickMouse"),
    "browsers.computer.drag_mouse": ("control", "DragMouse"),
    "browsers.computer.get_mouse_position": ("control", "GetMousePosition"),
    "browsers.computer.move_mouse": ("control", "MoveMouse"),
    "browsers.computer.press_key": ("control", "PressKey"),
    "browsers.computer.read_clipboard": ("control", "ReadClipboard"),
    "browsers.computer.scroll": ("control", "Scroll"),
    "browsers.computer.set_cursor_visibility": ("control", "SetCursor"),
    "browsers.computer.type_text": ("control", "TypeText"),
    "browsers.computer.write_clipboard": ("control", "WriteClipboard"),
    "browsers.fs.create_directory": ("platform", "CreateDirectory"),
    "browsers.fs.delete_directory": ("platform", "DeleteDirectory"),
    "browsers.fs.delete_file": ("platform", "DeleteFile"),
    "browsers.fs.download_dir_zip": ("platform", "DownloadDirZip"),
    "browsers.fs.file_info": ("platform", "FileInfo"),
    "browsers.fs.list_files": ("platform", "ListFiles"),
    "browsers.fs.move": ("platform", "MovePath"),
    "browsers.fs.read_file": ("platform", "ReadFile"),
    "browsers.fs.set_file_permissions": ("platform", "SetFilePermissions"),
    "browsers.fs.upload": ("platform", "UploadFiles"),
    "browsers.fs.upload_zip": ("platform", "UploadZip"),
    "browsers.fs.watch.events": ("platform", "StreamFsEvents"),
    "browsers.fs.watch.start": ("platform", "StartFsWatch"),
    "browsers.fs.watch.stop": ("platform", "StopFsWatch"),
    "browsers.fs.write_file": ("platform", "WriteFile"),
    "browsers.logs.stream": ("platform", "LogsStream"),
    "browsers.process.exec": ("platform", "ProcessExec"),
    "browsers.process.kill": ("platform", "ProcessKill"),
    "browsers.process.resize": ("platform", "ProcessResize"),
    "browsers.process.spawn": ("platform", "ProcessSpawn"),
    "browsers.process.status": ("platform", "ProcessStatus"),
    "browsers.process.stdin": ("platform", "ProcessStdin"),
    "browsers.process.stdout_stream": ("platform", "ProcessStdoutStream"),
    "browsers.replays.download": ("platform", "DownloadRecording"),
    "browsers.replays.list": ("platform", "ListRecorders"),
    "browsers.replays.start": ("platform", "StartRecording"),
    "browsers.replays.stop": ("platform", "StopRecording"),
}
_CALL_TYPES = {"control": "api_call", "platform": "platform_api_call"}
# The emulator's own names of the replay operations (`FakeKernel.requests`).
_SHORT_NAMES = {n: f"browsers.replays.{n}" for n in ("start", "list", "stop", "download")}


def api_call_category(operation: str | None) -> str | None:
    """The category a call of ``operation`` (an official name, or the emulator's short
    name of a replay operation) is reported in; None for one that reports nothing."""
    if operation is None:
        return None
    found = _VM_HANDLERS.get(_SHORT_NAMES.get(operation, operation))
    return found[0] if found is not None else None


def api_call_event(
    operation: str, status: int, seconds: float, request_id: str, ts: int | None = None
) -> dict[str, Any] | None:
    """The event reporting one answered call of ``operation`` (see `api_call_category`),
    with what the emulator knows truthfully: the VM handler's name, the status answered,
    how long the emulator took, the request's id; None for an operation without one."""
    found = _VM_HANDLERS.get(_SHORT_NAMES.get(operation, operation))
    if found is None:
        return None
    category, handler = found
    data = {
        "duration_ms": round(seconds * 1000, 3),
        "operation_id": handler,
        "request_id": request_id,
        "status": status,
    }
    return complete_event({"type": _CALL_TYPES[category], "data": data}, ts)


# -- the query: time window and pages ---------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_US = {"ns": 0.001, "us": 1, "µs": 1, "ms": 1000, "s": 1e6, "m": 60e6, "h": 3600e6}


def parse_when(text: str, now: int, where: str) -> int:
    """A ``since``/``until`` value in Unix microseconds: an RFC 3339 timestamp, or a
    duration such as ``5m`` or ``1h30m`` meaning that long before ``now``; `Refused`
    (400) naming ``where`` otherwise."""
    stamp = parse_datetime(text)
    if stamp is not None:
        return int(stamp.astimezone(timezone.utc).timestamp() * 1_000_000)
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_US[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise Refused(
            400,
            "bad_request",
            f"{where}: expected an RFC 3339 timestamp or a duration such as 5m, got {text!r}",
        )
    return now - int(total)


def page_of(
    events: Sequence[Event],
    *,
    limit: int = DEFAULT_LIMIT,
    offset: int | None = None,
    order: str = "asc",
    since: int | None = None,
    until: int | None = None,
    categories: Collection[str] = (),
    types: Collection[str] = (),
) -> tuple[list[Event], int, bool]:
    """One page of ``events`` (oldest first, as kept): (its events, the next cursor or 0,
    whether more follow).

    The cursor (``offset``) is a boundary of ours, not an event's seq: ascending pages
    read the events from it on, descending pages those before it. ``since`` (ignored
    with a cursor) and ``until`` (exclusive) bound the window, by ``ts``. A page scans
    ``limit`` events of the window and then filters them by category and type, so a
    filtered page may be empty while more follow, as the API documents.
    """
    window = [
        e
        for e in events
        if (until is None or e.data["ts"] < until)
        and (offset is not None or since is None or e.data["ts"] >= since)
    ]
    if order == "desc":
        if offset is not None:
            window = [e for e in window if e.id < offset]
        scanned = window[-limit:][::-1]
        more = len(window) > len(scanned)
        following = scanned[-1].id if more else 0
    else:
        if offset is not None:
            window = [e for e in window if e.id >= offset]
        scanned = window[:limit]
        more = len(window) > len(scanned)
        following = window[len(scanned)].id if more else 0
    kept = [
        e
        for e in scanned
        if (not categories or e.data["category"] in categories)
        and (not types or e.data["type"] in types)
    ]
    return kept, following, more


def envelope(event: Event) -> dict[str, Any]:
    """An event as ``events`` and ``stream`` answer it: ``{"seq", "event"}``."""
    return {"seq": event.id, "event": event.data}


def frame_of(event: Event, types: Collection[str], newest: int) -> Event | IdOnly | None:
    """What a stream filtered by ``types`` (none: every type) sends for a captured
    ``event`` while ``newest`` is the session's newest seq: the event's envelope; for one
    filtered out, an id-only frame once the stream has caught up with it (nothing newer
    waiting), so that the client's ``Last-Event-ID`` moves past the skipped events, as
    the API sends one (the API waits for its next keep-alive, or 15 s while skipped
    events keep coming; the emulator does not wait); otherwise nothing."""
    if not types or event.data["type"] in types:
        return Event(event.id, envelope(event))
    return IdOnly(event.id) if event.id >= newest else None


# -- CDP events -> the API's events -----------------------------------------------------


def _text(value: str) -> tuple[str, bool]:
    return (value[:MAX_TEXT], True) if len(value) > MAX_TEXT else (value, False)


def _remote(obj: Mapping[str, Any]) -> str:
    """A CDP ``RemoteObject`` coerced to a string, as the console shows it."""
    if "value" in obj:
        value = obj["value"]
        return value if isinstance(value, str) else json.dumps(value)
    for key in ("unserializableValue", "description"):
        if isinstance(obj.get(key), str):
            return str(obj[key])
    return str(obj.get("type", ""))


def _stack(trace: Any) -> dict[str, Any] | None:
    """A CDP ``StackTrace`` in the API's shape (CDP's own field names)."""
    if not isinstance(trace, Mapping):
        return None
    frames = [
        {k: f.get(k, "" if k in ("functionName", "scriptId", "url") else 0) for k in _FRAME}
        for f in trace.get("callFrames", ())
        if isinstance(f, Mapping)
    ]
    out: dict[str, Any] = {"callFrames": frames}
    if isinstance(trace.get("description"), str):
        out["description"] = trace["description"]
    parent = _stack(trace.get("parent"))
    if parent is not None:
        out["parent"] = parent
    return out


_FRAME = ("columnNumber", "functionName", "lineNumber", "scriptId", "url")


@attrs.define
class _Page:
    target_id: str
    url: str | None = None
    main_frame: str | None = None
    nav_seq: int = 0


class CdpTelemetry:
    """The CDP events of one browser's pages turned into the API's telemetry events.

    No I/O: `attached` and `detached` follow the page sessions, `event` maps one CDP
    event of a page session to the API events it makes (none, or one), stamped ``ts``.
    A response is reported once its body has arrived (``Network.loadingFinished``), with
    what ``Network.responseReceived`` said of it.
    """

    def __init__(self) -> None:
        self._pages: dict[str, _Page] = {}  # CDP session -> its page
        self._requests: dict[tuple[str, str], dict[str, Any]] = {}  # (session, id) -> facts
        self._responses: dict[tuple[str, str], dict[str, Any]] = {}

    def attached(self, session: str, target_id: str, url: str | None) -> None:
        """A page session began (its current URL, if any)."""
        self._pages[session] = _Page(target_id, url or None)

    def detached(self, session: str) -> None:
        """A page session ended."""
        self._pages.pop(session, None)
        for table in (self._requests, self._responses):
            for key in [k for k in table if k[0] == session]:
                del table[key]

    def tab_opened(self, info: Mapping[str, Any], ts: int) -> dict[str, Any]:
        """The ``page_tab_opened`` event of a page target opened while watched."""
        data = {
            "target_id": info.get("targetId"),
            "target_type": "page",
            "url": info.get("url") or None,
            "title": info.get("title") or None,
            "opener_id": info.get("openerId"),
        }
        source = {"kind": "cdp", "event": "Target.attachedToTarget"}
        return self._make("page_tab_opened", ts, source, data)

    def event(
        self, method: str, params: Mapping[str, Any], session: str | None, ts: int
    ) -> dict[str, Any] | None:
        """The API event a page's CDP event makes, or None."""
        page = self._pages.get(session or "")
        if page is None or session is None:
            return None
        source = {
            "kind": "cdp",
            "event": method,
            "metadata": {"target_id": page.target_id, "session_id": session},
        }
        context: dict[str, Any] = {
            "target_id": page.target_id,
            "target_type": "page",
            "session_id": session,
            "url": page.url,
            "frame_id": page.main_frame,
            "nav_seq": page.nav_seq or None,
        }
        handler = _MAPPERS.get(method)
        if handler is None:
            return None
        made = handler(self, page, session, params, context)
        if made is None:
            return None
        kind, data = made
        return self._make(kind, ts, source, data)

    @staticmethod
    def _make(
        kind: str, ts: int, source: Mapping[str, Any], data: Mapping[str, Any]
    ) -> dict[str, Any]:
        category = EVENT_TYPES[kind][0]
        cut = bool(data.pop("_truncated", False)) if isinstance(data, dict) else False
        event: dict[str, Any] = {
            "type": kind,
            "category": category,
            "ts": ts,
            "source": dict(source),
            "data": {k: v for k, v in data.items() if v is not None},
        }
        if cut:
            event["truncated"] = True
        return event

    # Each mapper: (kind, data) or None.

    def _console(
        self, page: _Page, session: str, params: Mapping[str, Any], context: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        cut = False
        args = []
        for arg in params.get("args", ()):
            text, short = _text(_remote(arg))
            args.append(text)
            cut = cut or short
        level = str(params.get("type", "log"))
        data = {
            **context,
            "text": args[0] if args else "",
            "args": args,
            "level": level,
            "stack_trace": _stack(params.get("stackTrace")),
            "_truncated": cut,
        }
        return ("console_error" if level == "error" else "console_log"), data

    def _exception(
        self, page: _Page, session: str, params: Mapping[str, Any], context: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        details = params.get("exceptionDetails", {})
        thrown = details.get("exception") or {}
        message = _remote(thrown).split("\n", 1)[0] if thrown else ""
        prefix = str(details.get("text") or "Uncaught")
        text, cut = _text(f"{prefix} {message}" if message else prefix)
        data = {
            **context,
            "text": text,
            "line": details.get("lineNumber"),
            "column": details.get("columnNumber"),
            "source_url": details.get("url") or None,
            "stack_trace": _stack(details.get("stackTrace")),
            "_truncated": cut,
        }
        return "console_error", data

    def _navigated(
        self, page: _Page, session: str, params: Mapping[str, Any], context: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        frame = params.get("frame", {})
        parent = frame.get("parentId")
        if parent is None:  # the page's own document: a new navigation epoch
            page.url = frame.get("url")
            page.main_frame = frame.get("id")
            page.nav_seq += 1
        data = {
            "target_id": page.target_id,
            "target_type": "page",
            "session_id": session,
            "frame_id": frame.get("id"),
            "loader_id": frame.get("loaderId"),
            "parent_frame_id": parent,
            "url": frame.get("url"),
        }
        return "page_navigation", data

    def _request(
        self, page: _Page, session: str, params: Mapping[str, Any], context: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        request = params.get("request", {})
        request_id = str(params.get("requestId"))
        redirected = params.get("redirectResponse")
        facts = {
            "url": request.get("url"),
            "method": request.get("method"),
            "resource_type": params.get("type"),
            "frame_id": params.get("frameId"),
            "loader_id": params.get("loaderId"),
        }
        self._requests[(session, request_id)] = facts
        data = {
            **context,
            **facts,
            "request_id": request_id,
            "headers": request.get("headers"),
            "post_data": request.get("postData"),
            "initiator_type": (params.get("initiator") or {}).get("type"),
            "document_url": params.get("documentURL"),
            "is_redirect": redirected is not None,
            "redirect_url": redirected.get("url") if isinstance(redirected, Mapping) else None,
        }
        return "network_request", data

    def _response(
        self, page: _Page, session: str, params: Mapping[str, Any], context: dict[str, Any]
    ) -> None:
        response = params.get("response", {})
        self._responses[(session, str(params.get("requestId")))] = {
            "url": response.get("url"),
            "status": response.get("status"),
            "status_text": response.get("statusText") or None,
            "headers": response.get("headers"),
            "mime_type": response.get("mimeType"),
            "resource_type": params.get("type"),
        }

    def _finished(
        self, page: _Page, session: str, params: Mapping[str, Any], context: dict[str, Any]
    ) -> tuple[str, dict[str, Any]] | None:
        key = (session, str(params.get("requestId")))
        request = self._requests.pop(key, {})
        response = self._responses.pop(key, {})
        if not request and not response:
            return None  # in flight before the page was watched: nothing known of it
        data = {
            **context,
            "url": response.get("url") or request.get("url"),
            "frame_id": request.get("frame_id") or context["frame_id"],
            "loader_id": request.get("loader_id"),
            "method": request.get("method"),
            "resource_type": response.get("resource_type") or request.get("resource_type"),
            "status": response.get("status"),
            "status_text": response.get("status_text"),
            "headers": response.get("headers"),
            "mime_type": response.get("mime_type"),
            "request_id": key[1],
        }
        return "network_response", data

    def _failed(
        self, page: _Page, session: str, params: Mapping[str, Any], context: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        key = (session, str(params.get("requestId")))
        request = self._requests.pop(key, {})
        self._responses.pop(key, None)
        data = {
            **context,
            "url": request.get("url"),
            "frame_id": request.get("frame_id"),
            "loader_id": request.get("loader_id"),
            "resource_type": params.get("type") or request.get("resource_type"),
            "request_id": key[1],
            "error_text": params.get("errorText"),
            "canceled": params.get("canceled"),
        }
        return "network_loading_failed", data


def _lifecycle(kind: str) -> Any:
    """The mapper of a page lifecycle event (DOMContentLoaded, load) to ``kind``."""

    def mapped(
        self: CdpTelemetry,
        page: _Page,
        session: str,
        params: Mapping[str, Any],
        context: dict[str, Any],
    ) -> tuple[str, dict[str, Any]]:
        return kind, {**context, "cdp_timestamp": params.get("timestamp")}

    return mapped


_MAPPERS: dict[str, Any] = {
    "Runtime.consoleAPICalled": CdpTelemetry._console,
    "Runtime.exceptionThrown": CdpTelemetry._exception,
    "Page.frameNavigated": CdpTelemetry._navigated,
    "Page.domContentEventFired": _lifecycle("page_dom_content_loaded"),
    "Page.loadEventFired": _lifecycle("page_load"),
    "Network.requestWillBeSent": CdpTelemetry._request,
    "Network.responseReceived": CdpTelemetry._response,
    "Network.loadingFinished": CdpTelemetry._finished,
    "Network.loadingFailed": CdpTelemetry._failed,
}
WATCHED_DOMAINS = ("Runtime.enable", "Network.enable", "Page.enable")


class _Watch:
    """The emulator's own DevTools session on one browser, subscribed to its pages' events
    (every page: auto-attached, the later ones too) and handing the API events on."""

    def __init__(self, cdp: CDPClient, emit: Any) -> None:
        self.cdp = cdp
        self._emit = emit  # called with each API event made
        self._mapper = CdpTelemetry()
        self._enabling: set[asyncio.Task[None]] = set()
        self._ready = False
        self._some_page = asyncio.Event()

    @classmethod
    async def open(cls, opener: ChannelOpener, emit: Any, timeout: float = 5.0) -> _Watch:
        """Watch the browser; returns once its pages open now are watched."""
        watch = cls(CDPClient(await opener()), emit)
        cdp = watch.cdp
        try:
            cdp.on("Target.attachedToTarget", watch._attached)
            cdp.on("Target.detachedFromTarget", watch._detached)
            for method in _MAPPERS:
                cdp.on(method, watch._handler(method))
            # Pages opened later are not held until watched (Chromium 156 left a new tab
            # paused after runIfWaitingForDebugger): their first events may pass unseen.
            params = {"autoAttach": True, "waitForDebuggerOnStart": False, "flatten": True}
            await cdp.send("Target.setAutoAttach", params, timeout=timeout)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(watch._some_page.wait(), timeout)
            if watch._enabling:
                await asyncio.wait(watch._enabling, timeout=timeout)
            watch._ready = True
        except BaseException:
            await cdp.close()
            raise
        return watch

    def _handler(self, method: str) -> Any:
        def handle(params: dict[str, Any], session: str | None) -> None:
            made = self._mapper.event(method, params, session, now_us())
            if made is not None:
                self._emit(made)

        return handle

    def _attached(self, params: dict[str, Any], _: str | None) -> None:
        info = params.get("targetInfo", {})
        if info.get("type") != "page":
            return
        session = params["sessionId"]
        self._mapper.attached(session, info.get("targetId", ""), info.get("url"))
        task = asyncio.ensure_future(self._enable(session, info if self._ready else None))
        self._enabling.add(task)
        task.add_done_callback(self._enabling.discard)
        self._some_page.set()

    def _detached(self, params: dict[str, Any], _: str | None) -> None:
        session = params.get("sessionId")
        if isinstance(session, str):
            self._mapper.detached(session)

    async def _enable(self, session: str, opened: Mapping[str, Any] | None) -> None:
        """Subscribe to a page's events; a tab opened while watched is reported once it is
        watched (what happens there from then on is seen)."""
        ts = now_us()
        with contextlib.suppress(CDPError, asyncio.TimeoutError):  # the page may close
            for method in WATCHED_DOMAINS:
                await self.cdp.send(method, session_id=session, timeout=10.0)
            if opened is not None:
                self._emit(self._mapper.tab_opened(opened, ts))


# -- each session's telemetry, and the two operations ------------------------------------


@attrs.define(eq=False)
class _Session:
    log: EventLog = attrs.Factory(lambda: EventLog(keep=KEEP_EVENTS, keep_bytes=KEEP_BYTES))
    last: int = 0  # the seq of the newest event captured
    watch: _Watch | None = None
    watching: bool = False


class Telemetry:
    """Every browser session's telemetry in one emulator: the events captured (kept
    bounded, by what each session's ``telemetry`` captures), the CDP watchers on local
    Chromium, and the two handlers."""

    def __init__(self, fake: FakeKernel) -> None:
        self._fake = fake
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        from ._backend import InMemoryBackend
        from ._chromium_backend import ChromiumBackend

        backend = fake.backend
        self._stand_ins = isinstance(backend, InMemoryBackend)
        if isinstance(backend, ChromiumBackend):
            backend.on_launch.append(self._launched)

    # -- the emulator's lifecycle hooks --

    def requested(self, telemetry: Any) -> Capture:
        """What a new session asks to capture (`Refused` 400 for a refused setting)."""
        return resolve_capture(None, telemetry)

    def begin(self, browser_id: str, start_url: str | None = None) -> None:
        """A session was created, with its capture (before its browser launches, so a
        local one is watched from its first page). In memory, a start URL is its first
        navigation."""
        with self._lock:
            self._sessions[browser_id] = _Session()
        if self._stand_ins and start_url and self.capture(browser_id).captures("page"):
            source = {"kind": "cdp", "event": "Page.frameNavigated"}
            data = {"target_type": "page", "url": start_url}
            event = {"type": "page_navigation", "source": source, "data": data}
            self._record(browser_id, complete_event(event))

    def asked(self, id_or_name: str, telemetry: Any) -> Capture | None:
        """What an update of a session asks it to capture (`Refused` 400 for a refused
        setting); None for a session that is not active (the update answers 404)."""
        browser_id = self._fake._browser_id(id_or_name)
        if browser_id is None:
            return None
        return resolve_capture(self.capture(browser_id), telemetry)

    async def update(self, browser_id: str) -> None:
        """A session was updated (its capture too): a local browser whose CDP categories
        came on is watched from now on."""
        state = self._state(browser_id)
        if self.capture(browser_id).categories & CDP_CATEGORIES and not state.watching:
            opener = self._fake._bridge.devtools_for(browser_id)
            if opener is not None:
                await self._watch(browser_id, opener)

    async def end(self, browser_id: str) -> None:
        """The session ended: its streams finish; its watcher closes."""
        state = self._sessions.get(browser_id)
        if state is None:
            return
        state.log.close()
        if state.watch is not None:
            await state.watch.cdp.close()

    async def _launched(self, browser_id: str, opener: ChannelOpener) -> None:
        state = self._sessions.get(browser_id)
        if state is not None and self.capture(browser_id).categories & CDP_CATEGORIES:
            await self._watch(browser_id, opener)

    async def _watch(self, browser_id: str, opener: ChannelOpener) -> None:
        state = self._state(browser_id)
        state.watching = True
        try:
            state.watch = await _Watch.open(opener, lambda e: self._record(browser_id, e))
        except (CDPError, OSError, asyncio.TimeoutError) as exc:
            state.watching = False
            self._fake.log(browser_id, f"telemetry: the browser's pages cannot be watched: {exc}")

    # -- events --

    def add(self, browser_id: str, event: Mapping[str, Any]) -> dict[str, Any]:
        """Record a test's event (any thread); the envelope as the API answers it."""
        full = complete_event(event)
        with self._fake._lock:
            try:
                session_id = self._fake._sessions.find(browser_id).session_id
            except Refused as refused:
                raise KeyError(refused.message) from None
        capture = self.capture(session_id)
        category = full["category"]
        if not capture.captures(category):
            raise ValueError(_not_captured(session_id, category, capture))
        loop = self._fake._thread_loop
        if loop is not None and loop.is_running() and not _on(loop):

            async def on_loop() -> Event | None:
                return self._record(session_id, full)

            recorded = asyncio.run_coroutine_threadsafe(on_loop(), loop).result(10)
        else:
            recorded = self._record(session_id, full)
        assert recorded is not None
        return envelope(recorded)

    def served(
        self,
        operation: str | None,
        id_or_name: str | None,
        request: web.Request,
        status: int,
        seconds: float,
    ) -> None:
        """The emulator answered a call of ``operation`` on a browser (``status``, after
        ``seconds``): recorded as its ``api_call``/``platform_api_call`` event when the
        session captures that category (on the emulator's loop)."""
        category = api_call_category(operation)
        if category is None or operation is None or id_or_name is None:
            return
        browser_id = self._fake._browser_id(id_or_name)
        if browser_id is None or not self.capture(browser_id).captures(category):
            return
        # As the VM's request middleware does: the caller's X-Request-Id, else one of ours.
        request_id = request.headers.get("X-Request-Id") or new_id("req")
        event = api_call_event(operation, status, seconds, request_id)
        if event is not None:
            self._record(browser_id, event)

    def _record(self, browser_id: str, event: dict[str, Any]) -> Event | None:
        """Keep an event if the session captures its category (on the emulator's loop)."""
        state = self._state(browser_id)
        if state.log.closed or not self.capture(browser_id).captures(event["category"]):
            return None
        recorded = state.log.add(event, weight=len(json.dumps(event)))
        state.last = recorded.id
        return recorded

    def capture(self, browser_id: str) -> Capture:
        """What a session (by ID) captures now: its ``telemetry``, kept with the session."""
        session = self._fake._sessions.sessions.get(browser_id)
        capture = session.telemetry if session is not None else None
        return capture if capture is not None else OFF

    def _state(self, browser_id: str) -> _Session:
        with self._lock:
            state = self._sessions.get(browser_id)
            if state is None:  # a session made before telemetry knew of it
                state = self._sessions[browser_id] = _Session()
            return state

    # -- handlers --

    def handlers(self) -> dict[str, BrowserOp]:
        """Each operation's handler by its official name."""
        return {
            "browsers.telemetry.events": self._events,
            "browsers.telemetry.stream": self._stream,
        }

    async def _events(self, call: FamilyCall) -> web.StreamResponse:
        state = self._state(call.browser_id)
        query = call.query
        now = now_us()
        order = str(query.get("order", "asc"))
        if order not in ("asc", "desc"):
            raise Refused(400, "bad_request", f"query.order: expected asc or desc, got {order!r}")
        if order == "desc" and "since" in query:
            raise Refused(400, "bad_request", "query.since cannot be combined with order=desc")
        limit = query.get("limit", DEFAULT_LIMIT)
        if not 1 <= limit <= MAX_LIMIT:
            raise Refused(400, "bad_request", f"query.limit: must be 1 to {MAX_LIMIT}")
        offset = query.get("offset")
        if offset is not None and offset < 0:
            raise Refused(400, "bad_request", "query.offset: must not be negative")
        until = parse_when(query["until"], now, "query.until") if "until" in query else None
        since = None
        if order == "asc":
            since = parse_when(query.get("since", "5m"), now, "query.since")
        events = state.log.since(0) if self.capture(call.browser_id).stored else []
        items, following, more = page_of(
            events,
            limit=limit,
            offset=offset,
            order=order,
            since=since,
            until=until,
            categories=frozenset(query.get("category", ())),
            types=frozenset(query.get("type", ())),
        )
        headers = {"X-Has-More": "true" if more else "false", "X-Next-Offset": str(following)}
        return web.json_response([envelope(e) for e in items], headers=headers)

    async def _stream(self, call: FamilyCall) -> web.StreamResponse:
        state = self._state(call.browser_id)
        last = call.request.headers.get("Last-Event-ID", "").strip()
        if last.isascii() and last.isdigit():
            after = int(last)  # a resume: right after the last event seen
        elif call.query.get("replay") == "all":
            after = 0
        else:
            after = state.last  # only what comes from now on
        types = frozenset(call.query.get("type", ()))
        drop_after = call.fault.drop_after if call.fault is not None else None
        events = _follow(state, after, types)
        return await serve_sse(call.request, events, drop_after=drop_after)


async def _follow(
    state: _Session, after: int, types: Collection[str]
) -> AsyncIterator[Event | IdOnly]:
    async for event in state.log.follow(after):
        frame = frame_of(event, types, state.last)
        if frame is not None:
            yield frame


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _not_captured(browser_id: str, category: str, capture: Capture) -> str:
    if category == "monitor":
        how = "any CDP category on, e.g. telemetry={'browser': {'page': {'enabled': True}}}"
    elif category in DEFAULT_CATEGORIES:
        how = "telemetry={'enabled': True}"
    else:
        how = f"telemetry={{'browser': {{'{category}': {{'enabled': True}}}}}}"
    state = "has telemetry off" if not capture.on else f"does not capture {category!r} events"
    return f"browser {browser_id} {state}: create it (or update it) with {how}"


def register(fake: FakeKernel) -> Mapping[str, BrowserOp]:
    """The ``browsers.telemetry`` handlers of ``fake`` (its state: ``fake._telemetry``)."""
    return fake._telemetry.handlers()
