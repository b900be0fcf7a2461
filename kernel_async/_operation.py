"""Generated operations meet the request engine here.

A generated method hands an `Operation` (what the spec says of the call) and its
arguments to `call`, `pager` or `stream`. The encoders below are pure functions
(arguments -> path, query pairs, body bytes); the I/O is the client's one request loop,
with the operation's replay rule.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import attrs

from ._errors import JSON_LIMIT, decode_json
from ._gen_support import AsyncBinaryContent
from ._models import converter
from ._paths import segment
from ._retry import Timeout
from ._types import NOT_GIVEN, NotGiven

if TYPE_CHECKING:
    from ._client import AsyncKernel
    from ._pagination import AsyncPager
    from ._streaming import AsyncStream

__all__ = [
    "Operation",
    "call",
    "encode_json",
    "encode_multipart",
    "encode_query",
    "file_bytes",
    "pager",
    "plain",
    "save",
    "stream",
]

BINARY_LIMIT = 1 << 31
"""Most bytes of a binary response held in memory (2 GiB)."""


@attrs.frozen
class Operation:
    """What the spec says of one operation (built once per module, at import).

    Attributes:
        name: The official SDK's name, e.g. ``browsers.computer.click_mouse``.
        method: HTTP method.
        template: The path with ``{}`` for each path parameter, in order.
        replay: May the request be re-sent after an ambiguous failure?
        result: The type a JSON result (or each page item, or each event) decodes to,
            as text: resolved on the first call, so importing a resource loads no models.
        models: The generated model module (besides the shared one) `result` names.
        kind: ``json``, ``none``, ``binary``, ``page`` or ``sse``.
        accept: The Accept header the official SDK sends.
        body: ``json``, ``multipart``, ``raw`` or `None`.
        array_format: Multipart list item names: ``brackets`` (a[][b]) or ``indices`` (a[0][b]).
        pagination: ``offset`` or ``page_token`` for paged lists.
    """

    name: str
    method: str
    template: str
    replay: bool
    result: str | None
    kind: str
    accept: str
    models: str | None = None
    body: str | None = None
    array_format: str = "brackets"
    pagination: str | None = None


_RESULTS: dict[tuple[str | None, str], Any] = {}


def result_type(op: Operation) -> Any:
    """The type `op.result` names, looked up in the generated model modules (once)."""
    assert op.result is not None
    key = (op.models, op.result)
    found = _RESULTS.get(key)
    if found is None:
        import importlib

        scope: dict[str, Any] = dict(
            vars(importlib.import_module("kernel_async._gen.models._shared"))
        )
        if op.models is not None:
            scope.update(vars(importlib.import_module(f"kernel_async._gen.models.{op.models}")))
        found = _RESULTS[key] = eval(op.result, scope)  # generated text, not user input
    return found


# -- pure encoders --------------------------------------------------------------------


_SCALARS = frozenset({str, int, float, bool, type(None)})
"""Types `plain` returns as they are (the usual argument: checked first, by identity)."""


def plain(value: Any) -> Any:
    """A parameter value as JSON-shaped data: models by their wire names, datetimes
    and dates as ISO 8601 text; mappings and sequences item by item."""
    if type(value) in _SCALARS:
        return value
    if attrs.has(type(value)):
        return converter().unstructure(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items() if v is not NOT_GIVEN}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def given(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """The arguments that were passed (`NOT_GIVEN` left out), as JSON-shaped data."""
    if not values:
        return {}
    scalars = _SCALARS  # tested here first: the usual argument needs no call of `plain`
    return {
        k: v if type(v) in scalars else plain(v) for k, v in values.items() if v is not NOT_GIVEN
    }


def _scalar(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def encode_query(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Query pairs as the API reads them: lists comma-joined, objects as ``key[sub]``."""
    pairs: list[tuple[str, str]] = []
    for key, value in values.items():
        _query_pairs(key, value, pairs)
    return pairs


def _query_pairs(key: str, value: Any, out: list[tuple[str, str]]) -> None:
    if value is None or value == "":
        return  # as the official SDK: an empty value is no parameter at all
    if isinstance(value, Mapping):
        for sub, item in value.items():
            _query_pairs(f"{key}[{sub}]", item, out)
    elif isinstance(value, list | tuple):
        out.append((key, ",".join(_scalar(v) for v in value if v is not None)))
    else:
        out.append((key, _scalar(value)))


def query_string(pairs: list[tuple[str, str]]) -> str:
    from urllib.parse import quote

    return "&".join(f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in pairs)


_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""`json.dumps` with these options builds an encoder per call: build it once."""


def _c_encoder() -> Callable[[Any, int], list[str]] | None:
    """The C encoder `_JSON.encode` makes afresh on every call (`iterencode`), made once:
    with the same options, but no table of the containers seen (it is per call, and
    only guards against cycles: `plain` has already walked every value, and a cycle
    stops it with a RecursionError before anything is encoded). `None` where the json
    module runs without its C accelerator."""
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)
    if make is None:
        return None
    return make(  # type: ignore[no-any-return]
        None, _JSON.default, encoder.encode_basestring, None, ":", ",", False, False, True
    )


_ENCODE = _c_encoder()


def encode_json(values: Mapping[str, Any]) -> bytes:
    """A JSON request body: compact, non-ASCII text as UTF-8."""
    if _ENCODE is None:
        return _JSON.encode(values).encode()
    return "".join(_ENCODE(values, 0)).encode()


@attrs.frozen
class FilePart:
    """A file sent from disk (or a seekable file object) in chunks, never read whole.

    Attributes:
        source: A path, or a binary file object.
        start: Where the file object stood when the call was made (sent from there).
        size: How many bytes are sent.
    """

    source: str | IO[bytes]
    start: int
    size: int


def file_source(value: Any) -> tuple[str | None, bytes | FilePart, str | None]:
    """(filename, content, content type) of a file argument: bytes, a path, a binary file
    object, or an official-SDK style ``(filename, content[, content type])`` tuple.
    Paths and seekable file objects are not read here: they are streamed when sent."""
    name: str | None = None
    ctype: str | None = None
    if isinstance(value, tuple):
        parts = value
        name, value = parts[0], parts[1]
        ctype = parts[2] if len(parts) > 2 else None
    if isinstance(value, bytes | bytearray | memoryview):
        return name, bytes(value), ctype
    if isinstance(value, os.PathLike):
        path = os.fspath(value)
        if not isinstance(path, str):
            raise TypeError("file paths must be text (str or a PathLike of str)")
        size = os.stat(path).st_size  # a missing file fails here, before anything is sent
        return name or os.path.basename(path), FilePart(path, 0, size), ctype
    if isinstance(value, io.IOBase) or hasattr(value, "read"):
        filename = getattr(value, "name", None)
        name = name or (os.path.basename(filename) if isinstance(filename, str) else None)
        if isinstance(value, io.TextIOBase):
            raise TypeError("file objects must be opened in binary mode ('rb')")
        seekable = getattr(value, "seekable", None)
        if seekable is not None and seekable():
            start = value.tell()
            size = value.seek(0, os.SEEK_END) - start
            value.seek(start)
            return name, FilePart(value, start, size), ctype
        data = value.read()  # a pipe or socket: its size is only known once read
        if not isinstance(data, bytes):
            raise TypeError("file objects must be opened in binary mode ('rb')")
        return name, data, ctype
    raise TypeError(f"expected bytes, a path or a binary file object, got {type(value).__name__}")


def file_bytes(value: Any) -> tuple[str | None, bytes, str | None]:
    """`file_source`, with files read into memory (for small bodies and tests)."""
    name, content, ctype = file_source(value)
    if isinstance(content, FilePart):
        content = _read_whole(content)
    return name, content, ctype


def _read_whole(part: FilePart) -> bytes:
    if isinstance(part.source, str):
        with open(part.source, "rb") as f:
            return f.read(part.size)
    part.source.seek(part.start)
    return part.source.read(part.size)


Piece = bytes | FilePart


class Upload:
    """A request body of bytes and files, streamed chunk by chunk: calling it gives a
    fresh stream for each attempt (paths are reopened, file objects rewound)."""

    CHUNK = 256 * 1024

    def __init__(self, pieces: Sequence[Piece]) -> None:
        self.pieces = tuple(pieces)
        self.length = sum(len(p) if isinstance(p, bytes) else p.size for p in self.pieces)

    def __call__(self) -> AsyncIterator[bytes]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[bytes]:
        import asyncio

        loop = asyncio.get_running_loop()
        for piece in self.pieces:
            if isinstance(piece, bytes):
                yield piece
                continue
            source = piece.source
            own = isinstance(source, str)
            f: IO[bytes] = (
                await loop.run_in_executor(None, _open, source)
                if isinstance(source, str)
                else source
            )
            try:
                if not own:
                    f.seek(piece.start)
                left = piece.size
                while left > 0:
                    # Off the loop: a read from disk must not stall other calls.
                    chunk: bytes = await loop.run_in_executor(None, f.read, min(self.CHUNK, left))
                    if not chunk:
                        shown = _shown(piece)
                        raise OSError(f"{shown} ended {left} bytes early (changed while sent?)")
                    left -= len(chunk)
                    yield chunk
            finally:
                if own:
                    f.close()


def _open(path: str) -> IO[bytes]:
    return open(path, "rb")


def _shown(part: FilePart) -> str:
    return (
        part.source
        if isinstance(part.source, str)
        else repr(getattr(part.source, "name", part.source))
    )


def _body(pieces: list[Piece]) -> bytes | Upload:
    """Bytes when everything is in memory, else an `Upload` that streams the files."""
    if all(isinstance(p, bytes) for p in pieces):
        return b"".join(pieces)  # type: ignore[arg-type]
    return Upload(pieces)


def _is_file(value: Any) -> bool:
    return isinstance(value, bytes | bytearray | memoryview | os.PathLike | io.IOBase) or (
        isinstance(value, tuple) and len(value) in (2, 3) and not isinstance(value[1], str)
    )


def _form_fields(key: str, value: Any, indices: bool) -> Iterator[tuple[str, Any]]:
    if value is None:  # no form value means null: left out, as the official SDK does
        return
    if attrs.has(type(value)):
        value = {
            f.metadata.get("wire", f.name): getattr(value, f.name)
            for f in attrs.fields(type(value))
            if getattr(value, f.name) is not None
        }
    if isinstance(value, Mapping):
        for sub, item in value.items():
            if item is not NOT_GIVEN:
                yield from _form_fields(f"{key}[{sub}]", item, indices)
    elif isinstance(value, list | tuple) and not _is_file(value):
        for i, item in enumerate(value):
            yield from _form_fields(f"{key}[{i if indices else ''}]", item, indices)
    else:
        yield key, value


def multipart_pieces(values: Mapping[str, Any], array_format: str, boundary: str) -> list[Piece]:
    """The pieces of a multipart/form-data body: bytes, and files to stream. Lists and
    objects are flattened into bracketed names; files carry a filename and a type."""
    pieces: list[Piece] = []
    indices = array_format == "indices"
    for key, value in values.items():
        for name, item in _form_fields(key, value, indices):
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="{_q(name)}"'
            if _is_file(item):
                filename, data, ctype = file_source(item)
                head += f'; filename="{_q(filename or "upload")}"'
                head += f"\r\nContent-Type: {ctype or 'application/octet-stream'}"
                pieces += [head.encode() + b"\r\n\r\n", data, b"\r\n"]
            else:
                text = _scalar(plain(item)).encode()
                pieces.append(head.encode() + b"\r\n\r\n" + text + b"\r\n")
    pieces.append(f"--{boundary}--\r\n".encode())
    return pieces


def encode_multipart(
    values: Mapping[str, Any], array_format: str, boundary: str | None = None
) -> tuple[bytes, str]:
    """A multipart/form-data body (files read into memory) and its content type."""
    boundary = boundary or uuid.uuid4().hex
    pieces = multipart_pieces(values, array_format, boundary)
    data = b"".join(p if isinstance(p, bytes) else _read_whole(p) for p in pieces)
    return data, f"multipart/form-data; boundary={boundary}"


# Form names and filenames as the official SDK (httpx, after WHATWG) writes them: '"' and
# control characters but ESC percent-escaped, '\\' doubled; no raw control character
# reaches a part header.
_FORM_ESCAPES = str.maketrans(
    {'"': "%22", "\\": "\\\\"} | {chr(c): f"%{c:02X}" for c in range(0x20) if c != 0x1B}
)


def _q(text: str) -> str:
    return text.translate(_FORM_ESCAPES)


def build_path(op: Operation, values: Sequence[str]) -> str:
    """The operation's path with each value as one percent-encoded segment."""
    names = op.template.count("{}")
    if len(values) != names:  # the generator keeps these in step
        raise TypeError(f"{op.name} takes {names} path values, got {len(values)}")
    try:
        return _path(op.template, *values)
    except TypeError:  # an unhashable value is no cache key: built uncached (and refused)
        return _path.__wrapped__(op.template, *values)


@lru_cache(maxsize=4096)
def _path(template: str, *values: str) -> str:
    # Agents address the same few browsers again and again: each path is built once.
    return template.format(*[segment(v, "path parameter") for v in values])


# -- I/O: through the client's request loop ----------------------------------------------


class Request(NamedTuple):
    """One operation's request, ready for the loop: built once, sent per attempt (and
    per page). A named tuple: made once per call, it costs a tenth of a frozen attrs
    class to build."""

    op: Operation
    path: str
    query: dict[str, Any]
    headers: dict[str, str]
    body: bytes | Upload | None
    content_type: str | None
    timeout: float | Timeout | NotGiven | None


def prepare(
    op: Operation,
    path: Sequence[str],
    *,
    query: Mapping[str, Any] | None = None,
    header: Mapping[str, Any] | None = None,
    body: Mapping[str, Any] | None = None,
    content: Any = None,
    extra_headers: Mapping[str, str] | None = None,
    extra_query: Mapping[str, object] | None = None,
    extra_body: Mapping[str, object] | None = None,
    timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
) -> Request:
    """Everything about the request that does not depend on the attempt."""
    url_path = build_path(op, path)
    params = given(query) if query else {}
    if extra_query:
        params.update(plain(dict(extra_query)))
    headers = {"Accept": op.accept}
    if header:
        for key, value in given(header).items():
            headers[key] = _scalar(value)
    if extra_headers:
        headers.update(extra_headers)
    data, ctype = encode_body(op, body, content, extra_body)
    if isinstance(data, Upload):
        headers["Content-Length"] = str(data.length)  # streamed, but not chunked
    return Request(op, url_path, params, headers, data, ctype, timeout)


def encode_body(
    op: Operation,
    body: Mapping[str, Any] | None,
    content: Any,
    extra_body: Mapping[str, object] | None,
) -> tuple[bytes | Upload | None, str | None]:
    """The request body as the operation's spec says (JSON, multipart or raw bytes) and
    its content type. Files given as paths or file objects are streamed when sent."""
    if op.body == "json":
        fields = given(body)
        if extra_body:
            fields.update(plain(dict(extra_body)))
        if fields or (body is None and extra_body):
            return encode_json(fields), "application/json"
    elif op.body == "multipart":
        values = {k: v for k, v in (body or {}).items() if v is not NOT_GIVEN}
        if extra_body:
            values.update(extra_body)
        boundary = uuid.uuid4().hex
        pieces = multipart_pieces(values, op.array_format, boundary)
        return _body(pieces), f"multipart/form-data; boundary={boundary}"
    elif op.body == "raw":
        return _body([file_source(content)[1]]), "application/octet-stream"
    if op.method != "GET":
        return None, "application/json"  # as the official SDK labels every bodiless non-GET
    return None, None


def target(req: Request, query: Mapping[str, Any] | None = None) -> str:
    if not req.query and not query:  # the usual call: no query at all
        return req.path
    params = dict(req.query)
    if query:
        params.update(query)
    pairs = encode_query(params)
    return f"{req.path}?{query_string(pairs)}" if pairs else req.path


async def send(client: AsyncKernel, req: Request, query: Mapping[str, Any] | None = None) -> Any:
    """Send the request through the client's loop and decode the result by kind.
    For pages, returns (items, response headers)."""
    op = req.op
    kind = op.kind
    resp, url, attempts = await client._request(
        op.method,
        req.path if query is None and not req.query else target(req, query),
        idempotent=op.replay,
        body=req.body,
        content_type=req.content_type,
        timeout=req.timeout,
        extra_headers=req.headers,
        read_limit=_READ_LIMITS.get(kind, JSON_LIMIT),
    )
    if kind == "none" or (resp.status == 204 and kind == "json"):
        return None  # e.g. browser_pools.acquire: 204 when no browser came in time
    if kind == "binary":
        return AsyncBinaryContent(
            resp.body, resp.headers, status_code=resp.status, url=str(url), method=op.method
        )
    result_kind = result_type(op)
    if kind == "page":
        result_kind = list[result_kind]  # type: ignore[valid-type]
    result = decode_json(
        resp,
        lambda data: converter().structure(json.loads(data), result_kind),
        method=op.method,
        url=url,
        attempts=attempts,
        operation=op.name,
    )
    if op.kind == "page":
        return result, resp.headers
    return result


_READ_LIMITS = {"binary": BINARY_LIMIT, "none": 64 * 1024}  # a result-less body is ignored


async def save(
    save_to: str | os.PathLike[str],
    client: AsyncKernel,
    op: Operation,
    path: Sequence[str],
    *,
    progress: Callable[[int], object] | None = None,
    **kwargs: Any,
) -> Path:
    """Run a binary operation, streaming its result to `save_to` atomically: a temporary
    file beside it, renamed into place once complete (nothing left behind otherwise)."""
    from anyio.to_thread import run_sync

    from ._files import AtomicFile, FileSink

    req = prepare(op, path, **kwargs)
    out = AtomicFile(save_to)  # refuses a target no file can be created beside, naming it
    try:
        resp, _, _ = await client._request(
            op.method,
            target(req),
            idempotent=op.replay,
            body=req.body,
            content_type=req.content_type,
            timeout=req.timeout,
            extra_headers=req.headers,
            read_limit=None,
            sink=FileSink(out.file, progress, None),
        )
        if resp.body:  # a 2xx that was not streamed
            out.file.write(resp.body)
        return await run_sync(out.commit)  # fsync and rename off the event loop
    finally:
        out.discard()


def call(
    client: AsyncKernel,
    op: Operation,
    path: Sequence[str],
    *,
    query: Mapping[str, Any] | None = None,
    header: Mapping[str, Any] | None = None,
    body: Mapping[str, Any] | None = None,
    content: Any = None,
    extra_headers: Mapping[str, str] | None = None,
    extra_query: Mapping[str, object] | None = None,
    extra_body: Mapping[str, object] | None = None,
    timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
) -> Coroutine[Any, Any, Any]:
    """Run one operation: build its request (see `prepare`), send it through the loop,
    decode.

    Every operation's hot path, so its arguments are spelled out (passing them on as
    ``**kwargs`` costs as much as building the path), and it is not a coroutine
    function itself: the generated method awaits `send`'s coroutine directly (one
    coroutine fewer per call). Arguments are still refused inside that method's await,
    before anything is sent."""
    req = prepare(
        op,
        path,
        query=query,
        header=header,
        body=body,
        content=content,
        extra_headers=extra_headers,
        extra_query=extra_query,
        extra_body=extra_body,
        timeout=timeout,
    )
    return send(client, req)


def pager(
    client: AsyncKernel, op: Operation, path: Sequence[str], **kwargs: Any
) -> AsyncPager[Any]:
    """A lazy paged list: ``await`` it for the first page, ``async for`` for every item."""
    from ._pagination import AsyncPager

    return AsyncPager(client, prepare(op, path, **kwargs))


async def stream(
    client: AsyncKernel, op: Operation, path: Sequence[str], **kwargs: Any
) -> AsyncStream[Any]:
    """Open a server-sent event stream (see `AsyncStream`)."""
    from ._streaming import AsyncStream

    return await AsyncStream.open(client, prepare(op, path, **kwargs))
