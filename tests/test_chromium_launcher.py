"""Pure parts of the local backend: finding Chromium, its command line, URLs, sizes; and the
core package never importing PyAV."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kernel_async.testing._backend import RecordingFiles
from kernel_async.testing._cdp_proxy import proxied_cdp_url
from kernel_async.testing._chromium import ChromiumNotFoundError, chromium_args, find_chromium
from kernel_async.testing._encoder import even_size

# Real browsers: interpreter-independent and heavy, so nox runs these on one Python.
pytestmark = pytest.mark.once


def which_of(*present: str) -> Callable[[str], str | None]:
    return lambda name: f"/usr/bin/{name}" if name in present else None


def test_find_chromium_prefers_the_environment_then_path_order(tmp_path: Path) -> None:
    binary = tmp_path / "my-chrome"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    both = which_of("chromium", "google-chrome")
    assert find_chromium({"KERNEL_CHROMIUM": str(binary)}, both) == str(binary)
    assert find_chromium({}, both) == "/usr/bin/chromium"
    assert find_chromium({}, which_of("google-chrome")) == "/usr/bin/google-chrome"


def test_missing_chromium_says_how_to_get_one() -> None:
    with pytest.raises(ChromiumNotFoundError, match="apt-get install chromium"):
        find_chromium({}, which_of())
    with pytest.raises(ChromiumNotFoundError, match="KERNEL_CHROMIUM"):
        find_chromium({"KERNEL_CHROMIUM": "/nonexistent/chrome"}, which_of())


def test_command_line_is_isolated_headless_and_on_a_pipe(tmp_path: Path) -> None:
    args = chromium_args("/bin/chromium", tmp_path, width=640, height=360)
    assert args[0] == "/bin/chromium"
    assert f"--user-data-dir={tmp_path}" in args
    assert "--remote-debugging-pipe" in args  # DevTools on a pipe: no port to reach
    assert not [a for a in args if a.startswith("--remote-debugging-port")]
    assert {"--headless", "--no-sandbox", "--disable-background-networking"} <= set(args)
    assert "--window-size=640,360" in args


def test_proxied_url_keeps_the_emulator_host_and_carries_the_token() -> None:
    url = proxied_cdp_url("http://127.0.0.1:8123/", "/browsers/b%201/cdp", "t-_1")
    assert url == "ws://127.0.0.1:8123/browsers/b%201/cdp?jwt=t-_1"
    assert proxied_cdp_url("https://h:1", "/x", "a").startswith("wss://h:1/x?")


@pytest.mark.parametrize(
    ("size", "even"), [((1280, 720), (1280, 720)), ((641, 361), (640, 360)), ((1, 1), (2, 2))]
)
def test_video_size_is_even_for_yuv420p(size: tuple[int, int], even: tuple[int, int]) -> None:
    assert even_size(*size) == even


def test_the_core_and_the_emulator_never_import_pyav() -> None:
    code = (
        "import sys, kernel_async, kernel_sync, kernel_async.testing\n"
        "import kernel_async.testing._chromium_backend\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'av' or m.endswith('_encoder')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.anyio
async def test_recording_files_exist_only_between_first_use_and_remove() -> None:
    files = RecordingFiles()
    await files.remove()  # nothing made, nothing to remove
    first, second = files.new_path(), files.new_path()
    assert first.parent == second.parent and first != second
    assert first.parent.is_dir()
    first.write_bytes(b"mp4")
    await files.remove()
    assert not first.parent.exists()
