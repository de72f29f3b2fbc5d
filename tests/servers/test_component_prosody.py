"""
POST /api/xmpp/component (SPEC §10, XEP-0114) end to end against the test
Prosody's external component (C{component.localhost}, tests/support/prosody.py).
"""

import hashlib
import json

import pytest_twisted
import treq

NAME = "component.localhost"


async def post(service, body):
    response = await treq.post(service.url("/api/xmpp/component"), json=body)
    return response.code, json.loads(await response.content())


def request(prosody, **extra):
    return {"host": prosody.host, "port": prosody.component_port, "componentName": NAME, **extra}


@pytest_twisted.ensureDeferred
async def test_authenticated(prosody, service):
    """The right secret: the handshake is accepted, phases and timings in order."""
    secret = prosody.components[NAME]
    code, body = await post(service, request(prosody, secret=secret))
    assert code == 200
    assert body["success"] is True, body
    assert body["message"] == "Component authenticated"
    assert body["authenticated"] is True
    assert body["phases"] == ["stream_opened", "handshake_sent", "authenticated"]
    assert list(body["timings"]) == body["phases"]
    assert body["serverFrom"] == NAME
    assert body["streamId"]
    assert body["raw"].endswith("<handshake/>")
    assert (body["host"], body["port"]) == (prosody.host, prosody.component_port)


@pytest_twisted.ensureDeferred
async def test_wrong_secret(prosody, service):
    """A wrong secret: Prosody's not-authorized stream error, after handshake_sent."""
    code, body = await post(service, request(prosody, secret="not-the-secret"))
    assert code == 200
    assert body["success"] is False
    assert body["errorType"] == "stream_error"
    assert body["error"] == "XMPP stream error: not-authorized"
    assert body["phases"] == ["stream_opened", "handshake_sent"]


@pytest_twisted.ensureDeferred
async def test_unknown_name(prosody, service):
    """A name that is no component of the server: host-unknown, no handshake sent."""
    secret = prosody.components[NAME]
    code, body = await post(
        service, request(prosody, componentName="nothing.localhost", secret=secret)
    )
    assert body["success"] is False, body
    assert body["errorType"] == "stream_error"
    assert body["error"] == "XMPP stream error: host-unknown"
    assert "handshake_sent" not in body["phases"]


@pytest_twisted.ensureDeferred
async def test_stream_only(prosody, service):
    """No secret: the stream is opened and reported, nothing authenticated."""
    code, body = await post(service, request(prosody))
    assert body["success"] is True, body
    assert body["message"] == "Component stream opened"
    assert body["authenticated"] is False
    assert body["phases"] == ["stream_opened"]
    assert body["streamId"]
    assert "jabber:component:accept" in body["raw"]


@pytest_twisted.ensureDeferred
async def test_secret_never_leaks(prosody, service):
    """
    Right and wrong secrets, with transcripts: neither secret nor the
    digest sent appears in any answer or any log line; the handshake shows
    as [redacted].
    """
    from twisted.logger import globalLogPublisher

    right = prosody.components[NAME]
    wrong = "Marker-Wrong-Secret-77"
    events = []
    globalLogPublisher.addObserver(events.append)
    bodies = []
    try:
        for secret in (right, wrong):
            code, body = await post(service, request(prosody, secret=secret, transcript=True))
            assert code == 200
            assert body["success"] is (secret == right), body
            bodies.append(body)
    finally:
        globalLogPublisher.removeObserver(events.append)
    entries = [e["xml"] for body in bodies for e in body["transcript"]]
    assert entries.count("<handshake>[redacted]</handshake>") == 2
    text = json.dumps(bodies)
    logs = repr(events)
    for body in bodies:
        digest = hashlib.sha1(
            (_stream_id(body) + (right if body["success"] else wrong)).encode()
        ).hexdigest()
        assert digest not in text
        assert digest not in logs
    for secret in (right, wrong):
        assert secret not in text
        assert secret not in logs


def _stream_id(body):
    """The stream id the server sent, from the transcript of an answer."""
    header = next(e["xml"] for e in body["transcript"] if e["dir"] == "in")
    return header.split(' id="', 1)[1].split('"', 1)[0]


@pytest_twisted.ensureDeferred
async def test_blocked_by_policy(prosody, strict_service):
    """The destination policy applies: loopback without --allow-private is 403."""
    code, body = await post(strict_service, request(prosody, secret="x"))
    assert code == 403
    assert body["blocked"] is True
