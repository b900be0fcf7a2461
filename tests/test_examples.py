"""Every example runs offline against the emulator with no configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_async.testing import FakeKernel

# Interpreter-independent (docs, examples, a peer SDK): nox runs these on one Python.
pytestmark = pytest.mark.once

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = ["agent_loop.py", "agent_loop_local.py", "notebook_sync.py", "web_service.py"]
# Offline computer use on a local Chromium: each makes its own browser, with its page.
COMPUTER_USE = ["computer_use_local.py", "computer_use_local_sync.py"]


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("KERNEL_", "BROWSER_ID"))}


@pytest.mark.parametrize("script", SCRIPTS + COMPUTER_USE)
def test_example_runs(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        env=env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.strip()


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_with_kernel_configured(script: str) -> None:
    # KERNEL_API_KEY set means "use this API, with BROWSER_ID": here the emulator plays it.
    # The local example drives its browser with Playwright: it needs a real one.
    backend = "chromium" if script == "agent_loop_local.py" else "memory"
    with FakeKernel.in_thread(finalise_seconds=0.05, backend=backend) as fake:
        browser = fake.create_browser()
        configured = env() | {
            "KERNEL_API_KEY": fake.api_key,
            "KERNEL_BASE_URL": fake.base_url,
            "BROWSER_ID": browser,
        }
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / script)],
            capture_output=True,
            text=True,
            env=configured,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert fake.replays(browser), "the example did not record the given browser"


@pytest.mark.parametrize("script", COMPUTER_USE)
def test_computer_use_example_runs_against_a_configured_kernel(script: str) -> None:
    # KERNEL_API_KEY set means "use this API": here the emulator (local Chromium) plays it.
    with FakeKernel.in_thread(backend="chromium") as fake:
        configured = env() | {"KERNEL_API_KEY": fake.api_key, "KERNEL_BASE_URL": fake.base_url}
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / script)],
            capture_output=True,
            text=True,
            env=configured,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "button blue, field empty -> button green" in done.stdout
        (browser,) = fake.sessions("deleted")  # record() made it, then deleted it
        assert browser["start_url"].startswith("data:text/html,")
        assert fake.replays(browser["session_id"])
        operations = [e.operation for e in fake.computer(browser["session_id"]).log]
        assert operations[:2] == ["capture_screenshot", "click_mouse"]
        assert "type_text" in operations and "press_key" in operations


def test_example_test_file_passes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES)],
        capture_output=True,
        text=True,
        env=env(),
        timeout=120,
        cwd=EXAMPLES,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
