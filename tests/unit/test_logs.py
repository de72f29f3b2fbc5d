"""
The probe's log event (web.probe_event), the JSON log (logs, --log-format)
and the HTTP access log (--access-log).
"""

from __future__ import annotations

import io
import json

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyRequest
from xmpp_fakes import FEATURES, HEADER, ApiHarness, login_script, sasl_failure

from portofcall_xmpp import logs, tap
from portofcall_xmpp.errors import ConnectError

PROBE_FIELDS = {"endpoint", "host", "port", "domain", "outcome", "errorType", "elapsedMs", "phases"}
SECRET = "s3cret-Pa55word"


def parse(*argv):
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


class ProbeEventTests(ApiHarness, SynchronousTestCase):
    """One structured event per probe, whatever its outcome."""

    def setUp(self):
        self.clock = Clock()
        self.events = []

    def probe(self, path, body, script=(), error=None):
        self.api(script, error=error)
        self.app.log = Logger(observer=self.events.append)
        response, answer = self.post(path, body)
        [event] = self.events
        return event, answer

    def test_ok(self):
        """A probe that got through logs outcome ok with where it went."""
        event, _ = self.probe(
            "/api/xmpp/connect",
            {"host": "xmpp.example.com", "port": 5222},
            [(b"xml:lang='en'>", HEADER + FEATURES)],
        )
        self.assertTrue(PROBE_FIELDS <= set(event))
        self.assertEqual(
            {k: event[k] for k in PROBE_FIELDS - {"elapsedMs"}},
            {
                "endpoint": "connect",
                "host": "xmpp.example.com",
                "port": 5222,
                "domain": "xmpp.example.com",
                "outcome": "ok",
                "errorType": None,
                "phases": None,
            },
        )
        self.assertIsInstance(event["elapsedMs"], int)
        self.assertEqual(event["log_level"], LogLevel.info)

    def test_failed_login(self):
        """
        A failed login logs outcome failed, its errorType and the phases
        reached, and no trace of the password; the text is as before.
        """
        event, answer = self.probe(
            "/api/xmpp/login",
            {"host": "xmpp.example.com", "username": "alice", "password": SECRET,
             "mechanism": "PLAIN", "tls": "none"},
            login_script(after_auth=sasl_failure("not-authorized")),
        )  # fmt: skip
        self.assertEqual(event["outcome"], "failed")
        self.assertEqual(event["errorType"], "sasl")
        self.assertEqual(event["phases"], answer["phases"])
        self.assertIn("sasl_plain_sent", event["phases"])
        line = logs.event_as_json(event)
        self.assertNotIn(SECRET, line)
        self.assertNotIn(SECRET, repr(event))
        text = f"login xmpp.example.com:5222: failed sasl in {event['elapsedMs']} ms"
        self.assertEqual(formatEvent(event), text)

    def test_refused(self):
        """A refusal (400) logs outcome refused and its status; nothing of the body."""
        event, _ = self.probe("/api/xmpp/login", {"host": "x.example", "password": SECRET})
        self.assertEqual((event["outcome"], event["status"], event["host"]), ("refused", 400, None))
        self.assertNotIn(SECRET, logs.event_as_json(event))

    def test_connect_error(self):
        """A probe that could not connect logs outcome failed, errorType connect."""
        event, _ = self.probe(
            "/api/xmpp/roster",
            {"host": "xmpp.example.com", "username": "alice", "password": SECRET},
            error=ConnectError("Connection refused"),
        )
        self.assertEqual((event["outcome"], event["errorType"]), ("failed", "connect"))
        self.assertEqual(event["endpoint"], "roster")


class JSONLineTests(SynchronousTestCase):
    """logs.event_as_json: one object a line."""

    def test_fields(self):
        """An event's plain fields, its time, level, namespace and text; one line."""
        out = io.StringIO()
        Logger(namespace="probe.test", observer=logs.json_observer(out)).info(
            "{endpoint} {target}:\nok", endpoint="login", target="h:1", phases=["a", "b"],
            port=5222, errorType=None, extra=object(),
        )  # fmt: skip
        text = out.getvalue()
        self.assertTrue(text.endswith("\n"))
        self.assertEqual(text.count("\n"), 1)
        record = json.loads(text)
        self.assertEqual(record["text"], "login h:1:\nok")
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["namespace"], "probe.test")
        self.assertEqual(record["phases"], ["a", "b"])
        self.assertEqual((record["port"], record["errorType"]), (5222, None))
        self.assertNotIn("extra", record)
        self.assertNotIn("log_format", record)
        self.assertRegex(record["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")

    def test_failure(self):
        """A failure's traceback is in the object, still on one line."""
        out = io.StringIO()
        try:
            raise ValueError("boom")
        except ValueError:
            Logger(observer=logs.json_observer(out)).failure("oops", Failure())
        record = json.loads(out.getvalue())
        self.assertIn("ValueError: boom", record["failure"])
        self.assertEqual(out.getvalue().count("\n"), 1)


class LogFormatOptionTests(SynchronousTestCase):
    """--log-format: text (twistd's own observer) by default, json on request."""

    def test_default_text(self):
        """Text is the default: the service sets no observer of its own."""
        options = parse()
        self.assertEqual(options["log-format"], "text")
        self.assertIsNone(tap.log_observer(options))
        application = self.application(options)
        from twisted.logger import ILogObserver

        self.assertIsNone(application.getComponent(ILogObserver, None))

    def test_bad_format(self):
        """Anything else is a usage error naming the option."""
        from twisted.python import usage

        with self.assertRaises(usage.UsageError) as cm:
            parse("--log-format", "xml")
        self.assertIn("--log-format", str(cm.exception))

    def application(self, options):
        from twisted.application import service

        application = service.Application("portofcall-xmpp")
        tap.makeService(options, MemoryReactorClock()).setServiceParent(application)
        return application

    def test_json_component(self):
        """
        json: the application gets an ILogObserver writing one JSON object
        a line, to the file twistd's --logfile names.
        """
        import os
        import tempfile

        from twisted.logger import ILogObserver

        fd, path = tempfile.mkstemp(suffix=".log")
        os.close(fd)
        self.addCleanup(os.remove, path)

        class Twistd(dict):
            pass

        options = parse("--log-format", "json")
        options.parent = Twistd(logfile=path, nodaemon=True)
        application = self.application(options)
        observer = application.getComponent(ILogObserver)
        Logger(observer=observer).info("{endpoint}: ok", endpoint="srv", outcome="ok")
        with open(path) as f:
            record = json.loads(f.read())
        self.assertEqual((record["endpoint"], record["outcome"]), ("srv", "ok"))

    def test_json_stdout(self):
        """json without --logfile, in the foreground (-n): stdout, as twistd's text log."""
        import sys

        options = parse("--log-format", "json")
        options.parent = {"logfile": None, "nodaemon": True}
        self.assertIs(tap.log_observer(options)._outFile, sys.stdout)


class AccessLogTests(SynchronousTestCase):
    """The HTTP access log is off unless --access-log."""

    def site(self, *argv):
        reactor = MemoryReactorClock()
        tap.makeService(parse("--listen", "tcp:8181:interface=127.0.0.1", *argv),
                        reactor).startService()  # fmt: skip
        site = reactor.tcpServers[0][1]
        self.assertIsInstance(site, Site)
        return site

    def logged(self, site):
        out = io.StringIO()
        site.logFile = out
        request = DummyRequest([b"api", b"health"])
        request.method = b"GET"
        request.uri = b"/api/health"
        request.clientproto = b"HTTP/1.1"
        request.sentLength = 10
        request.code = 200
        site.log(request)
        return out.getvalue().splitlines()

    def test_off_by_default(self):
        """Without --access-log, a request writes nothing to the access log."""
        self.assertEqual(self.logged(self.site()), [])

    def test_on(self):
        """With --access-log, a request writes its line."""
        [line] = self.logged(self.site("--access-log"))
        self.assertIn('"GET /api/health HTTP/1.1" 200', line)

