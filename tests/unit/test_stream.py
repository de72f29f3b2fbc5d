"""Tests for portofcall_xmpp.stream: the incremental XML stream parser."""

from cost import calls, growth
from hypothesis import given, settings
from hypothesis import strategies as st
from rosters import AFTER, AFTER_XML, chunked, chunkings, parse_chunks, roster_documents
from twisted.trial.unittest import SynchronousTestCase
from xmpp_fakes import FEATURES, HEADER

from portofcall_xmpp.errors import ProtocolViolation, TooLarge
from portofcall_xmpp.parse import Roster, parse_roster
from portofcall_xmpp.stream import (
    ELEMENT_OVERHEAD,
    NS_ROSTER,
    Contact,
    Limits,
    Stanza,
    StreamEnd,
    StreamHeader,
    XMLStreamParser,
    roster_items,
)

ROSTER_ITEM = (
    "<item jid='contact{0}@example.com' name='Contact &amp; {0}' subscription='both'>"
    "<group>Friends</group><group>Group {1}</group></item>"
)


def roster_stanza(n):
    items = "".join(ROSTER_ITEM.format(i, i % 7) for i in range(n))
    return (
        "<iq type='result' id='roster1'><query xmlns='jabber:iq:roster' ver='v1'>"
        f"{items}</query></iq>"
    ).encode()


STREAM = HEADER + FEATURES + roster_stanza(3) + b"<message><body>h\xc3\xa9 &lt;</body></message>"


def summary(events):
    """Comparable form of parser events."""
    out = []
    for e in events:
        if isinstance(e, Stanza):
            out.append(("stanza", e.element.toXml(), e.end_offset))
        else:
            out.append(e)
    return out


def parse(data, chunk=None, limits=None, large=False):
    p = XMLStreamParser(limits)
    p.large = large
    step = chunk or len(data)
    for i in range(0, len(data), step):
        p.feed(data[i : i + step])
    return p.events


def parse_error(testcase, data, limits=None, chunk=None, large=False):
    with testcase.assertRaises((ProtocolViolation, TooLarge)) as cm:
        parse(data, chunk=chunk, limits=limits, large=large)
    return cm.exception


class ParserTests(SynchronousTestCase):
    def test_header(self):
        """The stream header's attributes and default namespace are reported."""
        [header] = parse(HEADER)
        self.assertEqual(
            header,
            StreamHeader(
                id="s1",
                from_="example.com",
                to=None,
                version="1.0",
                lang="en",
                default_ns="jabber:client",
            ),
        )

    def test_elements(self):
        """Each complete top-level element is one event, in order."""
        events = parse(STREAM)
        self.assertIsInstance(events[0], StreamHeader)
        names = [e.element.name for e in events[1:]]
        self.assertEqual(names, ["features", "iq", "message"])
        body = events[3].element.firstChildElement()
        self.assertEqual(str(body), "hé <")

    def test_every_split_point(self):
        """Splitting the stream in two at any byte yields the same events."""
        whole = summary(parse(STREAM))
        for i in range(1, len(STREAM)):
            p = XMLStreamParser()
            p.feed(STREAM[:i])
            p.feed(STREAM[i:])
            self.assertEqual(summary(p.events), whole, f"split at {i}")

    def test_byte_by_byte(self):
        """Feeding one byte at a time yields the same events."""
        self.assertEqual(summary(parse(STREAM, chunk=1)), summary(parse(STREAM)))

    def test_end_offset(self):
        """end_offset points at the element's end tag."""
        events = parse(HEADER + FEATURES)
        end = events[1].end_offset
        self.assertTrue((HEADER + FEATURES)[end:].startswith(b"</stream:features>"))

    def test_stream_end(self):
        """</stream:stream> is a StreamEnd event."""
        events = parse(HEADER + b"</stream:stream>")
        self.assertEqual(events[-1], StreamEnd())

    def test_restart(self):
        """After restart, a new header is accepted and reported."""
        p = XMLStreamParser()
        p.feed(HEADER + FEATURES)
        p.restart()
        p.feed(HEADER.replace(b"s1", b"s2") + FEATURES)
        self.assertEqual([type(e).__name__ for e in p.events], ["StreamHeader", "Stanza"] * 2)
        self.assertEqual(p.events[2].id, "s2")

    def test_whitespace_keepalive(self):
        """Whitespace between stanzas is ignored."""
        events = parse(HEADER + b"\n \n" + FEATURES + b"   ")
        self.assertEqual(len(events), 2)

    def test_large_roster(self):
        """A 10,000-item roster arrives whole when a large element is awaited."""
        events = parse(HEADER + roster_stanza(10000), chunk=65536, large=True)
        query = events[1].element.firstChildElement()
        items = [c for c in query.elements()]
        self.assertEqual(len(items), 10000)
        self.assertEqual([str(g) for g in items[9999].elements()], ["Friends", "Group 3"])

    def test_roster_50000_with_8mib(self):
        """A 50,000-item roster (over 4 MiB) passes with an 8 MiB element cap, not with 4."""
        data = HEADER + roster_stanza(50000)
        self.assertGreater(len(data), 4 * 1024 * 1024)
        events = parse(data, 65536, Limits(max_stanza_bytes=8 * 1024 * 1024), large=True)
        self.assertEqual(len(events[1].element.firstChildElement().children), 50000)
        e = parse_error(self, data, chunk=65536, large=True)
        self.assertIsInstance(e, TooLarge)

    def test_mixed_content_order(self):
        """Text and child elements keep their document order."""
        [_, stanza] = parse(HEADER + b"<a>x<b/>y<c>z</c>w</a>")
        self.assertEqual(stanza.element.toXml(), "<a xmlns='jabber:client'>x<b/>y<c>z</c>w</a>")


class RefusalTests(SynchronousTestCase):
    def test_doctype(self):
        """A DOCTYPE is refused (RFC 6120 §11.1)."""
        e = parse_error(self, b"<?xml version='1.0'?><!DOCTYPE stream>" + HEADER)
        self.assertIsInstance(e, ProtocolViolation)
        self.assertIn("DOCTYPE", e.message)

    def test_entity_bomb(self):
        """A billion-laughs entity bomb is refused before any expansion."""
        bomb = (
            b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
            + b"".join(
                b"<!ENTITY lol%d '%s'>" % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                for i in range(1, 10)
            )
            + b"]><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>&lol9;"
        )
        e = parse_error(self, bomb)
        self.assertIsInstance(e, ProtocolViolation)

    def test_entity_in_stream(self):
        """A reference to an undeclared entity is malformed XML."""
        e = parse_error(self, HEADER + b"<message>&xxe;</message>")
        self.assertIsInstance(e, ProtocolViolation)
        self.assertEqual(e.message, "Malformed XML from server: undefined entity")

    def test_text_between_stanzas(self):
        """Non-whitespace text between stanzas is a protocol violation."""
        e = parse_error(self, HEADER + FEATURES + b"HTTP/1.1 400 Bad Request")
        self.assertIn("text outside any stanza", e.message)

    def test_processing_instruction(self):
        """A processing instruction is refused."""
        e = parse_error(self, HEADER + b"<?evil data?>")
        self.assertIn("processing instruction", e.message)

    def test_comment(self):
        """A comment is refused."""
        e = parse_error(self, HEADER + b"<!-- hi -->")
        self.assertIn("comment", e.message)

    def test_garbage(self):
        """Bytes that are not XML are a protocol violation."""
        e = parse_error(self, b"HTTP/1.1 400 Bad Request\r\n\r\n")
        self.assertIsInstance(e, ProtocolViolation)
        self.assertTrue(e.message.startswith("Malformed XML from server"))

    def test_invalid_utf8(self):
        """Invalid UTF-8 is a protocol violation."""
        e = parse_error(self, HEADER + b"<message><body>\xff\xfe\xfd</body></message>")
        self.assertIsInstance(e, ProtocolViolation)

    def test_not_a_stream(self):
        """A document whose root is not <stream:stream> is refused."""
        e = parse_error(self, b"<html><body/></html>")
        self.assertEqual(
            e.message, "Server did not open an XMPP stream: expected <stream:stream>, got <html>"
        )

    def test_unbound_prefix(self):
        """An unbound namespace prefix is malformed."""
        e = parse_error(self, HEADER + b"<foo:bar/>")
        self.assertIsInstance(e, ProtocolViolation)

    def test_dead_after_error(self):
        """After an error, every later feed raises the same error."""
        p = XMLStreamParser()
        self.assertRaises(ProtocolViolation, p.feed, b"garbage<<")
        with self.assertRaises(ProtocolViolation) as cm:
            p.feed(HEADER)
        self.assertTrue(cm.exception.message.startswith("Malformed XML"))

    def test_events_before_error_kept(self):
        """Events completed before an error in the same chunk are kept."""
        p = XMLStreamParser()
        self.assertRaises(ProtocolViolation, p.feed, HEADER + FEATURES + b"<<<")
        self.assertEqual(len(p.events), 2)


class LimitTests(SynchronousTestCase):
    def test_element_too_large_complete(self):
        """An element over the byte cap is refused even when it arrives whole."""
        limits = Limits(max_element_bytes=1024)
        big = b"<message><body>" + b"x" * 2000 + b"</body></message>"
        e = parse_error(self, HEADER + big, limits)
        self.assertIsInstance(e, TooLarge)

    def test_element_too_large_incomplete(self):
        """An unfinished element is refused as soon as it passes the cap."""
        limits = Limits(max_element_bytes=1024)
        p = XMLStreamParser(limits)
        p.feed(HEADER + b"<stream:features>")
        with self.assertRaises(TooLarge):
            for _ in range(100):
                p.feed(b"<x/>" * 10)

    def test_huge_start_tag(self):
        """A start tag that never ends is refused once past the cap."""
        limits = Limits(max_element_bytes=1024)
        p = XMLStreamParser(limits)
        p.feed(HEADER + b"<message to='")
        with self.assertRaises(TooLarge):
            for _ in range(100):
                p.feed(b"a" * 100)

    def test_huge_header(self):
        """Endless bytes before the header ends are refused too."""
        limits = Limits(max_element_bytes=1024)
        p = XMLStreamParser(limits)
        with self.assertRaises(TooLarge):
            p.feed(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' a='")
            for _ in range(100):
                p.feed(b"a" * 100)

    def test_many_small_stanzas_fine(self):
        """Many small stanzas never trip the per-element cap."""
        limits = Limits(max_element_bytes=1024)
        events = parse(HEADER + b"<message><body>hi</body></message>" * 1000, 4096, limits)
        self.assertEqual(len(events), 1001)

    def test_depth(self):
        """Nesting deeper than the cap is refused."""
        deep = b"<a>" * 70 + b"</a>" * 70
        e = parse_error(self, HEADER + deep)
        self.assertIsInstance(e, TooLarge)
        self.assertIn("nested deeper than 64", e.message)

    def test_element_count(self):
        """More elements in one stanza than the cap allows is refused."""
        limits = Limits(max_element_bytes=1 << 20, max_elements=100)
        e = parse_error(self, HEADER + b"<a>" + b"<b/>" * 200 + b"</a>", limits)
        self.assertIn("more than 100 child elements", e.message)

    def test_total_elements(self):
        """A connection may not send more than max_total_elements elements in all."""
        limits = Limits(max_element_bytes=1 << 20, max_elements=100, max_total_elements=150)
        e = parse_error(self, HEADER + b"<a>" + b"<b/>" * 50 + b"</a>" * 1 + b"<c/>" * 120, limits)
        self.assertIn("more than 150 elements on one connection", e.message)

    def test_total_bytes(self):
        """A connection may not send more than max_total_bytes in all."""
        limits = Limits(max_element_bytes=1024, max_total_bytes=10000)
        e = parse_error(self, HEADER + b"<message/>" * 2000, limits, chunk=1000)
        self.assertIn("more than 10000 bytes", e.message)

    def test_default_limits(self):
        """The defaults: 4 MiB large elements, 256 KiB others, 64 levels, 16 MiB a connection."""
        limits = Limits()
        self.assertEqual(
            (
                limits.max_stanza_bytes,
                limits.max_element_bytes,
                limits.max_depth,
                limits.max_total_bytes,
            ),
            (4 * 1024 * 1024, 256 * 1024, 64, 16 * 1024 * 1024),
        )
        self.assertEqual(Limits(max_stanza_bytes=8 << 20).max_total_bytes, 32 << 20)
        self.assertEqual(
            (limits.elements_for(limits.max_stanza_bytes), limits.max_total_elements),
            (262144, 524288),
        )
        self.assertEqual(limits.elements_for(limits.max_element_bytes), 16384)
        self.assertEqual(limits.budget.limit, 256 * 1024 * 1024)


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=20))
    def test_any_chunking(self, cuts):
        """Every chunking of a valid stream yields the same events."""
        points = [0, *sorted(set(cuts)), len(STREAM)]
        p = XMLStreamParser()
        for a, b in zip(points, points[1:], strict=False):
            p.feed(STREAM[a:b])
        self.assertEqual(summary(p.events), summary(parse(STREAM)))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=300), st.booleans())
    def test_arbitrary_bytes(self, data, after_header):
        """Arbitrary bytes raise only the typed protocol errors."""
        p = XMLStreamParser(Limits(max_element_bytes=1024))
        try:
            if after_header:
                p.feed(HEADER)
            p.feed(data)
        except (ProtocolViolation, TooLarge):
            pass


def features_of(inner):
    return HEADER + b"<stream:features>" + inner + b"</stream:features>"


# What a server controls, n times over, inside one features block (or iq).
CONSTRUCTS = {
    "namespaced children": lambda n: features_of(
        b"".join(b"<f%d xmlns='urn:x:%d'/>" % (i, i) for i in range(n))
    ),
    "prefixed children": lambda n: features_of(
        b"".join(b"<p%d:f xmlns:p%d='urn:x:%d'/>" % (i, i, i) for i in range(n))
    ),
    "attributes": lambda n: features_of(
        b"<x " + b" ".join(b"a%d='v'" % i for i in range(n)) + b"/>"
    ),
    "namespaced attributes": lambda n: features_of(
        b"<x " + b" ".join(b"xmlns:p%d='urn:%d' p%d:a='v'" % (i, i, i) for i in range(n)) + b"/>"
    ),
    "prefix declarations": lambda n: features_of(
        b"<x " + b" ".join(b"xmlns:p%d='urn:%d'" % (i, i) for i in range(n)) + b">"
        + b"".join(b"<p%d:c/>" % i for i in range(n)) + b"</x>"
    ),
    "mechanisms": lambda n: features_of(
        b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
        + b"".join(b"<mechanism>M%d</mechanism>" % i for i in range(n))
        + b"</mechanisms>"
    ),
    "text": lambda n: features_of(b"<x>" + b"abc&amp;\n" * n + b"</x>"),
    "text between children": lambda n: features_of(b"<x>" + b"t<y/>" * n + b"</x>"),
    "disco features": lambda n: HEADER
    + b"<iq type='result' id='d'><query xmlns='http://jabber.org/protocol/disco#info'>"
    + b"".join(b"<feature var='urn:f:%d'/>" % i for i in range(n))
    + b"</query></iq>",
}  # fmt: skip


def parse_in(data, step):
    p = XMLStreamParser(Limits(max_element_bytes=1 << 20))
    for i in range(0, len(data), step):
        p.feed(data[i : i + step])
    p.flush()
    return p


class LinearCostTests(SynchronousTestCase):
    """
    The stream layer's cost grows linearly for every construct: n and 4n of
    each, counted in function calls (L{cost.calls}) and in bytes expat
    scans (L{XMLStreamParser.scanned}), never in time.
    """

    def test_every_construct(self):
        """Function calls grow linearly with each construct, fed in 1 KiB chunks."""
        for name, build in CONSTRUCTS.items():
            ratio = growth(lambda n, build=build: calls(parse_in, build(n), 1024), 500)
            self.assertLessEqual(ratio, 5.0, f"{name}: calls grew {ratio:.1f}-fold")

    def test_long_tag_in_small_pieces(self):
        """
        A long start tag fed in small pieces is not rescanned from its start
        for every piece: the bytes expat scans grow linearly.
        """

        def scanned(n):
            data = HEADER + b"<message to='" + b"a" * n + b"'/>"
            p = parse_in(data, 64)
            self.assertEqual(len(p.events), 2)
            return p.scanned

        ratio = growth(scanned, 50000)
        self.assertLessEqual(ratio, 5.0, f"expat scanned {ratio:.1f} times more")

    def test_held_back_until_flush(self):
        """Bytes held back from a long unfinished token are parsed by flush()."""
        p = XMLStreamParser()
        p.feed(HEADER + b"<message to='" + b"a" * 20000)
        p.feed(b"a" * 100)
        p.feed(b"'/>")
        self.assertEqual(len(p.events), 1)
        self.assertGreater(p.deferred, 0)
        p.flush()
        self.assertEqual(p.deferred, 0)
        self.assertEqual(p.events[1].element["to"], "a" * 20100)

    def test_held_back_bytes_count_against_the_cap(self):
        """Bytes held back still count against the element cap at once."""
        p = XMLStreamParser(Limits(max_element_bytes=30000))
        p.feed(HEADER + b"<message to='" + b"a" * 20000)
        with self.assertRaises(TooLarge):
            for _ in range(200):
                p.feed(b"a" * 64)


class ElementCapTests(SynchronousTestCase):
    def test_features_capped_at_256_kib(self):
        """A features block fails too_large once past 256 KiB, not after 4 MiB."""
        p = XMLStreamParser()
        p.feed(HEADER + b"<stream:features>")
        fed = 0
        with self.assertRaises(TooLarge) as cm:
            while fed < 4 * 1024 * 1024:
                p.feed(b"<x xmlns='urn:a'/>" * 1000)
                fed += 18000
        self.assertLessEqual(fed, 256 * 1024 + 18000)
        self.assertIn("limit of 262144 bytes", cm.exception.message)

    def test_large_while_awaited(self):
        """A large element passes while one is awaited, and fails otherwise."""
        data = HEADER + roster_stanza(3000)
        self.assertGreater(len(data), 256 * 1024)
        self.assertEqual(len(parse(data, 65536, large=True)), 2)
        self.assertIsInstance(parse_error(self, data, chunk=65536), TooLarge)

    def test_element_count_follows_the_cap(self):
        """The element count cap is one per 16 bytes of the byte cap in force."""
        limits = Limits(max_element_bytes=16384, max_stanza_bytes=1 << 20)
        many = HEADER + b"<a>" + b"<b/>" * 1100 + b"</a>"
        e = parse_error(self, many, limits)
        self.assertIn("more than 1024 child elements", e.message)
        self.assertEqual(len(parse(many, limits=limits, large=True)), 2)


class WeightTests(SynchronousTestCase):
    def test_weight_of_partial_element(self):
        """An element being built weighs its bytes and its nodes; none once complete."""
        p = XMLStreamParser()
        p.feed(HEADER)
        self.assertEqual(p.weight, 0)
        p.feed(b"<a><b/><c/>")
        self.assertEqual(p.weight, len(b"<a><b/><c/>") + 3 * ELEMENT_OVERHEAD)
        p.feed(b"</a>")
        self.assertEqual(p.weight, 0)
        self.assertEqual(p.events[1].weight, len(b"<a><b/><c/>") + 3 * ELEMENT_OVERHEAD)

    def test_weight_dropped_on_error(self):
        """A parser that failed holds nothing."""
        p = XMLStreamParser()
        p.feed(HEADER + b"<a><b/>")
        self.assertRaises(ProtocolViolation, p.feed, b"<<")
        self.assertEqual(p.weight, 0)


# -- roster items read as values (XMLStreamParser(values=True))


def stanza_elements(parser):
    return [e.element for e in parser.events if isinstance(e, Stanza)]


def outcome(data, values, limits=None, chunk=None, large=True):
    """What parsing C{data} gives: the error's type and message, or the events' summary."""
    step = chunk or len(data)
    try:
        parser = parse_chunks(
            [data[i : i + step] for i in range(0, len(data), step)], values, limits, large
        )
    except (ProtocolViolation, TooLarge) as e:
        return type(e).__name__, e.message
    rosters = [parse_roster(element) for element in stanza_elements(parser)]
    return summary_without_rosters(parser.events), rosters, parser.total_elements


def summary_without_rosters(events):
    """L{summary}, but with a roster query's items left out of its XML (values keep none)."""
    out = []
    for e in events:
        if isinstance(e, Stanza):
            element = e.element
            for query in element.elements(NS_ROSTER, "query"):
                query.children = []
                query.__dict__.pop("roster_items", None)
            out.append(("stanza", element.toXml(), e.end_offset, e.weight))
        else:
            out.append(e)
    return out


class RosterValuesTests(SynchronousTestCase):
    """
    With C{values}, a roster query's items are read as L{Contact}s by the
    parser's own handlers: C{parse_roster} reads the same roster as from
    elements, for every roster a server may send, in every chunking; the
    limits hold as they do for elements.
    """

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(roster_documents(), min_size=1, max_size=3),
        chunkings,
    )
    def test_same_roster_as_elements(self, documents, chunking):
        """values=True reads exactly the roster values=False does, in any chunking."""
        data = HEADER + b"".join(iq + AFTER for iq, _ in documents)
        expected = [roster for _, roster in documents]
        whole = {}
        for values in (False, True):
            for chunks in ([data], chunked(data, chunking)):
                parser = parse_chunks(chunks, values)
                elements = stanza_elements(parser)
                self.assertEqual(len(elements), 2 * len(documents))
                iqs, afters = elements[::2], elements[1::2]
                self.assertEqual([parse_roster(iq) for iq in iqs], expected)
                for iq in iqs:
                    query = iq.firstChildElement()
                    if values:
                        # The items were read as values; no element was built.
                        self.assertIsInstance(roster_items(query), list)
                        self.assertEqual(query.children, [])
                    else:
                        self.assertIsNone(roster_items(query))
                # What follows each roster is built as elements again.
                for after in afters:
                    self.assertEqual(after.toXml(), AFTER_XML)
                got = (summary_without_rosters(parser.events), parser.total_elements)
                whole.setdefault(values, got)
                self.assertEqual(got, whole[values])
        self.assertEqual(whole[True], whole[False])

    def test_every_split_point(self):
        """A roster with every kind of item, split in two at any byte, reads the same."""
        iq = (
            "<iq type='result' id='r'><query xmlns='jabber:iq:roster' ver='v9'>\n"
            "  <item jid='a@example.com' name='A &amp; \u00e9&#x1F600;' subscription='both'"
            " ask='subscribe' xmlns:x='urn:x' x:jid='not@example.com'>"
            "<group>G<b>hidden</b>1</group><group/><x:group>no</x:group></item>\n"
            "  <item jid='' name='empty jid'/><item name='no jid'/>"
            "<item jid='b@example.com'><group><![CDATA[<c>]]>&lt;d&gt;</group></item>"
            "<r:item xmlns:r='jabber:iq:roster' jid='c@example.com'/>"
            "<foo>t</foo></query></iq>"
        ).encode()
        data = HEADER + iq + AFTER
        expected = Roster(
            "v9",
            (
                Contact(
                    jid="a@example.com",
                    name="A & \u00e9\U0001f600",
                    subscription="both",
                    ask="subscribe",
                    groups=("G1", ""),
                ),
                Contact(
                    jid="b@example.com",
                    name=None,
                    subscription="none",
                    ask=None,
                    groups=("<c><d>",),
                ),
                Contact(jid="c@example.com", name=None, subscription="none", ask=None, groups=()),
            ),
        )
        for i in range(1, len(data)):
            for values in (False, True):
                parser = parse_chunks([data[:i], data[i:]], values)
                [roster, after] = stanza_elements(parser)
                self.assertEqual(parse_roster(roster), expected, (i, values))
                self.assertEqual(after.toXml(), AFTER_XML, (i, values))

    def test_contacts_are_values(self):
        """The contacts are Contact tuples, in document order, on the query element."""
        parser = parse_chunks([HEADER + roster_stanza(3)], True)
        query = stanza_elements(parser)[0].firstChildElement()
        contacts = roster_items(query)
        self.assertEqual([type(c) for c in contacts], [Contact] * 3)
        self.assertEqual(
            contacts[2],
            Contact(
                jid="contact2@example.com",
                name="Contact & 2",
                subscription="both",
                ask=None,
                groups=("Friends", "Group 2"),
            ),
        )
        self.assertEqual(parse_roster(stanza_elements(parser)[0]).contacts, tuple(contacts))

    def test_empty_roster(self):
        """An empty query (either form) is an empty roster, with its version."""
        for query in (
            b"<query xmlns='jabber:iq:roster' ver='v1'/>",
            b"<query xmlns='jabber:iq:roster' ver='v1'> </query>",
        ):
            for values in (False, True):
                parser = parse_chunks([HEADER + b"<iq type='result'>" + query + b"</iq>"], values)
                [iq] = stanza_elements(parser)
                self.assertEqual(parse_roster(iq), Roster("v1", ()))

    def test_query_deeper_is_elements(self):
        """A roster query that is not a child of a top-level element is built as elements."""
        for data in (
            # Nested one level deeper.
            b"<iq type='result'><wrap><query xmlns='jabber:iq:roster'>"
            b"<item jid='a@example.com'/></query></wrap></iq>",
            # As a BOSH body carries it: the iq is the child of a top-level <body/>.
            b"<body xmlns='http://jabber.org/protocol/httpbind'><iq type='result'>"
            b"<query xmlns='jabber:iq:roster'><item jid='a@example.com'/></query></iq></body>",
            # A top-level query.
            b"<query xmlns='jabber:iq:roster'><item jid='a@example.com'/></query>",
        ):
            parser = parse_chunks([HEADER + data], True)
            [top] = stanza_elements(parser)
            [query] = [e for e in _descendants(top) if e.name == "query"]
            self.assertIsNone(roster_items(query), data)
            [item] = query.elements()
            self.assertEqual(
                (item.uri, item.name, item["jid"]), (NS_ROSTER, "item", "a@example.com")
            )
        # The BOSH body's iq still reads as a roster (from its elements).
        parser = parse_chunks(
            [
                HEADER
                + b"<body xmlns='http://jabber.org/protocol/httpbind'>"
                + roster_stanza(2)
                + b"</body>"
            ],
            True,
        )
        iq = stanza_elements(parser)[0].firstChildElement()
        self.assertEqual(len(parse_roster(iq).contacts), 2)

    def test_other_query_is_elements(self):
        """The items of a query of another namespace (or a non-query) are elements."""
        for data in (
            b"<iq type='result'><query xmlns='jabber:iq:private'><item jid='a@x'/></query></iq>",
            b"<iq type='result'><list xmlns='jabber:iq:roster'><item jid='a@x'/></list></iq>",
        ):
            parser = parse_chunks([HEADER + data], True)
            [iq] = stanza_elements(parser)
            container = iq.firstChildElement()
            self.assertIsNone(roster_items(container))
            self.assertEqual([e["jid"] for e in container.elements()], ["a@x"])

    def test_handlers_restored(self):
        """After a roster, the next stanzas are built as elements, text and all."""
        data = (
            HEADER + roster_stanza(2) + b"<message><body>h\xc3\xa9 <i>x</i> &lt;</body></message>"
            + b"<iq type='result'><query xmlns='jabber:iq:private'><item jid='p@x'>t</item>"
            + b"</query></iq>" + roster_stanza(1) + b"</stream:stream>"
        )  # fmt: skip
        self.assertEqual(outcome(data, True), outcome(data, False))
        parser = parse_chunks([data], True)
        events = parser.events
        self.assertEqual(
            events[2].element.toXml(),
            "<message xmlns='jabber:client'><body>h\u00e9 <i>x</i> &lt;</body></message>",
        )
        self.assertEqual(
            events[3].element.toXml(),
            "<iq xmlns='jabber:client' type='result'><query xmlns='jabber:iq:private'>"
            "<item jid='p@x'>t</item></query></iq>",
        )
        self.assertEqual(len(roster_items(events[4].element.firstChildElement())), 1)
        self.assertEqual(events[-1], StreamEnd())

    def test_restart_after_roster(self):
        """A stream restart after a roster reads the next roster as values too."""
        parser = XMLStreamParser(values=True)
        parser.feed(HEADER + roster_stanza(2))
        parser.restart()
        parser.feed(HEADER + roster_stanza(3))
        rosters = [parse_roster(e) for e in stanza_elements(parser)]
        self.assertEqual([len(r.contacts) for r in rosters], [2, 3])

    def test_total_elements_counts_items(self):
        """total_elements and each stanza's weight count the items as if they were built."""
        data = HEADER + roster_stanza(50) + AFTER
        built, read = parse_chunks([data], False), parse_chunks([data], True)
        self.assertEqual(read.total_elements, built.total_elements)
        self.assertEqual(read.total_elements, 2 + 50 * 3 + 3)
        self.assertEqual([e.weight for e in read.events[1:]], [e.weight for e in built.events[1:]])

    def test_weight_while_reading(self):
        """A roster being read weighs what it would weigh as elements."""
        data = HEADER + roster_stanza(20)
        for cut in range(len(HEADER), len(data), 97):
            weights = []
            for values in (False, True):
                parser = XMLStreamParser(values=values)
                parser.large = True
                parser.feed(data[:cut])
                weights.append(parser.weight)
            self.assertEqual(weights[0], weights[1], cut)


def _descendants(element):
    yield element
    for child in element.elements():
        yield from _descendants(child)


class RosterValuesLimitTests(SynchronousTestCase):
    """The limits hold inside a roster read as values, with the same errors as for elements."""

    def assertSame(self, data, limits=None, chunk=None, large=True):
        """Both ways of reading C{data} give the same outcome; return it."""
        built = outcome(data, False, limits, chunk, large)
        self.assertEqual(outcome(data, True, limits, chunk, large), built)
        return built

    def test_element_count(self):
        """The element count cap counts items and groups: same error, at the same element."""
        limits = Limits(max_stanza_bytes=1 << 20, max_elements=100)
        # The iq, the query and 3 elements per item: 33 items fit, 34 do not.
        fits = self.assertSame(HEADER + roster_stanza(32), limits)
        self.assertEqual(len(fits[1][0].contacts), 32)
        for n in (33, 34, 40, 1000):
            self.assertEqual(
                self.assertSame(HEADER + roster_stanza(n), limits, chunk=977),
                ("TooLarge", "Server sent an element with more than 100 child elements"),
                n,
            )

    def test_element_count_at_the_cap(self):
        """Every count near the cap gives the same outcome either way."""
        for cap in range(95, 106):
            limits = Limits(max_stanza_bytes=1 << 20, max_elements=cap)
            for items in (30, 31, 32, 33, 34, 35):
                self.assertSame(HEADER + roster_stanza(items), limits)

    def test_total_elements(self):
        """The per-connection element cap counts roster items too."""
        data = HEADER + roster_stanza(20) + AFTER + roster_stanza(20)
        for total in (60, 61, 62, 63, 64, 65, 66, 67, 100, 125, 126, 127, 128):
            limits = Limits(max_stanza_bytes=1 << 20, max_total_elements=total)
            got = self.assertSame(data, limits, chunk=333)
            if got[0] == "TooLarge":
                self.assertEqual(
                    got[1], f"Server sent more than {total} elements on one connection"
                )
        limits = Limits(max_stanza_bytes=1 << 20, max_total_elements=100)
        self.assertEqual(self.assertSame(data, limits)[0], "TooLarge")

    def test_depth(self):
        """Nesting inside an item is capped at the same depth, with the same message."""
        for depth in (1, 2, 3, 10, 58, 59, 60, 61, 62, 63, 64, 65, 70, 500):
            inner = b"<x>" * depth + b"y" + b"</x>" * depth
            data = (
                HEADER + b"<iq type='result'><query xmlns='jabber:iq:roster'>"
                b"<item jid='a@example.com'><group>g" + inner + b"</group></item>"
                b"</query></iq>" + AFTER
            )
            got = self.assertSame(data, chunk=50)
            if got[0] == "TooLarge":
                self.assertEqual(got[1], "Server sent elements nested deeper than 64 levels")
            else:
                self.assertEqual(got[1][0].contacts[0].groups, ("g",))

    def test_depth_small_caps(self):
        """With small depth caps (the query itself at the cap, or an item), the same outcome."""
        data = HEADER + roster_stanza(2) + AFTER
        for max_depth in range(1, 7):
            got = self.assertSame(data, Limits(max_depth=max_depth))
            self.assertEqual(got[0] == "TooLarge", max_depth < 4, max_depth)

    def test_bytes(self):
        """The byte cap of a roster is unchanged: too large unless a large element is awaited."""
        data = HEADER + roster_stanza(3000)
        self.assertGreater(len(data), 256 * 1024)
        error = self.assertSame(data, chunk=65536, large=False)
        self.assertEqual(error[0], "TooLarge")
        self.assertIn("limit of 262144 bytes", error[1])
        ok = self.assertSame(data, chunk=65536, large=True)
        self.assertEqual(len(ok[1][0].contacts), 3000)

    def test_dead_after_error_in_roster(self):
        """A limit passed inside a roster kills the parser like any other error."""
        parser = XMLStreamParser(Limits(max_elements=10), values=True)
        parser.feed(HEADER)
        with self.assertRaises(TooLarge) as cm:
            parser.feed(roster_stanza(5))
        with self.assertRaises(TooLarge) as again:
            parser.feed(AFTER)
        self.assertIs(again.exception, cm.exception)
        self.assertEqual(parser.weight, 0)

    def test_linear_cost(self):
        """Reading a roster as values costs calls linear in its items."""

        def cost(n):
            data = HEADER + roster_stanza(n)
            chunks = [data[i : i + 1024] for i in range(0, len(data), 1024)]
            return calls(parse_chunks, chunks, True)

        ratio = growth(cost, 500)
        self.assertLessEqual(ratio, 5.0, f"calls grew {ratio:.1f}-fold")


class CloseTests(SynchronousTestCase):
    """A parser that ends lets go of expat's parser at once."""

    def test_close_drops_expat(self):
        """After close, expat's parser and its handlers (a reference cycle) are gone."""
        parser = XMLStreamParser()
        parser.feed(HEADER + b"<stream:features><a xmlns='urn:a'/>")
        expat = parser._parser
        parser.close()
        self.assertIsNone(parser._parser)
        self.assertIsNone(expat.StartElementHandler)
        self.assertIsNone(expat.CharacterDataHandler)
        self.assertEqual(parser.deferred, 0)

    def test_after_close_nothing_is_parsed(self):
        """feed, flush and restart after close do nothing, and raise nothing."""
        parser = XMLStreamParser()
        parser.feed(HEADER)
        events = list(parser.events)
        parser.close()
        parser.feed(FEATURES + b"<garbage")
        parser.flush()
        parser.restart()
        self.assertEqual(parser.events, events)
        self.assertIsNone(parser._parser)

    def test_close_with_refused_text_buffered(self):
        """
        Text expat still buffers reaches the old handler when it is replaced;
        text it refuses (outside any stanza) does not stop the close.
        """
        parser = XMLStreamParser()
        # expat buffers the "!" and stops at the invalid byte after it.
        self.assertRaises(ProtocolViolation, parser.feed, HEADER + b"!\x00")
        parser.close()
        self.assertIsNone(parser._parser)

    def test_close_twice(self):
        parser = XMLStreamParser()
        parser.close()
        parser.close()
        self.assertIsNone(parser._parser)
