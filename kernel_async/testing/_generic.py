"""Generic state for the API's resource families that have no special rules (profiles,
proxies, extensions, browser pools, credentials, vaults and their items, API keys,
projects, telemetry and audit-log destinations, deployments, invocations, ...), derived
from the spec's paths, and the HTTP handlers serving them.

A family is a collection path with an item path under it (``/profiles`` and
``/profiles/{id_or_name}``): POST on the collection creates, GET lists (with the spec's
pagination kind), GET/PATCH/PUT/DELETE on the item retrieve/update/upsert/delete. Unknown
IDs are 404s naming the kind and ID; names are unique where the API says so (409); an
``{id_or_name}`` takes either. A path with no item under it and an object answer is a
singleton (``/org/limits``). Every request is validated against the spec first (400/422
naming the field) and every answer is shaped by the operation's response schema.

Rules an agent depends on are real where cheap: pools hand out browsers made by the
emulator (``make_browser``), bounded by their ``size``, waiting up to
``acquire_timeout_seconds`` and answering 204 when none came; ``release`` returns one;
``flush`` ends idle ones. API keys rotate; credentials compute their TOTP codes;
extensions download what was uploaded. Deployments, invocations and managed auth
connections can be followed: their state changes and what a test publishes, as
server-sent events with ids (see `_follow`). Operations with no honest local meaning
answer 501 with an Error body naming the operation: see `NOT_IMPLEMENTED`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import random
import re
import secrets
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlparse

import attrs
from aiohttp import web

from ._events import resume_after
from ._follow import (
    FOLLOWED,
    STATES,
    FollowStreams,
    check_event,
    member,
    since_cutoff,
    state_fields,
)
from ._spec import SERVED_BY_EMULATOR, Operation, OperationIndex, Schema, index, operation, resolve
from ._synth import merge, stamp, synthesize, token
from ._validate import FormPart, Problem, error_body, validate_request

__all__ = [
    "NOT_IMPLEMENTED",
    "UNIQUE_NAMES",
    "ApiError",
    "Family",
    "GenericAPI",
    "Record",
    "Singleton",
    "derive_families",
    "form_values",
    "not_found",
    "page_of",
    "totp",
]

BrowserJSON = Mapping[str, Any]
MakeBrowser = Callable[[Mapping[str, Any]], Awaitable[BrowserJSON]]
EndBrowser = Callable[[str], Awaitable[None]]
BrowserExists = Callable[[str], "str | None"]
Authorize = Callable[[web.Request], bool]

_BROWSER_FAMILY = "browser's own family: served by the emulator's browser backend, not yet here"

# sdk name -> why the emulator cannot answer it honestly. These answer 501.
NOT_IMPLEMENTED: Mapping[str, str] = {
    "audit_logs.list": "the emulator keeps no audit log",
    "audit_logs.export_chunk": "the emulator keeps no audit log",
    "audit_logs.export_destinations.test": "it would write to a remote bucket",
    "auth.connections.login": "managed logins run on Kernel's side",
    "auth.connections.submit": "managed logins run on Kernel's side",
    "config_registry.lookup": "recommendations come from Kernel's analyses of real sites",
    "config_registry.resolve": "recommendations come from Kernel's analyses of real sites",
    # Analyses and executors are made only by operations that answer 501 here (lookup,
    # resolve; playwright.execute): none can exist to be named.
    "config_registry.analyses.retrieve": "analyses are made by Kernel's analyses of real sites",
    "config_registry.analyses.cancel": "analyses are made by Kernel's analyses of real sites",
    "browsers.playwright.executors.delete": "executors start only with browsers.playwright.execute",
    "credential_providers.list_items": "it would read an outside password manager",
    "credential_providers.test": "it would reach an outside password manager",
    "extensions.download_from_chrome_store": "it would download from the Chrome Web Store",
    "profiles.download": "emulated browsers save no profile data",
    "proxies.check": "it would test a remote proxy",
    "search.contents.fetch": "the emulator does not fetch web pages",
    "vaults.retrieve_encryption_key": "the emulator holds no encryption keys",
    "vaults.items.perform_operation": "item operations reach outside providers or browsers",
    "browsers.playwright.execute": "no Playwright runtime runs beside emulated browsers",
    "browsers.webmcp.custom_tools.add": "custom tools run JavaScript inside a real page",
    "browsers.webmcp.custom_tools.list": "custom tools run JavaScript inside a real page",
    "browsers.webmcp.custom_tools.remove": "custom tools run JavaScript inside a real page",
    "browsers.webmcp.invoke_tool": "WebMCP tools run inside a real page",
    "browsers.webmcp.list_tools": "WebMCP tools run inside a real page",
    "browsers.repl": "no REPL runs beside emulated browsers",
    **{
        name: _BROWSER_FAMILY
        for name in (
            "browsers.computer.batch",
            "browsers.computer.capture_screenshot",
            "browsers.computer.click_mouse",
            "browsers.computer.drag_mouse",
            "browsers.computer.get_mouse_position",
            "browsers.computer.move_mouse",
            "browsers.computer.press_key",
            "browsers.computer.read_clipboard",
            "browsers.computer.scroll",
            "browsers.computer.set_cursor_visibility",
            "browsers.computer.type_text",
            "browsers.computer.write_clipboard",
            "browsers.curl",
            "browsers.load_extensions",
            "browsers.fs.create_directory",
            "browsers.fs.delete_directory",
            "browsers.fs.delete_file",
            "browsers.fs.download_dir_zip",
            "browsers.fs.file_info",
            "browsers.fs.list_files",
            "browsers.fs.move",
            "browsers.fs.read_file",
            "browsers.fs.set_file_permissions",
            "browsers.fs.upload",
            "browsers.fs.upload_zip",
            "browsers.fs.watch.start",
            "browsers.fs.watch.stop",
            "browsers.fs.watch.events",
            "browsers.fs.write_file",
            "browsers.logs.stream",
            "browsers.process.exec",
            "browsers.process.spawn",
            "browsers.process.kill",
            "browsers.process.resize",
            "browsers.process.status",
            "browsers.process.stdin",
            "browsers.process.stdout_stream",
            "browsers.telemetry.events",
            "browsers.telemetry.stream",
        )
    },
}

# kind -> the fields whose values are unique among its records (409 on a duplicate).
# Proxies are absent: the spec says several may share one name.
UNIQUE_NAMES: Mapping[str, tuple[str, ...]] = {
    "profiles": ("name",),
    "credentials": ("name",),
    "browser_pools": ("name",),
    "projects": ("name",),
    "vaults": ("name",),
    "extensions": ("name",),
    "credential_providers": ("name",),
    "vault_provider_configs": ("name",),
    "telemetry.destinations": ("name",),
    "auth.connections": ("profile_name", "domain"),
}

# kind -> how its IDs begin.
_ID_PREFIXES: Mapping[str, str] = {
    "profiles": "prf_",
    "proxies": "prx_",
    "extensions": "ext_",
    "browser_pools": "pool_",
    "credentials": "cred_",
    "credential_providers": "cp_",
    "vaults": "vlt_",
    "vaults.items": "vi_",
    "api_keys": "key_",
    "projects": "proj_",
    "telemetry.destinations": "otlp_",
    "audit_logs.export_destinations": "ald_",
    "deployments": "dep_",
    "invocations": "inv_",
    "auth.connections": "ma_",
    "vault_provider_configs": "vpc_",
    "search": "srch_",
}

# Query parameters that page or search rather than filter by a field's value.
_NOT_FILTERS = frozenset(
    {
        "limit",
        "offset",
        "page_token",
        "query",
        "search",
        "include_deleted",
        "sort_by",
        "sort_direction",
        "sort_order",
        "since",
        "expand",
        "wait",
        "after",
    }
)
_NO_SEARCH = "the emulator does not search the web: a search finds nothing"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
DEFAULT_ACQUIRE_TIMEOUT = 30.0
_KEY_ROTATION_GRACE_DAYS = 7


class ApiError(Exception):
    """A refusal answered as the API's Error body."""

    def __init__(
        self, status: int, code: str, message: str, details: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details)

    def body(self) -> dict[str, Any]:
        """The Error body: ``{"code", "message"}`` and ``details`` when there are some."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out

    def response(self) -> web.Response:
        """This error as an aiohttp response."""
        return web.json_response(self.body(), status=self.status)


def not_found(kind: str, ref: str) -> ApiError:
    """The 404 naming a kind and the ID (or name) asked for."""
    return ApiError(404, "not_found", f"{_singular(kind)} {ref!r} not found")


def _singular(kind: str) -> str:
    last = kind.rpartition(".")[2].replace("_", " ")
    if last.endswith("ies"):
        return last[:-3] + "y"
    if last.endswith(("sses", "ches", "xes")):
        return last[:-2]
    return last[:-1] if last.endswith("s") else last


# --- families from the spec (pure) -----------------------------------------------------


@attrs.frozen
class Family:
    """A resource family: a collection path, the item path parameter under it, the
    operations by role (create, list, retrieve, update, upsert, delete, download), and the
    family whose items hold it (``vaults`` for ``vaults.items``; ``browsers`` for
    families under a browser session)."""

    kind: str
    collection: str
    key: str | None
    parent: str | None
    roles: Mapping[str, str]

    @property
    def item(self) -> str | None:
        """The item path template."""
        return f"{self.collection}/{{{self.key}}}" if self.key else None


@attrs.frozen
class Singleton:
    """One object at a path (``/org/limits``), under a parent family's item or none."""

    kind: str
    template: str
    parent: str | None
    roles: Mapping[str, str]


_ROLE_OVERRIDES = {"extensions.get": "retrieve"}
_ITEM_ROLES = {"PATCH": "update", "PUT": "upsert", "DELETE": "delete"}


def _strip_last(template: str) -> tuple[str, str | None]:
    head, _, last = template.rpartition("/")
    if last.startswith("{") and last.endswith("}"):
        return head, last[1:-1]
    return template, None


def _owner(template: str, items: Mapping[str, str]) -> str | None:
    """The family whose item path is the longest proper prefix of ``template``."""
    best: tuple[int, str] | None = None
    for kind, item in items.items():
        if template.startswith(item + "/") and (best is None or len(item) > best[0]):
            best = (len(item), kind)
    if best is not None:
        return best[1]
    if template.startswith("/browsers/{id_or_name}/"):
        return "browsers"
    return None


def derive_families(
    ops: Iterable[Operation],
) -> tuple[dict[str, Family], dict[str, Singleton], dict[str, str]]:
    """Families, singletons and the leftover actions (sdk name -> owning kind or "")
    found in the spec's paths, for the operations given."""
    ops = list(ops)
    collections: dict[str, str] = {}
    keys: dict[str, str] = {}
    for op in ops:
        head, key = _strip_last(op.template)
        if key is not None and op.sdk_name not in _ROLE_OVERRIDES:
            collections.setdefault(op.kind, head)
            keys.setdefault(op.kind, key)
        elif (op.method == "GET" and op.pagination is not None) or _is_array(op):
            collections.setdefault(op.kind, op.template)
    roles: dict[str, dict[str, str]] = {}
    singles: dict[str, dict[str, str]] = {}
    single_templates: dict[str, str] = {}
    actions: dict[str, str] = {}
    for op in ops:
        collection = collections.get(op.kind)
        role: str | None = _ROLE_OVERRIDES.get(op.sdk_name)
        if role is None and collection is not None:
            if op.template == collection:
                role = {"POST": "create", "GET": "list" if _is_array(op) else None}.get(op.method)
                if role == "create" and op.verb == "upsert":
                    role = "upsert_by_name"
            elif op.template == f"{collection}/{{{keys.get(op.kind)}}}":
                role = _ITEM_ROLES.get(op.method)
                if op.method == "GET":
                    role = "retrieve" if op.is_json else "download"
        if role is not None:
            roles.setdefault(op.kind, {})[role] = op.sdk_name
        elif collection is None and op.method in ("GET", "PATCH") and _is_object(op):
            singles.setdefault(op.kind, {})["retrieve" if op.method == "GET" else "update"] = (
                op.sdk_name
            )
            single_templates[op.kind] = op.template
        else:
            actions[op.sdk_name] = ""
    items = {kind: f"{collections[kind]}/{{{keys[kind]}}}" for kind in roles if kind in keys}
    families = {
        kind: Family(
            kind=kind,
            collection=collections[kind],
            key=keys.get(kind),
            parent=_owner(collections[kind], items),
            roles=found,
        )
        for kind, found in roles.items()
    }
    singletons = {
        kind: Singleton(kind, single_templates[kind], _owner(single_templates[kind], items), found)
        for kind, found in singles.items()
    }
    by_name = {op.sdk_name: op for op in ops}
    for name in actions:
        actions[name] = _owner(by_name[name].template, items) or ""
        template = by_name[name].template
        for kind, item in items.items():  # an action on an item itself: /proxies/{id}/check
            if template.startswith(item + "/") and template.count("/") == item.count("/") + 1:
                actions[name] = kind
    return families, singletons, actions


def _is_array(op: Operation) -> bool:
    return (
        op.method == "GET"
        and op.is_json
        and resolve(op.response_schema or {}).get("type") == "array"
    )


def _is_object(op: Operation) -> bool:
    return op.is_json and "properties" in resolve(op.response_schema or {})


# --- small pure rules --------------------------------------------------------------


def page_of(
    items: Sequence[Any],
    kind: str | None,
    query: Mapping[str, Any],
) -> tuple[list[Any], dict[str, str]]:
    """One page of ``items`` and its headers, for the pagination ``kind`` (``offset``,
    ``page_token`` or None: everything). Raises `ApiError` for a bad token or limit."""
    if kind is None:
        return list(items), {}
    limit = query.get("limit", DEFAULT_LIMIT)
    if limit < 1:
        raise ApiError(422, "unprocessable_entity", f"query.limit: must be at least 1, got {limit}")
    limit = min(limit, MAX_LIMIT)
    if kind == "offset":
        start = query.get("offset", 0)
        if start < 0:
            raise ApiError(400, "bad_request", f"query.offset: must not be negative, got {start}")
    else:
        raw = query.get("page_token")
        start = 0
        if raw is not None:
            found = re.fullmatch(r"o(\d+)", raw)
            if found is None:
                raise ApiError(400, "bad_request", f"query.page_token: unknown token {raw!r}")
            start = int(found.group(1))
    page = list(items[start : start + limit])
    following = start + len(page)
    more = following < len(items)
    headers = {"X-Has-More": "true" if more else "false"}
    if kind == "offset":
        headers["X-Next-Offset"] = str(following)
    elif more:
        headers["X-Next-Page-Token"] = f"o{following}"
    return page, headers


def form_values(
    schema: Schema, parts: Sequence[FormPart]
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A multipart form as JSON-like values (``a[b]`` nested, scalars typed by the schema)
    and its file parts by field name."""
    props: Mapping[str, Schema] = resolve(schema).get("properties", {})
    values: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for part in parts:
        top, _, rest = part.name.partition("[")
        sub = resolve(props.get(top, {}))
        if part.filename is not None or sub.get("format") == "binary":
            files[part.name] = part.data
            continue
        if rest:
            keys = [k.rstrip("]") for k in ("[" + rest).split("[")[1:]]
            node = values.setdefault(top, {})
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = part.text
            continue
        value: Any = part.text
        if sub.get("type") == "integer" and re.fullmatch(r"[+-]?\d+", part.text):
            value = int(part.text)
        elif sub.get("type") == "boolean" and part.text in ("true", "false"):
            value = part.text == "true"
        values[top] = value
    return values, files


def totp(
    secret: str, *, when: float, digits: int = 6, period: int = 30, algorithm: str = "SHA1"
) -> str:
    """The RFC 6238 code of a base32 secret (or an ``otpauth://`` URI holding one)."""
    if secret.startswith("otpauth://"):
        params = parse_qs(urlparse(secret).query)
        secret = params.get("secret", [""])[0]
    cleaned = secret.replace(" ", "").upper()
    key = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    counter = int(when // period)
    digest = hmac.new(key, struct.pack(">Q", counter), algorithm.lower()).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


# --- state -------------------------------------------------------------------------


@attrs.define
class Record:
    """One stored resource: everything known of it (wire names; secrets too, which only
    schemas declaring them answer), and bytes uploaded with it."""

    data: dict[str, Any]
    seed: int
    blob: bytes | None = attrs.field(default=None, repr=False)


@attrs.define
class _Pool:
    idle: list[dict[str, Any]] = attrs.field(factory=list)
    leased: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    making: int = 0
    changed: asyncio.Event | None = None  # set (then replaced) whenever a slot may be free

    def wake(self) -> None:
        if self.changed is not None:
            self.changed.set()
            self.changed = None

    def waiter(self) -> asyncio.Event:
        if self.changed is None:
            self.changed = asyncio.Event()
        return self.changed


class GenericAPI:
    """The generic families, served over aiohttp (see the module's description).

    Args:
        authorize: Whether a request carries the right credentials (401 otherwise);
            None lets every request in.
        make_browser: Makes a browser for a pool: given the ``browsers.create`` body
            (from the pool's settings and the lease's), answers the browser as
            ``browsers.create`` would. None: an in-memory stand-in shaped by the spec.
        end_browser: Ends a browser a pool no longer needs (by session ID).
        browser_exists: The session ID of a browser given its ID or name, or None when
            there is none (404 for families under ``/browsers/{id_or_name}/``). None: any.
        exclude: sdk names the emulator serves itself (default: browsers and replays).
        seed: Seeds the IDs and placeholders (None: random).
        check_references: Whether pools' profiles, proxies, extensions and vaults must
            exist (404 otherwise), as `check_references` checks them.
    """

    def __init__(
        self,
        *,
        authorize: Authorize | None = None,
        make_browser: MakeBrowser | None = None,
        end_browser: EndBrowser | None = None,
        browser_exists: BrowserExists | None = None,
        exclude: Collection[str] = SERVED_BY_EMULATOR,
        seed: int | None = None,
        check_references: bool = True,
    ) -> None:
        self._authorize = authorize
        self._make_browser = make_browser
        self._end_browser = end_browser
        self._browser_exists = browser_exists
        self._references = check_references
        excluded = frozenset(exclude)
        self.index = (
            index(exclude_served=True)
            if excluded == SERVED_BY_EMULATOR
            else OperationIndex([op for op in index() if op.sdk_name not in excluded])
        )
        self.families, self.singletons, self.actions = derive_families(self.index)
        self._rng = random.Random(seed)
        self._seeds = itertools.count(self._rng.randrange(1 << 30))
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], dict[str, Record]] = {}
        self._pools: dict[str, _Pool] = {}
        self.follows = FollowStreams()
        self._actions: dict[str, Callable[..., Awaitable[web.StreamResponse]]] = {
            "browser_pools.acquire": self._acquire,
            "browser_pools.release": self._release,
            "browser_pools.flush": self._flush,
            "api_keys.rotate": self._rotate,
            "credentials.totp_code": self._totp_code,
            "invocations.list_browsers": self._no_browsers,
            "invocations.delete_browsers": self._nothing,
            "vaults.items.events": self._empty_list,
            "auth.connections.timeline": self._empty_list,
            "browsers.playwright.executors.list": self._nothing_yet,
        }

    # -- mounting ---------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        """A catch-all route answering every operation this serves (404 for other paths)."""
        return [web.route("*", "/{tail:.*}", self._route)]

    def add_to(self, app: web.Application) -> None:
        """Add `routes` to an aiohttp application."""
        app.add_routes(self.routes())

    def operation_names(self) -> frozenset[str]:
        """The sdk names of every operation answered here (served or 501)."""
        return frozenset(op.sdk_name for op in self.index)

    def match(self, method: str, raw_path: str) -> str | None:
        """The sdk name of the operation a request hits, if this serves it (for recording
        and fault injection before `dispatch`)."""
        found = self.index.match(method, raw_path)
        return found.operation.sdk_name if found else None

    async def _route(self, request: web.Request) -> web.StreamResponse:
        resp = await self.dispatch(request)
        if resp is None:
            return ApiError(404, "not_found", f"no route for {request.raw_path}").response()
        return resp

    async def dispatch(
        self, request: web.Request, body: bytes | None = None, *, drop_after: int | None = None
    ) -> web.StreamResponse | None:
        """Answer a request, or None when it hits none of the operations served here
        (``body``: the request's bytes if already read; ``drop_after``: an injected fault
        cutting an event stream after that many events)."""
        found = self.index.match(request.method, request.raw_path)
        if found is None:
            allowed = self.index.allowed(request.raw_path)
            if not allowed:
                return None
            return web.json_response(
                {"code": "method_not_allowed", "message": f"{request.method} is not allowed here"},
                status=405,
                headers={"Allow": ", ".join(allowed)},
            )
        if self._authorize is not None and not self._authorize(request):
            return ApiError(401, "unauthorized", "missing or invalid API key").response()
        if body is None:
            body = await request.read()
        op = found.operation
        raw_query = request.raw_path.partition("?")[2]
        checked = validate_request(
            op,
            found.path_params,
            parse_qsl(raw_query, keep_blank_values=True),
            request.headers.get("Content-Type"),
            body,
        )
        if checked.problems:
            status, payload = error_body(checked.problems)
            return web.json_response(payload, status=status)
        try:
            return await self._serve(
                op, found.path_params, checked.query, checked.body, request, drop_after
            )
        except ApiError as error:
            return error.response()

    # -- checks the emulator's browsers ask for ---------------------------------------

    def check_references(self, body: Mapping[str, Any]) -> ApiError | None:
        """The 404 for a ``browsers.create`` (or pool) body naming a profile, proxy,
        extension or vault that does not exist; None when all exist."""
        refs: list[tuple[str, Any]] = [("profiles", body.get("profile"))]
        refs.append(("proxies", body.get("proxy_id")))
        refs += [("extensions", e) for e in body.get("extensions") or ()]
        refs += [("vaults", v) for v in body.get("vaults") or ()]
        for kind, ref in refs:
            if ref is None:
                continue
            wanted = [ref] if isinstance(ref, str) else [ref.get("id"), ref.get("name")]
            wanted = [w for w in wanted if isinstance(w, str) and w]
            if not wanted:
                continue
            if all(self._find(kind, "", w) is None for w in wanted):
                missing = not_found(kind, wanted[0])
                return ApiError(
                    missing.status,
                    missing.code,
                    f"{missing.message}: create it first (client.{kind}.create(...)); "
                    "the emulator checks references as the API does "
                    "(FakeKernel(check_references=False) turns that off)",
                )
        return None

    def _require_references(self, body: Mapping[str, Any]) -> None:
        """Raise `check_references`' 404, unless references are not checked."""
        missing = self.check_references(body) if self._references else None
        if missing is not None:
            raise missing

    def records(self, kind: str, parent: str = "") -> list[dict[str, Any]]:
        """What is stored of a family (``profiles``; ``vaults.items`` with the vault's ID)."""
        with self._lock:
            return [dict(r.data) for r in self._records.get((kind, parent), {}).values()]

    # -- serving ------------------------------------------------------------------------

    async def _serve(
        self,
        op: Operation,
        path: Mapping[str, str],
        query: Mapping[str, Any],
        body: Any,
        request: web.Request,
        drop_after: int | None,
    ) -> web.StreamResponse:
        family = self._family_of(op)
        singleton = self.singletons.get(op.kind)
        if family is not None:
            owner_kind = family.parent
        elif singleton is not None:
            owner_kind = singleton.parent
        else:
            owner_kind = self.actions.get(op.sdk_name) or None
        if op.sdk_name in NOT_IMPLEMENTED:
            # Only owners that can exist here are checked (a browser, a profile), not e.g.
            # a file watch or an analysis, which nothing here can have made.
            while owner_kind in self.families and not self._makeable(owner_kind):
                owner_kind = self.families[owner_kind].parent
        parent = self._parent_key(owner_kind, path, op) if owner_kind else ""
        if op.sdk_name in NOT_IMPLEMENTED:
            raise ApiError(
                501,
                "not_implemented",
                f"{op.sdk_name} is not available in the emulator: {NOT_IMPLEMENTED[op.sdk_name]}",
            )
        if op.sdk_name in FOLLOWED:
            return await self._follow(op, request, parent, query, drop_after)
        action = self._actions.get(op.sdk_name)
        if action is not None:
            return await action(op, path, query, body, parent)
        if family is not None:
            role = next(r for r, name in family.roles.items() if name == op.sdk_name)
            return await self._family_op(family, role, op, path, query, body, parent)
        if singleton is not None:
            return self._singleton_op(singleton, op, body, parent)
        raise ApiError(
            501, "not_implemented", f"{op.sdk_name} is not available in the emulator"
        )  # every operation is covered above; a new one in the spec lands here

    def _makeable(self, kind: str) -> bool:
        """Whether a family's items can be made here (by a create or upsert not a 501)."""
        roles = self.families[kind].roles
        makers = ("create", "upsert", "upsert_by_name")
        return any(roles[r] not in NOT_IMPLEMENTED for r in makers if r in roles)

    def _family_of(self, op: Operation) -> Family | None:
        family = self.families.get(op.kind)
        if family is not None and op.sdk_name in family.roles.values():
            return family
        return None

    def _parent_key(self, owner_kind: str, path: Mapping[str, str], op: Operation) -> str:
        """Check every ancestor of an operation's path exists; the nearest one's ID."""
        if owner_kind == "browsers":
            ref = path["id_or_name"]
            found = self._browser_exists(ref) if self._browser_exists else ref
            if found is None:
                raise not_found("browsers", ref)
            return found
        owner = self.families[owner_kind]
        grand = self._parent_key(owner.parent, path, op) if owner.parent else ""
        assert owner.key is not None
        ref = path[owner.key]
        record = self._find(owner_kind, grand, ref)
        if record is None:
            raise not_found(owner_kind, ref)
        return str(record.data.get("id", ref))

    def _find(self, kind: str, parent: str, ref: str) -> Record | None:
        family = self.families.get(kind)
        key = (family.key if family else None) or "id"
        with self._lock:
            records = self._records.get((kind, parent), {})
            if key not in ("id", "id_or_name"):
                return next((r for r in records.values() if r.data.get(key) == ref), None)
            found = records.get(ref)
            if found is None and key == "id_or_name":
                found = next((r for r in records.values() if r.data.get("name") == ref), None)
            return found

    def _get(self, family: Family, parent: str, path: Mapping[str, str]) -> Record:
        assert family.key is not None
        ref = path[family.key]
        record = self._find(family.kind, parent, ref)
        if record is None:
            raise not_found(family.kind, ref)
        return record

    def _answer(self, schema: Schema | None, record: Record) -> Any:
        """A record in a response schema's shape; what was built to fill it is kept."""
        assert schema is not None
        pool = self._pools.get(record.data.get("id", ""))
        if pool is not None:  # a pool's counts are live
            size = int(record.data["browser_pool_config"].get("size", 0))
            record.data["acquired_count"] = len(pool.leased)
            record.data["available_count"] = max(0, size - len(pool.leased))
        out = synthesize(schema, known=record.data, seed=record.seed)
        if isinstance(out, dict):
            with self._lock:
                record.data = merge(out, record.data)
        return out

    def _item_schema(self, op: Operation) -> Schema:
        schema = resolve(op.response_schema or {})
        return schema.get("items", {}) if schema.get("type") == "array" else schema

    async def _family_op(
        self,
        family: Family,
        role: str,
        op: Operation,
        path: Mapping[str, str],
        query: Mapping[str, Any],
        body: Any,
        parent: str,
    ) -> web.StreamResponse:
        if role == "list":
            return self._list(family, op, query, parent)
        if role in ("create", "upsert_by_name"):
            record = await self._create(family, op, body, parent, path)
            self._state_changed(family.kind, record)
            return self._json(op, record)
        if role == "upsert":
            return await self._upsert(family, op, path, body, parent)
        record = self._get(family, parent, path)
        if role == "retrieve":
            return self._json(op, record)
        if role == "download":
            return web.Response(body=record.blob or b"", content_type=op.content_type)
        if role == "update":
            self._update(family, record, _as_object(body))
            self._state_changed(family.kind, record)
            return self._json(op, record)
        assert role == "delete", role
        await self._delete(family, record, parent, _as_object(body))
        self._followed_gone(family.kind, record)
        return web.Response(status=204)

    def _json(self, op: Operation, record: Record, status: int | None = None) -> web.Response:
        return web.json_response(
            self._answer(op.response_schema, record), status=status or op.status
        )

    def _list(
        self, family: Family, op: Operation, query: Mapping[str, Any], parent: str
    ) -> web.StreamResponse:
        with self._lock:
            records = list(self._records.get((family.kind, parent), {}).values())
        records = [r for r in records if _matches(r.data, query)]
        page, headers = page_of(records, op.pagination, query)
        schema = self._item_schema(op)
        return web.json_response([self._answer(schema, r) for r in page], headers=headers)

    def _new_record(self, family: Family, parent: str, data: dict[str, Any]) -> Record:
        seed = next(self._seeds)
        now = stamp()
        rng = random.Random(seed)
        data.setdefault("id", _ID_PREFIXES.get(family.kind, "") + token(rng))
        data.setdefault("created_at", now)
        data.setdefault("updated_at", now)
        return Record(data, seed)

    def _unique(
        self, family: Family, parent: str, data: Mapping[str, Any], own: str | None
    ) -> None:
        fields = UNIQUE_NAMES.get(family.kind)
        if not fields or any(data.get(f) is None for f in fields):
            return
        wanted = tuple(data.get(f) for f in fields)
        with self._lock:
            for record in self._records.get((family.kind, parent), {}).values():
                if (
                    record.data.get("id") != own
                    and tuple(record.data.get(f) for f in fields) == wanted
                ):
                    shown = ", ".join(f"{f} {v!r}" for f, v in zip(fields, wanted, strict=True))
                    raise ApiError(
                        409, "conflict", f"a {_singular(family.kind)} with {shown} already exists"
                    )

    def _store(self, family: Family, parent: str, record: Record) -> None:
        with self._lock:
            self._records.setdefault((family.kind, parent), {})[record.data["id"]] = record

    async def _create(
        self, family: Family, op: Operation, body: Any, parent: str, path: Mapping[str, str]
    ) -> Record:
        blob = None
        if isinstance(body, list):  # a multipart form
            assert op.body is not None
            data, files = form_values(op.body.schema, body)
            blob = next(iter(files.values()), None)
        else:
            data = dict(_as_object(body))
        if family.kind == "vaults" and family.roles.get("upsert_by_name") == op.sdk_name:
            existing = self._find("vaults", parent, data.get("name", ""))
            if existing is not None:  # the vault of that name, as it is
                return existing
        self._derive(family.kind, data, data, blob)
        self._unique(family, parent, data, None)
        if family.kind == "browser_pools":
            self._require_references(data)
        if family.kind == "auth.connections":
            self._ensure_profile(data.get("profile_name"))
        record = self._new_record(family, parent, data)
        record.blob = blob
        self._store(family, parent, record)
        if family.kind == "browser_pools":
            self._pools[record.data["id"]] = _Pool()
        return record

    def _ensure_profile(self, name: Any) -> None:
        # A managed auth connection creates the profile it names when there is none.
        profiles = self.families.get("profiles")
        if profiles is None or not isinstance(name, str) or self._find("profiles", "", name):
            return
        self._store(profiles, "", self._new_record(profiles, "", {"name": name}))

    def _derive(
        self, kind: str, data: dict[str, Any], body: Mapping[str, Any], blob: bytes | None
    ) -> None:
        """What a kind's records show beyond what was sent (cheap real rules)."""
        if kind == "credentials":
            values = data.get("values") or {}
            data["value_keys"] = sorted(values)
            data["has_values"] = bool(values)
            data["has_totp_secret"] = bool(data.get("totp_secret"))
        elif kind == "api_keys" and "key" not in data:
            key = "sk_" + secrets.token_hex(20)
            data["key"] = key
            data["masked_key"] = f"{key[:5]}...{key[-4:]}"
        elif kind == "extensions" and blob is not None:
            data["size_bytes"] = len(blob)
            data["checksum"] = hashlib.sha256(blob).hexdigest()
        elif kind == "deployments":
            data.setdefault("source_type", "file" if blob is not None else None)
        elif kind == "browser_pools":
            config = dict(data.get("browser_pool_config") or {})
            config.update(
                {k: v for k, v in body.items() if k not in ("discard_all_idle", "expected_network")}
            )
            data["browser_pool_config"] = config
            extensions = config.get("extensions") or []
            data["extension_ids"] = [
                e.get("id") or e.get("name") for e in extensions if isinstance(e, dict)
            ]
            profile = config.get("profile")
            data["profile_id"] = (
                profile.get("id") if isinstance(profile, dict) and profile.get("id") else None
            )
            data.setdefault("region", config.get("region", "us-east"))
            data["name"] = config.get("name")
        elif kind == "search":
            data.update(provider="emulator", attempts=[], results=[])
            data["warnings"] = [{"code": "emulated", "message": _NO_SEARCH}]
        elif kind == "invocations":
            data.setdefault("started_at", stamp())  # nothing queues it: it starts at once
            if data.get("status") in ("succeeded", "failed"):
                data.setdefault("finished_at", stamp())
        elif kind == "auth.connections":
            data.setdefault("status", "NEEDS_AUTH")  # no sign-in has happened yet

    def _update(self, family: Family, record: Record, body: Mapping[str, Any]) -> None:
        changes = dict(body)
        if family.kind == "credentials":
            values = dict(record.data.get("values") or {})
            values.update(changes.pop("values", None) or {})
            for key in changes.pop("remove_value_keys", None) or ():
                values.pop(key, None)
            changes["values"] = values
        if family.kind == "vaults.items":
            expected = changes.pop("expected_item_id", None)
            if expected is not None and expected != record.data.get("id"):
                raise ApiError(409, "conflict", f"the key now holds item {record.data.get('id')!r}")
        proposed = {**record.data, **changes}
        if not family.parent:
            self._unique(family, "", proposed, record.data.get("id"))
        if family.kind == "browser_pools":
            self._require_references(changes)
        with self._lock:
            record.data.update(changes)
            record.data["updated_at"] = stamp()
        self._derive(family.kind, record.data, changes, record.blob)
        if family.kind == "browser_pools":
            self._pools[record.data["id"]].wake()  # a larger size frees a waiting acquire

    async def _upsert(
        self, family: Family, op: Operation, path: Mapping[str, str], body: Any, parent: str
    ) -> web.StreamResponse:
        assert family.key is not None
        changes = dict(_as_object(body))
        record = self._find(family.kind, parent, path[family.key])
        if record is None:
            data = {family.key: path[family.key], **changes}
            record = self._new_record(family, parent, data)
            self._store(family, parent, record)
        elif any(record.data.get(k) != v for k, v in changes.items()):
            raise ApiError(
                409,
                "conflict",
                f"{path[family.key]!r} already holds a different {_singular(family.kind)}",
            )
        return self._json(op, record)

    async def _delete(
        self, family: Family, record: Record, parent: str, body: Mapping[str, Any]
    ) -> None:
        rid = record.data["id"]
        if family.kind == "browser_pools":
            pool = self._pools[rid]
            if pool.leased and not body.get("force"):
                raise ApiError(
                    409,
                    "conflict",
                    f"browser pool {rid!r} has {len(pool.leased)} leased browsers; pass force",
                )
            for browser in [*pool.idle, *pool.leased.values()]:
                await self._end(browser)
            pool.idle.clear()
            pool.leased.clear()
            pool.wake()
            del self._pools[rid]
        with self._lock:
            self._records.get((family.kind, parent), {}).pop(rid, None)
            for key in [k for k in self._records if k[1] == rid]:  # its items go with it
                del self._records[key]

    def _singleton_op(
        self, single: Singleton, op: Operation, body: Any, parent: str
    ) -> web.Response:
        key = (single.kind, parent)
        with self._lock:
            record = self._records.setdefault(key, {}).get("")
            if record is None:
                record = Record({}, next(self._seeds))
                self._records[key][""] = record
            if op.method == "PATCH":
                record.data.update(_as_object(body))
        return self._json(op, record)

    # -- follow streams (deployments, invocations, managed auth connections) -------------

    def publish(self, operation: str, resource_id: str, event: Mapping[str, Any]) -> int:
        """Add an event to a followed resource's stream (see `FakeKernel.publish`); its id.

        Any thread: the work is done on the emulator's loop. `ValueError` for another
        operation or an event its schema refuses (naming the field), `KeyError` for an
        unknown resource.
        """
        kind = FOLLOWED.get(operation)
        if kind is None or kind not in self.families:
            raise ValueError(
                f"{operation!r} is not a follow stream; use one of {', '.join(sorted(FOLLOWED))}"
            )
        if not isinstance(event, Mapping):
            raise TypeError(f"an event is a dict, not {type(event).__name__}")
        data = dict(event)
        return self.follows.call(lambda: self._publish(kind, operation, resource_id, data))

    def _publish(self, kind: str, op_name: str, ref: str, data: dict[str, Any]) -> int:
        record = self._find(kind, "", ref)
        if record is None:
            raise KeyError(
                f"{op_name}: no {_singular(kind)} {ref!r} in the emulator "
                "(create it through the API first)"
            )
        rid = str(record.data["id"])
        if not self.follows.has(kind, rid):
            self._state_changed(kind, record)
        data.setdefault("timestamp", stamp())
        spec = STATES[kind]
        if data.get("event") != spec.event:
            _refuse(op_name, check_event(op_name, data))
            return self.follows.add(kind, rid, data).id
        # A state event is laid over the resource's current state, which it then becomes.
        if spec.field is not None:
            given = data.get(spec.field)
            if isinstance(given, Mapping):
                current = self._state_event(kind, record)
                assert current is not None
                data[spec.field] = {**current[spec.field], **given}
            _refuse(op_name, check_event(op_name, data))
            changes = dict(data[spec.field])
            if changes.get("id", rid) != rid:
                raise ValueError(
                    f"{op_name}: the event is not valid: event.{spec.field}.id: "
                    f"this stream follows {rid!r}, got {changes['id']!r}"
                )
        else:
            fields = state_fields(op_name, kind)
            data = {**{k: v for k, v in record.data.items() if k in fields}, **data}
            _refuse(op_name, check_event(op_name, data))
            changes = {k: v for k, v in data.items() if k in fields}
            if changes.get("flow_status") == "SUCCESS":  # a sign-in that worked
                changes.update(status="AUTHENTICATED", last_auth_at=data["timestamp"])
        with self._lock:
            record.data.update(changes)
            record.data["updated_at"] = data["timestamp"]
        self._derive(kind, record.data, changes, record.blob)
        event = self._state_event(kind, record, data["timestamp"])
        assert event is not None
        added = self.follows.state(kind, rid, event, force=True)
        assert added is not None
        return added.id

    def _state_event(
        self, kind: str, record: Record, timestamp: str | None = None
    ) -> dict[str, Any] | None:
        """The resource's state as its stream's state event (a connection with no flow
        underway has none)."""
        spec = STATES[kind]
        op_name = next(op for op, followed in FOLLOWED.items() if followed == kind)
        schema = member(op_name, spec.event)
        assert schema is not None
        when = timestamp or stamp()
        if spec.field is None:
            if not record.data.get("flow_status") or not record.data.get("flow_step"):
                return None
            known = {**record.data, "event": spec.event, "timestamp": when}
            built: dict[str, Any] = synthesize(schema, known=known, seed=record.seed)
            return built
        nested = resolve(schema)["properties"][spec.field]
        return {"event": spec.event, spec.field: self._answer(nested, record), "timestamp": when}

    def _state_changed(self, kind: str, record: Record) -> None:
        """A followed resource was made or changed: a state event, when its state moved."""
        if kind not in STATES:
            return
        event = self._state_event(kind, record)
        rid = str(record.data["id"])
        if event is None:
            self.follows.log(kind, rid)  # followable, with nothing to say yet
        else:
            self.follows.state(kind, rid, event)

    def _followed_gone(self, kind: str, record: Record) -> None:
        """A followed resource was deleted: deleting a deployment stops it, deleting a
        connection cancels its flow underway; then its followers finish."""
        if kind not in STATES:
            return
        data = record.data
        if kind == "deployments" and data.get("status") not in ("stopped", "failed"):
            data.update(status="stopped", updated_at=stamp())
            self._state_changed(kind, record)
        elif kind == "auth.connections" and data.get("flow_status") == "IN_PROGRESS":
            data["flow_status"] = "CANCELED"
            self._state_changed(kind, record)
        self.follows.end(kind, str(data["id"]))

    async def _follow(
        self,
        op: Operation,
        request: web.Request,
        rid: str,
        query: Mapping[str, Any],
        drop_after: int | None,
    ) -> web.StreamResponse:
        kind = FOLLOWED[op.sdk_name]
        try:
            cutoff = since_cutoff(query.get("since"), datetime.now(timezone.utc))
        except ValueError as exc:
            raise ApiError(400, "bad_request", f"query.since: {exc}") from None
        if not self.follows.has(kind, rid):
            record = self._find(kind, "", rid)
            assert record is not None  # its existence was checked as the parent
            self._state_changed(kind, record)
        return await self.follows.serve(
            request,
            kind,
            rid,
            after=resume_after(request),
            cutoff=cutoff,
            drop_after=drop_after,
        )

    # -- actions --------------------------------------------------------------------------

    def _pool_of(self, path: Mapping[str, str]) -> tuple[Record, _Pool]:
        record = self._get(self.families["browser_pools"], "", path)
        return record, self._pools[record.data["id"]]

    async def _acquire(
        self, op: Operation, path: Mapping[str, str], query: Any, body: Any, parent: str
    ) -> web.StreamResponse:
        params = _as_object(body)
        self._require_references({"profile": params.get("profile")})
        record, pool = self._pool_of(path)
        timeout = params.get("acquire_timeout_seconds", DEFAULT_ACQUIRE_TIMEOUT)
        deadline = time.monotonic() + max(0.0, float(timeout))
        while True:
            size = int(record.data["browser_pool_config"].get("size", 0))
            if pool.idle:
                browser = pool.idle.pop(0)
                break
            if len(pool.leased) + pool.making < size:
                pool.making += 1
                try:
                    browser = dict(await self._browser_for(record.data["browser_pool_config"]))
                finally:
                    pool.making -= 1
                break
            left = deadline - time.monotonic()
            if left <= 0 or record.data["id"] not in self._pools:
                return web.Response(status=204)
            try:
                await asyncio.wait_for(pool.waiter().wait(), left)
            except asyncio.TimeoutError:
                return web.Response(status=204)
            if self._pools.get(record.data["id"]) is not pool:  # the pool was deleted
                raise not_found("browser_pools", path["id_or_name"])
        pool.leased[str(browser["session_id"])] = browser
        lease = {k: params[k] for k in ("name", "tags", "start_url") if k in params}
        known = {
            **browser,
            **lease,
            "pool": {"id": record.data["id"], "name": record.data.get("name")},
        }
        assert op.response_schema is not None
        return web.json_response(synthesize(op.response_schema, known=known, seed=0))

    async def _browser_for(self, config: Mapping[str, Any]) -> BrowserJSON:
        create = operation("browsers.create").body
        assert create is not None
        wanted = set(resolve(create.schema).get("properties", {}))
        # The pool's name is not its browsers' (their names are unique among sessions).
        params = {k: v for k, v in config.items() if k in wanted and k != "name" and v is not None}
        if self._make_browser is not None:
            return await self._make_browser(params)
        schema = operation("browser_pools.acquire").response_schema
        assert schema is not None
        return dict(synthesize(schema, known={**params, "session_id": "br_" + token(self._rng)}))

    async def _release(
        self, op: Operation, path: Mapping[str, str], query: Any, body: Any, parent: str
    ) -> web.StreamResponse:
        params = _as_object(body)
        record, pool = self._pool_of(path)
        session = params["session_id"]
        browser = pool.leased.pop(session, None)
        if browser is None:
            raise ApiError(
                404,
                "not_found",
                f"browser {session!r} is not leased from pool {record.data['id']!r}",
            )
        if params.get("reuse", True):
            pool.idle.append(browser)
        else:
            await self._end(browser)
        pool.wake()
        return web.Response(status=204)

    async def _flush(
        self, op: Operation, path: Mapping[str, str], query: Any, body: Any, parent: str
    ) -> web.StreamResponse:
        _, pool = self._pool_of(path)
        idle, pool.idle = pool.idle, []
        for browser in idle:
            await self._end(browser)
        pool.wake()
        return web.Response(status=204)

    async def _end(self, browser: Mapping[str, Any]) -> None:
        if self._end_browser is not None:
            await self._end_browser(str(browser["session_id"]))

    async def _rotate(
        self, op: Operation, path: Mapping[str, str], query: Any, body: Any, parent: str
    ) -> web.StreamResponse:
        family = self.families["api_keys"]
        old = self._get(family, "", path)
        params = _as_object(body)
        days = params.get("expire_in_days")
        if days is None:
            days = _KEY_ROTATION_GRACE_DAYS
        keep = ("name", "project_id", "project_name", "policy", "created_by")
        data = {k: old.data[k] for k in keep if k in old.data}
        if params.get("days_to_expire") is not None:
            data["expires_at"] = stamp(
                datetime.now(timezone.utc) + timedelta(days=params["days_to_expire"])
            )
        self._derive("api_keys", data, data, None)
        new = self._new_record(family, "", data)
        self._store(family, "", new)
        if days == 0:
            await self._delete(family, old, "", {})
        else:
            with self._lock:
                old.data["expires_at"] = stamp(datetime.now(timezone.utc) + timedelta(days=days))
        return self._json(op, new)

    async def _totp_code(
        self, op: Operation, path: Mapping[str, str], query: Any, body: Any, parent: str
    ) -> web.StreamResponse:
        record = self._get(self.families["credentials"], "", path)
        secret = record.data.get("totp_secret")
        if not secret:
            raise ApiError(
                400, "bad_request", f"credential {path['id_or_name']!r} has no TOTP secret"
            )
        period = int(record.data.get("totp_period") or 30)
        now = time.time()
        try:
            code = totp(
                secret,
                when=now,
                digits=int(record.data.get("totp_digits") or 6),
                period=period,
                algorithm=str(record.data.get("totp_algorithm") or "SHA1"),
            )
        except (ValueError, TypeError):
            raise ApiError(
                400, "bad_request", "the credential's TOTP secret is not base32"
            ) from None
        expires = datetime.fromtimestamp((now // period + 1) * period, timezone.utc)
        return web.json_response({"code": code, "expires_at": stamp(expires)})

    async def _no_browsers(
        self, op: Operation, path: Mapping[str, str], query: Any, body: Any, parent: str
    ) -> web.StreamResponse:
        self._get(self.families["invocations"], "", path)
        return web.json_response({"browsers": []})  # invocations run no code here

    async def _nothing(
        self, op: Operation, path: Mapping[str, str], query: Any, body: Any, parent: str
    ) -> web.StreamResponse:
        self._get(self.families["invocations"], "", path)
        return web.Response(status=204)

    async def _empty_list(
        self, op: Operation, path: Mapping[str, str], query: Any, body: Any, parent: str
    ) -> web.StreamResponse:
        # The item exists (checked as its parent); nothing has happened to it here.
        page, headers = page_of([], op.pagination, query)
        return web.json_response(page, headers=headers)

    async def _nothing_yet(
        self, op: Operation, path: Mapping[str, str], query: Any, body: Any, parent: str
    ) -> web.StreamResponse:
        # Only the required fields, each empty: e.g. no executors (nothing could start one).
        assert op.response_schema is not None
        return web.json_response(synthesize(op.response_schema, seed=0))


def _refuse(op_name: str, problems: Sequence[Problem]) -> None:
    if problems:
        raise ValueError(
            f"{op_name}: the event is not valid: " + "; ".join(str(p) for p in problems)
        )


def _as_object(body: Any) -> Mapping[str, Any]:
    return body if isinstance(body, Mapping) else {}


def _matches(data: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    """Whether a record passes a list's filters: each named field equal; ``query`` or
    ``search`` a substring of its ID or name."""
    text = query.get("query") or query.get("search")
    if text:
        haystack = f"{data.get('id', '')} {data.get('name') or ''}".lower()
        if str(text).lower() not in haystack:
            return False
    for name, wanted in query.items():
        if name in _NOT_FILTERS:
            continue
        got = data.get(name)
        if isinstance(wanted, list):
            if got not in wanted:
                return False
        elif got != wanted:
            return False
    return True
