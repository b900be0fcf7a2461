"""Client-side instructions per request, counted by valgrind's cachegrind: the figure that
does not move with the machine's load (wall-clock req/s on a shared 2-core machine moves
by 10-30% between runs; this one by ~0.3%).

``python bench/instructions.py`` (valgrind on PATH; `kernel` need not be installed). For each
of `stop` and `click_mouse`, raw aiohttp and kernel_async (the requests of `run.py`), a
client process makes 64 workers x N calls against the bench server (a separate process,
not counted), once with N=10 and once with N=60: the difference over the 3,200 extra calls
is the cost of one 64-concurrent request, start-up cancelled out. PYTHONHASHSEED is fixed
so that both runs lay their dicts out alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402 - bench/ is not a package

WIDTH = 64
SHORT, LONG = 10, 60
WORKLOADS = [
    (client, op)
    for op in run.OPERATIONS
    for client in ("raw aiohttp", "kernel_async")  # the official SDK: ~10x more, see run.py
]


async def client_main(base: str, client: str, op: str, per: int) -> None:
    """The counted process: WIDTH workers x `per` calls of one client's `op`."""
    clients = await run.async_clients(base)
    call = clients[client][0][op]
    for _ in range(3):  # the first connections, caches
        await call()

    async def worker() -> None:
        for _ in range(per):
            await call()

    await asyncio.gather(*(worker() for _ in range(WIDTH)))
    for _, close in clients.values():
        await close()


def count(base: str, client: str, op: str, per: int) -> int:
    """Instructions of one client process (cachegrind's ``I refs``)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--client",
            base,
            client,
            op,
            str(per),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"cachegrind run failed: {done.stderr.strip()[-500:]}")
    return int(found.group(1).replace(",", ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--client", nargs=4, metavar=("BASE", "CLIENT", "OP", "PER"))
    parser.add_argument("--server", choices=["aiohttp", "raw"], default="raw")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.client:
        base, client, op, per = args.client
        asyncio.run(client_main(base, client, op, int(per)))
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (e.g. apt-get install -y valgrind)")
    proc, base = run.start_server(args.server)
    per_call: dict[str, dict[str, int]] = {op: {} for op in run.OPERATIONS}
    try:
        for client, op in WORKLOADS:
            run.note(f"cachegrind: {client} {op}")
            extra = count(base, client, op, LONG) - count(base, client, op, SHORT)
            per_call[op][client] = round(extra / (WIDTH * (LONG - SHORT)))
    finally:
        proc.terminate()
        proc.wait()
    results = {
        "instructions_per_64_concurrent_call": per_call,
        "raw_aiohttp_over_kernel_async": {
            op: round(per["raw aiohttp"] / per["kernel_async"], 2) for op, per in per_call.items()
        },
        "server": args.server,
        "raw_aiohttp_request": run.RAW_REQUEST,
    }
    print(f"{'operation':<14}{'raw aiohttp':>14}{'kernel_async':>14}{'raw / ours':>12}")
    for op, per in per_call.items():
        raw, ours = per["raw aiohttp"], per["kernel_async"]
        print(f"{op:<14}{raw:>14,}{ours:>14,}{raw / ours:>12.2f}")
    print(f"({run.RAW_REQUEST}.)")
    text = json.dumps(results, indent=2)
    print("\n" + text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
