"""
Results to JSON: one renderer per result, each with the JSON Schema of what
it answers declared beside it (in L{SCHEMAS}, the components of the OpenAPI
document).  Only the web layer speaks JSON and milliseconds: times below it
are seconds, turned into integer milliseconds here by L{schema.ms}.
"""

from __future__ import annotations

from . import discover, findings, flows, route, srv, tlsinfo, webstream
from .schema import ms, nullable, obj, ref, strings
from .validate import (
    CHECK_KINDS,
    AuthRequest,
    CheckRequest,
    ComponentRequest,
    ConnectRequest,
    DiscoverRequest,
    MessageRequest,
    PingRequest,
    S2SRequest,
    SRVRequest,
    WebRequest,
)

#: The response schemas, by component name; each declared beside its renderer.
SCHEMAS: dict[str, dict] = {}

#: SPEC §2: the machine-readable reasons a probe stopped.
ERROR_TYPES = (
    "dns",
    "connect",
    "timeout",
    "tls",
    "stream_error",
    "sasl",
    "bind",
    "protocol",
    "too_large",
    "closed",
)


# -- parts shared by several answers

SCHEMAS["ErrorType"] = {
    "type": "string",
    "enum": list(ERROR_TYPES),
    "description": "Why the probe stopped. `dns`: the name did not resolve; "
    "`connect`: no TCP connection; `timeout`: the overall or a per-read timeout; "
    "`tls`: TLS failed or the certificate was refused; `stream_error`: a "
    "`<stream:error>`; `sasl`: authentication failed or no usable mechanism; "
    "`bind`: resource binding or session failed; `protocol`: not well-formed or "
    "not XMPP; `too_large`: a size limit was exceeded; `closed`: the server closed "
    "the connection early.",
}

SCHEMAS["Phases"] = {
    "type": "array",
    "items": {"type": "string"},
    "description": "The steps reached, in order: `tls_connected` (direct TLS), "
    "`stream_opened`, `starttls_upgraded`, `sasl_<mechanism>_sent` (e.g. "
    "`sasl_scram_sha_256_sent`), `authenticated`, `stream_restarted`, "
    "`resource_bound`, `session_established`, then `roster_received` or "
    "`message_sent`.",
}

SCHEMAS["Timings"] = {
    "type": "object",
    "additionalProperties": {"type": "integer"},
    "description": "For each phase reached: milliseconds since the request started.",
}

SCHEMAS["TranscriptEntry"] = obj(
    {
        "dir": {"type": "string", "enum": ["out", "in"]},
        "ms": {"type": "integer", "description": "Since the request started."},
        "xml": {
            "type": "string",
            "description": "The element; credentials shown as `[redacted]`, "
            "entries over 64 KiB cut with a marker.",
        },
    },
    required=["dir", "ms", "xml"],
)

SCHEMAS["Transcript"] = {
    "type": "array",
    "items": ref("TranscriptEntry"),
    "description": "Present when the request asked for `transcript: true`.",
}


def _transcript_json(entries) -> list:
    return [{"dir": d, "ms": ms(t), "xml": xml} for d, t, xml in entries]


SCHEMAS["Certificate"] = obj(
    {
        "subject": {"type": "string", "description": "RFC 4514."},
        "issuer": {"type": "string", "description": "RFC 4514."},
        "subjectAltNames": strings("E.g. `DNS:example.org`, `XmppAddr:example.org`."),
        "notBefore": {"type": "string", "format": "date-time"},
        "notAfter": {"type": "string", "format": "date-time"},
        "fingerprintSha256": {
            "type": "string",
            "description": "Colon-separated upper-case hex.",
        },
        "verified": {
            "type": "boolean",
            "description": "The chain verifies to a trusted root and the name matches the domain.",
        },
        "verifyError": nullable("string", "Why not, or null."),
        "matchesDomain": {
            "type": "boolean",
            "description": "The name check alone (RFC 6125/7590).",
        },
        "daysUntilExpiry": {
            "type": "integer",
            "description": "Whole days until `notAfter` (negative once expired).",
        },
    },
    required=[
        "subject",
        "issuer",
        "subjectAltNames",
        "notBefore",
        "notAfter",
        "fingerprintSha256",
        "verified",
        "verifyError",
        "matchesDomain",
        "daysUntilExpiry",
    ],
    description="The server's certificate, judged.",
)


def _certificate_json(cert) -> dict:
    return {
        "subject": cert.subject,
        "issuer": cert.issuer,
        "subjectAltNames": list(cert.subject_alt_names),
        "notBefore": cert.not_before,
        "notAfter": cert.not_after,
        "fingerprintSha256": cert.fingerprint_sha256,
        "verified": cert.verified,
        "verifyError": cert.verify_error,
        "matchesDomain": cert.matches_domain,
        "daysUntilExpiry": cert.days_until_expiry,
    }


SCHEMAS["TLSReport"] = obj(
    {
        "available": {
            "type": "boolean",
            "description": "STARTTLS was offered, or the connection is direct TLS.",
        },
        "required": {
            "type": "boolean",
            "description": "`<required/>` inside `<starttls>`.",
        },
        "negotiated": {"type": "boolean"},
        "direct": {"const": True, "description": "Present for direct TLS only."},
        "protocol": {"type": "string", "description": "Once negotiated: e.g. TLSv1.3."},
        "cipher": nullable("string"),
        "alpn": nullable("string", "The negotiated ALPN protocol."),
        "certificate": {
            "anyOf": [ref("Certificate"), {"type": "null"}],
            "description": "Once negotiated; null when the server sent none.",
        },
        "saslMechanisms": strings("Offered after STARTTLS."),
        "features": strings("Features offered after STARTTLS."),
        "dialback": {
            "type": "boolean",
            "description": "/s2s only: dialback offered after STARTTLS.",
        },
    },
    required=["available", "required", "negotiated"],
    description="What the server said about TLS and what became of it.",
)


def _tls_json(tls: flows.TLSInfo) -> dict:
    body = {"available": tls.available, "required": tls.required, "negotiated": tls.negotiated}
    if tls.direct:
        body["direct"] = True
    report = tls.report
    if report is not None:
        body["protocol"] = report.protocol
        body["cipher"] = report.cipher
        body["alpn"] = report.alpn
        body["certificate"] = (
            None if report.certificate is None else _certificate_json(report.certificate)
        )
    if tls.features is not None:
        body["saslMechanisms"] = list(tls.features.mechanisms)
        body["features"] = list(tls.features.features)
    return body


SCHEMAS["Resolved"] = obj(
    {
        "via": {
            "type": "string",
            "enum": ["srv", "fallback", "host"],
            "description": "`host`: the `host` given (no SRV); `srv`: an SRV record of "
            "`domain`; `fallback`: no usable SRV record, the domain itself on 5222 (5269).",
        },
        "record": {
            "anyOf": [
                obj(
                    {
                        "service": {
                            "type": "string",
                            "enum": ["xmpp-client", "xmpps-client", "xmpp-server", "xmpps-server"],
                        },
                        "target": {"type": "string"},
                        "port": {"type": "integer"},
                        "priority": {"type": "integer"},
                        "weight": {"type": "integer"},
                    },
                    required=["service", "target", "port", "priority", "weight"],
                ),
                {"type": "null"},
            ],
            "description": "The SRV record of the connection used (of the last one tried "
            "when none connected); null without SRV.",
        },
        "attempts": {
            "type": "array",
            "description": f"Every place tried, in order (at most {route.MAX_TARGETS} "
            f"targets, {route.MAX_ATTEMPTS} connection attempts); the last one without "
            "`error` is the connection used.",
            "items": obj(
                {
                    "target": {"type": "string"},
                    "port": {"type": "integer"},
                    "address": nullable("string", "The address dialled; null when none was."),
                    "tls": {
                        "type": "string",
                        "enum": ["direct", "starttls", "none"],
                        "description": "`direct`: TLS from the first byte (XEP-0368); "
                        "`starttls`: plaintext first, STARTTLS as `tls` says; `none`: "
                        "plaintext, as asked.",
                    },
                    "error": nullable("string", "Why this attempt failed; null if it connected."),
                },
                required=["target", "port", "address", "tls", "error"],
            ),
        },
    },
    required=["via", "record", "attempts"],
    description="How the server was found (SPEC §8).",
)


def resolved_json(resolved: route.Resolution) -> dict:
    """A L{route.Resolution} as the C{Resolved} schema has it."""
    record = resolved.record
    return {
        "via": resolved.via,
        "record": None
        if record is None
        else {
            "service": record.service,
            "target": record.target,
            "port": record.port,
            "priority": record.priority,
            "weight": record.weight,
        },
        "attempts": [
            {
                "target": a.target,
                "port": a.port,
                "address": a.address,
                "tls": a.tls,
                "error": a.error,
            }
            for a in resolved.attempts
        ],
    }


# -- /connect and /s2s

SCHEMAS["ConnectSuccess"] = obj(
    {
        "success": {"const": True},
        "message": {"const": "XMPP server reachable"},
        "host": {"type": "string"},
        "port": {"type": "integer"},
        "domain": {"type": "string"},
        "streamId": nullable("string"),
        "serverFrom": nullable("string"),
        "xmppVersion": nullable("string"),
        "tls": ref("TLSReport"),
        "saslMechanisms": strings(),
        "compressionMethods": strings(),
        "features": strings(
            "Mapped feature names: `starttls`, `resource-binding`, `session`, "
            "`stream-management`, `roster-versioning`, `client-state-indication`, "
            "`message-carbons`."
        ),
        "featureNamespaces": strings("Every child namespace of the features block."),
        "saslChannelBindings": strings("XEP-0440 types offered."),
        "streamLang": nullable("string"),
        "raw": {
            "type": "string",
            "description": "The first 2000 characters the server sent, up to the end "
            "of the first features block.",
        },
        "resolved": ref("Resolved"),
        "warnings": strings(),
        "elapsedMs": {"type": "integer"},
        "transcript": ref("Transcript"),
    },
    required=[
        "success",
        "message",
        "host",
        "port",
        "domain",
        "streamId",
        "serverFrom",
        "xmppVersion",
        "tls",
        "saslMechanisms",
        "compressionMethods",
        "features",
        "featureNamespaces",
        "saslChannelBindings",
        "streamLang",
        "raw",
        "resolved",
        "warnings",
        "elapsedMs",
    ],
    description="Top-level fields describe the first features block; `tls` the "
    "block after STARTTLS.",
)


def connect_json(result: flows.ConnectResult, req: ConnectRequest | S2SRequest) -> dict:
    """SPEC §3 /connect: the stream header, the features, and the TLS report."""
    header, features = result.header, result.features
    body = {
        "success": True,
        "message": "XMPP server reachable",
        "host": result.host,
        "port": result.port,
        "domain": result.domain,
        "streamId": header.id,
        "serverFrom": header.from_,
        "xmppVersion": header.version,
        "tls": _tls_json(result.tls),
        "saslMechanisms": list(features.mechanisms),
        "compressionMethods": list(features.compression),
        "features": list(features.features),
        "featureNamespaces": list(features.namespaces),
        "saslChannelBindings": list(features.channel_bindings),
        "streamLang": header.lang,
        "raw": result.raw,
        "resolved": resolved_json(result.resolved),
        "warnings": list(result.warnings),
        "elapsedMs": ms(result.elapsed),
    }
    if req.transcript:
        body["transcript"] = _transcript_json(result.transcript)
    return body


def _s2s_success(connect: dict) -> dict:
    """/s2s answers the /connect fields for a jabber:server stream, plus dialback."""
    schema = {**connect, "properties": dict(connect["properties"])}
    props = schema["properties"]
    props["message"] = {"const": "XMPP server reachable (server-to-server)"}
    props["from"] = nullable("string", "The `from` we sent, or null.")
    props["dialback"] = {
        "type": "boolean",
        "description": "The server offers dialback (`urn:xmpp:features:dialback`) in its "
        "first features block; `tls.dialback` tells the same after STARTTLS.",
    }
    schema["required"] = [*connect["required"], "from", "dialback"]
    return schema


SCHEMAS["S2SSuccess"] = _s2s_success(SCHEMAS["ConnectSuccess"])


def s2s_json(result: flows.ConnectResult, req: S2SRequest) -> dict:
    """SPEC §7 /s2s: the /connect fields for a server-to-server stream, plus dialback."""
    body = connect_json(result, req)
    tail = {k: body.pop(k) for k in ("raw", "warnings", "elapsedMs", "transcript") if k in body}
    body["message"] = "XMPP server reachable (server-to-server)"
    body["from"] = req.from_
    body["dialback"] = result.features.dialback
    if result.tls.features is not None:
        body["tls"]["dialback"] = result.tls.features.dialback
    body.update(tail)
    return body


# -- the auth endpoints

SCHEMAS["AuthSuccess"] = obj(
    {
        "success": {"const": True},
        "host": {"type": "string"},
        "port": {"type": "integer"},
        "jid": {"type": "string", "description": "As bound by the server."},
        "domain": {"type": "string"},
        "phases": ref("Phases"),
        "features": strings("Offered after the SASL restart."),
        "saslMechanisms": strings("Offered when authenticating."),
        "mechanism": {"type": "string"},
        "channelBinding": nullable("string", "The channel-binding type used."),
        "tls": ref("TLSReport"),
        "resolved": ref("Resolved"),
        "timings": ref("Timings"),
        "elapsedMs": {"type": "integer"},
        "warnings": strings("E.g. `credentials sent without TLS`."),
        "transcript": ref("Transcript"),
    },
    required=[
        "success",
        "host",
        "port",
        "jid",
        "domain",
        "phases",
        "features",
        "saslMechanisms",
        "mechanism",
        "channelBinding",
        "tls",
        "resolved",
        "timings",
        "elapsedMs",
        "warnings",
    ],
    description="What every successful auth endpoint answers.",
)


def _auth_base(result: flows.AuthResult, req: AuthRequest, message: str | None) -> dict:
    body = {
        "success": True,
        "host": result.host,
        "port": result.port,
        "jid": result.jid,
        "domain": result.domain,
        "phases": list(result.phases),
        "features": list(result.features.features),
        "saslMechanisms": list(result.sasl_mechanisms),
        "mechanism": result.mechanism,
        "channelBinding": result.channel_binding,
        "tls": _tls_json(result.tls),
        "resolved": resolved_json(result.resolved),
    }
    if message is not None:
        body["message"] = message
    body.update(
        {
            "timings": {k: ms(v) for k, v in result.timings.items()},
            "elapsedMs": ms(result.elapsed),
            "warnings": list(result.warnings),
        }
    )
    if req.transcript:
        body["transcript"] = _transcript_json(result.transcript)
    return body


SCHEMAS["LoginSuccess"] = {
    "allOf": [
        ref("AuthSuccess"),
        obj({"message": {"const": "XMPP login successful"}}, required=["message"]),
    ]
}


def login_json(result: flows.AuthResult, req: AuthRequest) -> dict:
    """SPEC §4 /login."""
    return _auth_base(result, req, "XMPP login successful")


SCHEMAS["RosterContact"] = obj(
    {
        "jid": {"type": "string"},
        "name": nullable("string"),
        "subscription": {"type": "string", "description": "`none` when absent."},
        "ask": nullable("string"),
        "groups": strings("Every group of the item."),
    },
    required=["jid", "name", "subscription", "ask", "groups"],
    description="One roster item (RFC 6121 §2.1.2).",
)

SCHEMAS["Roster"] = obj(
    {
        "total": {"type": "integer"},
        "version": nullable("string"),
        "contacts": {"type": "array", "items": ref("RosterContact")},
    },
    required=["total", "version", "contacts"],
)

SCHEMAS["RosterSuccess"] = {
    "allOf": [
        ref("AuthSuccess"),
        obj(
            {
                "message": {"const": "XMPP roster retrieved"},
                "roster": ref("Roster"),
            },
            required=["message", "roster"],
        ),
    ]
}


def roster_json(result: flows.AuthResult, req: AuthRequest) -> dict:
    """SPEC §5 /roster: the login, then every roster item."""
    body = _auth_base(result, req, "XMPP roster retrieved")
    r = result.roster
    body["roster"] = {
        "total": len(r.contacts),
        "version": r.version,
        # Each contact is its JSON object already (parse.Contact).
        "contacts": list(r.contacts),
    }
    return body


SCHEMAS["ServerInfoSuccess"] = {
    "allOf": [
        ref("AuthSuccess"),
        obj(
            {
                "message": {"const": "XMPP server information retrieved"},
                "serverInfo": obj(
                    {
                        "identities": {
                            "anyOf": [
                                {
                                    "type": "array",
                                    "items": obj(
                                        {
                                            "category": {"type": "string"},
                                            "type": {"type": "string"},
                                            "name": nullable("string"),
                                        },
                                        required=["category", "type", "name"],
                                    ),
                                },
                                {"type": "null"},
                            ],
                            "description": "XEP-0030 identities of the server "
                            "(null when disco#info failed).",
                        },
                        "features": {
                            "anyOf": [strings(), {"type": "null"}],
                            "description": "XEP-0030 features (null when disco#info failed).",
                        },
                        "contactAddresses": {
                            "anyOf": [
                                {
                                    "type": "object",
                                    "additionalProperties": strings(),
                                },
                                {"type": "null"},
                            ],
                            "description": "XEP-0157: the fields of the serverinfo "
                            "form (`abuse-addresses`, `admin-addresses`, ...).",
                        },
                        "forms": {
                            "anyOf": [
                                {
                                    "type": "object",
                                    "additionalProperties": {
                                        "type": "object",
                                        "additionalProperties": strings(),
                                    },
                                },
                                {"type": "null"},
                            ],
                            "description": "Every XEP-0128 form, by FORM_TYPE.",
                        },
                        "software": {
                            "anyOf": [
                                obj(
                                    {
                                        "name": nullable("string"),
                                        "version": nullable("string"),
                                        "os": nullable("string"),
                                    },
                                    required=["name", "version", "os"],
                                ),
                                {"type": "null"},
                            ],
                            "description": "XEP-0092 software version.",
                        },
                        "pingMs": {
                            "anyOf": [{"type": "number"}, {"type": "null"}],
                            "description": "XEP-0199 ping round trip.",
                        },
                        "errors": obj(
                            {
                                "disco": nullable("string"),
                                "version": nullable("string"),
                                "ping": nullable("string"),
                            },
                            required=["disco", "version", "ping"],
                            description="Why a part is missing: the condition of "
                            "the iq error, or a read timeout.",
                        ),
                    },
                    required=[
                        "identities",
                        "features",
                        "contactAddresses",
                        "forms",
                        "software",
                        "pingMs",
                        "errors",
                    ],
                ),
            },
            required=["message", "serverInfo"],
        ),
    ]
}


def server_info_json(result: flows.AuthResult, req: AuthRequest) -> dict:
    """SPEC §7 /server-info: the login, then disco#info, software version and ping."""
    body = _auth_base(result, req, "XMPP server information retrieved")
    info = result.server_info
    disco = info.disco
    body["serverInfo"] = {
        "identities": None
        if disco is None
        else [{"category": i.category, "type": i.type, "name": i.name} for i in disco.identities],
        "features": None if disco is None else list(disco.features),
        "contactAddresses": None
        if disco is None
        else {k: list(v) for k, v in disco.contact_addresses().items()},
        "forms": None
        if disco is None
        else {t: {k: list(v) for k, v in f.items()} for t, f in disco.forms.items()},
        "software": None
        if info.software is None
        else {"name": info.software.name, "version": info.software.version, "os": info.software.os},
        "pingMs": None if info.ping is None else round(info.ping * 1000, 1),
        "errors": {
            "disco": info.disco_error,
            "version": info.software_error,
            "ping": info.ping_error,
        },
    }
    return body


SCHEMAS["StanzaErrorCondition"] = obj(
    {
        "type": nullable("string"),
        "condition": {"type": "string"},
        "text": nullable("string"),
    },
    required=["type", "condition", "text"],
)

SCHEMAS["MessageSuccess"] = {
    "allOf": [
        ref("AuthSuccess"),
        obj(
            {
                "message": obj(
                    {
                        "to": {"type": "string"},
                        "body": {"type": "string"},
                        "id": {"type": "string", "pattern": "^poc_"},
                    },
                    required=["to", "body", "id"],
                    description="The message sent.",
                ),
                "deliveryError": nullable(
                    "string",
                    "The inner XML of the `<error>` of an error reply to this "
                    "message within `waitMs`, or null.",
                ),
                "deliveryErrorCondition": {
                    "anyOf": [ref("StanzaErrorCondition"), {"type": "null"}]
                },
                "receipt": obj(
                    {
                        "requested": {"type": "boolean"},
                        "received": {"type": "boolean"},
                        "ms": nullable("integer", "When the receipt arrived."),
                    },
                    required=["requested", "received", "ms"],
                ),
            },
            required=["message", "deliveryError", "deliveryErrorCondition", "receipt"],
        ),
    ],
    "description": "A delivery error leaves `success: true`: the message was sent.",
}


def message_json(result: flows.AuthResult, req: MessageRequest) -> dict:
    """SPEC §6 /message: the login, then the message sent and what became of it."""
    body = _auth_base(result, req.auth, None)
    d = result.delivery
    body["message"] = {"to": d.to, "body": d.body, "id": d.id}
    body["deliveryError"] = d.error_xml
    body["deliveryErrorCondition"] = (
        None
        if d.error is None
        else {"type": d.error.type, "condition": d.error.condition, "text": d.error.text}
    )
    body["receipt"] = {
        "requested": d.receipt_requested,
        "received": d.receipt_after is not None,
        "ms": None if d.receipt_after is None else ms(d.receipt_after),
    }
    return body


# -- /srv

SCHEMAS["SRVAddress"] = obj(
    {
        "address": {"type": "string"},
        "allowed": {
            "type": "boolean",
            "description": "Whether this service's destination policy lets a probe "
            "connect to it (addresses are reported, never refused).",
        },
    },
    required=["address", "allowed"],
)

SCHEMAS["SRVService"] = obj(
    {
        "name": {"type": "string", "description": "The name queried (A-labels)."},
        "status": {
            "type": "string",
            "enum": ["ok", "none", "unavailable", "error"],
            "description": "`ok`: records found; `none`: no records (`nxdomain` "
            "says whether the name does not exist); `unavailable`: a single `.` "
            "target (the service is decidedly not offered); `error`: the lookup "
            "failed (`error` says how).",
        },
        "nxdomain": {"type": "boolean"},
        "records": {
            "type": "array",
            "description": "In the order a client tries them (RFC 2782).",
            "items": obj(
                {
                    "priority": {"type": "integer"},
                    "weight": {"type": "integer"},
                    "port": {"type": "integer"},
                    "target": {"type": "string"},
                    "addresses": {"type": "array", "items": ref("SRVAddress")},
                    "error": nullable("string"),
                },
                required=["priority", "weight", "port", "target", "addresses", "error"],
            ),
        },
        "fallback": {
            "anyOf": [
                obj(
                    {
                        "host": {"type": "string"},
                        "port": {"type": "integer"},
                        "addresses": {
                            "type": "array",
                            "items": ref("SRVAddress"),
                        },
                        "error": nullable("string"),
                    },
                    required=["host", "port", "addresses", "error"],
                ),
                {"type": "null"},
            ],
            "description": "Where a client goes without records (the domain on "
            "5222 / 5269); null for the xmpps services and for `unavailable`.",
        },
        "error": nullable("string"),
    },
    required=["name", "status", "nxdomain", "records", "fallback", "error"],
)

SCHEMAS["SRVSuccess"] = obj(
    {
        "success": {"const": True},
        "domain": {"type": "string"},
        "services": obj(
            {
                name: ref("SRVService")
                for name in ("xmpp-client", "xmpps-client", "xmpp-server", "xmpps-server")
            },
            required=["xmpp-client", "xmpps-client", "xmpp-server", "xmpps-server"],
        ),
        "elapsedMs": {"type": "integer"},
    },
    required=["success", "domain", "services", "elapsedMs"],
)


def _srv_address_json(address: srv.AddressReport) -> dict:
    return {"address": address.address, "allowed": address.allowed}


def _srv_service_json(report: srv.ServiceReport) -> dict:
    fallback = report.fallback
    return {
        "name": report.name,
        "status": report.status,
        "nxdomain": report.nxdomain,
        "records": [
            {
                "priority": record.priority,
                "weight": record.weight,
                "port": record.port,
                "target": record.target,
                "addresses": [_srv_address_json(a) for a in record.addresses],
                "error": record.error,
            }
            for record in report.records
        ],
        "fallback": None
        if fallback is None
        else {
            "host": fallback.host,
            "port": fallback.port,
            "addresses": [_srv_address_json(a) for a in fallback.addresses],
            "error": fallback.error,
        },
        "error": report.error,
    }


def srv_report_json(report: srv.SRVReport) -> dict:
    """An SRV report as the C{SRVSuccess} schema has it, less C{success}."""
    return {
        "domain": report.domain,
        "services": {s.service.key: _srv_service_json(s) for s in report.services},
        "elapsedMs": ms(report.elapsed),
    }


def srv_json(report: srv.SRVReport, req: SRVRequest) -> dict:
    """SPEC §7 /srv: the four SRV services of the domain."""
    return {"success": True, **srv_report_json(report)}


# -- failed probes (HTTP 200, success false)

SCHEMAS["ProbeFailure"] = obj(
    {
        "success": {"const": False},
        "error": {
            "type": "string",
            "description": "Human readable; a timeout begins `Connection timeout` "
            "(overall) or `Read timeout` (per read).",
        },
        "errorType": ref("ErrorType"),
        "host": {
            "type": "string",
            "description": "Where the probe connected or was connecting (with `domain` "
            "alone: the SRV target tried last, or the domain).",
        },
        "port": {"type": "integer"},
        "resolved": {
            "allOf": [ref("Resolved")],
            "description": "What was tried to find and reach the server.",
        },
        "streamErrorText": {
            "type": "string",
            "description": "The `<text>` of a stream error.",
        },
        "xmlError": obj(
            {"line": {"type": "integer"}, "column": {"type": "integer"}},
            description="Where the server's XML stopped being well-formed.",
        ),
        "tls": ref("TLSReport"),
        "warnings": strings(),
        "raw": {"type": "string", "description": "What the server sent, when anything."},
        "elapsedMs": {"type": "integer"},
        "transcript": ref("Transcript"),
    },
    required=["success", "error", "errorType", "host", "port", "elapsedMs"],
    description="The probe ran and stopped (HTTP 200). `tls` once TLS was negotiated.",
)


def _failure_base(failed: flows.Failed, where: dict, transcript: bool) -> dict:
    error = failed.error
    body = {"success": False, "error": error.message, "errorType": error.error_type, **where}
    if failed.resolved is not None:
        body["resolved"] = resolved_json(failed.resolved)
    body.update(error.extra)
    if failed.tls is not None and failed.tls.negotiated:
        body["tls"] = _tls_json(failed.tls)
    if failed.warnings:
        body["warnings"] = list(failed.warnings)
    if failed.raw:
        body["raw"] = failed.raw
    body["elapsedMs"] = ms(failed.elapsed)
    if transcript:
        body["transcript"] = _transcript_json(failed.transcript or ())
    return body


def probe_failure_json(failed: flows.Failed, req: ConnectRequest | S2SRequest) -> dict:
    """A stream probe (/connect, /s2s) that stopped."""
    return _failure_base(failed, {"host": failed.host, "port": failed.port}, req.transcript)


SCHEMAS["AuthProbeFailure"] = {
    "allOf": [
        ref("ProbeFailure"),
        obj(
            {
                "phases": ref("Phases"),
                "timings": ref("Timings"),
                "mechanism": {
                    "type": "string",
                    "description": "The SASL mechanism, once one was chosen.",
                },
                "channelBinding": nullable(
                    "string", "With `mechanism`: the channel-binding type used."
                ),
                "saslCondition": {"type": "string"},
                "saslText": {"type": "string"},
                "scramError": {
                    "type": "string",
                    "description": "The server's SCRAM `e=` error.",
                },
                "errorCondition": {
                    "allOf": [ref("StanzaErrorCondition")],
                    "description": "Of a failed bind or session iq.",
                },
            },
            required=["phases", "timings"],
        ),
    ],
    "description": "A failed auth probe: as `ProbeFailure`, plus the phases reached.",
}


def auth_failure_json(failed: flows.Failed, req: AuthRequest) -> dict:
    """An auth probe that stopped: as L{probe_failure_json}, plus the phases reached."""
    where = {
        "host": failed.host,
        "port": failed.port,
        "phases": list(failed.phases),
        "timings": {k: ms(v) for k, v in failed.timings.items()},
    }
    if failed.mechanism is not None:
        where["mechanism"] = failed.mechanism
        where["channelBinding"] = failed.channel_binding
    return _failure_base(failed, where, req.transcript)


def message_failure_json(failed: flows.Failed, req: MessageRequest) -> dict:
    """A /message probe that stopped: as L{auth_failure_json} of its login."""
    return auth_failure_json(failed, req.auth)


SCHEMAS["SRVFailure"] = obj(
    {
        "success": {"const": False},
        "error": {
            "type": "string",
            "description": "Human readable; `Connection timeout` when the lookup "
            "outlasted `timeout`.",
        },
        "errorType": ref("ErrorType"),
        "domain": {"type": "string"},
        "elapsedMs": {"type": "integer"},
    },
    required=["success", "error", "errorType", "domain", "elapsedMs"],
    description="The lookup ran and stopped (HTTP 200): `dns` or `timeout`.",
)


def srv_failure_json(failed: flows.Failed, req: SRVRequest) -> dict:
    """An SRV lookup that stopped (C{dns} or C{timeout})."""
    return _failure_base(failed, {"domain": req.domain}, False)


# -- /discover

SCHEMAS["HTTPTLS"] = obj(
    {
        "protocol": {"type": "string", "description": "E.g. TLSv1.3."},
        "cipher": nullable("string"),
        "alpn": nullable("string"),
        "certificate": {
            "anyOf": [ref("Certificate"), {"type": "null"}],
            "description": "Checked for the URL's host (DNS-ID); null when the server sent none.",
        },
    },
    required=["protocol", "cipher", "alpn", "certificate"],
    description="The TLS of an HTTPS (or `wss://`) connection.",
)


def http_tls_json(report: tlsinfo.TLSReport | None) -> dict | None:
    """An HTTPS connection's TLS report, or null without TLS."""
    if report is None:
        return None
    return {
        "protocol": report.protocol,
        "cipher": report.cipher,
        "alpn": report.alpn,
        "certificate": (
            None if report.certificate is None else _certificate_json(report.certificate)
        ),
    }


SCHEMAS["HostMetaDocument"] = obj(
    {
        "url": {"type": "string"},
        "status": nullable("integer", "The HTTP status, or null when none came."),
        "contentType": nullable("string"),
        "location": nullable("string", "A redirect's `Location` (not followed)."),
        "cors": nullable("string", "The `Access-Control-Allow-Origin` header seen."),
        "websocket": strings("`urn:xmpp:alt-connections:websocket` links, in order."),
        "bosh": strings("`urn:xmpp:alt-connections:xbosh` links, in order."),
        "tls": {"anyOf": [ref("HTTPTLS"), {"type": "null"}]},
        "error": nullable("string", "Why this document gave no links, or null."),
        "errorType": {"anyOf": [ref("ErrorType"), {"type": "null"}]},
    },
    required=[
        "url",
        "status",
        "contentType",
        "location",
        "cors",
        "websocket",
        "bosh",
        "tls",
        "error",
        "errorType",
    ],
)


def _host_meta_json(document: discover.HostMetaDocument) -> dict:
    return {
        "url": document.url,
        "status": document.status,
        "contentType": document.content_type,
        "location": document.location,
        "cors": document.cors,
        "websocket": list(document.links.websocket),
        "bosh": list(document.links.bosh),
        "tls": http_tls_json(document.tls),
        "error": document.error,
        "errorType": document.error_type,
    }


SCHEMAS["DiscoverSuccess"] = obj(
    {
        "success": {"const": True},
        "domain": {"type": "string"},
        "hostMeta": ref("HostMetaDocument"),
        "hostMetaJson": ref("HostMetaDocument"),
        "websocket": strings("Every WebSocket URL found (both documents, without repeats)."),
        "bosh": strings("Every BOSH URL found (both documents, without repeats)."),
        "elapsedMs": {"type": "integer"},
    },
    required=["success", "domain", "hostMeta", "hostMetaJson", "websocket", "bosh", "elapsedMs"],
)


def discover_json(result: discover.DiscoverResult, req: DiscoverRequest) -> dict:
    """SPEC §10 /discover: both host-meta documents and the links found."""
    return {
        "success": True,
        "domain": result.domain,
        "hostMeta": _host_meta_json(result.xrd),
        "hostMetaJson": _host_meta_json(result.json),
        "websocket": list(result.websocket),
        "bosh": list(result.bosh),
        "elapsedMs": ms(result.elapsed),
    }


def discover_failure_json(failed: flows.Failed, req: DiscoverRequest) -> dict:
    """Discovery that outlasted its timeout."""
    return _failure_base(failed, {"domain": req.domain}, False)


# -- /websocket, /bosh

_WEB_TRANSPORT_COMMON = {
    "url": {"type": "string", "description": "The endpoint probed."},
    "tls": {
        "anyOf": [ref("HTTPTLS"), {"type": "null"}],
        "description": "Of `wss://`/`https://`; null over plaintext.",
    },
}
SCHEMAS["WebSocketTransport"] = obj(
    {
        **_WEB_TRANSPORT_COMMON,
        "httpStatus": {"type": "integer", "description": "101 once upgraded."},
        "subprotocol": {"const": "xmpp"},
    },
    required=["url", "httpStatus", "subprotocol", "tls"],
)
SCHEMAS["BOSHTransport"] = obj(
    {
        **_WEB_TRANSPORT_COMMON,
        "sid": {"type": "string", "description": "The session id."},
        "wait": nullable("integer", "Seconds the server may hold a request."),
        "hold": nullable("integer", "Requests the server may hold."),
        "requests": nullable("integer", "Requests the client may have open at once."),
        "inactivity": nullable("integer", "Seconds of inactivity allowed."),
        "ver": nullable("string", "The BOSH version."),
    },
    required=["url", "sid", "wait", "hold", "requests", "inactivity", "ver", "tls"],
)


def _web_success(transport: str) -> dict:
    return obj(
        {
            "success": {"const": True},
            "url": {"type": "string"},
            "discovered": {
                "type": "boolean",
                "description": "The URL came from the domain's host-meta (XEP-0156).",
            },
            "domain": {"type": "string"},
            "transport": ref(transport),
            "streamId": nullable("string"),
            "serverFrom": nullable("string"),
            "xmppVersion": nullable("string"),
            "saslMechanisms": strings(),
            "features": strings("Of the first features block, mapped as `/connect` has them."),
            "featureNamespaces": strings("Every child namespace of the first features block."),
            "saslChannelBindings": strings("XEP-0440 types offered."),
            "jid": nullable("string", "As bound by the server; null without credentials."),
            "mechanism": nullable("string", "The SASL mechanism; null without credentials."),
            "channelBinding": nullable("string", "The channel-binding type used."),
            "phases": ref("Phases"),
            "timings": ref("Timings"),
            "elapsedMs": {"type": "integer"},
            "warnings": strings(),
            "transcript": ref("Transcript"),
        },
        required=[
            "success",
            "url",
            "discovered",
            "domain",
            "transport",
            "streamId",
            "serverFrom",
            "xmppVersion",
            "saslMechanisms",
            "features",
            "featureNamespaces",
            "saslChannelBindings",
            "jid",
            "mechanism",
            "channelBinding",
            "phases",
            "timings",
            "elapsedMs",
            "warnings",
        ],
    )


SCHEMAS["WebSocketSuccess"] = _web_success("WebSocketTransport")
SCHEMAS["BOSHSuccess"] = _web_success("BOSHTransport")


def _web_transport_json(transport: webstream.WebTransport) -> dict:
    body = {"url": transport.url}
    if transport.kind == "websocket":
        body["httpStatus"] = transport.http_status
        body["subprotocol"] = transport.subprotocol
    else:
        body.update(
            sid=transport.sid,
            wait=transport.wait,
            hold=transport.hold,
            requests=transport.requests,
            inactivity=transport.inactivity,
            ver=transport.ver,
        )
    body["tls"] = http_tls_json(transport.tls)
    return body


def web_json(result: webstream.WebResult, req: WebRequest) -> dict:
    """SPEC §10 /websocket and /bosh: the transport, the stream, the login if asked."""
    header, features = result.header, result.features
    body = {
        "success": True,
        "url": result.url,
        "discovered": result.discovered,
        "domain": result.domain,
        "transport": _web_transport_json(result.transport),
        "streamId": header.id,
        "serverFrom": header.from_,
        "xmppVersion": header.version,
        "saslMechanisms": list(result.sasl_mechanisms),
        "features": list(features.features),
        "featureNamespaces": list(features.namespaces),
        "saslChannelBindings": list(features.channel_bindings),
        "jid": result.jid,
        "mechanism": result.mechanism,
        "channelBinding": result.channel_binding,
        "phases": list(result.phases),
        "timings": {k: ms(v) for k, v in result.timings.items()},
        "elapsedMs": ms(result.elapsed),
        "warnings": list(result.warnings),
    }
    if req.transcript:
        body["transcript"] = _transcript_json(result.transcript)
    return body


_AUTH_FAILURE_PARTS = SCHEMAS["AuthProbeFailure"]["allOf"][1]["properties"]
SCHEMAS["WebFailure"] = obj(
    {
        "success": {"const": False},
        "error": SCHEMAS["ProbeFailure"]["properties"]["error"],
        "errorType": ref("ErrorType"),
        "url": nullable("string", "The URL tried; null when discovery found none."),
        **{
            name: SCHEMAS["ProbeFailure"]["properties"][name]
            for name in ("streamErrorText", "xmlError", "warnings", "raw", "elapsedMs")
        },
        **_AUTH_FAILURE_PARTS,
        "transcript": ref("Transcript"),
    },
    required=["success", "error", "errorType", "url", "phases", "timings", "elapsedMs"],
    description="The probe ran and stopped (HTTP 200).",
)


def web_failure_json(failed: flows.Failed, req: WebRequest) -> dict:
    """A /websocket or /bosh probe that stopped, with the phases reached."""
    where = {
        "url": failed.host,
        "phases": list(failed.phases),
        "timings": {k: ms(v) for k, v in failed.timings.items()},
    }
    if failed.mechanism is not None:
        where["mechanism"] = failed.mechanism
        where["channelBinding"] = failed.channel_binding
    return _failure_base(failed, where, req.transcript)


# -- /check

SCHEMAS["FindingId"] = {
    "type": "string",
    "description": "A finding of the catalogue (README: every id, its severity and its "
    "trigger). An id is API: it keeps its meaning.",
    "oneOf": [
        {"const": id_, "description": f"{entry.severity}: {entry.trigger}"}
        for id_, entry in findings.CATALOGUE.items()
    ],
}

SCHEMAS["Finding"] = obj(
    {
        "id": ref("FindingId"),
        "severity": {"type": "string", "enum": list(findings.SEVERITIES)},
        "endpoints": {
            "type": "array",
            "items": {"type": "integer"},
            "description": "The `id`s of the endpoints it is about (empty: the domain).",
        },
        "message": {"type": "string", "description": "What is wrong, in one sentence."},
        "fix": {
            "type": "string",
            "description": "What to change: the setting of the detected server software "
            "(Prosody, ejabberd), else generic.",
        },
    },
    required=["id", "severity", "endpoints", "message", "fix"],
)

_TLS_VERSION_FLAG = {
    "type": ["boolean", "null"],
    "description": "Accepted; null: not tested (`tlsVersionNotes` says why).",
}

SCHEMAS["CheckEndpoint"] = obj(
    {
        "id": {"type": "integer"},
        "service": {
            "type": "string",
            "enum": [s.key for s in srv.SERVICES],
        },
        "target": {"type": "string"},
        "port": {"type": "integer"},
        "address": {"type": "string"},
        "family": {"type": "integer", "enum": [4, 6]},
        "blocked": {
            "type": "boolean",
            "description": "The destination policy refuses this address: never contacted.",
        },
        "tls": {"type": "string", "enum": ["starttls", "direct"]},
        "reachable": {"type": "boolean", "description": "It answered with a stream."},
        "probe": {
            "anyOf": [
                ref("ConnectSuccess"),
                ref("S2SSuccess"),
                ref("ProbeFailure"),
                {"type": "null"},
            ],
            "description": "The /connect (client) or /s2s (server) answer; null when blocked.",
        },
        "tlsVersions": {
            "anyOf": [
                obj({v: _TLS_VERSION_FLAG for v in tlsinfo.TLS_VERSIONS}),
                {"type": "null"},
            ],
            "description": "Which TLS versions this address:port accepts, one handshake "
            "each; null when it did not speak TLS.",
        },
        "tlsVersionNotes": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Why a version was not tested (e.g. this OpenSSL cannot offer it).",
        },
        "elapsedMs": nullable("integer", "The probe's time; null when blocked."),
    },
    required=[
        "id",
        "service",
        "target",
        "port",
        "address",
        "family",
        "blocked",
        "tls",
        "reachable",
        "probe",
        "tlsVersions",
    ],
)

SCHEMAS["CheckSuccess"] = obj(
    {
        "success": {"const": True},
        "domain": {"type": "string"},
        "status": {
            "type": "string",
            "enum": ["ok", "warning", "critical"],
            "description": "The worst severity found (`ok`: nothing above info).",
        },
        "summary": obj(
            {k: {"type": "integer"} for k in findings.SEVERITIES},
            required=list(findings.SEVERITIES),
        ),
        "software": {
            "anyOf": [
                obj(
                    {
                        "name": {"type": "string"},
                        "version": nullable("string"),
                        "source": {"type": "string", "enum": ["version-query", "stream-id"]},
                    },
                    required=["name", "version", "source"],
                ),
                {"type": "null"},
            ],
            "description": "XEP-0092 after a login, else guessed from the stream id.",
        },
        "dns": obj(
            {s.key: ref("SRVService") for s in srv.SERVICES},
            required=[s.key for s in srv.SERVICES],
        ),
        "endpoints": {"type": "array", "items": ref("CheckEndpoint")},
        "truncated": {"type": "boolean", "description": "More than 32 endpoints."},
        "certificates": {
            "type": "array",
            "items": {
                "allOf": [
                    ref("Certificate"),
                    obj({"endpoints": {"type": "array", "items": {"type": "integer"}}}),
                ]
            },
            "description": "One per fingerprint, with the endpoints that presented it.",
        },
        "respectsTo": obj(
            {k: {"type": ["boolean", "null"]} for k in CHECK_KINDS},
            description="Per kind asked: a stream to a name under `.invalid` was refused "
            "(null: not known).",
        ),
        "login": {
            "anyOf": [ref("ServerInfoSuccess"), ref("AuthProbeFailure"), {"type": "null"}],
            "description": "With credentials: the login and server-info queries.",
        },
        "serverInfo": {"description": "As /server-info's `serverInfo`, or null."},
        "discovery": {
            "anyOf": [
                obj(
                    {"hostMeta": ref("HostMetaDocument"), "hostMetaJson": ref("HostMetaDocument")},
                    required=["hostMeta", "hostMetaJson"],
                ),
                {"type": "null"},
            ],
            "description": "The host-meta documents (XEP-0156, as `/discover`), or null when "
            "they could not be asked for (the destination policy refused the domain, or the "
            "check's timeout came first).",
        },
        "webEndpoints": {
            "type": "array",
            "items": ref("CheckWebEndpoint"),
            "description": "Each WebSocket and BOSH URL of host-meta (at most 4), probed as "
            "`/websocket` or `/bosh` without credentials.",
        },
        "findings": {"type": "array", "items": ref("Finding")},
        "elapsedMs": {"type": "integer"},
    },
    required=[
        "success",
        "domain",
        "status",
        "summary",
        "software",
        "dns",
        "endpoints",
        "truncated",
        "certificates",
        "respectsTo",
        "login",
        "serverInfo",
        "discovery",
        "webEndpoints",
        "findings",
        "elapsedMs",
    ],
)


SCHEMAS["CheckWebEndpoint"] = obj(
    {
        "kind": {"type": "string", "enum": ["websocket", "bosh"]},
        "url": {"type": "string"},
        "blocked": {
            "type": "boolean",
            "description": "The destination policy refuses its host: not contacted.",
        },
        "reachable": {"type": "boolean", "description": "It answered with an XMPP stream."},
        "probe": {
            "anyOf": [ref("WebSocketSuccess"), ref("BOSHSuccess"), ref("WebFailure")],
            "description": "The probe's answer, as `/websocket` or `/bosh`; absent when blocked.",
        },
    },
    required=["kind", "url", "blocked", "reachable"],
)


def _check_web_json(endpoint: findings.WebEndpoint, req: CheckRequest) -> dict:
    body = {
        "kind": endpoint.kind,
        "url": endpoint.url,
        "blocked": endpoint.blocked,
        "reachable": endpoint.reachable,
    }
    if endpoint.result is not None:
        body["probe"] = web_json(endpoint.result, req)
    elif endpoint.failure is not None:
        body["probe"] = web_failure_json(endpoint.failure, req)
    return body


def check_endpoint_json(endpoint: findings.CheckEndpoint, req: CheckRequest) -> dict:
    """One endpoint of a check (also the data of an SSE C{endpoint} event)."""
    probe = elapsed = None
    if endpoint.result is not None:
        render = s2s_json if endpoint.server else connect_json
        probe = render(endpoint.result, endpoint.request)
    elif endpoint.failure is not None:
        probe = probe_failure_json(endpoint.failure, endpoint.request)
    if probe is not None:
        elapsed = probe["elapsedMs"]
    body = {
        "id": endpoint.id,
        "service": endpoint.service,
        "target": endpoint.target,
        "port": endpoint.port,
        "address": endpoint.address,
        "family": endpoint.family,
        "blocked": endpoint.blocked,
        "tls": "direct" if endpoint.direct else "starttls",
        "reachable": endpoint.reachable,
        "probe": probe,
        "tlsVersions": endpoint.tls_versions,
        "elapsedMs": elapsed,
    }
    if endpoint.tls_notes:
        body["tlsVersionNotes"] = dict(endpoint.tls_notes)
    return body


def check_json(result, req: CheckRequest) -> dict:
    """SPEC §8 /check: the verdict, the findings, and everything they were drawn from."""
    obs = result.observations
    found = result.findings
    login = None
    if obs.login is not None:
        login = server_info_json(obs.login, obs.login_request)
    elif obs.login_failure is not None:
        login = auth_failure_json(obs.login_failure, obs.login_request)
    software = result.software
    return {
        "success": True,
        "domain": obs.domain,
        "status": result.status,
        "summary": {k: sum(f.severity == k for f in found) for k in findings.SEVERITIES},
        "software": None
        if software is None
        else {"name": software.name, "version": software.version, "source": software.source},
        "dns": srv_report_json(obs.dns)["services"],
        "endpoints": [check_endpoint_json(e, req) for e in obs.endpoints],
        "truncated": obs.truncated,
        "certificates": [
            {**_certificate_json(g.certificate), "endpoints": list(g.endpoints)}
            for g in findings.certificates(obs.endpoints)
        ],
        "respectsTo": dict(obs.respects_to),
        "login": login,
        "serverInfo": None if login is None or not login["success"] else login["serverInfo"],
        "discovery": None
        if obs.discovery is None
        else {
            "hostMeta": _host_meta_json(obs.discovery[0]),
            "hostMetaJson": _host_meta_json(obs.discovery[1]),
        },
        "webEndpoints": [_check_web_json(e, req) for e in obs.web],
        "findings": [
            {
                "id": f.id,
                "severity": f.severity,
                "endpoints": list(f.endpoints),
                "message": f.message,
                "fix": f.fix,
            }
            for f in found
        ],
        "elapsedMs": ms(result.elapsed),
    }


def check_failure_json(failed: flows.Failed, req: CheckRequest) -> dict:
    """A check that could not run at all (its DNS lookups failed or timed out)."""
    return _failure_base(failed, {"domain": req.domain}, False)


# -- refusals and the service itself

SCHEMAS["Refused"] = obj(
    {
        "success": {"const": False},
        "error": {"type": "string"},
        "blocked": {"const": True, "description": "Present on 403 only."},
        "resolved": {
            "allOf": [ref("Resolved")],
            "description": "On a 403 of a probe: what was tried (every target refused).",
        },
    },
    required=["success", "error"],
    description="The request was refused before any probe ran.",
)


def blocked_json(blocked) -> dict:
    """The 403 of a destination the policy refused (a L{DestinationBlocked})."""
    body = {"success": False, "error": blocked.message, "blocked": True}
    if blocked.resolved is not None:
        body["resolved"] = resolved_json(blocked.resolved)
    return body


SCHEMAS["Health"] = obj(
    {
        "status": {"const": "ok"},
        "version": {"type": "string"},
        "inFlight": {"type": "integer", "description": "Probes running now."},
        "worker": obj(
            {
                "index": {"type": "integer", "minimum": 1},
                "pid": {"type": "integer"},
            },
            required=["index", "pid"],
            description="The worker process that answered (only with --workers N > 1); "
            "inFlight is its own.",
        ),
    },
    required=["status", "version", "inFlight"],
)


# -- /component and /ping (SPEC §10)

SCHEMAS["ComponentSuccess"] = obj(
    {
        "success": {"const": True},
        "message": {
            "type": "string",
            "enum": ["Component authenticated", "Component stream opened"],
        },
        "host": {"type": "string"},
        "port": {"type": "integer"},
        "componentName": {"type": "string"},
        "streamId": nullable("string"),
        "serverFrom": nullable("string"),
        "authenticated": {
            "type": "boolean",
            "description": "The server accepted the handshake; false when no `secret` "
            "was given (only the stream was opened).",
        },
        "phases": {
            **ref("Phases"),
            "description": "`stream_opened`, then with a secret `handshake_sent` and "
            "`authenticated`.",
        },
        "timings": ref("Timings"),
        "raw": {
            "type": "string",
            "description": "The first 2000 characters the server sent, up to the end of "
            "its first element (its `<handshake/>`).",
        },
        "resolved": ref("Resolved"),
        "elapsedMs": {"type": "integer"},
        "transcript": ref("Transcript"),
    },
    required=[
        "success",
        "message",
        "host",
        "port",
        "componentName",
        "streamId",
        "serverFrom",
        "authenticated",
        "phases",
        "timings",
        "raw",
        "resolved",
        "elapsedMs",
    ],
    description="A refused handshake is not this: it is the server's stream error "
    "(`errorType: stream_error`, `not-authorized`).",
)


def component_json(result: flows.ComponentResult, req: ComponentRequest) -> dict:
    """SPEC §10 /component: the accept stream's header and the handshake's outcome."""
    body = {
        "success": True,
        "message": "Component authenticated" if result.authenticated else "Component stream opened",
        "host": result.host,
        "port": result.port,
        "componentName": result.component_name,
        "streamId": result.header.id,
        "serverFrom": result.header.from_,
        "authenticated": result.authenticated,
        "phases": list(result.phases),
        "timings": {k: ms(v) for k, v in result.timings.items()},
        "raw": result.raw,
        "resolved": resolved_json(result.resolved),
        "elapsedMs": ms(result.elapsed),
    }
    if req.transcript:
        body["transcript"] = _transcript_json(result.transcript)
    return body


def _rtt(seconds: float) -> float:
    """A round trip in milliseconds, to 0.1 ms (as `pingMs` of /server-info)."""
    return round(seconds * 1000, 1)


SCHEMAS["PingSuccess"] = {
    "allOf": [
        ref("AuthSuccess"),
        obj(
            {
                "message": {"const": "XMPP ping completed"},
                "target": {"type": "string", "description": "The JID or domain pinged."},
                "count": {"type": "integer", "description": "The pings asked for."},
                "pings": {
                    "type": "array",
                    "items": obj(
                        {
                            "ms": {
                                "type": ["number", "null"],
                                "description": "Round trip to the answer; null for a timeout.",
                            },
                            "result": {"type": "string", "enum": ["pong", "error", "timeout"]},
                            "condition": nullable(
                                "string",
                                "Of an error answer (`remote-server-not-found`, "
                                "`service-unavailable`, ...).",
                            ),
                            "text": nullable("string", "The error's text, if any."),
                        },
                        required=["ms", "result", "condition", "text"],
                    ),
                    "description": "One per ping sent, in order. An error answer and no "
                    "answer within the read timeout (`timeout`) are results, not failures; "
                    "pings that would not fit in `timeout` are not sent (a warning says so).",
                },
                "rttMs": {
                    "anyOf": [
                        obj(
                            {
                                "min": {"type": "number"},
                                "median": {"type": "number"},
                                "max": {"type": "number"},
                            },
                            required=["min", "median", "max"],
                        ),
                        {"type": "null"},
                    ],
                    "description": "Over the pongs; null when there was none.",
                },
            },
            required=["message", "target", "count", "pings", "rttMs"],
        ),
    ],
    "description": "A remote domain the server cannot reach answers with an error "
    "(`remote-server-not-found`, `remote-server-timeout`): `success` stays true.",
}


def ping_json(result: flows.AuthResult, req: PingRequest) -> dict:
    """SPEC §10 /ping: the login, then each ping's outcome and the round trips."""
    body = _auth_base(result, req.auth, "XMPP ping completed")
    pings = result.pings
    body["target"] = pings.target
    body["count"] = pings.count
    body["pings"] = [
        {
            "ms": None if p.rtt is None else _rtt(p.rtt),
            "result": p.result,
            "condition": None if p.error is None else p.error.condition,
            "text": None if p.error is None else p.error.text,
        }
        for p in pings.pings
    ]
    summary = pings.summary()
    body["rttMs"] = (
        None
        if summary is None
        else dict(zip(("min", "median", "max"), map(_rtt, summary), strict=True))
    )
    return body


def ping_failure_json(failed: flows.Failed, req: PingRequest) -> dict:
    """A /ping probe that stopped: as L{auth_failure_json} of its login."""
    return auth_failure_json(failed, req.auth)
