"""Tests for portofcall_xmpp.resolve: the system resolver and the --dns-server resolver."""

from __future__ import annotations

import socket

from dns_fakes import UDPMemoryReactor, last_query
from twisted.internet import defer
from twisted.internet._resolver import GAIResolver
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IHostnameResolver, IHostResolution, IResolutionReceiver
from twisted.internet.testing import MemoryReactorClock
from twisted.names import dns
from twisted.names import error as dns_error
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from portofcall_xmpp.errors import DNSError
from portofcall_xmpp.resolve import (
    MAX_CNAME_HOPS,
    DNSServerResolver,
    SystemResolver,
    order_addresses,
)

# ---------------------------------------------------------------------------
# Fakes


@implementer(IHostResolution)
class FakeResolution:
    def __init__(self, name, cancellable=True):
        self.name = name
        self.cancelled = False
        self._cancellable = cancellable

    def cancel(self):
        if not self._cancellable:
            raise NotImplementedError()
        self.cancelled = True


@implementer(IHostnameResolver)
class FakeHostnameResolver:
    """Records each resolveHostName call; the test drives the receiver."""

    def __init__(self, cancellable=True):
        self.calls = []
        self._cancellable = cancellable

    def resolveHostName(
        self,
        resolutionReceiver,
        hostName,
        portNumber=0,
        addressTypes=None,
        transportSemantics="TCP",
    ):
        verifyObject(IResolutionReceiver, resolutionReceiver)
        resolution = FakeResolution(hostName, self._cancellable)
        resolutionReceiver.resolutionBegan(resolution)
        self.calls.append((resolutionReceiver, hostName, resolution, addressTypes))
        return resolution


class FakeReactor:
    def __init__(self, name_resolver):
        self.nameResolver = name_resolver


def v4(host):
    return IPv4Address("TCP", host, 0)


def v6(host):
    return IPv6Address("TCP", host, 0)


class SyncThreadPool:
    """Runs the 'thread' work at once (for GAIResolver)."""

    def callInThreadWithCallback(self, onResult, func, *args, **kw):
        try:
            result = func(*args, **kw)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)


class SyncThreadReactor(MemoryReactorClock):
    def callFromThread(self, f, *args, **kw):
        f(*args, **kw)


# ---------------------------------------------------------------------------


class OrderTests(SynchronousTestCase):
    def test_order_addresses(self):
        """Addresses are canonicalised and deduplicated, IPv4 first, order otherwise kept."""
        self.assertEqual(
            order_addresses(
                ["2001:DB8::1", "192.0.2.2", "2001:db8::1", "192.0.2.1", "192.0.2.2", "nope"]
            ),
            ["192.0.2.2", "192.0.2.1", "2001:db8::1"],
        )


class SystemResolverTests(SynchronousTestCase):
    def setUp(self):
        self.names = FakeHostnameResolver()
        self.resolver = SystemResolver(FakeReactor(self.names))

    def test_all_addresses(self):
        """Every A and AAAA address is returned, deduplicated, IPv4 first."""
        d = self.resolver.resolve("xmpp.example")
        self.assertNoResult(d)
        [(receiver, name, _, types)] = self.names.calls
        self.assertEqual(name, "xmpp.example")
        self.assertIsNone(types)  # both families
        for addr in [v6("2001:db8::5"), v4("192.0.2.7"), v6("2001:db8::5"), v4("192.0.2.8")]:
            receiver.addressResolved(addr)
        receiver.addressResolved(UNIXAddress("/tmp/ignored"))
        receiver.resolutionComplete()
        self.assertEqual(self.successResultOf(d), ["192.0.2.7", "192.0.2.8", "2001:db8::5"])

    def test_no_address(self):
        """A name with no address fails with DNSError naming the host."""
        d = self.resolver.resolve("nx.example")
        self.names.calls[0][0].resolutionComplete()
        f = self.failureResultOf(d, DNSError)
        self.assertEqual(str(f.value), "DNS lookup failed for nx.example: no address found")
        self.assertEqual(f.value.error_type, "dns")

    def test_literals_skip_dns(self):
        """IP literals in any spelling resolve to their normalised address without a lookup."""
        cases = {
            "2130706433": ["127.0.0.1"],
            "0x7f.1": ["127.0.0.1"],
            "127.0.0.1": ["127.0.0.1"],
            "[::1]": ["::1"],
            "2001:DB8::0:1": ["2001:db8::1"],
        }
        for host, expected in cases.items():
            self.assertEqual(self.successResultOf(self.resolver.resolve(host)), expected)
        self.assertEqual(self.names.calls, [])

    def test_invalid_names(self):
        """Strings that are neither a literal nor a DNS name fail with DNSError, unresolved."""
        for host in [
            "fe80::1%eth0",
            "[example.com]",
            "",
            ".",
            "a..b",
            ".a",
            "a b",
            "x/y",
            "é" * 300,
            "a" * 254,
            "a" * 64 + ".example",
        ]:
            self.failureResultOf(self.resolver.resolve(host), DNSError)
        self.assertEqual(self.names.calls, [])

    def test_idna(self):
        """A non-ASCII name is looked up as its A-label form."""
        self.resolver.resolve("bücher.example")
        self.assertEqual(self.names.calls[0][1], "xn--bcher-kva.example")

    def test_cancel(self):
        """Cancelling fails with CancelledError, cancels the resolution, and drops late answers."""
        d = self.resolver.resolve("slow.example")
        receiver, _, resolution, _ = self.names.calls[0]
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(resolution.cancelled)
        receiver.addressResolved(v4("192.0.2.1"))
        receiver.resolutionComplete()  # no AlreadyCalledError

    def test_cancel_uncancellable_resolution(self):
        """A resolution that cannot be cancelled (getaddrinfo) is abandoned instead."""
        names = FakeHostnameResolver(cancellable=False)
        d = SystemResolver(FakeReactor(names)).resolve("slow.example")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        names.calls[0][0].resolutionComplete()

    def test_resolver_raises(self):
        """A resolver that raises synchronously gives a DNSError."""

        class Raising:
            def resolveHostName(self, receiver, name, *args):
                raise ValueError("boom")

        d = SystemResolver(FakeReactor(Raising())).resolve("x.example")
        self.assertIn("boom", str(self.failureResultOf(d, DNSError).value))

    def test_with_gai_resolver(self):
        """Through Twisted's GAIResolver, getaddrinfo's answers come back ordered."""
        seen = []

        def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
            seen.append((host, family, type))
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::1", port, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port)),
            ]

        reactor = SyncThreadReactor()
        reactor.nameResolver = GAIResolver(reactor, SyncThreadPool, getaddrinfo)
        d = SystemResolver(reactor).resolve("xmpp.example")
        self.assertEqual(self.successResultOf(d), ["192.0.2.1", "2001:db8::1"])
        self.assertEqual(seen, [("xmpp.example", socket.AF_UNSPEC, socket.SOCK_STREAM)])

    def test_with_gai_resolver_error(self):
        """A getaddrinfo error (unknown name) becomes a DNSError."""

        def getaddrinfo(*args, **kwargs):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        reactor = SyncThreadReactor()
        reactor.nameResolver = GAIResolver(reactor, SyncThreadPool, getaddrinfo)
        self.failureResultOf(SystemResolver(reactor).resolve("nx.example"), DNSError)


# ---------------------------------------------------------------------------
# DNSServerResolver with a fake twisted.names resolver


def a(name, address, ttl=60):
    return dns.RRHeader(name, dns.A, dns.IN, ttl, dns.Record_A(address, ttl))


def aaaa(name, address, ttl=60):
    return dns.RRHeader(name, dns.AAAA, dns.IN, ttl, dns.Record_AAAA(address, ttl))


def cname(name, target, ttl=60):
    return dns.RRHeader(name, dns.CNAME, dns.IN, ttl, dns.Record_CNAME(target, ttl))


class FakeNamesResolver:
    """lookupAddress/lookupIPV6Address return Deferreds the test fires."""

    def __init__(self):
        self.pending = []  # (type, name, deferred)
        self.cancelled = []

    def _lookup(self, kind, name):
        d = Deferred(lambda d: self.cancelled.append((kind, name)))
        self.pending.append((kind, name, d))
        return d

    def lookupAddress(self, name, timeout=None):
        return self._lookup("A", name)

    def lookupIPV6Address(self, name, timeout=None):
        return self._lookup("AAAA", name)

    def take(self, kind, name=None):
        for index, (k, n, d) in enumerate(self.pending):
            if k == kind and (name is None or n == name):
                del self.pending[index]
                return d
        raise AssertionError(f"no pending {kind} lookup for {name!r}: {self.pending}")

    def answer(self, kind, records, name=None):
        self.take(kind, name).callback((records, [], []))

    def fail(self, kind, exc, name=None):
        self.take(kind, name).errback(exc)


class DNSServerResolverTests(SynchronousTestCase):
    def setUp(self):
        self.names = FakeNamesResolver()
        self.resolver = DNSServerResolver(None, "192.0.2.53", 53, resolver=self.names)

    def test_a_and_aaaa(self):
        """A and AAAA are both queried; the answers are merged, IPv4 first, deduplicated."""
        d = self.resolver.resolve("xmpp.example")
        self.assertEqual(
            sorted((k, n) for k, n, _ in self.names.pending),
            [("A", b"xmpp.example"), ("AAAA", b"xmpp.example")],
        )
        self.names.answer(
            "AAAA", [aaaa("xmpp.example", "2001:db8::1"), aaaa("xmpp.example", "2001:db8::1")]
        )
        self.assertNoResult(d)
        self.names.answer("A", [a("xmpp.example", "192.0.2.2"), a("XMPP.example", "192.0.2.1")])
        self.assertEqual(self.successResultOf(d), ["192.0.2.2", "192.0.2.1", "2001:db8::1"])

    def test_trailing_dot(self):
        """A fully qualified name (trailing dot) matches the records of the name."""
        d = self.resolver.resolve("xmpp.example.")
        self.names.answer("A", [a("xmpp.example", "192.0.2.2")])
        self.names.answer("AAAA", [])
        self.assertEqual(self.successResultOf(d), ["192.0.2.2"])

    def test_cname_chain_in_answers(self):
        """A CNAME chain in the answer section is followed to the addresses at its end."""
        d = self.resolver.resolve("www.example")
        self.names.answer(
            "A",
            [
                cname("www.example", "a.example"),
                a("other.example", "192.0.2.99"),  # not on the chain: ignored
                cname("a.example", "b.example"),
                a("b.example", "192.0.2.10"),
            ],
        )
        self.names.answer("AAAA", [cname("www.example", "a.example")])
        # The AAAA chain ended at a.example without records: asked again there.
        self.names.answer("AAAA", [aaaa("a.example", "2001:db8::a")], name=b"a.example")
        self.assertEqual(self.successResultOf(d), ["192.0.2.10", "2001:db8::a"])

    def test_cname_loop(self):
        """A CNAME loop fails after MAX_CNAME_HOPS links with DNSError."""
        d = self.resolver.resolve("loop.example")
        loop = [cname("loop.example", "pool.example"), cname("pool.example", "loop.example")]
        self.names.answer("A", loop)
        self.names.answer("AAAA", loop)
        f = self.failureResultOf(d, DNSError)
        self.assertIn(f"CNAME chain longer than {MAX_CNAME_HOPS}", str(f.value))

    def test_long_chain_across_queries(self):
        """The hop bound also holds across re-queries of a chain's end."""
        d = self.resolver.resolve("h0.example")
        for kind in ("A", "AAAA"):
            for hop in range(MAX_CNAME_HOPS + 1):
                name = f"h{hop}.example".encode()
                self.names.answer(kind, [cname(name, f"h{hop + 1}.example")], name=name)
        self.assertEqual(self.names.pending, [])
        self.failureResultOf(d, DNSError)

    def test_nxdomain(self):
        """NXDOMAIN fails with DNSError('DNS lookup failed for <host>: no such domain ...')."""
        d = self.resolver.resolve("nx.example")
        self.names.fail("A", dns_error.DNSNameError("nx"))
        self.names.fail("AAAA", dns_error.DNSNameError("nx"))
        f = self.failureResultOf(d, DNSError)
        self.assertEqual(
            str(f.value), "DNS lookup failed for nx.example: no such domain (NXDOMAIN)"
        )

    def test_no_records(self):
        """A name with neither A nor AAAA records fails with DNSError."""
        d = self.resolver.resolve("empty.example")
        self.names.answer("A", [])
        self.names.answer("AAAA", [dns.RRHeader("empty.example", dns.MX, dns.IN, 60)])
        f = self.failureResultOf(d, DNSError)
        self.assertEqual(str(f.value), "DNS lookup failed for empty.example: no A or AAAA records")

    def test_one_family_fails(self):
        """One of A/AAAA failing while the other answers is fine."""
        d = self.resolver.resolve("half.example")
        self.names.fail("A", dns_error.DNSServerError("servfail"))
        self.names.answer("AAAA", [aaaa("half.example", "2001:db8::7")])
        self.assertEqual(self.successResultOf(d), ["2001:db8::7"])

    def test_both_fail(self):
        """When both queries fail, the DNSError gives the reasons."""
        d = self.resolver.resolve("down.example")
        self.names.fail("A", dns_error.DNSServerError("servfail"))
        self.names.fail("AAAA", defer.TimeoutError("timeout"))
        f = self.failureResultOf(d, DNSError)
        self.assertEqual(
            str(f.value),
            "DNS lookup failed for down.example: server failure (SERVFAIL); "
            "the DNS server did not answer",
        )

    def test_cancel(self):
        """Cancelling cancels both queries and fails with CancelledError."""
        d = self.resolver.resolve("slow.example")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(
            sorted(self.names.cancelled), [("A", b"slow.example"), ("AAAA", b"slow.example")]
        )

    def test_cancel_after_one_answer(self):
        """Cancelling after one family answered cancels the other and fails the lookup."""
        d = self.resolver.resolve("slow.example")
        self.names.answer("A", [a("slow.example", "192.0.2.1")])
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.names.cancelled, [("AAAA", b"slow.example")])

    def test_cancel_during_requery(self):
        """Cancelling while a CNAME target is being queried cancels that query."""
        d = self.resolver.resolve("www.example")
        self.names.answer("A", [cname("www.example", "cdn.example")])
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertIn(("A", b"cdn.example"), self.names.cancelled)

    def test_literals_skip_dns(self):
        """IP literals never reach the DNS server."""
        self.assertEqual(self.successResultOf(self.resolver.resolve("127.1")), ["127.0.0.1"])
        self.assertEqual(self.successResultOf(self.resolver.resolve("[::1]")), ["::1"])
        self.assertEqual(self.names.pending, [])

    def test_invalid_names(self):
        """A zone-scoped address or a bracketed name fails with DNSError, unqueried."""
        self.failureResultOf(self.resolver.resolve("fe80::1%eth0"), DNSError)
        self.failureResultOf(self.resolver.resolve("[x.example]"), DNSError)
        self.assertEqual(self.names.pending, [])

    def test_server_must_be_an_address(self):
        """The DNS server is given as an IP address; a name is a ValueError."""
        self.assertRaises(ValueError, DNSServerResolver, MemoryReactorClock(), "dns.example", 53)


# ---------------------------------------------------------------------------
# DNSServerResolver with the real twisted.names client over a fake UDP reactor


def reply(port, answers=(), rcode=dns.OK):
    """Answer the last query written on C{port}."""
    query, addr = last_query(port)
    response = dns.Message(id=query.id, answer=1, rCode=rcode)
    response.queries = query.queries
    response.answers = list(answers)
    port.protocol.datagramReceived(response.toStr(), addr)


def port_for(reactor, record_type):
    [port] = [p for p in reactor.listening() if last_query(p)[0].queries[0].type == record_type]
    return port


class DNSServerResolverUDPTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = UDPMemoryReactor()
        self.resolver = DNSServerResolver(self.reactor, "192.0.2.53", 5353, timeout=(1, 3))

    def test_queries_and_answers(self):
        """A and AAAA go to the configured server; answers resolve; nothing is left pending."""
        d = self.resolver.resolve("xmpp.example")
        self.assertEqual(len(self.reactor.listening()), 2)
        a_port = port_for(self.reactor, dns.A)
        query, addr = last_query(a_port)
        self.assertEqual(addr, ("192.0.2.53", 5353))
        self.assertEqual(query.queries[0].name, dns.Name("xmpp.example"))
        reply(a_port, [cname("xmpp.example", "host.example"), a("host.example", "192.0.2.1")])
        reply(port_for(self.reactor, dns.AAAA), [aaaa("xmpp.example", "2001:db8::1")])
        self.assertEqual(self.successResultOf(d), ["192.0.2.1", "2001:db8::1"])
        self.assertEqual(self.reactor.listening(), [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_nxdomain(self):
        """An NXDOMAIN answer fails with DNSError and leaves nothing pending."""
        d = self.resolver.resolve("nx.example")
        reply(port_for(self.reactor, dns.A), rcode=dns.ENAME)
        reply(port_for(self.reactor, dns.AAAA), rcode=dns.ENAME)
        self.assertIn("NXDOMAIN", str(self.failureResultOf(d, DNSError).value))
        self.assertEqual(self.reactor.listening(), [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_cancel(self):
        """Cancelling removes the retry timers and closes the UDP ports."""
        d = self.resolver.resolve("slow.example")
        self.assertNotEqual(self.reactor.getDelayedCalls(), [])
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.reactor.listening(), [])

    def test_cancel_after_retry(self):
        """Cancelling after a retry (second try in flight) also leaves nothing behind."""
        d = self.resolver.resolve("slow.example")
        self.reactor.advance(1)
        self.assertEqual(len(self.reactor.listening()), 2)  # the retries
        self.assertEqual(len(self.reactor.udp), 4)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.reactor.listening(), [])

    def test_timeout(self):
        """A server that never answers fails with DNSError once every try timed out."""
        d = self.resolver.resolve("slow.example")
        self.reactor.advance(1)
        self.assertNoResult(d)
        self.reactor.advance(3)
        f = self.failureResultOf(d, DNSError)
        self.assertEqual(
            str(f.value), "DNS lookup failed for slow.example: the DNS server did not answer"
        )
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.reactor.listening(), [])

    def test_concurrent_lookups_independent(self):
        """Two lookups of one name have their own queries: cancelling one spares the other."""
        first = self.resolver.resolve("xmpp.example")
        second = self.resolver.resolve("xmpp.example")
        self.assertEqual(len(self.reactor.listening()), 4)
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertNoResult(second)
        reply(port_for(self.reactor, dns.A), [a("xmpp.example", "192.0.2.1")])
        reply(port_for(self.reactor, dns.AAAA), [])
        self.assertEqual(self.successResultOf(second), ["192.0.2.1"])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.reactor.listening(), [])

    def test_ipv6_server(self):
        """An IPv6 DNS server is queried from an IPv6 socket."""
        interfaces = []
        reactor = UDPMemoryReactor()
        listen = reactor.listenUDP

        def listenUDP(port, protocol, interface="", maxPacketSize=8192):
            interfaces.append(interface)
            return listen(port, protocol, interface, maxPacketSize)

        reactor.listenUDP = listenUDP
        d = DNSServerResolver(reactor, "2001:db8::53", 53).resolve("x.example")
        self.assertEqual(interfaces, ["::", "::"])
        self.assertEqual(last_query(reactor.udp[0])[1], ("2001:db8::53", 53))
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(reactor.getDelayedCalls(), [])
