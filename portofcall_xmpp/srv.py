"""
The SRV lookup of C{POST /api/xmpp/srv} (SPEC.md section 7): where a client
or a server would connect for a domain, in the order it would try.

Two pieces, over the resolvers of L{portofcall_xmpp.resolve}:

  - L{order_records}: the order RFC 2782 says a client tries records in.
  - L{lookup}: queries the four XMPP services of a domain concurrently,
    orders each service's records, resolves every target (A and AAAA) and
    reports it all as an L{SRVReport} (the web layer's C{render} turns that into JSON).

Addresses are reported, never connected to, so the destination policy does
not refuse anything here: each address is marked with C{allowed}, whether
the service's own policy (C{--allow-private}) would let a probe connect to
it, so an operator sees which targets this service could probe.

A lookup is one request for the resolver's bounds (L{resolve.Lookups}):
at most L{resolve.PER_PROBE_HOSTS} distinct targets are resolved (a record
past them has C{[]} and C{error} C{"... more than 32 hosts in one
request"}), at most L{resolve.PER_PROBE_CONCURRENT} at once, and at most
L{resolve.PER_PROBE_QUESTIONS} DNS questions are asked in all.

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

Failures of L{lookup} as a whole: L{DNSError} (C{errorType: "dns"}) when
the domain is an IP address (there is nothing to look up) or cannot be
written in A-labels.  It has no timeout of its own: the flow's overall
timeout (C{flows.srv}) cancels it, which stops every lookup in flight.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
import typing
from collections.abc import Iterable

import attrs
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from .errors import DNSError
from .names import MAX_DNS_NAME, InvalidName, parse_ip_literal, query_name
from .policy import Policy
from .resolve import ROOT, Lookups, SRVNameNotFound, SRVRecord

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


# ---------------------------------------------------------------------------
# The lookup


async def _resolved(lookups: Lookups, policy: Policy, host: str) -> _Resolved:
    """What resolving C{host} gave, its addresses judged by C{policy}."""
    try:
        addresses = await lookups.addresses(host)
    except DNSError as e:
        return _Resolved(error=str(e))
    return _Resolved(
        tuple(AddressReport(a, policy.allows(ipaddress.ip_address(a))) for a in addresses)
    )


def _ascii_domain(domain: str) -> str:
    """
    The domain in lower-case A-labels, for building query names.

    @raise DNSError: C{domain} is an IP address or not a valid DNS name.
    """
    bare = domain[:-1] if domain.endswith(".") else domain
    if parse_ip_literal(bare) is not None or bare.startswith("["):
        raise DNSError(f"SRV lookup needs a domain name, not an IP address: {domain}")
    try:
        return query_name(bare).lower()
    except InvalidName:
        raise DNSError(f"SRV lookup failed for {domain}: not a valid domain name") from None


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
    lookups: Lookups, policy: Policy, records: list[SRVRecord], choose: _Choose
) -> tuple[RecordReport, ...]:
    ordered = order_records(records, choose)
    hosts = list(dict.fromkeys(r.target for r in ordered if r.target != ROOT))
    waits = [Deferred.fromCoroutine(_resolved(lookups, policy, h)) for h in hosts]
    resolved = dict(zip(hosts, await _gather(waits), strict=True))
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
    service: Service, lookups: Lookups, policy: Policy, domain: str, choose: _Choose
) -> ServiceReport:
    name = f"{service.label}.{domain}"
    report = ServiceReport(service, name, "none")
    if len(name) > MAX_DNS_NAME:
        report = attrs.evolve(
            report,
            status="error",
            error=f"SRV lookup failed for {name}: name longer than {MAX_DNS_NAME} octets",
        )
    else:
        try:
            records = await lookups.srv(name)
        except SRVNameNotFound:
            report = attrs.evolve(report, nxdomain=True)
        except DNSError as e:
            report = attrs.evolve(report, status="error", error=str(e))
        else:
            if len(records) == 1 and records[0].target == ROOT:
                return attrs.evolve(report, status="unavailable")
            if records:
                found = await _records(lookups, policy, records, choose)
                return attrs.evolve(report, status="ok", records=found)
    if service.fallback_port is None:
        return report
    found = await _resolved(lookups, policy, domain)
    fallback = FallbackReport(domain, service.fallback_port, found.addresses, found.error)
    return attrs.evolve(report, fallback=fallback)


async def _lookup(
    lookups: Lookups, domain: str, clock: IReactorTime, policy: Policy, choose: _Choose
) -> SRVReport:
    started = clock.seconds()
    try:
        ascii_domain = _ascii_domain(domain)
        services = [
            Deferred.fromCoroutine(_service(s, lookups, policy, ascii_domain, choose))
            for s in SERVICES
        ]
        try:
            reports = await _gather(services)
        except Exception:
            # Cancelled (the flow's timeout) or failed: stop whatever still runs.
            for d in services:
                d.cancel()
            raise
    finally:
        lookups.close()
    return SRVReport(domain, tuple(reports), clock.seconds() - started)


_RANDOM = random.Random()


def lookup(
    srv_resolver,
    address_resolver,
    domain: str,
    *,
    clock: IReactorTime,
    policy: Policy,
    choose: _Choose | None = None,
) -> Deferred[SRVReport]:
    """
    Look up the XMPP SRV records of C{domain} (SPEC.md section 7).

    The four services are queried concurrently; each service's targets
    (and, without records, the fallback host) are resolved as soon as its
    answer arrives, each distinct host once, within the bounds of one
    request (L{resolve.Lookups}).  Nothing is connected to, so the policy
    refuses nothing: it only sets each address's C{allowed}.

    @param srv_resolver: a L{resolve.DNSServerResolver} (for SRV records).
    @param address_resolver: a L{resolve.Resolver}, for the targets' A and
        AAAA addresses (the one the connector uses).
    @param domain: a JID domainpart as L{validate.check_domain} returns it
        (U-labels or A-labels; queried in A-labels).
    @param policy: the service's destination policy.
    @param choose: the randomness of the RFC 2782 weighted order (an object
        with C{randint(a, b)}, e.g. a seeded L{random.Random}); by default a
        module-wide L{random.Random}.

    @return: a cancellable Deferred that fires with an L{SRVReport}, or
        fails with L{DNSError} when C{domain} is an IP address or not a DNS
        name.  Cancelling it stops every lookup in flight.
    """
    lookups = Lookups(address_resolver, srv_resolver)
    return Deferred.fromCoroutine(
        _lookup(lookups, domain, clock, policy, choose if choose is not None else _RANDOM)
    )
