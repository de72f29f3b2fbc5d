"""
Roster replies for tests of the two ways the stream parser reads them (its
items built as elements, or read as values: C{XMLStreamParser(values=True)}):
a hypothesis strategy of roster documents, each with the roster
C{parse.parse_roster} must read from it, and helpers to parse a stream in
any chunking.

What a server may put in a roster reply, and what it means (RFC 6121
§2.1.2): items in the C{jabber:iq:roster} namespace (plain, prefixed, or
redeclared) with or without a C{jid} (an empty one is no contact), names
with entities and non-ASCII characters, a missing C{subscription}
("none"), C{ask}, zero or more groups whose direct text is the group's name
(text of child elements, CDATA sections included or not, as
C{parse.text_of} reads it), unknown children, namespaced attributes (never
the item's C{jid}), prefix declarations, whitespace everywhere; and what is
not a contact: items of another namespace, items nested deeper, groups of
another namespace.
"""

from __future__ import annotations

from hypothesis import strategies as st

from portofcall_xmpp.parse import Roster
from portofcall_xmpp.stream import Contact, XMLStreamParser

NS_ROSTER = "jabber:iq:roster"
NS_CLIENT = "jabber:client"
NS_OTHER = "urn:x:other"

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='example.com' "
    b"version='1.0' xml:lang='en'>"
)
# What follows a roster reply on the stream: a stanza built as elements again.
AFTER = b"<message to='a@example.com'><body>after &amp; \xc3\xa9<b>x</b>y</body></message>"
#: AFTER as the parser builds it.
AFTER_XML = (
    "<message xmlns='jabber:client' to='a@example.com'><body>after &amp; \xe9<b>x</b>y</body>"
    "</message>"
)


def _xml_char(c: str) -> bool:
    o = ord(c)
    return o in (9, 10, 13) or 0x20 <= o <= 0xD7FF or 0xE000 <= o <= 0xFFFD or o >= 0x10000


_chars = st.characters(blacklist_categories=("Cs",)).filter(_xml_char)
_pieces = st.sampled_from(
    ["&", "<", ">", "'", '"', "]]>", " ", "\t", "\n", "\r\n", "\xe9", "\u20ac", "\U0001f600"]
)
#: Text as the server means it (escaped when written).
texts = st.lists(st.one_of(st.text(_chars, max_size=6), _pieces), max_size=4).map("".join)
_nonempty = st.lists(
    st.one_of(st.text(_chars, min_size=1, max_size=6), _pieces), min_size=1, max_size=4
).map("".join)
_whitespace = st.sampled_from(["", " ", "\n", "\n  ", "\t", "\r\n"])


def escape_text(text: str, refs: bool) -> str:
    """C{text} as element content; with C{refs}, non-ASCII as character references."""
    out = []
    for c in text:
        if c == "&":
            out.append("&amp;")
        elif c == "<":
            out.append("&lt;")
        elif c == ">":
            out.append("&gt;")
        elif c == "\r":
            out.append("&#13;")
        elif refs and ord(c) > 127:
            out.append(f"&#x{ord(c):x};")
        else:
            out.append(c)
    return "".join(out)


def escape_attr(text: str, refs: bool) -> str:
    """C{text} as a single-quoted attribute value (no whitespace normalised away)."""
    out = []
    for c in escape_text(text, refs):
        if c == "'":
            out.append("&apos;")
        elif c in "\t\n":
            out.append(f"&#{ord(c)};")
        else:
            out.append(c)
    return "".join(out)


def _cdata(text: str) -> str:
    """C{text} as it may stand in a CDATA section (no end marker; no CR, which XML folds)."""
    text = text.replace("\r", "")
    while "]]>" in text:
        text = text.replace("]]>", "")
    return text


@st.composite
def group_xml(draw, default_ns: str, refs: bool):
    """One C{<group/>} (or a look-alike): (xml, its name when it is a roster group, else None)."""
    variant = draw(st.sampled_from(["plain", "prefixed", "other"]))
    if variant == "plain":
        tag, decl, counted = "group", "", default_ns == NS_ROSTER
    elif variant == "prefixed":
        tag, decl, counted = "g:group", f" xmlns:g='{NS_ROSTER}'", True
    else:
        tag, decl, counted = "group", f" xmlns='{NS_OTHER}'", False
    parts, name = [], []
    segments = st.one_of(
        texts.map(lambda t: ("text", t)),
        texts.map(lambda t: ("cdata", _cdata(t))),
        texts.map(lambda t: ("child", t)),
        st.just(("empty", "")),
    )
    for kind, text in draw(st.lists(segments, max_size=4)):
        if kind == "text":
            parts.append(escape_text(text, refs))
            name.append(text)
        elif kind == "cdata":
            parts.append(f"<![CDATA[{text}]]>")
            name.append(text)
        elif kind == "child":
            # Text of a child element is not the group's name (parse.text_of).
            child = draw(st.sampled_from(["b", "group", "x:em xmlns:x='urn:x'"]))
            parts.append(f"<{child}>{escape_text(text, refs)}</{child.split()[0]}>")
        else:
            parts.append("<b/>")
    if not parts and draw(st.booleans()):
        xml = f"<{tag}{decl}/>"
    else:
        xml = f"<{tag}{decl}>{''.join(parts)}</{tag}>"
    return xml, ("".join(name) if counted else None)


_ITEM_VARIANTS = {
    # variant: (tag, declarations, a roster item?, default namespace of its children)
    "plain": ("item", "", None, None),
    "prefixed": ("r:item", f" xmlns:r='{NS_ROSTER}'", True, None),
    "explicit": ("item", f" xmlns='{NS_ROSTER}'", True, NS_ROSTER),
    "other": ("item", f" xmlns='{NS_OTHER}'", False, NS_OTHER),
    "prefixed, other default": (
        "r:item",
        f" xmlns:r='{NS_ROSTER}' xmlns='{NS_OTHER}'",
        True,
        NS_OTHER,
    ),
}

_absent = st.none()
_jids = st.one_of(_nonempty, _absent, st.just(""))
_names = st.one_of(_absent, st.just(""), texts)
_subscriptions = st.one_of(
    _absent, st.just(""), st.sampled_from(["none", "to", "from", "both", "remove"]), texts
)
_asks = st.one_of(_absent, st.just(""), st.just("subscribe"), texts)
# Namespaced attributes with the local names of the item's own: never its jid.
_namespaced = st.dictionaries(
    st.tuples(
        st.sampled_from(["urn:x", NS_ROSTER]),
        st.sampled_from(["jid", "name", "subscription", "ask", "other"]),
    ),
    texts,
    max_size=3,
)


@st.composite
def item_xml(draw, default_ns: str, refs: bool):
    """One C{<item/>} (or a look-alike): (xml, the Contact it is, or None)."""
    variant = draw(st.sampled_from(sorted(_ITEM_VARIANTS)))
    tag, decl, roster, child_ns = _ITEM_VARIANTS[variant]
    roster = default_ns == NS_ROSTER if roster is None else roster
    child_ns = default_ns if child_ns is None else child_ns
    attributes = [decl] if decl else []
    values = {}
    for name, strategy in (
        ("jid", _jids),
        ("name", _names),
        ("subscription", _subscriptions),
        ("ask", _asks),
    ):
        value = draw(strategy)
        values[name] = value
        if value is not None:
            attributes.append(f" {name}='{escape_attr(value, refs)}'")
    for i, ((uri, local), value) in enumerate(draw(_namespaced).items()):
        attributes.append(f" xmlns:n{i}='{uri}' n{i}:{local}='{escape_attr(value, refs)}'")
    for i in range(draw(st.integers(0, 2))):
        attributes.append(f" xmlns:p{i}='urn:p:{i}'")
    if draw(st.booleans()):
        attributes.append(" xml:lang='en'")
    attributes = draw(st.permutations(attributes))
    children, groups = [], []
    unknown = st.sampled_from(
        [
            "<note xmlns='urn:x'>text<group>nested, not a group of the item</group></note>",
            "<extra/>",
            f"<item jid='nested@example.com' xmlns='{NS_ROSTER}'/>",
            "<x:approved xmlns:x='urn:x'/>",
        ]
    )
    groups_ = group_xml(child_ns, refs).map(lambda g: ("group", g))
    kinds = st.one_of(
        groups_,
        groups_,
        unknown.map(lambda u: ("unknown", u)),
        _whitespace.map(lambda w: ("space", w)),
    )
    for kind, value in draw(st.lists(kinds, max_size=5)):
        if kind == "group":
            xml, name = value
            children.append(xml)
            if name is not None:
                groups.append(name)
        else:
            children.append(value)
    head = f"<{tag}{''.join(attributes)}"
    if not children and draw(st.booleans()):
        xml = head + "/>"
    else:
        xml = f"{head}>{''.join(children)}</{tag}>"
    contact = None
    if roster and values["jid"]:
        contact = Contact(
            jid=values["jid"],
            name=values["name"],
            subscription=values["subscription"] or "none",
            ask=values["ask"],
            groups=tuple(groups),
        )
    return xml, contact


@st.composite
def roster_documents(draw):
    """
    A roster reply (an C{<iq/>} with a roster query): (the iq as bytes, the
    L{Roster} C{parse_roster} reads from it).
    """
    refs = draw(st.booleans())
    if draw(st.booleans()):
        head, tag, default_ns = f"<query xmlns='{NS_ROSTER}'", "query", NS_ROSTER
    else:
        # A prefixed query: unprefixed items inside are jabber:client items.
        head, tag, default_ns = f"<q:query xmlns:q='{NS_ROSTER}'", "q:query", NS_CLIENT
    version = draw(st.one_of(_absent, st.just(""), texts))
    if version is not None:
        head += f" ver='{escape_attr(version, refs)}'"
    others = st.sampled_from(
        [
            "<foo>t</foo>",
            "<x:item xmlns:x='urn:x' jid='not-roster@example.com'/>",
            f"<wrap><item xmlns='{NS_ROSTER}' jid='deep@example.com'/></wrap>",
            f"<group xmlns='{NS_ROSTER}'>loose</group>",
            "stray text &amp; more",
        ]
    )
    items = item_xml(default_ns, refs).map(lambda i: ("item", i))
    kinds = st.one_of(
        items,
        items,
        items,
        others.map(lambda o: ("other", o)),
        _whitespace.map(lambda w: ("space", w)),
    )
    parts, contacts = [], []
    for kind, value in draw(st.lists(kinds, min_size=1, max_size=8)):
        if kind == "item":
            xml, contact = value
            parts.append(xml)
            if contact is not None:
                contacts.append(contact)
        else:
            parts.append(value)
    if not parts and draw(st.booleans()):
        query = head + "/>"
    else:
        query = f"{head}>{''.join(parts)}</{tag}>"
    iq = f"<iq type='result' id='roster1'>{query}</iq>"
    return iq.encode("utf-8"), Roster(version, tuple(contacts))


#: How to cut a stream: at some fractions of its length, or every few bytes.
chunkings = st.one_of(
    st.lists(st.floats(min_value=0, max_value=1), max_size=12).map(lambda f: ("at", f)),
    st.integers(min_value=1, max_value=9).map(lambda n: ("every", n)),
)


def chunked(data: bytes, chunking) -> list[bytes]:
    """C{data} cut as C{chunking} (one of L{chunkings}) says."""
    how, arg = chunking
    if how == "every":
        return [data[i : i + arg] for i in range(0, len(data), arg)]
    points = [0, *sorted({int(f * len(data)) for f in arg} - {0, len(data)}), len(data)]
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def parse_chunks(chunks, values: bool, limits=None, large: bool = True) -> XMLStreamParser:
    """A parser fed C{chunks} one by one (then flushed)."""
    parser = XMLStreamParser(limits, values=values)
    parser.large = large
    for chunk in chunks:
        parser.feed(chunk)
    parser.flush()
    return parser
