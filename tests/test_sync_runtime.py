"""The sync runtime's hard edges: closing from the loop thread itself, closing under
in-flight calls, fork while a lock is held, Ctrl-C during a download."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from kernel_async import APIConnectionError
from kernel_async.testing import FakeKernel
from kernel_sync import Kernel
from tests.interrupt import ctrl_c_after, run_script


def loop_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "kernel-sync-loop")


def test_close_from_inside_an_on_retry_hook(threaded_fake: FakeKernel) -> None:
    # The hook runs on the loop thread: closing there must close the session, end the
    # thread and print nothing (-W default shows every ResourceWarning).
    b = threaded_fake.create_browser()
    threaded_fake.fail("list", status=503)
    out = run_script(
        f"""
        import threading
        from kernel_sync import Kernel, RetryPolicy, KernelError
        box = {{}}
        k = Kernel(api_key={threaded_fake.api_key!r}, base_url={threaded_fake.base_url!r},
                   retry=RetryPolicy(on_retry=lambda e: box["k"].close()))
        box["k"] = k
        try:
            k.browsers.replays.list({b!r})
            print("returned")
        except KernelError as exc:
            print("failed", type(exc).__name__)
        for t in threading.enumerate():
            if t.name == "kernel-sync-loop":
                t.join(10)
        print("threads", sum(t.name == "kernel-sync-loop" for t in threading.enumerate()))
        """
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] in ("returned", "failed APIConnectionError"), out.stdout
    assert "threads 0" in out.stdout
    assert out.stderr == "", out.stderr


def test_last_reference_collected_on_the_loop_thread(threaded_fake: FakeKernel) -> None:
    # A client in a reference cycle is finalised wherever the GC runs: here inside a
    # progress callback, on the loop thread, while another client is mid-download.
    b = threaded_fake.create_browser()
    out = run_script(
        f"""
        import gc, os, tempfile, threading
        from kernel_sync import Kernel
        kw = dict(api_key={threaded_fake.api_key!r}, base_url={threaded_fake.base_url!r})
        doomed = Kernel(**kw)
        doomed.cycle = doomed
        doomed.browsers.replays.list({b!r})
        del doomed
        seen = []
        def progress(n):
            if not seen:
                seen.append(threading.current_thread().name)
                gc.collect()
        with Kernel(**kw) as k:
            r = k.browsers.replays.start({b!r})
            k.browsers.replays.stop(r.replay_id, id={b!r})
            path = os.path.join(tempfile.mkdtemp(), "v.mp4")
            k.browsers.replays.download_to(path, r.replay_id, id={b!r}, progress=progress)
        for t in threading.enumerate():
            if t.name == "kernel-sync-loop":
                t.join(10)
        print(seen[0], sum(t.name == "kernel-sync-loop" for t in threading.enumerate()))
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "kernel-sync-loop 0", out.stdout
    assert out.stderr == "", out.stderr


def test_close_from_another_thread_fails_in_flight_calls_clearly(threaded_fake: FakeKernel) -> None:
    b = threaded_fake.create_browser()
    threaded_fake.fail("list", status=None, delay=30)
    k = Kernel(api_key=threaded_fake.api_key, base_url=threaded_fake.base_url)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            k.browsers.replays.list(b)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    deadline = time.monotonic() + 20
    while threaded_fake.count("list") < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    k.close()
    worker.join(10)
    assert not worker.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], APIConnectionError), repr(errors[0])
    assert "closed" in str(errors[0])
    assert loop_threads() == 0


def test_fork_while_runtime_locks_are_held(threaded_fake: FakeKernel) -> None:
    # Another thread inside its first call holds the runtime's locks at the fork: the
    # child must re-make them, not wait forever (alarm turns a deadlock into a failure).
    b = threaded_fake.create_browser()
    out = run_script(
        f"""
        import os, signal, sys, threading
        import kernel_sync._runner as runtime
        from kernel_sync import Kernel
        k = Kernel(api_key={threaded_fake.api_key!r}, base_url={threaded_fake.base_url!r})
        held, release = threading.Event(), threading.Event()
        def first_call():
            with runtime._lock, k._runner._lock:
                held.set()
                release.wait()
        t = threading.Thread(target=first_call)
        t.start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            signal.alarm(15)
            try:
                k.browsers.replays.list({b!r})
                k.close()
                os._exit(0)
            except BaseException as exc:
                print("child failed", repr(exc), file=sys.stderr)
                os._exit(1)
        release.set()
        t.join()
        _, status = os.waitpid(pid, 0)
        k.browsers.replays.list({b!r})
        k.close()
        print("child", os.waitstatus_to_exitcode(status))
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "child 0", out.stderr
    assert threaded_fake.count("list") == 2


def test_ctrl_c_during_download_to_leaves_no_temporary_file(
    threaded_fake: FakeKernel, tmp_path: Path
) -> None:
    b = threaded_fake.create_browser()
    code = f"""
import os
from kernel_sync import Kernel
k = Kernel(api_key={threaded_fake.api_key!r}, base_url={threaded_fake.base_url!r})
r = k.browsers.replays.start({b!r})
k.browsers.replays.stop(r.replay_id, id={b!r})
print("downloading", flush=True)
try:
    k.browsers.replays.download_to({str(tmp_path / "v.mp4")!r}, r.replay_id, id={b!r})
except KeyboardInterrupt:
    print("left", sorted(os.listdir({str(tmp_path)!r})), flush=True)
k.close()
"""
    threaded_fake.fail("download", status=None, delay=30)
    code_, out, err = ctrl_c_after(
        code, "downloading", until=lambda: threaded_fake.count("download") > 0
    )
    assert code_ == 0, err
    assert out.strip() == "left []", (out, err)


# -- the hand-off to the loop thread under Ctrl-C (found in review) ----------------------------

_HANDOFF_PRELUDE = """
import asyncio, gc, os, random, signal, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from kernel_async import AsyncKernel
import kernel_sync._runner as runtime

r = runtime.Runner(AsyncKernel(api_key="k", base_url="http://127.0.0.1:9"))
async def noop():
    return 1
r.call(noop)
host = runtime._current
main = threading.main_thread().ident
def ctrl_c_in(seconds):
    threading.Timer(seconds, signal.pthread_kill, (main, signal.SIGINT)).start()
"""


def test_ctrl_c_in_a_loop_of_quick_calls_is_prompt() -> None:
    # A Ctrl-C landing just after a call finished must not wait for a cleanup that
    # already happened (it used to wait the full 5 s bound on a lock it held).
    out = run_script(
        _HANDOFF_PRELUDE
        + """
worst = 0.0
for _ in range(12):
    fired = []
    def fire():
        fired.append(time.monotonic())
        signal.pthread_kill(main, signal.SIGINT)
    threading.Timer(random.uniform(0.02, 0.06), fire).start()
    try:
        while True:
            r.call(noop)
    except KeyboardInterrupt:
        worst = max(worst, time.monotonic() - fired[0])
r.close()
print("worst %.2f" % worst)
"""
    )
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split()[-1]) < 2.0, out.stdout


def test_ctrl_c_before_the_task_took_its_first_step_still_runs_its_cleanup() -> None:
    # The loop thread is busy: the call's start and its cancel land in one loop turn.
    out = run_script(
        _HANDOFF_PRELUDE
        + """
log = []
async def work():
    log.append("started")
    try:
        await asyncio.sleep(10)
    finally:
        log.append("cleanup")
host.loop.call_soon_threadsafe(time.sleep, 0.5)
ctrl_c_in(0.2)
started = time.monotonic()
try:
    r.call(work)
except KeyboardInterrupt:
    print("interrupted after %.1f" % (time.monotonic() - started), log)
r.close()
"""
    )
    assert out.returncode == 0, out.stderr
    assert "never awaited" not in out.stderr, out.stderr
    took, log = out.stdout.split(" ", 3)[2], out.stdout.split(" ", 3)[3]
    assert float(took) < 3.0, out.stdout
    assert "'started', 'cleanup'" in log, out.stdout


def test_ctrl_c_around_a_context_entry_never_hangs() -> None:
    # `with ...record()`'s enter runs to its end on Ctrl-C; it must end even when the
    # task was cancelled before its first step.
    out = run_script(
        _HANDOFF_PRELUDE
        + """
async def aenter():
    await asyncio.sleep(0.1)
    return "ok"
host.loop.call_soon_threadsafe(time.sleep, 0.5)
ctrl_c_in(0.2)
threading.Timer(20, lambda: (print("hung", flush=True), os._exit(3))).start()
started = time.monotonic()
try:
    r.call_to_end(aenter)
    print("returned")
except KeyboardInterrupt:
    print("interrupted after %.1f" % (time.monotonic() - started))
r.close()
os._exit(0)
"""
    )
    assert out.stdout.startswith("interrupted"), (out.stdout, out.stderr)
    assert float(out.stdout.split()[-1]) < 5.0, out.stdout
