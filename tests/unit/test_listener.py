"""Tests for portofcall_xmpp.listener on StringTransports and a Clock."""

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from portofcall_xmpp.listener import BoundedSite, raise_open_file_limit

REQUEST = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"


class Hello(Resource):
    isLeaf = True

    def __init__(self, body=b"hello"):
        super().__init__()
        self.body = body

    def render_GET(self, request):
        return self.body


class Transport(StringTransport):
    """A StringTransport that records an abort."""

    aborted = False

    def abortConnection(self):
        self.aborted = True
        super().abortConnection()


class BoundedSiteTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()

    def site(self, **kwargs):
        return BoundedSite(Hello(**kwargs.pop("resource", {})), self.clock, **kwargs)

    def connect(self, site, port=1):
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", port))
        if channel is None:
            return None, None
        transport = Transport()
        channel.makeConnection(transport)
        return channel, transport

    def close(self, channel, transport):
        """Play the peer going away, as a real transport would after an abort."""
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        channel.connectionLost(Failure(ConnectionDone()))

    def test_whole_request_answered(self):
        """A request that arrives at once is answered and the deadline is cleared."""
        site = self.site()
        channel, transport = self.connect(site)
        channel.dataReceived(REQUEST)
        self.assertIn(b"hello", transport.value())
        self.clock.advance(site.request_deadline + 1)
        self.assertFalse(transport.aborted)

    def test_slow_request_dropped(self):
        """A request still incomplete at the deadline is aborted, however steady its bytes."""
        site = self.site()
        channel, transport = self.connect(site)
        for byte in REQUEST[:-2]:
            channel.dataReceived(bytes([byte]))
            self.clock.advance(0.5)
        self.assertTrue(transport.aborted)
        self.assertEqual(transport.value(), b"")

    def test_silent_connection_dropped(self):
        """A connection that never sends a byte is aborted at the deadline."""
        site = self.site()
        channel, transport = self.connect(site)
        self.clock.advance(site.request_deadline - 0.1)
        self.assertFalse(transport.aborted)
        self.clock.advance(0.2)
        self.assertTrue(transport.aborted)

    def test_second_request_has_its_own_deadline(self):
        """On a kept-alive connection the next request's deadline starts at its first byte."""
        site = self.site()
        channel, transport = self.connect(site)
        channel.dataReceived(REQUEST)
        self.clock.advance(5)
        channel.dataReceived(REQUEST[:5])
        self.clock.advance(site.request_deadline - 1)
        self.assertFalse(transport.aborted)
        self.clock.advance(2)
        self.assertTrue(transport.aborted)

    def test_idle_keepalive_closed(self):
        """A kept-alive connection with nothing to do is closed after the idle timeout."""
        site = self.site(idle_timeout=15)
        channel, transport = self.connect(site)
        channel.dataReceived(REQUEST)
        self.clock.advance(14)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(2)
        self.assertTrue(transport.disconnecting)

    def test_unread_answer_dropped(self):
        """An answer the client stops taking is dropped after the unread timeout."""
        site = self.site()
        channel, transport = self.connect(site)
        channel.dataReceived(REQUEST)
        channel.pauseProducing()  # the transport's buffer is full
        self.clock.advance(site.unread_timeout - 1)
        self.assertFalse(transport.aborted)
        self.clock.advance(2)
        self.assertTrue(transport.aborted)

    def test_read_answer_kept(self):
        """A client that takes its answer again in time keeps its connection."""
        site = self.site(idle_timeout=100)
        channel, transport = self.connect(site)
        channel.dataReceived(REQUEST)
        channel.pauseProducing()
        self.clock.advance(site.unread_timeout - 1)
        channel.resumeProducing()
        self.clock.advance(site.unread_timeout)
        self.assertFalse(transport.aborted)
        self.assertFalse(transport.disconnecting)

    def test_cap_evicts_oldest_waiting(self):
        """At the cap, a new connection evicts the oldest one without a whole request."""
        site = self.site(max_connections=3)
        busy, _ = self.connect(site, 1)
        busy.dataReceived(REQUEST[:-2] + b"\r\n")  # headers not finished: still waiting
        conns = [self.connect(site, port) for port in (2, 3)]
        newest, _ = self.connect(site, 4)
        self.assertIsNotNone(newest)
        self.assertTrue(busy.transport.aborted)
        self.assertEqual(len(site.channels), 3)
        self.assertEqual(site.evicted, 1)
        self.assertFalse(any(t.aborted for _, t in conns))

    def test_cap_refuses_when_all_busy(self):
        """At the cap with every connection handling a request, a new one is refused."""

        class Never(Resource):
            isLeaf = True

            def render_GET(self, request):
                from twisted.web.server import NOT_DONE_YET

                return NOT_DONE_YET

        site = BoundedSite(Never(), self.clock, max_connections=2)
        for port in (1, 2):
            channel, _ = self.connect(site, port)
            channel.dataReceived(REQUEST)
        channel, _ = self.connect(site, 3)
        self.assertIsNone(channel)
        self.assertEqual(site.refused, 1)

    def test_closed_connections_free_their_slot(self):
        """A connection that ends leaves the count and its timers behind it."""
        site = self.site(max_connections=1)
        channel, transport = self.connect(site)
        channel.dataReceived(REQUEST)
        self.close(channel, transport)
        self.assertEqual(len(site.channels), 0)
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.active()], [])


class FakeResource:
    RLIMIT_NOFILE = 7

    def __init__(self, soft, hard, refuse=False):
        self.limits = (soft, hard)
        self.refuse = refuse

    def getrlimit(self, which):
        assert which == self.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which, limits):
        if self.refuse:
            raise ValueError("not allowed")
        self.limits = limits


class OpenFileLimitTests(SynchronousTestCase):
    def test_raised_to_hard(self):
        """The soft limit is raised to the hard one."""
        fake = FakeResource(1024, 4096)
        self.assertEqual(raise_open_file_limit(fake), (1024, 4096))
        self.assertEqual(fake.limits, (4096, 4096))

    def test_refused(self):
        """A platform that refuses leaves the limit as it was, and says so."""
        fake = FakeResource(1024, 4096, refuse=True)
        self.assertEqual(raise_open_file_limit(fake), (1024, 1024))
        self.assertEqual(fake.limits, (1024, 4096))
