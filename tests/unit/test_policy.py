"""Tests for portofcall_xmpp.policy: the special-range table and the policy."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from portofcall_xmpp.errors import DestinationBlocked
from portofcall_xmpp.names import parse_ip_literal
from portofcall_xmpp.policy import (
    SPECIAL_RANGES,
    Policy,
    is_global,
    special_range,
)

ip = ipaddress.ip_address


class LiteralPolicyTests(SynchronousTestCase):
    @given(st.integers(0, 2**24 - 1))
    def test_loopback_as_integer_is_blocked(self, offset):
        """Every 127/8 address spelled as one decimal, hex or octal integer is blocked."""
        value = (127 << 24) | offset
        for text in (str(value), hex(value), "0" + format(value, "o")):
            addr = parse_ip_literal(text)
            self.assertEqual(addr, ipaddress.IPv4Address(value))
            self.assertRaises(DestinationBlocked, Policy().check, addr)


BLOCKED = {
    # address: the name of its range
    "0.0.0.0": "unspecified",
    "0.1.2.3": "unspecified",
    "10.0.0.1": "private (RFC 1918)",
    "10.255.255.255": "private (RFC 1918)",
    "100.64.0.1": "shared (CGNAT",
    "100.127.255.254": "shared (CGNAT",
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "169.254.169.254": "link-local",
    "172.16.0.1": "private (RFC 1918)",
    "172.31.255.255": "private (RFC 1918)",
    "192.0.0.1": "IETF protocol assignment",
    "192.0.0.9": "IETF protocol assignment",
    "192.0.2.1": "documentation",
    "192.88.99.1": "deprecated 6to4 relay anycast",
    "192.88.99.255": "deprecated 6to4 relay anycast",
    "192.168.1.1": "private (RFC 1918)",
    "198.18.0.1": "benchmarking",
    "198.19.255.255": "benchmarking",
    "198.51.100.7": "documentation",
    "203.0.113.9": "documentation",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "254.1.2.3": "reserved",
    "255.255.255.255": "broadcast",
    "::": "unspecified",
    "::1": "loopback",
    "fe80::1": "link-local",
    "febf:ffff::1": "link-local",
    "fc00::1": "unique local",
    "fd12:3456::1": "unique local",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "ff0e::1": "multicast",
    "100::1": "discard-only",
    "100::ffff:ffff:ffff:ffff": "discard-only",
    "2001::1": "Teredo",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "Teredo",
    "2001:2::1": "IETF protocol assignment",
    "2001:10::1": "IETF protocol assignment",
    "2001:1ff::1": "IETF protocol assignment",
    "2001:db8::1": "documentation",
    "3fff::1": "documentation",
    "3fff:fff::1": "documentation",
    "64:ff9b:1::1": "NAT64 local-use",
    "64:ff9b:1::808:808": "NAT64 local-use",
    "4000::1": "reserved (outside 2000::/3)",
    "5f00::1": "reserved (outside 2000::/3)",
    "e000::1": "reserved (outside 2000::/3)",
    "1::1": "reserved (outside 2000::/3)",
}

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "9.9.9.9",
    "100.63.255.255",
    "100.128.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.255",
    "192.0.3.0",
    "192.88.98.255",
    "192.88.100.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700::1111",
    "2001:4860:4860::8888",
    "2001:200::1",
    "2a00:1450::1",
    "3ffe::1",
    "3fff:1000::1",
]


class TableTests(SynchronousTestCase):
    def test_special_ranges_blocked(self):
        """Every range of the table blocks its addresses, named by the range's name."""
        for text, name in BLOCKED.items():
            verdict = special_range(ip(text))
            self.assertIsNotNone(verdict, text)
            self.assertIn(name, verdict.reason, text)
            self.assertFalse(is_global(ip(text)), text)

    def test_public_addresses_global(self):
        """Public addresses, including neighbours of the special ranges, are global."""
        for text in ALLOWED:
            self.assertIsNone(special_range(ip(text)), text)
            self.assertTrue(is_global(ip(text)), text)

    def test_every_row_is_exercised(self):
        """Each row of the table is the first match of at least one address in these tests."""
        addresses = [ip(text) for text in BLOCKED] + [
            ip("::ffff:127.0.0.1"),
            ip("::127.0.0.1"),
            ip("64:ff9b::127.0.0.1"),
            ip("2002:7f00:1::1"),
        ]
        hit = {special_range(addr).range for addr in addresses}
        self.assertEqual(set(SPECIAL_RANGES) - hit, set())

    def test_ipv4_mapped(self):
        """IPv4-mapped addresses are judged by the IPv4 address they carry."""
        self.assertTrue(is_global(ip("::ffff:8.8.8.8")))
        for text, reason in [
            ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
            ("::ffff:10.1.2.3", "IPv4-mapped private (RFC 1918)"),
            ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
            ("::ffff:0.0.0.0", "IPv4-mapped unspecified"),
            ("::ffff:100.64.0.1", "IPv4-mapped shared"),
        ]:
            self.assertTrue(special_range(ip(text)).reason.startswith(reason), text)

    def test_ipv4_compatible(self):
        """IPv4-compatible addresses (::/96) are blocked, naming the embedded range if special."""
        self.assertEqual(special_range(ip("::127.0.0.1")).reason, "IPv4-compatible loopback")
        self.assertEqual(
            special_range(ip("::10.0.0.1")).reason, "IPv4-compatible private (RFC 1918)"
        )
        self.assertIn("deprecated", special_range(ip("::8.8.8.8")).reason)
        self.assertFalse(is_global(ip("::8.8.8.8")))

    def test_sixtofour(self):
        """6to4 (2002::/16) is global exactly when its embedded IPv4 address is."""
        self.assertTrue(is_global(ip("2002:808:808::1")))  # 8.8.8.8
        self.assertTrue(is_global(ip("2002:0101:0101:ffff::1")))  # 1.1.1.1
        self.assertEqual(special_range(ip("2002:7f00:1::1")).reason, "6to4 loopback")
        self.assertEqual(special_range(ip("2002:c0a8:101::1")).reason, "6to4 private (RFC 1918)")
        self.assertEqual(special_range(ip("2002:a9fe:a9fe::")).reason, "6to4 link-local")
        self.assertTrue(special_range(ip("2002:e000:1::")).never_usable)  # 224.0.0.1

    def test_nat64(self):
        """NAT64 64:ff9b::/96 is judged by its IPv4 address; 64:ff9b:1::/48 is always blocked."""
        self.assertTrue(is_global(ip("64:ff9b::8.8.8.8")))
        self.assertEqual(special_range(ip("64:ff9b::127.0.0.1")).reason, "NAT64 loopback")
        self.assertEqual(
            special_range(ip("64:ff9b::192.168.0.1")).reason, "NAT64 private (RFC 1918)"
        )
        self.assertFalse(is_global(ip("64:ff9b:1::8.8.8.8")))
        # Outside the /96 but inside 64:ff9b::/32: reserved.
        self.assertFalse(is_global(ip("64:ff9b:0:1::8.8.8.8")))

    def test_scoped_address(self):
        """A scoped IPv6 address is judged by its address."""
        self.assertEqual(special_range(ip("fe80::1%eth0")).reason, "link-local")

    @given(st.integers(0, 2**32 - 1))
    def test_at_least_as_strict_as_ipaddress_for_ipv4(self, value):
        """An IPv4 address the table calls global is also global for the ipaddress module."""
        addr = ipaddress.IPv4Address(value)
        if is_global(addr):
            self.assertTrue(addr.is_global, str(addr))

    @given(st.integers(0, 2**128 - 1))
    def test_global_ipv6_is_global_unicast(self, value):
        """An IPv6 address called global is in 2000::/3 or embeds a global IPv4 address."""
        addr = ipaddress.IPv6Address(value)
        if is_global(addr):
            in_2000 = addr in ipaddress.ip_network("2000::/3")
            mapped = addr.ipv4_mapped is not None
            nat64 = addr in ipaddress.ip_network("64:ff9b::/96")
            self.assertTrue(in_2000 or mapped or nat64, str(addr))


class PolicyTests(SynchronousTestCase):
    def test_message(self):
        """A blocked address fails with DestinationBlocked naming the address and its range."""
        exc = self.assertRaises(DestinationBlocked, Policy().check, ip("127.0.0.1"))
        self.assertEqual(
            str(exc),
            "Destination 127.0.0.1 is not allowed: loopback addresses are blocked "
            "(start the service with --allow-private to allow them)",
        )
        # The policy knows nothing of HTTP: only the web layer maps it to 403.
        self.assertFalse(hasattr(exc, "status"))

    def test_message_names_host(self):
        """Given the name an address came from, the message names both."""
        exc = self.assertRaises(
            DestinationBlocked, Policy().check, ip("10.0.0.5"), name="intranet.example"
        )
        self.assertEqual(
            str(exc),
            "Destination intranet.example resolves to 10.0.0.5, which is not allowed: "
            "private (RFC 1918) addresses are blocked "
            "(start the service with --allow-private to allow them)",
        )

    def test_accepts_text(self):
        """check() takes canonical text too; text that is not an address is refused."""
        Policy().check("8.8.8.8")
        self.assertRaises(DestinationBlocked, Policy().check, "::1")
        exc = self.assertRaises(DestinationBlocked, Policy().check, "localhost")
        self.assertIn("not an IP address", str(exc))

    def test_default_blocks_every_special_range(self):
        """Without allow_private, every non-global address is refused, every global one passes."""
        policy = Policy()
        for text in BLOCKED:
            self.assertFalse(policy.allows(ip(text)), text)
            self.assertRaises(DestinationBlocked, policy.check, ip(text))
        for text in ALLOWED:
            policy.check(ip(text))
            self.assertTrue(policy.allows(ip(text)), text)

    def test_allow_private(self):
        """allow_private allows loopback, RFC 1918, CGNAT, link-local, ULA, documentation..."""
        policy = Policy(allow_private=True)
        for text in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.1.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "2002:7f00:1::",
            "64:ff9b::10.0.0.1",
            "8.8.8.8",
            "2606:4700::1111",
        ]:
            policy.check(ip(text))

    def test_allow_private_still_blocks_unusable(self):
        """allow_private never allows 0.0.0.0/8, ::, multicast, broadcast (embedded or not)."""
        policy = Policy(allow_private=True)
        for text in [
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "224.0.0.1",
            "239.1.1.1",
            "ff02::1",
            "255.255.255.255",
            "::ffff:0.0.0.0",
            "::ffff:224.0.0.1",
            "::ffff:255.255.255.255",
            "64:ff9b::0.0.0.0",
            "2002:ffff:ffff::",
        ]:
            exc = self.assertRaises(DestinationBlocked, policy.check, ip(text))
            self.assertIn("never allowed", str(exc))
            self.assertNotIn("--allow-private", str(exc))

    def test_never_usable_message(self):
        """Unusable destinations say so, without suggesting --allow-private."""
        exc = self.assertRaises(DestinationBlocked, Policy().check, ip("0.0.0.0"))
        self.assertEqual(
            str(exc),
            "Destination 0.0.0.0 is not allowed: unspecified ('this network', 0.0.0.0/8) "
            "addresses are never allowed as destinations",
        )


class SixToFourRelayTests(SynchronousTestCase):
    def test_relay_anycast_refused_in_every_spelling(self):
        """192.88.99.0/24 (6to4 relay anycast, RFC 7526) is refused by default, also
        IPv4-mapped, as 6to4, and in a legacy IPv4 spelling; --allow-private allows it."""
        for text in ["192.88.99.1", "::ffff:192.88.99.1", "2002:c058:6301::1", "3227017985"]:
            addr = parse_ip_literal(text)
            exc = self.assertRaises(DestinationBlocked, Policy().check, addr)
            self.assertIn("6to4 relay anycast", str(exc), text)
            self.assertIn("--allow-private", str(exc), text)
            self.assertFalse(is_global(addr), text)
            Policy(allow_private=True).check(addr)
