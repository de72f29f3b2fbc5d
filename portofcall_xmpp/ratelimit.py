"""
Rate limits that protect the servers on the other end (SPEC §1
C{--per-target-rate} and C{--max-failed-logins}, §2).

 - L{TargetRate}: at most N probes per minute to one target (a resolved
   address), all callers and endpoints together -- a token bucket per
   address, so N may come at once and then N per minute.
 - L{FailedLogins}: at most N failed logins of one account within ten
   minutes; the next attempt is refused until the oldest failure ages out.

Both refuse with L{RateLimited}, which only the web layer turns into HTTP (429
with C{Retry-After} and C{rateLimited}).  Both keep at most a bounded amount
of state per key and forget keys that have nothing left to remember.  A
limit of 0 turns either off.
"""

from __future__ import annotations

import collections
import math

from twisted.internet.interfaces import IReactorTime

DEFAULT_PER_TARGET_RATE = 60
DEFAULT_MAX_FAILED_LOGINS = 10
FAILED_LOGIN_WINDOW = 600.0
#: Forget keys with nothing left to remember once this many are held; the next
#: sweep waits until twice as many as survived are held (amortised O(1) per key).
_SWEEP_AT = 4096


class RateLimited(Exception):
    """
    A probe refused by a rate limit before it started.

    @ivar kind: C{"target"} or C{"account"} (the C{rateLimited} field).
    @ivar retry_after: whole seconds until a retry can succeed (at least 1).
    """

    def __init__(self, message: str, kind: str, retry_after: float):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.retry_after = max(1, math.ceil(retry_after))

    def __str__(self):
        return self.message


class TargetRate:
    """
    At most C{per_minute} probes per minute to one target address.

    @param clock: where time comes from.
    @param per_minute: the limit; 0 turns it off.
    """

    def __init__(self, clock: IReactorTime, per_minute: int = DEFAULT_PER_TARGET_RATE):
        self._clock = clock
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}
        self._sweep_at = _SWEEP_AT
        self.refused = 0

    def acquire(self, address: str) -> None:
        """
        Take one probe's worth of C{address}'s allowance.

        @raise RateLimited: the allowance is used up.
        """
        if not self.per_minute:
            return
        now = self._clock.seconds()
        rate = self.per_minute / 60.0
        tokens = self._tokens(address, now, rate)
        if tokens < 1:
            self.refused += 1
            raise RateLimited(
                f"Too many probes of {address} (limit {self.per_minute} per minute, "
                "all callers together); retry later",
                "target",
                (1 - tokens) / rate,
            )
        if len(self._buckets) >= self._sweep_at and address not in self._buckets:
            self._sweep(now, rate)
        self._buckets[address] = (tokens - 1, now)

    def _tokens(self, address: str, now: float, rate: float) -> float:
        held = self._buckets.get(address)
        if held is None:
            return float(self.per_minute)
        tokens, then = held
        return min(float(self.per_minute), tokens + (now - then) * rate)

    def _sweep(self, now: float, rate: float) -> None:
        full = [a for a in self._buckets if self._tokens(a, now, rate) >= self.per_minute]
        for address in full:
            del self._buckets[address]
        self._sweep_at = max(_SWEEP_AT, 2 * len(self._buckets))

    def __len__(self) -> int:
        return len(self._buckets)


class FailedLogins:
    """
    At most C{limit} failed logins of one account within C{window} seconds.

    @param clock: where time comes from.
    @param limit: the most failures remembered per account; 0 turns it off.
    """

    def __init__(
        self,
        clock: IReactorTime,
        limit: int = DEFAULT_MAX_FAILED_LOGINS,
        window: float = FAILED_LOGIN_WINDOW,
    ):
        self._clock = clock
        self.limit = limit
        self.window = window
        self._failures: dict[str, collections.deque] = {}
        self._sweep_at = _SWEEP_AT
        self.refused = 0

    def check(self, account: str) -> None:
        """
        @raise RateLimited: C{account} failed C{limit} times within the window.
        """
        if not self.limit:
            return
        failures = self._recent(account, self._clock.seconds())
        if failures is not None and len(failures) >= self.limit:
            self.refused += 1
            raise RateLimited(
                f"Too many failed logins of {account} (limit {self.limit} in "
                f"{round(self.window / 60)} minutes); retry later",
                "account",
                failures[0] + self.window - self._clock.seconds(),
            )

    def failed(self, account: str) -> None:
        """Remember one failed login of C{account}."""
        if not self.limit:
            return
        now = self._clock.seconds()
        failures = self._recent(account, now)
        if failures is None:
            if len(self._failures) >= self._sweep_at:
                self._sweep(now)
            failures = self._failures[account] = collections.deque(maxlen=self.limit)
        failures.append(now)

    def _recent(self, account: str, now: float):
        failures = self._failures.get(account)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[account]
            return None
        return failures

    def _sweep(self, now: float) -> None:
        for account in list(self._failures):
            self._recent(account, now)
        self._sweep_at = max(_SWEEP_AT, 2 * len(self._failures))

    def __len__(self) -> int:
        return len(self._failures)
