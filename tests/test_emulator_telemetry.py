"""``browsers.telemetry.events`` and ``.stream`` in the emulator: the pure rules (what a
session captures, time windows, pages, CDP events -> the API's events), the in-memory
stand-ins over real sockets (paging, filters, resuming a dropped stream exactly once, async
and sync, the official SDK parsing both), and real CDP telemetry of a local Chromium
(marked ``once``): console, navigation and network events of a page served on loopback.

Every answer is checked with jsonschema against the spec (`tests.spec_shapes`)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from kernel_async import AsyncKernel, BadRequestError, NotFoundError
from kernel_async.testing import FakeKernel
from kernel_async.testing._cdp import CDPClient
from kernel_async.testing._events import Event, IdOnly
from kernel_async.testing._sessions import Refused
from kernel_async.testing._telemetry import (
    CATEGORIES,
    DEFAULT_CATEGORIES,
    EVENT_TYPES,
    Capture,
    CdpTelemetry,
    api_call_category,
    api_call_event,
    complete_event,
    frame_of,
    page_of,
    parse_when,
    resolve_capture,
)
from kernel_sync import Kernel
from tests.spec_shapes import conforms

pytestmark = pytest.mark.anyio

PAGE_AND_CONSOLE = {"browser": {"page": {"enabled": True}, "console": {"enabled": True}}}
CDP_ALL = {"browser": {c: {"enabled": True} for c in ("page", "console", "network")}}


def valid(envelope: Mapping[str, Any]) -> None:
    """The envelope fits TelemetryEventsResponse, and its event the schema of its type,
    with no field the spec does not name."""
    conforms("TelemetryEventsResponse", envelope)
    event = envelope["event"]
    conforms(EVENT_TYPES[event["type"]][1]["$ref"].rpartition("/")[2], event)


# -- pure rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "requested", "expected"),
    [
        (None, None, frozenset()),  # omitted: capture not started
        (None, {}, frozenset()),
        (None, {"enabled": False}, frozenset()),
        (None, {"storage": {"enabled": True}}, frozenset()),
        (None, {"enabled": True}, DEFAULT_CATEGORIES),
        (None, {"browser": {}}, frozenset()),
        (None, {"browser": {"console": {"enabled": True}}}, DEFAULT_CATEGORIES | {"console"}),
        (None, {"enabled": True, "browser": {"system": {"enabled": False}}},
         DEFAULT_CATEGORIES - {"system"}),
        # The four operational ones turned off: nothing is captured.
        (None, {"browser": {c: {"enabled": False} for c in DEFAULT_CATEGORIES}}, frozenset()),
        # Updates: {} leaves it; browser merges onto the current selection; enabled=true
        # starts afresh from the default set; enabled=false stops.
        (frozenset({"page"}), {}, frozenset({"page"})),
        (frozenset({"page"}), None, frozenset({"page"})),
        (frozenset({"page"}), {"browser": {"console": {"enabled": True}}},
         frozenset({"page", "console"})),
        (frozenset({"page"}), {"enabled": True}, DEFAULT_CATEGORIES),
        (frozenset({"page"}), {"enabled": False}, frozenset()),
        (frozenset(), {"browser": {"page": {"enabled": True}}}, DEFAULT_CATEGORIES | {"page"}),
    ],
)  # fmt: skip
def test_what_a_session_captures(
    current: frozenset[str] | None, requested: Any, expected: frozenset[str]
) -> None:
    base = Capture(current) if current is not None else None
    assert resolve_capture(base, requested).categories == expected


def test_the_configuration_a_browser_shows() -> None:
    assert resolve_capture(None, None).as_json() is None  # capture off: no configuration
    assert resolve_capture(None, {"storage": {"enabled": False}}).as_json() is None
    shown = resolve_capture(None, {"enabled": True}).as_json()
    assert shown is not None
    assert shown["storage"] == {"enabled": True}
    assert {c for c, flag in shown["browser"].items() if flag["enabled"]} == DEFAULT_CATEGORIES
    assert set(shown["browser"]) == set(CATEGORIES)  # every category, on or off
    conforms("BrowserTelemetryConfig", shown)

    # The CDP exclusion list merges on its own: kept by a later setting without one,
    # through enabled=true, enabled=false and back; an empty list clears it.
    mouse = {"excluded_methods": ["Input.dispatchMouseEvent"]}
    first = resolve_capture(None, {"browser": {"control": {"cdp": mouse}}})
    assert first.excluded == ("Input.dispatchMouseEvent",)
    again = resolve_capture(first, {"enabled": True})
    stopped = resolve_capture(again, {"enabled": False})
    restarted = resolve_capture(stopped, {"browser": {"page": {"enabled": True}}})
    assert again.excluded == stopped.excluded == restarted.excluded == first.excluded
    assert restarted.categories == DEFAULT_CATEGORIES | {"page"}
    shown = restarted.as_json()
    assert shown is not None
    assert shown["browser"]["control"] == {"enabled": True, "cdp": mouse}
    conforms("BrowserTelemetryConfig", shown)
    none: dict[str, Any] = {"browser": {"control": {"cdp": {"excluded_methods": []}}}}
    cleared = resolve_capture(restarted, none)
    assert cleared.excluded == () and cleared.categories == restarted.categories


def test_refused_capture_settings_name_the_field() -> None:
    with pytest.raises(Refused, match="enabled=false cannot be combined"):
        resolve_capture(None, {"enabled": False, "browser": {"page": {"enabled": True}}})
    with pytest.raises(Refused) as caught:
        resolve_capture(None, {"enabled": "yes"})
    assert caught.value.details == ['body.telemetry.enabled: expected boolean, got "yes"']


def test_time_window_values() -> None:
    now = 1_700_000_000_000_000
    assert parse_when("5m", now, "q") == now - 300_000_000
    assert parse_when("1h30m", now, "q") == now - 5_400_000_000
    assert parse_when("250ms", now, "q") == now - 250_000
    assert parse_when("2023-11-14T22:13:20Z", now, "q") == now
    assert parse_when("2023-11-14T23:13:20+01:00", now, "q") == now
    for bad in ("", "5", "m5", "5 m", "yesterday", "5m ago", "2023-11-14"):
        with pytest.raises(Refused, match=r"query\.since: expected an RFC 3339"):
            parse_when(bad, now, "query.since")


def events_at(*specs: tuple[str, int]) -> list[Event]:
    """Events with ids from 1, each (type, ts)."""
    return [
        Event(i, {"type": kind, "category": EVENT_TYPES[kind][0], "ts": ts})
        for i, (kind, ts) in enumerate(specs, 1)
    ]


def test_pages_ascending_scan_then_filter() -> None:
    log = events_at(
        ("console_log", 10), ("page_load", 20), ("console_log", 30),
        ("page_load", 40), ("page_load", 50),
    )  # fmt: skip
    first = page_of(log, limit=2)
    assert ([e.id for e in first[0]], first[1:]) == ([1, 2], (3, True))
    last = page_of(log, limit=2, offset=5)
    assert ([e.id for e in last[0]], last[1:]) == ([5], (0, False))
    # The filter applies within the scanned page: a page can be empty while more follow.
    empty = page_of(log, limit=2, offset=4, categories={"console"})
    assert empty == ([], 0, False)
    some = page_of(log, limit=2, offset=3, types={"console_log"})
    assert ([e.id for e in some[0]], some[1:]) == ([3], (5, True))
    # since bounds the start unless a cursor is given; until is exclusive.
    assert [e.id for e in page_of(log, since=30, until=50)[0]] == [3, 4]
    assert [e.id for e in page_of(log, since=30, offset=2, until=40)[0]] == [2, 3]


def test_pages_descending_newest_first() -> None:
    log = events_at(*((("page_load", n * 10)) for n in range(1, 6)))
    first = page_of(log, limit=2, order="desc")
    assert ([e.id for e in first[0]], first[1:]) == ([5, 4], (4, True))
    second = page_of(log, limit=2, order="desc", offset=first[1])
    assert ([e.id for e in second[0]], second[1:]) == ([3, 2], (2, True))
    third = page_of(log, limit=2, order="desc", offset=second[1])
    assert ([e.id for e in third[0]], third[1:]) == ([1], (0, False))
    assert [e.id for e in page_of(log, order="desc", until=30)[0]] == [2, 1]


def test_a_tests_event_is_completed_and_checked() -> None:
    made = complete_event({"type": "console_log", "data": {"text": "hi"}}, ts=5)
    assert made == {
        "type": "console_log",
        "data": {"text": "hi"},
        "category": "console",
        "ts": 5,
        "source": {"kind": "cdp"},
    }
    oom = {"type": "system_oom_kill", "data": {"pid": 1, "process_name": "chrome", "rss_kb": 9}}
    assert complete_event(oom)["source"] == {"kind": "kernel_api"}
    with pytest.raises(ValueError, match=r"event.data.text: required"):
        complete_event({"type": "console_error", "data": {}})
    with pytest.raises(ValueError, match=r"event.ts: expected integer"):
        complete_event({"type": "page_load", "ts": "now"})
    with pytest.raises(ValueError, match=r"event.type: 'console' is not a telemetry event type"):
        complete_event({"type": "console"})


def test_cdp_events_become_the_apis_events() -> None:
    cdp = CdpTelemetry()
    cdp.attached("S1", "T1", "about:blank")
    assert cdp.event("Page.loadEventFired", {}, "other-session", 1) is None  # not a page of ours
    cdp_events: list[tuple[str, dict[str, Any]]] = [
        ("Network.requestWillBeSent", {
            "requestId": "R1", "loaderId": "L1", "documentURL": "http://x/",
            "request": {"url": "http://x/", "method": "GET", "headers": {"A": "1"}},
            "initiator": {"type": "other"}, "type": "Document", "frameId": "F1"}),
        ("Page.frameNavigated", {"frame": {"id": "F1", "loaderId": "L1",
                                           "url": "http://x/"}}),
        ("Network.responseReceived", {"requestId": "R1", "type": "Document",
            "response": {"url": "http://x/", "status": 200, "statusText": "OK",
                         "headers": {"B": "2"}, "mimeType": "text/html"}}),
        ("Network.loadingFinished", {"requestId": "R1"}),
        ("Runtime.consoleAPICalled", {"type": "log", "args": [
            {"type": "string", "value": "hello"}, {"type": "number", "value": 42},
            {"type": "object", "description": "Object"}, {"type": "x" * 5000}]}),
        ("Runtime.consoleAPICalled", {"type": "error", "args": [], "stackTrace": {
            "callFrames": [{"functionName": "f", "scriptId": "1", "url": "http://x/",
                            "lineNumber": 3, "columnNumber": 4}]}}),
        ("Runtime.exceptionThrown", {"exceptionDetails": {
            "text": "Uncaught", "lineNumber": 1, "columnNumber": 2, "url": "http://x/",
            "exception": {"type": "object", "description": "Error: boom\n    at f"}}}),
        ("Page.domContentEventFired", {"timestamp": 1.5}),
        ("Network.requestWillBeSent", {"requestId": "R2", "type": "Fetch",
            "request": {"url": "http://y/", "method": "POST", "postData": "a=1"},
            "frameId": "F1"}),
        ("Network.loadingFailed", {"requestId": "R2", "errorText": "net::ERR_FAILED",
                                   "canceled": False, "type": "Fetch"}),
        ("Network.dataReceived", {"requestId": "R3"}),
    ]  # fmt: skip
    made = [cdp.event(method, params, "S1", ts) for ts, (method, params) in enumerate(cdp_events)]
    assert made[2] is None and made[-1] is None  # kept for later / not telemetry
    events = [e for e in made if e is not None]
    for seq, event in enumerate(events, 1):
        valid({"seq": seq, "event": event})
    by_type = [e["type"] for e in events]
    assert by_type == [
        "network_request", "page_navigation", "network_response", "console_log",
        "console_error", "console_error", "page_dom_content_loaded", "network_request",
        "network_loading_failed",
    ]  # fmt: skip
    request, nav, response, log, error, thrown, dcl, post, failed = events
    assert request["data"]["headers"] == {"A": "1"} and request["data"]["method"] == "GET"
    assert request["source"] == {
        "kind": "cdp",
        "event": "Network.requestWillBeSent",
        "metadata": {"target_id": "T1", "session_id": "S1"},
    }
    assert nav["data"] == {
        "frame_id": "F1", "loader_id": "L1", "url": "http://x/", "target_id": "T1",
        "target_type": "page", "session_id": "S1",
    }  # fmt: skip
    assert response["data"]["status"] == 200 and response["data"]["mime_type"] == "text/html"
    assert response["data"]["request_id"] == "R1" and response["data"]["method"] == "GET"
    assert log["data"]["args"][:3] == ["hello", "42", "Object"] and log["data"]["text"] == "hello"
    assert log["data"]["nav_seq"] == 1 and log["data"]["url"] == "http://x/"
    assert len(log["data"]["args"][3]) == 4096 and log["truncated"] is True
    assert error["data"]["level"] == "error" and error["data"]["stack_trace"]["callFrames"]
    assert thrown["data"]["text"] == "Uncaught Error: boom" and thrown["data"]["line"] == 1
    assert dcl["data"]["cdp_timestamp"] == 1.5
    assert post["data"]["post_data"] == "a=1"
    assert (
        failed["data"]["error_text"] == "net::ERR_FAILED" and failed["data"]["url"] == "http://y/"
    )


def test_each_answered_call_becomes_an_api_call_event() -> None:
    click = api_call_event("browsers.computer.click_mouse", 200, 0.0123456, "req-1", ts=7)
    assert click == {
        "type": "api_call",
        "category": "control",
        "ts": 7,
        "source": {"kind": "kernel_api"},
        "data": {
            "duration_ms": 12.346,
            "operation_id": "ClickMouse",
            "request_id": "req-1",
            "status": 200,
        },
    }
    valid({"seq": 1, "event": click})
    exec_ = api_call_event("browsers.process.exec", 400, 0.5, "r", ts=1)
    assert exec_ is not None and exec_["type"] == "platform_api_call"
    assert exec_["category"] == "platform" and exec_["data"]["operation_id"] == "ProcessExec"
    valid({"seq": 2, "event": exec_})
    # curl: Chrome makes the call, so it drives the browser (control, on by default).
    curl = api_call_event("browsers.curl", 502, 0.25, "r", ts=3)
    assert curl is not None and (curl["type"], curl["category"]) == ("api_call", "control")
    assert curl["data"]["operation_id"] == "Curl" and curl["data"]["status"] == 502
    valid({"seq": 3, "event": curl})
    # The emulator's short names of the replay operations; nothing for calls the VM does
    # not answer (telemetry, browsers).
    start = api_call_event("start", 200, 0.0, "r")
    assert start is not None and start["data"]["operation_id"] == "StartRecording"
    for other in ("browsers.telemetry.events", "browsers.create", "retrieve"):
        assert api_call_event(other, 200, 0.0, "r") is None
        assert api_call_category(other) is None
    assert api_call_category("browsers.computer.batch") == "control"
    assert api_call_category(None) is None


def test_a_filtered_stream_sends_the_skipped_ids() -> None:
    log = events_at(("page_load", 1), ("console_log", 2), ("console_log", 3))
    loads = {"page_load"}
    assert frame_of(log[0], loads, newest=3) == Event(1, {"seq": 1, "event": log[0].data})
    assert frame_of(log[1], loads, newest=3) is None  # more are waiting: one frame for all
    assert frame_of(log[2], loads, newest=3) == IdOnly(3)  # caught up: the id moves
    assert frame_of(log[1], (), newest=3) == Event(2, {"seq": 2, "event": log[1].data})


# -- in memory, over sockets -------------------------------------------------------------


async def all_events(client: AsyncKernel, browser: str, **query: Any) -> list[dict[str, Any]]:
    """Every event through the SDK's pager (pages fetched as it goes)."""
    return [
        {"seq": item.seq, "type": item.event.type}
        async for item in client.browsers.telemetry.events(browser, **query)
    ]


async def http_get(fake: FakeKernel, path: str, **headers: str) -> tuple[int, Any, Any]:
    """A raw GET (status, headers, JSON body), to check the wire with jsonschema."""
    auth = {"Authorization": f"Bearer {fake.api_key}", **headers}
    async with aiohttp.ClientSession() as http:
        async with http.get(fake.base_url + path, headers=auth) as resp:
            return resp.status, resp.headers, await resp.json()


async def test_a_session_without_telemetry_captures_nothing(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    b = (await client.browsers.create(start_url="https://example.com")).session_id
    assert (await client.browsers.telemetry.events(b)).items == []
    with pytest.raises(ValueError, match=r"has telemetry off: .* telemetry=\{'enabled': True\}"):
        fake.telemetry(b, {"type": "api_call", "data": {
            "duration_ms": 1, "operation_id": "x", "request_id": "r", "status": 200}})  # fmt: skip
    stream = await client.browsers.telemetry.stream(b, replay="all")

    async def end_later() -> None:
        await asyncio.sleep(0.2)
        await client.browsers.delete(b)

    ending = asyncio.ensure_future(end_later())
    assert [e async for e in stream] == []  # it opens, delivers nothing, ends with the session
    await ending


async def test_events_page_filter_and_validate(fake: FakeKernel, client: AsyncKernel) -> None:
    b = (await client.browsers.create(start_url="https://example.com",
                                      telemetry=PAGE_AND_CONSOLE)).session_id  # fmt: skip
    for n in range(6):
        fake.telemetry(b, {"type": "console_log", "data": {"text": f"line {n}", "args": [str(n)]}})
    fake.telemetry(b, {"type": "page_load", "data": {"url": "https://example.com"}})
    recorded = fake.telemetry(b, {"type": "console_error", "data": {"text": "oops"}})
    assert recorded["seq"] == 9  # after the start URL's navigation and 7 more

    status, headers, body = await http_get(fake, f"/browsers/{b}/telemetry/events?limit=4")
    assert status == 200 and headers["X-Has-More"] == "true" and len(body) == 4
    for item in body:
        valid(item)
    assert body[0]["event"]["type"] == "page_navigation"
    assert body[0]["event"]["data"]["url"] == "https://example.com"

    got = await all_events(client, b, limit=3)
    assert [g["seq"] for g in got] == list(range(1, 10))  # every event once, in order
    consoles = await all_events(client, b, limit=3, category=["console"])
    assert [g["seq"] for g in consoles] == [2, 3, 4, 5, 6, 7, 9]
    typed = await all_events(client, b, limit=100, category=["console"], type=["console_error"])
    assert [g["seq"] for g in typed] == [9]
    # A filtered page can be empty while more remain (the filter applies within the page).
    status, headers, body = await http_get(
        fake, f"/browsers/{b}/telemetry/events?limit=2&type=page_load"
    )
    assert body == [] and headers["X-Has-More"] == "true"

    # Newest first: the cursor moves back, and the SDK's pager follows it to the oldest.
    newest_first = await all_events(client, b, limit=4, order="desc")
    assert [g["seq"] for g in newest_first] == list(range(9, 0, -1))
    status, headers, body = await http_get(
        fake, f"/browsers/{b}/telemetry/events?order=desc&limit=4"
    )
    assert [i["seq"] for i in body] == [9, 8, 7, 6] and headers["X-Has-More"] == "true"
    cursor = headers["X-Next-Offset"]
    status, headers, body = await http_get(
        fake, f"/browsers/{b}/telemetry/events?order=desc&limit=4&offset={cursor}"
    )
    assert [i["seq"] for i in body] == [5, 4, 3, 2]

    # The time window: until (exclusive) and since.
    later = (datetime.now(timezone.utc) + timedelta(minutes=1)).isoformat()
    assert len(await all_events(client, b, until="1h", limit=100)) == 0
    assert len(await all_events(client, b, since="1m", until=later, limit=100)) == 9
    assert len(await all_events(client, b, since=later, limit=100)) == 0


async def test_refused_queries_and_unknown_browsers(fake: FakeKernel, client: AsyncKernel) -> None:
    b = (await client.browsers.create(telemetry={"enabled": True})).session_id
    events = client.browsers.telemetry.events
    with pytest.raises(BadRequestError, match="since cannot be combined with order=desc"):
        await events(b, order="desc", since="5m")
    with pytest.raises(BadRequestError, match=r"query\.order"):
        await events(b, order="sideways")
    with pytest.raises(BadRequestError, match=r"query\.since: expected an RFC 3339"):
        await events(b, since="yesterday")
    with pytest.raises(BadRequestError, match=r"query\.limit"):
        await events(b, limit=0)
    with pytest.raises(BadRequestError, match=r"query.category\[0\]"):
        await events(b, category=["nonsense"])  # type: ignore[list-item]
    with pytest.raises(NotFoundError):
        await events("br_0000000000000000")
    with pytest.raises(NotFoundError):
        await client.browsers.telemetry.stream("br_0000000000000000")
    with pytest.raises(BadRequestError, match="enabled=false cannot be combined"):
        await client.browsers.create(
            telemetry={"enabled": False, "browser": {"page": {"enabled": True}}}
        )
    with pytest.raises(KeyError):
        fake.telemetry("br_0000000000000000", {"type": "page_load"})


async def read(stream: Any, count: int) -> list[Any]:
    got = []
    async for event in stream:
        got.append(event)
        if len(got) == count:
            break
    return got


async def test_stream_from_now_replay_all_and_type_filter(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    b = (await client.browsers.create(telemetry=PAGE_AND_CONSOLE)).session_id
    fake.telemetry(b, {"type": "console_log", "data": {"text": "before"}})
    fresh = await client.browsers.telemetry.stream(b)  # only what comes from now on
    everything = await client.browsers.telemetry.stream(b, replay="all")
    loads = await client.browsers.telemetry.stream(b, replay="all", type=["page_load"])
    fake.telemetry(b, {"type": "page_load"})
    fake.telemetry(b, {"type": "console_log", "data": {"text": "after"}})
    assert [e.seq for e in await read(fresh, 2)] == [2, 3]
    assert [e.seq for e in await read(everything, 3)] == [1, 2, 3]
    assert [(e.seq, e.event.type) for e in await read(loads, 1)] == [(2, "page_load")]
    for stream in (fresh, everything, loads):
        await stream.close()
    wire = [r for r in fake.requests if r.operation == "browsers.telemetry.stream"]
    assert wire[2].raw_path.endswith("?replay=all&type=page_load")


async def test_skipped_events_move_the_resume_point(fake: FakeKernel, client: AsyncKernel) -> None:
    b = (await client.browsers.create(telemetry=PAGE_AND_CONSOLE)).session_id
    fake.telemetry(b, {"type": "page_load"})
    for text in ("a", "b"):
        fake.telemetry(b, {"type": "console_log", "data": {"text": text}})
    fake.fail("browsers.telemetry.stream", status=None, drop_after=1)
    stream = await client.browsers.telemetry.stream(b, replay="all", type=["page_load"])
    events = stream.__aiter__()
    assert (await asyncio.wait_for(events.__anext__(), 10)).seq == 1

    async def moved() -> None:  # the id-only frame for 2 and 3 reaches the stream
        while stream.last_event_id != "3":
            await asyncio.sleep(0.01)

    await asyncio.wait_for(moved(), 10)
    fake.telemetry(b, {"type": "page_load"})  # cut before it: resumed, after 3
    assert (await asyncio.wait_for(events.__anext__(), 10)).seq == 4
    await stream.close()
    calls = [r for r in fake.requests if r.operation == "browsers.telemetry.stream"]
    assert [r.headers.get("Last-Event-ID") for r in calls] == [None, "3"]

    # On the wire: an id-only frame (no data) once the stream has caught up, and none
    # for the events the stream delivers or that more events follow.
    auth = {"Authorization": f"Bearer {fake.api_key}"}
    path = f"/browsers/{b}/telemetry/stream?replay=all&type=page_load"
    async with aiohttp.ClientSession() as http:
        async with http.get(fake.base_url + path, headers=auth) as resp:
            await resp.content.readuntil(b"id: 4\n")
            fake.telemetry(b, {"type": "console_log", "data": {"text": "c"}})
            await client.browsers.delete(b)  # the stream ends
            rest = await resp.content.read()
    frames = rest.decode().split("\n\n")
    assert frames[0].startswith("data: ") and frames[1:] == ["id: 5", ""]


@pytest.mark.once
def test_the_official_sdk_takes_id_only_frames(threaded_fake: FakeKernel) -> None:
    kernel = pytest.importorskip("kernel")
    fake = threaded_fake
    b = fake.create_browser(telemetry=PAGE_AND_CONSOLE)
    fake.telemetry(b, {"type": "page_load"})
    for text in ("a", "b"):  # skipped by the filter: an id-only frame for 3 follows 1
        fake.telemetry(b, {"type": "console_log", "data": {"text": text}})
    with kernel.Kernel(api_key=fake.api_key, base_url=fake.base_url, max_retries=0) as k:
        with k.browsers.telemetry.stream(b, replay="all", type=["page_load"]) as stream:
            events = iter(stream)
            assert next(events).seq == 1
            k.browsers.delete_by_id(b)
            assert list(events) == []  # the frame dispatches nothing, then a clean end
            assert stream._decoder._last_event_id == "3"  # (0.131's decoder) it was read
    calls = [r for r in fake.requests if r.operation == "browsers.telemetry.stream"]
    assert len(calls) == 1


@pytest.mark.parametrize("drop_after", [0, 1, 3, 5])
async def test_a_dropped_stream_resumes_every_event_once(
    fake: FakeKernel, client: AsyncKernel, drop_after: int
) -> None:
    b = (await client.browsers.create(telemetry=PAGE_AND_CONSOLE)).session_id
    for n in range(6):
        fake.telemetry(b, {"type": "console_log", "data": {"text": f"e{n}"}})
    fake.fail("browsers.telemetry.stream", status=None, drop_after=drop_after, times=2)
    stream = await client.browsers.telemetry.stream(b, replay="all")

    async def end_later() -> None:
        for n in range(6, 8):  # more arrive while it is being resumed
            await asyncio.sleep(0.05)
            fake.telemetry(b, {"type": "console_log", "data": {"text": f"e{n}"}})
        await asyncio.sleep(0.1)
        await client.browsers.delete(b)

    ending = asyncio.ensure_future(end_later())
    got = [(e.seq, e.event.data.text) async for e in stream]  # type: ignore[union-attr]
    await ending
    assert got == [(n + 1, f"e{n}") for n in range(8)]
    calls = [r for r in fake.requests if r.operation == "browsers.telemetry.stream"]
    resumed = [r.headers.get("Last-Event-ID") for r in calls]
    # Each of the two faults cut a connection, unless fewer events than that were left.
    assert resumed[0] is None and len(calls) == (3 if 2 * drop_after < 8 else 2)
    if drop_after:
        assert resumed[1:] == [str(drop_after), str(2 * drop_after)][: len(calls) - 1]
    assert all(r.raw_path.endswith("?replay=all") for r in calls)


async def test_telemetry_turned_on_by_an_update(fake: FakeKernel, client: AsyncKernel) -> None:
    b = (await client.browsers.create()).session_id
    with pytest.raises(ValueError, match="has telemetry off"):
        fake.telemetry(b, {"type": "page_load"})
    await client.browsers.update(b, telemetry={"browser": {"page": {"enabled": True}}})
    assert fake.telemetry(b, {"type": "page_load"})["seq"] == 1
    with pytest.raises(ValueError, match=r"does not capture 'network' events"):
        fake.telemetry(b, {"type": "network_idle"})
    with pytest.raises(BadRequestError, match="enabled=false cannot be combined"):
        await client.browsers.update(
            b, name="kept?", telemetry={"enabled": False, "browser": {"page": {"enabled": True}}}
        )
    assert (await client.browsers.retrieve(b)).name is None  # a refused update changes nothing
    await client.browsers.update(b, telemetry={"enabled": False})
    with pytest.raises(ValueError, match="has telemetry off"):
        fake.telemetry(b, {"type": "page_load"})
    assert [i.seq for i in (await client.browsers.telemetry.events(b)).items] == [1]


async def test_calls_on_the_browser_are_recorded(fake: FakeKernel, client: AsyncKernel) -> None:
    # The default set: control (computer use) is captured, platform (processes...) is not.
    b = (await client.browsers.create(telemetry={"enabled": True})).session_id
    stream = await client.browsers.telemetry.stream(b)
    fake.on_exec("echo", stdout=b"hi\n")
    await client.browsers.computer.click_mouse(b, x=10, y=20)
    await client.browsers.process.exec(b, command="echo", args=["hi"])
    await client.browsers.computer.capture_screenshot(b)
    with pytest.raises(BadRequestError, match="needs its parameters"):  # answered too
        await client.browsers.computer.batch(b, actions=[{"type": "click_mouse"}])
    got = await asyncio.wait_for(read(stream, 3), 10)
    await stream.close()
    calls = [(e.event.type, e.event.data.operation_id, e.event.data.status) for e in got]
    assert calls == [
        ("api_call", "ClickMouse", 204),
        ("api_call", "TakeScreenshot", 200),
        ("api_call", "BatchComputerAction", 400),
    ]
    assert all(e.event.source.kind == "kernel_api" for e in got)
    assert all(e.event.data.duration_ms >= 0 for e in got)
    assert len({e.event.data.request_id for e in got}) == 3
    status, _, body = await http_get(fake, f"/browsers/{b}/telemetry/events?limit=100")
    assert status == 200 and [i["seq"] for i in body] == [e.seq for e in got]
    for item in body:
        valid(item)

    # With platform on: files, processes and replays too (by name, with the caller's
    # X-Request-Id when it sends one); a browser without telemetry records nothing.
    on = {"enabled": True, "browser": {"platform": {"enabled": True}}}
    named = (await client.browsers.create(name="agent", telemetry=on)).session_id
    quiet = (await client.browsers.create()).session_id
    for browser in ("agent", quiet):
        await client.browsers.process.exec(
            browser, command="echo", extra_headers={"X-Request-Id": "mine"}
        )
        with pytest.raises(NotFoundError):
            await client.browsers.fs.read_file(browser, path="/tmp/missing.txt")
        replay = await client.browsers.replays.start(browser)
        await client.browsers.replays.stop(replay.replay_id, id=browser)
    items: list[Any] = (await client.browsers.telemetry.events(named, limit=100)).items
    assert [(i.event.type, i.event.data.operation_id, i.event.data.status) for i in items] == [
        ("platform_api_call", "ProcessExec", 200),
        ("platform_api_call", "ReadFile", 404),
        ("platform_api_call", "StartRecording", 200),
        ("platform_api_call", "StopRecording", 200),
    ]
    assert items[0].event.data.request_id == "mine"
    status, _, body = await http_get(fake, f"/browsers/{named}/telemetry/events?limit=100")
    for item in body:
        valid(item)
    assert (await client.browsers.telemetry.events(quiet)).items == []


# -- the official SDK's examples/browser_telemetry.py ------------------------------------


async def telemetry_example(client: Any, target: str) -> list[Any]:
    """The official example's flow (telemetry on at create, a stream, three curls, the
    first three events), awaited: with `client` this SDK's or the official async one.
    The wait is bounded: a missing event fails the test instead of hanging it."""
    browser = await client.browsers.create(telemetry={"enabled": True})
    try:
        stream = await client.browsers.telemetry.stream(browser.session_id)
        for _ in range(3):
            await client.browsers.curl(browser.session_id, url=target, method="GET")
        got: list[Any] = []
        with anyio.fail_after(10):
            async for message in stream:
                got.append(message)
                if len(got) >= 3:
                    break
        await stream.close()
    finally:
        await client.browsers.delete_by_id(browser.session_id)
    return got


def check_curl_events(got: list[Any]) -> None:
    """Three ``api_call`` events of the control category, one per curl, in order."""
    assert [m.seq for m in got] == [1, 2, 3]
    assert [
        (m.event.type, m.event.category, m.event.data.operation_id, m.event.data.status)
        for m in got
    ] == [("api_call", "control", "Curl", 200)] * 3
    assert len({m.event.data.request_id for m in got}) == 3
    # Each parsed as the API's api_call event (the shape itself: the pure test above).
    assert {type(m.event).__name__ for m in got} == {"BrowserAPICallEvent"}


async def test_the_official_telemetry_example_sees_its_curls(
    fake: FakeKernel, client: AsyncKernel, site: str
) -> None:
    target = site + "/data.json"  # on loopback: no outside network
    check_curl_events(await telemetry_example(client, target))
    kernel = pytest.importorskip("kernel")
    async with kernel.AsyncKernel(
        api_key=fake.api_key, base_url=fake.base_url, max_retries=0
    ) as official:
        check_curl_events(await telemetry_example(official, target))


@pytest.mark.once
async def test_the_official_telemetry_example_on_chromium(site: str) -> None:
    async with FakeKernel(backend="chromium") as fake, fake.client(max_retries=0) as client:
        check_curl_events(await telemetry_example(client, site + "/data.json"))


async def http_send(fake: FakeKernel, method: str, path: str, body: Any = None) -> Any:
    """A raw request with a JSON body; its JSON answer (checked 200)."""
    auth = {"Authorization": f"Bearer {fake.api_key}"}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, fake.base_url + path, headers=auth, json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


def enabled(config: Mapping[str, Any]) -> set[str]:
    """The categories a shown configuration has on."""
    return {c for c, flag in config["browser"].items() if flag["enabled"]}


async def test_browser_answers_show_the_telemetry_configuration(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    mouse = ["Input.dispatchMouseEvent"]
    setting = {
        "browser": {"console": {"enabled": True}, "control": {"cdp": {"excluded_methods": mouse}}}
    }
    created = await http_send(fake, "POST", "/browsers", {"telemetry": setting})
    conforms("BrowserCreateResponse", created)
    b = created["session_id"]
    assert enabled(created["telemetry"]) == DEFAULT_CATEGORIES | {"console"}
    assert created["telemetry"]["browser"]["control"]["cdp"] == {"excluded_methods": mouse}
    assert created["telemetry"]["storage"] == {"enabled": True}
    plain = (await client.browsers.create()).session_id  # no telemetry: no configuration

    retrieved = await http_send(fake, "GET", f"/browsers/{b}")
    conforms("BrowserRetrieveResponse", retrieved)
    assert retrieved["telemetry"] == created["telemetry"]
    listed = {item["session_id"]: item for item in await http_send(fake, "GET", "/browsers")}
    for item in listed.values():
        conforms("BrowserListResponse", item)
    assert listed[b]["telemetry"] == created["telemetry"] and "telemetry" not in listed[plain]

    # Our SDK reads it; an update merges onto it (the exclusion list kept) and shows it.
    browser = await client.browsers.retrieve(b)
    assert browser.telemetry is not None and browser.telemetry.browser is not None
    assert browser.telemetry.browser.console is not None
    assert browser.telemetry.browser.console.enabled is True
    updated = await client.browsers.update(b, telemetry={"browser": {"page": {"enabled": True}}})
    assert updated.telemetry is not None and updated.telemetry.browser is not None
    assert updated.telemetry.browser.page is not None and updated.telemetry.browser.page.enabled
    raw = await http_send(fake, "PATCH", f"/browsers/{b}", {"telemetry": {}})  # unchanged
    conforms("BrowserUpdateResponse", raw)
    assert enabled(raw["telemetry"]) == DEFAULT_CATEGORIES | {"console", "page"}
    assert raw["telemetry"]["browser"]["control"]["cdp"] == {"excluded_methods": mouse}
    assert fake.telemetry(b, {"type": "page_load"})["seq"] == 1  # what it shows, it captures

    # Stopped: no active configuration; started afresh: the default set.
    assert (await client.browsers.update(b, telemetry={"enabled": False})).telemetry is None
    assert "telemetry" not in await http_send(fake, "GET", f"/browsers/{b}")
    restarted = await http_send(fake, "PATCH", f"/browsers/{b}", {"telemetry": {"enabled": True}})
    assert enabled(restarted["telemetry"]) == DEFAULT_CATEGORIES
    assert restarted["telemetry"]["browser"]["control"]["cdp"] == {"excluded_methods": mouse}
    turned_on = await client.browsers.update(plain, telemetry={"enabled": True})
    assert turned_on.telemetry is not None and turned_on.telemetry.storage is not None
    assert turned_on.telemetry.storage.enabled is True
    shown = fake.sessions()[-1]["telemetry"]  # fake.sessions() shows it too
    assert enabled(shown) == DEFAULT_CATEGORIES and shown["browser"]["control"] == {"enabled": True}


@pytest.mark.once
def test_the_official_sdk_reads_the_configuration(threaded_fake: FakeKernel) -> None:
    kernel = pytest.importorskip("kernel")
    fake = threaded_fake
    with kernel.Kernel(api_key=fake.api_key, base_url=fake.base_url, max_retries=0) as k:
        created = k.browsers.create(telemetry={"enabled": True, "storage": {"enabled": True}})
        assert created.telemetry.browser.control.enabled is True
        assert created.telemetry.browser.console.enabled is False
        assert created.telemetry.storage.enabled is True
        b = created.session_id
        assert k.browsers.retrieve(b).telemetry == created.telemetry
        (listed,) = [x for x in k.browsers.list() if x.session_id == b]
        assert listed.telemetry == created.telemetry
        updated = k.browsers.update(b, telemetry={"browser": {"console": {"enabled": True}}})
        assert updated.telemetry.browser.console.enabled is True
        assert updated.telemetry.browser.control.enabled is True
        assert k.browsers.update(b, telemetry={"enabled": False}).telemetry is None
        assert k.browsers.create().telemetry is None


def test_the_sync_twin_pages_and_resumes(threaded_fake: FakeKernel) -> None:
    fake = threaded_fake
    b = fake.create_browser(start_url="https://example.com", telemetry=PAGE_AND_CONSOLE)
    fake.fail("browsers.telemetry.stream", status=None, drop_after=2)
    with Kernel(api_key=fake.api_key, base_url=fake.base_url) as client:
        with client.browsers.telemetry.stream(b, replay="all") as stream:
            got = []

            def add_more() -> None:  # from another thread, while the stream follows
                for n in range(4):
                    fake.telemetry(b, {"type": "console_log", "data": {"text": f"s{n}"}})

            adder = threading.Thread(target=add_more)
            adder.start()
            for event in stream:
                got.append(event.seq)
                if len(got) == 5:
                    break
            adder.join()
        assert got == [1, 2, 3, 4, 5]
        assert [i.seq for i in client.browsers.telemetry.events(b, limit=2)] == [1, 2, 3, 4, 5]
    calls = [r for r in fake.requests if r.operation == "browsers.telemetry.stream"]
    assert [r.headers.get("Last-Event-ID") for r in calls] == [None, "2"]


@pytest.mark.once
def test_the_official_sdk_parses_both(threaded_fake: FakeKernel) -> None:
    kernel = pytest.importorskip("kernel")
    fake = threaded_fake
    b = fake.create_browser(start_url="https://example.com", telemetry=CDP_ALL)
    fake.telemetry(b, {"type": "console_error", "data": {"text": "Uncaught Error: x", "line": 3}})
    fake.telemetry(b, {"type": "network_response", "data": {"status": 404, "url": "https://e/x"}})
    with kernel.Kernel(api_key=fake.api_key, base_url=fake.base_url, max_retries=0) as k:
        page = k.browsers.telemetry.events(b, limit=2)
        seen = [(e.seq, e.event.type) for e in page]  # every page, walked by the official pager
        assert seen == [(1, "page_navigation"), (2, "console_error"), (3, "network_response")]
        fake.fail("browsers.telemetry.stream", status=None, drop_after=2)
        with k.browsers.telemetry.stream(b, replay="all") as stream:
            # The official SDK has no resume: the dropped stream raises or just ends.
            got = []
            with contextlib.suppress(Exception):
                for event in stream:
                    got.append((event.seq, event.event.type))
            assert got == seen[:2]
        with k.browsers.telemetry.stream(b, last_event_id="2") as stream:
            assert next(iter(stream)).event.data.status == 404


# -- local Chromium: real CDP events ----------------------------------------------------

PAGE = """<!doctype html><title>t</title><script>
console.log("hello", 42);
console.warn("careful");
fetch("/data.json").then(r => r.json()).then(d => console.info("got", d.n));
fetch("/missing");
setTimeout(() => { throw new Error("boom") }, 0);
</script>"""


@pytest.fixture
async def site() -> AsyncIterator[str]:
    """A page and its resources on loopback."""
    app = web.Application()

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def data(_: web.Request) -> web.Response:
        return web.json_response({"n": 7})

    app.router.add_get("/", page)
    app.router.add_get("/data.json", data)
    runner = web.AppRunner(app)
    await runner.setup()
    server = web.TCPSite(runner, "127.0.0.1", 0)
    await server.start()
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.once
async def test_chromium_console_navigation_and_network(site: str) -> None:
    async with FakeKernel(backend="chromium") as fake, fake.client(max_retries=0) as client:
        b = (await client.browsers.create(start_url=site + "/", telemetry=CDP_ALL)).session_id
        quiet = (await client.browsers.create(start_url=site + "/")).session_id  # no telemetry
        stream = await client.browsers.telemetry.stream(b, replay="all")
        wanted = {"page_navigation", "page_load", "console_log", "console_error",
                  "network_request", "network_response"}  # fmt: skip
        got: list[Any] = []

        async def until_all() -> None:
            async for item in stream:
                got.append(item)
                kinds = {i.event.type for i in got}
                fetched = {i.event.data.url for i in got if i.event.type == "network_response"}
                if (
                    wanted <= kinds
                    and {site + p for p in ("/", "/data.json", "/missing")} <= fetched
                ):
                    return

        await asyncio.wait_for(until_all(), 20)
        await stream.close()
        assert [i.seq for i in got] == list(range(1, len(got) + 1))
        by_type: dict[str, list[Any]] = {}
        for item in got:
            by_type.setdefault(item.event.type, []).append(item.event)
        assert by_type["page_navigation"][0].data.url == site + "/"
        logs = [(e.data.level, e.data.args) for e in by_type["console_log"]]
        assert ("log", ["hello", "42"]) in logs and ("warning", ["careful"]) in logs
        assert ("info", ["got", "7"]) in logs
        assert by_type["console_error"][0].data.text == "Uncaught Error: boom"
        statuses = {e.data.url: e.data.status for e in by_type["network_response"]}
        assert statuses[site + "/"] == 200 and statuses[site + "/data.json"] == 200
        assert statuses[site + "/missing"] == 404
        assert all(e.source.kind == "cdp" for e in by_type["network_request"])

        # The same events through the query, on the wire, each valid for the spec.
        status, _, body = await http_get(
            fake, f"/browsers/{b}/telemetry/events?limit=1000&category=network,page"
        )
        assert status == 200 and body
        for item in body:
            valid(item)
        assert {i["event"]["category"] for i in body} == {"network", "page"}
        urls = [i["event"]["data"]["url"] for i in body if i["event"]["type"] == "network_request"]
        assert urls[:1] == [site + "/"] and site + "/data.json" in urls

        # A page opened later (here over the browser's cdp_ws_url) is watched too, from
        # when it is attached: its navigations after that are seen.
        browser = await client.browsers.retrieve(b)
        stream = await client.browsers.telemetry.stream(b)
        events = stream.__aiter__()

        async def next_of(kind: str) -> Any:
            while (item := await events.__anext__()).event.type != kind:
                pass
            return item.event

        async with await CDPClient.connect(browser.cdp_ws_url) as cdp:
            target = await cdp.send("Target.createTarget", {"url": "about:blank"})
            opened = await asyncio.wait_for(next_of("page_tab_opened"), 10)
            assert opened.data.target_id == target["targetId"]
            attach = {"targetId": target["targetId"], "flatten": True}
            session = (await cdp.send("Target.attachToTarget", attach))["sessionId"]
            await cdp.send("Page.navigate", {"url": site + "/data.json"}, session_id=session)
            navigated = await asyncio.wait_for(next_of("page_navigation"), 10)
        await stream.close()
        assert navigated.data.url == site + "/data.json"
        assert navigated.data.target_id == target["targetId"]

        assert (await client.browsers.telemetry.events(quiet)).items == []
        await client.browsers.delete(b)
        await client.browsers.delete(quiet)
