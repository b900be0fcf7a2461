"""The emulator serves deployments.follow, invocations.follow and auth.connections.follow:
state events at create and at every change it makes, events a test publishes
(``fake.publish``, checked against the spec), ids on every event, streams that end when
the resource is finished, and ``fail(..., drop_after=N)`` cuts so resuming is tested end to
end, async and sync, with our clients and the official SDK."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import jsonschema
import pytest

from kernel_async import AsyncKernel, BadRequestError, NotFoundError
from kernel_async.testing import FakeKernel, _spec
from kernel_async.testing._events import Event
from kernel_async.testing._follow import (
    FOLLOWED,
    check_event,
    event_kinds,
    opening,
    shown,
    since_cutoff,
)
from kernel_async.testing._generic import NOT_IMPLEMENTED
from kernel_sync import Kernel

OPS = sorted(FOLLOWED)
PATHS = {
    "deployments.follow": "/deployments/{}/events",
    "invocations.follow": "/invocations/{}/events",
    "auth.connections.follow": "/auth/connections/{}/events",
}
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


# --- the rules (pure) --------------------------------------------------------------------


def test_the_three_follows_are_no_longer_refused() -> None:
    assert not set(FOLLOWED) & set(NOT_IMPLEMENTED)


def test_each_follow_carries_the_event_kinds_of_the_spec() -> None:
    assert event_kinds("deployments.follow") == [
        "log",
        "deployment_state",
        "app_version_summary",
        "error",
        "sse_heartbeat",
    ]
    assert event_kinds("invocations.follow") == [
        "log",
        "invocation_state",
        "error",
        "sse_heartbeat",
    ]
    assert event_kinds("auth.connections.follow") == [
        "managed_auth_state",
        "error",
        "sse_heartbeat",
    ]


def test_an_event_is_checked_against_its_own_member_naming_the_field() -> None:
    good = {"event": "log", "message": "hi", "timestamp": "2025-01-01T00:00:00Z"}
    assert check_event("deployments.follow", good) == []
    bad_status = {
        "event": "invocation_state",
        "timestamp": "2025-01-01T00:00:00Z",
        "invocation": {"id": "i", "action_name": "a", "app_name": "x", "version": "1"},
    }
    fields = [p.field for p in check_event("invocations.follow", bad_status)]
    assert fields == ["event.invocation.started_at", "event.invocation.status"]
    [problem] = check_event("auth.connections.follow", good)  # no logs on this stream
    assert problem.field == "event.event"
    assert "managed_auth_state, error, sse_heartbeat" in problem.message
    [problem] = check_event("deployments.follow", {**good, "message": 5})
    assert str(problem) == "event.message: expected string, got 5"
    assert [p.field for p in check_event("deployments.follow", [])] == ["event"]


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        (None, None),
        ("", None),
        ("5m", NOW - timedelta(minutes=5)),
        ("1h30m", NOW - timedelta(minutes=90)),
        ("250ms", NOW - timedelta(milliseconds=250)),
        ("1.5h", NOW - timedelta(minutes=90)),
        ("2025-05-01T10:00:00Z", datetime(2025, 5, 1, 10, tzinfo=timezone.utc)),
        ("2025-05-01T10:00:00+02:00", datetime(2025, 5, 1, 8, tzinfo=timezone.utc)),
        ("2025-05-01", datetime(2025, 5, 1, tzinfo=timezone.utc)),
        ("2025-05-01T10:04", datetime(2025, 5, 1, 10, 4, tzinfo=timezone.utc)),
        ("2025-05-01T10:04:05.5", datetime(2025, 5, 1, 10, 4, 5, 500000, tzinfo=timezone.utc)),
    ],
)
def test_since_reads_times_dates_and_durations(since: str | None, expected: datetime) -> None:
    assert since_cutoff(since, NOW) == expected


@pytest.mark.parametrize("since", ["yesterday", "5", "5d", "m5", "1h 30m", "2025-13-01"])
def test_an_unreadable_since_is_refused(since: str) -> None:
    with pytest.raises(ValueError, match="duration such as 5m"):
        since_cutoff(since, NOW)


def test_since_filters_logs_only() -> None:
    cutoff = datetime(2025, 1, 1, tzinfo=timezone.utc)
    old = {"event": "log", "message": "m", "timestamp": "2024-12-31T23:59:59Z"}
    assert not shown(old, cutoff)
    assert shown({**old, "timestamp": "2025-01-01T00:00:00Z"}, cutoff)
    assert shown({**old, "event": "error"}, cutoff) and shown(old, None)


def test_a_new_follower_gets_the_current_state_and_a_resuming_one_everything() -> None:
    s = "deployment_state"
    log = [
        Event(1, {"event": s, "n": "queued"}),
        Event(2, {"event": "log", "n": "a"}),
        Event(3, {"event": s, "n": "in_progress"}),
        Event(4, {"event": "log", "n": "b"}),
    ]
    assert [e.id for e in opening(log, after=0, state_event=s)] == [2, 3, 4]
    assert [e.id for e in opening(log, after=1, state_event=s)] == [2, 3, 4]
    assert [e.id for e in opening(log, after=2, state_event=s)] == [3, 4]
    assert opening(log, after=4, state_event=s) == []
    assert opening([], after=0, state_event=s) == []


# --- helpers -----------------------------------------------------------------------------


def _validator(op: str) -> jsonschema.Draft202012Validator:
    schema = _spec.operation(op).response_schema
    assert schema is not None
    root = {**schema, "components": _spec.spec()["components"]}
    return jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


async def raw_follow(
    fake: FakeKernel, op: str, rid: str, headers: Mapping[str, str] | None = None
) -> list[tuple[int, dict[str, Any]]]:
    """A finished stream's events as sent: (id, data), each checked with jsonschema."""
    auth = {"Authorization": f"Bearer {fake.api_key}", **(headers or {})}
    async with aiohttp.ClientSession() as http:
        async with http.get(fake.base_url + PATHS[op].format(rid), headers=auth) as r:
            assert r.status == 200, await r.text()
            assert r.content_type == "text/event-stream"
            text = (await r.read()).decode()
    found = []
    validator = _validator(op)
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        assert set(fields) == {"id", "data"}, block  # every event carries an id
        data = json.loads(fields["data"])
        errors = list(validator.iter_errors(data))
        assert not errors, (op, errors[0].message, data)
        found.append((int(fields["id"]), data))
    ids = [i for i, _ in found]
    assert ids == sorted(set(ids)), ids
    return found


def sig(event: Any) -> tuple[str, str | None]:
    """What an event says, the same for a parsed model and a raw dict."""

    def get(value: Any, key: str) -> Any:
        return value.get(key) if isinstance(value, dict) else getattr(value, key, None)

    kind: str = get(event, "event")
    for key in ("deployment", "invocation"):
        nested = get(event, key)
        if nested is not None:
            return kind, get(nested, "status")
    if kind == "error":
        return kind, get(get(event, "error"), "message")
    return kind, get(event, "message") or get(event, "flow_status")


def log(message: str) -> dict[str, Any]:
    return {"event": "log", "message": message}


def error(message: str) -> dict[str, Any]:
    return {"event": "error", "error": {"code": "app_error", "message": message}}


async def make(client: AsyncKernel, op: str) -> str:
    """A new resource to follow."""
    if op == "deployments.follow":
        return (await client.deployments.create(file=b"PK\x05\x06" + bytes(18), version="1")).id
    if op == "invocations.follow":
        made = await client.invocations.create(action_name="act", app_name="app", version="1")
        return made.id
    return (await client.auth.connections.create(domain="example.com", profile_name="p")).id


# Per operation: an event its stream may carry besides states, and the finishing state.
NOTE = {"deployments.follow": log, "invocations.follow": log, "auth.connections.follow": error}
FINISH: dict[str, dict[str, Any]] = {
    "deployments.follow": {"event": "deployment_state", "deployment": {"status": "running"}},
    "invocations.follow": {"event": "invocation_state", "invocation": {"status": "succeeded"}},
    "auth.connections.follow": {
        "event": "managed_auth_state",
        "flow_status": "SUCCESS",
        "flow_step": "COMPLETED",
    },
}
STARTED = {
    "event": "managed_auth_state",
    "flow_status": "IN_PROGRESS",
    "flow_step": "DISCOVERING",
    "flow_type": "LOGIN",
}


async def follow(client: AsyncKernel, op: str, rid: str, **query: Any) -> list[Any]:
    resource: Any = client
    for part in op.split(".")[:-1]:
        resource = getattr(resource, part)
    stream = await resource.follow(rid, **query)
    return [event async for event in stream]


pytestmark = pytest.mark.anyio


# --- served ------------------------------------------------------------------------------


async def test_a_deployment_streams_its_state_what_is_published_and_ends_running(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    dep = await make(client, "deployments.follow")
    fake.publish("deployments.follow", dep, log("building"))

    async def kernel_side() -> None:
        await asyncio.sleep(0.1)
        fake.publish(
            "deployments.follow",
            dep,
            {
                "event": "app_version_summary",
                "id": "ver_1",
                "app_name": "app",
                "version": "1",
                "region": "aws.us-east-1a",
                "actions": [{"name": "act"}],
            },
        )
        fake.publish("deployments.follow", dep, FINISH["deployments.follow"])

    task = asyncio.ensure_future(kernel_side())
    got = await follow(client, "deployments.follow", dep)
    await task
    assert [sig(e) for e in got] == [
        ("deployment_state", "queued"),
        ("log", "building"),
        ("app_version_summary", None),
        ("deployment_state", "running"),
    ]
    assert got[0].deployment.id == dep and got[2].actions[0].name == "act"
    assert (await client.deployments.retrieve(dep)).status == "running"  # the state it became
    # A finished deployment's stream, opened later: its current state only, then the end.
    raw = await raw_follow(fake, "deployments.follow", dep)
    assert [sig(d) for _, d in raw] == [sig(e) for e in got[1:]]


async def test_deleting_a_deployment_stops_it_and_ends_its_followers(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    dep = await make(client, "deployments.follow")

    async def delete() -> None:
        await asyncio.sleep(0.1)
        await client.deployments.delete(dep)

    task = asyncio.ensure_future(delete())
    got = await follow(client, "deployments.follow", dep)
    await task
    assert [sig(e) for e in got] == [
        ("deployment_state", "queued"),
        ("deployment_state", "stopped"),
    ]
    with pytest.raises(NotFoundError):
        await follow(client, "deployments.follow", dep)


async def test_an_invocation_marked_succeeded_through_the_api_ends_its_stream(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    inv = await make(client, "invocations.follow")
    fake.publish("invocations.follow", inv, log("step 1"))

    async def finish() -> None:
        await asyncio.sleep(0.1)
        await client.invocations.update(inv, status="succeeded", output='{"ok": true}')

    task = asyncio.ensure_future(finish())
    got = await follow(client, "invocations.follow", inv)
    await task
    assert [sig(e) for e in got] == [
        ("invocation_state", "queued"),
        ("log", "step 1"),
        ("invocation_state", "succeeded"),
    ]
    final = got[-1].invocation
    assert final.output == '{"ok": true}' and final.finished_at is not None
    assert final.started_at == got[0].invocation.started_at  # one start, kept
    raw = await raw_follow(fake, "invocations.follow", inv)
    assert [sig(d) for _, d in raw] == [("log", "step 1"), ("invocation_state", "succeeded")]


async def test_a_connections_flow_streams_until_it_ends_and_the_connection_follows(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    ma = await make(client, "auth.connections.follow")
    assert (await client.auth.connections.retrieve(ma)).status == "NEEDS_AUTH"
    fake.publish("auth.connections.follow", ma, STARTED)

    async def kernel_side() -> None:
        await asyncio.sleep(0.1)
        fake.publish(
            "auth.connections.follow",
            ma,
            {
                "event": "managed_auth_state",
                "flow_status": "IN_PROGRESS",
                "flow_step": "AWAITING_INPUT",
                "discovered_fields": [
                    {"label": "Email", "name": "email", "selector": "#email", "type": "email"}
                ],
            },
        )
        fake.publish("auth.connections.follow", ma, FINISH["auth.connections.follow"])

    task = asyncio.ensure_future(kernel_side())
    got = await follow(client, "auth.connections.follow", ma)
    await task
    assert [(e.flow_status, e.flow_step) for e in got] == [
        ("IN_PROGRESS", "DISCOVERING"),
        ("IN_PROGRESS", "AWAITING_INPUT"),
        ("SUCCESS", "COMPLETED"),
    ]
    assert got[1].discovered_fields[0].name == "email"
    assert got[2].flow_type == "LOGIN"  # a state event is laid over the current state
    after = await client.auth.connections.retrieve(ma)
    assert (after.status, after.flow_status) == ("AUTHENTICATED", "SUCCESS")
    assert after.last_auth_at == got[2].timestamp


async def test_a_later_flow_is_followed_again_and_quiet_changes_add_nothing(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    ma = await make(client, "auth.connections.follow")
    fake.publish("auth.connections.follow", ma, STARTED)
    fake.publish("auth.connections.follow", ma, FINISH["auth.connections.follow"])
    await client.auth.connections.update(ma, login_url="https://example.com/login")
    fake.publish("auth.connections.follow", ma, {**STARTED, "flow_type": "REAUTH"})

    async def kernel_side() -> None:
        await asyncio.sleep(0.1)
        failed = {"flow_status": "FAILED", "error_message": "wrong password"}
        fake.publish("auth.connections.follow", ma, {"event": "managed_auth_state", **failed})

    task = asyncio.ensure_future(kernel_side())
    got = await follow(client, "auth.connections.follow", ma)  # waits for the new flow
    await task
    assert [(e.flow_status, e.flow_type) for e in got] == [
        ("IN_PROGRESS", "REAUTH"),
        ("FAILED", "REAUTH"),
    ]
    assert got[1].error_message == "wrong password"
    resumed = await raw_follow(fake, "auth.connections.follow", ma, {"Last-Event-ID": "1"})
    assert [i for i, _ in resumed] == [2, 3, 4]  # the settings' update changed no state


async def test_deleting_a_connection_cancels_its_flow_underway(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    ma = await make(client, "auth.connections.follow")
    fake.publish("auth.connections.follow", ma, STARTED)

    async def delete() -> None:
        await asyncio.sleep(0.1)
        await client.auth.connections.delete(ma)

    task = asyncio.ensure_future(delete())
    got = await follow(client, "auth.connections.follow", ma)
    await task
    assert [e.flow_status for e in got] == ["IN_PROGRESS", "CANCELED"]


async def test_since_keeps_later_logs_and_an_unreadable_one_is_a_400(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    inv = await make(client, "invocations.follow")
    fake.publish("invocations.follow", inv, {**log("old"), "timestamp": "2020-01-01T00:00:00Z"})
    fake.publish("invocations.follow", inv, log("new"))
    fake.publish("invocations.follow", inv, FINISH["invocations.follow"])
    got = await follow(client, "invocations.follow", inv, since="5m")
    assert [sig(e) for e in got] == [("log", "new"), ("invocation_state", "succeeded")]
    with pytest.raises(BadRequestError, match=r"query\.since"):
        await follow(client, "invocations.follow", inv, since="last tuesday")


@pytest.mark.parametrize("op", OPS)
async def test_unknown_ids_are_404s_before_any_event(
    fake: FakeKernel, client: AsyncKernel, op: str
) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        await follow(client, op, "nope_123")
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {fake.api_key}"}
        async with http.get(fake.base_url + PATHS[op].format("nope_123"), headers=auth) as r:
            assert r.status == 404 and r.content_type == "application/json"


@pytest.mark.parametrize("op", OPS)
async def test_a_published_event_the_schema_refuses_names_its_field(
    fake: FakeKernel, client: AsyncKernel, op: str
) -> None:
    rid = await make(client, op)
    refused: dict[str, dict[str, Any]] = {
        "deployments.follow": {"event": "deployment_state", "deployment": {"status": "done"}},
        "invocations.follow": {"event": "invocation_state", "invocation": {"status": "paused"}},
        "auth.connections.follow": {**STARTED, "flow_step": "WAITING"},
    }
    bad = refused[op]
    field = {
        "deployments.follow": r"event\.deployment\.status",
        "invocations.follow": r"event\.invocation\.status",
        "auth.connections.follow": r"event\.flow_step",
    }[op]
    with pytest.raises(ValueError, match=rf"^{op}: the event is not valid: {field}: expected one"):
        fake.publish(op, rid, bad)
    with pytest.raises(ValueError, match=r"event\.event: expected one of .*got 'telemetry'"):
        fake.publish(op, rid, {"event": "telemetry"})
    with pytest.raises(KeyError, match="nope_1"):
        fake.publish(op, "nope_1", NOTE[op]("x"))
    with pytest.raises(ValueError, match="not a follow stream"):
        fake.publish("browsers.logs.stream", rid, NOTE[op]("x"))
    # Nothing refused reached the stream or changed the resource.
    fake.publish(op, rid, NOTE[op]("kept"))
    fake.publish(op, rid, FINISH[op])
    sent = [sig(d) for _, d in await raw_follow(fake, op, rid)]
    assert sent == [sig(NOTE[op]("kept")), sig(FINISH[op])]


async def test_a_state_event_cannot_name_another_resource(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    dep = await make(client, "deployments.follow")
    event = {"event": "deployment_state", "deployment": {"id": "dep_other", "status": "failed"}}
    with pytest.raises(ValueError, match=r"event\.deployment\.id: this stream follows"):
        fake.publish("deployments.follow", dep, event)
    assert (await client.deployments.retrieve(dep)).status == "queued"


# --- resuming ----------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("drop_after", [1, 2])
async def test_a_dropped_follow_resumes_with_every_event_once_in_order(
    fake: FakeKernel, client: AsyncKernel, op: str, drop_after: int
) -> None:
    rid = await make(client, op)
    if "auth" in op:
        fake.publish(op, rid, STARTED)
    for n in range(5):
        fake.publish(op, rid, NOTE[op](f"note {n}"))
    fake.publish(op, rid, FINISH[op])
    sent = await raw_follow(fake, op, rid)  # what a follower gets, with the ids sent
    assert len(sent) == 6  # the first state, superseded, is not sent to a new follower
    fake.fail(op, status=None, drop_after=drop_after, times=2)
    got = await follow(client, op, rid)
    assert [sig(e) for e in got] == [sig(d) for _, d in sent]
    resumed = [r.headers.get("Last-Event-ID") for r in fake.requests if r.operation == op][1:]
    cut = [str(sent[drop_after - 1][0]), str(sent[2 * drop_after - 1][0])]
    assert resumed == [None, *cut]  # after the raw read: the first ask, then two resumes


@pytest.mark.parametrize("op", OPS)
def test_the_sync_twin_follows_and_resumes_while_events_arrive(
    threaded_fake: FakeKernel, op: str
) -> None:
    fake = threaded_fake
    with Kernel(api_key=fake.api_key, base_url=fake.base_url) as client:
        resource: Any = client
        for part in op.split(".")[:-1]:
            resource = getattr(resource, part)
        if op == "deployments.follow":
            rid = client.deployments.create(file=b"PK\x05\x06" + bytes(18), version="1").id
        elif op == "invocations.follow":
            rid = client.invocations.create(action_name="a", app_name="app", version="1").id
        else:
            rid = client.auth.connections.create(domain="example.com", profile_name="p").id
            fake.publish(op, rid, STARTED)  # from this thread: the loop runs on another
        fake.publish(op, rid, NOTE[op]("early"))

        def kernel_side() -> None:  # later, from a third thread
            for n in range(3):
                fake.publish(op, rid, NOTE[op](f"late {n}"))
            fake.publish(op, rid, FINISH[op])

        fake.fail(op, status=None, drop_after=1, times=3)
        # Kernel's side goes on once the stream has shown its first event (the state when
        # it opened), whatever the machine's load: no race with the opening.
        publisher = threading.Thread(target=kernel_side)
        got: list[Any] = []
        try:
            with resource.follow(rid) as stream:
                for event in stream:
                    got.append(sig(event))
                    if len(got) == 1:
                        publisher.start()
        finally:
            if publisher.is_alive() or got:
                publisher.join()
    first = {
        "deployments.follow": ("deployment_state", "queued"),
        "invocations.follow": ("invocation_state", "queued"),
        "auth.connections.follow": ("managed_auth_state", "IN_PROGRESS"),
    }[op]
    notes = [sig(NOTE[op](m)) for m in ("early", "late 0", "late 1", "late 2")]
    assert got == [first, *notes, sig(FINISH[op])]
    asked = [r.headers.get("Last-Event-ID") for r in fake.requests if r.operation == op]
    assert asked[0] is None and len(asked) >= 4  # three cuts, each resumed after an id
    assert all(a is not None and a.isdigit() for a in asked[1:])
    ids = [int(a or "") for a in asked[1:]]
    assert ids == sorted(set(ids))


# --- the official SDK parses what the emulator sends --------------------------------------


@pytest.mark.once
@pytest.mark.parametrize("op", OPS)
async def test_the_official_async_sdk_parses_every_follow(fake: FakeKernel, op: str) -> None:
    kernel = pytest.importorskip("kernel")
    async with fake.client() as ours:
        rid = await make(ours, op)
    if "auth" in op:
        fake.publish(op, rid, STARTED)
    fake.publish(op, rid, NOTE[op]("hello"))
    fake.publish(op, rid, {"event": "sse_heartbeat"})
    fake.publish(op, rid, error("boom"))
    fake.publish(op, rid, FINISH[op])
    expected = [sig(d) for _, d in await raw_follow(fake, op, rid)]
    async with kernel.AsyncKernel(
        api_key=fake.api_key, base_url=fake.base_url, max_retries=0
    ) as official:
        resource: Any = official
        for part in op.split(".")[:-1]:
            resource = getattr(resource, part)
        stream = await resource.follow(rid)
        got = [event async for event in stream]
    assert [sig(e) for e in got] == expected
    names = {type(e).__name__ for e in got}
    assert "HeartbeatEvent" in names and "ErrorEvent" in names
    assert {
        "deployments.follow": "DeploymentStateEvent",
        "invocations.follow": "InvocationStateEvent",
        "auth.connections.follow": "ManagedAuthStateEvent",
    }[op] in names


@pytest.mark.once
@pytest.mark.parametrize("op", OPS)
def test_the_official_sync_sdk_parses_every_follow(threaded_fake: FakeKernel, op: str) -> None:
    kernel = pytest.importorskip("kernel")
    fake = threaded_fake
    with kernel.Kernel(api_key=fake.api_key, base_url=fake.base_url, max_retries=0) as official:
        if op == "deployments.follow":
            rid = official.deployments.create(file=b"PK\x05\x06" + bytes(18), version="1").id
        elif op == "invocations.follow":
            rid = official.invocations.create(action_name="a", app_name="app", version="1").id
        else:
            rid = official.auth.connections.create(domain="example.com", profile_name="p").id
            fake.publish(op, rid, STARTED)
        fake.publish(op, rid, NOTE[op]("hello"))
        fake.publish(op, rid, FINISH[op])
        resource: Any = official
        for part in op.split(".")[:-1]:
            resource = getattr(resource, part)
        got = list(resource.follow(rid))
    assert [sig(e) for e in got] == [sig(NOTE[op]("hello")), sig(FINISH[op])]
