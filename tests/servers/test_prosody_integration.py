"""
End to end: HTTP requests through treq to the service on a real listening
port, probing a real Prosody that the tests started (tests/support/prosody.py).
"""

import base64
import json
import socket

import pytest
import pytest_twisted
import treq

from portofcall_xmpp.saslstep import WARN_PLAINTEXT_CREDENTIALS, WARN_SCRAM_WITHOUT_TLS
from portofcall_xmpp.web import MAX_BODY_BYTES

AUTH_PHASES = [
    "stream_opened",
    "sasl_plain_sent",
    "authenticated",
    "stream_restarted",
    "resource_bound",
    "session_established",
]


async def post(service, path, body, **kw):
    response = await treq.post(service.url(path), json=body, **kw)
    return response.code, json.loads(await response.content())


def auth(prosody, user="alice", **extra):
    return {
        "host": prosody.host,
        "port": prosody.port,
        "domain": prosody.domain,
        "username": user,
        "password": prosody.users[user],
        **extra,
    }


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest_twisted.ensureDeferred
async def test_connect(prosody, service):
    """/connect reports Prosody's header and features."""
    code, body = await post(
        service,
        "/api/xmpp/connect",
        {"host": prosody.host, "port": prosody.port, "domain": "localhost"},
    )
    assert code == 200, body
    assert body["success"] is True
    assert body["message"] == "XMPP server reachable"
    assert body["serverFrom"] == "localhost"
    assert body["xmppVersion"] == "1.0"
    assert body["streamId"]
    assert sorted(body["saslMechanisms"]) == ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"]
    assert body["compressionMethods"] == []
    assert body["tls"] == {"available": False, "required": False, "negotiated": False}
    assert body["featureNamespaces"] == ["urn:ietf:params:xml:ns:xmpp-sasl"]
    assert body["features"] == []
    assert body["raw"].startswith("<?xml version='1.0'?><stream:stream")
    assert body["raw"].endswith("</stream:features>")
    assert isinstance(body["elapsedMs"], int)
    assert "phases" not in body


@pytest_twisted.ensureDeferred
async def test_connect_hashed_vhost(prosody, service):
    """The domain field selects the virtual host: hashed.localhost offers SCRAM only."""
    code, body = await post(
        service,
        "/api/xmpp/connect",
        {"host": prosody.host, "port": prosody.port, "domain": prosody.hashed_domain},
    )
    assert body["saslMechanisms"] == ["SCRAM-SHA-1"]
    assert body["serverFrom"] == prosody.hashed_domain


@pytest_twisted.ensureDeferred
async def test_connect_unknown_domain(prosody, service):
    """A domain the server does not serve: stream_error host-unknown, with its text."""
    code, body = await post(
        service,
        "/api/xmpp/connect",
        {"host": prosody.host, "port": prosody.port, "domain": "nowhere.example"},
    )
    assert code == 200
    assert body["success"] is False
    assert body["errorType"] == "stream_error"
    assert body["error"] == "XMPP stream error: host-unknown"
    assert body["streamErrorText"] == "This server does not serve nowhere.example"
    assert "<stream:stream" in body["raw"]
    assert body["host"] == prosody.host and body["port"] == prosody.port


@pytest_twisted.ensureDeferred
async def test_connect_refused(service):
    """A port nobody listens on: errorType connect."""
    code, body = await post(
        service, "/api/xmpp/connect", {"host": "127.0.0.1", "port": closed_port()}
    )
    assert code == 200
    assert body["errorType"] == "connect"
    assert "refused" in body["error"].lower()


@pytest_twisted.ensureDeferred
async def test_blocked_without_allow_private(prosody, strict_service):
    """Without --allow-private, loopback in any spelling is 403 blocked."""
    for host in ("127.0.0.1", "localhost", "2130706433", "127.1", "0x7f.1", "::ffff:127.0.0.1"):
        code, body = await post(
            strict_service, "/api/xmpp/connect", {"host": host, "port": prosody.port}
        )
        assert code == 403, (host, body)
        assert body["blocked"] is True
        assert body["success"] is False


@pytest_twisted.ensureDeferred
async def test_login(prosody, service):
    """/login (PLAIN in clear, as tls: "none" allows) walks every phase and reports the JID."""
    code, body = await post(
        service, "/api/xmpp/login", auth(prosody, mechanism="PLAIN", tls="none")
    )
    assert code == 200, body
    assert body["success"] is True, body
    assert body["message"] == "XMPP login successful"
    assert body["jid"] == "alice@localhost/portofcall"
    assert body["phases"] == AUTH_PHASES
    assert list(body["timings"]) == AUTH_PHASES
    assert all(isinstance(v, int) for v in body["timings"].values())
    assert body["mechanism"] == "PLAIN"
    assert sorted(body["saslMechanisms"]) == ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"]
    assert set(body["features"]) == {
        "roster-versioning",
        "resource-binding",
        "session",
        "client-state-indication",
        "stream-management",
    }
    assert body["warnings"] == [WARN_PLAINTEXT_CREDENTIALS]
    assert body["domain"] == "localhost"


@pytest_twisted.ensureDeferred
async def test_login_plain_refused_in_clear(prosody, service):
    """
    tls: "auto" (the default) and a server without STARTTLS: PLAIN is not
    sent; errorType tls, the error saying that tls: "none" allows it.
    """
    for mode in ("auto", None):
        request = auth(prosody, mechanism="PLAIN", transcript=True)
        if mode is not None:
            request["tls"] = mode
        code, body = await post(service, "/api/xmpp/login", request)
        assert code == 200
        assert body["success"] is False
        assert body["errorType"] == "tls", body
        assert body["error"] == (
            "SASL PLAIN not sent: the server offers no STARTTLS, and PLAIN would send the "
            'password in clear (tls: "none" allows it)'
        )
        assert body["phases"] == ["stream_opened"]
        assert not any("<auth" in entry["xml"] for entry in body["transcript"])


@pytest_twisted.ensureDeferred
async def test_login_default_mechanism(prosody, service):
    """
    Without a mechanism the strongest offered is chosen: SCRAM-SHA-256 on
    Prosody, over plaintext with tls: "auto", with the warning that says so.
    """
    code, body = await post(service, "/api/xmpp/login", auth(prosody, resource="dflt"))
    assert body["success"] is True, body
    assert body["mechanism"] == "SCRAM-SHA-256"
    assert body["channelBinding"] is None
    assert body["phases"][1] == "sasl_scram_sha_256_sent"
    assert body["tls"]["negotiated"] is False
    assert body["warnings"] == [WARN_SCRAM_WITHOUT_TLS]
    assert body["jid"] == "alice@localhost/dflt"


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
@pytest_twisted.ensureDeferred
async def test_login_scram(prosody, service, mechanism):
    """Each SCRAM mechanism Prosody offers logs in, the server signature verified."""
    request = auth(prosody, mechanism=mechanism, resource=mechanism)
    code, body = await post(service, "/api/xmpp/login", request)
    assert body["success"] is True, body
    assert body["mechanism"] == mechanism
    assert body["phases"][1] == f"sasl_{mechanism.lower().replace('-', '_')}_sent"


@pytest_twisted.ensureDeferred
async def test_login_scram_wrong_password(prosody, service):
    """A wrong password under SCRAM: sasl not-authorized."""
    request = {**auth(prosody, mechanism="SCRAM-SHA-256"), "password": "wrong-password"}
    code, body = await post(service, "/api/xmpp/login", request)
    assert body["errorType"] == "sasl"
    assert body["error"] == "SASL authentication failed: not-authorized"
    assert body["phases"] == ["stream_opened", "sasl_scram_sha_256_sent"]


@pytest_twisted.ensureDeferred
async def test_login_plus_needs_tls(prosody, service):
    """A -PLUS mechanism over plaintext cannot bind a channel: sasl, nothing sent."""
    code, body = await post(
        service, "/api/xmpp/login", auth(prosody, mechanism="SCRAM-SHA-256-PLUS")
    )
    assert body["errorType"] == "sasl"
    assert body["phases"] == ["stream_opened"]


@pytest_twisted.ensureDeferred
async def test_login_escaping_password(prosody, service):
    """A password with spaces, quotes, & and < works."""
    code, body = await post(
        service, "/api/xmpp/login", auth(prosody, "carol", mechanism="PLAIN", tls="none")
    )
    assert body["success"] is True, body
    assert body["jid"] == "carol@localhost/portofcall"


@pytest_twisted.ensureDeferred
async def test_login_wrong_password(prosody, service):
    """A wrong password: sasl not-authorized, with Prosody's text, phases so far."""
    request = {**auth(prosody, mechanism="PLAIN", tls="none"), "password": "wrong-password"}
    code, body = await post(service, "/api/xmpp/login", request)
    assert code == 200
    assert body["success"] is False
    assert body["errorType"] == "sasl"
    assert body["error"] == "SASL authentication failed: not-authorized"
    assert body["saslCondition"] == "not-authorized"
    assert "authentication credentials" in body["saslText"]
    assert body["phases"] == ["stream_opened", "sasl_plain_sent"]


@pytest_twisted.ensureDeferred
async def test_login_hashed_passwords(prosody, service):
    """A server that stores hashed passwords (SCRAM-SHA-1 only): SCRAM logs in."""
    request = {
        **auth(prosody),
        "domain": prosody.hashed_domain,
        "password": prosody.accounts[prosody.hashed_domain]["alice"],
    }
    code, body = await post(service, "/api/xmpp/login", request)
    assert body["success"] is True, body
    assert body["mechanism"] == "SCRAM-SHA-1"
    assert body["jid"] == "alice@hashed.localhost/portofcall"


@pytest_twisted.ensureDeferred
async def test_login_plain_not_offered(prosody, service):
    """PLAIN asked for where only SCRAM is offered: the reference wording."""
    request = {
        **auth(prosody, mechanism="PLAIN"),
        "domain": prosody.hashed_domain,
        "password": prosody.accounts[prosody.hashed_domain]["alice"],
    }
    code, body = await post(service, "/api/xmpp/login", request)
    assert body["errorType"] == "sasl"
    assert body["error"] == "SASL PLAIN not supported. Available: SCRAM-SHA-1"
    assert body["phases"] == ["stream_opened"]


@pytest_twisted.ensureDeferred
async def test_login_transcript_redacted(prosody, service):
    """A login transcript shows every step and never the credential."""
    code, body = await post(
        service, "/api/xmpp/login", auth(prosody, transcript=True, resource="t")
    )
    assert body["success"] is True
    text = json.dumps(body)
    secret = prosody.users["alice"]
    assert secret not in text
    assert base64.b64encode(b"\0alice\0" + secret.encode()).decode() not in text
    xml = [entry["xml"] for entry in body["transcript"]]
    assert any("<auth" in x and "[redacted]" in x for x in xml)
    assert any("<jid>alice@localhost/t</jid>" in x for x in xml)
    assert {entry["dir"] for entry in body["transcript"]} == {"in", "out"}


@pytest_twisted.ensureDeferred
async def test_roster(prosody, service):
    """/roster returns every contact with name, subscription, ask and all groups."""
    code, body = await post(
        service, "/api/xmpp/roster", auth(prosody, resource="roster", mechanism="PLAIN", tls="none")
    )
    assert body["success"] is True, body
    assert body["phases"] == AUTH_PHASES + ["roster_received"]
    roster = body["roster"]
    assert roster["total"] == len(prosody.rosters["alice"])
    assert roster["version"] == "1"
    got = {c["jid"]: c for c in roster["contacts"]}
    for item in prosody.rosters["alice"]:
        contact = got[item["jid"]]
        assert contact["name"] == item["name"]
        assert contact["subscription"] == item["subscription"]
        assert contact["ask"] == item["ask"]
        assert sorted(contact["groups"]) == sorted(item["groups"])


@pytest_twisted.ensureDeferred
async def test_big_roster(prosody, service):
    """A 10,000-item roster comes back whole."""
    request = auth(prosody, "big", timeout=60000, mechanism="PLAIN", tls="none")
    code, body = await post(service, "/api/xmpp/roster", request)
    assert body["success"] is True, body
    assert body["roster"]["total"] == 10000
    got = {c["jid"]: c for c in body["roster"]["contacts"]}
    for item in prosody.rosters["big"][::997]:
        assert sorted(got[item["jid"]]["groups"]) == sorted(item["groups"])
        assert got[item["jid"]]["name"] == item["name"]


@pytest_twisted.ensureDeferred
async def test_message_to_existing_user(prosody, service):
    """A message to an existing user is sent with no delivery error."""
    request = {
        **auth(prosody, resource="msg1", mechanism="PLAIN", tls="none"),
        "recipient": "bob@localhost",
        "message": "hi <&>",
    }
    code, body = await post(service, "/api/xmpp/message", {**request, "waitMs": 500})
    assert body["success"] is True, body
    assert body["phases"] == AUTH_PHASES + ["message_sent"]
    assert body["message"]["to"] == "bob@localhost"
    assert body["message"]["body"] == "hi <&>"
    assert body["message"]["id"].startswith("poc_")
    assert body["deliveryError"] is None
    assert body["deliveryErrorCondition"] is None


@pytest_twisted.ensureDeferred
async def test_message_to_missing_user(prosody, service):
    """A message to a user that does not exist comes back as service-unavailable."""
    request = {**auth(prosody, resource="msg2"), "recipient": "nobody@localhost"}
    code, body = await post(service, "/api/xmpp/message", request)
    assert body["success"] is True, body
    assert body["deliveryErrorCondition"] == {
        "type": "cancel",
        "condition": "service-unavailable",
        "text": None,
    }
    assert "service-unavailable" in body["deliveryError"]


@pytest_twisted.ensureDeferred
async def test_request_rules_over_http(service):
    """415, 413 and 400 over a real connection."""
    response = await treq.post(service.url("/api/xmpp/connect"), data=b'{"host": "x"}')
    assert response.code == 415
    await response.content()
    response = await treq.post(
        service.url("/api/xmpp/connect"),
        data=b"{" + b" " * (MAX_BODY_BYTES + 10) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.code == 413
    await response.content()
    code, body = await post(service, "/api/xmpp/login", {"host": "localhost"})
    assert (code, body["error"]) == (400, "host, username, and password are required")


@pytest_twisted.ensureDeferred
async def test_health(service):
    """GET /api/health answers ok."""
    response = await treq.get(service.url("/api/health"))
    assert response.code == 200
    assert json.loads(await response.content())["status"] == "ok"


@pytest_twisted.ensureDeferred
async def test_credentials_never_leak(prosody, service):
    """
    Every auth flow, PLAIN and SCRAM, success and failure, with transcripts:
    the marker password appears in no response and no log line, plain or
    base64; the marker username appears in no log line.
    """
    from twisted.logger import globalLogPublisher

    account = prosody.new_user("markeruser", password="Marker-Pass-1234")
    events = []
    globalLogPublisher.addObserver(events.append)
    bodies = []
    try:
        for endpoint in ("login", "roster", "message"):
            for mechanism in ("PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"):
                for password in (account.password, account.password + "-wrong"):
                    request = {
                        "host": prosody.host,
                        "port": prosody.port,
                        "domain": prosody.domain,
                        "username": account.user,
                        "password": password,
                        "mechanism": mechanism,
                        "tls": "none",  # PLAIN in clear: the caller's choice (SPEC §2)
                        "resource": f"leak-{endpoint}-{mechanism}",
                        "transcript": True,
                        "recipient": "bob@localhost",
                        "waitMs": 0,
                    }
                    code, body = await post(service, "/api/xmpp/" + endpoint, request)
                    assert code == 200
                    assert body["success"] is (password == account.password), body
                    bodies.append(body)
    finally:
        globalLogPublisher.removeObserver(events.append)
    text = json.dumps(bodies)
    logs = repr(events)
    for secret in (account.password, account.password + "-wrong"):
        for form in (
            secret,
            base64.b64encode(secret.encode()).decode(),
            base64.b64encode(b"\0" + account.user.encode() + b"\0" + secret.encode()).decode(),
        ):
            assert form not in text
            assert form not in logs
    assert account.user not in logs
    assert text.count("[redacted]") >= 18
