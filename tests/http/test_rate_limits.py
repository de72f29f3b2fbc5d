"""
SPEC §2's rate limits on instances of their own, over a real port against the
test Prosody: --per-target-rate (probes per minute to one address, all callers
and endpoints together) and --max-failed-logins (failed logins of one account
within ten minutes), each answering 429 with Retry-After and rateLimited.
"""

import json

import pytest
import pytest_twisted
import treq
from conftest import start_service


@pytest.fixture(scope="module")
def limited():
    running = start_service(
        "--allow-private", "--per-target-rate", "5", "--max-failed-logins", "2"
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def logins_limited():
    running = start_service(
        "--allow-private", "--per-target-rate", "0", "--max-failed-logins", "2"
    )
    try:
        yield running
    finally:
        running.stop()


async def post(service, path, body):
    response = await treq.post(service.url(path), json=body)
    return response, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_per_target_rate(limited, prosody):
    """The sixth probe of one address within a minute is refused: 429, Retry-After, target."""
    body = {"host": "127.0.0.1", "port": prosody.port, "domain": "localhost"}
    for _ in range(5):
        response, answer = await post(limited, "/api/xmpp/connect", body)
        assert (response.code, answer["success"]) == (200, True), answer
    response, answer = await post(limited, "/api/xmpp/s2s", {**body, "port": prosody.s2s_port})
    assert response.code == 429, answer
    assert answer["success"] is False
    assert answer["rateLimited"] == "target"
    assert "127.0.0.1" in answer["error"]
    assert int(response.headers.getRawHeaders("retry-after")[0]) >= 1


@pytest_twisted.ensureDeferred
async def test_failed_logins(logins_limited, prosody):
    """After two refused logins of one account, the next is 429; another account is not."""
    service = logins_limited
    wrong = {
        "host": "127.0.0.1", "port": prosody.port, "domain": "localhost",
        "username": "bob", "password": "wrong-password", "tls": "none",
    }  # fmt: skip
    for _ in range(2):
        response, answer = await post(service, "/api/xmpp/login", wrong)
        assert (response.code, answer["errorType"]) == (200, "sasl"), answer
    right = {**wrong, "password": prosody.users["bob"]}
    response, answer = await post(service, "/api/xmpp/login", right)
    assert response.code == 429, answer
    assert answer["rateLimited"] == "account"
    assert "bob@localhost" in answer["error"]
    assert "wrong-password" not in json.dumps(answer)
    retry = int(response.headers.getRawHeaders("retry-after")[0])
    assert 500 < retry <= 600
    other = {**right, "username": "alice", "password": prosody.users["alice"]}
    response, answer = await post(service, "/api/xmpp/login", other)
    assert (response.code, answer["success"]) == (200, True), answer
