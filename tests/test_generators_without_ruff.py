"""The generators' --check works without ruff at hand: it then compares by meaning
(statements, names, values, comments), whatever the layout, import order or union order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "tools"))

from gen_api import _meaning

GENERATED = '''# GENERATED
"""Doc
    continued."""
from b import y
from a import x


def f(v: int | None | str) -> dict[str, int]:
    return {'a': 1, 'b': [1, 2,]}
'''

FORMATTED = '''# GENERATED
"""Doc
continued."""

from a import x
from b import y


def f(v: int | str | None) -> dict[str, int]:
    return {
        "a": 1,
        "b": [1, 2],
    }
'''


def test_layout_import_order_and_union_order_do_not_matter() -> None:
    assert _meaning(GENERATED) == _meaning(FORMATTED)


def test_code_and_comments_do() -> None:
    assert _meaning(GENERATED) != _meaning(FORMATTED.replace('"a": 1', '"a": 2'))
    assert _meaning(GENERATED) != _meaning(FORMATTED.replace("# GENERATED", "# EDITED"))
    assert _meaning(GENERATED) != _meaning(FORMATTED.replace("int | str", "str | int"))


RUNTIME_ONLY = ("aiohttp", "multidict", "yarl", "cattrs", "anyio")


@pytest.mark.parametrize("tool", ["gen_api", "gen_sync_api", "gen_sync", "gen_docs"])
def test_each_generators_check_runs_without_the_runtime_dependencies(tool: str) -> None:
    """The generators read the package, never its transport: their --check runs where
    only attrs and PyYAML are installed (aiohttp, multidict, ... blocked here)."""
    root = Path(__file__).parent.parent
    code = (
        "import runpy, sys\n"
        f"for name in {RUNTIME_ONLY!r}:\n"
        "    sys.modules[name] = None  # importing it raises ImportError\n"
        f"sys.argv = [{tool!r}, '--check']\n"
        f"runpy.run_path({str(root / 'tools' / (tool + '.py'))!r}, run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
