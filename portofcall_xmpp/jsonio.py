"""
JSON in and out of the service, with C{orjson} (a maintained encoder
written in Rust, several times faster than the standard library's on the
service's answers; a 10,000-contact roster is encoded in a few
milliseconds).

What both produce is the same JSON the standard library would produce with
C{ensure_ascii=False}, encoded as UTF-8.  What orjson cannot encode (an
integer beyond 64 bits, a subclass of a container) goes through the
standard library instead.
"""

from __future__ import annotations

import json

import orjson

# orjson's nesting limit (1024 levels); deeper input is not valid JSON here.
_Decode = orjson.JSONDecodeError


def dumps(obj) -> bytes:
    """C{obj} as compact JSON in UTF-8."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def loads(data: bytes):
    """
    The value of the JSON text C{data}.

    An integer beyond 64 bits is read as a float (orjson's choice, where
    the standard library reads an int): every integer field of the API has
    a range far inside 64 bits, so either way the field refuses it, with
    the same message.

    @raise ValueError: not JSON (C{NaN} and C{Infinity} included, as a lone
        surrogate escape or invalid UTF-8), or nested too deep.
    """
    try:
        return orjson.loads(data)
    except _Decode as e:
        raise ValueError(str(e)) from e
