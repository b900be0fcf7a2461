"""Response models (frozen attrs classes) and the one cattrs converter that builds them."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timezone
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ._pagination import PageInfo

if TYPE_CHECKING:
    import cattrs

    from ._gen.models._shared import (
        BrowserLocation,
        BrowserNetworkConfig,
        BrowserPoolRef,
        BrowserProxy,
        BrowserTelemetryConfig,
        BrowserUsage,
        Profile,
        VaultReference,
    )

__all__ = ["Browser", "BrowserPage", "Error", "ErrorDetail", "Replay", "Viewport", "converter"]


T = TypeVar("T")


# URLs whose query string carries a session token: shown without it in reprs.
def _hide_query(url: str | None) -> str:
    if url is None:
        return "None"
    base, sep, _ = url.partition("?")
    return repr(base + "?<redacted>" if sep else base)


@attrs.frozen
class Replay:
    """A browser replay recording.

    Attributes:
        replay_id: Unique identifier for the replay recording.
        started_at: When recording started (timezone-aware), if known.
        finished_at: When recording finished (timezone-aware), if it has.
        replay_view_url: URL for viewing the replay recording, if any (the repr hides
            its query string).
    """

    replay_id: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    replay_view_url: str | None = attrs.field(default=None, repr=_hide_query)


@attrs.frozen
class Viewport:
    """A browser window size in pixels, with an optional display refresh rate in Hz.

    Also what `AsyncBrowsers.create` and `AsyncBrowsers.update` take as `viewport=`.
    """

    width: int
    height: int
    refresh_rate: int | None = None


@attrs.frozen
class Browser:
    """A browser session, as the API describes it.

    Required and optional exactly as the official SDK's types; fields the API adds
    later are ignored. The repr hides the query strings (tokens) of the URLs.

    Attributes:
        session_id: Unique identifier of the browser session.
        cdp_ws_url: WebSocket URL for Chrome DevTools Protocol connections
            (e.g. Playwright's ``connect_over_cdp``).
        webdriver_ws_url: WebSocket URL for WebDriver BiDi connections.
        created_at: When the session was created (timezone-aware).
        headless: Whether the session runs headless (no live view, no replays).
        stealth: Whether the session runs in stealth mode.
        timeout_seconds: Seconds of inactivity before the session is terminated.
        region: Geographic region of the session (fixed at creation).
        browser_live_view_url: Remote URL for live viewing (non-headless only).
        deleted_at: When the session was deleted, for deleted sessions.
        gpu: Whether the session has GPU acceleration.
        name: Human-readable name, unique among active sessions.
        tags: User-defined key-value tags.
        viewport: Browser window size and refresh rate.
        start_url: URL the session was most recently asked to open.
        kiosk_mode: Whether the session runs in kiosk mode.
        memory: Memory size of the browser's machine (e.g. ``4GiB``).
        video_memory: Video memory size, for GPU browsers.
        base_url: The browser's own API root, when the API gives one.
        chrome_policy: Chrome enterprise policies in force.
        location: Locale and timezone in effect.
        network: Network rules in effect.
        pool: The browser pool it came from, if any.
        profile: The profile loaded into it, if any.
        profile_save_changes: Whether changes are saved back to that profile.
        proxy: The proxy it uses, if any.
        proxy_id: That proxy's ID.
        telemetry: Telemetry settings in effect.
        usage: Usage so far (when `usage_status` is ``ready``).
        usage_status: ``pending`` or ``ready``.
        vaults: Vaults the browser may use.

    The fields from `memory` on are typed with the generated models (loaded on the
    first decode, not at import).
    """

    session_id: str
    cdp_ws_url: str = attrs.field(repr=_hide_query)
    webdriver_ws_url: str = attrs.field(repr=_hide_query)
    created_at: datetime
    headless: bool
    stealth: bool
    timeout_seconds: int
    region: str
    browser_live_view_url: str | None = attrs.field(default=None, repr=_hide_query)
    deleted_at: datetime | None = None
    gpu: bool | None = None
    name: str | None = None
    tags: dict[str, str] | None = None
    viewport: Viewport | None = None
    start_url: str | None = attrs.field(default=None, repr=_hide_query)
    kiosk_mode: bool | None = None
    memory: str | None = None
    video_memory: str | None = None
    base_url: str | None = attrs.field(default=None, repr=_hide_query)
    chrome_policy: dict[str, Any] | None = None
    location: BrowserLocation | None = None
    network: BrowserNetworkConfig | None = None
    pool: BrowserPoolRef | None = None
    profile: Profile | None = None
    profile_save_changes: bool | None = None
    proxy: BrowserProxy | None = None
    proxy_id: str | None = None
    telemetry: BrowserTelemetryConfig | None = None
    usage: BrowserUsage | None = None
    usage_status: str | None = None
    vaults: list[VaultReference] | None = None


@attrs.frozen
class BrowserPage:
    """One page of `AsyncBrowsers.list`.

    Attributes:
        items: The browsers on this page.
        has_more: Whether more browsers follow (the ``X-Has-More`` header).
        next_offset: The offset of the next page (``X-Next-Offset``), if any.
    """

    items: list[Browser]
    has_more: bool = False
    next_offset: int | None = None
    # Fetches the next page with the same filters; set by `list` (not part of equality).
    _following: Callable[[], Awaitable[BrowserPage]] | None = attrs.field(
        default=None, eq=False, repr=False, kw_only=True
    )

    def has_next_page(self) -> bool:
        """Whether another page follows this one (as the official pages say)."""
        return self.has_more and self.next_offset is not None

    def next_page_info(self) -> PageInfo | None:
        """The query of the next page (``params={"offset": ...}``), or `None` at the end."""
        return PageInfo({"offset": self.next_offset}) if self.has_next_page() else None

    async def iter_pages(self) -> AsyncIterator[BrowserPage]:
        """Every page from this one on (this one first), fetching each as the loop
        needs it: ``async for page in first.iter_pages()``."""
        page = self
        while True:
            yield page
            if not page.has_next_page():
                return
            page = await page.get_next_page()

    async def get_next_page(self) -> BrowserPage:
        """Fetch the page after this one, with the same filters.

        Raises:
            RuntimeError: There is no next page (check `has_next_page` first), or the
                page was not made by ``browsers.list`` of the async client.
        """
        if not self.has_next_page():
            raise RuntimeError("no next page: check has_next_page() first")
        if self._following is None:
            raise RuntimeError(
                "this page was not fetched by client.browsers.list(): it cannot fetch the next"
            )
        return await self._following()


@attrs.frozen
class ErrorDetail:
    """A lower-level detail attached to an API error."""

    code: str | None = None
    message: str | None = None


@attrs.frozen
class Error:
    """The documented error body of the Kernel API."""

    code: str
    message: str
    details: list[ErrorDetail] | None = None
    inner_error: ErrorDetail | None = None


def _strict(kind: type[Any]) -> Any:
    # cattrs would call str(x)/int(x) on anything; a schema break must be an error instead.
    def hook(value: Any, _: Any) -> Any:
        if type(value) is not kind:
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return hook


_FRACTION = re.compile(r"(T\d\d:\d\d:\d\d)\.(\d+)")


def _six_digits(match: re.Match[str]) -> str:
    return f"{match.group(1)}.{match.group(2)[:6].ljust(6, '0')}"


def read_stamp(text: str) -> datetime:
    """An API timestamp (ISO 8601; ``Z`` or an offset, or none: UTC; 1 to 9 fractional
    digits) as an aware datetime, on any Python. Raises `ValueError` if it is none."""
    text = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    # Python 3.10 parses only 3 or 6 fractional digits; the API (Go) sends 1 to 9.
    parsed = datetime.fromisoformat(_FRACTION.sub(_six_digits, text, count=1))
    # The API speaks UTC; a naive stamp is read as UTC so callers always get aware datetimes.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def read_stamp_at_once(text: str) -> datetime:
    """`read_stamp` in one C call, where `datetime.fromisoformat` reads the API's stamps as
    they come (3.11+): ~0.1 µs against ~1.4 µs, paid per streamed event. What it cannot
    read (a lowercase ``z``...) goes the long way."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return read_stamp(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


_read = read_stamp_at_once if sys.version_info >= (3, 11) else read_stamp


def _datetime(value: Any, _: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 string, got {type(value).__name__}")
    return _read(value)


def _number(value: Any, _: Any) -> float:
    if type(value) is not float and type(value) is not int:
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _date(value: Any, _: Any) -> date:
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 date, got {type(value).__name__}")
    return date.fromisoformat(value[:10])


def _renames(cls: type[Any]) -> dict[str, Any]:
    # Fields whose wire name is not a Python name (``async``, ``inputSchema``...).
    from cattrs.gen import override

    return {
        f.name: override(rename=f.metadata["wire"])
        for f in attrs.fields(cls)
        if "wire" in f.metadata
    }


def _wire_names(cls: type[Any]) -> frozenset[str]:
    return frozenset(f.metadata.get("wire", f.name) for f in attrs.fields(cls))


def _union_factory(conv: cattrs.Converter) -> Callable[[Any], Any]:
    """Unions of models (the API's one-of shapes). A member whose tag fields
    (``__kernel_tags__``, e.g. ``type: "card"``) all match wins; otherwise (or when several
    members carry the same tags), of the candidates that decode, the one whose fields cover
    most of the object's keys (then the one declaring fewest fields the object lacks);
    for other values, the first that decodes."""
    import typing

    def factory(tp: Any) -> Any:
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        optional = len(members) != len(typing.get_args(tp))

        def hook(value: Any, _: Any) -> Any:
            if value is None and optional:
                return None
            candidates = members
            if isinstance(value, dict):
                matched = [
                    m
                    for m in members
                    if (tags := getattr(m, "__kernel_tags__", ()))
                    and all(value.get(k) == v for k, v in tags)
                ]
                if len(matched) == 1:
                    return conv.structure(value, matched[0])
                # Tags that matched no member leave the untagged ones to choose from.
                candidates = matched or [
                    m for m in members if not getattr(m, "__kernel_tags__", ())
                ]
            best: tuple[tuple[int, int], Any] | None = None
            for member in candidates:
                try:
                    decoded = conv.structure(value, member)
                except Exception:
                    continue
                if not (isinstance(value, dict) and attrs.has(member)):
                    return decoded
                names = _wire_names(member)
                score = (len(names & value.keys()), -len(names - value.keys()))
                if best is None or score > best[0]:
                    best = (score, decoded)
            if best is None or (isinstance(value, dict) and value and best[0][0] == 0):
                # Nothing decoded, or only by ignoring every key the object has.
                shown = [getattr(m, "__name__", str(m)) for m in members]
                raise TypeError(f"matches none of {shown}")
            return best[1]

        return hook

    return factory


def _is_wide_union(tp: Any) -> bool:
    import types
    import typing

    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return False
    return len([m for m in typing.get_args(tp) if m is not type(None)]) > 1


@cache
def converter() -> cattrs.Converter:
    """The one converter (JSON-shaped data <-> models), built on first use so that
    importing the SDK does not import cattrs. Unknown fields are ignored."""
    import cattrs
    from cattrs.cols import is_sequence, list_structure_factory

    from ._gen.models import _shared

    # Browser's nested fields name generated models: give their names to this module
    # now (cattrs resolves the annotations on the first decode), not at import.
    for name in (
        "BrowserLocation",
        "BrowserNetworkConfig",
        "BrowserPoolRef",
        "BrowserProxy",
        "BrowserTelemetryConfig",
        "BrowserUsage",
        "Profile",
        "VaultReference",
    ):
        globals()[name] = getattr(_shared, name)
    from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn

    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(str, _strict(str))
    conv.register_structure_hook(bool, _strict(bool))
    conv.register_structure_hook(int, _strict(int))
    conv.register_structure_hook(datetime, _datetime)
    conv.register_structure_hook(float, _number)
    conv.register_structure_hook(date, _date)
    conv.register_unstructure_hook(datetime, datetime.isoformat)
    conv.register_unstructure_hook(date, date.isoformat)

    # cattrs would iterate a string as a list and read attributes off non-dicts.
    def only(kind: type[Any], what: str, make: Callable[[Any, Any], Any]) -> Any:
        def factory(tp: Any) -> Any:
            inner = make(tp, conv)

            def hook(value: Any, t: Any) -> Any:
                if not isinstance(value, kind):
                    raise TypeError(f"expected {what}, got {type(value).__name__}")
                return inner(value, t)

            return hook

        return factory

    conv.register_structure_hook_factory(
        is_sequence, only(list, "an array", list_structure_factory)
    )

    def structure_model(tp: Any, c: Any) -> Any:
        return make_dict_structure_fn(tp, c, **_renames(tp))

    def unstructure_model(tp: Any) -> Any:
        # Models passed as parameters: unset (None) fields are left out, wire names used.
        return make_dict_unstructure_fn(tp, conv, _cattrs_omit_if_default=True, **_renames(tp))

    conv.register_structure_hook_factory(attrs.has, only(dict, "an object", structure_model))
    conv.register_unstructure_hook_factory(attrs.has, unstructure_model)
    conv.register_structure_hook_factory(_is_wide_union, _union_factory(conv))
    return conv


_REPLAY_LIST = list[Replay]
_BROWSER_LIST = list[Browser]


def decode_replay(data: bytes) -> Replay:
    """Decode one `Replay` from a JSON body (raises on a schema break)."""
    return converter().structure(json.loads(data), Replay)


def decode_replays(data: bytes) -> list[Replay]:
    """Decode a JSON array of `Replay` (raises on a schema break)."""
    return converter().structure(json.loads(data), _REPLAY_LIST)


def decode_browser(data: bytes) -> Browser:
    """Decode one `Browser` from a JSON body (raises on a schema break)."""
    return converter().structure(json.loads(data), Browser)


def decode_browsers(data: bytes) -> list[Browser]:
    """Decode a JSON array of `Browser` (raises on a schema break)."""
    return converter().structure(json.loads(data), _BROWSER_LIST)


def decode_error(data: bytes) -> Error | None:
    """Parse a documented `Error` body; `None` for anything else. Never raises."""
    try:
        obj = json.loads(data)
        if not isinstance(obj, dict):
            return None
        return converter().structure(obj, Error)
    except Exception:
        return None
