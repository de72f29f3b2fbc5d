"""
TLS end to end: the service over HTTP against a real Prosody with
certificates from the test CA (STARTTLS optional, STARTTLS required, TLS 1.2
with SCRAM -PLUS, direct TLS, certificates that do not verify), and against a
recording STARTTLS server that proves no credential is written to a
connection whose certificate failed verification.
"""

import hashlib
import json

import pytest
import pytest_twisted
import treq
from certs import session_certs
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

AUTH_PHASES_TLS = [
    "stream_opened",
    "starttls_upgraded",
    "sasl_scram_sha_256_sent",
    "authenticated",
    "stream_restarted",
    "resource_bound",
    "session_established",
]


async def post(service, path, body):
    response = await treq.post(service.url(path), json=body)
    return response.code, json.loads(await response.content())


def target(prosody_tls, domain="localhost", **extra):
    return {"host": prosody_tls.host, "port": prosody_tls.port, "domain": domain, **extra}


def login_body(prosody_tls, domain="localhost", **extra):
    return target(prosody_tls, domain, username="alice", password=prosody_tls.password, **extra)


def fingerprint(cert):
    from cryptography.hazmat.primitives import hashes

    digest = cert.fingerprint(hashes.SHA256())
    return ":".join("%02X" % b for b in digest)


@pytest_twisted.ensureDeferred
async def test_connect_starttls_report(prosody_tls, tls_service):
    """/connect negotiates STARTTLS and reports protocol, cipher and the certificate."""
    code, body = await post(tls_service, "/api/xmpp/connect", target(prosody_tls))
    assert body["success"] is True, body
    assert body["features"] == ["starttls"]
    assert "urn:ietf:params:xml:ns:xmpp-tls" in body["featureNamespaces"]
    tls = body["tls"]
    assert (tls["available"], tls["required"], tls["negotiated"]) == (True, False, True)
    assert tls["protocol"] == "TLSv1.3"
    assert tls["cipher"]
    leaf = prosody_tls.certs.leaves["localhost"].cert
    cert = tls["certificate"]
    assert cert["subject"] == leaf.subject.rfc4514_string()
    assert cert["issuer"] == leaf.issuer.rfc4514_string()
    assert cert["subjectAltNames"] == ["DNS:localhost"]
    assert cert["notBefore"] == leaf.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert cert["notAfter"] == leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert cert["fingerprintSha256"] == fingerprint(leaf)
    assert (cert["verified"], cert["verifyError"], cert["matchesDomain"]) == (True, None, True)
    assert 363 <= cert["daysUntilExpiry"] <= 365
    assert sorted(tls["saslMechanisms"]) == ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"]


@pytest_twisted.ensureDeferred
async def test_connect_tls_none(prosody_tls, tls_service):
    """tls: none reports STARTTLS without negotiating it."""
    code, body = await post(tls_service, "/api/xmpp/connect", target(prosody_tls, tls="none"))
    assert body["tls"] == {"available": True, "required": False, "negotiated": False}


@pytest_twisted.ensureDeferred
async def test_connect_starttls_required(prosody_tls, tls_service):
    """A server requiring STARTTLS: required true, mechanisms only after TLS."""
    code, body = await post(
        tls_service, "/api/xmpp/connect", target(prosody_tls, "required.localhost")
    )
    assert body["success"] is True, body
    assert body["tls"]["required"] is True
    assert body["saslMechanisms"] == []
    assert "PLAIN" in body["tls"]["saslMechanisms"]
    assert body["tls"]["certificate"]["verified"] is True


@pytest.mark.parametrize(
    "domain, words",
    [("expired.localhost", "expired"), ("selfsigned.localhost", "self-signed")],
)
@pytest_twisted.ensureDeferred
async def test_connect_reports_bad_certificate(prosody_tls, tls_service, domain, words):
    """/connect only reports a certificate that does not verify, and says why."""
    code, body = await post(tls_service, "/api/xmpp/connect", target(prosody_tls, domain))
    assert body["success"] is True, body
    cert = body["tls"]["certificate"]
    assert cert["verified"] is False
    assert words in cert["verifyError"]
    assert cert["matchesDomain"] is True


@pytest_twisted.ensureDeferred
async def test_connect_direct_tls(prosody_tls, tls_service):
    """tls: direct (XEP-0368) negotiates TLS from the first byte."""
    request = {**target(prosody_tls), "port": prosody_tls.direct_port, "tls": "direct"}
    code, body = await post(tls_service, "/api/xmpp/connect", request)
    assert body["success"] is True, body
    tls = body["tls"]
    assert (tls["negotiated"], tls["direct"]) == (True, True)
    assert tls["certificate"]["verified"] is True
    assert "saslMechanisms" not in tls
    assert "PLAIN" in body["saslMechanisms"]
    assert "starttls" not in body["features"]


@pytest_twisted.ensureDeferred
async def test_connect_without_ca_file(prosody_tls, service):
    """A service that does not trust the test CA says so in verifyError."""
    code, body = await post(service, "/api/xmpp/connect", target(prosody_tls))
    cert = body["tls"]["certificate"]
    assert cert["verified"] is False
    assert "unable to get local issuer certificate" in cert["verifyError"]
    assert cert["matchesDomain"] is True


@pytest_twisted.ensureDeferred
async def test_login_starttls(prosody_tls, tls_service):
    """/login upgrades with STARTTLS, then authenticates; no plaintext warning."""
    code, body = await post(tls_service, "/api/xmpp/login", login_body(prosody_tls))
    assert body["success"] is True, body
    assert body["phases"] == AUTH_PHASES_TLS
    assert body["warnings"] == []
    assert body["tls"]["negotiated"] is True
    assert body["tls"]["certificate"]["verified"] is True
    assert body["jid"] == "alice@localhost/portofcall"


@pytest_twisted.ensureDeferred
async def test_login_plain_over_tls(prosody_tls, tls_service):
    """PLAIN over TLS carries no 'credentials sent without TLS' warning."""
    request = login_body(prosody_tls, mechanism="PLAIN", resource="plain-tls")
    code, body = await post(tls_service, "/api/xmpp/login", request)
    assert body["success"] is True, body
    assert body["warnings"] == []
    assert body["phases"][:3] == ["stream_opened", "starttls_upgraded", "sasl_plain_sent"]


@pytest_twisted.ensureDeferred
async def test_login_direct_tls(prosody_tls, tls_service):
    """A direct-TLS login starts with the tls_connected phase."""
    request = {**login_body(prosody_tls, resource="direct"), "port": prosody_tls.direct_port}
    request["tls"] = "direct"
    code, body = await post(tls_service, "/api/xmpp/login", request)
    assert body["success"] is True, body
    assert body["phases"][:2] == ["tls_connected", "stream_opened"]
    assert "starttls_upgraded" not in body["phases"]


@pytest_twisted.ensureDeferred
async def test_login_tls_required_offered(prosody_tls, tls_service):
    """tls: required on a server offering STARTTLS logs in over TLS."""
    request = login_body(prosody_tls, tls="required", resource="req")
    code, body = await post(tls_service, "/api/xmpp/login", request)
    assert body["success"] is True, body
    assert "starttls_upgraded" in body["phases"]


@pytest_twisted.ensureDeferred
async def test_login_tls_required_not_offered(prosody, service):
    """tls: required on a server without STARTTLS: errorType tls, no credential."""
    request = {
        "host": prosody.host,
        "port": prosody.port,
        "domain": "localhost",
        "username": "alice",
        "password": prosody.users["alice"],
        "tls": "required",
        "transcript": True,
    }
    code, body = await post(service, "/api/xmpp/login", request)
    assert body["errorType"] == "tls"
    assert "does not offer STARTTLS" in body["error"]
    assert not any("<auth" in e["xml"] for e in body["transcript"] if e["dir"] == "out")


@pytest_twisted.ensureDeferred
async def test_login_server_requires_tls(prosody_tls, tls_service):
    """A server that requires TLS: auto logs in; none finds no mechanism offered."""
    code, body = await post(
        tls_service, "/api/xmpp/login", login_body(prosody_tls, "required.localhost")
    )
    assert body["success"] is True, body
    code, body = await post(
        tls_service,
        "/api/xmpp/login",
        login_body(prosody_tls, "required.localhost", tls="none", resource="none"),
    )
    assert body["errorType"] == "sasl"
    assert body["error"] == "No supported SASL mechanism. Available: none"


@pytest.mark.parametrize(
    "domain, words", [("expired.localhost", "expired"), ("selfsigned.localhost", "self-signed")]
)
@pytest_twisted.ensureDeferred
async def test_login_refuses_bad_certificate(prosody_tls, tls_service, domain, words):
    """tlsVerify true: a bad certificate stops the login before any credential."""
    request = login_body(prosody_tls, domain, transcript=True)
    code, body = await post(tls_service, "/api/xmpp/login", request)
    assert body["success"] is False
    assert body["errorType"] == "tls"
    assert words in body["error"]
    assert "tlsVerify: false" in body["error"]
    assert body["phases"] == ["stream_opened", "starttls_upgraded"]
    assert body["tls"]["certificate"]["verified"] is False
    sent = [e["xml"] for e in body["transcript"] if e["dir"] == "out"]
    assert not any("<auth" in x for x in sent)
    assert prosody_tls.password not in json.dumps(body)


@pytest_twisted.ensureDeferred
async def test_login_unknown_ca_suggests_ca_file(prosody_tls, service):
    """A certificate from a CA the service does not trust: the error names --ca-file."""
    code, body = await post(service, "/api/xmpp/login", login_body(prosody_tls))
    assert body["errorType"] == "tls"
    assert "--ca-file" in body["error"]


@pytest_twisted.ensureDeferred
async def test_login_tls_verify_false(prosody_tls, tls_service):
    """tlsVerify false logs in despite the certificate, and reports it unverified."""
    request = login_body(prosody_tls, "expired.localhost", tlsVerify=False)
    code, body = await post(tls_service, "/api/xmpp/login", request)
    assert body["success"] is True, body
    assert body["tls"]["certificate"]["verified"] is False


@pytest_twisted.ensureDeferred
async def test_login_scram_plus_tls12(prosody_tls, tls_service):
    """On TLS 1.2 Prosody offers -PLUS: the default login binds with tls-unique."""
    code, body = await post(
        tls_service, "/api/xmpp/login", login_body(prosody_tls, "tls12.localhost")
    )
    assert body["success"] is True, body
    assert body["tls"]["protocol"] == "TLSv1.2"
    assert body["mechanism"] == "SCRAM-SHA-256-PLUS"
    assert body["channelBinding"] == "tls-unique"
    assert "sasl_scram_sha_256_plus_sent" in body["phases"]
    assert "SCRAM-SHA-1-PLUS" in body["tls"]["saslMechanisms"]


@pytest_twisted.ensureDeferred
async def test_login_scram_sha1_plus(prosody_tls, tls_service):
    """SCRAM-SHA-1-PLUS, asked for by name, binds with tls-unique."""
    request = login_body(prosody_tls, "tls12.localhost", mechanism="SCRAM-SHA-1-PLUS")
    code, body = await post(tls_service, "/api/xmpp/login", request)
    assert body["success"] is True, body
    assert (body["mechanism"], body["channelBinding"]) == ("SCRAM-SHA-1-PLUS", "tls-unique")


@pytest_twisted.ensureDeferred
async def test_login_forced_binding_refused(prosody_tls, tls_service):
    """A binding type the server does not support is refused by it: sasl."""
    request = login_body(prosody_tls, "tls12.localhost", channelBinding="tls-server-end-point")
    code, body = await post(tls_service, "/api/xmpp/login", request)
    assert body["errorType"] == "sasl"
    assert body["error"] == "SASL authentication failed: malformed-request"


@pytest_twisted.ensureDeferred
async def test_roster_and_message_over_tls(prosody_tls, tls_service):
    """/roster and /message work over STARTTLS."""
    code, body = await post(tls_service, "/api/xmpp/roster", login_body(prosody_tls, resource="r"))
    assert body["success"] is True, body
    assert body["roster"]["total"] == 0
    assert "starttls_upgraded" in body["phases"]
    request = login_body(prosody_tls, resource="m", recipient="nobody@localhost")
    code, body = await post(tls_service, "/api/xmpp/message", request)
    assert body["success"] is True, body
    assert body["deliveryErrorCondition"]["condition"] == "service-unavailable"


# -- a recording STARTTLS server: what really crossed the wire


@implementer(IOpenSSLContextFactory)
class ServerContext:
    """A context factory serving C{leaf} (for C{startTLS})."""

    def __init__(self, leaf):
        self.context = SSL.Context(SSL.TLS_METHOD)
        self.context.use_certificate_chain_file(str(leaf.fullchain_path))
        self.context.use_privatekey_file(str(leaf.key_path))

    def getContext(self):
        return self.context


class RecordingStartTLS(Protocol):
    """Offers STARTTLS with a given certificate, then PLAIN; records all it receives."""

    def connectionMade(self):
        self.buffer = b""
        self.tls = False
        self.factory.received.append(self)
        self.data = b""

    def dataReceived(self, data):
        self.data += data
        self.buffer += data
        if not self.tls and b"version='1.0'" in self.buffer and b"<starttls" not in self.buffer:
            self.buffer = b""
            self.transport.write(
                b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                b"xmlns:stream='http://etherx.jabber.org/streams' id='r' from='localhost' "
                b"version='1.0'><stream:features><starttls "
                b"xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>"
            )
        elif not self.tls and b"<starttls" in self.buffer:
            self.buffer = b""
            self.tls = True
            self.transport.write(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            self.transport.startTLS(self.factory.options)
        elif self.tls and b"version='1.0'" in self.buffer:
            self.buffer = b""
            self.transport.write(
                b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                b"xmlns:stream='http://etherx.jabber.org/streams' id='r2' from='localhost' "
                b"version='1.0'><stream:features><mechanisms "
                b"xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
                b"</mechanisms></stream:features>"
            )


@pytest.mark.parametrize("kind", ["expired", "self_signed", "other_name"])
@pytest_twisted.ensureDeferred
async def test_no_credential_on_failed_certificate(service, kind):
    """What the server received after TLS holds no <auth> and no password."""
    leaf = session_certs().leaves[kind]
    factory = Factory.forProtocol(RecordingStartTLS)
    factory.received = []
    factory.options = ServerContext(leaf)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        password = "Never-Sent-7"
        code, body = await post(
            service,
            "/api/xmpp/login",
            {
                "host": "127.0.0.1",
                "port": port.getHost().port,
                "domain": "localhost",
                "username": "alice",
                "password": password,
                "mechanism": "PLAIN",
            },
        )
        assert body["errorType"] == "tls", body
        [server] = factory.received
        assert server.tls is True
        assert b"<auth" not in server.data
        assert password.encode() not in server.data
        assert hashlib.sha256(password.encode()).hexdigest() not in server.data.decode("latin-1")
    finally:
        await port.stopListening()
