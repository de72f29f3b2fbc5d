"""POST /api/xmpp/ping (SPEC §10, XEP-0199) end to end against the test Prosody."""

import json

import pytest
import pytest_twisted
import treq
from conftest import start_service


async def post(service, body):
    response = await treq.post(service.url("/api/xmpp/ping"), json=body)
    return response.code, json.loads(await response.content())


def request(prosody, **extra):
    return {
        "host": prosody.host,
        "port": prosody.port,
        "domain": prosody.domain,
        "username": "alice",
        "password": prosody.users["alice"],
        "resource": "ping",
        **extra,
    }


@pytest_twisted.ensureDeferred
async def test_server(prosody, service):
    """The server itself (the default target): three pongs, RTTs summarised."""
    code, body = await post(service, request(prosody))
    assert code == 200
    assert body["success"] is True, body
    assert body["message"] == "XMPP ping completed"
    assert body["target"] == "localhost"
    assert body["count"] == 3
    assert [p["result"] for p in body["pings"]] == ["pong"] * 3
    assert body["phases"][-2:] == ["session_established", "ping_received"]
    assert "ping_received" in body["timings"]
    rtts = [p["ms"] for p in body["pings"]]
    assert body["rttMs"]["min"] == min(rtts)
    assert body["rttMs"]["max"] == max(rtts)
    assert body["rttMs"]["min"] <= body["rttMs"]["median"] <= body["rttMs"]["max"]


@pytest_twisted.ensureDeferred
async def test_local_user(prosody, service):
    """
    A local user's bare JID (bob, offline): Prosody 0.12 answers the ping
    for the account itself, a pong.
    """
    code, body = await post(service, request(prosody, target="bob@localhost", count=1))
    assert body["success"] is True, body
    assert body["target"] == "bob@localhost"
    assert [p["result"] for p in body["pings"]] == ["pong"]


@pytest_twisted.ensureDeferred
async def test_user_that_does_not_exist(prosody, service):
    """
    A bare JID with no account behind it: Prosody 0.12 answers pong for it
    too (the server answers for bare JIDs of its domain), which is reported.
    """
    code, body = await post(service, request(prosody, target="nobody-here@localhost", count=1))
    assert body["success"] is True, body
    assert [p["result"] for p in body["pings"]] == ["pong"]


@pytest_twisted.ensureDeferred
async def test_offline_resource(prosody, service):
    """A full JID with no such session: service-unavailable, the result of that ping."""
    code, body = await post(service, request(prosody, target="bob@localhost/gone", count=1))
    assert body["success"] is True, body
    (ping,) = body["pings"]
    assert (ping["result"], ping["condition"]) == ("error", "service-unavailable")
    assert isinstance(ping["ms"], (int, float))
    assert body["rttMs"] is None


@pytest_twisted.ensureDeferred
async def test_unreachable_domain(prosody, service):
    """
    A domain under .invalid: the server cannot reach it and answers
    remote-server-not-found; that is the result, and the probe succeeds.
    """
    code, body = await post(service, request(prosody, target="nowhere.invalid", count=2))
    assert code == 200
    assert body["success"] is True, body
    assert [p["result"] for p in body["pings"]] == ["error", "error"]
    assert {p["condition"] for p in body["pings"]} == {"remote-server-not-found"}
    assert body["rttMs"] is None
    assert "ping_received" in body["phases"]


@pytest_twisted.ensureDeferred
async def test_disconnected_component(prosody, service):
    """
    The component domain with no component connected: Prosody answers
    remote-server-timeout ("Component unavailable"), reported as the result.
    """
    code, body = await post(service, request(prosody, target="component.localhost", count=1))
    assert body["success"] is True, body
    (ping,) = body["pings"]
    assert (ping["result"], ping["condition"]) == ("error", "remote-server-timeout")


@pytest_twisted.ensureDeferred
async def test_wrong_password(prosody, service):
    """A refused login fails the probe like /login: sasl, no pings."""
    code, body = await post(service, request(prosody, password="not-her-password"))
    assert code == 200
    assert body["success"] is False
    assert body["errorType"] == "sasl"
    assert "ping_received" not in body["phases"]
    assert "pings" not in body


@pytest.fixture(scope="module")
def logins_limited():
    running = start_service("--allow-private", "--per-target-rate", "0", "--max-failed-logins", "2")
    try:
        yield running
    finally:
        running.stop()


@pytest_twisted.ensureDeferred
async def test_failed_logins_count(prosody, logins_limited):
    """A refused /ping login counts for --max-failed-logins: the third try is 429."""
    account = prosody.new_user("pinglimit")
    wrong = request(prosody, username=account.user, password="wrong-password")
    for _ in range(2):
        code, body = await post(logins_limited, wrong)
        assert (code, body["errorType"]) == (200, "sasl"), body
    code, body = await post(logins_limited, {**wrong, "password": account.password})
    assert code == 429, body
    assert body["rateLimited"] == "account"
