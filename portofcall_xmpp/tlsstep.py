"""
The TLS step of a session: STARTTLS or direct TLS (XEP-0368), the
certificate check before credentials leave, and the choice of the
channel-binding data a SCRAM -PLUS mechanism mixes in -- with the fallback
to C{tls-unique} on TLS 1.3 that ejabberd 23.01 needs.

One L{TLSStep} per connection.  It is told what the server offered
(L{TLSStep.offered}), negotiates (L{TLSStep.direct_connected} or
L{TLSStep.starttls}), and describes the outcome as a L{TLSInfo} built from
what it learnt (L{TLSStep.info}).  The trust roots come from the caller;
L{portofcall_xmpp.tlsinfo} does the handshake configuration, the
certificate report and the binding data.
"""

from __future__ import annotations

import datetime

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.words.xish import domish

from . import tlsinfo
from .errors import ProtocolViolation, SASLFailure, TLSFailure
from .parse import NS_TLS, Features
from .scram import TLS_EXPORTER, TLS_UNIQUE

TLS13_UNIQUE_WARNING = (
    "tls-unique is undefined on TLS 1.3 (RFC 8446, RFC 9266); sent the client Finished "
    "message, as ejabberd 23.01 expects"
)


@attrs.frozen
class TLSInfo:
    """
    What the server said about TLS, and what became of it.

    @ivar available: STARTTLS offered (or the connection is direct TLS).
    @ivar required: C{<required/>} inside C{<starttls>}.
    @ivar negotiated: TLS is up.
    @ivar direct: TLS from the first byte (XEP-0368).
    @ivar report: protocol, cipher and certificate, once negotiated.
    @ivar features: the features block after STARTTLS (not for direct TLS).
    """

    available: bool
    required: bool
    negotiated: bool = False
    direct: bool = False
    report: tlsinfo.TLSReport | None = None
    features: Features | None = None


@attrs.frozen
class ChannelBinding:
    """
    The channel-binding data for a SCRAM -PLUS mechanism.

    @ivar kind: the type (C{tls-exporter}, C{tls-server-end-point}, C{tls-unique}).
    @ivar by_default: chosen by the RFC default for the TLS version, because
        neither the caller nor the server (XEP-0440) named a type.
    """

    kind: str
    data: bytes = attrs.field(repr=False)
    by_default: bool = False


class TLSStep:
    """
    TLS for one connection.

    @param proto: the L{portofcall_xmpp.protocol.XMPPClientProtocol}.
    @param trace: the probe's L{portofcall_xmpp.flows.Trace} (phases, warnings).
    @param trust: the L{tlsinfo.Trust} certificates are verified against.
    @param server: a server-to-server stream: the certificate is checked as a
        server's (SRV-IDs C{_xmpp-server}, C{_xmpps-server}), direct TLS offers
        ALPN C{xmpp-server}.
    @param version: offer only this TLS version (L{tlsinfo.version_context}),
        to test whether the server accepts it; by default TLS 1.2 and later.
    """

    def __init__(
        self,
        proto,
        trace,
        *,
        trust: tlsinfo.Trust,
        clock: IReactorTime,
        read_timeout: float,
        domain: str,
        server: bool = False,
        version: str | None = None,
    ):
        self._proto = proto
        self._trace = trace
        self._trust = trust
        self._clock = clock
        self._read_timeout = read_timeout
        self._domain = domain
        self._services = tlsinfo.SERVER_SERVICES if server else tlsinfo.CLIENT_SERVICES
        self._alpn = tlsinfo.XMPP_SERVER_ALPN if server else tlsinfo.XMPP_CLIENT_ALPN
        self._version = version
        self._available = self._required = self._direct = False
        self._connection = None
        self._report: tlsinfo.TLSReport | None = None
        self._features: Features | None = None

    @property
    def negotiated(self) -> bool:
        return self._report is not None

    def info(self) -> TLSInfo:
        """What is known so far."""
        return TLSInfo(
            available=self._available,
            required=self._required,
            negotiated=self.negotiated,
            direct=self._direct,
            report=self._report,
            features=self._features,
        )

    def direct_context(self) -> tlsinfo.ClientCreator:
        """
        A fresh TLS client creator for a connection that is TLS from the
        first byte (XEP-0368): SNI for the domain, ALPN C{xmpp-client} or
        C{xmpp-server}.
        """
        return self._creator(self._alpn)

    async def direct_connected(self, creator: tlsinfo.ClientCreator) -> None:
        """
        The connection made with C{creator} (L{direct_context}) is TLS from
        the first byte: wait for the handshake.
        """
        self._proto.expect_tls()
        await self._proto.wait_handshake(self._read_timeout)
        self._trace.phase("tls_connected")
        self._available = self._direct = True
        self._negotiated(creator)

    def offered(self, features: Features) -> None:
        """The server's first features block (plaintext) says what it offers."""
        if not self._direct:
            self._available, self._required = features.starttls, features.starttls_required

    def reopened(self, features: Features) -> None:
        """The features block of the stream opened over TLS after STARTTLS."""
        self._features = features

    async def starttls(self, features: Features, mode: str) -> bool:
        """
        C{auto} negotiates STARTTLS when offered, C{required} fails (errorType
        C{tls}) when it is not, C{none} and C{direct} do nothing.

        @return: whether STARTTLS was negotiated (a new stream is due).
        """
        if mode == "required" and not features.starttls:
            raise TLSFailure(
                "TLS required but the server does not offer STARTTLS "
                f"(features: {', '.join(features.features) or 'none'})"
            )
        if mode not in ("auto", "required") or not features.starttls:
            return False
        self._proto.send(domish.Element((NS_TLS, "starttls")))
        reply = await self._proto.read_element(
            _expect_starttls_reply, "STARTTLS reply", self._read_timeout
        )
        if reply.name == "failure":
            raise TLSFailure("Server answered STARTTLS with <failure/>")
        creator = self._creator(None)
        await self._proto.start_tls(creator, self._read_timeout)
        self._trace.phase("starttls_upgraded")
        self._negotiated(creator)
        return True

    def _creator(self, alpn) -> tlsinfo.ClientCreator:
        if self._version is None:
            return tlsinfo.client_context(self._trust, self._domain, alpn=alpn)
        return tlsinfo.version_context(self._trust, self._domain, self._version, alpn=alpn)

    def _negotiated(self, creator: tlsinfo.ClientCreator) -> None:
        self._connection = self._proto.tls_connection() or creator.connection
        now = datetime.datetime.fromtimestamp(self._clock.seconds(), datetime.UTC)
        self._report = tlsinfo.report(
            self._connection, self._domain, self._trust, now, services=self._services
        )
        if self._report.certificate is not None:
            for warning in self._report.certificate.warnings:
                self._trace.warn(warning)

    def check_certificate(self) -> None:
        """
        Stop before any credential leaves when TLS is up and the certificate
        does not verify for the domain (C{tlsVerify: true}).
        """
        if not self.negotiated:
            return
        cert = self._report.certificate
        if cert is not None and cert.verified:
            return
        why = cert.verify_error if cert is not None else "the server sent no certificate"
        how = "pass tlsVerify: false to log in anyway"
        if cert is None or (cert.parsed and not cert.chain_verified):
            how += ", or start the service with --ca-file naming the CA that issued it"
        raise TLSFailure(
            f"TLS certificate of {self._domain} did not verify: {why}; "
            f"no credentials were sent ({how})"
        )

    def binding(self, features: Features, forced: str | None) -> ChannelBinding | None:
        """
        The channel-binding data for SCRAM -PLUS (SPEC §4): C{forced} when the
        caller named a type, else a type the server advertises (XEP-0440),
        else the RFC default for the TLS version.  C{None} without TLS, or
        when no type the server would accept can be computed.

        @raise SASLFailure: C{forced} cannot be computed on this connection.
        """
        if self._connection is None:
            if forced is not None:
                raise SASLFailure(
                    f"channelBinding {forced} needs TLS, and this connection has none"
                )
            return None
        if forced is None:
            chosen = tlsinfo.default_binding(self._connection, features.channel_bindings)
            if chosen is None:
                return None
            return ChannelBinding(*chosen, by_default=not features.channel_bindings)
        data = tlsinfo.channel_binding(self._connection, forced)
        if not data and forced == TLS_UNIQUE:
            data = tlsinfo.tls_unique_tls13_compat(self._connection)
            if data:
                self._trace.warn(TLS13_UNIQUE_WARNING)
        if not data:
            raise SASLFailure(
                f"channelBinding {forced} is not available on this connection "
                f"({self._report.protocol})"
            )
        return ChannelBinding(forced, data)

    def unique_fallback(
        self, binding: ChannelBinding | None, used: str | None, error: SASLFailure
    ) -> ChannelBinding | None:
        """
        After the server refused a -PLUS login bound with C{tls-exporter} by
        default (the RFC 9266 default on TLS 1.3, the server having advertised
        no binding types): C{tls-unique} computed as ejabberd 23.01 does on
        TLS 1.3 (the client Finished message), for one more attempt on the
        same stream (RFC 6120 §6.4.5 allows retries).

        @param used: the binding type the refused attempt sent, if any.
        @return: the binding to retry with, or C{None} (do not retry).
        """
        if not (
            binding is not None
            and binding.by_default
            and used == TLS_EXPORTER
            and "saslCondition" in error.extra
        ):
            return None
        data = tlsinfo.tls_unique_tls13_compat(self._connection)
        if not data:
            return None
        text = error.extra.get("saslText")
        self._trace.warn(
            f"the server refused channel binding tls-exporter ({error.extra['saslCondition']}"
            f"{': ' + text if text else ''}); retried with tls-unique"
        )
        self._trace.warn(TLS13_UNIQUE_WARNING)
        return ChannelBinding(TLS_UNIQUE, data)


def _expect_starttls_reply(element) -> bool:
    if element.uri == NS_TLS and element.name in ("proceed", "failure"):
        return True
    raise ProtocolViolation(
        "Expected <proceed/> or <failure/> after <starttls/>, "
        f"got <{element.name} xmlns='{element.uri or ''}'>"
    )
