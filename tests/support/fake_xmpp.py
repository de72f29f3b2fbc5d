"""
A small, configurable XMPP server on loopback for the check's tests: it
answers stream headers with features (STARTTLS, SASL mechanisms, dialback as
configured), negotiates real TLS (STARTTLS, or direct TLS from the first byte)
with a test certificate and the TLS versions asked for, and refuses or
serves streams to names it does not host.  It never authenticates anyone:
an C{<auth>} gets C{<failure><not-authorized/></failure>}.

    server = start_fake(reactor, Fake(domain="a.example.test", cert=certs.wildcard))
    ... server.port ...
    await server.stop()
"""

from __future__ import annotations

import os
import re

import attrs
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

NS_TLS = b"urn:ietf:params:xml:ns:xmpp-tls"
_TO = re.compile(rb"""\sto=['"]([^'"]*)['"]""")
_HEADER = re.compile(rb"<stream:stream[^>]*>")


@attrs.frozen
class Fake:
    """
    How a fake server behaves.

    @ivar domain: the name it hosts.
    @ivar from_: the C{from} of its header (C{None}: the domain; C{b""}: none).
    @ivar server: a C{jabber:server} stream.
    @ivar cert: a C{certs.Issued} for TLS, or C{None} for no TLS at all.
    @ivar direct: TLS from the first byte (XEP-0368).
    @ivar versions: the lowest and highest TLS version it accepts.
    @ivar mechanisms: SASL mechanisms before TLS / after TLS.
    @ivar serve_any: answer streams to any name (else host-unknown).
    """

    domain: str
    from_: str | None = None
    server: bool = False
    cert: object = None
    direct: bool = False
    required: bool = False
    versions: tuple[int, int] = (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION)
    mechanisms: tuple[str, ...] = ("SCRAM-SHA-1",)
    tls_mechanisms: tuple[str, ...] = ("SCRAM-SHA-1", "SCRAM-SHA-1-PLUS")
    dialback: bool = False
    serve_any: bool = False

    def context(self) -> SSL.Context:
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        context.set_min_proto_version(self.versions[0])
        context.set_max_proto_version(self.versions[1])
        context.use_certificate_chain_file(str(self.cert.fullchain_path))
        context.use_privatekey_file(str(self.cert.key_path))
        return context


@implementer(IOpenSSLContextFactory)
class _ContextFactory:
    def __init__(self, fake: Fake):
        self._fake = fake

    def getContext(self):
        return self._fake.context()


class FakeProtocol(Protocol):
    secure = False

    def connectionMade(self):
        self.factory.live.add(self)
        self.buffer = b""
        self.secure = self.factory.fake.direct

    def connectionLost(self, reason):
        self.factory.live.discard(self)

    def dataReceived(self, data):
        fake = self.factory.fake
        self.buffer += data
        while True:
            if b"<starttls" in self.buffer and fake.cert is not None and not self.secure:
                self.buffer = b""
                self.transport.write(b"<proceed xmlns='%s'/>" % NS_TLS)
                self.transport.startTLS(_ContextFactory(fake))
                self.secure = True
            elif b"<auth" in self.buffer and b"</auth>" in self.buffer:
                self.buffer = b""
                self.transport.write(
                    b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
                )
            else:
                match = _HEADER.search(self.buffer)
                if match is None:
                    return
                self.buffer = self.buffer[match.end() :]
                to = _TO.search(match.group(0))
                self.answer_header(to.group(1).decode() if to else "")

    def answer_header(self, to: str):
        fake = self.factory.fake
        ns = b"jabber:server" if fake.server else b"jabber:client"
        served = fake.domain if fake.from_ is None else fake.from_
        sender = f" from='{served}'".encode() if served else b""
        header = (
            b"<?xml version='1.0'?><stream:stream xmlns='%s' "
            b"xmlns:stream='http://etherx.jabber.org/streams' id='%s'%s version='1.0'>"
            % (ns, b"fake-" + os.urandom(6).hex().encode(), sender)
        )
        if to != fake.domain and not fake.serve_any:
            self.transport.write(
                header + b"<stream:error><host-unknown "
                b"xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
            )
            self.transport.loseConnection()
            return
        parts = [b"<stream:features>"]
        if not self.secure and fake.cert is not None:
            required = b"<required/>" if fake.required else b""
            parts.append(b"<starttls xmlns='%s'>%s</starttls>" % (NS_TLS, required))
        mechanisms = fake.tls_mechanisms if self.secure else fake.mechanisms
        if mechanisms:
            parts.append(b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>")
            parts += [b"<mechanism>%s</mechanism>" % m.encode() for m in mechanisms]
            parts.append(b"</mechanisms>")
        if fake.dialback:
            parts.append(b"<dialback xmlns='urn:xmpp:features:dialback'/>")
        parts.append(b"</stream:features>")
        self.transport.write(header + b"".join(parts))


class FakeFactory(Factory):
    noisy = False
    protocol = FakeProtocol

    def __init__(self, fake: Fake):
        self.fake = fake
        self.live: set = set()


class FakeServer:
    """A running fake: C{port}, the C{live} connections, and C{stop()}."""

    def __init__(self, factory: FakeFactory, listening):
        self.factory = factory
        self.listening = listening
        self.port = listening.getHost().port

    @property
    def live(self) -> set:
        return self.factory.live

    def stop(self):
        for proto in list(self.factory.live):
            proto.transport.abortConnection()
        return self.listening.stopListening()


def start_fake(reactor, fake: Fake) -> FakeServer:
    """Listen on a free port of 127.0.0.1 (with TLS from the first byte when C{fake.direct})."""
    factory = FakeFactory(fake)
    if fake.direct:
        listening = reactor.listenSSL(0, factory, _ContextFactory(fake), interface="127.0.0.1")
    else:
        listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
    return FakeServer(factory, listening)
