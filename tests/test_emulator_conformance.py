"""Every operation of the spec, sent to `FakeKernel` (the server users get) on both backends,
in memory and on real local Chromium: a 2xx whose body is valid for the operation's response
schema (binary: its content type; event streams: each event valid and carrying an ``id:``),
or a 501 whose Error body names the operation and which docs/testing.md lists.

The operations come from the spec, not from a hand list. Each gets a valid request: its
path's resources made through the API first (a browser, a replay, a process, a watch, a
profile, a pool...), its body the spec's required fields, plus the few values that must
mean something here (a file that exists, a command the backend runs, a URL it reaches).
The answers are judged with jsonschema against the spec, independently of the emulator.

A second pass fills every field of every request with the spec's sample values (references
unchecked: ``check_references=False``), which mostly mean nothing here: each answer must
then be valid, a 4xx Error body, or the documented 501; never a 5xx or a hang (in memory
every operation; on Chromium those of browsers and pools, where the backend plays a part).

One emulator (and one shared browser) serves each pass on each backend; operations that
end what they act on (delete, stop, release...) get fresh resources of their own."""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import re
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import anyio
import pytest

from kernel_async.testing import FakeKernel, LocalSetupError

from . import spec_samples
from .spec_samples import Operation, Part, Sampler
from .spec_shapes import assert_valid
from .test_docs_501 import documented_501s

OPS = spec_samples.operations()
DOCUMENTED_501 = documented_501s()
ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorModel"}
# Every read and wait of one operation, its preparation included, ends within this.
BOUND = 30.0
# Event streams: at most this many events are read (or until the stream ends); one from
# those that stay open.
MAX_EVENTS = 3
OPEN_STREAMS = frozenset(
    {
        "browsers.fs.watch.events",
        "browsers.telemetry.stream",
        "deployments.follow",
        "invocations.follow",
        "auth.connections.follow",
    }
)
# Open streams that may have nothing to say yet (no telemetry captured; a connection with
# no login flow underway): read for this long, validating whatever comes.
QUIET_STREAMS = frozenset({"browsers.telemetry.stream", "auth.connections.follow"})
QUIET_SECONDS = 1.0

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module-wide: one emulator (and browser) serves every operation


# --- requests ------------------------------------------------------------------------


@dataclass
class Request:
    """One request: decoded path values, query pairs, and a JSON, multipart or raw body."""

    path: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    json_body: Any = None
    parts: list[Part] | None = None
    raw_body: bytes | None = None
    listed: bool = False  # a list whose collection was given an item first: not empty


def _required_query(op: Operation) -> dict[str, str]:
    sampler = Sampler(python=False, full=False)
    return {
        p.name: _text(sampler.value(p.schema, p.name))
        for p in op.params
        if p.location == "query" and p.required
    }


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def required_body(
    op: Operation, extra: Mapping[str, Any] | None = None
) -> tuple[Any, list[Part] | None, bytes | None]:
    """The body with the spec's required fields (and `extra`): (JSON, parts, raw bytes)."""
    body = op.body
    if body is None:
        return None, None, None
    if body.content_type == "application/octet-stream":
        return None, None, spec_samples.BINARY_PAYLOAD
    schema = spec_samples.resolve(body.schema)
    if body.content_type == "application/json":
        value = Sampler(python=False, full=False).value(schema, "body")
        return ({**value, **extra} if extra else value), None, None
    values = {**Sampler(python=True, full=False).value(schema, "body"), **(extra or {})}
    return None, _parts(values, body.array_format or "brackets"), None


def _parts(values: Mapping[str, Any], array_format: str) -> list[Part]:
    return [
        spec_samples._form_part(name, value)
        for name, value in spec_samples._form_fields("", values, array_format)
    ]


def _multipart(parts: list[Part]) -> aiohttp.FormData:
    form = aiohttp.FormData(default_to_multipart=True)  # even with no file part
    for part in parts:
        if part.filename is not None:
            form.add_field(
                part.name,
                part.data,
                filename=part.filename,
                content_type=part.content_type or "application/octet-stream",
            )
        else:
            form.add_field(part.name, part.data.decode())
    return form


def _zip(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(name, data)
    return out.getvalue()


# --- the emulator and what each operation needs --------------------------------------

# What a collection's resources are made with beyond the spec's required fields.
MADE_WITH: Mapping[str, Mapping[str, Any]] = {
    # An app as a user deploys one: its code zipped, and where it starts.
    "/deployments": {
        "file": _zip("index.ts", b"export default {}\n"),
        "entrypoint_rel_path": "index.ts",
        "version": "1",
    },
}


@dataclass
class Answer:
    status: int
    content_type: str
    headers: Mapping[str, str]
    body: bytes


class World:
    """One `FakeKernel` with a browser every browser-family operation runs on."""

    def __init__(
        self, fake: FakeKernel, http: aiohttp.ClientSession, backend: str, every: bool
    ) -> None:
        self.fake = fake
        self.http = http
        self.backend = backend
        self.every = every  # every field filled with the spec's samples
        self.browser = ""
        self.names = itertools.count(1)
        self.cleanups: list[Callable[[], Awaitable[object]]] = []

    def unique(self, stem: str) -> str:
        return f"{stem}-{next(self.names)}"

    def url(self, op: Operation, request: Request) -> str:
        path = op.template
        for name, value in request.path.items():
            path = path.replace("{" + name + "}", spec_samples.official_quote(value))
        if request.query:
            path += "?" + urlencode(request.query)
        return self.fake.base_url + path

    def send(self, op: Operation, request: Request) -> Any:
        """The aiohttp request context for `request` (the caller reads the answer)."""
        headers = {**request.headers, "Authorization": f"Bearer {self.fake.api_key}"}
        kwargs: dict[str, Any] = {}
        if request.json_body is not None:
            kwargs["json"] = request.json_body
        elif request.parts is not None:
            kwargs["data"] = _multipart(request.parts)
        elif request.raw_body is not None:
            kwargs["data"] = request.raw_body
            headers["Content-Type"] = "application/octet-stream"
        return self.http.request(op.method, self.url(op, request), headers=headers, **kwargs)

    async def call(self, sdk_name: str, request: Request) -> Answer:
        """Send a request and read the whole answer."""
        op = spec_samples.operation(sdk_name)
        async with self.send(op, request) as resp:
            return Answer(resp.status, resp.content_type, dict(resp.headers), await resp.read())

    async def ok(self, sdk_name: str, request: Request | None = None, **body: Any) -> Any:
        """A setup call that must succeed; its JSON answer (None without one)."""
        op = spec_samples.operation(sdk_name)
        if request is None:
            json_body, parts, _ = required_body(op)
            if isinstance(json_body, dict):
                json_body.update(body)
            request = Request(json_body=json_body, parts=parts)
        got = await self.call(sdk_name, request)
        assert 200 <= got.status < 300, (sdk_name, got.status, got.body[:300])
        return json.loads(got.body) if got.content_type == "application/json" else None

    # -- browsers and their machines -------------------------------------------------

    async def new_browser(self, **fields: Any) -> str:
        made = await self.ok("browsers.create", **fields)
        sid = str(made["session_id"])

        async def delete() -> None:
            await self.call("browsers.delete_by_id", Request(path={"id_or_name": sid}))

        self.cleanups.append(delete)
        return sid

    def on_browser(self, **path: str) -> Request:
        return Request(path={"id_or_name": self.browser, **path})

    async def write_file(self, path: str, data: bytes = b"hello") -> None:
        request = self.on_browser()
        request.query = {"path": path}
        request.raw_body = data
        await self.ok("browsers.fs.write_file", request)

    async def spawn(self, *, exits: bool = False, tty: bool = False) -> str:
        """A process on the browser: one that prints and exits, or one that waits on stdin."""
        command, args = ("echo", ["hi"]) if exits else ("cat", [])
        if self.backend == "memory":
            self.fake.on_exec(command, stdout=b"hi\n", hold=not exits)
        request = self.on_browser()
        request.json_body = {"command": command, "args": args, "allocate_tty": tty}
        made = await self.ok("browsers.process.spawn", request)
        pid = str(made["process_id"])
        if not exits:

            async def kill() -> None:
                kill = self.on_browser(process_id=pid)
                kill.json_body = {"signal": "KILL"}
                await self.call("browsers.process.kill", kill)

            self.cleanups.append(kill)
        return pid

    async def replay(self, *, stopped: bool) -> str:
        """A replay of the shared browser: recording, or stopped and ready to download."""
        start = self.on_browser()
        start.json_body = {}
        made = await self.ok("browsers.replays.start", start)
        rid = str(made["replay_id"])
        stop = self.on_browser(replay_id=rid)
        if not stopped:
            self.cleanups.append(lambda: self.call("browsers.replays.stop", stop))
            return rid
        await self.ok("browsers.replays.stop", stop)
        while True:  # finalising answers 202; the caller's bound ends a video that never comes
            got = await self.call("browsers.replays.download", stop)
            if got.status != 202:
                assert got.status == 200, got.body[:300]
                return rid
            await anyio.sleep(0.1)

    # -- the generic families ----------------------------------------------------------

    async def make(
        self, collection: str, so_far: Mapping[str, str], extra: Mapping[str, Any] | None = None
    ) -> str | None:
        """A new resource of `collection`, made through the API (its create or upsert
        operation, found in the spec): its ID (an upsert's key). None when nothing can make
        one here (no such operation, or it answers 501)."""
        item = re.compile(re.escape(collection) + r"/\{\w+\}")
        creators = [
            op
            for op in OPS
            if (op.method == "POST" and op.template == collection)
            or (op.method == "PUT" and item.fullmatch(op.template))
        ]
        if not creators:
            return None
        op = creators[0]
        assert op.body is not None
        props = spec_samples.resolve(op.body.schema).get("properties", {})
        names = [n for n in ("name", "profile_name") if n in props]  # unique where the API says
        unique = {n: self.unique(n.replace("_", "-")) for n in names}
        json_body, parts, _ = required_body(
            op, {**unique, **MADE_WITH.get(collection, {}), **(extra or {})}
        )
        path = {k: v for k, v in so_far.items() if "{" + k + "}" in op.template}
        key = op.template.rpartition("{")[2].rstrip("}") if op.method == "PUT" else None
        if key is not None:
            path[key] = self.unique(key)
        got = await self.call(op.sdk_name, Request(path=path, json_body=json_body, parts=parts))
        if got.status == 501:
            return None
        assert got.status == 200, (op.sdk_name, got.status, got.body[:300])
        return path[key] if key is not None else str(json.loads(got.body)["id"])


# Values that must mean something here, by operation: (what its parent is made with,
# what the request itself carries). Everything else is the spec's required fields.
async def _prepare(w: World, op: Operation) -> Request:
    request = Request(query=_required_query(op))
    made_with = MADE_WITH.get(op.template) if op.method == "POST" else None
    request.json_body, request.parts, request.raw_body = required_body(op, made_with)
    parent_extra: dict[str, Any] = {}
    name = op.sdk_name
    if name == "credentials.totp_code":
        parent_extra = {"totp_secret": "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"}
    segments = op.template.split("/")
    for i, segment in enumerate(segments):
        found = re.fullmatch(r"\{(\w+)\}", segment)
        if found is None:
            continue
        key, collection = found.group(1), "/".join(segments[:i])
        request.path[key] = await _path_value(w, op, collection, key, request.path, parent_extra)
    if _is_list(op):  # give it something to list
        if op.template == "/browsers":
            request.listed = True  # the shared browser
        elif op.template.endswith("/replays"):
            request.listed = bool(await w.replay(stopped=False))
        else:
            request.listed = await w.make(op.template, request.path) is not None
    await _meaningful(w, op, request)
    if w.every:  # the spec's sample for every field, over what meant something
        sample = spec_samples.sample_call(op, "plain")
        if sample.json_body is not None:
            request.json_body = {**(request.json_body or {}), **sample.json_body}
        if sample.parts is not None:
            request.parts = list(sample.parts)
        request.query.update(sample.query)
        request.headers.update(sample.headers)
        if "follow" in request.query:
            request.query["follow"] = "false"  # bounded
    return request


def _is_list(op: Operation) -> bool:
    reply = op.reply
    if reply.kind == "page":
        return True
    schema = spec_samples.resolve(reply.schema or {})
    return op.method == "GET" and reply.kind == "json" and schema.get("type") == "array"


async def _path_value(
    w: World, op: Operation, collection: str, key: str, so_far: Mapping[str, str], extra: Any
) -> str:
    name = op.sdk_name
    if collection == "/browsers":
        # Ending a browser needs one of its own; every other operation shares one.
        return await w.new_browser() if name == "browsers.delete_by_id" else w.browser
    if collection.endswith("/replays"):
        return await w.replay(stopped=name == "browsers.replays.download")
    if collection.endswith("/process"):
        return await w.spawn(
            exits=name == "browsers.process.stdout_stream", tty=name == "browsers.process.resize"
        )
    if collection.endswith("/fs/watch"):
        await w.ok("browsers.fs.create_directory", _json(w.on_browser(), path="/tmp/watched"))
        made = await w.ok("browsers.fs.watch.start", _json(w.on_browser(), path="/tmp/watched"))
        watch = str(made["watch_id"])
        if name == "browsers.fs.watch.events":  # something to see
            await w.write_file("/tmp/watched/seen.txt")
        return watch
    made = await w.make(collection, so_far, extra)
    return f"no-{key}" if made is None else made  # none can exist: the operation is a 501


def _json(request: Request, **body: Any) -> Request:
    request.json_body = body
    return request


async def _meaningful(w: World, op: Operation, request: Request) -> None:
    """The request values that must refer to something real here."""
    name = op.sdk_name
    body = request.json_body if isinstance(request.json_body, dict) else {}
    if name.startswith("browsers.fs."):
        await w.write_file("/tmp/conf/a.txt")
        wanted = {
            "browsers.fs.create_directory": {"path": "/tmp/conf/new"},
            "browsers.fs.delete_directory": {"path": "/tmp/conf"},
            "browsers.fs.delete_file": {"path": "/tmp/conf/a.txt"},
            "browsers.fs.move": {"src_path": "/tmp/conf/a.txt", "dest_path": "/tmp/conf/b.txt"},
            "browsers.fs.set_file_permissions": {"path": "/tmp/conf/a.txt", "mode": "644"},
            "browsers.fs.watch.start": {"path": "/tmp/conf"},
        }.get(name, {})
        body.update(wanted)
        if "path" in request.query:
            request.query["path"] = "/tmp/conf/a.txt"
        if name in ("browsers.fs.list_files", "browsers.fs.download_dir_zip"):
            request.query["path"] = "/tmp/conf"
        if name == "browsers.fs.upload":
            request.parts = _parts(
                {"files": [{"dest_path": "/tmp/conf/up.txt", "file": b"up"}]}, "indices"
            )
        if name == "browsers.fs.upload_zip":
            request.parts = _parts(
                {"dest_path": "/tmp/conf/unzipped", "zip_file": _zip("z.txt", b"z")}, "brackets"
            )
    elif name in ("browsers.process.exec", "browsers.process.spawn"):
        if w.backend == "memory":
            w.fake.on_exec("true")
        body.update(command="true")
    elif name == "browsers.process.stdin":
        body.update(data_b64=base64.b64encode(b"typed\n").decode())
    elif name == "browsers.process.resize":
        body.update(cols=100, rows=30)
    elif name == "browsers.computer.batch":
        body.update(actions=[{"type": "move_mouse", "move_mouse": {"x": 5, "y": 5}}])
    elif name == "browsers.computer.press_key":
        body.update(keys=["a"])
    elif name == "browsers.computer.drag_mouse":
        body.update(path=[[10, 10], [20, 20]])
    elif name == "browsers.curl":
        # A site the emulator reaches: itself (its answer to a keyless request).
        body.update(url=w.fake.base_url + "/browsers")
    elif name == "browsers.logs.stream":
        request.query.update(source="supervisor", follow="false")
    elif name == "browsers.replays.start":
        request.json_body = {}
        stop = w.on_browser()

        async def stop_all() -> None:  # the shared browser records one replay at a time
            for replay in json.loads((await w.call("browsers.replays.list", stop)).body):
                await w.call("browsers.replays.stop", w.on_browser(replay_id=replay["replay_id"]))

        w.cleanups.append(stop_all)
    elif name == "browsers.update":
        body.clear()
    elif name in ("browser_pools.acquire", "browser_pools.release"):
        body.update(acquire_timeout_seconds=5)
        if name == "browser_pools.release":
            pool = request.path["id_or_name"]
            lease = await w.ok("browser_pools.acquire", _json(Request(path={"id_or_name": pool})))
            request.json_body = {"session_id": lease["session_id"]}
        pool = request.path["id_or_name"]

        async def drop_pool() -> None:  # its browsers end with it
            gone = Request(path={"id_or_name": pool}, json_body={"force": True})
            await w.call("browser_pools.delete", gone)

        w.cleanups.append(drop_pool)


@contextlib.asynccontextmanager
async def _world(backend: str, every: bool) -> AsyncIterator[World]:
    try:
        # Every field's samples name profiles, proxies... that do not exist: not checked.
        fake = FakeKernel(backend=backend, finalise_seconds=0.05, check_references=not every)
    except LocalSetupError as missing:  # no Chromium or PyAV here
        pytest.skip(str(missing))
    async with fake, aiohttp.ClientSession() as http:
        w = World(fake, http, backend, every)
        w.browser = str((await w.ok("browsers.create", name="shared"))["session_id"])
        yield w


@pytest.fixture(scope="module", params=["memory", pytest.param("chromium", marks=pytest.mark.once)])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    async with _world(request.param, every=False) as w:
        yield w


@pytest.fixture(scope="module")
async def memory_every_field() -> AsyncIterator[World]:
    async with _world("memory", every=True) as w:
        yield w


@pytest.fixture(scope="module")
async def chromium_every_field() -> AsyncIterator[World]:
    async with _world("chromium", every=True) as w:
        yield w


# --- judging answers -----------------------------------------------------------------


def _refused(op: Operation, status: int, body: bytes) -> None:
    """A 501: the Error body names the operation, and the docs list it."""
    error = json.loads(body)
    assert_valid(ERROR_SCHEMA, error)
    assert error["message"].startswith(f"{op.sdk_name} "), error
    assert op.sdk_name in DOCUMENTED_501, f"{op.sdk_name} answers 501 but docs/testing.md omits it"


async def _events(
    resp: aiohttp.ClientResponse, limit: int, events: list[tuple[str | None, str]]
) -> None:
    """Append up to `limit` (id, data) events to `events`, or fewer if the stream ends."""
    event_id: str | None = None
    data: list[str] = []
    while len(events) < limit:
        line = (await resp.content.readline()).decode()
        if not line:
            break  # the stream ended
        line = line.rstrip("\r\n")
        if not line:
            if data:
                events.append((event_id, "\n".join(data)))
            event_id, data = None, []
        elif line.startswith(":"):
            continue  # a keep-alive
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                event_id = value
            elif name == "data":
                data.append(value)


async def _judge(w: World, op: Operation, request: Request) -> Any:
    """Send `request` and assert the answer conforms; its JSON value, if any."""
    reply = op.reply
    async with w.send(op, request) as resp:
        if resp.status == 501:
            _refused(op, resp.status, await resp.read())
            return None
        if w.every and 400 <= resp.status < 500:  # sample values may well be refused
            assert resp.content_type == "application/json", resp.content_type
            assert_valid(ERROR_SCHEMA, json.loads(await resp.read()))
            return None
        if not 200 <= resp.status < 300:
            raise AssertionError(f"{op.sdk_name}: {resp.status} {(await resp.read())[:500]!r}")
        if reply.kind == "sse":
            assert resp.content_type == "text/event-stream", resp.content_type
            events: list[tuple[str | None, str]] = []
            limit = 1 if op.sdk_name in OPEN_STREAMS else MAX_EVENTS
            if op.sdk_name in QUIET_STREAMS:
                with anyio.move_on_after(QUIET_SECONDS):
                    await _events(resp, limit, events)
            else:  # it was given something to say (the samples may ask for nothing)
                await _events(resp, limit, events)
                assert events or w.every, "no event"
            for event_id, data in events:
                assert event_id, f"an event without an id: {data[:200]}"
                assert reply.schema is not None
                assert_valid(reply.schema, json.loads(data))
            return None
        body = await resp.read()
        if reply.kind == "none":
            assert body == b"", body[:300]
            return None
        if reply.kind == "binary":
            assert resp.content_type == reply.content_type, resp.content_type
            assert body, "an empty file"
            return None
        assert resp.content_type == "application/json", resp.content_type
        data = json.loads(body)
        assert reply.schema is not None
        if reply.kind == "page":
            assert isinstance(data, list), data
            assert resp.headers.get("X-Has-More") in ("true", "false"), resp.headers
            for item in data:
                assert_valid(reply.schema, item)
        else:
            assert_valid(reply.schema, data)
        if request.listed and not w.every:  # (the samples' filters may match nothing)
            assert data, "the list misses the item made for it"
        return data


async def _run(w: World, op: Operation) -> None:
    try:
        with anyio.fail_after(BOUND):
            request = await _prepare(w, op)
            answer = await _judge(w, op, request)
        if op.sdk_name == "browsers.create" and answer is not None:  # a real browser: end it
            gone = Request(path={"id_or_name": answer["session_id"]})
            w.cleanups.append(lambda: w.call("browsers.delete_by_id", gone))
    finally:
        with anyio.fail_after(BOUND):
            while w.cleanups:
                await w.cleanups.pop()()


@pytest.mark.parametrize("op", OPS, ids=str)
async def test_every_operation_answers_valid_or_a_documented_501(
    world: World, op: Operation
) -> None:
    await _run(world, op)


@pytest.mark.parametrize("op", OPS, ids=str)
async def test_every_field_filled_in_memory_is_never_a_5xx(
    memory_every_field: World, op: Operation
) -> None:
    await _run(memory_every_field, op)


# The operations whose backend plays a part (a browser's, a pool's); the others are
# answered on Chromium by the same generic layer as in memory.
ON_A_BROWSER = [op for op in OPS if op.template.startswith(("/browsers", "/browser_pools"))]


@pytest.mark.once
@pytest.mark.parametrize("op", ON_A_BROWSER, ids=str)
async def test_every_field_filled_on_chromium_is_never_a_5xx(
    chromium_every_field: World, op: Operation
) -> None:
    await _run(chromium_every_field, op)


def test_every_operation_of_the_spec_is_here() -> None:
    assert len(OPS) == len({op.sdk_name for op in OPS}) == 175


async def test_unchecked_references_are_unchecked_for_pools_too() -> None:
    # FakeKernel(check_references=False) says it turns reference checks off: pools too.
    async with FakeKernel(check_references=False) as fake, fake.client(max_retries=0) as client:
        pool = await client.browser_pools.create(size=1, profile={"name": "nowhere"})
        await client.browser_pools.update(pool.id, size=1, extensions=[{"name": "gone"}])
        lease = await client.browser_pools.acquire(
            pool.id, profile={"name": "nowhere"}, acquire_timeout_seconds=1
        )
        assert lease is not None
