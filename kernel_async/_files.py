"""Atomic file replacement: write beside the target, fsync, rename into place."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["AtomicFile", "check_target", "temp_beside"]


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


def check_target(target: str | os.PathLike[str], name: str = "path", *, probe: bool = True) -> Path:
    """`target` as the `Path` a file will be saved to (``~`` expanded): a regular file
    or none yet (a symlink is followed), in a directory that exists and where a file
    can be created — `probe` checks that by creating one there and removing it.

    Raises `TypeError`, `ValueError` or an `OSError` (`IsADirectoryError`,
    `FileNotFoundError`, `PermissionError`...) naming the user's path, never the hidden
    temporary file a save writes first.
    """
    if not isinstance(target, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(target).__name__}")
    path = Path(target).expanduser()
    if path.is_symlink():
        path = path.resolve()  # write through the link: it stays, the file it names is replaced
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; pass a file path")
    if path.exists() and not path.is_file():
        # The save renames a new file over the target: a device, pipe or socket there
        # would be replaced by a plain file (as root, /dev/null itself).
        raise ValueError(
            f"{name}: {path} is not a regular file (a device, pipe or socket) and would be "
            "replaced by the video; pass a file path"
        )
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such directory to save into", str(path.parent))
    if probe:
        fd, tmp = temp_beside(path)
        os.close(fd)
        os.unlink(tmp)
    return path


def temp_beside(path: Path) -> tuple[int, str]:
    """A new hidden temporary file in `path`'s directory: (descriptor, its path).

    An `OSError` names `path` (what the caller asked for), not the temporary file.
    """
    import tempfile

    # Bounded, so a target name near the file system's limit still gets a temporary name.
    prefix = f".{path.name[:64]}."
    try:
        return tempfile.mkstemp(prefix=prefix, suffix=".part", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path, f"no file can be created in {path.parent}") from None


def _naming(exc: OSError, path: Path, doing: str) -> OSError:
    """`exc` again (same errno, so the same subclass), naming `path` and what failed."""
    reason = exc.strerror or type(exc).__name__
    return OSError(exc.errno, f"{reason}: {doing}", str(path))


class AtomicFile:
    """A temporary file beside `target` that becomes `target` only on `commit()`.

    Until then the target is untouched; `discard()` removes the temporary file, so a
    failed or cancelled download leaves no debris.
    """

    __slots__ = ("_tmp", "file", "target")

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self.target = check_target(target, probe=False)  # creating the temporary file is the probe
        fd, tmp = temp_beside(self.target)
        self._tmp = tmp
        self.file: IO[bytes] = os.fdopen(fd, "w+b")

    def commit(self) -> Path:
        """Flush, fsync, set permissions and atomically rename over the target.

        An `OSError` names the target, not the temporary file."""
        file = self.file
        try:
            file.flush()
            os.fsync(file.fileno())
            try:
                mode = self.target.stat().st_mode & 0o777
            except FileNotFoundError:
                mode = 0o666 & ~current_umask()  # what open() would have created
            os.fchmod(file.fileno(), mode)
            file.close()
            os.replace(self._tmp, self.target)
        except OSError as exc:
            raise _naming(exc, self.target, "the video could not be saved") from None
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


class FileSink:
    """Where a streamed download goes: the temporary file, reporting to the callbacks."""

    __slots__ = ("_file", "_on_start", "_report", "_size")

    def __init__(
        self,
        file: IO[bytes],
        report: Callable[[int], object] | None,
        on_start: Callable[[int | None], object] | None,
    ) -> None:
        self._file = file
        self._report = report
        self._on_start = on_start
        self._size = 0

    def restart(self, total: int | None) -> None:
        self._file.seek(0)
        self._file.truncate()
        self._size = 0
        if self._on_start is not None:
            self._on_start(total)
        if self._report is not None:
            self._report(0)

    def write(self, data: bytes, /) -> None:
        self._file.write(data)
        if self._report is not None:
            self._size += len(data)
            self._report(self._size)
