"""
POST /api/xmpp/check over HTTP, against real servers and a real DNS server
on loopback (tests/support/dns_server.py):

  - zone C{localhost}: the test Prosody with TLS (C{prosody_tls}: optional
    and required STARTTLS, direct TLS, s2s, expired and self-signed
    certificates, a TLS 1.2-only host), the plaintext Prosody (C{prosody}),
    aliases, missing addresses, C{.} targets, failing names, closed ports;
  - zone C{example.test}: small fake XMPP servers (tests/support/fake_xmpp.py)
    for what a real server here cannot show (a C{from} of another name, a
    stream to any name served, TLS 1.0, certificates of other names, an s2s
    stream without dialback), and hostile ones (tests/support/hostile.py).

The services run with --dns-server pointing at these zones, --allow-private
and --ca-file naming the test CA; one more runs without --allow-private.
"""

import json

import pytest
import pytest_twisted
import treq
from conftest import start_service
from dns_server import start_dns_server
from fake_xmpp import Fake, start_fake
from hostile import Hostile, HostileFactory, SendAfterHeader
from OpenSSL import SSL
from test_openapi import Schemas
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.names import dns

from portofcall_xmpp import openapi
from portofcall_xmpp.check import MAX_ENDPOINTS


def _srv(port: int, target: bytes = b"c2s.localhost", priority: int = 0):
    return dns.Record_SRV(priority, 0, port, target)


def _closed_port() -> int:
    from servers import free_ports

    return free_ports(1)[0]


def _service(dns_server, *extra):
    return start_service(
        "--dns-server", f"127.0.0.1:{dns_server.port}", "--read-timeout", "3000", *extra
    )


@pytest.fixture(scope="module")
def local(prosody_tls, prosody):
    """Zone localhost: the test Prosodys; services with and without --allow-private."""
    from twisted.internet import reactor

    c2s, direct, s2s = prosody_tls.port, prosody_tls.direct_port, prosody_tls.server.s2s_port
    closed = _closed_port()
    records = {
        b"c2s.localhost": [dns.Record_A("127.0.0.1")],
        b"_xmpp-client._tcp.localhost": [_srv(c2s)],
        b"_xmpps-client._tcp.localhost": [_srv(direct)],
        b"_xmpp-server._tcp.localhost": [_srv(s2s)],
        b"_xmpps-server._tcp.localhost": [_srv(0, b"")],
        b"_xmpp-client._tcp.required.localhost": [_srv(c2s)],
        b"_xmpps-client._tcp.required.localhost": [_srv(direct)],
        b"_xmpp-client._tcp.expired.localhost": [_srv(c2s)],
        b"_xmpp-client._tcp.selfsigned.localhost": [_srv(c2s)],
        b"_xmpp-client._tcp.tls12.localhost": [_srv(c2s)],
        # The plaintext Prosody: no STARTTLS at all.
        b"_xmpp-client._tcp.hashed.localhost": [_srv(prosody.port)],
        # An SRV target that is an alias.
        b"_xmpp-client._tcp.aliased.localhost": [_srv(c2s, b"alias.localhost")],
        b"alias.localhost": [dns.Record_CNAME(b"c2s.localhost")],
        # A target without addresses next to one that works.
        b"_xmpp-client._tcp.noaddr.localhost": [
            _srv(c2s),
            _srv(c2s, b"missing.localhost", priority=5),
        ],
        # The service is decidedly not offered.
        b"_xmpp-client._tcp.dot.localhost": [_srv(0, b"")],
        b"_xmpps-client._tcp.dot.localhost": [_srv(0, b"")],
        # Nothing answers.
        b"_xmpp-client._tcp.closed.localhost": [_srv(closed)],
        b"_xmpp-server._tcp.closed.localhost": [_srv(closed)],
        # No SRV records: the fallback.
        b"nosrv.localhost": [dns.Record_A("127.0.0.1")],
        # More endpoints than a check probes.
        # (two addresses each: a request resolves at most 32 hosts)
        b"_xmpp-client._tcp.many.localhost": [
            _srv(closed, f"t{i:02d}.localhost".encode()) for i in range(20)
        ],
        **{
            f"t{i:02d}.localhost".encode(): [dns.Record_A("127.0.0.1"), dns.Record_A("127.0.0.2")]
            for i in range(20)
        },
    }
    server = start_dns_server(
        reactor, b"localhost", records, failing=[b"_xmpp-client._tcp.failing.localhost"]
    )
    service = _service(server, "--allow-private", "--ca-file", prosody_tls.ca_path)
    strict = _service(server, "--ca-file", prosody_tls.ca_path)
    try:
        yield service, strict
    finally:
        service.stop()
        strict.stop()
        pytest_twisted.blockon(server.stop())


@pytest.fixture(scope="module")
def fakes(prosody_tls):
    """Zone example.test: fake and hostile servers; a service with --allow-private."""
    from certs import session_certs
    from twisted.internet import reactor

    certs = session_certs()
    tls10 = (SSL.TLS1_VERSION, SSL.TLS1_2_VERSION)
    running = {
        "bare": start_fake(
            reactor,
            Fake(
                domain="bare.example.test",
                from_="other.example.test",
                mechanisms=("PLAIN",),
                serve_any=True,
            ),
        ),
        "legacy": start_fake(
            reactor,
            Fake(
                domain="legacy.example.test", cert=certs.other_name, required=True, versions=tls10
            ),
        ),
        "s2s": start_fake(
            reactor,
            Fake(
                domain="s2s.example.test",
                server=True,
                cert=certs.server_only,
                required=True,
                mechanisms=(),
                tls_mechanisms=(),
            ),
        ),
        "good": start_fake(
            reactor, Fake(domain="mixed.example.test", cert=certs.wildcard, required=True)
        ),
        "bad": start_fake(
            reactor, Fake(domain="mixed.example.test", cert=certs.self_signed, required=True)
        ),
        "soon": start_fake(
            reactor, Fake(domain="soon.example.test", cert=certs.expiring_soon, required=True)
        ),
        "plus": start_fake(
            reactor, Fake(domain="plus.example.test", cert=certs.wildcard, required=True)
        ),
        "v6": start_fake(
            reactor, Fake(domain="v6.example.test", cert=certs.wildcard, required=True)
        ),
        "fine": start_fake(reactor, Fake(domain="hostile.example.test", serve_any=True)),
    }
    garbage = HostileFactory(SendAfterHeader, payload=b"\x00\xffnot xml at all<<<")
    silent = HostileFactory(Hostile)
    hostile = {
        "garbage": reactor.listenTCP(0, garbage, interface="127.0.0.1"),
        "silent": reactor.listenTCP(0, silent, interface="127.0.0.1"),
    }
    port = {name: fake.port for name, fake in running.items()}
    port.update({name: p.getHost().port for name, p in hostile.items()})

    def client(domain, *targets):
        return {f"_xmpp-client._tcp.{domain}".encode(): [_srv(port[t], h) for t, h in targets]}

    a = [dns.Record_A("127.0.0.1")]
    records = {
        b"lo.example.test": a,
        b"lo2.example.test": a,
        b"dual.example.test": [*a, dns.Record_AAAA("::1")],
        **client("bare.example.test", ("bare", b"lo.example.test")),
        **client("legacy.example.test", ("legacy", b"lo.example.test")),
        b"_xmpp-server._tcp.s2s.example.test": [_srv(port["s2s"], b"lo.example.test")],
        **client("mixed.example.test", ("good", b"lo.example.test"), ("bad", b"lo2.example.test")),
        **client("soon.example.test", ("soon", b"lo.example.test")),
        **client("plus.example.test", ("plus", b"lo.example.test")),
        **client("v6.example.test", ("v6", b"dual.example.test")),
        **client(
            "hostile.example.test", ("garbage", b"lo.example.test"), ("fine", b"lo2.example.test")
        ),
        **client(
            "slow.example.test", ("silent", b"lo.example.test"), ("fine", b"lo2.example.test")
        ),
    }
    server = start_dns_server(reactor, b"example.test", records)
    service = _service(server, "--allow-private", "--ca-file", prosody_tls.ca_path)
    service.dns_server = server
    try:
        yield service, running, {"garbage": garbage, "silent": silent}
    finally:
        service.stop()
        for fake in running.values():
            pytest_twisted.blockon(fake.stop())
        for factory in (garbage, silent):
            for proto in list(factory.live):
                proto.transport.abortConnection()
        for listening in hostile.values():
            pytest_twisted.blockon(listening.stopListening())
        pytest_twisted.blockon(server.stop())


async def post(service, body, **kwargs):
    response = await treq.post(service.url("/api/xmpp/check"), json=body, **kwargs)
    return response.code, json.loads(await response.content())


def documented(body) -> None:
    """C{body} is what the OpenAPI document says /check answers (objects closed)."""
    schemas = Schemas(openapi.document())
    assert schemas.problems(body, schemas.response("/api/xmpp/check", "post", 200)) == []


async def check(service, domain, **fields):
    code, body = await post(service, {"domain": domain, **fields})
    assert code == 200, body
    assert body["success"] is True, body
    documented(body)
    return body


def ids(body) -> set:
    return {f["id"] for f in body["findings"]}


def finding(body, id_) -> dict:
    return next(f for f in body["findings"] if f["id"] == id_)


# -- the test Prosody with TLS


@pytest_twisted.ensureDeferred
async def test_prosody_optional_tls(local):
    """
    localhost (STARTTLS optional, PLAIN before TLS): critical, with
    sasl.plain_without_tls and tls.starttls_not_required; a valid certificate,
    TLS 1.2 and 1.3 only, the right from, unknown names refused, dialback.
    """
    service, _ = local
    body = await check(service, "localhost")
    assert body["status"] == "critical"
    assert body["software"] == {"name": "Prosody", "version": None, "source": "stream-id"}
    found = ids(body)
    assert {"sasl.plain_without_tls", "tls.starttls_not_required"} <= found
    assert finding(body, "sasl.plain_without_tls")["endpoints"] == [0]
    assert "allow_unencrypted_plain_auth" in finding(body, "sasl.plain_without_tls")["fix"]
    assert not found & {
        "tls.cert_expired",
        "tls.cert_untrusted",
        "tls.cert_name_mismatch",
        "tls.cert_expiring",
        "tls.cert_inconsistent",
        "tls.legacy_versions",
        "tls.no_tls13",
        "tls.starttls_missing",
        "stream.from_mismatch",
        "stream.ignores_to",
        "s2s.no_auth_method",
        "s2s.unreachable",
        "s2s.no_client_auth_eku",
        "connect.client_unreachable",
        "connect.endpoint_unreachable",
        "dns.no_client_srv",
        "dns.no_server_srv",
        "dns.no_xmpps_client",
        "dns.target_is_alias",
        "dns.private_address",
        "sasl.no_scram",
        "check.truncated",
    }
    assert "dns.service_disabled" in found  # _xmpps-server is "."
    assert [e["service"] for e in body["endpoints"]] == [
        "xmpp-client",
        "xmpps-client",
        "xmpp-server",
    ]
    assert all(e["reachable"] for e in body["endpoints"])
    versions = body["endpoints"][0]["tlsVersions"]
    assert (versions["TLSv1.2"], versions["TLSv1.3"]) == (True, True)
    assert versions["TLSv1"] is not True and versions["TLSv1.1"] is not True
    assert body["respectsTo"] == {"client": True, "server": True}
    (cert,) = body["certificates"]
    assert cert["endpoints"] == [0, 1, 2] and cert["verified"] is True
    assert body["summary"]["critical"] == sum(f["severity"] == "critical" for f in body["findings"])


@pytest_twisted.ensureDeferred
async def test_prosody_required_tls(local):
    """required.localhost (STARTTLS required): neither tls.starttls_not_required nor
    sasl.plain_without_tls."""
    service, _ = local
    body = await check(service, "required.localhost", services=["client"])
    assert not ids(body) & {"tls.starttls_not_required", "sasl.plain_without_tls"}
    assert body["endpoints"][0]["probe"]["tls"]["required"] is True


@pytest_twisted.ensureDeferred
async def test_prosody_expired_and_untrusted(local):
    """expired.localhost: tls.cert_expired; selfsigned.localhost: tls.cert_untrusted."""
    service, _ = local
    expired = await check(service, "expired.localhost", services=["client"])
    assert "tls.cert_expired" in ids(expired)
    assert expired["status"] == "critical"
    assert "tls.cert_untrusted" not in ids(expired)
    selfsigned = await check(service, "selfsigned.localhost", services=["client"])
    assert "tls.cert_untrusted" in ids(selfsigned)
    assert "tls.cert_expired" not in ids(selfsigned)


@pytest_twisted.ensureDeferred
async def test_prosody_tls12_only(local):
    """tls12.localhost (TLS 1.2 only, SCRAM-*-PLUS offered): tls.no_tls13, and no
    sasl.no_channel_binding; localhost (TLS 1.3, no -PLUS) shows the opposite."""
    service, _ = local
    body = await check(service, "tls12.localhost", services=["client"])
    assert body["endpoints"][0]["tlsVersions"]["TLSv1.3"] is False
    assert "tls.no_tls13" in ids(body)
    assert "sasl.no_channel_binding" not in ids(body)
    other = await check(service, "localhost", services=["client"])
    assert "sasl.no_channel_binding" in ids(other)


@pytest_twisted.ensureDeferred
async def test_prosody_login(local, prosody_tls):
    """With credentials: the login and server-info; software from XEP-0092;
    info.no_contact_addresses (this Prosody's serverinfo fields are all empty); no
    auth.* finding."""
    service, _ = local
    body = await check(
        service, "localhost", services=["client"], username="alice", password=prosody_tls.password
    )
    assert body["login"]["success"] is True, body["login"]
    assert body["software"]["name"] == "Prosody"
    assert body["software"]["source"] == "version-query"
    assert body["serverInfo"]["software"]["name"] == "Prosody"
    assert "info.no_contact_addresses" in ids(body)
    assert not ids(body) & {"auth.login_failed", "auth.channel_binding_failed"}
    assert "prosody" in finding(body, "info.no_contact_addresses")["fix"].lower()


@pytest_twisted.ensureDeferred
async def test_prosody_login_failed(local):
    """A wrong password: auth.login_failed (critical), not auth.channel_binding_failed."""
    service, _ = local
    body = await check(
        service, "localhost", services=["client"], username="alice", password="wrong"
    )
    assert body["login"]["success"] is False
    assert "auth.login_failed" in ids(body)
    assert "auth.channel_binding_failed" not in ids(body)


@pytest_twisted.ensureDeferred
async def test_plaintext_prosody(local, prosody):
    """hashed.localhost on the plaintext Prosody: tls.starttls_missing; SCRAM only, so
    no sasl.no_scram; its contact addresses (XEP-0157): no info.no_contact_addresses."""
    service, _ = local
    password = prosody.accounts["hashed.localhost"]["alice"]
    body = await check(
        service, "hashed.localhost", services=["client"], username="alice", password=password
    )
    assert "tls.starttls_missing" in ids(body)
    assert "sasl.no_scram" not in ids(body)
    assert body["endpoints"][0]["tlsVersions"] is None
    assert body["login"]["success"] is True, body["login"]
    assert "info.no_contact_addresses" not in ids(body)


# -- DNS


@pytest_twisted.ensureDeferred
async def test_alias_target(local):
    """An SRV target that is a CNAME: dns.target_is_alias (the probe still follows it)."""
    service, _ = local
    body = await check(service, "aliased.localhost", services=["client"])
    assert "dns.target_is_alias" in ids(body)
    assert "c2s.localhost" in finding(body, "dns.target_is_alias")["message"]
    plain = await check(service, "required.localhost", services=["client"])
    assert "dns.target_is_alias" not in ids(plain)


@pytest_twisted.ensureDeferred
async def test_target_without_address(local):
    """A target with no A/AAAA: dns.target_no_address (critical); the other target is
    probed."""
    service, _ = local
    body = await check(service, "noaddr.localhost", services=["client"])
    assert "dns.target_no_address" in ids(body)
    assert "missing.localhost" in finding(body, "dns.target_no_address")["message"]
    assert "dns.lookup_failed" not in ids(body)


@pytest_twisted.ensureDeferred
async def test_dot_target(local):
    """'.' targets: dns.service_disabled, and a disabled client service is not
    connect.client_unreachable."""
    service, _ = local
    body = await check(service, "dot.localhost", services=["client"])
    assert "dns.service_disabled" in ids(body)
    assert "connect.client_unreachable" not in ids(body)
    assert body["endpoints"] == []


@pytest_twisted.ensureDeferred
async def test_lookup_failed(local):
    """A name server failure (SERVFAIL) for an SRV name: dns.lookup_failed."""
    service, _ = local
    body = await check(service, "failing.localhost", services=["client"])
    assert "dns.lookup_failed" in ids(body)


@pytest_twisted.ensureDeferred
async def test_no_srv_records(local):
    """No SRV records: dns.no_client_srv, dns.no_server_srv, dns.no_xmpps_client; the
    fallback (the domain on 5222 / 5269) is probed."""
    service, _ = local
    body = await check(service, "nosrv.localhost")
    assert {"dns.no_client_srv", "dns.no_server_srv", "dns.no_xmpps_client"} <= ids(body)
    assert [(e["service"], e["port"]) for e in body["endpoints"]] == [
        ("xmpp-client", 5222),
        ("xmpp-server", 5269),
    ]
    other = await check(service, "localhost")
    assert not ids(other) & {"dns.no_client_srv", "dns.no_server_srv", "dns.no_xmpps_client"}


@pytest_twisted.ensureDeferred
async def test_private_addresses(local):
    """Without --allow-private, loopback targets are listed blocked, never contacted:
    dns.private_address."""
    service, strict = local
    body = await check(strict, "localhost")
    assert "dns.private_address" in ids(body)
    assert all(e["blocked"] and e["probe"] is None for e in body["endpoints"])
    assert "dns.private_address" not in ids(await check(service, "localhost"))


@pytest_twisted.ensureDeferred
async def test_unreachable(local):
    """Nothing listens: connect.client_unreachable and s2s.unreachable (critical)."""
    service, _ = local
    body = await check(service, "closed.localhost")
    assert {"connect.client_unreachable", "s2s.unreachable"} <= ids(body)
    assert body["status"] == "critical"
    assert {e["probe"]["errorType"] for e in body["endpoints"]} == {"connect"}


@pytest_twisted.ensureDeferred
async def test_truncated(local):
    """More than 32 endpoints: 32 are probed, check.truncated."""
    service, _ = local
    body = await check(service, "many.localhost", services=["client"])
    assert len(body["endpoints"]) == MAX_ENDPOINTS
    assert body["truncated"] is True
    assert "check.truncated" in ids(body)


# -- fake servers


@pytest_twisted.ensureDeferred
async def test_bare_server(fakes):
    """No TLS, PLAIN only, a from of another name, any name served: tls.starttls_missing,
    sasl.plain_without_tls, sasl.no_scram, stream.from_mismatch, stream.ignores_to."""
    service, _, _ = fakes
    body = await check(service, "bare.example.test", services=["client"])
    assert {
        "tls.starttls_missing",
        "sasl.plain_without_tls",
        "sasl.no_scram",
        "stream.from_mismatch",
        "stream.ignores_to",
    } <= ids(body)
    assert body["respectsTo"] == {"client": False}
    assert body["software"] is None
    assert "other.example.test" in finding(body, "stream.from_mismatch")["message"]


@pytest_twisted.ensureDeferred
async def test_legacy_tls(fakes):
    """A server accepting TLS 1.0-1.2 with a certificate for another name:
    tls.legacy_versions, tls.no_tls13, tls.cert_name_mismatch."""
    service, _, _ = fakes
    body = await check(service, "legacy.example.test", services=["client"])
    versions = body["endpoints"][0]["tlsVersions"]
    assert versions["TLSv1.2"] is True and versions["TLSv1.3"] is False
    notes = body["endpoints"][0].get("tlsVersionNotes", {})
    if "TLSv1" in notes:
        pytest.skip(f"this OpenSSL cannot offer TLS 1.0: {notes['TLSv1']}")
    assert versions["TLSv1"] is True
    assert {"tls.legacy_versions", "tls.no_tls13", "tls.cert_name_mismatch"} <= ids(body)
    assert "tls.starttls_not_required" not in ids(body)


@pytest_twisted.ensureDeferred
async def test_s2s_without_auth(fakes):
    """A server stream without dialback or EXTERNAL, its certificate serverAuth only:
    s2s.no_auth_method, s2s.no_client_auth_eku."""
    service, _, _ = fakes
    body = await check(service, "s2s.example.test", services=["server"])
    assert body["endpoints"][0]["reachable"] is True, body["endpoints"][0]
    assert {"s2s.no_auth_method", "s2s.no_client_auth_eku"} <= ids(body)


@pytest_twisted.ensureDeferred
async def test_inconsistent_certificates(fakes):
    """Two endpoints of one service with different certificates, one not valid:
    tls.cert_inconsistent; two certificates listed with their endpoints."""
    service, _, _ = fakes
    body = await check(service, "mixed.example.test", services=["client"])
    assert "tls.cert_inconsistent" in ids(body)
    assert sorted(c["endpoints"] for c in body["certificates"]) == [[0], [1]]
    assert "tls.cert_inconsistent" not in ids(
        await check(service, "plus.example.test", services=["client"])
    )


@pytest_twisted.ensureDeferred
async def test_expiring_certificate(fakes):
    """A certificate that expires in 5 days: tls.cert_expiring, a warning."""
    service, _, _ = fakes
    body = await check(service, "soon.example.test", services=["client"])
    assert finding(body, "tls.cert_expiring")["severity"] == "warning"
    assert "tls.cert_expiring" not in ids(
        await check(service, "plus.example.test", services=["client"])
    )


@pytest_twisted.ensureDeferred
async def test_channel_binding_failed(fakes):
    """SCRAM-SHA-1-PLUS offered, the login refused: auth.login_failed and
    auth.channel_binding_failed."""
    service, _, _ = fakes
    body = await check(
        service, "plus.example.test", services=["client"], username="alice", password="secret"
    )
    assert body["login"]["mechanism"] == "SCRAM-SHA-1-PLUS", body["login"]
    assert {"auth.login_failed", "auth.channel_binding_failed"} <= ids(body)


@pytest_twisted.ensureDeferred
async def test_ipv6_refused(fakes):
    """A target whose IPv4 address answers and whose IPv6 address (::1) refuses:
    connect.ipv6_broken and connect.endpoint_unreachable."""
    service, _, _ = fakes
    body = await check(service, "v6.example.test", services=["client"])
    assert [(e["family"], e["reachable"]) for e in body["endpoints"]] == [(4, True), (6, False)]
    assert {"connect.ipv6_broken", "connect.endpoint_unreachable"} <= ids(body)
    assert finding(body, "connect.ipv6_broken")["endpoints"] == [1]


# -- hostile endpoints, timeouts, bad input


@pytest_twisted.ensureDeferred
async def test_hostile_endpoint(fakes):
    """Garbage from one endpoint costs that endpoint only."""
    service, _, _ = fakes
    body = await check(service, "hostile.example.test", services=["client"])
    garbage, fine = body["endpoints"]
    assert garbage["probe"]["errorType"] == "protocol"
    assert fine["reachable"] is True
    assert "connect.endpoint_unreachable" in ids(body)


@pytest_twisted.ensureDeferred
async def test_timeout(fakes):
    """A check never outlives its timeout: the silent endpoint is reported with
    errorType timeout, the rest of the report is there."""
    service, _, _ = fakes
    body = await check(service, "slow.example.test", services=["client"], timeout=2000)
    silent, fine = body["endpoints"]
    assert silent["probe"]["errorType"] == "timeout"
    assert fine["reachable"] is True
    assert body["elapsedMs"] < 3000


@pytest_twisted.ensureDeferred
async def test_bad_input(local):
    """An invalid domain: 400 naming domain; a username without a password: 400."""
    service, _ = local
    code, body = await post(service, {"domain": "not a domain!"})
    assert code == 400 and body["error"].startswith("domain")
    code, body = await post(service, {})
    assert (code, body["error"]) == (400, "Missing required parameter: domain")
    code, body = await post(service, {"domain": "localhost", "username": "alice"})
    assert code == 400 and "password" in body["error"]
    code, body = await post(service, {"domain": "localhost", "services": ["nope"]})
    assert code == 400 and body["error"].startswith("services")


@pytest_twisted.ensureDeferred
async def test_one_slot(fakes):
    """A check holds one --max-concurrent slot: with one slot, a probe during a check
    is refused (429), and the check still answers."""
    service, _, hostile = fakes
    one = _service(service.dns_server, "--allow-private", "--max-concurrent", "1")
    try:
        running = post(
            one, {"domain": "slow.example.test", "services": ["client"], "timeout": 2000}
        )
        running = defer.ensureDeferred(running)
        await _until(lambda: one.api.in_flight == 1)
        response = await treq.post(one.url("/api/xmpp/connect"), json={"host": "127.0.0.1"})
        assert response.code == 429
        code, body = await running
        assert (code, body["success"]) == (200, True)
    finally:
        await one.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_many_checks_health(fakes):
    """50 checks in flight, each holding a silent endpoint: /api/health still answers,
    and every check answers within its timeout."""
    service, _, _ = fakes
    checks = [
        defer.ensureDeferred(
            post(service, {"domain": "slow.example.test", "services": ["client"], "timeout": 3000})
        )
        for _ in range(50)
    ]
    await _until(lambda: service.api.in_flight == 50)
    response = await treq.get(service.url("/api/health"))
    assert response.code == 200
    assert json.loads(await response.content())["inFlight"] == 50
    answers = await defer.gatherResults(checks)
    assert {(code, body["success"]) for code, body in answers} == {(200, True)}


# -- Server-Sent Events


def events_of(text: str) -> list[tuple[str, dict]]:
    found = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        found.append((fields["event"], json.loads(fields["data"])))
    return found


@pytest_twisted.ensureDeferred
async def test_events(local):
    """Accept: text/event-stream: one endpoint event per endpoint, then the report."""
    service, _ = local
    response = await treq.post(
        service.url("/api/xmpp/check"),
        json={"domain": "localhost"},
        headers={"Accept": "text/event-stream"},
    )
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type")[0].startswith("text/event-stream")
    events = events_of((await response.content()).decode())
    names = [name for name, _ in events]
    assert names == ["endpoint"] * 3 + ["report"]
    assert sorted(data["id"] for name, data in events[:3]) == [0, 1, 2]
    report = events[-1][1]
    assert report["success"] is True and report["status"] == "critical"
    assert report["endpoints"] == sorted((data for _, data in events[:3]), key=lambda e: e["id"])


class _RawClient(Protocol):
    """An HTTP client that sends one request and can be made to go away."""

    def __init__(self, request: bytes):
        self.request = request
        self.received = b""

    def connectionMade(self):
        self.transport.write(self.request)

    def dataReceived(self, data):
        self.received += data


async def _until(condition):
    from twisted.internet import reactor

    while not condition():
        await task.deferLater(reactor, 0.01, lambda: None)


@pytest_twisted.ensureDeferred
async def test_client_goes_away(fakes):
    """A client that goes away cancels every probe of the check: no connection to the
    servers is left, and the check no longer holds its slot."""
    from twisted.internet import reactor

    service, _, hostile = fakes
    silent = hostile["silent"]
    body = json.dumps({"domain": "slow.example.test", "services": ["client"]}).encode()
    request = (
        b"POST /api/xmpp/check HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    client = _RawClient(request)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", service.port.getHost().port)
    await connectProtocol(endpoint, client)
    # The check is under way: the fine endpoint has answered, the silent one is held.
    await _until(lambda: b"event: endpoint" in client.received and silent.live)
    client.transport.abortConnection()
    await _until(lambda: not silent.live and service.api.in_flight == 0)
    assert b"event: report" not in client.received


# -- the page


class _DevTools(ProcessProtocol):
    """Chromium's DevTools protocol over --remote-debugging-pipe (fds 3 and 4)."""

    def __init__(self):
        self.buffer = b""
        self.waiting = {}
        self.sent = 0
        self.ended = defer.Deferred()

    def childDataReceived(self, fd, data):
        if fd != 4:
            return
        self.buffer += data
        while b"\0" in self.buffer:
            message, self.buffer = self.buffer.split(b"\0", 1)
            answer = json.loads(message)
            waiter = self.waiting.pop(answer.get("id"), None)
            if waiter is not None:
                waiter.callback(answer)

    def send(self, method, params=None, session=None):
        self.sent += 1
        message = {"id": self.sent, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        waiter = self.waiting[self.sent] = defer.Deferred()
        self.transport.writeToChild(3, json.dumps(message).encode() + b"\0")
        return waiter

    async def evaluate(self, session, expression):
        answer = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session
        )
        return answer["result"]["result"].get("value")

    def processEnded(self, reason):
        self.ended.callback(None)


@pytest_twisted.ensureDeferred
async def test_page_renders_check(local, tmp_path):
    """
    Headless Chromium opens /#check?domain=localhost&run: the page runs the
    check through its event stream and renders the report: the verdict
    (critical, with the counts), the findings grouped by severity with their
    fixes, the endpoint and certificate tables.
    """
    import re
    import shutil

    from test_page import CHROMIUM_FLAGS, _missing
    from twisted.internet import reactor

    service, _ = local
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise _missing("chromium is not installed")
    browser = _DevTools()
    reactor.spawnProcess(
        browser,
        chromium,
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path}",
            "--remote-debugging-pipe",
            "about:blank",
        ],
        env=None,
        childFDs={0: "w", 1: "r", 2: "r", 3: "w", 4: "r"},
    )
    try:
        targets = await browser.send("Target.getTargets")
        page = next(t for t in targets["result"]["targetInfos"] if t["type"] == "page")
        attached = await browser.send(
            "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}
        )
        session = attached["result"]["sessionId"]
        await browser.send(
            "Page.navigate", {"url": service.url("/#check?domain=localhost&run")}, session
        )
        status = ""
        for _ in range(600):  # a guard, not a measure: the check takes well under a second
            status = await browser.evaluate(
                session, "(document.getElementById('summary') || {dataset: {}}).dataset.status"
            )
            if status:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        dom = await browser.evaluate(session, "document.documentElement.outerHTML")
    finally:
        browser.transport.signalProcess("KILL")
        await browser.ended
    assert status == "critical", dom[-3000:]
    summary = re.search(r'<p id="summary"[^>]*>(.*?)</p>', dom, re.S)
    assert 'class="summary critical"' in summary.group(0), summary.group(0)
    assert "✗ Critical" in summary.group(1)
    assert re.search(r"\d+ critical · \d+ warning · \d+ info", summary.group(1))
    assert "Prosody" in summary.group(1)
    critical = re.search(r'<ul class="findings critical">(.*?)</ul>', dom, re.S).group(1)
    assert 'data-id="sasl.plain_without_tls"' in critical
    assert "allow_unencrypted_plain_auth" in critical  # the fix, for Prosody
    warnings = re.search(r'<ul class="findings warning">(.*?)</ul>', dom, re.S).group(1)
    assert 'data-id="tls.starttls_not_required"' in warnings
    rows = re.search(r'<table class="endpoints">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    assert rows.count("<tr") == 3
    for service_name in ("xmpp-client", "xmpps-client", "xmpp-server"):
        assert f"<td>{service_name}</td>" in rows
    assert '<table class="certificates">' in dom
