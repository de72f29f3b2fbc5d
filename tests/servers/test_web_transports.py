"""
POST /api/xmpp/websocket and /api/xmpp/bosh against a real Prosody with
mod_websocket and mod_bosh on its loopback HTTP (and HTTPS) port: the
stream, logins with PLAIN and SCRAM, a wrong password, the password rule.
"""

import json

import pytest
import pytest_twisted
import treq
from certs import session_certs
from conftest import start_service
from prosody import ACCOUNTS, DOMAIN, start_web_server

USER = "alice"


@pytest.fixture(scope="module")
def web_prosody(prosody_installed, tmp_path_factory):
    """Prosody with WebSocket and BOSH on HTTP and HTTPS (the test CA's localhost certificate)."""
    leaf = session_certs().localhost
    server, http_port, https_port = start_web_server(
        tmp_path_factory.mktemp("prosody-web"), https=(leaf.fullchain_path, leaf.key_path)
    )
    try:
        yield http_port, https_port
    finally:
        server.stop()


@pytest.fixture(scope="module")
def web_service():
    service = start_service(
        "--allow-private", "--ca-file", str(session_certs().ca_path), "--read-timeout", "3000"
    )
    try:
        yield service
    finally:
        service.stop()


async def post(service, endpoint, body):
    response = await treq.post(service.url(f"/api/xmpp/{endpoint}"), json=body)
    return response.code, json.loads(await response.content())


def ws_url(port, scheme="ws"):
    return f"{scheme}://localhost:{port}/xmpp-websocket"


PASSWORD = ACCOUNTS[DOMAIN][USER]


@pytest_twisted.ensureDeferred
async def test_websocket_stream_only(web_prosody, web_service):
    """Without credentials: the upgrade, the xmpp subprotocol, <open/> and the features."""
    status, body = await post(web_service, "websocket", {"url": ws_url(web_prosody[0])})
    assert status == 200, body
    assert body["success"] is True, body
    assert body["transport"]["httpStatus"] == 101
    assert body["transport"]["subprotocol"] == "xmpp"
    assert body["transport"]["tls"] is None
    assert body["serverFrom"] == DOMAIN
    assert "PLAIN" in body["saslMechanisms"]
    assert body["phases"] == ["stream_opened"]
    assert body["jid"] is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
@pytest_twisted.ensureDeferred
async def test_websocket_login(web_prosody, web_service, mechanism):
    """A login over ws:// (the caller's explicit plaintext) with the /login phases."""
    body = {
        "url": ws_url(web_prosody[0]),
        "username": USER,
        "password": PASSWORD,
        "mechanism": mechanism,
        "transcript": True,
    }
    status, answer = await post(web_service, "websocket", body)
    assert status == 200, answer
    assert answer["success"] is True, answer
    assert answer["mechanism"] == mechanism
    assert answer["jid"].startswith(f"{USER}@{DOMAIN}/")
    sent = f"sasl_{mechanism.lower().replace('-', '_')}_sent"
    assert answer["phases"][:5] == [
        "stream_opened",
        sent,
        "authenticated",
        "stream_restarted",
        "resource_bound",
    ]
    assert PASSWORD not in json.dumps(answer)


@pytest_twisted.ensureDeferred
async def test_websocket_wrong_password(web_prosody, web_service):
    """A refused password is errorType sasl with the server's condition, as /login."""
    body = {"url": ws_url(web_prosody[0]), "username": USER, "password": "wrong-password-1"}
    status, answer = await post(web_service, "websocket", body)
    assert status == 200
    assert answer["errorType"] == "sasl", answer
    assert answer["saslCondition"] == "not-authorized"


@pytest_twisted.ensureDeferred
async def test_websocket_over_tls(web_prosody, web_service):
    """wss:// with the test CA: the certificate verified, a SCRAM login."""
    body = {
        "url": ws_url(web_prosody[1], "wss"),
        "domain": DOMAIN,
        "username": USER,
        "password": PASSWORD,
    }
    status, answer = await post(web_service, "websocket", body)
    assert status == 200, answer
    assert answer["success"] is True, answer
    assert answer["transport"]["tls"]["certificate"]["verified"] is True
    assert answer["phases"][0] == "tls_connected"
    assert answer["mechanism"].startswith("SCRAM-")
    print(json.dumps(answer, indent=1))


def bosh_url(port, scheme="http"):
    return f"{scheme}://localhost:{port}/http-bind"


@pytest_twisted.ensureDeferred
async def test_bosh_session_only(web_prosody, web_service):
    """Without credentials: the session's attributes and the features."""
    status, body = await post(web_service, "bosh", {"url": bosh_url(web_prosody[0])})
    assert status == 200, body
    assert body["success"] is True, body
    transport = body["transport"]
    assert transport["sid"]
    assert transport["hold"] == 1
    assert transport["ver"]
    assert transport["tls"] is None
    assert "PLAIN" in body["saslMechanisms"]
    assert body["phases"] == ["stream_opened"]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-1"])
@pytest_twisted.ensureDeferred
async def test_bosh_login(web_prosody, web_service, mechanism):
    """A login over http:// (the caller's explicit plaintext) with the /login phases."""
    body = {
        "url": bosh_url(web_prosody[0]),
        "username": USER,
        "password": PASSWORD,
        "mechanism": mechanism,
        "transcript": True,
    }
    status, answer = await post(web_service, "bosh", body)
    assert status == 200, answer
    assert answer["success"] is True, answer
    assert answer["mechanism"] == mechanism
    assert answer["jid"].startswith(f"{USER}@{DOMAIN}/")
    sent = f"sasl_{mechanism.lower().replace('-', '_')}_sent"
    assert answer["phases"][:5] == [
        "stream_opened",
        sent,
        "authenticated",
        "stream_restarted",
        "resource_bound",
    ]
    assert PASSWORD not in json.dumps(answer)


@pytest_twisted.ensureDeferred
async def test_bosh_wrong_password(web_prosody, web_service):
    """A refused password over BOSH is errorType sasl, as /login."""
    body = {"url": bosh_url(web_prosody[0]), "username": USER, "password": "wrong-password-1"}
    status, answer = await post(web_service, "bosh", body)
    assert status == 200
    assert answer["errorType"] == "sasl", answer
    assert answer["saslCondition"] == "not-authorized"


@pytest_twisted.ensureDeferred
async def test_bosh_over_tls(web_prosody, web_service):
    """https:// with the test CA: the certificate verified, then the login."""
    body = {"url": bosh_url(web_prosody[1], "https"), "username": USER, "password": PASSWORD}
    status, answer = await post(web_service, "bosh", body)
    assert status == 200, answer
    assert answer["success"] is True, answer
    assert answer["transport"]["tls"]["certificate"]["verified"] is True
    assert answer["phases"][0] == "tls_connected"
    print(json.dumps({k: answer[k] for k in ("transport", "phases", "timings", "mechanism")}))


@pytest.fixture(scope="module")
def host_meta():
    """The HTTPS host-meta server of the domain localhost (tests/support/hostmeta.py)."""
    from hostmeta import start_host_meta_server
    from twisted.internet import reactor

    try:
        server = start_host_meta_server(reactor, session_certs().localhost)
    except Exception as e:  # not root, or 443 taken
        pytest.skip(f"cannot listen on 127.0.0.1:443: {e}")
    try:
        yield server
    finally:
        pytest_twisted.blockon(server.stop())


@pytest_twisted.ensureDeferred
async def test_discovered_websocket_login(web_prosody, web_service, host_meta):
    """domain alone: the WebSocket URL comes from host-meta; SCRAM logs in over it."""
    from hostmeta import both

    host_meta.documents = both(websocket=[ws_url(web_prosody[1], "wss")])
    body = {"domain": DOMAIN, "username": USER, "password": PASSWORD}
    status, answer = await post(web_service, "websocket", body)
    assert status == 200, answer
    assert answer["success"] is True, answer
    assert answer["discovered"] is True
    assert answer["url"] == ws_url(web_prosody[1], "wss")


@pytest_twisted.ensureDeferred
async def test_discovered_plaintext_never_plain(web_prosody, web_service, host_meta):
    """A ws:// URL found by discovery is not the caller's choice: PLAIN is not sent over it."""
    from hostmeta import both

    host_meta.documents = both(websocket=[ws_url(web_prosody[0])], bosh=[bosh_url(web_prosody[0])])
    body = {"domain": DOMAIN, "username": USER, "password": PASSWORD, "mechanism": "PLAIN"}
    for endpoint in ("websocket", "bosh"):
        status, answer = await post(web_service, endpoint, body)
        assert status == 200, answer
        assert answer["errorType"] == "tls", answer
        assert "sasl_plain_sent" not in answer["phases"]
    # SCRAM keeps the password off the wire: it goes ahead, with a warning.
    status, answer = await post(web_service, "bosh", {**body, "mechanism": "SCRAM-SHA-1"})
    assert answer["success"] is True, answer
    assert answer["discovered"] is True
    assert answer["warnings"]


@pytest_twisted.ensureDeferred
async def test_discovered_dead_link(web_service, host_meta):
    """A host-meta link to a dead URL: errorType connect, the URL named."""
    from hostmeta import both
    from servers import free_ports

    (dead,) = free_ports(1)
    host_meta.documents = both(bosh=[bosh_url(dead)])
    status, answer = await post(web_service, "bosh", {"domain": DOMAIN})
    assert status == 200, answer
    assert answer["errorType"] == "connect", answer
    assert answer["url"] == bosh_url(dead)


@pytest_twisted.ensureDeferred
async def test_no_link_found(web_service, host_meta):
    """No WebSocket link in host-meta: a typed failure saying so."""
    host_meta.documents = {}
    status, answer = await post(web_service, "websocket", {"domain": DOMAIN})
    assert status == 200, answer
    assert answer["success"] is False
    assert "host-meta" in answer["error"]
    assert answer["url"] is None


@pytest_twisted.ensureDeferred
async def test_plaintext_to_loopback_refused(strict_service):
    """ws:// and http:// to a loopback address without --allow-private: 403."""
    for endpoint, url in (("websocket", ws_url(1)), ("bosh", bosh_url(1))):
        status, answer = await post(strict_service, endpoint, {"url": url})
        assert status == 403, answer
        assert answer["blocked"] is True


@pytest_twisted.ensureDeferred
async def test_check_probes_host_meta_links(web_prosody, web_service, host_meta):
    """/check fetches host-meta and probes each link: the good ones reachable, a dead one
    discover.bad_link, a ws:// one discover.insecure_link; CORS present: no discover.no_cors."""
    from hostmeta import both
    from servers import free_ports

    (dead,) = free_ports(1)
    links = [ws_url(web_prosody[1], "wss"), ws_url(web_prosody[0])]
    host_meta.documents = both(websocket=links, bosh=[bosh_url(dead)])
    status, body = await post(web_service, "check", {"domain": DOMAIN, "services": ["client"]})
    assert status == 200, body
    web = {e["url"]: e for e in body["webEndpoints"]}
    assert web[links[0]]["reachable"] is True
    assert web[links[0]]["probe"]["transport"]["subprotocol"] == "xmpp"
    assert web[bosh_url(dead)]["reachable"] is False
    assert web[bosh_url(dead)]["probe"]["errorType"] == "connect"
    ids = {f["id"] for f in body["findings"]}
    assert {"discover.bad_link", "discover.insecure_link"} <= ids
    assert not {"discover.no_cors", "discover.no_host_meta"} & ids
    assert body["discovery"]["hostMeta"]["status"] == 200


@pytest_twisted.ensureDeferred
async def test_check_without_host_meta(web_service, host_meta):
    """/check of a domain without host-meta: discover.no_host_meta (info), no web endpoints."""
    host_meta.documents = {}
    status, body = await post(web_service, "check", {"domain": DOMAIN, "services": ["client"]})
    assert status == 200, body
    assert body["webEndpoints"] == []
    assert "discover.no_host_meta" in {f["id"] for f in body["findings"]}
