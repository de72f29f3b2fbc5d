"""
A cost meter that does not depend on the machine's speed, for tests that
check a cost grows linearly: the number of Python and C function calls a
piece of code makes (C{sys.setprofile} events), with L{Counted} strings whose
comparisons and hashes are Python calls, so that a list membership test or a
scan hidden inside a C loop is counted too.
"""

from __future__ import annotations

import sys


class Counted(str):
    """A string whose comparisons (and hash) are Python calls, seen by L{calls}."""

    def __eq__(self, other):
        return str.__eq__(self, other)

    def __ne__(self, other):
        return str.__ne__(self, other)

    def __hash__(self):
        return str.__hash__(self)

    def strip(self, chars=None):
        return Counted(str.strip(self, chars))


def calls(f, *args) -> int:
    """How many Python and C function calls C{f(*args)} makes."""
    count = 0

    def profile(frame, event, arg):
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        f(*args)
    finally:
        sys.setprofile(None)
    return count


def growth(cost, n: int) -> float:
    """C{cost(4 * n) / cost(n)}: about 4 when linear, about 16 when quadratic."""
    return cost(4 * n) / cost(n)
