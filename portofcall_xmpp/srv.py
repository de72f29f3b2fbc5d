"""
SRV lookup for C{POST /api/xmpp/srv} (SPEC.md section 7): where a client
or a server would connect for a domain, in the order it would try.

Two pieces:

  - An SRV resolver: any object with C{lookup_srv(name: str) ->
    Deferred[list[SRVRecord]]} (L{SRVResolver}).  L{make_srv_resolver}
    builds the production one, L{DNSSRVResolver}, over
    L{twisted.names.client.Resolver}: it asks C{--dns-server}, else the
    name servers of C{/etc/resolv.conf} (read once, when it is built).
  - L{lookup}: queries the four XMPP services of a domain concurrently,
    orders each service's records as RFC 2782 says a client tries them,
    resolves every target (A and AAAA, through the service's address
    resolver) and reports it all as an L{SRVReport}; L{to_json} turns that
    into the response body.

Addresses are reported, never connected to, so the destination policy does
not refuse anything here: each address is marked with C{allowed}, whether
the service's own policy (C{--allow-private}) would let a probe connect to
it, so an operator sees which targets this service could probe.

The JSON shape (L{to_json}; the web layer adds C{"success": true}); every
key is always present::

    {"domain": "example.com",            # as given (RFC 7622 form, U-labels)
     "services": {                       # always these four keys, in this order
       "xmpp-client": {
         "name": "_xmpp-client._tcp.example.com",   # the name queried (A-labels)
         "status": "ok",                 # "ok" | "none" | "unavailable" | "error"
         "nxdomain": false,              # "none" because the name does not exist
         "records": [                    # the order a client tries them
           {"priority": 5, "weight": 10, "port": 5222,
            "target": "xmpp.example.com",            # without the trailing dot
            "addresses": [{"address": "192.0.2.1", "allowed": true},
                          {"address": "2001:db8::1", "allowed": true}],
            "error": null}               # why the target has no address, else null
         ],
         "fallback": null,               # or {"host", "port", "addresses", "error"}
         "error": null},                 # status "error": why, else null
       "xmpps-client": {...}, "xmpp-server": {...}, "xmpps-server": {...}},
     "elapsedMs": 12}

C{status}:

  - C{"ok"}: SRV records were found; C{records} lists them.
  - C{"none"}: there are no SRV records; C{nxdomain} says why: C{true} when
    the server answered that the name does not exist (NXDOMAIN; the usual
    answer for a domain without XMPP SRV records, whether or not the domain
    itself exists), C{false} when the name exists without SRV records.
  - C{"unavailable"}: the answer is a single record with target C{"."}
    (RFC 2782; RFC 6120 section 3.2: the service is decidedly not
    available at this domain, and a client must not fall back).
    C{records} is C{[]} and C{fallback} C{null}.
  - C{"error"}: the lookup itself failed: C{error} says how (the server
    failed (SERVFAIL), refused, did not answer, ...).  One service failing
    does not affect the others.

C{fallback} is what a client does when SRV gives it nothing: for
C{xmpp-client} and C{xmpp-server} with status C{"none"} or C{"error"},
C{{"host": <the domain in A-labels>, "port": 5222 | 5269, "addresses":
[...], "error": ...}}, with the domain's addresses resolved like a
target's (so a domain that does not exist shows up here, as C{"DNS lookup
failed for <domain>: no such domain (NXDOMAIN)"}).  The XEP-0368 services
(C{xmpps-*}) have no fallback: always C{null}.

Within a record, C{addresses} are the target's A and AAAA addresses
(deduplicated, IPv4 first); a target that does not resolve has C{[]} and
C{error} (C{"DNS lookup failed for <target>: ..."}).  A C{"."} target
among other records is kept in its place, with C{[]} and an C{error}.

Failures of L{lookup} as a whole (the web layer answers 200 with
C{success: false}):

  - L{FlowTimeout} (C{errorType: "timeout"}, C{"Connection timeout: the SRV
    lookup did not finish within N ms"}) when C{timeout} expires; every
    query in flight is cancelled.  A service the DNS server does not answer
    becomes status C{"error"} before that only if the resolver's retries
    (1 + 3 + 6 s by default) end sooner than C{timeout}.
  - L{DNSError} (C{errorType: "dns"}) when the domain is an IP address
    (there is nothing to look up) or cannot be written in A-labels.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
import typing
from collections.abc import Iterable, Sequence

import attrs
import idna
from twisted.internet import protocol
from twisted.internet.defer import CancelledError, Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.names import dns
from twisted.names import error as dns_error
from twisted.python.failure import Failure

from portofcall_xmpp.errors import DNSError, FlowTimeout
from portofcall_xmpp.policy import Policy, parse_ip_literal
from portofcall_xmpp.resolve import (
    MAX_CNAME_HOPS,
    Resolver,
    _CancellableClientResolver,
    _describe_dns_error,
    order_addresses,
)

__all__ = [
    "SERVICES",
    "AddressReport",
    "DNSSRVResolver",
    "FallbackReport",
    "RecordReport",
    "SRVLookupFailed",
    "SRVNameNotFound",
    "SRVRecord",
    "SRVReport",
    "SRVResolver",
    "Service",
    "ServiceReport",
    "lookup",
    "make_srv_resolver",
    "order_records",
    "read_resolv_conf",
    "to_json",
]

#: The longest DNS name, in octets, without the root's trailing dot.
_MAX_NAME = 253

#: The root name, as a target: "the service is not available here".
ROOT = "."


# ---------------------------------------------------------------------------
# Records and the resolver abstraction


class SRVRecord(typing.NamedTuple):
    """One SRV record.  C{target} has no trailing dot; the root is C{"."}."""

    priority: int
    weight: int
    port: int
    target: str


class SRVLookupFailed(DNSError):
    """The SRV question got no usable answer (server failure, no answer, ...)."""


class SRVNameNotFound(SRVLookupFailed):
    """The name queried does not exist (NXDOMAIN)."""


class SRVResolver(typing.Protocol):
    """What L{lookup} needs to ask for SRV records."""

    def lookup_srv(self, name: str) -> Deferred[list[SRVRecord]]:
        """
        @param name: the owner name in A-labels, e.g.
            C{"_xmpp-client._tcp.example.com"}.
        @return: a cancellable Deferred that fires with the SRV records of
            C{name} (C{[]} when it exists without any), or fails with
            L{SRVNameNotFound} (NXDOMAIN) or L{SRVLookupFailed}.
        """


def _text(name: dns.Name) -> str:
    """A name from the wire as text: no trailing dot, the root as C{"."}."""
    raw = name.name.rstrip(b".")
    if not raw:
        return ROOT
    # Labels may hold any octet; anything not printable ASCII is escaped,
    # so that such a target fails to resolve instead of being rewritten.
    return raw.decode("ascii", "backslashreplace")


class DNSSRVResolver:
    """
    L{SRVResolver} over an L{IResolver}'s C{lookupService}.

    CNAME chains in the answers are followed (at most L{MAX_CNAME_HOPS}
    links); a chain that ends without SRV records is queried again from
    where it ended.  Records for other names are ignored.  NXDOMAIN
    (L{twisted.names.error.DNSNameError}) fails with L{SRVNameNotFound};
    any other failure with L{SRVLookupFailed}, naming the reason
    (C{"server failure (SERVFAIL)"}, C{"the DNS server did not answer"}).

    Cancelling the Deferred cancels the query in flight.

    @param resolver: an L{IResolver}; production uses the one
        L{make_srv_resolver} builds, whose queries are cancellable.
    """

    def __init__(self, resolver) -> None:
        self._resolver = resolver

    def lookup_srv(self, name: str) -> Deferred[list[SRVRecord]]:
        """See L{SRVResolver.lookup_srv}."""
        return Deferred.fromCoroutine(self._lookup(name))

    async def _lookup(self, name: str) -> list[SRVRecord]:
        if not name.isascii():
            raise SRVLookupFailed(f"SRV lookup failed for {name}: not in A-labels")
        target = dns.Name(name.rstrip(".").encode("ascii"))
        hops = 0
        while True:
            try:
                answers, _authority, _additional = await self._resolver.lookupService(target.name)
            except CancelledError:
                raise
            except dns_error.DNSNameError:
                raise SRVNameNotFound(
                    f"SRV lookup failed for {name}: no such name (NXDOMAIN)"
                ) from None
            except Exception as e:
                raise SRVLookupFailed(
                    f"SRV lookup failed for {name}: {_describe_dns_error(e)}"
                ) from None
            queried = target
            while True:
                here = [rr for rr in answers if rr.name == target]
                found = [rr.payload for rr in here if rr.type == dns.SRV]
                if found:
                    return [SRVRecord(r.priority, r.weight, r.port, _text(r.target)) for r in found]
                alias = next((rr.payload.name for rr in here if rr.type == dns.CNAME), None)
                if alias is None:
                    break
                hops += 1
                if hops > MAX_CNAME_HOPS:
                    raise SRVLookupFailed(
                        f"SRV lookup failed for {name}: CNAME chain longer than {MAX_CNAME_HOPS}"
                    )
                target = alias
            if target == queried:
                return []


# ---------------------------------------------------------------------------
# The twisted.names client: cancellable UDP (resolve.py) and cancellable TCP


class _TCPFailed(Exception):
    """The TCP retry of a truncated answer failed; the message says how."""


class _TCPQuery(protocol.ClientFactory):
    """
    One DNS query over a TCP connection of its own, for a truncated UDP
    answer.

    L{client.Resolver.queryTCP} shares one long-lived connection among
    queries and cannot be cancelled; this connection carries one query and
    is closed when it is answered, fails or is cancelled (the pending
    query's timer is removed too).

    @ivar deferred: fires with the answer L{dns.Message}, or fails with
        L{_TCPFailed}; cancellable.
    """

    noisy = False

    def __init__(self, reactor, queries, timeout: float) -> None:
        self._reactor = reactor
        self._queries = queries
        self._timeout = timeout
        self._connector = None
        self._protocol: dns.DNSProtocol | None = None
        self.deferred: Deferred[dns.Message] = Deferred(self._cancel)

    def start(self, host: str, port: int) -> Deferred[dns.Message]:
        self._connector = self._reactor.connectTCP(host, port, self, timeout=self._timeout)
        return self.deferred

    def _finish(self, result) -> None:
        if not self.deferred.called:
            if isinstance(result, Failure):
                self.deferred.errback(result)
            else:
                self.deferred.callback(result)

    def _cancel(self, _: Deferred) -> None:
        if self._protocol is not None:
            live = self._protocol.liveMessages or {}
            for _pending, timer in live.values():
                if timer.active():
                    timer.cancel()
            live.clear()
            if self._protocol.transport is not None:
                self._protocol.transport.abortConnection()
        elif self._connector is not None:
            self._connector.disconnect()

    # ClientFactory

    def buildProtocol(self, addr):
        proto = dns.DNSProtocol(self, reactor=self._reactor)
        proto.factory = self
        return proto

    def clientConnectionFailed(self, connector, reason) -> None:
        self._finish(
            Failure(_TCPFailed(f"TCP connection to the DNS server failed: {reason.value}"))
        )

    # The DNSProtocol controller

    def connectionMade(self, proto: dns.DNSProtocol) -> None:
        self._protocol = proto
        if self.deferred.called:
            proto.transport.abortConnection()
            return
        proto.query(self._queries, self._timeout).addBoth(self._answered)

    def _answered(self, result) -> None:
        if isinstance(result, Failure):
            if result.check(dns.DNSQueryTimeoutError):
                result = Failure(_TCPFailed("the DNS server did not answer over TCP"))
        elif result.trunc:
            result = Failure(_TCPFailed("the DNS server truncated its answer over TCP"))
        self._protocol.transport.loseConnection()
        self._finish(result)

    def connectionLost(self, proto: dns.DNSProtocol) -> None:
        for _pending, timer in (proto.liveMessages or {}).values():
            if timer.active():
                timer.cancel()
        self._finish(Failure(_TCPFailed("the DNS server closed the TCP connection")))

    def messageReceived(self, message, proto, address=None) -> None:
        """An answer to no query of ours: ignored."""


class _SRVClientResolver(_CancellableClientResolver):
    """
    L{resolve._CancellableClientResolver} whose truncated UDP answers are
    retried over TCP, to the server that sent them, cancellably
    (L{_TCPQuery}).  SRV answers are larger than A/AAAA ones, so the TCP
    path matters here.
    """

    def _query(self, address, queries, timeout, id=None):
        d = super()._query(address, queries, timeout, id)
        return d.addCallback(self._unless_truncated, address, queries)

    def _unless_truncated(self, message: dns.Message, address, queries):
        if not message.trunc:
            return message
        query = _TCPQuery(self._reactor, queries, sum(self.timeout))
        return query.start(*address)


def read_resolv_conf(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """
    The name servers of a C{resolv.conf(5)} file, as
    L{twisted.names.client.Resolver} reads them: each C{nameserver} line, in
    order, on port 53; none (or no file) means C{127.0.0.1}.  Entries that
    are not IP addresses are skipped.  Blocking: call it once, at start.

    @raise OSError: the file exists but cannot be read.
    """
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    servers = []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == b"nameserver":
            host = words[1].decode("ascii", "replace")
            try:
                ipaddress.ip_address(host)
            except ValueError:
                continue
            servers.append((host, dns.PORT))
    return servers or [("127.0.0.1", dns.PORT)]


def make_srv_resolver(
    reactor,
    dns_server: tuple[str, int] | None,
    *,
    timeout: Sequence[float] = (1, 3, 6),
    resolv_conf: str = "/etc/resolv.conf",
) -> DNSSRVResolver:
    """
    The production L{SRVResolver}.

    With C{dns_server} (C{--dns-server HOST:PORT}), every question goes to
    that server; without, to the name servers of C{resolv_conf}, read now
    (blocking file I/O, once, at service start) and not re-read.  Unlike
    L{twisted.names.client.createResolver}, there is no cache (each request
    sees the current DNS) and no hosts file (it has no SRV records), and no
    timer runs between lookups.

    Queries go over UDP (retried after each of C{timeout} seconds, then
    failing); a truncated answer is asked again over TCP.  Every query is
    cancellable and leaves no delayed call or socket behind.

    @param reactor: an L{IReactorUDP}, L{IReactorTCP} and L{IReactorTime}.
    @raise ValueError: C{dns_server}'s host is not an IP address.
    @raise OSError: C{resolv_conf} exists but cannot be read.
    """
    if dns_server is not None:
        host, port = dns_server
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"DNS server must be an IP address, not {host!r}") from None
        servers = [(host, port)]
    else:
        servers = read_resolv_conf(resolv_conf)
    client = _SRVClientResolver(servers=servers, timeout=tuple(timeout), reactor=reactor)
    return DNSSRVResolver(client)


# ---------------------------------------------------------------------------
# RFC 2782 order


class _Choose(typing.Protocol):
    def randint(self, a: int, b: int) -> int:
        """A uniform random integer from C{a} to C{b}, both included."""


def order_records(records: Iterable[SRVRecord], choose: _Choose) -> list[SRVRecord]:
    """
    The order in which RFC 2782 says a client tries C{records}: lowest
    priority first; within one priority, by weighted random selection.

    Within a priority, the records not yet ordered are listed with the
    zero-weight ones first (otherwise as given), a number is drawn from 0
    to the sum of their weights (C{choose.randint}, both ends included),
    and the first record whose running sum of weights reaches it comes
    next.  So a zero-weight record comes first only when 0 is drawn, and
    zero-weight records left at the end keep their order.

    @param choose: a L{random.Random}, seeded in tests.
    """
    by_priority: dict[int, list[SRVRecord]] = {}
    for record in records:
        by_priority.setdefault(record.priority, []).append(record)
    ordered: list[SRVRecord] = []
    for priority in sorted(by_priority):
        group = by_priority[priority]
        left = [r for r in group if r.weight == 0] + [r for r in group if r.weight != 0]
        while left:
            drawn = choose.randint(0, sum(r.weight for r in left))
            running = itertools.accumulate(r.weight for r in left)
            index = next(i for i, total in enumerate(running) if total >= drawn)
            ordered.append(left.pop(index))
    return ordered


# ---------------------------------------------------------------------------
# The report


@attrs.frozen
class Service:
    """
    One of the XMPP SRV services.

    @ivar key: the key in the report (C{"xmpp-client"}).
    @ivar label: the SRV prefix (C{"_xmpp-client._tcp"}).
    @ivar fallback_port: the port a client uses without SRV records, or
        L{None} for XEP-0368 direct TLS, which has no fallback.
    """

    key: str
    label: str
    fallback_port: int | None


SERVICES: tuple[Service, ...] = (
    Service("xmpp-client", "_xmpp-client._tcp", 5222),
    Service("xmpps-client", "_xmpps-client._tcp", None),
    Service("xmpp-server", "_xmpp-server._tcp", 5269),
    Service("xmpps-server", "_xmpps-server._tcp", None),
)


@attrs.frozen
class AddressReport:
    """An address of a target, and whether the service's policy allows it."""

    address: str
    allowed: bool


@attrs.frozen
class _Resolved:
    """What resolving one host gave."""

    addresses: tuple[AddressReport, ...] = ()
    error: str | None = None


@attrs.frozen
class RecordReport:
    """One SRV record, with its target's addresses (or why there are none)."""

    priority: int
    weight: int
    port: int
    target: str
    addresses: tuple[AddressReport, ...] = ()
    error: str | None = None


@attrs.frozen
class FallbackReport:
    """Where a client connects without SRV records: the domain itself."""

    host: str
    port: int
    addresses: tuple[AddressReport, ...] = ()
    error: str | None = None


@attrs.frozen
class ServiceReport:
    """
    What one service's SRV lookup found.

    @ivar status: C{"ok"}, C{"none"}, C{"unavailable"} or C{"error"} (see
        the module docstring).
    @ivar nxdomain: C{status} is C{"none"} because the name does not exist.
    @ivar error: for C{status} C{"error"}, why.
    """

    service: Service
    name: str
    status: str
    nxdomain: bool = False
    records: tuple[RecordReport, ...] = ()
    fallback: FallbackReport | None = None
    error: str | None = None


@attrs.frozen
class SRVReport:
    """
    The SRV lookup of a domain.

    @ivar domain: as given to L{lookup}.
    @ivar services: one per L{SERVICES} entry, in that order.
    @ivar elapsed: seconds from the start of the lookup to its end.
    """

    domain: str
    services: tuple[ServiceReport, ...]
    elapsed: float


def _address_json(address: AddressReport) -> dict:
    return {"address": address.address, "allowed": address.allowed}


def _service_json(report: ServiceReport) -> dict:
    fallback = report.fallback
    return {
        "name": report.name,
        "status": report.status,
        "nxdomain": report.nxdomain,
        "records": [
            {
                "priority": record.priority,
                "weight": record.weight,
                "port": record.port,
                "target": record.target,
                "addresses": [_address_json(a) for a in record.addresses],
                "error": record.error,
            }
            for record in report.records
        ],
        "fallback": None
        if fallback is None
        else {
            "host": fallback.host,
            "port": fallback.port,
            "addresses": [_address_json(a) for a in fallback.addresses],
            "error": fallback.error,
        },
        "error": report.error,
    }


def to_json(report: SRVReport) -> dict:
    """The JSON object of C{report} (the shape is in the module docstring)."""
    return {
        "domain": report.domain,
        "services": {s.service.key: _service_json(s) for s in report.services},
        "elapsedMs": round(report.elapsed * 1000),
    }


# ---------------------------------------------------------------------------
# The lookup


class _Addresses:
    """
    Resolves each host once per lookup, however many records name it, and
    hands the outcome (L{_Resolved}, never a DNS failure) to every caller.
    L{cancel} stops the resolutions still running.
    """

    def __init__(self, resolver: Resolver, policy: Policy) -> None:
        self._resolver = resolver
        self._policy = policy
        self._done: dict[str, _Resolved] = {}
        self._running: dict[str, Deferred[list[str]]] = {}
        self._waiters: dict[str, list[Deferred[_Resolved]]] = {}

    def of(self, host: str) -> Deferred[_Resolved]:
        if host in self._done:
            return succeed(self._done[host])
        # No canceller: cancelling a caller's wait leaves the shared
        # resolution to L{cancel}.
        waiter: Deferred[_Resolved] = Deferred()
        self._waiters.setdefault(host, []).append(waiter)
        if host not in self._running:
            running = self._resolver.resolve(host)
            self._running[host] = running
            running.addBoth(self._finished, host)
        return waiter

    def _finished(self, result, host: str) -> None:
        del self._running[host]
        if isinstance(result, Failure) and result.check(DNSError):
            result = _Resolved(error=str(result.value))
        elif not isinstance(result, Failure):
            result = _Resolved(tuple(self._judge(a) for a in order_addresses(result)))
        if isinstance(result, _Resolved):
            self._done[host] = result
        for waiter in self._waiters.pop(host, []):
            if not waiter.called:
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(result)

    def _judge(self, address: str) -> AddressReport:
        return AddressReport(address, self._policy.allows(ipaddress.ip_address(address)))

    def cancel(self) -> None:
        for running in list(self._running.values()):
            running.cancel()


def _ascii_domain(domain: str) -> str:
    """
    The domain in A-labels, for building query names.

    @raise DNSError: C{domain} is an IP address or not a valid DNS name.
    """
    bare = domain[:-1] if domain.endswith(".") else domain
    if parse_ip_literal(bare) is not None or bare.startswith("["):
        raise DNSError(f"SRV lookup needs a domain name, not an IP address: {domain}")
    try:
        name = idna.encode(bare, uts46=True).decode("ascii") if not bare.isascii() else bare
    except (idna.IDNAError, UnicodeError):
        raise DNSError(f"SRV lookup failed for {domain}: not a valid domain name") from None
    if not name or any(not label or len(label) > 63 for label in name.split(".")):
        raise DNSError(f"SRV lookup failed for {domain}: not a valid domain name")
    return name.lower()


def _gather(waits: list[Deferred]) -> Deferred[list]:
    """
    The results of C{waits}, in order.  The first failure fails it as is
    (not wrapped in L{FirstError}); cancelling it cancels every wait.
    """

    def cancel(_: Deferred) -> None:
        for wait in waits:
            wait.cancel()

    gathered: Deferred[list] = Deferred(cancel)

    def done(result) -> None:
        if gathered.called:
            return
        if isinstance(result, Failure):
            gathered.errback(result.value.subFailure)
        else:
            gathered.callback([value for _ok, value in result])

    DeferredList(waits, fireOnOneErrback=True, consumeErrors=True).addBoth(done)
    return gathered


async def _records(
    addresses: _Addresses, records: list[SRVRecord], choose: _Choose
) -> tuple[RecordReport, ...]:
    ordered = order_records(records, choose)
    hosts = list(dict.fromkeys(r.target for r in ordered if r.target != ROOT))
    resolved = dict(zip(hosts, await _gather([addresses.of(h) for h in hosts]), strict=True))
    reports = []
    for r in ordered:
        if r.target == ROOT:
            found = _Resolved(error='target "." (service not available) among other records')
        else:
            found = resolved[r.target]
        reports.append(
            RecordReport(r.priority, r.weight, r.port, r.target, found.addresses, found.error)
        )
    return tuple(reports)


async def _service(
    service: Service,
    srv_resolver: SRVResolver,
    addresses: _Addresses,
    domain: str,
    choose: _Choose,
) -> ServiceReport:
    name = f"{service.label}.{domain}"
    report = ServiceReport(service, name, "none")
    if len(name) > _MAX_NAME:
        report = attrs.evolve(
            report,
            status="error",
            error=f"SRV lookup failed for {name}: name longer than {_MAX_NAME} octets",
        )
    else:
        try:
            records = await srv_resolver.lookup_srv(name)
        except SRVNameNotFound:
            report = attrs.evolve(report, nxdomain=True)
        except DNSError as e:
            report = attrs.evolve(report, status="error", error=str(e))
        else:
            if len(records) == 1 and records[0].target == ROOT:
                return attrs.evolve(report, status="unavailable")
            if records:
                found = await _records(addresses, records, choose)
                return attrs.evolve(report, status="ok", records=found)
    if service.fallback_port is None:
        return report
    found = await addresses.of(domain)
    fallback = FallbackReport(domain, service.fallback_port, found.addresses, found.error)
    return attrs.evolve(report, fallback=fallback)


async def _lookup(
    srv_resolver: SRVResolver,
    address_resolver: Resolver,
    domain: str,
    clock: IReactorTime,
    policy: Policy,
    choose: _Choose,
) -> SRVReport:
    started = clock.seconds()
    ascii_domain = _ascii_domain(domain)
    addresses = _Addresses(address_resolver, policy)
    services = [
        Deferred.fromCoroutine(_service(s, srv_resolver, addresses, ascii_domain, choose))
        for s in SERVICES
    ]
    try:
        reports = await _gather(services)
    except Exception:
        # Cancelled (the timeout) or failed: stop whatever is still running.
        # Success needs no cleanup: every resolution started was awaited.
        for d in services:
            d.cancel()
        addresses.cancel()
        raise
    return SRVReport(domain, tuple(reports), clock.seconds() - started)


_RANDOM = random.Random()


def lookup(
    srv_resolver: SRVResolver,
    address_resolver: Resolver,
    domain: str,
    *,
    clock: IReactorTime,
    timeout: float,
    policy: Policy,
    choose: _Choose | None = None,
) -> Deferred[SRVReport]:
    """
    Look up the XMPP SRV records of C{domain} (SPEC.md section 7).

    The four services are queried concurrently; each service's targets
    (and, without records, the fallback host) are resolved as soon as its
    answer arrives, each distinct host once.  Nothing is connected to, so
    the policy refuses nothing: it only sets each address's C{allowed}.

    @param srv_resolver: an L{SRVResolver} (L{make_srv_resolver}).
    @param address_resolver: a L{resolve.Resolver}, for the targets' A and
        AAAA addresses (the one the connector uses).
    @param domain: a JID domainpart as L{validate.check_domain} returns it
        (U-labels or A-labels; queried in A-labels).
    @param timeout: the overall timeout, in seconds.
    @param policy: the service's destination policy.
    @param choose: the randomness of the RFC 2782 weighted order (an object
        with C{randint(a, b)}, e.g. a seeded L{random.Random}); by default a
        module-wide L{random.Random}.

    @return: a cancellable Deferred that fires with an L{SRVReport}, or
        fails with L{FlowTimeout} (C{"Connection timeout: ..."}) when
        C{timeout} expires, everything in flight cancelled, or with
        L{DNSError} when C{domain} is an IP address or not a DNS name.
    """
    if choose is None:
        choose = _RANDOM

    def on_timeout(result, _timeout):
        raise FlowTimeout(
            f"Connection timeout: the SRV lookup did not finish within {round(timeout * 1000)} ms"
        )

    d = Deferred.fromCoroutine(
        _lookup(srv_resolver, address_resolver, domain, clock, policy, choose)
    )
    return d.addTimeout(timeout, clock, onTimeoutCancel=on_timeout)
