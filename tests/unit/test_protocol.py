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
from portofcall_xmpp.parse import NS_SASL, Roster, is_features, parse_roster
from portofcall_xmpp.protocol import (
    CLOSE_GRACE,
    FLUSH_DELAY_MIN,
    SLICE_BYTES,
    TRANSCRIPT_CHARS,
    TURN_BYTES,
    TURN_ELEMENTS,
    Transcript,
    XMPPClientProtocol,
)
from portofcall_xmpp.stream import Budget, Contact, Limits, roster_items


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


def one_turn(clock):
    """
    Run the calls due now, as one reactor turn would; unlike Clock.advance,
    not the calls they schedule for now.
    """
    for call in [c for c in clock.getDelayedCalls() if c.getTime() <= clock.seconds()]:
        if call.active():
            clock.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)


def drain(clock):
    """Run reactor turns until none is due now (timers due later stay)."""
    while any(c.getTime() <= clock.seconds() for c in clock.getDelayedCalls()):
        one_turn(clock)


def flood_features(n):
    """A features block of n tiny children."""
    return b"<stream:features>" + b"<x/>" * n + b"</stream:features>"


class SlicedTests(SynchronousTestCase):
    """Parsing in slices across reactor turns, with the transport paused meanwhile."""

    def setUp(self):
        self.clock = Clock()
        self.limits = Limits()
        self.proto = XMPPClientProtocol(self.clock, self.limits)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def turns(self):
        """Run reactor turns until nothing is left to parse; how many ran."""
        count = 0
        while self.clock.getDelayedCalls():
            one_turn(self.clock)
            count += 1
        return count

    def test_flood_parsed_over_turns(self):
        """A big chunk is parsed a slice per turn, the transport paused until it is done."""
        d = self.proto.read_element(is_features, "stream features", 5)
        self.proto.dataReceived(HEADER + flood_features(15000))
        self.assertEqual(self.transport.producerState, "paused")
        self.assertNoResult(d)
        parsed = [self.proto._parser.total_elements]
        while not d.called:
            one_turn(self.clock)
            parsed.append(self.proto._parser.total_elements)
        steps = [b - a for a, b in zip(parsed, parsed[1:], strict=False)]
        self.assertGreater(len(steps), 5)
        self.assertLessEqual(max(parsed[0], *steps), TURN_ELEMENTS + SLICE_BYTES // 4)
        self.assertEqual(len(self.successResultOf(d).children), 15000)
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bytes_per_turn(self):
        """Each turn parses at most TURN_BYTES."""
        self.proto.dataReceived(HEADER + b"<stream:features><x>" + b"a" * 200000)
        self.assertLessEqual(self.proto._parser.total_bytes, TURN_BYTES)
        self.turns()
        self.assertEqual(self.proto._parser.total_bytes, len(HEADER) + 20 + 200000)

    def test_probes_interleave(self):
        """Two flooded connections take turns: neither finishes before the other starts."""
        other = XMPPClientProtocol(self.clock, self.limits)
        other.makeConnection(StringTransport())
        d = self.proto.read_element(is_features, "stream features", 5)
        seen = []
        d.addCallback(lambda _: seen.append(other._parser.total_elements))
        self.proto.dataReceived(HEADER + flood_features(10000))
        other.dataReceived(HEADER + flood_features(10000))
        self.turns()
        [others] = seen
        self.assertGreater(others, TURN_ELEMENTS)
        self.assertLess(others, 10000)

    def test_turn_shared_by_busy_connections(self):
        """The more connections flood at once, the less each parses per turn; all end idle."""
        others = [XMPPClientProtocol(self.clock, self.limits) for _ in range(39)]
        for other in others:
            other.makeConnection(StringTransport())
        flooded = [self.proto, *others]
        for proto in flooded:
            proto.dataReceived(HEADER + flood_features(3000))
        self.assertEqual(self.limits.turns.busy, 40)
        before = [p._parser.total_elements for p in flooded]
        one_turn(self.clock)
        steps = [p._parser.total_elements - b for p, b in zip(flooded, before, strict=True)]
        # 40 busy: each gets 2000 // 40 = 50 elements and 65536 // 40 bytes a turn
        # (plus what the last slice held), far below one connection's TURN_ELEMENTS.
        self.assertLessEqual(sum(steps), 40 * (50 + (65536 // 40) // 4))
        self.assertLess(max(steps), TURN_ELEMENTS)
        self.turns()
        self.assertEqual(self.limits.turns.busy, 0)
        for proto in flooded:
            proto.close(polite=False)
        self.assertEqual(self.limits.turns.busy, 0)

    def test_timeout_during_flood(self):
        """A read timeout fires on time while the server floods without end."""
        d = self.proto.read_element(is_features, "stream features", 5)
        self.proto.dataReceived(HEADER)
        while not d.called:
            if self.transport.producerState == "producing":
                self.proto.dataReceived(b"<a/>" * 4096)
            self.clock.rightNow += 0.1  # each turn of a busy reactor takes a while
            one_turn(self.clock)
        self.failureResultOf(d, ReadTimeout)
        self.assertLessEqual(self.clock.seconds(), 5.1)
        self.assertGreater(self.proto._parser.total_elements, 40 * TURN_ELEMENTS)
        self.proto.close(polite=False)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_more_data_waits_for_its_turn(self):
        """Bytes arriving while a turn is pending are parsed in order, later."""
        d = self.proto.read_element(is_features, "stream features", 5)
        data = HEADER + flood_features(5000)
        self.proto.dataReceived(data[:30000])
        self.proto.dataReceived(data[30000:])
        self.assertNoResult(d)
        self.turns()
        self.assertEqual(len(self.successResultOf(d).children), 5000)

    def test_loss_after_the_rest_is_parsed(self):
        """A connection lost while bytes wait is reported after what they carried."""
        data = HEADER + flood_features(5000) + stream_error("system-shutdown")
        self.proto.dataReceived(data)
        self.proto.connectionLost(Failure(ConnectionDone()))
        self.turns()
        self.successResultOf(self.proto.read_header(5))
        self.successResultOf(self.proto.read_element(is_features, "stream features", 5))
        self.failureResultOf(self.proto.read_element(any_element, "x", 5), StreamError)
        self.assertEqual(self.limits.budget.used, 0)

    def test_long_token_flushed_later(self):
        """The end of a long start tag held back by the parser is parsed on a later turn."""
        d = self.proto.read_element(any_element, "message", 5)
        self.proto.dataReceived(HEADER + b"<message to='" + b"a" * 20000)
        self.proto.dataReceived(b"'/>")
        self.assertNoResult(d)
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        self.clock.advance(FLUSH_DELAY_MIN)
        self.assertEqual(len(self.successResultOf(d)["to"]), 20000)
        self.proto.close(polite=False)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class CapTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.proto = XMPPClientProtocol(self.clock)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self.proto.dataReceived(HEADER)
        self.successResultOf(self.proto.read_header(5))

    def roster(self, items):
        return (
            b"<iq type='result' id='r'><query xmlns='jabber:iq:roster'>"
            + b"".join(b"<item jid='c%d@example.com' name='C %d'/>" % (i, i) for i in range(items))
            + b"</query></iq>"
        )

    def test_features_too_large_after_256_kib(self):
        """An oversized features block fails too_large after 256 KiB, aborting the connection."""
        d = self.proto.read_element(is_features, "stream features", 5)
        sent = 0
        while not d.called and sent < 4 << 20:
            self.proto.dataReceived(b"<stream:features>" if not sent else b"<x/>" * 4096)
            sent += 16384
            drain(self.clock)
        self.failureResultOf(d, TooLarge)
        self.assertLessEqual(sent, 256 * 1024 + 16384)
        self.assertTrue(self.transport.disconnecting)

    def test_large_roster_when_awaited(self):
        """A roster reply over 256 KiB passes when the wait says it may be large."""
        roster = self.roster(8000)
        self.assertGreater(len(roster), 256 * 1024)
        d = self.proto.read_element(any_element, "roster", 5, large=True)
        self.proto.dataReceived(roster)
        drain(self.clock)
        query = self.successResultOf(d).children[0]
        # Read as values (no transcript): the items are contacts, not elements.
        self.assertEqual(len(roster_items(query)), 8000)
        self.assertEqual(query.children, [])
        self.assertFalse(self.proto._parser.large)

    def test_large_element_not_awaited(self):
        """The same reply fails too_large when no large element is awaited."""
        d = self.proto.read_element(any_element, "reply", 5)
        self.proto.dataReceived(self.roster(8000))
        drain(self.clock)
        self.failureResultOf(d, TooLarge)


class BudgetTests(SynchronousTestCase):
    """The service-wide budget: charged while held, released whatever the end."""

    def setUp(self):
        self.clock = Clock()
        self.budget = Budget(1 << 20)
        self.limits = Limits(budget=self.budget)

    def connect(self):
        proto = XMPPClientProtocol(self.clock, self.limits)
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def test_charged_while_held(self):
        """An element being built, and elements not yet taken, are charged."""
        proto, _ = self.connect()
        proto.dataReceived(HEADER + b"<stream:features><x/>")
        self.assertEqual(self.budget.used, proto._parser.weight)
        self.assertGreater(self.budget.used, 0)
        proto.dataReceived(b"</stream:features><a/>")
        header = self.successResultOf(proto.read_header(5))
        self.assertEqual(header.id, "s1")
        charged = self.budget.used
        self.successResultOf(proto.read_element(is_features, "features", 5))
        self.assertLess(self.budget.used, charged)
        self.successResultOf(proto.read_element(any_element, "a", 5))
        self.assertEqual(self.budget.used, 0)

    def test_service_wide_budget(self):
        """The probe that would pass the budget fails too_large, saying it is service-wide."""
        first, _ = self.connect()
        first.dataReceived(HEADER + b"<stream:features>" + b"<x/>" * 1500)
        drain(self.clock)
        held = self.budget.used
        self.assertGreater(held, 512 * 1024)
        second, transport = self.connect()
        d = second.read_element(is_features, "stream features", 5)
        second.dataReceived(HEADER + b"<stream:features>" + b"<x/>" * 1500)
        drain(self.clock)
        f = self.failureResultOf(d, TooLarge)
        self.assertIn("service-wide budget of 1048576 bytes", f.value.message)
        self.assertIn("--max-buffered-bytes", f.value.message)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.budget.used, held)
        first.close(polite=False)
        self.assertEqual(self.budget.used, 0)

    def test_released_after_success(self):
        """Nothing stays charged after a probe that succeeded."""
        proto, _ = self.connect()
        proto.dataReceived(HEADER + FEATURES + b"<stream:features>")
        self.successResultOf(proto.read_header(5))
        self.successResultOf(proto.read_element(is_features, "features", 5))
        self.assertGreater(self.budget.used, 0)
        proto.close()
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.budget.used, 0)

    def test_released_after_failure(self):
        """Nothing stays charged after a probe that failed."""
        proto, _ = self.connect()
        d = proto.read_element(is_features, "features", 5)
        proto.dataReceived(HEADER + b"<stream:features><x/>" + b"<<garbage")
        self.failureResultOf(d, ProtocolViolation)
        self.assertEqual(self.budget.used, 0)
        proto.connectionLost(Failure(ConnectionLost()))
        proto.close()
        self.assertEqual(self.budget.used, 0)

    def test_released_after_timeout(self):
        """Nothing stays charged after a read timeout."""
        proto, _ = self.connect()
        d = proto.read_element(is_features, "features", 5)
        proto.dataReceived(HEADER + b"<stream:features><x/>")
        self.clock.advance(5)
        self.failureResultOf(d, ReadTimeout)
        proto.close()
        self.assertEqual(self.budget.used, 0)

    def test_released_after_cancellation(self):
        """Nothing stays charged after the probe is cancelled, flood pending or not."""
        proto, _ = self.connect()
        d = proto.read_element(is_features, "features", 5)
        proto.dataReceived(HEADER + flood_features(20000))
        self.assertGreater(self.budget.used, 0)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        proto.close()
        self.assertEqual(self.budget.used, 0)
        self.clock.advance(CLOSE_GRACE)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_released_when_connection_lost(self):
        """Nothing stays charged once the server goes away mid-element."""
        proto, _ = self.connect()
        proto.dataReceived(HEADER + b"<stream:features><x/>")
        proto.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.budget.used, 0)


class TranscriptTests(SynchronousTestCase):
    def test_capped_with_marker(self):
        """A transcript keeps at most 1 MiB; later entries are counted in a marker."""
        clock = Clock()
        transcript = Transcript(clock, 0.0)
        entry = "x" * 1000
        for _ in range(2000):
            transcript.add("in", entry)
        entries = transcript.entries
        kept = entries[:-1]
        self.assertLessEqual(sum(len(x) for _, _, x in kept), TRANSCRIPT_CHARS)
        self.assertGreater(len(kept), 1000)
        self.assertEqual(
            entries[-1][2],
            f"…[{2000 - len(kept)} later entries dropped: a transcript keeps at most "
            "1048576 characters]",
        )

    def test_dropped_entries_not_serialised(self):
        """Once full, entries are counted without being serialised."""
        transcript = Transcript(Clock(), 0.0)
        while not transcript.full:
            transcript.add("in", "x" * 60000)
        rendered = []
        transcript.add("in", lambda: rendered.append(1) or "y")
        self.assertEqual(rendered, [])
        self.assertTrue(transcript.full)
        self.assertEqual(transcript.entries[-1][2][:3], "…[2")

    def test_protocol_flood_transcript(self):
        """A flood of stanzas leaves a transcript of at most 1 MiB."""
        clock = Clock()
        transcript = Transcript(clock, 0.0)
        proto = XMPPClientProtocol(clock, transcript=transcript)
        proto.makeConnection(StringTransport())
        proto.dataReceived(HEADER + b"<message><body>hello</body></message>" * 100000)
        drain(clock)
        entries = transcript.entries
        self.assertLessEqual(sum(len(x) for _, _, x in entries[:-1]), TRANSCRIPT_CHARS)
        self.assertIn("later entries dropped", entries[-1][2])


class BudgetWhileWaitingTests(SynchronousTestCase):
    def test_budget_passed_by_bytes_waiting_for_a_turn(self):
        """Bytes that arrive while a turn is pending are charged too, and can fail the probe."""
        clock = Clock()
        budget = Budget(600 * 1024)
        proto = XMPPClientProtocol(clock, Limits(budget=budget))
        transport = StringTransport()
        proto.makeConnection(transport)
        d = proto.read_element(is_features, "stream features", 5)
        proto.dataReceived(HEADER + flood_features(3000))
        self.assertEqual(transport.producerState, "paused")
        proto.dataReceived(b"<x/>" * 100000)
        self.failureResultOf(d, TooLarge)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(budget.used, 0)
        self.assertEqual(clock.getDelayedCalls(), [])


ROSTER_REPLY = (
    b"<iq type='result' id='roster1'><query xmlns='jabber:iq:roster' ver='v2'>"
    b"<item jid='bob@example.com' name='B\xc3\xb6b &amp; co' subscription='both'>"
    b"<group>Friends</group><group>Work</group></item>"
    b"<item jid='carol@example.com' ask='subscribe'/></query></iq>"
)


class RosterValuesTests(SynchronousTestCase):
    """
    Without a transcript, the protocol's parser reads roster items as values;
    with one, as elements, so that the transcript shows them.  Either way the
    roster is the same.
    """

    def roster(self, transcript):
        clock = Clock()
        proto = XMPPClientProtocol(clock, transcript=transcript)
        proto.makeConnection(StringTransport())
        proto.dataReceived(HEADER)
        self.successResultOf(proto.read_header(5))
        d = proto.read_element(any_element, "roster", 5, large=True)
        for i in range(0, len(ROSTER_REPLY), 7):
            proto.dataReceived(ROSTER_REPLY[i : i + 7])
        drain(clock)
        return self.successResultOf(d)

    def test_same_roster(self):
        """The roster read with and without a transcript is the same."""
        transcript = Transcript(Clock(), 0.0)
        without, with_ = self.roster(None), self.roster(transcript)
        self.assertIsNotNone(roster_items(without.firstChildElement()))
        self.assertIsNone(roster_items(with_.firstChildElement()))
        self.assertEqual(parse_roster(without), parse_roster(with_))
        self.assertEqual(
            parse_roster(without),
            Roster(
                "v2",
                (
                    Contact(
                        jid="bob@example.com",
                        name="B\xf6b & co",
                        subscription="both",
                        ask=None,
                        groups=("Friends", "Work"),
                    ),
                    Contact(
                        jid="carol@example.com",
                        name=None,
                        subscription="none",
                        ask="subscribe",
                        groups=(),
                    ),
                ),
            ),
        )

    def test_transcript_shows_items(self):
        """A transcript shows the roster's items as the server sent them."""
        transcript = Transcript(Clock(), 0.0)
        self.roster(transcript)
        [entry] = [xml for _, _, xml in transcript.entries if "roster" in xml]
        self.assertIn("<item jid='bob@example.com'", entry)
        self.assertIn("<group>Work</group>", entry)


class NoDelayTransport(StringTransport):
    """A StringTransport with the TCP option calls of a reactor's TCP transport."""

    def __init__(self, error=None):
        super().__init__()
        self.no_delay = []
        self._error = error

    def setTcpNoDelay(self, enabled):
        if self._error is not None:
            raise self._error
        self.no_delay.append(enabled)


class Wrapper(StringTransport):
    """A transport over another one (as TLS wraps TCP): no TCP options of its own."""

    def __init__(self, transport):
        super().__init__()
        self.transport = transport


class NoDelayTests(SynchronousTestCase):
    """connectionMade turns Nagle's algorithm off on the TCP transport, wherever it is."""

    def connect(self, transport):
        proto = XMPPClientProtocol(Clock())
        proto.makeConnection(transport)
        return proto

    def test_tcp_transport(self):
        """On a TCP transport: TCP_NODELAY is set."""
        transport = NoDelayTransport()
        self.connect(transport)
        self.assertEqual(transport.no_delay, [True])

    def test_under_wrappers(self):
        """Under wrappers (TLS over TCP), the TCP transport below gets it."""
        tcp = NoDelayTransport()
        self.connect(Wrapper(Wrapper(tcp)))
        self.assertEqual(tcp.no_delay, [True])

    def test_no_tcp_transport(self):
        """A transport without TCP options (nor one below) is used as is."""
        for transport in (StringTransport(), Wrapper(StringTransport()), Wrapper(None)):
            proto = self.connect(transport)
            d = proto.read_header(5)
            proto.dataReceived(HEADER)
            self.assertEqual(self.successResultOf(d).id, "s1")

    def test_os_error_ignored(self):
        """A socket that refuses the option (already closed) does not fail the connection."""
        transport = NoDelayTransport(OSError(9, "Bad file descriptor"))
        proto = self.connect(transport)
        proto.dataReceived(HEADER)
        self.assertEqual(self.successResultOf(proto.read_header(5)).id, "s1")
