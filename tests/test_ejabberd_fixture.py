"""The ejabberd fixture itself: it starts, it registers, it seeds rosters,
and it stops without leaving anything behind.

These talk XMPP with a tiny blocking client (plain sockets) so that they
check the fixture, not the service under test.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import xml.etree.ElementTree as ET

import pytest

try:
    from ejabberd import EjabberdServer, find_ejabberd, patch_ejabberdctl, yaml_dump
except ModuleNotFoundError:  # importlib import mode: conftest put tests/ on sys.path late
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ejabberd import EjabberdServer, find_ejabberd, patch_ejabberdctl, yaml_dump

STREAM_NS = "http://etherx.jabber.org/streams"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
ROSTER_NS = "jabber:iq:roster"


class _Client:
    """Blocking, just-enough XMPP: header, features, PLAIN, bind, stanzas."""

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

    def auth_plain(self, user: str, password: str) -> ET.Element:
        """Send SASL PLAIN; return ``<success/>`` or ``<failure/>``."""
        payload = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.sock.sendall(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{payload}</auth>".encode())
        return self.next()

    def bind(self, resource: str = "fixture-test") -> ET.Element:
        return self.stanza(
            f"<iq type='set' id='bind1'><bind xmlns='{BIND_NS}'>"
            f"<resource>{resource}</resource></bind></iq>",
            "iq",
        )

    def login(self, user: str, password: str) -> str:
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
        try:
            self.sock.sendall(b"</stream:stream>")
        except OSError:
            pass
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


@pytest.fixture
def client(ejabberd):
    c = _Client(ejabberd.host, ejabberd.port, ejabberd.domain)
    try:
        yield c
    finally:
        c.close()


def _mechanisms(features: ET.Element) -> set[str]:
    return {m.text for m in features.iter(f"{{{SASL_NS}}}mechanism")}


# --------------------------------------------------------------------------
# Against the shared, seeded server


def test_c2s_port_accepts_connections(ejabberd):
    """The c2s port on 127.0.0.1 accepts a TCP connection."""
    assert ejabberd.host == "127.0.0.1"
    with socket.create_connection((ejabberd.host, ejabberd.port), timeout=5):
        pass


def test_stream_features_offer_plain_without_tls(client, ejabberd):
    """A stream to 'localhost' is answered from 'localhost' with features that
    offer SASL PLAIN and SCRAM over plaintext, and no STARTTLS (no certs)."""
    features = client.open()
    assert client.header is not None and client.header.get("from") == ejabberd.domain
    assert features.tag == f"{{{STREAM_NS}}}features"
    # ejabberd 23.01, auth_password_format: plain, DIGEST-MD5/X-OAUTH2 disabled.
    assert _mechanisms(features) == {"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"}
    assert features.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls") is None


def test_plain_auth_succeeds_for_alice(client, ejabberd):
    """SASL PLAIN with alice's password gets <success/>."""
    client.open()
    reply = client.auth_plain("alice", ejabberd.users["alice"])
    assert reply.tag == f"{{{SASL_NS}}}success", ET.tostring(reply)


def test_plain_auth_fails_for_a_wrong_password(client):
    """A wrong password gets <failure><not-authorized/>...</failure>."""
    client.open()
    reply = client.auth_plain("alice", "not-the-password")
    assert reply.tag == f"{{{SASL_NS}}}failure"
    assert reply.find(f"{{{SASL_NS}}}not-authorized") is not None


def test_bind_after_auth(client, ejabberd):
    """After auth the restarted stream offers bind (and sm, csi); binding a
    resource returns the full JID."""
    client.open()
    assert client.auth_plain("bob", ejabberd.users["bob"]).tag == f"{{{SASL_NS}}}success"
    features = client.open()
    assert features.find(f"{{{BIND_NS}}}bind") is not None
    assert features.find("{urn:xmpp:sm:3}sm") is not None
    assert features.find("{urn:xmpp:csi:0}csi") is not None
    result = client.bind("fixture-test")
    assert result.get("type") == "result"
    assert result.findtext(f".//{{{BIND_NS}}}jid") == "bob@localhost/fixture-test"


def test_roster_contains_the_seeded_items_with_groups(client, ejabberd):
    """alice's roster has exactly the seeded contacts, names, subscriptions
    and groups (order is not guaranteed)."""
    assert client.login("alice", ejabberd.users["alice"]) == "alice@localhost/fixture-test"
    assert _normalised(client.roster()) == _normalised(ejabberd.rosters["alice"])


def test_ejabberdctl_get_roster_agrees(ejabberd):
    """ejabberdctl get_roster (parsed) shows the same items as the seed."""
    roster = ejabberd.server.get_roster("alice", ejabberd.domain)
    assert _normalised(roster) == _normalised(ejabberd.rosters["alice"])


def test_message_to_a_nonexistent_user_bounces(client, ejabberd):
    """A message to an unknown local user comes back as type='error' with
    <service-unavailable/> (from the unknown JID)."""
    client.login("alice", ejabberd.users["alice"])
    reply = client.stanza(
        "<message to='nobody@localhost' id='m1' type='chat'><body>hi</body></message>",
        "message",
    )
    assert reply.get("type") == "error" and reply.get("id") == "m1"
    assert reply.get("from") == "nobody@localhost"
    error = reply.find("{jabber:client}error")
    assert error is not None and error.get("type") == "cancel"
    assert error.find(f"{{{STANZAS_NS}}}service-unavailable") is not None


def test_new_user_can_log_in_with_its_roster(ejabberd):
    """new_user() registers a fresh account (and seeds its roster)."""
    account = ejabberd.new_user(
        "fix",
        roster=[{"jid": "alice@localhost", "name": "A", "subscription": "to", "groups": ["X"]}],
    )
    c = _Client(ejabberd.host, ejabberd.port, ejabberd.domain)
    try:
        assert c.login(account.user, account.password) == f"{account.jid}/fixture-test"
        assert c.roster() == [
            {"jid": "alice@localhost", "name": "A", "subscription": "to", "ask": None,
             "groups": ["X"]}
        ]  # fmt: skip
    finally:
        c.close()


def test_register_twice_resets_the_password(ejabberd):
    """register() on an existing account changes its password."""
    account = ejabberd.new_user("re")
    ejabberd.server.register(account.user, account.domain, "second-password")
    c = _Client(ejabberd.host, ejabberd.port, ejabberd.domain)
    try:
        c.open()
        assert c.auth_plain(account.user, "second-password").tag == f"{{{SASL_NS}}}success"
    finally:
        c.close()


# --------------------------------------------------------------------------
# A private server: SCRAM storage, a second host, and a clean stop


def _processes_mentioning(text: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", text], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def test_scram_server_with_two_hosts_stops_cleanly(tmp_path, ejabberd_installed):
    """password_format='scram' offers PLAIN and SCRAM-SHA-1 only, PLAIN still
    logs in, a second host is served, and stop() leaves no process or port."""
    server = EjabberdServer(tmp_path, hosts=("localhost", "second.localhost"),
                            password_format="scram")  # fmt: skip
    with server:
        server.register("sam", "second.localhost", "sam-pw")
        assert _processes_mentioning(server.node), "ejabberd should be running"
        c = _Client(server.host, server.c2s_port, "second.localhost")
        try:
            assert _mechanisms(c.open()) == {"PLAIN", "SCRAM-SHA-1"}
            assert c.auth_plain("sam", "sam-pw").tag == f"{{{SASL_NS}}}success"
        finally:
            c.close()
        pid = server.process.pid
    assert not server.running
    assert _processes_mentioning(server.node) == []
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    for port in (server.c2s_port, server.dist_port):
        with pytest.raises(OSError):
            socket.create_connection((server.host, port), timeout=1).close()


# --------------------------------------------------------------------------
# No server needed


def test_config_tls_hook(tmp_path):
    """certfiles + starttls + direct_tls produce the listener options another
    test can rely on; TLS options without certfiles are refused."""
    server = EjabberdServer(tmp_path, certfiles=["/x/cert.pem"], starttls=True,
                            starttls_required=True, direct_tls=True)  # fmt: skip
    server.c2s_port, server.c2s_tls_port = 5, 6
    config = server.config()
    assert config["certfiles"] == ["/x/cert.pem"]
    c2s, tls = config["listen"]
    assert (c2s["port"], c2s["starttls"], c2s["starttls_required"]) == (5, True, True)
    assert (tls["port"], tls["tls"], tls["ip"]) == (6, True, "127.0.0.1")
    with pytest.raises(ValueError):
        EjabberdServer(tmp_path, starttls=True).config()


def test_yaml_dump_quotes_strings():
    """Strings are double-quoted (so 'no', '*', ':' and non-ASCII survive);
    keys only when needed (a YAML 1.1 boolean word such as 'n' is)."""
    text = yaml_dump({"a b": ["no", "*", {"k": "x: y"}], "n": 1, "t": True, "e": {}, "u": "Zoë"})
    assert text == '"a b":\n  - "no"\n  - "*"\n  - k: "x: y"\n"n": 1\nt: true\ne: {}\nu: "Zoë"\n'


def test_add_rosteritem_validates(tmp_path):
    """Bad subscriptions and ';' in a group name are refused before ejabberdctl
    runs (ejabberd would store them verbatim / split them)."""
    server = EjabberdServer(tmp_path)
    with pytest.raises(ValueError):
        server.add_rosteritem("a", "localhost", "b", "localhost", "B", "G", "bogus")
    with pytest.raises(ValueError):
        server.add_rosteritem("a", "localhost", "b", "localhost", "B", ["G;H"], "both")
    with pytest.raises(ValueError):
        server.add_rosteritem("a", "elsewhere", "b", "localhost", "B", [], "both")


def test_patched_ejabberdctl_runs_as_current_user(ejabberd_installed):
    """The private ejabberdctl copy has INSTALLUSER emptied and, for the
    stock script, a foreground that execs erl."""
    assert ejabberd_installed == find_ejabberd()
    with open(ejabberd_installed, encoding="utf-8", errors="surrogateescape") as f:
        script, execs = patch_ejabberdctl(f.read())
    assert "\nINSTALLUSER=\n" in script
    assert "INSTALLUSER=ejabberd" not in script
    assert execs
