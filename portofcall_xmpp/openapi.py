"""
The OpenAPI 3.1 document of the HTTP API (SPEC §7: C{GET /api/openapi.json}),
generated from the endpoint table (L{endpoints.ENDPOINTS}): a path per row,
its request schema (built here from the constants L{validate} enforces:
defaults, ranges, enumerations), and the response schemas declared beside
the renderers (L{render.SCHEMAS}).  C{tests/http/test_openapi.py} checks the
document against the validation code and against real answers.
"""

from __future__ import annotations

import functools
import json

from . import __version__, validate
from .endpoints import ENDPOINTS, MAX_BODY_BYTES, RETRY_AFTER_SECONDS, Endpoint
from .page import STATIC_FILES
from .render import SCHEMAS, ms
from .schema import obj, ref

OPENAPI_VERSION = "3.1.0"


# ---------------------------------------------------------------------------
# The document


def _response(name: str) -> dict:
    return {"$ref": f"#/components/responses/{name}"}


def _timeout(default_seconds: float) -> dict:
    return {
        "type": "integer",
        "minimum": 1,
        "maximum": validate.MAX_TIMEOUT_MS,
        "default": ms(default_seconds),
        "description": "Overall timeout of the probe, in milliseconds.",
    }


def _tls_mode(modes: tuple[str, ...], description: str) -> dict:
    return {
        "type": "string",
        "enum": list(modes),
        "default": "auto",
        "description": f"{description} Default: `direct` when `port` is "
        f"{validate.DIRECT_TLS_PORT}, else `auto`.",
    }


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
        "host": ref("Host"),
        "port": ref("Port"),
        "domain": ref("Domain"),
        "timeout": _timeout(validate.CONNECT_TIMEOUT),
        "tls": _tls_mode(
            validate.CONNECT_TLS_MODES,
            "`auto`: negotiate STARTTLS when offered and report on it; `none`: "
            "plaintext features only; `direct`: TLS from the first byte (XEP-0368).",
        ),
        "transcript": ref("TranscriptFlag"),
    }
    return {
        "Host": {
            "type": "string",
            "minLength": 1,
            "description": "The server to connect to: a DNS name (IDNA, at most "
            f"{validate.MAX_DNS_NAME} octets as "
            "an A-label) or an IPv4/IPv6 literal (brackets optional, no zone). Every numeric "
            "IPv4 spelling (`2130706433`, `0x7f.1`) is read as that address.",
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
        "ConnectRequest": obj(stream_fields, required=["host"]),
        "SRVRequest": obj(
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
        "S2SRequest": obj(
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
        "AuthFields": obj(
            {
                "host": ref("Host"),
                "port": ref("Port"),
                "domain": ref("Domain"),
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
                    f"{part} bytes.",
                    "examples": ["alice"],
                },
                "password": {
                    "type": "string",
                    "format": "password",
                    "writeOnly": True,
                    "minLength": 1,
                    "maxLength": part,
                    "description": f"1 to {part} bytes (UTF-8), no NUL. Never logged or echoed.",
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
                "transcript": ref("TranscriptFlag"),
            },
            required=["host", "username", "password"],
            description="The fields every auth endpoint (`/login`, `/roster`, `/message`) takes.",
        ),
        "LoginRequest": {
            "allOf": [
                ref("AuthFields"),
                obj({"timeout": _timeout(validate.LOGIN_TIMEOUT)}),
            ]
        },
        "RosterRequest": {
            "allOf": [
                ref("AuthFields"),
                obj({"timeout": _timeout(validate.ROSTER_TIMEOUT)}),
            ]
        },
        "ServerInfoRequest": {
            "allOf": [
                ref("AuthFields"),
                obj({"timeout": _timeout(validate.ROSTER_TIMEOUT)}),
            ]
        },
        "MessageRequest": {
            "allOf": [
                ref("AuthFields"),
                obj(
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
                            "description": "The body: at most "
                            f"{validate.MAX_MESSAGE_BYTES} bytes (UTF-8), only "
                            "characters XML 1.0 allows.",
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
                            "default": ms(validate.DEFAULT_WAIT),
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


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _refused(description: str, schema: str = "Refused", headers=None) -> dict:
    response = {"description": description, "content": _json(ref(schema))}
    if headers:
        response["headers"] = headers
    return response


def _responses() -> dict:
    return {
        "BadRequest": _refused(
            "The body is not a JSON object, a required field is missing, or a field is "
            "invalid (the error names it)."
        ),
        "Forbidden": _refused(
            "The destination is not allowed by the service's policy (`blocked: true`)."
        ),
        "PayloadTooLarge": _refused(f"The body is over {MAX_BODY_BYTES} bytes."),
        "UnsupportedMediaType": _refused("The Content-Type is not `application/json`."),
        "TooManyRequests": _refused(
            "Too many probes in flight; retry later.",
            headers={"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
        ),
        "InternalError": _refused("An unexpected error (never with a traceback)."),
    }


def _probe_operation(endpoint: Endpoint) -> dict:
    request = {"schema": ref(endpoint.request_schema), "example": endpoint.example}
    answers = {"oneOf": [ref(endpoint.success_schema), ref(endpoint.failure_schema)]}
    return {
        "operationId": endpoint.name,
        "tags": ["probes"],
        "summary": endpoint.summary,
        "description": endpoint.description,
        "requestBody": {"required": True, "content": {"application/json": request}},
        "responses": {
            "200": {
                "description": "The probe ran: `success: true`, or `success: false` with "
                "`error` and `errorType`.",
                "content": _json(answers),
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
    paths = {endpoint.path: {"post": _probe_operation(endpoint)} for endpoint in ENDPOINTS}
    not_found = {
        "description": "Not a known file.",
        "content": _json(ref("Refused")),
    }
    paths.update(
        {
            "/api/health": {
                "get": {
                    "operationId": "health",
                    "tags": ["service"],
                    "summary": "Liveness",
                    "responses": {"200": {"description": "Up.", "content": _json(ref("Health"))}},
                }
            },
            "/api/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "tags": ["service"],
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": f"OpenAPI {OPENAPI_VERSION}.",
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
    schemas = _request_schemas()
    clash = schemas.keys() & SCHEMAS.keys()
    if clash:
        raise ValueError(f"schema names clash: {sorted(clash)}")
    schemas.update(SCHEMAS)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "portofcall-xmpp",
            "version": __version__,
            "summary": "Probe XMPP servers over HTTP.",
            "description": "Each `POST /api/xmpp/*` takes one JSON object with "
            f"`Content-Type: application/json` (at most {MAX_BODY_BYTES} bytes) and opens a "
            "real XML "
            "stream to the server named by `host`. Field rules: `null` for an optional field "
            "means not given; enumerations are matched case-insensitively; integers must be "
            "JSON integers; unknown fields are ignored. HTTP 200 means the probe ran: "
            "`success` says whether it got through; `errorType` says why not.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [
            {"name": "probes", "description": "Probe an XMPP server."},
            {"name": "service", "description": "The service itself."},
        ],
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "responses": _responses(),
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
