"""The resource tree: `client.browsers` and `client.browsers.replays`. Resources never
touch aiohttp."""

from .browsers import AsyncBrowserPager, AsyncBrowsers
from .recording import AsyncRecording
from .replays import AsyncReplays

__all__ = ["AsyncBrowserPager", "AsyncBrowsers", "AsyncRecording", "AsyncReplays"]
