"""
A real Prometheus (Debian's package) scrapes the service: its own /metrics,
and /probe for the TLS test Prosody through the multi-target relabeling the
README shows; the test reads probe_success and a service counter back through
Prometheus' HTTP query API.  The README's scrape configuration, alert rules
and probe configuration are checked by promtool and the service's loader.
"""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import pytest_twisted
import treq
from servers import clean_env, find_binary, free_ports, spawn, tail
from twisted.internet import reactor, task

from portofcall_xmpp import probe_config

#: The longest the test waits for Prometheus to start, scrape and answer.
PATIENCE = 120.0


def find_prometheus():
    return find_binary("PROMETHEUS", "prometheus", ("/usr/bin", "/usr/local/bin"))


@pytest.fixture(scope="module")
def prometheus_binary():
    """Path of prometheus.  Missing: skipped, or a failure when ``CI=true``."""
    path = find_prometheus()
    if not path:
        reason = "Prometheus is not installed (run .ci/install-prometheus or set $PROMETHEUS)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " and CI=true", pytrace=False)
        pytest.skip(reason)
    return path


def scrape_config(service_address: str, target: str) -> str:
    """The README's scrape configuration, with a short interval."""
    return f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: portofcall
    static_configs:
      - targets: ["{service_address}"]
  - job_name: xmpp
    metrics_path: /probe
    params:
      module: [c2s_normal_auth]
    static_configs:
      - targets: ["{target}"]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: "{service_address}"
"""


@pytest.fixture(scope="module")
def prometheus(prometheus_binary, tls_service, prosody_tls, tmp_path_factory):
    """Prometheus on a free loopback port, scraping tls_service; yields its base URL."""
    base = tmp_path_factory.mktemp("prometheus")
    service_address = tls_service.base.removeprefix("http://")
    target = f"xmpp://127.0.0.1:{prosody_tls.port}/localhost"
    config = base / "prometheus.yml"
    config.write_text(scrape_config(service_address, target))
    (port,) = free_ports(1)
    console_path = base / "console.log"
    argv = [
        prometheus_binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={base / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with open(console_path, "wb") as console:
        process = spawn(argv, console=console, cwd=base, env=clean_env(("PROMETHEUS",)))
    try:
        yield f"http://127.0.0.1:{port}", console_path
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def query(url: str, expression: str) -> list:
    """The result vector of an instant query (empty while Prometheus is not ready)."""
    try:
        response = await treq.get(f"{url}/api/v1/query", params={"query": expression})
        if response.code != 200:
            await response.content()
            return []
        body = await response.json()
    except Exception:  # Prometheus still starting: connection refused
        return []
    return body["data"]["result"]


async def wait_for(url: str, expression: str, console_path, accept) -> list:
    """Poll C{expression} until C{accept(result)}; fail with Prometheus' log after PATIENCE."""
    deadline = time.monotonic() + PATIENCE
    while True:
        result = await query(url, expression)
        if result and accept(result):
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{expression}: {result!r} after {PATIENCE} s\n{tail(console_path)}")
        await task.deferLater(reactor, 0.5, lambda: None)


@pytest_twisted.ensureDeferred
async def test_prometheus_scrapes_probe_and_metrics(prometheus, prosody_tls):
    """
    Prometheus scrapes /probe by multi-target relabeling (probe_success 1 for
    the test Prosody, instance = the XMPP target) and the service's /metrics
    (its probe counter counts those /probe runs).
    """
    url, console_path = prometheus
    target = f"xmpp://127.0.0.1:{prosody_tls.port}/localhost"
    success = await wait_for(
        url, 'probe_success{job="xmpp"}', console_path, lambda r: r[0]["value"][1] == "1"
    )
    assert success[0]["metric"]["instance"] == target
    expiry = await wait_for(url, "probe_ssl_earliest_cert_expiry", console_path, bool)
    leaf = prosody_tls.certs.leaves["localhost"].cert
    assert float(expiry[0]["value"][1]) == leaf.not_valid_after_utc.timestamp()
    counted = await wait_for(
        url,
        'portofcall_probes_total{job="portofcall",endpoint="probe",outcome="ok"}',
        console_path,
        lambda r: float(r[0]["value"][1]) >= 1,
    )
    # Prometheus drops an empty label: a probe that succeeded has no errorType.
    assert "errorType" not in counted[0]["metric"]
    up = await wait_for(url, 'up{job="xmpp"}', console_path, bool)
    assert up[0]["value"][1] == "1"


def test_readme_examples(prometheus_binary, tmp_path):
    """The README's scrape config and alert rules pass promtool; its probe config loads."""
    promtool = shutil.which("promtool") or str(Path(prometheus_binary).with_name("promtool"))
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = {block.split(":", 1)[0]: block for block in re.findall(r"```yaml\n(.*?)```", readme,
                                                                     re.S)}  # fmt: skip
    (tmp_path / "rules.yml").write_text(blocks["groups"])
    (tmp_path / "prometheus.yml").write_text(blocks["scrape_configs"] + "rule_files: [rules.yml]\n")
    for what, name in (("config", "prometheus.yml"), ("rules", "rules.yml")):
        done = subprocess.run(
            [promtool, "check", what, str(tmp_path / name)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
    modules = probe_config.parse(blocks["modules"], "README.md")
    assert {"c2s_strict", "s2s_no_dialback", "login_monitor", "ping_federation"} <= set(modules)
