"""
TLS for the flows: the client connection creator, the certificate report and
channel-binding data.  Twisted performs the handshake; this module configures
it and then judges its result.

    trust = Trust(options["ca-file"])          # once, at start-up (blocking file I/O)

    # STARTTLS, after <proceed/>:
    proto.transport.startTLS(client_context(trust, domain))
    # direct TLS (XEP-0368):
    endpoint = wrapClientTLS(client_context(trust, domain, alpn=XMPP_CLIENT_ALPN), endpoint)

    # once the handshake has completed (see L{tls_connection}):
    connection = tls_connection(proto.transport)
    info = report(connection, domain, trust, datetime.fromtimestamp(clock.seconds(), UTC))
    if tls_verify and not info.certificate.verified:
        ...  # refuse to send credentials: info.certificate.verify_error says why
    kind, data = default_binding(connection, advertised_channel_bindings)

The handshake never fails because of the certificate (the context does not
verify), so C{/connect} can always describe what the server presented;
L{report} does the verification afterwards, at a given time, against
L{Trust}.

OpenSSL accepts some certificates that C{cryptography} refuses to parse
(e.g. a PrintableString holding a character PrintableString forbids): the
report on such a leaf is read from its DER bytes (L{unparsed_report}), and
such a certificate among the intermediates is left out with a warning.

Getting the C{OpenSSL.SSL.Connection} after the handshake: C{transport.getHandle()}.

 - STARTTLS on a reactor TCP transport: C{transport.startTLS(creator)} wraps
   the connection in a L{twisted.protocols.tls.TLSMemoryBIOProtocol} and
   replaces C{transport.getHandle} with that protocol's, which returns the
   C{OpenSSL.SSL.Connection} (C{twisted.internet._newtls.startTLS}).
 - Direct TLS through C{wrapClientTLS}: the application protocol's transport
   I{is} the C{TLSMemoryBIOProtocol}; its C{getHandle()} returns the connection.

In both cases the handle is valid from the moment TLS starts until the
connection is lost (C{TLSMemoryBIOProtocol.connectionLost} drops it), and the
handshake is complete when the protocol's C{handshakeCompleted()} runs (if it
provides L{twisted.internet.interfaces.IHandshakeListener}) or, at the latest,
when the first byte of application data arrives.  L{tls_connection} wraps
C{getHandle()} and returns C{None} when the transport is not (yet) TLS.  As a
fallback that needs no transport, the creator keeps the last connection it
made in L{ClientCreator.connection}.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import math
import os
import re
import ssl
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, ObjectIdentifier
from OpenSSL import SSL, crypto
from service_identity import CertificateError, VerificationError
from service_identity.hazmat import (
    DNS_ID,
    SRV_ID,
    DNSPattern,
    IPAddress_ID,
    IPAddressPattern,
    SRVPattern,
    URIPattern,
    verify_service_identity,
)
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from . import names
from .scram import CHANNEL_BINDINGS, TLS_EXPORTER, TLS_SERVER_END_POINT, TLS_UNIQUE

#: ALPN protocol lists for XEP-0368 direct TLS to a client or a server port.
XMPP_CLIENT_ALPN = (b"xmpp-client",)
XMPP_SERVER_ALPN = (b"xmpp-server",)
# The SRV-ID services a certificate may name (RFC 7590 §3.1, XEP-0368).
CLIENT_SERVICES = ("xmpp-client", "xmpps-client")
SERVER_SERVICES = ("xmpp-server", "xmpps-server")

#: A certificate that expires sooner than this gets a warning.
EXPIRY_WARNING_DAYS = 14

ID_ON_XMPPADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")  # RFC 6120 §13.7.1.4
ID_ON_DNS_SRV = ObjectIdentifier("1.3.6.1.5.5.7.8.7")  # RFC 4985

_EXPORTER_LABEL = b"EXPORTER-Channel-Binding"  # RFC 9266

# Bundles of the common distributions, tried after the paths Python's own
# OpenSSL was built with (which honour $SSL_CERT_FILE and $SSL_CERT_DIR).
_SYSTEM_CA_FILES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Arch, Gentoo
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # Fedora, RHEL
    "/etc/pki/tls/certs/ca-bundle.crt",  # older RHEL
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # Alpine, macOS, the BSDs
)
_SYSTEM_CA_DIRS = ("/etc/ssl/certs", "/etc/pki/tls/certs")

_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


# --------------------------------------------------------------------------
# Trust


class CAFileError(ValueError):
    """A C{--ca-file} could not be read or holds no PEM certificate."""


class Trust:
    """
    The trust roots certificates are verified against: the system's store
    plus the PEM roots of C{--ca-file}.

    Every root is read when this is built, so verification later does no
    file I/O (OpenSSL's C{X509_STORE_set_default_paths} would look up the
    hashed certificate directory lazily, during each verification, on the
    reactor thread).  Build it once, at service start.

    @param ca_file: a PEM file of extra trust roots (it may hold several
        certificates), or C{None}.
    @param system: also trust the system's roots (tests turn this off).

    @ivar system_roots: how many roots came from the system store (0 on a
        system without one: then only C{--ca-file} is trusted).
    @ivar extra_roots: how many roots came from C{ca_file}.

    @raise CAFileError: C{ca_file} is unreadable or has no certificate.
    """

    def __init__(self, ca_file: str | os.PathLike | None = None, *, system: bool = True) -> None:
        self.ca_file = None if ca_file is None else str(ca_file)
        system_certs = _system_roots() if system else []
        extra_certs = _ca_file_roots(self.ca_file) if self.ca_file is not None else []
        self.system_roots = len(system_certs)
        self.extra_roots = len(extra_certs)
        seen: set[bytes] = set()
        roots = []
        for cert in [*system_certs, *extra_certs]:
            der = cert.public_bytes(serialization.Encoding.DER)
            if der not in seen:
                seen.add(der)
                roots.append(crypto.X509.from_cryptography(cert))
        self._roots = tuple(roots)

    def __repr__(self) -> str:
        return (
            f"<Trust ca_file={self.ca_file!r} system_roots={self.system_roots}"
            f" extra_roots={self.extra_roots}>"
        )

    def store(self, at: datetime.datetime | None = None) -> crypto.X509Store:
        """
        A new C{X509Store} holding every root, verifying at time C{at} (the
        current time when C{None}).  A new one each time, so that setting the
        time never changes a store someone else is using.
        """
        store = crypto.X509Store()
        for root in self._roots:
            store.add_cert(root)
        if at is not None:
            store.set_time(_utc(at))
        return store


def _load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    """
    Every certificate of a PEM bundle, skipping any block that does not
    parse.  Some system bundles hold roots that C{cryptography} warns about
    (e.g. a serial number of zero); they are loaded quietly.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            return x509.load_pem_x509_certificates(data)
        except ValueError:
            pass
        certs = []
        for block in _PEM_CERT.findall(data):
            try:
                certs.append(x509.load_pem_x509_certificate(block))
            except ValueError:
                continue
        return certs


def _ca_file_roots(path: str) -> list[x509.Certificate]:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CAFileError(f"cannot read the CA file {path}: {e.strerror or e}") from None
    certs = _load_pem_certificates(data)
    if not certs:
        raise CAFileError(f"the CA file {path} holds no PEM certificate")
    return certs


def _system_roots() -> list[x509.Certificate]:
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, *_SYSTEM_CA_FILES):
        if candidate and os.path.isfile(candidate):
            try:
                certs = _load_pem_certificates(Path(candidate).read_bytes())
            except OSError:
                continue
            if certs:
                return certs
    for directory in (paths.capath, paths.openssl_capath, *_SYSTEM_CA_DIRS):
        if directory and os.path.isdir(directory):
            certs = []
            for entry in sorted(os.scandir(directory), key=lambda e: e.name):
                try:
                    if entry.is_file():
                        certs.extend(_load_pem_certificates(Path(entry.path).read_bytes()))
                except OSError:
                    continue
            if certs:
                return certs
    return []


# --------------------------------------------------------------------------
# The client connection creator


@implementer(IOpenSSLClientConnectionCreator)
class ClientCreator:
    """
    Makes the client side of one TLS connection; usable with
    C{transport.startTLS(creator)} and C{wrapClientTLS(creator, endpoint)}.

    Make one per connection (L{client_context}): it remembers the last
    connection it created in L{connection}.

    @ivar context: the C{OpenSSL.SSL.Context} (TLS 1.2 minimum, no
        certificate verification during the handshake, ALPN if asked).
    @ivar server_name: the SNI sent (IDNA bytes), or C{None} for an IP literal.
    @ivar domain: the XMPP domain the certificate will be checked against.
    @ivar trust: the L{Trust} to check it with.
    @ivar connection: the C{OpenSSL.SSL.Connection} made last, or C{None}.
    """

    def __init__(
        self, context: SSL.Context, server_name: bytes | None, domain: str, trust: Trust
    ) -> None:
        self.context = context
        self.server_name = server_name
        self.domain = domain
        self.trust = trust
        self.connection: SSL.Connection | None = None

    def clientConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        """
        Create the connection (L{IOpenSSLClientConnectionCreator}); Twisted
        then sets its connect state and app data.
        """
        connection = SSL.Connection(self.context, None)
        if self.server_name is not None:
            connection.set_tlsext_host_name(self.server_name)
        self.connection = connection
        return connection


def client_context(
    trust: Trust, domain: str, *, alpn: Iterable[bytes] | None = None
) -> ClientCreator:
    """
    The client side of a TLS connection to the XMPP service C{domain}.

    TLS 1.2 or later; SNI C{domain} (IDNA-encoded; none for an IP literal);
    ALPN C{alpn} if given (L{XMPP_CLIENT_ALPN} for XEP-0368 direct TLS);
    no compression, no renegotiation (it would make channel bindings
    ambiguous).  The certificate is I{not} verified during the handshake:
    call L{report} once it completes.

    A fresh context each time, which also means a full handshake each time
    (no session is ever resumed), which L{tls_unique} relies on.
    """
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    context.set_verify(SSL.VERIFY_NONE)
    if alpn:
        context.set_alpn_protos(list(alpn))
    return ClientCreator(context, _server_name(domain), domain, trust)


#: The protocol versions a check tests (SPEC §8 C{tlsVersions}), by OpenSSL's name.
TLS_VERSIONS = {
    "TLSv1": SSL.TLS1_VERSION,
    "TLSv1.1": SSL.TLS1_1_VERSION,
    "TLSv1.2": SSL.TLS1_2_VERSION,
    "TLSv1.3": SSL.TLS1_3_VERSION,
}


def _version_context(version: str) -> SSL.Context:
    pinned = TLS_VERSIONS[version]
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    # A dedicated context: security level 0 lets TLS 1.0/1.1 (and their SHA-1
    # signatures) be offered at all; only this one version is allowed.
    context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    context.set_min_proto_version(pinned)
    context.set_max_proto_version(pinned)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    context.set_verify(SSL.VERIFY_NONE)
    return context


def version_untestable(version: str) -> str | None:
    """
    Why this OpenSSL build cannot offer C{version} (one of L{TLS_VERSIONS}),
    or C{None} when it can: it is asked to write a ClientHello offering
    only that version, in memory.
    """
    connection = SSL.Connection(_version_context(version), None)
    connection.set_connect_state()
    try:
        connection.do_handshake()
    except SSL.WantReadError:
        return None
    except SSL.Error as e:
        build = SSL.SSLeay_version(SSL.SSLEAY_VERSION).decode()
        return f"this OpenSSL build ({build}) cannot offer {version}: {e}"
    return None


def version_context(
    trust: Trust, domain: str, version: str, *, alpn: Iterable[bytes] | None = None
) -> ClientCreator:
    """
    As L{client_context}, but offering only C{version} (one of
    L{TLS_VERSIONS}), at OpenSSL security level 0: for testing which
    versions a server accepts, never for a session that carries anything.
    """
    context = _version_context(version)
    if alpn:
        context.set_alpn_protos(list(alpn))
    return ClientCreator(context, _server_name(domain), domain, trust)


def tls_connection(transport) -> SSL.Connection | None:
    """
    The C{OpenSSL.SSL.Connection} under C{transport} (C{transport.getHandle()}),
    or C{None} when the transport is not TLS (yet, or any more).

    Works for a transport after C{startTLS} and for the transport that
    C{wrapClientTLS} gives its protocol (see the module docstring).
    """
    get_handle = getattr(transport, "getHandle", None)
    if get_handle is None:
        return None
    handle = get_handle()
    return handle if isinstance(handle, SSL.Connection) else None


# --------------------------------------------------------------------------
# The report


@attrs.frozen
class CertificateReport:
    """
    The server's certificate, judged.

    @ivar subject: RFC 4514 string.
    @ivar issuer: RFC 4514 string.
    @ivar subject_alt_names: C{"DNS:example.com"}, C{"IP:192.0.2.1"},
        C{"URI:xmpp:example.com"}, C{"SRV:_xmpp-client.example.com"},
        C{"XmppAddr:example.com"}, C{"email:…"}, C{"DirName:…"},
        C{"RID:…"}, C{"otherName:<oid>"}.
    @ivar not_before: ISO 8601, UTC, C{Z}.
    @ivar not_after: ISO 8601, UTC, C{Z}.
    @ivar fingerprint_sha256: colon-separated upper-case hex.
    @ivar verified: the chain verifies to a trusted root I{and} the name matches.
    @ivar verify_error: why not (C{"; "} between a chain and a name problem),
        or C{None}.
    @ivar matches_domain: the name check alone (DNS-ID, SRV-ID, XmppAddr, or
        for an IP literal the IP address).
    @ivar chain_verified: the chain check alone.
    @ivar days_until_expiry: whole days from C{now} to C{notAfter}, rounded
        down (negative once expired).
    @ivar warnings: e.g. C{"certificate expires in 5 days"}.
    @ivar client_auth: the certificate may authenticate a TLS client (no
        extendedKeyUsage, or one naming clientAuth or anyExtendedKeyUsage),
        as a server needs for outgoing SASL EXTERNAL; C{None} when unknown.
    @ivar parsed: C{cryptography} could parse the certificate.  When it could
        not (OpenSSL is more lenient: e.g. a PrintableString holding a
        character PrintableString forbids), the report holds what could be
        read from the DER bytes -- subject, issuer, dates (C{None} if even
        those are unreadable) and fingerprint --, C{verify_error} names the
        parse problem, and nothing is verified: not the chain, not the name.
    """

    subject: str | None
    issuer: str | None
    subject_alt_names: tuple[str, ...]
    not_before: str | None
    not_after: str | None
    fingerprint_sha256: str
    verified: bool
    verify_error: str | None
    matches_domain: bool
    chain_verified: bool
    days_until_expiry: int | None
    warnings: tuple[str, ...] = ()
    parsed: bool = True
    client_auth: bool | None = None


@attrs.frozen
class TLSReport:
    """
    What a completed handshake negotiated and what the server presented.

    @ivar protocol: e.g. C{"TLSv1.3"}.
    @ivar cipher: OpenSSL's name, e.g. C{"TLS_AES_256_GCM_SHA384"}.
    @ivar alpn: the negotiated ALPN protocol, or C{None}.
    @ivar certificate: a L{CertificateReport}, or C{None} if the server sent
        no certificate.
    """

    protocol: str
    cipher: str | None
    alpn: str | None
    certificate: CertificateReport | None


def report(
    connection: SSL.Connection,
    domain: str,
    trust: Trust,
    now: datetime.datetime,
    *,
    services: Sequence[str] = CLIENT_SERVICES,
) -> TLSReport:
    """
    Describe the completed handshake on C{connection}, verifying the server's
    certificate (with the intermediates it sent) against C{trust} at time
    C{now}, for the XMPP service C{domain}.

    @param services: the SRV-ID services the certificate may name for
        C{domain}: L{CLIENT_SERVICES}, or L{SERVER_SERVICES} for s2s.

    @param now: an aware datetime (a naive one is taken as UTC); in the flows,
        C{datetime.fromtimestamp(clock.seconds(), UTC)}.
    """
    alpn = connection.get_alpn_proto_negotiated()
    peer = connection.get_peer_certificate()
    certificate = None
    if peer is not None:
        der = crypto.dump_certificate(crypto.FILETYPE_ASN1, peer)
        try:
            leaf = x509.load_der_x509_certificate(der)
        except ValueError as e:
            certificate = unparsed_report(der, e, now)
        else:
            chain, unreadable = [], []
            for cert in connection.get_peer_cert_chain() or []:
                try:
                    chain.append(cert.to_cryptography())
                except ValueError as e:
                    unreadable.append(_parse_problem(e))
            certificate = certificate_report(
                leaf, chain, domain, trust, now, services=services, unreadable=unreadable
            )
    return TLSReport(
        protocol=connection.get_protocol_version_name(),
        cipher=connection.get_cipher_name(),
        alpn=alpn.decode("ascii", "replace") if alpn else None,
        certificate=certificate,
    )


def certificate_report(
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate],
    domain: str,
    trust: Trust,
    now: datetime.datetime,
    *,
    services: Sequence[str] = CLIENT_SERVICES,
    unreadable: Sequence[str] = (),
) -> CertificateReport:
    """
    Judge C{leaf} for C{domain}: the chain (C{chain}: the certificates the
    server sent, the leaf among them or not) against C{trust} at C{now}, and
    the name per RFC 6125 / RFC 7590 / RFC 6120 §13.7.1.2.

    @param unreadable: the parse problems of certificates the server sent
        in its chain that could not be parsed (left out of C{chain}); each
        becomes a warning.
    """
    now = _utc(now)
    sans, xmpp_addrs, patterns, ignored = _identities(leaf)
    warnings = [
        f"subjectAltName {name} is not a valid identifier and was ignored" for name in ignored
    ]
    warnings += [
        f"a certificate of the chain could not be parsed ({problem}) and was left out"
        for problem in unreadable
    ]

    chain_error = _chain_error(leaf, chain, trust, now)
    matches = _matches(domain, patterns, xmpp_addrs, services)
    name_error = None if matches else _name_error(leaf, domain, sans)

    not_after = leaf.not_valid_after_utc
    days = _days_left(not_after, now, warnings)

    errors = [e for e in (chain_error, name_error) if e is not None]
    return CertificateReport(
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        subject_alt_names=tuple(sans),
        not_before=_iso(leaf.not_valid_before_utc),
        not_after=_iso(not_after),
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(":").upper(),
        verified=not errors,
        verify_error="; ".join(errors) or None,
        matches_domain=matches,
        chain_verified=chain_error is None,
        days_until_expiry=days,
        warnings=tuple(warnings),
        client_auth=_allows_client_auth(leaf),
    )


def unparsed_report(der: bytes, error: ValueError, now: datetime.datetime) -> CertificateReport:
    """
    The report on a certificate C{cryptography} refused to parse (C{error}):
    what can be read from its DER bytes, nothing verified (see
    L{CertificateReport.parsed}).
    """
    subject, issuer, not_before, not_after = _read_der(der)
    warnings: list[str] = []
    days = None if not_after is None else _days_left(not_after, _utc(now), warnings)
    return CertificateReport(
        subject=subject,
        issuer=issuer,
        subject_alt_names=(),
        not_before=None if not_before is None else _iso(not_before),
        not_after=None if not_after is None else _iso(not_after),
        fingerprint_sha256=hashlib.sha256(der).digest().hex(":").upper(),
        verified=False,
        verify_error=f"certificate could not be parsed ({_parse_problem(error)}), "
        "so it was not verified",
        matches_domain=False,
        chain_verified=False,
        days_until_expiry=days,
        warnings=tuple(warnings),
        parsed=False,
    )


def _days_left(not_after: datetime.datetime, now: datetime.datetime, warnings: list) -> int:
    """Whole days until C{not_after}; a warning added to C{warnings} when few are left."""
    remaining = (not_after - now).total_seconds()
    days = math.floor(remaining / 86400)
    if 0 < remaining and days < EXPIRY_WARNING_DAYS:
        if days == 0:
            warnings.append("certificate expires in less than a day")
        else:
            warnings.append(f"certificate expires in {days} day{'s' if days != 1 else ''}")
    return days


# cryptography's parse errors read "error parsing asn1 value: ParseError { kind:
# InvalidValue, location: [..., "AttributeValue::PrintableString"] }".
_PARSE_ERROR = re.compile(r"ParseError \{ kind: (\w+)(?:, location: \[([^\]]*)\])?")


def _parse_problem(error: ValueError) -> str:
    """C{cryptography}'s parse error in words, e.g. C{invalid value in AttributeValue::...}."""
    text = str(error)
    match = _PARSE_ERROR.search(text)
    if match is None:
        return text
    kind = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", match.group(1)).lower()
    where = re.findall(r'"([^"]*)"', match.group(2) or "")
    return f"{kind} in {where[-1]}" if where else kind


# -- reading a certificate cryptography refuses ---------------------------------

_STRING_CODECS = {0x0C: "utf-8", 0x1E: "utf-16-be", 0x1C: "utf-32-be"}  # others: Latin-1


def _tlv(der: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """C{(tag, start, stop)} of the DER element at C{offset}; its contents: C{der[start:stop]}."""
    if offset + 2 > end:
        raise ValueError("truncated DER")
    tag, length, start = der[offset], der[offset + 1], offset + 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or start + count > end:
            raise ValueError("bad DER length")
        length, start = int.from_bytes(der[start : start + count], "big"), start + count
    if start + length > end:
        raise ValueError("truncated DER")
    return tag, start, start + length


def _children(der: bytes, start: int, stop: int):
    """The C{(tag, start, stop)} of each element inside C{der[start:stop]}."""
    while start < stop:
        element = _tlv(der, start, stop)
        yield element
        start = element[2]


def _oid(body: bytes) -> str:
    arcs, value = [], 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise ValueError("empty OID")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))


def _der_name(der: bytes, start: int, stop: int) -> str:
    """A Name, as RFC 4514 text (as C{cryptography} would write it)."""
    rdns = []
    for _, set_start, set_stop in _children(der, start, stop):
        attributes = []
        for _, seq_start, seq_stop in _children(der, set_start, set_stop):
            (_, oid_start, oid_stop), (tag, value_start, value_stop) = list(
                _children(der, seq_start, seq_stop)
            )[:2]
            value = der[value_start:value_stop].decode(
                _STRING_CODECS.get(tag, "latin-1"), "replace"
            )
            oid = ObjectIdentifier(_oid(der[oid_start:oid_stop]))
            attributes.append(x509.NameAttribute(oid, value, _validate=False))
        rdns.append(x509.RelativeDistinguishedName(attributes))
    return x509.Name(rdns).rfc4514_string()


def _der_time(der: bytes, tag: int, start: int, stop: int) -> datetime.datetime:
    text = der[start:stop].decode("ascii")
    if tag == 0x17:  # UTCTime: YYMMDDHHMMSSZ, 1950-2049 (RFC 5280 §4.1.2.5.1)
        when = datetime.datetime.strptime(text, "%y%m%d%H%M%SZ")
        if when.year >= 2050:
            when = when.replace(year=when.year - 100)
    else:  # GeneralizedTime: YYYYMMDDHHMMSSZ
        when = datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ")
    return when.replace(tzinfo=datetime.UTC)


def _read_der(der: bytes):
    """
    C{(subject, issuer, not_before, not_after)} of a DER certificate, each
    C{None} when it cannot be read.  Linear in the size of C{der}.
    """
    subject = issuer = not_before = not_after = None
    try:
        _, cert_start, cert_stop = _tlv(der, 0, len(der))
        _, tbs_start, tbs_stop = _tlv(der, cert_start, cert_stop)
        fields = list(_children(der, tbs_start, tbs_stop))
        if fields and fields[0][0] == 0xA0:  # [0] version
            fields = fields[1:]
        # serialNumber, signature, issuer, validity, subject, ...
        _, _, (_, i_start, i_stop), (_, v_start, v_stop), (_, s_start, s_stop) = fields[:5]
    except ValueError:
        return subject, issuer, not_before, not_after
    for name, start, stop in (("issuer", i_start, i_stop), ("subject", s_start, s_stop)):
        try:
            text = _der_name(der, start, stop)
        except (ValueError, TypeError):
            continue
        if name == "issuer":
            issuer = text
        else:
            subject = text
    try:
        (b_tag, b_start, b_stop), (a_tag, a_start, a_stop) = list(_children(der, v_start, v_stop))[
            :2
        ]
        not_before = _der_time(der, b_tag, b_start, b_stop)
        not_after = _der_time(der, a_tag, a_start, a_stop)
    except ValueError:
        pass
    return subject, issuer, not_before, not_after


def _utc(when: datetime.datetime) -> datetime.datetime:
    if when.tzinfo is None:
        return when.replace(tzinfo=datetime.UTC)
    return when.astimezone(datetime.UTC)


def _iso(when: datetime.datetime) -> str:
    return _utc(when).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the chain --------------------------------------------------------------

# X509_V_ERR_* codes (stable across OpenSSL versions).
_UNABLE_TO_GET_ISSUER_CERT = 2
_CERT_NOT_YET_VALID = 9
_CERT_HAS_EXPIRED = 10
_DEPTH_ZERO_SELF_SIGNED_CERT = 18
_SELF_SIGNED_CERT_IN_CHAIN = 19
_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21


def _chain_error(
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate],
    trust: Trust,
    now: datetime.datetime,
) -> str | None:
    leaf_der = leaf.public_bytes(serialization.Encoding.DER)
    untrusted = [
        crypto.X509.from_cryptography(c)
        for c in chain
        if c.public_bytes(serialization.Encoding.DER) != leaf_der
    ]
    try:
        context = crypto.X509StoreContext(
            trust.store(now), crypto.X509.from_cryptography(leaf), untrusted
        )
        context.verify_certificate()
    except crypto.X509StoreContextError as e:
        code, depth, message = e.errors
        return _describe_chain_error(code, depth, message, e.certificate.to_cryptography())
    except crypto.Error as e:
        return f"certificate verification failed: {e}"
    return _purpose_error(leaf)


def _describe_chain_error(code: int, depth: int, message: str, cert: x509.Certificate) -> str:
    """An operator's version of OpenSSL's verification error."""
    which = (
        "certificate" if depth == 0 else f"certificate {cert.subject.rfc4514_string()} in the chain"
    )
    if code == _CERT_HAS_EXPIRED:
        return f"{which} has expired (notAfter {_iso(cert.not_valid_after_utc)})"
    if code == _CERT_NOT_YET_VALID:
        return f"{which} is not yet valid (notBefore {_iso(cert.not_valid_before_utc)})"
    if code == _DEPTH_ZERO_SELF_SIGNED_CERT:
        return "self-signed certificate"
    if code == _SELF_SIGNED_CERT_IN_CHAIN:
        return (
            "self-signed certificate in certificate chain "
            f"({cert.subject.rfc4514_string()} is not a trusted root)"
        )
    if code == _UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
        return f"unable to get local issuer certificate (issuer: {cert.issuer.rfc4514_string()})"
    if code == _UNABLE_TO_GET_ISSUER_CERT:
        return f"unable to get issuer certificate (issuer: {cert.issuer.rfc4514_string()})"
    if code == _UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        return f"unable to verify the first certificate (issuer: {cert.issuer.rfc4514_string()})"
    if depth == 0:
        return message
    return f"{message} ({cert.subject.rfc4514_string()}, in the chain)"


_EKU_NAMES = {
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}


def _purpose_error(leaf: x509.Certificate) -> str | None:
    """OpenSSL was not asked to check the purpose: a server certificate needs serverAuth."""
    try:
        eku = leaf.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    allowed = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    if allowed.intersection(eku):
        return None
    names = ", ".join(_EKU_NAMES.get(oid, oid.dotted_string) for oid in eku)
    return f"certificate is not for TLS servers (extendedKeyUsage: {names})"


def _allows_client_auth(leaf: x509.Certificate) -> bool | None:
    """Whether C{leaf} may authenticate a TLS client; C{None} when its EKU is unreadable."""
    try:
        eku = leaf.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    except x509.ExtensionNotFound:
        return True
    except ValueError:
        return None
    allowed = {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    return bool(allowed.intersection(eku))


# -- the name ---------------------------------------------------------------


def _identities(cert: x509.Certificate):
    """
    C{(sans, xmpp_addrs, patterns, ignored)}: every subjectAltName as text, the
    XmppAddr values, the service_identity patterns (DNS, IP, URI, SRV), and the
    text of the names that are not valid patterns (e.g. C{DNS:*.localhost}, a
    wildcard over a single label), which match nothing rather than spoiling
    the whole certificate as C{service_identity.cryptography.extract_patterns}
    would have it.
    """
    try:
        names = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return [], [], [], []
    except ValueError:  # a malformed extension
        return [], [], [], []
    sans, xmpp_addrs, patterns, ignored = [], [], [], []
    for name in names:
        text, pattern = _describe_name(name)
        sans.append(text)
        if isinstance(name, x509.OtherName) and name.type_id == ID_ON_XMPPADDR:
            value = _der_string(name.value, 0x0C, "utf-8")
            if value is not None:
                xmpp_addrs.append(value)
            else:
                ignored.append(text)
        elif pattern is False:
            ignored.append(text)
        elif pattern is not None:
            patterns.append(pattern)
    return sans, xmpp_addrs, patterns, ignored


def _describe_name(name: x509.GeneralName):
    """C{(text, pattern)}: pattern is C{None} if not used, C{False} if invalid."""

    def attempt(make):
        try:
            return make()
        except (CertificateError, ValueError, UnicodeError, IndexError):
            return False

    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}", attempt(lambda: DNSPattern.from_bytes(name.value.encode()))
    if isinstance(name, x509.IPAddress):
        value = name.value
        if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
            return f"IP:{value}", None
        return f"IP:{value}", IPAddressPattern(pattern=value)
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}", attempt(lambda: URIPattern.from_bytes(name.value.encode()))
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}", None
    if isinstance(name, x509.DirectoryName):
        return f"DirName:{name.value.rfc4514_string()}", None
    if isinstance(name, x509.RegisteredID):
        return f"RID:{name.value.dotted_string}", None
    if isinstance(name, x509.OtherName):
        if name.type_id == ID_ON_XMPPADDR:
            value = _der_string(name.value, 0x0C, "utf-8")
            return f"XmppAddr:{value if value is not None else '<malformed>'}", None
        if name.type_id == ID_ON_DNS_SRV:
            value = _der_string(name.value, 0x16, "ascii")
            if value is None:
                return "SRV:<malformed>", False
            return f"SRV:{value}", attempt(lambda: SRVPattern.from_bytes(value.encode("ascii")))
        return f"otherName:{name.type_id.dotted_string}", None
    return str(name), None


def _der_string(der: bytes, tag: int, encoding: str) -> str | None:
    """Decode one DER primitive string with C{tag} (UTF8String 0x0C, IA5String 0x16)."""
    try:
        got, start, stop = _tlv(der, 0, len(der))
    except ValueError:
        return None
    if got != tag or stop != len(der):
        return None
    try:
        return der[start:].decode(encoding)
    except UnicodeDecodeError:
        return None


def _plain_domain(domain: str) -> str:
    domain = domain.strip()
    if domain.startswith("[") and domain.endswith("]"):
        domain = domain[1:-1]
    return domain.rstrip(".")


def _ip_literal(domain: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(_plain_domain(domain))
    except ValueError:
        return None


def _a_label(domain: str) -> str:
    """C{domain} in lower-case A-labels (UTS #46 mapping); as-is if IDNA refuses it."""
    plain = _plain_domain(domain)
    try:
        return names.query_name(plain).lower()
    except names.InvalidName:
        return plain.lower()


def _server_name(domain: str) -> bytes | None:
    if _ip_literal(domain) is not None:
        return None
    name = _a_label(domain)
    try:
        return name.encode("ascii") or None
    except UnicodeEncodeError:
        return None


def _matches(domain: str, patterns: list, xmpp_addrs: list[str], services) -> bool:
    ip = _ip_literal(domain)
    if ip is not None:
        ids = [IPAddress_ID(ip)]
    else:
        name = _a_label(domain)
        ids = []
        # DNS-ID, then SRV-IDs (RFC 7590 §3.1, RFC 6120 §13.7.1.2, XEP-0368).
        candidates = [(DNS_ID, name)] + [(SRV_ID, f"_{service}.{name}") for service in services]
        for make, value in candidates:
            try:
                ids.append(make(value))
            except (ValueError, UnicodeError):
                continue
        if name and any(_a_label(addr) == name for addr in xmpp_addrs):
            return True
    for service_id in ids:
        try:
            verify_service_identity(patterns, obligatory_ids=[service_id], optional_ids=[])
        except (VerificationError, CertificateError):
            continue
        return True
    return False


def _name_error(leaf: x509.Certificate, domain: str, sans: list[str]) -> str:
    shown = _plain_domain(domain)
    if sans:
        return f"certificate is not valid for {shown} (it names: {', '.join(sans)})"
    return (
        f"certificate is not valid for {shown} (it has no subjectAltName; its subject "
        f"{leaf.subject.rfc4514_string() or '(empty)'} is not used for matching)"
    )


# --------------------------------------------------------------------------
# Channel binding (RFC 5929, RFC 9266)


def _is_tls13(connection: SSL.Connection) -> bool:
    return connection.get_protocol_version() >= SSL.TLS1_3_VERSION


def _openssl_flag(connection: SSL.Connection, function: str) -> bool | None:
    """
    Ask OpenSSL something pyOpenSSL does not expose (C{SSL_get_extms_support},
    C{SSL_session_reused}), through the bindings it is built on; C{None}
    when that is not possible with this pyOpenSSL.
    """
    try:
        from cryptography.hazmat.bindings.openssl.binding import Binding

        call = getattr(Binding.lib, function)
        return call(connection._ssl) == 1
    except (ImportError, AttributeError, TypeError):
        return None


def tls_unique(connection: SSL.Connection) -> bytes | None:
    """
    C{tls-unique} (RFC 5929 §3): the first Finished message of the most
    recent handshake -- the client's own on a full handshake (always the
    case with L{client_context}, which never resumes a session), the
    server's on a resumed one.  C{None} on TLS 1.3, where it is undefined
    (RFC 8446 §C.5).
    """
    if _is_tls13(connection):
        return None
    if _openssl_flag(connection, "SSL_session_reused"):
        return connection.get_peer_finished()
    return connection.get_finished()


def tls_unique_tls13_compat(connection: SSL.Connection) -> bytes | None:
    """
    What some servers (ejabberd 23.01) accept as C{tls-unique} on TLS 1.3,
    where RFC 8446 leaves it undefined: the client's Finished message.
    C{None} below TLS 1.3 (use L{tls_unique} there).
    """
    if not _is_tls13(connection):
        return None
    return connection.get_finished()


def end_point_hash(certificate: x509.Certificate) -> bytes | None:
    """
    The C{tls-server-end-point} hash of C{certificate} (RFC 5929 §4.1): its
    DER hashed with the hash of its signature algorithm, SHA-256 when that
    is MD5 or SHA-1.  C{None} when undefined: a signature without a hash
    (Ed25519, Ed448) or an algorithm C{cryptography} does not know.
    """
    try:
        algorithm = certificate.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    if algorithm is None:
        return None
    if isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(certificate.public_bytes(serialization.Encoding.DER))
    return digest.finalize()


def tls_server_end_point(connection: SSL.Connection) -> bytes | None:
    """
    C{tls-server-end-point} (RFC 5929 §4): L{end_point_hash} of the server's
    certificate; C{None} without one, or when undefined for it.
    """
    certificate = connection.get_peer_certificate()
    if certificate is None:
        return None
    try:
        return end_point_hash(certificate.to_cryptography())
    except ValueError:  # a certificate cryptography cannot parse
        return None


def tls_exporter(connection: SSL.Connection) -> bytes | None:
    """
    C{tls-exporter} (RFC 9266): 32 bytes exported with the label
    C{"EXPORTER-Channel-Binding"} and a zero-length context (the same as no
    context on TLS 1.3).

    On TLS 1.3 always; below, only with the extended master secret (RFC
    7627), as RFC 9266 §3 requires.  pyOpenSSL does not expose whether that
    was negotiated: it is asked of OpenSSL directly (C{SSL_get_extms_support}
    through C{cryptography}'s bindings), and when that is not possible this
    returns C{None} below TLS 1.3.
    """
    if not _is_tls13(connection) and not _openssl_flag(connection, "SSL_get_extms_support"):
        return None
    try:
        return connection.export_keying_material(_EXPORTER_LABEL, 32, b"")
    except SSL.Error:
        return None


_COMPUTE = {
    TLS_EXPORTER: tls_exporter,
    TLS_SERVER_END_POINT: tls_server_end_point,
    TLS_UNIQUE: tls_unique,
}


def channel_binding(connection: SSL.Connection, kind: str) -> bytes | None:
    """
    The channel-binding data of type C{kind} (one of L{CHANNEL_BINDINGS}),
    or C{None} if it cannot be computed on this connection.

    @raise ValueError: an unknown C{kind}.
    """
    try:
        compute = _COMPUTE[kind]
    except KeyError:
        raise ValueError(f"unknown channel-binding type {kind!r}") from None
    return compute(connection)


def default_binding(
    connection: SSL.Connection, advertised: Iterable[str]
) -> tuple[str, bytes] | None:
    """
    The channel binding a -PLUS mechanism uses without an explicit choice
    (SPEC §4): C{(type, data)}.

    When the server advertises types (XEP-0440), the first of
    L{CHANNEL_BINDINGS} that it advertises and that can be computed here;
    C{None} if there is none (the server would refuse any other type, so a
    -PLUS mechanism should not be used).  When it advertises nothing, the
    RFC default for the TLS version: C{tls-exporter} on TLS 1.3, C{tls-unique}
    below; C{None} if that cannot be computed.
    """
    offered = {kind.strip().lower() for kind in advertised}
    if offered:
        candidates = [kind for kind in CHANNEL_BINDINGS if kind in offered]
    else:
        candidates = [TLS_EXPORTER if _is_tls13(connection) else TLS_UNIQUE]
    for kind in candidates:
        data = channel_binding(connection, kind)
        if data is not None:
            return kind, data
    return None
