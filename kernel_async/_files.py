"""Atomic file replacement: write beside the target, fsync, rename into place."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import IO

__all__ = ["AtomicFile"]


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting it back at once
    os.umask(mask)
    return mask


class AtomicFile:
    """A temporary file beside `target` that becomes `target` only on `commit()`.

    Until then the target is untouched; `discard()` removes the temporary file, so a
    failed or cancelled download leaves no debris.
    """

    __slots__ = ("_tmp", "file", "target")

    def __init__(self, target: str | os.PathLike[str]) -> None:
        if not isinstance(target, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(target).__name__}")
        self.target = Path(target)
        if self.target.is_dir():
            raise IsADirectoryError(f"{self.target} is a directory; pass a file path")
        if not self.target.parent.is_dir():
            # Name the user's path, not the hidden temporary file mkstemp would report.
            raise FileNotFoundError(
                errno.ENOENT, "no such directory to save into", str(self.target.parent)
            )
        import tempfile

        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.target.name}.", suffix=".part", dir=self.target.parent
        )
        self._tmp = tmp
        self.file: IO[bytes] = os.fdopen(fd, "w+b")

    def commit(self) -> Path:
        """Flush, fsync, set permissions and atomically rename over the target."""
        file = self.file
        file.flush()
        os.fsync(file.fileno())
        try:
            mode = self.target.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o666 & ~current_umask()  # what open() would have created
        os.fchmod(file.fileno(), mode)
        file.close()
        os.replace(self._tmp, self.target)
        # Make the rename itself durable (POSIX); best effort elsewhere.
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return self.target

    def discard(self) -> None:
        """Close and remove the temporary file. Idempotent."""
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)
