"""`client.browsers.replays`: start, list, stop, download, download_to."""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .._files import AtomicFile, FileSink
from .._gen.browsers_replays import AsyncBrowsersReplaysBase
from .._gen_support import AsyncBinaryContent
from .._models import Replay, decode_replay, decode_replays
from .._paths import segment
from .._retry import Timeout
from .._types import NOT_GIVEN, NotGiven
from ._params import replay_params

if TYPE_CHECKING:
    from .._client import AsyncKernel

__all__ = ["AsyncReplays"]


class AsyncReplays(AsyncBrowsersReplaysBase):
    """Browser replay recordings: ``client.browsers.replays``."""

    def __init__(self, client: AsyncKernel) -> None:
        self._client = client

    async def start(
        self,
        id_or_name: str | None = None,
        *,
        id: str | None = None,
        framerate: int | None = None,
        max_duration_in_seconds: int | None = None,
        record_audio: bool | None = None,
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Replay:
        """Start recording the browser session and return the new replay.

        Never replayed after an ambiguous failure (a timeout or reset after sending),
        so a retry cannot create a second recording.

        Args:
            id_or_name: Browser session ID or name (the official SDK's keyword).
            id: The same, under the name this SDK's first release used; pass one of them.
            framerate: Recording framerate in fps (>= 1; above 20 needs a GPU browser).
            max_duration_in_seconds: Maximum recording duration (>= 1).
            record_audio: Record audio as well as video.
            timeout: Overrides the client's timeout for this call.
            extra_headers: Headers added to this request.

        Raises:
            ConflictError: A recording is already in progress on this browser.
            NotFoundError: No such browser session.
        """
        path = f"/browsers/{_browser(id_or_name, id)}/replays"
        params = replay_params(framerate, max_duration_in_seconds, record_audio)
        return await self._client._request_json(
            "POST",
            path,
            decode_replay,
            idempotent=False,
            body=json.dumps(params).encode(),
            timeout=timeout,
            extra_headers=extra_headers,
        )

    async def list(
        self,
        id_or_name: str | None = None,
        *,
        id: str | None = None,
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> builtins.list[Replay]:
        """List the replays of a browser session, oldest first.

        Args:
            id_or_name: Browser session ID or name (the official SDK's keyword).
            id: The same, under the name this SDK's first release used; pass one of them.
            timeout: Overrides the client's timeout for this call.
            extra_headers: Headers added to this request.
        """
        return await self._client._request_json(
            "GET",
            f"/browsers/{_browser(id_or_name, id)}/replays",
            decode_replays,
            idempotent=True,
            timeout=timeout,
            extra_headers=extra_headers,
        )

    async def stop(
        self,
        replay_id: str,
        *,
        id_or_name: str | None = None,
        id: str | None = None,
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        """Stop the replay recording and persist the video.

        Idempotent (stopping a stopped replay succeeds), so it is retried after
        timeouts and resets as well as on 408/429/5xx. Returns `None` on any 2xx.

        Args:
            replay_id: Replay recording identifier.
            id_or_name: Browser session ID or name (the official SDK's keyword).
            id: The same, under the name this SDK's first release used; pass one of them.
            timeout: Overrides the client's timeout for this call.
            extra_headers: Headers added to this request.
        """
        path = (
            f"/browsers/{_browser(id_or_name, id)}/replays/{segment(replay_id, 'replay_id')}/stop"
        )
        await self._client._request(
            "POST",
            path,
            idempotent=True,
            timeout=timeout,
            extra_headers={**_NO_RESULT, **extra_headers} if extra_headers else _NO_RESULT,
            read_limit=64 * 1024,  # stop's body is ignored: read little of it
        )

    async def download(
        self,
        replay_id: str,
        *,
        id_or_name: str | None = None,
        id: str | None = None,
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> AsyncBinaryContent:
        """Download the recording (MP4) into memory: the video's bytes, with the official
        response methods beside them (``read()``, ``write_to_file(path)``, ...).

        Waits through ``202 Accepted`` (still being finalised), honouring Retry-After,
        within the deadline (or 10 minutes without one). For large videos prefer
        `download_to`, which streams to disk.

        Args:
            replay_id: Replay recording identifier.
            id_or_name: Browser session ID or name (the official SDK's keyword).
            id: The same, under the name this SDK's first release used; pass one of them.
            timeout: Overrides the client's timeout for this call.
            extra_headers: Headers added to this request.
        """
        resp, url, _ = await self._client._request(
            "GET",
            _video_path(_browser(id_or_name, id), replay_id),
            idempotent=True,
            timeout=timeout,
            extra_headers=_accept_video(extra_headers),
            read_limit=None,
            poll_accepted=True,
        )
        return AsyncBinaryContent(
            resp.body, resp.headers, status_code=resp.status, url=str(url), method="GET"
        )

    async def download_to(
        self,
        path: str | os.PathLike[str],
        replay_id: str,
        *,
        id_or_name: str | None = None,
        id: str | None = None,
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        progress: Callable[[int], object] | None = None,
        on_start: Callable[[int | None], object] | None = None,
    ) -> Path:
        """Stream the recording to `path` atomically and return it as a `Path`.

        The video is written to a temporary file beside `path`, fsynced and renamed
        into place: `path` is either the complete video or untouched, and nothing is
        left behind on failure or cancellation. A body cut short is retried from
        scratch. With a float `timeout`, it bounds each read, not the whole transfer.

        Args:
            path: Where to save the video (``~`` is expanded). Refused before anything
                is sent if no file can be created in its directory; errors name `path`,
                never the temporary file.
            replay_id: Replay recording identifier.
            id_or_name: Browser session ID or name (the official SDK's keyword).
            id: The same, under the name this SDK's first release used; pass one of them.
            timeout: Overrides the client's timeout for this call.
            extra_headers: Headers added to this request.
            progress: Called with the bytes received so far after each chunk (and with
                0 when a retry starts over). From `kernel_sync` it runs on the SDK's
                event-loop thread: keep it quick.
            on_start: Called when the video starts to arrive (the wait through 202
                "still finalising" is over) with its size in bytes, or `None` when the
                server does not say; called again if a retry starts over.
        """
        url_path = _video_path(_browser(id_or_name, id), replay_id)
        out = AtomicFile(path)
        sink = FileSink(out.file, progress, on_start)
        try:
            resp, _, _ = await self._client._request(
                "GET",
                url_path,
                idempotent=True,
                timeout=timeout,
                extra_headers=_accept_video(extra_headers),
                read_limit=None,
                sink=sink,
                poll_accepted=True,
            )
            if resp.body:  # a 2xx that was not streamed (not 200)
                out.file.write(resp.body)
            from anyio.to_thread import run_sync  # fsync and rename off the event loop

            return await run_sync(out.commit)
        finally:
            out.discard()


def _browser(id_or_name: str | None, id: str | None) -> str:
    """The browser a replay call addresses (`id_or_name`, or its older spelling `id`)
    as one encoded path segment."""
    if id_or_name is None:
        if id is None:
            raise TypeError("the browser id must be a str (pass id_or_name= or id=), got NoneType")
        return segment(id, "id")
    if id is not None and id != id_or_name:
        raise TypeError("pass the browser once: id_or_name= or id=, not both")
    return segment(id_or_name, "id_or_name")


def _video_path(browser: str, replay_id: str) -> str:
    return f"/browsers/{browser}/replays/{segment(replay_id, 'replay_id')}"


def _accept_video(extra: Mapping[str, str] | None) -> Mapping[str, str]:
    return {"Accept": "video/mp4", **extra} if extra else _VIDEO_ACCEPT


_VIDEO_ACCEPT: Mapping[str, str] = {"Accept": "video/mp4"}
# What the official SDK sends with a bodiless call whose result it ignores.
_NO_RESULT: Mapping[str, str] = {"Accept": "*/*", "Content-Type": "application/json"}
