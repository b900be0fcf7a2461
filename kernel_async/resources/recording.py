"""`client.browsers.record(...)`: a browser recorded from entry to exit, cleaned up
whatever happens inside."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .._models import Browser, Replay

if TYPE_CHECKING:
    from types import TracebackType

    from .browsers import AsyncBrowsers

__all__ = ["AsyncRecording"]

T = TypeVar("T")
logger = logging.getLogger("kernel_async")

# The delete has its own bound, so a slow download cannot leave the browser running.
DELETE_TIMEOUT = 60.0


class AsyncRecording:
    """A recorded session, from `AsyncBrowsers.record`; use it with ``async with``.

    Attributes are available once entered: `browser` (drive it over
    ``browser.cdp_ws_url``), `replay`; after exit, `path` (the saved video, or
    `None`) and `cleanup_errors`.
    """

    def __init__(
        self,
        browsers: AsyncBrowsers,
        *,
        id_or_name: str | None,
        create: Mapping[str, object] | None,
        start: Mapping[str, object],
        save_to: str | os.PathLike[str] | None,
        cleanup_timeout: float,
    ) -> None:
        if isinstance(cleanup_timeout, bool) or not isinstance(cleanup_timeout, (int, float)):
            raise TypeError("cleanup_timeout must be a number of seconds")
        if not cleanup_timeout > 0:
            raise ValueError(f"cleanup_timeout must be > 0, got {cleanup_timeout}")
        if save_to is not None and not isinstance(save_to, (str, os.PathLike)):
            raise TypeError(f"save_to must be a str or os.PathLike, got {type(save_to).__name__}")
        self._browsers = browsers
        self._id_or_name = id_or_name
        self._create = create
        self._start = start
        self._save_to = save_to
        self._cleanup_timeout = float(cleanup_timeout)
        self._browser: Browser | None = None
        self._replay: Replay | None = None
        self._path: Path | None = None
        self._errors: tuple[BaseException, ...] = ()
        self._entered = False

    @property
    def browser(self) -> Browser:
        """The browser being recorded."""
        if self._browser is None:
            raise RuntimeError("enter the recording (async with / with) first")
        return self._browser

    @property
    def replay(self) -> Replay:
        """The replay being recorded."""
        if self._replay is None:
            raise RuntimeError("enter the recording (async with / with) first")
        return self._replay

    @property
    def created(self) -> bool:
        """Whether this recording created its browser (and so deletes it on exit)."""
        return self._create is not None

    @property
    def path(self) -> Path | None:
        """Where the video was saved, once exited; `None` if it was not saved."""
        return self._path

    @property
    def cleanup_errors(self) -> tuple[BaseException, ...]:
        """What failed while cleaning up (stop, download, delete), once exited."""
        return self._errors

    async def __aenter__(self) -> AsyncRecording:
        if self._entered:
            raise RuntimeError("a recording can be entered only once")
        self._entered = True
        try:
            # Shielded: a cancel during the create must not lose the new browser's ID.
            await shielded(self._open)
        except BaseException as exc:
            if self._browser is not None:
                await self._finish(exc)  # nothing this created may outlive a failed entry
            raise
        return self

    async def _open(self) -> None:
        browsers = self._browsers
        if self._create is None:
            assert self._id_or_name is not None
            self._browser = await browsers.retrieve(self._id_or_name)
        else:
            self._browser = await browsers._create(self._create)
        self._replay = await browsers.replays.start(
            self._browser.session_id,
            **self._start,  # type: ignore[arg-type]  # checked by replay_params
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._finish(exc)

    async def _finish(self, exc: BaseException | None) -> None:
        """Clean up (shielded); the block's exception wins, else the first cleanup error."""
        errors = await shielded(self._cleanup)
        self._errors = tuple(errors)
        if not errors:
            return
        if exc is not None:
            _attach(exc, errors)
            return
        first, *rest = errors
        _attach(first, rest)
        raise first

    async def _cleanup(self) -> list[BaseException]:
        import anyio

        errors: list[BaseException] = []
        browser_id = self.browser.session_id
        with anyio.move_on_after(self._cleanup_timeout) as scope:
            await _step(errors, "save", self._stop_and_save)
        if scope.cancelled_caught:
            errors.append(
                TimeoutError(f"stopping and saving the replay took over {self._cleanup_timeout:g}s")
            )
        if self._create is not None:
            with anyio.move_on_after(DELETE_TIMEOUT) as scope:
                await _step(errors, "delete", lambda: self._browsers.delete(browser_id))
            if scope.cancelled_caught:
                errors.append(TimeoutError(f"deleting browser {browser_id} took too long"))
        return errors

    async def _stop_and_save(self) -> None:
        if self._replay is None:
            return  # the replay never started
        replays = self._browsers.replays
        browser_id = self.browser.session_id
        await replays.stop(self._replay.replay_id, id=browser_id)
        if self._save_to is not None:
            self._path = await replays.download_to(
                self._save_to, self._replay.replay_id, id=browser_id
            )


async def _step(errors: list[BaseException], name: str, fn: Callable[[], Awaitable[None]]) -> None:
    try:
        await fn()
    except Exception as exc:
        logger.debug("recorded session: %s failed: %r", name, exc)
        errors.append(exc)


def _attach(exc: BaseException, errors: list[BaseException]) -> None:
    """Tell about cleanup failures on `exc` (a note), or in the log where there are no notes."""
    for error in errors:
        text = f"while cleaning up the recorded session: {type(error).__name__}: {error}"
        if sys.version_info >= (3, 11):
            exc.add_note(text)
        else:  # pragma: no cover - Python 3.10
            logger.warning("%s (the original error: %r)", text, exc)


async def shielded(fn: Callable[[], Awaitable[T]]) -> T:
    """Run `fn` to completion even if the caller is cancelled meanwhile, then let the
    cancellation go on.

    anyio's shield stops anyio (and task group) cancellation; a native asyncio
    ``task.cancel()`` (``asyncio.wait_for``, ``asyncio.timeout``) passes through it, so
    on asyncio `fn` runs as its own task and is waited for across such cancels.
    """
    import anyio

    with anyio.CancelScope(shield=True):
        result = await _to_the_end(fn)
    return result


async def _to_the_end(fn: Callable[[], Awaitable[T]]) -> T:
    import asyncio

    try:
        asyncio.current_task()
    except RuntimeError:  # not asyncio (trio): the anyio shield is the whole story
        return await fn()

    async def run() -> T:
        return await fn()

    task = asyncio.ensure_future(run())
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if task.cancelled():
                raise
            cancelled = exc  # ours, not the task's: wait on, re-raise after
    if cancelled is not None:
        raise cancelled
    return task.result()
