"""client.browsers against the emulator: what goes on the wire, what comes back, and the
pure rules (arguments, pagination) without sockets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import kernel_async as ka
from kernel_async import AsyncKernel, Browser, BrowserPage, Viewport
from kernel_async.resources import _params
from kernel_async.testing import FakeKernel
from tests.scripted import ScriptedServer, respond

pytestmark = pytest.mark.anyio

SPEC = yaml.safe_load((Path(__file__).parent.parent / "spec" / "replays.openapi.yaml").read_text())
SCHEMAS = SPEC["components"]["schemas"]


def create_schema() -> dict[str, Any]:
    """BrowserCreate with its $refs inlined (the spec keeps them within components)."""
    schema: dict[str, Any] = json.loads(json.dumps(SCHEMAS["BrowserCreate"]))
    schema["properties"]["viewport"] = SCHEMAS["Viewport"]
    schema["properties"]["region"] = SCHEMAS["Region"]
    schema["additionalProperties"] = False
    return schema


async def test_create_sends_the_typed_keywords(client: AsyncKernel, fake: FakeKernel) -> None:
    await client.profiles.create(name="p")  # the emulator checks references, as the API does
    await client.proxies.create(type="custom", name="px")
    b = await client.browsers.create(
        headless=False,
        stealth=True,
        gpu=True,
        timeout_seconds=600,
        viewport=Viewport(1280, 800, 60),
        name="agent-1",
        tags={"team": "qa"},
        start_url="https://example.com",
        kiosk_mode=True,
        profile={"name": "p", "save_changes": True},
        proxy_id="px",
        region="eu-west",
    )
    sent = json.loads(fake.requests[-1].body)
    jsonschema.validate(sent, create_schema())
    assert sent["viewport"] == {"width": 1280, "height": 800, "refresh_rate": 60}
    assert fake.requests[-1].headers["Content-Type"] == "application/json"
    assert (b.name, b.tags, b.region, b.gpu, b.stealth) == (
        "agent-1",
        {"team": "qa"},
        "eu-west",
        True,
        True,
    )
    assert b.viewport == Viewport(1280, 800, 60)
    assert b.created_at.tzinfo is not None and b.deleted_at is None


async def test_create_extra_body_wins_and_defaults_send_nothing(
    client: AsyncKernel, fake: FakeKernel
) -> None:
    await client.browsers.create()
    assert fake.requests[-1].body == b"{}"
    await client.browsers.create(stealth=False, extra_body={"stealth": True, "future": 1})
    assert json.loads(fake.requests[-1].body) == {"stealth": True, "future": 1}


@pytest.mark.parametrize(
    ("kwargs", "exc", "names"),
    [
        ({"timeout_seconds": 9}, ValueError, "timeout_seconds"),
        ({"timeout_seconds": 259_201}, ValueError, "timeout_seconds"),
        ({"timeout_seconds": 60.0}, TypeError, "timeout_seconds"),
        ({"headless": "yes"}, TypeError, "headless"),
        ({"tags": {str(i): "v" for i in range(51)}}, ValueError, "tags"),
        ({"tags": {"k": 1}}, TypeError, "tags"),
        ({"viewport": Viewport(0, 600)}, ValueError, "viewport.width"),
        ({"viewport": (800, 600)}, TypeError, "viewport"),
        ({"name": ""}, ValueError, "name"),
        ({"region": "mars"}, ValueError, "region"),
        ({"profile": {"colour": "x"}}, ValueError, "profile"),
        ({"profile": {"save_changes": True}}, ValueError, "profile"),
        ({"extra_body": {1: 2}}, TypeError, "extra_body"),
    ],
)
async def test_create_refuses_bad_values_before_sending(
    client: AsyncKernel, fake: FakeKernel, kwargs: dict[str, Any], exc: type[Exception], names: str
) -> None:
    with pytest.raises(exc, match=names.replace(".", r"\.")):
        await client.browsers.create(**kwargs)
    assert fake.requests == []


async def test_create_is_never_resent_after_an_ambiguous_failure(fake: FakeKernel) -> None:
    async with fake.client() as c:
        fake.fail("create", status=None, truncate=True)  # created, then the answer is cut
        with pytest.raises(ka.APIConnectionError):
            await c.browsers.create()
        fake.fail("create", status=503)  # a status is not ambiguous: retried
        await c.browsers.create()
    assert fake.count("create") == 3
    assert len(fake.sessions()) == 2


async def test_retrieve_update_by_id_or_name(client: AsyncKernel, fake: FakeKernel) -> None:
    b = await client.browsers.create(name="n1", tags={"a": "1"})
    assert await client.browsers.retrieve("n1") == b
    u = await client.browsers.update("n1", name="", tags={}, viewport=Viewport(800, 600))
    assert json.loads(fake.requests[-1].body) == {
        "name": "",
        "tags": {},
        "viewport": {"width": 800, "height": 600},
    }
    assert fake.requests[-1].method == "PATCH"
    assert (u.name, u.tags, u.viewport) == (None, None, Viewport(800, 600))
    with pytest.raises(ka.NotFoundError):
        await client.browsers.retrieve("n1")  # the name was cleared
    with pytest.raises(ValueError, match="id_or_name"):
        await client.browsers.update("", name="x")


async def test_delete_then_include_deleted(client: AsyncKernel, fake: FakeKernel) -> None:
    b = await client.browsers.create()
    await client.browsers.delete(b.session_id)
    assert fake.requests[-1].method == "DELETE"
    with pytest.raises(ka.NotFoundError):
        await client.browsers.retrieve(b.session_id)
    gone = await client.browsers.retrieve(b.session_id, include_deleted=True)
    assert fake.requests[-1].raw_path.endswith("?include_deleted=true")
    assert gone.deleted_at is not None
    with pytest.raises(ka.NotFoundError) as info:
        await client.browsers.delete(b.session_id)  # a first-attempt 404 is an error
    assert info.value.attempts == 1


async def test_delete_retried_after_ambiguous_failure_finds_it_gone(fake: FakeKernel) -> None:
    async with fake.client() as c:
        b = await c.browsers.create()
        fake.fail("delete", status=None, truncate=True)  # deleted, then the answer is cut
        await c.browsers.delete(b.session_id)
    assert fake.count("delete") == 2
    assert fake.sessions() == []


async def test_list_pages_lazily_by_offset(client: AsyncKernel, fake: FakeKernel) -> None:
    ids = [fake.create_browser(tags={"team": "a" if i % 2 else "b"}) for i in range(250)]
    before = len(fake.requests)
    page = await client.browsers.list(limit=100)
    assert isinstance(page, BrowserPage)
    assert (len(page.items), page.has_more, page.next_offset) == (100, True, 100)
    pager = client.browsers.list(limit=100)
    assert [b.session_id async for b in pager] == ids
    paths = [r.raw_path for r in fake.requests[before:]]
    assert paths == [
        "/browsers?limit=100",
        "/browsers?limit=100",
        "/browsers?limit=100&offset=100",
        "/browsers?limit=100&offset=200",
    ]
    # The first page is fetched once: awaiting, then iterating, reuses it.
    assert (await pager).items[0].session_id == ids[0]
    assert pager.items[0].session_id == ids[0] and pager.has_more
    before = len(fake.requests)
    async for _ in client.browsers.list(limit=10):
        break
    assert len(fake.requests) == before + 1


async def test_pages_walk_as_the_official_pages_do(client: AsyncKernel, fake: FakeKernel) -> None:
    ids = [fake.create_browser(tags={"team": "a"}) for _ in range(25)]
    fake.create_browser(tags={"team": "b"})
    before = len(fake.requests)
    page = await client.browsers.list(tags={"team": "a"}, limit=10)
    seen = [b.session_id for b in page.items]
    while page.has_next_page():
        page = await page.get_next_page()
        seen += [b.session_id for b in page.items]
    assert seen == ids
    assert [r.raw_path for r in fake.requests[before:]] == [
        "/browsers?tags%5Bteam%5D=a&limit=10",
        "/browsers?tags%5Bteam%5D=a&limit=10&offset=10",
        "/browsers?tags%5Bteam%5D=a&limit=10&offset=20",
    ]
    with pytest.raises(RuntimeError, match="has_next_page"):
        await page.get_next_page()
    # The pager itself walks too: its next page is a pager of the same list.
    pager = client.browsers.list(tags={"team": "a"}, limit=10)
    await pager
    assert pager.has_next_page()
    second = await pager.get_next_page()
    assert [b.session_id for b in second.items] == ids[10:20]
    # A page made by hand has no list behind it: the error says so.
    with pytest.raises(RuntimeError, match=r"browsers\.list\(\)"):
        await BrowserPage([], has_more=True, next_offset=5).get_next_page()
    assert BrowserPage([], has_more=True, next_offset=5) == attrs.evolve(
        page, items=[], has_more=True, next_offset=5
    )


async def test_list_filters_on_the_wire(client: AsyncKernel, fake: FakeKernel) -> None:
    fake.create_browser(name="x y", tags={"team": "a/b"}, region="eu-west")
    fake.create_browser()
    found = [
        b.name
        async for b in client.browsers.list(
            status="all", query="x y", tags={"team": "a/b"}, region="eu-west"
        )
    ]
    assert found == ["x y"]
    assert fake.requests[-1].raw_path == (
        "/browsers?status=all&query=x%20y&tags%5Bteam%5D=a%2Fb&region=eu-west"
    )
    with pytest.raises(ValueError, match="limit"):
        client.browsers.list(limit=101)
    with pytest.raises(ValueError, match="status"):
        client.browsers.list(status="gone")  # type: ignore[arg-type]


async def test_pager_before_fetching_is_a_clear_error(client: AsyncKernel) -> None:
    with pytest.raises(RuntimeError, match="await"):
        _ = client.browsers.list().items


async def test_list_refuses_more_without_an_offset() -> None:
    body = b"[]"
    async with ScriptedServer([respond(200, body, headers={"X-Has-More": "true"})]) as srv:
        async with AsyncKernel(api_key="k", base_url=srv.base_url) as c:
            with pytest.raises(ka.APIResponseValidationError, match="X-Next-Offset"):
                await c.browsers.list()


async def test_schema_break_is_a_validation_error() -> None:
    no_region = {
        "session_id": "s",
        "cdp_ws_url": "ws://x",
        "webdriver_ws_url": "ws://y",
        "created_at": "2025-01-01T00:00:00Z",
        "headless": False,
        "stealth": False,
        "timeout_seconds": 60,
    }
    async with ScriptedServer([respond(200, json.dumps(no_region).encode())]) as srv:
        async with AsyncKernel(api_key="k", base_url=srv.base_url) as c:
            with pytest.raises(ka.APIResponseValidationError, match="region"):
                await c.browsers.retrieve("s")


async def test_repr_hides_the_urls_tokens(client: AsyncKernel) -> None:
    b = await client.browsers.create()
    token = b.cdp_ws_url.split("jwt=")[1]
    assert token in b.cdp_ws_url and token not in repr(b)
    assert "?<redacted>" in repr(b)
    assert b.browser_live_view_url is not None and token not in str(b)


def test_unknown_fields_are_ignored() -> None:
    from kernel_async._models import decode_browser

    data = {
        "session_id": "s",
        "cdp_ws_url": "ws://x",
        "webdriver_ws_url": "ws://y",
        "created_at": "2025-01-01T00:00:00Z",
        "headless": True,
        "stealth": False,
        "timeout_seconds": 60,
        "region": "us-east",
        "memory": "1GiB",
        "brand_new": [1, 2],
    }
    b = decode_browser(json.dumps(data).encode())
    assert isinstance(b, Browser) and b.headless and b.tags is None


# -- pure rules ---------------------------------------------------------------------


@given(
    has_more=st.booleans(),
    next_at=st.none() | st.integers(min_value=0, max_value=10_000),
    requested=st.integers(min_value=0, max_value=10_000),
)
def test_next_offset_always_moves_forward(
    has_more: bool, next_at: int | None, requested: int
) -> None:
    page = BrowserPage([], has_more, next_at)
    if has_more and (next_at is None or next_at <= requested):
        # No offset, or one that repeats or goes back: paging on would never end.
        with pytest.raises(ValueError, match="X-Next-Offset"):
            _params.next_offset(page, requested)
        return
    following = _params.next_offset(page, requested)
    if has_more:
        assert following is not None and following > requested
    else:
        assert following is None


async def test_offsets_that_do_not_move_forward_are_a_validation_error() -> None:
    pages = [
        respond(200, b"[]", {"X-Has-More": "true", "X-Next-Offset": "10"}),
        respond(200, b"[]", {"X-Has-More": "true", "X-Next-Offset": "5"}),  # goes back
    ]
    async with ScriptedServer(pages) as srv:
        async with AsyncKernel(api_key="k", base_url=srv.base_url) as c:
            with pytest.raises(ka.APIResponseValidationError, match="does not move past"):
                async for _ in c.browsers.list():
                    pass
    assert len(srv.received) == 2


@given(tags=st.dictionaries(st.text(min_size=1), st.text(), max_size=50))
def test_tags_round_trip_through_the_query(tags: dict[str, str]) -> None:
    from urllib.parse import parse_qsl

    query = _params.encode_query(_params.list_query(tags=tags))
    decoded = dict(parse_qsl(query[1:], keep_blank_values=True))
    assert decoded == {f"tags[{k}]": v for k, v in tags.items()}
