"""
Tests for L{portofcall_xmpp.tlsstep}: the decisions the TLS step makes on
its own (the negotiation itself runs through the flows, tests/unit/test_flows.py,
and against real servers, tests/servers/).
"""

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from portofcall_xmpp.errors import SASLFailure, TLSFailure
from portofcall_xmpp.flows import Trace
from portofcall_xmpp.parse import Features
from portofcall_xmpp.tlsinfo import Trust
from portofcall_xmpp.tlsstep import ChannelBinding, TLSInfo, TLSStep


class RecordingProto:
    """Stands in for the protocol: records what would be sent."""

    def __init__(self):
        self.sent = []

    def send(self, element):
        self.sent.append(element)


def features(starttls=False, required=False):
    return Features(starttls=starttls, starttls_required=required)


class TLSStepTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.proto = RecordingProto()
        self.trace = Trace(self.clock, 0.0, False)
        self.step = TLSStep(
            self.proto,
            self.trace,
            trust=Trust(system=False),
            clock=self.clock,
            read_timeout=5.0,
            domain="example.com",
        )

    def test_info_before_anything(self):
        """Before the server said anything: nothing available, nothing negotiated."""
        self.assertEqual(self.step.info(), TLSInfo(False, False))
        self.assertFalse(self.step.negotiated)

    def test_offered(self):
        """The first features block says whether STARTTLS is offered and required."""
        self.step.offered(features(starttls=True, required=True))
        self.assertEqual(self.step.info(), TLSInfo(True, True))

    def test_modes_that_do_not_negotiate(self):
        """none, direct, and auto without an offer send nothing and negotiate nothing."""
        for mode, offer in (("none", True), ("direct", True), ("auto", False)):
            d = self.step.starttls(features(starttls=offer), mode)
            self.assertIs(self.successResultOf(_deferred(d)), False)
        self.assertEqual(self.proto.sent, [])

    def test_required_not_offered(self):
        """required without an offer: TLSFailure, nothing sent."""
        d = _deferred(self.step.starttls(features(), "required"))
        failure = self.failureResultOf(d, TLSFailure)
        self.assertIn("does not offer STARTTLS", failure.value.message)
        self.assertEqual(self.proto.sent, [])

    def test_check_certificate_without_tls(self):
        """Without TLS there is no certificate to check: no error."""
        self.step.check_certificate()

    def test_binding_without_tls(self):
        """Without TLS: no binding by default; a forced type is a SASL error."""
        self.assertIsNone(self.step.binding(features(), None))
        with self.assertRaises(SASLFailure) as raised:
            self.step.binding(features(), "tls-exporter")
        self.assertEqual(
            raised.exception.message,
            "channelBinding tls-exporter needs TLS, and this connection has none",
        )

    def test_no_fallback(self):
        """
        tls-unique is tried again only after the server refused a -PLUS login
        bound with tls-exporter by default; every other failure is final.
        """
        refused = SASLFailure("SASL authentication failed: not-authorized",
                              extra={"saslCondition": "not-authorized"})  # fmt: skip
        local = SASLFailure("SCRAM server signature mismatch")
        default = ChannelBinding("tls-exporter", b"x" * 32, by_default=True)
        chosen = ChannelBinding("tls-exporter", b"x" * 32)
        for binding, used, error in (
            (None, None, refused),
            (chosen, "tls-exporter", refused),
            (default, None, refused),
            (default, "tls-server-end-point", refused),
            (default, "tls-exporter", local),
        ):
            self.assertIsNone(self.step.unique_fallback(binding, used, error))
        self.assertEqual(self.trace.warnings, [])


def _deferred(coroutine):
    return Deferred.fromCoroutine(coroutine)
