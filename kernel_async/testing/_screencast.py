"""Record a page's screen: CDP screencast frames -> constant-rate video, encoded off the loop.

Chromium sends a screencast frame only when the page changes, so a still page yields a few
frames in many seconds. The video has a fixed framerate: tick ``k`` is shown at
``k / framerate`` seconds after the recording started and shows the latest frame received
at or before that moment (ticks before the first frame show the first frame). `FrameClock`
is that rule, pure; `FrameSink` applies it on a worker thread that decodes and encodes;
`ScreencastRecorder` feeds the sink from the DevTools connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import math
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import attrs

from ._cdp import CDPClient, CDPError

__all__ = [
    "FrameClock",
    "FrameSink",
    "FrameWriter",
    "ScreencastRecorder",
    "frame_limit",
    "ticks_before",
]


def ticks_before(elapsed: float, framerate: int) -> int:
    """How many ticks ``k / framerate`` (k = 0, 1, ...) fall strictly before ``elapsed``."""
    return max(0, math.ceil(elapsed * framerate))


def frame_limit(max_duration: float | None, framerate: int) -> int | None:
    """The number of frames in a recording cut at ``max_duration`` seconds (None: no cut)."""
    return None if max_duration is None else max(1, ticks_before(max_duration, framerate))


@attrs.define
class FrameClock:
    """Which ticks are due: the pure scheduling rule of a constant-rate recording."""

    framerate: int
    limit: int | None = None
    next_tick: int = 0

    def advance(self, elapsed: float) -> int:
        """Ticks now due for the frame currently shown: those before ``elapsed``, in limit.

        Call with ``elapsed`` = the arrival of the next frame (the current one shows until
        then), on an idle wake-up, or at the end. Never goes backwards.
        """
        end = ticks_before(elapsed, self.framerate)
        if self.limit is not None:
            end = min(end, self.limit)
        count = max(0, end - self.next_tick)
        self.next_tick += count
        return count

    @property
    def full(self) -> bool:
        """Whether the recording has all the frames its limit allows."""
        return self.limit is not None and self.next_tick >= self.limit


class FrameWriter(Protocol):
    """What the sink needs from an encoder (`H264Writer` is the real one)."""

    def decode_jpeg(self, data: bytes) -> Any | None: ...
    def blank(self) -> Any: ...
    def write(self, frame: Any, count: int = 1) -> None: ...
    def close(self) -> None: ...


_END = object()


class FrameSink:
    """A worker thread that turns timed JPEG frames into a constant-rate video.

    ``put`` is cheap and non-blocking (called on the event loop); decoding, scaling and
    encoding happen on the thread. Between frames the thread wakes once a tick to encode
    the repeats of a still page as they fall due, so finishing never has a backlog.
    """

    def __init__(
        self,
        open_writer: Callable[[], FrameWriter],
        clock: FrameClock,
        started: float,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open_writer = open_writer
        self._clock = clock
        self._started = started
        self._now = now
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._ended = False  # the end marker was taken from the queue
        self.frames_received = 0
        # Chromium may send 30 frames a second; only the ones a tick shows are decoded.
        self._pending: str | None = None  # newest frame (base64 JPEG), not decoded yet
        self._shown: Any | None = None  # the decoded frame the video shows now
        self.encode_seconds = 0.0  # thread CPU time spent decoding and encoding
        self._thread = threading.Thread(target=self._run, name="kernel-recorder", daemon=True)
        self._thread.start()

    @property
    def frames_written(self) -> int:
        """Frames in the video so far (repeats included)."""
        return self._clock.next_tick

    def put(self, received: float, jpeg_base64: str) -> None:
        """Hand over one screencast frame (base64 JPEG) received at monotonic ``received``."""
        self._queue.put((received, jpeg_base64))

    def finish(self, ended: float) -> None:
        """Blocking: encode up to ``ended``, close the file, and raise any worker error."""
        self._queue.put((ended, _END))
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        writer: FrameWriter | None = None
        try:
            writer = self._open_writer()
            self._loop(writer)
            done, writer = writer, None
            done.close()  # a failure to finish the file is the recording's failure too
        except BaseException as exc:
            self._error = exc
            if not self._ended:
                self._drain()
        finally:
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()

    def _loop(self, writer: FrameWriter) -> None:
        tick = 1.0 / self._clock.framerate
        while True:
            try:
                received, data = self._queue.get(timeout=tick)
            except queue.Empty:
                self._write(writer, self._now())
                continue
            if data is _END:
                self._ended = True
                self._write(writer, received, at_least_one=True)
                return
            if not self._clock.full:
                self.frames_received += 1
                self._write(writer, received)  # the previous frame shows until this one came
                self._pending = data

    def _write(self, writer: FrameWriter, at: float, *, at_least_one: bool = False) -> None:
        if self._pending is None and self._shown is None and not at_least_one:
            return  # before the first frame: its ticks wait for it
        count = self._clock.advance(at - self._started)
        if at_least_one and self._clock.next_tick == 0:
            count = self._clock.next_tick = 1
        if not count:
            return
        cpu = time.thread_time()
        if self._pending is not None:
            decoded = writer.decode_jpeg(base64.b64decode(self._pending))
            self._shown = self._shown if decoded is None else decoded
            self._pending = None
        writer.write(self._shown if self._shown is not None else writer.blank(), count)
        self.encode_seconds += time.thread_time() - cpu

    def _drain(self) -> None:
        # After a failure: swallow frames until the end marker, so finish() returns.
        while self._queue.get()[1] is not _END:
            pass


class ScreencastRecorder:
    """One recording of one page (a flattened CDP target session) into an MP4 file."""

    def __init__(
        self,
        cdp: CDPClient,
        session_id: str,
        path: Path,
        *,
        width: int,
        height: int,
        framerate: int,
        max_duration: float | None = None,
        preset: str = "veryfast",
    ) -> None:
        self.path = path
        self._preset = preset
        self._cdp, self._session_id = cdp, session_id
        self._size = (width, height)
        self._framerate = framerate
        self._max_duration = max_duration
        self._sink: FrameSink | None = None
        self._unsubscribe: Callable[[], None] = lambda: None
        self._acks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._stopping: asyncio.Task[Path] | None = None

    @property
    def sink(self) -> FrameSink | None:
        """The encoding worker (for its counters), once started."""
        return self._sink

    async def start(self) -> None:
        """Begin the screencast; the first frames arrive within a few milliseconds."""
        encoder = await asyncio.to_thread(importlib.import_module, f"{__package__}._encoder")
        width, height = self._size

        def open_writer() -> FrameWriter:
            writer: FrameWriter = encoder.H264Writer(
                self.path, width, height, self._framerate, preset=self._preset
            )
            return writer

        clock = FrameClock(self._framerate, frame_limit(self._max_duration, self._framerate))
        self._unsubscribe = self._cdp.on("Page.screencastFrame", self._on_frame)
        started = time.monotonic()
        self._sink = FrameSink(open_writer, clock, started)
        params = {"format": "jpeg", "quality": 80, "maxWidth": width, "maxHeight": height}
        await _retry_while_navigating(
            lambda: self._cdp.send("Page.startScreencast", params, session_id=self._session_id)
        )
        if self._max_duration is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._max_duration, self._stop_in_background)

    def _stop_in_background(self) -> None:
        self._stopping = self._stopping or asyncio.ensure_future(self._stop())

    async def stop(self) -> Path:
        """Stop and finalise (idempotent; the encode runs on the worker thread)."""
        self._stop_in_background()
        assert self._stopping is not None
        return await asyncio.shield(self._stopping)

    async def _stop(self) -> Path:
        ended = time.monotonic()
        if self._timer is not None:
            self._timer.cancel()
        self._unsubscribe()
        with contextlib.suppress(CDPError, ConnectionError, asyncio.TimeoutError):
            await self._cdp.send("Page.stopScreencast", session_id=self._session_id, timeout=5)
        if self._acks:  # let the last acks settle rather than leave them to the loop's end
            await asyncio.wait(set(self._acks), timeout=2)
        if self._sink is not None:
            await asyncio.to_thread(self._sink.finish, ended)
        return self.path

    def _on_frame(self, params: dict[str, Any], session_id: str | None) -> None:
        if session_id != self._session_id or self._sink is None:
            return
        self._sink.put(time.monotonic(), params["data"])
        ack = self._cdp.send(
            "Page.screencastFrameAck", {"sessionId": params["sessionId"]}, session_id=session_id
        )
        task = asyncio.ensure_future(ack)
        self._acks.add(task)
        task.add_done_callback(_forget(self._acks))


async def _retry_while_navigating(
    command: Callable[[], Awaitable[dict[str, Any]]], timeout: float = 5.0
) -> dict[str, Any]:
    """Run a page command, retrying while a navigation swaps the page's renderer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await command()
        except CDPError as exc:
            if "Not attached to an active page" not in str(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.05)


def _forget(tasks: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # an ack to a closed page is not an error worth reporting

    return done
