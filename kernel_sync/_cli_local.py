"""CLI commands that need no Kernel account: ``emulator`` and ``demo``."""

from __future__ import annotations

import argparse
import errno
import signal
import time
from types import FrameType
from typing import TYPE_CHECKING

from kernel_async._config import is_loopback

from ._cli import CLIError, Commands, Context, whole_number

if TYPE_CHECKING:
    from kernel_async.testing import FakeKernel

__all__ = ["register"]


def register(commands: Commands) -> None:
    """Add ``emulator`` and ``demo``."""
    p = commands.add(
        "emulator",
        help="serve the local Kernel API emulator until Ctrl-C",
        description="Serve the Kernel API emulator and print the exports that point the SDK "
        "and this CLI at it, with a browser ID to try (kept for 72 h without use). Ctrl-C "
        "(or SIGTERM) stops it, exit 0. By default its browsers are stand-ins (nothing to "
        "drive over CDP) and every replay is a sample video; --chromium runs real ones. "
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
        'and record replays to real MP4s; needs Chromium and pip install "kernel-async[local]"',
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


# The banner's browser is there to be tried, maybe much later: the longest timeout the API
# allows, not the default 60 s after which an unused local browser would end.
FIRST_BROWSER_TIMEOUT = 259_200


def _serve(ctx: Context) -> None:
    from kernel_async.testing import FakeKernel, LocalSetupError

    a = ctx.args
    try:
        emulator = FakeKernel.in_thread(
            host=a.host,
            port=a.port,
            api_key=a.emulator_key,
            backend="chromium" if a.chromium else "memory",
            max_browsers=a.max_browsers,
        )
        with emulator as fake:
            _announce_and_wait(ctx, fake, _first_browser(fake))
    except LocalSetupError as exc:  # no Chromium, or no PyAV: what to install, in one line
        raise CLIError(str(exc)) from None


def _first_browser(fake: FakeKernel) -> str:
    try:
        return fake.create_browser(timeout_seconds=FIRST_BROWSER_TIMEOUT)
    except Exception as exc:  # e.g. Chromium aborts at start: one line, not a traceback
        raise CLIError(f"the emulator could not start its first browser: {one_line(exc)}") from None


def _announce_and_wait(ctx: Context, fake: FakeKernel, browser: str) -> None:
    info = {"base_url": fake.base_url, "api_key": fake.api_key, "browser": browser}
    if ctx.args.chromium:
        (session,) = [s for s in fake.sessions() if s["session_id"] == browser]
        banner = (
            f"Kernel API emulator on {fake.base_url}, local Chromium backend: each browser "
            "is a real headless Chromium, each replay a real MP4 (Ctrl-C to stop).\n"
            "Paste these into another shell, then run the SDK or this CLI there:\n"
            f"  export KERNEL_BASE_URL={fake.base_url}\n"
            f"  export KERNEL_API_KEY={fake.api_key}\n"
            f"  export BROWSER_ID={browser}\n"
            f"  export CDP_WS_URL='{session['cdp_ws_url']}'\n"
            "Drive BROWSER_ID with Playwright's connect_over_cdp(CDP_WS_URL); it is kept 72 h "
            "without use, browsers you create end after their timeout_seconds (default 60) "
            "without DevTools traffic."
        )
    else:
        banner = (
            f"Kernel API emulator on {fake.base_url}, in-memory backend: browsers are "
            "stand-ins with no CDP to drive, every replay is a sample video (Ctrl-C to stop).\n"
            "Paste these into another shell, then run the SDK or this CLI there "
            "(--chromium for real local browsers):\n"
            f"  export KERNEL_BASE_URL={fake.base_url}\n"
            f"  export KERNEL_API_KEY={fake.api_key}\n"
            f"  export BROWSER_ID={browser}"
        )
    try:  # from here on, Ctrl-C or SIGTERM is the normal way to stop
        ctx.emit(info, banner)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        if not ctx.json:
            ctx.out.write("stopped\n")


def one_line(exc: BaseException, limit: int = 500) -> str:
    """An error's message on one line (a browser's log tail has many), at most ``limit``
    characters: its end, where the cause usually is."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else "..." + text[-limit:]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
