"""
POST /api/xmpp/discover over HTTP: the service (with --ca-file naming the
test CA) fetches the host-meta documents of the domain C{localhost} from a
small HTTPS server on 127.0.0.1:443 (tests/support/hostmeta.py).
"""

import json

import pytest
import pytest_twisted
import treq
from certs import session_certs
from conftest import start_service
from hostmeta import JSON_PATH, XRD_PATH, both, start_host_meta_server
from test_openapi import Schemas

from portofcall_xmpp import openapi

WS = "wss://localhost:5281/xmpp-websocket"
BOSH = "https://localhost:5281/http-bind"


@pytest.fixture(scope="module")
def host_meta():
    from twisted.internet import reactor

    try:
        server = start_host_meta_server(reactor, session_certs().localhost)
    except Exception as e:  # not root, or 443 taken
        pytest.skip(f"cannot listen on 127.0.0.1:443: {e}")
    try:
        yield server
    finally:
        pytest_twisted.blockon(server.stop())


@pytest.fixture(scope="module")
def services():
    ca = str(session_certs().ca_path)
    trusting = start_service("--allow-private", "--ca-file", ca, "--read-timeout", "3000")
    untrusting = start_service("--allow-private", "--read-timeout", "3000")
    strict = start_service("--ca-file", ca)
    try:
        yield trusting, untrusting, strict
    finally:
        trusting.stop()
        untrusting.stop()
        strict.stop()


async def post(service, body):
    """POST /api/xmpp/discover; the answer must match the document for its status."""
    response = await treq.post(service.url("/api/xmpp/discover"), json=body)
    answer = json.loads(await response.content())
    schemas = Schemas(openapi.document())
    schema = schemas.response("/api/xmpp/discover", "post", response.code)
    assert schemas.problems(answer, schema["content"]["application/json"]["schema"]) == []
    return response.code, answer


@pytest_twisted.ensureDeferred
async def test_both_documents_links_and_cors(host_meta, services):
    """Both documents are fetched; their links, status, content type and CORS are reported."""
    host_meta.documents = both(websocket=[WS], bosh=[BOSH])
    status, body = await post(services[0], {"domain": "localhost"})
    assert status == 200, body
    assert body["success"] is True
    assert body["websocket"] == [WS]
    assert body["bosh"] == [BOSH]
    xrd, jrd = body["hostMeta"], body["hostMetaJson"]
    assert xrd["url"] == "https://localhost/.well-known/host-meta"
    assert (xrd["status"], xrd["contentType"], xrd["cors"]) == (200, "application/xrd+xml", "*")
    assert (jrd["status"], jrd["contentType"]) == (200, "application/json")
    assert xrd["error"] is None and jrd["error"] is None
    assert xrd["tls"]["certificate"]["verified"] is True


@pytest.fixture
def served(host_meta):
    host_meta.requests.clear()
    return host_meta


@pytest_twisted.ensureDeferred
async def test_redirect_reported_not_followed(served, services):
    """A redirect is reported with its Location, and not followed."""
    served.documents = {
        XRD_PATH: (301, {"Location": "https://localhost/elsewhere"}, b""),
        JSON_PATH: (302, {"Location": "https://localhost/elsewhere.json"}, b""),
        "/elsewhere": both(websocket=[WS])[XRD_PATH],
    }
    status, body = await post(services[0], {"domain": "localhost"})
    assert status == 200
    xrd = body["hostMeta"]
    assert (xrd["status"], xrd["location"]) == (301, "https://localhost/elsewhere")
    assert xrd["errorType"] == "protocol" and "redirects" in xrd["error"]
    assert body["hostMetaJson"]["location"] == "https://localhost/elsewhere.json"
    assert body["websocket"] == []
    assert served.requests == [XRD_PATH, JSON_PATH]


@pytest_twisted.ensureDeferred
async def test_missing_documents(served, services):
    """Without host-meta, each document reports its 404 and there are no links."""
    served.documents = {}
    status, body = await post(services[0], {"domain": "localhost"})
    assert status == 200
    assert body["hostMeta"]["status"] == 404
    assert body["hostMetaJson"]["status"] == 404
    assert (body["websocket"], body["bosh"]) == ([], [])


@pytest_twisted.ensureDeferred
async def test_untrusted_certificate_gives_no_links(served, services):
    """Without --ca-file the certificate does not verify: errorType tls, no links taken."""
    served.documents = both(websocket=[WS], bosh=[BOSH])
    status, body = await post(services[1], {"domain": "localhost"})
    assert status == 200
    for document in (body["hostMeta"], body["hostMetaJson"]):
        assert document["errorType"] == "tls"
        assert document["tls"]["certificate"]["verified"] is False
    assert (body["websocket"], body["bosh"]) == ([], [])


@pytest_twisted.ensureDeferred
async def test_garbage_documents(served, services):
    """A DTD in the XRD and a JSON that is not JSON are protocol errors of their document."""
    served.documents = {
        XRD_PATH: (200, {}, b'<!DOCTYPE x [<!ENTITY a "b">]><XRD/>'),
        JSON_PATH: (200, {}, b"[" * 100000),
    }
    status, body = await post(services[0], {"domain": "localhost"})
    assert status == 200
    assert body["hostMeta"]["errorType"] == "protocol"
    assert body["hostMetaJson"]["errorType"] == "protocol"


@pytest_twisted.ensureDeferred
async def test_huge_document_is_too_large(served, services):
    """A body over the cap is not read whole: errorType too_large."""
    served.documents = {XRD_PATH: (200, {}, b" " * (5 * 1024 * 1024))}
    status, body = await post(services[0], {"domain": "localhost"})
    assert status == 200
    assert body["hostMeta"]["errorType"] == "too_large"


@pytest_twisted.ensureDeferred
async def test_private_destination_refused(services):
    """Without --allow-private, a domain resolving to loopback is refused with 403."""
    status, body = await post(services[2], {"domain": "localhost"})
    assert status == 403
    assert body["blocked"] is True


@pytest_twisted.ensureDeferred
async def test_missing_domain(services):
    """A request without domain is a 400."""
    status, body = await post(services[0], {})
    assert status == 400
    assert "domain" in body["error"]
