"""
An incremental XML stream parser for XMPP (RFC 6120 §4 and §11).

Bytes go in, in any chunking; out come events, identical whatever the chunk
boundaries:

 - L{StreamHeader} for the opening C{<stream:stream>} tag,
 - L{Stanza} for each complete top-level element (a C{domish.Element}),
 - L{StreamEnd} for C{</stream:stream>}.

The parser is expat (C{pyexpat}), fed incrementally.  Its cost grows
linearly with what the server sends, for every construct: each handler does
constant work per element, attribute, namespace declaration and run of text,
and input that would make expat rescan a long unfinished token (expat 2.5
rescans a partial token from its start on every call) is held back until it
has doubled, or until L{XMLStreamParser.flush} (see L{DEFER_MIN}).

What RFC 6120 §11.1 forbids is refused with L{ProtocolViolation}: a document
type declaration (and with it every entity declaration, the root of
entity-expansion bombs), processing instructions and comments.  Undeclared
entity references are a well-formedness error in expat already.  L{Limits}
caps the size, element count and depth of each top-level element and the
bytes of a whole connection; exceeding one raises L{TooLarge}.  L{Budget}
counts the server data all parsers of the service hold.

This module is pure: no transport, no clock.
"""

from __future__ import annotations

import gc
import operator
import pyexpat

import attrs
from twisted.words.xish import domish

from .errors import ProtocolViolation, TooLarge

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_XML = "http://www.w3.org/XML/1998/namespace"
NS_ROSTER = "jabber:iq:roster"

# SPEC §1 --max-stanza-bytes: the largest element when a large one is awaited.
DEFAULT_MAX_STANZA_BYTES = 4 * 1024 * 1024
# SPEC §2: every element but a roster reply.
DEFAULT_MAX_ELEMENT_BYTES = 256 * 1024
# SPEC §1 --max-buffered-bytes: server data all probes together may hold.
DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024 * 1024
# The element count cap of a top-level element: one element per this many
# bytes of its byte cap (a roster item or group is never smaller).
BYTES_PER_ELEMENT = 16
# What one parsed element costs in memory beyond its bytes (measured: about
# 400 bytes for an empty element as a domish.Element), for L{Budget}.
ELEMENT_OVERHEAD = 400
# An unfinished token longer than this is not handed to expat again until the
# bytes held back are at least as many as the token (so rescans cost at most
# twice the input), or until L{XMLStreamParser.flush}.
DEFER_MIN = 8192


class Turns:
    """
    The parsing all connections of the service may do in one reactor turn
    together, shared equally by the connections with bytes waiting (the
    busy ones): so the more servers flood at once, the less each parses per
    turn, and a turn (and so C{/api/health} and every timeout) stays short.

    @ivar busy: the connections with bytes waiting for a later turn.
    """

    def __init__(self, round_bytes: int = 65536, round_elements: int = 2000):
        self.round_bytes = round_bytes
        self.round_elements = round_elements
        self.busy = 0

    def share(self, most_bytes: int, most_elements: int) -> tuple[int, int]:
        """
        The bytes and elements one connection may parse in this turn: an
        equal share of the round, at least 128 bytes and 16 elements, at most
        C{most_bytes} and C{most_elements}.
        """
        busy = max(1, self.busy)
        return (
            min(most_bytes, max(128, self.round_bytes // busy)),
            min(most_elements, max(16, self.round_elements // busy)),
        )


class Budget:
    """
    The server data all probes of the service together may hold
    (C{--max-buffered-bytes}): bytes received and not yet parsed, elements
    being built and parsed elements not yet taken, each element weighing its
    bytes plus L{ELEMENT_OVERHEAD}.  Each connection keeps one L{Charge}.

    @ivar used: bytes charged now.
    """

    def __init__(self, limit: int = DEFAULT_MAX_BUFFERED_BYTES):
        self.limit = limit
        self.used = 0

    def charge(self) -> Charge:
        """A new, empty charge on this budget."""
        return Charge(self)


class Charge:
    """One connection's share of a L{Budget}."""

    def __init__(self, budget: Budget):
        self._budget = budget
        self.held = 0

    def set(self, held: int) -> None:
        """
        Hold C{held} bytes from now on (more or fewer than before).

        @raise TooLarge: holding them would pass the budget; nothing more is
            charged then.
        """
        budget = self._budget
        grow = held - self.held
        if grow > 0 and budget.used + grow > budget.limit:
            raise TooLarge(
                f"The service holds too much server data: this probe's {held} bytes would "
                f"pass the service-wide budget of {budget.limit} bytes for all probes "
                "(--max-buffered-bytes)"
            )
        budget.used += grow
        self.held = held

    def release(self) -> None:
        """Hold nothing more."""
        self._budget.used -= self.held
        self.held = 0


@attrs.frozen
class Limits:
    """
    What one server may send on one probe, and what all may hold together.

    @ivar max_stanza_bytes: the largest top-level element when a large one is
        awaited (a roster reply), counted from its first byte to its last.
    @ivar max_element_bytes: the largest of every other top-level element
        (features, SASL, bind, disco, version, errors, messages).
    @ivar max_depth: the deepest nesting inside a top-level element.
    @ivar max_elements: the most elements inside one top-level element;
        C{None}: one per L{BYTES_PER_ELEMENT} bytes of the byte cap in force
        (at least 1000), which never stops a roster that fits the byte cap and
        bounds the CPU a stream of tiny elements can cost.
    @ivar max_total_elements: the most elements on one connection (default:
        twice the element count cap of C{max_stanza_bytes}).
    @ivar max_total_bytes: the most bytes read from one connection (default:
        four times C{max_stanza_bytes}, at least 16 MiB).
    @ivar budget: the service-wide L{Budget} (C{--max-buffered-bytes}).
    @ivar turns: the service-wide share of each reactor turn (L{Turns}).
    """

    max_stanza_bytes: int = DEFAULT_MAX_STANZA_BYTES
    max_element_bytes: int = attrs.field()
    max_depth: int = 64
    max_elements: int | None = None
    max_total_elements: int = attrs.field()
    max_total_bytes: int = attrs.field()
    budget: Budget = attrs.field(factory=Budget, eq=False)
    turns: Turns = attrs.field(factory=Turns, eq=False)

    @max_element_bytes.default
    def _default_element(self):
        return min(DEFAULT_MAX_ELEMENT_BYTES, self.max_stanza_bytes)

    @max_total_elements.default
    def _default_total_elements(self):
        return 2 * self.elements_for(self.max_stanza_bytes)

    @max_total_bytes.default
    def _default_total(self):
        return max(4 * self.max_stanza_bytes, 16 * 1024 * 1024)

    def elements_for(self, cap: int) -> int:
        """The element count cap of a top-level element whose byte cap is C{cap}."""
        if self.max_elements is not None:
            return self.max_elements
        return max(cap // BYTES_PER_ELEMENT, 1000)


@attrs.frozen
class StreamHeader:
    """
    The attributes of the server's C{<stream:stream>} open tag.

    @ivar default_ns: the stream's default namespace (C{jabber:client} for a
        client stream), or C{None} when the server declared none.
    """

    id: str | None
    from_: str | None
    to: str | None
    version: str | None
    lang: str | None
    default_ns: str | None


@attrs.frozen
class Stanza:
    """
    One complete top-level element.

    @ivar end_offset: the offset, in bytes since this stream (re)started, of
        the first byte of the element's end tag (or of the whole tag, for an
        empty-element tag).  Used to cut C{raw} at the end of an element.
    @ivar weight: what holding the element costs a L{Budget}.
    """

    element: domish.Element
    end_offset: int
    weight: int = 0


@attrs.frozen
class StreamEnd:
    """The server closed its stream with C{</stream:stream>}."""


class Contact(dict):
    """
    One roster item (RFC 6121 §2.1.2), as the parser reads it: the JSON
    object SPEC §5 shows for it (C{jid}, C{name}, C{subscription}, C{ask},
    C{groups}, a tuple), whose values are also its attributes.  Being that
    object already, a roster of them is encoded as it is.
    """

    __slots__ = ()

    jid = property(operator.itemgetter("jid"))
    name = property(operator.itemgetter("name"))
    subscription = property(operator.itemgetter("subscription"))
    ask = property(operator.itemgetter("ask"))
    groups = property(operator.itemgetter("groups"))


# The expanded names expat reports for a roster item and its groups.
_ROSTER_ITEM = NS_ROSTER + " item"
_ROSTER_GROUP = NS_ROSTER + " group"


class _Halt(Exception):
    """Raised inside an expat handler to stop parsing with a typed error."""

    def __init__(self, error):
        super().__init__(str(error))
        self.error = error


def _attributes(attrs_: dict) -> dict:
    """Expat's attributes as domish keeps them: C{(uri, name)} when namespaced."""
    if not attrs_:
        return {}
    attributes = {}
    for key, value in attrs_.items():
        auri, sep, alocal = key.rpartition(" ")
        attributes[(auri, alocal) if sep else key] = value
    return attributes


# Every handler L{XMLStreamParser} sets on expat's parser.
_HANDLERS = (
    "StartElementHandler",
    "EndElementHandler",
    "CharacterDataHandler",
    "StartNamespaceDeclHandler",
    "EndNamespaceDeclHandler",
    "StartDoctypeDeclHandler",
    "EntityDeclHandler",
    "ProcessingInstructionHandler",
    "CommentHandler",
    "UnparsedEntityDeclHandler",
    "ExternalEntityRefHandler",
)


class XMLStreamParser:
    """
    Parse one XML stream incrementally.  Call L{feed} with each chunk of
    bytes and then take the events from L{events}; call L{restart} when the
    stream restarts (after STARTTLS or SASL success, RFC 6120 §4.3.3).

    L{feed} may hold bytes back (L{deferred}) rather than make expat rescan a
    long unfinished token; L{flush} parses them whatever their size.  A caller
    that stops feeding while L{deferred} is not zero must call L{flush} later.

    After L{feed} raises, the parser is dead: every later call raises the
    same error.  Events parsed before the error are still in L{events}.

    With C{values} true, the items of a roster (the C{<item/>} children of
    a C{jabber:iq:roster} C{<query/>} child of a top-level element) are not
    built as elements: each becomes a L{Contact} as its end tag arrives,
    and the query element holds them, in document order, as its
    C{roster_items} list (read with L{roster_items}).  Limits count them
    as if they were built.  A caller that shows what it received as XML (a
    transcript) keeps C{values} false.

    @ivar large: whether the element being read may be as large as
        C{max_stanza_bytes} (a roster reply) rather than C{max_element_bytes}.
    @ivar total_elements: elements parsed on this connection.
    @ivar scanned: bytes expat was given to scan, counting each rescan of an
        unfinished token again (a work counter: linear in the input).
    """

    def __init__(self, limits: Limits | None = None, values: bool = False):
        self._limits = limits or Limits()
        self._values = values
        self.events: list = []
        self.total_bytes = 0
        self.total_elements = 0
        self.large = False
        self.scanned = 0
        self._error = None
        self._new_parser()

    # -- public

    @property
    def cap(self) -> int:
        """The byte cap of the top-level element being read."""
        limits = self._limits
        return limits.max_stanza_bytes if self.large else limits.max_element_bytes

    @property
    def deferred(self) -> int:
        """Bytes received and held back from expat (see L{flush})."""
        return len(self._pending)

    @property
    def unfinished(self) -> int:
        """The bytes of the unfinished token expat holds, as of the last parse."""
        return self._held

    @property
    def weight(self) -> int:
        """
        What this parser holds, for a L{Budget}: the bytes since the last
        complete top-level element (the one being built, and bytes held back)
        and the element nodes built so far.
        """
        return self._fed - self._boundary + self._count * ELEMENT_OVERHEAD

    def feed(self, data: bytes) -> None:
        """
        Parse C{data}, appending the events it completes to L{events}.

        @raise ProtocolViolation: not well-formed, not an XMPP stream, or a
            construct RFC 6120 §11.1 forbids.
        @raise TooLarge: a limit of L{Limits} was exceeded.
        """
        if self._error is not None:
            raise self._error
        if self._parser is None:
            return
        self.total_bytes += len(data)
        if self.total_bytes > self._limits.max_total_bytes:
            self._die(
                TooLarge(
                    f"Server sent more than {self._limits.max_total_bytes} bytes "
                    "on one connection"
                )
            )
        self._fed += len(data)
        self._pending += data
        if self._held <= DEFER_MIN or len(self._pending) >= self._held:
            self._parse()
        self._check_pending()

    def flush(self) -> None:
        """Parse the bytes L{feed} held back, if any."""
        if self._error is not None:
            raise self._error
        if self._pending and self._parser is not None:
            self._parse()
            self._check_pending()

    def restart(self) -> None:
        """
        Begin a new stream: the next bytes must start with a new
        C{<stream:stream>} header.  Events not yet taken are kept.
        """
        if self._error is not None:
            raise self._error
        if self._parser is None:
            return
        self._new_parser()

    def close(self) -> None:
        """
        Parse nothing more: drop expat's parser now.  Its handlers are this
        object's methods, a reference cycle that would keep expat's buffers
        until the garbage collector's next full pass.  Later calls of
        L{feed}, L{flush} and L{restart} do nothing.
        """
        parser, self._parser = self._parser, None
        if parser is not None:
            for name in _HANDLERS:
                try:
                    setattr(parser, name, None)
                except Exception:
                    # Replacing the text handler first hands it the text expat
                    # still buffers (which it may refuse); that done, again.
                    setattr(parser, name, None)
        self._pending = bytearray()
        self._stack = []
        self._texts = []

    # -- internals

    def _parse(self):
        data = bytes(self._pending)
        self._pending.clear()
        self._parsed += len(data)
        self.scanned += self._held + len(data)
        # Building a large tree allocates many container objects; with the
        # cyclic collector running, each full collection walks the whole tree
        # built so far, and the cost of a large roster grows faster than its
        # size.  Pause the collector for the duration of one chunk.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._parser.Parse(data, False)
        except _Halt as halt:
            self._die(halt.error)
        except pyexpat.ExpatError as e:
            self._die(
                ProtocolViolation(
                    f"Malformed XML from server: {pyexpat.ErrorString(e.code)}",
                    extra={"xmlError": {"line": e.lineno, "column": e.offset}},
                )
            )
        finally:
            if collecting:
                gc.enable()
        # After Parse returns, CurrentByteIndex is where expat stopped: the
        # first byte of the token it could not finish, which it rescans next.
        # Outside any element, everything before it is done with.
        stopped = self._parser.CurrentByteIndex
        self._held = self._parsed - stopped
        if not self._stack:
            self._boundary = stopped

    def _check_pending(self):
        pending = self._fed - self._boundary
        if pending > self.cap:
            self._die(self._element_too_large(pending))

    def _die(self, error):
        self._error = error
        # Nothing of the broken element is kept (nor charged to a budget).
        self._stack = []
        self._texts = []
        self._pending = bytearray()
        self._count = 0
        self._fed = self._boundary
        raise error

    def _count_error(self):
        if self.total_elements > self._limits.max_total_elements:
            return TooLarge(
                f"Server sent more than {self._limits.max_total_elements} elements "
                "on one connection"
            )
        return TooLarge(f"Server sent an element with more than {self._max_count} child elements")

    def _depth_error(self):
        return TooLarge(f"Server sent elements nested deeper than {self._limits.max_depth} levels")

    def _element_too_large(self, size):
        return TooLarge(
            f"Server sent an element larger than the limit of {self.cap} bytes "
            f"(at least {size} bytes)"
        )

    def _new_parser(self):
        p = pyexpat.ParserCreate("UTF-8", " ")
        p.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.buffer_text = True
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._text
        p.StartNamespaceDeclHandler = self._start_ns
        p.EndNamespaceDeclHandler = self._end_ns
        p.StartDoctypeDeclHandler = self._forbid_doctype
        p.EntityDeclHandler = self._forbid_entity
        p.ProcessingInstructionHandler = self._forbid_pi
        p.CommentHandler = self._forbid_comment
        p.UnparsedEntityDeclHandler = self._forbid_entity
        p.ExternalEntityRefHandler = self._forbid_external
        self._parser = p
        self._fed = 0
        self._parsed = 0
        self._held = 0
        self._pending = bytearray()
        self._boundary = 0
        self._in_stream = False
        self._stack: list[domish.Element] = []
        self._texts: list[list[str]] = []
        self._count = 0
        self._max_count = 0
        self._start_offset = 0
        self._default_ns = [None]
        self._prefixes: dict = {}

    def _forbid_doctype(self, *args):
        raise _Halt(
            ProtocolViolation(
                "Server sent an XML document type declaration (DOCTYPE), "
                "which XMPP forbids (RFC 6120 §11.1)"
            )
        )

    def _forbid_entity(self, *args):
        raise _Halt(
            ProtocolViolation(
                "Server sent an XML entity declaration, which XMPP forbids (RFC 6120 §11.1)"
            )
        )

    def _forbid_external(self, *args):
        raise _Halt(
            ProtocolViolation(
                "Server referenced an external XML entity, which XMPP forbids (RFC 6120 §11.1)"
            )
        )

    def _forbid_pi(self, target, data):
        raise _Halt(
            ProtocolViolation(
                f"Server sent an XML processing instruction <?{target[:40]}?>, which XMPP "
                "forbids (RFC 6120 §11.1)"
            )
        )

    def _forbid_comment(self, data):
        raise _Halt(
            ProtocolViolation("Server sent an XML comment, which XMPP forbids (RFC 6120 §11.1)")
        )

    # Namespace declarations cost constant time each: the default namespace
    # is a stack pushed and popped by expat's own pairing of start and end
    # declarations, and prefixes declared on an element go to that element
    # alone (as domish's localPrefixes); nothing is copied per element.

    def _start_ns(self, prefix, uri):
        if prefix is None:
            self._default_ns.append(uri)
        else:
            self._prefixes[prefix] = uri

    def _end_ns(self, prefix):
        if prefix is None:
            self._default_ns.pop()

    def _start(self, name, attrs_):
        uri, sep, local = name.rpartition(" ")
        uri = uri if sep else None
        prefixes, self._prefixes = self._prefixes, {}
        if not self._in_stream:
            attributes = _attributes(attrs_)
            if (uri, local) != (NS_STREAMS, "stream"):
                raise _Halt(
                    ProtocolViolation(
                        "Server did not open an XMPP stream: expected <stream:stream>, "
                        f"got <{local[:64]}>"
                    )
                )
            self._in_stream = True
            self._boundary = self._parser.CurrentByteIndex
            self.events.append(
                StreamHeader(
                    id=attributes.get("id"),
                    from_=attributes.get("from"),
                    to=attributes.get("to"),
                    version=attributes.get("version"),
                    lang=attributes.get((NS_XML, "lang")),
                    default_ns=self._default_ns[-1],
                )
            )
            return
        stack = self._stack
        if not stack:
            self._count = 0
            self._max_count = self._limits.elements_for(self.cap)
            self._start_offset = self._parser.CurrentByteIndex
        self._count += 1
        self.total_elements += 1
        if self.total_elements > self._limits.max_total_elements or self._count > self._max_count:
            raise _Halt(self._count_error())
        if len(stack) >= self._limits.max_depth:
            raise _Halt(self._depth_error())
        element = domish.Element(
            (uri, local), self._default_ns[-1], _attributes(attrs_), prefixes
        )
        if stack:
            parent = stack[-1]
            self._flush_text(parent)
            # No element.parent back-reference: without it a tree is freed by
            # reference counting alone, as soon as the flow drops it.
            parent.children.append(element)
            if self._values and local == "query" and uri == NS_ROSTER and len(stack) == 1:
                self._begin_roster(element)
        stack.append(element)
        self._texts.append([])

    # A roster query's items are read by handlers of their own (L{values}):
    # they build no element, only a Contact per item, and cost a few
    # comparisons per event.

    def _begin_roster(self, query):
        """C{query} (a roster query) opens: read its items as values."""
        query.roster_items = self._items = []
        self._rdepth = 0
        # The query goes on the stack next: what depth its descendants may reach.
        self._rmax = self._limits.max_depth - len(self._stack) - 1
        self._item = None
        self._group = None
        p = self._parser
        p.StartElementHandler = self._roster_start
        p.EndElementHandler = self._roster_end
        p.CharacterDataHandler = self._roster_text

    def _roster_start(self, name, attrs_):
        if self._prefixes:
            self._prefixes = {}
        self._count += 1
        self.total_elements += 1
        if self.total_elements > self._limits.max_total_elements or self._count > self._max_count:
            raise _Halt(self._count_error())
        depth = self._rdepth
        if depth >= self._rmax:
            raise _Halt(self._depth_error())
        self._rdepth = depth + 1
        if depth == 0:
            if name == _ROSTER_ITEM:
                self._item = attrs_
                self._groups = []
            else:
                self._item = None
        elif depth == 1 and name == _ROSTER_GROUP and self._item is not None:
            self._group = []

    def _roster_end(self, name):
        depth = self._rdepth = self._rdepth - 1
        if depth == 1:
            group = self._group
            if group is not None:
                self._groups.append("".join(group))
                self._group = None
        elif depth == 0:
            item = self._item
            if item is not None:
                self._item = None
                jid = item.get("jid")
                if jid:
                    self._items.append(
                        Contact(
                            jid=jid,
                            name=item.get("name"),
                            subscription=item.get("subscription") or "none",
                            ask=item.get("ask"),
                            groups=tuple(self._groups),
                        )
                    )
        elif depth < 0:
            # The query's own end tag: back to building elements.
            p = self._parser
            p.StartElementHandler = self._start
            p.EndElementHandler = self._end
            p.CharacterDataHandler = self._text
            self._items = None
            self._end(name)

    def _roster_text(self, data):
        if self._group is not None and self._rdepth == 2:
            self._group.append(data)

    def _flush_text(self, element):
        texts = self._texts[-1]
        if texts:
            element.children.append("".join(texts))
            texts.clear()

    def _end(self, name):
        if not self._stack:
            # </stream:stream>
            self._in_stream = False
            self.events.append(StreamEnd())
            return
        element = self._stack.pop()
        self._flush_text(element)
        self._texts.pop()
        if not self._stack:
            end = self._parser.CurrentByteIndex
            size = end - self._start_offset
            if size > self.cap:
                raise _Halt(self._element_too_large(size))
            self._boundary = end
            self.events.append(Stanza(element, end, size + self._count * ELEMENT_OVERHEAD))
            self._count = 0

    def _text(self, data):
        if self._texts:
            self._texts[-1].append(data)
        elif self._in_stream and not data.isspace():
            raise _Halt(
                ProtocolViolation(
                    "Server sent text outside any stanza (only whitespace is allowed "
                    "between stanzas, RFC 6120 §11.7)"
                )
            )


def roster_items(query: domish.Element) -> list[Contact] | None:
    """
    The L{Contact}s a parser with C{values} read from the roster query
    C{query}, or C{None} when its items were built as elements.
    """
    return query.__dict__.get("roster_items")
