"""
Hostile component servers (XEP-0114), through HTTP: a server that floods or
never answers costs only that probe: a 200 with the right errorType within
the request's timeout, no connection left open, and the next probe works.
"""

import json

import pytest
import pytest_twisted
import treq
from conftest import start_service
from hostile import Hostile, HostileFactory, Scripted
from twisted.internet import reactor
from twisted.internet.task import LoopingCall, deferLater

from portofcall_xmpp.protocol import CLOSE_GRACE

READ_TIMEOUT_MS = 1000
REQUEST_TIMEOUT_MS = 3000
HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
    b"xmlns:stream='http://etherx.jabber.org/streams' id='hostile' from='c.localhost'>"
)
OUR_HEADER = b"xml:lang='en'>"


class ComponentFlood(Hostile):
    """After our header: its header, then C{self.factory.chunk} as fast as it can."""

    loop = None

    def on_data(self):
        if self.loop is None and OUR_HEADER in self.received:
            self.write(HEADER + self.factory.opening)
            self.loop = LoopingCall(self.write, self.factory.chunk)
            self.loop.start(0.002)

    def stop(self):
        if self.loop is not None and self.loop.running:
            self.loop.stop()


def flood(opening, chunk):
    return HostileFactory(ComponentFlood, opening=opening, chunk=chunk)


def servers():
    """name -> (factory, errorType)."""
    return {
        # Accepts, never says a word.
        "silent": (HostileFactory(Scripted, script=[]), "timeout"),
        # Its header, then nothing in reply to the handshake.
        "silent_after_header": (
            HostileFactory(Scripted, script=[(OUR_HEADER, HEADER)]),
            "timeout",
        ),
        # One element that never ends.
        "endless_element": (flood(b"<handshake>", b"a" * 65536), "too_large"),
        # Whitespace between elements (about 500 KB/s, under the per-connection
        # byte cap within the timeout), for ever: never an element.
        "whitespace_flood": (flood(b"", b" " * 1024), "timeout"),
        # Element after element, none of them the handshake reply.
        "element_flood": (flood(b"", b"<message><body>x</body></message>" * 1000), "protocol"),
        # Not XML at all.
        "garbage": (
            HostileFactory(Scripted, script=[(OUR_HEADER, b"HTTP/1.1 400 Bad Request\r\n")]),
            "protocol",
        ),
    }


@pytest.fixture(scope="module")
def hostile_service():
    running = start_service("--allow-private", "--read-timeout", str(READ_TIMEOUT_MS))
    try:
        yield running
    finally:
        running.stop()


async def probe(service, port, **extra):
    body = {
        "host": "127.0.0.1",
        "port": port,
        "componentName": "c.localhost",
        "secret": "hostile-secret",
        "timeout": REQUEST_TIMEOUT_MS,
        **extra,
    }
    started = reactor.seconds()
    response = await treq.post(service.url("/api/xmpp/component"), json=body, persistent=False)
    content = json.loads(await response.content())
    return response.code, content, reactor.seconds() - started


async def settle(factory):
    """Wait until the server side has seen every connection close."""
    deadline = reactor.seconds() + CLOSE_GRACE + 2
    while factory.live and reactor.seconds() < deadline:
        await deferLater(reactor, 0.05, lambda: None)


@pytest.mark.parametrize("name", sorted(servers()))
@pytest_twisted.ensureDeferred
async def test_hostile_component(name, hostile_service):
    """Each hostile component server: its errorType, within timeout, nothing left open."""
    factory, error_type = servers()[name]
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        code, body, took = await probe(hostile_service, port.getHost().port)
        assert code == 200
        assert body["success"] is False
        assert body["errorType"] == error_type, body
        assert took < REQUEST_TIMEOUT_MS / 1000 + 1
        assert "hostile-secret" not in json.dumps(body)
        await settle(factory)
        assert not factory.live, "connection to the hostile server left open"
        assert factory.connections == 1
    finally:
        await port.stopListening()
    # The next probe is unaffected.
    good = HostileFactory(
        Scripted, script=[(OUR_HEADER, HEADER), (b"</handshake>", b"<handshake/>")]
    )
    port = reactor.listenTCP(0, good, interface="127.0.0.1")
    try:
        code, body, _ = await probe(hostile_service, port.getHost().port)
        assert (code, body["authenticated"]) == (200, True), body
    finally:
        await port.stopListening()
