"""
The HTTP JSON API (SPEC §2–§7) as a Klein app.

Each probe endpoint of L{endpoints.ENDPOINTS} gets a route: its body is read
as JSON, parsed into its request class, run through its flow, and the frozen
result (or the typed failure) rendered by its renderer (L{render}).  HTTP
refusals (4xx, 500) are answered here, always as JSON.
"""

from __future__ import annotations

import json

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.web.server import Request
from werkzeug.exceptions import MethodNotAllowed, NotFound

from . import __version__, flows, openapi
from .endpoints import ENDPOINTS, MAX_BODY_BYTES, RETRY_AFTER_SECONDS, Endpoint
from .errors import DestinationBlocked, RequestError
from .page import PAGE_HEADERS, static_file
from .schema import ms


class LimitedRequest(Request):
    """
    A request that stops storing its body past L{MAX_BODY_BYTES}: the rest
    is read and dropped, and the handler answers 413.  Form bodies
    (C{multipart/form-data}, C{application/x-www-form-urlencoded}) are not
    parsed: the handler answers 415 in JSON, where twisted.web would answer a
    malformed one with an empty 400 of its own.
    """

    body_exceeded = False
    _body_seen = 0

    def __init__(self, channel, *args, **kwargs):
        super().__init__(channel, *args, parsePOSTFormSubmission=False, **kwargs)

    def handleContentChunk(self, data):
        self._body_seen += len(data)
        if self._body_seen > MAX_BODY_BYTES:
            self.body_exceeded = True
            return
        super().handleContentChunk(data)


def _read_json(request) -> dict:
    """
    The request's JSON object.

    @raise RequestError: 415 (not C{application/json}), 413 (over 64 KiB),
        400 (not JSON, or not an object).
    """
    ctype = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise RequestError(415, "Content-Type must be application/json")
    too_large = RequestError(413, f"Request body exceeds {MAX_BODY_BYTES} bytes")
    length = request.getHeader("content-length")
    if isinstance(request, LimitedRequest) and request.body_exceeded:
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


async def answer(env: flows.Environment, endpoint: Endpoint, req, started: float):
    """
    Run C{req}'s probe through C{endpoint}'s flow and renderers: a Deferred
    (coroutine) of C{(status, body)}: 200 and the answer when the probe ran
    (whether it succeeded or failed), 403 and a refusal when the destination
    is not allowed.  A L{RequestError} of the flow propagates.  The web layer
    and the command line (L{cli}) both answer through here.
    """
    try:
        result = await endpoint.flow(env, req, started)
        body = endpoint.render(result, req)
    except DestinationBlocked as e:
        return 403, {"success": False, "error": e.message, "blocked": True}
    except flows.Failed as f:
        body = endpoint.render_failure(f, req)
    if "elapsedMs" not in body:
        body["elapsedMs"] = ms(env.clock.seconds() - started)
    return 200, body


#: The text of the one log line of a probe, by outcome (L{probe_event}).
_LOG_FORMATS = {
    "ok": "{endpoint} {target}: ok in {elapsedMs} ms",
    "failed": "{endpoint} {target}: failed {errorType} in {elapsedMs} ms",
    "refused": "{endpoint} {target}: refused {status} in {elapsedMs} ms",
    "error": "{endpoint} {target}: internal error in {elapsedMs} ms",
}


def probe_event(endpoint: Endpoint, req, status, body, elapsed: float) -> dict:
    """
    The fields of a probe's log event (SPEC §9): C{endpoint}, C{target},
    C{host}, C{port}, C{domain} (those the request has; None before it
    parsed), C{outcome} (C{ok}, C{failed}, C{refused}, C{error}, or
    C{cancelled} when C{status} is None: the client went away), C{status}
    (HTTP), C{errorType} (of a failed probe), C{elapsedMs} and C{phases} (of
    an auth probe).  Never a credential: nothing else of the request or the
    answer is taken.
    """
    fields = getattr(req, "auth", req)
    body = body or {}
    if status is None:
        outcome = "cancelled"
    elif status == 200:
        outcome = "ok" if body.get("success") else "failed"
    elif status >= 500:
        outcome = "error"
    else:
        outcome = "refused"
    return {
        "endpoint": endpoint.name,
        "target": "-" if req is None else req.target,
        "host": getattr(fields, "host", None),
        "port": getattr(fields, "port", None),
        "domain": getattr(fields, "domain", None),
        "outcome": outcome,
        "status": status,
        "errorType": body.get("errorType") if outcome == "failed" else None,
        "elapsedMs": ms(elapsed),
        "phases": body.get("phases"),
    }


def _probe_route(endpoint: Endpoint):
    """The route handler of C{endpoint}: L{Api._run} with that row."""

    def probe(api: Api, request):
        return Deferred.fromCoroutine(api._run(request, endpoint))

    probe.__name__ = probe.__qualname__ = f"probe {endpoint.name}"
    return probe


class Api:
    """
    The service's HTTP API.

    @param env: the L{flows.Environment} every probe runs in.
    @param max_concurrent: probes in flight at once; one more gets 429.
    @param demo: what C{GET /api/demo} answers (the demo server and account
        of C{--demo}); None: that path is a 404.
    """

    app = Klein()
    # A path with a doubled slash is a 404 like any other unknown path, not
    # werkzeug's redirect to a Location built from the Host header.
    app.url_map.merge_slashes = False
    log = Logger()

    def __init__(self, env: flows.Environment, max_concurrent: int = 200, demo=None):
        self._env = env
        self._demo = demo
        self._clock = env.clock
        self._max_concurrent = max_concurrent
        self.in_flight = 0

    def resource(self):
        return self.app.resource()

    # -- the probes

    async def _run(self, request, endpoint: Endpoint):
        started = self._clock.seconds()
        req = None
        headers = None
        acquired = False
        try:
            req = endpoint.parse(_read_json(request))
            if self.in_flight >= self._max_concurrent:
                raise RequestError(
                    429,
                    f"Too many probes in flight (limit {self._max_concurrent}); retry later",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            self.in_flight += 1
            acquired = True
            status, body = await answer(self._env, endpoint, req, started)
        except RequestError as e:
            status = e.status
            body = {"success": False, "error": e.message, **e.extra}
            headers = e.headers
        except CancelledError:
            self.log.info(
                "{endpoint} {target}: client went away after {elapsedMs} ms",
                **probe_event(endpoint, req, None, None, self._clock.seconds() - started),
            )
            raise
        except Exception:
            self.log.failure("{endpoint}: internal error", endpoint=endpoint.name)
            status, body = 500, {"success": False, "error": "Internal error"}
        finally:
            if acquired:
                self.in_flight -= 1
        event = probe_event(endpoint, req, status, body, self._clock.seconds() - started)
        self.log.info(_LOG_FORMATS[event["outcome"]], **event)
        return _write_json(request, status, body, headers)

    for _endpoint in ENDPOINTS:
        app.route(_endpoint.path, methods=["POST"], endpoint=_endpoint.name)(
            _probe_route(_endpoint)
        )
    del _endpoint

    # -- the service itself

    @app.route("/api/health", methods=["GET"])
    def health(self, request):
        return _write_json(
            request, 200, {"status": "ok", "version": __version__, "inFlight": self.in_flight}
        )

    @app.route("/api/demo", methods=["GET"])
    def demo(self, request):
        if self._demo is None:
            raise NotFound()
        return _write_json(request, 200, self._demo)

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
        found = static_file(name)
        if found is None:
            raise NotFound()
        body, content_type = found
        request.setHeader("content-type", content_type)
        for header, value in PAGE_HEADERS.items():
            request.setHeader(header, value)
        request.setHeader("content-length", str(len(body)))
        return body

    @app.handle_errors(NotFound)
    def not_found(self, request, failure):
        return _write_json(request, 404, {"success": False, "error": "Not found"})

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(self, request, failure):
        allowed = ", ".join(failure.value.valid_methods or [])
        headers = {"Allow": allowed} if allowed else None
        return _write_json(request, 405, {"success": False, "error": "Method not allowed"}, headers)

