"""
Tests for the web page (GET / and GET /static/<name>): headers, the static
files, no way out of the static folder, and a form per probe endpoint whose
fields are those the OpenAPI document lists.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from importlib import resources

from test_openapi import Schemas
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from xmpp_fakes import FakeConnector

from portofcall_xmpp import flows, openapi
from portofcall_xmpp.web import Api

BASE = "http://probe.test"
PROBES = [p for p, item in openapi.document()["paths"].items() if "post" in item]


def static_text(name: str) -> str:
    return resources.files("portofcall_xmpp").joinpath("static", name).read_text("utf-8")


class Page(HTMLParser):
    """The parts of the page these tests look at."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.forms = []
        self.labels = {}
        self.ids = []
        self.tags = []
        self._select = None
        self._label = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "form":
            self.forms.append({"attrs": attrs, "controls": []})
        elif tag in ("input", "select", "textarea") and self.forms:
            control = {"tag": tag, **attrs, "options": []}
            self.forms[-1]["controls"].append(control)
            if tag == "select":
                self._select = control
        elif tag == "option" and self._select is not None:
            self._select["options"].append(attrs.get("value"))
        elif tag == "label":
            self._label = attrs.get("for")
            self.labels[self._label] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "label":
            self._label = None

    def handle_data(self, data):
        if self._label is not None:
            self.labels[self._label] += data


class PageCase(SynchronousTestCase):
    def setUp(self):
        env = flows.Environment(FakeConnector().connect, Clock(), 5.0)
        self.stub = StubTreq(Api(env).resource())

    def get(self, path, method="get"):
        d = getattr(self.stub, method)(BASE + path)
        self.stub.flush()
        response = self.successResultOf(d)
        return response, self.successResultOf(response.content())

    def header(self, response, name):
        values = response.headers.getRawHeaders(name)
        return values[0] if values else None


class ServingTests(PageCase):
    def test_page(self):
        """GET / answers the page as text/html with a strict CSP."""
        response, content = self.get("/")
        self.assertEqual(response.code, 200)
        self.assertEqual(self.header(response, "content-type"), "text/html; charset=utf-8")
        self.assertEqual(content.decode("utf-8"), static_text("index.html"))
        csp = self.header(response, "content-security-policy")
        self.assertEqual(csp, openapi.CONTENT_SECURITY_POLICY)
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        self.assertEqual(directives["default-src"], "'none'")
        self.assertEqual(directives["script-src"], "'self'")
        self.assertEqual(directives["style-src"], "'self'")
        self.assertEqual(directives["connect-src"], "'self'")
        self.assertNotIn("unsafe", csp)
        self.assertEqual(self.header(response, "x-content-type-options"), "nosniff")
        self.assertEqual(self.header(response, "x-frame-options"), "DENY")

    def test_static_files(self):
        """Every known static file is served with its type and the CSP."""
        for name, content_type in openapi.STATIC_FILES.items():
            response, content = self.get("/static/" + name)
            self.assertEqual(response.code, 200, name)
            self.assertEqual(self.header(response, "content-type"), content_type)
            self.assertEqual(
                self.header(response, "content-security-policy"),
                openapi.CONTENT_SECURITY_POLICY,
            )
            self.assertEqual(content.decode("utf-8"), static_text(name))

    def test_head(self):
        """HEAD / answers the headers only."""
        response, content = self.get("/", method="head")
        self.assertEqual((response.code, content), (200, b""))

    def test_no_traversal(self):
        """Only the known file names are served: no path leads out of static/."""
        for path in (
            "/static/../setup.cfg",
            "/static/..%2Fsetup.cfg",
            "/static/..%2f..%2fsetup.cfg",
            "/static/%2e%2e/setup.cfg",
            "/static/..",
            "/static/",
            "/static/nope.js",
            "/static/APP.JS",
            "/static/app.js/x",
            "/static/__init__.py",
            "/static/%2Fetc%2Fpasswd",
            "/setup.cfg",
            "/index.html",
        ):
            response, content = self.get(path)
            self.assertEqual(response.code, 404, path)
            self.assertEqual(json.loads(content), {"success": False, "error": "Not found"})

    def test_static_lookup(self):
        """static_file refuses any name that is not listed."""
        for name in ("../web.py", "/etc/passwd", "static/app.js", "", ".", "app.js\x00"):
            self.assertIsNone(openapi.static_file(name), name)

    def test_post_not_allowed(self):
        """POST / is a JSON 405."""
        response, content = self.get("/", method="post")
        self.assertEqual(response.code, 405)
        self.assertFalse(json.loads(content)["success"])


class PageContentTests(SynchronousTestCase):
    def setUp(self):
        self.text = static_text("index.html")
        self.page = Page(self.text)
        self.schemas = Schemas(openapi.document())

    def form(self, path):
        for form in self.page.forms:
            if "/" + form["attrs"]["data-endpoint"] == path:
                return form
        self.fail("no form for " + path)

    def test_every_endpoint(self):
        """One form per probe endpoint; links to the document and the health check."""
        self.assertEqual(
            sorted("/" + f["attrs"]["data-endpoint"] for f in self.page.forms), sorted(PROBES)
        )
        hrefs = {attrs.get("href") for tag, attrs in self.page.tags if tag == "a"}
        self.assertLessEqual({"api/openapi.json", "api/health"}, hrefs)

    def test_fields(self):
        """Each form has exactly the documented fields, with fitting inputs."""
        for path in PROBES:
            schema = self.schemas.request(path)
            controls = {c["name"]: c for c in self.form(path)["controls"]}
            self.assertEqual(set(controls), set(schema["properties"]), path)
            for name, prop in schema["properties"].items():
                prop = self.schemas.flat(prop)
                control = controls[name]
                where = (path, name)
                self.assertEqual("required" in control, name in schema["required"], where)
                if "enum" in prop:
                    self.assertEqual(control["tag"], "select", where)
                    choices = [o for o in control["options"] if o]
                    self.assertEqual(choices, prop["enum"], where)
                elif prop["type"] == "boolean":
                    self.assertEqual(control["type"], "checkbox", where)
                    self.assertEqual("checked" in control, prop["default"], where)
                elif prop["type"] == "integer":
                    self.assertEqual(control["type"], "number", where)
                    self.assertEqual(int(control["min"]), prop["minimum"], where)
                    self.assertEqual(int(control["max"]), prop["maximum"], where)
                    self.assertEqual(int(control["placeholder"]), prop["default"], where)
                elif name == "password":
                    self.assertEqual(control["type"], "password", where)
                elif name == "message":
                    self.assertEqual(control["tag"], "textarea", where)
                else:
                    self.assertEqual(control["type"], "text", where)

    def test_forms_post(self):
        """Forms never submit by GET (a password must never reach a URL)."""
        for form in self.page.forms:
            self.assertEqual(form["attrs"]["method"], "post")
        self.assertIn("form-action 'none'", openapi.CONTENT_SECURITY_POLICY)

    def test_labels(self):
        """Every control has a label; ids are unique."""
        self.assertEqual(len(self.page.ids), len(set(self.page.ids)))
        for form in self.page.forms:
            for control in form["controls"]:
                self.assertTrue(self.page.labels.get(control["id"], "").strip(), control["id"])

    def test_no_inline_code_or_external_resources(self):
        """Script and style come from static/; nothing inline, nothing from elsewhere."""
        for tag, attrs in self.page.tags:
            self.assertNotIn("style", attrs, tag)
            self.assertFalse([a for a in attrs if a.startswith("on")], tag)
            if tag == "script":
                self.assertIn(attrs.get("src", "").removeprefix("static/"), openapi.STATIC_FILES)
            if tag == "link":
                self.assertIn(attrs["href"].removeprefix("static/"), openapi.STATIC_FILES)
            for name in ("src", "href", "action"):
                self.assertNotIn("//", attrs.get(name) or "", (tag, name))
        self.assertNotIn("<style", self.text)
        self.assertNotIn("<script>", self.text)

    def test_script(self):
        """The script stores nothing and never builds markup from strings."""
        script = static_text("app.js")
        for word in ("localStorage", "sessionStorage", "document.cookie", "innerHTML", "eval("):
            self.assertNotIn(word, script)
        self.assertIn('method: "POST"', script)
        node = shutil.which("node")
        if node is None:
            raise _missing("node is not installed: syntax not checked")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "app.js")
            with open(path, "w", encoding="utf-8") as f:
                f.write(script)
            result = subprocess.run(
                [node, "--check", path], capture_output=True, text=True, timeout=60
            )
        self.assertEqual(result.returncode, 0, result.stderr)


# A real listening service for the browser test: probes fail at once.
SERVER = r"""
from twisted.internet import endpoints, reactor
from twisted.internet.defer import fail
from twisted.web.server import Site

from portofcall_xmpp import flows
from portofcall_xmpp.errors import ConnectError
from portofcall_xmpp.web import Api


def refuse(host, port, protocol):
    return fail(ConnectError("Connection refused"))


site = Site(Api(flows.Environment(refuse, reactor, 5.0)).resource())
endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
endpoint.listen(site).addCallback(lambda port: print(port.getHost().port, flush=True))
reactor.callLater(120, reactor.stop)
reactor.run()
"""

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class BrowserTests(SynchronousTestCase):
    def test_loads_without_errors(self):
        """Headless Chromium loads the page: its script runs, nothing is logged."""
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            raise _missing("chromium is not installed")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True, env=env
        )
        self.addCleanup(server.stdout.close)
        self.addCleanup(server.wait, 10)
        self.addCleanup(server.kill)
        line = server.stdout.readline()
        self.assertTrue(line.strip().isdigit(), "the test server did not start: %r" % (line,))
        port = int(line)
        with tempfile.TemporaryDirectory() as profile:
            result = subprocess.run(
                [
                    chromium,
                    *CHROMIUM_FLAGS,
                    "--user-data-dir=" + profile,
                    "--enable-logging=stderr",
                    "--v=0",
                    "--virtual-time-budget=5000",
                    "--dump-dom",
                    "http://127.0.0.1:%d/" % (port,),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        dom = Page(result.stdout)
        tablists = [attrs for tag, attrs in dom.tags if attrs.get("role") == "tablist"]
        # The script shows the tabs once it has wired them up.
        self.assertEqual(len(tablists), 1)
        self.assertNotIn("hidden", tablists[0], result.stderr[-2000:])
        console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
        self.assertEqual(console, [])


def _missing(reason):
    """Skip for want of a tool, except in CI (CI=true), where that is a failure."""
    if os.environ.get("CI") == "true":
        return AssertionError(reason + " (CI=true: .ci/run must install it)")
    return SkipTest(reason)
