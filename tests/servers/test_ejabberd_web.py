"""
POST /api/xmpp/websocket and /api/xmpp/bosh against a real ejabberd with an
``ejabberd_http`` listener (WebSocket on /ws, BOSH on /bosh): logins with
PLAIN and SCRAM, and a wrong password.
"""

import json

import pytest
import pytest_twisted
import treq
from ejabberd import ACCOUNTS, DOMAIN, find_ejabberd, start_seeded_server

USER = "alice"


@pytest.fixture(scope="module")
def web_ejabberd(tmp_path_factory):
    if find_ejabberd() is None:
        pytest.skip("ejabberd is not installed")
    info = start_seeded_server(tmp_path_factory.mktemp("ejabberd-web"), http=True)
    try:
        yield info.server.http_port
    finally:
        info.server.stop()


def urls(port):
    return {
        "websocket": f"ws://localhost:{port}/ws",
        "bosh": f"http://localhost:{port}/bosh",
    }


async def post(service, endpoint, body):
    response = await treq.post(service.url(f"/api/xmpp/{endpoint}"), json=body)
    return response.code, json.loads(await response.content())


@pytest.mark.parametrize("endpoint", ["websocket", "bosh"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-1"])
@pytest_twisted.ensureDeferred
async def test_login(web_ejabberd, service, endpoint, mechanism):
    """A login over ejabberd's WebSocket or BOSH handler, with the /login phases."""
    body = {
        "url": urls(web_ejabberd)[endpoint],
        "username": USER,
        "password": ACCOUNTS[USER],
        "mechanism": mechanism,
    }
    status, answer = await post(service, endpoint, body)
    assert status == 200, answer
    assert answer["success"] is True, answer
    assert answer["jid"].startswith(f"{USER}@{DOMAIN}/")
    assert "resource_bound" in answer["phases"]
    print(endpoint, mechanism, answer["phases"], answer["timings"], answer["transport"])


@pytest.mark.parametrize("endpoint", ["websocket", "bosh"])
@pytest_twisted.ensureDeferred
async def test_wrong_password(web_ejabberd, service, endpoint):
    """A refused password is errorType sasl, not-authorized."""
    body = {"url": urls(web_ejabberd)[endpoint], "username": USER, "password": "wrong-pw-9"}
    status, answer = await post(service, endpoint, body)
    assert status == 200
    assert answer["errorType"] == "sasl", answer
    assert answer["saslCondition"] == "not-authorized"
