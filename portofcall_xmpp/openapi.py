"""
The OpenAPI 3.1 document of the HTTP API (SPEC §7: C{GET /api/openapi.json}),
generated from the endpoint table (L{endpoints.ENDPOINTS}): a path per row,
with the request schemas declared beside the parsers (L{validate.SCHEMAS},
from the constants the parsers enforce: defaults, ranges, enumerations) and
the response schemas beside the renderers (L{render.SCHEMAS}).
C{tests/http/test_openapi.py} checks the document against the validation
code and against real answers.
"""

from __future__ import annotations

import functools
import json

from . import __version__, render, validate
from .endpoints import ENDPOINTS, MAX_BODY_BYTES, RETRY_AFTER_SECONDS, Endpoint
from .page import STATIC_FILES
from .schema import ref

OPENAPI_VERSION = "3.1.0"


# ---------------------------------------------------------------------------
# The document


def _response(name: str) -> dict:
    return {"$ref": f"#/components/responses/{name}"}


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
    content = _json(answers)
    if endpoint.render_event is not None:
        content["text/event-stream"] = {
            "schema": {
                "type": "string",
                "description": "With `Accept: text/event-stream`: Server-Sent Events, each "
                "`data` one line of JSON: an `endpoint` event per endpoint as it finishes "
                "(`CheckEndpoint`), then one `report` event (the JSON answer), and the "
                "response ends.",
            }
        }
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
                "content": content,
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
            "/api/demo": {
                "get": {
                    "operationId": "demo",
                    "tags": ["service"],
                    "summary": "The demo server and account (`--demo` only)",
                    "responses": {
                        "200": {
                            "description": "Where the throw-away Prosody of `--demo` listens, "
                            "and an account on it; the page fills its forms from it.",
                            "content": _json(
                                {
                                    "type": "object",
                                    "properties": {
                                        "host": {"type": "string"},
                                        "port": {"type": "integer"},
                                        "domain": {"type": "string"},
                                        "username": {"type": "string"},
                                        "password": {"type": "string"},
                                    },
                                    "required": ["host", "port", "domain", "username", "password"],
                                }
                            ),
                        },
                        "404": not_found,
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
                            "description": f"OpenAPI {OPENAPI_VERSION}.",
                            "content": _json({"type": "object"}),
                        }
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "tags": ["service"],
                    "summary": "The service's Prometheus metrics",
                    "description": "Probes by `endpoint`, `outcome` (`ok`, `failed`) and "
                    "`errorType` (`portofcall_probes_total`), probe duration by endpoint "
                    "(`portofcall_probe_duration_seconds`), probes in flight "
                    "(`portofcall_probes_in_flight`), HTTP answers by `status` "
                    "(`portofcall_http_responses_total`), refusals by a rate limit by `kind` "
                    "(`portofcall_rate_limited_total`), and the process collector. Each "
                    "process counts its own.",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format 0.0.4.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/probe": {
                "get": {
                    "operationId": "blackboxProbe",
                    "tags": ["service"],
                    "summary": "A probe for Prometheus and prosodyctl (XMPP Blackbox Exporter)",
                    "description": "Runs one module (built in: `c2s_normal_auth`, "
                    "`c2s_direct_tls`, `s2s_normal`, `s2s_direct_tls`; more from "
                    "`--probe-config`) against one target and answers its metrics: "
                    "`probe_success`, `probe_duration_seconds`, "
                    "`probe_xmpp_duration_seconds{phase}`, `probe_ssl_earliest_cert_expiry`, "
                    "`probe_sasl_mechanism_offered{mechanism}`, `probe_dialback_offered`, "
                    "`probe_starttls_offered`, `probe_starttls_required`, "
                    "`probe_failed_due_to{reason}`, `probe_failed_due_to_sasl_mechanism`, "
                    "`probe_failed_due_to_dialback`. A probe that failed, or a target the "
                    "destination policy refuses (`reason=\"blocked\"`), is `probe_success 0` "
                    "in a 200. The `X-Prometheus-Scrape-Timeout-Seconds` header, less "
                    "0.5 s, caps the module's timeout.",
                    "parameters": [
                        {
                            "name": "module",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                            "example": "c2s_normal_auth",
                        },
                        {
                            "name": "target",
                            "in": "query",
                            "required": True,
                            "description": "`xmpp:DOMAIN` (SRV) or `xmpp://HOST:PORT/DOMAIN` "
                            "(that node only); for a `ping` module, the DOMAIN may be any JID "
                            "(what is pinged).",
                            "schema": {"type": "string"},
                            "example": "xmpp:example.org",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The probe's metrics, Prometheus text format 0.0.4.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "400": {
                            "description": "Unknown module, a missing or malformed target, "
                            "or a bad scrape-timeout header: one line of text.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "429": {
                            "description": "Too many probes in flight (`--max-concurrent`): "
                            "one line of text, with `Retry-After`.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
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
    clash = validate.SCHEMAS.keys() & render.SCHEMAS.keys()
    if clash:
        raise ValueError(f"schema names clash: {sorted(clash)}")
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
            "schemas": {**validate.SCHEMAS, **render.SCHEMAS},
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
