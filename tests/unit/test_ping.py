"""
Tests for the XEP-0199 ping flow (flows.ping): login, then pings one at a
time, with a scripted server on a StringTransport and a Clock.
"""

import re

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from xmpp_fakes import FakeConnector, ScriptedTransport, login_script, sasl_failure, stream_error

from portofcall_xmpp import flows, render, validate
from portofcall_xmpp.errors import RequestError

AUTH = {"host": "example.com", "username": "alice", "password": "s3cret-pw", "tls": "none"}
PING = b"<ping xmlns='urn:xmpp:ping'/></iq>"


def pong(id_):
    return f"<iq type='result' id='{id_}' from='example.com'/>".encode()


def ping_error(id_, condition, text=None):
    inner = f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
    if text:
        inner += f"<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>{text}</text>"
    return f"<iq type='error' id='{id_}'><error type='cancel'>{inner}</error></iq>".encode()


class PingCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()

    def ping(self, tail, read_timeout=5.0, login=None, **body):
        script = login if login is not None else login_script(tail=tail)
        self.transport = ScriptedTransport(script)
        env = flows.Environment(FakeConnector(self.transport).connect, self.clock, read_timeout)
        self.req = validate.parse_ping({**AUTH, **body})
        return flows.ping(env, self.req)

    def later(self, delay, data):
        """A script step: the server answers C{data} C{delay} seconds later."""
        return lambda transport: self.clock.callLater(delay, transport.deliver, data)

    def failed(self, d, error_type):
        failure = self.failureResultOf(d, flows.Failed)
        self.assertEqual(failure.value.error.error_type, error_type, failure.value.error.message)
        return failure.value

    def sent_pings(self):
        """(id, to) of every ping iq written."""
        return re.findall(
            r"<iq type='get' id='(ping\d+)' to='([^']*)'><ping xmlns='urn:xmpp:ping'/>",
            self.transport.value().decode(),
        )


class RequestTests(SynchronousTestCase):
    def test_defaults(self):
        """20 s, 3 pings, the server's own domain; account and target as /login's."""
        req = validate.parse_ping(dict(AUTH))
        self.assertEqual((req.auth.timeout, req.count, req.to), (20.0, 3, None))
        self.assertEqual((req.account, req.target), ("alice@example.com", "example.com:5222"))

    def test_target(self):
        """target is a JID or a domain, normalised; anything else is a 400 naming it."""
        req = validate.parse_ping({**AUTH, "target": "Bob@Example.NET/Phone"})
        self.assertEqual(req.to, "bob@example.net/Phone")
        self.assertEqual(validate.parse_ping({**AUTH, "target": "example.net"}).to, "example.net")
        for bad in ("", "@example.net", "a@b@c", 7):
            with self.assertRaises(RequestError) as caught:
                validate.parse_ping({**AUTH, "target": bad})
            self.assertTrue(caught.exception.message.startswith("target"), bad)

    def test_count(self):
        """count is 1-10."""
        for bad in (0, 11, 2.0, "3"):
            with self.assertRaises(RequestError) as caught:
                validate.parse_ping({**AUTH, "count": bad})
            self.assertEqual(caught.exception.message, "count must be an integer from 1 to 10")


class PingTests(PingCase):
    def test_pongs(self):
        """Three pongs: each round trip on the clock, min/median/max, one phase."""
        d = self.ping(
            [
                (PING, self.later(0.25, pong("ping1"))),
                (PING, self.later(0.5, pong("ping2"))),
                (PING, self.later(0.125, pong("ping3"))),
            ]
        )
        self.clock.advance(0.25)
        self.assertNoResult(d)
        self.clock.advance(0.5)
        self.clock.advance(0.125)
        result = self.successResultOf(d)
        pings = result.pings
        self.assertEqual((pings.target, pings.count), ("example.com", 3))
        self.assertEqual(
            pings.pings,
            (flows.Ping("pong", 0.25), flows.Ping("pong", 0.5), flows.Ping("pong", 0.125)),
        )
        self.assertEqual(pings.summary(), (0.125, 0.25, 0.5))
        self.assertEqual(result.phases[-2:], ("session_established", "ping_received"))
        self.assertEqual(result.timings["ping_received"], 0.25)
        self.assertEqual(
            self.sent_pings(),
            [("ping1", "example.com"), ("ping2", "example.com"), ("ping3", "example.com")],
        )
        body = render.ping_json(result, self.req)
        self.assertEqual(body["rttMs"], {"min": 125.0, "median": 250.0, "max": 500.0})
        self.assertEqual(
            body["pings"][0], {"ms": 250.0, "result": "pong", "condition": None, "text": None}
        )
        self.assertEqual(body["message"], "XMPP ping completed")

    def test_one_at_a_time(self):
        """The next ping is sent only once the previous one is answered."""
        d = self.ping([(PING, self.later(1, pong("ping1"))), (PING, pong("ping2"))], count=2)
        self.assertEqual(len(self.sent_pings()), 1)
        self.clock.advance(1)
        self.assertEqual(len(self.successResultOf(d).pings.pings), 2)

    def test_target_jid(self):
        """A JID target is the iq's to."""
        d = self.ping([(PING, pong("ping1"))], target="bob@example.com", count=1)
        self.assertEqual(self.successResultOf(d).pings.target, "bob@example.com")
        self.assertEqual(self.sent_pings(), [("ping1", "bob@example.com")])

    def test_remote_error_is_a_result(self):
        """remote-server-not-found is the ping's result: success, no RTT summary."""
        error = ping_error("ping1", "remote-server-not-found", "no DNS")
        d = self.ping([(PING, self.later(0.5, error))], target="nowhere.invalid", count=1)
        self.clock.advance(0.5)
        result = self.successResultOf(d)
        (ping,) = result.pings.pings
        self.assertEqual((ping.result, ping.rtt), ("error", 0.5))
        self.assertEqual((ping.error.condition, ping.error.text),
                         ("remote-server-not-found", "no DNS"))  # fmt: skip
        self.assertIn("ping_received", result.phases)
        body = render.ping_json(result, self.req)
        self.assertIs(body["success"], True)
        self.assertIsNone(body["rttMs"])
        self.assertEqual(
            body["pings"],
            [{"ms": 500.0, "result": "error", "condition": "remote-server-not-found",
              "text": "no DNS"}],
        )  # fmt: skip

    def test_timeout_is_a_result(self):
        """An unanswered ping is "timeout" after the read timeout; a late pong is not counted."""
        d = self.ping([(PING, self.later(6, pong("ping1"))), (PING, pong("ping2"))], count=2)
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        result = self.successResultOf(d)
        self.assertEqual(result.pings.pings, (flows.Ping("timeout", None), flows.Ping("pong", 0)))
        self.assertEqual(result.pings.summary(), (0, 0, 0))
        self.assertEqual(render.ping_json(result, self.req)["pings"][0]["ms"], None)
        self.clock.advance(10)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_all_silent(self):
        """No answer at all: every ping "timeout", no ping_received phase, success."""
        d = self.ping([], count=2)
        self.clock.advance(5)
        self.assertNoResult(d)
        self.clock.advance(5)
        result = self.successResultOf(d)
        self.assertEqual([p.result for p in result.pings.pings], ["timeout", "timeout"])
        self.assertNotIn("ping_received", result.phases)
        self.assertIsNone(result.pings.summary())

    def test_pings_that_do_not_fit(self):
        """A ping is sent only while a whole read timeout is left; a warning names the rest."""
        d = self.ping([], count=3, timeout=9000)
        self.clock.advance(5)
        result = self.successResultOf(d)
        self.assertEqual(len(result.pings.pings), 1)
        self.assertEqual(
            result.warnings[-1],
            "2 of 3 pings not sent: less than the read timeout was left of the overall timeout",
        )
        self.assertEqual(len(self.sent_pings()), 1)

    def test_login_failure(self):
        """A refused login fails as /login does, before any ping."""
        login = [
            (b"xml:lang='en'>", login_script()[0][1]),
            (b"</auth>", sasl_failure("not-authorized")),
        ]
        d = self.ping([], login=login)
        f = self.failed(d, "sasl")
        self.assertEqual(f.error.extra["saslCondition"], "not-authorized")
        self.assertEqual(self.sent_pings(), [])

    def test_stream_error_during_pings(self):
        """A stream error in reply to a ping fails the probe: stream_error, phases so far."""
        d = self.ping([(PING, pong("ping1")), (PING, stream_error("system-shutdown"))])
        f = self.failed(d, "stream_error")
        self.assertEqual(f.phases[-1], "ping_received")

    def test_closed_during_pings(self):
        """The server closing during the pings: closed."""

        def close(transport):
            transport.protocol.connectionLost(Failure(ConnectionDone()))

        d = self.ping([(PING, close)])
        f = self.failed(d, "closed")
        self.assertEqual(
            f.error.message, "Server closed the connection while waiting for ping reply"
        )

    def test_garbage_during_pings(self):
        """Garbage in reply to a ping: protocol."""
        d = self.ping([(PING, b"<iq type='result' id='ping1'><<")])
        self.assertTrue(self.failed(d, "protocol").error.message.startswith("Malformed XML"))

    def test_slow_answers_end_within_timeout(self):
        """Slow pongs: the pings that fit are sent, and the probe ends within its timeout."""
        steps = [(PING, self.later(4, pong(f"ping{n}"))) for n in range(1, 11)]
        d = self.ping(steps, count=10, timeout=10000)
        self.clock.advance(4)
        self.assertNoResult(d)
        self.clock.advance(4)
        result = self.successResultOf(d)
        self.assertEqual([p.rtt for p in result.pings.pings], [4, 4])
        self.assertIn("8 of 10 pings not sent", result.warnings[-1])
