"""What generated models and methods share: the file input type and repr helpers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import IO, Union

__all__ = ["BinaryContent", "FileInput", "_hide_query", "_redacted"]

FileInput = Union[
    bytes,
    "os.PathLike[str]",
    IO[bytes],
    tuple[str | None, Union[bytes, "os.PathLike[str]", IO[bytes]]],
    tuple[str | None, Union[bytes, "os.PathLike[str]", IO[bytes]], str | None],
]
"""A file to send: its bytes, a path, a binary file object, or the official SDK's
``(filename, content)`` / ``(filename, content, content_type)`` tuples."""


class BinaryContent(bytes):
    """A binary result (a screenshot, a file, an archive): the bytes themselves, with the
    response's `headers` (e.g. a next-chunk cursor) and `content_type` beside them."""

    headers: Mapping[str, str]

    def __new__(cls, data: bytes, headers: Mapping[str, str] | None = None) -> BinaryContent:
        made = super().__new__(cls, data)
        made.headers = dict(headers or {})
        return made

    @property
    def content_type(self) -> str | None:
        """The response's Content-Type, if it had one."""
        for key, value in self.headers.items():
            if key.lower() == "content-type":
                return value
        return None

    def __repr__(self) -> str:
        return f"<BinaryContent {len(self)} bytes, {self.content_type or 'no type'}>"


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
