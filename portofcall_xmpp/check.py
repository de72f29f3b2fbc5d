"""
C{POST /api/xmpp/check} (SPEC §8): from a domain name to a verdict.

L{check} looks the domain up as C{/srv} does, makes every endpoint
(service, target, port, address; at most L{MAX_ENDPOINTS}), probes each as
C{/connect} or C{/s2s} does (L{flows.probe}, with a request built for that
address), tests which TLS versions each address:port that spoke TLS
accepts (L{flows.tls_version}), asks once per kind (client, server),
through its first STARTTLS endpoint that answers (else a direct TLS one),
whether a stream to an unknown name is refused, and with credentials logs
in (L{flows.server_info}) through the first reachable client endpoint.
Alongside, the domain's host-meta documents are fetched (L{discover}) and
each WebSocket and BOSH URL they link to (at most L{MAX_WEB_ENDPOINTS}) is
probed without credentials (L{websocket}, L{bosh}).  L{findings} judges
what was observed.

Bounds: at most L{MAX_CONNECTIONS} connections at once; everything within
the request's C{timeout} (what has not finished by then is reported as a
timeout, the rest of the report is kept); cancelling the returned
Deferred (the HTTP client went away) stops every probe and lookup.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred, DeferredSemaphore

from . import bosh, discover, findings, flows, srv, tlsinfo, websocket
from .errors import DestinationBlocked, FlowTimeout, ProbeError, StreamError
from .resolve import ROOT, Lookups
from .validate import (
    CONNECT_TIMEOUT,
    DISCOVER_TIMEOUT,
    LOGIN_TIMEOUT,
    AuthRequest,
    ConnectRequest,
    S2SRequest,
    WebRequest,
)

#: Endpoints probed at most (SPEC §8; more: finding C{check.truncated}).
MAX_ENDPOINTS = 32
#: Connections open at once, whatever the number of endpoints.
MAX_CONNECTIONS = 8
#: The stream C{to} of the C{respectsTo} probe: a name no server can serve.
UNKNOWN_NAME = "portofcall-check.invalid"
KINDS = ("client", "server")
#: WebSocket and BOSH URLs of host-meta probed at most.
MAX_WEB_ENDPOINTS = 4


@attrs.frozen
class CheckResult:
    """What L{check} fires with: the observations, judged."""

    observations: findings.Observations
    software: findings.Software | None
    findings: tuple[findings.Finding, ...]
    elapsed: float

    @property
    def status(self) -> str:
        return findings.status(self.findings)


def plan(report: srv.SRVReport, kinds: tuple[str, ...]) -> tuple[list, bool]:
    """
    The endpoints of C{report} for the C{kinds} asked: every address of
    every record's target (or of the fallback), in the order a client tries
    them, blocked when the destination policy refuses the address.

    @return: the first L{MAX_ENDPOINTS} L{findings.CheckEndpoint}s, and
        whether there were more.
    """
    places = []
    for service in report.services:
        if service.service.key.rsplit("-", 1)[1] not in kinds:
            continue
        hosts = [(r.target, r.port, r.addresses) for r in service.records if r.target != ROOT]
        if service.fallback is not None:
            fallback = service.fallback
            hosts.append((fallback.host, fallback.port, fallback.addresses))
        for target, port, addresses in hosts:
            for address in addresses:
                places.append((service.service.key, target, port, address))
    endpoints = [
        findings.CheckEndpoint(
            id=i,
            service=key,
            target=target,
            port=port,
            address=address.address,
            blocked=not address.allowed,
        )
        for i, (key, target, port, address) in enumerate(places[:MAX_ENDPOINTS])
    ]
    return endpoints, len(places) > MAX_ENDPOINTS


class _Run:
    """One check in progress: its deadline, its connection slots, its memos."""

    def __init__(self, env: flows.Environment, req, started: float, on_endpoint):
        self.env = env
        self.req = req
        self.started = started
        self.deadline = started + req.timeout
        self.slots = DeferredSemaphore(MAX_CONNECTIONS)
        self.on_endpoint = on_endpoint
        self.versions: dict[tuple[str, int], _Shared] = {}
        self.respects: dict[str, Deferred] = {}
        self.untestable = {v: tlsinfo.version_untestable(v) for v in tlsinfo.TLS_VERSIONS}

    def remaining(self, at_most: float) -> float:
        return max(0.001, min(at_most, self.deadline - self.env.clock.seconds()))

    def _timeout(self) -> FlowTimeout:
        return FlowTimeout(
            "Connection timeout: the check did not finish within "
            f"{round(self.req.timeout * 1000)} ms"
        )

    def bounded(self, make: Callable[[float], Deferred], at_most: float) -> Deferred:
        """
        C{make(timeout)} (a flow) in a connection slot, failing with
        L{flows.Failed} (a timeout) if the check's deadline passes first,
        waiting included.
        """
        since = self.env.clock.seconds()

        async def slotted():
            await self.slots.acquire()
            try:
                return await make(self.remaining(at_most))
            finally:
                self.slots.release()

        def on_timeout(result, timeout):
            raise flows.Failed(self._timeout(), flows.Trace(self.env.clock, since, False))

        d = Deferred.fromCoroutine(slotted())
        return d.addTimeout(self.remaining(at_most), self.env.clock, onTimeoutCancel=on_timeout)

    # -- the endpoints

    def _probe_request(self, endpoint, timeout: float, domain: str | None = None, tls=None):
        fields = {
            "host": endpoint.address,
            "port": endpoint.port,
            "domain": domain or self.req.domain,
            "timeout": timeout,
            "tls": tls or ("direct" if endpoint.direct else "auto"),
            "transcript": self.req.transcript,
        }
        if endpoint.server:
            return S2SRequest(**fields)
        return ConnectRequest(**fields)

    async def endpoint(self, endpoint: findings.CheckEndpoint) -> findings.CheckEndpoint:
        if not endpoint.blocked:
            request = self._probe_request(endpoint, CONNECT_TIMEOUT)
            endpoint = attrs.evolve(endpoint, request=request)
            try:
                result = await self.bounded(
                    lambda t: flows.probe(self.env, attrs.evolve(request, timeout=t)),
                    CONNECT_TIMEOUT,
                )
            except flows.Failed as failed:
                endpoint = attrs.evolve(endpoint, failure=failed)
            else:
                endpoint = attrs.evolve(endpoint, result=result)
                if not endpoint.direct:
                    # Alongside this endpoint's TLS version tests.
                    self.start_respects_to(endpoint)
                if result.tls.negotiated:
                    endpoint = await self._with_versions(endpoint)
        if self.on_endpoint is not None:
            self.on_endpoint(endpoint)
        return endpoint

    async def _with_versions(self, endpoint):
        key = (endpoint.address, endpoint.port)
        if key not in self.versions:
            self.versions[key] = _Shared(Deferred.fromCoroutine(self._versions(endpoint)))
        versions, notes = await self.versions[key].wait()
        return attrs.evolve(endpoint, tls_versions=versions, tls_notes=notes)

    async def _versions(self, endpoint) -> tuple[dict, dict]:
        """Which TLS versions C{endpoint}'s address:port accepts, one handshake each."""
        tested = [v for v, why in self.untestable.items() if why is None]

        def attempt(version):
            return self.bounded(
                lambda t: flows.tls_version(
                    self.env,
                    endpoint.address,
                    endpoint.port,
                    self.req.domain,
                    version,
                    server=endpoint.server,
                    direct=endpoint.direct,
                    timeout=t,
                ),
                CONNECT_TIMEOUT,
            )

        waits = [attempt(v) for v in tested]
        versions = {v: None for v in tlsinfo.TLS_VERSIONS}
        notes = {v: why for v, why in self.untestable.items() if why is not None}
        try:
            answers = await srv._gather([Deferred.fromCoroutine(_outcome(d)) for d in waits])
        except BaseException:
            for d in waits:
                d.cancel()
            raise
        for version, (accepted, why) in zip(tested, answers, strict=True):
            versions[version] = accepted
            if why is not None:
                notes[version] = why
        return versions, notes

    # -- once per kind, and the login

    def start_respects_to(self, endpoint) -> None:
        """The C{respectsTo} probe of C{endpoint}'s kind, unless one was started."""
        kind = "server" if endpoint.server else "client"
        if kind not in self.respects:
            self.respects[kind] = Deferred.fromCoroutine(self.respects_to(endpoint))

    async def respects_to(self, endpoint) -> bool | None:
        """Whether a stream to L{UNKNOWN_NAME} is refused (C{None}: could not tell)."""
        tls = "direct" if endpoint.direct else "none"
        try:
            await self.bounded(
                lambda t: flows.probe(
                    self.env, self._probe_request(endpoint, t, UNKNOWN_NAME, tls)
                ),
                CONNECT_TIMEOUT,
            )
        except flows.Failed as failed:
            return True if isinstance(failed.error, StreamError) else None
        return False

    def login_request(self, endpoint) -> AuthRequest:
        return AuthRequest(
            host=endpoint.address,
            port=endpoint.port,
            domain=self.req.domain,
            tls="direct" if endpoint.direct else "auto",
            tls_verify=True,
            username=self.req.username,
            password=self.req.password,
            transcript=self.req.transcript,
        )

    async def login(self, req: AuthRequest):
        try:
            result = await self.bounded(
                lambda t: flows.server_info(self.env, attrs.evolve(req, timeout=t)),
                LOGIN_TIMEOUT,
            )
        except flows.Failed as failed:
            return None, failed
        return result, None

    # -- XEP-0156

    async def discovery(self) -> tuple[tuple | None, tuple]:
        """
        The host-meta documents (L{None} when they could not be asked for:
        the policy refused the domain, or the deadline came first), and the
        WebSocket and BOSH endpoints they link to, probed.
        """
        try:
            documents = await self.bounded(
                lambda t: Deferred.fromCoroutine(discover.host_meta(self.env, self.req.domain)),
                DISCOVER_TIMEOUT,
            )
        except (DestinationBlocked, flows.Failed):
            return None, ()
        found = discover.DiscoverResult(self.req.domain, *documents, 0.0)
        links = [("websocket", url) for url in found.websocket]
        links += [("bosh", url) for url in found.bosh]
        probes = [
            Deferred.fromCoroutine(self.web_endpoint(kind, url))
            for kind, url in links[:MAX_WEB_ENDPOINTS]
        ]
        try:
            web = await srv._gather(probes)
        except BaseException:
            for d in probes:
                d.cancel()
            raise
        return documents, tuple(web)

    async def web_endpoint(self, kind: str, url: str) -> findings.WebEndpoint:
        flow = websocket.websocket if kind == "websocket" else bosh.bosh
        req = WebRequest(url=url, domain=self.req.domain, transcript=self.req.transcript)
        try:
            result = await self.bounded(
                lambda t: flow(self.env, attrs.evolve(req, timeout=t)), CONNECT_TIMEOUT
            )
        except DestinationBlocked:
            return findings.WebEndpoint(kind, url, blocked=True)
        except flows.Failed as failed:
            return findings.WebEndpoint(kind, url, failure=failed)
        return findings.WebEndpoint(kind, url, result=result)


class _Shared:
    """One computation that several endpoints wait for; each wait may be cancelled alone."""

    def __init__(self, running: Deferred):
        self.running = running
        self._waiters: list[Deferred] = []
        self._result = None
        self._done = False
        running.addBoth(self._fan_out)

    def _fan_out(self, result) -> None:
        self._done, self._result = True, result
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(result)

    def wait(self) -> Deferred:
        if self._done:
            done: Deferred = Deferred()
            done.callback(self._result)
            return done
        waiter: Deferred = Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        return waiter


async def _outcome(d: Deferred) -> tuple[bool | None, str | None]:
    """C{(accepted, None)}, or C{(None, why)} when the question could not be asked."""
    try:
        return await d, None
    except flows.Failed as failed:
        return None, failed.error.message


async def _check(env: flows.Environment, req, started: float, on_endpoint) -> CheckResult:
    run = _Run(env, req, started, on_endpoint)
    lookup = srv.lookup(
        env.srv_resolver, env.resolver, req.domain, clock=env.clock, policy=env.policy
    )
    lookup.addTimeout(run.remaining(req.timeout), env.clock, onTimeoutCancel=_dns_timeout)
    report = await lookup
    planned, truncated = plan(report, req.services)
    lookups = Lookups(env.resolver, env.srv_resolver)
    targets = sorted({r.target for s in report.services for r in s.records if r.target != ROOT})
    alias_waits = [
        lookups.alias(t).addTimeout(
            run.remaining(req.timeout), env.clock, onTimeoutCancel=lambda result, timeout: None
        )
        for t in targets
    ]
    tasks = [Deferred.fromCoroutine(run.endpoint(e)) for e in planned]
    discovering = Deferred.fromCoroutine(run.discovery())
    later: list[Deferred] = []
    try:
        endpoints = await srv._gather(tasks)
        # Once per kind: through its first STARTTLS endpoint that answered
        # (started as it answered), else its first direct TLS one.
        for endpoint in endpoints:
            if endpoint.reachable:
                run.start_respects_to(endpoint)
        respects = {kind: None for kind in req.services}
        waits = dict(run.respects)
        client = next((e for e in endpoints if e.reachable and not e.server), None)
        login_request = None
        if req.username is not None and client is not None:
            login_request = run.login_request(client)
            waits["login"] = Deferred.fromCoroutine(run.login(login_request))
        later = list(waits.values())
        answers = dict(zip(waits, await srv._gather(later), strict=True))
        login, failure = answers.pop("login", (None, None))
        respects.update(answers)
        aliases = await srv._gather(alias_waits)
        documents, web = await discovering
    except BaseException:
        versions = [shared.running for shared in run.versions.values()]
        waits = [*tasks, *versions, *run.respects.values(), *later, *alias_waits, discovering]
        for d in waits:
            d.cancel()
        # Awaited last: its failure (the cancellation) is nobody else's to consume.
        discovering.addErrback(lambda _: None)
        raise
    finally:
        lookups.close()
    observations = findings.Observations(
        domain=req.domain,
        kinds=req.services,
        dns=report,
        endpoints=tuple(endpoints),
        truncated=truncated,
        aliases={t: a for t, a in zip(targets, aliases, strict=True) if a is not None},
        respects_to=respects,
        login=login,
        login_failure=failure,
        login_request=login_request,
        discovery=documents,
        web=web,
    )
    found = findings.software(observations)
    return CheckResult(
        observations=observations,
        software=found,
        findings=findings.evaluate(observations, found),
        elapsed=env.clock.seconds() - started,
    )


def _dns_timeout(result, timeout):
    raise FlowTimeout(
        f"Connection timeout: the DNS lookups did not finish within {round(timeout * 1000)} ms"
    )


def check(
    env: flows.Environment,
    req,
    started: float | None = None,
    on_endpoint: Callable[[findings.CheckEndpoint], None] | None = None,
) -> Deferred:
    """
    Check C{req.domain} (SPEC §8).

    @param req: a C{validate.CheckRequest}.
    @param on_endpoint: called with each L{findings.CheckEndpoint} as it
        finishes (the Server-Sent Events of the web layer).
    @return: a Deferred firing with a L{CheckResult}, or failing with
        L{flows.Failed} when the check could not run at all (the DNS lookups
        failed as a whole or outlasted the timeout).  Cancelling it stops
        every probe and lookup of the check.
    """
    started = env.clock.seconds() if started is None else started
    trace = flows.Trace(env.clock, started, False)

    def failed(failure):
        failure.trap(ProbeError)
        raise flows.Failed(failure.value, trace)

    return Deferred.fromCoroutine(_check(env, req, started, on_endpoint)).addErrback(failed)
