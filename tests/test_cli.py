"""The CLI through real subprocesses against the emulator, and the demo end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel_async.testing import FakeKernel


@pytest.fixture
def fake() -> Iterator[FakeKernel]:
    with FakeKernel.in_thread(finalise_seconds=0.05) as server:
        yield server


def cli(
    fake: FakeKernel | None, *args: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL_")}
    if fake is not None:
        env["KERNEL_BASE_URL"] = fake.base_url
        env["KERNEL_API_KEY"] = key if key is not None else fake.api_key
    return subprocess.run(
        [sys.executable, "-m", "kernel_sync", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_full_flow_text_and_json(fake: FakeKernel, tmp_path: Path) -> None:
    b = fake.create_browser()
    started = cli(fake, "start", b, "--framerate", "5", "--audio")
    assert started.returncode == 0, started.stderr
    rid = started.stdout.strip()
    assert fake.requests[-1].body == b'{"framerate": 5, "record_audio": true}'
    table = cli(fake, "list", b)
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:2] == ["REPLAY", "ID"]
    assert rid in table.stdout and "recording" in table.stdout
    stopped = cli(fake, "--json", "stop", b, rid)
    assert json.loads(stopped.stdout) == {"stopped": rid}
    listed = json.loads(cli(fake, "--json", "list", b).stdout)
    assert listed[0]["replay_id"] == rid and listed[0]["finished_at"]
    out = tmp_path / "v.mp4"
    dl = cli(fake, "--json", "download", b, rid, "-o", str(out))
    assert dl.returncode == 0, dl.stderr
    assert json.loads(dl.stdout) == {"path": str(out), "bytes": len(fake.video)}
    assert out.read_bytes() == fake.video


def test_api_error_exit_1_one_line(fake: FakeKernel) -> None:
    b = fake.create_browser()
    res = cli(fake, "stop", b, "missing")
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "error: 404 not_found: replay 'missing' not found (1 attempt)"
    ]
    res = cli(fake, "list", b, key="wrong-key")
    assert res.returncode == 1 and "401 unauthorized" in res.stderr
    assert "wrong-key" not in res.stderr


def test_usage_errors_exit_2() -> None:
    assert cli(None, "stop", "only-one-arg").returncode == 2
    assert cli(None, "frobnicate").returncode == 2
    assert cli(None).returncode == 2


def test_missing_key_names_the_variable() -> None:
    res = cli(None, "list", "b")
    assert res.returncode == 1 and "KERNEL_API_KEY" in res.stderr


def test_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo.mp4"
    res = cli(None, "demo", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert "status 503" in res.stdout and "status 429" in res.stdout
    assert "stopped after 3 attempts" in res.stdout
    assert out.read_bytes()[4:8] == b"ftyp"
    summary = json.loads(cli(None, "--json", "demo", "-o", str(out)).stdout)
    assert summary["stop_attempts"] == 3
    assert summary["bytes"] == out.stat().st_size
    assert summary["download_polls"] >= 2


def test_emulator_command_serves(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel_sync", "--json", "emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL_")}
        env |= {"KERNEL_BASE_URL": info["base_url"], "KERNEL_API_KEY": info["api_key"]}
        res = subprocess.run(
            [sys.executable, "-m", "kernel_sync", "start", info["browser"]],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("rp_")
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # also closes the pipes


def test_download_shows_progress_on_a_terminal(fake: FakeKernel, tmp_path: Path) -> None:
    import pty

    b = fake.create_browser()
    rid = cli(fake, "start", b).stdout.strip()
    cli(fake, "stop", b, rid)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL_")}
    env |= {"KERNEL_BASE_URL": fake.base_url, "KERNEL_API_KEY": fake.api_key}
    leader, follower = pty.openpty()
    out = tmp_path / "v.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel_sync", "download", b, rid, "-o", str(out)],
        stdout=follower,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(leader)
    assert proc.stderr is not None
    proc.stderr.close()
    text = b"".join(chunks).decode()
    assert proc.returncode == 0
    assert "downloaded 2.8 KiB" in text and f"saved {out}" in text


def test_console_script_installed() -> None:
    script = Path(sys.executable).parent / "kernel-replays"
    if not script.exists():
        pytest.skip("package not installed with its console script in this environment")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "start" in done.stdout and "download" in done.stdout
