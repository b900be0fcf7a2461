"""Paged lists: ``await`` for the first page, ``async for`` for every item.

The API pages by response headers: ``X-Has-More`` with ``X-Next-Offset`` (offset
lists) or ``X-Next-Page-Token`` (token lists); the body is the page's JSON array.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Generator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from ._client import AsyncKernel
    from ._operation import Request

__all__ = ["AsyncPage", "AsyncPager", "PageInfo", "next_page_query"]

T = TypeVar("T")


def next_page_query(
    kind: str | None,
    headers: Mapping[str, str],
    sent: Mapping[str, Any],
    seen: Collection[int] = (),
) -> dict[str, Any] | None:
    """The query of the page after one answered with `headers`, or `None` at the end.

    Pure: a missing or false ``X-Has-More`` ends the list, as does an empty token or one
    equal to the sent one. An offset is a cursor that may move either way (newest-first
    lists page backwards), so only one that cannot lead anywhere new ends the list: zero,
    the sent one, or any in `seen` (the offsets this walk already fetched) — a server bug
    must not loop forever.
    """
    more = headers.get("X-Has-More", "").strip().lower() == "true"
    if not more:
        return None
    if kind == "page_token":
        token = headers.get("X-Next-Page-Token", "").strip()
        if not token or token == sent.get("page_token"):
            return None
        return {"page_token": token}
    raw = headers.get("X-Next-Offset", "").strip()
    if not raw.isascii() or not raw.isdigit():
        return None
    offset = int(raw)
    before = str(sent.get("offset", 0)).strip()  # an int, or text from extra_query
    if (
        offset <= 0
        or offset in seen
        or (before.isascii() and before.isdigit() and offset == int(before))
    ):
        return None
    return {"offset": offset}


class PageInfo:
    """Where the next page is: the query parameters that fetch it (as the official
    SDK's ``next_page_info().params``).

    Attributes:
        params: The query parameters of the next page, e.g. ``{"offset": 20}``.
    """

    __slots__ = ("params",)

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params: dict[str, Any] = dict(params)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PageInfo) and other.params == self.params

    __hash__ = None  # type: ignore[assignment]  # mutable params: not hashable

    def __repr__(self) -> str:
        return f"PageInfo(params={self.params!r})"


class AsyncPage(Generic[T]):
    """One page of a list.

    Attributes:
        items: The items on this page.
        has_more: Whether the server said more follow (``X-Has-More``).
        next_offset: The next page's offset (offset lists), if any.
        next_page_token: The next page's token (token lists), if any.
    """

    def __init__(
        self,
        pager: AsyncPager[T],
        items: list[T],
        following: dict[str, Any] | None,
        seen: frozenset[int] = frozenset(),
    ) -> None:
        self._pager = pager
        self.items = items
        self._following = following
        self._seen = seen  # the offsets fetched so far in this walk
        self.has_more = following is not None
        self.next_offset: int | None = following.get("offset") if following else None
        self.next_page_token: str | None = following.get("page_token") if following else None

    def has_next_page(self) -> bool:
        """Whether another page follows."""
        return self._following is not None

    def next_page_info(self) -> PageInfo | None:
        """The query of the next page, or `None` at the end (as the official pages)."""
        return None if self._following is None else PageInfo(self._following)

    async def get_next_page(self) -> AsyncPage[T]:
        """Fetch the page after this one (raises `StopAsyncIteration`-free: check
        `has_next_page` first; at the end this raises `RuntimeError`)."""
        if self._following is None:
            raise RuntimeError("no next page: check has_next_page() first")
        return await self._pager._fetch(self._following, self._seen)

    async def iter_pages(self) -> AsyncIterator[AsyncPage[T]]:
        """Every page from this one on (this one first), fetching each as the loop
        needs it: ``async for page in first.iter_pages()``."""
        page: AsyncPage[T] = self
        while True:
            yield page
            if not page.has_next_page():
                return
            page = await page.get_next_page()

    async def __aiter__(self) -> AsyncIterator[T]:
        async for page in self.iter_pages():
            for item in page.items:
                yield item

    if not TYPE_CHECKING:  # at run time only: a type checker must not think it iterable

        def __iter__(self):
            raise TypeError(
                f"a page of {self._pager._req.op.name}() on the async client is iterated "
                "with `async for` (or loop over `page.items`, or use kernel_sync.Kernel "
                "for a plain `for`)"
            )

    def __repr__(self) -> str:
        name = self._pager._req.op.name
        return f"<AsyncPage of {name}: {len(self.items)} items, has_more={self.has_more}>"


class AsyncPager(Generic[T]):
    """A lazy list: ``await pager`` is the first page; ``async for item in pager``
    fetches page after page as the loop needs them."""

    def __init__(self, client: AsyncKernel, req: Request) -> None:
        self._client = client
        self._req = req

    async def _fetch(
        self, query: dict[str, Any] | None = None, seen: frozenset[int] = frozenset()
    ) -> AsyncPage[T]:
        from ._operation import send

        items, headers = await send(self._client, self._req, query)
        sent = {**self._req.query, **(query or {})}
        at = str(sent.get("offset", "")).strip()
        if at.isascii() and at.isdigit():
            seen = seen | {int(at)}
        following = next_page_query(self._req.op.pagination, headers, sent, seen)
        return AsyncPage(self, items, following, seen)

    def __await__(self) -> Generator[Any, None, AsyncPage[T]]:
        return self._fetch().__await__()

    async def __aiter__(self) -> AsyncIterator[T]:
        page = await self._fetch()
        async for item in page:
            yield item

    if not TYPE_CHECKING:  # at run time only: a type checker must not think it iterable

        def __iter__(self):
            raise TypeError(
                f"{self._req.op.name}() on the async client is iterated with `async for` "
                "(or use kernel_sync.Kernel for a plain `for`)"
            )

    def __repr__(self) -> str:
        query = {k: v for k, v in self._req.query.items()}
        return f"<AsyncPager {self._req.op.name} query={query!r}>"
