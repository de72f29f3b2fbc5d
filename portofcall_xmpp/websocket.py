"""
C{POST /api/xmpp/websocket}: XMPP over WebSocket (RFC 7395), on
C{autobahn}'s Twisted client.

The URL is the caller's or the first WebSocket link of the domain's
host-meta (L{discover}).  Its host goes through the destination policy
(L{httpagent.HTTPClient.connect}: resolved once, every address checked);
with C{wss://} the certificate is verified for it before the stream starts.
The handshake asks for the C{xmpp} subprotocol and fails without it; frames
are capped at the element cap (autobahn's C{maxFramePayloadSize} and
C{maxMessagePayloadSize}: a larger frame ends the probe as C{too_large}
before it is read), and each frame is parsed as one element
(L{webstream.Channel}).  Then C{<open/>}, the features, and with credentials
the C{/login} steps (L{webstream.login}).
"""

from __future__ import annotations

import re

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred
from twisted.words.xish import domish

from . import discover
from .errors import Closed, ConnectError, ProtocolViolation, ReadTimeout, TooLarge
from .flows import Trace
from .httpagent import HTTPClient
from .parse import NS_CLIENT
from .stream import StreamHeader
from .webstream import (
    Channel,
    WebResult,
    WebSession,
    WebTransport,
    login,
    serialise,
    split_url,
    timed,
)

NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
SUBPROTOCOL = "xmpp"
DEFAULT_PORTS = {"ws": 80, "wss": 443}

_UPGRADE_FAILED = re.compile(r"upgrade failed \((\d{3})")


class _XMPPWebSocket(WebSocketClientProtocol):
    """Autobahn's client protocol, handing everything to its L{WebSocketChannel}."""

    channel: WebSocketChannel

    def onConnect(self, response):
        self.channel.connected(response)

    def onOpen(self):
        self.channel.opened()

    def onMessage(self, payload, isBinary):
        if isBinary:
            self.channel.fail(ProtocolViolation("Server sent a binary WebSocket frame"))
        else:
            self.channel.received(payload)

    def onClose(self, wasClean, code, reason):
        too_large = self.wasMaxFramePayloadSizeExceeded or self.wasMaxMessagePayloadSizeExceeded
        self.channel.closed(code, reason, too_large)


class WebSocketChannel(Channel):
    """
    One RFC 7395 session: C{<open/>}/C{<close/>} framing, one element per
    text frame.

    @ivar http_status: 101 once upgraded, or the status that refused it.
    @ivar subprotocol: the subprotocol the server chose.
    """

    def __init__(self, clock, limits, transcript):
        super().__init__(clock, limits, transcript)
        self.ws: _XMPPWebSocket | None = None
        self.http_status: int | None = None
        self.subprotocol: str | None = None
        self._open = Deferred(lambda _: self.lost())
        self._is_open = False

    # -- from the protocol

    def connected(self, response) -> None:
        self.http_status = 101
        self.subprotocol = response.protocol or None

    def opened(self) -> None:
        self._is_open = True
        if self.subprotocol != SUBPROTOCOL:
            self.fail(
                ProtocolViolation(
                    "WebSocket server did not accept the xmpp subprotocol "
                    f"(chose {self.subprotocol or 'none'})"
                )
            )
            return
        if not self._open.called:
            self._open.callback(None)

    def closed(self, code, reason, too_large: bool) -> None:
        """The WebSocket closed; C{too_large}: we closed it on a frame over the cap."""
        if too_large:
            error = TooLarge(f"Server sent a WebSocket frame larger than {self._parser.cap} bytes")
        elif not self._is_open:
            status = _UPGRADE_FAILED.search(reason or "")
            if status is not None:
                self.http_status = int(status.group(1))
                error = ProtocolViolation(
                    f"WebSocket upgrade refused: HTTP {self.http_status} (redirects are not "
                    "followed)"
                    if self.http_status // 100 == 3
                    else f"WebSocket upgrade refused: HTTP {self.http_status}"
                )
            else:
                error = ConnectError(f"WebSocket handshake failed: {reason or 'connection lost'}")
        else:
            error = Closed(f"Server closed the WebSocket (code {code})")
        self.fail(error)

    # -- the channel

    def fail(self, error) -> None:
        super().fail(error)
        if not self._open.called:
            self._open.errback(self.error)

    def wait_open(self, timeout: float, clock) -> Deferred:
        """Fires once the upgrade is done with the xmpp subprotocol."""
        return self._open.addTimeout(timeout, clock, onTimeoutCancel=self._open_timed_out)

    @staticmethod
    def _open_timed_out(result, timeout):
        raise ReadTimeout(f"Read timeout: no WebSocket upgrade within {round(timeout * 1000)} ms")

    def lost(self) -> None:
        if self.ws is not None and self.ws.transport is not None:
            self.ws.transport.abortConnection()

    def closing(self, element) -> bool:
        return element.uri == NS_FRAMING and element.name == "close"

    def write(self, element) -> None:
        """One element, one text frame."""
        if self.error is None and self._is_open:
            self.ws.sendMessage(serialise(element).encode("utf-8"), isBinary=False)

    def send_header(self, to: str, from_: str | None = None) -> None:
        element = domish.Element((NS_FRAMING, "open"))
        element["to"] = to
        element["version"] = "1.0"
        self.send(element)

    async def read_header(self, timeout: float) -> StreamHeader:
        def is_open(element):
            if element.uri == NS_FRAMING and element.name == "open":
                return True
            raise ProtocolViolation(
                f"Expected <open xmlns='{NS_FRAMING}'/>, got <{element.name} "
                f"xmlns='{element.uri or ''}'>"
            )

        element = await self.read_element(is_open, "<open/>", timeout)
        return StreamHeader(
            id=element.getAttribute("id"),
            from_=element.getAttribute("from"),
            to=element.getAttribute("to"),
            version=element.getAttribute("version"),
            lang=element.getAttribute(("http://www.w3.org/XML/1998/namespace", "lang")),
            default_ns=NS_CLIENT,
        )

    def restart_stream(self) -> None:
        """RFC 7395 §3.5: the client's next C{<open/>} restarts the stream."""

    def close(self, polite: bool = True) -> None:
        ws = self.ws
        if ws is None or ws.transport is None:
            return
        if polite and self.error is None and self._is_open:
            self.send(domish.Element((NS_FRAMING, "close")))
            self.error = Closed("closed")
            ws.sendClose(1000)
        else:
            self.error = self.error or Closed("closed")
            ws.transport.abortConnection()


def websocket(env, req, started: float | None = None) -> Deferred:
    """
    A WebSocket probe (SPEC §10): the stream, and with credentials a login.

    @param req: a C{validate.WebRequest}.
    @return: a Deferred firing with a L{webstream.WebResult}, or failing
        with L{flows.Failed} or L{DestinationBlocked}.
    """
    trace = Trace(env.clock, env.clock.seconds() if started is None else started, req.transcript)
    state: dict = {"url": req.url}

    async def run():
        url, discovered = req.url, False
        if url is None:
            url, discovered = await discover.first_link(env, req.domain, "websocket"), True
            state["url"] = url
        scheme, host, port = split_url(url, DEFAULT_PORTS)
        channel = WebSocketChannel(env.clock, env.limits, trace.transcript)
        cap = env.limits.max_element_bytes
        factory = WebSocketClientFactory(url, protocols=[SUBPROTOCOL], reactor=env.clock)
        factory.noisy = False
        factory.setProtocolOptions(
            maxFramePayloadSize=cap,
            maxMessagePayloadSize=cap,
            openHandshakeTimeout=env.read_timeout,
            closeHandshakeTimeout=1.0,
            autoPingInterval=0,
        )
        factory.protocol = _XMPPWebSocket
        proto = factory.buildProtocol(None)
        proto.channel = channel
        channel.ws = proto
        client = HTTPClient(env)
        creator = client.tls_context(host) if scheme == "wss" else None
        session = state["session"] = WebSession(env, trace, channel, req.domain, host, port)
        try:
            await client.connect(host, port, proto, creator)
            await channel.wait_open(env.read_timeout, env.clock)
            if creator is not None:
                await session.tls.direct_connected(creator)
                client.check_certificates()
            done = await login(session, req, plaintext_chosen=scheme == "ws" and not discovered)
        finally:
            session.close()
        return WebResult(
            url=url,
            domain=req.domain,
            discovered=discovered,
            transport=WebTransport(
                "websocket",
                url,
                http_status=channel.http_status,
                subprotocol=channel.subprotocol,
                tls=client.tls_report(),
            ),
            **done,
            phases=tuple(trace.phases),
            timings=dict(trace.timings),
            channel_binding=session.sasl.binding,
            warnings=tuple(trace.warnings),
            elapsed=trace.elapsed(),
            transcript=trace.entries(),
        )

    return timed(run(), env, req, trace, state)
