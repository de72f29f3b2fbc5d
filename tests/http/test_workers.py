"""
C{twistd -n portofcall-xmpp --workers N} as an operator runs it: real
processes on loopback.  N worker processes serve the one socket (TCP, UNIX,
TLS) and each says so in /api/health and in the log; a worker killed is
replaced; SIGTERM to the parent stops them all and closes the socket; the
workers end with the parent however it ends; --workers 1 runs no other
process; --demo starts one Prosody for all workers.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from unittest import SkipTest

from twisted.trial.unittest import SynchronousTestCase as TestCase

from portofcall_xmpp.demo import find_prosody

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: How long anything here may take: starting, restarting, stopping.
WAIT = 60
#: The parent's line once it listens (a port number, or a UNIX socket's path).
LISTENING = re.compile(r"portofcall-xmpp workers(?: \(TLS\))? starting on (\d+|'[^']*')")
#: The one process's, with --workers 1.
LISTENING_ALONE = re.compile(r"BoundedSite starting on (\d+)")


def wait_until(test, what: str):
    """Poll C{test()} until it is true (its value), for at most L{WAIT} seconds."""
    deadline = time.monotonic() + WAIT
    while True:
        value = test()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {WAIT} s")
        time.sleep(0.05)


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Whether C{pid} runs (a zombie does not)."""
    found = _stat(pid)
    return found is not None and found[0] != "Z"


def children(pid: int) -> set[int]:
    """The live child processes of C{pid}."""
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            state = _stat(int(name))
            if state is not None and state[1] == pid and state[0] != "Z":
                found.add(int(name))
    return found


class Service:
    """
    C{twistd -n portofcall-xmpp ARGV}, logging to a file in a directory of
    its own; L{start} waits until its workers serve.
    """

    def __init__(self, *argv, workers=2, env=None):
        self.workdir = tempfile.mkdtemp(prefix="portofcall-workers-")
        self.logfile = os.path.join(self.workdir, "service.log")
        self.argv = argv
        self.workers = workers
        self.env = env or {}
        self.process = None

    def start(self):
        path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
        self.output = open(os.path.join(self.workdir, "output"), "wb")
        twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
        twistd += ["-n", "--pidfile=", "--logfile", self.logfile, "portofcall-xmpp"]
        self.process = subprocess.Popen(
            [*twistd, "--workers", str(self.workers), *self.argv],
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env={**os.environ, "PYTHONPATH": path, "TMPDIR": self.workdir, **self.env},
        )
        listening = LISTENING if self.workers > 1 else LISTENING_ALONE
        self.address = wait_until(lambda: self._search(listening), "listening line").group(1)
        if self.workers > 1:
            wait_until(lambda: len(self.serving()) == self.workers, "workers serving")
        return self

    def _search(self, pattern):
        assert self.process.poll() is None, f"twistd exited:\n{self.text()[-3000:]}"
        return re.search(pattern, self.text())

    def text(self) -> str:
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def serving(self) -> set[int]:
        """The pids of the workers whose listening port has started, still running."""
        started = set()
        for line in self.text().splitlines():
            if line.startswith("{"):  # --log-format json
                record = json.loads(line)
                if "workerPid" in record and "starting on" in record["text"]:
                    started.add(record["workerPid"])
            else:
                found = re.search(r"\[worker \d+ pid (\d+)\] BoundedSite.* starting on", line)
                if found:
                    started.add(int(found.group(1)))
        return started & children(self.process.pid)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self.output.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(f"127.0.0.1:{self.address}", timeout=WAIT)


def get(connection, path):
    """GET C{path} on C{connection}: (status, JSON body)."""
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def health(service) -> dict:
    """One GET /api/health on a new connection: its JSON body (status 200)."""
    connection = service.connection()
    try:
        status, body = get(connection, "/api/health")
    finally:
        connection.close()
    assert status == 200, status
    return body


def answering(service, pids: set[int]) -> set[int]:
    """
    Requests GET /api/health, 16 at a time on new connections, until every
    one of C{pids} has answered (the kernel gives each connection to one of
    the workers that wait); the pids that answered.
    """
    seen: dict[int, int] = {}

    def all_seen():
        with ThreadPoolExecutor(16) as pool:
            for body in pool.map(lambda _: health(service), range(32)):
                assert body["status"] == "ok", body
                seen[body["worker"]["pid"]] = body["worker"]["index"]
        return pids <= set(seen)

    wait_until(all_seen, f"answer from each of {sorted(pids)}")
    return set(seen)


class ServedTests(TestCase):
    """One service of two workers for the class, with --log-format json."""

    @classmethod
    def setUpClass(cls):
        cls.service = Service(
            "--log-format", "json", "--allow-private", "--max-concurrent", "7",
            "--listen", "tcp:0:interface=127.0.0.1:backlog=64",
        ).start()  # fmt: skip

    @classmethod
    def tearDownClass(cls):
        cls.service.stop()

    def records(self):
        return [json.loads(line) for line in self.service.text().splitlines()]

    def test_each_worker_serves(self):
        """
        Exactly two worker processes, children of twistd, and each answers
        /api/health naming its index and pid; twistd itself serves nothing.
        """
        pids = children(self.service.process.pid)
        self.assertEqual(len(pids), 2)
        seen = answering(self.service, pids)
        self.assertEqual(seen, pids)
        body = health(self.service)
        self.assertIn(body["worker"]["index"], (1, 2))
        self.assertEqual(body["inFlight"], 0)

    def test_share(self):
        """The parent logs each worker's share of the machine-wide limits."""
        [line] = [r["text"] for r in self.records() if "worker processes serve" in r["text"]]
        self.assertIn("2 worker processes serve 127.0.0.1:", line)
        self.assertIn("at most 4 probes in flight, 500 HTTP connections", line)

    def test_probe_logged_by_its_worker(self):
        """A probe's log record names the worker that ran it (worker, workerPid)."""
        connection = self.service.connection()
        self.addCleanup(connection.close)
        status, body = get(connection, "/api/health")
        worker = body["worker"]
        connection.request(
            "POST",
            "/api/xmpp/connect",
            body=json.dumps({"host": "127.0.0.1", "port": 1, "domain": "worker.test"}),
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        self.assertEqual(json.loads(response.read())["errorType"], "connect")

        def probe_record():
            found = [r for r in self.records() if r.get("domain") == "worker.test"]
            return found and found[0]

        record = wait_until(probe_record, "probe record")
        self.assertEqual(
            (record["worker"], record["workerPid"], record["endpoint"]),
            (worker["index"], worker["pid"], "connect"),
        )

    def test_log_names_workers(self):
        """Each worker's log lines carry its index and pid; the parent's own do not."""
        records = self.records()
        started = {
            (r["worker"], r["workerPid"]) for r in records if "starting on" in r["text"] and
            "worker" in r
        }  # fmt: skip
        self.assertEqual({index for index, _ in started}, {1, 2})
        self.assertEqual({pid for _, pid in started}, children(self.service.process.pid))
        [parent] = [r for r in records if "workers starting on" in r["text"]]
        self.assertNotIn("worker", parent)


class LifecycleTests(TestCase):
    def setUp(self):
        self.service = Service("--listen", "tcp:0:interface=127.0.0.1")
        self.addCleanup(self.service.stop)
        self.service.start()

    def test_kill_worker_then_stop(self):
        """
        A worker killed with SIGKILL is replaced, and the new one serves;
        then SIGTERM to twistd stops every worker, closes the port and twistd exits.
        """
        parent = self.service.process.pid
        first = children(parent)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)

        def replaced():
            now = children(parent)
            return len(now) == 2 and victim not in now and now

        now = wait_until(replaced, "replacement worker")
        [new] = now - first
        self.assertIn(f"(pid {victim}) was killed by signal 9", self.service.text())
        wait_until(lambda: new in self.service.serving(), "replacement serving")
        self.assertEqual(answering(self.service, now), now)

        self.service.process.send_signal(signal.SIGTERM)
        self.assertIn(self.service.process.wait(WAIT), (0, -signal.SIGTERM))
        self.assertEqual([pid for pid in now if alive(pid)], [])
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(self.service.address)), timeout=WAIT)
        self.assertIn("Server Shut Down.", self.service.text())

    def test_parent_killed(self):
        """Workers do not outlive twistd, even one killed with SIGKILL."""
        pids = children(self.service.process.pid)
        self.assertEqual(len(pids), 2)
        self.service.process.kill()
        self.service.process.wait()
        wait_until(lambda: not any(alive(pid) for pid in pids), "workers gone")


class UNIXTests(TestCase):
    def test_unix(self):
        """
        Workers share a UNIX socket: each answers on it; its file keeps the
        mode of --listen; stopping removes it.
        """
        service = Service()
        self.addCleanup(service.stop)
        path = os.path.join(service.workdir, "api.sock")
        service.argv = ("--listen", f"unix:{path}:mode=600")
        service.start()
        pids = children(service.process.pid)

        class UNIXConnection(http.client.HTTPConnection):
            def connect(self):
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.settimeout(WAIT)
                self.sock.connect(path)

        service.connection = lambda: UNIXConnection("localhost")
        self.assertEqual(answering(service, pids), pids)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        service.process.send_signal(signal.SIGTERM)
        service.process.wait(WAIT)
        self.assertFalse(os.path.exists(path))


class TLSTests(TestCase):
    def test_tls(self):
        """--listen ssl:...: each worker answers over TLS, with the endpoint's certificate."""
        from certs import session_certs

        certs = session_certs()
        leaf = certs.ip
        service = Service(
            "--listen",
            f"ssl:0:interface=127.0.0.1:privateKey={leaf.key_path}:certKey={leaf.cert_path}"
            f":extraCertChain={leaf.chain_path}",
        )
        self.addCleanup(service.stop)
        service.start()
        context = ssl.create_default_context(cafile=str(certs.ca_path))
        service.connection = lambda: http.client.HTTPSConnection(
            f"127.0.0.1:{service.address}", timeout=WAIT, context=context
        )
        pids = children(service.process.pid)
        self.assertEqual(answering(service, pids), pids)


class OneWorkerTests(TestCase):
    def test_one_process(self):
        """--workers 1 is the single process of old: no child process, no worker field."""
        service = Service("--listen", "tcp:0:interface=127.0.0.1", workers=1)
        self.addCleanup(service.stop)
        service.start()
        body = health(service)
        self.assertEqual(body["status"], "ok")
        self.assertNotIn("worker", body)
        self.assertEqual(children(service.process.pid), set())


class DemoTests(TestCase):
    def test_demo(self):
        """
        --demo with --workers: twistd starts one Prosody and logs the page's
        URL; every worker answers /api/demo with it; stopping stops Prosody.
        """
        if find_prosody() is None:
            if os.environ.get("CI") == "true":
                raise AssertionError("Prosody is not installed (CI=true)")
            raise SkipTest("Prosody is not installed")
        service = Service("--demo", "--listen", "tcp:0:interface=127.0.0.1")
        self.addCleanup(service.stop)
        service.start()
        self.assertRegex(service.text(), r"Demo: Prosody on 127\.0\.0\.1:\d+ .*; open http://")

        def prosody():
            pattern = f"config {service.workdir}"
            found = subprocess.run(["pgrep", "-f", pattern], capture_output=True)
            return {int(pid) for pid in found.stdout.split()}

        self.assertEqual(len(prosody()), 1)
        pids = children(service.process.pid) - prosody()
        self.assertEqual(len(pids), 2)
        answers = {}

        def each_answers():
            connection = service.connection()
            try:
                _, worker = get(connection, "/api/health")
                status, demo = get(connection, "/api/demo")
            finally:
                connection.close()
            answers[worker["worker"]["pid"]] = (status, demo["domain"], demo["username"])
            return set(answers) == pids

        wait_until(each_answers, "/api/demo from each worker")
        self.assertEqual(set(answers.values()), {(200, "localhost", "alice")})
        service.process.send_signal(signal.SIGTERM)
        service.process.wait(WAIT)
        self.assertEqual(prosody(), set())
