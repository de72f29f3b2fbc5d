"""Tests for portofcall_xmpp.protocol on a StringTransport and a Clock."""

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish
from xmpp_fakes import FEATURES, HEADER, stream_error

from portofcall_xmpp.errors import Closed, ProtocolViolation, ReadTimeout, StreamError, TooLarge
from portofcall_xmpp.parse import NS_SASL, is_features
from portofcall_xmpp.protocol import CLOSE_GRACE, Transcript, XMPPClientProtocol
from portofcall_xmpp.stream import Limits


def any_element(element):
    return True


class ProtocolTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.transcript = Transcript(self.clock, 0.0)
        self.proto = XMPPClientProtocol(self.clock, transcript=self.transcript)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def feed(self, data, chunk=3):
        for i in range(0, len(data), chunk):
            self.proto.dataReceived(data[i : i + chunk])

    def finish(self):
        """Close politely, let the peer close, and check nothing is left."""
        self.proto.close()
        self.assertTrue(self.transport.disconnecting)
        self.proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_send_header(self):
        """The stream header names the domain, jabber:client and version 1.0."""
        self.proto.send_header("example.com")
        self.assertEqual(
            self.transport.value(),
            b"<?xml version='1.0'?><stream:stream xmlns=\"jabber:client\" "
            b'xmlns:stream="http://etherx.jabber.org/streams" to="example.com" '
            b"version='1.0' xml:lang='en'>",
        )

    def test_header_and_features(self):
        """The header and the features arrive through their Deferreds."""
        d = self.proto.read_header(5)
        self.assertNoResult(d)
        self.feed(HEADER + FEATURES)
        self.assertEqual(self.successResultOf(d).id, "s1")
        f = self.proto.read_element(is_features, "stream features", 5)
        self.assertEqual(self.successResultOf(f).name, "features")
        self.finish()

    def test_buffered_before_wait(self):
        """Elements that arrive before anyone waits are kept in order."""
        self.feed(HEADER + b"<a/><b/>")
        self.successResultOf(self.proto.read_header(5))
        self.assertEqual(
            self.successResultOf(self.proto.read_element(any_element, "x", 5)).name, "a"
        )
        self.assertEqual(
            self.successResultOf(self.proto.read_element(any_element, "x", 5)).name, "b"
        )
        self.finish()

    def test_skips_unmatched(self):
        """A wait skips elements its matcher rejects."""
        self.feed(HEADER + b"<presence/><iq id='x' type='result'/>")
        self.successResultOf(self.proto.read_header(5))
        d = self.proto.read_element(lambda e: e.name == "iq", "iq", 5)
        self.assertEqual(self.successResultOf(d)["id"], "x")
        self.finish()

    def test_matcher_raises(self):
        """A matcher's ProbeError fails the wait."""
        self.feed(HEADER + b"<surprise/>")
        self.successResultOf(self.proto.read_header(5))

        def strict(element):
            raise ProtocolViolation("unexpected <%s>" % element.name)

        f = self.failureResultOf(self.proto.read_element(strict, "x", 5), ProtocolViolation)
        self.assertEqual(f.value.message, "unexpected <surprise>")
        self.finish()

    def test_read_timeout(self):
        """Silence past the read timeout fails with ReadTimeout; no timer is left."""
        d = self.proto.read_header(5)
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        f = self.failureResultOf(d, ReadTimeout)
        self.assertEqual(
            f.value.message, "Read timeout: no stream header from the server within 5000 ms"
        )
        self.assertEqual(f.value.error_type, "timeout")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.finish()

    def test_slow_drip_times_out(self):
        """A byte now and then does not extend the wait for a whole element."""
        self.feed(HEADER)
        self.successResultOf(self.proto.read_header(5))
        d = self.proto.read_element(is_features, "stream features", 5)
        for byte in FEATURES[:40]:
            self.clock.advance(1)
            self.proto.dataReceived(bytes([byte]))
        self.failureResultOf(d, ReadTimeout)
        self.finish()

    def test_cancel_wait(self):
        """Cancelling a wait drops it; a later wait still works."""
        d = self.proto.read_header(5)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        d2 = self.proto.read_header(5)
        self.feed(HEADER)
        self.successResultOf(d2)
        self.finish()

    def test_connection_closed(self):
        """A clean close by the server fails the wait with Closed, naming what was awaited."""
        self.feed(HEADER)
        self.successResultOf(self.proto.read_header(5))
        d = self.proto.read_element(is_features, "stream features", 5)
        self.proto.connectionLost(Failure(ConnectionDone()))
        f = self.failureResultOf(d, Closed)
        self.assertEqual(
            f.value.message, "Server closed the connection while waiting for stream features"
        )
        self.assertEqual(f.value.error_type, "closed")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_connection_reset(self):
        """A reset fails the wait with Closed, saying it was a reset."""
        d = self.proto.read_header(5)
        self.proto.connectionLost(Failure(ConnectionLost()))
        f = self.failureResultOf(d, Closed)
        self.assertEqual(
            f.value.message, "Connection reset by server while waiting for stream header"
        )

    def test_failure_is_sticky(self):
        """Every wait after the connection is gone fails the same way."""
        self.proto.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(self.proto.read_header(5), Closed)
        self.failureResultOf(self.proto.read_element(any_element, "x", 5), Closed)

    def test_stream_end(self):
        """</stream:stream> from the server fails the wait with Closed."""
        self.feed(HEADER)
        self.successResultOf(self.proto.read_header(5))
        d = self.proto.read_element(is_features, "stream features", 5)
        self.feed(b"</stream:stream>")
        f = self.failureResultOf(d, Closed)
        self.assertEqual(
            f.value.message, "Server closed the XMPP stream while waiting for stream features"
        )

    def test_stream_error(self):
        """A <stream:error> fails the wait with its condition and text."""
        self.feed(HEADER)
        self.successResultOf(self.proto.read_header(5))
        d = self.proto.read_element(is_features, "stream features", 5)
        self.feed(stream_error("host-unknown", "No such host"))
        f = self.failureResultOf(d, StreamError)
        self.assertEqual(f.value.message, "XMPP stream error: host-unknown")
        self.assertEqual(f.value.extra, {"streamErrorText": "No such host"})
        self.finish()

    def test_garbage(self):
        """Garbage fails the wait with ProtocolViolation and aborts the connection."""
        d = self.proto.read_header(5)
        self.feed(b"SSH-2.0-OpenSSH_9.2\r\n")
        self.failureResultOf(d, ProtocolViolation)
        self.assertTrue(self.transport.disconnecting)
        self.proto.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_elements_before_garbage_delivered(self):
        """Elements that arrived before garbage are still delivered, then the error."""
        self.feed(HEADER + FEATURES + b"\x00\x01", chunk=len(HEADER + FEATURES) + 2)
        self.successResultOf(self.proto.read_header(5))
        self.successResultOf(self.proto.read_element(is_features, "features", 5))
        self.failureResultOf(self.proto.read_element(any_element, "x", 5), ProtocolViolation)

    def test_too_large(self):
        """An oversized element fails with TooLarge and aborts the connection."""
        proto = XMPPClientProtocol(self.clock, Limits(max_element_bytes=2048))
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(HEADER + b"<stream:features>")
        d = proto.read_element(is_features, "stream features", 5)
        for _ in range(10):
            proto.dataReceived(b"<x/>" * 100)
        self.failureResultOf(d, TooLarge)
        self.assertTrue(transport.disconnecting)

    def test_close_polite(self):
        """close() ends our stream, closes, and aborts after the grace period."""
        self.proto.send_header("example.com")
        self.transport.clear()
        self.proto.close()
        self.assertEqual(self.transport.value(), b"</stream:stream>")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(CLOSE_GRACE)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_cancels_pending_wait(self):
        """close() fails a pending wait with CancelledError."""
        d = self.proto.read_header(5)
        self.proto.close(polite=False)
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_ignores_later_data(self):
        """Bytes arriving after close() are ignored."""
        self.proto.close()
        self.proto.dataReceived(b"garbage")
        self.proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_restart(self):
        """After restart_stream a second header and features are read."""
        self.feed(HEADER + FEATURES)
        self.successResultOf(self.proto.read_header(5))
        self.successResultOf(self.proto.read_element(is_features, "features", 5))
        self.proto.restart_stream()
        self.feed(HEADER.replace(b"s1", b"s2") + FEATURES)
        self.assertEqual(self.successResultOf(self.proto.read_header(5)).id, "s2")
        self.finish()

    def test_raw(self):
        """raw is what the server sent up to the end of its first element."""
        self.feed(HEADER + FEATURES + b"<iq type='get' id='x'/>")
        self.assertEqual(self.proto.raw(), (HEADER + FEATURES).decode())

    def test_raw_capped(self):
        """raw holds at most 2000 characters."""
        self.feed(HEADER + b"<stream:features>" + b"<x/>" * 1000 + b"</stream:features>")
        self.assertEqual(len(self.proto.raw()), 2000)

    def test_transcript_redacts_sasl(self):
        """The transcript shows SASL payloads as [redacted], both directions."""
        auth = domish.Element((NS_SASL, "auth"))
        auth["mechanism"] = "PLAIN"
        auth.addContent("AGFsaWNlAHNlY3JldA==")
        self.proto.send(auth)
        self.feed(
            HEADER + b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>dj1zZWNyZXQ=</success>"
        )
        xml = [x for _, _, x in self.transcript.entries]
        self.assertIn(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>[redacted]</auth>",
            xml,
        )
        self.assertIn("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>[redacted]</success>", xml)
        self.assertNotIn("AGFsaWNlAHNlY3JldA==", "".join(xml))
        self.assertNotIn("dj1zZWNyZXQ=", "".join(xml))
        self.assertEqual(
            self.transport.value(),
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
            b"AGFsaWNlAHNlY3JldA==</auth>",
        )

    def test_send_escapes(self):
        """Text and attributes are escaped by the XML layer."""
        message = domish.Element((None, "message"))
        message["to"] = "a'b\"@example.com"
        message.addElement("body", content="</body><evil/>&")
        self.proto.send(message)
        self.assertEqual(
            self.transport.value(),
            b"<message to='a&apos;b&quot;@example.com'><body>&lt;/body&gt;&lt;evil/&gt;&amp;"
            b"</body></message>",
        )


class TLSTransport(StringTransport):
    """A StringTransport that records startTLS (the TLS peer is played by the test)."""

    creator = None

    def startTLS(self, creator):
        self.creator = creator


class TLSProtocolTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.proto = XMPPClientProtocol(self.clock)
        self.transport = TLSTransport()
        self.proto.makeConnection(self.transport)

    def test_start_tls_waits_for_handshake(self):
        """start_tls upgrades the transport and fires once the handshake completes."""
        creator = object()
        d = self.proto.start_tls(creator, 5)
        self.assertIs(self.transport.creator, creator)
        self.assertNoResult(d)
        self.proto.handshakeCompleted()
        self.assertIs(self.successResultOf(d), self.proto)
        self.assertTrue(self.proto.tls_established)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_wait_after_handshake(self):
        """Waiting after the handshake completed fires at once."""
        self.proto.expect_tls()
        self.proto.handshakeCompleted()
        self.successResultOf(self.proto.wait_handshake(5))

    def test_handshake_timeout(self):
        """No handshake within the read timeout: ReadTimeout, no timer left."""
        d = self.proto.start_tls(object(), 5)
        self.clock.advance(5)
        f = self.failureResultOf(d, ReadTimeout)
        self.assertIn("TLS handshake", f.value.message)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_cancels_handshake_wait(self):
        """close() fails a pending handshake wait with CancelledError."""
        d = self.proto.start_tls(object(), 5)
        self.proto.close(polite=False)
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_tls_error_after_handshake(self):
        """A TLS error after the handshake fails the next wait with TLSFailure."""
        from OpenSSL.SSL import Error

        from portofcall_xmpp.errors import TLSFailure

        self.proto.expect_tls()
        self.proto.handshakeCompleted()
        self.proto.connectionLost(Failure(Error([("SSL routines", "", "bad record mac")])))
        f = self.failureResultOf(self.proto.read_header(5), TLSFailure)
        self.assertEqual(f.value.message, "TLS error: bad record mac")

    def test_no_tls_connection_on_plain_transport(self):
        """tls_connection is None on a transport without TLS."""
        self.assertIsNone(self.proto.tls_connection())
