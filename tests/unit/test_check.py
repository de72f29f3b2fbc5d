"""
Tests for portofcall_xmpp.check on a Clock, with fake resolvers and a fake
connector whose connections never complete: the bound on connections, the
overall timeout, and cancellation (nothing left behind: no connection
attempt, no timer).
"""

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from portofcall_xmpp import check, flows
from portofcall_xmpp.errors import DNSError
from portofcall_xmpp.policy import Policy
from portofcall_xmpp.resolve import SRVNameNotFound, SRVRecord
from portofcall_xmpp.validate import CheckRequest

DOMAIN = "example.com"


class Resolver:
    """SRV, alias and address answers from dicts, at once."""

    def __init__(self, records, addresses):
        self.records = records
        self.addresses = addresses

    def for_probe(self):
        return self

    def close(self):
        pass

    def lookup_srv(self, name, budget=None):
        if name in self.records:
            return succeed(self.records[name])
        return fail(SRVNameNotFound(f"SRV lookup failed for {name}: no such name (NXDOMAIN)"))

    def lookup_alias(self, name, budget=None):
        return succeed(None)

    def resolve(self, host, budget=None):
        if host in self.addresses:
            return succeed(list(self.addresses[host]))
        return fail(DNSError(f"DNS lookup failed for {host}: no such domain (NXDOMAIN)"))


class Hanging:
    """A connector whose connection attempts never complete (until cancelled)."""

    def __init__(self):
        self.attempts: list[Deferred] = []
        self.dialled: list[tuple[str, int]] = []

    def connect(self, host, port, protocol, tls_context=None):
        d = Deferred()
        self.attempts.append(d)
        self.dialled.append((host, port))
        return d

    def pending(self):
        return [d for d in self.attempts if not d.called]


def harness(targets=1, timeout=60.0):
    """A check of DOMAIN whose client SRV record has C{targets} targets."""
    clock = Clock()
    records = {
        f"_xmpp-client._tcp.{DOMAIN}": [
            SRVRecord(0, 0, 5222, f"t{i}.{DOMAIN}") for i in range(targets)
        ]
    }
    addresses = {f"t{i}.{DOMAIN}": [f"93.184.216.{i + 1}"] for i in range(targets)}
    resolver = Resolver(records, addresses)
    connector = Hanging()
    env = flows.Environment(
        connect=connector.connect,
        clock=clock,
        read_timeout=5.0,
        resolver=resolver,
        srv_resolver=resolver,
        policy=Policy(),
    )
    req = CheckRequest(domain=DOMAIN, timeout=timeout, services=("client",))
    return clock, connector, check.check(env, req)


class CheckTests(SynchronousTestCase):
    def test_connections_bounded(self):
        """With 12 endpoints, at most 8 connection attempts are in flight."""
        clock, connector, d = harness(targets=12)
        self.assertEqual(len(connector.pending()), check.MAX_CONNECTIONS)
        d.cancel()
        self.failureResultOf(d, CancelledError)

    def test_cancel_leaves_nothing(self):
        """Cancelling the check (the client went away) cancels every connection
        attempt and leaves no timer."""
        clock, connector, d = harness(targets=3)
        # Three endpoints, and the host-meta fetch (port 443).
        self.assertEqual(len(connector.pending()), 4)
        self.assertEqual(sorted(port for _, port in connector.dialled), [443, 5222, 5222, 5222])
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(connector.pending(), [])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_timeout(self):
        """A check never outlives its timeout: endpoints not finished are reported
        with errorType timeout, the report is still there, no timer is left."""
        clock, connector, d = harness(targets=12, timeout=3.0)
        self.assertNoResult(d)
        clock.advance(3.0)
        result = self.successResultOf(d)
        endpoints = result.observations.endpoints
        self.assertEqual(len(endpoints), 12)
        self.assertEqual({e.failure.error.error_type for e in endpoints}, {"timeout"})
        self.assertEqual(result.status, "critical")
        self.assertIn("connect.client_unreachable", {f.id for f in result.findings})
        self.assertEqual(connector.pending(), [])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_events(self):
        """on_endpoint is called once per endpoint as it finishes."""
        clock = Clock()
        resolver = Resolver({}, {DOMAIN: ["93.184.216.34"]})
        connector = Hanging()
        env = flows.Environment(
            connect=connector.connect,
            clock=clock,
            resolver=resolver,
            srv_resolver=resolver,
            policy=Policy(),
        )
        seen = []
        d = check.check(env, CheckRequest(domain=DOMAIN, timeout=2.0), None, seen.append)
        self.assertEqual(seen, [])
        clock.advance(2.0)
        result = self.successResultOf(d)
        self.assertEqual([e.id for e in seen], [0, 1])
        self.assertEqual(
            [(e.service, e.port) for e in result.observations.endpoints],
            [("xmpp-client", 5222), ("xmpp-server", 5269)],
        )

    def test_dns_failure(self):
        """The check cannot run when its domain is an IP address: Failed, errorType dns."""
        clock = Clock()
        resolver = Resolver({}, {})
        env = flows.Environment(
            connect=None, clock=clock, resolver=resolver, srv_resolver=resolver, policy=Policy()
        )
        d = check.check(env, CheckRequest(domain="192.0.2.1"))
        failure = self.failureResultOf(d, flows.Failed)
        self.assertEqual(failure.value.error.error_type, "dns")
