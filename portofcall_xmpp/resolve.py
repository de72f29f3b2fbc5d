"""
Name resolution, in one place: host names to addresses (A and AAAA) and
SRV records, without blocking the reactor, bounded per probe and
service-wide.  The connector and the SRV lookup both resolve through here.

Two resolvers share one interface:

  - L{SystemResolver}: C{getaddrinfo} (so whatever the system is configured
    with: C{/etc/hosts}, C{nsswitch}, ...) in a thread pool of its own,
    never shared with anything else (SCRAM key derivation has its own).
  - L{DNSServerResolver}: asks DNS servers directly through
    L{twisted.names} (C{--dns-server}, else the name servers of
    C{/etc/resolv.conf}, L{read_resolv_conf}): cancellable UDP, a truncated
    answer asked again over TCP, CNAME chains followed (L{MAX_CNAME_HOPS}).
    Only it answers SRV questions (C{lookup_srv}).

C{resolve(host)} fires with every A and AAAA address of the name as
canonical text (deduplicated; IPv4 first, then IPv6; otherwise in the
order the resolver gave them), or fails with L{DNSError} (C{"DNS lookup
failed for <host>: <reason>"}).  IP literals, in every spelling
L{names.parse_ip_literal} knows, never touch DNS: they resolve to
themselves, normalised (C{"2130706433"} -> C{["127.0.0.1"]}).

Bounds (see README, "Name resolution"):

  - Service-wide, each resolver has L{Slots}: at most C{size} lookups
    running and C{waiting} more queued; one more fails at once with
    L{DNSError} (C{"... the resolver is busy"}) rather than queueing
    unboundedly.  A system lookup holds its slot until C{getaddrinfo}
    returns, even when the probe that asked has gone (the thread is really
    busy): such lookups are counted (L{SystemResolver.abandoned}).
  - Per request, L{Lookups}: at most L{PER_PROBE_CONCURRENT} address
    lookups at once, L{PER_PROBE_HOSTS} distinct hosts and L{PER_PROBE_QUESTIONS} DNS
    questions; closing it abandons whatever is still running, and its
    questions share one UDP socket.

Every Deferred here is cancellable: cancelling fails it with
L{CancelledError}, gives its slots back, and stops the work (a UDP query is
withdrawn and its timer removed; a thread cannot be stopped, so its answer
is dropped when it comes).  Nothing here applies the destination policy:
the connector does, on every address returned.
"""

from __future__ import annotations

import collections
import errno
import ipaddress
import socket
import typing
from collections.abc import Callable, Iterable

import attrs
from twisted.internet import defer, protocol
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.error import CannotListenError
from twisted.names import client, dns
from twisted.names import error as dns_error
from twisted.python.failure import Failure

from .errors import DNSError
from .names import InvalidName, parse_address, parse_ip_literal, query_name

#: The longest CNAME chain followed before giving up.
MAX_CNAME_HOPS = 8

#: Service-wide: system lookups running at once (the size of their thread
#: pool), and how many more may wait for a thread.
SYSTEM_LOOKUPS = 16
SYSTEM_WAITING = 256
#: Service-wide: lookups through a DNS server running at once, and waiting.
DNS_LOOKUPS = 128
DNS_WAITING = 1024

#: Per request (one probe, one /srv): address lookups running at once, distinct
#: hosts resolved, and DNS questions asked (a system lookup counts as two:
#: getaddrinfo asks for A and AAAA).
PER_PROBE_CONCURRENT = 4
PER_PROBE_HOSTS = 32
PER_PROBE_QUESTIONS = 100

#: The per-try timeouts of a DNS question, in seconds (then it fails).
DNS_TIMEOUT = (1, 3, 6)


class Resolver(typing.Protocol):
    """What the connector and L{Lookups} need from a resolver of addresses."""

    def resolve(self, host: str, budget: Budget | None = None) -> Deferred[list[str]]:
        """
        @return: a cancellable Deferred that fires with every address of
            C{host} (see the module docstring) or fails with L{DNSError}.
        """

    def for_probe(self) -> Resolver:
        """This resolver, for the lookups of one request (see L{Lookups})."""

    def close(self) -> None:
        """Release what L{for_probe}'s resolver holds."""


def _fail(host: str, reason: str) -> DNSError:
    return DNSError(f"DNS lookup failed for {host}: {reason}")


def order_addresses(addresses: Iterable[str]) -> list[str]:
    """
    Canonicalise, deduplicate and order addresses: IPv4 first, then IPv6,
    each in the order given.  Text that is not an IP address is dropped.
    """
    seen = set()
    v4: list[str] = []
    v6: list[str] = []
    for text in addresses:
        addr = parse_address(text)
        if addr is None or addr in seen:
            continue
        seen.add(addr)
        (v4 if addr.version == 4 else v6).append(str(addr))
    return v4 + v6


def _early_answer(host: str) -> tuple[Deferred | None, str | None]:
    """
    C{(Deferred, None)} when C{host} needs no DNS (an IP literal) or cannot
    be asked (an invalid name: a L{DNSError}); else C{(None, query name)}.
    """
    literal = parse_ip_literal(host)
    if literal is not None:
        return defer.succeed([str(literal)]), None
    try:
        return None, query_name(host)
    except InvalidName as e:
        return defer.fail(_fail(host, str(e))), None


# ---------------------------------------------------------------------------
# Bounds


class Slots:
    """
    At most C{size} holders at once and C{waiting} more queued (L{None}: no
    bound on the queue).  L{acquire} fires when a slot is the caller's; one
    more than the queue holds fails at once with L{DNSError}.  Cancelling a
    queued acquire leaves the queue.
    """

    def __init__(self, size: int, waiting: int | None) -> None:
        self.size = size
        self.waiting = waiting
        self.held = 0
        self._queue: collections.deque[Deferred[None]] = collections.deque()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def acquire(self, host: str) -> Deferred[None]:
        """
        @return: a Deferred that fires once a slot is held (give it back
            with L{release}), or fails with L{DNSError} naming C{host} when
            the queue is full.
        """
        if self.held < self.size and not self._queue:
            self.held += 1
            return defer.succeed(None)
        if self.waiting is not None and len(self._queue) >= self.waiting:
            return defer.fail(
                _fail(host, f"the resolver is busy ({self.held} lookups running); try again")
            )
        d: Deferred[None] = Deferred(self._queue.remove)
        self._queue.append(d)
        return d

    def cancel_waiting(self) -> None:
        """Cancel every acquire still queued."""
        while self._queue:
            self._queue[0].cancel()

    def release(self) -> None:
        """Give a slot back: to the first in the queue, if any."""
        if self._queue:
            self._queue.popleft().callback(None)
        else:
            self.held -= 1


class _OverBudget(Exception):
    """A request's DNS question budget is spent; the message says so."""


class Budget:
    """The DNS questions one request may still ask (L{PER_PROBE_QUESTIONS})."""

    def __init__(self, questions: int = PER_PROBE_QUESTIONS) -> None:
        self.limit = questions
        self.asked = 0

    def spend(self, questions: int = 1) -> None:
        """@raise _OverBudget: the request would pass its limit."""
        if self.asked + questions > self.limit:
            raise _OverBudget(f"more than {self.limit} DNS questions in one request")
        self.asked += questions


def _run_in_slot(slots: Slots, host: str, start: Callable[[], Deferred]) -> Deferred:
    """
    C{start()} once C{slots} has room; its slot is given back when the work
    it returned ends.  Cancelling while queued leaves the queue; cancelling
    the work cancels it.
    """

    async def run():
        await slots.acquire(host)
        try:
            return await start()
        finally:
            slots.release()

    return Deferred.fromCoroutine(run())


# ---------------------------------------------------------------------------
# The system resolver


class SystemResolver:
    """
    Resolve with C{getaddrinfo} in a bounded thread pool of its own.

    C{getaddrinfo} cannot be interrupted: cancelling a lookup fails its
    Deferred at once and drops the answer when it comes, but the thread and
    its slot stay busy until then.  So a resolver that never answers holds
    at most C{slots.size} threads, and every lookup past C{slots.waiting}
    queued ones fails at once: nothing queues without bound.

    @param run_in_thread: C{f -> Deferred} running C{f} in the resolver's
        own pool (C{deferToThreadPool(reactor, pool, f)} in production, with
        C{pool.max == slots.size} so that nothing queues inside the pool).
    @param slots: the service-wide L{Slots} (C{size} = the pool's threads).
    @param getaddrinfo: L{socket.getaddrinfo}, or a stand-in for tests.
    @ivar abandoned: lookups whose caller has gone while their thread still
        runs.
    """

    def __init__(self, run_in_thread, slots: Slots, getaddrinfo=socket.getaddrinfo) -> None:
        self._run_in_thread = run_in_thread
        self._slots = slots
        self._getaddrinfo = getaddrinfo
        self.abandoned = 0

    def resolve(self, host: str, budget: Budget | None = None) -> Deferred[list[str]]:
        """See the module docstring; C{budget} is spent two questions."""
        early, name = _early_answer(host)
        if early is not None:
            return early
        if budget is not None:
            try:
                budget.spend(2)
            except _OverBudget as e:
                return defer.fail(_fail(host, str(e)))
        acquired = self._slots.acquire(host)

        def cancel(_: Deferred) -> None:
            if acquired.called:
                self.abandoned += 1  # the thread runs on; finished() drops its answer
            else:
                acquired.cancel()  # leave the queue

        outer: Deferred[list[str]] = Deferred(cancel)

        def start(_) -> None:
            try:
                work = self._run_in_thread(
                    lambda: self._getaddrinfo(name, 0, socket.AF_UNSPEC, socket.SOCK_STREAM)
                )
            except Exception:
                work = defer.fail()
            work.addBoth(finished)

        def finished(result) -> None:
            self._slots.release()
            if outer.called:
                self.abandoned -= 1
            elif isinstance(result, Failure):
                outer.errback(_fail(host, _gai_reason(result.value)))
            else:
                addresses = order_addresses(
                    info[4][0] for info in result if info[0] in (socket.AF_INET, socket.AF_INET6)
                )
                if addresses:
                    outer.callback(addresses)
                else:
                    outer.errback(_fail(host, "no address found"))

        def not_acquired(failure: Failure) -> None:
            if not outer.called:
                outer.errback(failure)

        acquired.addCallbacks(start, not_acquired)
        return outer

    def for_probe(self) -> SystemResolver:
        """This resolver: a system lookup holds nothing per request."""
        return self

    def close(self) -> None:
        """Nothing to close: a system lookup holds no socket."""


def _gai_reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror) and exc.errno in (socket.EAI_NONAME, socket.EAI_NODATA):
        return "no address found"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or exc.__class__.__name__


# ---------------------------------------------------------------------------
# DNS servers, through twisted.names


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


#: The root name, as an SRV target: "the service is not available here".
ROOT = "."


def describe_dns_error(exc: BaseException) -> str:
    """A DNS failure in words (C{"server failure (SERVFAIL)"}, ...)."""
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
            _drop_pending(self._protocol)
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
        _drop_pending(proto)
        self._finish(Failure(_TCPFailed("the DNS server closed the TCP connection")))

    def messageReceived(self, message, proto, address=None) -> None:
        """An answer to no query of ours: ignored."""


def _drop_pending(proto) -> None:
    """Forget every query C{proto} still waits for, and its timer."""
    live = proto.liveMessages or {}
    for _pending, timer in live.values():
        if timer.active():
            timer.cancel()
    live.clear()


class _QuietDatagramProtocol(dns.DNSDatagramProtocol):
    """The UDP side, without a log line each time it starts or stops."""

    noisy = False


class _DNSClient(client.Resolver):
    """
    L{client.Resolver} for the questions of one lookup or one request: one
    UDP socket (a random port, per address family of the servers), opened
    at the first question and closed by L{close}; each question cancellable;
    a truncated answer asked again over TCP, cancellably (L{_TCPQuery}).

    Upstream opens a socket for every question (and logs it), keeps a
    cancelled question's retry timer until it expires, and shares one
    question among concurrent identical lookups, so cancelling one caller's
    lookup would cancel the others'.  Here each lookup has its own
    question, and cancelling it removes the pending message and its timer.
    """

    def __init__(self, servers, timeout, reactor) -> None:
        super().__init__(servers=servers, timeout=tuple(timeout), reactor=reactor)
        self._protocols: dict[int, dns.DNSDatagramProtocol] = {}

    def _lookup(self, name, cls, type, timeout):
        d = self.queryUDP([dns.Query(name, type, cls)], timeout)
        return d.addCallback(self.filterAnswers)

    def _protocol_for(self, host: str) -> dns.DNSDatagramProtocol:
        version = parse_address(host).version
        proto = self._protocols.get(version)
        if proto is None:
            proto = _QuietDatagramProtocol(self, reactor=self._reactor)
            interface = "::" if version == 6 else ""
            for attempt in range(100):
                try:
                    self._reactor.listenUDP(dns.randomSource(), proto, interface=interface)
                    break
                except CannotListenError as e:
                    if getattr(e.socketError, "errno", None) == errno.EMFILE or attempt == 99:
                        raise
            self._protocols[version] = proto
        return proto

    def _query(self, address, queries, timeout, id=None):
        try:
            proto = self._protocol_for(address[0])
        except Exception:
            return defer.fail()
        inner = proto.query(address, queries, timeout, id)
        live = proto.liveMessages or {}
        query_id = next((key for key, (pending, _) in live.items() if pending is inner), None)

        def cancel(_: Deferred) -> None:
            pending = (proto.liveMessages or {}).pop(query_id, None)
            if pending is not None and pending[1].active():
                pending[1].cancel()

        outer: Deferred = Deferred(cancel)

        def done(result):
            if not outer.called:
                if isinstance(result, Failure):
                    outer.errback(result)
                else:
                    outer.callback(result)

        inner.addBoth(done)
        return outer.addCallback(self._unless_truncated, address, queries)

    def _unless_truncated(self, message: dns.Message, address, queries):
        if not message.trunc:
            return message
        return _TCPQuery(self._reactor, queries, sum(self.timeout)).start(*address)

    def messageReceived(self, message, protocol, address=None) -> None:
        """A late answer (its question was withdrawn or timed out): ignored."""

    def close(self) -> None:
        """Withdraw every question still pending and close the sockets."""
        for proto in self._protocols.values():
            _drop_pending(proto)
            if proto.transport is not None:
                proto.transport.stopListening()
        self._protocols.clear()


class _NoSuchName(Exception):
    """The name asked does not exist (NXDOMAIN)."""


class _QueryFailed(Exception):
    """A question got no usable answer; the message says why."""


async def _chase(lookup, name: str, record_type: int, budget: Budget | None) -> list:
    """
    The payloads of C{record_type} records at the end of C{name}'s CNAME
    chain, C{[]} when the chain ends without any.

    The chain is followed through the answers (at most L{MAX_CNAME_HOPS}
    links); a chain that ends without records is asked again from where it
    ended.  Records for names off the chain are ignored.  Every question
    asked is spent from C{budget}.

    @param lookup: C{name -> Deferred[(answers, authority, additional)]}, an
        L{IResolver} method such as C{lookupService}.
    @raise _NoSuchName: NXDOMAIN.
    @raise _QueryFailed: any other failure, in words.
    """
    # The answers name records without the root's trailing dot.
    target = dns.Name(name[:-1] if name.endswith(".") else name)
    hops = 0
    while True:
        try:
            if budget is not None:
                budget.spend()
            answers, _authority, _additional = await lookup(target.name)
        except CancelledError:
            raise
        except _OverBudget as e:
            raise _QueryFailed(str(e)) from None
        except dns_error.DNSNameError:
            raise _NoSuchName() from None
        except Exception as e:
            raise _QueryFailed(describe_dns_error(e)) from None
        queried = target
        while True:
            here = [rr for rr in answers if rr.name == target]
            found = [rr.payload for rr in here if rr.type == record_type]
            if found:
                return found
            alias = next((rr.payload.name for rr in here if rr.type == dns.CNAME), None)
            if alias is None:
                break
            hops += 1
            if hops > MAX_CNAME_HOPS:
                raise _QueryFailed(f"CNAME chain longer than {MAX_CNAME_HOPS}")
            target = alias
        if target == queried:
            return []


@attrs.frozen
class _Outcome:
    """What one of the A and AAAA lookups found."""

    addresses: tuple[str, ...] = ()
    nxdomain: bool = False
    error: str | None = None


def _target_text(name: dns.Name) -> str:
    """A name from the wire as text: no trailing dot, the root as C{"."}."""
    raw = name.name.rstrip(b".")
    if not raw:
        return ROOT
    # Labels may hold any octet; anything not printable ASCII is escaped,
    # so that such a target fails to resolve instead of being rewritten.
    return raw.decode("ascii", "backslashreplace")


class DNSServerResolver:
    """
    Resolve by asking DNS servers, through L{twisted.names}: A and AAAA
    (L{resolve}) and SRV (L{lookup_srv}).

    A name fails with L{DNSError} when it does not exist (NXDOMAIN), has no
    A or AAAA record, or the server fails for both types; one type failing
    while the other answers is fine.  Unlike
    L{twisted.names.client.createResolver}, there is no cache (each request
    sees the current DNS), no hosts file, and no timer between lookups.

    Each lookup asks on a socket of its own, closed when it ends; the
    resolver L{for_probe} returns asks every question of one request on
    one socket, closed by its C{close()}.

    @param reactor: an L{IReactorUDP}, L{IReactorTCP} and L{IReactorTime}.
    @param host: a server's IP address (IPv4 or IPv6 literal), with C{port}.
    @param servers: C{(host, port)} pairs, asked in order (after C{host}).
    @param timeout: the per-try timeouts in seconds, as for
        L{client.Resolver} (after the last one a question fails).
    @param slots: the service-wide L{Slots} (by default L{DNS_LOOKUPS}
        running, L{DNS_WAITING} queued).
    @param resolver: an L{IResolver} to ask instead (for tests); it needs
        C{lookupAddress}, C{lookupIPV6Address} and C{lookupService}.
    @raise ValueError: a server is not an IP address.
    """

    def __init__(
        self,
        reactor,
        host: str | None = None,
        port: int = dns.PORT,
        *,
        servers: Iterable[tuple[str, int]] = (),
        timeout=DNS_TIMEOUT,
        slots: Slots | None = None,
        resolver=None,
    ) -> None:
        self._servers = ([(host, port)] if host is not None else []) + list(servers)
        for server, _port in self._servers:
            if parse_address(server) is None:
                raise ValueError(f"DNS server must be an IP address, not {server!r}")
        self._reactor = reactor
        self._timeout = tuple(timeout)
        self._slots = slots if slots is not None else Slots(DNS_LOOKUPS, DNS_WAITING)
        self._resolver = resolver
        self._owned: _DNSClient | None = None

    def for_probe(self) -> DNSServerResolver:
        """This resolver, asking all its questions on one socket until C{close()}."""
        bound = DNSServerResolver(
            self._reactor, servers=self._servers, timeout=self._timeout, slots=self._slots
        )
        if self._resolver is not None:
            bound._resolver = self._resolver
        else:
            bound._owned = bound._resolver = self._client()
        return bound

    def close(self) -> None:
        """Close the socket of a resolver from L{for_probe}."""
        if self._owned is not None:
            self._owned.close()

    def _client(self) -> _DNSClient:
        return _DNSClient(self._servers, self._timeout, self._reactor)

    def _ask(self, host: str, ask: Callable[[typing.Any], Deferred]) -> Deferred:
        """C{ask(resolver)} in a service-wide slot, on a socket of its own unless bound."""

        def start() -> Deferred:
            if self._resolver is not None:
                return ask(self._resolver)
            own = self._client()

            def closed(result):
                own.close()
                return result

            return ask(own).addBoth(closed)

        return _run_in_slot(self._slots, host, start)

    def resolve(self, host: str, budget: Budget | None = None) -> Deferred[list[str]]:
        """See the module docstring; every question asked is spent from C{budget}."""
        early, name = _early_answer(host)
        if early is not None:
            return early

        def ask(resolver) -> Deferred[list[str]]:
            lookups = [
                Deferred.fromCoroutine(_family(resolver.lookupAddress, name, dns.A, budget)),
                Deferred.fromCoroutine(_family(resolver.lookupIPV6Address, name, dns.AAAA, budget)),
            ]
            both = DeferredList(lookups, consumeErrors=True)
            return both.addCallback(_combine, host)

        return self._ask(host, ask)

    def lookup_srv(self, name: str, budget: Budget | None = None) -> Deferred[list[SRVRecord]]:
        """
        The SRV records of C{name}, an owner name in A-labels (e.g.
        C{"_xmpp-client._tcp.example.com"}).

        @return: a cancellable Deferred that fires with the records (C{[]}
            when the name exists without any; a target has no trailing dot,
            the root is C{"."}), or fails with L{SRVNameNotFound} (NXDOMAIN)
            or L{SRVLookupFailed} naming the reason (C{"server failure
            (SERVFAIL)"}, C{"the DNS server did not answer"}, ...).
        """
        if not name.isascii():
            return defer.fail(SRVLookupFailed(f"SRV lookup failed for {name}: not in A-labels"))

        async def ask(resolver) -> list[SRVRecord]:
            try:
                found = await _chase(resolver.lookupService, name, dns.SRV, budget)
            except _NoSuchName:
                raise SRVNameNotFound(
                    f"SRV lookup failed for {name}: no such name (NXDOMAIN)"
                ) from None
            except _QueryFailed as e:
                raise SRVLookupFailed(f"SRV lookup failed for {name}: {e}") from None
            return [SRVRecord(r.priority, r.weight, r.port, _target_text(r.target)) for r in found]

        return self._ask(name, lambda resolver: Deferred.fromCoroutine(ask(resolver)))

    def lookup_alias(self, name: str, budget: Budget | None = None) -> Deferred[str | None]:
        """
        The canonical name C{name} (in A-labels) is an alias of: the target
        of its CNAME record, or C{None} when it has none, or when the
        question could not be answered (this is advice, never a failure).
        """

        async def ask(resolver) -> str | None:
            try:
                if budget is not None:
                    budget.spend()
                answers, _authority, _additional = await resolver.lookupCanonicalName(name)
            except CancelledError:
                raise
            except Exception:
                return None
            owner = dns.Name(name[:-1] if name.endswith(".") else name)
            alias = next(
                (rr.payload.name for rr in answers if rr.name == owner and rr.type == dns.CNAME),
                None,
            )
            return None if alias is None else _target_text(alias)

        return self._ask(name, lambda resolver: Deferred.fromCoroutine(ask(resolver)))


async def _family(lookup, name: str, record_type: int, budget: Budget | None) -> _Outcome:
    try:
        found = await _chase(lookup, name, record_type, budget)
    except _NoSuchName:
        return _Outcome(nxdomain=True)
    except _QueryFailed as e:
        return _Outcome(error=str(e))
    # Record_A and Record_AAAA hold the packed address.
    return _Outcome(addresses=tuple(str(ipaddress.ip_address(r.address)) for r in found))


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
            if parse_address(host) is not None:
                servers.append((host, dns.PORT))
    return servers or [("127.0.0.1", dns.PORT)]


def make_srv_resolver(
    reactor,
    dns_server: tuple[str, int] | None,
    *,
    timeout=DNS_TIMEOUT,
    resolv_conf: str = "/etc/resolv.conf",
    slots: Slots | None = None,
) -> DNSServerResolver:
    """
    The production resolver of SRV records: with C{dns_server}
    (C{--dns-server HOST:PORT}) every question goes to that server; without,
    to the name servers of C{resolv_conf}, read now (blocking file I/O,
    once, at service start) and not re-read.

    @raise ValueError: C{dns_server}'s host is not an IP address.
    @raise OSError: C{resolv_conf} exists but cannot be read.
    """
    servers = [dns_server] if dns_server is not None else read_resolv_conf(resolv_conf)
    return DNSServerResolver(reactor, servers=servers, timeout=timeout, slots=slots)


# ---------------------------------------------------------------------------
# The lookups of one request


class Lookups:
    """
    The name lookups of one request (a C{/srv}, or a probe following SRV
    records), bounded: at most C{concurrent} address lookups run at once
    (the others wait their turn), at most C{hosts} distinct hosts are resolved
    (one more fails at once with L{DNSError} C{"... more than N hosts in one
    request"}), and at most C{questions} DNS questions are asked in all.
    Each host is resolved once however many callers ask; its outcome is
    handed to each of them.  With a L{DNSServerResolver}, every question of
    the request goes out on one socket.

    L{close} stops whatever still runs (the request's deadline passed, or
    it is done) and closes the socket: a lookup stuck in a thread is
    abandoned there, its answer dropped.

    @param resolver: host names to addresses (L{SystemResolver} or
        L{DNSServerResolver}).
    @param srv_resolver: SRV records (a L{DNSServerResolver}).
    """

    def __init__(
        self,
        resolver,
        srv_resolver,
        *,
        concurrent: int = PER_PROBE_CONCURRENT,
        hosts: int = PER_PROBE_HOSTS,
        questions: int = PER_PROBE_QUESTIONS,
    ) -> None:
        self._resolver = resolver.for_probe()
        self._srv_resolver = srv_resolver.for_probe()
        self._slots = Slots(concurrent, None)
        self._budget = Budget(questions)
        self._max_hosts = hosts
        self._outcomes: dict[str, list[str] | Failure] = {}
        self._running: dict[str, Deferred[list[str]]] = {}
        self._waiters: dict[str, list[Deferred[list[str]]]] = {}
        self._srv_running: set[Deferred] = set()

    def addresses(self, host: str) -> Deferred[list[str]]:
        """
        Every address of C{host} (see L{Resolver}); cancelling the returned
        Deferred only stops this caller's wait (L{close} stops the lookup).
        """
        outcome = self._outcomes.get(host)
        if outcome is not None:
            if isinstance(outcome, Failure):
                return defer.fail(outcome)
            return defer.succeed(list(outcome))
        if (
            host not in self._running
            and len(self._outcomes) + len(self._running) >= self._max_hosts
        ):
            return defer.fail(
                _fail(host, f"not resolved: more than {self._max_hosts} hosts in one request")
            )
        waiter: Deferred[list[str]] = Deferred()
        self._waiters.setdefault(host, []).append(waiter)
        if host not in self._running:
            running = _run_in_slot(
                self._slots, host, lambda: self._resolver.resolve(host, self._budget)
            )
            if not running.called:
                self._running[host] = running
            running.addBoth(self._finished, host)
        return waiter

    def _finished(self, result, host: str) -> None:
        self._running.pop(host, None)
        if not isinstance(result, Failure):
            result = order_addresses(result)
        if not isinstance(result, Failure) or result.check(DNSError):
            self._outcomes[host] = result
        for waiter in self._waiters.pop(host, []):
            if not waiter.called:
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(list(result))

    def srv(self, name: str) -> Deferred[list[SRVRecord]]:
        """The SRV records of C{name} (see L{DNSServerResolver.lookup_srv})."""
        # Not in the request's slots: a request asks few SRV questions (four
        # for /srv), and its targets must not wait behind them.
        return self._track(self._srv_resolver.lookup_srv(name, self._budget))

    def _track(self, running: Deferred) -> Deferred:
        """C{running}, stopped by L{close} if it has not finished by then."""
        if not running.called:
            self._srv_running.add(running)

            def done(result):
                self._srv_running.discard(running)
                return result

            running.addBoth(done)
        return running

    def alias(self, name: str) -> Deferred[str | None]:
        """What C{name} is an alias of (see L{DNSServerResolver.lookup_alias})."""
        return self._track(self._srv_resolver.lookup_alias(name, self._budget))

    def close(self) -> None:
        """Stop every lookup still running and close the request's socket."""
        # The lookups waiting their turn first: none may start as another stops.
        self._slots.cancel_waiting()
        for running in [*self._running.values(), *self._srv_running]:
            running.cancel()
        self._resolver.close()
        self._srv_resolver.close()
