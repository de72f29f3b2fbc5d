"""
Tests for L{portofcall_xmpp.tlsinfo}.

Real TLS handshakes, in memory: a client C{OpenSSL.SSL.Connection} made by
L{client_context}'s creator and a server one loaded with the test
certificates (tests/support/certs.py) exchange bytes through their memory BIOs until
both have finished.  No sockets, no reactor.  The last tests run the same
creator through Twisted (C{startTLS} and C{wrapClientTLS}) over iosim's
in-memory pump.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from functools import cache

from certs import ID_ON_DNS_SRV, Issued, quick_certificate, session_certs, srv_name, xmpp_addr
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL import SSL, crypto
from twisted.internet import _newtls
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    ISSLTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from portofcall_xmpp import tlsinfo
from portofcall_xmpp.tlsinfo import (
    XMPP_CLIENT_ALPN,
    CAFileError,
    ClientCreator,
    Trust,
    certificate_report,
    channel_binding,
    client_context,
    default_binding,
    end_point_hash,
    report,
    tls_connection,
    tls_exporter,
    tls_server_end_point,
    tls_unique,
    unparsed_report,
)

CERTS = session_certs()
NOW = CERTS.now
DAY = datetime.timedelta(days=1)
ROOT_SUBJECT = CERTS.root.cert.subject.rfc4514_string()
INTERMEDIATE_SUBJECT = CERTS.intermediate.cert.subject.rfc4514_string()

# SSL_OP_NO_EXTENDED_MASTER_SECRET (OpenSSL 3.0 and later; pyOpenSSL has no name for it).
_OP_NO_EXTENDED_MASTER_SECRET = 0x1


@cache
def system_trust() -> Trust:
    """The system store alone: what the service trusts without --ca-file."""
    return Trust()


@cache
def ca_trust() -> Trust:
    """Only the test root: hermetic."""
    return Trust(CERTS.ca_path, system=False)


def iso(when: datetime.datetime) -> str:
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------
# An in-memory handshake


def server_context(
    issued: Issued,
    *,
    max_version: int | None = None,
    alpn: bytes | None = None,
    send_chain: bool = True,
    options: int = 0,
) -> tuple[SSL.Context, list]:
    """
    A server context presenting C{issued} (and its intermediates unless
    C{send_chain} is false), and the list the SNI of each handshake is
    appended to.
    """
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.use_certificate(issued.cert)
    context.use_privatekey(issued.key)
    if send_chain:
        for cert in issued.chain:
            context.add_extra_chain_cert(cert)
    if max_version is not None:
        context.set_max_proto_version(max_version)
    if options:
        context.set_options(options)
    if alpn is not None:

        def select(connection, offered):
            return alpn if alpn in offered else SSL.NO_OVERLAPPING_PROTOCOLS

        context.set_alpn_select_callback(select)
    names: list = []
    context.set_tlsext_servername_callback(lambda c: names.append(c.get_servername()))
    return context, names


def pump(client: SSL.Connection, server: SSL.Connection) -> None:
    """Move bytes between the two memory BIOs until both handshakes finish."""
    finished = set()
    for _ in range(50):
        for side in (client, server):
            if side not in finished:
                try:
                    side.do_handshake()
                    finished.add(side)
                except SSL.WantReadError:
                    pass
        moved = False
        for source, sink in ((client, server), (server, client)):
            try:
                data = source.bio_read(65536)
            except SSL.WantReadError:
                data = b""
            if data:
                sink.bio_write(data)
                moved = True
        if len(finished) == 2 and not moved:
            return
    raise AssertionError("the handshake did not finish")


class Handshake:
    """Both ends of one finished in-memory handshake."""

    def __init__(
        self,
        kind: str = "localhost",
        domain: str = "localhost",
        *,
        trust: Trust | None = None,
        client_alpn=None,
        **server_options,
    ) -> None:
        self.issued = getattr(CERTS, kind)  # a leaf kind, or "unparsable"
        self.domain = domain
        self.trust = trust or ca_trust()
        self.creator = client_context(self.trust, domain, alpn=client_alpn)
        # What Twisted's TLSMemoryBIOFactory does with a client creator:
        self.client = self.creator.clientConnectionForTLS(None)
        self.client.set_connect_state()
        context, self.server_names = server_context(self.issued, **server_options)
        self.server = SSL.Connection(context, None)
        self.server.set_accept_state()
        pump(self.client, self.server)

    def report(self, now: datetime.datetime = NOW, domain: str | None = None):
        return report(self.client, domain or self.domain, self.trust, now)


# --------------------------------------------------------------------------
# The report


class ValidCertificateTests(SynchronousTestCase):
    def test_every_field(self) -> None:
        """
        A certificate issued for the domain by a trusted CA (through an
        intermediate the server sends) is verified, matches, and every field
        of the report describes it.
        """
        h = Handshake()
        r = h.report()
        cert = h.issued.cert
        self.assertEqual(r.protocol, "TLSv1.3")
        self.assertTrue(r.cipher.startswith("TLS_"))
        self.assertIsNone(r.alpn)
        c = r.certificate
        self.assertEqual(c.subject, "CN=localhost,O=Port of Call tests")
        self.assertEqual(c.issuer, INTERMEDIATE_SUBJECT)
        self.assertEqual(c.subject_alt_names, ("DNS:localhost",))
        self.assertEqual(c.not_before, iso(NOW - DAY))
        self.assertEqual(c.not_after, iso(NOW + 365 * DAY))
        self.assertRegex(c.not_after, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        digest = hashlib.sha256(h.issued.der).hexdigest().upper()
        self.assertEqual(c.fingerprint_sha256.replace(":", ""), digest)
        self.assertRegex(c.fingerprint_sha256, r"^([0-9A-F]{2}:){31}[0-9A-F]{2}$")
        self.assertEqual(c.fingerprint_sha256, cert.fingerprint(hashes.SHA256()).hex(":").upper())
        self.assertTrue(c.verified)
        self.assertIsNone(c.verify_error)
        self.assertTrue(c.matches_domain)
        self.assertTrue(c.chain_verified)
        self.assertEqual(c.days_until_expiry, 365)
        self.assertEqual(c.warnings, ())

    def test_second_virtual_host(self) -> None:
        """The hashed.localhost certificate verifies for hashed.localhost, not localhost."""
        h = Handshake("hashed", "hashed.localhost")
        self.assertTrue(h.report().certificate.verified)
        self.assertEqual(h.server_names, [b"hashed.localhost"])
        wrong = h.report(domain="localhost").certificate
        self.assertFalse(wrong.matches_domain)
        self.assertEqual(
            wrong.verify_error,
            "certificate is not valid for localhost (it names: DNS:hashed.localhost)",
        )

    def test_report_is_frozen(self) -> None:
        """Reports are frozen attrs values."""
        r = Handshake().report()
        with self.assertRaises(AttributeError):
            r.protocol = "SSLv3"
        with self.assertRaises(AttributeError):
            r.certificate.verified = False


class TrustTests(SynchronousTestCase):
    def test_unknown_ca_without_ca_file(self) -> None:
        """
        Without --ca-file, a certificate from a private CA does not verify
        against the system store: the error names the missing issuer, the
        name still matches.
        """
        c = Handshake(trust=system_trust()).report().certificate
        self.assertFalse(c.verified)
        self.assertFalse(c.chain_verified)
        self.assertTrue(c.matches_domain)
        self.assertEqual(
            c.verify_error, f"unable to get local issuer certificate (issuer: {ROOT_SUBJECT})"
        )

    def test_unknown_ca_with_ca_file(self) -> None:
        """The same certificate verifies once --ca-file adds its root to the system store."""
        trust = Trust(CERTS.ca_path)
        self.assertEqual(trust.extra_roots, 1)
        c = Handshake(trust=trust).report().certificate
        self.assertTrue(c.verified)
        self.assertIsNone(c.verify_error)

    def test_ca_file_of_several_roots(self) -> None:
        """
        Every root of a --ca-file is trusted: a bundle of two roots verifies
        certificates of both, while the single-root file trusts only its own.
        """
        bundle = Trust(CERTS.ca_bundle_path, system=False)
        self.assertEqual((bundle.system_roots, bundle.extra_roots), (0, 2))
        for kind in ("localhost", "other_ca"):
            self.assertTrue(Handshake(kind, trust=bundle).report().certificate.verified, kind)
        c = Handshake("other_ca").report().certificate
        self.assertFalse(c.verified)
        other = CERTS.other_root.cert.subject.rfc4514_string()
        self.assertEqual(
            c.verify_error, f"unable to get local issuer certificate (issuer: {other})"
        )

    def test_missing_intermediate(self) -> None:
        """
        A server that does not send its intermediate fails verification even
        though the root is trusted; the error names the intermediate, which is
        the leaf's issuer.  The chain comes from the connection, not the store.
        """
        c = Handshake(send_chain=False).report().certificate
        self.assertFalse(c.verified)
        self.assertEqual(
            c.verify_error,
            f"unable to get local issuer certificate (issuer: {INTERMEDIATE_SUBJECT})",
        )

    def test_missing_ca_file(self) -> None:
        """An unreadable --ca-file fails at start-up with CAFileError naming it."""
        missing = CERTS.directory / "no-such-file.pem"
        e = self.assertRaises(CAFileError, Trust, missing)
        self.assertIn(str(missing), str(e))
        self.assertIsInstance(e, ValueError)

    def test_ca_file_without_certificates(self) -> None:
        """A --ca-file with no PEM certificate in it is refused too."""
        e = self.assertRaises(CAFileError, Trust, CERTS.localhost.key_path)
        self.assertIn("holds no PEM certificate", str(e))

    def test_system_store_loaded_eagerly(self) -> None:
        """
        Trust() reads the system store when built; system=False leaves it out.
        """
        self.assertEqual(Trust(system=False).system_roots, 0)
        self.assertEqual(system_trust().extra_roots, 0)
        self.assertIn("system_roots=", repr(system_trust()))

    def test_store_time(self) -> None:
        """
        Each store() is new: setting one's verification time leaves the
        others alone.
        """
        trust = ca_trust()
        self.assertIsNot(trust.store(NOW), trust.store(NOW))


class CertificateKindTests(SynchronousTestCase):
    def test_other_name(self) -> None:
        """
        A certificate for another name only: the chain verifies, the name does
        not match, and the error lists what the certificate names.
        """
        c = Handshake("other_name").report().certificate
        self.assertFalse(c.verified)
        self.assertFalse(c.matches_domain)
        self.assertTrue(c.chain_verified)
        self.assertEqual(
            c.verify_error, "certificate is not valid for localhost (it names: DNS:other.example)"
        )

    def test_expired(self) -> None:
        """An expired certificate: the error gives notAfter; daysUntilExpiry is negative."""
        c = Handshake("expired").report().certificate
        self.assertFalse(c.verified)
        self.assertTrue(c.matches_domain)
        self.assertEqual(
            c.verify_error, f"certificate has expired (notAfter {iso(NOW - 10 * DAY)})"
        )
        self.assertEqual(c.not_after, iso(NOW - 10 * DAY))
        self.assertEqual(c.days_until_expiry, -10)
        self.assertEqual(c.warnings, ())

    def test_not_yet_valid(self) -> None:
        """A certificate whose notBefore is in the future: the error gives notBefore."""
        c = Handshake("not_yet_valid").report().certificate
        self.assertFalse(c.verified)
        self.assertEqual(
            c.verify_error, f"certificate is not yet valid (notBefore {iso(NOW + 10 * DAY)})"
        )
        self.assertEqual(c.days_until_expiry, 375)

    def test_expiring_soon(self) -> None:
        """
        A certificate with 5 days left verifies, with daysUntilExpiry 5 and a
        warning.
        """
        c = Handshake("expiring_soon").report().certificate
        self.assertTrue(c.verified)
        self.assertEqual(c.days_until_expiry, 5)
        self.assertEqual(c.warnings, ("certificate expires in 5 days",))

    def test_expiry_warning_wording(self) -> None:
        """
        The warning starts under 14 days, counts whole days, and says "less
        than a day" at the end; there is none at 14 days or after expiry.
        """
        h = Handshake("expiring_soon")
        expires = NOW + 5 * DAY

        def warnings(now):
            return h.report(now=now).certificate.warnings

        self.assertEqual(warnings(expires - 14 * DAY), ())
        self.assertEqual(warnings(expires - 13 * DAY), ("certificate expires in 13 days",))
        self.assertEqual(warnings(expires - 1.5 * DAY), ("certificate expires in 1 day",))
        self.assertEqual(warnings(expires - DAY / 2), ("certificate expires in less than a day",))
        self.assertEqual(warnings(expires + DAY), ())

    def test_verified_at_now(self) -> None:
        """
        Verification happens at the given time, not the wall clock: the expired
        certificate verified 20 days ago, and the good one will have expired
        in two years.
        """
        self.assertTrue(Handshake("expired").report(now=NOW - 20 * DAY).certificate.verified)
        later = Handshake().report(now=NOW + 730 * DAY).certificate
        self.assertFalse(later.verified)
        self.assertTrue(later.verify_error.startswith("certificate has expired"))
        self.assertEqual(later.days_until_expiry, -365)

    def test_chain_certificate_out_of_date(self) -> None:
        """
        When a certificate above the leaf is out of date, the error names it and
        gives its date.
        """
        root = CERTS.root.cert
        h = Handshake()
        expired = h.report(now=root.not_valid_after_utc + DAY).certificate
        self.assertEqual(
            expired.verify_error,
            f"certificate {ROOT_SUBJECT} in the chain has expired "
            f"(notAfter {iso(root.not_valid_after_utc)})",
        )
        early = h.report(now=root.not_valid_before_utc - DAY).certificate
        self.assertEqual(
            early.verify_error,
            f"certificate {ROOT_SUBJECT} in the chain is not yet valid "
            f"(notBefore {iso(root.not_valid_before_utc)})",
        )

    def test_now_time_zones(self) -> None:
        """A naive now is UTC; an aware one in another zone is the same instant."""
        h = Handshake("expiring_soon")
        tz = datetime.timezone(datetime.timedelta(hours=5))
        naive = NOW.replace(tzinfo=None)
        for now in (naive, NOW.astimezone(tz)):
            c = h.report(now=now).certificate
            self.assertTrue(c.verified)
            self.assertEqual(c.days_until_expiry, 5)
        self.assertEqual(
            h.report(now=(NOW + 6 * DAY).astimezone(tz)).certificate.days_until_expiry, -1
        )

    def test_self_signed(self) -> None:
        """A self-signed certificate does not verify: "self-signed certificate"."""
        c = Handshake("self_signed").report().certificate
        self.assertFalse(c.verified)
        self.assertTrue(c.matches_domain)
        self.assertEqual(c.verify_error, "self-signed certificate")
        self.assertEqual(c.subject, c.issuer)

    def test_self_signed_in_ca_file(self) -> None:
        """A self-signed certificate listed in --ca-file is trusted (pinned)."""
        trust = Trust(CERTS.self_signed.cert_path, system=False)
        self.assertTrue(Handshake("self_signed", trust=trust).report().certificate.verified)

    def test_not_a_server_certificate(self) -> None:
        """A certificate whose extendedKeyUsage excludes serverAuth does not verify."""
        c = Handshake("client_only").report().certificate
        self.assertFalse(c.verified)
        self.assertFalse(c.chain_verified)
        self.assertTrue(c.matches_domain)
        self.assertEqual(
            c.verify_error, "certificate is not for TLS servers (extendedKeyUsage: clientAuth)"
        )

    def test_chain_and_name_errors_together(self) -> None:
        """When both the chain and the name fail, the error gives both reasons."""
        c = Handshake("self_signed", "other.example").report().certificate
        self.assertFalse(c.matches_domain)
        self.assertEqual(
            c.verify_error,
            "self-signed certificate; "
            "certificate is not valid for other.example (it names: DNS:localhost)",
        )


class NameTests(SynchronousTestCase):
    def test_xmppaddr_only(self) -> None:
        """
        A certificate naming the domain only in an XmppAddr (id-on-xmppAddr)
        matches it (RFC 6120 §13.7.1.4), and no other domain.
        """
        h = Handshake("xmppaddr_only")
        c = h.report().certificate
        self.assertTrue(c.verified)
        self.assertEqual(c.subject_alt_names, ("XmppAddr:localhost",))
        other = h.report(domain="hashed.localhost").certificate
        self.assertFalse(other.matches_domain)
        self.assertEqual(
            other.verify_error,
            "certificate is not valid for hashed.localhost (it names: XmppAddr:localhost)",
        )

    def test_xmppaddr_normalised(self) -> None:
        """
        XmppAddr is compared after IDNA normalisation: a U-label XmppAddr
        matches the A-label domain, and case does not matter.
        """
        h = Handshake("xmppaddr_idn", "xn--bcher-kva.example")
        self.assertEqual(h.report().certificate.subject_alt_names, ("XmppAddr:bücher.example",))
        for domain in (
            "xn--bcher-kva.example",
            "bücher.example",
            "BÜCHER.Example",
            "bücher.example.",
        ):
            self.assertTrue(h.report(domain=domain).certificate.verified, domain)
        self.assertFalse(h.report(domain="bucher.example").certificate.matches_domain)

    def test_xmppaddr_full_jid_does_not_match(self) -> None:
        """An XmppAddr holding a JID with a localpart does not name the server."""
        cert = quick_certificate([xmpp_addr("admin@localhost")])
        c = certificate_report(cert, [], "localhost", ca_trust(), NOW)
        self.assertFalse(c.matches_domain)
        self.assertEqual(c.subject_alt_names, ("XmppAddr:admin@localhost",))

    def test_srv_id_only(self) -> None:
        """
        A certificate naming the service only by SRV-ID, _xmpp-client (RFC
        7590) or _xmpps-client (XEP-0368), matches the domain.
        """
        for kind, name in (("srv_only", "_xmpp-client"), ("srvs_only", "_xmpps-client")):
            c = Handshake(kind).report().certificate
            self.assertTrue(c.verified, kind)
            self.assertEqual(c.subject_alt_names, (f"SRV:{name}.localhost",))

    def test_srv_id_of_another_service(self) -> None:
        """An SRV-ID for another service (_xmpp-server) does not match a client connection."""
        cert = quick_certificate([srv_name("_xmpp-server.localhost")])
        c = certificate_report(cert, [], "localhost", ca_trust(), NOW)
        self.assertFalse(c.matches_domain)

    def test_every_identifier(self) -> None:
        """Every subjectAltName is listed, in order, with its type."""
        c = Handshake("all_ids").report().certificate
        self.assertTrue(c.verified)
        self.assertEqual(
            c.subject_alt_names,
            (
                "DNS:localhost",
                "SRV:_xmpp-client.localhost",
                "SRV:_xmpps-client.localhost",
                "XmppAddr:localhost",
                "URI:xmpp:localhost",
            ),
        )

    def test_other_name_types(self) -> None:
        """
        Names that do not identify an XMPP service are listed too (email,
        DirName, RID, IP, unknown otherName) and never match.
        """
        unknown = x509.ObjectIdentifier("1.2.3.4")
        cert = quick_certificate(
            [
                x509.RFC822Name("admin@localhost"),
                x509.DirectoryName(x509.Name.from_rfc4514_string("CN=localhost")),
                x509.RegisteredID(unknown),
                x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
                x509.OtherName(unknown, b"\x0c\x09localhost"),
            ]
        )
        c = certificate_report(cert, [], "localhost", ca_trust(), NOW)
        self.assertEqual(
            c.subject_alt_names,
            (
                "email:admin@localhost",
                "DirName:CN=localhost",
                "RID:1.2.3.4",
                "IP:192.0.2.1",
                "otherName:1.2.3.4",
            ),
        )
        self.assertFalse(c.matches_domain)

    def test_no_subject_alt_name(self) -> None:
        """
        A certificate without subjectAltName matches nothing: its common name is
        not used (RFC 6125 §6.4.4), and the error says so.
        """
        c = Handshake("no_san").report().certificate
        self.assertEqual(c.subject_alt_names, ())
        self.assertFalse(c.matches_domain)
        self.assertTrue(c.chain_verified)
        self.assertEqual(
            c.verify_error,
            "certificate is not valid for localhost (it has no subjectAltName; its subject "
            "CN=localhost,O=Port of Call tests is not used for matching)",
        )

    def test_wildcard(self) -> None:
        """A wildcard DNS-ID matches one label, no more and no fewer (service_identity)."""
        h = Handshake("wildcard", "chat.example.test")
        self.assertTrue(h.report().certificate.verified)
        for domain in ("example.test", "a.chat.example.test", "chat.example.org"):
            self.assertFalse(h.report(domain=domain).certificate.matches_domain, domain)

    def test_invalid_wildcard_ignored(self) -> None:
        """
        A wildcard over a single label (*.localhost) is not a valid pattern: it
        is ignored, with a warning, and the certificate's other names still
        count.
        """
        h = Handshake("bad_wildcard")
        c = h.report().certificate
        self.assertTrue(c.verified)
        self.assertEqual(c.subject_alt_names, ("DNS:*.localhost", "DNS:localhost"))
        self.assertEqual(
            c.warnings,
            ("subjectAltName DNS:*.localhost is not a valid identifier and was ignored",),
        )
        self.assertFalse(h.report(domain="foo.localhost").certificate.matches_domain)

    def test_ip_literal(self) -> None:
        """
        An IP-literal domain is matched against IP subjectAltNames (any
        spelling of the address), and gets no SNI.
        """
        h = Handshake("ip", "127.0.0.1")
        self.assertEqual(h.server_names, [None])
        self.assertEqual(h.creator.server_name, None)
        self.assertTrue(h.report().certificate.verified)
        for domain in ("::1", "[::1]", "0:0::1"):
            self.assertTrue(h.report(domain=domain).certificate.matches_domain, domain)
        self.assertFalse(h.report(domain="127.0.0.2").certificate.matches_domain)
        dns = Handshake("localhost", "127.0.0.1").report().certificate
        self.assertFalse(dns.matches_domain)
        self.assertEqual(
            dns.verify_error, "certificate is not valid for 127.0.0.1 (it names: DNS:localhost)"
        )

    @settings(max_examples=40, deadline=None)
    @given(st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=300))
    def test_xmppaddr_text(self, text: str) -> None:
        """Any XmppAddr text, short or long (DER long-form lengths), is reported as is."""
        cert = quick_certificate([xmpp_addr(text)])
        c = certificate_report(cert, [], "localhost", ca_trust(), NOW)
        self.assertEqual(c.subject_alt_names, (f"XmppAddr:{text}",))

    def test_malformed_other_names(self) -> None:
        """
        An XmppAddr or SRV otherName that is not the expected string type is
        listed as malformed, matches nothing and is warned about.
        """
        cert = quick_certificate(
            [
                x509.OtherName(tlsinfo.ID_ON_XMPPADDR, b"\x16\x09localhost"),
                x509.OtherName(ID_ON_DNS_SRV, b"\x0c\x16_xmpp-client.localhost"),
            ]
        )
        c = certificate_report(cert, [], "localhost", ca_trust(), NOW)
        self.assertEqual(c.subject_alt_names, ("XmppAddr:<malformed>", "SRV:<malformed>"))
        self.assertFalse(c.matches_domain)
        self.assertEqual(len(c.warnings), 2)


# --------------------------------------------------------------------------
# The handshake the creator configures


class HandshakeTests(SynchronousTestCase):
    def test_creator_interface(self) -> None:
        """client_context returns an IOpenSSLClientConnectionCreator that keeps its connection."""
        h = Handshake()
        self.assertTrue(IOpenSSLClientConnectionCreator.providedBy(h.creator))
        self.assertIsInstance(h.creator, ClientCreator)
        self.assertIs(h.creator.connection, h.client)
        self.assertEqual((h.creator.domain, h.creator.trust), ("localhost", h.trust))

    def test_sni(self) -> None:
        """The SNI sent is the domain, lower-case and IDNA-encoded, without a trailing dot."""
        for domain, expected in (
            ("localhost", b"localhost"),
            ("LocalHost.", b"localhost"),
            ("bücher.example", b"xn--bcher-kva.example"),
        ):
            h = Handshake("localhost", domain)
            self.assertEqual(h.server_names, [expected], domain)

    def test_alpn(self) -> None:
        """
        ALPN xmpp-client is offered when asked (XEP-0368) and reported when the
        server selects it; otherwise alpn is None.
        """
        asked = Handshake(client_alpn=XMPP_CLIENT_ALPN, alpn=b"xmpp-client")
        self.assertEqual(asked.report().alpn, "xmpp-client")
        self.assertEqual(asked.server.get_alpn_proto_negotiated(), b"xmpp-client")
        self.assertIsNone(Handshake(alpn=b"xmpp-client").report().alpn)
        self.assertIsNone(Handshake(client_alpn=XMPP_CLIENT_ALPN).report().alpn)

    def test_tls12(self) -> None:
        """A server limited to TLS 1.2 negotiates TLS 1.2 and the report says so."""
        r = Handshake(max_version=SSL.TLS1_2_VERSION).report()
        self.assertEqual(r.protocol, "TLSv1.2")
        self.assertIn("ECDHE-ECDSA", r.cipher)
        self.assertTrue(r.certificate.verified)

    def test_tls13(self) -> None:
        """An unrestricted server negotiates TLS 1.3."""
        r = Handshake(max_version=SSL.TLS1_3_VERSION).report()
        self.assertEqual(r.protocol, "TLSv1.3")

    def test_below_tls12_refused(self) -> None:
        """The client refuses anything below TLS 1.2: the handshake fails."""
        self.assertRaises(SSL.Error, Handshake, max_version=SSL.TLS1_1_VERSION)

    def test_certificate_problems_do_not_fail_the_handshake(self) -> None:
        """
        The handshake completes whatever the certificate (so /connect can
        always report on it); only the report judges it.
        """
        for kind in ("expired", "self_signed", "other_name", "no_san", "other_ca"):
            r = Handshake(kind, trust=system_trust()).report()
            self.assertFalse(r.certificate.verified, kind)


# --------------------------------------------------------------------------
# Certificates cryptography refuses to parse


class UnparsableCertificateTests(SynchronousTestCase):
    """
    The C{unparsable} certificate: OpenSSL accepts it (the handshake
    completes), C{cryptography} refuses it (a PrintableString holding "_"
    and "@").
    """

    def test_openssl_accepts_cryptography_refuses(self) -> None:
        """The test certificate is what it claims to be: loadable by OpenSSL only."""
        der = CERTS.unparsable.der
        self.assertIn(b"\x13\x12Port_of_Call@tests", der)
        crypto.load_certificate(crypto.FILETYPE_ASN1, der)
        with self.assertRaises(ValueError):
            x509.load_der_x509_certificate(der)

    def test_report(self) -> None:
        """
        What can be read from the DER bytes is reported -- subject, issuer,
        dates, fingerprint --, verifyError names the parse problem, and
        nothing is verified.
        """
        h = Handshake("unparsable")
        r = h.report()
        self.assertEqual(r.protocol, "TLSv1.3")
        c = r.certificate
        self.assertEqual(c.subject, "CN=localhost,O=Port_of_Call@tests")
        self.assertEqual(c.issuer, INTERMEDIATE_SUBJECT)
        self.assertEqual(c.subject_alt_names, ())
        self.assertEqual(c.not_before, iso(NOW - DAY))
        self.assertEqual(c.not_after, iso(NOW + 365 * DAY))
        self.assertEqual(c.days_until_expiry, 365)
        digest = hashlib.sha256(CERTS.unparsable.der).hexdigest().upper()
        self.assertEqual(c.fingerprint_sha256.replace(":", ""), digest)
        self.assertFalse(c.verified)
        # cryptography's words for the problem, e.g. "invalid value in
        # AttributeValue::PrintableString" (the wording is cryptography's).
        self.assertRegex(
            c.verify_error,
            r"^certificate could not be parsed \(.*PrintableString.*\), so it was not verified$",
        )
        self.assertFalse(c.matches_domain)
        self.assertFalse(c.chain_verified)
        self.assertFalse(c.parsed)
        self.assertEqual(c.warnings, ())

    def test_expiry_warning(self) -> None:
        """The expiry warning works from the dates read from the DER bytes."""
        r = Handshake("unparsable").report(now=NOW + 360 * DAY)
        self.assertEqual(r.certificate.days_until_expiry, 5)
        self.assertEqual(r.certificate.warnings, ("certificate expires in 5 days",))

    def test_channel_binding(self) -> None:
        """tls-server-end-point is undefined for it; tls-exporter still works."""
        h = Handshake("unparsable")
        self.assertIsNone(tls_server_end_point(h.client))
        self.assertEqual(default_binding(h.client, ["tls-server-end-point"]), None)
        self.assertEqual(len(channel_binding(h.client, "tls-exporter")), 32)

    def test_in_the_chain(self) -> None:
        """
        An unparsable certificate among the intermediates is left out with a
        warning; the chain verifies without it.
        """
        context, _ = server_context(CERTS.localhost)
        context.add_extra_chain_cert(CERTS.unparsable.cert)
        creator = client_context(ca_trust(), "localhost")
        client = creator.clientConnectionForTLS(None)
        client.set_connect_state()
        server = SSL.Connection(context, None)
        server.set_accept_state()
        pump(client, server)
        c = report(client, "localhost", ca_trust(), NOW).certificate
        self.assertTrue(c.verified)
        self.assertTrue(c.parsed)
        [warning] = c.warnings
        self.assertRegex(
            warning,
            r"^a certificate of the chain could not be parsed \(.*PrintableString.*\) "
            r"and was left out$",
        )

    @settings(max_examples=300, deadline=None)
    @given(st.data())
    def test_any_bytes(self, data) -> None:
        """Whatever the DER bytes, the report is made: fields unread are None, never an error."""
        der = CERTS.unparsable.der
        mangled = data.draw(
            st.one_of(
                st.binary(max_size=400),
                st.integers(0, len(der)).map(lambda n: der[:n]),
                st.tuples(st.integers(0, len(der) - 1), st.integers(0, 255)).map(
                    lambda c: der[: c[0]] + bytes([c[1]]) + der[c[0] + 1 :]
                ),
            )
        )
        c = unparsed_report(mangled, ValueError("not a certificate"), NOW)
        self.assertFalse(c.verified)
        self.assertEqual(
            c.verify_error,
            "certificate could not be parsed (not a certificate), so it was not verified",
        )
        self.assertEqual(
            c.fingerprint_sha256.replace(":", ""), hashlib.sha256(mangled).hexdigest().upper()
        )


# --------------------------------------------------------------------------
# Channel binding


class ChannelBindingTests(SynchronousTestCase):
    def test_tls_unique_tls12(self) -> None:
        """On TLS 1.2, tls-unique is the client's Finished, as the server sees it."""
        h = Handshake(max_version=SSL.TLS1_2_VERSION)
        self.assertEqual(tls_unique(h.client), h.server.get_peer_finished())
        self.assertEqual(tls_unique(h.client), h.client.get_finished())
        self.assertEqual(len(tls_unique(h.client)), 12)

    def test_tls_unique_tls13(self) -> None:
        """On TLS 1.3, tls-unique is undefined: None."""
        self.assertIsNone(tls_unique(Handshake().client))

    def test_tls_exporter_tls13(self) -> None:
        """
        On TLS 1.3, tls-exporter equals the server's export with the same label
        (with an empty context or none: the same on TLS 1.3).
        """
        h = Handshake()
        data = tls_exporter(h.client)
        self.assertEqual(len(data), 32)
        label = b"EXPORTER-Channel-Binding"
        self.assertEqual(data, h.server.export_keying_material(label, 32))
        self.assertEqual(data, h.server.export_keying_material(label, 32, b""))

    def test_tls_exporter_tls12_extended_master_secret(self) -> None:
        """
        On TLS 1.2 with the extended master secret, tls-exporter is defined and
        equals the server's export with RFC 9266's zero-length context.
        """
        h = Handshake(max_version=SSL.TLS1_2_VERSION)
        label = b"EXPORTER-Channel-Binding"
        self.assertEqual(tls_exporter(h.client), h.server.export_keying_material(label, 32, b""))

    def test_tls_exporter_tls12_without_extended_master_secret(self) -> None:
        """On TLS 1.2 without the extended master secret, tls-exporter is None."""
        h = Handshake(max_version=SSL.TLS1_2_VERSION, options=_OP_NO_EXTENDED_MASTER_SECRET)
        if tlsinfo._openssl_flag(h.server, "SSL_get_extms_support") is not False:
            self.skipTest("cannot turn the extended master secret off on this OpenSSL")
        self.assertIsNone(tls_exporter(h.client))
        self.assertIsNotNone(tls_unique(h.client))

    def test_tls_server_end_point(self) -> None:
        """tls-server-end-point is the SHA-256 of the certificate's DER (ecdsa-with-SHA256)."""
        for version in (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION):
            h = Handshake(max_version=version)
            self.assertEqual(tls_server_end_point(h.client), hashlib.sha256(h.issued.der).digest())

    def test_tls_server_end_point_signature_hash(self) -> None:
        """tls-server-end-point uses the certificate's signature hash: SHA-384 here."""
        h = Handshake("sha384")
        self.assertEqual(tls_server_end_point(h.client), hashlib.sha384(h.issued.der).digest())

    def test_end_point_hash_sha1(self) -> None:
        """A SHA-1 signature is upgraded to SHA-256 (RFC 5929 §4.1)."""
        cert = CERTS.sha1.cert
        self.assertEqual(cert.signature_hash_algorithm.name, "sha1")
        self.assertEqual(end_point_hash(cert), hashlib.sha256(CERTS.sha1.der).digest())

    def test_end_point_hash_undefined(self) -> None:
        """Without a signature hash (Ed25519), tls-server-end-point is undefined: None."""
        h = Handshake("ed25519")
        self.assertIsNone(tls_server_end_point(h.client))
        self.assertIsNone(channel_binding(h.client, "tls-server-end-point"))

    def test_default_binding_unadvertised(self) -> None:
        """
        When the server advertises no channel-binding type, the RFC default for
        the TLS version: tls-exporter on TLS 1.3, tls-unique below.
        """
        h13 = Handshake()
        self.assertEqual(
            default_binding(h13.client, []), ("tls-exporter", tls_exporter(h13.client))
        )
        h12 = Handshake(max_version=SSL.TLS1_2_VERSION)
        self.assertEqual(default_binding(h12.client, []), ("tls-unique", tls_unique(h12.client)))

    def test_default_binding_advertised(self) -> None:
        """
        An advertised type we can compute is used, preferring tls-exporter,
        then tls-server-end-point, then tls-unique; case is ignored.
        """
        h13 = Handshake()
        self.assertEqual(
            default_binding(h13.client, ["tls-unique", "tls-server-end-point", "tls-exporter"])[0],
            "tls-exporter",
        )
        self.assertEqual(
            default_binding(h13.client, ["TLS-Server-End-Point"]),
            ("tls-server-end-point", tls_server_end_point(h13.client)),
        )
        h12 = Handshake(max_version=SSL.TLS1_2_VERSION)
        self.assertEqual(default_binding(h12.client, ["tls-unique"])[0], "tls-unique")
        self.assertEqual(
            default_binding(h12.client, ["tls-unique", "tls-server-end-point"])[0],
            "tls-server-end-point",
        )

    def test_default_binding_none_usable(self) -> None:
        """
        When the server advertises only types that cannot be computed here
        (tls-unique on TLS 1.3, an unknown type), there is no binding: None.
        """
        h = Handshake()
        self.assertIsNone(default_binding(h.client, ["tls-unique"]))
        self.assertIsNone(default_binding(h.client, ["tls-foo"]))
        ed = Handshake("ed25519", max_version=SSL.TLS1_2_VERSION)
        self.assertIsNone(default_binding(ed.client, ["tls-server-end-point"]))

    def test_channel_binding_by_name(self) -> None:
        """channel_binding computes a named type (a forced channelBinding); unknown names raise."""
        h = Handshake()
        self.assertEqual(channel_binding(h.client, "tls-exporter"), tls_exporter(h.client))
        self.assertIsNone(channel_binding(h.client, "tls-unique"))
        self.assertRaises(ValueError, channel_binding, h.client, "tls-foo")


# --------------------------------------------------------------------------
# Through Twisted


@implementer(IOpenSSLServerConnectionCreator)
class ServerCreator:
    """The server side, for Twisted's TLSMemoryBIOFactory."""

    def __init__(self, issued: Issued, **options) -> None:
        self.context, self.server_names = server_context(issued, **options)

    def serverConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        return SSL.Connection(self.context, None)


class StartTLSTransport(iosim.FakeTransport):
    """
    iosim's FakeTransport with a real startTLS: Twisted's own
    C{twisted.internet._newtls.startTLS}, which is what reactor TCP transports
    run (C{_newtls.ConnectionMixin}): it puts a TLSMemoryBIOProtocol between
    the transport and its protocol and replaces C{getHandle}.
    """

    TLS = False

    def __init__(self, protocol, isServer) -> None:
        super().__init__(protocol, isServer)
        self._tlsClientDefault = not isServer

    def startTLS(self, contextFactory, normal=True) -> None:
        _newtls.startTLS(self, contextFactory, normal, iosim.FakeTransport)

    def write(self, data: bytes) -> None:
        if self.TLS:
            self.protocol.write(data)
        else:
            iosim.FakeTransport.write(self, data)


@implementer(IHandshakeListener)
class XMPPishClient(Protocol):
    """
    Waits for the server's C{<proceed/>}, starts TLS, and when the handshake
    completes, finds the connection on its transport and reports -- what the
    flows will do.
    """

    def __init__(self, creator=None) -> None:
        self.creator = creator
        self.received = b""
        self.handshake_report = None
        self.connection = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if data == b"<proceed/>":
            self.transport.startTLS(self.creator)

    def handshakeCompleted(self) -> None:
        self.connection = tls_connection(self.transport)
        self.handshake_report = report(self.connection, "localhost", ca_trust(), NOW)


class XMPPishServer(Protocol):
    """Says C{<proceed/>} in plaintext, then starts TLS as the server."""

    def __init__(self, creator) -> None:
        self.creator = creator

    def connectionMade(self) -> None:
        self.transport.write(b"<proceed/>")
        self.transport.startTLS(self.creator)


@implementer(IHandshakeListener)
class GreetingServer(Protocol):
    """Writes C{hello} once the TLS handshake has completed."""

    def handshakeCompleted(self) -> None:
        self.transport.write(b"hello")


class TwistedTests(SynchronousTestCase):
    def test_starttls(self) -> None:
        """
        The creator works with transport.startTLS (STARTTLS); after the
        handshake, transport.getHandle() (tls_connection) is the creator's
        OpenSSL.SSL.Connection, and the report describes the server.
        """
        creator = client_context(ca_trust(), "localhost")
        server_creator = ServerCreator(CERTS.localhost)
        client = XMPPishClient(creator)
        cio = StartTLSTransport(client, isServer=False)
        server = XMPPishServer(server_creator)
        sio = StartTLSTransport(server, isServer=True)
        self.assertIsNone(tls_connection(cio))  # not TLS yet: getHandle() is absent
        pump = iosim.connect(server, sio, client, cio, greet=False)
        pump.flush()
        self.assertEqual(client.received, b"<proceed/>")
        self.assertTrue(ISSLTransport.providedBy(client.transport))
        self.assertIs(client.connection, creator.connection)
        self.assertIs(tls_connection(client.transport), creator.connection)
        self.assertIs(client.transport.getHandle(), creator.connection)
        self.assertEqual(server_creator.server_names, [b"localhost"])
        r = client.handshake_report
        self.assertEqual(r.protocol, "TLSv1.3")
        self.assertTrue(r.certificate.verified)
        self.assertEqual(r.certificate.subject_alt_names, ("DNS:localhost",))

    def test_direct_tls(self) -> None:
        """
        The creator works with wrapClientTLS (XEP-0368 direct TLS), as the
        Connector uses it: ALPN xmpp-client is negotiated, the protocol's
        transport is the TLS layer whose getHandle() is the connection, and
        application data flows.
        """
        creator = client_context(ca_trust(), "localhost", alpn=XMPP_CLIENT_ALPN)
        reactor = MemoryReactorClock()
        endpoint = wrapClientTLS(creator, TCP4ClientEndpoint(reactor, "127.0.0.1", 5223))
        client = XMPPishClient()
        d = connectProtocol(endpoint, client)
        factory = reactor.tcpClients[0][2]
        client_wire = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5223))

        clock = Clock()
        server_creator = ServerCreator(CERTS.localhost, alpn=b"xmpp-client")
        server_factory = TLSMemoryBIOFactory(
            server_creator, False, Factory.forProtocol(GreetingServer), clock=clock
        )
        server_wire = server_factory.buildProtocol(None)
        pump = iosim.connect(
            server_wire,
            iosim.makeFakeServer(server_wire),
            client_wire,
            iosim.makeFakeClient(client_wire),
            greet=False,
            clock=clock,
        )
        pump.flush()

        self.assertIs(self.successResultOf(d), client)
        self.assertIs(client.transport.getHandle(), creator.connection)
        self.assertIs(client.connection, creator.connection)
        self.assertEqual(client.transport.negotiatedProtocol, b"xmpp-client")
        self.assertEqual(client.handshake_report.alpn, "xmpp-client")
        self.assertTrue(client.handshake_report.certificate.verified)
        self.assertEqual(server_creator.server_names, [b"localhost"])
        self.assertEqual(client.received, b"hello")
        self.assertEqual(default_binding(client.connection, [])[0], "tls-exporter")

    def test_handshake_failure(self) -> None:
        """
        A handshake that fails (a server stuck below TLS 1.2) reaches the
        protocol as connectionLost with an OpenSSL.SSL.Error.
        """
        reasons = []

        class Client(Protocol):
            def connectionLost(self, reason):
                reasons.append(reason)

        creator = client_context(ca_trust(), "localhost")
        client_wire = TLSMemoryBIOFactory(
            creator, True, Factory.forProtocol(Client), clock=Clock()
        ).buildProtocol(None)
        server_wire = TLSMemoryBIOFactory(
            ServerCreator(CERTS.localhost, max_version=SSL.TLS1_1_VERSION),
            False,
            Factory.forProtocol(Protocol),
            clock=Clock(),
        ).buildProtocol(None)
        iosim.connect(
            server_wire,
            iosim.makeFakeServer(server_wire),
            client_wire,
            iosim.makeFakeClient(client_wire),
        )
        self.assertEqual(len(reasons), 1)
        self.assertTrue(reasons[0].check(SSL.Error))

    def test_no_tls(self) -> None:
        """tls_connection is None for a transport without TLS."""
        self.assertIsNone(tls_connection(StringTransport()))
        self.assertIsNone(tls_connection(object()))
