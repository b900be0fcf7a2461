"""``kernel_async.types``: every generated model by its official name, loaded lazily
(the official `kernel.types` tree as a whole: tests/test_types_tree.py)."""

from __future__ import annotations

import subprocess
import sys
import typing

import attrs
import pytest

import kernel_async.types as types
from kernel_async._gen.models import MODULES, PARAMS


def _place_free_models() -> list[str]:
    """The names of models (classes), not type aliases."""
    return [name for name, home in MODULES.items() if not home.startswith("_aliases")]


ALIASES = set(MODULES) - set(_place_free_models())
TOP_ALIASES = {name for name in ALIASES if MODULES[name] == "_aliases"}
TOP_PARAMS = set(PARAMS[""])


def test_every_name_resolves_to_a_frozen_model() -> None:
    for name in sorted(set(types.__all__) - ALIASES - TOP_PARAMS):
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
        "import kernel_async.types.browsers, kernel_async.types.vaults\n"
        "import kernel_async.types.shared_params\n"
        "assert not [m for m in sys.modules if m.startswith('kernel_async._gen.models.')]\n"
        "from kernel_async.types import Profile\n"
        "assert 'kernel_async._gen.models._shared' in sys.modules\n"
        "from kernel_async.types.browsers import ComputerClickMouseParams\n"
        "assert 'kernel_async._gen.models._params_browsers' in sys.modules\n"
        "assert 'kernel_async._gen.models.browsers_computer' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _official_args(alias: object) -> list[object]:
    """The official alias's members: a `Literal`'s values, a union's models by name, a
    map's key and value types, a list's item type (`Annotated` metadata dropped; a
    member that has members of its own, such as a union in a list, as their list)."""
    if typing.get_origin(alias) is typing.Annotated:
        alias = typing.get_args(alias)[0]
    return [_member(a) for a in typing.get_args(alias)]


def _member(member: object) -> object:
    if typing.get_origin(member) is typing.Annotated:
        member = typing.get_args(member)[0]
    if typing.get_args(member):
        return _official_args(member)
    return getattr(member, "__name__", member)


def test_the_official_type_aliases_are_there_with_the_same_members() -> None:
    official = pytest.importorskip("kernel.types")
    expected = {
        "Tags", "BrowserMemory", "BrowserMemoryRequest", "BrowserVideoMemory",
        "BrowserProxyMode", "BrowserLocationSource", "BrowserReplContent",
        "VaultProviderConfig", "RecommendationResult", "DeploymentFollowResponse",
        "InvocationFollowResponse", "Proxy",
    }  # fmt: skip
    assert expected == TOP_ALIASES
    for name in sorted(TOP_ALIASES):
        ours = getattr(types, name)
        assert name in types.__all__
        assert _official_args(ours) == _official_args(getattr(official, name)), name
    # Every official name in kernel.types is here, the *Params TypedDicts too.
    missing = {n for n in dir(official) if n[:1].isupper() and not n.startswith("_")}
    assert not missing - set(types.__all__)


def test_a_follow_alias_accepts_its_events_in_annotations() -> None:
    from kernel_async.types import DeploymentFollowResponse, HeartbeatEvent, LogEvent

    members = typing.get_args(DeploymentFollowResponse)
    assert LogEvent in members and HeartbeatEvent in members
