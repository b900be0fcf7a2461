"""The constant-rate frame rule (pure), and the sink that applies it (fake encoder, no PyAV)."""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel_async.testing._screencast import FrameClock, FrameSink, frame_limit, ticks_before

framerates = st.integers(min_value=1, max_value=60)
times = st.floats(min_value=0.0, max_value=30.0, allow_nan=False)


def shown_at_each_tick(
    arrivals: list[float], wakes: list[float], end: float, clock: FrameClock
) -> list[int]:
    """Drive the clock as the sink does; return the frame index shown at each tick."""
    shown: list[int] = []
    events = sorted([(t, "frame") for t in arrivals] + [(t, "wake") for t in wakes])
    current: int | None = None
    for at, kind in events:
        if current is not None:
            shown += [current] * clock.advance(at)
        if kind == "frame":
            current = 0 if current is None else current + 1
    shown += [current or 0] * clock.advance(end)
    return shown


def naive(arrivals: list[float], ticks: int, framerate: int) -> list[int]:
    """Tick k shows the latest frame that arrived at or before k / framerate, else frame 0."""
    out = []
    for k in range(ticks):
        seen = [i for i, t in enumerate(arrivals) if t * framerate <= k]
        out.append(seen[-1] if seen else 0)
    return out


@given(
    st.lists(times, min_size=1, max_size=20),
    st.lists(times, max_size=20),
    times,
    framerates,
    st.none() | st.floats(min_value=0.01, max_value=30.0),
)
def test_each_tick_shows_the_latest_frame_and_wakes_change_nothing(
    arrivals: list[float],
    wakes: list[float],
    end_offset: float,
    framerate: int,
    max_duration: float | None,
) -> None:
    arrivals.sort()
    end = arrivals[-1] + end_offset
    wakes = [w for w in wakes if w <= end]
    clock = FrameClock(framerate, frame_limit(max_duration, framerate))
    shown = shown_at_each_tick(arrivals, wakes, end, clock)
    expected_ticks = ticks_before(end, framerate)
    if max_duration is not None:
        expected_ticks = min(expected_ticks, math.ceil(max_duration * framerate))
    assert len(shown) == expected_ticks == clock.next_tick
    assert shown == naive(arrivals, expected_ticks, framerate)


@given(times, times, framerates)
def test_clock_never_goes_backwards(a: float, b: float, framerate: int) -> None:
    clock = FrameClock(framerate)
    first = clock.advance(max(a, b))
    assert clock.advance(min(a, b)) == 0
    assert clock.next_tick == first


@given(st.floats(min_value=0.001, max_value=3600.0), framerates)
def test_frame_limit_is_duration_times_framerate(duration: float, framerate: int) -> None:
    limit = frame_limit(duration, framerate)
    assert limit is not None
    assert limit >= 1
    assert limit - 1 < duration * framerate <= limit or limit == 1


class FakeWriter:
    def __init__(self) -> None:
        self.written: list[Any] = []
        self.decoded: list[bytes] = []
        self.closed = False

    def decode_jpeg(self, data: bytes) -> Any | None:
        self.decoded.append(data)
        return None if data == b"bad" else data.decode()

    def blank(self) -> Any:
        return "blank"

    def write(self, frame: Any, count: int = 1) -> None:
        self.written += [frame] * count

    def close(self) -> None:
        self.closed = True


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_sink_repeats_still_frames_and_skips_undecodable_ones() -> None:
    writer = FakeWriter()
    sink = FrameSink(lambda: writer, FrameClock(10), started=100.0, now=lambda: 100.0)
    sink.put(100.02, b64("red"))
    sink.put(100.25, b64("bad"))
    sink.put(100.31, b64("green"))
    sink.finish(100.6)
    assert writer.written == ["red"] * 4 + ["green"] * 2
    assert writer.closed
    assert sink.frames_received == 3


def test_sink_decodes_only_the_frames_a_tick_shows() -> None:
    writer = FakeWriter()
    sink = FrameSink(lambda: writer, FrameClock(10), started=0.0, now=lambda: 0.0)
    for at, name in ((0.01, "a"), (0.02, "b"), (0.03, "c")):
        sink.put(at, b64(name))
    sink.finish(0.15)
    assert writer.written == ["a", "c"]
    assert writer.decoded == [b"a", b"c"]


def test_sink_whose_first_frame_is_undecodable_shows_blank() -> None:
    writer = FakeWriter()
    sink = FrameSink(lambda: writer, FrameClock(10), started=0.0, now=lambda: 0.0)
    sink.put(0.0, b64("bad"))
    sink.put(0.15, b64("a"))
    sink.finish(0.25)
    assert writer.written == ["blank", "blank", "a"]


def test_sink_without_frames_writes_one_blank_frame() -> None:
    writer = FakeWriter()
    sink = FrameSink(lambda: writer, FrameClock(10), started=5.0, now=lambda: 5.0)
    sink.finish(5.0)
    assert writer.written == ["blank"]


def test_sink_honours_the_limit() -> None:
    writer = FakeWriter()
    sink = FrameSink(lambda: writer, FrameClock(10, limit=3), started=0.0, now=lambda: 0.0)
    sink.put(0.0, b64("a"))
    sink.put(0.5, b64("b"))
    sink.finish(2.0)
    assert writer.written == ["a", "a", "a"]


def test_sink_reports_a_writer_failure_on_finish() -> None:
    def broken() -> FakeWriter:
        raise OSError("disk full")

    sink = FrameSink(broken, FrameClock(10), started=0.0, now=lambda: 0.0)
    sink.put(0.1, b64("a"))
    with pytest.raises(OSError, match="disk full"):
        sink.finish(1.0)


class FailingWriter(FakeWriter):
    def __init__(self, fail_in: str) -> None:
        super().__init__()
        self.fail_in = fail_in

    def write(self, frame: Any, count: int = 1) -> None:
        if self.fail_in == "write":
            raise OSError("write failed")
        super().write(frame, count)

    def close(self) -> None:
        if self.fail_in == "close":
            raise OSError("close failed")
        super().close()


@pytest.mark.parametrize("fail_in", ["write", "close"])
def test_sink_reports_a_failure_while_finishing(fail_in: str) -> None:
    # The last write and the close happen after the end marker: finish() must not hang.
    writer = FailingWriter(fail_in)
    sink = FrameSink(lambda: writer, FrameClock(10), started=0.0, now=lambda: 0.0)
    with pytest.raises(OSError, match=f"{fail_in} failed"):
        sink.finish(1.0)
