"""
The probes: each opens one connection (or none, for L{srv}), walks as far
through RFC 6120/6121 as it was asked, and returns a frozen result -- or
fails with L{Failed}, which carries the L{ProbeError} and the phases,
timings and transcript reached so far.

 - L{probe}: stream header and features, client (C{/api/xmpp/connect}) or
   server-to-server (C{/api/xmpp/s2s}); STARTTLS when offered,
 - L{login}: SASL, stream restart, resource binding, session,
 - L{roster}: L{login}, then a C{jabber:iq:roster} get,
 - L{message}: L{login}, then one message and a listening window,
 - L{server_info}: L{login}, then disco#info, software version and a ping,
 - L{ping}: L{login}, then XEP-0199 pings to a JID or a domain,
 - L{component}: a XEP-0114 component stream and, with a secret, its
   handshake,
 - L{srv}: the SRV records of a domain and their targets' addresses.

A L{_Session} is one connection; it composes the stream steps (here), the
TLS step (L{portofcall_xmpp.tlsstep}) and the SASL step
(L{portofcall_xmpp.saslstep}).  Each public function returns a Deferred and
applies the overall timeout to the whole coroutine; cancelling that Deferred
(an HTTP client that went away) closes the connection too.  Times are
seconds on the injected clock.
"""

from __future__ import annotations

import hashlib
import os
import statistics
from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.words.xish import domish

from . import route, tlsinfo
from .errors import (
    BindFailure,
    DestinationBlocked,
    FlowTimeout,
    ProbeError,
    ProtocolViolation,
    ReadTimeout,
    SASLFailure,
    TLSFailure,
)
from .parse import (
    NS_BIND,
    NS_CLIENT,
    NS_COMPONENT,
    NS_DISCO_INFO,
    NS_PING,
    NS_RECEIPTS,
    NS_ROSTER,
    NS_SERVER,
    NS_SESSION,
    NS_VERSION,
    Condition,
    DiscoInfo,
    Features,
    Roster,
    Software,
    bound_jid,
    child,
    inner_xml,
    is_features,
    parse_disco_info,
    parse_features,
    parse_roster,
    parse_stanza_error,
    parse_version,
    stanza_error,
)
from .protocol import Transcript, XMPPClientProtocol
from .saslstep import SASLStep
from .stream import Limits, StreamHeader
from .tlsstep import TLSInfo, TLSStep


@attrs.frozen
class Environment:
    """
    What every probe needs from the service.

    @ivar connect: C{connect(host, port, protocol, tls_context=None) ->
        Deferred[protocol]}; in production it resolves, checks the
        destination policy, and dials (L{connect.Connector.connect}).
    @ivar clock: where time comes from.
    @ivar read_timeout: seconds for each wait for one reply.
    @ivar limits: what one server may send.
    @ivar to_thread: C{f -> Deferred} running CPU-heavy steps (SCRAM key
        derivation) off the reactor thread: C{deferToThread} in production;
        C{None} runs them inline (tests).
    @ivar trust: the roots certificates are verified against; the service
        passes the system store plus C{--ca-file}.  By default none, so that
        no certificate verifies.
    @ivar resolver: host name to addresses (for SRV targets: L{srv}, and a
        probe given a domain alone, L{route}).
    @ivar srv_resolver: SRV records (L{srv}, L{route}).
    @ivar policy: the destination policy (L{srv} marks addresses with it;
        L{route} checks SRV targets' addresses with it).
    """

    connect: Callable
    clock: IReactorTime
    read_timeout: float = 5.0
    limits: Limits = attrs.Factory(Limits)
    to_thread: Callable | None = None
    trust: tlsinfo.Trust = attrs.Factory(lambda: tlsinfo.Trust(system=False))
    resolver: object = None
    srv_resolver: object = None
    policy: object = None


class Trace:
    """The phases, timings, warnings and transcript of one probe, so far."""

    def __init__(self, clock: IReactorTime, started: float, transcript: bool):
        self._clock = clock
        self.started = started
        self.phases: list[str] = []
        self.timings: dict[str, float] = {}
        self.warnings: list[str] = []
        self.transcript = Transcript(clock, started) if transcript else None

    def elapsed(self) -> float:
        return self._clock.seconds() - self.started

    def phase(self, name: str) -> None:
        self.phases.append(name)
        self.timings[name] = self.elapsed()

    def warn(self, warning: str) -> None:
        if warning not in self.warnings:
            self.warnings.append(warning)

    def entries(self) -> tuple:
        """The transcript so far (empty when none was asked for)."""
        return tuple(self.transcript.entries) if self.transcript else ()


@attrs.frozen
class ConnectResult:
    """
    The outcome of L{probe}.

    @ivar host: the host (or SRV target) connected to, with C{port}.
    @ivar resolved: how that place was found (L{route.Resolution}).
    @ivar timings: seconds from the start to each phase reached
        (C{tls_connected}, C{starttls_upgraded}); not in the JSON answer.
    """

    host: str
    port: int
    domain: str
    header: StreamHeader
    features: Features
    tls: TLSInfo
    raw: str
    elapsed: float
    warnings: tuple[str, ...]
    transcript: tuple
    resolved: route.Resolution
    timings: dict = attrs.Factory(dict)


@attrs.frozen
class Delivery:
    """What became of the message L{message} sent."""

    to: str
    body: str
    id: str
    error_xml: str | None
    error: Condition | None
    receipt_requested: bool
    receipt_after: float | None


@attrs.frozen
class ServerInfo:
    """
    What L{server_info} learnt: each part, or why it is missing (a
    condition of an iq error, or words for a silent server).
    """

    disco: DiscoInfo | None
    disco_error: str | None
    software: Software | None
    software_error: str | None
    ping: float | None
    ping_error: str | None


@attrs.frozen
class Ping:
    """
    One XEP-0199 ping of L{ping}.

    @ivar result: C{"pong"} (an iq result), C{"error"} (an iq error: its
        C{error}), or C{"timeout"} (no answer within the read timeout).
    @ivar rtt: seconds from sending to the answer; L{None} for a timeout.
    """

    result: str
    rtt: float | None
    error: Condition | None = None


@attrs.frozen
class Pings:
    """What L{ping} sent (C{count} asked for, to C{target}) and what came back."""

    target: str
    count: int
    pings: tuple[Ping, ...]

    def rtts(self) -> tuple[float, ...]:
        """The round trips of the pongs, in the order sent."""
        return tuple(p.rtt for p in self.pings if p.result == "pong")

    def summary(self) -> tuple[float, float, float] | None:
        """C{(min, median, max)} of the pongs' round trips, or L{None} without pongs."""
        rtts = self.rtts()
        if not rtts:
            return None
        return min(rtts), statistics.median(rtts), max(rtts)


@attrs.frozen
class AuthResult:
    """
    The outcome of L{login}, L{roster}, L{message} and L{server_info}; each
    of the last three fills its own part (C{roster}, C{delivery},
    C{server_info}).
    """

    host: str
    port: int
    domain: str
    jid: str
    phases: tuple[str, ...]
    timings: dict
    features: Features
    sasl_mechanisms: tuple[str, ...]
    mechanism: str
    channel_binding: str | None
    tls: TLSInfo
    warnings: tuple[str, ...]
    elapsed: float
    transcript: tuple
    resolved: route.Resolution
    roster: Roster | None = None
    delivery: Delivery | None = None
    server_info: ServerInfo | None = None
    pings: Pings | None = None


class Failed(Exception):
    """
    A probe failed: C{error} is the L{ProbeError}; the rest is what the
    probe had reached (for the JSON answer).

    @ivar host: where the probe connected or was connecting, with C{port}
        (a domain alone that reached no target: the domain and the default
        port); L{None} for L{srv}, which connects to nothing.
    @ivar resolved: how it looked for its server (L{route.Resolution}), or
        L{None} (L{srv} connects to nothing).
    """

    def __init__(
        self,
        error,
        trace,
        raw=None,
        tls=None,
        mechanism=None,
        channel_binding=None,
        *,
        host=None,
        port=None,
        resolved=None,
    ):
        super().__init__(str(error))
        self.error = error
        self.host = host
        self.port = port
        self.resolved = resolved
        self.tls = tls
        self.mechanism = mechanism
        self.channel_binding = channel_binding
        self.warnings = tuple(trace.warnings)
        self.phases = tuple(trace.phases)
        self.timings = dict(trace.timings)
        self.elapsed = trace.elapsed()
        self.transcript = trace.entries()
        self.raw = raw


def _timed(coro, env: Environment, total: float, trace: Trace, session: _Session) -> Deferred:
    """
    Run the flow coroutine under the overall timeout; turn failures into
    L{Failed} carrying what was reached.
    """

    def on_timeout(result, timeout):
        raise FlowTimeout(
            f"Connection timeout: the probe did not finish within {round(total * 1000)} ms"
        )

    def failed(failure):
        resolved = session.dialer.resolution()
        if failure.check(ProbeError):
            host, port = session.where()
            raise Failed(
                failure.value,
                trace,
                session.proto.raw(),
                session.tls.info(),
                session.sasl.mechanism,
                session.sasl.binding,
                host=host,
                port=port,
                resolved=resolved,
            )
        if failure.check(DestinationBlocked):
            raise DestinationBlocked(failure.value.message, resolved=resolved)
        return failure

    d = Deferred.fromCoroutine(coro)
    d.addTimeout(total, env.clock, onTimeoutCancel=on_timeout)
    return d.addErrback(failed)


class _Session:
    """
    One connection walked through the stream steps; shared by the flows.

    @ivar host: where it connected (the host, an SRV target or the domain),
        with C{port}; until then the request's host (L{None} for a domain
        alone).
    @ivar mode: the TLS mode in force: the request's, or C{"direct"} for an
        C{xmpps-} SRV record.
    @ivar dialer: its L{route.Dialer} (which also records how it connected).
    @ivar tls: its L{TLSStep}.
    @ivar sasl: its L{SASLStep}.
    """

    def __init__(
        self,
        env: Environment,
        trace: Trace,
        destination: route.Destination,
        *,
        from_: str | None = None,
        tls_version: str | None = None,
        namespace: str | None = None,
    ):
        server = destination.server
        self.env = env
        self.trace = trace
        self.host = destination.host
        self.port = destination.port
        self.mode = destination.tls
        self.domain = domain = destination.domain
        self.from_ = from_
        # A server-to-server stream (jabber:server), a client one, or the
        # namespace asked for (a component's).
        namespace = namespace or (NS_SERVER if server else NS_CLIENT)
        self.proto = XMPPClientProtocol(
            env.clock, env.limits, trace.transcript, namespace=namespace
        )
        self.tls = TLSStep(
            self.proto,
            trace,
            trust=env.trust,
            clock=env.clock,
            read_timeout=env.read_timeout,
            domain=domain,
            server=server,
            version=tls_version,
        )
        self.sasl = SASLStep(self.proto, trace, env.read_timeout, env.to_thread)
        self.dialer = route.Dialer(env, destination, self.tls.direct_context)

    def where(self) -> tuple[str, int]:
        """
        Where the session connected, or was last trying to (an SRV target),
        or would go: for the failure's C{host} and C{port}.
        """
        if self.host is None:
            attempts = self.dialer.resolution().attempts
            if attempts:
                return attempts[-1].target, attempts[-1].port
            return self.domain, self.port
        return self.host, self.port

    async def open(self) -> tuple[StreamHeader, Features]:
        """
        Connect where the request says (L{route.Dialer}), with TLS from the
        first byte for C{tls: "direct"} or an C{xmpps-} record (XEP-0368),
        send our header, read the server's header and features.
        """
        connected = await self.dialer.dial(self.proto)
        self.host, self.port = connected.host, connected.port
        if connected.direct:
            self.mode = "direct"
            await self.tls.direct_connected(connected.context)
        header, features = await self.open_stream()
        self.tls.offered(features)
        return header, features

    async def secure(self, features: Features, tls_mode: str, *, verify: bool) -> Features:
        """
        STARTTLS as C{tls_mode} says (L{TLSStep.starttls}); with C{verify},
        stop unless the certificate verifies; then, after STARTTLS, the new
        stream.

        @return: the features to go on with (those after STARTTLS, if any).
        """
        upgraded = await self.tls.starttls(features, tls_mode)
        if verify:
            self.tls.check_certificate()
        if not upgraded:
            return features
        _, features = await self.open_stream()
        self.tls.reopened(features)
        return features

    async def open_stream(self) -> tuple[StreamHeader, Features]:
        self.proto.send_header(self.domain, self.from_)
        header = await self.proto.read_header(self.env.read_timeout)
        features = await self.proto.read_element(
            _expect_features, "stream features", self.env.read_timeout
        )
        return header, parse_features(features)

    async def authenticate(self, features: Features, req) -> str:
        """
        SASL with the channel binding the TLS step chooses, retried once with
        the TLS 1.3 C{tls-unique} fallback when that step says so.

        @return: the mechanism's name.
        """
        binding = self.tls.binding(features, req.channel_binding)

        async def attempt(binding):
            return await self.sasl.authenticate(
                features,
                req.username,
                req.password,
                req.mechanism,
                binding=None if binding is None else (binding.kind, binding.data),
                encrypted=self.tls.negotiated,
                clear_allowed=req.tls == "none",
            )

        try:
            return await attempt(binding)
        except SASLFailure as e:
            retry = self.tls.unique_fallback(binding, self.sasl.binding, e)
            if retry is None:
                raise
            return await attempt(retry)

    async def restart(self) -> Features:
        self.proto.restart_stream()
        _, features = await self.open_stream()
        self.trace.phase("stream_restarted")
        return features

    async def iq(
        self,
        kind: str,
        id_: str,
        payload: domish.Element,
        what: str,
        to: str | None = None,
        *,
        large: bool = False,
    ):
        """
        Send an iq and wait for its result or error (RFC 6120 §8.2.3); with
        C{large}, the reply may be as large as C{--max-stanza-bytes}.
        """
        iq = domish.Element((None, "iq"))
        iq["type"] = kind
        iq["id"] = id_
        if to is not None:
            iq["to"] = to
        iq.addChild(payload)
        self.proto.send(iq)

        def reply(element):
            return (
                element.name == "iq"
                and element.getAttribute("id") == id_
                and element.getAttribute("type") in ("result", "error")
            )

        return await self.proto.read_element(reply, what, self.env.read_timeout, large=large)

    async def bind(self, features: Features, resource: str) -> str:
        if not features.bind:
            raise BindFailure(
                "Server did not offer resource binding after authentication "
                f"(features: {', '.join(features.features) or 'none'})"
            )
        bind = domish.Element((NS_BIND, "bind"))
        bind.addElement("resource", content=resource)
        result = await self.iq("set", "bind1", bind, "resource binding reply")
        if result["type"] == "error":
            raise _iq_failure(BindFailure, "Resource binding failed", result)
        jid = bound_jid(result)
        if jid is None:
            raise BindFailure("Resource binding result carried no JID")
        self.trace.phase("resource_bound")
        if features.session:
            session = domish.Element((NS_SESSION, "session"))
            result = await self.iq("set", "sess1", session, "session reply")
            if result["type"] == "error":
                raise _iq_failure(BindFailure, "Session establishment failed", result)
            self.trace.phase("session_established")
        return jid

    def close(self, polite=True):
        self.proto.close(polite)


def _iq_failure(cls, what, iq):
    condition = parse_stanza_error(iq)
    extra = {"errorCondition": attrs.asdict(condition)}
    return cls(f"{what}: {condition.condition}", extra=extra)


def _expect_features(element) -> bool:
    if is_features(element):
        return True
    raise ProtocolViolation(
        f"Expected <stream:features>, got <{element.name} xmlns='{element.uri or ''}'>"
    )


# -- /connect, /s2s


def probe(env: Environment, req, started: float | None = None) -> Deferred:
    """
    Open a stream to C{req.host}, read the header and the features; with
    C{tls: auto}, negotiate STARTTLS when offered and read the features after.

    @param req: a C{validate.ConnectRequest} (a client stream), or a
        C{validate.S2SRequest} (a server-to-server stream, with C{from_}).
    @return: a Deferred firing with a L{ConnectResult}, or failing with
        L{Failed} (whose C{raw} holds what the server sent).
    """
    trace = Trace(env.clock, env.clock.seconds() if started is None else started, req.transcript)
    server = req.server_to_server
    session = _Session(
        env,
        trace,
        route.Destination(req.host, req.port, req.domain, req.tls, server),
        from_=req.from_ if server else None,
    )

    async def run():
        try:
            header, features = await session.open()
            raw = session.proto.raw()
            if session.mode == "auto":
                await session.secure(features, "auto", verify=False)
        finally:
            session.close()
        return ConnectResult(
            host=session.host,
            port=session.port,
            domain=req.domain,
            header=header,
            features=features,
            tls=session.tls.info(),
            raw=raw,
            elapsed=trace.elapsed(),
            warnings=tuple(trace.warnings),
            transcript=trace.entries(),
            resolved=session.dialer.resolution(),
            timings=dict(trace.timings),
        )

    return _timed(run(), env, req.timeout, trace, session)


def tls_version(
    env: Environment,
    host: str,
    port: int,
    domain: str,
    version: str,
    *,
    server: bool,
    direct: bool,
    timeout: float,
) -> Deferred:
    """
    One handshake offering only TLS C{version} (L{tlsinfo.TLS_VERSIONS}) to
    C{host:port}: direct TLS (with ALPN), or a stream to C{domain} and
    STARTTLS.  Nothing else is sent; the connection is closed at once.

    @return: a Deferred firing with whether the server accepted C{version}
        (a handshake that fails is C{False}), or failing with L{Failed} when
        the question could not be asked (no connection, no STARTTLS, a
        timeout).
    """
    trace = Trace(env.clock, env.clock.seconds(), False)
    destination = route.Destination(host, port, domain, "direct" if direct else "auto", server)
    session = _Session(env, trace, destination, tls_version=version)

    async def run():
        try:
            if direct:
                connected = await session.dialer.dial(session.proto)
                await session.tls.direct_connected(connected.context)
            else:
                _, features = await session.open()
                if not features.starttls:
                    raise TLSFailure("STARTTLS is not offered, so no TLS version was tested")
                try:
                    await session.tls.starttls(features, "auto")
                except TLSFailure:
                    return False
        except TLSFailure:
            if not direct:
                raise
            return False
        finally:
            session.close(polite=False)
        return session.tls.info().report.protocol == version

    return _timed(run(), env, timeout, trace, session)


# -- /login, /roster, /message, /server-info


def login_then(env: Environment, req, started, body) -> Deferred:
    """
    Log in as C{req} says, then run C{body(session)} (if any: an C{async}
    function of the L{_Session}), whose dict fills the rest of the
    L{AuthResult}.
    """
    trace = Trace(env.clock, env.clock.seconds() if started is None else started, req.transcript)
    session = _Session(env, trace, route.Destination(req.host, req.port, req.domain, req.tls))

    async def run():
        try:
            _, features = await session.open()
            trace.phase("stream_opened")
            features = await session.secure(features, session.mode, verify=req.tls_verify)
            offered = features.mechanisms
            mechanism = await session.authenticate(features, req)
            features = await session.restart()
            jid = await session.bind(features, req.resource)
            parts = await body(session) if body else {}
        finally:
            session.close()
        return AuthResult(
            host=session.host,
            port=session.port,
            domain=req.domain,
            jid=jid,
            phases=tuple(trace.phases),
            timings=dict(trace.timings),
            features=features,
            sasl_mechanisms=offered,
            mechanism=mechanism,
            channel_binding=session.sasl.binding,
            tls=session.tls.info(),
            warnings=tuple(trace.warnings),
            elapsed=trace.elapsed(),
            transcript=trace.entries(),
            resolved=session.dialer.resolution(),
            **parts,
        )

    return _timed(run(), env, req.timeout, trace, session)


def login(env: Environment, req, started: float | None = None) -> Deferred:
    """
    Log in: stream, TLS as C{req.tls} says, SASL, restart, bind, session
    when advertised.

    @param req: a C{validate.AuthRequest}.
    @return: a Deferred firing with an L{AuthResult}, or failing with
        L{Failed}.
    """
    return login_then(env, req, started, None)


def roster(env: Environment, req, started: float | None = None) -> Deferred:
    """L{login}, then fetch the roster (RFC 6121 §2.1.3)."""

    async def body(session):
        query = domish.Element((NS_ROSTER, "query"))
        reply = await session.iq("get", "roster1", query, "roster", large=True)
        if reply["type"] == "error":
            raise _iq_failure(ProtocolViolation, "Roster request failed", reply)
        got = parse_roster(reply)
        session.trace.phase("roster_received")
        return {"roster": got}

    return login_then(env, req, started, body)


def server_info(env: Environment, req, started: float | None = None) -> Deferred:
    """
    L{login}, then ask the server about itself: service discovery (XEP-0030,
    with XEP-0128 forms and XEP-0157 contact addresses), software version
    (XEP-0092) and a ping round trip (XEP-0199).  A query the server answers
    with an error, or not at all within the read timeout, is reported as
    missing with the reason; the probe goes on with the next one.

    @param req: a C{validate.AuthRequest}.
    """

    async def body(session):
        async def ask(id_, payload, what, phase):
            try:
                reply = await session.iq("get", id_, payload, what, to=session.domain)
            except ReadTimeout as e:
                return None, e.message
            if reply["type"] == "error":
                return None, parse_stanza_error(reply).condition
            session.trace.phase(phase)
            return reply, None

        query = domish.Element((NS_DISCO_INFO, "query"))
        reply, disco_error = await ask("disco1", query, "disco#info reply", "disco_info_received")
        disco = parse_disco_info(reply) if reply is not None else None
        query = domish.Element((NS_VERSION, "query"))
        reply, version_error = await ask("version1", query, "version reply", "version_received")
        software = parse_version(reply) if reply is not None else None
        sent = session.trace.elapsed()
        reply, ping_error = await ask(
            "ping1", domish.Element((NS_PING, "ping")), "ping reply", "ping_received"
        )
        ping = session.trace.elapsed() - sent if reply is not None else None
        return {
            "server_info": ServerInfo(disco, disco_error, software, version_error, ping, ping_error)
        }

    return login_then(env, req, started, body)


def ping(env: Environment, req, started: float | None = None) -> Deferred:
    """
    L{login}, then C{req.count} XEP-0199 pings to C{req.to} (a JID or a
    domain; L{None}: the server's own domain), one at a time, each waiting
    up to the read timeout.  An error answer (a remote domain the server
    cannot reach: C{remote-server-not-found}, C{remote-server-timeout}) and
    no answer at all are results, not failures.  A ping is sent only while
    a whole read timeout is left of C{timeout}; the pings not sent are
    named in a warning.

    @param req: a C{validate.PingRequest}.
    """
    auth = req.auth

    async def body(session):
        to = req.to or session.domain
        trace = session.trace
        pings = []
        for n in range(1, req.count + 1):
            if auth.timeout - trace.elapsed() < env.read_timeout:
                trace.warn(
                    f"{req.count - n + 1} of {req.count} pings not sent: less than the read "
                    "timeout was left of the overall timeout"
                )
                break
            sent = trace.elapsed()
            payload = domish.Element((NS_PING, "ping"))
            try:
                reply = await session.iq("get", f"ping{n}", payload, "ping reply", to=to)
            except ReadTimeout:
                pings.append(Ping("timeout", None))
                continue
            rtt = trace.elapsed() - sent
            if "ping_received" not in trace.timings:
                trace.phase("ping_received")
            if reply["type"] == "error":
                pings.append(Ping("error", rtt, parse_stanza_error(reply)))
            else:
                pings.append(Ping("pong", rtt))
        return {"pings": Pings(to, req.count, tuple(pings))}

    return login_then(env, auth, started, body)


def srv(env: Environment, req, started: float | None = None) -> Deferred:
    """
    The SRV records of C{req.domain} (SPEC §7), in the order a client tries
    them, with their targets' addresses, within C{req.timeout}: when it
    expires, every lookup still running is stopped.

    @param req: a C{validate.SRVRequest}.
    @return: a Deferred firing with a C{srv.SRVReport}, or failing with
        L{Failed} (C{dns}, or C{timeout}: C{"Connection timeout: the SRV
        lookup did not finish within N ms"}).
    """
    from . import srv as srv_lookup

    trace = Trace(env.clock, env.clock.seconds() if started is None else started, False)
    d = srv_lookup.lookup(
        env.srv_resolver, env.resolver, req.domain, clock=env.clock, policy=env.policy
    )

    def on_timeout(result, timeout):
        raise FlowTimeout(
            "Connection timeout: the SRV lookup did not finish within "
            f"{round(req.timeout * 1000)} ms"
        )

    def failed(failure):
        failure.trap(ProbeError)
        raise Failed(failure.value, trace)

    d.addTimeout(req.timeout, env.clock, onTimeoutCancel=on_timeout)
    return d.addErrback(failed)


def message_id() -> str:
    """A fresh message id: C{poc_} and 16 random hex digits."""
    return "poc_" + os.urandom(8).hex()


def message(env: Environment, req, started: float | None = None, make_id=message_id) -> Deferred:
    """
    L{login}, send one message, then listen up to C{req.wait} seconds for
    an error reply to it (and, when requested, a XEP-0184 receipt).  The
    listening window is cut short so that the probe ends within its overall
    timeout.

    @param req: a C{validate.MessageRequest}.
    """
    auth = req.auth

    async def body(session):
        id_ = make_id()
        stanza = domish.Element((None, "message"))
        stanza["to"] = req.recipient
        stanza["type"] = req.type
        stanza["id"] = id_
        stanza.addElement("body", content=req.message)
        if req.receipt:
            stanza.addElement((NS_RECEIPTS, "request"))
        session.proto.send(stanza)
        session.trace.phase("message_sent")
        sent_at = session.trace.elapsed()
        margin = 0.25
        window = min(req.wait, max(0.0, auth.timeout - sent_at - margin))
        if window < req.wait:
            session.trace.warn(
                f"waitMs shortened to {round(window * 1000)} ms to fit the overall timeout"
            )

        def relevant(element):
            if element.getAttribute("id") == id_ and element.getAttribute("type") == "error":
                return True
            if req.receipt and element.name == "message":
                received = child(element, NS_RECEIPTS, "received")
                return received is not None and received.getAttribute("id") == id_
            return False

        error_xml = condition = receipt_after = None
        if window > 0:
            try:
                element = await session.proto.read_element(
                    relevant, "a reply to the message", window
                )
            except ReadTimeout:
                element = None
            if element is None:
                pass
            elif element.getAttribute("type") == "error":
                err = stanza_error(element)
                error_xml = inner_xml(err) if err is not None else ""
                condition = parse_stanza_error(element)
            else:
                receipt_after = session.trace.elapsed() - sent_at
        return {
            "delivery": Delivery(
                to=req.recipient,
                body=req.message,
                id=id_,
                error_xml=error_xml,
                error=condition,
                receipt_requested=req.receipt,
                receipt_after=receipt_after,
            )
        }

    return login_then(env, auth, started, body)


# -- /component


def handshake_digest(stream_id: str, secret: str) -> str:
    """XEP-0114: the lower-case hex SHA-1 of the stream id and the secret (UTF-8)."""
    return hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()


@attrs.frozen
class ComponentResult:
    """
    The outcome of L{component}.

    @ivar authenticated: the server accepted our handshake; C{False} when
        no secret was given (the stream alone was probed).
    """

    host: str
    port: int
    component_name: str
    header: StreamHeader
    authenticated: bool
    phases: tuple[str, ...]
    timings: dict
    raw: str
    elapsed: float
    transcript: tuple
    resolved: route.Resolution


def _expect_handshake(element) -> bool:
    """The server's C{<handshake/>}; features (a version 1.0 stream) are skipped."""
    if element.uri == NS_COMPONENT and element.name == "handshake":
        return True
    if is_features(element):
        return False
    raise ProtocolViolation(
        f"Expected <handshake/>, got <{element.name} xmlns='{element.uri or ''}'>"
    )


_NO_STREAM_ID = "The server's stream header carried no id, so no handshake can be sent"


async def _refusal(proto: XMPPClientProtocol, timeout: float) -> None:
    """
    A header without an id announces a refused stream (Prosody sends
    C{id=''} and then C{<host-unknown/>}): wait up to C{timeout} for the
    stream error that says why, else fail with L{ProtocolViolation}.
    """

    def anything(element):
        raise ProtocolViolation(_NO_STREAM_ID)

    try:
        await proto.read_element(anything, "stream error", timeout)
    except ReadTimeout:
        pass
    raise ProtocolViolation(_NO_STREAM_ID)


def component(env: Environment, req, started: float | None = None) -> Deferred:
    """
    Open a XEP-0114 C{jabber:component:accept} stream to C{req.host} for
    C{req.component_name} and read the server's header; with C{req.secret},
    send the handshake and wait for the server's C{<handshake/>}.  A refused
    handshake is the server's stream error (C{not-authorized}); a header
    without a stream id (an unknown component name) is followed by one
    (C{host-unknown}), which is waited for.  The handshake's digest
    appears only as C{[redacted]} in the transcript.

    @param req: a C{validate.ComponentRequest}.
    @return: a Deferred firing with a L{ComponentResult}, or failing with
        L{Failed}.
    """
    trace = Trace(env.clock, env.clock.seconds() if started is None else started, req.transcript)
    destination = route.Destination(req.host, req.port, req.component_name, "none")
    session = _Session(env, trace, destination, namespace=NS_COMPONENT)
    proto = session.proto

    async def run():
        try:
            connected = await session.dialer.dial(proto)
            session.host, session.port = connected.host, connected.port
            proto.send_header(req.component_name)
            header = await proto.read_header(env.read_timeout)
            trace.phase("stream_opened")
            if not header.id:
                await _refusal(proto, env.read_timeout)
            if req.secret is not None:
                handshake = domish.Element((NS_COMPONENT, "handshake"))
                handshake.addContent(handshake_digest(header.id, req.secret))
                proto.send(handshake)
                trace.phase("handshake_sent")
                await proto.read_element(_expect_handshake, "handshake reply", env.read_timeout)
                trace.phase("authenticated")
            raw = proto.raw()
        finally:
            session.close()
        return ComponentResult(
            host=session.host,
            port=session.port,
            component_name=req.component_name,
            header=header,
            authenticated=req.secret is not None,
            phases=tuple(trace.phases),
            timings=dict(trace.timings),
            raw=raw,
            elapsed=trace.elapsed(),
            transcript=trace.entries(),
            resolved=session.dialer.resolution(),
        )

    return _timed(run(), env, req.timeout, trace, session)
