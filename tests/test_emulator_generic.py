"""The emulator's generic families, from the spec: the operation index, request validation,
synthesized responses (pure, no sockets), and `GenericAPI` served on loopback, driven by
kernel_async and by the official `kernel` SDK. Every answer is checked with jsonschema
against the spec."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel_async import AsyncKernel, ConflictError, NotFoundError
from kernel_async.testing import _spec, _synth, _validate
from kernel_async.testing._generic import (
    NOT_IMPLEMENTED,
    GenericAPI,
    derive_families,
    form_values,
    page_of,
    totp,
)
from kernel_async.testing._validate import FormPart, Problem, check, validate_request

from . import spec_samples
from .loopback import serving

API_KEY = "generic-test-key"
OPS = _spec.operations()


# --- jsonschema, the independent judge -----------------------------------------------


def _validator(schema: Mapping[str, Any]) -> jsonschema.Draft202012Validator:
    # The schema as the root of a document holding the spec's components: its
    # "#/components/schemas/..." references resolve against the spec itself.
    root = {**schema, "components": _spec.spec()["components"]}
    return jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def assert_valid(schema: Mapping[str, Any], value: Any) -> None:
    errors = sorted(_validator(schema).iter_errors(value), key=str)
    assert not errors, errors[0]


ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorModel"}


# --- the index (pure) ------------------------------------------------------------------


def _raw_path(op: _spec.Operation, values: Mapping[str, str]) -> str:
    path = op.template
    for name, value in values.items():
        path = path.replace("{" + name + "}", spec_samples.official_quote(value))
    return path


@pytest.mark.parametrize("op", OPS, ids=str)
def test_index_finds_every_operation_with_decoded_params(op: _spec.Operation) -> None:
    values = {p.name: f"v {p.name}/ä%?#" for p in op.params_in("path")}
    found = _spec.index().match(op.method.lower(), _raw_path(op, values) + "?x=1")
    assert found is not None
    assert found.operation.sdk_name == op.sdk_name
    assert dict(found.path_params) == values


def test_index_prefers_fixed_segments_and_can_leave_out_the_served() -> None:
    idx = _spec.index()
    found = idx.match("GET", "/extensions/from_chrome_store")
    assert found is not None and found.operation.sdk_name == "extensions.download_from_chrome_store"
    found = idx.match("GET", "/extensions/my-ext")
    assert found is not None and found.operation.sdk_name == "extensions.download"
    assert idx.match("GET", "/profiles/%FF") is None  # not UTF-8: no ID of the API's
    assert idx.match("GET", "/profiles//") is None
    assert idx.match("GET", "/nowhere") is None
    assert idx.allowed("/profiles/p1") == ["DELETE", "GET", "PATCH"]
    served = _spec.index(exclude_served=True)
    assert served.match("POST", "/browsers") is None
    assert served.match("GET", "/browsers/b1/replays") is None
    assert "browsers.computer.click_mouse" in served
    assert len(served) == len(OPS) - len(_spec.SERVED_BY_EMULATOR & {o.sdk_name for o in OPS})


# --- validation (pure) ------------------------------------------------------------------


def _multipart(parts: tuple[spec_samples.Part, ...]) -> tuple[str, bytes]:
    boundary = "b0undary"
    chunks = []
    for part in parts:
        disposition = f'form-data; name="{part.name}"'
        if part.filename is not None:
            disposition += f'; filename="{part.filename}"'
        head = f"Content-Disposition: {disposition}\r\n"
        if part.content_type:
            head += f"Content-Type: {part.content_type}\r\n"
        chunks.append(f"--{boundary}\r\n{head}\r\n".encode() + part.data + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def _request(call: spec_samples.Call, op: _spec.Operation) -> tuple[str | None, bytes]:
    if call.json_body is not None:
        return "application/json", json.dumps(call.json_body).encode()
    if call.parts is not None:
        return _multipart(call.parts)
    if call.raw_body is not None:
        return "application/octet-stream", call.raw_body
    return None, b""


def _sample_ops() -> list[tuple[_spec.Operation, spec_samples.Variant]]:
    return [
        (op, variant)
        for op in OPS
        for variant in spec_samples.variants(spec_samples.operation(op.sdk_name))
    ]


@pytest.mark.parametrize(("op", "variant"), _sample_ops(), ids=lambda x: str(x))
def test_a_request_synthesized_from_the_spec_passes(
    op: _spec.Operation, variant: spec_samples.Variant
) -> None:
    call = spec_samples.sample_call(spec_samples.operation(op.sdk_name), variant)
    content_type, body = _request(call, op)
    checked = validate_request(op, call.path_values, list(call.query), content_type, body)
    assert checked.problems == ()


_WRONG = [12345, "not-a-number", [1], {"k": 1}, True, None]


def _wrong_for(schema: Mapping[str, Any]) -> Any:
    """A value of the wrong type, as jsonschema (not the code under test) judges it."""
    return next(v for v in _WRONG if list(_validator(schema).iter_errors(v)))


def _required_json_fields() -> list[tuple[_spec.Operation, str]]:
    found = []
    for op in OPS:
        if op.body is not None and op.body.content_type == "application/json":
            for name in _spec.resolve(op.body.schema).get("required", ()):
                found.append((op, name))
    return found


REQUIRED = _required_json_fields()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(REQUIRED), st.booleans())
def test_a_required_field_of_the_wrong_type_or_missing_is_named(
    case: tuple[_spec.Operation, str], drop: bool
) -> None:
    op, field = case
    call = spec_samples.sample_call(spec_samples.operation(op.sdk_name), "plain")
    body = dict(call.json_body)
    assert op.body is not None
    sub = _spec.resolve(op.body.schema)["properties"][field]
    if drop:
        del body[field]
    else:
        body[field] = _wrong_for(sub)
    checked = validate_request(
        op, call.path_values, list(call.query), "application/json", json.dumps(body).encode()
    )
    assert checked.problems, (op, field)
    assert any(p.field == f"body.{field}" for p in checked.problems), checked.problems
    if drop:
        assert Problem(f"body.{field}", "required") in checked.problems


def test_every_operation_with_required_body_fields_is_covered() -> None:
    # The property above draws from these: most JSON bodies have a required field.
    assert len({op.sdk_name for op, _ in REQUIRED}) > 40


def test_problems_name_nested_fields_and_their_types() -> None:
    op = _spec.operation("browser_pools.create")
    body = {"size": 2, "viewport": {"width": "x", "height": 600}, "telemetry": None}
    checked = validate_request(op, {}, [], "application/json", json.dumps(body).encode())
    assert [str(p) for p in checked.problems] == ['body.viewport.width: expected integer, got "x"']
    body = {"size": 2, "memory": "3GiB", "tags_unknown": {"free": "form"}}  # unknown: allowed
    checked = validate_request(op, {}, [], "application/json", json.dumps(body).encode())
    assert [p.field for p in checked.problems] == ["body.memory"]
    assert "one of" in checked.problems[0].message
    checked = validate_request(op, {}, [], "application/json", b"{not json")
    assert [str(p) for p in checked.problems] == ["body: not valid JSON"]
    checked = validate_request(op, {}, [], "application/json", b"")
    assert [str(p) for p in checked.problems] == ["body: required"]


def test_unions_nullable_and_closed_objects() -> None:
    nullable = {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert check(nullable, None, "body.x") == []
    assert [str(p) for p in check(nullable, "1", "body.x")] == [
        'body.x: expected integer or null, got "1"'
    ]
    obj = {"type": "object", "properties": {"a": {"type": "string"}}}
    union = {"anyOf": [obj, {"type": "string"}]}
    assert [str(p) for p in check(union, {"a": 1}, "body.u")] == [
        "body.u.a: expected string, got 1"
    ]
    assert "expected object or string" in str(check(union, 5, "body.u")[0])
    closed = {**obj, "additionalProperties": False, "required": ["a"]}
    assert [str(p) for p in check(closed, {"b": 1}, "body")] == [
        "body.a: required",
        "body.b: unexpected property",
    ]
    assert check({"type": "integer", "minimum": 1}, 0, "body.n")[0].status == 422
    assert check({"type": "string", "format": "date-time"}, "2024-01-02T03:04:05Z", "t") == []
    assert check({"type": "string", "format": "date-time"}, "yesterday", "t")


def test_query_types_arrays_and_deep_objects() -> None:
    op = _spec.operation("browsers.list")
    values, problems = _validate.decode_query(
        op, [("limit", "5"), ("include_deleted", "true"), ("tags[team]", "qa"), ("tags[env]", "x")]
    )
    assert problems == []
    assert values["limit"] == 5 and values["include_deleted"] is True
    assert values["tags"] == {"team": "qa", "env": "x"}
    _, problems = _validate.decode_query(op, [("limit", "five"), ("include_deleted", "yes")])
    assert [p.field for p in problems] == ["query.include_deleted", "query.limit"] or [
        p.field for p in problems
    ] == ["query.limit", "query.include_deleted"]
    arrays = [
        o
        for o in OPS
        for p in o.params_in("query")
        if _spec.resolve(p.schema).get("type") == "array" and p.explode is False
    ]
    assert arrays
    array_op = arrays[0]
    param = next(p for p in array_op.params_in("query") if p.explode is False)
    items = _spec.resolve(param.schema)["items"]
    good = items.get("enum", ["a", "b"])[:2]
    values, problems = _validate.decode_query(array_op, [(param.name, ",".join(good))])
    assert values[param.name] == good and not [p for p in problems if param.name in p.field]
    audit = _spec.operation("audit_logs.list")
    _, problems = _validate.decode_query(audit, [("start", "2024-01-01T00:00:00Z")])
    assert [str(p) for p in problems] == ["query.end: required"]
    _, problems = _validate.decode_query(
        audit, [("start", "soon"), ("end", "2024-01-01T00:00:00Z")]
    )
    assert [p.field for p in problems] == ["query.start"]


def test_multipart_fields_present_and_typed() -> None:
    op = _spec.operation("extensions.upload")
    assert op.body is not None
    parts = [FormPart("name", b"ext")]
    assert [str(p) for p in _validate.validate_form(op.body.schema, parts)] == [
        "body.file: required"
    ]
    parts.append(FormPart("file", b"PK..", filename="x.zip"))
    assert _validate.validate_form(op.body.schema, parts) == []
    deploy = _spec.operation("deployments.create")
    assert deploy.body is not None
    bad = [FormPart("force", b"maybe")]
    assert [p.field for p in _validate.validate_form(deploy.body.schema, bad)] == ["body.force"]
    values, files = form_values(
        deploy.body.schema,
        [
            FormPart("force", b"true"),
            FormPart("env_vars[A]", b"1"),
            FormPart("file", b"zip", filename="a.zip"),
        ],
    )
    assert values == {"force": True, "env_vars": {"A": "1"}}
    assert files == {"file": b"zip"}


# --- synthesized values (pure) ---------------------------------------------------------


JSON_REPLIES = [op for op in OPS if op.is_json and op.response_schema is not None]


@pytest.mark.parametrize("op", JSON_REPLIES, ids=str)
def test_every_json_answer_synthesized_from_the_spec_validates(op: _spec.Operation) -> None:
    assert op.response_schema is not None
    for seed in range(3):
        value = _synth.synthesize(op.response_schema, seed=seed, id_prefix="x_")
        assert_valid(op.response_schema, value)
    # With what a create request sent laid over it, still valid; declared values kept.
    if op.body is not None and op.body.content_type == "application/json":
        sent = spec_samples.sample_call(spec_samples.operation(op.sdk_name), "encoded").json_body
        value = _synth.synthesize(op.response_schema, known=sent, seed=1)
        assert_valid(op.response_schema, value)


def test_synthesis_is_deterministic_and_keeps_what_fits() -> None:
    schema = _spec.operation("profiles.create").response_schema
    assert schema is not None
    one = _synth.synthesize(schema, seed=7, now="2024-01-02T03:04:05Z", id_prefix="prf_")
    two = _synth.synthesize(schema, seed=7, now="2024-01-02T03:04:05Z", id_prefix="prf_")
    assert one == two
    assert one["id"].startswith("prf_") and one["created_at"] == "2024-01-02T03:04:05Z"
    assert set(one) == {"id", "created_at"}  # required only
    got = _synth.synthesize(schema, known={"name": "p", "secret": "s", "created_at": 5}, seed=1)
    assert got["name"] == "p" and "secret" not in got  # undeclared: dropped
    assert got["created_at"].endswith("Z")  # a wrong type is replaced
    assert _synth.stamp().endswith("Z")
    # A union picks the member the known values fit (the item's type decides).
    items = _spec.operation("vaults.items.retrieve").response_schema
    assert items is not None
    for kind in ("wallet", "card", "credential"):
        value = _synth.synthesize(items, known={"type": kind})
        if value.get("type") == kind:
            break
    else:
        raise AssertionError("no member kept the type")
    overlaid = _synth.overlay(schema, one, {"name": "renamed"}, seed=7)
    assert overlaid["name"] == "renamed" and overlaid["id"] == one["id"]


# --- small rules (pure) ----------------------------------------------------------------


def test_pages_by_offset_and_token() -> None:
    items = list(range(5))
    page, headers = page_of(items, "offset", {"limit": 2, "offset": 2})
    assert page == [2, 3] and headers == {"X-Has-More": "true", "X-Next-Offset": "4"}
    page, headers = page_of(items, "offset", {"limit": 2, "offset": 4})
    assert page == [4] and headers["X-Has-More"] == "false"
    page, headers = page_of(items, "page_token", {"limit": 3})
    assert page == [0, 1, 2] and headers["X-Next-Page-Token"] == "o3"
    page, headers = page_of(items, "page_token", {"limit": 3, "page_token": "o3"})
    assert page == [3, 4] and headers == {"X-Has-More": "false"}
    assert page_of(items, None, {"limit": 1}) == (items, {})
    with pytest.raises(Exception, match="page_token"):
        page_of(items, "page_token", {"page_token": "forged"})


def test_totp_matches_rfc_6238() -> None:
    import base64

    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp(secret, when=59, digits=8) == "94287082"
    assert totp(secret, when=1111111109, digits=8) == "07081804"
    assert totp(f"otpauth://totp/x?secret={secret}", when=59, digits=6) == "287082"


def test_every_operation_is_served_generically_or_listed_as_501() -> None:
    served = _spec.index(exclude_served=True)
    families, singletons, actions = derive_families(served)
    roles = {name for f in families.values() for name in f.roles.values()}
    roles |= {name for s in singletons.values() for name in s.roles.values()}
    handled = {  # actions with a real rule in GenericAPI
        "browser_pools.acquire",
        "browser_pools.release",
        "browser_pools.flush",
        "api_keys.rotate",
        "credentials.totp_code",
        "invocations.list_browsers",
        "invocations.delete_browsers",
        "vaults.items.events",
        "auth.connections.timeline",
        "browsers.playwright.executors.list",
        "deployments.follow",
        "invocations.follow",
        "auth.connections.follow",
    }
    for op in served:
        assert op.sdk_name in roles | handled | set(NOT_IMPLEMENTED), op.sdk_name
    assert set(actions) - handled <= set(NOT_IMPLEMENTED)
    assert set(NOT_IMPLEMENTED) <= {op.sdk_name for op in served}  # no stale names
    assert families["profiles"].key == "id_or_name"
    assert families["vaults.items"].parent == "vaults"
    assert singletons["projects.limits"].parent == "projects"
    assert families["extensions"].roles["retrieve"] == "extensions.get"


# --- served on loopback ----------------------------------------------------------------


class Served:
    def __init__(self, url: str, api: GenericAPI) -> None:
        self.url = url
        self.api = api
        self.ended: list[str] = []
        self.made: list[Mapping[str, Any]] = []
        self.invalid: list[str] = []
        self.seen: list[tuple[str | None, int]] = []


SERVED = web.AppKey("served", Served)


@web.middleware
async def _checking(request: web.Request, handler: Any) -> web.StreamResponse:
    """Check every answer against the spec with jsonschema."""
    served = request.app[SERVED]
    resp: web.StreamResponse = await handler(request)
    name = served.api.match(request.method, request.raw_path)
    served.seen.append((name, resp.status))
    if not isinstance(resp, web.Response) or resp.content_type != "application/json":
        return resp
    assert isinstance(resp.body, bytes)
    data = json.loads(resp.body)
    if resp.status >= 400:
        schema: Mapping[str, Any] | None = ERROR_SCHEMA
    else:
        schema = _spec.operation(name).response_schema if name else None
    if schema is not None:
        for error in _validator(schema).iter_errors(data):
            served.invalid.append(f"{name} {resp.status}: {error.message}")
    return resp


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    holder: list[Served] = []

    async def make_browser(params: Mapping[str, Any]) -> Mapping[str, Any]:
        holder[0].made.append(params)
        sid = f"br_{len(holder[0].made)}"
        return {
            "session_id": sid,
            "cdp_ws_url": f"ws://127.0.0.1/cdp/{sid}",
            "webdriver_ws_url": f"ws://127.0.0.1/wd/{sid}",
            "created_at": "2024-01-02T03:04:05Z",
            "headless": bool(params.get("headless", False)),
            "stealth": False,
            "timeout_seconds": params.get("timeout_seconds", 60),
            "region": "us-east",
            "memory": "4GiB",
        }

    async def end_browser(session_id: str) -> None:
        holder[0].ended.append(session_id)

    api = GenericAPI(
        authorize=lambda r: r.headers.get("Authorization") == f"Bearer {API_KEY}",
        make_browser=make_browser,
        end_browser=end_browser,
        browser_exists=lambda ref: ref if ref.startswith("br_") else None,
        seed=1,
    )
    app = web.Application(middlewares=[_checking])
    api.add_to(app)
    holder.append(Served("", api))
    app[SERVED] = holder[0]
    async with serving(app) as url:
        holder[0].url = url
        yield holder[0]
    assert holder[0].invalid == []


def _client(served: Served) -> AsyncKernel:
    return AsyncKernel(api_key=API_KEY, base_url=served.url, max_retries=0)


Call = Callable[..., Awaitable[Any]]


async def _tour(
    resource: Any,
    *,
    create: Mapping[str, Any],
    names: list[str],
    update: Mapping[str, Any],
    by_name: bool,
    id_attr: str = "id",
) -> None:
    """create -> retrieve (by id, by name) -> update -> list in 3 pages -> delete -> 404."""
    made = []
    for name in names:
        made.append(await resource.create(**{**create, "name": name}))
    first = made[0]
    ident = getattr(first, id_attr)
    got = await resource.retrieve(ident)
    assert getattr(got, id_attr) == ident
    if by_name:
        assert getattr(await resource.retrieve(names[0]), id_attr) == ident
    updated = await resource.update(ident, **update)
    for key, value in update.items():
        if key == "name":
            assert updated.name == value
    seen = []
    pages = 0
    page = await resource.list(limit=2)
    while True:
        pages += 1
        seen += [getattr(x, id_attr) for x in page.items]
        if not page.has_next_page():
            break
        page = await page.get_next_page()
    assert pages == 3 and seen == [getattr(m, id_attr) for m in made]
    await resource.delete(ident)
    with pytest.raises(NotFoundError) as caught:
        await resource.retrieve(ident)
    assert ident in str(caught.value)


@pytest.mark.anyio
async def test_families_through_kernel_async(served: Served) -> None:
    async with _client(served) as client:
        await _tour(
            client.profiles,
            create={},
            names=["p1", "p2", "p3", "p4", "p5"],
            update={"name": "p1-renamed"},
            by_name=True,
        )
        await _tour(
            client.proxies,
            create={"type": "isp"},
            names=["x1", "x2", "x3", "x4", "x5"],
            update={"name": "x1b"},
            by_name=True,
        )
        await _tour(
            client.credentials,
            create={"domain": "example.com", "values": {"username": "u", "password": "p"}},
            names=["c1", "c2", "c3", "c4", "c5"],
            update={"name": "c1b"},
            by_name=True,
        )
        await _tour(
            client.browser_pools,
            create={"size": 1},
            names=["b1", "b2", "b3", "b4", "b5"],
            update={"name": "b1b", "size": 2},
            by_name=True,
        )
        await _tour(
            client.projects,
            create={},
            names=["j1", "j2", "j3", "j4", "j5"],
            update={"name": "j1b"},
            by_name=True,
        )
        await _tour(
            client.telemetry.destinations,
            create={"endpoint": "https://otel.invalid/v1"},
            names=["t1", "t2", "t3", "t4", "t5"],
            update={"description": "d"},
            by_name=True,
        )
        await _tour(
            client.api_keys,
            create={},
            names=["k1", "k2", "k3", "k4", "k5"],
            update={"name": "k1b"},
            by_name=False,
        )


@pytest.mark.anyio
async def test_names_are_unique_where_the_api_says(served: Served) -> None:
    async with _client(served) as client:
        await client.profiles.create(name="same")
        with pytest.raises(ConflictError, match="same"):
            await client.profiles.create(name="same")
        other = await client.profiles.create(name="other")
        with pytest.raises(ConflictError):
            await client.profiles.update(other.id, name="same")
        # Proxies may share a name (the spec says so).
        await client.proxies.create(type="isp", name="shared")
        await client.proxies.create(type="isp", name="shared")
        # A vault of an existing name is that vault.
        v1 = await client.vaults.upsert(name="v")
        assert (await client.vaults.upsert(name="v")).id == v1.id


@pytest.mark.anyio
async def test_a_bad_request_names_the_field(served: Served) -> None:
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {API_KEY}"}
        async with http.post(
            served.url + "/browser_pools", json={"size": "two"}, headers=auth
        ) as resp:
            assert resp.status == 400
            body = await resp.json()
        assert body["code"] == "bad_request"
        assert 'body.size: expected integer, got "two"' in body["message"]
        async with http.get(served.url + "/profiles?limit=lots", headers=auth) as resp:
            assert resp.status == 400
            assert "query.limit" in (await resp.json())["message"]
        async with http.get(served.url + "/profiles") as resp:  # no key
            assert resp.status == 401
        async with http.put(served.url + "/profiles/p", headers=auth) as resp:
            assert resp.status == 405
        async with http.get(served.url + "/nowhere", headers=auth) as resp:
            assert resp.status == 404
    assert served.seen.count(("browser_pools.create", 400)) == 1


@pytest.mark.anyio
async def test_unknown_ids_are_404s_naming_kind_and_id(served: Served) -> None:
    async with _client(served) as client:
        with pytest.raises(NotFoundError, match="profile 'nope' not found"):
            await client.profiles.retrieve("nope")
        with pytest.raises(NotFoundError, match="vault 'nov'"):
            await client.vaults.items.retrieve("k", id_or_name="nov")
        with pytest.raises(NotFoundError, match="browser 'nob'"):  # under a browser
            await client.browsers.computer.click_mouse("nob", x=1, y=2)
        with pytest.raises(NotFoundError, match="project"):
            await client.projects.limits.retrieve("nope")


@pytest.mark.anyio
async def test_501_names_the_operation(served: Served) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            served.url + "/browsers/br_1/playwright/execute",
            json={"code": "return 1"},
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as resp:
            assert resp.status == 501
            body = await resp.json()
    assert body["code"] == "not_implemented"
    assert body["message"].startswith(
        "browsers.playwright.execute is not available in the emulator: "
    )


@pytest.mark.anyio
async def test_pool_acquire_release_and_204_when_empty(served: Served) -> None:
    async with _client(served) as client:
        pool = await client.browser_pools.create(name="pool", size=1, headless=True)
        lease = await client.browser_pools.acquire("pool", acquire_timeout_seconds=5)
        assert lease is not None and lease.session_id == "br_1"
        assert served.made == [{"headless": True}]  # the pool's settings, as browsers.create's
        assert lease.pool is not None and lease.pool.id == pool.id
        got = await client.browser_pools.retrieve(pool.id)
        assert (got.acquired_count, got.available_count) == (1, 0)
        # Empty: waits the timeout out, then 204 -> None.
        started = time.monotonic()
        assert await client.browser_pools.acquire(pool.id, acquire_timeout_seconds=1) is None
        assert time.monotonic() - started >= 0.9
        # A waiter gets the browser released meanwhile.
        waiting = asyncio.ensure_future(
            client.browser_pools.acquire(pool.id, acquire_timeout_seconds=10)
        )
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await client.browser_pools.release(pool.id, session_id=lease.session_id)
        again = await asyncio.wait_for(waiting, 5)
        assert again is not None and again.session_id == "br_1"  # reused
        with pytest.raises(NotFoundError):
            await client.browser_pools.release(pool.id, session_id="br_other")
        with pytest.raises(ConflictError):  # leased browsers block deletion
            await client.browser_pools.delete(pool.id)
        await client.browser_pools.release(pool.id, session_id="br_1", reuse=False)
        assert served.ended == ["br_1"]
        third = await client.browser_pools.acquire(pool.id, acquire_timeout_seconds=1)
        assert third is not None and third.session_id == "br_2"
        await client.browser_pools.release(pool.id, session_id="br_2")
        await client.browser_pools.flush(pool.id)
        assert served.ended == ["br_1", "br_2"]
        await client.browser_pools.delete(pool.id)
        with pytest.raises(NotFoundError):
            await client.browser_pools.acquire(pool.id)


@pytest.mark.anyio
async def test_references_from_a_browser_must_exist(served: Served) -> None:
    api = served.api
    async with _client(served) as client:
        profile = await client.profiles.create(name="prof")
        proxy = await client.proxies.create(type="isp", name="px")
        ext = await client.extensions.upload(file=b"PK\x03\x04zip", name="ext")
        assert await client.extensions.download("ext") == b"PK\x03\x04zip"
        assert ext.size_bytes == 7
    ok = {"profile": {"name": "prof"}, "proxy_id": proxy.id, "extensions": [{"name": "ext"}]}
    assert api.check_references(ok) is None
    assert api.check_references({"profile": {"id": profile.id}}) is None
    cases: list[tuple[dict[str, Any], str]] = [
        ({"profile": {"name": "missing"}}, "profile 'missing'"),
        ({"proxy_id": "prx_missing"}, "proxy 'prx_missing'"),
        ({"extensions": [{"id": "ext"}, {"name": "gone"}]}, "extension 'gone'"),
        ({"vaults": [{"name": "nov"}]}, "vault 'nov'"),
    ]
    for body, kind in cases:
        error = api.check_references(body)
        assert error is not None and error.status == 404 and kind in error.message


@pytest.mark.anyio
async def test_cheap_real_rules(served: Served) -> None:
    import base64

    secret = base64.b32encode(b"12345678901234567890").decode()
    async with _client(served) as client:
        cred = await client.credentials.create(
            name="c", domain="d.example", values={"user": "u"}, totp_secret=secret
        )
        assert cred.has_totp_secret and cred.value_keys == ["user"]
        code = await client.credentials.totp_code("c")
        assert code.code in {totp(secret, when=time.time() + d) for d in (-1, 0, 1)}
        key = await client.api_keys.create(name="ci")
        rotated = await client.api_keys.rotate(key.id, expire_in_days=0)
        assert rotated.key != key.key and rotated.name == "ci"
        with pytest.raises(NotFoundError):
            await client.api_keys.retrieve(key.id)
        vault = await client.vaults.upsert(name="vault")
        item = await client.vaults.items.upsert(
            "login",
            id_or_name=vault.id,
            type="credential",
            spec={"provider": "kernel", "fields": []},
        )
        assert item.key == "login"
        listed = await client.vaults.items.list(vault.id)
        assert [i.key for i in listed] == ["login"]
        limits = await client.projects.limits.update(
            (await client.projects.create(name="pj")).id, max_concurrent_sessions=3
        )
        assert limits.max_concurrent_sessions == 3
        assert (await client.projects.limits.retrieve("pj")).max_concurrent_sessions == 3


@pytest.mark.once
@pytest.mark.anyio
async def test_official_sdk_tour(served: Served) -> None:
    kernel = pytest.importorskip("kernel")
    async with kernel.AsyncKernel(api_key=API_KEY, base_url=served.url, max_retries=0) as k:
        names = ["o1", "o2", "o3", "o4", "o5"]
        made = [await k.profiles.create(name=n) for n in names]
        assert (await k.profiles.retrieve("o1")).id == made[0].id
        assert (await k.profiles.update(made[0].id, name="o1b")).name == "o1b"
        page = await k.profiles.list(limit=2)
        seen, pages = [p.id for p in page.items], 1
        while page.has_next_page():
            page = await page.get_next_page()
            seen += [p.id for p in page.items]
            pages += 1
        assert pages == 3 and seen == [p.id for p in made]
        await k.profiles.delete(made[0].id)
        with pytest.raises(kernel.NotFoundError):
            await k.profiles.retrieve(made[0].id)
        with pytest.raises(kernel.ConflictError):
            await k.profiles.create(name="o2")
        with pytest.raises(kernel.BadRequestError, match=r"body\.size"):
            await k.browser_pools.create(size="x")
        pool = await k.browser_pools.create(name="op", size=1)
        lease = await k.browser_pools.acquire("op", acquire_timeout_seconds=2)
        assert lease is not None and lease.session_id.startswith("br_")
        assert await k.browser_pools.acquire("op", acquire_timeout_seconds=1) is None
        await k.browser_pools.release(pool.id, session_id=lease.session_id)
        cred = await k.credentials.create(name="oc", domain="d", values={"a": "b"})
        assert (await k.credentials.retrieve("oc")).id == cred.id
        proxies = [await k.proxies.create(type="isp", name=f"p{i}") for i in range(3)]
        assert [p.id async for p in k.proxies.list(limit=1)] == [p.id for p in proxies]
        dest = await k.telemetry.destinations.create(name="d", endpoint="https://x.invalid")
        assert (await k.telemetry.destinations.retrieve("d")).id == dest.id
        dep = await k.deployments.create(file=b"PK zip", version="1")
        assert (await k.deployments.retrieve(dep.id)).id == dep.id
        with pytest.raises(kernel.APIStatusError) as caught:
            await k.browsers.playwright.execute("br_1", code="1")
        assert caught.value.status_code == 501
        assert "browsers.playwright.execute" in str(caught.value)
