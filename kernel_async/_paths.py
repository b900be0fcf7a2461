"""Path templates: each ID becomes exactly one percent-encoded path segment."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote

__all__ = ["segment"]


def segment(value: object, name: str) -> str:
    """Percent-encode one ID as a single path segment.

    Everything but RFC 3986 path characters (unreserved, sub-delims, ``:`` and ``@``)
    is encoded, so `/`, `?`, `#`, `%` and spaces can never change which resource is
    addressed. Raises before any I/O.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must be a non-empty string")
    if value == "." or value == "..":
        # Servers and proxies collapse dot segments, so these would address another resource.
        raise ValueError(f"{name} must not be {value!r}: it is a relative path segment")
    try:
        return _quote(value)
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name} is not valid Unicode text (lone surrogate)") from exc


@lru_cache(maxsize=4096)
def _quote(value: str) -> str:
    # Agents reuse the same few browser and replay IDs: encode each once.
    # RFC 3986 pchar minus "/": sub-delims, ":" and "@" stay as they are (as the official
    # SDK sends them); "/", "?", "#", "%" and spaces are encoded, so one ID stays one segment.
    return quote(value, safe="!$&'()*+,;=:@", encoding="utf-8", errors="strict")
