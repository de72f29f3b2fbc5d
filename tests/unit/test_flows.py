"""Tests for portofcall_xmpp.flows with a scripted server on a StringTransport."""

import base64

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from xmpp_fakes import (
    BIND_RESULT,
    FEATURES,
    FEATURES_BOUND,
    FEATURES_BOUND_NO_SESSION,
    FEATURES_NO_PLAIN,
    HEADER,
    HEADER2,
    SUCCESS,
    FakeConnector,
    ScriptedTransport,
    iq_error,
    login_script,
    sasl_failure,
    stream_error,
)

from portofcall_xmpp import flows, saslstep, validate
from portofcall_xmpp.errors import (
    ConnectError,
    DestinationBlocked,
    DNSError,
)
from portofcall_xmpp.parse import Software

# The fake servers offer PLAIN without STARTTLS: sending the password in clear is
# the caller's explicit choice (tls: "none", SPEC §2).
AUTH = {"host": "example.com", "username": "alice", "password": "s3cret-pw", "tls": "none"}
AUTH_PHASES = [
    "stream_opened",
    "sasl_plain_sent",
    "authenticated",
    "stream_restarted",
    "resource_bound",
    "session_established",
]


def close_peer(transport):
    transport.protocol.connectionLost(Failure(ConnectionDone()))


def reset_peer(transport):
    transport.protocol.connectionLost(Failure(ConnectionLost()))


class FlowCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()

    def env(self, script=(), chunk=None, error=None, read_timeout=5.0):
        self.transport = ScriptedTransport(script, chunk)
        self.connector = FakeConnector(self.transport, error)
        return flows.Environment(self.connector.connect, self.clock, read_timeout)

    def failed(self, d, error_type):
        failure = self.failureResultOf(d, flows.Failed)
        self.assertEqual(failure.value.error.error_type, error_type, failure.value.error.message)
        return failure.value

    def assertClean(self):
        """The connection is closing and, once gone, no timer is left."""
        self.assertTrue(self.transport.disconnecting)
        self.clock.advance(10)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class ProbeTests(FlowCase):
    def run_probe(self, script, body=None, **kw):
        req = validate.parse_connect(body or {"host": "xmpp.example.com", "domain": "example.com"})
        return flows.probe(self.env(script, **kw), req)

    def test_success(self):
        """The probe reports the header, the features and raw, then closes politely."""
        d = self.run_probe([(b"xml:lang='en'>", HEADER + FEATURES)])
        result = self.successResultOf(d)
        self.assertEqual(self.connector.calls, [("xmpp.example.com", 5222)])
        self.assertIn(b'to="example.com"', self.transport.value())
        self.assertEqual(result.header.id, "s1")
        self.assertEqual(result.header.from_, "example.com")
        self.assertEqual(result.header.version, "1.0")
        f = result.features
        self.assertEqual(f.mechanisms, ("DIGEST-MD5", "PLAIN"))
        self.assertEqual(f.compression, ("zlib",))
        self.assertEqual(f.features, ())
        self.assertEqual(
            f.namespaces,
            (
                "urn:ietf:params:xml:ns:xmpp-sasl",
                "http://jabber.org/features/compress",
                "http://jabber.org/protocol/caps",
            ),
        )
        self.assertEqual((result.tls.available, result.tls.required), (False, False))
        self.assertEqual(result.raw, (HEADER + FEATURES).decode())
        self.assertTrue(self.transport.value().endswith(b"</stream:stream>"))
        self.assertClean()

    def test_byte_by_byte(self):
        """A server that sends one byte per write gives the same result."""
        whole = self.successResultOf(self.run_probe([(b"xml:lang='en'>", HEADER + FEATURES)]))
        split = self.successResultOf(
            self.run_probe([(b"xml:lang='en'>", HEADER + FEATURES)], chunk=1)
        )
        self.assertEqual(whole, split)

    def test_stream_error(self):
        """A stream error instead of features: stream_error, its text, and raw."""
        data = HEADER + stream_error("host-unknown", "not served here")
        f = self.failed(self.run_probe([(b"xml:lang='en'>", data)]), "stream_error")
        self.assertEqual(f.error.message, "XMPP stream error: host-unknown")
        self.assertEqual(f.error.extra["streamErrorText"], "not served here")
        self.assertEqual(f.raw, data.decode())
        self.assertClean()

    def test_connect_refused(self):
        """A refused connection fails with errorType connect."""
        f = self.failed(
            self.run_probe([], error=ConnectError("Connection refused: 192.0.2.1:5222")),
            "connect",
        )
        self.assertEqual(f.error.message, "Connection refused: 192.0.2.1:5222")

    def test_dns(self):
        """A name that does not resolve fails with errorType dns."""
        self.failed(self.run_probe([], error=DNSError("DNS lookup failed for x: NXDOMAIN")), "dns")

    def test_blocked(self):
        """A blocked destination is not a probe failure: it propagates as a 403."""
        d = self.run_probe([], error=DestinationBlocked("Destination 10.0.0.1 is not allowed"))
        self.failureResultOf(d, DestinationBlocked)

    def test_silent_server(self):
        """A server that never answers: Read timeout after the per-read timeout."""
        d = self.run_probe([])
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        f = self.failed(d, "timeout")
        self.assertTrue(f.error.message.startswith("Read timeout"), f.error.message)
        self.assertClean()

    def test_header_then_silence(self):
        """Header, then silence: Read timeout waiting for stream features."""
        d = self.run_probe([(b"xml:lang='en'>", HEADER)])
        self.clock.advance(5)
        f = self.failed(d, "timeout")
        self.assertEqual(
            f.error.message, "Read timeout: no stream features from the server within 5000 ms"
        )
        self.assertEqual(f.raw, HEADER.decode())

    def test_overall_timeout(self):
        """A slow drip inside the read timeout still hits the overall timeout."""
        env = self.env([(b"xml:lang='en'>", HEADER)], read_timeout=30)
        req = validate.parse_connect({"host": "example.com", "timeout": 3000})
        d = flows.probe(env, req)
        for byte in FEATURES[:10]:
            self.clock.advance(1)
            if not self.transport.disconnecting:
                self.transport.protocol.dataReceived(bytes([byte]))
        f = self.failed(d, "timeout")
        self.assertTrue(f.error.message.startswith("Connection timeout"), f.error.message)
        self.assertClean()

    def test_reset_after_header(self):
        """A reset right after the header fails with errorType closed."""
        d = self.run_probe([(b"xml:lang='en'>", HEADER), (b"xml:lang='en'>", b"")])
        reset_peer(self.transport)
        f = self.failed(d, "closed")
        self.assertEqual(
            f.error.message, "Connection reset by server while waiting for stream features"
        )

    def test_closed_before_header(self):
        """A server that closes at once fails with errorType closed."""
        d = self.run_probe([(b"xml:lang='en'>", close_peer)])
        f = self.failed(d, "closed")
        self.assertEqual(
            f.error.message, "Server closed the connection while waiting for stream header"
        )

    def test_garbage(self):
        """Garbage fails with errorType protocol."""
        d = self.run_probe([(b"xml:lang='en'>", b"220 smtp.example.com ESMTP\r\n")])
        f = self.failed(d, "protocol")
        self.assertTrue(f.error.message.startswith("Malformed XML from server"))
        self.assertClean()

    def test_unexpected_element(self):
        """An element other than features where features belong: protocol."""
        d = self.run_probe([(b"xml:lang='en'>", HEADER + b"<message/>")])
        f = self.failed(d, "protocol")
        self.assertEqual(
            f.error.message, "Expected <stream:features>, got <message xmlns='jabber:client'>"
        )

    def test_transcript(self):
        """transcript: true records both directions with times."""
        req = validate.parse_connect({"host": "example.com", "transcript": True})
        d = flows.probe(self.env([(b"xml:lang='en'>", HEADER + FEATURES)]), req)
        result = self.successResultOf(d)
        self.assertEqual([e[0] for e in result.transcript], ["out", "in", "in", "out"])
        self.assertIn("<stream:features>", result.transcript[2][2])


class LoginTests(FlowCase):
    def login(self, script, body=None, **kw):
        req = validate.parse_login({**AUTH, **(body or {})})
        return flows.login(self.env(script, **kw), req)

    def test_success(self):
        """A full PLAIN login reports the bound JID, phases and features."""
        result = self.successResultOf(self.login(login_script()))
        self.assertEqual(result.jid, "alice@example.com/portofcall-x1")
        self.assertEqual(list(result.phases), AUTH_PHASES)
        self.assertEqual(list(result.timings), AUTH_PHASES)
        self.assertEqual(result.mechanism, "PLAIN")
        self.assertEqual(result.sasl_mechanisms, ("DIGEST-MD5", "PLAIN"))
        self.assertEqual(
            result.features.features,
            (
                "resource-binding",
                "session",
                "stream-management",
                "client-state-indication",
                "roster-versioning",
            ),
        )
        self.assertEqual(result.warnings, ("credentials sent without TLS",))
        sent = self.transport.value()
        payload = base64.b64encode(b"\0alice\0s3cret-pw")
        self.assertIn(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + payload, sent
        )
        self.assertIn(
            b"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            b"<resource>portofcall</resource></bind></iq>",
            sent,
        )
        self.assertIn(b"<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>", sent)
        self.assertClean()

    def test_every_chunking(self):
        """The login gives the same result whatever size the server's writes are."""
        whole = self.successResultOf(self.login(login_script()))
        for chunk in (1, 2, 7, 64):
            self.assertEqual(self.successResultOf(self.login(login_script(), chunk=chunk)), whole)

    def test_no_session(self):
        """Without the session feature there is no session phase."""
        script = login_script(bound=FEATURES_BOUND_NO_SESSION)[:-1]
        result = self.successResultOf(self.login(script))
        self.assertEqual(list(result.phases), AUTH_PHASES[:-1])

    def test_custom_resource(self):
        """The requested resource is sent in the bind request."""
        self.successResultOf(self.login(login_script(), {"resource": "probe-7"}))
        self.assertIn(b"<resource>probe-7</resource>", self.transport.value())

    def test_sasl_failure(self):
        """<failure/> stops with errorType sasl, the condition, and the text."""
        script = login_script(after_auth=sasl_failure("not-authorized", "Bad password"))
        f = self.failed(self.login(script), "sasl")
        self.assertEqual(f.error.message, "SASL authentication failed: not-authorized")
        self.assertEqual(
            f.error.extra, {"saslCondition": "not-authorized", "saslText": "Bad password"}
        )
        self.assertEqual(list(f.phases), ["stream_opened", "sasl_plain_sent"])
        self.assertClean()

    def test_every_sasl_condition(self):
        """Each RFC 6120 §6.5 condition is reported by name."""
        for condition in (
            "aborted",
            "account-disabled",
            "credentials-expired",
            "encryption-required",
            "incorrect-encoding",
            "invalid-authzid",
            "invalid-mechanism",
            "malformed-request",
            "mechanism-too-weak",
            "temporary-auth-failure",
        ):
            f = self.failed(self.login(login_script(after_auth=sasl_failure(condition))), "sasl")
            self.assertEqual(f.error.message, "SASL authentication failed: " + condition)

    def test_no_plain(self):
        """No PLAIN offered: the reference's 'No supported SASL mechanism' wording."""
        f = self.failed(self.login(login_script(features=FEATURES_NO_PLAIN)), "sasl")
        self.assertEqual(
            f.error.message, "No supported SASL mechanism. Available: DIGEST-MD5, X-OAUTH2"
        )
        self.assertEqual(list(f.phases), ["stream_opened"])
        self.assertNotIn(b"<auth", self.transport.value())

    def test_plain_requested_not_offered(self):
        """mechanism PLAIN asked for and not offered: 'SASL PLAIN not supported'."""
        script = login_script(features=FEATURES_NO_PLAIN)
        f = self.failed(self.login(script, {"mechanism": "plain"}), "sasl")
        self.assertEqual(
            f.error.message, "SASL PLAIN not supported. Available: DIGEST-MD5, X-OAUTH2"
        )

    def test_no_mechanisms(self):
        """A features block without mechanisms: 'Available: none'."""
        script = login_script(features=b"<stream:features/>")
        f = self.failed(self.login(script), "sasl")
        self.assertEqual(f.error.message, "No supported SASL mechanism. Available: none")

    def test_challenge_to_plain(self):
        """A challenge in reply to PLAIN is a SASL error."""
        challenge = b"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>AA==</challenge>"
        f = self.failed(self.login(login_script(after_auth=challenge)), "sasl")
        self.assertIn("unexpected challenge", f.error.message)

    def test_success_with_data_to_plain(self):
        """<success/> with data after PLAIN is a SASL error."""
        success = b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>dj1x</success>"
        self.failed(self.login(login_script(after_auth=success)), "sasl")

    def test_success_bad_base64(self):
        """<success/> whose data is not base64 is a SASL error."""
        success = b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>!!!</success>"
        f = self.failed(self.login(login_script(after_auth=success)), "sasl")
        self.assertEqual(f.error.message, "Server sent SASL data that is not valid base64")

    def test_unexpected_sasl_reply(self):
        """An element that is not a SASL reply after <auth>: protocol."""
        f = self.failed(self.login(login_script(after_auth=b"<iq type='get' id='x'/>")), "protocol")
        self.assertIn("Expected a SASL reply", f.error.message)

    def test_bind_error(self):
        """A bind iq error fails with errorType bind and the condition."""
        script = login_script()
        script[3] = (b"</iq>", iq_error("bind1", "not-allowed"))
        f = self.failed(self.login(script[:4]), "bind")
        self.assertEqual(f.error.message, "Resource binding failed: not-allowed")
        self.assertEqual(
            f.error.extra["errorCondition"],
            {"condition": "not-allowed", "text": None, "type": "cancel"},
        )
        self.assertEqual(list(f.phases), AUTH_PHASES[:4])

    def test_session_error(self):
        """A session iq error fails with errorType bind."""
        script = login_script()
        script[4] = (b"</iq>", iq_error("sess1", "internal-server-error", "wait"))
        f = self.failed(self.login(script), "bind")
        self.assertEqual(f.error.message, "Session establishment failed: internal-server-error")
        self.assertEqual(list(f.phases), AUTH_PHASES[:5])

    def test_no_bind_feature(self):
        """No bind feature after the restart fails with errorType bind."""
        script = login_script(bound=b"<stream:features/>")[:3]
        f = self.failed(self.login(script), "bind")
        self.assertIn("did not offer resource binding", f.error.message)

    def test_bind_without_jid(self):
        """A bind result without a JID fails with errorType bind."""
        script = login_script()
        script[3] = (b"</iq>", b"<iq type='result' id='bind1'/>")
        f = self.failed(self.login(script[:4]), "bind")
        self.assertEqual(f.error.message, "Resource binding result carried no JID")

    def test_iq_with_other_id_ignored(self):
        """Stanzas that are not the reply (pushes, presence) are skipped."""
        script = login_script()
        script[3] = (
            b"</iq>",
            b"<presence from='x@y'/><iq type='result' id='other'/>" + BIND_RESULT,
        )
        result = self.successResultOf(self.login(script))
        self.assertEqual(result.jid, "alice@example.com/portofcall-x1")

    def test_reset_after_auth(self):
        """A reset after <success/> fails with errorType closed, phases so far."""
        script = [
            (b"xml:lang='en'>", HEADER + FEATURES),
            (b"</auth>", SUCCESS),
            (b"xml:lang='en'>", reset_peer),
        ]
        f = self.failed(self.login(script), "closed")
        self.assertEqual(f.phases, ("stream_opened", "sasl_plain_sent", "authenticated"))

    def test_stream_error_during_auth(self):
        """A stream error in place of the SASL reply: stream_error."""
        script = login_script(after_auth=stream_error("policy-violation"))
        f = self.failed(self.login(script), "stream_error")
        self.assertEqual(f.error.message, "XMPP stream error: policy-violation")

    def test_silence_after_auth(self):
        """Silence after <auth>: Read timeout, phases up to the mechanism."""
        d = self.login(login_script()[:1])
        self.clock.advance(5)
        f = self.failed(d, "timeout")
        self.assertEqual(
            f.error.message, "Read timeout: no SASL reply from the server within 5000 ms"
        )
        self.assertEqual(list(f.phases), ["stream_opened", "sasl_plain_sent"])
        self.assertClean()

    def test_overall_timeout(self):
        """The overall timeout stops a login whose steps each stay under the read timeout."""
        script = login_script()[:2]
        d = self.login(script, {"timeout": 4000}, read_timeout=30)
        self.clock.advance(4)
        f = self.failed(d, "timeout")
        self.assertEqual(
            f.error.message, "Connection timeout: the probe did not finish within 4000 ms"
        )
        self.assertEqual(
            list(f.phases),
            [
                "stream_opened",
                "sasl_plain_sent",
                "authenticated",
            ],
        )
        self.assertClean()

    def test_plain_not_sent_in_clear(self):
        """
        tls: auto (the default) and no STARTTLS offered: PLAIN, chosen by default
        or asked for, is not sent; errorType tls, saying that tls: none allows it.
        """
        for body in ({"tls": "auto"}, {"tls": "auto", "mechanism": "PLAIN"}):
            f = self.failed(self.login(login_script(), body), "tls")
            self.assertEqual(
                f.error.message,
                "SASL PLAIN not sent: the server offers no STARTTLS, and PLAIN would send the "
                'password in clear (tls: "none" allows it)',
            )
            self.assertEqual(list(f.phases), ["stream_opened"])
            self.assertIsNone(f.mechanism)
            self.assertNotIn(b"<auth", self.transport.value())
            self.assertNotIn(b"s3cret", self.transport.value())
            self.assertClean()

    def test_plain_in_clear_with_tls_none(self):
        """tls: none sends PLAIN in clear, as the reference did, with a warning."""
        result = self.successResultOf(self.login(login_script(), {"tls": "none"}))
        self.assertEqual(result.mechanism, "PLAIN")
        self.assertEqual(result.warnings, (saslstep.WARN_PLAINTEXT_CREDENTIALS,))
        self.assertFalse(result.tls.negotiated)

    def test_default_trust_verifies_nothing(self):
        """An Environment without trust roots trusts no certificate (the service passes its own)."""
        env = self.env()
        self.assertEqual((env.trust.system_roots, env.trust.extra_roots), (0, 0))

    def test_tls_required_not_offered(self):
        """tls: required and no STARTTLS: errorType tls, no credential sent."""
        script = login_script(features=FEATURES_NO_PLAIN)
        f = self.failed(self.login(script, {"tls": "required"}), "tls")
        self.assertIn("does not offer STARTTLS", f.error.message)
        self.assertNotIn(b"<auth", self.transport.value())

    def test_transcript_has_no_secret(self):
        """The transcript redacts the SASL payload and never holds the password."""
        result = self.successResultOf(self.login(login_script(), {"transcript": True}))
        text = repr(result.transcript)
        self.assertIn("[redacted]", text)
        self.assertNotIn("s3cret-pw", text)
        self.assertNotIn(base64.b64encode(b"\0alice\0s3cret-pw").decode(), text)

    def test_timings(self):
        """timings are seconds since the start for each phase reached."""
        script = [
            (b"xml:lang='en'>", HEADER + FEATURES),
            (b"</auth>", lambda t: self.clock.callLater(1.5, t.deliver, SUCCESS)),
            (b"xml:lang='en'>", HEADER2 + FEATURES_BOUND_NO_SESSION),
            (b"</iq>", BIND_RESULT),
        ]
        d = self.login(script)
        self.clock.advance(1.5)
        result = self.successResultOf(d)
        self.assertEqual(result.timings["sasl_plain_sent"], 0)
        self.assertEqual(result.timings["authenticated"], 1.5)
        self.assertEqual(result.elapsed, 1.5)


ROSTER = (
    b"<iq type='result' id='roster1'><query xmlns='jabber:iq:roster' ver='ver7'>"
    b"<item jid='bob@example.com' name='Bob' subscription='both'>"
    b"<group>Friends</group><group>Work</group></item>"
    b"<item jid='carol@example.com' ask='subscribe'/>"
    b"<item jid='obrien@example.com' name='O&apos;Brien &amp; &lt;Co&gt;' subscription='from'>"
    b"<group>A</group><group>B</group><group>C</group></item>"
    b"</query></iq>"
)


class RosterTests(FlowCase):
    def roster(self, reply):
        req = validate.parse_roster(AUTH)
        return flows.roster(self.env(login_script(tail=[(b"</iq>", reply)])), req)

    def test_roster(self):
        """Every item is reported with all its groups; defaults fill the gaps."""
        result = self.successResultOf(self.roster(ROSTER))
        self.assertEqual(list(result.phases), AUTH_PHASES + ["roster_received"])
        r = result.roster
        self.assertEqual(r.version, "ver7")
        self.assertEqual(
            [(c.jid, c.name, c.subscription, c.ask, c.groups) for c in r.contacts],
            [
                ("bob@example.com", "Bob", "both", None, ("Friends", "Work")),
                ("carol@example.com", None, "none", "subscribe", ()),
                ("obrien@example.com", "O'Brien & <Co>", "from", None, ("A", "B", "C")),
            ],
        )
        self.assertIn(
            b"<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>",
            self.transport.value(),
        )

    def test_empty_roster(self):
        """An empty roster has no version and no contacts."""
        reply = b"<iq type='result' id='roster1'><query xmlns='jabber:iq:roster'/></iq>"
        r = self.successResultOf(self.roster(reply)).roster
        self.assertEqual((r.version, r.contacts), (None, ()))

    def test_roster_error(self):
        """A roster iq error fails with errorType protocol and the condition."""
        f = self.failed(self.roster(iq_error("roster1", "service-unavailable")), "protocol")
        self.assertEqual(f.error.message, "Roster request failed: service-unavailable")
        self.assertEqual(list(f.phases), AUTH_PHASES)


class MessageTests(FlowCase):
    def message(self, tail, body=None):
        req = validate.parse_message({**AUTH, "recipient": "bob@example.com", **(body or {})})
        return flows.message(
            self.env(login_script(tail=tail)), req, make_id=lambda: "poc_0123456789abcdef"
        )

    def test_sent_no_reply(self):
        """With no reply, the probe listens waitMs and reports no delivery error."""
        d = self.message([])
        self.assertIn(
            b"<message to='bob@example.com' type='chat' id='poc_0123456789abcdef'>"
            b"<body>Hello from PortOfCall</body></message>",
            self.transport.value(),
        )
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        result = self.successResultOf(d)
        self.assertEqual(list(result.phases), AUTH_PHASES + ["message_sent"])
        delivery = result.delivery
        self.assertEqual((delivery.error_xml, delivery.error), (None, None))
        self.assertEqual(delivery.id, "poc_0123456789abcdef")
        self.assertClean()

    def test_delivery_error(self):
        """An error reply to the message is reported with its inner XML and condition."""
        reply = (
            b"<message type='error' id='poc_0123456789abcdef' from='nobody@example.com'>"
            b"<error type='cancel'><service-unavailable "
            b"xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        )
        result = self.successResultOf(self.message([(b"</message>", reply)]))
        d = result.delivery
        self.assertEqual(
            d.error_xml, "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        )
        self.assertEqual((d.error.type, d.error.condition), ("cancel", "service-unavailable"))

    def test_other_errors_ignored(self):
        """Error stanzas about other ids are not this message's delivery error."""
        reply = b"<message type='error' id='other'><error type='cancel'/></message>"
        d = self.message([(b"</message>", reply)])
        self.clock.advance(2)
        self.assertIsNone(self.successResultOf(d).delivery.error)

    def test_receipt(self):
        """A requested XEP-0184 receipt is reported with its delay."""
        receipt = (
            b"<message from='bob@example.com/x'><received xmlns='urn:xmpp:receipts' "
            b"id='poc_0123456789abcdef'/></message>"
        )
        d = self.message(
            [(b"</message>", lambda t: self.clock.callLater(0.5, t.deliver, receipt))],
            {"receipt": True},
        )
        self.assertIn(b"<request xmlns='urn:xmpp:receipts'/>", self.transport.value())
        self.clock.advance(0.5)
        result = self.successResultOf(d)
        self.assertEqual(
            (result.delivery.receipt_requested, result.delivery.receipt_after), (True, 0.5)
        )

    def test_escaping(self):
        """The body is escaped by the XML layer."""
        d = self.message([], {"message": "</body><x/>&amp;"})
        self.clock.advance(2)
        self.successResultOf(d)
        self.assertIn(b"<body>&lt;/body&gt;&lt;x/&gt;&amp;amp;</body>", self.transport.value())

    def test_wait_cut_to_timeout(self):
        """A listening window longer than the time left is shortened, with a warning."""
        d = self.message([], {"timeout": 1000, "waitMs": 5000})
        self.clock.advance(0.75)
        result = self.successResultOf(d)
        self.assertIn("waitMs shortened to 750 ms to fit the overall timeout", result.warnings)

    def test_wait_zero(self):
        """waitMs 0 returns right after sending."""
        result = self.successResultOf(self.message([], {"waitMs": 0}))
        self.assertEqual(result.phases[-1], "message_sent")

    def test_closed_while_listening(self):
        """The server closing during the listening window fails with closed."""
        d = self.message([(b"</message>", close_peer)])
        f = self.failed(d, "closed")
        self.assertEqual(f.phases[-1], "message_sent")


class ScramServer:
    """
    The server half of SCRAM, by scramp, for scripted transports: each
    method is a script reply reading what the client wrote.
    """

    def __init__(self, mechanism="SCRAM-SHA-256", password="s3cret-pw", iterations=4096):
        from scramp import ScramMechanism

        self.mechanism = ScramMechanism(mechanism)
        auth_info = self.mechanism.make_auth_info(password, iteration_count=iterations)
        self.server = self.mechanism.make_server(lambda username: auth_info)

    @staticmethod
    def last(transport, tag):
        value = transport.value()
        start = value.rindex(b"<" + tag)
        start = value.index(b">", start) + 1
        end = value.index(b"</" + tag + b">", start)
        return base64.b64decode(value[start:end]).decode()

    def challenge(self, text):
        return (
            b"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
            + base64.b64encode(text.encode())
            + b"</challenge>"
        )

    def success(self, text):
        payload = base64.b64encode(text.encode()) if text else b""
        return b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + payload + b"</success>"

    def first(self, transport, edit=lambda s: s):
        self.server.set_client_first(self.last(transport, b"auth"))
        transport.deliver(self.challenge(edit(self.server.get_server_first())))

    def final(self, transport, edit=lambda s: s):
        self.server.set_client_final(self.last(transport, b"response"))
        transport.deliver(self.success(edit(self.server.get_server_final())))


SCRAM_FEATURES = (
    b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    b"<mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-1</mechanism>"
    b"<mechanism>SCRAM-SHA-256</mechanism></mechanisms></stream:features>"
)


class ScramFlowTests(FlowCase):
    def setUp(self):
        super().setUp()
        self.derivations = []

    def to_thread(self, f):
        from twisted.internet.defer import succeed

        self.derivations.append(f)
        return succeed(f())

    def login(self, first, final=None, body=None):
        scram = ScramServer()
        script = [
            (b"xml:lang='en'>", HEADER + SCRAM_FEATURES),
            (b"</auth>", lambda t: first(scram, t)),
        ]
        if final is not None:
            script += [
                (b"</response>", lambda t: final(scram, t)),
                (b"xml:lang='en'>", HEADER2 + FEATURES_BOUND_NO_SESSION),
                (b"</iq>", BIND_RESULT),
            ]
        env = self.env(script)
        env = flows.Environment(env.connect, env.clock, env.read_timeout, to_thread=self.to_thread)
        return flows.login(env, validate.parse_login({**AUTH, **(body or {})}))

    def test_scram_in_clear_with_tls_auto(self):
        """
        tls: auto and no STARTTLS offered: SCRAM (which never sends the password)
        runs, with a warning that the stream is not encrypted.
        """
        d = self.login(ScramServer.first, ScramServer.final, {"tls": "auto"})
        result = self.successResultOf(d)
        self.assertEqual(result.mechanism, "SCRAM-SHA-256")
        self.assertEqual(result.warnings, (saslstep.WARN_SCRAM_WITHOUT_TLS,))
        self.assertNotIn(b"s3cret-pw", self.transport.value())

    def test_scram_success(self):
        """SCRAM-SHA-256 is chosen over PLAIN, derived off-thread, and verified."""
        d = self.login(ScramServer.first, ScramServer.final)
        result = self.successResultOf(d)
        self.assertEqual(result.mechanism, "SCRAM-SHA-256")
        self.assertEqual(
            result.phases[:3], ("stream_opened", "sasl_scram_sha_256_sent", "authenticated")
        )
        self.assertEqual(len(self.derivations), 1)
        self.assertNotIn(b"s3cret-pw", self.transport.value())
        self.assertIsNone(result.channel_binding)

    def test_wrong_server_signature(self):
        """A server signature that does not verify fails with sasl."""

        def final(scram, t):
            scram.server.set_client_final(scram.last(t, b"response"))
            t.deliver(scram.success("v=" + base64.b64encode(b"x" * 32).decode()))

        f = self.failed(self.login(ScramServer.first, final), "sasl")
        self.assertIn("server signature", f.error.message)
        self.assertEqual(list(f.phases), ["stream_opened", "sasl_scram_sha_256_sent"])

    def test_success_without_verifier(self):
        """<success/> without v= fails with sasl."""

        def final(scram, t):
            scram.server.set_client_final(scram.last(t, b"response"))
            t.deliver(scram.success(""))

        f = self.failed(self.login(ScramServer.first, final), "sasl")
        self.assertIn("without a server signature", f.error.message)

    def test_huge_iteration_count(self):
        """i=100000000 is refused at once, with no key derivation."""

        def first(scram, t):
            scram.first(t, lambda s: s.replace("i=4096", "i=100000000"))

        f = self.failed(self.login(first), "sasl")
        self.assertIn("100000000", f.error.message)
        self.assertEqual(self.derivations, [])

    def test_nonce_not_extending_ours(self):
        """A server nonce that does not extend ours fails with sasl."""

        def first(scram, t):
            scram.first(t, lambda s: "r=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA," + s.split(",", 1)[1])

        f = self.failed(self.login(first), "sasl")
        self.assertEqual(self.derivations, [])
        self.assertIn("nonce", f.error.message)

    def test_malformed_server_first(self):
        """A server-first message without a salt fails with sasl."""

        def first(scram, t):
            scram.first(t, lambda s: ",".join(p for p in s.split(",") if not p.startswith("s=")))

        self.failed(self.login(first), "sasl")
        self.assertEqual(self.derivations, [])


PROCEED = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"


class StartTLSTests(FlowCase):
    """STARTTLS failures on a fake transport: the TLS peer's part is played here."""

    def login(self, after_starttls, body=None):
        from xmpp_fakes import FEATURES_STARTTLS

        script = [
            (b"xml:lang='en'>", HEADER + FEATURES_STARTTLS),
            (b"<starttls", after_starttls),
        ]
        body = {**AUTH, "tls": "auto", **(body or {})}
        return flows.login(self.env(script), validate.parse_login(body))

    def test_failure(self):
        """<failure/> in answer to <starttls/>: errorType tls, no credential sent."""
        d = self.login(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        f = self.failed(d, "tls")
        self.assertEqual(f.error.message, "Server answered STARTTLS with <failure/>")
        self.assertEqual(list(f.phases), ["stream_opened"])
        self.assertNotIn(b"<auth", self.transport.value())
        self.assertClean()

    def test_closed_mid_handshake(self):
        """A server that closes during the handshake: errorType tls."""
        d = self.login(PROCEED)
        self.assertIsNotNone(self.transport.tls_creator)
        self.assertNoResult(d)
        close_peer(self.transport)
        f = self.failed(d, "tls")
        self.assertEqual(f.error.message, "Server closed the connection during the TLS handshake")
        self.assertNotIn(b"<auth", self.transport.value())

    def test_garbage_handshake(self):
        """A handshake OpenSSL cannot parse: errorType tls with OpenSSL's reason."""
        from OpenSSL.SSL import Error

        d = self.login(PROCEED)
        self.transport.protocol.connectionLost(
            Failure(Error([("SSL routines", "", "packet length too long")]))
        )
        f = self.failed(d, "tls")
        self.assertEqual(f.error.message, "TLS handshake failed: packet length too long")

    def test_handshake_silence(self):
        """A server silent after <proceed/>: Read timeout on the handshake."""
        d = self.login(PROCEED)
        self.clock.advance(5)
        f = self.failed(d, "timeout")
        self.assertEqual(
            f.error.message, "Read timeout: the TLS handshake did not complete within 5000 ms"
        )
        self.assertClean()

    def test_tls_none_skips_starttls(self):
        """tls: none never sends <starttls/>, and warns about PLAIN in clear."""
        from xmpp_fakes import FEATURES_STARTTLS

        script = login_script(features=FEATURES_STARTTLS)
        result = self.successResultOf(
            flows.login(self.env(script), validate.parse_login({**AUTH, "tls": "none"}))
        )
        self.assertNotIn(b"<starttls", self.transport.value())
        self.assertEqual(result.warnings, ("credentials sent without TLS",))
        self.assertEqual((result.tls.available, result.tls.negotiated), (True, False))

    def test_unexpected_reply(self):
        """An element other than <proceed/> or <failure/>: protocol."""
        f = self.failed(self.login(b"<iq type='get' id='x'/>"), "protocol")
        self.assertIn("after <starttls/>", f.error.message)


MARKERS = [b"xml:lang='en'>", b"</auth>", b"xml:lang='en'>", b"</iq>", b"</iq>", b"</iq>"]
GOOD_REPLIES = [
    HEADER + FEATURES,
    SUCCESS,
    HEADER2 + FEATURES_BOUND,
    BIND_RESULT,
    b"<iq type='result' id='sess1'/>",
    sasl_failure("not-authorized"),
    stream_error("conflict"),
    b"<?xml version='1.0'?>",
    b"</stream:stream>",
]


class FuzzTests(FlowCase):
    """Whatever a server sends, a flow ends with a typed result and no timer left."""

    ERROR_TYPES = {
        "dns", "connect", "timeout", "tls", "stream_error", "sasl", "bind",
        "protocol", "too_large", "closed",
    }  # fmt: skip

    def run_login(self, replies, chunk):
        script = [(marker, reply) for marker, reply in zip(MARKERS, replies, strict=False)]
        d = flows.login(self.env(script, chunk=chunk), validate.parse_login(AUTH))
        self.clock.advance(20)
        if self.transport.protocol is not None:
            self.transport.protocol.connectionLost(Failure(ConnectionDone()))
        self.clock.advance(10)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        outcome = []
        d.addBoth(outcome.append)
        [result] = outcome
        if isinstance(result, Failure):
            result.trap(flows.Failed)
            self.assertIn(result.value.error.error_type, self.ERROR_TYPES)
        else:
            self.assertTrue(result.jid)

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=80),
                st.sampled_from(GOOD_REPLIES),
                st.builds(
                    lambda a, b: a + b, st.sampled_from(GOOD_REPLIES), st.binary(max_size=20)
                ),
            ),
            max_size=6,
        ),
        st.sampled_from([None, 1, 3, 17]),
    )
    def test_arbitrary_replies(self, replies, chunk):
        """Random and mangled server replies at every step: typed outcome, nothing left."""
        self.clock = Clock()
        self.run_login(replies, chunk)


DISCO_INFO = (
    b"<iq type='result' id='disco1' from='example.com'>"
    b"<query xmlns='http://jabber.org/protocol/disco#info'>"
    b"<identity category='server' type='im' name='Example'/>"
    b"<feature var='urn:xmpp:ping'/><feature var='jabber:iq:version'/>"
    b"<x xmlns='jabber:x:data' type='result'>"
    b"<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/network/serverinfo</value>"
    b"</field><field var='abuse-addresses'><value>mailto:abuse@example.com</value>"
    b"<value>xmpp:abuse@example.com</value></field></x></query></iq>"
)
VERSION_RESULT = (
    b"<iq type='result' id='version1'><query xmlns='jabber:iq:version'>"
    b"<name>ExampleServer</name><version>1.2</version></query></iq>"
)


class ServerInfoTests(FlowCase):
    def server_info(self, tail):
        script = login_script(tail=tail)
        return flows.server_info(self.env(script), validate.parse_login(AUTH))

    def test_everything(self):
        """disco#info, version and ping answered: all reported, with phases."""
        d = self.server_info(
            [
                (b"</iq>", DISCO_INFO),
                (b"</iq>", VERSION_RESULT),
                (b"</iq>", lambda t: self.clock.callLater(0.25, t.deliver,
                                                          b"<iq type='result' id='ping1'/>")),
            ]
        )  # fmt: skip
        self.clock.advance(0.25)
        result = self.successResultOf(d)
        info = result.server_info
        self.assertEqual(
            [(i.category, i.type, i.name) for i in info.disco.identities],
            [("server", "im", "Example")],
        )
        self.assertEqual(info.disco.features, ("urn:xmpp:ping", "jabber:iq:version"))
        self.assertEqual(
            info.disco.contact_addresses(),
            {"abuse-addresses": ("mailto:abuse@example.com", "xmpp:abuse@example.com")},
        )
        self.assertEqual(info.software, Software("ExampleServer", "1.2", None))
        self.assertEqual(info.ping, 0.25)
        self.assertEqual(
            result.phases[-3:], ("disco_info_received", "version_received", "ping_received")
        )
        sent = self.transport.value()
        self.assertIn(b"<iq type='get' id='disco1' to='example.com'>", sent)
        self.assertIn(b"<ping xmlns='urn:xmpp:ping'/>", sent)

    def test_errors_and_silence(self):
        """An iq error or silence for one query is reported, and the probe goes on."""
        d = self.server_info(
            [
                (b"</iq>", iq_error("disco1", "service-unavailable")),
                (b"</iq>", iq_error("version1", "feature-not-implemented")),
            ]
        )
        self.clock.advance(5)
        info = self.successResultOf(d).server_info
        self.assertEqual(
            (info.disco, info.disco_error, info.software, info.software_error),
            (None, "service-unavailable", None, "feature-not-implemented"),
        )
        self.assertIsNone(info.ping)
        self.assertTrue(info.ping_error.startswith("Read timeout"))
