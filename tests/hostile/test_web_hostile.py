"""
Hostile WebSocket and BOSH servers, through HTTP: a 5 MB frame, frames that
are not XMPP, no xmpp subprotocol, a BOSH server that answers garbage or
never answers.  Each answer is a 200 with success false and a typed
errorType, within the request's timeout, and no connection to the server is
left open.
"""

import json

import pytest
import pytest_twisted
import treq
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from conftest import start_service
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.web import resource, server

READ_TIMEOUT_MS = 1000
REQUEST_TIMEOUT_MS = 5000
FIVE_MB = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def web_service():
    running = start_service("--allow-private", "--read-timeout", str(READ_TIMEOUT_MS))
    try:
        yield running
    finally:
        running.stop()


class Counting:
    """Counts the server's open connections."""

    def __init__(self):
        self.open = 0


class HostileWebSocket(WebSocketServerProtocol):
    """Misbehaves as C{self.factory.behaviour} says, once the probe opened."""

    def connectionMade(self):
        self.factory.counting.open += 1
        super().connectionMade()

    def connectionLost(self, reason):
        self.factory.counting.open -= 1
        super().connectionLost(reason)

    def onConnect(self, request):
        if self.factory.behaviour == "no-subprotocol":
            return None
        return "xmpp"

    def onOpen(self):
        behaviour = self.factory.behaviour
        if behaviour == "huge":
            self.sendMessage(b"<a>" + b"x" * FIVE_MB + b"</a>", isBinary=False)
        elif behaviour == "binary":
            self.sendMessage(b"\x00\x01\x02", isBinary=True)
        elif behaviour == "garbage":
            self.sendMessage(b"hello, this is not XML", isBinary=False)

    def onMessage(self, payload, isBinary):
        pass


def start_websocket(behaviour):
    factory = WebSocketServerFactory()
    factory.protocol = HostileWebSocket
    factory.behaviour = behaviour
    factory.counting = Counting()
    factory.setProtocolOptions(maxFramePayloadSize=0, maxMessagePayloadSize=0)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    return port, factory.counting


class HostileBOSH(resource.Resource):
    isLeaf = True

    def __init__(self, behaviour, counting):
        super().__init__()
        self.behaviour = behaviour
        self.counting = counting

    def render_POST(self, request):
        if self.behaviour == "garbage":
            return b"<<<this is not a body>>>"
        if self.behaviour == "not-body":
            return b"<html><body>hello</body></html>"
        if self.behaviour == "redirect":
            request.setResponseCode(307)
            request.setHeader("Location", "http://127.0.0.1:1/elsewhere")
            return b"moved"
        return server.NOT_DONE_YET


class CountingSite(server.Site):
    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        counting = self.counting
        made, lost = protocol.connectionMade, protocol.connectionLost

        def connection_made():
            counting.open += 1
            made()

        def connection_lost(reason):
            counting.open -= 1
            lost(reason)

        protocol.connectionMade = connection_made
        protocol.connectionLost = connection_lost
        return protocol


def start_bosh(behaviour):
    counting = Counting()
    site = CountingSite(HostileBOSH(behaviour, counting))
    site.counting = counting
    site.noisy = False
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    return port, counting


async def probe(service, endpoint, url):
    """POST the probe; return the answer and how long it took (ms, on the wall clock)."""
    started = reactor.seconds()
    body = {"url": url, "domain": "localhost", "timeout": REQUEST_TIMEOUT_MS}
    response = await treq.post(service.url(f"/api/xmpp/{endpoint}"), json=body)
    answer = json.loads(await response.content())
    assert response.code == 200, answer
    return answer, (reactor.seconds() - started) * 1000


async def all_closed(counting):
    """Wait until the server has no connection open (a leak fails the test by its timeout)."""
    while counting.open:
        await deferLater(reactor, 0.05, lambda: None)


@pytest.mark.parametrize(
    "behaviour, error_type",
    [
        ("huge", "too_large"),
        ("binary", "protocol"),
        ("garbage", "protocol"),
        ("no-subprotocol", "protocol"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_hostile_websocket(web_service, behaviour, error_type):
    """A hostile WebSocket server stops the probe with a typed error and no leak."""
    port, counting = start_websocket(behaviour)
    try:
        url = f"ws://127.0.0.1:{port.getHost().port}/xmpp-websocket"
        answer, took = await probe(web_service, "websocket", url)
        assert answer["success"] is False
        assert answer["errorType"] == error_type, answer
        assert took < REQUEST_TIMEOUT_MS
        await all_closed(counting)
    finally:
        await port.stopListening()


@pytest.mark.parametrize(
    "behaviour, error_type",
    [
        ("garbage", "protocol"),
        ("not-body", "protocol"),
        ("redirect", "protocol"),
        ("silent", "timeout"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_hostile_bosh(web_service, behaviour, error_type):
    """A BOSH server that answers garbage, redirects (not followed) or never answers: a
    typed error, no leak."""
    port, counting = start_bosh(behaviour)
    try:
        url = f"http://127.0.0.1:{port.getHost().port}/http-bind"
        answer, took = await probe(web_service, "bosh", url)
        assert answer["success"] is False
        assert answer["errorType"] == error_type, answer
        assert took < REQUEST_TIMEOUT_MS
        await all_closed(counting)
    finally:
        await port.stopListening()
