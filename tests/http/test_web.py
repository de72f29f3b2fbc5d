"""
Tests for portofcall_xmpp.web through treq's StubTreq (in memory), and the
HTTP rules that only a real listening port shows (the request factory).
"""

import base64
import json

import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from xmpp_fakes import (
    FEATURES,
    HEADER,
    ApiHarness,
    ScriptedTransport,
    login_script,
    sasl_failure,
    stream_error,
)

from portofcall_xmpp.endpoints import ENDPOINTS
from portofcall_xmpp.errors import ConnectError, DestinationBlocked
from portofcall_xmpp.web import MAX_BODY_BYTES

BASE = "http://probe.test"
# The fake servers offer PLAIN without STARTTLS: sending the password in clear is
# the caller's explicit choice (tls: "none", SPEC §2).
AUTH = {"host": "example.com", "username": "alice", "password": "Marker-Pw-77", "tls": "none"}

#: The address a probe reports it dialled: the fake transport's peer.
PEER = ScriptedTransport().getPeer().host


class WebCase(ApiHarness, SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.logged = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)


class RequestRuleTests(WebCase):
    def test_content_type(self):
        """A body without Content-Type application/json gets 415."""
        self.api()
        response, body = self.post("/api/xmpp/connect", {"host": "x"}, headers={})
        self.assertEqual(response.code, 415)
        self.assertEqual(body, {"success": False, "error": "Content-Type must be application/json"})

    def test_form_post(self):
        """A cross-site form post (urlencoded) gets 415."""
        self.api()
        response, _ = self.post(
            "/api/xmpp/connect",
            None,
            raw=b"host=x",
            headers={"Content-Type": ["application/x-www-form-urlencoded"]},
        )
        self.assertEqual(response.code, 415)

    def test_charset_allowed(self):
        """application/json with a charset parameter is accepted."""
        self.api([(b"xml:lang='en'>", HEADER + FEATURES)])
        response, body = self.post(
            "/api/xmpp/connect",
            {"host": "example.com"},
            headers={"Content-Type": ["application/json; charset=utf-8"]},
        )
        self.assertEqual((response.code, body["success"]), (200, True))

    def test_too_large(self):
        """A body over 64 KiB gets 413."""
        self.api()
        raw = json.dumps({"host": "x", "pad": "a" * MAX_BODY_BYTES}).encode()
        response, body = self.post("/api/xmpp/connect", None, raw=raw)
        self.assertEqual(response.code, 413)
        self.assertEqual(body["error"], "Request body exceeds 65536 bytes")

    def test_not_json(self):
        """A body that is not JSON gets 400."""
        self.api()
        response, body = self.post("/api/xmpp/connect", None, raw=b"{host:")
        self.assertEqual((response.code, body["error"]), (400, "Request body is not valid JSON"))

    def test_deep_json(self):
        """Deeply nested JSON is a 400, not a crash."""
        self.api()
        response, _ = self.post("/api/xmpp/connect", None, raw=b"[" * 30000 + b"]" * 30000)
        self.assertEqual(response.code, 400)

    def test_nan(self):
        """NaN is not JSON."""
        self.api()
        response, _ = self.post("/api/xmpp/connect", None, raw=b'{"host": "x", "port": NaN}')
        self.assertEqual(response.code, 400)

    def test_not_json_here(self):
        """
        What orjson refuses -- NaN and the infinities, nesting 5000 levels
        deep, a lone surrogate escape, bytes that are not UTF-8 -- is a JSON
        400 on every probe endpoint, never a 500.
        """
        self.api()
        bodies = [
            b'{"host": "example.com", "port": NaN}',
            b'{"host": "example.com", "port": Infinity}',
            b'{"host": "example.com", "port": -Infinity}',
            b'{"host": "example.com", "port": 1e400}',
            b"[" * 5000 + b"]" * 5000,
            b'{"host":' * 5000 + b'"x"' + b"}" * 5000,
            b'{"host": "\\ud800"}',
            b'{"host": "example.com", "username": "a\\udc00b"}',
            b'{"host": "\xff"}',
            b'\xef\xbb\xbf{"host": "example.com"}',
        ]
        for endpoint in ENDPOINTS:
            for raw in bodies:
                response, body = self.post(endpoint.path, None, raw=raw)
                where = (endpoint.path, raw[:40])
                self.assertEqual(response.code, 400, where)
                self.assertEqual(
                    response.headers.getRawHeaders("content-type"),
                    ["application/json; charset=utf-8"],
                    where,
                )
                self.assertEqual(
                    body, {"success": False, "error": "Request body is not valid JSON"}, where
                )

    def test_huge_integers(self):
        """An integer beyond 64 bits is refused by its field (400), never a 500."""
        self.api()
        for raw, error in [
            (b'{"host": "example.com", "port": %d}' % 10**30, "port"),
            (b'{"host": "example.com", "port": %d}' % -(10**30), "port"),
            (b'{"host": "example.com", "port": %d}' % 2**64, "port"),
            (b'{"host": "example.com", "port": %d}' % (2**64 - 1), "port"),
            (b'{"host": "example.com", "timeout": %d}' % 10**30, "timeout"),
        ]:
            response, body = self.post("/api/xmpp/connect", None, raw=raw)
            self.assertEqual(response.code, 400, raw)
            self.assertEqual(body["success"], False)
            self.assertTrue(body["error"].startswith(f"{error} must be an integer from 1 to "), raw)
        response, body = self.post("/api/xmpp/connect", None, raw=b'{"host": %d}' % 10**30)
        self.assertEqual((response.code, body["error"]), (400, "host must be a string"))

    def test_not_object(self):
        """A JSON value that is not an object gets 400."""
        self.api()
        response, body = self.post("/api/xmpp/connect", ["host"])
        self.assertEqual(
            (response.code, body["error"]), (400, "Request body must be a JSON object")
        )

    def test_missing_host(self):
        """A missing host uses the reference wording."""
        self.api()
        response, body = self.post("/api/xmpp/connect", {})
        self.assertEqual(
            (response.code, body),
            (400, {"success": False, "error": "Missing required parameter: host"}),
        )

    def test_missing_credentials(self):
        """Auth endpoints missing a credential use the reference wording."""
        self.api()
        for path in ("/api/xmpp/login", "/api/xmpp/roster", "/api/xmpp/message"):
            response, body = self.post(path, {"host": "example.com", "username": "a"})
            self.assertEqual(response.code, 400)
            self.assertEqual(body["error"], "host, username, and password are required")

    def test_missing_recipient(self):
        """/message without recipient: 'recipient is required'."""
        self.api()
        response, body = self.post("/api/xmpp/message", AUTH)
        self.assertEqual((response.code, body["error"]), (400, "recipient is required"))

    def test_invalid_field(self):
        """An invalid field gets 400 naming the field."""
        self.api()
        response, body = self.post("/api/xmpp/connect", {"host": "example.com", "port": 70000})
        self.assertEqual(response.code, 400)
        self.assertIn("port", body["error"])

    def test_unsupported_mechanism(self):
        """A mechanism this service cannot run gets 400 naming the field."""
        self.api()
        response, body = self.post("/api/xmpp/login", {**AUTH, "mechanism": "DIGEST-MD5"})
        self.assertEqual(response.code, 400)
        self.assertTrue(body["error"].startswith("mechanism"), body["error"])

    def test_blocked(self):
        """A destination the policy refuses gets 403 with blocked: true."""
        self.api(error=DestinationBlocked("Destination 10.1.2.3 is not allowed"))
        response, body = self.post("/api/xmpp/connect", {"host": "10.1.2.3"})
        self.assertEqual(response.code, 403)
        self.assertEqual(
            body,
            {
                "success": False,
                "error": "Destination 10.1.2.3 is not allowed",
                "blocked": True,
                "resolved": {
                    "via": "host",
                    "record": None,
                    "attempts": [
                        {
                            "target": "10.1.2.3",
                            "port": 5222,
                            "address": "10.1.2.3",
                            "tls": "starttls",
                            "error": "Destination 10.1.2.3 is not allowed",
                        }
                    ],
                },
            },
        )

    def test_too_many(self):
        """One probe more than --max-concurrent gets 429 with Retry-After."""
        pending = Deferred()
        self.api(max_concurrent=1, connect=lambda host, port, proto: pending)
        first = self.stub.post(
            BASE + "/api/xmpp/connect",
            data=b'{"host": "example.com"}',
            headers={"Content-Type": ["application/json"]},
        )
        self.assertEqual(self.app.in_flight, 1)
        response, body = self.post("/api/xmpp/connect", {"host": "example.com"})
        self.assertEqual(response.code, 429)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["1"])
        self.assertFalse(body["success"])
        self.clock.advance(10)
        self.stub.flush()
        self.successResultOf(first)
        self.assertEqual(self.app.in_flight, 0)

    def test_not_found(self):
        """Unknown paths get a JSON 404."""
        self.api()
        response, body = self.post("/api/xmpp/nope", {})
        self.assertEqual((response.code, body["success"]), (404, False))

    def test_doubled_slash(self):
        """
        A path with a doubled slash is a JSON 404 like any unknown path, never
        a redirect (whose Location werkzeug would build from the Host header).
        """
        self.api()
        for method, path in (
            ("post", "/api/xmpp//connect"),
            ("get", "/api//health"),
            ("get", "/static//app.js"),
        ):
            d = getattr(self.stub, method)(
                BASE + path, data=b"{}", headers={"Content-Type": ["application/json"]}
            )
            self.stub.flush()
            response = self.successResultOf(d)
            self.assertEqual(response.code, 404, path)
            self.assertFalse(response.headers.hasHeader("location"), path)
            body = json.loads(self.successResultOf(response.content()))
            self.assertEqual(body, {"success": False, "error": "Not found"}, path)

    def test_odd_requests(self):
        """
        Odd requests, by any method, get a JSON error body: a multipart form
        post is a 415 like any body that is not application/json.
        """
        self.api()
        multipart = (
            b'--x\r\nContent-Disposition: form-data; name="host"\r\n\r\nexample.com\r\n--x--\r\n'
        )
        cases = [
            ("post", "/api/xmpp/connect", "multipart/form-data; boundary=x", multipart, 415),
            ("post", "/api/xmpp/login", "text/plain", b"{}", 415),
            ("post", "/api/xmpp/connect", "application/json-patch+json", b"{}", 415),
            ("put", "/api/xmpp/connect", "multipart/form-data; boundary=x", multipart, 405),
            ("delete", "/api/xmpp/connect", "application/json", b"{}", 405),
            ("patch", "/api/health", "application/json", b"{}", 405),
            ("put", "/nowhere", "multipart/form-data; boundary=x", multipart, 404),
        ]
        for method, path, content_type, data, status in cases:
            d = getattr(self.stub, method)(
                BASE + path, data=data, headers={"Content-Type": [content_type]}
            )
            self.stub.flush()
            response = self.successResultOf(d)
            where = (method, path, content_type)
            self.assertEqual(response.code, status, where)
            body = json.loads(self.successResultOf(response.content()))
            self.assertIs(body["success"], False, where)
            self.assertIsInstance(body["error"], str, where)

    def test_method_not_allowed(self):
        """GET on a probe endpoint gets a JSON 405 whose Allow names POST."""
        self.api()
        d = self.stub.get(BASE + "/api/xmpp/connect")
        self.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 405)
        self.assertEqual(response.headers.getRawHeaders("allow"), ["POST"])
        body = json.loads(self.successResultOf(response.content()))
        self.assertEqual(body, {"success": False, "error": "Method not allowed"})

    def test_health(self):
        """GET /api/health answers status ok."""
        self.api()
        response = self.successResultOf(self.stub.get(BASE + "/api/health"))
        body = json.loads(self.successResultOf(response.content()))
        self.assertEqual((response.code, body["status"]), (200, "ok"))
        self.assertNotIn("worker", body)  # a single process

    def test_internal_error(self):
        """An unexpected exception gets a 500 without a traceback."""

        def broken(host, port, proto):
            raise RuntimeError("secret internals")

        self.api(connect=broken)
        response, body = self.post("/api/xmpp/connect", {"host": "example.com"})
        self.assertEqual(
            (response.code, body), (500, {"success": False, "error": "Internal error"})
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ConnectEndpointTests(WebCase):
    def test_success(self):
        """A successful probe answers the SPEC §3 fields."""
        self.api([(b"xml:lang='en'>", HEADER + FEATURES)])
        response, body = self.post("/api/xmpp/connect", {"host": "example.com"})
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["application/json; charset=utf-8"]
        )
        expected = {
            "success": True,
            "message": "XMPP server reachable",
            "host": "example.com",
            "port": 5222,
            "domain": "example.com",
            "streamId": "s1",
            "serverFrom": "example.com",
            "xmppVersion": "1.0",
            "tls": {"available": False, "required": False, "negotiated": False},
            "saslMechanisms": ["DIGEST-MD5", "PLAIN"],
            "compressionMethods": ["zlib"],
            "features": [],
            "featureNamespaces": [
                "urn:ietf:params:xml:ns:xmpp-sasl",
                "http://jabber.org/features/compress",
                "http://jabber.org/protocol/caps",
            ],
            "saslChannelBindings": [],
            "streamLang": "en",
            "raw": (HEADER + FEATURES).decode(),
            "resolved": {
                "via": "host",
                "record": None,
                "attempts": [
                    {
                        "target": "example.com",
                        "port": 5222,
                        "address": PEER,
                        "tls": "starttls",
                        "error": None,
                    }
                ],
            },
            "warnings": [],
            "elapsedMs": 0,
        }
        self.assertEqual(body, expected)
        self.assertNotIn("phases", body)

    def test_stream_error(self):
        """A stream error answers 200 with the SPEC §3 failure fields."""
        data = HEADER + stream_error("host-unknown", "nope")
        self.api([(b"xml:lang='en'>", data)])
        response, body = self.post("/api/xmpp/connect", {"host": "example.com"})
        self.assertEqual(
            body,
            {
                "success": False,
                "error": "XMPP stream error: host-unknown",
                "errorType": "stream_error",
                "host": "example.com",
                "port": 5222,
                "resolved": {
                    "via": "host",
                    "record": None,
                    "attempts": [
                        {
                            "target": "example.com",
                            "port": 5222,
                            "address": PEER,
                            "tls": "starttls",
                            "error": None,
                        }
                    ],
                },
                "streamErrorText": "nope",
                "raw": data.decode(),
                "elapsedMs": 0,
            },
        )

    def test_non_ascii_answer(self):
        """Non-ASCII text of the server is answered in UTF-8, not as \\u escapes."""
        data = HEADER + stream_error("host-unknown", "B\u00fccher \u20ac \U0001f600")
        self.api([(b"xml:lang='en'>", data)])
        d = self.stub.post(
            BASE + "/api/xmpp/connect",
            data=b'{"host": "example.com"}',
            headers={"Content-Type": ["application/json"]},
        )
        self.stub.flush()
        response = self.successResultOf(d)
        raw = self.successResultOf(response.content())
        self.assertIn("B\u00fccher \u20ac \U0001f600".encode(), raw)
        self.assertNotIn(b"\\u", raw)
        self.assertEqual(json.loads(raw)["streamErrorText"], "B\u00fccher \u20ac \U0001f600")

    def test_connect_error(self):
        """A refused connection answers 200, errorType connect."""
        self.api(error=ConnectError("Connection refused: 203.0.113.9:5222"))
        response, body = self.post("/api/xmpp/connect", {"host": "example.com"})
        self.assertEqual((response.code, body["errorType"]), (200, "connect"))
        self.assertNotIn("raw", body)

    def test_timeout(self):
        """A silent server answers 200 with errorType timeout."""
        self.api([])
        response, body = self.post("/api/xmpp/connect", {"host": "example.com"}, advance=5)
        self.assertEqual((body["errorType"], body["elapsedMs"]), ("timeout", 5000))
        self.assertTrue(body["error"].startswith("Read timeout"))

    def test_transcript(self):
        """transcript: true adds dir/ms/xml entries."""
        self.api([(b"xml:lang='en'>", HEADER + FEATURES)])
        _, body = self.post("/api/xmpp/connect", {"host": "example.com", "transcript": True})
        self.assertEqual([e["dir"] for e in body["transcript"]], ["out", "in", "in", "out"])
        self.assertEqual(set(body["transcript"][0]), {"dir", "ms", "xml"})

    def test_one_log_line(self):
        """Each probe logs one line, without a traceback."""
        self.api([(b"xml:lang='en'>", HEADER + b"garbage<<<")])
        self.post("/api/xmpp/connect", {"host": "example.com"})
        lines = [e for e in self.logged if e.get("log_namespace", "").startswith("portofcall_xmpp")]
        self.assertEqual(len(lines), 1)
        self.assertNotIn("log_failure", lines[0])


class AuthEndpointTests(WebCase):
    def test_login(self):
        """A successful login answers the SPEC §4 fields."""
        self.api(login_script())
        response, body = self.post("/api/xmpp/login", AUTH)
        self.assertEqual(response.code, 200)
        self.assertEqual(body["message"], "XMPP login successful")
        self.assertEqual(body["jid"], "alice@example.com/portofcall-x1")
        self.assertEqual(body["mechanism"], "PLAIN")
        self.assertEqual(body["warnings"], ["credentials sent without TLS"])
        self.assertEqual(set(body["timings"]), set(body["phases"]))
        for key in ("host", "port", "domain", "features", "saslMechanisms", "tls", "elapsedMs"):
            self.assertIn(key, body)

    def test_login_failure(self):
        """A SASL failure answers 200 with errorType sasl and the phases."""
        self.api(login_script(after_auth=sasl_failure("not-authorized")))
        response, body = self.post("/api/xmpp/login", AUTH)
        self.assertEqual(response.code, 200)
        self.assertEqual(body["success"], False)
        self.assertEqual(body["error"], "SASL authentication failed: not-authorized")
        self.assertEqual(body["errorType"], "sasl")
        self.assertEqual(body["phases"], ["stream_opened", "sasl_plain_sent"])

    def test_roster(self):
        """/roster answers the roster with total, version and contacts."""
        reply = (
            b"<iq type='result' id='roster1'><query xmlns='jabber:iq:roster'>"
            b"<item jid='bob@example.com' name='Bob'><group>A</group><group>B</group></item>"
            b"</query></iq>"
        )
        self.api(login_script(tail=[(b"</iq>", reply)]))
        _, body = self.post("/api/xmpp/roster", AUTH)
        self.assertEqual(
            body["roster"],
            {
                "total": 1,
                "version": None,
                "contacts": [
                    {
                        "jid": "bob@example.com",
                        "name": "Bob",
                        "subscription": "none",
                        "ask": None,
                        "groups": ["A", "B"],
                    }
                ],
            },
        )
        self.assertEqual(body["phases"][-1], "roster_received")

    def test_message(self):
        """/message answers message, deliveryError, deliveryErrorCondition and receipt."""
        self.api(login_script())
        _, body = self.post(
            "/api/xmpp/message", {**AUTH, "recipient": "bob@example.com"}, advance=2
        )
        self.assertEqual(body["message"]["to"], "bob@example.com")
        self.assertEqual(body["message"]["body"], "Hello from PortOfCall")
        self.assertTrue(body["message"]["id"].startswith("poc_"))
        self.assertIsNone(body["deliveryError"])
        self.assertIsNone(body["deliveryErrorCondition"])
        self.assertEqual(body["receipt"], {"requested": False, "received": False, "ms": None})
        self.assertEqual(body["phases"][-1], "message_sent")

    def test_no_credentials_leak(self):
        """The password appears in no response, transcript or log line."""
        marker = AUTH["password"]
        encoded = base64.b64encode(b"\0alice\0" + marker.encode()).decode()
        bodies = []
        self.api(login_script())
        bodies.append(self.post("/api/xmpp/login", {**AUTH, "transcript": True})[1])
        self.api(login_script(after_auth=sasl_failure("not-authorized")))
        bodies.append(self.post("/api/xmpp/login", {**AUTH, "transcript": True})[1])
        self.api([])
        bodies.append(self.post("/api/xmpp/login", {**AUTH, "transcript": True}, advance=5)[1])
        text = json.dumps(bodies) + repr(self.logged)
        self.assertIn("[redacted]", text)
        self.assertNotIn(marker, text)
        self.assertNotIn(encoded, text)


# -- on a real listening port (the service's own request factory)


def _raw_http(service, data: bytes) -> Deferred:
    """Send C{data} to C{service} as is; fire with all it answers until it closes."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.internet.protocol import Protocol

    class Collect(Protocol):
        def __init__(self):
            self.chunks = []
            self.done = Deferred()

        def connectionMade(self):
            self.transport.write(data)

        def dataReceived(self, chunk):
            self.chunks.append(chunk)

        def connectionLost(self, reason):
            self.done.callback(b"".join(self.chunks))

    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", service.port.getHost().port)
    proto = Collect()
    return connectProtocol(endpoint, proto).addCallback(lambda _: proto.done)


def _parse_answer(raw: bytes):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return status, headers, body


@pytest_twisted.ensureDeferred
async def test_real_port_doubled_slash(strict_service):
    """On a real port too, a doubled slash is a JSON 404 without a Location."""
    for request in (
        b"POST /api/xmpp//connect HTTP/1.1\r\nHost: evil.example\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        b"GET /api//health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    ):
        status, headers, body = _parse_answer(await _raw_http(strict_service, request))
        assert status == 404, request
        assert "location" not in headers, request
        assert json.loads(body) == {"success": False, "error": "Not found"}


@pytest_twisted.ensureDeferred
async def test_real_port_malformed_multipart(strict_service):
    """A malformed multipart body (no boundary) gets the JSON 415, not an empty 400."""
    body = b"garbage"
    request = (
        b"POST /api/xmpp/connect HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    ) + body
    status, headers, answer = _parse_answer(await _raw_http(strict_service, request))
    assert status == 415
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(answer) == {
        "success": False,
        "error": "Content-Type must be application/json",
    }


class AnswerBudgetTests(WebCase):
    """An answer is charged to the service-wide budget until it is sent (SPEC §2)."""

    def test_released_after_sending(self):
        """A delivered answer leaves nothing charged."""
        self.api([(b"xml:lang='en'>", HEADER + FEATURES)])
        budget = self.app._env.limits.budget
        response, body = self.post("/api/xmpp/connect", {"host": "example.com"})
        self.assertEqual((response.code, body["success"]), (200, True))
        self.assertEqual(budget.used, 0)

    def test_answer_over_budget(self):
        """An answer that would pass the budget is replaced by a short too_large answer."""
        self.api([(b"xml:lang='en'>", HEADER + FEATURES)])
        budget = self.app._env.limits.budget
        budget.limit = 200
        response, body = self.post("/api/xmpp/connect", {"host": "example.com"})
        self.assertEqual(response.code, 200)
        self.assertEqual((body["success"], body["errorType"]), (False, "too_large"))
        self.assertIn("--max-buffered-bytes", body["error"])
        self.assertEqual(budget.used, 0)
