"""
`prosodyctl check connectivity` (Debian's Prosody) with `connectivity_probe`
set to this service's /probe: the hosts of its configuration have SRV records
in a fake DNS zone (tests/support/dns_server.py) that the service asks
(--dns-server).  `localhost` is the TLS test Prosody (c2s and s2s), whose
client and server checks say "Works"; `down.localhost` points at a port
where nothing listens, and its checks fail.
"""

import os

import pytest
import pytest_twisted
from conftest import start_service
from dns_server import start_dns_server
from prosody import lua_string
from servers import clean_env, free_ports
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.names import dns


@pytest.fixture(scope="module")
def probe_through_dns(prosody_tls):
    """The service asking a fake DNS zone `localhost` for its SRV records; yields it."""
    (closed,) = free_ports(1)
    records = {
        b"_xmpp-client._tcp.localhost": [dns.Record_SRV(0, 0, prosody_tls.port, b"xmpp.localhost")],
        b"_xmpp-server._tcp.localhost": [
            dns.Record_SRV(0, 0, prosody_tls.server.s2s_port, b"xmpp.localhost")
        ],
        b"_xmpp-client._tcp.down.localhost": [dns.Record_SRV(0, 0, closed, b"xmpp.localhost")],
        b"_xmpp-server._tcp.down.localhost": [dns.Record_SRV(0, 0, closed, b"xmpp.localhost")],
        b"xmpp.localhost": [dns.Record_A("127.0.0.1")],
    }
    server = start_dns_server(reactor, b"localhost", records)
    service = start_service(
        "--allow-private", "--ca-file", prosody_tls.ca_path,
        "--dns-server", f"127.0.0.1:{server.port}",
    )  # fmt: skip
    try:
        yield service
    finally:
        service.stop()
        pytest_twisted.blockon(server.stop())


def prosodyctl_config(directory, probe_url: str) -> str:
    """A Prosody configuration for prosodyctl alone: no pidfile, so no Prosody need run."""
    lines = [
        f"data_path = {lua_string(str(directory / 'data'))}",
        f"certificates = {lua_string(str(directory / 'certs'))}",
        "plugin_paths = {}",
        f"log = {{ {{ levels = {{ min = 'error' }}, to = 'file', "
        f"filename = {lua_string(str(directory / 'prosody.log'))} }} }}",
        f"connectivity_probe = {lua_string(probe_url)}",
        "VirtualHost 'localhost'",
        "VirtualHost 'down.localhost'",
    ]
    if os.geteuid() == 0:
        lines.insert(0, "run_as_root = true")
    return "\n".join(lines) + "\n"


@pytest_twisted.ensureDeferred
async def test_check_connectivity(prosody_installed, probe_through_dns, tmp_path):
    """
    prosodyctl reports "Works" for xmpp-client and xmpp-server of the served
    host, and "failed to establish" for both of the host nobody serves.
    """
    from prosody import find_prosodyctl

    (tmp_path / "data").mkdir()
    (tmp_path / "certs").mkdir()
    config = tmp_path / "prosody.cfg.lua"
    config.write_text(prosodyctl_config(tmp_path, probe_through_dns.url("/probe")))
    out, err, code = await getProcessOutputAndValue(
        find_prosodyctl(),
        ("--config", str(config), "check", "connectivity"),
        env=clean_env(("PROSODY",)),
        path=str(tmp_path),
    )
    output = out.decode() + err.decode()
    sections = {}
    for block in output.split("Checking external connectivity for ")[1:]:
        host, _, rest = block.partition(" via ")
        sections[host] = rest
    assert set(sections) == {"localhost", "down.localhost"}, output
    assert "xmpp-client: Works" in sections["localhost"], output
    assert "xmpp-server: Works" in sections["localhost"], output
    failed = "Check service failed to establish (secure) connection"
    assert f"xmpp-client: {failed}" in sections["down.localhost"], output
    assert f"xmpp-server: {failed}" in sections["down.localhost"], output
    assert "Failed to request check at API" not in output
    assert "Error" not in output
    # "Problems found, see above.": a failed check is prosodyctl's exit status 2.
    assert code == 2, output
