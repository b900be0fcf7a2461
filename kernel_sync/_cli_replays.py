"""CLI commands for the replay lifecycle: start, list, stop, download."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any, TextIO

from kernel_async import Replay

from ._cli import Commands, Context, identifier, local_time, whole_number

__all__ = ["register"]

BROWSER_HELP = "browser session ID (from Kernel, or printed by `kernel-replays emulator`)"
REPLAY_HELP = "replay ID (printed by `start`, or see `list`)"


def register(commands: Commands) -> None:
    """Add ``start``, ``list``, ``stop`` and ``download``."""
    p = commands.add("start", help="start recording a browser session", run=_start)
    p.add_argument("browser", metavar="BROWSER", type=identifier, help=BROWSER_HELP)
    p.add_argument(
        "--framerate",
        type=whole_number(1),
        metavar="FPS",
        help="frames per second (>= 1; above 20 needs a GPU browser)",
    )
    p.add_argument(
        "--max-duration",
        type=whole_number(1),
        metavar="SECONDS",
        help="the recording stops by itself after this many seconds (>= 1)",
    )
    p.add_argument("--audio", action="store_true", help="record audio too")

    p = commands.add("list", help="list a browser's replays, oldest first", run=_list)
    p.add_argument("browser", metavar="BROWSER", type=identifier, help=BROWSER_HELP)

    p = commands.add("stop", help="stop a recording and persist the video", run=_stop)
    p.add_argument("browser", metavar="BROWSER", type=identifier, help=BROWSER_HELP)
    p.add_argument("replay", metavar="REPLAY", type=identifier, help=REPLAY_HELP)

    p = commands.add(
        "download",
        help="save a replay's video (MP4), atomically",
        description="Save a replay's video (MP4) to FILE. Waits while it is being finalised;\n"
        "the video is written beside FILE and renamed into place, so FILE is either the\n"
        "whole video or untouched. A progress bar goes to stderr when it is a terminal.",
        run=_download,
    )
    p.add_argument("browser", metavar="BROWSER", type=identifier, help=BROWSER_HELP)
    p.add_argument("replay", metavar="REPLAY", type=identifier, help=REPLAY_HELP)
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="where to save it (replaced)"
    )


def replay_json(r: Replay) -> dict[str, Any]:
    """A replay as JSON-ready data (ISO 8601 times with their offset)."""
    return {
        "replay_id": r.replay_id,
        "started_at": r.started_at.isoformat() if r.started_at else None,
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
        "replay_view_url": r.replay_view_url,
    }


def _start(ctx: Context) -> None:
    a = ctx.args
    with ctx.client() as k:
        r = k.browsers.replays.start(
            a.browser,
            framerate=a.framerate,
            max_duration_in_seconds=a.max_duration,
            record_audio=True if a.audio else None,
        )
    ctx.emit(replay_json(r), r.replay_id)


def _list(ctx: Context) -> None:
    with ctx.client() as k:
        rows = k.browsers.replays.list(ctx.args.browser)
    if ctx.json:
        ctx.emit([replay_json(r) for r in rows], "")
    else:
        _table(rows, ctx.out)


def _stop(ctx: Context) -> None:
    a = ctx.args
    with ctx.client() as k:
        k.browsers.replays.stop(a.replay, id=a.browser)
    ctx.emit({"stopped": a.replay}, f"stopped {a.replay}")


def _download(ctx: Context) -> None:
    from ._progress import download_display, size_text, watch_finalising

    a = ctx.args
    with ctx.client() as k:
        display = download_display(ctx.err, enabled=not ctx.json)
        try:
            with watch_finalising(display.finalising) if display else contextlib.nullcontext():
                path = k.browsers.replays.download_to(
                    a.output,
                    a.replay,
                    id=a.browser,
                    progress=display,
                    on_start=display.start if display is not None else None,
                )
        finally:
            if display is not None:
                display.close()
    size = path.stat().st_size
    ctx.emit({"path": str(path), "bytes": size}, f"saved {path} ({size_text(size)})")


def _when(t: datetime | None, missing: str) -> str:
    return local_time(t) if t else missing


def _table(rows: list[Replay], out: TextIO) -> None:
    head = ("REPLAY ID", "STARTED", "FINISHED", "VIEW URL")
    cells = [
        (
            r.replay_id,
            _when(r.started_at, "-"),
            _when(r.finished_at, "recording"),
            r.replay_view_url or "-",
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(4)]
    for row in [head, *cells]:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
