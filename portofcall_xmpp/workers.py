"""
C{--workers N} (SPEC §1): N processes serving the one listening socket, each
with its own reactor.

The parent (twistd) listens on C{--listen} once, takes that socket out of its
own reactor and runs N worker processes (L{main}: C{python -m
portofcall_xmpp.workers --index I}), each of which adopts the socket
(C{IReactorSocket.adoptStreamPort}) and serves the API; the kernel hands each
new connection to one of them.  The parent serves nothing itself.  It relays
the workers' log events into its own log, each marked with the worker's index
and pid; it starts a worker again when one ends (at most once a second per
worker, less often while it keeps failing soon after its start, so one that
cannot start does not spin: L{RESTART_INTERVAL}); and when it stops it stops
them (SIGTERM, then SIGKILL after L{STOP_GRACE} seconds) and closes the
socket only once they are gone.  A worker stops when its stdin, a pipe from
the parent, closes: none outlives the parent, however the parent ended.

A worker's file descriptors:

    0     a pipe from the parent: one line of JSON (L{worker_config} and the
          worker's index), then nothing until the parent ends
    1, 2  the parent's stdout and stderr
    3     the listening socket (L{LISTEN_FD})
    4     a pipe to the parent: the worker's log events, one JSON object a
          line (L{LOG_FD})

C{--max-concurrent}, C{--max-connections} and C{--max-buffered-bytes} bound
the machine, so each worker gets its share (L{share}); the rate limits, the
metrics and everything else count per process.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import sys

from twisted.application import service
from twisted.internet import defer, error, protocol
from twisted.logger import (
    InvalidLogLevelError,
    Logger,
    LogLevel,
    eventFromJSON,
    formatEvent,
    globalLogPublisher,
    jsonFileLogObserver,
)
from twisted.python.failure import Failure

import portofcall_xmpp

from . import jsonio
from .logs import _LEGACY_KEYS, _plain

#: The listening socket's descriptor in a worker.
LISTEN_FD = 3
#: The descriptor of a worker's pipe to the parent for its log events.
LOG_FD = 4
#: A worker that ends is started again this many seconds after it started, at the soonest;
#: twice as long after each end in a row that came within L{STABLE_AFTER} seconds of its
#: start, up to L{RESTART_MAX} seconds.
RESTART_INTERVAL = 1.0
RESTART_MAX = 60.0
STABLE_AFTER = 30.0
#: Seconds a worker has to stop after SIGTERM, before SIGKILL.
STOP_GRACE = 10.0
#: The options each worker gets a share of (L{share}): they bound the machine.
SHARED_OPTIONS = ("max-concurrent", "max-connections", "max-buffered-bytes")
#: The longest log line a worker may send, in bytes; a longer one is cut.
MAX_LOG_LINE = 16 * 1024 * 1024


def share(total: int, workers: int) -> int:
    """One worker's share of C{total}: C{ceil(total / workers)}, at least 1."""
    return max(1, -(-total // workers))


def worker_config(options, reactor, *, demo=None) -> dict:
    """
    What every worker is told (as JSON) besides its index: the parsed
    C{options} with each worker's share of L{SHARED_OPTIONS} and absolute
    paths, the C{--demo} server's C{demo} info, the reactor to install.
    """
    values = {key: options[key] for key in options.keys()}
    count = options["workers"]
    for key in SHARED_OPTIONS:
        values[key] = share(options[key], count)
    for key in ("ca-file", "probe-config"):
        if values[key] is not None:
            values[key] = os.path.abspath(values[key])
    return {
        "options": values,
        "demo": demo,
        "reactor": type(reactor).__module__,
    }


class _Listener(protocol.Factory):
    """The parent's factory for the listening socket: it never accepts (the workers do)."""

    noisy = False

    def logPrefix(self):
        return "portofcall-xmpp workers"

    def buildProtocol(self, addr):
        return None


def _address(address) -> str:
    """A listening address in words: C{host:port}, or a UNIX socket's path."""
    if getattr(address, "port", None) is not None:
        host = address.host
        return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"
    name = getattr(address, "name", None)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return str(name if name is not None else address)


def _ended_how(reason) -> str:
    """How a process ended, in words, from C{processEnded}'s reason."""
    value = reason.value
    if getattr(value, "signal", None) is not None:
        return f"was killed by signal {value.signal}"
    return f"exited with status {getattr(value, 'exitCode', None)}"


class _Worker(protocol.ProcessProtocol):
    """One worker process, as the parent sees it: its log, its end."""

    def __init__(self, pool: WorkerPool, index: int, started: float):
        self.pool = pool
        self.index = index
        self.started = started
        self.pid = None
        self.ended = defer.Deferred()
        self._buffer = b""

    def connectionMade(self):
        self.pid = self.transport.pid
        config = dict(self.pool.config, index=self.index)
        self.transport.write(json.dumps(config).encode() + b"\n")

    def childDataReceived(self, childFD, data):
        if childFD != LOG_FD:
            return
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) > MAX_LOG_LINE:
            lines.append(self._buffer[:MAX_LOG_LINE])
            self._buffer = b""
        for line in lines:
            self.pool.relay(self, line)

    def signal(self, name: str) -> None:
        try:
            self.transport.signalProcess(name)
        except error.ProcessExitedAlready:
            pass

    def processEnded(self, reason):
        if self._buffer:
            self.pool.relay(self, self._buffer)
            self._buffer = b""
        self.pool.worker_ended(self, reason)
        self.ended.callback(None)


class WorkerPool(service.Service):
    """
    C{--workers}: listens on C{endpoint} (in L{privilegedStartService}, so
    before twistd sheds privileges) and runs C{count} worker processes on that
    socket, once the reactor runs; restarts those that end; stops them all
    when it stops (L{stopService} fires once they are gone and the socket is
    closed).

    @param reactor: an L{IReactorProcess} and L{IReactorTime}.
    @param endpoint: the C{--listen} endpoint.
    @param config: L{worker_config}.
    @param publish: where relayed log events go (the global log publisher).
    """

    log = Logger()

    def __init__(self, reactor, endpoint, count: int, config: dict, *, publish=None):
        self._reactor = reactor
        self._endpoint = endpoint
        self.count = count
        self.config = config
        self._publish = globalLogPublisher if publish is None else publish
        #: The listening port (its socket out of the reactor), once listening.
        self.port = None
        #: The running workers by index (1 to C{count}).
        self.workers: dict[int, _Worker] = {}
        self._restarts = {}
        #: By index: how many times in a row its worker ended soon after it started.
        self._quick_ends: dict[int, int] = {}
        self._stopping = False

    def privilegedStartService(self):
        super().privilegedStartService()
        self._listen()

    def startService(self):
        super().startService()
        if self.port is None:
            self._listen()
        self._reactor.callWhenRunning(self._start_all)

    def _listen(self):
        outcome = []
        self._endpoint.listen(_Listener()).addBoth(outcome.append)
        listen = self.config["options"]["listen"]
        if not outcome:
            raise SystemExit(f"portofcall-xmpp: --workers: {listen} does not listen at once")
        port = outcome[0]
        if isinstance(port, Failure):
            port.raiseException()
        family = getattr(port, "addressFamily", None)
        if family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX) or not hasattr(
            port, "fileno"
        ):
            port.stopListening()
            raise SystemExit(
                f"portofcall-xmpp: --workers cannot share the socket of {listen} "
                "(tcp:, ssl: and unix: endpoints can be shared)"
            )
        # The workers accept; this process only keeps the socket open.
        port.stopReading()
        self.port = port
        from twisted.protocols.tls import TLSMemoryBIOFactory

        self.config = dict(
            self.config,
            family=int(family),
            tls=isinstance(getattr(port, "factory", None), TLSMemoryBIOFactory),
        )

    def _start_all(self):
        if not self.running:
            return
        options = self.config["options"]
        self.log.info(
            "{count} worker processes serve {address}, each with at most {concurrent} probes "
            "in flight, {connections} HTTP connections and {buffered} bytes of server data",
            count=self.count,
            address=_address(self.port.getHost()),
            concurrent=options["max-concurrent"],
            connections=options["max-connections"],
            buffered=options["max-buffered-bytes"],
        )
        for index in range(1, self.count + 1):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        self._restarts.pop(index, None)
        if self._stopping:
            return
        worker = _Worker(self, index, self._reactor.seconds())
        root = os.path.dirname(os.path.dirname(os.path.abspath(portofcall_xmpp.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), root]))
        args = [sys.executable, "-m", "portofcall_xmpp.workers", "--index", str(index)]
        try:
            self._reactor.spawnProcess(
                worker,
                sys.executable,
                args,
                env=env,
                childFDs={0: "w", 1: 1, 2: 2, LISTEN_FD: self.port.fileno(), LOG_FD: "r"},
            )
        except OSError as e:
            self.log.error(
                "worker {worker} could not start: {error}; trying again in {delay} s",
                worker=index,
                error=e,
                delay=RESTART_INTERVAL,
            )
            self._restarts[index] = self._reactor.callLater(RESTART_INTERVAL, self._spawn, index)
            return
        self.workers[index] = worker
        self.log.info(
            "worker {worker} started (pid {workerPid})", worker=index, workerPid=worker.pid
        )

    def relay(self, worker: _Worker, line: bytes) -> None:
        """Publish a worker's log event (one line of JSON), marked with its index and pid."""
        text = line.decode("utf-8", "replace")
        if not text.strip():
            return
        event = None
        try:
            record = jsonio.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and "log_text" in record and "log_format" not in record:
            event = _plain_event(record)
        else:
            try:
                event = eventFromJSON(text)
            except (ValueError, TypeError, AttributeError):
                event = None
        if not isinstance(event, dict):
            event = {"log_format": "{line}", "line": text}
        event = {key: value for key, value in event.items() if value != {"unpersistable": True}}
        event.setdefault("log_time", self._reactor.seconds())
        event["worker"] = worker.index
        event["workerPid"] = worker.pid
        system = event.get("log_system")
        if system is None:
            level = getattr(event.get("log_level"), "name", "-")
            system = f"{event.get('log_namespace', '-')}#{level}"
        prefix = f"worker {worker.index} pid {worker.pid}"
        event["log_system"] = prefix if system == "-" else f"{prefix} {system}"
        self._publish(event)

    def worker_ended(self, worker: _Worker, reason) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        how = _ended_how(reason)
        if self._stopping:
            self.log.info(
                "worker {worker} (pid {workerPid}) {how}",
                worker=worker.index,
                workerPid=worker.pid,
                how=how,
            )
            return
        now = self._reactor.seconds()
        quick = 0
        if now - worker.started < STABLE_AFTER:
            quick = self._quick_ends.get(worker.index, 0) + 1
        self._quick_ends[worker.index] = quick
        interval = min(RESTART_MAX, RESTART_INTERVAL * 2 ** max(0, quick - 1))
        delay = max(0.0, worker.started + interval - now)
        self.log.warn(
            "worker {worker} (pid {workerPid}) {how}; starting it again in {delay:.1f} s",
            worker=worker.index,
            workerPid=worker.pid,
            how=how,
            delay=delay,
        )
        self._restarts[worker.index] = self._reactor.callLater(delay, self._spawn, worker.index)

    def stopService(self):
        """
        Stop every worker (SIGTERM, then SIGKILL after L{STOP_GRACE} seconds)
        and close the socket: a Deferred that fires once they are gone.
        """
        super().stopService()
        self._stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        workers = list(self.workers.values())
        for worker in workers:
            worker.signal("TERM")

        def kill():
            for worker in workers:
                if not worker.ended.called:
                    self.log.warn(
                        "worker {worker} (pid {workerPid}) did not stop in {grace} s; killing it",
                        worker=worker.index,
                        workerPid=worker.pid,
                        grace=STOP_GRACE,
                    )
                    worker.signal("KILL")

        killer = self._reactor.callLater(STOP_GRACE, kill)

        def gone(_):
            if killer.active():
                killer.cancel()
            if self.port is not None:
                port, self.port = self.port, None
                return port.stopListening()

        return defer.gatherResults([worker.ended for worker in workers]).addCallback(gone)


# --------------------------------------------------------------------------
# The worker process


def _pipe_observer(out):
    """
    A log observer writing each event to the text file C{out} as one line
    of JSON.  An event without a failure goes as its text (C{log_text},
    formatted here), level, namespace, time and the fields that are plain
    JSON values (L{logs}' rule): the parent publishes it as it is, and the
    probe's line costs one encoding.  An event with a failure goes whole
    (L{eventFromJSON} reads it back), its exception as its message (an
    exception object is not JSON).  Once C{out} fails (the parent is gone),
    it writes no more.
    """
    write = jsonFileLogObserver(out, recordSeparator="")
    broken = []

    def observe(event):
        if broken:
            return
        failure = event.get("log_failure")
        try:
            if failure is None:
                out.write(_plain_record(event) + "\n")
                return
            failure = copy.copy(failure)
            failure.value = failure.getErrorMessage()
            write(dict(event, log_failure=failure))
        except (OSError, ValueError):
            broken.append(True)

    return observe


def _plain_record(event: dict) -> str:
    """A failure-free log event as the one line of JSON L{WorkerPool.relay} reads."""
    level = event.get("log_level")
    record = {
        "log_text": formatEvent(event),
        "log_level": getattr(level, "name", None),
        "log_namespace": event.get("log_namespace"),
        "log_time": event.get("log_time"),
    }
    if event.get("log_system") is not None:
        record["log_system"] = event["log_system"]
    for key, value in event.items():
        if key.startswith("log_") or key in _LEGACY_KEYS or not _plain(value):
            continue
        record[key] = value
    return jsonio.dumps(record).decode("utf-8")


def _plain_event(record: dict) -> dict:
    """The log event of a L{_plain_record} line."""
    event = dict(record)
    event["log_format"] = "{log_text}"
    try:
        event["log_level"] = LogLevel.levelWithName(record.get("log_level") or "info")
    except InvalidLogLevelError:
        event["log_level"] = LogLevel.info
    if event.get("log_system") is None:
        event.pop("log_system", None)
    if event.get("log_time") is None:
        event.pop("log_time", None)
    return event


def _read_line(fd: int) -> bytes:
    """One line from C{fd}, read byte by byte (nothing after it is consumed)."""
    data = b""
    while not data.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        data += byte
    return data


def _install_reactor(name: str | None):
    """Install the reactor of module C{name} (the parent's), or the default one."""
    if name:
        import importlib

        try:
            install = getattr(importlib.import_module(name), "install", None)
            if install is not None:
                install()
        except (ImportError, TypeError, error.ReactorAlreadyInstalledError):
            pass
    from twisted.internet import reactor

    return reactor


def _shared_unix_port():
    """L{unix.Port} for a socket shared with the parent (made once, on demand)."""
    from twisted.internet import tcp, unix
    from twisted.python import log

    class SharedUNIXPort(unix.Port):
        """
        A UNIX listening port on the parent's socket: unlike an adopted
        L{unix.Port}, it leaves the socket's file to the parent (no chmod at
        start, which a worker under twistd's C{--uid} could not do; no unlink
        at the end) and never shuts the shared socket down.
        """

        _shouldShutdown = False

        def startListening(self):
            tcp._reservedFD.reserve()
            path = os.fsdecode(self._bindPath)
            log.msg(f"{self._getLogPrefix(self.factory)} starting on {path!r}")
            self.factory.doStart()
            self.socket = self._preexistingSocket
            self._preexistingSocket = None
            self.connected = True
            self.fileno = self.socket.fileno
            self.numberAccepts = 100
            self.startReading()

        def connectionLost(self, reason):
            tcp.Port.connectionLost(self, reason)

    return SharedUNIXPort


def adopt(reactor, config: dict, site, fd: int = LISTEN_FD):
    """
    Serve C{site} on the listening socket C{fd} of the parent: C{config}'s
    C{family}; with C{tls}, wrapped in the TLS of its C{--listen} endpoint.
    The listening port.
    """
    factory = site
    if config.get("tls"):
        from twisted.internet.endpoints import serverFromString
        from twisted.protocols.tls import TLSMemoryBIOFactory

        listen = config["options"]["listen"]
        context = getattr(serverFromString(reactor, listen), "_sslContextFactory", None)
        if context is None:
            raise SystemExit(f"portofcall-xmpp: --workers: no TLS context in {listen}")
        factory = TLSMemoryBIOFactory(context, False, site)
    family = config["family"]
    if family == socket.AF_UNIX:
        # What reactor.adoptStreamPort does for AF_UNIX, with the port class above.
        port = _shared_unix_port()._fromListeningDescriptor(reactor, fd, factory)
        port.startListening()
    else:
        port = reactor.adoptStreamPort(fd, family, factory)
    os.close(fd)
    return port


class _Options(dict):
    """A worker's options: the parent's values, and the C{/probe} modules they name."""

    def __init__(self, values: dict):
        super().__init__(values)
        if self["dns-server"] is not None:
            self["dns-server"] = tuple(self["dns-server"])
        from .tap import probe_modules

        self.modules = probe_modules(self["probe-config"])


def _watch_parent(reactor, fd: int, gone):
    """Call C{gone()} once C{fd} (the pipe from the parent) reaches its end."""
    from twisted.internet import abstract, fdesc

    class ParentWatch(abstract.FileDescriptor):
        def fileno(self):
            return fd

        def doRead(self):
            return fdesc.readFromFD(fd, lambda data: None)

        def connectionLost(self, reason):
            super().connectionLost(reason)
            gone()

    fdesc.setNonBlocking(fd)
    watch = ParentWatch(reactor)
    watch.startReading()
    return watch


def main(argv=None) -> int:
    """A worker process: C{python -m portofcall_xmpp.workers --index I} (run by L{WorkerPool})."""
    import argparse

    from twisted.logger import globalLogBeginner

    parser = argparse.ArgumentParser(prog="python -m portofcall_xmpp.workers")
    parser.add_argument("--index", type=int, required=True)
    index = parser.parse_args(argv).index
    # The parent stops its workers (SIGTERM): a Ctrl-C, which the terminal
    # sends to every process of the group, is for the parent alone.  (The
    # reactor leaves an ignored SIGINT ignored.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(LOG_FD, "w", encoding="utf-8", buffering=1)
    globalLogBeginner.beginLoggingTo([_pipe_observer(out)], redirectStandardIO=False)
    log = Logger(namespace="portofcall_xmpp.workers")
    config = json.loads(_read_line(0) or b"null")
    if not isinstance(config, dict):
        log.error("worker {index}: no configuration from the parent", index=index)
        return 1
    reactor = _install_reactor(config.get("reactor"))
    try:
        from .tap import build_site

        site = build_site(
            _Options(config["options"]), reactor, demo=config.get("demo"), worker=index
        )
        adopt(reactor, config, site)
    except SystemExit as e:
        log.error("worker {index} cannot start: {reason}", index=index, reason=str(e.code))
        return 1
    except Exception:
        log.failure("worker {index} cannot start", index=index)
        return 1

    def parent_gone():
        log.info("the parent process is gone; stopping")
        try:
            reactor.stop()
        except error.ReactorNotRunning:  # stopping already
            pass

    _watch_parent(reactor, 0, parent_gone)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
