"""Tests for portofcall_xmpp.names: IP literals and DNS query names (the
strict field checks are exercised through tests/unit/test_validate.py)."""

from __future__ import annotations

import ipaddress
import platform
import socket

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from portofcall_xmpp import names
from portofcall_xmpp.names import (
    InvalidName,
    domain_of_host,
    normalise_host,
    parse_address,
    parse_ip_literal,
    parse_jid,
    query_name,
)

ip = ipaddress.ip_address


class ParseIPLiteralTests(SynchronousTestCase):
    def test_standard_literals(self):
        """Dotted-quad IPv4 and IPv6 (bare or bracketed) parse to their address."""
        self.assertEqual(parse_ip_literal("8.8.8.8"), ip("8.8.8.8"))
        self.assertEqual(parse_ip_literal("2606:4700::1111"), ip("2606:4700::1111"))
        self.assertEqual(parse_ip_literal("[2606:4700::1111]"), ip("2606:4700::1111"))
        self.assertEqual(parse_ip_literal("[::1]"), ip("::1"))
        self.assertEqual(parse_ip_literal("::FFFF:127.0.0.1"), ip("::ffff:7f00:1"))

    def test_legacy_ipv4_spellings(self):
        """Every numeric spelling inet_aton accepts parses to the address it means."""
        cases = {
            "2130706433": "127.0.0.1",
            "127.1": "127.0.0.1",
            "127.0.1": "127.0.0.1",
            "0x7f.1": "127.0.0.1",
            "0X7F.0X0.0X0.0X1": "127.0.0.1",
            "0177.0.0.1": "127.0.0.1",
            "0177.1": "127.0.0.1",
            "0x7f000001": "127.0.0.1",
            "017700000001": "127.0.0.1",
            "0x00000000000000007f.1": "127.0.0.1",
            "000000000000000000000177.1": "127.0.0.1",
            "010.0.0.1": "8.0.0.1",
            "0": "0.0.0.0",
            "0x0": "0.0.0.0",
            "4294967295": "255.255.255.255",
            "10.0xffff": "10.0.255.255",
            "192.168.65535": "192.168.255.255",
            "1.16777215": "1.255.255.255",
            "167772161": "10.0.0.1",
        }
        for text, expected in cases.items():
            self.assertEqual(parse_ip_literal(text), ip(expected), text)

    def test_trailing_dot(self):
        """One trailing dot keeps a numeric spelling a literal (it is never sent to DNS)."""
        self.assertEqual(parse_ip_literal("127.0.0.1."), ip("127.0.0.1"))
        self.assertEqual(parse_ip_literal("2130706433."), ip("127.0.0.1"))
        self.assertIsNone(parse_ip_literal("127.0.0.1.."))

    def test_dns_names_are_not_literals(self):
        """DNS names, including all-numeric-looking ones inet_aton rejects, return None."""
        for text in [
            "example.com",
            "xmpp.example.org.",
            "localhost",
            "1.2.3.4.5",
            "1.2.3.256",
            "256.1",
            "1.2.65536",
            "1.16777216",
            "4294967296",
            "0x100000000",
            "08",
            "09.1.1.1",
            "0x",
            "0x.1",
            "1..1",
            ".1",
            ".",
            "",
            "0xg",
            "1e3",
            "+1",
            "-1",
            " 127.0.0.1",
            "127.0.0.1 ",
            "１２７.0.0.1",
            "9" * 5000,
        ]:
            self.assertIsNone(parse_ip_literal(text), repr(text))

    def test_zone_ids_and_bad_brackets_are_refused(self):
        """Zone identifiers, brackets around non-IPv6 and unbalanced brackets are not literals."""
        for text in [
            "fe80::1%eth0",
            "[fe80::1%25eth0]",
            "[fe80::1%eth0]",
            "[127.0.0.1]",
            "[example.com]",
            "[::1",
            "::1]",
            "[]",
            ":::",
            "1::2::3",
        ]:
            self.assertIsNone(parse_ip_literal(text), repr(text))

    @given(
        st.lists(
            st.one_of(
                st.integers(0, 2**32).map(str),
                st.integers(0, 2**32).map(hex),
                st.integers(0, 2**32).map(lambda n: "0" + format(n, "o")),
                st.text("0123456789abcdefxX", max_size=12),
            ),
            min_size=1,
            max_size=5,
        ).map(".".join)
    )
    def test_agrees_with_inet_aton(self, text):
        """On glibc, the IPv4 spellings accepted are inet_aton's (plus one trailing dot)."""
        if platform.libc_ver()[0] != "glibc":
            return
        # One trailing dot is accepted on purpose (see test_trailing_dot).
        bare = text[:-1] if text.endswith(".") and not text.endswith("..") else text
        try:
            expected = ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            expected = None
        self.assertEqual(parse_ip_literal(text), expected)


# Spellings of every kind: standard and legacy IPv4, IPv6, names, refused forms.
SPELLINGS = [
    "8.8.8.8", "2606:4700::1111", "[2606:4700::1111]", "[::1]", "::FFFF:127.0.0.1",
    "2130706433", "127.1", "0x7f.1", "0X7F.0X0.0X0.0X1", "0177.0.0.1", "0x7f000001",
    "017700000001", "0x00000000000000007f.1", "000000000000000000000177.1", "010.0.0.1",
    "0", "0x0", "4294967295", "10.0xffff", "127.0.0.1.", "127.0.0.1..", "example.com",
    "1.2.3.256", "4294967296", "08", "0x", "1..1", "", "1e3", " 127.0.0.1", "fe80::1%eth0",
    "[127.0.0.1]", "[::1", "[]", "1::2::3", "\uff11\uff12\uff17.0.0.1",
]  # fmt: skip


def long_spellings():
    """Spellings padded to either side of the cache's 255 characters, and far beyond."""
    out = []
    for length in (254, 255, 256, 300, 5000):
        out += [
            "0" * (length - 1) + "1",  # octal 1: 0.0.0.1
            "0" * (length - 1) + "8",  # not octal: a name
            "0x" + "0" * (length - 6) + "7f.1",
            "1." + "0" * (length - 3) + "1",
            "0" * (length - 8) + "1.0.0.1",
            "[" + "0:" * 7 + "0" * (length - 17) + "1]",
            "a" * length,
            "9" * length,
        ]
    return out


class CachedIPLiteralTests(SynchronousTestCase):
    """parse_ip_literal keeps answers for short strings only; cached or not, the same answer."""

    def test_cached_and_uncached_agree(self):
        """Every spelling, short or long, asked twice: the uncached parser's answer."""
        for text in SPELLINGS + long_spellings():
            expected = names._parse_ip_literal(text) if text.isascii() else None
            self.assertEqual(parse_ip_literal(text), expected, repr(text))
            self.assertEqual(parse_ip_literal(text), expected, repr(text))

    def test_long_legacy_spelling(self):
        """300 leading zeros and a 1: octal 1, as before answers were cached."""
        self.assertEqual(parse_ip_literal("0" * 300 + "1"), ip("0.0.0.1"))
        self.assertEqual(parse_ip_literal("0" * 300 + "8"), None)
        self.assertEqual(parse_ip_literal("0x" + "0" * 300 + "7f.1"), ip("127.0.0.1"))

    def test_long_strings_not_kept(self):
        """A string over 255 characters is parsed without entering the cache."""
        before = names._cached_ip_literal.cache_info()
        for length in (256, 300, 5000):
            parse_ip_literal("0" * (length - 1) + "1")
        after = names._cached_ip_literal.cache_info()
        self.assertEqual((after.hits, after.misses), (before.hits, before.misses))
        parse_ip_literal("0" * 254 + "1")
        parse_ip_literal("0" * 254 + "1")
        after = names._cached_ip_literal.cache_info()
        self.assertEqual(after.hits + after.misses, before.hits + before.misses + 2)

    def test_cache_bounded(self):
        """The cache holds a bounded number of answers, however many hosts are asked."""
        for i in range(5000):
            parse_ip_literal(f"host{i}.example")
        info = names._cached_ip_literal.cache_info()
        self.assertLessEqual(info.currsize, info.maxsize)
        self.assertIsNotNone(info.maxsize)


class QueryNameTests(SynchronousTestCase):
    def test_ascii_kept(self):
        """An ASCII name is asked as given: case, underscores and one trailing dot kept."""
        for name in ["xmpp.example.com", "Example.COM", "_xmpp-client._tcp.example", "a.b."]:
            self.assertEqual(query_name(name), name)

    def test_idna(self):
        """A non-ASCII name is asked in A-labels (UTS 46 mapped)."""
        self.assertEqual(query_name("b\u00fccher.example"), "xn--bcher-kva.example")
        self.assertEqual(query_name("B\u00dcCHER.example"), "xn--bcher-kva.example")

    def test_refused(self):
        """What DNS cannot carry is refused with a reason, never sent."""
        for text, reason in [
            ("", "not a valid host name"),
            ("[::1]", "not a valid host name"),
            ("fe80::1%eth0", "not a valid host name"),
            ("http://example.com/", "not a valid host name"),
            ("a..b", "not a valid host name"),
            ("a" * 64 + ".example", "not a valid host name"),
            (("a" * 60 + ".") * 5, "name longer than 253 octets"),
            ("\u2615\u0000.example", "not a valid host name"),
            ("xn--\u00fc.example", "not a valid internationalised host name"),
        ]:
            exc = self.assertRaises(InvalidName, query_name, text)
            self.assertEqual(str(exc), reason, repr(text))


class OneNormalisationTests(SynchronousTestCase):
    def test_host_and_domain_agree(self):
        """A checked host, its JID domainpart and its query name name the same thing."""
        host = normalise_host("B\u00fccher.Example.")
        self.assertEqual(host, "xn--bcher-kva.example")
        self.assertEqual(domain_of_host(host), "b\u00fccher.example")
        self.assertEqual(query_name(domain_of_host(host)), host)
        self.assertEqual(parse_jid("me@" + domain_of_host(host)).domain, "b\u00fccher.example")

    def test_parse_address(self):
        """parse_address reads only the standard spellings DNS answers use."""
        self.assertEqual(parse_address("192.0.2.1"), ip("192.0.2.1"))
        self.assertEqual(parse_address("2001:db8::1"), ip("2001:db8::1"))
        self.assertIsNone(parse_address("127.1"))
        self.assertIsNone(parse_address("example.com"))
