"""
The findings of a check (SPEC §8): pure functions from what a check
observed (L{Observations}) to what an operator should act on (L{Finding}).

Every finding id is API: L{CATALOGUE} lists each with its severity, its
trigger (documented in README.md and in the OpenAPI document) and the fix,
generic and for Prosody and ejabberd; L{evaluate} applies the triggers.
L{software} tells which server software answered, L{certificates} groups
the endpoints' certificates by fingerprint.
"""

from __future__ import annotations

import re

import attrs

from .flows import AuthResult, ConnectResult, Failed
from .srv import SRVReport
from .tlsinfo import CertificateReport

SEVERITIES = ("critical", "warning", "info")

#: How many days before expiry a certificate is a warning, and an info.
EXPIRY_WARNING_DAYS = 14
EXPIRY_INFO_DAYS = 30


@attrs.frozen
class Entry:
    """
    One finding id of the catalogue.

    @ivar severity: C{critical}, C{warning} or C{info}; C{warning|info} for
        an id whose severity depends on how bad it is.
    @ivar trigger: when it is reported, in one sentence (the documentation).
    @ivar fix: what to change, whatever the software.
    @ivar prosody: the Prosody setting, or C{None} (then C{fix} is used).
    @ivar ejabberd: the ejabberd setting, or C{None}.
    """

    severity: str
    trigger: str
    fix: str
    prosody: str | None = None
    ejabberd: str | None = None


_CERT = "Install a certificate from a trusted CA (e.g. Let's Encrypt) that names the domain"

CATALOGUE: dict[str, Entry] = {
    "dns.no_client_srv": Entry(
        "info",
        "There is no _xmpp-client._tcp SRV record; clients fall back to the domain on port 5222.",
        "Publish _xmpp-client._tcp.<domain> SRV records pointing at the server.",
    ),
    "dns.no_server_srv": Entry(
        "info",
        "There is no _xmpp-server._tcp SRV record; servers fall back to the domain on port 5269.",
        "Publish _xmpp-server._tcp.<domain> SRV records pointing at the server.",
    ),
    "dns.no_xmpps_client": Entry(
        "info",
        "There is no _xmpps-client._tcp SRV record (XEP-0368 direct TLS).",
        "Offer direct TLS on a port (e.g. 5223) and publish _xmpps-client._tcp.<domain>.",
        "Set c2s_direct_tls_ports = { 5223 } and publish the SRV record.",
        "Add a listener with port: 5223, module: ejabberd_c2s, tls: true; publish the SRV record.",
    ),
    "dns.service_disabled": Entry(
        "info",
        'An SRV service has the single target "." (the service is decidedly not offered).',
        'Nothing to do if intended; otherwise replace the "." record with real targets.',
    ),
    "dns.target_no_address": Entry(
        "critical",
        "An SRV target (or the fallback host) has no A or AAAA record.",
        "Add A/AAAA records for the target, or point the SRV record at a host that has them.",
    ),
    "dns.target_is_alias": Entry(
        "warning",
        "An SRV target is a CNAME (RFC 2782 forbids aliases as targets).",
        "Point the SRV record at the canonical name instead of the alias.",
    ),
    "dns.private_address": Entry(
        "warning",
        "A target resolves to an address that is not globally routable; it was not contacted.",
        "Publish only public addresses for the targets, or use split-horizon DNS deliberately.",
    ),
    "dns.lookup_failed": Entry(
        "critical",
        "An SRV or address lookup failed (SERVFAIL, refused, no answer).",
        "Fix the domain's name servers so that they answer these questions.",
    ),
    "connect.client_unreachable": Entry(
        "critical",
        "Client services were asked for and no client endpoint answered with a stream.",
        "Make the server listen on the published targets and ports, and open the firewall.",
        "Check c2s_ports / c2s_interfaces and that Prosody is running.",
        "Check the ejabberd_c2s listener (port, ip) and that ejabberd is running.",
    ),
    "connect.endpoint_unreachable": Entry(
        "warning",
        "An endpoint did not answer while another of the same kind did.",
        "Make every published target and address answer, or remove the ones that do not.",
    ),
    "connect.ipv6_broken": Entry(
        "warning",
        "A target answers over IPv4 but not over IPv6.",
        "Make the server listen on IPv6 and open the firewall, or remove the AAAA record.",
        'Set c2s_interfaces / s2s_interfaces = { "*", "::" }.',
        'Give the listeners ip: "::" (dual stack).',
    ),
    "s2s.unreachable": Entry(
        "critical",
        "Server services were asked for and no server endpoint answered with a stream.",
        "Make the server accept server-to-server connections on port 5269 (or the SRV port).",
        "Check s2s_ports / s2s_interfaces and that mod_s2s is not disabled.",
        "Add an ejabberd_s2s_in listener on port 5269.",
    ),
    "tls.starttls_missing": Entry(
        "critical",
        "An xmpp- endpoint does not offer STARTTLS.",
        "Configure a certificate and enable TLS.",
        "Configure certificates (prosodyctl cert import) and load mod_tls.",
        "Set certfiles and starttls: true on the listener (s2s_use_starttls for s2s).",
    ),
    "tls.starttls_not_required": Entry(
        "warning",
        "An xmpp- endpoint offers STARTTLS without requiring it (RFC 7590).",
        "Require TLS for every stream.",
        "Set c2s_require_encryption = true and s2s_require_encryption = true.",
        "Set starttls_required: true on the c2s listener and s2s_use_starttls: required.",
    ),
    "tls.cert_expired": Entry(
        "critical",
        "An endpoint presents an expired certificate.",
        "Renew the certificate and reload the server.",
        "Renew it, then prosodyctl cert import and prosodyctl reload.",
        "Renew it (or enable the acme option), then ejabberdctl reload_config.",
    ),
    "tls.cert_expiring": Entry(
        "warning|info",
        "A certificate expires within 14 days (warning) or 30 days (info).",
        "Renew the certificate before it expires, and automate renewal.",
        "Renew it, then prosodyctl cert import and prosodyctl reload.",
        "Enable the acme option for automatic renewal, or renew and reload_config.",
    ),
    "tls.cert_untrusted": Entry(
        "critical",
        "A certificate does not chain to a trusted root (self-signed, unknown CA, "
        "missing intermediate).",
        _CERT + ", with its full chain.",
        "Point ssl.certificate at the full chain (fullchain.pem).",
        "List the full chain in certfiles.",
    ),
    "tls.cert_name_mismatch": Entry(
        "critical",
        "A certificate does not name the XMPP domain (DNS-ID, SRV-ID or XmppAddr).",
        _CERT + " itself (not only the SRV target).",
        "Use a certificate for the VirtualHost's name (prosodyctl cert import).",
        "Add a certificate for the host to certfiles.",
    ),
    "tls.cert_inconsistent": Entry(
        "warning",
        "Endpoints of one service present different certificates and at least one does not verify.",
        "Deploy the same valid certificate on every endpoint of the service.",
    ),
    "tls.legacy_versions": Entry(
        "warning",
        "An endpoint accepts TLS 1.0 or TLS 1.1.",
        "Allow only TLS 1.2 and 1.3.",
        'Set ssl = { protocol = "tlsv1_2+" }.',
        'Set protocol_options: ["no_tlsv1", "no_tlsv1_1"] (c2s_protocol_options, '
        "s2s_protocol_options).",
    ),
    "tls.no_tls13": Entry(
        "info",
        "An endpoint does not accept TLS 1.3.",
        "Enable TLS 1.3 (OpenSSL 1.1.1 or later).",
        'Set ssl = { protocol = "tlsv1_2+" } and use LuaSec 1.0 or later.',
        "Do not exclude TLS 1.3 in protocol_options; use a recent OpenSSL.",
    ),
    "s2s.no_client_auth_eku": Entry(
        "warning",
        "A server endpoint's certificate lacks the clientAuth extended key usage, so "
        "outgoing SASL EXTERNAL fails at peers that require it.",
        "Use a certificate whose extendedKeyUsage includes clientAuth (or has none).",
    ),
    "s2s.no_auth_method": Entry(
        "warning",
        "A server endpoint offers neither dialback nor SASL EXTERNAL.",
        "Enable server dialback or certificate authentication (SASL EXTERNAL).",
        "Enable mod_dialback (or set s2s_secure_auth with a valid certificate).",
        "Add mod_s2s_dialback to modules.",
    ),
    "sasl.plain_without_tls": Entry(
        "critical",
        "A client endpoint offers PLAIN on an unencrypted stream (passwords in clear).",
        "Offer PLAIN only after TLS, or require TLS.",
        "Set allow_unencrypted_plain_auth = false (and c2s_require_encryption = true).",
        "Set starttls_required: true on the c2s listener.",
    ),
    "sasl.no_scram": Entry(
        "warning",
        "A client endpoint offers no SCRAM mechanism.",
        "Store passwords hashed and offer SCRAM-SHA-1/SCRAM-SHA-256.",
        'Set authentication = "internal_hashed".',
        "Set auth_password_format: scram.",
    ),
    "sasl.no_channel_binding": Entry(
        "info",
        "A client endpoint over TLS offers no -PLUS (channel-binding) mechanism.",
        "Offer SCRAM-*-PLUS with tls-exporter or tls-server-end-point.",
        "Use Prosody 0.12 or later with LuaSec 1.1 (tls-exporter for TLS 1.3).",
        "Use ejabberd 23.01 or later with auth_password_format: scram.",
    ),
    "stream.from_mismatch": Entry(
        "warning",
        "An endpoint's stream header has no from, or a from other than the domain.",
        "Serve the domain itself on this endpoint (a VirtualHost / host of that name).",
        "Add a VirtualHost for the domain.",
        "Add the domain to hosts.",
    ),
    "stream.ignores_to": Entry(
        "info",
        "The server answered a stream to a name it does not serve (under .invalid) "
        "instead of host-unknown.",
        "Answer streams to unknown hosts with the host-unknown stream error.",
    ),
    "auth.login_failed": Entry(
        "critical",
        "The login with the given credentials failed.",
        "Check the account and password, the SASL mechanisms, and the certificate.",
    ),
    "auth.channel_binding_failed": Entry(
        "critical",
        "A -PLUS (channel-binding) mechanism was offered and the login with it failed.",
        "Fix or stop advertising channel binding (e.g. a TLS terminator in front of the "
        "server breaks it).",
        "Set tls_channel_binding = false when TLS terminates before Prosody.",
        "Remove -PLUS mechanisms (disable_sasl_scram_plus) when TLS terminates before ejabberd.",
    ),
    "info.no_contact_addresses": Entry(
        "info",
        "The server publishes no contact address (XEP-0157: the serverinfo form is "
        "missing or all its fields are empty).",
        "Publish abuse and admin addresses.",
        'Load mod_server_contact_info and set contact_info = { abuse = { "mailto:…" } }.',
        "Configure mod_disco's server_info with abuse-addresses.",
    ),
    "check.truncated": Entry(
        "info",
        "The domain has more than 32 endpoints; only the first 32 were probed.",
        "Publish fewer SRV targets or addresses.",
    ),
    "discover.no_host_meta": Entry(
        "info",
        "Neither host-meta document (XEP-0156) of the domain could be read over HTTPS, so "
        "web clients cannot find its WebSocket or BOSH endpoint.",
        "Serve https://<domain>/.well-known/host-meta (and host-meta.json) linking to the "
        "WebSocket and BOSH endpoints.",
        "Load mod_http_altconnect (community) with mod_websocket or mod_bosh.",
        "Serve host-meta from the web server in front of ejabberd_http.",
    ),
    "discover.bad_link": Entry(
        "warning",
        "A WebSocket or BOSH URL in host-meta does not answer XMPP.",
        "Fix the link, or the endpoint it points at.",
    ),
    "discover.no_cors": Entry(
        "warning",
        "A host-meta document with links has no Access-Control-Allow-Origin header, so web "
        "clients on other origins cannot read it.",
        "Send Access-Control-Allow-Origin: * with host-meta.",
    ),
    "discover.insecure_link": Entry(
        "warning",
        "host-meta advertises a ws:// or http:// URL (no TLS).",
        "Advertise wss:// and https:// URLs only.",
    ),
}


@attrs.frozen
class Finding:
    """One finding: an id of L{CATALOGUE}, at a severity, about some endpoints."""

    id: str
    severity: str
    endpoints: tuple[int, ...]
    message: str
    fix: str


@attrs.frozen
class CheckEndpoint:
    """
    One endpoint of a check: (service, target, port, address) and what
    probing it found.

    @ivar service: the SRV service key (C{xmpp-client}, ...).
    @ivar blocked: the destination policy refuses the address: not contacted.
    @ivar result: the probe's result, when it answered with a stream.
    @ivar failure: the probe's failure, when it did not.
    @ivar tls_versions: C{{version: True | False | None}} for the address:port
        when it spoke TLS (C{None}: not tested, see C{tls_notes}).
    @ivar tls_notes: C{{version: why it was not tested}}.
    @ivar request: the C{validate.ConnectRequest} or C{validate.S2SRequest}
        it was probed with (C{None} when blocked).
    """

    id: int
    service: str
    target: str
    port: int
    address: str
    blocked: bool = False
    result: ConnectResult | None = None
    failure: Failed | None = None
    tls_versions: dict | None = None
    tls_notes: dict = attrs.field(factory=dict)
    request: object = None

    @property
    def direct(self) -> bool:
        return self.service.startswith("xmpps-")

    @property
    def server(self) -> bool:
        return self.service.endswith("-server")

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4

    @property
    def reachable(self) -> bool:
        return self.result is not None

    @property
    def certificate(self) -> CertificateReport | None:
        report = self.result.tls.report if self.result is not None else None
        return report.certificate if report is not None else None


@attrs.frozen
class WebEndpoint:
    """
    A WebSocket or BOSH URL found in host-meta, and what probing it found.

    @ivar kind: C{"websocket"} or C{"bosh"}.
    @ivar blocked: the destination policy refuses its host: not contacted.
    @ivar result: a C{webstream.WebResult}, when it answered with a stream.
    @ivar failure: the probe's L{Failed}, when it did not.
    """

    kind: str
    url: str
    blocked: bool = False
    result: object = None
    failure: Failed | None = None

    @property
    def reachable(self) -> bool:
        return self.result is not None


@attrs.frozen
class Software:
    """Which server software answered, and how that is known."""

    name: str
    version: str | None
    source: str


@attrs.frozen
class Observations:
    """
    Everything a check found, before it is judged.

    @ivar kinds: what was asked for: C{"client"}, C{"server"} or both.
    @ivar aliases: C{{target: the name it is an alias of}} for SRV targets
        that are CNAMEs.
    @ivar respects_to: C{{kind: True | False | None}}: whether a stream to
        an unknown name was refused (C{None}: not known).
    @ivar login_request: the C{validate.AuthRequest} of the login, if any.
    @ivar discovery: the two host-meta documents (C{discover.HostMetaDocument},
        XRD then JSON), or L{None} when they could not be asked for (the
        destination policy refused the domain).
    @ivar web: the WebSocket and BOSH endpoints they link to, as probed.
    """

    domain: str
    kinds: tuple[str, ...]
    dns: SRVReport
    endpoints: tuple[CheckEndpoint, ...]
    truncated: bool
    aliases: dict
    respects_to: dict
    login: AuthResult | None = None
    login_failure: Failed | None = None
    login_request: object = None
    discovery: tuple | None = None
    web: tuple[WebEndpoint, ...] = ()


@attrs.frozen
class CertificateGroup:
    """One certificate and the endpoints that presented it."""

    certificate: CertificateReport
    endpoints: tuple[int, ...]


def certificates(endpoints) -> tuple[CertificateGroup, ...]:
    """The endpoints' certificates, one per fingerprint, in the order first seen."""
    groups: dict[str, tuple[CertificateReport, list[int]]] = {}
    for endpoint in endpoints:
        cert = endpoint.certificate
        if cert is not None:
            groups.setdefault(cert.fingerprint_sha256, (cert, []))[1].append(endpoint.id)
    return tuple(CertificateGroup(cert, tuple(ids)) for cert, ids in groups.values())


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DECIMAL = re.compile(r"^[0-9]{10,24}$")


def software(obs: Observations) -> Software | None:
    """
    The server software: XEP-0092 after a login, else guessed from the
    stream ids (Prosody: a UUID; ejabberd: a long decimal number), else
    C{None}.
    """
    info = obs.login.server_info if obs.login is not None else None
    if info is not None and info.software is not None and info.software.name:
        return Software(info.software.name, info.software.version, "version-query")
    for endpoint in obs.endpoints:
        stream_id = endpoint.result.header.id if endpoint.reachable else None
        if not stream_id:
            continue
        if _UUID.match(stream_id):
            return Software("Prosody", None, "stream-id")
        if _DECIMAL.match(stream_id):
            return Software("ejabberd", None, "stream-id")
    return None


def _fix(entry: Entry, found: Software | None) -> str:
    name = (found.name or "").lower() if found is not None else ""
    if "prosody" in name and entry.prosody:
        return f"Prosody: {entry.prosody}"
    if "ejabberd" in name and entry.ejabberd:
        return f"ejabberd: {entry.ejabberd}"
    return entry.fix


def evaluate(obs: Observations, found: Software | None = None) -> tuple[Finding, ...]:
    """
    Apply every trigger of L{CATALOGUE} to C{obs}.

    @param found: the software (L{software}), for the fixes.
    @return: the findings, worst first, then in catalogue order.
    """
    raised: list[tuple[str, str, tuple[int, ...], str]] = []

    def add(id_, message, endpoints=(), severity=None):
        raised.append((id_, severity or CATALOGUE[id_].severity, tuple(endpoints), message))

    _dns(obs, add)
    _reachability(obs, add)
    _tls(obs, add)
    _streams(obs, add)
    _login(obs, add)
    _discovery(obs, add)
    if obs.truncated:
        add("check.truncated", "Only the first 32 endpoints of the domain were probed.")
    order = list(CATALOGUE)
    raised.sort(key=lambda f: (SEVERITIES.index(f[1]), order.index(f[0])))
    return tuple(
        Finding(id_, severity, endpoints, message, _fix(CATALOGUE[id_], found))
        for id_, severity, endpoints, message in raised
    )


def status(found: tuple[Finding, ...]) -> str:
    """C{critical} or C{warning}: the worst severity found; C{ok} when none is above info."""
    for severity in ("critical", "warning"):
        if any(f.severity == severity for f in found):
            return severity
    return "ok"


def _services(obs: Observations):
    """The service reports of the kinds asked for."""
    return [s for s in obs.dns.services if s.service.key.rsplit("-", 1)[1] in obs.kinds]


def _no_address(error: str) -> bool:
    return "NXDOMAIN" in error or "no A or AAAA" in error


def _dns(obs: Observations, add) -> None:
    by_key = {s.service.key: s for s in _services(obs)}
    for key, id_ in (
        ("xmpp-client", "dns.no_client_srv"),
        ("xmpp-server", "dns.no_server_srv"),
        ("xmpps-client", "dns.no_xmpps_client"),
    ):
        report = by_key.get(key)
        if report is not None and report.status == "none":
            add(id_, f"{report.name} has no SRV records.")
    blocked = sorted({e.address for e in obs.endpoints if e.blocked})
    if blocked:
        add(
            "dns.private_address",
            f"Targets resolve to addresses that are not globally routable ({', '.join(blocked)}).",
            [e.id for e in obs.endpoints if e.blocked],
        )
    for report in by_key.values():
        if report.status == "unavailable":
            add("dns.service_disabled", f'{report.name} has the single target "." (not offered).')
        elif report.status == "error":
            add("dns.lookup_failed", f"{report.error}.")
        hosts = [(r.target, r.error) for r in report.records if r.target != "."]
        if report.fallback is not None:
            hosts.append((report.fallback.host, report.fallback.error))
        for host, error in hosts:
            if error is None:
                continue
            if _no_address(error):
                add("dns.target_no_address", f"{host} has no address: {error}.")
            else:
                add("dns.lookup_failed", f"{error}.")
        for record in report.records:
            alias = obs.aliases.get(record.target)
            if alias is not None:
                add(
                    "dns.target_is_alias",
                    f"The SRV target {record.target} of {report.name} is an alias (CNAME) "
                    f"of {alias}.",
                )


def _reachability(obs: Observations, add) -> None:
    contacted = [e for e in obs.endpoints if not e.blocked]
    for kind, id_ in (("client", "connect.client_unreachable"), ("server", "s2s.unreachable")):
        if kind not in obs.kinds:
            continue
        mine = [e for e in contacted if e.server == (kind == "server")]
        # A kind whose services are disabled ("." records) is not unreachable.
        disabled = any(
            s.status == "unavailable" for s in _services(obs) if s.service.key.endswith(kind)
        )
        if not any(e.reachable for e in mine) and not (disabled and not mine):
            add(
                id_,
                f"No {kind} endpoint of {obs.domain} answered with a stream.",
                [e.id for e in mine],
            )
        elif any(e.reachable for e in mine):
            down = [e for e in mine if not e.reachable]
            for e in down:
                why = e.failure.error.message if e.failure is not None else "no answer"
                add(
                    "connect.endpoint_unreachable",
                    f"{e.service} {e.target} [{e.address}]:{e.port} did not answer ({why}).",
                    [e.id],
                )
    places: dict[tuple, list[CheckEndpoint]] = {}
    for e in contacted:
        places.setdefault((e.service, e.target, e.port), []).append(e)
    for (service, target, port), group in places.items():
        v4 = any(e.reachable for e in group if e.family == 4)
        broken = [e for e in group if e.family == 6 and not e.reachable]
        if v4 and broken:
            add(
                "connect.ipv6_broken",
                f"{service} {target}:{port} answers over IPv4 but not over IPv6.",
                [e.id for e in broken],
            )


def _tls(obs: Observations, add) -> None:
    reachable = [e for e in obs.endpoints if e.reachable]
    for e in reachable:
        tls = e.result.tls
        where = f"{e.service} {e.target} [{e.address}]:{e.port}"
        if not e.direct and not tls.available:
            add("tls.starttls_missing", f"{where} does not offer STARTTLS.", [e.id])
        elif not e.direct and not tls.required:
            add(
                "tls.starttls_not_required",
                f"{where} offers STARTTLS but does not require it.",
                [e.id],
            )
        versions = e.tls_versions or {}
        legacy = [v for v in ("TLSv1", "TLSv1.1") if versions.get(v) is True]
        if legacy:
            add("tls.legacy_versions", f"{where} accepts {' and '.join(legacy)}.", [e.id])
        if versions.get("TLSv1.3") is False:
            add("tls.no_tls13", f"{where} does not accept TLS 1.3.", [e.id])
    for group in certificates(reachable):
        _certificate(group, add)
    by_service: dict[str, list[CheckEndpoint]] = {}
    for e in reachable:
        if e.certificate is not None:
            by_service.setdefault(e.service, []).append(e)
    for service, group in by_service.items():
        prints = {e.certificate.fingerprint_sha256 for e in group}
        if len(prints) > 1 and not all(e.certificate.verified for e in group):
            add(
                "tls.cert_inconsistent",
                f"The endpoints of {service} present {len(prints)} different certificates, "
                "not all of them valid.",
                [e.id for e in group],
            )
    for e in reachable:
        cert = e.certificate
        if e.server and cert is not None and cert.client_auth is False:
            add(
                "s2s.no_client_auth_eku",
                f"The certificate of {e.service} {e.target} [{e.address}]:{e.port} is not "
                "for TLS clients (no clientAuth in extendedKeyUsage).",
                [e.id],
            )


def _certificate(group: CertificateGroup, add) -> None:
    cert, ids = group.certificate, group.endpoints
    days = cert.days_until_expiry
    name = f"The certificate {cert.subject or cert.fingerprint_sha256}"
    if days is not None and days < 0:
        add("tls.cert_expired", f"{name} expired on {cert.not_after}.", ids)
    elif days is not None and days <= EXPIRY_INFO_DAYS:
        severity = "warning" if days <= EXPIRY_WARNING_DAYS else "info"
        add("tls.cert_expiring", f"{name} expires in {days} days.", ids, severity)
    if not cert.chain_verified and not (days is not None and days < 0):
        add("tls.cert_untrusted", f"{name} is not trusted: {cert.verify_error}.", ids)
    if not cert.matches_domain:
        add("tls.cert_name_mismatch", f"{name} does not name the domain.", ids)


def _final_features(result: ConnectResult):
    """The features the session goes on with: after STARTTLS when it was negotiated."""
    return result.tls.features if result.tls.features is not None else result.features


def _streams(obs: Observations, add) -> None:
    for e in obs.endpoints:
        if not e.reachable:
            continue
        where = f"{e.service} {e.target} [{e.address}]:{e.port}"
        result = e.result
        served = result.header.from_
        if (served or "").lower() != obs.domain.lower():
            add(
                "stream.from_mismatch",
                f"{where} answered from {served!r}, not from {obs.domain}."
                if served
                else f"{where} answered without a from.",
                [e.id],
            )
        final = _final_features(result)
        if e.server:
            if not final.dialback and "EXTERNAL" not in final.mechanisms:
                add(
                    "s2s.no_auth_method",
                    f"{where} offers neither dialback nor SASL EXTERNAL.",
                    [e.id],
                )
            continue
        if not e.direct and "PLAIN" in result.features.mechanisms:
            add("sasl.plain_without_tls", f"{where} offers PLAIN before TLS.", [e.id])
        if final.mechanisms and not any(m.startswith("SCRAM-") for m in final.mechanisms):
            add("sasl.no_scram", f"{where} offers no SCRAM mechanism.", [e.id])
        if (
            result.tls.negotiated
            and final.mechanisms
            and not any(m.endswith("-PLUS") for m in final.mechanisms)
        ):
            add("sasl.no_channel_binding", f"{where} offers no -PLUS mechanism over TLS.", [e.id])
    for kind, respected in obs.respects_to.items():
        if respected is False:
            add(
                "stream.ignores_to",
                f"The {kind} service answered a stream to a name it "
                "cannot serve instead of host-unknown.",
            )


def _login(obs: Observations, add) -> None:
    failure = obs.login_failure
    if failure is not None:
        add("auth.login_failed", f"The login failed: {failure.error.message}.")
        if (failure.mechanism or "").endswith("-PLUS") and failure.error.error_type == "sasl":
            add(
                "auth.channel_binding_failed",
                f"The login with {failure.mechanism} ({failure.channel_binding}) failed.",
            )
    info = obs.login.server_info if obs.login is not None else None
    if (
        info is not None
        and info.disco is not None
        and not any(info.disco.contact_addresses().values())
    ):
        add("info.no_contact_addresses", "The server publishes no contact addresses.")


def _discovery(obs: Observations, add) -> None:
    if obs.discovery is None:
        return
    read = [d for d in obs.discovery if d.status == 200 and d.error is None]
    if not read:
        add("discover.no_host_meta", f"No host-meta document of {obs.domain} could be read.")
    for document in read:
        if (document.links.websocket or document.links.bosh) and document.cors is None:
            add("discover.no_cors", f"{document.url} has no Access-Control-Allow-Origin header.")
    for endpoint in obs.web:
        if endpoint.url.startswith(("ws://", "http://")):
            add("discover.insecure_link", f"host-meta advertises {endpoint.url} (no TLS).")
        if endpoint.failure is not None:
            add(
                "discover.bad_link",
                f"host-meta links to {endpoint.url}, which does not answer XMPP "
                f"({endpoint.failure.error.message}).",
            )
