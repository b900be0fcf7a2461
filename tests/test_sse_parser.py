"""The SSE parser and the event decode step, pure: no sockets.

The examples of the WHATWG HTML spec ("server-sent events"), each rule of its "event stream
interpretation", the size bound, and properties: any chunking parses as the whole stream
does (and as a line-by-line transcription of the spec does), serialized events parse back,
memory stays within the bound.
"""

from __future__ import annotations

import itertools
import re
import tracemalloc
from collections.abc import Iterable, Iterator
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel_async._errors import APIResponseValidationError, KernelError, SSEEventTooLargeError
from kernel_async._models import converter
from kernel_async._sse import MAX_EVENT_BYTES, ServerSentEvent, SSEParser, decode_event

BOM = b"\xef\xbb\xbf"
PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse(*chunks: bytes, limit: int = MAX_EVENT_BYTES) -> tuple[list[ServerSentEvent], SSEParser]:
    parser = SSEParser(max_event_bytes=limit)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events, parser


def msg(data: str, id: str | None = None, event: str = "message") -> ServerSentEvent:
    return ServerSentEvent(event=event, data=data, id=id)


def split_at(stream: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(stream)) for c in cuts})
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


# -- a line-by-line transcription of the spec, over the whole stream at once ----------------


@attrs.frozen
class Reference:
    events: list[ServerSentEvent]
    last_event_id: str | None
    retry: int | None
    comments: int
    pending: bool


def reference(stream: bytes) -> Reference:
    """The spec's steps, read literally: decode the whole stream (a leading BOM dropped),
    split it into lines, process each line, drop what the end of the stream cuts."""
    if stream.startswith(BOM):
        stream = stream[3:]
    *lines, rest = re.split(r"\r\n|\r|\n", stream.decode("utf-8", "replace"))
    events: list[ServerSentEvent] = []
    data = event_type = id_buffer = last_id = ""
    retry = event_retry = None
    comments = 0
    in_event = False
    for line in lines:
        if line == "":
            last_id = id_buffer
            if data != "":
                events.append(
                    ServerSentEvent(
                        event_type or "message", data[:-1], last_id or None, event_retry
                    )
                )
            data = event_type = ""
            event_retry = None
            in_event = False
            continue
        if line.startswith(":"):
            comments += 1
            continue
        in_event = True
        if ":" in line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
        else:
            field, value = line, ""
        if field == "event":
            event_type = value
        elif field == "data":
            data += value + "\n"
        elif field == "id":
            if "\0" not in value:
                id_buffer = value
        elif field == "retry" and value and all(c in "0123456789" for c in value):
            retry = event_retry = int(value)
    return Reference(events, last_id or None, retry, comments, in_event or rest != "")


def observed(parser: SSEParser, events: list[ServerSentEvent]) -> Reference:
    return Reference(events, parser.last_event_id, parser.retry, parser.comments, parser.pending)


# -- the spec's own example streams ----------------------------------------------------------


def test_whatwg_stock_ticker_multiline_data() -> None:
    events, parser = parse(b"data: YHOO\ndata: +2\ndata: 10\n\n")
    assert events == [msg("YHOO\n+2\n10")]
    assert not parser.pending


def test_whatwg_comment_ids_and_leading_space() -> None:
    stream = (
        b": test stream\n\n"
        b"data: first event\nid: 1\n\n"
        b"data:second event\nid\n\n"
        b"data:  third event\n\n"
    )
    events, parser = parse(stream)
    # An id holds until an empty `id` clears it; only one space after the colon goes.
    assert events == [msg("first event", "1"), msg("second event"), msg(" third event")]
    assert parser.comments == 1
    assert parser.last_event_id is None


def test_whatwg_empty_data_blocks_and_unterminated_last_block() -> None:
    events, parser = parse(b"data\n\ndata\ndata\n\ndata:")
    assert events == [msg(""), msg("\n")]
    assert parser.pending  # the last block had no blank line: discarded


def test_whatwg_space_after_colon_is_optional() -> None:
    events, _ = parse(b"data:test\n\ndata: test\n\n")
    assert events == [msg("test"), msg("test")]


def test_whatwg_event_types() -> None:
    stream = (
        b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n"
    )
    events, _ = parse(stream)
    assert [(e.event, e.data) for e in events] == [
        ("add", "73857293"),
        ("remove", "2153"),
        ("add", "113411"),
    ]


# -- each rule -------------------------------------------------------------------------------


def test_bom_dropped_at_the_start_only() -> None:
    assert parse(BOM + b"data: a\n\n")[0] == [msg("a")]
    # Split byte by byte, the BOM is still recognised.
    assert parse(*(BOM[i : i + 1] for i in range(3)), b"data: a\n\n")[0] == [msg("a")]
    # A second BOM, or one later in the stream, belongs to a field name: that field is ignored.
    assert parse(BOM + BOM + b"data: a\n\ndata: b\n\n")[0] == [msg("b")]
    assert parse(b"data: a\n\n" + BOM + b"data: b\n\n")[0] == [msg("a")]
    # A stream that starts like a BOM but is not one loses nothing.
    assert parse(b"\xef", b"\xbbx\n\ndata: c\n\n")[0] == [msg("c")]


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"], ids=["LF", "CR", "CRLF"])
def test_line_endings(eol: bytes) -> None:
    stream = b"data: a" + eol + b"data: b" + eol + eol + b"data: c" + eol + eol
    assert parse(stream)[0] == [msg("a\nb"), msg("c")]


def test_mixed_line_endings() -> None:
    assert parse(b"data: a\r\ndata: b\rdata: c\n\r\n\r")[0] == [msg("a\nb\nc")]
    # LF CR is two line ends (a blank line), CR LF is one.
    assert parse(b"data: a\n\rdata: b\r\n\n")[0] == [msg("a"), msg("b")]


def test_cr_ending_a_chunk_and_lf_starting_the_next_are_one_line_end() -> None:
    events, _ = parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")
    assert events == [msg("a\nb")]
    # Empty chunks between them change nothing.
    assert parse(b"data: a\r", b"", b"\ndata: b\r\n\r", b"", b"", b"\n")[0] == [msg("a\nb")]
    # A CR then a CR: two line ends, so a blank line.
    assert parse(b"data: a\r", b"\rdata: b\r\r")[0] == [msg("a"), msg("b")]


def test_utf8_character_split_across_chunks() -> None:
    stream = "data: é€😀\n\n".encode()
    for cut in range(len(stream) + 1):
        assert parse(stream[:cut], stream[cut:])[0] == [msg("é€😀")]


def test_invalid_utf8_becomes_replacement_characters() -> None:
    events, _ = parse(b"data: a\xffb\xe2\x82\ndata: \x80\n\n")
    assert events == [msg("a\ufffdb\ufffd\n\ufffd")]


def test_only_cr_and_lf_end_lines() -> None:
    # Other Unicode line breaks are data (str.splitlines would break at them).
    text = "a\x0bb\x0cc\x1cd\x85e\u2028f\u2029g"
    assert parse(f"data: {text}\n\n".encode())[0] == [msg(text)]


def test_comments_are_ignored_and_counted() -> None:
    events, parser = parse(b":\n: keep-alive\n\n:ping\ndata: a\n: inside\n\n:\r\n")
    assert events == [msg("a")]
    assert parser.comments == 5
    assert not parser.pending  # comments alone do not open an event


def test_field_without_colon_has_an_empty_value() -> None:
    events, parser = parse(b"id: 7\n\ndata\n\nid\ndata\n\nevent\ndata: x\n\n")
    assert events == [msg("", "7"), msg(""), msg("x")]
    assert parser.last_event_id is None


def test_only_one_leading_space_is_removed() -> None:
    events, _ = parse(b"event:  spaced\ndata:   three\ndata:\ttab\n\n")
    assert events == [ServerSentEvent(" spaced", "  three\n\ttab")]


def test_colon_in_value_and_unknown_fields() -> None:
    events, _ = parse(b"data: a: b:c\nfoo: bar\nDATA: x\ndata : y\n\n")
    assert events == [msg("a: b:c")]


def test_event_type_resets_after_each_event() -> None:
    events, _ = parse(b"event: a\nevent: b\ndata: 1\n\ndata: 2\n\nevent: c\n\ndata: 3\n\n")
    assert [(e.event, e.data) for e in events] == [("b", "1"), ("message", "2"), ("message", "3")]


def test_id_persists_and_is_per_dispatch() -> None:
    stream = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\n\ndata: c\n\nid\ndata: d\n\ndata: e\nid: 3\n\n"
    events, parser = parse(stream)
    assert [(e.data, e.id) for e in events] == [
        ("a", "1"),
        ("b", "1"),
        ("c", "2"),  # an id-only block dispatches nothing but still moves the id
        ("d", None),  # an empty id clears it
        ("e", "3"),  # the id of the block, wherever the line is
    ]
    assert parser.last_event_id == "3"


def test_id_with_nul_is_ignored() -> None:
    events, parser = parse(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")
    assert [e.id for e in events] == ["1", "1"]
    assert parser.last_event_id == "1"


def test_last_event_id_moves_at_dispatch_only() -> None:
    parser = SSEParser()
    assert parser.feed(b"id: 1\ndata: a\n\nid: 2\ndata: b\n") == [msg("a", "1")]
    # Cut here, a resume must ask for what follows event 1: event 2 never arrived whole.
    assert parser.last_event_id == "1"
    assert parser.pending


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"retry: 1500", 1500),
        (b"retry:0", 0),
        (b"retry: 1.5", None),
        (b"retry: -1", None),
        (b"retry: 1e3", None),
        (b"retry:  100", None),  # the second space is part of the value
        (b"retry: 100 ", None),
        (b"retry:", None),
        (b"retry", None),
        ("retry: ١٢".encode(), None),  # digits, but not ASCII ones
        (b"retry: " + b"9" * 5000, None),  # no wait that long: ignored
    ],
)
def test_retry_takes_ascii_digits_only(line: bytes, expected: int | None) -> None:
    events, parser = parse(line + b"\ndata: x\n\n")
    assert parser.retry == expected
    assert events[0].retry == expected


def test_retry_is_the_streams_and_the_events() -> None:
    events, parser = parse(b"retry: 10\ndata: a\n\ndata: b\n\nretry: 20\n\n")
    assert [e.retry for e in events] == [10, None]  # per event: that event's retry line
    assert parser.retry == 20  # the stream's: the last one, even from a block without data


def test_unterminated_final_event_is_not_dispatched() -> None:
    events, parser = parse(b"data: a\n\ndata: b\n")
    assert events == [msg("a")]
    assert parser.pending
    _, parser = parse(b"data: a\n\nda")
    assert parser.pending
    _, parser = parse(b"data: a\n\nid: 5\n")
    assert parser.pending
    _, parser = parse(b"data: a\n\n")
    assert not parser.pending


def test_feed_returns_events_as_they_complete() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"\ndata: b\n\ndata:") == [msg("a"), msg("b")]
    assert parser.feed(b" c\n\n") == [msg("c")]


def test_event_model_is_frozen_slotted_with_json() -> None:
    event = ServerSentEvent("log", '{"a": [1, 2]}', "9", 5)
    assert event.json() == {"a": [1, 2]}
    assert not hasattr(event, "__dict__")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.data = "x"  # type: ignore[misc]


# -- the size bound --------------------------------------------------------------------------


def test_error_is_a_kernel_error() -> None:
    assert issubclass(SSEEventTooLargeError, KernelError)
    assert SSEParser().max_event_bytes == 8 * 1024 * 1024


def test_event_of_exactly_the_bound_passes_one_byte_more_raises() -> None:
    line = b"data: " + b"x" * 100
    for chunks in ([line + b"\n\n"], [line[:50], line[50:], b"\n\n"]):
        events, _ = parse(*chunks, limit=len(line))
        assert events == [msg("x" * 100)]
        with pytest.raises(SSEEventTooLargeError) as info:
            parse(*chunks, limit=len(line) - 1)
        assert info.value.limit == len(line) - 1
        assert "exceeds 105 bytes" in str(info.value)


def endless_line(chunk: int) -> Iterator[bytes]:
    yield b"data: "
    while True:
        yield b"x" * chunk


def feed_until_refused(parser: SSEParser, chunks: Iterable[bytes]) -> int:
    """Feed until the parser refuses; return the bytes fed. Checks the bound after each."""
    fed = 0
    for chunk in chunks:
        fed += len(chunk)
        try:
            parser.feed(chunk)
        except SSEEventTooLargeError:
            return fed
        assert parser.buffered <= parser.max_event_bytes
    raise AssertionError("never refused")


def test_a_huge_line_is_refused_before_it_is_buffered() -> None:
    limit, chunk = 1 << 20, 64 << 10
    parser = SSEParser(max_event_bytes=limit)
    tracemalloc.start()
    try:
        fed = feed_until_refused(parser, endless_line(chunk))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fed <= limit + chunk + 6
    assert peak < limit + 3 * chunk
    assert parser.buffered == 0  # what it held is let go


def test_many_data_lines_are_refused_before_they_add_up() -> None:
    line = b"data: " + b"y" * 94 + b"\n"
    fed = feed_until_refused(SSEParser(max_event_bytes=10_000), itertools.repeat(line, 1000))
    # 95 of each line's 101 bytes are held (its value and an LF): refused at the 106th line.
    assert fed == 106 * len(line)


def test_a_huge_line_ending_in_one_chunk_is_refused_too() -> None:
    with pytest.raises(SSEEventTooLargeError):
        parse(b"data: " + b"z" * 2000 + b"\n\n", limit=1000)
    # A long comment or unknown field counts while it arrives, so it counts whole too.
    with pytest.raises(SSEEventTooLargeError):
        parse(b":" + b"z" * 2000 + b"\n\n", limit=1000)


def test_events_before_the_large_one_are_delivered_first() -> None:
    parser = SSEParser(max_event_bytes=100)
    assert parser.feed(b"id: 1\ndata: a\n\ndata: " + b"b" * 200) == [msg("a", "1")]
    assert parser.last_event_id == "1"
    assert parser.pending
    with pytest.raises(SSEEventTooLargeError):
        parser.end()
    # Spent: every later call raises again.
    with pytest.raises(SSEEventTooLargeError):
        parser.feed(b"\n\ndata: c\n\n")


def test_end_is_quiet_on_a_healthy_stream() -> None:
    parser = SSEParser()
    parser.feed(b"data: a\n\n")
    parser.end()
    assert not parser.pending


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SSEParser(max_event_bytes=0)


# -- properties ------------------------------------------------------------------------------

TOKENS = [
    b"data",
    b"data:",
    b"data: ",
    b"event:",
    b"event: ",
    b"id:",
    b"id: ",
    b"retry:",
    b"retry: ",
    b"1",
    b"42",
    b"x",
    b":",
    b" ",
    b"\r",
    b"\n",
    b"\r\n",
    b"\n\n",
    b"\x00",
    BOM,
    "é".encode(),
    "€".encode(),
    "😀".encode(),
    b"\xff",
    b"\xe2\x82",
    b"\x80",
    "\u2028".encode(),
    b"\x0b",
]

# Lines the way servers write them (mostly) or any token soup, each with any line end; so
# that events do form, yet every odd byte sequence comes up too.
FIELDS = [b"data", b"data:", b"data: ", b"event: ", b"id: ", b"id:", b"retry: ", b":", b""]
EOLS = [b"\n", b"\r", b"\r\n"]
soup = st.lists(st.sampled_from(TOKENS), max_size=6).map(b"".join)
value = st.lists(st.sampled_from([t for t in TOKENS if not {13, 10} & set(t)]), max_size=4).map(
    b"".join
) | st.integers(0, 10**6).map(lambda n: str(n).encode())
line = st.tuples(st.sampled_from(FIELDS), value, st.sampled_from(EOLS))
block = st.tuples(st.lists(line.map(b"".join), max_size=4), st.sampled_from(EOLS)).map(
    lambda b: b"".join(b[0]) + b[1]
)
streams = st.tuples(
    st.sampled_from([b"", BOM]),
    st.lists(block | soup, min_size=1, max_size=10),
    soup,
).map(lambda parts: parts[0] + b"".join(parts[1]) + parts[2])


def cuts_for(stream: bytes) -> st.SearchStrategy[list[int]]:
    """Cut anywhere, and often right after a CR or inside a multi-byte character."""
    tricky = [i + 1 for i, b in enumerate(stream) if b == 13 or b >= 0x80] or [0]
    return st.lists(st.integers(0, len(stream)) | st.sampled_from(tricky), max_size=12)


@PROPERTIES
@given(stream=streams, data=st.data())
def test_any_chunking_parses_as_the_whole_stream_and_as_the_spec(
    stream: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(cuts_for(stream))
    whole, whole_parser = parse(stream)
    chunked, chunked_parser = parse(*split_at(stream, cuts))
    assert observed(chunked_parser, chunked) == observed(whole_parser, whole)
    assert observed(whole_parser, whole) == reference(stream)


def _one_line(alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.text(alphabet, max_size=12)


# Characters that would break a line, or a field, are left out where the format cannot carry them.
LINE = st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n")
TEXT = st.characters(blacklist_categories=["Cs"], blacklist_characters="\r")
SPICE = st.sampled_from(list(" :\n\x00é😀\u2028\x85\ufeff"))


@attrs.frozen
class Sent:
    data: str
    event: str | None
    id: str | None  # None: no id line; "": an empty id line
    retry: int | None


sent_events = st.builds(
    Sent,
    data=st.text(st.one_of(TEXT, SPICE), max_size=30),
    event=st.none() | _one_line(LINE),
    id=st.none() | _one_line(LINE.filter(lambda c: c != "\x00")),
    retry=st.none() | st.integers(0, 10**12),
)


def serialize(events: list[Sent], draw: Any) -> tuple[bytes, int]:
    """Other fields anywhere among the data lines (which keep their order), any line
    ending per line, comments anywhere."""
    lines: list[str] = []
    comments = 0
    for sent in events:
        # "data:" + " x" would lose the space: a value starting with one needs "data: ".
        block = [
            "data:" + (" " if part.startswith(" ") else draw(st.sampled_from(["", " "]))) + part
            for part in sent.data.split("\n")
        ]
        others = []
        if sent.event is not None:
            others.append(f"event: {sent.event}")
        if sent.id is not None:
            others.append(f"id: {sent.id}" if sent.id else draw(st.sampled_from(["id", "id:"])))
        if sent.retry is not None:
            others.append(f"retry: {sent.retry}")
        for other in others:
            block.insert(draw(st.integers(0, len(block))), other)
        for line in [*block, ""]:
            for _ in range(draw(st.integers(0, 1))):
                lines.append(":" + draw(_one_line(LINE)))
                comments += 1
            lines.append(line)
    out = bytearray()
    previous = b""
    for line in lines:
        eol = draw(st.sampled_from([b"\n", b"\r", b"\r\n"]))
        if previous == b"\r" and line == "" and eol == b"\n":
            eol = b"\r\n"  # CR then an LF-ended blank line would read as one CRLF
        out += line.encode() + eol
        previous = eol
    return bytes(out), comments


@PROPERTIES
@given(events=st.lists(sent_events, max_size=8), data=st.data())
def test_serialized_events_parse_back(events: list[Sent], data: st.DataObject) -> None:
    stream, comments = serialize(events, data.draw)
    if data.draw(st.booleans()):
        stream = BOM + stream
    cuts = data.draw(cuts_for(stream))
    parsed, parser = parse(*split_at(stream, cuts))
    expected = []
    last_id: str | None = None
    for sent in events:
        if sent.id is not None:
            last_id = sent.id or None
        expected.append(ServerSentEvent(sent.event or "message", sent.data, last_id, sent.retry))
    assert parsed == expected
    assert parser.comments == comments
    assert not parser.pending
    assert parser.last_event_id == last_id


@PROPERTIES
@given(
    events=st.lists(
        st.tuples(st.integers(0, 3000), st.integers(0, 4), st.booleans()), min_size=1, max_size=6
    ),
    limit=st.integers(1, 4000),
    data=st.data(),
)
def test_size_bound_holds_for_any_chunking(
    events: list[tuple[int, int, bool]], limit: int, data: st.DataObject
) -> None:
    # Each event: `size` bytes of data spread over `lines` + 1 data lines, maybe a type.
    blocks: list[list[bytes]] = []
    for size, lines, typed in events:
        share = size // (lines + 1)
        parts = [b"d" * share] * lines + [b"d" * (size - share * lines)]
        blocks.append([b"event: t"] * typed + [b"data: " + part for part in parts])
    stream = b"".join(b"".join(line + b"\n" for line in block) + b"\n" for block in blocks)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    parser = SSEParser(max_event_bytes=limit)
    delivered: list[ServerSentEvent] = []
    refused = False
    for chunk in split_at(stream, cuts):
        try:
            delivered += parser.feed(chunk)
        except SSEEventTooLargeError:
            refused = True
            break
        assert parser.buffered <= limit
        held = sum(map(len, parser._pending)) + len(parser._data) + len(parser._event)
        assert held <= limit
    if not refused:
        try:
            parser.end()
        except SSEEventTooLargeError:
            refused = True
    # The rule, whole-stream: an event is refused once what it holds (data, type) and the
    # line arriving exceed the bound; where the chunks split never matters.
    wanted = []
    for block in blocks:
        values = [line[6:] for line in block if line.startswith(b"data: ")]
        held_data = held_type = seen = 0
        fits = True
        for line in block:
            if held_data + held_type + len(line) > limit:
                fits = False
                break
            if line.startswith(b"event: "):
                held_type = len(line) - 7
            else:
                held_data += len(line) - 6 + (seen > 0)  # LF between data lines
                seen += 1
        if not fits:
            break
        wanted.append(
            msg(b"\n".join(values).decode(), event="t" if block[0] == b"event: t" else "message")
        )
    assert refused == (len(wanted) < len(blocks))
    assert delivered == wanted


# -- decoding an event's data ----------------------------------------------------------------


@attrs.frozen
class LogEvent:
    message: str
    level: int


def structure_log(obj: Any) -> LogEvent:
    return converter().structure(obj, LogEvent)


def test_decode_event_structures_json() -> None:
    event = msg('{"message": "hi", "level": 2, "extra": true}')
    assert decode_event(event, structure_log, "browsers.logs.stream") == LogEvent("hi", 2)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ("not json", "JSONDecodeError"),
        ("", "JSONDecodeError"),
        ('{"message": "hi"}', "level"),
        ('{"message": "hi", "level": "2"}', "level"),
        ("[1, 2]", "expected an object"),
    ],
)
def test_decode_event_names_the_operation_on_bad_data(data: str, why: str) -> None:
    with pytest.raises(APIResponseValidationError) as info:
        decode_event(msg(data, event="log"), structure_log, "browsers.logs.stream", url="http://x/")
    error = info.value
    assert "browsers.logs.stream" in str(error)
    assert why in str(error)
    assert error.body == data
    assert error.status_code == 200
    assert error.url == "http://x/"
