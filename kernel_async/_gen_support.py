"""What generated models and methods share: the file input type and repr helpers."""

from __future__ import annotations

import os
from typing import IO, Union

__all__ = ["FileInput", "_hide_query", "_redacted"]

FileInput = Union[
    bytes,
    "os.PathLike[str]",
    IO[bytes],
    tuple[str | None, Union[bytes, "os.PathLike[str]", IO[bytes]]],
    tuple[str | None, Union[bytes, "os.PathLike[str]", IO[bytes]], str | None],
]
"""A file to send: its bytes, a path, a binary file object, or the official SDK's
``(filename, content)`` / ``(filename, content, content_type)`` tuples."""


def _hide_query(url: str | None) -> str:
    # URLs whose query string carries a session token are shown without it.
    if url is None:
        return "None"
    base, sep, _ = url.partition("?")
    return repr(base + "?<redacted>" if sep else base)


def _redacted(value: object) -> str:
    return "None" if value is None else "<redacted>"
