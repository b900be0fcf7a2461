"""docs/testing.md lists exactly the operations the emulator answers with 501."""

from __future__ import annotations

import re
from pathlib import Path

from kernel_async.testing import FakeKernel
from kernel_async.testing._generic import NOT_IMPLEMENTED


def documented_501s() -> set[str]:
    """The operations docs/testing.md lists as answered with 501."""
    text = (Path(__file__).parent.parent / "docs" / "testing.md").read_text()
    section = text.split("## What the emulator answers with 501", 1)[1]
    return set(re.findall(r"^\| `([a-z_.]+)` \|", section, re.M))


def test_the_docs_list_every_501_and_nothing_else() -> None:
    fake = FakeKernel()
    refused = {name for name in NOT_IMPLEMENTED if name not in fake._browser_ops}
    assert documented_501s() == refused
