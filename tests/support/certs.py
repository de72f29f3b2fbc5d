"""
Test certificates, made with C{cryptography} (EC P-256 keys, so fast).

    from certs import session_certs
    bundle = session_certs()           # generated once per process, cached
    bundle.localhost.fullchain_path # leaf + intermediate, for a server
    bundle.ca_path                  # the root, for --ca-file

The hierarchy is a root CA, an intermediate CA signed by it, and server
certificates signed by the intermediate (except where a kind says otherwise).
A server should send the leaf and the intermediate (C{fullchain_path}, or
L{Issued.chain}); a client trusts the root (C{ca_path}).

Every certificate is written under L{CertBundle.directory}::

    ca.pem             the root (one certificate: the plain --ca-file)
    ca-bundle.pem      another, unrelated root and then the root (a --ca-file
                       holding several certificates)
    <kind>/cert.pem    the leaf alone
    <kind>/privkey.pem its key (PKCS#8, unencrypted)
    <kind>/chain.pem   the intermediates a server sends after the leaf
    <kind>/fullchain.pem  leaf + intermediates (Prosody's .crt, nginx, ...)
    <kind>/combined.pem   key + leaf + intermediates (ejabberd's certfiles)

For Prosody, L{install_for_prosody} copies chosen kinds under the names Prosody
looks for (C{<domain>.crt} and C{<domain>.key}).  Keep the other kinds out of
Prosody's certificate directory: it indexes every certificate it finds there
by name, and an expired C{localhost} certificate would compete with the good one.

The kinds, all relative to L{CertBundle.now} (the wall-clock time of generation,
to the second, UTC), which tests pass to C{report()} as C{now}:

    localhost        DNS:localhost
    hashed           DNS:hashed.localhost
    xmppaddr_only    XmppAddr:localhost (id-on-xmppAddr otherName) and nothing else
    xmppaddr_idn     XmppAddr:bücher.example (a U-label) and nothing else
    srv_only         SRV:_xmpp-client.localhost (id-on-dnsSRV otherName) only
    srvs_only        SRV:_xmpps-client.localhost only
    all_ids          DNS:localhost, SRV:_xmpp-client.localhost, SRV:_xmpps-client.localhost,
                     XmppAddr:localhost, URI:xmpp:localhost (what a real server might carry)
    other_name       DNS:other.example only
    no_san           CN=localhost and no subjectAltName at all
    wildcard         DNS:*.example.test
    bad_wildcard     DNS:*.localhost (too few labels: RFC 6125 ignores it), DNS:localhost
    ip               IP:127.0.0.1, IP:::1
    expired          DNS:localhost, valid from now-40d to now-10d
    not_yet_valid    DNS:localhost, valid from now+10d to now+375d
    expiring_soon    DNS:localhost, expires at now+5d exactly
    self_signed      DNS:localhost, its own issuer (CA:FALSE, like a snakeoil certificate)
    other_ca         DNS:localhost, issued directly by the other root (ca-bundle.pem only)
    sha384           DNS:localhost, signed ecdsa-with-SHA384 (tls-server-end-point uses SHA-384)
    client_only      DNS:localhost, extendedKeyUsage clientAuth only (not a server certificate)
    server_only      DNS:localhost, extendedKeyUsage serverAuth only (no outgoing SASL EXTERNAL)
    ed25519          DNS:localhost, self-signed Ed25519 (no signature hash: tls-server-end-point
                     undefined)
    required_host    DNS:required.localhost
    tls12_host       DNS:tls12.localhost
    expired_host     DNS:expired.localhost, valid from now-40d to now-10d
    self_signed_host DNS:selfsigned.localhost, its own issuer
    sha1             CN=localhost (no extensions), self-signed ecdsa-with-SHA1
                     (tls-server-end-point uses SHA-256); made with pyOpenSSL's
                     deprecated X509 API, since
                     cryptography refuses SHA-1 signatures; for pure tests, not handshakes

and, apart from the kinds since C{cryptography} cannot load it (an L{Unparsable}):

    unparsable       DNS:localhost, issued by the intermediate, subject
                     CN=localhost,O=Port_of_Call@tests where O= is a PrintableString:
                     "_" and "@" are not PrintableString characters, which OpenSSL
                     accepts and cryptography refuses

Everything is test material: never use these keys anywhere else.  The
building blocks (L{Issued}, the issuer, L{install_for_prosody}) live in the
package, shared with C{--demo}: C{portofcall_xmpp.certmaker}.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import ipaddress
import shutil
import tempfile
import warnings
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto

from portofcall_xmpp.certmaker import (  # noqa: F401 (the tests import them from here)
    DAY,
    ID_ON_DNS_SRV,
    ID_ON_XMPPADDR,
    Issued,
    Maker,
    install_for_prosody,
    name,
    pem,
    srv_name,
    xmpp_addr,
)

#: The organization in every test certificate's subject.
ORGANIZATION = "Port of Call tests"


@attrs.frozen
class Unparsable:
    """
    A certificate that OpenSSL accepts and C{cryptography} refuses to parse
    (the C{unparsable} kind), kept as DER and as pyOpenSSL's C{X509}.

    @ivar chain: the intermediates a server sends after it.
    """

    der: bytes
    key: object
    chain: tuple[x509.Certificate, ...]
    directory: Path

    @property
    def cert(self) -> crypto.X509:
        """What a server context loads (C{Context.use_certificate})."""
        return crypto.load_certificate(crypto.FILETYPE_ASN1, self.der)

    @property
    def key_path(self) -> Path:
        return self.directory / "privkey.pem"

    @property
    def fullchain_path(self) -> Path:
        return self.directory / "fullchain.pem"


@attrs.frozen
class CertBundle:
    """Every test certificate (see the module docstring for the kinds)."""

    directory: Path
    now: datetime.datetime
    root: Issued
    intermediate: Issued
    other_root: Issued
    leaves: dict[str, Issued]
    unparsable: Unparsable

    @property
    def ca_path(self) -> Path:
        """The root alone: the usual C{--ca-file}."""
        return self.directory / "ca.pem"

    @property
    def ca_bundle_path(self) -> Path:
        """The other root, then the root: a C{--ca-file} of several certificates."""
        return self.directory / "ca-bundle.pem"

    def __getattr__(self, kind: str) -> Issued:
        # bundle.localhost, bundle.expired, ...
        try:
            return self.leaves[kind]
        except KeyError:
            raise AttributeError(kind) from None

class _Maker(Maker):
    """The package's issuer, with the test organization and SHA-1 besides."""

    def __init__(self, directory: Path, now: datetime.datetime) -> None:
        super().__init__(directory, now, ORGANIZATION)

    def sha1_self_signed(self, kind: str) -> Issued:
        # cryptography refuses to sign with SHA-1; pyOpenSSL's deprecated
        # X509 builder still can.
        key = ec.generate_private_key(ec.SECP256R1())
        pkey = crypto.PKey.from_cryptography_key(key)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            cert = crypto.X509()
            cert.set_version(2)
            cert.get_subject().CN = "localhost"
            cert.set_issuer(cert.get_subject())
            cert.set_pubkey(pkey)
            cert.set_serial_number(self.serial())
            cert.set_notBefore(_asn1_time(self.now - DAY))
            cert.set_notAfter(_asn1_time(self.now + 365 * DAY))
            cert.sign(pkey, "sha1")
        return self.write(kind, cert.to_cryptography(), key, ())

    def unparsable(self, issuer: Issued) -> Unparsable:
        # A certificate whose O= is the PrintableString "Port of Call tests",
        # the bytes of that string patched to "Port_of_Call@tests" (same
        # length), re-signed by pyOpenSSL (OpenSSL does not check which
        # characters a PrintableString holds).
        key = ec.generate_private_key(ec.SECP256R1())
        organization = x509.NameAttribute(
            NameOID.ORGANIZATION_NAME, "Port of Call tests", _ASN1Type.PrintableString
        )
        cert = self.build(
            subject=x509.Name([organization, x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
            key=key,
            issuer=issuer,
            not_before=self.now - DAY,
            not_after=self.now + 365 * DAY,
            ca=False,
            sans=[x509.DNSName("localhost")],
        )
        good = b"\x13\x12Port of Call tests"
        der = cert.public_bytes(serialization.Encoding.DER)
        assert der.count(good) == 1
        patched = crypto.load_certificate(
            crypto.FILETYPE_ASN1, der.replace(good, b"\x13\x12Port_of_Call@tests")
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            patched.sign(crypto.PKey.from_cryptography_key(issuer.key), "sha256")
        unparsable = Unparsable(
            crypto.dump_certificate(crypto.FILETYPE_ASN1, patched),
            key,
            (issuer.cert,),
            self.directory / "unparsable",
        )
        unparsable.directory.mkdir(parents=True, exist_ok=True)
        unparsable.fullchain_path.write_bytes(
            crypto.dump_certificate(crypto.FILETYPE_PEM, patched) + pem(issuer.cert)
        )
        unparsable.key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        unparsable.key_path.chmod(0o600)
        return unparsable


def _asn1_time(when: datetime.datetime) -> bytes:
    return when.strftime("%Y%m%d%H%M%SZ").encode("ascii")


def generate(directory: Path, now: datetime.datetime | None = None) -> CertBundle:
    """
    Generate every kind of certificate into C{directory} (created if needed).

    @param now: the reference time (UTC); default: the current time,
        truncated to the second.
    """
    if now is None:
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    m = _Maker(directory, now)

    root = m.ca("root", "Port of Call Test Root CA")
    intermediate = m.ca("intermediate", "Port of Call Test Intermediate CA", issuer=root)
    other_root = m.ca("other_root", "Port of Call Other Test Root CA")

    def signed(kind, sans, **kw):
        return m.leaf(kind, sans, issuer=intermediate, chain=(intermediate,), **kw)

    dns = x509.DNSName
    leaves = [
        signed("localhost", [dns("localhost")]),
        signed("hashed", [dns("hashed.localhost")], common_name="hashed.localhost"),
        signed("xmppaddr_only", [xmpp_addr("localhost")]),
        signed("xmppaddr_idn", [xmpp_addr("bücher.example")], common_name="bücher.example"),
        signed("srv_only", [srv_name("_xmpp-client.localhost")]),
        signed("srvs_only", [srv_name("_xmpps-client.localhost")]),
        signed(
            "all_ids",
            [
                dns("localhost"),
                srv_name("_xmpp-client.localhost"),
                srv_name("_xmpps-client.localhost"),
                xmpp_addr("localhost"),
                x509.UniformResourceIdentifier("xmpp:localhost"),
            ],
        ),
        signed("other_name", [dns("other.example")], common_name="other.example"),
        signed("no_san", None),
        signed("wildcard", [dns("*.example.test")], common_name="*.example.test"),
        signed("bad_wildcard", [dns("*.localhost"), dns("localhost")]),
        signed(
            "ip",
            [
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ],
            common_name="127.0.0.1",
        ),
        signed("expired", [dns("localhost")], valid=(-40 * DAY, -10 * DAY)),
        signed("not_yet_valid", [dns("localhost")], valid=(10 * DAY, 375 * DAY)),
        signed("expiring_soon", [dns("localhost")], valid=(-90 * DAY, 5 * DAY)),
        m.leaf("self_signed", [dns("localhost")], issuer=None),
        m.leaf("other_ca", [dns("localhost")], issuer=other_root),
        signed("sha384", [dns("localhost")], hash_algorithm=hashes.SHA384()),
        signed("client_only", [dns("localhost")], eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)),
        signed("server_only", [dns("localhost")], eku=(ExtendedKeyUsageOID.SERVER_AUTH,)),
        m.leaf(
            "ed25519", [dns("localhost")], issuer=None, key=ed25519.Ed25519PrivateKey.generate()
        ),
        m.sha1_self_signed("sha1"),
        # For the virtual hosts of the TLS Prosody (tests/conftest.py).
        signed("required_host", [dns("required.localhost")], common_name="required.localhost"),
        signed("tls12_host", [dns("tls12.localhost")], common_name="tls12.localhost"),
        signed(
            "expired_host",
            [dns("expired.localhost")],
            common_name="expired.localhost",
            valid=(-40 * DAY, -10 * DAY),
        ),
        m.leaf(
            "self_signed_host",
            [dns("selfsigned.localhost")],
            issuer=None,
            common_name="selfsigned.localhost",
        ),
    ]

    (directory / "ca.pem").write_bytes(root.cert_pem)
    (directory / "ca-bundle.pem").write_bytes(other_root.cert_pem + root.cert_pem)
    return CertBundle(
        directory=directory,
        now=now,
        root=root,
        intermediate=intermediate,
        other_root=other_root,
        leaves={leaf.kind: leaf for leaf in leaves},
        unparsable=m.unparsable(intermediate),
    )


def quick_certificate(
    sans: list[x509.GeneralName] | None,
    *,
    common_name: str = "localhost",
    now: datetime.datetime | None = None,
    valid: tuple[datetime.timedelta, datetime.timedelta] = (-DAY, 365 * DAY),
) -> x509.Certificate:
    """
    A self-signed certificate with these subjectAltNames, made on the spot and
    written nowhere: for tests of name handling that need no handshake.
    """
    if now is None:
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(common_name, ORGANIZATION))
        .issuer_name(name(common_name, ORGANIZATION))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + valid[0])
        .not_valid_after(now + valid[1])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


@functools.cache
def session_certs() -> CertBundle:
    """
    The process-wide set of test certificates: generated on first use into a
    temporary directory, removed at exit.
    """
    directory = Path(tempfile.mkdtemp(prefix="portofcall-test-certs-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return generate(directory)
