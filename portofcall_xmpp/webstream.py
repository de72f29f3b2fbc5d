"""
XMPP over HTTP transports (WebSocket, RFC 7395; BOSH, XEP-0124/0206): what
they share.

A L{Channel} gives the stream steps of L{flows} (the SASL step, restart,
bind and session of L{flows._Session}) the interface of
L{protocol.XMPPClientProtocol} -- C{send(element)}, C{read_element(match,
what, timeout)}, C{send_header}, C{read_header}, C{restart_stream} -- over
a transport that carries whole elements: each WebSocket frame or BOSH body
is parsed by the service's bounded stream parser (L{stream.XMLStreamParser}
and its limits: the element cap, no DTD or entities), inside a stream of
its own.  A transport subclass says how elements are written, how a stream
is opened and closed.

L{WebSession} is a L{flows._Session} whose protocol is a channel, and
L{login} walks it as C{/login} does (same phases, same failures); the
transports provide the connection (L{websocket}, L{bosh}).
"""

from __future__ import annotations

from collections import deque
from urllib.parse import urlsplit

import attrs
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.words.xish import domish

from . import tlsinfo
from .errors import (
    Closed,
    FlowTimeout,
    ProbeError,
    ProtocolViolation,
    StreamError,
)
from .flows import Failed, Trace, _Session
from .parse import NS_CLIENT, Features, is_stream_error, parse_stream_error, to_xml
from .protocol import ElementWaits
from .saslstep import SASLStep
from .stream import NS_STREAMS, Limits, Stanza, StreamHeader, XMLStreamParser
from .tlsstep import TLSStep

#: Characters of C{raw} kept (SPEC §3).
RAW_CHARS = 2000

_WRAP_OPEN = f"<stream:stream xmlns:stream='{NS_STREAMS}'>".encode()


def serialise(element: domish.Element) -> str:
    """
    An element as one self-contained document: a stanza without a namespace
    of its own is qualified by C{jabber:client} (RFC 7395 §3.3.3, XEP-0206).
    """
    if element.uri is None:
        element.uri = element.defaultUri = NS_CLIENT
    return element.toXml()


class Channel(ElementWaits):
    """
    Elements in and out of one XMPP session over an HTTP transport.

    Subclasses implement L{write}, L{send_header}, L{read_header},
    L{restart_stream} and L{close}; they call L{received} with each frame
    or body and L{fail} when the transport fails.

    @ivar raw: the first characters the server sent (SPEC §3 C{raw}).
    """

    def __init__(self, clock, limits: Limits, transcript):
        self._clock = clock
        self._transcript = transcript
        self._parser = XMLStreamParser(limits, values=transcript is None)
        self._parser.feed(_WRAP_OPEN)
        self._queue: deque = deque()
        self._waiter = None
        self.error: ProbeError | None = None
        self._raw = ""

    # -- what the transport calls

    def received(self, data: bytes) -> None:
        """One frame or body: parse it as one element, and hand it to L{unwrap}."""
        if self.error is not None:
            return
        if len(self._raw) < RAW_CHARS:
            self._raw += data[:RAW_CHARS].decode("utf-8", "replace")
        try:
            self._parser.feed(data)
            self._parser.flush()
        except ProbeError as e:
            self.fail(e)
            return
        events, self._parser.events = self._parser.events, []
        stanzas = [event.element for event in events if isinstance(event, Stanza)]
        if len(stanzas) != 1 or self._parser.unfinished or self._parser.deferred:
            self.fail(ProtocolViolation("Server sent a frame that is not one complete element"))
            return
        self.unwrap(stanzas[0])

    def unwrap(self, element: domish.Element) -> None:
        """One frame's element: the transport's wrapper, or the stream's element."""
        self.elements([element])

    def elements(self, elements) -> None:
        """Queue top-level elements the transport unwrapped (a stream error ends the stream)."""
        for element in elements:
            if self._transcript is not None:
                self._transcript.add("in", lambda e=element: to_xml(e, NS_CLIENT))
            if is_stream_error(element):
                condition = parse_stream_error(element)
                extra = {"streamErrorText": condition.text} if condition.text else {}
                self.fail(StreamError(f"XMPP stream error: {condition.condition}", extra=extra))
                return
            if self.closing(element):
                self.fail(Closed("Server closed the XMPP stream"))
                return
            self._queue.append(element)
        self._deliver()

    def closing(self, element: domish.Element) -> bool:
        """Whether C{element} ends the stream (the transport's close element)."""
        return False

    def fail(self, error: ProbeError) -> None:
        """The session is over: every wait from now on fails with C{error}."""
        if self.error is None:
            self.error = error
            self.lost()
        self._deliver()

    def lost(self) -> None:
        """The transport's part of L{fail}: stop the connection."""

    # -- the protocol interface

    def raw(self) -> str:
        return self._raw[:RAW_CHARS]

    def send(self, element: domish.Element) -> None:
        if self._transcript is not None:
            self._transcript.add("out", lambda: to_xml(element, NS_CLIENT))
        self.write(element)

    def write(self, element: domish.Element) -> None:
        """Carry one element to the server (the transport's framing)."""
        raise NotImplementedError

    def read_element(self, matcher, what: str, timeout: float, *, large: bool = False):
        """As L{protocol.XMPPClientProtocol.read_element}."""
        return self._wait_for(matcher, what, timeout, large)

    # TLS is the transport's, up before the stream starts (L{TLSStep.direct_connected}).
    def expect_tls(self) -> None:
        pass

    def wait_handshake(self, timeout: float) -> Deferred:
        return succeed(None)

    def tls_connection(self):
        return None

    def _deliver(self) -> None:
        while self._waiter is not None and (self._queue or self.error is not None):
            matcher, d, what = self._waiter
            if not self._queue:
                self._end_wait()
                d.errback(self.error)
                return
            element = self._queue.popleft()
            try:
                taken = matcher(element)
            except ProbeError as e:
                self._end_wait()
                d.errback(e)
                return
            if taken:
                self._end_wait()
                d.callback(element)
                return

    def cancel_wait(self) -> None:
        """Fail a pending wait with C{CancelledError} (the session is closing)."""
        if self._waiter is not None:
            _, d, _ = self._waiter
            self._end_wait()
            d.errback(CancelledError())


@attrs.frozen
class WebTransport:
    """
    The C{transport} of an answer (SPEC §10).

    @ivar kind: C{"websocket"} or C{"bosh"}.
    @ivar tls: the TLS report of the (first) connection, or L{None}.
    """

    kind: str
    url: str
    http_status: int | None = None
    subprotocol: str | None = None
    sid: str | None = None
    wait: int | None = None
    hold: int | None = None
    requests: int | None = None
    inactivity: int | None = None
    ver: str | None = None
    tls: tlsinfo.TLSReport | None = None


@attrs.frozen
class WebResult:
    """
    The outcome of a WebSocket or BOSH probe: the stream (C{header} and the
    first C{features}), and with credentials the login as L{flows.AuthResult}
    has it.

    @ivar discovered: the URL came from host-meta (XEP-0156).
    """

    url: str
    domain: str
    discovered: bool
    transport: WebTransport
    header: StreamHeader
    features: Features
    jid: str | None
    phases: tuple[str, ...]
    timings: dict
    sasl_mechanisms: tuple[str, ...]
    mechanism: str | None
    channel_binding: str | None
    warnings: tuple[str, ...]
    elapsed: float
    transcript: tuple


@attrs.frozen
class _Credentials:
    """What L{flows._Session.authenticate} reads of a request."""

    username: str
    password: str = attrs.field(repr=False)
    mechanism: str | None
    channel_binding: str | None
    tls: str


class WebSession(_Session):
    """
    A L{flows._Session} over a L{Channel}: the stream steps (open, restart,
    iq, bind, SASL through L{flows._Session.authenticate}) are those of
    C{/login}.  TLS, when the URL has it, is the transport's.
    """

    def __init__(self, env, trace: Trace, channel: Channel, domain: str, host: str, port: int):
        self.env = env
        self.trace = trace
        self.host = host
        self.port = port
        self.mode = "direct"
        self.domain = domain
        self.from_ = None
        self.proto = channel
        self.tls = TLSStep(
            channel,
            trace,
            trust=env.trust,
            clock=env.clock,
            read_timeout=env.read_timeout,
            domain=host,
        )
        self.sasl = SASLStep(channel, trace, env.read_timeout, env.to_thread)

    def close(self, polite=True):
        self.proto.cancel_wait()
        self.proto.close(polite)


def split_url(url: str, default_ports: dict[str, int]) -> tuple[str, str, int]:
    """C{(scheme, host, port)} of a URL validated by L{validate}."""
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or default_ports[parts.scheme]


async def login(session: WebSession, req, *, plaintext_chosen: bool) -> dict:
    """
    The stream, and with credentials SASL, restart, bind and session, as
    C{/login} walks them.

    @param plaintext_chosen: the caller gave a C{ws://} or C{http://} URL:
        PLAIN may send the password over it (as with C{tls: "none"}).
    @return: the L{WebResult} fields C{header}, C{features} (the first
        block), C{sasl_mechanisms}, C{mechanism} and C{jid} (L{None} without
        credentials).
    """
    header, features = await session.open_stream()
    session.trace.phase("stream_opened")
    done = {
        "header": header,
        "features": features,
        "sasl_mechanisms": features.mechanisms,
        "mechanism": None,
        "jid": None,
    }
    if req.username is None:
        return done
    credentials = _Credentials(
        req.username,
        req.password,
        req.mechanism,
        None,
        "none" if plaintext_chosen else "required",
    )
    done["mechanism"] = await session.authenticate(features, credentials)
    bound = await session.restart()
    done["jid"] = await session.bind(bound, req.resource)
    return done


def timed(coro, env, req, trace: Trace, state: dict) -> Deferred:
    """
    Run a transport flow under C{req.timeout}; a L{ProbeError} becomes
    L{Failed} with what was reached (C{state}: the C{url} tried and the
    L{WebSession}, once there are).
    """

    def on_timeout(result, timeout):
        raise FlowTimeout(
            f"Connection timeout: the probe did not finish within {round(req.timeout * 1000)} ms"
        )

    def failed(failure):
        failure.trap(ProbeError)
        session = state.get("session")
        raise Failed(
            failure.value,
            trace,
            session.proto.raw() if session else None,
            None,
            session.sasl.mechanism if session else None,
            session.sasl.binding if session else None,
            host=state.get("url"),
        )

    d = Deferred.fromCoroutine(coro)
    d.addTimeout(req.timeout, env.clock, onTimeoutCancel=on_timeout)
    return d.addErrback(failed)
