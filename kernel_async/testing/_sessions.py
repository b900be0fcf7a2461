"""The emulator's browser sessions and their replays: state and the API's rules, without
any HTTP.

Names are unique among active sessions; a deleted session keeps its record (found with
``include_deleted``) and its replays; listing pages by offset. Each session holds what it
captures of telemetry (its ``telemetry``, a `Capture` whose rules live in `_telemetry`),
shown in its answers as the API shows the active configuration, and the profile it was
created with (`attach_profile`), shown as the API's ``profile`` and
``profile_save_changes``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs

from ._cdp_proxy import new_token

if TYPE_CHECKING:
    from ._telemetry import Capture

__all__ = [
    "Refused",
    "ReplayState",
    "Session",
    "SessionTable",
    "attach_profile",
    "browser_not_found",
    "new_id",
    "parse_whole_number",
    "replay_not_found",
]

REGIONS = ("us-east", "us-west", "eu-west", "ap-southeast")
STATUSES = ("active", "deleted", "all")
DEFAULT_PAGE = 20
MAX_PAGE = 100
MAX_TAGS = 50


class Refused(Exception):
    """An API refusal: the handler answers it as a documented Error body.

    ``retry=False`` adds ``x-should-retry: false``: a failure that asking again cannot mend
    (clients honouring the header, this SDK and the official one, then fail at once).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Sequence[str] = (),
        *,
        retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details)
        self.retry = retry


def new_id(kind: str) -> str:
    """A fresh ID of a ``kind`` (``br`` browser session, ``rp`` replay), the one shape every
    path of the emulator uses: ``br_`` and 16 hex digits."""
    return f"{kind}_{secrets.token_hex(8)}"


def browser_not_found(id_or_name: str) -> Refused:
    """The 404 for a browser session the emulator never had (every path words it so)."""
    return Refused(404, "not_found", f"browser session {id_or_name!r} not found")


def replay_not_found(replay_id: str) -> Refused:
    """The 404 for a replay the browser session does not have."""
    return Refused(404, "not_found", f"replay {replay_id!r} not found")


def _stamp(when: datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when else None


@attrs.define
class Session:
    session_id: str
    created_at: datetime
    headless: bool = False
    stealth: bool = False
    gpu: bool = False
    timeout_seconds: int = 60
    region: str = "us-east"
    name: str | None = None
    tags: dict[str, str] | None = None
    viewport: dict[str, int] | None = None
    start_url: str | None = None
    kiosk_mode: bool | None = None
    proxy_id: str | None = None
    deleted_at: datetime | None = None
    deleted_why: str | None = None  # e.g. after its inactivity timeout; None: by the API
    telemetry: Capture | None = None  # None: never set (capture off)
    profile: dict[str, Any] | None = None  # a `Profile` answer; None: no profile attached
    profile_save_changes: bool | None = None  # set exactly when a profile is attached
    token: str = attrs.field(factory=new_token, repr=False)

    @property
    def active(self) -> bool:
        return self.deleted_at is None

    def gone(self) -> Refused:
        """The 404 for using this deleted session: when it was deleted, and why."""
        assert self.deleted_at is not None
        when = _stamp(self.deleted_at)
        why = f" {self.deleted_why}" if self.deleted_why else ""
        return Refused(
            404, "not_found", f"browser session {self.session_id!r} was deleted at {when}{why}"
        )

    def as_json(self, base: str) -> dict[str, Any]:
        host = base.split("://", 1)[-1]
        data: dict[str, Any] = {
            "session_id": self.session_id,
            "cdp_ws_url": f"ws://{host}/cdp/{self.session_id}?jwt={self.token}",
            "webdriver_ws_url": f"ws://{host}/webdriver/{self.session_id}?jwt={self.token}",
            "created_at": _stamp(self.created_at),
            "headless": self.headless,
            "stealth": self.stealth,
            "gpu": self.gpu,
            "timeout_seconds": self.timeout_seconds,
            "region": self.region,
            "memory": "4GiB",
        }
        if not self.headless:
            data["browser_live_view_url"] = f"{base}/live/{self.session_id}?jwt={self.token}"
        optional = {
            "deleted_at": _stamp(self.deleted_at),
            "name": self.name,
            "tags": self.tags,
            "viewport": self.viewport,
            "start_url": self.start_url,
            "kiosk_mode": self.kiosk_mode,
            "proxy_id": self.proxy_id,
            "profile": self.profile,
            "profile_save_changes": self.profile_save_changes,
            "telemetry": self.telemetry.as_json() if self.telemetry is not None else None,
        }
        data.update({k: v for k, v in optional.items() if v is not None})
        return data


@attrs.define
class ReplayState:
    """A replay: recording until stopped (by stop, delete, or its max duration)."""

    replay_id: str
    browser_id: str
    started_at: datetime
    max_duration: int | None
    stopped_mono: float | None = None
    finished_at: datetime | None = None

    def settle(self, now: float, wall_started: float) -> bool:
        """Stop a recording past its max duration; whether it stopped just now."""
        if self.stopped_mono is None and self.max_duration is not None:
            end = wall_started + self.max_duration
            if now >= end:
                self.stopped_mono = now
                self.finished_at = datetime.now(timezone.utc)
                return True
        return False

    def as_json(self, base: str) -> dict[str, Any]:
        return {
            "replay_id": self.replay_id,
            "started_at": _stamp(self.started_at),
            "finished_at": _stamp(self.finished_at),
            "replay_view_url": f"{base}/view/{self.replay_id}",
        }


def _check(body: Mapping[str, Any], name: str, kind: type, problems: list[str]) -> Any:
    value = body.get(name)
    if value is not None and (type(value) is not kind):
        problems.append(f"{name} must be a {kind.__name__}")
        return None
    return value


def _check_tags(value: Any, problems: list[str]) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        problems.append("tags must be an object of string values")
        return None
    if len(value) > MAX_TAGS:
        problems.append(f"tags must have at most {MAX_TAGS} pairs")
    return dict(value)


def _check_viewport(value: Any, problems: list[str]) -> dict[str, int] | None:
    if value is None:
        return None
    ok = (
        isinstance(value, dict)
        and {"width", "height"} <= set(value) <= {"width", "height", "refresh_rate", "force"}
        and all(type(v) is int and v > 0 for k, v in value.items() if k != "force")
    )
    if not ok:
        problems.append("viewport needs positive integer width and height (and refresh_rate)")
        return None
    return {k: v for k, v in value.items() if k != "force"}


# What the official type documents of a profile's name (`BrowserProfile.name`).
_PROFILE_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")
_PROFILE_FIELDS = ("id", "created_at", "last_used_at", "name", "updated_at")  # `Profile`


def attach_profile(
    requested: Any, profiles: Sequence[Mapping[str, Any]], now: datetime
) -> dict[str, Any]:
    """The ``profile`` and ``profile_save_changes`` of a new session from a create body's
    ``profile`` (a `BrowserProfile`: ``id`` or ``name``, and ``save_changes``), given the
    stored ``profiles`` (`Profile` records); {} when none is asked for. `Refused` (400)
    for a selection the API documents as invalid: not an object, neither ``id`` nor
    ``name``, a name outside 1-255 letters, digits, ``.``, ``_``, ``-``, a non-boolean
    ``save_changes``.

    The stored profile is matched by ``id``, then by ``name``; one that does not exist
    (the emulator's 404 for it is checked before, unless references are not checked) is
    echoed as asked, with an ``id`` of its own when only a name was given and ``now`` as
    its creation time. ``profile_save_changes`` is set exactly when a profile is
    attached (false unless asked), as the API omits it otherwise."""
    if requested is None:
        return {}
    problems: list[str] = []
    if not isinstance(requested, Mapping):
        raise Refused(400, "bad_request", "invalid parameters", ["profile must be an object"])
    pid = _check(requested, "id", str, problems)
    name = _check(requested, "name", str, problems)
    save = _check(requested, "save_changes", bool, problems)
    if not pid and not name and not problems:
        problems.append("profile needs an id or a name")
    if name is not None and not _PROFILE_NAME.fullmatch(name):
        problems.append("profile.name must be 1-255 letters, digits, dots, underscores or hyphens")
    if problems:
        raise Refused(400, "bad_request", "invalid parameters", problems)
    found = next((p for p in profiles if pid and p.get("id") == pid), None)
    if found is None and name:
        found = next((p for p in profiles if p.get("name") == name), None)
    if found is not None:
        shown = {k: found[k] for k in _PROFILE_FIELDS if found.get(k) is not None}
    else:
        shown = {"id": pid or new_id("prf"), "created_at": _stamp(now)}
        if name:
            shown["name"] = name
    return {"profile": shown, "profile_save_changes": bool(save)}


def parse_create(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a new session from a ``POST /browsers`` body, or `Refused` (400)."""
    problems: list[str] = []
    out: dict[str, Any] = {}
    for name in ("headless", "stealth", "gpu", "kiosk_mode"):
        out[name] = _check(body, name, bool, problems)
    for name in ("name", "start_url", "proxy_id", "region"):
        out[name] = _check(body, name, str, problems)
    timeout = _check(body, "timeout_seconds", int, problems)
    if timeout is not None and not 10 <= timeout <= 259_200:
        problems.append("timeout_seconds must be between 10 and 259200")
    out["timeout_seconds"] = timeout
    if out["region"] is not None and out["region"] not in REGIONS:
        problems.append(f"region must be one of {', '.join(REGIONS)}")
    if out["name"] == "":
        problems.append("name must not be empty")
    out["tags"] = _check_tags(body.get("tags"), problems)
    out["viewport"] = _check_viewport(body.get("viewport"), problems)
    if problems:
        raise Refused(400, "bad_request", "invalid parameters", problems)
    return {k: v for k, v in out.items() if v is not None}


class SessionTable:
    """Every browser session the emulator knows, in creation order."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}

    def add(self, fields: Mapping[str, Any], session_id: str | None = None) -> Session:
        name = fields.get("name")
        if name is not None and self._by_name(name) is not None:
            raise Refused(409, "conflict", f"a browser session named {name!r} is already active")
        sid = session_id if session_id is not None else new_id("br")
        session = Session(sid, datetime.now(timezone.utc), **fields)
        self.sessions[sid] = session
        return session

    def _by_name(self, name: str) -> Session | None:
        for s in self.sessions.values():
            if s.active and s.name == name:
                return s
        return None

    def find(self, id_or_name: str, *, include_deleted: bool = False) -> Session:
        found = self.sessions.get(id_or_name) or self._by_name(id_or_name)
        if found is None and include_deleted:
            found = next((s for s in self.sessions.values() if s.name == id_or_name), None)
        if found is None:
            raise browser_not_found(id_or_name)
        if not found.active and not include_deleted:
            raise found.gone()
        return found

    def update(
        self, id_or_name: str, body: Mapping[str, Any], telemetry: Capture | None = None
    ) -> Session:
        """Apply a ``PATCH /browsers/{id}`` body (and the `telemetry` capture it resolved
        to, if any), all or nothing: `Refused` changes nothing."""
        session = self.find(id_or_name)
        problems: list[str] = []
        name = _check(body, "name", str, problems)
        tags = _check_tags(body.get("tags"), problems)
        viewport = _check_viewport(body.get("viewport"), problems)
        if problems:
            raise Refused(400, "bad_request", "invalid parameters", problems)
        if name:
            other = self._by_name(name)
            if other is not None and other is not session:
                raise Refused(409, "conflict", f"a browser named {name!r} is already active")
        if name is not None:
            session.name = name or None  # "" clears
        if tags is not None:
            session.tags = tags or None  # {} clears
        if viewport is not None:
            session.viewport = viewport
        if telemetry is not None:
            session.telemetry = telemetry
        return session

    def delete(self, id_or_name: str, why: str | None = None) -> Session:
        session = self.find(id_or_name)
        session.deleted_at = datetime.now(timezone.utc)
        session.deleted_why = why
        return session

    def page(self, query: Mapping[str, str]) -> tuple[list[Session], int, bool]:
        """One page of ``GET /browsers``: (sessions, next offset or 0, has more)."""
        status = query.get("status", "active")
        problems = [] if status in STATUSES else [f"status must be one of {', '.join(STATUSES)}"]
        limit = _int_param(query, "limit", DEFAULT_PAGE, 1, MAX_PAGE, problems)
        offset = _int_param(query, "offset", 0, 0, None, problems)
        if problems:
            raise Refused(400, "bad_request", "invalid parameters", problems)
        wanted = [s for s in self.sessions.values() if _matches(s, status, query)]
        items = wanted[offset : offset + limit]
        more = offset + limit < len(wanted)
        return items, (offset + limit if more else 0), more


def _int_param(
    query: Mapping[str, str],
    name: str,
    default: int,
    low: int,
    high: int | None,
    problems: list[str],
) -> int:
    text = query.get(name)
    if text is None:
        return default
    value = parse_whole_number(text)
    if value is None or value < low or (high is not None and value > high):
        problems.append(f"{name} must be an integer from {low}" + (f" to {high}" if high else ""))
        return default
    return value


def parse_whole_number(text: str) -> int | None:
    """``text`` as a whole number if it is only ASCII digits (at most 18 of them), else
    ``None``. Not `str.isdigit` (true for ``²``, which `int` refuses) nor `int` (which
    takes ``+1``, `` 1``, ``1_0`` and other scripts' digits)."""
    if not (0 < len(text) <= 18 and text.isascii() and text.isdigit()):
        return None
    return int(text)


def _matches(s: Session, status: str, query: Mapping[str, str]) -> bool:
    if status != "all" and s.active != (status == "active"):
        return False
    if "region" in query and s.region != query["region"]:
        return False
    text = query.get("query")
    if text and not any(text in (v or "") for v in (s.name, s.session_id, s.proxy_id)):
        return False
    for key, value in query.items():
        is_tag = key.startswith("tags[") and key.endswith("]")
        if is_tag and (s.tags or {}).get(key[5:-1]) != value:
            return False
    return True
