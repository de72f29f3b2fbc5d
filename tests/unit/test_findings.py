"""
The findings catalogue (portofcall_xmpp.findings): for every finding id, an
observation that triggers it and one that does not; the status, the fixes
for the detected software, the software guess and the certificate groups.
"""

import attrs
import pytest

from portofcall_xmpp import findings
from portofcall_xmpp.errors import ConnectError, SASLFailure
from portofcall_xmpp.flows import AuthResult, ConnectResult, Failed, ServerInfo, Trace
from portofcall_xmpp.parse import NS_SERVERINFO, DiscoInfo, Features, Software
from portofcall_xmpp.route import Attempt, Resolution
from portofcall_xmpp.srv import (
    SERVICES,
    AddressReport,
    FallbackReport,
    RecordReport,
    ServiceReport,
    SRVReport,
)
from portofcall_xmpp.stream import StreamHeader
from portofcall_xmpp.tlsinfo import CertificateReport, TLSReport
from portofcall_xmpp.tlsstep import TLSInfo

DOMAIN = "example.org"
PRINT_A = "AA:" * 31 + "AA"
PRINT_B = "BB:" * 31 + "BB"


def cert(**changes) -> CertificateReport:
    good = CertificateReport(
        subject="CN=example.org",
        issuer="CN=CA",
        subject_alt_names=("DNS:example.org",),
        not_before="2026-01-01T00:00:00Z",
        not_after="2027-01-01T00:00:00Z",
        fingerprint_sha256=PRINT_A,
        verified=True,
        verify_error=None,
        matches_domain=True,
        chain_verified=True,
        days_until_expiry=200,
        client_auth=True,
    )
    return attrs.evolve(good, **changes)


SECURE = Features(
    features=("resource-binding",),
    mechanisms=("SCRAM-SHA-1", "SCRAM-SHA-1-PLUS"),
)
DIALBACK = Features(features=(), dialback=True)
PLAINTEXT = Features(
    features=("starttls",), mechanisms=("SCRAM-SHA-1",), starttls=True, starttls_required=True
)


RESOLVED = Resolution("host", None, (Attempt("192.0.2.1", 5222, "192.0.2.1", "starttls", None),))


def result(
    *, from_=DOMAIN, first=None, after=SECURE, certificate=None, tls=True, direct=False
) -> ConnectResult:
    if first is None:
        first = SECURE if direct else PLAINTEXT
    report = TLSReport("TLSv1.3", "TLS_AES_128_GCM_SHA256", None, certificate or cert())
    info = TLSInfo(
        available=tls and (direct or first.starttls),
        required=direct or first.starttls_required,
        negotiated=tls,
        direct=direct,
        report=report if tls else None,
        features=after if tls and not direct else None,
    )
    return ConnectResult(
        host="192.0.2.1",
        port=5222,
        domain=DOMAIN,
        header=StreamHeader(
            "0ab3d9a4-1d3e-4a7e-8b3c-2f0e5b6c7d8e", from_, None, "1.0", "en", "jabber:client"
        ),
        features=first,
        tls=info,
        raw="",
        elapsed=0.01,
        warnings=(),
        transcript=(),
        resolved=RESOLVED,
    )


def failed(error=None) -> Failed:
    from twisted.internet.task import Clock

    return Failed(
        error or ConnectError("Connection refused: 192.0.2.1:5222"), Trace(Clock(), 0, False)
    )


def endpoint(id_=0, service="xmpp-client", address="192.0.2.1", **changes):
    base = findings.CheckEndpoint(
        id=id_,
        service=service,
        target="xmpp.example.org",
        port=5222,
        address=address,
        result=result(direct=service.startswith("xmpps-")),
        tls_versions={"TLSv1": False, "TLSv1.1": False, "TLSv1.2": True, "TLSv1.3": True},
    )
    return attrs.evolve(base, **changes)


def service_report(key, status="ok", records=None, fallback=None, error=None, nxdomain=False):
    service = next(s for s in SERVICES if s.key == key)
    if records is None:
        records = (
            (RecordReport(0, 0, 5222, "xmpp.example.org", (AddressReport("192.0.2.1", True),)),)
            if status == "ok"
            else ()
        )
    return ServiceReport(
        service, f"_{key}._tcp.{DOMAIN}", status, nxdomain, tuple(records), fallback, error
    )


def dns(**services):
    reports = [services.get(s.key.replace("-", "_")) or service_report(s.key) for s in SERVICES]
    return SRVReport(DOMAIN, tuple(reports), 0.01)


def observe(**changes) -> findings.Observations:
    base = findings.Observations(
        domain=DOMAIN,
        kinds=("client", "server"),
        dns=dns(),
        endpoints=(
            endpoint(0),
            endpoint(1, "xmpps-client"),
            endpoint(2, "xmpp-server", result=result(after=DIALBACK)),
        ),
        truncated=False,
        aliases={},
        respects_to={"client": True, "server": True},
    )
    return attrs.evolve(base, **changes)


def ids(obs, software=None) -> set:
    return {f.id for f in findings.evaluate(obs, software)}


def test_healthy_domain():
    """A domain with nothing wrong has no findings and status ok."""
    found = findings.evaluate(observe())
    assert found == ()
    assert findings.status(found) == "ok"


def test_every_id_documented():
    """Every catalogue entry has a severity, a trigger and a generic fix."""
    for id_, entry in findings.CATALOGUE.items():
        assert entry.severity in ("critical", "warning", "info", "warning|info"), id_
        assert entry.trigger and entry.fix, id_


def _no_srv(key):
    fallback = FallbackReport(DOMAIN, 5222, (AddressReport("192.0.2.1", True),))
    return service_report(
        key, status="none", nxdomain=True, fallback=None if key.startswith("xmpps") else fallback
    )


CASES = {
    # id: (changes that trigger it)
    "dns.no_client_srv": lambda: observe(dns=dns(xmpp_client=_no_srv("xmpp-client"))),
    "dns.no_server_srv": lambda: observe(dns=dns(xmpp_server=_no_srv("xmpp-server"))),
    "dns.no_xmpps_client": lambda: observe(dns=dns(xmpps_client=_no_srv("xmpps-client"))),
    "dns.service_disabled": lambda: observe(
        dns=dns(xmpps_server=service_report("xmpps-server", status="unavailable"))
    ),
    "dns.target_no_address": lambda: observe(
        dns=dns(
            xmpps_server=service_report(
                "xmpps-server",
                records=[
                    RecordReport(
                        0,
                        0,
                        5270,
                        "gone.example.org",
                        (),
                        "DNS lookup failed for gone.example.org: no such domain (NXDOMAIN)",
                    )
                ],
            )
        )
    ),
    "dns.target_is_alias": lambda: observe(aliases={"xmpp.example.org": "real.example.org"}),
    "dns.private_address": lambda: observe(
        endpoints=(*observe().endpoints, endpoint(3, address="10.0.0.1", blocked=True, result=None))
    ),
    "dns.lookup_failed": lambda: observe(
        dns=dns(
            xmpps_server=service_report(
                "xmpps-server", status="error", error="SRV lookup failed: server failure"
            )
        )
    ),
    "connect.client_unreachable": lambda: observe(
        endpoints=(
            endpoint(0, result=None, failure=failed()),
            endpoint(1, "xmpps-client", result=None, failure=failed()),
            observe().endpoints[2],
        )
    ),
    "connect.endpoint_unreachable": lambda: observe(
        endpoints=(
            *observe().endpoints,
            endpoint(3, address="192.0.2.9", result=None, failure=failed()),
        )
    ),
    "connect.ipv6_broken": lambda: observe(
        endpoints=(
            *observe().endpoints,
            endpoint(3, address="2001:db8::1", result=None, failure=failed()),
        )
    ),
    "s2s.unreachable": lambda: observe(
        endpoints=(
            *observe().endpoints[:2],
            endpoint(2, "xmpp-server", result=None, failure=failed()),
        )
    ),
    "tls.starttls_missing": lambda: observe(
        endpoints=(
            endpoint(
                0,
                result=result(first=Features(mechanisms=("SCRAM-SHA-1",)), tls=False),
                tls_versions=None,
            ),
        )
    ),
    "tls.starttls_not_required": lambda: observe(
        endpoints=(
            endpoint(0, result=result(first=attrs.evolve(PLAINTEXT, starttls_required=False))),
        )
    ),
    "tls.cert_expired": lambda: observe(
        endpoints=(
            endpoint(
                0,
                result=result(
                    certificate=cert(
                        days_until_expiry=-3,
                        verified=False,
                        chain_verified=False,
                        verify_error="certificate has expired",
                    )
                ),
            ),
        )
    ),
    "tls.cert_expiring": lambda: observe(
        endpoints=(endpoint(0, result=result(certificate=cert(days_until_expiry=5))),)
    ),
    "tls.cert_untrusted": lambda: observe(
        endpoints=(
            endpoint(
                0,
                result=result(
                    certificate=cert(
                        verified=False, chain_verified=False, verify_error="self-signed"
                    )
                ),
            ),
        )
    ),
    "tls.cert_name_mismatch": lambda: observe(
        endpoints=(
            endpoint(
                0,
                result=result(
                    certificate=cert(
                        verified=False, matches_domain=False, verify_error="other name"
                    )
                ),
            ),
        )
    ),
    "tls.cert_inconsistent": lambda: observe(
        endpoints=(
            endpoint(0),
            endpoint(
                3,
                address="192.0.2.9",
                result=result(
                    certificate=cert(
                        fingerprint_sha256=PRINT_B,
                        verified=False,
                        chain_verified=False,
                        verify_error="self-signed",
                    )
                ),
            ),
        )
    ),
    "tls.legacy_versions": lambda: observe(
        endpoints=(
            endpoint(
                0, tls_versions={"TLSv1": True, "TLSv1.1": False, "TLSv1.2": True, "TLSv1.3": True}
            ),
        )
    ),
    "tls.no_tls13": lambda: observe(
        endpoints=(
            endpoint(
                0,
                tls_versions={"TLSv1": False, "TLSv1.1": False, "TLSv1.2": True, "TLSv1.3": False},
            ),
        )
    ),
    "s2s.no_client_auth_eku": lambda: observe(
        endpoints=(
            endpoint(
                2,
                "xmpp-server",
                result=result(
                    first=attrs.evolve(PLAINTEXT, dialback=True),
                    certificate=cert(client_auth=False),
                ),
            ),
        )
    ),
    "s2s.no_auth_method": lambda: observe(endpoints=(endpoint(2, "xmpp-server"),)),
    "sasl.plain_without_tls": lambda: observe(
        endpoints=(
            endpoint(
                0, result=result(first=attrs.evolve(PLAINTEXT, mechanisms=("PLAIN", "SCRAM-SHA-1")))
            ),
        )
    ),
    "sasl.no_scram": lambda: observe(
        endpoints=(endpoint(0, result=result(after=attrs.evolve(SECURE, mechanisms=("PLAIN",)))),)
    ),
    "sasl.no_channel_binding": lambda: observe(
        endpoints=(
            endpoint(0, result=result(after=attrs.evolve(SECURE, mechanisms=("SCRAM-SHA-1",)))),
        )
    ),
    "stream.from_mismatch": lambda: observe(
        endpoints=(endpoint(0, result=result(from_="other.example")),)
    ),
    "stream.ignores_to": lambda: observe(respects_to={"client": False, "server": True}),
    "auth.login_failed": lambda: observe(
        login_failure=failed(SASLFailure("SASL authentication failed: not-authorized"))
    ),
    "auth.channel_binding_failed": lambda: observe(
        login_failure=_plus_failure(failed(SASLFailure("SASL authentication failed")))
    ),
    "info.no_contact_addresses": lambda: observe(login=_login({})),
    "check.truncated": lambda: observe(truncated=True),
}


def _plus_failure(failure):
    failure.mechanism = "SCRAM-SHA-256-PLUS"
    failure.channel_binding = "tls-exporter"
    return failure


def _login(contact_fields) -> AuthResult:
    forms = {NS_SERVERINFO: contact_fields} if contact_fields else {}
    info = ServerInfo(
        DiscoInfo((), (), forms), None, Software("Prosody", "0.12.4", None), None, 0.01, None
    )
    return AuthResult(
        resolved=RESOLVED,
        host="192.0.2.1",
        port=5222,
        domain=DOMAIN,
        jid="alice@example.org/x",
        phases=(),
        timings={},
        features=SECURE,
        sasl_mechanisms=SECURE.mechanisms,
        mechanism="SCRAM-SHA-1-PLUS",
        channel_binding="tls-exporter",
        tls=TLSInfo(True, True, True),
        warnings=(),
        elapsed=0.1,
        transcript=(),
        server_info=info,
    )


def test_every_id_has_a_case():
    """The cases below cover the whole catalogue."""
    assert set(CASES) == set(findings.CATALOGUE)


@pytest.mark.parametrize("id_", sorted(CASES))
def test_triggers(id_):
    """Each finding id is reported for the observation made to trigger it, at its severity."""
    found = [f for f in findings.evaluate(CASES[id_]()) if f.id == id_]
    assert found, id_
    severity = findings.CATALOGUE[id_].severity
    assert all(f.severity in severity.split("|") for f in found)
    assert all(f.message and f.fix for f in found)


def test_not_triggered_by_healthy_domain():
    """No finding id is reported for a healthy domain (the 'does not trigger' side of each)."""
    assert ids(observe()) == set()


def test_login_with_contact_addresses():
    """A login whose disco#info carries XEP-0157 addresses raises no info.no_contact_addresses."""
    obs = observe(login=_login({"abuse-addresses": ("mailto:abuse@example.org",)}))
    assert "info.no_contact_addresses" not in ids(obs)


def test_login_failure_without_plus():
    """A failed login with a non-PLUS mechanism is not auth.channel_binding_failed."""
    obs = observe(login_failure=failed(SASLFailure("not-authorized")))
    assert ids(obs) == {"auth.login_failed"}


def test_expiring_severity():
    """A certificate expiring within 14 days is a warning, within 30 days an info."""
    for days, severity in ((5, "warning"), (20, "info")):
        obs = observe(
            endpoints=(endpoint(0, result=result(certificate=cert(days_until_expiry=days))),),
            kinds=("client",),
        )
        (found,) = findings.evaluate(obs)
        assert (found.id, found.severity) == ("tls.cert_expiring", severity)
    obs = observe(
        endpoints=(endpoint(0, result=result(certificate=cert(days_until_expiry=31))),),
        kinds=("client",),
    )
    assert ids(obs) == set()


def test_ipv6_only_unreachable_when_v4_answers():
    """connect.ipv6_broken needs an IPv4 endpoint of the same target that answers."""
    obs = observe(
        endpoints=(
            endpoint(0, result=None, failure=failed()),
            endpoint(3, address="2001:db8::1", result=None, failure=failed()),
        ),
        kinds=("client",),
    )
    assert "connect.ipv6_broken" not in ids(obs)
    assert "connect.client_unreachable" in ids(obs)


def test_client_disabled_is_not_unreachable():
    """A client service disabled by '.' records is not reported unreachable."""
    disabled = {
        "xmpp_client": service_report("xmpp-client", status="unavailable"),
        "xmpps_client": service_report("xmpps-client", status="unavailable"),
    }
    obs = observe(dns=dns(**disabled), endpoints=observe().endpoints[2:])
    assert "connect.client_unreachable" not in ids(obs)
    assert "dns.service_disabled" in ids(obs)


def test_status_and_order():
    """Findings come worst first; the status is the worst severity."""
    obs = attrs.evolve(CASES["sasl.plain_without_tls"](), truncated=True, kinds=("client",))
    found = findings.evaluate(obs)
    assert [(f.id, f.severity) for f in found] == [
        ("sasl.plain_without_tls", "critical"),
        ("check.truncated", "info"),
    ]
    assert findings.status(found) == "critical"
    assert findings.status(findings.evaluate(CASES["check.truncated"]())) == "ok"
    assert findings.status(findings.evaluate(CASES["connect.ipv6_broken"]())) == "warning"


def test_fix_names_the_software():
    """The fix names the Prosody or ejabberd setting when the software is known, else generic."""
    obs = attrs.evolve(CASES["tls.starttls_not_required"](), kinds=("client",))
    (generic,) = findings.evaluate(obs)
    (prosody,) = findings.evaluate(obs, findings.Software("Prosody", None, "stream-id"))
    (ejabberd,) = findings.evaluate(obs, findings.Software("ejabberd", "23.01", "version-query"))
    assert "c2s_require_encryption" in prosody.fix and prosody.fix.startswith("Prosody")
    assert "starttls_required" in ejabberd.fix and ejabberd.fix.startswith("ejabberd")
    assert generic.fix == findings.CATALOGUE["tls.starttls_not_required"].fix


def test_software():
    """Software: XEP-0092 after a login, else the stream-id format, else None."""
    assert findings.software(observe(login=_login({}))) == findings.Software(
        "Prosody", "0.12.4", "version-query"
    )
    assert findings.software(observe()) == findings.Software("Prosody", None, "stream-id")
    numeric = result()
    numeric = attrs.evolve(numeric, header=attrs.evolve(numeric.header, id="1234567890123456789"))
    obs = observe(endpoints=(endpoint(0, result=numeric),))
    assert findings.software(obs) == findings.Software("ejabberd", None, "stream-id")
    odd = attrs.evolve(numeric, header=attrs.evolve(numeric.header, id="abc"))
    assert findings.software(observe(endpoints=(endpoint(0, result=odd),))) is None


def test_certificates_grouped():
    """Certificates are grouped by fingerprint with the endpoints that presented them."""
    groups = findings.certificates(CASES["tls.cert_inconsistent"]().endpoints)
    assert [(g.certificate.fingerprint_sha256, g.endpoints) for g in groups] == [
        (PRINT_A, (0,)),
        (PRINT_B, (3,)),
    ]
    groups = findings.certificates(observe().endpoints)
    assert [g.endpoints for g in groups] == [(0, 1, 2)]


def test_readme_lists_the_catalogue():
    """README documents every finding id with its severity and its trigger."""
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for id_, entry in findings.CATALOGUE.items():
        assert f"| `{id_}` | {entry.severity} | {entry.trigger} |" in readme, id_


# -- XEP-0156 discovery (discover.*)

WS = "wss://example.org/xmpp-websocket"
BOSH = "https://example.org/http-bind"


def host_meta_document(url, links=(WS,), bosh=(BOSH,), status=200, cors="*", error=None):
    from portofcall_xmpp.discover import HostMetaDocument, Links

    return HostMetaDocument(
        url=url,
        status=status,
        content_type="application/xrd+xml",
        cors=cors,
        links=Links(tuple(links), tuple(bosh)) if status == 200 and error is None else Links(),
        error=error,
        error_type=None if error is None else "protocol",
    )


def discovered(xrd=None, jrd=None, web=None) -> findings.Observations:
    """A domain whose host-meta is healthy unless told otherwise."""
    documents = (
        xrd or host_meta_document("https://example.org/.well-known/host-meta"),
        jrd or host_meta_document("https://example.org/.well-known/host-meta.json"),
    )
    if web is None:
        web = (
            findings.WebEndpoint("websocket", WS, result=object()),
            findings.WebEndpoint("bosh", BOSH, result=object()),
        )
    return observe(discovery=documents, web=tuple(web))


def _dead_link():
    return discovered(web=[findings.WebEndpoint("websocket", WS, failure=failed())])


CASES.update(
    {
        "discover.no_host_meta": lambda: discovered(
            xrd=host_meta_document("https://example.org/.well-known/host-meta", status=404),
            jrd=host_meta_document("https://example.org/.well-known/host-meta.json", status=404),
        ),
        "discover.bad_link": _dead_link,
        "discover.no_cors": lambda: discovered(
            xrd=host_meta_document("https://example.org/.well-known/host-meta", cors=None)
        ),
        "discover.insecure_link": lambda: discovered(
            web=[findings.WebEndpoint("websocket", "ws://example.org/ws", result=object())]
        ),
    }
)


def test_healthy_discovery():
    """Both documents with CORS, wss:// and https:// links that answer: no discover.* finding."""
    assert not {i for i in ids(discovered()) if i.startswith("discover.")}


def test_one_document_is_enough():
    """One readable host-meta document (the JSON one missing) is not discover.no_host_meta."""
    missing = host_meta_document("https://example.org/.well-known/host-meta.json", status=404)
    assert "discover.no_host_meta" not in ids(discovered(jrd=missing))


def test_no_cors_needs_links():
    """A document without links needs no CORS header: no discover.no_cors."""
    bare = host_meta_document(
        "https://example.org/.well-known/host-meta", links=(), bosh=(), cors=None
    )
    assert "discover.no_cors" not in ids(discovered(xrd=bare))


def test_blocked_link_is_not_bad():
    """A link the policy refused was not contacted: not discover.bad_link."""
    web = [findings.WebEndpoint("websocket", WS, blocked=True)]
    assert "discover.bad_link" not in ids(discovered(web=web))


def test_discovery_not_asked():
    """No discovery (the policy refused the domain): no discover.* finding."""
    assert not {i for i in ids(observe(discovery=None)) if i.startswith("discover.")}
