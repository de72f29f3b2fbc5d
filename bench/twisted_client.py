#!/usr/bin/env python3
"""
The client floor of bench/perf.py: the least a Twisted XMPP connect costs.

A bare Twisted L{Protocol}, no parser, no timeouts, no policy: connect with
C{reactor.connectTCP}, send the stream header, wait (substring match) for
C{</stream:features>}, send C{</stream:stream>} and close.  It runs C{N} of
them, C{C} at a time, and prints one JSON line: its own CPU per connect (user
and system, from C{os.times}), and the count.

What the service does for C{/connect} is this exchange behind an HTTP
request: the HTTP floor (bench/floor.py) plus this is the least any
Twisted service answering C{/connect} pays.

    python bench/twisted_client.py PORT DOMAIN N C
"""

from __future__ import annotations

import json
import os
import sys

from twisted.internet import defer, protocol, reactor


def header(domain: str) -> bytes:
    return (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>" % domain
    ).encode()


class Probe(protocol.Protocol):
    def connectionMade(self):
        self.buffer = b""
        self.transport.write(self.factory.header)

    def dataReceived(self, data):
        self.buffer += data
        if b"</stream:features>" in self.buffer:
            self.transport.write(b"</stream:stream>")
            self.transport.loseConnection()

    def connectionLost(self, reason):
        self.factory.done.callback(b"</stream:features>" in self.buffer)


class OneProbe(protocol.ClientFactory):
    protocol = Probe
    noisy = False

    def __init__(self, header_bytes: bytes):
        self.header = header_bytes
        self.done = defer.Deferred()

    def clientConnectionFailed(self, connector, reason):
        self.done.callback(False)


def main() -> int:
    port, domain, total, concurrency = (
        int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    )  # fmt: skip
    head = header(domain)
    counter = iter(range(total))
    failures = [0]

    @defer.inlineCallbacks
    def worker():
        for _ in counter:
            factory = OneProbe(head)
            reactor.connectTCP("127.0.0.1", port, factory)
            ok = yield factory.done
            if not ok:
                failures[0] += 1

    def run():
        before = os.times()
        d = defer.gatherResults([worker() for _ in range(concurrency)])

        def report(_):
            after = os.times()
            print(json.dumps({
                "count": total,
                "failures": failures[0],
                "user_ms": (after.user - before.user) * 1000 / total,
                "sys_ms": (after.system - before.system) * 1000 / total,
            }), flush=True)  # fmt: skip
            reactor.stop()

        d.addBoth(report)

    reactor.callWhenRunning(run)
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
