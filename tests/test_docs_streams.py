"""docs/streams.md's samples run as written, against a local event-stream server (the
emulator does not serve these streams): each block marked "run by
tests/test_docs_streams.py" is saved and run with ``python``, configured as the docs say
(``KERNEL_BASE_URL``, ``KERNEL_API_KEY``, ``BROWSER_ID`` in the environment). The server
cuts the logs stream once mid-way, so the samples also show that a resumed stream prints
every line once. (tests/test_docs_samples.py compiles the same blocks as fragments.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sse_server import LogFeed, ProcessFeed, serving
from tests.test_docs_samples import ROOT, Block, collect

pytestmark = pytest.mark.once  # docs: interpreter-independent

PAGE = ROOT / "docs" / "streams.md"
MARK = "run by tests/test_docs_streams.py"


def runnable() -> list[Block]:
    text = PAGE.read_text().splitlines()
    return [b for b in collect(PAGE) if MARK in text[b.line - 2]]


@pytest.fixture
def served() -> Iterator[tuple[LogFeed, ProcessFeed, str]]:
    logs, process = LogFeed(), ProcessFeed()
    logs.total, logs.drops = 6, [3]  # the first connection is cut after 3 events
    with serving(logs, process) as url:
        yield logs, process, url


def test_the_page_has_runnable_samples() -> None:
    blocks = runnable()
    assert len(blocks) == 3
    assert {b.kind for b in blocks} == {"fragment"}  # compiled only by test_docs_samples


@pytest.mark.parametrize("block", runnable(), ids=str)
def test_sample_runs_against_a_local_stream(
    block: Block, served: tuple[LogFeed, ProcessFeed, str], tmp_path: Path
) -> None:
    logs, process, url = served
    (tmp_path / "sample.py").write_text(block.code)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERNEL_", "BROWSER_ID"))}
    env |= {"KERNEL_BASE_URL": url, "KERNEL_API_KEY": "sk-docs", "BROWSER_ID": "agent-browser"}
    done = subprocess.run(
        [sys.executable, "sample.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
    assert done.stderr == ""
    out = done.stdout.splitlines()
    if "logs.stream" in block.code:
        assert [line.split(" ", 1)[1] for line in out[:6]] == [f"line {n}" for n in range(1, 7)]
        assert [last for _, last, _ in logs.requests] == [None, "3"]  # resumed once
        if "AsyncKernel" in block.code:
            assert out[6:] == ["6 lines, 1 reconnects"]
            assert logs.requests[0][0]["follow"] == "true"
    else:
        assert out == ["hello from the browser machine", "exit code 0"]
        assert process.spawned[0]["command"] == "python3"
