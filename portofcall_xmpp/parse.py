"""
Pure interpretation of parsed XMPP elements: stream features, stream errors,
SASL failures, iq errors, bind results, rosters, ping replies, and the
redacted serialisation used by transcripts.  No transport, no clock.
"""

from __future__ import annotations

import contextlib
import gc
from collections import Counter

import attrs
from twisted.words.xish import domish

from .stream import NS_STREAMS, Contact, roster_items

NS_CLIENT = "jabber:client"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_COMPRESS_FEATURE = "http://jabber.org/features/compress"
NS_ROSTER = "jabber:iq:roster"
NS_ROSTERVER = "urn:xmpp:features:rosterver"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_SASL_CB = "urn:xmpp:sasl-cb:0"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_VERSION = "jabber:iq:version"
NS_PING = "urn:xmpp:ping"
NS_DATA = "jabber:x:data"
NS_SERVERINFO = "http://jabber.org/network/serverinfo"
NS_SERVER = "jabber:server"
NS_DIALBACK = "jabber:server:dialback"
NS_DIALBACK_FEATURE = "urn:xmpp:features:dialback"
NS_COMPONENT = "jabber:component:accept"

REDACTED = "[redacted]"

# SPEC §3: feature names derived from the namespaces of the features' children.
_EXACT_FEATURES = {
    NS_TLS: "starttls",
    NS_BIND: "resource-binding",
    NS_SESSION: "session",
    NS_ROSTERVER: "roster-versioning",
}
_PREFIX_FEATURES = (
    ("urn:xmpp:sm:", "stream-management"),
    ("urn:xmpp:csi:", "client-state-indication"),
    ("urn:xmpp:carbons:", "message-carbons"),
)


def feature_name(namespace: str | None) -> str | None:
    """The SPEC §3 feature name for a child namespace, or C{None}."""
    if namespace is None:
        return None
    name = _EXACT_FEATURES.get(namespace)
    if name is not None:
        return name
    for prefix, name in _PREFIX_FEATURES:
        if namespace.startswith(prefix):
            return name
    return None


def children(element: domish.Element):
    """The child elements of C{element} (no text nodes)."""
    return [c for c in element.children if isinstance(c, domish.Element)]


def child(element: domish.Element, uri: str | None, name: str):
    """The first child element named C{name} in C{uri}, or C{None}."""
    for c in element.children:
        if isinstance(c, domish.Element) and c.name == name and c.uri == uri:
            return c
    return None


def text_of(element: domish.Element | None) -> str:
    """The concatenated direct text content of C{element} ("" for None)."""
    if element is None:
        return ""
    texts = [c for c in element.children if isinstance(c, str)]
    return texts[0] if len(texts) == 1 else "".join(texts)


def is_features(element: domish.Element) -> bool:
    """Whether C{element} is C{<stream:features>}."""
    return element.uri == NS_STREAMS and element.name == "features"


def is_stream_error(element: domish.Element) -> bool:
    """Whether C{element} is C{<stream:error>}."""
    return element.uri == NS_STREAMS and element.name == "error"


@attrs.frozen
class Features:
    """
    What a C{<stream:features>} block offers.

    @ivar features: SPEC §3 names, in document order, without duplicates.
    @ivar namespaces: every child namespace as-is, in document order, without
        duplicates (C{""} for a child in no namespace).
    @ivar channel_bindings: the types of XEP-0440 C{<sasl-channel-binding>}.
    """

    features: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    mechanisms: tuple[str, ...] = ()
    compression: tuple[str, ...] = ()
    starttls: bool = False
    starttls_required: bool = False
    bind: bool = False
    session: bool = False
    channel_bindings: tuple[str, ...] = ()
    dialback: bool = False


class _Unique:
    """
    Values in first-seen order without duplicates, each added in constant
    time (a dict, not a list membership test, which made a block of n
    distinct values cost n² comparisons).
    """

    def __init__(self):
        self._seen: dict = {}

    def add(self, value) -> None:
        if value:
            self._seen.setdefault(value, None)

    def values(self) -> tuple:
        return tuple(self._seen)


def parse_features(element: domish.Element) -> Features:
    """Interpret a C{<stream:features>} element, in time linear in its size."""
    features, namespaces, mechanisms = _Unique(), {}, _Unique()
    compression, bindings = _Unique(), _Unique()
    starttls = starttls_required = bind = session = dialback = False
    for c in children(element):
        namespaces.setdefault(c.uri or "", None)
        features.add(feature_name(c.uri))
        if c.uri == NS_TLS and c.name == "starttls":
            starttls = True
            starttls_required = starttls_required or child(c, NS_TLS, "required") is not None
        elif c.uri == NS_SASL and c.name == "mechanisms":
            for m in children(c):
                if m.uri == NS_SASL and m.name == "mechanism":
                    mechanisms.add(text_of(m).strip())
        elif c.uri == NS_COMPRESS_FEATURE and c.name == "compression":
            for m in children(c):
                if m.name == "method":
                    compression.add(text_of(m).strip())
        elif c.uri == NS_BIND and c.name == "bind":
            bind = True
        elif c.uri == NS_SESSION and c.name == "session":
            session = True
        elif c.uri == NS_DIALBACK_FEATURE:
            dialback = True
        elif c.uri == NS_SASL_CB and c.name == "sasl-channel-binding":
            for b in children(c):
                if b.name == "channel-binding":
                    bindings.add(b.getAttribute("type"))
    return Features(
        features=features.values(),
        namespaces=tuple(namespaces),
        mechanisms=mechanisms.values(),
        compression=compression.values(),
        starttls=starttls,
        starttls_required=starttls_required,
        bind=bind,
        session=session,
        channel_bindings=bindings.values(),
        dialback=dialback,
    )


@attrs.frozen
class Condition:
    """A defined condition and its optional human-readable text."""

    condition: str
    text: str | None = None
    type: str | None = None


def _condition_in(element: domish.Element, namespace: str) -> Condition:
    condition = None
    text = None
    for c in children(element):
        if c.uri != namespace:
            continue
        if c.name == "text":
            text = text_of(c) or None
        elif condition is None:
            condition = c.name
    return Condition(condition or "undefined-condition", text, element.getAttribute("type"))


def parse_stream_error(element: domish.Element) -> Condition:
    """The condition and text of a C{<stream:error>} (RFC 6120 §4.9)."""
    return _condition_in(element, NS_STREAM_ERRORS)


def parse_sasl_failure(element: domish.Element) -> Condition:
    """The condition and text of a SASL C{<failure/>} (RFC 6120 §6.5)."""
    return _condition_in(element, NS_SASL)


def stanza_error(stanza: domish.Element) -> domish.Element | None:
    """The C{<error>} child of an error stanza, or C{None}."""
    for c in children(stanza):
        if c.name == "error" and c.uri in (stanza.uri, NS_CLIENT, None):
            return c
    return None


def parse_stanza_error(stanza: domish.Element) -> Condition:
    """The type, condition and text of an error stanza (RFC 6120 §8.3)."""
    error = stanza_error(stanza)
    if error is None:
        return Condition("undefined-condition")
    return _condition_in(error, NS_STANZAS)


def bound_jid(iq: domish.Element) -> str | None:
    """The C{<jid>} of a resource-binding result (RFC 6120 §7.6.1)."""
    bind = child(iq, NS_BIND, "bind")
    if bind is None:
        return None
    jid = text_of(child(bind, NS_BIND, "jid")).strip()
    return jid or None


@attrs.frozen
class Roster:
    """A roster result: its version (C{None} when absent) and items."""

    version: str | None
    contacts: tuple[Contact, ...]


@contextlib.contextmanager
def collector_paused():
    """
    Pause the cyclic garbage collector while building many objects: each
    full collection walks every live object, so with a large tree alive the
    cost of building grows faster than its size.  Nothing built here makes
    garbage cycles.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def parse_roster(iq: domish.Element) -> Roster:
    """Interpret a C{jabber:iq:roster} result; every group of every item."""
    query = child(iq, NS_ROSTER, "query")
    if query is None:
        return Roster(None, ())
    collected = roster_items(query)
    if collected is not None:
        # The parser read the items as values (XMLStreamParser's values).
        return Roster(query.getAttribute("ver"), tuple(collected))
    with collector_paused():
        return _parse_items(query)


def _parse_items(query: domish.Element) -> Roster:
    contacts = []
    for item in query.children:
        if not isinstance(item, domish.Element) or item.name != "item" or item.uri != NS_ROSTER:
            continue
        jid = item.getAttribute("jid")
        if not jid:
            continue
        groups = tuple(
            text_of(g)
            for g in item.children
            if isinstance(g, domish.Element) and g.name == "group" and g.uri == NS_ROSTER
        )
        contacts.append(
            Contact(
                jid=jid,
                name=item.getAttribute("name"),
                subscription=item.getAttribute("subscription") or "none",
                ask=item.getAttribute("ask"),
                groups=groups,
            )
        )
    return Roster(query.getAttribute("ver"), tuple(contacts))


@attrs.frozen
class Identity:
    """A XEP-0030 identity."""

    category: str
    type: str
    name: str | None


@attrs.frozen
class DiscoInfo:
    """
    A XEP-0030 disco#info result: identities, features, and the XEP-0128
    extended forms as C{{FORM_TYPE: {var: (values...)}}}.
    """

    identities: tuple[Identity, ...]
    features: tuple[str, ...]
    forms: dict

    def contact_addresses(self) -> dict:
        """XEP-0157: the serverinfo form's fields (C{abuse-addresses}, ...)."""
        return dict(self.forms.get(NS_SERVERINFO, {}))


def parse_disco_info(iq: domish.Element) -> DiscoInfo:
    """Interpret a disco#info result, in time linear in its size."""
    query = child(iq, NS_DISCO_INFO, "query")
    identities, features, forms = [], _Unique(), {}
    for c in children(query) if query is not None else ():
        if c.uri == NS_DISCO_INFO and c.name == "identity":
            identities.append(
                Identity(c.getAttribute("category") or "", c.getAttribute("type") or "",
                         c.getAttribute("name"))
            )  # fmt: skip
        elif c.uri == NS_DISCO_INFO and c.name == "feature":
            features.add(c.getAttribute("var"))
        elif c.uri == NS_DATA and c.name == "x":
            fields = {}
            form_type = None
            for field in children(c):
                if field.name != "field" or not field.getAttribute("var"):
                    continue
                values = tuple(text_of(v) for v in children(field) if v.name == "value")
                if field.getAttribute("var") == "FORM_TYPE":
                    form_type = values[0] if values else None
                else:
                    fields[field.getAttribute("var")] = values
            if form_type:
                forms[form_type] = fields
    return DiscoInfo(tuple(identities), features.values(), forms)


@attrs.frozen
class Software:
    """A XEP-0092 software version result."""

    name: str | None
    version: str | None
    os: str | None


def parse_version(iq: domish.Element) -> Software:
    """Interpret a C{jabber:iq:version} result."""
    query = child(iq, NS_VERSION, "query")

    def field(name):
        if query is None:
            return None
        value = text_of(child(query, NS_VERSION, name)).strip()
        return value or None

    return Software(field("name"), field("version"), field("os"))


_SASL_PAYLOAD = frozenset({"auth", "challenge", "response", "success"})


def carries_secret(element: domish.Element) -> bool:
    """
    Whether C{element} is a SASL payload or a XEP-0114 C{<handshake>} (a
    digest of the component's secret), whose text must never be shown.
    """
    if element.uri == NS_SASL:
        return element.name in _SASL_PAYLOAD
    return element.uri == NS_COMPONENT and element.name == "handshake"


class _Scope(list):
    """The prefixes one element brings into scope, counted in L{_ScopeStack}."""

    def __init__(self, counts: Counter, prefixes):
        super().__init__(prefixes)
        self._counts = counts
        counts.update(self)

    def append(self, prefix) -> None:
        super().append(prefix)
        self._counts[prefix] += 1


class _ScopeStack(list):
    """
    domish's stack of prefixes in scope, with a count of each prefix, so
    that "is this prefix in scope" costs constant time instead of a scan of
    every prefix declared by every open element.
    """

    def __init__(self, scopes):
        super().__init__()
        self.counts: Counter = Counter()
        for scope in scopes:
            self.append(scope)

    def append(self, prefixes) -> None:
        super().append(_Scope(self.counts, prefixes))

    def pop(self):
        scope = super().pop()
        self.counts.subtract(scope)
        return scope


class _Serializer(domish.SerializerClass):
    """
    domish's serializer, whose prefix-scope check scanned a list per element
    and per namespaced attribute (n² for n namespaced attributes or n
    children of an element that declares n prefixes); here it is a lookup.
    """

    def __init__(self, prefixes=None, prefixesInScope=None):
        super().__init__(prefixes, None)
        self.prefixStack = _ScopeStack(
            [domish.G_PREFIXES.values(), *([p] for p in prefixesInScope or ())]
        )

    def prefixInScope(self, prefix) -> bool:
        return self.prefixStack.counts[prefix] > 0


def _serialise(element: domish.Element, default_ns: str | None) -> str:
    s = _Serializer({NS_STREAMS: "stream"}, ["stream"])
    s.serialize(element, 1, default_ns or "")
    return s.getValue()


def to_xml(element: domish.Element, default_ns: str | None = NS_CLIENT) -> str:
    """
    Serialise C{element} for a transcript or a report, with the text of every
    SASL payload (C{<auth>}, C{<challenge>}, C{<response>}, C{<success>})
    and of a component C{<handshake>} replaced by C{[redacted]}.
    """
    if carries_secret(element) and text_of(element):
        shown = domish.Element((element.uri, element.name), element.defaultUri)
        shown.attributes = dict(element.attributes)
        shown.addContent(REDACTED)
        element = shown
    return _serialise(element, default_ns)


def inner_xml(element: domish.Element, default_ns: str | None = NS_CLIENT) -> str:
    """The serialised children (elements and text) of C{element}."""
    parts = []
    for c in element.children:
        if isinstance(c, domish.Element):
            parts.append(_serialise(c, default_ns))
        else:
            parts.append(domish.escapeToXml(c))
    return "".join(parts)
