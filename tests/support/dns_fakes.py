"""
Fakes for the DNS tests: a fake UDP side for twisted.names' client, on a
MemoryReactorClock (tests read the queries it wrote and play the DNS
server's answers); L{Pending}, the base of fake resolvers whose answers a
test fires; L{FakeThreads}, a thread pool whose work the test ends;
L{scratch_path} for resolv.conf files.
"""

import shutil
import tempfile
from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.names import dns
from twisted.python.failure import Failure


class FakeUDPPort:
    """A listening UDP port that records what is written to it."""

    def __init__(self, protocol, interface=""):
        self.protocol = protocol
        self.interface = interface
        self.written = []
        self.listening = True

    def write(self, data, addr=None):
        self.written.append((data, addr))

    def stopListening(self):
        assert self.listening, "stopped twice"
        self.listening = False
        self.protocol.doStop()

    def getHost(self):
        return IPv4Address("UDP", "0.0.0.0", 40000)


class UDPMemoryReactor(MemoryReactorClock):
    """MemoryReactorClock with a fake listenUDP (connectTCP is MemoryReactor's)."""

    def __init__(self):
        super().__init__()
        self.udp = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        udp = FakeUDPPort(protocol, interface)
        protocol.makeConnection(udp)
        self.udp.append(udp)
        return udp

    def listening(self):
        return [port for port in self.udp if port.listening]


def last_query(port):
    """The last DNS message written on C{port}, and where it went."""
    data, addr = port.written[-1]
    message = dns.Message()
    message.fromStr(data)
    return message, addr


def scratch_path(case):
    """A path in a fresh temporary directory removed after the test (not in the cwd)."""
    directory = tempfile.mkdtemp(prefix="portofcall-srv-")
    case.addCleanup(shutil.rmtree, directory)
    return str(Path(directory) / "resolv.conf")


class Pending:
    """Deferreds handed out by a fake, by key, each recording its cancellation."""

    def __init__(self):
        self.calls = []
        self.deferreds = {}
        self.cancelled = []
        self.closed = 0

    def for_probe(self):
        return self

    def close(self):
        self.closed += 1

    def new(self, key):
        self.calls.append(key)
        d = Deferred(lambda _: self.cancelled.append(key))
        self.deferreds.setdefault(key, []).append(d)
        return d

    def fire(self, key, result):
        [d] = [d for d in self.deferreds[key] if not d.called]
        if isinstance(result, BaseException):
            d.errback(Failure(result))
        else:
            d.callback(result)

    def outstanding(self):
        return [key for key, ds in self.deferreds.items() for d in ds if not d.called]


class FakeThreads:
    """
    run_in_thread for tests: records each piece of work; the test ends it
    (as its thread would) with finish().
    """

    def __init__(self):
        self.work = []  # [(f, Deferred)]

    def __call__(self, f):
        d = Deferred()
        self.work.append((f, d))
        return d

    def running(self):
        return [d for _f, d in self.work if not d.called]

    def finish(self, index=0):
        """Run the index-th unfinished piece of work and hand back its outcome."""
        f, d = [(f, d) for f, d in self.work if not d.called][index]
        try:
            result = f()
        except Exception:
            d.errback(Failure())
        else:
            d.callback(result)


class TableResolver:
    """
    A resolver (addresses and SRV records) answering at once from tables:
    C{addresses} host -> list of addresses (or an exception to fail with),
    C{records} SRV name -> list of L{SRVRecord} (or an exception); a name
    in neither fails as NXDOMAIN; an IP literal is its own address.  A
    value of L{None} never answers (the Deferred is pending until
    cancelled, which is recorded).
    """

    def __init__(self, addresses=None, records=None):
        from portofcall_xmpp.errors import DNSError
        from portofcall_xmpp.resolve import SRVNameNotFound

        self.addresses = dict(addresses or {})
        self.records = dict(records or {})
        self.asked = []
        self.cancelled = []
        self.closed = 0
        self._missing_host = lambda host: DNSError(
            f"DNS lookup failed for {host}: no such domain (NXDOMAIN)"
        )
        self._missing_srv = lambda name: SRVNameNotFound(
            f"SRV lookup failed for {name}: no such name (NXDOMAIN)"
        )

    def for_probe(self):
        return self

    def close(self):
        self.closed += 1

    def _answer(self, key, table, missing):
        from twisted.internet.defer import fail, succeed

        self.asked.append(key)
        if key not in table:
            return fail(missing(key))
        value = table[key]
        if value is None:
            return Deferred(lambda _: self.cancelled.append(key))
        if isinstance(value, BaseException):
            return fail(value)
        return succeed(list(value))

    def resolve(self, host, budget=None):
        from twisted.internet.defer import succeed

        from portofcall_xmpp.names import parse_ip_literal

        literal = parse_ip_literal(host)
        if literal is not None:
            # As the real resolvers: an IP literal is its own answer.
            return succeed([str(literal)])
        return self._answer(host, self.addresses, self._missing_host)

    def lookup_srv(self, name, budget=None):
        return self._answer(name, self.records, self._missing_srv)
