"""
HTTP(S) requests within the destination policy: for XEP-0156 discovery
(L{portofcall_xmpp.discover}) and the BOSH transport.

    client = HTTPClient(env)
    response = await client.request(b"GET", "https://example.org/.well-known/host-meta")
    client.check_certificates()        # TLSFailure unless every certificate verified

An C{Agent} built with an endpoint factory (L{HTTPClient.endpointForURI}):
every connection goes through C{env.connect} (L{connect.Connector}: the
URL's host resolved, every address checked against the policy, only a
checked address dialled), with TLS for C{https}/C{wss} (SNI for the URL's
host).  The host is resolved once: later connections of the same client go
to the address the first one reached.  The certificate is not verified
during the handshake (L{tlsinfo.client_context}); L{HTTPClient.check_certificates}
verifies every one for the URL's host before anything that matters is sent.

Redirects are not followed (the C{Location} is reported); every body is read
with a size cap (L{read_body}).
"""

from __future__ import annotations

import datetime
from io import BytesIO

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from . import tlsinfo
from .errors import Closed, TLSFailure, TooLarge
from .names import parse_ip_literal
from .stream import DEFAULT_MAX_ELEMENT_BYTES

#: The largest response body read (a host-meta document, a BOSH body).
MAX_BODY_BYTES = DEFAULT_MAX_ELEMENT_BYTES

#: No SRV-ID is looked for in a web server's certificate: DNS-IDs only.
HTTP_SERVICES: tuple[str, ...] = ()


@attrs.frozen
class HTTPResponse:
    """
    One answer, its body read.

    @ivar headers: the response's C{Headers}.
    """

    url: str
    status: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header C{name}, as text, or L{None}."""
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    @property
    def content_type(self) -> str | None:
        return self.header("Content-Type")

    @property
    def location(self) -> str | None:
        return self.header("Location")


@implementer(IAgentEndpointFactory)
class HTTPClient:
    """
    HTTP requests of one probe to one host (the one of the first URL asked
    for; see the module docstring).

    @param env: the probe's L{flows.Environment} (C{connect}, C{clock}, C{trust}).
    @param limit: the largest body L{request} reads.
    """

    def __init__(self, env, *, limit: int = MAX_BODY_BYTES):
        self._env = env
        self._limit = limit
        self._address: str | None = None
        self._creators: list[tuple[str, tlsinfo.ClientCreator]] = []
        self._reports: dict[int, tlsinfo.TLSReport] = {}
        self.agent = Agent.usingEndpointFactory(
            env.clock, self, pool=HTTPConnectionPool(env.clock, persistent=False)
        )

    # IAgentEndpointFactory
    def endpointForURI(self, uri) -> IStreamClientEndpoint:
        host = uri.host.decode("ascii").strip("[]")
        creator = None
        if uri.scheme in (b"https", b"wss"):
            creator = tlsinfo.client_context(self._env.trust, host)
            self._creators.append((host, creator))
        return _CheckedEndpoint(self, host, uri.port, creator)

    async def connect(self, host: str, port: int, protocol: Protocol, creator):
        """
        Connect C{protocol} through C{env.connect}: to C{host} the first
        time, then to the address that connection reached.
        """
        where = self._address or host
        connected = await self._env.connect(where, port, protocol, tls_context=creator)
        if self._address is None:
            peer = connected.transport.getPeer()
            if parse_ip_literal(peer.host) is not None:
                self._address = peer.host
        return connected

    def first_creator(self) -> tlsinfo.ClientCreator | None:
        """The TLS creator of the first connection, if any."""
        return self._creators[0][1] if self._creators else None

    def tls_context(self, host: str) -> tlsinfo.ClientCreator:
        """A TLS creator for C{host} whose certificate L{check_certificates} verifies."""
        creator = tlsinfo.client_context(self._env.trust, host)
        self._creators.append((host, creator))
        return creator

    async def request(
        self, method: bytes, url: str, headers: Headers | None = None, body: bytes | None = None
    ) -> HTTPResponse:
        """
        Send one request; read the answer's body (at most the limit).

        @return: the L{HTTPResponse}, whatever its status (a redirect is
            reported, not followed).
        @raise TooLarge: the body is larger than the limit.
        @raise Closed: the connection was lost before the body ended.
        """
        producer = None if body is None else FileBodyProducer(BytesIO(body), self._env.clock)
        response = await self.agent.request(method, url.encode("ascii"), headers, producer)
        data = await read_body(response, self._limit)
        return HTTPResponse(url, response.code, response.headers, data)

    def tls_report(self) -> tlsinfo.TLSReport | None:
        """The TLS report of the first connection whose handshake completed, if any."""
        self._report_all()
        for _, creator in self._creators:
            report = self._reports.get(id(creator))
            if report is not None:
                return report
        return None

    def check_certificates(self) -> tlsinfo.TLSReport | None:
        """
        Verify the certificate of every TLS connection made so far whose
        handshake completed, for the URL's host.

        @return: the first connection's report (L{None} without TLS).
        @raise TLSFailure: one did not verify.
        """
        self._report_all()
        for host, creator in self._creators:
            report = self._reports.get(id(creator))
            if report is None:
                continue
            cert = report.certificate
            if cert is None or not cert.verified:
                why = cert.verify_error if cert is not None else "the server sent no certificate"
                raise TLSFailure(f"TLS certificate of {host} did not verify: {why}")
        return self.tls_report()

    def _report_all(self) -> None:
        now = datetime.datetime.fromtimestamp(self._env.clock.seconds(), datetime.UTC)
        for host, creator in self._creators:
            if id(creator) in self._reports:
                continue
            connection = creator.connection
            if connection is None or connection.get_peer_certificate() is None:
                continue
            self._reports[id(creator)] = tlsinfo.report(
                connection, host, self._env.trust, now, services=HTTP_SERVICES
            )


@implementer(IStreamClientEndpoint)
class _CheckedEndpoint:
    """Connect through the policy (L{HTTPClient.connect})."""

    def __init__(self, client: HTTPClient, host: str, port: int, creator):
        self._client = client
        self._host = host
        self._port = port
        self._creator = creator

    def connect(self, factory):
        protocol = factory.buildProtocol(None)
        return Deferred.fromCoroutine(
            self._client.connect(self._host, self._port, protocol, self._creator)
        )


class _Body(Protocol):
    def __init__(self, limit: int, done: Deferred):
        self._limit = limit
        self._done = done
        self._size = 0
        self._chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._chunks = []
            self.transport.stopProducing()
            self._done.errback(
                TooLarge(
                    f"Server sent a response body larger than the limit of {self._limit} bytes"
                )
            )
            return
        self._chunks.append(data)

    def connectionLost(self, reason) -> None:
        if self._done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._chunks))
        else:
            self._done.errback(Closed("The server closed the connection before the response ended"))


def read_body(response, limit: int = MAX_BODY_BYTES) -> Deferred[bytes]:
    """
    The body of C{response} (an C{IResponse}), at most C{limit} bytes.

    @return: a Deferred firing with the bytes, or failing with L{TooLarge}
        (the rest is not read: the connection is dropped) or L{Closed}.
        Cancelling it drops the connection.
    """
    protocol = None
    done = Deferred(lambda _: protocol.transport.stopProducing())
    protocol = _Body(limit, done)
    response.deliverBody(protocol)
    return done
