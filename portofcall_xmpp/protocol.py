"""
The client side of one XMPP connection as a Twisted L{Protocol}.

L{XMPPClientProtocol} writes stream headers and stanzas, and hands the flows
Deferreds for "the stream header" and "the next element matching X", each
with a per-read timeout on an injected clock.  Whatever stops the stream --
connection loss, a C{<stream:error>}, malformed XML, a limit -- fails the
waiting Deferred (and every later one) with a typed L{ProbeError}.

Bytes are parsed in slices: at most L{TURN_BYTES} bytes or L{TURN_ELEMENTS}
elements in one reactor turn; a connection with more to parse pauses its
transport and goes on in a later turn (C{clock.callLater(0, ...)}), so one
server's flood never holds the reactor from other probes or from timeouts.
What a connection holds (bytes not yet parsed, the element being built,
elements not yet taken) is charged to the service-wide L{Budget} of its
L{Limits}, and released when the connection ends.

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

# Bytes handed to the parser at once, and the most bytes and elements parsed
# in one reactor turn: a turn stops after the slice that passes either, so it
# parses at most TURN_ELEMENTS + SLICE_BYTES // 4 elements (an empty element
# with its transcript entry costs about 10 microseconds: about 10 ms a turn).
SLICE_BYTES = 2048
TURN_BYTES = 65536
TURN_ELEMENTS = 500
# Bytes the parser held back (see XMLStreamParser.flush) are parsed after
# their unfinished token's size divided by this rate (seconds), at least
# FLUSH_DELAY_MIN: rescanning a long token then costs at most this many
# bytes a second.
FLUSH_RATE = 16 * 1024 * 1024
FLUSH_DELAY_MIN = 0.01

# How long a polite close may take before the connection is aborted.
CLOSE_GRACE = 1.0
# How much of the first stream is kept for C{raw} (SPEC §3: 2000 characters).
RAW_CHARS = 2000
_RAW_BYTES = RAW_CHARS * 4
# The longest single transcript entry; longer ones are cut with a marker.
TRANSCRIPT_ENTRY_CHARS = 65536
# What a transcript keeps (SPEC §2: 1 MiB): the characters of its entries,
# each counted with TRANSCRIPT_ENTRY_COST more for its direction and time.
TRANSCRIPT_CHARS = 1024 * 1024
TRANSCRIPT_ENTRY_COST = 32


class Transcript:
    """
    What crossed the wire, element by element, with SASL payloads redacted.
    Times are seconds since C{started} on C{clock}.  It keeps at most
    L{TRANSCRIPT_CHARS}; later entries are counted, not kept (nor
    serialised), and L{entries} ends with a marker saying how many.
    """

    def __init__(self, clock: IReactorTime, started: float):
        self._clock = clock
        self._started = started
        self._entries: list[tuple[str, float, str]] = []
        self._size = 0
        self._dropped = 0
        self._first_dropped: tuple[str, float] | None = None

    @property
    def full(self) -> bool:
        """Whether later entries are only counted."""
        return self._dropped > 0

    @property
    def entries(self) -> list[tuple[str, float, str]]:
        """C{(direction, seconds, xml)} kept, then the marker if any were dropped."""
        if not self._dropped:
            return list(self._entries)
        direction, at = self._first_dropped
        marker = (
            f"…[{self._dropped} later entries dropped: a transcript keeps at most "
            f"{TRANSCRIPT_CHARS} characters]"
        )
        return [*self._entries, (direction, at, marker)]

    def add(self, direction: str, xml: str | Callable[[], str]) -> None:
        """
        Add an entry: C{xml}, or what C{xml()} returns (called only if the
        entry is kept).
        """
        at = self._clock.seconds() - self._started
        if self._dropped:
            self._dropped += 1
            return
        if callable(xml):
            xml = xml()
        if len(xml) > TRANSCRIPT_ENTRY_CHARS:
            cut = len(xml) - TRANSCRIPT_ENTRY_CHARS
            xml = f"{xml[:TRANSCRIPT_ENTRY_CHARS]}…[{cut} characters cut]"
        size = len(xml) + TRANSCRIPT_ENTRY_COST
        if self._size + size > TRANSCRIPT_CHARS:
            self._dropped = 1
            self._first_dropped = (direction, at)
            return
        self._size += size
        self._entries.append((direction, at, xml))


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
    shown = " ".join(f"{k}={quoteattr(v)}" for k, v in attrs_ if v is not None)
    return f"<stream:stream {shown}>"


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
            f"{e.message} while waiting for {what}", error_type=e.error_type, extra=e.extra
        )


def _openssl_reason(error: OpenSSLError) -> str:
    """OpenSSL's error queue in words: C{"certificate verify failed"}..."""
    parts = []
    for item in error.args[0] if error.args and isinstance(error.args[0], list) else []:
        if isinstance(item, tuple) and len(item) == 3 and item[2]:
            parts.append(str(item[2]))
    return "; ".join(parts) or str(error) or "TLS error"


class ElementWaits:
    """
    One wait at a time for the next matching event, under a per-read
    timeout: the part of waiting that an XML stream over TCP
    (L{XMPPClientProtocol}) and over an HTTP transport
    (L{webstream.Channel}) share.  The class provides C{_clock},
    C{_parser}, C{_waiter} (initially L{None}) and C{_deliver()}, which
    hands queued events to the waiter.
    """

    def _end_wait(self) -> None:
        self._waiter = None
        self._parser.large = False

    def _wait_for(
        self, matcher: Callable, what: str, timeout: float, large: bool = False
    ) -> Deferred:
        if self._waiter is not None:
            raise RuntimeError("one wait at a time")

        def cancel(d):
            if self._waiter is not None and self._waiter[1] is d:
                self._end_wait()

        def timed_out(result, timeout_):
            raise ReadTimeout(
                f"Read timeout: no {what} from the server within {round(timeout * 1000)} ms"
            )

        d = Deferred(cancel)
        self._waiter = (matcher, d, what)
        self._parser.large = large
        self._deliver()
        return d.addTimeout(timeout, self._clock, onTimeoutCancel=timed_out)


@implementer(IHandshakeListener)
class XMPPClientProtocol(ElementWaits, Protocol):
    """
    One client-to-server XML stream.

    @ivar header: the latest L{StreamHeader} the server sent, or C{None}.
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
        limits = limits or Limits()
        self._turns = limits.turns
        self._parser = XMLStreamParser(limits, values=transcript is None)
        self._charge = limits.budget.charge()
        self._transcript = transcript
        self._queue: deque = deque()
        self._queued = 0
        self._waiter: tuple | None = None
        self._failure: _Failure | None = None
        self._closing = False
        self._lost = False
        self._abort_call = None
        self._inbox = bytearray()
        self._turn_call = None
        self._flush_call = None
        self._busy = False
        self._paused = False
        self._lost_reason = None
        self._raw = bytearray()
        self._raw_end: int | None = None
        self._first_stream = True
        self.header: StreamHeader | None = None
        self._tls_started = False
        self._tls_waiter: Deferred | None = None
        self.tls_established = False

    # -- Protocol

    def connectionMade(self) -> None:
        # Every write is a stanza the server is waited for: send it at once,
        # not after the acknowledgement of the previous one (Nagle).
        transport = self.transport
        while transport is not None and not hasattr(transport, "setTcpNoDelay"):
            transport = getattr(transport, "transport", None)
        if transport is not None:
            try:
                transport.setTcpNoDelay(True)
            except OSError:
                pass

    def dataReceived(self, data: bytes) -> None:
        if self._failure is not None or self._closing:
            return
        if self._first_stream and len(self._raw) < _RAW_BYTES:
            self._raw += data[: _RAW_BYTES - len(self._raw)]
        self._inbox += data
        if self._turn_call is None:
            self._turn()
            return
        try:
            self._recharge()
        except ProbeError as e:
            self._stop(e)
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
        self._lost_reason = reason
        if self._turn_call is None:
            self._end_of_input()

    def _end_of_input(self) -> None:
        """
        The connection is gone and what it delivered is parsed (a loss that
        arrives while bytes wait for a later turn is taken after them).
        """
        reason = self._lost_reason
        if self._failure is None and not self._closing:
            try:
                self._parser.flush()
                self._take_events()
            except ProbeError as e:
                self._take_events()
                self._fail(e, contextual=False)
        self._stop_work()
        if self._failure is None and not self._closing:
            error, contextual = self._loss_error(reason)
            self._fail(error, contextual)
            if self._tls_started and not self.tls_established:
                waiter, self._tls_waiter = self._tls_waiter, None
                if waiter is not None:
                    waiter.errback(error)
        self._deliver()

    def _loss_error(self, reason) -> tuple[ProbeError, bool]:
        """What the connection's loss means, and whether it names the wait."""
        if self._tls_started and not self.tls_established:
            if reason.check(OpenSSLError):
                return TLSFailure(f"TLS handshake failed: {_openssl_reason(reason.value)}"), False
            return TLSFailure("Server closed the connection during the TLS handshake"), False
        if reason.check(OpenSSLError):
            return TLSFailure(f"TLS error: {_openssl_reason(reason.value)}"), False
        if reason.check(ConnectionDone):
            return Closed("Server closed the connection"), True
        return Closed("Connection reset by server"), True

    # -- parsing in slices

    def _turn(self) -> None:
        """
        Parse what has arrived, at most this connection's share of the turn
        (L{Turns.share}: never more than L{TURN_BYTES} bytes and about
        L{TURN_ELEMENTS} elements), then deliver; with more left, pause the
        transport and go on in a later reactor turn.
        """
        self._turn_call = None
        parser = self._parser
        most_bytes, most_elements = self._turns.share(TURN_BYTES, TURN_ELEMENTS)
        slice_bytes = min(SLICE_BYTES, most_bytes)
        elements = parser.total_elements + most_elements
        done = 0
        try:
            while self._inbox and done < most_bytes and parser.total_elements < elements:
                chunk = bytes(self._inbox[:slice_bytes])
                del self._inbox[:slice_bytes]
                done += len(chunk)
                parser.feed(chunk)
                self._take_events()
            self._recharge()
        except ProbeError as e:
            self._stop(e)
        self._deliver()
        if self._lost and (not self._inbox or self._failure is not None or self._closing):
            self._end_of_input()
            return
        if self._failure is not None or self._closing:
            # The stream is over: nothing more is parsed, nothing is held.
            self._stop_work()
            return
        if self._inbox:
            self._pause(True)
            self._set_busy(True)
            self._turn_call = self._clock.callLater(0, self._turn)
            return
        self._set_busy(False)
        self._pause(False)
        if parser.deferred and self._flush_call is None:
            delay = max(FLUSH_DELAY_MIN, parser.unfinished / FLUSH_RATE)
            self._flush_call = self._clock.callLater(delay, self._flush)

    def _set_busy(self, busy: bool) -> None:
        """Count this connection among the busy ones of L{Turns} (or not)."""
        if busy != self._busy:
            self._busy = busy
            self._turns.busy += 1 if busy else -1

    def _flush(self) -> None:
        """Parse what the parser held back (see L{XMLStreamParser.flush})."""
        self._flush_call = None
        if self._failure is not None or self._closing:
            return
        try:
            self._parser.flush()
            self._take_events()
            self._recharge()
        except ProbeError as e:
            self._stop(e)
        self._deliver()

    def _stop(self, error: ProbeError) -> None:
        """
        End the stream on a parse error or a limit: what was parsed before
        it is still delivered, then C{error}; the connection is aborted.
        """
        self._take_events()
        self._fail(error, contextual=False)
        self._stop_work()
        self.transport.abortConnection()

    def _take_events(self) -> None:
        events, self._parser.events = self._parser.events, []
        for event in events:
            self._enqueue(event)

    def _pause(self, paused: bool) -> None:
        if paused != self._paused and not self._lost:
            self._paused = paused
            if paused:
                self.transport.pauseProducing()
            else:
                self.transport.resumeProducing()

    def _recharge(self) -> None:
        """
        Charge the budget with what this connection holds now.

        @raise TooLarge: the service-wide budget would be passed.
        """
        if not self._closing and not self._lost:
            self._charge.set(len(self._inbox) + self._parser.weight + self._queued)

    def _stop_work(self) -> None:
        """Drop unparsed bytes, the parser's state and timers, and release the budget."""
        self._inbox = bytearray()
        self._parser.close()
        for call in (self._turn_call, self._flush_call):
            if call is not None and call.active():
                call.cancel()
        self._turn_call = self._flush_call = None
        self._set_busy(False)
        self._charge.release()

    def _fail(self, error: ProbeError, contextual: bool) -> None:
        """End the stream: every wait from now on fails with C{error}."""
        self._failure = _Failure(error, contextual)
        self._queue.append(self._failure)

    # -- events

    def _enqueue(self, event) -> None:
        transcript = self._transcript
        if isinstance(event, StreamHeader):
            self.header = event
            if transcript is not None:
                transcript.add("in", _header_xml(event))
            self._queue.append(event)
        elif isinstance(event, Stanza):
            element = event.element
            if self._first_stream and self._raw_end is None:
                self._raw_end = event.end_offset
            if transcript is not None:
                transcript.add("in", lambda: to_xml(element, self._namespace))
            if is_stream_error(element):
                condition = parse_stream_error(element)
                extra = {"streamErrorText": condition.text} if condition.text else {}
                self._fail(
                    StreamError(f"XMPP stream error: {condition.condition}", extra=extra),
                    contextual=False,
                )
            else:
                self._queue.append(event)
                self._queued += event.weight
        elif isinstance(event, StreamEnd):
            if transcript is not None:
                transcript.add("in", "</stream:stream>")
            self._fail(Closed("Server closed the XMPP stream"), contextual=True)

    def _deliver(self) -> None:
        try:
            self._deliver_queued()
        finally:
            # Elements taken are the flow's now: no longer charged here.
            held = len(self._inbox) + self._parser.weight + self._queued
            if held < self._charge.held:
                self._charge.set(held)

    def _deliver_queued(self) -> None:
        while self._waiter is not None and self._queue:
            matcher, d, what = self._waiter
            event = self._queue[0]
            if isinstance(event, _Failure):
                self._end_wait()
                d.errback(event.for_wait(what))
                return
            self._queue.popleft()
            if isinstance(event, Stanza):
                self._queued -= event.weight
            try:
                taken = matcher(event)
            except ProbeError as e:
                self._end_wait()
                d.errback(e)
                return
            if taken:
                self._end_wait()
                d.callback(event)
                return

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

        return self._wait_for(matcher, "stream header", timeout)

    def read_element(
        self,
        matcher: Callable[[domish.Element], bool],
        what: str,
        timeout: float,
        *,
        large: bool = False,
    ) -> Deferred:
        """
        Wait for the next top-level element that C{matcher} accepts; elements
        it rejects (returns false for) are skipped, and it may raise a
        L{ProbeError} to stop the wait.

        @param what: words for errors: "no I{what} from the server".
        @param large: while this wait lasts, an element may be as large as
            the limits' C{max_stanza_bytes} (a roster reply) instead of
            C{max_element_bytes}; the cap is known before the bytes arrive,
            so an oversized element fails as soon as it passes it.
        @return: a Deferred that fires with the C{domish.Element}, or fails
            with L{ReadTimeout} after C{timeout} seconds of waiting, or with the
            error that ended the stream.
        """

        def match(event):
            return isinstance(event, Stanza) and matcher(event.element)

        return self._wait_for(match, what, timeout, large).addCallback(lambda event: event.element)

    def send_header(self, to: str, from_: str | None = None) -> None:
        """
        Open our stream to the server (C{to} is the XMPP domain; C{from_}
        our own, for server-to-server streams, which also declare the
        dialback namespace).
        """
        extra = ""
        if from_ is not None:
            extra += f" from={quoteattr(from_)}"
        if self._namespace == NS_SERVER:
            extra += f" xmlns:db={quoteattr(NS_DIALBACK)}"
        header = (
            f"<?xml version='1.0'?><stream:stream xmlns={quoteattr(self._namespace)} "
            f"xmlns:stream={quoteattr(NS_STREAMS)} to={quoteattr(to)}{extra} "
            "version='1.0' xml:lang='en'>"
        )
        if self._transcript is not None:
            self._transcript.add("out", header)
        self.transport.write(header.encode("utf-8"))

    def send(self, element: domish.Element) -> None:
        """Write one element, serialised (and so escaped) by the XML layer."""
        if self._transcript is not None:
            self._transcript.add("out", lambda: to_xml(element, self._namespace))
        self.transport.write(element.toXml(defaultUri=self._namespace).encode("utf-8"))

    def restart_stream(self) -> None:
        """
        Forget the current stream (RFC 6120 §4.3.3): the server's next bytes
        begin a new one.  Call before sending the new header.
        """
        self._first_stream = False
        self._queue = deque(e for e in self._queue if isinstance(e, _Failure))
        self._queued = 0
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
                "Read timeout: the TLS handshake did not complete within "
                f"{round(timeout * 1000)} ms"
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

    def close(self, polite: bool = True) -> None:
        """
        End the connection.  Polite: send C{</stream:stream>} and close,
        aborting after L{CLOSE_GRACE} seconds if the peer keeps it open.
        Otherwise, or if the stream is already broken, abort at once.
        Fails any pending wait with C{CancelledError}, and releases what the
        connection held of the service-wide budget.
        """
        if self._closing:
            return
        self._closing = True
        self._stop_work()
        if self._waiter is not None:
            _, d, _ = self._waiter
            self._end_wait()
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
