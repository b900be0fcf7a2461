"""The sync twin's `with client.browsers.record()` and Ctrl-C: nothing left running,
nothing swallowed, no interrupt acted on late or lost (issue 21).

Interrupts are real: SIGINT to a subprocess (to its main thread or another of its
threads), or `_thread.interrupt_main()`, which trips the handler without waking anyone.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from kernel_async.testing import FakeKernel
from kernel_sync import Kernel
from tests.interrupt import read_line, run_script, sigint_storm, spawn


def active(fake: FakeKernel) -> set[str]:
    return {s["session_id"] for s in fake.sessions()}


# -- a client closed inside the block ---------------------------------------------------------


# What the async twin does when its client is closed inside the block is the rule (the
# sync exit runs the async one): the sync twin must end the same way, whatever that is.
Outcome = tuple[str, str, tuple[str, ...], bool]  # error type, message, notes, browser left


def _outcome(exc: BaseException | None, fake: FakeKernel, before: set[str]) -> Outcome:
    left = bool(active(fake) - before)
    if exc is None:
        return ("", "", (), left)
    return (type(exc).__name__, str(exc), tuple(getattr(exc, "__notes__", ())), left)


def _async_outcome(fake: FakeKernel, raises: bool) -> Outcome:
    before = active(fake)

    async def run() -> BaseException | None:
        client = fake.client()
        try:
            async with client.browsers.record(save_to=None):
                await client.close()
                if raises:
                    raise ValueError("the block's own")
        except Exception as exc:
            return exc
        return None

    return _outcome(asyncio.run(run()), fake, before)


def _sync_outcome(fake: FakeKernel, raises: bool) -> Outcome:
    before = active(fake)
    k = Kernel(api_key=fake.api_key, base_url=fake.base_url)
    try:
        with k.browsers.record(save_to=None):
            k.close()
            if raises:
                raise ValueError("the block's own")
    except Exception as exc:
        return _outcome(exc, fake, before)
    return _outcome(None, fake, before)


def test_closing_the_client_inside_a_recording_keeps_the_blocks_exception(
    threaded_fake: FakeKernel,
) -> None:
    outcome = _sync_outcome(threaded_fake, raises=True)
    assert outcome[:2] == ("ValueError", "the block's own"), outcome
    assert outcome == _async_outcome(threaded_fake, raises=True)


def test_closing_the_client_inside_a_quiet_recording_ends_as_the_async_twin_does(
    threaded_fake: FakeKernel,
) -> None:
    outcome = _sync_outcome(threaded_fake, raises=False)
    assert outcome == _async_outcome(threaded_fake, raises=False)


def test_entering_a_recording_on_a_closed_client_is_a_clean_error(
    threaded_fake: FakeKernel,
) -> None:
    out = run_script(
        f"""
        import gc
        from kernel_sync import Kernel, KernelError
        k = Kernel(api_key={threaded_fake.api_key!r}, base_url={threaded_fake.base_url!r})
        k.close()
        try:
            with k.browsers.record(save_to=None):
                print("entered")
        except KernelError as exc:
            print("refused:", exc)
        gc.collect()
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "refused: this client is closed; create a new Kernel", out
    assert out.stderr == "", out.stderr  # no "coroutine ... was never awaited"
    assert threaded_fake.count("create") == 0


# -- Ctrl-C while the recording is entered ------------------------------------------------------

_RECORD = """
import _thread, signal, sys, threading, time
from kernel_sync import Kernel, RetryPolicy
"""


def test_ctrl_c_handled_during_the_entry_still_cleans_up(threaded_fake: FakeKernel) -> None:
    # The start fails once and is retried; its retry hook (on the loop thread) presses
    # Ctrl-C the way another thread would: the main thread, asleep in the wait, is not
    # woken. Taken only once the entry had finished, it used to leave the recording
    # running on a browser nobody deletes (`__exit__` never runs when `__enter__` raises).
    threaded_fake.fail("start", status=503)
    code = (
        _RECORD
        + f"""
policy = RetryPolicy(on_retry=lambda event: _thread.interrupt_main())
k = Kernel(api_key={threaded_fake.api_key!r}, base_url={threaded_fake.base_url!r}, retry=policy)
try:
    with k.browsers.record(save_to=None) as rec:
        print("entered", flush=True)
except KeyboardInterrupt as exc:
    print("interrupted", flush=True)
k.close()
"""
    )
    proc = spawn(code)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip() == "interrupted", (out, err)
    assert threaded_fake.count("start") == 2  # the retried start did happen...
    assert threaded_fake.count("delete") == 1  # ...and the browser it made is gone
    assert active(threaded_fake) == set()
    (browser,) = {s["session_id"] for s in threaded_fake.sessions("deleted")}
    assert all(r["finished_at"] is not None for r in threaded_fake.replays(browser))


def test_an_interrupt_just_as_the_entry_finished_exits_the_context() -> None:
    # The entry completes, then the interrupt is taken: the caller never gets the entered
    # context, so its exit must run now, with that interrupt, before it is raised.
    out = run_script(
        """
        import _thread, signal
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from kernel_async import AsyncKernel
        from kernel_sync._bridge import enter
        from kernel_sync._runner import Runner

        log = []
        class Context:
            async def __aenter__(self):
                log.append("entered")
                _thread.interrupt_main()  # lands after the entry took effect
                return self
            async def __aexit__(self, exc_type, exc, tb):
                log.append(f"exited with {exc_type.__name__}")

        r = Runner(AsyncKernel(api_key="k", base_url="http://127.0.0.1:9"))
        try:
            enter(r, Context(), None)
            log.append("returned")
        except KeyboardInterrupt:
            log.append("interrupted")
        r.close()
        print(log)
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['entered', 'exited with KeyboardInterrupt', 'interrupted']", (
        out.stdout,
        out.stderr,
    )


# -- Ctrl-C handled while the main thread waits ----------------------------------------------

_HANDLED_ELSEWHERE = {
    # Trips Python's SIGINT handler without a signal: nothing wakes the main thread.
    "interrupt_main": "threading.Timer(0.3, _thread.interrupt_main).start()",
    # A real SIGINT, delivered to another thread (which then runs nothing of Python's).
    "other_thread": (
        "threading.Timer(0.3, lambda: signal.pthread_kill(threading.get_ident(), "
        "signal.SIGINT)).start()"
    ),
}


@pytest.mark.parametrize("how", sorted(_HANDLED_ELSEWHERE))
def test_an_interrupt_handled_elsewhere_is_acted_on_promptly(
    threaded_fake: FakeKernel, how: str
) -> None:
    b = threaded_fake.create_browser()
    threaded_fake.fail("list", status=None, delay=10)
    out = run_script(
        _RECORD
        + f"""
signal.signal(signal.SIGINT, signal.default_int_handler)
k = Kernel(api_key={threaded_fake.api_key!r}, base_url={threaded_fake.base_url!r})
{_HANDLED_ELSEWHERE[how]}
started = time.monotonic()
try:
    k.browsers.replays.list({b!r})
    print("returned after %.2f" % (time.monotonic() - started))
except KeyboardInterrupt:
    print("interrupted after %.2f" % (time.monotonic() - started))
k.close()
"""
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("interrupted after"), (out.stdout, out.stderr)
    # The Ctrl-C comes at 0.3 s and is acted on within ~0.1 s; the call takes 10 s.
    assert float(out.stdout.split()[-1]) < 3.0, out.stdout


# -- several Ctrl-Cs during cleanup ----------------------------------------------------------

_OWN_HANDLER = """
def handler(signum, frame):  # the program's own handler: not the one the runtime can hold
    raise KeyboardInterrupt
signal.signal(signal.SIGINT, handler)
"""


_SECOND_CTRL_C = """
import _thread, asyncio, os, signal, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)
# {handler}
from kernel_async import AsyncKernel
from kernel_sync._runner import Runner

async def cleanup():
    try:
        await asyncio.sleep(0.6)
    except asyncio.CancelledError:
        pass  # shielded, as a recording's exit is: it goes on
    await asyncio.sleep(0.2)
    _thread.interrupt_main()  # the second Ctrl-C, just as it ends
    return "cleaned"

r = Runner(AsyncKernel(api_key="k", base_url="http://127.0.0.1:9"))
main = threading.main_thread().ident
threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT)).start()
threading.Timer(20, lambda: (print("hung", flush=True), os._exit(3))).start()
started = time.monotonic()
try:
    print(r.call_to_end(cleanup))
except KeyboardInterrupt:
    print("interrupted after %.1f" % (time.monotonic() - started), flush=True)
r.close()
os._exit(0)
"""


@pytest.mark.parametrize("handler", ["python's", "the program's own"])
def test_a_second_ctrl_c_as_the_cleanup_ends_never_loses_the_wake_up(handler: str) -> None:
    # The first Ctrl-C lands while a step that must run to its end (a recording's exit)
    # is running; the second as that step ends. Taken just after the wait's lock was
    # acquired, it used to lose that wake-up: the process then waited forever, deaf to
    # Ctrl-C.
    own = _OWN_HANDLER if handler != "python's" else ""
    out = run_script(_SECOND_CTRL_C.replace("# {handler}\n", own))
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert out.stdout.startswith("interrupted after"), (out.stdout, out.stderr)
    assert float(out.stdout.split()[-1]) < 5.0, out.stdout


def test_a_ctrl_c_storm_during_a_recordings_cleanup_neither_hangs_nor_cuts_it_short(
    threaded_fake: FakeKernel,
) -> None:
    # A user pressing Ctrl-C again and again while `with record()` cleans up: the process
    # must end, and only once the cleanup is done (the browser it created is deleted).
    threaded_fake.fail("delete", status=None, delay=1.0)
    code = f"""
import time
from kernel_sync import Kernel
k = Kernel(api_key={threaded_fake.api_key!r}, base_url={threaded_fake.base_url!r})
with k.browsers.record(save_to=None) as rec:
    print("recording", rec.browser.session_id, flush=True)
    time.sleep(60)
"""
    proc = spawn(code)
    try:
        line = read_line(proc)
        assert line.startswith("recording"), (line, proc)
        browser = line.split()[1]
        proc.send_signal(2)  # the first Ctrl-C: the block ends, the cleanup starts
        deadline = time.monotonic() + 20
        while threaded_fake.count("delete") == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert threaded_fake.count("delete") == 1
        sent = sigint_storm(proc, seconds=8)  # the delete takes 1 s of it
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the process hung after {sent} Ctrl-Cs during cleanup")
        # The delete's answer had reached the process before it ended.
        assert browser not in active(threaded_fake), f"exited before the cleanup ({sent} sent)"
        assert sent > 100
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
