"""Each emulated browser's file system: a sandbox directory on the host, or memory.

On Kernel every browser runs in its own VM, and ``browsers.fs`` reads and writes that VM's
files by absolute path (``/tmp/downloads/report.pdf``). The emulator gives each browser a
*sandbox*: with the local Chromium backend a directory on the host (`SandboxFS`), by
default an in-memory tree (`MemoryFS`). The API's absolute paths resolve **inside** the
sandbox root, so ``/tmp/x`` written through ``fs`` reads back through ``fs`` and two
browsers never see each other's files. Both classes have the same methods (`FileSystem`);
each answers plain dicts shaped as the spec's responses, or raises `SandboxError`, whose
``status`` and ``body()`` are the API's answer.

What can never be reached through ``fs``
----------------------------------------
Nothing on the host outside the sandbox root — not for reading, writing, listing, moving,
deleting, zipping or changing permissions:

* ``/etc/passwd`` or ``/proc/self/environ`` are ordinary paths *inside* the sandbox: they do
  not exist there, so they are **404**, never the host's content.
* ``..`` is resolved lexically (``/a/../b`` is ``/b``); one that climbs above the root is
  refused: **403**.
* Symbolic links (created by a process the browser runs, or present in the directory) are
  followed only *inside* the sandbox: a relative target that stays under the root works like
  a link in the VM would; an absolute target, or a relative one that climbs above the root,
  is refused: **403**. Links are never created by ``fs`` (a ZIP with a link entry is 403).
* No check-then-use race: every path is walked one component at a time from a file
  descriptor of the root (``openat``-style, ``os.open(name, dir_fd=..., O_NOFOLLOW)``), so a
  directory swapped for a link between two calls makes the operation fail (403 or 404); it
  never crosses into the host. Recursive operations (delete, ZIP download, watch) never
  follow links; a link in a tree is deleted as a link, left out of a ZIP, reported as itself.
* ZIP uploads are checked whole before anything is written: an entry that is absolute, or
  whose ``..`` leaves the destination directory ("zip slip"), or is a link refuses the
  archive (403) and writes nothing.

Errors, as the API's ``Error`` body ``{"code": ..., "message": ...}`` (messages name the
API path, never a host path):

====  ===============  ========================================================
400   ``bad_request``  path not absolute, NUL byte, not UTF-8; not a directory /
                       is a directory / not a regular file; bad mode; bad ZIP
403   ``forbidden``    an escape refused (``..`` above the root, a link out of the
                       sandbox or swapped in mid-walk, a ZIP slip); permission denied
404   ``not_found``    no such file or directory (inside the sandbox)
409   ``conflict``     already exists (``move`` onto an existing path, a directory
                       over a file); directory not empty
====  ===============  ========================================================

Semantics chosen where the API leaves room (documented in the emulator's docs):
``write_file`` and ``upload`` create missing parent directories; ``create_directory`` is
``mkdir -p`` (an existing directory is fine, so it is safe to replay); ``delete_directory``
is recursive; ``move`` refuses to replace an existing destination (409) and needs the
destination's parent to exist; ``set_file_permissions`` applies ``owner``/``group`` only
when they name an existing account and the emulator's own user may make the change (else
they are accepted and ignored). File modes are exact (the umask does not apply).

The watcher (``watch_start``/``watch_events``/``watch_stop``) reports ``CREATE``, ``WRITE``,
``DELETE`` and ``RENAME`` (on the old path, then a ``CREATE`` on the new one, as inotify
does) with increasing sequence numbers usable as SSE ``id:``s. `SandboxFS` notices changes
by polling every 100 ms, so changes made by processes are seen too; `MemoryFS` reports each
change as it is made.

This module is POSIX-only (it needs ``dir_fd`` and ``O_NOFOLLOW``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import io
import os
import pwd
import stat
import time
import uuid
import zipfile
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import IO, Any, Protocol

import attrs

from ._events import Event, EventLog
from ._sessions import Refused

__all__ = [
    "MAX_SYMLINKS",
    "Event",
    "FileSystem",
    "FileWriter",
    "MemoryFS",
    "SandboxError",
    "SandboxFS",
    "api_parts",
    "parse_mode",
    "resolve",
    "zip_entry_parts",
]

MAX_SYMLINKS = 40  # links followed in one walk, as Linux's own bound
MAX_ZIP_BYTES = 1 << 30  # uncompressed bytes one upload_zip may write
POLL_SECONDS = 0.1
CHUNK = 1 << 16

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: a FIFO never hangs


class SandboxError(Refused):
    """An fs operation refused; ``status`` and `body` are the API's answer."""

    def body(self) -> dict[str, str]:
        """The API's ``Error`` body."""
        return {"code": self.code, "message": self.message}


def _bad(message: str) -> SandboxError:
    return SandboxError(400, "bad_request", message)


def _forbidden(message: str) -> SandboxError:
    return SandboxError(403, "forbidden", message)


def _not_found(path: str) -> SandboxError:
    return SandboxError(404, "not_found", f"no such file or directory: {path}")


def _conflict(message: str) -> SandboxError:
    return SandboxError(409, "conflict", message)


def _from_os(exc: OSError, path: str) -> SandboxError:
    """The API's answer for an OS error on `path` (an API path: the host path never shows)."""
    code = exc.errno
    if code == errno.ENOENT:
        return _not_found(path)
    if code in (errno.EEXIST, errno.ENOTEMPTY):
        return _conflict(f"{'already exists' if code == errno.EEXIST else 'not empty'}: {path}")
    if code == errno.ENOTDIR:
        return _bad(f"not a directory: {path}")
    if code == errno.EISDIR:
        return _bad(f"is a directory: {path}")
    if code == errno.ELOOP:
        return _forbidden(f"a symbolic link was swapped in on the way to {path}")
    if code in (errno.EACCES, errno.EPERM):
        return _forbidden(f"permission denied: {path}")
    if code in (errno.EINVAL, errno.ENAMETOOLONG, errno.EXDEV, errno.ENXIO):
        return _bad(f"{os.strerror(code).lower()}: {path}")
    name = errno.errorcode.get(code or 0, "error")
    return SandboxError(500, "internal_error", f"{name} on {path}")


# -- pure rules ------------------------------------------------------------------------


def api_parts(api_path: object) -> tuple[str, ...]:
    """The components of an API path below the sandbox root, or `SandboxError`.

    Absolute paths only (400 otherwise), no NUL byte (400), encodable as the OS's bytes
    (400); ``.`` and empty components vanish, ``..`` removes the one before it, and a ``..``
    that would climb above the root is refused (403). Never touches the disk.
    """
    if not isinstance(api_path, str):
        raise _bad("path must be a string")
    if "\x00" in api_path:
        raise _bad("path contains a NUL byte")
    if not api_path.startswith("/"):
        raise _bad(f"path must be absolute: {api_path!r}")
    try:
        os.fsencode(api_path)
    except UnicodeEncodeError:
        raise _bad("path is not valid UTF-8") from None
    parts: list[str] = []
    for part in api_path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise _forbidden(f"path climbs above the root: {api_path!r}")
            parts.pop()
            continue
        parts.append(part)
    return tuple(parts)


def _show(parts: Iterable[str]) -> str:
    return "/" + "/".join(parts)


def resolve(root: str | os.PathLike[str], api_path: str) -> str:
    """The host path an API path names inside `root` (lexically; never touches the disk).

    Symbolic links are not looked at here: the operations walk the path component by
    component from the root and refuse links that lead out (see the module docstring).
    """
    return os.path.join(os.fspath(root), *api_parts(api_path))


def parse_mode(mode: str | None, default: int) -> int:
    """An octal mode string (``"644"``, ``"0755"``) as an int; 400 for anything else."""
    if mode is None:
        return default
    text = mode.strip()
    if not text or len(text) > 5 or any(c not in "01234567" for c in text):
        raise _bad(f"mode must be an octal string such as 644: {mode!r}")
    if int(text, 8) > 0o7777:
        raise _bad(f"mode must be at most 7777: {mode!r}")
    return int(text, 8)


def zip_entry_parts(name: str) -> tuple[str, ...]:
    """A ZIP entry name's components below the extraction directory; 403 for a ZIP slip."""
    if name.startswith("/"):
        raise _forbidden(f"zip entry has an absolute path: {name!r}")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise _forbidden(f"zip entry leaves the destination directory: {name!r}")
            parts.pop()
            continue
        parts.append(part)
    return tuple(parts)


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def _info(parts: tuple[str, ...], mode: int, size: int, mtime: float) -> dict[str, Any]:
    """A ``FileInfo`` (``FFileInfoResponse`` / ``FListFilesResponseItem``) dict."""
    is_dir = stat.S_ISDIR(mode)
    return {
        "name": parts[-1] if parts else "/",
        "path": _show(parts),
        "size_bytes": 0 if is_dir else size,
        "mode": stat.filemode(mode),
        "mod_time": _stamp(mtime),
        "is_dir": is_dir,
    }


# -- the interface both file systems implement ------------------------------------------


class FileWriter(Protocol):
    """A file being written: `write` chunks, then `close` (or `abort` on failure)."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class FileSystem(Protocol):
    """What the emulator's ``browsers.fs`` handlers call; `SandboxFS` and `MemoryFS`."""

    def read_file(self, path: str) -> bytes: ...

    def open_write(self, path: str, mode: str | None = None) -> FileWriter: ...

    def write_file(
        self, path: str, data: bytes | Iterable[bytes], mode: str | None = None
    ) -> None: ...

    def upload(self, files: Iterable[tuple[str, bytes | Iterable[bytes]]]) -> None: ...

    def upload_zip(self, dest_path: str, zip_file: bytes | IO[bytes]) -> None: ...

    def download_dir_zip(self, path: str) -> bytes: ...

    def list_files(self, path: str) -> list[dict[str, Any]]: ...

    def file_info(self, path: str) -> dict[str, Any]: ...

    def move(self, src_path: str, dest_path: str) -> None: ...

    def create_directory(
        self, path: str, mode: str | None = None, *, parents: bool = True
    ) -> None: ...

    def delete_file(self, path: str) -> None: ...

    def delete_directory(self, path: str) -> None: ...

    def set_file_permissions(
        self, path: str, mode: str, owner: str | None = None, group: str | None = None
    ) -> None: ...

    async def watch_start(self, path: str, recursive: bool = False) -> dict[str, Any]: ...

    async def watch_stop(self, watch_id: str) -> None: ...

    def watch_events(self, watch_id: str, *, after: int = 0) -> AsyncIterator[Event]: ...

    async def aclose(self) -> None: ...


def _still_there(entries: Iterable[os.DirEntry[str]]) -> Iterator[tuple[str, os.stat_result]]:
    """Each entry with its status, leaving out those removed or renamed since the
    directory was read (a browser renaming its finished download, a process's file)."""
    for entry in entries:
        try:
            yield entry.name, entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue


def _chunks(data: bytes | Iterable[bytes]) -> Iterable[bytes]:
    return (data,) if isinstance(data, bytes) else data


def _write_all(writer: FileWriter, data: bytes | Iterable[bytes]) -> None:
    try:
        for chunk in _chunks(data):
            writer.write(bytes(chunk))
    except BaseException:
        writer.abort()
        raise
    writer.close()


def _open_zip(zip_file: bytes | IO[bytes]) -> zipfile.ZipFile:
    source = io.BytesIO(zip_file) if isinstance(zip_file, (bytes, bytearray)) else zip_file
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise _bad("zip_file is not a valid ZIP archive") from None


def _zip_plan(
    archive: zipfile.ZipFile, limit: int
) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Every entry with its checked components; the whole archive is refused up front."""
    plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    total = 0
    for info in archive.infolist():
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _forbidden(f"zip entry is a symbolic link: {info.filename!r}")
        plan.append((info, zip_entry_parts(info.filename)))
        total += info.file_size
        if total > limit:
            raise _bad(f"zip archive expands to more than {limit} bytes")
    return plan


def _zip_stamp(mtime: float) -> tuple[int, int, int, int, int, int]:
    t = time.localtime(max(mtime, 315532800.0))  # ZIP cannot say before 1980
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def _zip_mode(info: zipfile.ZipInfo, default: int) -> int:
    mode = (info.external_attr >> 16) & 0o777  # never setuid/setgid/sticky from an archive
    return mode or default


def _copy_limited(src: IO[bytes], writer: FileWriter, budget: list[int]) -> None:
    # The declared sizes were checked; this bounds what the archive really inflates to.
    while chunk := src.read(CHUNK):
        budget[0] -= len(chunk)
        if budget[0] < 0:
            raise _bad("zip archive expands to more than it declares")
        writer.write(chunk)


# -- the host sandbox --------------------------------------------------------------------


@attrs.define
class _Spot:
    """Where a walk ended: open directory fds from the root down, and a final name.

    ``name`` is an entry of ``fds[-1]`` (it may not exist), or ``None`` when the walk ended
    on the directory ``fds[-1]`` itself. ``parts`` are the resolved components of
    ``fds[-1]`` below the root (links followed).
    """

    fds: list[int]
    parts: list[str]
    name: str | None

    @property
    def dir_fd(self) -> int:
        return self.fds[-1]

    def close(self) -> None:
        while self.fds:
            os.close(self.fds.pop())


class _SandboxWriter:
    def __init__(self, fd: int, shown: str) -> None:
        self._fd = fd
        self._shown = shown

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise _from_os(exc, self._shown) from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    abort = close  # what was written stays, as with a real server cut mid-body


class _Watch:
    def __init__(self, parts: tuple[str, ...], recursive: bool) -> None:
        self.parts = parts
        self.recursive = recursive
        self.log = EventLog()
        self.task: asyncio.Task[None] | None = None


# A snapshot entry: is_dir, inode, mtime_ns, size.
_Snap = dict[tuple[str, ...], tuple[bool, int, int, int]]


class SandboxFS:
    """A browser's file system in a host directory; see the module docstring for the rules.

    `root` is created (mode 700) when missing. The root is held open by a file descriptor
    for the object's life: call `aclose` (``remove=True`` also deletes the whole tree).
    """

    def __init__(self, root: str | os.PathLike[str], *, max_zip_bytes: int = MAX_ZIP_BYTES) -> None:
        self.root = os.path.abspath(os.fspath(root))
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self._root_fd = os.open(self.root, _DIR)
        self._max_zip_bytes = max_zip_bytes
        self._watches: dict[str, _Watch] = {}

    # -- the walk ----------------------------------------------------------------------

    def _walk(
        self, parts: tuple[str, ...], *, follow_last: bool, make_parents: bool = False
    ) -> _Spot:
        """Walk `parts` from the root, one ``openat`` at a time, never following a link out.

        Intermediate links (and the last one when `follow_last`) are read with
        ``readlinkat`` and their relative targets walked in their place; ``..`` pops back to
        the directory we came from, never above the root. A directory opened with
        ``O_NOFOLLOW`` cannot be a link swapped in after we looked.
        """
        shown = _show(parts)
        spot = _Spot([os.dup(self._root_fd)], [], None)
        todo = deque(parts)
        hops = 0
        try:
            while todo:
                name = todo.popleft()
                if name == "..":
                    if len(spot.fds) == 1:
                        raise _forbidden(f"a symbolic link leads out of the sandbox: {shown}")
                    os.close(spot.fds.pop())
                    spot.parts.pop()
                    continue
                last = not todo
                if last and not follow_last:
                    spot.name = name
                    return spot
                if last:
                    try:
                        st = os.stat(name, dir_fd=spot.dir_fd, follow_symlinks=False)
                    except FileNotFoundError:
                        spot.name = name
                        return spot
                    if not stat.S_ISLNK(st.st_mode):
                        spot.name = name
                        return spot
                    hops = self._splice(spot, name, todo, hops, shown)
                    continue
                fd = self._step(spot, name, make_parents, shown)
                if fd is None:  # a link: its target's components are walked instead
                    hops = self._splice(spot, name, todo, hops, shown)
                    continue
                spot.fds.append(fd)
                spot.parts.append(name)
            return spot
        except OSError as exc:
            spot.close()
            raise _from_os(exc, shown) from None
        except BaseException:
            spot.close()
            raise

    @staticmethod
    def _step(spot: _Spot, name: str, make_parents: bool, shown: str) -> int | None:
        """Open the directory `name` in ``spot.dir_fd`` (``None`` when it is a link)."""
        try:
            return os.open(name, _DIR, dir_fd=spot.dir_fd)
        except OSError as exc:
            if exc.errno == errno.ENOENT and make_parents:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=spot.dir_fd)
                return os.open(name, _DIR, dir_fd=spot.dir_fd)  # once: a racing delete fails
            try:
                st = os.stat(name, dir_fd=spot.dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise _not_found(shown) from None
            if stat.S_ISLNK(st.st_mode):
                return None
            if not stat.S_ISDIR(st.st_mode):
                raise _bad(f"not a directory: {_show([*spot.parts, name])}") from None
            raise

    @staticmethod
    def _splice(spot: _Spot, name: str, todo: deque[str], hops: int, shown: str) -> int:
        hops += 1
        if hops > MAX_SYMLINKS:
            raise _bad(f"too many levels of symbolic links: {shown}")
        target = os.readlink(name, dir_fd=spot.dir_fd)
        if target.startswith("/"):
            raise _forbidden(f"a symbolic link leads out of the sandbox: {shown}")
        todo.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
        return hops

    def _open_final(self, spot: _Spot, flags: int, shown: str) -> int:
        try:
            if spot.name is None:
                if flags & os.O_ACCMODE != os.O_RDONLY:
                    raise _bad(f"is a directory: {shown}")
                return os.dup(spot.dir_fd)
            return os.open(spot.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=spot.dir_fd)
        except OSError as exc:
            raise _from_os(exc, shown) from None

    def _lstat(self, spot: _Spot, shown: str) -> os.stat_result:
        try:
            if spot.name is None:
                return os.fstat(spot.dir_fd)
            return os.stat(spot.name, dir_fd=spot.dir_fd, follow_symlinks=False)
        except OSError as exc:
            raise _from_os(exc, shown) from None

    @contextlib.contextmanager
    def _at(
        self, path: str, *, follow_last: bool = True, make_parents: bool = False
    ) -> Iterator[tuple[_Spot, tuple[str, ...], str]]:
        parts = api_parts(path)
        spot = self._walk(parts, follow_last=follow_last, make_parents=make_parents)
        try:
            yield spot, parts, _show(parts)
        finally:
            spot.close()

    def host_dir(self, path: str) -> str:
        """The host path of the directory an API path names (links inside followed); for
        a process's working directory. 404 when missing, 400 when not a directory."""
        with self._at(path) as (spot, _, shown):
            st = self._lstat(spot, shown)
            if not stat.S_ISDIR(st.st_mode):
                raise _bad(f"not a directory: {shown}")
            parts = [*spot.parts, *([spot.name] if spot.name else [])]
            return os.path.join(self.root, *parts)

    # -- files -------------------------------------------------------------------------

    def read_file(self, path: str) -> bytes:
        """The file's bytes. 404 missing; 400 a directory or not a regular file."""
        with self._at(path) as (spot, _, shown):
            fd = self._open_final(spot, _READ, shown)
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise _bad(f"is a directory: {shown}")
            if not stat.S_ISREG(st.st_mode):
                raise _bad(f"not a regular file: {shown}")
            os.set_blocking(fd, True)
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read()
        except OSError as exc:
            raise _from_os(exc, shown) from None
        finally:
            os.close(fd)

    def open_write(self, path: str, mode: str | None = None) -> FileWriter:
        """Create or truncate the file (parents made as needed) and return its writer.

        A new file gets `mode` (default 644) exactly; an existing one keeps its mode unless
        `mode` is given.
        """
        bits = parse_mode(mode, 0o644)
        with self._at(path, make_parents=True) as (spot, parts, shown):
            if not parts:
                raise _bad("is a directory: /")
            flags = os.O_WRONLY | os.O_NONBLOCK
            try:
                fd = self._open_final(spot, flags | os.O_CREAT | os.O_EXCL, shown)
                created = True
            except SandboxError as exc:
                if exc.status != 409:
                    raise
                fd = self._open_final(spot, flags | os.O_TRUNC, shown)
                created = False
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _bad(f"not a regular file: {shown}")
            if created or mode is not None:
                os.fchmod(fd, bits)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return _SandboxWriter(fd, shown)

    def write_file(self, path: str, data: bytes | Iterable[bytes], mode: str | None = None) -> None:
        """Write `data` (bytes, or chunks) to the file; see `open_write`."""
        _write_all(self.open_write(path, mode), data)

    def upload(self, files: Iterable[tuple[str, bytes | Iterable[bytes]]]) -> None:
        """Write several ``(dest_path, data)`` files; every path is checked before any write."""
        items = list(files)
        for dest, _ in items:
            api_parts(dest)
        for dest, data in items:
            self.write_file(dest, data)

    def upload_zip(self, dest_path: str, zip_file: bytes | IO[bytes]) -> None:
        """Unpack a ZIP into the directory `dest_path` (made as needed).

        The whole archive is checked first (403 for a ZIP slip or a link entry, 400 for a bad
        or oversized archive): a refused archive writes nothing.
        """
        dest = api_parts(dest_path)
        with _open_zip(zip_file) as archive:
            plan = _zip_plan(archive, self._max_zip_bytes)
            self.create_directory(_show(dest))
            budget = [self._max_zip_bytes]
            for info, parts in plan:
                target = _show(dest + parts)
                if info.is_dir():
                    self.create_directory(target, f"{_zip_mode(info, 0o755):o}")
                    continue
                writer = self.open_write(target, f"{_zip_mode(info, 0o644):o}")
                try:
                    with archive.open(info) as src:
                        _copy_limited(src, writer, budget)
                except (zipfile.BadZipFile, OSError, EOFError):
                    writer.abort()
                    raise _bad("zip_file is not a valid ZIP archive") from None
                except BaseException:
                    writer.abort()
                    raise
                writer.close()

    def download_dir_zip(self, path: str) -> bytes:
        """The directory's tree as ZIP bytes (links and special files left out)."""
        with self._at(path) as (spot, _, shown):
            fd = self._open_final(spot, _DIR, shown)
        out = io.BytesIO()
        try:
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
                _zip_tree(archive, fd, "")
        except OSError as exc:
            raise _from_os(exc, shown) from None
        finally:
            os.close(fd)
        return out.getvalue()

    def list_files(self, path: str) -> list[dict[str, Any]]:
        """The directory's entries (by name) as ``FListFilesResponseItem`` dicts; links as
        themselves."""
        with self._at(path) as (spot, parts, shown):
            fd = self._open_final(spot, _DIR, shown)
        try:
            with os.scandir(fd) as entries:
                found = list(_still_there(entries))
        except OSError as exc:
            raise _from_os(exc, shown) from None
        finally:
            os.close(fd)
        found.sort()
        return [_info((*parts, name), st.st_mode, st.st_size, st.st_mtime) for name, st in found]

    def file_info(self, path: str) -> dict[str, Any]:
        """An ``FFileInfoResponse`` dict (links inside the sandbox followed)."""
        with self._at(path) as (spot, parts, shown):
            st = self._lstat(spot, shown)
        return _info(parts, st.st_mode, st.st_size, st.st_mtime)

    def move(self, src_path: str, dest_path: str) -> None:
        """Rename a file or directory (a link moves as itself). 409 when `dest_path` exists."""
        dest_parts = api_parts(dest_path)
        with self._at(src_path, follow_last=False) as (src, parts, shown):
            if not parts:
                raise _bad("cannot move the root directory")
            self._lstat(src, shown)
            if not dest_parts:
                raise _conflict("already exists: /")
            with self._at(dest_path, follow_last=False) as (dst, _, dest_shown):
                assert src.name is not None
                assert dst.name is not None
                try:
                    os.stat(dst.name, dir_fd=dst.dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise _from_os(exc, dest_shown) from None
                else:
                    raise _conflict(f"already exists: {dest_shown}")
                try:
                    os.rename(src.name, dst.name, src_dir_fd=src.dir_fd, dst_dir_fd=dst.dir_fd)
                except OSError as exc:
                    raise _from_os(exc, dest_shown) from None

    def create_directory(self, path: str, mode: str | None = None, *, parents: bool = True) -> None:
        """Make the directory (``mkdir -p`` unless ``parents=False``) with `mode` (755).

        An existing directory is fine with `parents` (its mode is then left alone unless
        `mode` is given); a file there is 409; without `parents` an existing directory is
        409 and a missing parent 404.
        """
        bits = parse_mode(mode, 0o755)
        with self._at(path, make_parents=parents) as (spot, parts, shown):
            if not parts or spot.name is None:  # the root, or a link to a directory
                if not parents:
                    raise _conflict(f"already exists: {shown}")
                return
            try:
                os.mkdir(spot.name, 0o700, dir_fd=spot.dir_fd)
                created = True
            except FileExistsError:
                if not parents:
                    raise _conflict(f"already exists: {shown}") from None
                created = False
            except OSError as exc:
                raise _from_os(exc, shown) from None
            try:
                fd = os.open(spot.name, _DIR, dir_fd=spot.dir_fd)
            except OSError as exc:
                if exc.errno == errno.ENOTDIR:
                    raise _conflict(f"already exists and is not a directory: {shown}") from None
                raise _from_os(exc, shown) from None
            try:
                if created or mode is not None:
                    os.fchmod(fd, bits)
            finally:
                os.close(fd)

    def delete_file(self, path: str) -> None:
        """Remove a file (or a link, as itself). 400 for a directory."""
        with self._at(path, follow_last=False) as (spot, parts, shown):
            if not parts:
                raise _bad("is a directory: /")
            assert spot.name is not None
            if stat.S_ISDIR(self._lstat(spot, shown).st_mode):
                raise _bad(f"is a directory: {shown}")
            try:
                os.unlink(spot.name, dir_fd=spot.dir_fd)
            except OSError as exc:
                raise _from_os(exc, shown) from None

    def delete_directory(self, path: str) -> None:
        """Remove a directory and everything in it (links removed as themselves)."""
        with self._at(path, follow_last=False) as (spot, parts, shown):
            if not parts:
                raise _bad("cannot delete the root directory")
            assert spot.name is not None
            if not stat.S_ISDIR(self._lstat(spot, shown).st_mode):
                raise _bad(f"not a directory: {shown}")
            try:
                fd = os.open(spot.name, _DIR, dir_fd=spot.dir_fd)
                try:
                    _empty(fd)
                finally:
                    os.close(fd)
                os.rmdir(spot.name, dir_fd=spot.dir_fd)
            except OSError as exc:
                raise _from_os(exc, shown) from None

    def set_file_permissions(
        self, path: str, mode: str, owner: str | None = None, group: str | None = None
    ) -> None:
        """Set the mode bits exactly; `owner`/`group` only where possible (else ignored)."""
        bits = parse_mode(mode, 0o644)
        with self._at(path) as (spot, _, shown):
            self._lstat(spot, shown)
            try:
                fd = self._open_final(spot, _READ, shown)
                via_proc = False
            except SandboxError as exc:
                # A file we may not read (mode 000): Linux's O_PATH still pins the inode.
                if exc.status != 403 or not hasattr(os, "O_PATH") or spot.name is None:
                    raise
                fd = self._open_final(spot, os.O_PATH, shown)
                via_proc = True
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):  # swapped in since the walk
                raise _forbidden(f"a symbolic link was swapped in on the way to {shown}")
            if via_proc:
                os.chmod(f"/proc/self/fd/{fd}", bits)
            else:
                os.fchmod(fd, bits)
            uid, gid = _account(owner, "pwd"), _account(group, "grp")
            if (uid, gid) != (-1, -1):
                with contextlib.suppress(OSError):
                    if via_proc:
                        os.chown(f"/proc/self/fd/{fd}", uid, gid)
                    else:
                        os.fchown(fd, uid, gid)
        except OSError as exc:
            raise _from_os(exc, shown) from None
        finally:
            os.close(fd)

    # -- watching ----------------------------------------------------------------------

    async def watch_start(self, path: str, recursive: bool = False) -> dict[str, Any]:
        """Start watching a directory; answers ``{"watch_id": ...}``. Needs a running loop."""
        parts = api_parts(path)
        with self._at(path) as (spot, _, shown):
            if not stat.S_ISDIR(self._lstat(spot, shown).st_mode):
                raise _bad(f"not a directory: {shown}")
        watch = _Watch(parts, recursive)
        watch_id = uuid.uuid4().hex
        first = self._snapshot(watch)  # taken now, so a change right after start is seen
        watch.task = asyncio.get_running_loop().create_task(self._poll(watch, first))
        self._watches[watch_id] = watch
        return {"watch_id": watch_id}

    async def watch_stop(self, watch_id: str) -> None:
        """Stop a watch (its event streams end). 404 for an unknown id."""
        watch = self._watches.pop(watch_id, None)
        if watch is None:
            raise SandboxError(404, "not_found", f"watch {watch_id!r} not found")
        await _stop(watch)

    def watch_events(self, watch_id: str, *, after: int = 0) -> AsyncIterator[Event]:
        """The watch's events (``WatchEventsResponse`` dicts) with ids above `after`, until
        it is stopped. 404 for an unknown id."""
        watch = self._watches.get(watch_id)
        if watch is None:
            raise SandboxError(404, "not_found", f"watch {watch_id!r} not found")
        return watch.log.follow(after)

    async def _poll(self, watch: _Watch, before: _Snap) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            # On the loop, not a thread: aclose() then never races a scan for the root fd.
            now = self._snapshot(watch)
            for data in _diff(watch.parts, before, now):
                watch.log.add(data)
            before = now

    def _snapshot(self, watch: _Watch) -> _Snap:
        snap: _Snap = {}
        try:
            spot = self._walk(watch.parts, follow_last=True)
        except SandboxError:
            return snap  # the directory is gone (or became a link out): nothing in it
        try:
            fd = os.open(spot.name, _DIR, dir_fd=spot.dir_fd) if spot.name else os.dup(spot.dir_fd)
        except OSError:
            return snap
        finally:
            spot.close()
        try:
            _scan(fd, (), watch.recursive, snap)
        finally:
            os.close(fd)
        return snap

    async def aclose(self, *, remove: bool = False) -> None:
        """Stop every watch and release the root (`remove`: delete the whole tree too)."""
        watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            await _stop(watch)
        if self._root_fd >= 0:
            if remove:
                _empty(self._root_fd)
            os.close(self._root_fd)
            self._root_fd = -1
            if remove:
                with contextlib.suppress(OSError):
                    os.rmdir(self.root)


async def _stop(watch: _Watch) -> None:
    if watch.task is not None:
        watch.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch.task
    watch.log.close()


def _zip_tree(archive: zipfile.ZipFile, fd: int, prefix: str) -> None:
    """Add the tree of the directory `fd` to `archive`, never following a link."""
    with os.scandir(fd) as entries:
        names = sorted(e.name for e in entries)
    for name in names:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        arcname = prefix + name
        if stat.S_ISDIR(st.st_mode):
            info = zipfile.ZipInfo(arcname + "/", _zip_stamp(st.st_mtime))
            info.external_attr = (st.st_mode & 0xFFFF) << 16 | 0x10
            archive.writestr(info, b"")
            sub = os.open(name, _DIR, dir_fd=fd)
            try:
                _zip_tree(archive, sub, arcname + "/")
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            src = os.open(name, _READ, dir_fd=fd)
            try:
                os.set_blocking(src, True)
                info = zipfile.ZipInfo(arcname, _zip_stamp(st.st_mtime))
                info.external_attr = (st.st_mode & 0xFFFF) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(info, "w") as dst, os.fdopen(src, "rb", closefd=False) as f:
                    while chunk := f.read(CHUNK):
                        dst.write(chunk)
            finally:
                os.close(src)


def _empty(fd: int) -> None:
    """Delete everything in the directory `fd`, never following a link."""
    with os.scandir(fd) as entries:
        names = [e.name for e in entries]
    for name in names:
        try:
            sub = os.open(name, _DIR, dir_fd=fd)
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            os.unlink(name, dir_fd=fd)
            continue
        try:
            _empty(sub)
        finally:
            os.close(sub)
        os.rmdir(name, dir_fd=fd)


def _scan(fd: int, prefix: tuple[str, ...], recursive: bool, snap: _Snap) -> None:
    try:
        with os.scandir(fd) as entries:
            found = [(e.name, e.stat(follow_symlinks=False)) for e in entries]
    except OSError:
        return
    for name, st in found:
        is_dir = stat.S_ISDIR(st.st_mode)
        rel = (*prefix, name)
        snap[rel] = (is_dir, st.st_ino, st.st_mtime_ns, st.st_size)
        if is_dir and recursive:
            try:
                sub = os.open(name, _DIR, dir_fd=fd)
            except OSError:
                continue
            try:
                _scan(sub, rel, recursive, snap)
            finally:
                os.close(sub)


def _event(kind: str, base: tuple[str, ...], rel: tuple[str, ...], is_dir: bool) -> dict[str, Any]:
    return {"type": kind, "path": _show(base + rel), "name": rel[-1], "is_dir": is_dir}


def _diff(base: tuple[str, ...], before: _Snap, after: _Snap) -> list[dict[str, Any]]:
    """The ``WatchEventsResponse`` events between two snapshots (a pure function).

    An inode that left one path and appeared at another was renamed: ``RENAME`` on the old
    path, then ``CREATE`` on the new one (inotify's order). Deletions come first, deepest
    first; then creations and writes, shallowest first.
    """
    gone = {r: v for r, v in before.items() if r not in after or after[r][0] != v[0]}
    new = {r: v for r, v in after.items() if r not in before or before[r][0] != v[0]}
    moved_from = {v[1]: rel for rel, v in gone.items()}
    renamed: dict[tuple[str, ...], tuple[str, ...]] = {}  # new path -> old path
    for rel, v in new.items():
        old = moved_from.get(v[1])
        if old is not None and before[old][0] == v[0]:
            renamed[rel] = old
    renamed_old = set(renamed.values())
    events: list[dict[str, Any]] = []
    for rel in sorted(gone, key=lambda r: (-len(r), r)):
        kind = "RENAME" if rel in renamed_old else "DELETE"
        events.append(_event(kind, base, rel, gone[rel][0]))
    for rel in sorted(after, key=lambda r: (len(r), r)):
        is_dir, ino, mtime, size = after[rel]
        if rel in new:
            events.append(_event("CREATE", base, rel, is_dir))
        elif not is_dir and before[rel][1:] != (ino, mtime, size):
            events.append(_event("WRITE", base, rel, is_dir))
    return events


def _account(name: str | None, db: str) -> int:
    """A user or group name or number as an id; -1 (leave alone) when unknown or absent."""
    if name is None or name == "":
        return -1
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid if db == "pwd" else grp.getgrnam(name).gr_gid
    except KeyError:
        return -1


# -- the in-memory stand-in --------------------------------------------------------------


@attrs.define(eq=False)
class _Node:
    mode: int  # full st_mode: S_IFDIR or S_IFREG | permission bits
    mtime: float
    data: bytearray = attrs.field(factory=bytearray)
    children: dict[str, _Node] = attrs.field(factory=dict)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


class _MemoryWriter:
    def __init__(self, fs: MemoryFS, parts: tuple[str, ...], node: _Node, new: bool) -> None:
        self._fs = fs
        self._parts = parts
        self._node = node
        self._new = new

    def write(self, data: bytes) -> None:
        self._node.data += data
        self._node.mtime = self._fs._clock()

    def close(self) -> None:
        if not self._new:
            self._fs._notify("WRITE", self._parts, False)

    abort = close


class MemoryFS:
    """The in-memory stand-in for `SandboxFS`: same methods, same path rules and errors,
    no links, no host files. Watch events are reported as each change is made.

    `clock` gives modification times (seconds since the epoch; `time.time` by default).
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.time, max_zip_bytes: int = MAX_ZIP_BYTES
    ) -> None:
        self._clock = clock
        self._root = _Node(stat.S_IFDIR | 0o755, clock())
        self._max_zip_bytes = max_zip_bytes
        self._watches: dict[str, _Watch] = {}

    def _find(self, parts: tuple[str, ...]) -> _Node:
        node = self._root
        for i, part in enumerate(parts):
            if not node.is_dir:
                raise _bad(f"not a directory: {_show(parts[:i])}")
            child = node.children.get(part)
            if child is None:
                raise _not_found(_show(parts))
            node = child
        return node

    def _parent(self, parts: tuple[str, ...], *, make: bool = False) -> _Node:
        node = self._root
        for i, part in enumerate(parts[:-1]):
            child = node.children.get(part)
            if child is None:
                if not make:
                    raise _not_found(_show(parts))
                child = node.children[part] = _Node(stat.S_IFDIR | 0o755, self._clock())
                self._notify("CREATE", parts[: i + 1], True)
            if not child.is_dir:
                raise _bad(f"not a directory: {_show(parts[: i + 1])}")
            node = child
        return node

    def _notify(self, kind: str, parts: tuple[str, ...], is_dir: bool) -> None:
        for watch in self._watches.values():
            n = len(watch.parts)
            inside = parts[:n] == watch.parts and len(parts) > n
            if inside and (watch.recursive or len(parts) == n + 1):
                watch.log.add(_event(kind, watch.parts, parts[n:], is_dir))

    def read_file(self, path: str) -> bytes:
        parts = api_parts(path)
        node = self._find(parts)
        if node.is_dir:
            raise _bad(f"is a directory: {_show(parts)}")
        return bytes(node.data)

    def open_write(self, path: str, mode: str | None = None) -> FileWriter:
        bits = parse_mode(mode, 0o644)
        parts = api_parts(path)
        if not parts:
            raise _bad("is a directory: /")
        parent = self._parent(parts, make=True)
        node = parent.children.get(parts[-1])
        if node is not None and node.is_dir:
            raise _bad(f"is a directory: {_show(parts)}")
        new = node is None
        if node is None:
            node = parent.children[parts[-1]] = _Node(stat.S_IFREG | bits, self._clock())
            self._notify("CREATE", parts, False)
        else:
            node.data = bytearray()
            node.mtime = self._clock()
            if mode is not None:
                node.mode = stat.S_IFREG | bits
        return _MemoryWriter(self, parts, node, new)

    def write_file(self, path: str, data: bytes | Iterable[bytes], mode: str | None = None) -> None:
        _write_all(self.open_write(path, mode), data)

    def upload(self, files: Iterable[tuple[str, bytes | Iterable[bytes]]]) -> None:
        items = list(files)
        for dest, _ in items:
            api_parts(dest)
        for dest, data in items:
            self.write_file(dest, data)

    def upload_zip(self, dest_path: str, zip_file: bytes | IO[bytes]) -> None:
        dest = api_parts(dest_path)
        with _open_zip(zip_file) as archive:
            plan = _zip_plan(archive, self._max_zip_bytes)
            self.create_directory(_show(dest))
            budget = [self._max_zip_bytes]
            for info, parts in plan:
                target = _show(dest + parts)
                if info.is_dir():
                    self.create_directory(target, f"{_zip_mode(info, 0o755):o}")
                    continue
                writer = self.open_write(target, f"{_zip_mode(info, 0o644):o}")
                try:
                    with archive.open(info) as src:
                        _copy_limited(src, writer, budget)
                except (zipfile.BadZipFile, OSError, EOFError):
                    raise _bad("zip_file is not a valid ZIP archive") from None
                finally:
                    writer.close()

    def download_dir_zip(self, path: str) -> bytes:
        parts = api_parts(path)
        node = self._find(parts)
        if not node.is_dir:
            raise _bad(f"not a directory: {_show(parts)}")
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            stack: list[tuple[str, _Node]] = [("", node)]
            while stack:
                prefix, here = stack.pop()
                for name in sorted(here.children):
                    child = here.children[name]
                    if child.is_dir:
                        info = zipfile.ZipInfo(prefix + name + "/", _zip_stamp(child.mtime))
                        info.external_attr = (child.mode & 0xFFFF) << 16 | 0x10
                        archive.writestr(info, b"")
                        stack.append((prefix + name + "/", child))
                    else:
                        info = zipfile.ZipInfo(prefix + name, _zip_stamp(child.mtime))
                        info.external_attr = (child.mode & 0xFFFF) << 16
                        archive.writestr(info, bytes(child.data), zipfile.ZIP_DEFLATED)
        return out.getvalue()

    def list_files(self, path: str) -> list[dict[str, Any]]:
        parts = api_parts(path)
        node = self._find(parts)
        if not node.is_dir:
            raise _bad(f"not a directory: {_show(parts)}")
        return [
            _info((*parts, name), c.mode, len(c.data), c.mtime)
            for name, c in sorted(node.children.items())
        ]

    def file_info(self, path: str) -> dict[str, Any]:
        parts = api_parts(path)
        node = self._find(parts)
        return _info(parts, node.mode, len(node.data), node.mtime)

    def move(self, src_path: str, dest_path: str) -> None:
        src, dest = api_parts(src_path), api_parts(dest_path)
        if not src:
            raise _bad("cannot move the root directory")
        node = self._find(src)
        if not dest or self._parent(dest).children.get(dest[-1]) is not None:
            raise _conflict(f"already exists: {_show(dest)}")
        if node.is_dir and dest[: len(src)] == src:
            raise _bad(f"invalid argument: {_show(dest)}")
        self._parent(dest).children[dest[-1]] = self._parent(src).children.pop(src[-1])
        self._notify("RENAME", src, node.is_dir)
        self._notify("CREATE", dest, node.is_dir)

    def create_directory(self, path: str, mode: str | None = None, *, parents: bool = True) -> None:
        bits = parse_mode(mode, 0o755)
        parts = api_parts(path)
        if not parts:
            if not parents:
                raise _conflict("already exists: /")
            return
        parent = self._parent(parts, make=parents)
        node = parent.children.get(parts[-1])
        if node is not None:
            if not node.is_dir:
                raise _conflict(f"already exists and is not a directory: {_show(parts)}")
            if not parents:
                raise _conflict(f"already exists: {_show(parts)}")
            if mode is not None:
                node.mode = stat.S_IFDIR | bits
            return
        parent.children[parts[-1]] = _Node(stat.S_IFDIR | bits, self._clock())
        self._notify("CREATE", parts, True)

    def delete_file(self, path: str) -> None:
        parts = api_parts(path)
        node = self._find(parts)
        if node.is_dir:
            raise _bad(f"is a directory: {_show(parts)}")
        del self._parent(parts).children[parts[-1]]
        self._notify("DELETE", parts, False)

    def delete_directory(self, path: str) -> None:
        parts = api_parts(path)
        if not parts:
            raise _bad("cannot delete the root directory")
        node = self._find(parts)
        if not node.is_dir:
            raise _bad(f"not a directory: {_show(parts)}")
        self._delete_tree(parts, node)
        del self._parent(parts).children[parts[-1]]
        self._notify("DELETE", parts, True)

    def _delete_tree(self, parts: tuple[str, ...], node: _Node) -> None:
        for name, child in sorted(node.children.items()):
            if child.is_dir:
                self._delete_tree((*parts, name), child)
            self._notify("DELETE", (*parts, name), child.is_dir)
        node.children.clear()

    def set_file_permissions(
        self, path: str, mode: str, owner: str | None = None, group: str | None = None
    ) -> None:
        bits = parse_mode(mode, 0o644)
        node = self._find(api_parts(path))
        node.mode = stat.S_IFMT(node.mode) | bits  # owner/group: accepted, nothing to apply

    async def watch_start(self, path: str, recursive: bool = False) -> dict[str, Any]:
        parts = api_parts(path)
        if not self._find(parts).is_dir:
            raise _bad(f"not a directory: {_show(parts)}")
        watch_id = uuid.uuid4().hex
        self._watches[watch_id] = _Watch(parts, recursive)
        return {"watch_id": watch_id}

    async def watch_stop(self, watch_id: str) -> None:
        watch = self._watches.pop(watch_id, None)
        if watch is None:
            raise SandboxError(404, "not_found", f"watch {watch_id!r} not found")
        watch.log.close()

    def watch_events(self, watch_id: str, *, after: int = 0) -> AsyncIterator[Event]:
        watch = self._watches.get(watch_id)
        if watch is None:
            raise SandboxError(404, "not_found", f"watch {watch_id!r} not found")
        return watch.log.follow(after)

    async def aclose(self) -> None:
        watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            watch.log.close()
