"""`client.browsers.record(...)`: a browser recorded from entry to exit, cleaned up
whatever happens inside — including what a create or start made although its answer
was lost."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .._errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    NotFoundError,
)
from .._files import check_target
from .._models import Browser, Replay
from .._retry import Timeout
from ._params import RECORD_TAG

if TYPE_CHECKING:
    from types import TracebackType

    from .._client import AsyncKernel
    from .browsers import AsyncBrowsers

__all__ = ["AsyncRecording"]

T = TypeVar("T")
logger = logging.getLogger("kernel_async")

# The delete has its own bound, so a slow download cannot leave the browser running.
DELETE_TIMEOUT = 60.0
# After a create or start that timed out the server may still be acting on it: what it
# made is looked for at once, then again after these waits (seconds).
LOOKUP_WAITS = (0.5, 1.0, 2.0, 4.0)


# -- pure rules -------------------------------------------------------------------------


def may_have_acted(exc: BaseException) -> bool:
    """Whether a failed create or start may have made something nonetheless: its answer
    was lost (connection error, timeout), unreadable (a 2xx that broke the schema), or a
    5xx (a gateway may answer it while the server goes on). A 4xx is a refusal; an
    error raised before sending made nothing."""
    if isinstance(exc, APIStatusError):
        return exc.status_code >= 500
    return isinstance(exc, (APIConnectionError, APIResponseValidationError))


def lookup_waits(exc: BaseException) -> Sequence[float]:
    """When to look for what a failed call made: at once; after a timeout, again later."""
    return (0.0, *LOOKUP_WAITS) if isinstance(exc, APITimeoutError) else (0.0,)


def new_recordings(replays: Sequence[Replay], before: Collection[str]) -> list[Replay]:
    """The replays still recording that were not there before the start was sent."""
    return [r for r in replays if r.finished_at is None and r.replay_id not in before]


def can_send(client: AsyncKernel) -> bool:
    """Whether `client` can still send (not closed, nor the aiohttp session it was given)."""
    shared = client._shared
    if shared.closed:
        return False
    session = shared.session
    return shared.owned or session is None or not session.closed


# -- the recorded session ---------------------------------------------------------------


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
        mark: str | None,
        start: Mapping[str, object],
        save_to: str | os.PathLike[str] | None,
        cleanup_timeout: float,
    ) -> None:
        if isinstance(cleanup_timeout, bool) or not isinstance(cleanup_timeout, (int, float)):
            raise TypeError("cleanup_timeout must be a number of seconds")
        if not cleanup_timeout > 0:
            raise ValueError(f"cleanup_timeout must be > 0, got {cleanup_timeout}")
        # Refused now (a file is created there and removed), not after a browser was paid for.
        target = None if save_to is None else check_target(save_to, "save_to")
        self._browsers = browsers
        self._id_or_name = id_or_name
        self._create = create
        self._mark = mark
        self._start = start
        self._save_to = target
        self._cleanup_timeout = float(cleanup_timeout)
        self._browser: Browser | None = None
        self._replay: Replay | None = None
        self._path: Path | None = None
        self._errors: tuple[BaseException, ...] = ()
        self._entered = False
        self._deleted = ""  # the ID of the browser it created, once deleted

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
                if self._deleted:
                    _tell(exc, f"record() deleted the browser it had created ({self._deleted})")
            raise
        return self

    async def _open(self) -> None:
        browsers = self._browsers
        before: frozenset[str] | None = frozenset()
        if self._create is None:
            assert self._id_or_name is not None
            self._browser = await browsers.retrieve(self._id_or_name)
            # What was there before our start: after a lost answer, only a recording that
            # is new can be ours to stop (a running one of the caller's would have made
            # the start fail with 409). A precaution: its failure does not stop the entry.
            try:
                listed = await browsers.replays.list(self._browser.session_id)
                before = frozenset(r.replay_id for r in listed)
            except Exception as exc:
                logger.debug("recorded session: listing the replays failed: %r", exc)
                before = None
        else:
            try:
                self._browser = await browsers._create(self._create)
            except Exception as exc:
                if may_have_acted(exc):
                    tag = f"{RECORD_TAG}={self._mark}"
                    by_hand = f"look for a browser tagged {tag} and delete it"
                    _tell(exc, await self._bounded(self._recover_create(exc), by_hand))
                raise
        try:
            self._replay = await browsers.replays.start(
                self._browser.session_id,
                **self._start,  # type: ignore[arg-type]  # checked by replay_params
            )
        except Exception as exc:
            # A browser this created is deleted on the way out, and its recording with it.
            if self._create is None and may_have_acted(exc):
                by_hand = f"stop any recording of browser {self._browser.session_id} by hand"
                _tell(exc, await self._bounded(self._recover_start(exc, before), by_hand))
            raise

    async def _bounded(self, recovery: Awaitable[str], by_hand: str) -> str:
        import anyio

        with anyio.move_on_after(self._cleanup_timeout):
            return await recovery
        return f"record() could not finish looking within {self._cleanup_timeout:g}s: {by_hand}"

    async def _recover_create(self, exc: Exception) -> str:
        """Find and delete the browser a create whose answer was lost may have made;
        say what was done."""
        mark = self._mark
        if mark is None:  # pragma: no cover - record() always marks what it creates
            return "record() cannot tell whether it made a browser"
        tag = f"{RECORD_TAG}={mark}"
        async with self._sender() as browsers:

            async def made() -> list[Browser]:
                return [b async for b in browsers.list(tags={RECORD_TAG: mark})]

            try:
                found = await _look(made, lookup_waits(exc))
            except Exception as error:
                return (
                    f"record() could not check whether it made a browser anyway ({error}): "
                    f"look for one tagged {tag} and delete it"
                )
            if not found:
                return f"record() found no browser made by it (none tagged {tag})"
            deleted, failed = [], []
            for browser in found:
                try:
                    await _delete(browsers, browser.session_id)
                    deleted.append(browser.session_id)
                except Exception as error:
                    failed.append(f"{browser.session_id} ({error})")
        said = []
        if deleted:
            said.append(f"deleted the browser made anyway ({', '.join(deleted)})")
        if failed:
            said.append(
                f"could not delete the browser made anyway: {', '.join(failed)}; "
                "it is still running: delete it by hand"
            )
        return "record() " + " and ".join(said)

    async def _recover_start(self, exc: Exception, before: Collection[str] | None) -> str:
        """Find and stop the recording a start whose answer was lost may have begun on
        the caller's browser (`before`: the replays it had, `None` if unknown); say
        what was done."""
        assert self._browser is not None
        browser_id = self._browser.session_id
        if before is None:
            return (
                "record() cannot tell which recording it may have begun: stop any recording "
                f"of browser {browser_id} that is not yours by hand"
            )
        async with self._sender() as browsers:
            replays = browsers.replays

            async def begun() -> list[Replay]:
                return new_recordings(await replays.list(browser_id), before)

            try:
                found = await _look(begun, lookup_waits(exc))
            except Exception as error:
                return (
                    f"record() could not check whether a recording began anyway ({error}): "
                    f"stop any recording of browser {browser_id} by hand"
                )
            if not found:
                return f"record() found no recording begun by it on browser {browser_id}"
            stopped, failed = [], []
            for replay in found:
                try:
                    await replays.stop(replay.replay_id, id=browser_id)
                    stopped.append(replay.replay_id)
                except Exception as error:
                    failed.append(f"{replay.replay_id} ({error})")
        said = []
        if stopped:
            said.append(f"stopped the recording begun anyway ({', '.join(stopped)})")
        if failed:
            said.append(
                f"could not stop the recording begun anyway: {', '.join(failed)}; it is still "
                f"recording browser {browser_id}: stop it by hand"
            )
        return "record() " + " and ".join(said) + f" on browser {browser_id}"

    @contextlib.asynccontextmanager
    async def _sender(self) -> AsyncIterator[AsyncBrowsers]:
        """The browsers resource to clean up with: this client's, or, when it was closed
        meanwhile, one of a short-lived client of its own with the same options."""
        client = self._browsers._client
        if can_send(client):
            yield self._browsers
            return
        try:
            fresh = _fresh_client(client)
        except Exception:  # pragma: no cover - its options were accepted once already
            yield self._browsers  # its calls fail saying the client is closed
            return
        logger.info("recorded session: the client was closed; cleaning up on a new connection")
        try:
            yield fresh.browsers
        finally:
            await fresh.close()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        errors = await self._finish(exc)
        if errors and exc is None:
            first, *rest = errors
            _attach(first, rest)
            raise first

    async def _finish(self, exc: BaseException | None) -> list[BaseException]:
        """Clean up (shielded); cleanup failures are noted on the block's exception."""
        errors = await shielded(self._cleanup)
        self._errors = tuple(errors)
        if errors and exc is not None:
            _attach(exc, errors)
        return errors

    async def _cleanup(self) -> list[BaseException]:
        import anyio

        errors: list[BaseException] = []
        browser_id = self.browser.session_id
        async with self._sender() as browsers:
            with anyio.move_on_after(self._cleanup_timeout) as scope:
                await _step(errors, self._stop_and_save(browsers))
            if scope.cancelled_caught:
                errors.append(
                    TimeoutError(
                        f"stopping and saving the replay took over {self._cleanup_timeout:g}s"
                    )
                )
            if self._create is not None:
                with anyio.move_on_after(DELETE_TIMEOUT) as scope:
                    await _step(errors, self._delete(browsers, browser_id))
                if scope.cancelled_caught:
                    errors.append(
                        TimeoutError(
                            f"deleting browser {browser_id} took over {DELETE_TIMEOUT:g}s; "
                            "it may still be running: delete it by hand"
                        )
                    )
        return errors

    async def _delete(self, browsers: AsyncBrowsers, browser_id: str) -> None:
        try:
            await _delete(browsers, browser_id)
        except Exception as exc:
            _tell(exc, f"browser {browser_id} may still be running: delete it by hand")
            raise
        self._deleted = browser_id

    async def _stop_and_save(self, browsers: AsyncBrowsers) -> None:
        if self._replay is None:
            return  # the replay never started
        replays = browsers.replays
        replay_id = self._replay.replay_id
        browser_id = self.browser.session_id
        # The client's per-attempt bounds, but no total deadline of its own: waiting for
        # the video is bounded by `cleanup_timeout`, which a service's short deadline for
        # ordinary calls must not cut short.
        limits = browsers._client.timeout
        bounds = Timeout(limits.attempt, connect=limits.connect)
        try:
            await replays.stop(replay_id, id=browser_id, timeout=bounds)
        except NotFoundError:
            # The browser ended before us (idle timeout, deleted elsewhere), and its
            # recording with it; the video may still be there to download.
            logger.debug("recorded session: browser %s was already gone at stop", browser_id)
        except Exception as exc:
            if self._create is None:
                _tell(exc, f"replay {replay_id} may still be recording browser {browser_id}")
            raise
        if self._save_to is not None:
            try:
                self._path = await replays.download_to(
                    self._save_to, replay_id, id=browser_id, timeout=bounds
                )
            except Exception as exc:
                _tell(exc, f"the video of replay {replay_id} was not saved to {self._save_to}")
                raise


async def _delete(browsers: AsyncBrowsers, browser_id: str) -> None:
    """Delete; a browser already gone (404) is what was wanted."""
    try:
        await browsers.delete(browser_id)
    except NotFoundError:
        logger.debug("recorded session: browser %s was already gone", browser_id)


async def _look(fetch: Callable[[], Awaitable[list[T]]], waits: Sequence[float]) -> list[T]:
    """`fetch()` after each wait until it finds something; the last finding (maybe empty)."""
    import anyio

    found: list[T] = []
    for wait in waits:
        if wait:
            await anyio.sleep(wait)
        found = await fetch()
        if found:
            break
    return found


def _fresh_client(client: AsyncKernel) -> AsyncKernel:
    """A new client with `client`'s options and a connection pool of its own."""
    from .._client import AsyncKernel

    return AsyncKernel(
        api_key=client._api_key,
        base_url=client.base_url,
        timeout=client.timeout,
        max_retries=client.max_retries,
        retry=client.retry,
        default_headers=client._default_headers,
        connection_limit=4,
        proxy=client._proxy_option,
        trust_env=client._trust_env,
    )


async def _step(errors: list[BaseException], step: Awaitable[None]) -> None:
    try:
        await step
    except Exception as exc:
        logger.debug("recorded session: cleanup step failed: %r", exc)
        errors.append(exc)


def _tell(exc: BaseException, text: str) -> None:
    """Say `text` in `exc`: in the message of an `APIError`, else as a note (logged on
    Python 3.10, which has no notes)."""
    if isinstance(exc, APIError):
        exc.message = f"{exc.message}; {text}"
        exc.args = (exc.message, *exc.args[1:])
    elif sys.version_info >= (3, 11):
        exc.add_note(text)
    else:  # pragma: no cover - Python 3.10
        logger.warning("%s (the error: %r)", text, exc)


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
    cancellation go on — it wins over `fn`'s failure, as a cancellation must.

    anyio's shield stops anyio (and task group) cancellation; a native asyncio
    ``task.cancel()`` (``asyncio.wait_for``, ``asyncio.timeout``) passes through it, so
    on asyncio `fn` runs as its own task and is waited for across such cancels.
    """
    import anyio

    failure: Exception
    with anyio.CancelScope(shield=True):
        try:
            return await _to_the_end(fn)
        except Exception as exc:
            failure = exc
    # An anyio scope cancelled meanwhile is delivered here, instead of `fn`'s error.
    await anyio.lowlevel.checkpoint_if_cancelled()
    raise failure


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
            await asyncio.wait((task,))  # never raises `fn`'s error, so no cancel is lost
        except asyncio.CancelledError as exc:
            cancelled = exc  # ours, not the task's: wait on, re-raise after
    if cancelled is not None:
        if not task.cancelled():
            cancelled.__context__ = task.exception()  # what `fn` failed with, if it did
        raise cancelled
    return task.result()
