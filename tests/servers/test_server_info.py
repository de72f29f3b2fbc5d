"""POST /api/xmpp/server-info (SPEC §7) end to end against Prosody and ejabberd."""

import json

import pytest_twisted
import treq


async def post(service, body):
    response = await treq.post(service.url("/api/xmpp/server-info"), json=body)
    return response.code, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_prosody(prosody, service):
    """Prosody answers disco#info, its version and a ping."""
    code, body = await post(
        service,
        {
            "host": prosody.host,
            "port": prosody.port,
            "domain": prosody.domain,
            "username": "alice",
            "password": prosody.users["alice"],
            "resource": "server-info",
        },
    )
    assert code == 200
    assert body["success"] is True, body
    assert body["message"] == "XMPP server information retrieved"
    assert body["phases"][-3:] == ["disco_info_received", "version_received", "ping_received"]
    info = body["serverInfo"]
    assert {"category": "server", "type": "im", "name": "Prosody"} in info["identities"]
    assert "urn:xmpp:ping" in info["features"]
    assert "jabber:iq:version" in info["features"]
    assert info["software"]["name"] == "Prosody"
    assert info["software"]["version"].startswith("0.12")
    assert isinstance(info["pingMs"], (int, float))
    assert info["errors"] == {"disco": None, "version": None, "ping": None}
    contacts = {kind: values for kind, values in info["contactAddresses"].items() if values}
    assert contacts == {
        "abuse-addresses": ["mailto:abuse@localhost", "xmpp:abuse@localhost"],
        "admin-addresses": ["xmpp:admin@localhost"],
    }
    assert "http://jabber.org/network/serverinfo" in info["forms"]


@pytest_twisted.ensureDeferred
async def test_ejabberd(ejabberd, service):
    """ejabberd answers too, and names itself."""
    code, body = await post(
        service,
        {
            "host": ejabberd.host,
            "port": ejabberd.port,
            "domain": ejabberd.domain,
            "username": "alice",
            "password": ejabberd.users["alice"],
            "resource": "server-info",
        },
    )
    assert body["success"] is True, body
    info = body["serverInfo"]
    assert any(i["category"] == "server" for i in info["identities"])
    assert info["software"]["name"] == "ejabberd"
    assert info["errors"]["ping"] is None


@pytest_twisted.ensureDeferred
async def test_wrong_password(prosody, service):
    """A failed login fails the probe like /login (nothing is asked)."""
    code, body = await post(
        service,
        {
            "host": prosody.host,
            "port": prosody.port,
            "domain": prosody.domain,
            "username": "alice",
            "password": "not-her-password",
        },
    )
    assert body["errorType"] == "sasl"
    assert "disco_info_received" not in body["phases"]
