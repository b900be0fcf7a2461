"""Every fenced Python block in README.md and docs/ runs, as written, against the emulator.

Each block is saved as a file and run with ``python`` in a fresh directory, configured
the way the docs tell a reader to: ``KERNEL_BASE_URL``, ``KERNEL_API_KEY`` and
``BROWSER_ID`` exported from the emulator. A block defining ``test_`` functions is run
with pytest instead. Markers, an HTML comment on the line before the fence:

- ``<!-- fragment: why -->``: deliberately partial (e.g. needs a client in scope); only
  compiled (top-level ``await`` allowed);
- ``<!-- serves: ... -->``: a web service; started, called over HTTP, then stopped.
"""

from __future__ import annotations

import ast
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kernel_async.testing import FakeKernel
from kernel_sync import Kernel

# Interpreter-independent (docs, examples, a peer SDK): nox runs these on one Python.
pytestmark = pytest.mark.once

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>fragment|serves)\b")


@dataclass(frozen=True)
class Block:
    file: str
    line: int
    code: str
    kind: str  # "run", "pytest", "fragment" or "serves"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def collect(path: Path) -> Iterator[Block]:
    """The ```python blocks of a Markdown file, indented ones (e.g. in tabs) too."""
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        indent, start = fence["indent"], i
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        code = textwrap.dedent("\n".join(lines[start + 1 : end])) + "\n"
        before = next((s for s in reversed(lines[:start]) if s.strip()), "")
        marker = MARKER.match(before)
        kind = marker["kind"] if marker else "pytest" if "def test_" in code else "run"
        yield Block(str(path.relative_to(ROOT)), start + 1, code, kind)
        i = end + 1
        assert lines[end].startswith(indent)


BLOCKS = [block for path in DOCS for block in collect(path)]


def test_the_collector_finds_the_samples() -> None:
    files = {b.file for b in BLOCKS}
    assert {"README.md", "docs/index.md", "docs/testing.md", "docs/web-service.md"} <= files
    assert sum(b.file == "docs/index.md" for b in BLOCKS) == 2  # both tabs
    assert len(BLOCKS) >= 14
    assert {b.kind for b in BLOCKS} == {"run", "pytest", "fragment", "serves"}


@pytest.fixture(scope="module")
def emulator() -> Iterator[FakeKernel]:
    with FakeKernel.in_thread(finalise_seconds=0.05) as fake:
        yield fake


def exported(fake: FakeKernel, **extra: str) -> dict[str, str]:
    """The environment after pasting `kernel-replays emulator`'s exports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERNEL_", "BROWSER_ID"))}
    env |= {"KERNEL_BASE_URL": fake.base_url, "KERNEL_API_KEY": fake.api_key}
    return env | {"BROWSER_ID": fake.create_browser()} | extra


def _run(block: Block, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    if block.kind == "pytest":
        (cwd / "test_sample.py").write_text(block.code)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_sample.py"]
    else:
        (cwd / "sample.py").write_text(block.code)
        command = [sys.executable, "sample.py"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind in ("run", "pytest")], ids=str)
def test_sample_runs_as_written(block: Block, emulator: FakeKernel, tmp_path: Path) -> None:
    env = exported(emulator)
    done = _run(block, env, tmp_path)
    assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    if "BROWSER_ID" in block.code:  # it really recorded the browser it was given
        assert emulator.replays(env["BROWSER_ID"]), f"{block} made no recording"
    if block.kind == "pytest":
        assert " passed" in done.stdout and "failed" not in done.stdout


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "fragment"], ids=str)
def test_fragment_compiles(block: Block) -> None:
    compile(block.code, str(block), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _post(url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait_listening(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("the service did not start listening")


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "serves"], ids=str)
def test_service_sample_serves(block: Block, emulator: FakeKernel, tmp_path: Path) -> None:
    (tmp_path / "service.py").write_text(block.code)
    port = _free_port()
    env = exported(emulator, PORT=str(port))
    browser = env["BROWSER_ID"]
    with Kernel(api_key=emulator.api_key, base_url=emulator.base_url) as client:
        replay = client.browsers.replays.start(browser)
    proc = subprocess.Popen(
        [sys.executable, "service.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_listening(port, proc)
        base = f"http://127.0.0.1:{port}/browsers/{browser}/replays"
        assert _post(f"{base}/{replay.replay_id}/stop") == (200, '{"stopped": true}')
        assert _post(f"{base}/nope/stop")[0] == 404
        status, body = _post(f"{base}/%2E%2E/stop")  # ".." as an ID: refused, not a 500
        assert status == 400 and "replay_id" in body
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err


class _Session:
    """Enough of `nox.Session` to see what a session would run."""

    def __init__(self, python: str | None) -> None:
        self.python = python
        self.posargs: list[str] = []
        self.runs: list[tuple[str, ...]] = []

    def install(self, *args: str) -> None:
        pass

    def run(self, *args: str, **kwargs: object) -> None:
        self.runs.append(args)


def _nox_sessions(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[object, list[str | None]]]:
    """The noxfile's sessions: name -> (function, the Pythons it runs on; [None] = nox's)."""
    import importlib.util
    import types

    found: dict[str, tuple[object, list[str | None]]] = {}

    def session(func: object = None, *, python: list[str] | None = None) -> object:
        def register(f: types.FunctionType) -> types.FunctionType:
            found[f.__name__] = (f, list(python) if python else [None])
            return f

        return register(func) if isinstance(func, types.FunctionType) else register

    stub = types.ModuleType("nox")
    stub.session = session  # type: ignore[attr-defined]
    stub.Session = _Session  # type: ignore[attr-defined]
    stub.options = types.SimpleNamespace()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nox", stub)
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))  # the noxfile extends it
    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return found


def _pytest_marks(func: object, python: str | None) -> list[str]:
    """The `-m` expression of each pytest run a session makes."""
    session = _Session(python)
    func(session)  # type: ignore[operator]
    runs = [r for r in session.runs if r[0] == "pytest"]
    return [r[r.index("-m") + 1] for r in runs]


def test_readme_test_commands_match_the_nox_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = _nox_sessions(monkeypatch)
    readme = (ROOT / "README.md").read_text()
    for command in ("nox -s demo", "nox -s tests"):  # the quick start, word for word
        line = re.escape(f"python3 -m pip install nox && {command}")
        assert re.search(rf"^{line}(\s+#.*)?$", readme, re.MULTILINE), command
    assert "nox -s tests_all" in readme
    # `nox -s tests`: one run, on the Python running nox, everything but the soak.
    tests, pythons = sessions["tests"]
    assert pythons == [None] and _pytest_marks(tests, None) == ["not slow"]
    # `nox -s tests_all`: every supported Python.
    _, matrix = sessions["tests_all"]
    assert matrix == ["3.10", "3.11", "3.12", "3.13"]
    # CI runs the matrix and the other checks, and each `once` test exactly once.
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    called = [n for line in ci if line.startswith("nox -s ") for n in line.split()[2:]]
    assert sorted(called) == ["codegen", "docs", "lint", "soak", "tests_all", "typecheck"]
    marks = [
        mark
        for name in ("tests_all", "soak")
        for python in sessions[name][1]
        for mark in _pytest_marks(sessions[name][0], python)
    ]
    assert len(marks) == 5  # four Pythons, then the soak (`-m slow`)
    assert sum("not slow" in m and "not once" not in m for m in marks) == 1
