"""JPEG frames in, H.264 MP4 out, with PyAV (the optional ``kernel-async[local]`` extra).

Blocking and CPU-bound: the recorder runs it on its own thread, never on the event loop.
Nothing else in the package imports this module at import time, so the core never needs
PyAV.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

try:
    import av
    from av.video.frame import VideoFrame
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        'recording local Chromium needs PyAV: pip install "kernel-async[local]"'
    ) from exc

__all__ = ["H264Writer", "VideoFrame", "even_size"]

PIX_FMT = "yuv420p"  # what every player decodes; needs even width and height


def even_size(width: int, height: int) -> tuple[int, int]:
    """The largest even size not above (width, height), at least 2x2 (yuv420p subsamples)."""
    return max(2, width - width % 2), max(2, height - height % 2)


class H264Writer:
    """An MP4 file being written: decode JPEGs, scale to the video size, encode frames.

    Frame timing is constant: the n-th written frame is shown at n / framerate seconds.
    """

    def __init__(
        self, path: Path, width: int, height: int, framerate: int, *, preset: str = "veryfast"
    ) -> None:
        self.width, self.height = even_size(width, height)
        self.framerate = framerate
        self.frames_written = 0
        self._container = av.open(str(path), mode="w", options={"movflags": "+faststart"})
        stream = self._container.add_stream(
            "libx264", rate=framerate, options={"preset": preset, "crf": "23"}
        )
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, PIX_FMT
        self._time_base = Fraction(1, framerate)
        self._stream = stream
        self._jpeg = av.CodecContext.create("mjpeg", "r")

    def decode_jpeg(self, data: bytes) -> VideoFrame | None:
        """One JPEG as a frame of the video's size and pixel format (``None`` if undecodable)."""
        try:
            frames = self._jpeg.decode(av.Packet(data))
        except av.FFmpegError:
            return None
        if not frames:
            return None
        frame = frames[-1]
        assert isinstance(frame, VideoFrame)
        return frame.reformat(width=self.width, height=self.height, format=PIX_FMT)

    def blank(self) -> VideoFrame:
        """A black frame, for a recording during which the page never painted."""
        black = b"\0\0\0\xff" * (self.width * self.height)
        frame = VideoFrame.from_bytes(black, self.width, self.height, format="rgba")
        return frame.reformat(format=PIX_FMT)

    def write(self, frame: VideoFrame, count: int = 1) -> None:
        """Append ``frame`` ``count`` times (a still page repeats its last frame)."""
        for _ in range(count):
            frame.pts = self.frames_written
            frame.time_base = self._time_base
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
            self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (moov atom first, for streaming players)."""
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()
