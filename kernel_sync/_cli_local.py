"""CLI commands that need no Kernel account: ``emulator`` and ``demo``."""

from __future__ import annotations

import argparse
import errno
import signal
import time
from types import FrameType

from kernel_async._config import is_loopback

from ._cli import CLIError, Commands, Context, whole_number

__all__ = ["register"]


def register(commands: Commands) -> None:
    """Add ``emulator`` and ``demo``."""
    p = commands.add(
        "emulator",
        help="serve the local Kernel API emulator until Ctrl-C",
        description="Serve the Kernel API emulator and print the exports that point the SDK "
        "and this CLI at it, with a browser ID to try. Ctrl-C (or SIGTERM) stops it, exit 0. "
        "With --json it prints one JSON line, {base_url, api_key, browser}, and nothing else.",
        run=_emulator,
        client=False,
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    p.add_argument(
        "--port",
        type=_port,
        default=8765,
        help="port to listen on, 0 for any free one (default: %(default)s)",
    )
    p.add_argument("--api-key", dest="emulator_key", help="key to accept (default: random)")
    p.add_argument(
        "--chromium",
        action="store_true",
        help="run each browser as a real local headless Chromium (drive it over cdp_ws_url) "
        "and record replays to real MP4s; needs Chromium and kernel-async[local]",
    )
    p.add_argument(
        "--max-browsers",
        type=whole_number(1),
        default=4,
        help="with --chromium: how many browsers may run at once (default: %(default)s)",
    )

    p = commands.add(
        "demo",
        help="the whole flow against the embedded emulator, offline",
        run=_demo,
        client=False,
    )
    p.add_argument("-o", "--output", metavar="FILE", help="where to save the video")


def _demo(ctx: Context) -> int:
    from ._demo import run_demo

    return run_demo(output=ctx.args.output, out=ctx.out, as_json=ctx.json)


def _port(text: str) -> int:
    port = whole_number(0)(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return port


def _emulator(ctx: Context) -> None:
    a = ctx.args
    if not is_loopback(a.host):
        ctx.warn(
            f"the emulator listens on {a.host}: reachable from other machines, and it "
            "accepts its key in clear text. Use 127.0.0.1 unless that is what you want."
        )
    previous = signal.signal(signal.SIGTERM, _interrupt)  # stop as cleanly as on Ctrl-C
    try:
        _serve(ctx)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise CLIError(
            f"port {a.port} is in use: pick another with --port, or --port 0 for any free one"
        ) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve(ctx: Context) -> None:
    from kernel_async.testing import FakeKernel

    a = ctx.args
    with FakeKernel.in_thread(
        host=a.host,
        port=a.port,
        api_key=a.emulator_key,
        backend="chromium" if a.chromium else "memory",
        max_browsers=a.max_browsers,
    ) as fake:
        browser = fake.create_browser()
        info = {"base_url": fake.base_url, "api_key": fake.api_key, "browser": browser}
        try:  # from here on, Ctrl-C or SIGTERM is the normal way to stop
            ctx.emit(
                info,
                f"Kernel API emulator on {fake.base_url} (Ctrl-C to stop).\n"
                "Paste these into another shell, then run the SDK or this CLI there:\n"
                f"  export KERNEL_BASE_URL={fake.base_url}\n"
                f"  export KERNEL_API_KEY={fake.api_key}\n"
                f"  export BROWSER_ID={browser}",
            )
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            if not ctx.json:
                ctx.out.write("stopped\n")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
