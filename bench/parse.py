#!/usr/bin/env python3
"""
Roster parsing cost against roster size, beside a minimal baseline.

For rosters of 1,000 to 50,000 items (each with a name and two groups), fed
in 64 KiB chunks as a server would send them, it times:

 - the service's stream layer (portofcall_xmpp.stream: expat, limits, and
   the element tree the flows read), and parse.parse_roster on the result;
 - the baseline: bare expat over the same bytes with no handlers at all;

and prints microseconds per item for each, so linear growth shows as a
flat column, with the ratio to the baseline.  Then the same for what a
hostile server controls: a features block with n children each in its own
namespace, n SASL mechanisms, and a disco#info reply with n features
(stream layer plus parse_features / parse_disco_info, with the element caps
raised so the parse itself is measured; at the default caps each of these
fails too_large after 256 KiB).

    python bench/parse.py
"""

from __future__ import annotations

import pyexpat
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from portofcall_xmpp.parse import parse_disco_info, parse_features, parse_roster  # noqa: E402
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
    return HEADER + (
        "<iq type='result' id='roster1'><query xmlns='jabber:iq:roster' ver='1'>"
        f"{items}</query></iq>"
    ).encode()


HOSTILE = {
    "namespaced features": (
        lambda n: HEADER
        + b"<stream:features>"
        + b"".join(b"<f%d xmlns='urn:x:%d'/>" % (i, i) for i in range(n))
        + b"</stream:features>",
        parse_features,
    ),
    "mechanisms": (
        lambda n: HEADER
        + b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
        + b"".join(b"<mechanism>M%d</mechanism>" % i for i in range(n))
        + b"</mechanisms></stream:features>",
        parse_features,
    ),
    "disco features": (
        lambda n: HEADER
        + b"<iq type='result' id='d'><query xmlns='http://jabber.org/protocol/disco#info'>"
        + b"".join(b"<feature var='urn:f:%d'/>" % i for i in range(n))
        + b"</query></iq>",
        parse_disco_info,
    ),
}
BIG = 16 * 1024 * 1024


def stream(data: bytes):
    parser = XMLStreamParser(Limits(max_stanza_bytes=BIG, max_total_elements=10**7))
    parser.large = True
    for i in range(0, len(data), CHUNK):
        parser.feed(data[i : i + CHUNK])
    parser.flush()
    return parser.events[1].element


def service(data: bytes) -> int:
    return len(parse_roster(stream(data)).contacts)


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
    print(f"{'items':>8} {'bytes':>10} | {'service us/i':>12} {'expat us/i':>12} | {'ratio':>8}")
    for n in (1000, 5000, 10000, 25000, 50000):
        data = roster(n)
        assert service(data) == n
        s = best_of(service, data)
        b = best_of(baseline, data)
        print(f"{n:8d} {len(data):10d} | {s / n * 1e6:12.2f} {b / n * 1e6:12.2f} | {s / b:8.1f}")
    print()
    print(f"{'construct':>20} {'n':>8} {'bytes':>10} | {'CPU s':>8} {'us/each':>8}")
    for name, (build, interpret) in HOSTILE.items():
        for n in (12500, 50000):
            data = build(n)
            t = best_of(lambda d, interpret=interpret: interpret(stream(d)), data, repeat=3)
            print(f"{name:>20} {n:8d} {len(data):10d} | {t:8.3f} {t / n * 1e6:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
