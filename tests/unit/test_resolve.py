"""Tests for portofcall_xmpp.resolve: the system resolver, the DNS server resolver
(A/AAAA and SRV, over fakes and over the real twisted.names client on a fake UDP
reactor), resolv.conf, and the bounds (service-wide slots, per-request Lookups)."""

from __future__ import annotations

import socket
import struct

from dns_fakes import FakeThreads, Pending, UDPMemoryReactor, last_query, scratch_path
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.names import dns
from twisted.names import error as dns_error
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from portofcall_xmpp.errors import DNSError
from portofcall_xmpp.resolve import (
    MAX_CNAME_HOPS,
    Budget,
    DNSServerResolver,
    Lookups,
    Slots,
    SRVLookupFailed,
    SRVNameNotFound,
    SRVRecord,
    SystemResolver,
    make_srv_resolver,
    order_addresses,
    read_resolv_conf,
)

# ---------------------------------------------------------------------------
# Fakes


class FakeGetaddrinfo:
    """getaddrinfo: records each call; answers from a table (else no address)."""

    def __init__(self, answers=None):
        self.calls = []
        self.answers = answers or {}

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        self.calls.append((host, port, family, type))
        answer = self.answers.get(host, [])
        if isinstance(answer, BaseException):
            raise answer
        return answer


def gai(*addresses):
    """getaddrinfo's answer for these addresses (TCP), plus one UNIX entry to ignore."""
    out = []
    for address in addresses:
        if ":" in address:
            out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, 0, 0, 0)))
        else:
            out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0)))
    out.append((socket.AF_UNIX, socket.SOCK_STREAM, 0, "", "/tmp/ignored"))
    return out


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
        self.threads = FakeThreads()
        self.gai = FakeGetaddrinfo()
        self.slots = Slots(2, 1)
        self.resolver = SystemResolver(self.threads, self.slots, self.gai)

    def test_all_addresses(self):
        """getaddrinfo (both families, TCP) runs in the pool; every address comes back,
        deduplicated, IPv4 first."""
        self.gai.answers["xmpp.example"] = gai(
            "2001:db8::5", "192.0.2.7", "2001:db8::5", "192.0.2.8"
        )
        d = self.resolver.resolve("xmpp.example")
        self.assertNoResult(d)
        self.assertEqual(self.gai.calls, [])  # not on the reactor thread
        self.threads.finish()
        self.assertEqual(
            self.gai.calls, [("xmpp.example", 0, socket.AF_UNSPEC, socket.SOCK_STREAM)]
        )
        self.assertEqual(self.successResultOf(d), ["192.0.2.7", "192.0.2.8", "2001:db8::5"])
        self.assertEqual(self.slots.held, 0)

    def test_no_address(self):
        """A name with no address fails with DNSError naming the host."""
        d = self.resolver.resolve("nx.example")
        self.threads.finish()
        f = self.failureResultOf(d, DNSError)
        self.assertEqual(str(f.value), "DNS lookup failed for nx.example: no address found")
        self.assertEqual(f.value.error_type, "dns")

    def test_gai_errors(self):
        """getaddrinfo's 'unknown name' is 'no address found'; other errors say what they are."""
        self.gai.answers["nx.example"] = socket.gaierror(
            socket.EAI_NONAME, "Name or service not known"
        )
        self.gai.answers["down.example"] = socket.gaierror(
            socket.EAI_AGAIN, "Temporary failure in name resolution"
        )
        nx = self.resolver.resolve("nx.example")
        down = self.resolver.resolve("down.example")
        self.threads.finish()
        self.threads.finish()
        self.assertEqual(
            str(self.failureResultOf(nx, DNSError).value),
            "DNS lookup failed for nx.example: no address found",
        )
        self.assertEqual(
            str(self.failureResultOf(down, DNSError).value),
            "DNS lookup failed for down.example: Temporary failure in name resolution",
        )

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
        self.assertEqual(self.threads.work, [])

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
        self.assertEqual(self.threads.work, [])

    def test_idna(self):
        """A non-ASCII name is looked up as its A-label form."""
        d = self.resolver.resolve("bücher.example")
        self.threads.finish()
        self.assertEqual(self.gai.calls[0][0], "xn--bcher-kva.example")
        self.failureResultOf(d, DNSError)

    def test_cancel_abandons(self):
        """Cancelling fails at once with CancelledError; the thread cannot be stopped, so
        its lookup is counted as abandoned and keeps its slot until it returns, and its
        answer is dropped."""
        self.gai.answers["slow.example"] = gai("192.0.2.1")
        d = self.resolver.resolve("slow.example")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual((self.resolver.abandoned, self.slots.held), (1, 1))
        self.threads.finish()  # no AlreadyCalledError
        self.assertEqual((self.resolver.abandoned, self.slots.held), (0, 0))

    def test_thread_refused(self):
        """A pool that refuses the work gives a DNSError and frees the slot."""

        def refuse(f):
            raise RuntimeError("boom")

        resolver = SystemResolver(refuse, self.slots, self.gai)
        d = resolver.resolve("x.example")
        self.assertIn("boom", str(self.failureResultOf(d, DNSError).value))
        self.assertEqual(self.slots.held, 0)

    def test_service_wide_cap(self):
        """At most slots.size lookups run (one thread each); slots.waiting more queue without
        a thread; one more fails at once as busy, rather than queueing without bound."""
        first = self.resolver.resolve("a.example")
        second = self.resolver.resolve("b.example")
        queued = self.resolver.resolve("c.example")
        refused = self.resolver.resolve("d.example")
        self.assertEqual(len(self.threads.running()), 2)
        self.assertEqual(self.slots.queued, 1)
        f = self.failureResultOf(refused, DNSError)
        self.assertEqual(
            str(f.value),
            "DNS lookup failed for d.example: the resolver is busy (2 lookups running); try again",
        )
        self.threads.finish()  # a.example ends: c.example gets its thread
        self.failureResultOf(first, DNSError)
        self.assertEqual(len(self.threads.running()), 2)
        self.assertEqual(self.slots.queued, 0)
        self.threads.finish()
        self.threads.finish()
        self.failureResultOf(second, DNSError)
        self.failureResultOf(queued, DNSError)
        self.assertEqual(self.slots.held, 0)

    def test_cancel_while_queued(self):
        """A lookup cancelled while queued leaves the queue and never gets a thread."""
        running = [self.resolver.resolve("a.example"), self.resolver.resolve("b.example")]
        queued = self.resolver.resolve("c.example")
        queued.cancel()
        self.failureResultOf(queued, CancelledError)
        self.assertEqual((self.slots.queued, self.resolver.abandoned), (0, 0))
        self.threads.finish()
        self.threads.finish()
        self.assertEqual(self.threads.running(), [])
        self.assertEqual(len(self.threads.work), 2)
        self.assertEqual(self.slots.held, 0)
        for d in running:
            self.failureResultOf(d, DNSError)

    def test_stuck_lookups_do_not_queue_forever(self):
        """getaddrinfo calls that never return hold every thread: new lookups queue up to
        the bound and are refused beyond it; once a thread returns, the queue moves."""
        for host in ("stuck1.example", "stuck2.example"):
            d = self.resolver.resolve(host)
            d.cancel()
            self.failureResultOf(d, CancelledError)
        self.assertEqual((self.resolver.abandoned, self.slots.held), (2, 2))
        waiting = self.resolver.resolve("later.example")
        self.failureResultOf(self.resolver.resolve("more.example"), DNSError)
        self.assertEqual(len(self.threads.work), 2)
        self.gai.answers["later.example"] = gai("192.0.2.9")
        self.threads.finish()
        self.threads.finish(1)  # later.example, in the thread freed
        self.assertEqual(self.successResultOf(waiting), ["192.0.2.9"])

    def test_budget(self):
        """A lookup spends two questions of the request's budget (A and AAAA); past the
        budget it fails without a thread."""
        budget = Budget(3)
        self.resolver.resolve("a.example", budget)
        d = self.resolver.resolve("b.example", budget)
        f = self.failureResultOf(d, DNSError)
        self.assertEqual(
            str(f.value),
            "DNS lookup failed for b.example: more than 3 DNS questions in one request",
        )
        self.assertEqual(len(self.threads.work), 1)


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


def queries(port):
    """Every DNS message written on C{port}, with where it went."""
    out = []
    for data, addr in port.written:
        message = dns.Message()
        message.fromStr(data)
        out.append((message, addr))
    return out


def reply(reactor, record_type, answers=(), rcode=dns.OK):
    """Answer the last question of C{record_type} asked on a listening port."""
    [(port, query, addr)] = [
        (port, query, addr)
        for port in reactor.listening()
        for query, addr in queries(port)[-2:]
        if query.queries[0].type == record_type
    ][-1:]
    response = dns.Message(id=query.id, answer=1, rCode=rcode)
    response.queries = query.queries
    response.answers = list(answers)
    port.protocol.datagramReceived(response.toStr(), addr)


class DNSServerResolverUDPTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = UDPMemoryReactor()
        self.resolver = DNSServerResolver(self.reactor, "192.0.2.53", 5353, timeout=(1, 3))

    def test_queries_and_answers(self):
        """A and AAAA go to the configured server on one socket; answers resolve; nothing
        is left pending."""
        d = self.resolver.resolve("xmpp.example")
        [port] = self.reactor.listening()
        asked = queries(port)
        self.assertEqual(sorted(q.queries[0].type for q, _ in asked), sorted([dns.A, dns.AAAA]))
        for query, addr in asked:
            self.assertEqual(addr, ("192.0.2.53", 5353))
            self.assertEqual(query.queries[0].name, dns.Name("xmpp.example"))
        reply(
            self.reactor,
            dns.A,
            [cname("xmpp.example", "host.example"), a("host.example", "192.0.2.1")],
        )
        reply(self.reactor, dns.AAAA, [aaaa("xmpp.example", "2001:db8::1")])
        self.assertEqual(self.successResultOf(d), ["192.0.2.1", "2001:db8::1"])
        self.assertEqual(self.reactor.listening(), [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_nxdomain(self):
        """An NXDOMAIN answer fails with DNSError and leaves nothing pending."""
        d = self.resolver.resolve("nx.example")
        reply(self.reactor, dns.A, rcode=dns.ENAME)
        reply(self.reactor, dns.AAAA, rcode=dns.ENAME)
        self.assertIn("NXDOMAIN", str(self.failureResultOf(d, DNSError).value))
        self.assertEqual(self.reactor.listening(), [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_cancel(self):
        """Cancelling removes the retry timers and closes the UDP port."""
        d = self.resolver.resolve("slow.example")
        self.assertNotEqual(self.reactor.getDelayedCalls(), [])
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.reactor.listening(), [])

    def test_cancel_after_retry(self):
        """Cancelling after a retry (second try in flight) also leaves nothing behind;
        the retries go out on the lookup's one socket."""
        d = self.resolver.resolve("slow.example")
        self.reactor.advance(1)
        [port] = self.reactor.listening()
        self.assertEqual(len(port.written), 4)  # A and AAAA, twice
        self.assertEqual(len(self.reactor.udp), 1)
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
        """Two lookups of one name have their own questions (and socket): cancelling one
        spares the other."""
        first = self.resolver.resolve("xmpp.example")
        second = self.resolver.resolve("xmpp.example")
        self.assertEqual(len(self.reactor.listening()), 2)
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertNoResult(second)
        reply(self.reactor, dns.A, [a("xmpp.example", "192.0.2.1")])
        reply(self.reactor, dns.AAAA, [])
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
        self.assertEqual(interfaces, ["::"])
        self.assertEqual(last_query(reactor.udp[0])[1], ("2001:db8::53", 53))
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_one_socket_per_request(self):
        """for_probe(): every question of one request (A, AAAA, SRV; many hosts) goes out
        on one socket, closed by close(); a lookup left running is withdrawn."""
        bound = self.resolver.for_probe()
        first = bound.resolve("a.example")
        second = bound.resolve("b.example")
        srv = bound.lookup_srv("_xmpp-client._tcp.example")
        [port] = self.reactor.listening()
        self.assertEqual(len(port.written), 5)
        reply(self.reactor, dns.SRV, [])
        self.assertEqual(self.successResultOf(srv), [])
        self.assertEqual(len(self.reactor.listening()), 1)  # still open for the request
        first.cancel()
        second.cancel()
        self.failureResultOf(first, CancelledError)
        self.failureResultOf(second, CancelledError)
        bound.close()
        self.assertEqual(self.reactor.listening(), [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])


# ---------------------------------------------------------------------------
# SRV: DNSServerResolver.lookup_srv over a fake IResolver


def rr(name, payload):
    return dns.RRHeader(name, payload.TYPE, dns.IN, 60, payload)


def srv_rr(name, priority, weight, port, target):
    return rr(name, dns.Record_SRV(priority, weight, port, target))


class FakeIResolver(Pending):
    def lookupService(self, name, timeout=None):
        return self.new(name.decode("ascii") if isinstance(name, bytes) else name)


class LookupSRVTests(SynchronousTestCase):
    def setUp(self):
        self.fake = FakeIResolver()
        self.resolver = DNSServerResolver(None, "192.0.2.53", resolver=self.fake)

    def test_records(self):
        """SRV records of the name are returned as given; records for other names are ignored."""
        d = self.resolver.lookup_srv("_xmpp-client._tcp.example.com")
        self.fake.fire(
            "_xmpp-client._tcp.example.com",
            (
                [
                    srv_rr("_xmpp-client._tcp.example.com", 5, 10, 5222, "xmpp.example.com"),
                    srv_rr("_XMPP-Client._tcp.Example.com", 10, 0, 5223, "Other.example.com."),
                    srv_rr("_xmpp-client._tcp.elsewhere.com", 1, 0, 1, "evil.example"),
                    rr("xmpp.example.com", dns.Record_A("192.0.2.1")),
                ],
                [],
                [],
            ),
        )
        self.assertEqual(
            self.successResultOf(d),
            [
                SRVRecord(5, 10, 5222, "xmpp.example.com"),
                SRVRecord(10, 0, 5223, "Other.example.com"),
            ],
        )

    def test_root_target(self):
        """The root target is reported as "."."""
        d = self.resolver.lookup_srv("_xmpp-client._tcp.example.com")
        self.fake.fire(
            "_xmpp-client._tcp.example.com",
            ([srv_rr("_xmpp-client._tcp.example.com", 0, 0, 0, b"")], [], []),
        )
        self.assertEqual(self.successResultOf(d), [SRVRecord(0, 0, 0, ".")])

    def test_no_records(self):
        """An answer without SRV records for the name is []."""
        d = self.resolver.lookup_srv("_xmpp-client._tcp.example.com")
        self.fake.fire("_xmpp-client._tcp.example.com", ([], [], []))
        self.assertEqual(self.successResultOf(d), [])

    def test_cname_in_answer(self):
        """A CNAME chain in the answer is followed to the SRV records."""
        d = self.resolver.lookup_srv("_xmpp-client._tcp.example.com")
        self.fake.fire(
            "_xmpp-client._tcp.example.com",
            (
                [
                    cname("_xmpp-client._tcp.example.com", "_xmpp-client._tcp.hosted.net"),
                    cname("_xmpp-client._tcp.hosted.net", "srv.hosted.net"),
                    srv_rr("srv.hosted.net", 0, 0, 5222, "xmpp.hosted.net"),
                ],
                [],
                [],
            ),
        )
        self.assertEqual(self.successResultOf(d), [SRVRecord(0, 0, 5222, "xmpp.hosted.net")])

    def test_cname_requeried(self):
        """A chain that ends without SRV records is asked again from where it ended."""
        d = self.resolver.lookup_srv("_xmpp-client._tcp.example.com")
        self.fake.fire(
            "_xmpp-client._tcp.example.com",
            ([cname("_xmpp-client._tcp.example.com", "srv.hosted.net")], [], []),
        )
        self.assertEqual(self.fake.calls[-1], "srv.hosted.net")
        self.fake.fire("srv.hosted.net", ([srv_rr("srv.hosted.net", 0, 0, 1, "x.net")], [], []))
        self.assertEqual(self.successResultOf(d), [SRVRecord(0, 0, 1, "x.net")])

    def test_cname_loop(self):
        """A CNAME loop fails after the longest chain allowed."""
        d = self.resolver.lookup_srv("a.example")
        self.fake.fire(
            "a.example",
            ([cname("a.example", "b.example"), cname("b.example", "a.example")], [], []),
        )
        f = self.failureResultOf(d, SRVLookupFailed)
        self.assertIn("CNAME chain longer than", str(f.value))

    def test_nxdomain(self):
        """NXDOMAIN fails with SRVNameNotFound."""
        d = self.resolver.lookup_srv("_xmpp-client._tcp.example.com")
        self.fake.fire("_xmpp-client._tcp.example.com", dns_error.DNSNameError())
        f = self.failureResultOf(d, SRVNameNotFound)
        self.assertEqual(
            str(f.value),
            "SRV lookup failed for _xmpp-client._tcp.example.com: no such name (NXDOMAIN)",
        )
        self.assertEqual(f.value.error_type, "dns")

    def test_errors(self):
        """Server failures and timeouts fail with SRVLookupFailed, in words; not SRVNameNotFound."""
        cases = [
            (dns_error.DNSServerError(), "server failure (SERVFAIL)"),
            (dns_error.DNSQueryRefusedError(), "query refused (REFUSED)"),
            (defer.TimeoutError(), "the DNS server did not answer"),
        ]
        for error, words in cases:
            d = self.resolver.lookup_srv("x.example")
            self.fake.fire("x.example", error)
            f = self.failureResultOf(d, SRVLookupFailed)
            self.assertNotIsInstance(f.value, SRVNameNotFound)
            self.assertEqual(str(f.value), f"SRV lookup failed for x.example: {words}")

    def test_cancel(self):
        """Cancelling cancels the query in flight."""
        d = self.resolver.lookup_srv("x.example")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.fake.cancelled, ["x.example"])


# ---------------------------------------------------------------------------
# make_srv_resolver: the real twisted.names client over a fake reactor


def response_to(query, answers=(), rcode=dns.OK, trunc=False):
    response = dns.Message(id=query.id, answer=1, rCode=rcode, trunc=trunc)
    response.queries = query.queries
    response.answers = list(answers)
    return response


def udp_reply(port, answers=(), rcode=dns.OK, trunc=False):
    query, addr = last_query(port)
    port.protocol.datagramReceived(response_to(query, answers, rcode, trunc).toStr(), addr)


def tcp_connect(reactor):
    """Connect the last connectTCP; return (protocol, transport, query message)."""
    host, port, factory, _timeout, _bind = reactor.tcpClients[-1]
    proto = factory.buildProtocol(IPv4Address("TCP", host, port))
    transport = StringTransport()
    proto.makeConnection(transport)
    data = transport.value()
    (length,) = struct.unpack("!H", data[:2])
    query = dns.Message()
    query.fromStr(data[2 : 2 + length])
    return proto, transport, query


def tcp_reply(proto, query, answers=(), rcode=dns.OK):
    data = response_to(query, answers, rcode).toStr()
    proto.dataReceived(struct.pack("!H", len(data)) + data)


NAME = "_xmpp-client._tcp.example.com"


class MakeSRVResolverTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = UDPMemoryReactor()
        self.resolver = make_srv_resolver(self.reactor, ("192.0.2.53", 5353), timeout=(1, 3))

    def assertNothingLeft(self):
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.reactor.listening(), [])

    def test_no_timer_at_rest(self):
        """Building the resolver schedules nothing (no resolv.conf re-read timer)."""
        self.assertNothingLeft()
        resolver = make_srv_resolver(self.reactor, None, resolv_conf=scratch_path(self))
        self.assertIsNotNone(resolver)
        self.assertNothingLeft()

    def test_query_over_udp(self):
        """The SRV question goes to the configured server; the answer comes back as records."""
        d = self.resolver.lookup_srv(NAME)
        [port] = self.reactor.listening()
        query, addr = last_query(port)
        self.assertEqual(addr, ("192.0.2.53", 5353))
        self.assertEqual(query.queries, [dns.Query(NAME, dns.SRV, dns.IN)])
        udp_reply(port, [srv_rr(NAME, 0, 5, 5222, "xmpp.example.com")])
        self.assertEqual(self.successResultOf(d), [SRVRecord(0, 5, 5222, "xmpp.example.com")])
        self.assertNothingLeft()

    def test_nxdomain_and_servfail(self):
        """NXDOMAIN and SERVFAIL from the wire are told apart."""
        d = self.resolver.lookup_srv(NAME)
        udp_reply(self.reactor.listening()[0], rcode=dns.ENAME)
        self.failureResultOf(d, SRVNameNotFound)
        d = self.resolver.lookup_srv(NAME)
        udp_reply(self.reactor.listening()[0], rcode=dns.ESERVER)
        f = self.failureResultOf(d, SRVLookupFailed)
        self.assertNotIsInstance(f.value, SRVNameNotFound)
        self.assertIn("SERVFAIL", str(f.value))
        self.assertNothingLeft()

    def test_no_answer(self):
        """A server that never answers fails once every try has timed out."""
        d = self.resolver.lookup_srv(NAME)
        self.reactor.advance(1)
        self.assertNoResult(d)
        self.reactor.advance(3)
        f = self.failureResultOf(d, SRVLookupFailed)
        self.assertEqual(
            str(f.value), f"SRV lookup failed for {NAME}: the DNS server did not answer"
        )
        self.assertNothingLeft()

    def test_cancel_udp(self):
        """Cancelling over UDP removes the retry timer and closes the port."""
        d = self.resolver.lookup_srv(NAME)
        self.reactor.advance(1)  # the retry is in flight
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertNothingLeft()

    def test_truncated_retried_over_tcp(self):
        """A truncated UDP answer is asked again over TCP, to the same server, on a connection."""
        d = self.resolver.lookup_srv(NAME)
        udp_reply(self.reactor.listening()[0], trunc=True)
        [(host, port, _factory, _timeout, _bind)] = self.reactor.tcpClients
        self.assertEqual((host, port), ("192.0.2.53", 5353))
        proto, transport, query = tcp_connect(self.reactor)
        self.assertEqual(query.queries, [dns.Query(NAME, dns.SRV, dns.IN)])
        self.assertNoResult(d)
        tcp_reply(
            proto, query, [srv_rr(NAME, 0, 0, 5222, f"xmpp{i}.example.com") for i in range(3)]
        )
        self.assertEqual(len(self.successResultOf(d)), 3)
        self.assertTrue(transport.disconnecting)
        self.assertNothingLeft()

    def test_tcp_timeout(self):
        """No answer over TCP fails (not retried over UDP) and closes the connection."""
        d = self.resolver.lookup_srv(NAME)
        udp_reply(self.reactor.listening()[0], trunc=True)
        _proto, transport, _query = tcp_connect(self.reactor)
        self.reactor.advance(4)  # sum of the UDP timeouts
        f = self.failureResultOf(d, SRVLookupFailed)
        self.assertIn("did not answer over TCP", str(f.value))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(self.reactor.udp), 1)
        self.assertNothingLeft()

    def test_tcp_connection_failed(self):
        """A refused TCP connection fails with SRVLookupFailed."""
        d = self.resolver.lookup_srv(NAME)
        udp_reply(self.reactor.listening()[0], trunc=True)
        [(_host, _port, factory, _timeout, _bind)] = self.reactor.tcpClients
        factory.clientConnectionFailed(
            self.reactor.connectors[-1], Failure(ConnectionRefusedError())
        )
        f = self.failureResultOf(d, SRVLookupFailed)
        self.assertIn("TCP connection to the DNS server failed", str(f.value))
        self.assertNothingLeft()

    def test_tcp_closed_early(self):
        """The server closing the TCP connection before answering fails the lookup."""
        d = self.resolver.lookup_srv(NAME)
        udp_reply(self.reactor.listening()[0], trunc=True)
        proto, _transport, _query = tcp_connect(self.reactor)
        proto.connectionLost(Failure(ConnectionRefusedError()))
        f = self.failureResultOf(d, SRVLookupFailed)
        self.assertIn("closed the TCP connection", str(f.value))
        self.assertNothingLeft()

    def test_cancel_while_connecting(self):
        """Cancelling before the TCP connection is made stops connecting."""
        d = self.resolver.lookup_srv(NAME)
        udp_reply(self.reactor.listening()[0], trunc=True)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(self.reactor.connectors[-1]._disconnected)
        self.assertNothingLeft()

    def test_cancel_over_tcp(self):
        """Cancelling while the TCP query is pending aborts the connection and removes its timer."""
        d = self.resolver.lookup_srv(NAME)
        udp_reply(self.reactor.listening()[0], trunc=True)
        _proto, transport, _query = tcp_connect(self.reactor)
        self.assertNotEqual(self.reactor.getDelayedCalls(), [])
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(transport.disconnecting)
        self.assertNothingLeft()

    def test_server_must_be_an_address(self):
        """--dns-server takes an IP address."""
        self.assertRaises(ValueError, make_srv_resolver, self.reactor, ("dns.example", 53))

    def test_ipv6_server(self):
        """An IPv6 server is asked from an IPv6 socket."""
        resolver = make_srv_resolver(self.reactor, ("2001:db8::53", 53))
        d = resolver.lookup_srv(NAME)
        [port] = self.reactor.listening()
        self.assertEqual(port.interface, "::")
        self.assertEqual(last_query(port)[1], ("2001:db8::53", 53))
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertNothingLeft()


class ResolvConfTests(SynchronousTestCase):
    def write(self, text):
        path = scratch_path(self)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_nameservers(self):
        """Each nameserver line in order, on port 53; comments, options, non-addresses skipped."""
        path = self.write(
            "# generated\n"
            "search example.com\n"
            "nameserver 192.0.2.1\n"
            ";nameserver 192.0.2.9\n"
            "nameserver dns.example\n"
            "options ndots:2\n"
            "nameserver 2001:db8::1  # v6\n"
        )
        self.assertEqual(read_resolv_conf(path), [("192.0.2.1", 53), ("2001:db8::1", 53)])

    def test_default(self):
        """No file, or no nameserver in it, means 127.0.0.1:53."""
        self.assertEqual(read_resolv_conf(scratch_path(self)), [("127.0.0.1", 53)])
        self.assertEqual(read_resolv_conf(self.write("search x\n")), [("127.0.0.1", 53)])

    def test_system_resolver_asks_resolv_conf(self):
        """Without --dns-server, questions go to resolv.conf's first name server."""
        reactor = UDPMemoryReactor()
        path = self.write("nameserver 192.0.2.7\nnameserver 192.0.2.8\n")
        resolver = make_srv_resolver(reactor, None, resolv_conf=path)
        d = resolver.lookup_srv(NAME)
        [port] = reactor.listening()
        self.assertEqual(last_query(port)[1], ("192.0.2.7", 53))
        udp_reply(port, [])
        self.assertEqual(self.successResultOf(d), [])
        self.assertEqual(reactor.getDelayedCalls(), [])


# ---------------------------------------------------------------------------
# Lookups: the bounds of one request


class FakeResolver(Pending):
    """Addresses and SRV records the test fires; records the budget it was given."""

    def __init__(self):
        super().__init__()
        self.budgets = []

    def resolve(self, host, budget=None):
        self.budgets.append(budget)
        return self.new(host)

    def lookup_srv(self, name, budget=None):
        self.budgets.append(budget)
        return self.new(name)


class LookupsTests(SynchronousTestCase):
    def setUp(self):
        self.fake = FakeResolver()
        self.lookups = Lookups(self.fake, self.fake, concurrent=2, hosts=3, questions=10)

    def test_per_request_concurrency(self):
        """At most `concurrent` address lookups of one request run at once; the others
        wait their turn (without a slot of the service's), in order."""
        waits = [self.lookups.addresses(f"h{i}.example") for i in range(3)]
        self.assertEqual(self.fake.calls, ["h0.example", "h1.example"])
        self.fake.fire("h1.example", ["192.0.2.1"])
        self.assertEqual(self.fake.calls, ["h0.example", "h1.example", "h2.example"])
        self.assertEqual(self.successResultOf(waits[1]), ["192.0.2.1"])
        self.fake.fire("h0.example", DNSError("DNS lookup failed for h0.example: nope"))
        self.fake.fire("h2.example", ["2001:db8::1", "192.0.2.2"])
        self.failureResultOf(waits[0], DNSError)
        self.assertEqual(self.successResultOf(waits[2]), ["192.0.2.2", "2001:db8::1"])

    def test_each_host_once(self):
        """A host asked twice is resolved once; each caller gets the outcome, also later."""
        first = self.lookups.addresses("x.example")
        second = self.lookups.addresses("x.example")
        self.fake.fire("x.example", ["192.0.2.1"])
        third = self.lookups.addresses("x.example")
        for d in (first, second, third):
            self.assertEqual(self.successResultOf(d), ["192.0.2.1"])
        self.assertEqual(self.fake.calls, ["x.example"])

    def test_host_cap(self):
        """Past `hosts` distinct hosts, a new one fails at once, unresolved; hosts already
        asked still answer."""
        waits = [self.lookups.addresses(f"h{i}.example") for i in range(3)]
        f = self.failureResultOf(self.lookups.addresses("h3.example"), DNSError)
        self.assertEqual(
            str(f.value),
            "DNS lookup failed for h3.example: not resolved: more than 3 hosts in one request",
        )
        self.assertNotIn("h3.example", self.fake.calls)
        again = self.lookups.addresses("h0.example")
        self.fake.fire("h0.example", ["192.0.2.1"])
        self.assertEqual(self.successResultOf(again), ["192.0.2.1"])
        self.lookups.close()
        for d in waits[1:]:
            self.failureResultOf(d, CancelledError)

    def test_one_budget_per_request(self):
        """Every lookup of the request spends the same question budget."""
        waits = [self.lookups.addresses("a.example"), self.lookups.srv("_xmpp-client._tcp.ex")]
        [budget, srv_budget] = self.fake.budgets
        self.assertIs(budget, srv_budget)
        self.assertEqual(budget.limit, 10)
        self.lookups.close()
        for d in waits:
            self.failureResultOf(d, CancelledError)

    def test_close_stops_everything(self):
        """close() cancels every lookup still running or waiting its turn (the deadline
        passed) and releases the request's resolvers."""
        waits = [self.lookups.addresses(f"h{i}.example") for i in range(3)]
        srv = self.lookups.srv("_xmpp-client._tcp.example")
        self.lookups.close()
        self.assertEqual(
            sorted(self.fake.cancelled), ["_xmpp-client._tcp.example", "h0.example", "h1.example"]
        )
        self.assertEqual(self.fake.outstanding(), [])
        for d in [*waits, srv]:
            self.failureResultOf(d, CancelledError)
        self.assertEqual(self.fake.closed, 2)  # the address and the SRV resolvers

    def test_caller_cancels_own_wait(self):
        """Cancelling one caller's wait spares the shared lookup and the other callers."""
        first = self.lookups.addresses("x.example")
        second = self.lookups.addresses("x.example")
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.fake.fire("x.example", ["192.0.2.1"])
        self.assertEqual(self.successResultOf(second), ["192.0.2.1"])


class BudgetTests(SynchronousTestCase):
    def test_questions_counted_across_cname_requeries(self):
        """Every question a lookup asks, CNAME re-queries included, is spent from the
        request's budget; past it, that family fails and says why."""
        names = FakeNamesResolver()
        resolver = DNSServerResolver(None, "192.0.2.53", resolver=names)
        budget = Budget(3)
        d = resolver.resolve("www.example", budget)
        self.assertEqual(budget.asked, 2)
        names.answer("A", [cname("www.example", "cdn.example")])
        self.assertEqual(budget.asked, 3)
        names.answer("AAAA", [cname("www.example", "cdn.example")])  # would re-ask: over
        names.answer("A", [a("cdn.example", "192.0.2.5")], name=b"cdn.example")
        self.assertEqual(self.successResultOf(d), ["192.0.2.5"])
        self.assertEqual(names.pending, [])
        d = resolver.resolve("more.example", budget)
        f = self.failureResultOf(d, DNSError)
        self.assertEqual(
            str(f.value),
            "DNS lookup failed for more.example: more than 3 DNS questions in one request",
        )

    def test_srv_over_budget(self):
        """An SRV question past the budget fails as SRVLookupFailed, unasked."""
        fake = FakeIResolver()
        resolver = DNSServerResolver(None, "192.0.2.53", resolver=fake)
        budget = Budget(0)
        f = self.failureResultOf(resolver.lookup_srv("x.example", budget), SRVLookupFailed)
        self.assertIn("more than 0 DNS questions", str(f.value))
        self.assertEqual(fake.calls, [])


class ServiceSlotsTests(SynchronousTestCase):
    def test_dns_server_lookups_capped(self):
        """A DNS server resolver runs at most slots.size lookups at once service-wide and
        refuses more than slots.waiting queued ones; a finished lookup lets the next run."""
        names = FakeNamesResolver()
        slots = Slots(1, 1)
        resolver = DNSServerResolver(None, "192.0.2.53", resolver=names, slots=slots)
        first = resolver.resolve("a.example")
        second = resolver.resolve("b.example")
        self.assertEqual([n for _, n, _ in names.pending], [b"a.example", b"a.example"])
        self.assertIn("busy", str(self.failureResultOf(resolver.resolve("c.example")).value))
        names.answer("A", [a("a.example", "192.0.2.1")])
        names.answer("AAAA", [])
        self.assertEqual(self.successResultOf(first), ["192.0.2.1"])
        self.assertEqual({n for _, n, _ in names.pending}, {b"b.example"})
        second.cancel()
        self.failureResultOf(second, CancelledError)
        self.assertEqual(slots.held, 0)
