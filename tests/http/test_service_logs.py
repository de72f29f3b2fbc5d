"""
twistd -n portofcall-xmpp as an operator runs it: --log-format json with
--logfile, and a second service on a port already in use.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from twisted.trial.unittest import SynchronousTestCase as TestCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = "never-in-a-log-Z9"
START_TIMEOUT = 60


def twistd(*argv, **kwargs):
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    return subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", *argv],  # fmt: skip
        env=env,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class JSONLogTests(TestCase):
    def setUp(self):
        workdir = tempfile.mkdtemp(prefix="portofcall-logs-")
        self.addCleanup(shutil.rmtree, workdir, True)
        self.logfile = os.path.join(workdir, "service.log")
        self.process = twistd(
            "--logfile", self.logfile, "portofcall-xmpp", "--log-format", "json",
            "--allow-private", "--listen", "tcp:0:interface=127.0.0.1",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.addCleanup(stop, self.process)
        self.port = int(self.wait_for(r"starting on (\d+)").group(1))

    def records(self):
        try:
            with open(self.logfile, encoding="utf-8") as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []

    def wait_for(self, pattern):
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            for record in self.records():
                found = re.search(pattern, record["text"])
                if found:
                    return found
            self.assertIsNone(self.process.poll(), "twistd exited")
            self.assertLess(time.monotonic(), deadline, f"no {pattern!r} in the log")
            time.sleep(0.05)

    def test_probe_line(self):
        """
        With --log-format json and --logfile, every line of the file is one
        JSON object; a probe's has its fields and never the password; the
        access log is off.
        """
        body = {"host": "127.0.0.1", "port": 1, "username": "alice", "password": SECRET}
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/xmpp/login",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            self.assertEqual(json.loads(response.read())["errorType"], "connect")
        self.wait_for(r"^login 127\.0\.0\.1:1: failed connect")
        [probe] = [r for r in self.records() if r.get("endpoint") == "login"]
        self.assertEqual(
            {k: probe[k] for k in ("endpoint", "host", "port", "domain", "outcome", "errorType")},
            {"endpoint": "login", "host": "127.0.0.1", "port": 1, "domain": "127.0.0.1",
             "outcome": "failed", "errorType": "connect"},
        )  # fmt: skip
        self.assertIsInstance(probe["elapsedMs"], int)
        self.assertIn("phases", probe)
        with open(self.logfile, encoding="utf-8") as f:
            text = f.read()
        self.assertNotIn(SECRET, text)
        self.assertNotIn('"POST /api/xmpp/login', text)


class ListenInUseTests(TestCase):
    def test_one_line(self):
        """
        A second service on a port in use says so in one line (in its log:
        stdout under -n) naming --listen, with no traceback, and exits non-zero.
        """
        import socket

        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        process = twistd(
            "portofcall-xmpp", "--listen", f"tcp:{port}:interface=127.0.0.1",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            out, err = process.communicate(timeout=60)
        finally:
            stop(process)
        self.assertNotEqual(process.returncode, 0)
        self.assertNotIn("Traceback", out + err)
        [line] = [line for line in (out + err).splitlines() if "cannot listen" in line]
        self.assertIn(f"cannot listen on tcp:{port}:interface=127.0.0.1", line)
        self.assertIn("--listen", line)
