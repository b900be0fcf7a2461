"""Client options checked at construction: nothing malformed ever reaches the wire.

Pure functions: each takes the user's value and returns the normalised one or raises
`ValueError`/`TypeError` naming the parameter.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Final
from urllib.parse import urlsplit

from ._errors import KernelError

__all__ = [
    "DEFAULT_BASE_URL",
    "ENVIRONMENTS",
    "choose_base_url",
    "scope_headers",
    "check_api_key",
    "check_base_url",
    "check_headers",
    "env_proxy",
    "redact_url",
]

DEFAULT_BASE_URL: Final = "https://api.onkernel.com"
# The official client's `environment=` names for API roots.
ENVIRONMENTS: Final = {"production": DEFAULT_BASE_URL, "development": "https://localhost:3001"}


def scope_headers(project_id: str | None, project: str | None) -> dict[str, str]:
    """The headers that scope requests to a project, as the official client sends them."""
    named = {"X-Kernel-Project-Id": project_id, "X-Kernel-Project": project}
    return {name: value for name, value in named.items() if value is not None}


def choose_base_url(base_url: str | None, environment: str | None) -> str | None:
    """The API root from `base_url`, else the official `environment` name (it wins over
    ``KERNEL_BASE_URL``), else `None`: then ``KERNEL_BASE_URL`` or the default apply."""
    if environment is not None and environment not in ENVIRONMENTS:
        names = " or ".join(repr(n) for n in ENVIRONMENTS)
        raise ValueError(f"environment must be {names}, got {environment!r}")
    if base_url is not None or environment is None:
        return base_url
    return ENVIRONMENTS[environment]


# RFC 9110 field-value: visible ASCII, SP, HTAB and obs-text; never other controls.
_CONTROL = frozenset(chr(c) for c in (*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F))
# RFC 3986: what may appear in a URL path without percent-encoding.
_PATH_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/%"
)


def redact_url(url: str) -> str:
    """`url` fit for an error message: its password and query (tokens) replaced."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = "***" if parts.query else ""
    return parts._replace(netloc=netloc, query=query, fragment="").geturl()


def _bad_char(text: str) -> str | None:
    """The first character that cannot travel in a header value, if any."""
    for c in text:
        if c in _CONTROL or "\ud800" <= c <= "\udfff":
            return c
    return None


def check_api_key(api_key: str | None) -> str:
    """The API key, from the argument or ``KERNEL_API_KEY``."""
    if api_key is None:
        api_key = os.environ.get("KERNEL_API_KEY")
    if api_key is None or api_key == "":
        raise KernelError(
            "no API key: pass api_key=... or set the KERNEL_API_KEY environment variable"
        )
    if not isinstance(api_key, str):
        raise TypeError(f"api_key must be a str, got {type(api_key).__name__}")
    # The key itself is never echoed: only the position and code of the bad character.
    for i, c in enumerate(api_key):
        if not ("\x21" <= c <= "\x7e"):
            raise ValueError(
                f"api_key contains a character that cannot be sent in a header "
                f"(U+{ord(c):04X} at position {i}); check how the key was copied"
            )
    return api_key


def check_base_url(base_url: str | None) -> tuple[str, bool]:
    """The API root without a trailing slash, and whether it sends in clear to a
    remote host (plain http to a non-loopback host)."""
    if base_url is None:
        base_url = os.environ.get("KERNEL_BASE_URL") or DEFAULT_BASE_URL
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a str, got {type(base_url).__name__}")
    bad = next((c for c in base_url if not c.isascii() or not c.isprintable() or c == " "), None)
    if bad is not None:
        # urlsplit would silently drop CR, LF and TAB; anything else would reach the
        # request line raw.
        raise ValueError(
            f"base_url contains {bad!r}, which cannot appear in a URL; percent-encode it"
        )
    url = urlsplit(base_url)
    try:
        url.port  # noqa: B018 - validates the port
    except ValueError:
        raise ValueError(f"base_url has an invalid port: {redact_url(base_url)!r}") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(
            f"base_url must be an http(s) URL with a host, got {redact_url(base_url)!r}"
        )
    if "@" in url.netloc:
        raise ValueError("base_url must not carry credentials; pass api_key instead")
    if url.query or url.fragment or base_url.endswith(("?", "#")):
        shown = redact_url(base_url)
        raise ValueError(f"base_url must not have a query or fragment, got {shown!r}")
    if any(c not in _PATH_CHARS for c in url.path):
        raise ValueError(f"base_url has characters not allowed in a URL path: {url.path!r}")
    clear = url.scheme == "http" and not is_loopback(url.hostname)
    return f"{url.scheme}://{url.netloc}{url.path.rstrip('/')}", clear


def check_headers(headers: Mapping[str, str] | None, name: str) -> dict[str, str]:
    """A copy of `headers` after checking names and values (no injection, no controls)."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError(f"{name} must be a mapping of str to str, got {type(headers).__name__}")
    out: dict[str, str] = {}
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"{name} must map str to str; got {key!r}: {type(value).__name__}")
        problem = _header_problem(key, value)
        if problem is not None:
            raise ValueError(f"{name}: {problem}")
        out[key] = value
    return out


@lru_cache(maxsize=1024)
def _header_problem(key: str, value: str) -> str | None:
    """What is wrong with one header, or None (each distinct pair is checked once: calls
    send the same few headers again and again)."""
    if not key or not key.isascii() or any(c in key for c in '()<>@,;:\\"/[]?={} \t'):
        return f"invalid header name {key!r}"
    if _bad_char(key) is not None:
        return f"invalid header name {key!r}"
    bad = _bad_char(value)
    if bad is not None:
        # CR/LF would let the value start a new header or request; other controls and
        # lone surrogates cannot be encoded at all.
        return (
            f"the value of header {key!r} contains the control or unencodable "
            f"character U+{ord(bad):04X}"
        )
    return None


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine (``localhost`` or a loopback address)."""
    if host.lower() in ("localhost", "localhost.") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def env_proxy(base_url: str) -> str | None:
    """The proxy the environment sets for `base_url` (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, minus ``NO_PROXY``), as httpx and the official SDK read them."""
    from urllib.request import getproxies, proxy_bypass_environment  # type: ignore[attr-defined]

    proxies = getproxies()
    if not proxies:
        return None
    url = urlsplit(base_url)
    host = url.hostname or ""
    netloc = host if url.port is None else f"{host}:{url.port}"
    if proxy_bypass_environment(netloc, proxies):
        return None
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if proxy and "://" not in proxy:
        proxy = "http://" + proxy  # `HTTP_PROXY=host:3128`, as curl and httpx accept
    if not proxy or not proxy.startswith(("http://", "https://")):
        return None  # e.g. ALL_PROXY=socks5://...: aiohttp speaks only HTTP to a proxy
    return proxy
