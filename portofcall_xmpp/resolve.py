"""
Host name -> every address, without blocking the reactor.

A resolver is any object with C{resolve(host: str) -> Deferred[list[str]]}
(L{Resolver}).  The Deferred fires with every A and AAAA address of the
name as canonical text (deduplicated; IPv4 first, then IPv6; otherwise in
the order the resolver gave them), or fails with L{DNSError}
(C{"DNS lookup failed for <host>: <reason>"}).  IP literals, in every
spelling L{parse_ip_literal} knows, never touch DNS: they resolve to
themselves, normalised (C{"2130706433"} -> C{["127.0.0.1"]}).

The returned Deferreds are cancellable: cancelling fails them with
L{CancelledError} and stops the work (see each class for what that means).

Nothing here applies the destination policy: the connector does, on every
address returned.
"""

from __future__ import annotations

import ipaddress
import typing
from collections.abc import Iterable

import attrs
import idna
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.interfaces import IHostResolution, IResolutionReceiver
from twisted.names import client, dns
from twisted.names import error as dns_error
from twisted.python.failure import Failure
from zope.interface import implementer

from portofcall_xmpp.errors import DNSError
from portofcall_xmpp.policy import parse_ip_literal

__all__ = [
    "DNSServerResolver",
    "MAX_CNAME_HOPS",
    "Resolver",
    "SystemResolver",
    "order_addresses",
]

#: The longest CNAME chain followed before giving up.
MAX_CNAME_HOPS = 8

# Characters that can appear neither in a DNS name nor in an IP literal
# once brackets and zone identifiers are refused.
_FORBIDDEN = frozenset(":%[]/\\@ \t\r\n\x00")


class Resolver(typing.Protocol):
    """What the connector needs from a resolver."""

    def resolve(self, host: str) -> Deferred[list[str]]:
        """
        @return: a cancellable Deferred that fires with every address of
            C{host} (see the module docstring) or fails with L{DNSError}.
        """


def _fail(host: str, reason: str) -> DNSError:
    return DNSError(f"DNS lookup failed for {host}: {reason}")


def _normalise(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def order_addresses(addresses: Iterable[str]) -> list[str]:
    """
    Canonicalise, deduplicate and order addresses: IPv4 first, then IPv6,
    each in the order given.  Text that is not an IP address is dropped.
    """
    seen: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    v4: list[str] = []
    v6: list[str] = []
    for text in addresses:
        addr = _normalise(text)
        if addr is None or addr in seen:
            continue
        seen.add(addr)
        (v4 if addr.version == 4 else v6).append(str(addr))
    return v4 + v6


def _literal(host: str) -> list[str] | None:
    addr = parse_ip_literal(host)
    return None if addr is None else [str(addr)]


def _early_answer(host: str):
    """
    C{(Deferred, None)} when C{host} needs no DNS (an IP literal) or cannot
    be asked (an invalid name: a L{DNSError}); else C{(None, query name)}.
    """
    literal = _literal(host)
    if literal is not None:
        return defer.succeed(literal), None
    try:
        return None, _query_name(host)
    except DNSError:
        return defer.fail(), None


def _query_name(host: str) -> str:
    """
    The ASCII name to look up for C{host} (IDNA for a non-ASCII name).

    @raise DNSError: C{host} cannot be a DNS name (empty, a bracketed or
        zone-scoped address, a URL, non-IDNA text...).
    """
    if not host or not isinstance(host, str) or _FORBIDDEN.intersection(host):
        raise _fail(host, "not a valid host name")
    if host.isascii():
        name = host
    else:
        try:
            name = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise _fail(host, "not a valid internationalised host name") from None
    bare = name[:-1] if name.endswith(".") else name
    if len(bare) > 253:
        raise _fail(host, "name longer than 253 octets")
    if any(not label or len(label) > 63 for label in bare.split(".")):
        raise _fail(host, "not a valid host name")
    return name


# ---------------------------------------------------------------------------
# The system resolver


@implementer(IResolutionReceiver)
class _Receiver:
    """Collects the addresses an L{IHostnameResolver} reports."""

    def __init__(self, host: str) -> None:
        self._host = host
        self._addresses: list[str] = []
        self._resolution: IHostResolution | None = None
        self._done = False
        self.deferred: Deferred[list[str]] = Deferred(self._cancel)

    def _cancel(self, deferred: Deferred[list[str]]) -> None:
        self._done = True
        if self._resolution is not None:
            try:
                self._resolution.cancel()
            except NotImplementedError:
                # GAIResolver cannot stop getaddrinfo in its thread; the
                # result is dropped when it arrives.
                pass

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        self._resolution = resolutionInProgress

    def addressResolved(self, address: object) -> None:
        if not self._done and isinstance(address, IPv4Address | IPv6Address):
            self._addresses.append(address.host)

    def resolutionComplete(self) -> None:
        if self._done:
            return
        self._done = True
        addresses = order_addresses(self._addresses)
        if addresses:
            self.deferred.callback(addresses)
        else:
            self.deferred.errback(_fail(self._host, "no address found"))

    def fail(self, reason: str) -> None:
        if not self._done:
            self._done = True
            self.deferred.errback(_fail(self._host, reason))


class SystemResolver:
    """
    Resolve through the reactor's C{nameResolver} (L{IHostnameResolver}; by
    default C{getaddrinfo} in a thread, so whatever the system is configured
    with: C{/etc/hosts}, C{nsswitch}, ...).

    Cancelling calls the resolution's C{cancel()}; C{getaddrinfo} itself
    cannot be interrupted, so its thread finishes and the answer is dropped.
    """

    def __init__(self, reactor) -> None:
        self._reactor = reactor

    def resolve(self, host: str) -> Deferred[list[str]]:
        """See L{Resolver.resolve}."""
        early, name = _early_answer(host)
        if early is not None:
            return early
        receiver = _Receiver(host)
        try:
            self._reactor.nameResolver.resolveHostName(receiver, name, 0)
        except Exception as e:
            receiver.fail(str(e) or e.__class__.__name__)
        return receiver.deferred


# ---------------------------------------------------------------------------
# A configured DNS server (--dns-server)


class _CancellableClientResolver(client.Resolver):
    """
    L{client.Resolver} whose UDP queries can be cancelled.

    Upstream, a cancelled query keeps its retry timer (a delayed call) until
    it expires, and C{_lookup} shares one query among concurrent identical
    lookups, so cancelling one caller's lookup would cancel the others'.
    Here each lookup has its own query, and cancelling it removes the
    pending message and its timer and closes its UDP port.

    A truncated answer is retried over TCP by L{client.Resolver.queryTCP},
    unchanged: that path is not cancellable upstream (rare for A/AAAA).
    """

    def _lookup(self, name, cls, type, timeout):
        d = self.queryUDP([dns.Query(name, type, cls)], timeout)
        return d.addCallback(self.filterAnswers)

    def _query(self, address, queries, timeout, id=None):
        try:
            interface = "::" if _normalise(address[0]).version == 6 else ""
            protocol = self._connectedProtocol(interface=interface)
        except Exception:
            return defer.fail()
        args = (address, queries, timeout) if id is None else (address, queries, timeout, id)
        inner = protocol.query(*args)
        live = protocol.liveMessages or {}
        query_id = next((key for key, (pending, _) in live.items() if pending is inner), None)
        stopped = []

        def stop() -> None:
            if not stopped and protocol.transport is not None:
                stopped.append(True)
                protocol.transport.stopListening()

        def cancel(_: Deferred) -> None:
            pending = (protocol.liveMessages or {}).pop(query_id, None)
            if pending is not None and pending[1].active():
                pending[1].cancel()
            stop()

        outer: Deferred = Deferred(cancel)

        def done(result):
            stop()
            if not outer.called:
                if isinstance(result, Failure):
                    outer.errback(result)
                else:
                    outer.callback(result)

        inner.addBoth(done)
        return outer


@attrs.frozen
class _Outcome:
    """What one of the A and AAAA lookups found."""

    addresses: tuple[str, ...] = ()
    nxdomain: bool = False
    error: str | None = None


def _describe_dns_error(exc: BaseException) -> str:
    if isinstance(exc, dns_error.DNSServerError):
        return "server failure (SERVFAIL)"
    if isinstance(exc, dns_error.DNSQueryRefusedError):
        return "query refused (REFUSED)"
    if isinstance(exc, dns_error.DNSFormatError):
        return "format error (FORMERR)"
    if isinstance(exc, dns_error.DNSNotImplementedError):
        return "not implemented (NOTIMP)"
    if isinstance(exc, dns_error.DNSQueryTimeoutError | defer.TimeoutError | TimeoutError):
        return "the DNS server did not answer"
    if isinstance(exc, dns_error.DNSUnknownError):
        return "unknown DNS error"
    return str(exc) or exc.__class__.__name__


def _address_of(record: dns.RRHeader) -> str:
    return str(ipaddress.ip_address(record.payload.address))


class DNSServerResolver:
    """
    Resolve by asking one DNS server (C{--dns-server HOST:PORT}) for the A
    and AAAA records, through L{twisted.names.client.Resolver}.

    CNAME chains in the answers are followed (at most L{MAX_CNAME_HOPS}
    links); a chain that ends without records is queried again from where it
    ended.  The name fails with L{DNSError} when it does not exist
    (NXDOMAIN), has no A or AAAA record, or the server fails for both
    types; one type failing while the other answers is fine.

    Cancelling cancels both queries: their timers are removed and their
    UDP ports closed.

    @param reactor: an L{IReactorUDP} and L{IReactorTime}.
    @param host: the server's IP address (IPv4 or IPv6 literal).
    @param port: the server's port.
    @param timeout: the per-try timeouts in seconds, as for
        L{client.Resolver} (after the last one the query fails).
    @param resolver: an L{IResolver} to use instead (for tests); it needs
        C{lookupAddress} and C{lookupIPV6Address}.
    @raise ValueError: C{host} is not an IP address.
    """

    def __init__(self, reactor, host: str, port: int, *, timeout=(1, 3, 6), resolver=None):
        if resolver is None:
            if _normalise(host) is None:
                raise ValueError(f"DNS server must be an IP address, not {host!r}")
            resolver = _CancellableClientResolver(
                servers=[(host, port)], timeout=tuple(timeout), reactor=reactor
            )
        self._resolver = resolver

    def resolve(self, host: str) -> Deferred[list[str]]:
        """See L{Resolver.resolve}."""
        early, name = _early_answer(host)
        if early is not None:
            return early
        lookups = [
            Deferred.fromCoroutine(self._lookup(host, name, dns.A)),
            Deferred.fromCoroutine(self._lookup(host, name, dns.AAAA)),
        ]
        both = DeferredList(lookups, consumeErrors=True)
        return both.addCallback(self._combine, host)

    async def _lookup(self, host: str, name: str, record_type: int) -> _Outcome:
        lookup = (
            self._resolver.lookupAddress
            if record_type == dns.A
            else self._resolver.lookupIPV6Address
        )
        # The answers name records without the root's trailing dot.
        target = dns.Name(name[:-1] if name.endswith(".") else name)
        hops = 0
        while True:
            try:
                answers, _authority, _additional = await lookup(target.name)
            except CancelledError:
                raise
            except dns_error.DNSNameError:
                return _Outcome(nxdomain=True)
            except Exception as e:
                return _Outcome(error=_describe_dns_error(e))
            queried = target
            while True:
                here = [rr for rr in answers if rr.name == target]
                found = [_address_of(rr) for rr in here if rr.type == record_type]
                if found:
                    return _Outcome(addresses=tuple(found))
                alias = next((rr.payload.name for rr in here if rr.type == dns.CNAME), None)
                if alias is None:
                    break
                hops += 1
                if hops > MAX_CNAME_HOPS:
                    return _Outcome(error=f"CNAME chain longer than {MAX_CNAME_HOPS}")
                target = alias
            if target == queried:
                return _Outcome()

    @staticmethod
    def _combine(results, host: str) -> list[str]:
        outcomes = []
        for ok, value in results:
            if not ok:
                # Cancelled (or a bug): pass it on.
                return value
            outcomes.append(value)
        addresses = order_addresses(a for outcome in outcomes for a in outcome.addresses)
        if addresses:
            return addresses
        if any(outcome.nxdomain for outcome in outcomes):
            raise _fail(host, "no such domain (NXDOMAIN)")
        errors = list(dict.fromkeys(o.error for o in outcomes if o.error is not None))
        if errors:
            raise _fail(host, "; ".join(errors))
        raise _fail(host, "no A or AAAA records")
