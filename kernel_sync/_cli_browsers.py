"""CLI commands for browsers: ``browsers create|get|list|delete|logs`` and ``record`` (create
a browser, record it until Ctrl-C or ``--seconds``, save the MP4, delete the browser)."""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import TYPE_CHECKING, Any, Literal, TextIO

from kernel_async import Browser, Viewport

from . import _cli
from ._cli import Commands, Context, identifier, local_time, seconds, whole_number
from ._progress import size_text

if TYPE_CHECKING:
    from kernel_async.types import LogEvent

    from ._generated import Recording

__all__ = ["register"]

REGIONS = ["us-east", "us-west", "eu-west", "ap-southeast"]


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
    p.add_argument(
        "--timeout-seconds",
        type=whole_number(10),
        metavar="SECONDS",
        help="the browser's inactivity timeout, 10 to 259200 (not --timeout, per request)",
    )
    p.add_argument("--start-url", help="URL to open at start")
    p.add_argument("--region", choices=REGIONS)
    p.add_argument("--stealth", action="store_true", default=None, help="stealth mode")
    p.add_argument("--gpu", action="store_true", default=None, help="GPU acceleration")


def register(commands: Commands) -> None:
    """Add ``browsers`` (with its actions) and ``record``."""
    p = commands.add(
        "browsers", help="create, get, list and delete browsers; follow their logs", run=_browsers
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        # The client options (and --json) are accepted after the action too.
        parser: argparse.ArgumentParser = actions.add_parser(
            name, help=help, description=help, parents=[_cli._client_options()]
        )
        return parser

    s = action("create", "create a browser (prints its ID)")
    _create_options(s)
    s.add_argument("--headless", action="store_true", default=None, help="no GUI, no replays")
    s = action("get", "show a browser")
    s.add_argument("browser", metavar="ID_OR_NAME", type=identifier, help=ID_OR_NAME_HELP)
    s.add_argument("--include-deleted", action="store_true", help="also find deleted browsers")
    s = action("list", "list browsers (every page)")
    s.add_argument("--status", choices=["active", "deleted", "all"])
    s.add_argument("--query", help="search by name, ID, profile, proxy or pool")
    s.add_argument("--tag", type=_tag, action="append", default=[], help="KEY=VALUE (repeat)")
    s.add_argument("--region", choices=REGIONS)
    s.add_argument(
        "--page-size", type=whole_number(1), metavar="N", help="browsers per request (1-100)"
    )
    s = action("delete", "delete a browser")
    s.add_argument("browser", metavar="ID_OR_NAME", type=identifier, help=ID_OR_NAME_HELP)
    s = action("logs", "print a browser's logs, one line per event (--follow: until Ctrl-C)")
    s.add_argument("browser", metavar="ID_OR_NAME", type=identifier, help=ID_OR_NAME_HELP)
    s.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines as they come"
    )
    s.add_argument(
        "--source",
        choices=["supervisor", "path"],
        help="a supervised process's log, or a file (default: path with --path, else supervisor)",
    )
    s.add_argument("--path", metavar="P", help="the log file on the browser machine")
    s.add_argument(
        "--supervisor-process", metavar="NAME", help="the supervised process whose log to print"
    )
    s.set_defaults(logs_parser=s)  # for a usage error found after parsing

    s = commands.add(
        "record",
        help="record a new browser until Ctrl-C (or --seconds), save the MP4, delete it",
        run=_record,
    )
    _create_options(s)
    s.add_argument(
        "-o",
        "--output",
        default="run.mp4",
        metavar="FILE",
        help="where to save the video (default: %(default)s, replaced if it exists)",
    )
    s.add_argument("--seconds", type=seconds, help="stop after this long (default: Ctrl-C)")
    s.add_argument(
        "--framerate",
        type=whole_number(1),
        default=10,
        metavar="FPS",
        help="frames per second (default: %(default)s; above 20 needs --gpu)",
    )
    s.add_argument("--browser", type=identifier, help="record this browser instead (kept)")


def browser_json(b: Browser) -> dict[str, Any]:
    """A browser as JSON (its URLs in full: they are the caller's to use)."""
    import attrs

    def value(_: object, __: object, v: Any) -> Any:
        return v.isoformat() if hasattr(v, "isoformat") else v

    return attrs.asdict(b, value_serializer=value)


ID_OR_NAME_HELP = "the browser's session ID or its name"


def _table(rows: list[Browser], out: TextIO) -> None:
    head = ("SESSION ID", "NAME", "CREATED", "STATE", "REGION", "TAGS")
    cells = [
        (
            b.session_id,
            b.name or "-",
            local_time(b.created_at),
            "deleted" if b.deleted_at else ("headless" if b.headless else "active"),
            b.region,
            _tags(b.tags),
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


def _browsers(ctx: Context) -> None:
    a = ctx.args
    if a.action == "logs":
        _logs(ctx)
        return
    with ctx.client() as k:
        if a.action == "create":
            b = k.browsers.create(headless=a.headless, **_create_kwargs(a))
            ctx.emit(browser_json(b), b.session_id)
        elif a.action == "get":
            b = k.browsers.retrieve(a.browser, include_deleted=a.include_deleted)
            ctx.emit(browser_json(b), _describe(b))
        elif a.action == "list":
            tags = dict(a.tag) or None
            pager = k.browsers.list(
                status=a.status, query=a.query, tags=tags, region=a.region, limit=a.page_size
            )
            rows = list(pager)
            if ctx.json:
                ctx.emit([browser_json(b) for b in rows], "")
            else:
                _table(rows, ctx.out)
        else:
            k.browsers.delete(a.browser)
            ctx.emit({"deleted": a.browser}, f"deleted {a.browser}")


def log_source(source: str | None, path: str | None) -> Literal["path", "supervisor"]:
    """The ``source`` to ask for: the one given, else ``path`` when a path is given, else
    ``supervisor``. Raises `ValueError` for ``--source path`` without ``--path``."""
    if source == "path" or (source is None and path is not None):
        if path is None:
            raise ValueError("--source path needs --path P (the log file to print)")
        return "path"
    return "supervisor"


def log_line(event: LogEvent) -> str:
    """One event as one line: its timestamp (ISO 8601, as the server gave it) and its
    message, line breaks inside it escaped so every event stays one line."""
    message = event.message.rstrip("\r\n").replace("\r", "\\r").replace("\n", "\\n")
    return f"{event.timestamp.isoformat()} {message}"


def log_json(event: LogEvent) -> dict[str, Any]:
    """One event as JSON (``--json``): its fields by their API names."""
    return {
        "event": event.event,
        "message": event.message,
        "timestamp": event.timestamp.isoformat(),
    }


def _logs(ctx: Context) -> None:
    a = ctx.args
    try:
        source = log_source(a.source, a.path)
    except ValueError as exc:
        p: argparse.ArgumentParser = a.logs_parser
        raise _cli.UsageError(str(exc), p.prog, p.format_usage()) from None
    options: dict[str, Any] = {"follow": a.follow} if a.follow else {}
    if a.path is not None:
        options["path"] = a.path
    if a.supervisor_process is not None:
        options["supervisor_process"] = a.supervisor_process
    # `with`: Ctrl-C, a closed pipe or an error closes the connection before exiting.
    with ctx.client() as k, k.browsers.logs.stream(a.browser, source=source, **options) as stream:
        for event in stream:
            ctx.emit(log_json(event), log_line(event))


def _describe(b: Browser) -> str:
    fields = browser_json(b)
    if b.tags:
        fields["tags"] = _tags(b.tags)  # as `list` shows them
    width = max(len(k) for k in fields)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in fields.items() if v is not None)


def _tags(tags: dict[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in (tags or {}).items()) or "-"


def _announce_and_wait(rec: Recording, ctx: Context) -> None:
    a = ctx.args
    if not ctx.json:  # progress: stderr (stdout carries only the result)
        how = f"for {a.seconds:g}s" if a.seconds else "until Ctrl-C"
        ctx.err.write(f"recording browser {rec.browser.session_id} {how}\n")
        ctx.err.write(f"  drive it over CDP: {rec.browser.cdp_ws_url}\n")
        ctx.err.flush()
    time.sleep(a.seconds if a.seconds else 10**9)


def _record(ctx: Context) -> None:
    a = ctx.args
    create = {} if a.browser else _create_kwargs(a)
    with ctx.client() as k:
        with k.browsers.record(a.browser, save_to=a.output, framerate=a.framerate, **create) as rec:
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a recording ends
                _announce_and_wait(rec, ctx)
            if not ctx.json:
                ctx.err.write("stopping, saving the video and cleaning up…\n")
                ctx.err.flush()
    size = rec.path.stat().st_size if rec.path else 0
    result = {
        "session_id": rec.browser.session_id,
        "replay_id": rec.replay.replay_id,
        "path": str(rec.path) if rec.path else None,
        "bytes": size,
        "deleted": rec.created,
    }
    text = f"saved {rec.path} ({size_text(size)})"
    if rec.created:
        text += f"\ndeleted browser {rec.browser.session_id}"
    ctx.emit(result, text)
