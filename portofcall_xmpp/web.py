"""
The HTTP JSON API (SPEC §2–§7) as a Klein app.

Each probe endpoint of L{endpoints.ENDPOINTS} gets a route: its body is read
as JSON, parsed into its request class, run through its flow, and the frozen
result (or the typed failure) rendered by its renderer (L{render}).  HTTP
refusals (4xx, 500) are answered here, as JSON -- except on the two routes
Prometheus reads (SPEC §9), which speak its text format: C{GET /metrics}
(L{metrics.ServiceMetrics}) and C{GET /probe} (L{probe}; refusals there are
one line of text/plain).
"""

from __future__ import annotations

import functools
import os

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from werkzeug.exceptions import MethodNotAllowed, NotFound

from . import __version__, flows, jsonio, openapi, probe, render
from .endpoints import ENDPOINTS, MAX_BODY_BYTES, RETRY_AFTER_SECONDS, Endpoint
from .errors import DestinationBlocked, RequestError, TooLarge
from .metrics import ServiceMetrics
from .page import PAGE_HEADERS, static_file
from .probe_config import BUILTIN_MODULES, Module
from .ratelimit import FailedLogins, RateLimited
from .schema import ms

_log = Logger()


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

    try:
        body = jsonio.loads(raw)
    except ValueError as e:
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
    body = jsonio.dumps(obj)
    request.setHeader("content-length", str(len(body)))
    return body


def _write_text(request, status: int, text: str, headers=None) -> bytes:
    """A one-line text/plain answer (the refusals of C{/probe})."""
    request.setResponseCode(status)
    request.setHeader("content-type", "text/plain; charset=utf-8")
    request.setHeader("cache-control", "no-store")
    request.setHeader("x-content-type-options", "nosniff")
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    body = f"{text}\n".encode()
    request.setHeader("content-length", str(len(body)))
    return body


def _write_metrics(request, body: bytes, content_type: str) -> bytes:
    request.setResponseCode(200)
    request.setHeader("content-type", content_type)
    request.setHeader("cache-control", "no-store")
    request.setHeader("x-content-type-options", "nosniff")
    request.setHeader("content-length", str(len(body)))
    return body


def _query(request, name: str) -> str | None:
    """
    The first C{name} parameter of the query string, or L{None}.

    @raise RequestError: 400 when it is not UTF-8.
    """
    values = request.args.get(name.encode("ascii"))
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(400, f"{name} is not UTF-8") from e


class _Counted(Resource):
    """
    The API's resource, counting every HTTP answer by status.  A C{POST} to
    a probe path goes straight to its handler (C{direct}); every other
    request goes through the Klein app (C{inner}), whose routing would cost
    a probe as much as parsing the server's features.
    """

    isLeaf = True

    def __init__(self, inner: Resource, metrics: ServiceMetrics, direct=None):
        super().__init__()
        self._inner = inner
        self._metrics = metrics
        self._direct = direct or {}

    def render(self, request):
        if request.method == b"POST":
            handler = self._direct.get(request.path)
            if handler is not None:
                return self._render_direct(request, handler)
        request.notifyFinish().addCallbacks(
            lambda _: self._metrics.answered(request.code), lambda _: None
        )
        return self._inner.render(request)

    def _render_direct(self, request, handler):
        """
        Run C{handler(request)} (a Deferred of the body), then write its
        body; the client going away first cancels it.
        """
        finished = []
        d = handler(request)

        def gone(result):
            finished.append(True)
            if isinstance(result, Failure):
                d.cancel()
            else:
                self._metrics.answered(request.code)

        def write(body):
            if not finished:
                request.write(body)
                request.finish()

        def failed(failure):
            if not finished:
                request.processingFailed(failure)
            elif not failure.check(CancelledError):
                _log.failure("Unhandled error processing a request", failure)

        request.notifyFinish().addBoth(gone)
        d.addCallbacks(write, failed)
        return NOT_DONE_YET


async def answer(
    env: flows.Environment, endpoint: Endpoint, req, started: float, *, progress=None, watch=None
):
    """
    Run C{req}'s probe through C{endpoint}'s flow and renderers: a coroutine
    of C{(status, body)}: 200 and the answer when the probe ran (whether it
    succeeded or failed), 403 and a refusal when the destination is not
    allowed.  A L{RequestError} or L{RateLimited} of the flow propagates.  The
    web layer and the command line (L{cli}) both answer through here.

    @param progress: for an endpoint with progress events (C{render_event}):
        called with each item as it finishes.
    @param watch: C{watch(ran)} -> an awaitable of what the flow's Deferred
        C{ran} gives, seeing it first (the web layer counts it).
    """
    if progress is None:
        ran = endpoint.flow(env, req, started)
    else:
        ran = endpoint.flow(env, req, started, progress)
    try:
        result = await (ran if watch is None else watch(ran))
        body = endpoint.render(result, req)
    except DestinationBlocked as e:
        return 403, render.blocked_json(e)
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
    @param metrics: the process's L{ServiceMetrics} (a fresh one by
        default).  A refusal by a rate limit (C{ratelimit.RateLimited},
        answered 429) is counted with C{metrics.refused(e.kind)}.
    @param modules: the C{/probe} modules by name (L{probe_config.load});
        by default the built-in ones.
    @param demo: what C{GET /api/demo} answers (the demo server and account
        of C{--demo}); None: that path is a 404.
    @param worker: this process's index among the worker processes of
        C{--workers}, which C{GET /api/health} names with its pid; None (a
        single process): no C{worker} there.
    """

    app = Klein()
    # A path with a doubled slash is a 404 like any other unknown path, not
    # werkzeug's redirect to a Location built from the Host header.
    app.url_map.merge_slashes = False
    log = Logger()

    def __init__(
        self,
        env: flows.Environment,
        max_concurrent: int = 200,
        failed_logins: FailedLogins | None = None,
        metrics: ServiceMetrics | None = None,
        modules: dict[str, Module] | None = None,
        demo=None,
        worker: int | None = None,
    ):
        self._env = env
        self._demo = demo
        self._worker = worker
        self._clock = env.clock
        self._max_concurrent = max_concurrent
        self._failed_logins = (
            FailedLogins(env.clock, limit=0) if failed_logins is None else failed_logins
        )
        self.in_flight = 0
        self.metrics = metrics if metrics is not None else ServiceMetrics()
        self.metrics.in_flight.set_function(lambda: self.in_flight)
        self._modules = dict(BUILTIN_MODULES if modules is None else modules)

    def resource(self):
        direct = {
            endpoint.path.encode("ascii"): functools.partial(self._direct, endpoint)
            for endpoint in ENDPOINTS
        }
        return _Counted(self.app.resource(), self.metrics, direct)

    def _direct(self, endpoint: Endpoint, request) -> Deferred:
        return Deferred.fromCoroutine(self._run(request, endpoint))

    def _acquire(self) -> None:
        """Take a place among the probes in flight, or refuse with 429."""
        if self.in_flight >= self._max_concurrent:
            raise RequestError(
                429,
                f"Too many probes in flight (limit {self._max_concurrent}); retry later",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.in_flight += 1

    async def _watch(self, endpoint: Endpoint, req, ran: Deferred, started: float):
        """
        What the flow's Deferred C{ran} gives, after counting the probe as ok
        or by its errorType, and a login the server refused against
        C{--max-failed-logins}.
        """
        try:
            result = await ran
        except flows.Failed as f:
            self.metrics.probe_done(
                endpoint.name, f.error.error_type, self._clock.seconds() - started
            )
            if req.account is not None and _credentials_refused(f):
                self._failed_logins.failed(req.account)
            raise
        self.metrics.probe_done(endpoint.name, None, self._clock.seconds() - started)
        if req.account is not None and endpoint.login_failure is not None:
            refused = endpoint.login_failure(result)
            if refused is not None and _credentials_refused(refused):
                self._failed_logins.failed(req.account)
        return result

    # -- the probes

    async def _run(self, request, endpoint: Endpoint):
        started = self._clock.seconds()
        req = None
        events = None
        headers = None
        acquired = False
        try:
            req = endpoint.parse(_read_json(request))
            if req.account is not None:
                self._failed_logins.check(req.account)
            self._acquire()
            acquired = True
            progress = None
            if endpoint.render_event is not None and _wants_events(request):
                events = _EventStream(request)

                def progress(item):
                    events.send("endpoint", endpoint.render_event(item, req))

            status, body = await answer(
                self._env,
                endpoint,
                req,
                started,
                progress=progress,
                watch=lambda ran: self._watch(endpoint, req, ran, started),
            )
        except RequestError as e:
            status = e.status
            body = {"success": False, "error": e.message, **e.extra}
            headers = e.headers
        except RateLimited as e:
            status, body = 429, {"success": False, "error": e.message, "rateLimited": e.kind}
            headers = {"Retry-After": str(e.retry_after)}
            self.metrics.refused(e.kind)
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
        # Formatted here, once: twisted.logger's own formatting of the same
        # text costs a probe several times more.
        self.log.info(
            "{log_text}", log_text=_LOG_FORMATS[event["outcome"]].format_map(event), **event
        )
        if events is not None:
            events.send("report", body)
            return b""
        return self._answer(request, status, body, headers)

    def _answer(self, request, status: int, body: dict, headers) -> bytes:
        """
        The JSON answer of a probe, charged to the service-wide budget
        (C{--max-buffered-bytes}) until it is sent or the client is gone;
        one that does not fit is replaced by a short C{too_large} answer.
        """
        data = _write_json(request, status, body, headers)
        charge = self._env.limits.budget.charge()
        try:
            charge.set(len(data))
        except TooLarge as e:
            data = _write_json(
                request, 200, {"success": False, "error": str(e), "errorType": "too_large"}
            )
        else:
            request.notifyFinish().addBoth(lambda _: charge.release())
        return data

    for _endpoint in ENDPOINTS:
        app.route(_endpoint.path, methods=["POST"], endpoint=_endpoint.name)(
            _probe_route(_endpoint)
        )
    del _endpoint

    # -- Prometheus (SPEC §9)

    @app.route("/metrics", methods=["GET"])
    def metrics_text(self, request):
        return _write_metrics(request, *self.metrics.render())

    @app.route("/probe", methods=["GET"])
    def probe_metrics(self, request):
        return Deferred.fromCoroutine(self._probe(request))

    async def _probe(self, request):
        """
        C{GET /probe?module=M&target=T}: the module's probe, answered as
        metrics (200, also when the probe failed or the destination policy
        refused the target: C{probe_success 0}); a request this service
        cannot run is one line of text: 400 (module, target), 429 (busy).
        """
        started = self._clock.seconds()
        name = target_text = "-"
        acquired = False
        try:
            name = _query(request, "module")
            target_text = _query(request, "target")
            if name is None or name == "":
                raise RequestError(400, "Missing required parameter: module")
            module = self._modules.get(name)
            if module is None:
                known = ", ".join(sorted(self._modules))
                raise RequestError(400, f"Unknown module {name!r} (known: {known})")
            target = probe.parse_target(target_text, module.prober)
            timeout = probe.timeout_for(
                module, request.getHeader("x-prometheus-scrape-timeout-seconds")
            )
            self._acquire()
            acquired = True
            outcome = await probe.run(self._env, module, target, timeout)
        except RequestError as e:
            self.log.info(
                "probe {module} {target}: refused {status}: {error}",
                module=name,
                target=target_text,
                status=e.status,
                error=e.message,
            )
            return _write_text(request, e.status, e.message, e.headers)
        except CancelledError:
            self.log.info(
                "probe {module} {target}: client went away after {ms} ms",
                module=name,
                target=target_text,
                ms=ms(self._clock.seconds() - started),
            )
            raise
        except Exception:
            self.log.failure("probe {module}: internal error", module=name)
            return _write_text(request, 500, "Internal error")
        finally:
            if acquired:
                self.in_flight -= 1
        self.metrics.probe_done("probe", outcome.error_type, outcome.elapsed)
        self.log.info(
            "probe {module} {target}: {outcome} in {ms} ms",
            module=name,
            target=target_text,
            outcome="ok" if outcome.success else f"failed {outcome.error_type}: {outcome.message}",
            ms=ms(outcome.elapsed),
        )
        return _write_metrics(request, probe.render(outcome), probe.CONTENT_TYPE)

    # -- the service itself

    @app.route("/api/health", methods=["GET"])
    def health(self, request):
        body = {"status": "ok", "version": __version__, "inFlight": self.in_flight}
        if self._worker is not None:
            body["worker"] = {"index": self._worker, "pid": os.getpid()}
        return _write_json(request, 200, body)

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


def _wants_events(request) -> bool:
    """The client asked for Server-Sent Events (C{Accept: text/event-stream})."""
    accept = (request.getHeader("accept") or "").lower()
    return any(part.split(";")[0].strip() == "text/event-stream" for part in accept.split(","))


class _EventStream:
    """
    A C{text/event-stream} answer (Server-Sent Events): the headers go out
    at once; each L{send} writes one event whose data is one line of JSON.
    Nothing is written once the client has gone.
    """

    def __init__(self, request):
        self._request = request
        self._gone = False
        request.notifyFinish().addBoth(self._finished)
        request.setResponseCode(200)
        request.setHeader("content-type", "text/event-stream; charset=utf-8")
        request.setHeader("cache-control", "no-store")
        request.setHeader("x-content-type-options", "nosniff")
        request.write(b": portofcall-xmpp\n\n")

    def _finished(self, _):
        self._gone = True

    def send(self, name: str, obj) -> None:
        if self._gone:
            return
        self._request.write(b"event: %s\ndata: %s\n\n" % (name.encode(), jsonio.dumps(obj)))


def _target(req) -> str:
    return "-" if req is None else req.target


def _credentials_refused(failed: flows.Failed) -> bool:
    """The server refused the credentials (a SASL C{<failure/>}), not a mechanism or TLS problem."""
    return failed.error.error_type == "sasl" and "saslCondition" in failed.error.extra
