"""``kernel_async.types``: every generated model by its official name, loaded lazily."""

from __future__ import annotations

import subprocess
import sys

import attrs
import pytest

import kernel_async.types as types


def test_every_name_resolves_to_a_frozen_model() -> None:
    for name in types.__all__:
        model = getattr(types, name)
        assert attrs.has(model), name
        assert model.__name__ == name
        assert attrs.fields(model) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchModel'"):
        types.NoSuchModel  # noqa: B018


def test_importing_types_loads_no_model_module() -> None:
    code = (
        "import sys, kernel_async.types as t\n"
        "assert not [m for m in sys.modules if m.startswith('kernel_async._gen.models.')], "
        "sorted(m for m in sys.modules if 'models' in m)\n"
        "from kernel_async.types import Profile\n"
        "assert 'kernel_async._gen.models._shared' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
