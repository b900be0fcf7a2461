"""The generators' --check works without ruff at hand: it then compares by meaning
(statements, names, values, comments), whatever the layout, import order or union order."""

from __future__ import annotations

import sys
from pathlib import Path

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
