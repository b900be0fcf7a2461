"""Check a plain dict against a component schema of spec/kernel.openapi.yaml (jsonschema),
and that it carries no field the schema does not name."""

from __future__ import annotations

import functools
from typing import Any

import jsonschema

from tests.spec_samples import resolve, spec


@functools.cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    root = {"$ref": f"#/components/schemas/{name}", "components": spec()["components"]}
    cls = jsonschema.Draft202012Validator
    return cls(root, format_checker=cls.FORMAT_CHECKER)


def conforms(name: str, value: Any) -> None:
    """Raise unless `value` is valid for the schema `name` and has only its named fields."""
    _validator(name).validate(value)
    properties = resolve({"$ref": f"#/components/schemas/{name}"}).get("properties", {})
    extra = set(value) - set(properties)
    assert not extra, f"{name} has fields the spec does not name: {sorted(extra)}"


def assert_valid(schema: Any, value: Any) -> None:
    """Raise unless `value` is valid for `schema` (its ``#/components/...`` references
    resolve against the spec), naming the first problem."""
    root = {**schema, "components": spec()["components"]}
    cls = jsonschema.Draft202012Validator
    errors = sorted(cls(root, format_checker=cls.FORMAT_CHECKER).iter_errors(value), key=str)
    assert not errors, errors[0]
