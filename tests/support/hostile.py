"""
Small XMPP servers that misbehave, for tests: each is a Twisted server on
127.0.0.1 (port 0) that does one bad thing.  They count the connections they
hold, so tests can prove the service left none open.
"""

from __future__ import annotations

import http.client
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from twisted.internet import reactor as default_reactor
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from zope.interface import implementer

ROOT = Path(__file__).resolve().parents[2]

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' id='hostile' from='localhost' "
    b"version='1.0' xml:lang='en'>"
)
FEATURES = (
    b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    b"<mechanism>PLAIN</mechanism></mechanisms></stream:features>"
)
BOUND_FEATURES = (
    b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
)
SUCCESS = b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
ENTITY_BOMB = (
    b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    + b"".join(
        f"<!ENTITY lol{i} '{(f'&lol{i - 1};' if i > 1 else '&lol;') * 10}'>".encode()
        for i in range(1, 10)
    )
    + b"]><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams'>&lol9;"
)


class Hostile(Protocol):
    """Base: remembers itself in the factory while connected."""

    def connectionMade(self):
        if self.factory.sndbuf:
            sock = self.transport.getHandle()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.factory.sndbuf)
        self.factory.live.add(self)
        self.factory.connections += 1
        self.received = b""
        self.start()

    def connectionLost(self, reason):
        self.factory.live.discard(self)
        self.stop()

    def dataReceived(self, data):
        self.received += data
        self.on_data()

    def start(self):
        pass

    def stop(self):
        pass

    def on_data(self):
        pass

    def write(self, data):
        if self.transport is not None and not self.transport.disconnecting:
            self.transport.write(data)
            self.factory.sent += len(data)


class SendAtOnce(Hostile):
    """Send C{self.factory.payload} as soon as the client connects."""

    def start(self):
        self.write(self.factory.payload)


class SendAfterHeader(Hostile):
    """Send the payload once the client's stream header has arrived."""

    sent = False

    def on_data(self):
        if not self.sent and b"version='1.0'" in self.received:
            self.sent = True
            self.write(self.factory.payload)
            if self.factory.then_reset:
                self.transport.abortConnection()


class Drip(Hostile):
    """A valid stream, one byte every C{interval} seconds."""

    def start(self):
        self.data = HEADER + FEATURES
        self.loop = LoopingCall(self.tick)
        self.loop.clock = self.factory.clock
        self.loop.start(self.factory.interval)

    def tick(self):
        if self.data:
            self.write(self.data[:1])
            self.data = self.data[1:]

    def stop(self):
        if self.loop.running:
            self.loop.stop()


class Flood(Hostile):
    """Header and features, then stanzas as fast as it can, never closing."""

    def on_data(self):
        if getattr(self, "loop", None) is None and b"version='1.0'" in self.received:
            self.write(HEADER + FEATURES)
            self.loop = LoopingCall(self.tick)
            self.loop.clock = self.factory.clock
            self.loop.start(0.005)

    def tick(self):
        self.write(b"<message from='x@localhost'><body>" + b"flood " * 1000 + b"</body></message>")

    def stop(self):
        if getattr(self, "loop", None) is not None and self.loop.running:
            self.loop.stop()


class Scripted(Hostile):
    """Answer each marker the client writes with the next reply."""

    def start(self):
        self.script = list(self.factory.script)

    def on_data(self):
        while self.script and self.script[0][0] in self.received:
            marker, reply = self.script.pop(0)
            self.received = self.received[self.received.index(marker) + len(marker) :]
            self.write(reply)


class Paced(Hostile):
    """
    Once the client's stream header has arrived, send the payload
    C{self.factory.chunk} bytes every C{self.factory.interval} seconds.
    """

    loop = None

    def on_data(self):
        if self.loop is None and b"version='1.0'" in self.received:
            self.data = memoryview(self.factory.payload)
            self.loop = LoopingCall(self.tick)
            self.loop.clock = self.factory.clock
            self.loop.start(self.factory.interval)

    def tick(self):
        chunk, self.data = self.data[: self.factory.chunk], self.data[self.factory.chunk :]
        self.write(bytes(chunk))
        if not self.data:
            self.stop()

    def stop(self):
        if self.loop is not None and self.loop.running:
            self.loop.stop()


@implementer(IPullProducer)
class Endless(Scripted):
    """
    Follow C{self.factory.script} like L{Scripted}; once it is done, write
    C{self.factory.unit} again and again, as fast as the client reads, until
    the client closes.
    """

    producing = False

    def on_data(self):
        super().on_data()
        if not self.script and not self.producing and self.transport is not None:
            self.producing = True
            self.transport.registerProducer(self, False)

    def resumeProducing(self):
        self.write(self.factory.unit)

    def stopProducing(self):
        self.producing = False


class HostileFactory(Factory):
    """
    Builds one hostile protocol per connection; C{attrs} configure it
    (C{payload}, C{script}, C{interval}, ...).  C{live} holds the connections
    open now, C{connections} counts them all, C{sent} counts the bytes all
    of them handed to their transports.  With C{sndbuf}, each connection's
    kernel send buffer is that small, so that C{sent} is close to what the
    client has read.
    """

    noisy = False

    def __init__(self, protocol, clock=None, **attrs):
        self.protocol = protocol
        self.clock = clock or default_reactor
        self.live: set = set()
        self.connections = 0
        self.sent = 0
        self.sndbuf = None
        self.then_reset = False
        self.then_close = False
        self.interval = 1.0
        for k, v in attrs.items():
            setattr(self, k, v)


def xmpp_clients(ports, reactor=default_reactor) -> list:
    """The reactor's TCP client sockets connected to one of C{ports} (of loopback servers)."""
    from twisted.internet.tcp import Client

    found = []
    for selectable in set(reactor.getReaders()) | set(reactor.getWriters()):
        if isinstance(selectable, Client):
            try:
                peer = selectable.getPeer()
            except OSError:
                continue
            if peer.port in ports:
                found.append(selectable)
    return found


async def settle(condition, seconds: float = 20.0, reactor=default_reactor) -> None:
    """Wait until C{condition()} holds, for at most C{seconds} (the caller asserts it after)."""
    from twisted.internet.task import deferLater

    deadline = reactor.seconds() + seconds
    while not condition() and reactor.seconds() < deadline:
        await deferLater(reactor, 0.05, lambda: None)


STARTTLS_FEATURES = (
    b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
    b"</mechanisms></stream:features>"
)
PROCEED = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"


class StartTLSThen(Hostile):
    """
    Offer STARTTLS, answer <proceed/>, and when the client's TLS ClientHello
    arrives, answer C{payload} (not TLS) and maybe close.
    """

    proceeded = False

    def on_data(self):
        if self.proceeded:
            self.received = b""
            self.write(self.factory.payload)
            if self.factory.then_close:
                self.transport.loseConnection()
        elif b"<starttls" in self.received:
            self.received = b""
            self.proceeded = True
            self.write(PROCEED)
        elif b"version='1.0'" in self.received:
            self.received = b""
            self.write(HEADER + STARTTLS_FEATURES)


def login_script(after_auth=SUCCESS, bound=BOUND_FEATURES, bind_reply=None):
    steps = [
        (b"version='1.0'", HEADER + FEATURES),
        (b"</auth>", after_auth),
        (b"version='1.0'", HEADER + bound),
    ]
    if bind_reply is not None:
        steps.append((b"</iq>", bind_reply))
    return steps


def servers():
    """Every hostile server: name -> (factory, endpoint, errorType expected)."""
    padding = b"<feature var='urn:example:padding' note='" + b"p" * 60 + b"'/>"
    big = (
        HEADER
        + b"<stream:features>"
        + padding * (5 * 1024 * 1024 // len(padding))
        + b"</stream:features>"
    )
    bind_error = (
        b"<iq type='error' id='bind1'><error type='cancel'><not-allowed "
        b"xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    )
    sasl_failure = b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
    stream_error = (
        b"<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        b"</stream:error></stream:stream>"
    )
    return {
        "garbage": (HostileFactory(SendAtOnce, payload=b"\x16\x03\x01\xff\xfegarbage<<"),
                    "connect", "protocol"),
        "entity_bomb": (HostileFactory(SendAtOnce, payload=ENTITY_BOMB), "connect", "protocol"),
        "drip": (HostileFactory(Drip, interval=0.4), "connect", "timeout"),
        "huge_features": (HostileFactory(SendAfterHeader, payload=big), "connect", "too_large"),
        "header_then_silence": (HostileFactory(SendAfterHeader, payload=HEADER), "connect",
                                "timeout"),
        "reset_after_header": (HostileFactory(SendAfterHeader, payload=HEADER, then_reset=True),
                               "connect", "closed"),
        "invalid_utf8": (HostileFactory(SendAfterHeader,
                                        payload=HEADER + b"<stream:features>\xff\xfe\xfd"),
                         "connect", "protocol"),
        "stream_error": (HostileFactory(SendAfterHeader, payload=HEADER + stream_error),
                         "connect", "stream_error"),
        "bind_error": (HostileFactory(Scripted, script=login_script(bind_reply=bind_error)),
                       "login", "bind"),
        "sasl_failure": (HostileFactory(Scripted, script=login_script(after_auth=sasl_failure)),
                         "login", "sasl"),
        "flood_login": (HostileFactory(Flood), "login", "protocol"),
        "starttls_failure": (
            HostileFactory(
                Scripted,
                script=[
                    (b"version='1.0'", HEADER + STARTTLS_FEATURES),
                    (b"<starttls", b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
                ],
            ),
            "login",
            "tls",
        ),
        "starttls_garbage": (
            HostileFactory(StartTLSThen, payload=b"HTTP/1.1 400 Bad Request\r\n\r\n" * 20),
            "login",
            "tls",
        ),
        "starttls_close": (
            HostileFactory(StartTLSThen, payload=b"", then_close=True),
            "connect",
            "tls",
        ),
    }  # fmt: skip


# --------------------------------------------------------------------------
# Issue 8's hostile payloads (tests/hostile/test_isolation.py, bench/hostile.py)

DISCO_RESULT_OPEN = (
    b"<iq type='result' id='disco1' from='localhost'>"
    b"<query xmlns='http://jabber.org/protocol/disco#info'>"
    b"<identity category='server' type='im'/>"
)
BIND_RESULT = (
    b"<iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
    b"<jid>probe@localhost/portofcall</jid></bind></iq>"
)
PADDING = b"<feature var='urn:example:padding' note='" + b"p" * 40 + b"'/>"


def features_block(children: bytes) -> bytes:
    """A stream header and one features block holding C{children}."""
    return HEADER + b"<stream:features>" + children + b"</stream:features>"


def namespaced_children(n: int) -> bytes:
    """C{n} empty children of a features block, each in its own namespace."""
    return b"".join(f"<f xmlns='urn:example:f{i}'/>".encode() for i in range(n))


def mechanisms(n: int) -> bytes:
    """A SASL mechanisms element offering C{n} distinct mechanisms."""
    return (
        b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
        + b"".join(f"<mechanism>M{i}</mechanism>".encode() for i in range(n))
        + b"</mechanisms>"
    )


def padding(size: int, unit: bytes = PADDING) -> bytes:
    """At least C{size} bytes of C{unit} repeated (children of a features block)."""
    return unit * -(-size // len(unit))


def disco_script(n: int) -> list:
    """A login, then a disco#info result listing C{n} features; version and ping answered."""
    disco = (
        DISCO_RESULT_OPEN
        + b"".join(f"<feature var='urn:example:f{i}'/>".encode() for i in range(n))
        + b"</query></iq>"
    )
    return login_script(bind_reply=BIND_RESULT) + [
        (b"disco1", disco),
        (b"version1", b"<iq type='result' id='version1' from='localhost'>"
                      b"<query xmlns='jabber:iq:version'><name>hostile</name></query></iq>"),
        (b"ping1", b"<iq type='result' id='ping1' from='localhost'/>"),
    ]  # fmt: skip


# --------------------------------------------------------------------------
# The service as a separate process, and /api/health sampled beside it


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """
    The service under C{twistd -n portofcall-xmpp --allow-private} in its own
    process, on a free port of 127.0.0.1, so that its CPU time and peak RSS
    are its own (read from C{/proc}).  C{memory_limit} bounds its address
    space, so that a service that grows without bound fails instead of
    taking the machine's memory.  The rate limits are turned off: hostile
    tests send hundreds of probes to one loopback address.
    """

    def __init__(self, *args: str, log: Path | None = None, memory_limit: int | None = None):
        self.port = free_port()
        argv = [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "-l", str(log) if log else "/dev/null",
            "portofcall-xmpp", "--allow-private",
            "--listen", f"tcp:{self.port}:interface=127.0.0.1:backlog=1024",
            "--per-target-rate", "0", "--max-failed-logins", "0",
            *args,
        ]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))

        def limit_memory():
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=limit_memory if memory_limit else None,
        )
        self.pid = self.proc.pid

    def wait_listening(self, seconds: float = 60.0) -> None:
        """Block until the service accepts connections (a generous start-up bound)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the service did not start listening")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def cpu_seconds(self) -> float:
        """User plus system CPU time the service has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _status_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def peak_rss(self) -> int:
        """The service's peak resident set (VmHWM), in bytes."""
        return self._status_kib("VmHWM") * 1024

    def rss(self) -> int:
        """The service's resident set now (VmRSS), in bytes."""
        return self._status_kib("VmRSS") * 1024

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class HealthSampler:
    """
    A thread that asks C{GET /api/health} every C{interval} seconds (the
    next request starts when the previous one is answered, at the earliest
    one interval after it started) until L{stop}.  C{samples} holds each
    request's latency in seconds; one not answered within C{give_up}
    seconds is recorded as C{give_up} and counted in C{failures}, as is an
    error answer.
    """

    def __init__(self, port: int, interval: float = 0.1, give_up: float = 5.0):
        self.port = port
        self.interval = interval
        self.give_up = give_up
        self.samples: list[float] = []
        self.failures = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> HealthSampler:
        self._thread.start()
        return self

    def _run(self):
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.give_up)
                conn.request("GET", "/api/health")
                ok = conn.getresponse().status == 200
                conn.close()
            except OSError:
                ok = False
            took = time.monotonic() - started
            self.samples.append(took if ok else max(took, self.give_up))
            self.failures += not ok
            self._stopping.wait(max(0.0, self.interval - took))

    def stop(self, wait: bool = True) -> HealthSampler:
        """Stop sampling; with C{wait}, once the request under way is answered."""
        self._stopping.set()
        if wait:
            self._thread.join()
        return self

    @property
    def worst(self) -> float:
        return max(self.samples, default=0.0)
