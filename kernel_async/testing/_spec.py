"""The API's description as the emulator reads it: the spec shipped in the package
(``kernel_async/_gen/spec.json``, the JSON form of ``spec/kernel.openapi.yaml``), loaded
once, and an index matching a request's method and raw path to its operation.

Pure: no I/O past reading the packaged document once.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import unquote

import attrs

__all__ = [
    "SERVED_BY_EMULATOR",
    "Body",
    "Match",
    "Operation",
    "OperationIndex",
    "Param",
    "index",
    "operation",
    "operations",
    "resolve",
    "spec",
]

Schema = Mapping[str, Any]

# What FakeKernel answers with rules of its own (browser sessions and replays).
SERVED_BY_EMULATOR = frozenset(
    {
        "browsers.create",
        "browsers.retrieve",
        "browsers.update",
        "browsers.list",
        "browsers.delete_by_id",
        "browsers.delete",
        "browsers.replays.start",
        "browsers.replays.list",
        "browsers.replays.stop",
        "browsers.replays.download",
    }
)

_PLACEHOLDER = re.compile(r"^\{(\w+)\}$")
_REF_PREFIX = "#/components/schemas/"


@functools.cache
def spec() -> Mapping[str, Any]:
    """The parsed spec, read from the package once."""
    text = importlib.resources.files("kernel_async._gen").joinpath("spec.json").read_text("utf-8")
    data: Mapping[str, Any] = json.loads(text)
    return data


def resolve(schema: Schema) -> Schema:
    """Follow ``$ref`` (repeatedly) to the component schema it names."""
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith(_REF_PREFIX):
            raise ValueError(f"unsupported $ref {ref!r}")
        schema = spec()["components"]["schemas"][ref[len(_REF_PREFIX) :]]
    return schema


@attrs.frozen
class Param:
    """A path, query or header parameter."""

    name: str
    location: Literal["path", "query", "header"]
    required: bool
    schema: Schema = attrs.field(repr=False)
    style: str | None = None
    explode: bool | None = None


@attrs.frozen
class Body:
    """A request body: JSON, multipart form or raw bytes."""

    content_type: str
    schema: Schema = attrs.field(repr=False)
    required: bool


@attrs.frozen
class Operation:
    """One operation of the spec, as the official SDK names it (``x-sdk-name``)."""

    sdk_name: str
    method: str  # upper case
    template: str
    params: tuple[Param, ...] = attrs.field(repr=False)
    body: Body | None = attrs.field(repr=False)
    status: int = attrs.field(repr=False)  # the success status
    content_type: str | None = attrs.field(repr=False)  # of the success response
    # The JSON body's schema (a page: the array), or one SSE event's data, or None.
    response_schema: Schema | None = attrs.field(repr=False)
    pagination: Literal["offset", "page_token"] | None = attrs.field(repr=False)

    @property
    def segments(self) -> tuple[str, ...]:
        """The template's segments (placeholders as ``{name}``)."""
        return tuple(self.template.strip("/").split("/"))

    @property
    def literal_count(self) -> int:
        """How many segments are fixed text (more wins when several templates fit)."""
        return sum(not _PLACEHOLDER.match(s) for s in self.segments)

    def params_in(self, location: str) -> tuple[Param, ...]:
        """The parameters found in ``location`` (path, query or header)."""
        return tuple(p for p in self.params if p.location == location)

    @property
    def kind(self) -> str:
        """The resource group: ``vaults.items`` for ``vaults.items.upsert``."""
        return self.sdk_name.rpartition(".")[0]

    @property
    def verb(self) -> str:
        """The method name: ``upsert`` for ``vaults.items.upsert``."""
        return self.sdk_name.rpartition(".")[2]

    @property
    def is_json(self) -> bool:
        """Whether the success response is a JSON body."""
        return self.content_type == "application/json"

    def __str__(self) -> str:
        return self.sdk_name


@attrs.frozen
class Match:
    """An operation a request hits, with its decoded path parameters."""

    operation: Operation
    path_params: Mapping[str, str]


def _operation(template: str, method: str, raw: Mapping[str, Any]) -> Operation:
    params = tuple(
        Param(
            name=p["name"],
            location=p["in"],
            required=bool(p.get("required", False)),
            schema=p["schema"],
            style=p.get("style"),
            explode=p.get("explode"),
        )
        for p in raw.get("parameters", ())
    )
    body = None
    request_body = raw.get("requestBody")
    if request_body is not None:
        ((content_type, media),) = request_body["content"].items()
        body = Body(content_type, media["schema"], bool(request_body.get("required", False)))
    ((code, response),) = raw["responses"].items()
    content: Mapping[str, Any] = response.get("content") or {}
    content_type = None
    schema = None
    if content:
        ((content_type, media),) = content.items()
        if content_type == "text/event-stream":
            schema = media.get("x-event-schema")
        elif content_type == "application/json":
            schema = media["schema"]
    return Operation(
        sdk_name=raw["x-sdk-name"],
        method=method.upper(),
        template=template,
        params=params,
        body=body,
        status=int(code),
        content_type=content_type,
        response_schema=schema,
        pagination=raw.get("x-pagination"),
    )


@functools.cache
def operations() -> tuple[Operation, ...]:
    """Every operation of the spec, in document order."""
    return tuple(
        _operation(template, method, raw)
        for template, item in spec()["paths"].items()
        for method, raw in item.items()
    )


@functools.cache
def _by_name() -> Mapping[str, Operation]:
    return {op.sdk_name: op for op in operations()}


def operation(sdk_name: str) -> Operation:
    """The operation the official SDK spells ``sdk_name`` (KeyError if none)."""
    return _by_name()[sdk_name]


def _split(raw_path: str) -> list[str] | None:
    """A raw path's decoded segments, or None when one cannot be decoded (e.g. ``%FF``)."""
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    try:
        # Strict: an empty segment ("//", a trailing "/") matches no placeholder.
        return [unquote(s, errors="strict") for s in path.removeprefix("/").split("/")]
    except UnicodeDecodeError:
        return None


def _fit(op: Operation, segments: Sequence[str]) -> dict[str, str] | None:
    want = op.segments
    if len(want) != len(segments):
        return None
    found: dict[str, str] = {}
    for w, g in zip(want, segments, strict=True):
        placeholder = _PLACEHOLDER.match(w)
        if placeholder:
            if not g:
                return None
            found[placeholder.group(1)] = g
        elif w != g:
            return None
    return found


class OperationIndex:
    """Finds the operation a request hits from its method and raw (undecoded) path.

    Each path segment is percent-decoded on its own, so an ID holding ``/`` (sent as
    ``%2F``) stays one parameter. Where several templates fit, the one with the most fixed
    segments wins (``/extensions/from_chrome_store`` before ``/extensions/{id_or_name}``).
    """

    def __init__(self, ops: Sequence[Operation]) -> None:
        self._ops = tuple(ops)
        self._by_length: dict[int, list[Operation]] = {}
        for op in sorted(self._ops, key=lambda o: -o.literal_count):
            self._by_length.setdefault(len(op.segments), []).append(op)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self._ops)

    def __len__(self) -> int:
        return len(self._ops)

    def __contains__(self, sdk_name: object) -> bool:
        return any(op.sdk_name == sdk_name for op in self._ops)

    def match(self, method: str, raw_path: str) -> Match | None:
        """The operation ``method raw_path`` hits, or None."""
        segments = _split(raw_path)
        if segments is None:
            return None
        method = method.upper()
        for op in self._by_length.get(len(segments), ()):
            if op.method != method:
                continue
            found = _fit(op, segments)
            if found is not None:
                return Match(op, found)
        return None

    def allowed(self, raw_path: str) -> list[str]:
        """The methods some operation accepts on ``raw_path`` (for a 405's answer)."""
        segments = _split(raw_path)
        if segments is None:
            return []
        return sorted(
            {
                op.method
                for op in self._by_length.get(len(segments), ())
                if _fit(op, segments) is not None
            }
        )


@functools.cache
def index(*, exclude_served: bool = False) -> OperationIndex:
    """An index of every operation, or of those the emulator has no own rules for."""
    ops = operations()
    if exclude_served:
        ops = tuple(op for op in ops if op.sdk_name not in SERVED_BY_EMULATOR)
    return OperationIndex(ops)
