#!/usr/bin/env python3
"""
Roster parsing cost against roster size, beside a minimal baseline.

For rosters of 1,000 to 50,000 items (each with a name and two groups), fed
in 64 KiB chunks as a server would send them, it times:

 - the service's stream layer as a probe without a transcript runs it
   (portofcall_xmpp.stream with C{values}: expat, limits, each item read
   into a contact as its end tag arrives), then parse.parse_roster;
 - the same with a transcript (every item built as an element, the tree
   the transcript shows);
 - the baselines: bare expat over the same bytes with no handlers at all,
   and expat calling empty Python handlers for every start, end and text
   (what any handler-based parse in Python pays before doing anything);

and prints microseconds per item for each, so linear growth shows as a
flat column, with the ratio of the service's to the baselines.  Then the same for what a
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


def stream(data: bytes, values: bool = False):
    parser = XMLStreamParser(
        Limits(max_stanza_bytes=BIG, max_total_elements=10**7), values=values
    )
    parser.large = True
    for i in range(0, len(data), CHUNK):
        parser.feed(data[i : i + CHUNK])
    parser.flush()
    return parser.events[1].element


def service(data: bytes) -> int:
    return len(parse_roster(stream(data, values=True)).contacts)


def service_tree(data: bytes) -> int:
    return len(parse_roster(stream(data)).contacts)


def _nothing(*args):
    pass


def empty_handlers(data: bytes) -> int:
    parser = pyexpat.ParserCreate("UTF-8", " ")
    parser.buffer_text = True
    parser.StartElementHandler = parser.EndElementHandler = _nothing
    parser.CharacterDataHandler = _nothing
    for i in range(0, len(data), CHUNK):
        parser.Parse(data[i : i + CHUNK], False)
    return 0


def baseline(data: bytes) -> int:
    parser = pyexpat.ParserCreate("UTF-8", " ")
    for i in range(0, len(data), CHUNK):
        parser.Parse(data[i : i + CHUNK], False)
    return 0


def best_of(f, data, repeat=5) -> float:
    times = []
    for _ in range(repeat):
        started = time.process_time()
        f(data)
        times.append(time.process_time() - started)
    return min(times)


def main() -> int:
    print("microseconds of CPU per item (best of 5):")
    print(
        f"{'items':>8} {'bytes':>10} | {'service':>8} {'tree':>8} | {'expat':>8} "
        f"{'handlers':>8} | {'/expat':>7} {'/handlers':>9}"
    )
    for n in (1000, 5000, 10000, 25000, 50000):
        data = roster(n)
        assert service(data) == service_tree(data) == n
        s = best_of(service, data)
        t = best_of(service_tree, data, repeat=3)
        b = best_of(baseline, data)
        h = best_of(empty_handlers, data)
        print(
            f"{n:8d} {len(data):10d} | {s / n * 1e6:8.2f} {t / n * 1e6:8.2f} | "
            f"{b / n * 1e6:8.2f} {h / n * 1e6:8.2f} | {s / b:7.1f} {s / h:9.2f}"
        )
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
