#!/usr/bin/env python3
"""Generate kernel_sync/_generated.py from the async source (AST-based).

Why AST and not introspection: the output keeps the exact source text of every
annotation and default (e.g. ``NOT_GIVEN``, ``builtins.list[Replay]``), so IDEs and
``mypy --strict`` see the same API the async classes declare, and nothing is imported
to generate.

Rules, per class in CLASSES (async name -> sync name):
- ``async def m(...)``  -> ``def m(...)`` that runs the coroutine on the runtime's loop thread.
- plain public ``def m(...)`` -> delegates; a method returning the async client wraps
  the result in the sync client (``with_options``).
- ``@property`` -> delegates.
- a plain method returning another mapped class (``list() -> AsyncBrowserPager``) wraps
  the result in that class's twin.
- ``__aiter__`` -> ``__iter__`` (``async for`` on the loop thread, see kernel_sync/_bridge.py);
  a ``__repr__`` -> the async one's, naming the sync class;
  ``__aenter__``/``__aexit__`` -> ``__enter__``/``__exit__`` (waited for to the end,
  Ctrl-C included; an entry interrupted just as it took effect is exited at once; the
  exit also runs on a closed client); ``__await__`` -> the twin's constructor awaits the object (the
  blocking ``await``), so ``client.browsers.list()`` is the fetched first page.
- class-level annotations of another mapped class (``replays: AsyncReplays``) become
  sync sub-objects built in ``__init__``.
- The root client's ``__init__`` takes the async one's parameters minus SKIP_PARAMS.

Usage: ``python tools/gen_sync.py`` writes; ``--check`` exits 1 with a diff if stale.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from gen_api import _format, _ruff, same_code  # noqa: E402  (one formatting step for every generator)

TARGET = ROOT / "kernel_sync" / "_generated.py"
SOURCES = {
    "AsyncKernel": ROOT / "kernel_async" / "_client.py",
    "AsyncBrowsers": ROOT / "kernel_async" / "resources" / "browsers.py",
    "AsyncReplays": ROOT / "kernel_async" / "resources" / "replays.py",
    "AsyncBrowserPager": ROOT / "kernel_async" / "resources" / "browsers.py",
    "AsyncRecording": ROOT / "kernel_async" / "resources" / "recording.py",
}
# Generated in dependency order: sub-resources first.
CLASSES = {
    "AsyncReplays": "Replays",
    "AsyncBrowserPager": "BrowserPager",
    "AsyncRecording": "Recording",
    "AsyncBrowsers": "Browsers",
    "AsyncKernel": "Kernel",
}
ROOT_CLASS = "AsyncKernel"


def _model_homes() -> dict[str, str]:
    """Generated model name -> its module under kernel_async/_gen/models (from the index)."""
    import re

    index = ROOT / "kernel_async" / "_gen" / "models" / "__init__.py"
    if not index.exists():
        return {}
    found = re.findall(r'^    "([A-Za-z0-9_]+)": "([A-Za-z0-9_]+)",$', index.read_text(), re.M)
    return dict(found)


_MODEL_HOMES = _model_homes()
# Twins that extend the blocking twins of generated classes (tools/gen_sync_api.py).
BASES = {
    "Replays": ("._gen.browsers_replays", "BrowsersReplaysBase"),
    "Browsers": ("._gen.browsers", "BrowsersBase"),
    "Kernel": ("._gen._root", "Resources"),
}
SKIP_PARAMS = frozenset({"session"})  # the sync client owns its session on its loop thread
SKIP_METHODS = {"close"}  # lifecycle: written by the template below

# Where names used in signatures come from.
IMPORTS = {
    "Any": "typing",
    "Literal": "typing",
    "Sequence": "collections.abc",
    "Callable": "collections.abc",
    "Iterator": "collections.abc",
    "Mapping": "collections.abc",
    "Path": "pathlib",
    "TracebackType": "types",
    "NoReturn": "typing",
    "TYPE_CHECKING": "typing",
    "PageInfo": "kernel_async._pagination",
    "os": None,
    "builtins": None,
    "ClosedFlag": "kernel_async._client",
    "BinaryContent": "kernel_async._gen_support",
    "blocking": "kernel_async._gen_support",
    "OfficialOnly": "kernel_async._gen_support",
}
KERNEL_ASYNC_NAMES = {
    "NOT_GIVEN",
    "NotGiven",
    "Browser",
    "BrowserPage",
    "BrowserStatus",
    "Region",
    "Replay",
    "RetryPolicy",
    "Timeout",
    "Viewport",
    "AsyncKernel",
}
RESOURCE_NAMES = {"AsyncBrowserPager", "AsyncBrowsers", "AsyncRecording", "AsyncReplays"}
BUILTIN_NAMES = {"int", "str", "float", "bool", "bytes", "object", "BaseException", "type", "tuple"}
BRIDGE_NAMES = {"await_", "enter", "iterate", "leave"}
# Async-only wording in docstrings, and what the sync twin says instead.
SYNC_WORDING = (
    ("``await`` the result for the first page, or", "The result is the first page, fetched now;"),
    ("``await pager`` gives the first page (a `BrowserPage`);", "It holds the first page;"),
    ("(``async with`` / ``with``)", "(``with``)"),
    ("\n(``await`` it for that page).", ",\nits first page fetched now."),
    ("``async with", "``with"),
    ("``async for", "``for"),
)

HEADER = '''\
# GENERATED by tools/gen_sync.py from:
{sources}
# DO NOT EDIT: change the async source or the generator, then run
# `python tools/gen_sync.py` (CI runs `python tools/gen_sync.py --check`).
"""Blocking twins of the kernel_async classes, run on kernel_sync's loop thread."""

from __future__ import annotations

'''


# Async result types whose blocking twin is another class of the same layout.
RESULTS = {"AsyncBinaryContent": "BinaryContent"}


class _Rename(ast.NodeTransformer):
    def visit_Name(self, node: ast.Name) -> ast.Name:
        twin = CLASSES.get(node.id) or RESULTS.get(node.id)
        if twin is not None:
            return ast.copy_location(ast.Name(twin, node.ctx), node)
        return node


def _text(node: ast.expr | None, used: set[str]) -> str:
    assert node is not None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return json.dumps(node.value)  # double quotes, as ruff writes them
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            used.add(CLASSES.get(sub.id) or RESULTS.get(sub.id, sub.id))
    return ast.unparse(_Rename().visit(ast.parse(ast.unparse(node), mode="eval")).body)


def _doc(text: str | None, indent: str) -> list[str]:
    if not text:
        return []
    if "\\" in text or '"""' in text:
        raise SystemExit("gen_sync: docstrings with backslashes or triple quotes are not supported")
    lines = text.split("\n")
    if len(lines) == 1:
        return [f'{indent}"""{text}"""']
    return [
        f'{indent}"""{lines[0]}',
        *[indent + line if line else "" for line in lines[1:]],
        f'{indent}"""',
    ]


def _wrap(head: str, items: list[str], tail: str, indent: str) -> list[str]:
    """One line if it fits in 100 columns, else one item per line (ruff's layout)."""
    one = f"{indent}{head}{', '.join(items)}{tail}"
    if len(one) <= 100 or not items:
        return [one]
    return [f"{indent}{head}", *[f"{indent}    {item}," for item in items], f"{indent}{tail}"]


def _signature(
    fn: ast.FunctionDef | ast.AsyncFunctionDef, used: set[str], skip: frozenset[str] = frozenset()
) -> tuple[list[str], list[str]]:
    """The parameters' texts and the forwarding call's argument texts."""
    a = fn.args
    params: list[str] = []
    forward: list[str] = []

    def one(arg: ast.arg, default: ast.expr | None) -> str:
        out = arg.arg
        if arg.annotation is not None:
            out += ": " + _text(arg.annotation, used)
        if default is not None:
            out += " = " + _text(default, used)
        return out

    positional = a.posonlyargs + a.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults)) + list(
        a.defaults
    )
    for i, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        params.append(one(arg, default))
        if i == 0:
            continue  # self
        forward.append(arg.arg)
        if a.posonlyargs and arg is a.posonlyargs[-1]:
            params.append("/")
    if a.vararg or a.kwarg:
        raise SystemExit(f"gen_sync: *args/**kwargs are not supported ({fn.name})")
    if a.kwonlyargs:
        params.append("*")
    for arg, kw_default in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        if arg.arg in skip:
            continue
        params.append(one(arg, kw_default))
        forward.append(f"{arg.arg}={arg.arg}")
    return params, forward


def _class(name: str) -> ast.ClassDef:
    tree = ast.parse(SOURCES[name].read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise SystemExit(f"gen_sync: class {name} not found in {SOURCES[name]}")


def _is_property(fn: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list)


def _sync_doc(text: str | None) -> str | None:
    if text is None:
        return None
    kept: list[str] = []
    skipping = False
    for line in text.split("\n"):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if any(stripped.startswith(f"{p}:") for p in SKIP_PARAMS):
            skipping, arg_indent = True, indent
            continue
        if skipping and stripped and indent > arg_indent:
            continue
        skipping = False
        kept.append(line)
    text = "\n".join(kept)
    for async_words, sync_words in SYNC_WORDING:
        text = text.replace(async_words, sync_words)
    for async_name in sorted(CLASSES, key=len, reverse=True):
        if async_name != ROOT_CLASS:
            text = text.replace(f"`{async_name}", f"`{CLASSES[async_name]}")
    return (
        text.replace("async with AsyncKernel()", "with Kernel()")
        .replace("AsyncKernel", "Kernel")
        .replace("Async client", "Blocking client")
        .replace("from many tasks", "from many threads")
    )


def _gen_class(async_name: str, used: set[str]) -> list[str]:
    cls = _class(async_name)
    sync_name = CLASSES[async_name]
    is_root = async_name == ROOT_CLASS
    base = BASES.get(sync_name)
    if base is not None:
        used.add(base[1])
    out = [f"class {sync_name}({base[1]}):" if base else f"class {sync_name}:"]
    out += _doc(_sync_doc(ast.get_docstring(cls)), "    ")
    out.append("")
    if base is not None and not is_root:
        out += [f"    _async: {async_name}", ""]  # narrower than the generated base's
    subs: list[tuple[str, str]] = []
    for node in cls.body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(node.annotation, ast.Name)
            and node.annotation.id in CLASSES
        ):
            subs.append((node.target.id, CLASSES[node.annotation.id]))
            out.append(f"    {node.target.id}: {CLASSES[node.annotation.id]}")
    if subs:
        out.append("")
    hints = [  # `if not TYPE_CHECKING:` blocks of `name = OfficialOnly(...)`: kept as they are
        f"        {ast.unparse(stmt)}"
        for node in cls.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "not TYPE_CHECKING"
        for stmt in node.body
        if isinstance(stmt, ast.Assign) and ast.unparse(stmt.value).startswith("OfficialOnly(")
    ]
    if hints:
        used.update({"TYPE_CHECKING", "OfficialOnly"})
        out += ["    if not TYPE_CHECKING:  # official-only: reading one says what to use", *hints]
        out.append("")

    sub_lines = [f"        self.{n} = {t}(self._async.{n}, self._runner)" for n, t in subs]
    if is_root:
        init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
        params, forward = _signature(init, used, SKIP_PARAMS)
        used.update({"Runner", "check_blocking_client", "NoReturn", "TYPE_CHECKING"})
        out += [
            *_wrap("def __init__(", params, ") -> None:", "    "),
            *_wrap(f"self._async = {async_name}(", forward, ")", "        "),
            "        check_blocking_client(self._async.base_url)  # refuse a sure deadlock",
            "        self._runner = Runner(self._async)",
            "        self._derived = False",
            *sub_lines,
            "",
            "    @classmethod",
            f"    def _wrap(cls, client: {async_name}, runner: Runner) -> {sync_name}:",
            "        self = object.__new__(cls)  # a with_options() copy: shares the runner",
            "        self._async = client",
            "        self._runner = runner",
            "        self._derived = True",
            *sub_lines,
            "        return self",
            "",
            "    def close(self) -> None:",
            '        """Close the connection pool and release the event-loop thread (unless this',
            '        client came from `with_options()`). Idempotent."""',
            "        if not self._derived:",
            "            self._runner.close()",
            "",
            f"    def __enter__(self) -> {sync_name}:",
            "        return self",
            "",
            "    def __exit__(self, *exc_info: object) -> None:",
            "        self.close()",
            "",
            "    if not TYPE_CHECKING:  # at run time only: type checkers still flag `async with`",
            "",
            "        async def __aenter__(self) -> NoReturn:",
            "            raise TypeError(",
            f'                "{sync_name} is the blocking client: use `with {sync_name}() as "',
            '                "client:`; in async code use kernel_async.AsyncKernel with "',
            '                "`async with`"',
            "            )",
            "",
            "        async def __aexit__(self, *exc_info: object) -> None:",
            '            """Never reached: `__aenter__` refuses."""',
            "",
            "    def __repr__(self) -> str:",
            f'        return repr(self._async).replace("{async_name}", "{sync_name}", 1)',
            "",
        ]
        used.add(async_name)
    else:
        awaitable = any(isinstance(n, ast.FunctionDef) and n.name == "__await__" for n in cls.body)
        out += [
            f"    def __init__(self, async_: {async_name}, runner: Runner) -> None:",
            "        self._async = async_",
            "        self._runner = runner",
            *sub_lines,
            *(["        runner.call(await_, async_)  # the blocking `await`"] if awaitable else []),
            "",
        ]
        used.update({async_name, "Runner"})
        if awaitable:
            used.add("await_")
        out += _protocols(cls, sync_name, used)  # the root's lifecycle is the template's

    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    for node in cls.body:
        if _is_method_alias(node, methods):  # `copy = with_options`: the same on the twin
            assert isinstance(node, ast.Assign)
            out += [f"    {ast.unparse(node)}", ""]
            continue
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if node.name.startswith("_") or node.name in SKIP_METHODS:
            continue
        params, forward = _signature(node, used)
        if isinstance(node, ast.AsyncFunctionDef) and _is_generator(node):
            assert isinstance(node.returns, ast.Subscript), node.name  # AsyncIterator[...]
            returns = f"Iterator[{_text(node.returns.slice, used)}]"
            used.update({"Iterator", "iterate"})
        else:
            returns = _text(node.returns, used) if node.returns is not None else "None"
        doc = _doc(_sync_doc(ast.get_docstring(node)), "        ")
        sig = _wrap(f"def {node.name}(", params, f") -> {returns}:", "    ")
        if isinstance(node, ast.FunctionDef) and _is_property(node):
            out += ["    @property", *sig, *doc, f"        return self._async.{node.name}", ""]
            continue
        out += [*sig, *doc]
        if isinstance(node, ast.AsyncFunctionDef) and _is_generator(node):
            out += _sync_generator(node, forward)
        elif isinstance(node, ast.AsyncFunctionDef) and returns in RESULTS.values():
            used.add("blocking")  # the same object, with the blocking methods
            call = ["self._async." + node.name, *forward]
            out += _wrap("return blocking(self._runner.call(", call, "))", "        ")
        elif isinstance(node, ast.AsyncFunctionDef):
            out += _wrap(
                "return self._runner.call(", [f"self._async.{node.name}", *forward], ")", "        "
            )
        elif isinstance(node.returns, ast.Name) and node.returns.id == ROOT_CLASS:
            out += _wrap(f"inner = self._async.{node.name}(", forward, ")", "        ")
            out.append(f"        return {CLASSES[ROOT_CLASS]}._wrap(inner, self._runner)")
        elif isinstance(node.returns, ast.Name) and node.returns.id in CLASSES:
            out += _wrap(f"inner = self._async.{node.name}(", forward, ")", "        ")
            out.append(f"        return {CLASSES[node.returns.id]}(inner, self._runner)")
        else:
            out += _wrap(f"return self._async.{node.name}(", forward, ")", "        ")
        out.append("")
    return out


def _is_method_alias(node: ast.stmt, methods: set[str]) -> bool:
    """``name = other`` in a class body, `other` one of the class's `methods`: a public
    second name for a method."""
    return (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Name)
        and node.value.id in methods
        and not node.targets[0].id.startswith("_")
    )


def _is_generator(fn: ast.AsyncFunctionDef) -> bool:
    """An async generator method: its own body yields (not a function nested in it)."""
    todo: list[ast.AST] = list(fn.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Yield | ast.YieldFrom):
            return True
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            todo.extend(ast.iter_child_nodes(node))
    return False


def _sync_generator(fn: ast.AsyncFunctionDef, forward: list[str]) -> list[str]:
    """An async generator method's twin: ``async for`` on the loop thread, each item of a
    mapped class handed over as its twin."""
    returns = fn.returns
    if not (isinstance(returns, ast.Subscript) and ast.unparse(returns.value) == "AsyncIterator"):
        raise SystemExit(f"gen_sync: {fn.name} yields: it must return AsyncIterator[...]")
    item = returns.slice
    twin = CLASSES.get(item.id) if isinstance(item, ast.Name) else None
    source = " ".join(part.strip() for part in _wrap(f"self._async.{fn.name}(", forward, ")", ""))
    value = f"{twin}(inner, self._runner)" if twin else "inner"
    return [f"        for inner in iterate(self._runner, {source}):", f"            yield {value}"]


def _protocols(cls: ast.ClassDef, sync_name: str, used: set[str]) -> list[str]:
    """The blocking twins of ``__aiter__``, ``__aenter__`` and ``__aexit__``."""
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef)
    methods = {n.name: n for n in cls.body if isinstance(n, kinds)}
    out: list[str] = []
    aiter = methods.get("__aiter__")
    if aiter is not None:
        returns = aiter.returns
        is_iterator = isinstance(returns, ast.Subscript) and ast.unparse(returns.value) == (
            "AsyncIterator"
        )
        if not is_iterator:
            raise SystemExit(f"gen_sync: {cls.name}.__aiter__ must return AsyncIterator[...]")
        assert isinstance(returns, ast.Subscript)
        item = _text(returns.slice, used)
        used.update({"Iterator", "iterate"})
        out += [
            f"    def __iter__(self) -> Iterator[{item}]:",
            "        return iterate(self._runner, self._async)",
            "",
        ]
    enter = methods.get("__aenter__")
    if enter is not None:
        returns = enter.returns
        if not (isinstance(returns, ast.Name) and returns.id == cls.name):
            raise SystemExit(f"gen_sync: {cls.name}.__aenter__ must return {cls.name}")
        exit_params, exit_forward = _signature(methods["__aexit__"], used)
        used.update({"enter", "leave"})
        out += [
            f"    def __enter__(self) -> {sync_name}:",
            "        return enter(self._runner, self._async, self)",
            "",
            *_wrap("def __exit__(", exit_params, ") -> None:", "    "),
            *_wrap(
                "leave(",
                ["self._runner", "self._async.__aexit__", *exit_forward],
                ")",
                "        ",
            ),
            "",
        ]
    if "__repr__" in methods:  # the async one's, naming the sync class
        out += [
            "    def __repr__(self) -> str:",
            f'        return repr(self._async).replace("{cls.name}", "{sync_name}", 1)',
            "",
        ]
    return out


def generate() -> str:
    used: set[str] = set()
    body: list[str] = []
    for async_name in CLASSES:
        body += _gen_class(async_name, used)
        body.append("")
    imports: dict[str, set[str]] = {}
    lazy: dict[str, set[str]] = {}
    plain: set[str] = set()
    for name in sorted(used):
        if name in CLASSES.values() or name in {"None", "self", "property"}:
            continue
        if name in BUILTIN_NAMES:
            continue
        if name == "Runner":
            imports.setdefault("._runner", set()).add(name)
        elif name in {b[1] for b in BASES.values()}:
            home = next(m for m, n in BASES.values() if n == name)
            imports.setdefault(home, set()).add(name)
        elif name in BRIDGE_NAMES:
            imports.setdefault("._bridge", set()).add(name)
        elif name in KERNEL_ASYNC_NAMES:
            imports.setdefault("kernel_async", set()).add(name)
        elif name in RESOURCE_NAMES:
            imports.setdefault("kernel_async.resources", set()).add(name)
        elif name == "check_blocking_client":
            imports.setdefault("kernel_async._hosted", set()).add(name)
        elif name in _MODEL_HOMES:  # a generated model: for type checkers only
            lazy.setdefault(f"kernel_async._gen.models.{_MODEL_HOMES[name]}", set()).add(name)
        elif name in IMPORTS:
            module = IMPORTS[name]
            if module is None:
                plain.add(name)
            else:
                imports.setdefault(module, set()).add(name)
        else:
            raise SystemExit(f"gen_sync: do not know where {name!r} comes from; add it to IMPORTS")

    def member_key(n: str) -> tuple[int, str]:  # isort's order-by-type
        return (0 if n.isupper() else 1 if n[:1].isupper() else 2, n)

    def line(m: str, names: set[str]) -> str:
        members = sorted(names, key=member_key)
        one = f"from {m} import {', '.join(members)}"
        if len(one) <= 100:
            return one
        return "\n".join([f"from {m} import (", *[f"    {n}," for n in members], ")"])

    stdlib = [f"import {m}" for m in sorted(plain)]
    stdlib += [line(m, n) for m, n in sorted(imports.items()) if m in IMPORTS.values()]
    first = [line(m, n) for m, n in sorted(imports.items()) if m.startswith("kernel_async")]
    local = [line(m, n) for m, n in sorted(imports.items()) if m.startswith(".")]
    if lazy:
        imports.setdefault("typing", set()).add("TYPE_CHECKING")
        stdlib = [f"import {m}" for m in sorted(plain)]
        stdlib += [line(m, n) for m, n in sorted(imports.items()) if m in IMPORTS.values()]
    groups = "\n\n".join("\n".join(g) for g in (stdlib, first, local) if g)
    if lazy:
        checking = [line(m, n) for m, n in sorted(lazy.items())]
        groups += "\n\nif TYPE_CHECKING:\n" + "\n".join(
            "    " + row for text in checking for row in text.split("\n")
        )
    files = dict.fromkeys(SOURCES.values())  # in order, each once
    sources = "\n".join(f"#   {p.relative_to(ROOT)}" for p in files)
    text = HEADER.format(sources=sources)
    text += groups + "\n\n\n"
    text += "\n".join(body).rstrip() + "\n"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    new = _format(generate(), TARGET)
    if args.check:
        old = TARGET.read_text() if TARGET.exists() else ""
        if not same_code(TARGET, new, old):
            diff = difflib.unified_diff(
                old.splitlines(True), new.splitlines(True), str(TARGET), "generated"
            )
            sys.stdout.writelines(diff)
            print(f"\n{TARGET.relative_to(ROOT)} is stale: run `python tools/gen_sync.py`")
            return 1
        print(f"{TARGET.relative_to(ROOT)} is up to date")
        return 0
    if _ruff() is None:
        print("gen_sync: writing needs ruff (pip install ruff==0.17.6)", file=sys.stderr)
        return 1
    TARGET.write_text(new)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
