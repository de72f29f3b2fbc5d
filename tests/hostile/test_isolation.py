"""
One hostile server costs only its own probe (SPEC §2, issue 8): each row of
issue 8's table as a test against the service running in its own process
(so that its CPU time and memory are its own), with the hostile servers on
127.0.0.1 in the test process.

What is checked, and how generously (a busy CI machine, or a CPU hog on one
core, must not make a correct service fail):

 - every probe answers before a deadline of its C{timeout} + 2 s (SPEC: + 1 s;
   the extra second absorbs scheduling delays of a loaded machine, while the
   service as it was answered tens of seconds late);
 - C{/api/health}, asked every 100 ms meanwhile, never takes more than 2 s
   (SPEC: 0.5 s; four times that for a loaded machine, while the service as
   it was did not answer for seconds on end);
 - the service's peak RSS stays under 1 GiB with 200 hostile probes (SPEC:
   512 MiB; twice that, while the service as it was reached 2.6 GiB);
 - an oversized features block fails C{too_large} once 256 KiB have been
   read: the hostile server, with a small send buffer, got fewer than 2 MiB
   onto the wire (the service as it was read 4 MiB).

None of this measures speed against a clock of its own: a deadline is a
Deferred that fires after the probe's own timeout plus the grace above.
"""

import json

import pytest
import pytest_twisted
import treq
from hostile import (
    BOUND_FEATURES,
    HEADER,
    PADDING,
    Endless,
    HealthSampler,
    HostileFactory,
    Scripted,
    SendAfterHeader,
    ServiceProcess,
    disco_script,
    features_block,
    login_script,
    mechanisms,
    namespaced_children,
    padding,
)
from twisted.internet import defer, reactor
from twisted.internet.defer import gatherResults
from twisted.internet.task import LoopingCall

GRACE = 2.0
HEALTH_BOUND = 2.0
RSS_CAP = 1024 * 1024 * 1024
WIRE_CAP = 2 * 1024 * 1024
HOSTILE_PROBES = 200


@pytest.fixture
def service():
    """A fresh service process (its peak RSS is this test's alone)."""
    running = ServiceProcess("--max-concurrent", "1000", memory_limit=4 * RSS_CAP)
    try:
        running.wait_listening()
        yield running
    finally:
        running.stop()


@pytest.fixture
def hostile():
    """Listen with a hostile factory on 127.0.0.1; stop listening and drop its connections."""
    ports = []

    def listen(factory):
        ports.append((reactor.listenTCP(0, factory, interface="127.0.0.1", backlog=1024), factory))
        return ports[-1][0].getHost().port

    yield listen
    for port, factory in ports:
        for proto in list(factory.live):
            proto.transport.abortConnection()
        port.stopListening()


@pytest.fixture
def health(service):
    """/api/health sampled every 100 ms for the whole test."""
    sampler = HealthSampler(service.port).start()
    try:
        yield sampler
    finally:
        sampler.stop(wait=False)


async def post(service, endpoint, port, timeout_ms):
    """One probe; its JSON answer."""
    body = {"host": "127.0.0.1", "port": port, "domain": "localhost", "timeout": timeout_ms}
    if endpoint != "connect":
        body.update(username="probe", password="probe-password", tls="none")
    response = await treq.post(service.url(f"/api/xmpp/{endpoint}"), json=body, persistent=False)
    assert response.code == 200, response.code
    return json.loads(await response.content())


async def answers(service, endpoint, port, timeout_ms, count=1, watch=None):
    """
    C{count} concurrent probes; their answers, which must all arrive before
    their C{timeout} + L{GRACE}.  C{watch}, called every 100 ms meanwhile,
    may return a reason to stop at once (the probes are cancelled).
    """
    answered = []

    async def one():
        answered.append(await post(service, endpoint, port, timeout_ms))
        return answered[-1]

    probes = gatherResults([defer.ensureDeferred(one()) for _ in range(count)], consumeErrors=True)
    stopped = []

    def check():
        reason = watch()
        if reason:
            stopped.append(reason)
            probes.cancel()

    watcher = LoopingCall(check)
    if watch is not None:
        watcher.start(0.1)
    limit = timeout_ms / 1000 + GRACE
    try:
        return await probes.addTimeout(limit, reactor)
    except (defer.TimeoutError, defer.CancelledError, defer.FirstError):
        if stopped:
            pytest.fail(stopped[0])
        pytest.fail(
            f"{len(answered)} of {count} probes answered within their timeout + {GRACE:g} s "
            f"({limit:g} s); service peak RSS {service.peak_rss() >> 20} MiB"
        )
    finally:
        if watcher.running:
            watcher.stop()


def health_bounded(health):
    assert health.samples, "/api/health was never answered"
    assert health.worst <= HEALTH_BOUND, (
        f"/api/health took {health.worst:.1f} s ({health.failures} of "
        f"{len(health.samples)} samples failed)"
    )


def rss_over(service, cap=RSS_CAP):
    """A reason to stop when the service's peak RSS passed C{cap}."""

    def watch():
        peak = service.peak_rss()
        if peak > cap:
            return f"service peak RSS {peak >> 20} MiB, over {cap >> 20} MiB"
        return None

    return watch


@pytest.mark.parametrize(
    "payload",
    [namespaced_children(50000), mechanisms(50000)],
    ids=["50000-namespaces", "50000-mechanisms"],
)
@pytest_twisted.ensureDeferred
async def test_features_cost_only_their_probe(service, hostile, health, payload):
    """
    A features block of 50,000 children, each in its own namespace (or 50,000
    SASL mechanisms), about 1 MB: the probe answers within its timeout and
    the service keeps answering /api/health meanwhile.
    """
    port = hostile(HostileFactory(SendAfterHeader, payload=features_block(payload)))
    [answer] = await answers(service, "connect", port, 3000)
    assert "success" in answer
    health_bounded(health)


@pytest_twisted.ensureDeferred
async def test_disco_features_cost_only_their_probe(service, hostile, health):
    """A disco#info of 40,000 features: /server-info answers within its timeout, health too."""
    port = hostile(HostileFactory(Scripted, script=disco_script(40000)))
    [answer] = await answers(service, "server-info", port, 5000)
    assert "success" in answer
    health_bounded(health)


@pytest_twisted.ensureDeferred
async def test_endless_features_200_probes(service, hostile, health):
    """
    200 servers streaming endless tiny elements inside <stream:features>:
    every probe fails within its timeout, health answers throughout, and the
    service's memory stays bounded.
    """
    factory = HostileFactory(
        Endless, script=[(b"version='1.0'", HEADER + b"<stream:features>")], unit=b"<a/>" * 4096
    )
    port = hostile(factory)
    got = await answers(service, "connect", port, 2000, HOSTILE_PROBES, watch=rss_over(service))
    assert {a["errorType"] for a in got} <= {"timeout", "too_large"}
    health_bounded(health)


@pytest_twisted.ensureDeferred
async def test_login_floods_200_probes(service, hostile, health):
    """
    200 servers flooding tiny top-level elements while the client waits for
    its bind reply: every probe fails within its timeout and health answers
    throughout.
    """
    factory = HostileFactory(
        Endless,
        script=login_script(bound=BOUND_FEATURES) + [(b"</iq>", b"")],
        unit=b"<presence/>" * 2048,
    )
    port = hostile(factory)
    got = await answers(service, "login", port, 3000, HOSTILE_PROBES, watch=rss_over(service))
    assert {a["errorType"] for a in got} <= {"timeout", "too_large"}
    health_bounded(health)


@pytest_twisted.ensureDeferred
async def test_big_features_200_probes_memory(service, hostile, health):
    """
    200 servers each sending a 4 MB features block of tiny elements at once:
    the service's peak RSS stays under the cap, every probe answers within
    its timeout and health answers throughout.
    """
    factory = HostileFactory(SendAfterHeader, payload=features_block(padding(4 * 10**6, b"<a/>")))
    port = hostile(factory)
    got = await answers(service, "connect", port, 3000, HOSTILE_PROBES, watch=rss_over(service))
    assert {a["errorType"] for a in got} <= {"timeout", "too_large"}
    assert service.peak_rss() <= RSS_CAP
    health_bounded(health)


@pytest_twisted.ensureDeferred
async def test_oversized_features_too_large_after_256k(service, hostile):
    """
    A features block that never ends: the probe fails too_large once 256 KiB
    have been read, long before the 4 MiB roster cap (the server could put
    fewer than 2 MiB on the wire).
    """
    factory = HostileFactory(
        Endless,
        script=[(b"version='1.0'", HEADER + b"<stream:features>")],
        unit=PADDING * 256,
        sndbuf=64 * 1024,
    )
    port = hostile(factory)
    [answer] = await answers(service, "connect", port, 10000)
    assert answer["errorType"] == "too_large", answer
    assert factory.sent < WIRE_CAP, f"the server sent {factory.sent} bytes before the close"
