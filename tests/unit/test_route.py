"""Tests for portofcall_xmpp.route: where a probe connects (host, SRV, fallback), and how."""

from __future__ import annotations

from dns_fakes import TableResolver
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from xmpp_fakes import FEATURES, HEADER, FakeConnector, ScriptedTransport

from portofcall_xmpp import flows, validate
from portofcall_xmpp.errors import ConnectError, DestinationBlocked, DNSError, FlowTimeout
from portofcall_xmpp.policy import Policy
from portofcall_xmpp.resolve import SRVLookupFailed, SRVRecord
from portofcall_xmpp.route import (
    MAX_ATTEMPTS,
    MAX_TARGETS,
    Attempt,
    Destination,
    Dialer,
    Record,
)

PUBLIC = "93.184.216.34"
PUBLIC2 = "93.184.216.35"
PUBLIC6 = "2606:2800:220:1::1"
PRIVATE = "10.0.0.7"

CLIENT = "_xmpp-client._tcp.example.com"
CLIENTS = "_xmpps-client._tcp.example.com"
SERVER = "_xmpp-server._tcp.example.com"
SERVERS = "_xmpps-server._tcp.example.com"


class Dials:
    """
    C{connect(host, port, protocol, tls_context=None)} for literal addresses:
    those in C{refuse} are refused, those in C{pending} never answer (their
    cancellation is recorded), the others connect C{protocol}.
    """

    def __init__(self, refuse=(), pending=()):
        self.calls = []
        self.refuse = set(refuse)
        self.pending = set(pending)
        self.cancelled = []

    def connect(self, host, port, protocol, tls_context=None):
        self.calls.append((host, port, tls_context is not None))
        if host in self.refuse:
            return fail(ConnectError(f"Connection refused: {host}:{port}"))
        if host in self.pending:
            return Deferred(lambda _: self.cancelled.append(host))
        address = (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)
        protocol.makeConnection(StringTransport(peerAddress=address))
        return succeed(protocol)


class DialerCase(SynchronousTestCase):
    def dialer(self, records=None, addresses=None, *, refuse=(), pending=(), **kw):
        """A Dialer for C{kw} (Destination fields; a client domain by default)."""
        self.dns = TableResolver(addresses, records)
        self.dials = Dials(refuse, pending)
        self.env = flows.Environment(
            self.dials.connect,
            Clock(),
            resolver=self.dns,
            srv_resolver=self.dns,
            policy=Policy(kw.pop("allow_private", False)),
        )
        fields = {"host": None, "port": 5222, "domain": "example.com", "tls": "auto", **kw}
        return Dialer(self.env, Destination(**fields), lambda: "a TLS context")

    def dial(self, dialer):
        self.proto = Protocol()
        return dialer.dial(self.proto)


class SRVTests(DialerCase):
    def test_merged_in_priority_order(self):
        """
        The xmpps- and xmpp- records are merged by priority; an xmpps- target
        is dialled with TLS from the first byte; a refused target is followed
        by the next, and every attempt is recorded.
        """
        dialer = self.dialer(
            {
                CLIENT: [
                    SRVRecord(10, 0, 5222, "late.example.com"),
                    SRVRecord(1, 0, 5222, "a.example.com"),
                ],
                CLIENTS: [SRVRecord(5, 0, 5223, "tls.example.com")],
            },
            {
                "a.example.com": [PUBLIC],
                "tls.example.com": [PUBLIC2],
                "late.example.com": [PUBLIC],
            },
            refuse=[PUBLIC],
        )
        connected = self.successResultOf(self.dial(dialer))
        self.assertEqual(
            (connected.host, connected.port, connected.direct), ("tls.example.com", 5223, True)
        )
        self.assertEqual(connected.context, "a TLS context")
        self.assertEqual(self.dials.calls, [(PUBLIC, 5222, False), (PUBLIC2, 5223, True)])
        resolved = dialer.resolution()
        self.assertEqual(resolved.via, "srv")
        self.assertEqual(resolved.record, Record("xmpps-client", "tls.example.com", 5223, 5, 0))
        self.assertEqual(
            resolved.attempts,
            (
                Attempt(
                    "a.example.com", 5222, PUBLIC, "starttls", f"Connection refused: {PUBLIC}:5222"
                ),
                Attempt("tls.example.com", 5223, PUBLIC2, "direct", None),
            ),
        )
        self.assertEqual(sorted(self.dns.asked[:2]), [CLIENT, CLIENTS])
        self.assertNotIn("late.example.com", self.dns.asked)
        self.assertEqual(self.dns.closed, 2)  # both sides of the request's Lookups

    def test_server_services(self):
        """A server-to-server destination asks the -server services, falls back to 5269."""
        dialer = self.dialer({}, {"example.com": [PUBLIC]}, server=True, port=5269)
        connected = self.successResultOf(self.dial(dialer))
        self.assertEqual(sorted(self.dns.asked[:2]), [SERVER, SERVERS])
        self.assertEqual(
            (connected.host, connected.port, connected.direct), ("example.com", 5269, False)
        )
        self.assertEqual(dialer.resolution().via, "fallback")

    def test_fallback(self):
        """Without records (or with a failed lookup) the domain itself on 5222, plaintext."""
        for failed in (None, SRVLookupFailed("SRV lookup failed: server failure (SERVFAIL)")):
            records = {} if failed is None else {CLIENT: failed, CLIENTS: failed}
            dialer = self.dialer(records, {"example.com": [PUBLIC]})
            connected = self.successResultOf(self.dial(dialer))
            self.assertEqual(
                (connected.host, connected.port, connected.direct), ("example.com", 5222, False)
            )
            self.assertEqual(
                dialer.resolution().attempts,
                (Attempt("example.com", 5222, PUBLIC, "starttls", None),),
            )
            self.assertEqual(
                (dialer.resolution().via, dialer.resolution().record), ("fallback", None)
            )

    def test_dot_means_not_offered(self):
        """A single '.' target on xmpp-client: DNSError, no fallback, nothing dialled."""
        dialer = self.dialer({CLIENT: [SRVRecord(0, 0, 0, ".")]}, {"example.com": [PUBLIC]})
        error = self.failureResultOf(self.dial(dialer), DNSError).value
        self.assertIn("not offered", error.message)
        self.assertIn(CLIENT, error.message)
        self.assertEqual(self.dials.calls, [])
        self.assertEqual(dialer.resolution().attempts, ())

    def test_dot_on_xmpps_only(self):
        """'.' on xmpps-client alone: the xmpp-client records, else the fallback, are used."""
        dot = [SRVRecord(0, 0, 0, ".")]
        dialer = self.dialer({CLIENTS: dot}, {"example.com": [PUBLIC]})
        self.assertEqual(self.successResultOf(self.dial(dialer)).host, "example.com")
        dialer = self.dialer(
            {CLIENTS: dot, CLIENT: [SRVRecord(0, 0, 5222, "x.example.com")]},
            {"x.example.com": [PUBLIC]},
        )
        self.assertEqual(self.successResultOf(self.dial(dialer)).host, "x.example.com")

    def test_tls_modes_choose_services(self):
        """tls direct asks only the xmpps- service (no fallback); none only the xmpp- one."""
        dialer = self.dialer({}, {"example.com": [PUBLIC]}, tls="direct")
        error = self.failureResultOf(self.dial(dialer), DNSError).value
        self.assertIn("no fallback", error.message)
        self.assertEqual(self.dns.asked, [CLIENTS])
        dialer = self.dialer(
            {CLIENTS: [SRVRecord(0, 0, 5223, "tls.example.com")]},
            {"example.com": [PUBLIC]},
            tls="none",
        )
        connected = self.successResultOf(self.dial(dialer))
        self.assertEqual((connected.host, connected.port), ("example.com", 5222))
        self.assertEqual(self.dns.asked[0], CLIENT)
        self.assertEqual(dialer.resolution().attempts[0].tls, "none")

    def test_blocked_target(self):
        """A record pointing at a private address: never dialled; DestinationBlocked, recorded."""
        dialer = self.dialer(
            {CLIENT: [SRVRecord(0, 0, 5222, "lan.example.com")]}, {"lan.example.com": [PRIVATE]}
        )
        error = self.failureResultOf(self.dial(dialer), DestinationBlocked).value
        self.assertIn(PRIVATE, error.message)
        self.assertEqual(self.dials.calls, [])
        [attempt] = dialer.resolution().attempts
        self.assertEqual(
            (attempt.target, attempt.address, attempt.error),
            ("lan.example.com", PRIVATE, error.message),
        )
        allowed = self.dialer(
            {CLIENT: [SRVRecord(0, 0, 5222, "lan.example.com")]},
            {"lan.example.com": [PRIVATE]},
            allow_private=True,
        )
        self.successResultOf(self.dial(allowed))
        self.assertEqual(self.dials.calls, [(PRIVATE, 5222, False)])

    def test_one_blocked_address_refuses_the_target(self):
        """A target with a public and a private address is refused whole; the next is used."""
        dialer = self.dialer(
            {
                CLIENT: [
                    SRVRecord(0, 0, 5222, "mixed.example.com"),
                    SRVRecord(1, 0, 5222, "ok.example.com"),
                ]
            },
            {"mixed.example.com": [PUBLIC, PRIVATE], "ok.example.com": [PUBLIC2]},
        )
        connected = self.successResultOf(self.dial(dialer))
        self.assertEqual(connected.host, "ok.example.com")
        self.assertEqual(self.dials.calls, [(PUBLIC2, 5222, False)])
        first, second = dialer.resolution().attempts
        self.assertEqual((first.target, first.address), ("mixed.example.com", PRIVATE))
        self.assertIn("not allowed", first.error)
        self.assertIsNone(second.error)

    def test_target_without_address(self):
        """A target that does not resolve is recorded (address null) and the next is tried."""
        dialer = self.dialer(
            {
                CLIENT: [
                    SRVRecord(0, 0, 5222, "gone.example.com"),
                    SRVRecord(1, 0, 5222, "ok.example.com"),
                ]
            },
            {"ok.example.com": [PUBLIC]},
        )
        self.assertEqual(self.successResultOf(self.dial(dialer)).host, "ok.example.com")
        first = dialer.resolution().attempts[0]
        self.assertEqual((first.target, first.address), ("gone.example.com", None))
        self.assertIn("DNS lookup failed for gone.example.com", first.error)

    def test_nothing_resolves(self):
        """When no target resolves, the probe fails dns, naming each failure."""
        dialer = self.dialer({CLIENT: [SRVRecord(0, 0, 5222, "gone.example.com")]}, {})
        error = self.failureResultOf(self.dial(dialer), DNSError).value
        self.assertIn("gone.example.com", error.message)

    def test_ipv6_refuses_ipv4_answers(self):
        """An IPv6-only target that refuses is followed by an IPv4 target that answers."""
        dialer = self.dialer(
            {
                CLIENT: [
                    SRVRecord(0, 0, 5222, "v6.example.com"),
                    SRVRecord(1, 0, 5222, "v4.example.com"),
                ]
            },
            {"v6.example.com": [PUBLIC6], "v4.example.com": [PUBLIC]},
            refuse=[PUBLIC6],
        )
        self.assertEqual(self.successResultOf(self.dial(dialer)).host, "v4.example.com")
        self.assertEqual(
            [(a.address, a.error is None) for a in dialer.resolution().attempts],
            [(PUBLIC6, False), (PUBLIC, True)],
        )
        self.assertEqual(self.proto.transport.getPeer().host, PUBLIC)

    def test_every_address_of_a_target(self):
        """Each address of a target is dialled in turn (IPv4 first) before the next target."""
        dialer = self.dialer(
            {CLIENT: [SRVRecord(0, 0, 5222, "two.example.com")]},
            {"two.example.com": [PUBLIC6, PUBLIC]},
            refuse=[PUBLIC],
        )
        self.successResultOf(self.dial(dialer))
        self.assertEqual([c[0] for c in self.dials.calls], [PUBLIC, PUBLIC6])

    def test_all_refused(self):
        """Every target refusing: ConnectError naming each attempt."""
        dialer = self.dialer(
            {
                CLIENT: [
                    SRVRecord(0, 0, 5222, "a.example.com"),
                    SRVRecord(1, 0, 5222, "b.example.com"),
                ]
            },
            {"a.example.com": [PUBLIC], "b.example.com": [PUBLIC2]},
            refuse=[PUBLIC, PUBLIC2],
        )
        error = self.failureResultOf(self.dial(dialer), ConnectError).value
        self.assertEqual(
            error.message,
            f"No server of example.com answered: Connection refused: {PUBLIC}:5222; "
            f"Connection refused: {PUBLIC2}:5222",
        )
        self.assertEqual(dialer.resolution().record.target, "b.example.com")

    def test_bounded_targets(self):
        """At most MAX_TARGETS targets are tried."""
        records = [SRVRecord(i, 0, 5222, f"t{i}.example.com") for i in range(MAX_TARGETS + 5)]
        addresses = {f"t{i}.example.com": [PUBLIC] for i in range(MAX_TARGETS + 5)}
        dialer = self.dialer({CLIENT: records}, addresses, refuse=[PUBLIC])
        self.failureResultOf(self.dial(dialer), ConnectError)
        self.assertEqual(len(self.dials.calls), MAX_TARGETS)
        self.assertEqual(len(dialer.resolution().attempts), MAX_TARGETS)

    def test_bounded_attempts(self):
        """At most MAX_ATTEMPTS connection attempts in all, however many addresses."""
        many = [f"93.184.216.{i}" for i in range(1, 7)]
        records = [SRVRecord(i, 0, 5222, f"t{i}.example.com") for i in range(MAX_TARGETS)]
        addresses = {f"t{i}.example.com": many for i in range(MAX_TARGETS)}
        dialer = self.dialer({CLIENT: records}, addresses, refuse=many)
        self.failureResultOf(self.dial(dialer), ConnectError)
        self.assertEqual(len(self.dials.calls), MAX_ATTEMPTS)

    def test_ip_domain(self):
        """An IP address as the domain: nothing to look up, the fallback port at that address."""
        dialer = self.dialer({}, {}, domain="[2606:2800:220:1::1]")
        connected = self.successResultOf(self.dial(dialer))
        self.assertEqual((connected.host, connected.port), (PUBLIC6, 5222))
        self.assertEqual(self.dns.asked, [])
        self.assertEqual(dialer.resolution().via, "fallback")

    def test_cancel_stops_lookup_and_attempt(self):
        """Cancelling stops the SRV lookup, or the connection attempt, in progress."""
        dialer = self.dialer({CLIENT: None, CLIENTS: []}, {})
        d = self.dial(dialer)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.dns.cancelled, [CLIENT])
        self.assertEqual(self.dns.closed, 2)
        dialer = self.dialer({}, {"example.com": [PUBLIC]}, pending=[PUBLIC])
        d = self.dial(dialer)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.dials.cancelled, [PUBLIC])
        self.assertEqual(self.dns.closed, 2)


class HostTests(DialerCase):
    def test_host(self):
        """A host: no SRV, one attempt with the address dialled."""
        dials = []

        def connect(host, port, protocol, tls_context=None):
            dials.append((host, port, tls_context))
            protocol.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", PUBLIC, port)))
            return succeed(protocol)

        env = flows.Environment(connect, Clock())
        dialer = Dialer(
            env, Destination("xmpp.example.com", 5223, "example.com", "direct"), lambda: "ctx"
        )
        connected = self.successResultOf(dialer.dial(Protocol()))
        self.assertEqual(dials, [("xmpp.example.com", 5223, "ctx")])
        self.assertEqual(
            (connected.host, connected.direct, connected.context), ("xmpp.example.com", True, "ctx")
        )
        resolved = dialer.resolution()
        self.assertEqual((resolved.via, resolved.record), ("host", None))
        self.assertEqual(
            resolved.attempts, (Attempt("xmpp.example.com", 5223, PUBLIC, "direct", None),)
        )

    def test_host_fails(self):
        """A host that refuses: the failure, recorded."""
        env = flows.Environment(
            FakeConnector(error=ConnectError("Connection refused: 192.0.2.1:5222")).connect, Clock()
        )
        dialer = Dialer(env, Destination("192.0.2.1", 5222, "example.com", "none"), lambda: None)
        self.failureResultOf(dialer.dial(Protocol()), ConnectError)
        self.assertEqual(
            dialer.resolution().attempts,
            (
                Attempt(
                    "192.0.2.1", 5222, "192.0.2.1", "none", "Connection refused: 192.0.2.1:5222"
                ),
            ),
        )


class FlowTests(SynchronousTestCase):
    def env(self, dns, script=()):
        self.clock = Clock()
        self.transport = ScriptedTransport(script)
        self.connector = FakeConnector(self.transport)
        return flows.Environment(
            self.connector.connect, self.clock, resolver=dns, srv_resolver=dns, policy=Policy()
        )

    def test_probe_by_domain(self):
        """/connect with domain alone: the SRV target, its port, and resolved in the result."""
        dns = TableResolver(
            {"xmpp.example.com": [PUBLIC]}, {CLIENT: [SRVRecord(0, 0, 5299, "xmpp.example.com")]}
        )
        env = self.env(dns, [(b"xml:lang='en'>", HEADER + FEATURES)])
        req = validate.parse_connect({"domain": "example.com"})
        result = self.successResultOf(flows.probe(env, req))
        self.assertEqual(self.connector.calls, [(PUBLIC, 5299)])
        self.assertIn(b'to="example.com"', self.transport.value())
        self.assertEqual(
            (result.host, result.port, result.domain), ("xmpp.example.com", 5299, "example.com")
        )
        self.assertEqual(result.resolved.via, "srv")
        self.assertEqual(
            result.resolved.record, Record("xmpp-client", "xmpp.example.com", 5299, 0, 0)
        )

    def test_deadline(self):
        """The overall timeout stops a silent lookup; the failure tells what was tried."""
        dns = TableResolver(
            {"gone.example.com": None}, {CLIENT: [SRVRecord(0, 0, 5222, "gone.example.com")]}
        )
        env = self.env(dns)
        req = validate.parse_login(
            {"domain": "example.com", "username": "a", "password": "p", "timeout": 3000}
        )
        d = flows.login(env, req)
        self.assertNoResult(d)
        self.clock.advance(3)
        failed = self.failureResultOf(d, flows.Failed).value
        self.assertIsInstance(failed.error, FlowTimeout)
        self.assertEqual(dns.cancelled, ["gone.example.com"])
        self.assertEqual(dns.closed, 2)
        self.assertEqual((failed.host, failed.port), ("example.com", 5222))
        self.assertEqual(failed.resolved.record.target, "gone.example.com")
        self.assertEqual(self.connector.calls, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_blocked_carries_resolution(self):
        """A flow refused by the policy raises DestinationBlocked with what was tried."""
        dns = TableResolver(
            {"lan.example.com": [PRIVATE]}, {CLIENT: [SRVRecord(0, 0, 5222, "lan.example.com")]}
        )
        d = flows.probe(self.env(dns), validate.parse_connect({"domain": "example.com"}))
        blocked = self.failureResultOf(d, DestinationBlocked).value
        self.assertEqual(blocked.resolved.attempts[0].address, PRIVATE)
        self.assertEqual(self.connector.calls, [])

    def test_failure_names_last_target(self):
        """A domain probe that fails reports the last target tried as host and port."""
        dns = TableResolver({}, {CLIENT: [SRVRecord(0, 0, 5299, "gone.example.com")]})
        failed = self.failureResultOf(
            flows.probe(self.env(dns), validate.parse_connect({"domain": "example.com"})),
            flows.Failed,
        ).value
        self.assertEqual(failed.error.error_type, "dns")
        self.assertEqual((failed.host, failed.port), ("gone.example.com", 5299))
