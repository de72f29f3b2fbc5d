"""
POST /api/xmpp/check over HTTP against the test Prosody with TLS
(tests/conftest.py C{prosody_tls}), its SRV records served by a real DNS
server on loopback (tests/support/dns_server.py); the service runs with
--dns-server pointing at it and --allow-private.
"""

import json

import pytest
import pytest_twisted
import treq
from conftest import start_service
from dns_server import start_dns_server
from twisted.names import dns

ZONE = b"localhost"


def _srv(name, port, target):
    return {name: [dns.Record_SRV(0, 0, port, target)]}


@pytest.fixture(scope="module")
def check_env(prosody_tls):
    """The DNS zone of the TLS Prosody's virtual hosts, and a service using it."""
    from twisted.internet import reactor

    c2s, direct, s2s = prosody_tls.port, prosody_tls.direct_port, prosody_tls.server.s2s_port
    records = {
        b"c2s.localhost": [dns.Record_A("127.0.0.1")],
        # localhost: STARTTLS optional, PLAIN before TLS, direct TLS too, s2s.
        **_srv(b"_xmpp-client._tcp.localhost", c2s, b"c2s.localhost"),
        **_srv(b"_xmpps-client._tcp.localhost", direct, b"c2s.localhost"),
        **_srv(b"_xmpp-server._tcp.localhost", s2s, b"c2s.localhost"),
        # required.localhost: STARTTLS required; no server records at all.
        **_srv(b"_xmpp-client._tcp.required.localhost", c2s, b"c2s.localhost"),
        # expired.localhost / selfsigned.localhost: certificates that do not verify.
        **_srv(b"_xmpp-client._tcp.expired.localhost", c2s, b"c2s.localhost"),
        **_srv(b"_xmpp-client._tcp.selfsigned.localhost", c2s, b"c2s.localhost"),
    }
    server = start_dns_server(reactor, ZONE, records)
    service = start_service(
        "--allow-private",
        "--dns-server",
        f"127.0.0.1:{server.port}",
        "--read-timeout",
        "3000",
        "--ca-file",
        prosody_tls.ca_path,
    )
    try:
        yield server, service
    finally:
        service.stop()
        pytest_twisted.blockon(server.stop())


async def post(service, body, **kwargs):
    response = await treq.post(service.url("/api/xmpp/check"), json=body, **kwargs)
    return response.code, json.loads(await response.content())


def ids(body):
    return {f["id"] for f in body["findings"]}


@pytest_twisted.ensureDeferred
async def test_explore(check_env):
    """explore"""
    server, service = check_env
    code, body = await post(service, {"domain": "localhost"})
    print(json.dumps(body, indent=1)[:20000])
    assert 0
