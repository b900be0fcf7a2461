"""Pure rules for the browsers resource: check each argument and build the JSON body or
query string. Everything here raises before any I/O and touches no socket."""

from __future__ import annotations

from collections.abc import Mapping
from typing import get_args
from urllib.parse import quote, urlencode

import attrs

from .._models import BrowserPage, Viewport
from .._types import NOT_GIVEN, BrowserStatus, Region, check_int

__all__ = [
    "MAX_PAGE",
    "MAX_TAGS",
    "RECORD_TAG",
    "create_body",
    "list_query",
    "next_offset",
    "replay_params",
    "update_body",
    "with_tag",
]

MAX_TAGS = 50
MAX_PAGE = 100
TIMEOUT_RANGE = (10, 259_200)  # 10 s to 72 h
_REGIONS = frozenset(get_args(Region))
_STATUSES = frozenset(get_args(BrowserStatus))
_PROFILE_KEYS = {"id": str, "name": str, "save_changes": bool}
RECORD_TAG = "kernel_async_record"
"""The tag `record()` puts on the browser it creates (a random value per recording), so a
browser whose create answer was lost can still be found and deleted."""


def check_bool(value: object, name: str) -> bool:
    """`value` as a bool, or a TypeError naming `name`."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def check_str(value: object, name: str, *, empty: bool = False) -> str:
    """`value` as a str (non-empty unless `empty`), or a TypeError/ValueError naming `name`."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value and not empty:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def check_choice(value: object, name: str, choices: frozenset[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return str(value)


def check_tags(value: object, name: str = "tags") -> dict[str, str]:
    """Up to 50 str -> str pairs."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of str to str, got {type(value).__name__}")
    if len(value) > MAX_TAGS:
        raise ValueError(f"{name} must have at most {MAX_TAGS} pairs, got {len(value)}")
    out: dict[str, str] = {}
    for key, item in value.items():
        check_str(key, f"{name} key")
        out[key] = check_str(item, f"{name}[{key!r}]", empty=True)
    return out


def viewport_json(
    value: object, name: str = "viewport", *, force: bool = False
) -> dict[str, int | bool]:
    """A `Viewport` (or a mapping with width, height, refresh_rate; and, when `force`
    is allowed, the update's ``force`` flag) as JSON."""
    if isinstance(value, Viewport):
        fields = {"width": value.width, "height": value.height}
        if value.refresh_rate is not None:
            fields["refresh_rate"] = value.refresh_rate
    elif isinstance(value, Mapping) or attrs.has(type(value)):
        if not isinstance(value, Mapping):  # a generated viewport model
            from .._operation import plain

            value = plain(value)
        assert isinstance(value, Mapping)
        allowed = {"width", "height", "refresh_rate", *(("force",) if force else ())}
        unknown = set(value) - allowed
        if unknown:
            raise ValueError(f"{name} has unknown keys: {sorted(unknown)}")
        if "width" not in value or "height" not in value:
            raise ValueError(f"{name} needs both width and height")
        fields = dict(value)
    else:
        raise TypeError(f"{name} must be a Viewport, got {type(value).__name__}")
    flag = fields.pop("force", None)
    out: dict[str, int | bool] = {
        key: check_int(item, f"{name}.{key}", 1) for key, item in fields.items()
    }
    if flag is not None:
        out["force"] = check_bool(flag, f"{name}.force")
    return out


def profile_json(value: object) -> dict[str, object]:
    """A profile selection: ``{"id": ...}`` or ``{"name": ...}``, optionally ``save_changes``."""
    if attrs.has(type(value)):  # a generated BrowserProfile
        from .._operation import plain

        value = plain(value)
    if not isinstance(value, Mapping):
        raise TypeError(f"profile must be a mapping, got {type(value).__name__}")
    out: dict[str, object] = {}
    for key, item in value.items():
        kind = _PROFILE_KEYS.get(key)
        if kind is None:
            raise ValueError(f"profile has an unknown key {key!r} (id, name, save_changes)")
        out[key] = (
            check_bool(item, "profile.save_changes")
            if kind is bool
            else check_str(item, f"profile.{key}")
        )
    if "id" not in out and "name" not in out:
        raise ValueError("profile needs an id or a name")
    return out


def merge_extra(body: dict[str, object], extra: Mapping[str, object] | None) -> dict[str, object]:
    """`extra_body` wins over the typed keywords, as in the official SDK."""
    if extra is None:
        return body
    if not isinstance(extra, Mapping):
        raise TypeError(f"extra_body must be a mapping, got {type(extra).__name__}")
    for key in extra:
        check_str(key, "extra_body key")
    return {**body, **extra}


def replay_params(
    framerate: int | None, max_duration_in_seconds: int | None, record_audio: bool | None
) -> dict[str, object]:
    """The JSON body of ``POST /browsers/{id}/replays``; only what was given is sent."""
    params: dict[str, object] = {}
    if framerate is not None:
        params["framerate"] = check_int(framerate, "framerate", 1)
    if max_duration_in_seconds is not None:
        params["max_duration_in_seconds"] = check_int(
            max_duration_in_seconds, "max_duration_in_seconds", 1
        )
    if record_audio is not None:
        params["record_audio"] = check_bool(record_audio, "record_audio")
    return params


def create_body(
    *,
    headless: bool | None = None,
    stealth: bool | None = None,
    gpu: bool | None = None,
    timeout_seconds: int | None = None,
    viewport: object = None,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    start_url: str | None = None,
    kiosk_mode: bool | None = None,
    profile: object = None,
    proxy_id: str | None = None,
    region: str | None = None,
    extra_body: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The JSON body of ``POST /browsers``; only what was given is sent."""
    body: dict[str, object] = {}
    for key, flag in (
        ("headless", headless),
        ("stealth", stealth),
        ("gpu", gpu),
        ("kiosk_mode", kiosk_mode),
    ):
        if flag is not None:
            body[key] = check_bool(flag, key)
    if timeout_seconds is not None:
        body["timeout_seconds"] = check_int(timeout_seconds, "timeout_seconds", *TIMEOUT_RANGE)
    if viewport is not None:
        body["viewport"] = viewport_json(viewport)
    for key, text in (("name", name), ("start_url", start_url), ("proxy_id", proxy_id)):
        if text is not None:
            body[key] = check_str(text, key)
    if tags is not None:
        body["tags"] = check_tags(tags)
    if profile is not None:
        body["profile"] = profile_json(profile)
    if region is not None:
        body["region"] = check_choice(region, "region", _REGIONS)
    return merge_extra(body, extra_body)


def update_body(
    *,
    name: object = NOT_GIVEN,
    tags: object = NOT_GIVEN,
    viewport: object = NOT_GIVEN,
    extra_body: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The JSON body of ``PATCH /browsers/{id_or_name}``: only what was given is sent;
    `None` sends null (clears it, as with the official SDK), as does an empty `name`
    or `tags`. The viewport may carry ``force``."""
    body: dict[str, object] = {}
    if name is not NOT_GIVEN:
        body["name"] = None if name is None else check_str(name, "name", empty=True)
    if tags is not NOT_GIVEN:
        body["tags"] = None if tags is None else check_tags(tags)
    if viewport is not NOT_GIVEN and viewport is not None:
        body["viewport"] = viewport_json(viewport, force=True)
    return merge_extra(body, extra_body)


def list_query(
    *,
    status: str | None = None,
    query: str | None = None,
    tags: Mapping[str, str] | None = None,
    region: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
) -> list[tuple[str, str]]:
    """The query parameters of ``GET /browsers`` (tags in deepObject style:
    ``tags[team]=backend``)."""
    params: list[tuple[str, str]] = []
    if status is not None:
        params.append(("status", check_choice(status, "status", _STATUSES)))
    if query is not None:
        params.append(("query", check_str(query, "query", empty=True)))
    if tags is not None:
        params.extend((f"tags[{k}]", v) for k, v in check_tags(tags).items())
    if region is not None:
        params.append(("region", check_choice(region, "region", _REGIONS)))
    if limit is not None:
        params.append(("limit", str(check_int(limit, "limit", 1, MAX_PAGE))))
    if offset is not None:
        params.append(("offset", str(check_int(offset, "offset"))))
    return params


def extra_query_string(extra: Mapping[str, object] | None, joiner: str = "?") -> str:
    """A caller's `extra_query` as a query string (encoded as generated calls encode it)."""
    if not extra:
        return ""
    from .._operation import encode_query, plain, query_string

    return joiner + query_string(encode_query(plain(dict(extra))))


def encode_query(params: list[tuple[str, str]]) -> str:
    """``?a=1&b=2`` percent-encoded (empty when there are no parameters)."""
    return "?" + urlencode(params, quote_via=quote, safe="") if params else ""


def next_offset(page: BrowserPage, requested: int) -> int | None:
    """Where the page after `page` (fetched at offset `requested`) starts, or `None`.

    ``X-Next-Offset`` is the next page's absolute start; ``X-Has-More: false`` ends the
    listing. With more to come, an offset that does not move past the requested one
    would page forever (or skip back): it is refused with `ValueError`.
    """
    if not page.has_more:
        return None
    if page.next_offset is None:
        raise ValueError("X-Has-More: true without X-Next-Offset: cannot page on")
    if page.next_offset <= max(requested, 0):
        raise ValueError(
            f"X-Next-Offset {page.next_offset} does not move past offset {requested}: "
            "cannot page on"
        )
    return page.next_offset


def with_tag(body: Mapping[str, object], key: str, value: str) -> dict[str, object]:
    """`body` (a create body, `extra_body` already merged) with the tag ``key=value`` added.

    Raises `ValueError` when the tags are already full: the tag must fit."""
    given = body.get("tags")
    tags = check_tags({} if given is None else given)
    tags.pop(key, None)
    if len(tags) >= MAX_TAGS:
        raise ValueError(
            f"record() tags the browser it creates ({key}=...) so that it can find it after "
            f"a lost answer: pass at most {MAX_TAGS - 1} tags"
        )
    return {**body, "tags": {**tags, key: value}}
