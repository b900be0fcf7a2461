"""``browsers.create(profile=...)`` in the emulator: the session keeps the profile it was
created with and every browser answer (create, retrieve, list) shows it as the API does
(``profile``, a `Profile`, and ``profile_save_changes``, both left out without one).

The rule (`attach_profile`) is tested without sockets; then this SDK, the official SDK
and a local Chromium (marked ``once``) over loopback, each answer checked with jsonschema
against the spec (`tests.spec_shapes`)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import aiohttp
import pytest

from kernel_async import AsyncKernel, BadRequestError, NotFoundError
from kernel_async.testing import FakeKernel
from kernel_async.testing._sessions import Refused, attach_profile
from tests.spec_shapes import conforms

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
STORED: list[dict[str, Any]] = [
    {"id": "prf_a", "name": "shop", "created_at": "2026-01-01T00:00:00Z",
     "updated_at": "2026-01-01T00:00:00Z"},
    {"id": "prf_b", "name": "bank", "created_at": "2026-01-01T00:00:01Z", "extra": 1},
]  # fmt: skip


def test_the_profile_a_session_is_created_with() -> None:
    assert attach_profile(None, STORED, NOW) == {}  # none asked for: nothing shown
    by_name = attach_profile({"name": "shop"}, STORED, NOW)
    assert by_name == {"profile": STORED[0], "profile_save_changes": False}
    by_id = attach_profile({"id": "prf_b", "save_changes": True}, STORED, NOW)
    # Only the `Profile` fields of the stored record.
    assert by_id["profile"] == {k: v for k, v in STORED[1].items() if k != "extra"}
    assert by_id["profile_save_changes"] is True
    # The id wins over the name when both are given and name different profiles.
    assert attach_profile({"id": "prf_b", "name": "shop"}, STORED, NOW)["profile"]["id"] == "prf_b"
    # A profile that does not exist (references unchecked): echoed as asked.
    echoed = attach_profile({"id": "prf_zz"}, STORED, NOW)["profile"]
    assert echoed == {"id": "prf_zz", "created_at": "2026-01-02T03:04:05Z"}
    named = attach_profile({"name": "new-one"}, [], NOW)["profile"]
    assert named["name"] == "new-one" and named["id"].startswith("prf_")
    for shown in (by_name, by_id, {"profile": echoed}, {"profile": named}):
        conforms("Profile", shown["profile"])


@pytest.mark.parametrize(
    ("requested", "problem"),
    [
        ("shop", "profile must be an object"),
        ({}, "profile needs an id or a name"),
        ({"save_changes": True}, "profile needs an id or a name"),
        ({"name": 3}, "name must be a str"),
        ({"name": "has space"}, "profile.name must be 1-255 letters"),
        ({"name": "x" * 256}, "profile.name must be 1-255 letters"),
        ({"id": "prf_a", "save_changes": "yes"}, "save_changes must be a bool"),
    ],
)
def test_refused_profile_selections(requested: Any, problem: str) -> None:
    with pytest.raises(Refused) as caught:
        attach_profile(requested, STORED, NOW)
    assert caught.value.status == 400
    assert any(problem in d for d in caught.value.details), caught.value.details


async def raw_json(fake: FakeKernel, method: str, path: str, body: Any = None) -> Any:
    """A request's JSON answer, as sent on the wire (checked 200)."""
    auth = {"Authorization": f"Bearer {fake.api_key}"}
    async with aiohttp.ClientSession() as http:
        async with http.request(method, fake.base_url + path, headers=auth, json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


async def test_create_retrieve_and_list_show_the_profile(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    profile = await client.profiles.create(name="shop")
    browser = await client.browsers.create(profile={"name": "shop", "save_changes": True})
    assert browser.profile is not None
    assert (browser.profile.id, browser.profile.name) == (profile.id, "shop")
    assert browser.profile.created_at == profile.created_at
    assert browser.profile_save_changes is True
    again = await client.browsers.retrieve(browser.session_id)
    assert again.profile is not None and again.profile.id == profile.id
    assert again.profile_save_changes is True
    listed = [b async for b in client.browsers.list()]
    assert [(b.session_id, b.profile and b.profile.id) for b in listed] == [
        (browser.session_id, profile.id)
    ]
    by_id = await client.browsers.create(profile={"id": profile.id})
    assert by_id.profile is not None and by_id.profile.name == "shop"
    assert by_id.profile_save_changes is False

    # On the wire, in the spec's shapes; without a profile neither field is sent.
    plain = await raw_json(fake, "POST", "/browsers", {})
    assert "profile" not in plain and "profile_save_changes" not in plain
    made = await raw_json(fake, "POST", "/browsers", {"profile": {"id": profile.id}})
    conforms("BrowserCreateResponse", made)
    assert made["profile"]["id"] == profile.id and made["profile_save_changes"] is False
    conforms(
        "BrowserRetrieveResponse", await raw_json(fake, "GET", f"/browsers/{made['session_id']}")
    )
    for item in await raw_json(fake, "GET", "/browsers"):
        conforms("BrowserListResponse", item)


async def test_unknown_and_invalid_profiles(fake: FakeKernel, client: AsyncKernel) -> None:
    # "Profiles must be created beforehand" (the official type's documentation): a 404.
    with pytest.raises(NotFoundError, match="profile 'nope' not found"):
        await client.browsers.create(profile={"name": "nope"})
    with pytest.raises(BadRequestError, match="invalid parameters"):
        await client.browsers.create(profile={"name": "no spaces allowed"})
    assert [b async for b in client.browsers.list()] == []  # nothing was made
    # With reference checks off, the selection is echoed as asked.
    async with FakeKernel(check_references=False) as loose, loose.client() as other:
        made = await other.browsers.create(profile={"id": "prf_elsewhere"})
        assert made.profile is not None and made.profile.id == "prf_elsewhere"


async def test_a_browser_made_by_the_test_helper_shows_its_profile(
    fake: FakeKernel, client: AsyncKernel
) -> None:
    profile = await client.profiles.create(name="helper")
    b = fake.create_browser(profile={"name": "helper"})
    shown = await client.browsers.retrieve(b)
    assert shown.profile is not None and shown.profile.id == profile.id


@pytest.mark.once
def test_the_official_sdk_sees_the_profile(threaded_fake: FakeKernel) -> None:
    kernel = pytest.importorskip("kernel")
    fake = threaded_fake
    with kernel.Kernel(api_key=fake.api_key, base_url=fake.base_url, max_retries=0) as k:
        profile = k.profiles.create(name="official")
        browser = k.browsers.create(profile={"id": profile.id, "save_changes": True})
        assert browser.profile is not None and browser.profile.id == profile.id
        assert browser.profile.name == "official" and browser.profile_save_changes is True
        again = k.browsers.retrieve(browser.session_id)
        assert again.profile is not None and again.profile.id == profile.id
        listed = list(k.browsers.list())
        assert [b.profile.id for b in listed if b.profile is not None] == [profile.id]
        with pytest.raises(kernel.NotFoundError):
            k.browsers.create(profile={"name": "missing"})


@pytest.mark.once
async def test_chromium_keeps_the_profile() -> None:
    async with FakeKernel(backend="chromium") as fake, fake.client(max_retries=0) as client:
        profile = await client.profiles.create(name="local")
        browser = await client.browsers.create(headless=True, profile={"name": "local"})
        try:
            again = await client.browsers.retrieve(browser.session_id)
            assert again.profile is not None and again.profile.id == profile.id
            assert again.profile_save_changes is False
        finally:
            await client.browsers.delete_by_id(browser.session_id)
