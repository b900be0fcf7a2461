"""The resource tree: `client.browsers.replays`. Resources never touch aiohttp."""

from .browsers import AsyncBrowsers
from .replays import AsyncReplays

__all__ = ["AsyncBrowsers", "AsyncReplays"]
