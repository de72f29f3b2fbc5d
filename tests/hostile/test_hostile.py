"""
Hostile and broken servers, through HTTP: each answer is a 200 with
success false and the right errorType, within the request's timeout, with
one log line and no traceback; the next normal probe is unaffected and no
connection to the server is left open.
"""

import json

import pytest
import pytest_twisted
import treq
from conftest import start_service
from hostile import FEATURES, HEADER, Flood, HostileFactory, Scripted, login_script, servers
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.web._newclient import ResponseNeverReceived

from portofcall_xmpp.protocol import CLOSE_GRACE

READ_TIMEOUT_MS = 1000
REQUEST_TIMEOUT_MS = 5000
BIND_RESULT = (
    b"<iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    b"<jid>probe@localhost/portofcall</jid></bind></iq>"
)


@pytest.fixture(scope="module")
def hostile_service():
    running = start_service("--allow-private", "--read-timeout", str(READ_TIMEOUT_MS))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def log_events():
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)


def listen(factory):
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    return port


async def probe(service, endpoint, port, **extra):
    body = {"host": "127.0.0.1", "port": port, "domain": "localhost", "timeout": REQUEST_TIMEOUT_MS}
    if endpoint != "connect":
        # These servers offer PLAIN without STARTTLS: sending the password in clear is
        # the caller's explicit choice (tls: "none", SPEC §2).
        body.update(username="probe", password="probe-password", tls="none")
    body.update(extra)
    started = reactor.seconds()
    response = await treq.post(service.url("/api/xmpp/" + endpoint), json=body, persistent=False)
    content = json.loads(await response.content())
    return response.code, content, reactor.seconds() - started


async def settle(factory):
    """Wait until the server side has seen every connection close."""
    deadline = reactor.seconds() + CLOSE_GRACE + 2
    while factory.live and reactor.seconds() < deadline:
        await deferLater(reactor, 0.05, lambda: None)


async def normal_probe(service):
    factory = HostileFactory(
        Scripted,
        script=login_script(bind_reply=BIND_RESULT),
    )
    port = listen(factory)
    try:
        code, body, _ = await probe(service, "login", port.getHost().port)
        assert (code, body["success"]) == (200, True), body
        assert body["jid"] == "probe@localhost/portofcall"
        await settle(factory)
        assert not factory.live
    finally:
        await port.stopListening()


def our_lines(events):
    return [e for e in events if e.get("log_namespace", "").startswith("portofcall_xmpp")]


@pytest.mark.parametrize("name", sorted(servers()))
@pytest_twisted.ensureDeferred
async def test_hostile_server(name, hostile_service, log_events):
    """Each hostile server gets a clear JSON failure and leaves nothing behind."""
    factory, endpoint, error_type = servers()[name]
    port = listen(factory)
    try:
        # The STARTTLS servers are probed with STARTTLS.
        extra = {"tls": "auto"} if name.startswith("starttls") else {}
        code, body, took = await probe(hostile_service, endpoint, port.getHost().port, **extra)
        assert code == 200
        assert body["success"] is False
        assert body["errorType"] == error_type, body
        assert body["error"]
        assert "Traceback" not in json.dumps(body)
        assert took < REQUEST_TIMEOUT_MS / 1000.0
        if endpoint != "connect":
            assert "phases" in body
        lines = our_lines(log_events)
        assert len(lines) == 1, lines
        assert all("log_failure" not in e for e in log_events)
        await settle(factory)
        assert not factory.live, "connection to the hostile server left open"
        assert factory.connections == 1
    finally:
        await port.stopListening()
    await normal_probe(hostile_service)


@pytest_twisted.ensureDeferred
async def test_flood_after_features_on_connect(hostile_service):
    """A server flooding after its features: /connect succeeds and the connection is dropped."""
    factory = HostileFactory(Flood)
    port = listen(factory)
    try:
        code, body, _ = await probe(hostile_service, "connect", port.getHost().port)
        assert (code, body["success"]) == (200, True), body
        assert body["saslMechanisms"] == ["PLAIN"]
        await settle(factory)
        assert not factory.live
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_overall_timeout_over_http(hostile_service):
    """Header, then waits shorter than the read timeout: the overall timeout stops it."""
    factory = HostileFactory(Scripted, script=[(b"version='1.0'", HEADER)])
    port = listen(factory)
    try:
        code, body, took = await probe(hostile_service, "connect", port.getHost().port, timeout=500)
        assert body["errorType"] == "timeout"
        assert body["error"].startswith("Connection timeout")
        assert took < 1.0
        await settle(factory)
        assert not factory.live
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_client_disconnect_cancels_probe(hostile_service):
    """An HTTP client that goes away mid-probe: the XMPP connection is closed at once."""
    factory = HostileFactory(Scripted, script=[(b"version='1.0'", HEADER + FEATURES[:10])])
    port = listen(factory)
    try:
        d = treq.post(
            hostile_service.url("/api/xmpp/connect"),
            json={"host": "127.0.0.1", "port": port.getHost().port, "domain": "localhost"},
            persistent=False,
        )
        while not factory.live:
            await deferLater(reactor, 0.02, lambda: None)
        await deferLater(reactor, 0.1, lambda: None)
        d.cancel()
        with pytest.raises(ResponseNeverReceived):
            await d
        await settle(factory)
        assert not factory.live
        assert hostile_service.api.in_flight == 0
    finally:
        await port.stopListening()
