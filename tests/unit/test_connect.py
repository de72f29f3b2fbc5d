"""Tests for portofcall_xmpp.connect: resolve once, check every address, dial checked ones."""

from __future__ import annotations

import socket

import pytest
import pytest_twisted
from dns_fakes import FakeThreads
from twisted.internet import defer, error
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from portofcall_xmpp.connect import Connector, describe_connect_failure
from portofcall_xmpp.errors import ConnectError, DestinationBlocked, DNSError
from portofcall_xmpp.policy import Policy
from portofcall_xmpp.protocol import XMPPClientProtocol
from portofcall_xmpp.ratelimit import RateLimited
from portofcall_xmpp.resolve import Slots, SystemResolver


class FakeResolver:
    """Answers from a table, or with a pending Deferred the test controls."""

    def __init__(self, answers=None):
        self.answers = dict(answers or {})
        self.calls = []
        self.cancelled = []
        self.pending = {}

    def resolve(self, host):
        self.calls.append(host)
        answer = self.answers.get(host)
        if answer is None:
            d = Deferred(lambda d: self.cancelled.append(host))
            self.pending[host] = d
            return d
        if isinstance(answer, Exception):
            return fail(answer)
        return succeed(list(answer))


class RecordingProtocol(Protocol):
    made = 0

    def connectionMade(self):
        self.made += 1


class ConnectorTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.resolver = FakeResolver(
            {
                "xmpp.example": ["8.8.8.8", "2606:4700::1111"],
                "two.example": ["8.8.8.8", "8.8.4.4"],
                "mixed.example": ["8.8.8.8", "10.0.0.1"],
                "lab.example": ["192.0.2.1"],
                "nx.example": DNSError("DNS lookup failed for nx.example: no address found"),
                "garbage.example": ["not-an-address"],
                "empty.example": [],
            }
        )
        self.proto = RecordingProtocol()

    def connector(self, allow_private=False, timeout=5.0):
        return Connector(self.reactor, self.resolver, Policy(allow_private), timeout)

    def dialled(self):
        return [(host, port) for host, port, *_ in self.reactor.tcpClients]

    def accept(self, index=-1):
        """The attempt C{index} connects; returns its transport."""
        host, port, factory, *_ = self.reactor.tcpClients[index]
        wrapper = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport()
        wrapper.makeConnection(transport)
        return transport

    def refuse(self, index=-1, reason=None):
        """The attempt C{index} fails (refused, unless another reason is given)."""
        _, _, factory, *_ = self.reactor.tcpClients[index]
        connector = self.reactor.connectors[index]
        factory.clientConnectionFailed(
            connector, Failure(reason or error.ConnectionRefusedError("refused"))
        )

    def assertClean(self):
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    # -- success

    def test_connects_to_first_address(self):
        """The first resolved address is dialled with the connect timeout; the protocol connects."""
        d = self.connector().connect("xmpp.example", 5222, self.proto)
        self.assertEqual(self.resolver.calls, ["xmpp.example"])
        self.assertEqual(self.dialled(), [("8.8.8.8", 5222)])
        self.assertEqual(self.reactor.tcpClients[0][3], 5.0)
        self.assertNoResult(d)
        transport = self.accept()
        self.assertIs(self.successResultOf(d), self.proto)
        self.assertEqual(self.proto.made, 1)
        self.assertIsNotNone(self.proto.transport)
        self.proto.transport.write(b"<stream>")
        self.assertEqual(transport.value(), b"<stream>")
        self.assertClean()

    def test_ipv6_address(self):
        """An IPv6 address is dialled as such (TCP6), after the IPv4 one failed."""
        d = self.connector().connect("xmpp.example", 5222, self.proto)
        self.refuse()
        self.assertEqual(self.dialled()[1], ("2606:4700::1111", 5222))
        self.accept()
        self.assertIs(self.successResultOf(d), self.proto)

    def test_ip_version_restricts_addresses(self):
        """ip_version 6 dials only the IPv6 address (restrict_ip_version of /probe)."""
        d = self.connector().connect("xmpp.example", 5222, self.proto, ip_version=6)
        self.assertEqual(self.dialled(), [("2606:4700::1111", 5222)])
        self.accept()
        self.assertIs(self.successResultOf(d), self.proto)

    def test_ip_version_without_such_address(self):
        """ip_version 6 for a name with IPv4 addresses only: ConnectError, nothing dialled."""
        d = self.connector().connect("two.example", 5222, self.proto, ip_version=6)
        failure = self.failureResultOf(d, ConnectError)
        self.assertEqual(failure.value.message, "No IPv6 address: 8.8.8.8:5222, 8.8.4.4:5222")
        self.assertEqual(self.dialled(), [])

    def test_ip_version_still_checks_the_policy(self):
        """Every address is checked against the policy, also those of the other family."""
        self.resolver.answers["mixed6.example"] = ["10.0.0.1", "2606:4700::1111"]
        d = self.connector().connect("mixed6.example", 5222, self.proto, ip_version=6)
        self.failureResultOf(d, DestinationBlocked)
        self.assertEqual(self.dialled(), [])

    def test_literal_not_resolved(self):
        """An IP literal is dialled as its canonical address, without the resolver."""
        d = self.connector().connect("[2606:4700:0::1111]", 5223, self.proto)
        self.assertEqual(self.dialled(), [("2606:4700::1111", 5223)])
        self.assertEqual(self.resolver.calls, [])
        self.accept()
        self.successResultOf(d)

    def test_numeric_spelling_checked(self):
        """'2130706433' is 127.0.0.1: blocked by default, dialled as 127.0.0.1 if allowed."""
        d = self.connector().connect("2130706433", 5222, self.proto)
        f = self.failureResultOf(d, DestinationBlocked)
        self.assertTrue(str(f.value).startswith("Destination 127.0.0.1 is not allowed"))
        self.assertEqual(self.dialled(), [])
        self.connector(allow_private=True).connect("0x7f.1", 5222, self.proto)
        self.assertEqual(self.dialled(), [("127.0.0.1", 5222)])
        self.assertEqual(self.resolver.calls, [])

    def test_refused_then_second_connects(self):
        """A refused address is followed by the next; the same protocol instance connects."""
        d = self.connector().connect("two.example", 5222, self.proto)
        self.assertEqual(self.dialled(), [("8.8.8.8", 5222)])
        self.refuse()
        self.assertNoResult(d)
        self.assertEqual(self.dialled(), [("8.8.8.8", 5222), ("8.8.4.4", 5222)])
        self.accept()
        self.assertIs(self.successResultOf(d), self.proto)
        self.assertEqual(self.proto.made, 1)
        self.assertEqual(self.resolver.calls, ["two.example"])  # resolved once
        self.assertClean()

    # -- policy

    def test_private_destination_blocked(self):
        """A name resolving to a private address is refused before any dial."""
        self.resolver.answers["intranet.example"] = ["10.1.2.3"]
        d = self.connector().connect("intranet.example", 5222, self.proto)
        f = self.failureResultOf(d, DestinationBlocked)
        # A refusal, not an HTTP answer: only the web layer maps it to 403.
        self.assertFalse(hasattr(f.value, "status"))
        self.assertIn("10.1.2.3", str(f.value))
        self.assertEqual(self.dialled(), [])

    def test_mixed_public_private_blocked(self):
        """A name with a public and a private address is refused altogether (DNS rebinding)."""
        d = self.connector().connect("mixed.example", 5222, self.proto)
        f = self.failureResultOf(d, DestinationBlocked)
        self.assertEqual(
            str(f.value),
            "Destination mixed.example resolves to 10.0.0.1, which is not allowed: "
            "private (RFC 1918) addresses are blocked "
            "(start the service with --allow-private to allow them)",
        )
        self.assertEqual(self.dialled(), [])

    def test_allow_private(self):
        """With allow_private, private addresses are dialled."""
        self.connector(allow_private=True).connect("mixed.example", 5222, self.proto)
        self.refuse()
        self.assertEqual(self.dialled(), [("8.8.8.8", 5222), ("10.0.0.1", 5222)])

    def test_allow_private_still_blocks_unusable(self):
        """Even with allow_private, 0.0.0.0 is never dialled."""
        self.resolver.answers["zero.example"] = ["0.0.0.0"]
        d = self.connector(allow_private=True).connect("zero.example", 5222, self.proto)
        self.failureResultOf(d, DestinationBlocked)
        d = self.connector(allow_private=True).connect("0", 5222, self.proto)
        self.failureResultOf(d, DestinationBlocked)
        self.assertEqual(self.dialled(), [])

    def test_embedded_ipv4_blocked(self):
        """An IPv4-mapped loopback address is blocked like the loopback address."""
        self.resolver.answers["mapped.example"] = ["::ffff:127.0.0.1"]
        d = self.connector().connect("mapped.example", 5222, self.proto)
        self.assertIn(
            "IPv4-mapped loopback", str(self.failureResultOf(d, DestinationBlocked).value)
        )
        self.assertEqual(self.dialled(), [])

    # -- failures

    def test_dns_failure(self):
        """A name that does not resolve fails with the resolver's DNSError."""
        d = self.connector().connect("nx.example", 5222, self.proto)
        self.assertEqual(
            str(self.failureResultOf(d, DNSError).value),
            "DNS lookup failed for nx.example: no address found",
        )

    def test_resolver_garbage(self):
        """A resolver answer that is not an address, or no answer, is a DNSError."""
        self.failureResultOf(self.connector().connect("garbage.example", 1, self.proto), DNSError)
        self.failureResultOf(self.connector().connect("empty.example", 1, self.proto), DNSError)
        self.assertEqual(self.dialled(), [])

    def test_all_refused(self):
        """When every address fails, ConnectError lists each reason and address."""
        d = self.connector().connect("xmpp.example", 5222, self.proto)
        self.refuse()
        self.refuse()
        f = self.failureResultOf(d, ConnectError)
        self.assertEqual(
            str(f.value),
            "Connection refused: 8.8.8.8:5222; Connection refused: [2606:4700::1111]:5222",
        )
        self.assertEqual(f.value.error_type, "connect")
        self.assertEqual(self.proto.made, 0)
        self.assertClean()

    def test_single_refused(self):
        """One refused address: 'Connection refused: 127.0.0.1:5222'."""
        d = self.connector(allow_private=True).connect("127.0.0.1", 5222, self.proto)
        self.refuse()
        self.assertEqual(
            str(self.failureResultOf(d, ConnectError).value), "Connection refused: 127.0.0.1:5222"
        )

    def test_timeout(self):
        """A connect timeout reads 'Connection timed out after N ms: address:port'."""
        d = self.connector(allow_private=True, timeout=5.0).connect("lab.example", 5222, self.proto)
        self.refuse(reason=error.TimeoutError())
        self.assertEqual(
            str(self.failureResultOf(d, ConnectError).value),
            "Connection timed out after 5000 ms: 192.0.2.1:5222",
        )

    def test_mixed_reasons(self):
        """Different reasons are each reported, joined with '; '."""
        d = self.connector().connect("two.example", 5222, self.proto)
        self.refuse(reason=error.ConnectError(113, "No route to host"))
        self.refuse(reason=error.TimeoutError())
        self.assertEqual(
            str(self.failureResultOf(d, ConnectError).value),
            "No route to host: 8.8.8.8:5222; Connection timed out after 5000 ms: 8.8.4.4:5222",
        )

    # -- cancellation

    def test_cancel_during_resolution(self):
        """Cancelling while resolving cancels the resolution; nothing is dialled."""
        d = self.connector().connect("slow.example", 5222, self.proto)
        self.assertNoResult(d)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.resolver.cancelled, ["slow.example"])
        self.assertEqual(self.dialled(), [])
        self.assertClean()

    def test_deadline_abandons_system_lookup(self):
        """Through the system resolver: the probe's deadline (a cancel) abandons a lookup
        stuck in getaddrinfo at once, nothing is dialled, and the late answer is dropped
        (its address never reaches the policy or the dialler)."""
        threads = FakeThreads()
        slots = Slots(1, 0)
        system = SystemResolver(
            threads, slots, lambda *a: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", 0))]
        )
        connector = Connector(self.reactor, system, Policy(), 5.0)
        d = connector.connect("stuck.example", 5222, self.proto)
        d.addTimeout(5, self.reactor)
        self.reactor.advance(5)
        self.failureResultOf(d, defer.TimeoutError)
        self.assertEqual((system.abandoned, slots.held), (1, 1))
        # The one thread is stuck: the next probe by name is refused at once, not queued.
        refused = connector.connect("next.example", 5222, self.proto)
        self.assertIn("busy", str(self.failureResultOf(refused, DNSError).value))
        threads.finish()
        self.assertEqual((system.abandoned, slots.held), (0, 0))
        self.assertEqual(self.dialled(), [])
        self.assertClean()

    def test_cancel_during_dial(self):
        """Cancelling while dialling stops the connector; no other address is tried."""
        d = self.connector().connect("two.example", 5222, self.proto)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(len(self.reactor.connectors), 1)
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)
        self.assertEqual(self.dialled(), [("8.8.8.8", 5222)])
        self.assertEqual(self.proto.made, 0)
        self.assertClean()

    def test_cancel_during_second_dial(self):
        """Cancelling during the second attempt stops that connector too."""
        d = self.connector().connect("two.example", 5222, self.proto)
        self.refuse()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(len(self.reactor.connectors), 2)
        self.assertTrue(self.reactor.connectors[1].stoppedConnecting)
        self.assertClean()

    def test_cancel_after_connect_is_noop(self):
        """Once connected, cancelling the fired Deferred changes nothing."""
        d = self.connector().connect("two.example", 5222, self.proto)
        transport = self.accept()
        self.assertIs(self.successResultOf(d), self.proto)
        d.cancel()
        self.assertFalse(transport.disconnecting)

    # -- direct TLS

    def test_direct_tls(self):
        """With tls_context, the protocol is wrapped in TLS: the first bytes are a ClientHello."""
        d = self.connector().connect(
            "two.example", 5223, self.proto, tls_context=optionsForClientTLS("two.example")
        )
        transport = self.accept()
        self.assertIs(self.successResultOf(d), self.proto)
        self.assertEqual(transport.value()[:1], b"\x16")  # TLS handshake record
        self.assertIsNot(self.proto.transport, transport)  # speaks through TLS
        self.proto.transport.abortConnection()


class DescribeTests(SynchronousTestCase):
    def test_reasons(self):
        """Connection errors are described in a short, stable phrase."""
        cases = [
            (error.ConnectionRefusedError(111, "Connection refused"), "Connection refused"),
            (error.TimeoutError(), "Connection timed out after 2500 ms"),
            (error.TCPTimedOutError(110, "Connection timed out"), "Connection timed out"),
            (error.NoRouteError(), "No route to host"),
            (error.NoRouteError(101, "Network is unreachable"), "Network is unreachable"),
            (error.ConnectError(113, "No route to host"), "No route to host"),
            (error.ConnectError(), "An error occurred while connecting"),
        ]
        for exc, text in cases:
            self.assertEqual(describe_connect_failure(exc, 2.5), text)


class AdmitTests(ConnectorTests):
    """The C{admit} hook (C{--per-target-rate}) sees every address before it is dialled."""

    def connector(self, allow_private=False, timeout=5.0):
        self.admitted = []
        return Connector(
            self.reactor, self.resolver, Policy(allow_private), timeout, admit=self.admit
        )

    def admit(self, address):
        if address in getattr(self, "refuse_admission", ()):
            raise RateLimited(f"Too many probes of {address}", "target", 30)
        self.admitted.append(address)

    def test_admitted_before_each_dial(self):
        """Each address is admitted just before it is dialled, in order."""
        d = self.connector().connect("xmpp.example", 5222, self.proto)
        self.assertEqual(self.admitted, ["8.8.8.8"])
        self.refuse()
        self.assertEqual(self.admitted, ["8.8.8.8", "2606:4700::1111"])
        self.accept()
        self.successResultOf(d)

    def test_refused_admission_stops(self):
        """A refused admission fails the connection at once; nothing is dialled."""
        self.refuse_admission = {"8.8.8.8"}
        d = self.connector().connect("xmpp.example", 5222, self.proto)
        f = self.failureResultOf(d, RateLimited)
        self.assertEqual(f.value.retry_after, 30)
        self.assertEqual(self.dialled(), [])
        self.assertClean()


# -- on loopback, with the real reactor: TCP_NODELAY on the XMPP connection


def _no_delay(sock) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


@pytest.mark.parametrize("direct_tls", [False, True])
@pytest_twisted.ensureDeferred
async def test_no_delay_on_loopback(direct_tls):
    """
    An XMPP connection the connector makes has TCP_NODELAY set on its socket
    (XMPPClientProtocol.connectionMade), also under direct TLS, where the
    protocol's transport is the TLS layer over the TCP one.
    """
    from hostile import HostileFactory, Scripted, settle
    from twisted.internet import reactor

    silent = HostileFactory(Scripted, script=[])
    listening = reactor.listenTCP(0, silent, interface="127.0.0.1")
    try:
        connector = Connector(reactor, FakeResolver(), Policy(allow_private=True), 5.0)
        proto = XMPPClientProtocol(reactor)
        tls = optionsForClientTLS("localhost") if direct_tls else None
        await connector.connect("127.0.0.1", listening.getHost().port, proto, tls_context=tls)
        tcp = proto.transport.transport if direct_tls else proto.transport
        assert (tcp is proto.transport) is not direct_tls
        assert _no_delay(tcp.getHandle())
        await settle(lambda: silent.live, 10)
        assert silent.live
        proto.transport.abortConnection()
        await settle(lambda: not silent.live, 10)
        assert not silent.live
    finally:
        await listening.stopListening()
