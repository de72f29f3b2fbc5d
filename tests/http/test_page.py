"""
Tests for the web page (GET / and GET /static/<name>): headers, the static
files, no way out of the static folder, and a form per probe endpoint whose
fields are those the OpenAPI document lists.

The forms' fields are written once, in <template> field groups that app.js
copies into each form; so the fields are checked on the page as headless
Chromium renders it (its --dump-dom), served by a real local service.
"""

from __future__ import annotations

import functools
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
from portofcall_xmpp.page import CONTENT_SECURITY_POLICY, STATIC_FILES, static_file
from portofcall_xmpp.web import Api

BASE = "http://probe.test"
PROBES = [p for p, item in openapi.document()["paths"].items() if "post" in item]


def static_text(name: str) -> str:
    return resources.files("portofcall_xmpp").joinpath("static", name).read_text("utf-8")


class Page(HTMLParser):
    """
    The parts of the page these tests look at.  What is inside a <template>
    is not part of the page (app.js copies it in), so only its tags are kept.
    """

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.forms = []
        self.labels = {}
        self.texts = {}
        self.ids = []
        self.tags = []
        self.templates = []
        self.data_for = []
        self._template = 0
        self._form = None
        self._select = None
        self._open = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = {k: "" if v is None else v for k, v in attrs}
        self.tags.append((tag, attrs))
        if tag == "template":
            self._template += 1
            self.templates.append(attrs.get("id"))
        if self._template:
            return
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if "data-for" in attrs:
            self.data_for.append((tag, attrs))
        if tag == "form":
            self._form = {"attrs": attrs, "controls": [], "buttons": []}
            self.forms.append(self._form)
        elif tag in ("input", "select", "textarea") and self._form:
            control = {"tag": tag, **attrs, "options": [], "selected": []}
            self._form["controls"].append(control)
            if tag == "select":
                self._select = control
        elif tag == "button" and self._form:
            self._form["buttons"].append(attrs)
        elif tag == "option" and self._select is not None:
            self._select["options"].append(attrs.get("value"))
            if "selected" in attrs:
                self._select["selected"].append(attrs.get("value"))
        if tag not in self.VOID:
            key = ("label", attrs.get("for")) if tag == "label" else ("id", attrs.get("id"))
            self._open.append((tag, key, []))

    def handle_endtag(self, tag):
        if tag == "template":
            self._template -= 1
            return
        if self._template:
            return
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                _, (kind, name), text = self._open.pop(i)
                if name is not None:
                    target = self.labels if kind == "label" else self.texts
                    target[name] = " ".join("".join(text).split())
                break

    def handle_data(self, data):
        if not self._template:
            for _, _, text in self._open:
                text.append(data)

    def form(self, path):
        """The form for the endpoint C{path}."""
        for form in self.forms:
            if "/" + form["attrs"]["data-endpoint"] == path:
                return form
        raise AssertionError("no form for " + path)


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
        self.assertEqual(csp, CONTENT_SECURITY_POLICY)
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
        for name, content_type in STATIC_FILES.items():
            response, content = self.get("/static/" + name)
            self.assertEqual(response.code, 200, name)
            self.assertEqual(self.header(response, "content-type"), content_type)
            self.assertEqual(
                self.header(response, "content-security-policy"),
                CONTENT_SECURITY_POLICY,
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
            self.assertIsNone(static_file(name), name)

    def test_post_not_allowed(self):
        """POST / is a JSON 405."""
        response, content = self.get("/", method="post")
        self.assertEqual(response.code, 405)
        self.assertFalse(json.loads(content)["success"])


class PageContentTests(SynchronousTestCase):
    """The page as served, before its script runs."""

    def setUp(self):
        self.text = static_text("index.html")
        self.page = Page(self.text)

    def test_links(self):
        """Links to the document and the health check; no form before the script runs."""
        hrefs = {attrs.get("href") for tag, attrs in self.page.tags if tag == "a"}
        self.assertLessEqual({"api/openapi.json", "api/health"}, hrefs)
        self.assertEqual(self.page.forms, [])

    def test_groups(self):
        """
        app.js copies fields from every field group on the page (and the
        actions), and every field of a group is a field of some endpoint.
        """
        script = static_text("app.js")
        groups = json.loads(
            script.split("const GROUPS = ", 1)[1].split(";", 1)[0].replace("'", '"')
        )
        self.assertEqual(
            {"group-" + name for name in [*groups, "actions"]}, set(self.page.templates)
        )
        schemas = Schemas(openapi.document())
        fields = set()
        for path in PROBES:
            fields.update(schemas.request(path)["properties"])
        names = {
            attrs["name"] for tag, attrs in self.page.tags if tag in ("input", "select", "textarea")
        }
        self.assertLessEqual(names, fields)

    def test_no_script_no_probe(self):
        """Without the script (which builds the forms) only the notice shows."""
        self.assertIn("<noscript>", self.text)
        mains = [attrs for tag, attrs in self.page.tags if tag == "main"]
        self.assertEqual(len(mains), 1)
        self.assertIn("hidden", mains[0])

    def test_forms_post(self):
        """The CSP allows no form submission by the browser itself."""
        self.assertIn("form-action 'none'", CONTENT_SECURITY_POLICY)

    def test_no_inline_code_or_external_resources(self):
        """Script and style come from static/; nothing inline, nothing from elsewhere."""
        for tag, attrs in self.page.tags:
            self.assertNotIn("style", attrs, tag)
            self.assertFalse([a for a in attrs if a.startswith("on")], tag)
            if tag == "script":
                self.assertIn(attrs.get("src", "").removeprefix("static/"), STATIC_FILES)
            if tag == "link":
                self.assertIn(attrs["href"].removeprefix("static/"), STATIC_FILES)
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


def _browse(fragment=""):
    """
    Serve the page on 127.0.0.1 and have headless Chromium load it (with
    C{fragment}, such as C{"#login"}) and dump the DOM once its script ran.
    """
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise _missing("chromium is not installed")
    return _dump(chromium, fragment)


@functools.cache
def _dump(chromium, fragment, server_code=SERVER, *server_args):
    """Chromium's DOM of the page served by C{server_code}, at C{fragment}."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    server = subprocess.Popen(
        [sys.executable, "-c", server_code, *server_args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = server.stdout.readline()
        assert line.strip().isdigit(), f"the test server did not start: {line!r}"
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
            return subprocess.run(
                [
                    chromium,
                    *CHROMIUM_FLAGS,
                    "--user-data-dir=" + profile,
                    "--enable-logging=stderr",
                    "--v=0",
                    "--virtual-time-budget=5000",
                    "--dump-dom",
                    f"http://127.0.0.1:{int(line)}/{fragment}",
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
    finally:
        server.kill()
        server.wait(10)
        server.stdout.close()


class BrowserTests(SynchronousTestCase):
    """The page as headless Chromium renders it: after app.js built the forms."""

    def setUp(self):
        self.result = _browse()
        self.assertEqual(self.result.returncode, 0, self.result.stderr[-2000:])
        self.dom = Page(self.result.stdout)
        self.schemas = Schemas(openapi.document())

    def test_loads_without_errors(self):
        """The script runs and shows the page; nothing is logged."""
        mains = [attrs for tag, attrs in self.dom.tags if tag == "main"]
        self.assertEqual(len(mains), 1)
        self.assertNotIn("hidden", mains[0], self.result.stderr[-2000:])
        tablists = [attrs for tag, attrs in self.dom.tags if attrs.get("role") == "tablist"]
        self.assertEqual(len(tablists), 1)
        self.assertNotIn("hidden", tablists[0])
        console = [line for line in self.result.stderr.splitlines() if ":CONSOLE" in line]
        self.assertEqual(console, [])

    def test_every_endpoint(self):
        """One form per probe endpoint of the document, each posting to it."""
        self.assertEqual(
            sorted("/" + f["attrs"]["data-endpoint"] for f in self.dom.forms), sorted(PROBES)
        )
        self.assertEqual(
            [f["attrs"]["id"] for f in self.dom.forms],
            ["form-" + openapi.document()["paths"][p]["post"]["operationId"] for p in PROBES],
        )

    def test_forms_post(self):
        """Forms never submit by GET (a password must never reach a URL)."""
        for form in self.dom.forms:
            self.assertEqual(form["attrs"]["method"], "post")

    def test_fields(self):
        """Each form has exactly the documented fields, with fitting inputs and limits."""
        for path in PROBES:
            schema = self.schemas.request(path)
            form = self.dom.form(path)
            names = [c["name"] for c in form["controls"]]
            self.assertEqual(sorted(names), sorted(schema["properties"]), path)
            controls = {c["name"]: c for c in form["controls"]}
            for name, prop in schema["properties"].items():
                prop = self.schemas.flat(prop)
                control = controls[name]
                where = (path, name)
                required = name in schema.get("required", [])
                self.assertEqual("required" in control, required, where)
                self.assertEqual("(required)" in self.dom.labels[control["id"]], required, where)
                if "enum" in prop:
                    self.assertEqual(control["tag"], "select", where)
                    choices = [o for o in control["options"] if o]
                    self.assertEqual(choices, prop["enum"], where)
                    if "" not in control["options"]:
                        # No "default" choice: the documented default is chosen.
                        chosen = (control["selected"] or control["options"])[0]
                        self.assertEqual(chosen, prop["default"], where)
                elif prop["type"] == "array":
                    # One of the choices, or the default (all of them).
                    self.assertEqual(control["tag"], "select", where)
                    self.assertEqual(control["options"], ["", *prop["items"]["enum"]], where)
                elif prop["type"] == "boolean":
                    self.assertEqual(control["type"], "checkbox", where)
                    self.assertEqual("checked" in control, prop["default"], where)
                elif prop["type"] == "integer":
                    self.assertEqual(control["type"], "number", where)
                    self.assertEqual(int(control["min"]), prop["minimum"], where)
                    self.assertEqual(int(control["max"]), prop["maximum"], where)
                    self.assertEqual(int(control["placeholder"]), prop["default"], where)
                    help_text = self.dom.texts[control["aria-describedby"]]
                    limits = f"{prop['minimum']}–{prop['maximum']}, default {prop['default']}"
                    self.assertIn(limits, help_text, where)
                else:
                    if name == "password" or prop.get("format") == "password":
                        self.assertEqual(control["type"], "password", where)
                    elif name == "message":
                        self.assertEqual(control["tag"], "textarea", where)
                    else:
                        self.assertEqual(control["type"], "text", where)
                    if "maxLength" in prop:
                        self.assertEqual(int(control["maxlength"]), prop["maxLength"], where)
                    if "default" in prop:
                        self.assertEqual(control["placeholder"], prop["default"], where)

    def test_labels(self):
        """
        Ids are unique; every control has a label, and a help text it points
        at (a checkbox's label says it all); each names the JSON field.
        """
        self.assertEqual(len(self.dom.ids), len(set(self.dom.ids)))
        ids = set(self.dom.ids)
        for form in self.dom.forms:
            prefix = form["attrs"]["id"].removeprefix("form-") + "-"
            for control in form["controls"]:
                where = control["id"]
                self.assertTrue(where.startswith(prefix), where)
                label = self.dom.labels.get(where, "")
                self.assertTrue(label, where)
                if control.get("type") == "checkbox":
                    self.assertNotIn("aria-describedby", control, where)
                    self.assertIn(control["name"], label, where)
                    continue
                help_id = control["aria-describedby"]
                self.assertIn(help_id, ids, where)
                self.assertTrue(self.dom.texts[help_id].startswith(control["name"] + " — "), where)

    def test_buttons(self):
        """Each form ends with its Run button; Cancel shows only while a probe runs."""
        for form in self.dom.forms:
            where = form["attrs"]["id"]
            kinds = [(b["type"], b["class"], "hidden" in b) for b in form["buttons"]]
            self.assertEqual(kinds, [("submit", "run", False), ("button", "cancel", True)], where)
        # Parts meant for other forms are gone; those kept lose the mark.
        self.assertEqual(self.dom.data_for, [])

    def test_tabs(self):
        """The first tab (the check) is open; the URL's fragment (/#login) opens another."""
        for fragment, name in (("", "check"), ("#login", "login"), ("#s2s", "s2s")):
            result = _browse(fragment)
            self.assertEqual(result.returncode, 0, result.stderr[-2000:])
            dom = Page(result.stdout)
            tabs = {a["id"]: a for tag, a in dom.tags if a.get("role") == "tab"}
            self.assertEqual(len(tabs), len(PROBES))
            selected = [i for i, a in tabs.items() if a["aria-selected"] == "true"]
            self.assertEqual(selected, ["tab-" + name], fragment)
            shown = [f["attrs"]["id"] for f in dom.forms if "hidden" not in f["attrs"]]
            self.assertEqual(shown, ["form-" + name], fragment)


# A service whose every probe answers with a transcript of TRANSCRIPT_ENTRIES
# entries, serving the page with a driver script after app.js: the driver runs
# the /connect form, waits for the transcript, and clicks its "show more"
# button as often as the URL's ?more= says.
TRANSCRIPT_ENTRIES = 10000
TRANSCRIPT_SERVER = r"""
import json
import sys

from twisted.internet import endpoints, reactor
from twisted.internet.defer import fail
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from portofcall_xmpp import flows, page
from portofcall_xmpp.errors import ConnectError
from portofcall_xmpp.web import Api

ENTRIES = int(sys.argv[1])
DRIVER = b'''
(() => {
  const more = Number(new URLSearchParams(location.search).get("more") || 0);
  const start = () => {
    // The page builds its forms once it has read the OpenAPI document.
    const form = document.getElementById("form-connect");
    if (!form || document.querySelector("main").hidden) return setTimeout(start, 50);
    form.querySelector("[name=host]").value = "127.0.0.1";
    form.requestSubmit();
    wait();
  };
  const wait = () => {
    if (!document.querySelector("ol.transcript")) return setTimeout(wait, 50);
    for (let i = 0; i < more; i++) document.querySelector("ol.transcript li.more button").click();
  };
  start();
})();
'''
ANSWER = json.dumps({
    "success": False, "error": "Server sent too much", "errorType": "too_large",
    "host": "127.0.0.1", "port": 5222, "elapsedMs": 1,
    "transcript": [
        {"dir": "out" if i % 2 else "in", "ms": i, "xml": f"<presence id='e{i}'/>"}
        for i in range(ENTRIES)
    ],
}).encode()
PAGE = page.static_file("index.html")[0].replace(
    b'<script src="static/app.js" defer></script>',
    b'<script src="static/app.js" defer></script><script src="driver.js" defer></script>',
)


def refuse(host, port, protocol):
    return fail(ConnectError("Connection refused"))


api = Api(flows.Environment(refuse, reactor, 5.0)).resource()


class Answer(Resource):
    isLeaf = True

    def render_POST(self, request):
        request.setHeader(b"content-type", b"application/json")
        return ANSWER


class Root(Resource):
    def getChildWithDefault(self, name, request):
        if request.path.startswith(b"/api/xmpp/"):
            return Answer()
        if name == b"":
            return Data(PAGE, "text/html; charset=utf-8")
        if name == b"driver.js":
            return Data(DRIVER, "text/javascript")
        request.postpath.insert(0, request.prepath.pop())
        return api


endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
endpoint.listen(Site(Root())).addCallback(lambda port: print(port.getHost().port, flush=True))
reactor.callLater(120, reactor.stop)
reactor.run()
"""


class TranscriptRows(HTMLParser):
    """The entries (C{li.in}, C{li.out}) and "show more" rows of the transcript list."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.entries = []
        self.more = []
        self._inside = False
        self._item = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "ol" and attrs.get("class") == "transcript":
            self._inside = True
        elif self._inside and tag == "li":
            self._item = []
            (self.more if attrs.get("class") == "more" else self.entries).append(self._item)

    def handle_endtag(self, tag):
        if tag == "ol":
            self._inside = False

    def handle_data(self, data):
        if self._inside and self._item is not None:
            self._item.append(data)


class TranscriptTests(SynchronousTestCase):
    """A huge transcript, as headless Chromium renders it: only a bounded part is drawn."""

    def render(self, more=0):
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            raise _missing("chromium is not installed")
        result = _dump(chromium, f"?more={more}", TRANSCRIPT_SERVER, str(TRANSCRIPT_ENTRIES))
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        rows = TranscriptRows(result.stdout)
        return ["".join(e) for e in rows.entries], ["".join(m) for m in rows.more]

    def test_capped(self):
        """
        Of 10,000 entries, the first and last 100 are drawn, with one control
        between them that shows more.
        """
        entries, more = self.render()
        self.assertEqual(len(entries), 200)
        self.assertIn("<presence id='e0'/>", entries[0])
        self.assertIn("<presence id='e99'/>", entries[99])
        self.assertIn(f"<presence id='e{TRANSCRIPT_ENTRIES - 100}'/>", entries[100])
        self.assertIn(f"<presence id='e{TRANSCRIPT_ENTRIES - 1}'/>", entries[-1])
        self.assertEqual(more, [f"Show 500 more ({TRANSCRIPT_ENTRIES - 200} not shown)"])

    def test_show_more(self):
        """Each click on the control draws the next 500 entries, in order, before the tail."""
        entries, more = self.render(more=2)
        self.assertEqual(len(entries), 1200)
        self.assertIn("<presence id='e1099'/>", entries[1099])
        self.assertIn(f"<presence id='e{TRANSCRIPT_ENTRIES - 100}'/>", entries[1100])
        self.assertEqual(more, [f"Show 500 more ({TRANSCRIPT_ENTRIES - 1200} not shown)"])


def _missing(reason):
    """Skip for want of a tool, except in CI (CI=true), where that is a failure."""
    if os.environ.get("CI") == "true":
        return AssertionError(reason + " (CI=true: .ci/run must install it)")
    return SkipTest(reason)
