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
