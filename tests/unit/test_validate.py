"""Tests for L{portofcall_xmpp.validate}: JSON objects in, request objects or 400s out."""

from __future__ import annotations

import precis_i18n
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from portofcall_xmpp.errors import RequestError
from portofcall_xmpp.names import parse_ip_literal
from portofcall_xmpp.validate import (
    AUTH_TLS_MODES,
    CHANNEL_BINDINGS,
    JID,
    MECHANISMS,
    MESSAGE_TYPES,
    AuthRequest,
    ConnectRequest,
    InvalidJID,
    MessageRequest,
    check_domain,
    check_host,
    parse_auth,
    parse_connect,
    parse_jid,
    parse_login,
    parse_message,
    parse_roster,
    parse_s2s,
    parse_server_info,
    parse_srv,
)

PASSWORD = "s3cr3t-Pa55w0rd"
AUTH = {"host": "example.com", "username": "juliet", "password": PASSWORD}
MESSAGE = {**AUTH, "recipient": "romeo@example.net"}

PORT_ERROR = "port must be an integer from 1 to 65535"
TIMEOUT_ERROR = "timeout must be an integer from 1 to 120000 (milliseconds)"
WAIT_ERROR = "waitMs must be an integer from 0 to 30000 (milliseconds)"
AUTH_REQUIRED = "host, username, and password are required"

# Values of the wrong JSON type for an integer field.
NOT_INTEGERS = [True, False, 5222.0, 5.222e3, 1.5, "5222", [5222], {"port": 5222}]


class _Helpers:
    def rejects(self, parse, body, message):
        """C{parse(body)} raises a 400 RequestError whose message is C{message}."""
        error = self.assertRaises(RequestError, parse, body)
        self.assertEqual((error.status, error.message), (400, message))
        return error

    def rejects_starting(self, parse, body, prefix):
        """C{parse(body)} raises a 400 RequestError whose message starts with C{prefix}."""
        error = self.assertRaises(RequestError, parse, body)
        self.assertEqual(error.status, 400)
        self.assertTrue(error.message.startswith(prefix), error.message)
        return error

    def host_of(self, host):
        return parse_connect({"host": host}).host


class BodyTests(_Helpers, SynchronousTestCase):
    def test_not_an_object(self):
        """A body that is not a JSON object is a 400 from every parser."""
        for parse in (parse_connect, parse_login, parse_roster, parse_message):
            for body in ([], "host", 5, None):
                self.rejects(parse, body, "request body must be a JSON object")

    def test_unknown_fields_ignored(self):
        """Fields the endpoint does not know are ignored."""
        self.assertEqual(
            parse_connect({"host": "example.com", "colour": "blue", "port ": "x"}),
            parse_connect({"host": "example.com"}),
        )
        self.assertEqual(parse_login({**AUTH, "recipient": 5}), parse_login(AUTH))

    def test_null_means_absent(self):
        """JSON null for an optional field gives that field's default."""
        nulls = dict.fromkeys(
            ["port", "domain", "timeout", "tls", "tlsVerify", "resource", "mechanism"], None
        )
        nulls.update(channelBinding=None, transcript=None)
        self.assertEqual(parse_login({**AUTH, **nulls}), parse_login(AUTH))
        extra = dict.fromkeys(["message", "type", "receipt", "waitMs"], None)
        self.assertEqual(parse_message({**MESSAGE, **extra}), parse_message(MESSAGE))


class ConnectTests(_Helpers, SynchronousTestCase):
    def test_defaults(self):
        """Only host given: port 5222, domain = host, 10 s, tls auto, no transcript."""
        self.assertEqual(
            parse_connect({"host": "example.com"}),
            ConnectRequest(
                host="example.com",
                port=5222,
                domain="example.com",
                timeout=10.0,
                tls="auto",
                transcript=False,
            ),
        )

    def test_missing_host(self):
        """A missing, null or empty host uses the reference wording."""
        for body in ({}, {"host": None}, {"host": ""}, {"port": 5222}):
            self.rejects(parse_connect, body, "Missing required parameter: host")

    def test_host_not_a_string(self):
        """A host of another JSON type is named as not a string."""
        for host in (5, True, ["example.com"], {"a": 1}, 1.5):
            self.rejects(parse_connect, {"host": host}, "host must be a string")

    def test_all_fields(self):
        """Every field given is validated and converted (milliseconds to seconds)."""
        request = parse_connect(
            {
                "host": "xmpp.example.com",
                "port": 5269,
                "domain": "Example.COM",
                "timeout": 2500,
                "tls": "none",
                "transcript": True,
            }
        )
        self.assertEqual(
            request,
            ConnectRequest(
                host="xmpp.example.com",
                port=5269,
                domain="example.com",
                timeout=2.5,
                tls="none",
                transcript=True,
            ),
        )

    def test_port_5223_defaults_to_direct_tls(self):
        """On port 5223 without a tls field, tls is direct (XEP-0368)."""
        self.assertEqual(parse_connect({"host": "example.com", "port": 5223}).tls, "direct")
        self.assertEqual(
            parse_connect({"host": "example.com", "port": 5223, "tls": None}).tls, "direct"
        )

    def test_port_5223_explicit_tls_kept(self):
        """An explicit tls on port 5223 is kept."""
        for tls in ("auto", "none"):
            self.assertEqual(
                parse_connect({"host": "example.com", "port": 5223, "tls": tls}).tls, tls
            )

    def test_tls_modes(self):
        """tls is auto, none or direct, matched case-insensitively, returned lower case."""
        for tls in ("auto", "none", "direct"):
            self.assertEqual(parse_connect({"host": "example.com", "tls": tls}).tls, tls)
        self.assertEqual(parse_connect({"host": "example.com", "tls": "DIRECT"}).tls, "direct")

    def test_tls_invalid(self):
        """Other tls values, including the auth-only "required", are refused by name."""
        for tls in ("required", "starttls", "", True, 1, ["auto"]):
            self.rejects(
                parse_connect,
                {"host": "example.com", "tls": tls},
                "tls must be one of: auto, none, direct",
            )

    def test_port_range(self):
        """port accepts the integers 1 to 65535."""
        for port in (1, 80, 5222, 65535):
            self.assertEqual(parse_connect({"host": "example.com", "port": port}).port, port)

    def test_port_invalid(self):
        """Out-of-range ports, booleans, floats (even integral) and strings are refused."""
        for port in [0, -1, 65536, 10**100, *NOT_INTEGERS]:
            self.rejects(parse_connect, {"host": "example.com", "port": port}, PORT_ERROR)

    def test_timeout_range(self):
        """timeout is integer milliseconds from 1 to 120000, held in seconds."""
        for ms, seconds in ((1, 0.001), (1000, 1.0), (120000, 120.0)):
            self.assertEqual(parse_connect({"host": "example.com", "timeout": ms}).timeout, seconds)

    def test_timeout_invalid(self):
        """Out-of-range timeouts, booleans, floats and strings are refused."""
        for timeout in [0, -5, 120001, *NOT_INTEGERS]:
            self.rejects(parse_connect, {"host": "example.com", "timeout": timeout}, TIMEOUT_ERROR)

    def test_transcript_must_be_boolean(self):
        """transcript must be a JSON boolean."""
        for value in ("true", 1, 0, [], {}):
            self.rejects(
                parse_connect,
                {"host": "example.com", "transcript": value},
                "transcript must be a boolean (true or false)",
            )

    def test_constructed_defaults(self):
        """Built directly, a ConnectRequest derives domain from host and tls from port."""
        request = ConnectRequest(host="xn--bcher-kva.example", port=5223)
        self.assertEqual((request.domain, request.tls), ("bücher.example", "direct"))


class HostTests(_Helpers, SynchronousTestCase):
    def test_ascii_name_lower_cased(self):
        """An ASCII name is returned lower case, one trailing dot dropped."""
        self.assertEqual(self.host_of("XMPP.Example.COM."), "xmpp.example.com")
        self.assertEqual(self.host_of("localhost"), "localhost")

    def test_idn(self):
        """An internationalised name becomes its A-label form (UTS 46, IDNA 2008)."""
        self.assertEqual(self.host_of("bücher.example"), "xn--bcher-kva.example")
        self.assertEqual(self.host_of("BÜCHER.Example."), "xn--bcher-kva.example")
        self.assertEqual(self.host_of("xn--bcher-kva.example"), "xn--bcher-kva.example")
        self.assertEqual(self.host_of("faß.de"), "xn--fa-hia.de")
        self.assertEqual(self.host_of("ＥＸＡＭＰＬＥ。com"), "example.com")

    def test_idn_host_gives_unicode_domain(self):
        """The default domain of an IDN host is its U-label form."""
        self.assertEqual(parse_connect({"host": "xn--bcher-kva.example"}).domain, "bücher.example")

    def test_reserved_hyphen_labels(self):
        """ASCII labels with hyphens in positions 3 and 4 (not xn--) are plain LDH."""
        self.assertEqual(self.host_of("r3---sn-ab12.example.com"), "r3---sn-ab12.example.com")

    def test_label_length(self):
        """A label may be 63 octets, not 64."""
        self.assertEqual(self.host_of("a" * 63 + ".example"), "a" * 63 + ".example")
        self.rejects(
            parse_connect,
            {"host": "a" * 64 + ".example"},
            "host must be a DNS name or an IP address (a label is longer than 63 octets)",
        )

    def test_idn_label_length(self):
        """The 63-octet limit applies to the A-label, after encoding."""
        self.assertEqual(len(self.host_of("ü" * 30 + ".de").split(".")[0]), 36)
        self.rejects(
            parse_connect,
            {"host": "ü" * 60 + ".de"},
            "host must be a DNS name or an IP address (a label is longer than 63 octets)",
        )

    def test_name_length(self):
        """A name may be 253 octets, not 254 (without the trailing dot)."""
        name = ".".join(["a" * 63] * 3 + ["b" * 61])
        self.assertEqual(len(name), 253)
        self.assertEqual(self.host_of(name), name)
        self.assertEqual(self.host_of(name + "."), name)
        self.rejects(
            parse_connect,
            {"host": name + "b"},
            "host must be a DNS name or an IP address (it is longer than 253 octets)",
        )
        self.rejects_starting(parse_connect, {"host": "a" * 5000}, "host must be a DNS name")

    def test_invalid_names(self):
        """Names with other characters, empty labels or edge hyphens are refused."""
        for host in (
            "exa mple.com",
            "a_b.example",
            "-a.example",
            "a-.example",
            "a..b",
            ".",
            "..",
            ".example",
            "http://example.com",
            "user@example.com",
            "example.com/",
            "xn--.example",
            "xn--a.example",
            "exa\x00mple.com",
            "\ud800.example",
            " example.com",
            "127.0.0.1..",
        ):
            self.rejects_starting(
                parse_connect, {"host": host}, "host must be a DNS name or an IP address ("
            )

    def test_port_in_host(self):
        """host:port is refused, pointing at the port field."""
        self.rejects(
            parse_connect,
            {"host": "example.com:5222"},
            "host must be a DNS name or an IP address "
            "(it is not a valid IPv6 address; give the port in the port field)",
        )

    def test_numeric_ipv4_spellings(self):
        """Every numeric IPv4 spelling is a literal, returned as a dotted quad."""
        for host in (
            "127.0.0.1",
            "127.0.0.1.",
            "2130706433",
            "127.1",
            "127.0.1",
            "0x7f.1",
            "0x7f000001",
            "0177.0.0.1",
            "０x7f.1",
            "１２７。０。０。１",
        ):
            self.assertEqual(self.host_of(host), "127.0.0.1", host)
        self.assertEqual(self.host_of("0"), "0.0.0.0")
        self.assertEqual(parse_connect({"host": "127.1"}).domain, "127.0.0.1")

    def test_numeric_names_refused(self):
        """A name ending in a numeric label that is no IPv4 spelling is refused."""
        for host in (
            "1.2.3.256",
            "4294967296",
            "1.2.3.4.5",
            "example.123",
            "foo.0x1",
            "08",
            "0x",
        ):
            self.rejects(
                parse_connect,
                {"host": host},
                "host must be a DNS name or an IP address "
                "(it is numeric but not a valid IPv4 address)",
            )

    def test_hex_looking_names(self):
        """Names that merely look hexadecimal are DNS names."""
        self.assertEqual(self.host_of("deadbeef"), "deadbeef")
        self.assertEqual(self.host_of("123.example"), "123.example")

    def test_ipv6(self):
        """IPv6 literals, bracketed or not, come back compressed and unbracketed."""
        self.assertEqual(self.host_of("::1"), "::1")
        self.assertEqual(self.host_of("[::1]"), "::1")
        self.assertEqual(self.host_of("[2001:DB8:0:0:0:0:0:1]"), "2001:db8::1")
        self.assertEqual(parse_connect({"host": "[::1]"}).domain, "[::1]")

    def test_ipv6_invalid(self):
        """Broken brackets, IPv4 in brackets, ports and zone identifiers are refused."""
        cases = {
            "[127.0.0.1]": "brackets must enclose an IPv6 address",
            "[::1": "it is not a valid IPv6 address; give the port in the port field",
            "[::1]:5222": "it is not a valid IPv6 address; give the port in the port field",
            "[]": "brackets must enclose an IPv6 address",
            "[example.com]": "brackets must enclose an IPv6 address",
            "fe80::1%eth0": "IPv6 zone identifiers are not allowed",
            "[fe80::1%25eth0]": "IPv6 zone identifiers are not allowed",
            "1:2:3:4:5:6:7:8:9": "it is not a valid IPv6 address; give the port in the port field",
        }
        for host, reason in cases.items():
            self.rejects(
                parse_connect,
                {"host": host},
                f"host must be a DNS name or an IP address ({reason})",
            )

    def test_check_host_names_field(self):
        """check_host names the field it is given (for other endpoints)."""
        self.assertEqual(check_host("Example.com", "target"), "example.com")
        error = self.assertRaises(RequestError, check_host, "a b", "target")
        self.assertTrue(error.message.startswith("target must be a DNS name"))

    def test_nothing_resolved(self):
        """A name that cannot exist is still valid: nothing is looked up."""
        self.assertEqual(self.host_of("no-such-host.invalid"), "no-such-host.invalid")


class DomainTests(_Helpers, SynchronousTestCase):
    def domain_of(self, domain):
        return parse_connect({"host": "example.com", "domain": domain}).domain

    def test_domain_normalised(self):
        """domain is lower-cased, U-labels, trailing dot dropped."""
        self.assertEqual(self.domain_of("Example.COM."), "example.com")
        self.assertEqual(self.domain_of("xn--bcher-kva.example"), "bücher.example")
        self.assertEqual(self.domain_of("BÜCHER.example"), "bücher.example")

    def test_domain_ip_literals(self):
        """An IPv4 domain is a dotted quad; IPv6 comes back in brackets."""
        self.assertEqual(self.domain_of("192.0.2.1"), "192.0.2.1")
        self.assertEqual(self.domain_of("[2001:DB8::1]"), "[2001:db8::1]")
        self.assertEqual(self.domain_of("2001:db8::1"), "[2001:db8::1]")

    def test_domain_invalid(self):
        """Invalid domains are refused, naming the field and the reason."""
        cases = {
            "exa mple.com": "a label is not letters, digits and inner hyphens",
            "": "it is empty",
            "a..b": "a label is empty",
            "a" * 64: "a label is longer than 63 octets",
            "127.1": "an IPv4 address must be written as a dotted quad",
            "0x7f.0.0.1": "an IPv4 address must be written as a dotted quad",
            "1.2.3.256": "it is numeric but not a valid IPv4 address",
            "[192.0.2.1]": "brackets must enclose an IPv6 address",
            "[fe80::1%eth0]": "IPv6 zone identifiers are not allowed",
            "::g": "it is not a valid IPv6 address",
            "user@example.com": "a label is not letters, digits and inner hyphens",
        }
        for domain, reason in cases.items():
            self.rejects(
                parse_connect,
                {"host": "example.com", "domain": domain},
                f"domain must be a valid JID domainpart ({reason})",
            )

    def test_domain_not_a_string(self):
        """A domain of another JSON type is named as not a string."""
        for domain in (5, True, ["example.com"]):
            self.rejects(
                parse_connect, {"host": "example.com", "domain": domain}, "domain must be a string"
            )

    def test_check_domain(self):
        """check_domain validates any field as a domainpart."""
        self.assertEqual(check_domain("Example.org", "from"), "example.org")
        error = self.assertRaises(RequestError, check_domain, "a b", "from")
        self.assertTrue(error.message.startswith("from must be a valid JID domainpart"))


class AuthTests(_Helpers, SynchronousTestCase):
    def test_login_defaults(self):
        """login: port 5222, 15 s, tls auto, verify, resource portofcall, no mechanism."""
        self.assertEqual(
            parse_login(AUTH),
            AuthRequest(
                host="example.com",
                port=5222,
                domain="example.com",
                timeout=15.0,
                tls="auto",
                tls_verify=True,
                username="juliet",
                password=PASSWORD,
                resource="portofcall",
                mechanism=None,
                channel_binding=None,
                transcript=False,
            ),
        )

    def test_timeout_defaults(self):
        """The default timeout is 15 s for login, 20 s for roster and message."""
        self.assertEqual(parse_login(AUTH).timeout, 15.0)
        self.assertEqual(parse_roster(AUTH).timeout, 20.0)
        self.assertEqual(parse_message(MESSAGE).auth.timeout, 20.0)
        self.assertEqual(parse_auth(AUTH, default_timeout=7.0).timeout, 7.0)

    def test_timeout_given(self):
        """An explicit timeout overrides every endpoint's default."""
        for parse in (parse_login, parse_roster):
            self.assertEqual(parse({**AUTH, "timeout": 500}).timeout, 0.5)
        self.assertEqual(parse_message({**MESSAGE, "timeout": 500}).auth.timeout, 0.5)
        for parse in (parse_login, parse_roster, parse_message):
            self.rejects(parse, {**MESSAGE, "timeout": 0}, TIMEOUT_ERROR)

    def test_all_fields(self):
        """Every auth field given is validated and converted."""
        request = parse_roster(
            {
                "host": "xmpp.example.com",
                "port": 5223,
                "domain": "example.com",
                "timeout": 30000,
                "tls": "required",
                "tlsVerify": False,
                "username": "Juliet",
                "password": PASSWORD,
                "resource": "Balcony/1",
                "mechanism": "scram-sha-256-plus",
                "channelBinding": "tls-exporter",
                "transcript": True,
            }
        )
        self.assertEqual(
            request,
            AuthRequest(
                host="xmpp.example.com",
                port=5223,
                domain="example.com",
                timeout=30.0,
                tls="required",
                tls_verify=False,
                username="juliet",
                password=PASSWORD,
                resource="Balcony/1",
                mechanism="SCRAM-SHA-256-PLUS",
                channel_binding="tls-exporter",
                transcript=True,
            ),
        )

    def test_required(self):
        """A missing, null or empty host, username or password uses the reference wording."""
        for name in ("host", "username", "password"):
            for missing in ({}, {name: None}, {name: ""}):
                body = {k: v for k, v in AUTH.items() if k != name}
                body.update(missing)
                for parse in (parse_login, parse_roster, parse_message):
                    self.rejects(parse, {**body, "recipient": "a@b.c"}, AUTH_REQUIRED)
        self.rejects(parse_login, {}, AUTH_REQUIRED)

    def test_port_5223_defaults_to_direct_tls(self):
        """On port 5223 without a tls field, an auth endpoint uses direct TLS."""
        self.assertEqual(parse_login({**AUTH, "port": 5223}).tls, "direct")
        self.assertEqual(parse_login({**AUTH, "port": 5223, "tls": "auto"}).tls, "auto")
        self.assertEqual(parse_message({**MESSAGE, "port": 5223}).auth.tls, "direct")

    def test_tls_modes(self):
        """tls is auto, required, none or direct on auth endpoints."""
        for tls in AUTH_TLS_MODES:
            self.assertEqual(parse_login({**AUTH, "tls": tls}).tls, tls)
        self.assertEqual(parse_login({**AUTH, "tls": "Required"}).tls, "required")
        for tls in ("starttls", "", 1, False):
            self.rejects(
                parse_login,
                {**AUTH, "tls": tls},
                "tls must be one of: auto, required, none, direct",
            )

    def test_tls_verify(self):
        """tlsVerify defaults to true and must be a JSON boolean."""
        self.assertIs(parse_login({**AUTH, "tlsVerify": False}).tls_verify, False)
        for value in ("false", 0, 1):
            self.rejects(
                parse_login,
                {**AUTH, "tlsVerify": value},
                "tlsVerify must be a boolean (true or false)",
            )

    def test_port_and_transcript(self):
        """port and transcript follow the common rules on auth endpoints."""
        for port in (0, 65536, True, 5222.0):
            self.rejects(parse_login, {**AUTH, "port": port}, PORT_ERROR)
        self.rejects(
            parse_roster,
            {**AUTH, "transcript": "yes"},
            "transcript must be a boolean (true or false)",
        )

    def test_host_rules(self):
        """host on auth endpoints follows the same rules (IDN, literals, errors)."""
        self.assertEqual(
            parse_login({**AUTH, "host": "bücher.example"}).host, "xn--bcher-kva.example"
        )
        self.assertEqual(parse_login({**AUTH, "host": "0x7f.1"}).host, "127.0.0.1")
        self.rejects(parse_login, {**AUTH, "host": 5}, "host must be a string")
        self.rejects_starting(parse_login, {**AUTH, "host": "a b"}, "host must be a DNS name")
        self.rejects_starting(
            parse_login, {**AUTH, "domain": "a b"}, "domain must be a valid JID domainpart"
        )

    def test_domain_default_from_ipv6_host(self):
        """With an IPv6 host and no domain, the domain is the bracketed address."""
        self.assertEqual(parse_login({**AUTH, "host": "::1"}).domain, "[::1]")

    def test_username_case_mapped(self):
        """username is enforced with PRECIS UsernameCaseMapped."""
        self.assertEqual(parse_login({**AUTH, "username": "Juliet"}).username, "juliet")
        self.assertEqual(parse_login({**AUTH, "username": "ÉLODIE"}).username, "élodie")
        self.assertEqual(parse_login({**AUTH, "username": "ｊｕｌｉｅｔ"}).username, "juliet")
        self.assertEqual(parse_login({**AUTH, "username": "a.b-c_d+e"}).username, "a.b-c_d+e")

    def test_username_invalid(self):
        """Spaces, the RFC 7622 forbidden characters, controls and compat forms are refused."""
        forbidden = "it contains one of \" & ' / : < > @"
        cases = {
            "ju liet": "PRECIS UsernameCaseMapped: DISALLOWED/spaces",
            " juliet": "PRECIS UsernameCaseMapped: DISALLOWED/spaces",
            "juliet@example.com": forbidden,
            "a:b": forbidden,
            'a"b': forbidden,
            "a&b": forbidden,
            "a'b": forbidden,
            "a/b": forbidden,
            "a<b": forbidden,
            "a>b": forbidden,
            "a\x00b": "PRECIS UsernameCaseMapped: DISALLOWED/controls",
            "ﬁ": "PRECIS UsernameCaseMapped: DISALLOWED/has_compat",
        }
        for username, reason in cases.items():
            self.rejects(
                parse_login,
                {**AUTH, "username": username},
                f"username must be a valid JID localpart ({reason})",
            )
        self.rejects(parse_login, {**AUTH, "username": 42}, "username must be a string")
        self.rejects_starting(
            parse_login, {**AUTH, "username": "\ud800"}, "username must be a valid JID localpart"
        )

    def test_username_length(self):
        """username may be 1023 bytes, not 1024."""
        self.assertEqual(parse_login({**AUTH, "username": "a" * 1023}).username, "a" * 1023)
        for username in ("a" * 1024, "é" * 512, "a" * 5000):
            self.rejects(
                parse_login,
                {**AUTH, "username": username},
                "username must be a valid JID localpart (it is longer than 1023 bytes)",
            )

    def test_password_kept_as_given(self):
        """password is not changed (SASLprep happens in the SASL layer)."""
        for password in ("  Pa ss\u00a0wörd  ", "ﬁ", "a" * 1023, "é" * 511 + "a"):
            self.assertEqual(parse_login({**AUTH, "password": password}).password, password)

    def test_password_invalid(self):
        """password must be a string of 1-1023 UTF-8 bytes, without NUL or lone surrogates."""
        too_long = "password must be a non-empty string of at most 1023 bytes"
        for password, message in (
            ("a" * 1024, too_long),
            ("é" * 512, too_long),
            (12345, "password must be a string"),
            (["x"], "password must be a string"),
            ("a\x00b", "password must not contain NUL characters"),
            ("a\udc80b", "password must not contain unpaired surrogates"),
        ):
            error = self.rejects(parse_login, {**AUTH, "password": password}, message)
            if isinstance(password, str):
                self.assertNotIn(password, str(error))

    def test_password_not_in_repr(self):
        """Neither repr nor str of a request shows the password."""
        auth = parse_login(AUTH)
        message = parse_message(MESSAGE)
        for text in (repr(auth), str(auth), repr(message), str(message)):
            self.assertNotIn(PASSWORD, text)
            self.assertNotIn("password", text)
        self.assertIn("juliet", repr(auth))

    def test_password_not_in_errors(self):
        """No error raised for another field repeats the password."""
        error = self.assertRaises(RequestError, parse_login, {**AUTH, "port": PASSWORD})
        self.assertNotIn(PASSWORD, error.message)

    def test_resource(self):
        """resource defaults to portofcall and is enforced with PRECIS OpaqueString."""
        self.assertEqual(parse_login(AUTH).resource, "portofcall")
        for resource in ("Phone", "a b/c@d", "x" * 1023, "Café"):
            self.assertEqual(parse_login({**AUTH, "resource": resource}).resource, resource)
        self.assertEqual(parse_login({**AUTH, "resource": "a\u00a0b"}).resource, "a b")

    def test_resource_invalid(self):
        """An empty, control-bearing, over-long or non-string resource is refused."""
        cases = {
            "": "it is empty",
            "a\x00": "PRECIS OpaqueString: DISALLOWED/controls",
            "x" * 1024: "it is longer than 1023 bytes",
        }
        for resource, reason in cases.items():
            self.rejects(
                parse_login,
                {**AUTH, "resource": resource},
                f"resource must be a valid JID resourcepart ({reason})",
            )
        self.rejects(parse_login, {**AUTH, "resource": 1}, "resource must be a string")

    def test_mechanisms(self):
        """mechanism is any known mechanism, case-insensitive in, upper case out."""
        for mechanism in MECHANISMS:
            for spelling in (mechanism, mechanism.lower()):
                self.assertEqual(parse_login({**AUTH, "mechanism": spelling}).mechanism, mechanism)

    def test_mechanism_invalid(self):
        """Unknown mechanisms, non-ASCII look-alikes and non-strings are refused."""
        message = "mechanism must be one of: " + ", ".join(MECHANISMS)
        for mechanism in ("DIGEST-MD5", "EXTERNAL", "plaın", "SCRAM-SHA-1 ", "", 1, True):
            self.rejects(parse_login, {**AUTH, "mechanism": mechanism}, message)

    def test_channel_binding(self):
        """channelBinding is one of the three types, case-insensitive in, lower case out."""
        for binding in CHANNEL_BINDINGS:
            request = parse_login({**AUTH, "channelBinding": binding.upper()})
            self.assertEqual(request.channel_binding, binding)
        message = "channelBinding must be one of: tls-exporter, tls-server-end-point, tls-unique"
        for binding in ("tls-foo", "", 0, ["tls-unique"]):
            self.rejects(parse_login, {**AUTH, "channelBinding": binding}, message)

    def test_constructed_defaults(self):
        """Built directly, an AuthRequest derives domain from host and tls from port."""
        request = AuthRequest(host="::1", port=5223, username="u", password="p")
        self.assertEqual((request.domain, request.tls, request.timeout), ("[::1]", "direct", 15.0))
        self.assertEqual(request.jid, JID("u", "[::1]"))


class MessageTests(_Helpers, SynchronousTestCase):
    def test_defaults(self):
        """message: greeting body, type chat, no receipt, 2 s wait, 20 s timeout."""
        self.assertEqual(
            parse_message(MESSAGE),
            MessageRequest(
                auth=parse_auth(AUTH, default_timeout=20.0),
                recipient="romeo@example.net",
                message="Hello from PortOfCall",
                type="chat",
                receipt=False,
                wait=2.0,
            ),
        )

    def test_recipient_required(self):
        """A missing, null or empty recipient is refused with the reference wording."""
        for recipient in ({}, {"recipient": None}, {"recipient": ""}):
            self.rejects(parse_message, {**AUTH, **recipient}, "recipient is required")

    def test_credentials_checked_first(self):
        """Missing credentials are reported before a missing recipient."""
        self.rejects(parse_message, {"host": "example.com"}, AUTH_REQUIRED)

    def test_recipient_normalised(self):
        """recipient is returned normalised: localpart and domain mapped, resource kept."""
        cases = {
            "Romeo@Example.NET": "romeo@example.net",
            "Romeo@Example.NET/Orchard": "romeo@example.net/Orchard",
            "example.net": "example.net",
            "example.net/service": "example.net/service",
            "romeo@xn--bcher-kva.example": "romeo@bücher.example",
            "romeo@example.net./a": "romeo@example.net/a",
            "romeo@[::1]": "romeo@[::1]",
            "romeo@192.0.2.1/x": "romeo@192.0.2.1/x",
        }
        for recipient, expected in cases.items():
            request = parse_message({**MESSAGE, "recipient": recipient})
            self.assertEqual(request.recipient, expected)

    def test_recipient_resource_with_slash_and_at(self):
        """Everything after the first slash is the resource, slashes and @ included."""
        request = parse_message({**MESSAGE, "recipient": "romeo@example.net/a/b@c d"})
        self.assertEqual(request.recipient, "romeo@example.net/a/b@c d")

    def test_recipient_invalid(self):
        """Invalid recipients are refused, naming the part at fault."""
        cases = {
            "ro meo@example.net": "localpart: PRECIS UsernameCaseMapped: DISALLOWED/spaces",
            "a:b@example.net": "localpart: it contains one of \" & ' / : < > @",
            "@example.net": "localpart: it is empty",
            "romeo@": "domainpart: it is empty",
            "romeo@example.net/": "resourcepart: it is empty",
            "romeo@example..net": "domainpart: a label is empty",
            "a@b@example.net": "domainpart: a label is not letters, digits and inner hyphens",
            "romeo@::1": "domainpart: a label is not letters, digits and inner hyphens",
            "romeo@127.1": "domainpart: an IPv4 address must be written as a dotted quad",
            "romeo@example.net/a\x00": "resourcepart: PRECIS OpaqueString: DISALLOWED/controls",
        }
        for recipient, reason in cases.items():
            self.rejects(
                parse_message,
                {**MESSAGE, "recipient": recipient},
                f"recipient must be a valid JID ({reason})",
            )
        self.rejects(parse_message, {**MESSAGE, "recipient": 5}, "recipient must be a string")

    def test_message_body(self):
        """message is any XML-safe string of 1 to 16384 UTF-8 bytes."""
        for body in ("hi", "line\nbreak\ttab\r", "<b>&amp;</b>", "x" * 16384, "é" * 8192):
            self.assertEqual(parse_message({**MESSAGE, "message": body}).message, body)

    def test_message_invalid(self):
        """Empty, over-long, XML-unsafe and non-string messages are refused."""
        too_long = "message must be at most 16384 bytes (UTF-8)"
        unsafe = "message contains characters not allowed in XML"
        for body, error in (
            ("", "message must not be empty"),
            ("x" * 16385, too_long),
            ("é" * 8192 + "x", too_long),
            ("a\x00b", unsafe),
            ("a\x1bb", unsafe),
            ("\ufffe", unsafe),
            ("a\ud800", unsafe),
            (42, "message must be a string"),
            (["hi"], "message must be a string"),
        ):
            self.rejects(parse_message, {**MESSAGE, "message": body}, error)

    def test_type(self):
        """type is chat, normal or headline; groupchat and error are refused."""
        for kind in MESSAGE_TYPES:
            self.assertEqual(parse_message({**MESSAGE, "type": kind}).type, kind)
        self.assertEqual(parse_message({**MESSAGE, "type": "Headline"}).type, "headline")
        for kind in ("groupchat", "error", "", 1):
            self.rejects(
                parse_message,
                {**MESSAGE, "type": kind},
                "type must be one of: chat, normal, headline",
            )

    def test_receipt(self):
        """receipt defaults to false and must be a JSON boolean."""
        self.assertIs(parse_message({**MESSAGE, "receipt": True}).receipt, True)
        self.rejects(
            parse_message,
            {**MESSAGE, "receipt": "true"},
            "receipt must be a boolean (true or false)",
        )

    def test_wait(self):
        """waitMs is integer milliseconds from 0 to 30000, held in seconds."""
        for ms, seconds in ((0, 0.0), (1500, 1.5), (30000, 30.0)):
            self.assertEqual(parse_message({**MESSAGE, "waitMs": ms}).wait, seconds)
        for ms in [-1, 30001, *NOT_INTEGERS]:
            self.rejects(parse_message, {**MESSAGE, "waitMs": ms}, WAIT_ERROR)

    def test_auth_fields_validated(self):
        """The auth fields of a message request follow the auth rules."""
        self.rejects_starting(
            parse_message, {**MESSAGE, "username": "a b"}, "username must be a valid JID localpart"
        )


class TargetTests(SynchronousTestCase):
    def test_target(self):
        """Every request names where its probe goes (the log line's target), by its type."""
        self.assertEqual(parse_connect({"host": "Example.COM"}).target, "example.com:5222")
        self.assertEqual(parse_s2s({"host": "::1"}).target, "::1:5269")
        self.assertEqual(parse_login({**AUTH, "port": 5223}).target, "example.com:5223")
        self.assertEqual(parse_message(MESSAGE).target, "example.com:5222")
        self.assertEqual(parse_srv({"domain": "example.org"}).target, "example.org")

    def test_transcript(self):
        """A /message request's transcript flag is that of its login."""
        self.assertIs(parse_message({**MESSAGE, "transcript": True}).transcript, True)
        self.assertIs(parse_message(MESSAGE).transcript, False)


class DomainAloneTests(_Helpers, SynchronousTestCase):
    """SPEC §8: domain without host on every probe endpoint."""

    def test_domain_alone(self):
        """domain without host: no host (look it up), the default port, tls auto."""
        self.assertEqual(
            parse_connect({"domain": "Example.ORG"}),
            ConnectRequest(host=None, port=5222, domain="example.org", tls="auto"),
        )
        s2s = parse_s2s({"domain": "example.org", "from": "example.net"})
        self.assertEqual(
            (s2s.host, s2s.port, s2s.domain, s2s.tls), (None, 5269, "example.org", "auto")
        )
        for parse in (parse_login, parse_roster, parse_server_info):
            auth = parse({"domain": "example.org", "username": "alice", "password": "pw"})
            self.assertEqual((auth.host, auth.domain, auth.tls), (None, "example.org", "auto"))
            self.assertEqual(str(auth.jid), "alice@example.org")
        message = parse_message(
            {"domain": "example.org", "username": "a", "password": "pw", "recipient": "b@x.org"}
        )
        self.assertIsNone(message.auth.host)

    def test_domain_and_port(self):
        """domain and port without host: the domain is the host, on that port (no SRV)."""
        request = parse_connect({"domain": "Bücher.example", "port": 5223})
        self.assertEqual(
            (request.host, request.port, request.domain, request.tls),
            ("xn--bcher-kva.example", 5223, "bücher.example", "direct"),
        )

    def test_target(self):
        """The log line's target of a domain alone is the domain."""
        self.assertEqual(parse_connect({"domain": "example.org"}).target, "example.org")
        self.assertEqual(parse_login({**AUTH, "host": None, "domain": "x.org"}).target, "x.org")

    def test_neither(self):
        """Neither host nor domain: 400 with the reference wording."""
        for body in ({}, {"domain": ""}, {"domain": None, "host": None}):
            self.rejects(parse_connect, body, "Missing required parameter: host")
            self.rejects(parse_s2s, body, "Missing required parameter: host")
            self.rejects(
                parse_login,
                {**body, "username": "a", "password": "pw"},
                "host, username, and password are required",
            )

    def test_invalid_domain(self):
        """A domain that is not a valid domain: 400 naming the field."""
        for domain in ("exa mple.org", "a..b", "x" * 300, 5):
            self.rejects_starting(parse_connect, {"domain": domain}, "domain must be")
            self.rejects_starting(
                parse_login, {"domain": domain, "username": "a", "password": "p"}, "domain must be"
            )


class JIDTests(SynchronousTestCase):
    def test_parts(self):
        """A full JID splits into localpart, domainpart and resourcepart."""
        jid = parse_jid("juliet@example.com/balcony")
        self.assertEqual(jid, JID("juliet", "example.com", "balcony"))
        self.assertEqual(jid.bare, "juliet@example.com")
        self.assertEqual(jid.full, "juliet@example.com/balcony")
        self.assertEqual(str(jid), jid.full)

    def test_absent_parts(self):
        """Absent localpart and resourcepart are None."""
        self.assertEqual(parse_jid("example.com"), JID(None, "example.com", None))
        self.assertEqual(parse_jid("example.com/res"), JID(None, "example.com", "res"))
        self.assertEqual(parse_jid("example.com/res").bare, "example.com")

    def test_resource_with_slash_and_at(self):
        """The resource runs from the first slash, and may contain / and @."""
        jid = parse_jid("juliet@example.com/a@b/c/d")
        self.assertEqual(jid.resource, "a@b/c/d")
        self.assertEqual(parse_jid("example.com/x@y").local, None)

    def test_normalised(self):
        """Strict parsing lower-cases the localpart and domain and keeps the resource's case."""
        self.assertEqual(
            parse_jid("Juliet@Bücher.EXAMPLE./Balcony").full, "juliet@bücher.example/Balcony"
        )

    def test_invalid(self):
        """Strict parsing raises InvalidJID (a ValueError) naming the part."""
        for text in ("ju liet@example.com", "@example.com", "a@", "a@b/", "", "a@b@c", 5, None):
            error = self.assertRaises(InvalidJID, parse_jid, text)
            self.assertIsInstance(error, ValueError)

    def test_lenient(self):
        """strict=False only splits: parts stay as given, even invalid ones."""
        self.assertEqual(
            parse_jid("Ju Liet@EXAMPLE.com/Res/x", strict=False),
            JID("Ju Liet", "EXAMPLE.com", "Res/x"),
        )
        self.assertEqual(parse_jid("a@b@c", strict=False), JID("a", "b@c", None))
        self.assertEqual(parse_jid("@/", strict=False).full, "@/")

    @given(st.text())
    def test_lenient_round_trip(self, text):
        """Lenient parsing of any string gives the string back as .full."""
        self.assertEqual(parse_jid(text, strict=False).full, text)


# ---------------------------------------------------------------------------
# Properties

_username = precis_i18n.get_profile("UsernameCaseMapped")
_opaque = precis_i18n.get_profile("OpaqueString")

_LDH = "abcdefghijklmnopqrstuvwxyz0123456789"
_labels = st.builds(
    lambda first, middle, last: first + middle + last,
    st.sampled_from(_LDH),
    st.text(_LDH + "-", max_size=20),
    st.sampled_from(_LDH),
).filter(lambda label: not label.startswith("xn--"))
_ldh_domains = (
    st.lists(_labels, min_size=1, max_size=4)
    .map(".".join)
    .filter(
        lambda d: not d.rsplit(".", 1)[-1].isdigit() and not d.rsplit(".", 1)[-1].startswith("0x")
    )
)
_domains = st.one_of(
    _ldh_domains,
    st.sampled_from(["bücher.example", "例え.jp", "пример.рф", "[::1]", "[2001:db8::1]"]),
    st.sampled_from(["192.0.2.1", "127.0.0.1", "10.0.0.255"]),
)
_localparts = st.text(
    st.characters(
        categories=("Ll", "Lo", "Nd"), include_characters="._-+!#$%*=?^{|}~", codec="utf-8"
    ),
    min_size=1,
    max_size=20,
)
_resources = st.text(
    st.characters(categories=("L", "N", "P", "S", "Zs"), codec="utf-8"), min_size=1, max_size=20
)


def _enforced(profile, text):
    try:
        return profile.enforce(text) == text
    except UnicodeError:
        return False


# Every JSON value, including strings with unpaired surrogates.
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters(exclude_categories=())),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=10,
)
_texts = st.text(st.characters(exclude_categories=()), max_size=60)

_FIELDS = [
    (parse_connect, {"host": "example.com"}, ["host", "port", "domain", "timeout", "tls"]),
    (parse_connect, {"host": "example.com"}, ["transcript"]),
    (
        parse_login,
        AUTH,
        ["host", "port", "domain", "timeout", "tls", "tlsVerify", "username", "password"],
    ),
    (parse_roster, AUTH, ["resource", "mechanism", "channelBinding", "transcript"]),
    (parse_message, MESSAGE, ["recipient", "message", "type", "receipt", "waitMs"]),
]


class PropertyTests(SynchronousTestCase):
    @settings(deadline=None)
    @given(st.tuples(st.none() | _localparts, _domains, st.none() | _resources))
    def test_valid_jid_round_trip(self, parts):
        """A JID in normal form parses to the same parts, and .full gives it back."""
        local, domain, resource = parts
        assume(local is None or _enforced(_username, local))
        assume(resource is None or _enforced(_opaque, resource))
        jid = JID(local, domain, resource)
        self.assertEqual(parse_jid(jid.full), jid)
        self.assertEqual(parse_jid(jid.full).full, jid.full)

    @settings(deadline=None)
    @given(_texts)
    def test_strict_parse_idempotent(self, text):
        """A JID that parses re-parses from its .full to itself; otherwise InvalidJID."""
        try:
            jid = parse_jid(text)
        except InvalidJID:
            return
        self.assertEqual(parse_jid(jid.full), jid)

    @settings(deadline=None)
    @given(
        st.sampled_from(_FIELDS).flatmap(
            lambda case: st.tuples(st.just(case[0]), st.just(case[1]), st.sampled_from(case[2]))
        ),
        _json,
    )
    def test_any_json_value(self, case, value):
        """Any JSON value in any field gives a request or a 400 RequestError, nothing else."""
        parse, base, name = case
        try:
            parse({**base, name: value})
        except RequestError as e:
            self.assertEqual(e.status, 400)
            self.assertIsInstance(e.message, str)

    @settings(deadline=None)
    @given(
        st.sampled_from(["host", "domain", "username", "password", "resource", "recipient"]),
        _texts,
    )
    def test_any_text_value(self, name, text):
        """Any string in a string field gives a request or a 400 RequestError."""
        try:
            parse_message({**MESSAGE, name: text})
        except RequestError as e:
            self.assertEqual(e.status, 400)
            self.assertTrue(
                e.message.startswith(name) or e.message in (AUTH_REQUIRED, "recipient is required"),
                e.message,
            )

    @settings(deadline=None)
    @given(st.dictionaries(st.text(max_size=15), _json, max_size=8))
    def test_any_object(self, body):
        """Any JSON object gives a request or a 400 RequestError from every parser."""
        for parse in (parse_connect, parse_login, parse_roster, parse_message):
            try:
                parse(body)
            except RequestError as e:
                self.assertEqual(e.status, 400)


_host_texts = st.text(
    st.sampled_from("0123456789abcdefxXyz-.:[]%_ü。１Ａ\u00ad"), min_size=1, max_size=40
)


class HostPropertyTests(SynchronousTestCase):
    @settings(deadline=None)
    @given(_host_texts)
    def test_host_normal_form(self, text):
        """An accepted host is an IP literal or an LDH name no parser reads as an address."""
        try:
            host = check_host(text)
        except RequestError as e:
            self.assertTrue(e.message.startswith("host must be"), e.message)
            return
        self.assertEqual(check_host(host), host)
        address = parse_ip_literal(host)
        if address is not None:
            self.assertEqual(str(address), host)
            return
        labels = host.split(".")
        self.assertLessEqual(len(host), 253)
        for label in labels:
            self.assertRegex(label, r"\A[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
        self.assertNotRegex(labels[-1], r"\A(?:[0-9]+|0x[0-9a-f]*)\Z")

    @settings(deadline=None)
    @given(_host_texts)
    def test_domain_idempotent(self, text):
        """An accepted domain validates again to itself."""
        try:
            domain = check_domain(text)
        except RequestError as e:
            self.assertTrue(e.message.startswith("domain must be"), e.message)
            return
        self.assertEqual(check_domain(domain), domain)
