"""
Fakes for protocol and flow tests: canned server bytes, a StringTransport
that lets a scripted server answer what the client writes, and a fake
C{connect} that plugs a protocol into it.
"""

from __future__ import annotations

import json

from twisted.internet.defer import fail, succeed
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='example.com' "
    b"version='1.0' xml:lang='en'>"
)
HEADER2 = HEADER.replace(b"id='s1'", b"id='s2'")
FEATURES = (
    b"<stream:features>"
    b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    b"<mechanism>DIGEST-MD5</mechanism><mechanism>PLAIN</mechanism></mechanisms>"
    b"<compression xmlns='http://jabber.org/features/compress'><method>zlib</method>"
    b"</compression>"
    b"<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/>"
    b"</stream:features>"
)
FEATURES_STARTTLS = FEATURES.replace(
    b"<stream:features>", b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
)
FEATURES_NO_PLAIN = (
    b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    b"<mechanism>DIGEST-MD5</mechanism><mechanism>X-OAUTH2</mechanism>"
    b"</mechanisms></stream:features>"
)
FEATURES_BOUND = (
    b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
    b"<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>"
    b"<sm xmlns='urn:xmpp:sm:3'/><csi xmlns='urn:xmpp:csi:0'/>"
    b"<ver xmlns='urn:xmpp:features:rosterver'/></stream:features>"
)
FEATURES_BOUND_NO_SESSION = (
    b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
)
SUCCESS = b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
BIND_RESULT = (
    b"<iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    b"<jid>alice@example.com/portofcall-x1</jid></bind></iq>"
)
SESSION_RESULT = b"<iq type='result' id='sess1'/>"


def sasl_failure(condition, text=None):
    inner = "<%s/>" % (condition,)
    if text:
        inner += "<text xml:lang='en'>%s</text>" % (text,)
    return ("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</failure>" % inner).encode()


def stream_error(condition, text=None):
    inner = "<%s xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" % (condition,)
    if text:
        inner += "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>%s</text>" % (text,)
    return ("<stream:error>%s</stream:error>" % inner).encode()


def iq_error(id_, condition, kind="cancel"):
    return (
        "<iq type='error' id='%s'><error type='%s'><%s "
        "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>" % (id_, kind, condition)
    ).encode()


class ScriptedTransport(StringTransport):
    """
    A StringTransport whose peer answers: C{script} is a list of
    C{(marker, reply)}; when the client has written C{marker} (bytes), the
    peer sends C{reply} (bytes, or a callable taking the transport).  The
    replies are delivered synchronously, in the middle of the client's write.
    """

    def __init__(self, script=(), chunk=None):
        super().__init__()
        self.script = list(script)
        self.chunk = chunk
        self._seen = b""

    def write(self, data):
        super().write(data)
        self._seen += data
        while self.script and self.script[0][0] in self._seen:
            marker, reply = self.script.pop(0)
            self._seen = self._seen[self._seen.index(marker) + len(marker) :]
            if callable(reply):
                reply(self)
            else:
                self.deliver(reply)

    tls_creator = None

    def startTLS(self, creator):
        """Record the upgrade; the test plays the TLS peer's part."""
        self.tls_creator = creator

    def deliver(self, data):
        """The peer sends C{data}, in chunks of C{self.chunk} bytes if set."""
        if self.protocol is None:
            return
        step = self.chunk or len(data) or 1
        for i in range(0, len(data), step):
            if self.disconnecting or self.protocol is None:
                return
            self.protocol.dataReceived(data[i : i + step])


class FakeConnector:
    """
    C{connect(host, port, protocol)} that connects C{protocol} to a
    L{ScriptedTransport}, or fails with C{error}.
    """

    def __init__(self, transport=None, error=None):
        self.transport = transport if transport is not None else ScriptedTransport()
        self.error = error
        self.calls = []

    def connect(self, host, port, protocol):
        self.calls.append((host, port))
        if self.error is not None:
            return fail(Failure(self.error))
        self.transport.protocol = protocol
        protocol.makeConnection(self.transport)
        return succeed(protocol)


def login_script(features=FEATURES, after_auth=SUCCESS, bound=FEATURES_BOUND, tail=()):
    """The server half of a successful PLAIN login, then C{tail} steps."""
    return [
        (b"version='1.0' xml:lang='en'>", HEADER + features),
        (b"</auth>", after_auth),
        (b"version='1.0' xml:lang='en'>", HEADER2 + bound),
        (b"</iq>", BIND_RESULT),
        (b"</iq>", SESSION_RESULT),
        *tail,
    ]


class ApiHarness:
    """
    Mixin for SynchronousTestCase: an L{Api} over a L{FakeConnector}, driven
    through treq's StubTreq on C{self.clock}.
    """

    base = "http://probe.test"

    def api(self, script=(), error=None, max_concurrent=200, connect=None, dns=None, worker=None):
        """
        The API over a L{FakeConnector} playing C{script} (or failing with
        C{error}), or over C{connect}; C{dns} (e.g. a C{dns_fakes.TableResolver})
        answers both address and SRV questions, under the default policy;
        C{worker}: as L{Api}'s.
        """
        from treq.testing import StubTreq

        from portofcall_xmpp import flows
        from portofcall_xmpp.policy import Policy
        from portofcall_xmpp.web import Api

        self.transport = ScriptedTransport(script)
        self.connector = FakeConnector(self.transport, error)
        env = flows.Environment(
            connect or self.connector.connect,
            self.clock,
            5.0,
            resolver=dns,
            srv_resolver=dns,
            policy=Policy(),
        )
        self.app = Api(env, max_concurrent=max_concurrent, worker=worker)
        self.stub = StubTreq(self.app.resource())
        return self.stub

    def post(self, path, body, headers=None, raw=None, advance=None):
        """POST C{body} as JSON (or C{raw}); the response and its decoded JSON."""
        if raw is None:
            raw = json.dumps(body).encode()
        hdrs = {"Content-Type": ["application/json"]} if headers is None else headers
        d = self.stub.post(self.base + path, data=raw, headers=hdrs)
        if advance:
            self.clock.advance(advance)
        self.stub.flush()
        response = self.successResultOf(d)
        return response, json.loads(self.successResultOf(response.content()))
