"""
GET /probe (the XMPP Blackbox Exporter's interface) and GET /metrics over
HTTP: the built-in and configured modules against the TLS test Prosody, every
rule, the destination policy, --max-concurrent, bad input (400 with one line
of text), a module's password kept out of answers, metrics and logs, and
twistd refusing a probe config that does not parse.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
import treq
from conftest import start_service
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogPublisher

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "alice-tls-pw"
WRONG = "not-the-password-7f3a"

CONFIG = f"""
modules:
  login_alice:
    prober: login
    timeout: 15s
    login:
      account: alice
  login_wrong:
    prober: login
    login:
      account: wrong
  ping_alice:
    prober: ping
    ping:
      account: alice
  ping_wants_error:
    prober: ping
    ping:
      account: alice
      fail_if_not:
        - error_condition: service-unavailable
  no_plain:
    prober: c2s
    c2s:
      fail_if_sasl_mechanism_offered: [PLAIN]
  wants_scram512:
    prober: c2s
    c2s:
      fail_if_sasl_mechanism_not_offered: [SCRAM-SHA-512, SCRAM-SHA-256]
  insecure:
    prober: c2s
    c2s:
      tls_config:
        insecure_skip_verify: true
  ipv6_only:
    prober: c2s
    c2s:
      restrict_ip_version: ipv6
  s2s_no_dialback:
    prober: s2s
    s2s:
      fail_if_dialback_offered: true
  s2s_wants_dialback:
    prober: s2s
    s2s:
      from: example.net
      fail_if_dialback_not_offered: true
accounts:
  alice:
    client_address: alice@localhost
    client_password: {PASSWORD}
  wrong:
    client_address: alice@localhost
    client_password: {WRONG}
"""


class Silent(Protocol):
    """Accepts a connection and never says a word."""


@pytest.fixture(scope="module")
def logged():
    """Every log event of the module's tests, as text."""
    from twisted.logger import formatEvent

    lines = []

    def observe(event):
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        yield lines
    finally:
        globalLogPublisher.removeObserver(observe)


@pytest.fixture(scope="module")
def probe_service(prosody_tls, tmp_path_factory, logged):
    """The API trusting the test CA, loopback allowed, with the modules of CONFIG."""
    path = tmp_path_factory.mktemp("probe-config") / "modules.yml"
    path.write_text(CONFIG)
    running = start_service(
        "--allow-private", "--ca-file", prosody_tls.ca_path, "--probe-config", str(path),
        "--max-concurrent", "1",
    )  # fmt: skip
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def silent_port():
    """A loopback port that accepts connections and never answers."""
    from twisted.internet import reactor

    port = reactor.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
    try:
        yield port.getHost().port
    finally:
        pytest_twisted.blockon(port.stopListening())


async def get(service, path, params=None, headers=None):
    response = await treq.get(service.url(path), params=params, headers=headers)
    body = (await response.content()).decode()
    return response.code, response.headers.getRawHeaders("content-type")[0], body


def samples(text: str) -> dict:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def node(prosody_tls, domain="localhost", port=None):
    return f"xmpp://127.0.0.1:{port or prosody_tls.port}/{domain}"


async def run(service, module, target, headers=None):
    code, ctype, body = await get(
        service, "/probe", {"module": module, "target": target}, headers
    )
    assert code == 200, body
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    return samples(body), body


@pytest_twisted.ensureDeferred
async def test_c2s_normal_auth(probe_service, prosody_tls):
    """The built-in c2s_normal_auth: STARTTLS, the certificate, mechanisms, phases."""
    got, _ = await run(probe_service, "c2s_normal_auth", node(prosody_tls))
    leaf = prosody_tls.certs.leaves["localhost"].cert
    assert got[("probe_success", ())] == 1
    assert got[("probe_duration_seconds", ())] > 0
    assert got[("probe_ssl_earliest_cert_expiry", ())] == leaf.not_valid_after_utc.timestamp()
    assert got[("probe_starttls_offered", ())] == 1
    assert got[("probe_starttls_required", ())] == 0
    assert got[("probe_dialback_offered", ())] == 0
    assert got[("probe_failed_due_to_sasl_mechanism", ())] == 0
    offered = {dict(labels)["mechanism"] for name, labels in got if name.endswith("offered")
               and labels}  # fmt: skip
    assert offered == {"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"}
    phases = {dict(labels)["phase"] for name, labels in got if name.endswith("duration_seconds")
              and labels}  # fmt: skip
    assert phases == {"connect", "starttls", "total"}
    assert not [key for key in got if key[0] == "probe_failed_due_to"]


@pytest_twisted.ensureDeferred
async def test_c2s_required_starttls(probe_service, prosody_tls):
    """probe_starttls_required is 1 where the server requires STARTTLS."""
    got, _ = await run(probe_service, "c2s_normal_auth", node(prosody_tls, "required.localhost"))
    assert got[("probe_success", ())] == 1
    assert got[("probe_starttls_required", ())] == 1


@pytest_twisted.ensureDeferred
async def test_c2s_direct_tls(probe_service, prosody_tls):
    """The built-in c2s_direct_tls on the direct-TLS port: phase tls, no STARTTLS."""
    target = node(prosody_tls, port=prosody_tls.direct_port)
    got, _ = await run(probe_service, "c2s_direct_tls", target)
    assert got[("probe_success", ())] == 1
    assert got[("probe_starttls_offered", ())] == 0
    assert ("probe_xmpp_duration_seconds", (("phase", "tls"),)) in got


@pytest_twisted.ensureDeferred
async def test_certificate_that_does_not_verify(probe_service, prosody_tls):
    """An expired certificate fails (reason tls) unless insecure_skip_verify."""
    target = node(prosody_tls, "expired.localhost")
    got, _ = await run(probe_service, "c2s_normal_auth", target)
    assert got[("probe_success", ())] == 0
    assert got[("probe_failed_due_to", (("reason", "tls"),))] == 1
    got, _ = await run(probe_service, "insecure", target)
    assert got[("probe_success", ())] == 1


@pytest_twisted.ensureDeferred
async def test_sasl_rules(probe_service, prosody_tls):
    """fail_if_sasl_mechanism_offered and _not_offered fail with the exporter's gauge."""
    for module in ("no_plain", "wants_scram512"):
        got, _ = await run(probe_service, module, node(prosody_tls))
        assert got[("probe_success", ())] == 0, module
        assert got[("probe_failed_due_to_sasl_mechanism", ())] == 1, module
        assert got[("probe_failed_due_to", (("reason", "sasl_mechanism"),))] == 1, module


@pytest_twisted.ensureDeferred
async def test_s2s_dialback_rules(probe_service, prosody_tls):
    """s2s: the test Prosody offers dialback after STARTTLS; one rule passes, the other fails."""
    target = f"xmpp://127.0.0.1:{prosody_tls.server.s2s_port}/localhost"
    got, _ = await run(probe_service, "s2s_wants_dialback", target)
    assert got[("probe_success", ())] == 1
    assert got[("probe_dialback_offered", ())] == 1
    assert got[("probe_failed_due_to_dialback", ())] == 0
    got, _ = await run(probe_service, "s2s_no_dialback", target)
    assert got[("probe_success", ())] == 0
    assert got[("probe_failed_due_to_dialback", ())] == 1
    assert got[("probe_failed_due_to", (("reason", "dialback"),))] == 1


@pytest_twisted.ensureDeferred
async def test_restrict_ip_version(probe_service, prosody_tls):
    """restrict_ip_version ipv6 never dials the IPv4 server: a connect failure."""
    got, _ = await run(probe_service, "ipv6_only", node(prosody_tls))
    assert got[("probe_success", ())] == 0
    assert got[("probe_failed_due_to", (("reason", "connect"),))] == 1


@pytest_twisted.ensureDeferred
async def test_login_and_ping(probe_service, prosody_tls):
    """login and ping modules log in with the account kept in the file."""
    got, _ = await run(probe_service, "login_alice", node(prosody_tls))
    assert got[("probe_success", ())] == 1
    assert ("probe_xmpp_duration_seconds", (("phase", "auth"),)) in got
    assert ("probe_xmpp_duration_seconds", (("phase", "bind"),)) in got
    got, _ = await run(probe_service, "ping_alice", node(prosody_tls))
    assert got[("probe_success", ())] == 1
    assert ("probe_xmpp_duration_seconds", (("phase", "ping"),)) in got
    got, _ = await run(probe_service, "ping_wants_error", node(prosody_tls))
    assert got[("probe_success", ())] == 0
    assert got[("probe_failed_due_to", (("reason", "ping_result"),))] == 1


@pytest_twisted.ensureDeferred
async def test_password_never_shown(probe_service, prosody_tls, logged):
    """A failed login: reason sasl; the password is in no answer, metric or log line."""
    got, body = await run(probe_service, "login_wrong", node(prosody_tls))
    assert got[("probe_success", ())] == 0
    assert got[("probe_failed_due_to", (("reason", "sasl"),))] == 1
    code, _, metrics = await get(probe_service, "/metrics")
    code, _, refused = await get(
        probe_service, "/probe", {"module": "login_wrong", "target": "xmpp:example.net"}
    )
    assert code == 400
    text = "\n".join(logged)
    assert "login_wrong" in text
    for where in (body, metrics, refused, text):
        assert WRONG not in where
        assert PASSWORD not in where


@pytest_twisted.ensureDeferred
async def test_blocked_destination(strict_service, prosody_tls):
    """The destination policy refuses loopback: probe_success 0, reason blocked (200)."""
    got, _ = await run(strict_service, "c2s_normal_auth", node(prosody_tls))
    assert got[("probe_success", ())] == 0
    assert got[("probe_failed_due_to", (("reason", "blocked"),))] == 1


@pytest_twisted.ensureDeferred
async def test_scrape_timeout_and_max_concurrent(probe_service, silent_port):
    """
    Prometheus' scrape timeout bounds the probe (reason timeout); while it
    runs, --max-concurrent 1 answers the next /probe 429 in one line.
    """
    target = f"xmpp://127.0.0.1:{silent_port}/localhost"
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": "4"}
    first = defer.ensureDeferred(run(probe_service, "c2s_normal_auth", target, headers))
    while probe_service.api.in_flight == 0:
        await deferLater(0.01)
    code, ctype, body = await get(
        probe_service, "/probe", {"module": "c2s_normal_auth", "target": target}
    )
    assert code == 429
    assert ctype == "text/plain; charset=utf-8"
    assert body.count("\n") == 1 and "Too many probes in flight" in body
    got, _ = await first
    assert got[("probe_success", ())] == 0
    assert got[("probe_failed_due_to", (("reason", "timeout"),))] == 1


def deferLater(seconds):
    from twisted.internet import reactor, task

    return task.deferLater(reactor, seconds, lambda: None)


@pytest.mark.parametrize(
    "params, headers, reason",
    [
        ({}, None, "Missing required parameter: module"),
        ({"target": "xmpp:localhost"}, None, "Missing required parameter: module"),
        ({"module": "c2s_normal_auth"}, None, "Missing required parameter: target"),
        ({"module": "nope", "target": "xmpp:localhost"}, None, "Unknown module 'nope'"),
        ({"module": "c2s_normal_auth", "target": "localhost"}, None, "target must be"),
        ({"module": "c2s_normal_auth", "target": "xmpp://h/x"}, None, "target must be"),
        ({"module": "c2s_normal_auth", "target": "xmpp:a b"}, None, "target domain"),
        (
            {"module": "c2s_normal_auth", "target": "xmpp:localhost"},
            {"X-Prometheus-Scrape-Timeout-Seconds": "soon"},
            "X-Prometheus-Scrape-Timeout-Seconds",
        ),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_input(probe_service, params, headers, reason):
    """A request /probe cannot run: 400 with one line of text/plain, never a traceback."""
    code, ctype, body = await get(probe_service, "/probe", params, headers)
    assert code == 400
    assert ctype == "text/plain; charset=utf-8"
    assert body.endswith("\n") and body.count("\n") == 1
    assert reason in body


@pytest_twisted.ensureDeferred
async def test_metrics(probe_service, prosody_tls):
    """/metrics counts probes by endpoint, outcome, errorType; answers by status; in flight."""
    await treq.post(
        probe_service.url("/api/xmpp/connect"),
        json={"host": "127.0.0.1", "port": prosody_tls.port, "domain": "localhost"},
    )
    await treq.post(probe_service.url("/api/xmpp/connect"), json={"host": "127.0.0.1", "port": 1})
    await get(probe_service, "/probe", {})
    code, ctype, body = await get(probe_service, "/metrics")
    assert code == 200
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    got = samples(body)
    ok = (("endpoint", "connect"), ("errorType", ""), ("outcome", "ok"))
    refused = (("endpoint", "connect"), ("errorType", "connect"), ("outcome", "failed"))
    assert got[("portofcall_probes_total", ok)] >= 1
    assert got[("portofcall_probes_total", refused)] >= 1
    assert got[("portofcall_probe_duration_seconds_count", (("endpoint", "connect"),))] >= 2
    assert got[("portofcall_http_responses_total", (("status", "200"),))] >= 2
    assert got[("portofcall_http_responses_total", (("status", "400"),))] >= 1
    assert got[("portofcall_probes_in_flight", ())] == 0
    assert ("process_cpu_seconds_total", ()) in got


def twistd(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    return subprocess.run(
        [*command, "-n", "portofcall-xmpp", "--listen", "tcp:0:interface=127.0.0.1", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("modules:\n  x:\n    prober: icmp\n", ":3: modules.x: unknown prober 'icmp'"),
        ("modules:\n  x: [1\n", ":3: not valid YAML"),
        ("modules:\n  x:\n    prober: c2s\n    timeout: soon\n", ":4: modules.x.timeout"),
    ],
)
def test_bad_probe_config_refuses_to_start(tmp_path, text, message):
    """twistd refuses a probe config that does not parse, in one line naming file and line."""
    path = tmp_path / "bad.yml"
    path.write_text(text)
    done = twistd("--probe-config", str(path))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"portofcall-xmpp: --probe-config: {path}{message}")
