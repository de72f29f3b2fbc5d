"""
The HTTP JSON API (SPEC §2–§6) as a Klein app.

Only this module speaks JSON and milliseconds: requests are validated into
C{validate} objects, run through C{flows}, and the frozen results (or the
typed failures) are turned into response bodies here.
"""

from __future__ import annotations

import json

import attrs
from klein import Klein
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.web.server import Request
from werkzeug.exceptions import MethodNotAllowed, NotFound

from . import __version__, flows, openapi, validate
from .errors import DestinationBlocked, RequestError

MAX_BODY_BYTES = 64 * 1024
RETRY_AFTER_SECONDS = 1


class LimitedRequest(Request):
    """
    A request that stops storing its body past L{MAX_BODY_BYTES}: the rest
    is read and dropped, and the handler answers 413.
    """

    body_exceeded = False
    _body_seen = 0

    def handleContentChunk(self, data):
        self._body_seen += len(data)
        if self._body_seen > MAX_BODY_BYTES:
            self.body_exceeded = True
            return
        super().handleContentChunk(data)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _read_json(request) -> dict:
    """
    The request's JSON object.

    @raise RequestError: 415 (not C{application/json}), 413 (over 64 KiB),
        400 (not JSON, or not an object).
    """
    ctype = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise RequestError(415, "Content-Type must be application/json")
    too_large = RequestError(413, "Request body exceeds %d bytes" % (MAX_BODY_BYTES,))
    length = request.getHeader("content-length")
    if getattr(request, "body_exceeded", False):
        raise too_large
    if length is not None and length.strip().isdigit() and int(length) > MAX_BODY_BYTES:
        raise too_large
    request.content.seek(0)
    raw = request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise too_large

    def no_constants(name):
        raise ValueError(name)

    try:
        body = json.loads(raw, parse_constant=no_constants)
    except (ValueError, RecursionError) as e:
        raise RequestError(400, "Request body is not valid JSON") from e
    if not isinstance(body, dict):
        raise RequestError(400, "Request body must be a JSON object")
    return body


def _write_json(request, status: int, obj, headers=None) -> bytes:
    request.setResponseCode(status)
    request.setHeader("content-type", "application/json; charset=utf-8")
    request.setHeader("cache-control", "no-store")
    request.setHeader("x-content-type-options", "nosniff")
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    request.setHeader("content-length", str(len(body)))
    return body


# -- results to JSON


def _transcript_json(entries):
    return [{"dir": d, "ms": _ms(t), "xml": xml} for d, t, xml in entries]


def _iso(when) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(when, "strftime") else when


def _certificate_json(cert) -> dict:
    return {
        "subject": cert.subject,
        "issuer": cert.issuer,
        "subjectAltNames": list(cert.subject_alt_names),
        "notBefore": _iso(cert.not_before),
        "notAfter": _iso(cert.not_after),
        "fingerprintSha256": cert.fingerprint_sha256,
        "verified": cert.verified,
        "verifyError": cert.verify_error,
        "matchesDomain": cert.matches_domain,
        "daysUntilExpiry": cert.days_until_expiry,
    }


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


def connect_json(result: flows.ConnectResult, req) -> dict:
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
        "warnings": list(result.warnings),
        "elapsedMs": _ms(result.elapsed),
    }
    if req.transcript:
        body["transcript"] = _transcript_json(result.transcript)
    return body


def s2s_json(result: flows.ConnectResult, req) -> dict:
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


def _auth_base(result: flows.AuthResult, req, message: str | None) -> dict:
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
    }
    if message is not None:
        body["message"] = message
    body.update(
        {
            "timings": {k: _ms(v) for k, v in result.timings.items()},
            "elapsedMs": _ms(result.elapsed),
            "warnings": list(result.warnings),
        }
    )
    if req.transcript:
        body["transcript"] = _transcript_json(result.transcript)
    return body


def login_json(result: flows.AuthResult, req) -> dict:
    return _auth_base(result, req, "XMPP login successful")


def roster_json(result: flows.AuthResult, req) -> dict:
    body = _auth_base(result, req, "XMPP roster retrieved")
    r = result.roster
    body["roster"] = {
        "total": len(r.contacts),
        "version": r.version,
        "contacts": [
            {
                "jid": c.jid,
                "name": c.name,
                "subscription": c.subscription,
                "ask": c.ask,
                "groups": list(c.groups),
            }
            for c in r.contacts
        ],
    }
    return body


def server_info_json(result: flows.AuthResult, req) -> dict:
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


def message_json(result: flows.AuthResult, req) -> dict:
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
        "ms": None if d.receipt_after is None else _ms(d.receipt_after),
    }
    return body


def srv_json(report, req) -> dict:
    from .render_srv import to_json

    return {"success": True, **to_json(report)}


def failure_json(failed: flows.Failed, req, auth: bool) -> dict:
    error = failed.error
    body = {"success": False, "error": error.message, "errorType": error.error_type}
    if hasattr(req, "host"):
        body.update(host=req.host, port=req.port)
    else:
        body["domain"] = req.domain
    if auth:
        body["phases"] = list(failed.phases)
        body["timings"] = {k: _ms(v) for k, v in failed.timings.items()}
        if failed.mechanism is not None:
            body["mechanism"] = failed.mechanism
            body["channelBinding"] = failed.channel_binding
    body.update(error.extra)
    if failed.tls is not None and failed.tls.negotiated:
        body["tls"] = _tls_json(failed.tls)
    if failed.warnings:
        body["warnings"] = list(failed.warnings)
    if failed.raw:
        body["raw"] = failed.raw
    body["elapsedMs"] = _ms(failed.elapsed)
    if req.transcript:
        body["transcript"] = _transcript_json(failed.transcript or ())
    return body


@attrs.frozen
class _Endpoint:
    name: str
    parse: object
    flow: object
    render: object
    auth: bool


def _auth_of(req):
    return getattr(req, "auth", req)


class Api:
    """
    The service's HTTP API.

    @param env: the L{flows.Environment} every probe runs in.
    @param max_concurrent: probes in flight at once; one more gets 429.
    """

    app = Klein()
    log = Logger()

    def __init__(self, env: flows.Environment, max_concurrent: int = 200):
        self._env = env
        self._clock = env.clock
        self._max_concurrent = max_concurrent
        self.in_flight = 0

    def resource(self):
        return self.app.resource()

    # -- plumbing

    async def _run(self, request, endpoint: _Endpoint):
        started = self._clock.seconds()
        req = None
        headers = None
        acquired = False
        try:
            req = endpoint.parse(_read_json(request))
            if self.in_flight >= self._max_concurrent:
                raise RequestError(
                    429,
                    "Too many probes in flight (limit %d); retry later" % (self._max_concurrent,),
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            self.in_flight += 1
            acquired = True
            result = await endpoint.flow(self._env, req, started)
            status, body = 200, endpoint.render(result, req)
            outcome = "ok"
        except RequestError as e:
            status = e.status
            body = {"success": False, "error": e.message, **e.extra}
            headers = e.headers
            outcome = "refused %d" % (status,)
        except DestinationBlocked as e:
            status, body = 403, {"success": False, "error": e.message, "blocked": True}
            outcome = "refused 403"
        except flows.Failed as f:
            status, body = 200, failure_json(f, _auth_of(req), endpoint.auth)
            outcome = "failed %s" % (f.error.error_type,)
        except CancelledError:
            self.log.info(
                "{endpoint} {target}: client went away after {ms} ms",
                endpoint=endpoint.name,
                target=_target(req),
                ms=_ms(self._clock.seconds() - started),
            )
            raise
        except Exception:
            self.log.failure("{endpoint}: internal error", endpoint=endpoint.name)
            status, body = 500, {"success": False, "error": "Internal error"}
            outcome = "internal error"
        finally:
            if acquired:
                self.in_flight -= 1
        if status == 200 and "elapsedMs" not in body:
            body["elapsedMs"] = _ms(self._clock.seconds() - started)
        self.log.info(
            "{endpoint} {target}: {outcome} in {ms} ms",
            endpoint=endpoint.name,
            target=_target(req),
            outcome=outcome,
            ms=_ms(self._clock.seconds() - started),
        )
        return _write_json(request, status, body, headers)

    def _handle(self, request, endpoint):
        return Deferred.fromCoroutine(self._run(request, endpoint))

    # -- routes

    @app.route("/api/xmpp/connect", methods=["POST"])
    def connect(self, request):
        return self._handle(
            request, _Endpoint("connect", validate.parse_connect, flows.probe, connect_json, False)
        )

    @app.route("/api/xmpp/login", methods=["POST"])
    def login(self, request):
        return self._handle(
            request, _Endpoint("login", validate.parse_login, flows.login, login_json, True)
        )

    @app.route("/api/xmpp/roster", methods=["POST"])
    def roster(self, request):
        return self._handle(
            request, _Endpoint("roster", validate.parse_roster, flows.roster, roster_json, True)
        )

    @app.route("/api/xmpp/message", methods=["POST"])
    def message(self, request):
        return self._handle(
            request,
            _Endpoint("message", validate.parse_message, flows.message, message_json, True),
        )

    @app.route("/api/xmpp/srv", methods=["POST"])
    def srv(self, request):
        return self._handle(
            request, _Endpoint("srv", validate.parse_srv, flows.srv, srv_json, False)
        )

    @app.route("/api/xmpp/s2s", methods=["POST"])
    def s2s(self, request):
        return self._handle(
            request, _Endpoint("s2s", validate.parse_s2s, flows.probe, s2s_json, False)
        )

    @app.route("/api/xmpp/server-info", methods=["POST"])
    def server_info(self, request):
        return self._handle(
            request,
            _Endpoint(
                "server-info",
                validate.parse_server_info,
                flows.server_info,
                server_info_json,
                True,
            ),
        )

    @app.route("/api/health", methods=["GET"])
    def health(self, request):
        return _write_json(
            request, 200, {"status": "ok", "version": __version__, "inFlight": self.in_flight}
        )

    @app.route("/api/openapi.json", methods=["GET"])
    def openapi_document(self, request):
        body = openapi.document_bytes()
        request.setHeader("content-type", "application/json; charset=utf-8")
        request.setHeader("cache-control", "no-cache")
        request.setHeader("x-content-type-options", "nosniff")
        request.setHeader("content-length", str(len(body)))
        return body

    @app.route("/", methods=["GET"], endpoint="page")
    @app.route("/static/<name>", methods=["GET"], endpoint="static_file")
    def page(self, request, name="index.html"):
        found = openapi.static_file(name)
        if found is None:
            raise NotFound()
        body, content_type = found
        request.setHeader("content-type", content_type)
        for header, value in openapi.PAGE_HEADERS.items():
            request.setHeader(header, value)
        request.setHeader("content-length", str(len(body)))
        return body

    @app.handle_errors(NotFound)
    def not_found(self, request, failure):
        return _write_json(request, 404, {"success": False, "error": "Not found"})

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(self, request, failure):
        allowed = ", ".join(getattr(failure.value, "valid_methods", None) or [])
        headers = {"Allow": allowed} if allowed else None
        return _write_json(request, 405, {"success": False, "error": "Method not allowed"}, headers)


def _target(req) -> str:
    if req is None:
        return "-"
    auth = _auth_of(req)
    if not hasattr(auth, "host"):
        return auth.domain
    return "%s:%d" % (auth.host, auth.port)
