"""
Small XMPP servers that misbehave, for tests: each is a Twisted server on
127.0.0.1 (port 0) that does one bad thing.  They count the connections they
hold, so tests can prove the service left none open.
"""

from __future__ import annotations

from twisted.internet import reactor as default_reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' id='hostile' from='localhost' "
    b"version='1.0' xml:lang='en'>"
)
FEATURES = (
    b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    b"<mechanism>PLAIN</mechanism></mechanisms></stream:features>"
)
BOUND_FEATURES = (
    b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
)
SUCCESS = b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
ENTITY_BOMB = (
    b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    + b"".join(
        b"<!ENTITY lol%d '%s'>" % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams'>&lol9;"
)


class Hostile(Protocol):
    """Base: remembers itself in the factory while connected."""

    def connectionMade(self):
        self.factory.live.add(self)
        self.factory.connections += 1
        self.received = b""
        self.start()

    def connectionLost(self, reason):
        self.factory.live.discard(self)
        self.stop()

    def dataReceived(self, data):
        self.received += data
        self.on_data()

    def start(self):
        pass

    def stop(self):
        pass

    def on_data(self):
        pass

    def write(self, data):
        if self.transport is not None and not self.transport.disconnecting:
            self.transport.write(data)


class SendAtOnce(Hostile):
    """Send C{self.factory.payload} as soon as the client connects."""

    def start(self):
        self.write(self.factory.payload)


class SendAfterHeader(Hostile):
    """Send the payload once the client's stream header has arrived."""

    sent = False

    def on_data(self):
        if not self.sent and b"version='1.0'" in self.received:
            self.sent = True
            self.write(self.factory.payload)
            if self.factory.then_reset:
                self.transport.abortConnection()


class Drip(Hostile):
    """A valid stream, one byte every C{interval} seconds."""

    def start(self):
        self.data = HEADER + FEATURES
        self.loop = LoopingCall(self.tick)
        self.loop.clock = self.factory.clock
        self.loop.start(self.factory.interval)

    def tick(self):
        if self.data:
            self.write(self.data[:1])
            self.data = self.data[1:]

    def stop(self):
        if self.loop.running:
            self.loop.stop()


class Flood(Hostile):
    """Header and features, then stanzas as fast as it can, never closing."""

    def on_data(self):
        if getattr(self, "loop", None) is None and b"version='1.0'" in self.received:
            self.write(HEADER + FEATURES)
            self.loop = LoopingCall(self.tick)
            self.loop.clock = self.factory.clock
            self.loop.start(0.005)

    def tick(self):
        self.write(b"<message from='x@localhost'><body>" + b"flood " * 1000 + b"</body></message>")

    def stop(self):
        if getattr(self, "loop", None) is not None and self.loop.running:
            self.loop.stop()


class Scripted(Hostile):
    """Answer each marker the client writes with the next reply."""

    def start(self):
        self.script = list(self.factory.script)

    def on_data(self):
        while self.script and self.script[0][0] in self.received:
            marker, reply = self.script.pop(0)
            self.received = self.received[self.received.index(marker) + len(marker) :]
            self.write(reply)


class HostileFactory(Factory):
    noisy = False

    def __init__(self, protocol, clock=None, **attrs):
        self.protocol = protocol
        self.clock = clock or default_reactor
        self.live: set = set()
        self.connections = 0
        self.then_reset = False
        self.then_close = False
        self.interval = 1.0
        for k, v in attrs.items():
            setattr(self, k, v)


STARTTLS_FEATURES = (
    b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
    b"</mechanisms></stream:features>"
)
PROCEED = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"


class StartTLSThen(Hostile):
    """
    Offer STARTTLS, answer <proceed/>, and when the client's TLS ClientHello
    arrives, answer C{payload} (not TLS) and maybe close.
    """

    proceeded = False

    def on_data(self):
        if self.proceeded:
            self.received = b""
            self.write(self.factory.payload)
            if self.factory.then_close:
                self.transport.loseConnection()
        elif b"<starttls" in self.received:
            self.received = b""
            self.proceeded = True
            self.write(PROCEED)
        elif b"version='1.0'" in self.received:
            self.received = b""
            self.write(HEADER + STARTTLS_FEATURES)


def login_script(after_auth=SUCCESS, bound=BOUND_FEATURES, bind_reply=None):
    steps = [
        (b"version='1.0'", HEADER + FEATURES),
        (b"</auth>", after_auth),
        (b"version='1.0'", HEADER + bound),
    ]
    if bind_reply is not None:
        steps.append((b"</iq>", bind_reply))
    return steps


def servers():
    """Every hostile server: name -> (factory, endpoint, errorType expected)."""
    padding = b"<feature var='urn:example:padding' note='" + b"p" * 60 + b"'/>"
    big = (
        HEADER
        + b"<stream:features>"
        + padding * (5 * 1024 * 1024 // len(padding))
        + b"</stream:features>"
    )
    bind_error = (
        b"<iq type='error' id='bind1'><error type='cancel'><not-allowed "
        b"xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    )
    sasl_failure = b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
    stream_error = (
        b"<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        b"</stream:error></stream:stream>"
    )
    return {
        "garbage": (HostileFactory(SendAtOnce, payload=b"\x16\x03\x01\xff\xfegarbage<<"),
                    "connect", "protocol"),
        "entity_bomb": (HostileFactory(SendAtOnce, payload=ENTITY_BOMB), "connect", "protocol"),
        "drip": (HostileFactory(Drip, interval=0.4), "connect", "timeout"),
        "huge_features": (HostileFactory(SendAfterHeader, payload=big), "connect", "too_large"),
        "header_then_silence": (HostileFactory(SendAfterHeader, payload=HEADER), "connect",
                                "timeout"),
        "reset_after_header": (HostileFactory(SendAfterHeader, payload=HEADER, then_reset=True),
                               "connect", "closed"),
        "invalid_utf8": (HostileFactory(SendAfterHeader,
                                        payload=HEADER + b"<stream:features>\xff\xfe\xfd"),
                         "connect", "protocol"),
        "stream_error": (HostileFactory(SendAfterHeader, payload=HEADER + stream_error),
                         "connect", "stream_error"),
        "bind_error": (HostileFactory(Scripted, script=login_script(bind_reply=bind_error)),
                       "login", "bind"),
        "sasl_failure": (HostileFactory(Scripted, script=login_script(after_auth=sasl_failure)),
                         "login", "sasl"),
        "flood_login": (HostileFactory(Flood), "login", "protocol"),
        "starttls_failure": (
            HostileFactory(
                Scripted,
                script=[
                    (b"version='1.0'", HEADER + STARTTLS_FEATURES),
                    (b"<starttls", b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
                ],
            ),
            "login",
            "tls",
        ),
        "starttls_garbage": (
            HostileFactory(StartTLSThen, payload=b"HTTP/1.1 400 Bad Request\r\n\r\n" * 20),
            "login",
            "tls",
        ),
        "starttls_close": (
            HostileFactory(StartTLSThen, payload=b"", then_close=True),
            "connect",
            "tls",
        ),
    }  # fmt: skip
