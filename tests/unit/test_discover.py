"""The host-meta parsers of XEP-0156 discovery (portofcall_xmpp.discover)."""

import json

import pytest
from hostmeta import jrd, xrd

from portofcall_xmpp.discover import Links, parse_jrd, parse_xrd
from portofcall_xmpp.errors import ProtocolViolation, TooLarge
from portofcall_xmpp.stream import Limits

WS = "wss://example.org/xmpp-websocket"
BOSH = "https://example.org/http-bind"


def test_xrd_links_in_order_without_repeats():
    """The XRD's WebSocket and BOSH links are read in order, each once."""
    body = xrd(websocket=[WS, "ws://example.org/ws", WS], bosh=[BOSH])
    assert parse_xrd(body) == Links((WS, "ws://example.org/ws"), (BOSH,))


def test_xrd_other_links_ignored():
    """Links of other relations, and links without href, are not alternative methods."""
    body = (
        b"<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>"
        b"<Link rel='lrdd' href='https://example.org/x'/>"
        b"<Link rel='urn:xmpp:alt-connections:websocket'/></XRD>"
    )
    assert parse_xrd(body) == Links()


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE XRD [<!ENTITY a "aaaa">]><XRD/>',
        b"<html><body>not found</body></html>",
        b"<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>",
        b"",
        b"<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'/><XRD/>",
    ],
)
def test_xrd_refused(body):
    """A DTD, another root element, a truncated or doubled document: ProtocolViolation."""
    with pytest.raises(ProtocolViolation):
        parse_xrd(body)


def test_xrd_element_cap():
    """An XRD larger than the element cap is refused as TooLarge."""
    body = xrd(websocket=[f"wss://example.org/{i}" for i in range(200)])
    with pytest.raises(TooLarge):
        parse_xrd(body, Limits(max_element_bytes=1024, max_stanza_bytes=1024))


def test_jrd_links():
    """The JSON document's links are read; entries that are not objects are skipped."""
    document = json.loads(jrd(websocket=[WS], bosh=[BOSH]))
    document["links"].append("junk")
    assert parse_jrd(json.dumps(document).encode()) == Links((WS,), (BOSH,))


@pytest.mark.parametrize("body", [b"{", b"[" * 100000, b"[]", b'{"links": 3}', b"\xff"])
def test_jrd_refused(body):
    """Not JSON, too deep, or no links array: ProtocolViolation."""
    with pytest.raises(ProtocolViolation):
        parse_jrd(body)
