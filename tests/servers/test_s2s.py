"""
POST /api/xmpp/s2s (SPEC §7): request rules, the jabber:server stream on a
fake transport, and end to end against a real Prosody (plaintext and TLS).
"""

import json

import pytest
import pytest_twisted
import treq
from conftest import start_service
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from xmpp_fakes import FakeConnector, ScriptedTransport

from portofcall_xmpp import flows, validate
from portofcall_xmpp.errors import RequestError

S2S_HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
    b"xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
    b"id='s2s1' from='example.com' to='example.net' version='1.0'>"
)
S2S_FEATURES = (
    b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
    b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism>"
    b"</mechanisms></stream:features>"
)


class RequestTests(SynchronousTestCase):
    def test_defaults(self):
        """host is required; port 5269, domain = host, no from, 10 s, tls auto."""
        req = validate.parse_s2s({"host": "example.com"})
        self.assertEqual(
            (req.port, req.domain, req.from_, req.timeout, req.tls),
            (5269, "example.com", None, 10.0, "auto"),
        )

    def test_missing_host(self):
        """A missing host uses the reference wording."""
        with self.assertRaises(RequestError) as cm:
            validate.parse_s2s({"from": "example.net"})
        self.assertEqual(cm.exception.message, "Missing required parameter: host")

    def test_from(self):
        """from must be a JID domainpart; it is normalised like domain."""
        self.assertEqual(
            validate.parse_s2s({"host": "example.com", "from": "Example.NET"}).from_,
            "example.net",
        )
        with self.assertRaises(RequestError) as cm:
            validate.parse_s2s({"host": "example.com", "from": "a@b"})
        self.assertTrue(cm.exception.message.startswith("from"))


class FlowTests(SynchronousTestCase):
    def test_server_stream(self):
        """The probe opens a jabber:server stream with from and the dialback namespace."""
        clock = Clock()
        transport = ScriptedTransport([(b"xml:lang='en'>", S2S_HEADER + S2S_FEATURES)])
        env = flows.Environment(FakeConnector(transport).connect, clock, 5.0)
        req = validate.parse_s2s({"host": "example.com", "from": "example.net"})
        result = self.successResultOf(flows.probe(env, req))
        sent = transport.value()
        self.assertIn(b'xmlns="jabber:server"', sent)
        self.assertIn(b'to="example.com" from="example.net"', sent)
        self.assertIn(b'xmlns:db="jabber:server:dialback"', sent)
        self.assertTrue(result.features.dialback)
        self.assertEqual(result.features.mechanisms, ("EXTERNAL",))
        self.assertEqual(result.header.id, "s2s1")


# What the end-to-end tests check is the exchange, not its speed: Prosody and
# the service share a machine that may be busy (a TLS handshake of Prosody's
# starved of CPU once outlasted the shared services' 3 s read timeout), so
# these services and requests wait far longer than any healthy exchange takes.
PATIENT_MS = 60000


@pytest.fixture(scope="module")
def patient_service():
    """The API with loopback allowed and a generous read timeout."""
    running = start_service("--allow-private", "--read-timeout", str(PATIENT_MS))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def patient_tls_service(prosody_tls):
    """The API trusting the test CA, loopback allowed, a generous read timeout."""
    running = start_service(
        "--allow-private", "--read-timeout", str(PATIENT_MS), "--ca-file", prosody_tls.ca_path
    )
    try:
        yield running
    finally:
        running.stop()


async def post(service, body):
    body = {"timeout": 2 * PATIENT_MS, **body}
    response = await treq.post(service.url("/api/xmpp/s2s"), json=body)
    return response.code, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_s2s_plaintext(prosody, patient_service):
    """Prosody's s2s port without certificates: dialback offered, no TLS."""
    code, body = await post(
        patient_service, {"host": prosody.host, "port": prosody.s2s_port, "domain": "localhost"}
    )
    assert code == 200
    assert body["success"] is True, body
    assert body["message"] == "XMPP server reachable (server-to-server)"
    assert body["dialback"] is True
    assert body["from"] is None
    assert body["serverFrom"] == "localhost"
    assert "urn:xmpp:features:dialback" in body["featureNamespaces"]
    assert body["tls"] == {"available": False, "required": False, "negotiated": False}
    assert "jabber:server" in body["raw"]


@pytest.mark.parametrize("sender", [None, "example.net"])
@pytest_twisted.ensureDeferred
async def test_s2s_starttls(prosody_tls, patient_tls_service, sender):
    """Prosody's s2s with TLS: STARTTLS negotiated, the certificate verified as a server's."""
    request = {"host": prosody_tls.host, "port": prosody_tls.server.s2s_port, "domain": "localhost"}
    if sender:
        request["from"] = sender
    code, body = await post(patient_tls_service, request)
    assert body["success"] is True, body
    assert body["from"] == sender
    assert body["features"] == ["starttls"]
    tls = body["tls"]
    assert tls["negotiated"] is True
    assert tls["certificate"]["verified"] is True
    assert tls["dialback"] is True


@pytest_twisted.ensureDeferred
async def test_s2s_blocked(prosody, strict_service):
    """The destination policy applies to /s2s too."""
    code, body = await post(strict_service, {"host": "127.0.0.1", "port": prosody.s2s_port})
    assert (code, body["blocked"]) == (403, True)
