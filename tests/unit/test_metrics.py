"""Tests for portofcall_xmpp.metrics."""

from twisted.trial.unittest import SynchronousTestCase

from portofcall_xmpp.metrics import ServiceMetrics


class ServiceMetricsTests(SynchronousTestCase):
    def setUp(self):
        self.metrics = ServiceMetrics()

    def value(self, name, **labels):
        return self.metrics.registry.get_sample_value(name, labels)

    def test_probes_counted(self):
        """Probes are counted by endpoint, outcome and errorType, and their time observed."""
        self.metrics.probe_done("connect", None, 0.02)
        self.metrics.probe_done("connect", None, 0.03)
        self.metrics.probe_done("login", "sasl", 1.5)
        self.assertEqual(
            self.value("portofcall_probes_total", endpoint="connect", outcome="ok", errorType=""),
            2,
        )
        self.assertEqual(
            self.value(
                "portofcall_probes_total", endpoint="login", outcome="failed", errorType="sasl"
            ),
            1,
        )
        self.assertEqual(
            self.value("portofcall_probe_duration_seconds_count", endpoint="connect"), 2
        )
        self.assertEqual(
            self.value("portofcall_probe_duration_seconds_bucket", endpoint="login", le="2.5"), 1
        )
        self.assertEqual(
            self.value("portofcall_probe_duration_seconds_bucket", endpoint="login", le="1.0"), 0
        )

    def test_http_and_rate_limits(self):
        """HTTP answers by status and rate-limit refusals by kind are counted."""
        self.metrics.answered(200)
        self.metrics.answered(429)
        self.metrics.answered(429)
        self.metrics.refused("target")
        self.assertEqual(self.value("portofcall_http_responses_total", status="429"), 2)
        self.assertEqual(self.value("portofcall_rate_limited_total", kind="target"), 1)

    def test_in_flight(self):
        """The in-flight gauge goes up and down."""
        self.metrics.in_flight.inc()
        self.metrics.in_flight.inc()
        self.metrics.in_flight.dec()
        self.assertEqual(self.value("portofcall_probes_in_flight"), 1)

    def test_render(self):
        """The exposition is Prometheus text with the process collector's series."""
        self.metrics.probe_done("connect", None, 0.01)
        body, content_type = self.metrics.render()
        self.assertTrue(content_type.startswith("text/plain; version=0.0.4"))
        text = body.decode()
        self.assertIn('portofcall_probes_total{endpoint="connect",errorType="",outcome="ok"} 1.0',
                      text)
        self.assertIn("process_resident_memory_bytes", text)

    def test_registries_separate(self):
        """Two services in one process do not share (or collide on) their metrics."""
        other = ServiceMetrics()
        self.metrics.answered(200)
        self.assertIsNone(other.registry.get_sample_value("portofcall_http_responses_total",
                                                          {"status": "200"}))
