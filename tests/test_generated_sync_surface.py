"""The blocking twin of the generated surface (issue 18, point 6): every generated async
resource and method has its twin at the same attribute path, with the same parameters
(names, kinds, defaults), returning `Page`/`Stream` where the async one returns
`AsyncPager`/`AsyncStream`. Walked from the clients, so a new operation is covered.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from functools import cached_property
from typing import Any

import pytest

import kernel_sync
from kernel_async import AsyncKernel

KEY = "sk-test-surface-0123456789"
BASE = "http://127.0.0.1:9"  # nothing is sent: the walk only reads attributes


def walk(resource: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    """(kind, dotted path, value): each sub-resource ('resource') and public method
    ('method') below `resource`, sub-resources being the cached properties."""
    cls = type(resource)
    for name in sorted(dir(resource)):
        if name.startswith("_"):
            continue
        static = inspect.getattr_static(cls, name, None)
        where = f"{path}.{name}"
        if isinstance(static, cached_property) or (static is None and _resource(resource, name)):
            child = getattr(resource, name)
            yield "resource", where, child
            yield from walk(child, where)
        elif inspect.isfunction(static):
            yield "method", where, getattr(resource, name)


RESOURCE_MODULES = ("kernel_async._gen.", "kernel_async.resources.", "kernel_sync._ge")


def _resource(owner: Any, name: str) -> bool:
    """An instance attribute holding a resource (``client.browsers``)."""
    return type(getattr(owner, name)).__module__.startswith(RESOURCE_MODULES)


@pytest.fixture(scope="module")
def trees() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    a = AsyncKernel(api_key=KEY, base_url=BASE)
    s = kernel_sync.Kernel(api_key=KEY, base_url=BASE)
    try:
        async_tree = {p: (k, v) for k, p, v in walk(a, "client") if k == "resource" or _from_gen(v)}
        sync_tree = {p: (k, v) for k, p, v in walk(s, "client")}
        yield async_tree, sync_tree
    finally:
        s.close()


def _from_gen(method: Any) -> bool:
    """A generated method (not a hand-written one, whose twins test_sync.py checks)."""
    return bool(getattr(method, "__module__", "").startswith("kernel_async._gen."))


def test_the_walk_sees_the_whole_generated_surface(
    trees: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    async_tree, _ = trees
    methods = [p for p, (k, _) in async_tree.items() if k == "method"]
    resources = [p for p, (k, _) in async_tree.items() if k == "resource"]
    # 175 operations, less the hand-written ones that replace generated methods.
    assert len(methods) >= 160, len(methods)
    assert len(resources) >= 38, len(resources)
    assert "client.browsers.computer.click_mouse" in methods
    assert "client.browsers.fs.watch" in resources


def test_every_generated_resource_and_method_has_a_sync_twin(
    trees: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    async_tree, sync_tree = trees
    missing = [p for p in async_tree if p not in sync_tree]
    assert not missing, f"no sync twin at: {missing[:10]}"
    for path, (kind, value) in async_tree.items():
        twin_kind, twin = sync_tree[path]
        assert twin_kind == kind, path
        if kind == "method":
            assert inspect.iscoroutinefunction(value) or not inspect.iscoroutinefunction(twin)
            assert not inspect.iscoroutinefunction(twin), path


def test_every_sync_twin_has_the_same_parameters(
    trees: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    async_tree, sync_tree = trees
    compared = 0
    for path, (kind, method) in async_tree.items():
        if kind != "method":
            continue
        a_params = inspect.signature(method).parameters
        s_params = inspect.signature(sync_tree[path][1]).parameters
        assert list(a_params) == list(s_params), path
        for name, p in a_params.items():
            q = s_params[name]
            assert (p.kind, p.default) == (q.kind, q.default), f"{path}({name})"
            assert p.annotation == q.annotation, f"{path}({name})"
        compared += 1
    assert compared >= 160


def _sync_return(annotation: str) -> str:
    for a, s in (("AsyncPager[", "Page["), ("AsyncStream[", "Stream[")):
        if annotation.startswith(a):
            return s + annotation[len(a) :]
    return "BinaryContent" if annotation == "AsyncBinaryContent" else annotation


def test_pagers_and_streams_return_page_and_stream(
    trees: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    async_tree, sync_tree = trees
    kinds = {"AsyncPager[": 0, "AsyncStream[": 0}
    for path, (kind, method) in async_tree.items():
        if kind != "method":
            continue
        ret = inspect.signature(method).return_annotation
        twin_ret = inspect.signature(sync_tree[path][1]).return_annotation
        assert isinstance(ret, str) and isinstance(twin_ret, str), path
        assert twin_ret == _sync_return(ret), path
        for prefix in kinds:
            kinds[prefix] += ret.startswith(prefix)
        # A pager is returned without awaiting (lazy); a stream is awaited (it opens).
        if ret.startswith("AsyncPager["):
            assert not inspect.iscoroutinefunction(method), path
        if ret.startswith("AsyncStream["):
            assert inspect.iscoroutinefunction(method), path
    assert kinds == {"AsyncPager[": 21, "AsyncStream[": 7}


def test_the_sync_side_adds_no_method_of_its_own(
    trees: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, sync_tree = trees
    a = AsyncKernel(api_key=KEY, base_url=BASE)
    every_async = {p for _, p, _ in walk(a, "client")}
    extra = [p for p in sync_tree if p not in every_async and not p.endswith(".close")]
    assert not extra, extra
