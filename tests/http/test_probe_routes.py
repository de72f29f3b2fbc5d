"""
The probe routes answered without Klein's router (web._Counted: a POST to a
probe path goes straight to its handler; every other request through the
Klein app): the same answers as through Klein for every method and odd path,
every answer counted in /metrics, and a client that goes away mid-probe
cancelling it -- no connection to the XMPP server is left behind.
"""

import json
import socket

import pytest
import pytest_twisted
from conftest import start_service
from hostile import HEADER as HOSTILE_HEADER
from hostile import HostileFactory, Scripted, settle, xmpp_clients
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from xmpp_fakes import FEATURES, HEADER, ApiHarness

from portofcall_xmpp.endpoints import ENDPOINTS

BASE = "http://probe.test"
JSON = {"Content-Type": ["application/json"]}
NOT_FOUND = {"success": False, "error": "Not found"}
NOT_ALLOWED = {"success": False, "error": "Method not allowed"}


def http_counts(text: str) -> dict:
    """portofcall_http_responses_total by status, from the /metrics text."""
    counts = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "portofcall_http_responses_total":
                counts[sample.labels["status"]] = sample.value
    return counts


class RouteCase(ApiHarness, SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()

    def request(self, method, path, data=None, headers=None):
        """C{method path}: the response and its body (bytes)."""
        kwargs = {}
        if data is not None:
            kwargs = {"data": data, "headers": JSON if headers is None else headers}
        d = self.stub.request(method, BASE + path, **kwargs)
        self.stub.flush()
        response = self.successResultOf(d)
        return response, self.successResultOf(response.content())


class MethodsAndPathsTests(RouteCase):
    def test_other_methods_on_every_probe_path(self):
        """Any method but POST on a probe path: the JSON 405 naming POST, as before."""
        self.api()
        for endpoint in ENDPOINTS:
            for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
                response, body = self.request(method, endpoint.path)
                where = (method, endpoint.path)
                self.assertEqual(response.code, 405, where)
                self.assertEqual(response.headers.getRawHeaders("allow"), ["POST"], where)
                self.assertEqual(json.loads(body), NOT_ALLOWED, where)

    def test_head(self):
        """HEAD on a probe path: a 405 naming POST, without a body (twisted.web drops it)."""
        self.api()
        response, body = self.request("HEAD", "/api/xmpp/connect")
        self.assertEqual((response.code, body), (405, b""))
        self.assertEqual(response.headers.getRawHeaders("allow"), ["POST"])

    def test_query_string(self):
        """A POST with a query string runs the probe as without one."""
        answers = []
        for path in ("/api/xmpp/connect", "/api/xmpp/connect?x=1", "/api/xmpp/connect?"):
            self.api([(b"xml:lang='en'>", HEADER + FEATURES)])
            response, body = self.request("POST", path, b'{"host": "example.com"}')
            self.assertEqual(response.code, 200, path)
            answers.append(json.loads(body))
        self.assertTrue(answers[0]["success"])
        self.assertEqual(answers[1], answers[0])
        self.assertEqual(answers[2], answers[0])

    def test_trailing_slash(self):
        """
        A probe path with a trailing slash is a JSON 404 (by any method), as
        it was through Klein alone: no probe runs, no redirect.
        """
        self.api([(b"xml:lang='en'>", HEADER + FEATURES)])
        for endpoint in ENDPOINTS:
            for method in ("POST", "GET"):
                response, body = self.request(method, endpoint.path + "/", b'{"host": "x"}')
                where = (method, endpoint.path + "/")
                self.assertEqual(response.code, 404, where)
                self.assertFalse(response.headers.hasHeader("location"), where)
                self.assertEqual(json.loads(body), NOT_FOUND, where)
        self.assertEqual(self.connector.calls, [])

    def test_odd_spellings(self):
        """
        Spellings of a probe path that are not the path itself go through
        Klein, as before: percent-encoded letters are the path (werkzeug
        decodes them); an encoded slash or a parameter is not.
        """
        for path, status in (
            ("/api/xmpp/%63onnect", 200),
            ("/api/xmpp/connect%2f", 404),
            ("/api/xmpp/connect;x", 404),
            ("/api/xmpp/connect/?x=1", 404),
            ("/API/xmpp/connect", 404),
        ):
            self.api([(b"xml:lang='en'>", HEADER + FEATURES)])
            response, body = self.request("POST", path, b'{"host": "example.com"}')
            self.assertEqual(response.code, status, path)
            if status == 404:
                self.assertEqual(json.loads(body), NOT_FOUND, path)
            else:
                self.assertTrue(json.loads(body)["success"], path)

    def test_refusals_still_json(self):
        """The refusals of a probe route are the same JSON answers through the direct route."""
        self.api()
        response, body = self.request("POST", "/api/xmpp/connect", b"{}", headers={})
        self.assertEqual(
            (response.code, json.loads(body)),
            (415, {"success": False, "error": "Content-Type must be application/json"}),
        )
        response, body = self.request("POST", "/api/xmpp/connect", b"{}")
        self.assertEqual(
            (response.code, json.loads(body)),
            (400, {"success": False, "error": "Missing required parameter: host"}),
        )
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["application/json; charset=utf-8"]
        )


class Recording(Resource):
    """Stands for the Klein app: records the requests it is given, answers 418."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.paths = []

    def render(self, request):
        self.paths.append((request.method, request.uri))
        request.setResponseCode(418)
        return b""


class DirectRouteTests(RouteCase):
    def api_without_klein(self, script=()):
        """The API, with a recorder standing for its Klein app."""
        self.api(script)
        resource = self.app.resource()
        klein = resource._inner = Recording()
        self.stub = StubTreq(resource)
        return klein

    def test_probe_posts_skip_the_router(self):
        """POSTs to a probe path (query string or not) are answered without the Klein app."""
        for path in ("/api/xmpp/connect", "/api/xmpp/connect?x=1"):
            klein = self.api_without_klein([(b"xml:lang='en'>", HEADER + FEATURES)])
            response, body = self.request("POST", path, b'{"host": "example.com"}')
            self.assertEqual((response.code, json.loads(body)["success"]), (200, True), path)
            self.assertEqual(klein.paths, [])

    def test_the_rest_through_the_router(self):
        """Every other request goes to the Klein app."""
        klein = self.api_without_klein()
        for method, path in (
            ("GET", "/api/xmpp/connect"),
            ("POST", "/api/xmpp/connect/"),
            ("POST", "/api/xmpp/%63onnect"),
            ("POST", "/api/health"),
        ):
            response, _ = self.request(method, path, b"{}")
            self.assertEqual(response.code, 418, (method, path))
        self.assertEqual(len(klein.paths), 4)


class CountedTests(RouteCase):
    def metrics(self):
        response, body = self.request("GET", "/metrics")
        self.assertEqual(response.code, 200)
        return http_counts(body.decode())

    def test_direct_answers_counted(self):
        """/metrics counts every answer by status, those of the direct route included."""
        self.api([(b"xml:lang='en'>", HEADER + FEATURES)])
        self.assertEqual(self.metrics(), {})
        self.request("POST", "/api/xmpp/connect?x=1", b'{"host": "example.com"}')  # 200
        self.request("POST", "/api/xmpp/connect", b"{nope")  # 400
        self.request("POST", "/api/xmpp/connect", b'{"port": NaN}')  # 400
        self.request("POST", "/api/xmpp/login", b"{}", headers={})  # 415
        self.request("POST", "/api/xmpp/connect", b"x" * 70000)  # 413
        self.request("GET", "/api/xmpp/connect")  # 405, through Klein
        self.request("POST", "/api/xmpp/connect/", b"{}")  # 404, through Klein
        self.assertEqual(
            self.metrics(),
            {"200": 2.0, "400": 2.0, "413": 1.0, "415": 1.0, "405": 1.0, "404": 1.0},
        )

    def test_errors_counted(self):
        """An internal error (500) and a refusal for too many probes (429) are counted."""

        def broken(host, port, proto):
            raise RuntimeError("internals")

        self.api(connect=broken)
        response, _ = self.request("POST", "/api/xmpp/connect", b'{"host": "example.com"}')
        self.assertEqual(response.code, 500)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.metrics()["500"], 1.0)

        self.api([], max_concurrent=1)
        first = self.stub.post(
            BASE + "/api/xmpp/connect", data=b'{"host": "example.com"}', headers=JSON
        )
        self.stub.flush()
        response, _ = self.request("POST", "/api/xmpp/connect", b'{"host": "example.com"}')
        self.assertEqual(response.code, 429)
        # The first probe is still running: not answered, not counted.
        self.assertEqual(self.metrics(), {"429": 1.0})
        self.clock.advance(10)
        self.stub.flush()
        self.assertEqual(self.successResultOf(first).code, 200)
        # The first probe's answer and the previous GET /metrics.
        self.assertEqual(self.metrics(), {"429": 1.0, "200": 2.0})


# -- on a real listening port


@pytest.fixture(scope="module")
def patient_service():
    """The API with loopback allowed and a read timeout far beyond any test."""
    running = start_service("--allow-private", "--read-timeout", "120000")
    try:
        yield running
    finally:
        running.stop()


class HTTPClient(Protocol):
    """Sends one request as is; keeps what comes back; C{closed} fires when the connection ends."""

    def __init__(self, data: bytes):
        self.data = data
        self.received = b""
        self.closed = Deferred()

    def connectionMade(self):
        self.transport.write(self.data)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.closed.callback(self.received)


async def http_client(service, data: bytes) -> HTTPClient:
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    client = HTTPClient(data)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", service.port.getHost().port)
    await connectProtocol(endpoint, client)
    return client


def post(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def parse_answer(raw: bytes):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest_twisted.ensureDeferred
async def test_client_gone_cancels_probe(patient_service):
    """
    A client that disconnects while its probe waits on a silent server
    cancels the probe: the log says the client went away, nothing is
    answered or counted, and no connection to the server is left open.  While
    the probe waited, its connection had TCP_NODELAY set.
    """
    from twisted.internet import reactor

    silent = HostileFactory(Scripted, script=[(b"version='1.0'", HOSTILE_HEADER)])
    listening = reactor.listenTCP(0, silent, interface="127.0.0.1")
    port = listening.getHost().port
    events = []
    globalLogPublisher.addObserver(events.append)
    api = patient_service.api
    counted = http_counts(api.metrics.render()[0].decode())
    try:
        body = json.dumps({"host": "127.0.0.1", "port": port, "timeout": 60000}).encode()
        client = await http_client(patient_service, post("/api/xmpp/connect?from=test", body))
        await settle(lambda: silent.live and xmpp_clients({port}))
        assert silent.live, "the probe never reached the server"
        [connection] = xmpp_clients({port})
        assert connection.getHandle().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert api.in_flight == 1

        client.transport.abortConnection()
        await client.closed
        await settle(lambda: not silent.live and not xmpp_clients({port}) and not api.in_flight)
        assert not silent.live
        assert xmpp_clients({port}) == []
        assert api.in_flight == 0
        gone = [e for e in events if "client went away" in e.get("log_format", "")]
        assert len(gone) == 1, [formatEvent(e) for e in events]
        assert gone[0]["endpoint"] == "connect"
        assert gone[0]["outcome"] == "cancelled"
        assert formatEvent(gone[0]).startswith(f"connect 127.0.0.1:{port}: client went away")
        assert not [e for e in events if e.get("log_failure") is not None]
        assert http_counts(api.metrics.render()[0].decode()) == counted
    finally:
        globalLogPublisher.removeObserver(events.append)
        await listening.stopListening()


@pytest_twisted.ensureDeferred
async def test_answers_on_a_real_port(patient_service):
    """
    On a real port: a probe with a query string runs (a refused connection,
    answered 200), JSON orjson refuses is a JSON 400, a huge port a 400
    naming the field; each with its Content-Length.
    """
    cases = [
        (b'{"host": "127.0.0.1", "port": 1}', 200, None),
        (b'{"host": "127.0.0.1", "port": NaN}', 400, "Request body is not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, 400, "Request body is not valid JSON"),
        (b'{"host": "\\ud800"}', 400, "Request body is not valid JSON"),
        (b'{"host": "\xff"}', 400, "Request body is not valid JSON"),
        (
            b'{"host": "127.0.0.1", "port": %d}' % 10**30,
            400,
            "port must be an integer from 1 to 65535",
        ),
    ]
    for body, status, error in cases:
        client = await http_client(patient_service, post("/api/xmpp/connect?x=1", body))
        code, headers, answer = parse_answer(await client.closed)
        assert code == status, body[:40]
        assert headers["content-type"] == "application/json; charset=utf-8"
        assert headers["content-length"] == str(len(answer))
        result = json.loads(answer)
        if error is None:
            assert (result["success"], result["errorType"]) == (False, "connect")
        else:
            assert result == {"success": False, "error": error}
