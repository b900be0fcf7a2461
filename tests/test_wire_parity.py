"""Wire parity with the official `kernel` SDK over every operation of spec/kernel.openapi.yaml.

Each operation is called with arguments covering all its parameters, first through the
official `kernel.AsyncKernel`, then through `kernel_async.AsyncKernel`, against one capture
server on loopback. The official request must be what the spec says; ours must be the
official one (method, raw path, query, headers that matter, body); both results must
parse the schema-valid response the server sent.
"""

from __future__ import annotations

import collections.abc
import contextlib
import functools
import inspect
import json
import sys
import types
import typing
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
import typing_extensions
from aiohttp import web

import kernel_async
from tests import spec_samples as ss
from tests.loopback import serving

kernel = pytest.importorskip("kernel")

pytestmark = pytest.mark.anyio

# Helpers of the official SDK that are not one HTTP operation (they wrap several, or
# forward a raw request through a browser).
NOT_OPERATIONS = frozenset(
    {
        "browsers.request",
        "browsers.stream",
        "config_registry.analyses.wait_for_result",
        "audit_logs.download",
    }
)
# Official keyword arguments every method takes besides the operation's own.
PER_CALL_OPTIONS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})
CALL_LIMIT_SECONDS = 10


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # Module scope: the server and the two clients below live on one loop for all tests.
    return "asyncio"


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str  # raw, before '?'
    query: tuple[tuple[str, str], ...]  # decoded pairs, sorted
    headers: dict[str, str]  # lower-case names
    body: bytes
    parts: tuple[ss.Part, ...] | None
    op: ss.Operation | None


@dataclass
class Capture:
    """Records requests and answers each with the sample response of its operation."""

    url: str = ""
    variant: ss.Variant = "plain"
    seen: list[Seen] = field(default_factory=list)

    def take(self) -> list[Seen]:
        taken, self.seen = self.seen, []
        return taken

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path.partition("?")[0]
        body = await request.read()
        content_type = request.headers.get("Content-Type")
        parts = None
        if content_type and ss.base_type(content_type) == "multipart/form-data":
            parts = ss.parse_multipart(content_type, body)
        op = ss.find_operation(request.method, path)
        query = tuple(sorted(request.query.items()))
        self.seen.append(
            Seen(
                method=request.method,
                path=path,
                query=query,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                parts=parts,
                op=op,
            )
        )
        if op is None:
            message = f"no operation of the spec is {request.method} {path}"
            return web.json_response({"code": "not_found", "message": message}, status=404)
        answer = ss.sample_answer(op, self.variant, second_page=ss.is_second_page(op, query))
        headers = dict(answer.headers)
        if answer.content_type is not None:
            headers["Content-Type"] = answer.content_type
        return web.Response(status=answer.status, body=answer.body, headers=headers)


@pytest.fixture(scope="module")
async def capture() -> AsyncIterator[Capture]:
    server = Capture()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    async with serving(app) as url:
        server.url = url
        yield server


@pytest.fixture(scope="module")
def _no_direct_routing() -> Iterator[None]:
    # The official client may send a browser's calls straight to its VM once it has seen a
    # browser with a VM address and token; the samples carry none. Turned off all the same,
    # so that one client's calls cannot change where the next ones go.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERNEL_BROWSER_ROUTING_SUBRESOURCES", "")
        yield


@pytest.fixture(scope="module")
async def official(capture: Capture, _no_direct_routing: None) -> AsyncIterator[Any]:
    client = kernel.AsyncKernel(api_key="k", base_url=capture.url, max_retries=0)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="module")
async def ours(capture: Capture) -> AsyncIterator[kernel_async.AsyncKernel]:
    async with kernel_async.AsyncKernel(api_key="k", base_url=capture.url, max_retries=0) as c:
        yield c


@pytest.fixture
def fresh(capture: Capture) -> Iterator[Capture]:
    capture.take()
    yield capture
    capture.take()


def method_of(client: object, op: ss.Operation) -> Any:
    """The bound method at ``op``'s attribute path (AttributeError if there is none)."""
    target: Any = client
    for name in op.attr_path:
        target = getattr(target, name)
    return target


async def drive(method: Any, op: ss.Operation, call: ss.Call) -> Any:
    """Call, and consume the result as a user would: the items of every page, the events
    of a stream, the bytes of a binary response."""
    with anyio.fail_after(CALL_LIMIT_SECONDS):
        kind = op.reply.kind
        if kind == "page":
            return [item async for item in method(*call.args, **call.kwargs)]
        result = await method(*call.args, **call.kwargs)
        if kind == "sse":
            try:
                return [event async for event in result]
            finally:
                await result.close()
        if kind == "binary" and not isinstance(result, bytes):
            return await result.read()
        return result


def expected_data(op: ss.Operation, variant: ss.Variant) -> Any:
    return ss.sample_answer(op, variant).data


def check_result(op: ss.Operation, variant: ss.Variant, result: Any, who: str) -> None:
    kind = op.reply.kind
    if kind == "none":
        assert result is None, f"{who}: {result!r}"
    elif kind == "binary":
        assert result == expected_data(op, variant), f"{who}: {result!r}"
    else:
        found = ss.mismatch(expected_data(op, variant), result)
        assert found is None, f"{who} parsed the response differently: {found}"


def check_against_spec(op: ss.Operation, call: ss.Call, seen: list[Seen]) -> None:
    """The official SDK's requests are what the spec describes."""
    pages = 2 if op.reply.kind == "page" else 1
    assert len(seen) == pages, [(s.method, s.path) for s in seen]
    for i, got in enumerate(seen):
        assert (got.method, got.op) == (op.method, op), (
            f"spec says {op.method} {op.template}; the official SDK sent {got.method} {got.path}"
        )
        assert ss.match_template(op.template, got.path) == dict(call.path_values), got.path
        want_query = call.query
        if i == 1:  # the second page replaces the offset or token with the one it was given
            want_query = tuple(
                sorted(
                    [q for q in call.query if q[0] not in ("offset", "page_token")]
                    + [ss.next_page_pair(op)]
                )
            )
        assert got.query == want_query, "query differs from the spec"
        for name, value in call.headers.items():
            assert got.headers.get(name.lower()) == value, f"header {name}"
        if call.json_body is not None:
            assert ss.base_type(got.headers.get("content-type")) == "application/json"
            assert json.loads(got.body) == call.json_body, "JSON body differs from the spec"
        elif call.parts is not None:
            assert got.parts == call.parts, "multipart parts differ from the spec"
        elif call.raw_body is not None:
            assert ss.base_type(got.headers.get("content-type")) == "application/octet-stream"
            assert got.body == call.raw_body
        else:
            assert got.body == b"", "a body the spec does not describe"


def wire_view(seen: Seen, op: ss.Operation) -> dict[str, Any]:
    """What two SDKs must send alike. JSON bodies are compared parsed (key order and spacing
    may differ), multipart ones part by part (the boundary differs), others byte for byte."""
    content_type = ss.base_type(seen.headers.get("content-type"))
    view: dict[str, Any] = {
        "method": seen.method,
        "path": seen.path,
        "query": seen.query,
        "content-type": content_type,
        "accept": seen.headers.get("accept"),
    }
    for p in op.params:
        if p.location == "header":
            view[p.name] = seen.headers.get(p.name.lower())
    if content_type == "application/json":
        view["json"] = json.loads(seen.body) if seen.body else None
    elif seen.parts is not None:
        view["parts"] = seen.parts
    else:
        view["body"] = seen.body
    return view


CASES = [
    pytest.param(op, variant, id=f"{op.sdk_name}-{variant}")
    for op in ss.operations()
    for variant in ss.variants(op)
]


@pytest.mark.parametrize(("op", "variant"), CASES)
async def test_wire_parity(
    op: ss.Operation, variant: ss.Variant, fresh: Capture, official: Any, ours: Any
) -> None:
    call = ss.sample_call(op, variant)
    fresh.variant = variant
    result = await drive(method_of(official, op), op, call)
    theirs = fresh.take()
    check_against_spec(op, call, theirs)
    check_result(op, variant, result, "the official SDK")

    mine = method_of(ours, op)  # every operation exists: a missing one fails here
    result = await drive(mine, op, call)
    sent = fresh.take()
    assert [wire_view(s, op) for s in sent] == [wire_view(s, op) for s in theirs]
    check_result(op, variant, result, "kernel_async")


def official_operations(client: Any) -> dict[str, Any]:
    """sdk name -> unbound method, for every public method of the official async client."""
    from kernel._resource import AsyncAPIResource

    found: dict[str, Any] = {}

    def walk(node: object, prefix: str) -> None:
        for name, member in inspect.getmembers(type(node)):
            if name.startswith("_") or name in ("with_raw_response", "with_streaming_response"):
                continue
            if isinstance(member, functools.cached_property):
                child = getattr(node, name)
                if isinstance(child, AsyncAPIResource):
                    walk(child, f"{prefix}{name}.")
            elif inspect.isfunction(member) and isinstance(node, AsyncAPIResource):
                found[prefix + name] = member

    walk(client, "")
    return found


# (positional names in order, keyword name -> (required, accepts None))
Signature = tuple[list[str], dict[str, tuple[bool, bool]]]


def spec_signature(op: ss.Operation) -> Signature:
    """The signature the spec gives ``op``."""
    positional: list[str] = []
    keywords: dict[str, tuple[bool, bool]] = {}
    for p in op.params:
        if p.positional:
            positional.append(p.py)
        else:
            keywords[p.py] = (p.required, ss.nullable(p.schema))
    body = op.body
    if body is not None:
        if body.py is None:
            schema = ss.resolve(body.schema)
            required = set(schema.get("required", ()))
            for prop, sub in schema.get("properties", {}).items():
                keywords[sub.get("x-python-name", prop)] = (prop in required, ss.nullable(sub))
        elif body.positional:
            positional.append(body.py)
        else:
            keywords[body.py] = (True, False)
    return positional, keywords


def official_signature(method: Any) -> Signature:
    """The official method's signature, in the terms of ``spec_signature``."""
    hints = typing.get_type_hints(method)
    positional: list[str] = []
    keywords: dict[str, tuple[bool, bool]] = {}
    for p in list(inspect.signature(method).parameters.values())[1:]:
        if p.name in PER_CALL_OPTIONS:
            continue
        if p.kind is p.POSITIONAL_OR_KEYWORD or p.kind is p.POSITIONAL_ONLY:
            positional.append(p.name)
        else:
            keywords[p.name] = (p.default is p.empty, type(None) in typing.get_args(hints[p.name]))
    return positional, keywords


def signature_diff(name: str, official: Signature, spec: Signature) -> list[str]:
    """Where two signatures differ, one line each."""
    found = []
    if official[0] != spec[0]:
        found.append(f"{name}: positional {official[0]}, spec {spec[0]}")
    for key in sorted(set(official[1]) | set(spec[1])):
        theirs, ours = official[1].get(key), spec[1].get(key)
        if theirs != ours:
            found.append(f"{name}({key}): (required, nullable) official {theirs}, spec {ours}")
    return found


async def test_spec_lists_every_official_operation(fresh: Capture, official: Any) -> None:
    methods = official_operations(official)
    names = set(methods) - NOT_OPERATIONS
    assert set(methods) >= NOT_OPERATIONS
    by_name = {op.sdk_name: op for op in ss.operations()}
    assert len(by_name) == len(ss.operations()) == 175
    assert sorted(names - set(by_name)) == [], "official operations the spec lacks"
    assert sorted(set(by_name) - names) == [], "spec operations the official SDK lacks"

    wrong: list[str] = []
    for name, op in sorted(by_name.items()):
        wrong.extend(signature_diff(name, official_signature(methods[name]), spec_signature(op)))
        with contextlib.suppress(kernel.APIStatusError):  # a 404 is told below
            await drive(method_of(official, op), op, ss.sample_call(op, "plain"))
        got = fresh.take()[0]
        if (got.method, got.op) != (op.method, op):
            wrong.append(f"{name}: spec {op.method} {op.template}; sent {got.method} {got.path}")
    assert not wrong, "\n".join(wrong)


# --- the spec's models against the official SDK's types ---------------------------------

_SEQUENCES = (list, collections.abc.Sequence, collections.abc.Iterable)


def _members(hint: Any) -> tuple[list[Any], bool]:
    """The members of a type hint other than None and Omit, and whether it admits None."""
    origin = typing.get_origin(hint)
    if origin in (typing.Annotated, typing_extensions.Required, typing_extensions.NotRequired):
        return _members(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        found: list[Any] = []
        admits_none = False
        for arg in typing.get_args(hint):
            inner, none = _members(arg)
            found.extend(inner)
            admits_none = admits_none or none
        return found, admits_none
    if hint is type(None):
        return [], True
    if getattr(hint, "__name__", "") == "Omit":
        return [], False
    return [hint], False


def _schema_members(schema: ss.Schema) -> list[ss.Schema]:
    schema = ss.resolve(schema)
    if "anyOf" in schema:
        return [
            m for sub in schema["anyOf"] if sub.get("type") != "null" for m in _schema_members(sub)
        ]
    return [schema]


def _resolve(annotation: Any, owner: type) -> Any:
    """``annotation`` with its forward references (recursive models) resolved in ``owner``'s
    module, which the official models' field types leave as they are."""

    def holder() -> None: ...

    holder.__annotations__ = {"a": annotation}
    return typing.get_type_hints(holder, globalns=vars(sys.modules[owner.__module__]))["a"]


def _fields(hint: Any) -> dict[str, tuple[str, Any, bool]] | None:
    """wire name -> (Python name, type hint, required) of a pydantic model or a TypedDict."""
    import pydantic
    from kernel._utils._transform import PropertyInfo

    if inspect.isclass(hint) and issubclass(hint, pydantic.BaseModel):
        fields = hint.model_fields.items()
        return {f.alias or n: (n, _resolve(f.annotation, hint), f.is_required()) for n, f in fields}
    if typing_extensions.is_typeddict(hint):
        found = {}
        for name, ann in typing.get_type_hints(hint, include_extras=True).items():
            extras = typing.get_args(ann)[1:] if typing.get_origin(ann) is typing.Annotated else ()
            alias = next((e.alias for e in extras if isinstance(e, PropertyInfo) and e.alias), None)
            found[alias or name] = (name, ann, _required(hint, ann))
        return found
    return None


def _required(typed_dict: Any, ann: Any) -> bool:
    # Not __required_keys__: under `from __future__ import annotations` (as the official
    # types are written) it misses `Required[...]` on 3.10-3.13.
    while True:
        origin = typing.get_origin(ann)
        if origin is typing_extensions.Required:
            return True
        if origin is typing_extensions.NotRequired:
            return False
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
            continue
        return bool(getattr(typed_dict, "__total__", True))


@dataclass
class TypeComparison:
    """Where the official types and the spec's schemas disagree on an object's fields:
    names, Python names, required, nullable (always in requests; in responses only for
    required fields, as the official models make every optional field Optional)."""

    wrong: list[str] = field(default_factory=list)
    seen: set[tuple[object, int, bool]] = field(default_factory=set)

    def compare(self, hint: Any, schema: ss.Schema, where: str, request: bool) -> None:
        hints, _ = _members(hint)
        schemas = _schema_members(schema)
        models = [(h, f) for h in hints if (f := _fields(h)) is not None]
        objects = [s for s in schemas if "properties" in s]
        if len(models) != len(objects):
            self.wrong.append(f"{where}: official {len(models)} object types, spec {len(objects)}")
            return
        for (model, fields), obj in zip(models, objects, strict=True):
            if (model, id(obj), request) in self.seen:  # also ends recursive models
                continue
            self.seen.add((model, id(obj), request))
            self._fields(model, fields, obj, where, request)
        arrays = [s for s in schemas if s.get("type") == "array"]
        for h in hints:
            if typing.get_origin(h) in _SEQUENCES and arrays:
                item = arrays[0].get("items", {})
                self.compare(typing.get_args(h)[0], item, f"{where}[]", request)

    def _fields(
        self,
        model: Any,
        fields: dict[str, tuple[str, Any, bool]],
        obj: ss.Schema,
        where: str,
        request: bool,
    ) -> None:
        props: Mapping[str, ss.Schema] = obj["properties"]
        required = set(obj.get("required", ()))
        if set(fields) != set(props):
            self.wrong.append(f"{where}: {model.__name__} {sorted(fields)} != spec {sorted(props)}")
        for wire in sorted(set(fields) & set(props)):
            py, sub_hint, is_required = fields[wire]
            sub = props[wire]
            at = f"{where}.{wire}"
            if sub.get("x-python-name", wire) != py:
                self.wrong.append(f"{at}: Python name {py}, spec {sub.get('x-python-name', wire)}")
            if is_required != (wire in required):
                self.wrong.append(f"{at}: official required={is_required}, spec {wire in required}")
            admits_none = _members(sub_hint)[1]
            if (request or is_required) and admits_none != ss.nullable(sub):
                self.wrong.append(f"{at}: official nullable={admits_none}, spec {ss.nullable(sub)}")
            self.compare(sub_hint, sub, at, request)


async def test_spec_models_match_official_types(official: Any) -> None:
    """Every object the spec describes, in a request or a response, has the fields of the
    official SDK's type (wire names, Python names, required, nullable)."""
    methods = official_operations(official)
    check = TypeComparison()
    for op in ss.operations():
        hints = typing.get_type_hints(methods[op.sdk_name], include_extras=True)
        for p in op.params:
            check.compare(hints[p.py], p.schema, f"{op.sdk_name}({p.py})", True)
        if op.body is not None and op.body.py is None:
            for wire, sub in ss.resolve(op.body.schema).get("properties", {}).items():
                py = sub.get("x-python-name", wire)
                check.compare(hints[py], sub, f"{op.sdk_name}({py})", True)
        reply = op.reply
        if reply.schema is not None:
            returned = hints["return"]
            if reply.kind in ("page", "sse"):  # AsyncPaginator[Item, ...], AsyncStream[Event]
                returned = typing.get_args(returned)[0]
            check.compare(returned, reply.schema, f"{op.sdk_name} ->", False)
    wrong = check.wrong
    assert not wrong, "\n".join(wrong)
