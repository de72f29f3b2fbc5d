"""
The service's own Prometheus metrics (SPEC §9 C{GET /metrics}), through
C{prometheus_client}.

One L{ServiceMetrics} per process (with C{--workers N}, each worker counts
its own): probes by endpoint, outcome and errorType, probe duration by
endpoint, probes in flight, HTTP answers by status, requests refused by the
rate limits, and the process collector (CPU, memory, open files).  Labels
come only from the service's own closed vocabularies, never from what a
caller or a server sent, so nobody can make the series count grow.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

#: The text format Prometheus 2 and every scraper read (SPEC §9).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Probe durations span a loopback /connect (ms) to a 120 s check.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)


class ServiceMetrics:
    """
    The counters, histogram and gauges of one service process.

    @param registry: where they are registered (a fresh one by default, so
        tests and several services in one process do not collide).
    @param process: also register the process collector.
    """

    def __init__(self, registry: CollectorRegistry | None = None, process: bool = True):
        self.registry = registry if registry is not None else CollectorRegistry()
        self.probes = Counter(
            "portofcall_probes",
            "Probes run, by endpoint, outcome (ok, failed) and errorType",
            ("endpoint", "outcome", "errorType"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "portofcall_probe_duration_seconds",
            "Time from request to answer of probes that ran, by endpoint",
            ("endpoint",),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "portofcall_probes_in_flight",
            "Probes running now",
            registry=self.registry,
        )
        self.http = Counter(
            "portofcall_http_responses",
            "HTTP answers by status code",
            ("status",),
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "portofcall_rate_limited",
            "Probes refused by a rate limit (target: --per-target-rate, "
            "account: --max-failed-logins)",
            ("kind",),
            registry=self.registry,
        )
        if process:
            ProcessCollector(registry=self.registry)

    def probe_done(self, endpoint: str, error_type: str | None, seconds: float) -> None:
        """Count one probe that ran: C{error_type} None means it succeeded."""
        outcome = "ok" if error_type is None else "failed"
        self.probes.labels(endpoint, outcome, error_type or "").inc()
        self.duration.labels(endpoint).observe(seconds)

    def answered(self, status: int) -> None:
        """Count one HTTP answer."""
        self.http.labels(str(status)).inc()

    def refused(self, kind: str) -> None:
        """Count one probe refused by the C{kind} rate limit."""
        self.rate_limited.labels(kind).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE
