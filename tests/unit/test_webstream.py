"""
The channel adapter of the HTTP transports (portofcall_xmpp.webstream and the
WebSocket channel), over a fake WebSocket and a Clock: elements in and out,
typed failures, and the /login steps (SASL, restart, bind) through it.
"""

import attrs
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.words.xish import domish

from portofcall_xmpp.errors import (
    Closed,
    ProtocolViolation,
    ReadTimeout,
    SASLFailure,
    StreamError,
    TLSFailure,
    TooLarge,
)
from portofcall_xmpp.flows import Environment, Trace
from portofcall_xmpp.parse import Roster, parse_roster
from portofcall_xmpp.protocol import Transcript
from portofcall_xmpp.stream import Contact, Limits, roster_items
from portofcall_xmpp.websocket import NS_FRAMING, WebSocketChannel
from portofcall_xmpp.webstream import WebSession, login

OPEN = (
    f"<open xmlns='{NS_FRAMING}' from='example.com' id='s1' version='1.0' xml:lang='en'/>"
).encode()
FEATURES = (
    b"<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"
    b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
    b"</mechanisms></stream:features>"
)
BOUND_FEATURES = (
    b"<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"
    b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
)
SUCCESS = b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
BIND_RESULT = (
    b"<iq xmlns='jabber:client' type='result' id='bind1'>"
    b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@example.com/p</jid></bind></iq>"
)


class FakeWebSocket:
    """Records the frames sent; answers each with the next scripted frames."""

    def __init__(self, channel, script=()):
        self.channel = channel
        self.sent: list[bytes] = []
        self.script = list(script)
        self.transport = self
        self.aborted = False
        self.closed_with = None

    def sendMessage(self, data, isBinary=False):
        assert not isBinary
        self.sent.append(data)
        if self.script:
            for frame in self.script.pop(0):
                self.channel.received(frame)

    def sendClose(self, code):
        self.closed_with = code

    def abortConnection(self):
        self.aborted = True


def opened(script=(), limits=None, transcript=None):
    clock = Clock()
    channel = WebSocketChannel(clock, limits or Limits(), transcript)
    ws = channel.ws = FakeWebSocket(channel, script)
    channel.connected(attrs.make_class("R", ["protocol"])("xmpp"))
    channel.opened()
    return clock, channel, ws


def test_element_per_frame():
    """Each text frame is one element; read_element hands over the one that matches."""
    clock, channel, _ = opened()
    d = channel.read_element(lambda e: e.name == "features", "features", 5)
    channel.received(b"<message xmlns='jabber:client'/>")
    channel.received(FEATURES)
    assert d.result.name == "features"


def test_read_timeout():
    """No element within the timeout: ReadTimeout."""
    clock, channel, _ = opened()
    d = channel.read_element(lambda e: True, "features", 5)
    clock.advance(5)
    assert d.result.check(ReadTimeout)
    d.addErrback(lambda _: None)


@pytest.mark.parametrize(
    "frame, error",
    [
        (b"not xml", ProtocolViolation),
        (b"<a/><b/>", ProtocolViolation),
        (b"<a>", ProtocolViolation),
        (b'<!DOCTYPE a [<!ENTITY x "y">]><a/>', ProtocolViolation),
        (b"<a>" + b"x" * 2000 + b"</a>", TooLarge),
        (f"<close xmlns='{NS_FRAMING}'/>".encode(), Closed),
        (
            b"<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"
            b"<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
            StreamError,
        ),
    ],
)
def test_frames_that_end_the_stream(frame, error):
    """A frame that is not one well-formed, small, permitted element ends the session typed."""
    _, channel, ws = opened(limits=Limits(max_element_bytes=1024, max_stanza_bytes=1024))
    d = channel.read_element(lambda e: True, "anything", 5)
    channel.received(frame)
    assert d.result.check(error)
    d.addErrback(lambda _: None)
    assert ws.aborted


def test_stanzas_qualified():
    """A stanza without a namespace is sent qualified by jabber:client (RFC 7395 §3.3.3)."""
    _, channel, ws = opened()
    channel.send(domish.Element((None, "iq")))
    assert ws.sent == [b"<iq xmlns='jabber:client'/>"]


def test_header_is_open():
    """The stream header is <open/> both ways."""
    _, channel, ws = opened([[OPEN]])
    channel.send_header("example.com")
    assert ws.sent[0].startswith(f"<open xmlns='{NS_FRAMING}'".encode())
    header = run(channel.read_header(5))
    assert header.result.id == "s1"


def session(script):
    clock, channel, ws = opened(script)
    env = Environment(connect=None, clock=clock)
    trace = Trace(clock, 0.0, False)
    return WebSession(env, trace, channel, "example.com", "example.com", 443), ws


@attrs.frozen
class Req:
    username: str | None = "alice"
    password: str | None = "secret"
    resource: str = "p"
    mechanism: str | None = None


def run(coro):
    return Deferred.fromCoroutine(coro)


def test_login_through_the_channel():
    """SASL PLAIN, restart, bind: the /login phases through the adapter."""
    s, ws = session([[OPEN, FEATURES], [SUCCESS], [OPEN, BOUND_FEATURES], [BIND_RESULT]])
    d = run(login(s, Req(), plaintext_chosen=True))
    done = d.result
    assert done["jid"] == "alice@example.com/p"
    assert done["mechanism"] == "PLAIN"
    assert s.trace.phases == [
        "stream_opened",
        "sasl_plain_sent",
        "authenticated",
        "stream_restarted",
        "resource_bound",
    ]


def test_plain_refused_over_discovered_plaintext():
    """PLAIN over a plaintext URL the caller did not choose: refused before sending."""
    s, ws = session([[OPEN, FEATURES]])
    d = run(login(s, Req(), plaintext_chosen=False))
    assert d.result.check(TLSFailure)
    d.addErrback(lambda _: None)
    assert not any(b"<auth" in frame for frame in ws.sent)


def test_wrong_password():
    """A SASL failure is a SASLFailure with its condition, as /login."""
    failure = b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
    s, _ = session([[OPEN, FEATURES], [failure]])
    d = run(login(s, Req(), plaintext_chosen=True))
    assert d.result.check(SASLFailure)
    assert d.result.value.extra["saslCondition"] == "not-authorized"
    d.addErrback(lambda _: None)


def test_close_sends_close():
    """Closing politely sends <close/> and a WebSocket close."""
    _, channel, ws = opened()
    channel.close()
    assert ws.sent == [f"<close xmlns='{NS_FRAMING}'/>".encode()]
    assert ws.closed_with == 1000


ROSTER_FRAME = (
    b"<iq xmlns='jabber:client' type='result' id='roster1'>"
    b"<query xmlns='jabber:iq:roster' ver='v1'><item jid='bob@example.com' name='B\xc3\xb6b'>"
    b"<group>Friends</group></item><item jid='carol@example.com' subscription='to'/>"
    b"</query></iq>"
)


@pytest.mark.parametrize("transcript", [None, Transcript(Clock(), 0.0)])
def test_roster_frame(transcript):
    """
    A roster frame reads as the same roster with or without a transcript:
    as values without one, as elements (which the transcript shows) with one.
    """
    _, channel, _ = opened(transcript=transcript)
    d = channel.read_element(lambda e: e.name == "iq", "roster", 5, large=True)
    channel.received(ROSTER_FRAME)
    iq = d.result
    assert parse_roster(iq) == Roster(
        "v1",
        (
            Contact(
                jid="bob@example.com",
                name="B\xf6b",
                subscription="none",
                ask=None,
                groups=("Friends",),
            ),
            Contact(jid="carol@example.com", name=None, subscription="to", ask=None, groups=()),
        ),
    )
    query = iq.firstChildElement()
    if transcript is None:
        assert roster_items(query) is not None
    else:
        assert roster_items(query) is None
        assert any("<group>Friends</group>" in xml for _, _, xml in transcript.entries)
