"""
A resolver that never answers costs the request that asked, not the ones
after it (SPEC §2; issue 8, last row of its table): a /srv for a domain
whose 60 SRV targets never resolve through the system resolver does not
stop a probe by name from another caller, nor a SCRAM login, from
completing meanwhile.

The service is the real one (tap.build_api) on a loopback port, its SRV
questions asked of a DNS server on loopback (tests/support/dns_server.py),
its system resolver's getaddrinfo a stand-in that blocks, in its thread,
for every never-NN name until the test ends, and answers 127.0.0.1 (the test
Prosody) for xmpp.example.test.
"""

import json
import socket
import threading

import pytest
import pytest_twisted
import treq
from dns_server import start_dns_server
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.names import dns
from twisted.web.server import Site

from portofcall_xmpp import tap, web
from portofcall_xmpp.resolve import PER_PROBE_CONCURRENT

TARGETS = 60
SRV_TIMEOUT_MS = 3000


class StuckGetaddrinfo:
    """getaddrinfo that never answers for never-NN names (until released)."""

    def __init__(self):
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.stuck = []

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        if host.startswith("never-"):
            with self.lock:
                self.stuck.append(host)
            self.release.wait(120)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if host == "xmpp.example.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def count(self):
        with self.lock:
            return len(self.stuck)


@pytest.fixture
def starving_service():
    records = {
        b"_xmpp-client._tcp.starve.example.test": [
            dns.Record_SRV(0, 1, 5222, f"never-{i:02d}.example.test".encode())
            for i in range(TARGETS)
        ],
    }
    server = start_dns_server(reactor, b"example.test", records)
    getaddrinfo = StuckGetaddrinfo()
    options = tap.Options()
    options.parseOptions(["--allow-private", "--read-timeout", "5000"])
    api = tap.build_api(
        options, reactor, getaddrinfo=getaddrinfo, resolv_servers=[("127.0.0.1", server.port)]
    )
    site = Site(api.resource())
    site.requestFactory = web.LimitedRequest
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{port.getHost().port}", getaddrinfo
    finally:
        getaddrinfo.release.set()
        pytest_twisted.blockon(port.stopListening())
        pytest_twisted.blockon(server.stop())


async def post(base, path, body):
    response = await treq.post(base + path, json=body, persistent=False)
    return response.code, json.loads(await response.content())


async def until(condition, seconds=30):
    """Wait (bounded) until condition() holds; whether it does is for the caller to assert."""
    deadline = reactor.seconds() + seconds
    while not condition() and reactor.seconds() < deadline:
        await deferLater(reactor, 0.02, lambda: None)


@pytest_twisted.ensureDeferred
async def test_stuck_srv_targets_starve_no_one(prosody, starving_service):
    """While a /srv's targets hang in getaddrinfo, it holds only its own few lookups; a
    /connect by name and a SCRAM /login from other callers succeed before their own
    timeouts; the /srv itself ends with its timeout, starting no more lookups."""
    base, getaddrinfo = starving_service
    srv = treq.post(
        base + "/api/xmpp/srv",
        json={"domain": "starve.example.test", "timeout": SRV_TIMEOUT_MS},
        persistent=False,
    )
    await until(lambda: getaddrinfo.count() >= PER_PROBE_CONCURRENT)
    assert getaddrinfo.count() == PER_PROBE_CONCURRENT

    code, body = await post(
        base,
        "/api/xmpp/connect",
        {"host": "xmpp.example.test", "port": prosody.port, "domain": prosody.domain},
    )
    assert (code, body["success"]) == (200, True), body

    code, body = await post(
        base,
        "/api/xmpp/login",
        {
            "host": "xmpp.example.test",
            "port": prosody.port,
            "domain": prosody.domain,
            "username": "alice",
            "password": prosody.users["alice"],
            "mechanism": "SCRAM-SHA-256",
            "resource": "starvation",
        },
    )
    assert (code, body["success"]) == (200, True), body
    assert body["mechanism"] == "SCRAM-SHA-256"

    response = await srv
    body = json.loads(await response.content())
    assert response.code == 200
    assert (body["success"], body["errorType"]) == (False, "timeout"), body
    # Abandoned at its deadline: no target past the first few was ever looked up.
    assert getaddrinfo.count() == PER_PROBE_CONCURRENT
