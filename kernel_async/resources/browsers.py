"""`client.browsers`: the namespace holding `replays`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .replays import AsyncReplays

if TYPE_CHECKING:
    from .._client import AsyncKernel

__all__ = ["AsyncBrowsers"]


class AsyncBrowsers:
    """Browser sessions. Only their replays are covered by this SDK."""

    replays: AsyncReplays

    def __init__(self, client: AsyncKernel) -> None:
        self.replays = AsyncReplays(client)
