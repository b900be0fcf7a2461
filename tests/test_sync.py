"""kernel_sync: generated parity, the loop-thread runtime (threads, loops, fork, exit, Ctrl-C)."""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import inspect
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import kernel_async
import kernel_sync
from kernel_async import AsyncKernel, RetryEvent, RetryPolicy
from kernel_async.resources import AsyncBrowserPager, AsyncBrowsers, AsyncRecording, AsyncReplays
from kernel_async.testing import FakeKernel
from kernel_sync import Kernel, KernelBlockingWarning
from kernel_sync._runner import blocking_site
from tests.interrupt import ctrl_c_after

ROOT = Path(__file__).resolve().parent.parent
PAIRS = [
    (AsyncKernel, kernel_sync.Kernel),
    (AsyncBrowsers, kernel_sync.Browsers),
    (AsyncReplays, kernel_sync.Replays),
    (AsyncBrowserPager, kernel_sync.BrowserPager),
    (AsyncRecording, kernel_sync.Recording),
]


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_sync", ROOT / "tools" / "gen_sync.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()


def sync_text(text: str) -> str:
    """An async annotation as the generator writes it for the sync twin."""
    twins = {**GEN.CLASSES, **GEN.RESULTS}
    for name in sorted(twins, key=len, reverse=True):
        text = text.replace(name, twins[name])
    return text


@pytest.fixture
def fake() -> Iterator[FakeKernel]:
    with FakeKernel.in_thread(finalise_seconds=0.05) as server:
        yield server


def loop_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "kernel-sync-loop")


# -- generated API parity --------------------------------------------------------------


@pytest.mark.parametrize(("async_cls", "sync_cls"), PAIRS)
def test_every_public_method_has_a_sync_twin(async_cls: type, sync_cls: type) -> None:
    for name, member in inspect.getmembers(async_cls):
        if name.startswith("_") or name == "close":
            continue
        if isinstance(inspect.getattr_static(async_cls, name), property):
            assert isinstance(inspect.getattr_static(sync_cls, name), property), name
            continue
        if not callable(member):
            continue
        twin = getattr(sync_cls, name, None)
        assert twin is not None, f"{sync_cls.__name__}.{name} is missing: regenerate"
        assert not inspect.iscoroutinefunction(twin)
        a_sig, s_sig = inspect.signature(member), inspect.signature(twin)
        assert list(a_sig.parameters) == list(s_sig.parameters), name
        for p in a_sig.parameters.values():
            q = s_sig.parameters[p.name]
            assert (p.kind, p.default) == (q.kind, q.default), (name, p.name)
            assert sync_text(str(p.annotation)) == str(q.annotation)
        ret = sync_text(str(a_sig.return_annotation))
        if inspect.isasyncgenfunction(member):  # iterated on the loop thread
            ret = ret.replace("AsyncIterator[", "Iterator[", 1)
            assert inspect.isgeneratorfunction(twin), name
        assert ret == str(s_sig.return_annotation)
        assert GEN._sync_doc(inspect.getdoc(member)) == inspect.getdoc(twin), name


def test_constructor_parity() -> None:
    a = inspect.signature(AsyncKernel.__init__).parameters
    s = inspect.signature(Kernel.__init__).parameters
    assert [n for n in a if n != "session"] == list(s)
    for name, p in s.items():
        assert (p.kind, p.default, p.annotation) == (
            a[name].kind,
            a[name].default,
            a[name].annotation,
        )


def test_generated_file_is_fresh() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_sync.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout
    assert (ROOT / "kernel_sync" / "_generated.py").read_text().startswith("# GENERATED")


def test_same_error_and_model_classes() -> None:
    for name in kernel_async.__all__:
        if name.startswith("Async"):  # the async classes have sync twins instead
            continue
        assert getattr(kernel_sync, name) is getattr(kernel_async, name), name


# -- behaviour -------------------------------------------------------------------------


def test_construction_starts_nothing_and_close_returns_threads(fake: FakeKernel) -> None:
    before = loop_threads()
    k = Kernel(api_key=fake.api_key, base_url=fake.base_url)
    assert loop_threads() == before
    k.browsers.replays.list(fake.create_browser())
    assert loop_threads() == before + 1
    k.close()
    k.close()  # idempotent
    assert loop_threads() == before
    with pytest.raises(kernel_sync.KernelError, match="closed"):
        k.browsers.replays.list("b")


def test_two_clients_share_one_loop_thread(fake: FakeKernel) -> None:
    b = fake.create_browser()
    with Kernel(api_key=fake.api_key, base_url=fake.base_url) as k1:
        with Kernel(api_key=fake.api_key, base_url=fake.base_url) as k2:
            k1.browsers.replays.list(b)
            k2.browsers.replays.list(b)
            assert loop_threads() == 1
        k1.browsers.replays.list(b)  # k2 closing did not stop the shared loop
    assert loop_threads() == 0


def test_lifecycle_and_errors_do_not_break_the_loop_thread(
    fake: FakeKernel, tmp_path: Path
) -> None:
    b = fake.create_browser()
    with Kernel(api_key=fake.api_key, base_url=fake.base_url) as k:
        r = k.browsers.replays.start(b)
        with pytest.raises(kernel_sync.NotFoundError):
            k.browsers.replays.stop("nope", id=b)
        k.browsers.replays.stop(r.replay_id, id=b)
        assert k.browsers.replays.list(b)[0].finished_at is not None
        assert k.browsers.replays.download(r.replay_id, id=b) == fake.video
        out = k.browsers.replays.download_to(tmp_path / "v.mp4", r.replay_id, id=b)
        assert out.read_bytes() == fake.video
        fast = k.with_options(max_retries=0)
        assert isinstance(fast, Kernel) and fast.max_retries == 0
        fake.fail("stop", status=503)
        with pytest.raises(kernel_sync.InternalServerError):
            fast.browsers.replays.stop(r.replay_id, id=b)
        fast.close()  # a copy does not close the pool
        k.browsers.replays.stop(r.replay_id, id=b)
        assert "api_key=<redacted>" in repr(k) and repr(k).startswith("Kernel(")


def test_many_threads_one_client(fake: FakeKernel) -> None:
    b = fake.create_browser()
    with Kernel(api_key=fake.api_key, base_url=fake.base_url) as k:
        r = k.browsers.replays.start(b)

        def work(_: int) -> int:
            for _ in range(25):
                k.browsers.replays.stop(r.replay_id, id=b)
            return 25

        with ThreadPoolExecutor(8) as pool:
            assert sum(pool.map(work, range(8))) == 200
    assert fake.count("stop") == 200


def test_works_inside_a_running_event_loop_and_warns_once_in_a_coroutine(
    fake: FakeKernel,
) -> None:
    b = fake.create_browser()

    def helper(k: Kernel) -> int:  # a plain function called by the coroutine: still inside
        return len(k.browsers.replays.list(b))

    async def agent() -> int:
        with Kernel(api_key=fake.api_key, base_url=fake.base_url) as k:
            n = len(k.browsers.replays.list(b))
            n += helper(k.with_options(max_retries=0))  # a copy shares the warned flag
            for _ in k.browsers.list():
                n += 1
            return n

    with pytest.warns(KernelBlockingWarning) as caught:
        assert asyncio.run(agent()) == 1
    assert len(caught) == 1, [str(w.message) for w in caught]
    warning = caught[0]
    assert issubclass(KernelBlockingWarning, UserWarning)
    assert "kernel_async.AsyncKernel" in str(warning.message)
    assert warning.filename == __file__, warning.filename  # points at the caller's line
    # A new client warns again (once per client).
    with pytest.warns(KernelBlockingWarning):
        assert asyncio.run(agent()) == 1


# A notebook cell is top-level code that the notebook's own coroutine runs with exec on
# a running loop (IPython's `run_code` does `exec(code_obj, ...)` inside a task).
CELL = """
def count():
    return len(k.browsers.replays.list(b))
result = count() + len(k.browsers.replays.list(b))
"""


def test_a_notebook_cell_using_the_sync_client_does_not_warn(fake: FakeKernel) -> None:
    b = fake.create_browser()
    namespace: dict[str, Any] = {"b": b}

    async def run_cell(source: str) -> None:
        assert asyncio.current_task() is not None  # as in Jupyter: inside a task
        exec(compile(source, "<cell>", "exec"), namespace)

    with Kernel(api_key=fake.api_key, base_url=fake.base_url) as k:
        namespace["k"] = k
        asyncio.run(run_cell(CELL))  # filterwarnings=error: any warning fails the test
    assert namespace["result"] == 0


def test_a_notebook_cell_that_awaits_is_a_coroutine_and_warns(fake: FakeKernel) -> None:
    b = fake.create_browser()
    namespace: dict[str, Any] = {"b": b, "asyncio": asyncio}
    source = "await asyncio.sleep(0)\nresult = len(k.browsers.replays.list(b))\n"
    code = compile(source, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)

    async def run_cell() -> None:
        await eval(code, namespace)  # what IPython does with such a cell

    with Kernel(api_key=fake.api_key, base_url=fake.base_url) as k:
        namespace["k"] = k
        with pytest.warns(KernelBlockingWarning):
            asyncio.run(run_cell())
    assert namespace["result"] == 0


def test_the_sync_client_in_a_worker_thread_of_a_coroutine_does_not_warn(
    fake: FakeKernel,
) -> None:
    b = fake.create_browser()

    async def agent(k: Kernel) -> int:
        return len(await asyncio.to_thread(k.browsers.replays.list, b))

    with Kernel(api_key=fake.api_key, base_url=fake.base_url) as k:
        assert asyncio.run(agent(k)) == 0


def test_blocking_site_rule() -> None:
    # The pure rule, on real frames: inside a coroutine or not, and where the caller is.
    def here() -> tuple[int, bool]:
        return blocking_site(sys._getframe(1))

    def plain() -> tuple[int, bool]:
        return here()

    async def coroutine() -> tuple[int, bool]:
        return plain()

    async def async_gen() -> AsyncIterator[tuple[int, bool]]:
        yield here()

    async def first(gen: AsyncIterator[tuple[int, bool]]) -> tuple[int, bool]:
        return await gen.__anext__()

    assert here() == (1, False)  # pytest's stack has no coroutine
    assert asyncio.run(coroutine()) == (1, True)
    assert asyncio.run(first(async_gen())) == (1, True)
    namespace: dict[str, Any] = {"here": here}

    async def run_cell() -> None:
        exec("result = here()", namespace)  # top-level code comes first: not inside

    asyncio.run(run_cell())
    assert namespace["result"] == (1, False)
    # kernel_sync's own frames are skipped: the level counts them.
    sdk: dict[str, Any] = {"__name__": "kernel_sync._generated"}
    exec("def method(f):\n    return f()\n", sdk)
    assert sdk["method"](lambda: blocking_site(sys._getframe(1))) == (2, False)


def test_reentry_from_loop_thread_is_a_clear_error(fake: FakeKernel) -> None:
    b = fake.create_browser()
    seen: list[BaseException] = []

    with Kernel(api_key=fake.api_key, base_url=fake.base_url) as k:

        def hook(event: RetryEvent) -> None:
            try:
                k.browsers.replays.list(b)
            except BaseException as exc:
                seen.append(exc)

        k2 = k.with_options(retry=RetryPolicy(on_retry=hook))
        fake.fail("list", status=503)
        k2.browsers.replays.list(b)
    assert isinstance(seen[0], kernel_sync.KernelError)
    assert "kernel_async.AsyncKernel" in str(seen[0])


def _run(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNEL_")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_fork_child_gets_fresh_loop(fake: FakeKernel) -> None:
    b = fake.create_browser()
    out = _run(
        f"""
        import os, sys
        from kernel_sync import Kernel
        k = Kernel(api_key={fake.api_key!r}, base_url={fake.base_url!r})
        k.browsers.replays.list({b!r})
        pid = os.fork()
        if pid == 0:
            try:
                k.browsers.replays.list({b!r})
                k.close()
                os._exit(0)
            except BaseException as exc:
                print("child failed", repr(exc), file=sys.stderr)
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        k.browsers.replays.list({b!r})
        k.close()
        print("child", os.waitstatus_to_exitcode(status))
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "child 0", out.stderr
    assert "Unclosed" not in out.stderr
    assert fake.count("list") == 3  # parent, child, parent


def test_exit_without_close_neither_hangs_nor_warns(fake: FakeKernel) -> None:
    b = fake.create_browser()
    t0 = time.monotonic()
    out = _run(
        f"""
        import warnings
        warnings.simplefilter("default")
        from kernel_sync import Kernel
        k = Kernel(api_key={fake.api_key!r}, base_url={fake.base_url!r})
        k.browsers.replays.list({b!r})
        k2 = Kernel(api_key={fake.api_key!r}, base_url={fake.base_url!r})
        k2.browsers.replays.list({b!r})
        print("done")
        """,
        timeout=30,
    )
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr
    assert "Unclosed" not in out.stderr and "Error" not in out.stderr, out.stderr
    assert time.monotonic() - t0 < 20


def test_ctrl_c_cancels_the_call_promptly(fake: FakeKernel) -> None:
    b = fake.create_browser()
    fake.fail("list", status=None, delay=30)
    code = f"""
import time
from kernel_sync import Kernel
k = Kernel(api_key={fake.api_key!r}, base_url={fake.base_url!r})
print("calling", flush=True)
t0 = time.monotonic()
try:
    k.browsers.replays.list({b!r})
except KeyboardInterrupt:
    print("interrupted after %.2f" % (time.monotonic() - t0), flush=True)
k.browsers.replays.list({b!r})  # the loop thread still works
k.close()
print("ok", flush=True)
"""
    status, out, err = ctrl_c_after(code, "calling", until=lambda: fake.count("list") > 0)
    assert status == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("interrupted after"), (out, err)
    assert float(lines[0].split()[-1]) < 10
    assert lines[-1] == "ok"


def test_browser_pages_walk_as_the_official_sync_pages_do(fake: FakeKernel) -> None:
    ids = [fake.create_browser() for _ in range(7)]
    with Kernel(api_key=fake.api_key, base_url=fake.base_url) as k:
        before = len(fake.requests)
        page = k.browsers.list(limit=3)
        seen = [b.session_id for b in page.items]
        while page.has_next_page():
            page = page.get_next_page()
            seen += [b.session_id for b in page.items]
        assert seen == ids
        assert [r.raw_path for r in fake.requests[before:]] == [
            "/browsers?limit=3",
            "/browsers?limit=3&offset=3",
            "/browsers?limit=3&offset=6",
        ]
        with pytest.raises(RuntimeError, match="has_next_page"):
            page.get_next_page()


def test_the_generator_tells_generators_and_aliases_apart() -> None:
    import ast

    def method(src: str) -> ast.AsyncFunctionDef:
        node = ast.parse(src).body[0]
        assert isinstance(node, ast.AsyncFunctionDef)
        return node

    assert GEN._is_generator(method("async def f(self):\n    yield 1"))
    nested = "async def f(self):\n    def gen():\n        yield 1\n    return list(gen())"
    assert not GEN._is_generator(method(nested))  # a yield in a nested helper is its own
    body = ast.parse("class C:\n    LIMIT = DEFAULT\n    copy = with_options").body[0]
    assert isinstance(body, ast.ClassDef)
    constant, alias = body.body
    assert not GEN._is_method_alias(constant, {"with_options"})
    assert GEN._is_method_alias(alias, {"with_options"})
