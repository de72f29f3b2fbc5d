"""
The OpenAPI 3.1 document of the HTTP API, and the files of the web page that
runs the probes (SPEC §7: C{GET /api/openapi.json} and C{GET /}).

The request schemas are built from the constants L{validate} enforces
(defaults, ranges, enumerations), so the two cannot drift apart silently;
C{tests/http/test_openapi.py} checks the rest against the code (the fields each
endpoint reads, the routes of L{portofcall_xmpp.web.Api}).
"""

from __future__ import annotations

import functools
import json
from importlib import resources

from . import __version__, validate

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "ERROR_TYPES",
    "PAGE_HEADERS",
    "STATIC_FILES",
    "document",
    "document_bytes",
    "static_file",
]

OPENAPI_VERSION = "3.1.0"

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

#: The files under C{static/} that C{GET /static/<name>} serves, and their types.
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}

#: The page loads only its own script and style sheet and talks only to its origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: Headers of the page and its static files.
PAGE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@functools.cache
def static_file(name: str) -> tuple[bytes, str] | None:
    """
    The body and content type of the static file C{name}, or L{None} when
    C{name} is not one of L{STATIC_FILES} (so no other path can be reached).
    """
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        return None
    body = resources.files(__package__).joinpath("static", name).read_bytes()
    return body, content_type


# ---------------------------------------------------------------------------
# The document


def _schema(name: str) -> dict:
    return {"$ref": "#/components/schemas/" + name}


def _response(name: str) -> dict:
    return {"$ref": "#/components/responses/" + name}


def _nullable(kind: str, description: str | None = None) -> dict:
    schema = {"type": [kind, "null"]}
    if description:
        schema["description"] = description
    return schema


def _strings(description: str | None = None) -> dict:
    schema = {"type": "array", "items": {"type": "string"}}
    if description:
        schema["description"] = description
    return schema


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _timeout(default_seconds: float) -> dict:
    return {
        "type": "integer",
        "minimum": 1,
        "maximum": validate.MAX_TIMEOUT_MS,
        "default": _ms(default_seconds),
        "description": "Overall timeout of the probe, in milliseconds.",
    }


def _tls_mode(modes: tuple[str, ...], description: str) -> dict:
    return {
        "type": "string",
        "enum": list(modes),
        "default": "auto",
        "description": description
        + " Default: `direct` when `port` is %d, else `auto`." % (validate.DIRECT_TLS_PORT,),
    }


def _object(properties: dict, required=(), description: str | None = None) -> dict:
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema


def _request_schemas() -> dict:
    part = validate.MAX_PART_BYTES
    # The fields of a stream probe without credentials (/connect, /s2s).
    port = {
        "type": "integer",
        "minimum": 1,
        "maximum": 65535,
        "default": validate.DEFAULT_PORT,
        "description": "TCP port.",
    }
    stream_fields = {
        "host": _schema("Host"),
        "port": _schema("Port"),
        "domain": _schema("Domain"),
        "timeout": _timeout(validate.CONNECT_TIMEOUT),
        "tls": _tls_mode(
            validate.CONNECT_TLS_MODES,
            "`auto`: negotiate STARTTLS when offered and report on it; `none`: "
            "plaintext features only; `direct`: TLS from the first byte (XEP-0368).",
        ),
        "transcript": _schema("TranscriptFlag"),
    }
    return {
        "Host": {
            "type": "string",
            "minLength": 1,
            "description": "The server to connect to: a DNS name (IDNA, at most %d octets as "
            "an A-label) or an IPv4/IPv6 literal (brackets optional, no zone). Every numeric "
            "IPv4 spelling (`2130706433`, `0x7f.1`) is read as that address."
            % (validate.MAX_DNS_NAME,),
            "examples": ["xmpp.example.org"],
        },
        "Port": port,
        "Domain": {
            "type": "string",
            "minLength": 1,
            "description": "The XMPP domain (a JID domainpart, RFC 7622): the stream's `to` "
            "and the domain of the JID logged in as. Default: the host.",
            "examples": ["example.org"],
        },
        "TranscriptFlag": {
            "type": "boolean",
            "default": False,
            "description": "Add `transcript`: every element in both directions, with SASL "
            "payloads shown as `[redacted]`.",
        },
        "ConnectRequest": _object(stream_fields, required=["host"]),
        "SRVRequest": _object(
            {
                "domain": {
                    "type": "string",
                    "minLength": 1,
                    "description": "The XMPP domain whose SRV records to look up (a JID "
                    "domainpart that is a DNS name, not an IP literal).",
                    "examples": ["example.org"],
                },
                "timeout": _timeout(validate.SRV_TIMEOUT),
            },
            required=["domain"],
        ),
        "S2SRequest": _object(
            {
                **stream_fields,
                "port": {
                    **port,
                    "default": validate.S2S_PORT,
                    "description": "TCP port (server-to-server).",
                },
                "from": {
                    "type": "string",
                    "minLength": 1,
                    "description": "Our server's domain for the stream's `from` (a JID "
                    "domainpart); omitted when not given.",
                },
            },
            required=["host"],
        ),
        "AuthFields": _object(
            {
                "host": _schema("Host"),
                "port": _schema("Port"),
                "domain": _schema("Domain"),
                "tls": _tls_mode(
                    validate.AUTH_TLS_MODES,
                    "`auto`: STARTTLS when offered; `required`: fail (`errorType: tls`) when "
                    "STARTTLS is not offered; `none`: plaintext; `direct`: TLS from the first "
                    "byte (XEP-0368).",
                ),
                "tlsVerify": {
                    "type": "boolean",
                    "default": True,
                    "description": "Stop before sending any credential (`errorType: tls`) "
                    "when the certificate does not verify for `domain`. False: proceed and "
                    "report `verified: false`.",
                },
                "username": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": part,
                    "description": "A JID localpart (PRECIS UsernameCaseMapped), at most "
                    "%d bytes." % (part,),
                    "examples": ["alice"],
                },
                "password": {
                    "type": "string",
                    "format": "password",
                    "writeOnly": True,
                    "minLength": 1,
                    "maxLength": part,
                    "description": "1 to %d bytes (UTF-8), no NUL. Never logged or echoed."
                    % (part,),
                },
                "resource": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": part,
                    "default": validate.DEFAULT_RESOURCE,
                    "description": "The resource to bind (a JID resourcepart). Concurrent "
                    "probes of one account should use distinct resources.",
                },
                "mechanism": {
                    "type": "string",
                    "enum": list(validate.MECHANISMS),
                    "description": "SASL mechanism to use. Default: the strongest offered, "
                    "in the order listed (-PLUS only over TLS with channel-binding data).",
                },
                "channelBinding": {
                    "type": "string",
                    "enum": list(validate.CHANNEL_BINDINGS),
                    "description": "Channel-binding type for a -PLUS mechanism. Default: one "
                    "the server advertises (XEP-0440), else `tls-exporter` on TLS 1.3 and "
                    "`tls-unique` below.",
                },
                "transcript": _schema("TranscriptFlag"),
            },
            required=["host", "username", "password"],
            description="The fields every auth endpoint (`/login`, `/roster`, `/message`) takes.",
        ),
        "LoginRequest": {
            "allOf": [
                _schema("AuthFields"),
                _object({"timeout": _timeout(validate.LOGIN_TIMEOUT)}),
            ]
        },
        "RosterRequest": {
            "allOf": [
                _schema("AuthFields"),
                _object({"timeout": _timeout(validate.ROSTER_TIMEOUT)}),
            ]
        },
        "ServerInfoRequest": {
            "allOf": [
                _schema("AuthFields"),
                _object({"timeout": _timeout(validate.ROSTER_TIMEOUT)}),
            ]
        },
        "MessageRequest": {
            "allOf": [
                _schema("AuthFields"),
                _object(
                    {
                        "timeout": _timeout(validate.MESSAGE_TIMEOUT),
                        "recipient": {
                            "type": "string",
                            "minLength": 1,
                            "description": "A bare or full JID (RFC 7622).",
                            "examples": ["bob@example.org"],
                        },
                        "message": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": validate.MAX_MESSAGE_BYTES,
                            "default": validate.DEFAULT_MESSAGE,
                            "description": "The body: at most %d bytes (UTF-8), only "
                            "characters XML 1.0 allows." % (validate.MAX_MESSAGE_BYTES,),
                        },
                        "type": {
                            "type": "string",
                            "enum": list(validate.MESSAGE_TYPES),
                            "default": "chat",
                            "description": "The message type.",
                        },
                        "receipt": {
                            "type": "boolean",
                            "default": False,
                            "description": "Request a XEP-0184 delivery receipt.",
                        },
                        "waitMs": {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": validate.MAX_WAIT_MS,
                            "default": _ms(validate.DEFAULT_WAIT),
                            "description": "How long to listen after sending (for an error "
                            "reply or a receipt), in milliseconds; shortened, with a warning, "
                            "when it does not fit in what is left of `timeout`.",
                        },
                    },
                    required=["recipient"],
                ),
            ]
        },
    }


def _s2s_success(connect: dict) -> dict:
    """/s2s answers the /connect fields for a jabber:server stream, plus dialback."""
    schema = {**connect, "properties": dict(connect["properties"])}
    props = schema["properties"]
    props["message"] = {"const": "XMPP server reachable (server-to-server)"}
    props["from"] = _nullable("string", "The `from` we sent, or null.")
    props["dialback"] = {
        "type": "boolean",
        "description": "The server offers dialback (`urn:xmpp:features:dialback`) in its "
        "first features block; `tls.dialback` tells the same after STARTTLS.",
    }
    schema["required"] = [*connect["required"], "from", "dialback"]
    return schema


def _response_schemas() -> dict:
    schemas = _response_schema_table()
    schemas["S2SSuccess"] = _s2s_success(schemas["ConnectSuccess"])
    return schemas


def _response_schema_table() -> dict:
    return {
        "ErrorType": {
            "type": "string",
            "enum": list(ERROR_TYPES),
            "description": "Why the probe stopped. `dns`: the name did not resolve; "
            "`connect`: no TCP connection; `timeout`: the overall or a per-read timeout; "
            "`tls`: TLS failed or the certificate was refused; `stream_error`: a "
            "`<stream:error>`; `sasl`: authentication failed or no usable mechanism; "
            "`bind`: resource binding or session failed; `protocol`: not well-formed or "
            "not XMPP; `too_large`: a size limit was exceeded; `closed`: the server closed "
            "the connection early.",
        },
        "Phases": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The steps reached, in order: `tls_connected` (direct TLS), "
            "`stream_opened`, `starttls_upgraded`, `sasl_<mechanism>_sent` (e.g. "
            "`sasl_scram_sha_256_sent`), `authenticated`, `stream_restarted`, "
            "`resource_bound`, `session_established`, then `roster_received` or "
            "`message_sent`.",
        },
        "Timings": {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "description": "For each phase reached: milliseconds since the request started.",
        },
        "TranscriptEntry": _object(
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
        ),
        "Transcript": {
            "type": "array",
            "items": _schema("TranscriptEntry"),
            "description": "Present when the request asked for `transcript: true`.",
        },
        "Certificate": _object(
            {
                "subject": {"type": "string", "description": "RFC 4514."},
                "issuer": {"type": "string", "description": "RFC 4514."},
                "subjectAltNames": _strings("E.g. `DNS:example.org`, `XmppAddr:example.org`."),
                "notBefore": {"type": "string", "format": "date-time"},
                "notAfter": {"type": "string", "format": "date-time"},
                "fingerprintSha256": {
                    "type": "string",
                    "description": "Colon-separated upper-case hex.",
                },
                "verified": {
                    "type": "boolean",
                    "description": "The chain verifies to a trusted root and the name matches "
                    "the domain.",
                },
                "verifyError": _nullable("string", "Why not, or null."),
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
        ),
        "TLSReport": _object(
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
                "cipher": _nullable("string"),
                "alpn": _nullable("string", "The negotiated ALPN protocol."),
                "certificate": {
                    "anyOf": [_schema("Certificate"), {"type": "null"}],
                    "description": "Once negotiated; null when the server sent none.",
                },
                "saslMechanisms": _strings("Offered after STARTTLS."),
                "features": _strings("Features offered after STARTTLS."),
                "dialback": {
                    "type": "boolean",
                    "description": "/s2s only: dialback offered after STARTTLS.",
                },
            },
            required=["available", "required", "negotiated"],
            description="What the server said about TLS and what became of it.",
        ),
        "RosterContact": _object(
            {
                "jid": {"type": "string"},
                "name": _nullable("string"),
                "subscription": {"type": "string", "description": "`none` when absent."},
                "ask": _nullable("string"),
                "groups": _strings("Every group of the item."),
            },
            required=["jid", "name", "subscription", "ask", "groups"],
            description="One roster item (RFC 6121 §2.1.2).",
        ),
        "Roster": _object(
            {
                "total": {"type": "integer"},
                "version": _nullable("string"),
                "contacts": {"type": "array", "items": _schema("RosterContact")},
            },
            required=["total", "version", "contacts"],
        ),
        "StanzaErrorCondition": _object(
            {
                "type": _nullable("string"),
                "condition": {"type": "string"},
                "text": _nullable("string"),
            },
            required=["type", "condition", "text"],
        ),
        "SRVAddress": _object(
            {
                "address": {"type": "string"},
                "allowed": {
                    "type": "boolean",
                    "description": "Whether this service's destination policy lets a probe "
                    "connect to it (addresses are reported, never refused).",
                },
            },
            required=["address", "allowed"],
        ),
        "SRVService": _object(
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
                    "items": _object(
                        {
                            "priority": {"type": "integer"},
                            "weight": {"type": "integer"},
                            "port": {"type": "integer"},
                            "target": {"type": "string"},
                            "addresses": {"type": "array", "items": _schema("SRVAddress")},
                            "error": _nullable("string"),
                        },
                        required=["priority", "weight", "port", "target", "addresses", "error"],
                    ),
                },
                "fallback": {
                    "anyOf": [
                        _object(
                            {
                                "host": {"type": "string"},
                                "port": {"type": "integer"},
                                "addresses": {
                                    "type": "array",
                                    "items": _schema("SRVAddress"),
                                },
                                "error": _nullable("string"),
                            },
                            required=["host", "port", "addresses", "error"],
                        ),
                        {"type": "null"},
                    ],
                    "description": "Where a client goes without records (the domain on "
                    "5222 / 5269); null for the xmpps services and for `unavailable`.",
                },
                "error": _nullable("string"),
            },
            required=["name", "status", "nxdomain", "records", "fallback", "error"],
        ),
        "SRVSuccess": _object(
            {
                "success": {"const": True},
                "domain": {"type": "string"},
                "services": _object(
                    {
                        name: _schema("SRVService")
                        for name in ("xmpp-client", "xmpps-client", "xmpp-server", "xmpps-server")
                    },
                    required=["xmpp-client", "xmpps-client", "xmpp-server", "xmpps-server"],
                ),
                "elapsedMs": {"type": "integer"},
            },
            required=["success", "domain", "services", "elapsedMs"],
        ),
        "ConnectSuccess": _object(
            {
                "success": {"const": True},
                "message": {"const": "XMPP server reachable"},
                "host": {"type": "string"},
                "port": {"type": "integer"},
                "domain": {"type": "string"},
                "streamId": _nullable("string"),
                "serverFrom": _nullable("string"),
                "xmppVersion": _nullable("string"),
                "tls": _schema("TLSReport"),
                "saslMechanisms": _strings(),
                "compressionMethods": _strings(),
                "features": _strings(
                    "Mapped feature names: `starttls`, `resource-binding`, `session`, "
                    "`stream-management`, `roster-versioning`, `client-state-indication`, "
                    "`message-carbons`."
                ),
                "featureNamespaces": _strings("Every child namespace of the features block."),
                "saslChannelBindings": _strings("XEP-0440 types offered."),
                "streamLang": _nullable("string"),
                "raw": {
                    "type": "string",
                    "description": "The first 2000 characters the server sent, up to the end "
                    "of the first features block.",
                },
                "warnings": _strings(),
                "elapsedMs": {"type": "integer"},
                "transcript": _schema("Transcript"),
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
                "warnings",
                "elapsedMs",
            ],
            description="Top-level fields describe the first features block; `tls` the "
            "block after STARTTLS.",
        ),
        "AuthSuccess": _object(
            {
                "success": {"const": True},
                "host": {"type": "string"},
                "port": {"type": "integer"},
                "jid": {"type": "string", "description": "As bound by the server."},
                "domain": {"type": "string"},
                "phases": _schema("Phases"),
                "features": _strings("Offered after the SASL restart."),
                "saslMechanisms": _strings("Offered when authenticating."),
                "mechanism": {"type": "string"},
                "channelBinding": _nullable("string", "The channel-binding type used."),
                "tls": _schema("TLSReport"),
                "timings": _schema("Timings"),
                "elapsedMs": {"type": "integer"},
                "warnings": _strings("E.g. `credentials sent without TLS`."),
                "transcript": _schema("Transcript"),
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
                "timings",
                "elapsedMs",
                "warnings",
            ],
            description="What every successful auth endpoint answers.",
        ),
        "LoginSuccess": {
            "allOf": [
                _schema("AuthSuccess"),
                _object({"message": {"const": "XMPP login successful"}}, required=["message"]),
            ]
        },
        "RosterSuccess": {
            "allOf": [
                _schema("AuthSuccess"),
                _object(
                    {
                        "message": {"const": "XMPP roster retrieved"},
                        "roster": _schema("Roster"),
                    },
                    required=["message", "roster"],
                ),
            ]
        },
        "ServerInfoSuccess": {
            "allOf": [
                _schema("AuthSuccess"),
                _object(
                    {
                        "message": {"const": "XMPP server information retrieved"},
                        "serverInfo": _object(
                            {
                                "identities": {
                                    "anyOf": [
                                        {
                                            "type": "array",
                                            "items": _object(
                                                {
                                                    "category": {"type": "string"},
                                                    "type": {"type": "string"},
                                                    "name": _nullable("string"),
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
                                    "anyOf": [_strings(), {"type": "null"}],
                                    "description": "XEP-0030 features (null when disco#info "
                                    "failed).",
                                },
                                "contactAddresses": {
                                    "anyOf": [
                                        {
                                            "type": "object",
                                            "additionalProperties": _strings(),
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
                                                "additionalProperties": _strings(),
                                            },
                                        },
                                        {"type": "null"},
                                    ],
                                    "description": "Every XEP-0128 form, by FORM_TYPE.",
                                },
                                "software": {
                                    "anyOf": [
                                        _object(
                                            {
                                                "name": _nullable("string"),
                                                "version": _nullable("string"),
                                                "os": _nullable("string"),
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
                                "errors": _object(
                                    {
                                        "disco": _nullable("string"),
                                        "version": _nullable("string"),
                                        "ping": _nullable("string"),
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
        },
        "MessageSuccess": {
            "allOf": [
                _schema("AuthSuccess"),
                _object(
                    {
                        "message": _object(
                            {
                                "to": {"type": "string"},
                                "body": {"type": "string"},
                                "id": {"type": "string", "pattern": "^poc_"},
                            },
                            required=["to", "body", "id"],
                            description="The message sent.",
                        ),
                        "deliveryError": _nullable(
                            "string",
                            "The inner XML of the `<error>` of an error reply to this "
                            "message within `waitMs`, or null.",
                        ),
                        "deliveryErrorCondition": {
                            "anyOf": [_schema("StanzaErrorCondition"), {"type": "null"}]
                        },
                        "receipt": _object(
                            {
                                "requested": {"type": "boolean"},
                                "received": {"type": "boolean"},
                                "ms": _nullable("integer", "When the receipt arrived."),
                            },
                            required=["requested", "received", "ms"],
                        ),
                    },
                    required=["message", "deliveryError", "deliveryErrorCondition", "receipt"],
                ),
            ],
            "description": "A delivery error leaves `success: true`: the message was sent.",
        },
        "ProbeFailure": _object(
            {
                "success": {"const": False},
                "error": {
                    "type": "string",
                    "description": "Human readable; a timeout begins `Connection timeout` "
                    "(overall) or `Read timeout` (per read).",
                },
                "errorType": _schema("ErrorType"),
                "host": {"type": "string"},
                "port": {"type": "integer"},
                "streamErrorText": {
                    "type": "string",
                    "description": "The `<text>` of a stream error.",
                },
                "xmlError": _object(
                    {"line": {"type": "integer"}, "column": {"type": "integer"}},
                    description="Where the server's XML stopped being well-formed.",
                ),
                "tls": _schema("TLSReport"),
                "warnings": _strings(),
                "raw": {"type": "string", "description": "What the server sent, when anything."},
                "elapsedMs": {"type": "integer"},
                "transcript": _schema("Transcript"),
            },
            required=["success", "error", "errorType", "host", "port", "elapsedMs"],
            description="The probe ran and stopped (HTTP 200). `tls` once TLS was negotiated.",
        ),
        "SRVFailure": _object(
            {
                "success": {"const": False},
                "error": {
                    "type": "string",
                    "description": "Human readable; `Connection timeout` when the lookup "
                    "outlasted `timeout`.",
                },
                "errorType": _schema("ErrorType"),
                "domain": {"type": "string"},
                "elapsedMs": {"type": "integer"},
            },
            required=["success", "error", "errorType", "domain", "elapsedMs"],
            description="The lookup ran and stopped (HTTP 200): `dns` or `timeout`.",
        ),
        "AuthProbeFailure": {
            "allOf": [
                _schema("ProbeFailure"),
                _object(
                    {
                        "phases": _schema("Phases"),
                        "timings": _schema("Timings"),
                        "mechanism": {
                            "type": "string",
                            "description": "The SASL mechanism, once one was chosen.",
                        },
                        "channelBinding": _nullable(
                            "string", "With `mechanism`: the channel-binding type used."
                        ),
                        "saslCondition": {"type": "string"},
                        "saslText": {"type": "string"},
                        "scramError": {
                            "type": "string",
                            "description": "The server's SCRAM `e=` error.",
                        },
                        "errorCondition": {
                            "allOf": [_schema("StanzaErrorCondition")],
                            "description": "Of a failed bind or session iq.",
                        },
                    },
                    required=["phases", "timings"],
                ),
            ],
            "description": "A failed auth probe: as `ProbeFailure`, plus the phases reached.",
        },
        "Refused": _object(
            {
                "success": {"const": False},
                "error": {"type": "string"},
                "blocked": {"const": True, "description": "Present on 403 only."},
            },
            required=["success", "error"],
            description="The request was refused before any probe ran.",
        ),
        "Health": _object(
            {
                "status": {"const": "ok"},
                "version": {"type": "string"},
                "inFlight": {"type": "integer", "description": "Probes running now."},
            },
            required=["status", "version", "inFlight"],
        ),
    }


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _refused(description: str, schema: str = "Refused", headers=None) -> dict:
    response = {"description": description, "content": _json(_schema(schema))}
    if headers:
        response["headers"] = headers
    return response


def _responses(max_body: int) -> dict:
    return {
        "BadRequest": _refused(
            "The body is not a JSON object, a required field is missing, or a field is "
            "invalid (the error names it)."
        ),
        "Forbidden": _refused(
            "The destination is not allowed by the service's policy (`blocked: true`)."
        ),
        "PayloadTooLarge": _refused("The body is over %d bytes." % (max_body,)),
        "UnsupportedMediaType": _refused("The Content-Type is not `application/json`."),
        "TooManyRequests": _refused(
            "Too many probes in flight; retry later.",
            headers={"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
        ),
        "InternalError": _refused("An unexpected error (never with a traceback)."),
    }


_PROBES = {
    "connect": (
        "Stream probe, no credentials",
        "Open a stream, read the features, negotiate STARTTLS when offered, and report. "
        "No `phases` on this endpoint.",
        "ConnectRequest",
        "ConnectSuccess",
        "ProbeFailure",
        {"host": "xmpp.example.org"},
    ),
    "srv": (
        "SRV records of a domain",
        "The SRV records of `_xmpp-client._tcp`, `_xmpps-client._tcp`, `_xmpp-server._tcp` "
        "and `_xmpps-server._tcp` (through `--dns-server` or the system's name servers), in "
        "the order a client tries them, each target's addresses, and the fallback when there "
        "are none. Nothing is connected to.",
        "SRVRequest",
        "SRVSuccess",
        "SRVFailure",
        {"domain": "example.org"},
    ),
    "s2s": (
        "Server-to-server stream probe",
        "Open a `jabber:server` stream (default port 5269), read the features (dialback, "
        "SASL EXTERNAL, STARTTLS), negotiate STARTTLS when offered, and report; the "
        "certificate is checked for the domain as a server (SRV-IDs `_xmpp-server`, "
        "`_xmpps-server`). No `phases` on this endpoint.",
        "S2SRequest",
        "S2SSuccess",
        "ProbeFailure",
        {"host": "xmpp.example.org", "from": "example.net"},
    ),
    "login": (
        "SASL, resource binding, session",
        "Log in and report how far the exchange got.",
        "LoginRequest",
        "LoginSuccess",
        "AuthProbeFailure",
        {"host": "xmpp.example.org", "username": "alice", "password": "secret"},
    ),
    "roster": (
        "Log in and fetch the roster",
        "As `/login`, then a `jabber:iq:roster` get (phase `roster_received`).",
        "RosterRequest",
        "RosterSuccess",
        "AuthProbeFailure",
        {"host": "xmpp.example.org", "username": "alice", "password": "secret"},
    ),
    "server-info": (
        "Log in and ask the server about itself",
        "As `/login`, then service discovery (XEP-0030 identities, features, XEP-0128 "
        "forms, XEP-0157 contact addresses), software version (XEP-0092) and a ping round "
        "trip (XEP-0199); phases `disco_info_received`, `version_received`, `ping_received` "
        "for the answered ones. A query answered with an error or not at all is reported in "
        "`serverInfo.errors`, and the probe goes on.",
        "ServerInfoRequest",
        "ServerInfoSuccess",
        "AuthProbeFailure",
        {"host": "xmpp.example.org", "username": "alice", "password": "secret"},
    ),
    "message": (
        "Log in and send a message",
        "As `/login`, then send one message (phase `message_sent`) and listen for `waitMs`.",
        "MessageRequest",
        "MessageSuccess",
        "AuthProbeFailure",
        {
            "host": "xmpp.example.org",
            "username": "alice",
            "password": "secret",
            "recipient": "bob@example.org",
        },
    ),
}


def _probe_operation(name, summary, description, request, success, failure, example) -> dict:
    return {
        "operationId": name,
        "tags": ["probes"],
        "summary": summary,
        "description": description,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _schema(request), "example": example}},
        },
        "responses": {
            "200": {
                "description": "The probe ran: `success: true`, or `success: false` with "
                "`error` and `errorType`.",
                "content": _json({"oneOf": [_schema(success), _schema(failure)]}),
            },
            "400": _response("BadRequest"),
            "403": _response("Forbidden"),
            "413": _response("PayloadTooLarge"),
            "415": _response("UnsupportedMediaType"),
            "429": _response("TooManyRequests"),
            "500": _response("InternalError"),
        },
    }


def _paths() -> dict:
    paths = {
        "/api/xmpp/" + name: {"post": _probe_operation(name, *spec)}
        for name, spec in _PROBES.items()
    }
    not_found = {
        "description": "Not a known file.",
        "content": _json(_schema("Refused")),
    }
    paths.update(
        {
            "/api/health": {
                "get": {
                    "operationId": "health",
                    "tags": ["service"],
                    "summary": "Liveness",
                    "responses": {
                        "200": {"description": "Up.", "content": _json(_schema("Health"))}
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "tags": ["service"],
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI %s." % (OPENAPI_VERSION,),
                            "content": _json({"type": "object"}),
                        }
                    },
                }
            },
            "/": {
                "get": {
                    "operationId": "page",
                    "tags": ["service"],
                    "summary": "A web page to run every probe and read its result",
                    "responses": {
                        "200": {
                            "description": "The page (same-origin script and style only).",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/static/{name}": {
                "get": {
                    "operationId": "staticFile",
                    "tags": ["service"],
                    "summary": "The page and its script, style sheet and icon",
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": list(STATIC_FILES)},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The file.",
                            "content": {
                                media.split(";")[0]: {"schema": {"type": "string"}}
                                for media in dict.fromkeys(STATIC_FILES.values())
                            },
                        },
                        "404": not_found,
                    },
                }
            },
        }
    )
    return paths


@functools.cache
def document() -> dict:
    """
    The OpenAPI document of the API as built.  Cached: treat it as read-only
    (L{document_bytes} is what the service serves).
    """
    # Imported here: web imports this module to serve the document.
    from .web import MAX_BODY_BYTES, RETRY_AFTER_SECONDS

    schemas = _request_schemas()
    responses = _response_schemas()
    if schemas.keys() & responses.keys():
        raise ValueError("schema names clash: %s" % (sorted(schemas.keys() & responses.keys()),))
    schemas.update(responses)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "portofcall-xmpp",
            "version": __version__,
            "summary": "Probe XMPP servers over HTTP.",
            "description": "Each `POST /api/xmpp/*` takes one JSON object with "
            "`Content-Type: application/json` (at most %d bytes) and opens a real XML "
            "stream to the server named by `host`. Field rules: `null` for an optional field "
            "means not given; enumerations are matched case-insensitively; integers must be "
            "JSON integers; unknown fields are ignored. HTTP 200 means the probe ran: "
            "`success` says whether it got through; `errorType` says why not." % (MAX_BODY_BYTES,),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [
            {"name": "probes", "description": "Probe an XMPP server."},
            {"name": "service", "description": "The service itself."},
        ],
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "responses": _responses(MAX_BODY_BYTES),
            "headers": {
                "RetryAfter": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer", "minimum": 1, "examples": [RETRY_AFTER_SECONDS]},
                }
            },
        },
    }


@functools.cache
def document_bytes() -> bytes:
    """L{document} as UTF-8 JSON."""
    return json.dumps(document(), ensure_ascii=False, indent=1).encode("utf-8")
