"""The CLI's browser commands: ``browsers create|get|list|delete`` and ``record``.

Registered by ``__main__`` in two places (`add_commands`, `run`); everything else about
them lives here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from typing import Any, TextIO

from kernel_async import Browser, Viewport

from ._generated import Kernel, Recording

__all__ = ["COMMANDS", "add_commands", "run"]

COMMANDS = frozenset({"browsers", "record"})


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"a tag is KEY=VALUE, got {text!r}")
    return key, value


def _viewport(text: str) -> Viewport:
    """``1280x800`` or ``1280x800@60``."""
    size, _, rate = text.partition("@")
    try:
        width, height = (int(n) for n in size.lower().split("x"))
        return Viewport(width, height, int(rate) if rate else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a viewport is WxH or WxH@RATE, got {text!r}") from None


def _create_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="a name, unique among active browsers")
    p.add_argument("--tag", type=_tag, action="append", default=[], help="KEY=VALUE (repeat)")
    p.add_argument("--viewport", type=_viewport, help="WxH or WxH@RATE, e.g. 1280x800@60")
    p.add_argument("--timeout-seconds", type=int, help="inactivity timeout (10-259200)")
    p.add_argument("--start-url", help="URL to open at start")
    p.add_argument("--region", choices=["us-east", "us-west", "eu-west", "ap-southeast"])
    p.add_argument("--stealth", action="store_true", default=None, help="stealth mode")
    p.add_argument("--gpu", action="store_true", default=None, help="GPU acceleration")


def add_commands(sub: Any) -> None:
    """Add ``browsers ...`` and ``record`` to the CLI's subparsers."""
    browsers = sub.add_parser("browsers", help="create, get, list and delete browsers")
    bsub = browsers.add_subparsers(dest="browsers_command", required=True, metavar="ACTION")
    s = bsub.add_parser("create", help="create a browser")
    _create_options(s)
    s.add_argument("--headless", action="store_true", default=None, help="no GUI, no replays")
    s = bsub.add_parser("get", help="show a browser")
    s.add_argument("browser", help="ID or name")
    s.add_argument("--include-deleted", action="store_true")
    s = bsub.add_parser("list", help="list browsers (every page)")
    s.add_argument("--status", choices=["active", "deleted", "all"])
    s.add_argument("--query", help="search by name, ID, profile, proxy or pool")
    s.add_argument("--tag", type=_tag, action="append", default=[], help="KEY=VALUE (repeat)")
    s.add_argument("--region", choices=["us-east", "us-west", "eu-west", "ap-southeast"])
    s.add_argument("--page-size", type=int, help="browsers per request (1-100)")
    s = bsub.add_parser("delete", help="delete a browser")
    s.add_argument("browser", help="ID or name")

    s = sub.add_parser("record", help="record a new browser until Ctrl-C (or --seconds), save it")
    _create_options(s)
    s.add_argument("-o", "--output", default="run.mp4", help="where to save the MP4")
    s.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    s.add_argument("--framerate", type=int, default=10)
    s.add_argument("--browser", help="record this existing browser instead (not deleted)")


def browser_json(b: Browser) -> dict[str, Any]:
    """A browser as JSON (its URLs in full: they are the caller's to use)."""
    import attrs

    def value(_: object, __: object, v: Any) -> Any:
        return v.isoformat() if hasattr(v, "isoformat") else v

    return attrs.asdict(b, value_serializer=value)


def _table(rows: list[Browser], out: TextIO) -> None:
    head = ("SESSION ID", "NAME", "CREATED", "STATE", "REGION", "TAGS")
    cells = [
        (
            b.session_id,
            b.name or "-",
            b.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "deleted" if b.deleted_at else ("headless" if b.headless else "active"),
            b.region,
            ",".join(f"{k}={v}" for k, v in (b.tags or {}).items()) or "-",
        )
        for b in rows
    ]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]
    for row in [head, *cells]:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _create_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": args.name,
        "tags": dict(args.tag) or None,
        "viewport": args.viewport,
        "timeout_seconds": args.timeout_seconds,
        "start_url": args.start_url,
        "region": args.region,
        "stealth": args.stealth,
        "gpu": args.gpu,
    }


def run(args: argparse.Namespace, k: Kernel, out: TextIO) -> int:
    """Run a browser command; returns the exit code."""
    if args.command == "record":
        return _record(args, k, out)
    action = args.browsers_command
    browsers = k.browsers
    if action == "create":
        b = browsers.create(headless=args.headless, **_create_kwargs(args))
        out.write(json.dumps(browser_json(b)) + "\n" if args.json else b.session_id + "\n")
    elif action == "get":
        b = browsers.retrieve(args.browser, include_deleted=args.include_deleted)
        out.write(json.dumps(browser_json(b)) + "\n" if args.json else _describe(b))
    elif action == "list":
        pager = browsers.list(
            status=args.status,
            query=args.query,
            tags=dict(args.tag) or None,
            region=args.region,
            limit=args.page_size,
        )
        rows = list(pager)
        if args.json:
            out.write(json.dumps([browser_json(b) for b in rows]) + "\n")
        else:
            _table(rows, out)
    else:
        browsers.delete(args.browser)
        out.write(json.dumps({"deleted": args.browser}) + "\n" if args.json else "deleted\n")
    return 0


def _describe(b: Browser) -> str:
    fields = browser_json(b)
    width = max(len(k) for k in fields)
    return "".join(f"{k.ljust(width)}  {v}\n" for k, v in fields.items() if v is not None)


def _announce_and_wait(rec: Recording, args: argparse.Namespace, out: TextIO) -> None:
    if not args.json:
        how = f"for {args.seconds:g}s" if args.seconds else "until Ctrl-C"
        out.write(f"recording browser {rec.browser.session_id} {how}\n")
        out.write(f"  drive it over CDP: {rec.browser.cdp_ws_url}\n")
        out.flush()
    time.sleep(args.seconds if args.seconds else 10**9)


def _record(args: argparse.Namespace, k: Kernel, out: TextIO) -> int:
    create = {} if args.browser else _create_kwargs(args)
    with k.browsers.record(
        args.browser, save_to=args.output, framerate=args.framerate, **create
    ) as rec:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a recording ends
            _announce_and_wait(rec, args, out)
        if not args.json:
            out.write("stopping, saving the video and cleaning up…\n")
            out.flush()
    path = rec.path
    size = path.stat().st_size if path else 0
    if args.json:
        result = {
            "session_id": rec.browser.session_id,
            "replay_id": rec.replay.replay_id,
            "path": str(path) if path else None,
            "bytes": size,
            "deleted": rec.created,
        }
        out.write(json.dumps(result) + "\n")
    else:
        out.write(f"saved {path} ({size} bytes)\n")
        if rec.created:
            out.write(f"deleted browser {rec.browser.session_id}\n")
    return 0
