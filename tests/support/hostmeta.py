"""
A small HTTPS server for XEP-0156 tests: it answers every path from a table
the test sets (L{HostMetaServer.documents}), with the test CA's C{localhost}
certificate, on C{127.0.0.1:443} (the port discovery dials: the tests run as
root), so that the domain C{localhost} has host-meta documents.

    server = start_host_meta_server(reactor, session_certs().localhost)
    server.documents = {"/.well-known/host-meta": (200, {"Content-Type": "application/xrd+xml"},
                                                   xrd(websocket=["ws://..."]))}
"""

from __future__ import annotations

import json

from OpenSSL import crypto
from twisted.internet import ssl
from twisted.web import resource, server

HTTPS_PORT = 443
XRD_PATH = "/.well-known/host-meta"
JSON_PATH = "/.well-known/host-meta.json"
WS_REL = "urn:xmpp:alt-connections:websocket"
BOSH_REL = "urn:xmpp:alt-connections:xbosh"


def xrd(websocket=(), bosh=()) -> bytes:
    """An XRD host-meta document with these links."""
    links = [(WS_REL, url) for url in websocket] + [(BOSH_REL, url) for url in bosh]
    body = "".join(f'  <Link rel="{rel}" href="{href}"/>\n' for rel, href in links)
    return (
        "<?xml version='1.0' encoding='utf-8'?>\n"
        "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n"
        f"{body}</XRD>\n"
    ).encode()


def jrd(websocket=(), bosh=()) -> bytes:
    """A JSON host-meta document with these links."""
    links = [{"rel": WS_REL, "href": url} for url in websocket]
    links += [{"rel": BOSH_REL, "href": url} for url in bosh]
    return json.dumps({"links": links}).encode()


def both(websocket=(), bosh=(), cors="*") -> dict:
    """A table serving both documents with these links (and this CORS header, if any)."""
    headers = {"Access-Control-Allow-Origin": cors} if cors else {}
    return {
        XRD_PATH: (200, {"Content-Type": "application/xrd+xml", **headers}, xrd(websocket, bosh)),
        JSON_PATH: (200, {"Content-Type": "application/json", **headers}, jrd(websocket, bosh)),
    }


class _Table(resource.Resource):
    isLeaf = True

    def __init__(self, owner):
        super().__init__()
        self._owner = owner

    def render(self, request):
        path = request.path.decode()
        self._owner.requests.append(path)
        status, headers, body = self._owner.documents.get(path, (404, {}, b"not found"))
        request.setResponseCode(status)
        for name, value in headers.items():
            request.setHeader(name, value)
        return body


class HostMetaServer:
    """
    @ivar documents: path -> C{(status, headers, body)}; others are 404.
    @ivar requests: the paths asked for, in order.
    """

    def __init__(self):
        self.documents: dict = {}
        self.requests: list[str] = []
        self.port = None

    def stop(self):
        return self.port.stopListening()


def tls_options(issued) -> ssl.CertificateOptions:
    """Server TLS options sending the leaf and its intermediates."""
    key = crypto.PKey.from_cryptography_key(issued.key)
    cert = crypto.X509.from_cryptography(issued.cert)
    chain = [crypto.X509.from_cryptography(c) for c in issued.chain]
    return ssl.CertificateOptions(privateKey=key, certificate=cert, extraCertChain=chain)


def start_host_meta_server(reactor, issued, port: int = HTTPS_PORT) -> HostMetaServer:
    """Listen on C{127.0.0.1:port} with C{issued}'s certificate."""
    owner = HostMetaServer()
    site = server.Site(_Table(owner))
    site.noisy = False
    owner.port = reactor.listenSSL(port, site, tls_options(issued), interface="127.0.0.1")
    return owner
