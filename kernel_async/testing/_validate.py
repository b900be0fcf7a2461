"""Checking a request against its operation in the spec: path and query parameters, a JSON
body, a multipart form. Pure functions: each answers the problems found, every one naming
the field it is about (``body.viewport.width: expected integer, got "x"``).

The JSON Schema subset is what the spec uses: ``type``, ``properties``, ``required``,
``additionalProperties``, ``items``, ``enum``, ``const``, ``anyOf``/``oneOf`` (null among
them makes a value nullable), ``minimum``/``maximum`` and the ``date-time``/``date`` formats.
Properties the schema does not name are allowed unless ``additionalProperties`` is false.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import attrs

from ._spec import Operation, Param, Schema, resolve

__all__ = [
    "FormPart",
    "Problem",
    "Validated",
    "check",
    "decode_query",
    "error_body",
    "json_type",
    "parse_form",
    "validate_form",
    "validate_request",
]


@attrs.frozen
class Problem:
    """One thing wrong with a request: the field (``body.size``, ``query.limit``) and why.

    ``status`` is 400 for a malformed request (wrong type, missing, not one of an enum) and
    422 for a well-formed value the API refuses on its meaning (out of a documented range).
    """

    field: str
    message: str
    status: int = 400

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def json_type(value: Any) -> str:
    """The JSON type name of a decoded JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_type(value: Any, kind: str) -> bool:
    got = json_type(value)
    if kind == "number":
        return got in ("integer", "number")
    if kind == "integer" and got == "number":
        return float(value).is_integer()
    return got == kind


def parse_datetime(text: str) -> datetime | None:
    """An RFC 3339 date-time (``Z`` or an offset; Python 3.10 lacks ``Z``), or None."""
    if not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|z|[+-]\d\d:\d\d)$", text):
        return None
    from .._models import _datetime  # the SDK's one reading: 1-9 fraction digits on 3.10

    try:
        return _datetime(text, datetime)
    except ValueError:
        return None


def _format_problem(schema: Schema, value: str) -> str | None:
    fmt = schema.get("format")
    if fmt == "date-time" and parse_datetime(value) is None:
        return f"expected an RFC 3339 date-time, got {_show(value)}"
    if fmt == "date":
        try:
            date.fromisoformat(value)
        except ValueError:
            return f"expected a date (YYYY-MM-DD), got {_show(value)}"
    return None


def _describe(schema: Schema) -> str:
    ref = schema.get("$ref")
    if isinstance(ref, str) and resolve(schema).get("type", "object") == "object":
        return ref.rpartition("/")[2]  # e.g. an object shape: its component's name
    schema = resolve(schema)
    if "enum" in schema:
        return "one of " + ", ".join(_show(v) for v in schema["enum"])
    members = schema.get("anyOf") or schema.get("oneOf")
    if members:
        return " or ".join(_describe(m) for m in members)
    return str(schema.get("type", "any value"))


def check(schema: Schema, value: Any, where: str) -> list[Problem]:
    """The problems of a decoded JSON ``value`` against ``schema``; ``where`` names it."""
    schema = resolve(schema)
    members = schema.get("anyOf") or schema.get("oneOf")
    if members:
        return _check_union(members, value, where)
    if "const" in schema and value != schema["const"]:
        return [Problem(where, f"expected {_show(schema['const'])}, got {_show(value)}")]
    kind = schema.get("type")
    if kind is None and "properties" in schema:
        kind = "object"
    if kind is not None and not _is_type(value, kind):
        return [Problem(where, f"expected {kind}, got {_show(value)}")]
    if "enum" in schema and value not in schema["enum"]:
        return [Problem(where, f"expected {_describe(schema)}, got {_show(value)}")]
    if isinstance(value, str):
        found = _format_problem(schema, value)
        return [Problem(where, found)] if found else []
    if _is_type(value, "number") and not isinstance(value, bool):
        return _check_range(schema, value, where)
    if isinstance(value, list):
        items = schema.get("items")
        if items is None:
            return []
        return [p for i, item in enumerate(value) for p in check(items, item, f"{where}[{i}]")]
    if isinstance(value, dict):
        return _check_object(schema, value, where)
    return []


def _check_range(schema: Schema, value: float, where: str) -> list[Problem]:
    if "minimum" in schema and value < schema["minimum"]:
        return [Problem(where, f"must be at least {schema['minimum']}, got {value}", 422)]
    if "maximum" in schema and value > schema["maximum"]:
        return [Problem(where, f"must be at most {schema['maximum']}, got {value}", 422)]
    return []


def _check_union(members: Sequence[Schema], value: Any, where: str) -> list[Problem]:
    found: list[list[Problem]] = []
    for member in members:
        problems = check(member, value, where)
        if not problems:
            return []
        found.append(problems)
    # Report the member of the value's own type (its deeper problems name the field best).
    same_type = [
        problems
        for member, problems in zip(members, found, strict=True)
        if _is_type(value, _type_of(member))
    ]
    if len(same_type) == 1:
        return same_type[0]
    expected = " or ".join(_describe(m) for m in members)
    return [Problem(where, f"expected {expected}, got {_show(value)}")]


def _type_of(schema: Schema) -> str:
    schema = resolve(schema)
    kind = schema.get("type")
    if kind is None:
        return "object" if "properties" in schema else "any"
    return str(kind)


def _check_object(schema: Schema, value: Mapping[str, Any], where: str) -> list[Problem]:
    problems = [
        Problem(f"{where}.{name}", "required")
        for name in schema.get("required", ())
        if name not in value
    ]
    props: Mapping[str, Schema] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        sub = props.get(name)
        if sub is not None:
            problems.extend(check(sub, item, f"{where}.{name}"))
        elif extra is False:
            problems.append(Problem(f"{where}.{name}", "unexpected property"))
        elif isinstance(extra, Mapping):
            problems.extend(check(extra, item, f"{where}.{name}"))
    return problems


# --- query ---------------------------------------------------------------------------


_DEEP = re.compile(r"^(\w+)\[([^\]]*)\]$")


def _scalar(schema: Schema, text: str, where: str) -> tuple[Any, list[Problem]]:
    """A query string value decoded to the schema's type."""
    schema = resolve(schema)
    kind = schema.get("type")
    value: Any = text
    if kind == "integer":
        if not re.fullmatch(r"[+-]?\d+", text):
            return None, [Problem(where, f"expected integer, got {_show(text)}")]
        value = int(text)
    elif kind == "number":
        try:
            value = float(text)
        except ValueError:
            return None, [Problem(where, f"expected number, got {_show(text)}")]
    elif kind == "boolean":
        if text not in ("true", "false"):
            return None, [Problem(where, f"expected true or false, got {_show(text)}")]
        value = text == "true"
    return value, check(schema, value, where)


def decode_query(
    op: Operation, pairs: Sequence[tuple[str, str]]
) -> tuple[dict[str, Any], list[Problem]]:
    """The operation's query parameters decoded to their types, and the problems found.

    Arrays come comma-joined (``explode: false``) or repeated; a ``deepObject`` comes as
    ``name[key]=value`` pairs. Parameters the operation does not declare are ignored.
    """
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for param in op.params_in("query"):
        where = f"query.{param.name}"
        schema = resolve(param.schema)
        if param.style == "deepObject":
            found = {
                m.group(2): v
                for k, v in pairs
                if (m := _DEEP.match(k)) and m.group(1) == param.name
            }
            if found:
                problems.extend(check(schema, found, where))
                values[param.name] = found
        else:
            texts = [v for k, v in pairs if k == param.name]
            if texts:
                value, found_problems = _decode_param(param, schema, texts, where)
                problems.extend(found_problems)
                if not found_problems:
                    values[param.name] = value
        if (
            param.required
            and param.name not in values
            and not any(p.field.startswith(where) for p in problems)
        ):
            problems.append(Problem(where, "required"))
    return values, problems


def _decode_param(
    param: Param, schema: Schema, texts: list[str], where: str
) -> tuple[Any, list[Problem]]:
    if schema.get("type") == "array":
        if param.explode is False:
            texts = [t for text in texts for t in text.split(",")]
        items = schema.get("items", {})
        decoded = []
        problems: list[Problem] = []
        for i, text in enumerate(texts):
            value, found = _scalar(items, text, f"{where}[{i}]")
            decoded.append(value)
            problems.extend(found)
        return decoded, problems
    if len(texts) > 1:
        return None, [Problem(where, f"expected one value, got {len(texts)}")]
    return _scalar(schema, texts[0], where)


# --- multipart -----------------------------------------------------------------------


@attrs.frozen
class FormPart:
    """One field of a multipart/form-data body."""

    name: str
    data: bytes = attrs.field(repr=False)
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        """The value as text (a form field)."""
        return self.data.decode("utf-8", errors="replace")


def parse_form(content_type: str, body: bytes) -> list[FormPart] | None:
    """The parts of a multipart/form-data body, or None when it is not one."""
    if (
        not content_type.lower().startswith("multipart/form-data")
        or "boundary=" not in content_type
    ):
        return None
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return None
    parts = []
    for part in message.iter_parts():
        assert isinstance(part, email.message.EmailMessage)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            return None
        payload = part.get_payload(decode=True)
        parts.append(
            FormPart(
                name=name,
                data=payload if isinstance(payload, bytes) else b"",
                filename=part.get_filename(),
                content_type=part.get("content-type"),
            )
        )
    return parts


def validate_form(schema: Schema, parts: Sequence[FormPart]) -> list[Problem]:
    """The problems of a form's fields: required ones present, scalars of the right type.

    Nested values come as ``field[key]`` / ``field[0]`` / ``field[]`` names, as the
    official SDK flattens them; a field is present when any part names it or starts so.
    """
    schema = resolve(schema)
    props: Mapping[str, Schema] = schema.get("properties", {})
    tops = {p.name.split("[", 1)[0]: p for p in parts}
    problems = [
        Problem(f"body.{name}", "required")
        for name in schema.get("required", ())
        if name not in tops
    ]
    for part in parts:
        sub = props.get(part.name)
        if sub is None:
            continue
        sub = resolve(sub)
        if sub.get("format") == "binary":
            continue
        if sub.get("type") in ("integer", "number", "boolean") or "enum" in sub:
            _, found = _scalar(sub, part.text, f"body.{part.name}")
            problems.extend(found)
    return problems


# --- a whole request -----------------------------------------------------------------


@attrs.frozen
class Validated:
    """A request decoded against its operation: query values, body, and problems."""

    query: Mapping[str, Any]
    body: Any  # the JSON value, the form's parts, the raw bytes, or None
    problems: tuple[Problem, ...]


def validate_request(
    op: Operation,
    path_params: Mapping[str, str],
    query: Sequence[tuple[str, str]],
    content_type: str | None,
    body: bytes,
) -> Validated:
    """Decode and check a request against ``op`` (pure)."""
    problems: list[Problem] = []
    for param in op.params_in("path"):
        value = path_params.get(param.name, "")
        if not value:
            problems.append(Problem(f"path.{param.name}", "required"))
    values, query_problems = decode_query(op, query)
    problems.extend(query_problems)
    decoded: Any = None
    spec_body = op.body
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if spec_body is None:
        pass
    elif not body:
        if spec_body.required:
            problems.append(Problem("body", "required"))
    elif spec_body.content_type == "application/json":
        try:
            decoded = json.loads(body)
        except ValueError:
            problems.append(Problem("body", "not valid JSON"))
        else:
            problems.extend(check(spec_body.schema, decoded, "body"))
    elif spec_body.content_type == "multipart/form-data":
        parts = parse_form(content_type or "", body) if base == "multipart/form-data" else None
        if parts is None:
            problems.append(Problem("body", "expected a multipart/form-data body"))
        else:
            decoded = parts
            problems.extend(validate_form(spec_body.schema, parts))
    else:
        decoded = body
    return Validated(values, decoded, tuple(problems))


def error_body(problems: Sequence[Problem]) -> tuple[int, dict[str, Any]]:
    """The status and Error body answering ``problems`` (400, or 422 when all are 422)."""
    status = 422 if problems and all(p.status == 422 for p in problems) else 400
    code = "unprocessable_entity" if status == 422 else "bad_request"
    return status, {
        "code": code,
        "message": "; ".join(str(p) for p in problems),
        "details": [{"code": "invalid_input", "message": str(p)} for p in problems],
    }
