"""Tests for portofcall_xmpp.jsonio: the service's JSON in (requests) and out (answers)."""

from __future__ import annotations

import json
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portofcall_xmpp import jsonio
from portofcall_xmpp.stream import Contact


def standard(obj) -> bytes:
    """What the standard library makes of C{obj} (compact, UTF-8, not ASCII-escaped)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Point(NamedTuple):
    x: int
    y: str


# -- dumps


def test_non_ascii_is_utf8():
    """Non-ASCII text is written as UTF-8, never as \\u escapes."""
    obj = {"name": "B\xfccher \u20ac \U0001f600", "\xe9": ["\u2028"]}
    data = jsonio.dumps(obj)
    assert data == standard(obj)
    assert b"\\u" not in data
    assert "B\xfccher \u20ac \U0001f600".encode() in data
    assert json.loads(data) == obj


def test_compact():
    """The answer is compact JSON (no spaces), as the standard library's with separators."""
    obj = {"success": True, "port": 5222, "features": ["a", "b"], "x": None, "f": 1.5}
    expected = b'{"success":true,"port":5222,"features":["a","b"],"x":null,"f":1.5}'
    assert jsonio.dumps(obj) == standard(obj) == expected


@pytest.mark.parametrize(
    "obj",
    [
        10**30,
        -(10**30),
        2**64,
        -(2**63) - 1,
        {"big": 2**64, "text": "\xe9"},
        [1, [2, [10**20]]],
    ],
)
def test_integers_beyond_64_bits(obj):
    """Integers orjson cannot write go through the standard library: exact, UTF-8."""
    data = jsonio.dumps(obj)
    assert data == standard(obj)
    assert json.loads(data) == obj


def test_integers_at_64_bits():
    """The largest integers orjson writes itself are exact too."""
    for n in (2**63 - 1, -(2**63), 2**64 - 1):
        assert json.loads(jsonio.dumps({"n": n})) == {"n": n}


@pytest.mark.parametrize(
    "obj, expected",
    [
        (Point(1, "\xe9"), [1, "\xe9"]),
        ({"p": Point(2, "b")}, {"p": [2, "b"]}),
    ],
)  # fmt: skip
def test_tuple_subclasses(obj, expected):
    """A tuple subclass (a NamedTuple) is written as the array it is, in UTF-8."""
    data = jsonio.dumps(obj)
    assert data == standard(obj)
    assert json.loads(data) == expected
    assert b"\\u" not in data


def test_contacts_are_their_json_objects():
    """A roster contact (a dict subclass with a tuple of groups) is written as its object."""
    obj = {"c": [Contact(jid="b@x", name="\U0001f600", subscription="both", ask=None,
                         groups=("G", "\xe9"))]}  # fmt: skip
    data = jsonio.dumps(obj)
    assert json.loads(data) == {"c": [{"jid": "b@x", "name": "\U0001f600",
                                       "subscription": "both", "ask": None,
                                       "groups": ["G", "\xe9"]}]}  # fmt: skip
    assert b"\\u" not in data


def test_non_string_keys():
    """Keys orjson refuses (integers) are written as the standard library writes them."""
    obj = {1: "a", "b": 2}
    assert jsonio.dumps(obj) == standard(obj) == b'{"1":"a","b":2}'


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(st.characters(blacklist_categories=("Cs",))),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=5), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_round_trip(obj):
    """Whatever an answer holds comes back the same through loads, and as the standard JSON."""
    data = jsonio.dumps(obj)
    assert jsonio.loads(data) == obj
    assert json.loads(data) == obj


# -- loads


def test_loads():
    """A JSON text's value; UTF-8 text and escapes (a surrogate pair) are read."""
    assert jsonio.loads(b'{"host":"b\xc3\xbccher.example","n":[1,2.5,true,null]}') == {
        "host": "b\xfccher.example",
        "n": [1, 2.5, True, None],
    }
    assert jsonio.loads(b'"\\ud83d\\ude00 \\u00e9"') == "\U0001f600 \xe9"


@pytest.mark.parametrize(
    "data",
    [
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b'{"port": NaN}',
        b'{"port": Infinity}',
        b'{"port": -Infinity}',
        b"[1, NaN]",
        b"1e400",
    ],
)
def test_non_finite_numbers_refused(data):
    """NaN and the infinities (written, or a number too large for a double) are not JSON."""
    with pytest.raises(ValueError):
        jsonio.loads(data)


@pytest.mark.parametrize(
    "data",
    [
        b'"\xff"',
        b'{"host": "\xc3"}',
        b'{"host": "\xc0\xaf"}',  # an overlong encoding
        b'{"host": "\xed\xa0\x80"}',  # a surrogate, encoded
        b"\xef\xbb\xbf{}",  # a byte order mark
    ],
)
def test_invalid_utf8_refused(data):
    """Bytes that are not UTF-8 are not JSON here."""
    with pytest.raises(ValueError):
        jsonio.loads(data)


@pytest.mark.parametrize(
    "data",
    [b'"\\ud800"', b'"\\udc00"', b'{"host": "a\\ud800b"}', b'"\\ude00\\ud83d"'],
)
def test_lone_surrogate_escapes_refused(data):
    """An escape of an unpaired surrogate (no text can hold it) is refused."""
    with pytest.raises(ValueError):
        jsonio.loads(data)


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b"[" * 100000,
    ],
)
def test_deep_nesting_refused(data):
    """Input nested thousands of levels deep is refused (ValueError), not a crash."""
    with pytest.raises(ValueError):
        jsonio.loads(data)


def test_moderate_nesting_read():
    """Nesting a hundred levels deep is read."""
    value = jsonio.loads(b"[" * 100 + b"]" * 100)
    for _ in range(99):
        (value,) = value
    assert value == []


@pytest.mark.parametrize("data", [b"", b"{", b"{host:1}", b"{'a':1}", b"[1,]", b"1 2"])
def test_not_json_refused(data):
    """What is not JSON raises ValueError."""
    with pytest.raises(ValueError):
        jsonio.loads(data)


def test_integers_beyond_64_bits_read():
    """
    An integer beyond 64 bits is read as a number of the same magnitude (orjson
    reads it as a float): never a value inside any integer field's range.
    """
    for text, value in ((b"1" + b"0" * 30, 10**30), (b"-" + b"9" * 25, -(10**25))):
        got = jsonio.loads(b'{"port": %s}' % text)["port"]
        assert got == pytest.approx(value)
        assert abs(got) > 2**64
