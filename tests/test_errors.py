"""Typed errors built from any response body without crashing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import kernel_async as ka
from kernel_async._errors import status_error
from kernel_async._models import decode_error
from tests.scripted import ScriptedServer, respond

pytestmark = pytest.mark.anyio

STATUS_CLASSES = [
    (400, ka.BadRequestError),
    (401, ka.AuthenticationError),
    (403, ka.PermissionDeniedError),
    (404, ka.NotFoundError),
    (409, ka.ConflictError),
    (410, ka.APIStatusError),
    (422, ka.UnprocessableEntityError),
    (429, ka.RateLimitError),
    (500, ka.InternalServerError),
    (503, ka.InternalServerError),
    (599, ka.InternalServerError),
]


def test_hierarchy() -> None:
    assert issubclass(ka.APIError, ka.KernelError)
    assert issubclass(ka.APIStatusError, ka.APIError)
    assert issubclass(ka.APIConnectionError, ka.APIError)
    assert issubclass(ka.APITimeoutError, ka.APIConnectionError)
    assert issubclass(ka.APIResponseValidationError, ka.APIError)
    for _, cls in STATUS_CLASSES:
        assert issubclass(cls, ka.APIStatusError)


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES)
async def test_status_maps_to_class(status: int, cls: type[ka.APIStatusError]) -> None:
    body = json.dumps(
        {
            "code": "some_code",
            "message": "human words",
            "details": [{"code": "d", "message": "m"}],
            "inner_error": {"code": "i"},
            "extra": 1,
        }
    ).encode()
    async with ScriptedServer([respond(status, body, {"x-should-retry": "false"})]) as srv:
        async with ka.AsyncKernel(api_key="k", base_url=srv.base_url) as c:
            with pytest.raises(cls) as info:
                await c.browsers.replays.stop("r", id="b")
    err = info.value
    assert type(err) is cls
    assert err.status_code == status
    assert err.error == ka.Error(
        "some_code", "human words", [ka.ErrorDetail("d", "m")], ka.ErrorDetail("i", None)
    )
    assert str(err).startswith(f"{status} some_code: human words")
    assert "1 attempt" in str(err)
    assert err.attempts == 1
    assert err.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html><body>502 Bad Gateway</body></html>",
        b"[1, 2]",
        b'{"code": 5, "message": "x"}',
        b'{"message": "no code"}',
        b'"just a string"',
        b"\xff\xfe garbage",
        b'{"code": "c", "message": "m", "details": "not a list"}',
    ],
)
async def test_odd_error_bodies_do_not_crash(body: bytes) -> None:
    async with ScriptedServer([respond(502, body, {"Content-Type": "text/html"})]) as srv:
        async with ka.AsyncKernel(api_key="k", base_url=srv.base_url, max_retries=0) as c:
            with pytest.raises(ka.InternalServerError) as info:
                await c.browsers.replays.stop("r", id="b")
    assert info.value.error is None
    assert str(info.value).startswith("502 Bad Gateway")


@given(st.binary(max_size=300))
def test_decode_error_never_raises_on_bytes(data: bytes) -> None:
    decode_error(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@given(json_values)
def test_status_error_never_raises_on_json(value: object) -> None:
    err = status_error(500, {}, json.dumps(value).encode(), method="POST", url="u", attempts=1)
    assert isinstance(err, ka.InternalServerError)
    str(err)


@given(
    st.fixed_dictionaries(
        {"code": st.text(), "message": st.text()},
        optional={"details": st.lists(st.fixed_dictionaries({}, optional={"code": st.text()}))},
    )
)
def test_documented_shape_always_parses(value: dict[str, object]) -> None:
    err = decode_error(json.dumps(value).encode())
    assert err is not None and err.code == value["code"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'{"replay_id": 5}',
        b'{"replay_id": "r", "started_at": "yesterday"}',
        b'{"replay_id": "r", "started_at": 17}',
        b"[]",
    ],
)
async def test_schema_break_is_validation_error(body: bytes) -> None:
    async with ScriptedServer([respond(200, body)]) as srv:
        async with ka.AsyncKernel(api_key="k", base_url=srv.base_url) as c:
            with pytest.raises(ka.APIResponseValidationError) as info:
                await c.browsers.replays.start("b")
    assert info.value.status_code == 200
    assert len(srv.received) == 1


async def test_unknown_fields_ignored_and_naive_dates_are_utc() -> None:
    body = json.dumps(
        [{"replay_id": "r", "started_at": "2026-01-02T03:04:05", "new_field": {"x": 1}}]
    ).encode()
    async with ScriptedServer([respond(200, body)]) as srv:
        async with ka.AsyncKernel(api_key="k", base_url=srv.base_url) as c:
            (replay,) = await c.browsers.replays.list("b")
    assert replay.started_at is not None and replay.started_at.utcoffset() is not None
    assert replay.replay_view_url is None


async def test_stop_ignores_any_2xx_body() -> None:
    async with ScriptedServer(
        [respond(200, b"<not json>"), respond(204), respond(200, b'{"x": 1}')]
    ) as srv:
        async with ka.AsyncKernel(api_key="k", base_url=srv.base_url) as c:
            for _ in range(3):
                await c.browsers.replays.stop("r", id="b")
