"""
After thousands of mixed probes -- successes, failures, timeouts, and HTTP
clients that go away mid-probe -- the process holds no socket to any XMPP
server, no probe is in flight, and the reactor holds no more delayed calls
than before; no credential reached the log or any response.
"""

import base64
import json

import pytest
import pytest_twisted
import treq
from conftest import start_service
from hostile import HEADER, HostileFactory, Scripted, login_script, settle, xmpp_clients
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher

PROBES = 2000
CONCURRENCY = 50
USERNAME = "markeruser"
PASSWORD = "Marker-Secret-9f3a"
BIND_RESULT = (
    b"<iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    b"<jid>markeruser@localhost/portofcall</jid></bind></iq>"
)
ROSTER_RESULT = (
    b"<iq type='result' id='roster1'><query xmlns='jabber:iq:roster'>"
    b"<item jid='bob@localhost' subscription='both'/></query></iq>"
)
SASL_FAILURE = (
    b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/>"
    b"<text>nope</text></failure>"
)


# Probes that should succeed (or fail SASL) get timeouts far beyond anything a
# loaded machine needs, so that only the silent server's probes time out (their
# own short overall timeout).  A timer a probe leaves behind would then still be
# pending long after the run: SETTLE is much shorter than TIMEOUT_MS.
TIMEOUT_MS = 120000
SILENT_TIMEOUT_MS = 300
SETTLE = 20.0


@pytest.fixture(scope="module")
def leak_service():
    running = start_service(
        "--allow-private", "--read-timeout", str(TIMEOUT_MS), "--max-concurrent", "1000"
    )
    try:
        yield running
    finally:
        running.stop()


@pytest_twisted.ensureDeferred
async def test_mixed_probes_leave_nothing(leak_service):
    """
    Thousands of mixed probes leave no socket, no probe and no timer behind;
    each kind of probe gets the outcome of its server.
    """
    factories = {
        "ok": HostileFactory(
            Scripted, script=login_script(bind_reply=BIND_RESULT) + [(b"</iq>", ROSTER_RESULT)]
        ),
        "sasl": HostileFactory(Scripted, script=login_script(after_auth=SASL_FAILURE)),
        "silent": HostileFactory(Scripted, script=[(b"version='1.0'", HEADER)]),
    }
    listening = {
        name: reactor.listenTCP(0, f, interface="127.0.0.1") for name, f in factories.items()
    }
    ports = {p.getHost().port for p in listening.values()}
    events = []
    globalLogPublisher.addObserver(events.append)
    bodies = []
    outcomes = {"ok": 0, "sasl": 0, "timeout": 0, "gone": 0}
    try:
        await deferLater(reactor, 0.2, lambda: None)
        baseline = len(reactor.getDelayedCalls())
        semaphore = DeferredSemaphore(CONCURRENCY)

        async def one(i):
            kind = ("ok", "sasl", "silent", "gone")[i % 4]
            server = "silent" if kind == "gone" else kind
            endpoint = ("login", "roster", "message")[i % 3] if kind == "ok" else "login"
            body = {
                "host": "127.0.0.1",
                "port": listening[server].getHost().port,
                "domain": "localhost",
                "username": USERNAME,
                "password": PASSWORD,
                "tls": "none",  # PLAIN without STARTTLS: the caller's choice (SPEC §2)
                "recipient": "bob@localhost",
                "waitMs": 0,
                "transcript": i % 2 == 0,
                "timeout": SILENT_TIMEOUT_MS if kind == "silent" else TIMEOUT_MS,
            }
            d = treq.post(
                leak_service.url("/api/xmpp/" + endpoint),
                json=body,
                persistent=False,
            )
            if kind == "gone":
                reactor.callLater(0.05, d.cancel)
                try:
                    await d
                except Exception:
                    outcomes["gone"] += 1
                return
            response = await d
            content = await response.content()
            bodies.append(content)
            result = json.loads(content)
            if result["success"]:
                outcomes["ok"] += 1
            else:
                outcomes[result["errorType"] if result["errorType"] == "timeout" else "sasl"] += 1

        def run(i):
            return Deferred.fromCoroutine(one(i))

        await gatherResults([semaphore.run(run, i) for i in range(PROBES)])
        await settle(
            lambda: leak_service.api.in_flight == 0
            and not any(f.live for f in factories.values())
            and not xmpp_clients(ports),
            SETTLE,
        )
        assert outcomes["ok"] == PROBES // 4
        assert outcomes["sasl"] == PROBES // 4
        assert outcomes["timeout"] == PROBES // 4
        assert outcomes["gone"] == PROBES // 4
        assert leak_service.api.in_flight == 0
        assert not any(f.live for f in factories.values())
        assert xmpp_clients(ports) == []
        await settle(lambda: len(reactor.getDelayedCalls()) <= baseline, SETTLE)
        assert len(reactor.getDelayedCalls()) <= baseline, [
            str(c) for c in reactor.getDelayedCalls()
        ]
    finally:
        globalLogPublisher.removeObserver(events.append)
        for port in listening.values():
            await port.stopListening()
    text = b"".join(bodies).decode() + repr(events)
    payload = base64.b64encode(b"\0" + USERNAME.encode() + b"\0" + PASSWORD.encode()).decode()
    assert PASSWORD not in text
    assert payload not in text
    assert base64.b64encode(PASSWORD.encode()).decode() not in text
    assert USERNAME not in repr(events)
