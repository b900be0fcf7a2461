"""The generated layer's pure rules, without sockets: query strings, multipart bodies,
path segments, parameter values and the next-page rule (issue 18, point 6).

Each property decodes what the encoder produced with an independent parser (urllib,
yarl, the stdlib `email` parser) and compares it with a reference written here.
"""

from __future__ import annotations

import email.policy
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qsl, unquote

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import given as for_all
from hypothesis import strategies as st
from yarl import URL

from kernel_async._gen.models.search import (
    SearchContextTargetOptions,
    SearchContextTargetOptionsMarkdownOptions,
)
from kernel_async._models import Viewport
from kernel_async._operation import (
    Operation,
    build_path,
    encode_multipart,
    encode_query,
    given,
    plain,
    query_string,
)
from kernel_async._pagination import next_page_query
from kernel_async._types import NOT_GIVEN

# No per-example deadline or generation-speed check: the machine running the suite is shared.
ROBUST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
scalars = st.none() | st.booleans() | st.integers() | text

# -- encode_query / query_string ----------------------------------------------------------


def test_query_rules_by_example() -> None:
    assert encode_query(
        {
            "ids": ["a", "b", 3],
            "flags": [True, False],
            "filter": {"status": "active", "tags": {"team": "x"}},
            "deep": True,
            "off": False,
            "gone": None,
            "n": 0,
        }
    ) == [
        ("ids", "a,b,3"),
        ("flags", "true,false"),
        ("filter[status]", "active"),
        ("filter[tags][team]", "x"),
        ("deep", "true"),
        ("off", "false"),
        ("n", "0"),
    ]


def test_none_is_dropped_at_any_depth() -> None:
    # A None list item is left out of the comma list (as the official SDK does), never "None".
    assert encode_query({"a": [None, 1, None, True], "b": {"c": None}, "d": None}) == [
        ("a", "1,true")
    ]


def _scalar_text(value: Any) -> str:
    if value is True:
        return "true"
    return "false" if value is False else str(value)


def _query_reference(key: str, value: Any) -> list[tuple[str, str]]:
    if value is None or value == "":  # as the official SDK: an empty value is left out
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _query_reference(f"{key}[{k}]", v)]
    if isinstance(value, list):
        return [(key, ",".join(_scalar_text(v) for v in value if v is not None))]
    return [(key, _scalar_text(value))]


query_values = st.recursive(
    scalars | st.lists(scalars, max_size=4),
    lambda inner: st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


@settings(ROBUST, max_examples=200)
@for_all(st.dictionaries(text, query_values, max_size=4))
def test_query_string_decodes_to_the_encoded_pairs(values: dict[str, Any]) -> None:
    pairs = encode_query(values)
    expected = [p for k, v in values.items() for p in _query_reference(k, v)]
    assert pairs == expected
    qs = query_string(pairs)
    assert parse_qsl(qs, keep_blank_values=True, strict_parsing=bool(qs)) == expected
    assert list(URL("http://h/p?" + qs).query.items()) == expected


@settings(ROBUST, max_examples=250)
@for_all(st.lists(st.tuples(text, text), max_size=5))
def test_any_text_round_trips_through_query_string(pairs: list[tuple[str, str]]) -> None:
    qs = query_string(pairs)
    # Only unreserved characters, '%' escapes, the brackets of keys and the separators.
    assert re.fullmatch(r"[A-Za-z0-9\-._~%\[\]=&]*", qs), qs
    assert parse_qsl(qs, keep_blank_values=True) == pairs
    assert list(URL("http://h/p?" + qs, encoded=True).query.items()) == pairs


# -- encode_multipart -----------------------------------------------------------------------


@attrs.frozen
class Upload:
    """A file argument and what the server should see of it."""

    argument: Any
    filename: str
    content: bytes
    content_type: str


# Field names and filenames: any text but '%' (form names escape '"' as %22 and control
# characters as %XX, so a literal '%' followed by hex digits cannot be told apart).
names = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="%"), max_size=8)
content_types = st.sampled_from([None, "image/png", "application/zip", "text/plain"])


@st.composite
def uploads(draw: st.DrawFn) -> Upload:
    content = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        return Upload(content, "upload", content, "application/octet-stream")
    filename = draw(names.filter(bool))
    ctype = draw(content_types)
    arg = (filename, content) if ctype is None else (filename, content, ctype)
    return Upload(arg, filename, content, ctype or "application/octet-stream")


form_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
)
form_values = st.recursive(
    form_scalars | uploads(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=10,
)


def _form_reference(key: str, value: Any, indices: bool) -> list[tuple[str, Any]]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _form_reference(f"{key}[{k}]", v, indices)]
    if isinstance(value, list):
        return [
            p
            for i, v in enumerate(value)
            for p in _form_reference(f"{key}[{i if indices else ''}]", v, indices)
        ]
    if isinstance(value, Upload):
        return [(key, (value.filename, value.content, value.content_type))]
    return [(key, _scalar_text(value))]


def _arguments(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _arguments(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_arguments(v) for v in value]
    return value.argument if isinstance(value, Upload) else value


_FORM_ESCAPE = re.compile(r"%([01][0-9A-F]|22)")


def _unescape_form_name(name: str) -> str:
    return _FORM_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def parse_form(body: bytes, content_type: str) -> list[tuple[str, Any]]:
    """The fields of a multipart/form-data body, as the stdlib `email` parser reads them."""
    msg = email.message_from_bytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body, policy=email.policy.HTTP
    )
    assert isinstance(msg, EmailMessage)
    if not msg.is_multipart():  # no fields: only the closing delimiter
        assert body == f"--{msg.get_boundary()}--\r\n".encode()
        return []
    fields: list[tuple[str, Any]] = []
    for part in msg.iter_parts():
        assert isinstance(part, EmailMessage)
        disposition = part["Content-Disposition"]
        assert disposition.content_disposition == "form-data"
        params = dict(disposition.params)
        name = _unescape_form_name(params["name"])
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        if "filename" in params:
            filename = _unescape_form_name(params["filename"])
            fields.append((name, (filename, payload, part.get_content_type())))
        else:
            assert "Content-Type" not in part
            fields.append((name, payload.decode()))
    return fields


@settings(ROBUST, max_examples=200)
@for_all(
    st.dictionaries(names.filter(bool), form_values, max_size=4),
    st.sampled_from(["brackets", "indices"]),
)
def test_multipart_body_parses_back_to_every_field_and_file(
    values: dict[str, Any], array_format: str
) -> None:
    body, ctype = encode_multipart(_arguments(values), array_format)
    indices = array_format == "indices"
    expected = [p for k, v in values.items() for p in _form_reference(k, v, indices)]
    assert parse_form(body, ctype) == expected
    # Part headers carry no raw control characters (escaped as the official SDK does).
    for line in body.split(b"\r\n"):
        if line.startswith(b"Content-Disposition:"):
            assert not re.search(rb"[\x00-\x1a\x1c-\x1f]", line), line


def test_multipart_by_example() -> None:
    body, ctype = encode_multipart(
        {
            "files": [{"dest_path": "/tmp/a b", "file": ("a.txt", b"A\r\n", "text/plain")}],
            "meta": {"tags": ["x", "y"], "on": True, "none": None},
            "zip": b"PK",
        },
        "indices",
        boundary="b0und",
    )
    assert ctype == "multipart/form-data; boundary=b0und"
    assert parse_form(body, ctype) == [
        ("files[0][dest_path]", "/tmp/a b"),
        ("files[0][file]", ("a.txt", b"A\r\n", "text/plain")),
        ("meta[tags][0]", "x"),
        ("meta[tags][1]", "y"),
        ("meta[on]", "true"),
        ("zip", ("upload", b"PK", "application/octet-stream")),
    ]
    brackets, ctype = encode_multipart({"l": [{"a": 1}, {"a": 2}]}, "brackets", "b0und")
    assert parse_form(brackets, ctype) == [("l[][a]", "1"), ("l[][a]", "2")]


# -- build_path ----------------------------------------------------------------------------

TWO = Operation(
    "t.two", "GET", "/browsers/{}/fs/{}", replay=True, result=None, kind="none", accept="*/*"
)

ids = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30).filter(
    lambda s: s not in (".", "..")
)


@settings(ROBUST, max_examples=250)
@for_all(ids, ids)
def test_any_id_is_exactly_one_segment(first: str, second: str) -> None:
    path = build_path(TWO, [first, second])
    assert not re.search(r"[?#\s%](?![0-9A-F]{2})", path), path  # no raw ? # space or lone %
    parts = path.split("/")
    assert parts[:2] == ["", "browsers"] and parts[3] == "fs" and len(parts) == 5
    assert [unquote(parts[2], errors="strict"), unquote(parts[4], errors="strict")] == [
        first,
        second,
    ]
    assert URL("http://h" + path, encoded=True).parts[1:] == ("browsers", first, "fs", second)


@pytest.mark.parametrize("bad", ["", ".", ".."])
def test_empty_and_dot_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="path parameter"):
        build_path(TWO, ["ok", bad])


def test_path_value_count_is_checked() -> None:
    with pytest.raises(TypeError, match=r"t\.two takes 2 path values, got 1"):
        build_path(TWO, ["only"])


# -- plain / given -------------------------------------------------------------------------


def test_given_drops_what_was_not_passed() -> None:
    assert given({"a": NOT_GIVEN, "b": None, "c": 0, "d": False}) == {"b": None, "c": 0, "d": False}
    assert given(None) == {}
    assert given({"v": {"x": NOT_GIVEN, "y": 1}}) == {"v": {"y": 1}}


def test_plain_writes_models_by_wire_name_without_unset_fields() -> None:
    options = SearchContextTargetOptions(
        num_results=3,
        include_domains=["a.com"],
        markdown_options=SearchContextTargetOptionsMarkdownOptions(include_frames=False),
    )
    assert plain(options) == {
        "numResults": 3,
        "includeDomains": ["a.com"],
        "markdownOptions": {"includeFrames": False},
    }
    assert plain({"viewport": Viewport(800, 600), "list": [Viewport(1, 2, 60)]}) == {
        "viewport": {"width": 800, "height": 600},
        "list": [{"width": 1, "height": 2, "refresh_rate": 60}],
    }


def test_plain_writes_datetimes_and_dates_as_iso() -> None:
    when = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=timezone(timedelta(hours=2)))
    assert plain({"at": when, "on": [date(2024, 1, 2)], "n": (1, "x")}) == {
        "at": "2024-05-06T07:08:09.123000+02:00",
        "on": ["2024-01-02"],
        "n": [1, "x"],
    }


def _has_not_given(value: Any) -> bool:
    if value is NOT_GIVEN:
        return True
    if isinstance(value, Mapping):
        return any(_has_not_given(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_not_given(v) for v in value)
    return False


@settings(ROBUST)
@for_all(
    st.dictionaries(
        text,
        st.recursive(
            scalars | st.just(NOT_GIVEN),
            lambda inner: st.dictionaries(text, inner, max_size=3) | st.lists(scalars, max_size=3),
            max_leaves=8,
        ),
        max_size=4,
    )
)
def test_given_never_lets_not_given_through_a_mapping(values: dict[str, Any]) -> None:
    out = given(values)
    assert not _has_not_given(out)
    assert set(out) == {k for k, v in values.items() if v is not NOT_GIVEN}


# -- next_page_query -----------------------------------------------------------------------

garbage = st.sampled_from(["", "abc", "-3", "0", "٣", "1e3", "+5", " 7 ", "0x10"]) | text
has_more = st.sampled_from(["true", "TRUE", " true ", "false", "", "1", "yes"]) | text


@st.composite
def page_headers(draw: st.DrawFn, sent: int | str | None = None) -> dict[str, str]:
    """Page headers, right or garbled; offsets and tokens often near the `sent` one."""
    near = int(str(sent)) if str(sent).isdecimal() else 0
    close = st.integers(near - 3, near + 3).map(str)
    offsets = st.one_of(close, close, st.integers(-5, 10**20).map(str), garbage)
    tokens = st.sampled_from([str(sent), f" {sent} ", "t2"]) | text
    values = {
        "X-Has-More": st.just("true") | has_more,
        "X-Next-Offset": offsets,
        "X-Next-Page-Token": tokens,
    }
    return {k: draw(v) for k, v in values.items() if draw(st.integers(0, 3))}


# Sent as an int (the offset= parameter) or as text (extra_query={"offset": "20"}).
sent_offsets = st.none() | st.integers(0, 10**6) | st.integers(0, 10**6).map(str)


@settings(ROBUST, max_examples=400)
@for_all(st.data(), sent_offsets, st.frozensets(st.integers(0, 20)))
def test_offset_never_leads_back_to_a_page_seen(
    data: st.DataObject, sent: int | str | None, seen: frozenset[int]
) -> None:
    headers = data.draw(page_headers(sent))
    query = {} if sent is None else {"offset": sent}
    following = next_page_query("offset", headers, query, seen)
    if following is None:
        return
    assert headers["X-Has-More"].strip().lower() == "true"
    assert set(following) == {"offset"} and type(following["offset"]) is int
    assert following["offset"] > 0 and following["offset"] not in seen
    assert following["offset"] != int(sent or 0)


@settings(ROBUST, max_examples=100)
@for_all(st.lists(st.integers(0, 12), min_size=1, max_size=40))
def test_a_walk_ends_whatever_offsets_the_server_answers(answers: list[int]) -> None:
    """However a server's X-Next-Offset jumps about, a walk fetches each offset once."""
    seen: frozenset[int] = frozenset({0})
    sent: dict[str, Any] = {}
    fetched = [0]
    for answer in answers:
        headers = {"X-Has-More": "true", "X-Next-Offset": str(answer)}
        following = next_page_query("offset", headers, sent, seen)
        if following is None:
            break
        sent = following
        seen |= {following["offset"]}
        fetched.append(following["offset"])
    assert len(fetched) == len(set(fetched)) <= 13


@settings(ROBUST, max_examples=250)
@for_all(st.data(), st.none() | text)
def test_page_token_never_repeats_the_sent_one(data: st.DataObject, sent: str | None) -> None:
    headers = data.draw(page_headers(sent))
    query = {} if sent is None else {"page_token": sent}
    following = next_page_query("page_token", headers, query)
    if following is None:
        return
    assert headers["X-Has-More"].strip().lower() == "true"
    assert set(following) == {"page_token"}
    assert following["page_token"] and following["page_token"] != sent


@settings(ROBUST)
@for_all(page_headers(), st.sampled_from(["offset", "page_token", None]))
def test_missing_or_false_has_more_ends(headers: dict[str, str], kind: str | None) -> None:
    if headers.get("X-Has-More", "").strip().lower() != "true":
        assert next_page_query(kind, headers, {}) is None


@pytest.mark.parametrize(
    ("kind", "headers", "sent", "expected"),
    [
        ("offset", {"X-Has-More": "true", "X-Next-Offset": "20"}, {"offset": 10}, {"offset": 20}),
        ("offset", {"X-Has-More": "true", "X-Next-Offset": "20"}, {}, {"offset": 20}),
        (None, {"X-Has-More": "true", "X-Next-Offset": "5"}, {}, {"offset": 5}),
        ("offset", {"X-Has-More": "false", "X-Next-Offset": "20"}, {}, None),
        ("offset", {"X-Next-Offset": "20"}, {}, None),
        ("offset", {"X-Has-More": "true"}, {}, None),
        ("offset", {"X-Has-More": "true", "X-Next-Offset": "10"}, {"offset": 10}, None),
        # Newest-first cursors move backwards: as the official pages, only a repeat ends.
        ("offset", {"X-Has-More": "true", "X-Next-Offset": "5"}, {"offset": 10}, {"offset": 5}),
        ("offset", {"X-Has-More": "true", "X-Next-Offset": "10"}, {"offset": "10"}, None),
        ("offset", {"X-Has-More": "true", "X-Next-Offset": "abc"}, {}, None),
        ("offset", {"X-Has-More": "true", "X-Next-Offset": "-1"}, {}, None),
        ("offset", {"X-Has-More": "true", "X-Next-Offset": "0"}, {}, None),
        ("page_token", {"X-Has-More": "true", "X-Next-Page-Token": "t2"}, {}, {"page_token": "t2"}),
        (
            "page_token",
            {"X-Has-More": "true", "X-Next-Page-Token": "t1"},
            {"page_token": "t1"},
            None,
        ),
        ("page_token", {"X-Has-More": "true", "X-Next-Page-Token": " "}, {}, None),
        ("page_token", {"X-Has-More": "true"}, {}, None),
    ],
)
def test_next_page_by_example(
    kind: str | None, headers: dict[str, str], sent: dict[str, Any], expected: Any
) -> None:
    assert next_page_query(kind, headers, sent) == expected
