"""
C{POST /api/xmpp/bosh}: XMPP over BOSH (XEP-0124, XEP-0206), on C{treq}
over the service's policy-checked C{Agent} (L{httpagent.HTTPClient}).

The URL is the caller's or the first BOSH link of the domain's host-meta
(L{discover}).  The session is created with C{hold=1}, C{wait} the
per-read timeout; each element the flow sends is one request, and while the
flow waits for an element and no request is out, an empty request polls
for it.  Every response body is read with the body cap and parsed as one
C{<body/>} element by the bounded stream parser (L{webstream.Channel}); its
children are the stream's elements.  A response that is not HTTP 200 (a
redirect is not followed), a C{<body/>} that does not parse, or
C{type='terminate'} ends the probe with a typed error.  Closing cancels
every request still out (no connection is left behind) after a
C{type='terminate'} request given at most L{CLOSE_GRACE} seconds.
"""

from __future__ import annotations

import os

import treq.client
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.web.http_headers import Headers
from twisted.words.xish import domish

from . import discover
from .errors import (
    Closed,
    DestinationBlocked,
    ProbeError,
    ProtocolViolation,
    ReadTimeout,
    StreamError,
)
from .flows import Trace
from .httpagent import HTTPClient, read_body
from .parse import NS_CLIENT
from .stream import StreamHeader
from .tlsstep import TLSStep
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

NS_HTTPBIND = "http://jabber.org/protocol/httpbind"
NS_XBOSH = "urn:xmpp:xbosh"
NS_XML = "http://www.w3.org/XML/1998/namespace"
DEFAULT_PORTS = {"http": 80, "https": 443}
BOSH_VERSION = "1.6"
#: Seconds a terminate request may take when closing.
CLOSE_GRACE = 1.0

_HEADERS = {"Content-Type": ["text/xml; charset=utf-8"], "User-Agent": ["portofcall"]}


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() and len(value) < 10 else None


class BOSHChannel(Channel):
    """
    One BOSH session.

    @ivar attributes: the session creation response's C{<body/>} attributes
        (C{sid}, C{wait}, C{hold}, ...), once it came.
    """

    def __init__(self, clock, limits, transcript, client: HTTPClient, url: str, wait: int):
        super().__init__(clock, limits, transcript)
        self._client = client
        self._http = treq.client.HTTPClient(client.agent)
        self._url = url
        self._wait = wait
        self._rid = int.from_bytes(os.urandom(4), "big") % 2**31 + 1
        self._out: set[Deferred] = set()
        self._to: str | None = None
        self.attributes: dict[str, str] | None = None
        self._created: Deferred | None = None
        self._restart_due = False

    # -- requests

    def _body(self, **attributes) -> domish.Element:
        body = domish.Element((NS_HTTPBIND, "body"))
        body["rid"] = str(self._rid)
        self._rid += 1
        if self.attributes is not None:
            body["sid"] = self.attributes["sid"]
        for name, value in attributes.items():
            body[name] = value
        return body

    def _post(self, body: domish.Element) -> Deferred:
        d = Deferred.fromCoroutine(self._exchange(body.toXml().encode("utf-8")))
        self._out.add(d)

        def done(result):
            self._out.discard(d)
            return result

        d.addBoth(done)
        d.addCallbacks(self._answered, self._request_failed)
        return d

    async def _exchange(self, data: bytes) -> bytes:
        response = await self._http.post(
            self._url, data=data, headers=Headers(_HEADERS), allow_redirects=False
        )
        # Read (at most the cap of) every body, so that no connection is left waiting.
        body = await read_body(response)
        self._client.check_certificates()
        if response.code != 200:
            location = response.headers.getRawHeaders("Location", [None])[0]
            where = f" to {location} (not followed)" if location else ""
            raise ProtocolViolation(f"BOSH server answered HTTP {response.code}{where}")
        return body

    def _request_failed(self, failure) -> None:
        # A blocked destination reaches the flow as it is (the web layer's 403).
        if failure.check(ProbeError, DestinationBlocked):
            self.fail(failure.value)
        elif not failure.check(CancelledError):
            self.fail(Closed(f"BOSH request failed: {failure.getErrorMessage()}"))

    def _answered(self, data: bytes) -> None:
        if self.error is None:
            self.received(data)
            self._poll()

    def unwrap(self, body: domish.Element) -> None:
        """A response's C{<body/>}: its attributes, then its children as the stream's."""
        if body.uri != NS_HTTPBIND or body.name != "body":
            self.fail(ProtocolViolation("BOSH server answered with something other than <body/>"))
            return
        if self.attributes is None:
            attributes = {k if isinstance(k, str) else k[1]: v for k, v in body.attributes.items()}
            if "sid" not in attributes:
                self.fail(ProtocolViolation("BOSH session creation answered without a sid"))
                return
            self.attributes = attributes
            self._created.callback(attributes)
        self.elements(list(body.elements()))
        if self.error is None and body.getAttribute("type") == "terminate":
            condition = body.getAttribute("condition") or "unknown"
            self.fail(StreamError(f"BOSH session terminated by the server: {condition}"))

    def _poll(self) -> None:
        """While the flow waits and nothing is queued or out: ask for what comes next."""
        if (
            self._waiter is not None
            and not self._queue
            and not self._out
            and self.error is None
            and self.attributes is not None
        ):
            self._post(self._body())

    def read_element(self, matcher, what: str, timeout: float, *, large: bool = False):
        d = super().read_element(matcher, what, timeout, large=large)
        self._poll()
        return d

    # -- the protocol interface

    def write(self, element: domish.Element) -> None:
        """One element, one request (its C{<body/>} carries it)."""
        body = self._body()
        serialise(element)
        body.addChild(element)
        self._post(body)

    def send_header(self, to: str, from_: str | None = None) -> None:
        """
        The session creation request the first time; after L{restart_stream},
        the restart request (XEP-0206 §5); otherwise nothing (the session
        was created before the stream began: L{create}).
        """
        if self._created is None:
            self.create(to)
        elif self._restart_due:
            self._restart_due = False
            body = self._body(to=to)
            body[(NS_XML, "lang")] = "en"
            body[(NS_XBOSH, "restart")] = "true"
            body.localPrefixes["xmpp"] = NS_XBOSH
            self._post(body)

    def create(self, to: str) -> None:
        """Send the session creation request (XEP-0124 §7.1, XEP-0206 §3)."""
        self._to = to
        self._created = Deferred()
        body = self._body(
            to=to,
            wait=str(self._wait),
            hold="1",
            ver=BOSH_VERSION,
            content="text/xml; charset=utf-8",
        )
        body[(NS_XML, "lang")] = "en"
        body[(NS_XBOSH, "version")] = "1.0"
        body.localPrefixes["xmpp"] = NS_XBOSH
        self._post(body)

    def read_header(self, timeout: float):
        if self.attributes is not None:
            return succeed(self._header())

        def timed_out(result, timeout_):
            raise ReadTimeout(
                "Read timeout: no BOSH session creation response from the server within "
                f"{round(timeout * 1000)} ms"
            )

        created = self._created
        created.addTimeout(timeout, self._clock, onTimeoutCancel=timed_out)
        return created.addCallback(lambda _: self._header())

    def _header(self) -> StreamHeader:
        a = self.attributes
        return StreamHeader(
            id=a.get("authid"),
            from_=a.get("from"),
            to=self._to,
            version=a.get("version") or "1.0",
            lang=a.get("lang"),
            default_ns=NS_CLIENT,
        )

    def restart_stream(self) -> None:
        """XEP-0206 §5: the next L{send_header} sends the restart request."""
        self._restart_due = True

    def fail(self, error) -> None:
        super().fail(error)
        if self._created is not None and not self._created.called:
            self._created.errback(self.error)

    def lost(self) -> None:
        for d in list(self._out):
            d.cancel()

    def close(self, polite: bool = True) -> None:
        out = list(self._out)
        if polite and self.error is None and self.attributes is not None:
            self.error = Closed("closed")
            terminate = self._post(self._body(type="terminate"))
            terminate.addTimeout(CLOSE_GRACE, self._clock)
            terminate.addErrback(lambda _: None)
        self.error = self.error or Closed("closed")
        for d in out:
            d.cancel()


class _UnboundTLS(TLSStep):
    """BOSH spreads one session over several connections: no channel binding."""

    def binding(self, features, forced):
        return None


def bosh(env, req, started: float | None = None) -> Deferred:
    """
    A BOSH probe (SPEC §10): the session, the stream, and with credentials a
    login.

    @param req: a C{validate.WebRequest}.
    @return: a Deferred firing with a L{webstream.WebResult}, or failing
        with L{flows.Failed} or L{DestinationBlocked}.
    """
    trace = Trace(env.clock, env.clock.seconds() if started is None else started, req.transcript)
    state: dict = {"url": req.url}

    async def run():
        url, discovered = req.url, False
        if url is None:
            url, discovered = await discover.first_link(env, req.domain, "bosh"), True
            state["url"] = url
        scheme, host, port = split_url(url, DEFAULT_PORTS)
        client = HTTPClient(env)
        wait = max(1, int(env.read_timeout) - 1)
        channel = BOSHChannel(env.clock, env.limits, trace.transcript, client, url, wait)
        session = state["session"] = WebSession(env, trace, channel, req.domain, host, port)
        session.tls = _UnboundTLS(
            channel,
            trace,
            trust=env.trust,
            clock=env.clock,
            read_timeout=env.read_timeout,
            domain=host,
        )
        try:
            if scheme == "https":
                channel.create(req.domain)
                await channel.read_header(env.read_timeout)
                await session.tls.direct_connected(client.first_creator())
            done = await login(session, req, plaintext_chosen=scheme == "http" and not discovered)
        finally:
            session.close()
        a = channel.attributes
        return WebResult(
            url=url,
            domain=req.domain,
            discovered=discovered,
            transport=WebTransport(
                "bosh",
                url,
                sid=a["sid"],
                wait=_int(a.get("wait")),
                hold=_int(a.get("hold")),
                requests=_int(a.get("requests")),
                inactivity=_int(a.get("inactivity")),
                ver=a.get("ver"),
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
