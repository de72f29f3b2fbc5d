"""
The production connector: resolve once, check every address, dial only
checked addresses.

    connector = Connector(reactor, resolver, Policy(), 5.0)
    proto = await connector.connect("xmpp.example", 5222, XMPPProtocol(...))

Never C{HostnameEndpoint}: it would resolve the name again, and the second
answer (DNS rebinding) would never have been checked.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.protocol import Factory, Protocol

from .errors import ConnectError, DNSError
from .names import IPAddress, parse_address, parse_ip_literal
from .policy import Policy
from .resolve import Resolver


def _endpoint_text(addr: IPAddress, port: int) -> str:
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


def describe_connect_failure(exc: BaseException, timeout: float) -> str:
    """
    A short description of why one connection attempt failed, e.g.
    C{"Connection refused"} or C{"Connection timed out after 5000 ms"}.

    @param timeout: the connect timeout in seconds (named in the text when
        it expired).
    """
    if isinstance(exc, error.ConnectionRefusedError):
        return "Connection refused"
    if isinstance(exc, error.TimeoutError):
        return f"Connection timed out after {round(timeout * 1000)} ms"
    if isinstance(exc, error.TCPTimedOutError):
        return "Connection timed out"
    if isinstance(exc, error.ConnectError):
        # getConnectError() puts the OS's strerror in args[0]:
        # "No route to host", "Network is unreachable", ...
        text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
        if text:
            return text[:1].upper() + text[1:].rstrip(".")
        if isinstance(exc, error.NoRouteError):
            return "No route to host"
        return (exc.__doc__ or "Connection failed").strip().splitlines()[0].rstrip(".")
    return str(exc) or exc.__class__.__name__


class Connector:
    """
    Connect to C{host:port} on behalf of a caller, within the policy.

    @param reactor: an L{IReactorTCP} (and L{IReactorTime}; the connect
        timeout is enforced by the reactor's connector).
    @param resolver: a L{portofcall_xmpp.resolve.Resolver}.
    @param policy: the L{Policy} every resolved address must pass.
    @param connect_timeout: seconds allowed for each TCP connection attempt.
    @param admit: called with each address (text) just before it is dialled;
        raises to refuse it (C{--per-target-rate}: L{RateLimited}), which
        stops the connection attempt.  By default every dial is admitted.
    """

    def __init__(
        self,
        reactor,
        resolver: Resolver,
        policy: Policy,
        connect_timeout: float,
        admit: Callable[[str], None] | None = None,
    ) -> None:
        self._reactor = reactor
        self._resolver = resolver
        self._policy = policy
        self._connect_timeout = connect_timeout
        self._admit = admit

    def connect(
        self, host: str, port: int, protocol: Protocol, *, tls_context=None, ip_version=None
    ) -> Deferred[Protocol]:
        """
        Connect C{protocol} to C{host:port}.

        C{host} is resolved once (an IP literal, in any spelling, is not
        resolved).  Every address is checked against the policy before any
        is dialled: if one is blocked, the whole name is refused (a name
        that resolves to a public and a private address is a DNS-rebinding
        trick).  The addresses are then tried in order (IPv4 first) until
        one accepts.

        @param protocol: one protocol instance; it is only connected by the
            attempt that succeeds (a failed attempt never calls
            C{connectionMade}), so it is reused from one address to the next.
        @param tls_context: an L{IOpenSSLClientConnectionCreator} (e.g.
            C{optionsForClientTLS(domain)}): when given, TLS starts with the
            first byte (XEP-0368 direct TLS) and C{protocol} speaks through it.
        @param ip_version: 4 or 6 to dial only the addresses of that family
            (C{restrict_ip_version} of a C{/probe} module), L{None} for any.

        @return: a Deferred that fires with C{protocol} once it is connected
            (C{connectionMade} has run), or fails with L{DNSError},
            L{DestinationBlocked}, or L{ConnectError} (one reason per address
            tried, joined with C{"; "}, e.g. C{"Connection refused:
            127.0.0.1:5222"}; C{"No IPv6 address: ..."} when C{ip_version}
            left none).  Cancelling it at any stage stops the
            resolution or the connection attempt in progress and fails it
            with L{CancelledError}; no connection is left behind.
        """
        return Deferred.fromCoroutine(
            self._connect(host, port, protocol, tls_context, ip_version)
        )

    async def _connect(self, host, port, protocol, tls_context, ip_version):
        literal = parse_ip_literal(host)
        addresses = [literal] if literal is not None else await self._resolve(host)
        for addr in addresses:
            self._policy.check(addr, name=None if literal is not None else host)
        if ip_version is not None:
            kept = [addr for addr in addresses if addr.version == ip_version]
            if not kept:
                found = ", ".join(_endpoint_text(addr, port) for addr in addresses)
                raise ConnectError(f"No IPv{ip_version} address: {found}")
            addresses = kept
        reasons = []
        for addr in addresses:
            if self._admit is not None:
                self._admit(str(addr))
            try:
                return await self._dial(addr, port, protocol, tls_context)
            except error.ConnectingCancelledError:
                raise CancelledError() from None
            except (error.ConnectError, OSError) as e:
                reason = describe_connect_failure(e, self._connect_timeout)
                reasons.append(f"{reason}: {_endpoint_text(addr, port)}")
        raise ConnectError("; ".join(reasons))

    async def _resolve(self, host: str) -> list[IPAddress]:
        texts = await self._resolver.resolve(host)
        addresses = []
        for text in texts:
            address = parse_address(text)
            if address is None:
                raise DNSError(f"DNS lookup failed for {host}: invalid address {text!r}")
            addresses.append(address)
        if not addresses:
            raise DNSError(f"DNS lookup failed for {host}: no address found")
        return addresses

    def _dial(self, addr: IPAddress, port: int, protocol: Protocol, tls_context):
        endpoint_type = TCP4ClientEndpoint if addr.version == 4 else TCP6ClientEndpoint
        endpoint = endpoint_type(self._reactor, str(addr), port, timeout=self._connect_timeout)
        if tls_context is not None:
            endpoint = wrapClientTLS(tls_context, endpoint)
        return endpoint.connect(_OneShotFactory(protocol))


class _OneShotFactory(Factory):
    """Hand out one protocol instance, quietly (one log line per probe)."""

    noisy = False

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr):
        return self._protocol
