"""Tests for portofcall_xmpp.srv (RFC 2782 order and the SRV lookup) and its JSON
(render.srv_report_json); the SRV resolver itself is tested in test_resolve.py."""

from __future__ import annotations

import random
from collections import Counter

import pytest_twisted
from dns_fakes import FakeThreads, Pending
from dns_server import start_dns_server
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.names import dns
from twisted.names.server import DNSServerFactory
from twisted.trial.unittest import SynchronousTestCase

from portofcall_xmpp import flows
from portofcall_xmpp.errors import DNSError, FlowTimeout, ProbeTimeout
from portofcall_xmpp.policy import Policy
from portofcall_xmpp.render import srv_report_json as to_json
from portofcall_xmpp.resolve import (
    PER_PROBE_CONCURRENT,
    PER_PROBE_HOSTS,
    DNSServerResolver,
    Slots,
    SRVLookupFailed,
    SRVNameNotFound,
    SRVRecord,
    SystemResolver,
    make_srv_resolver,
)
from portofcall_xmpp.srv import lookup, order_records
from portofcall_xmpp.validate import SRVRequest

NAMES = {
    "xmpp-client": "_xmpp-client._tcp.example.com",
    "xmpps-client": "_xmpps-client._tcp.example.com",
    "xmpp-server": "_xmpp-server._tcp.example.com",
    "xmpps-server": "_xmpps-server._tcp.example.com",
}

# Globally routable (allowed by the default policy) and not (blocked).
PUBLIC = "93.184.216.34"
PUBLIC6 = "2606:2800:220:1::1"
PRIVATE = "10.0.0.7"


# ---------------------------------------------------------------------------
# Fakes


class FakeSRVResolver(Pending):
    def lookup_srv(self, name, budget=None):
        return self.new(name)


class FakeAddressResolver(Pending):
    def resolve(self, host, budget=None):
        return self.new(host)


class ScriptedChoice:
    """randint that returns scripted values and records the ranges asked for."""

    def __init__(self, *values):
        self.values = list(values)
        self.ranges = []

    def randint(self, a, b):
        self.ranges.append((a, b))
        value = self.values.pop(0)
        assert a <= value <= b
        return value


def srv(priority, weight, port, target):
    return SRVRecord(priority, weight, port, target)


def nx(name):
    return SRVNameNotFound(f"SRV lookup failed for {name}: no such name (NXDOMAIN)")


def no_address(host, reason="no such domain (NXDOMAIN)"):
    return DNSError(f"DNS lookup failed for {host}: {reason}")


class Harness:
    """
    lookup() over fake resolvers and a Clock; with C{timeout}, the /srv flow
    (flows.srv), which gives the lookup its overall timeout.
    """

    def __init__(self, domain="example.com", *, timeout=None, policy=None, choose=None):
        self.clock = Clock()
        self.srv = FakeSRVResolver()
        self.addresses = FakeAddressResolver()
        if timeout is None:
            self.d = lookup(
                self.srv,
                self.addresses,
                domain,
                clock=self.clock,
                policy=policy or Policy(),
                choose=choose or random.Random(0),
            )
        else:
            env = flows.Environment(
                connect=None,
                clock=self.clock,
                resolver=self.addresses,
                srv_resolver=self.srv,
                policy=policy or Policy(),
            )
            self.d = flows.srv(env, SRVRequest(domain=domain, timeout=timeout))


# ---------------------------------------------------------------------------
# RFC 2782 order


class OrderTests(SynchronousTestCase):
    def test_priorities_ascending(self):
        """Records come lowest priority first, whatever order the answer had."""
        records = [srv(20, 0, 1, "c"), srv(5, 0, 1, "a"), srv(10, 0, 1, "b"), srv(5, 0, 2, "a2")]
        ordered = order_records(records, random.Random(1))
        self.assertEqual([r.priority for r in ordered], [5, 5, 10, 20])
        self.assertEqual({r.target for r in ordered[:2]}, {"a", "a2"})

    def test_running_sum_selection(self):
        """Within a priority: zero weights first, draw 0..sum, first running sum >= draw wins."""
        a, b, z = srv(1, 10, 1, "a"), srv(1, 20, 1, "b"), srv(1, 0, 1, "z")
        choose = ScriptedChoice(15, 0, 5)
        self.assertEqual(order_records([a, b, z], choose), [b, z, a])
        # [z a b] sums 0 10 30: 15 -> b; [z a] sums 0 10: 0 -> z; [a]: a.
        self.assertEqual(choose.ranges, [(0, 30), (0, 10), (0, 10)])

    def test_draw_on_boundary(self):
        """A draw equal to a running sum selects that record, not the next."""
        a, b = srv(1, 10, 1, "a"), srv(1, 20, 1, "b")
        self.assertEqual(order_records([a, b], ScriptedChoice(10, 20)), [a, b])
        self.assertEqual(order_records([a, b], ScriptedChoice(11, 10)), [b, a])

    def test_zero_weights_only(self):
        """Zero-weight records alone keep their order (every draw is 0)."""
        records = [srv(1, 0, 1, t) for t in "xyz"]
        choose = ScriptedChoice(0, 0, 0)
        self.assertEqual(order_records(records, choose), records)
        self.assertEqual(choose.ranges, [(0, 0)] * 3)

    def test_zero_weight_after_weighted(self):
        """Zero-weight records left once the weighted ones are taken come last."""
        w, z = srv(1, 5, 1, "w"), srv(1, 0, 1, "z")
        self.assertEqual(order_records([w, z], ScriptedChoice(3, 0)), [w, z])

    def assertNear(self, count, expected):
        self.assertLess(abs(count / 20000 - expected), 0.015, (count, expected))

    def test_weights_with_seeded_random(self):
        """First picks follow the weights, with 0 drawable: 60/30/10 gives 60, 30, 11 in 101."""
        choose = random.Random(2782)
        heavy, middle, light = srv(0, 60, 1, "h"), srv(0, 30, 1, "m"), srv(0, 10, 1, "l")
        firsts = Counter(
            order_records([light, middle, heavy], choose)[0].target for _ in range(20000)
        )
        self.assertNear(firsts["h"], 60 / 101)
        self.assertNear(firsts["m"], 30 / 101)
        self.assertNear(firsts["l"], 11 / 101)
        # A zero weight comes first only when 0 is drawn: 1 in 10 beside a weight of 9.
        zero, nine = srv(0, 0, 1, "zero"), srv(0, 9, 1, "nine")
        firsts = Counter(order_records([nine, zero], choose)[0].target for _ in range(20000))
        self.assertNear(firsts["zero"], 1 / 10)

    def test_seed_determines_order(self):
        """The same seed gives the same order."""
        records = [srv(0, w, 1, str(w)) for w in (1, 5, 10, 20, 40)]
        first = order_records(records, random.Random(99))
        self.assertEqual(order_records(records, random.Random(99)), first)
        self.assertEqual(sorted(first), sorted(records))


# ---------------------------------------------------------------------------
# lookup() over fake resolvers


class LookupTests(SynchronousTestCase):
    def assertNothingLeft(self, h):
        self.assertEqual(h.srv.outstanding(), [])
        self.assertEqual(h.addresses.outstanding(), [])
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_full_report(self):
        """Each service's records, ordered, with deduplicated addresses judged by the policy."""
        h = Harness(choose=ScriptedChoice(0, 0, 0, 0))
        self.assertEqual(sorted(h.srv.calls), sorted(NAMES.values()))
        self.assertEqual(h.addresses.calls, [])
        h.clock.advance(0.25)
        h.srv.fire(
            NAMES["xmpp-client"],
            [srv(10, 0, 5222, "backup.example.com"), srv(5, 0, 5222, "xmpp.example.com")],
        )
        # Targets are resolved as soon as their service answers.
        self.assertEqual(h.addresses.calls, ["xmpp.example.com", "backup.example.com"])
        h.srv.fire(NAMES["xmpps-client"], [srv(0, 0, 5223, "xmpp.example.com")])
        h.srv.fire(NAMES["xmpp-server"], [srv(0, 0, 5269, "s2s.example.com")])
        h.srv.fire(NAMES["xmpps-server"], nx(NAMES["xmpps-server"]))
        # xmpp.example.com is resolved once for both services.
        self.assertEqual(
            h.addresses.calls, ["xmpp.example.com", "backup.example.com", "s2s.example.com"]
        )
        h.addresses.fire(
            "xmpp.example.com", [PUBLIC6, PUBLIC, "2606:2800:0220:0001::1", PRIVATE, PUBLIC]
        )
        h.addresses.fire("backup.example.com", [PRIVATE])
        h.clock.advance(0.5)
        self.assertNoResult(h.d)
        h.addresses.fire("s2s.example.com", [PUBLIC])
        report = self.successResultOf(h.d)
        self.assertNothingLeft(h)
        xmpp = [
            {"address": PUBLIC, "allowed": True},
            {"address": PRIVATE, "allowed": False},
            {"address": PUBLIC6, "allowed": True},
        ]
        self.assertEqual(
            to_json(report),
            {
                "domain": "example.com",
                "services": {
                    "xmpp-client": {
                        "name": NAMES["xmpp-client"],
                        "status": "ok",
                        "nxdomain": False,
                        "records": [
                            {
                                "priority": 5,
                                "weight": 0,
                                "port": 5222,
                                "target": "xmpp.example.com",
                                "addresses": xmpp,
                                "error": None,
                            },
                            {
                                "priority": 10,
                                "weight": 0,
                                "port": 5222,
                                "target": "backup.example.com",
                                "addresses": [{"address": PRIVATE, "allowed": False}],
                                "error": None,
                            },
                        ],
                        "fallback": None,
                        "error": None,
                    },
                    "xmpps-client": {
                        "name": NAMES["xmpps-client"],
                        "status": "ok",
                        "nxdomain": False,
                        "records": [
                            {
                                "priority": 0,
                                "weight": 0,
                                "port": 5223,
                                "target": "xmpp.example.com",
                                "addresses": xmpp,
                                "error": None,
                            }
                        ],
                        "fallback": None,
                        "error": None,
                    },
                    "xmpp-server": {
                        "name": NAMES["xmpp-server"],
                        "status": "ok",
                        "nxdomain": False,
                        "records": [
                            {
                                "priority": 0,
                                "weight": 0,
                                "port": 5269,
                                "target": "s2s.example.com",
                                "addresses": [{"address": PUBLIC, "allowed": True}],
                                "error": None,
                            }
                        ],
                        "fallback": None,
                        "error": None,
                    },
                    "xmpps-server": {
                        "name": NAMES["xmpps-server"],
                        "status": "none",
                        "nxdomain": True,
                        "records": [],
                        "fallback": None,
                        "error": None,
                    },
                },
                "elapsedMs": 750,
            },
        )
        self.assertEqual([s.service.key for s in report.services], list(NAMES))

    def test_allow_private_policy(self):
        """With --allow-private, private addresses are allowed; never-usable ones still are not."""
        h = Harness(policy=Policy(allow_private=True))
        h.srv.fire(NAMES["xmpp-client"], [srv(0, 0, 5222, "xmpp.example.com")])
        for name in ("xmpps-client", "xmpp-server", "xmpps-server"):
            h.srv.fire(NAMES[name], nx(NAMES[name]))
        h.addresses.fire("xmpp.example.com", [PRIVATE, "0.0.0.0", "127.0.0.1"])
        h.addresses.fire("example.com", [PUBLIC])
        body = to_json(self.successResultOf(h.d))
        self.assertEqual(
            body["services"]["xmpp-client"]["records"][0]["addresses"],
            [
                {"address": PRIVATE, "allowed": True},
                {"address": "0.0.0.0", "allowed": False},
                {"address": "127.0.0.1", "allowed": True},
            ],
        )

    def test_service_not_available(self):
        """A single record with target "." is "unavailable": no records, no fallback, no lookup."""
        h = Harness()
        h.srv.fire(NAMES["xmpp-client"], [srv(0, 0, 0, ".")])
        h.srv.fire(NAMES["xmpps-client"], [srv(0, 0, 0, ".")])
        h.srv.fire(NAMES["xmpp-server"], [srv(0, 0, 5269, "s2s.example.com")])
        h.srv.fire(NAMES["xmpps-server"], [])
        h.addresses.fire("s2s.example.com", [PUBLIC])
        services = to_json(self.successResultOf(h.d))["services"]
        for name in ("xmpp-client", "xmpps-client"):
            self.assertEqual(services[name]["status"], "unavailable")
            self.assertEqual(services[name]["records"], [])
            self.assertIsNone(services[name]["fallback"])
            self.assertIsNone(services[name]["error"])
        self.assertEqual(h.addresses.calls, ["s2s.example.com"])
        self.assertNothingLeft(h)

    def test_root_target_among_others(self):
        """A "." target beside other records keeps its place, with no address and an error."""
        h = Harness(choose=ScriptedChoice(0, 0))
        h.srv.fire(NAMES["xmpp-client"], [srv(1, 0, 5222, "xmpp.example.com"), srv(0, 0, 0, ".")])
        for name in ("xmpps-client", "xmpp-server", "xmpps-server"):
            h.srv.fire(NAMES[name], nx(NAMES[name]))
        h.addresses.fire("xmpp.example.com", [PUBLIC])
        h.addresses.fire("example.com", [PUBLIC])
        client = to_json(self.successResultOf(h.d))["services"]["xmpp-client"]
        self.assertEqual(client["status"], "ok")
        self.assertEqual([r["target"] for r in client["records"]], [".", "xmpp.example.com"])
        self.assertEqual(client["records"][0]["addresses"], [])
        self.assertIn("service not available", client["records"][0]["error"])
        self.assertEqual(h.addresses.calls, ["xmpp.example.com", "example.com"])

    def test_no_records_fallback(self):
        """No SRV records: xmpp-client/-server fall back to the domain (5222/5269); one lookup."""
        h = Harness()
        for name in NAMES.values():
            h.srv.fire(name, [])
        self.assertEqual(h.addresses.calls, ["example.com"])
        h.addresses.fire("example.com", [PUBLIC6, PUBLIC])
        services = to_json(self.successResultOf(h.d))["services"]
        addresses = [{"address": PUBLIC, "allowed": True}, {"address": PUBLIC6, "allowed": True}]
        self.assertEqual(
            services["xmpp-client"],
            {
                "name": NAMES["xmpp-client"],
                "status": "none",
                "nxdomain": False,
                "records": [],
                "fallback": {
                    "host": "example.com",
                    "port": 5222,
                    "addresses": addresses,
                    "error": None,
                },
                "error": None,
            },
        )
        self.assertEqual(
            services["xmpp-server"]["fallback"],
            {"host": "example.com", "port": 5269, "addresses": addresses, "error": None},
        )
        # XEP-0368 has no fallback.
        self.assertIsNone(services["xmpps-client"]["fallback"])
        self.assertIsNone(services["xmpps-server"]["fallback"])
        self.assertNothingLeft(h)

    def test_nxdomain(self):
        """NXDOMAIN is "none" with nxdomain; a domain that does not exist shows in the fallback."""
        h = Harness("nowhere.example")
        for name in NAMES:
            h.srv.fire(
                NAMES[name].replace("example.com", "nowhere.example"),
                nx(NAMES[name].replace("example.com", "nowhere.example")),
            )
        h.addresses.fire("nowhere.example", no_address("nowhere.example"))
        services = to_json(self.successResultOf(h.d))["services"]
        for name in NAMES:
            self.assertEqual(services[name]["status"], "none")
            self.assertTrue(services[name]["nxdomain"])
            self.assertEqual(services[name]["records"], [])
            self.assertIsNone(services[name]["error"])
        self.assertEqual(
            services["xmpp-client"]["fallback"],
            {
                "host": "nowhere.example",
                "port": 5222,
                "addresses": [],
                "error": "DNS lookup failed for nowhere.example: no such domain (NXDOMAIN)",
            },
        )
        self.assertNothingLeft(h)

    def test_target_does_not_resolve(self):
        """A target without addresses gets [] and an error; the other targets are unaffected."""
        h = Harness(choose=ScriptedChoice(0, 0))
        h.srv.fire(
            NAMES["xmpp-client"],
            [srv(0, 0, 5222, "gone.example.com"), srv(1, 0, 5222, "xmpp.example.com")],
        )
        for name in ("xmpps-client", "xmpp-server", "xmpps-server"):
            h.srv.fire(NAMES[name], nx(NAMES[name]))
        h.addresses.fire("gone.example.com", no_address("gone.example.com", "no A or AAAA records"))
        h.addresses.fire("xmpp.example.com", [PUBLIC])
        h.addresses.fire("example.com", [PUBLIC])
        records = to_json(self.successResultOf(h.d))["services"]["xmpp-client"]["records"]
        self.assertEqual(records[0]["addresses"], [])
        self.assertEqual(
            records[0]["error"], "DNS lookup failed for gone.example.com: no A or AAAA records"
        )
        self.assertEqual(records[1]["addresses"], [{"address": PUBLIC, "allowed": True}])
        self.assertIsNone(records[1]["error"])

    def test_one_service_fails(self):
        """A server failure for one service is that service's "error"; the others are reported."""
        h = Harness()
        failure = SRVLookupFailed(
            f"SRV lookup failed for {NAMES['xmpp-client']}: server failure (SERVFAIL)"
        )
        h.srv.fire(NAMES["xmpp-client"], failure)
        h.srv.fire(NAMES["xmpps-client"], [srv(0, 0, 5223, "xmpp.example.com")])
        h.srv.fire(
            NAMES["xmpp-server"],
            SRVLookupFailed(
                f"SRV lookup failed for {NAMES['xmpp-server']}: the DNS server did not answer"
            ),
        )
        h.srv.fire(NAMES["xmpps-server"], [])
        h.addresses.fire("xmpp.example.com", [PUBLIC])
        h.addresses.fire("example.com", no_address("example.com", "server failure (SERVFAIL)"))
        services = to_json(self.successResultOf(h.d))["services"]
        self.assertEqual(services["xmpp-client"]["status"], "error")
        self.assertFalse(services["xmpp-client"]["nxdomain"])
        self.assertEqual(services["xmpp-client"]["error"], str(failure))
        # A client falls back when the SRV lookup fails.
        self.assertEqual(services["xmpp-client"]["fallback"]["port"], 5222)
        self.assertEqual(
            services["xmpp-client"]["fallback"]["error"],
            "DNS lookup failed for example.com: server failure (SERVFAIL)",
        )
        self.assertIn("did not answer", services["xmpp-server"]["error"])
        self.assertEqual(services["xmpps-client"]["status"], "ok")
        self.assertEqual(services["xmpps-server"]["status"], "none")
        self.assertFalse(services["xmpps-server"]["nxdomain"])
        self.assertNothingLeft(h)

    def test_timeout_cancels_everything(self):
        """Past the timeout: FlowTimeout, and every query in flight is cancelled."""
        h = Harness(timeout=5)
        h.srv.fire(NAMES["xmpp-client"], [srv(0, 0, 5222, "slow.example.com")])
        h.srv.fire(NAMES["xmpps-client"], [])
        h.clock.advance(4.999)
        self.assertNoResult(h.d)
        h.clock.advance(0.001)
        error = self.failureResultOf(h.d, flows.Failed).value.error
        self.assertIsInstance(error, FlowTimeout)
        self.assertIsInstance(error, ProbeTimeout)
        self.assertEqual(error.error_type, "timeout")
        self.assertEqual(
            str(error), "Connection timeout: the SRV lookup did not finish within 5000 ms"
        )
        self.assertEqual(
            sorted(h.srv.cancelled), sorted([NAMES["xmpp-server"], NAMES["xmpps-server"]])
        )
        self.assertEqual(sorted(h.addresses.cancelled), ["slow.example.com"])
        self.assertNothingLeft(h)

    def test_timeout_while_resolving_fallback(self):
        """A fallback resolution still running at the timeout is cancelled too."""
        h = Harness(timeout=3)
        for name in NAMES.values():
            h.srv.fire(name, [])
        h.clock.advance(3)
        self.assertIsInstance(self.failureResultOf(h.d, flows.Failed).value.error, FlowTimeout)
        self.assertEqual(h.addresses.cancelled, ["example.com"])
        self.assertNothingLeft(h)

    def test_cancel(self):
        """Cancelling the lookup (the HTTP client went away) cancels every query."""
        h = Harness()
        h.srv.fire(NAMES["xmpp-client"], [srv(0, 0, 5222, "xmpp.example.com")])
        h.d.cancel()
        self.failureResultOf(h.d, CancelledError)
        self.assertEqual(len(h.srv.cancelled), 3)
        self.assertEqual(h.addresses.cancelled, ["xmpp.example.com"])
        self.assertNothingLeft(h)

    def test_unexpected_error_fails_and_cancels(self):
        """A resolver bug (not a DNSError) fails the lookup as is and cancels the rest."""
        h = Harness()
        h.srv.fire(NAMES["xmpps-client"], ZeroDivisionError())
        self.failureResultOf(h.d, ZeroDivisionError)
        self.assertEqual(len(h.srv.cancelled), 3)
        self.assertNothingLeft(h)

    def test_idn_domain(self):
        """An IDN domain is queried and falls back in A-labels; the report keeps it as given."""
        h = Harness("bücher.example")
        expected = [
            "_xmpp-client._tcp.xn--bcher-kva.example",
            "_xmpps-client._tcp.xn--bcher-kva.example",
            "_xmpp-server._tcp.xn--bcher-kva.example",
            "_xmpps-server._tcp.xn--bcher-kva.example",
        ]
        self.assertEqual(sorted(h.srv.calls), sorted(expected))
        for name in expected:
            h.srv.fire(name, [])
        self.assertEqual(h.addresses.calls, ["xn--bcher-kva.example"])
        h.addresses.fire("xn--bcher-kva.example", [PUBLIC])
        body = to_json(self.successResultOf(h.d))
        self.assertEqual(body["domain"], "bücher.example")
        self.assertEqual(body["services"]["xmpp-client"]["name"], expected[0])
        self.assertEqual(
            body["services"]["xmpp-client"]["fallback"]["host"], "xn--bcher-kva.example"
        )

    def test_ip_domain(self):
        """An IP address has no SRV records to look up: DNSError, and no query is sent."""
        for domain in ("192.0.2.1", "[2001:db8::1]"):
            h = Harness(domain)
            f = self.failureResultOf(h.d, DNSError)
            self.assertEqual(f.value.error_type, "dns")
            self.assertIn("not an IP address", str(f.value))
            self.assertEqual(h.srv.calls, [])
            self.assertNothingLeft(h)

    def test_name_too_long(self):
        """A query name over 253 octets is that service's error, not a query."""
        # 235 octets: the 18-octet prefixes fit in 253, the 19-octet (xmpps) ones do not.
        domain = "b" * 44 + "." + ".".join(["a" * 60] * 3) + ".example"
        self.assertEqual(len(domain), 235)
        h = Harness(domain)
        services = {name.split(".")[0] for name in h.srv.calls}
        self.assertEqual(services, {"_xmpp-client", "_xmpp-server"})
        for name in list(h.srv.calls):
            h.srv.fire(name, [])
        h.addresses.fire(domain, [PUBLIC])
        body = to_json(self.successResultOf(h.d))["services"]
        self.assertEqual(body["xmpps-client"]["status"], "error")
        self.assertIn("longer than 253", body["xmpps-client"]["error"])


# ---------------------------------------------------------------------------
# The bounds of one lookup


class BoundsTests(SynchronousTestCase):
    def test_target_cap(self):
        """At most PER_PROBE_HOSTS distinct hosts are resolved, PER_PROBE_CONCURRENT at a
        time; the records past the cap are reported unresolved, saying why."""
        h = Harness()
        targets = [f"t{i:02d}.example.com" for i in range(PER_PROBE_HOSTS + 8)]
        for name in list(NAMES.values())[1:]:
            h.srv.fire(name, nx(name))
        h.srv.fire(NAMES["xmpp-client"], [srv(0, 0, 5222, t) for t in targets])
        most = 0
        while h.addresses.outstanding():
            most = max(most, len(h.addresses.outstanding()))
            h.addresses.fire(h.addresses.outstanding()[0], [PUBLIC])
        self.assertEqual(most, PER_PROBE_CONCURRENT)
        self.assertEqual(len(h.addresses.calls), PER_PROBE_HOSTS)
        services = to_json(self.successResultOf(h.d))["services"]
        records = services["xmpp-client"]["records"]
        self.assertEqual(len(records), PER_PROBE_HOSTS + 8)
        resolved = [r for r in records if r["addresses"]]
        capped = [r for r in records if not r["addresses"]]
        # The fallback (example.com, for xmpp-server) is one of the hosts.
        self.assertEqual(len(resolved), PER_PROBE_HOSTS - 1)
        for record in capped:
            self.assertEqual(
                record["error"],
                f"DNS lookup failed for {record['target']}: not resolved: more than "
                f"{PER_PROBE_HOSTS} hosts in one request",
            )
        self.assertEqual(services["xmpp-server"]["fallback"]["addresses"][0]["address"], PUBLIC)

    def test_deadline_abandons_stuck_system_lookups(self):
        """Targets whose system lookups never return: the request holds only
        PER_PROBE_CONCURRENT threads; at its deadline it fails with a timeout, its lookups
        are abandoned (counted, still holding their threads, answers dropped), and another
        caller's lookup still gets a thread and completes."""
        clock = Clock()
        threads = FakeThreads()
        slots = Slots(PER_PROBE_CONCURRENT + 1, 10)
        system = SystemResolver(threads, slots, lambda *a: [])
        srv_resolver = FakeSRVResolver()
        env = flows.Environment(
            connect=None,
            clock=clock,
            resolver=system,
            srv_resolver=srv_resolver,
            policy=Policy(),
        )
        d = flows.srv(env, SRVRequest(domain="example.com", timeout=5))
        targets = [f"never{i:02d}.example.com" for i in range(60)]
        srv_resolver.fire(NAMES["xmpp-client"], [srv(0, 0, 5222, t) for t in targets])
        self.assertEqual(len(threads.running()), PER_PROBE_CONCURRENT)
        clock.advance(5)
        error = self.failureResultOf(d, flows.Failed).value.error
        self.assertIsInstance(error, FlowTimeout)
        self.assertEqual(len(srv_resolver.outstanding()), 0)
        self.assertEqual(system.abandoned, PER_PROBE_CONCURRENT)
        self.assertEqual((slots.held, slots.queued), (PER_PROBE_CONCURRENT, 0))
        self.assertEqual(len(threads.work), PER_PROBE_CONCURRENT)  # no other target started
        other = system.resolve("other.example")
        self.assertEqual(len(threads.running()), PER_PROBE_CONCURRENT + 1)
        threads.finish(PER_PROBE_CONCURRENT)
        self.failureResultOf(other, DNSError)  # the stand-in knows no address
        for _ in range(PER_PROBE_CONCURRENT):
            threads.finish()  # the stuck lookups return at last: dropped
        self.assertEqual((system.abandoned, slots.held), (0, 0))
        self.assertEqual(clock.getDelayedCalls(), [])


# ---------------------------------------------------------------------------
# The real wire: a twisted.names server on 127.0.0.1


@pytest_twisted.ensureDeferred
async def test_real_dns_server():
    """lookup() through make_srv_resolver against a real DNS server on loopback (UDP and TCP)."""
    from twisted.internet import reactor

    zone = b"example.test"
    records = {
        b"_xmpp-client._tcp.example.test": [
            dns.Record_SRV(10, 0, 5222, b"backup.example.test"),
            dns.Record_SRV(5, 0, 5222, b"xmpp.example.test"),
        ],
        # Owner name is a CNAME: followed with a second question.
        b"_xmpps-client._tcp.example.test": [dns.Record_CNAME(b"tls.srv.example.test")],
        b"tls.srv.example.test": [dns.Record_SRV(0, 0, 5223, b"xmpp.example.test")],
        b"_xmpps-server._tcp.example.test": [dns.Record_SRV(0, 0, 0, b"")],
        b"xmpp.example.test": [dns.Record_A("192.0.2.10"), dns.Record_AAAA("2001:db8::10")],
        b"backup.example.test": [dns.Record_A("10.1.2.3")],
        b"example.test": [dns.Record_A("192.0.2.1")],
        # Too many records for 512 octets: answered over TCP.
        b"_xmpp-client._tcp.big.example.test": [
            dns.Record_SRV(
                0, 1, 5222, f"host-{i:02d}.with-a-rather-long-name.example.test".encode()
            )
            for i in range(20)
        ],
    }
    server = start_dns_server(
        reactor,
        zone,
        records,
        failing=[b"_xmpp-server._tcp.example.test"],
        truncate_udp=True,
    )
    try:
        where = ("127.0.0.1", server.port)
        addresses = DNSServerResolver(reactor, *where)
        report = await lookup(
            make_srv_resolver(reactor, where),
            addresses,
            "example.test",
            clock=reactor,
            policy=Policy(),
            choose=random.Random(1),
        )
        body = to_json(report)
        services = body["services"]
        client = services["xmpp-client"]
        assert client["status"] == "ok"
        assert [(r["priority"], r["target"]) for r in client["records"]] == [
            (5, "xmpp.example.test"),
            (10, "backup.example.test"),
        ]
        assert client["records"][0]["addresses"] == [
            {"address": "192.0.2.10", "allowed": False},
            {"address": "2001:db8::10", "allowed": False},
        ]
        assert client["records"][1]["addresses"] == [{"address": "10.1.2.3", "allowed": False}]
        assert services["xmpps-client"]["status"] == "ok"
        assert services["xmpps-client"]["records"][0]["port"] == 5223
        assert services["xmpp-server"]["status"] == "error"
        assert "SERVFAIL" in services["xmpp-server"]["error"]
        assert services["xmpp-server"]["fallback"] == {
            "host": "example.test",
            "port": 5269,
            "addresses": [{"address": "192.0.2.1", "allowed": False}],
            "error": None,
        }
        assert services["xmpps-server"]["status"] == "unavailable"

        report = await lookup(
            make_srv_resolver(reactor, where),
            addresses,
            "big.example.test",
            clock=reactor,
            policy=Policy(allow_private=True),
        )
        services = to_json(report)["services"]
        assert len(services["xmpp-client"]["records"]) == 20
        assert services["xmpps-client"]["status"] == "none"
        assert services["xmpps-client"]["nxdomain"] is True
        first = services["xmpp-client"]["records"][0]
        assert first["addresses"] == []
        assert "NXDOMAIN" in first["error"]
        tcp = [q for q in server.queries if q[0] == "tcp"]
        assert tcp == [("tcp", "_xmpp-client._tcp.big.example.test", dns.SRV)]
    finally:
        await server.stop()
    # The client side left no socket and no timer behind.
    sockets = [
        r
        for r in reactor.getReaders() + reactor.getWriters()
        if isinstance(getattr(r, "protocol", None), dns.DNSMixin)
        and not isinstance(r.protocol.controller, DNSServerFactory)
    ]
    assert sockets == []
    timers = [c for c in reactor.getDelayedCalls() if "names" in getattr(c.func, "__module__", "")]
    assert timers == []
