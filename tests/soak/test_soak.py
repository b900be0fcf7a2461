"""Soak (``nox -s soak``; about two minutes): 50,000 async stops at 500 concurrent and
10,000 sync stops from 8 threads, against a server injecting ~5% faults. Every call must
end (success or a typed error); file descriptors, tasks and threads must return to their
baseline; RSS growth must stay under a bound; no warnings (pytest turns them into errors).
The figures are printed (run with ``-s``) and written to ``soak-results.json`` if asked.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import kernel_async as ka
import kernel_sync
from kernel_async import AsyncKernel, RetryPolicy

pytestmark = pytest.mark.slow

ASYNC_CALLS = int(os.environ.get("SOAK_ASYNC_CALLS", "50000"))
CONCURRENCY = 500
SYNC_CALLS = int(os.environ.get("SOAK_SYNC_CALLS", "10000"))
RSS_BOUND_MIB = 30.0
# Generous, still fast: the server's "slow headers" fault answers after 3 s.
TIMEOUT = 1.0
POLICY = RetryPolicy(initial_backoff=0.01, max_backoff=0.05)


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    here = Path(__file__).parent
    proc = subprocess.Popen([sys.executable, str(here / "server.py"), str(port_file), "7", "0.05"])
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text()):
            assert time.monotonic() < deadline, "soak server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text()}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def classify(outcomes: list[object]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for o in outcomes:
        if o is None:
            kinds["ok"] += 1
        elif isinstance(o, ka.APIError):
            kinds[type(o).__name__] += 1
        else:  # anything else is a bug: an untyped error escaped
            raise AssertionError(f"untyped outcome: {o!r}")
    return kinds


def report(name: str, figures: dict[str, object]) -> None:
    print(f"\nsoak {name}: " + json.dumps(figures))
    out = os.environ.get("SOAK_RESULTS")
    if out:
        path = Path(out)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[name] = figures
        path.write_text(json.dumps(data, indent=2) + "\n")


def test_async_soak(server: str) -> None:
    async def run() -> dict[str, object]:
        baseline_tasks = len(asyncio.all_tasks())
        fd_baseline = fds()
        async with AsyncKernel(
            api_key="soak",
            base_url=server,
            timeout=TIMEOUT,
            retry=POLICY,
            connection_limit=CONCURRENCY,  # waiting for a pooled connection counts as timeout
        ) as c:
            await asyncio.gather(
                *(c.browsers.replays.stop("r", id="b") for _ in range(500)), return_exceptions=True
            )  # warm-up
            gc.collect()
            fd0, rss0 = fds(), rss_mib()
            outcomes: list[object] = []

            async def worker(calls: int) -> None:
                # A fixed pool of workers: memory reflects the steady state, so growth
                # would mean a leak, not 50,000 coroutines created up front.
                for _ in range(calls):
                    try:
                        await c.browsers.replays.stop("r", id="b")
                        outcomes.append(None)
                    except ka.APIError as exc:
                        outcomes.append(exc)

            t0 = time.monotonic()
            await asyncio.gather(*(worker(ASYNC_CALLS // CONCURRENCY) for _ in range(CONCURRENCY)))
            elapsed = time.monotonic() - t0
        gc.collect()
        await asyncio.sleep(0.1)
        kinds = classify(outcomes)
        figures = {
            "calls": ASYNC_CALLS,
            "concurrency": CONCURRENCY,
            "seconds": round(elapsed, 1),
            "calls_per_s": round(ASYNC_CALLS / elapsed),
            "outcomes": dict(kinds),
            "fds_baseline": fd_baseline,
            "fds_during": fd0,
            "fds_after_close": fds(),
            "tasks_after": len(asyncio.all_tasks()) - baseline_tasks,
            "rss_growth_mib": round(rss_mib() - rss0, 1),
        }
        assert sum(kinds.values()) == ASYNC_CALLS
        assert kinds["ok"] >= ASYNC_CALLS * 0.97  # retries absorb nearly all faults
        assert fds() <= fd_baseline  # every pooled socket was closed
        assert figures["tasks_after"] == 0
        assert figures["rss_growth_mib"] < RSS_BOUND_MIB  # type: ignore[operator]
        return figures

    report("async", asyncio.run(run()))


def test_sync_soak(server: str) -> None:
    threads0 = threading.active_count()
    fd0 = fds()
    rss0 = rss_mib()
    per_thread = SYNC_CALLS // 8
    t0 = time.monotonic()
    with kernel_sync.Kernel(api_key="soak", base_url=server, timeout=TIMEOUT, retry=POLICY) as k:

        def work(seed: int) -> list[object]:
            rnd = random.Random(seed)
            out: list[object] = []
            for _ in range(per_thread):
                try:
                    k.browsers.replays.stop("r", id=rnd.choice("bcd"))
                    out.append(None)
                except ka.APIError as exc:
                    out.append(exc)
            return out

        with ThreadPoolExecutor(8) as pool:
            outcomes = [o for chunk in pool.map(work, range(8)) for o in chunk]
    elapsed = time.monotonic() - t0
    gc.collect()
    kinds = classify(outcomes)
    figures = {
        "calls": per_thread * 8,
        "threads": 8,
        "seconds": round(elapsed, 1),
        "calls_per_s": round(per_thread * 8 / elapsed),
        "outcomes": dict(kinds),
        "threads_after_close": threading.active_count() - threads0,
        "fds_before": fd0,
        "fds_after_close": fds(),
        "rss_growth_mib": round(rss_mib() - rss0, 1),
    }
    report("sync", figures)
    assert sum(kinds.values()) == per_thread * 8
    assert kinds["ok"] >= per_thread * 8 * 0.97
    assert figures["threads_after_close"] == 0
    assert fds() <= fd0
    assert figures["rss_growth_mib"] < RSS_BOUND_MIB  # type: ignore[operator]
