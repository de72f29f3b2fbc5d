"""Tests for portofcall_xmpp.probe: targets, timeouts, the fail_if_* rules, outcomes, metrics."""

import attrs
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from portofcall_xmpp import flows, probe, route
from portofcall_xmpp.errors import ConnectError, DestinationBlocked, RequestError
from portofcall_xmpp.parse import Features
from portofcall_xmpp.probe_config import BUILTIN_MODULES, Account, Module, PingResult
from portofcall_xmpp.stream import StreamHeader
from portofcall_xmpp.tlsinfo import CertificateReport, TLSReport
from portofcall_xmpp.tlsstep import TLSInfo


def samples(text: bytes) -> dict:
    """The exposition text as {(name, sorted labels): value}."""
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def certificate(verified=True, not_after="2030-01-02T03:04:05Z"):
    return CertificateReport(
        subject="CN=example.org",
        issuer="CN=Test CA",
        subject_alt_names=("DNS:example.org",),
        not_before="2020-01-01T00:00:00Z",
        not_after=not_after,
        fingerprint_sha256="AA",
        verified=verified,
        verify_error=None if verified else "unable to get local issuer certificate",
        matches_domain=True,
        chain_verified=verified,
        days_until_expiry=1000,
    )


def result(mechanisms=("PLAIN", "SCRAM-SHA-1"), dialback=False, negotiated=True, verified=True):
    """A /connect result after STARTTLS, with these features after TLS."""
    after = Features(mechanisms=mechanisms, dialback=dialback)
    report = TLSReport("TLSv1.3", "TLS_AES_256_GCM_SHA384", None, certificate(verified))
    tls = TLSInfo(
        available=True,
        required=False,
        negotiated=negotiated,
        report=report if negotiated else None,
        features=after if negotiated else None,
    )
    return flows.ConnectResult(
        host="example.org",
        port=5222,
        domain="example.org",
        header=StreamHeader("s1", "example.org", None, "1.0", "en", "jabber:client"),
        features=Features(starttls=True, mechanisms=() if negotiated else mechanisms),
        tls=tls,
        raw="",
        elapsed=0.1,
        warnings=(),
        transcript=(),
        resolved=route.Resolution("host", None, ()),
    )


C2S = BUILTIN_MODULES["c2s_normal_auth"]
S2S = BUILTIN_MODULES["s2s_normal"]
ACCOUNT = Account("mon", "monitor@example.org", "sekrit-pw-1")


class TargetTests(SynchronousTestCase):
    def test_domain(self):
        """xmpp:DOMAIN is looked up by SRV: a domain and no node."""
        self.assertEqual(probe.parse_target("xmpp:example.org", "c2s"), probe.Target("example.org"))

    def test_node(self):
        """xmpp://HOST:PORT/DOMAIN names the node and the domain."""
        self.assertEqual(
            probe.parse_target("xmpp://127.0.0.1:5223/example.org", "s2s"),
            probe.Target("example.org", "127.0.0.1", 5223),
        )

    def test_ping_jid(self):
        """For the ping prober the target may be any JID: it is what is pinged."""
        self.assertEqual(
            probe.parse_target("xmpp:bob@example.net/phone", "ping"),
            probe.Target("example.net", jid="bob@example.net/phone"),
        )

    def test_bad_targets(self):
        """A missing or malformed target is a 400 with one line of reason."""
        for text in (
            None,
            "",
            "example.org",
            "http://example.org",
            "xmpp:",
            "xmpp:exa mple.org",
            "xmpp://example.org/example.org",
            "xmpp://example.org:5222",
            "xmpp://example.org:0/example.org",
            "xmpp://example.org:99999/example.org",
            "xmpp://:5222/example.org",
            "xmpp://h:5222/example.org?x=1",
            "xmpp:bob@example.org",
        ):
            with self.subTest(text=text):
                with self.assertRaises(RequestError) as caught:
                    probe.parse_target(text, "c2s")
                self.assertEqual(caught.exception.status, 400)
                self.assertNotIn("\n", caught.exception.message)


class TimeoutTests(SynchronousTestCase):
    def test_default(self):
        """Without a module timeout or a scrape header: the exporter's 10 s."""
        self.assertEqual(probe.timeout_for(C2S, None), 10.0)

    def test_scrape_header(self):
        """Prometheus' scrape timeout, less the offset, caps the module's timeout."""
        self.assertEqual(probe.timeout_for(C2S, "5"), 5 - probe.SCRAPE_TIMEOUT_OFFSET)
        module = attrs.evolve(C2S, timeout=2.0)
        self.assertEqual(probe.timeout_for(module, "5"), 2.0)
        self.assertEqual(probe.timeout_for(module, "0.1"), probe.MIN_TIMEOUT)

    def test_bad_header(self):
        """A scrape timeout that is not a positive number is a 400."""
        for value in ("soon", "-1", "0", "inf", "nan"):
            with self.subTest(value=value):
                self.assertRaises(RequestError, probe.timeout_for, C2S, value)


class JudgeTests(SynchronousTestCase):
    def test_passes(self):
        """A verified TLS stream with no rules passes."""
        self.assertEqual(probe.judge(C2S, result(), []), (None, None, None))

    def test_tls_required(self):
        """As the exporter's: a stream without TLS fails (tls)."""
        self.assertEqual(probe.judge(C2S, result(negotiated=False), [])[0], "tls")

    def test_certificate(self):
        """A certificate that does not verify fails, unless insecure_skip_verify."""
        error_type, message, _ = probe.judge(C2S, result(verified=False), [])
        self.assertEqual(error_type, "tls")
        self.assertIn("unable to get local issuer certificate", message)
        insecure = attrs.evolve(C2S, tls_verify=False)
        self.assertEqual(probe.judge(insecure, result(verified=False), [])[0], None)

    def test_sasl_offered(self):
        """fail_if_sasl_mechanism_offered fails on an offered mechanism."""
        module = attrs.evolve(C2S, fail_if_sasl_mechanism_offered=("PLAIN",))
        self.assertEqual(
            probe.judge(module, result(), []),
            ("sasl_mechanism", "SASL mechanism rule failed (offered: PLAIN)", "sasl_mechanism"),
        )
        self.assertEqual(probe.judge(module, result(mechanisms=("SCRAM-SHA-1",)), [])[0], None)

    def test_sasl_not_offered(self):
        """fail_if_sasl_mechanism_not_offered fails on a missing mechanism."""
        module = attrs.evolve(C2S, fail_if_sasl_mechanism_not_offered=("SCRAM-SHA-256",))
        self.assertEqual(probe.judge(module, result(), [])[2], "sasl_mechanism")
        offered = result(mechanisms=("SCRAM-SHA-256",))
        self.assertEqual(probe.judge(module, offered, [])[0], None)

    def test_dialback(self):
        """fail_if_dialback_offered / _not_offered."""
        offered = attrs.evolve(S2S, fail_if_dialback_offered=True)
        missing = attrs.evolve(S2S, fail_if_dialback_not_offered=True)
        self.assertEqual(probe.judge(offered, result(dialback=True), [])[2], "dialback")
        self.assertEqual(probe.judge(offered, result(dialback=False), [])[0], None)
        self.assertEqual(probe.judge(missing, result(dialback=False), [])[2], "dialback")
        self.assertEqual(probe.judge(missing, result(dialback=True), [])[0], None)

    def test_ping_verdict(self):
        """A ping result fail_if_not does not accept fails (ping_result)."""
        verdict = ["the ping was answered with service-unavailable"]
        self.assertEqual(probe.judge(C2S, result(), verdict), ("ping_result", verdict[0], None))


class RenderTests(SynchronousTestCase):
    def test_success(self):
        """Every metric of a successful probe, from a registry of its own."""
        outcome = probe.Outcome(
            "s2s",
            0.25,
            phases={"connect": 0.01, "starttls": 0.02, "total": 0.25},
            mechanisms=("EXTERNAL",),
            dialback=True,
            starttls=(True, True),
            cert_expiry=1893553445.0,
        )
        got = samples(probe.render(outcome))
        self.assertEqual(
            got,
            {
                ("probe_success", ()): 1.0,
                ("probe_duration_seconds", ()): 0.25,
                ("probe_xmpp_duration_seconds", (("phase", "connect"),)): 0.01,
                ("probe_xmpp_duration_seconds", (("phase", "starttls"),)): 0.02,
                ("probe_xmpp_duration_seconds", (("phase", "total"),)): 0.25,
                ("probe_ssl_earliest_cert_expiry", ()): 1893553445.0,
                ("probe_starttls_offered", ()): 1.0,
                ("probe_starttls_required", ()): 1.0,
                ("probe_sasl_mechanism_offered", (("mechanism", "EXTERNAL"),)): 1.0,
                ("probe_failed_due_to_sasl_mechanism", ()): 0.0,
                ("probe_dialback_offered", ()): 1.0,
                ("probe_failed_due_to_dialback", ()): 0.0,
            },
        )

    def test_failure(self):
        """A failed probe: probe_success 0 and probe_failed_due_to{reason} 1."""
        outcome = probe.Outcome("c2s", 0.5, "connect", "Connection refused")
        got = samples(probe.render(outcome))
        self.assertEqual(got[("probe_success", ())], 0.0)
        self.assertEqual(got[("probe_failed_due_to", (("reason", "connect"),))], 1.0)
        self.assertNotIn(("probe_starttls_offered", ()), got)

    def test_rule_failure(self):
        """A rule failure also sets the exporter's probe_failed_due_to_sasl_mechanism."""
        outcome = probe.Outcome(
            "c2s", 0.5, "sasl_mechanism", "x", mechanisms=("PLAIN",), rule="sasl_mechanism"
        )
        got = samples(probe.render(outcome))
        self.assertEqual(got[("probe_failed_due_to_sasl_mechanism", ())], 1.0)
        self.assertEqual(got[("probe_failed_due_to", (("reason", "sasl_mechanism"),))], 1.0)

    def test_expiry_from_certificate(self):
        """probe_ssl_earliest_cert_expiry is the certificate's notAfter in Unix seconds."""
        outcome = probe.Outcome("c2s", 0.1, cert_expiry=probe.cert_expiry(result().tls))
        got = samples(probe.render(outcome))
        self.assertEqual(got[("probe_ssl_earliest_cert_expiry", ())], 1893553445.0)


class RunTests(SynchronousTestCase):
    """L{probe.run} through the flows with a fake connect (no sockets)."""

    def env(self, connect):
        return flows.Environment(connect=connect, clock=Clock())

    def test_connect_failure(self):
        """A connection that fails is an outcome: probe_success 0, reason connect."""
        env = self.env(lambda *a, **k: fail(ConnectError("Connection refused: 127.0.0.1:5222")))
        target = probe.parse_target("xmpp://127.0.0.1:5222/example.org", "c2s")
        outcome = self.successResultOf(probe.run(env, C2S, target, 5))
        self.assertEqual(outcome.error_type, "connect")
        self.assertIn("Connection refused", outcome.message)
        self.assertIsNone(outcome.starttls)

    def test_blocked(self):
        """A destination the policy refuses is an outcome with reason blocked."""
        env = self.env(lambda *a, **k: fail(DestinationBlocked("loopback is not allowed")))
        target = probe.parse_target("xmpp://127.0.0.1:5222/example.org", "c2s")
        outcome = self.successResultOf(probe.run(env, C2S, target, 5))
        self.assertEqual(
            (outcome.error_type, outcome.message), ("blocked", "loopback is not allowed")
        )

    def test_restrict_ip_version(self):
        """restrict_ip_version reaches the connector as ip_version; none without it."""
        seen = []

        def connect(host, port, protocol, **kwargs):
            seen.append(kwargs)
            return fail(ConnectError("No IPv6 address: 127.0.0.1:5222"))

        target = probe.parse_target("xmpp://127.0.0.1:5222/example.org", "c2s")
        six = attrs.evolve(C2S, restrict_ip_version=6)
        self.successResultOf(probe.run(self.env(connect), six, target, 5))
        self.successResultOf(probe.run(self.env(connect), C2S, target, 5))
        self.assertEqual(seen, [{"ip_version": 6}, {}])

    def test_login_domain_must_be_the_accounts(self):
        """A login module probes its account's domain; another target domain is a 400."""
        module = Module("login", "login", account=ACCOUNT)
        target = probe.parse_target("xmpp:example.net", "login")
        failure = self.failureResultOf(probe.run(self.env(None), module, target, 5), RequestError)
        self.assertEqual(failure.value.status, 400)
        self.assertNotIn(ACCOUNT.password, failure.value.message)

    def test_ping_connects_as_the_account(self):
        """A ping module logs in at its account's domain (here at the target's node)."""
        seen = []

        def connect(host, port, protocol, **kwargs):
            seen.append((host, port))
            return fail(ConnectError("Connection refused"))

        module = Module("ping", "ping", account=ACCOUNT, fail_if_not=(PingResult(success=True),))
        target = probe.parse_target("xmpp://127.0.0.1:5299/bob@example.net", "ping")
        outcome = self.successResultOf(probe.run(self.env(connect), module, target, 5))
        self.assertEqual(seen, [("127.0.0.1", 5299)])
        self.assertEqual(outcome.error_type, "connect")
        self.assertNotIn(ACCOUNT.password, repr(outcome))
