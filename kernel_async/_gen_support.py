"""What generated models and methods share: the file input type, binary results, repr
helpers, and the base of every resource class."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, NoReturn, TypeVar

if TYPE_CHECKING:
    from multidict import CIMultiDict


__all__ = [
    "AsyncBinaryContent",
    "BinaryContent",
    "FileInput",
    "OfficialOnly",
    "Resource",
    "_hide_query",
    "_redacted",
    "blocking",
    "charset_of",
    "official_only",
]

_Content = bytes | os.PathLike[str] | IO[bytes]
FileInput = _Content | tuple[str | None, _Content] | tuple[str | None, _Content, str | None]
"""A file to send: its bytes, a path, a binary file object, or the official SDK's
``(filename, content)`` / ``(filename, content, content_type)`` tuples."""


def charset_of(content_type: str | None) -> str:
    """The charset a Content-Type names (``text/plain; charset="latin-1"`` -> ``latin-1``),
    else ``utf-8``. Pure; an unknown charset also falls back to ``utf-8``."""
    import codecs

    for part in (content_type or "").split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            name = value.strip().strip('"').strip("'")
            try:
                return codecs.lookup(name).name if name else "utf-8"
            except LookupError:
                return "utf-8"
    return "utf-8"


OFFICIAL_ONLY: Final[dict[str, str]] = {
    "with_raw_response": (
        "results here are always parsed: call the method itself; a failed call raises an "
        "APIStatusError carrying .status_code, .headers and .body, and binary results "
        "(bytes) carry the response .headers"
    ),
    "with_streaming_response": (
        "call the method itself: event streams are read as they arrive, and a binary "
        "result streams straight to disk through the method's *_to twin "
        "(capture_screenshot_to, fs.read_file_to, replays.download_to, ...)"
    ),
    "response": (
        "errors carry no httpx response: an APIStatusError has .status_code, .headers and "
        ".body (the parsed Error at .error); a connection error or timeout got no response"
    ),
    "request": "errors carry no httpx request: read .method and .url",
    "binary.http_request": "there is no httpx request: read .method and .url",
    "binary.http_version": "the HTTP version is not kept: read .status_code and .headers",
    "binary.elapsed": "the time taken is not kept: time the call, or use on_retry events",
    "browsers.request": (
        "there is no raw HTTP through the browser (an httpx response): use "
        "browsers.curl(id_or_name, url=..., method=...), which answers the status, "
        "headers and body"
    ),
}
"""Attributes the official SDK's resources, clients and errors have that this SDK lacks
on purpose, and what to do instead (docs/migrating.md)."""


def official_only(owner: str, name: str, hint: str | None = None) -> str:
    """The AttributeError message for official SDK attribute `name` read on an `owner`
    (a class name): Python's usual sentence, then what to do instead (`OFFICIAL_ONLY`
    under `hint`, else under `name`). Pure."""
    return (
        f"{owner!r} object has no attribute {name!r} (the official SDK's); "
        f"{OFFICIAL_ONLY[hint or name]} (see docs/migrating.md)"
    )


class OfficialOnly:
    """A class attribute standing for an official SDK attribute this SDK lacks: reading
    it raises an AttributeError that says what to do instead (so ``hasattr`` is false).
    `hint` is its key in `OFFICIAL_ONLY` when not the attribute's own name."""

    def __init__(self, hint: str | None = None) -> None:
        self._hint = hint

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, obj: object, owner: type | None = None) -> NoReturn:
        kind = owner if owner is not None else type(obj)
        message = official_only(kind.__name__, self._name, self._hint)
        raise AttributeError(message, name=self._name, obj=obj)


class Resource:
    """Base of every resource class and of the clients (async and blocking). Official
    code that reaches for ``.with_raw_response`` or ``.with_streaming_response`` gets an
    AttributeError naming what to do here; type checkers see no such attribute."""

    __slots__ = ()

    if not TYPE_CHECKING:  # at runtime only: mypy keeps reporting the missing attribute
        with_raw_response = OfficialOnly()
        with_streaming_response = OfficialOnly()


_B = TypeVar("_B", bound="_Body")


class _Body(bytes):
    """A binary result's bytes with the response's headers: what `BinaryContent` and
    `AsyncBinaryContent` share."""

    headers: CIMultiDict[str]
    """The response headers; names match in any case (``headers["content-type"]``), as
    in the official SDK's (httpx) headers."""
    status_code: int
    """The response's HTTP status (as the official ``response.status_code``)."""
    url: str
    """The URL the result came from (as the official ``response.url``)."""
    method: str
    """The request's method (as the official ``response.method``)."""
    is_closed: bool = True
    """Always true: the body was read whole (as the official ``response.is_closed``)."""

    if not TYPE_CHECKING:  # httpx details: the official names say what to read instead
        http_request = OfficialOnly("binary.http_request")
        http_version = OfficialOnly("binary.http_version")
        elapsed = OfficialOnly("binary.elapsed")

    def __new__(
        cls: type[_B],
        data: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        status_code: int = 200,
        url: str = "",
        method: str = "GET",
    ) -> _B:
        from multidict import CIMultiDict  # aiohttp's: not loaded to import the package

        made = super().__new__(cls, data)
        made.headers = CIMultiDict(headers or {})  # a copy of its own, picklable
        made.status_code, made.url, made.method = status_code, url, method
        return made

    @property
    def content_type(self) -> str | None:
        """The response's Content-Type, if it had one."""
        return self.headers.get("Content-Type")

    def _text(self) -> str:
        return self.decode(charset_of(self.content_type), errors="replace")

    def _json(self) -> object:
        import json

        return json.loads(self._text())

    def _chunks(self, chunk_size: int | None) -> Iterator[bytes]:
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        size = chunk_size or max(len(self), 1)
        for start in range(0, len(self), size):
            yield bytes(self[start : start + size])

    def _text_chunks(self, chunk_size: int | None) -> Iterator[str]:
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        text = self._text()
        size = chunk_size or max(len(text), 1)
        for start in range(0, len(text), size):
            yield text[start : start + size]

    def _write(self, file: str | os.PathLike[str]) -> Path:
        from ._files import AtomicFile

        out = AtomicFile(file)
        try:
            out.file.write(self)
            return out.commit()
        finally:
            out.discard()  # after a commit there is nothing left to remove

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {len(self)} bytes, {self.content_type or 'no type'}>"


class BinaryContent(_Body):
    """A binary result of the blocking client (a screenshot, a file, an archive): the
    bytes themselves, with the response's `headers` (e.g. a next-chunk cursor) and
    `content_type` beside them.

    Code written for the official SDK's binary responses runs too: `read`, `text`,
    `json`, `iter_bytes`, `iter_text`, `iter_lines`, `write_to_file`, `parse` and
    `close` behave as the official blocking ones do (the body is already here, so none
    of them does I/O except `write_to_file`). The async client gives an
    `AsyncBinaryContent`, whose methods are awaited.
    """

    def read(self) -> bytes:
        """The body as plain `bytes` (as the official ``response.read()``)."""
        return bytes(self)

    def parse(self) -> bytes:
        """The body as plain `bytes` (what the official binary ``parse()`` gives)."""
        return bytes(self)

    def text(self) -> str:
        """The body decoded with the Content-Type's charset (else UTF-8; undecodable
        bytes become U+FFFD rather than raising)."""
        return self._text()

    def json(self) -> object:
        """The body parsed as JSON (`json.JSONDecodeError`, a `ValueError`, if it is not)."""
        return self._json()

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """The body in chunks of `chunk_size` bytes (all of it at once when `None`)."""
        return self._chunks(chunk_size)

    def iter_text(self, chunk_size: int | None = None) -> Iterator[str]:
        """The decoded body (see `text`) in chunks of at most `chunk_size` characters."""
        return self._text_chunks(chunk_size)

    def iter_lines(self) -> Iterator[str]:
        """The decoded body line by line, without line endings."""
        return iter(self._text().splitlines())

    def write_to_file(self, file: str | os.PathLike[str]) -> Path:
        """Save the body to `file` atomically (a temporary file beside it, renamed into
        place: `file` is the whole body or untouched). Returns the path."""
        return self._write(file)

    def close(self) -> None:
        """Nothing to release (the body was read whole); kept so official code runs."""


class AsyncBinaryContent(_Body):
    """A binary result of the async client (a screenshot, a file, an archive): the bytes
    themselves, with the response's `headers` and `content_type` beside them.

    Code written for the official async SDK's binary responses runs as it is: ``await
    resp.read()``, ``text()``, ``json()``, ``parse()``, ``close()`` and
    ``write_to_file(path)`` are awaited, and ``iter_bytes()``, ``iter_text()`` and
    ``iter_lines()`` are iterated with ``async for``. The body is already here, so only
    `write_to_file` does I/O (in a worker thread, off the event loop). Used as the
    `bytes` it is, it needs no ``await`` at all.
    """

    async def read(self) -> bytes:
        """The body as plain `bytes` (as the official ``await response.read()``)."""
        return bytes(self)

    async def parse(self) -> bytes:
        """The body as plain `bytes` (what the official binary ``await parse()`` gives)."""
        return bytes(self)

    async def text(self) -> str:
        """The body decoded with the Content-Type's charset (else UTF-8; undecodable
        bytes become U+FFFD rather than raising)."""
        return self._text()

    async def json(self) -> object:
        """The body parsed as JSON (`json.JSONDecodeError`, a `ValueError`, if it is not)."""
        return self._json()

    async def iter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """The body in chunks of `chunk_size` bytes (all of it at once when `None`)."""
        for chunk in self._chunks(chunk_size):
            yield chunk

    async def iter_text(self, chunk_size: int | None = None) -> AsyncIterator[str]:
        """The decoded body (see `text`) in chunks of at most `chunk_size` characters."""
        for chunk in self._text_chunks(chunk_size):
            yield chunk

    async def iter_lines(self) -> AsyncIterator[str]:
        """The decoded body line by line, without line endings."""
        for line in self._text().splitlines():
            yield line

    async def write_to_file(self, file: str | os.PathLike[str]) -> Path:
        """Save the body to `file` atomically (a temporary file beside it, renamed into
        place: `file` is the whole body or untouched), in a worker thread. Returns the path."""
        from anyio.to_thread import run_sync

        return await run_sync(self._write, file)

    async def close(self) -> None:
        """Nothing to release (the body was read whole); kept so official code runs."""


def blocking(content: AsyncBinaryContent) -> BinaryContent:
    """The blocking client's `BinaryContent` for an async result, without copying its
    bytes (both classes have the same layout; the result is the caller's alone)."""
    content.__class__ = BinaryContent  # type: ignore[assignment]
    return content  # type: ignore[return-value]


def _hide_query(url: str | None) -> str:
    # URLs whose query string or fragment carries a session token, or whose authority
    # carries credentials (user:pass@), are shown without them.
    if url is None:
        return "None"
    base, sep, _ = url.partition("?")
    base, hash_, _ = base.partition("#")
    scheme, slashes, rest = base.partition("://")
    authority, slash, path = rest.partition("/")
    if slashes and "@" in authority:
        base = f"{scheme}://<redacted>@{authority.rpartition('@')[2]}{slash}{path}"
    return repr(base + ("?<redacted>" if sep or hash_ else ""))


def _redacted(value: object) -> str:
    return "None" if value is None else "<redacted>"
