"""The official `kernel` SDK (a test-only dependency) pointed at the emulator: browsers
and replays work through it as through the real API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kernel_async.testing import FakeKernel, sample_video

# Interpreter-independent (docs, examples, a peer SDK): nox runs these on one Python.
pytestmark = pytest.mark.once

kernel = pytest.importorskip("kernel")


@pytest.fixture
def fake() -> Iterator[FakeKernel]:
    with FakeKernel.in_thread(finalise_seconds=0) as server:
        yield server


def test_official_sdk_browsers_and_replays(fake: FakeKernel) -> None:
    with kernel.Kernel(api_key=fake.api_key, base_url=fake.base_url, max_retries=0) as k:
        b = k.browsers.create(
            name="official",
            tags={"team": "qa"},
            viewport={"width": 1024, "height": 768},
            timeout_seconds=300,
        )
        assert (b.name, b.tags, b.timeout_seconds) == ("official", {"team": "qa"}, 300)
        assert b.viewport is not None and b.viewport.width == 1024
        assert k.browsers.retrieve("official").session_id == b.session_id
        updated = k.browsers.update(b.session_id, name="renamed", tags={})
        assert updated.name == "renamed" and not updated.tags

        extra = [fake.create_browser() for _ in range(24)]
        listed = [x.session_id for x in k.browsers.list(limit=10)]  # auto-pagination
        assert listed == [b.session_id, *extra]
        assert [x.session_id for x in k.browsers.list(tags={"team": "qa"})] == []

        r = k.browsers.replays.start(b.session_id, framerate=10)
        k.browsers.replays.stop(r.replay_id, id_or_name=b.session_id)
        (replay,) = k.browsers.replays.list(b.session_id)
        assert replay.replay_id == r.replay_id and replay.finished_at is not None
        assert k.browsers.replays.download(r.replay_id, id_or_name=b.session_id).read() == (
            sample_video()
        )

        k.browsers.delete_by_id(b.session_id)
        with pytest.raises(kernel.NotFoundError):
            k.browsers.retrieve(b.session_id)
        gone = k.browsers.retrieve(b.session_id, include_deleted=True)
        assert gone.deleted_at is not None
        assert [x.session_id for x in k.browsers.list(status="deleted")] == [b.session_id]
        with pytest.raises(kernel.BadRequestError):
            k.browsers.create(timeout_seconds=5)
    assert fake.count("create") == 2 and fake.count("delete") == 1


def test_official_sdk_tour_of_every_resource_group(fake: FakeKernel) -> None:
    """At least one operation of each of the API's 39 resource groups, through the
    official SDK against the emulator: every answer parses, or is the documented 501."""
    fake.on_exec("uname", stdout=b"Linux\n")
    with kernel.Kernel(api_key=fake.api_key, base_url=fake.base_url, max_retries=0) as k:

        def refused(call: object) -> None:  # a documented 501 naming the operation
            with pytest.raises(kernel.InternalServerError, match="not available in the emulator"):
                call()  # type: ignore[operator]

        b = k.browsers.create(name="tour")
        assert k.browsers.list().items[0].session_id == b.session_id
        shot = k.browsers.computer.capture_screenshot(b.session_id)
        assert shot.read()[:8] == b"\x89PNG\r\n\x1a\n"
        k.browsers.computer.click_mouse(b.session_id, x=10, y=10)
        k.browsers.fs.write_file(b.session_id, b"hi", path="/tmp/t.txt")
        assert k.browsers.fs.read_file(b.session_id, path="/tmp/t.txt").read() == b"hi"
        assert k.browsers.fs.watch.start(b.session_id, path="/tmp").watch_id
        ran = k.browsers.process.exec(b.session_id, command="uname")
        assert ran.exit_code == 0
        fake.log(b.session_id, "tour line")
        with k.browsers.logs.stream(b.session_id, source="supervisor") as stream:
            assert "tour line" in [e.message for e in stream]
        replay = k.browsers.replays.start(b.session_id)
        assert k.browsers.replays.list(b.session_id)[0].replay_id == replay.replay_id
        assert k.browsers.playwright.executors.list(b.session_id) is not None
        refused(lambda: k.browsers.playwright.execute(b.session_id, code="1"))
        assert k.browsers.telemetry.events(b.session_id).items == []  # telemetry is off
        refused(lambda: k.browsers.webmcp.list_tools(b.session_id))
        refused(lambda: k.browsers.webmcp.custom_tools.list(b.session_id))

        assert k.api_keys.create(name="ci").id
        assert k.apps.list().items == []
        refused(lambda: k.audit_logs.list(start="2026-01-01T00:00:00Z", end="2026-01-02T00:00:00Z"))
        dest = k.audit_logs.export_destinations.create(
            bucket="b", format="jsonl.gz", prefix="p", region="r", role_arn="a", type="s3"
        )
        assert k.audit_logs.export_destinations.retrieve(dest.id).id == dest.id
        assert k.auth.connections.create(domain="example.com", profile_name="tour-p").id
        assert k.auth.context.retrieve() is not None
        pool = k.browser_pools.create(name="tour-pool", size=1)
        lease = k.browser_pools.acquire(pool.id, acquire_timeout_seconds=2)
        assert lease is not None
        k.browser_pools.release(pool.id, session_id=lease.session_id)
        assert k.config_registry.list().items == []
        assert k.config_registry.analyses.list().items == []
        assert k.credential_providers.create(token="t", name="op", provider_type="onepassword").id
        assert k.credentials.create(name="c", domain="d", values={"u": "v"}).id
        assert k.deployments.create(file=b"PK\x05\x06" + bytes(18), version="1").id
        assert k.extensions.upload(file=b"PK\x05\x06" + bytes(18), name="ext").id
        assert k.invocations.create(action_name="a", app_name="app", version="1").id
        assert k.organization.entitlements.retrieve() is not None
        assert k.organization.limits.retrieve() is not None
        profile = k.profiles.create(name="tour-profile")
        assert k.profiles.retrieve("tour-profile").id == profile.id
        project = k.projects.create(name="tour-project")
        assert k.projects.limits.retrieve(project.id) is not None
        assert k.proxies.create(type="custom", name="px").id
        search = k.search.create(query="kernel")
        assert k.search.retrieve(search.id).id == search.id
        refused(lambda: k.search.contents.fetch(search.id))
        assert k.search.providers.list() is not None
        assert k.telemetry.destinations.create(endpoint="https://x.invalid", name="otel").id
        assert k.vault_provider_configs.list().items == []
        vault = k.vaults.upsert(name="tour-vault")
        assert k.vaults.items.list(vault.id) is not None
