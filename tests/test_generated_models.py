"""The one converter on the generated models, and what their reprs hide (issue 18, point 6).

Most checks walk every generated model (kernel_async/_gen/models) with a minimal
object built from its own annotations, so a new model is covered without a new test.
"""

from __future__ import annotations

import collections.abc
import functools
import importlib
import operator
import pkgutil
import re
import sys
import types
import typing
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta, timezone
from functools import cache
from typing import Any

import attrs
import pytest
from aiohttp import web
from cattrs.errors import ClassValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

import kernel_async._gen.models as generated
import kernel_async._gen_support as gen_support
from kernel_async import APIResponseValidationError, AsyncKernel
from kernel_async import _models as handwritten
from kernel_async._gen.models import _shared
from kernel_async._gen.models.browsers_telemetry import (
    BrowserAPICallEvent,
    BrowserCdpCommandEvent,
    CallFrame,
    TelemetryEventsResponse,
)
from kernel_async._gen.models.proxies import (
    ConfigCustomProxyConfig,
    ConfigIspProxyConfig,
    ConfigMobileProxyConfig,
    ConfigResidentialProxyConfig,
    ProxyCheckResponse,
)
from kernel_async._gen.models.search import SearchContextTargetOptions
from kernel_async._models import converter
from tests.loopback import serving

KEY = "sk-test-models-0123456789"

# -- walking the generated models ---------------------------------------------------------


@cache
def modules() -> tuple[types.ModuleType, ...]:
    names = sorted(m.name for m in pkgutil.iter_modules(generated.__path__))
    return tuple(importlib.import_module(f"kernel_async._gen.models.{n}") for n in names)


@cache
def models() -> tuple[type, ...]:
    found = [
        cls
        for mod in modules()
        for cls in vars(mod).values()
        if isinstance(cls, type) and attrs.has(cls) and cls.__module__ == mod.__name__
    ]
    assert len(found) > 300  # the walk sees the whole generated surface
    return tuple(found)


@cache
def hints(cls: type) -> dict[str, Any]:
    converter()  # gives the hand-written Browser its generated field types
    module = importlib.import_module(cls.__module__)
    scope = {**vars(gen_support), **vars(_shared), **vars(module)}
    return typing.get_type_hints(cls, globalns=scope)


def wire(field: attrs.Attribute[Any]) -> str:
    return str(field.metadata.get("wire", field.name))


def members(tp: Any) -> list[Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [m for m in typing.get_args(tp) if m is not type(None)]
    return [tp]


class Unsampleable(Exception):
    """A request-only type (a file to upload) has no JSON form."""


NOW = "2024-01-02T03:04:05+00:00"


def sample(tp: Any, full: bool = False, depth: int = 0) -> Any:
    """A minimal JSON value of type `tp` (every field of the outer model if `full`)."""
    if depth > 12:
        raise Unsampleable("too deep")
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return typing.get_args(tp)[0]
    if origin in (typing.Union, types.UnionType):
        return sample(members(tp)[0], depth=depth + 1)
    if origin in (list, collections.abc.Sequence):
        return []
    if origin in (dict, collections.abc.Mapping):
        return {}
    if tp is str:
        return "s"
    if tp is bool:
        return True
    if tp is int:
        return 7
    if tp is float:
        return 1.5
    if tp is datetime:
        return NOW
    if tp is date:
        return "2024-01-02"
    if tp is Any or tp is object:
        return {"any": 1}
    if isinstance(tp, type) and attrs.has(tp):
        obj: dict[str, Any] = dict(getattr(tp, "__kernel_tags__", ()))
        for f in attrs.fields(tp):
            if (f.default is attrs.NOTHING or full) and wire(f) not in obj:
                obj[wire(f)] = sample(members(hints(tp)[f.name])[0], depth=depth + 1)
        return obj
    raise Unsampleable(repr(tp))


def sampleable(cls: type, full: bool = False) -> dict[str, Any] | None:
    try:
        value = sample(cls, full)
    except Unsampleable:
        return None
    assert isinstance(value, dict)
    return value


def unions() -> list[tuple[Any, ...]]:
    """Every union of two or more models that a generated field is typed with."""
    seen: dict[tuple[Any, ...], None] = {}

    def visit(tp: Any) -> None:
        inner = members(tp)
        if len(inner) > 1 and all(isinstance(m, type) and attrs.has(m) for m in inner):
            seen.setdefault(tuple(inner), None)
        for arg in typing.get_args(tp):
            visit(arg)

    for cls in models():
        for tp in hints(cls).values():
            visit(tp)
    return list(seen)


def union_of(types_: tuple[Any, ...]) -> Any:
    return functools.reduce(operator.or_, types_)


def tagged(union: tuple[Any, ...]) -> bool:
    return all(getattr(m, "__kernel_tags__", ()) for m in union)


# -- decoding -----------------------------------------------------------------------------


def test_every_model_round_trips_its_minimal_and_full_objects() -> None:
    decoded = 0
    for cls in models():
        for full in (False, True):
            obj = sampleable(cls, full)
            if obj is None:
                continue
            value: Any = converter().structure(obj, cls)
            assert converter().unstructure(value) == obj, cls.__name__
            decoded += 1
    assert decoded > 600


def test_unknown_fields_are_ignored() -> None:
    for cls in (*models(), handwritten.Browser, handwritten.Replay):
        obj = sampleable(cls)
        if obj is None:
            continue
        extra = {**obj, "added_later": {"nested": [1, 2]}, "zz_new": None}
        assert converter().structure(extra, cls) == converter().structure(obj, cls), cls


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
        ("2024-01-02T03:04:05.123456789", datetime(2024, 1, 2, 3, 4, 5, 123456, timezone.utc)),
        ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
        (
            "2024-01-02T03:04:05.5+02:00",
            datetime(2024, 1, 2, 3, 4, 5, 500000, timezone(timedelta(hours=2))),
        ),
    ],
)
def test_timestamps_are_timezone_aware(text: str, expected: datetime) -> None:
    profile = converter().structure({"id": "p", "created_at": text}, _shared.Profile)
    assert profile.created_at == expected
    assert profile.created_at.utcoffset() == expected.utcoffset()


def test_every_timestamp_field_of_every_model_is_aware() -> None:
    checked = 0
    for cls in models():
        stamps = [f for f in attrs.fields(cls) if datetime in members(hints(cls)[f.name])]
        obj = sampleable(cls, full=True)
        if not stamps or obj is None:
            continue
        value: Any = converter().structure(
            {**obj, **{wire(f): "2024-01-02T03:04:05" for f in stamps}}, cls
        )
        for f in stamps:
            assert getattr(value, f.name).tzinfo is not None, (cls.__name__, f.name)
        checked += 1
    assert checked > 50


def test_wire_names_that_are_not_python_names() -> None:
    renamed = [(cls, f) for cls in models() for f in attrs.fields(cls) if "wire" in f.metadata]
    assert len(renamed) > 10
    for cls, f in renamed:
        obj = sampleable(cls, full=True)
        assert obj is not None and wire(f) in obj
        value: Any = converter().structure(obj, cls)
        assert getattr(value, f.name) is not None, (cls.__name__, f.name)
        out = converter().unstructure(value)
        assert wire(f) in out and f.name not in out
    # By example: decoded and encoded by the wire name only; the Python name is unknown.
    opts = converter().structure({"numResults": 3, "num_results": 9}, SearchContextTargetOptions)
    assert opts.num_results == 3
    assert converter().unstructure(opts) == {"numResults": 3}
    assert converter().structure({"num_results": 9}, SearchContextTargetOptions).num_results is None
    frame = {"columnNumber": 1, "functionName": "f", "lineNumber": 2, "scriptId": "9", "url": "u"}
    assert converter().structure(frame, CallFrame).function_name == "f"
    with pytest.raises(ClassValidationError) as info:
        converter().structure(
            {"column_number": 1, "function_name": "f", "line_number": 2, "script_id": "9"},
            CallFrame,
        )
    missing = [e.args[0] for e in info.value.exceptions if isinstance(e, KeyError)]
    assert "functionName" in missing and "function_name" not in missing


def test_tagged_unions_pick_the_member_by_all_its_tags() -> None:
    checked = 0
    for union in filter(tagged, unions()):
        for member in union:
            obj = sampleable(member)
            if obj is None:
                continue
            assert type(converter().structure(obj, union_of(union))) is member, member
            checked += 1
        # Tags no member carries: a schema break, not a guess.
        first = sampleable(union[0])
        if first is not None:
            wrong = {**first, **{k: "no-such-" + v for k, v in union[0].__kernel_tags__}}
            with pytest.raises(Exception, match="matches none"):
                converter().structure(wrong, union_of(union))
    assert checked > 100
    # By example: both events are category "control"; the type tag decides.
    event = typing.get_type_hints(
        TelemetryEventsResponse,
        vars(_shared) | vars(importlib.import_module(TelemetryEventsResponse.__module__)),
    )["event"]
    cdp, call = sampleable(BrowserCdpCommandEvent), sampleable(BrowserAPICallEvent)
    assert cdp and call and cdp["category"] == call["category"] == "control"
    assert isinstance(converter().structure(cdp, event), BrowserCdpCommandEvent)
    assert isinstance(converter().structure(call, event), BrowserAPICallEvent)


def test_untagged_unions_pick_the_member_covering_most_keys() -> None:
    cases = {
        "isp": ({"country": "US"}, ConfigIspProxyConfig),
        "mobile": ({"country": "US", "city": "Oslo"}, ConfigMobileProxyConfig),
        "residential": ({"country": "US", "asn": "AS1"}, ConfigResidentialProxyConfig),
        "custom": ({"host": "h", "port": 8080, "username": "u"}, ConfigCustomProxyConfig),
    }
    for kind, (config, expected) in cases.items():
        proxy = converter().structure({"type": kind, "config": config}, ProxyCheckResponse)
        assert type(proxy.config) is expected, kind
    checked = 0
    for union in unions():
        if tagged(union):
            continue
        for i, member in enumerate(union):
            obj = sampleable(member, full=True)
            if obj is None:
                continue
            same = [m for m in union[:i] if {wire(f) for f in attrs.fields(m)} == set(obj)]
            chosen = type(converter().structure(obj, union_of(union)))
            assert chosen is (same[0] if same else member), (member, chosen)
            checked += 1
    assert checked >= 8


@pytest.mark.parametrize(
    "broken",
    [
        {"created_at": NOW},  # id missing
        {"id": 5, "created_at": NOW},
        {"id": "p", "created_at": 1700000000},
        {"id": "p", "created_at": "yesterday"},
        {"id": ["p"], "created_at": NOW},
    ],
)
def test_a_schema_break_raises(broken: dict[str, Any]) -> None:
    with pytest.raises(ClassValidationError):
        converter().structure(broken, _shared.Profile)


def test_strict_scalars_and_shapes() -> None:
    for broken, cls in [
        ({"host": "h", "port": "8080"}, ConfigCustomProxyConfig),
        ({"host": "h", "port": 1, "has_password": "true"}, ConfigCustomProxyConfig),
        ({"host": "h", "port": 1.0}, ConfigCustomProxyConfig),
        ({"type": "isp", "bypass_hosts": "a.com"}, ProxyCheckResponse),
        ({"type": "isp", "config": ["US"]}, ProxyCheckResponse),
    ]:
        with pytest.raises(ClassValidationError):
            converter().structure(broken, cls)
    with pytest.raises(TypeError, match="expected an object"):
        converter().structure("p", _shared.Profile)


@pytest.fixture
async def breaking_server() -> AsyncIterator[str]:
    """An API whose profile responses break the schema (id is a number)."""

    async def profile(request: web.Request) -> web.Response:
        return web.json_response({"id": 5, "created_at": NOW})

    async def profiles(request: web.Request) -> web.Response:
        body = [{"id": "p1", "created_at": NOW}, {"id": "p2", "created_at": "never"}]
        return web.json_response(body, headers={"X-Has-More": "false"})

    async def not_json(request: web.Request) -> web.Response:
        return web.Response(body=b"<html>", content_type="application/json")

    app = web.Application()
    app.router.add_get("/profiles/{id}", profile)
    app.router.add_get("/profiles", profiles)
    app.router.add_post("/profiles", not_json)
    async with serving(app) as url:
        yield url


@pytest.mark.anyio
async def test_a_schema_break_through_a_call_names_the_operation(breaking_server: str) -> None:
    async with AsyncKernel(api_key=KEY, base_url=breaking_server) as client:
        with pytest.raises(APIResponseValidationError) as info:
            await client.profiles.retrieve("p")
        assert "profiles.retrieve" in str(info.value) and "id" in str(info.value)
        assert info.value.status_code == 200 and info.value.attempts == 1
        assert info.value.method == "GET" and info.value.url.endswith("/profiles/p")

        with pytest.raises(APIResponseValidationError, match=r"profiles\.list") as info:
            await client.profiles.list()
        with pytest.raises(APIResponseValidationError, match=r"profiles\.create") as info:
            await client.profiles.create(name="n")
        assert KEY not in str(info.value) and KEY not in repr(info.value)


# -- reprs hide secrets -------------------------------------------------------------------

SECRET_NAME = re.compile(r"(^|_)(token|secret|password|passwd|api_?key|private_key)(_|$)|^key$")
SECRET = "s3cr3t-V4LU3"


def _every_model() -> list[type]:
    hand = [handwritten.Browser, handwritten.Replay, handwritten.Error, handwritten.ErrorDetail]
    return [*models(), *hand]


def _instance(cls: type, values: dict[str, Any]) -> Any:
    return cls(**{f.alias: values.get(f.name) for f in attrs.fields(cls) if f.init})


def test_secret_fields_are_hidden_from_reprs() -> None:
    checked = 0
    for cls in _every_model():
        for f in attrs.fields(cls):
            if SECRET_NAME.search(wire(f)) or SECRET_NAME.search(f.name):
                shown = repr(_instance(cls, {f.name: SECRET}))
                assert SECRET not in shown, f"{cls.__name__}.{f.name} shows its value"
                assert f"{f.name}=" in shown  # hidden, not dropped
                checked += 1
    assert checked >= 20


def test_url_query_strings_are_hidden_from_reprs() -> None:
    checked = 0
    for cls in _every_model():
        for f in attrs.fields(cls):
            if wire(f).endswith("_url"):
                url = f"wss://host.example/session/1?jwt={SECRET}&x=1"
                shown = repr(_instance(cls, {f.name: url}))
                assert SECRET not in shown, f"{cls.__name__}.{f.name} shows its query"
                assert "wss://host.example/session/1" in shown  # the URL itself stays readable
                checked += 1
    assert checked >= 60


def test_nested_secrets_stay_hidden() -> None:
    # A model holding a model with a secret: the outer repr uses the inner one's.
    holders = [
        (cls, f)
        for cls in models()
        for f in attrs.fields(cls)
        if any(
            isinstance(m, type)
            and attrs.has(m)
            and any(SECRET_NAME.search(wire(g)) for g in attrs.fields(m))
            for m in members(hints(cls)[f.name])
        )
    ]
    assert holders
    for cls, f in holders:
        inner = next(m for m in members(hints(cls)[f.name]) if isinstance(m, type) and attrs.has(m))
        secret_fields = {g.name: SECRET for g in attrs.fields(inner) if SECRET_NAME.search(wire(g))}
        shown = repr(_instance(cls, {f.name: _instance(inner, secret_fields)}))
        assert SECRET not in shown, (cls.__name__, f.name)


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.none()
    ),
    st.integers(0, 9),
    st.sampled_from(["Z", "z", "", "+00:00", "+05:30", "-08:00"]),
)
def test_the_fast_timestamp_read_agrees_with_the_rewriting(
    when: datetime, digits: int, zone: str
) -> None:
    """Whichever way a stamp is read (at once on 3.11+, or rewritten as 3.10 needs), an
    API-shaped stamp gives the same aware datetime."""
    from kernel_async._models import read_stamp, read_stamp_at_once

    fraction = f"{when.microsecond:06d}{when.microsecond % 1000:03d}"[:digits]
    text = when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if digits else "") + zone
    slow = read_stamp(text)
    assert slow.tzinfo is not None
    if sys.version_info >= (3, 11):
        fast = read_stamp_at_once(text)
        assert fast == slow and fast.utcoffset() == slow.utcoffset()
