"""
Where a probe connects, and the dialling of each place in turn.

A probe names either a C{host} (then it connects there, as it always did:
C{via} C{"host"}) or only a C{domain}: then it connects as a real client or
server does (RFC 6120 section 3.2, XEP-0368):

  - C{_xmpps-client._tcp} and C{_xmpp-client._tcp} (C{_xmpps-server} and
    C{_xmpp-server} for a server-to-server stream) are asked concurrently,
    and their records merged in RFC 2782 order (L{srv.order_records}); an
    C{xmpps-} record means TLS from the first byte (XEP-0368), an C{xmpp-}
    record a plaintext stream (STARTTLS as the request's C{tls} says).
    C{tls: "direct"} uses only the C{xmpps-} records, C{tls: "none"} only
    the C{xmpp-} ones (C{via} C{"srv"});
  - no usable record (none, or the lookup failed): the fallback, the domain
    itself on 5222 (5269), plaintext (C{via} C{"fallback"}); an IP address
    as the domain goes there directly, there is nothing to look up;
  - a single C{"."} target (the service is decidedly not offered) on the
    C{xmpp-} service, or on the only service asked, with no other record:
    L{DNSError} C{"... is not offered"}, no fallback.

Each target is resolved through the request's L{resolve.Lookups} (its
bounds hold), every one of its addresses is checked against the destination
policy before any is dialled (one blocked address refuses the whole
target, as the connector refuses a name), then its addresses are dialled
in order through C{env.connect} (which checks each again and dials only
that address).  A target that does not resolve, is refused by the policy,
or accepts no connection is recorded in the L{Resolution}'s attempts, and
the next one is tried: at most L{MAX_TARGETS} targets and
L{MAX_ATTEMPTS} connection attempts in all.  Only the TCP connection
counts: a target that accepts the connection is the one the probe uses,
whatever it then says (TLS or stream failures are what the probe reports).

Nothing here has a timeout of its own: the flow's overall timeout cancels
whatever is awaited (a lookup, a connection attempt), which stops it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred

from .errors import ConnectError, DestinationBlocked, DNSError
from .names import parse_ip_literal
from .resolve import ROOT, Lookups
from .srv import _RANDOM, _ascii_domain, _gather, order_records

#: The most SRV targets (or the fallback) one probe tries.
MAX_TARGETS = 8
#: The most connection attempts (addresses dialled) one probe makes in all.
MAX_ATTEMPTS = 16

CLIENT_FALLBACK_PORT = 5222
SERVER_FALLBACK_PORT = 5269


@attrs.frozen
class Record:
    """
    An SRV record a probe may use.

    @ivar service: C{"xmpp-client"}, C{"xmpps-client"}, C{"xmpp-server"}
        or C{"xmpps-server"}.
    """

    service: str
    target: str
    port: int
    priority: int
    weight: int

    @property
    def direct(self) -> bool:
        """The record is of an XEP-0368 service: TLS from the first byte."""
        return self.service.startswith("xmpps-")


@attrs.frozen
class Attempt:
    """
    One place tried: a target and port, the address dialled (L{None} when
    none was: the target did not resolve), and how it ended.

    @ivar tls: C{"direct"} (TLS from the first byte), C{"starttls"}
        (plaintext first, STARTTLS as the request says) or C{"none"}
        (plaintext, as the request asked).
    @ivar error: why it failed, or L{None} for the connection used.
    """

    target: str
    port: int
    address: str | None
    tls: str
    error: str | None


@attrs.frozen
class Resolution:
    """
    How a probe found its server.

    @ivar via: C{"srv"}, C{"fallback"} or C{"host"}.
    @ivar record: the SRV record of the connection used (or of the last
        one tried, when none connected); L{None} without SRV.
    @ivar attempts: every attempt, in order.
    """

    via: str
    record: Record | None
    attempts: tuple[Attempt, ...]


@attrs.frozen
class Destination:
    """
    What a request says about where to connect.

    @ivar host: the host to connect to, or L{None} to look up C{domain}.
    @ivar port: with C{host}: the port.
    @ivar domain: the XMPP domain (a JID domainpart).
    @ivar tls: the request's C{tls} mode.
    @ivar server: a server-to-server stream (the C{-server} services).
    """

    host: str | None
    port: int
    domain: str
    tls: str
    server: bool = False


@attrs.frozen
class Connected:
    """
    The connection a probe uses.

    @ivar host: the target connected to (the host, an SRV target or the
        domain); with C{port}.
    @ivar direct: TLS from the first byte (C{context} is its creator).
    """

    host: str
    port: int
    direct: bool
    context: object = None


@attrs.frozen
class _Candidate:
    host: str
    port: int
    direct: bool
    record: Record | None = None


class Dialer:
    """
    Connects one probe's protocol (L{dial}) and keeps the record of how
    (L{resolution}), also when dialling failed or was cancelled.

    @param env: the probe's L{flows.Environment}: C{connect}, and for a
        domain C{resolver}, C{srv_resolver} and C{policy}.
    @param context: C{() -> creator}: a fresh TLS client creator for a
        direct-TLS connection (SNI and verification for the XMPP domain,
        ALPN C{xmpp-client} or C{xmpp-server}).
    """

    def __init__(self, env, destination: Destination, context: Callable[[], object]):
        self._env = env
        self._destination = destination
        self._context = context
        self._via = "host" if destination.host is not None else "srv"
        self._record: Record | None = None
        self._attempts: list[Attempt] = []

    def resolution(self) -> Resolution:
        """What was tried so far."""
        return Resolution(self._via, self._record, tuple(self._attempts))

    def dial(self, protocol) -> Deferred[Connected]:
        """
        Connect C{protocol} where the destination says.

        @return: a Deferred firing with L{Connected} once C{protocol} is
            connected (for direct TLS, the handshake is the caller's to
            wait for), or failing with L{DNSError}, L{ConnectError} or
            L{DestinationBlocked} (the last when no target connected and a
            target was refused by the policy).  Cancelling it stops the
            lookup or the attempt in progress.
        """
        if self._destination.host is not None:
            return Deferred.fromCoroutine(self._dial_host(protocol))
        return Deferred.fromCoroutine(self._dial_domain(protocol))

    def _tls(self, direct: bool) -> str:
        if direct:
            return "direct"
        return "none" if self._destination.tls == "none" else "starttls"

    async def _connect(self, host: str, port: int, direct: bool, protocol) -> Connected:
        if direct:
            context = self._context()
            await self._env.connect(host, port, protocol, tls_context=context)
            return Connected(host, port, True, context)
        await self._env.connect(host, port, protocol)
        return Connected(host, port, False)

    async def _dial_host(self, protocol) -> Connected:
        dest = self._destination
        direct = dest.tls == "direct"
        literal = parse_ip_literal(dest.host)
        address = None if literal is None else str(literal)
        try:
            connected = await self._connect(dest.host, dest.port, direct, protocol)
        except (DNSError, ConnectError, DestinationBlocked) as e:
            self._attempt(dest.host, dest.port, address, direct, e.message)
            raise
        peer = protocol.transport.getPeer()
        self._attempt(dest.host, dest.port, getattr(peer, "host", address), direct, None)
        return connected

    def _attempt(self, target, port, address, direct, error) -> None:
        self._attempts.append(Attempt(target, port, address, self._tls(direct), error))

    async def _dial_domain(self, protocol) -> Connected:
        env = self._env
        lookups = Lookups(env.resolver, env.srv_resolver)
        try:
            candidates = await self._candidates(lookups)
            blocked: DestinationBlocked | None = None
            dialled = 0
            for candidate in candidates:
                if dialled == MAX_ATTEMPTS:
                    break
                self._record = candidate.record
                host, port, direct = candidate.host, candidate.port, candidate.direct
                try:
                    addresses = await lookups.addresses(host)
                except DNSError as e:
                    self._attempt(host, port, None, direct, e.message)
                    continue
                try:
                    for address in addresses:
                        env.policy.check(ipaddress.ip_address(address), name=host)
                except DestinationBlocked as e:
                    self._attempt(host, port, address, direct, e.message)
                    blocked = blocked or e
                    continue
                for address in addresses:
                    if dialled == MAX_ATTEMPTS:
                        break
                    dialled += 1
                    try:
                        connected = await self._connect(address, port, direct, protocol)
                    except ConnectError as e:
                        self._attempt(host, port, address, direct, e.message)
                        continue
                    self._attempt(host, port, address, direct, None)
                    return attrs.evolve(connected, host=host)
        finally:
            lookups.close()
        if blocked is not None:
            raise blocked
        reasons = "; ".join(dict.fromkeys(a.error for a in self._attempts))
        if dialled:
            raise ConnectError(f"No server of {self._destination.domain} answered: {reasons}")
        raise DNSError(reasons)

    async def _candidates(self, lookups: Lookups) -> list[_Candidate]:
        """
        The targets to try, in order (see the module docstring).

        @raise DNSError: the service is not offered (a C{"."} target), or
            direct TLS was asked for and there is no C{xmpps-} record.
        """
        dest = self._destination
        kind = "server" if dest.server else "client"
        fallback_port = SERVER_FALLBACK_PORT if dest.server else CLIENT_FALLBACK_PORT
        bare = dest.domain.strip("[]")
        if parse_ip_literal(bare) is not None:
            self._via = "fallback"
            return [_Candidate(bare, fallback_port, False)]
        domain = _ascii_domain(dest.domain)
        services = []
        if dest.tls != "none":
            services.append(f"xmpps-{kind}")
        if dest.tls != "direct":
            services.append(f"xmpp-{kind}")
        names = [f"_{service}._tcp.{domain}" for service in services]
        answers = await _gather([Deferred.fromCoroutine(_srv(lookups, n)) for n in names])
        records = [
            Record(service, r.target, r.port, r.priority, r.weight)
            for service, found in zip(services, answers, strict=True)
            for r in found or ()
            if r.target != ROOT
        ]
        if records:
            ordered = order_records(records, _RANDOM)[:MAX_TARGETS]
            return [_Candidate(r.target, r.port, r.direct, r) for r in ordered]
        # The last service asked is xmpp- (it has the fallback), unless only xmpps- was.
        if _is_dot(answers[-1]):
            raise DNSError(
                f"{names[-1]} has a single '.' target: the service is not offered at {domain}"
            )
        if dest.tls == "direct":
            raise DNSError(f"No SRV records for {names[-1]} (direct TLS has no fallback)")
        self._via = "fallback"
        return [_Candidate(domain, fallback_port, False)]


def _is_dot(found) -> bool:
    return found is not None and len(found) == 1 and found[0].target == ROOT


async def _srv(lookups: Lookups, name: str):
    """The records of C{name}; C{[]} when it has none or the lookup failed."""
    try:
        return await lookups.srv(name)
    except DNSError:
        return []
