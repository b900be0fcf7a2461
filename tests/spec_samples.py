"""Samples synthesized from spec/kernel.openapi.yaml: call arguments covering every parameter
of an operation, the request those arguments must put on the wire, and schema-valid responses.

Pure functions over the spec (no sockets); tests/test_wire_parity.py drives two SDKs with them.
"""

from __future__ import annotations

import datetime as dt
import email.message
import enum
import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote

import yaml

SPEC_PATH = Path(__file__).resolve().parent.parent / "spec" / "kernel.openapi.yaml"

Schema = Mapping[str, Any]
# plain: simple path values, minimal responses; encoded: path values needing percent-encoding,
# responses with every field; null: None for each nullable body property (sent as JSON null).
Variant = Literal["plain", "encoded", "null"]

# Pagination markers: the first page points here, the server answers the second page there.
NEXT_OFFSET = 17
NEXT_PAGE_TOKEN = "tok-page-2"
BINARY_PAYLOAD = b"filedata"
# Each path segment of the "encoded" variant needs percent-encoding (space, slash,
# non-ASCII, '?', '#', '%'), and carries sub-delimiters some quoters keep (':', '@', ',').
_ENCODED_TAIL = " a/b\u00e4?#%:@,"
# Query strings of the "encoded" variant carry what a query must escape ('&', '=', '+', '#').
_ENCODED_QUERY_TAIL = " &=+#/?\u00e4%"


@functools.cache
def spec() -> Mapping[str, Any]:
    """The parsed spec, loaded once."""
    # The C loader when PyYAML has it: the pure-Python one takes seconds on this document.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open(encoding="utf-8") as f:
        data: Mapping[str, Any] = yaml.load(f, Loader=loader)
    return data


def resolve(schema: Schema) -> Schema:
    """Follow a local ``$ref`` (repeatedly) to the schema it names."""
    while "$ref" in schema:
        schema = _component(schema["$ref"])
    return schema


def _component(ref: str) -> Schema:
    prefix = "#/components/schemas/"
    assert ref.startswith(prefix), ref
    found: Schema = spec()["components"]["schemas"][ref[len(prefix) :]]
    return found


# --- operations --------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter."""

    name: str  # as on the wire
    py: str  # as the SDK method spells it
    location: Literal["path", "query", "header"]
    required: bool
    positional: bool
    schema: Schema
    style: str | None
    explode: bool | None


@dataclass(frozen=True)
class Body:
    """The request body."""

    content_type: str  # application/json | multipart/form-data | application/octet-stream
    schema: Schema
    required: bool
    py: str | None  # the raw-content parameter's name (octet-stream)
    positional: bool
    array_format: str | None  # multipart: indices | brackets


ReplyKind = Literal["json", "none", "binary", "sse", "page"]


@dataclass(frozen=True)
class Reply:
    """The success response."""

    status: int
    kind: ReplyKind
    content_type: str | None
    schema: Schema | None  # JSON body, or one item of a page, or one event's data
    pagination: Literal["offset", "page_token"] | None


@dataclass(frozen=True)
class Operation:
    """One operation of the spec."""

    sdk_name: str
    method: str  # upper case
    template: str
    params: tuple[Param, ...]
    body: Body | None
    reply: Reply

    @property
    def attr_path(self) -> tuple[str, ...]:
        """Attribute names from the client to the method."""
        return tuple(self.sdk_name.split("."))

    def __str__(self) -> str:
        return self.sdk_name


def _param(raw: Mapping[str, Any]) -> Param:
    return Param(
        name=raw["name"],
        py=raw.get("x-python-name", raw["name"]),
        location=raw["in"],
        required=bool(raw.get("required", False)),
        positional=bool(raw.get("x-sdk-positional", False)),
        schema=raw["schema"],
        style=raw.get("style"),
        explode=raw.get("explode"),
    )


def _body(raw: Mapping[str, Any] | None) -> Body | None:
    if raw is None:
        return None
    ((content_type, content),) = raw["content"].items()
    return Body(
        content_type=content_type,
        schema=content["schema"],
        required=bool(raw.get("required", False)),
        py=raw.get("x-python-name"),
        positional=bool(raw.get("x-sdk-positional", False)),
        array_format=content.get("x-array-format"),
    )


def _reply(op: Mapping[str, Any]) -> Reply:
    ((code, raw),) = op["responses"].items()
    content: Mapping[str, Any] = raw.get("content") or {}
    pagination = op.get("x-pagination")
    if not content:
        return Reply(int(code), "none", None, None, None)
    ((content_type, media),) = content.items()
    if content_type == "text/event-stream":
        return Reply(int(code), "sse", content_type, media["x-event-schema"], None)
    if content_type != "application/json":
        return Reply(int(code), "binary", content_type, None, None)
    if pagination:
        return Reply(int(code), "page", content_type, media["schema"]["items"], pagination)
    return Reply(int(code), "json", content_type, media["schema"], None)


@functools.cache
def operations() -> tuple[Operation, ...]:
    """Every operation of the spec, in document order."""
    found = []
    for template, item in spec()["paths"].items():
        for method, op in item.items():
            found.append(
                Operation(
                    sdk_name=op["x-sdk-name"],
                    method=method.upper(),
                    template=template,
                    params=tuple(_param(p) for p in op.get("parameters", ())),
                    body=_body(op.get("requestBody")),
                    reply=_reply(op),
                )
            )
    return tuple(found)


def nullable(schema: Schema) -> bool:
    """Whether a schema admits JSON null."""
    return any(m.get("type") == "null" for m in schema.get("anyOf", ()))


def nullable_body_properties(op: Operation) -> list[str]:
    """The wire names of the JSON body's top-level properties that admit null."""
    if op.body is None or op.body.content_type != "application/json":
        return []
    props: Mapping[str, Schema] = resolve(op.body.schema).get("properties", {})
    return [name for name, sub in props.items() if nullable(sub)]


def variants(op: Operation) -> tuple[Variant, ...]:
    """The variants that say something for ``op``."""
    return ("plain", "encoded", "null") if nullable_body_properties(op) else ("plain", "encoded")


def operation(sdk_name: str) -> Operation:
    """The operation the SDK spells ``sdk_name``."""
    (op,) = (o for o in operations() if o.sdk_name == sdk_name)
    return op


_SEGMENT = re.compile(r"^\{(\w+)\}$")


def match_template(template: str, path: str) -> dict[str, str] | None:
    """The decoded path parameters if the raw ``path`` (no query) fits ``template``."""
    want = template.strip("/").split("/")
    got = path.strip("/").split("/")
    if len(want) != len(got):
        return None
    found: dict[str, str] = {}
    for w, g in zip(want, got, strict=True):
        placeholder = _SEGMENT.match(w)
        if placeholder:
            if not g:
                return None
            found[placeholder.group(1)] = unquote(g)
        elif w != g:
            return None
    return found


def find_operation(method: str, path: str) -> Operation | None:
    """The operation a request hits: the fitting template with the most literal segments."""
    fits = [
        op
        for op in operations()
        if op.method == method.upper() and match_template(op.template, path) is not None
    ]
    if not fits:
        return None
    return max(fits, key=lambda op: sum(not _SEGMENT.match(s) for s in op.template.split("/")))


# --- values from schemas ---------------------------------------------------------------


class _Skip:
    """A value that cannot be built here (a recursive schema already being built)."""


_SKIP = _Skip()


@dataclass
class Sampler:
    """Builds a value for a schema.

    ``python`` builds call arguments (Python names for keys, bytes for binary); otherwise
    the wire form (wire names, binary as the bytes' text). ``full`` fills every property,
    otherwise only the required ones. ``variant`` picks which member of a union to use.
    """

    python: bool
    full: bool
    variant: int = 0
    _building: list[str] = field(default_factory=list)

    def value(self, schema: Schema, name: str) -> Any:
        got = self._value(schema, name)
        assert not isinstance(got, _Skip), f"cannot sample {name}: recursive and required"
        return got

    def _value(self, schema: Schema, name: str) -> Any:
        if "$ref" in schema:
            ref = schema["$ref"]
            if ref in self._building:
                return _SKIP
            self._building.append(ref)
            try:
                return self._value(_component(ref), name)
            finally:
                self._building.pop()
        if "anyOf" in schema:
            return self._union(schema["anyOf"], name)
        if "enum" in schema:
            return schema["enum"][0]
        if "const" in schema:
            return schema["const"]
        kind = schema.get("type")
        if kind == "object" or (kind is None and ("properties" in schema)):
            return self._object(schema, name)
        if kind == "array":
            item = self._value(schema.get("items", {}), name)
            return [] if isinstance(item, _Skip) else [item]
        if kind == "string":
            return self._string(schema, name)
        if kind == "integer":  # a small value the documented bounds allow
            return min(max(3, schema.get("minimum", 3)), schema.get("maximum", 3))
        if kind == "number":
            return 1.5
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        # No type: any JSON value.
        return f"v-{name}"

    def _union(self, members: Sequence[Schema], name: str) -> Any:
        real = [m for m in members if m.get("type") != "null"]
        nullable = len(real) < len(members)
        if real:
            start = self.variant % len(real)
            for member in [*real[start:], *real[:start]]:
                got = self._value(member, name)
                if not isinstance(got, _Skip):
                    return got
        return None if nullable else _SKIP

    def _object(self, schema: Schema, name: str) -> Any:
        props: Mapping[str, Schema] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        out: dict[str, Any] = {}
        for prop, sub in props.items():
            if not (self.full or prop in required):
                continue
            got = self._value(sub, prop)
            if isinstance(got, _Skip):
                if prop in required:
                    return _SKIP
                continue
            out[sub.get("x-python-name", prop) if self.python else prop] = got
        extra = schema.get("additionalProperties")
        if not props and extra is not False:
            sub = extra if isinstance(extra, Mapping) else {}
            got = self._value(sub, f"{name}-k")
            out[f"k-{name}"] = f"v-{name}-k" if isinstance(got, _Skip) else got
        return out

    def _string(self, schema: Schema, name: str) -> Any:
        fmt = schema.get("format")
        if fmt == "date-time":
            return "2024-05-06T07:08:09Z"
        if fmt == "date":
            return "2024-05-06"
        if fmt == "binary":
            return BINARY_PAYLOAD if self.python else BINARY_PAYLOAD.decode()
        return f"v-{name}"


# --- call arguments and the request they must send --------------------------------------


@dataclass(frozen=True)
class Call:
    """The arguments of one call, and what the request must carry."""

    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    path_values: Mapping[str, str]  # decoded values of the path's placeholders
    query: tuple[tuple[str, str], ...]  # sorted decoded pairs
    headers: Mapping[str, str]  # header parameters
    json_body: Any  # the JSON body, or None
    parts: tuple[Part, ...] | None  # the multipart parts, sorted
    raw_body: bytes | None  # the octet-stream body


@dataclass(frozen=True, order=True)
class Part:
    """One part of a multipart/form-data body."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def path_value(param: Param, variant: Variant) -> str:
    """A distinct path value; the "encoded" variant's needs percent-encoding."""
    base = f"p-{param.name.replace('_', '-')}"
    return base + _ENCODED_TAIL if variant == "encoded" else base


def official_quote(value: str) -> str:
    """How the official SDK percent-encodes one path segment (RFC 3986 pchar kept)."""
    return quote(value, safe="!$&'()*+,;=:@")


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _query_pairs(param: Param, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, list):
        assert param.style in (None, "form"), param
        if param.explode is False:
            yield param.name, ",".join(_query_text(v) for v in value)
        else:  # OpenAPI's default for form: one pair per item
            for v in value:
                yield param.name, _query_text(v)
    elif isinstance(value, dict):
        assert param.style == "deepObject", param
        for key, item in value.items():
            yield f"{param.name}[{key}]", _query_text(item)
    else:
        yield param.name, _query_text(value)


def _form_fields(prefix: str, value: Any, array_format: str) -> Iterator[tuple[str, Any]]:
    """Flatten a multipart body as the official SDK names its fields."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _form_fields(f"{prefix}[{key}]" if prefix else key, item, array_format)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            sub = f"{prefix}[{index}]" if array_format == "indices" else f"{prefix}[]"
            yield from _form_fields(sub, item, array_format)
    else:
        yield prefix, value


def _form_part(name: str, value: Any) -> Part:
    if isinstance(value, bytes):
        # Bytes become a file part; httpx names an unnamed file "upload".
        return Part(name, "upload", "application/octet-stream", value)
    return Part(name, None, None, _query_text(value).encode())


def sample_call(op: Operation, variant: Variant) -> Call:
    """Arguments covering every parameter of ``op``, and the request they must send."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    path_values: dict[str, str] = {}
    query: list[tuple[str, str]] = []
    headers: dict[str, str] = {}
    sampler = Sampler(python=True, full=True)
    for param in op.params:
        if param.location == "path":
            value: Any = path_value(param, variant)
            path_values[param.name] = value
        elif param.name == "offset" and op.reply.pagination == "offset":
            value = 5  # distinct from NEXT_OFFSET: the second page is told apart by it
        elif param.schema.get("type") == "array":
            # Two items: one would not tell comma-joined from repeated pairs.
            items = param.schema.get("items", {})
            value = [sampler.value(items, param.name), sampler.value(items, f"{param.name}-2")]
        else:
            value = sampler.value(param.schema, param.name)
            plain_string = param.schema.get("type") == "string" and not (
                {"enum", "format"} & set(param.schema)
            )
            if variant == "encoded" and param.location == "query" and plain_string:
                value += _ENCODED_QUERY_TAIL
        if param.location == "query":
            query.extend(_query_pairs(param, value))
        elif param.location == "header":
            headers[param.name] = _query_text(value)
        (args.append(value) if param.positional else kwargs.__setitem__(param.py, value))
    json_body: Any = None
    parts: tuple[Part, ...] | None = None
    raw_body: bytes | None = None
    body = op.body
    if body is not None:
        if body.content_type == "application/octet-stream":
            assert body.py is not None, op
            raw_body = BINARY_PAYLOAD
            (args.append(raw_body) if body.positional else kwargs.__setitem__(body.py, raw_body))
        else:
            schema = resolve(body.schema)
            props = Sampler(python=True, full=True).value(schema, "body")
            wire = Sampler(python=False, full=True).value(schema, "body")
            if variant == "null":
                for name in nullable_body_properties(op):
                    wire[name] = None
                    props[schema["properties"][name].get("x-python-name", name)] = None
            kwargs.update(props)
            if body.content_type == "application/json":
                json_body = wire
            else:
                assert body.array_format is not None, op
                parts = tuple(
                    sorted(_form_part(n, v) for n, v in _form_fields("", props, body.array_format))
                )
    return Call(
        args=tuple(args),
        kwargs=kwargs,
        path_values=path_values,
        query=tuple(sorted(query)),
        headers=headers,
        json_body=json_body,
        parts=parts,
        raw_body=raw_body,
    )


# --- responses --------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A response to send, and the data a parsed result must equal."""

    status: int
    content_type: str | None
    body: bytes
    headers: Mapping[str, str]
    data: Any  # the JSON value, the page's items, the events' data, or the bytes


def _full(variant: Variant) -> bool:
    return variant == "encoded"


def sample_answer(op: Operation, variant: Variant, *, second_page: bool = False) -> Answer:
    """A schema-valid response: required fields only ("plain") or every field ("encoded")."""
    reply = op.reply
    sampler = Sampler(python=False, full=_full(variant), variant=int(_full(variant)))
    if reply.kind == "none":
        return Answer(reply.status, None, b"", {}, None)
    if reply.kind == "binary":
        data = b"\x89bin-" + op.sdk_name.encode() + b"\r\n\x00"
        assert reply.content_type is not None
        return Answer(reply.status, reply.content_type, data, {}, data)
    assert reply.schema is not None
    if reply.kind == "sse":
        events = [
            Sampler(python=False, full=_full(variant), variant=i).value(reply.schema, "event")
            for i in range(2)
        ]
        text = "".join(f"id: {i + 1}\ndata: {json.dumps(e)}\n\n" for i, e in enumerate(events))
        return Answer(reply.status, "text/event-stream", text.encode(), {}, events)
    if reply.kind == "page":
        headers: dict[str, str]
        if second_page:
            items: list[Any] = []
            headers = {"X-Has-More": "false"}
        else:
            items = [sampler.value(reply.schema, "item")]
            headers = {"X-Has-More": "true"}
            if reply.pagination == "offset":
                headers["X-Next-Offset"] = str(NEXT_OFFSET)
            else:
                headers["X-Next-Page-Token"] = NEXT_PAGE_TOKEN
        return Answer(reply.status, "application/json", json.dumps(items).encode(), headers, items)
    value = sampler.value(reply.schema, "result")
    return Answer(reply.status, "application/json", json.dumps(value).encode(), {}, value)


def next_page_pair(op: Operation) -> tuple[str, str]:
    """The query pair by which a list asks for the page the first page pointed to."""
    if op.reply.pagination == "offset":
        return ("offset", str(NEXT_OFFSET))
    assert op.reply.pagination == "page_token", op
    return ("page_token", NEXT_PAGE_TOKEN)


def is_second_page(op: Operation, query: Sequence[tuple[str, str]]) -> bool:
    """Whether a list request asks for the second page."""
    return op.reply.kind == "page" and next_page_pair(op) in query


# --- reading requests and results -------------------------------------------------------


def base_type(content_type: str | None) -> str | None:
    """``multipart/form-data; boundary=x`` -> ``multipart/form-data``."""
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


def parse_multipart(content_type: str, body: bytes) -> tuple[Part, ...]:
    """The parts of a multipart/form-data body, sorted (the boundary is not compared)."""
    header = email.message.Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    assert isinstance(boundary, str), content_type
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    assert chunks[-1].strip() == b"--", "no closing delimiter"
    parts = []
    for chunk in chunks[1:-1]:
        assert chunk.startswith(b"\r\n") and chunk.endswith(b"\r\n"), chunk[:40]
        head, _, data = chunk[2:-2].partition(b"\r\n\r\n")
        fields = email.message.Message()
        for line in head.decode().split("\r\n"):
            key, _, val = line.partition(":")
            fields[key.strip()] = val.strip()
        name = fields.get_param("name", header="content-disposition")
        filename = fields.get_param("filename", header="content-disposition")
        assert isinstance(name, str), head
        assert filename is None or isinstance(filename, str), head
        parts.append(Part(name, filename, fields.get("content-type"), data))
    return tuple(sorted(parts))


@functools.cache
def python_names() -> Mapping[str, str]:
    """Wire property name -> Python attribute name, for every renamed property."""
    found: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for prop, sub in (node.get("properties") or {}).items():
                if isinstance(sub, Mapping) and "x-python-name" in sub:
                    assert found.setdefault(prop, sub["x-python-name"]) == sub["x-python-name"]
            for sub in node.values():
                walk(sub)
        elif isinstance(node, list):
            for sub in node:
                walk(sub)

    walk(spec())
    return found


def mismatch(expected: Any, actual: Any, where: str = "$") -> str | None:
    """Where a parsed result differs from the JSON it was parsed from, or None.

    ``actual`` may be plain JSON, an attrs instance (Python attribute names), a pydantic
    model (dumped by wire alias), datetimes/dates for ISO strings, enums for their values.
    """
    if hasattr(actual, "model_dump") and not isinstance(actual, type):
        actual = actual.model_dump(by_alias=True, exclude_unset=True)
    if isinstance(actual, enum.Enum):
        actual = actual.value
    if isinstance(expected, Mapping):
        if isinstance(actual, Mapping):
            if set(expected) != set(actual):
                return f"{where}: keys {sorted(expected)} != {sorted(actual)}"
            items = [(k, actual[k]) for k in expected]
        elif hasattr(type(actual), "__attrs_attrs__"):
            missing = [k for k in expected if not hasattr(actual, python_names().get(k, k))]
            if missing:
                return f"{where}: {type(actual).__name__} lacks {missing}"
            items = [(k, getattr(actual, python_names().get(k, k))) for k in expected]
        else:
            return f"{where}: expected an object, got {type(actual).__name__}"
        for key, got in items:
            found = mismatch(expected[key], got, f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            return f"{where}: {expected!r} != {actual!r}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            found = mismatch(e, a, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(expected, str) and isinstance(actual, dt.datetime):
        # Python 3.10's fromisoformat does not read a "Z" suffix.
        ok = dt.datetime.fromisoformat(expected.replace("Z", "+00:00")) == actual
    elif isinstance(expected, str) and isinstance(actual, dt.date):
        ok = dt.date.fromisoformat(expected) == actual
    else:
        ok = type(expected) is type(actual) and expected == actual
        if isinstance(expected, (int, float)) and not isinstance(expected, bool):
            ok = expected == actual and not isinstance(actual, bool)
    return None if ok else f"{where}: {expected!r} != {actual!r}"
