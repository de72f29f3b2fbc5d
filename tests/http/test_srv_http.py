"""
POST /api/xmpp/srv over HTTP, with the service started with --dns-server
pointing at a real DNS server on loopback (tests/support/dns_server.py); and a
/connect probe of a name that this DNS server resolves to the test Prosody.
"""

import json

import pytest
import pytest_twisted
import treq
from conftest import start_service
from dns_server import start_dns_server
from twisted.logger import formatEvent, globalLogPublisher
from twisted.names import dns

from portofcall_xmpp.resolve import PER_PROBE_HOSTS

ZONE = b"example.test"
MANY = 40


@pytest.fixture(scope="module")
def dns_and_service(prosody):
    from twisted.internet import reactor

    records = {
        b"_xmpp-client._tcp.example.test": [
            dns.Record_SRV(10, 0, 5222, b"backup.example.test"),
            dns.Record_SRV(5, 0, prosody.port, b"xmpp.example.test"),
        ],
        b"_xmpps-client._tcp.example.test": [dns.Record_SRV(0, 0, 0, b"")],
        b"xmpp.example.test": [dns.Record_A("127.0.0.1")],
        b"backup.example.test": [dns.Record_A("192.0.2.7")],
        b"example.test": [dns.Record_A("192.0.2.1")],
        b"mixed.example.test": [dns.Record_A("93.184.216.34"), dns.Record_A("127.0.0.1")],
        b"_xmpp-client._tcp.many.example.test": [
            dns.Record_SRV(0, 1, 5222, f"t{i:02d}.many.example.test".encode()) for i in range(MANY)
        ],
        **{
            f"t{i:02d}.many.example.test".encode(): [dns.Record_A(f"192.0.2.{i}")]
            for i in range(MANY)
        },
    }
    server = start_dns_server(reactor, ZONE, records)
    service = start_service(
        "--allow-private", "--dns-server", f"127.0.0.1:{server.port}", "--read-timeout", "3000"
    )
    strict = start_service("--dns-server", f"127.0.0.1:{server.port}")
    try:
        yield server, service, strict
    finally:
        service.stop()
        strict.stop()
        pytest_twisted.blockon(server.stop())


async def post(service, path, body):
    response = await treq.post(service.url(path), json=body)
    return response.code, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_srv(dns_and_service):
    """The four services, in RFC 2782 order, with addresses and fallbacks."""
    server, service, strict = dns_and_service
    code, body = await post(strict, "/api/xmpp/srv", {"domain": "example.test"})
    assert code == 200
    assert body["success"] is True, body
    services = body["services"]
    assert list(services) == ["xmpp-client", "xmpps-client", "xmpp-server", "xmpps-server"]
    client = services["xmpp-client"]
    assert client["status"] == "ok"
    assert [r["target"] for r in client["records"]] == [
        "xmpp.example.test",
        "backup.example.test",
    ]
    # Reported, not refused: the strict policy marks loopback as not allowed.
    assert client["records"][0]["addresses"] == [{"address": "127.0.0.1", "allowed": False}]
    assert client["records"][1]["addresses"] == [{"address": "192.0.2.7", "allowed": False}]
    assert services["xmpps-client"]["status"] == "unavailable"
    server_side = services["xmpp-server"]
    assert (server_side["status"], server_side["nxdomain"]) == ("none", True)
    assert server_side["fallback"]["host"] == "example.test"
    assert server_side["fallback"]["port"] == 5269
    assert isinstance(body["elapsedMs"], int)


@pytest_twisted.ensureDeferred
async def test_srv_rules(dns_and_service):
    """domain is required and must be a DNS name."""
    server, service, strict = dns_and_service
    code, body = await post(strict, "/api/xmpp/srv", {})
    assert (code, body["error"]) == (400, "Missing required parameter: domain")
    code, body = await post(strict, "/api/xmpp/srv", {"domain": "192.0.2.1"})
    assert code == 400


@pytest_twisted.ensureDeferred
async def test_probe_through_dns_server(prosody, dns_and_service):
    """--dns-server resolves probe hosts too: a name that points at the test Prosody."""
    server, service, strict = dns_and_service
    code, body = await post(
        service,
        "/api/xmpp/connect",
        {"host": "xmpp.example.test", "port": prosody.port, "domain": "localhost"},
    )
    assert body["success"] is True, body
    assert ("udp", "xmpp.example.test", dns.A) in server.queries


@pytest_twisted.ensureDeferred
async def test_mixed_addresses_blocked(dns_and_service):
    """A name resolving to a public and a loopback address is refused whole (403),
    before any connection."""
    server, service, strict = dns_and_service
    code, body = await post(strict, "/api/xmpp/connect", {"host": "mixed.example.test"})
    assert (code, body["blocked"]) == (403, True)
    assert "127.0.0.1" in body["error"]


@pytest_twisted.ensureDeferred
async def test_srv_many_targets_bounded(dns_and_service):
    """A domain with more SRV targets than one request may resolve: the first
    PER_PROBE_HOSTS hosts are resolved, the rest reported unresolved; every question of
    the request goes out on one socket, and it costs no log line per question."""
    server, service, strict = dns_and_service
    events = []
    globalLogPublisher.addObserver(events.append)
    before = len(server.queries)
    try:
        code, body = await post(strict, "/api/xmpp/srv", {"domain": "many.example.test"})
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert (code, body["success"]) == (200, True), body
    records = body["services"]["xmpp-client"]["records"]
    assert len(records) == MANY
    resolved = [r for r in records if r["addresses"]]
    assert all("more than" in r["error"] for r in records if not r["addresses"])
    # The fallback for xmpp-server (the domain itself) is one of the hosts, resolved or
    # not depending on whether it was asked before the targets were.
    fallback = body["services"]["xmpp-server"]["fallback"]
    assert len(resolved) + ("more than" not in fallback["error"]) == PER_PROBE_HOSTS
    asked = server.queries[before:]
    assert len([q for q in asked if q[2] in (dns.A, dns.AAAA)]) == 2 * PER_PROBE_HOSTS
    # One UDP socket for the whole request, opened and closed once: two lines of the
    # reactor's (none per question), and one line of ours for the probe.
    texts = [formatEvent(e) for e in events]
    sockets = [t for t in texts if "UDP" in t or "DNS" in t]
    assert len(sockets) == 2, texts
    ours = [e for e in events if e.get("log_namespace", "").startswith("portofcall_xmpp.web")]
    assert len(ours) == 1, texts
