"""
The probes: each opens one connection, walks as far through RFC 6120/6121 as
it was asked, and returns a frozen result -- or fails with a L{ProbeError}
that carries the phases, timings and transcript reached so far.

 - L{probe}: stream header and features (C{/api/xmpp/connect}),
 - L{login}: SASL, stream restart, resource binding, session,
 - L{roster}: L{login}, then a C{jabber:iq:roster} get,
 - L{message}: L{login}, then one message and a listening window.

Each public function returns a Deferred and applies the overall timeout to
the whole coroutine; cancelling that Deferred (an HTTP client that went away)
closes the connection too.  Times are seconds on the injected clock.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import os
from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.words.xish import domish

from . import sasl, tlsinfo
from .errors import (
    BindFailure,
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
    NS_DISCO_INFO,
    NS_PING,
    NS_RECEIPTS,
    NS_ROSTER,
    NS_SASL,
    NS_SERVER,
    NS_SESSION,
    NS_TLS,
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
    parse_sasl_failure,
    parse_stanza_error,
    parse_version,
    stanza_error,
    text_of,
)
from .protocol import Transcript, XMPPClientProtocol
from .stream import Limits, StreamHeader

WARN_PLAINTEXT_CREDENTIALS = "credentials sent without TLS"
TLS13_UNIQUE_WARNING = (
    "tls-unique is undefined on TLS 1.3 (RFC 8446, RFC 9266); sent the client Finished "
    "message, as ejabberd 23.01 expects"
)


@attrs.frozen
class Environment:
    """
    What every probe needs from the service.

    @ivar connect: C{connect(host, port, protocol) -> Deferred[protocol]};
        in production it resolves, checks the destination policy, and dials.
    @ivar clock: where time comes from.
    @ivar read_timeout: seconds for each wait for one reply.
    @ivar limits: what one server may send.
    @ivar to_thread: C{f -> Deferred} running CPU-heavy steps (SCRAM key
        derivation) off the reactor thread: C{deferToThread} in production;
        C{None} runs them inline (tests).
    @ivar trust: the roots certificates are verified against (the system
        store plus C{--ca-file}); C{None}: the system store, loaded on first use.
    @ivar resolver: host name to addresses (for L{srv} targets).
    @ivar srv_resolver: SRV records (L{srv}).
    @ivar policy: the destination policy (L{srv} marks addresses with it).
    """

    connect: Callable
    clock: IReactorTime
    read_timeout: float = 5.0
    limits: Limits = attrs.Factory(Limits)
    to_thread: Callable | None = None
    trust: tlsinfo.Trust | None = None
    resolver: object = None
    srv_resolver: object = None
    policy: object = None

    def tls_client(self, domain: str, alpn=None):
        """A TLS client creator for C{domain} (SNI, ALPN; verification after)."""
        trust = self.trust if self.trust is not None else _system_trust()
        return tlsinfo.client_context(trust, domain, alpn=alpn)

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.UTC)


_SYSTEM_TRUST = []


def _system_trust() -> tlsinfo.Trust:
    if not _SYSTEM_TRUST:
        _SYSTEM_TRUST.append(tlsinfo.Trust())
    return _SYSTEM_TRUST[0]


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


@attrs.frozen
class TLSInfo:
    """
    What the server said about TLS, and what became of it.

    @ivar available: STARTTLS offered (or the connection is direct TLS).
    @ivar required: C{<required/>} inside C{<starttls>}.
    @ivar report: protocol, cipher and certificate, once negotiated.
    @ivar features: the features block after STARTTLS (not for direct TLS).
    """

    available: bool
    required: bool
    negotiated: bool = False
    direct: bool = False
    report: tlsinfo.TLSReport | None = None
    features: Features | None = None

    def warnings(self) -> tuple[str, ...]:
        if self.report is None or self.report.certificate is None:
            return ()
        return tuple(self.report.certificate.warnings)


@attrs.frozen
class ConnectResult:
    """The outcome of L{probe}."""

    host: str
    port: int
    domain: str
    header: StreamHeader
    features: Features
    tls: TLSInfo
    raw: str
    elapsed: float
    warnings: tuple[str, ...] = ()
    transcript: tuple = ()


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
class AuthResult:
    """The outcome of L{login}, L{roster} and L{message}."""

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
    transcript: tuple = ()
    roster: Roster | None = None
    delivery: Delivery | None = None
    server_info: ServerInfo | None = None


class Failed(Exception):
    """
    A probe failed: C{error} is the L{ProbeError}; the rest is what the
    probe had reached (for the JSON answer).
    """

    def __init__(self, error, trace, raw=None, tls=None, mechanism=None, channel_binding=None):
        super().__init__(str(error))
        self.error = error
        self.tls = tls
        self.mechanism = mechanism
        self.channel_binding = channel_binding
        self.warnings = tuple(trace.warnings)
        self.phases = tuple(trace.phases)
        self.timings = dict(trace.timings)
        self.elapsed = trace.elapsed()
        self.transcript = tuple(trace.transcript.entries) if trace.transcript else None
        self.raw = raw


def _timed(coro, env: Environment, total: float, trace: Trace, session) -> Deferred:
    """
    Run the flow coroutine under the overall timeout; turn failures into
    L{Failed} carrying what was reached.
    """

    def on_timeout(result, timeout):
        raise FlowTimeout(
            "Connection timeout: the probe did not finish within %d ms" % (round(total * 1000),)
        )

    def failed(failure):
        if failure.check(ProbeError):
            raise Failed(
                failure.value,
                trace,
                session.proto.raw(),
                session.tls,
                session.mechanism_used,
                session.binding_used,
            )
        return failure

    d = Deferred.fromCoroutine(coro)
    d.addTimeout(total, env.clock, onTimeoutCancel=on_timeout)
    return d.addErrback(failed)


class _Session:
    """One connection walked through the stream steps; shared by the flows."""

    def __init__(
        self,
        env: Environment,
        trace: Trace,
        host: str,
        port: int,
        domain: str,
        *,
        server: bool = False,
        from_: str | None = None,
    ):
        self.env = env
        self.trace = trace
        self.host = host
        self.port = port
        self.domain = domain
        self.from_ = from_
        # A server-to-server stream (jabber:server) or a client one.
        self.services = tlsinfo.SERVER_SERVICES if server else tlsinfo.CLIENT_SERVICES
        self.alpn = tlsinfo.XMPP_SERVER_ALPN if server else tlsinfo.XMPP_CLIENT_ALPN
        self.proto = XMPPClientProtocol(
            env.clock, env.limits, trace.transcript, namespace=NS_SERVER if server else NS_CLIENT
        )
        self.tls = TLSInfo(False, False)
        self.channel_binding: tuple[str, bytes] | None = None
        self.binding_used: str | None = None
        self.binding_by_default = False
        self.mechanism_used: str | None = None
        self.tls_connection = None

    async def open(self, direct: bool = False) -> tuple[StreamHeader, Features]:
        """
        Connect (with TLS from the first byte when C{direct}, XEP-0368),
        send our header, read the server's header and features.
        """
        if not direct:
            await self.env.connect(self.host, self.port, self.proto)
            return await self.open_stream()
        creator = self.env.tls_client(self.domain, alpn=self.alpn)
        self.proto.expect_tls()
        await self.env.connect(self.host, self.port, self.proto, tls_context=creator)
        await self.proto.wait_handshake(self.env.read_timeout)
        self.trace.phase("tls_connected")
        self._negotiated(creator, available=True, required=False, direct=True)
        return await self.open_stream()

    def _negotiated(self, creator, *, available, required, direct=False):
        connection = self.proto.tls_connection() or creator.connection
        self.tls_connection = connection
        trust = self.env.trust if self.env.trust is not None else _system_trust()
        report = tlsinfo.report(
            connection, self.domain, trust, self.env.now(), services=self.services
        )
        self.tls = TLSInfo(available, required, True, direct, report)
        for warning in self.tls.warnings():
            self.trace.warn(warning)

    def check_certificate(self) -> None:
        """
        Stop before any credential leaves when the certificate does not
        verify for the domain (C{tlsVerify: true}).
        """
        if not self.tls.negotiated:
            return
        cert = self.tls.report.certificate
        if cert is not None and cert.verified:
            return
        why = cert.verify_error if cert is not None else "the server sent no certificate"
        how = "pass tlsVerify: false to log in anyway"
        if cert is None or not cert.chain_verified:
            how += ", or start the service with --ca-file naming the CA that issued it"
        raise TLSFailure(
            "TLS certificate of %s did not verify: %s; no credentials were sent (%s)"
            % (self.domain, why, how)
        )

    async def open_stream(self) -> tuple[StreamHeader, Features]:
        self.proto.send_header(self.domain, self.from_)
        header = await self.proto.read_header(self.env.read_timeout)
        features = await self.proto.read_element(
            _expect_features, "stream features", self.env.read_timeout
        )
        return header, parse_features(features)

    async def secure(self, features: Features, mode: str) -> Features:
        """
        The TLS step: C{auto} negotiates STARTTLS when offered, C{required}
        fails (errorType C{tls}) when it is not, C{none} reports only,
        C{direct} was negotiated by L{open}.

        @return: the features to go on with (those after STARTTLS, if any).
        """
        if mode == "direct":
            return features
        self.tls = TLSInfo(features.starttls, features.starttls_required)
        if mode == "required" and not features.starttls:
            raise TLSFailure(
                "TLS required but the server does not offer STARTTLS "
                "(features: %s)" % (", ".join(features.features) or "none",)
            )
        if mode == "none" or not features.starttls:
            return features
        self.proto.send(domish.Element((NS_TLS, "starttls")))
        reply = await self.proto.read_element(
            _expect_starttls_reply, "STARTTLS reply", self.env.read_timeout
        )
        if reply.name == "failure":
            raise TLSFailure("Server answered STARTTLS with <failure/>")
        creator = self.env.tls_client(self.domain)
        await self.proto.start_tls(creator, self.env.read_timeout)
        self.trace.phase("starttls_upgraded")
        self._negotiated(creator, available=features.starttls, required=features.starttls_required)
        return features

    async def after_tls(self, features: Features, verify: bool) -> Features:
        """
        Once STARTTLS is negotiated: check the certificate (auth flows with
        C{verify}), then open the new stream and read its features.
        """
        if verify:
            self.check_certificate()
        if not self.tls.negotiated or self.tls.direct:
            return features
        _, features = await self.open_stream()
        self.tls = attrs.evolve(self.tls, features=features)
        return features

    def choose_binding(self, features: Features, forced: str | None) -> None:
        """The channel-binding data for SCRAM -PLUS (SPEC §4)."""
        if self.tls_connection is None:
            if forced is not None:
                raise SASLFailure(
                    "channelBinding %s needs TLS, and this connection has none" % (forced,)
                )
            return
        if forced is not None:
            data = tlsinfo.channel_binding(self.tls_connection, forced)
            if not data and forced == tlsinfo.TLS_UNIQUE:
                data = tlsinfo.tls_unique_tls13_compat(self.tls_connection)
                if data:
                    self.trace.warn(TLS13_UNIQUE_WARNING)
            if not data:
                raise SASLFailure(
                    "channelBinding %s is not available on this connection (%s)"
                    % (forced, self.tls.report.protocol)
                )
            self.channel_binding = (forced, data)
        else:
            self.channel_binding = tlsinfo.default_binding(
                self.tls_connection, list(features.channel_bindings)
            )
            self.binding_by_default = not features.channel_bindings

    def tls13_unique_fallback(self, error: SASLFailure) -> bool:
        """
        After a server refused a -PLUS login bound with C{tls-exporter} (the
        RFC 9266 default on TLS 1.3, used because the server advertised no
        binding types), switch to C{tls-unique} computed as ejabberd 23.01
        does on TLS 1.3 (the client Finished message) for one more attempt
        on the same stream (RFC 6120 §6.4.5 allows retries).

        @return: whether to retry.
        """
        if not (
            self.binding_by_default
            and self.binding_used == tlsinfo.TLS_EXPORTER
            and "saslCondition" in error.extra
        ):
            return False
        data = tlsinfo.tls_unique_tls13_compat(self.tls_connection)
        if not data:
            return False
        self.binding_by_default = False
        self.channel_binding = (tlsinfo.TLS_UNIQUE, data)
        self.trace.warn(
            "the server refused channel binding tls-exporter (%s%s); retried with "
            "tls-unique" % (error.extra["saslCondition"],
                            ": " + error.extra["saslText"] if "saslText" in error.extra else "")
        )  # fmt: skip
        self.trace.warn(TLS13_UNIQUE_WARNING)
        return True

    async def authenticate(self, features: Features, username: str, password: str, requested):
        """SASL (RFC 6120 §6): returns the mechanism's name once authenticated."""
        offered = features.mechanisms
        name = sasl.choose(requested, offered, can_bind=self.channel_binding is not None)
        mechanism = sasl.create(
            name,
            username,
            password,
            channel_binding=self.channel_binding,
            server_offers_plus=sasl.server_offers_plus(offered),
            to_thread=self.env.to_thread,
        )
        self.mechanism_used = name
        self.binding_used = getattr(mechanism, "channel_binding_type", None)
        auth = domish.Element((NS_SASL, "auth"))
        auth["mechanism"] = name
        auth.addContent(_b64(mechanism.initial_response()))
        self.proto.send(auth)
        self.trace.phase(sasl.phase_name(name))
        if name == "PLAIN" and not self.tls.negotiated:
            self.trace.warn(WARN_PLAINTEXT_CREDENTIALS)
        while True:
            reply = await self.proto.read_element(
                _expect_sasl_reply, "SASL reply", self.env.read_timeout
            )
            if reply.name == "failure":
                condition = parse_sasl_failure(reply)
                extra = {"saslCondition": condition.condition}
                if condition.text:
                    extra["saslText"] = condition.text
                raise SASLFailure(
                    "SASL authentication failed: %s" % (condition.condition,), extra=extra
                )
            data = _unb64(text_of(reply))
            if reply.name == "success":
                await maybeDeferred(mechanism.verify_success, data)
                break
            response = await maybeDeferred(mechanism.respond, data or b"")
            element = domish.Element((NS_SASL, "response"))
            element.addContent(_b64(response))
            self.proto.send(element)
        self.trace.phase("authenticated")
        for warning in getattr(mechanism, "warnings", ()):
            self.trace.warn(warning)
        return name

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
                "(features: %s)" % (", ".join(features.features) or "none",)
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
    return cls("%s: %s" % (what, condition.condition), extra=extra)


def _expect_features(element) -> bool:
    if is_features(element):
        return True
    raise ProtocolViolation(
        "Expected <stream:features>, got <%s xmlns='%s'>" % (element.name, element.uri or "")
    )


def _expect_starttls_reply(element) -> bool:
    if element.uri == NS_TLS and element.name in ("proceed", "failure"):
        return True
    raise ProtocolViolation(
        "Expected <proceed/> or <failure/> after <starttls/>, got <%s xmlns='%s'>"
        % (element.name, element.uri or "")
    )


def _expect_sasl_reply(element) -> bool:
    if element.uri == NS_SASL and element.name in ("success", "failure", "challenge"):
        return True
    raise ProtocolViolation(
        "Expected a SASL reply (<success/>, <failure/> or <challenge/>), got <%s xmlns='%s'>"
        % (element.name, element.uri or "")
    )


def _b64(data: bytes | None) -> str:
    # RFC 6120 §6.4.2: "=" stands for an empty response.
    if not data:
        return "="
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes | None:
    text = text.strip()
    if not text:
        return None
    if text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SASLFailure("Server sent SASL data that is not valid base64") from e


# -- /connect


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
    server = hasattr(req, "from_")
    session = _Session(
        env,
        trace,
        req.host,
        req.port,
        req.domain,
        server=server,
        from_=req.from_ if server else None,
    )

    async def run():
        try:
            header, features = await session.open(direct=req.tls == "direct")
            raw = session.proto.raw()
            if req.tls != "direct":
                session.tls = TLSInfo(features.starttls, features.starttls_required)
            if req.tls == "auto":
                await session.after_tls(await session.secure(features, "auto"), verify=False)
        finally:
            session.close()
        return ConnectResult(
            host=req.host,
            port=req.port,
            domain=req.domain,
            header=header,
            features=features,
            tls=session.tls,
            raw=raw,
            elapsed=trace.elapsed(),
            warnings=tuple(trace.warnings),
            transcript=tuple(trace.transcript.entries) if trace.transcript else (),
        )

    return _timed(run(), env, req.timeout, trace, session)


# -- /login, /roster, /message


async def _login(session: _Session, req) -> AuthResult:
    header, features = await session.open(direct=req.tls == "direct")
    session.trace.phase("stream_opened")
    features = await session.secure(features, req.tls)
    features = await session.after_tls(features, verify=req.tls_verify)
    session.choose_binding(features, req.channel_binding)
    offered = features.mechanisms
    try:
        mechanism = await session.authenticate(features, req.username, req.password, req.mechanism)
    except SASLFailure as e:
        if not session.tls13_unique_fallback(e):
            raise
        mechanism = await session.authenticate(features, req.username, req.password, req.mechanism)
    features = await session.restart()
    jid = await session.bind(features, req.resource)
    trace = session.trace
    return AuthResult(
        host=req.host,
        port=req.port,
        domain=req.domain,
        jid=jid,
        phases=(),
        timings={},
        features=features,
        sasl_mechanisms=offered,
        mechanism=mechanism,
        channel_binding=session.binding_used,
        tls=session.tls,
        warnings=tuple(trace.warnings),
        elapsed=0.0,
    )


def _finish(result: AuthResult, trace: Trace, **changes) -> AuthResult:
    return attrs.evolve(
        result,
        phases=tuple(trace.phases),
        timings=dict(trace.timings),
        warnings=tuple(trace.warnings),
        elapsed=trace.elapsed(),
        transcript=tuple(trace.transcript.entries) if trace.transcript else (),
        **changes,
    )


def _auth_flow(env: Environment, req, started, body) -> Deferred:
    trace = Trace(env.clock, env.clock.seconds() if started is None else started, req.transcript)
    session = _Session(env, trace, req.host, req.port, req.domain)

    async def run():
        try:
            result = await _login(session, req)
            changes = await body(session, result) if body else {}
        finally:
            session.close()
        return _finish(result, trace, **changes)

    return _timed(run(), env, req.timeout, trace, session)


def login(env: Environment, req, started: float | None = None) -> Deferred:
    """
    Log in: stream, SASL, restart, bind, session when advertised.

    @param req: a C{validate.AuthRequest}.
    @return: a Deferred firing with an L{AuthResult}, or failing with
        L{Failed}.
    """
    return _auth_flow(env, req, started, None)


def roster(env: Environment, req, started: float | None = None) -> Deferred:
    """L{login}, then fetch the roster (RFC 6121 §2.1.3)."""

    async def body(session, result):
        query = domish.Element((NS_ROSTER, "query"))
        reply = await session.iq("get", "roster1", query, "roster", large=True)
        if reply["type"] == "error":
            raise _iq_failure(ProtocolViolation, "Roster request failed", reply)
        got = parse_roster(reply)
        session.trace.phase("roster_received")
        return {"roster": got}

    return _auth_flow(env, req, started, body)


def server_info(env: Environment, req, started: float | None = None) -> Deferred:
    """
    L{login}, then ask the server about itself: service discovery (XEP-0030,
    with XEP-0128 forms and XEP-0157 contact addresses), software version
    (XEP-0092) and a ping round trip (XEP-0199).  A query the server answers
    with an error, or not at all within the read timeout, is reported as
    missing with the reason; the probe goes on with the next one.

    @param req: a C{validate.AuthRequest}.
    """

    async def body(session, result):
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

    return _auth_flow(env, req, started, body)


def srv(env: Environment, req, started: float | None = None) -> Deferred:
    """
    The SRV records of C{req.domain} (SPEC §7), in the order a client tries
    them, with their targets' addresses.

    @param req: a C{validate.SRVRequest}.
    @return: a Deferred firing with a C{srv.SRVReport}, or failing with
        L{Failed} (C{dns} or C{timeout}).
    """
    from . import srv as srv_lookup

    trace = Trace(env.clock, env.clock.seconds() if started is None else started, False)
    d = srv_lookup.lookup(
        env.srv_resolver,
        env.resolver,
        req.domain,
        clock=env.clock,
        timeout=req.timeout,
        policy=env.policy,
    )

    def failed(failure):
        failure.trap(ProbeError)
        raise Failed(failure.value, trace)

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

    async def body(session, result):
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
                "waitMs shortened to %d ms to fit the overall timeout" % (round(window * 1000),)
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

    return _auth_flow(env, auth, started, body)


__all__ = [
    "AuthResult",
    "ConnectResult",
    "Delivery",
    "Environment",
    "Failed",
    "login",
    "message",
    "probe",
    "roster",
]
