"""Blocking twins of the async pager and event stream (used by the generated twins)."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._bridge import await_, iterate
from ._runner import Runner

if TYPE_CHECKING:
    from kernel_async._pagination import AsyncPage, AsyncPager, PageInfo
    from kernel_async._streaming import AsyncStream

__all__ = ["Page", "Stream"]

T = TypeVar("T")


class Page(Generic[T]):
    """A list's first page (fetched when the call returns); ``for item in page``
    yields every item, fetching the following pages as the loop needs them.

    Attributes:
        items: The items of this page.
        has_more: Whether more items follow this page.
        next_offset: The next page's offset (offset lists), if any.
        next_page_token: The next page's token (token lists), if any.
    """

    def __init__(self, source: AsyncPager[T] | AsyncPage[T], runner: Runner) -> None:
        self._runner = runner
        page: AsyncPage[T] = runner.call(await_, source) if _is_pager(source) else source  # type: ignore[assignment]
        self._page = page
        self.items: list[T] = page.items
        self.has_more = page.has_more
        self.next_offset = page.next_offset
        self.next_page_token = page.next_page_token

    def has_next_page(self) -> bool:
        """Whether another page follows."""
        return self._page.has_next_page()

    def next_page_info(self) -> PageInfo | None:
        """The query of the next page, or `None` at the end (as the official pages)."""
        return self._page.next_page_info()

    def get_next_page(self) -> Page[T]:
        """Fetch the page after this one."""
        return Page(self._runner.call(self._page.get_next_page), self._runner)

    def iter_pages(self) -> Iterator[Page[T]]:
        """Every page from this one on (this one first), fetching each as the loop
        needs it: ``for page in first.iter_pages()``."""
        page: Page[T] = self
        while True:
            yield page
            if not page.has_next_page():
                return
            page = page.get_next_page()

    def __iter__(self) -> Iterator[T]:
        return iterate(self._runner, self._page)

    def __repr__(self) -> str:
        return repr(self._page).replace("AsyncPage", "Page", 1)


def _is_pager(source: Any) -> bool:
    from kernel_async._pagination import AsyncPager

    return isinstance(source, AsyncPager)


class Stream(Generic[T]):
    """A server-sent event stream: ``for event in stream``; ``with stream`` or
    `close()` ends the connection."""

    def __init__(self, source: AsyncStream[T], runner: Runner) -> None:
        self._async = source
        self._runner = runner

    def __iter__(self) -> Iterator[T]:
        return iterate(self._runner, self._async)

    @property
    def operation(self) -> str:
        """The operation streamed, e.g. ``"browsers.logs.stream"``."""
        return self._async.operation

    @property
    def received(self) -> int:
        """Events delivered to the consumer so far."""
        return self._async.received

    @property
    def reconnects(self) -> int:
        """How many times the stream was resumed after a cut."""
        return self._async.reconnects

    @property
    def last_event_id(self) -> str | None:
        """The last event id the server sent (a resume starts after it)."""
        return self._async.last_event_id

    def close(self) -> None:
        """Close the connection (at once); idempotent."""
        if not self._runner.closed:
            self._runner.call(self._async.close)

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncStream", "Stream", 1)
