"""``python -m kernel_sync`` / ``kernel-replays``: the replay lifecycle from a shell.

Exit codes: 0 ok, 1 API or configuration error (one line naming status and code),
2 usage error. ``--json`` prints machine-readable output. Reads ``KERNEL_API_KEY`` and
``KERNEL_BASE_URL`` like the SDK.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from kernel_async import APIError, KernelError, Replay

from . import _cli_browsers
from ._generated import Kernel

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kernel-replays",
        description="Record, stop and download Kernel browser replays.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--api-key", help="API key (default: $KERNEL_API_KEY)")
    p.add_argument("--base-url", help="API root (default: $KERNEL_BASE_URL or production)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per attempt")
    p.add_argument("--max-retries", type=int, default=2, help="retries after the first try")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("start", help="start recording a browser session")
    s.add_argument("browser")
    s.add_argument("--framerate", type=int)
    s.add_argument("--max-duration", type=int, dest="max_duration")
    s.add_argument("--audio", action="store_true", help="record audio too")

    s = sub.add_parser("list", help="list a browser's replays")
    s.add_argument("browser")

    s = sub.add_parser("stop", help="stop a recording and persist the video")
    s.add_argument("browser")
    s.add_argument("replay")

    s = sub.add_parser("download", help="save a replay's video (atomically)")
    s.add_argument("browser")
    s.add_argument("replay")
    s.add_argument("-o", "--output", required=True, help="file to write")

    s = sub.add_parser("emulator", help="serve the local Kernel API emulator")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--api-key", dest="emulator_key", help="key to accept (default: random)")

    s = sub.add_parser("demo", help="the whole flow against the embedded emulator")
    s.add_argument("-o", "--output", help="where to save the video")
    _cli_browsers.add_commands(sub)
    return p


def _replay_json(r: Replay) -> dict[str, Any]:
    return {
        "replay_id": r.replay_id,
        "started_at": r.started_at.isoformat() if r.started_at else None,
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
        "replay_view_url": r.replay_view_url,
    }


def _table(rows: list[Replay], out: TextIO) -> None:
    head = ("REPLAY ID", "STARTED", "FINISHED", "VIEW URL")
    cells = [
        (
            r.replay_id,
            r.started_at.strftime("%Y-%m-%d %H:%M:%S") if r.started_at else "-",
            r.finished_at.strftime("%Y-%m-%d %H:%M:%S") if r.finished_at else "recording",
            r.replay_view_url or "-",
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(4)]
    for row in [head, *cells]:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


class _ProgressBar:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.last = 0.0

    def __call__(self, size: int) -> None:
        now = time.monotonic()
        if now - self.last >= 0.1:
            self.last = now
            self.out.write(f"\rdownloading… {size / 1024:,.1f} KiB")
            self.out.flush()

    def done(self, size: int) -> None:
        self.out.write(f"\rdownloaded {size / 1024:,.1f} KiB          \n")


def _client(args: argparse.Namespace) -> Kernel:
    return Kernel(
        api_key=args.api_key,
        base_url=args.base_url,
        timeout=args.timeout,
        max_retries=args.max_retries,
    )


def _run(args: argparse.Namespace, out: TextIO) -> int:
    cmd = args.command
    if cmd == "emulator":
        return _emulator(args, out)
    if cmd == "demo":
        from ._demo import run_demo

        return run_demo(output=args.output, out=out, as_json=args.json)
    with _client(args) as k:
        if cmd in _cli_browsers.COMMANDS:
            return _cli_browsers.run(args, k, out)
        replays = k.browsers.replays
        if cmd == "start":
            r = replays.start(
                args.browser,
                framerate=args.framerate,
                max_duration_in_seconds=args.max_duration,
                record_audio=True if args.audio else None,
            )
            out.write(json.dumps(_replay_json(r)) + "\n" if args.json else r.replay_id + "\n")
        elif cmd == "list":
            rows = replays.list(args.browser)
            if args.json:
                out.write(json.dumps([_replay_json(r) for r in rows]) + "\n")
            else:
                _table(rows, out)
        elif cmd == "stop":
            replays.stop(args.replay, id=args.browser)
            msg = {"stopped": args.replay} if args.json else f"stopped {args.replay}"
            out.write((json.dumps(msg) if args.json else str(msg)) + "\n")
        elif cmd == "download":
            bar = _ProgressBar(out) if out.isatty() and not args.json else None
            path = replays.download_to(args.output, args.replay, id=args.browser, progress=bar)
            size = path.stat().st_size
            if bar is not None:
                bar.done(size)
            if args.json:
                out.write(json.dumps({"path": str(path), "bytes": size}) + "\n")
            else:
                out.write(f"saved {path} ({size} bytes)\n")
    return 0


def _emulator(args: argparse.Namespace, out: TextIO) -> int:
    from kernel_async.testing import FakeKernel

    with FakeKernel.in_thread(host=args.host, port=args.port, api_key=args.emulator_key) as fake:
        browser = fake.create_browser()
        info = {"base_url": fake.base_url, "api_key": fake.api_key, "browser": browser}
        if args.json:
            out.write(json.dumps(info) + "\n")
        else:
            out.write(
                f"Kernel API emulator on {fake.base_url} (Ctrl-C to stop)\n"
                f"  export KERNEL_BASE_URL={fake.base_url}\n"
                f"  export KERNEL_API_KEY={fake.api_key}\n"
                f"  a browser to try: {browser}\n"
            )
        out.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            out.write("stopped\n")
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of ``python -m kernel_sync`` and ``kernel-replays``."""
    stream = out if out is not None else sys.stdout
    args = _parser().parse_args(argv)
    try:
        return _run(args, stream)
    except APIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KernelError, ValueError, TypeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
