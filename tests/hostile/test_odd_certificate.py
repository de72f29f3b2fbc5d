"""
A server whose certificate OpenSSL accepts and C{cryptography} refuses to
parse (the C{unparsable} test certificate: a PrintableString holding "_" and
"@"), through HTTP on loopback: the answer reports what could be read and
why nothing was verified -- never a 500, never a traceback.
"""

import json
import re

import pytest
import pytest_twisted
import treq
from certs import session_certs
from hostile import FEATURES, HEADER, PROCEED, STARTTLS_FEATURES
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogPublisher
from zope.interface import implementer

# The problem in cryptography's words, e.g. "invalid value in AttributeValue::PrintableString".
PARSE_ERROR = r"certificate could not be parsed \(.*PrintableString.*\), so it was not verified"


@implementer(IOpenSSLServerConnectionCreator)
class ServerContext:
    """The server side of TLS, presenting the unparsable certificate and its intermediate."""

    def __init__(self):
        bad = session_certs().unparsable
        self.context = SSL.Context(SSL.TLS_SERVER_METHOD)
        self.context.use_certificate(bad.cert)
        self.context.use_privatekey(bad.key)
        for cert in bad.chain:
            self.context.add_extra_chain_cert(cert)

    def serverConnectionForTLS(self, tlsProtocol):
        return SSL.Connection(self.context, None)


class OddCertificateServer(Protocol):
    """
    Answers a stream header with features: over TLS (direct, or after
    STARTTLS, which it offers on a plaintext stream) the SASL ones.
    """

    def connectionMade(self):
        self.received = b""
        self.secure = self.factory.direct

    def dataReceived(self, data):
        self.received += data
        if b"<auth" in self.received:
            self.factory.auth_seen = True
        if b"<starttls" in self.received:
            self.received = b""
            self.transport.write(PROCEED)
            self.transport.startTLS(self.factory.context)
            self.secure = True
        elif b"version='1.0'" in self.received:
            self.received = b""
            self.transport.write(HEADER + (FEATURES if self.secure else STARTTLS_FEATURES))


@pytest.fixture
def odd_server():
    """Two listening ports: direct TLS and STARTTLS, both with the unparsable certificate."""
    context = ServerContext()
    factories, ports = {}, []
    for direct in (True, False):
        factory = Factory.forProtocol(OddCertificateServer)
        factory.noisy = False
        factory.direct, factory.context, factory.auth_seen = direct, context, False
        if direct:
            port = reactor.listenSSL(0, factory, context, interface="127.0.0.1")
        else:
            port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        ports.append(port)
        factories["direct" if direct else "starttls"] = (factory, port.getHost().port)
    yield factories
    for port in ports:
        pytest_twisted.blockon(port.stopListening())


@pytest.fixture
def log_events():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


async def post(service, path, body):
    response = await treq.post(service.url(path), json=body, persistent=False)
    return response.code, json.loads(await response.content())


def check_certificate(tls):
    certificate = tls["certificate"]
    assert certificate["subject"] == "CN=localhost,O=Port_of_Call@tests"
    assert certificate["issuer"] == session_certs().intermediate.cert.subject.rfc4514_string()
    assert certificate["notAfter"].endswith("Z")
    assert len(certificate["fingerprintSha256"]) == 95
    assert certificate["verified"] is False
    assert re.fullmatch(PARSE_ERROR, certificate["verifyError"])
    assert certificate["matchesDomain"] is False


@pytest_twisted.ensureDeferred
async def test_connect_reports_unparsable_certificate(odd_server, service, log_events):
    """
    /connect (direct TLS and STARTTLS) and /s2s answer 200 with the
    certificate's readable fields, verified false and the parse problem.
    """
    for path, mode in (
        ("/api/xmpp/connect", "direct"),
        ("/api/xmpp/connect", "starttls"),
        ("/api/xmpp/s2s", "direct"),
    ):
        _, port = odd_server[mode]
        request = {"host": "127.0.0.1", "port": port, "domain": "localhost"}
        request["tls"] = "direct" if mode == "direct" else "auto"
        code, body = await post(service, path, request)
        assert code == 200, (path, mode, body)
        assert body["success"] is True, (path, mode, body)
        assert body["tls"]["negotiated"] is True
        check_certificate(body["tls"])
    assert not any(e.get("isError") or "log_failure" in e for e in log_events)


@pytest_twisted.ensureDeferred
async def test_login_stops_before_credentials(odd_server, service, log_events):
    """
    /login with tlsVerify (the default) stops with errorType tls, naming the
    parse problem, before any credential is sent; no --ca-file advice, as no
    CA would help.
    """
    for mode in ("direct", "starttls"):
        factory, port = odd_server[mode]
        request = {
            "host": "127.0.0.1",
            "port": port,
            "domain": "localhost",
            "username": "alice",
            "password": "not-sent-1",
            "tls": "direct" if mode == "direct" else "auto",
        }
        code, body = await post(service, "/api/xmpp/login", request)
        assert code == 200, body
        assert body["errorType"] == "tls", body
        assert re.fullmatch(
            f"TLS certificate of localhost did not verify: {PARSE_ERROR}; no credentials were "
            r"sent \(pass tlsVerify: false to log in anyway\)",
            body["error"],
        ), body["error"]
        check_certificate(body["tls"])
        assert factory.auth_seen is False
    assert not any(e.get("isError") or "log_failure" in e for e in log_events)
