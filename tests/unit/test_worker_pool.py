"""Tests for portofcall_xmpp.workers (--workers) and its options, with fake processes."""

from __future__ import annotations

import io
import json
import os
import socket

from twisted.application.service import IService
from twisted.internet import defer
from twisted.internet.error import CannotListenError, ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger, LogLevel, LogPublisher, eventFromJSON, formatEvent
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from portofcall_xmpp import tap, workers
from portofcall_xmpp.workers import (
    LISTEN_FD,
    LOG_FD,
    RESTART_MAX,
    STABLE_AFTER,
    STOP_GRACE,
    WorkerPool,
    share,
    worker_config,
)


def parse(*argv):
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


class OptionTests(SynchronousTestCase):
    def test_default(self):
        """--workers is 1 by default: one process, as ever."""
        self.assertEqual(parse()["workers"], 1)
        self.assertEqual(parse("--workers", "4")["workers"], 4)

    def test_bad_values(self):
        """0, negative, too many or not a number: a usage error naming --workers."""
        for value in ("0", "-1", "-8", "many", "1.5", str(tap.MAX_WORKERS + 1)):
            with self.assertRaises(usage.UsageError) as cm:
                parse("--workers", value)
            self.assertIn("--workers", str(cm.exception))

    def test_share(self):
        """A worker's share is the total divided by the workers, rounded up, at least 1."""
        self.assertEqual(share(200, 1), 200)
        self.assertEqual(share(200, 2), 100)
        self.assertEqual(share(200, 3), 67)
        self.assertEqual(share(1, 4), 1)

    def test_config(self):
        """
        Each worker gets its share of --max-concurrent, --max-connections and
        --max-buffered-bytes; the rate limits are per process (unchanged);
        files are named by absolute paths (a worker may run elsewhere).
        """
        options = parse(
            "--workers", "3", "--max-concurrent", "10", "--max-connections", "1000",
            "--max-buffered-bytes", "33554432", "--per-target-rate", "60",
            "--max-failed-logins", "10", "--dns-server", "127.0.0.53:53",
        )  # fmt: skip
        options["probe-config"] = "modules.yml"
        config = worker_config(options, MemoryReactorClock(), demo={"host": "127.0.0.1"})
        values = config["options"]
        self.assertEqual(
            (values["max-concurrent"], values["max-connections"], values["max-buffered-bytes"]),
            (4, 334, 11184811),
        )
        self.assertEqual((values["per-target-rate"], values["max-failed-logins"]), (60, 10))
        self.assertEqual(values["probe-config"], os.path.abspath("modules.yml"))
        self.assertEqual(config["demo"], {"host": "127.0.0.1"})
        self.assertEqual(json.loads(json.dumps(config)), {**config, "options": {
            **values, "dns-server": ["127.0.0.53", 53]}})  # fmt: skip


class MakeServiceTests(SynchronousTestCase):
    def test_one_worker(self):
        """--workers 1: the one process serves, as without the option."""
        reactor = MemoryReactorClock()
        service = tap.makeService(parse("--workers", "1", "--listen", "tcp:8181"), reactor)
        self.assertEqual([type(s) for s in service if isinstance(s, WorkerPool)], [])
        service.startService()
        self.addCleanup(service.stopService)
        [(port, factory, _, _)] = reactor.tcpServers
        self.assertEqual((port, type(factory).__name__), (8181, "BoundedSite"))

    def test_workers(self):
        """--workers 2: a WorkerPool of two on --listen, each with its share; no site here."""
        service = tap.makeService(
            parse("--workers", "2", "--listen", "tcp:8181", "--max-concurrent", "9"),
            MemoryReactorClock(),
        )
        [pool] = list(service)
        self.assertIsInstance(pool, WorkerPool)
        self.assertEqual(pool.count, 2)
        self.assertEqual(pool.config["options"]["max-concurrent"], 5)
        self.assertEqual(pool.config["options"]["listen"], "tcp:8181")


# --------------------------------------------------------------------------
# Fakes: a listening port, its endpoint, processes and a reactor that spawns them


class FakePort:
    addressFamily = socket.AF_INET

    def __init__(self):
        self.reading = True
        self.listening = True
        self.factory = None

    def fileno(self):
        return 17

    def stopReading(self):
        self.reading = False

    def stopListening(self):
        self.listening = False

    def getHost(self):
        from twisted.internet.address import IPv4Address

        return IPv4Address("TCP", "127.0.0.1", 8181)


class FakeEndpoint:
    def __init__(self, port=None, error=None):
        self.port = port
        self.error = error
        self.factories = []

    def listen(self, factory):
        self.factories.append(factory)
        if self.error is not None:
            return defer.fail(self.error)
        self.port.factory = factory
        return defer.succeed(self.port)


class FakeProcess:
    def __init__(self, proto, pid, args, childFDs):
        self.proto = proto
        self.pid = pid
        self.args = args
        self.childFDs = childFDs
        self.written = b""
        self.signals = []

    def write(self, data):
        self.written += data

    def signalProcess(self, name):
        if self.pid is None:
            from twisted.internet.error import ProcessExitedAlready

            raise ProcessExitedAlready()
        self.signals.append(name)

    def end(self, reason):
        self.pid = None
        self.proto.processEnded(Failure(reason))


class FakeReactor(Clock):
    def __init__(self):
        super().__init__()
        self.processes = []
        self.when_running = []

    def callWhenRunning(self, f, *args):
        self.when_running.append((f, args))

    def run(self):
        for f, args in self.when_running:
            f(*args)
        self.when_running = []

    def spawnProcess(self, proto, executable, args, env, childFDs):
        process = FakeProcess(proto, 1000 + len(self.processes), args, childFDs)
        self.processes.append(process)
        proto.makeConnection(process)
        return process

    def live(self):
        return [p for p in self.processes if p.pid is not None]


class PoolTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = FakeReactor()
        self.port = FakePort()
        self.events = []
        options = parse("--workers", "2", "--listen", "tcp:8181:interface=127.0.0.1")
        self.pool = WorkerPool(
            self.reactor,
            FakeEndpoint(self.port),
            2,
            worker_config(options, self.reactor),
            publish=self.events.append,
        )

    def start(self):
        self.pool.privilegedStartService()
        self.pool.startService()
        self.reactor.run()

    def test_start(self):
        """
        Once the reactor runs, one process per worker, each with the listening
        socket as fd 3, a pipe for its log as fd 4, its configuration on stdin.
        """
        self.pool.privilegedStartService()
        self.assertFalse(self.port.reading, "the parent accepts nothing itself")
        self.pool.startService()
        self.assertEqual(self.reactor.processes, [])
        self.reactor.run()
        self.assertEqual(len(self.reactor.processes), 2)
        for index, process in enumerate(self.reactor.processes, 1):
            self.assertEqual(process.args[-3:], ["portofcall_xmpp.workers", "--index", str(index)])
            self.assertEqual(process.childFDs, {0: "w", 1: 1, 2: 2, LISTEN_FD: 17, LOG_FD: "r"})
            self.assertTrue(process.written.endswith(b"\n"))
            config = json.loads(process.written)
            self.assertEqual(
                (config["index"], config["family"], config["tls"]),
                (index, socket.AF_INET, False),
            )
            self.assertEqual(config["options"]["max-concurrent"], 100)
        self.assertEqual(sorted(self.pool.workers), [1, 2])

    def test_cannot_listen(self):
        """A --listen that cannot listen stops start-up in one line, as without workers."""
        error = CannotListenError("127.0.0.1", 8181, OSError(98, "Address already in use"))
        top = tap.ServiceTop("tcp:8181")
        WorkerPool(self.reactor, FakeEndpoint(error=error), 2, self.pool.config).setServiceParent(
            top
        )
        with self.assertRaises(SystemExit) as cm:
            IService(top).privilegedStartService()
        self.assertEqual(
            str(cm.exception),
            "portofcall-xmpp: cannot listen on tcp:8181: Address already in use "
            "(choose another endpoint with --listen)",
        )

    def test_not_shareable(self):
        """An endpoint without a socket to share is refused at start-up, in one line."""
        port = FakePort()
        port.addressFamily = None
        pool = WorkerPool(self.reactor, FakeEndpoint(port), 2, self.pool.config)
        with self.assertRaises(SystemExit) as cm:
            pool.privilegedStartService()
        self.assertIn("--workers cannot share the socket of", str(cm.exception))
        self.assertFalse(port.listening)

    def test_restart(self):
        """A worker that ends is started again, in its place, with its index."""
        self.start()
        self.reactor.advance(STABLE_AFTER)
        first = self.reactor.processes[0]
        first.end(ProcessTerminated(signal=9))
        self.assertEqual(len(self.reactor.processes), 2, "not at once: in a later turn")
        self.reactor.advance(0)
        self.assertEqual(len(self.reactor.processes), 3)
        self.assertEqual(self.reactor.processes[2].args[-1], "1")
        self.assertEqual(sorted(self.pool.workers), [1, 2])

    def test_backoff(self):
        """
        A worker that ends soon after its start is started again one second
        after its start at the soonest, then two, four... up to a minute.
        """
        self.start()
        delays = []
        for _ in range(9):
            self.reactor.advance(0.25)
            started = self.reactor.seconds() - 0.25
            [process] = [p for p in self.reactor.live() if p.args[-1] == "1"]
            process.end(ProcessDone(1))
            count = len(self.reactor.processes)
            while len(self.reactor.processes) == count:
                self.reactor.advance(0.25)
            delays.append(self.reactor.seconds() - started)
        self.assertEqual(delays, [1, 2, 4, 8, 16, 32, RESTART_MAX, RESTART_MAX, RESTART_MAX])
        # One that ran long enough is started again at once.
        self.reactor.advance(STABLE_AFTER)
        [process] = [p for p in self.reactor.live() if p.args[-1] == "1"]
        process.end(ProcessDone(1))
        self.reactor.advance(0)
        self.assertIn(1, self.pool.workers)

    def test_stop(self):
        """
        Stopping sends SIGTERM to every worker, SIGKILL to those still there
        after the grace period, and fires once all are gone and the socket
        closed; none is started again.
        """
        self.start()
        one, two = self.reactor.processes
        d = self.pool.stopService()
        self.assertEqual((one.signals, two.signals), (["TERM"], ["TERM"]))
        one.end(ProcessTerminated(signal=15))
        self.assertNoResult(d)
        self.reactor.advance(STOP_GRACE)
        self.assertEqual((one.signals, two.signals), (["TERM"], ["TERM", "KILL"]))
        self.assertNoResult(d)
        self.assertTrue(self.port.listening)
        two.end(ProcessTerminated(signal=9))
        self.successResultOf(d)
        self.assertFalse(self.port.listening)
        self.assertEqual(len(self.reactor.processes), 2)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_quickly(self):
        """Workers that stop in time are not killed; a pending restart is dropped."""
        self.start()
        one, two = self.reactor.processes
        one.end(ProcessDone(0))
        d = self.pool.stopService()
        self.assertEqual(two.signals, ["TERM"])
        two.end(ProcessDone(0))
        self.successResultOf(d)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(len(self.reactor.processes), 2)

    def test_stopped_before_running(self):
        """Stopped before the reactor runs: no worker ever starts."""
        self.pool.privilegedStartService()
        self.pool.startService()
        self.successResultOf(self.pool.stopService())
        self.reactor.run()
        self.assertEqual(self.reactor.processes, [])
        self.assertFalse(self.port.listening)

    def test_relay(self):
        """
        A worker's log events, one JSON line each in any chunks, reach the
        parent's log marked with the worker's index and pid.
        """
        self.start()
        process = self.reactor.processes[1]
        out = io.StringIO()
        observer = workers._pipe_observer(out)
        log = Logger(observer=LogPublisher(observer), namespace="portofcall_xmpp.web.Api")
        log.info("login {target}: ok", target="127.0.0.1:5222", peer=object())
        log.info("second")
        data = out.getvalue().encode()
        for i in range(0, len(data), 7):
            process.proto.childDataReceived(LOG_FD, data[i : i + 7])
        process.proto.childDataReceived(1, b"not a log\n")
        first, second = self.events
        self.assertEqual(formatEvent(first), "login 127.0.0.1:5222: ok")
        self.assertEqual((first["worker"], first["workerPid"]), (2, process.pid))
        self.assertEqual(
            first["log_system"], f"worker 2 pid {process.pid} portofcall_xmpp.web.Api#info"
        )
        self.assertEqual(first["target"], "127.0.0.1:5222")
        self.assertNotIn("peer", first, "an object that is not JSON is left out")
        self.assertEqual(formatEvent(second), "second")

    def test_relay_plain_record(self):
        """
        An event without a failure crosses as its text, level, namespace,
        time and plain fields: formatted once, in the worker.
        """
        self.start()
        process = self.reactor.processes[0]
        out = io.StringIO()
        log = Logger(
            observer=LogPublisher(workers._pipe_observer(out)), namespace="portofcall_xmpp.x"
        )
        log.warn("{a} and {b!r}", a="\xe9", b=[1, "two"], phases=["p1"], when=3.5)
        line = out.getvalue()
        self.assertEqual(line.count("\n"), 1)
        self.assertNotIn('"log_format"', line)
        process.proto.childDataReceived(LOG_FD, line.encode())
        (event,) = self.events
        self.assertEqual(formatEvent(event), "\xe9 and [1, 'two']")
        self.assertIs(event["log_level"], LogLevel.warn)
        self.assertEqual(event["log_namespace"], "portofcall_xmpp.x")
        self.assertEqual((event["phases"], event["when"]), (["p1"], 3.5))
        self.assertEqual(event["log_system"], f"worker 1 pid {process.pid} portofcall_xmpp.x#warn")

    def test_relay_odd_lines(self):
        """A line that is not a log event is relayed as text; an unfinished one at the end too."""
        self.start()
        process = self.reactor.processes[0]
        process.proto.childDataReceived(LOG_FD, b'Traceback (oops)\n\n{"log_form')
        process.end(ProcessDone(0))
        self.assertEqual([formatEvent(e) for e in self.events], ["Traceback (oops)", '{"log_form'])
        self.assertEqual({e["worker"] for e in self.events}, {1})


class PipeObserverTests(SynchronousTestCase):
    def test_failure(self):
        """A failure crosses the pipe with its type, message and traceback."""
        out = io.StringIO()
        log = Logger(observer=LogPublisher(workers._pipe_observer(out)), namespace="n")
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            log.failure("it broke")
        event = eventFromJSON(out.getvalue())
        failure = event["log_failure"]
        self.assertIn("ZeroDivisionError: division by zero", failure.getTraceback())
        self.assertEqual(failure.getErrorMessage(), "division by zero")

    def test_parent_gone(self):
        """Once the pipe fails (the parent is gone), logging goes on without it."""

        class Broken(io.StringIO):
            def write(self, text):
                raise BrokenPipeError()

        log = Logger(observer=LogPublisher(workers._pipe_observer(Broken())), namespace="n")
        log.info("one")
        log.info("two")


class EndedTests(SynchronousTestCase):
    def test_how(self):
        self.assertEqual(workers._ended_how(Failure(ProcessDone(0))), "exited with status 0")
        self.assertEqual(
            workers._ended_how(Failure(ProcessTerminated(exitCode=3))), "exited with status 3"
        )
        self.assertEqual(
            workers._ended_how(Failure(ProcessTerminated(signal=9))), "was killed by signal 9"
        )
