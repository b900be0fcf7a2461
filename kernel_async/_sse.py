"""Server-sent events, the pure part: an incremental parser that follows the WHATWG HTML
"event stream interpretation", and the step that decodes one event's data.

No sockets and no clocks here: the stream layer feeds the parser the body's chunks as they
arrive, and decides what a cut means (`SSEParser.pending`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any, Final, TypeVar

import attrs

from ._errors import APIResponseValidationError, SSEEventTooLargeError, _describe

__all__ = ["MAX_EVENT_BYTES", "SSEParser", "ServerSentEvent", "decode_event"]

T = TypeVar("T")

MAX_EVENT_BYTES: Final = 8 * 1024 * 1024
"""Default bound of one event's buffered bytes (its data, its type and its unfinished line)."""

_BOM: Final = b"\xef\xbb\xbf"
_SHORT: Final = 32  # lines looked for one by one before assuming short lines
_VIEW: Final = 4096  # a line longer than this is kept as a view of its chunk, not a copy


def _split_lf(chunk: bytes, pos: int) -> list[bytes | memoryview]:
    """``chunk[pos:].split(b"\\n")``, fast for long lines too: `bytes.split` looks at every
    byte in a loop (about 1 GB/s), `bytes.find` of one byte is a memchr (many times
    faster). After `_SHORT` lines averaging under 1 KiB, the rest is short lines: `split`.
    A line longer than `_VIEW` comes as a view of `chunk`, not a copy (compares equal)."""
    lines: list[bytes | memoryview] = []
    find = chunk.find
    size = len(chunk)
    start = pos
    view: memoryview | None = None
    short = _SHORT
    while True:
        end = find(b"\n", pos)
        stop = size if end < 0 else end
        if stop - pos > _VIEW:
            if view is None:
                view = memoryview(chunk)
            lines.append(view[pos:stop])
        else:
            lines.append(chunk[pos:stop])
        if end < 0:
            return lines
        pos = end + 1
        short -= 1
        if not short and pos - start < _SHORT * 1024:
            lines += chunk[pos:].split(b"\n")
            return lines


def _piece(chunk: bytes, start: int, stop: int) -> bytes | memoryview:
    """``chunk[start:stop]``: a view when long (joined or decoded later: one copy less)."""
    return memoryview(chunk)[start:stop] if stop - start > _VIEW else chunk[start:stop]


@attrs.frozen
class ServerSentEvent:
    """One dispatched server-sent event.

    Attributes:
        event: The event type (``event:``); ``"message"`` when the event named none.
        data: The event's ``data:`` lines, joined with ``"\\n"``.
        id: The stream's last event id when the event was dispatched (an ``id:`` holds for
            the events after it until another replaces it); `None` when there is none, or
            an empty ``id:`` cleared it.
        retry: The reconnection time in milliseconds a ``retry:`` line of this event
            gave; `None` if it had none.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """`data` parsed as JSON (raises `ValueError` when it is not JSON)."""
        return json.loads(self.data)


class SSEParser:
    """Incremental parser of an event stream (``text/event-stream``).

    `feed` it the body's bytes, split anywhere (inside a UTF-8 character, between CR and
    LF); it returns the events completed so far. Lines end in CRLF, LF or CR; a UTF-8 BOM
    is dropped at the very start of the stream only; bytes that are not UTF-8 become
    U+FFFD. An event is dispatched at a blank line, and only if it had a ``data`` field;
    an event the stream ends inside is never dispatched (see `pending`).

    Memory is bounded: when the event being received (its data, its type and its
    unfinished line) would exceed `max_event_bytes`, `feed` raises `SSEEventTooLargeError`
    instead of buffering it. Events completed earlier in the same chunk are returned
    first; the error is then raised by the next `feed` or by `end`. After it the parser
    is spent: every call raises it again. A long line (a large event's data) is kept as a
    view of the chunk it came in, not copied, until its event is dispatched: what is held
    may then exceed the bound by the rest of that chunk.
    """

    __slots__ = (
        "_comments",
        "_data",
        "_error",
        "_event",
        "_event_retry",
        "_has_data",
        "_head",
        "_id_buffer",
        "_in_event",
        "_last_id",
        "_limit",
        "_pending",
        "_pending_size",
        "_retry",
        "_skip_lf",
    )

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        if max_event_bytes < 1:
            raise ValueError("max_event_bytes must be positive")
        self._limit = max_event_bytes
        # The stream's first bytes, until it is known whether they start with a BOM.
        self._head: bytes | None = b""
        # The last chunk ended in CR: an LF starting the next one ends the same line.
        self._skip_lf = False
        # The unfinished line, as the chunks brought it (joined once its end arrives).
        self._pending: list[bytes | memoryview] = []
        self._pending_size = 0
        # The current event: data lines joined by LF (raw bytes, decoded at dispatch); the
        # first line's bytes as they are (a view of a long line), a bytearray once a
        # second one comes.
        self._data: bytes | bytearray | memoryview = b""
        self._has_data = False  # a `data` field was seen (an empty one still dispatches)
        self._event = b""
        self._event_retry: int | None = None
        self._in_event = False  # a field line came since the last blank line
        # The spec's "last event ID buffer" (set by `id:`) and "string" (set at dispatch).
        self._id_buffer: str | None = None
        self._last_id: str | None = None
        self._retry: int | None = None
        self._comments = 0
        self._error: SSEEventTooLargeError | None = None

    @property
    def max_event_bytes(self) -> int:
        """The bound of one event's buffered bytes."""
        return self._limit

    @property
    def last_event_id(self) -> str | None:
        """The id to resume from (``Last-Event-ID``): the last ``id:`` of a dispatched
        block (one without data counts too); `None` if none, or an empty ``id:`` cleared it."""
        return self._last_id

    @property
    def retry(self) -> int | None:
        """The reconnection time in milliseconds the stream last asked for, else `None`."""
        return self._retry

    @property
    def comments(self) -> int:
        """How many comment lines (``:`` ..., the usual keep-alives) came so far."""
        return self._comments

    @property
    def pending(self) -> bool:
        """Whether the stream so far ends inside an event (an unfinished line, or fields
        not yet closed by a blank line): if the body ends now, it was cut mid-event and
        that event is lost. Comments alone leave it false."""
        return bool(self._in_event or self._pending or self._head or self._error is not None)

    @property
    def buffered(self) -> int:
        """Bytes held for the event being received (never more than `max_event_bytes`)."""
        return self._pending_size + len(self._data) + len(self._event)

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[ServerSentEvent]:
        """Parse the next bytes of the stream; return the events they complete, in order.

        Raises:
            SSEEventTooLargeError: The event being received outgrew `max_event_bytes`.
        """
        if self._error is not None:
            raise self._error
        if not isinstance(chunk, bytes):
            chunk = bytes(chunk)  # views of it may be kept: it must not change
        if self._head is not None:
            chunk = self._head + chunk
            if len(chunk) < 3 and _BOM.startswith(chunk):
                self._head = chunk
                return []
            self._head = None
            if chunk.startswith(_BOM):
                chunk = chunk[3:]
        # Lines are found from `pos` on (not in a copy of the chunk after it).
        pos = 0
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[0] == 10:
                pos = 1
        size = len(chunk)
        if pos == size:
            return []
        events: list[ServerSentEvent] = []
        try:
            last = chunk[-1]
            # `find` of one byte is a memchr: far faster than scanning byte by byte.
            if (
                last != 10
                and last != 13
                and chunk.find(b"\n", pos) < 0
                and chunk.find(b"\r", pos) < 0
            ):
                self._hold(chunk[pos:] if pos else chunk)
                return events
            lines: list[bytes | memoryview] = []
            if self._pending:
                # Only the unfinished line is joined (not the whole chunk with it), once.
                eol = chunk.find(b"\n", pos)
                cr = chunk.find(b"\r", pos, eol if eol >= 0 else size)
                if cr >= 0:
                    eol = cr
                self._pending.append(_piece(chunk, pos, eol))
                lines.append(b"".join(self._pending))
                self._pending = []
                self._pending_size = 0
                pos = eol + 1
                if cr >= 0 and pos < size and chunk[pos] == 10:
                    pos += 1  # CRLF
            rest: bytes | memoryview = b""
            if pos == size:
                self._skip_lf = last == 13
            elif chunk.find(b"\r", pos) < 0:  # LF endings only, the usual case
                lines += _split_lf(chunk, pos)
                rest = lines.pop()
            else:
                # bytes.splitlines breaks at CR, LF and CRLF only: the spec's line ends.
                more = chunk[pos:].splitlines()
                if last == 13:
                    self._skip_lf = True
                elif last != 10:
                    rest = more.pop()
                lines += more
            self._lines(lines, events)
            if rest:
                self._hold(rest)
        except SSEEventTooLargeError as exc:
            self._fail(exc)
            if not events:
                raise
        return events

    def end(self) -> None:
        """The body ended: raise an error `feed` deferred (see the class docs). Then
        `pending` tells a clean end from a cut one.

        Raises:
            SSEEventTooLargeError: An event outgrew `max_event_bytes`.
        """
        if self._error is not None:
            raise self._error

    def _hold(self, piece: bytes | memoryview) -> None:
        size = self._pending_size + len(piece)
        if size + len(self._data) + len(self._event) > self._limit:
            raise SSEEventTooLargeError(self._limit)
        self._pending.append(piece)
        self._pending_size = size

    def _fail(self, error: SSEEventTooLargeError) -> None:
        self._error = error
        self._pending = []
        self._pending_size = 0
        self._data = b""
        self._event = b""

    def _lines(self, lines: list[bytes | memoryview], events: list[ServerSentEvent]) -> None:
        # Hot loop: state lives in locals, written back once (also when raising).
        limit = self._limit
        data = self._data
        has_data = self._has_data
        event = self._event
        event_retry = self._event_retry
        in_event = self._in_event
        id_buffer = self._id_buffer
        last_id = self._last_id
        comments = self._comments
        try:
            for line in lines:
                if not line:
                    last_id = id_buffer
                    if has_data:
                        events.append(
                            ServerSentEvent(
                                event.decode("utf-8", "replace") if event else "message",
                                str(data, "utf-8", "replace"),
                                last_id,
                                event_retry,
                            )
                        )
                        data = b""
                        has_data = False
                    event = b""
                    event_retry = None
                    in_event = False
                    continue
                # The same test as for an unfinished line (`_hold`), so where the
                # chunks split never changes whether an event is refused.
                if len(data) + len(event) + len(line) > limit:
                    raise SSEEventTooLargeError(limit)
                if line[0] == 58:  # ":"
                    comments += 1
                    continue
                in_event = True
                if isinstance(line, memoryview):  # a long line, a view of its chunk
                    head = line[:6].tobytes()
                    if not head.startswith(b"data:"):
                        line = line.tobytes()  # a long line of another field (rare)
                    else:
                        view = line[6:] if head[5:] == b" " else line[5:]
                        if not has_data:
                            data = view  # decoded at dispatch, uncopied
                            has_data = True
                        else:
                            if type(data) is not bytearray:
                                data = bytearray(data)
                            data += b"\n"
                            data += view
                        continue
                if line.startswith(b"data:"):
                    start = 6 if line[5:6] == b" " else 5
                    if not has_data and len(line) > _VIEW:
                        data = memoryview(line)[start:]  # a long line: decoded uncopied
                        has_data = True
                        continue
                    value = line[start:]
                    name = b"data"
                else:
                    name, _, value = line.partition(b":")
                    if value[:1] == b" ":
                        value = value[1:]
                if name == b"data":
                    if not has_data:
                        data = value  # one line (the usual): no copy
                        has_data = True
                    else:
                        if type(data) is not bytearray:
                            data = bytearray(data)
                        data += b"\n"
                        data += value
                elif name == b"event":
                    event = value
                elif name == b"id":
                    if b"\0" not in value:
                        id_buffer = value.decode("utf-8", "replace") or None
                elif name == b"retry" and value.isdigit():  # bytes: ASCII digits only
                    # More digits than int() takes (4300) is no sane wait: ignored.
                    with contextlib.suppress(ValueError):
                        event_retry = self._retry = int(value)
        finally:
            self._data = data
            self._has_data = has_data
            self._event = event
            self._event_retry = event_retry
            self._in_event = in_event
            self._id_buffer = id_buffer
            self._last_id = last_id
            self._comments = comments


def decode_event(
    event: ServerSentEvent,
    decode: Callable[[Any], T],
    operation: str,
    *,
    method: str = "GET",
    url: str = "",
    status_code: int = 200,
) -> T:
    """Parse an event's data as JSON and structure it with `decode` (e.g. the converter
    for the operation's event model).

    Raises:
        APIResponseValidationError: The data is not JSON, or not the event's schema; the
            message names `operation`.
    """
    try:
        return decode(json.loads(event.data))
    except Exception as exc:
        raise APIResponseValidationError(
            f"{operation}: event {event.event!r} does not match the schema: {_describe(exc)}",
            status_code=status_code,
            method=method,
            url=url,
            body=event.data[:2000],
        ) from exc
