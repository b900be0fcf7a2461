"""The official `kernel.types` tree, name by name, under `kernel_async.types`: official
code runs after changing `kernel` to `kernel_async` in its imports
(`from kernel_async.types.browsers import ComputerClickMouseParams`)."""

from __future__ import annotations
import __future__

import importlib
import inspect
import json
import pkgutil
import types as pytypes
import typing
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import kernel_async
from kernel_async import AsyncKernel
from tests.test_types_module import _official_args

official_types = pytest.importorskip("kernel.types")


def _official_packages() -> Iterator[tuple[str, pytypes.ModuleType]]:
    """Each package of the official tree: ("", kernel.types), ("browsers.fs", ...)."""
    yield "", official_types
    for info in pkgutil.walk_packages(official_types.__path__, "kernel.types."):
        if info.ispkg:
            yield info.name.removeprefix("kernel.types."), importlib.import_module(info.name)


def _public(module: pytypes.ModuleType) -> dict[str, object]:
    """The module's public names: not its submodules, nor its `from __future__` flags."""
    return {
        name: value
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, pytypes.ModuleType | __future__._Feature)
    }


PACKAGES = dict(_official_packages())
NAMES = [(pkg, name) for pkg, module in PACKAGES.items() for name in sorted(_public(module))]


def _ours(package: str) -> pytypes.ModuleType:
    return importlib.import_module("kernel_async.types" + (f".{package}" if package else ""))


def _official_keys(td: typing.Any) -> tuple[set[str], set[str]]:
    """(keys, required keys) of an official TypedDict. Its runtime `__required_keys__` is
    empty: `Required[...]` sits in string annotations, so it is read from them."""
    keys = set(td.__required_keys__ | td.__optional_keys__)
    required = set()
    for key in keys:
        note = td.__annotations__[key]
        text = note.__forward_arg__ if isinstance(note, typing.ForwardRef) else str(note)
        text = text.removeprefix("Annotated[")
        if text.startswith("Required[") or (td.__total__ and not text.startswith("NotRequired[")):
            required.add(key)
    return keys, required


def test_the_tree_walk_sees_the_official_packages() -> None:
    assert {"", "browsers", "browsers.fs", "vaults", "shared", "shared_params"} <= set(PACKAGES)
    assert len(NAMES) > 400


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_official_name_is_importable_from_the_same_path(package: str) -> None:
    ours = _ours(package)
    missing = []
    for name in sorted(_public(PACKAGES[package])):
        try:
            exec(f"from {ours.__name__} import {name}", {})
        except ImportError:
            missing.append(name)
        else:
            assert name in ours.__all__, name
    assert not missing, f"kernel_async.types{'.' if package else ''}{package} lacks {missing}"


def test_subpackages_are_reached_as_attributes_too() -> None:
    import kernel_async.types as types

    assert types.browsers.fs.WatchStartParams is not None
    assert "browsers" in dir(types)
    with pytest.raises(AttributeError, match="no attribute 'Profile'"):
        types.browsers.Profile  # noqa: B018  (not in the official browsers package either)


def _kind(value: object) -> str:
    if typing.is_typeddict(value) or _is_official_typeddict(value):
        return "typeddict"
    # (On 3.10 `dict[str, str]` passes for a type too: an alias has an origin.)
    if isinstance(value, type) and typing.get_origin(value) is None:
        return "class"
    return "alias"


def _is_official_typeddict(value: object) -> bool:
    return isinstance(value, type) and hasattr(value, "__optional_keys__")


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_each_name_is_the_same_kind_of_thing(package: str) -> None:
    """A model is a (frozen attrs) class, a TypedDict a TypedDict, an alias an alias."""
    ours = _ours(package)
    for name, value in sorted(_public(PACKAGES[package]).items()):
        mine = getattr(ours, name)
        assert _kind(mine) == _kind(value), (package, name)
        if _kind(value) == "class":
            assert attrs.has(mine) and mine.__name__ == name, (package, name)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_aliases_have_the_official_members(package: str) -> None:
    ours = _ours(package)
    for name, value in sorted(_public(PACKAGES[package]).items()):
        if _kind(value) == "alias":
            assert _official_args(getattr(ours, name)) == _official_args(value), (package, name)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_typeddicts_have_the_official_keys_and_required_keys(package: str) -> None:
    ours = _ours(package)
    checked = 0
    for name, value in sorted(_public(PACKAGES[package]).items()):
        members: list[tuple[str, typing.Any]] = [(name, value)]
        if _kind(value) == "alias":  # a union of TypedDicts (ItemUpdateParams): each form
            members = [(f"{name}[{m.__name__}]", m) for m in _typeddict_members(value)]
            mine_members = _typeddict_members(getattr(ours, name))
            assert [m.__name__ for m in mine_members] == [m.__name__ for _, m in members], name
        elif _kind(value) != "typeddict":
            continue
        else:
            mine_members = [getattr(ours, name)]
        for (label, official), mine in zip(members, mine_members, strict=True):
            assert typing.is_typeddict(mine), label
            keys, required = _official_keys(official)
            assert set(mine.__required_keys__ | mine.__optional_keys__) == keys, label
            assert set(mine.__required_keys__) == required, label
            checked += 1
    if package == "":
        assert checked > 60


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_typeddicts_hints_resolve(package: str) -> None:
    """`typing.get_type_hints` (what runtime validators and IDE helpers call) works on
    each TypedDict, file uploads included (`FileInput` names `os.PathLike` itself)."""
    ours = _ours(package)
    for name in sorted(_public(PACKAGES[package])):
        mine = getattr(ours, name)
        if typing.is_typeddict(mine):
            assert typing.get_type_hints(mine), (package, name)


def _typeddict_members(alias: object) -> list[typing.Any]:
    return [m for m in typing.get_args(alias) if _is_official_typeddict(m)]


def _operation_params() -> list[tuple[str, str]]:
    """(official path, call) of each params TypedDict made from a call, as the spec says."""
    spec = json.loads((Path(kernel_async.__file__).parent / "_gen" / "spec.json").read_text())
    entries = spec["components"].get("x-param-types", {})
    return sorted((key, e["operation"]) for key, e in entries.items() if set(e) == {"operation"})


OPTIONS = {"extra_headers", "extra_query", "extra_body", "timeout"}


@pytest.mark.parametrize(("key", "operation"), _operation_params())
def test_a_calls_params_typeddict_is_its_keyword_arguments(key: str, operation: str) -> None:
    """`client.<call>(*positional, **params)` takes an official params dict as it is:
    the TypedDict's keys are the call's keyword parameters, required as the call
    requires them (a call may take more keywords: `replays.start(id=)`, the seed's name)."""
    package, _, name = key.rpartition(".")
    td = getattr(_ours(package), name)
    client = AsyncKernel(api_key="k", base_url="http://127.0.0.1:9")
    target: typing.Any = client
    for part in operation.split("."):
        target = getattr(target, part)
    params = inspect.signature(target).parameters.values()
    keywords = {p.name: p for p in params if p.kind is p.KEYWORD_ONLY and p.name not in OPTIONS}
    assert set(td.__required_keys__ | td.__optional_keys__) <= set(keywords)
    assert {n for n, p in keywords.items() if p.default is p.empty} == set(td.__required_keys__)
