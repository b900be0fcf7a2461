"""The CLI's browser commands and `record`, through real subprocesses against the emulator."""

from __future__ import annotations

import json
from pathlib import Path

from kernel_async.testing import FakeKernel
from tests.interrupt import ctrl_c_after
from tests.test_cli import cli, fake

__all__ = ["fake"]  # the fixture, shared with test_cli


def test_browsers_create_get_list_delete(fake: FakeKernel) -> None:
    made = cli(
        fake, "--json", "browsers", "create", "--name", "cli", "--tag", "team=qa",
        "--viewport", "1280x800@60", "--timeout-seconds", "120",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    b = json.loads(made.stdout)
    assert (b["name"], b["tags"], b["viewport"]) == (
        "cli",
        {"team": "qa"},
        {"width": 1280, "height": 800, "refresh_rate": 60},
    )
    assert json.loads(fake.requests[-1].body)["timeout_seconds"] == 120
    shown = cli(fake, "browsers", "get", "cli")
    assert shown.returncode == 0 and b["session_id"] in shown.stdout
    for _ in range(3):
        fake.create_browser()
    table = cli(fake, "browsers", "list", "--page-size", "2")
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["SESSION", "ID"] and len(lines) == 5
    assert [r.raw_path for r in fake.requests[-2:]] == [
        "/browsers?limit=2",
        "/browsers?limit=2&offset=2",
    ]
    tagged = json.loads(cli(fake, "--json", "browsers", "list", "--tag", "team=qa").stdout)
    assert [x["session_id"] for x in tagged] == [b["session_id"]]
    assert cli(fake, "browsers", "delete", "cli").stdout == "deleted cli\n"
    assert cli(fake, "browsers", "list", "--json").returncode == 0  # options after the action
    gone = cli(fake, "browsers", "get", b["session_id"])
    assert gone.returncode == 1 and "404" in gone.stderr
    assert cli(fake, "browsers", "create", "--viewport", "big").returncode == 2


def test_record_for_some_seconds(fake: FakeKernel, tmp_path: Path) -> None:
    out = tmp_path / "r.mp4"
    done = cli(fake, "--json", "record", "--seconds", "0.2", "-o", str(out), "--name", "r")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["path"] == str(out) and result["bytes"] == len(fake.video)
    assert result["deleted"] is True
    assert fake.sessions() == []


def test_record_until_ctrl_c(fake: FakeKernel, tmp_path: Path) -> None:
    out = tmp_path / "c.mp4"
    code = (
        "from kernel_sync.__main__ import main\n"
        f"raise SystemExit(main(['record', '-o', {str(out)!r}]))\n"
    )
    env = {"KERNEL_BASE_URL": fake.base_url, "KERNEL_API_KEY": fake.api_key}
    returncode, rest, err = ctrl_c_after(code, "recording browser", env)
    assert returncode == 0, err
    assert f"saved {out}" in rest and "deleted browser" in rest
    assert out.read_bytes() == fake.video
    assert fake.sessions() == []
