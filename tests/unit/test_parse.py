"""Tests for portofcall_xmpp.parse: features, disco, serialisation, and their cost."""

from cost import Counted, calls, growth
from hypothesis import given, settings
from hypothesis import strategies as st
from rosters import HEADER, parse_chunks, roster_documents
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from portofcall_xmpp.parse import (
    NS_BIND,
    NS_COMPRESS_FEATURE,
    NS_DISCO_INFO,
    NS_ROSTER,
    NS_SASL,
    NS_SASL_CB,
    NS_TLS,
    Roster,
    parse_disco_info,
    parse_features,
    parse_roster,
    to_xml,
)
from portofcall_xmpp.stream import NS_STREAMS, Contact, roster_items

# A cost that grows by more than this when the input grows fourfold is not
# linear (linear: about 4; quadratic: about 16).
LINEAR = 5.0
N = 400


def features(*children):
    element = domish.Element((NS_STREAMS, "features"))
    for c in children:
        element.children.append(c)
    return element


def el(uri, name, text=None, **attributes):
    element = domish.Element((uri, name))
    element.attributes.update(attributes)
    if text is not None:
        element.children.append(text)
    return element


def namespaced_children(n):
    """n children of <stream:features>, each in its own namespace."""
    return features(*(el(Counted(f"urn:x:{i}"), "f") for i in range(n)))


def mechanisms(n):
    mechs = el(NS_SASL, "mechanisms")
    mechs.children.extend(el(NS_SASL, "mechanism", Counted(f"M-{i}")) for i in range(n))
    return features(mechs)


def compression(n):
    methods = el(NS_COMPRESS_FEATURE, "compression")
    methods.children.extend(el(NS_COMPRESS_FEATURE, "method", Counted(f"m{i}")) for i in range(n))
    return features(methods)


def bindings(n):
    cb = el(NS_SASL_CB, "sasl-channel-binding")
    cb.children.extend(el(NS_SASL_CB, "channel-binding", type=Counted(f"t{i}")) for i in range(n))
    return features(cb)


def disco(n):
    iq = el(None, "iq", type="result")
    query = el(NS_DISCO_INFO, "query")
    query.children.extend(el(NS_DISCO_INFO, "feature", var=Counted(f"urn:f:{i}")) for i in range(n))
    iq.children.append(query)
    return iq


def declared_prefixes(n):
    """One element declaring n prefixes, then a child in each prefix's namespace."""
    prefixes = {Counted(f"p{i}"): Counted(f"urn:p:{i}") for i in range(n)}
    parent = domish.Element((None, "x"), localPrefixes=prefixes)
    for uri in prefixes.values():
        parent.children.append(domish.Element((uri, "c"), localPrefixes={}))
    return features(parent)


def namespaced_attributes(n):
    """One element with n attributes, each in a namespace of its own."""
    prefixes = {Counted(f"p{i}"): Counted(f"urn:a:{i}") for i in range(n)}
    element = domish.Element((None, "x"), localPrefixes=prefixes)
    for uri in prefixes.values():
        element.attributes[(uri, "a")] = "v"
    return features(element)


class FeaturesTests(SynchronousTestCase):
    def test_everything(self):
        """Names, namespaces, mechanisms, methods and flags come out in document order."""
        parsed = parse_features(
            features(
                el(NS_TLS, "starttls"),
                el(NS_SASL, "mechanisms"),
                el(NS_BIND, "bind"),
                el("urn:xmpp:sm:3", "sm"),
                el("urn:xmpp:sm:2", "sm"),
                el(None, "plain"),
            )
        )
        self.assertEqual(parsed.features, ("starttls", "resource-binding", "stream-management"))
        self.assertEqual(
            parsed.namespaces, (NS_TLS, NS_SASL, NS_BIND, "urn:xmpp:sm:3", "urn:xmpp:sm:2", "")
        )
        self.assertTrue(parsed.starttls and parsed.bind)
        self.assertFalse(parsed.starttls_required)

    def test_duplicates_dropped(self):
        """Repeated mechanisms, methods and binding types are listed once, first first."""
        element = mechanisms(0)
        element.children[0].children.extend(
            el(NS_SASL, "mechanism", t) for t in ("PLAIN", " SCRAM-SHA-1 ", "PLAIN", "", "X")
        )
        self.assertEqual(parse_features(element).mechanisms, ("PLAIN", "SCRAM-SHA-1", "X"))
        element = compression(0)
        element.children[0].children.extend(
            el(NS_COMPRESS_FEATURE, "method", t) for t in ("zlib", "lzw", "zlib")
        )
        self.assertEqual(parse_features(element).compression, ("zlib", "lzw"))
        element = bindings(0)
        element.children[0].children.extend(
            el(NS_SASL_CB, "channel-binding", type=t)
            for t in ("tls-exporter", "tls-unique", "tls-unique")
        )
        self.assertEqual(parse_features(element).channel_bindings, ("tls-exporter", "tls-unique"))

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.sampled_from(["a", "b", "c", "urn:xmpp:sm:3", "urn:xmpp:csi:0", ""])))
    def test_namespaces_as_a_list_would_give(self, uris):
        """De-duplication keeps what a first-seen list would: order and every value once."""
        parsed = parse_features(features(*(el(u or None, "f") for u in uris)))
        expected = []
        for u in uris:
            if u not in expected:
                expected.append(u)
        self.assertEqual(list(parsed.namespaces), expected)


class DiscoTests(SynchronousTestCase):
    def test_features_once(self):
        """disco#info features are listed once each, in document order."""
        iq = disco(0)
        iq.children[0].children.extend(
            el(NS_DISCO_INFO, "feature", var=v) for v in ("b", "a", "b", "c")
        )
        self.assertEqual(parse_disco_info(iq).features, ("b", "a", "c"))


class SerialisationTests(SynchronousTestCase):
    def test_as_domish(self):
        """to_xml writes what domish writes, prefixes and namespaced attributes included."""
        for tree in (declared_prefixes(3), namespaced_attributes(3), mechanisms(2), disco(2)):
            self.assertEqual(
                to_xml(tree),
                tree.toXml(
                    prefixes={NS_STREAMS: "stream"},
                    defaultUri="jabber:client",
                    prefixesInScope=["stream"],
                ),
            )


class LinearCostTests(SynchronousTestCase):
    """
    Each construct a server controls costs linearly: n and 4n of it, counted
    in function calls and string comparisons (L{cost.calls}), not in time.
    """

    def assertLinear(self, f, build):
        ratio = growth(lambda n: calls(f, build(n)), N)
        self.assertLessEqual(ratio, LINEAR, f"{build.__name__}: cost grew {ratio:.1f}-fold")

    def test_namespaced_children(self):
        """Features whose children are each in their own namespace."""
        self.assertLinear(parse_features, namespaced_children)

    def test_mechanisms(self):
        """SASL mechanisms."""
        self.assertLinear(parse_features, mechanisms)

    def test_compression_methods(self):
        """Compression methods."""
        self.assertLinear(parse_features, compression)

    def test_channel_bindings(self):
        """XEP-0440 channel-binding types."""
        self.assertLinear(parse_features, bindings)

    def test_disco_features(self):
        """disco#info features."""
        self.assertLinear(parse_disco_info, disco)

    def test_serialise_declared_prefixes(self):
        """A transcript of an element declaring many prefixes used by its children."""
        self.assertLinear(to_xml, declared_prefixes)

    def test_serialise_namespaced_attributes(self):
        """A transcript of an element with many namespaced attributes."""
        self.assertLinear(to_xml, namespaced_attributes)


class RosterTests(SynchronousTestCase):
    """
    parse_roster reads a roster from the query's elements, or from the
    contacts the stream parser read as values (stream.roster_items): the
    same roster either way.
    """

    def reply(self, items, ver=None):
        iq = domish.Element((None, "iq"))
        query = iq.addElement((NS_ROSTER, "query"))
        if ver is not None:
            query["ver"] = ver
        for item in items:
            query.addChild(item)
        return iq

    def test_from_elements(self):
        """Items without a jid are skipped; groups are their direct text; subscription defaults."""
        bob = el(NS_ROSTER, "item", jid="bob@example.com", ask="subscribe")
        bob["name"] = "Bob"
        group = bob.addElement((NS_ROSTER, "group"))
        group.addContent("A")
        group.addElement((NS_ROSTER, "b")).addContent("hidden")
        group.addContent("B")
        bob.addChild(el("urn:x", "group", "not a roster group"))
        iq = self.reply(
            [
                bob,
                el(NS_ROSTER, "item", jid=""),
                el(NS_ROSTER, "item", ask="subscribe"),
                el("urn:x", "item", jid="other@example.com"),
                el(NS_ROSTER, "item", jid="carol@example.com", subscription=""),
            ],
            ver="v1",
        )
        self.assertEqual(
            parse_roster(iq),
            Roster(
                "v1",
                (
                    Contact(
                        jid="bob@example.com",
                        name="Bob",
                        subscription="none",
                        ask="subscribe",
                        groups=("AB",),
                    ),
                    Contact(
                        jid="carol@example.com", name=None, subscription="none", ask=None, groups=()
                    ),
                ),
            ),
        )

    def test_from_values(self):
        """Contacts the parser read as values are the roster, in their order."""
        contacts = [
            Contact(jid="a@example.com", name=None, subscription="both", ask=None, groups=("G",)),
            Contact(jid="b@example.com", name="B", subscription="none", ask=None, groups=()),
        ]
        iq = self.reply([], ver="v7")
        iq.firstChildElement().roster_items = contacts
        self.assertEqual(roster_items(iq.firstChildElement()), contacts)
        self.assertEqual(parse_roster(iq), Roster("v7", tuple(contacts)))

    def test_no_query(self):
        """A reply without a roster query is an empty roster without a version."""
        iq = domish.Element((None, "iq"))
        iq.addElement(("jabber:iq:private", "query"))
        self.assertEqual(parse_roster(iq), Roster(None, ()))

    @settings(max_examples=100, deadline=None)
    @given(roster_documents())
    def test_parsed_both_ways(self, document):
        """A roster document parsed as elements and as values reads as the roster it holds."""
        iq, expected = document
        for values in (False, True):
            parser = parse_chunks([HEADER + iq], values)
            self.assertEqual(parse_roster(parser.events[1].element), expected, values)
