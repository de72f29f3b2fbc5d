"""Tests for portofcall_xmpp.ratelimit on a Clock."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from portofcall_xmpp import ratelimit
from portofcall_xmpp.ratelimit import FailedLogins, RateLimited, TargetRate


class TargetRateTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()

    def test_burst_then_refused(self):
        """N probes of one address pass at once; the next is refused with a retry time."""
        limit = TargetRate(self.clock, per_minute=60)
        for _ in range(60):
            limit.acquire("192.0.2.1")
        e = self.assertRaises(RateLimited, limit.acquire, "192.0.2.1")
        self.assertEqual(e.kind, "target")
        self.assertEqual(e.retry_after, 1)
        self.assertIn("192.0.2.1", str(e))
        self.assertEqual(limit.refused, 1)

    def test_refills_at_the_rate(self):
        """After the burst, one probe per 60/N seconds passes."""
        limit = TargetRate(self.clock, per_minute=6)
        for _ in range(6):
            limit.acquire("a")
        self.assertRaises(RateLimited, limit.acquire, "a")
        self.clock.advance(9)
        e = self.assertRaises(RateLimited, limit.acquire, "a")
        self.assertEqual(e.retry_after, 1)
        self.clock.advance(1)
        limit.acquire("a")
        self.assertRaises(RateLimited, limit.acquire, "a")

    def test_targets_are_separate(self):
        """One address's allowance does not spend another's."""
        limit = TargetRate(self.clock, per_minute=1)
        limit.acquire("a")
        limit.acquire("b")
        self.assertRaises(RateLimited, limit.acquire, "a")

    def test_off(self):
        """0 turns the limit off."""
        limit = TargetRate(self.clock, per_minute=0)
        for _ in range(1000):
            limit.acquire("a")
        self.assertEqual(len(limit), 0)

    def test_state_bounded(self):
        """Addresses whose allowance has refilled are forgotten: state stays bounded."""
        limit = TargetRate(self.clock, per_minute=60)
        for i in range(3 * ratelimit._SWEEP_AT):
            limit.acquire(f"10.0.{i // 256}.{i % 256}")
            if i % 100 == 99:
                self.clock.advance(2)
        self.assertLessEqual(len(limit), 2 * ratelimit._SWEEP_AT)


class FailedLoginsTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()

    def test_limit_then_refused(self):
        """After N failures within the window, the account is refused until the oldest ages out."""
        limit = FailedLogins(self.clock, limit=3, window=600)
        for _ in range(3):
            limit.check("alice@example.org")
            limit.failed("alice@example.org")
            self.clock.advance(10)
        e = self.assertRaises(RateLimited, limit.check, "alice@example.org")
        self.assertEqual(e.kind, "account")
        self.assertEqual(e.retry_after, 570)
        self.clock.advance(570)
        limit.check("alice@example.org")

    def test_accounts_are_separate(self):
        """One account's failures do not count against another."""
        limit = FailedLogins(self.clock, limit=1)
        limit.failed("a@x")
        self.assertRaises(RateLimited, limit.check, "a@x")
        limit.check("b@x")

    def test_off(self):
        """0 turns the limit off."""
        limit = FailedLogins(self.clock, limit=0)
        for _ in range(100):
            limit.failed("a@x")
        limit.check("a@x")
        self.assertEqual(len(limit), 0)

    def test_old_failures_forgotten(self):
        """Accounts whose failures aged out are dropped, so state stays bounded."""
        limit = FailedLogins(self.clock, limit=10, window=60)
        for i in range(3 * ratelimit._SWEEP_AT):
            limit.failed(f"user{i}@x")
            if i % 100 == 99:
                self.clock.advance(61)
        self.assertLessEqual(len(limit), 2 * ratelimit._SWEEP_AT)
