"""``deployments.follow``, ``invocations.follow`` and ``auth.connections.follow`` in the
emulator: each deployment, invocation and managed auth connection has an event log, served
as server-sent events with ids (so a client resumes with ``Last-Event-ID``).

The emulator builds and runs no apps and signs in nowhere, so what a log holds is honest:

- a state event (``deployment_state``, ``invocation_state``, ``managed_auth_state``) when
  the resource is created and whenever its state changes through the emulator
  (``invocations.update(status="succeeded")``, deleting a deployment stops it, deleting a
  connection cancels its flow underway), and
- the events a test publishes (``fake.publish(...)``): logs, app version summaries,
  errors, heartbeats, and state events, which change the resource as Kernel's side would
  (a ``deployment_state`` with status ``running`` makes the deployment running).

A new follower gets the log's events in order (logs filtered by ``since``), of its state
events only the one current when it opens; then every new event. A stream ends, as the
API's does, once the resource is finished: a deployment ``running``, ``failed`` or
``stopped``; an invocation ``succeeded`` or ``failed``; a connection's flow ``SUCCESS``,
``FAILED``, ``EXPIRED`` or ``CANCELED``. Deleted resources' streams end too.

The rules are pure functions; `FollowStreams` keeps the logs, serves them and hands
work from other threads to the emulator's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import attrs
from aiohttp import web

from ._events import Event, EventLog, serve_sse
from ._spec import Schema, operation, resolve
from ._validate import Problem, check, parse_datetime

__all__ = [
    "FOLLOWED",
    "STATES",
    "FollowStreams",
    "State",
    "check_event",
    "event_kinds",
    "member",
    "opening",
    "shown",
    "since_cutoff",
    "state_fields",
]

T = TypeVar("T")


@attrs.frozen
class State:
    """How a followed kind's state travels in its state events.

    Attributes:
        event: The state event's ``event`` value (``deployment_state``).
        field: The property holding the resource (``deployment``); None when the state's
            fields are the event's own (``managed_auth_state``).
        status: The field telling whether it is finished (``status``, ``flow_status``).
        terminal: The values of `status` that end a stream.
    """

    event: str
    field: str | None
    status: str
    terminal: frozenset[str]

    def ends(self, state: Mapping[str, Any]) -> bool:
        """Whether a state (the resource, or the flow's fields) ends its followers."""
        return state.get(self.status) in self.terminal


# operation -> the kind it follows
FOLLOWED: Mapping[str, str] = {
    "deployments.follow": "deployments",
    "invocations.follow": "invocations",
    "auth.connections.follow": "auth.connections",
}

STATES: Mapping[str, State] = {
    "deployments": State(
        "deployment_state", "deployment", "status", frozenset({"running", "failed", "stopped"})
    ),
    "invocations": State(
        "invocation_state", "invocation", "status", frozenset({"succeeded", "failed"})
    ),
    "auth.connections": State(
        "managed_auth_state",
        None,
        "flow_status",
        frozenset({"SUCCESS", "FAILED", "EXPIRED", "CANCELED"}),
    ),
}


# --- pure rules --------------------------------------------------------------------------


def _members(op_name: str) -> Sequence[Schema]:
    schema = operation(op_name).response_schema
    assert schema is not None
    resolved = resolve(schema)
    members: Sequence[Schema] = resolved.get("anyOf") or resolved.get("oneOf") or [schema]
    return members


def _event_value(schema: Schema) -> str | None:
    prop = resolve(schema).get("properties", {}).get("event", {})
    values = prop.get("enum") or ([prop["const"]] if "const" in prop else [])
    return str(values[0]) if len(values) == 1 else None


def event_kinds(op_name: str) -> list[str]:
    """The ``event`` values an operation's stream carries (``log``, ``deployment_state``...)."""
    return [v for v in (_event_value(m) for m in _members(op_name)) if v is not None]


def member(op_name: str, kind: str) -> Schema | None:
    """The schema of the events of one ``event`` value in an operation's stream."""
    for schema in _members(op_name):
        if _event_value(schema) == kind:
            return schema
    return None


def check_event(op_name: str, event: Any) -> list[Problem]:
    """The problems of an event against its operation's event schema, each naming its
    field (``event.deployment.status: expected one of ...``)."""
    if not isinstance(event, Mapping):
        return [Problem("event", f"expected an object, got {type(event).__name__}")]
    kind = event.get("event")
    schema = member(op_name, kind) if isinstance(kind, str) else None
    if schema is None:
        kinds = ", ".join(event_kinds(op_name))
        return [Problem("event.event", f"expected one of {kinds} (for {op_name}), got {kind!r}")]
    return check(schema, dict(event), "event")


def state_fields(op_name: str, kind: str) -> frozenset[str]:
    """The fields of a flat state event that describe the resource (for
    ``managed_auth_state``: ``flow_status``, ``flow_step``, ``hosted_url``...)."""
    schema = member(op_name, STATES[kind].event)
    assert schema is not None
    return frozenset(resolve(schema).get("properties", {})) - {"event", "timestamp"}


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NAIVE = re.compile(r"\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d(\.\d{1,6})?)?)?")


def since_cutoff(text: str | None, now: datetime) -> datetime | None:
    """The earliest log time a ``since`` asks for: an RFC 3339 time, a date or a zone-less
    time (UTC: ``2025-01-02``, ``2025-01-02T15:04``), or a duration back from `now`
    (``5m``, ``1h30m``, ``250ms``). None without one; `ValueError` when unreadable."""
    if text is None or text == "":
        return None
    found = parse_datetime(text)
    if found is not None:
        return found
    if _NAIVE.fullmatch(text):
        day, _, clock = text.partition("T")
        head, dot, frac = clock.partition(".")
        if dot:  # Python 3.10 reads 3 or 6 fraction digits only
            clock = f"{head}.{frac.ljust(6, '0')}"
        with contextlib.suppress(ValueError):  # e.g. month 13: refused below
            when = datetime.fromisoformat(f"{day}T{clock}" if clock else day)
            return when.replace(tzinfo=timezone.utc)
    parts = _DURATION.findall(text)
    if parts and "".join(n + u for n, u in parts) == text:
        return now - timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
    raise ValueError(f"expected an RFC 3339 time, a date or a duration such as 5m, got {text!r}")


def shown(data: Mapping[str, Any], cutoff: datetime | None) -> bool:
    """Whether an event passes ``since``: only log events are filtered, by their time."""
    if cutoff is None or data.get("event") != "log":
        return True
    when = parse_datetime(str(data.get("timestamp", "")))
    return when is None or when >= cutoff


def opening(events: Iterable[Event], *, after: int, state_event: str) -> list[Event]:
    """What a stream opening after id `after` gets of the kept events: everything after
    it for a client resuming; for a new one (``after`` 0), every event but the state
    events a later one replaced (it learns the state current when it opens)."""
    found = [e for e in events if e.id > after]
    if after:
        return found
    states = [e.id for e in found if e.data.get("event") == state_event]
    current = states[-1] if states else None
    return [e for e in found if e.data.get("event") != state_event or e.id == current]


# --- the logs ----------------------------------------------------------------------------


class FollowStreams:
    """Every followed resource's event log (by kind and ID), served as server-sent events.

    Logs are touched on the emulator's loop only; `call` brings work from other threads
    (a sync test publishing an event) onto it and waits for its result.
    """

    def __init__(self) -> None:
        self._logs: dict[tuple[str, str], EventLog] = {}
        self._last_state: dict[tuple[str, str], dict[str, Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def call(self, work: Callable[[], T]) -> T:
        """Run `work` on the emulator's loop (here when already on it, or when it is not
        running) and answer its result or raise its exception."""
        loop = self._loop
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop or not loop.is_running():
            return work()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(work())
            except BaseException as exc:  # handed to the caller's thread
                done.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return done.result(timeout=30)

    def log(self, kind: str, rid: str) -> EventLog:
        """The resource's log, made on first use (on the emulator's loop)."""
        key = (kind, rid)
        found = self._logs.get(key)
        if found is None:
            with contextlib.suppress(RuntimeError):  # made off the loop: nobody follows yet
                self._loop = asyncio.get_running_loop()
            found = self._logs[key] = EventLog()
        return found

    def has(self, kind: str, rid: str) -> bool:
        """Whether the resource has a log yet."""
        return (kind, rid) in self._logs

    def add(self, kind: str, rid: str, data: dict[str, Any]) -> Event:
        """Append a published event (not a state) to the resource's log."""
        return self.log(kind, rid).add(data)

    def state(
        self, kind: str, rid: str, data: dict[str, Any], *, force: bool = False
    ) -> Event | None:
        """Append a state event unless (without `force`) it says what the last one said,
        times aside. A finished state ends the followers; a state underway (a new flow)
        lets new followers wait again."""
        key = (kind, rid)
        same = {k: v for k, v in data.items() if k != "timestamp"}
        if self._last_state.get(key) == same and not force:
            return None
        self._last_state[key] = same
        log = self.log(kind, rid)
        event = log.add(data)
        spec = STATES[kind]
        state = data.get(spec.field) if spec.field else data
        if isinstance(state, Mapping) and spec.ends(state):
            log.close()
        else:
            log.closed = False
        return event

    def end(self, kind: str, rid: str) -> None:
        """The resource is gone: its followers finish, and the log is forgotten."""
        log = self._logs.pop((kind, rid), None)
        self._last_state.pop((kind, rid), None)
        if log is not None:
            log.close()

    async def serve(
        self,
        request: web.Request,
        kind: str,
        rid: str,
        *,
        after: int,
        cutoff: datetime | None,
        drop_after: int | None,
    ) -> web.StreamResponse:
        """Serve the resource's log to a follower that saw events up to id `after`."""
        log = self.log(kind, rid)
        state_event = STATES[kind].event

        async def events() -> AsyncIterator[Event]:
            kept = log.since(after)
            for event in opening(kept, after=after, state_event=state_event):
                if shown(event.data, cutoff):
                    yield event
            async for event in log.follow(kept[-1].id if kept else after):
                if shown(event.data, cutoff):
                    yield event

        return await serve_sse(request, events(), drop_after=drop_after)
