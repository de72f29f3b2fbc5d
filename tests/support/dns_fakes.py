"""
A fake UDP side for twisted.names' client, on a MemoryReactorClock: tests
read the queries it wrote and play the DNS server's answers.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.names import dns


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
