"""A tiny blocking XMPP client over a plain socket, for checking the test
servers themselves (tests/servers/test_prosody_fixture.py, tests/servers/test_ejabberd_fixture.py)
without going through the service under test.

Just enough XMPP: stream header and features, SASL PLAIN, bind, stanzas,
the roster.  No TLS, no SCRAM, no error recovery; every read has a 10 s
socket timeout.
"""

from __future__ import annotations

import base64
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Any

STREAM_NS = "http://etherx.jabber.org/streams"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
ROSTER_NS = "jabber:iq:roster"


class BlockingClient:
    """Blocking, just-enough XMPP: header, features, PLAIN, bind, stanzas.

    Also a context manager that closes the stream and the socket.
    """

    def __init__(self, host: str, port: int, domain: str) -> None:
        self.domain = domain
        self.sock = socket.create_connection((host, port), timeout=10)
        #: The server's ``<stream:stream>`` of the current stream.
        self.header: ET.Element | None = None

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> ET.Element:
        """Send a stream header; return the server's ``<stream:features>``."""
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.sock.sendall(
            (
                "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                f"xmlns:stream='{STREAM_NS}' to='{self.domain}' version='1.0'>"
            ).encode()
        )
        return self.next()

    def next(self) -> ET.Element:
        """The next top-level element the server sends."""
        while True:
            for event, elem in self.parser.read_events():
                if event == "start":
                    self.depth += 1
                    if self.depth == 1:
                        self.header = elem
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        return elem
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the stream")
            self.parser.feed(data)

    def auth_plain(self, user: str, password: str) -> ET.Element:
        """Send SASL PLAIN; return ``<success/>`` or ``<failure/>``."""
        payload = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.sock.sendall(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{payload}</auth>".encode())
        return self.next()

    def bind(self, resource: str = "fixture-test") -> ET.Element:
        """Bind ``resource``; return the ``<iq/>`` reply."""
        return self.stanza(
            f"<iq type='set' id='bind1'><bind xmlns='{BIND_NS}'>"
            f"<resource>{resource}</resource></bind></iq>",
            "iq",
        )

    def login(self, user: str, password: str) -> str | None:
        """PLAIN, stream restart, bind; returns the bound JID."""
        self.open()
        reply = self.auth_plain(user, password)
        assert reply.tag == f"{{{SASL_NS}}}success", ET.tostring(reply)
        self.open()
        return self.bind().findtext(f".//{{{BIND_NS}}}jid")

    def stanza(self, xml: str, tag: str) -> ET.Element:
        """Send ``xml``; return the next top-level ``tag`` element."""
        self.sock.sendall(xml.encode())
        while True:
            elem = self.next()
            if elem.tag == f"{{jabber:client}}{tag}":
                return elem

    def roster(self) -> list[dict[str, object]]:
        """The roster as dicts (``jid``, ``name``, ``subscription``, ``ask``,
        sorted ``groups``), in the server's order."""
        result = self.stanza(f"<iq type='get' id='r1'><query xmlns='{ROSTER_NS}'/></iq>", "iq")
        assert result.get("type") == "result", ET.tostring(result)
        return [
            {
                "jid": item.get("jid"),
                "name": item.get("name"),
                "subscription": item.get("subscription", "none"),
                "ask": item.get("ask"),
                "groups": sorted(g.text or "" for g in item.findall(f"{{{ROSTER_NS}}}group")),
            }
            for item in result.iter(f"{{{ROSTER_NS}}}item")
        ]

    def close(self) -> None:
        """Close the stream (if the socket still works) and the socket."""
        try:
            self.sock.sendall(b"</stream:stream>")
        except OSError:
            pass
        finally:
            self.sock.close()


def mechanisms(features: ET.Element) -> list[str | None]:
    """The SASL mechanisms offered in ``<stream:features>``, in offer order."""
    return [m.text for m in features.iter(f"{{{SASL_NS}}}mechanism")]


def normalised_roster(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Roster items (as seeded, or as :meth:`BlockingClient.roster` returns
    them) in a comparable form: sorted by JID, groups sorted, "" names None."""
    return sorted(
        (
            {
                "jid": i["jid"],
                "name": i["name"] or None,
                "subscription": i["subscription"],
                "ask": i["ask"],
                "groups": sorted(i["groups"]),
            }
            for i in items
        ),
        key=lambda i: i["jid"],
    )
