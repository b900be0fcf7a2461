"""The SSE parser's fast paths (memchr line search, the unfinished line joined alone, one
data line kept uncopied, long lines and the pieces of an unfinished one kept as views of
their chunk and decoded through them) give the events the spec gives, wherever the chunks
split: many lines per chunk, short and long (past the switch between one-by-one search
and `split`), of every field, LF, CRLF and CR endings."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_async._sse import _SHORT, _VIEW, SSEParser, _split_lf
from tests.test_sse_parser import BOM, reference

LINE = st.integers(0, 6000).map(lambda n: "x" * n) | st.text(
    st.characters(codec="utf-8", exclude_characters="\r\n\0"), max_size=40
)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *cuts})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(st.lists(LINE, min_size=1, max_size=6), max_size=25),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(0, 200_000), max_size=12),
)
def test_any_split_of_many_short_and_long_lines(
    events: list[list[str]], eol: str, cuts: list[int]
) -> None:
    body = "".join(
        f"id: {n}{eol}" + "".join(f"data: {line}{eol}" for line in lines) + eol
        for n, lines in enumerate(events)
    ).encode()
    parser = SSEParser()
    got = [
        e
        for chunk in split_at(body, [c % (len(body) + 1) for c in cuts])
        for e in parser.feed(chunk)
    ]
    assert [(e.data, e.id) for e in got] == [
        ("\n".join(lines), str(n)) for n, lines in enumerate(events)
    ]
    assert not parser.pending


def test_split_lf_is_split_from_a_position() -> None:
    short = b"\n".join([b"ab"] * (_SHORT * 3)) + b"\nrest"
    long = b"\n".join([b"y" * 2000] * (_SHORT + 5)) + b"\n"
    for chunk in (short, long, b"", b"\n", b"no end", b"a\n\nb"):
        for pos in (0, 1, len(chunk) // 2):
            if pos <= len(chunk):
                assert _split_lf(chunk, pos) == chunk[pos:].split(b"\n")


# Long values (past `_VIEW`, so kept as views) with odd bytes anywhere: multi-byte and
# invalid UTF-8, NUL, colons, spaces; under every field, a comment and no field at all.
ODD = st.sampled_from([b"x", b"\xc3\xa9", b"\xe2\x82", b"\xff", b"\x00", b":", b" ", b"7"])
LONG = st.tuples(st.integers(_VIEW - 8, 3 * _VIEW), st.lists(ODD, max_size=4)).map(
    lambda t: b"y" * t[0] + b"".join(t[1])
)
FIELD = st.sampled_from(
    [b"data: ", b"data:", b"data", b"event: ", b"id: ", b"retry: ", b":", b"x: "]
)


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(
        st.tuples(FIELD, LONG | ODD, st.sampled_from([b"\n", b"\r\n", b"\r"])), max_size=8
    ),
    bom=st.booleans(),
    cuts=st.lists(st.integers(0, 100_000), max_size=10),
)
def test_long_lines_of_any_field_split_anywhere_parse_as_the_spec(
    lines: list[tuple[bytes, bytes, bytes]], bom: bool, cuts: list[int]
) -> None:
    body = (BOM if bom else b"") + b"".join(f + v + e for f, v, e in lines) + b"\n\n"
    parser = SSEParser()
    got = [
        e
        for chunk in split_at(body, [c % (len(body) + 1) for c in cuts])
        for e in parser.feed(chunk)
    ]
    want = reference(body)
    assert got == want.events
    assert (parser.last_event_id, parser.retry, parser.comments, parser.pending) == (
        want.last_event_id,
        want.retry,
        want.comments,
        want.pending,
    )


def test_a_chunk_changed_after_feeding_does_not_change_the_events() -> None:
    # Views of a chunk outlive `feed` (a long data line, until its blank line comes): a
    # chunk that is not `bytes` is copied first, so its owner may reuse it.
    parser = SSEParser()
    assert parser.feed(b"data: " + b"a" * (2 * _VIEW)) == []
    buffer = bytearray(b"\n\ndata: " + b"c" * (2 * _VIEW) + b"\n")
    (first,) = parser.feed(buffer)
    buffer[:] = b"z" * len(buffer)
    (second,) = parser.feed(b"\n")
    assert (first.data, second.data) == ("a" * (2 * _VIEW), "c" * (2 * _VIEW))
