"""Download progress for the CLI: rich's progress bar when installed (``kernel-async[cli]``),
a plain one-line display otherwise, nothing when the stream is not a terminal.

Both show "finalising…" until the SDK reports that the video starts to arrive (`start`,
given to `download_to(on_start=...)`, with the announced size): before that it is waiting
through ``202 Accepted`` (the video is still being finalised) or for the answer.
Both are called from the SDK's event-loop thread, so they only record and draw.
"""

from __future__ import annotations

import time
from typing import Protocol, TextIO

__all__ = ["DownloadDisplay", "download_display"]

WAITING = "finalising…"


class DownloadDisplay(Protocol):
    """A `download_to` progress callback that is closed when the download ends."""

    def __call__(self, received: int, /) -> None: ...
    def start(self, total: int | None, /) -> None: ...
    def close(self) -> None: ...


def download_display(stream: TextIO, *, enabled: bool = True) -> DownloadDisplay | None:
    """A progress display on `stream` if it is a terminal, else `None`."""
    if not enabled or not stream.isatty():
        return None
    try:
        return _RichDisplay(stream)
    except ImportError:  # the optional extra is not installed
        return _PlainDisplay(stream)


class _RichDisplay:
    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            SpinnerColumn,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),  # the percentage, once the total is known
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(file=stream),
        )
        self._task = self._progress.add_task(WAITING, total=None)
        self._receiving = False
        self._progress.start()

    def start(self, total: int | None, /) -> None:
        self._receiving = True
        self._progress.reset(self._task, total=total, description="downloading")

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
        self._draw(WAITING)

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
            self._draw(f"downloading {_size(received)}{self._of_total(rate)}  {_size(rate)}/s")

    def _of_total(self, rate: float) -> str:
        total = self._total
        if not total:
            return ""
        share = f" of {_size(total)} ({self._received / total:.0%}"
        if self._received == 0:
            return share + ")"  # no rate yet: no honest time left
        left = max(total - self._received, 0) / max(rate, 1.0)
        return f"{share}, {left:.0f}s left)"

    def close(self) -> None:
        if self._received >= 0:
            took = time.monotonic() - self._body_started
            self._draw(f"downloaded {_size(self._received)} in {took:.1f}s")
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, text: str) -> None:
        self._stream.write("\r" + text.ljust(self._width))
        self._stream.flush()
        self._width = len(text)


def _size(n: float) -> str:
    units = ("B", "KiB", "MiB", "GiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:,.0f} B" if i == 0 else f"{n:,.1f} {units[i]}"
