"""The ejabberd fixture itself: it starts, it registers, it seeds rosters,
and it stops without leaving anything behind.

These talk XMPP with a tiny blocking client (plain sockets) so that they
check the fixture, not the service under test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import xml.etree.ElementTree as ET

import pytest
from ejabberd import EjabberdServer, find_ejabberd, patch_ejabberdctl, yaml_dump
from xmpp_blocking import (
    BIND_NS,
    SASL_NS,
    STANZAS_NS,
    STREAM_NS,
    BlockingClient,
    mechanisms,
    normalised_roster,
)


@pytest.fixture
def client(ejabberd):
    with BlockingClient(ejabberd.host, ejabberd.port, ejabberd.domain) as c:
        yield c


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
    assert set(mechanisms(features)) == {"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"}
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
    assert normalised_roster(client.roster()) == normalised_roster(ejabberd.rosters["alice"])


def test_ejabberdctl_get_roster_agrees(ejabberd):
    """ejabberdctl get_roster (parsed) shows the same items as the seed."""
    roster = ejabberd.server.get_roster("alice", ejabberd.domain)
    assert normalised_roster(roster) == normalised_roster(ejabberd.rosters["alice"])


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
    with BlockingClient(ejabberd.host, ejabberd.port, ejabberd.domain) as c:
        assert c.login(account.user, account.password) == f"{account.jid}/fixture-test"
        assert c.roster() == [
            {"jid": "alice@localhost", "name": "A", "subscription": "to", "ask": None,
             "groups": ["X"]}
        ]  # fmt: skip


def test_register_twice_resets_the_password(ejabberd):
    """register() on an existing account changes its password."""
    account = ejabberd.new_user("re")
    ejabberd.server.register(account.user, account.domain, "second-password")
    with BlockingClient(ejabberd.host, ejabberd.port, ejabberd.domain) as c:
        c.open()
        assert c.auth_plain(account.user, "second-password").tag == f"{{{SASL_NS}}}success"


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
        with BlockingClient(server.host, server.c2s_port, "second.localhost") as c:
            assert set(mechanisms(c.open())) == {"PLAIN", "SCRAM-SHA-1"}
            assert c.auth_plain("sam", "sam-pw").tag == f"{{{SASL_NS}}}success"
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
