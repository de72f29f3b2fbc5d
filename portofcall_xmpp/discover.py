"""
XEP-0156 discovery: the WebSocket and BOSH URLs a domain advertises in its
host-meta documents.

Both documents, C{https://<domain>/.well-known/host-meta} (XRD, XML) and
C{…/host-meta.json} (JRD), are fetched over HTTPS through
L{httpagent.HTTPClient} (the destination policy, one resolution, the
certificate verified for the domain with the service's trust roots), one
after the other, each within the per-read timeout.  Redirects are reported,
not followed.  The XRD is parsed with the service's bounded XML parser (no
DTD, no entities: L{stream.XMLStreamParser}), the JSON from a body of at
most L{httpagent.MAX_BODY_BYTES}.

A document that cannot be fetched or read is reported with its
C{error}/C{errorType}; discovery itself only fails as a whole on the
overall timeout (or with a 403 for a blocked destination).
"""

from __future__ import annotations

import json
import re

import attrs
from twisted.internet.defer import Deferred
from twisted.web.http_headers import Headers

from . import tlsinfo
from .errors import FlowTimeout, ProbeError, ProtocolViolation, ReadTimeout
from .flows import Failed, Trace
from .httpagent import HTTPClient, HTTPResponse
from .stream import NS_STREAMS, Limits, Stanza, XMLStreamParser

REL_WEBSOCKET = "urn:xmpp:alt-connections:websocket"
REL_BOSH = "urn:xmpp:alt-connections:xbosh"
NS_XRD = "http://docs.oasis-open.org/ns/xri/xrd-1.0"

XRD_PATH = "/.well-known/host-meta"
JSON_PATH = "/.well-known/host-meta.json"

# An XML declaration may open the document; the stream parser, which reads
# the document inside a stream of its own, must not see it there.
_XML_DECLARATION = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*<\?xml[^>]{0,200}\?>")
_WRAP_OPEN = f"<stream:stream xmlns:stream='{NS_STREAMS}'>".encode()


@attrs.frozen
class Links:
    """The alternative connection methods of one document, in its order."""

    websocket: tuple[str, ...] = ()
    bosh: tuple[str, ...] = ()


@attrs.frozen
class HostMetaDocument:
    """
    One host-meta document as fetched.

    @ivar status: the HTTP status, or L{None} when none came.
    @ivar location: the C{Location} of a redirect (not followed).
    @ivar cors: the C{Access-Control-Allow-Origin} header, or L{None}.
    @ivar error: why the document gave no links (a failure, a status that
        is not 200, a body that does not parse), with C{error_type}.
    """

    url: str
    status: int | None = None
    content_type: str | None = None
    location: str | None = None
    cors: str | None = None
    links: Links = Links()
    tls: tlsinfo.TLSReport | None = None
    error: str | None = None
    error_type: str | None = None


@attrs.frozen
class DiscoverResult:
    """The outcome of L{discover}: both documents, and the links of both."""

    domain: str
    xrd: HostMetaDocument
    json: HostMetaDocument
    elapsed: float

    @property
    def websocket(self) -> tuple[str, ...]:
        return _union(self.xrd.links.websocket, self.json.links.websocket)

    @property
    def bosh(self) -> tuple[str, ...]:
        return _union(self.xrd.links.bosh, self.json.links.bosh)


def _union(*groups) -> tuple[str, ...]:
    return tuple(dict.fromkeys(url for group in groups for url in group))


def parse_xrd(body: bytes, limits: Limits | None = None) -> Links:
    """
    The links of an XRD host-meta document (RFC 6415), read with the bounded
    stream parser.

    @raise ProtocolViolation: not well-formed, a DTD or entity, not an XRD.
    @raise TooLarge: beyond the parser's element limits.
    """
    declaration = _XML_DECLARATION.match(body)
    if declaration is not None:
        body = body[declaration.end() :]
    parser = XMLStreamParser(limits)
    parser.feed(_WRAP_OPEN)
    parser.feed(body)
    parser.flush()
    roots = [event.element for event in parser.events if isinstance(event, Stanza)]
    if len(roots) != 1 or roots[0].name != "XRD" or roots[0].uri != NS_XRD:
        raise ProtocolViolation("host-meta is not one XRD document")
    pairs = []
    for link in roots[0].elements(NS_XRD, "Link"):
        pairs.append((link.getAttribute("rel"), link.getAttribute("href")))
    return _links(pairs)


def parse_jrd(body: bytes) -> Links:
    """
    The links of a JSON host-meta document (RFC 6415 appendix A).

    @raise ProtocolViolation: not JSON, or no C{links} array.
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise ProtocolViolation("host-meta.json is not JSON") from e
    links = document.get("links") if isinstance(document, dict) else None
    if not isinstance(links, list):
        raise ProtocolViolation("host-meta.json has no links array")
    pairs = [(link.get("rel"), link.get("href")) for link in links if isinstance(link, dict)]
    return _links(pairs)


def _links(pairs) -> Links:
    websocket, bosh = [], []
    for rel, href in pairs:
        if not isinstance(href, str) or not href:
            continue
        if rel == REL_WEBSOCKET:
            websocket.append(href)
        elif rel == REL_BOSH:
            bosh.append(href)
    return Links(tuple(dict.fromkeys(websocket)), tuple(dict.fromkeys(bosh)))


async def fetch(env, client: HTTPClient, url: str, parse) -> HostMetaDocument:
    """
    Fetch one document within the per-read timeout and read its links.

    @raise DestinationBlocked: the policy refused the host (the caller's 403).
    """
    d = Deferred.fromCoroutine(
        client.request(b"GET", url, Headers({"Accept": ["*/*"], "User-Agent": ["portofcall"]}))
    )

    def on_timeout(result, timeout):
        raise ReadTimeout(f"No answer from {url} within {round(timeout * 1000)} ms")

    d.addTimeout(env.read_timeout, env.clock, onTimeoutCancel=on_timeout)
    try:
        response: HTTPResponse = await d
    except ProbeError as e:
        return HostMetaDocument(url, error=str(e), error_type=e.error_type, tls=client.tls_report())
    seen = {
        "url": url,
        "status": response.status,
        "content_type": response.content_type,
        "location": response.location,
        "cors": response.header("Access-Control-Allow-Origin"),
        "tls": client.tls_report(),
    }
    try:
        client.check_certificates()
        if response.status != 200:
            where = f" to {response.location}" if response.location else ""
            how = "redirects" if 300 <= response.status < 400 else "answers"
            raise ProtocolViolation(f"{url} {how}{where} (HTTP {response.status})")
        links = parse(response.body)
    except ProbeError as e:
        return HostMetaDocument(**seen, error=str(e), error_type=e.error_type)
    return HostMetaDocument(**seen, links=links)


async def host_meta(env, domain: str) -> tuple[HostMetaDocument, HostMetaDocument]:
    """
    Both host-meta documents of C{domain}, from one HTTPS client (one
    resolution of C{domain}).

    @raise DestinationBlocked: the policy refused C{domain}.
    """
    client = HTTPClient(env)
    base = f"https://{_url_host(domain)}"
    xrd = await fetch(env, client, base + XRD_PATH, lambda body: parse_xrd(body, env.limits))
    jrd = await fetch(env, client, base + JSON_PATH, parse_jrd)
    return xrd, jrd


async def first_link(env, domain: str, kind: str) -> str:
    """
    The first C{kind} (C{"websocket"} or C{"bosh"}) link of C{domain}'s
    host-meta documents.

    @raise ProtocolViolation: neither document names one.
    @raise DestinationBlocked: the policy refused C{domain}.
    """
    xrd, jrd = await host_meta(env, domain)
    found = getattr(DiscoverResult(domain, xrd, jrd, 0.0), kind)
    if not found:
        name = {"websocket": "WebSocket", "bosh": "BOSH"}[kind]
        raise ProtocolViolation(f"No {name} URL found in the host-meta documents of {domain}")
    return found[0]


def _url_host(domain: str) -> str:
    return f"[{domain}]" if ":" in domain else domain


def discover(env, req, started: float | None = None) -> Deferred:
    """
    C{POST /api/xmpp/discover}: both host-meta documents of C{req.domain}
    within C{req.timeout}.

    @return: a Deferred firing with a L{DiscoverResult}, or failing with
        L{flows.Failed} (C{timeout}) or L{DestinationBlocked}.
    """
    started = env.clock.seconds() if started is None else started
    trace = Trace(env.clock, started, False)

    async def run():
        xrd, jrd = await host_meta(env, req.domain)
        return DiscoverResult(req.domain, xrd, jrd, env.clock.seconds() - started)

    def on_timeout(result, timeout):
        raise FlowTimeout(
            f"Connection timeout: discovery did not finish within {round(req.timeout * 1000)} ms"
        )

    def failed(failure):
        failure.trap(ProbeError)
        raise Failed(failure.value, trace)

    d = Deferred.fromCoroutine(run())
    d.addTimeout(req.timeout, env.clock, onTimeoutCancel=on_timeout)
    return d.addErrback(failed)
