"""The SSE parser's fast paths (memchr line search, the unfinished line joined alone, one
data line kept uncopied, a long one decoded through a view) give the events the spec
gives, wherever the chunks split: many lines per chunk, short and long (past the switch
between one-by-one search and `split`), LF, CRLF and CR endings."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_async._sse import _SHORT, SSEParser, _split_lf

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
