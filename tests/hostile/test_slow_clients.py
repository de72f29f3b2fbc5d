"""
The caller's side of the wall (SPEC §2, --max-connections): more slow HTTP
clients than the service allows connections, each dripping its request one
byte at a time, do not lock anyone out -- /api/health keeps answering on new
connections, because at the cap a new connection evicts the oldest one that
has not sent a whole request.  (A test instance with a cap of 40, so the test
stays small; the default is 1000.)
"""

import json

import pytest
import pytest_twisted
import treq
from conftest import start_service
from twisted.internet import defer, protocol, task

SLOW_CLIENTS = 60
CAP = 40
REQUEST = b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"


class Drip(protocol.Protocol):
    """Sends a request one byte per tick and never finishes it in time."""

    def __init__(self, clock):
        self._clock = clock
        self._sent = 0
        self._call = None
        self.closed = defer.Deferred()

    def connectionMade(self):
        self._call = task.LoopingCall(self._drip)
        self._call.clock = self._clock
        self._call.start(0.2)

    def _drip(self):
        if self._sent < len(REQUEST) - 2:  # never the final CRLF
            self.transport.write(REQUEST[self._sent : self._sent + 1])
            self._sent += 1

    def connectionLost(self, reason):
        if self._call is not None and self._call.running:
            self._call.stop()
        self.closed.callback(None)


@pytest.fixture
def capped():
    running = start_service("--max-connections", str(CAP))
    try:
        yield running
    finally:
        running.stop()


@pytest_twisted.ensureDeferred
async def test_health_answers_under_slow_clients(capped):
    """60 dripping clients against a cap of 40: every health check on a new connection answers."""
    from twisted.internet import reactor

    port = capped.port.getHost().port
    creator = protocol.ClientCreator(reactor, Drip, reactor)
    drips = await defer.gatherResults(
        [creator.connectTCP("127.0.0.1", port) for _ in range(SLOW_CLIENTS)]
    )
    try:
        # Let them all be accepted and start dripping.
        while len(capped.site.channels) < CAP:
            await task.deferLater(reactor, 0.05, lambda: None)
        answered = 0
        for _ in range(10):
            d = treq.get(capped.url("/api/health"), persistent=False)
            # Generous: a health check that cannot get in would hang until the
            # slow clients' 10 s deadline, which is what this rules out.
            d.addTimeout(8, reactor)
            response = await d
            assert response.code == 200
            assert json.loads(await response.content())["status"] == "ok"
            answered += 1
        assert answered == 10
        assert capped.site.evicted >= SLOW_CLIENTS - CAP
        assert len(capped.site.channels) <= CAP
    finally:
        for drip in drips:
            drip.transport.abortConnection()
        await defer.DeferredList([drip.closed for drip in drips])
