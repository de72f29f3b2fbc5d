"""
An incremental XML stream parser for XMPP (RFC 6120 §4 and §11).

Bytes go in, in any chunking; out come events, identical whatever the chunk
boundaries:

 - L{StreamHeader} for the opening C{<stream:stream>} tag,
 - L{Stanza} for each complete top-level element (a C{domish.Element}),
 - L{StreamEnd} for C{</stream:stream>}.

The parser is expat (C{pyexpat}), fed incrementally, so the cost of a large
element grows linearly with its size.  What RFC 6120 §11.1 forbids is refused
with L{ProtocolViolation}: a document type declaration (and with it every
entity declaration, the root of entity-expansion bombs), processing
instructions and comments.  Undeclared entity references are a well-formedness
error in expat already.  L{Limits} caps the size, element count and depth of
each top-level element and the bytes of a whole connection; exceeding one
raises L{TooLarge}.

This module is pure: no transport, no clock.
"""

from __future__ import annotations

import gc
import pyexpat

import attrs
from twisted.words.xish import domish

from .errors import ProtocolViolation, TooLarge

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_XML = "http://www.w3.org/XML/1998/namespace"

DEFAULT_MAX_STANZA_BYTES = 4 * 1024 * 1024


@attrs.frozen
class Limits:
    """
    What one server may send on one probe.

    @ivar max_element_bytes: the largest top-level element (stanza, features
        block), counted from its first byte to its last.
    @ivar max_depth: the deepest nesting inside a top-level element.
    @ivar max_elements: the most elements inside one top-level element
        (default: one per 16 bytes of C{max_element_bytes}: a roster item or
        group is never smaller, so this never stops a roster that fits the
        byte cap, and it bounds the CPU a stream of tiny elements can cost).
    @ivar max_total_elements: the most elements on one connection (default:
        twice C{max_elements}).
    @ivar max_total_bytes: the most bytes read from one connection (default:
        four times C{max_element_bytes}, at least 16 MiB).
    """

    max_element_bytes: int = DEFAULT_MAX_STANZA_BYTES
    max_depth: int = 64
    max_elements: int = attrs.field()
    max_total_elements: int = attrs.field()
    max_total_bytes: int = attrs.field()

    @max_elements.default
    def _default_elements(self):
        return max(self.max_element_bytes // 16, 1000)

    @max_total_elements.default
    def _default_total_elements(self):
        return 2 * self.max_elements

    @max_total_bytes.default
    def _default_total(self):
        return max(4 * self.max_element_bytes, 16 * 1024 * 1024)


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
    """

    element: domish.Element
    end_offset: int


@attrs.frozen
class StreamEnd:
    """The server closed its stream with C{</stream:stream>}."""


class _Halt(Exception):
    """Raised inside an expat handler to stop parsing with a typed error."""

    def __init__(self, error):
        super().__init__(str(error))
        self.error = error


class XMLStreamParser:
    """
    Parse one XML stream incrementally.  Call L{feed} with each chunk of
    bytes and then take the events from L{events}; call L{restart} when the
    stream restarts (after STARTTLS or SASL success, RFC 6120 §4.3.3).

    After L{feed} raises, the parser is dead: every later call raises the
    same error.  Events parsed before the error are still in L{events}.
    """

    def __init__(self, limits: Limits | None = None):
        self._limits = limits or Limits()
        self.events: list = []
        self.total_bytes = 0
        self.total_elements = 0
        self._error = None
        self._new_parser()

    # -- public

    def feed(self, data: bytes) -> None:
        """
        Parse C{data}, appending the events it completes to L{events}.

        @raise ProtocolViolation: not well-formed, not an XMPP stream, or a
            construct RFC 6120 §11.1 forbids.
        @raise TooLarge: a limit of L{Limits} was exceeded.
        """
        if self._error is not None:
            raise self._error
        self.total_bytes += len(data)
        if self.total_bytes > self._limits.max_total_bytes:
            self._die(
                TooLarge(
                    "Server sent more than %d bytes on one connection"
                    % (self._limits.max_total_bytes,)
                )
            )
        self._fed += len(data)
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
                    "Malformed XML from server: %s" % (pyexpat.ErrorString(e.code),),
                    extra={"xmlError": {"line": e.lineno, "column": e.offset}},
                )
            )
        finally:
            if collecting:
                gc.enable()
        pending = self._fed - self._boundary
        if pending > self._limits.max_element_bytes:
            self._die(self._element_too_large(pending))

    def restart(self) -> None:
        """
        Begin a new stream: the next bytes must start with a new
        C{<stream:stream>} header.  Events not yet taken are kept.
        """
        if self._error is not None:
            raise self._error
        self._new_parser()

    # -- internals

    def _die(self, error):
        self._error = error
        raise error

    def _element_too_large(self, size):
        return TooLarge(
            "Server sent an element larger than the limit of %d bytes (at least %d bytes)"
            % (self._limits.max_element_bytes, size)
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
        self._boundary = 0
        self._in_stream = False
        self._stack: list[domish.Element] = []
        self._texts: list[list[str]] = []
        self._count = 0
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
                "Server sent an XML processing instruction <?%s?>, which XMPP forbids "
                "(RFC 6120 §11.1)" % (target[:40],)
            )
        )

    def _forbid_comment(self, data):
        raise _Halt(
            ProtocolViolation("Server sent an XML comment, which XMPP forbids (RFC 6120 §11.1)")
        )

    def _start_ns(self, prefix, uri):
        if prefix is None:
            self._default_ns.append(uri)
        else:
            self._prefixes[prefix] = uri

    def _end_ns(self, prefix):
        if prefix is None:
            self._default_ns.pop()

    @staticmethod
    def _qname(name):
        uri, sep, local = name.rpartition(" ")
        return (uri if sep else None), local

    def _start(self, name, attrs_):
        uri, local = self._qname(name)
        attributes = {}
        for key, value in attrs_.items():
            if " " in key:
                auri, alocal = key.rsplit(" ", 1)
                attributes[(auri, alocal)] = value
            else:
                attributes[key] = value
        prefixes, self._prefixes = self._prefixes, {}
        if not self._in_stream:
            if (uri, local) != (NS_STREAMS, "stream"):
                raise _Halt(
                    ProtocolViolation(
                        "Server did not open an XMPP stream: expected <stream:stream>, got <%s>"
                        % (local[:64],)
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
        if not self._stack:
            self._count = 0
            self._start_offset = self._parser.CurrentByteIndex
        self._count += 1
        self.total_elements += 1
        if self.total_elements > self._limits.max_total_elements:
            raise _Halt(
                TooLarge(
                    "Server sent more than %d elements on one connection"
                    % (self._limits.max_total_elements,)
                )
            )
        if self._count > self._limits.max_elements:
            raise _Halt(
                TooLarge(
                    "Server sent an element with more than %d child elements"
                    % (self._limits.max_elements,)
                )
            )
        if len(self._stack) >= self._limits.max_depth:
            raise _Halt(
                TooLarge(
                    "Server sent elements nested deeper than %d levels" % (self._limits.max_depth,)
                )
            )
        element = domish.Element((uri, local), self._default_ns[-1], attributes, prefixes)
        if self._stack:
            parent = self._stack[-1]
            self._flush_text(parent)
            # No element.parent back-reference: without it a tree is freed by
            # reference counting alone, as soon as the flow drops it.
            parent.children.append(element)
        self._stack.append(element)
        self._texts.append([])

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
            if size > self._limits.max_element_bytes:
                raise _Halt(self._element_too_large(size))
            self._boundary = end
            self.events.append(Stanza(element, end))

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
