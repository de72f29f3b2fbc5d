#!/usr/bin/env python3
"""
Roster parsing cost against roster size, beside a minimal baseline.

For rosters of 1,000 to 50,000 items (each with a name and two groups), fed
in 64 KiB chunks as a server would send them, it times:

 - the service's stream layer (portofcall_xmpp.stream: expat, limits, and
   the element tree the flows read), and parse.parse_roster on the result;
 - the baseline: bare expat over the same bytes with no handlers at all;

and prints microseconds per item for each, so linear growth shows as a
flat column, with the ratio to the baseline.

    python bench/parse.py
"""

from __future__ import annotations

import pyexpat
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from portofcall_xmpp.parse import parse_roster  # noqa: E402
from portofcall_xmpp.stream import Limits, XMLStreamParser  # noqa: E402

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' id='b' from='example.com' version='1.0'>"
)
ITEM = (
    "<item jid='contact{0}@example.com' name='Contact {0}' subscription='both'>"
    "<group>Friends</group><group>Group {1}</group></item>"
)
CHUNK = 65536


def roster(n: int) -> bytes:
    items = "".join(ITEM.format(i, i % 50) for i in range(n))
    return (
        HEADER
        + (
            "<iq type='result' id='roster1'><query xmlns='jabber:iq:roster' ver='1'>%s</query></iq>"
            % items
        ).encode()
    )


def service(data: bytes) -> int:
    parser = XMLStreamParser(Limits(max_element_bytes=16 * 1024 * 1024))
    for i in range(0, len(data), CHUNK):
        parser.feed(data[i : i + CHUNK])
    return len(parse_roster(parser.events[1].element).contacts)


def baseline(data: bytes) -> int:
    parser = pyexpat.ParserCreate("UTF-8", " ")
    for i in range(0, len(data), CHUNK):
        parser.Parse(data[i : i + CHUNK], False)
    return 0


def best_of(f, data, repeat=5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        f(data)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    print("%8s %10s | %12s %12s | %8s" % ("items", "bytes", "service us/i", "expat us/i", "ratio"))
    for n in (1000, 5000, 10000, 25000, 50000):
        data = roster(n)
        assert service(data) == n
        s = best_of(service, data)
        b = best_of(baseline, data)
        print("%8d %10d | %12.2f %12.2f | %8.1f" % (n, len(data), s / n * 1e6, b / n * 1e6, s / b))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
