"""The Prosody fixture itself: it starts, it registers, it seeds rosters.

These talk XMPP with a tiny blocking client (plain sockets) so that they
check the fixture, not the service under test.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET

import pytest

try:
    from prosody import lua_string
except ModuleNotFoundError:  # importlib import mode: conftest put tests/ on sys.path late
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from prosody import lua_string

STREAM_NS = "http://etherx.jabber.org/streams"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
ROSTER_NS = "jabber:iq:roster"


class _Client:
    """Blocking, just-enough XMPP: header, features, PLAIN, bind, one iq."""

    def __init__(self, host: str, port: int, domain: str) -> None:
        self.domain = domain
        self.sock = socket.create_connection((host, port), timeout=10)
        self.header: ET.Element | None = None

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

    def login(self, user: str, password: str) -> str:
        """PLAIN, stream restart, bind; returns the bound JID."""
        self.open()
        payload = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.sock.sendall(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{payload}</auth>".encode())
        reply = self.next()
        assert reply.tag == f"{{{SASL_NS}}}success", ET.tostring(reply)
        self.open()
        bind = self.iq(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            "<resource>fixture-test</resource></bind></iq>"
        )
        return bind.findtext(".//{urn:ietf:params:xml:ns:xmpp-bind}jid")

    def iq(self, xml: str) -> ET.Element:
        self.sock.sendall(xml.encode())
        while True:
            elem = self.next()
            if elem.tag == "{jabber:client}iq":
                return elem

    def roster(self) -> list[dict[str, object]]:
        result = self.iq(f"<iq type='get' id='r1'><query xmlns='{ROSTER_NS}'/></iq>")
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
        try:
            self.sock.sendall(b"</stream:stream>")
        finally:
            self.sock.close()


def _normalised(items):
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


def _roster_of(prosody, user: str) -> list[dict[str, object]]:
    client = _Client(prosody.host, prosody.port, prosody.domain)
    try:
        assert client.login(user, prosody.users[user]) == f"{user}@{prosody.domain}/fixture-test"
        return client.roster()
    finally:
        client.close()


def test_c2s_port_serves_the_localhost_domain(prosody):
    """The c2s port on 127.0.0.1 answers a stream to 'localhost' with
    PLAIN, SCRAM-SHA-1 and SCRAM-SHA-256 offered over plaintext."""
    client = _Client(prosody.host, prosody.port, prosody.domain)
    try:
        features = client.open()
        assert client.header.get("from") == "localhost"
        mechanisms = [m.text for m in features.iter(f"{{{SASL_NS}}}mechanism")]
        # Prosody lists mechanisms in (randomised) hash order.
        assert sorted(mechanisms) == ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"]
    finally:
        client.close()


def test_hashed_domain_offers_scram_only(prosody):
    """hashed.localhost (internal_hashed) offers SCRAM-SHA-1 and nothing else."""
    client = _Client(prosody.host, prosody.port, prosody.hashed_domain)
    try:
        features = client.open()
        assert client.header.get("from") == "hashed.localhost"
        assert [m.text for m in features.iter(f"{{{SASL_NS}}}mechanism")] == ["SCRAM-SHA-1"]
    finally:
        client.close()


def test_registered_user_can_log_in_while_server_runs(prosody):
    """prosodyctl register works against the running server; the new account
    logs in with PLAIN at once and starts with an empty roster."""
    account = prosody.new_user("fixture")
    assert prosody.server.user_exists(account.user, account.domain)
    client = _Client(prosody.host, prosody.port, account.domain)
    try:
        assert client.login(account.user, account.password) == f"{account.jid}/fixture-test"
        assert client.roster() == []
    finally:
        client.close()


def test_seeded_roster_comes_back_from_prosody(prosody):
    """alice's roster, written as a Prosody storage file, is served whole:
    names with quotes/&/</non-ASCII, missing names, ask, every group."""
    assert _normalised(_roster_of(prosody, "alice")) == _normalised(prosody.rosters["alice"])


def test_ten_thousand_item_roster_is_served(prosody):
    """big's 10,000-item roster file loads and comes back item for item."""
    roster = _roster_of(prosody, "big")
    assert len(roster) == 10_000
    assert _normalised(roster) == _normalised(prosody.rosters["big"])


@pytest.mark.skipif(not shutil.which("lua5.4") and not shutil.which("lua"), reason="no lua")
def test_lua_string_round_trips_through_lua():
    """lua_string() quotes anything (quotes, backslashes, controls, digits after
    an escape, non-ASCII) so that Lua reads back the same bytes."""
    tricky = 'O\'Brien "&" <Co> \\ \n\r\t\x00\x01' + "7\x7f é ☕ 𝄞 ]]"
    lua = shutil.which("lua5.4") or shutil.which("lua")
    out = subprocess.run(
        [lua, "-e", f"io.write({lua_string(tricky)})"], capture_output=True, check=True, timeout=10
    ).stdout
    assert out == tricky.encode("utf-8")
