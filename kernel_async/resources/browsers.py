"""`client.browsers`: create, retrieve, update, delete, list, record; and `replays`."""

from __future__ import annotations

import builtins
import functools
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from .._errors import decode_json
from .._gen.browsers import AsyncBrowsersBase
from .._gen_support import OfficialOnly
from .._models import Browser, BrowserPage, Viewport, decode_browser, decode_browsers
from .._operation import given
from .._pagination import PageInfo
from .._paths import segment
from .._retry import Timeout
from .._types import NOT_GIVEN, BrowserStatus, NotGiven, Region, check_int
from . import _params
from .recording import AsyncRecording
from .replays import AsyncReplays

if TYPE_CHECKING:
    from yarl import URL

    from .._client import AsyncKernel
    from .._gen.models._shared import (
        BrowserExtension,
        BrowserNetworkConfigParam,
        BrowserProfile,
        BrowserProxyConfigParam,
    )
    from .._gen.models.browsers import (
        BrowserCreateParamsTelemetry,
        BrowserLocationRequestParam,
        BrowserLocationUpdateRequestParam,
        BrowserNetworkUpdateParam,
        BrowserUpdateParamsTelemetry,
        VaultReferenceParam,
    )
    from .._transport import Response

__all__ = ["AsyncBrowserPager", "AsyncBrowsers"]


class AsyncBrowsers(AsyncBrowsersBase):
    """Browser sessions: ``client.browsers`` (and their replays, ``client.browsers.replays``)."""

    replays: AsyncReplays

    if not TYPE_CHECKING:  # the official raw-HTTP helpers: reading one names browsers.curl
        request = OfficialOnly("browsers.request")
        stream = OfficialOnly("browsers.request")

    def __init__(self, client: AsyncKernel) -> None:
        self._client = client
        self.replays = AsyncReplays(client)

    async def create(
        self,
        *,
        headless: bool | None = None,
        stealth: bool | None = None,
        gpu: bool | None = None,
        timeout_seconds: int | None = None,
        viewport: Viewport | Mapping[str, object] | None = None,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        start_url: str | None = None,
        kiosk_mode: bool | None = None,
        profile: BrowserProfile | Mapping[str, object] | None = None,
        proxy_id: str | None = None,
        region: Region | None = None,
        chrome_policy: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        extensions: Sequence[BrowserExtension | Mapping[str, object]] | NotGiven = NOT_GIVEN,
        invocation_id: str | NotGiven = NOT_GIVEN,
        location: BrowserLocationRequestParam | Mapping[str, object] | NotGiven = NOT_GIVEN,
        memory: Literal["1GiB", "2GiB", "4GiB", "8GiB", "16GiB"] | NotGiven = NOT_GIVEN,
        network: BrowserNetworkConfigParam | Mapping[str, object] | NotGiven = NOT_GIVEN,
        proxy: BrowserProxyConfigParam | Mapping[str, object] | NotGiven = NOT_GIVEN,
        telemetry: BrowserCreateParamsTelemetry
        | Mapping[str, object]
        | NotGiven
        | None = NOT_GIVEN,
        vaults: Sequence[VaultReferenceParam | Mapping[str, object]] | NotGiven = NOT_GIVEN,
        video_memory: Literal["2GiB", "4GiB"] | NotGiven = NOT_GIVEN,
        extra_body: Mapping[str, object] | None = None,
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, object] | None = None,
    ) -> Browser:
        """Create a browser session.

        Never re-sent after an ambiguous failure (a timeout or reset after sending):
        a retry could start a second, billed browser. Bad values raise `ValueError`
        (or `TypeError`) naming the parameter before anything is sent.

        Args:
            headless: Launch without a GUI (no live view, and no replays).
            stealth: Stealth mode (reduces bot detection).
            gpu: GPU acceleration (needed for replays above 20 fps).
            timeout_seconds: Inactivity timeout, 10 to 259200 (72 h).
            viewport: Window size and refresh rate (a `Viewport`, or the official dict).
            name: Human-readable name, unique among active sessions.
            tags: Up to 50 str -> str pairs, to find and group sessions later.
            start_url: URL to open when the session starts (best effort).
            kiosk_mode: Hide the address bar and tabs in the live view.
            profile: Profile to load: ``{"id": ...}`` or ``{"name": ...}``, optionally
                with ``"save_changes": True``.
            proxy_id: ID of a proxy of your organisation.
            region: ``us-east``, ``us-west``, ``eu-west`` or ``ap-southeast``.
            chrome_policy: Chrome enterprise policies to apply.
            extensions: Uploaded extensions to load, each ``{"id": ...}`` or ``{"name": ...}``.
            invocation_id: The app invocation this browser belongs to.
            location: Locale and timezone overrides.
            memory: Memory size of the browser's machine.
            network: Network rules (allowed and private hosts, proxy routes).
            proxy: An inline proxy configuration.
            telemetry: Telemetry collection and export settings.
            vaults: Vaults whose items the browser may use.
            video_memory: Video memory size (GPU browsers).
            extra_body: More JSON fields (they win over the keywords above).
            timeout: Overrides the client's timeout for this call.
            extra_headers: Headers added to this request.
            extra_query: Query parameters added to this request.

        The keywords after `region` follow the official SDK (not given: not sent); see
        the API reference for their shapes. Dicts and the generated models both work.
        """
        more = given(
            {
                "chrome_policy": chrome_policy,
                "extensions": extensions,
                "invocation_id": invocation_id,
                "location": location,
                "memory": memory,
                "network": network,
                "proxy": proxy,
                "telemetry": telemetry,
                "vaults": vaults,
                "video_memory": video_memory,
            }
        )
        body = _params.create_body(
            headless=headless,
            stealth=stealth,
            gpu=gpu,
            timeout_seconds=timeout_seconds,
            viewport=viewport,
            name=name,
            tags=tags,
            start_url=start_url,
            kiosk_mode=kiosk_mode,
            profile=profile,
            proxy_id=proxy_id,
            region=region,
            extra_body={**more, **extra_body} if extra_body else more,
        )
        return await self._create(body, timeout, extra_headers, extra_query)

    async def _create(
        self,
        body: Mapping[str, object],
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, object] | None = None,
    ) -> Browser:
        return await self._client._request_json(
            "POST",
            "/browsers" + _params.extra_query_string(extra_query),
            decode_browser,
            idempotent=False,  # a retried create could start a second, billed browser
            body=json.dumps(body).encode(),
            timeout=timeout,
            extra_headers=extra_headers,
        )

    async def retrieve(
        self,
        id_or_name: str,
        *,
        include_deleted: bool = False,
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, object] | None = None,
    ) -> Browser:
        """Get a browser session by ID or name.

        Args:
            id_or_name: Browser session ID or name.
            include_deleted: Also find deleted sessions (otherwise they are 404).
            timeout: Overrides the client's timeout for this call.
            extra_headers: Headers added to this request.
            extra_query: Query parameters added to this request.
        """
        path = f"/browsers/{segment(id_or_name, 'id_or_name')}"
        if _params.check_bool(include_deleted, "include_deleted"):
            path += "?include_deleted=true"
        path += _params.extra_query_string(extra_query, "&" if "?" in path else "?")
        return await self._client._request_json(
            "GET",
            path,
            decode_browser,
            idempotent=True,
            timeout=timeout,
            extra_headers=extra_headers,
        )

    async def update(
        self,
        id_or_name: str,
        *,
        name: str | NotGiven | None = NOT_GIVEN,
        tags: Mapping[str, str] | NotGiven | None = NOT_GIVEN,
        viewport: Viewport | Mapping[str, object] | NotGiven = NOT_GIVEN,
        disable_default_proxy: bool | NotGiven = NOT_GIVEN,
        location: BrowserLocationUpdateRequestParam | Mapping[str, object] | NotGiven = NOT_GIVEN,
        network: BrowserNetworkUpdateParam | Mapping[str, object] | NotGiven = NOT_GIVEN,
        profile: BrowserProfile | Mapping[str, object] | NotGiven = NOT_GIVEN,
        proxy: BrowserProxyConfigParam | Mapping[str, object] | NotGiven = NOT_GIVEN,
        proxy_id: str | NotGiven | None = NOT_GIVEN,
        start_url: str | NotGiven = NOT_GIVEN,
        telemetry: BrowserUpdateParamsTelemetry
        | Mapping[str, object]
        | NotGiven
        | None = NOT_GIVEN,
        extra_body: Mapping[str, object] | None = None,
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, object] | None = None,
    ) -> Browser:
        """Change a browser session (``PATCH``) and return it as it now is.

        Args:
            id_or_name: Browser session ID or name.
            name: New name; `None` or ``""`` clears it; not given leaves it unchanged.
            tags: New tag set, replacing the old one (`None` or ``{}`` clears them).
            viewport: New window size and refresh rate; ``{"force": True}`` in a dict
                applies it even while the browser is in use.
            disable_default_proxy: Stop using the default proxy.
            location: New locale and timezone.
            network: Changes to the network rules.
            profile: Load this profile (``{"id": ...}`` or ``{"name": ...}``).
            proxy: An inline proxy configuration.
            proxy_id: Switch to this proxy (`None` removes it).
            start_url: Open this URL.
            telemetry: New telemetry settings; `None` or ``{}`` leaves them as they are,
                ``{"enabled": False}`` stops capture.
            extra_body: More JSON fields (they win over the keywords above).
            timeout: Overrides the client's timeout for this call.
            extra_headers: Headers added to this request.
            extra_query: Query parameters added to this request.

        The keywords after `viewport` follow the official SDK (not given: not sent).
        """
        path = f"/browsers/{segment(id_or_name, 'id_or_name')}"
        path += _params.extra_query_string(extra_query)
        more = given(
            {
                "disable_default_proxy": disable_default_proxy,
                "location": location,
                "network": network,
                "profile": NOT_GIVEN
                if isinstance(profile, NotGiven)
                else _params.profile_json(profile),
                "proxy": proxy,
                "proxy_id": proxy_id,
                "start_url": start_url,
                "telemetry": telemetry,
            }
        )
        extra = {**more, **extra_body} if extra_body else more
        body = _params.update_body(name=name, tags=tags, viewport=viewport, extra_body=extra)
        return await self._client._request_json(
            "PATCH",
            path,
            decode_browser,
            idempotent=True,  # the same PATCH twice leaves the same state
            body=json.dumps(body).encode(),
            timeout=timeout,
            extra_headers=extra_headers,
        )

    async def delete(
        self,
        id_or_name: str,
        *,
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        """Delete a browser session. Idempotent: retried after timeouts and resets,
        and a retry that finds the session already gone succeeds.

        Its replays stay listable and downloadable after deletion.

        Args:
            id_or_name: Browser session ID or name.
            timeout: Overrides the client's timeout for this call.
            extra_headers: Headers added to this request.
        """
        await self._client._request(
            "DELETE",
            f"/browsers/{segment(id_or_name, 'id_or_name')}",
            idempotent=True,
            missing_ok_after_retry=True,
            timeout=timeout,
            extra_headers=extra_headers,
            read_limit=64 * 1024,  # the body is ignored
        )

    def list(
        self,
        *,
        status: BrowserStatus | None = None,
        query: str | None = None,
        tags: Mapping[str, str] | None = None,
        region: Region | None = None,
        limit: int | None = None,
        offset: int | None = None,
        include_deleted: bool | NotGiven = NOT_GIVEN,
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, object] | None = None,
    ) -> AsyncBrowserPager:
        """List browser sessions, a page at a time or all of them.

        ``await`` the result for the first page, or
        ``async for`` over it for every session, pages fetched as needed.

        Arguments are checked before anything is sent.

        Args:
            status: ``active`` (the API's default), ``deleted`` or ``all``.
            query: Search by name, session ID, profile, proxy ID or pool name.
            tags: Only sessions carrying every one of these tag pairs.
            region: Only sessions in this region.
            limit: Page size, 1 to 100 (the API's default is 20).
            offset: Where the first page starts.
            include_deleted: Include deleted sessions (as ``status="all"`` does).
            timeout: Overrides the client's timeout for each page's call.
            extra_headers: Headers added to each page's request.
            extra_query: Query parameters added to each page's request.
        """
        base = _params.list_query(status=status, query=query, tags=tags, region=region, limit=limit)
        if not isinstance(include_deleted, NotGiven):
            flag = _params.check_bool(include_deleted, "include_deleted")
            base.insert(0, ("include_deleted", "true" if flag else "false"))
        if extra_query:
            from .._operation import encode_query, plain

            base += encode_query(plain(dict(extra_query)))
        start = 0 if offset is None else check_int(offset, "offset")
        client = self._client

        async def fetch(at: int) -> BrowserPage:
            params = [*base, ("offset", str(at))] if at else base
            resp, url, attempts = await client._request(
                "GET",
                "/browsers" + _params.encode_query(params),
                idempotent=True,
                timeout=timeout,
                extra_headers=extra_headers,
            )
            page = _page(resp, url, attempts, at)
            following = _params.next_offset(page, at)
            if following is None:
                return page
            return attrs.evolve(page, following=functools.partial(fetch, following))

        return AsyncBrowserPager(fetch, start, base)

    def record(
        self,
        id_or_name: str | None = None,
        *,
        save_to: str | os.PathLike[str] | None = "run.mp4",
        framerate: int | None = 10,
        max_duration_in_seconds: int | None = None,
        record_audio: bool | None = None,
        headless: bool = False,
        stealth: bool | None = None,
        gpu: bool | None = None,
        timeout_seconds: int | None = None,
        viewport: Viewport | Mapping[str, object] | None = None,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        start_url: str | None = None,
        region: Region | None = None,
        extra_body: Mapping[str, object] | None = None,
        cleanup_timeout: float = 300.0,
    ) -> AsyncRecording:
        """A recorded session: ``async with client.browsers.record() as rec:``.

        On entry: creates a browser (or uses `id_or_name`), starts a replay. Inside:
        drive ``rec.browser.cdp_ws_url``. On exit, however the block ends (normally,
        by an exception, by cancellation): stops the replay, waits until the video is
        finalised, saves it atomically to `save_to` (`None`: not downloaded), and
        deletes the browser it created (never one it was given). Cleanup is shielded
        from cancellation and bounded by `cleanup_timeout` (plus a separate bound for
        the delete). The block's own exception wins: cleanup failures are attached
        to it as notes (logged on Python 3.10). After exit ``rec.path`` is where the
        video is. A browser already gone at cleanup (ended for idleness, deleted
        elsewhere) is not an error; a video that could not be saved is.

        Nothing is left behind when an answer is lost: the browser it creates carries
        the tag ``kernel_async_record=<random>``, so after a create that failed
        ambiguously (timeout, reset, 5xx) the browser made anyway is found and
        deleted; after such a start on a browser it was given, the recording begun
        anyway is stopped. The raised error says what was cleaned up, or what to end
        by hand. If the client is closed inside the block, cleanup runs on a
        short-lived connection of its own.

        Args:
            id_or_name: Record this existing browser instead of creating one; the
                create options must then be left unset.
            save_to: Where to save the MP4 (``~`` is expanded). Checked at once by
                creating a file in its directory (and removing it): a path that cannot
                be written is refused before any browser is created.
            framerate: Replay framerate (above 20 needs ``gpu=True``).
            max_duration_in_seconds: Replay length limit.
            record_audio: Record audio too.
            headless: Create a headless browser (replays need a GUI: keep False).
            stealth: See `create`.
            gpu: See `create`.
            timeout_seconds: See `create`.
            viewport: See `create`.
            name: See `create`.
            tags: See `create` (at most 49: one more is added, see above).
            start_url: See `create`.
            region: See `create`.
            extra_body: See `create`.
            cleanup_timeout: Seconds the stop, finalise wait and download may take
                (and, after a lost answer at entry, the search for what it made).
        """
        body = _params.create_body(
            headless=headless,
            stealth=stealth,
            gpu=gpu,
            timeout_seconds=timeout_seconds,
            viewport=viewport,
            name=name,
            tags=tags,
            start_url=start_url,
            region=region,
            extra_body=extra_body,
        )
        create: dict[str, object] | None = None
        mark: str | None = None
        if id_or_name is not None:
            segment(id_or_name, "id_or_name")
            if body and body != {"headless": False}:
                raise ValueError(
                    "record(id_or_name=...) records an existing browser: "
                    f"{', '.join(sorted(body))} only apply when it creates one"
                )
        else:
            import uuid

            mark = uuid.uuid4().hex  # finds the browser again should the create's answer be lost
            create = _params.with_tag(body, _params.RECORD_TAG, mark)
        start = _params.replay_params(framerate, max_duration_in_seconds, record_audio)
        return AsyncRecording(
            self,
            id_or_name=id_or_name,
            create=create,
            mark=mark,
            start=start,
            save_to=save_to,
            cleanup_timeout=cleanup_timeout,
        )


class AsyncBrowserPager:
    """What `AsyncBrowsers.list` returns: the first page, and every browser.

    ``await pager`` gives the first page (a `BrowserPage`);
    ``async for browser in pager`` yields every browser, fetching pages by offset
    as it goes (the first page is fetched once and reused). Once fetched, `items`,
    `has_more` and `next_offset` tell what the first page held.
    """

    def __init__(
        self,
        fetch: Callable[[int], Awaitable[BrowserPage]],
        start: int,
        filters: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._fetch = fetch
        self._start = start
        self._filters = tuple(filters)
        self._first: BrowserPage | None = None

    def __repr__(self) -> str:
        return pager_repr(type(self).__name__, self._filters, self._start, self._first)

    if not TYPE_CHECKING:  # at run time only: a type checker must not think it iterable

        def __iter__(self):
            raise TypeError(
                "the async client's list() is iterated with `async for browser in "
                "client.browsers.list(...)` (or awaited for its first page), not `for`"
            )

    def __await__(self) -> Generator[Any, None, BrowserPage]:
        return self.first_page().__await__()

    async def first_page(self) -> BrowserPage:
        """Fetch the first page (once; later calls return the same page)."""
        if self._first is None:
            self._first = await self._fetch(self._start)
        return self._first

    def __aiter__(self) -> AsyncIterator[Browser]:
        return self._every()

    async def _every(self) -> AsyncIterator[Browser]:
        async for pager in self.iter_pages():
            for browser in pager.items:
                yield browser

    async def iter_pages(self) -> AsyncIterator[AsyncBrowserPager]:
        """The list from each page on, this one first, each page fetched as the loop
        needs it (``async for page in pager.iter_pages()``: ``page.items``)."""
        pager = self
        await pager.first_page()
        while True:
            yield pager
            if not pager.has_next_page():
                return
            pager = pager.get_next_page()
            await pager.first_page()

    def has_next_page(self) -> bool:
        """Whether a page follows the first."""
        return self._page().has_next_page()

    def next_page_info(self) -> PageInfo | None:
        """The query of the page after the first (``params={"offset": ...}``), or `None`
        at the end."""
        return self._page().next_page_info()

    def get_next_page(self) -> AsyncBrowserPager:
        """The list from the page after the first, with the same filters
        (``await`` it for that page). At the last page this raises `RuntimeError`:
        check `has_next_page` first."""
        if not self.has_next_page():
            raise RuntimeError("no next page: check has_next_page() first")
        following = self._page().next_offset
        assert following is not None
        return AsyncBrowserPager(self._fetch, following, self._filters)

    def _page(self) -> BrowserPage:
        if self._first is None:
            raise RuntimeError("await the pager (or its first_page()) before reading the page")
        return self._first

    @property
    def items(self) -> builtins.list[Browser]:
        """The browsers of the first page."""
        return self._page().items

    @property
    def has_more(self) -> bool:
        """Whether more browsers follow the first page."""
        return self._page().has_more

    @property
    def next_offset(self) -> int | None:
        """The offset of the page after the first, if any."""
        return self._page().next_offset


def _page(resp: Response, url: URL, attempts: int, at: int) -> BrowserPage:
    """A `BrowserPage` from a list response's body and pagination headers (the page was
    fetched at offset `at`; its next offset must move past it)."""

    def decode(body: bytes) -> BrowserPage:
        items = decode_browsers(body)
        next_at = resp.headers.get("X-Next-Offset")
        offset = int(next_at) if next_at is not None else None
        more = resp.headers.get("X-Has-More")
        has_more = more.lower() == "true" if more is not None else bool(offset)
        page = BrowserPage(items, has_more, offset if has_more else None)
        _params.next_offset(page, at)  # refuses offsets that cannot page on
        return page

    return decode_json(resp, decode, method="GET", url=url, attempts=attempts)


def pager_repr(
    kind: str, filters: Sequence[tuple[str, str]], start: int, first: BrowserPage | None
) -> str:
    """What a pager lists (the filters, where it starts) and what it has fetched."""
    shown = " ".join(f"{key}={value!r}" for key, value in filters) or "no filters"
    where = f", from offset {start}" if start else ""
    if first is None:
        state = "first page not fetched yet"
    else:
        count = len(first.items)
        state = f"first page: {count} browser{'' if count == 1 else 's'}, " + (
            f"more from offset {first.next_offset}" if first.has_more else "no more"
        )
    return f"<{kind} of browsers ({shown}{where}): {state}>"
