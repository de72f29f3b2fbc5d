"""
Tests for portofcall_xmpp.openapi: the document is valid OpenAPI, documents
exactly the routes of L{Api}, the request fields, defaults and limits that
L{portofcall_xmpp.validate} enforces, and the responses the service gives.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from dns_fakes import TableResolver
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from xmpp_fakes import (
    FEATURES,
    FEATURES_BOUND,
    HEADER,
    HEADER2,
    SUCCESS,
    ApiHarness,
    iq_error,
    login_script,
    sasl_failure,
    stream_error,
)

from portofcall_xmpp import __version__, errors, openapi, validate
from portofcall_xmpp.endpoints import ENDPOINTS
from portofcall_xmpp.errors import ConnectError, DestinationBlocked, RequestError
from portofcall_xmpp.resolve import SRVRecord
from portofcall_xmpp.web import MAX_BODY_BYTES, RETRY_AFTER_SECONDS, Api

BASE = "http://probe.test"
AUTH = {"host": "example.com", "username": "alice", "password": "Marker-Pw-77"}
# The fake servers offer PLAIN without STARTTLS: sending the password in clear is
# the caller's explicit choice (tls: "none", SPEC §2).
AUTH_CLEAR = {**AUTH, "tls": "none"}

PARSERS = {
    "/api/xmpp/connect": validate.parse_connect,
    "/api/xmpp/s2s": validate.parse_s2s,
    "/api/xmpp/login": validate.parse_login,
    "/api/xmpp/roster": validate.parse_roster,
    "/api/xmpp/message": validate.parse_message,
    "/api/xmpp/server-info": validate.parse_server_info,
    "/api/xmpp/srv": validate.parse_srv,
    "/api/xmpp/check": validate.parse_check,
    "/api/xmpp/ping": validate.parse_ping,
    "/api/xmpp/component": validate.parse_component,
    "/api/xmpp/discover": validate.parse_discover,
    "/api/xmpp/websocket": validate.parse_websocket,
    "/api/xmpp/bosh": validate.parse_bosh,
}

# The fields each endpoint reads, maintained by hand as well (the tests below
# also find them from validate.py itself).
CONNECT_FIELDS = {"host", "port", "domain", "timeout", "tls", "transcript"}
AUTH_FIELDS = CONNECT_FIELDS | {
    "tlsVerify",
    "username",
    "password",
    "resource",
    "mechanism",
    "channelBinding",
}
WEB_FIELDS = {"url", "domain", "timeout", "username", "password", "resource", "mechanism"}
WEB_FIELDS |= {"transcript"}
MESSAGE_FIELDS = AUTH_FIELDS | {"recipient", "message", "type", "receipt", "waitMs"}
EXPECTED_FIELDS = {
    "/api/xmpp/connect": CONNECT_FIELDS,
    "/api/xmpp/s2s": CONNECT_FIELDS | {"from"},
    "/api/xmpp/login": AUTH_FIELDS,
    "/api/xmpp/roster": AUTH_FIELDS,
    "/api/xmpp/message": MESSAGE_FIELDS,
    "/api/xmpp/server-info": AUTH_FIELDS,
    "/api/xmpp/srv": {"domain", "timeout"},
    "/api/xmpp/check": {"domain", "timeout", "services", "username", "password", "transcript"},
    "/api/xmpp/ping": AUTH_FIELDS | {"target", "count"},
    "/api/xmpp/component": {"host", "port", "componentName", "secret", "timeout", "transcript"},
    "/api/xmpp/discover": {"domain", "timeout"},
    "/api/xmpp/websocket": WEB_FIELDS,
    "/api/xmpp/bosh": WEB_FIELDS,
}
MINIMAL = {
    "/api/xmpp/connect": {"host": "example.com"},
    "/api/xmpp/s2s": {"host": "example.com"},
    "/api/xmpp/login": AUTH,
    "/api/xmpp/roster": AUTH,
    "/api/xmpp/message": {**AUTH, "recipient": "bob@example.com"},
    "/api/xmpp/server-info": AUTH,
    "/api/xmpp/srv": {"domain": "example.com"},
    "/api/xmpp/check": {"domain": "example.com"},
    "/api/xmpp/ping": AUTH,
    "/api/xmpp/component": {"host": "example.com", "componentName": "component.example.com"},
    "/api/xmpp/discover": {"domain": "example.com"},
    "/api/xmpp/websocket": {"url": "wss://example.com/xmpp-websocket"},
    "/api/xmpp/bosh": {"url": "https://example.com/http-bind"},
}
# Fields given together or not at all (removing one alone is a 400).
TOGETHER = {
    path: {"username": "password", "password": "username"}
    for path in ("/api/xmpp/check", "/api/xmpp/websocket", "/api/xmpp/bosh")
}
# What a request must also give for one of these fields to be valid.
PARTNERS = {
    path: {"username": "alice", "password": "Marker-Pw-77"}
    for path in ("/api/xmpp/check", "/api/xmpp/websocket", "/api/xmpp/bosh")
}
# A valid value of each string field that is not an enumeration.
SAMPLES = {
    "host": "example.com",
    "domain": "example.com",
    "username": "alice",
    "password": "Marker-Pw-77",
    "resource": "probe-1",
    "recipient": "bob@example.com/phone",
    "message": "hi",
    "from": "example.net",
    "services": ["server"],
    "target": "example.net",
    "componentName": "component.example.com",
    "secret": "Marker-Secret-55",
    "url": "wss://example.com/xmpp-websocket",
}
# Samples that differ by endpoint.
PATH_SAMPLES = {"/api/xmpp/bosh": {"url": "https://example.com/http-bind"}}
# JSON name -> attribute of the parsed request (when they differ).
ATTRIBUTES = {
    "tlsVerify": "tls_verify",
    "channelBinding": "channel_binding",
    "waitMs": "wait",
    "from": "from_",
    "target": "to",
    "componentName": "component_name",
}
MILLISECONDS = {"timeout", "waitMs"}
# Documented without a default: required, or defaulted from another field or
# chosen by the probe.
NO_DEFAULT = {
    "host",
    "domain",
    "username",
    "password",
    "mechanism",
    "channelBinding",
    "recipient",
    "from",
    "target",
    "componentName",
    "secret",
    "url",
}

SPEC_ERROR_TYPES = {
    "dns",
    "connect",
    "timeout",
    "tls",
    "stream_error",
    "sasl",
    "bind",
    "protocol",
    "too_large",
    "closed",
}


class Schemas:
    """
    Just enough JSON Schema for these tests: C{$ref}, C{allOf} (merged),
    C{oneOf}/C{anyOf}, C{type}, C{const}, C{enum}, C{required},
    C{properties}, C{additionalProperties}, C{items}, C{pattern}.

    Objects with C{properties} are checked as closed: a key the document
    does not name is a problem, so nothing the service answers goes
    undocumented.
    """

    TYPES = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "null": lambda v: v is None,
    }

    def __init__(self, document):
        self.document = document

    def lookup(self, ref: str):
        assert ref.startswith("#/"), ref
        node = self.document
        for part in ref[2:].split("/"):
            node = node[part]
        return node

    def flat(self, schema: dict) -> dict:
        """C{schema} with C{$ref} resolved and C{allOf} merged into one dict."""
        while "$ref" in schema:
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**self.lookup(schema["$ref"]), **siblings}
        if "allOf" not in schema:
            return schema
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        properties = dict(merged.get("properties", {}))
        required = list(merged.get("required", []))
        for part in schema["allOf"]:
            part = self.flat(part)
            for key, value in part.items():
                if key == "properties":
                    properties.update(value)
                elif key == "required":
                    required.extend(value)
                else:
                    merged.setdefault(key, value)
        if properties:
            merged["properties"] = properties
        if required:
            merged["required"] = required
        return merged

    def problems(self, value, schema, path="$") -> list[str]:
        schema = self.flat(schema)
        for key in ("oneOf", "anyOf"):
            if key in schema:
                results = [self.problems(value, option, path) for option in schema[key]]
                matches = sum(1 for r in results if not r)
                if matches == 0:
                    return [f"{path}: matches no {key} option: {results}"]
                if key == "oneOf" and matches > 1:
                    return [f"{path}: matches {matches} oneOf options"]
                return []
        found = []
        if "const" in schema:
            const = schema["const"]
            if type(value) is not type(const) or value != const:
                found.append(f"{path}: {value!r} is not {const!r}")
        if "enum" in schema and value not in schema["enum"]:
            found.append(f"{path}: {value!r} not in {schema['enum']!r}")
        kinds = schema.get("type")
        if kinds is not None:
            kinds = [kinds] if isinstance(kinds, str) else kinds
            if not any(self.TYPES[k](value) for k in kinds):
                return found + [f"{path}: {value!r} is not {kinds}"]
        if isinstance(value, str) and "pattern" in schema:
            if not re.search(schema["pattern"], value):
                found.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if isinstance(value, dict):
            for name in schema.get("required", ()):
                if name not in value:
                    found.append(f"{path}: missing {name}")
            properties = schema.get("properties")
            extra = schema.get("additionalProperties")
            for name, item in value.items():
                where = f"{path}.{name}"
                if properties is not None and name in properties:
                    found += self.problems(item, properties[name], where)
                elif isinstance(extra, dict):
                    found += self.problems(item, extra, where)
                elif properties is not None:
                    found.append(f"{where}: not documented")
        if isinstance(value, list) and "items" in schema:
            for i, item in enumerate(value):
                found += self.problems(item, schema["items"], f"{path}[{i}]")
        return found

    def request(self, path: str) -> dict:
        operation = self.document["paths"][path]["post"]
        return self.flat(operation["requestBody"]["content"]["application/json"]["schema"])

    def response(self, path: str, method: str, status: int) -> dict:
        response = self.document["paths"][path][method]["responses"][str(status)]
        return self.flat(response)


def refs(node):
    """Every C{$ref} value in C{node}."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def klein_routes() -> dict[str, set[str]]:
    """OpenAPI path -> methods, for every route of L{Api}."""
    routes: dict[str, set[str]] = {}
    for rule in Api.app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        methods = {m.lower() for m in rule.methods or ()} - {"head", "options"}
        routes.setdefault(path, set()).update(methods)
    return routes


def full_body(path: str, schema: dict) -> dict:
    """A valid request giving every documented field of C{schema}."""
    body = {}
    for name, prop in schema["properties"].items():
        prop = Schemas(openapi.document()).flat(prop)
        if "enum" in prop:
            body[name] = prop["enum"][-1]
        elif prop.get("type") == "boolean":
            body[name] = not prop.get("default", False)
        elif prop.get("type") == "integer":
            body[name] = prop["minimum"]
        else:
            body[name] = PATH_SAMPLES.get(path, {}).get(name, SAMPLES[name])
    return body


class Recording(dict):
    """A request body that records which fields the parser reads."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)


def parsed_value(request, name):
    """The value C{request} (a parsed request) holds for the JSON field C{name}."""
    attribute = ATTRIBUTES.get(name, name)
    if not hasattr(request, attribute):
        request = request.auth
    value = getattr(request, attribute)
    if isinstance(value, tuple):
        return list(value)
    return round(value * 1000) if name in MILLISECONDS else value


class DocumentTests(SynchronousTestCase):
    def setUp(self):
        self.doc = openapi.document()
        self.schemas = Schemas(self.doc)

    def test_validates(self):
        """The document passes openapi-spec-validator, when it is installed."""
        try:
            from openapi_spec_validator import validate as validate_spec
        except ImportError as e:
            raise _missing("openapi-spec-validator is not installed") from e
        validate_spec(json.loads(openapi.document_bytes()))

    def test_structure(self):
        """OpenAPI 3.x, this version, unique operation ids, every $ref resolves."""
        self.assertRegex(self.doc["openapi"], r"^3\.[01]\.\d+$")
        self.assertEqual(self.doc["info"]["version"], __version__)
        ids = [
            operation["operationId"]
            for item in self.doc["paths"].values()
            for operation in item.values()
        ]
        self.assertEqual(len(ids), len(set(ids)))
        for ref in refs(self.doc):
            self.schemas.lookup(ref)
        for item in self.doc["paths"].values():
            for operation in item.values():
                self.assertIn("200", operation["responses"])
                for response in operation["responses"].values():
                    self.assertIn("description", self.schemas.flat(response))

    def test_no_unused_components(self):
        """Every component is used."""
        used = set(refs(self.doc))
        for kind, components in self.doc["components"].items():
            for name in components:
                self.assertIn(f"#/components/{kind}/{name}", used)

    def test_routes(self):
        """Every route of Api is documented, and every documented path is a route."""
        documented = {path: set(item) for path, item in self.doc["paths"].items()}
        self.assertEqual(documented, klein_routes())

    def test_error_types(self):
        """errorType lists the SPEC's ten values, each used by an error class."""
        enum = self.schemas.flat({"$ref": "#/components/schemas/ErrorType"})["enum"]
        self.assertEqual(set(enum), SPEC_ERROR_TYPES)
        classes = {
            cls.error_type
            for cls in vars(errors).values()
            if isinstance(cls, type) and issubclass(cls, errors.ProbeError)
        }
        self.assertEqual(classes, SPEC_ERROR_TYPES)

    def test_probe_responses(self):
        """Every probe documents 200, 400, 403, 413, 415, 429 (with Retry-After)."""
        for path in PARSERS:
            responses = self.doc["paths"][path]["post"]["responses"]
            self.assertLessEqual({"200", "400", "403", "413", "415", "429"}, set(responses))
            too_many = self.schemas.flat(responses["429"])
            self.assertIn("Retry-After", too_many["headers"])
        large = self.schemas.flat(self.doc["paths"]["/api/xmpp/login"]["post"]["responses"]["413"])
        self.assertIn(str(MAX_BODY_BYTES), large["description"])
        self.assertIn(str(MAX_BODY_BYTES), self.doc["info"]["description"])

    def test_password(self):
        """password is a write-only password-format field on every auth endpoint."""
        for path in PARSERS:
            if "password" not in EXPECTED_FIELDS[path]:
                continue
            password = self.schemas.request(path)["properties"]["password"]
            self.assertEqual(password["format"], "password")
            self.assertIs(password["writeOnly"], True)

    def test_no_import_cycle(self):
        """The document is built without the web layer: openapi never imports web."""
        code = (
            "import sys, portofcall_xmpp.openapi as o; o.document(); "
            "print('portofcall_xmpp.web' in sys.modules)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        self.assertEqual((out.returncode, out.stdout.strip()), (0, "False"), out.stderr)

    def test_generated_from_the_table(self):
        """One POST path per row of the endpoint table, with its summary and schemas."""
        probes = {path: item["post"] for path, item in self.doc["paths"].items() if "post" in item}
        self.assertEqual(list(probes), [endpoint.path for endpoint in ENDPOINTS])
        self.assertEqual({endpoint.path: endpoint.parse for endpoint in ENDPOINTS}, PARSERS)
        for endpoint in ENDPOINTS:
            operation = probes[endpoint.path]
            self.assertEqual(operation["operationId"], endpoint.name)
            self.assertEqual(operation["summary"], endpoint.summary)
            answers = operation["responses"]["200"]["content"]["application/json"]["schema"]
            self.assertEqual(
                [ref["$ref"].rsplit("/", 1)[1] for ref in answers["oneOf"]],
                [endpoint.success_schema, endpoint.failure_schema],
            )

    def test_cached(self):
        """Built once: the same object and bytes every time."""
        self.assertIs(openapi.document(), openapi.document())
        self.assertIs(openapi.document_bytes(), openapi.document_bytes())
        self.assertEqual(json.loads(openapi.document_bytes()), self.doc)


class RequestSchemaTests(SynchronousTestCase):
    """The request schemas against what validate.py enforces."""

    def setUp(self):
        self.schemas = Schemas(openapi.document())

    def test_fields(self):
        """The documented fields are exactly those each parser reads."""
        for path, parse in PARSERS.items():
            schema = self.schemas.request(path)
            documented = set(schema["properties"])
            self.assertEqual(documented, EXPECTED_FIELDS[path], path)
            body = Recording(full_body(path, schema))
            parse(body)
            self.assertEqual(body.read, documented, path)

    def test_required(self):
        """
        Required: exactly the fields whose absence is a 400; of the fields
        an C{anyOf} requires one of (C{host}, C{domain}), the absence of all.
        """
        for path, parse in PARSERS.items():
            schema = self.schemas.request(path)
            body = full_body(path, schema)
            parse(body)
            for name in schema["properties"]:
                partner = TOGETHER.get(path, {}).get(name)
                if partner is not None:
                    with self.assertRaises(RequestError, msg=(path, name)):
                        parse({k: v for k, v in body.items() if k != name})
                partial = {k: v for k, v in body.items() if k not in (name, partner)}
                if name in schema.get("required", []):
                    with self.assertRaises(RequestError, msg=(path, name)) as caught:
                        parse(partial)
                    self.assertEqual(caught.exception.status, 400)
                else:
                    parse(partial)
            alternatives = {n for one in schema.get("anyOf", []) for n in one["required"]}
            if alternatives:
                partial = {k: v for k, v in body.items() if k not in alternatives}
                with self.assertRaises(RequestError, msg=(path, alternatives)) as caught:
                    parse(partial)
                self.assertEqual(caught.exception.status, 400)

    def test_defaults(self):
        """The documented defaults are what validate.py fills in."""
        for path, parse in PARSERS.items():
            schema = self.schemas.request(path)
            request = parse(dict(MINIMAL[path]))
            without = set()
            for name, prop in schema["properties"].items():
                prop = self.schemas.flat(prop)
                if "default" not in prop:
                    without.add(name)
                    continue
                self.assertEqual(parsed_value(request, name), prop["default"], (path, name))
            self.assertEqual(without, NO_DEFAULT & set(schema["properties"]), path)
        auth = validate.parse_login(dict(AUTH))
        self.assertEqual(
            (auth.domain, auth.mechanism, auth.channel_binding), (AUTH["host"], None, None)
        )

    def test_direct_tls_default(self):
        """The tls default described for port 5223."""
        for path, parse in PARSERS.items():
            if "tls" not in EXPECTED_FIELDS[path]:
                continue
            tls = self.schemas.flat(self.schemas.request(path)["properties"]["tls"])
            self.assertIn("5223", tls["description"])
            request = parse({**MINIMAL[path], "port": 5223})
            self.assertEqual(getattr(request, "auth", request).tls, "direct")

    def test_integer_limits(self):
        """minimum and maximum are the limits validate.py enforces."""
        for path, parse in PARSERS.items():
            schema = self.schemas.request(path)
            for name, prop in schema["properties"].items():
                prop = self.schemas.flat(prop)
                if prop.get("type") != "integer":
                    continue
                low, high = prop["minimum"], prop["maximum"]
                for good in (low, high):
                    self.assertEqual(parsed_value(parse({**MINIMAL[path], name: good}), name), good)
                for bad in (low - 1, high + 1, float(low), True):
                    with self.assertRaises(RequestError, msg=(path, name, bad)) as caught:
                        parse({**MINIMAL[path], name: bad})
                    self.assertTrue(caught.exception.message.startswith(name))

    def test_string_limits(self):
        """maxLength and minLength hold for the fields that document them."""
        checked = set()
        for path, parse in PARSERS.items():
            schema = self.schemas.request(path)
            for name, prop in schema["properties"].items():
                prop = self.schemas.flat(prop)
                if prop.get("type") != "string" or "enum" in prop:
                    continue
                self.assertEqual(prop.get("minLength"), 1, (path, name))
                base = {**MINIMAL[path], **PARTNERS.get(path, {})}
                with self.assertRaises(RequestError):
                    parse({**base, name: ""})
                if "maxLength" in prop:
                    checked.add(name)
                    longest = "a" * prop["maxLength"]
                    parse({**base, name: longest})
                    with self.assertRaises(RequestError) as caught:
                        parse({**base, name: longest + "a"})
                    self.assertTrue(caught.exception.message.startswith(name))
        self.assertEqual(checked, {"username", "password", "resource", "message", "secret"})

    def test_enums(self):
        """Every documented choice is accepted; anything else is a 400."""
        for path, parse in PARSERS.items():
            schema = self.schemas.request(path)
            for name, prop in schema["properties"].items():
                prop = self.schemas.flat(prop)
                if "enum" not in prop:
                    continue
                for choice in prop["enum"]:
                    self.assertEqual(
                        parsed_value(parse({**MINIMAL[path], name: choice}), name), choice
                    )
                with self.assertRaises(RequestError) as caught:
                    parse({**MINIMAL[path], name: "not-a-choice"})
                self.assertTrue(caught.exception.message.startswith(name))
        connect_tls = self.schemas.request("/api/xmpp/connect")["properties"]["tls"]
        with self.assertRaises(RequestError):
            validate.parse_connect({"host": "example.com", "tls": "required"})
        self.assertNotIn("required", self.schemas.flat(connect_tls)["enum"])


class WebCase(ApiHarness, SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.schemas = Schemas(openapi.document())

    def get(self, path):
        d = self.stub.get(BASE + path)
        self.stub.flush()
        response = self.successResultOf(d)
        return response, self.successResultOf(response.content())

    def assertDocumented(self, path, response, body, method="post"):
        """The answer matches the document's schema for its status (closed objects)."""
        schema = self.schemas.response(path, method, response.code)
        content = schema["content"]["application/json"]["schema"]
        self.assertEqual(self.schemas.problems(body, content), [], json.dumps(body)[:2000])
        for header in schema.get("headers", {}):
            self.assertTrue(response.headers.hasHeader(header), header)


class WrongTypeTests(WebCase):
    def test_wrong_type_names_field(self):
        """Each documented field, sent with a wrong JSON type, gets a 400 naming it."""
        wrong = {"string": 12345, "integer": "12", "boolean": "yes", "array": "client"}
        for path in PARSERS:
            schema = self.schemas.request(path)
            for name, prop in schema["properties"].items():
                prop = self.schemas.flat(prop)
                self.api()
                response, body = self.post(path, {**MINIMAL[path], name: wrong[prop["type"]]})
                self.assertEqual(response.code, 400, (path, name))
                self.assertTrue(body["error"].startswith(name), (path, name, body["error"]))
                self.assertDocumented(path, response, body)
                self.assertEqual(self.connector.calls, [])


def _message_error_reply(transport):
    """Answer the message just sent with a service-unavailable error bearing its id."""
    sent = transport.value().decode()
    message_id = re.findall(r"<message[^>]* id=['\"](poc_[0-9a-f]+)['\"]", sent)[-1]
    transport.deliver(
        (
            f"<message type='error' id='{message_id}' from='bob@example.com'><error type='cancel'>"
            "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>gone</text>"
            "</error></message>"
        ).encode()
    )


class ResponseSchemaTests(WebCase):
    """What the service answers matches the documented responses."""

    def check(self, path, body, script=(), error=None, advance=None, status=200):
        self.api(script, error)
        response, answer = self.post(path, body, advance=advance)
        self.assertEqual(response.code, status, answer)
        self.assertDocumented(path, response, answer)
        return answer

    def test_connect(self):
        script = [(b"xml:lang='en'>", HEADER + FEATURES)]
        answer = self.check(
            "/api/xmpp/connect", {"host": "example.com", "transcript": True}, script
        )
        self.assertIs(answer["success"], True)

    def test_s2s(self):
        script = [(b"xml:lang='en'>", HEADER + FEATURES)]
        answer = self.check("/api/xmpp/s2s", {"host": "example.com", "from": "example.net"}, script)
        self.assertEqual((answer["from"], answer["dialback"]), ("example.net", False))
        self.check("/api/xmpp/s2s", {"host": "example.com"}, error=ConnectError("refused"))

    def test_connect_failures(self):
        data = HEADER + stream_error("host-unknown", "nope")
        answer = self.check(
            "/api/xmpp/connect", {"host": "example.com"}, [(b"xml:lang='en'>", data)]
        )
        self.assertEqual(answer["errorType"], "stream_error")
        self.check("/api/xmpp/connect", {"host": "example.com"}, error=ConnectError("refused"))
        answer = self.check(
            "/api/xmpp/connect",
            {"host": "example.com", "transcript": True},
            [(b"xml:lang='en'>", HEADER + b"<<<")],
        )
        self.assertIn("xmlError", answer)
        self.check("/api/xmpp/connect", {"host": "example.com"}, [], advance=5)

    def test_login(self):
        self.check("/api/xmpp/login", {**AUTH_CLEAR, "transcript": True}, login_script())

    def test_login_failures(self):
        answer = self.check(
            "/api/xmpp/login",
            {**AUTH_CLEAR, "transcript": True},
            login_script(after_auth=sasl_failure("not-authorized", "bad")),
        )
        self.assertEqual(answer["saslText"], "bad")
        bind_error = [
            (b"version='1.0' xml:lang='en'>", HEADER + FEATURES),
            (b"</auth>", SUCCESS),
            (b"version='1.0' xml:lang='en'>", HEADER2 + FEATURES_BOUND),
            (b"</iq>", iq_error("bind1", "conflict")),
        ]
        answer = self.check("/api/xmpp/login", AUTH_CLEAR, bind_error)
        self.assertEqual(answer["errorType"], "bind")
        self.assertIn("errorCondition", answer)
        self.check("/api/xmpp/login", AUTH_CLEAR, [], advance=5)
        self.check("/api/xmpp/roster", AUTH_CLEAR, error=ConnectError("refused"))

    def test_roster(self):
        reply = (
            b"<iq type='result' id='roster1'><query xmlns='jabber:iq:roster' ver='3'>"
            b"<item jid='bob@example.com' name='Bob' ask='subscribe'><group>A</group></item>"
            b"<item jid='carol@example.com' subscription='both'/>"
            b"</query></iq>"
        )
        answer = self.check("/api/xmpp/roster", AUTH_CLEAR, login_script(tail=[(b"</iq>", reply)]))
        self.assertEqual(answer["roster"]["total"], 2)

    def test_message(self):
        body = {**AUTH_CLEAR, "recipient": "bob@example.com", "receipt": True}
        answer = self.check("/api/xmpp/message", body, login_script(), advance=2)
        self.assertIsNone(answer["deliveryErrorCondition"])
        script = login_script(tail=[(b"</message>", _message_error_reply)])
        answer = self.check("/api/xmpp/message", body, script, advance=2)
        self.assertEqual(answer["deliveryErrorCondition"]["condition"], "service-unavailable")

    def test_ping(self):
        """/ping answers: pongs, an error answer, a timeout; a failed login."""
        tail = [
            (b"</iq>", b"<iq type='result' id='ping1'/>"),
            (b"</iq>", iq_error("ping2", "remote-server-not-found")),
        ]
        body = {**AUTH_CLEAR, "count": 3, "target": "example.net", "transcript": True}
        answer = self.check("/api/xmpp/ping", body, login_script(tail=tail), advance=5)
        self.assertEqual([p["result"] for p in answer["pings"]], ["pong", "error", "timeout"])
        answer = self.check("/api/xmpp/ping", {**AUTH_CLEAR, "count": 1}, [], advance=5)
        self.assertEqual(answer["errorType"], "timeout")
        script = login_script(after_auth=sasl_failure("not-authorized"))
        answer = self.check("/api/xmpp/ping", AUTH_CLEAR, script)
        self.assertEqual(answer["errorType"], "sasl")

    def test_component(self):
        """/component answers: authenticated, stream only, refused, unreachable."""
        header = (
            b"<stream:stream xmlns='jabber:component:accept' "
            b"xmlns:stream='http://etherx.jabber.org/streams' id='c1' from='c.example.com'>"
        )
        body = {"host": "example.com", "componentName": "c.example.com", "transcript": True}
        secret = {**body, "secret": "Marker-Secret-55"}
        script = [(b"xml:lang='en'>", header), (b"</handshake>", b"<handshake/>")]
        answer = self.check("/api/xmpp/component", secret, script)
        self.assertIs(answer["authenticated"], True)
        answer = self.check("/api/xmpp/component", body, [(b"xml:lang='en'>", header)])
        self.assertIs(answer["authenticated"], False)
        script = [(b"xml:lang='en'>", header), (b"</handshake>", stream_error("not-authorized"))]
        answer = self.check("/api/xmpp/component", secret, script)
        self.assertEqual(answer["errorType"], "stream_error")
        self.assertNotIn("Marker-Secret-55", json.dumps(answer))
        self.check("/api/xmpp/component", body, error=ConnectError("refused"))

    def test_domain_alone(self):
        """Answers of probes given a domain alone (SRV) carry the documented resolved."""
        dns = TableResolver(
            {"xmpp.example.com": ["93.184.216.34"], "lan.example.com": ["10.0.0.7"]},
            {"_xmpp-client._tcp.example.com": [SRVRecord(0, 0, 5299, "xmpp.example.com")]},
        )
        script = [(b"xml:lang='en'>", HEADER + FEATURES)]
        self.api(script, dns=dns)
        response, answer = self.post("/api/xmpp/connect", {"domain": "example.com"})
        self.assertDocumented("/api/xmpp/connect", response, answer)
        self.assertEqual(answer["resolved"]["record"]["target"], "xmpp.example.com")
        self.api(login_script(), dns=dns)
        body = {**AUTH_CLEAR, "host": None, "domain": "example.com"}
        response, answer = self.post("/api/xmpp/login", body)
        self.assertDocumented("/api/xmpp/login", response, answer)
        self.assertEqual((answer["host"], answer["port"]), ("xmpp.example.com", 5299))
        self.api(dns=TableResolver())
        response, answer = self.post("/api/xmpp/s2s", {"domain": "example.com"})
        self.assertDocumented("/api/xmpp/s2s", response, answer)
        self.assertEqual((answer["errorType"], answer["resolved"]["via"]), ("dns", "fallback"))
        lan = TableResolver(
            {"lan.example.com": ["10.0.0.7"]},
            {"_xmpp-client._tcp.example.com": [SRVRecord(0, 0, 5222, "lan.example.com")]},
        )
        self.api(dns=lan)
        response, answer = self.post("/api/xmpp/connect", {"domain": "example.com"})
        self.assertEqual(response.code, 403)
        self.assertDocumented("/api/xmpp/connect", response, answer)
        self.assertEqual(answer["resolved"]["attempts"][0]["address"], "10.0.0.7")

    def test_refusals(self):
        """400, 403, 413 and 415 answers are documented."""
        self.check("/api/xmpp/connect", {}, status=400)
        self.check("/api/xmpp/login", {"host": "example.com"}, status=400)
        self.check("/api/xmpp/message", AUTH, status=400)
        blocked = DestinationBlocked("Destination 10.1.2.3 is not allowed")
        answer = self.check("/api/xmpp/connect", {"host": "10.1.2.3"}, error=blocked, status=403)
        self.assertIs(answer["blocked"], True)
        self.api()
        response, answer = self.post("/api/xmpp/roster", None, raw=b"x" * (MAX_BODY_BYTES + 1))
        self.assertEqual(response.code, 413)
        self.assertDocumented("/api/xmpp/roster", response, answer)
        response, answer = self.post("/api/xmpp/message", AUTH, headers={})
        self.assertEqual(response.code, 415)
        self.assertDocumented("/api/xmpp/message", response, answer)

    def test_too_many(self):
        """The 429 answer carries Retry-After, as documented."""
        pending = Deferred()
        self.api(max_concurrent=1, connect=lambda host, port, proto: pending)
        self.stub.post(
            BASE + "/api/xmpp/connect",
            data=b'{"host": "example.com"}',
            headers={"Content-Type": ["application/json"]},
        )
        response, answer = self.post("/api/xmpp/login", AUTH)
        self.assertEqual(response.code, 429)
        self.assertDocumented("/api/xmpp/login", response, answer)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), [str(RETRY_AFTER_SECONDS)])
        self.clock.advance(10)
        self.stub.flush()

    def test_health(self):
        self.api()
        response, content = self.get("/api/health")
        self.assertDocumented("/api/health", response, json.loads(content), method="get")

    def test_health_of_a_worker(self):
        """A worker process of --workers names itself in /api/health, as documented."""
        self.api(worker=2)
        response, content = self.get("/api/health")
        body = json.loads(content)
        self.assertEqual(body["worker"], {"index": 2, "pid": os.getpid()})
        self.assertDocumented("/api/health", response, body, method="get")


class ServedTests(WebCase):
    def test_served(self):
        """GET /api/openapi.json answers the document as application/json."""
        self.api()
        response, content = self.get("/api/openapi.json")
        self.assertEqual(response.code, 200)
        media = response.headers.getRawHeaders("content-type")[0].split(";")[0]
        self.assertEqual(media, "application/json")
        self.assertEqual(json.loads(content), openapi.document())
        self.assertDocumented("/api/openapi.json", response, json.loads(content), method="get")

    def test_head(self):
        """HEAD answers the headers without the body."""
        self.api()
        d = self.stub.head(BASE + "/api/openapi.json")
        self.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(self.successResultOf(response.content()), b"")

    def test_post_not_allowed(self):
        """POST to the document is a JSON 405."""
        self.api()
        response, body = self.post("/api/openapi.json", {})
        self.assertEqual((response.code, body["success"]), (405, False))


def _missing(reason):
    """Skip for want of a tool, except in CI (CI=true), where that is a failure."""
    if os.environ.get("CI") == "true":
        return AssertionError(reason + " (CI=true: .ci/run must install it)")
    return SkipTest(reason)
