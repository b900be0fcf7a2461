"""FakeKernel: a local Kernel API (browsers and their replays) on aiohttp.web, with fault
injection. The browser sessions' rules live in `_sessions`; what runs the browsers and makes
the videos is a backend (`_backend`), reached through `_bridge` whichever it is; this module
is HTTP and replays."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import attrs
from aiohttp import web

from .. import _hosted
from ._backend import Backend, InMemoryBackend, sample_video
from ._bridge import BackendBridge
from ._families import FAMILY_MODULES
from ._sessions import (
    Refused,
    ReplayState,
    Session,
    SessionTable,
    attach_profile,
    browser_not_found,
    new_id,
    parse_create,
    replay_not_found,
)
from ._spec import SERVED_BY_EMULATOR
from ._spec import index as spec_index

if TYPE_CHECKING:
    from .._client import AsyncKernel
    from ._computer import ComputerState

__all__ = ["Fault", "FakeKernel", "RecordedRequest"]

OPERATIONS = {
    "start": "start",
    "startBrowserReplayRecording": "start",
    "list": "list",
    "listBrowserReplays": "list",
    "stop": "stop",
    "stopBrowserReplayRecording": "stop",
    "download": "download",
    "downloadBrowserReplay": "download",
    "create": "create",
    "createBrowser": "create",
    "retrieve": "retrieve",
    "get": "retrieve",
    "retrieveBrowser": "retrieve",
    "update": "update",
    "updateBrowser": "update",
    "delete": "delete",
    "deleteBrowser": "delete",
    "list_browsers": "list_browsers",
    "listBrowsers": "list_browsers",
    # The official SDK's names of the operations the emulator serves itself.
    "browsers.create": "create",
    "browsers.retrieve": "retrieve",
    "browsers.update": "update",
    "browsers.list": "list_browsers",
    "browsers.delete": "delete",
    "browsers.delete_by_id": "delete",
    "browsers.replays.start": "start",
    "browsers.replays.list": "list",
    "browsers.replays.stop": "stop",
    "browsers.replays.download": "download",
}

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    501: "not_implemented",
    408: "request_timeout",
    409: "conflict",
    422: "unprocessable_entity",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


@attrs.frozen
class RecordedRequest:
    """A request the emulator received (the Authorization value is hidden from repr)."""

    operation: str | None
    method: str
    raw_path: str
    headers: Mapping[str, str] = attrs.field(repr=False)
    body: bytes
    fault: bool

    @property
    def authorization(self) -> str | None:
        """The Authorization header as received."""
        return self.headers.get("Authorization")


@attrs.define
class Fault:
    """One injected fault; see `FakeKernel.fail`."""

    operation: str
    status: int | None = 503
    times: int | None = 1
    retry_after: float | str | None = None
    retry_after_ms: float | None = None
    reset: bool = False
    truncate: bool = False
    delay: float = 0.0
    body: bytes | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    should_retry: bool | None = None
    drop_after: int | None = None
    hits: int = 0


@attrs.frozen
class FamilyCall:
    """One browser-family request, checked against the spec.

    Attributes:
        browser_id: The active browser's session ID (names resolved).
        params: The other path parameters (e.g. ``process_id``), decoded.
        query: The query parameters, typed by the spec.
        body: The JSON body (a dict) or form fields, typed by the spec; None without one.
        raw: The request body's bytes (raw uploads).
        request: The aiohttp request (for streaming answers).
        fault: The injected fault this request drew, for those a handler carries out
            (``drop_after``); None without one.
    """

    browser_id: str
    params: Mapping[str, str]
    query: Mapping[str, Any]
    body: Any
    raw: bytes
    request: web.Request
    fault: Fault | None = None


BrowserOp = Callable[[FamilyCall], Awaitable[web.StreamResponse]]
"""A handler of one operation of a browser's own families."""


class FakeKernel:
    """A real HTTP server on loopback that behaves like the Kernel browsers and replays API.

    Browser sessions: created, retrieved (by ID or by name among active sessions),
    updated, deleted (retrieve then needs ``include_deleted``; their replays stay
    listable and downloadable, new ones are refused) and listed by offset pages with
    ``X-Has-More`` / ``X-Next-Offset``. Replays are refused on headless browsers, and
    above 20 fps without ``gpu``.

    A replay goes recording -> finalising (download answers 202 with Retry-After until the
    backend has finished it: `finalise_seconds` after stop in memory) -> ready (download
    answers the video: in memory the sample MP4, or ``video``). Stop is
    idempotent; a second start on a recording browser answers 409; unknown IDs 404;
    a missing or wrong bearer key 401; invalid start parameters 400 with details.

    Use ``async with FakeKernel() as fake`` in async code, or
    ``with FakeKernel.in_thread() as fake`` from sync code (the server then runs on
    its own thread). Every request is recorded in `requests`.

    ``backend="chromium"`` (needs Chromium and the ``local`` extra) makes every created
    browser a real headless Chromium whose ``cdp_ws_url`` Playwright's
    ``connect_over_cdp`` accepts, and every replay a real H.264 MP4 of its page; at most
    ``max_browsers`` run at once (429 past that), idle ones end after their
    ``timeout_seconds`` (their 404s then say so), and all end with the emulator. A missing
    Chromium or PyAV raises `LocalSetupError` here, at construction. The default,
    ``"memory"`` (an `InMemoryBackend`), runs nothing (a ``cdp_ws_url`` answers 501 saying
    so) and serves the sample video. Both sit behind the same `Backend` interface; an
    instance of one may be passed as ``backend`` too.

    IDs have one shape however they were made (``br_`` or ``rp_`` and 16 hex digits), and
    404s one wording on every path.

    Every other family of the API (profiles, proxies, extensions, pools, credentials,
    vaults, projects, deployments...) is served from the spec with generic state: create,
    retrieve (by ID or name), update, list (the spec's pagination) and delete, 404s and
    409s for duplicate names; requests are validated against the spec (400 naming the
    field). A browser created with ``profile=``, ``proxy_id=``, ``extensions=`` or
    ``vaults=`` must refer to existing ones (404 otherwise; ``check_references=False``
    turns that off); its answers show the profile (``profile``, ``profile_save_changes``).
    Pools hand out browsers and wait (then 204) when empty. What cannot
    run here answers 501 naming the operation. `fail` takes those operations' official
    names too (``fake.fail("profiles.create", status=503)``).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        finalise_seconds: float = 0.5,
        video: bytes | None = None,
        backend: str | Backend = "memory",
        max_browsers: int = 4,
        check_references: bool = True,
    ) -> None:
        self.api_key = api_key if api_key is not None else "fake-" + secrets.token_hex(12)
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._browsers: dict[str, list[ReplayState]] = {}
        self._sessions = SessionTable()
        self._starts: dict[str, float] = {}
        self._faults: list[Fault] = []
        self._runner: web.AppRunner | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._bridge = self._bridge_for(backend, max_browsers, video, finalise_seconds)
        self._check_references = check_references
        from ._generic import GenericAPI

        # Every other family of the API, from the spec (generic state, a few real rules,
        # 501 naming what cannot run here).
        # The browser's own families (computer, fs, process, logs...): handlers by the
        # official operation name, each registered by its module (see `BrowserOps`).
        from ._observe import BrowserLogs

        self.logs = BrowserLogs()
        from ._machine import Machines

        self.machines = Machines(lambda: not isinstance(self._bridge.backend, InMemoryBackend))
        from ._telemetry import Telemetry

        self._telemetry = Telemetry(self)
        self._browser_ops: dict[str, BrowserOp] = {}
        for module in FAMILY_MODULES:
            self._browser_ops.update(importlib.import_module(module).register(self))
        # Every operation the emulator's own routes do not answer (by the spec).
        self._index = spec_index(exclude_served=True)
        self._generic = GenericAPI(
            make_browser=self._pool_browser,
            end_browser=self._expire,
            browser_exists=self._browser_id,
            exclude=SERVED_BY_EMULATOR | frozenset(self._browser_ops),
            check_references=check_references,
        )

    def _bridge_for(
        self,
        backend: str | Backend,
        max_browsers: int,
        video: bytes | None,
        finalise_seconds: float,
    ) -> BackendBridge:
        if backend == "memory":
            backend = InMemoryBackend(video, finalise_seconds=finalise_seconds)
        elif backend == "chromium":
            from ._chromium_backend import ChromiumBackend

            backend = ChromiumBackend(max_browsers=max_browsers)
        if not isinstance(backend, Backend):
            raise ValueError(f"backend must be 'memory', 'chromium' or a Backend: {backend!r}")
        return BackendBridge(backend, self._active_session, self._expire)

    # -- lifecycle ------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The backend running the browsers (an `InMemoryBackend` by default)."""
        return self._bridge.backend

    @property
    def video(self) -> bytes:
        """What in-memory recordings download as (``video=``, else the sample MP4)."""
        memory = self._memory
        return memory.video if memory is not None else sample_video()

    @video.setter
    def video(self, value: bytes) -> None:
        if self._memory is not None:
            self._memory.video = value

    @property
    def finalise_seconds(self) -> float:
        """How long in-memory recordings stay finalising (202) after they stop."""
        memory = self._memory
        return memory.finalise_seconds if memory is not None else 0.0

    @finalise_seconds.setter
    def finalise_seconds(self, value: float) -> None:
        if self._memory is not None:
            self._memory.finalise_seconds = value

    @property
    def _memory(self) -> InMemoryBackend | None:
        backend = self._bridge.backend
        return backend if isinstance(backend, InMemoryBackend) else None

    @property
    def base_url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:41234``."""
        if self._runner is None:
            raise RuntimeError("FakeKernel is not running; use `async with FakeKernel()`")
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Start serving (use `async with` instead where you can)."""

        # A middleware sees every request, routed or not: the emulator parses raw paths
        # itself, as a real server does, so any percent-encoded ID reaches it intact.
        @web.middleware
        async def dispatch(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.match_info.route.name == "cdp":
                return await handler(request)  # type: ignore[no-any-return]
            return await self._handle(request)

        # Uploads (extensions, deployments, files) may be large: 1 GiB.
        app = web.Application(client_max_size=1 << 30, middlewares=[dispatch])
        # The DevTools websockets (token-checked) of the browsers that can be driven.
        app.router.add_get("/cdp/{session_id}", self._cdp, name="cdp")
        # In-flight handlers (e.g. an injected delay) must not hold up shutdown.
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()  # e.g. the port is taken: leave nothing half-open
            raise
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]
        self._runner = runner
        _hosted.served(self.base_url, asyncio.get_running_loop())

    async def stop(self) -> None:
        """Stop serving and close every connection."""
        runner = self._runner
        if runner is None:
            return
        _hosted.unserved(self.base_url)
        await runner.cleanup()  # handlers still in flight may read base_url meanwhile
        self._runner = None
        await self.machines.aclose()  # every browser's processes and sandbox go too
        await self._bridge.aclose()

    async def __aenter__(self) -> FakeKernel:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @classmethod
    @contextlib.contextmanager
    def in_thread(cls, **kwargs: Any) -> Iterator[FakeKernel]:
        """Run a FakeKernel on a background thread for sync code and tests."""
        fake = cls(**kwargs)
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(fake.start())
            except BaseException as exc:
                failure.append(exc)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(fake.stop())
            # Handlers still sleeping in an injected delay: cancel them, then close.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        thread = threading.Thread(target=run, name="kernel-fake", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        fake._thread_loop = loop
        try:
            yield fake
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)

    def client(self, **kwargs: Any) -> AsyncKernel:
        """An `AsyncKernel` pointed at this emulator (keyword options pass through)."""
        from .._client import AsyncKernel

        kwargs.setdefault("api_key", self.api_key)
        kwargs.setdefault("base_url", self.base_url)
        return AsyncKernel(**kwargs)

    # -- state and faults -----------------------------------------------------------

    def create_browser(self, browser_id: str | None = None, **fields: Any) -> str:
        """Create a browser session (as ``POST /browsers`` would, with `fields` such as
        ``headless=True`` or ``name=...``) and return its ID.

        `TypeError` for a field ``POST /browsers`` does not take; `ValueError` (saying why)
        for a value the API would refuse."""
        unknown = sorted(set(fields) - _create_fields())
        if unknown:
            raise TypeError(
                f"create_browser() got unknown field(s) {', '.join(unknown)}; "
                f"POST /browsers takes {', '.join(sorted(_create_fields()))}"
            )
        with self._lock:
            if browser_id is not None and browser_id in self._sessions.sessions:
                return browser_id
            try:
                made = self._session_fields(fields)
                session = self._sessions.add(made, session_id=browser_id)
            except Refused as exc:  # the API's 400/409, as a test helper's error
                raise ValueError(_refusal_text(exc)) from None
            bid = session.session_id
            self._browsers.setdefault(bid, [])
        self._telemetry.begin(bid, session.start_url)
        try:
            self._from_outside(self._bridge.created(session))
        except BaseException:
            self._forget(session.session_id)
            raise
        self.log(bid, f"browser {bid} created")  # as for one created through the API
        return bid

    def _from_outside(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a backend call for a caller that cannot await it."""
        if self._memory is not None:
            # It starts nothing and never waits: done at once, on any thread.
            try:
                work.send(None)
            except StopIteration:
                return
            work.close()
            raise AssertionError("the in-memory backend waited")
        # A process backend runs on the emulator's loop: reachable from another thread only.
        loop = self._thread_loop
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            work.close()
            raise RuntimeError(
                "with a process backend, create browsers through the API "
                "(await client.browsers.create()) or run FakeKernel.in_thread()"
            )
        asyncio.run_coroutine_threadsafe(work, loop).result()

    def sessions(self, status: str = "active") -> list[dict[str, Any]]:
        """The browser sessions (``active``, ``deleted`` or ``all``) as the API lists them."""
        with self._lock:
            wanted = self._sessions.sessions.values()
            return [
                s.as_json(self.base_url)
                for s in wanted
                if status == "all" or s.active == (status == "active")
            ]

    def fail(
        self,
        operation: str,
        *,
        status: int | None = 503,
        times: int | None = 1,
        retry_after: float | str | None = None,
        retry_after_ms: float | None = None,
        reset: bool = False,
        truncate: bool = False,
        delay: float = 0.0,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        should_retry: bool | None = None,
        drop_after: int | None = None,
    ) -> Fault:
        """Make the next `times` calls of `operation` fail (`None`: every call).

        Args:
            operation: The official SDK's name (``browsers.retrieve``,
                ``browsers.replays.list``, ``profiles.create``...); a short name:
                ``start``, ``list``, ``stop``, ``download`` (replays: ``list`` is
                ``browsers.replays.list``), ``create``, ``retrieve``, ``update``,
                ``delete``, ``list_browsers`` (browsers); an operationId; or ``*``.
            status: Status to answer with, 100-599 (a documented Error body unless
                `body`); ``None`` answers for real, after `reset`, `truncate`, `delay` or
                `drop_after`, one of which is then needed.
            times: How many calls fail, at least 1 (``None``: every call).
            retry_after: ``Retry-After`` value (seconds, or a string such as an HTTP-date).
            retry_after_ms: ``retry-after-ms`` value.
            reset: Close the connection before any response.
            truncate: Send headers promising the full body, then half of it, then close.
                With ``status=None`` applies to the real response.
            delay: Seconds to wait before answering (slow headers); with ``status=None``
                the real answer follows the delay.
            body: Raw body bytes instead of the Error JSON.
            headers: Extra response headers.
            should_retry: Send ``x-should-retry: true|false``.
            drop_after: Event streams (with ``status=None``): cut the connection, with no
                proper end, after this many events (an int >= 0; clients with an event
                id resume).

        Raises:
            ValueError: An unknown operation, or arguments that do not fit together.
            TypeError: An argument of the wrong type.
        """
        op = OPERATIONS.get(operation, operation)
        known = set(OPERATIONS.values()) | {"*"} | {op.sdk_name for op in self._index}
        if op not in known:
            short = ", ".join(sorted(set(OPERATIONS.values())))
            raise ValueError(
                f"unknown operation {operation!r}: use an official SDK name (such as "
                "'browsers.retrieve', 'browsers.replays.list' or 'profiles.create'), "
                f"a short name ({short}; 'list' is browsers.replays.list), or '*'"
            )
        check_fault(status, times, reset, truncate, delay, drop_after)
        fault = Fault(
            op,
            status=status,
            times=times,
            retry_after=retry_after,
            retry_after_ms=retry_after_ms,
            reset=reset,
            truncate=truncate,
            delay=delay,
            body=body,
            headers=dict(headers or {}),
            should_retry=should_retry,
            drop_after=drop_after,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every pending fault."""
        with self._lock:
            self._faults.clear()

    def replays(self, browser_id: str) -> list[dict[str, Any]]:
        """The replays of a browser as the API would list them."""
        base = self.base_url if self._runner is not None else ""
        with self._lock:
            return [r.as_json(base) for r in self._browsers.get(browser_id, [])]

    def log(self, browser_id: str, message: str, *, path: str | None = None) -> None:
        """Add a line to a browser's log (``browsers.logs.stream`` serves it; with `path`,
        to the log of that file, for ``source="path"``). Any thread. `KeyError` for a browser
        the emulator never had; `TypeError` for a `message` that is not a str."""
        from ._observe import SUPERVISOR

        if not isinstance(message, str):
            raise TypeError(f"a log line is a str, not {type(message).__name__}")
        with self._lock:
            known = browser_id in self._sessions.sessions
        if not known:
            raise KeyError(f"no browser {browser_id!r} in the emulator (log takes a browser ID)")
        self.logs.add(browser_id, message, source=path or SUPERVISOR)

    def publish(self, operation: str, resource_id: str, event: Mapping[str, Any]) -> int:
        """Add an event to what ``deployments.follow``, ``invocations.follow`` or
        ``auth.connections.follow`` streams for a resource (by ID), as Kernel's side would
        send it, and answer its event id. Any thread.

        The event is checked against the operation's event schema (`ValueError` naming the
        field); ``timestamp`` defaults to now. A state event (``deployment_state``,
        ``invocation_state``, ``managed_auth_state``) is laid over the resource's current
        state, which it becomes (``{"event": "deployment_state", "deployment": {"status":
        "running"}}`` makes the deployment running): a finished state ends the streams.
        `KeyError` for a resource the emulator does not have.
        """
        if not isinstance(resource_id, str):
            raise TypeError(f"a resource ID is a str, not {type(resource_id).__name__}")
        return self._generic.publish(operation, resource_id, event)

    def telemetry(self, browser_id: str, event: Mapping[str, Any]) -> dict[str, Any]:
        """Record a telemetry event of a browser (by ID, or by name while it is active), as
        ``browsers.telemetry.events`` and ``.stream`` then serve it; any thread.

        ``event`` is one of the API's telemetry events, e.g. ``{"type": "console_log",
        "data": {"text": "hi"}}``: ``category``, ``ts`` (now, in Unix microseconds) and
        ``source`` are filled in when missing, and the whole is checked against the spec
        (`ValueError` naming the field that does not fit). The browser must capture the
        event's category, as on Kernel (`ValueError` saying which ``telemetry`` setting
        does); `KeyError` for a browser that is not active. Returns the recorded
        ``{"seq", "event"}``."""
        return self._telemetry.add(browser_id, event)

    def on_exec(
        self,
        command: str | Callable[[str, Sequence[str]], bool],
        *,
        stdout: bytes = b"",
        stderr: bytes = b"",
        exit_code: int = 0,
        hold: bool = False,
    ) -> None:
        """Script what ``browsers.process.exec``/``spawn`` answer in memory (the default
        backend runs nothing): commands named `command` (or for which the callable
        ``(command, args) -> bool`` is true) print this and exit with `exit_code`; a
        spawned one with `hold` runs until killed. The newest matching script wins; an
        unscripted command is a 400 naming it. On the local Chromium backend commands run
        for real, in the browser's sandbox directory. `TypeError` for output that is not
        bytes or an `exit_code` that is not an int."""
        from ._processes import script

        self.machines.scripts.append(script(command, stdout, stderr, exit_code, hold))

    def computer(self, browser_id: str) -> ComputerState:
        """What the emulator keeps of a browser's computer use (by ID, or by name while it
        is active; still there after it ends): ``log`` (every ``browsers.computer`` action
        received, a batch's one by one), ``mouse``, ``clipboard``, ``cursor_hidden`` and
        ``screen_colour`` (the in-memory screenshots' colour). `KeyError` for a browser
        the emulator never had."""
        from ._computer import state_of

        return state_of(self, browser_id)

    def count(self, operation: str | None = None) -> int:
        """How many requests (of one operation) were received."""
        op = OPERATIONS.get(operation, operation) if operation else None
        return sum(1 for r in self.requests if op is None or r.operation == op)

    def _take_fault(self, op: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.operation in (op, "*") and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    fault.hits += 1
                    return fault
        return None

    # -- HTTP -----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        parts = request.raw_path.split("?", 1)[0].split("/")[1:]
        method = request.method
        op, args = _route(method, parts)
        found = self._index.match(method, request.raw_path) if op is None else None
        generic = found.operation.sdk_name if found is not None else None
        name = op if op is not None else generic
        fault = self._take_fault(name) if name is not None else None
        self.requests.append(
            RecordedRequest(
                name, method, request.raw_path, dict(request.headers), body, bool(fault)
            )
        )
        if name is None:
            if args is not None or self._index.allowed(request.raw_path):
                return _error(405, "method_not_allowed", f"{method} is not allowed here")
            path = request.raw_path.split("?", 1)[0]  # a query may hold a token: never echo it
            return _error(404, "not_found", f"no route for {path}")
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.reset:
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError  # the connection is gone; nothing to answer
            if fault.status is not None:
                return await self._fault_response(request, fault)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "unauthorized", "missing or invalid API key")
        started = time.perf_counter()
        try:
            family = self._browser_ops.get(generic) if generic is not None else None
            if family is not None:
                resp: web.StreamResponse = await self._family(family, request, body, fault)
            elif op is None:
                drop_after = fault.drop_after if fault is not None else None
                answer = await self._generic.dispatch(request, body, drop_after=drop_after)
                assert answer is not None  # match() found its operation
                resp = answer
            else:
                assert args is not None
                resp = await getattr(self, f"_op_{op}")(request, body, *args)
        except Refused as refused:
            resp = _refusal(refused)
        # A call the browser's VM would have handled is reported in its telemetry.
        ref = args[0] if args else None  # the replays' routes: the browser first
        if found is not None:
            ref = found.path_params.get("id_or_name")
        elapsed = time.perf_counter() - started
        self._telemetry.served(name, ref, request, resp.status, elapsed)
        if fault is not None and fault.truncate:
            return await _truncated(request, resp)
        return resp

    async def _fault_response(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        status = fault.status
        assert status is not None
        headers = dict(fault.headers)
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = str(fault.retry_after_ms)
        if fault.should_retry is not None:
            headers["x-should-retry"] = "true" if fault.should_retry else "false"
        if fault.body is not None:
            resp = web.Response(status=status, body=fault.body, headers=headers)
        else:
            code = _CODES.get(status, "error")
            resp = _error(status, code, f"injected fault: {status}", headers)
        if fault.truncate:
            return await _truncated(request, resp)
        return resp

    def _settled(self, bid: str) -> list[ReplayState]:
        """The browser's replays brought up to date (call with the lock held), or a 404."""
        bid = self._sessions.find(bid, include_deleted=True).session_id
        replays = self._browsers[bid]
        now = time.monotonic()
        for r in replays:
            if r.settle(now, self._starts[r.replay_id]):
                self._bridge.stopped(r.browser_id, r.replay_id)
        return replays

    async def _op_list(self, request: web.Request, body: bytes, bid: str) -> web.StreamResponse:
        with self._lock:
            data = [r.as_json(self.base_url) for r in self._settled(bid)]
        return web.json_response(data)

    async def _op_start(self, request: web.Request, body: bytes, bid: str) -> web.StreamResponse:
        params: Any = {}
        if body:
            try:
                params = json.loads(body)
            except ValueError:
                return _error(400, "bad_request", "request body is not valid JSON")
            if not isinstance(params, dict):
                return _error(400, "bad_request", "request body must be a JSON object")
        details = []
        for name in ("framerate", "max_duration_in_seconds"):
            value = params.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                details.append({"code": "invalid_input", "message": f"{name} must be >= 1"})
        audio = params.get("record_audio")
        if audio is not None and not isinstance(audio, bool):
            details.append({"code": "invalid_input", "message": "record_audio must be a boolean"})
        if details:
            return _error(400, "bad_request", "invalid parameters", details=details)
        with self._lock:
            replays = self._settled(bid)
            _may_record(self._sessions.find(bid, include_deleted=True), params)
            if any(r.stopped_mono is None for r in replays):
                return _error(409, "conflict", "a recording is already in progress")
            now = time.monotonic()
            replay = ReplayState(
                replay_id=new_id("rp"),
                browser_id=self._sessions.find(bid, include_deleted=True).session_id,
                started_at=datetime.now(timezone.utc),
                max_duration=params.get("max_duration_in_seconds"),
            )
            self._starts[replay.replay_id] = now
            replays.append(replay)
            data = replay.as_json(self.base_url)
        await self._start_recording(replay, params)
        self.log(replay.browser_id, f"replay {replay.replay_id} recording")
        return web.json_response(data)

    async def _start_recording(self, replay: ReplayState, params: dict[str, Any]) -> None:
        try:
            await self._bridge.started(replay.browser_id, replay.replay_id, params)
        except Exception as exc:
            with self._lock:  # a recording that never began was never started
                self._browsers[replay.browser_id].remove(replay)
            # Asking again would fail the same way: say so, rather than have clients retry.
            message = f"the recording could not start: {exc}"
            raise Refused(500, "internal_error", message, retry=False) from None

    # -- browsers (the rules are in _sessions) -----------------------------------------

    async def _op_create(self, request: web.Request, body: bytes) -> web.StreamResponse:
        raw = _json_object(body)
        session = await self._create_session(raw, check_references=self._check_references)
        self.log(session.session_id, f"browser {session.session_id} created")
        return web.json_response(session.as_json(self.base_url))

    def _session_fields(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """A new session's fields from a ``POST /browsers`` body, or `Refused`: its own
        (`parse_create`), its telemetry capture, and the stored profile it asks for."""
        fields = parse_create(dict(raw))
        fields["telemetry"] = self._telemetry.requested(raw.get("telemetry"))
        profiles = self._generic.records("profiles")
        now = datetime.now(timezone.utc)
        return {**fields, **attach_profile(raw.get("profile"), profiles, now)}

    async def _create_session(
        self, raw: Mapping[str, Any], *, check_references: bool = False
    ) -> Session:
        fields = self._session_fields(raw)  # a 400 comes before a reference's 404
        missing = self._generic.check_references(raw) if check_references else None
        if missing is not None:  # a profile, proxy, extension or vault that does not exist
            raise Refused(missing.status, missing.code, missing.message)
        with self._lock:
            session = self._sessions.add(fields)
            self._browsers[session.session_id] = []
        # Before the browser launches: a local one is watched from its first page.
        self._telemetry.begin(session.session_id, session.start_url)
        try:
            await self._bridge.created(session)
        except BaseException:
            self._forget(session.session_id)
            raise
        return session

    async def _op_retrieve(self, request: web.Request, body: bytes, ref: str) -> web.StreamResponse:
        deleted = request.rel_url.query.get("include_deleted", "false") == "true"
        with self._lock:
            session = self._sessions.find(ref, include_deleted=deleted)
            return web.json_response(session.as_json(self.base_url))

    async def _op_update(self, request: web.Request, body: bytes, ref: str) -> web.StreamResponse:
        raw = _json_object(body)
        capture = self._telemetry.asked(ref, raw.get("telemetry"))  # a 400 changes nothing
        with self._lock:
            session = self._sessions.update(ref, raw, capture)
        await self._telemetry.update(session.session_id)
        await self._bridge.updated(session)
        return web.json_response(session.as_json(self.base_url))

    async def _op_delete(self, request: web.Request, body: bytes, ref: str) -> web.StreamResponse:
        await self._expire(ref)
        return web.Response(status=204)

    async def _cdp(self, request: web.Request) -> web.StreamResponse:
        """``GET /cdp/{id}?jwt=...``: the token-checked DevTools websocket of a browser that
        can be driven; otherwise an Error body saying why (it never echoes the token)."""
        session_id = request.match_info["session_id"]
        with self._lock:
            session = self._sessions.sessions.get(session_id)
        if session is not None and session.active and self._bridge.drives(session_id):
            return await self._bridge.proxy(request)
        headers = dict(request.headers)
        self.requests.append(
            RecordedRequest(None, request.method, request.raw_path, headers, b"", False)
        )
        if session is None:
            return _refusal(browser_not_found(session_id))
        if not session.active:
            return _refusal(session.gone())
        return _error(501, "not_implemented", _not_drivable(self.backend))

    async def _expire(self, ref: str, why: str | None = None) -> None:
        """Delete a session (the API's delete, or ``why`` it ended, e.g. idle)."""
        with self._lock:
            session = self._sessions.delete(ref, why)
            now = time.monotonic()
            stopped = []
            for replay in self._browsers[session.session_id]:  # a deleted browser stops recording
                if replay.stopped_mono is None:
                    replay.stopped_mono = now
                    replay.finished_at = datetime.now(timezone.utc)
                    stopped.append(replay.replay_id)
        self.log(
            session.session_id, f"browser {session.session_id} ended" + (f": {why}" if why else "")
        )
        self.logs.end(session.session_id)
        await self._telemetry.end(session.session_id)
        await self.machines.end(session.session_id)
        await self._bridge.deleted(session.session_id)
        for replay_id in stopped:
            self._bridge.stopped(session.session_id, replay_id)

    async def _family(
        self, handler: BrowserOp, request: web.Request, body: bytes, fault: Fault | None
    ) -> web.StreamResponse:
        """Run a browser-family operation: validated against the spec, on an active
        browser (404 otherwise), with the backend's handle for it."""
        from ._validate import error_body, validate_request

        found = self._index.match(request.method, request.raw_path)
        assert found is not None
        query = list(request.rel_url.query.items())
        ctype = request.headers.get("Content-Type", "")
        checked = validate_request(found.operation, found.path_params, query, ctype, body)
        if checked.problems:
            status, payload = error_body(checked.problems)
            return web.json_response(payload, status=status)
        params = dict(found.path_params)
        with self._lock:
            session = self._sessions.find(params.pop("id_or_name"))
        call = FamilyCall(
            session.session_id, params, checked.query, checked.body, body, request, fault
        )
        return await handler(call)

    async def _pool_browser(self, create: Mapping[str, Any]) -> Mapping[str, Any]:
        """A browser for a pool's lease, made as ``browsers.create`` makes one."""
        session = await self._create_session(create)
        return session.as_json(self.base_url)

    def _browser_id(self, id_or_name: str) -> str | None:
        """The session ID of an active browser (by ID or name), for the families under
        ``/browsers/{id_or_name}/`` (computer, fs, process...)."""
        with self._lock:
            try:
                return self._sessions.find(id_or_name).session_id
            except Refused:
                return None

    def _active_session(self, session_id: str) -> Session | None:
        session = self._sessions.sessions.get(session_id)
        return session if session is not None and session.active else None

    def _forget(self, session_id: str) -> None:
        # A browser that could not be launched was never created.
        with self._lock:
            self._sessions.sessions.pop(session_id, None)
            self._browsers.pop(session_id, None)

    async def _op_list_browsers(self, request: web.Request, body: bytes) -> web.StreamResponse:
        with self._lock:
            items, following, more = self._sessions.page(request.rel_url.query)
            data = [s.as_json(self.base_url) for s in items]
        headers = {"X-Has-More": "true" if more else "false", "X-Next-Offset": str(following)}
        return web.json_response(data, headers=headers)

    def _find(self, bid: str, rid: str) -> ReplayState:
        for r in self._settled(bid):
            if r.replay_id == rid:
                return r
        raise replay_not_found(rid)

    async def _op_stop(
        self, request: web.Request, body: bytes, bid: str, rid: str
    ) -> web.StreamResponse:
        with self._lock:
            found = self._find(bid, rid)
            if found.stopped_mono is None:  # idempotent: a second stop changes nothing
                found.stopped_mono = time.monotonic()
                found.finished_at = datetime.now(timezone.utc)
        self._bridge.stopped(found.browser_id, found.replay_id)
        self.log(found.browser_id, f"replay {found.replay_id} stopped")
        return web.Response(status=200)

    async def _op_download(
        self, request: web.Request, body: bytes, bid: str, rid: str
    ) -> web.StreamResponse:
        with self._lock:
            found = self._find(bid, rid)
            stopped = found.stopped_mono
        if stopped is None:
            return _error(400, "bad_request", "the replay is still recording; stop it first")
        try:
            video = await self._bridge.finished(found.browser_id, found.replay_id)
        except Exception as exc:  # finished for good: asking again gives the same answer
            message = f"the recording failed: {exc}"
            return _refusal(Refused(500, "internal_error", message, retry=False))
        if isinstance(video, int):  # still finalising: poll again then
            return web.Response(status=202, headers={"Retry-After": str(video)})
        if isinstance(video, bytes):
            return web.Response(body=video, content_type="video/mp4")
        return web.FileResponse(video, headers={"Content-Type": "video/mp4"})


def check_fault(
    status: object,
    times: object,
    reset: bool,
    truncate: bool,
    delay: object,
    drop_after: object,
) -> None:
    """`TypeError`/`ValueError` for `FakeKernel.fail` arguments that cannot make a fault
    (found at the call, not later as a failing request handler)."""

    def is_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if status is not None:
        if not is_int(status):
            raise TypeError(f"status is an int or None, not {type(status).__name__}")
        assert isinstance(status, int)
        if not 100 <= status <= 599:
            raise ValueError(f"status must be between 100 and 599, not {status}")
    if times is not None:
        if not is_int(times):
            raise TypeError(f"times is an int or None, not {type(times).__name__}")
        assert isinstance(times, int)
        if times < 1:
            raise ValueError(f"times must be at least 1 (None: every call), not {times}")
    if not isinstance(delay, (int, float)) or isinstance(delay, bool):
        raise TypeError(f"delay is a number of seconds, not {type(delay).__name__}")
    if delay < 0:
        raise ValueError(f"delay must not be negative, not {delay}")
    if drop_after is not None:
        if not is_int(drop_after):
            raise TypeError(f"drop_after is an int, not {type(drop_after).__name__}")
        assert isinstance(drop_after, int)
        if drop_after < 0:
            raise ValueError(f"drop_after must be at least 0, not {drop_after}")
        if status is not None:
            raise ValueError("drop_after cuts a real event stream: give it with status=None")
    if status is None and not (reset or truncate or delay or drop_after is not None):
        raise ValueError("nothing to inject: give status, reset, truncate, delay or drop_after")


@functools.cache
def _create_fields() -> frozenset[str]:
    """The body properties ``POST /browsers`` takes, from the spec."""
    from ._spec import operation, resolve

    body = operation("browsers.create").body
    assert body is not None
    return frozenset(resolve(body.schema).get("properties", {}))


def _refusal_text(refused: Refused) -> str:
    """An API refusal as one line: its message and the reasons it gives."""
    if not refused.details:
        return refused.message
    return f"{refused.message}: {'; '.join(str(d) for d in refused.details)}"


def _route(method: str, parts: list[str]) -> tuple[str | None, tuple[str, ...] | None]:
    """Map a raw path to (operation, decoded IDs); (None, args) means wrong method."""
    if parts == ["browsers"]:
        return {"GET": "list_browsers", "POST": "create"}.get(method), ()
    if len(parts) == 2 and parts[0] == "browsers" and parts[1]:
        ops = {"GET": "retrieve", "PATCH": "update", "DELETE": "delete"}
        try:
            return ops.get(method), (unquote(parts[1], errors="strict"),)
        except UnicodeDecodeError:  # e.g. %FF: no ID of ours is such a segment
            return None, None
    if len(parts) < 3 or parts[0] != "browsers" or parts[2] != "replays":
        return None, None
    try:
        ids = tuple(unquote(p, errors="strict") for p in parts[1:2] + parts[3:4])
    except UnicodeDecodeError:  # e.g. %FF: no ID of ours is such a segment
        return None, None
    if any(not i for i in ids):
        return None, None
    if len(parts) == 3:
        return {"GET": "list", "POST": "start"}.get(method), ids
    if len(parts) == 4:
        return ("download" if method == "GET" else None), ids
    if len(parts) == 5 and parts[4] == "stop":
        return ("stop" if method == "POST" else None), ids
    return None, None


def _json_object(body: bytes) -> dict[str, Any]:
    """A request's JSON object body ({} when empty), or `Refused` (400)."""
    if not body:
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        raise Refused(400, "bad_request", "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Refused(400, "bad_request", "request body must be a JSON object")
    return data


def _not_drivable(backend: Backend) -> str:
    if isinstance(backend, InMemoryBackend):
        return (
            "this emulator runs the in-memory backend: its browsers are stand-ins, with no "
            "real CDP to drive. For a real browser behind cdp_ws_url, run the local "
            "Chromium backend: `kernel-replays emulator --chromium`, or "
            'FakeKernel(backend="chromium")'
        )
    return f"the {type(backend).__name__} backend cannot drive this browser over CDP"


def _may_record(session: Any, params: dict[str, Any]) -> None:
    """Refuse a replay the API would refuse on this browser."""
    if not session.active:
        raise session.gone()
    if session.headless:
        raise Refused(400, "bad_request", "replays are not available on headless browsers")
    framerate = params.get("framerate")
    if framerate is not None and framerate > 20 and not session.gpu:
        raise Refused(400, "bad_request", "framerate above 20 requires a GPU browser (gpu=true)")


def _refusal(refused: Refused) -> web.Response:
    details = [{"code": "invalid_input", "message": d} for d in refused.details]
    headers = {}
    if refused.retry is not None:
        headers["x-should-retry"] = "true" if refused.retry else "false"
    return _error(refused.status, refused.code, refused.message, headers, details)


def _error(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    details: list[dict[str, str]] | None = None,
) -> web.Response:
    payload: dict[str, Any] = {"code": code, "message": message}
    if details:
        payload["details"] = details
    return web.json_response(payload, status=status, headers=headers)


async def _truncated(request: web.Request, full: web.StreamResponse) -> web.StreamResponse:
    """Send `full`'s headers with its real Content-Length, half its body, then close."""
    assert isinstance(full, web.Response)
    data = full.body if isinstance(full.body, bytes) else b""
    if len(data) < 2:
        data = data + b"x" * (2 - len(data))
    resp = web.StreamResponse(status=full.status, headers=full.headers)
    resp.content_length = len(data)
    await resp.prepare(request)
    await resp.write(data[: len(data) // 2])
    assert request.transport is not None
    request.transport.abort()
    return resp
