"""Download progress for the CLI: rich's progress bar when installed (``kernel-async[cli]``),
a plain one-line display otherwise, nothing when the stream is not a terminal.

Both show "requesting the video…" until the first answer; "finalising" only once the API
answered ``202 Accepted`` (the video is still being prepared: `watch_finalising` tells);
then bytes received from the moment the SDK reports that the video starts to arrive
(`start`, given to `download_to(on_start=...)`, with the announced size). Sizes use
binary units everywhere (`size_text`: B, KiB, MiB, GiB), as the CLI's result lines do.
Both are called from the SDK's event-loop thread, so they only record and draw.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from rich.progress import ProgressColumn

__all__ = ["DownloadDisplay", "download_display", "size_text", "watch_finalising"]

REQUESTING = "requesting the video…"
FINALISING = "waiting for the video (finalising)…"


def size_text(n: float) -> str:
    """A byte count in binary units: ``812 B``, ``2.8 KiB``, ``1.8 MiB``."""
    units = ("B", "KiB", "MiB", "GiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:,.0f} B" if i == 0 else f"{n:,.1f} {units[i]}"


class DownloadDisplay(Protocol):
    """A `download_to` progress callback that is closed when the download ends."""

    def __call__(self, received: int, /) -> None: ...
    def start(self, total: int | None, /) -> None: ...
    def finalising(self) -> None: ...
    def close(self) -> None: ...


def download_display(stream: TextIO, *, enabled: bool = True) -> DownloadDisplay | None:
    """A progress display on `stream` if it is a terminal, else `None`."""
    if not enabled or not stream.isatty():
        return None
    try:
        return _RichDisplay(stream)
    except ImportError:  # the optional extra is not installed
        return _PlainDisplay(stream)


class _PollWatch(logging.Filter):
    # Sees every record of the SDK's logger; lets through only what its level let through
    # before the watch lowered it to DEBUG.
    def __init__(self, on_poll: Callable[[], object], shown: int) -> None:
        super().__init__()
        self._on_poll = on_poll
        self._shown = shown

    def filter(self, record: logging.LogRecord) -> bool:
        if "202 still finalising" in str(record.msg):
            self._on_poll()
        return record.levelno >= self._shown


@contextlib.contextmanager
def watch_finalising(on_poll: Callable[[], object]) -> Iterator[None]:
    """Call `on_poll` on each ``202`` (still finalising) a download receives, meanwhile.

    The SDK reports those polls only as a debug record of its ``kernel_async`` logger;
    this listens there, and what the log shows (``KERNEL_LOG``, handlers) is unchanged.
    """
    logger = logging.getLogger("kernel_async")
    watch = _PollWatch(on_poll, logger.getEffectiveLevel())
    level = logger.level
    logger.addFilter(watch)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.setLevel(level)
        logger.removeFilter(watch)


def _rich_columns() -> list[ProgressColumn]:
    # rich's own download columns use decimal units (kB): these use `size_text`, as the
    # plain line and the result line do.
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class Received(ProgressColumn):
        def render(self, task: Task) -> Text:
            if not task.fields.get("receiving"):
                return Text("")
            done = size_text(task.completed)
            return Text(done if task.total is None else f"{done} of {size_text(task.total)}")

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{size_text(speed)}/s")

    return [Received(), Rate()]


class _RichDisplay:
    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),  # the percentage, once the total is known
            *_rich_columns(),
            TimeRemainingColumn(),
            console=Console(file=stream),
        )
        self._task = self._progress.add_task(REQUESTING, total=None)
        self._receiving = False
        self._progress.start()

    def finalising(self) -> None:
        if not self._receiving:
            self._progress.update(self._task, description=FINALISING)

    def start(self, total: int | None, /) -> None:
        self._receiving = True
        self._progress.reset(self._task, total=total, description="downloading", receiving=True)

    def __call__(self, received: int, /) -> None:
        if not self._receiving:
            self.start(None)
        self._progress.update(self._task, completed=received)

    def close(self) -> None:
        if self._receiving:
            done = self._progress.tasks[0].completed
            self._progress.update(self._task, description="downloaded", total=done)
        self._progress.stop()


class _PlainDisplay:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._width = 0
        self._received = -1
        self._total: int | None = None
        self._body_started = 0.0
        self._drawn = 0.0
        self._finalising = False
        self._draw(REQUESTING)

    def finalising(self) -> None:
        if self._received < 0 and not self._finalising:
            self._finalising = True
            self._draw(FINALISING)

    def start(self, total: int | None, /) -> None:
        self._total = total
        self._received = 0
        self._body_started = time.monotonic()

    def __call__(self, received: int, /) -> None:
        now = time.monotonic()
        if self._received < 0:
            self.start(None)
        self._received = received
        if now - self._drawn >= 0.1:
            self._drawn = now
            rate = received / max(now - self._body_started, 1e-3)
            self._draw(
                f"downloading {size_text(received)}{self._of_total(rate)}  {size_text(rate)}/s"
            )

    def _of_total(self, rate: float) -> str:
        total = self._total
        if not total:
            return ""
        share = f" of {size_text(total)} ({self._received / total:.0%}"
        if self._received == 0:
            return share + ")"  # no rate yet: no honest time left
        left = max(total - self._received, 0) / max(rate, 1.0)
        return f"{share}, {left:.0f}s left)"

    def close(self) -> None:
        if self._received >= 0:
            took = time.monotonic() - self._body_started
            self._draw(f"downloaded {size_text(self._received)} in {took:.1f}s")
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, text: str) -> None:
        self._stream.write("\r" + text.ljust(self._width))
        self._stream.flush()
        self._width = len(text)
