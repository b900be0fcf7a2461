"""Schema-valid JSON values built from the spec: what the emulator answers where it keeps no
rule of its own, and the shape every stored record is answered in.

`synthesize` builds a value for a schema: every required field, and the optional ones that
``known`` gives (known values are kept where the schema accepts them and replaced where it
does not; names the schema does not declare are dropped, so a secret kept beside a record
never leaks into a response that does not declare it). Deterministic for a seed and a
``now``. Pure.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ._spec import Schema, resolve
from ._validate import check, json_type

__all__ = ["MISSING", "merge", "overlay", "stamp", "synthesize", "token"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""No known value: build one."""


def stamp(when: datetime | None = None) -> str:
    """A UTC timestamp as the API writes it: ISO 8601 with ``Z``."""
    when = when or datetime.now(timezone.utc)
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def token(rng: random.Random, size: int = 12) -> str:
    """Random lowercase letters and digits (seeded)."""
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(size))


def merge(base: Any, known: Any) -> Any:
    """``known`` laid over ``base``: objects merged key by key, anything else replaced."""
    if isinstance(base, Mapping) and isinstance(known, Mapping):
        out = dict(base)
        for key, value in known.items():
            out[key] = merge(base.get(key, MISSING), value) if key in base else value
        return out
    return known


class _Builder:
    def __init__(self, seed: int, now: str, id_prefix: str | None) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.id_prefix = id_prefix
        self.building: list[str] = []

    def value(self, schema: Schema, known: Any, name: str, depth: int) -> Any:
        ref = schema.get("$ref")
        if ref is not None:
            if ref in self.building and known is MISSING:
                return MISSING  # a recursive schema: stop where nothing more is required
            self.building.append(ref)
            try:
                return self.value(resolve(schema), known, name, depth)
            finally:
                self.building.pop()
        members = schema.get("anyOf") or schema.get("oneOf")
        if members:
            return self.union(members, known, name, depth)
        if known is not MISSING and not check(schema, known, name) and not _container(known):
            return known  # a valid scalar (containers are rebuilt to drop undeclared names)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type")
        if kind == "object" or (kind is None and "properties" in schema):
            return self.object(schema, known, name, depth)
        if kind == "array":
            if not isinstance(known, list):
                return []
            items = schema.get("items", {})
            built = [self.value(items, k, name, depth + 1) for k in known]
            return [b for b in built if b is not MISSING]
        if kind == "string":
            return self.string(schema, name, depth)
        if kind == "integer":
            return max(0, int(schema.get("minimum", 0)))
        if kind == "number":
            return float(max(0, schema.get("minimum", 0)))
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        return None if known is MISSING else known  # no type: any JSON value

    def union(self, members: list[Schema], known: Any, name: str, depth: int) -> Any:
        real = [m for m in members if resolve(m).get("type") != "null"]
        nullable = len(real) < len(members)
        if known is None and nullable:
            return None
        if known is not MISSING:
            # The first member that holds the known value once built (e.g. by its "type").
            for member in real:
                built = self.value(member, known, name, depth)
                valid = built is not MISSING and not check(member, built, name)
                if valid and _keeps(known, built):
                    return built
            for member in real:
                built = self.value(member, known, name, depth)
                if built is not MISSING and not check(member, built, name):
                    return built
        for member in real:
            built = self.value(member, MISSING, name, depth)
            if built is not MISSING:
                return built
        return None if nullable else MISSING

    def object(self, schema: Schema, known: Any, name: str, depth: int) -> Any:
        given: Mapping[str, Any] = known if isinstance(known, Mapping) else {}
        props: Mapping[str, Schema] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        out: dict[str, Any] = {}
        for prop, sub in props.items():
            if prop in given:
                built = self.value(sub, given[prop], prop, depth + 1)
            elif prop in required:
                built = self.value(sub, MISSING, prop, depth + 1)
            else:
                continue
            if built is MISSING:
                if prop in required:
                    return MISSING
                continue
            out[prop] = built
        extra = schema.get("additionalProperties", not props)
        if extra is not False:
            sub = extra if isinstance(extra, Mapping) else {}
            for key, item in given.items():
                if key in props:
                    continue
                built = self.value(sub, item, key, depth + 1)
                if built is not MISSING and not check(sub, built, key):
                    out[key] = built
        return out

    def string(self, schema: Schema, name: str, depth: int) -> str:
        fmt = schema.get("format")
        if fmt == "date-time":
            return self.now
        if fmt == "date":
            return self.now[:10]
        if fmt == "binary":
            return ""
        if name == "id" and depth == 1 and self.id_prefix is not None:
            return self.id_prefix + token(self.rng)
        if name == "id" or name.endswith("_id"):
            return f"{name.removesuffix('_id') or 'id'}_{token(self.rng)}"
        return f"{name}-{token(self.rng, 6)}"


def _container(value: Any) -> bool:
    return isinstance(value, (dict, list))


def _keeps(known: Any, built: Any) -> bool:
    """Whether ``built`` kept the scalar values ``known`` gave (a member's discriminators)."""
    if isinstance(known, Mapping) and isinstance(built, Mapping):
        return all(
            k in built and _keeps(v, built[k])
            for k, v in known.items()
            if json_type(v) in ("string", "integer", "boolean")
        )
    return True


def synthesize(
    schema: Schema,
    *,
    known: Any = MISSING,
    seed: int = 0,
    now: datetime | str | None = None,
    id_prefix: str | None = None,
) -> Any:
    """A value valid against ``schema``, holding what ``known`` gives where it fits.

    Required fields are always there; optional ones only when ``known`` has them. Strings
    in the ``date-time`` format are ``now`` (UTC, ``Z``), enums their first value, a
    top-level ``id`` ``id_prefix`` and random letters (``prf_...``); other strings, numbers
    and booleans are plain placeholders. The same seed and ``now`` give the same value.
    """
    when = now if isinstance(now, str) else stamp(now)
    built = _Builder(seed, when, id_prefix).value(schema, known, "", 0)
    if built is MISSING:
        raise ValueError("the schema requires a value that cannot be built (recursive)")
    return built


def overlay(schema: Schema, value: Any, known: Any, **options: Any) -> Any:
    """``value`` (e.g. a stored record) with ``known`` (e.g. a create request) laid over
    it, answered in ``schema``'s shape (see `synthesize`)."""
    return synthesize(schema, known=merge(value, known), **options)
