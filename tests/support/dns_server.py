"""
A real DNS server on loopback for tests: L{twisted.names.server} answering
from records given in the test, over UDP and TCP on one port of 127.0.0.1.

    server = start_dns_server(reactor, b"example.test", {b"example.test": [...]})
    ...  # ask ("127.0.0.1", server.port)
    await server.stop()

Names under the zone that have no records get NXDOMAIN; names in
C{failing} get SERVFAIL; with C{truncate_udp}, UDP answers longer than
512 octets are truncated (TC set), so a client must ask again over TCP.
Every question is recorded in C{server.queries} as C{(transport, name,
type)} with C{transport} C{"udp"} or C{"tcp"}.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.names import authority, common, dns, server


class _Fail(Exception):
    """Raised by the authority for a name configured to fail (SERVFAIL)."""


class _Authority(authority.FileAuthority):
    """A L{FileAuthority} over records given in memory."""

    def __init__(self, zone: bytes, records: dict[bytes, list], failing: Iterable[bytes]):
        common.ResolverBase.__init__(self)  # FileAuthority's would load a file
        self._cache = {}
        soa = dns.Record_SOA(
            mname=b"ns." + zone,
            rname=b"hostmaster." + zone,
            serial=1,
            refresh=3600,
            retry=600,
            expire=86400,
            minimum=60,
            ttl=60,
        )
        self.soa = (zone, soa)
        self.records = {name.lower(): list(rrs) for name, rrs in records.items()}
        self.records.setdefault(zone.lower(), []).append(soa)
        self._failing = {name.lower() for name in failing}

    def _lookup(self, name, cls, type, timeout=None):
        if name.lower() in self._failing:
            return defer.fail(_Fail(name))
        return super()._lookup(name, cls, type, timeout)


class _Factory(server.DNSServerFactory):
    noisy = False

    def __init__(self, auth: _Authority, truncate_udp: bool):
        super().__init__(authorities=[auth])
        self.truncate_udp = truncate_udp
        self.queries: list[tuple[str, str, int]] = []

    def handleQuery(self, message, protocol, address):
        transport = "tcp" if address is None else "udp"
        for query in message.queries:
            self.queries.append((transport, query.name.name.decode("ascii"), query.type))
        return super().handleQuery(message, protocol, address)

    def gotResolverError(self, failure, protocol, message, address):
        if failure.check(_Fail):
            # SERVFAIL on purpose: answer without logging an error.
            response = self._responseFromMessage(message=message, rCode=dns.ESERVER)
            self.sendReply(protocol, response, address)
            self._verboseLog("Lookup failed")
            return
        return super().gotResolverError(failure, protocol, message, address)

    def sendReply(self, protocol, message, address):
        if address is not None and self.truncate_udp:
            message.maxSize = 512
        return super().sendReply(protocol, message, address)


class DNSTestServer:
    """
    A running server.

    @ivar port: the UDP and TCP port on 127.0.0.1.
    @ivar queries: every question received (see the module docstring).
    """

    def __init__(self, factory: _Factory, udp, tcp):
        self._factory = factory
        self._udp = udp
        self._tcp = tcp
        self.port: int = udp.getHost().port

    @property
    def queries(self) -> list[tuple[str, str, int]]:
        return self._factory.queries

    def stop(self) -> defer.Deferred:
        """Stop listening; fires when both ports are closed."""
        return defer.gatherResults(
            [
                defer.maybeDeferred(self._udp.stopListening),
                defer.maybeDeferred(self._tcp.stopListening),
            ]
        )


def start_dns_server(
    reactor,
    zone: bytes,
    records: dict[bytes, list],
    *,
    failing: Iterable[bytes] = (),
    truncate_udp: bool = False,
) -> DNSTestServer:
    """
    Listen on 127.0.0.1, one free port for both UDP and TCP.

    @param zone: the zone's apex; names under it without records are NXDOMAIN.
    @param records: owner name -> record payloads (C{dns.Record_SRV}, ...).
    @param failing: names answered with SERVFAIL.
    @param truncate_udp: truncate UDP answers longer than 512 octets.
    """
    factory = _Factory(_Authority(zone, records, failing), truncate_udp)
    for _attempt in range(20):
        udp = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
        try:
            tcp = reactor.listenTCP(udp.getHost().port, factory, interface="127.0.0.1")
        except CannotListenError:
            udp.stopListening()
            continue
        return DNSTestServer(factory, udp, tcp)
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")
