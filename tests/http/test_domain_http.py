"""
SPEC §8, `domain` without `host`, over HTTP: the service started with
--dns-server pointing at a real DNS server on loopback
(tests/support/dns_server.py) whose zone `localhost` sends clients and
servers to the test Prosody through SRV records; /connect, /login and /s2s
given the domain alone reach it and say how in `resolved`.
"""

import json
import socket

import pytest
import pytest_twisted
import treq
from conftest import start_service
from dns_server import start_dns_server
from twisted.names import dns

ZONE = b"localhost"


@pytest.fixture(scope="module")
def refusing_v6_port():
    """A port on ::1 bound but not listening: connections to it are refused."""
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
    except OSError as e:
        pytest.skip(f"no IPv6 loopback: {e}")
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


@pytest.fixture(scope="module")
def zone_and_services(prosody, refusing_v6_port):
    from twisted.internet import reactor

    records = {
        # The IPv6 target comes first and refuses; the IPv4 one is Prosody.
        b"_xmpp-client._tcp.localhost": [
            dns.Record_SRV(0, 0, refusing_v6_port, b"v6.localhost"),
            dns.Record_SRV(10, 0, prosody.port, b"c2s.localhost"),
        ],
        b"_xmpp-server._tcp.localhost": [dns.Record_SRV(0, 0, prosody.s2s_port, b"s2s.localhost")],
        b"v6.localhost": [dns.Record_AAAA("::1")],
        b"c2s.localhost": [dns.Record_A("127.0.0.1")],
        b"s2s.localhost": [dns.Record_A("127.0.0.1")],
        b"_xmpp-client._tcp.off.localhost": [dns.Record_SRV(0, 0, 0, b"")],
        b"off.localhost": [dns.Record_A("127.0.0.1")],
    }
    server = start_dns_server(reactor, ZONE, records)
    dns_server = f"127.0.0.1:{server.port}"
    service = start_service("--allow-private", "--dns-server", dns_server)
    strict = start_service("--dns-server", dns_server)
    try:
        yield service, strict
    finally:
        service.stop()
        strict.stop()
        pytest_twisted.blockon(server.stop())


async def post(service, path, body):
    response = await treq.post(service.url(path), json=body)
    return response.code, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_connect_by_domain(zone_and_services, prosody, refusing_v6_port):
    """/connect with the domain alone: the refusing IPv6 target, then Prosody over IPv4."""
    service, _ = zone_and_services
    code, body = await post(service, "/api/xmpp/connect", {"domain": "localhost"})
    assert code == 200
    assert body["success"] is True, body
    assert (body["host"], body["port"], body["domain"]) == (
        "c2s.localhost",
        prosody.port,
        "localhost",
    )
    assert body["serverFrom"] == "localhost"
    resolved = body["resolved"]
    assert resolved["via"] == "srv"
    assert resolved["record"] == {
        "service": "xmpp-client",
        "target": "c2s.localhost",
        "port": prosody.port,
        "priority": 10,
        "weight": 0,
    }
    first, second = resolved["attempts"]
    assert (first["target"], first["port"], first["address"]) == (
        "v6.localhost",
        refusing_v6_port,
        "::1",
    )
    assert first["error"].startswith("Connection refused"), first
    assert second == {
        "target": "c2s.localhost",
        "port": prosody.port,
        "address": "127.0.0.1",
        "tls": "starttls",
        "error": None,
    }


@pytest_twisted.ensureDeferred
async def test_login_by_domain(zone_and_services, prosody):
    """/login with the domain alone (the JID's domain) logs in through the SRV record."""
    service, _ = zone_and_services
    body = {"domain": "localhost", "username": "alice", "password": prosody.users["alice"]}
    code, answer = await post(service, "/api/xmpp/login", body)
    assert code == 200
    assert answer["success"] is True, answer
    assert answer["jid"].startswith("alice@localhost/")
    assert (answer["host"], answer["port"]) == ("c2s.localhost", prosody.port)
    assert answer["resolved"]["record"]["target"] == "c2s.localhost"
    assert answer["resolved"]["attempts"][-1]["error"] is None


@pytest_twisted.ensureDeferred
async def test_s2s_by_domain(zone_and_services, prosody):
    """/s2s with the domain alone follows _xmpp-server to Prosody's server port."""
    service, _ = zone_and_services
    code, body = await post(service, "/api/xmpp/s2s", {"domain": "localhost"})
    assert code == 200
    assert body["success"] is True, body
    assert (body["host"], body["port"]) == ("s2s.localhost", prosody.s2s_port)
    assert body["resolved"]["record"]["service"] == "xmpp-server"
    assert body["resolved"]["attempts"] == [
        {
            "target": "s2s.localhost",
            "port": prosody.s2s_port,
            "address": "127.0.0.1",
            "tls": "starttls",
            "error": None,
        }
    ]


@pytest_twisted.ensureDeferred
async def test_blocked_target(zone_and_services):
    """Without --allow-private, SRV targets on loopback are refused: 403, blocked, resolved."""
    _, strict = zone_and_services
    code, body = await post(strict, "/api/xmpp/connect", {"domain": "localhost"})
    assert code == 403
    assert body["blocked"] is True
    assert "not allowed" in body["error"]
    assert [a["address"] for a in body["resolved"]["attempts"]] == ["::1", "127.0.0.1"]
    assert all("not allowed" in a["error"] for a in body["resolved"]["attempts"])


@pytest_twisted.ensureDeferred
async def test_service_not_offered(zone_and_services):
    """A single '.' target: the service is not offered; errorType dns, no fallback tried."""
    service, _ = zone_and_services
    code, body = await post(service, "/api/xmpp/connect", {"domain": "off.localhost"})
    assert code == 200
    assert (body["success"], body["errorType"]) == (False, "dns")
    assert "not offered" in body["error"]
    assert body["resolved"] == {"via": "srv", "record": None, "attempts": []}


@pytest.fixture(scope="module")
def tls_zone_service(prosody_tls):
    """A zone `localhost` whose xmpps-client record leads to Prosody's direct-TLS port."""
    from twisted.internet import reactor

    records = {
        b"_xmpps-client._tcp.localhost": [
            dns.Record_SRV(0, 0, prosody_tls.direct_port, b"tls.localhost")
        ],
        b"_xmpp-client._tcp.localhost": [dns.Record_SRV(5, 0, prosody_tls.port, b"tls.localhost")],
        b"tls.localhost": [dns.Record_A("127.0.0.1")],
    }
    server = start_dns_server(reactor, ZONE, records)
    service = start_service(
        "--allow-private",
        "--dns-server",
        f"127.0.0.1:{server.port}",
        "--ca-file",
        prosody_tls.ca_path,
    )
    try:
        yield service
    finally:
        service.stop()
        pytest_twisted.blockon(server.stop())


@pytest_twisted.ensureDeferred
async def test_xmpps_record_is_direct_tls(tls_zone_service, prosody_tls):
    """An xmpps-client record is dialled with TLS from the first byte, verified for the domain."""
    body = {"domain": "localhost", "username": "alice", "password": prosody_tls.password}
    code, answer = await post(tls_zone_service, "/api/xmpp/login", body)
    assert code == 200
    assert answer["success"] is True, answer
    assert answer["phases"][0] == "tls_connected"
    assert answer["tls"]["direct"] is True
    assert answer["tls"]["certificate"]["verified"] is True
    assert answer["port"] == prosody_tls.direct_port
    assert answer["resolved"]["record"]["service"] == "xmpps-client"
    assert answer["resolved"]["attempts"][0]["tls"] == "direct"
    code, answer = await post(
        tls_zone_service, "/api/xmpp/connect", {"domain": "localhost", "tls": "none"}
    )
    assert answer["success"] is True, answer
    assert answer["port"] == prosody_tls.port
    assert answer["resolved"]["record"]["service"] == "xmpp-client"
    assert answer["tls"]["negotiated"] is False
