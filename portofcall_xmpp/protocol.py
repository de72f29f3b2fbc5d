"""
The client side of one XMPP connection as a Twisted L{Protocol}.

L{XMPPClientProtocol} writes stream headers and stanzas, and hands the flows
Deferreds for "the stream header" and "the next element matching X", each
with a per-read timeout on an injected clock.  Whatever stops the stream --
connection loss, a C{<stream:error>}, malformed XML, a limit -- fails the
waiting Deferred (and every later one) with a typed L{ProbeError}.

L{XMPPClientProtocol.close} sends C{</stream:stream>}, closes the transport
(aborting it if the peer does not let it close within a grace period) and
leaves no timer behind once the connection is gone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from xml.sax.saxutils import quoteattr

from OpenSSL.SSL import Connection as OpenSSLConnection
from OpenSSL.SSL import Error as OpenSSLError
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.words.xish import domish
from zope.interface import implementer

from .errors import Closed, ProbeError, ReadTimeout, StreamError, TLSFailure
from .parse import (
    NS_CLIENT,
    NS_DIALBACK,
    NS_SERVER,
    is_stream_error,
    parse_stream_error,
    to_xml,
)
from .stream import NS_STREAMS, Limits, Stanza, StreamEnd, StreamHeader, XMLStreamParser

# How long a polite close may take before the connection is aborted.
CLOSE_GRACE = 1.0
# How much of the first stream is kept for C{raw} (SPEC §3: 2000 characters).
RAW_CHARS = 2000
_RAW_BYTES = RAW_CHARS * 4
# The longest single transcript entry; longer ones are cut with a marker.
TRANSCRIPT_ENTRY_CHARS = 65536


class Transcript:
    """
    What crossed the wire, element by element, with SASL payloads redacted.
    Times are seconds since C{started} on C{clock}.
    """

    def __init__(self, clock: IReactorTime, started: float):
        self._clock = clock
        self._started = started
        self.entries: list[tuple[str, float, str]] = []

    def add(self, direction: str, xml: str) -> None:
        if len(xml) > TRANSCRIPT_ENTRY_CHARS:
            xml = xml[:TRANSCRIPT_ENTRY_CHARS] + "…[%d characters cut]" % (
                len(xml) - TRANSCRIPT_ENTRY_CHARS,
            )
        self.entries.append((direction, self._clock.seconds() - self._started, xml))


def _header_xml(header: StreamHeader) -> str:
    attrs_ = [
        ("xmlns", header.default_ns),
        ("xmlns:stream", NS_STREAMS),
        ("id", header.id),
        ("from", header.from_),
        ("to", header.to),
        ("version", header.version),
        ("xml:lang", header.lang),
    ]
    return "<stream:stream %s>" % (
        " ".join("%s=%s" % (k, quoteattr(v)) for k, v in attrs_ if v is not None),
    )


class _Failure:
    """A queued terminal failure: every wait from now on fails with it."""

    def __init__(self, error: ProbeError, contextual: bool):
        self.error = error
        self.contextual = contextual

    def for_wait(self, what: str) -> ProbeError:
        if not self.contextual:
            return self.error
        e = self.error
        return type(e)(
            "%s while waiting for %s" % (e.message, what), error_type=e.error_type, extra=e.extra
        )


def _openssl_reason(error: OpenSSLError) -> str:
    """OpenSSL's error queue in words: C{"certificate verify failed"}..."""
    parts = []
    for item in error.args[0] if error.args and isinstance(error.args[0], list) else []:
        if isinstance(item, tuple) and len(item) == 3 and item[2]:
            parts.append(str(item[2]))
    return "; ".join(parts) or str(error) or "TLS error"


@implementer(IHandshakeListener)
class XMPPClientProtocol(Protocol):
    """
    One client-to-server XML stream.

    @ivar header: the latest L{StreamHeader} the server sent, or C{None}.
    @ivar bytes_received: bytes read on this connection.
    """

    def __init__(
        self,
        clock: IReactorTime,
        limits: Limits | None = None,
        transcript: Transcript | None = None,
        namespace: str = NS_CLIENT,
    ):
        self._clock = clock
        self._namespace = namespace
        self._parser = XMLStreamParser(limits)
        self._transcript = transcript
        self._queue: deque = deque()
        self._waiter: tuple | None = None
        self._failure: _Failure | None = None
        self._closing = False
        self._lost = False
        self._abort_call = None
        self._raw = bytearray()
        self._raw_end: int | None = None
        self._first_stream = True
        self._stream_offset = 0
        self.header: StreamHeader | None = None
        self.bytes_received = 0
        self._tls_started = False
        self._tls_waiter: Deferred | None = None
        self.tls_established = False

    # -- Protocol

    def dataReceived(self, data: bytes) -> None:
        if self._failure is not None or self._closing:
            return
        self.bytes_received += len(data)
        if self._first_stream and len(self._raw) < _RAW_BYTES:
            self._raw += data[: _RAW_BYTES - len(self._raw)]
        error = None
        try:
            self._parser.feed(data)
        except ProbeError as e:
            error = e
        events, self._parser.events = self._parser.events, []
        for event in events:
            self._enqueue(event)
        if error is not None:
            self._queue.append(_Failure(error, contextual=False))
            self._failure = self._queue[-1]
            self.transport.abortConnection()
        self._deliver()

    def handshakeCompleted(self) -> None:
        self.tls_established = True
        waiter, self._tls_waiter = self._tls_waiter, None
        if waiter is not None:
            waiter.callback(self)

    def connectionLost(self, reason) -> None:
        self._lost = True
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._abort_call = None
        if self._failure is None and not self._closing:
            if self._tls_started and not self.tls_established:
                if reason.check(OpenSSLError):
                    error = TLSFailure(
                        "TLS handshake failed: %s" % (_openssl_reason(reason.value),)
                    )
                else:
                    error = TLSFailure("Server closed the connection during the TLS handshake")
                self._failure = _Failure(error, contextual=False)
                self._queue.append(self._failure)
                waiter, self._tls_waiter = self._tls_waiter, None
                if waiter is not None:
                    waiter.errback(error)
            elif reason.check(OpenSSLError):
                error = TLSFailure("TLS error: %s" % (_openssl_reason(reason.value),))
                self._failure = _Failure(error, contextual=False)
                self._queue.append(self._failure)
            elif reason.check(ConnectionDone):
                error = Closed("Server closed the connection")
            else:
                error = Closed("Connection reset by server")
            self._failure = _Failure(error, contextual=True)
            self._queue.append(self._failure)
        self._deliver()

    # -- events

    def _enqueue(self, event) -> None:
        if isinstance(event, StreamHeader):
            self.header = event
            if self._transcript is not None:
                self._transcript.add("in", _header_xml(event))
            self._queue.append(event)
        elif isinstance(event, Stanza):
            element = event.element
            if self._first_stream and self._raw_end is None:
                self._raw_end = event.end_offset
            if self._transcript is not None:
                self._transcript.add("in", to_xml(element, self._namespace))
            if is_stream_error(element):
                condition = parse_stream_error(element)
                extra = {"streamErrorText": condition.text} if condition.text else {}
                self._failure = _Failure(
                    StreamError("XMPP stream error: %s" % (condition.condition,), extra=extra),
                    contextual=False,
                )
                self._queue.append(self._failure)
            else:
                self._queue.append(event)
        elif isinstance(event, StreamEnd):
            if self._transcript is not None:
                self._transcript.add("in", "</stream:stream>")
            self._failure = _Failure(Closed("Server closed the XMPP stream"), contextual=True)
            self._queue.append(self._failure)

    def _deliver(self) -> None:
        while self._waiter is not None and self._queue:
            matcher, d, what = self._waiter
            event = self._queue[0]
            if isinstance(event, _Failure):
                self._waiter = None
                d.errback(event.for_wait(what))
                return
            self._queue.popleft()
            try:
                taken = matcher(event)
            except ProbeError as e:
                self._waiter = None
                d.errback(e)
                return
            if taken:
                self._waiter = None
                d.callback(event)
                return

    def _wait(self, matcher: Callable, what: str, timeout: float) -> Deferred:
        if self._waiter is not None:
            raise RuntimeError("one wait at a time")

        def cancel(d):
            if self._waiter is not None and self._waiter[1] is d:
                self._waiter = None

        def timed_out(result, timeout_):
            raise ReadTimeout(
                "Read timeout: no %s from the server within %d ms" % (what, round(timeout * 1000))
            )

        d = Deferred(cancel)
        self._waiter = (matcher, d, what)
        self._deliver()
        return d.addTimeout(timeout, self._clock, onTimeoutCancel=timed_out)

    # -- public API

    def read_header(self, timeout: float) -> Deferred:
        """
        Wait for the server's stream header.

        @return: a Deferred that fires with the L{StreamHeader}, or fails with
            L{ReadTimeout}, L{Closed}, L{StreamError}, or L{ProtocolViolation}
            (an element where the header should be cannot happen: the parser
            refuses it).
        """

        def matcher(event):
            return isinstance(event, StreamHeader)

        return self._wait(matcher, "stream header", timeout)

    def read_element(
        self, matcher: Callable[[domish.Element], bool], what: str, timeout: float
    ) -> Deferred:
        """
        Wait for the next top-level element that C{matcher} accepts; elements
        it rejects (returns false for) are skipped, and it may raise a
        L{ProbeError} to stop the wait.

        @param what: words for errors: "no I{what} from the server".
        @return: a Deferred that fires with the C{domish.Element}, or fails
            with L{ReadTimeout} after C{timeout} seconds of waiting, or with the
            error that ended the stream.
        """

        def match(event):
            return isinstance(event, Stanza) and matcher(event.element)

        return self._wait(match, what, timeout).addCallback(lambda event: event.element)

    def send_header(self, to: str, from_: str | None = None) -> None:
        """
        Open our stream to the server (C{to} is the XMPP domain; C{from_}
        our own, for server-to-server streams, which also declare the
        dialback namespace).
        """
        extra = ""
        if from_ is not None:
            extra += " from=%s" % (quoteattr(from_),)
        if self._namespace == NS_SERVER:
            extra += " xmlns:db=%s" % (quoteattr(NS_DIALBACK),)
        header = (
            "<?xml version='1.0'?><stream:stream xmlns=%s xmlns:stream=%s to=%s%s "
            "version='1.0' xml:lang='en'>"
            % (quoteattr(self._namespace), quoteattr(NS_STREAMS), quoteattr(to), extra)
        )
        if self._transcript is not None:
            self._transcript.add("out", header)
        self.transport.write(header.encode("utf-8"))

    def send(self, element: domish.Element) -> None:
        """Write one element, serialised (and so escaped) by the XML layer."""
        if self._transcript is not None:
            self._transcript.add("out", to_xml(element, self._namespace))
        self.transport.write(element.toXml(defaultUri=self._namespace).encode("utf-8"))

    def restart_stream(self) -> None:
        """
        Forget the current stream (RFC 6120 §4.3.3): the server's next bytes
        begin a new one.  Call before sending the new header.
        """
        self._first_stream = False
        self._queue = deque(e for e in self._queue if isinstance(e, _Failure))
        if self._failure is None:
            self._parser.restart()

    def start_tls(self, creator, timeout: float) -> Deferred:
        """
        Upgrade the connection with C{transport.startTLS(creator)}
        (STARTTLS, RFC 6120 §5.4.3.3) and restart the stream.

        @return: a Deferred that fires when the TLS handshake has completed,
            or fails with L{TLSFailure} (handshake error, peer closed) or
            L{ReadTimeout}.
        """
        self.restart_stream()
        self._tls_started = True
        self.transport.startTLS(creator)
        return self.wait_handshake(timeout)

    def expect_tls(self) -> None:
        """The transport is TLS from the first byte (XEP-0368)."""
        self._tls_started = True

    def wait_handshake(self, timeout: float) -> Deferred:
        """
        Wait for the TLS handshake of L{start_tls} or of a direct-TLS
        transport to complete.
        """
        if self.tls_established:
            return succeed(self)
        if self._failure is not None:
            return fail(self._failure.for_wait("the TLS handshake"))

        def cancel(d):
            if self._tls_waiter is d:
                self._tls_waiter = None

        def timed_out(result, timeout_):
            raise ReadTimeout(
                "Read timeout: the TLS handshake did not complete within %d ms"
                % (round(timeout * 1000),)
            )

        d = Deferred(cancel)
        self._tls_waiter = d
        return d.addTimeout(timeout, self._clock, onTimeoutCancel=timed_out)

    def tls_connection(self):
        """
        The C{OpenSSL.SSL.Connection} under this protocol once TLS is up, or
        C{None}: both C{startTLS} and a C{wrapClientTLS} transport hand it out
        as C{getHandle()}.
        """
        handle = getattr(self.transport, "getHandle", lambda: None)()
        return handle if isinstance(handle, OpenSSLConnection) else None

    def raw(self) -> str:
        """
        SPEC §3 C{raw}: the first 2000 characters the server sent, up to the
        end of the first element it sent after its header.
        """
        data = bytes(self._raw)
        if self._raw_end is not None:
            end = data.find(b">", self._raw_end)
            if end != -1:
                data = data[: end + 1]
        return data.decode("utf-8", "replace")[:RAW_CHARS]

    @property
    def closed(self) -> bool:
        """Whether the connection is gone or going."""
        return self._lost or self._closing

    def close(self, polite: bool = True) -> None:
        """
        End the connection.  Polite: send C{</stream:stream>} and close,
        aborting after L{CLOSE_GRACE} seconds if the peer keeps it open.
        Otherwise, or if the stream is already broken, abort at once.
        Fails any pending wait with C{CancelledError}.
        """
        if self._closing:
            return
        self._closing = True
        if self._waiter is not None:
            _, d, _ = self._waiter
            self._waiter = None
            d.errback(CancelledError())
        if self._tls_waiter is not None:
            d, self._tls_waiter = self._tls_waiter, None
            d.errback(CancelledError())
        if self._lost or self.transport is None:
            return
        if polite and self._failure is None:
            if self._transcript is not None:
                self._transcript.add("out", "</stream:stream>")
            self.transport.write(b"</stream:stream>")
            self.transport.loseConnection()
            self._abort_call = self._clock.callLater(CLOSE_GRACE, self._abort)
        else:
            self.transport.abortConnection()

    def _abort(self) -> None:
        self._abort_call = None
        if not self._lost:
            self.transport.abortConnection()
