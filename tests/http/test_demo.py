"""
C{twistd -n portofcall-xmpp --demo}, started as the README says (on a free
port): its throw-away Prosody, C{GET /api/demo}, a login and a roster over
HTTP with those values, a login through the page in headless Chromium, and
Prosody gone once twistd stops.
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
from unittest import SkipTest

from browser import BrowserError, evaluate, find_chromium
from twisted.trial.unittest import SynchronousTestCase as TestCase

from portofcall_xmpp.demo import find_prosody

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
URL_LINE = re.compile(r"open (http://127\.0\.0\.1:(\d+)/#\S+)")
#: How long twistd may take to start Prosody and listen.
START_TIMEOUT = 60


#: The page scripts' wait: for a condition, polled, at most a minute.
UNTIL = """
const until = async (test, what) => {
  for (let i = 0; i < 1200; i++) {
    if (test()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error("no " + what);
};
"""


def _missing(reason):
    """Skip for want of a tool, except in CI (CI=true), where that is a failure."""
    if os.environ.get("CI") == "true":
        return AssertionError(reason + " (CI=true: .ci/run must install it)")
    return SkipTest(reason)


def _env(**extra):
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def twistd_argv(*argv):
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *argv]


def prosody_pids(config_dir: str) -> list[str]:
    """Pids of processes whose command line names a file under C{config_dir}."""
    found = subprocess.run(["pgrep", "-f", config_dir], capture_output=True, text=True)
    return found.stdout.split()


class DemoTests(TestCase):
    """One --demo service for the class: started once, stopped at the end."""

    @classmethod
    def setUpClass(cls):
        if find_prosody() is None:
            raise _missing("Prosody is not installed")
        cls.workdir = tempfile.mkdtemp(prefix="portofcall-demo-test-")
        cls.log_path = os.path.join(cls.workdir, "twistd.log")
        cls.log = open(cls.log_path, "wb")
        cls.process = subprocess.Popen(
            twistd_argv("-n", "--pidfile=", "portofcall-xmpp", "--demo",
                        "--listen", "tcp:0:interface=127.0.0.1"),  # fmt: skip
            stdout=cls.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cls.workdir,
            env=_env(TMPDIR=cls.workdir),
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            text = cls.read_log()
            found = URL_LINE.search(text)
            if found:
                cls.page_url, cls.port = found.group(1), int(found.group(2))
                break
            if cls.process.poll() is not None or time.monotonic() > deadline:
                cls.stop()
                raise AssertionError(f"twistd --demo did not log its URL:\n{text[-3000:]}")
            time.sleep(0.05)

    @classmethod
    def read_log(cls) -> str:
        with open(cls.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    @classmethod
    def stop(cls):
        if cls.process.poll() is None:
            cls.process.send_signal(signal.SIGTERM)
            try:
                cls.process.wait(30)
            except subprocess.TimeoutExpired:
                cls.process.kill()
                cls.process.wait()
        cls.log.close()

    @classmethod
    def tearDownClass(cls):
        cls.stop()
        shutil.rmtree(cls.workdir, ignore_errors=True)

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
            return r.status, json.loads(r.read())

    def post(self, path, body):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())

    def test_demo_and_probes(self):
        """
        GET /api/demo names the demo server and account; a /login and a
        /roster with them log in over verified TLS (the demo CA is trusted)
        and read alice's five contacts; the logged URL carries the server.
        """
        status, demo = self.get("/api/demo")
        self.assertEqual(status, 200)
        self.assertEqual(set(demo), {"host", "port", "domain", "username", "password"})
        self.assertEqual((demo["host"], demo["domain"]), ("127.0.0.1", "localhost"))
        self.assertIn(f"#host=127.0.0.1&port={demo['port']}&domain=localhost", self.page_url)
        status, login = self.post("/api/xmpp/login", demo)
        self.assertEqual(status, 200)
        self.assertTrue(login["success"], login)
        self.assertTrue(login["tls"]["negotiated"])
        self.assertTrue(login["tls"]["certificate"]["verified"], login["tls"])
        status, roster = self.post("/api/xmpp/roster", demo)
        self.assertTrue(roster["success"], roster)
        self.assertEqual(roster["roster"]["total"], 5)

    def test_page_login(self):
        """
        The page opened at the logged URL fills its login form from
        /api/demo; Run logs in, and the raw JSON stays collapsed under it.
        """
        if find_chromium() is None:
            raise _missing("chromium is not installed")
        script = UNTIL + """
        (async () => {
          await until(() => document.body.dataset.demo === "on", "demo values");
          document.getElementById("tab-login").click();
          const form = document.getElementById("form-login");
          const filled = ["host", "port", "domain", "username", "password"].filter(
            (name) => form.elements.namedItem(name).value !== "");
          form.querySelector("button.run").click();
          await until(() => document.getElementById("raw").textContent, "answer");
          return {
            filled,
            answer: JSON.parse(document.getElementById("raw").textContent),
            rawOpen: document.getElementById("raw-box").open,
          };
        })()
        """
        try:
            seen = evaluate(self.page_url, script)
        except BrowserError as e:
            self.fail(f"{e}\n{self.read_log()[-2000:]}")
        self.assertEqual(seen["filled"], ["host", "port", "domain", "username", "password"])
        self.assertTrue(seen["answer"]["success"], seen["answer"])
        self.assertEqual(seen["answer"]["jid"], "alice@localhost/portofcall")
        self.assertFalse(seen["rawOpen"])

    def test_narrow_page(self):
        """
        At 400 px wide the tabs stay on one row, and the roster table's
        headers break between words, never inside one.
        """
        if find_chromium() is None:
            raise _missing("chromium is not installed")
        script = UNTIL + """
        (async () => {
          await until(() => document.body.dataset.demo === "on", "demo values");
          const rows = new Set([...document.querySelectorAll('[role="tab"]')].map(
            (tab) => tab.getBoundingClientRect().top));
          document.getElementById("tab-roster").click();
          document.querySelector("#form-roster button.run").click();
          await until(() => document.querySelector("table.roster th"), "roster table");
          const broken = [];
          for (const th of document.querySelectorAll("table.roster th")) {
            const text = th.firstChild;
            let at = 0;
            for (const word of text.textContent.split(" ")) {
              const range = document.createRange();
              range.setStart(text, at);
              range.setEnd(text, at + word.length);
              if (range.getClientRects().length > 1) broken.push(word);
              at += word.length + 1;
            }
          }
          return {tabRows: rows.size, headers: document.querySelectorAll("table.roster th").length,
                  broken, width: window.innerWidth};
        })()
        """
        seen = evaluate(self.page_url, script, width=400)
        self.assertEqual(seen["width"], 400)
        self.assertEqual(seen["tabRows"], 1)
        self.assertGreater(seen["headers"], 0)
        self.assertEqual(seen["broken"], [])

    def test_empty_contact_addresses(self):
        """
        Server information with empty contact address lists shows only the
        kinds that have addresses (never "abuse-addresses: ,").
        """
        if find_chromium() is None:
            raise _missing("chromium is not installed")
        answer = {
            "success": True, "message": "XMPP server information retrieved",
            "host": "127.0.0.1", "port": 5222, "elapsedMs": 1,
            "serverInfo": {
                "identities": [], "features": [], "forms": {}, "software": None,
                "pingMs": None, "errors": {"disco": None, "version": None, "ping": None},
                "contactAddresses": {"abuse-addresses": [], "admin-addresses": [],
                                     "support-addresses": ["mailto:help@localhost"]},
            },
        }  # fmt: skip
        script = UNTIL + """
        (async () => {
          await until(() => document.body.dataset.demo === "on", "demo values");
          const real = window.fetch;
          window.fetch = (url, init) => String(url).endsWith("server-info")
            ? Promise.resolve(new Response(JSON.stringify(ANSWER),
                {status: 200, headers: {"Content-Type": "application/json"}}))
            : real(url, init);
          document.getElementById("tab-server-info").click();
          document.querySelector("#form-server-info button.run").click();
          await until(() => document.getElementById("raw").textContent, "answer");
          return document.getElementById("details").innerText;
        })()
        """.replace("ANSWER", json.dumps(answer))
        shown = evaluate(self.page_url, script)
        self.assertIn("support-addresses: mailto:help@localhost", shown)
        self.assertNotIn("abuse-addresses", shown)
        self.assertNotIn("admin-addresses", shown)


class DemoStopTests(TestCase):
    def test_stops_prosody(self):
        """When twistd stops, the demo Prosody is gone, and so is its directory."""
        if find_prosody() is None:
            raise _missing("Prosody is not installed")
        workdir = tempfile.mkdtemp(prefix="portofcall-demo-stop-")
        self.addCleanup(shutil.rmtree, workdir, True)
        log_path = os.path.join(workdir, "twistd.log")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                twistd_argv("-n", "--pidfile=", "portofcall-xmpp", "--demo",
                            "--listen", "tcp:0:interface=127.0.0.1"),  # fmt: skip
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                env=_env(TMPDIR=workdir),
            )
            try:
                deadline = time.monotonic() + START_TIMEOUT
                while not URL_LINE.search(open(log_path, errors="replace").read()):
                    self.assertIsNone(process.poll(), open(log_path).read()[-3000:])
                    self.assertLess(time.monotonic(), deadline)
                    time.sleep(0.05)
                self.assertTrue(prosody_pids(workdir), "no Prosody under the demo directory")
                process.send_signal(signal.SIGTERM)
                # twistd stops cleanly, then ends by the signal it got.
                self.assertIn(process.wait(30), (0, -signal.SIGTERM))
                self.assertIn("Server Shut Down.", open(log_path).read())
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        self.assertEqual(prosody_pids(workdir), [])
        self.assertEqual([n for n in os.listdir(workdir) if n.startswith("portofcall-demo-")], [])


class NoProsodyTests(TestCase):
    def test_missing_prosody(self):
        """Without Prosody, --demo says how to install it in one line and exits non-zero."""
        empty = tempfile.mkdtemp(prefix="portofcall-no-prosody-")
        self.addCleanup(shutil.rmtree, empty, True)
        result = subprocess.run(
            twistd_argv("-n", "--pidfile=", "portofcall-xmpp", "--demo",
                        "--listen", "tcp:0:interface=127.0.0.1"),  # fmt: skip
            capture_output=True,
            text=True,
            env=_env(
                PROSODY=os.path.join(empty, "prosody"),
                PROSODYCTL=os.path.join(empty, "x"),
                TMPDIR=empty,
            ),
            timeout=60,
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertEqual(
            result.stderr.strip().splitlines(),
            ["portofcall-xmpp: --demo needs Prosody, which is not installed: "
             "apt-get install -y prosody"],
        )  # fmt: skip
        self.assertNotIn("Traceback", result.stdout + result.stderr)
        self.assertEqual(os.listdir(empty), [], "a directory left behind")


class NotDemoTests(TestCase):
    def test_api_demo_404(self):
        """Without --demo, GET /api/demo is a 404."""
        from treq.testing import StubTreq

        from portofcall_xmpp import flows
        from portofcall_xmpp.web import Api

        stub = StubTreq(Api(flows.Environment(None, None)).resource())
        response = self.successResultOf(stub.get("http://localhost/api/demo"))
        self.assertEqual(response.code, 404)
