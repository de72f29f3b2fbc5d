"""
Tests for the XEP-0114 component flow (flows.component), its handshake
digest and its redaction, with a scripted server on a StringTransport.
"""

import hashlib

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish
from xmpp_fakes import FakeConnector, ScriptedTransport, stream_error

from portofcall_xmpp import flows, render, validate
from portofcall_xmpp.errors import ConnectError, RequestError
from portofcall_xmpp.parse import NS_COMPONENT, REDACTED, to_xml

SECRET = "Marker-Secret-55"
NAME = "component.example.com"
STREAM_ID = "3BF96D32"
HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
    b"xmlns:stream='http://etherx.jabber.org/streams' id='3BF96D32' "
    b"from='component.example.com'>"
)
# What Prosody sends for a name that is no component of it: no id, then the error.
HEADER_NO_ID = HEADER.replace(b"id='3BF96D32'", b"id=''")
HANDSHAKE_OK = b"<handshake/>"
DIGEST = hashlib.sha1((STREAM_ID + SECRET).encode()).hexdigest()
# Our header ends with this; the handshake with </handshake>.
OPENED = b"xml:lang='en'>"
SENT = b"</handshake>"


def close_peer(transport):
    transport.protocol.connectionLost(Failure(ConnectionDone()))


def reset_peer(transport):
    transport.protocol.connectionLost(Failure(ConnectionLost()))


class ComponentCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()

    def run_component(
        self, script, secret=SECRET, error=None, read_timeout=5.0, chunk=None, **body
    ):
        self.transport = ScriptedTransport(script, chunk)
        self.connector = FakeConnector(self.transport, error)
        env = flows.Environment(self.connector.connect, self.clock, read_timeout)
        request = {"host": "xmpp.example.com", "componentName": NAME, **body}
        if secret is not None:
            request["secret"] = secret
        self.req = validate.parse_component(request)
        return flows.component(env, self.req)

    def failed(self, d, error_type):
        failure = self.failureResultOf(d, flows.Failed)
        self.assertEqual(failure.value.error.error_type, error_type, failure.value.error.message)
        return failure.value

    def assertClean(self):
        """The connection is closing and, once gone, no timer is left."""
        self.assertTrue(self.transport.disconnecting)
        self.clock.advance(10)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class DigestTests(SynchronousTestCase):
    def test_sha1_of_id_and_secret(self):
        """The digest is the lower-case hex SHA-1 of the stream id then the secret."""
        # FIPS 180 test vector: SHA-1("abc").
        self.assertEqual(
            flows.handshake_digest("ab", "c"), "a9993e364706816aba3e25717850c26c9cd0d89d"
        )

    def test_utf8(self):
        """A non-ASCII secret is hashed as UTF-8."""
        self.assertEqual(
            flows.handshake_digest("id", "s\u00e9same"),
            hashlib.sha1("ids\u00e9same".encode()).hexdigest(),
        )


class RedactionTests(SynchronousTestCase):
    def test_handshake_redacted(self):
        """A component handshake's text is shown as [redacted]."""
        element = domish.Element((NS_COMPONENT, "handshake"))
        element.addContent(DIGEST)
        xml = to_xml(element, NS_COMPONENT)
        self.assertEqual(xml, f"<handshake>{REDACTED}</handshake>")

    def test_empty_handshake_shown(self):
        """The server's empty <handshake/> carries nothing and is shown as is."""
        self.assertEqual(
            to_xml(domish.Element((NS_COMPONENT, "handshake")), NS_COMPONENT), "<handshake/>"
        )

    def test_other_namespace_not_redacted(self):
        """A <handshake> outside the component namespace is not a credential."""
        element = domish.Element(("urn:example", "handshake"))
        element.addContent("visible")
        self.assertIn("visible", to_xml(element, NS_COMPONENT))


class RequestTests(SynchronousTestCase):
    def test_defaults(self):
        """Port 5347, 10 s, no secret, no transcript; the target is host:port."""
        req = validate.parse_component({"host": "xmpp.example.com", "componentName": NAME})
        self.assertEqual(
            (req.port, req.timeout, req.secret, req.transcript, req.target, req.account),
            (5347, 10.0, None, False, "xmpp.example.com:5347", None),
        )

    def test_missing(self):
        """host and componentName are required, with the reference wording."""
        for body, name in (
            ({"componentName": NAME}, "host"),
            ({"host": "x.example"}, "componentName"),
        ):
            with self.assertRaises(RequestError) as caught:
                validate.parse_component(body)
            self.assertEqual(caught.exception.message, f"Missing required parameter: {name}")

    def test_bad_secret_not_echoed(self):
        """An invalid secret is a 400 naming the field, never repeating it."""
        for secret in ("", "x" * 1024, "a\x00" + SECRET, 5):
            with self.assertRaises(RequestError) as caught:
                validate.parse_component({"host": "x.example", "componentName": NAME,
                                          "secret": secret})  # fmt: skip
            self.assertTrue(caught.exception.message.startswith("secret"))
            self.assertNotIn(SECRET, caught.exception.message)

    def test_secret_not_in_repr(self):
        """The secret is not part of the request's repr."""
        req = validate.parse_component({"host": "x.example", "componentName": NAME,
                                        "secret": SECRET})  # fmt: skip
        self.assertNotIn(SECRET, repr(req))

    def test_component_name_is_a_domainpart(self):
        """componentName must be a JID domainpart; it is normalised."""
        req = validate.parse_component({"host": "x.example", "componentName": "Comp.Example"})
        self.assertEqual(req.component_name, "comp.example")
        with self.assertRaises(RequestError) as caught:
            validate.parse_component({"host": "x.example", "componentName": "a@b"})
        self.assertTrue(caught.exception.message.startswith("componentName"))


class ComponentTests(ComponentCase):
    def test_authenticated(self):
        """With the secret: our accept header, the handshake digest, the server's <handshake/>."""
        d = self.run_component([(OPENED, HEADER), (SENT, HANDSHAKE_OK)])
        result = self.successResultOf(d)
        self.assertTrue(result.authenticated)
        self.assertEqual(result.phases, ("stream_opened", "handshake_sent", "authenticated"))
        self.assertEqual(set(result.timings), set(result.phases))
        self.assertEqual((result.header.id, result.header.from_), (STREAM_ID, NAME))
        self.assertEqual((result.host, result.port), ("xmpp.example.com", 5347))
        sent = self.transport.value()
        self.assertIn(b'xmlns="jabber:component:accept"', sent)
        self.assertIn(b'to="component.example.com"', sent)
        self.assertIn(f"<handshake>{DIGEST}</handshake>".encode(), sent)
        self.assertEqual(result.raw, (HEADER + HANDSHAKE_OK).decode())
        self.assertEqual(self.connector.calls, [("xmpp.example.com", 5347)])
        self.assertClean()

    def test_chunked(self):
        """The server's bytes one at a time change nothing."""
        d = self.run_component([(OPENED, HEADER), (SENT, HANDSHAKE_OK)], chunk=1)
        self.assertTrue(self.successResultOf(d).authenticated)

    def test_no_secret(self):
        """Without a secret: the stream alone, nothing but our header and the close sent."""
        d = self.run_component([(OPENED, HEADER)], secret=None)
        result = self.successResultOf(d)
        self.assertFalse(result.authenticated)
        self.assertEqual(result.phases, ("stream_opened",))
        self.assertNotIn(b"handshake", self.transport.value())
        self.assertTrue(self.transport.value().endswith(b"</stream:stream>"))
        self.assertClean()

    def test_json(self):
        """The answer: streamId, serverFrom, authenticated, phases, timings, raw."""
        d = self.run_component([(OPENED, HEADER), (SENT, HANDSHAKE_OK)], timeout=3000)
        body = render.component_json(self.successResultOf(d), self.req)
        self.assertEqual(
            {k: body[k] for k in ("success", "message", "componentName", "streamId",
                                  "serverFrom", "authenticated", "phases")},
            {"success": True, "message": "Component authenticated", "componentName": NAME,
             "streamId": STREAM_ID, "serverFrom": NAME, "authenticated": True,
             "phases": ["stream_opened", "handshake_sent", "authenticated"]},
        )  # fmt: skip
        self.assertNotIn("transcript", body)

    def test_features_skipped(self):
        """Stream features before the handshake reply (a version 1.0 server) are skipped."""
        features = b"<stream:features/>"
        d = self.run_component([(OPENED, HEADER + features), (SENT, HANDSHAKE_OK)])
        self.assertTrue(self.successResultOf(d).authenticated)

    def test_refused(self):
        """A wrong secret: the server's not-authorized stream error, phases so far."""
        error = stream_error("not-authorized", "Given token does not match calculated token")
        d = self.run_component([(OPENED, HEADER), (SENT, error)])
        f = self.failed(d, "stream_error")
        self.assertEqual(f.error.message, "XMPP stream error: not-authorized")
        self.assertEqual(
            f.error.extra, {"streamErrorText": "Given token does not match calculated token"}
        )
        self.assertEqual(f.phases, ("stream_opened", "handshake_sent"))
        self.assertClean()

    def test_unknown_name(self):
        """A header without an id, then host-unknown: that error; no handshake is sent."""
        d = self.run_component([(OPENED, HEADER_NO_ID + stream_error("host-unknown"))])
        f = self.failed(d, "stream_error")
        self.assertEqual(f.error.message, "XMPP stream error: host-unknown")
        self.assertEqual(f.phases, ("stream_opened",))
        self.assertNotIn(b"handshake", self.transport.value())

    def test_unknown_name_without_secret(self):
        """Without a secret, the refusal that follows an id-less header is reported too."""
        d = self.run_component([(OPENED, HEADER_NO_ID + stream_error("host-unknown"))], None)
        self.assertEqual(self.failed(d, "stream_error").error.message,
                         "XMPP stream error: host-unknown")  # fmt: skip

    def test_no_id_then_silence(self):
        """A header without an id and nothing after it: protocol, after the read timeout."""
        d = self.run_component([(OPENED, HEADER_NO_ID)])
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        f = self.failed(d, "protocol")
        self.assertIn("no id", f.error.message)
        self.assertNotIn(b"handshake", self.transport.value())
        self.assertClean()

    def test_no_id_then_element(self):
        """A header without an id, then an element: protocol at once."""
        d = self.run_component([(OPENED, HEADER_NO_ID + b"<message/>")])
        self.assertIn("no id", self.failed(d, "protocol").error.message)

    def test_unexpected_element(self):
        """Anything but <handshake/> in reply to the handshake: protocol."""
        d = self.run_component([(OPENED, HEADER), (SENT, b"<iq type='get' id='x'/>")])
        f = self.failed(d, "protocol")
        self.assertEqual(
            f.error.message, "Expected <handshake/>, got <iq xmlns='jabber:component:accept'>"
        )
        self.assertClean()

    def test_closed_after_handshake(self):
        """The server closes after the handshake: closed."""
        d = self.run_component([(OPENED, HEADER), (SENT, close_peer)])
        f = self.failed(d, "closed")
        self.assertEqual(
            f.error.message, "Server closed the connection while waiting for handshake reply"
        )

    def test_stream_end_after_handshake(self):
        """</stream:stream> in reply to the handshake: closed."""
        d = self.run_component([(OPENED, HEADER), (SENT, b"</stream:stream>")])
        self.failed(d, "closed")

    def test_reset_before_header(self):
        """A reset before the header: closed."""
        d = self.run_component([(OPENED, reset_peer)])
        f = self.failed(d, "closed")
        self.assertEqual(
            f.error.message, "Connection reset by server while waiting for stream header"
        )

    def test_silent_server(self):
        """No header: Read timeout after the per-read timeout."""
        d = self.run_component([])
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        f = self.failed(d, "timeout")
        self.assertTrue(f.error.message.startswith("Read timeout: no stream header"))
        self.assertClean()

    def test_silence_after_handshake(self):
        """No handshake reply: Read timeout, phases up to handshake_sent."""
        d = self.run_component([(OPENED, HEADER)])
        self.clock.advance(5)
        f = self.failed(d, "timeout")
        self.assertEqual(
            f.error.message, "Read timeout: no handshake reply from the server within 5000 ms"
        )
        self.assertEqual(f.phases, ("stream_opened", "handshake_sent"))
        self.assertClean()

    def test_overall_timeout(self):
        """A drip inside the read timeout still ends at the overall timeout."""
        d = self.run_component([(OPENED, HEADER)], read_timeout=30, timeout=3000)
        for byte in HANDSHAKE_OK:
            self.clock.advance(1)
            if not self.transport.disconnecting:
                self.transport.protocol.dataReceived(bytes([byte]))
        f = self.failed(d, "timeout")
        self.assertTrue(f.error.message.startswith("Connection timeout"), f.error.message)
        self.assertClean()

    def test_garbage(self):
        """Not XML: protocol."""
        d = self.run_component([(OPENED, b"SSH-2.0-OpenSSH_9.6\r\n")])
        f = self.failed(d, "protocol")
        self.assertTrue(f.error.message.startswith("Malformed XML from server"))
        self.assertClean()

    def test_connect_refused(self):
        """No connection: connect, no phases."""
        d = self.run_component([], error=ConnectError("Connection refused"))
        f = self.failed(d, "connect")
        self.assertEqual(f.phases, ())

    def test_transcript_redacted(self):
        """
        The transcript shows the handshake as [redacted]; neither the secret
        nor its digest appears in the transcript, raw, the answer, or a
        failure's answer.
        """
        d = self.run_component([(OPENED, HEADER), (SENT, HANDSHAKE_OK)], transcript=True)
        result = self.successResultOf(d)
        entries = [xml for _, _, xml in result.transcript]
        self.assertIn(f"<handshake>{REDACTED}</handshake>", entries)
        self.assertIn("<handshake/>", entries)
        answers = [render.component_json(result, self.req)]
        error = stream_error("not-authorized")
        d = self.run_component([(OPENED, HEADER), (SENT, error)], transcript=True)
        failed = self.failed(d, "stream_error")
        answers.append(render.auth_failure_json(failed, self.req))
        text = repr(answers) + repr(result) + repr(failed.__dict__)
        for secret in (SECRET, DIGEST):
            self.assertNotIn(secret, text)
